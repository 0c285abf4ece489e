"""Parameter values: conversion to the declared type, and back to plain data for saving and hashing.

Values come from two places, and ``convert`` treats them differently:

* YAML files and Python (``from_text=False``): already objects, checked strictly — ``int``
  takes an int (not a bool, not ``3.0``, not ``"3"``), ``str`` only a str, ``bool`` only a
  bool. One exception: ``float`` also takes a string that parses as a float, because YAML 1.1
  (PyYAML) reads ``1e-3`` as a string. ``float`` takes ints and returns a float, so ``lr: 1``
  and a default of ``1.0`` hash alike.
* The command line (``from_text=True``): strings parsed by the declared type — ``int("1_000")``,
  ``float("-1e-3")``, bools as true/false/yes/no/on/off/1/0, None (for a type that allows it) as
  none/null/~, lists (tuples, sets) as ``64,64`` or a flow list ``'[64, 64]'``, dicts as a flow
  mapping ``'{a: 1}'``. A flow list or mapping is read as YAML: its elements follow YAML rules.

``Any``, unresolved annotations and types stagewise does not know accept anything; from the
command line such a value is read as YAML (``3`` is an int), as it would be in a config file.
Unions are tried in order (``int | str`` makes ``"3"`` an int; ``str | int`` keeps it a string).
"""

from __future__ import annotations

import collections.abc
import json
import os
import sys
import types
import typing
from collections.abc import Mapping
from datetime import date
from enum import Enum
from pathlib import PurePath
from typing import Any, Literal, Union

from stagewise.errors import ParameterError
from stagewise.model.params import ParamSpec, type_name

__all__ = ["canonical_json", "convert", "to_plain"]

_NONE = type(None)
_NULLS = frozenset({"none", "null", "~"})
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_LISTS = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_DICTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


class _Mismatch(Exception):
    """A value does not fit the type expected at ``place``.

    Internal: unions need to know *where* a member failed (here, or deeper inside a list) to
    report the most useful error; ``convert`` turns it into a ``ParameterError``.
    """

    def __init__(self, place: str, expected: str, value: Any, hint: str | None = None) -> None:
        super().__init__(place)
        self.place, self.expected, self.value, self.hint = place, expected, value, hint


def convert(value: Any, spec_or_annotation: Any, *, place: str, from_text: bool = False) -> Any:
    """Convert a parameter value to its declared type, or explain why it does not fit.

    Args:
        value: the value as read from YAML or given in Python, or a command-line string.
        spec_or_annotation: a ``ParamSpec``, or a type annotation.
        place: where the value comes from, starting the error message
            (``train.epochs``, ``pipeline.yaml: stages.train.params.epochs``).
        from_text: ``value`` is command-line text, to parse by the declared type. A non-string
            value is then taken as an object, as with ``from_text=False``.

    Returns:
        The value with the declared type: a float for ``float``, a ``Path`` for ``Path``, an
        enum member for an ``Enum``, a list, tuple or set for ``list[...]``, ``tuple[...]`` or
        ``set[...]``.

    Raises:
        ParameterError: the value does not fit, e.g. ``train.epochs: expected int, got 'abc'``
            or ``model.kind: expected one of 'mlp', 'cnn', got 'rnn'``; elements of lists and
            dicts are named ``train.layers[1]`` and ``train.weights.key``.
    """
    annotation = (
        spec_or_annotation.annotation if isinstance(spec_or_annotation, ParamSpec) else spec_or_annotation
    )
    try:
        return _convert(value, annotation, place, from_text and isinstance(value, str))
    except _Mismatch as m:
        message = f"{m.place}: expected {m.expected}, got {m.value!r}"
        raise ParameterError(message, hint=m.hint) from None


def shown(value: Any) -> Any:
    """A value as a person reads it: an Enum by its member name, the rest by ``to_plain``."""
    return value.name if isinstance(value, Enum) else to_plain(value)


def to_plain(value: Any) -> Any:
    """Return ``value`` as plain JSON/YAML data, for saving configs and hashing parameters.

    Paths become strings, tuples and sets lists (sets sorted), mappings dicts, dates ISO
    strings, numpy scalars and arrays Python numbers and lists (only when numpy is already
    imported: it is never imported here). An enum becomes its value when that is a plain
    scalar (``convert`` accepts it back), else its name. Anything else is returned unchanged.

    Args:
        value: a converted parameter value.
    """
    value = _unnumpy(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, Enum):
        plain = to_plain(value.value)
        return plain if plain is None or isinstance(plain, str | int | float) else value.name
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_plain_key(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def canonical_json(params: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of parameter values, for stable parameter hashes.

    Keys are sorted and separators carry no spaces. A function or class (a default such as
    ``loss=mse``) is written as ``module:qualname``, which is stable across runs.

    Args:
        params: parameter values by name (converted values, as the stage receives them).

    Raises:
        ParameterError: a value has no stable plain form (an arbitrary object).
    """
    return json.dumps(to_plain(dict(params)), sort_keys=True, separators=(",", ":"), default=_by_name)


def _by_name(obj: Any) -> str:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if callable(obj) and module and qualname and "<" not in qualname:
        return f"{module}:{qualname}"
    # repr() would often embed a memory address: a new hash, so a rerun, every time.
    raise ParameterError(
        f"parameter value {obj!r} of type {type(obj).__name__} cannot be hashed",
        hint="use plain values (numbers, strings, booleans, None, lists, dicts, paths, enums)",
    )


def _plain_key(key: Any) -> Any:
    plain = to_plain(key)
    return plain if plain is None or isinstance(plain, str | int | float) else str(key)


def _unnumpy(value: Any) -> Any:
    numpy = sys.modules.get("numpy")  # never import it: a value can only be numpy if it is loaded
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value


def _convert(value: Any, tp: Any, place: str, text: bool) -> Any:
    """Dispatch on the annotation; ``text`` is true when ``value`` is command-line text."""
    if not text:
        value = _unnumpy(value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _convert(value, args[0], place, text)
    if origin is Literal:
        return _literal(value, args, place, text)
    if origin is Union or origin is types.UnionType:
        return _union(value, tp, args, place, text)
    if tp in _LISTS or origin in _LISTS or tp in _SETS or origin in _SETS:
        return _sequence(value, tp, place, text)
    if tp in _DICTS or origin in _DICTS:
        return _mapping(value, tp, place, text)
    if tp is None or tp is _NONE:
        if (value.strip().lower() in _NULLS) if text else value is None:
            return None
        raise _Mismatch(place, "None", value)
    if origin is None and isinstance(tp, type):
        return _scalar(value, tp, place, text)
    return _any(value, text)


def _scalar(value: Any, tp: type, place: str, text: bool) -> Any:
    if tp is bool:
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not text and isinstance(value, bool):
            return value
    elif issubclass(tp, Enum):
        return _enum(value, tp, place, text)
    elif tp is int:
        if text:
            try:
                return int(value)  # takes "1_000", "-3", " 7 "
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif tp is float:
        # A str is accepted from YAML too: PyYAML reads 1e-3 (no dot) as a string.
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except (ValueError, OverflowError):
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif issubclass(tp, PurePath):
        if isinstance(value, str | os.PathLike):
            return tp(value)
    else:
        return _any(value, text)  # a class stagewise knows nothing of: the stage decides
    raise _Mismatch(place, type_name(tp), value)


def _enum(value: Any, tp: type[Enum], place: str, text: bool) -> Enum:
    if isinstance(value, tp):
        return value
    if isinstance(value, str) and value in tp.__members__:
        return tp[value]
    for member in tp:
        if text and str(member.value) == value:
            return member
        # Compare types too: True == 1, and a bool must not select the member of value 1.
        if not text and type(member.value) is type(value) and member.value == value:
            return member
    names = ", ".join(repr(n) for n in tp.__members__)
    raise _Mismatch(place, tp.__name__, value, hint=f"choose one of {names}")


def _literal(value: Any, options: tuple[Any, ...], place: str, text: bool) -> Any:
    for option in options:
        candidate = value
        if text:  # parse the text as the option's own type: "3" matches Literal[3]
            try:
                candidate = _convert(value, type(option), place, text)
            except _Mismatch:
                continue
        if type(candidate) is type(option) and candidate == option:
            return option
    raise _Mismatch(place, "one of " + ", ".join(repr(o) for o in options), value)


def _union(value: Any, tp: Any, args: tuple[Any, ...], place: str, text: bool) -> Any:
    if all(a is _NONE or typing.get_origin(a) is Literal for a in args):
        # Optional[Literal[...]] reads best as one list of options, None among them.
        options = [o for a in args for o in (typing.get_args(a) if a is not _NONE else (None,))]
        return _literal(value, tuple(options), place, text)
    if _NONE in args and ((value.strip().lower() in _NULLS) if text else value is None):
        return None
    deeper: _Mismatch | None = None
    for member in (a for a in args if a is not _NONE):
        try:
            return _convert(value, member, place, text)
        except _Mismatch as m:
            # A failure inside an element (layers[1]) says more than "expected A | B".
            deeper = deeper or (m if m.place != place else None)
    if deeper is not None:
        raise deeper
    raise _Mismatch(place, type_name(tp), value)


def _sequence(value: Any, tp: Any, place: str, text: bool) -> Any:
    """A list, tuple or set: each element converted, and named ``place[i]`` in errors."""
    origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
    if text:
        items, text = _split(value, tp, place)
    elif isinstance(value, list | tuple) or (
        origin in _SETS and isinstance(value, set | frozenset)  # unordered: only for a set
    ):
        items = list(value)
    else:
        raise _Mismatch(place, type_name(tp), value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise _Mismatch(place, type_name(tp), value)
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(items)
    converted = [
        _convert(v, t, f"{place}[{i}]", text) for i, (v, t) in enumerate(zip(items, item_types, strict=True))
    ]
    if origin in _SETS:
        return frozenset(converted) if origin is frozenset else set(converted)
    return tuple(converted) if origin is tuple else converted


def _split(value: str, tp: Any, place: str) -> tuple[list[Any], bool]:
    """Command-line text to list items, and whether the items are still text."""
    if value.strip().startswith("["):
        loaded = _load_yaml(value, tp, place)
        if not isinstance(loaded, list):
            raise _Mismatch(place, type_name(tp), value)
        return loaded, False
    if not value.strip():
        return [], True  # --layers "" is the empty list
    return [part.strip() for part in value.split(",")], True


def _mapping(value: Any, tp: Any, place: str, text: bool) -> dict[Any, Any]:
    args = typing.get_args(tp)
    key_type, value_type = args if len(args) == 2 else (Any, Any)
    if text:
        if not value.strip().startswith("{"):
            raise _Mismatch(place, type_name(tp), value)
        value = _load_yaml(value, tp, place)
    if not isinstance(value, Mapping):
        raise _Mismatch(place, type_name(tp), value)
    return {
        _convert(k, key_type, f"{place}.{k}", False): _convert(v, value_type, f"{place}.{k}", False)
        for k, v in value.items()
    }


def _load_yaml(value: str, tp: Any, place: str) -> Any:
    import yaml  # imported here so that `import stagewise` does not pay for it

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise _Mismatch(place, type_name(tp), value) from None


def _any(value: Any, text: bool) -> Any:
    if not text or not value.strip():
        return value
    import yaml

    # No declared type to parse by: read the text as the same text in a config file would be.
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value
