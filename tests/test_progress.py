"""Run progress: plain lines off a terminal (fake clock), rich bars on one, nothing with --no-progress.

Progress is cosmetic: whatever goes wrong, it must not raise, and it never writes to stdout.
"""

from __future__ import annotations

import io
import sys
import timeit
from typing import Any

import pytest

from stagewise.run.progress import (
    DEFAULT_INTERVAL,
    INTERVAL_ENV,
    NullProgress,
    PlainProgress,
    RichProgress,
    interval_from_env,
    make_progress,
)
from stagewise.run.task import Outcome


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class BrokenStream(io.StringIO):
    """A stream every write to fails (a closed pipe)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("closed")

    def isatty(self) -> bool:
        raise OSError("gone")


def outcomes(stage: str, status: str, count: int) -> list[Outcome]:
    return [Outcome(stage, f"[{i}]", status) for i in range(count)]  # type: ignore[arg-type]


def feed(progress: Any, items: list[Outcome]) -> None:
    for outcome in items:
        progress.update(outcome)


@pytest.fixture
def terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment in which rich takes a terminal for one."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(name, raising=False)


# --- plain lines ------------------------------------------------------------------------------------


def test_plain_lines_come_at_most_once_per_interval_with_counts_rate_and_eta() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = PlainProgress(stream, interval=10, clock=clock)

    progress.start_stage("observe", 500)
    feed(progress, outcomes("observe", "uptodate", 40))
    clock.now = 5
    feed(progress, outcomes("observe", "done", 59))
    assert stream.getvalue() == ""  # nothing due before one interval
    clock.now = 10
    feed(progress, outcomes("observe", "failed", 1))
    clock.now = 15
    feed(progress, outcomes("observe", "done", 1))
    clock.now = 20
    feed(progress, outcomes("observe", "rejected", 1))

    assert stream.getvalue().splitlines() == [
        "observe: 100/500 items, 1 failed, 40 up to date, 6.0 items/s, ETA 1m06s",
        "observe: 102/500 items, 1 failed, 1 rejected, 40 up to date, 3.1 items/s, ETA 2m08s",
    ]


def test_plain_prints_a_final_line_per_stage_that_ran_items() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = PlainProgress(stream, interval=10, clock=clock)

    progress.start_stage("clean", 3)
    feed(progress, outcomes("clean", "uptodate", 3))
    progress.end_stage("clean")  # nothing ran: the run summary says it all
    progress.start_stage("observe", 500)
    clock.now = 5
    feed(progress, outcomes("observe", "done", 61))
    clock.now = 25
    feed(progress, outcomes("observe", "done", 1))
    progress.end_stage("observe")  # stopped early (fail-fast, Ctrl-C)
    clock.now = 30
    progress.start_stage("summarize", 2)
    clock.now = 32
    feed(progress, outcomes("summarize", "done", 2))
    progress.end_stage("summarize")
    progress.close()

    assert stream.getvalue().splitlines() == [
        "observe: 62/500 items, 2.5 items/s, ETA 2m56s",
        "observe: stopped at 62/500 items after 25.0s, 2.5 items/s",
        "summarize: finished 2/2 items in 2.0s, 1.0 items/s",
    ]


def test_plain_close_ends_stages_still_open() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with PlainProgress(stream, interval=10, clock=clock) as progress:
        progress.start_stage("train", 4)
        clock.now = 60
        feed(progress, outcomes("train", "done", 1))
        clock.now = 61
        feed(progress, outcomes("train", "done", 1))
        clock.now = 120

    assert stream.getvalue().splitlines() == [
        "train: 1/4 items, 1.0 items/min, ETA 3m00s",
        "train: stopped at 2/4 items after 2m00s, 1.0 items/min",
    ]


def test_plain_counts_outcomes_of_a_stage_never_started() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = PlainProgress(stream, interval=0, clock=clock)

    clock.now = 1
    feed(progress, outcomes("fit", "done", 1))
    clock.now = 2
    feed(progress, [Outcome("fit", "[1]", "pending")])

    assert stream.getvalue().splitlines() == ["fit: 1 items", "fit: 2 items, 1.0 items/s"]


def test_interval_zero_prints_a_line_per_item() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = PlainProgress(stream, interval=0, clock=clock)
    progress.start_stage("s", 3)
    clock.now = 1
    feed(progress, outcomes("s", "done", 3))

    assert len(stream.getvalue().splitlines()) == 3


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, DEFAULT_INTERVAL),
        ("2.5", 2.5),
        ("0", 0.0),
        ("", DEFAULT_INTERVAL),
        ("soon", DEFAULT_INTERVAL),
        ("-1", DEFAULT_INTERVAL),
        ("inf", DEFAULT_INTERVAL),
        ("nan", DEFAULT_INTERVAL),
    ],
)
def test_interval_from_env(value: str | None, seconds: float) -> None:
    environ = {} if value is None else {INTERVAL_ENV: value}

    assert interval_from_env(environ) == seconds


def test_make_progress_off_a_terminal_uses_the_env_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    stream = io.StringIO()

    progress = make_progress(True, stream)
    assert isinstance(progress, PlainProgress)
    progress.start_stage("s", 2)
    progress.update(Outcome("s", "[0]", "done"))

    assert stream.getvalue().startswith("s: 1/2 items")


def test_plain_update_costs_well_under_a_microsecond_when_no_line_is_due() -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, interval=3600)
    progress.start_stage("observe", 10**9)
    outcome = Outcome("observe", "[0]", "done")
    update = progress.update

    best = min(timeit.repeat(lambda: update(outcome), number=20_000, repeat=7)) / 20_000

    assert best < 2e-6  # typically 0.2-0.5 µs; formatting a line every time would be ~5 µs
    assert stream.getvalue() == ""


# --- never raises, never stdout ---------------------------------------------------------------------


def test_progress_never_raises_on_a_broken_stream_or_odd_calls() -> None:
    for progress in (PlainProgress(BrokenStream(), interval=0), make_progress(True, BrokenStream())):
        progress.start_stage("s", 2)
        progress.update(Outcome("s", "[0]", "failed"))
        progress.update(None)  # type: ignore[arg-type]
        progress.start_stage("t", "many")  # type: ignore[arg-type]
        progress.end_stage("never started")
        progress.end_stage("s")
        progress.close()
        progress.close()


def test_no_progress_is_a_null_progress_that_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = make_progress(False, FakeTerminal())

    assert isinstance(progress, NullProgress)
    with progress as same:
        same.start_stage("s", 1)
        same.update(Outcome("s", "[0]", "done"))
        same.end_stage("s")
    assert capsys.readouterr() == ("", "")


def test_progress_writes_to_stderr_by_default_and_never_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    progress = make_progress(True)
    progress.start_stage("s", 1)
    progress.update(Outcome("s", "[0]", "done"))
    progress.close()

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "s: 1/1 items" in captured.err


# --- on a terminal ----------------------------------------------------------------------------------


def test_a_terminal_gets_rich_bars_with_counts_and_failures(terminal_env: None) -> None:
    pytest.importorskip("rich")
    stream = FakeTerminal()
    progress = make_progress(True, stream)
    assert isinstance(progress, RichProgress)

    progress.start_stage("observe", 4)
    feed(progress, outcomes("observe", "done", 3))
    feed(progress, outcomes("observe", "failed", 1))
    progress.end_stage("observe")
    progress.start_stage("summarize", 1)
    progress.close()

    text = stream.getvalue()
    assert "observe" in text
    assert "4/4" in text
    assert "1 failed" in text
    assert "summarize" in text
    assert "0/1" in text  # a stage stopped before any item finished keeps its bar


def test_rich_bars_draw_on_a_forced_terminal_console(capsys: pytest.CaptureFixture[str]) -> None:
    rich_console = pytest.importorskip("rich.console")
    buffer = io.StringIO()
    console = rich_console.Console(file=buffer, force_terminal=True, width=100)
    clock = FakeClock()

    with RichProgress(buffer, console=console, clock=clock) as progress:
        progress.start_stage("train", 10)
        clock.now = 2
        feed(progress, outcomes("train", "done", 4))
        feed(progress, outcomes("train", "uptodate", 2))
        feed(progress, outcomes("train", "rejected", 1))

    text = buffer.getvalue()
    assert "train" in text
    assert "7/10" in text
    assert "1 rejected, 2 up to date, 2.5 items/s" in text
    assert "\x1b[" in text  # drawn with terminal control codes
    assert capsys.readouterr().out == ""


def test_a_terminal_without_rich_falls_back_to_plain_lines(
    terminal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails
    monkeypatch.setenv(INTERVAL_ENV, "0")
    stream = FakeTerminal()

    progress = make_progress(True, stream)
    assert isinstance(progress, PlainProgress)
    progress.start_stage("s", 1)
    progress.update(Outcome("s", "[0]", "done"))

    assert stream.getvalue().startswith("s: 1/1 items")


def test_a_dumb_terminal_gets_plain_lines(terminal_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("TERM", "dumb")

    assert isinstance(make_progress(True, FakeTerminal()), PlainProgress)
