"""Batched execution on any ``concurrent.futures.Executor``: the batching loop and ``FuturesExecutor``.

As in the local executor, tiny items travel in batches, one submitted task each. A batch that
fails as a whole because its worker died (``concurrent.futures.BrokenExecutor``, or an exception
named ``KilledWorker``) is split and its items rerun one at a time; an item whose worker dies
again fails. A task queued behind the culprit on the same worker dies too: a lone item is blamed
only when no other task of ours died on that worker, else it gets one more try, and after a
death no more tasks are in flight than the workers have slots. ``DaskExecutor`` shares this loop;
this module imports neither dask nor distributed.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import sys
import threading
import traceback
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cloudpickle

from stagewise.errors import Interrupted
from stagewise.run.executors.local import _batches
from stagewise.run.task import Outcome, Task
from stagewise.run.worker import execute, user_traceback

__all__ = ["FuturesExecutor"]

_GRACE = 0.1  # seconds to wait for other deaths reported with one (co-victims of one worker)


# --- worker side ----------------------------------------------------------------------------------


def _run_batch(paths: Sequence[str], payload: bytes) -> list[Outcome]:
    """Run a batch in a worker: extend ``sys.path``, register shipped handlers, run items in order."""
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    handlers, tasks = pickle.loads(payload)
    if handlers:
        from stagewise.handlers import register_handler

        for name, handler in handlers:
            register_handler(name, handler, replace=True)
    return [_execute_guarded(task) for task in tasks]


def _execute_guarded(task: Task) -> Outcome:
    try:
        return execute(task)
    except BaseException as exc:  # SystemExit from a stage: fail that item, not the batch
        reason = f"{type(exc).__name__}: {exc}"
        return Outcome(task.stage, task.key, "failed", reason=reason, error=user_traceback(exc))


# --- the batching loop both executors share -------------------------------------------------------


@dataclass(eq=False)
class _Batch:
    tasks: list[Task]
    deaths: int = 0  # times its worker died while it ran alone


def _is_death(exc: BaseException) -> bool:
    # By name: FuturesExecutor must not import distributed to recognise its KilledWorker.
    return isinstance(exc, cf.BrokenExecutor) or type(exc).__name__ == "KilledWorker"


def _worker_of(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "last_worker", None), "address", None)


def _failed(tasks: Iterable[Task], reason: str, error: str | None = None) -> Iterator[Outcome]:
    for task in tasks:
        yield Outcome(task.stage, task.key, "failed", reason=reason, error=error or reason)


class _Batched:
    """Batches in flight, outcomes as they finish, dead batches split and their culprits blamed.

    Subclasses submit a batch somewhere (``_submit``); the rest is shared.
    """

    jobs: int

    def __init__(self) -> None:
        self._running: dict[cf.Future[list[Outcome]], _Batch] = {}
        self._stop = threading.Event()

    def _submit(self, tasks: list[Task]) -> cf.Future[list[Outcome]]:
        raise NotImplementedError

    def _cancel(self, futures: list[cf.Future[list[Outcome]]]) -> None:
        for future in futures:
            future.cancel()

    def _live_slots(self) -> int:
        """Items that can run at once right now (workers come and go)."""
        return self.jobs

    def _explain(self, exc: BaseException) -> str:
        return f"the worker running this item died: {type(exc).__name__}: {exc}"

    def terminate(self) -> None:
        """Cancel the batches in flight (Ctrl-C); a ``run`` in another thread raises ``Interrupted``."""
        self._stop.set()
        self._cancel(list(self._running))

    def _drive(self, tasks: list[Task], *, jobs: int, window: int) -> Iterator[Outcome]:
        """Keep at most ``window`` batches in flight; yield outcomes; split batches that died.

        After a death, at most ``_live_slots()`` tasks are in flight, so that an item rerun alone
        does not queue behind another on one worker (where it would die with it, blameless).

        Raises:
            Interrupted: ``terminate`` was called; what finished was yielded.
        """
        if self._stop.is_set():
            raise Interrupted("the executor was terminated")
        todo = deque(_Batch(b) for b in _batches(tasks, jobs))
        died_at: Counter[str | None] = Counter()
        try:
            while todo or self._running:
                limit = window if not died_at else max(1, min(self._live_slots(), window))
                yield from self._top_up(todo, limit)
                done, _ = cf.wait(self._running, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                if self._stop.is_set():
                    raise Interrupted("the run was terminated; items in flight were cancelled")
                deaths: list[tuple[_Batch, BaseException]] = []
                yield from self._settle(done, deaths)
                if deaths and self._running:  # the others that died with that worker come together
                    more, _ = cf.wait(self._running, timeout=_GRACE)
                    yield from self._settle(more, deaths)
                died_at.update(_worker_of(exc) for _, exc in deaths)
                yield from self._blame(deaths, died_at, todo)
        finally:
            self._cancel(list(self._running))
            self._running.clear()

    def _top_up(self, todo: deque[_Batch], limit: int) -> Iterator[Outcome]:
        while todo and len(self._running) < limit:
            batch = todo.popleft()
            try:
                self._running[self._submit(batch.tasks)] = batch
            except Exception as exc:  # e.g. an item that does not pickle
                if len(batch.tasks) > 1:
                    todo.extendleft(_Batch([t]) for t in reversed(batch.tasks))
                else:
                    yield from _failed(batch.tasks, f"could not send it to a worker: {exc!r}")

    def _settle(
        self, done: Collection[cf.Future[list[Outcome]]], deaths: list[tuple[_Batch, BaseException]]
    ) -> Iterator[Outcome]:
        for future in done:
            batch = self._running.pop(future)
            if future.cancelled():
                yield from _failed(batch.tasks, "cancelled on the cluster")
                continue
            exc = future.exception()
            result = future.result() if exc is None else None
            if exc is None and result is None:  # seen once with Dask as a worker was killed
                exc = cf.BrokenExecutor("the worker gave back no result (it may have died)")
            if exc is None:
                yield from result  # type: ignore[misc]
            elif _is_death(exc):
                deaths.append((batch, exc))
            else:  # the batch could not even start: every item gets the reason
                reason = f"the worker could not run it: {type(exc).__name__}: {exc}"
                if isinstance(exc, ModuleNotFoundError):
                    reason += " (install it where the workers run, or put its folder on their PYTHONPATH)"
                yield from _failed(batch.tasks, reason, "".join(traceback.format_exception(exc)))

    def _blame(
        self, deaths: list[tuple[_Batch, BaseException]], died_at: Counter[str | None], todo: deque[_Batch]
    ) -> Iterator[Outcome]:
        for batch, exc in deaths:
            address = _worker_of(exc)
            if len(batch.tasks) > 1:
                todo.extendleft(_Batch([t]) for t in reversed(batch.tasks))  # find the culprit
            elif batch.deaths == 0 and address is not None and died_at[address] > 1:
                batch.deaths += 1  # it may only have been queued behind the culprit
                todo.appendleft(batch)
            else:
                yield from _failed(batch.tasks, self._explain(exc))


def _window(jobs: int, max_parallel: int | None) -> int:
    """In flight: one batch queued behind each running one, or fewer when memory says so."""
    if max_parallel is not None and max_parallel < jobs:
        return max(1, max_parallel)
    return 2 * jobs


# --- the executor ---------------------------------------------------------------------------------


class FuturesExecutor(_Batched):
    """Run items through any ``concurrent.futures.Executor``, in batches.

    Items travel pickled with cloudpickle, so stages from ``__main__`` or a notebook work
    wherever the executor runs them. A batch that fails as a whole (a dead worker, a broken
    pool) is split and rerun one item at a time. The executor stays the caller's: ``close``
    does not shut it down.

    Args:
        executor: e.g. ``client.get_executor()``, ``ProcessPoolExecutor``, ``MPIPoolExecutor``.
        jobs: its parallelism, for sizing batches (default: its ``_max_workers``, or the CPUs).
    """

    def __init__(self, executor: cf.Executor, jobs: int | None = None) -> None:
        super().__init__()
        self._executor = executor
        self.jobs = max(1, jobs or getattr(executor, "_max_workers", None) or os.cpu_count() or 1)

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome]:
        """Run every task; yield outcomes as batches complete."""
        yield from self._drive(list(tasks), jobs=self.jobs, window=_window(self.jobs, max_parallel))

    def _submit(self, tasks: list[Task]) -> cf.Future[list[Outcome]]:
        return self._executor.submit(
            _run_batch, (), cloudpickle.dumps(([], tasks), protocol=pickle.HIGHEST_PROTOCOL)
        )

    def close(self) -> None:
        """Nothing to release: the executor is the caller's."""
