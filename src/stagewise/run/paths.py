"""Where each item's files are: rendering output and source templates for tags."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
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
        self._located: dict[Link, tuple[Template, str, dict[str, str] | None, int, str | None]] = {}

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

    def roots(self) -> dict[str, str]:
        """Every root id and its folder: ``output``, ``base`` (the pipeline's folder), ``paths.<name>``."""
        roots = {"output": self._output, "base": self._base}
        roots.update({f"paths.{name}": root for name, root in self._paths.items()})
        return roots

    def locate(self, link: Link, tags: Mapping[str, Any]) -> tuple[str, str]:
        """The root id and the path relative to it of one file, e.g. ``("output", "sky/0001.npy")``.

        Cheaper than :meth:`path_str` and as safe: templates have no ``..`` and tag values no
        separators, so a rendered template cannot leave its root.
        """
        info = self._located.get(link)
        if info is None:
            info = self._located[link] = self._locate_info(link)
        template, rid, paths, strip, stage_tag = info
        if stage_tag is not None:
            tags = {**tags, "stage": stage_tag}
        rel = template.render(tags, paths)[strip:]
        if "//" in rel or "/." in rel or rel.startswith("."):
            rel = os.path.normpath(rel)
        return rid, rel

    def root_id(self, link: Link) -> str:
        """The root id the files of ``link`` are under (``output``, ``base``, ``paths.<name>``)."""
        info = self._located.get(link)
        if info is None:
            info = self._located[link] = self._locate_info(link)
        return info[1]

    def renderer(self, link: Link, dims: Sequence[str]) -> Callable[[Sequence[Any]], str | None] | None:
        """The full path of ``link``'s file from a tuple of values of ``dims``, fast.

        Gives ``roots()[rid] + os.sep + rel`` of :meth:`locate`, or None for a value
        :meth:`locate` would refuse. Returns None when the template needs a tag not in ``dims``.
        """
        template, rid, paths, _, stage_tag = self._located.get(link) or self._locate_info(link)
        constants = {} if stage_tag is None else {"stage": stage_tag}
        prefix = self.roots()[rid] + os.sep
        order = {d: i for i, d in enumerate(dims)}
        return template.positional(order, constants, tail=paths is not None, prefix=prefix)

    def _locate_info(self, link: Link) -> tuple[Template, str, dict[str, str] | None, int, str | None]:
        template = self.template(link)
        root = template.root_field
        stage_tag = self._tag_names[link.producer] if link.producer and "stage" in template.fields else None
        if root is not None and root in self._paths:
            return template, f"paths.{root}", {root: ""}, 1, stage_tag
        return template, "output" if link.producer else "base", None, 0, stage_tag
