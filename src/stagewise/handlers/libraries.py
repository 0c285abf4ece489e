"""Whether a handler's libraries are installed, and the command that installs them."""

from __future__ import annotations

import importlib.util
import sys

from stagewise.handlers.base import handler_extra, handler_modules

__all__ = ["is_installed", "missing_message"]

# pip names of modules whose distribution is named differently, for install hints.
_PIP_NAMES = {
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
}


def is_installed(module: str) -> bool:
    """Tell whether ``module`` can be imported, without importing it (nor its parents)."""
    top = module.partition(".")[0]  # find_spec of a submodule would import its parent
    if top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def missing_message(name: str, handler: object) -> str | None:
    """Return what to install for handler ``name``, or None when nothing is missing."""
    missing = [m for m in handler_modules(handler) if not is_installed(m)]
    if not missing:
        return None
    extra = handler_extra(handler)
    if extra:
        command = f"pip install 'stagewise[{extra}]'"
    else:
        command = "pip install " + " ".join(_PIP_NAMES.get(m, m) for m in missing)
    needed = ", ".join(_PIP_NAMES.get(m, m) for m in missing)
    return f"handler '{name}' needs {needed}: {command}"
