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

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome]:
        """Submit tasks (at most ``max_parallel`` in flight) and yield outcomes as they complete."""
        todo = list(tasks)
        limit = max(1, max_parallel or len(todo) or 1)
        running: set[cf.Future[Outcome]] = set()
        try:
            while todo or running:
                while todo and len(running) < limit:
                    running.add(self._pool.submit(execute, todo.pop(0)))
                done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        """Stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
