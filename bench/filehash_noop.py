"""The state layer's share of a no-op rerun over N files: fingerprints and item records.

A rerun where nothing changed must cost about one ``os.stat`` per file. This script creates N
tiny files, warms the stat cache (in a real state store), then times:

- ``os.stat`` alone over the same paths (the floor);
- ``fingerprint_many`` with a fresh store and fingerprinter (what a new run pays: one cache scan
  from SQLite, then a stat and a dict lookup per file);
- ``fingerprint_many`` again on the same fingerprinter (entries already in memory);
- ``StateStore.get_items`` for a stage of N records (the planner's one query per stage), and the
  same with the ``inputs``/``outputs`` JSON of every record decoded, as planning does.

Usage: ``PYTHONPATH=src python bench/filehash_noop.py [N]`` (default 50,000). Best of 3 runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stagewise.state.filehash import FileFingerprinter
from stagewise.state.store import ItemRecord, StateStore


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        begun = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begun)
    return min(times)


def make_files(root: Path, n: int) -> list[str]:
    rels = [f"sky/train/{i // 1000:03d}/{i:06d}.npy" for i in range(n)]
    old = time.time_ns() - 3600 * 10**9  # an hour ago: cache entries will not be racy
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
        os.utime(path, ns=(old, old))
    return rels


def report(label: str, seconds: float, n: int) -> None:
    print(f"{label:<52} {seconds * 1000:8.1f} ms  {seconds / n * 1e6:6.2f} µs/file")


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "out"
        db = root / ".stagewise" / "state.db"
        rels = make_files(root, n)
        with StateStore(db) as store:
            warm = FileFingerprinter(store, {"output": root})
            warm.fingerprint_many("output", rels)
            assert warm.hashed == n

        root_str = str(root)

        def bare_stat() -> None:
            for rel in rels:
                os.stat(os.path.join(root_str, rel))

        def fresh_run() -> None:
            with StateStore(db) as store:
                fp = FileFingerprinter(store, {"output": root})
                fp.fingerprint_many("output", rels)
                assert fp.hashed == 0

        with StateStore(db) as store:
            same = FileFingerprinter(store, {"output": root})
            same.fingerprint_many("output", rels)
            t_stat = best(bare_stat)
            t_fresh = best(fresh_run)
            t_same = best(lambda: same.fingerprint_many("output", rels))
            assert same.hashed == 0

            digest = "0123456789abcdef" * 2
            store.put_items(
                ItemRecord(
                    "clean",
                    f"train|{i}",
                    "done",
                    code_fp=digest,
                    params_hash=digest,
                    code_parts={"clean": digest},
                    params={"threshold": 3.0},
                    inputs={"sky": digest, "mask": digest},
                    outputs={"clean": (rel, digest)},
                    meta={"max": 1.5},
                    started=1.0,
                    duration=0.1,
                    host="node",
                    run_id="r1",
                )
                for i, rel in enumerate(rels)
            )

            def plan_reads() -> None:
                for rec in store.get_items("clean").values():
                    rec.inputs, rec.outputs  # noqa: B018 - decoding is what we time

            t_items = best(lambda: store.get_items("clean"))
            t_plan = best(plan_reads)

        print(f"N = {n:,} files; Python {sys.version.split()[0]}")
        report("os.stat loop (floor)", t_stat, n)
        report("fingerprint_many, fresh store + fingerprinter", t_fresh, n)
        report("fingerprint_many, entries in memory", t_same, n)
        report("get_items(stage), N records", t_items, n)
        report("get_items + decode inputs/outputs of each", t_plan, n)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
