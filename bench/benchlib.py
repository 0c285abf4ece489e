"""Small helpers shared by the W1/W2/W3 benchmark scripts: timing, load, tables, peer tools.

Not part of stagewise. Peer tools (Snakemake, doit, Luigi) are looked for in a separate virtual
environment, ``$STAGEWISE_BENCH_VENV`` or ``/tmp/benchvenv`` by default, and run as subprocesses;
a tool that is not installed there is skipped.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_VENV = os.environ.get("STAGEWISE_BENCH_VENV", "/tmp/benchvenv")


def load() -> str:
    """The 1-minute load average, formatted (the machine is shared: read figures with it)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on Linux/macOS
        return "?"


def settle() -> None:
    """Flush dirty pages (``sync``) so that one contender's deletions and writes are not paid by
    the next one's timed run."""
    if hasattr(os, "sync"):
        os.sync()


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (Linux; '?' elsewhere)."""
    try:
        best, kind = "", "?"
        target = str(Path(path).resolve())
        with open("/proc/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                if (
                    len(parts) > 2
                    and (target + "/").startswith(parts[1].rstrip("/") + "/")
                    and len(parts[1]) >= len(best)
                ):
                    best, kind = parts[1], parts[2]
        return kind
    except OSError:
        return "?"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:  # None or NaN
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(value: float | None, limit: float) -> str:
    if value is None or value != value:
        return "?"
    return "OK" if value <= limit else "MISS"


# ---- peer tools -------------------------------------------------------------------------------


def peer_python(venv: str) -> str | None:
    """The peer venv's Python, or None when there is no such venv."""
    python = Path(venv) / "bin" / "python"
    return str(python) if python.exists() else None


def peer_available(venv: str, module: str) -> bool:
    """Whether ``module`` (and numpy) import in the peer venv."""
    python = peer_python(venv)
    if python is None:
        return False
    probe = subprocess.run(
        [python, "-c", f"import {module}, numpy"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def run_cmd_out(
    cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> tuple[float, str]:
    """Run a command to completion; its wall time in seconds and its stderr. Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr\n{proc.stderr[-3000:]}"
        )
    return elapsed, proc.stderr


def run_cmd(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> float:
    """Run a command to completion; its wall time in seconds. Raises on failure, with its output."""
    return run_cmd_out(cmd, cwd, env, timeout)[0]


def stagewise_counts(stderr: str) -> dict[str, int]:
    """Items done per stage, from the closing lines of ``stagewise run`` (``clean: 3 done, ...``)."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^([\w:]+): (\d+) done", stderr, re.MULTILINE)}


# ---- profiling ------------------------------------------------------------------------------


def profile(fn: Callable[[], Any], top: int = 25) -> str:
    """cProfile ``fn()``; the top entries by cumulative time, all and inside stagewise only,
    and the top entries by own time."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative")
    out.write(f"=== top {top} by cumulative time (all) ===\n")
    stats.print_stats(top)
    out.write(f"=== top {top} by cumulative time, stagewise only ===\n")
    stats.print_stats(r"stagewise[/\\]", top)
    stats.sort_stats("tottime")
    out.write(f"=== top {top} by own time (all) ===\n")
    stats.print_stats(top)
    text = out.getvalue()
    # shorten absolute paths so the table fits a terminal
    src = str(Path(__file__).resolve().parents[1] / "src") + os.sep
    return text.replace(src, "").replace(sys.prefix + os.sep, "")
