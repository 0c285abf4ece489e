"""``stagewise run``: run what is out of date among the selected stages."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagewise.cli.common import load_session
from stagewise.errors import ConfigError

if TYPE_CHECKING:
    from stagewise.run.coordinator import RunReport

__all__ = ["add_arguments", "execute"]

log = logging.getLogger("stagewise")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run``."""
    parser.add_argument(
        "-j", "--jobs", type=int, metavar="N", help="parallel items (default: the usable CPUs)"
    )
    parser.add_argument(
        "--executor",
        default=None,
        metavar="NAME",
        help="local (processes, default), serial (in-process), threads, dask",
    )
    parser.add_argument("--force", action="store_true", help="rerun selected stages even if up to date")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan (per stage, how many items would run) and exit"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed item")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="TAG=VALUES",
        help="run only matching items: split=test, sim=0:4, freq=30,100 (repeatable)",
    )
    parser.add_argument(
        "--print-params",
        action="store_true",
        help="print each selected stage's resolved parameters before it runs",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler address (implies --executor dask; without it, dask starts a LocalCluster)",
    )
    parser.add_argument(
        "--retries", type=int, default=0, metavar="N", help="rerun a failed item up to N times"
    )
    parser.add_argument(
        "--next", action="store_true", help="run only the next stage that has work and whose inputs are ready"
    )
    parser.add_argument(
        "--save-config",
        metavar="FILE",
        help="write the parameters, selection, output and jobs to FILE, then run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.add_argument("--no-provenance", action="store_true", help="write no run record")
    parser.add_argument("--wait", action="store_true", help="wait for another run's lock instead of failing")


def execute(args: argparse.Namespace) -> int:
    """Run the selection; exit 0 when everything finished, 1 when an item failed."""
    from stagewise.api.session import RunOptions

    _, session, selectors = load_session(args)
    selection = session.select(selectors)
    if selection.list_group:
        return _list_group(session, selection.list_group)
    settings = args.run_settings
    jobs = args.jobs if args.jobs is not None else settings.get("jobs")
    executor = args.executor or settings.get("executor") or ("dask" if args.scheduler else "local")
    where = args.where or list(settings.get("where") or [])
    if args.save_config:
        session.validate(selection.stages)  # a config that would not run is not worth saving
        _save_config(args.save_config, session, selectors, jobs, where, executor)
        if args.dry_run:
            return 0
    if args.next:
        chosen = session.next_stage(selection.stages, where)
        if chosen is None:
            print("nothing to do")
            waiting = session.waiting_upstream(selection.stages)
            if waiting:
                log.info("(the selected stages wait for unselected upstream work: %s)", ", ".join(waiting))
            return 0
        log.info("next: %s", chosen)
        selection = type(selection)((chosen,))
    options = RunOptions(
        selectors=selectors, jobs=jobs, executor=executor, force=args.force,
        where=where, output=args.output, fail_fast=args.fail_fast, dry_run=args.dry_run,
        retries=args.retries,
        progress=not (args.no_progress or args.quiet),
        extra={"wait": args.wait, "command": " ".join(["run", *args.words]), "scheduler": args.scheduler},
    )  # fmt: skip
    if args.print_params:
        _print_params(session, selection.stages)
    report = session.run(options, selection)
    if args.dry_run:
        from stagewise.cli.status import print_plan

        print_plan(report.statuses)
        return 0
    _summarise(report, session.model.output)
    if report.ok:
        return 0
    _resume_hint(args, report)
    return 1


def _save_config(
    file: str, session: Any, selectors: list[str], jobs: int | None, where: list[str], executor: str
) -> None:
    """Write what repeats this run: every resolved parameter, then selection, output and jobs."""
    import yaml

    from stagewise.model.convert import to_plain
    from stagewise.model.params import UNSET
    from stagewise.run.cpus import usable_cpus

    values: dict[str, Any] = {}
    for params in session.params.values():
        for rp in params.values():
            if rp.value is not UNSET:
                values[rp.key] = to_plain(rp.value)
    output = session.model.output
    try:
        shown = str(output.relative_to(session.model.base_dir))
    except ValueError:
        shown = str(output)
    values["stagewise"] = {
        "select": list(selectors),
        "output": shown,
        "jobs": jobs or usable_cpus(),
        "executor": executor,
    }
    if where:
        values["stagewise"]["where"] = list(where)
    text = "# written by stagewise run --save-config; repeat with: stagewise run --config " + file + "\n"
    try:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        Path(file).write_text(text + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--save-config {file}: cannot write: {exc.strerror}") from None
    log.info("parameters saved to %s", file)


def _list_group(session: object, group: str) -> int:
    model = session.model  # type: ignore[attr-defined]
    for qname, node in model.nodes.items():
        if node.group == group:
            print(f"{qname}")
    return 0


def _print_params(session: object, stages: tuple[str, ...]) -> None:
    from stagewise.model.convert import shown

    params = session.params  # type: ignore[attr-defined]
    for qname in stages:
        values = ", ".join(f"{n}={shown(rp.value)!r}" for n, rp in params[qname].items()) or "(no parameters)"
        print(f"{qname}: {values}")


def _summarise(report: RunReport, output: object) -> None:
    for qname, counts in report.counts.items():
        names = {"uptodate": "up to date", "skipped": "skipped (upstream failed)"}
        keys = ("done", "rejected", "failed", "skipped", "uptodate")
        parts = [f"{counts[k]} {names.get(k, k)}" for k in keys if counts[k]]
        if qname in report.not_started:
            parts = ["not started (upstream failed)"]
        log.info("%s: %s", qname, ", ".join(parts) or "nothing to do")
    for failure in report.failures[:10]:
        log.error("FAILED %s %s: %s", failure.stage, failure.item, failure.reason)
        if failure.error:
            lines = failure.error.rstrip().splitlines()
            for line in lines[-6:]:
                log.error("    %s", line)
    if len(report.failures) > 10:
        log.error("... and %d more failed items", len(report.failures) - 10)
    log.info("outputs in %s", _relative(output))


def _resume_hint(args: argparse.Namespace, report: RunReport) -> None:
    import shlex

    words = " ".join(shlex.quote(a) for a in args.argv[1:] if a not in ("--force", "--fail-fast"))
    print(
        f"{len(report.failures)} item(s) failed; fix and resume with: stagewise run {words}".rstrip(),
        file=sys.stderr,
    )


def _relative(path: object) -> str:
    from pathlib import Path

    try:
        return str(Path(str(path)).relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)
