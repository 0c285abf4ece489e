"""Import the modules a pipeline file names in ``stages_from`` and collect their stages."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from stagewise.errors import Problem
from stagewise.model.group import Group
from stagewise.model.stage import Stage

__all__ = ["collect_entries", "import_file", "put_first_on_path"]


def put_first_on_path(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path`` so stage modules import their neighbours."""
    text = str(folder)
    if sys.path[:1] != [text]:
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)


def _module_name(file: Path, base: Path) -> str:
    try:
        rel = file.relative_to(base)
    except ValueError:
        return file.stem
    return ".".join(rel.with_suffix("").parts)


def import_file(file: Path, base: Path) -> object:
    """Import a Python file as a module named after its path relative to ``base``.

    A module of the same name imported earlier from another file (another project loaded in
    the same process) is replaced, so each pipeline sees its own code.
    """
    file = Path(os.path.normpath(file.absolute()))  # "conf/../lib/x.py" names module x, not "...lib.x"
    name = _module_name(file, base)
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").absolute() != file.absolute():
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    importlib.invalidate_caches()
    if file.parent.absolute() != base and "." not in name:
        put_first_on_path(file.parent.absolute())  # workers find it the same way (sys.path travels)
        put_first_on_path(base)
    if "." not in name:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def collect_entries(
    specs: list[str], base: Path, place: str
) -> tuple[list[Stage | Group], list[Path], list[Problem]]:
    """Import each file or dotted module and collect its module-level stages and groups.

    A stage that belongs to a collected group joins the pipeline through its group only.

    Returns:
        The entries in definition order, the files imported, and the problems (import errors).
    """
    put_first_on_path(base)
    entries: list[Stage | Group] = []
    files: list[Path] = []
    problems: list[Problem] = []
    for spec in specs:
        where = f"{place}: stages_from: {spec}"
        try:
            if spec.endswith(".py") or "/" in spec:
                file = (base / spec).absolute()
                if not file.exists():
                    problems.append(Problem(where, f"file not found: {file}"))
                    continue
                module = import_file(file, base)
            else:
                module = importlib.import_module(spec)
        except Exception as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
            problems.append(Problem(where, f"import failed: {type(exc).__name__}: {exc}{at}"))
            continue
        module_file = getattr(module, "__file__", None)
        if module_file:
            files.append(Path(module_file))
        for value in list(vars(module).values()):
            if isinstance(value, Stage | Group) and all(value is not e for e in entries):
                entries.append(value)
    grouped = {id(s) for e in entries if isinstance(e, Group) for s in e.stages}
    return [e for e in entries if id(e) not in grouped], files, problems
