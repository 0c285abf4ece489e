"""stagewise: multi-stage, file-based pipelines with exact, explainable reruns.

The public API is what ``__all__`` lists; everything else is private.
"""

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

__version__ = "0.1.0"

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
