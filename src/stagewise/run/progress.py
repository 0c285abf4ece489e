"""Progress of a run on stderr: a live bar per stage on a terminal, periodic plain lines otherwise.

Progress is cosmetic: no method here raises (a failing display is silently dropped), nothing is
written to stdout, and rich is imported only when stderr is a terminal. Off a terminal (CI logs,
files) rich would print nothing until the end, so `PlainProgress` prints its own line at most
every ``STAGEWISE_PROGRESS_INTERVAL`` seconds (default 10) and a final line per stage::

    observe: 120/500 items, 2 failed, 35.1 items/s, ETA 10.8s
    observe: finished 500/500 items in 14.2s, 2 failed, 35.2 items/s

The rate counts the items that ran (done, failed, rejected); items found up to date or skipped
arrive all at once when a stage starts and would inflate it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from stagewise.run.task import UpToDate

if TYPE_CHECKING:
    from types import TracebackType

    from stagewise.run.task import Outcome

__all__ = [
    "DEFAULT_INTERVAL",
    "INTERVAL_ENV",
    "NullProgress",
    "PlainProgress",
    "ProgressSink",
    "RichProgress",
    "interval_from_env",
    "make_progress",
]

DEFAULT_INTERVAL = 10.0
"""Seconds between two plain progress lines."""

INTERVAL_ENV = "STAGEWISE_PROGRESS_INTERVAL"
"""Environment variable overriding `DEFAULT_INTERVAL` (seconds; 0 prints a line per item)."""

_RAN = ("done", "failed", "rejected")
_SHOWN = (("failed", "failed"), ("rejected", "rejected"), ("skipped", "skipped"), ("uptodate", "up to date"))


class ProgressSink(Protocol):
    """What the coordinator reports to: stage starts and ends, and each item's outcome."""

    def start_stage(self, qname: str, total: int) -> None:
        """A stage starts with ``total`` items (outcomes of up-to-date items included)."""

    def update(self, outcome: Outcome | UpToDate) -> None:
        """One item finished (any status), or a count of items found up to date."""

    def end_stage(self, qname: str) -> None:
        """A stage finished or stopped."""

    def close(self) -> None:
        """The run is over: end open stages and release the display."""

    def __enter__(self) -> ProgressSink:
        """Use as ``with make_progress(...) as progress:``; ``close`` on the way out."""

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close."""


class _Base:
    """Context-manager support shared by the displays: ``with make_progress(...) as p:``."""

    def close(self) -> None:
        """Release the display."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NullProgress(_Base):
    """No display (``--no-progress``): the same methods, doing nothing."""

    def start_stage(self, qname: str, total: int) -> None:
        """Nothing."""

    def update(self, outcome: Outcome | UpToDate) -> None:
        """Nothing."""

    def end_stage(self, qname: str) -> None:
        """Nothing."""


class _Stage:
    """Counts of one stage's outcomes, by status."""

    __slots__ = ("counts", "qname", "started", "total")

    def __init__(self, qname: str, total: int, started: float) -> None:
        self.qname = qname
        self.total = total
        self.started = started
        self.counts: defaultdict[str, int] = defaultdict(int)

    def finished(self) -> int:
        return sum(self.counts.values())

    def ran(self) -> int:
        return sum(self.counts.get(status, 0) for status in _RAN)

    def rate(self, now: float) -> float:
        """Items run per second since the stage started (0 when none yet)."""
        elapsed = now - self.started
        return self.ran() / elapsed if elapsed > 0 else 0.0

    def breakdown(self) -> list[str]:
        """``2 failed``, ``40 up to date``...: the statuses worth a word, when present."""
        return [f"{self.counts[key]} {label}" for key, label in _SHOWN if self.counts.get(key)]

    def eta(self, now: float) -> str:
        """Time left at the current rate (empty when unknown)."""
        rate = self.rate(now)
        left = self.total - self.finished()
        return f"ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""


class _Tracker(_Base):
    """Stage bookkeeping shared by the plain and the rich display."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._stages: dict[str, _Stage] = {}
        self._current: _Stage | None = None

    def _new_stage(self, qname: str, total: int) -> _Stage:
        stage = _Stage(qname, max(0, int(total)), self._clock())
        self._stages[qname] = stage
        self._current = stage
        return stage

    def _find(self, qname: str) -> _Stage:
        """The stage of an outcome; one never started is started with an unknown total."""
        stage = self._stages.get(qname)
        if stage is None:
            stage = self._begin(qname, 0)
        self._current = stage
        return stage

    def _begin(self, qname: str, total: int) -> _Stage:
        """Start a stage: bookkeeping, and whatever the display shows (overridden)."""
        return self._new_stage(qname, total)

    def _count(self, outcome: Outcome | UpToDate) -> _Stage:
        """Count an outcome in its stage (the common case: the current stage, one dict update)."""
        stage = self._current
        if stage is None or stage.qname != outcome.stage:
            stage = self._find(outcome.stage)
        if type(outcome) is UpToDate:
            stage.counts["uptodate"] += outcome.count
        else:
            stage.counts[outcome.status] += 1
        return stage

    def end_stage(self, qname: str) -> None:
        """End a stage (overridden by each display)."""
        self._stages.pop(qname, None)

    def close(self) -> None:
        """End every stage still open."""
        for qname in list(self._stages):
            self.end_stage(qname)


class PlainProgress(_Tracker):
    """Plain lines for logs: one at most every ``interval`` seconds, and one at each stage's end.

    Args:
        stream: where to write (stderr).
        interval: seconds between two lines (see `interval_from_env`).
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        stream: TextIO,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self._stream = stream
        self._interval = interval
        self._due = math.inf

    def start_stage(self, qname: str, total: int) -> None:
        """Start counting a stage; its first line is due one interval from now."""
        with contextlib.suppress(Exception):
            self._begin(qname, total)

    def _begin(self, qname: str, total: int) -> _Stage:
        stage = self._new_stage(qname, total)
        self._due = stage.started + self._interval
        return stage

    def update(self, outcome: Outcome | UpToDate) -> None:
        """Count an outcome; print a line when one is due (a dict update and a clock read otherwise)."""
        try:
            stage = self._count(outcome)
            now = self._clock()
            if now >= self._due:
                self._due = now + self._interval
                self._write(self._line(stage, now))
        except Exception:
            pass

    def end_stage(self, qname: str) -> None:
        """Print the stage's final line (unless nothing ran in it)."""
        try:
            stage = self._stages.pop(qname, None)
            if stage is self._current:
                self._current = None
            if stage is not None and stage.ran():
                self._write(self._final(stage, self._clock()))
        except Exception:
            pass

    def _line(self, stage: _Stage, now: float) -> str:
        finished = stage.finished()
        head = f"{finished}/{stage.total} items" if stage.total else f"{finished} items"
        parts = [head, *stage.breakdown(), _rate(stage.rate(now)), stage.eta(now)]
        return f"{stage.qname}: " + ", ".join(p for p in parts if p)

    def _final(self, stage: _Stage, now: float) -> str:
        finished, elapsed = stage.finished(), _duration(now - stage.started)
        total = f"/{stage.total}" if stage.total else ""
        if stage.total and finished < stage.total:
            head = f"stopped at {finished}{total} items after {elapsed}"
        else:
            head = f"finished {finished}{total} items in {elapsed}"
        parts = [head, *stage.breakdown(), _rate(stage.rate(now))]
        return f"{stage.qname}: " + ", ".join(p for p in parts if p)

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


class RichProgress(_Tracker):
    """A live bar per stage (items, failures so far, rate, ETA) drawn by rich on a terminal.

    ``update`` only counts, as the plain display does; the bars read the counts each time rich
    redraws (5 times a second, from its own thread), so a stage of 50,000 up-to-date items
    costs no more than in a log.

    Args:
        stream: the terminal to draw on (stderr).
        console: a rich ``Console`` to draw with (default: one on ``stream``).
        clock: a monotonic clock.

    Raises:
        ImportError: rich is not installed (`make_progress` then falls back to plain lines).
    """

    def __init__(
        self, stream: TextIO, console: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        super().__init__(clock)
        self.console = console if console is not None else Console(file=stream)
        self._bars = _bars_class()(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            redirect_stdout=False,  # rich would send stdout (data) to our stream
            refresh_per_second=5,
        )
        self._bars.before_render = self._sync
        self._lock = threading.Lock()  # a redraw must not undo a stage's final state
        self._tasks: dict[str, Any] = {}
        self._started = False

    def start_stage(self, qname: str, total: int) -> None:
        """Add the stage's bar."""
        with contextlib.suppress(Exception):
            self._begin(qname, total)

    def _begin(self, qname: str, total: int) -> _Stage:
        stage = self._new_stage(qname, total)
        self._tasks[qname] = self._bars.add_task(qname, total=stage.total or None, info="")
        if not self._started:
            self._started = True
            self._bars.start()
        return stage

    def update(self, outcome: Outcome | UpToDate) -> None:
        """Count an outcome (the bar shows it at the next redraw)."""
        with contextlib.suppress(Exception):
            self._count(outcome)

    def end_stage(self, qname: str) -> None:
        """Leave the stage's bar at its final count, its clock stopped."""
        try:
            with self._lock:
                stage = self._stages.pop(qname, None)
                if stage is self._current:
                    self._current = None
                if stage is not None:
                    self._show(stage, final=True)
                    self._bars.stop_task(self._tasks[qname])
        except Exception:
            pass

    def close(self) -> None:
        """End open stages and stop the live display (the bars stay on screen)."""
        try:
            super().close()
        finally:
            try:
                if self._started:
                    self._started = False
                    self._bars.stop()
            except Exception:
                pass

    def _sync(self) -> None:
        """Copy the counts of open stages into their bars (called by rich before each redraw)."""
        with self._lock:
            for stage in list(self._stages.values()):
                self._show(stage, final=False)

    def _show(self, stage: _Stage, *, final: bool) -> None:
        now = self._clock()
        rate = _rate(stage.rate(now)) if stage.ran() else ""
        info = ", ".join(p for p in [*stage.breakdown(), rate, "" if final else stage.eta(now)] if p)
        self._bars.update(self._tasks[stage.qname], completed=stage.finished(), info=info)


def _bars_class() -> Any:
    """rich's ``Progress``, calling ``before_render`` each time it draws (rich imported lazily)."""
    from rich.progress import Progress

    class _Bars(Progress):
        before_render: Callable[[], None] | None = None

        def get_renderables(self) -> Any:
            if self.before_render is not None:
                with contextlib.suppress(Exception):  # a display glitch must not stop the run
                    self.before_render()
            yield from super().get_renderables()

    return _Bars


def interval_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between plain lines: ``STAGEWISE_PROGRESS_INTERVAL`` if a number >= 0, else 10."""
    text = (os.environ if environ is None else environ).get(INTERVAL_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def make_progress(enabled: bool, stream: TextIO | None = None) -> ProgressSink:
    """The display for a run: none, rich bars on a terminal, or plain lines.

    Args:
        enabled: False for ``--no-progress``.
        stream: where progress goes (default: ``sys.stderr`` at call time); never stdout.
    """
    if not enabled:
        return NullProgress()
    try:
        stream = stream if stream is not None else sys.stderr
        if _is_terminal(stream):
            try:
                rich = RichProgress(stream)
            except Exception:  # rich missing or unusable: plain lines still work
                pass
            else:
                if rich.console.is_terminal and not rich.console.is_dumb_terminal:
                    return rich
        return PlainProgress(stream, interval_from_env())
    except Exception:
        return NullProgress()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _rate(per_second: float) -> str:
    if per_second <= 0:
        return ""
    if per_second < 1:
        return f"{per_second * 60:.1f} items/min"
    return f"{per_second:.0f} items/s" if per_second >= 100 else f"{per_second:.1f} items/s"


def _duration(seconds: float) -> str:
    """``14.2s``, ``3m05s``, ``2h04m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
