"""Handles a stage body receives: ``Lazy`` inputs, ``Out`` outputs, and input collections.

Inputs are read-only and outputs write-only: an input handle has no ``write``, an output handle
no ``read``. Handles carry a path and a handler reference only, so they cross process
boundaries cheaply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stagewise.errors import AssetIOError, StageError, StagewiseError
from stagewise.handlers.atomic import write_atomic
from stagewise.handlers.base import handler_path
from stagewise.handlers.registry import get_handler

__all__ = ["Collection", "HandlerRef", "Lazy", "Out", "OutputHandle", "read_asset", "resolve_handler"]

HandlerRef = Any
"""A handler name (``"npy"``) or a handler object."""


def resolve_handler(ref: HandlerRef) -> Any:
    """Return the handler object for a name or an object."""
    return get_handler(ref) if isinstance(ref, str) else ref


def read_asset(handler: Any, path: str | os.PathLike[str]) -> Any:
    """Read one file with its handler; failures name the file.

    Raises:
        AssetIOError: the file is missing or the handler cannot read it.
    """
    try:
        return handler.read(handler_path(handler, path if isinstance(path, str) else os.fspath(path)))
    except StagewiseError:
        raise
    except FileNotFoundError:
        raise AssetIOError(f"{path}: file not found", path=str(path)) from None
    except Exception as exc:
        name = getattr(handler, "name", type(handler).__name__)
        raise AssetIOError(f"{path}: cannot read with handler {name}: {exc}", path=str(path)) from exc


class Lazy:
    """A read-only handle on one input file: ``.path`` and ``.read()``.

    Annotate an input parameter ``Lazy`` to receive this handle instead of the data.
    """

    __slots__ = ("_file", "_path", "handler")

    def __init__(self, path: str | os.PathLike[str], handler: HandlerRef) -> None:
        # Kept as given; the Path is made when asked for (a collection may hold thousands).
        self._file = path
        self._path: Path | None = None
        self.handler = handler

    @property
    def path(self) -> Path:
        """The file."""
        if self._path is None:
            self._path = Path(self._file)
        return self._path

    def read(self) -> Any:
        """Read the file with its handler."""
        return read_asset(resolve_handler(self.handler), self._file)

    def __repr__(self) -> str:
        return f"Lazy({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lazy) and (self.path, self.handler) == (other.path, other.handler)

    def __hash__(self) -> int:
        return hash(self.path)

    def __getstate__(self) -> tuple[str | os.PathLike[str], HandlerRef]:
        return self._file, self.handler

    def __setstate__(self, state: tuple[str | os.PathLike[str], HandlerRef]) -> None:
        self._file, self.handler = state
        self._path = None


class OutputHandle:
    """A write-only handle on one output file: ``.write(data)`` writes it atomically."""

    __slots__ = ("_file", "handler", "name", "written")

    def __init__(self, name: str, path: str | os.PathLike[str], handler: HandlerRef) -> None:
        self.name = name
        self._file = path
        self.handler = handler
        self.written = False

    @property
    def path(self) -> Path:
        """The output file."""
        return Path(self._file)

    def write(self, data: Any) -> None:
        """Write ``data`` with the output's handler (to a temporary file, then renamed)."""
        handler = self.handler
        label = handler if isinstance(handler, str) else None
        write_atomic(resolve_handler(handler), self._file, data, name=label)
        self.written = True

    def __repr__(self) -> str:
        return f"OutputHandle({self.name!r}, {str(self.path)!r})"


class Out(Mapping[str, OutputHandle]):
    """The outputs of the current item by name; annotate a parameter ``Out`` to receive it.

    Example::

        def clean(sky, out: Out):
            out["clean"].write(sky * 2)
    """

    def __init__(self, handles: Mapping[str, OutputHandle]) -> None:
        self._handles = dict(handles)

    def __getitem__(self, name: str) -> OutputHandle:
        try:
            return self._handles[name]
        except KeyError:
            raise StageError(f"no output named '{name}' (outputs: {', '.join(self._handles)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def unwritten(self) -> list[str]:
        """Names of the outputs not written yet."""
        return [name for name, h in self._handles.items() if not h.written]


class Collection(Mapping[Any, Lazy]):
    """A read-only mapping from the extra tags of an input to handles, ordered by tag values.

    The key is the tag value itself when one dim is extra (an int for ``sim``), else a tuple in
    the producer's dim order.
    """

    def __init__(self, entries: Mapping[Any, Lazy]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, key: Any) -> Lazy:
        return self._entries[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Collection({len(self)} items)"
