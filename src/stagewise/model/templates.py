"""Path templates: parsed once, rendered safely per item, kept inside allowed roots, matched back.

A template is a format string over tags (``"sky/{split}/{sim:04d}.npy"``): dims, builtin tags
(``stage``, ``variant``) and named paths, which may only be the whole first component
(``"{data}/mask.npy"``). Everything the text alone decides is decided at construction, so that
rendering, which runs once per item, is one ``str.format_map`` plus membership tests on tag values.
"""

from __future__ import annotations

import glob
import ntpath
import os
import re
import string
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

from stagewise._suggest import did_you_mean
from stagewise.errors import Problem, TemplateError

__all__ = ["Template", "parse_problems", "resolve", "resolve_str"]

_Tags = Mapping[str, object]
_Paths = Mapping[str, str]
_Roots = Sequence[Path | str]
_Piece = tuple[str, str | None, str]  # (literal text before the field, field name or None, spec)
_Check = tuple[str, str, bool]  # (field name, spec, whether an int value is safe unchecked)

_UNSAFE_HINT = "tag values cannot contain path separators, be empty, '.', '..' or absolute paths"
_ROOTS_HINT = "templates cannot resolve outside the output root or a declared path"
_DOTS = frozenset({".", ".."})
_WINDOWS = os.name == "nt"
# Only these specs format an int as sign + ASCII digits, so match() can insist on digits there and
# split "{sim:04d}_{name}" unambiguously; "4d" pads with spaces, so it is not one of them.
_DIGIT_SPEC = re.compile(r"(?:0\d*)?d")
_DIGITS, _COMPONENT = r"-?[0-9]+", r"[^/\\\x00]+"


def _unsafe_text(s: str) -> bool:
    """Whether a formatted tag value cannot be one path component (':' makes a drive on Windows)."""
    return not s or s in _DOTS or "/" in s or "\\" in s or "\0" in s or (_WINDOWS and ":" in s)


def _parse(text: str) -> tuple[_Piece, ...]:
    """Split ``text`` into pieces, raising TemplateError for anything a template may not hold."""

    def bad(what: str, hint: str | None = None) -> TemplateError:
        return TemplateError(f"template {text!r}: {what}", hint=hint)

    if not isinstance(text, str):
        raise TemplateError(f"a template must be a string, not {type(text).__name__}: {text!r}")
    if not text or "\0" in text:
        raise bad("a template must be a non-empty string without NUL characters")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise bad(f"unbalanced braces ({exc})", "write '{{' or '}}' for a literal brace") from None
    pieces: list[_Piece] = []
    specs: dict[str, str] = {}
    pending = ""  # Formatter splits literals at escaped braces; merge them back
    for literal, name, spec, conv in parsed:
        pending += literal
        if name is None:
            continue
        spec = spec or ""
        shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        for wrong, what in (
            (not name or name.isdigit(), "positional fields are not allowed; name a tag: {sim}"),
            ("." in name or "[" in name, "attribute and index access are not allowed"),
            (not name.isidentifier(), "a tag name must be a Python identifier"),
            (bool(conv), "conversions (!r, !s, !a) are not allowed; use a format spec"),
            ("{" in spec or "}" in spec, "nested fields in format specs are not allowed"),
            (any(c in spec for c in "/\\\0"), "a format spec cannot contain a path separator"),
            (specs.setdefault(name, spec) != spec, "a tag must keep one format spec throughout"),
        ):
            if wrong:
                raise bad(f"field {shown}: {what}")
        pieces.append((pending, name, spec))
        pending = ""
    if pending:
        pieces.append((pending, None, ""))
    # The skeleton stands a NUL in for each field, so path checks see only the literal text.
    skeleton = "".join(lit + ("\0" if name else "") for lit, name, _ in pieces)
    if skeleton[:1] in ("/", "\\") or ntpath.splitdrive(skeleton)[0] or os.path.isabs(skeleton):
        raise bad("a template must be relative (to the output root, or start with a {path} tag)")
    if ".." in re.split(r"[/\\]", skeleton):
        raise bad("'..' components are not allowed", _ROOTS_HINT)
    if skeleton.endswith(("/", "\\")):
        raise bad("a template must name a file, not end with a separator")
    return tuple(pieces)


def _compile(pieces: Sequence[_Piece]) -> tuple[str, tuple[_Check, ...]]:
    """The format string (braces escaped again) and one check per distinct field of ``pieces``."""
    out: list[str] = []
    checks: dict[str, _Check] = {}
    for lit, name, spec in pieces:
        out.append(lit.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            out.append("{" + name + (":" + spec if spec else "") + "}")
            # An int formats to digits and padding, safe, except with spec 'c' (chr(47) is '/').
            checks.setdefault(name, (name, spec, not spec.endswith("c")))
    return "".join(out), tuple(checks.values())


def _regex(pieces: Sequence[_Piece]) -> re.Pattern[str]:
    """A regex with one named group per field; a repeated field must repeat its value."""
    parts: list[str] = []
    seen: set[str] = set()
    for lit, name, spec in pieces:
        parts.append(re.escape(lit))
        if name in seen:
            parts.append(f"(?P={name})")
        elif name is not None:
            seen.add(name)
            parts.append(f"(?P<{name}>{_DIGITS if _DIGIT_SPEC.fullmatch(spec) else _COMPONENT})")
    return re.compile("".join(parts))


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed path template; immutable, hashable, picklable, compared by its text.

    Args:
        text: the template, e.g. ``"sky/{split}/{sim:04d}.npy"``.

    Raises:
        TemplateError: the template is malformed, absolute, or has a literal ``..`` component.
    """

    text: str
    _pieces: tuple[_Piece, ...] = field(init=False, repr=False, compare=False)
    _full: tuple[str, tuple[_Check, ...]] = field(init=False, repr=False, compare=False)
    _tail: tuple[str, tuple[_Check, ...]] = field(init=False, repr=False, compare=False)
    _root: str | None = field(init=False, repr=False, compare=False)
    _regexes: dict[int, re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        init = object.__setattr__  # the dataclass is frozen; this is construction
        init(self, "_pieces", _parse(self.text))
        lit, first, spec = self._pieces[0]
        # A field that is the whole first component may be a named path root; which it is
        # depends on the pipeline's paths, so the rest is also prepared on its own.
        rest = self._pieces[1:]
        follows = rest[0][0] if rest else "/"
        init(self, "_root", first if not lit and not spec and follows[:1] == "/" else None)
        init(self, "_full", _compile(self._pieces))
        init(self, "_tail", _compile(rest))
        init(self, "_regexes", {})  # built lazily by match(): most templates are never matched

    def __reduce__(self) -> tuple[type[Template], tuple[str]]:
        return (Template, (self.text,))  # rebuild from the text: smaller, and version-proof

    def __str__(self) -> str:
        return self.text

    @property
    def fields(self) -> tuple[str, ...]:
        """Distinct field names, in order of first appearance."""
        return tuple(check[0] for check in self._full[1])

    @property
    def root_field(self) -> str | None:
        """The field forming the whole first component (``data`` in ``{data}/x``), else None."""
        return self._root

    def _root_path(self, paths: _Paths | None) -> str | None:
        """The root folder replacing the leading field, when ``paths`` names it."""
        root = self._root
        return os.fspath(paths[root]) if paths and root is not None and root in paths else None

    def render(self, tags: _Tags, paths: _Paths | None = None) -> str:
        """Fill in the template; a root in ``paths`` replaces a leading path field.

        Args:
            tags: dim and builtin tag values (extra tags are ignored).
            paths: path name -> its root folder (absolute); only a leading field may use one.

        Returns:
            the rendered path: absolute when it starts at a path root, else relative.

        Raises:
            TemplateError: a tag is missing, does not fit its spec, or is not a safe component.
        """
        prefix, root = "", self._root
        fmt, checks = self._full
        if paths and root is not None and root in paths:
            prefix, (fmt, checks) = os.fspath(paths[root]), self._tail
        try:
            for name, spec, int_ok in checks:
                value = tags[name]
                if int_ok and type(value) is int:
                    continue
                s = value if type(value) is str and not spec else format(value, spec)
                if _unsafe_text(s):
                    self._format(name, spec, value)  # raises, with the message
            return prefix + fmt.format_map(tags)
        except (KeyError, ValueError, TypeError) as exc:
            self._diagnose(tags, paths, checks, exc)

    def positional(
        self, order: Mapping[str, int], constants: Mapping[str, str], *, tail: bool = False, prefix: str = ""
    ) -> Callable[[Sequence[object]], str | None] | None:
        """A renderer from a tuple of dim values (the hot loop of the quick check).

        ``order`` gives each dim's position in the tuple, ``constants`` the builtin tags
        (``stage``); with ``tail`` the leading path field and the separator after it are left
        out. The renderer gives ``prefix`` + what ``render`` gives (normalised like
        ``os.path.normpath`` where needed), or None where ``render`` would raise (an unsafe
        value). Returns None when a field is neither a dim nor a constant.
        """
        out: list[str] = []
        checks: list[tuple[int, str, bool]] = []
        for lit, name, spec in self._pieces[1:] if tail else self._pieces:
            out.append(lit.replace("{", "{{").replace("}", "}}"))
            if name is None:
                continue
            if name in constants:
                out.append(self._format(name, spec, constants[name]).replace("{", "{{").replace("}", "}}"))
            elif name in order:
                out.append("{" + str(order[name]) + (":" + spec if spec else "") + "}")
                checks.append((order[name], spec, not spec.endswith("c")))
            else:
                return None
        text = "".join(out)
        if tail:
            text = text[1:]  # the separator after the leading path field
        fmt = (prefix.replace("{", "{{").replace("}", "}}") + text).format
        unique = tuple(dict.fromkeys(checks))
        # Safe values hold no separator and are not '.' or '..': only the literal text can make
        # a path that normpath changes, so whether to normalise is known now, not per item.
        skeleton = re.sub(r"\{\d+(:[^}]*)?\}", "x", text)
        normalise = "//" in skeleton or "/." in skeleton or skeleton.startswith(".")
        cut = len(prefix)

        def render(values: Sequence[object]) -> str | None:
            for index, spec, int_ok in unique:
                value = values[index]
                if int_ok and type(value) is int:
                    continue
                try:
                    shown = value if type(value) is str and not spec else format(value, spec)
                except (ValueError, TypeError):
                    return None
                if _unsafe_text(shown):  # type: ignore[arg-type]
                    return None
            if normalise:
                return prefix + os.path.normpath(fmt(*values)[cut:])
            return fmt(*values)

        return render

    def path(self, tags: _Tags, *, paths: _Paths, default_root: Path | str, allowed_roots: _Roots) -> Path:
        """Render and resolve in one call (``resolve_str(t.render(...))`` skips the Path)."""
        rendered = self.render(tags, paths)
        return resolve(rendered, default_root=default_root, allowed_roots=allowed_roots)

    def match(self, text: str, paths: _Paths | None = None) -> dict[str, str] | None:
        """Recover the formatted tag values from a rendered path (``/`` separators), or None.

        ``match(t.render(tags, paths), paths)`` gives each field's formatted value (``"0003"``
        for ``{sim:04d}``); callers map them back to dim values.
        """
        start, prefix = 0, self._root_path(paths)
        if prefix is not None:
            if not text.startswith(prefix):
                return None
            text, start = text[len(prefix) :], 1
        regex = self._regexes.get(start)
        if regex is None:
            regex = self._regexes[start] = _regex(self._pieces[start:])
        found = regex.fullmatch(text)
        if found is None or any(v in _DOTS for v in found.groupdict().values()):
            return None  # '.' and '..' fit the pattern but render never makes them
        return found.groupdict()

    def glob_pattern(self, fixed: _Tags, paths: _Paths | None = None) -> str:
        """A glob pattern, in ``render``'s form, with ``*`` for each field not in ``fixed``."""
        prefix, pieces = self._root_path(paths), self._pieces
        parts: list[str] = [] if prefix is None else [glob.escape(prefix)]
        for lit, name, spec in pieces if prefix is None else pieces[1:]:
            if lit:
                parts.append(glob.escape(lit))
            if name is not None and name in fixed:
                parts.append(glob.escape(self._format(name, spec, fixed[name])))
            elif name is not None and parts[-1:] != ["*"]:
                parts.append("*")  # one '*' for adjacent free fields: '**' means recursive
        return "".join(parts)

    def problems(
        self,
        *,
        known_dims: Collection[str],
        path_names: Collection[str],
        builtin_tags: Collection[str],
        place: str,
        stage: str | None = None,
    ) -> list[Problem]:
        """Every problem of this template's fields in a pipeline, returned rather than raised.

        Args:
            known_dims: the dims of the pipeline.
            path_names: the named paths of the pipeline.
            builtin_tags: tags stagewise fills in itself (``stage``, ``variant``).
            place: where the template is written, for the report.
            stage: the stage the template belongs to, if any.
        """
        out: list[Problem] = []
        known = [*known_dims, *path_names, *builtin_tags]
        tail = {check[0] for check in self._tail[1]}
        for name in self.fields:
            if name in path_names and (name != self._root or name in tail):
                msg = f"path tag {{{name}}} may only be the whole first component"
                hint = f"write it as '{{{name}}}/...'"
            elif name not in known:
                msg = f"unknown tag {{{name}}}"
                hint = did_you_mean(name, known) or f"known tags: {', '.join(sorted(known))}"
            else:
                continue
            out.append(Problem(place, f"template {self.text!r}: {msg}", hint, stage=stage))
        return out

    def _format(self, name: str, spec: str, value: object) -> str:
        """Format one tag value, raising TemplateError unless it is a safe path component."""
        where = f"template {self.text!r}: tag {name}={value!r}"
        try:
            s = format(value, spec)
        except (ValueError, TypeError) as exc:
            raise TemplateError(f"{where} does not fit format spec {spec!r} ({exc})") from None
        if _unsafe_text(s):
            shown = "" if s == value else f" (formatted {s!r})"
            raise TemplateError(f"{where}{shown} is not a safe path component", hint=_UNSAFE_HINT)
        return s

    def _diagnose(
        self, tags: _Tags, paths: _Paths | None, checks: Sequence[_Check], exc: Exception
    ) -> NoReturn:
        """The slow path of ``render``: find the field at fault and say what is wrong with it."""
        for name, spec, _ in checks:
            if name in tags:
                self._format(name, spec, tags[name])
                continue
            hint = None
            if paths and name in paths:
                msg = f"path tag {{{name}}} may only be the whole first component"
                hint = f"write it as '{{{name}}}/...'"
            else:
                msg = f"missing tag {{{name}}} (tags given: {', '.join(map(str, tags)) or 'none'})"
            raise TemplateError(f"template {self.text!r}: {msg}", hint=hint)
        raise TemplateError(f"template {self.text!r}: cannot render {dict(tags)!r}: {exc}")


def parse_problems(text: str, place: str, stage: str | None = None) -> tuple[Template | None, list[Problem]]:
    """Parse ``text``, turning a construction error into a Problem at ``place``."""
    try:
        return Template(text), []
    except TemplateError as exc:
        return None, [Problem(place, exc.message, exc.hint, stage=stage)]


@lru_cache(maxsize=256)
def _prepared_roots(roots: tuple[Path | str, ...]) -> tuple[tuple[str, str], ...]:
    """Each root made absolute and normalised, with the prefix that its contents start with."""
    keys = [os.path.normcase(os.path.abspath(root)) for root in roots]
    return tuple((key, key if key.endswith(os.sep) else key + os.sep) for key in keys)


def _inside(path: str, roots: _Roots) -> bool:
    """Whether ``path`` (normalised) is one of ``roots`` or lies under one."""
    key = os.path.normcase(path)
    # The separator-terminated prefix makes this component-wise: /a/bc is not in /a/b.
    return any(key.startswith(inside) or key == root for root, inside in _prepared_roots(tuple(roots)))


def resolve_str(rendered: str, *, default_root: Path | str, allowed_roots: _Roots) -> str:
    """Like ``resolve``, as a string: building a ``Path`` costs more than all the rest."""
    full = os.path.normpath(os.path.join(default_root, rendered))
    if _inside(full, allowed_roots) or _inside(full := os.path.abspath(full), allowed_roots):
        return full  # (abspath only matters, and only runs, for a relative default root)
    roots = ", ".join(map(str, allowed_roots)) or "none"
    msg = f"path {rendered!r} resolves to {full}, outside the allowed roots ({roots})"
    raise TemplateError(msg, hint=_ROOTS_HINT)


def resolve(rendered: str, *, default_root: Path | str, allowed_roots: _Roots) -> Path:
    """Turn a rendered template into a normalised path that lies inside an allowed root.

    Nothing touches the filesystem: symlinks are not resolved and ``..`` folds lexically.

    Args:
        rendered: the output of ``Template.render``; relative paths start at ``default_root``.
        default_root: the output root; absolute (relative ones start at the current folder).
        allowed_roots: the output root and declared paths; absolute (prepared ones are cached).

    Raises:
        TemplateError: the path lies outside every allowed root.
    """
    return Path(resolve_str(rendered, default_root=default_root, allowed_roots=allowed_roots))
