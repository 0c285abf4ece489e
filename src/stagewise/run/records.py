"""What is known about items that ran: their status, reason and metadata.

The runner talks to records through this small interface so the SQLite state store can take
the place of the in-memory one without the runner changing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stagewise.run.task import Outcome

__all__ = ["ItemState", "MemoryRecords", "Records"]


@dataclass(frozen=True)
class ItemState:
    """The recorded state of one item."""

    status: str
    reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Records(Protocol):
    """Where the coordinator records outcomes and looks up upstream items."""

    def stage(self, qname: str) -> dict[str, ItemState]:
        """Every recorded item of a stage, by key."""
        ...

    def put(self, outcomes: Iterable[Outcome]) -> None:
        """Record finished items."""
        ...


class MemoryRecords:
    """Records kept in memory for the life of a ``Pipeline`` object."""

    def __init__(self) -> None:
        self._stages: dict[str, dict[str, ItemState]] = {}

    def stage(self, qname: str) -> dict[str, ItemState]:
        """Every recorded item of a stage, by key."""
        return self._stages.setdefault(qname, {})

    def put(self, outcomes: Iterable[Outcome]) -> None:
        """Record finished items."""
        for o in outcomes:
            self.stage(o.stage)[o.key] = ItemState(o.status, o.reason, dict(o.meta), o.error)
