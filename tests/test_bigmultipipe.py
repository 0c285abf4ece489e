"""BigMultiPipe's own example, rebuilt as one stagewise stage and run through the command line.

The example (bigmultipipe docs, "Example"): ten files ``big_array_{i}.npy`` holding
``i + np.zeros((1000, 2000))``; a pre-processing step rejects the arrays whose ``data[0, 0]``
equals ``reject_value=2``; the processing step multiplies by 10; the array whose ``data[0, 0]``
equals ``boost_target=3`` is boosted by ``boost_amount=5`` afterwards; each surviving file gets
metadata ``{'median': ..., 'average': ...}``. Here the rejection is a ``pre`` function (the
example's ``reject``, verbatim), the body multiplies and boosts, ``Result`` carries the metadata,
and the three keywords are stage parameters set in the pipeline file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import Project

STAGES = '''
import numpy as np

from stagewise import Result, stage


def reject(data, reject_value=None, **kwargs):
    """Example pre-processing function to reject data"""
    if reject_value is None:
        return data
    if data[0,0] == reject_value:
        # --> Return data=None to reject data
        return None
    return data


@stage(
    inputs={"data": "big_array"},
    outputs={"bmp": "bmp/big_array_{i}_bmp.npy"},
    over=("i",),
    pre=[reject],
)
def bmp(data, *, reject_value: int | None = None, boost_target: int | None = None, boost_amount: int = 0):
    """Multiply by ten, boost the target array, and record its median and average.

    Args:
        reject_value: arrays whose first value is this are rejected (by the pre function).
        boost_target: the array whose first value is this is boosted after processing.
        boost_amount: how much the target array is boosted by.
    """
    flag_to_boost_later = boost_target is not None and data[0, 0] == boost_target
    # Processing step
    data = data * 10
    # Post-processing steps
    if flag_to_boost_later:
        data = data + boost_amount
    return Result(data, meta={"median": float(np.median(data)), "average": float(np.average(data))})
'''

PIPELINE = """
pipeline: bigmultipipe_demo
stages_from: [stages.py]
output: out
sources:
  big_array: "raw/big_array_{i}.npy"
dims: {i: 10}
params:
  bmp.reject_value: 2
  bmp.boost_target: 3
  bmp.boost_amount: 5
"""

# The example's printed result: (input, output, metadata) of every file that survived.
DOCUMENTED = [
    ("big_array_0.npy", "big_array_0_bmp.npy", {"median": 0.0, "average": 0.0}),
    ("big_array_1.npy", "big_array_1_bmp.npy", {"median": 10.0, "average": 10.0}),
    ("big_array_3.npy", "big_array_3_bmp.npy", {"median": 35.0, "average": 35.0}),
    ("big_array_4.npy", "big_array_4_bmp.npy", {"median": 40.0, "average": 40.0}),
    ("big_array_5.npy", "big_array_5_bmp.npy", {"median": 50.0, "average": 50.0}),
    ("big_array_6.npy", "big_array_6_bmp.npy", {"median": 60.0, "average": 60.0}),
    ("big_array_7.npy", "big_array_7_bmp.npy", {"median": 70.0, "average": 70.0}),
    ("big_array_8.npy", "big_array_8_bmp.npy", {"median": 80.0, "average": 80.0}),
    ("big_array_9.npy", "big_array_9_bmp.npy", {"median": 90.0, "average": 90.0}),
]


@pytest.fixture
def demo(project: Project) -> Project:
    """The example's ten input files, and the stage that processes them."""
    raw = project.root / "raw"
    raw.mkdir()
    for i in range(10):
        np.save(raw / f"big_array_{i}.npy", i + np.zeros((1000, 2000)))
    project.stages(STAGES)
    project.pipeline(PIPELINE)
    return project


def index_of(name: str) -> int:
    return int(name.removeprefix("big_array_").split("_")[0].removesuffix(".npy"))


def run_json(project: Project, *args: str) -> Any:
    result = project.cli(*args, "--format", "json")
    assert result.code == 0, result.describe()
    return json.loads(result.stdout)


@pytest.mark.slow
def test_bigmultipipe_example_gives_the_documented_outputs_metadata_and_one_rejection(demo: Project) -> None:
    result = demo.cli("run", "-j", "2")

    assert result.code == 0, result.describe()
    out: Path = demo.root / "out" / "bmp"
    assert sorted(p.name for p in out.iterdir()) == sorted(name for _, name, _ in DOCUMENTED)
    for _, name, meta in DOCUMENTED:
        data = np.load(out / name)
        assert data.shape == (1000, 2000)
        assert np.all(data == meta["median"]), name  # every value of the output is its median here

    rows = run_json(demo, "meta", "bmp")
    expected = [{"i": index_of(inp), **meta} for inp, _, meta in DOCUMENTED]
    assert rows == expected

    status = next(row for row in run_json(demo, "status") if row["stage"] == "bmp")
    assert (status["total"], status["done"], status["rejected"], status["failed"]) == (10, 9, 1, 0), status
    assert list(status["rejected_reasons"].values()) == [1]
    assert "reject" in next(iter(status["rejected_reasons"])), status  # names the pre function
    assert status["would_run"] == 0, status  # a rejection is a result: nothing left to redo
