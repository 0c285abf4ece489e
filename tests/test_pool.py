"""WorkerPool with real worker processes: results, errors, crashes, signals, shutdown, limits."""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagewise.run import cpus
from stagewise.run.pool import (
    TRACEBACK_ATTR,
    InitializerFailed,
    PoolTerminated,
    RemoteError,
    WorkerDied,
    WorkerPool,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# --- task functions (module level: they travel by reference) -------------------------------------


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def segfault() -> None:
    ctypes.string_at(0)


def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_with(code: int) -> None:
    os._exit(code)


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def sleep_with_pid_file(path: str, seconds: float) -> int:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # unpickling calls __init__(msg): fails
        super().__init__(f"{a}/{b}")


def raise_unpicklable() -> None:
    raise Unpicklable(1, 2)


_INIT_CALLS = 0


def count_init(value: int) -> None:
    global _INIT_CALLS
    _INIT_CALLS += value


def pid_and_init_calls() -> tuple[int, int]:
    time.sleep(0.01)
    return os.getpid(), _INIT_CALLS


def broken_init() -> None:
    raise RuntimeError("cannot load the mask")


def allocate(n: int) -> int:
    import numpy as np

    return int(np.ones(n).size)


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2) as shared:
        yield shared


def wait_for_file(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return int(path.read_text())


def new_children(before: set[multiprocessing.process.BaseProcess]) -> set[object]:
    """Child processes alive now that were not before (the module's shared pool has some)."""
    return set(multiprocessing.active_children()) - before


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- results and errors --------------------------------------------------------------------------


def test_each_future_gets_its_own_result_or_exception(pool: WorkerPool) -> None:
    futures = {x: pool.submit(square, x) for x in range(30)}
    failing = pool.submit(fail, "item 7 is bad")
    assert {x: f.result(timeout=30) for x, f in futures.items()} == {x: x * x for x in range(30)}
    with pytest.raises(ValueError, match="item 7 is bad"):
        failing.result(timeout=30)


def test_task_exception_carries_the_worker_traceback(pool: WorkerPool) -> None:
    exc = pool.submit(fail, "boom").exception(timeout=30)
    assert isinstance(exc, ValueError)
    text = getattr(exc, TRACEBACK_ATTR)
    assert "in fail" in text and "ValueError: boom" in text
    assert "in fail" in str(exc.__cause__)  # printed with the exception in the coordinator


def test_exception_that_cannot_be_unpickled_becomes_remote_error(pool: WorkerPool) -> None:
    exc = pool.submit(raise_unpicklable).exception(timeout=30)
    assert isinstance(exc, RemoteError)
    assert exc.type_name.endswith("Unpicklable") and exc.message == "1/2"
    assert "raise_unpicklable" in exc.traceback == getattr(exc, TRACEBACK_ATTR)


def test_system_exit_in_a_task_fails_only_that_task(pool: WorkerPool) -> None:
    exc = pool.submit(sys.exit, 3).exception(timeout=30)
    assert isinstance(exc, RemoteError) and exc.type_name == "SystemExit"
    assert pool.submit(square, 3).result(timeout=30) == 9


def test_unpicklable_argument_fails_its_future_not_submit(pool: WorkerPool) -> None:
    future = pool.submit(square, threading.Lock())
    assert isinstance(future.exception(timeout=1), TypeError)


def test_lambdas_closures_and_unimportable_functions_travel_by_value(pool: WorkerPool) -> None:
    offset = 10
    namespace: dict[str, object] = {"__name__": "not_an_importable_module"}
    exec("def triple(x):\n    return 3 * x\n", namespace)
    assert pool.submit(lambda x: x + offset, 1).result(timeout=30) == 11
    assert pool.submit(namespace["triple"], 2).result(timeout=30) == 6  # type: ignore[arg-type]


# --- dying workers -------------------------------------------------------------------------------


def test_segfault_fails_only_its_item_and_the_pool_goes_on(pool: WorkerPool) -> None:
    good = [pool.submit(sleep_then, 0.02, i) for i in range(10)]
    bad = pool.submit(segfault)
    exc = bad.exception(timeout=30)
    assert isinstance(exc, WorkerDied)
    assert exc.signal_name == "SIGSEGV" and exc.exitcode == -signal.SIGSEGV
    assert "died with SIGSEGV (segmentation fault) while running this item" in str(exc)
    assert exc.traceback is not None and "segfault" in exc.traceback  # faulthandler's stack
    assert [f.result(timeout=30) for f in good] == list(range(10))
    assert pool.submit(square, 4).result(timeout=30) == 16


def test_sigkill_is_named_with_the_oom_hint(pool: WorkerPool) -> None:
    exc = pool.submit(sigkill_self).exception(timeout=30)
    assert isinstance(exc, WorkerDied) and exc.signal_name == "SIGKILL"
    assert "killed by SIGKILL (often the out-of-memory killer)" in str(exc)


def test_exit_code_is_reported(pool: WorkerPool) -> None:
    exc = pool.submit(exit_with, 7).exception(timeout=30)
    assert isinstance(exc, WorkerDied) and exc.exitcode == 7 and exc.signal_name is None
    assert "exited with code 7" in str(exc)


def test_worker_died_pickles() -> None:
    exc = WorkerDied("worker process 1 died", pid=1, exitcode=-11, signal_name="SIGSEGV")
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.pid, back.exitcode, back.signal_name) == (str(exc), 1, -11, "SIGSEGV")
    remote = pickle.loads(pickle.dumps(RemoteError("m", type_name="a.B", traceback="tb")))
    assert (str(remote), remote.traceback) == ("a.B: m", "tb")


def test_workers_ignore_sigint(pool: WorkerPool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    future = pool.submit(sleep_with_pid_file, str(pid_file), 0.5)
    pid = wait_for_file(pid_file)
    os.kill(pid, signal.SIGINT)
    assert future.result(timeout=30) == pid


# --- initializer and memory ----------------------------------------------------------------------


def test_initializer_runs_once_per_worker() -> None:
    with WorkerPool(2, initializer=count_init, initargs=(1,)) as pool:
        results = [f.result(timeout=30) for f in [pool.submit(pid_and_init_calls) for _ in range(20)]]
    assert {calls for _, calls in results} == {1}
    assert 1 <= len({pid for pid, _ in results}) <= 2


def test_initializer_that_raises_breaks_the_pool_without_respawning() -> None:
    before = set(multiprocessing.active_children())
    pool = WorkerPool(2, initializer=broken_init)
    futures = [pool.submit(square, i) for i in range(5)]
    for future in futures:
        exc = future.exception(timeout=30)
        assert isinstance(exc, InitializerFailed)
        assert "initializer failed: RuntimeError: cannot load the mask" in str(exc)
        assert "broken_init" in getattr(exc, TRACEBACK_ATTR)
    with pytest.raises(cf.BrokenExecutor, match="cannot load the mask"):
        pool.submit(square, 1)
    pool.shutdown()
    assert new_children(before) == set()


def test_initializer_that_crashes_the_worker_stops_respawning() -> None:
    pool = WorkerPool(1, initializer=segfault)
    exc = pool.submit(square, 1).exception(timeout=30)
    assert isinstance(exc, cf.BrokenExecutor)
    assert "died 3 times in a row before running a task" in str(exc) and "SIGSEGV" in str(exc)
    pool.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux only")
def test_memory_limit_turns_overallocation_into_memory_error() -> None:
    pytest.importorskip("numpy")
    with WorkerPool(1, memory_limit_bytes=512 * 2**20) as pool:
        big = pool.submit(allocate, 2**28)  # 2 GiB of float64
        small = pool.submit(allocate, 1000)
        assert isinstance(big.exception(timeout=30), MemoryError)
        assert small.result(timeout=30) == 1000


# --- shutdown and termination --------------------------------------------------------------------


def test_shutdown_waits_for_queued_tasks_and_leaves_nothing_behind() -> None:
    before, threads_before = set(multiprocessing.active_children()), set(threading.enumerate())
    pool = WorkerPool(2)
    futures = [pool.submit(sleep_then, 0.01, i) for i in range(10)]
    pool.shutdown(wait=True)
    assert [f.result(timeout=0) for f in futures] == list(range(10))
    assert new_children(before) == set()
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(square, 1)


def test_shutdown_cancel_futures_cancels_the_queue(tmp_path: Path) -> None:
    pool = WorkerPool(1)
    running = pool.submit(sleep_with_pid_file, str(tmp_path / "p"), 0.3)
    queued = [pool.submit(square, i) for i in range(5)]
    pid = wait_for_file(tmp_path / "p")
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=0) == pid
    assert all(f.cancelled() for f in queued)


def test_terminate_kills_running_tasks_and_leaves_no_child(tmp_path: Path) -> None:
    before = set(multiprocessing.active_children())
    pool = WorkerPool(2)
    running = [pool.submit(sleep_with_pid_file, str(tmp_path / f"p{i}"), 60) for i in range(2)]
    queued = pool.submit(square, 2)
    pids = [wait_for_file(tmp_path / f"p{i}") for i in range(2)]
    start = time.monotonic()
    pool.terminate()
    assert time.monotonic() - start < 5
    for future in running:
        assert isinstance(future.exception(timeout=0), PoolTerminated)
    assert queued.cancelled()
    assert new_children(before) == set()
    assert all(pid_gone(pid) for pid in pids)  # reaped: not even a zombie


def test_keyboard_interrupt_in_with_block_terminates(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), WorkerPool(1) as pool:
        future = pool.submit(sleep_with_pid_file, str(tmp_path / "p"), 60)
        wait_for_file(tmp_path / "p")
        raise KeyboardInterrupt
    assert isinstance(future.exception(timeout=0), PoolTerminated)


def test_interpreter_exit_does_not_wait_for_a_forgotten_pool(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, time
        from stagewise.run.pool import WorkerPool
        pool = WorkerPool(2)
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 60)
        time.sleep(0.2)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 15
    assert pid_gone(int(proc.stdout.split()[0]))


# --- cpus and memory -----------------------------------------------------------------------------


def test_usable_cpus_is_at_least_one_and_at_most_the_machine() -> None:
    assert 1 <= cpus.usable_cpus() <= (os.cpu_count() or 1)


def test_available_memory_is_positive_or_unknown() -> None:
    memory = cpus.available_memory_bytes()
    assert memory is None or memory > 0


def write_cgroup(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_cgroup_v2_cpu_quota_rounds_up_and_walks_up_the_tree(tmp_path: Path) -> None:
    write_cgroup(tmp_path, {"cpu.max": "max 100000\n", "job/cpu.max": "150000 100000\n"})
    proc = tmp_path / "self_cgroup"
    proc.write_text("0::/job\n")
    assert cpus._cpu_quota(tmp_path, proc) == 2
    write_cgroup(tmp_path, {"cpu.max": "50000 100000\n"})
    assert cpus._cpu_quota(tmp_path, proc) == 1
    write_cgroup(tmp_path, {"cpu.max": "max 100000\n", "job/cpu.max": "max 100000\n"})
    assert cpus._cpu_quota(tmp_path, proc) is None


def test_cgroup_v1_cpu_quota(tmp_path: Path) -> None:
    write_cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"})
    assert cpus._cpu_quota(tmp_path, tmp_path / "missing") == 3
    write_cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "-1"})
    assert cpus._cpu_quota(tmp_path, tmp_path / "missing") is None


def test_cgroup_v1_nested_memory_limit_from_proc_self_cgroup(tmp_path: Path) -> None:
    write_cgroup(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": "9223372036854771712",
            "memory/slurm/job1/memory.limit_in_bytes": "2000000",
            "memory/slurm/job1/memory.usage_in_bytes": "500000",
            "cpu,cpuacct/slurm/job1/cpu.cfs_quota_us": "400000",
            "cpu,cpuacct/slurm/job1/cpu.cfs_period_us": "100000",
        },
    )
    proc = tmp_path / "self_cgroup"
    proc.write_text("4:memory:/slurm/job1\n2:cpu,cpuacct:/slurm/job1\n0::/\n")
    assert cpus._memory_headroom(tmp_path, proc) == 1500000
    assert cpus._cpu_quota(tmp_path, proc) == 4


def test_memory_headroom_from_cgroup_and_meminfo(tmp_path: Path) -> None:
    write_cgroup(tmp_path, {"memory.max": "1000000\n", "memory.current": "400000\n"})
    assert cpus._memory_headroom(tmp_path, tmp_path / "missing") == 600000
    write_cgroup(tmp_path, {"memory.stat": "anon 100000\ninactive_file 300000\n"})
    assert cpus._memory_headroom(tmp_path, tmp_path / "missing") == 900000  # cache is reclaimable
    write_cgroup(tmp_path, {"memory.max": "max\n"})
    assert cpus._memory_headroom(tmp_path, tmp_path / "missing") is None
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert cpus._mem_available(meminfo) == 8000000 * 1024
