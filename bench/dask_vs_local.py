"""W1 (cold runs) through the local executor and through Dask LocalClusters: is Dask within 1.5x?

Workload: ``--n`` input ``.npy`` files of 128x128 float64 (seeded), then W1's three stages from
``w1_stages.py`` (normalize, spectrum, summarize): 2N+1 items per run, every run into a fresh
output root (a cold run).

Contenders, interleaved per repeat so that load changes hit them alike (medians reported):

- ``local``: ``Pipeline.run(executor="local", jobs=J)``; its pool starts inside the run;
- ``dask warm``: one ``DaskExecutor(J)`` made before timing and reused (a Python session that
  keeps its cluster, or a cluster that is already up);
- ``dask cold``: a new ``DaskExecutor(J)`` per run, cluster start and close included;
- ``local proc`` / ``dask proc``: a new Python process per run (interpreter start, imports,
  forkserver and pool or cluster start included): what ``stagewise run`` pays on the command line.

Usage::

    .venv/bin/python bench/dask_vs_local.py [--n 200] [--jobs 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import w1_stages

from stagewise import Pipeline
from stagewise.run.executors.dask import DaskExecutor


def make_inputs(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        np.save(folder / f"{i:04d}.npy", rng.standard_normal((128, 128)))


def pipeline(raw: Path, out: Path, n: int) -> Pipeline:
    stages = [w1_stages.normalize, w1_stages.spectrum, w1_stages.summarize]
    return Pipeline(
        stages, sources={"raw": "{data}/{i:04d}.npy"}, paths={"data": raw}, dims={"i": n}, output=out
    )


def timed_run(raw: Path, out: Path, n: int, executor: object, jobs: int) -> float:
    start = time.perf_counter()
    report = pipeline(raw, out, n).run(executor=executor, jobs=jobs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    done = sum(c["done"] for c in report.counts.values())
    if not report.ok or done != 2 * n + 1:
        raise SystemExit(f"run failed or incomplete ({done} items): {report.failures[:3]}")
    return elapsed


CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
from dask_vs_local import pipeline, timed_run
from pathlib import Path
if __name__ == "__main__":
    if sys.argv[1] == "dask":
        from stagewise.run.executors.dask import DaskExecutor
        with DaskExecutor({jobs}) as executor:
            timed_run(Path({raw!r}), Path(sys.argv[2]), {n}, executor, {jobs})
    else:
        timed_run(Path({raw!r}), Path(sys.argv[2]), {n}, "local", {jobs})
"""


def process_run(script: Path, kind: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), kind, str(out)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, jobs = args.n, args.jobs
    names = ("local", "dask warm", "dask cold", "local proc", "dask proc")
    times: dict[str, list[float]] = {name: [] for name in names}
    starts: list[float] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = root / "raw"
        make_inputs(raw, n)
        script = root / "child.py"
        bench = str(Path(__file__).resolve().parent)
        script.write_text(CHILD.format(bench=bench, raw=str(raw), n=n, jobs=jobs))
        start = time.perf_counter()
        warm = DaskExecutor(jobs)
        starts.append(time.perf_counter() - start)
        try:
            timed_run(raw, root / "warmup", n, warm, jobs)  # workers import numpy and the stages once
            for r in range(args.repeat):
                loads.append(os.getloadavg()[0])
                times["local"].append(timed_run(raw, root / f"local{r}", n, "local", jobs))
                times["dask warm"].append(timed_run(raw, root / f"warm{r}", n, warm, jobs))
                start = time.perf_counter()
                cold = DaskExecutor(jobs)
                starts.append(time.perf_counter() - start)
                try:
                    run = timed_run(raw, root / f"cold{r}", n, cold, jobs)
                finally:
                    cold.close()
                times["dask cold"].append(time.perf_counter() - start)
                del run
                times["local proc"].append(process_run(script, "local", root / f"lproc{r}"))
                times["dask proc"].append(process_run(script, "dask", root / f"dproc{r}"))
        finally:
            warm.close()
    local = statistics.median(times["local"])
    print(f"W1 cold run, n={n} ({2 * n + 1} items), jobs={jobs}, {args.repeat} repeats, "
          f"load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'contender':<10} {'median s':>9} {'min s':>7} {'vs local':>9}  (proc rows: vs local proc)")
    for name, values in times.items():
        median = statistics.median(values)
        base = statistics.median(times["local proc"]) if name.endswith("proc") else local
        print(f"{name:<10} {median:>9.3f} {min(values):>7.3f} {median / base:>8.2f}x")
    print(f"LocalCluster start (DaskExecutor(): median of {len(starts)}): {statistics.median(starts):.2f} s")
    for name, base in (("dask warm", "local"), ("dask cold", "local"), ("dask proc", "local proc")):
        ratio = statistics.median(times[name]) / statistics.median(times[base])
        print(f"target: {name} within 1.5x of {base}: {'OK' if ratio <= 1.5 else 'MISS'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
