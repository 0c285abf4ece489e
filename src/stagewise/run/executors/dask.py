"""The Dask executor: items run on a ``dask.distributed`` cluster, in batches.

Without a scheduler address it starts a ``LocalCluster`` of ``jobs`` single-threaded worker
processes: forked from a forkserver that imported distributed and stagewise once (Linux; spawn
elsewhere), non-daemonic (stages may use multiprocessing), ignoring Ctrl-C (the coordinator's to
handle). With an address it connects a ``Client`` to that cluster (any a client reaches,
dask-jobqueue's included); outputs must then be on a filesystem every worker shares.
``FuturesExecutor`` (in ``futures``, re-exported here) runs the same batches through any
``concurrent.futures.Executor``.

Batches and deaths: batching, splitting and blame follow the loop in ``futures``. Each batch is
one Dask task, released as soon as its result is in (a finished task whose worker dies later
would otherwise be recomputed, writing its outputs twice). A dead worker shows as
``KilledWorker``; an item blamed for it fails naming the signal when the nanny's log tells it.
The clusters we start use ``allowed-failures: 0``; on yours, Dask's default (3) reruns a
crashing batch on three more workers before it reports ``KilledWorker``, so set it to 0 there too.

Code on workers (design-hazards H4/H5). On a cluster we start, workers get the coordinator's
``sys.path`` with each batch and import stages by reference; ``__main__`` and notebook stages
travel by value (cloudpickle). On any other cluster the project's modules travel by value:
those whose files are beside a stage's module or under ``project_dirs`` (not installed
packages, not stagewise), registered with ``cloudpickle.register_pickle_by_value`` only while a
batch is pickled, together with the handlers they registered. We chose this over
``client.upload_file`` because workers then run exactly the code whose fingerprint the
coordinator recorded; nothing is left on a shared cluster, where two projects' ``stages.py``
would clash by module name; and workers that join later (adaptive scaling, dask-jobqueue) need
no plugin. The limit: modules imported inside a function at call time, and data files beside
the code, do not travel; install the project on the workers (or put it on their PYTHONPATH).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import logging
import os
import pickle
import re
import signal
import sys
import sysconfig
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import cloudpickle

from stagewise.errors import ConfigError
from stagewise.model.stage import Stage
from stagewise.run.executors.futures import FuturesExecutor, _Batched, _run_batch, _window
from stagewise.run.task import Outcome, Task

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskExecutor", "FuturesExecutor", "dask_setup"]

_CAUSE_WAIT = 1.0  # seconds to wait for the nanny to log why its worker died
_REMOTE_WINDOW = 64  # batches in flight at least, on a cluster we did not start


# --- worker side ----------------------------------------------------------------------------------


def dask_setup(worker: Any) -> None:
    """Preload hook of the workers of a cluster we start: Ctrl-C is the coordinator's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stage_from_fields(values: dict[str, Any]) -> Stage:
    return Stage(**values)


# --- project modules by value ---------------------------------------------------------------------


class _Pickler(cloudpickle.Pickler):
    """cloudpickle that sends stages of by-value modules by value.

    ``Stage.__reduce__`` names the stage's module when it is importable here, which a remote
    worker may not be able to import.
    """

    def __init__(self, file: io.BytesIO, by_value: frozenset[str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._by_value = by_value

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Stage and _top(getattr(obj.fn, "__module__", None)) in self._by_value:
            return _stage_from_fields, ({f.name: getattr(obj, f.name) for f in fields(obj)},)
        return super().reducer_override(obj)


def _top(module: str | None) -> str:
    return (module or "").partition(".")[0]


def _dumps(value: Any, by_value: frozenset[str]) -> bytes:
    if not by_value:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    known = set(cloudpickle.list_registry_pickle_by_value())
    added = [sys.modules[name] for name in sorted(by_value - known) if name in sys.modules]
    for module in added:  # registered only while we pickle: the local pool is not affected
        cloudpickle.register_pickle_by_value(module)
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, by_value).dump(value)
        return buffer.getvalue()
    finally:
        for module in added:
            cloudpickle.unregister_pickle_by_value(module)


def _installed_dirs() -> tuple[str, ...]:
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = {sysconfig.get_paths()[k] for k in keys} | {os.path.dirname(os.__file__)}
    return tuple(os.path.abspath(p) + os.sep for p in paths)


def _module_dirs(module: Any) -> list[str]:
    file = getattr(module, "__file__", None)
    dirs = [os.path.dirname(file)] if file else list(getattr(module, "__path__", []) or [])
    return [os.path.abspath(d) + os.sep for d in dirs]


def _home_of(fn: Any) -> Path | None:
    """The folder holding a stage function's top-level module or package (the project)."""
    top = sys.modules.get(_top(getattr(fn, "__module__", None)))
    dirs = _module_dirs(top) if top is not None else []
    if not dirs:
        return None
    folder = Path(dirs[0])
    return folder.parent if getattr(top, "__path__", None) is not None else folder


def _project_modules(dirs: Iterable[Path]) -> frozenset[str]:
    """Top-level modules imported from under ``dirs``, except installed ones and stagewise."""
    roots = tuple(os.path.abspath(d) + os.sep for d in dirs)
    installed = _installed_dirs()
    found = set()
    for name, module in list(sys.modules.items()):
        if "." in name or name in ("__main__", "__mp_main__", "stagewise") or module is None:
            continue
        for folder in _module_dirs(module):
            parts = set(Path(folder).parts)
            if (
                folder.startswith(roots)
                and not folder.startswith(installed)
                and not parts & {"site-packages", "dist-packages"}
            ):
                found.add(name)
    return frozenset(found)


def _shipped_handlers(tasks: list[Task], by_value: frozenset[str]) -> list[tuple[str, Any]]:
    """Handlers registered by project modules, which a remote worker never imports."""
    from stagewise.handlers import get_handler

    names = {
        spec.handler
        for task in tasks
        for spec in (*task.inputs.values(), *task.outputs.values())
        if isinstance(spec.handler, str)
    }
    shipped = []
    for name in sorted(names):
        try:
            handler = get_handler(name)
        except Exception:  # the worker reports it, with the item
            continue
        if _top(type(handler).__module__) in by_value:
            shipped.append((name, handler))
    return shipped


# --- why a worker died ----------------------------------------------------------------------------

_DEATH = re.compile(
    r"Worker process (?P<pid>\d+) (?:was killed by signal (?P<sig>\d+)|exited with status "
    r"(?P<code>\d+)|was killed by unknown signal)|\(pid=(?P<mpid>\d+)\) exceeded (?P<pct>\d+)% memory"
)


def _cause(lines: Iterable[str], pid: int) -> str | None:
    """What the nanny logged about worker process ``pid``: 'died with SIGSEGV (...)', etc."""
    for line in lines:
        for m in _DEATH.finditer(line):
            if int(m["pid"] or m["mpid"]) != pid:
                continue
            if m["pct"]:
                return f"was restarted by its nanny: memory above {m['pct']}% of the worker's limit"
            if m["code"]:
                return f"exited with code {m['code']}"
            if not m["sig"]:
                return "was killed by an unknown signal"
            number = int(m["sig"])
            try:
                name = signal.Signals(number).name
            except ValueError:
                return f"was killed by signal {number}"
            if name == "SIGKILL":
                return "was killed by SIGKILL (often the out-of-memory killer)"
            return f"died with {name} ({(signal.strsignal(number) or name).lower()})"
    return None


class _DeathLog(logging.Handler):
    """Keeps what our in-process nannies log about dead workers (they log it at INFO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=500)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            return
        if "Worker process" in text or "memory" in text:
            self.lines.append(text)


def _death_text(exc: BaseException, cause: str | None) -> str:
    worker = getattr(exc, "last_worker", None)
    pid, address = getattr(worker, "pid", None), getattr(worker, "address", None) or "?"
    if cause:
        return f"Dask worker process {pid} {cause} while running this item (worker {address})"
    return f"the Dask worker running this item died (worker {address}, pid {pid}); its log may say why"


# --- the executor ---------------------------------------------------------------------------------


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "--executor dask needs the dask extra", hint="pip install 'stagewise[dask]'"
        ) from None
    return distributed


class DaskExecutor(_Batched):
    """Run items on a Dask cluster: a ``LocalCluster`` we start, or one a scheduler address reaches.

    Args:
        jobs: worker processes of the LocalCluster started without ``scheduler``/``client``;
            with a cluster of your own, a lower bound for sizing batches.
        scheduler: ``tcp://host:port`` of a running scheduler.
        client: a connected ``distributed.Client`` (not closed by ``close``).
        project_dirs: folders whose modules travel by value to a cluster we did not start
            (the folders of the stages' modules always do).

    Raises:
        ConfigError: distributed is not installed, or the scheduler cannot be reached.
    """

    def __init__(
        self,
        jobs: int,
        *,
        scheduler: str | None = None,
        client: distributed.Client | None = None,
        project_dirs: Sequence[Path] = (),
    ) -> None:
        super().__init__()
        dist = _require_distributed()
        self.jobs = max(1, jobs)
        self._project_dirs = tuple(Path(d) for d in project_dirs)
        self._client: Any = None
        self._cluster: Any = None
        self._config: Any = None
        self._deaths: _DeathLog | None = None
        self._owns_client = client is None
        self._tasks: dict[cf.Future[list[Outcome]], Any] = {}  # our futures -> Dask's
        self._wire: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())
        if client is not None:
            self._client = client
        elif scheduler:
            self._client = _connect(dist, scheduler)
        else:
            self._client = self._start_cluster(dist)

    def _start_cluster(self, dist: Any) -> Any:
        import dask

        preload = [*dask.config.get("distributed.worker.preload", []), __name__]
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        # Kept set while the cluster lives: nannies read these at each worker (re)start.
        self._config = dask.config.set(
            {
                "distributed.worker.daemon": False,
                "distributed.scheduler.allowed-failures": 0,
                "distributed.worker.preload": preload,
                "distributed.worker.multiprocessing-method": method,
            }
        )
        try:
            if method == "forkserver":
                _preload_in_forkserver()
            self._cluster = dist.LocalCluster(
                n_workers=self.jobs,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # Without a dashboard the scheduler still serves /health on :8787, and warns
                # when another cluster has that port: any free local port will do.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
            )
            client = dist.Client(self._cluster, set_as_default=False)
        except BaseException:
            self.close()
            raise
        self._deaths = _DeathLog()
        logging.getLogger("distributed").addHandler(self._deaths)
        return client

    @property
    def client(self) -> distributed.Client:
        """The Dask client (to look at the cluster, or reuse it)."""
        return self._client

    def run(self, tasks: Iterable[Task], *, max_parallel: int | None = None) -> Iterator[Outcome]:
        """Run every task; yield outcomes as batches complete.

        ``max_parallel`` (from stages' ``memory``, measured on this machine) applies only to the
        LocalCluster this executor started; on a cluster of yours, Dask places the batches.
        """
        todo = list(tasks)
        if not todo:
            return
        if self._cluster is not None:
            self._wire = (tuple(sys.path), frozenset())
            yield from self._drive(todo, jobs=self.jobs, window=_window(self.jobs, max_parallel))
        else:  # a window big enough for adaptive clusters to see the load and scale up
            self._wire = ((), self._by_value_modules(todo))
            slots = max(self.jobs, self._live_slots())
            yield from self._drive(todo, jobs=slots, window=max(_REMOTE_WINDOW, 4 * slots))

    def _submit(self, tasks: list[Task]) -> cf.Future[list[Outcome]]:
        paths, by_value = self._wire
        handlers = _shipped_handlers(tasks, by_value) if by_value else []
        payload = _dumps((handlers, tasks), by_value)
        key = f"stagewise-{tasks[0].stage}-{uuid.uuid4().hex}"
        task = self._client.submit(_run_batch, paths, payload, key=key, pure=False, retries=0)
        future: cf.Future[list[Outcome]] = cf.Future()
        self._tasks[future] = task
        task.add_done_callback(lambda task: self._settle_task(task, future))
        return future

    def _settle_task(self, task: Any, future: cf.Future[list[Outcome]]) -> None:
        """Move a Dask task's result to our future, then release it (in distributed's callback thread).

        Releasing at once matters: a finished task whose worker dies later is otherwise
        recomputed while the client holds it, writing its outputs a second time.
        """
        with contextlib.suppress(cf.InvalidStateError):  # cancelled by us meanwhile
            try:
                if task.status == "finished":
                    future.set_result(task.result())
                elif task.status == "cancelled":
                    future.cancel()
                    future.set_running_or_notify_cancel()  # wakes cf.wait
                else:
                    future.set_exception(task.exception())
            except BaseException as exc:  # the result could not be fetched (cluster gone)
                future.set_exception(exc)
        self._tasks.pop(future, None)
        task.release()

    def _cancel(self, futures: list[cf.Future[list[Outcome]]]) -> None:
        tasks = [t for t in (self._tasks.pop(f, None) for f in futures) if t is not None]
        for future in futures:
            future.cancel()
        if tasks and self._client is not None:
            with contextlib.suppress(Exception):  # the cluster may be gone already
                self._client.cancel(tasks)  # one message for all (Ctrl-C on a big queue)

    def _live_slots(self) -> int:
        return sum(self._client.nthreads().values())  # type: ignore[no-any-return]

    def _by_value_modules(self, tasks: list[Task]) -> frozenset[str]:
        homes = {_home_of(getattr(t.stage_ref, "fn", None)) for t in tasks}
        return _project_modules([*self._project_dirs, *(h for h in homes if h is not None)])

    def _explain(self, exc: BaseException) -> str:
        pid = getattr(getattr(exc, "last_worker", None), "pid", None)
        cause = None
        deadline = time.monotonic() + _CAUSE_WAIT
        while pid is not None and cause is None and time.monotonic() < deadline:
            cause = _cause(self._log_lines(), pid)
            if cause is None:
                time.sleep(0.05)
        return _death_text(exc, cause)

    def _log_lines(self) -> list[str]:
        if self._deaths is not None:
            return list(self._deaths.lines)
        try:  # a cluster of yours: ask the nannies (best effort)
            logs = self._client.get_worker_logs(nanny=True)
        except Exception:
            return []
        return [message for entries in logs.values() for _, message in entries]

    def close(self) -> None:
        """Close the client and the cluster, if this executor created them."""
        if self._deaths is not None:
            logging.getLogger("distributed").removeHandler(self._deaths)
            self._deaths = None
        if self._owns_client and self._client is not None:
            self._owns_client = False
            self._client.close()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()
        config, self._config = self._config, None
        if config is not None:
            config.__exit__(None, None, None)

    def terminate(self) -> None:
        """Cancel every batch in flight now (Ctrl-C), then close what this executor created.

        A ``run`` still iterating in another thread raises ``Interrupted``.
        """
        super().terminate()
        self.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _preload_in_forkserver() -> None:
    """Have the forkserver import distributed and stagewise once, so workers start as plain forks.

    Forked from a server that imported them, workers start in a fraction of a second instead of
    importing everything afresh as ``spawn`` does (which also makes restarts after a crash
    cheap). Only effective before the process's forkserver starts (the local pool shares it).
    """
    from multiprocessing import forkserver

    from distributed.utils import get_mp_context

    def preloaded() -> list[str]:
        return list(getattr(forkserver._forkserver, "_preload_modules", None) or [])

    before = preloaded()  # the local pool's, if it asked first
    context = get_mp_context()  # replaces the list with Dask's own, the first time
    context.set_forkserver_preload(list(dict.fromkeys([*before, *preloaded(), __name__])))


def _connect(dist: Any, scheduler: str) -> Any:
    try:
        return dist.Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"--scheduler {scheduler}: cannot connect to the Dask scheduler ({exc})",
            hint="check the address, and that `dask scheduler` runs there",
        ) from None
