"""``Asset``: a path template plus the handler that reads and writes its files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Asset", "as_asset"]


@dataclass(frozen=True)
class Asset:
    """A named data product: one file per item, at a path template, in a format.

    Args:
        template: a path template such as ``"sky/{split}/{sim:04d}.npy"``; relative templates
            live under the output root (outputs) or the pipeline's folder (sources).
        handler: a handler name (``"npy"``), a handler object, or None to choose by extension.
    """

    template: str
    handler: Any = None

    @property
    def handler_label(self) -> str:
        """The handler's name for display."""
        if self.handler is None:
            return "auto"
        if isinstance(self.handler, str):
            return self.handler
        return getattr(self.handler, "name", type(self.handler).__name__)


def as_asset(value: Any, *, place: str) -> Asset:
    """Turn a template string, an ``Asset`` or a ``{template, handler}`` mapping into an Asset.

    Raises:
        TypeError: for anything else; callers turn it into a validation problem at ``place``.
    """
    if isinstance(value, Asset):
        return value
    if isinstance(value, str):
        return Asset(value)
    if isinstance(value, dict) and "template" in value and set(value) <= {"template", "handler"}:
        return Asset(value["template"], value.get("handler"))
    raise TypeError(
        f"{place}: expected a template string, Asset(template, handler=...) or "
        f"{{template: ..., handler: ...}}, got {value!r}"
    )
