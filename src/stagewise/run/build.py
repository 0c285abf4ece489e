"""Turn a planned item into a task, or decide it need not run.

Built just before dispatch, when the upstream items it reads have finished: rejected upstream
items are left out of collections and propagate to per-item consumers, and input fingerprints
are final, so an upstream rerun that produced identical bytes stops the cascade (early cutoff).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from stagewise.model.graph import upstream
from stagewise.model.pipeline import Link, Node, PipelineModel
from stagewise.run.freshness import FileIndex, StageFingerprint, collection_digest, stale_reasons
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.quick import QuickCheck, layout_digest, make_sig, producer_key_fn
from stagewise.run.records import StateRecords
from stagewise.run.task import InputSpec, Outcome, OutputSpec, Task, UpToDate, item_key, item_label
from stagewise.state.filehash import StatKey
from stagewise.state.records import ItemRecord

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
        """When explaining (dry run, status): items of each stage that would or might rerun.
        Their consumers are ``pending``: early cutoff decides at run time."""
        self._links: dict[Link, tuple[tuple[str, ...], Any]] = {}
        self._roots = paths.roots()

    def tasks(self, plan: StagePlan, fp: StageFingerprint) -> Iterator[Task | Outcome | UpToDate]:
        """A task per item that must run; an outcome for the others (a count for up-to-date runs).

        Outcomes are ``uptodate`` (nothing to do), ``rejected`` (upstream rejected), ``skipped``
        (an item it reads failed) or ``failed`` (an input file is missing).
        """
        node = plan.node
        qname = node.qname
        ancestors = [
            q for q in upstream(self.model, [qname]) if all(d in node.dims for d in self.model.nodes[q].dims)
        ]
        output_links = {name: Link(qname, name) for name in node.stage.outputs}
        handlers = {name: self.paths.handler(link) for name, link in output_links.items()}
        layout = self._layout(node, fp)
        sigs = {} if self.force or not plan.items else self.records.sigs(qname)
        quick = self._quick(plan, layout, sigs) if sigs else None
        todo: Sequence[tuple[Any, ...]] = plan.items
        if quick is not None:
            settled = quick.settle(plan.items)
            if settled.done:
                yield UpToDate(qname, settled.done)
            for index in settled.rejected:  # one by one: explaining names each reason
                yield Outcome(qname, item_key(plan.items[index]), "uptodate")
            todo = [plan.items[index] for index in settled.rest]
        if len(todo) >= _PRELOAD_ITEMS:
            self._preload(node)  # many items for the full check: read the stat cache at once
        for values in todo:
            key = item_key(values)
            tags = dict(zip(node.dims, values, strict=True))
            record = self.records.get(qname, key)
            # an item that runs anyway leaves digesting its sources to the worker that reads them
            defer = self.pending is None and (record is None or self.force)
            try:
                inputs, inputs_fp, input_keys = self._inputs(
                    node.stage.signature.lazy, node.links, tags, defer
                )
            except _Blocked as exc:
                if not (
                    record is not None
                    and record.status == exc.status == "rejected"
                    and record.reason == exc.reason
                ):
                    yield Outcome(qname, key, exc.status, reason=exc.reason)  # type: ignore[arg-type]
                else:
                    yield Outcome(qname, key, "uptodate")
                continue
            outputs = {}
            for name, link in output_links.items():
                rid, rel = self.paths.locate(link, tags)
                outputs[name] = OutputSpec(self._roots[rid] + os.sep + rel, handlers[name], rid, rel)
            if self.force:
                reasons = ["forced"]
            else:
                reasons, output_keys = self._reasons(record, fp, inputs_fp, outputs)
                if not reasons:
                    self._keep_sig(record, layout, input_keys, output_keys, sigs.get(key))
                    yield Outcome(qname, key, "uptodate")
                    continue
            yield Task(
                qname,
                node.stage,
                key,
                tags,
                inputs,
                outputs,
                plan.params,
                fp.params_hash,
                self._meta(ancestors, tags),
                inputs_fp,
                tuple(reasons),
                tuple(name for name, digest in inputs_fp.items() if digest is _DEFERRED),
            )

    def _layout(self, node: Node, fp: StageFingerprint) -> bytes:
        """The stage's code, parameters and file places, as a short digest (heads each signature)."""
        files = [(f"in {n} {link.producer}", link) for n, link in node.links.items()]
        files += [(f"out {n}", Link(node.qname, n)) for n in node.stage.outputs]
        places = [
            f"{what} {self._roots[self.paths.root_id(link)]} {self.paths.template(link).text}"
            for what, link in files
        ]
        return layout_digest([fp.code.digest, fp.params_hash, *node.dims, *places])

    def _quick(self, plan: StagePlan, layout: bytes, sigs: dict[str, bytes]) -> QuickCheck | None:
        """The quick check of a stage's items (None: every item takes the full check)."""
        node = plan.node
        dims = node.dims
        first = plan.items[0]
        tags = dict(zip(dims, first, strict=True))
        inputs: list[Any] = []
        blocked: list[tuple[Any, Any]] = []
        for link in node.links.values():
            link_dims = self.model.link_dims(link)
            if any(d not in dims for d in link_dims):
                if self.pending is not None and link.producer and self.pending.get(link.producer):
                    return None  # explaining: members may still change
                lister = self._member_lister(link, dims, link_dims)
                if lister is None:
                    return None
                inputs.append(lister)
                continue
            render = self._checked_renderer(link, dims, first, tags)
            if render is None:
                return None
            inputs.append(render)
            if link.producer is not None:
                key_fn = producer_key_fn(dims, link_dims)
                blocked.append((key_fn, self.records.not_done(link.producer)))
                if self.pending is not None:
                    blocked.append((key_fn, self.pending.get(link.producer, ())))
        outputs = [
            self._checked_renderer(Link(node.qname, name), dims, first, tags) for name in node.stage.outputs
        ]
        if None in outputs:
            return None
        return QuickCheck(sigs, layout, inputs, outputs, blocked)

    def _checked_renderer(
        self, link: Link, dims: tuple[str, ...], first: tuple[Any, ...], tags: dict[str, Any]
    ) -> Any:
        """The fast renderer of ``link``'s files, checked against `AssetPaths.locate` once."""
        render = self.paths.renderer(link, dims)
        if render is None:
            return None
        rid, rel = self.paths.locate(link, tags)
        return render if render(first) == self._roots[rid] + os.sep + rel else None  # stay exact

    def _member_lister(self, link: Link, dims: tuple[str, ...], link_dims: tuple[str, ...]) -> Any:
        """For a collection input: from an item's values, the paths of the members it may hold,
        in `_members` order (a missing file is not a member)."""
        render = self.paths.renderer(link, link_dims)
        if render is None:
            return None
        shared = [(d, dims.index(d)) for d in link_dims if d in dims]

        def members(values: tuple[Any, ...]) -> list[str]:
            fixed = {d: values[i] for d, i in shared}
            return [render(m) for _, m in self._members(link, link_dims, fixed)]  # type: ignore[misc]

        return members

    def _members(
        self, link: Link, link_dims: tuple[str, ...], fixed: dict[str, Any]
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        """The producer items a collection input holds for an item with tags ``fixed``: their
        key (the values of the dims not fixed) and values, ordered by key; failed or rejected
        items are not members."""
        where = {d: frozenset([v]) for d, v in fixed.items()}
        splits = self.model.nodes[link.producer].stage.splits if link.producer else None
        not_done = self.records.not_done(link.producer) if link.producer else set()
        extra = [i for i, d in enumerate(link_dims) if d not in fixed]
        found = [
            (values[extra[0]] if len(extra) == 1 else tuple(values[i] for i in extra), values)
            for values in self.model.dims.enumerate(link_dims, splits=splits, where=where)
            if not (not_done and item_key(values) in not_done)
        ]
        with contextlib.suppress(TypeError):  # mixed value types: keep the declared order
            found.sort(key=lambda e: e[0])
        return found

    def _preload(self, node: Node) -> None:
        """Read the stat cache of every root the stage's files are under, in one query each."""
        links = [*node.links.values(), *(Link(node.qname, name) for name in node.stage.outputs)]
        for rid in {self.paths.root_id(link) for link in links}:
            self.index.files.preload(rid)

    def _keep_sig(
        self,
        record: ItemRecord | None,
        layout: bytes,
        input_keys: list[StatKey | None] | None,
        output_keys: list[StatKey | None] | None,
        stored: bytes | None,
    ) -> None:
        """Give an up-to-date item a new stat signature when every file's stats prove its content
        (``stored``: the one it has)."""
        if record is None or not _proven(input_keys):
            return
        if record.status == "done":
            if output_keys is None or None in output_keys:
                return
            sig = make_sig(layout, input_keys, output_keys)  # type: ignore[arg-type]
        else:
            sig = make_sig(layout, input_keys, None)  # type: ignore[arg-type]
        if sig != stored:
            self.records.set_sig(record.stage, record.key, sig)

    def _reasons(
        self,
        record: ItemRecord | None,
        fp: StageFingerprint,
        inputs_fp: dict[str, str | None],
        outputs: dict[str, OutputSpec],
    ) -> tuple[list[str], list[StatKey | None] | None]:
        """Why the item must run, and the proving stat key of each output (when done)."""
        if record is None:
            return ["new"], None
        keys: list[StatKey | None] | None = None
        digests: dict[str, str | None] = {}
        if record.status == "done":
            keys = []
            for name, spec in outputs.items():
                digests[name], key = self.index.digest_key_at(spec.root, spec.rel)
                keys.append(key)
        reasons = stale_reasons(
            record, fp, inputs_fp, digests, {name: spec.rel for name, spec in outputs.items()}
        )
        return reasons, keys

    def _inputs(
        self, lazy: frozenset[str], links: dict[str, Link] | Any, tags: dict[str, Any], defer: bool = False
    ) -> tuple[dict[str, InputSpec], dict[str, str | None], list[Any]]:
        """How each input arrives, its digest (`_DEFERRED`: the worker's to compute), and the
        proving stat key of its file (a list for a collection's members; None: not proven)."""
        specs: dict[str, InputSpec] = {}
        digests: dict[str, str | None] = {}
        keys: list[Any] = []
        for name, link in links.items():
            specs[name], digests[name], key = self._input(lazy, name, link, tags, defer)
            keys.append(key)
        return specs, digests, keys

    def _link_info(self, link: Link) -> tuple[tuple[str, ...], Any]:
        info = self._links.get(link)
        if info is None:
            info = self._links[link] = (self.model.link_dims(link), self.paths.handler(link))
        return info

    def _input(
        self, lazy: frozenset[str], name: str, link: Link, tags: dict[str, Any], defer: bool = False
    ) -> tuple[InputSpec, str | None, Any]:
        dims, handler = self._link_info(link)
        extra = [d for d in dims if d not in tags]
        if extra:
            entries, digests, member_keys = self._collection(link, dims, tags)
            if not self.force and self.pending is not None and link.producer is not None:
                pending = self.pending.get(link.producer, set())
                if pending and self._any_pending(link, dims, tags, pending):
                    raise _Blocked("pending", f"upstream may change: {link.producer}")
            digest = collection_digest(zip((key for key, _ in entries), digests, strict=True))
            return InputSpec("many", handler, entries=tuple(entries)), digest, member_keys
        rid, rel = self.paths.locate(link, tags)
        if link.producer is not None:
            producer_key = item_key([tags[d] for d in dims])
            if (
                not self.force
                and self.pending is not None
                and producer_key in self.pending.get(link.producer, ())
            ):
                raise _Blocked("pending", f"upstream may change: {link.producer}")
            state = self.records.get(link.producer, producer_key)
            if state is not None and state.status != "done":
                label = item_label({d: tags[d] for d in dims})
                if state.status == "rejected":
                    raise _Blocked("rejected", f"upstream rejected: {link.producer} {label}")
                raise _Blocked("skipped", f"upstream failed: {link.producer} {label}")
        path = self._roots[rid] + os.sep + rel
        if defer and link.producer is None and rid != "/":
            return InputSpec("one", handler, path=path, lazy=name in lazy), _DEFERRED, None
        digest, key = self.index.digest_key_at(rid, rel)
        if digest is None:
            raise _Blocked("failed", f"input '{name}' is missing: {path}")
        return InputSpec("one", handler, path=path, lazy=name in lazy), digest, key

    def _any_pending(
        self, link: Link, dims: tuple[str, ...], tags: dict[str, Any], pending: set[str]
    ) -> bool:
        fixed = {d: frozenset([tags[d]]) for d in dims if d in tags}
        splits = self.model.nodes[link.producer].stage.splits if link.producer else None
        return any(
            item_key(v) in pending for v in self.model.dims.enumerate(dims, splits=splits, where=fixed)
        )

    def _collection(
        self, link: Link, dims: tuple[str, ...], tags: dict[str, Any]
    ) -> tuple[list[tuple[Any, str]], list[str | None], list[StatKey | None]]:
        """The ``(key, path)`` of each member that exists, ordered by key, their digests, and
        the stat keys proving those digests."""
        fixed = {d: tags[d] for d in dims if d in tags}
        found: list[tuple[Any, str, str]] = []
        for key, values in self._members(link, dims, fixed):
            found.append((key, *self.paths.locate(link, dict(zip(dims, values, strict=True)))))
        known: dict[tuple[str, str], tuple[str | None, StatKey | None]] = {}
        for rid in {rid for _, rid, _ in found}:
            rels = [rel for _, r, rel in found if r == rid]
            if rid == "/":
                known.update(((rid, rel), (self.index.digest_at(rid, rel), None)) for rel in rels)
            else:
                known.update(
                    ((rid, rel), v) for rel, v in self.index.files.fingerprint_many_keys(rid, rels).items()
                )
        entries: list[tuple[Any, str]] = []
        digests: list[str | None] = []
        keys: list[StatKey | None] = []
        for key, rid, rel in found:
            digest, stat_key = known[rid, rel]
            if digest is not None:  # never produced, or deleted since (its producer is then stale: warned)
                entries.append((key, self._roots[rid] + os.sep + rel))
                digests.append(digest)
                keys.append(stat_key)
        return entries, digests, keys

    def _meta(self, ancestors: list[str], tags: dict[str, Any]) -> dict[str, dict[str, Any]]:
        meta: dict[str, dict[str, Any]] = {}
        for qname in ancestors:
            node = self.model.nodes[qname]
            state = self.records.get(qname, item_key([tags[d] for d in node.dims]))
            if state is not None and state.status == "done":
                meta[node.stage.name] = dict(state.meta or {})
                meta[qname] = meta[node.stage.name]
        return meta


_PRELOAD_ITEMS = 64
"""A stage with this many items reads the stat cache of its roots at once, not file by file."""

_DEFERRED = "<digested by the worker>"
"""The digest of a source a new item's worker digests (`Task.hash_inputs`)."""


def _proven(keys: list[Any] | None) -> bool:
    """Whether every stat key is there (collections: every member's)."""
    return keys is not None and all(k is not None and (type(k) is not list or None not in k) for k in keys)


class _Blocked(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
