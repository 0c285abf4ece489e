"""W3: the up-to-date check at scale — a no-op rerun of one 1:1 stage over N tiny files.

Workload (shared/research/benchmarks.md): N tiny text files through one 1:1 stage (``length``:
read the text, write its length); time the no-op rerun. Target: stagewise's no-op <= 2x a
hand-written make-style mtime check over the same files; 10^6 items <= 10 s.

For each N (default 5,000 and 50,000; ``--big`` adds 500,000): make the inputs, run stagewise cold
(``executor="local", jobs=2``), sleep 2.1 s (the racy-clean rule: a file hashed within 2 s of being
written is re-hashed on the next run), do one warm-up no-op, then time, interleaved and medians of
``--repeat``:

- stagewise no-op, Python API (``Pipeline.run``), checking that no item ran (``RunReport.counts``);
- the hand-written mtime check: for each item, ``os.stat`` of output and input, stale when the
  output is missing or older (string paths, no ``pathlib``: the fast way to write it);
- stagewise no-op through the CLI in a subprocess (``stagewise run pipeline.yaml``: interpreter
  start and imports included), unless ``--no-cli``.

Usage::

    .venv/bin/python bench/w3_noop.py [N ...] [--big] [--repeat 3] [--no-cli] [--profile]

``--profile`` runs cProfile on one no-op at the largest N and prints the top 25 entries by
cumulative time (all, and inside stagewise only) and by own time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import tiny_stages

from stagewise import Pipeline


def make_inputs(raw: Path, n: int) -> None:
    raw.mkdir(parents=True)
    for i in range(n):
        with open(f"{raw}/{i:06d}.txt", "w") as f:
            f.write(f"item {i}\n")


def mtime_check(raw: Path, out: Path, n: int) -> int:
    """What a careful Makefile does: stale when the output is missing or older than the input."""
    stale = 0
    stat = os.stat
    for i in range(n):
        try:
            if stat(f"{out}/len/{i:06d}.txt").st_mtime_ns < stat(f"{raw}/{i:06d}.txt").st_mtime_ns:
                stale += 1
        except FileNotFoundError:
            stale += 1
    return stale


def sw_pipeline(raw: Path, out: Path, n: int) -> Pipeline:
    return tiny_stages.pipeline(raw, out, n, "w3")


def sw_run(pipeline: Pipeline) -> int:
    """Run; the number of items that ran."""
    report = pipeline.run(executor="local", jobs=2)
    if not report.ok:
        raise RuntimeError(f"stagewise run failed: {report.failures[:3]}")
    return report.counts.get("length", Counter())["done"]


def write_cli_pipeline(folder: Path, raw: Path, n: int) -> Path:
    """The same pipeline as a pipeline file, its stages file beside it (as in a project)."""
    shutil.copy(Path(tiny_stages.__file__), folder / "tiny_stages.py")
    yaml = folder / "pipeline.yaml"
    yaml.write_text(
        f'pipeline: w3\nstages_from: [tiny_stages.py]\noutput: "{folder / "out"}"\n'
        f'paths: {{data: "{raw}"}}\nsources: {{raw: "{{data}}/{{i:06d}}.txt"}}\ndims: {{i: {n}}}\n'
    )
    return yaml


def cli_noop(yaml: Path) -> float:
    return bl.run_cmd(
        [sys.executable, "-m", "stagewise", "run", str(yaml), "-j", "2", "-q", "--no-progress"], yaml.parent
    )


def bench_one(root: Path, n: int, repeat: int, cli: bool) -> tuple[dict[str, object], Pipeline]:
    raw = root / "raw"
    out = root / "out"
    made, _ = bl.timed(lambda: make_inputs(raw, n))
    pipeline = sw_pipeline(raw, out, n)
    load_cold = bl.load()
    cold, ran = bl.timed(lambda: sw_run(pipeline))
    assert ran == n, f"cold run ran {ran} of {n} items"
    time.sleep(2.1)  # past the racy-clean window
    warm, ran_warm = bl.timed(lambda: sw_run(pipeline))  # re-hashes what was hashed < 2 s after writing
    assert mtime_check(raw, out, n) == 0
    yaml = write_cli_pipeline(root, raw, n) if cli else None
    if yaml is not None:
        cli_noop(yaml)  # warm-up (same output root: the CLI shares the state store)
    noops, hands, clis, loads = [], [], [], []
    for _ in range(repeat):
        loads.append(bl.load())
        sec, ran = bl.timed(lambda: sw_run(pipeline))
        assert ran == 0, f"no-op ran {ran} items"
        noops.append(sec)
        hands.append(bl.timed(lambda: mtime_check(raw, out, n))[0])
        if yaml is not None:
            clis.append(cli_noop(yaml))
    loads.append(bl.load())
    row = {
        "n": n,
        "made": made,
        "cold": cold,
        "load_cold": load_cold,
        "warm": warm,
        "ran_warm": ran_warm,
        "noop": bl.median(noops),
        "hand": bl.median(hands),
        "cli": bl.median(clis) if clis else None,
        "loads": loads,
    }
    return row, pipeline


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, help="item counts (default 5000 50000)")
    ap.add_argument("--big", action="store_true", help="add N=500,000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI no-op")
    ap.add_argument("--profile", action="store_true", help="cProfile one no-op at the largest N")
    args = ap.parse_args(argv)
    sizes = args.sizes or [5_000, 50_000]
    if args.big and 500_000 not in sizes:
        sizes.append(500_000)
    print(f"W3: no-op rerun of one 1:1 stage, N = {', '.join(map(str, sizes))}; jobs=2, medians of "
          f"{args.repeat}, {os.cpu_count()} CPUs, load {bl.load()} at start, files under "
          f"{tempfile.gettempdir()} ({bl.fs_type(Path(tempfile.gettempdir()))})")  # fmt: skip
    rows = []
    profile_text = ""
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="w3_") as tmp:
            row, pipeline = bench_one(Path(tmp), n, args.repeat, not args.no_cli)
            rows.append(row)
            print(
                f"  N={n}: done (cold {row['cold']:.1f} s, no-op {row['noop']:.3f} s, load {bl.load()})",
                flush=True,
            )
            if args.profile and n == max(sizes):
                profile_text = bl.profile(lambda p=pipeline: sw_run(p))
    print()
    table = []
    for r in rows:
        n = r["n"]
        table.append([
            f"{n:,}",
            bl.fmt_s(r["cold"]),
            f"{bl.fmt_s(r['warm'])} ({r['ran_warm']})",
            bl.fmt_s(r["noop"]),
            f"{r['noop'] / n * 1e6:.1f}",
            bl.fmt_s(r["hand"]),
            f"{r['hand'] / n * 1e6:.1f}",
            bl.fmt_ratio(r["noop"], r["hand"]),
            bl.verdict(r["noop"] / r["hand"], 2.0),
            bl.fmt_s(r["cli"]),
            f"{r['load_cold']} / {','.join(r['loads'])}",
        ])  # fmt: skip
    print(bl.table(
        ["N", "cold s", "1st no-op s (ran)", "no-op s", "µs/item", "mtime s", "µs/item", "ratio",
         "<=2x", "CLI no-op s", "load cold / no-op"],
        table,
    ))  # fmt: skip
    big = rows[-1]
    est = big["noop"] / big["n"] * 1_000_000
    print(
        f"\n10^6 items, linear from N={big['n']:,}: no-op ~{est:.1f} s (target <= 10 s: {bl.verdict(est, 10)})"
    )
    print("'1st no-op': the warm-up no-op 2.1 s after the cold run, and how many items it ran (should be 0).")
    if profile_text:
        print(f"\n--- cProfile: stagewise no-op at N={max(sizes):,} ---")
        print(profile_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
