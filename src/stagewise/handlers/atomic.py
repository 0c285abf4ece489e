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
from stagewise.handlers.base import Handler

__all__ = ["is_temp_name", "remove_orphan_temps", "temp_path_for", "temp_pid", "write_atomic"]

FSYNC_ENV = "STAGEWISE_FSYNC"

# ".<stem>.<pid>.tmp<suffixes>"; the stem is greedy so a stem containing dots still parses.
_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)\.tmp(?P<suffixes>\..*)?")


def temp_path_for(path: Path) -> Path:
    """Return the temporary path used while writing ``path``: hidden, same folder, same suffixes.

    ``out/0001.npy`` → ``out/.0001.<pid>.tmp.npy``; ``x.fits.gz`` → ``.x.<pid>.tmp.fits.gz``.
    The pid tells :func:`remove_orphan_temps` whether the writer is still alive.
    """
    path = Path(path)
    name = path.name
    cut = name.find(".", 1)  # from 1: the dot of a hidden name is part of the stem
    stem, suffixes = (name, "") if cut < 0 else (name[:cut], name[cut:])
    return path.with_name(f".{stem}.{os.getpid()}.tmp{suffixes}")


def temp_pid(name: str) -> int | None:
    """Return the pid recorded in a temporary file name, or None if ``name`` is not one."""
    match = _TEMP_NAME.fullmatch(name)
    return int(match["pid"]) if match else None


def is_temp_name(name: str) -> bool:
    """Tell whether a file name is a temporary name made by :func:`temp_path_for`."""
    return temp_pid(name) is not None


def _fsync_requested() -> bool:
    return os.environ.get(FSYNC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _fsync(path: Path, *, directory: bool = False) -> None:
    if directory and os.name == "nt":
        return  # Windows cannot open a directory to fsync it; its renames are journaled
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomic(handler: Handler, path: Path, data: Any, *, name: str | None = None) -> None:
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
        handler: the handler that writes the format.
        path: the final output path.
        data: what to write.
        name: the handler's name, for error messages (default: its class name).

    Raises:
        AssetIOError: the handler failed (the original exception is chained) or wrote nothing.
        StagewiseError: other stagewise errors raised by the handler pass through unchanged.
    """
    path = Path(path)
    label = name or type(handler).__qualname__
    temp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler.write(temp, data)
        if not temp.exists():
            raise AssetIOError(
                f"could not write {path}: handler '{label}' did not create the file it was given",
                path=str(path),
                hint="a handler must write exactly the path passed to write(path, data)",
            )
        if _fsync_requested():
            _fsync(temp)
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if isinstance(exc, AssetIOError) and exc.path == str(path):
            raise
        if isinstance(exc, AssetIOError):
            # Raised inside the handler about the temporary name: restate it for the output.
            raise AssetIOError(
                f"could not write {path} with handler '{label}': {exc.message}",
                path=str(path),
                hint=exc.hint,
            ) from exc
        if isinstance(exc, StagewiseError) or not isinstance(exc, Exception):
            raise  # KeyboardInterrupt and friends, and errors that already say what to do
        raise AssetIOError(
            f"could not write {path} with handler '{label}': {type(exc).__name__}: {exc}",
            path=str(path),
        ) from exc
    if _fsync_requested():
        _fsync(path.parent, directory=True)


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
