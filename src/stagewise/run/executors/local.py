"""The local executor: items run in a pool of worker processes that survives crashing items.

Tiny items are sent in batches to keep the per-item overhead low; a batch whose worker died is
split and its items rerun one at a time, so a crash fails only the item that caused it.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from stagewise.run.pool import WorkerDied, WorkerPool
from stagewise.run.task import Outcome, Task
from stagewise.run.worker import execute_packed, unpack_outcomes

__all__ = ["LocalExecutor"]

_BATCH_MAX = 64


def _init_worker(paths: list[str]) -> None:
    """Give the worker the coordinator's import path (the pipeline's folder first)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _preload() -> list[str]:
    """The modules for the forkserver to import once, so that workers (its forks) have them.

    A worker needs this module's worker side. It also re-runs a script's ``__main__`` (as
    ``__mp_main__``), which imports what the coordinator imported: then every stagewise module
    imported here is preloaded too, and a worker starts in ~15 ms instead of ~250 ms. Without
    a re-run (``python -m stagewise``, a notebook) the smaller set starts the server sooner.
    """
    needed = ["stagewise.run.worker"]
    if not _main_reruns_in_workers():
        return needed
    loaded = [m for m in list(sys.modules) if m.startswith("stagewise.") and not m.startswith(_NOT_PRELOADED)]
    return needed + sorted(set(loaded) - set(needed))


_NOT_PRELOADED = ("stagewise.run.executors.dask", "stagewise.run.executors.futures")  # other executors


def _main_reruns_in_workers() -> bool:
    """Whether a spawned or forkserver worker re-runs ``__main__`` (multiprocessing.spawn's rule)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return name != "__main__" and not name.endswith(".__main__")
    return getattr(main, "__file__", None) is not None


def _batches(tasks: list[Task], jobs: int) -> list[list[Task]]:
    """Split tasks so each worker gets several batches (load balance) of at most 64 items."""
    return list(_batch_stream(tasks, jobs))


def _batch_stream(tasks: Iterable[Task], jobs: int) -> Iterator[list[Task]]:
    """Batches as in `_batches`, taken from ``tasks`` only when asked for (``len`` sizes them:
    a stream of tasks still being built says how many it may hold)."""
    size = max(1, min(_BATCH_MAX, len(tasks) // (jobs * 8)))  # type: ignore[arg-type]
    batch: list[Task] = []
    for task in tasks:
        batch.append(task)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class LocalExecutor:
    """Run items in ``jobs`` worker processes.

    Args:
        jobs: worker processes.
        memory_limit_bytes: a per-worker data limit (Linux), turning over-allocation into
            ``MemoryError`` in the item instead of the out-of-memory killer.
    """

    def __init__(self, jobs: int, *, memory_limit_bytes: int | None = None) -> None:
        self.jobs = max(1, jobs)
        self._stopping = False
        self._pool = WorkerPool(
            self.jobs,
            initializer=_init_worker,
            initargs=(list(sys.path),),
            memory_limit_bytes=memory_limit_bytes,
            preload=_preload(),
        )

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome | None]:
        """Run every task; yield outcomes as batches complete."""
        self._stopping = False
        todo: deque[list[Task]] = deque()
        fresh = _batch_stream(tasks if hasattr(tasks, "__len__") else list(tasks), self.jobs)
        # one batch queued behind each running one, so no worker waits while the coordinator
        # records a finished batch; a memory limit below the worker count is kept exactly
        limit = max(1, max_parallel) if max_parallel and max_parallel < self.jobs else 2 * self.jobs
        running: dict[cf.Future[list[tuple[Any, ...]]], list[Task]] = {}
        try:
            while True:
                while len(running) < limit and not self._stopping:
                    batch = todo.popleft() if todo else next(fresh, None)
                    if batch is None:
                        break
                    running[self._pool.submit(execute_packed, batch)] = batch
                if not running:
                    break
                done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    batch = running.pop(future)
                    try:
                        yield from unpack_outcomes(future.result())
                    except WorkerDied as exc:
                        if len(batch) > 1:
                            todo.extendleft([task] for task in reversed(batch))  # find the culprit
                        else:
                            yield _died(batch[0], exc)
                if not done:
                    yield None  # a heartbeat: the coordinator flushes records while items run
                if self._stopping:
                    todo.clear()  # fail-fast: start nothing more, let running items finish
                    fresh = iter(())
        finally:
            for future in running:
                future.cancel()

    def stop(self) -> None:
        """Start no more items; those already running finish and are reported."""
        self._stopping = True

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        """Kill the workers at once (Ctrl-C)."""
        self._pool.terminate()


def _died(task: Task, exc: WorkerDied) -> Outcome:
    return Outcome(
        task.stage, task.key, "failed", reason=str(exc), error=getattr(exc, "traceback", None) or str(exc)
    )
