"""``stagewise check``: validate everything without reading or writing data."""

from __future__ import annotations

import argparse
import sys

from stagewise.cli.common import load_session
from stagewise.errors import Problem, ValidationError

__all__ = ["add_arguments", "execute"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``check`` takes the common flags only."""


def execute(args: argparse.Namespace) -> int:
    """Print every problem with its place; exit 2 when there is an error."""
    from stagewise.api.session import missing_source_warnings

    try:
        _, session, _ = load_session(args)
    except ValidationError as exc:  # the file could not even be read through: same report
        return _report([p for p in exc.problems if p.severity == "error"])
    problems = session.problems()
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    if not errors:
        warnings += missing_source_warnings(session)
    for p in warnings:
        print(f"warning: {p}", file=sys.stderr)
    model = session.model
    if errors:
        return _report(errors)
    stages = len(model.nodes)
    print(
        f"{model.place}: OK ({stages} stage{'s' if stages != 1 else ''}, {len(model.sources)} source{'s' if len(model.sources) != 1 else ''})"
    )
    return 0


def _report(errors: list[Problem]) -> int:
    print(f"{len(errors)} problem{'s' if len(errors) != 1 else ''} found:")
    for p in errors:
        print(f"  - {p}")
    return 2
