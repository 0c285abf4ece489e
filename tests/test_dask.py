"""The Dask executor: real pipelines on a real LocalCluster, and on a "remote" cluster that cannot
import the project.

Most tests share one ``DaskExecutor(2)`` (a LocalCluster starts in seconds). Stages come from an
importable fixture module (``tests/fixtures/dask_stages.py``, imported as ``fixtures.dask_stages``:
``tests/`` is on ``sys.path`` under pytest, and the executor gives workers the coordinator's
``sys.path`` with each batch), from this module, and from inside a test function (by value).
The batching and blame rules are also tested without Dask, with a fake executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import fixtures.dask_stages as ds
from conftest import outputs, rows
from stagewise import Item, Pipeline, stage
from stagewise.errors import ConfigError, Interrupted
from stagewise.run.executors.dask import DaskExecutor, FuturesExecutor
from stagewise.run.task import Outcome, Task

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs the dask extra (distributed)"
)

# --- helpers ---------------------------------------------------------------------------------------


def failures_by_item(report: Any) -> dict[str, Any]:
    return {f.item: f for f in report.failures}


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    """One LocalCluster of two worker processes for the module."""
    executor = DaskExecutor(2)
    try:
        yield executor
    finally:
        executor.close()


# --- a stage defined in this module (travels by reference: workers import test_dask) --------------


@stage(inputs={"value": "numbers.value"}, outputs={"cube": "cubes/{i:03d}.json"}, over=("i",))
def cube(value):
    return {"i": value["i"], "cube": value["i"] ** 3}


@stage(outputs={"pid": "napped/{i:03d}.json"}, over=("i",))
def napper(item: Item, *, seconds: float = 1.0):
    time.sleep(seconds)
    return {"i": item.i}


@stage(outputs={"code": "children/{i}.json"}, over=("i",))
def with_a_child_process(item: Item):
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    child.start()  # "daemonic processes are not allowed to have children" unless daemon is off
    child.join()
    return {"exitcode": child.exitcode}


# --- without a cluster -----------------------------------------------------------------------------


def test_importing_the_module_does_not_import_dask() -> None:
    code = (
        "import sys, stagewise.run.executors.dask; print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_distributed_an_executor_asks_for_the_dask_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ConfigError) as caught:
        DaskExecutor(2)
    assert "--executor dask needs the dask extra" in str(caught.value)
    assert caught.value.hint == "pip install 'stagewise[dask]'"


@needs_dask
def test_an_unreachable_scheduler_is_a_config_error() -> None:
    import dask
    import distributed  # noqa: F401 - before dask.config.set, which would otherwise drop its defaults

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(ConfigError) as caught:
        DaskExecutor(2, scheduler="tcp://127.0.0.1:1")
    assert "--scheduler tcp://127.0.0.1:1: cannot connect" in str(caught.value)


# --- the batching and blame rules, through FuturesExecutor and a fake executor --------------------


class KilledWorker(Exception):
    """Named like Dask's: the executors recognise a worker death by the name."""

    def __init__(self, address: str) -> None:
        super().__init__(f"worker {address} died")
        self.last_worker = SimpleNamespace(address=address, pid=1)


class FakeCluster(cf.Executor):
    """Answers each batch at once: its worker died (``deaths(items, attempt)`` names the worker),
    or every item is done. Records the items of each batch it was given."""

    def __init__(self, deaths: Callable[[list[int], int], str | None]) -> None:
        self.deaths = deaths
        self.calls: list[list[int]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        _, batch = pickle.loads(args[1])
        items = [json.loads(t.key)[0] for t in batch]
        self.calls.append(items)
        future: cf.Future[Any] = cf.Future()
        address = self.deaths(items, len(self.calls))
        if address:
            future.set_exception(KilledWorker(address))
        else:
            future.set_result([Outcome("s", t.key, "done") for t in batch])
        return future


def tasks(n: int) -> list[Task]:
    return [
        Task(stage="s", stage_ref=None, key=json.dumps([i]), tags={"i": i}, inputs={}, outputs={}, params={})
        for i in range(n)
    ]


def run_all(cluster: FakeCluster, n: int, jobs: int = 2) -> dict[int, Outcome]:
    return {json.loads(o.key)[0]: o for o in FuturesExecutor(cluster, jobs).run(tasks(n))}


def test_a_batch_whose_worker_died_is_rerun_item_by_item_and_only_the_culprit_fails() -> None:
    cluster = FakeCluster(lambda items, attempt: f"tcp://w{attempt}" if 13 in items else None)
    results = run_all(cluster, 64)
    assert sorted(results) == list(range(64))
    assert [i for i, o in results.items() if o.status == "failed"] == [13]
    assert (results[13].reason or "").startswith("the worker running this item died: KilledWorker")
    first = next(c for c in cluster.calls if 13 in c)
    assert len(first) > 1 and cluster.calls.count([13]) == 1  # split, then blamed at once


def test_an_item_that_died_alongside_another_gets_one_more_try() -> None:
    # Items 1 and 2 die together on one worker (2 was queued behind 1): both are retried, and
    # only 1, which dies again, fails.
    def deaths(items: list[int], attempt: int) -> str | None:
        if items == [1]:
            return "tcp://shared" if attempt <= 3 else f"tcp://w{attempt}"
        return "tcp://shared" if items == [2] and attempt <= 3 else None

    results = run_all(FakeCluster(deaths), 4)
    assert {i: o.status for i, o in results.items()} == {0: "done", 1: "failed", 2: "done", 3: "done"}


def test_a_terminated_executor_raises_interrupted() -> None:
    executor = FuturesExecutor(FakeCluster(lambda items, attempt: None), 1)
    executor.terminate()
    with pytest.raises(Interrupted):
        next(executor.run(tasks(3)))


# --- on a LocalCluster -----------------------------------------------------------------------------


@needs_dask
@pytest.mark.slow
def test_outputs_and_metadata_match_the_serial_executor(dask_executor: DaskExecutor, tmp_path: Path) -> None:
    stages = [ds.numbers, ds.shout, ds.total, cube]
    serial = Pipeline(stages, dims={"i": 40}, output=tmp_path / "serial")
    on_dask = Pipeline(stages, dims={"i": 40}, output=tmp_path / "dask")
    assert serial.run(executor="serial").ok
    report = on_dask.run(executor=dask_executor)
    assert report.ok, report.failures
    assert {s: c["done"] for s, c in report.counts.items()} == {
        "numbers": 40,
        "shout": 40,
        "total": 1,
        "cube": 40,
    }
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "serial")
    assert (tmp_path / "dask" / "shout" / "003.shout").read_text() == "SQUARE 9"
    meta = rows(on_dask.meta("numbers"))
    assert sorted(r["i"] for r in meta) == list(range(40))
    assert all(r["pid"] != os.getpid() for r in meta)  # the items ran in worker processes
    again = on_dask.run(executor=dask_executor)
    assert sum(c["done"] for c in again.counts.values()) == 0  # recorded: nothing left to do


@needs_dask
@pytest.mark.slow
def test_a_stage_defined_inside_a_function_travels_by_value(
    dask_executor: DaskExecutor, tmp_path: Path
) -> None:
    factor = 7

    @stage(inputs={"value": "numbers.value"}, outputs={"v": "scaled/{i:03d}.json"}, over=("i",))
    def scaled(value):
        return {"v": value["square"] * factor}

    report = Pipeline([ds.numbers, scaled], dims={"i": 5}, output=tmp_path).run(executor=dask_executor)
    assert report.ok, report.failures
    assert json.loads((tmp_path / "scaled" / "004.json").read_text()) == {"v": 16 * 7}


@needs_dask
@pytest.mark.slow
def test_a_failing_or_crashing_item_fails_alone(dask_executor: DaskExecutor, tmp_path: Path) -> None:
    # 48 items: batches of 3, so each crash first takes a whole batch down.
    plan = "4=raise,17=segfault,30=sigkill"
    pipeline = Pipeline([ds.crashy], dims={"i": 48}, output=tmp_path, params={"crashy.plan": plan})
    report = pipeline.run(executor=dask_executor)
    failed = failures_by_item(report)
    assert sorted(failed) == ["i=17", "i=30", "i=4"]
    assert report.counts["crashy"]["done"] == 45
    assert failed["i=4"].reason == "ValueError: item 4 refuses"
    assert "dask_stages.py" in failed["i=4"].error and "refuses" in failed["i=4"].error
    assert "died with SIGSEGV" in failed["i=17"].reason, failed["i=17"].reason
    assert "killed by SIGKILL" in failed["i=30"].reason, failed["i=30"].reason
    assert len(list((tmp_path / "crashy").glob("*.json"))) == 45
    assert sorted(p.name for p in tmp_path.rglob(".*.tmp*")) == []


@needs_dask
@pytest.mark.slow
def test_stages_defined_in_a_script_run_on_the_workers(tmp_path: Path) -> None:
    script = tmp_path / "experiment.py"
    script.write_text(
        textwrap.dedent("""
            import json, sys
            from stagewise import Item, Pipeline, stage
            from stagewise.run.executors.dask import DaskExecutor

            def helper(i):
                return i + 100

            @stage(outputs={"v": "v/{i}.json"}, over=("i",))
            def gen(item: Item):
                return {"v": helper(item.i)}

            if __name__ == "__main__":
                with DaskExecutor(2) as executor:
                    report = Pipeline([gen], dims={"i": 4}, output=sys.argv[1]).run(executor=executor)
                print(json.dumps([f.reason for f in report.failures]))
        """)
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert json.loads((tmp_path / "out" / "v" / "3.json").read_text()) == {"v": 103}


@needs_dask
@pytest.mark.slow
def test_stages_may_start_processes_on_workers(dask_executor: DaskExecutor, tmp_path: Path) -> None:
    report = Pipeline([with_a_child_process], dims={"i": 1}, output=tmp_path).run(executor=dask_executor)
    assert report.ok, report.failures
    assert json.loads((tmp_path / "children" / "0.json").read_text()) == {"exitcode": 0}


@needs_dask
@pytest.mark.slow
def test_an_executor_from_client_get_executor_runs_the_pipeline_through_the_adapter(
    dask_executor: DaskExecutor, tmp_path: Path
) -> None:
    executor = FuturesExecutor(dask_executor.client.get_executor(pure=False), jobs=2)
    report = Pipeline([ds.numbers, cube], dims={"i": 6}, output=tmp_path).run(executor=executor)
    assert report.ok, report.failures
    assert json.loads((tmp_path / "cubes" / "005.json").read_text()) == {"i": 5, "cube": 125}


@needs_dask
@pytest.mark.slow
def test_a_plain_concurrent_futures_executor_is_accepted(dask_executor: DaskExecutor, tmp_path: Path) -> None:
    pool = dask_executor.client.get_executor(pure=False)
    report = Pipeline([ds.numbers], dims={"i": 3}, output=tmp_path).run(executor=pool)  # type: ignore[arg-type]
    assert report.ok, report.failures


@needs_dask
@pytest.mark.slow
def test_closing_an_executor_leaves_a_client_it_was_given_open(dask_executor: DaskExecutor) -> None:
    DaskExecutor(1, client=dask_executor.client).close()
    assert dask_executor.client.submit(abs, -3).result(timeout=30) == 3


@needs_dask
@pytest.mark.slow
def test_terminate_stops_a_run_in_another_thread(dask_executor: DaskExecutor, tmp_path: Path) -> None:
    executor = DaskExecutor(2, client=dask_executor.client)  # terminate leaves the client open
    pipeline = Pipeline([napper], dims={"i": 20}, output=tmp_path, params={"napper.seconds": 0.5})
    raised: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run(executor=executor)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "napped").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    executor.terminate()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3  # not the 5 s the 20 naps take on two workers
    assert len(raised) == 1 and isinstance(raised[0], Interrupted)
    assert len(list((tmp_path / "napped").glob("*.json"))) < 20


# --- on a cluster that cannot import the project -----------------------------------------------------


@pytest.fixture(scope="module")
def remote_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and one worker as separate processes, started where tests/ is not importable."""
    folder = tmp_path_factory.mktemp("remote")
    file = folder / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    quiet = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    cli = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [*cli, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(file)], **quiet,
    )  # fmt: skip
    worker = subprocess.Popen(
        [*cli, "distributed.cli.dask_worker", "--scheduler-file", str(file), "--nthreads", "1",
         "--no-nanny", "--no-dashboard", "--local-directory", str(folder)], **quiet,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield json.loads(file.read_text())["address"]
    finally:
        for process in (worker, scheduler):  # no nanny: neither has children to clean up
            process.kill()
            process.wait(timeout=15)


@needs_dask
@pytest.mark.slow
def test_a_remote_cluster_gets_the_project_code_by_value(remote_address: str, tmp_path: Path) -> None:
    with DaskExecutor(1, scheduler=remote_address) as executor:
        executor.client.wait_for_workers(1, timeout=60)
        cannot = executor.client.run(lambda: __import__("importlib").util.find_spec("fixtures") is None)
        assert list(cannot.values()) == [True]  # the worker really cannot import the project
        stages = [ds.numbers, ds.shout, ds.total, cube]
        report = Pipeline(stages, dims={"i": 6}, output=tmp_path / "remote").run(executor=executor)
    assert report.ok, report.failures
    assert Pipeline(stages, dims={"i": 6}, output=tmp_path / "serial").run(executor="serial").ok
    assert outputs(tmp_path / "remote") == outputs(tmp_path / "serial")
