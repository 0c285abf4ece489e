"""``group``: a multistage module — stages bundled under one name, with shared parameters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stagewise.model.stage import Stage

__all__ = ["Group", "group"]


@dataclass(frozen=True, eq=False)
class Group:
    """Stages addressed together as ``name:stage``, with shared parameters.

    Attributes:
        name: the group's name.
        stages: its stages, in display order.
        shared: shared parameter name -> its targets, each ``"stage.param"``.
        params: parameter values set with the group (a shared name, or ``stage.param``).
    """

    name: str
    stages: tuple[Stage, ...]
    shared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<group {self.name}: {', '.join(s.name for s in self.stages)}>"


def group(
    name: str,
    stages: Iterable[Stage],
    shared: Mapping[str, Iterable[str] | str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Group:
    """Bundle stages into a group (Pimlico's multistage module).

    Args:
        name: the group's name; its stages are addressed as ``name:stage``.
        stages: the stages, in display order.
        shared: one parameter name -> the stage parameters it sets (``"fit.cutoff"``).
        params: default values for the group's parameters (shared names or ``stage.param``).

    Example::

        model_train = group("model_train", [preprocess, fit, evaluate],
                            shared={"threshold": ["preprocess.threshold", "fit.cutoff"]})
    """
    targets = {
        key: (value,) if isinstance(value, str) else tuple(value) for key, value in (shared or {}).items()
    }
    return Group(name=name, stages=tuple(stages), shared=targets, params=dict(params or {}))
