"""Planning: which items of which stages a run covers, and the checks before anything runs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewise._suggest import did_you_mean
from stagewise.config.layers import ResolvedParam
from stagewise.errors import ConfigError, SelectionError
from stagewise.model.convert import canonical_json
from stagewise.model.graph import topological_order
from stagewise.model.pipeline import Link, Node, PipelineModel
from stagewise.run.paths import AssetPaths

__all__ = [
    "MissingInput",
    "StagePlan",
    "check_inputs_exist",
    "describe_missing",
    "find_missing_inputs",
    "parse_where",
    "plan_stages",
]


@dataclass
class StagePlan:
    """The items of one selected stage, with its resolved parameters."""

    node: Node
    params: dict[str, Any]
    items: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def qname(self) -> str:
        """The stage's qualified name."""
        return self.node.qname

    @property
    def params_key(self) -> str:
        """Canonical text of the parameters (stable across processes)."""
        return canonical_json(self.params)


def parse_where(model: PipelineModel, specs: Iterable[str]) -> dict[str, frozenset[Any]]:
    """Parse ``--where`` filters: ``split=test``, ``sim=0:4`` (half-open), ``freq=30,100``.

    Values are matched against the dim's declared values by their text, so ``freq=30``
    selects the integer 30.

    Raises:
        SelectionError: an unknown dim, a malformed filter, or a value the dim does not have.
    """
    where: dict[str, frozenset[Any]] = {}
    for spec in specs:
        dim, sep, text = spec.partition("=")
        dim = dim.strip()
        if not sep or not text:
            raise SelectionError(f"--where {spec!r}: expected TAG=VALUES, e.g. split=test or sim=0:4")
        if dim not in model.dims.names:
            hint = did_you_mean(dim, model.dims.names)
            raise SelectionError(
                f"--where {spec!r}: unknown dim '{dim}'", hint=hint or f"dims: {', '.join(model.dims.names)}"
            )
        axis = model.dims.axis(dim)
        chosen = _range(axis, text, spec) if ":" in text else _listed(axis, text, spec)
        where[dim] = where[dim] & chosen if dim in where else chosen
    return where


def _range(axis: Sequence[Any], text: str, spec: str) -> frozenset[Any]:
    lo, _, hi = text.partition(":")
    try:
        low = int(lo) if lo.strip() else None
        high = int(hi) if hi.strip() else None
    except ValueError:
        raise SelectionError(f"--where {spec!r}: a range is START:STOP with integers") from None
    return frozenset(
        v for v in axis
        if isinstance(v, int) and (low is None or v >= low) and (high is None or v < high)
    )  # fmt: skip


def _listed(axis: Sequence[Any], text: str, spec: str) -> frozenset[Any]:
    by_text = {str(v): v for v in axis}
    chosen = set()
    for part in text.split(","):
        part = part.strip()
        if part not in by_text:
            hint = did_you_mean(part, by_text)
            raise SelectionError(
                f"--where {spec!r}: no value {part!r}", hint=hint or f"values: {', '.join(by_text)}"
            )
        chosen.add(by_text[part])
    return frozenset(chosen)


def plan_stages(
    model: PipelineModel,
    selected: Iterable[str],
    params: Mapping[str, Mapping[str, ResolvedParam]],
    where: Mapping[str, frozenset[Any]] | None = None,
) -> list[StagePlan]:
    """The selected stages in execution order, each with every item it covers."""
    plans = []
    for qname in topological_order(model, selected):
        node = model.nodes[qname]
        values = {name: rp.value for name, rp in params[qname].items()}
        stage_where = {d: v for d, v in (where or {}).items() if d in node.dims}
        items = list(model.dims.enumerate(node.dims, splits=node.stage.splits, where=stage_where))
        plans.append(StagePlan(node, values, items))
    return plans


@dataclass(frozen=True)
class MissingInput:
    """Files an input of a selected stage needs that are not on disk."""

    stage: str
    input: str
    link: Link
    paths: tuple[Path, ...]


def find_missing_inputs(
    model: PipelineModel, plans: Sequence[StagePlan], paths: AssetPaths
) -> list[MissingInput]:
    """Sources the selected items read, and per-item outputs of unselected stages, that are missing."""
    selected = {p.qname for p in plans}
    checked: set[Link] = set()
    found: list[MissingInput] = []
    for plan in plans:
        node = plan.node
        for input_name, link in node.links.items():
            if link.producer in selected:
                continue  # produced in this run
            if any(d not in node.dims for d in model.link_dims(link)):
                # a collection takes what exists, but an unselected producer that has produced
                # nothing at all is a forgotten stage, not an empty collection
                if link.producer is not None and (nothing := _nothing_produced(model, link, paths)):
                    found.append(MissingInput(node.qname, input_name, link, nothing))
                continue
            if link in checked:
                continue  # another selected stage reads the same files
            checked.add(link)
            missing = _missing_files(paths, link, node.dims, plan.items)
            if missing:
                found.append(MissingInput(node.qname, input_name, link, tuple(missing)))
    return found


def _missing_files(
    paths: AssetPaths, link: Link, dims: tuple[str, ...], items: Sequence[tuple[Any, ...]]
) -> list[Path]:
    """The files of ``link`` that the items need and that are not on disk."""
    render = paths.renderer(link, dims)
    missing: list[Path] = []
    if render is None or len(items) < _LISTING_ITEMS:
        roots = paths.roots()
        for values in items:
            rid, rel = paths.locate(link, dict(zip(dims, values, strict=True)))
            if not os.path.exists(path := roots[rid] + os.sep + rel):
                missing.append(Path(path))
        return missing
    exists = _Listings().exists
    for values in items:
        path = render(values)
        if path is None or not exists(path):
            missing.append(Path(path or paths.path_str(link, dict(zip(dims, values, strict=True)))))
    return missing


_LISTING_ITEMS = 64
"""From this many files, list their folders once instead of asking for each file."""


class _Listings:
    """Whether files exist, from one listing of each folder (thousands of files, few folders)."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def exists(self, path: str) -> bool:
        """Whether ``path`` names an entry of its folder (a dangling symlink passes; its item
        then fails as "input missing")."""
        folder, _, name = path.rpartition(os.sep)
        names = self._names.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(folder or os.sep))
            except OSError:  # missing, or not a folder
                names = frozenset()
            self._names[folder] = names
        return name in names


def _nothing_produced(model: PipelineModel, link: Link, paths: AssetPaths) -> tuple[Path, ...]:
    """A few of the files a producer would write, when none of them exists; else ``()``."""
    dims = model.link_dims(link)
    producer = model.nodes[link.producer] if link.producer else None
    splits = producer.stage.splits if producer else None
    expected: list[Path] = []
    for values in model.dims.enumerate(dims, splits=splits):
        path = paths.path_str(link, dict(zip(dims, values, strict=True)))
        if os.path.exists(path):
            return ()
        if len(expected) < 5:
            expected.append(Path(path))
    return tuple(expected)


def describe_missing(model: PipelineModel, missing: MissingInput, limit: int = 5) -> str:
    """``N files are missing: a, b, c and 2 more``."""
    shown = ", ".join(_show(model, p) for p in missing.paths[:limit])
    if len(missing.paths) > limit:
        shown += f" and {len(missing.paths) - limit} more"
    count = len(missing.paths)
    return f"{count} file{'s are' if count > 1 else ' is'} missing: {shown}"


def check_inputs_exist(model: PipelineModel, plans: Sequence[StagePlan], paths: AssetPaths) -> None:
    """Before anything runs: sources the selected items read, and outputs of unselected stages, exist.

    Raises:
        ConfigError: naming the missing source files.
        SelectionError: naming an unselected stage whose outputs are missing, suggesting ``+stage``.
    """
    for missing in find_missing_inputs(model, plans, paths):
        what = describe_missing(model, missing)
        if missing.link.producer is None:
            raise ConfigError(
                f"stage {missing.stage}: input '{missing.input}' reads source '{missing.link.name}', but {what}",
                hint=f"check sources.{missing.link.name} and the paths it uses",
            )
        raise SelectionError(
            f"stage {missing.stage} needs {missing.link.ref}, but {what}",
            hint=f"run the producer too: stagewise run +{missing.stage}",
        )


def _show(model: PipelineModel, path: Path) -> str:
    try:
        return str(path.relative_to(model.base_dir))
    except ValueError:
        return str(path)
