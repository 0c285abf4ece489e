"""A conformance check that any handler — built-in or a user's — can be run against.

stagewise's own tests run every built-in handler through :func:`check_handler`; a plugin
author calls it from a test with sample data to get the same guarantees checked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stagewise.handlers.atomic import write_atomic
from stagewise.handlers.base import as_handler, handler_fingerprint

__all__ = ["check_handler", "exactly_equal"]


def _arrays_equal(a: Any, b: Any) -> bool:
    import numpy as np  # only reached when an array is compared, so NumPy is already loaded

    if not (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape):
        return False
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # equal_nan is undefined for strings and objects
        return bool(np.array_equal(a, b))


def exactly_equal(a: Any, b: Any) -> bool:
    """Compare two values exactly: types, dict key order, and array dtype and shape too.

    NaN equals NaN inside arrays (a round trip must keep it, not make it equal itself).
    """
    numpy = sys.modules.get("numpy")  # an array can only exist if NumPy is imported
    if numpy is not None and isinstance(a, numpy.ndarray):
        return _arrays_equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return list(a) == list(b) and all(exactly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(exactly_equal, a, b))
    return bool(a == b)


def check_handler(
    handler: object,
    data: Any,
    folder: Path,
    *,
    extension: str,
    equal: Callable[[Any, Any], bool] = exactly_equal,
    name: str | None = None,
) -> None:
    """Check that a handler writes atomically, reads back exactly, and writes reproducibly.

    Args:
        handler: the handler object or class under test.
        data: sample data the handler accepts.
        folder: an empty scratch folder (pytest's ``tmp_path``).
        extension: the output extension to use, e.g. ``".npy"``.
        equal: compares ``(read_back, written)``; exact by default.
        name: the handler's name, for messages.

    Raises:
        AssertionError: describing the first guarantee that does not hold.
    """
    label = name or (handler if isinstance(handler, type) else type(handler)).__qualname__
    instance = as_handler(handler, label)
    first = Path(folder) / "first" / f"item{extension}"
    second = Path(folder) / "second" / f"item{extension}"
    write_atomic(instance, first, data, name=label)
    extra = sorted(p.name for p in first.parent.iterdir() if p != first)
    if extra or not first.is_file():
        raise AssertionError(f"{label}: writing {first.name} left {extra or 'no file'}")
    back = instance.read(first)
    if not equal(back, data):
        raise AssertionError(f"{label}: read back {back!r}, but wrote {data!r}")
    # Early cutoff needs equal data to give equal bytes, or an equal handler fingerprint.
    write_atomic(instance, second, data, name=label)
    own = handler_fingerprint(instance, first)
    if own is not None:
        if own != handler_fingerprint(instance, second):
            raise AssertionError(f"{label}: two writes of the same data differ in fingerprint")
    elif first.read_bytes() != second.read_bytes():
        raise AssertionError(
            f"{label}: two writes of the same data differ in bytes; if the format embeds a "
            "time, define fingerprint(path) on the handler"
        )
