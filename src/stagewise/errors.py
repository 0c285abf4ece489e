"""The exception tree of stagewise, and the exit code of each branch.

::

    StagewiseError                    exit 2 unless stated
    ├── ConfigError                   a pipeline file, a parameter value, a config file
    │   └── ParameterError            one stage parameter (``stage.param``)
    ├── TemplateError                 a path template or a tag value
    ├── HandlerError                  an unknown handler, or its library is missing
    ├── SelectionError                an unknown selector or ``--where`` filter
    ├── ValidationError               every problem found by ``check``, together
    ├── StateError                    the state store is damaged or from a newer stagewise
    ├── LockError                     another run holds the output root
    ├── AssetIOError                  reading or writing one file failed
    ├── StageError                    a stage broke its contract (returned None, wrong keys)
    ├── RunFailed                     items failed (exit 1)
    └── Interrupted                   Ctrl-C (exit 130)

Every error carries enough context to print one actionable line; the command line maps
``exit_code`` to the process exit status in one place (``stagewise.cli.main``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = [
    "AssetIOError",
    "ConfigError",
    "HandlerError",
    "Interrupted",
    "LockError",
    "ParameterError",
    "Problem",
    "RunFailed",
    "SelectionError",
    "StageError",
    "StagewiseError",
    "StateError",
    "TemplateError",
    "ValidationError",
]


class StagewiseError(Exception):
    """Root of every error stagewise raises on purpose.

    Args:
        message: what went wrong, naming the file, stage, parameter or item at fault.
        hint: what to do about it (printed after the message).
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(StagewiseError):
    """A pipeline file, config file or parameter value is wrong."""


class ParameterError(ConfigError):
    """A stage parameter is unknown, missing or of the wrong type."""


class TemplateError(StagewiseError):
    """A path template is malformed, or a tag value would escape its root."""


class HandlerError(StagewiseError):
    """A handler is unknown, or the library it needs is not installed."""


class SelectionError(StagewiseError):
    """A stage selector or item filter names nothing in the pipeline."""


class StateError(StagewiseError):
    """The state store cannot be used (damaged, or written by a newer stagewise)."""


class LockError(StagewiseError):
    """Another run holds the lock of this output root."""


class AssetIOError(StagewiseError):
    """Reading or writing one asset file failed.

    Args:
        message: what failed.
        path: the file concerned.
    """

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class StageError(StagewiseError):
    """A stage body broke the contract (returned None, returned the wrong output keys...)."""


class RunFailed(StagewiseError):
    """One or more items failed; the others were recorded."""

    exit_code: ClassVar[int] = 1


class Interrupted(StagewiseError):
    """The run was interrupted (Ctrl-C); what finished was recorded."""

    exit_code: ClassVar[int] = 130


@dataclass(frozen=True)
class Problem:
    """One problem found by validation.

    Attributes:
        place: where it is, e.g. ``pipeline.yaml: stages.clean.params.treshold``.
        message: what is wrong.
        hint: what to do about it, or None.
        severity: ``error`` stops a run; ``warning`` is only reported.
        stage: the stage concerned, if any (a run only fails on its selected stages' problems).
    """

    place: str
    message: str
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"
    stage: str | None = None

    def __str__(self) -> str:
        text = f"{self.place}: {self.message}" if self.place else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ValidationError(StagewiseError):
    """Validation found problems; all of them are listed, each with its place."""

    def __init__(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        lines = [f"{len(errors)} problem{'s' if len(errors) != 1 else ''} found:"]
        lines += [f"  - {p}" for p in errors]
        super().__init__("\n".join(lines))
        self.problems = problems
