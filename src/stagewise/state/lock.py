"""The run lock: one run at a time per output root (SPEC 7).

The lock is the file ``OUTPUT/.stagewise/lock``, created with ``O_CREAT | O_EXCL`` (atomic on
local disks and on NFSv3+, unlike ``flock``, which NFS emulates and Lustre may keep node-local)
and holding JSON: pid, host, start time, command, a random token, and the kernel start time of
the pid (so a recycled pid is not mistaken for the holder). On local filesystems the holder also
keeps an ``flock`` on it, which the kernel drops when the process dies; that is used only to
veto a takeover (a holder in another pid namespace with the same host name, or a forked child
still running), never as the lock itself.

Taking over a stale lock (holder on this host and dead, or an empty/unreadable file older than
`STALE_EMPTY_SECONDS`) is the delicate part: two processes may judge the same file stale at
once, and the naive "unlink, then create" lets the second unlink the lock the first has just
created. So a taker:

1. creates a guard file ``lock.takeover`` with ``O_EXCL`` (takers are serialised; a guard older
   than `GUARD_STALE_SECONDS` was left by a dead taker and is removed);
2. re-reads the lock and goes on only if it is still the very file judged stale (same inode and
   bytes; every holder writes a fresh token, so a new holder's file always differs);
3. renames it to a unique name, checks again that what it moved is the stale file (if not, puts
   it back with ``link``, which never overwrites), and deletes it;
4. drops the guard and competes for the lock with ``O_EXCL`` like everyone else.

Only ``O_EXCL`` decides who holds the lock, so exactly one process wins. The remaining hole needs
a taker to stall for `GUARD_STALE_SECONDS` inside step 2-3 (milliseconds of work) while another
takes over; we accept it. A holder that finds, after writing, that its file is no longer at the
lock path (judged stale while it stalled before writing) gives up that attempt and retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from stagewise.errors import LockError
from stagewise.state.fsinfo import is_network_fs

__all__ = ["GUARD_STALE_SECONDS", "STALE_EMPTY_SECONDS", "LockHolder", "RunLock", "read_holder"]

#: An empty or unreadable lock file older than this is stale (its creator died before writing).
STALE_EMPTY_SECONDS = 5.0

#: A takeover guard older than this was left by a taker that died.
GUARD_STALE_SECONDS = 10.0


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about its holder (fields are None when unreadable)."""

    pid: int | None
    host: str | None
    started: str | None
    command: str | None
    token: str | None
    pid_start: int | None
    ino: int
    mtime: float
    raw: bytes


def read_holder(path: Path) -> LockHolder | None:
    """Read a lock file; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        raw = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(pid)
    except (ValueError, AttributeError):
        return LockHolder(None, None, None, None, None, None, st.st_ino, st.st_mtime, raw)
    start = data.get("pid_start")
    return LockHolder(
        pid=pid,
        host=str(data.get("host")),
        started=str(data.get("started")),
        command=data.get("command"),
        token=data.get("token"),
        pid_start=start if isinstance(start, int) else None,
        ino=st.st_ino,
        mtime=st.st_mtime,
        raw=raw,
    )


def _proc_start(pid: int) -> tuple[int | None, str | None]:
    """Kernel start time (clock ticks since boot) and state letter of a process, if known."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        fields = text[text.rindex(")") + 2 :].split()
        return int(fields[19]), fields[0]
    except (OSError, ValueError, IndexError):
        return None, None


def _pid_alive(pid: int, pid_start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    start, state = _proc_start(pid)
    if state == "Z":
        return False  # a zombie: dead, not yet reaped by its parent
    # A different start time means the pid was recycled by an unrelated process.
    return pid_start is None or start is None or start == pid_start


def _same_file(path: Path, holder: LockHolder) -> bool:
    current = read_holder(path)
    return current is not None and (current.ino, current.raw) == (holder.ino, holder.raw)


class RunLock:
    """The lock of one output root, held for the duration of a run.

    Args:
        path: the lock file, normally ``OUTPUT/.stagewise/lock``; its folder is created.
        command: what to record as the holder's command (default: this process's argv).
        network_fs: whether the file is on a network filesystem (no ``flock`` then); None
            detects it.
        stale_after: see `STALE_EMPTY_SECONDS`.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        command: str | None = None,
        network_fs: bool | None = None,
        stale_after: float = STALE_EMPTY_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.command = shlex.join(sys.argv) if command is None else command
        self.network_fs = is_network_fs(self.path.parent) if network_fs is None else network_fs
        self.stale_after = stale_after
        self.took_over: LockHolder | None = None
        """The stale holder this lock replaced, if any (for a warning in the run log)."""
        self._fd: int | None = None
        self._ino: int | None = None
        self._host = socket.gethostname()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, wait: bool = False, poll: float = 0.2, timeout: float | None = None) -> None:
        """Take the lock, taking over a stale one.

        Args:
            wait: wait for a live holder to release it instead of failing.
            poll: seconds between attempts while waiting.
            timeout: give up waiting after this many seconds (None: wait forever).

        Raises:
            LockError: another live run holds it (and ``wait`` is false, or the timeout passed).
        """
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        begun = time.monotonic()
        while not self._try_create():
            holder = read_holder(self.path)
            if holder is None:
                continue  # released between our two calls: try again at once
            verdict = self._judge(holder)
            if verdict == "stale":
                if self._take_over(holder):
                    self.took_over = holder
                continue
            if verdict == "alive" and not wait:
                raise self._error(holder)
            if timeout is not None and time.monotonic() - begun >= timeout:
                raise self._error(holder, waited=time.monotonic() - begun)
            time.sleep(poll)

    def release(self) -> None:
        """Remove the lock file if it is still ours, and drop the ``flock`` (idempotent)."""
        if self._fd is None:
            return
        try:
            current = read_holder(self.path)
            if current is not None and current.ino == self._ino:
                # Unlinked before the fd closes, so the flock covers the file until it is gone.
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = self._ino = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            if not self.network_fs:
                # Before writing: a racer that finds the file still empty sees it locked.
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, self._content())
            os.fsync(fd)
            ino = os.fstat(fd).st_ino
            try:
                ours = os.stat(self.path).st_ino == ino
            except FileNotFoundError:
                ours = False
        except BaseException:  # disk full, interrupted: leave no empty lock file behind
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.path)
            os.close(fd)
            raise
        if not ours:  # we stalled and our empty file was taken over: compete again
            os.close(fd)
            return False
        self._fd, self._ino = fd, ino
        return True

    def _content(self) -> bytes:
        start, _ = _proc_start(os.getpid())
        data = {
            "pid": os.getpid(),
            "host": self._host,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": self.command,
            "token": secrets.token_hex(8),
            "pid_start": start,
        }
        return (json.dumps(data, indent=1) + "\n").encode()

    def _judge(self, holder: LockHolder) -> str:
        """Return ``alive``, ``young`` (being written, wait a moment) or ``stale``."""
        if holder.pid is None:
            if time.time() - holder.mtime < self.stale_after:
                return "young"
        elif holder.host != self._host or _pid_alive(holder.pid, holder.pid_start):
            return "alive"  # on another host we cannot tell, so we never take over
        if not self.network_fs and self._flock_held():
            return "alive"
        return "stale"

    def _flock_held(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False  # flock unsupported here: rely on the pid
        finally:
            os.close(fd)  # also drops our flock if we got it
        return False

    def _take_over(self, holder: LockHolder) -> bool:
        """Remove the stale lock file ``holder`` (see the module docstring); True if removed."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            gfd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.stat(guard).st_mtime > GUARD_STALE_SECONDS:
                    os.unlink(guard)
            time.sleep(0.01)
            return False
        try:
            if not _same_file(self.path, holder):
                return False
            aside = self.path.with_name(f"{self.path.name}.stale.{secrets.token_hex(6)}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                return False
            if not _same_file(aside, holder):
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)  # not ours to remove: put it back
                os.unlink(aside)
                return False
            os.unlink(aside)
            return True
        finally:
            os.close(gfd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)

    def _error(self, holder: LockHolder, waited: float | None = None) -> LockError:
        folder = self.path.parent
        root = folder.parent if folder.name == ".stagewise" else folder
        if holder.pid is None:
            who = "an unknown process (the lock file is unreadable but still held)"
        else:
            who = f"pid {holder.pid} on host {holder.host} since {holder.started}"
        message = f"output root {root} is locked by {who}: another stagewise run is using it"
        if waited is not None:
            message += f" (gave up after waiting {waited:.0f} s)"
        hint = f"wait for it, or pass --wait; if that process is gone, delete {self.path}"
        same_host = holder.pid is not None and holder.host == self._host
        if same_host and holder.pid and not _pid_alive(holder.pid, holder.pid_start):
            hint = (
                f"pid {holder.pid} has exited but a process it started still holds the lock "
                f"(a worker?); stop it, or delete {self.path}"
            )
        return LockError(message, hint=hint)
