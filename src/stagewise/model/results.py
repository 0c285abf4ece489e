"""What a stage body may return: data, a ``Result`` with metadata, or a rejection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["REJECT", "Reject", "Result"]


@dataclass(frozen=True)
class Result:
    """A stage's return value with small JSON-able metadata attached to the item.

    Args:
        outputs: what the stage would otherwise return: the data of its single output, or a
            dict keyed by output name; ``None`` when the stage wrote its outputs through ``Out``.
        meta: metadata of this item (numbers, strings, small lists), kept in the state store
            and readable downstream with ``item.meta(stage)``.
    """

    outputs: Any
    meta: Mapping[str, Any] = field(default_factory=dict)


class _Reject:
    """The type of ``REJECT``: a singleton that pickles as itself."""

    _instance: _Reject | None = None

    def __new__(cls) -> _Reject:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "stagewise.REJECT"

    def __reduce__(self) -> str:
        return "REJECT"


REJECT: Final = _Reject()
"""Return this from a stage (or a ``pre``/``post`` function) to reject the item."""


class Reject(Exception):
    """Raise to reject the current item with a reason.

    A rejected item writes nothing, is recorded as rejected with its reason, and is absent
    downstream: missing from collections, and a per-item consumer of it is rejected too.

    Args:
        reason: why the item is rejected, shown by ``status``.
    """

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
