"""Parameter layers and their precedence: defaults < pipeline file < config files < command line.

A layer is a flat mapping of dotted keys (``train.epochs``, ``model_train.fit.cutoff``,
``model_train.threshold`` for a group's shared parameter) to values. Resolving the layers of a
pipeline gives every stage's parameter values, each with the layer it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stagewise._suggest import did_you_mean
from stagewise.errors import ParameterError, Problem
from stagewise.model.convert import convert
from stagewise.model.params import UNSET, ParamSpec
from stagewise.model.pipeline import Node, PipelineModel

__all__ = [
    "Layer",
    "ResolvedParam",
    "TextValue",
    "flatten_params",
    "param_key",
    "resolve_params",
]


class TextValue(str):
    """Text to parse by the parameter's declared type, as a command-line value is.

    Values taken from the environment (``${env:NAME}``) are text even inside a YAML file.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Layer:
    """One source of parameter values.

    Attributes:
        origin: ``file``, ``config:<path>``, ``cli`` or ``api``.
        values: flat dotted key -> value.
        from_text: values are command-line strings, to be parsed by the declared type.
        place: how error messages name this layer (``pipeline.yaml``, ``command line``...).
    """

    origin: str
    values: Mapping[str, Any]
    from_text: bool = False
    place: str = ""
    keys: Mapping[str, str] = field(default_factory=dict)
    """Where each key was written, when it was not written as is (``stages.train.params.epochs``)."""


@dataclass(frozen=True)
class ResolvedParam:
    """One stage parameter with its final value and where the value came from."""

    key: str
    """The flat dotted name (``train.epochs``, ``model_train.fit.cutoff``)."""
    spec: ParamSpec
    value: Any
    origin: str
    """``default``, ``file``, ``config:<path>``, ``cli`` or ``api``; ``unset`` when required and missing."""


def param_key(node: Node, param: str) -> str:
    """The flat dotted name of a stage parameter."""
    return f"{node.group}.{node.stage.name}.{param}" if node.group else f"{node.stage.name}.{param}"


def flatten_params(values: Mapping[str, Any], model: PipelineModel) -> dict[str, Any]:
    """Flatten nested parameter mappings (``{train: {epochs: 3}}``) into dotted keys.

    Only mappings under a stage or group name are flattened; a dict-valued parameter stays whole.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key)
        if isinstance(value, Mapping) and "." not in key and key in model.groups:
            for sub, sub_value in flatten_params(value, _group_view(model, key)).items():
                flat[f"{key}.{sub}"] = sub_value
        elif isinstance(value, Mapping) and "." not in key and model.find_stage(key):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            flat[key] = value
    return flat


def _group_view(model: PipelineModel, group: str) -> PipelineModel:
    """A model restricted to one group's stages, addressed by bare name (for flattening)."""
    nodes = {n.stage.name: n for n in model.nodes.values() if n.group == group}
    return PipelineModel(
        name=model.name, base_dir=model.base_dir, output=model.output, paths={}, sources={},
        dims=model.dims, nodes=nodes, groups={}, params={},
    )  # fmt: skip


def _targets(model: PipelineModel, key: str) -> tuple[list[tuple[str, str]], str | None]:
    """The (stage qname, param) pairs a flat key sets, or an error message."""
    parts = key.replace(":", ".").split(".")
    if len(parts) == 3 and parts[0] in model.groups:
        qname = f"{parts[0]}:{parts[1]}"
        if qname not in model.nodes:
            members = [n.stage.name for n in model.nodes.values() if n.group == parts[0]]
            hint = did_you_mean(parts[1], members)
            return [], f"group '{parts[0]}' has no stage '{parts[1]}'" + (f" ({hint})" if hint else "")
        return [(qname, parts[2])], None
    if len(parts) == 2 and parts[0] in model.groups and parts[1] in model.groups[parts[0]].shared:
        out = []
        for target in model.groups[parts[0]].shared[parts[1]]:
            stage_name, _, param = target.partition(".")
            qname = f"{parts[0]}:{stage_name}"
            if qname in model.nodes:
                out.append((qname, param))
        return out, None
    if len(parts) == 2:
        qname = model.find_stage(parts[0])
        if qname is not None:
            return [(qname, parts[1])], None
        if parts[0] in model.groups:
            group = model.groups[parts[0]]
            names = list(group.shared) + [s.name for s in group.stages]
            hint = did_you_mean(parts[1], names)
            return [], f"group '{parts[0]}' has no shared parameter '{parts[1]}'" + (
                f" ({hint})" if hint else ""
            )
        hint = did_you_mean(parts[0], model.stage_names() + list(model.groups))
        return [], f"unknown stage '{parts[0]}'" + (f" ({hint})" if hint else "")
    return [], "expected 'stage.param', 'group.stage.param' or 'group.shared'"


def resolve_params(
    model: PipelineModel, layers: Sequence[Layer]
) -> tuple[dict[str, dict[str, ResolvedParam]], list[Problem]]:
    """Resolve every stage's parameters through the layers, lowest first.

    Returns:
        qname -> param -> resolved value, and every problem found (unknown names, bad values,
        missing required parameters, shared/direct conflicts within a layer).
    """
    problems: list[Problem] = []
    resolved: dict[str, dict[str, ResolvedParam]] = {}
    for qname, node in model.nodes.items():
        resolved[qname] = {
            name: ResolvedParam(
                param_key(node, name), spec, spec.default, "default" if not spec.required else "unset"
            )
            for name, spec in node.stage.params.items()
        }
    for layer in layers:
        _apply_layer(model, layer, resolved, problems)
    for qname, params in resolved.items():
        for _name, rp in params.items():
            if rp.value is UNSET:
                problems.append(Problem(
                    model.place, f"{rp.key}: required parameter is not set",
                    f"set it with --{rp.key} VALUE or params: {{{rp.key}: ...}}", stage=qname,
                ))  # fmt: skip
    return resolved, problems


def _apply_layer(
    model: PipelineModel,
    layer: Layer,
    resolved: dict[str, dict[str, ResolvedParam]],
    problems: list[Problem],
) -> None:
    assigned: dict[tuple[str, str], tuple[Any, str]] = {}
    for key, raw in layer.values.items():
        written = layer.keys.get(key)
        place = f"{layer.place or layer.origin}: {written}" if written else (layer.place or layer.origin)
        targets, error = _targets(model, key)
        if error:
            problems.append(Problem(place, error if written else f"{key}: {error}"))
            continue
        for qname, param in targets:
            node = model.nodes[qname]
            if param not in node.stage.params:
                hint = did_you_mean(param, node.stage.params)
                what = f"stage '{qname}' has no parameter '{param}'"
                problems.append(Problem(place, what if written else f"{key}: {what}", hint, stage=qname))
                continue
            spec = node.stage.params[param]
            try:
                text = layer.from_text or isinstance(raw, TextValue)
                value = convert(str(raw) if text else raw, spec, place=param_key(node, param), from_text=text)
            except ParameterError as exc:
                # the message keeps its SPEC form (``train.epochs: expected int, got 'abc'``)
                problems.append(Problem(place, exc.message, exc.hint, stage=qname))
                continue
            earlier = assigned.get((qname, param))
            if earlier is not None and earlier[0] != value:
                problems.append(Problem(
                    place, f"{key} and {earlier[1]} both set {param_key(node, param)}, to different values",
                    "set one of them", stage=qname,
                ))  # fmt: skip
                continue
            assigned[(qname, param)] = (value, key)
            resolved[qname][param] = ResolvedParam(param_key(node, param), spec, value, layer.origin)
