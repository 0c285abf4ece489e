"""Find the pipeline a command names: a YAML file, or ``file.py[:name]`` holding a ``Pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stagewise.config.modules import import_file, put_first_on_path
from stagewise.config.yaml_file import load_pipeline_file
from stagewise.errors import ConfigError

if TYPE_CHECKING:
    from stagewise.api.pipeline import Pipeline

__all__ = ["DEFAULT_TARGET", "is_target", "load_target"]

DEFAULT_TARGET = "pipeline.yaml"


def is_target(text: str) -> bool:
    """Whether a command-line word names a pipeline (rather than a stage selector)."""
    path = text.split(":", 1)[0] if ".py:" in text else text
    return path.endswith((".yaml", ".yml", ".py")) or ("/" in path and Path(path).is_file())


def load_target(text: str | None) -> Pipeline:
    """Load the pipeline named by ``text`` (default ``pipeline.yaml`` in the current folder).

    Raises:
        ConfigError: the file does not exist, or holds no ``Pipeline`` under that name.
    """
    from stagewise.api.pipeline import Pipeline

    text = text or DEFAULT_TARGET
    file_text, _, name = text.partition(":") if ".py:" in text else (text, "", "")
    path = Path(file_text)
    if not path.exists():
        if text == DEFAULT_TARGET:
            raise ConfigError(
                "no pipeline.yaml in this folder",
                hint="name the pipeline: stagewise COMMAND path/to/pipeline.yaml (or file.py[:name])",
            )
        raise ConfigError(f"{file_text}: file not found")
    if path.suffix != ".py":
        return Pipeline.from_model(load_pipeline_file(path))
    folder = path.absolute().parent
    put_first_on_path(folder)
    try:
        module = import_file(path.absolute(), folder)
    except Exception as exc:
        raise ConfigError(f"{file_text}: import failed: {type(exc).__name__}: {exc}") from exc
    attr = name or "pipeline"
    found = getattr(module, attr, None)
    if not isinstance(found, Pipeline):
        pipelines = [k for k, v in vars(module).items() if isinstance(v, Pipeline)]
        hint = (
            f"pipelines in that file: {', '.join(pipelines)}"
            if pipelines
            else "define pipeline = Pipeline([...]) at module level"
        )
        raise ConfigError(f"{file_text}: no Pipeline named '{attr}'", hint=hint)
    return found
