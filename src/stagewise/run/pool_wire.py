"""What crosses a WorkerPool's pipes, and the worker process's side of them.

Messages are bytes whose first byte is a tag: tasks go out as a pickle of ``(fn, args, kwargs)``
(by ``cloudpickle`` when they hold functions from ``__main__`` or a notebook, which then travel by
value) and are loaded with ``pickle``; replies are ``OK`` + the pickled result or ``ERR`` + a
description of the exception. The coordinator side lives in ``stagewise.run.pool``, which
re-exports the exceptions.

Exceptions set on futures::

    the task's own exception     when it pickles both ways, else RemoteError; either carries the
                                 worker's formatted traceback in ``__stagewise_traceback__`` and
                                 as ``__cause__`` (printed with it)
    WorkerDied                   the worker died holding the task: signal name, exit code
    PoolTerminated               ``terminate()`` killed the worker holding the task
    InitializerFailed            the initializer raised; a ``BrokenExecutor``: ``submit`` raises it
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import faulthandler
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import cloudpickle

__all__ = [  # internal to the pool, except the exceptions that stagewise.run.pool re-exports
    "CANCEL",
    "INIT_FAILED",
    "READY",
    "STOP",
    "TRACEBACK_ATTR",
    "InitializerFailed",
    "PoolTerminated",
    "RemoteError",
    "Settle",
    "WorkerDied",
    "death",
    "drain",
    "dumps_task",
    "preload_in_forkserver",
    "recv",
    "settle",
    "with_traceback",
    "worker_main",
]

TRACEBACK_ATTR = "__stagewise_traceback__"  # the worker-side traceback text on future exceptions
OK, ERR, READY, INIT_FAILED, STOP = b"o", b"e", b"r", b"i", b""  # message tags (1st byte)
CANCEL = cf.CancelledError()  # in a settle list: cancel the future
E = TypeVar("E", bound=BaseException)
Settle = list[tuple[cf.Future[Any], BaseException | None, bytes]]  # (future, exception, reply)


class WorkerDied(Exception):
    """The worker process died (signal or exit) while running this task; other tasks go on.

    Attributes:
        pid: the worker's process id.
        exitcode: its exit code, negative for a signal (``-11`` for SIGSEGV).
        signal_name: ``"SIGSEGV"``, ``"SIGKILL"``..., or None when it exited with a code.
        traceback: the Python stack at a fatal signal (faulthandler), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        pid: int | None = None,
        exitcode: int | None = None,
        signal_name: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(message)  # pickles as (message,) plus __dict__: the keywords survive
        self.pid, self.exitcode, self.signal_name, self.traceback = pid, exitcode, signal_name, traceback


class RemoteError(Exception):
    """A task's exception that could not come back as itself (it does not pickle)."""

    def __init__(self, message: str, *, type_name: str = "Exception", traceback: str = "") -> None:
        super().__init__(message)
        self.type_name, self.message, self.traceback = type_name, message, traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class PoolTerminated(Exception):
    """The pool was terminated (e.g. Ctrl-C) while this task was running."""


class InitializerFailed(cf.BrokenExecutor):
    """The worker initializer raised (traceback in ``__stagewise_traceback__``); pool broken."""


class _RemoteTraceback(Exception):
    # Set as __cause__, so that printing the error in the coordinator shows the worker's stack.
    def __str__(self) -> str:
        return str(self.args[0])


def preload_in_forkserver(ctx: Any, modules: Iterable[str] = ()) -> None:
    """Have the forkserver import this module and ``modules`` once, and start it now.

    Workers are forks of the forkserver, so they start with those modules imported. The server
    is started by a background thread (spawning it takes a few ms; its imports, ~0.2 s, happen
    in it), so that it is ready, or nearly, when the first worker is asked for, and a run with
    nothing to do does not wait for it.
    """
    # CPython's forkserver never preloads __main__ (it reads a "main_path" key that
    # get_preparation_data does not write), so each worker would import stagewise afresh:
    # ~200 ms per worker and per respawn. The list is global, read when the server starts.
    from multiprocessing import forkserver

    current = list(getattr(forkserver._forkserver, "_preload_modules", None) or [])
    wanted = [*current, *(m for m in (__name__, *modules) if m not in current)]
    if wanted != current:
        ctx.set_forkserver_preload(wanted)
    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:  # else: it runs already
        threading.Thread(target=_start_forkserver, name="stagewise-forkserver", daemon=True).start()


def _start_forkserver() -> None:
    from multiprocessing import forkserver

    with contextlib.suppress(Exception):  # only a head start: a failure shows at the first worker
        forkserver.ensure_running()


def dumps_task(obj: object) -> bytes:
    """Pickle a task: plain pickle when that is what cloudpickle would do, else cloudpickle.

    cloudpickle pickles by value only what plain pickle cannot name (lambdas, closures), what it
    would name wrongly for a worker (objects of ``__main__``, another module there) and modules
    registered with ``register_pickle_by_value``. Plain pickle raises on the first, leaves
    ``__main__`` in its bytes for the second, and is not tried when the third exist. Plain
    pickle is ~2x faster on a batch of tasks.
    """
    if not cloudpickle.list_registry_pickle_by_value():
        try:
            payload = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
        else:
            if b"__main__" not in payload:  # a false alarm only costs the cloudpickle
                return payload
    return cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


# --- worker side --------------------------------------------------------------------------------


def dumps(obj: object) -> bytes:
    # Plain pickle is ~5x faster on ordinary results; cloudpickle takes what it cannot
    # (lambdas, classes from __main__ or a notebook, which then travel by value).
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def describe(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """(the pickled exception or None, its type name, message, formatted traceback)."""
    blob: bytes | None = None
    if isinstance(exc, Exception):  # never re-raise SystemExit & co. in the coordinator
        try:
            blob = dumps(exc)
            pickle.loads(blob)  # a custom __init__ often pickles but does not unpickle
        except Exception:
            blob = None
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception failed>"
    return blob, name, message, "".join(traceback.format_exception(exc))


def worker_main(conn: Connection, init: bytes | None, memory: int | None, fault: str) -> None:
    # Ctrl-C reaches the whole process group; only the coordinator decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(fault, "w") as fault_file:
        faulthandler.enable(fault_file)  # a segfault's Python stack reaches the coordinator
        if memory and sys.platform.startswith("linux"):
            import resource

            # RLIMIT_DATA, not RLIMIT_AS: read-only maps of big files (np.memmap, FITS) still work.
            hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
            soft = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
            resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
        try:
            if init is not None:
                initializer, initargs = pickle.loads(init)
                initializer(*initargs)
        except BaseException as exc:
            conn.send_bytes(INIT_FAILED + dumps(describe(exc)))
            return
        conn.send_bytes(READY)
        while (data := recv(conn)) is not None and data != STOP:  # None: coordinator gone
            try:
                conn.send_bytes(run_task(data))
            except (BrokenPipeError, ConnectionResetError, EOFError):
                return  # the coordinator is gone (killed): nobody to report to, exit quietly
            del data  # hold nothing of the last task while idle


def run_task(data: bytes) -> bytes:
    try:
        fn, args, kwargs = pickle.loads(data)
        return OK + dumps(fn(*args, **kwargs))
    except BaseException as exc:  # SystemExit in a task fails the task, not the worker
        return ERR + dumps(describe(exc))


def recv(conn: Connection) -> bytes | None:
    try:
        return conn.recv_bytes()
    except (EOFError, OSError):
        return None


def drain(conn: Connection) -> list[bytes | None]:
    """What a dead worker sent before dying (a result can beat the sentinel)."""
    messages: list[bytes | None] = []
    with contextlib.suppress(OSError):
        while conn.poll() and (message := recv(conn)) is not None:
            messages.append(message)
    return messages


# --- coordinator side: turning replies and deaths into outcomes ----------------------------------


def with_traceback(exc: E, text: str) -> E:
    """``exc``, carrying the worker-side traceback ``text`` (attribute and ``__cause__``)."""
    with contextlib.suppress(Exception):
        setattr(exc, TRACEBACK_ATTR, text)
        exc.__cause__ = _RemoteTraceback(text)
    return exc


def task_error(body: bytes) -> BaseException:
    blob, type_name, message, text = pickle.loads(body)
    exc: BaseException | None = None
    with contextlib.suppress(Exception):  # its class may not import in the coordinator
        exc = pickle.loads(blob) if blob is not None else None
    if not isinstance(exc, Exception):
        exc = RemoteError(message, type_name=type_name, traceback=text)
    return with_traceback(exc, text)


def death(process: BaseProcess, fault: str | None) -> WorkerDied:
    code, pid, name = process.exitcode, process.pid, None
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            text = f"worker process {pid} was killed by SIGKILL (often the out-of-memory killer)"
        else:
            what = (signal.strsignal(-code) or name).lower()
            text = f"worker process {pid} died with {name} ({what})"
    else:
        text = f"worker process {pid} exited with code {code}"
    exc = WorkerDied(f"{text} while running this item", pid=pid, exitcode=code, signal_name=name)
    exc.traceback = fault
    if fault:
        setattr(exc, TRACEBACK_ATTR, fault)
    return exc


def settle(done: Settle) -> None:
    for future, exc, message in done:
        with contextlib.suppress(cf.InvalidStateError):  # cancelled meanwhile
            if exc is CANCEL:
                future.cancel()
                continue
            if exc is None:
                try:
                    if message[:1] == OK:
                        future.set_result(pickle.loads(memoryview(message)[1:]))
                        continue
                    exc = task_error(message[1:])
                except Exception as err:  # the result's class does not import here, say
                    exc = with_traceback(err, "".join(traceback.format_exception(err)))
            future.set_exception(exc)
