"""``stagewise meta STAGE``: item metadata as a table, CSV or JSON, end to end; and its row logic.

The command-line tests share one scratch project, run once: a stage over (split, sim) whose
items return ``Result(data, meta=...)``, one item rejected and one failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project
from stagewise import Item, Pipeline, Result, SelectionError, group, stage
from stagewise.api.meta import meta_rows, resolve_stage
from stagewise.cli.meta import format_cell, meta_columns, render_csv, render_table

STAGES = """
from stagewise import REJECT, Item, Result, stage


@stage(outputs={"v": "measure/{split}/{sim}.json"}, over=("split", "sim"))
def measure(item: Item):
    if item.sim == 1:
        return REJECT
    if item.sim == 2:
        raise ValueError("broken sim")
    meta = {"n": 10 * (item.sim + 1), "rms": 0.25 * (item.sim + 1)}
    if item.split == "test":
        meta["note"] = "held out"
    return Result({"sim": item.sim}, meta=meta)


@stage(inputs={"v": "measure.v"}, outputs={"w": "later/{split}/{sim}.json"}, over=("split", "sim"))
def later(v):
    return v
"""

PIPELINE = """
pipeline: meta_demo
stages_from: [stages.py]
output: out
splits: {train: [0, 1, 2, 10], test: 1}
"""

# Enumeration order (train before test, sim 10 after sim 0), not the store's key order.
TABLE = """\
split  sim    n   rms  note
train    0   10  0.25
train   10  110  2.75
test     0   10  0.25  held out
"""

CSV = """\
split,sim,n,rms,note
train,0,10,0.25,
train,10,110,2.75,
test,0,10,0.25,held out
"""

ROWS = [
    {"split": "train", "sim": 0, "n": 10, "rms": 0.25},
    {"split": "train", "sim": 10, "n": 110, "rms": 2.75},
    {"split": "test", "sim": 0, "n": 10, "rms": 0.25, "note": "held out"},
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The scratch project after one run of ``measure`` (exit 1: sim 2 fails)."""
    project = Project(tmp_path_factory.mktemp("meta"))
    project.stages(STAGES)
    project.pipeline(PIPELINE)
    result = project.cli("run", "measure", "--executor", "serial", "--no-progress")
    assert result.code == 1, result.describe()
    return project


# --- the command line ---------------------------------------------------------------------------


def test_meta_prints_an_aligned_table_of_done_items_in_item_order(ran: Project) -> None:
    result = ran.cli("meta", "measure")

    assert result.code == 0, result.describe()
    assert result.stdout == TABLE
    assert result.stderr == ""


def test_meta_csv_has_the_union_of_columns_and_empty_cells_for_missing_keys(ran: Project) -> None:
    result = ran.cli("meta", "measure", "--format", "csv")

    assert result.code == 0, result.describe()
    assert result.stdout == CSV


def test_meta_json_is_a_list_of_flat_rows_tags_first(ran: Project) -> None:
    result = ran.cli("meta", "measure", "--format", "json")

    assert result.code == 0, result.describe()
    rows = json.loads(result.stdout)
    assert rows == ROWS
    assert all(list(row)[:2] == ["split", "sim"] for row in rows)


def test_meta_leaves_out_rejected_and_failed_items(ran: Project) -> None:
    rows = json.loads(ran.cli("meta", "measure", "--format", "json").stdout)

    assert {row["sim"] for row in rows} == {0, 10}  # sim 1 rejected, sim 2 failed


def test_meta_takes_the_target_before_the_stage(ran: Project) -> None:
    result = ran.cli("meta", "pipeline.yaml", "measure", "--format", "csv")

    assert result.code == 0, result.describe()
    assert result.stdout == CSV


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("table", "split  sim\n"), ("csv", "split,sim\n"), ("json", "[]\n")],
)
def test_meta_of_a_stage_never_run_prints_only_the_header_and_exits_0(
    ran: Project, fmt: str, expected: str
) -> None:
    result = ran.cli("meta", "later", "--format", fmt)

    assert result.code == 0, result.describe()
    assert result.stdout == expected


def test_meta_before_any_run_reads_an_empty_store(project: Project) -> None:
    project.stages(STAGES)
    project.pipeline(PIPELINE)

    result = project.cli("meta", "measure", "--format", "json")

    assert result.code == 0, result.describe()
    assert result.stdout == "[]\n"
    assert not (project.root / "out").exists()  # reading writes nothing


def test_meta_of_an_unknown_stage_exits_2_with_the_closest_name(ran: Project) -> None:
    result = ran.cli("meta", "mesure")

    assert result.code == 2, result.describe()
    assert result.stdout == ""
    assert "unknown stage 'mesure'" in result.stderr
    assert "did you mean 'measure'?" in result.stderr


@pytest.mark.parametrize("words", [(), ("measure", "later")])
def test_meta_needs_exactly_one_stage(ran: Project, words: tuple[str, ...]) -> None:
    result = ran.cli("meta", *words)

    assert result.code == 2, result.describe()
    assert "meta takes one stage" in result.stderr


# --- the rows, in process -----------------------------------------------------------------------


def _first(item: Item) -> Result:
    return Result(item.sim, meta={"sim": 5, "flag": True, "xs": [1, 2]})


def _second(item: Item) -> int:
    return int(item.sim)


def _two_groups(out: Path) -> Pipeline:
    first = stage(_first, name="fit", outputs={"v": "a/{sim}.json"}, over=("sim",))
    second = stage(_second, name="fit", outputs={"v": "b/{sim}.json"}, over=("sim",))
    return Pipeline([group("ga", [first]), group("gb", [second])], dims={"sim": 2}, output=out)


def test_meta_rows_rename_a_metadata_key_that_is_a_tag(tmp_path: Path) -> None:
    pipeline = _two_groups(tmp_path / "out")
    assert pipeline.run(executor="serial").ok

    rows = meta_rows(pipeline.session(), "ga:fit")

    assert rows == [
        {"sim": 0, "flag": True, "meta.sim": 5, "xs": [1, 2]},
        {"sim": 1, "flag": True, "meta.sim": 5, "xs": [1, 2]},
    ]
    assert meta_rows(pipeline.session(), "gb:fit") == [{"sim": 0}, {"sim": 1}]


def test_resolve_stage_takes_qualified_names_and_refuses_an_ambiguous_bare_name(tmp_path: Path) -> None:
    model = _two_groups(tmp_path / "out").model

    assert resolve_stage(model, "gb:fit") == "gb:fit"
    with pytest.raises(SelectionError, match="used in several groups: ga:fit, gb:fit"):
        resolve_stage(model, "fit")
    with pytest.raises(SelectionError, match="unknown stage 'ga:fti'") as caught:
        resolve_stage(model, "ga:fti")
    assert caught.value.hint == "did you mean 'ga:fit'?"


# --- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (0.1, "0.1"),
        ("a b", "a b"),
        ([1, 2], "[1,2]"),
        ({"k": "é"}, '{"k":"é"}'),
    ],
)
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


def test_table_aligns_numbers_right_and_text_left_and_quotes_nothing() -> None:
    rows = [{"name": "a", "x": 1.5, "ok": True}, {"name": "long name", "x": 10}]
    columns = meta_columns(["name"], rows)

    assert columns == ["name", "x", "ok"]
    assert render_table(columns, rows) == (
        "name         x  ok\n"  # booleans are not numbers: left-aligned
        "a          1.5  true\n"
        "long name   10\n"
    )


def test_csv_quotes_cells_that_need_it() -> None:
    rows = [{"tag": "a,b", "note": 'say "hi"'}]

    assert render_csv(["tag", "note"], rows) == 'tag,note\n"a,b","say ""hi"""\n'


def test_a_stage_without_dims_and_without_rows_prints_nothing() -> None:
    assert render_table([], []) == ""
    assert render_csv([], []) == ""
