"""File digests and the stat cache: served when unchanged, re-hashed when changed or racy."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from stagewise.state.filehash import (
    HASH_BUFFER_SIZE,
    RACY_WINDOW_NS,
    CachedStat,
    DictStatCache,
    FileFingerprinter,
    StatKey,
    StatRow,
    hash_file,
    new_hasher,
    stat_key,
)
from stagewise.state.store import StateStore

HOUR_NS = 3600 * 10**9


def write(path: Path, data: bytes, *, age_ns: int = HOUR_NS) -> None:
    """Write a file and date it ``age_ns`` in the past, so that its cache entry is not racy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time_ns() - age_ns
    os.utime(path, ns=(then, then))


class CountingHash:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: str) -> str:
        self.calls.append(path)
        return hash_file(path)


class CountingCache(DictStatCache):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.puts = 0

    def get_stats(self, root: str, relpaths: Iterable[str] | None = None) -> dict[str, CachedStat]:
        self.gets += 1
        return super().get_stats(root, relpaths)

    def put_stats(self, rows: Iterable[StatRow]) -> None:
        self.puts += 1
        super().put_stats(rows)


@pytest.mark.parametrize("size", [0, 1, HASH_BUFFER_SIZE - 1, HASH_BUFFER_SIZE, 3 * HASH_BUFFER_SIZE + 7])
def test_hash_file_is_xxh3_128_of_the_content(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert hash_file(tmp_path / "f") == xxhash.xxh3_128(data).hexdigest()
    hasher = new_hasher()
    hasher.update(data)
    assert hasher.hexdigest() == hash_file(str(tmp_path / "f"))


def test_stat_key_of_missing_file_is_none(tmp_path: Path) -> None:
    assert stat_key(tmp_path / "absent") is None
    assert stat_key(tmp_path / "absent" / "below") is None
    (tmp_path / "f").write_bytes(b"abc")
    st = os.stat(tmp_path / "f")
    assert stat_key(tmp_path / "f") == StatKey(3, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def test_unchanged_file_is_hashed_once(tmp_path: Path) -> None:
    write(tmp_path / "a.npy", b"alpha")
    hasher = CountingHash()
    fp = FileFingerprinter(DictStatCache(), {"output": tmp_path}, hash_fn=hasher)
    digest = fp.fingerprint("output", "a.npy")
    assert digest == xxhash.xxh3_128(b"alpha").hexdigest()
    assert fp.fingerprint("output", "a.npy") == digest
    assert len(hasher.calls) == 1 and fp.hashed == 1


def test_missing_file_has_no_fingerprint(tmp_path: Path) -> None:
    fp = FileFingerprinter(DictStatCache(), {"output": tmp_path})
    assert fp.fingerprint("output", "nope.npy") is None
    with pytest.raises(KeyError, match="unknown root id"):
        fp.fingerprint("elsewhere", "a")


def test_changes_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write(path, b"one")
    fp = FileFingerprinter(DictStatCache(), {"r": tmp_path})
    first = fp.fingerprint("r", "a.txt")
    # Same size, mtime restored (rsync -t): only ctime tells.
    st = os.stat(path)
    path.write_bytes(b"two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fp.fingerprint("r", "a.txt") == xxhash.xxh3_128(b"two").hexdigest() != first
    # Atomic replacement by an older file with identical stamps: the inode tells.
    other = tmp_path / "b.txt"
    write(other, b"333")
    os.replace(other, path)
    assert fp.fingerprint("r", "a.txt") == xxhash.xxh3_128(b"333").hexdigest()


def test_touch_rehashes_but_keeps_the_digest(tmp_path: Path) -> None:
    write(tmp_path / "a", b"same")
    hasher = CountingHash()
    fp = FileFingerprinter(DictStatCache(), {"r": tmp_path}, hash_fn=hasher)
    before = fp.fingerprint("r", "a")
    os.utime(tmp_path / "a", ns=(time.time_ns() - 60 * 10**9,) * 2)
    assert fp.fingerprint("r", "a") == before and len(hasher.calls) == 2


def test_racy_entry_is_rehashed_until_it_is_old_enough(tmp_path: Path) -> None:
    now = [10**18]
    write(tmp_path / "a", b"x")
    mtime = now[0] - RACY_WINDOW_NS // 2  # modified one second before it was hashed
    os.utime(tmp_path / "a", ns=(mtime, mtime))
    hasher = CountingHash()
    fp = FileFingerprinter(DictStatCache(), {"r": tmp_path}, hash_fn=hasher, clock=lambda: now[0])
    for _ in range(3):
        fp.fingerprint("r", "a")
    assert len(hasher.calls) == 3  # racy: never trusted
    now[0] += 5 * 10**9
    fp.fingerprint("r", "a")  # hashed again, now long after its mtime: clean from here on
    fp.fingerprint("r", "a")
    fp.fingerprint("r", "a")
    assert len(hasher.calls) == 4


def test_moved_root_keeps_its_cache(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / "old" / "sub" / f"{i}.npy", bytes([i]) * 10)
    cache = DictStatCache()
    rels = [f"sub/{i}.npy" for i in range(5)]
    first = FileFingerprinter(cache, {"output": tmp_path / "old"}).fingerprint_many("output", rels)
    (tmp_path / "old").rename(tmp_path / "new")
    hasher = CountingHash()
    moved = FileFingerprinter(cache, {"output": tmp_path / "new"}, hash_fn=hasher)
    assert moved.fingerprint_many("output", rels) == first
    assert hasher.calls == []


def test_recorded_digest_is_served_without_reading(tmp_path: Path) -> None:
    write(tmp_path / "out.npy", b"payload")
    key = stat_key(tmp_path / "out.npy")
    assert key is not None

    def must_not_hash(path: str) -> str:
        raise AssertionError(f"re-read {path}")

    cache = DictStatCache()
    fp = FileFingerprinter(cache, {"output": tmp_path}, hash_fn=must_not_hash)
    fp.record("output", "out.npy", "worker-digest", key, time.time_ns())
    assert fp.fingerprint("output", "out.npy") == "worker-digest"
    fp.flush()
    fresh = FileFingerprinter(cache, {"output": tmp_path}, hash_fn=must_not_hash)
    assert fresh.fingerprint("output", "out.npy") == "worker-digest"


def test_fingerprint_many_does_one_lookup_and_one_write(tmp_path: Path) -> None:
    rels = [f"d/{i}.txt" for i in range(50)]
    for rel in rels:
        write(tmp_path / rel, rel.encode())
    cache = CountingCache()
    fp = FileFingerprinter(cache, {"output": tmp_path})
    got = fp.fingerprint_many("output", [*rels, "d/missing.txt"])
    assert got["d/missing.txt"] is None
    assert got["d/3.txt"] == xxhash.xxh3_128(b"d/3.txt").hexdigest()
    assert (cache.gets, cache.puts) == (1, 1)
    again = FileFingerprinter(cache, {"output": tmp_path})
    assert again.fingerprint_many("output", rels) == {r: got[r] for r in rels}
    assert (cache.gets, cache.puts, again.hashed) == (2, 1, 0)


def test_file_changing_while_hashed_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "a"
    write(path, b"before")

    def hash_then_modify(p: str) -> str:
        digest = hash_file(p)
        Path(p).write_bytes(b"after!!")
        return digest

    cache = DictStatCache()
    FileFingerprinter(cache, {"r": tmp_path}, hash_fn=hash_then_modify).fingerprint("r", "a")
    assert cache.entries == {}
    assert FileFingerprinter(cache, {"r": tmp_path}).fingerprint("r", "a") == hash_file(path)


def test_entries_persist_in_the_state_store(tmp_path: Path) -> None:
    rels = [f"{i}.bin" for i in range(3)]
    for rel in rels:
        write(tmp_path / "data" / rel, rel.encode() * 3)
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        first = FileFingerprinter(store, {"paths.data": tmp_path / "data"})
        digests = first.fingerprint_many("paths.data", rels)
    with StateStore(db) as store:
        second = FileFingerprinter(store, {"paths.data": tmp_path / "data"})
        assert second.fingerprint_many("paths.data", rels) == digests
        assert second.hashed == 0


class CoarseFs:
    """Simulates a filesystem with 1-second timestamps and no useful ctime or inode."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.now_ns = 1_000 * 10**9 + 123
        self.mtimes: dict[str, int] = {}

    def write(self, name: str, data: bytes) -> None:
        (self.folder / name).write_bytes(data)
        self.mtimes[str(self.folder / name)] = self.now_ns // 10**9 * 10**9

    def stat(self, path: str) -> StatKey | None:
        if path not in self.mtimes:
            return None
        return StatKey(os.path.getsize(path), self.mtimes[path], 1, self.mtimes[path])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "check"]),
            st.sampled_from([b"aaaa", b"bbbb", b"cccc"]),  # same size: only timestamps can tell
            st.integers(0, 3_000),  # milliseconds that pass first
        ),
        min_size=1,
        max_size=25,
    )
)
def test_racy_rule_keeps_digests_exact_on_coarse_timestamps(
    steps: list[tuple[str, bytes, int]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        fs = CoarseFs(Path(folder))
        fs.write("f", b"init")
        fp = FileFingerprinter(DictStatCache(), {"r": folder}, clock=lambda: fs.now_ns, stat=fs.stat)
        for action, data, wait_ms in steps:
            fs.now_ns += wait_ms * 10**6
            if action == "write":
                fs.write("f", data)
            else:
                truth = xxhash.xxh3_128((Path(folder) / "f").read_bytes()).hexdigest()
                assert fp.fingerprint("r", "f") == truth


def test_output_recorded_in_this_run_is_trusted_until_the_run_ends(tmp_path: Path) -> None:
    write(tmp_path / "out.npy", b"written by a worker")
    st = os.stat(tmp_path / "out.npy")
    key = StatKey(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    cache = DictStatCache()
    hasher = CountingHash()
    run = FileFingerprinter(cache, {"r": tmp_path}, hash_fn=hasher)
    run.record("r", "out.npy", "worker-digest", key, hashed_at_ns=st.st_mtime_ns)  # racy: just written
    assert run.fingerprint_key("r", "out.npy") == ("worker-digest", None)  # trusted, not proven
    assert hasher.calls == []
    run.flush()
    assert cache.entries == {}  # a racy entry would never be read back: not written
    next_run = FileFingerprinter(cache, {"r": tmp_path}, hash_fn=hasher)
    next_run.fingerprint("r", "out.npy")
    assert len(hasher.calls) == 1  # the next run hashes it again
