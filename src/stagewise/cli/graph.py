"""``stagewise graph``: the stage graph as Mermaid or Graphviz dot text."""

from __future__ import annotations

import argparse
from typing import Any

from stagewise.cli.common import load_session

__all__ = ["add_arguments", "execute", "render"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``graph``."""
    parser.add_argument(
        "--format", choices=("mermaid", "dot"), default="mermaid", help="mermaid (default) or dot"
    )


def _node_id(qname: str) -> str:
    return qname.replace(":", "__")


def render(model: Any, fmt: str) -> str:
    """The graph of stages (and sources) in Mermaid or dot."""
    edges = []
    for qname, node in model.nodes.items():
        for _input_name, link in node.links.items():
            origin = _node_id(link.producer) if link.producer else f"src_{link.name}"
            edges.append((origin, _node_id(qname), link.name if link.producer else ""))
    sources = sorted(
        {link.name for n in model.nodes.values() for link in n.links.values() if link.producer is None}
    )
    if fmt == "dot":
        lines = [f'digraph "{model.name}" {{', "  rankdir=LR;"]
        lines += [f'  src_{s} [label="{s}", shape=note];' for s in sources]
        for group in model.groups:
            members = [q for q, n in model.nodes.items() if n.group == group]
            lines.append(
                f'  subgraph "cluster_{group}" {{ label="{group}"; '
                + " ".join(f'"{_node_id(q)}";' for q in members)
                + " }"
            )
        lines += [f'  "{_node_id(q)}" [label="{q}", shape=box];' for q in model.nodes]
        lines += [
            f'  "{a}" -> "{b}"' + (f' [label="{label}"]' if label else "") + ";" for a, b, label in edges
        ]
        return "\n".join([*lines, "}"])
    lines = ["flowchart LR"]
    lines += [f"  src_{s}[/{s}/]" for s in sources]
    for group in model.groups:
        lines.append(f"  subgraph {group}")
        lines += [f"    {_node_id(q)}[{q}]" for q, n in model.nodes.items() if n.group == group]
        lines.append("  end")
    lines += [f"  {_node_id(q)}[{q}]" for q, n in model.nodes.items() if not n.group]
    lines += [f"  {a} -->" + (f"|{label}|" if label else "") + f" {b}" for a, b, label in edges]
    return "\n".join(lines)


def execute(args: argparse.Namespace) -> int:
    """Print the graph."""
    _, session, _ = load_session(args)
    session.require_readable()
    print(render(session.model, args.format))
    return 0
