"""``stagewise params``: every resolved parameter with type, value, default, origin and help."""

from __future__ import annotations

import argparse
from typing import Any

from stagewise.cli.common import emit_json, load_session

__all__ = ["add_arguments", "execute", "rows"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``params``."""
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or json"
    )


def rows(session: Any, stages: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per parameter: name, type, value, default, origin, help (and its stage)."""
    from stagewise.model.convert import to_plain
    from stagewise.model.params import UNSET

    out = []
    for qname, params in session.params.items():
        if stages and qname not in stages:
            continue
        for rp in params.values():
            out.append({
                "name": rp.key,
                "stage": qname,
                "type": rp.spec.type_name,
                "value": None if rp.value is UNSET else to_plain(rp.value),
                "default": None if rp.spec.default is UNSET else to_plain(rp.spec.default),
                "origin": rp.origin,
                "help": rp.spec.help,
                "required": rp.spec.required,
            })  # fmt: skip
    return out


def execute(args: argparse.Namespace) -> int:
    """Print the parameter table (or JSON rows)."""
    _, session, selectors = load_session(args)
    session.require_readable(parameters=True)
    stages = list(session.select(selectors).stages) if selectors else None
    data = rows(session, stages)
    if args.format == "json":
        emit_json(data)
        return 0
    if not data:
        print("(no parameters)")
        return 0
    headers = ["name", "type", "value", "default", "origin", "help"]
    table = [
        [str(r[h]) if r[h] is not None or h in ("value", "default") else "" for h in headers] for r in data
    ]
    for r, row in zip(data, table, strict=True):
        row[2] = "<required>" if r["origin"] == "unset" else repr(r["value"])
        row[3] = "-" if r["required"] else repr(r["default"])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers[:-1])]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  help")
    for row in table:
        print(("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]).rstrip())
    return 0
