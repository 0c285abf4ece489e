"""Explain what a run would do, and why: ``run --dry-run`` and ``status``.

Uses the same decisions as a real run (``TaskBuilder``), without executing anything: items
downstream of an item that would rerun are "pending" — early cutoff decides at run time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stagewise.run.build import TaskBuilder
from stagewise.run.freshness import StageFingerprint
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan
from stagewise.run.records import StateRecords
from stagewise.run.task import Outcome, UpToDate

if TYPE_CHECKING:
    from stagewise.api.session import Session

__all__ = ["StageStatus", "stage_statuses"]


@dataclass
class StageStatus:
    """The state of one stage's items, with the reasons stale items would rerun."""

    stage: str
    total: int = 0
    done: int = 0
    stale: int = 0
    missing: int = 0
    failed: int = 0
    rejected: int = 0
    would_run: int = 0
    pending: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--format json``."""
        return {
            "stage": self.stage, "total": self.total, "done": self.done, "stale": self.stale,
            "missing": self.missing, "failed": self.failed, "rejected": self.rejected,
            "would_run": self.would_run, "pending": self.pending, "reasons": dict(self.reasons),
            "rejected_reasons": dict(self.rejected_reasons),
        }  # fmt: skip


def stage_statuses(
    session: Session,
    plans: Sequence[StagePlan],
    fingerprints: Mapping[str, StageFingerprint],
    records: StateRecords,
    *,
    force: bool = False,
) -> list[StageStatus]:
    """Evaluate every planned item against the records and files, in execution order."""
    pending: dict[str, set[str]] = {}
    builder = TaskBuilder(session.model, records, AssetPaths(session.model), force=force, pending=pending)
    out = []
    for plan in plans:
        status = StageStatus(plan.qname, total=len(plan.items))
        stage_records = records.stage(plan.qname)
        mine = pending.setdefault(plan.qname, set())
        for entry in builder.tasks(plan, fingerprints[plan.qname]):
            if type(entry) is UpToDate:
                status.done += entry.count
                continue
            record = stage_records.get(entry.key)
            if isinstance(entry, Outcome):
                _count_outcome(status, entry, record, mine)
                continue
            mine.add(entry.key)
            status.would_run += 1
            reasons = entry.reasons
            if reasons == ("new",):
                status.missing += 1
            elif reasons == ("previously failed",):
                status.failed += 1
            else:
                status.stale += 1
            for reason in reasons:
                status.reasons[reason] += 1
        out.append(status)
    display = {q: i for i, q in enumerate(session.model.nodes)}
    return sorted(out, key=lambda s: display[s.stage])  # decided in execution order, shown in display order


def _count_outcome(status: StageStatus, entry: Outcome, record: object, mine: set[str]) -> None:
    recorded = getattr(record, "status", None)
    if entry.status == "uptodate":
        if recorded == "rejected":
            status.rejected += 1
            status.rejected_reasons[getattr(record, "reason", None) or "rejected"] += 1
        else:
            status.done += 1
    elif entry.status == "pending":
        mine.add(entry.key)
        status.pending += 1
        status.stale += 1 if record is not None else 0
        status.missing += 1 if record is None else 0
        status.reasons["new" if record is None else (entry.reason or "upstream may change")] += 1
    elif entry.status == "rejected":
        status.rejected += 1
        mine.add(entry.key)
        status.rejected_reasons[entry.reason or "rejected"] += 1
    elif entry.status == "skipped":
        status.failed += 1
        status.reasons[entry.reason or "upstream failed"] += 1
    else:  # an input file is missing
        status.missing += 1
        status.reasons[entry.reason or "input missing"] += 1
