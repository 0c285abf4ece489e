"""What the stage barrier costs: two 1:1 stages of 3 items of 1 s each, with ``jobs=2``.

Stages run one after another, so the third item of the first stage runs alone, then the last
item of the second stage runs alone: 4 s of work slots where item-level scheduling (an item of
the second stage starts as soon as the item it reads is done) would need 3 s. Prints the wall
time of one cold run (pool start included).

Usage: ``.venv/bin/python bench/stage_barrier.py``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import barrier_stages

from stagewise import Pipeline


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw"
        raw.mkdir()
        for i in range(3):
            (raw / f"{i}.txt").write_text(str(i))
        pipeline = Pipeline(
            [barrier_stages.slow_a, barrier_stages.slow_b],
            sources={"raw": "{data}/{i}.txt"},
            paths={"data": raw},
            dims={"i": 3},
            output=Path(folder) / "out",
            name="barrier",
        )
        start = time.perf_counter()
        report = pipeline.run(executor="local", jobs=2, progress=False)
        took = time.perf_counter() - start
        assert report.ok, report.failures
        print(f"3 + 3 items of 1 s, jobs=2: {took:.2f} s (stage by stage: 4 s of work; item by item: 3 s)")


if __name__ == "__main__":
    main()
