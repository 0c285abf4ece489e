"""Atomic writes: a handler writes a hidden temporary file beside the output, then it is renamed.

A reader therefore sees either the old file or the complete new one, never half a file, and
a run killed mid-write leaves only a temporary name that no later run mistakes for an output.
Temporary names keep the output's extensions (``out/.0001.<pid>.tmp.npy``) because many
libraries choose the format, or append a suffix, from the name they are given.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from stagewise.errors import AssetIOError, StagewiseError
from stagewise.handlers.base import Handler, handler_path

__all__ = ["is_temp_name", "remove_orphan_temps", "temp_path_for", "temp_pid", "write_atomic"]

FSYNC_ENV = "STAGEWISE_FSYNC"

# ".<stem>.<pid>.tmp<suffixes>"; the stem is greedy so a stem containing dots still parses.
_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)\.tmp(?P<suffixes>\..*)?")


def temp_path_for(path: Path) -> Path:
    """Return the temporary path used while writing ``path``: hidden, same folder, same suffixes.

    ``out/0001.npy`` → ``out/.0001.<pid>.tmp.npy``; ``x.fits.gz`` → ``.x.<pid>.tmp.fits.gz``.
    The pid tells :func:`remove_orphan_temps` whether the writer is still alive.
    """
    return Path(_temp_name(os.fspath(Path(path))))


def _temp_name(path: str) -> str:
    """`temp_path_for` on a normalised ``str`` path (no pathlib: it runs once per output)."""
    return _split_temp(path)[1]


def _split_temp(path: str) -> tuple[str, str]:
    """(the folder part of ``path`` with its trailing separator, or "", and its temporary name)."""
    cut = path.rfind(os.sep) + 1
    if os.altsep:
        cut = max(cut, path.rfind(os.altsep) + 1)
    folder, name = path[:cut], path[cut:]
    dot = name.find(".", 1)  # from 1: the dot of a hidden name is part of the stem
    stem, suffixes = (name, "") if dot < 0 else (name[:dot], name[dot:])
    return folder, f"{folder}.{stem}.{os.getpid()}.tmp{suffixes}"


def temp_pid(name: str) -> int | None:
    """Return the pid recorded in a temporary file name, or None if ``name`` is not one."""
    match = _TEMP_NAME.fullmatch(name)
    return int(match["pid"]) if match else None


def is_temp_name(name: str) -> bool:
    """Tell whether a file name is a temporary name made by :func:`temp_path_for`."""
    return temp_pid(name) is not None


_FSYNC_KEY = os.fsencode(FSYNC_ENV)


def _fsync_requested() -> bool:
    # Asked per output. os.environ.get costs ~2 µs for an unset name (a KeyError inside);
    # on POSIX its byte dict answers the common "unset" in 50 ns.
    data = getattr(os.environ, "_data", None) if os.name == "posix" else None
    if isinstance(data, dict) and _FSYNC_KEY not in data:
        return False
    return os.environ.get(FSYNC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _fsync(path: str, *, directory: bool = False) -> None:
    if directory and os.name == "nt":
        return  # Windows cannot open a directory to fsync it; its renames are journaled
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(
    handler: Handler, path: str | os.PathLike[str], data: Any, *, name: str | None = None
) -> None:
    """Write ``data`` to ``path`` through ``handler``, atomically.

    Creates the parent folders, lets the handler write a temporary file in the same folder,
    then renames it over ``path`` (``os.replace``). On any failure the temporary file is
    removed and an existing ``path`` is left untouched.

    No fsync by default: the rename is atomic for other processes, and a killed process loses
    nothing already handed to the kernel (the page cache survives it), so only a machine crash
    or power loss could leave an empty or partial file. Even then the state store holds each
    output's fingerprint, so such a file no longer matches its record and the item reruns.
    Set ``STAGEWISE_FSYNC=1`` to fsync the file and its folder anyway (sites that want the
    bytes on disk when the item is recorded); it costs a disk flush per output.

    Args:
        handler: the handler that writes the format. It is given a ``Path``, or the ``str``
            itself when it declares ``str`` paths (see `handler_path`).
        path: the final output path.
        data: what to write.
        name: the handler's name, for error messages (default: its class name).

    Raises:
        AssetIOError: the handler failed (the original exception is chained) or wrote nothing.
        StagewiseError: other stagewise errors raised by the handler pass through unchanged.
    """
    target = path if isinstance(path, str) else os.fspath(Path(path))
    folder, temp = _split_temp(target)
    fsync = _fsync_requested()
    try:
        if folder and folder not in _made:
            os.makedirs(folder, exist_ok=True)
            _remember(folder)
        _write(handler, temp, data, folder)
        if fsync:
            _check_written(handler, target, temp, name)
            _fsync(temp)
        try:
            os.replace(temp, target)
        except FileNotFoundError:
            _check_written(handler, target, temp, name)
            raise
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        error = _restated(exc, handler, target, name)
        if error is exc:
            raise
        raise error from exc
    if fsync:
        _fsync(folder or os.curdir, directory=True)


_made: set[str] = set()
"""Folders that existed when this process last wrote into them: no ``makedirs`` per output."""


def _remember(folder: str) -> None:
    if len(_made) >= 4096:
        _made.clear()  # bounded: one folder per item would grow it without limit
    _made.add(folder)


def _write(handler: Handler, temp: str, data: Any, folder: str) -> None:
    given = handler_path(handler, temp)
    try:
        handler.write(given, data)
    except Exception:
        if not folder or os.path.isdir(folder):
            raise
        # Removed since we made it (a clean between two runs of this process): the handler
        # failed opening its file, before using the data, so make the folder and write again.
        _made.discard(folder)
        os.makedirs(folder, exist_ok=True)
        handler.write(given, data)
        _remember(folder)


def _check_written(handler: Handler, target: str, temp: str, name: str | None) -> None:
    if not os.path.lexists(temp):
        label = name or type(handler).__qualname__
        raise AssetIOError(
            f"could not write {target}: handler '{label}' did not create the file it was given",
            path=target,
            hint="a handler must write exactly the path passed to write(path, data)",
        ) from None


def _restated(exc: BaseException, handler: Handler, target: str, name: str | None) -> BaseException:
    """The exception to raise for a failed write: one that names the output."""
    label = name or type(handler).__qualname__
    if isinstance(exc, AssetIOError) and exc.path == target:
        return exc
    if isinstance(exc, AssetIOError):
        # Raised inside the handler about the temporary name: restate it for the output.
        return AssetIOError(
            f"could not write {target} with handler '{label}': {exc.message}",
            path=target,
            hint=exc.hint,
        )
    if isinstance(exc, StagewiseError) or not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt and friends, and errors that already say what to do
    return AssetIOError(
        f"could not write {target} with handler '{label}': {type(exc).__name__}: {exc}",
        path=target,
    )


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours: another thread may be writing it right now
    if pid <= 0:
        return False
    if os.name == "nt":
        return True  # os.kill would terminate the process there; keep the file instead
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # PermissionError: it exists, under another user
    return True


def remove_orphan_temps(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Remove temporary files left in ``folder`` by writers that are no longer alive.

    A temporary file whose pid is a live process (including this one) is kept: it may be
    being written. Pids are only meaningful on this machine, so with several hosts writing to
    a shared filesystem call this while holding the output root's lock, when no other run
    can be writing. The ``.stagewise`` folder is never entered.

    Args:
        folder: the folder to clean; a missing folder is fine.
        recursive: also clean its subfolders (without following symlinks).

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != ".stagewise"] if recursive else []
        for filename in filenames:
            pid = temp_pid(filename)
            if pid is None or _pid_alive(pid):
                continue
            candidate = Path(dirpath) / filename
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return sorted(removed)
