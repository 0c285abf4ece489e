"""W3: the up-to-date check at scale — a no-op rerun of one 1:1 stage over N tiny files.

Compares, in one process, stagewise's no-op ``run`` with a hand-written make-style mtime check
over the same files (benchmarks.md). Usage: python bench/w3_noop.py [N ...] (default 50000).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from stagewise import Pipeline, stage


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i:06d}.txt"}, over=("i",))
def length(text: str) -> str:
    return str(len(text))


def make_inputs(root: Path, n: int) -> None:
    folder = root / "raw"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i:06d}.txt").write_text(f"item {i}\n")


def mtime_check(root: Path, n: int) -> int:
    """What a careful Makefile does: stale when the output is missing or older than the input."""
    stale = 0
    for i in range(n):
        src = root / "raw" / f"{i:06d}.txt"
        dst = root / "out" / "len" / f"{i:06d}.txt"
        try:
            if os.stat(dst).st_mtime_ns < os.stat(src).st_mtime_ns:
                stale += 1
        except FileNotFoundError:
            stale += 1
    return stale


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(sizes: list[int]) -> None:
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_inputs(root, n)
            pipeline = Pipeline([length], sources={"raw": "{data}/{i:06d}.txt"}, paths={"data": root / "raw"}, dims={"i": n}, output=root / "out")
            start = time.perf_counter()
            pipeline.run()
            cold = time.perf_counter() - start
            time.sleep(2.1)  # past the racy-clean window, as in real use
            pipeline.run()  # the first no-op re-hashes files written less than 2 s before their hash
            noop = best(lambda: pipeline.run())
            hand = best(lambda: mtime_check(root, n))
            assert mtime_check(root, n) == 0
            print(f"N={n:>7}: cold {cold:7.2f} s   no-op {noop:6.3f} s   mtime check {hand:6.3f} s   ratio {noop / hand:5.2f}x")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50_000])
