"""One invocation over a pipeline: layer the parameters, validate, select, plan and run.

Shared by the command line and the Python API, so both behave the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewise.config.layers import Layer, ResolvedParam, flatten_params, resolve_params
from stagewise.errors import ConfigError, Problem, ValidationError
from stagewise.model.pipeline import PipelineModel
from stagewise.run.coordinator import RunReport, run_plans
from stagewise.run.executors import Executor, get_executor
from stagewise.run.paths import AssetPaths
from stagewise.run.plan import StagePlan, check_inputs_exist, parse_where, plan_stages
from stagewise.run.records import Records
from stagewise.run.selection import Selection, select
from stagewise.validate import validate_model

__all__ = ["RunOptions", "Session", "file_layer", "missing_source_warnings"]

log = logging.getLogger("stagewise")


@dataclass
class RunOptions:
    """Everything a run is asked to do (the command line's flags, or ``Pipeline.run``'s arguments)."""

    selectors: Sequence[str] = ()
    layers: Sequence[Layer] = ()
    jobs: int | None = None
    executor: str | Executor = "serial"
    force: bool = False
    where: Sequence[str] = ()
    output: str | Path | None = None
    fail_fast: bool = False
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def file_layer(model: PipelineModel) -> Layer:
    """The pipeline's own parameter values: groups' params, then ``params:``."""
    values: dict[str, Any] = {}
    for name, group in model.groups.items():
        for key, value in group.params.items():
            values[f"{name}.{key}"] = value
    values.update(flatten_params(model.params, model))
    return Layer("file", values, place=model.place)


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

    def run(self, records: Records, options: RunOptions, selection: Selection) -> RunReport:
        """Validate, plan and run the selected stages."""
        self.validate(selection.stages)
        plans = self.plan(selection.stages, options.where)
        if options.dry_run:
            return RunReport(counts={p.qname: _would_run(p) for p in plans})
        executor = _executor(options)
        try:
            return run_plans(self.model, plans, records, executor, fail_fast=options.fail_fast)
        finally:
            if not isinstance(options.executor, str):
                pass  # the caller owns it
            else:
                executor.close()


def _would_run(plan: StagePlan) -> Any:
    from collections import Counter

    return Counter({"would run": len(plan.items)})


def _executor(options: RunOptions) -> Executor:
    if not isinstance(options.executor, str):
        return options.executor
    jobs = options.jobs if options.jobs is not None else 1
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected a number of parallel items >= 1")
    return get_executor(options.executor, jobs)


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
