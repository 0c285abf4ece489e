"""``PipelineModel``: stages, groups, sources, dims and roots, with every name resolved.

The model is pure data built once; it never runs anything. Problems found while building it
(unknown references, duplicate stages...) are collected, not raised, so ``check`` can report
them together with the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagewise._suggest import did_you_mean
from stagewise.errors import Problem
from stagewise.model.assets import Asset, as_asset
from stagewise.model.dims import BUILTIN_TAGS, Dims, build_dims
from stagewise.model.group import Group
from stagewise.model.stage import Stage
from stagewise.model.templates import Template

__all__ = ["Link", "Node", "PipelineModel", "build_model"]


@dataclass(frozen=True)
class Link:
    """Where one input of a stage comes from: a stage output or a source."""

    producer: str | None
    """Qualified name of the producing stage, or None for a source."""
    name: str
    """The output name (stage outputs) or the source name."""

    @property
    def ref(self) -> str:
        """The reference as a user writes it."""
        return f"{self.producer}.{self.name}" if self.producer else self.name


@dataclass(frozen=True)
class Node:
    """A stage as placed in one pipeline (with the pipeline file's overrides applied)."""

    qname: str
    """``stage`` or ``group:stage``."""
    stage: Stage
    group: str | None
    dims: tuple[str, ...]
    """The stage's dims in canonical order."""
    links: Mapping[str, Link]
    """Input name -> where it comes from (unresolvable inputs are absent)."""

    @property
    def tag_name(self) -> str:
        """The value of the builtin ``{stage}`` tag: ``name`` or ``group.name``."""
        return f"{self.group}.{self.stage.name}" if self.group else self.stage.name


@dataclass
class PipelineModel:
    """Everything a pipeline is, with names resolved. Built by :func:`build_model`."""

    name: str
    base_dir: Path
    output: Path
    paths: dict[str, Path]
    sources: dict[str, Asset]
    dims: Dims
    nodes: dict[str, Node]
    groups: dict[str, Group]
    params: dict[str, Any]
    origin: str | None = None
    """The pipeline file, or None for a Python pipeline (used in error places)."""
    stage_files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    param_places: dict[str, str] = field(default_factory=dict)
    """Where the pipeline file sets each parameter (``stages.clean.params.threshold``)."""
    templates: dict[tuple[str, str], Template] = field(default_factory=dict)
    """(qname or "", output or source name) -> parsed template, for those that parse."""

    @property
    def place(self) -> str:
        """How error messages name this pipeline."""
        return self.origin or "pipeline"

    def find_stage(self, name: str) -> str | None:
        """The qualified name for ``stage``, ``group:stage``, or a bare name unique in the pipeline."""
        if name in self.nodes:
            return name
        matches = [q for q, n in self.nodes.items() if n.stage.name == name]
        return matches[0] if len(matches) == 1 else None

    def stage_names(self) -> list[str]:
        """Every name a stage can be addressed by (qualified and unique bare names)."""
        names = list(self.nodes)
        names += [n.stage.name for n in self.nodes.values() if n.group and self.find_stage(n.stage.name)]
        return names

    def source_dims(self, name: str) -> tuple[str, ...]:
        """A source's dims: the dims named in its template, in canonical order."""
        template = self.templates.get(("", name))
        fields = template.fields if template else ()
        return self.dims.canonical([f for f in fields if f in self.dims.names])

    def link_dims(self, link: Link) -> tuple[str, ...]:
        """The dims of the asset an input link points at."""
        if link.producer is not None:
            return self.nodes[link.producer].dims
        cache = self.__dict__.setdefault("_source_dims", {})
        if link.name not in cache:
            cache[link.name] = self.source_dims(link.name)
        dims: tuple[str, ...] = cache[link.name]
        return dims

    def link_asset(self, link: Link) -> Asset:
        """The asset an input link points at."""
        if link.producer is None:
            return self.sources[link.name]
        return self.nodes[link.producer].stage.outputs[link.name]

    def allowed_roots(self) -> list[Path]:
        """Folders templates may resolve into: the output root and the declared paths."""
        return [self.output, *self.paths.values()]


def build_model(
    entries: Sequence[Stage | Group],
    *,
    sources: Mapping[str, Any] | None = None,
    paths: Mapping[str, str | Path] | None = None,
    splits: Any = None,
    dims: Any = None,
    params: Mapping[str, Any] | None = None,
    output: str | Path = "out",
    name: str = "pipeline",
    base_dir: Path | None = None,
    origin: str | None = None,
    stage_files: Iterable[Path] = (),
) -> PipelineModel:
    """Build a pipeline model; relative paths are relative to ``base_dir`` (default: cwd)."""
    base = (base_dir or Path.cwd()).absolute()
    place = origin or "pipeline"
    problems: list[Problem] = []
    dims_obj, dim_problems = build_dims(splits, dims, place=place)
    problems += [Problem(where, msg) for where, msg in dim_problems]
    root_paths = {key: _absolute(base, value) for key, value in (paths or {}).items()}
    for key in root_paths:
        if not key.isidentifier() or key in dims_obj.names or key in BUILTIN_TAGS:
            problems.append(
                Problem(
                    f"{place}: paths.{key}", "path names are identifiers that are not dims or builtin tags"
                )
            )
    model = PipelineModel(
        name=name,
        base_dir=base,
        output=_absolute(base, output),
        paths=root_paths,
        sources={},
        dims=dims_obj,
        nodes={},
        groups={},
        params=dict(params or {}),
        origin=origin,
        stage_files=list(stage_files),
        problems=problems,
    )
    for key, value in (sources or {}).items():
        try:
            model.sources[key] = as_asset(value, place=f"{place}: sources.{key}")
        except TypeError as exc:
            problems.append(Problem(f"{place}: sources.{key}", str(exc).split(": ", 1)[-1]))
    _add_nodes(model, entries)
    _parse_templates(model)
    _link_inputs(model)
    return model


def _absolute(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _add_nodes(model: PipelineModel, entries: Sequence[Stage | Group]) -> None:
    place = model.place
    seen: dict[int, str] = {}
    for entry in entries:
        if isinstance(entry, Group):
            if entry.name in model.groups or not entry.name.isidentifier():
                model.problems.append(
                    Problem(f"{place}: group {entry.name}", "group names are unique Python identifiers")
                )
                continue
            model.groups[entry.name] = entry
            members = [(s, entry.name) for s in entry.stages]
        elif isinstance(entry, Stage):
            members = [(entry, None)]
        else:
            model.problems.append(
                Problem(place, f"{entry!r} is not a stage or a group (decorate it with @stage)")
            )
            continue
        for stage, group_name in members:
            qname = f"{group_name}:{stage.name}" if group_name else stage.name
            if id(stage.fn) in seen or qname in model.nodes:
                model.problems.append(
                    Problem(
                        f"{place}: stage {qname}",
                        f"stage is in the pipeline twice (also as {seen.get(id(stage.fn), qname)})",
                        stage=qname,
                    )
                )
                continue
            seen[id(stage.fn)] = qname
            _name_problems(model, stage, qname)
            dims = model.dims.canonical(stage.over)
            model.nodes[qname] = Node(qname, stage, group_name, dims, {})


def _name_problems(model: PipelineModel, stage: Stage, qname: str) -> None:
    place = f"{model.place}: stage {qname}"
    for text in stage.problems:
        model.problems.append(Problem(place, text, stage=qname))
    names = [
        ("stage", stage.name),
        *(("output", o) for o in stage.outputs),
        *(("parameter", p) for p in stage.params),
    ]
    for kind, text in names:
        if not text.isidentifier():
            model.problems.append(
                Problem(place, f"{kind} name {text!r} is not a Python identifier", stage=qname)
            )
    for dim in stage.over:
        if dim not in model.dims.names:
            hint = did_you_mean(dim, model.dims.names)
            model.problems.append(
                Problem(
                    place,
                    f"over: unknown dim '{dim}'",
                    hint or f"known dims: {', '.join(model.dims.names) or 'none'}",
                    stage=qname,
                )
            )
    if stage.splits is not None:
        known = list(model.dims.splits or {})
        for split in stage.splits:
            if split not in known:
                model.problems.append(
                    Problem(
                        place,
                        f"splits: unknown split '{split}'",
                        did_you_mean(split, known) or f"known splits: {', '.join(known) or 'none'}",
                        stage=qname,
                    )
                )


def _parse_templates(model: PipelineModel) -> None:
    from stagewise.model.templates import parse_problems

    for key, asset in model.sources.items():
        template, problems = parse_problems(asset.template, f"{model.place}: sources.{key}")
        model.problems += problems
        if template:
            model.templates[("", key)] = template
    for qname, node in model.nodes.items():
        for out, asset in node.stage.outputs.items():
            place = f"{model.place}: stage {qname}: outputs.{out}"
            template, problems = parse_problems(asset.template, place)
            model.problems += [Problem(p.place, p.message, p.hint, p.severity, qname) for p in problems]
            if template:
                model.templates[(qname, out)] = template


def _link_inputs(model: PipelineModel) -> None:
    for qname, node in list(model.nodes.items()):
        links: dict[str, Link] = {}
        for input_name, ref in node.stage.inputs.items():
            link, problem = _resolve_ref(model, ref)
            if link is not None:
                links[input_name] = link
            else:
                place = f"{model.place}: stage {qname}: inputs.{input_name}"
                model.problems.append(Problem(place, problem[0], problem[1], stage=qname))
        model.nodes[qname] = Node(qname, node.stage, node.group, node.dims, links)


def _resolve_ref(model: PipelineModel, ref: Any) -> tuple[Link | None, tuple[str, str | None]]:
    if not isinstance(ref, str) or not ref:
        return None, (f"expected a reference 'stage.output' or a source name, got {ref!r}", None)
    if "." not in ref:
        if ref in model.sources:
            return Link(None, ref), ("", None)
        qname = model.find_stage(ref)
        if qname is not None:
            outs = ", ".join(f"{qname}.{o}" for o in model.nodes[qname].stage.outputs)
            return None, (f"'{ref}' is a stage; name one of its outputs", outs or None)
        candidates = list(model.sources) + [
            f"{q}.{o}" for q, n in model.nodes.items() for o in n.stage.outputs
        ]
        return None, (
            f"unknown source or output '{ref}'",
            did_you_mean(ref, candidates) or _known_sources(model),
        )
    stage_name, output = ref.split(".", 1)
    qname = model.find_stage(stage_name)
    if qname is None:
        return None, (
            f"'{ref}' refers to unknown stage '{stage_name}'",
            did_you_mean(stage_name, model.stage_names()),
        )
    outputs = model.nodes[qname].stage.outputs
    if output not in outputs:
        hint = did_you_mean(output, outputs) or f"outputs of {qname}: {', '.join(outputs) or 'none'}"
        return None, (f"stage '{qname}' has no output '{output}'", hint)
    return Link(qname, output), ("", None)


def _known_sources(model: PipelineModel) -> str:
    return f"sources: {', '.join(model.sources) or 'none declared'}"
