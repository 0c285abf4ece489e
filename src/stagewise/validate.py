"""Prerun validation: every problem of a pipeline, found without reading or writing data.

``check`` reports all of them together, each with its place; ``run`` stops on the problems of
the selected stages (and on problems that concern no stage in particular).
"""

from __future__ import annotations

import importlib.metadata
import re
import typing
from collections.abc import Iterable
from typing import Any

from stagewise._suggest import did_you_mean
from stagewise.errors import HandlerError, Problem
from stagewise.handlers import (
    get_handler,
    handler_for_path,
    handler_names,
    handler_returns,
    missing_library,
    returns_match,
)
from stagewise.model.dims import BUILTIN_TAGS
from stagewise.model.graph import find_cycle
from stagewise.model.pipeline import Link, Node, PipelineModel

__all__ = ["asset_handler_name", "validate_model"]

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def validate_model(model: PipelineModel, param_problems: Iterable[Problem] = ()) -> list[Problem]:
    """Every problem of the pipeline: definitions, graph, templates, handlers, types, params."""
    problems = list(model.problems)
    cycle = find_cycle(model)
    if cycle:
        problems.append(
            Problem(
                model.place,
                f"the stages form a cycle: {' -> '.join(cycle)}",
                "a stage cannot read its own outputs, directly or through others",
            )
        )
    problems += _template_problems(model)
    problems += _handler_problems(model)
    problems += _connection_problems(model)
    problems += _group_problems(model)
    problems += _requires_problems(model)
    problems += list(param_problems)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _template_problems(model: PipelineModel) -> list[Problem]:
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    dims, path_names = model.dims.names, list(model.paths)
    for (qname, name), template in model.templates.items():
        if qname == "":
            place = f"{model.place}: sources.{name}"
            problems += template.problems(
                known_dims=dims, path_names=path_names, builtin_tags=(), place=place
            )
            owner = f"source {name}"
        else:
            node = model.nodes[qname]
            place = f"{model.place}: stage {qname}: outputs.{name}"
            problems += template.problems(
                known_dims=dims, path_names=path_names, builtin_tags=BUILTIN_TAGS, place=place, stage=qname
            )
            for field in template.fields:
                if field in dims and field not in node.dims:
                    problems.append(
                        Problem(
                            place,
                            f"template {template.text!r} uses dim {{{field}}}, but the stage is not over {field}",
                            f"add '{field}' to over=, or remove {{{field}}}",
                            stage=qname,
                        )
                    )
            missing = [
                d for d in node.dims if d not in template.fields and d in dims
            ]  # unknown dims: reported once
            if missing:
                fields = ", ".join("{" + d + "}" for d in missing)
                problems.append(
                    Problem(
                        place,
                        f"template {template.text!r} lacks {fields}: two items would write one file",
                        f"every output template contains all of the stage's dims ({', '.join(node.dims)})",
                        stage=qname,
                    )
                )
            owner = f"{qname}.{name}"
        key = template.text
        if key in owners:
            problems.append(
                Problem(
                    place,
                    f"template {key!r} is also used by {owners[key]}",
                    "no two outputs or sources may share a template",
                    stage=qname or None,
                )
            )
        else:
            owners[key] = owner
    return problems


def asset_handler_name(model: PipelineModel, template: str, handler: Any) -> str | Any:
    """The handler an asset uses: its explicit handler, else the one of its extension.

    Raises:
        HandlerError: when no handler is named and the extension is unknown.
    """
    if handler is not None:
        return handler
    return handler_for_path(template)


def _handler_problems(model: PipelineModel) -> list[Problem]:
    problems: list[Problem] = []
    assets = [("", name, asset) for name, asset in model.sources.items()]
    assets += [(q, o, a) for q, n in model.nodes.items() for o, a in n.stage.outputs.items()]
    for qname, name, asset in assets:
        place = (
            f"{model.place}: sources.{name}" if not qname else f"{model.place}: stage {qname}: outputs.{name}"
        )
        try:
            handler = asset_handler_name(model, asset.template, asset.handler)
            if isinstance(handler, str):
                if handler not in handler_names():
                    get_handler(handler)  # raises the unknown-handler error with its hint
                missing = missing_library(handler)
                if missing:
                    problems.append(Problem(place, missing, stage=qname or None))
            elif not (callable(getattr(handler, "read", None)) and callable(getattr(handler, "write", None))):
                problems.append(
                    Problem(
                        place,
                        f"handler {handler!r} has no read(path) and write(path, data)",
                        stage=qname or None,
                    )
                )
        except HandlerError as exc:
            problems.append(Problem(place, exc.message, exc.hint, stage=qname or None))
    return problems


def _connection_problems(model: PipelineModel) -> list[Problem]:
    problems: list[Problem] = []
    for qname, node in model.nodes.items():
        for input_name, link in node.links.items():
            place = f"{model.place}: stage {qname}: inputs.{input_name}"
            problems += _split_coverage(model, node, link, place)
            annotation = node.stage.signature.input_types.get(input_name)
            if annotation is not None:
                problems += _typed_connection(model, node, link, annotation, place)
    return problems


def _split_coverage(model: PipelineModel, node: Node, link: Link, place: str) -> list[Problem]:
    """A per-split consumer needs its producer to run on the same splits."""
    if link.producer is None or model.dims.splits is None:
        return []
    producer = model.nodes[link.producer]
    if "split" not in node.dims or "split" not in producer.dims or producer.stage.splits is None:
        return []
    wanted = node.stage.splits if node.stage.splits is not None else tuple(model.dims.splits)
    lacking = [s for s in wanted if s not in producer.stage.splits]
    if not lacking:
        return []
    return [
        Problem(
            place,
            f"reads {link.ref} for split{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}, but {link.producer} only runs splits {', '.join(producer.stage.splits)}",
            f"restrict {node.qname} with splits: [...] too",
            stage=node.qname,
        )
    ]


def _type_label(tp: Any) -> str:
    module = getattr(tp, "__module__", "")
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None) or str(tp)
    return f"{module}.{name}" if module else name


def _typed_connection(
    model: PipelineModel, node: Node, link: Link, annotation: Any, place: str
) -> list[Problem]:
    """Pimlico's typed connections: the producer's handler must return the annotated type."""
    extra = [d for d in model.link_dims(link) if d not in node.dims]
    if extra or annotation is Any or isinstance(annotation, str):
        return []  # collections arrive as mappings of handles; string annotations are unresolvable
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type) or origin is object:
        return []
    asset = model.link_asset(link)
    try:
        handler = asset_handler_name(model, asset.template, asset.handler)
        returns = _handler_returns(handler)
    except HandlerError:
        return []  # reported by the handler checks
    if not returns:
        return []
    wanted = _type_label(origin)
    if returns_match(returns, origin):
        return []
    handler_name = handler if isinstance(handler, str) else type(handler).__name__
    names = ", ".join(r.removeprefix("builtins.") for r in returns)
    return [
        Problem(
            place,
            f"annotated {wanted.removeprefix('builtins.')}, but {link.ref} is read by handler '{handler_name}', which returns {names}",
            "change the annotation, or the producer's handler",
            stage=node.qname,
        )
    ]


def _handler_returns(handler: Any) -> tuple[str, ...]:
    if isinstance(handler, str):
        if missing_library(handler):
            return ()  # reported by the handler checks
        return handler_returns(get_handler(handler))
    return handler_returns(handler)


def _group_problems(model: PipelineModel) -> list[Problem]:
    problems: list[Problem] = []
    for name, group in model.groups.items():
        members = {s.name: s for s in group.stages}
        for shared, targets in group.shared.items():
            place = f"{model.place}: group {name}: shared.{shared}"
            if not shared.isidentifier():
                problems.append(
                    Problem(place, f"shared parameter name {shared!r} is not a Python identifier")
                )
            for target in targets:
                stage_name, _, param = str(target).partition(".")
                if stage_name not in members:
                    problems.append(
                        Problem(
                            place,
                            f"target '{target}': group {name} has no stage '{stage_name}'",
                            did_you_mean(stage_name, members),
                        )
                    )
                elif param not in members[stage_name].params:
                    problems.append(
                        Problem(
                            place,
                            f"target '{target}': stage '{stage_name}' has no parameter '{param}'",
                            did_you_mean(param, members[stage_name].params),
                        )
                    )
    return problems


def _requires_problems(model: PipelineModel) -> list[Problem]:
    problems: list[Problem] = []
    for qname, node in model.nodes.items():
        for requirement in node.stage.requires:
            message = _requirement_problem(requirement)
            if message:
                problems.append(
                    Problem(
                        f"{model.place}: stage {qname}: requires",
                        message,
                        f"pip install '{requirement}'",
                        stage=qname,
                    )
                )
    return problems


def _requirement_problem(requirement: str) -> str | None:
    match = _REQUIREMENT.match(requirement)
    if not match:
        return f"cannot read requirement {requirement!r}"
    name, _, specifier = match.groups()
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return f"package {name} is not installed"
    if not specifier.strip():
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        allowed = SpecifierSet(specifier.strip())
    except InvalidSpecifier:
        return f"cannot read the version range in {requirement!r}"
    if version not in allowed:
        return f"{name} {version} is installed, but the stage requires {name}{specifier.strip()}"
    return None
