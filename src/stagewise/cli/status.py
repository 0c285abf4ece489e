"""``stagewise status``: per stage, items total / done / stale / missing / failed / rejected, and why stale."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from stagewise.cli.common import emit_json, load_session

__all__ = ["add_arguments", "execute", "print_plan", "summarise_reasons"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``status``."""
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or json"
    )


def summarise_reasons(reasons: Any, limit: int = 4) -> str:
    """``parameters changed: noise (12); new (3)`` — the most frequent reasons first."""
    top = reasons.most_common()
    text = "; ".join(f"{reason} ({count})" for reason, count in top[:limit])
    return text + (f"; and {len(top) - limit} more" if len(top) > limit else "")


def print_plan(statuses: Sequence[Any]) -> None:
    """The dry-run plan: per stage, how many items would run and why."""
    for s in statuses:
        definite = s.would_run
        if not definite and not s.pending:
            print(f"{s.stage}: nothing to do ({s.total} item{'s' if s.total != 1 else ''} up to date)")
            continue
        parts = []
        if definite:
            parts.append(f"{definite} of {s.total} item{'s' if s.total != 1 else ''} would run")
        if s.pending:
            parts.append(f"up to {s.pending} more, if their inputs change")
        print(f"{s.stage}: {', '.join(parts)}")
        if s.reasons:
            print(f"  why: {summarise_reasons(s.reasons)}")


def execute(args: argparse.Namespace) -> int:
    """Print the status table (or JSON rows); exit 0 whenever the pipeline can be read."""
    _, session, selectors = load_session(args)
    session.require_readable(parameters=True)
    statuses = session.statuses(session.select(selectors).stages)
    if args.format == "json":
        emit_json([s.as_dict() for s in statuses])
        return 0
    headers = ["stage", "total", "done", "stale", "missing", "failed", "rejected"]
    rows = [[s.stage, *(str(getattr(s, h)) for h in headers[1:])] for s in statuses]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for s, row in zip(statuses, rows, strict=True):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if s.reasons:
            print(f"  why: {summarise_reasons(s.reasons)}")
        if s.rejected_reasons:
            print(f"  rejected: {summarise_reasons(s.rejected_reasons)}")
    return 0
