"""The stage graph: edges, execution order, cycles, upstream and downstream sets."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable

from stagewise.model.pipeline import PipelineModel

__all__ = ["downstream", "find_cycle", "producers", "topological_order", "upstream"]


def producers(model: PipelineModel, qname: str) -> list[str]:
    """The stages whose outputs ``qname`` reads, in input order, without repeats."""
    node = model.nodes[qname]
    return list(dict.fromkeys(link.producer for link in node.links.values() if link.producer))


def find_cycle(model: PipelineModel) -> list[str] | None:
    """A cycle of stages as a list ``[a, b, ..., a]``, or None when the graph is acyclic."""
    sorter = graphlib.TopologicalSorter({q: producers(model, q) for q in model.nodes})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = list(reversed(exc.args[1]))
        return cycle
    return None


def topological_order(model: PipelineModel, selected: Iterable[str] | None = None) -> list[str]:
    """Stages in execution order; ties keep the display order.

    Args:
        selected: restrict to these stages (their order still follows the whole graph).
    """
    display = {q: i for i, q in enumerate(model.nodes)}
    sorter = graphlib.TopologicalSorter({q: producers(model, q) for q in model.nodes})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=display.__getitem__)
        order += ready
        sorter.done(*ready)
    if selected is None:
        return order
    keep = set(selected)
    return [q for q in order if q in keep]


def upstream(model: PipelineModel, qnames: Iterable[str]) -> set[str]:
    """Every stage the given stages depend on, transitively (not including themselves)."""
    seen: set[str] = set()
    todo = [p for q in qnames for p in producers(model, q)]
    while todo:
        q = todo.pop()
        if q not in seen:
            seen.add(q)
            todo += producers(model, q)
    return seen


def downstream(model: PipelineModel, qnames: Iterable[str]) -> set[str]:
    """Every stage that depends on the given stages, transitively (not including themselves)."""
    consumers: dict[str, list[str]] = {q: [] for q in model.nodes}
    for q in model.nodes:
        for p in producers(model, q):
            consumers[p].append(q)
    seen: set[str] = set()
    todo = [c for q in qnames for c in consumers[q]]
    while todo:
        q = todo.pop()
        if q not in seen:
            seen.add(q)
            todo += consumers[q]
    return seen
