"""Executors (SPEC 3 and 7): the same results everywhere, and failures that stay with their item.

The parity test runs one pipeline (a per-item stage with a rejected item and ``Result`` metadata,
a per-item consumer, a collection reduce) with every executor — serial, the reference, threads,
local processes and, when installed, Dask — and compares bytes and metadata. The other tests drive
``python -m stagewise run --executor local -j 2`` (or a script's ``pipeline.main()``) in scratch
projects: items that raise, segfault or SIGKILL their worker; retries; ``--fail-fast``; stages
from ``__main__``; class-stage ``setup``; ``memory=``; Ctrl-C. Bodies append to log files, so
the tests know which items each run executed, in which process, and when.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import fixtures.executor_parity_stages as parity
from conftest import Project, outputs, rows
from stagewise import Pipeline
from stagewise.run.cpus import available_memory_bytes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and /proc")

HAS_DASK = (
    importlib.util.find_spec("stagewise.run.executors.dask") is not None
    and importlib.util.find_spec("distributed") is not None
)


# --- helpers ---------------------------------------------------------------------------------------


def logged(path: Path) -> list[str]:
    """The lines a log file holds (none when it does not exist)."""
    return path.read_text().splitlines() if path.exists() else []


def meta_json(project: Project, stage: str, *args: str) -> list[dict[str, Any]]:
    """``stagewise meta STAGE --format json``, parsed; fails when the command fails."""
    result = project.cli("meta", stage, "--format", "json", *args)
    assert result.code == 0, result.describe()
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def status_of(project: Project, stage: str) -> dict[str, Any]:
    """The ``stagewise status --format json`` row of one stage."""
    result = project.cli("status", "--format", "json")
    assert result.code == 0, result.describe()
    return next(row for row in json.loads(result.stdout) if row["stage"] == stage)


def session_processes(sid: int) -> list[str]:
    """``pid state cmdline`` of every live (non-zombie) process in session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{entry.name} {fields[0]} {cmdline.strip()}")
    return found


# --- 1. the same pipeline on every executor --------------------------------------------------------

PARITY_ITEMS = 10
EXECUTORS = [
    "threads",
    "local",
    pytest.param("dask", marks=[pytest.mark.slow, pytest.mark.skipif(not HAS_DASK, reason="needs dask")]),
]


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Outputs and metadata of the parity pipeline run by the serial executor (the reference)."""
    root = tmp_path_factory.mktemp("serial")
    pipeline = Pipeline(parity.STAGES, dims={"i": PARITY_ITEMS}, output=root)
    report = pipeline.run(executor="serial")
    assert report.ok, report.failures
    meta = {name: rows(pipeline.meta(name)) for name in ("wave", "energy", "summary")}
    return outputs(root), meta


def test_serial_reference_rejects_one_item_and_reduces_the_others(
    serial_reference: tuple[dict[str, bytes], dict[str, Any]],
) -> None:
    files, meta = serial_reference
    kept = [i for i in range(PARITY_ITEMS) if i != 3]
    assert sorted(f for f in files if f.startswith("waves/")) == [f"waves/{i:02d}.npy" for i in kept]
    assert sorted(f for f in files if f.startswith("energy/")) == [f"energy/{i:02d}.json" for i in kept]
    summary = json.loads(files["summary.json"])
    assert summary["keys"] == kept
    assert [row["i"] for row in meta["wave"]] == kept
    assert all(row["n"] == 256 for row in meta["wave"])
    assert [row["i"] for row in meta["energy"]] == kept
    energies = {row["i"]: row["energy"] for row in meta["energy"]}
    assert summary["total"] == pytest.approx(sum(energies.values()))
    assert meta["summary"] == [{"n": len(kept), "largest": PARITY_ITEMS - 1}]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_executor_writes_the_same_bytes_and_metadata_as_serial(
    executor: str, serial_reference: tuple[dict[str, bytes], dict[str, Any]], tmp_path: Path
) -> None:
    files, meta = serial_reference
    pipeline = Pipeline(parity.STAGES, dims={"i": PARITY_ITEMS}, output=tmp_path)

    report = pipeline.run(executor=executor, jobs=2)

    assert report.ok, report.failures
    assert report.counts["wave"]["rejected"] == 1
    assert report.counts["energy"]["rejected"] == 1  # "upstream rejected"
    assert outputs(tmp_path) == files
    assert {name: rows(pipeline.meta(name)) for name in meta} == meta
    again = pipeline.run(executor=executor, jobs=2)
    assert sum(c["done"] for c in again.counts.values()) == 0  # recorded: nothing left to do


# --- 2. failure isolation on the local executor ---------------------------------------------------

FAULTY_STAGES = '''
import ctypes
import os
import signal
import time
from pathlib import Path

from stagewise import Item, stage

CALLS = Path(__file__).with_name("calls.log")


def enter(name):
    with open(CALLS, "a") as fh:
        fh.write(name + "\\n")


def misbehave(i):
    """Do what FAULTS (``"2=raise,5=segfault"``) says for item i; FLAKY fails once."""
    plan = dict(part.split("=") for part in os.environ.get("FAULTS", "").split(",") if part)
    what = plan.get(str(i))
    if what == "raise":
        raise ValueError(f"item {i} refuses to square")
    if what == "segfault":
        ctypes.string_at(0)
    if what == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if str(i) == os.environ.get("FLAKY"):
        marker = Path(os.environ["FLAKY_MARKER"])
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError(f"item {i} is flaky")


@stage(outputs={"sq": "squares/{i}.json"}, over=("i",))
def square(item: Item):
    enter(f"square {item.i}")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    misbehave(item.i)
    return {"i": item.i, "sq": item.i * item.i}


@stage(inputs={"sq": "square.sq"}, outputs={"total": "total.json"})
def total(sq):
    enter("total")
    return {"total": sum(handle.read()["sq"] for handle in sq.values())}


@stage(outputs={"note": "notes/{i}.txt"}, over=("i",))
def notes(item: Item):
    enter(f"notes {item.i}")
    return f"note {item.i}"
'''

FAULTY_PIPELINE = """
pipeline: faulty
stages_from: [stages.py]
output: out
dims: {i: 8}
"""

ITEMS = range(8)
LOCAL = ("--executor", "local", "-j", "2")


@pytest.fixture
def faulty(project: Project) -> Project:
    project.stages(FAULTY_STAGES)
    project.pipeline(FAULTY_PIPELINE)
    return project


def squares_written(project: Project) -> dict[int, int]:
    """Item -> the square written for it."""
    found = {}
    for path in (project.root / "out" / "squares").glob("*.json"):
        value = json.loads(path.read_text())
        found[value["i"]] = value["sq"]
    return found


def test_an_item_that_raises_fails_alone_and_its_traceback_and_tags_are_shown(faulty: Project) -> None:
    result = faulty.cli("run", *LOCAL, env={"FAULTS": "2=raise"})

    assert result.code == 1, result.describe()
    assert squares_written(faulty) == {i: i * i for i in ITEMS if i != 2}  # the stage's others finished
    assert not (faulty.root / "out" / "total.json").exists()  # downstream did not start
    assert "total" not in logged(faulty.root / "calls.log")
    notes = sorted(p.name for p in (faulty.root / "out" / "notes").glob("*.txt"))
    assert notes == sorted(f"{i}.txt" for i in ITEMS)  # an independent branch still ran
    # the item's tags, and the last lines of its traceback, on stderr
    assert any("square" in line and "i=2" in line for line in result.stderr.splitlines()), result.describe()
    assert "ValueError: item 2 refuses to square" in result.stderr
    assert 'raise ValueError(f"item {i} refuses to square")' in result.stderr
    assert "Traceback" not in result.stdout


@pytest.mark.slow
def test_segfault_and_sigkill_fail_only_their_item_naming_the_signal_and_the_rerun_redoes_them(
    faulty: Project,
) -> None:
    first = faulty.cli("run", *LOCAL, env={"FAULTS": "3=segfault,5=sigkill"})

    assert first.code == 1, first.describe()
    assert squares_written(faulty) == {i: i * i for i in ITEMS if i not in (3, 5)}
    assert "SIGSEGV" in first.line_with("square", "i=3")
    assert "SIGKILL" in first.line_with("square", "i=5")
    assert not (faulty.root / "out" / "total.json").exists()
    status = status_of(faulty, "square")
    assert (status["done"], status["failed"]) == (6, 2), status

    calls = faulty.root / "calls.log"
    calls.unlink()
    fixed = faulty.cli("run", *LOCAL, env={"FAULTS": ""})

    assert fixed.code == 0, fixed.describe()
    assert sorted(logged(calls)) == ["square 3", "square 5", "total"]  # only what had not finished
    assert squares_written(faulty) == {i: i * i for i in ITEMS}
    total = json.loads((faulty.root / "out" / "total.json").read_text())
    assert total == {"total": sum(i * i for i in ITEMS)}


def test_retries_rerun_an_item_that_fails_on_its_first_attempt(faulty: Project) -> None:
    marker = faulty.root / "flaky.marker"

    result = faulty.cli("run", *LOCAL, "--retries", "2", env={"FLAKY": "4", "FLAKY_MARKER": str(marker)})

    assert result.code == 0, result.describe()
    assert marker.exists()  # the first attempt did fail
    assert Counter(logged(faulty.root / "calls.log"))["square 4"] == 2
    assert squares_written(faulty) == {i: i * i for i in ITEMS}
    assert status_of(faulty, "square")["failed"] == 0


def test_fail_fast_stops_at_the_first_failed_item(faulty: Project) -> None:
    faulty.pipeline(FAULTY_PIPELINE.replace("{i: 8}", "{i: 16}"))

    result = faulty.cli("run", *LOCAL, "--fail-fast", env={"FAULTS": "0=raise", "SLEEP": "0.3"})

    assert result.code == 1, result.describe()
    done = squares_written(faulty)
    assert 0 not in done
    assert len(done) < 15, f"{len(done)} of the 15 items that could finish did: no early stop"
    assert not (faulty.root / "out" / "total.json").exists()


# --- 3. stages from __main__, and project modules next to the stages --------------------------------

EXPERIMENT = """
import multiprocessing
import os

from stagewise import Item, Pipeline, Result, stage

OFFSET = 100


def shifted(i):
    return 3 * i + OFFSET


@stage(outputs={"v": "values/{i}.json"}, over=("i",))
def values(item: Item, *, factor: int = 1):
    in_worker = multiprocessing.parent_process() is not None
    return Result({"i": item.i, "v": factor * shifted(item.i)}, meta={"pid": os.getpid(), "worker": in_worker})


@stage(inputs={"v": "values.v"}, outputs={"total": "total.json"})
def total(v):
    return {"total": sum(handle.read()["v"] for handle in v.values())}


pipeline = Pipeline([values, total], dims={"i": 6}, output="out")

if __name__ == "__main__":
    pipeline.main()
"""


def test_stages_defined_in_a_script_run_on_the_local_executor_by_value(project: Project) -> None:
    project.write("experiment.py", EXPERIMENT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    script = subprocess.Popen(
        [sys.executable, "experiment.py", "run", "--executor", "local", "-j", "2", "--values.factor", "2"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = script.communicate(timeout=120)

    assert script.returncode == 0, f"[exit {script.returncode}]\n{stdout}{stderr}"
    out = project.root / "out"
    assert json.loads((out / "total.json").read_text()) == {"total": sum(2 * (3 * i + 100) for i in range(6))}
    assert json.loads((out / "values" / "4.json").read_text()) == {"i": 4, "v": 224}
    meta = _script_meta(project)
    assert len(meta) == 6
    assert all(row["worker"] and row["pid"] != script.pid for row in meta), meta


def _script_meta(project: Project) -> list[dict[str, Any]]:
    """``python experiment.py meta values --format json``, parsed."""
    done = subprocess.run(
        [sys.executable, "experiment.py", "meta", "values", "--format", "json"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    meta: list[dict[str, Any]] = json.loads(done.stdout)
    return meta


def test_a_stage_module_importing_a_helper_next_to_it_runs_on_the_local_executor(project: Project) -> None:
    project.write("proj/helpers.py", "def scale(x):\n    return 10 * x + 1\n")
    project.write(
        "proj/stages.py",
        """
        import multiprocessing

        from helpers import scale
        from stagewise import Item, stage


        @stage(outputs={"v": "scaled/{i}.json"}, over=("i",))
        def scaled(item: Item):
            return {"v": scale(item.i), "worker": multiprocessing.parent_process() is not None}
        """,
    )
    project.write("proj/pipeline.yaml", "stages_from: [stages.py]\noutput: out\ndims: {i: 5}\n")

    # From another folder, with no PYTHONPATH: the pipeline's folder alone makes helpers importable.
    result = project.cli("run", "proj/pipeline.yaml", *LOCAL, env={"PYTHONPATH": None})

    assert result.code == 0, result.describe()
    written = {
        int(p.stem): json.loads(p.read_text())
        for p in (project.root / "proj" / "out" / "scaled").glob("*.json")
    }
    assert written == {i: {"v": 10 * i + 1, "worker": True} for i in range(5)}


# --- 4. class stages: setup once per worker process ------------------------------------------------

CLASS_STAGES = '''
import os
import time
from pathlib import Path

from stagewise import Item, stage

SETUPS = Path(__file__).with_name("setup.log")
CALLS = Path(__file__).with_name("process.log")


@stage(outputs={"r": "r/{i:02d}.json"}, over=("i",))
class Scaler:
    """Multiply by a factor loaded once per worker."""

    def __init__(self, *, factor: int = 3):
        self.factor = factor
        self.loaded = None

    def setup(self):
        with open(SETUPS, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        self.loaded = self.factor

    def process(self, item: Item):
        with open(CALLS, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.05)
        return {"i": item.i, "v": item.i * self.loaded}
'''


def test_class_stage_setup_runs_once_per_worker_process(project: Project) -> None:
    project.stages(CLASS_STAGES)
    project.pipeline("stages_from: [stages.py]\noutput: out\ndims: {i: 12}\n")

    result = project.cli("run", *LOCAL)

    assert result.code == 0, result.describe()
    setups = Counter(logged(project.root / "setup.log"))
    served = Counter(logged(project.root / "process.log"))
    assert 1 <= len(setups) <= 2, setups
    assert set(setups.values()) == {1}, f"a worker set up more than once: {setups}"
    assert set(served) <= set(setups), "an item ran in a process whose setup did not run"
    assert sum(served.values()) == 12 and max(served.values()) > 1
    for path in (project.root / "out" / "r").glob("*.json"):
        value = json.loads(path.read_text())
        assert value["v"] == 3 * value["i"]


# --- 5. memory= limits how many items run at once ----------------------------------------------------

MEMORY_STAGES = """
import time

from stagewise import Item, stage


def interval(seconds):
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


@stage(outputs={"t": "hog/{i}.json"}, over=("i",), memory="{memory}")
def hog(item: Item):
    return interval(0.4)


@stage(outputs={"t": "free/{i}.json"}, over=("i",))
def free(item: Item):
    return interval(0.4)
"""


def intervals(folder: Path) -> list[tuple[float, float]]:
    spans = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted((s["start"], s["end"]) for s in spans)


def overlapping(spans: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(a, b) for a in range(len(spans)) for b in range(a + 1, len(spans)) if spans[b][0] < spans[a][1]]


@pytest.mark.slow
def test_memory_larger_than_half_the_available_runs_one_item_at_a_time(project: Project) -> None:
    available = available_memory_bytes()
    if not available:
        pytest.skip("available memory unknown on this system")
    budget = f"{int(available * 0.6) // 10**6}MB"
    project.stages(MEMORY_STAGES.replace("{memory}", budget))
    project.pipeline("stages_from: [stages.py]\noutput: out\ndims: {i: 6}\n")

    result = project.cli("run", *LOCAL)

    assert result.code == 0, result.describe()
    hog = intervals(project.root / "out" / "hog")
    free = intervals(project.root / "out" / "free")
    assert len(hog) == len(free) == 6
    assert overlapping(hog) == [], f"items of a stage needing {budget} of {available} B overlapped: {hog}"
    assert overlapping(free), f"without memory=, -j 2 never ran two items at once: {free}"


# --- 6. Ctrl-C -------------------------------------------------------------------------------------------

SLOW_STAGES = """
import os
import time

from stagewise import Item, Result, stage


@stage(outputs={"v": "slow/{i:02d}.json"}, over=("i",))
def slow(item: Item):
    with open(os.environ["CALLS_LOG"], "a") as fh:
        fh.write(f"{item.i}\\n")
    time.sleep(0.25)
    return Result({"i": item.i}, meta={"slept": 0.25})
"""


@pytest.mark.slow
def test_ctrl_c_exits_130_leaves_no_worker_behind_and_the_next_run_does_only_the_rest(
    project: Project,
) -> None:
    project.stages(SLOW_STAGES)
    project.pipeline("stages_from: [stages.py]\noutput: out\ndims: {i: 24}\n")
    first_log, rest_log = project.root / "first.log", project.root / "rest.log"
    interrupted = subprocess.Popen(
        [sys.executable, "-m", "stagewise", "run", *LOCAL],
        cwd=project.root,
        env=dict(os.environ, CALLS_LOG=str(first_log)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, signalled as a terminal does on Ctrl-C
    )
    try:
        deadline = time.monotonic() + 60
        while len(logged(first_log)) < 4:
            assert interrupted.poll() is None, f"the run ended early: {interrupted.communicate()}"
            assert time.monotonic() < deadline, "the run never started its items"
            time.sleep(0.02)
        os.killpg(interrupted.pid, signal.SIGINT)
        stdout, stderr = interrupted.communicate(timeout=60)
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
            interrupted.wait()

    assert interrupted.returncode == 130, f"[exit {interrupted.returncode}]\n{stdout}{stderr}"
    assert "Traceback" not in stderr, stderr
    left = session_processes(interrupted.pid)
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:  # a forkserver may take a moment to see EOF
        time.sleep(0.1)
        left = session_processes(interrupted.pid)
    assert left == [], f"processes of the interrupted run still alive: {left}"

    recorded = {row["i"] for row in meta_json(project, "slow")}
    assert recorded, "nothing was recorded before the interruption"
    assert len(recorded) < 24
    rest = project.cli("run", *LOCAL, env={"CALLS_LOG": str(rest_log)})

    assert rest.code == 0, rest.describe()
    assert sorted(int(i) for i in logged(rest_log)) == sorted(set(range(24)) - recorded)
    assert sorted(p.name for p in (project.root / "out" / "slow").iterdir()) == [
        f"{i:02d}.json" for i in range(24)
    ]


def test_the_forkserver_preloads_what_workers_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from stagewise.run.executors import local

    # python -m stagewise (or pytest): workers do not re-run __main__, they need the worker side
    assert local._preload() == ["stagewise.run.worker"]
    # a script: workers re-run it, so every stagewise module it imported is worth preloading
    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/pipeline.py"
    monkeypatch.setitem(sys.modules, "__main__", script)
    names = local._preload()
    assert names[0] == "stagewise.run.worker"
    assert {"stagewise.run.pool_wire", "stagewise.handlers", "stagewise.run.executors.local"} <= set(names)
