"""``Pipeline`` and ``load``: the public Python face of a pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stagewise.api.session import RunOptions, Session, layer_from_mapping
from stagewise.errors import ConfigError, Problem, SelectionError, TemplateError
from stagewise.model.group import Group
from stagewise.model.handles import Lazy
from stagewise.model.pipeline import Link, PipelineModel, build_model
from stagewise.model.stage import Stage
from stagewise.run.coordinator import RunReport
from stagewise.run.executors import Executor
from stagewise.run.paths import AssetPaths

__all__ = ["AssetView", "Pipeline", "load"]


class Pipeline:
    """Stages, groups, sources, dims and parameters, with an output root.

    Args:
        stages: stages and groups, in display order.
        sources: source name -> template (or ``Asset``) of raw inputs no stage produces.
        paths: named roots usable as template tags (``{data}``).
        splits: ``{"train": 8, "test": [0, 5]}``: dim ``split``, and ``sim`` ranging per split.
        dims: other dims: a list of values, or N for 0..N-1.
        params: flat dotted parameter values (``{"simulate.npix": 768}``).
        output: the output root. Relative paths are relative to the current folder.
        name: the pipeline's name.
    """

    def __init__(
        self,
        stages: Sequence[Stage | Group],
        *,
        sources: Mapping[str, Any] | None = None,
        paths: Mapping[str, str | Path] | None = None,
        splits: Any = None,
        dims: Any = None,
        params: Mapping[str, Any] | None = None,
        output: str | Path = "out",
        name: str = "pipeline",
    ) -> None:
        model = build_model(
            list(stages), sources=sources, paths=paths, splits=splits, dims=dims,
            params=params, output=output, name=name,
        )  # fmt: skip
        self._init(model)

    def _init(self, model: PipelineModel) -> None:
        self._model = model

    @classmethod
    def from_model(cls, model: PipelineModel) -> Pipeline:
        """Wrap an already built model (what ``load`` does)."""
        pipeline = cls.__new__(cls)
        pipeline._init(model)
        return pipeline

    @property
    def model(self) -> PipelineModel:
        """The resolved pipeline model."""
        return self._model

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self._model.name

    @property
    def output(self) -> Path:
        """The output root."""
        return self._model.output

    def session(self, params: Mapping[str, Any] | None = None, output: str | Path | None = None) -> Session:
        """A session with the pipeline's parameters plus ``params`` (origin ``api``)."""
        layers = [layer_from_mapping(params, self._model, "api", "params=")] if params else []
        return Session(self._model, layers, output)

    def check(self, params: Mapping[str, Any] | None = None) -> list[Problem]:
        """Every problem ``stagewise check`` would report (errors and warnings)."""
        from stagewise.api.session import missing_source_warnings

        session = self.session(params)
        problems = session.problems()
        if not any(p.severity == "error" for p in problems):
            problems += missing_source_warnings(session)
        return problems

    def run(
        self,
        selectors: Sequence[str] | str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        jobs: int | None = None,
        executor: str | Executor = "local",
        force: bool = False,
        where: Sequence[str] | Mapping[str, Any] = (),
        output: str | Path | None = None,
        fail_fast: bool = False,
        retries: int = 0,
        progress: bool = True,
        wait: bool = False,
    ) -> RunReport:
        """Run the selected stages (all when none are given) and return the report.

        Args:
            selectors: stage selectors, as on the command line (``"clean"``, ``"+summarize"``).
            params: parameter values, flat (``{"clean.threshold": 2}``) or nested.
            jobs: parallel items (default: the usable CPUs).
            executor: ``local`` (processes, the default), ``serial`` (in-process, pdb works),
                ``threads``, or an executor object.
            force: rerun selected stages even if up to date.
            where: item filters, ``["split=test", "sim=0:4"]`` or ``{"split": "test"}``.
            output: another output root for this run.
            fail_fast: stop at the first failed item.
            retries: rerun a failed item up to this many times.
            progress: show progress (bars on a terminal, periodic lines otherwise).
            wait: wait for another run's lock instead of failing.
        """
        if _importing_in_worker():
            return RunReport()  # the script is being imported by a worker: the coordinator runs
        if isinstance(selectors, str):
            selectors = [selectors]
        if isinstance(where, Mapping):
            where = [f"{k}={v}" for k, v in where.items()]
        session = self.session(params, output)
        options = RunOptions(
            selectors=list(selectors or []), jobs=jobs, executor=executor, force=force,
            where=list(where), output=output, fail_fast=fail_fast, retries=retries,
            progress=progress, extra={"wait": wait, "command": "Pipeline.run"},
        )  # fmt: skip
        selection = session.select(options.selectors)
        if selection.list_group:
            raise SelectionError(f"'{selection.list_group}:?' lists a group's stages; it runs nothing")
        return session.run(options, selection)

    def status(
        self, selectors: Sequence[str] | str | None = None, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Per stage: items total, done, stale, missing, failed, rejected, and why stale.

        Returns a list of ``StageStatus`` (see ``stagewise status``).
        """
        if isinstance(selectors, str):
            selectors = [selectors]
        session = self.session(params)
        return session.statuses(session.select(list(selectors or [])).stages)

    def asset(self, ref: str) -> AssetView:
        """A view on the files of a stage output (``"clean.clean"``) or a source (``"mask"``).

        Raises:
            ConfigError: when the reference names nothing.
        """
        from stagewise.model.pipeline import _resolve_ref  # the model's own resolution rules

        link, (message, hint) = _resolve_ref(self._model, ref)
        if link is None:
            raise ConfigError(f"asset {ref!r}: {message}", hint=hint)
        return AssetView(self._model, link)

    def meta(self, stage: str) -> Any:
        """Metadata of every done item of ``stage``: rows of tags then metadata keys.

        Returns a pandas DataFrame when pandas is installed, else a list of dicts.
        """
        from stagewise.api.meta import meta_rows, resolve_stage

        rows = meta_rows(self.session(), resolve_stage(self._model, stage))
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Give a script the whole command line (``python experiment.py run train --train.epochs 3``)."""
        from stagewise.cli.main import main  # the script-mode entry point sits above the API

        if _importing_in_worker():
            return  # a worker importing the script: only the coordinator runs the command line
        raise SystemExit(main(argv, pipeline=self))

    def __repr__(self) -> str:
        return f"<Pipeline {self.name}: {', '.join(self._model.nodes)}>"


def _importing_in_worker() -> bool:
    """Whether this is a worker process importing the user's script (``__mp_main__``).

    Worker processes import the script that started the run; a script without an
    ``if __name__ == "__main__":`` guard would start a run inside every worker.
    """
    import sys

    return getattr(sys.modules.get("__main__"), "__name__", "") == "__mp_main__"


class AssetView:
    """The files of one asset: ``read``/``path`` for one item, ``items`` for those that exist."""

    def __init__(self, model: PipelineModel, link: Link) -> None:
        self._model = model
        self._link = link
        self._paths = AssetPaths(model)
        self.dims = model.link_dims(link)

    def _tags(self, tags: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in tags if k not in self.dims]
        missing = [d for d in self.dims if d not in tags]
        if unknown or missing:
            raise TemplateError(
                f"asset {self._link.ref} has dims ({', '.join(self.dims) or 'none'}); "
                + (f"unknown: {', '.join(unknown)}" if unknown else f"missing: {', '.join(missing)}")
            )
        return dict(tags)

    def path(self, **tags: Any) -> Path:
        """The file of one item."""
        return self._paths.path(self._link, self._tags(tags))

    def read(self, **tags: Any) -> Any:
        """Read the file of one item with its handler."""
        return Lazy(self.path(**tags), self._paths.handler(self._link)).read()

    def items(self, **tags: Any) -> Iterator[tuple[Any, Lazy]]:
        """``(key, handle)`` for the existing files matching ``tags``; keys over the other dims."""
        unknown = [k for k in tags if k not in self.dims]
        if unknown:
            raise TemplateError(f"asset {self._link.ref} has no dim {', '.join(unknown)}")
        from stagewise.run.plan import parse_where

        where = parse_where(self._model, [f"{k}={v}" for k, v in tags.items()])
        free = [d for d in self.dims if d not in tags]
        splits = self._model.nodes[self._link.producer].stage.splits if self._link.producer else None
        handler = self._paths.handler(self._link)
        found = []
        for values in self._model.dims.enumerate(self.dims, splits=splits, where=where):
            full = dict(zip(self.dims, values, strict=True))
            path = self._paths.path(self._link, full)
            if path.exists():
                key = full[free[0]] if len(free) == 1 else tuple(full[d] for d in free)
                found.append((key, Lazy(path, handler)))
        with contextlib.suppress(TypeError):  # ordered by tag values, like input collections
            found.sort(key=lambda entry: entry[0])
        yield from found

    def __repr__(self) -> str:
        return f"<asset {self._link.ref} over ({', '.join(self.dims)})>"


def load(path: str | Path) -> Pipeline:
    """Load a pipeline from a YAML file, or from ``file.py[:name]`` holding a ``Pipeline``."""
    from stagewise.api.target import load_target

    return load_target(str(path))
