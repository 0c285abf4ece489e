"""The quick check: an item whose files still have the stats they had when last proven is up to date.

The full check (`stagewise.run.freshness`) compares content digests through the stat cache. Once
an item has been found up to date with every file past the racy window (so a file's stats
determine its content, see `stagewise.state.filehash`), its record keeps a *stat signature*:
the stage's layout (code, parameters, templates), then each input's and each output's size,
mtime_ns, inode and ctime_ns packed in 32 bytes (a collection input: its member count, then each
member's; a rejected item: its inputs, then ``R``). While the code, the parameters and
every stat are the same, the digests are too, so the item is up to date without a cache lookup or
a decoded record: two ``os.stat`` calls and one comparison per item on a no-op rerun. Anything
else (no signature, a changed stat, an upstream item not done) goes to the full check, which
explains the reason and stores a new signature.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from stagewise.run.task import item_key
from stagewise.state.filehash import StatKey

__all__ = ["REJECTED", "QuickCheck", "Settled", "layout_digest", "make_sig", "producer_key_fn"]

REJECTED = b"R"
"""What follows the inputs in the signature of a rejected item (it has no outputs)."""

_PACK = struct.Struct("<qqQq").pack  # size, mtime_ns, ino, ctime_ns
_COUNT = struct.Struct("<q").pack  # how many members a collection input has

Render = Callable[[Sequence[Any]], "str | None"]


def layout_digest(parts: Sequence[str]) -> bytes:
    """A short digest of what every item of a stage shares (code, parameters, dims, the roots
    and templates of its files): a change to any of them matches no old signature."""
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).digest()


def make_sig(
    layout: bytes, inputs: Sequence[StatKey | Sequence[StatKey]], outputs: Sequence[StatKey] | None
) -> bytes:
    """The signature of an item: its layout, its inputs' stats (a collection: its member count,
    then each member's), its outputs' stats (or `REJECTED`)."""
    packed = b"".join(
        _COUNT(len(key)) + b"".join(_PACK(*k) for k in key) if type(key) is list else _PACK(*key)  # type: ignore[misc]
        for key in inputs
    )
    return layout + packed + (REJECTED if outputs is None else b"".join(_PACK(*key) for key in outputs))


class Settled:
    """What the quick check settled in a stage: up-to-date items, and the rest by position."""

    __slots__ = ("done", "rejected", "rest")

    def __init__(self) -> None:
        self.done = 0
        """Done items proven up to date."""
        self.rejected: list[int] = []
        """Positions of rejected items proven up to date (explaining names their reason)."""
        self.rest: list[int] = []
        """Positions of the items the full check must decide."""


class QuickCheck:
    """The quick check of one stage's items.

    Args:
        sigs: the stored signature of each item of the stage (one made with other code or
            parameters has another layout, so it never matches).
        layout: the stage's `layout_digest`.
        inputs: per input, in input-name order, a renderer of its file's path, or for a
            collection input a function giving the paths of its possible members in key order.
        outputs: a renderer of each output file's path, in output-name order.
        blocked: per upstream link, a function from the item's values to the producer's item
            key (None: the same key) and the producer keys that must not count as done
            (failed, rejected, or pending while explaining).
    """

    def __init__(
        self,
        sigs: Mapping[str, bytes],
        layout: bytes,
        inputs: Sequence[Render],
        outputs: Sequence[Render],
        blocked: Sequence[tuple[Callable[[Sequence[Any]], str] | None, Collection[str]]],
    ) -> None:
        self.sigs = sigs
        self.layout = layout
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.blocked = tuple((fn, keys) for fn, keys in blocked if keys)

    def settle(self, items: Sequence[Sequence[Any]]) -> Settled:
        """Check every item of the stage by its stats (the hot loop of a no-op rerun)."""
        found = Settled()
        rest, rejected = found.rest, found.rejected
        get, stat, pack, head = self.sigs.get, os.stat, _PACK, self.layout
        inputs, outputs, blocked = self.inputs, self.outputs, self.blocked
        for index, values in enumerate(items):
            key = item_key(values)
            sig = get(key)
            if sig is None or (blocked and self._blocked(values, key)):
                rest.append(index)
                continue
            text = head
            try:
                for render in inputs:
                    path = render(values)
                    if type(path) is list:  # a collection: the members that exist
                        text += _members(path)
                        continue
                    st = stat(path)  # type: ignore[arg-type]
                    text += pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
                if not sig.startswith(text):
                    rest.append(index)
                    continue
                if len(sig) == len(text) + 1:
                    (rejected if sig[-1:] == REJECTED else rest).append(index)
                    continue
                for render in outputs:
                    st = stat(render(values))  # type: ignore[arg-type]
                    text += pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            except (OSError, TypeError):  # missing, or a value the renderer refused (None)
                rest.append(index)
                continue
            if sig == text:
                found.done += 1
            else:
                rest.append(index)
        return found

    def _blocked(self, values: Sequence[Any], key: str) -> bool:
        return any(
            (key if producer_key is None else producer_key(values)) in keys
            for producer_key, keys in self.blocked
        )


def _members(paths: list[str]) -> bytes:
    """The packed stats of a collection's members, after their count; a missing file is none."""
    parts = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        parts.append(_PACK(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
    return _COUNT(len(parts)) + b"".join(parts)


def producer_key_fn(
    dims: Sequence[str], producer_dims: Sequence[str]
) -> Callable[[Sequence[Any]], str] | None:
    """From an item's values, the key of the producer item it reads (None: the same key)."""
    if tuple(dims) == tuple(producer_dims):
        return None
    positions = [list(dims).index(d) for d in producer_dims]
    return lambda values: item_key([values[i] for i in positions])
