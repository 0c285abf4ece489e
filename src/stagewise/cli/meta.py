"""``stagewise meta STAGE``: the item metadata of a stage as a table, CSV or JSON rows."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from stagewise.cli.common import emit_json, load_session
from stagewise.errors import SelectionError

__all__ = ["add_arguments", "execute", "format_cell", "meta_columns", "render_csv", "render_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``meta``."""
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="an aligned table (default), csv, or json (a list of flat rows)",
    )


def execute(args: argparse.Namespace) -> int:
    """Print the metadata rows of one stage; exit 0 (also when no item is done yet)."""
    from stagewise.api.meta import meta_rows, resolve_stage

    _, session, words = load_session(args)
    if len(words) != 1:
        raise SelectionError(
            f"meta takes one stage, got {len(words)}" + (f": {' '.join(words)}" if words else ""),
            hint="stagewise meta STAGE [--format table|csv|json]",
        )
    session.require_readable()
    qname = resolve_stage(session.model, words[0])
    rows = meta_rows(session, qname)
    if args.format == "json":
        emit_json(rows)
        return 0
    columns = meta_columns(session.model.nodes[qname].dims, rows)
    text = render_csv(columns, rows) if args.format == "csv" else render_table(columns, rows)
    sys.stdout.write(text)
    return 0


def meta_columns(tags: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The tag names, then every other key of the rows in first-seen order."""
    return list(dict.fromkeys([*tags, *(key for row in rows for key in row)]))


def format_cell(value: Any) -> str:
    """A value as text: strings as they are, numbers as Python prints them, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def render_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """CSV text: a header of ``columns``, one line per row, empty cells for missing keys."""
    import csv
    import io

    if not columns:
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def render_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """An aligned text table: numeric columns right-aligned, others left; two spaces between."""
    if not columns:
        return ""
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    right = [_numeric(row.get(c) for row in rows) for c in columns]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = []
    for line in [list(columns), *cells]:
        parts = [
            text.rjust(width) if r else text.ljust(width)
            for text, width, r in zip(line, widths, right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip() + "\n")
    return "".join(lines)


def _numeric(values: Any) -> bool:
    """Whether a column holds numbers only (missing cells aside), and at least one."""
    seen = False
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        seen = True
    return seen
