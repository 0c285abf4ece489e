"""The serial executor: items run one after another in this process (pdb works)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stagewise.run.task import Outcome, Task
from stagewise.run.worker import execute

__all__ = ["SerialExecutor"]


class SerialExecutor:
    """Run items in-process, in order. The reference semantics for every other executor."""

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome]:
        """Run each task in turn."""
        for task in tasks:
            yield execute(task)

    def close(self) -> None:
        """Nothing to release."""
