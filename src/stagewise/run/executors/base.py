"""The executor interface: run tasks, yield outcomes as they finish."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from stagewise._suggest import did_you_mean
from stagewise.errors import ConfigError
from stagewise.run.task import Outcome, Task

__all__ = ["EXECUTORS", "Executor", "get_executor"]

EXECUTORS = ("serial", "threads", "local", "dask")


class Executor(Protocol):
    """Runs tasks somewhere and yields their outcomes, in any order."""

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome]:
        """Run every task, at most ``max_parallel`` at once; yield each outcome when known."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


def get_executor(
    name: str, jobs: int, *, scheduler: str | None = None, project_dirs: Sequence[Path] = ()
) -> Executor:
    """The executor called ``name`` with ``jobs`` parallel items.

    Args:
        name: ``local``, ``serial``, ``threads`` or ``dask``.
        jobs: parallel items (Dask without a scheduler: LocalCluster worker processes).
        scheduler: a Dask scheduler address; without it Dask starts a LocalCluster.
        project_dirs: folders of the project's own code (shipped to remote Dask workers).

    Raises:
        ConfigError: for an unknown name, or a scheduler with another executor.
    """
    from stagewise.run.executors.serial import SerialExecutor
    from stagewise.run.executors.threads import ThreadExecutor

    if scheduler and name != "dask":
        raise ConfigError(f"--scheduler is for --executor dask, not {name}")
    if name == "serial":
        return SerialExecutor()
    if name == "threads":
        return ThreadExecutor(jobs)
    if name == "local":
        from stagewise.run.executors.local import LocalExecutor

        return LocalExecutor(jobs)
    if name == "dask":
        from stagewise.run.executors.dask import DaskExecutor

        return DaskExecutor(jobs, scheduler=scheduler, project_dirs=project_dirs)  # type: ignore[return-value]
    hint = did_you_mean(name, EXECUTORS)
    raise ConfigError(
        f"--executor {name!r}: unknown executor", hint=hint or f"choose one of {', '.join(EXECUTORS)}"
    )
