"""The quick check (stat signatures): exact like the full check, and used when it can be.

Files are aged (mtime set an hour back) so that they are past the racy window at once; a run then
proves every item up to date and stores its signature; the next runs decide by stats alone.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import Project
from stagewise.model.pipeline import Link
from stagewise.model.templates import Template
from stagewise.run.paths import AssetPaths
from stagewise.state.filehash import FileFingerprinter
from test_reruns import EVERYTHING, ITEMS, edit, output, run, run_ok, write_project


@pytest.fixture
def done(project: Project) -> Project:
    """The pipeline of the rerun tests after one complete run."""
    write_project(project)
    assert run_ok(project) == EVERYTHING
    return project


# --- renderers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("sky/{split}/{sim:04d}.npy", ("train", 7)),
        ("{sim}_{split}.txt", ("a.b", -3)),
        ("x/{sim:>3}/{split}", ("t", 5)),
        ("{split}{{lit}}/{sim:x}", ("s", 255)),
        ("{stage}/{split}.{sim}", ("u", 1)),
    ],
)
def test_positional_renderer_gives_what_render_gives(text, values):
    template = Template(text)
    render = template.positional({"split": 0, "sim": 1}, {"stage": "st"})
    assert render is not None
    assert render(values) == template.render({"split": values[0], "sim": values[1], "stage": "st"})


@pytest.mark.parametrize("bad", ["", "..", "a/b", "."])
def test_positional_renderer_refuses_what_render_refuses(bad):
    render = Template("x/{split}/{sim}.txt").positional({"split": 0, "sim": 1}, {})
    assert render is not None
    assert render((bad, 1)) is None


def test_positional_renderer_needs_every_field():
    assert Template("{split}/{other}").positional({"split": 0}, {}) is None


def test_asset_renderer_matches_locate(done: Project, in_process_loading):
    from stagewise import load

    model = load(done.root / "pipeline.yaml").session().model
    paths = AssetPaths(model)
    roots = paths.roots()
    for link in (Link(None, "raw"), Link("clean", "clean"), Link("scale", "scaled")):
        render = paths.renderer(link, ("split", "sim"))
        assert render is not None
        for values in (("train", 0), ("test", 1)):
            rid, rel = paths.locate(link, dict(zip(("split", "sim"), values, strict=True)))
            assert render(values) == roots[rid] + os.sep + rel


# --- signatures in runs -----------------------------------------------------------------------------


def age(root: Path) -> None:
    """Set every file's mtime an hour back: past the racy window, as files of yesterday are."""
    old = time.time() - 3600
    for path in root.rglob("*"):
        if path.is_file() and ".stagewise" not in path.parts and "__pycache__" not in path.parts:
            os.utime(path, (old, old))


def sigs(project: Project) -> dict[str, int]:
    with sqlite3.connect(project.root / "out" / ".stagewise" / "state.db") as conn:
        rows = conn.execute(
            "SELECT items.stage, count(sig) FROM items LEFT JOIN sigs USING (stage, key) GROUP BY items.stage"
        ).fetchall()
    return dict(rows)


@pytest.fixture
def signed(done: Project) -> Project:
    """After a complete run, files aged and one more run that stores the signatures."""
    age(done.root)
    assert run_ok(done) == []
    assert sigs(done) == {"clean": 5, "scale": 5, "reduce": 2}
    return done


def test_no_signature_right_after_writing(done):
    assert sigs(done) == {"clean": 0, "scale": 0, "reduce": 0}  # outputs are racy when written


def test_signed_noop_runs_without_digests(signed, in_process_loading, monkeypatch):
    from stagewise import load

    def refuse(*args, **kwargs):
        raise AssertionError("the quick check should have settled these items")

    pipeline = load(signed.root / "pipeline.yaml")
    monkeypatch.setattr(FileFingerprinter, "fingerprint_key", refuse)
    report = pipeline.run(["clean", "scale"], executor="serial", progress=False)
    assert report.ok
    assert report.counts["clean"]["uptodate"] == 5
    assert report.counts["scale"]["uptodate"] == 5


def test_signed_input_edit_keeping_mtime_reruns_its_items(signed):
    source = signed.root / "raw/train/1.txt"
    before = source.stat()
    source.write_text("13 057 4\n")  # same size
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime still changes
    assert run_ok(signed) == ["clean train 1", "reduce train", "scale train 1"]


def test_signed_touch_reruns_nothing(signed):
    (signed.root / "raw/test/0.txt").touch()
    os.utime(output(signed, "clean/train/2.txt"))
    assert run_ok(signed) == []


def test_signed_collection_member_rewritten_with_the_same_bytes_stops_the_cascade(signed):
    output(signed, "scaled/test/0.txt").write_text("9 9 9")  # scale reruns and writes it back
    assert run_ok(signed) == ["scale test 0"]


def test_signed_collection_member_rejected_reruns_the_reduction(signed):
    result, executed = run(signed, "clean", "--force", "--where", "split=test", REJECT_ITEM="clean test 1")
    assert result.code == 0, result.describe()
    assert executed == ["clean test 0", "clean test 1"]
    assert run_ok(signed) == ["reduce test"]  # scale test 1 is rejected in turn: one member fewer
    assert output(signed, "total/test.txt").read_text() == "0:2 4 0"


def test_signed_noop_settles_the_reduction_by_stats(signed, in_process_loading, monkeypatch):
    from stagewise import load

    def refuse(*args, **kwargs):
        raise AssertionError("the quick check should have settled the reduction")

    pipeline = load(signed.root / "pipeline.yaml")
    monkeypatch.setattr(FileFingerprinter, "fingerprint_many_keys", refuse)
    monkeypatch.setattr(FileFingerprinter, "fingerprint_key", refuse)
    report = pipeline.run(executor="serial", progress=False)
    assert report.ok
    assert report.counts["reduce"]["uptodate"] == 2


def test_signed_deleted_output_reruns_its_item(signed):
    output(signed, "scaled/test/1.txt").unlink()
    assert run_ok(signed) == ["scale test 1"]


def test_signed_parameter_change_reruns_the_stage(signed):
    edit(signed, "pipeline.yaml", "threshold: 100", "threshold: 160")
    assert run_ok(signed) == sorted(
        [f"clean {i}" for i in ITEMS]
        + ["reduce test", "reduce train", "scale test 1", "scale train 0", "scale train 1", "scale train 2"]
    )


def test_signed_item_below_a_failed_upstream_item_is_not_up_to_date(signed):
    edit(signed, "pipeline.yaml", "threshold: 100", "threshold: 99")
    result_code = signed.cli("run", "clean", env={"FAIL_ITEM": "clean test 0"}).code
    assert result_code == 1
    # scale test 0 reads a failed item: the quick check must not call it done
    plan = signed.cli("run", "scale", "--dry-run")
    assert "upstream failed" in plan.output, plan.describe()


def test_signature_survives_a_run_that_changes_nothing_else(signed):
    age(signed.root)  # new mtimes: every signature is stale, the full check proves them again
    assert run_ok(signed) == []
    assert sigs(signed) == {"clean": 5, "scale": 5, "reduce": 2}
    assert run_ok(signed) == []


def test_forced_rerun_that_fails_drops_the_signature(signed):
    result = signed.cli("run", "clean", "--force", "--where", "split=test", env={"FAIL_ITEM": "clean test 1"})
    assert result.code == 1, result.describe()
    assert sigs(signed)["clean"] == 3  # the two rerun items are not proven yet
    result, executed = run(signed)
    assert executed == ["clean test 1"]  # previously failed: the old signature must not vouch for it


def test_a_store_of_schema_1_is_migrated(tmp_path):
    from stagewise.state.store import SCHEMA_VERSION, StateStore

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE items (stage TEXT, key TEXT, status TEXT, PRIMARY KEY (stage, key));"
            "PRAGMA user_version = 1;"
        )
    with StateStore(path, readonly=True) as store:
        assert store.get_sigs("x") == {}  # read as it is: no signatures yet
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with StateStore(path) as store:
        assert store.get_sigs("x") == {}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
