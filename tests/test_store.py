"""The SQLite state store: records, stat cache, runs, batching, durability, damaged files."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagewise.state.store as store_module
from stagewise.errors import StateError
from stagewise.state.batch import BatchWriter
from stagewise.state.filehash import StatKey, StatRow
from stagewise.state.store import SCHEMA_VERSION, ItemRecord, StateStore

SRC = Path(store_module.__file__).resolve().parents[2]


def record(key: str = "train|1", stage: str = "clean", **changes: Any) -> ItemRecord:
    fields: dict[str, Any] = {
        "stage": stage,
        "key": key,
        "status": "done",
        "code_fp": "c0de",
        "params_hash": "9a7a",
        "code_parts": {"clean": "c1", "helpers.f": "c2"},
        "params": {"threshold": 3.0, "mode": "fast", "layers": [64, 64]},
        "inputs": {"sky": "d1", "mask": "d2", "all": {"0": "d3", "1": "d4"}},
        "outputs": {"clean": ("clean/train/0001.npy", "d5")},
        "meta": {"max": 1.5, "note": "ünïcode"},
        "reason": None,
        "error": None,
        "started": 1700000000.25,
        "duration": 0.5,
        "host": "node1",
        "run_id": "20261122-0001",
    }
    fields.update(changes)
    return ItemRecord(**fields)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with StateStore(tmp_path / ".stagewise" / "state.db") as s:
        yield s


def test_records_round_trip_with_every_field(store: StateStore) -> None:
    original = record()
    store.put_items([original, record("train|2", status="failed", error="Traceback...")])
    got = store.get_items("clean")
    assert set(got) == {"train|1", "train|2"}
    assert got["train|1"] == original
    assert got["train|1"].outputs == {"clean": ("clean/train/0001.npy", "d5")}
    assert got["train|2"].status == "failed" and got["train|2"].error == "Traceback..."
    assert store.get_item("clean", "train|1") == original
    assert store.get_item("clean", "nope") is None


def test_json_fields_default_to_empty_mappings(store: StateStore) -> None:
    store.put_items([ItemRecord("s", "k", "rejected", reason="too faint")])
    got = store.get_items("s")["k"]
    assert (got.params, got.inputs, got.outputs, got.meta, got.code_parts) == ({},) * 5
    assert got.reason == "too faint"


def test_records_are_frozen(store: StateStore) -> None:
    store.put_items([record()])
    got = store.get_items("clean")["train|1"]
    with pytest.raises(AttributeError):
        got.meta = {}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.status = "failed"  # type: ignore[misc]
    assert dataclasses.replace(got, status="failed").meta == got.meta


def test_upsert_replaces_the_whole_record(store: StateStore) -> None:
    store.put_items([record(meta={"a": 1})])
    store.put_items([record(status="failed", meta={}, reason="boom")])
    got = store.get_items("clean")
    assert len(got) == 1
    assert got["train|1"].status == "failed" and got["train|1"].meta == {}


def test_delete_items_stages_and_counts(store: StateStore) -> None:
    store.put_items([record(f"k{i}") for i in range(5)] + [record("x", stage="plot")])
    store.put_items([record("bad", status="failed")])
    assert store.stages() == ["clean", "plot"]
    assert store.item_counts() == {"clean": {"done": 5, "failed": 1}, "plot": {"done": 1}}
    assert store.delete_items("clean", ["k0", "k1", "absent"]) == 2
    assert set(store.get_items("clean")) == {"k2", "k3", "k4", "bad"}
    assert store.delete_items("clean") == 4
    assert store.stages() == ["plot"]


def test_runs_are_recorded(store: StateStore) -> None:
    store.start_run("r1", command="stagewise run clean", selection=["clean"], started=10.0)
    store.start_run("r2", command="stagewise run", started=20.0, pid=42, host="h")
    store.finish_run("r1", outcome="done", summary={"clean": {"done": 3}}, finished=15.0)
    runs = store.list_runs()
    assert [r.run_id for r in runs] == ["r1", "r2"]
    assert runs[0].outcome == "done" and runs[0].finished == 15.0
    assert runs[0].summary == {"clean": {"done": 3}} and runs[0].selection == ["clean"]
    assert runs[0].pid == os.getpid()
    assert (runs[1].outcome, runs[1].pid, runs[1].host, runs[1].finished) == ("running", 42, "h", None)
    assert store.close_unfinished_runs() == 1
    assert [r.outcome for r in store.list_runs()] == ["done", "interrupted"]


def test_stat_cache_round_trip(store: StateStore) -> None:
    rows = [StatRow("output", f"a/{i}.npy", StatKey(i, 2, 3, 4), f"d{i}", 5) for i in range(3000)]
    store.put_stats([*rows, StatRow("paths.data", "mask.npy", StatKey(1, 1, 1, 1), "m", 9)])
    everything = store.get_stats("output")
    assert len(everything) == 3000
    assert everything["a/7.npy"] == (StatKey(7, 2, 3, 4), "d7", 5)
    few = store.get_stats("output", ["a/1.npy", "a/2.npy", "missing"])
    assert set(few) == {"a/1.npy", "a/2.npy"}
    many = store.get_stats("output", [f"a/{i}.npy" for i in range(2500)] + ["missing"])
    assert len(many) == 2500
    store.delete_stats("output", ["a/1.npy"])
    assert "a/1.npy" not in store.get_stats("output")
    store.delete_stats("output")
    assert store.get_stats("output") == {}
    assert set(store.get_stats("paths.data")) == {"mask.npy"}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StateError) as info:
        StateStore(path)
    message = str(info.value)
    assert f"{path} was written by a newer stagewise" in message
    assert f"(schema {SCHEMA_VERSION + 5}, this one reads {SCHEMA_VERSION})" in message
    assert "upgrade stagewise" in (info.value.hint or "")


def test_garbage_file_is_reported_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not an sqlite database at all\n" * 200)
    with pytest.raises(StateError) as info:
        StateStore(path)
    assert str(path) in info.value.message and "damaged" in info.value.message
    assert "move it aside" in (info.value.hint or "")
    assert "outputs are intact" in (info.value.hint or "")


def test_local_disk_uses_wal_and_network_fs_uses_rollback_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore(tmp_path / "local.db", network_fs=False) as local:
        assert local.journal_mode == "wal"
        assert local._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    monkeypatch.setattr(store_module, "is_network_fs", lambda path: True)
    with StateStore(tmp_path / "nfs.db") as remote:
        assert remote.network_fs and remote.journal_mode == "delete"
        assert remote._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        remote.put_items([record()])
    # A project moved from NFS to a local disk switches back to WAL, keeping its records.
    monkeypatch.setattr(store_module, "is_network_fs", lambda path: False)
    with StateStore(tmp_path / "nfs.db") as moved:
        assert moved.journal_mode == "wal" and "train|1" in moved.get_items("clean")


def test_readonly_store_reads_and_treats_a_missing_file_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "out" / ".stagewise" / "state.db"
    with StateStore(path, readonly=True) as empty:
        assert empty.get_items("clean") == {} and empty.list_runs() == []
    assert not path.parent.exists()  # status must not create the state folder
    with StateStore(path) as writer:
        writer.put_items([record()])
    with StateStore(path, readonly=True) as reader:
        assert set(reader.get_items("clean")) == {"train|1"}
        with pytest.raises(StateError):
            reader.put_items([record("other")])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batch_writer_commits_on_size(store: StateStore) -> None:
    writer = BatchWriter(store, max_rows=10, max_age=60, clock=FakeClock())
    writer.add_items(record(f"k{i}") for i in range(9))
    assert writer.pending == 9 and writer.commits == 0
    writer.add_stats([StatRow("output", "x", StatKey(1, 2, 3, 4), "d", 5)])
    assert writer.pending == 0 and writer.commits == 1
    assert len(store.get_items("clean")) == 9


def test_batch_writer_commits_on_age(store: StateStore) -> None:
    clock = FakeClock()
    writer = BatchWriter(store, max_rows=500, max_age=0.2, clock=clock)
    writer.add_items([record("a")])
    clock.now += 0.1
    assert not writer.flush_if_due() and writer.pending == 1
    writer.add_items([record("b")])  # the age counts from the oldest row
    clock.now += 0.15
    assert writer.flush_if_due() and writer.commits == 1
    writer.add_items([record("c")])
    clock.now += 0.3
    writer.add_items([record("d")])  # an add finds the buffer old and commits it all
    assert writer.pending == 0 and writer.commits == 2
    assert not writer.flush_if_due()


def test_store_writer_is_flushed_by_reads_and_close(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.writer.add_items([record("a")])
    assert store.writer.pending == 1
    assert set(store.get_items("clean")) == {"a"}  # reads see buffered rows
    store.writer.add_items([record("b")])
    store.close()
    store.close()  # idempotent
    with StateStore(path) as again:
        assert set(again.get_items("clean")) == {"a", "b"}


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, time
    from stagewise.state.store import ItemRecord, StateStore

    store = StateStore(sys.argv[1])
    def rec(i):
        return ItemRecord("s", f"k{i}", "done", inputs={"x": str(i)})
    store.writer.add_items([rec(i) for i in range(10)])
    time.sleep(0.25)
    store.writer.add_items([rec(10)])    # the buffer is older than 0.2 s: all 11 commit now
    store.writer.add_items([rec(i) for i in range(11, 16)])   # in flight: not yet due
    print(store.writer.commits, store.writer.pending, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_rows_survive_sigkill_right_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "out" / ".stagewise" / "state.db"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["1", "5"]
    with StateStore(path) as reopened:
        got = reopened.get_items("s")
    assert set(got) == {f"k{i}" for i in range(11)}  # the 5 in flight are lost, nothing else
    assert got["k10"].inputs == {"x": "10"}


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None)
@given(
    meta=st.dictionaries(st.text(max_size=10), _json, max_size=5),
    params=st.dictionaries(st.text(max_size=10), _json, max_size=5),
    key=st.text(min_size=1, max_size=30),
)
def test_json_fields_round_trip_any_json(meta: dict[str, Any], params: dict[str, Any], key: str) -> None:
    with tempfile.TemporaryDirectory() as folder, StateStore(Path(folder) / "s.db") as s:
        s.put_items([record(key, meta=meta, params=params)])
        got = s.get_items("clean")[key]
    assert got.meta == meta and got.params == params
    assert not any(isinstance(v, float) and math.isnan(v) for v in got.meta.values())
