"""Shared fixtures: scratch projects in a temp folder, driven through the command line.

A ``Project`` writes a ``stages.py`` and a ``pipeline.yaml`` (or any other file) into
``tmp_path`` and runs ``python -m stagewise`` there in a subprocess, as a new user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class CliResult:
    """What one ``python -m stagewise ...`` invocation printed, and its exit code."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together (problems go to one or the other)."""
        return self.stdout + self.stderr

    def line_with(self, *fragments: str) -> str:
        """The first output line containing every fragment; fails listing the output otherwise."""
        for line in self.output.splitlines():
            if all(f in line for f in fragments):
                return line
        raise AssertionError(f"no output line contains all of {fragments!r}; output was:\n{self.describe()}")

    def describe(self) -> str:
        """The invocation and everything it printed, for assertion messages."""
        return (
            f"$ stagewise {' '.join(self.args)}\n[exit {self.code}]\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


class Project:
    """A scratch stagewise project in a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relpath: str, text: str) -> Path:
        """Write a file (dedented); Python files get a header naming this project."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text).lstrip("\n")
        if path.suffix == ".py":
            # Every stages module gets its own content, even when two tests write the same code.
            body = f"# scratch project {self.root}\n{body}"
        path.write_text(body, encoding="utf-8")
        return path

    def stages(self, text: str, relpath: str = "stages.py") -> Path:
        """Write the stages module."""
        return self.write(relpath, text)

    def pipeline(self, text: str, relpath: str = "pipeline.yaml") -> Path:
        """Write the pipeline file."""
        return self.write(relpath, text)

    def cli(
        self, *args: str, env: Mapping[str, str | None] | None = None, cwd: Path | None = None
    ) -> CliResult:
        """Run ``python -m stagewise ARGS`` in the project folder (``env`` None values unset a name)."""
        environment = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        done = subprocess.run(
            [sys.executable, "-m", "stagewise", *args],
            cwd=cwd or self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return CliResult(tuple(args), done.returncode, done.stdout, done.stderr)

    def check(self, *args: str, env: Mapping[str, str | None] | None = None) -> CliResult:
        """``stagewise check ARGS``."""
        return self.cli("check", *args, env=env)

    def list_json(self, *args: str, env: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """``stagewise list --format json``, parsed; fails when the command fails."""
        result = self.cli("list", "--format", "json", *args, env=env)
        assert result.code == 0, result.describe()
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def params_json(
        self, *args: str, env: Mapping[str, str | None] | None = None
    ) -> dict[str, dict[str, Any]]:
        """``stagewise params --format json``, as name -> row; fails when the command fails."""
        result = self.cli("params", "--format", "json", *args, env=env)
        assert result.code == 0, result.describe()
        return {row["name"]: row for row in json.loads(result.stdout)}


@dataclass(frozen=True)
class Scenario:
    """A scratch project (file path -> text) and one command to run in it."""

    files: Mapping[str, str]
    args: tuple[str, ...] = ("check",)
    env: Mapping[str, str | None] = field(default_factory=dict)


def run_scenarios(scenarios: Mapping[str, Scenario], root: Path) -> dict[str, tuple[Project, CliResult]]:
    """Build each scenario in its own folder under ``root`` and run their commands concurrently.

    Each command is still its own ``python -m stagewise`` process in its own project; running
    them side by side only keeps a module of many small scenarios fast.
    """

    def run(name: str) -> tuple[Project, CliResult]:
        scenario = scenarios[name]
        project = Project(root / name)
        project.root.mkdir(parents=True)
        for relpath, text in scenario.files.items():
            project.write(relpath, text)
        return project, project.cli(*scenario.args, env=scenario.env)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(scenarios, pool.map(run, scenarios), strict=True))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty scratch project in ``tmp_path``."""
    return Project(tmp_path)


@pytest.fixture
def in_process_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test load pipelines from ``tmp_path`` in this process, then forget their modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    root = str(tmp_path)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(root):
            del sys.modules[name]


def problem_lines(result: CliResult) -> list[str]:
    """The problems ``check`` printed, one per bullet line."""
    return [line[4:] for line in result.stdout.splitlines() if line.startswith("  - ")]


def assert_refused(project: Project, result: CliResult) -> None:
    """Exit 2, messages without traceback, nothing written."""
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert not (project.root / "out").exists(), "validation must not write the output folder"


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file under ``root`` (relative path -> bytes), stagewise's own files excluded."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".stagewise" not in p.relative_to(root).parts
    }


def rows(table: Any) -> list[dict[str, Any]]:
    """``Pipeline.meta`` rows, whether pandas is installed or not."""
    return table.to_dict("records") if hasattr(table, "to_dict") else list(table)
