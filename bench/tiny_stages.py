"""The stage of W2 and W3: read a tiny text file, write its length (one 1:1 stage over dim ``i``).

An importable module, so that workers import the stage by reference, as with a project's
``stages.py``.
"""

from __future__ import annotations

from pathlib import Path

from stagewise import Pipeline, stage


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i:06d}.txt"}, over=("i",))
def length(text: str) -> str:
    return str(len(text))


def pipeline(raw: Path, out: Path, n: int, name: str) -> Pipeline:
    """``length`` over ``n`` files ``raw/000000.txt``..., outputs under ``out``."""
    return Pipeline(
        [length],
        sources={"raw": "{data}/{i:06d}.txt"},
        paths={"data": raw},
        dims={"i": n},
        output=out,
        name=name,
    )
