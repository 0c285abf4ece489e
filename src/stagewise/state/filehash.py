"""File content digests, and a stat cache so that unchanged files are never read twice.

A digest is the xxh3_128 hex of a file's bytes. `FileFingerprinter` keeps, per file, the
`StatKey` (size, mtime, inode, ctime) it saw when it hashed the file; while the key is unchanged
the cached digest is served with one ``os.stat``. Two rules keep that exact (research hazard H7):

- *racy clean* (git's rule): a file modified within `RACY_WINDOW_NS` of the moment it was hashed
  may be modified again without its (coarse) timestamps changing, so such an entry is re-hashed
  the next time it is asked for; the re-hash happens later, so the entry then becomes clean;
- paths are cached relative to a named root (``"output"``, ``"paths.data"``), so a moved project
  keeps its cache (a ``mv`` keeps inodes and the files' ctimes).

Only the coordinator writes the cache. A worker that hashed a file while writing it hands back the
digest and `StatKey` (taken *after* the final rename, which changes ctime), and the coordinator
calls `FileFingerprinter.record`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import xxhash

__all__ = [
    "HASH_BUFFER_SIZE",
    "RACY_WINDOW_NS",
    "CachedStat",
    "DictStatCache",
    "FileFingerprinter",
    "StatCache",
    "StatKey",
    "StatRow",
    "hash_file",
    "new_hasher",
    "stat_key",
]

#: Read size for hashing; one buffer per thread is allocated once and reused.
HASH_BUFFER_SIZE = 1 << 20

#: A cached digest is trusted only if the file's mtime is older than the hashing moment by at
#: least this much. 2 s covers the coarsest timestamps in use (FAT, some NFS exports; ext4 and
#: friends are at a kernel tick, ~4 ms) and a little clock skew between an NFS client and server.
RACY_WINDOW_NS = 2_000_000_000

#: Pending stat-cache rows written out by `FileFingerprinter.fingerprint` in one batch.
_WRITE_BATCH = 500

_local = threading.local()


class StatKey(NamedTuple):
    """What ``os.stat`` says about a file; any change means "re-hash".

    ``ctime_ns`` is there because a process cannot set it: a same-size edit whose mtime was
    restored (``rsync -t``, ``tar x``) still changes ctime. ``ino`` catches atomic replacement.
    """

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int


class CachedStat(NamedTuple):
    """One stat-cache entry: the key seen at hashing time, the digest, and when it was hashed."""

    key: StatKey
    digest: str
    hashed_at_ns: int


class StatRow(NamedTuple):
    """One stat-cache entry with its place, as written to a `StatCache`."""

    root: str
    relpath: str
    key: StatKey
    digest: str
    hashed_at_ns: int


class StatCache(Protocol):
    """Where `FileFingerprinter` keeps entries (`stagewise.state.store.StateStore`, or a dict)."""

    def get_stats(
        self, root: str, relpaths: Iterable[str] | None = None
    ) -> dict[str, CachedStat]:  # pragma: no cover - protocol
        """Return the entries of ``root`` (only those of ``relpaths`` when given)."""
        ...

    def put_stats(self, rows: Iterable[StatRow]) -> None:  # pragma: no cover - protocol
        """Insert or replace entries."""
        ...


class DictStatCache:
    """An in-memory `StatCache`, for tests and for runs without a state store."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], CachedStat] = {}

    def get_stats(self, root: str, relpaths: Iterable[str] | None = None) -> dict[str, CachedStat]:
        """Return the entries of ``root`` (only those of ``relpaths`` when given)."""
        if relpaths is None:
            return {rel: v for (r, rel), v in self.entries.items() if r == root}
        return {rel: self.entries[root, rel] for rel in relpaths if (root, rel) in self.entries}

    def put_stats(self, rows: Iterable[StatRow]) -> None:
        """Insert or replace entries."""
        for row in rows:
            self.entries[row.root, row.relpath] = CachedStat(row.key, row.digest, row.hashed_at_ns)


def new_hasher() -> xxhash.xxh3_128:
    """Return a fresh hasher of the digest family `hash_file` uses (for hash-while-write)."""
    return xxhash.xxh3_128()


def hash_file(path: str | os.PathLike[str]) -> str:
    """Return the xxh3_128 hex digest of a file's content, streamed through a reused buffer.

    Args:
        path: the file.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it is missing).
    """
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(HASH_BUFFER_SIZE)
    view = memoryview(buf)
    hasher = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            hasher.update(view[:n])
    return hasher.hexdigest()


def _key(st: os.stat_result) -> StatKey:
    return StatKey(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def stat_key(path: str | os.PathLike[str]) -> StatKey | None:
    """Return the `StatKey` of a file (symbolic links followed), or None when it is missing."""
    try:
        return _key(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


class FileFingerprinter:
    """Digests of files under named roots, served from a stat cache when provably unchanged.

    Not thread-safe: the coordinator owns it. Entries of a root are read from the cache once per
    (root, path) and then kept in memory; new entries are written back in batches (losing them
    only costs a re-hash, so they need no durability guarantee). Call `flush` before closing.

    Args:
        cache: where entries persist (the state store, or a `DictStatCache`).
        roots: the root folder of each root id, e.g. ``{"output": Path("out")}``.
        racy_window_ns: see `RACY_WINDOW_NS`.
        hash_fn: computes a digest from a path (default `hash_file`).
        clock: wall clock in ns, compared with file mtimes (injectable for tests).
        stat: returns a file's `StatKey` or None (injectable to simulate coarse filesystems).
    """

    def __init__(
        self,
        cache: StatCache,
        roots: Mapping[str, str | os.PathLike[str]],
        *,
        racy_window_ns: int = RACY_WINDOW_NS,
        hash_fn: Callable[[str], str] = hash_file,
        clock: Callable[[], int] = time.time_ns,
        stat: Callable[[str], StatKey | None] = stat_key,
    ) -> None:
        self._cache = cache
        self._roots = {name: os.fspath(path) for name, path in roots.items()}
        self._racy_window_ns = racy_window_ns
        self._hash_fn = hash_fn
        self._clock = clock
        self._stat = stat
        # Per root: relpath -> entry, or None when the cache was asked and had nothing.
        self._known: dict[str, dict[str, CachedStat | None]] = {}
        self._loaded_all: set[str] = set()
        self._pending: list[StatRow] = []
        self._fresh: set[tuple[str, str]] = set()
        """Outputs this run wrote (digested by their workers, see `record`): their racy entries
        are trusted until the run ends, as nothing but the run writes its outputs."""
        self.hashed = 0
        """How many files were read and hashed (for progress and tests)."""

    @property
    def roots(self) -> dict[str, str]:
        """The root folder of each root id."""
        return dict(self._roots)

    def path(self, root: str, relpath: str) -> str:
        """Return the full path of ``relpath`` under root id ``root``."""
        return os.path.join(self._roots[root], relpath)

    def fingerprint(self, root: str, relpath: str) -> str | None:
        """Return the digest of one file, or None when it is missing.

        Args:
            root: a root id given at construction.
            relpath: the file's path relative to that root, with ``/`` separators.
        """
        return self.fingerprint_key(root, relpath)[0]

    def fingerprint_key(self, root: str, relpath: str) -> tuple[str | None, StatKey | None]:
        """The digest of one file (None when missing), and the `StatKey` that proves it.

        The key is given only when the file is past the racy window: any file with that key
        has that digest. None when the file is missing, racy, or changed while being hashed.
        """
        known = self._load(root, (relpath,))
        found = self._one_key(root, relpath, known)
        if len(self._pending) >= _WRITE_BATCH:
            self.flush()
        return found

    def fingerprint_many(self, root: str, relpaths: Iterable[str]) -> dict[str, str | None]:
        """Return the digest of each file (None when missing), with one cache lookup.

        On a no-op rerun this costs one ``os.stat`` and one dict lookup per file.

        Args:
            root: a root id given at construction.
            relpaths: paths relative to that root.
        """
        return {rel: found[0] for rel, found in self.fingerprint_many_keys(root, relpaths).items()}

    def fingerprint_many_keys(
        self, root: str, relpaths: Iterable[str]
    ) -> dict[str, tuple[str | None, StatKey | None]]:
        """`fingerprint_key` of each file, with one cache lookup."""
        rels = relpaths if isinstance(relpaths, list | tuple) else list(relpaths)
        known = self._load(root, rels)
        if self._stat is not stat_key:
            result = {rel: self._one_key(root, rel, known) for rel in rels}
        else:
            result = self._many_fast(root, rels, known)
        self.flush()
        return result

    def _many_fast(
        self, root: str, rels: Sequence[str], known: dict[str, CachedStat | None]
    ) -> dict[str, tuple[str | None, StatKey | None]]:
        # The hot loop of a no-op rerun, with everything the general path does per file hoisted
        # out (path joining, StatKey building, attribute lookups): ~1 µs on top of the stat.
        prefix = os.path.join(self._roots[root], "")
        window = self._racy_window_ns
        stat, get, one = os.stat, known.get, self._one_key
        result: dict[str, tuple[str | None, StatKey | None]] = {}
        for rel in rels:
            entry = get(rel)
            if entry is not None:
                try:
                    st = stat(prefix + rel)
                except (FileNotFoundError, NotADirectoryError):
                    result[rel] = (None, None)
                    continue
                key = entry[0]
                size, mtime, ino, ctime = key
                if (
                    st.st_mtime_ns == mtime
                    and st.st_size == size
                    and st.st_ino == ino
                    and st.st_ctime_ns == ctime
                    and mtime + window <= entry[2]
                ):
                    result[rel] = (entry[1], key)
                    continue
            result[rel] = one(root, rel, known)
        return result

    def preload(self, root: str) -> None:
        """Read every cached entry of ``root`` in one query (a run checks most of them anyway)."""
        if root in self._loaded_all:
            return
        known = self._known.setdefault(root, {})
        for rel, entry in self._cache.get_stats(root).items():
            known.setdefault(rel, entry)
        self._loaded_all.add(root)

    def record(self, root: str, relpath: str, digest: str, key: StatKey, hashed_at_ns: int) -> None:
        """Remember a digest computed elsewhere (by the worker that wrote the file).

        Args:
            root: a root id given at construction.
            relpath: the file's path relative to that root.
            digest: the content digest, from the same hash family as `hash_file`.
            key: the file's `StatKey` taken after its final rename.
            hashed_at_ns: wall-clock time (``time.time_ns()``) when hashing started.
        """
        entry = CachedStat(key, digest, hashed_at_ns)
        self._known.setdefault(root, {})[relpath] = entry
        self._fresh.add((root, relpath))
        if key.mtime_ns + self._racy_window_ns <= hashed_at_ns:  # a racy entry is never read back
            self._pending.append(StatRow(root, relpath, key, digest, hashed_at_ns))
            if len(self._pending) >= _WRITE_BATCH:
                self.flush()

    def flush(self) -> None:
        """Write the pending cache entries in one batch."""
        if self._pending:
            rows, self._pending = self._pending, []
            self._cache.put_stats(rows)

    def _load(self, root: str, relpaths: Iterable[str]) -> dict[str, CachedStat | None]:
        if root not in self._roots:
            raise KeyError(f"unknown root id {root!r}; known: {sorted(self._roots)}")
        known = self._known.setdefault(root, {})
        if root in self._loaded_all:
            return known
        missing = [rel for rel in relpaths if rel not in known]
        if not missing:
            return known
        if len(missing) > 1000 and not known:
            # A large first request: one scan of the root beats thousands of point lookups.
            known.update(self._cache.get_stats(root))
            self._loaded_all.add(root)
            return known
        found = self._cache.get_stats(root, missing)
        for rel in missing:
            known[rel] = found.get(rel)
        return known

    def _one_key(
        self, root: str, relpath: str, known: dict[str, CachedStat | None]
    ) -> tuple[str | None, StatKey | None]:
        full = os.path.join(self._roots[root], relpath)
        key = self._stat(full)
        if key is None:
            return None, None
        entry = known.get(relpath)
        window = self._racy_window_ns
        if entry is not None and entry.key == key:
            if key.mtime_ns + window <= entry.hashed_at_ns:
                return entry.digest, key
            if (root, relpath) in self._fresh:  # written in this run: trusted, but not proven
                return entry.digest, None
        # Time taken before reading, so a write during hashing makes the new entry racy.
        hashed_at = self._clock()
        digest = self._hash_fn(full)
        self.hashed += 1
        if self._stat(full) != key:
            return digest, None  # changed while we read it: neither cached nor proven
        known[relpath] = CachedStat(key, digest, hashed_at)
        if key.mtime_ns + window > hashed_at:
            return digest, None  # racy: good for this run only, so not written to the cache
        self._pending.append(StatRow(root, relpath, key, digest, hashed_at))
        return digest, key
