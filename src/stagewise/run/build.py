"""Turn a planned item into a task: resolve its inputs, collections and upstream metadata.

Built just before dispatch, when the upstream items it reads have finished, so rejected
upstream items can be left out of collections and propagate to per-item consumers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stagewise.model.graph import upstream
from stagewise.model.pipeline import Link, PipelineModel
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.records import ItemState, Records
from stagewise.run.task import InputSpec, Outcome, OutputSpec, Task, item_key, item_label

__all__ = ["TaskBuilder"]


class TaskBuilder:
    """Builds the tasks of one stage plan against the current records."""

    def __init__(self, model: PipelineModel, records: Records, paths: AssetPaths) -> None:
        self.model = model
        self.records = records
        self.paths = paths

    def tasks(self, plan: StagePlan) -> Iterator[Task | Outcome]:
        """A task per item, or an outcome when the item cannot run (upstream rejected, input missing)."""
        node = plan.node
        ancestors = [
            q for q in upstream(self.model, [node.qname])
            if all(d in node.dims for d in self.model.nodes[q].dims)
        ]  # fmt: skip
        params_key = plan.params_key
        outputs_links = {name: Link(node.qname, name) for name in node.stage.outputs}
        for values in plan.items:
            tags = dict(zip(node.dims, values, strict=True))
            key = item_key(values)
            try:
                inputs = {
                    name: self._input(node.stage.signature.lazy, name, link, tags)
                    for name, link in node.links.items()
                }
            except _Blocked as exc:
                yield Outcome(node.qname, key, exc.status, reason=exc.reason)
                continue
            outputs = {
                name: OutputSpec(self.paths.path(link, tags), self.paths.handler(link))
                for name, link in outputs_links.items()
            }
            meta = self._meta(ancestors, tags)
            yield Task(node.qname, node.stage, key, tags, inputs, outputs, plan.params, params_key, meta)

    def _state(self, qname: str, key: str) -> ItemState | None:
        return self.records.stage(qname).get(key)

    def _input(self, lazy: frozenset[str], name: str, link: Link, tags: dict[str, Any]) -> InputSpec:
        dims = self.model.link_dims(link)
        handler = self.paths.handler(link)
        extra = [d for d in dims if d not in tags]
        if not extra:
            path = self.paths.path(link, tags)
            if link.producer is not None:
                key = item_key([tags[d] for d in dims])
                state = self._state(link.producer, key)
                if state is not None and state.status != "done":
                    label = item_label({d: tags[d] for d in dims})
                    if state.status == "rejected":
                        raise _Blocked("rejected", f"upstream rejected: {link.producer} {label}")
                    raise _Blocked("skipped", f"upstream failed: {link.producer} {label}")
            if not path.exists():
                raise _Blocked("failed", f"input '{name}' is missing: {path}")
            return InputSpec("one", handler, path=path, lazy=name in lazy)
        return InputSpec("many", handler, entries=tuple(self._collection(link, dims, extra, tags)))

    def _collection(
        self, link: Link, dims: tuple[str, ...], extra: list[str], tags: dict[str, Any]
    ) -> list[tuple[Any, Path]]:
        fixed = {d: frozenset([tags[d]]) for d in dims if d in tags}
        splits = self.model.nodes[link.producer].stage.splits if link.producer else None
        states = self.records.stage(link.producer) if link.producer else {}
        entries: list[tuple[Any, Path]] = []
        for values in self.model.dims.enumerate(dims, splits=splits, where=fixed):
            full = dict(zip(dims, values, strict=True))
            state = states.get(item_key(values))
            if state is not None and state.status != "done":
                continue
            path = self.paths.path(link, full)
            if state is None and not path.exists():
                continue
            key = full[extra[0]] if len(extra) == 1 else tuple(full[d] for d in extra)
            entries.append((key, path))
        with contextlib.suppress(TypeError):  # mixed value types: keep the declared order
            entries.sort(key=lambda e: e[0])
        return entries

    def _meta(self, ancestors: list[str], tags: dict[str, Any]) -> dict[str, dict[str, Any]]:
        meta: dict[str, dict[str, Any]] = {}
        for qname in ancestors:
            node = self.model.nodes[qname]
            state = self._state(qname, item_key([tags[d] for d in node.dims]))
            if state is not None and state.status == "done":
                meta[node.stage.name] = state.meta
                meta[qname] = state.meta
        return meta


class _Blocked(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
