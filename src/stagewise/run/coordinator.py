"""The coordinator: plan items, send them to an executor, record outcomes. It alone writes records."""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stagewise.model.graph import producers
from stagewise.model.pipeline import PipelineModel
from stagewise.run.build import TaskBuilder
from stagewise.run.executors.base import Executor
from stagewise.run.freshness import StageFingerprint
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.progress import NullProgress, ProgressSink
from stagewise.run.records import StateRecords
from stagewise.run.task import Outcome, Task, UpToDate, item_label

__all__ = ["Failure", "RunReport", "run_plans"]

log = logging.getLogger("stagewise")


@dataclass(frozen=True)
class Failure:
    """One failed item, for the end-of-run summary."""

    stage: str
    item: str
    reason: str
    error: str | None


@dataclass
class RunReport:
    """What a run did, per stage, and the failures."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    interrupted: bool = False
    statuses: list[Any] = field(default_factory=list)
    """For a dry run: the ``StageStatus`` of each planned stage (nothing ran)."""

    @property
    def ok(self) -> bool:
        """No item failed and every selected stage ran."""
        return not self.failures and not self.not_started and not self.interrupted


def run_plans(
    model: PipelineModel,
    plans: Sequence[StagePlan],
    records: StateRecords,
    executor: Executor,
    fingerprints: Mapping[str, StageFingerprint],
    *,
    force: bool = False,
    fail_fast: bool = False,
    retries: int = 0,
    progress: ProgressSink | None = None,
) -> RunReport:
    """Run the planned stages in order; a stage whose upstream failed does not start.

    Records are flushed as items finish (batched) and always before returning, also when
    interrupted, so a killed or interrupted run loses at most the items in flight.
    """
    paths = AssetPaths(model)
    builder = TaskBuilder(model, records, paths, force=force)
    sink = progress if progress is not None else NullProgress()
    notify = sink.update
    report = RunReport()
    failed_stages: set[str] = set()
    try:
        for plan in plans:
            counts = report.counts.setdefault(plan.qname, Counter())
            blocked = [p for p in producers(model, plan.qname) if p in failed_stages]
            if blocked or (fail_fast and report.failures):
                report.not_started.append(plan.qname)
                failed_stages.add(plan.qname)
                if blocked:
                    log.warning("%s: not started, because %s failed", plan.qname, ", ".join(blocked))
                continue
            fp = fingerprints[plan.qname]
            sink.start_stage(plan.qname, len(plan.items))  # before the builder: up-to-date items count
            tasks: dict[str, Task] = {}
            settle = functools.partial(
                _settle, notify=notify, fp=fp, plan=plan, records=records, report=report, counts=counts
            )
            limit = parallel_limit(plan.node.stage.memory) if plan.node.stage.memory else None
            for attempt in range(retries + 1):
                again: dict[str, Task] = {}
                stopping = False
                todo = (
                    _Stream(_built(builder, plan, fp, tasks, settle), len(plan.items))
                    if attempt == 0
                    else list(tasks.values())
                )
                for outcome in _run_tasks(executor, todo, limit):  # type: ignore[arg-type]
                    if outcome is None:  # a heartbeat while items run
                        records.flush_if_due()
                        continue
                    if outcome.status == "failed" and attempt < retries:
                        again[outcome.key] = tasks[outcome.key]
                        tags = item_label(tasks[outcome.key].tags)
                        log.warning("%s %s failed (%s); retrying", plan.qname, tags, outcome.reason)
                        continue
                    _take(outcome, tasks.get(outcome.key), fp, plan, records, report, counts, notify)
                    records.flush_if_due()
                    if fail_fast and outcome.status == "failed" and not stopping:
                        stop = getattr(executor, "stop", None)
                        if stop is None:
                            break
                        stop()  # record what is already running, start nothing more
                        stopping = True
                for _ in todo:  # stopped early: settle the rest (counted, not run)
                    pass
                if not again or (fail_fast and report.failures):
                    break
                tasks = again
            sink.end_stage(plan.qname)
            if counts["failed"] or counts["skipped"]:
                failed_stages.add(plan.qname)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        records.flush()
    return report


def _settle(
    entry: Outcome | UpToDate,
    *,
    notify: Callable[[Outcome | UpToDate], None],
    fp: StageFingerprint,
    plan: StagePlan,
    records: StateRecords,
    report: RunReport,
    counts: Counter[str],
) -> None:
    """Count an item that does not run (and record it when it is an outcome)."""
    if type(entry) is UpToDate:
        counts["uptodate"] += entry.count
        notify(entry)
    else:
        _take(entry, None, fp, plan, records, report, counts, notify)  # type: ignore[arg-type]


def _built(
    builder: TaskBuilder,
    plan: StagePlan,
    fp: StageFingerprint,
    tasks: dict[str, Task],
    settle: Callable[[Outcome | UpToDate], None],
) -> Iterator[Task]:
    """The stage's tasks as the builder decides them (kept in ``tasks``), while the first run."""
    for entry in builder.tasks(plan, fp):
        if type(entry) is Task:
            tasks[entry.key] = entry
            yield entry
        else:
            settle(entry)  # type: ignore[arg-type]
    if tasks:
        log.info("%s: %d item%s to run", plan.qname, len(tasks), "" if len(tasks) == 1 else "s")


class _Stream:
    """Tasks produced while they run, with the number planned (an upper bound) as their length:
    an executor sizes its batches by it and starts the first ones before the last are built."""

    def __init__(self, tasks: Iterator[Task], planned: int) -> None:
        self._tasks = tasks
        self._planned = planned

    def __iter__(self) -> Iterator[Task]:
        return self._tasks

    def __len__(self) -> int:
        return self._planned


def parallel_limit(memory: int) -> int:
    """How many items needing ``memory`` bytes each fit in the available memory (at least one)."""
    from stagewise.run.cpus import available_memory_bytes

    available = available_memory_bytes()
    return max(1, available // memory) if available else 1


def _run_tasks(executor: Executor, tasks: list[Task], limit: int | None) -> Iterator[Outcome | None]:
    if limit is None:
        return executor.run(tasks)
    try:
        return executor.run(tasks, max_parallel=limit)  # type: ignore[call-arg]
    except TypeError:  # an executor without a parallelism limit
        return executor.run(tasks)


def _take(
    outcome: Outcome,
    task: Task | None,
    fp: StageFingerprint,
    plan: StagePlan,
    records: StateRecords,
    report: RunReport,
    counts: Counter[str],
    on_outcome: Callable[[Outcome], None] | None,
) -> None:
    counts[outcome.status] += 1
    if outcome.status in ("done", "failed", "rejected"):
        records.put(outcome, task, fp)
    if outcome.status == "failed":
        tags = item_label(dict(zip(plan.node.dims, json.loads(outcome.key), strict=True)))
        report.failures.append(Failure(outcome.stage, tags, outcome.reason or "failed", outcome.error))
        log.error("%s %s failed: %s", outcome.stage, tags, outcome.reason)
    if on_outcome is not None:
        on_outcome(outcome)
