"""The code fingerprint of a stage: what code, if edited, makes its items rerun (SPEC 6).

``code_fingerprint`` digests the normalised source of the stage body, its ``pre``/``post``
hooks and, transitively, the project's own functions, classes and module constants they
reach through global names or module attributes (``import helpers; helpers.f()``). Comments,
docstrings and formatting do not count; installed packages and the standard library are
never fingerprinted, so upgrading numpy reruns nothing. Each part is digested separately so
that ``changed_parts`` can report *which* function changed.

Rules worth knowing:

- *Project code* is code whose file lies under one of ``project_dirs`` and not in a
  ``site-packages``/``dist-packages`` folder or the standard library, plus anything defined
  in ``__main__`` or in the module of a fingerprinted root. ``stagewise`` itself never is.
- Without source (a notebook's ``__main__``, ``exec``), a function is digested from its
  bytecode, names and constants, which are specific to the Python minor version: such parts
  are listed in ``CodeFingerprint.bytecode_parts`` and change when Python is upgraded.
- A project module used as a value (``getattr(helpers, name)``), imported inside a function
  body, or reached through a submodule not yet imported, is taken whole, as in module mode.
- Only what is already imported is inspected; nothing is imported or executed.
- The stage body's decorators and keyword-only defaults are not code: hooks are roots of
  their own, and defaults are parameters, hashed with the resolved parameters.
- Module constants are fingerprinted by value: a module-level dict that the code mutates
  at run time (a memo) changes the fingerprint of the process that ran it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import os
import sys
import types
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stagewise.errors import ConfigError
from stagewise.state._coderefs import Project, Ref, absolute, locate, module_name
from stagewise.state._normalise import (
    blake,
    canon,
    normalise_class,
    normalise_function,
    normalise_module,
)

__all__ = ["CodeFingerprint", "changed_parts", "code_fingerprint"]

# Bumped when the normalisation changes, so that old records read as "code changed".
_FORMAT = "stagewise-codefp-1"
_EXTERNAL = blake("<external>")
_DESCRIPTORS = (
    property,
    functools.cached_property,
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
)


@dataclass(frozen=True)
class CodeFingerprint:
    """The fingerprint of a stage's code.

    Attributes:
        digest: hex blake2b (16 bytes) over every part; equal digests mean "same code".
        parts: qualified name (``helpers.smooth``, ``stages.Clean.setup``,
            ``stages.THRESHOLDS``, a module name in module mode, ``<version>``) to the
            digest of that part. Diff two of these with ``changed_parts``.
        bytecode_parts: the parts digested from bytecode because their source was not
            available; they change with the Python minor version.
    """

    digest: str
    parts: dict[str, str] = field(hash=False)
    bytecode_parts: tuple[str, ...] = ()


def changed_parts(old_parts: Mapping[str, str], new_parts: Mapping[str, str]) -> list[str]:
    """Return the names added, removed or changed between two ``parts`` maps, sorted."""
    names = set(old_parts) | set(new_parts)
    return sorted(n for n in names if old_parts.get(n) != new_parts.get(n))


def code_fingerprint(
    roots: Sequence[object],
    *,
    project_dirs: Sequence[Path],
    mode: Literal["function", "module"] = "function",
    version: str | None = None,
) -> CodeFingerprint:
    """Fingerprint the code of one stage.

    Args:
        roots: the stage body first (a function, or a class whose methods all count), then
            its ``pre``/``post`` hooks. An object with ``__stagewise_fn__`` stands for that
            function; ``functools.wraps`` wrappers are unwrapped. The first root is always
            fingerprinted; a hook outside the project counts by its name only.
        project_dirs: the folders whose code is the project's own.
        mode: ``"function"`` follows references from the roots; ``"module"`` takes the
            whole source of the roots' modules and of every project module they import.
        version: the stage's ``version`` string, mixed in as the part ``<version>``.

    Raises:
        ConfigError: ``mode`` is not ``"function"`` or ``"module"``.
    """
    if mode not in ("function", "module"):
        raise ConfigError(f"unknown fingerprint mode {mode!r}", hint='use "function" or "module"')
    unwrapped = [_unwrap_root(root) for root in roots]
    project = Project(project_dirs)
    walker = _Walker(project)
    full: list[object] = []
    for index, root in enumerate(unwrapped):
        if index == 0 or project.contains(root) or project.contains(type(root)):
            full.append(root)
            project.root_modules.add(getattr(root, "__module__", None) or "")
        else:
            walker.add(_qualified(root), _EXTERNAL)  # swapping np.sort for np.argsort counts
    for root in full:
        if mode == "function" or not walker.walk_modules(module_name(root)):
            walker.push(root, root=True)  # module mode without a module file: follow the code
    walker.drain()
    if version is not None:
        walker.parts["<version>"] = blake(version)
    digest = hashlib.blake2b(f"{_FORMAT}|{mode}\n".encode(), digest_size=16)
    for name in sorted(walker.parts):
        digest.update(f"{name}\0{walker.parts[name]}\n".encode())
    return CodeFingerprint(digest.hexdigest(), dict(walker.parts), tuple(walker.bytecode))


# --- naming and unwrapping ----------------------------------------------------------------


def _label(module: str, file: object = None) -> str:
    """The display name of a module.

    ``__main__`` becomes its file's stem, so that ``python pipeline.py run`` and
    ``stagewise run pipeline.py`` (which imports the file under its stem) agree.
    """
    if module == "__main__":
        if file is None:
            file = getattr(sys.modules.get("__main__"), "__file__", None)
        if isinstance(file, str):
            return Path(file).stem
    return module


def _qualified(obj: object) -> str:
    """``module.qualname`` of a function or class (or a best effort for other objects)."""
    module = module_name(obj)
    file = getattr(obj, "__globals__", {}).get("__file__")
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{_label(module, file)}.{name}"


def _attr(obj: object, name: str) -> object:
    """Read a dunder hook without triggering a user ``__getattr__``; None when absent."""
    try:
        found = inspect.getattr_static(obj, name)
    except AttributeError:
        return None
    if isinstance(found, _DESCRIPTORS):
        try:
            return getattr(obj, name)
        except Exception:
            return None
    return found


def _class_namespace(cls: type) -> Mapping[str, object]:
    """The globals a class's methods see (its module may be missing from sys.modules)."""
    for value in vars(cls).values():
        value = getattr(value, "__func__", value)  # staticmethod, classmethod
        if isinstance(value, types.FunctionType):
            return value.__globals__
    module = sys.modules.get(cls.__module__)
    return vars(module) if module is not None else {}


def _unwrap_root(obj: object) -> object:
    inner = _attr(obj, "__stagewise_fn__")
    if inner is not None:
        obj = inner
    if not isinstance(obj, type) and _attr(obj, "__wrapped__") is not None:
        with contextlib.suppress(ValueError):  # a __wrapped__ cycle: keep the outer object
            obj = inspect.unwrap(obj)  # type: ignore[arg-type]
    return obj


# --- the walk ------------------------------------------------------------------------------


class _Walker:
    """Breadth-first walk from the roots over project code, collecting parts."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.parts: dict[str, str] = {}
        self.bytecode: list[str] = []
        self._queue: deque[tuple[object, bool]] = deque()
        self._seen: set[int] = set()  # ids only steer the walk; they never reach a digest
        self._keep: list[object] = []  # keeps seen objects alive so their ids stay unique
        self._module_files: set[str] = set()
        self._nesting = 0

    def add(self, name: str, digest: str, *, bytecode: bool = False) -> None:
        key, count = name, 1
        while key in self.parts:  # two lambdas of one module share a qualname
            count += 1
            key = f"{name}#{count}"
        self.parts[key] = digest
        if bytecode:
            self.bytecode.append(key)

    def push(self, obj: object, *, root: bool = False) -> None:
        if id(obj) not in self._seen:
            self._seen.add(id(obj))
            self._keep.append(obj)
            self._queue.append((obj, root))

    def drain(self) -> None:
        while self._queue:
            obj, root = self._queue.popleft()
            if isinstance(obj, type):
                self._visit_class(obj, root)
            elif isinstance(obj, types.FunctionType):
                self._visit_function(obj, root)
            else:
                self.consider(obj, _qualified(obj))  # a hook that is a callable instance

    def _visit_function(self, fn: types.FunctionType, root: bool) -> None:
        norm = normalise_function(fn, root=root)
        name = _qualified(fn)
        for suffix, digest in norm.parts:
            self.add(name + suffix, digest, bytecode=norm.bytecode)
        for ref in norm.refs:
            self._resolve(ref, fn.__globals__)
        # A decorator's wrapper holds the wrapped function in a closure cell.
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                continue  # an empty cell
            self.consider(value, f"{name}.{var}")
        wrapped = _attr(fn, "__wrapped__")
        if wrapped is not None:
            self.consider(wrapped, name)

    def _visit_class(self, cls: type, root: bool) -> None:
        norm = normalise_class(cls, root=root)
        name = _qualified(cls)
        for suffix, digest in norm.parts:
            self.add(name + suffix, digest, bytecode=norm.bytecode)
        namespace = _class_namespace(cls)
        for ref in norm.refs:
            self._resolve(ref, namespace)
        for base in cls.__bases__:
            self.consider(base, _qualified(base))

    def _resolve(self, ref: Ref, namespace: Mapping[str, object]) -> None:
        """Follow a reference to the object it names, through project modules."""
        if ref.module is not None:
            package = str(namespace.get("__package__") or "")
            base = absolute(ref.module, ref.level, package)
            if base is not None:
                tries = [f"{base}.{ref.chain[0]}", base] if ref.chain and base else [base]
                any(self.walk_modules(name) for name in tries if name)
            return
        if ref.chain[0] not in namespace:
            return  # a builtin, or a name created at run time
        obj = namespace[ref.chain[0]]
        qual = f"{_label(str(namespace.get('__name__')), namespace.get('__file__'))}.{ref.chain[0]}"
        for attr in ref.chain[1:]:
            if not isinstance(obj, types.ModuleType):
                break
            if not self.project.contains(obj):
                return  # numpy.mean: third-party code is never fingerprinted
            members = vars(obj)
            if attr not in members:
                # A submodule not imported yet, or a module __getattr__: take it whole.
                if not self.walk_modules(f"{obj.__name__}.{attr}"):
                    self.walk_modules(obj.__name__)
                return
            qual, obj = f"{_label(obj.__name__, members.get('__file__'))}.{attr}", members[attr]
        self.consider(obj, qual)

    def consider(self, obj: object, qual: str) -> None:
        """Include a referenced object if it is project code or a constant."""
        inner = _attr(obj, "__stagewise_fn__")
        if inner is not None:
            obj = inner
        if isinstance(obj, (types.FunctionType, type)):
            if self.project.contains(obj):
                self.push(obj)
        elif isinstance(obj, types.ModuleType):
            if self.project.contains(obj):
                self.walk_modules(obj.__name__)
        elif isinstance(obj, types.MethodType):
            self.consider(obj.__self__, qual)  # its class holds the method (and its siblings)
        elif isinstance(obj, functools.partial):
            self.consider(obj.func, qual)
        elif (text := canon(obj, self._name_in_constant)) is not None:
            if qual not in self.parts:  # by name: small ints share ids, names do not
                self.parts[qual] = blake(text)
        elif (wrapped := _attr(obj, "__wrapped__")) is not None:
            self.consider(wrapped, qual)  # functools.lru_cache and similar wrappers
        elif self.project.contains(type(obj)):
            self.push(type(obj))  # an instance of a project class: its methods count
            text = self._instance_text(obj)
            if text is not None and qual not in self.parts:
                self.parts[qual] = blake(text)  # CONFIG = Config(lr=1e-3): its values count

    def _name_in_constant(self, obj: object) -> str | None:
        """Text for a function, class or module inside a constant (a registry dict)."""
        if isinstance(obj, types.ModuleType):
            return f"module:{obj.__name__}"
        if isinstance(obj, (types.FunctionType, type, types.BuiltinFunctionType)):
            if self.project.contains(obj):
                self.push(obj)
            return f"ref:{_qualified(obj)}"
        if self.project.contains(type(obj)) and (text := self._instance_text(obj)) is not None:
            self.push(type(obj))
            return text
        return None  # an instance or an array: not a constant, skip the whole value

    def _instance_text(self, obj: object) -> str | None:
        """Text for a value-like instance (enum member, dataclass, namedtuple) or None."""
        state: object = None
        if isinstance(obj, enum.Enum):
            state = obj.name
        elif dataclasses.is_dataclass(obj):
            state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        elif isinstance(obj, tuple) and hasattr(obj, "_asdict"):
            state = dict(zip(getattr(type(obj), "_fields", ()), obj, strict=False))
        if state is None or self._nesting > 8:  # a self-referencing dataclass stops here
            return None
        self._nesting += 1
        try:
            text = canon(state, self._name_in_constant)
        finally:
            self._nesting -= 1
        return None if text is None else f"{_qualified(type(obj))}:{text}"

    def walk_modules(self, start: str) -> bool:
        """Add a project module and, transitively, the project modules it imports.

        Returns:
            Whether ``start`` was found as a project module with a source file.
        """
        queue, found = [start], False
        while queue:
            name = queue.pop()
            located = locate(name)
            if located is None or not self.project.module(name, located[0]):
                continue
            found = found or name == start
            filename, package = located
            real = os.path.realpath(filename)
            if real in self._module_files:
                continue
            self._module_files.add(real)
            source = normalise_module(filename)
            if source is None:
                continue
            self.add(_label(name, filename), source.digest)
            for module, level, names in source.imports:
                base = absolute(module, level, package)
                if base:
                    pieces = base.split(".")
                    queue += [".".join(pieces[: i + 1]) for i in range(len(pieces))]
                    queue += [f"{base}.{n}" for n in names]
        return found
