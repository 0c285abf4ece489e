"""``Item``: one point of a stage's dims, as the stage body sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagewise.errors import StageError

__all__ = ["Item"]


class Item:
    """One point of a stage's dims, e.g. ``{split: "train", sim: 3}``.

    Tags are attributes (``item.sim``) and a mapping (``item.tags``); ``item.meta(stage)`` gives
    the metadata an upstream stage recorded for the item this one reads.

    Args:
        tags: the tag values, in the stage's dim order.
        meta: metadata of upstream items by stage name (filled in by the runner).
    """

    __slots__ = ("_meta", "_tags")

    def __init__(self, tags: Mapping[str, Any], meta: Mapping[str, Mapping[str, Any]] | None = None):
        object.__setattr__(self, "_tags", dict(tags))
        object.__setattr__(self, "_meta", dict(meta or {}))

    @property
    def tags(self) -> dict[str, Any]:
        """The tag values as a new dict."""
        return dict(self._tags)

    def meta(self, stage: str) -> dict[str, Any]:
        """Metadata recorded by an upstream ``stage`` for the item this one depends on.

        Raises:
            StageError: when ``stage`` is not upstream of this item or recorded no metadata.
        """
        if stage not in self._meta:
            known = ", ".join(sorted(self._meta)) or "none"
            raise StageError(
                f"item {self!r}: no metadata from stage '{stage}' (stages with metadata: {known})",
                hint="item.meta() reads the metadata of upstream stages whose dims this item has",
            )
        return dict(self._meta[stage])

    def __getattr__(self, name: str) -> Any:
        try:
            return self._tags[name]
        except KeyError:
            raise AttributeError(
                f"item has no tag '{name}' (tags: {', '.join(self._tags) or 'none'})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Item is read-only")

    def __getstate__(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._tags, self._meta

    def __setstate__(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        object.__setattr__(self, "_tags", state[0])
        object.__setattr__(self, "_meta", state[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item) and self._tags == other._tags

    def __hash__(self) -> int:
        return hash(tuple(self._tags.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._tags.items())
        return f"Item({inner})"
