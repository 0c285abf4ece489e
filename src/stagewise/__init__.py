"""stagewise: multi-stage, file-based pipelines with exact, explainable reruns.

The public API is what ``__all__`` lists; everything else is private. Names are imported on
first use (PEP 562), so ``import stagewise`` and ``stagewise --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AssetView": "stagewise.api.pipeline",
    "Pipeline": "stagewise.api.pipeline",
    "load": "stagewise.api.pipeline",
    "AssetIOError": "stagewise.errors",
    "ConfigError": "stagewise.errors",
    "HandlerError": "stagewise.errors",
    "ParameterError": "stagewise.errors",
    "Problem": "stagewise.errors",
    "RunFailed": "stagewise.errors",
    "SelectionError": "stagewise.errors",
    "StageError": "stagewise.errors",
    "StagewiseError": "stagewise.errors",
    "StateError": "stagewise.errors",
    "TemplateError": "stagewise.errors",
    "ValidationError": "stagewise.errors",
    "register_handler": "stagewise.handlers",
    "Asset": "stagewise.model.assets",
    "Group": "stagewise.model.group",
    "group": "stagewise.model.group",
    "Collection": "stagewise.model.handles",
    "Lazy": "stagewise.model.handles",
    "Out": "stagewise.model.handles",
    "OutputHandle": "stagewise.model.handles",
    "Item": "stagewise.model.item",
    "REJECT": "stagewise.model.results",
    "Reject": "stagewise.model.results",
    "Result": "stagewise.model.results",
    "Stage": "stagewise.model.stage",
    "stage": "stagewise.model.stage",
}

__all__ = [
    "REJECT",
    "Asset",
    "AssetIOError",
    "AssetView",
    "Collection",
    "ConfigError",
    "Group",
    "HandlerError",
    "Item",
    "Lazy",
    "Out",
    "OutputHandle",
    "ParameterError",
    "Pipeline",
    "Problem",
    "Reject",
    "Result",
    "RunFailed",
    "SelectionError",
    "Stage",
    "StageError",
    "StagewiseError",
    "StateError",
    "TemplateError",
    "ValidationError",
    "__version__",
    "group",
    "load",
    "register_handler",
    "stage",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stagewise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from stagewise.api.pipeline import AssetView, Pipeline, load
    from stagewise.errors import (
        AssetIOError,
        ConfigError,
        HandlerError,
        ParameterError,
        Problem,
        RunFailed,
        SelectionError,
        StageError,
        StagewiseError,
        StateError,
        TemplateError,
        ValidationError,
    )
    from stagewise.handlers import register_handler
    from stagewise.model.assets import Asset
    from stagewise.model.group import Group, group
    from stagewise.model.handles import Collection, Lazy, Out, OutputHandle
    from stagewise.model.item import Item
    from stagewise.model.results import REJECT, Reject, Result
    from stagewise.model.stage import Stage, stage
