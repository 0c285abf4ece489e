"""Crash safety (SPEC 6 and 7): a run killed at any moment, or interrupted, resumes exactly.

A two-stage pipeline of 40 items per stage, each body hashing a little and sleeping a few
milliseconds, runs as a ``python -m stagewise run`` subprocess. It is killed with SIGKILL at
random moments spread over a whole run, or interrupted with SIGINT (Ctrl-C), and then resumed
with a normal run. Every body appends ``<stage> <sim> <pid>`` to the log file named by
``CALLS_LOG``, so the tests know which items each process executed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Project

STAGES = """
import hashlib
import os
import time

from stagewise import Item, stage


def enter(name, item):
    with open(os.environ["CALLS_LOG"], "a") as fh:
        fh.write(f"{name} {item.sim} {os.getpid()}\\n")


def work(seed, rounds):
    digest = hashlib.sha256(seed.encode()).digest()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    time.sleep(float(os.environ.get("ITEM_SLEEP", "0.01")))
    return digest.hex() * 64


@stage(outputs={"a": "first/{sim:02d}.txt"}, over=("sim",))
def first(item: Item, *, rounds: int = 3000) -> str:
    enter("first", item)
    return work(f"first {item.sim}", rounds)


@stage(inputs={"a": "first.a"}, outputs={"b": "second/{sim:02d}.txt"}, over=("sim",))
def second(item: Item, a: str, *, rounds: int = 3000) -> str:
    enter("second", item)
    return work(a[:64], rounds)
"""

PIPELINE = """
pipeline: crash
stages_from: [stages.py]
output: out
dims: {sim: 40}
"""

ALL_ITEMS = frozenset(f"{stage} {sim}" for stage in ("first", "second") for sim in range(40))
TEMP_NAME = re.compile(r"^\..+\.tmp(\..*)?$")


@dataclass(frozen=True)
class Reference:
    """The project, the bytes of every output of a clean run, and how long a run takes per executor."""

    project: Project
    outputs: dict[str, bytes]
    duration: dict[str, float]


def command(project: Project, output: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stagewise", "run", "--output", str(project.root / output), *extra]


def environment(log: Path, sleep: float | None = None) -> dict[str, str]:
    env = dict(os.environ, CALLS_LOG=str(log), PYTHONDONTWRITEBYTECODE="1")
    if sleep is not None:
        env["ITEM_SLEEP"] = str(sleep)
    return env


def run(project: Project, output: str, log: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(project, output, *extra),
        cwd=project.root,
        env=environment(log),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def describe(done: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(done.args)}\n[exit {done.returncode}]\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


def executed(log: Path) -> list[str]:
    """``stage sim`` of every body the log shows, in order."""
    if not log.exists():
        return []
    return [" ".join(line.split()[:2]) for line in log.read_text().splitlines()]


def outputs(root: Path) -> dict[str, bytes]:
    """Every visible file under an output root, stagewise's own folder aside."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".stagewise" not in p.relative_to(root).parts and not p.name.startswith(".")
    }


def temporary_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if TEMP_NAME.match(p.name))


def recorded_done(root: Path) -> set[str]:
    """``stage sim`` of every item the state store records as done (read-only)."""
    db = root / ".stagewise" / "state.db"
    if not db.exists():
        return set()
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT stage, key FROM items WHERE status = 'done'").fetchall()
    except sqlite3.OperationalError:  # killed before the tables were created
        return set()
    finally:
        conn.close()
    return {f"{stage} {json.loads(key)[0]}" for stage, key in rows}


EXECUTORS = [("--executor", "serial"), ("--executor", "local", "-j", "3")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Clean runs, one per executor: their outputs (all equal) and durations (timed once)."""
    project = Project(tmp_path_factory.mktemp("crash"))
    project.stages(STAGES)
    project.pipeline(PIPELINE)
    found: dict[str, dict[str, bytes]] = {}
    duration: dict[str, float] = {}
    for extra in EXECUTORS:
        name = f"reference-{extra[1]}"
        log = project.root / f"{name}.log"
        begun = time.monotonic()
        done = run(project, name, log, *extra)
        duration[extra[1]] = time.monotonic() - begun
        assert done.returncode == 0, describe(done)
        assert sorted(executed(log)) == sorted(ALL_ITEMS)
        found[extra[1]] = outputs(project.root / name)
    assert len(found["serial"]) == 80
    assert found["local"] == found["serial"]
    return Reference(project, found["serial"], duration)


# --- SIGKILL at random moments --------------------------------------------------------------------


TRIALS = 20


@pytest.mark.slow
def test_run_killed_at_any_moment_resumes_to_identical_outputs_redoing_only_unrecorded_items(reference):
    rng = random.Random(1234)
    project = reference.project
    # Every other trial runs items in parallel. For each executor, one delay in each of equal
    # slices of a whole run of it, so start-up, both stages and the end are all hit.
    slices = TRIALS // len(EXECUTORS)
    trials = [
        (extra, reference.duration[extra[1]] * (i + rng.random()) / slices)
        for i in range(slices)
        for extra in EXECUTORS
    ]
    rng.shuffle(trials)
    for trial, (extra, delay) in enumerate(trials):
        where = f"trial {trial} ({' '.join(extra)}, killed after {delay:.3f} s)"
        name = f"kill{trial:02d}"
        root = project.root / name
        killed_log = project.root / f"{name}.killed.log"
        resumed_log = project.root / f"{name}.resumed.log"

        victim = subprocess.Popen(
            command(project, name, *extra),
            cwd=project.root,
            env=environment(killed_log),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)

        # What a later run might mistake for a finished output is never partial.
        for rel, data in (outputs(root) if root.exists() else {}).items():
            assert data == reference.outputs[rel], f"{where}: {rel} differs from a clean run's"
        done_at_kill = recorded_done(root)
        started = executed(killed_log)
        assert len(started) == len(set(started)), f"{where}: an item ran twice in one run"
        assert done_at_kill <= set(started), f"{where}: recorded items that never ran"

        resumed = run(project, name, resumed_log)
        assert resumed.returncode == 0, f"{where}\n{describe(resumed)}"
        assert outputs(root) == reference.outputs, f"{where}: outputs differ from a clean run's"
        assert temporary_files(root) == [], f"{where}: temporary files left"
        redone = executed(resumed_log)
        assert len(redone) == len(set(redone)), f"{where}: the resume ran an item twice"
        assert not done_at_kill & set(redone), f"{where}: items recorded done ran again"
        assert set(redone) == ALL_ITEMS - done_at_kill, f"{where}: the resume did not redo exactly the rest"


# --- SIGINT (Ctrl-C) --------------------------------------------------------------------------------


def wait_for_lines(log: Path, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Poll until the log has ``count`` lines (the run is busy with its items)."""
    deadline = time.monotonic() + timeout
    while len(executed(log)) < count:
        assert process.poll() is None, f"the run ended early with exit {process.returncode}"
        assert time.monotonic() < deadline, f"the log never reached {count} lines"
        time.sleep(0.02)


@pytest.mark.parametrize("extra", EXECUTORS, ids=["serial", "local"])
def test_ctrl_c_exits_130_and_the_next_run_does_only_the_rest(reference, extra):
    project = reference.project
    name = "interrupted-" + extra[1]
    root = project.root / name
    first_log = project.root / f"{name}.first.log"
    rest_log = project.root / f"{name}.rest.log"

    # Its own session, signalled as a group: what a terminal does on Ctrl-C.
    interrupted = subprocess.Popen(
        command(project, name, *extra),
        cwd=project.root,
        env=environment(first_log, sleep=0.05),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_lines(first_log, 6, interrupted)
    os.killpg(interrupted.pid, signal.SIGINT)
    stdout, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, f"exit {interrupted.returncode}\n{stdout}{stderr}"
    assert "Traceback" not in stderr, stderr

    started = executed(first_log)
    done_at_interrupt = recorded_done(root)
    assert done_at_interrupt, "nothing was recorded before the interruption"
    assert done_at_interrupt <= set(started)
    if extra[1] == "serial":  # only the item in the middle of its body when Ctrl-C came is lost
        assert set(started) - done_at_interrupt <= {started[-1]}

    rest = run(project, name, rest_log)
    assert rest.returncode == 0, describe(rest)
    redone = executed(rest_log)
    assert sorted(redone) == sorted(ALL_ITEMS - done_at_interrupt)
    assert outputs(root) == reference.outputs
    assert temporary_files(root) == []
