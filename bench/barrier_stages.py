"""Stages of ``stage_barrier.py``: two 1:1 stages whose items sleep one second each."""

from __future__ import annotations

import time

from stagewise import stage


@stage(inputs={"x": "raw"}, outputs={"y": "a/{i}.txt"}, over=("i",))
def slow_a(x: str) -> str:
    time.sleep(1.0)
    return x


@stage(inputs={"y": "slow_a.y"}, outputs={"z": "b/{i}.txt"}, over=("i",))
def slow_b(y: str) -> str:
    time.sleep(1.0)
    return y
