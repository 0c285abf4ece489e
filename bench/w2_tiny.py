"""W2: tiny tasks — the per-item overhead of stagewise's local executor.

Workload (shared/research/benchmarks.md): N=5000 items, each reads a tiny text file and writes its
length. Per-item overhead = (tool time - plain loop time) / N; target <= 100 µs (0.1 ms).

Measured side by side in one run, medians of ``--repeat``, interleaved, each from an empty output
folder (stagewise: a new output root, so a cold run with its state store created):

- plain Python loop; the same loop writing each output atomically (temporary file + rename, as
  stagewise must: SPEC 7), the floor of a crash-safe tool on this filesystem;
- ``multiprocessing.Pool(2).map`` (the default ``fork`` start method, as a hand-written script
  would use), and the same with ``forkserver`` (stagewise's start method on Linux);
- stagewise ``Pipeline.run(executor="local", jobs=2)`` — the figure the target is about;
- stagewise with ``executor="serial"`` (in-process: the bookkeeping without worker IPC);
- stagewise local on a 1-item pipeline: the fixed cost of a run (pool start, state store, plan),
  which the per-item figure at N=5000 includes; the marginal per-item overhead excludes it.

Usage: ``.venv/bin/python bench/w2_tiny.py [--n 5000] [--repeat 3] [--profile]``. The files go to
the system's temporary folder; ``TMPDIR=/dev/shm`` (tmpfs) takes the disk out of the figures.
``--profile`` prints cProfile tables for one stagewise local run (the coordinator's side only:
the workers are other processes) and for one serial run (everything in one process).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import tiny_stages

from stagewise import Pipeline


def make_inputs(raw: Path, n: int) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (raw / f"{i:06d}.txt").write_text(f"item {i}\n")


def _one(args: tuple[str, str]) -> None:
    src, dst = args
    with open(src, encoding="utf-8") as f:
        text = f.read()
    with open(dst, "w", encoding="utf-8") as f:
        f.write(str(len(text)))


def _jobs(raw: Path, out: Path, n: int) -> list[tuple[str, str]]:
    (out / "len").mkdir(parents=True, exist_ok=True)
    return [(f"{raw}/{i:06d}.txt", f"{out}/len/{i:06d}.txt") for i in range(n)]


def plain_loop(raw: Path, out: Path, n: int) -> int:
    for job in _jobs(raw, out, n):
        _one(job)
    return n


def _one_atomic(args: tuple[str, str]) -> None:
    src, dst = args
    with open(src, encoding="utf-8") as f:
        text = f.read()
    head, tail = os.path.split(dst)
    tmp = f"{head}/.{tail}.{os.getpid()}.tmp.txt"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(len(text)))
    os.replace(tmp, dst)


def plain_loop_atomic(raw: Path, out: Path, n: int) -> int:
    """The plain loop writing each output atomically (temporary file, then rename), as SPEC 7
    requires of stagewise: the floor of what a crash-safe tool pays on this filesystem."""
    for job in _jobs(raw, out, n):
        _one_atomic(job)
    return n


def pool_map(raw: Path, out: Path, n: int, method: str | None) -> int:
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        pool.map(_one, _jobs(raw, out, n))
    return n


def sw_pipeline(raw: Path, out: Path, n: int) -> Pipeline:
    return tiny_stages.pipeline(raw, out, n, "w2")


def sw_run(raw: Path, out: Path, n: int, executor: str) -> int:
    report = sw_pipeline(raw, out, n).run(executor=executor, jobs=2)
    if not report.ok:
        raise RuntimeError(f"stagewise run failed: {report.failures[:3]}")
    return report.counts.get("length", Counter())["done"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one stagewise local run")
    args = ap.parse_args(argv)
    n = args.n
    with tempfile.TemporaryDirectory(prefix="w2_") as tmp:
        root = Path(tmp)
        raw = root / "raw"
        make_inputs(raw, n)
        print(f"W2: N={n} tiny items, jobs=2, medians of {args.repeat}, {os.cpu_count()} CPUs, "
              f"load {bl.load()} at start, files in {root} ({bl.fs_type(root)})")  # fmt: skip
        contenders = {
            "plain loop": lambda out: plain_loop(raw, out, n),
            "plain loop, atomic writes": lambda out: plain_loop_atomic(raw, out, n),
            "Pool(2).map, fork": lambda out: pool_map(raw, out, n, "fork"),
            "Pool(2).map, forkserver": lambda out: pool_map(raw, out, n, "forkserver"),
            "stagewise local -j 2": lambda out: sw_run(raw, out, n, "local"),
            "stagewise serial": lambda out: sw_run(raw, out, n, "serial"),
            "stagewise local, 1 item": lambda out: sw_run(raw, out, 1, "local"),
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        done: dict[str, int] = {}
        loads = []
        for _ in range(args.repeat):
            loads.append(bl.load())
            for name, fn in contenders.items():
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                bl.settle()
                seconds, count = bl.timed(lambda fn=fn, out=out: fn(out))
                times[name].append(seconds)
                done[name] = count
        loads.append(bl.load())
        t = {k: bl.median(v) for k, v in times.items()}
        plain = t["plain loop"]
        one = t["stagewise local, 1 item"]
        rows = []
        for name in contenders:
            items = 1 if name.endswith("1 item") else n
            over = (t[name] - plain * items / n) / items * 1e6 if name != "plain loop" else 0.0
            rows.append(
                [name, bl.fmt_s(t[name]), f"{done[name]}", f"{over:.0f}", bl.fmt_ratio(t[name], plain)]
            )
        print()
        print(bl.table(["contender", "seconds", "items run", "overhead µs/item", "vs plain"], rows))
        sw = t["stagewise local -j 2"]
        per_item = (sw - plain) / n * 1e6
        marginal = (sw - one - plain * (n - 1) / n) / (n - 1) * 1e6
        print()
        print(f"stagewise local -j 2 overhead: {per_item:.0f} µs/item (target <= 100 µs): "
              f"{bl.verdict(per_item, 100)}")  # fmt: skip
        print(f"  of which fixed per run (1-item run): {one:.3f} s = {one / n * 1e6:.0f} µs/item at N={n}; "
              f"marginal per item: {marginal:.0f} µs")  # fmt: skip
        print(f"load during the runs: {', '.join(loads)}")
        if args.profile:
            out = root / "out"
            shutil.rmtree(out, ignore_errors=True)
            print("\n--- cProfile: stagewise local -j 2, cold (coordinator process) ---")
            print(bl.profile(lambda: sw_run(raw, out, n, "local")))
            shutil.rmtree(out, ignore_errors=True)
            print("\n--- cProfile: stagewise serial, cold (coordinator and item work in one process) ---")
            print(bl.profile(lambda: sw_run(raw, out, n, "serial")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
