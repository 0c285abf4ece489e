"""`BatchWriter`: group commits of item records and stat rows, durable within 0.2 s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from stagewise.state.filehash import StatRow
from stagewise.state.records import ItemRecord

if TYPE_CHECKING:
    from stagewise.state.store import StateStore

__all__ = ["BatchWriter"]


class BatchWriter:
    """Buffers item records and stat rows, and commits them in one transaction when due.

    Due means: ``max_rows`` rows are waiting, or the oldest has waited ``max_age`` seconds. There
    is no timer thread: the age is checked on every `add_items`/`add_stats` and by
    `flush_if_due`, which the runner calls whenever it wakes up while waiting for results (its
    wait timeout should be at most ``max_age``). So a record is durable at most about
    ``max_age`` plus one wait after its item finished, and `StateStore.close` flushes the rest.

    Args:
        store: the store to write to.
        max_rows: rows that trigger a commit.
        max_age: seconds the oldest buffered row may wait.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        store: StateStore,
        *,
        max_rows: int = 500,
        max_age: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.max_rows = max_rows
        self.max_age = max_age
        self._clock = clock
        self._items: list[ItemRecord] = []
        self._stats: list[StatRow] = []
        self._sigs: list[tuple[bytes, str, str]] = []
        self._since: float | None = None
        self.commits = 0
        """How many transactions this writer committed (for tests and statistics)."""

    @property
    def pending(self) -> int:
        """How many rows are waiting."""
        return len(self._items) + len(self._stats) + len(self._sigs)

    def due(self) -> bool:
        """Whether the buffer should be committed now."""
        if self._since is None:
            return False
        return self.pending >= self.max_rows or self._clock() - self._since >= self.max_age

    def add_items(self, records: Iterable[ItemRecord]) -> None:
        """Buffer item records; commit if due."""
        with self._store._lock:
            self._items.extend(records)
            self._touched()

    def add_stats(self, rows: Iterable[StatRow]) -> None:
        """Buffer stat-cache rows; commit if due."""
        with self._store._lock:
            self._stats.extend(rows)
            self._touched()

    def add_sigs(self, rows: Iterable[tuple[bytes, str, str]]) -> None:
        """Buffer ``(sig, stage, key)`` signature updates of existing items; commit if due."""
        with self._store._lock:
            self._sigs.extend(rows)
            self._touched()

    def flush_if_due(self) -> bool:
        """Commit if due; return whether a commit happened."""
        with self._store._lock:
            if self.due():
                self.flush()
                return True
            return False

    def flush(self) -> None:
        """Commit every buffered row now. On error the rows stay buffered for a retry."""
        with self._store._lock:
            if not self.pending:
                return
            self._store._write(self._items, self._stats, self._sigs)
            self._items, self._stats, self._sigs, self._since = [], [], [], None
            self.commits += 1

    def _touched(self) -> None:
        if self._since is None and self.pending:
            self._since = self._clock()
        if self.due():
            self.flush()
