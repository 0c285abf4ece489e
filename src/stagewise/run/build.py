"""Turn a planned item into a task, or decide it need not run.

Built just before dispatch, when the upstream items it reads have finished: rejected upstream
items are left out of collections and propagate to per-item consumers, and input fingerprints
are final, so an upstream rerun that produced identical bytes stops the cascade (early cutoff).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from stagewise.model.graph import upstream
from stagewise.model.pipeline import Link, PipelineModel
from stagewise.run.freshness import FileIndex, StageFingerprint, collection_digest, stale_reasons
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.records import StateRecords
from stagewise.run.task import InputSpec, Outcome, OutputSpec, Task, item_key, item_label

__all__ = ["TaskBuilder"]


class TaskBuilder:
    """Builds the tasks of one stage plan against the current records and files."""

    def __init__(
        self,
        model: PipelineModel,
        records: StateRecords,
        paths: AssetPaths,
        *,
        force: bool = False,
        pending: dict[str, set[str]] | None = None,
    ) -> None:
        self.model = model
        self.records = records
        self.paths = paths
        self.index: FileIndex = records.index
        self.force = force
        self.pending = pending
        self._links: dict[Link, tuple[tuple[str, ...], Any]] = {}
        self._roots = paths.roots()
        """When explaining (dry run, status): items of each stage that would or might rerun.
        Their consumers are ``pending``: early cutoff decides at run time."""

    def tasks(self, plan: StagePlan, fp: StageFingerprint) -> Iterator[Task | Outcome]:
        """A task per item that must run; an outcome for the others.

        Outcomes are ``uptodate`` (nothing to do), ``rejected`` (upstream rejected), ``skipped``
        (an item it reads failed) or ``failed`` (an input file is missing).
        """
        node = plan.node
        ancestors = [
            q
            for q in upstream(self.model, [node.qname])
            if all(d in node.dims for d in self.model.nodes[q].dims)
        ]
        records = self.records.stage(node.qname)
        output_links = {name: Link(node.qname, name) for name in node.stage.outputs}
        handlers = {name: self.paths.handler(link) for name, link in output_links.items()}
        for values in plan.items:
            tags = dict(zip(node.dims, values, strict=True))
            key = item_key(values)
            record = records.get(key)
            try:
                inputs, inputs_fp = self._inputs(node.stage.signature.lazy, node.links, tags)
            except _Blocked as exc:
                if not (
                    record is not None
                    and record.status == exc.status == "rejected"
                    and record.reason == exc.reason
                ):
                    yield Outcome(node.qname, key, exc.status, reason=exc.reason)  # type: ignore[arg-type]
                else:
                    yield Outcome(node.qname, key, "uptodate")
                continue
            outputs = {}
            for name, link in output_links.items():
                rid, rel = self.paths.locate(link, tags)
                outputs[name] = OutputSpec(self._roots[rid] + os.sep + rel, handlers[name], rid, rel)
            reasons = ["forced"] if self.force else self._reasons(record, fp, inputs_fp, outputs)
            if not reasons:
                yield Outcome(node.qname, key, "uptodate")
                continue
            meta = self._meta(ancestors, tags)
            yield Task(
                node.qname,
                node.stage,
                key,
                tags,
                inputs,
                outputs,
                plan.params,
                fp.params_hash,
                meta,
                inputs_fp,
                tuple(reasons),
            )

    def _reasons(
        self,
        record: Any,
        fp: StageFingerprint,
        inputs_fp: dict[str, str | None],
        outputs: dict[str, OutputSpec],
    ) -> list[str]:
        if record is None:
            return ["new"]
        done = record.status == "done"
        digests = (
            {name: self.index.digest_at(spec.root, spec.rel) for name, spec in outputs.items()}
            if done
            else {}
        )
        return stale_reasons(
            record, fp, inputs_fp, digests, {name: spec.rel for name, spec in outputs.items()}
        )

    def _inputs(
        self, lazy: frozenset[str], links: dict[str, Link] | Any, tags: dict[str, Any]
    ) -> tuple[dict[str, InputSpec], dict[str, str | None]]:
        specs: dict[str, InputSpec] = {}
        digests: dict[str, str | None] = {}
        for name, link in links.items():
            specs[name], digests[name] = self._input(lazy, name, link, tags)
        return specs, digests

    def _link_info(self, link: Link) -> tuple[tuple[str, ...], Any]:
        info = self._links.get(link)
        if info is None:
            info = self._links[link] = (self.model.link_dims(link), self.paths.handler(link))
        return info

    def _input(
        self, lazy: frozenset[str], name: str, link: Link, tags: dict[str, Any]
    ) -> tuple[InputSpec, str | None]:
        dims, handler = self._link_info(link)
        extra = [d for d in dims if d not in tags]
        if extra:
            entries = self._collection(link, dims, extra, tags)
            if not self.force and self.pending is not None and link.producer is not None:
                pending = self.pending.get(link.producer, set())
                if pending and self._any_pending(link, dims, tags, pending):
                    raise _Blocked("pending", f"upstream may change: {link.producer}")
            digest = collection_digest((key, self.index.digest(path)) for key, path in entries)
            return InputSpec("many", handler, entries=tuple(entries)), digest
        rid, rel = self.paths.locate(link, tags)
        if link.producer is not None:
            producer_key = item_key([tags[d] for d in dims])
            if (
                not self.force
                and self.pending is not None
                and producer_key in self.pending.get(link.producer, ())
            ):
                raise _Blocked("pending", f"upstream may change: {link.producer}")
            state = self.records.stage(link.producer).get(producer_key)
            if state is not None and state.status != "done":
                label = item_label({d: tags[d] for d in dims})
                if state.status == "rejected":
                    raise _Blocked("rejected", f"upstream rejected: {link.producer} {label}")
                raise _Blocked("skipped", f"upstream failed: {link.producer} {label}")
        digest = self.index.digest_at(rid, rel)
        path = self._roots[rid] + os.sep + rel
        if digest is None:
            raise _Blocked("failed", f"input '{name}' is missing: {path}")
        return InputSpec("one", handler, path=path, lazy=name in lazy), digest

    def _any_pending(
        self, link: Link, dims: tuple[str, ...], tags: dict[str, Any], pending: set[str]
    ) -> bool:
        fixed = {d: frozenset([tags[d]]) for d in dims if d in tags}
        splits = self.model.nodes[link.producer].stage.splits if link.producer else None
        return any(
            item_key(v) in pending for v in self.model.dims.enumerate(dims, splits=splits, where=fixed)
        )

    def _collection(
        self, link: Link, dims: tuple[str, ...], extra: list[str], tags: dict[str, Any]
    ) -> list[tuple[Any, str]]:
        fixed = {d: frozenset([tags[d]]) for d in dims if d in tags}
        splits = self.model.nodes[link.producer].stage.splits if link.producer else None
        states = self.records.stage(link.producer) if link.producer else {}
        entries: list[tuple[Any, str]] = []
        for values in self.model.dims.enumerate(dims, splits=splits, where=fixed):
            full = dict(zip(dims, values, strict=True))
            state = states.get(item_key(values))
            if state is not None and state.status != "done":
                continue
            path = self.paths.path_str(link, full)
            if not os.path.exists(path):
                continue  # never produced, or deleted since (its producer is then stale: warned)
            key = full[extra[0]] if len(extra) == 1 else tuple(full[d] for d in extra)
            entries.append((key, path))
        with contextlib.suppress(TypeError):  # mixed value types: keep the declared order
            entries.sort(key=lambda e: e[0])
        return entries

    def _meta(self, ancestors: list[str], tags: dict[str, Any]) -> dict[str, dict[str, Any]]:
        meta: dict[str, dict[str, Any]] = {}
        for qname in ancestors:
            node = self.model.nodes[qname]
            state = self.records.stage(qname).get(item_key([tags[d] for d in node.dims]))
            if state is not None and state.status == "done":
                meta[node.stage.name] = dict(state.meta or {})
                meta[qname] = meta[node.stage.name]
        return meta


class _Blocked(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
