"""Stage selectors: ``stage``, ``group``, ``group:stage``, ``group:all``/``*``, ``group:?``, ``+stage``, ``stage+``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stagewise._suggest import did_you_mean
from stagewise.errors import SelectionError
from stagewise.model.graph import downstream, topological_order, upstream
from stagewise.model.pipeline import PipelineModel

__all__ = ["Selection", "select"]


@dataclass(frozen=True)
class Selection:
    """The stages selected, in execution order; or a group whose stages to list (``group:?``)."""

    stages: tuple[str, ...]
    list_group: str | None = None


def select(model: PipelineModel, selectors: Sequence[str] | None) -> Selection:
    """Resolve selectors to stages (every stage when there are none).

    Raises:
        SelectionError: naming the unknown selector, the closest match and the known stages.
    """
    if not selectors:
        return Selection(tuple(topological_order(model)))
    chosen: set[str] = set()
    for selector in selectors:
        text = selector.strip()
        with_up, with_down = text.startswith("+"), text.endswith("+") and len(text) > 1
        core = text.strip("+")
        if core.endswith(":?") and core[:-2] in model.groups:
            return Selection((), list_group=core[:-2])
        stages = _resolve(model, core, selector)
        chosen.update(stages)
        if with_up:
            chosen |= upstream(model, stages)
        if with_down:
            chosen |= downstream(model, stages)
    return Selection(tuple(topological_order(model, chosen)))


def _resolve(model: PipelineModel, core: str, selector: str) -> list[str]:
    if ":" in core:
        group, _, member = core.partition(":")
        if group in model.groups:
            members = [q for q, n in model.nodes.items() if n.group == group]
            if member in ("all", "*"):
                return members
            if f"{group}:{member}" in model.nodes:
                return [f"{group}:{member}"]
            names = [model.nodes[q].stage.name for q in members]
            hint = did_you_mean(member, names) or f"stages of {group}: {', '.join(names)}"
            raise SelectionError(
                f"unknown stage '{member}' in group '{group}' (selector {selector!r})", hint=hint
            )
    elif core in model.groups:
        return [q for q, n in model.nodes.items() if n.group == core]
    qname = model.find_stage(core)
    if qname is not None:
        return [qname]
    known = model.stage_names() + list(model.groups)
    hint = did_you_mean(core, known)
    listing = ", ".join(known) or "none"
    raise SelectionError(
        f"unknown stage or group {selector!r}; known: {listing}",
        hint=hint or "groups also take group:stage, group:all, group:? ",
    )
