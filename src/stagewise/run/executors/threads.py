"""The threads executor: items run in a thread pool of this process."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterable, Iterator

from stagewise.run.task import Outcome, Task
from stagewise.run.worker import execute

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """Run items in ``jobs`` threads; good for I/O-bound stages and code that releases the GIL."""

    def __init__(self, jobs: int) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="stagewise")

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Submit every task and yield outcomes as they complete."""
        futures = [self._pool.submit(execute, task) for task in tasks]
        try:
            for future in cf.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
