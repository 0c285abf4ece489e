"""Dims and splits: the axes items range over, and the enumeration of a stage's items."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUILTIN_TAGS", "RESERVED_NAMES", "Dims", "build_dims", "safe_tag_value_problem"]

BUILTIN_TAGS = frozenset({"stage"})
"""Template tags stagewise fills in itself (``variant`` joins them with sweeps)."""

RESERVED_NAMES = frozenset({"meta", "tags", "item", "variant", *BUILTIN_TAGS})
"""Names a user dim may not take."""


def safe_tag_value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a tag value (it becomes part of a path), or None."""
    text = str(value)
    if text in ("", ".", ".."):
        return f"{value!r} cannot be a path component"
    if "/" in text or "\\" in text or "\0" in text:
        return f"{value!r} contains a path separator"
    return None


@dataclass(frozen=True)
class Dims:
    """The dims of a pipeline.

    Attributes:
        splits: split name -> its sim numbers, or None when the pipeline has no splits.
        values: every other dim (and ``sim`` when there are no splits) -> its values.
    """

    splits: Mapping[str, tuple[int, ...]] | None = None
    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Every dim name, splits first."""
        head = ("split", "sim") if self.splits is not None else ()
        return head + tuple(self.values)

    def canonical(self, over: Sequence[str]) -> tuple[str, ...]:
        """A stage's dims in canonical order: as declared, ``split`` right before ``sim``.

        With splits declared, ``sim`` ranges within each split, so a stage over ``sim`` is
        also over ``split``.
        """
        if self.splits is None:
            return tuple(dict.fromkeys(over))
        dims = [d for d in over if d != "split"]
        if "split" in over or "sim" in over:
            at = dims.index("sim") if "sim" in dims else over.index("split")
            dims.insert(min(at, len(dims)), "split")
        return tuple(dict.fromkeys(dims))

    def axis(self, dim: str) -> tuple[Any, ...]:
        """The values of one dim (for ``sim`` with splits: every sim of every split)."""
        if dim == "split" and self.splits is not None:
            return tuple(self.splits)
        if dim == "sim" and self.splits is not None:
            return tuple(sorted({s for sims in self.splits.values() for s in sims}))
        return self.values[dim]

    def enumerate(
        self,
        dims: Sequence[str],
        *,
        splits: Sequence[str] | None = None,
        where: Mapping[str, frozenset[Any]] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Yield the items of a stage as tuples of tag values in ``dims`` order.

        Args:
            dims: canonical dims (see :meth:`canonical`).
            splits: restrict to these splits.
            where: keep only items whose tag is among the given values, per dim.
        """
        where = where or {}

        def axis(dim: str, split: str | None = None) -> tuple[Any, ...]:
            if dim == "sim" and split is not None and self.splits is not None:
                values: tuple[Any, ...] = self.splits[split]
            elif dim == "split" and self.splits is not None:
                values = tuple(s for s in self.splits if splits is None or s in splits)
            else:
                values = self.values[dim]
            allowed = where.get(dim)
            return values if allowed is None else tuple(v for v in values if v in allowed)

        if self.splits is None or "sim" not in dims:
            yield from itertools.product(*(axis(d) for d in dims))
            return
        at = dims.index("split")
        head, tail = dims[:at], dims[at + 1 :]
        for prefix in itertools.product(*(axis(d) for d in head)):
            for split in axis("split"):
                for rest in itertools.product(*(axis(d, split) for d in tail)):
                    yield (*prefix, split, *rest)


def build_dims(splits: Any, dims: Any, *, place: str = "pipeline") -> tuple[Dims, list[tuple[str, str]]]:
    """Check and normalise ``splits`` and ``dims`` declarations.

    Returns:
        The dims, and a list of ``(place, message)`` problems (empty when well formed).
    """
    problems: list[tuple[str, str]] = []
    split_map: dict[str, tuple[int, ...]] | None = None
    if splits is not None:
        split_map = {}
        if not isinstance(splits, Mapping):
            problems.append((f"{place}: splits", f"expected a mapping of split names, got {splits!r}"))
        else:
            for name, spec in splits.items():
                where = f"{place}: splits.{name}"
                bad_name = safe_tag_value_problem(name) if isinstance(name, str) else "not a string"
                if bad_name:
                    problems.append((where, f"split name {bad_name}"))
                values = _range_or_list(spec, where, problems, ints_only=True)
                split_map[str(name)] = values
    values: dict[str, tuple[Any, ...]] = {}
    if dims is not None and not isinstance(dims, Mapping):
        problems.append((f"{place}: dims", f"expected a mapping of dim names, got {dims!r}"))
        dims = {}
    for name, spec in (dims or {}).items():
        where = f"{place}: dims.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            problems.append((where, f"dim name {name!r} is not a Python identifier"))
            continue
        if name in RESERVED_NAMES or name == "split":
            problems.append((where, f"'{name}' is reserved and cannot be a dim name"))
            continue
        if name == "sim" and split_map is not None:
            problems.append((where, "with splits declared, sim ranges per split: remove dims.sim"))
            continue
        values[name] = _range_or_list(spec, where, problems, ints_only=False)
    return Dims(split_map, values), problems


def _range_or_list(
    spec: Any, where: str, problems: list[tuple[str, str]], *, ints_only: bool
) -> tuple[Any, ...]:
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            problems.append((where, f"expected a count >= 0, got {spec}"))
            return ()
        return tuple(range(spec))
    if not isinstance(spec, list | tuple):
        kind = "a count or a list of sim numbers" if ints_only else "a count or a list of values"
        problems.append((where, f"expected {kind}, got {spec!r}"))
        return ()
    out: list[Any] = []
    for value in spec:
        if ints_only and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            problems.append((where, f"sim numbers are integers >= 0, got {value!r}"))
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append((where, f"dim values are strings or numbers, got {value!r}"))
        elif (bad := safe_tag_value_problem(value)) is not None:
            problems.append((where, f"value {bad}"))
        elif value in out:
            problems.append((where, f"value {value!r} appears twice"))
        else:
            out.append(value)
    return tuple(out)
