"""One invocation over a pipeline: layer the parameters, validate, select, plan and run.

Shared by the command line and the Python API, so both behave the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagewise.config.layers import Layer, ResolvedParam, flatten_params, resolve_params
from stagewise.errors import ConfigError, Problem, ValidationError
from stagewise.model.pipeline import PipelineModel
from stagewise.run.coordinator import RunReport, run_plans
from stagewise.run.executors import Executor, get_executor
from stagewise.run.freshness import FileIndex, StageFingerprint, stage_fingerprint
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan, check_inputs_exist, parse_where, plan_stages
from stagewise.run.progress import make_progress
from stagewise.run.records import BatchedStats, StateRecords
from stagewise.run.selection import Selection, select
from stagewise.state.filehash import FileFingerprinter
from stagewise.state.lock import RunLock
from stagewise.state.store import StateStore
from stagewise.validate import validate_model

if TYPE_CHECKING:
    from stagewise.api.explain import StageStatus

__all__ = ["RunOptions", "Session", "file_layer", "missing_source_warnings"]

log = logging.getLogger("stagewise")


@dataclass
class RunOptions:
    """Everything a run is asked to do (the command line's flags, or ``Pipeline.run``'s arguments)."""

    selectors: Sequence[str] = ()
    layers: Sequence[Layer] = ()
    jobs: int | None = None
    executor: str | Executor = "local"
    force: bool = False
    where: Sequence[str] = ()
    output: str | Path | None = None
    fail_fast: bool = False
    retries: int = 0
    dry_run: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def file_layer(model: PipelineModel) -> Layer:
    """The pipeline's own parameter values: groups' params, then ``params:``."""
    values: dict[str, Any] = {}
    for name, group in model.groups.items():
        for key, value in group.params.items():
            values[f"{name}.{key}"] = value
    values.update(flatten_params(model.params, model))
    keys = {key: model.param_places.get(key, "") for key in values}
    keys.update(
        {
            f"{name}.{key}": f"groups.{name}.params.{key}"
            for name, g in model.groups.items()
            for key in g.params
        }
    )
    return Layer("file", values, place=model.place, keys={k: v for k, v in keys.items() if v})


def with_output(model: PipelineModel, output: str | Path | None) -> PipelineModel:
    """The model with another output root (relative to the current folder)."""
    if output is None:
        return model
    return dataclasses.replace(model, output=Path(output).expanduser().absolute())


class Session:
    """A pipeline model with its parameters resolved through the layers."""

    def __init__(
        self, model: PipelineModel, layers: Sequence[Layer] = (), output: str | Path | None = None
    ) -> None:
        self.model = with_output(model, output)
        self.params: dict[str, dict[str, ResolvedParam]]
        self.params, self.param_problems = resolve_params(self.model, [file_layer(self.model), *layers])

    def problems(self) -> list[Problem]:
        """Every problem of the pipeline, parameters included."""
        return validate_model(self.model, self.param_problems)

    def require_readable(self, *, parameters: bool = False) -> None:
        """Raise when the pipeline itself is broken: nothing can be planned.

        Args:
            parameters: also refuse bad parameter values (a required one left unset is fine:
                ``params`` and ``status`` show it).
        """
        from stagewise.model.graph import find_cycle

        problems = [p for p in self.model.problems if p.severity == "error"]
        if parameters:
            problems += [p for p in self.param_problems if "required parameter is not set" not in p.message]
        cycle = find_cycle(self.model)
        if cycle:
            problems.append(Problem(self.model.place, f"the stages form a cycle: {' -> '.join(cycle)}"))
        if problems:
            raise ValidationError(problems)

    def select(self, selectors: Sequence[str]) -> Selection:
        """Resolve stage selectors."""
        return select(self.model, selectors)

    def validate(self, selected: Sequence[str]) -> list[Problem]:
        """Raise on errors concerning the selected stages (or no stage); return the rest."""
        problems = self.problems()
        chosen = set(selected)
        fatal = [p for p in problems if p.severity == "error" and (p.stage is None or p.stage in chosen)]
        if fatal:
            raise ValidationError(fatal)
        return problems

    def plan(self, selected: Sequence[str], where: Sequence[str] = ()) -> list[StagePlan]:
        """Every item of the selected stages, after checking the inputs they need exist."""
        plans = plan_stages(self.model, selected, self.params, parse_where(self.model, where))
        check_inputs_exist(self.model, plans, AssetPaths(self.model))
        return plans

    def statuses(self, stages: Sequence[str], where: Sequence[str] = ()) -> list[StageStatus]:
        """What each stage's items would do now, read from the state store without writing to it."""
        from stagewise.api.explain import stage_statuses

        plans = plan_stages(self.model, stages, self.params, parse_where(self.model, where))
        with self.open_store(readonly=True) as store:
            return stage_statuses(self, plans, self.fingerprints(plans), self.records(store))

    def next_stage(self, selected: Sequence[str], where: Sequence[str] = ()) -> str | None:
        """The first selected stage, in display order, with items to run and no work upstream."""
        from stagewise.model.graph import upstream

        involved = set(selected) | upstream(self.model, selected)
        statuses = {s.stage: s for s in self.statuses([q for q in self.model.nodes if q in involved], where)}
        for qname in self.model.nodes:
            status = statuses.get(qname)
            if qname not in selected or status is None or not (status.would_run or status.pending):
                continue
            if all(not (statuses[u].would_run or statuses[u].pending) for u in upstream(self.model, [qname])):
                return qname
        return None

    def waiting_upstream(self, selected: Sequence[str]) -> list[str]:
        """Unselected upstream stages that have work (why ``--next`` found nothing to run)."""
        from stagewise.model.graph import upstream

        outside = [q for q in self.model.nodes if q in upstream(self.model, selected) and q not in selected]
        if not outside:
            return []
        return [s.stage for s in self.statuses(outside) if s.would_run or s.pending]

    def plan_all(self, selected: Sequence[str]) -> list[StagePlan]:
        """Every item of the given stages, without checking inputs (for ``status``)."""
        return plan_stages(self.model, selected, self.params)

    def fingerprints(self, plans: Sequence[StagePlan]) -> dict[str, StageFingerprint]:
        """Code and parameter fingerprints of the planned stages, computed before anything runs."""
        return {p.qname: stage_fingerprint(self.model, p.node, p.params) for p in plans}

    def state_dir(self) -> Path:
        """``OUTPUT/.stagewise``."""
        return self.model.output / ".stagewise"

    def open_store(self, *, readonly: bool = False) -> StateStore:
        """The state store of the output root."""
        return StateStore(self.state_dir() / "state.db", readonly=readonly)

    def records(self, store: StateStore, run_id: str | None = None) -> StateRecords:
        """Item records over an open store, with file digests through its stat cache."""
        roots = {"output": self.model.output, "base": self.model.base_dir}
        roots.update({f"paths.{name}": root for name, root in self.model.paths.items()})
        files = FileFingerprinter(BatchedStats(store), roots)  # stages preload the roots they use
        return StateRecords(store, FileIndex(self.model, files), run_id)

    def run(self, options: RunOptions, selection: Selection) -> RunReport:
        """Validate, plan and run the selected stages (or, with ``dry_run``, only explain)."""
        if options.dry_run:
            from stagewise.api.explain import stage_statuses

            self.validate(selection.stages)
            plans = self.plan(selection.stages, options.where)
            with self.open_store(readonly=True) as store:
                statuses = stage_statuses(
                    self, plans, self.fingerprints(plans), self.records(store), force=options.force
                )
            return RunReport(statuses=statuses)
        executor = _executor(options, self.model)  # first: a pool's workers start while we plan
        terminated = False
        lock = RunLock(self.state_dir() / "lock")
        try:
            self.validate(selection.stages)
            plans = self.plan(selection.stages, options.where)
            fingerprints = self.fingerprints(plans)
            _acquire(lock, wait=bool(options.extra.get("wait")))
            with self.open_store() as store:
                run_id = _new_run_id()
                _clean_after_crash(store, self.model.output)
                store.close_unfinished_runs()
                store.start_run(
                    run_id, command=options.extra.get("command", "run"), selection=selection.stages
                )
                records = self.records(store, run_id)
                self._warn_stale_producers(selection.stages, records)
                outcome = "interrupted"
                try:
                    with make_progress(options.progress) as progress:
                        report = run_plans(
                            self.model,
                            plans,
                            records,
                            executor,
                            fingerprints,
                            force=options.force,
                            fail_fast=options.fail_fast,
                            retries=options.retries,
                            progress=progress,
                        )
                    outcome = "done" if report.ok else "failed"
                    return report
                except KeyboardInterrupt:
                    terminated = True
                    terminate = getattr(executor, "terminate", None)
                    if terminate is not None:
                        terminate()  # workers ignore SIGINT: stop them now, what finished is recorded
                    raise
                finally:
                    store.finish_run(run_id, outcome=outcome)  # type: ignore[arg-type]
        finally:
            lock.release()
            if isinstance(options.executor, str) and not terminated:
                executor.close()

    def _warn_stale_producers(self, selected: Sequence[str], records: StateRecords) -> None:
        """Inputs from unselected stages are used as they are; say so when those stages are stale."""
        from stagewise.api.explain import stage_statuses
        from stagewise.model.graph import producers

        chosen = set(selected)
        outside = sorted({p for q in selected for p in producers(self.model, q) if p not in chosen})
        if not outside:
            return
        plans = self.plan_all(outside)
        for status in stage_statuses(self, plans, self.fingerprints(plans), records):
            count = status.stale + status.missing + status.failed
            if count:
                why = "; ".join(r for r, _ in status.reasons.most_common(2))
                log.warning(
                    "warning: %s is not selected and %d of its items are out of date (%s); "
                    "running on the outputs that exist (select +%s to update it)",
                    status.stage,
                    count,
                    why,
                    selected[0],
                )


def _acquire(lock: RunLock, *, wait: bool) -> None:
    """Take the run lock; say when waiting for another run, and when a dead run's lock is taken over."""
    from stagewise.errors import LockError

    try:
        lock.acquire(wait=False)
    except LockError as exc:
        if not wait:
            raise
        log.info("waiting: %s", exc.message)
        lock.acquire(wait=True)
    if getattr(lock, "took_over", None):
        log.warning("took over the lock of a run that is gone (%s)", lock.took_over)


def _new_run_id() -> str:
    """``20261122-041204-3fa9``: sortable by start time, unique within the output root."""
    import secrets
    import time

    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _clean_after_crash(store: StateStore, output: Path) -> None:
    """After a run that did not finish (killed), remove the temporary files it left behind."""
    from stagewise.handlers import remove_orphan_temps

    runs = store.list_runs()
    if runs and runs[-1].outcome == "running" and output.exists():
        removed = remove_orphan_temps(output)
        if removed:
            log.info(
                "removed %d temporary file%s left by an interrupted run",
                len(removed),
                "s" if len(removed) != 1 else "",
            )


def _executor(options: RunOptions, model: PipelineModel) -> Executor:
    import concurrent.futures as cf

    from stagewise.run.cpus import usable_cpus

    if isinstance(options.executor, cf.Executor):  # any concurrent.futures executor, as given
        from stagewise.run.executors.dask import FuturesExecutor

        return FuturesExecutor(options.executor, options.jobs)  # type: ignore[return-value]
    if not isinstance(options.executor, str):
        return options.executor
    jobs = options.jobs if options.jobs is not None else usable_cpus()
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected a number of parallel items >= 1")
    scheduler = options.extra.get("scheduler")
    return get_executor(options.executor, jobs, scheduler=scheduler, project_dirs=[model.base_dir])


def layer_from_mapping(values: Mapping[str, Any], model: PipelineModel, origin: str, place: str) -> Layer:
    """A layer from a (flat or nested) mapping of parameter values."""
    return Layer(origin, flatten_params(values, model), place=place)


def missing_source_warnings(session: Session) -> list[Problem]:
    """Missing source files of every stage, as warnings (``check`` does not fail on data)."""
    from stagewise.run.plan import describe_missing, find_missing_inputs

    model = session.model
    plans = plan_stages(model, list(model.nodes), session.params)
    found = find_missing_inputs(model, plans, AssetPaths(model))
    return [
        Problem(
            f"{model.place}: sources.{m.link.name}",
            f"read by {m.stage} (input '{m.input}'): {describe_missing(model, m)}",
            severity="warning",
            stage=m.stage,
        )
        for m in found
        if m.link.producer is None
    ]
