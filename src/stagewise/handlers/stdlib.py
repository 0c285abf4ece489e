"""Handlers for formats the standard library (and PyYAML) read: json, yaml, txt, csv, pickle.

Each handler writes deterministic bytes — the same data always gives the same file — so that
an upstream rerun producing identical data stops there (early cutoff).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from stagewise.errors import AssetIOError

__all__ = ["CsvHandler", "JsonHandler", "PickleHandler", "TxtHandler", "YamlHandler"]

# What json.load and yaml.safe_load can give back at the top level.
_PLAIN_TYPES = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
)


_WRITE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _read_text(path: str | Path) -> str:
    """The file's text, decoded as UTF-8 (unbuffered binary: ~3x cheaper than a text stream)."""
    with open(path, "rb", buffering=0) as stream:
        return stream.read().decode("utf-8")


def _write_bytes(path: str | Path, data: bytes) -> None:
    """Create or truncate ``path`` and write ``data``, with no file object (tiny files are common)."""
    descriptor = os.open(path, _WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _json_default(value: Any) -> Any:
    # NumPy scalars (np.int64, np.bool_) are not JSON types, yet stage code returns them all
    # the time; write their Python value. Arrays are refused: they would come back as lists.
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):
        return value.item()
    hint = " (use .tolist(), or the npy handler)" if hasattr(value, "shape") else ""
    raise TypeError(f"json cannot write a {type(value).__qualname__}{hint}")


class JsonHandler:
    """JSON, indented by 2, keys in insertion order, UTF-8, ending with a newline.

    NaN and infinities are written as Python's ``json`` does (``NaN``, ``Infinity``).
    Tuples come back as lists, as JSON has no tuple.
    """

    extensions: ClassVar[tuple[str, ...]] = (".json",)
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = _PLAIN_TYPES

    def read(self, path: str | Path) -> Any:
        """Return the decoded JSON value."""
        return json.loads(_read_text(path))

    def write(self, path: str | Path, data: Any) -> None:
        """Write ``data`` as JSON."""
        text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
        _write_bytes(path, (text + "\n").encode("utf-8"))


class YamlHandler:
    """YAML through PyYAML's safe dumper and loader, keys in insertion order."""

    extensions: ClassVar[tuple[str, ...]] = (".yaml", ".yml")
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = (*_PLAIN_TYPES, "datetime.date", "datetime.datetime")
    modules: ClassVar[tuple[str, ...]] = ("yaml",)

    def read(self, path: str | Path) -> Any:
        """Return the loaded YAML value (safe loader only)."""
        import yaml

        with open(path, encoding="utf-8") as stream:
            return yaml.safe_load(stream)

    def write(self, path: str | Path, data: Any) -> None:
        """Write ``data`` as block-style YAML."""
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        _write_bytes(path, text.encode("utf-8"))


class TxtHandler:
    """Plain UTF-8 text: writes a ``str`` and reads back exactly that string.

    Line endings are kept as written (``newline=""``), so ``"a\\r\\nb"`` survives.
    """

    extensions: ClassVar[tuple[str, ...]] = (".txt",)
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = ("builtins.str",)

    def read(self, path: str | Path) -> str:
        """Return the file's text, unchanged."""
        return _read_text(path)

    def write(self, path: str | Path, data: Any) -> None:
        """Write the string ``data``.

        Raises:
            AssetIOError: ``data`` is not a str.
        """
        if not isinstance(data, str):
            raise AssetIOError(
                f"the txt handler writes a str, got {type(data).__qualname__}",
                path=str(path),
                hint="convert it with str() or choose another handler (json, npy, pickle)",
            )
        _write_bytes(path, data.encode("utf-8"))


def _csv_table(data: Any, path: str | Path) -> tuple[list[str], list[Sequence[Any]]]:
    """Return (header, rows) from a list of dicts or a list of rows headed by the header."""
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise AssetIOError(
            f"the csv handler writes a list of dicts or a list of rows, got {type(data).__qualname__}",
            path=str(path),
        )
    if not data:
        return [], []
    if all(isinstance(row, Mapping) for row in data):
        header: dict[str, None] = {}  # a dict keeps the first-seen order of the keys
        for row in data:
            header.update(dict.fromkeys(str(k) for k in row))
        names = list(header)
        keyed = [{str(k): v for k, v in row.items()} for row in data]
        return names, [[row.get(k, "") for k in names] for row in keyed]
    if any(isinstance(row, Mapping | str) or not isinstance(row, Sequence) for row in data):
        raise AssetIOError(
            "the csv handler writes either all dicts or all rows (lists), not a mix",
            path=str(path),
        )
    names = [str(name) for name in data[0]]
    for number, row in enumerate(data[1:], start=2):
        if len(row) > len(names):
            raise AssetIOError(
                f"csv row {number} has {len(row)} values but the header has {len(names)}",
                path=str(path),
            )
    return names, list(data[1:])


class CsvHandler:
    """CSV: writes a list of dicts, or a list of rows whose first row is the header.

    With dicts, the header is the union of their keys in first-seen order and a missing key is
    written empty. Reading always gives a list of dicts of strings (the csv module knows no
    types); missing trailing values read as ``""``.
    """

    extensions: ClassVar[tuple[str, ...]] = (".csv",)
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = ("builtins.list",)

    def read(self, path: str | Path) -> list[dict[str, str]]:
        """Return the rows as dicts keyed by the header."""
        # newline="" lets the csv module handle quoted newlines itself, as its docs require.
        with open(path, encoding="utf-8", newline="") as stream:
            return [dict(row) for row in csv.DictReader(stream, restval="")]

    def write(self, path: str | Path, data: Any) -> None:
        """Write ``data`` with a header line, ``\\n`` line endings and minimal quoting."""
        header, rows = _csv_table(data, path)
        with open(path, "w", encoding="utf-8", newline="") as stream:
            if not header:
                return
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


class PickleHandler:
    """Python pickle, protocol 5. Never chosen by extension: name it explicitly.

    Only read pickles you trust: loading one runs code.
    """

    extensions: ClassVar[tuple[str, ...]] = ()
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = ()

    def read(self, path: str | Path) -> Any:
        """Return the unpickled object."""
        with open(path, "rb") as stream:
            return pickle.load(stream)

    def write(self, path: str | Path, data: Any) -> None:
        """Pickle ``data``."""
        with open(path, "wb") as stream:
            pickle.dump(data, stream, protocol=5)
