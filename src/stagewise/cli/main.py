"""The ``stagewise`` command: parse, delegate to one module per command, map errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stagewise.cli.common import OverrideArgs, add_pipeline_flags, split_overrides
from stagewise.errors import StagewiseError

if TYPE_CHECKING:
    from stagewise.api.pipeline import Pipeline

__all__ = ["build_parser", "main"]

COMMANDS = {
    "run": "run what is out of date among the selected stages (all when none given)",
    "check": "validate everything without reading or writing data; exit 0 or 2",
    "list": "stages, groups and their stages, dims, assets with templates and handlers",
    "params": "every resolved parameter with its type, value, default, origin and help",
    "graph": "the stage graph as Mermaid (default) or Graphviz dot (--format dot)",
    "status": "per stage: items total / done / stale / missing / failed / rejected, and why stale",
    "meta": "the item metadata of a stage: a table, or --format csv / --format json",
}


def build_parser(script: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``script`` drops TARGET (a script's ``pipeline.main()``)."""
    from stagewise.cli import check, graph, list_cmd, meta, params, run, status

    prog = "python " + (sys.argv[0] if sys.argv and sys.argv[0] else "script.py") if script else "stagewise"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Multi-stage, file-based pipelines: exact, explainable, parallel reruns.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {
        "run": run,
        "status": status,
        "check": check,
        "list": list_cmd,
        "params": params,
        "graph": graph,
        "meta": meta,
    }
    for name, module in modules.items():
        command = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name], allow_abbrev=False)
        add_pipeline_flags(command, script=script)
        module.add_arguments(command)
        command.set_defaults(handler=module.execute)
    return parser


def _version() -> str:
    from stagewise import __version__

    return f"stagewise {__version__}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, so log lines go above rich's live bars."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    logger = logging.getLogger("stagewise")
    logger.setLevel(max(logging.DEBUG, level))
    if not any(getattr(h, "_stagewise", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._stagewise = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def main(argv: Sequence[str] | None = None, pipeline: Pipeline | None = None) -> int:
    """Run the command line; return the exit code.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        pipeline: a pipeline bound by a script's ``pipeline.main()`` (then there is no TARGET).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args_list)
    try:
        return _main(args_list, pipeline)
    except StagewiseError as exc:
        if verbose:
            logging.getLogger("stagewise").exception("error")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: what finished was recorded; run again to do the rest", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stagewise params | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args_list: list[str], pipeline: Pipeline | None) -> int:
    rest, overrides = split_overrides(args_list)
    parser = build_parser(script=pipeline is not None)
    wants_help = any(a in ("-h", "--help") for a in rest)
    if wants_help and rest and rest[0] in ("run", "params", "check", "status"):
        from stagewise.cli.help import print_help_with_params

        return print_help_with_params(parser, rest, overrides, pipeline)
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        _unknown_flags(parser, args.command, unknown)
    args.overrides = OverrideArgs(overrides)
    args.bound_pipeline = pipeline
    args.argv = args_list
    _setup_logging(args.verbose, args.quiet)
    code: int = args.handler(args)
    return code


def _unknown_flags(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> None:
    """Exit 2 naming the unknown flag, with the command's own usage and the closest flag."""
    from stagewise._suggest import did_you_mean

    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    flags = [o for action in sub._actions for o in action.option_strings]
    first = unknown[0].split("=", 1)[0]
    hint = did_you_mean(first, flags)
    extra = f" ({hint})" if hint else " (parameter overrides look like --stage.param VALUE)"
    sub.error(f"unknown argument {first}{extra}")
