"""Tests of atomic writes, temporary names and the cleaning of orphans."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagewise.errors import AssetIOError, HandlerError
from stagewise.handlers import (
    get_handler,
    handler_for_path,
    is_temp_name,
    remove_orphan_temps,
    temp_path_for,
    temp_pid,
    write_atomic,
)

PID = os.getpid()


def _dead_pid() -> int:
    """Return the pid of a process that has exited (and been reaped)."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


class PartialThenFail:
    """Writes some bytes, then fails, as a crashing library would."""

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: Any) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk on fire")


class Interrupted:
    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: Any) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt


class WritesElsewhere:
    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: Any) -> None:
        Path(str(path) + ".npy").write_bytes(b"x")


class Raw:
    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: Any) -> None:
        path.write_bytes(data)


# --- temporary names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "temp"),
    [
        ("out/0001.npy", f"out/.0001.{PID}.tmp.npy"),
        ("x.fits.gz", f".x.{PID}.tmp.fits.gz"),
        ("a/README", f"a/.README.{PID}.tmp"),
        (".hidden.json", f"..hidden.{PID}.tmp.json"),
    ],
)
def test_temp_name_is_hidden_and_keeps_every_suffix(path: str, temp: str) -> None:
    made = temp_path_for(Path(path))
    assert made == Path(temp)
    assert is_temp_name(made.name) and temp_pid(made.name) == PID


@pytest.mark.parametrize(
    "name",
    ["0001.npy", ".hidden", ".x.tmp.npy", ".x.12.tmpfoo", "x.12.tmp.npy", ".x.-1.tmp"],
)
def test_ordinary_names_are_not_temp_names(name: str) -> None:
    assert not is_temp_name(name)
    assert temp_pid(name) is None


_NAME_CHARS = st.sampled_from("abcXYZ019_-.")


@given(st.text(_NAME_CHARS, min_size=1, max_size=30).filter(lambda n: n not in {".", ".."}))
def test_any_temp_name_is_recognised_and_keeps_the_extension(name: str) -> None:
    temp = temp_path_for(Path("d") / name)
    assert temp.parent == Path("d")
    assert temp.name.startswith(".") and temp.name.endswith(
        name[name.find(".", 1) :] if "." in name[1:] else ".tmp"
    )
    assert temp_pid(temp.name) == PID


def test_temp_name_keeps_the_handler_chosen_by_extension() -> None:
    for name in ["0001.npy", "map.030.fits.gz", "t.csv"]:
        assert handler_for_path(temp_path_for(Path(name))) == handler_for_path(name)


# --- write_atomic ----------------------------------------------------------------------------


def test_write_creates_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.bin"
    write_atomic(Raw(), target, b"data")
    assert target.read_bytes() == b"data"
    assert os.listdir(target.parent) == ["x.bin"]


def test_npy_temp_keeps_its_extension_so_numpy_adds_none(tmp_path: Path) -> None:
    write_atomic(get_handler("npy"), tmp_path / "0001.npy", np.arange(4))
    assert os.listdir(tmp_path) == ["0001.npy"]


def test_failed_write_leaves_no_temp_and_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"previous")
    with pytest.raises(AssetIOError, match="disk on fire") as info:
        write_atomic(PartialThenFail(), target, b"new", name="partial")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.path == str(target)
    assert "handler 'partial'" in str(info.value) and str(target) in str(info.value)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(AssetIOError):
        write_atomic(PartialThenFail(), tmp_path / "x.bin", b"new")
    assert os.listdir(tmp_path) == []


def test_interrupt_is_not_wrapped_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        write_atomic(Interrupted(), tmp_path / "x.bin", b"new")
    assert os.listdir(tmp_path) == []


def test_stagewise_errors_pass_through(tmp_path: Path) -> None:
    class Refuses(Raw):
        def write(self, path: Path, data: Any) -> None:
            raise HandlerError("not today")

    with pytest.raises(HandlerError, match="not today"):
        write_atomic(Refuses(), tmp_path / "x.bin", b"")


def test_handler_that_writes_another_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AssetIOError, match="did not create the file"):
        write_atomic(WritesElsewhere(), tmp_path / "x.bin", b"")
    assert not (tmp_path / "x.bin").exists()


def test_fsync_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    write_atomic(Raw(), tmp_path / "a.bin", b"1")
    assert calls == []
    monkeypatch.setenv("STAGEWISE_FSYNC", "1")
    write_atomic(Raw(), tmp_path / "b.bin", b"1")
    assert len(calls) == (2 if os.name != "nt" else 1)  # the file, then its folder


# --- orphans ---------------------------------------------------------------------------------


def test_orphans_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    orphan = tmp_path / "sky" / f".0001.{dead}.tmp.npy"
    ours = tmp_path / "sky" / f".0002.{PID}.tmp.npy"
    alive = tmp_path / f".x.{os.getppid()}.tmp.json"
    output = tmp_path / "sky" / "0003.npy"
    state = tmp_path / ".stagewise" / f".db.{dead}.tmp.json"
    for path in (orphan, ours, alive, output, state):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert remove_orphan_temps(tmp_path) == [orphan]
    assert not orphan.exists()
    assert ours.exists() and alive.exists() and output.exists() and state.exists()


def test_orphan_cleaning_can_stay_in_one_folder(tmp_path: Path) -> None:
    dead = _dead_pid()
    top, nested = tmp_path / f".a.{dead}.tmp.npy", tmp_path / "n" / f".b.{dead}.tmp.npy"
    nested.parent.mkdir()
    top.write_bytes(b"")
    nested.write_bytes(b"")
    assert remove_orphan_temps(tmp_path, recursive=False) == [top]
    assert nested.exists()


def test_orphan_cleaning_of_a_missing_folder_is_a_no_op(tmp_path: Path) -> None:
    assert remove_orphan_temps(tmp_path / "nothing") == []


class Recording:
    """Records the type of path it is given (a user handler: the protocol promises a Path)."""

    def __init__(self) -> None:
        self.given: list[type] = []

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: Any) -> None:
        self.given.append(type(path))
        path.write_bytes(data)


def test_a_user_handler_is_given_a_path_and_a_builtin_the_str(tmp_path: Path) -> None:
    user = Recording()
    write_atomic(user, str(tmp_path / "a.bin"), b"x")
    assert user.given == [type(tmp_path)]
    txt = get_handler("txt")
    assert getattr(txt, "_stagewise_str_paths", False)
    write_atomic(txt, str(tmp_path / "b.txt"), "text")
    assert txt.read(str(tmp_path / "b.txt")) == txt.read(tmp_path / "b.txt") == "text"


def test_a_folder_removed_between_two_writes_is_made_again(tmp_path: Path) -> None:
    # The folder is remembered after the first write; a clean between two runs of one process
    # (tests, notebooks) removes it, and the next write must still succeed.
    target = tmp_path / "out" / "x.bin"
    write_atomic(Raw(), target, b"1")
    shutil.rmtree(tmp_path / "out")
    write_atomic(Raw(), target, b"2")
    assert target.read_bytes() == b"2"
    assert os.listdir(target.parent) == ["x.bin"]


def test_a_failing_handler_in_a_removed_folder_still_fails_naming_the_output(tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.bin"
    write_atomic(Raw(), target, b"1")
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(AssetIOError, match="disk on fire") as info:
        write_atomic(PartialThenFail(), target, b"2")
    assert info.value.path == str(target)
    assert os.listdir(target.parent) == []


def test_a_handler_writing_nothing_is_an_error_with_fsync_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEWISE_FSYNC", "1")
    with pytest.raises(AssetIOError, match="did not create the file"):
        write_atomic(WritesElsewhere(), tmp_path / "x.bin", b"x")
