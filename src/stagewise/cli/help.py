"""``--help`` on ``run``, ``params`` and ``check``: the usual help plus every stage parameter."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["print_help_with_params"]


def print_help_with_params(
    parser: argparse.ArgumentParser, rest: Sequence[str], overrides: Any, pipeline: Any
) -> int:
    """Print the command's help, then the parameters of the pipeline if it can be loaded."""
    from stagewise.api.session import Session
    from stagewise.api.target import is_target, load_target
    from stagewise.errors import StagewiseError

    command = rest[0]
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    sub.print_help()
    words = [w for w in rest[1:] if not w.startswith("-")]
    try:
        target = words[0] if pipeline is None and words and is_target(words[0]) else None
        loaded = pipeline or load_target(target)
        session = Session(loaded.model)
    except StagewiseError as exc:
        print(f"\n(stage parameters not shown: {exc.message})")
        return 0
    print("\nstage parameters (--STAGE.PARAM VALUE):")
    for qname, params in session.params.items():
        if not params:
            continue
        print(f"  {qname}:")
        for rp in params.values():
            default = "required" if rp.spec.required else f"default {rp.spec.default!r}"
            help_text = f"  {rp.spec.help}" if rp.spec.help else ""
            print(f"    --{rp.key} {rp.spec.type_name}  ({default}){help_text}")
    for name, group in session.model.groups.items():
        for shared, targets in group.shared.items():
            print(f"  --{name}.{shared}  (shared: sets {', '.join(targets)})")
    return 0
