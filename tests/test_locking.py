"""Two runs at once (SPEC 7): one run at a time per output root, through the command line.

A slow one-stage pipeline (20 items, each sleeping ``ITEM_SLEEP`` seconds) runs in the
background while a second command starts on the same output root. Every body appends
``slow <sim> <RUN_TAG>`` to ``calls.log``, so the order of the two runs' items is on record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import CliResult, Project

STAGES = """
import os
import time
from pathlib import Path

from stagewise import Item, stage

LOG = Path(__file__).with_name("calls.log")


@stage(outputs={"out": "slow/{sim:02d}.txt"}, over=("sim",))
def slow(item: Item, *, salt: int = 0) -> str:
    with open(LOG, "a") as fh:
        fh.write(f"slow {item.sim} {os.environ.get('RUN_TAG', '-')}\\n")
    time.sleep(float(os.environ.get("ITEM_SLEEP", "0")))
    return f"{item.sim} {salt}"
"""

PIPELINE = """
pipeline: locking
stages_from: [stages.py]
output: out
dims: {sim: 20}
"""

OUTPUTS = [f"slow/{sim:02d}.txt" for sim in range(20)]

Start = Callable[..., subprocess.Popen[str]]


def calls(project: Project) -> list[tuple[str, str]]:
    """(sim, run tag) of every body executed so far, in order."""
    log = project.root / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(line.split()[1], line.split()[2]) for line in lines]


def by(project: Project, tag: str) -> list[str]:
    return [sim for sim, run_tag in calls(project) if run_tag == tag]


def wait_for_items(project: Project, tag: str, count: int, process: subprocess.Popen[str]) -> None:
    """Poll until the run tagged ``tag`` has started ``count`` items (it holds the lock by then)."""
    deadline = time.monotonic() + 60
    while len(by(project, tag)) < count:
        assert process.poll() is None, f"the run ended early with exit {process.returncode}"
        assert time.monotonic() < deadline, f"the run never started {count} items"
        time.sleep(0.02)


def cli(project: Project, *args: str, tag: str) -> CliResult:
    return project.cli(*args, env={"RUN_TAG": tag, "ITEM_SLEEP": "0"})


@pytest.fixture
def slow_project(project: Project) -> Project:
    project.stages(STAGES)
    project.pipeline(PIPELINE)
    return project


@pytest.fixture
def start(slow_project: Project) -> Iterator[Start]:
    """Start ``stagewise run`` in the background, in its own session; stopped at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start_run(*args: str, tag: str, sleep: float) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "stagewise", "run", *args],
            cwd=slow_project.root,
            env=dict(os.environ, RUN_TAG=tag, ITEM_SLEEP=str(sleep)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start_run
    for process in started:
        # the whole session: a killed run's worker processes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)


def stop(process: subprocess.Popen[str]) -> None:
    """Ctrl-C the run (its whole session) and wait for it."""
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=60)


def test_second_run_on_the_same_output_exits_2_naming_the_holders_pid_and_host(slow_project, start):
    first = start(tag="first", sleep=1.0)
    wait_for_items(slow_project, "first", 1, first)
    second = cli(slow_project, "run", tag="second")
    assert first.poll() is None, "the first run ended before the second tried the lock"
    assert second.code == 2, second.describe()
    assert f"pid {first.pid}" in second.stderr
    assert socket.gethostname() in second.stderr
    assert "Traceback" not in second.output
    assert by(slow_project, "second") == []
    stop(first)


def test_second_run_with_wait_runs_after_the_first_finishes(slow_project, start):
    first = start(tag="first", sleep=0.4)
    wait_for_items(slow_project, "first", 1, first)
    second = start("--wait", "--slow.salt", "1", tag="second", sleep=0)
    _, second_err = second.communicate(timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    order = [tag for _, tag in calls(slow_project)]
    assert order == ["first"] * 20 + ["second"] * 20, "the two runs' items interleaved"
    assert (slow_project.root / "out/slow/07.txt").read_text() == "7 1"


def test_lock_left_by_a_killed_run_is_taken_over_by_the_next_run(slow_project, start):
    first = start(tag="first", sleep=0.3)
    wait_for_items(slow_project, "first", 2, first)
    first.send_signal(signal.SIGKILL)  # the coordinator only, as a crash would
    first.wait(timeout=60)
    lock = slow_project.root / "out/.stagewise/lock"
    assert lock.exists(), "the killed run left no lock: nothing to take over"
    assert str(first.pid) in lock.read_text()

    after = cli(slow_project, "run", tag="after")
    assert after.code == 0, after.describe()
    for rel in OUTPUTS:
        assert (slow_project.root / "out" / rel).read_text() == f"{int(rel[5:7])} 0"
    assert not lock.exists(), "the run that took the lock over did not release it"


def test_runs_on_different_output_roots_do_not_block_each_other(slow_project, start):
    first = start(tag="first", sleep=1.0)
    wait_for_items(slow_project, "first", 1, first)
    other = cli(slow_project, "run", "--output", "elsewhere", tag="other")
    assert first.poll() is None, "the first run ended before the second started"
    assert other.code == 0, other.describe()
    assert sorted(by(slow_project, "other")) == sorted(f"{sim}" for sim in range(20))
    stop(first)


def test_status_during_a_run_reports_without_waiting_for_the_lock(slow_project, start):
    first = start(tag="first", sleep=1.0)
    wait_for_items(slow_project, "first", 1, first)
    status = cli(slow_project, "status", tag="status")
    assert first.poll() is None, "the run ended before status ran"
    assert status.code == 0, status.describe()
    assert status.line_with("slow").split()[1] == "20"
    stop(first)


def test_a_dry_run_during_a_run_exits_0_and_runs_nothing(slow_project, start):
    first = start(tag="first", sleep=1.0)
    wait_for_items(slow_project, "first", 1, first)
    dry = cli(slow_project, "run", "--dry-run", tag="dry")
    assert first.poll() is None, "the run ended before the dry run"
    assert dry.code == 0, dry.describe()
    assert "would run" in dry.line_with("slow")
    assert by(slow_project, "dry") == []
    stop(first)


def test_lock_is_released_when_a_run_ends(slow_project):
    result = cli(slow_project, "run", tag="only")
    assert result.code == 0, result.describe()
    assert [p.name for p in (slow_project.root / "out/.stagewise").iterdir() if "lock" in p.name] == []
