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
    from stagewise.cli.common import OverrideArgs, load_session
    from stagewise.errors import StagewiseError
    from stagewise.model.convert import shown

    command = rest[0]
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    sub.print_help()
    args, _ = parser.parse_known_args([a for a in rest if a not in ("-h", "--help")])
    args.overrides = OverrideArgs(overrides)
    args.bound_pipeline = pipeline
    try:
        _, session, _ = load_session(args)  # the same pipeline, --config files and overrides as a run
    except StagewiseError as exc:
        print(f"\n(stage parameters not shown: {exc.message})")
        return 0
    print("\nstage parameters (--STAGE.PARAM VALUE):")
    for qname, params in session.params.items():
        if not params:
            continue
        print(f"  {qname}:")
        for rp in params.values():
            default = "required" if rp.spec.required else f"default {shown(rp.spec.default)!r}"
            if rp.origin not in ("default", "unset"):
                default += f", now {shown(rp.value)!r} from {rp.origin}"
            help_text = f"  {rp.spec.help}" if rp.spec.help else ""
            print(f"    --{rp.key} {rp.spec.type_name}  ({default}){help_text}")
    for name, group in session.model.groups.items():
        for shared, targets in group.shared.items():
            print(f"  --{name}.{shared}  (shared: sets {', '.join(targets)})")
    return 0
