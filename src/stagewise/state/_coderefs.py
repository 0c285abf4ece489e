"""What code references, and where it lives: the reading half of the code fingerprint.

Private to :mod:`stagewise.state.codefp`. ``collect_refs`` and ``code_refs`` list the outside
names a function's AST or bytecode reads; ``Project`` decides whether an object is the
project's own code; ``locate`` finds a module's source file without importing it.
"""

from __future__ import annotations

import ast
import dis
import functools
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Project", "Ref", "absolute", "code_refs", "collect_refs", "locate", "module_name"]

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_THIRD_PARTY = frozenset({"site-packages", "dist-packages"})


def module_name(obj: object) -> str:
    """The module an object was defined in (``__main__`` when unknown)."""
    return getattr(obj, "__module__", None) or "__main__"


@dataclass(frozen=True)
class Ref:
    """A name that code reads from outside itself.

    Attributes:
        chain: for a global, the name then the attributes read from it (``helpers.f`` is
            ``("helpers", "f")``); for an import inside a function, the attributes after
            the imported module (``from pkg import sub`` gives ``("sub", ...)``).
        module: set for an import inside a function body: the module named by the import.
        level: the relative-import level of ``module`` (0 for absolute).
    """

    chain: tuple[str, ...]
    module: str | None = None
    level: int = 0


# --- references -------------------------------------------------------------------------

_Imports = dict[str, tuple[str, int, tuple[str, ...]]]


def _attribute_chain(node: ast.Attribute) -> tuple[str, ...] | None:
    names: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        names.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    names.append(current.id)
    return tuple(reversed(names))


def _scope_locals(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
) -> tuple[set[str], _Imports]:
    """Names bound in a function's own scope, and the imports among them."""
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    names = {a.arg for a in every if a is not None}
    imports: _Imports = {}
    declared: set[str] = set()
    stack: list[ast.AST] = list(node.body) if isinstance(node.body, list) else [node.body]
    while stack:
        child = stack.pop()
        if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
            names.add(child.id)
        elif isinstance(child, (ast.Global, ast.Nonlocal)):
            declared.update(child.names)
        elif isinstance(child, ast.Import):
            for alias in child.names:
                if alias.asname:
                    imports[alias.asname] = (alias.name, 0, ())
                else:
                    top = alias.name.partition(".")[0]
                    imports[top] = (top, 0, ())
        elif isinstance(child, ast.ImportFrom):
            for alias in child.names:
                if alias.name != "*":
                    imports[alias.asname or alias.name] = (
                        child.module or "",
                        child.level,
                        (alias.name,),
                    )
        elif isinstance(child, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and child.name:
            names.add(child.name)
        if isinstance(child, _SCOPES):
            if not isinstance(child, ast.Lambda):
                names.add(child.name)
            continue  # a nested scope's own names are not ours
        stack.extend(ast.iter_child_nodes(child))
    names -= declared
    return names, {k: v for k, v in imports.items() if k not in declared}


class _RefCollector(ast.NodeVisitor):
    """Collect global and module-attribute reads, honouring function scopes.

    A name bound in the function (a parameter, an assignment) is local and not followed:
    a stage parameter ``clean`` must not pull in the module-level stage ``clean``.
    """

    def __init__(self, bound: frozenset[str], imports: _Imports) -> None:
        self.bound = bound
        self.imports = imports
        self.refs: list[Ref] = []

    def _use(self, chain: tuple[str, ...]) -> None:
        head = chain[0]
        if head in self.imports:
            module, level, prefix = self.imports[head]
            self.refs.append(Ref(prefix + chain[1:], module=module, level=level))
        elif head not in self.bound:
            self.refs.append(Ref(chain))

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._use((node.id,))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _attribute_chain(node)
        if chain is None:
            self.generic_visit(node)
        else:
            self._use(chain)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # Decorators, defaults and annotations are evaluated in the enclosing scope.
        outer: list[ast.AST | None] = [*getattr(node, "decorator_list", []), *node.args.defaults]
        outer += [*node.args.kw_defaults, getattr(node, "returns", None)]
        every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        outer += [a.annotation for a in [*every, node.args.vararg, node.args.kwarg] if a]
        for child in outer:
            if child is not None:
                self.visit(child)
        names, imports = _scope_locals(node)
        inherited = {k: v for k, v in self.imports.items() if k not in names}
        inner = _RefCollector(self.bound | names, {**inherited, **imports})
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            inner.visit(stmt)
        self.refs.extend(inner.refs)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        targets = {n.id for gen in node.generators for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
        inner = _RefCollector(self.bound | targets, self.imports)
        inner.generic_visit(node)
        self.refs.extend(inner.refs)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def collect_refs(node: ast.AST) -> tuple[Ref, ...]:
    """The outside names read by a definition's AST, deduplicated, in source order."""
    collector = _RefCollector(frozenset(), {})
    collector.visit(node)
    return tuple(dict.fromkeys(collector.refs))  # dedupe, keep source order


# --- bytecode ------------------------------------------------------------------------------


def code_refs(code: types.CodeType) -> list[Ref]:
    """Global reads (with the attribute chains that follow them) and imports in bytecode."""
    refs: list[Ref] = []
    chain: list[str] | None = None
    recent: list[object] = []
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and chain is not None:
            chain.append(str(ins.argval))
            continue
        if chain is not None:
            refs.append(Ref(tuple(chain)))
            chain = None
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            chain = [str(ins.argval)]
        elif ins.opname == "IMPORT_NAME":
            before = recent[-2] if len(recent) >= 2 else 0
            level = before if isinstance(before, int) else 0
            fromlist = recent[-1] if recent and isinstance(recent[-1], tuple) else ()
            names = [str(n) for n in fromlist if n != "*"]
            for chain_start in [(n,) for n in names] or [()]:
                refs.append(Ref(chain_start, module=str(ins.argval), level=level))
        if ins.opcode in dis.hasconst:
            recent.append(ins.argval)
    if chain is not None:
        refs.append(Ref(tuple(chain)))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            refs.extend(code_refs(const))
    return refs


# --- what counts as the project's own code ------------------------------------------------


@functools.cache
def _stdlib_dirs() -> frozenset[str]:
    paths = sysconfig.get_paths()  # slow enough (~0.3 ms) to matter once per stage
    return frozenset(os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if k in paths)


# Symlinks under a project do not move during a run; resolving each file once is enough.
_realpath = functools.lru_cache(maxsize=8192)(os.path.realpath)


class Project:
    """Decides, and caches per file, whether an object is the project's own code."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [_realpath(str(d)) for d in dirs]
        self.stdlib = _stdlib_dirs()
        self.root_modules: set[str] = set()
        self._files: dict[str, bool] = {}

    def file(self, filename: str | None) -> bool:
        if not filename:
            return False
        if filename not in self._files:
            real = _realpath(filename)
            inside = any(_under(real, d) for d in self.dirs)
            excluded = any(_under(real, d) for d in self.stdlib)
            self._files[filename] = (
                inside and not excluded and not _THIRD_PARTY.intersection(Path(real).parts)
            )
        return self._files[filename]

    def module(self, name: str, filename: str | None) -> bool:
        if name == "stagewise" or name.startswith("stagewise."):
            return False  # the tool is not the user's code, even in a development checkout
        return name == "__main__" or name in self.root_modules or self.file(filename)

    def contains(self, obj: object) -> bool:
        """True for a function, class or module that is the project's own code."""
        if isinstance(obj, types.ModuleType):
            return self.module(obj.__name__, getattr(obj, "__file__", None))
        if isinstance(obj, types.FunctionType):
            return self.module(module_name(obj), obj.__code__.co_filename)
        if isinstance(obj, type):
            name = module_name(obj)
            return self.module(name, getattr(sys.modules.get(name), "__file__", None))
        return False


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


# --- locating modules without importing them ---------------------------------------------


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of a module, found without executing any package ``__init__``."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        parent_spec = _find_spec(parent)
        if parent_spec is None or not parent_spec.submodule_search_locations:
            return None
        path = list(parent_spec.submodule_search_locations)
    try:
        return importlib.machinery.PathFinder.find_spec(name, path)
    except (ImportError, ValueError, OSError):
        return None


def locate(name: str) -> tuple[str, str] | None:
    """``(source file, package)`` of a module, or None for one without a ``.py`` file."""
    module = sys.modules.get(name)
    filename = getattr(module, "__file__", None) if module is not None else None
    is_package = hasattr(module, "__path__")
    if filename is None:
        spec = _find_spec(name)
        if spec is None or not spec.has_location or not spec.origin:
            return None
        filename, is_package = spec.origin, bool(spec.submodule_search_locations)
    if not str(filename).endswith((".py", ".pyw")):
        return None  # an extension module or bytecode only: nothing to normalise
    package = getattr(module, "__package__", None)
    if package is None:
        package = name if is_package else name.rpartition(".")[0]
    return str(filename), package


def absolute(module: str, level: int, package: str) -> str | None:
    """The absolute name of an imported module, or None for a relative import gone wrong."""
    if not level:
        return module
    try:
        return importlib.util.resolve_name("." * level + module, package)
    except (ImportError, ValueError):
        return None
