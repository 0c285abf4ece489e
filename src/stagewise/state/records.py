"""The rows of the state store: its schema, and `ItemRecord` / `RunRecord`, read and written.

Kept apart from `stagewise.state.store` (the connection and its queries) so that the runner and
the planner can import the record types without thinking about SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, Generic, Literal, TypeVar, overload

__all__ = [
    "ITEM_SELECT",
    "ITEM_UPSERT",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ItemRecord",
    "ItemStatus",
    "RunOutcome",
    "RunRecord",
    "dumps_json",
    "item_from_row",
    "item_to_row",
    "json_text",
    "new_record",
]

#: Version of the schema below, kept in ``PRAGMA user_version``. Bump it with a migration.
SCHEMA_VERSION = 2

#: Statements that bring a store of an older schema version (the key) to the next version.
MIGRATIONS: dict[int, str] = {}  # filled below from SCHEMA

ItemStatus = Literal["done", "failed", "rejected"]
RunOutcome = Literal["running", "done", "failed", "interrupted"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (       -- one row per stage item: the last time it was run
    stage       TEXT NOT NULL,           -- stage name ("group:stage" inside a group)
    key         TEXT NOT NULL,           -- canonical string of the item's tag values
    status      TEXT NOT NULL,           -- done | failed | rejected
    code_fp     TEXT NOT NULL,           -- fingerprint of the stage code and its version string
    code_parts  TEXT,                    -- JSON {function: fingerprint}: names what code changed
    params_hash TEXT NOT NULL,           -- hash of the canonical resolved parameters
    params      TEXT,                    -- JSON of those parameters: names what parameter changed
    inputs      TEXT,                    -- JSON {input: digest, or the digests of a collection}
    outputs     TEXT,                    -- JSON {output: [path relative to OUTPUT, digest]}
    meta        TEXT,                    -- JSON metadata returned by the stage (Result(meta=))
    reason      TEXT,                    -- reject reason, or one-line error summary
    error       TEXT,                    -- traceback of a failed item
    started     REAL,                    -- unix time the item started (on its worker)
    duration    REAL,                    -- seconds spent in the worker
    host        TEXT,                    -- worker host name
    run_id      TEXT,                    -- the run that made this record (runs.run_id)
    PRIMARY KEY (stage, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS statcache (   -- digest of a file, valid while its stat is unchanged
    root         TEXT NOT NULL,          -- root id: "output", "paths.data"...
    relpath      TEXT NOT NULL,          -- path relative to that root, "/"-separated
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ino          INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    digest       TEXT NOT NULL,          -- xxh3_128 hex of the content (or a handler fingerprint)
    hashed_at_ns INTEGER NOT NULL,       -- wall clock when hashing began (racy-clean rule)
    PRIMARY KEY (root, relpath)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sigs (        -- stat signature of an item: its files' stats when last proven
    stage TEXT NOT NULL,                 -- as in items (see stagewise.run.quick)
    key   TEXT NOT NULL,
    sig   BLOB NOT NULL,                 -- layout (code, parameters, templates) + packed stats
    PRIMARY KEY (stage, key)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS items_written AFTER INSERT ON items BEGIN
    DELETE FROM sigs WHERE stage = NEW.stage AND key = NEW.key;  -- a new record: not proven yet
END;
CREATE TRIGGER IF NOT EXISTS items_deleted AFTER DELETE ON items BEGIN
    DELETE FROM sigs WHERE stage = OLD.stage AND key = OLD.key;
END;
CREATE TABLE IF NOT EXISTS runs (        -- one row per `stagewise run`
    run_id    TEXT PRIMARY KEY,
    started   REAL NOT NULL,             -- unix time
    finished  REAL,                      -- unix time, NULL while running or if killed
    pid       INTEGER,                   -- coordinator process
    host      TEXT,                      -- coordinator host
    command   TEXT,                      -- the command line
    selection TEXT,                      -- JSON list of the selectors given
    outcome   TEXT NOT NULL,             -- running | done | failed | interrupted
    summary   TEXT                       -- JSON: per-stage counts and timings, failures
);
"""

MIGRATIONS[1] = SCHEMA[
    SCHEMA.index("CREATE TABLE IF NOT EXISTS sigs") : SCHEMA.index("CREATE TABLE IF NOT EXISTS runs")
]

_T = TypeVar("_T")


class _JsonField(Generic[_T]):
    """A record field stored as JSON and decoded on first access.

    The instance holds either the JSON text (as read from the database; a ``str`` given to the
    constructor is taken as JSON text too) or the decoded mapping.

    Planning reads every record of a stage but looks at ``params``, ``code_parts`` and ``meta``
    only to explain a change; decoding them lazily makes `StateStore.get_items` several times
    faster on 50,000 rows.
    """

    def __init__(self, decode: Callable[[Any], _T] | None = None) -> None:
        self._decode = decode

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> None: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> _T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> _T | None:
        if obj is None:
            return None  # dataclass asks the class for a default: None, made {} by __set__
        value = obj.__dict__[self._name]
        if type(value) is str:  # JSON text not decoded yet (decoded values are mappings)
            value = json.loads(value)
            if self._decode is not None:
                value = self._decode(value)
            obj.__dict__[self._name] = value
        return value  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: _T | None) -> None:
        if self._name in obj.__dict__:
            raise AttributeError(f"cannot assign to field {self._name!r} of a frozen record")
        obj.__dict__[self._name] = {} if value is None else value


def _decode_outputs(value: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    return {name: (pair[0], pair[1]) for name, pair in value.items()}


def json_text(record: ItemRecord, name: str) -> str:
    """A JSON field of a record as canonical text, without decoding it when it is still text."""
    value = record.__dict__[name]
    return value if type(value) is str else dumps_json(value)


# Canonical and compact; default=str so an odd parameter value (a Path) never loses a record.
# One encoder object: json.dumps would build it again on every call (planning calls this per item).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def dumps_json(value: Any) -> str:
    """Canonical, compact JSON, as stored in the JSON columns."""
    return _ENCODE(value)


@dataclass(frozen=True)
class ItemRecord:
    """The record of one stage item, as stored in the ``items`` table.

    JSON fields (``code_parts``, ``params``, ``inputs``, ``outputs``, ``meta``) are decoded on
    first access; treat the mappings as read-only.

    Attributes:
        stage: stage name.
        key: canonical string of the item's tag values.
        status: ``done``, ``failed`` or ``rejected``.
        code_fp: fingerprint of the stage code and version.
        params_hash: hash of the resolved parameters.
        code_parts: fingerprint of each function the code fingerprint covers.
        params: the resolved parameters.
        inputs: digest of each input (a collection input: what the caller chose, e.g. a mapping).
        outputs: ``(path relative to OUTPUT, digest)`` of each output.
        meta: metadata returned by the stage.
        reason: reject reason or error summary.
        error: traceback of a failure.
        started: unix time the item started.
        duration: seconds in the worker.
        host: worker host.
        run_id: the run that made the record.
    """

    stage: str
    key: str
    status: ItemStatus
    code_fp: str = ""
    params_hash: str = ""
    code_parts: _JsonField[Mapping[str, str]] = _JsonField()
    params: _JsonField[Mapping[str, Any]] = _JsonField()
    inputs: _JsonField[Mapping[str, Any]] = _JsonField()
    outputs: _JsonField[Mapping[str, tuple[str, str]]] = _JsonField(_decode_outputs)
    meta: _JsonField[Mapping[str, Any]] = _JsonField()
    reason: str | None = None
    error: str | None = None
    started: float | None = None
    duration: float | None = None
    host: str | None = None
    run_id: str | None = None


_ITEM_COLUMNS = tuple(f.name for f in fields(ItemRecord))
_ITEM_JSON = frozenset({"code_parts", "params", "inputs", "outputs", "meta"})
_DEFAULTS = {
    f.name: "{}" if f.name in _ITEM_JSON else f.default
    for f in fields(ItemRecord)
    if f.default is not MISSING
}
# NULL JSON columns come back as '{}' so that item_from_row has nothing to fix up.
ITEM_SELECT = "SELECT {} FROM items".format(
    ", ".join(f"coalesce({c}, '{{}}')" if c in _ITEM_JSON else c for c in _ITEM_COLUMNS)
)
ITEM_UPSERT = (
    f"INSERT OR REPLACE INTO items ({', '.join(_ITEM_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ITEM_COLUMNS))})"
)


def item_from_row(row: Sequence[Any]) -> ItemRecord:
    """Build a record from a row of `ITEM_SELECT`, JSON columns left as text (lazy)."""
    # Bypasses __init__: a frozen dataclass sets each field through object.__setattr__, which
    # costs ~6 µs a record, a third of a 50,000-row get_items.
    record = object.__new__(ItemRecord)
    record.__dict__.update(zip(_ITEM_COLUMNS, row, strict=True))
    return record


def new_record(**values: Any) -> ItemRecord:
    """A record from every field's value (JSON fields as mappings or as JSON text), without the
    frozen dataclass's per-field ``__setattr__`` (the coordinator makes one per finished item)."""
    record = object.__new__(ItemRecord)
    record.__dict__.update(_DEFAULTS)
    record.__dict__.update(values)
    return record


def item_to_row(record: ItemRecord) -> tuple[Any, ...]:
    """The values of a record in `ITEM_UPSERT` order (JSON text is written back undecoded)."""
    values = record.__dict__
    return tuple(
        (v if type(v) is str else dumps_json(v)) if name in _ITEM_JSON else v
        for name in _ITEM_COLUMNS
        for v in (values[name],)
    )


@dataclass(frozen=True)
class RunRecord:
    """One row of the ``runs`` table (see the schema for each field)."""

    run_id: str
    started: float
    finished: float | None
    pid: int | None
    host: str | None
    command: str | None
    selection: list[str]
    outcome: RunOutcome
    summary: dict[str, Any]
