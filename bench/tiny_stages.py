"""The stage of W2 and W3: read a tiny text file, write its length (one 1:1 stage over dim ``i``).

An importable module, so that workers import the stage by reference, as with a project's
``stages.py``.
"""

from __future__ import annotations

from stagewise import stage


@stage(inputs={"text": "raw"}, outputs={"length": "len/{i:06d}.txt"}, over=("i",))
def length(text: str) -> str:
    return str(len(text))
