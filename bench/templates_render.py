"""Cost of rendering (and resolving) a path template, per item.

Run: ``PYTHONPATH=src python bench/templates_render.py``. Prints microseconds per call over
100,000 items; rendering runs once per item, so this bounds how fast large stages can be planned.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stagewise.model.templates import Template, resolve, resolve_str

N = 100_000


def per_call_us(fn: Callable[[int], object]) -> float:
    """Best of three runs of ``fn(i)`` for i in range(N), in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(N):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / N * 1e6


def main() -> None:
    """Print the cost of render, resolve and path for typical templates."""
    root = Path(tempfile.gettempdir()) / "out"
    data = str(Path(tempfile.gettempdir()) / "raw")
    sky = Template("sky/{split}/{sim:04d}.npy")
    model = Template("models/{stage}/{freq}_{sim:04d}.pt")
    mask = Template("{data}/mask.npy")
    paths = {"data": data}
    roots = (root, Path(data))
    tags = [{"split": "train", "sim": i, "freq": 100, "stage": "fit"} for i in range(N)]
    rendered = [sky.render(t) for t in tags]
    cases: dict[str, Callable[[int], object]] = {
        "render sky/{split}/{sim:04d}.npy": lambda i: sky.render(tags[i]),
        "render models/{stage}/{freq}_{sim:04d}.pt": lambda i: model.render(tags[i]),
        "render {data}/mask.npy (path root)": lambda i: mask.render(tags[i], paths),
        "resolve a rendered path": lambda i: resolve(rendered[i], default_root=root, allowed_roots=roots),
        "resolve_str (no Path object)": lambda i: resolve_str(
            rendered[i], default_root=root, allowed_roots=roots
        ),
        "path (render + resolve)": lambda i: sky.path(
            tags[i], paths=paths, default_root=root, allowed_roots=roots
        ),
        "match a rendered path": lambda i: sky.match(rendered[i]),
    }
    for label, fn in cases.items():
        print(f"{label:45s} {per_call_us(fn):6.2f} µs/call")


if __name__ == "__main__":
    main()
