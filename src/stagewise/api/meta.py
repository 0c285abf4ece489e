"""Item metadata of a stage as flat rows: the item's tags, then what ``Result(meta=...)`` recorded.

Shared by ``stagewise meta`` and ``Pipeline.meta`` so that both give the same rows in the same
order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stagewise.errors import SelectionError
from stagewise.run.task import item_key

if TYPE_CHECKING:
    from stagewise.api.session import Session
    from stagewise.model.pipeline import PipelineModel

__all__ = ["meta_rows", "resolve_stage"]


def resolve_stage(model: PipelineModel, name: str) -> str:
    """The qualified name of the stage called ``name`` (``stage``, ``group:stage``, unique bare name).

    Raises:
        SelectionError: no such stage (with the closest name), or a bare name several groups use.
    """
    from stagewise._suggest import did_you_mean

    qname = model.find_stage(name)
    if qname is not None:
        return qname
    same = [q for q, node in model.nodes.items() if node.stage.name == name]
    if len(same) > 1:
        raise SelectionError(
            f"stage name {name!r} is used in several groups: {', '.join(same)}",
            hint=f"name one of them, e.g. {same[0]}",
        )
    known = model.stage_names()
    raise SelectionError(
        f"unknown stage {name!r}; known: {', '.join(known) or 'none'}",
        hint=did_you_mean(name, known),
    )


def meta_rows(session: Session, qname: str) -> list[dict[str, Any]]:
    """The metadata of every done item of stage ``qname``, one flat row per item.

    Each row holds the item's tags (in the stage's dim order), then its metadata keys in the
    order the state store keeps them (it stores metadata as canonical JSON, so sorted by
    name). A metadata key equal to a tag name is renamed ``meta.KEY``
    so that it cannot hide the tag. Rows follow the stage's enumeration order; failed and
    rejected items, items never run, and records of items no longer in the pipeline (a sim
    removed from a split) are left out.

    Args:
        session: the session whose output root holds the state store.
        qname: the stage's qualified name (see `resolve_stage`).
    """
    model = session.model
    node = model.nodes[qname]
    with session.open_store(readonly=True) as store:
        records = store.get_items(qname)
    done = {key: record for key, record in records.items() if record.status == "done"}
    rows: list[dict[str, Any]] = []
    if not done:
        return rows
    for values in model.dims.enumerate(node.dims, splits=node.stage.splits):
        record = done.get(item_key(values))
        if record is None:
            continue
        row: dict[str, Any] = dict(zip(node.dims, values, strict=True))
        for key, value in (record.meta or {}).items():
            row[f"meta.{key}" if key in node.dims else key] = value
        rows.append(row)
    return rows
