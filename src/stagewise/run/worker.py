"""Run one item in a worker: read inputs, call pre/body/post, write outputs atomically.

Everything here runs wherever the executor puts it (in-process, a pool process, a Dask worker),
so it only uses the task it is given and never touches the state store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import operator
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Literal

import xxhash

from stagewise.errors import StageError
from stagewise.handlers import get_handler, write_atomic
from stagewise.handlers.base import handler_path
from stagewise.model.handles import Collection, Lazy, Out, OutputHandle, read_asset
from stagewise.model.item import Item
from stagewise.model.results import REJECT, Reject, Result
from stagewise.model.stage import Stage
from stagewise.run.task import InputSpec, Outcome, OutputFile, OutputSpec, Task
from stagewise.state.filehash import HASH_BUFFER_SIZE, hash_file

__all__ = ["execute", "execute_many", "execute_packed", "unpack_outcomes"]

_instances = threading.local()
"""Class-stage instances of this worker (per thread): (stage, params) -> set-up instance."""


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def execute_many(tasks: list[Task]) -> list[Outcome]:
    """Run a batch of items in order (batches keep per-item overhead low for tiny items)."""
    return [execute(task) for task in tasks]


# An outcome crosses a process boundary as the tuple of its fields (in __init__ order): half the
# bytes and half the pickling time of the dataclass, whose slots make pickle run Python per field.
_pack = operator.attrgetter(*(f.name for f in dataclasses.fields(Outcome)))


def execute_packed(tasks: list[Task]) -> list[tuple[Any, ...]]:
    """`execute_many`, with each outcome packed for the trip back (see `unpack_outcomes`).

    Here rather than in the executor, so that a worker unpickling it imports only this module.
    """
    return [_pack(execute(task)) for task in tasks]


def unpack_outcomes(packed: list[tuple[Any, ...]]) -> list[Outcome]:
    """The outcomes `execute_packed` returned."""
    return [Outcome(*fields) for fields in packed]


def execute(task: Task) -> Outcome:
    """Run one item and report what happened; user errors become a failed outcome."""
    started = time.time()
    clock = time.perf_counter()
    inputs = _digest_inputs(task) if task.hash_inputs else {}
    status: Literal["rejected", "failed"]
    reason: str | None
    error: str | None = None
    try:
        meta, outputs = _run(task)
    except _Rejected as exc:
        status, reason = "rejected", exc.reason
    except Reject as exc:
        status, reason = "rejected", exc.reason
    except StageError as exc:  # the stage broke the contract: the message says it all
        status, reason, error = "failed", exc.message, str(exc)
    except Exception as exc:  # a failing item must not stop the others
        status, reason, error = "failed", f"{type(exc).__name__}: {exc}", user_traceback(exc)
    else:
        duration = time.perf_counter() - clock
        return Outcome(task.stage, task.key, "done", None, None, meta, outputs, started, duration, inputs)
    outcome = Outcome(task.stage, task.key, status, reason, error, started=started, inputs=inputs)
    outcome.duration = time.perf_counter() - clock
    return outcome


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_traceback(exc: BaseException) -> str:
    """The traceback without stagewise's own frames: the user's code is what they need to see."""
    tb = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo = [tb]
    while todo:
        part = todo.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        frames = [f for f in part.stack if not f.filename.startswith(_PACKAGE)]
        part.stack = traceback.StackSummary.from_list(frames or list(part.stack))
        todo += [t for t in (part.__cause__, part.__context__) if t is not None]
    return "".join(tb.format())


def _handler(ref: Any) -> Any:
    """The handler object for a name (a dict lookup once known) or an object."""
    return get_handler(ref) if isinstance(ref, str) else ref


def _run(task: Task) -> tuple[dict[str, Any], dict[str, OutputFile]]:
    stage: Stage = task.stage_ref
    signature = stage.signature
    kwargs: dict[str, Any] = {name: _arrive(spec) for name, spec in task.inputs.items()}
    if stage.pre:
        kwargs = _apply_hooks(stage.pre, kwargs, task.params, "pre", stage)
    if signature.item:
        kwargs[signature.item] = Item(task.tags, task.meta)
    out = None
    if signature.out:
        out = Out({name: OutputHandle(name, spec.path, spec.handler) for name, spec in task.outputs.items()})
        kwargs[signature.out] = out
    returned = _call_body(stage, task, kwargs)
    if returned is REJECT:
        raise _Rejected("rejected by the stage")
    meta: dict[str, Any] = {}
    if isinstance(returned, Result):
        meta = dict(returned.meta)
        returned = returned.outputs
        if returned is REJECT:
            raise _Rejected("rejected by the stage")
    if out is not None:
        _check_out_written(stage, out, returned)
    else:
        outputs = _outputs_by_name(stage, task, returned)
        if stage.post:
            outputs = _apply_hooks(stage.post, outputs, task.params, "post", stage)
        for name, value in outputs.items():
            ref = task.outputs[name].handler
            label = ref if isinstance(ref, str) else None
            write_atomic(_handler(ref), task.outputs[name].path, value, name=label)
    return meta, {name: _fingerprint(spec) for name, spec in task.outputs.items()}


def _fingerprint(spec: OutputSpec) -> OutputFile:
    """Digest an output just written (still in the page cache), so the coordinator never re-reads it."""
    path = spec.path
    hashed_at = time.time_ns()  # before reading: a write during hashing makes the entry racy
    handler = _handler(spec.handler)
    method = getattr(handler, "fingerprint", None)
    own = str(method(handler_path(handler, path))) if callable(method) else ""
    if own:  # a format whose bytes embed a time fingerprints its content itself
        digest, st = own, os.stat(path)
    else:
        digest, st = _hash_and_stat(path)
    return OutputFile(path, digest, (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns), hashed_at)


def _digest_inputs(task: Task) -> dict[str, OutputFile]:
    """Digest the inputs the coordinator left to this worker (a missing one fails in the body)."""
    found = {}
    for name in task.hash_inputs:
        path = task.inputs[name].path
        assert path is not None
        hashed_at = time.time_ns()
        try:
            digest, st = _hash_and_stat(path)
            after = os.stat(path)
        except OSError:
            continue
        key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        same = key == (after.st_size, after.st_mtime_ns, after.st_ino, after.st_ctime_ns)
        found[name] = OutputFile(path, digest, key if same else (), hashed_at)  # type: ignore[arg-type]
    return found


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _hash_and_stat(path: str) -> tuple[str, os.stat_result]:
    """``hash_file(path)`` and the file's stat, with one open: a small file is read in one call."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if st.st_size >= HASH_BUFFER_SIZE:
            return hash_file(path), st
        data = os.read(fd, st.st_size + 1)
        if len(data) <= st.st_size:  # else it grew since the stat: read the rest
            return xxhash.xxh3_128_hexdigest(data), st
        hasher = xxhash.xxh3_128(data)
        while chunk := os.read(fd, HASH_BUFFER_SIZE):
            hasher.update(chunk)
        return hasher.hexdigest(), st
    finally:
        os.close(fd)


def _arrive(spec: InputSpec) -> Any:
    if spec.kind == "many":
        return Collection({key: Lazy(path, spec.handler) for key, path in spec.entries})
    assert spec.path is not None
    if spec.lazy:
        return Lazy(spec.path, spec.handler)
    return read_asset(_handler(spec.handler), spec.path)


def _call_body(stage: Stage, task: Task, kwargs: dict[str, Any]) -> Any:
    if not stage.is_class:
        return stage.fn(**kwargs, **task.params)
    cache: dict[tuple[str, int, str], Any] = getattr(_instances, "cache", None) or {}
    _instances.cache = cache
    key = (task.stage, id(stage.fn), task.params_key)  # a redefined class gets a new instance
    instance = cache.get(key)
    if instance is None:
        instance = stage.fn(**task.params)
        setup = getattr(instance, "setup", None)
        if callable(setup):
            setup()
        cache[key] = instance
    return instance.process(**kwargs)


def _check_out_written(stage: Stage, out: Out, returned: Any) -> None:
    if returned is not None:
        raise StageError(
            f"stage {stage.name} writes its outputs through Out and also returned data",
            hint="return None (or Result(None, meta=...)) after out[name].write(...)",
        )
    missing = out.unwritten()
    if missing:
        raise StageError(
            f"stage {stage.name} did not write output{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} through its Out handles",
            hint="every output must be written before the function returns",
        )


def _outputs_by_name(stage: Stage, task: Task, returned: Any) -> dict[str, Any]:
    names = list(task.outputs)
    if returned is None:
        raise StageError(
            f"stage {stage.name} returned None (a forgotten return?)",
            hint="return the output data, or stagewise.REJECT to reject the item",
        )
    if len(names) == 1:
        return {names[0]: returned}
    if not isinstance(returned, Mapping):
        raise StageError(
            f"stage {stage.name} has outputs {', '.join(names)} and must return a dict with "
            f"those keys, got {type(returned).__name__}"
        )
    missing = [n for n in names if n not in returned]
    extra = [str(k) for k in returned if k not in task.outputs]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else []
        )
        raise StageError(
            f"stage {stage.name} returned keys that do not match its outputs: {'; '.join(parts)}",
            hint=f"return a dict with exactly the keys {', '.join(names)}",
        )
    return {name: returned[name] for name in names}


def _apply_hooks(
    hooks: tuple[Callable[..., Any], ...],
    data: dict[str, Any],
    params: Mapping[str, Any],
    kind: str,
    stage: Stage,
) -> dict[str, Any]:
    """Run pre/post functions: ``f(data, **params) -> data | None`` (None or REJECT rejects)."""
    single = len(data) == 1
    value: Any = next(iter(data.values())) if single else dict(data)
    for hook in hooks:
        value = hook(value, **_accepted(hook, params))
        if value is None or value is REJECT:
            name = getattr(hook, "__name__", repr(hook))
            raise _Rejected(f"rejected by {kind} function {name}")
    if single:
        return {next(iter(data)): value}
    if not isinstance(value, Mapping) or set(value) != set(data):
        raise StageError(
            f"stage {stage.name}: a {kind} function must return a dict with keys "
            f"{', '.join(data)}, got {type(value).__name__}"
        )
    return dict(value)


def _accepted(fn: Callable[..., Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters ``fn`` accepts by name (all of them if it takes ``**kwargs``)."""
    try:
        names = _accepted_names.get(fn, _UNKNOWN)
    except TypeError:  # unhashable
        names = _UNKNOWN
    if names is _UNKNOWN:
        names = _names_taken(fn)
        with contextlib.suppress(TypeError):
            if len(_accepted_names) >= 1024:
                _accepted_names.clear()
            _accepted_names[fn] = names
    if names is None:
        return dict(params)
    return {k: v for k, v in params.items() if k in names}


_UNKNOWN: Any = object()
_accepted_names: dict[Callable[..., Any], frozenset[str] | None] = {}
"""Per hook function: the parameter names it takes, or None for all (``**kwargs``)."""


def _names_taken(fn: Callable[..., Any]) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)
