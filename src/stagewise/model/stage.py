"""``@stage``: turn a function or class into a pipeline stage, and what we learn from its signature."""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from stagewise.model.assets import Asset, as_asset
from stagewise.model.handles import Lazy, Out
from stagewise.model.params import ParamSpec, params_of

__all__ = ["Stage", "StageSignature", "parse_memory", "stage"]

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_memory(value: str | int | None) -> int | None:
    """Parse ``"2GB"`` (decimal units), ``"2GiB"`` (binary) or a byte count.

    Raises:
        ValueError: when the text is not a memory size.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"memory must be positive, got {value}")
        return value
    match = _MEMORY.match(str(value))
    if not match:
        raise ValueError(f"memory {value!r} is not a size like '2GB' or '512MiB'")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory must be positive, got {value!r}")
    return size


@dataclass(frozen=True)
class StageSignature:
    """How the body's parameters are filled.

    Attributes:
        item: the name of the parameter receiving the ``Item``, or None.
        out: the name of the parameter annotated ``Out``, or None.
        inputs: names of the parameters receiving inputs, in signature order.
        lazy: the input parameters annotated ``Lazy``.
        input_types: declared types of the other input parameters (for typed connections).
        var_keyword: the body takes ``**kwargs``.
    """

    item: str | None = None
    out: str | None = None
    inputs: tuple[str, ...] = ()
    lazy: frozenset[str] = frozenset()
    input_types: Mapping[str, Any] = field(default_factory=dict)
    var_keyword: bool = False


@dataclass(frozen=True, eq=False)
class Stage:
    """A pipeline stage: a function (or class) plus its inputs, outputs, dims and parameters.

    Create stages with :func:`stage`; call the original function with ``.fn``.
    """

    name: str
    fn: Callable[..., Any]
    inputs: Mapping[str, str]
    outputs: Mapping[str, Asset]
    over: tuple[str, ...]
    splits: tuple[str, ...] | None
    memory: int | None
    version: str | None
    pre: tuple[Callable[..., Any], ...]
    post: tuple[Callable[..., Any], ...]
    requires: tuple[str, ...]
    fingerprint: Literal["function", "module"]
    is_class: bool
    params: Mapping[str, ParamSpec]
    signature: StageSignature
    problems: tuple[str, ...] = ()
    """Problems found while defining the stage; ``check`` reports them with the rest."""

    @property
    def __stagewise_fn__(self) -> Callable[..., Any]:
        return self.fn

    @property
    def body(self) -> Callable[..., Any]:
        """The per-item function: ``fn`` itself, or a class stage's ``process``."""
        return getattr(self.fn, "process") if self.is_class else self.fn  # noqa: B009

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def with_changes(self, **changes: Any) -> Stage:
        """A copy with some fields replaced (a pipeline file rewiring inputs, say)."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        return f"<stage {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by reference to its module when it can be imported there, else by value.

        By reference, a worker imports the stage's module (which also registers the handlers it
        registers); a pipeline file's overrides travel as the changed fields. Stages defined in
        ``__main__`` or a notebook travel by value (cloudpickle ships the function's code).
        """
        ref = _module_ref(self)
        if ref is not None:
            original = getattr(sys.modules[ref[0]], ref[1])
            changes = {f: getattr(self, f) for f in _OVERRIDABLE if getattr(self, f) != getattr(original, f)}
            return (_stage_from_module, (ref[0], ref[1], changes))
        return (_stage_from_fields, ({f.name: getattr(self, f.name) for f in fields(self)},))


_OVERRIDABLE = ("name", "inputs", "outputs", "splits")


def _module_ref(stage: Stage) -> tuple[str, str] | None:
    module_name = getattr(stage.fn, "__module__", None)
    module = sys.modules.get(module_name or "")
    if module is None or module_name == "__main__":
        return None
    for attr in (stage.fn.__name__, stage.name):
        found = getattr(module, attr, None)
        if isinstance(found, Stage) and found.fn is stage.fn:
            return module_name, attr  # type: ignore[return-value]
    return None


def _stage_from_module(module: str, attr: str, changes: dict[str, Any]) -> Stage:
    import importlib

    stage = getattr(importlib.import_module(module), attr)
    return stage.with_changes(**changes) if changes else stage  # type: ignore[no-any-return]


def _stage_from_fields(values: dict[str, Any]) -> Stage:
    return Stage(**values)


def stage(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    inputs: Mapping[str, str] | None = None,
    outputs: Mapping[str, Any] | None = None,
    over: Iterable[str] | str = (),
    splits: Iterable[str] | None = None,
    memory: str | int | None = None,
    version: str | None = None,
    pre: Iterable[Callable[..., Any]] = (),
    post: Iterable[Callable[..., Any]] = (),
    requires: Iterable[str] = (),
    fingerprint: Literal["function", "module"] = "function",
) -> Any:
    """Declare a stage. Use as ``@stage(...)`` on a function or a class.

    Args:
        fn: the function or class (given when used as a bare ``@stage``).
        name: the stage name; defaults to the function's name.
        inputs: input name -> ``"stage.output"`` or a source's name.
        outputs: output name -> template string or ``Asset``.
        over: the dims the stage's items range over (``("split", "sim")``).
        splits: restrict the stage to these splits.
        memory: peak memory of one item (``"2GB"``, ``"512MiB"``).
        version: bump to force a rerun.
        pre: functions run in the worker before the body, ``f(data, **params)``.
        post: functions run after the body on its output data.
        requires: Python packages the stage needs (``"astropy>=6"``).
        fingerprint: ``"function"`` (the body and the project code it reaches) or ``"module"``.
    """

    def decorate(target: Callable[..., Any]) -> Stage:
        return _build_stage(
            target,
            name=name,
            inputs=inputs,
            outputs=outputs,
            over=over,
            splits=splits,
            memory=memory,
            version=version,
            pre=pre,
            post=post,
            requires=requires,
            fingerprint=fingerprint,
        )

    return decorate(fn) if fn is not None else decorate


def _build_stage(target: Callable[..., Any], **opts: Any) -> Stage:
    problems: list[str] = []
    is_class = inspect.isclass(target)
    stage_name = opts["name"] or target.__name__
    inputs = dict(opts["inputs"] or {})
    outputs: dict[str, Asset] = {}
    for out_name, value in (opts["outputs"] or {}).items():
        try:
            outputs[out_name] = as_asset(value, place=f"output '{out_name}'")
        except TypeError as exc:
            problems.append(str(exc))
    over = (opts["over"],) if isinstance(opts["over"], str) else tuple(opts["over"])
    splits = None if opts["splits"] is None else tuple(opts["splits"])
    try:
        memory = parse_memory(opts["memory"])
    except ValueError as exc:
        memory = None
        problems.append(str(exc))
    if opts["fingerprint"] not in ("function", "module"):
        problems.append(f"fingerprint must be 'function' or 'module', got {opts['fingerprint']!r}")
    if is_class and not callable(getattr(target, "process", None)):
        problems.append(f"class stage {target.__name__} has no process(self, ...) method")
    body = getattr(target, "process", target) if is_class else target
    signature, sig_problems = _analyse_signature(body, inputs, skip_self=is_class)
    problems += sig_problems
    skip = {*inputs, "item", *([signature.out] if signature.out else [])}
    params = _safe_params(target, skip, problems)
    return Stage(
        name=stage_name,
        fn=target,
        inputs=inputs,
        outputs=outputs,
        over=over,
        splits=splits,
        memory=memory,
        version=None if opts["version"] is None else str(opts["version"]),
        pre=tuple(opts["pre"]),
        post=tuple(opts["post"]),
        requires=tuple(opts["requires"]),
        fingerprint=opts["fingerprint"],
        is_class=is_class,
        params=params,
        signature=signature,
        problems=tuple(problems),
    )


def _safe_params(target: Callable[..., Any], skip: set[str], problems: list[str]) -> dict[str, ParamSpec]:
    try:
        return params_of(target, skip=skip)
    except (TypeError, ValueError) as exc:
        problems.append(f"cannot read the parameters: {exc}")
        return {}


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; unresolvable ones stay as written (strings)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}))


def _is_marker(annotation: Any, marker: type) -> bool:
    if annotation is marker or typing.get_origin(annotation) is marker:
        return True
    return isinstance(annotation, str) and annotation.split("[")[0].split(".")[-1] == marker.__name__


def _analyse_signature(
    body: Callable[..., Any], inputs: Mapping[str, str], *, skip_self: bool
) -> tuple[StageSignature, list[str]]:
    problems: list[str] = []
    try:
        parameters = list(inspect.signature(body).parameters.values())
    except (TypeError, ValueError) as exc:
        return StageSignature(), [f"cannot read the signature: {exc}"]
    if skip_self and parameters:
        parameters = parameters[1:]
    hints = _type_hints(body)
    item = out = None
    found_inputs: list[str] = []
    lazy: set[str] = set()
    types: dict[str, Any] = {}
    var_keyword = False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for p in parameters:
        annotation = hints.get(p.name, p.annotation)
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif _is_marker(annotation, Out):
            out = p.name
        elif p.name in inputs:
            found_inputs.append(p.name)
            if _is_marker(annotation, Lazy):
                lazy.add(p.name)
            elif annotation is not inspect.Parameter.empty:
                types[p.name] = annotation
        elif p.name == "item":
            item = p.name
        elif p.kind not in positional:
            continue  # keyword-only: a stage parameter
        elif p.default is inspect.Parameter.empty:
            problems.append(
                f"parameter '{p.name}' is not an input, 'item' or an Out handle "
                "(declare it in inputs=, or make it keyword-only after * to be a parameter)"
            )
    missing = [name for name in inputs if name not in found_inputs]
    if missing and not var_keyword:
        problems.append(
            f"input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} declared "
            "but the function has no parameter of that name"
        )
    signature = StageSignature(
        item=item,
        out=out,
        inputs=tuple(found_inputs),
        lazy=frozenset(lazy),
        input_types=types,
        var_keyword=var_keyword,
    )
    return signature, problems
