"""A process pool where a worker that dies fails only the task it held.

``ProcessPoolExecutor`` fails every pending future when one worker dies (segfault, OOM SIGKILL) and
``multiprocessing.Pool`` waits forever for the lost result (design-hazards H9). Here each worker
has its own pipe and holds at most one task, and one coordinator thread waits on all pipes and
process sentinels: a death is blamed on exactly one task, and a new worker replaces the dead one.

Workers start at the first ``submit``; the forkserver they fork from starts with the pool, in the
background. ``shutdown()`` follows the ``Executor`` contract; ``terminate()`` kills the workers at
once (Ctrl-C). A pool garbage-collected without ``shutdown`` finishes its queue and stops; at
interpreter exit a live pool is terminated, so exit never waits for work nobody waited for
(``concurrent.futures`` would finish it first). If the coordinator is killed, workers see their
pipe close and exit after their current task. The exceptions set on futures, the message format
and the worker loop are in ``pool_wire``.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import copy
import multiprocessing
import multiprocessing.connection as mpc
import multiprocessing.util  # before our atexit hook, so that ours runs first (LIFO)
import os
import pickle
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import cloudpickle

from stagewise.run import pool_wire as wire
from stagewise.run.pool_wire import (
    TRACEBACK_ATTR,
    InitializerFailed,
    PoolTerminated,
    RemoteError,
    WorkerDied,
)

__all__ = [
    "TRACEBACK_ATTR",
    "InitializerFailed",
    "PoolTerminated",
    "RemoteError",
    "WorkerDied",
    "WorkerPool",
    "default_start_method",
]

P = ParamSpec("P")
T = TypeVar("T")
_STOP_GRACE, _TERM_GRACE = 5.0, 1.0  # seconds before SIGKILL after a stop message / a SIGTERM
_MAX_IDLE_DEATHS = 3  # consecutive deaths without a task before the pool stops respawning


def default_start_method() -> str:
    """``forkserver`` on Linux, ``spawn`` elsewhere: never ``fork``, as the coordinator has
    threads (this pool's, progress, SQLite, Dask) and forking a threaded process is unsafe."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


@dataclass(eq=False)
class _Task:
    future: cf.Future[Any]
    payload: bytes
    started: bool = False  # set_running_or_notify_cancel() was called


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    fault_fd: int
    fault_path: str | None
    ready: bool = False  # its initializer finished
    task: _Task | None = None
    eof: bool = False  # its pipe is closed: only its sentinel is left to wait on
    stopping: bool = False  # told to stop (message or signal): its exit is expected
    deadline: float | None = None  # SIGKILL it if still alive at this time.monotonic()
    gone: bool = False


class _Core:
    """The pool's state and dispatcher thread; no reference to the WorkerPool, so it can be GC'd."""

    def __init__(self, workers: int, ctx: Any, init: bytes | None, memory: int | None) -> None:
        self._n, self._ctx, self._init, self._memory = workers, ctx, init, memory
        self._lock = threading.Lock()
        self._queue: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = mpc.Pipe(duplex=False)
        self._shutdown = self._terminating = False
        self._broken: cf.BrokenExecutor | None = None
        self._idle_deaths = 0

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._check_open()
        future: cf.Future[Any] = cf.Future()
        try:  # outside the lock: a big by-value pickle must not stall the dispatcher
            payload = wire.dumps_task((fn, args, kwargs))
        except Exception as exc:  # an unpicklable argument fails this item, like a raise would
            future.set_exception(wire.with_traceback(exc, "".join(traceback.format_exception(exc))))
            return future
        done: wire.Settle = []
        with self._lock:
            self._check_open()
            if self._thread is None:
                # Daemon, so that a forgotten pool never blocks interpreter exit; the atexit
                # hook stops it (and kills the workers) before the interpreter finalises.
                self._thread = threading.Thread(target=self._run, name="stagewise-pool", daemon=True)
                _LIVE.add(self)
                self._top_up_locked(done)
                self._thread.start()
            self._queue.append(_Task(future, payload))
            self._dispatch_locked()
        wire.settle(done)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False, kill: bool = False) -> None:
        done: wire.Settle = []
        with self._lock:
            self._shutdown, self._terminating = True, self._terminating or kill
            if cancel_futures or kill:
                while self._queue:
                    task = self._queue.popleft()
                    gone = PoolTerminated("the worker pool was terminated")
                    done.append((task.future, gone if task.started else wire.CANCEL, b""))
            for worker in self._workers if kill else ():
                self._stop_locked(worker, _TERM_GRACE, message=False)
            with contextlib.suppress(OSError):  # closed: the thread has ended
                self._wake_w.send_bytes(b"")
        wire.settle(done)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _check_open(self) -> None:
        if self._broken is not None:  # a fresh copy each time: no traceback piling up
            raise copy.copy(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _top_up_locked(self, done: wire.Settle) -> None:
        while len(self._workers) < self._n and not (self._broken or self._terminating):
            if self._shutdown and not self._queue:
                return
            try:
                self._workers.append(self._spawn())
            except Exception as exc:
                self._break_locked(cf.BrokenExecutor(f"cannot start a worker process: {exc}"), done)

    def _spawn(self) -> _Worker:
        parent, child = mpc.Pipe()
        fd, path = tempfile.mkstemp(prefix="stagewise-fault-", suffix=".txt")
        try:
            args = (child, self._init, self._memory, path)
            process = self._ctx.Process(target=wire.worker_main, args=args, name="stagewise-worker")
            process.start()
        except BaseException:
            parent.close()
            os.close(fd)
            os.unlink(path)
            raise
        finally:
            child.close()  # else a dead worker's pipe would never report end-of-file here
        return _Worker(process, parent, fd, path)

    def _break_locked(self, exc: cf.BrokenExecutor, done: wire.Settle) -> None:
        self._broken = self._broken or exc
        while self._queue:
            done.append((self._queue.popleft().future, self._broken, b""))

    def _stop_locked(self, worker: _Worker, grace: float, *, message: bool) -> None:
        worker.stopping, worker.deadline = True, time.monotonic() + grace
        with contextlib.suppress(Exception):
            if message:
                worker.conn.send_bytes(wire.STOP)
            else:
                worker.process.terminate()

    def _dispatch_locked(self) -> None:
        idle = [w for w in self._workers if w.ready and not (w.task or w.eof or w.stopping)]
        while idle and self._queue and not self._broken:
            task = self._queue.popleft()
            if not (task.started or task.future.set_running_or_notify_cancel()):
                continue  # cancelled while queued
            task.started, worker = True, idle.pop()
            try:
                worker.conn.send_bytes(task.payload)
                worker.task = task
            except OSError:  # it died after its last message: the task never reached it
                self._queue.appendleft(task)
                worker.eof = True
        if (self._shutdown or self._broken) and not self._queue:
            for worker in self._workers:
                if worker.task is None and not worker.stopping:
                    self._stop_locked(worker, _STOP_GRACE, message=True)

    def _on_message_locked(self, worker: _Worker, message: bytes | None, done: wire.Settle) -> None:
        if message is None:
            worker.eof = True
        elif message == wire.READY:
            worker.ready = True
            self._forget_fault_file(worker)  # the worker holds it open now
        elif message[:1] == wire.INIT_FAILED:
            _, type_name, text, tb = pickle.loads(message[1:])
            worker.stopping = True  # it exits by itself
            failed = InitializerFailed(f"the worker initializer failed: {type_name}: {text}")
            self._break_locked(wire.with_traceback(failed, tb), done)
        elif worker.task is not None:
            done.append((worker.task.future, None, message))
            worker.task, self._idle_deaths = None, 0

    def _on_exit_locked(self, worker: _Worker, done: wire.Settle) -> None:
        worker.gone = True
        self._workers.remove(worker)
        worker.conn.close()
        try:
            os.lseek(worker.fault_fd, 0, os.SEEK_SET)
            fault = os.read(worker.fault_fd, 1 << 16).decode(errors="replace").strip() or None
        finally:
            os.close(worker.fault_fd)
            self._forget_fault_file(worker)
        if worker.task is not None:
            exc: BaseException = wire.death(worker.process, fault)
            if self._terminating:
                exc = PoolTerminated("the worker pool was terminated while this item was running")
            done.append((worker.task.future, exc, b""))
        elif not (worker.stopping or self._terminating):
            self._idle_deaths += 1
            if self._idle_deaths >= _MAX_IDLE_DEATHS:  # e.g. an initializer that segfaults
                last = str(wire.death(worker.process, None)).removesuffix(" while running this item")
                message = (
                    f"worker processes died {self._idle_deaths} times in a row before running"
                    f" a task (last: {last})"
                )
                self._break_locked(cf.BrokenExecutor(message), done)
        worker.process.close()
        self._top_up_locked(done)

    def _forget_fault_file(self, worker: _Worker) -> None:
        if worker.fault_path is not None:
            with contextlib.suppress(OSError):  # Windows cannot unlink an open file: later
                os.unlink(worker.fault_path)
                worker.fault_path = None

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # a bug here must not leave futures pending forever
            done: wire.Settle = []
            with self._lock:
                self._shutdown = self._terminating = True
                self._break_locked(cf.BrokenExecutor(f"worker pool failed: {exc!r}"), done)
                for w in self._workers:
                    with contextlib.suppress(Exception):
                        w.process.kill()
                    if w.task is not None:
                        done.append((w.task.future, self._broken, b""))
            wire.settle(done)
            raise
        finally:
            self._wake_r.close()
            with self._lock:
                self._wake_w.close()
            _LIVE.discard(self)

    def _step(self) -> bool:
        with self._lock:
            if (self._shutdown or self._broken) and not self._workers:
                return False
            lookup: dict[Connection | int, _Worker] = {w.process.sentinel: w for w in self._workers}
            lookup.update({w.conn: w for w in self._workers if not w.eof})
            deadlines = [w.deadline for w in self._workers if w.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        done: wire.Settle = []
        for obj in mpc.wait([self._wake_r, *lookup], timeout):
            if obj is self._wake_r:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
                continue
            worker, died = lookup[obj], isinstance(obj, int)  # int: a process sentinel
            if worker.gone:
                continue
            # Only this thread reads the pipes, so reading needs no lock; state changes do.
            messages = wire.drain(worker.conn) if died else [wire.recv(worker.conn)]
            if died:
                worker.process.join()  # reaps it at once: no zombie
            with self._lock:
                for message in messages:
                    self._on_message_locked(worker, message, done)
                if died:
                    self._on_exit_locked(worker, done)
        with self._lock:
            for w in self._workers:
                if w.deadline is not None and time.monotonic() >= w.deadline:
                    with contextlib.suppress(Exception):
                        w.process.kill()
                    w.deadline = None
            self._dispatch_locked()
        wire.settle(done)
        return True


_LIVE: weakref.WeakSet[_Core] = weakref.WeakSet()


@atexit.register
def _terminate_at_exit() -> None:
    # multiprocessing's exit hook joins non-daemon children and would wait forever for idle
    # workers; registered after it (see the imports), this hook runs before it.
    for core in list(_LIVE):
        core.shutdown(wait=True, kill=True)


class WorkerPool(cf.Executor):
    """A process pool that isolates crashes: a dying worker fails only the task it held.

    Args:
        max_workers: number of worker processes (at least 1).
        initializer: called once in each worker before its first task (class-stage setup,
            handler registration). If it raises, the pool breaks: queued futures and later
            ``submit`` calls fail with ``InitializerFailed``.
        initargs: arguments of ``initializer``.
        context: multiprocessing start method; default ``default_start_method()``.
        memory_limit_bytes: Linux only (ignored elsewhere): cap each worker's data segment
            (``RLIMIT_DATA``), so that over-allocation raises ``MemoryError`` in the task.
        preload: modules the forkserver imports once, so that workers, its forks, start with
            them imported (the forkserver start method only; it starts at once, in the
            background). A module that fails to import is skipped.

    Functions and arguments travel by pickle, or by cloudpickle when they hold what pickle
    cannot send by reference: functions from ``__main__`` or a notebook, lambdas and closures
    work (by value). Results come back the same way. Workers ignore SIGINT.
    """

    def __init__(
        self,
        max_workers: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        context: str | None = None,
        memory_limit_bytes: int | None = None,
        preload: Iterable[str] = (),
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        ctx = multiprocessing.get_context(context or default_start_method())
        if ctx.get_start_method() == "forkserver":
            wire.preload_in_forkserver(ctx, preload)
        init = None
        if initializer is not None:
            init = cloudpickle.dumps((initializer, tuple(initargs)), pickle.HIGHEST_PROTOCOL)
        self.max_workers = max_workers
        self._core = _Core(max_workers, ctx, init, memory_limit_bytes)
        # Garbage-collected without shutdown: finish the queue, then stop (as concurrent.futures).
        weakref.finalize(self, self._core.shutdown, False).atexit = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; an unpicklable argument fails the future.

        Raises:
            RuntimeError: after ``shutdown``.
            concurrent.futures.BrokenExecutor: the pool is broken (``InitializerFailed``...).
        """
        return self._core.submit(fn, args, kwargs)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, kill: bool = False) -> None:
        """Accept no more tasks; stop the workers once the queue is done.

        Args:
            wait: block until the workers and the dispatcher thread have ended.
            cancel_futures: cancel the queued tasks; running ones finish.
            kill: ``terminate()`` instead.
        """
        self._core.shutdown(wait, cancel_futures, kill)

    def terminate(self) -> None:
        """Kill the workers now (SIGTERM, SIGKILL 1 s later) and wait for them to end.

        Queued futures are cancelled; running ones fail with ``PoolTerminated``. For Ctrl-C.
        """
        self._core.shutdown(wait=True, cancel_futures=True, kill=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(kill=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))
