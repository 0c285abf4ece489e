"""Third-party handlers declared in the ``stagewise.handlers`` entry point group.

A package declares, in its pyproject::

    [project.entry-points."stagewise.handlers"]
    zarr = "stagewise_zarr:ZarrHandler"

and ``Asset("x.zarr", handler="zarr")`` (or its ``extensions``) finds it without any import
in the user's code.
"""

from __future__ import annotations

from typing import Any, Protocol

from stagewise.errors import HandlerError
from stagewise.handlers.base import Handler, as_handler

__all__ = ["ENTRY_POINT_GROUP", "EntryPointLike", "load_entry_point", "scan"]

ENTRY_POINT_GROUP = "stagewise.handlers"


class EntryPointLike(Protocol):
    """The part of ``importlib.metadata.EntryPoint`` used here."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    def load(self) -> Any: ...


def scan() -> list[EntryPointLike]:
    """Return the entry points of the ``stagewise.handlers`` group.

    The registry calls it at most once per process; tests replace it.
    """
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def load_entry_point(name: str, entry: EntryPointLike) -> Handler:
    """Load an entry point into a handler instance.

    Raises:
        HandlerError: importing it failed, or it is not a handler (naming the entry point).
    """
    try:
        loaded = entry.load()
    except Exception as exc:
        raise HandlerError(
            f"handler '{name}' (entry point {entry.value!r}) failed to load: {exc}",
            hint="reinstall the package that provides it, or remove it",
        ) from exc
    return as_handler(loaded, name)
