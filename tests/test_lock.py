"""The run lock, with real processes: refusal, stale takeover, waiting, and takeover races."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import stagewise.state.lock as lock_module
from stagewise.errors import LockError
from stagewise.state.lock import RunLock, read_holder

SRC = Path(lock_module.__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(SRC)}

_HOLDER = textwrap.dedent(
    """
    import sys
    from stagewise.state.lock import RunLock
    lock = RunLock(sys.argv[1], command="holder")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
    sys.stdin.readline()
    """
)

_RACER = textwrap.dedent(
    """
    import os, sys
    from stagewise.errors import LockError
    from stagewise.state.lock import RunLock
    lock = RunLock(sys.argv[1], command="racer")
    print("ready", flush=True)
    while not os.path.exists(sys.argv[2]):
        pass
    try:
        lock.acquire()
    except LockError:
        print("lost", flush=True)
        sys.exit(0)
    print("won" if lock.took_over is None else "won-takeover", flush=True)
    sys.stdin.readline()
    lock.release()
    """
)


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def expect(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == line


def finish(proc: subprocess.Popen[str]) -> None:
    """Let the process end (closing its stdin ends its wait) and close our pipes."""
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "out" / ".stagewise" / "lock"


@pytest.fixture
def holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = spawn(_HOLDER, str(lock_path))
    expect(proc, "locked")
    yield proc
    finish(proc)


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(proc.stdout)


def test_lock_file_names_its_holder(lock_path: Path) -> None:
    with RunLock(lock_path, command="stagewise run clean") as lock:
        assert lock.held
        data = json.loads(lock_path.read_text())
        assert data["pid"] == os.getpid() and data["host"] == socket.gethostname()
        assert data["command"] == "stagewise run clean" and "T" in data["started"]
    assert not lock_path.exists() and not lock.held


def test_second_process_is_refused_with_pid_and_host(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockError) as info:
        RunLock(lock_path).acquire()
    message = str(info.value)
    root = lock_path.parent.parent
    assert f"output root {root} is locked by pid {holder.pid} on host {socket.gethostname()}" in message
    assert "another stagewise run is using it" in message
    assert f"pass --wait; if that process is gone, delete {lock_path}" in (info.value.hint or "")
    assert read_holder(lock_path).pid == holder.pid  # type: ignore[union-attr]


def test_lock_of_a_sigkilled_holder_is_taken_over(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = RunLock(lock_path)
    lock.acquire()
    assert lock.took_over is not None and lock.took_over.pid == holder.pid
    assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    lock.release()
    assert sorted(p.name for p in lock_path.parent.iterdir()) == []


def test_wait_acquires_once_the_holder_releases(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    stdin = holder.stdin

    def release() -> None:
        stdin.write("\n")
        stdin.flush()

    timer = threading.Timer(0.5, release)
    begun = time.monotonic()
    timer.start()
    lock = RunLock(lock_path)
    lock.acquire(wait=True, poll=0.05, timeout=30)
    assert time.monotonic() - begun >= 0.4
    assert lock.took_over is None
    lock.release()
    timer.join()


def test_wait_gives_up_after_the_timeout(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockError, match=r"gave up after waiting \d+ s"):
        RunLock(lock_path).acquire(wait=True, poll=0.05, timeout=0.3)


@pytest.mark.parametrize("round_", range(3))
def test_racing_takeovers_of_a_stale_lock_have_one_winner(lock_path: Path, round_: int) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    go = lock_path.parent.parent / "go"
    racers = [spawn(_RACER, str(lock_path), str(go)) for _ in range(4)]
    try:
        for proc in racers:
            expect(proc, "ready")
        go.touch()
        outcomes = []
        for proc in racers:
            assert proc.stdout is not None
            outcomes.append(proc.stdout.readline().strip())
        assert sorted(outcomes)[:3] == ["lost"] * 3, outcomes
        assert sorted(outcomes)[3].startswith("won"), outcomes
    finally:
        for proc in racers:
            finish(proc)
    assert sorted(p.name for p in lock_path.parent.iterdir()) == []  # no guard or stale leftovers


def test_lock_held_on_another_host_is_never_taken_over(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere", "started": "x"}))
    with pytest.raises(LockError, match="on host elsewhere since x"):
        RunLock(lock_path).acquire()


def test_recycled_pid_is_recognised(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    # Our own pid, but a different process start time: the holder died and its pid was reused.
    fake = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": 1}
    lock_path.write_text(json.dumps(fake))
    with RunLock(lock_path) as lock:
        assert lock.took_over is not None and lock.took_over.pid_start == 1


def test_empty_lock_file_is_stale_only_after_a_grace_period(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_bytes(b"")
    begun = time.monotonic()
    with RunLock(lock_path, stale_after=0.3) as lock:
        assert time.monotonic() - begun >= 0.2
        assert lock.took_over is not None and lock.took_over.pid is None
    old = time.time() - 60
    lock_path.write_bytes(b"{garbage")
    os.utime(lock_path, (old, old))
    with RunLock(lock_path) as lock:
        assert lock.took_over is not None


def test_flock_vetoes_a_takeover_on_local_disks(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a child of the dead holder still has it open
        with pytest.raises(LockError) as info:
            RunLock(lock_path, network_fs=False).acquire()
        assert "a process it started still holds the lock" in (info.value.hint or "")
        # On a network filesystem flock is not trusted: the dead pid decides.
        with RunLock(lock_path, network_fs=True) as lock:
            assert lock.took_over is not None
    finally:
        os.close(fd)


def test_release_leaves_a_lock_that_is_no_longer_ours(lock_path: Path) -> None:
    lock = RunLock(lock_path)
    lock.acquire()
    os.unlink(lock_path)
    lock_path.write_text(json.dumps({"pid": 1, "host": "someone-else"}))
    lock.release()
    assert json.loads(lock_path.read_text())["host"] == "someone-else"


def test_same_process_cannot_lock_twice_but_reacquire_is_idempotent(lock_path: Path) -> None:
    with RunLock(lock_path) as first:
        first.acquire()  # already held: no-op
        with pytest.raises(LockError):
            RunLock(lock_path).acquire()
