"""Normalised code for the code fingerprint: ASTs without docstrings or positions, bytecode.

Private to :mod:`stagewise.state.codefp`. Everything here works on one object at a time and
never follows references; ``codefp`` does the walking.
"""

from __future__ import annotations

import ast
import dis
import hashlib
import inspect
import os
import sys
import textwrap
import tokenize
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from stagewise.state._coderefs import Ref, code_refs, collect_refs

__all__ = [
    "ModuleSource",
    "Normalised",
    "blake",
    "canon",
    "normalise_class",
    "normalise_function",
    "normalise_module",
]

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def blake(text: str) -> str:
    """Return the 16-byte blake2b hex digest of ``text`` (stable across processes)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Normalised:
    """The normalised digests of one function or class, and what it references.

    Attributes:
        parts: ``(suffix, digest)`` pairs; suffix ``""`` is the object itself, ``".name"`` a
            method of a class.
        refs: the outside names its code reads, in source order.
        bytecode: True when the source was unavailable and bytecode was digested instead.
    """

    parts: tuple[tuple[str, str], ...]
    refs: tuple[Ref, ...]
    bytecode: bool = False


@dataclass(frozen=True)
class ModuleSource:
    """The normalised digest of a module file and the imports it makes.

    Attributes:
        digest: digest of the module's AST without docstrings.
        imports: ``(module, level, names)`` for every import statement anywhere in the file.
    """

    digest: str
    imports: tuple[tuple[str, int, tuple[str, ...]], ...]


# (file, mtime_ns, qualname, first line, as root) -> result. Keyed on mtime so an edited
# file is re-read; the first line separates same-named lambdas and redefinitions.
_CACHE: dict[tuple[str, int, str, int, bool], object] = {}


def _cache_key(filename: str, qualname: str, line: int, root: bool) -> tuple[str, int, str, int, bool] | None:
    try:
        mtime = os.stat(filename).st_mtime_ns
    except (OSError, ValueError):
        return None  # exec'd or interactive code: nothing on disk to key on
    return (filename, mtime, qualname, line, root)


# --- canonical constants --------------------------------------------------------------


def canon(
    value: object, on_object: Callable[[object], str | None] | None = None, depth: int = 0
) -> str | None:
    """Return a process-independent text for a constant, or None when it is not one.

    Sets are sorted by the text of their elements (their iteration order follows
    ``hash(str)``, which PYTHONHASHSEED randomises); dicts keep insertion order. Exact
    builtin types only, so an enum member or a str subclass goes to ``on_object``.

    Args:
        value: the object.
        on_object: called for any other object; returns its text or None to give up.
        depth: recursion guard against self-containing containers.
    """
    if depth > 40:
        return None
    kind = type(value)
    if value is None or value is Ellipsis or kind in (bool, str, bytes, float, complex):
        return f"{kind.__name__}:{value!r}"
    if kind is int:
        return f"int:{value:x}"  # hex: decimal repr refuses huge ints (int_max_str_digits)
    if kind in (tuple, list, set, frozenset, dict):
        items = value.items() if isinstance(value, dict) else cast("Iterable[object]", value)
        texts: list[str] = []
        for item in items:
            text = canon(item, on_object, depth + 1)
            if text is None:
                return None
            texts.append(text)
        if kind in (set, frozenset):
            texts.sort()
        return f"{kind.__name__}({','.join(texts)})"
    # Only inside a container: a bare function or instance is the walker's business.
    return on_object(value) if on_object is not None and depth > 0 else None


# --- AST normalisation ------------------------------------------------------------------


def _dump(node: object) -> str:
    """Dump an AST without positions, omitting None and [] fields.

    Unlike ``ast.dump`` this is stable across Python versions: fields that new versions add
    (``type_params`` in 3.12) are empty for old code, and 3.13 changed how ``ast.dump``
    prints empty fields; omitting them keeps a Python upgrade from rerunning everything.
    """
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append(f"{name}={_dump(value)}")
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_dump(item) for item in node) + "]"
    return repr(node)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, *_FUNCS)) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = node.body[1:] or [ast.Pass()]


def _parse_fragment(source: str) -> ast.stmt | None:
    """Parse the source of one definition, or return None when it does not parse."""
    try:
        body = ast.parse(textwrap.dedent(source)).body
    except SyntaxError:
        # dedent gives up when a multi-line string has lines at column 0; nesting the
        # fragment under an ``if`` parses it at any indentation.
        try:
            wrapper = ast.parse("if 1:\n" + source).body[0]
        except SyntaxError:
            return None
        body = wrapper.body if isinstance(wrapper, ast.If) else []
    return body[0] if body else None


def _strip_root(node: ast.stmt) -> None:
    """Drop what the stage decorator and the parameter system own from a root definition.

    Decorator arguments other than ``version`` are not code (SPEC 6). Keyword-only defaults
    are the stage's parameter defaults, which enter the resolved-parameter hash; counting
    them here too would rerun items whose resolved parameters did not change.
    """
    if isinstance(node, (ast.ClassDef, *_FUNCS)):
        node.decorator_list = []
    targets: list[ast.stmt] = [node]
    if isinstance(node, ast.ClassDef):
        targets = [s for s in node.body if isinstance(s, _FUNCS) and s.name == "__init__"]
    for target in targets:
        if isinstance(target, _FUNCS):
            cleared: list[ast.expr | None] = [None] * len(target.args.kw_defaults)
            target.args.kw_defaults = cleared


# --- bytecode fallback ------------------------------------------------------------------


def _code_text(code: types.CodeType) -> str:
    """Text of a code object: bytecode, names and constants, without positions.

    ``co_code`` is the unspecialised bytecode (3.11+ hides the adaptive instructions), so it
    is stable within a Python version; it differs between versions, hence the prefix.
    """
    consts = list(code.co_consts)
    if consts and isinstance(consts[0], str):
        loaded = any(i.opcode in dis.hasconst and i.arg == 0 for i in dis.get_instructions(code))
        if not loaded:
            consts[0] = None  # the docstring slot: documentation, not code
    texts = [_code_text(c) if isinstance(c, types.CodeType) else canon(c) or "?" for c in consts]
    counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    names = (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)
    return f"code({code.co_code.hex()}|{names!r}|{counts!r}|{','.join(texts)})"


def _bytecode_digest(code: types.CodeType) -> str:
    return blake(f"py{sys.version_info[0]}.{sys.version_info[1]}:{_code_text(code)}")


# --- entry points ---------------------------------------------------------------------


def normalise_function(fn: types.FunctionType, *, root: bool) -> Normalised:
    """Normalise one function: its source AST, or its bytecode when there is no source.

    Args:
        fn: the function.
        root: True for the stage body itself (decorators and keyword defaults dropped).
    """
    code = fn.__code__
    key = _cache_key(code.co_filename, fn.__qualname__, code.co_firstlineno, root)
    cached = _CACHE.get(key) if key else None
    if isinstance(cached, Normalised):
        return cached
    try:
        node = _parse_fragment(inspect.getsource(fn))
    except Exception:
        # OSError/TypeError: a notebook's __main__, exec'd code, a REPL lambda; anything
        # else (a file edited since import confuses inspect): bytecode is still correct.
        node = None
    if node is None:
        result = Normalised((("", _bytecode_digest(code)),), tuple(dict.fromkeys(code_refs(code))), True)
    else:
        _strip_docstrings(node)
        if root:
            _strip_root(node)
        result = Normalised((("", blake(_dump(node))),), collect_refs(node))
    if key:
        _CACHE[key] = result
    return result


def _class_parts(node: ast.ClassDef) -> tuple[tuple[str, str], ...]:
    """One part per method (so a report can say ``Clean.setup``) plus the class shell."""
    methods = [s for s in node.body if isinstance(s, _FUNCS)]
    node.body = [s for s in node.body if not isinstance(s, _FUNCS)] or [ast.Pass()]
    parts = [("", blake(_dump(node)))]
    seen: dict[str, int] = {}
    for method in methods:
        seen[method.name] = seen.get(method.name, 0) + 1
        suffix = f".{method.name}" + (f"#{seen[method.name]}" if seen[method.name] > 1 else "")
        parts.append((suffix, blake(_dump(method))))
    return tuple(parts)


def _class_fallback(cls: type) -> Normalised:
    """Digest a class without source: bytecode of its methods, constants of its body."""
    parts: list[tuple[str, str]] = []
    refs: list[Ref] = []
    shell: list[str] = [cls.__qualname__]
    for name, value in vars(cls).items():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, types.FunctionType):
            parts.append((f".{name}", _bytecode_digest(value.__code__)))
            refs.extend(code_refs(value.__code__))
        elif not name.startswith("__") and (text := canon(value)) is not None:
            shell.append(f"{name}={text}")
    parts.insert(0, ("", blake("|".join(shell))))
    return Normalised(tuple(parts), tuple(dict.fromkeys(refs)), True)


def normalise_class(cls: type, *, root: bool) -> Normalised:
    """Normalise a class: its methods and class-level statements, with their references.

    Args:
        cls: the class.
        root: True for a class stage itself (decorators and ``__init__`` defaults dropped).
    """
    try:
        filename = inspect.getfile(cls)
    except TypeError:
        filename = ""
    key = _cache_key(filename, cls.__qualname__, 0, root) if filename else None
    cached = _CACHE.get(key) if key else None
    if isinstance(cached, Normalised):
        return cached
    try:
        node = _parse_fragment(inspect.getsource(cls))
    except Exception:  # as for functions: no source, or a source inspect cannot read
        node = None
    if not isinstance(node, ast.ClassDef):
        result = _class_fallback(cls)
    else:
        _strip_docstrings(node)
        if root:
            _strip_root(node)
        refs = collect_refs(node)
        result = Normalised(_class_parts(node), refs)
    if key:
        _CACHE[key] = result
    return result


def normalise_module(path: str) -> ModuleSource | None:
    """Normalise a module file for ``fingerprint="module"``; None if it cannot be read."""
    key = _cache_key(path, "<module>", 0, False)
    cached = _CACHE.get(key) if key else None
    if isinstance(cached, ModuleSource):
        return cached
    try:
        with tokenize.open(path) as handle:  # honours a PEP 263 encoding cookie
            source = handle.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ModuleSource(blake(source), ())  # not importable anyway; the text still counts
    imports: list[tuple[str, int, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend((alias.name, 0, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            imports.append((node.module or "", node.level, names))
    _strip_docstrings(tree)
    result = ModuleSource(blake(_dump(tree)), tuple(imports))
    if key:
        _CACHE[key] = result
    return result
