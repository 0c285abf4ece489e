"""The pipeline file: read safely, merge includes, interpolate, check keys, build the model."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stagewise._suggest import did_you_mean
from stagewise.config.layers import TextValue
from stagewise.config.modules import collect_entries
from stagewise.errors import ConfigError, Problem, ValidationError
from stagewise.model.assets import Asset, as_asset
from stagewise.model.group import Group
from stagewise.model.pipeline import PipelineModel, build_model
from stagewise.model.stage import Stage

__all__ = ["TOP_KEYS", "load_pipeline_file", "read_yaml"]

TOP_KEYS = ("pipeline", "include", "stages_from", "output", "paths", "sources", "splits", "dims", "stages", "groups", "params")  # fmt: skip
STAGE_KEYS = ("params", "splits", "inputs", "outputs")
GROUP_KEYS = ("stages", "shared", "params")
_REF = re.compile(r"\$\{([^}]*)\}")


def read_yaml(path: Path) -> Any:
    """Read one YAML file with the safe loader; errors name the file and line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


def _merge(base: Any, top: Any) -> Any:
    """Deep-merge mappings; ``top`` wins."""
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return top


def _with_includes(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.absolute()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: include cycle: {cycle}")
    doc = read_yaml(path)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: a pipeline file is a mapping of keys ({', '.join(TOP_KEYS)})")
    includes = doc.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = _merge(merged, _with_includes(path.parent / str(inc), (*chain, path)))
    own = {k: v for k, v in doc.items() if k != "include"}
    return _merge(merged, own)


def _interpolate(doc: dict[str, Any], place: str, problems: list[Problem]) -> dict[str, Any]:
    def lookup(expr: str, where: str) -> Any:
        if expr.startswith("env:"):
            name, _, default = expr[4:].partition(",")
            name = name.strip()
            if name in os.environ:
                return TextValue(os.environ[name])
            if "," in expr:
                return TextValue(default.strip())
            problems.append(
                Problem(
                    where, f"environment variable {name} is not set", f"give a default: ${{env:{name},VALUE}}"
                )
            )
            return ""
        node: Any = doc
        for part in expr.split("."):
            if not isinstance(node, Mapping) or part not in node:
                problems.append(Problem(where, f"${{{expr}}} refers to nothing in this file"))
                return ""
            node = node[part]
        return walk(node, where, depth=1)

    def walk(value: Any, where: str, depth: int = 0) -> Any:
        if depth > 20:
            problems.append(Problem(where, "interpolation nests too deep (a reference cycle?)"))
            return value
        if isinstance(value, str):
            whole = _REF.fullmatch(value)
            if whole:
                return lookup(whole.group(1), where)
            return _REF.sub(lambda m: str(lookup(m.group(1), where)), value)
        if isinstance(value, Mapping):
            return {k: walk(v, f"{where}.{k}", depth) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
        return value

    return {key: walk(value, f"{place}: {key}") for key, value in doc.items()}


def _scalars_from_env(doc: dict[str, Any]) -> dict[str, Any]:
    """Environment values in dims and splits are YAML scalars (``${env:NSIM,3}`` is 3)."""
    import yaml

    def parse(value: Any) -> Any:
        if isinstance(value, TextValue):
            return yaml.safe_load(str(value))
        if isinstance(value, Mapping):
            return {k: parse(v) for k, v in value.items()}
        if isinstance(value, list):
            return [parse(v) for v in value]
        return value

    return {k: parse(v) if k in ("dims", "splits") else v for k, v in doc.items()}


def _unknown_keys(
    mapping: Any, allowed: tuple[str, ...], where: str, problems: list[Problem]
) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        problems.append(Problem(where, f"expected a mapping, got {mapping!r}"))
        return {}
    for key in mapping:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed) or f"known keys: {', '.join(allowed)}"
            problems.append(Problem(where, f"unknown key '{key}'", hint))
    return {k: v for k, v in mapping.items() if k in allowed}


def load_pipeline_file(path: str | Path) -> PipelineModel:
    """Load a pipeline YAML file into a model (problems are collected in ``model.problems``).

    Raises:
        ConfigError: when the file cannot be read or parsed at all.
    """
    path = Path(path)
    place = str(path)
    problems: list[Problem] = []
    doc = _interpolate(_with_includes(path), place, problems)
    if problems:
        raise ValidationError(problems)  # later checks would only trip over the holes left behind
    doc = _scalars_from_env(doc)
    doc = _unknown_keys(doc, TOP_KEYS, place, problems)
    base = path.absolute().parent
    stage_files = doc.get("stages_from") or []
    if isinstance(stage_files, str):
        stage_files = [stage_files]
    entries, files, import_problems = collect_entries([str(s) for s in stage_files], base, place)
    problems += import_problems
    entries = _apply_groups(entries, doc.get("groups"), place, problems)
    entries = _apply_stage_overrides(entries, doc.get("stages"), place, problems)
    places: dict[str, str] = {}
    unknown = {
        str(p.place).rsplit("stages.", 1)[-1] for p in problems if p.message.startswith("unknown stage")
    }
    params = _file_params(doc, place, problems, places, unknown)
    model = build_model(
        entries,
        sources=_mapping(doc, "sources", place, problems),
        paths={k: str(v) for k, v in _mapping(doc, "paths", place, problems).items()},
        splits=doc.get("splits"),
        dims=doc.get("dims"),
        params=params,
        output=str(doc.get("output") or "out"),
        name=str(doc.get("pipeline") or path.stem),
        base_dir=base,
        origin=place,
        stage_files=files,
    )
    model.problems[:0] = problems
    model.param_places = places
    return model


def _mapping(doc: Mapping[str, Any], key: str, place: str, problems: list[Problem]) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        problems.append(Problem(f"{place}: {key}", f"expected a mapping, got {value!r}"))
        return {}
    return dict(value)


def _apply_groups(
    entries: list[Stage | Group], spec: Any, place: str, problems: list[Problem]
) -> list[Stage | Group]:
    groups = _unknown_keys(spec, tuple(spec or {}), f"{place}: groups", problems) if spec else {}
    by_name = {e.name: e for e in entries}
    for name, body in groups.items():
        where = f"{place}: groups.{name}"
        body = _unknown_keys(body, GROUP_KEYS, where, problems)
        existing = by_name.get(name)
        if isinstance(existing, Group):
            members = list(existing.stages)
        else:
            members = []
            for stage_name in body.get("stages") or []:
                found = by_name.get(stage_name)
                if isinstance(found, Stage):
                    members.append(found)
                else:
                    stage_names = [e.name for e in entries if isinstance(e, Stage)]
                    problems.append(
                        Problem(
                            where,
                            f"stages: unknown stage '{stage_name}'",
                            did_you_mean(str(stage_name), stage_names),
                        )
                    )
            if not members:
                problems.append(Problem(where, "a new group needs stages: [...]"))
                continue
        shared = dict(existing.shared) if isinstance(existing, Group) else {}
        for key, targets in (body.get("shared") or {}).items():
            shared[key] = (targets,) if isinstance(targets, str) else tuple(targets)
        params = {**(existing.params if isinstance(existing, Group) else {}), **(body.get("params") or {})}
        new_group = Group(name=name, stages=tuple(members), shared=shared, params=params)
        member_ids = {id(s) for s in members}
        # the group takes the place of the old group, or of its first stage
        at = next(i for i, e in enumerate(entries) if e is existing or id(e) in member_ids)
        entries = [e for e in entries if id(e) not in member_ids and e is not existing]
        entries.insert(min(at, len(entries)), new_group)
        by_name[name] = new_group
    return entries


def _apply_stage_overrides(
    entries: list[Stage | Group], spec: Any, place: str, problems: list[Problem]
) -> list[Stage | Group]:
    if not spec:
        return entries
    if not isinstance(spec, Mapping):
        problems.append(Problem(f"{place}: stages", f"expected a mapping of stage names, got {spec!r}"))
        return entries
    index: dict[str, tuple[int, int | None]] = {}
    for i, e in enumerate(entries):
        if isinstance(e, Group):
            for j, s in enumerate(e.stages):
                index.setdefault(s.name, (i, j))
                index[f"{e.name}:{s.name}"] = (i, j)
        else:
            index[e.name] = (i, None)
    order: list[int] = []
    for name, body in spec.items():
        where = f"{place}: stages.{name}"
        if name not in index:
            problems.append(
                Problem(
                    where,
                    f"unknown stage '{name}'",
                    did_you_mean(str(name), index) or "stages come from stages_from modules",
                )
            )
            continue
        body = _unknown_keys(body, STAGE_KEYS, where, problems)
        i, j = index[name]
        entry = entries[i]
        target = entry.stages[j] if isinstance(entry, Group) and j is not None else entry
        assert isinstance(target, Stage)
        changed = _override_stage(target, body, where, problems)
        if isinstance(entry, Group) and j is not None:
            stages = list(entry.stages)
            stages[j] = changed
            entries[i] = Group(entry.name, tuple(stages), entry.shared, entry.params)
        else:
            entries[i] = changed
        if i not in order:
            order.append(i)
    # listed order is the display order; stages not listed follow in module order
    return [entries[i] for i in order] + [e for k, e in enumerate(entries) if k not in order]


def _override_stage(stage: Stage, body: Mapping[str, Any], where: str, problems: list[Problem]) -> Stage:
    changes: dict[str, Any] = {}
    if "splits" in body:
        splits = body["splits"]
        if isinstance(splits, str):
            splits = [splits]
        if not isinstance(splits, list):
            problems.append(Problem(f"{where}.splits", f"expected a list of split names, got {splits!r}"))
        else:
            changes["splits"] = tuple(str(s) for s in splits)
    if "inputs" in body:
        inputs = dict(stage.inputs)
        for key, ref in _unknown_keys(
            body["inputs"], tuple(stage.inputs), f"{where}.inputs", problems
        ).items():
            inputs[key] = ref
        changes["inputs"] = inputs
    if "outputs" in body:
        outputs = dict(stage.outputs)
        for key, value in _unknown_keys(
            body["outputs"], tuple(stage.outputs), f"{where}.outputs", problems
        ).items():
            old = outputs[key]
            if isinstance(value, Mapping) and "template" not in value and set(value) <= {"handler"}:
                outputs[key] = Asset(old.template, value.get("handler"))
                continue
            try:
                new = as_asset(value, place=f"{where}.outputs.{key}")
            except TypeError as exc:
                problems.append(Problem(f"{where}.outputs.{key}", str(exc).split(": ", 1)[-1]))
                continue
            outputs[key] = (
                new
                if new.handler is not None or isinstance(value, Mapping)
                else Asset(new.template, old.handler)
            )
        changes["outputs"] = outputs
    return stage.with_changes(**changes) if changes else stage


def _file_params(
    doc: Mapping[str, Any],
    place: str,
    problems: list[Problem],
    places: dict[str, str],
    unknown_stages: set[str],
) -> dict[str, Any]:
    """Every parameter value the file sets, as flat dotted keys (nested ``params`` kept for flattening)."""
    flat: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key in flat and flat[key] != value:
            problems.append(
                Problem(f"{place}: {where}", f"{key} is also set in {origins[key]}, to a different value")
            )
            return
        flat[key] = value
        origins[key] = where
        places[key] = where

    for name, body in (doc.get("stages") or {}).items():
        if name in unknown_stages:
            continue  # reported once, as an unknown stage
        if isinstance(body, Mapping) and isinstance(body.get("params"), Mapping):
            for key, value in body["params"].items():
                put(f"{name}.{key}".replace(":", "."), value, f"stages.{name}.params.{key}")
    # group params travel with the Group (Group.params), like group(params=) in Python
    top = doc.get("params") or {}
    if not isinstance(top, Mapping):
        problems.append(Problem(f"{place}: params", f"expected a mapping, got {top!r}"))
    else:
        for key, value in top.items():
            put(str(key), value, f"params.{key}")
    return flat
