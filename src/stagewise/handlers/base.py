"""The handler protocol, and helpers that read its optional attributes safely.

A handler reads and writes one file format. Only ``read`` and ``write`` are required; the
other attributes are optional, so a user handler can be a three-line class. Everything in
stagewise reads them through the ``handler_*`` helpers below, never directly.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stagewise.errors import HandlerError

__all__ = [
    "Handler",
    "as_handler",
    "handler_extensions",
    "handler_extra",
    "handler_fingerprint",
    "handler_modules",
    "handler_path",
    "handler_returns",
    "qualified_name",
    "returns_match",
]


@runtime_checkable
class Handler(Protocol):
    """What stagewise needs from a file format.

    Optional attributes, used when present:

    - ``extensions: tuple[str, ...]`` — file extensions it is chosen for (``(".npy",)``).
    - ``returns: tuple[str, ...]`` — fully qualified names of the types ``read`` returns
      (``"numpy.ndarray"``); empty means unknown. Used to check typed connections.
    - ``extra: str | None`` — the pip extra of stagewise that installs its library.
    - ``modules: tuple[str, ...]`` — top-level modules it needs (``("astropy",)``).
    - ``fingerprint(path) -> str`` — a content fingerprint for formats whose bytes embed
      timestamps, so that rewriting identical data still counts as unchanged.
    """

    def read(self, path: Path) -> Any:
        """Read the file at ``path`` and return its data."""
        ...

    def write(self, path: Path, data: Any) -> None:
        """Write ``data`` to ``path`` (a temporary path with the output's extension)."""
        ...


def _str_tuple(handler: object, attribute: str) -> tuple[str, ...]:
    value = getattr(handler, attribute, ())
    if value is None:
        return ()
    if isinstance(value, str):
        # A lone string is an easy mistake for a one-element tuple; accept it.
        return (value,)
    return tuple(str(v) for v in value)


def handler_extensions(handler: object) -> tuple[str, ...]:
    """Return the extensions a handler declares, lower-cased with a leading dot."""
    return tuple(normalize_extension(e) for e in _str_tuple(handler, "extensions"))


def handler_returns(handler: object) -> tuple[str, ...]:
    """Return the qualified type names ``read`` returns; empty when unknown."""
    return _str_tuple(handler, "returns")


def handler_modules(handler: object) -> tuple[str, ...]:
    """Return the modules a handler needs (empty for the standard library)."""
    return _str_tuple(handler, "modules")


def handler_extra(handler: object) -> str | None:
    """Return the pip extra that installs a handler's library, or None."""
    extra = getattr(handler, "extra", None)
    return str(extra) if extra else None


def handler_fingerprint(handler: object, path: Path) -> str | None:
    """Return the handler's own fingerprint of ``path``, or None when it defines none.

    Callers fall back to hashing the file's bytes when this returns None.
    """
    method = getattr(handler, "fingerprint", None)
    if method is None or not callable(method):
        return None
    return str(method(path))


STR_PATHS = "_stagewise_str_paths"
"""A handler class attribute: true when its methods take a ``str`` path as well as a ``Path``.

The protocol promises handlers a ``Path``; the built-in handlers, which only ``open()`` their
path, set this so that per-item code need not build a ``Path`` for each file.
"""


def handler_path(handler: object, path: str) -> Any:
    """Return ``path`` as ``handler`` takes it: the ``str`` itself if it declares `STR_PATHS`,
    else a ``Path``, as the protocol promises."""
    return path if getattr(handler, STR_PATHS, False) else Path(path)


def normalize_extension(extension: str) -> str:
    """Return ``extension`` lower-cased with one leading dot: ``"FITS.gz"`` → ``".fits.gz"``.

    Raises:
        HandlerError: the extension is empty or contains a path separator.
    """
    text = extension.strip().lower()
    if not text.startswith("."):
        text = "." + text
    if text == "." or "/" in text or "\\" in text:
        raise HandlerError(f"invalid handler extension {extension!r}", hint="write it like '.npy'")
    return text


def as_handler(obj: object, name: str) -> Handler:
    """Return a handler instance from a handler object or a class taking no arguments.

    Args:
        obj: a handler object, or a handler class (instantiated without arguments).
        name: the handler name, for error messages.

    Raises:
        HandlerError: the class cannot be instantiated, or the object lacks read/write.
    """
    instance: object = obj
    if isinstance(obj, type):
        try:
            instance = obj()
        except Exception as exc:
            raise HandlerError(
                f"handler '{name}': cannot instantiate {obj.__qualname__}() without arguments: {exc}",
                hint="register an instance instead of the class",
            ) from exc
    missing = [m for m in ("read", "write") if not callable(getattr(instance, m, None))]
    if missing:
        raise HandlerError(
            f"handler '{name}' ({type(instance).__qualname__}) has no {' or '.join(missing)} method",
            hint="a handler needs read(path) -> data and write(path, data)",
        )
    return typing.cast(Handler, instance)


def qualified_name(tp: type) -> str:
    """Return ``module.qualname`` of a type, the spelling ``returns`` uses (``builtins.dict``)."""
    return f"{tp.__module__}.{tp.__qualname__}"


def _resolve(name: str) -> type | None:
    """Return the type named ``name`` if its module is already imported, else None."""
    if name == "builtins.NoneType":
        return type(None)  # spelt like this by qualified_name(), but not an attribute of builtins
    module_name, _, qualname = name.rpartition(".")
    module = sys.modules.get(module_name)
    target: object = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target if isinstance(target, type) else None


def returns_match(returns: tuple[str, ...], annotation: object) -> bool:
    """Tell whether a handler returning ``returns`` can feed a parameter annotated ``annotation``.

    Compatible when the handler's types are unknown, the annotation is ``Any``/``object``, or
    one returned type is the annotated type or a subclass of it (``dict`` fits ``Mapping``).
    Unions match when any member does; generics compare their origin (``dict[str, int]``).
    A returned type whose module is not imported cannot be checked and counts as a match, so
    this never imports a library and never reports a false error.

    Args:
        returns: qualified type names, as in a handler's ``returns``.
        annotation: a type annotation taken from a stage signature.
    """
    if not returns or annotation is Any or annotation is object:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(returns_match(returns, arg) for arg in typing.get_args(annotation))
    if annotation is None:
        annotation = type(None)
    if origin is not None:
        annotation = origin
    if not isinstance(annotation, type):
        return True  # a string annotation, a TypeVar...: nothing reliable to compare
    if qualified_name(annotation) in returns:
        return True
    for name in returns:
        returned = _resolve(name)
        if returned is None:
            return True
        try:
            if issubclass(returned, annotation):
                return True
        except TypeError:  # e.g. a Protocol that is not runtime-checkable
            return True
    return False
