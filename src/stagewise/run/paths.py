"""Where each item's files are: rendering output and source templates for tags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stagewise.model.pipeline import Link, PipelineModel
from stagewise.model.templates import Template, resolve_str
from stagewise.validate import asset_handler_name

__all__ = ["AssetPaths"]


class AssetPaths:
    """Renders the files of outputs and sources of one pipeline, with handlers resolved once."""

    def __init__(self, model: PipelineModel) -> None:
        self.model = model
        self._paths = {name: str(root) for name, root in model.paths.items()}
        self._roots = tuple(str(r) for r in model.allowed_roots())
        self._source_roots = (str(model.base_dir), *self._roots)
        self._base, self._output = str(model.base_dir), str(model.output)
        self._tag_names = {q: n.tag_name for q, n in model.nodes.items()}
        self._handlers: dict[tuple[str, str], Any] = {}

    def template(self, link: Link) -> Template:
        """The parsed template of a stage output or a source."""
        return self.model.templates[(link.producer or "", link.name)]

    def handler(self, link: Link) -> Any:
        """The handler name (or object) of a stage output or a source."""
        key = (link.producer or "", link.name)
        if key not in self._handlers:
            asset = self.model.link_asset(link)
            self._handlers[key] = asset_handler_name(self.model, asset.template, asset.handler)
        return self._handlers[key]

    def path(self, link: Link, tags: Mapping[str, Any]) -> Path:
        """The file of ``link`` for an item with ``tags`` (extra tags are ignored)."""
        return Path(self.path_str(link, tags))

    def path_str(self, link: Link, tags: Mapping[str, Any]) -> str:
        """The file of ``link`` as a string (the hot path of planning: no ``Path`` objects)."""
        template = self.template(link)
        if link.producer is None:
            rendered = template.render(tags, self._paths)
            return resolve_str(rendered, default_root=self._base, allowed_roots=self._source_roots)
        full = {**tags, "stage": self._tag_names[link.producer]}
        return resolve_str(
            template.render(full, self._paths), default_root=self._output, allowed_roots=self._roots
        )

    def output_link(self, qname: str, output: str) -> Link:
        """The link naming one output of a stage."""
        return Link(qname, output)
