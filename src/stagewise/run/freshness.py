"""The up-to-date rule (SPEC 6): is an item's record still valid, and if not, why not.

An item is up to date when its record is done (or rejected) and its code, version, parameters
and input fingerprints equal the current ones, and its outputs still exist with their recorded
fingerprints. Every "stale" carries its reasons, so ``status`` and ``--dry-run`` can explain.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.model.convert import canonical_json, to_plain
from stagewise.model.pipeline import Node, PipelineModel
from stagewise.state.codefp import CodeFingerprint, changed_parts, code_fingerprint
from stagewise.state.filehash import FileFingerprinter, StatKey
from stagewise.state.records import ItemRecord, dumps_json, json_text

__all__ = ["FileIndex", "StageFingerprint", "collection_digest", "stage_fingerprint", "stale_reasons"]


@dataclass(frozen=True)
class StageFingerprint:
    """What every item of a stage shares: its code and its parameters."""

    code: CodeFingerprint
    params: dict[str, Any]
    params_hash: str


def stage_fingerprint(model: PipelineModel, node: Node, params: Mapping[str, Any]) -> StageFingerprint:
    """The code fingerprint (project code reached from the body and hooks) and parameter hash."""
    stage = node.stage
    module_file = getattr(
        __import__("sys").modules.get(getattr(stage.fn, "__module__", "")), "__file__", None
    )
    dirs = [model.base_dir, *([Path(module_file).parent] if module_file else [])]
    code = code_fingerprint(
        [stage.fn, *stage.pre, *stage.post], project_dirs=dirs, mode=stage.fingerprint, version=stage.version
    )
    plain = {k: to_plain(v) for k, v in params.items()}
    digest = hashlib.blake2b(canonical_json(plain).encode(), digest_size=16).hexdigest()
    return StageFingerprint(code, plain, digest)


def collection_digest(entries: Iterable[tuple[Any, str | None]]) -> str:
    """One digest for a collection input: its keys and each member's digest (adding a sim changes it)."""
    h = hashlib.blake2b(digest_size=16)
    for key, digest in entries:
        h.update(f"{key!r}={digest}\n".encode())
    return h.hexdigest()


class FileIndex:
    """Digests of files anywhere under the pipeline's roots, through the stat cache."""

    def __init__(self, model: PipelineModel, files: FileFingerprinter) -> None:
        self.files = files
        roots = {"output": model.output, "base": model.base_dir}
        roots.update({f"paths.{name}": root for name, root in model.paths.items()})
        # longest root first: the output root usually lies inside the pipeline's folder
        self._roots = sorted(((os.fspath(r), rid) for rid, r in roots.items()), key=lambda x: -len(x[0]))

    def locate(self, path: str | Path) -> tuple[str, str]:
        """The root id and relative path of a file (``("output", "sky/0001.npy")``)."""
        text = os.fspath(path)
        for root, rid in self._roots:
            if text.startswith(root) and text[len(root) : len(root) + 1] == os.sep:
                return rid, text[len(root) + 1 :]
        return "/", text

    def digest_key_at(self, rid: str, rel: str) -> tuple[str | None, StatKey | None]:
        """The digest of a file and the stat key proving it (see `FileFingerprinter.fingerprint_key`)."""
        if rid == "/":
            return self.digest_at(rid, rel), None
        return self.files.fingerprint_key(rid, rel)

    def digest_at(self, rid: str, rel: str) -> str | None:
        """The digest of ``rel`` under root id ``rid`` (``/``: an absolute path outside the roots)."""
        if rid == "/":
            from stagewise.state.filehash import hash_file

            return hash_file(rel) if os.path.exists(rel) else None
        return self.files.fingerprint(rid, rel)


def _plain_text(value: str) -> bool:
    """Whether JSON writes ``value`` as is (no quote, backslash or control character to escape)."""
    return value.isprintable() and '"' not in value and "\\" not in value


def canonical_inputs(inputs: Mapping[str, str | None]) -> str:
    """``dumps_json(inputs)`` for ``{name: digest}``, without the encoder in the common case."""
    if all(v is None or _plain_text(v) for v in inputs.values()):
        parts = (f'"{k}":' + ("null" if v is None else f'"{v}"') for k, v in sorted(inputs.items()))
        return "{" + ",".join(parts) + "}"
    return dumps_json(inputs)


def canonical_outputs(outputs: Mapping[str, str | None], paths: Mapping[str, str]) -> str:
    """``dumps_json({name: [path, digest]})``, without the encoder in the common case."""
    if all(d is not None and _plain_text(d) and _plain_text(paths[n]) for n, d in outputs.items()):
        return "{" + ",".join(f'"{n}":["{paths[n]}","{d}"]' for n, d in sorted(outputs.items())) + "}"
    return dumps_json({n: [paths[n], d] for n, d in outputs.items()})


def stale_reasons(
    record: ItemRecord | None,
    fp: StageFingerprint,
    inputs: Mapping[str, str | None],
    outputs: Mapping[str, str | None],
    output_paths: Mapping[str, str],
) -> list[str]:
    """Why an item must run; empty when it is up to date.

    Args:
        record: the item's record, or None when it never ran.
        fp: the stage's current code and parameter fingerprint.
        inputs: current digest of each input (None: missing).
        outputs: current digest of each output file (None: missing).
        output_paths: current path of each output relative to the output root.
    """
    if record is None:
        return ["new"]
    if record.status == "failed":
        return ["previously failed"]
    if (
        record.code_fp == fp.code.digest
        and record.params_hash == fp.params_hash
        and json_text(record, "inputs") == canonical_inputs(inputs)
        and (
            record.status != "done"
            or json_text(record, "outputs") == canonical_outputs(outputs, output_paths)
        )
    ):
        return []  # the common case: compared as canonical JSON text, nothing decoded
    old_inputs = record.inputs or {}
    recorded = record.outputs or {}
    reasons = []
    if record.code_fp != fp.code.digest:
        changed = changed_parts(record.code_parts or {}, fp.code.parts)
        if "<version>" in changed:
            changed.remove("<version>")
            reasons.append("version changed")
        if changed or not reasons:
            reasons.append("code changed: " + (", ".join(changed) if changed else "stage code"))
    if record.params_hash != fp.params_hash:
        old_params = record.params or {}
        names = sorted(
            k
            for k in set(old_params) | set(fp.params)
            if old_params.get(k, _MISSING) != fp.params.get(k, _MISSING)
        )
        reasons.append("parameters changed: " + (", ".join(names) if names else "values"))
    changed_inputs = sorted(
        name for name in set(old_inputs) | set(inputs) if old_inputs.get(name) != inputs.get(name)
    )
    if changed_inputs:
        reasons.append("input changed: " + ", ".join(changed_inputs))
    if record.status == "done":
        for name, digest in outputs.items():
            old_out = recorded.get(name)
            if digest is None:
                reasons.append(f"output missing: {name}")
            elif old_out is None or old_out[0] != output_paths[name] or old_out[1] != digest:
                reasons.append(f"output modified: {name}")
    return reasons


_MISSING = object()
