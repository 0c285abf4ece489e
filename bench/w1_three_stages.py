"""W1: three stages over many .npy files — stagewise against hand-written scripts and peer tools.

Workload (shared/research/benchmarks.md): N input ``.npy`` files of 128x128 float64 (seeded);
``normalize`` (x-mean)/std per file, ``spectrum`` abs(rfft2(x))**2 per normalized file, and
``summarize``: the mean spectrum over all files (.npy) plus a JSON with ``scale * mean``.

Scenarios: (a) cold run; (b) no-op rerun; (c) rerun after changing only ``scale`` (ideal: summarize's
one item); (d) rerun after changing one input file's bytes (ideal: that file's 2 items + summarize).

Measured side by side in one run (medians of ``--repeat``, interleaved so that load changes hit
every contender alike):

- stagewise, Python API: ``Pipeline(...).run(executor="local", jobs=2)``; the items that ran are
  taken from the returned ``RunReport.counts`` and checked against the ideal;
- stagewise with ``executor="serial"`` (in-process, its own output root): the same bookkeeping
  without starting workers, so the difference to the row above is the worker pool's cost;
- plain Python loop (no up-to-date logic: every rerun redoes everything);
- ``multiprocessing.Pool(2)`` script, stage by stage (no up-to-date logic), cold only;
- hand-written make-style mtime check (serial; ``scale`` lives in a params file summarize depends on);
- stagewise CLI in a subprocess (``stagewise run pipeline.yaml -j 2``), interpreter start included;
- peer tools when installed in ``--venv`` (default ``/tmp/benchvenv``), as subprocesses: Snakemake
  (``run:`` rules, ``--cores 2``), doit (``-n 2``, md5 ``file_dep``, ``config_changed`` for scale)
  and Luigi (``workers=2``, local scheduler). Their workflow files are written into the temp folder.

Usage::

    .venv/bin/python bench/w1_three_stages.py [--n 1000] [--repeat 3] [--peers snakemake,doit,luigi]
        [--peer-n N] [--venv /tmp/benchvenv] [--profile]

``--peers none`` skips the peers; ``--profile`` prints cProfile tables for one stagewise cold run,
one no-op and one scenario-(d) run (the coordinator's process; workers are other processes).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import w1_stages
from w1_stages import normalize_array, spectrum_array, summarize_arrays

from stagewise import Pipeline

SHAPE = (128, 128)
STAGES = ("normalize", "spectrum", "summarize")
NO_COUNTS = dict.fromkeys(STAGES, -2)  # a contender whose items run are not known
IDEAL = {
    "a": {"normalize": None, "spectrum": None, "summarize": 1},  # None: N
    "b": {"normalize": 0, "spectrum": 0, "summarize": 0},
    "c": {"normalize": 0, "spectrum": 0, "summarize": 1},
    "d": {"normalize": 1, "spectrum": 1, "summarize": 1},
}


# ---- data -----------------------------------------------------------------------------------


def make_inputs(raw: Path, n: int) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(raw / f"{i:04d}.npy", np.random.default_rng([0, i]).normal(size=SHAPE))


_SALTS = itertools.count(1)


def change_input(raw: Path, i: int) -> None:
    """Give input ``i`` new bytes (new data, same shape), never bytes it had before: rewriting
    the same bytes is rightly a no-op for a content-hashing tool."""
    np.save(raw / f"{i:04d}.npy", np.random.default_rng([1, i, next(_SALTS)]).normal(size=SHAPE))


# ---- references -----------------------------------------------------------------------------


def _norm_file(args: tuple[str, str]) -> None:
    src, dst = args
    np.save(dst, normalize_array(np.load(src)))


def _spec_file(args: tuple[str, str]) -> None:
    src, dst = args
    np.save(dst, spectrum_array(np.load(src)))


def _summarize(spec_paths: list[str], out: Path, scale: float) -> None:
    mean, info = summarize_arrays((np.load(p) for p in spec_paths), scale)
    np.save(out / "mean.npy", mean)
    (out / "summary.json").write_text(json.dumps(info, indent=2) + "\n")


def _layout(raw: Path, out: Path, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    for sub in ("norm", "spec", "summary"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    norm = [(f"{raw}/{i:04d}.npy", f"{out}/norm/{i:04d}.npy") for i in range(n)]
    spec = [(f"{out}/norm/{i:04d}.npy", f"{out}/spec/{i:04d}.npy") for i in range(n)]
    return norm, spec


def plain_loop(raw: Path, out: Path, n: int, scale: float) -> dict[str, int]:
    """Every file, every stage, every time."""
    norm, spec = _layout(raw, out, n)
    for job in norm:
        _norm_file(job)
    for job in spec:
        _spec_file(job)
    _summarize([d for _, d in spec], out / "summary", scale)
    return {"normalize": n, "spectrum": n, "summarize": 1}


def pool_script(raw: Path, out: Path, n: int, scale: float) -> dict[str, int]:
    """What one writes by hand with multiprocessing.Pool(2): stage by stage, no up-to-date logic."""
    norm, spec = _layout(raw, out, n)
    with multiprocessing.Pool(2) as pool:
        pool.map(_norm_file, norm)
        pool.map(_spec_file, spec)
    _summarize([d for _, d in spec], out / "summary", scale)
    return {"normalize": n, "spectrum": n, "summarize": 1}


def _stale(dst: str, *srcs: str) -> bool:
    try:
        t = os.stat(dst).st_mtime_ns
    except FileNotFoundError:
        return True
    return any(os.stat(s).st_mtime_ns > t for s in srcs)


def make_style(raw: Path, out: Path, n: int, scale: float) -> dict[str, int]:
    """A hand-written make: a target is stale when missing or older than one of its sources.

    ``scale`` is kept in ``params.json``, rewritten only when it changes, and summarize depends on
    it (the usual Makefile trick). Serial, in-process.
    """
    norm, spec = _layout(raw, out, n)
    params = out / "params.json"
    text = json.dumps({"scale": scale})
    if not params.exists() or params.read_text() != text:
        params.write_text(text)
    ran = Counter()
    for job in norm:
        if _stale(job[1], job[0]):
            _norm_file(job)
            ran["normalize"] += 1
    for job in spec:
        if _stale(job[1], job[0]):
            _spec_file(job)
            ran["spectrum"] += 1
    specs = [d for _, d in spec]
    summary = out / "summary"
    if _stale(str(summary / "summary.json"), str(params), *specs) or _stale(
        str(summary / "mean.npy"), *specs
    ):
        _summarize(specs, summary, scale)
        ran["summarize"] += 1
    return {s: ran[s] for s in STAGES}


# ---- stagewise --------------------------------------------------------------------------------


def sw_pipeline(raw: Path, out: Path, n: int) -> Pipeline:
    return Pipeline(
        [w1_stages.normalize, w1_stages.spectrum, w1_stages.summarize],
        sources={"raw": "{data}/{i:04d}.npy"},
        paths={"data": raw},
        dims={"i": n},
        output=out,
        name="w1",
    )


def sw_run(pipeline: Pipeline, scale: float, jobs: int, executor: str = "local") -> dict[str, int]:
    report = pipeline.run(params={"summarize.scale": scale}, executor=executor, jobs=jobs)
    if not report.ok:
        raise RuntimeError(f"stagewise run failed: {report.failures[:3]}")
    return {s: report.counts.get(s, Counter())["done"] for s in STAGES}


def write_cli_pipeline(folder: Path, raw: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # The stages file sits next to the pipeline file, as in a project. (With stages_from naming a
    # file in another folder, the coordinator imports it but local workers cannot: see README.)
    shutil.copy(Path(w1_stages.__file__), folder / "w1_stages.py")
    yaml = folder / "pipeline.yaml"
    yaml.write_text(
        textwrap.dedent(f"""\
            pipeline: w1
            stages_from: [w1_stages.py]
            output: out
            paths: {{data: "{raw}"}}
            sources: {{raw: "{{data}}/{{i:04d}}.npy"}}
            dims: {{i: {n}}}
            """)
    )
    return yaml


def cli_counts(stderr: str) -> dict[str, int]:
    """Items run per stage, from the closing lines ``stagewise run`` writes to stderr."""
    found = bl.stagewise_counts(stderr)
    return {s: found.get(s, 0) for s in STAGES}


def cli_run(yaml: Path, scale: float, jobs: int) -> tuple[float, dict[str, int]]:
    seconds, stderr = bl.run_cmd_out(cli_cmd(yaml, scale, jobs), yaml.parent)
    return seconds, cli_counts(stderr)


def cli_cmd(yaml: Path, scale: float, jobs: int) -> list[str]:
    return [sys.executable, "-m", "stagewise", "run", str(yaml), "-j", str(jobs), "--no-progress",
            "--summarize.scale", str(scale)]  # fmt: skip


# ---- peers --------------------------------------------------------------------------------


def _kernels() -> str:
    return "\n\n".join(inspect.getsource(f) for f in (normalize_array, spectrum_array, summarize_arrays))


LOG_FN = """
def ran(stage):
    with open("ran.log", "a") as f:
        f.write(stage + "\\n")
"""


def kernels_script() -> str:
    """A command-line wrapper of the kernels, for the Snakemake shell rules."""
    return f"""import json
import sys
import numpy as np

{_kernels()}
{LOG_FN}

stage, args = sys.argv[1], sys.argv[2:]
if stage == "normalize":
    np.save(args[1], normalize_array(np.load(args[0])))
elif stage == "spectrum":
    np.save(args[1], spectrum_array(np.load(args[0])))
else:
    scale, mean_out, json_out, srcs = float(args[0]), args[1], args[2], args[3:]
    mean, info = summarize_arrays((np.load(p) for p in srcs), scale)
    np.save(mean_out, mean)
    with open(json_out, "w") as f:
        f.write(json.dumps(info, indent=2) + "\\n")
ran(stage)
"""


def snakefile(raw: Path, n: int) -> str:
    """Shell rules calling ``kernels.py`` (``run:`` rules cost several seconds per job in Snakemake 9,
    which starts a new Snakemake process for each)."""
    return f'''RAW = "{raw}"
IDS = [f"{{i:04d}}" for i in range({n})]
wildcard_constraints:
    i=r"\\d+"

rule all:
    input: "summary/mean.npy", "summary/summary.json"

rule normalize:
    input: RAW + "/{{i}}.npy"
    output: "norm/{{i}}.npy"
    shell: "python kernels.py normalize {{input}} {{output}}"

rule spectrum:
    input: "norm/{{i}}.npy"
    output: "spec/{{i}}.npy"
    shell: "python kernels.py spectrum {{input}} {{output}}"

rule summarize:
    input: expand("spec/{{i}}.npy", i=IDS)
    output: mean="summary/mean.npy", summary="summary/summary.json"
    params: scale=float(config.get("scale", 1.0))
    shell: "python kernels.py summarize {{params.scale}} {{output.mean}} {{output.summary}} {{input}}"
'''


def dodo(raw: Path, n: int) -> str:
    return f'''import json
import os
import numpy as np
from doit import get_var
from doit.tools import config_changed

RAW = "{raw}"
N = {n}
SCALE = float(get_var("scale", "1.0"))
DOIT_CONFIG = {{"verbosity": 0}}

{_kernels()}
{LOG_FN}

def do_normalize(src, dst):
    np.save(dst, normalize_array(np.load(src)))
    ran("normalize")

def do_spectrum(src, dst):
    np.save(dst, spectrum_array(np.load(src)))
    ran("spectrum")

def do_summarize(srcs, scale):
    os.makedirs("summary", exist_ok=True)
    mean, info = summarize_arrays((np.load(p) for p in srcs), scale)
    np.save("summary/mean.npy", mean)
    with open("summary/summary.json", "w") as f:
        f.write(json.dumps(info, indent=2) + "\\n")
    ran("summarize")

os.makedirs("norm", exist_ok=True)
os.makedirs("spec", exist_ok=True)

def task_normalize():
    for i in range(N):
        src, dst = f"{{RAW}}/{{i:04d}}.npy", f"norm/{{i:04d}}.npy"
        yield {{"name": f"{{i:04d}}", "actions": [(do_normalize, [src, dst])], "file_dep": [src], "targets": [dst]}}

def task_spectrum():
    for i in range(N):
        src, dst = f"norm/{{i:04d}}.npy", f"spec/{{i:04d}}.npy"
        yield {{"name": f"{{i:04d}}", "actions": [(do_spectrum, [src, dst])], "file_dep": [src], "targets": [dst]}}

def task_summarize():
    srcs = [f"spec/{{i:04d}}.npy" for i in range(N)]
    return {{
        "actions": [(do_summarize, [srcs, SCALE])],
        "file_dep": srcs,
        "targets": ["summary/mean.npy", "summary/summary.json"],
        "uptodate": [config_changed({{"scale": SCALE}})],
    }}
'''


def luigi_script(raw: Path, n: int) -> str:
    return f'''import json
import sys
import luigi
import numpy as np

RAW = "{raw}"
N = {n}

{_kernels()}
{LOG_FN}

def save(target, array):
    with target.temporary_path() as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)

class Normalize(luigi.Task):
    i = luigi.IntParameter()
    def output(self):
        return luigi.LocalTarget(f"norm/{{self.i:04d}}.npy")
    def run(self):
        save(self.output(), normalize_array(np.load(f"{{RAW}}/{{self.i:04d}}.npy")))
        ran("normalize")

class Spectrum(luigi.Task):
    i = luigi.IntParameter()
    def requires(self):
        return Normalize(i=self.i)
    def output(self):
        return luigi.LocalTarget(f"spec/{{self.i:04d}}.npy")
    def run(self):
        save(self.output(), spectrum_array(np.load(self.input().path)))
        ran("spectrum")

class Summarize(luigi.Task):
    scale = luigi.FloatParameter(default=1.0)
    def requires(self):
        return [Spectrum(i=i) for i in range(N)]
    def output(self):
        return [luigi.LocalTarget("summary/mean.npy"), luigi.LocalTarget("summary/summary.json")]
    def run(self):
        mean, info = summarize_arrays((np.load(t.path) for t in self.input()), self.scale)
        save(self.output()[0], mean)
        with self.output()[1].open("w") as f:
            f.write(json.dumps(info, indent=2) + "\\n")
        ran("summarize")

if __name__ == "__main__":
    ok = luigi.build([Summarize(scale=float(sys.argv[1]))], workers=2, local_scheduler=True,
                     log_level="WARNING")
    sys.exit(0 if ok else 1)
'''


class Peer:
    """A peer tool's workflow in its own folder, run as a subprocess of the peer venv."""

    def __init__(self, name: str, venv: str, folder: Path, raw: Path, n: int, jobs: int = 2) -> None:
        self.name, self.folder, self.python, self.jobs = name, folder, bl.peer_python(venv), jobs
        bindir = Path(venv) / "bin"
        folder.mkdir(parents=True)
        self.env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        self.env.pop("PYTHONPATH", None)
        if name == "stagewise":  # our CLI, in this interpreter (the project's venv)
            self.env = None
            self.yaml = write_cli_pipeline(folder, raw, n)
        elif name == "snakemake":
            (folder / "Snakefile").write_text(snakefile(raw, n))
            (folder / "kernels.py").write_text(kernels_script())
        elif name == "doit":
            (folder / "dodo.py").write_text(dodo(raw, n))
        elif name == "luigi":
            (folder / "wf.py").write_text(luigi_script(raw, n))

    def cmd(self, scale: float) -> list[str]:
        if self.name == "stagewise":
            return cli_cmd(self.yaml, scale, self.jobs)
        if self.name == "snakemake":
            return [self.python, "-m", "snakemake", "all", "--cores", "2", "--config", f"scale={scale}"]
        if self.name == "doit":
            return [self.python, "-m", "doit", "-n", "2", "-P", "process", f"scale={scale}"]
        return [self.python, "wf.py", str(scale)]

    def run(self, scale: float, timeout: float) -> tuple[float, dict[str, int]]:
        """Wall seconds of one run, and the items each stage ran (from the tool's log)."""
        log = self.folder / "ran.log"
        log.unlink(missing_ok=True)
        seconds, stderr = bl.run_cmd_out(self.cmd(scale), self.folder, self.env, timeout)
        if self.name == "stagewise":
            return seconds, cli_counts(stderr)
        lines = log.read_text().split() if log.exists() else []
        counts = Counter(lines)
        return seconds, {s: counts[s] for s in STAGES}


# ---- the benchmark -------------------------------------------------------------------------


def ran_str(ran: dict[str, int] | None) -> str:
    if ran is None or all(v == -2 for v in ran.values()):
        return "-"
    return "/".join("varied" if ran[s] == -1 else str(ran[s]) for s in STAGES)


def is_ideal(ran: dict[str, int], scenario: str, n: int) -> bool:
    return all(ran[s] == (n if v is None else v) for s, v in IDEAL[scenario].items())


class Results:
    """Seconds and items run, per (contender, scenario), plus the load when measured."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[float]] = {}
        self.ran: dict[tuple[str, str], list[dict[str, int]]] = {}
        self.loads: dict[str, list[str]] = {}

    def add(self, who: str, scenario: str, seconds: float, ran: dict[str, int]) -> None:
        self.times.setdefault((who, scenario), []).append(seconds)
        self.ran.setdefault((who, scenario), []).append(ran)

    def note_load(self, scenario: str) -> None:
        self.loads.setdefault(scenario, []).append(bl.load())

    def t(self, who: str, scenario: str) -> float | None:
        values = self.times.get((who, scenario))
        return bl.median(values) if values else None

    def r(self, who: str, scenario: str) -> dict[str, int] | None:
        runs = self.ran.get((who, scenario))
        if not runs:
            return None
        return runs[-1] if all(x == runs[0] for x in runs) else dict.fromkeys(STAGES, -1)  # -1: varied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="input files (default 1000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure, median reported (default 3)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--peers", default="snakemake,doit,luigi", help="comma list, or 'none'")
    ap.add_argument("--peer-n", type=int, default=None, help="input files for doit and Luigi (default --n)")
    ap.add_argument(
        "--snakemake-n",
        type=int,
        default=100,
        help="input files for Snakemake (default 100: it starts a process per job)",
    )
    ap.add_argument("--peer-repeat", type=int, default=None, help="runs per peer figure (default --repeat)")
    ap.add_argument("--peer-timeout", type=float, default=900, help="seconds per peer run before giving up")
    ap.add_argument("--venv", default=bl.DEFAULT_VENV, help="the peer tools' virtualenv")
    ap.add_argument("--no-cli", action="store_true", help="skip the stagewise CLI subprocess rows")
    ap.add_argument("--profile", action="store_true", help="cProfile one stagewise no-op and one (d) run")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args(argv)
    n, rep = args.n, args.repeat
    peers = [p for p in args.peers.split(",") if p and p != "none"]

    tmp = None
    if args.keep:
        root = args.keep.resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="w1_")
        root = Path(tmp.name)
    try:
        return _bench(root, n, rep, args, peers)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _bench(root: Path, n: int, rep: int, args: argparse.Namespace, peers: list[str]) -> int:
    raw = root / "raw"
    print(f"W1: N={n} files of {SHAPE[0]}x{SHAPE[1]} float64, jobs={args.jobs}, medians of {rep}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load {bl.load()} at start, "
          f"in {root} ({bl.fs_type(root)})")  # fmt: skip
    sec, _ = bl.timed(lambda: make_inputs(raw, n))
    print(f"  (made inputs in {sec:.1f} s)")
    res = Results()
    sw_out = root / "sw"
    pipeline = sw_pipeline(raw, sw_out, n)
    serial = sw_pipeline(raw, root / "swserial", n)  # the same in-process: no worker start, no IPC
    cli_yaml = write_cli_pipeline(root / "swcli", raw, n) if not args.no_cli else None
    scale = 1.0

    # (a) cold: every contender from an empty output folder, interleaved
    for k in range(rep):
        res.note_load("a")
        for who, fn in (("plain", plain_loop), ("pool", pool_script), ("make", make_style)):
            out = root / who
            shutil.rmtree(out, ignore_errors=True)
            bl.settle()
            res.add(who, "a", *bl.timed(lambda fn=fn, out=out: fn(raw, out, n, scale)))
        shutil.rmtree(sw_out, ignore_errors=True)
        bl.settle()
        res.add("stagewise", "a", *bl.timed(lambda s=scale: sw_run(pipeline, s, args.jobs)))
        shutil.rmtree(root / "swserial", ignore_errors=True)
        bl.settle()
        res.add("serial", "a", *bl.timed(lambda s=scale: sw_run(serial, s, 1, "serial")))
        if cli_yaml is not None:
            shutil.rmtree(cli_yaml.parent / "out", ignore_errors=True)
            bl.settle()
            res.add("cli", "a", *cli_run(cli_yaml, scale, args.jobs))
        print(f"  cold run {k + 1}/{rep} done (load {bl.load()})")

    if args.profile:
        print("\n--- cProfile: stagewise cold run (W1 a; coordinator process, workers not seen) ---")
        cold_pipeline = sw_pipeline(raw, root / "swprofile", n)
        print(bl.profile(lambda: sw_run(cold_pipeline, scale, args.jobs)))
        shutil.rmtree(root / "swprofile", ignore_errors=True)

    time.sleep(2.1)  # past the racy-clean window (files hashed < 2 s after being written are re-hashed)
    warm = sw_run(pipeline, scale, args.jobs)  # warm-up no-op (also re-hashes the last racy files)
    sw_run(serial, scale, 1, "serial")
    if cli_yaml is not None:
        cli_run(cli_yaml, scale, args.jobs)
    print(f"  warm-up no-op ran {ran_str(warm)}")

    def rerun(scenario: str, scale: float) -> None:
        """One timing of every rerun contender, interleaved."""
        res.note_load(scenario)
        res.add("stagewise", scenario, *bl.timed(lambda: sw_run(pipeline, scale, args.jobs)))
        res.add("serial", scenario, *bl.timed(lambda: sw_run(serial, scale, 1, "serial")))
        res.add("make", scenario, *bl.timed(lambda: make_style(raw, root / "make", n, scale)))
        res.add("plain", scenario, *bl.timed(lambda: plain_loop(raw, root / "plain", n, scale)))
        if cli_yaml is not None:
            res.add("cli", scenario, *cli_run(cli_yaml, scale, args.jobs))

    # (b) no-op
    for _ in range(rep):
        rerun("b", scale)

    if args.profile:
        print("\n--- cProfile: stagewise no-op (W1 b) ---")
        print(bl.profile(lambda: sw_run(pipeline, scale, args.jobs)))

    # (c) only scale changes
    for _ in range(rep):
        scale += 1.0
        rerun("c", scale)

    # (d) one input file's bytes change (a different file each time)
    for k in range(rep):
        change_input(raw, (k * 7919) % n)
        rerun("d", scale)

    if args.profile:
        change_input(raw, n // 2)
        print("\n--- cProfile: stagewise after one input changed (W1 d) ---")
        print(bl.profile(lambda: sw_run(pipeline, scale, args.jobs)))
        make_style(raw, root / "make", n, scale)
        plain_loop(raw, root / "plain", n, scale)

    # the three agree on the result
    values = {who: json.loads((root / who / "summary" / "summary.json").read_text())["value"]
              for who in ("make", "plain")}  # fmt: skip
    values["stagewise"] = json.loads((sw_out / "summary" / "summary.json").read_text())["value"]
    agree = max(values.values()) - min(values.values()) <= 1e-9 * max(1.0, abs(values["plain"]))

    print_w1_table(res, n, agree, values)

    # peers, each at its N; stagewise's CLI runs the same protocol at every N the peers use
    peer_rep = args.peer_repeat or rep
    wanted = []
    for name in peers:
        module = {"snakemake": "snakemake", "doit": "doit", "luigi": "luigi"}.get(name)
        if module is None:
            print(f"  unknown peer {name!r}: skipped")
        elif not bl.peer_available(args.venv, module):
            print(f"  {name}: not installed in {args.venv} (or numpy missing there): skipped")
        else:
            wanted.append((name, args.snakemake_n if name == "snakemake" else (args.peer_n or n)))
    by_n: dict[int, list[dict[str, Any]]] = {}
    for _, pn in wanted:
        by_n.setdefault(pn, [])
    for pn in sorted(by_n):
        peer_raw = raw if pn == n else root / f"raw{pn}"
        if pn != n:
            make_inputs(peer_raw, pn)
        names = [name for name, m in wanted if m == pn] + ([] if pn == n or args.no_cli else ["stagewise"])
        for name in names:
            print(f"  {name}: running W1 on N={pn} ... (load {bl.load()})", flush=True)
            folder = root / "peers" / f"{name}{pn}"
            by_n[pn].append(
                run_peer(name, args.venv, folder, peer_raw, pn, peer_rep, args.peer_timeout, args.jobs)
            )
            shutil.rmtree(folder, ignore_errors=True)
    for pn, rows in by_n.items():
        print_peer_table(rows, res, pn, n)
    return 0


def run_peer(
    name: str, venv: str, folder: Path, raw: Path, n: int, rep: int, timeout: float, jobs: int
) -> dict[str, Any]:
    peer = Peer(name, venv, folder, raw, n, jobs)
    row: dict[str, Any] = {"name": name, "loads": []}
    scale = 1.0
    try:
        row["loads"].append(bl.load())
        row["a"] = peer.run(scale, timeout)  # cold once: the expensive one
        time.sleep(1.1)
        peer.run(scale, timeout)  # warm-up
        row["loads"].append(bl.load())
        runs = [peer.run(scale, timeout) for _ in range(rep)]
        row["b"] = (bl.median([r[0] for r in runs]), runs[-1][1])
        runs = []
        for _ in range(rep):
            scale += 1.0
            runs.append(peer.run(scale, timeout))
        row["c"] = (bl.median([r[0] for r in runs]), runs[-1][1])
        runs = []
        for k in range(rep):
            time.sleep(0.01)
            change_input(raw, (k * 7919 + 1) % n)
            runs.append(peer.run(scale, timeout))
        row["d"] = (bl.median([r[0] for r in runs]), runs[-1][1])
        row["loads"].append(bl.load())
    except Exception as exc:  # a peer failing must not lose the other figures
        row["error"] = str(exc).splitlines()[0][:200]
        print(f"  {name} failed: {exc}"[:3000])
    return row


def _ideal_mark(ran: dict[str, int] | None, sc: str, n: int) -> str:
    """'' when the items run are ideal or unknown, else ' (!a/b/c)'."""
    if ran is None or ran == NO_COUNTS or is_ideal(ran, sc, n):
        return ""
    return f" (!{ran_str(ran)})"


def print_w1_table(res: Results, n: int, agree: bool, values: dict[str, float]) -> None:
    print()
    print(f"W1 results, seconds (median), N={n}. 'ran' = items run normalize/spectrum/summarize.")
    rows = []
    for sc, label in (
        ("a", "a cold"),
        ("b", "b no-op"),
        ("c", "c scale changed"),
        ("d", "d one input changed"),
    ):
        ran = res.r("stagewise", sc)
        rows.append([
            label,
            bl.fmt_s(res.t("stagewise", sc)),
            ran_str(ran) + ("" if ran is None else (" ideal" if is_ideal(ran, sc, n) else " NOT IDEAL")),
            bl.fmt_s(res.t("serial", sc)),
            bl.fmt_s(res.t("cli", sc)) + _ideal_mark(res.r("cli", sc), sc, n),
            bl.fmt_s(res.t("plain", sc)),
            bl.fmt_s(res.t("pool", sc)),
            bl.fmt_s(res.t("make", sc)),
            ran_str(res.r("make", sc)),
            ",".join(res.loads.get(sc, [])),
        ])  # fmt: skip
    print(bl.table(
        ["scenario", "stagewise", "stagewise ran", "sw serial", "sw CLI", "plain loop", "Pool(2)", "make-style", "make ran", "load"],
        rows,
    ))  # fmt: skip
    print()
    a_sw, a_pool = res.t("stagewise", "a"), res.t("pool", "a")
    rows = [["a cold: stagewise / Pool(2)", bl.fmt_ratio(a_sw, a_pool), "<= 1.30x",
             bl.verdict(a_sw / a_pool if a_sw and a_pool else None, 1.3)]]  # fmt: skip
    for sc in ("b", "c", "d"):
        sw, mk = res.t("stagewise", sc), res.t("make", sc)
        ratio = sw / mk if sw and mk else None
        ran = res.r("stagewise", sc)
        ideal = ran is not None and is_ideal(ran, sc, n)
        rows.append([f"{sc}: stagewise / make-style", bl.fmt_ratio(sw, mk), "<= 2.00x + ideal items",
                     bl.verdict(ratio, 2.0) + ("" if ideal else " (NOT IDEAL)")])  # fmt: skip
    rows.append(["a cold: stagewise / plain loop", bl.fmt_ratio(a_sw, res.t("plain", "a")), "", ""])
    print(bl.table(["ratio", "value", "target", "verdict"], rows))
    print(f"results agree: {agree} ({', '.join(f'{k}={v:.6g}' for k, v in values.items())})")


def print_peer_table(rows: list[dict[str, Any]], res: Results, peer_n: int, n: int) -> None:
    print()
    print(f"W1 peers, N={peer_n}, seconds (cold: 1 run; others: median), whole subprocesses.")
    table_rows = []
    for row in rows:
        cells = [row["name"] + (" CLI" if row["name"] == "stagewise" else "")]
        for sc in ("a", "b", "c", "d"):
            if sc in row:
                sec, ran = row[sc]
                text = ran_str(ran)
                mark = "" if text == "-" or is_ideal(ran, sc, peer_n) else "!"
                cells.append(bl.fmt_s(sec) + ("" if text == "-" else f" [{text}{mark}]"))
            else:
                cells.append("-")
        cells.append(",".join(row["loads"]) + (f"  ERROR: {row['error']}" if "error" in row else ""))
        table_rows.append(cells)
    if peer_n == n and res.t("cli", "a") is not None:
        table_rows.append(["stagewise CLI (above)"] + [bl.fmt_s(res.t("cli", sc)) for sc in "abcd"]
                          + [",".join(res.loads.get("a", []))])  # fmt: skip
    print(
        bl.table(
            ["tool", "a cold [ran]", "b no-op [ran]", "c scale [ran]", "d one input [ran]", "load"],
            table_rows,
        )
    )
    print("[ran] = items run normalize/spectrum/summarize, from each tool's own log; '!' = not the ideal set")


if __name__ == "__main__":
    sys.exit(main())
