"""Stage parameters: the keyword-only arguments of a stage, with types, defaults and help text.

``params_of`` reads them from a function (or a class's ``__init__``); values are converted
to the declared types by :mod:`stagewise.model.convert`. A type that could not be resolved
(``"np.ndarray"`` under ``from __future__ import annotations`` with numpy not imported) is
kept as its string: it accepts any value and is shown as written.

Nothing heavy is imported here at module level: ``docstring_parser`` is imported only when
help text is read, so ``import stagewise`` stays fast.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Final, Literal, Optional, Union

from stagewise._suggest import did_you_mean

__all__ = [
    "UNSET",
    "ParamSpec",
    "missing_required",
    "params_of",
    "type_name",
    "unknown_names",
]


class _Unset(enum.Enum):
    """Type of ``UNSET``; an enum so that it pickles as the same singleton and type checkers
    can narrow ``x is UNSET``."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Final = _Unset.UNSET
"""A value that was not given, as opposed to an explicit ``None``."""


@dataclass(frozen=True)
class ParamSpec:
    """One stage parameter.

    Attributes:
        name: the parameter name.
        annotation: the resolved type; ``Any`` when unknown, or the annotation string when it
            could not be resolved.
        default: the default value, or ``UNSET`` when the parameter is required.
        help: the parameter's description from the docstring, or ``""``.
    """

    name: str
    annotation: Any
    default: Any = UNSET
    help: str = ""

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is UNSET

    @property
    def type_name(self) -> str:
        """The type as a person reads it: ``int``, ``list[int]``, ``int | None``..."""
        return type_name(self.annotation)


def type_name(annotation: Any) -> str:
    """Return a readable name for a type annotation.

    Unions are written ``A | B`` (``Optional[int]`` is ``int | None``), literals
    ``Literal['mlp', 'cnn']``, enums and other classes by their class name, and an
    unresolved annotation as the string it was written as.

    Args:
        annotation: a type, a typing construct, or an unresolved annotation string.
    """
    if isinstance(annotation, str):
        return annotation
    if annotation is Any:
        return "Any"
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if not args:
            return name
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_name(args[0])}, ...]"
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return repr(annotation)


def params_of(target: Callable[..., Any] | type, *, skip: Collection[str] = ()) -> dict[str, ParamSpec]:
    """Return the keyword-only parameters of a function, or of a class's ``__init__``.

    Positional parameters (inputs, ``item``) and ``*args``/``**kwargs`` are not stage
    parameters and are left out. A parameter without a type hint takes the type of its
    default (``Any`` when it has none or it is None); a hinted parameter whose default is
    None also accepts None (``x: int = None`` means ``int | None``). Help text comes from the
    docstring (Google, NumPy or reST style; for a class, its own docstring and its
    ``__init__``'s).

    Args:
        target: a stage function, or a class stage.
        skip: names that are not parameters (inputs, ``item``...).

    Returns:
        The parameters by name, in signature order.

    Raises:
        ValueError: no signature can be read (some builtins).
        TypeError: ``target`` is not callable.
    """
    fn = target.__init__ if isinstance(target, type) else target
    hints = _type_hints(fn)
    docs = _param_docs(target, fn)
    specs: dict[str, ParamSpec] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name in skip:
            continue
        default = UNSET if p.default is inspect.Parameter.empty else p.default
        annotation = _annotation(p, hints, default)
        specs[p.name] = ParamSpec(p.name, annotation, default, docs.get(p.name, ""))
    return specs


def missing_required(specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> list[str]:
    """Return the names of required parameters that ``values`` leaves unset, in order.

    Args:
        specs: the stage's parameters.
        values: the values given (a value of ``UNSET`` counts as not given).
    """
    return [n for n, s in specs.items() if s.required and values.get(n, UNSET) is UNSET]


def unknown_names(specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Return each name in ``values`` that is not a parameter, with a hint.

    Args:
        specs: the stage's parameters.
        values: the values given.

    Returns:
        ``(name, hint)`` pairs in the order of ``values``; ``hint`` is
        ``"did you mean 'x'?"`` for a close parameter name, else None.
    """
    return [(n, did_you_mean(n, specs)) for n in values if n not in specs]


class _Hints:
    """A stand-in holding one annotation, to resolve it alone with ``get_type_hints``."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.__annotations__ = {name: annotation}


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolve the annotations of ``fn``; one that cannot be resolved stays a string."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # evaluating user annotations may raise anything
        pass
    # One bad hint must not cost the others their types: resolve them one by one.
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        try:
            hints[name] = typing.get_type_hints(_Hints(name, annotation), namespace)[name]
        except Exception:  # same reason
            hints[name] = annotation if isinstance(annotation, str) else repr(annotation)
    return hints


def _annotation(p: inspect.Parameter, hints: Mapping[str, Any], default: Any) -> Any:
    if p.name in hints:
        annotation = hints[p.name]
    elif default is UNSET or default is None:
        return Any
    else:
        # Path("x") is a PosixPath; the user thinks of it as a Path.
        return Path if isinstance(default, PurePath) else type(default)
    if default is None and not _accepts_none(annotation):
        return Optional[annotation]  # noqa: UP045 - works for every annotation, not only types
    return annotation


def _accepts_none(annotation: Any) -> bool:
    if isinstance(annotation, str) or annotation is Any or annotation in (None, type(None)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _accepts_none(args[0])
    if origin is Union or origin is types.UnionType:
        return type(None) in args
    return origin is Literal and None in args


def _param_docs(target: Any, fn: Any) -> dict[str, str]:
    """Descriptions of the documented parameters; for a class, ``__init__``'s win."""
    docs: dict[str, str] = {}
    texts = [inspect.getdoc(target)]
    if isinstance(target, type):
        texts.append(inspect.getdoc(fn))
    for text in texts:
        if text:
            docs.update(_parse_doc(text))
    return docs


def _parse_doc(text: str) -> dict[str, str]:
    import docstring_parser  # imported here: it is only needed for help text
    from docstring_parser.google import DEFAULT_SECTIONS, GoogleParser, Section, SectionType

    # Autodetection misses Google's "Keyword Args:" sections, where keyword-only parameters
    # are often documented; a second Google pass that knows them fills the gaps.
    keyword = [Section(t, "param", SectionType.MULTIPLE) for t in _KEYWORD_SECTIONS]
    parsers: list[Callable[[str], Any]] = [
        docstring_parser.parse,
        GoogleParser([*DEFAULT_SECTIONS, *keyword]).parse,
    ]
    docs: dict[str, str] = {}
    for parse in parsers:
        try:
            params = parse(text).params
        except Exception:  # help text is a nicety: no docstring may stop a pipeline loading
            continue
        for param in params:
            if param.description and param.arg_name not in docs:
                docs[param.arg_name] = " ".join(param.description.split())
    return docs


_KEYWORD_SECTIONS = ("Keyword Args", "Keyword Arguments", "Kwargs", "Other Parameters")
