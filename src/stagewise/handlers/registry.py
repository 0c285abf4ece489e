"""The handler registry: built-ins by lazy ``"module:Class"`` strings, user registrations, and
third-party handlers from the ``stagewise.handlers`` entry point group (as fsspec does).

Lookup order, for a name and for an extension alike: registered handlers (which may replace a
built-in only with ``replace=True``), then built-ins, then entry points. Entry points are
scanned once per process, and only when the first two do not answer (or to list everything),
so a plain run never pays for importing plugins.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from stagewise._suggest import did_you_mean
from stagewise.errors import HandlerError
from stagewise.handlers import entry_points
from stagewise.handlers.base import (
    Handler,
    as_handler,
    handler_extensions,
    handler_extra,
    normalize_extension,
)
from stagewise.handlers.catalog import BUILTIN_EXTENSIONS as _BUILTIN_EXTENSIONS
from stagewise.handlers.catalog import BUILTINS as _BUILTINS
from stagewise.handlers.entry_points import ENTRY_POINT_GROUP, EntryPointLike, load_entry_point
from stagewise.handlers.libraries import missing_message

__all__ = [
    "ENTRY_POINT_GROUP",
    "HandlerRow",
    "describe_handlers",
    "get_handler",
    "handler_for_path",
    "handler_names",
    "missing_library",
    "register_handler",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class HandlerRow(NamedTuple):
    """One handler, as the ``list`` command shows it.

    Attributes:
        name: the handler name.
        extensions: the extensions it is chosen for (empty: only by name).
        extra: the pip extra that installs its library, or None.
        available: whether it can be used now (its library is installed and it loads).
    """

    name: str
    extensions: tuple[str, ...]
    extra: str | None
    available: bool


def _identity(obj: object) -> str:
    """Name a handler's class as ``module:qualname``: equal across re-imports of its module."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass
class _Registry:
    """All mutable registry state of the process, in one object that tests can swap."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    registered: dict[str, Handler] = field(default_factory=dict)
    registered_extensions: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, Handler] = field(default_factory=dict)  # built-ins and plugins
    ready: dict[str, Handler] = field(default_factory=dict)  # get_handler's answers, checked
    plugins: dict[str, EntryPointLike] | None = None  # None until scanned
    plugin_extensions: dict[str, str] | None = None


_REGISTRY = _Registry()


def _plugins() -> dict[str, EntryPointLike]:
    registry = _REGISTRY
    with registry.lock:
        if registry.plugins is None:
            found: dict[str, EntryPointLike] = {}
            for entry in entry_points.scan():
                found.setdefault(entry.name, entry)  # the first distribution wins a tie
            registry.plugins = found
        return registry.plugins


def _plugin_extensions() -> dict[str, str]:
    """Map extensions of every loadable plugin to its name (plugins that fail are skipped)."""
    registry = _REGISTRY
    with registry.lock:
        if registry.plugin_extensions is None:
            table: dict[str, str] = {}
            for name in sorted(_plugins()):
                try:
                    handler = _object_for(name)
                except HandlerError:
                    continue  # reported when the handler is named, or by `list`
                for extension in handler_extensions(handler):
                    table.setdefault(extension, name)
            registry.plugin_extensions = table
        return registry.plugin_extensions


def _object_for(name: str) -> Handler:
    """Return the handler named ``name`` without checking its library."""
    registry = _REGISTRY
    with registry.lock:
        if name in registry.registered:
            return registry.registered[name]
        if name in registry.resolved:
            return registry.resolved[name]
        if name in _BUILTINS:
            module_name, _, attribute = _BUILTINS[name].partition(":")
            handler = as_handler(getattr(importlib.import_module(module_name), attribute), name)
        elif name in _plugins():
            handler = load_entry_point(name, _plugins()[name])
        else:
            raise _unknown(name)
        registry.resolved[name] = handler
        return handler


def _unknown(name: str) -> HandlerError:
    names = handler_names()
    suggestion = did_you_mean(name, names)
    message = f"unknown handler '{name}'" + (f" ({suggestion})" if suggestion else "")
    return HandlerError(
        f"{message}; known handlers: {', '.join(names)}",
        hint="register your own with stagewise.register_handler(name, handler, extensions=[...])",
    )


def missing_library(name: str) -> str | None:
    """Return why handler ``name`` cannot be used, or None when its libraries are installed.

    Nothing heavy is imported: modules are looked up with ``importlib.util.find_spec``.

    Args:
        name: a handler name.

    Returns:
        None, or a message such as ``handler 'fits' needs astropy: pip install 'stagewise[fits]'``.

    Raises:
        HandlerError: no handler has this name.
    """
    return missing_message(name, _object_for(name))


def get_handler(name: str) -> Handler:
    """Return the handler registered under ``name``, ready to use.

    Args:
        name: a built-in name (``npy``, ``json``...), a registered one, or an entry point's.

    Raises:
        HandlerError: the name is unknown (with a "did you mean" hint), the handler fails to
            load, or the library it needs is not installed (naming the extra to install).
    """
    registry = _REGISTRY
    handler = registry.ready.get(name)  # a worker asks per item: one dict lookup, no lock
    if handler is not None:
        return handler
    handler = _object_for(name)
    message = missing_message(name, handler)
    if message:
        raise HandlerError(message)
    with registry.lock:
        if _object_for(name) is handler:  # not replaced by register_handler meanwhile
            registry.ready[name] = handler
    return handler


def _longest_match(filename: str, table: dict[str, str]) -> str | None:
    matches = [e for e in table if filename.endswith(e) and len(filename) > len(e)]
    return table[max(matches, key=len)] if matches else None


def handler_for_path(path: str | os.PathLike[str]) -> str:
    """Return the name of the handler chosen by a file's extension.

    The longest matching extension wins (``.fits.gz`` before ``.gz``), case-insensitively.
    ``pickle`` and ``healpix`` are never chosen this way: name them explicitly.

    Args:
        path: a file path or template (only its last component is looked at).

    Raises:
        HandlerError: no handler claims the extension.
    """
    filename = os.path.basename(os.fspath(path)).lower()
    registry = _REGISTRY
    with registry.lock:
        table = {**_BUILTIN_EXTENSIONS, **registry.registered_extensions}
    found = _longest_match(filename, table) or _longest_match(filename, _plugin_extensions())
    if found is not None:
        return found
    suffix = filename[filename.find(".", 1) :] if "." in filename[1:] else ""
    what = f"extension '{suffix}'" if suffix else "no extension"
    raise HandlerError(
        f"no handler for '{os.fspath(path)}' ({what}); handlers: {', '.join(handler_names())}",
        hint="name one with Asset(template, handler=...) or 'handler:' in the pipeline file",
    )


def _check_conflicts(name: str, handler: object, extensions: Iterable[str]) -> None:
    registry = _REGISTRY
    current = registry.registered.get(name)
    if current is None and name in _BUILTINS:
        if _identity(handler) != _BUILTINS[name]:
            raise HandlerError(
                f"handler '{name}' is built in; registering {_identity(handler)} under it needs replace=True",
                hint="choose another name, or pass replace=True to override the built-in",
            )
    elif current is not None and _identity(current) != _identity(handler):
        raise HandlerError(
            f"handler '{name}' is already registered as {_identity(current)}; registering "
            f"{_identity(handler)} under it needs replace=True",
        )
    for extension in extensions:
        owner = registry.registered_extensions.get(extension) or _BUILTIN_EXTENSIONS.get(extension)
        if owner is not None and owner != name:
            raise HandlerError(
                f"extension '{extension}' already belongs to handler '{owner}'; "
                f"giving it to '{name}' needs replace=True",
            )


def register_handler(
    name: str,
    handler: object,
    extensions: Iterable[str] = (),
    *,
    replace: bool = False,
) -> None:
    """Register a handler under ``name``, optionally chosen for some file extensions.

    Call it at import of a stage module, so that worker processes register it too.
    Registering the same class (same module and qualified name) again under the same name
    replaces it silently, since stage modules may be imported more than once.

    Args:
        name: the handler name used in ``Asset(..., handler=name)`` and pipeline files.
        handler: an object with ``read(path)`` and ``write(path, data)``, or a class
            instantiated without arguments.
        extensions: extensions that select it (``[".dat"]``); default: the handler's own
            ``extensions`` attribute, if any.
        replace: allow overriding a built-in, another registered handler, or their extensions.

    Raises:
        HandlerError: the name is invalid, the handler lacks read/write, or the name or an
            extension belongs to another handler and ``replace`` is false.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HandlerError(
            f"invalid handler name {name!r}",
            hint="use letters, digits, '_', '-' or '.', starting with a letter",
        )
    instance = as_handler(handler, name)
    given = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    wanted = tuple(normalize_extension(e) for e in given) if given else handler_extensions(instance)
    registry = _REGISTRY
    with registry.lock:
        if not replace:
            _check_conflicts(name, instance, wanted)
        for extension, owner in list(registry.registered_extensions.items()):
            if owner == name:  # a re-registration redefines the name's extensions
                del registry.registered_extensions[extension]
        registry.registered[name] = instance
        registry.registered_extensions.update(dict.fromkeys(wanted, name))
        registry.resolved.pop(name, None)
        registry.ready.pop(name, None)


def handler_names() -> list[str]:
    """Return every handler name: built-ins, registered ones and entry points, sorted."""
    with _REGISTRY.lock:
        names = set(_BUILTINS) | set(_REGISTRY.registered)
    return sorted(names | set(_plugins()))


def describe_handlers() -> list[HandlerRow]:
    """Return one row per handler (name, extensions, extra, available), for ``list``."""
    rows = []
    for name in handler_names():
        try:
            handler = _object_for(name)
        except HandlerError:
            rows.append(HandlerRow(name, (), None, False))
            continue
        with _REGISTRY.lock:
            table = {**_BUILTIN_EXTENSIONS, **_REGISTRY.registered_extensions}
        extensions = tuple(e for e, owner in table.items() if owner == name)
        if name not in _BUILTINS and name not in _REGISTRY.registered:
            extensions = handler_extensions(handler)
        available = missing_message(name, handler) is None
        rows.append(HandlerRow(name, extensions, handler_extra(handler), available))
    return rows
