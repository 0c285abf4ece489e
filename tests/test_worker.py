"""The worker's side of one item (``stagewise.run.worker``), driven in-process with hand-made tasks.

What the coordinator relies on: each output's digest equals ``hash_file`` of the file (or the
handler's own fingerprint), its stat is the one after the final rename, and ``hashed_at_ns`` was
taken before hashing; outcomes survive the packed trip through a worker pipe; hooks receive the
parameters they name. The end-to-end behaviour is in ``test_executors`` and ``test_run_api``.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from stagewise import Lazy, Out, Result, stage
from stagewise.model.handles import OutputHandle
from stagewise.run import pool_wire
from stagewise.run.task import InputSpec, OutputSpec, Task
from stagewise.run.worker import execute, execute_many, execute_packed, unpack_outcomes
from stagewise.state.filehash import HASH_BUFFER_SIZE, hash_file


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i}.txt"}, over=("i",))
def length(text: str) -> str:
    return str(len(text))


@stage(inputs={"text": "raw"}, outputs={"big": "big/{i}.txt"}, over=("i",))
def big(text: str) -> str:
    return text * (HASH_BUFFER_SIZE // len(text) + 3)


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i}.txt"}, over=("i",))
def through_out(text: Lazy, out: Out) -> Result:
    out["length"].write(str(len(text.read())))
    return Result(None, meta={"path": type(text.path).__name__})


def add_offset(text: str, offset: int) -> str:
    return text + "+" * offset


def takes_all(text: str, **params: Any) -> str:
    return text + "".join(sorted(params))


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i}.txt"}, over=("i",), pre=[add_offset, takes_all])
def hooked(text: str, offset: int = 0, other: str = "") -> str:
    return text


class Fingerprinted:
    """A user handler with its own fingerprint (and Path arguments, as the protocol promises)."""

    def read(self, path: Path) -> str:
        return path.read_text()

    def write(self, path: Path, data: Any) -> None:
        path.write_text(data)

    def fingerprint(self, path: Path) -> str:
        assert isinstance(path, Path)
        return "own:" + path.read_text()


def _task(st: Any, tmp_path: Path, *, handler: Any = "txt", params: dict[str, Any] | None = None) -> Task:
    source = tmp_path / "raw" / "0.txt"
    source.parent.mkdir(exist_ok=True)
    source.write_text("item 0\n")
    name = next(iter(st.outputs))
    target = tmp_path / "out" / name / "0.txt"
    return Task(
        stage=st.name,
        stage_ref=st,
        key="[0]",
        tags={"i": 0},
        inputs={"text": InputSpec("one", "txt", path=str(source), lazy="text" in st.signature.lazy)},
        outputs={name: OutputSpec(str(target), handler, rel=f"{name}/0.txt")},
        params=params or {},
    )


@pytest.mark.parametrize("st", [length, big, through_out], ids=lambda s: s.name)
def test_an_output_is_reported_with_the_digest_and_stat_of_the_file_after_the_rename(
    st: Any, tmp_path: Path
) -> None:
    task = _task(st, tmp_path)
    before = time.time_ns()
    outcome = execute(task)
    assert outcome.status == "done", outcome.error
    (name, written), *_ = outcome.outputs.items()
    path = task.outputs[name].path
    st_ = os.stat(path)
    assert written.path == path
    assert written.digest == hash_file(path)
    assert written.stat == (st_.st_size, st_.st_mtime_ns, st_.st_ino, st_.st_ctime_ns)
    assert before <= written.hashed_at_ns <= time.time_ns()
    assert sorted(os.listdir(os.path.dirname(path))) == ["0.txt"]  # no temporary file left


def test_a_handler_fingerprint_is_the_digest(tmp_path: Path) -> None:
    outcome = execute(_task(length, tmp_path, handler=Fingerprinted()))
    assert outcome.status == "done", outcome.error
    assert outcome.outputs["length"].digest == "own:7"


def test_a_lazy_input_and_an_out_handle_still_give_paths(tmp_path: Path) -> None:
    outcome = execute(_task(through_out, tmp_path))
    assert outcome.status == "done", outcome.error
    assert outcome.meta == {"path": type(tmp_path).__name__}
    handle = OutputHandle("x", str(tmp_path / "x.txt"), "txt")
    assert handle.path == tmp_path / "x.txt"
    lazy = pickle.loads(pickle.dumps(Lazy(str(tmp_path / "x.txt"), "txt")))
    assert lazy.path == tmp_path / "x.txt" and lazy == Lazy(tmp_path / "x.txt", "txt")


def test_hooks_get_the_parameters_they_name_on_every_item(tmp_path: Path) -> None:
    for offset in (1, 2):  # the names a hook takes are remembered: the second item uses them
        outcome = execute(_task(hooked, tmp_path, params={"offset": offset, "other": "x"}))
        assert outcome.status == "done", outcome.error
        written = Path(outcome.outputs["length"].path).read_text()
        assert written == "item 0\n" + "+" * offset + "offsetother"


def test_a_failing_item_reports_its_error_and_the_next_runs(tmp_path: Path) -> None:
    bad = _task(length, tmp_path)
    bad = Task(
        **{**bad.__dict__, "inputs": {"text": InputSpec("one", "txt", path=str(tmp_path / "missing.txt"))}}
    )
    failed, done = execute_many([bad, _task(length, tmp_path)])
    assert failed.status == "failed" and "missing.txt" in (failed.reason or "")
    assert done.status == "done"


def test_packed_outcomes_cross_a_pipe_and_come_back_equal(tmp_path: Path) -> None:
    tasks = [_task(length, tmp_path), _task(hooked, tmp_path, params={"offset": "not an int"})]
    packed = pickle.loads(pickle.dumps(execute_packed(tasks), pickle.HIGHEST_PROTOCOL))
    outcomes = unpack_outcomes(packed)
    assert [o.status for o in outcomes] == ["done", "failed"]
    again = execute_many(tasks)
    for got, want in zip(outcomes, again, strict=True):
        assert (got.stage, got.key, got.status, got.reason) == (
            want.stage,
            want.key,
            want.status,
            want.reason,
        )
        assert {k: v.digest for k, v in got.outputs.items()} == {k: v.digest for k, v in want.outputs.items()}


def test_tasks_of_importable_stages_are_pickled_by_reference_without_cloudpickle(tmp_path: Path) -> None:
    task = _task(length, tmp_path)
    payload = pool_wire.dumps_task((execute_packed, ([task],), {}))
    assert payload == pickle.dumps((execute_packed, ([task],), {}), pickle.HIGHEST_PROTOCOL)
    fn, args, _ = pickle.loads(payload)
    assert fn is execute_packed and args[0][0].stage_ref.fn is length.fn


def test_functions_pickle_cannot_send_by_reference_go_by_cloudpickle() -> None:
    main_fn = type(test_functions_pickle_cannot_send_by_reference_go_by_cloudpickle)(
        (lambda x: x + 1).__code__, {"__name__": "__main__"}, "main_fn"
    )
    main_fn.__module__ = "__main__"
    for fn in (lambda x: x + 1, main_fn):
        payload = pool_wire.dumps_task((fn, (1,), {}))
        loaded, args, _ = pickle.loads(payload)
        assert loaded(*args) == 2
