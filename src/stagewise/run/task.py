"""The plain data that crosses between coordinator and workers: tasks out, outcomes back.

A task carries paths, handler references and parameters, never data (BigMultiPipe's three
streams: data on disk, control in the task, metadata in the outcome).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = ["InputSpec", "Outcome", "OutputFile", "OutputSpec", "Task", "UpToDate", "item_key", "item_label"]


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def item_key(values: Sequence[Any]) -> str:
    """The canonical key of an item: its tag values as compact JSON (``["train",3]``)."""
    parts = []
    for value in values:  # ints and plain text without the encoder: ~4x faster, same text
        kind = type(value)
        if kind is int:
            parts.append(str(value))
        elif (
            kind is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value
        ):
            parts.append('"' + value + '"')
        else:
            return _encode(list(values))
    return "[" + ",".join(parts) + "]"


def item_label(tags: Mapping[str, Any]) -> str:
    """A readable name for an item: ``split=train sim=3`` (``(single item)`` for no dims)."""
    return " ".join(f"{k}={v}" for k, v in tags.items()) or "(single item)"


class InputSpec(NamedTuple):
    """How one input reaches the body.

    Attributes:
        kind: ``one`` (one file: data, or a handle when lazy) or ``many`` (a collection).
        path: the file, for ``one``.
        handler: the handler name or object.
        lazy: pass a ``Lazy`` handle instead of the data (``one`` only).
        entries: ``(key, path)`` pairs for ``many``, ordered by key.
    """

    kind: Literal["one", "many"]
    handler: Any
    path: str | None = None
    lazy: bool = False
    entries: tuple[tuple[Any, str], ...] = ()


class OutputSpec(NamedTuple):
    """Where one output goes and how it is written."""

    path: str
    handler: Any
    root: str = "output"
    """The root id the path is under (``output``, ``paths.<name>``)."""
    rel: str = ""
    """The path relative to that root."""


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one item.

    Attributes:
        stage: the stage's qualified name.
        stage_ref: the ``Stage`` object (travels by reference or by value, see executors).
        key: the item key.
        tags: the item's tags, in the stage's dim order.
        inputs: input name -> how it arrives.
        outputs: output name -> where it goes.
        params: the stage's resolved parameters.
        params_key: a canonical text of ``params`` (class stages keep one instance per value).
        meta: upstream stage -> metadata of the item this one depends on.
        inputs_fp: digest of each input, recorded with the item (the coordinator keeps it).
        reasons: why the item runs (``new``, ``parameters changed: x``...).
        hash_inputs: inputs the worker digests (sources of a new item: the worker reads them
            anyway, so the coordinator does not read every source before dispatching).
    """

    stage: str
    stage_ref: Any
    key: str
    tags: Mapping[str, Any]
    inputs: Mapping[str, InputSpec]
    outputs: Mapping[str, OutputSpec]
    params: Mapping[str, Any]
    params_key: str = ""
    meta: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    inputs_fp: Mapping[str, str | None] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    hash_inputs: tuple[str, ...] = ()


class OutputFile(NamedTuple):
    """An output as written by the worker, fingerprinted while the data was hot in the cache."""

    path: str
    digest: str
    stat: tuple[int, int, int, int]
    """``(size, mtime_ns, ino, ctime_ns)`` after the final rename."""
    hashed_at_ns: int


@dataclass(slots=True)
class Outcome:
    """What happened to one item, sent back to the coordinator.

    Attributes:
        stage: the stage's qualified name.
        key: the item key.
        status: ``done``, ``failed`` or ``rejected``; never recorded: ``skipped`` when an
            item it reads failed, ``uptodate`` when it need not run.
        reason: why it was rejected, or the one-line error.
        error: the formatted traceback of a failure.
        meta: the item's metadata (``Result(meta=...)``).
        outputs: output name -> the file written, with its digest.
        started: wall-clock start (``time.time()``).
        duration: seconds spent on the item.
        inputs: input name -> the file as digested by the worker (``Task.hash_inputs``); its
            ``stat`` is empty when the file changed while it was read.
    """

    stage: str
    key: str
    status: Literal["done", "failed", "rejected", "skipped", "uptodate", "pending"]
    reason: str | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, OutputFile] = field(default_factory=dict)
    started: float = 0.0
    duration: float = 0.0
    inputs: dict[str, OutputFile] = field(default_factory=dict)


class UpToDate(NamedTuple):
    """Done items found up to date in a row, counted rather than listed one by one."""

    stage: str
    count: int
