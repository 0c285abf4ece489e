"""The state store: one SQLite file, ``OUTPUT/.stagewise/state.db``, written by the coordinator.

It holds the record of every item (what made it, from what, with which outputs), the stat cache
of file digests, and the list of runs. Workers never open it; they return plain results that the
coordinator writes in batches (`BatchWriter`), so that a killed run loses at most the items that
finished in the last fraction of a second (SPEC 6).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from stagewise.errors import StateError
from stagewise.state.batch import BatchWriter
from stagewise.state.filehash import CachedStat, StatKey, StatRow
from stagewise.state.fsinfo import is_network_fs
from stagewise.state.records import (
    ITEM_SELECT,
    ITEM_UPSERT,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    ItemRecord,
    RunOutcome,
    RunRecord,
    dumps_json,
    item_from_row,
    item_to_row,
)

__all__ = ["SCHEMA_VERSION", "BatchWriter", "ItemRecord", "RunRecord", "StateStore"]


def _state_error(path: Path, exc: sqlite3.Error) -> StateError | None:
    """Translate an SQLite error into a StateError; None for our own bugs (re-raised as is)."""
    name = getattr(exc, "sqlite_errorname", "")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or type(exc) is sqlite3.DatabaseError:
        return StateError(
            f"{path}: the state store is damaged ({exc})",
            hint=f"move it aside (with any {path.name}-wal and {path.name}-shm files next to it); "
            "the outputs are intact, and the next run recomputes what it cannot prove up to date",
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StateError(
            f"{path}: the state store stayed locked ({exc})",
            hint="another process holds it open (a stagewise command, or an sqlite3 shell); retry",
        )
    return StateError(
        f"{path}: cannot use the state store ({exc})",
        hint="check that the folder is writable and the disk is not full",
    )


def _reraise(path: Path, exc: sqlite3.Error) -> NoReturn:
    error = _state_error(path, exc)
    if error is None:
        raise exc
    raise error from exc


class StateStore:
    """The SQLite state of one output root.

    Args:
        path: the database file, normally ``OUTPUT/.stagewise/state.db``; its folder is created.
        network_fs: whether the file is on a network filesystem; None detects it (`is_network_fs`).
        readonly: open without writing anything (``status``); a missing file reads as empty.
        busy_timeout: seconds to wait for a lock held by another connection.

    Raises:
        StateError: the file is not a database, is damaged, or has a newer schema.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        network_fs: bool | None = None,
        readonly: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        if network_fs is None:
            network_fs = is_network_fs(self.path.parent)
        self.network_fs = network_fs
        self.journal_mode = ""
        self.schema = 0
        """The schema version of the open store (an older one stays so when read-only)."""
        try:
            self._conn = self._connect(busy_timeout)
        except sqlite3.Error as exc:
            _reraise(self.path, exc)
        self.writer = BatchWriter(self)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        memory = self.readonly and not self.path.exists()
        if memory:
            target, uri = ":memory:", False
        elif self.readonly and not os.access(self.path.parent, os.W_OK):
            target, uri = f"{self.path.resolve().as_uri()}?mode=ro", True
        elif self.readonly:
            # Opened read-write but query_only: a ?mode=ro connection to a WAL database leaves
            # its -wal/-shm files behind; a writable one removes them when it closes.
            target, uri = str(self.path), False
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(self.path), False
        # isolation_level=None: no implicit transactions; we BEGIN/COMMIT explicitly.
        # check_same_thread=False: callbacks may run on other threads; self._lock serialises use.
        conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            version = self.schema = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} was written by a newer stagewise "
                    f"(schema {version}, this one reads {SCHEMA_VERSION})",
                    hint="upgrade stagewise (pip install -U stagewise)",
                )
            if self.readonly and not memory:
                conn.execute("PRAGMA query_only = ON")
                self.journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                return conn
            if not memory:
                self._set_journal(conn)
            if version < SCHEMA_VERSION:
                self.schema = SCHEMA_VERSION
                # One script, one transaction: a crash midway leaves the old version intact.
                steps = [SCHEMA] if version == 0 else [MIGRATIONS[v] for v in range(version, SCHEMA_VERSION)]
                conn.executescript(
                    f"BEGIN IMMEDIATE; {'; '.join(steps)}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_journal(self, conn: sqlite3.Connection) -> None:
        if self.network_fs:
            # WAL keeps its index in a shared-memory file (-shm) that only processes on one host
            # see coherently: over NFS/Lustre/GPFS it fails or corrupts (SQLite docs, "WAL does
            # not work over a network filesystem"). The rollback journal needs only file locks.
            # In rollback mode synchronous=NORMAL can corrupt the file on a crash, and each fsync
            # is what pushes the client's cached pages to the server, so FULL.
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
        else:
            # WAL: readers (a `status` during a run) never block the coordinator; with WAL,
            # NORMAL is corruption-safe and skips the fsync on each commit (a power cut may lose
            # the last commits, never the file). 56k commits/s vs 4k with FULL.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = NORMAL")
        self.journal_mode = str(mode).lower()

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _guard(self, *, write: bool = False, flush: bool = True) -> Iterator[sqlite3.Connection]:
        """Serialise access, flush buffered rows first (reads see them), map SQLite errors."""
        with self._lock:
            if flush and self.writer.pending:
                self.writer.flush()
            try:
                if write:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._conn
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                else:
                    yield self._conn
            except sqlite3.Error as exc:
                _reraise(self.path, exc)

    def _write(
        self,
        items: Sequence[ItemRecord],
        stats: Sequence[StatRow],
        sigs: Sequence[tuple[bytes, str, str]] = (),
    ) -> None:
        """Write items, stat rows and signatures in one transaction (the BatchWriter's commit)."""
        with self._guard(write=True, flush=False) as conn:
            if items:
                conn.executemany(ITEM_UPSERT, [item_to_row(r) for r in items])
            if sigs:
                conn.executemany("INSERT OR REPLACE INTO sigs (sig, stage, key) VALUES (?, ?, ?)", sigs)
            if stats:
                conn.executemany(
                    "INSERT OR REPLACE INTO statcache VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(r.root, r.relpath, *r.key, r.digest, r.hashed_at_ns) for r in stats],
                )

    def flush(self) -> None:
        """Commit everything buffered in `writer`."""
        with self._lock:
            self.writer.flush()

    def close(self) -> None:
        """Flush the buffer and close the database (idempotent)."""
        with self._lock:
            if getattr(self, "_conn", None) is None:
                return
            try:
                self.writer.flush()
            finally:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- items --------------------------------------------------------------------------------

    def get_items(self, stage: str) -> dict[str, ItemRecord]:
        """Return every record of ``stage``, by item key (one query)."""
        with self._guard() as conn:
            rows = conn.execute(f"{ITEM_SELECT} WHERE stage = ?", (stage,)).fetchall()
        return {row[1]: item_from_row(row) for row in rows}

    def get_item(self, stage: str, key: str) -> ItemRecord | None:
        """Return the record of one item, or None."""
        with self._guard() as conn:
            row = conn.execute(f"{ITEM_SELECT} WHERE stage = ? AND key = ?", (stage, key))
            found = row.fetchone()
        return None if found is None else item_from_row(found)

    def get_sigs(self, stage: str) -> dict[str, bytes]:
        """The stat signature of each item of ``stage`` that has one (see `stagewise.run.quick`)."""
        if self.schema < 2:
            return {}  # an older store opened read-only: no signatures yet
        with self._guard() as conn:
            return dict(conn.execute("SELECT key, sig FROM sigs WHERE stage = ?", (stage,)).fetchall())

    def not_done(self, stage: str) -> set[str]:
        """Keys of the items of ``stage`` recorded failed or rejected."""
        with self._guard() as conn:
            rows = conn.execute("SELECT key FROM items WHERE stage = ? AND status != 'done'", (stage,))
            return {row[0] for row in rows}

    def put_items(self, records: Iterable[ItemRecord]) -> None:
        """Insert or replace records now, in one transaction (see `writer` for batching)."""
        self._write(list(records), ())

    def delete_items(self, stage: str, keys: Iterable[str] | None = None) -> int:
        """Delete the records of ``stage`` (only ``keys`` when given); return how many."""
        with self._guard(write=True) as conn:
            if keys is None:
                return conn.execute("DELETE FROM items WHERE stage = ?", (stage,)).rowcount
            cur = conn.executemany(
                "DELETE FROM items WHERE stage = ? AND key = ?", [(stage, k) for k in keys]
            )
            return cur.rowcount

    def stages(self) -> list[str]:
        """Return the stages that have records, sorted."""
        with self._guard() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT stage FROM items ORDER BY stage")]

    def item_counts(self) -> dict[str, dict[str, int]]:
        """Return ``{stage: {status: count}}`` without loading the records."""
        counts: dict[str, dict[str, int]] = {}
        with self._guard() as conn:
            for stage, status, n in conn.execute(
                "SELECT stage, status, count(*) FROM items GROUP BY stage, status"
            ):
                counts.setdefault(stage, {})[status] = n
        return counts

    # -- stat cache -----------------------------------------------------------------------------

    def get_stats(self, root: str, relpaths: Iterable[str] | None = None) -> dict[str, CachedStat]:
        """Return stat-cache entries of ``root`` (only those of ``relpaths`` when given)."""
        query = "SELECT relpath, size, mtime_ns, ino, ctime_ns, digest, hashed_at_ns FROM statcache"
        wanted = None if relpaths is None else set(relpaths)
        with self._guard() as conn:
            if wanted is None or len(wanted) > 2000:
                # Many paths: one range scan of the root, filtered here, beats point lookups.
                rows = conn.execute(f"{query} WHERE root = ?", (root,)).fetchall()
            else:
                rows = []
                names = sorted(wanted)
                for start in range(0, len(names), 500):
                    chunk = names[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    sql = f"{query} WHERE root = ? AND relpath IN ({marks})"
                    rows += conn.execute(sql, (root, *chunk)).fetchall()
        return {
            rel: CachedStat(StatKey(size, mtime, ino, ctime), digest, at)
            for rel, size, mtime, ino, ctime, digest, at in rows
            if wanted is None or rel in wanted
        }

    def put_stats(self, rows: Iterable[StatRow]) -> None:
        """Insert or replace stat-cache entries now, in one transaction."""
        self._write((), list(rows))

    def delete_stats(self, root: str, relpaths: Iterable[str] | None = None) -> None:
        """Forget the stat-cache entries of ``root`` (only ``relpaths`` when given)."""
        with self._guard(write=True) as conn:
            if relpaths is None:
                conn.execute("DELETE FROM statcache WHERE root = ?", (root,))
            else:
                sql = "DELETE FROM statcache WHERE root = ? AND relpath = ?"
                conn.executemany(sql, [(root, rel) for rel in relpaths])

    # -- runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        command: str,
        selection: Sequence[str] = (),
        started: float | None = None,
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        """Record that a run began (outcome ``running``), committed at once."""
        row = (
            run_id,
            time.time() if started is None else started,
            os.getpid() if pid is None else pid,
            socket.gethostname() if host is None else host,
            command,
            dumps_json(list(selection)),
        )
        with self._guard(write=True) as conn:
            conn.execute(
                "INSERT INTO runs (run_id, started, pid, host, command, selection, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running')",
                row,
            )

    def finish_run(
        self,
        run_id: str,
        *,
        outcome: RunOutcome,
        summary: Mapping[str, Any] | None = None,
        finished: float | None = None,
    ) -> None:
        """Record how a run ended, with its summary, after flushing buffered records."""
        if outcome not in ("running", "done", "failed", "interrupted"):
            raise ValueError(f"unknown run outcome {outcome!r}")
        end = time.time() if finished is None else finished
        with self._guard(write=True) as conn:
            conn.execute(
                "UPDATE runs SET finished = ?, outcome = ?, summary = ? WHERE run_id = ?",
                (end, outcome, dumps_json(dict(summary or {})), run_id),
            )

    def close_unfinished_runs(self, outcome: RunOutcome = "interrupted") -> int:
        """Mark runs still ``running`` (their coordinator was killed) as ended; return how many.

        Call it right after taking the run lock: no other run can be alive then.
        """
        with self._guard(write=True) as conn:
            sql = "UPDATE runs SET outcome = ? WHERE outcome = 'running'"
            return conn.execute(sql, (outcome,)).rowcount

    def list_runs(self) -> list[RunRecord]:
        """Return every run, oldest first."""
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT run_id, started, finished, pid, host, command, selection, outcome, summary"
                " FROM runs ORDER BY started, run_id"
            ).fetchall()
        return [
            RunRecord(
                run_id=run_id,
                started=started,
                finished=finished,
                pid=pid,
                host=host,
                command=command,
                selection=json.loads(selection or "[]"),
                outcome=outcome,
                summary=json.loads(summary or "{}"),
            )
            for run_id, started, finished, pid, host, command, selection, outcome, summary in rows
        ]
