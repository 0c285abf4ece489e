"""The rerun rules (SPEC 6), end to end: what a second ``stagewise run`` executes, and why.

A three-stage pipeline over two splits reads sources on disk: ``clean`` (per item, reads the
source), ``scale`` (per item, reads ``clean``) and ``reduce`` (per split, reads every ``scale``
item of its split as a collection). Every stage body appends one line to ``calls.log`` next to
the pipeline (``clean train 1``, ``reduce test``), so each test counts exactly which bodies ran.
Everything is driven through the command line in subprocesses, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult, Project

STAGES = '''
import os
from pathlib import Path

import helpers
from stagewise import REJECT, Item, stage

LOG = Path(__file__).with_name("calls.log")


def enter(name, item):
    """Log that a body runs; fail or reject the item the environment names."""
    label = " ".join([name, *(str(v) for v in item.tags.values())])
    with open(LOG, "a") as fh:
        fh.write(label + "\\n")
    if os.environ.get("FAIL_ITEM") == label:
        raise RuntimeError(f"{label} fails on purpose")
    return os.environ.get("REJECT_ITEM") == label


@stage(inputs={"raw": "raw"}, outputs={"clean": "clean/{split}/{sim}.txt"}, over=("split", "sim"))
def clean(item: Item, raw: str, *, threshold: int = 100, unused: int = 0) -> str:
    """Clip the numbers of a source at a threshold.

    Args:
        threshold: the largest value kept.
        unused: a parameter that changes nothing in the output.
    """
    if enter("clean", item):
        return REJECT
    values = [min(int(word), threshold) for word in raw.split()]
    return " ".join(str(v) for v in values)


@stage(inputs={"clean": "clean.clean"}, outputs={"scaled": "scaled/{split}/{sim}.txt"}, over=("split", "sim"))
def scale(item: Item, clean: str, *, factor: int = 2) -> str:
    """Multiply every number.

    Args:
        factor: the multiplier.
    """
    enter("scale", item)
    return helpers.fmt([int(word) * factor for word in clean.split()])


@stage(inputs={"scaled": "scale.scaled"}, outputs={"total": "total/{split}.txt"}, over=("split",))
def reduce(item: Item, scaled, *, sep: str = ",") -> str:
    """Join the scaled sims of a split.

    Args:
        sep: the separator between sims.
    """
    enter("reduce", item)
    return sep.join(f"{sim}:{handle.read()}" for sim, handle in scaled.items())
'''

HELPERS = '''
def fmt(values):
    """Numbers as a line of text."""
    return " ".join(str(v) for v in values)
'''

PIPELINE = """
pipeline: reruns
stages_from: [stages.py]
output: out
paths: {data: raw}
sources:
  raw: "{data}/{split}/{sim}.txt"
splits: {train: 3, test: 2}
stages:
  clean: {params: {threshold: 100}}
"""

SOURCES = {
    ("train", 0): "3 150 4",
    ("train", 1): "13 157 4",
    ("train", 2): "23 164 4",
    ("test", 0): "1 2 0",
    ("test", 1): "2 2 300",
}

ITEMS = [f"{split} {sim}" for split, sim in SOURCES]
EVERYTHING = sorted(
    [f"clean {i}" for i in ITEMS] + [f"scale {i}" for i in ITEMS] + ["reduce train", "reduce test"]
)
ENV = {"PYTHONDONTWRITEBYTECODE": "1", "FAIL_ITEM": None, "REJECT_ITEM": None}
"""No bytecode cache: a quick edit of the same size must never load a stale ``.pyc``."""


# --- helpers ---------------------------------------------------------------------------------------


def cli(project: Project, *args: str, **env: str) -> CliResult:
    return project.cli(*args, env={**ENV, **env})


def calls(project: Project) -> list[str]:
    log = project.root / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def run(project: Project, *args: str, **env: str) -> tuple[CliResult, list[str]]:
    """``stagewise run ARGS``: the result and the stage bodies it executed (sorted log lines)."""
    before = len(calls(project))
    result = cli(project, "run", *args, **env)
    return result, sorted(calls(project)[before:])


def run_ok(project: Project, *args: str, **env: str) -> list[str]:
    result, executed = run(project, *args, **env)
    assert result.code == 0, result.describe()
    return executed


def edit(project: Project, relpath: str, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in a project file."""
    path = project.root / relpath
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {relpath}"
    path.write_text(text.replace(old, new))


def status_rows(project: Project, *args: str) -> dict[str, dict[str, Any]]:
    """``stagewise status --format json`` as stage -> row."""
    result = cli(project, "status", "--format", "json", *args)
    assert result.code == 0, result.describe()
    return {row["stage"]: row for row in json.loads(result.stdout)}


def counts(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(row[k] for k in ("total", "done", "stale", "missing", "failed", "rejected"))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def output(project: Project, relpath: str) -> Path:
    return project.root / "out" / relpath


def write_project(project: Project) -> Project:
    """Write the pipeline, its stages and its sources into ``project``."""
    project.stages(STAGES)
    project.write("helpers.py", HELPERS)
    project.pipeline(PIPELINE)
    for (split, sim), text in SOURCES.items():
        project.write(f"raw/{split}/{sim}.txt", text + "\n")
    return project


@pytest.fixture
def fresh(project: Project) -> Project:
    """The pipeline with its sources, never run."""
    return write_project(project)


@pytest.fixture
def done(fresh: Project) -> Project:
    """The pipeline after one complete run."""
    assert run_ok(fresh) == EVERYTHING
    return fresh


# --- running, and running again ---------------------------------------------------------------------


def test_first_run_executes_every_item_of_every_stage(fresh):
    result, executed = run(fresh)
    assert result.code == 0, result.describe()
    assert executed == EVERYTHING
    assert output(fresh, "total/train.txt").read_text() == "0:6 200 8,1:26 200 8,2:46 200 8"
    assert output(fresh, "total/test.txt").read_text() == "0:2 4 0,1:4 4 200"


def test_rerun_with_nothing_changed_executes_nothing_and_exits_0(done):
    result, executed = run(done)
    assert result.code == 0, result.describe()
    assert executed == []


def test_changing_a_parameter_of_the_last_stage_in_the_pipeline_file_reruns_only_that_stage(done):
    edit(
        done,
        "pipeline.yaml",
        "clean: {params: {threshold: 100}}",
        'clean: {params: {threshold: 100}}\n  reduce: {params: {sep: ";"}}',
    )
    assert run_ok(done) == ["reduce test", "reduce train"]
    assert output(done, "total/test.txt").read_text() == "0:2 4 0;1:4 4 200"
    assert run_ok(done) == []


def test_changing_a_parameter_of_the_last_stage_on_the_command_line_reruns_only_that_stage(done):
    assert run_ok(done, "--reduce.sep", ";") == ["reduce test", "reduce train"]
    assert output(done, "total/train.txt").read_text() == "0:6 200 8;1:26 200 8;2:46 200 8"
    assert run_ok(done, "--reduce.sep", ";") == []


def test_changing_a_parameter_of_the_first_stage_reruns_it_and_the_items_whose_inputs_changed(done):
    edit(done, "pipeline.yaml", "threshold: 100", "threshold: 10")
    # test 0 ("1 2 0") is below the new threshold: its clean output is unchanged, so scale
    # test 0 is cut off; the reduce of test still reruns because test 1 changed.
    assert run_ok(done) == sorted(
        [f"clean {i}" for i in ITEMS]
        + [f"scale {i}" for i in ITEMS if i != "test 0"]
        + ["reduce test", "reduce train"]
    )
    assert output(done, "total/test.txt").read_text() == "0:2 4 0,1:4 4 20"


def test_parameter_that_does_not_change_the_output_stops_the_cascade(done):
    assert run_ok(done, "--clean.unused", "1") == [f"clean {i}" for i in sorted(ITEMS)]
    assert run_ok(done, "--clean.unused", "1") == []


def test_changing_one_source_file_reruns_the_items_that_read_it_then_their_downstream(done):
    (done.root / "raw/train/1.txt").write_text("14 157 4\n")
    assert run_ok(done) == ["clean train 1", "reduce train", "scale train 1"]
    assert output(done, "total/train.txt").read_text() == "0:6 200 8,1:28 200 8,2:46 200 8"


def test_source_change_that_the_first_stage_absorbs_reruns_nothing_downstream(done):
    (done.root / "raw/train/1.txt").write_text("13 999 4\n")  # 999 is clipped to 100, like 157
    assert run_ok(done) == ["clean train 1"]


@pytest.mark.parametrize("relpath", ["raw/train/1.txt", "out/clean/train/1.txt", "out/total/test.txt"])
def test_touching_a_file_without_changing_it_reruns_nothing(done, relpath):
    path = done.root / relpath
    before = path.stat().st_mtime
    os.utime(path, (before - 3600, before - 3600))
    assert run_ok(done) == []
    os.utime(path, (before + 7, before + 7))
    assert run_ok(done) == []


def test_deleting_an_output_reruns_that_item_only_when_it_comes_back_identical(done):
    output(done, "clean/train/1.txt").unlink()
    assert run_ok(done) == ["clean train 1"]
    assert output(done, "clean/train/1.txt").read_text() == "13 100 4"


def test_deleting_a_collection_member_reruns_its_item_and_not_the_reduce(done):
    output(done, "scaled/test/1.txt").unlink()
    assert run_ok(done) == ["scale test 1"]


def test_modifying_an_output_reruns_its_item_which_restores_it(done):
    output(done, "scaled/test/0.txt").write_text("tampered")
    assert run_ok(done) == ["scale test 0"]
    assert output(done, "scaled/test/0.txt").read_text() == "2 4 0"


# --- code changes -----------------------------------------------------------------------------------


def test_editing_the_body_of_the_last_stage_reruns_it(done):
    edit(done, "stages.py", 'return sep.join(f"{sim}:', 'return sep.join(f"sim{sim}:')
    assert run_ok(done) == ["reduce test", "reduce train"]
    assert output(done, "total/test.txt").read_text() == "sim0:2 4 0,sim1:4 4 200"


def test_editing_the_body_of_the_first_stage_reruns_it_and_identical_outputs_stop_the_cascade(done):
    edit(done, "stages.py", "values = [min(int(word), threshold)", "values = [min(int(word) + 0, threshold)")
    assert run_ok(done) == [f"clean {i}" for i in sorted(ITEMS)]


EDITS_THAT_ARE_NOT_CODE = {
    "comment": ("    values = [min(", "    # clip, then join\n    values = [min("),
    "trailing comment": ("for word in raw.split()]", "for word in raw.split()]  # words are numbers"),
    "docstring": ("Clip the numbers of a source at a threshold.", "Clip every number of one source file."),
    "formatting": (
        "values = [min(int(word), threshold) for word in raw.split()]",
        "values = [\n        min(int(word), threshold)\n        for word in raw.split()\n    ]",
    ),
    "helper docstring": ("Numbers as a line of text.", "Join numbers with spaces."),
}


@pytest.mark.parametrize("kind", EDITS_THAT_ARE_NOT_CODE)
def test_comment_docstring_or_formatting_edit_reruns_nothing(done, kind):
    old, new = EDITS_THAT_ARE_NOT_CODE[kind]
    edit(done, "helpers.py" if kind.startswith("helper") else "stages.py", old, new)
    result, executed = run(done)
    assert result.code == 0, result.describe()
    assert executed == []


def test_editing_a_helper_in_another_project_module_reruns_the_stage_that_calls_it(done):
    edit(done, "helpers.py", '" ".join(str(v) for v in values)', '" ".join(map(str, values))')
    # the helper still returns the same text: the reduce is cut off
    assert run_ok(done) == [f"scale {i}" for i in sorted(ITEMS)]


def test_bumping_the_version_reruns_the_stage(done):
    edit(done, "stages.py", 'outputs={"scaled"', 'version="2", outputs={"scaled"')
    assert run_ok(done) == [f"scale {i}" for i in sorted(ITEMS)]
    assert run_ok(done) == []


def test_changing_memory_in_the_decorator_reruns_nothing(done):
    edit(done, "stages.py", 'outputs={"clean"', 'memory="1GB", outputs={"clean"')
    assert run_ok(done) == []


# --- the set of items ---------------------------------------------------------------------------------


def test_adding_a_sim_runs_the_new_items_and_reruns_the_reduce_of_its_split(done):
    done.write("raw/train/3.txt", "1 1 1\n")
    edit(done, "pipeline.yaml", "splits: {train: 3, test: 2}", "splits: {train: 4, test: 2}")
    assert run_ok(done) == ["clean train 3", "reduce train", "scale train 3"]
    assert output(done, "total/train.txt").read_text() == "0:6 200 8,1:26 200 8,2:46 200 8,3:2 2 2"


def test_force_reruns_the_selected_stage_even_when_up_to_date(done):
    assert run_ok(done, "scale", "--force") == [f"scale {i}" for i in sorted(ITEMS)]


def test_where_runs_only_the_matching_items_and_the_full_run_then_does_only_the_rest(fresh):
    test_items = [f"clean test {s}" for s in (0, 1)] + [f"scale test {s}" for s in (0, 1)] + ["reduce test"]
    assert run_ok(fresh, "--where", "split=test") == sorted(test_items)
    assert not output(fresh, "total/train.txt").exists()
    assert run_ok(fresh) == sorted(set(EVERYTHING) - set(test_items))


# --- failures -----------------------------------------------------------------------------------------


def test_failed_item_exits_1_and_stages_downstream_of_it_do_not_run(fresh):
    result, executed = run(fresh, FAIL_ITEM="clean train 1")
    assert result.code == 1, result.describe()
    assert executed == [f"clean {i}" for i in sorted(ITEMS)]
    named = result.line_with("clean", "fails on purpose").split("RuntimeError")[0]
    assert "train" in named and "1" in named, result.describe()  # the failed item, by its tags


def test_failed_item_is_retried_on_the_next_run_and_done_items_are_not(fresh):
    run(fresh, FAIL_ITEM="clean train 1")
    result, executed = run(fresh, FAIL_ITEM="clean train 1")
    assert result.code == 1, result.describe()
    assert executed == ["clean train 1"]
    assert run_ok(fresh) == sorted(
        ["clean train 1", *(f"scale {i}" for i in ITEMS), "reduce test", "reduce train"]
    )
    assert run_ok(fresh) == []


def test_status_counts_a_failed_item_and_says_previously_failed(fresh):
    run(fresh, FAIL_ITEM="clean train 1")
    rows = status_rows(fresh)
    assert counts(rows["clean"]) == (5, 4, 0, 0, 1, 0)
    assert rows["clean"]["reasons"] == {"previously failed": 1}
    result = cli(fresh, "status")
    assert "previously failed" in result.line_with("why")


# --- selecting a later stage alone -----------------------------------------------------------------


def test_running_a_stage_whose_producer_has_no_outputs_exits_2_suggesting_plus_stage(fresh):
    result, executed = run(fresh, "scale")
    assert result.code == 2, result.describe()
    assert "+scale" in result.stderr
    assert "Traceback" not in result.output
    assert executed == []


def test_running_a_stage_whose_producer_is_stale_warns_and_runs_on_the_existing_outputs(done):
    edit(done, "pipeline.yaml", "threshold: 100", "threshold: 10")
    result, executed = run(done, "scale", "--scale.factor", "3")
    assert result.code == 0, result.describe()
    assert executed == [f"scale {i}" for i in sorted(ITEMS)]
    assert output(done, "scaled/train/0.txt").read_text() == "9 300 12"  # clean as it was (threshold 100)
    warning = [line for line in result.stderr.splitlines() if "clean" in line and "warning" in line.lower()]
    assert warning, f"no warning that clean is stale:\n{result.describe()}"


# --- status -------------------------------------------------------------------------------------------


def test_status_before_any_run_shows_every_item_missing_and_exits_0(fresh):
    result = cli(fresh, "status")
    assert result.code == 0, result.describe()
    table = result.line_with("stage", "total", "done", "stale", "missing", "failed", "rejected")
    assert table.split() == ["stage", "total", "done", "stale", "missing", "failed", "rejected"]
    assert result.line_with("clean").split()[:7] == ["clean", "5", "0", "0", "5", "0", "0"]
    assert result.line_with("reduce").split()[:7] == ["reduce", "2", "0", "0", "2", "0", "0"]


def test_status_after_a_complete_run_shows_every_item_done(done):
    result = cli(done, "status")
    assert result.code == 0, result.describe()
    assert result.line_with("clean").split() == ["clean", "5", "5", "0", "0", "0", "0"]
    assert result.line_with("scale").split() == ["scale", "5", "5", "0", "0", "0", "0"]
    assert result.line_with("reduce").split() == ["reduce", "2", "2", "0", "0", "0", "0"]
    assert "why" not in result.stdout


def test_status_json_has_one_row_per_stage_with_the_counts(fresh):
    run_ok(fresh, REJECT_ITEM="clean test 1")
    output(fresh, "clean/train/0.txt").unlink()
    rows = status_rows(fresh)
    assert list(rows) == ["clean", "scale", "reduce"]
    assert counts(rows["clean"]) == (5, 3, 1, 0, 0, 1)
    assert rows["clean"]["reasons"] == {"output missing: clean": 1}
    assert rows["scale"]["rejected"] == 1  # upstream rejected
    assert rows["reduce"]["total"] == 2


def test_status_names_the_changed_parameter(done):
    edit(done, "pipeline.yaml", "threshold: 100", "threshold: 10")
    result = cli(done, "status")
    assert result.code == 0, result.describe()
    assert result.line_with("clean").split()[:4] == ["clean", "5", "0", "5"]
    assert "parameters changed: threshold" in result.stdout
    assert "parameters changed: threshold" in status_rows(done)["clean"]["reasons"]


def test_status_names_the_changed_parameter_given_on_the_command_line(done):
    rows = status_rows(done, "--reduce.sep", ";")
    assert rows["reduce"]["reasons"] == {"parameters changed: sep": 2}
    assert counts(rows["clean"]) == (5, 5, 0, 0, 0, 0)


def test_status_names_the_changed_input(done):
    (done.root / "raw/test/0.txt").write_text("9 9 9\n")
    result = cli(done, "status")
    assert result.code == 0, result.describe()
    assert result.line_with("clean").split()[:4] == ["clean", "5", "4", "1"]
    assert re.search(r"input changed: raw\b", result.stdout), result.describe()


def test_status_names_the_changed_stage_function(done):
    edit(done, "stages.py", "values = [min(int(word), threshold)", "values = [min(int(word) + 0, threshold)")
    result = cli(done, "status")
    assert "code changed: stages.clean" in result.line_with("why", "code changed")


def test_status_names_the_changed_helper_function(done):
    edit(done, "helpers.py", '" ".join(str(v) for v in values)', '" ".join(map(str, values))')
    rows = status_rows(done)
    assert rows["scale"]["reasons"] == {"code changed: helpers.fmt": 5}
    assert counts(rows["clean"]) == (5, 5, 0, 0, 0, 0)


def test_status_says_output_missing(done):
    output(done, "scaled/train/2.txt").unlink()
    result = cli(done, "status")
    assert result.line_with("scale").split()[:4] == ["scale", "5", "4", "1"]
    assert "output missing" in result.line_with("why", "output")


def test_status_says_output_modified(done):
    output(done, "scaled/train/2.txt").write_text("tampered")
    result = cli(done, "status")
    assert result.code == 0, result.describe()
    assert "output modified" in result.line_with("why", "output")


def test_status_and_dry_run_leave_no_new_file_and_change_none(done):
    (done.root / "raw/train/1.txt").write_text("14 157 4\n")
    before = snapshot(done.root)
    for args in (("status",), ("status", "--format", "json"), ("run", "--dry-run")):
        result = cli(done, *args)
        assert result.code == 0, result.describe()
    after = snapshot(done.root)
    assert sorted(set(after) - set(before)) == []
    assert after == before


# --- dry run ------------------------------------------------------------------------------------------


def test_dry_run_prints_per_stage_how_many_items_would_run_and_why(done):
    (done.root / "raw/train/1.txt").write_text("14 157 4\n")
    result = cli(done, "run", "--dry-run")
    assert result.code == 0, result.describe()
    assert re.search(r"\b1 of 5 items would run\b", result.line_with("clean")), result.describe()
    assert "input changed: raw" in result.stdout
    assert re.search(r"up to 1\b.*if (its|their) inputs change", result.line_with("scale")), result.describe()
    assert re.search(r"up to 1\b.*if (its|their) inputs change", result.line_with("reduce")), (
        result.describe()
    )
    assert len(calls(done)) == len(EVERYTHING)


def test_dry_run_writes_no_output_and_executes_nothing(done):
    edit(done, "pipeline.yaml", "threshold: 100", "threshold: 10")
    output(done, "scaled/test/1.txt").unlink()
    before = snapshot(done.root)
    result = cli(done, "run", "--dry-run", "--reduce.sep", ";")
    assert result.code == 0, result.describe()
    after = snapshot(done.root)
    assert {k: v for k, v in after.items() if "/.stagewise/" not in k} == {
        k: v for k, v in before.items() if "/.stagewise/" not in k
    }
    assert after["out/.stagewise/state.db"] == before["out/.stagewise/state.db"]
    assert len(calls(done)) == len(EVERYTHING)


def test_dry_run_before_any_run_creates_no_output_folder(fresh):
    before = snapshot(fresh.root)
    result = cli(fresh, "run", "--dry-run")
    assert result.code == 0, result.describe()
    assert re.search(r"\b5 of 5 items would run\b", result.line_with("clean")), result.describe()
    assert snapshot(fresh.root) == before
    assert not (fresh.root / "out").exists()


def test_dry_run_names_the_changed_parameter_and_leaves_downstream_to_early_cutoff(done):
    result = cli(done, "run", "--dry-run", "--clean.threshold", "10")
    assert result.code == 0, result.describe()
    assert re.search(r"\b5 of 5 items would run\b", result.line_with("clean")), result.describe()
    assert "parameters changed: threshold" in result.stdout
    assert re.search(r"up to 5\b.*if (its|their) inputs change", result.line_with("scale")), result.describe()


def test_dry_run_with_nothing_to_do_says_so_per_stage(done):
    result = cli(done, "run", "--dry-run")
    assert result.code == 0, result.describe()
    for stage in ("clean", "scale", "reduce"):
        assert "nothing to do" in result.line_with(f"{stage}:")


def test_dry_run_with_force_says_every_selected_item_would_run_because_forced(done):
    result = cli(done, "run", "scale", "--force", "--dry-run")
    assert result.code == 0, result.describe()
    assert re.search(r"\b5 of 5 items would run\b", result.line_with("scale")), result.describe()
    assert "forced" in result.line_with("why")
    assert len(calls(done)) == len(EVERYTHING)


# --- the state store ----------------------------------------------------------------------------------


def test_state_store_is_a_file_under_the_output_root_after_a_run(done):
    assert (done.root / "out/.stagewise/state.db").is_file()


def test_damaged_state_store_exits_2_naming_the_file_without_a_traceback(done):
    db = done.root / "out/.stagewise/state.db"
    for extra in db.parent.glob("state.db-*"):
        extra.unlink()
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    result, executed = run(done)
    assert result.code == 2, result.describe()
    assert "state.db" in result.stderr
    assert "Traceback" not in result.output
    assert executed == []


def test_state_store_from_a_newer_stagewise_exits_2_saying_so(done):
    db = done.root / "out/.stagewise/state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    result, executed = run(done)
    assert result.code == 2, result.describe()
    assert "newer stagewise" in result.stderr
    assert "state.db" in result.stderr
    assert "Traceback" not in result.output
    assert executed == []


def test_rejected_item_is_not_rerun_and_its_consumer_is_rejected_too(fresh):
    executed = run_ok(fresh, REJECT_ITEM="clean test 1")
    assert "scale test 1" not in executed
    assert not output(fresh, "clean/test/1.txt").exists()
    assert output(fresh, "total/test.txt").read_text() == "0:2 4 0"
    assert run_ok(fresh) == []
