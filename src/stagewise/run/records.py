"""The coordinator's view of the state store: item records per stage, and recording outcomes.

Only the coordinator writes records. Records are buffered and committed in batches at most a
fraction of a second old (``BatchWriter``), so a killed run loses at most the items in flight.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable
from typing import Any

from stagewise.run.freshness import FileIndex, StageFingerprint, canonical_inputs, canonical_outputs
from stagewise.run.task import Outcome, Task
from stagewise.state.filehash import CachedStat, StatKey, StatRow
from stagewise.state.records import ItemRecord, dumps_json, new_record
from stagewise.state.store import StateStore

__all__ = ["BatchedStats", "StateRecords"]

_POINT_LOOKUPS = 256
"""Items of a stage looked up one by one before all its records are read at once."""


class BatchedStats:
    """The state store as a stat cache whose writes go through the batch writer."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def get_stats(self, root: str, relpaths: Iterable[str] | None = None) -> dict[str, CachedStat]:
        """Cached entries of a root."""
        return self.store.get_stats(root, relpaths)

    def put_stats(self, rows: Iterable[StatRow]) -> None:
        """Buffer entries; they are committed with the next batch of records (a read-only
        store, as ``status`` opens it, keeps nothing: a later run hashes again)."""
        if not self.store.readonly:
            self.store.writer.add_stats(rows)


class StateRecords:
    """Item records of one output root, cached per stage for the length of a run.

    Args:
        store: the open state store.
        index: file digests through the stat cache (its writes go to the same store).
        run_id: the run recorded in every new record.
    """

    def __init__(self, store: StateStore, index: FileIndex, run_id: str | None = None) -> None:
        self.store = store
        self.index = index
        self.run_id = run_id
        self.host = socket.gethostname()
        self._stages: dict[str, dict[str, ItemRecord]] = {}
        self._looked_up: dict[str, dict[str, ItemRecord | None]] = {}
        self._not_done: dict[str, set[str]] = {}
        self._shared: dict[str, tuple[str, str]] = {}

    def stage(self, qname: str) -> dict[str, ItemRecord]:
        """Every recorded item of a stage, by key (read once, then kept up to date in memory)."""
        records = self._stages.get(qname)
        if records is None:
            records = self._stages[qname] = self.store.get_items(qname)
            for key, record in self._looked_up.pop(qname, {}).items():
                if record is not None:
                    records[key] = record  # recorded in this run, maybe not committed yet
        return records

    def get(self, qname: str, key: str) -> ItemRecord | None:
        """The record of one item: looked up alone until a stage needs many, then all at once."""
        records = self._stages.get(qname)
        if records is not None:
            return records.get(key)
        looked_up = self._looked_up.setdefault(qname, {})
        if key in looked_up:
            return looked_up[key]
        if len(looked_up) >= _POINT_LOOKUPS:
            return self.stage(qname).get(key)
        record = looked_up[key] = self.store.get_item(qname, key)
        return record

    def not_done(self, qname: str) -> set[str]:
        """Keys of the items of a stage recorded failed or rejected (kept up to date in this run)."""
        keys = self._not_done.get(qname)
        if keys is None:
            records = self._stages.get(qname)
            keys = self._not_done[qname] = (
                {k for k, r in records.items() if r.status != "done"}
                if records is not None
                else self.store.not_done(qname)
            )
        return keys

    def sigs(self, qname: str) -> dict[str, bytes]:
        """The stat signatures of a stage's items."""
        return self.store.get_sigs(qname)

    def set_sig(self, qname: str, key: str, sig: bytes) -> None:
        """Keep a new stat signature for an item found up to date (not when only reading)."""
        if not self.store.readonly:
            self.store.writer.add_sigs([(sig, qname, key)])

    def put(self, outcome: Outcome, task: Task | None, fp: StageFingerprint) -> ItemRecord:
        """Record a finished (done, failed or rejected) item and the digests of its files."""
        files = self.index.files
        digests: dict[str, str] = {}
        rels: dict[str, str] = {}
        for name, out in outcome.outputs.items():
            spec = task.outputs.get(name) if task is not None else None
            root, rel = (
                (spec.root, spec.rel) if spec is not None and spec.rel else self.index.locate(out.path)
            )
            digests[name], rels[name] = out.digest, rel
            if root != "/":
                files.record(root, rel, out.digest, StatKey(*out.stat), out.hashed_at_ns)
        if outcome.status == "rejected":
            self._remove_old_outputs(outcome)
        inputs: dict[str, Any] = dict(task.inputs_fp) if task is not None else {}
        for name in task.hash_inputs if task is not None else ():
            found = outcome.inputs.get(name)
            inputs[name] = None if found is None else found.digest
            if found is not None and found.stat:
                root, rel = self.index.locate(found.path)
                if root != "/":
                    files.record(root, rel, found.digest, StatKey(*found.stat), found.hashed_at_ns)
        shared = self._shared.get(fp.params_hash + fp.code.digest)
        if shared is None:  # the same for every item of the stage: encoded once
            shared = self._shared[fp.params_hash + fp.code.digest] = (
                dumps_json(fp.code.parts),
                dumps_json(fp.params),
            )
        record = new_record(
            stage=outcome.stage,
            key=outcome.key,
            status=outcome.status,
            code_fp=fp.code.digest,
            params_hash=fp.params_hash,
            code_parts=shared[0],
            params=shared[1],
            inputs=canonical_inputs(inputs),
            outputs=canonical_outputs(digests, rels),
            meta=dumps_json(outcome.meta) if outcome.meta else "{}",
            reason=outcome.reason,
            error=outcome.error,
            started=outcome.started,
            duration=outcome.duration,
            host=self.host,
            run_id=self.run_id,
        )
        records = self._stages.get(outcome.stage)
        if records is not None:
            records[outcome.key] = record
        else:
            self._looked_up.setdefault(outcome.stage, {})[outcome.key] = record
        not_done = self._not_done.get(outcome.stage)
        if not_done is not None:
            if outcome.status == "done":
                not_done.discard(outcome.key)
            else:
                not_done.add(outcome.key)
        self.store.writer.add_items([record])
        return record

    def _remove_old_outputs(self, outcome: Outcome) -> None:
        """A rejected item has no outputs: files from an earlier, accepted run would mislead."""
        old = self.get(outcome.stage, outcome.key)
        if old is None or old.status != "done":
            return
        for relpath, _digest in (old.outputs or {}).values():
            path = os.path.join(self.index.files.roots["output"], relpath)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def flush(self) -> None:
        """Commit everything buffered (records and stat-cache rows)."""
        self.index.files.flush()
        self.store.writer.flush()

    def flush_if_due(self) -> None:
        """Commit if the oldest buffered record is old enough (called while waiting for results)."""
        self.index.files.flush()
        self.store.writer.flush_if_due()
