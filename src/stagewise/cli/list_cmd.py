"""``stagewise list``: stages, groups, dims, sources and outputs with templates and handlers."""

from __future__ import annotations

import argparse
from typing import Any

from stagewise.cli.common import emit_json, load_session

__all__ = ["add_arguments", "describe", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``list``."""
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or json"
    )


def _handler(asset: Any) -> str:
    from stagewise.errors import HandlerError
    from stagewise.handlers import handler_for_path

    if asset.handler is not None:
        return str(asset.handler_label)
    try:
        return handler_for_path(asset.template)
    except HandlerError:
        return "?"


def describe(model: Any) -> dict[str, Any]:
    """The pipeline as plain data (what ``list --format json`` prints)."""
    from stagewise.model.graph import topological_order

    dims: dict[str, Any] = {}
    if model.dims.splits is not None:
        dims["split"] = {name: list(sims) for name, sims in model.dims.splits.items()}
    dims.update({name: list(values) for name, values in model.dims.values.items()})
    stages = []
    for qname, node in model.nodes.items():
        items = (
            sum(1 for _ in model.dims.enumerate(node.dims, splits=node.stage.splits))
            if not model.problems
            else None
        )
        stages.append({
            "name": qname,
            "group": node.group,
            "over": list(node.dims),
            "splits": list(node.stage.splits) if node.stage.splits is not None else None,
            "items": items,
            "inputs": {name: link.ref for name, link in node.links.items()},
            "outputs": {name: {"template": a.template, "handler": _handler(a)} for name, a in node.stage.outputs.items()},
            "params": list(node.stage.params),
        })  # fmt: skip
    return {
        "pipeline": model.name,
        "file": model.origin,
        "output": str(model.output),
        "paths": {k: str(v) for k, v in model.paths.items()},
        "dims": dims,
        "sources": {k: {"template": a.template, "handler": _handler(a)} for k, a in model.sources.items()},
        "stages": stages,
        "groups": {
            name: {"stages": [s.name for s in g.stages], "shared": {k: list(v) for k, v in g.shared.items()}}
            for name, g in model.groups.items()
        },
        "order": topological_order(model) if not model.problems else list(model.nodes),
    }


def execute(args: argparse.Namespace) -> int:
    """Print the pipeline's structure."""
    _, session, _ = load_session(args)
    session.require_readable()
    data = describe(session.model)
    if args.format == "json":
        emit_json(data)
        return 0
    print(
        f"pipeline {data['pipeline']}"
        + (f" ({data['file']})" if data["file"] else "")
        + f", output {data['output']}"
    )
    if data["paths"]:
        print("paths:")
        for name, root in data["paths"].items():
            print(f"  {name}: {root}")
    if data["dims"]:
        print("dims:")
        for name, values in data["dims"].items():
            if isinstance(values, dict):
                shown = ", ".join(f"{split} ({len(sims)} sims)" for split, sims in values.items())
            else:
                shown = ", ".join(map(str, values))
            print(f"  {name}: {shown}")
    if data["sources"]:
        print("sources:")
        for name, src in data["sources"].items():
            print(f"  {name}: {src['template']}  [{src['handler']}]")
    print("stages:")
    for s in data["stages"]:
        over = ", ".join(s["over"]) or "-"
        count = f", {s['items']} item{'s' if s['items'] != 1 else ''}" if s["items"] is not None else ""
        print(f"  {s['name']}  (over {over}{count})")
        for name, ref in s["inputs"].items():
            print(f"    in  {name} <- {ref}")
        for name, out in s["outputs"].items():
            print(f"    out {name}: {out['template']}  [{out['handler']}]")
    if data["groups"]:
        print("groups:")
        for name, g in data["groups"].items():
            shared = "; ".join(f"{k} -> {', '.join(v)}" for k, v in g["shared"].items())
            print(f"  {name}: {', '.join(g['stages'])}" + (f"  (shared: {shared})" if shared else ""))
    return 0
