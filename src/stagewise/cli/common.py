"""What every command shares: TARGET and flags, parameter overrides, loading the session."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.errors import ConfigError

__all__ = [
    "OverrideArgs",
    "add_pipeline_flags",
    "emit_json",
    "load_session",
    "split_overrides",
    "split_target",
]


@dataclass(frozen=True)
class OverrideArgs:
    """``--stage.param VALUE`` pairs from the command line, in order."""

    pairs: tuple[tuple[str, str], ...]


def split_overrides(argv: Sequence[str]) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """Take ``--a.b VALUE`` and ``--a.b=VALUE`` out of the arguments.

    Done before argparse so values may start with ``-`` (``--train.lr -1e-3``).

    Raises:
        ConfigError: an override without a value.
    """
    rest: list[str] = []
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "." in name and not name.startswith("."):
            if "=" in arg:
                pairs.append((name, arg.split("=", 1)[1]))
            elif i + 1 < len(argv):
                pairs.append((name, argv[i + 1]))
                i += 1
            else:
                raise ConfigError(f"--{name}: missing value", hint=f"write --{name} VALUE")
        else:
            rest.append(arg)
        i += 1
    return rest, tuple(pairs)


def add_pipeline_flags(parser: argparse.ArgumentParser, *, script: bool) -> None:
    """TARGET and the flags every command that reads a pipeline takes."""
    parser.add_argument("words", nargs="*", metavar="TARGET/SELECTOR", help=(
        "" if script else "TARGET: a pipeline .yaml or file.py[:name] (default pipeline.yaml); "
    ) + "SELECTORS: stage, group, group:stage, group:all, group:?, +stage, stage+")  # fmt: skip
    parser.add_argument("--output", metavar="DIR", help="the output root (overrides the pipeline's)")
    parser.add_argument(
        "--config",
        metavar="FILE",
        action="append",
        default=[],
        help="parameters from a YAML file, flat or nested (repeatable; later files win)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail; tracebacks for errors"
    )
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less detail")


def split_target(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The TARGET (or None for the default) and the selectors among the positional words."""
    from stagewise.api.target import is_target

    words = list(args.words)
    if args.bound_pipeline is None and words and is_target(words[0]):
        return words[0], words[1:]
    return None, words


def load_session(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """Load the pipeline and resolve parameters: (pipeline, session, selectors)."""
    from stagewise.api.session import Session
    from stagewise.api.target import load_target
    from stagewise.config.layers import Layer, flatten_params
    from stagewise.config.yaml_file import read_yaml

    target, selectors = split_target(args)
    pipeline = args.bound_pipeline or load_target(target)
    model = pipeline.model
    layers = []
    settings: dict[str, Any] = {}
    for file in args.config:
        values = read_yaml(Path(file)) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{file}: a config file is a mapping of parameters")
        settings.update(_run_settings(file, values.pop("stagewise", None), model.base_dir))
        layers.append(Layer(f"config:{file}", flatten_params(values, model), place=file))
    if args.overrides.pairs:
        layers.append(Layer("cli", dict(args.overrides.pairs), from_text=True, place="command line"))
    args.run_settings = settings
    session = Session(model, layers, args.output or settings.get("output"))
    return pipeline, session, selectors or list(settings.get("select") or [])


RUN_KEYS = ("select", "output", "jobs", "executor", "where")


def _run_settings(file: str, block: Any, base: Path) -> dict[str, Any]:
    """The reserved ``stagewise:`` key of a config file: selection, output, jobs (and executor)."""
    from stagewise._suggest import did_you_mean

    if block is None:
        return {}
    if not isinstance(block, dict):
        raise ConfigError(f"{file}: stagewise: expected a mapping with {', '.join(RUN_KEYS)}")
    for key in block:
        if key not in RUN_KEYS:
            hint = did_you_mean(str(key), RUN_KEYS) or f"known keys: {', '.join(RUN_KEYS)}"
            raise ConfigError(f"{file}: stagewise.{key}: unknown key", hint=hint)
    settings = dict(block)
    if isinstance(settings.get("select"), str):
        settings["select"] = [settings["select"]]
    if settings.get("output") is not None:
        out = Path(str(settings["output"])).expanduser()
        settings["output"] = out if out.is_absolute() else base / out  # relative to the pipeline's folder
    jobs = settings.get("jobs")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"{file}: stagewise.jobs: expected a number >= 1, got {jobs!r}")
    return settings


def emit_json(data: Any) -> None:
    """Write JSON data to stdout."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
