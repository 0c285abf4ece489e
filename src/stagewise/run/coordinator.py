"""The coordinator: plan items, send them to an executor, record outcomes. It alone writes records."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stagewise.model.graph import producers
from stagewise.model.pipeline import PipelineModel
from stagewise.run.build import TaskBuilder
from stagewise.run.executors.base import Executor
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.records import Records
from stagewise.run.task import Outcome, Task, item_label

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

    @property
    def ok(self) -> bool:
        """No item failed and every selected stage ran."""
        return not self.failures and not self.not_started and not self.interrupted


def run_plans(
    model: PipelineModel,
    plans: Sequence[StagePlan],
    records: Records,
    executor: Executor,
    *,
    fail_fast: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> RunReport:
    """Run the planned stages in order; a stage whose upstream failed does not start."""
    paths = AssetPaths(model)
    builder = TaskBuilder(model, records, paths)
    report = RunReport()
    failed_stages: set[str] = set()
    for plan in plans:
        counts = report.counts.setdefault(plan.qname, Counter())
        blocked = [p for p in producers(model, plan.qname) if p in failed_stages]
        if blocked:
            report.not_started.append(plan.qname)
            failed_stages.add(plan.qname)
            log.warning("%s: not started, because %s failed", plan.qname, ", ".join(blocked))
            continue
        if fail_fast and report.failures:
            report.not_started.append(plan.qname)
            continue
        log.info("%s: %d item%s", plan.qname, len(plan.items), "" if len(plan.items) == 1 else "s")
        tasks: list[Task] = []
        for entry in builder.tasks(plan):
            if isinstance(entry, Outcome):
                _take(entry, plan, records, report, counts, on_outcome)
            else:
                tasks.append(entry)
        for outcome in executor.run(tasks):
            _take(outcome, plan, records, report, counts, on_outcome)
            if fail_fast and outcome.status == "failed":
                break
        if counts["failed"] or counts["skipped"]:
            failed_stages.add(plan.qname)
    return report


def _take(
    outcome: Outcome,
    plan: StagePlan,
    records: Records,
    report: RunReport,
    counts: Counter[str],
    on_outcome: Callable[[Outcome], None] | None,
) -> None:
    counts[outcome.status] += 1
    if outcome.status != "skipped":
        records.put([outcome])
    if outcome.status == "failed":
        tags = item_label(dict(zip(plan.node.dims, json.loads(outcome.key), strict=True)))
        report.failures.append(Failure(outcome.stage, tags, outcome.reason or "failed", outcome.error))
        log.error("%s %s failed: %s", outcome.stage, tags, outcome.reason)
    if on_outcome is not None:
        on_outcome(outcome)
