"""Running pipelines in-process through the Python API, as a new user would in a notebook.

Stages are defined in this module; each test builds a ``Pipeline`` writing under ``tmp_path``
and checks the files written and their contents.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stagewise
from stagewise import (
    REJECT,
    Asset,
    ConfigError,
    Item,
    Lazy,
    Out,
    Pipeline,
    Reject,
    Result,
    SelectionError,
    StagewiseError,
    group,
    stage,
)

# --- helpers ---------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def files(root: Path) -> list[str]:
    """Every file under ``root`` (posix, relative), hidden ones included, but not stagewise's own."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".stagewise" not in p.relative_to(root).parts
    )


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp*") if p.is_file()]


def failure_reasons(report: Any) -> str:
    return "\n".join(f"{f.stage} {f.item}: {f.reason}\n{f.error or ''}" for f in report.failures)


# --- a user handler, registered at import of the stage module ------------------------------------


class UpperHandler:
    """Writes text upper-cased; reads it back as it is on disk."""

    def read(self, path: Path) -> str:
        return Path(path).read_text()

    def write(self, path: Path, data: Any) -> None:
        Path(path).write_text(str(data).upper())


# A name and extension of our own: the handler registry is process-wide.
stagewise.register_handler("api_upper", UpperHandler, extensions=[".apiup"])


class HalfWriter:
    """A handler whose write leaves half a file and then fails (a full disk, say)."""

    def read(self, path: Path) -> str:
        return Path(path).read_text()

    def write(self, path: Path, data: Any) -> None:
        Path(path).write_text(str(data)[:3])
        raise OSError("no space left on device")


# --- stages ----------------------------------------------------------------------------------------


@stage(outputs={"tags": "tagged/{split}/{sim:04d}.json"}, over=("split", "sim"))
def tagged(item: Item):
    return {"tags": item.tags, "split": item.split, "sim": item.sim}


@stage(outputs={"tags": "simonly/{split}/{sim}.json"}, over=("sim",))
def sim_only(item: Item):
    return item.tags


@stage(outputs={"cell": "grid/{freq}GHz/chunk{chunk}.json"}, over=("freq", "chunk"))
def grid(item: Item):
    return {"freq": item.freq, "chunk": item.chunk}


@stage(inputs={"sims": "tagged.tags"}, outputs={"seen": "per_split/{split}.json"}, over=("split",))
def reduce_split(item: Item, sims):
    try:
        sims[99] = None
        mutable = True
    except TypeError:
        mutable = False
    first = next(iter(sims.values()))
    return {
        "split": item.split,
        "keys": list(sims),
        "key_types": sorted({type(k).__name__ for k in sims}),
        "data": [h.read() for h in sims.values()],
        "paths": [str(h.path) for h in sims.values()],
        "mutable": mutable,
        "handle_has_write": hasattr(first, "write"),
    }


@stage(inputs={"sims": "tagged.tags"}, outputs={"seen": "all_keys.json"})
def reduce_all(sims):
    return {"keys": [list(k) for k in sims]}


@stage(outputs={"v": "fs/{freq}/{split}/{sim}.json"}, over=("freq", "sim"))
def freq_sim(item: Item):
    return item.tags


@stage(inputs={"v": "freq_sim.v"}, outputs={"keys": "fs_keys/{split}.json"}, over=("split",))
def freq_sim_keys(v):
    return [list(k) for k in v]


@stage(outputs={"sky": "sky/{split}/{sim:04d}.npy"}, over=("split", "sim"))
def sky(item: Item, *, npix: int = 4):
    return np.full(npix, float(item.sim))


@stage(inputs={"sky": "sky.sky"}, outputs={"stats": "stats/{split}/{sim}.json"}, over=("split", "sim"))
def sky_stats(sky):
    return {"type": type(sky).__name__, "sum": float(sky.sum()), "size": int(sky.size)}


@stage(inputs={"sky": "sky.sky"}, outputs={"seen": "lazy/{split}/{sim}.json"}, over=("split", "sim"))
def lazy_reader(sky: Lazy):
    return {
        "type": type(sky).__name__,
        "path": str(sky.path),
        "sum": float(sky.read().sum()),
        "has_write": hasattr(sky, "write"),
    }


@stage(outputs={"conf": "config.json"})
def config():
    return {"offset": 100}


@stage(
    inputs={"mask": "mask", "conf": "config.conf"},
    outputs={"v": "broadcast/{split}/{sim}.json"},
    over=("split", "sim"),
)
def broadcast(item: Item, mask, conf):
    return {"sim": item.sim, "mask": mask, "offset": conf["offset"]}


@stage(inputs={"gain": "gain"}, outputs={"v": "gained/{freq}.json"}, over=("freq",))
def gained(item: Item, gain):
    return {"freq": item.freq, "gain": gain}


@stage(inputs={"gain": "gain"}, outputs={"v": "gains.json"})
def all_gains(gain):
    return {str(k): h.read() for k, h in gain.items()}


@stage(outputs={"d": "onedict/{sim}.json"}, over=("sim",))
def one_dict(item: Item):
    return {"alpha": item.sim, "beta": [1, 2]}


@stage(outputs={"alpha": "two/{sim}_a.json", "beta": "two/{sim}_b.txt"}, over=("sim",))
def two_outputs(item: Item):
    return {"alpha": {"sim": item.sim}, "beta": f"sim={item.sim}"}


@stage(outputs={"alpha": "bad/{sim}_a.json", "beta": "bad/{sim}_b.json"}, over=("sim",))
def wrong_keys(item: Item):
    if item.sim == 0:
        return {"alpha": 1}  # beta missing
    return {"alpha": 1, "beta": 2, "gamma": 3}  # gamma unknown


@stage(outputs={"v": "forgot/{sim}.json"}, over=("sim",))
def forgot_return(item: Item):
    _ = {"sim": item.sim}


@stage(outputs={"v": "measured/{split}/{sim}.json"}, over=("split", "sim"))
def measured(item: Item):
    return Result({"sim": item.sim}, meta={"rms": 0.5 + item.sim, "label": f"s{item.sim}"})


@stage(inputs={"v": "measured.v"}, outputs={"v": "uses_meta/{split}/{sim}.json"}, over=("split", "sim"))
def uses_meta(item: Item, v):
    return {"upstream_rms": item.meta("measured")["rms"], "v": v}


@stage(outputs={"a": "self/{sim}_a.json", "b": "self/{sim}_b.txt"}, over=("sim",))
def writes_itself(item: Item, out: Out):
    out["a"].write({"sim": item.sim, "handle_has_read": hasattr(out["a"], "read")})
    out["b"].write(f"sim {item.sim}")
    return Result(None, meta={"wrote": 2})


@stage(outputs={"a": "half_self/{sim}_a.json", "b": "half_self/{sim}_b.json"}, over=("sim",))
def writes_one_of_two(item: Item, out: Out):
    out["a"].write({"sim": item.sim})


@stage(outputs={"v": "screen/{sim}.json"}, over=("sim",))
def screen(item: Item):
    if item.sim == 1:
        return REJECT
    if item.sim == 2:
        raise Reject("too noisy")
    return {"sim": item.sim}


def drop_three(data):
    return None if data["sim"] == 3 else data


@stage(inputs={"v": "screen.v"}, outputs={"w": "follow/{sim}.json"}, over=("sim",), pre=[drop_three])
def follow(v):
    return v


@stage(inputs={"w": "follow.w"}, outputs={"keys": "gathered.json"})
def gather(w):
    return sorted(w)


@stage(outputs={"v": "numbers/{sim}.json"}, over=("sim",))
def numbers(item: Item):
    return [item.sim, item.sim + 1]


def scale_pre(data, *, factor=1):
    return [x * factor for x in data]


@stage(inputs={"v": "numbers.v"}, outputs={"v": "scaled/{sim}.json"}, over=("sim",), pre=[scale_pre])
def scaled(v, *, factor: int = 10, offset: int = 0):
    return [x + offset for x in v]


def combine_pre(data, *, offset=0):
    return {"first": data["first"], "second": [x + offset for x in data["second"]]}


@stage(
    inputs={"first": "numbers.v", "second": "numbers.v"},
    outputs={"v": "combined/{sim}.json"},
    over=("sim",),
    pre=[combine_pre],
)
def combined(first, second, *, offset: int = 0):
    return {"first": first, "second": second}


def wrap_post(data, *, label="none"):
    return {"label": label, "wrapped": data}


@stage(inputs={"v": "numbers.v"}, outputs={"v": "posted/{sim}.json"}, over=("sim",), post=[wrap_post])
def posted(v, *, label: str = "x"):
    return sum(v)


SETUP_CALLS: list[int] = []


@stage(outputs={"p": "predicted/{sim}.json"}, over=("sim",))
class Predict:
    def __init__(self, *, k: int = 1):
        self.k = k

    def setup(self):
        SETUP_CALLS.append(self.k)
        self.model = 10 * self.k

    def process(self, item: Item):
        return {"sim": item.sim, "value": self.model + item.sim}


@stage(outputs={"v": "fragile/{sim}.json"}, over=("sim",))
def fragile(item: Item, *, bad: int = 2):
    if item.sim == bad:
        raise RuntimeError(f"boom at sim {item.sim}")
    return {"sim": item.sim}


@stage(inputs={"v": "fragile.v"}, outputs={"v": "after_fragile/{sim}.json"}, over=("sim",))
def after_fragile(v):
    return v


@stage(outputs={"v": "root2/{sim}.json"}, over=("sim",))
def root2(item: Item):
    return item.sim


@stage(inputs={"v": "root2.v"}, outputs={"v": "independent/{sim}.json"}, over=("sim",))
def independent(v):
    return v


@stage(outputs={"v": "chain_a/{sim}.json"}, over=("sim",))
def chain_a(item: Item):
    return item.sim


@stage(inputs={"v": "chain_a.v"}, outputs={"v": "chain_b/{sim}.json"}, over=("sim",))
def chain_b(v):
    return v + 1


@stage(inputs={"v": "chain_b.v"}, outputs={"v": "chain_c/{sim}.json"}, over=("sim",))
def chain_c(v):
    return v + 1


@stage(outputs={"v": "side/{sim}.json"}, over=("sim",))
def side(item: Item):
    return item.sim


@stage(outputs={"v": "g1/{sim}.json"}, over=("sim",))
def g_first(item: Item):
    return item.sim


@stage(inputs={"v": "g_first.v"}, outputs={"v": "g2/{sim}.json"}, over=("sim",))
def g_second(v):
    return v * 2


@stage(inputs={"mask": "mask"}, outputs={"v": "masked/{sim}.json"}, over=("sim",))
def masked(item: Item, mask):
    return {"sim": item.sim, "mask": mask}


@stage(outputs={"v": "cube/{split}/{freq}/{sim}.json"}, over=("split", "sim", "freq"))
def cube(item: Item):
    return item.tags


@stage(outputs={"v": "params.json"})
def show_params(*, x: int = 1, y: float = 0.5, name: str = "a"):
    return {"x": x, "y": y, "name": name}


@stage(outputs={"a": "upper/{sim}.apiup", "b": Asset("upper/{sim}.dat", handler="api_upper")}, over=("sim",))
def shout(item: Item):
    return {"a": f"hello {item.sim}", "b": f"bye {item.sim}"}


@stage(outputs={"v": Asset("half/{sim}.txt", handler=HalfWriter())}, over=("sim",))
def half_written(item: Item):
    return f"sim {item.sim} and more text"


@stage(outputs={"v": "raises/{sim}.json"}, over=("sim",))
def always_raises(item: Item):
    raise ValueError("cannot compute")


# --- items -----------------------------------------------------------------------------------------


def test_splits_with_counts_and_explicit_sims_give_one_item_per_split_and_sim(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([tagged], splits={"train": [0, 5, 7], "test": 2}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert files(out) == [
        "tagged/test/0000.json",
        "tagged/test/0001.json",
        "tagged/train/0000.json",
        "tagged/train/0005.json",
        "tagged/train/0007.json",
    ]
    assert read_json(out / "tagged/train/0005.json") == {
        "tags": {"split": "train", "sim": 5},
        "split": "train",
        "sim": 5,
    }


def test_stage_over_sim_alone_is_also_over_split(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([sim_only], splits={"train": 2, "test": [4]}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert files(out) == ["simonly/test/4.json", "simonly/train/0.json", "simonly/train/1.json"]
    assert read_json(out / "simonly/test/4.json") == {"split": "test", "sim": 4}


def test_user_dim_list_and_count_dim_give_their_product(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([grid], dims={"freq": [30, 100, 353], "chunk": 4}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert files(out) == sorted(f"grid/{f}GHz/chunk{c}.json" for f in (30, 100, 353) for c in range(4))
    assert read_json(out / "grid/353GHz/chunk3.json") == {"freq": 353, "chunk": 3}


# --- inputs ----------------------------------------------------------------------------------------


def test_per_item_input_arrives_as_data_read_by_its_handler(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([sky, sky_stats], splits={"train": [2, 3]}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "stats/train/3.json") == {"type": "ndarray", "sum": 12.0, "size": 4}
    assert np.array_equal(np.load(out / "sky/train/0002.npy"), np.full(4, 2.0))


def test_lazy_input_is_a_read_only_handle_with_read_and_path(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([sky, lazy_reader], splits={"test": [1]}, output=out).run()

    assert report.ok, failure_reasons(report)
    seen = read_json(out / "lazy/test/1.json")
    assert seen["type"] == "Lazy"
    assert Path(seen["path"]) == out / "sky/test/0001.npy"
    assert seen["sum"] == 4.0
    assert seen["has_write"] is False


def test_collection_with_one_extra_dim_is_keyed_by_tag_value_in_order(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([tagged, reduce_split], splits={"train": [7, 0, 5], "test": 2}, output=out)
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    seen = read_json(out / "per_split/train.json")
    assert seen["keys"] == [0, 5, 7]
    assert seen["key_types"] == ["int"]
    assert [d["sim"] for d in seen["data"]] == [0, 5, 7]
    assert [Path(p) for p in seen["paths"]] == [out / f"tagged/train/{s:04d}.json" for s in (0, 5, 7)]
    assert seen["mutable"] is False
    assert seen["handle_has_write"] is False
    assert read_json(out / "per_split/test.json")["keys"] == [0, 1]


def test_collection_with_several_extra_dims_is_keyed_by_tuples_in_order(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([tagged, reduce_all], splits={"train": [5, 0], "test": 1}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "all_keys.json")["keys"] == [["test", 0], ["train", 0], ["train", 5]]


def test_collection_tuple_keys_follow_the_producers_dim_order(tmp_path):
    # freq_sim is over (freq, sim): its dims are (freq, split, sim), so a per-split consumer sees
    # (freq, sim) keys, not the pipeline's (sim, freq) order.
    out = tmp_path / "out"
    pipeline = Pipeline([freq_sim, freq_sim_keys], splits={"train": 2}, dims={"freq": [100, 30]}, output=out)
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "fs_keys/train.json") == [[30, 0], [30, 1], [100, 0], [100, 1]]


def test_dimless_source_and_dimless_output_are_broadcast_to_every_item(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/mask.json").write_text("[1, 0, 1]")
    out = tmp_path / "out"
    pipeline = Pipeline(
        [config, broadcast],
        sources={"mask": "{data}/mask.json"},
        paths={"data": tmp_path / "raw"},
        splits={"train": 2, "test": 1},
        output=out,
    )
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    for split, sim in [("train", 0), ("train", 1), ("test", 0)]:
        assert read_json(out / f"broadcast/{split}/{sim}.json") == {
            "sim": sim,
            "mask": [1, 0, 1],
            "offset": 100,
        }
    assert pipeline.asset("mask").read() == [1, 0, 1]


def test_source_with_a_dim_in_its_template_is_read_per_item_or_as_a_collection(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for freq, gain in [(30, 1.5), (100, 2.0)]:
        (raw / f"gain_{freq}.json").write_text(json.dumps(gain))
    out = tmp_path / "out"
    pipeline = Pipeline(
        [gained, all_gains],
        sources={"gain": "{data}/gain_{freq}.json"},
        paths={"data": raw},
        dims={"freq": [100, 30]},
        output=out,
    )
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "gained/30.json") == {"freq": 30, "gain": 1.5}
    assert read_json(out / "gained/100.json") == {"freq": 100, "gain": 2.0}
    assert list(read_json(out / "gains.json").items()) == [("30", 1.5), ("100", 2.0)]
    gains = dict(pipeline.asset("gain").items())
    assert sorted(gains) == [30, 100]
    assert gains[30].read() == 1.5


# --- return values ---------------------------------------------------------------------------------


def test_single_output_takes_the_returned_dict_as_its_data(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([one_dict], dims={"sim": 1}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "onedict/0.json") == {"alpha": 0, "beta": [1, 2]}


def test_several_outputs_are_written_from_a_dict_keyed_by_output_name(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([two_outputs], dims={"sim": 2}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "two/1_a.json") == {"sim": 1}
    assert (out / "two/1_b.txt").read_text() == "sim=1"


def test_several_outputs_with_a_missing_or_unknown_key_fail_naming_stage_and_keys(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([wrong_keys], dims={"sim": 2}, output=out).run()

    assert not report.ok
    assert len(report.failures) == 2
    by_item = {f.item: f.reason for f in report.failures}
    missing = next(r for item, r in by_item.items() if "sim=0" in item)
    extra = next(r for item, r in by_item.items() if "sim=1" in item)
    assert "wrong_keys" in missing and "beta" in missing
    assert "wrong_keys" in extra and "gamma" in extra
    assert files(out) == []


def test_stage_returning_none_fails_with_an_error_naming_the_stage(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([forgot_return], dims={"sim": 1}, output=out).run()

    assert not report.ok
    (failure,) = report.failures
    assert failure.stage == "forgot_return"
    assert "forgot_return" in failure.reason
    assert "None" in failure.reason
    assert files(out) == []


def test_result_meta_reaches_downstream_item_meta_and_pipeline_meta(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([measured, uses_meta], splits={"train": 2}, output=out)
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "measured/train/1.json") == {"sim": 1}
    assert read_json(out / "uses_meta/train/1.json") == {"upstream_rms": 1.5, "v": {"sim": 1}}
    rows = pipeline.meta("measured")
    if not isinstance(rows, list):  # a DataFrame when pandas is installed
        rows = rows.to_dict("records")
    assert rows == [
        {"split": "train", "sim": 0, "rms": 0.5, "label": "s0"},
        {"split": "train", "sim": 1, "rms": 1.5, "label": "s1"},
    ]
    assert [list(r)[:2] for r in rows] == [["split", "sim"]] * 2  # tags first, then metadata


def test_meta_is_a_list_of_dicts_without_pandas(tmp_path):
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pandas is installed: meta is a DataFrame")
    pipeline = Pipeline([measured], splits={"test": 1}, output=tmp_path / "out")
    pipeline.run()

    assert pipeline.meta("measured") == [{"split": "test", "sim": 0, "rms": 0.5, "label": "s0"}]


def test_out_handles_write_the_outputs_and_have_no_read(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([writes_itself], dims={"sim": 2}, output=out)
    report = pipeline.run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "self/1_a.json") == {"sim": 1, "handle_has_read": False}
    assert (out / "self/1_b.txt").read_text() == "sim 1"
    assert pipeline.meta("writes_itself") == [{"sim": 0, "wrote": 2}, {"sim": 1, "wrote": 2}]


def test_out_stage_that_leaves_an_output_unwritten_fails_naming_it(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([writes_one_of_two], dims={"sim": 1}, output=out).run()

    assert not report.ok
    (failure,) = report.failures
    assert "writes_one_of_two" in failure.reason
    assert re.search(r"\bb\b", failure.reason)
    assert not (out / "half_self/0_b.json").exists()


# --- rejection -------------------------------------------------------------------------------------


def test_rejected_items_write_nothing_and_vanish_downstream(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([screen, follow, gather], dims={"sim": 5}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert files(out) == [
        "follow/0.json",
        "follow/4.json",
        "gathered.json",
        "screen/0.json",
        "screen/3.json",
        "screen/4.json",
    ]
    # sims 1 and 2 rejected by screen (REJECT, Reject); their per-item consumers "upstream rejected";
    # sim 3 rejected by follow's pre function returning None.
    assert report.counts["screen"]["rejected"] == 2
    assert report.counts["follow"]["rejected"] == 3
    assert report.counts["follow"]["failed"] == 0
    assert read_json(out / "gathered.json") == [0, 4]


# --- pre / post ------------------------------------------------------------------------------------


def test_pre_gets_the_single_input_and_the_stage_parameters_it_accepts(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([numbers, scaled], dims={"sim": 2}, params={"scaled.offset": 1}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "scaled/1.json") == [11, 21]  # [1, 2] * factor 10, then + offset 1


def test_pre_gets_a_dict_by_name_for_several_inputs(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([numbers, combined], dims={"sim": 1}, params={"combined.offset": 5}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert read_json(out / "combined/0.json") == {"first": [0, 1], "second": [5, 6]}


def test_post_transforms_the_output_before_it_is_written(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([numbers, posted], dims={"sim": 2}, output=out).run(params={"posted.label": "y"})

    assert report.ok, failure_reasons(report)
    assert read_json(out / "posted/1.json") == {"label": "y", "wrapped": 3}


# --- class stages and plain calls ------------------------------------------------------------------


def test_class_stage_takes_parameters_in_init_and_sets_up_once_per_parameter_set(tmp_path):
    # serial: setup() runs in this process, where SETUP_CALLS can see it (once per worker process)
    pipeline = Pipeline([Predict], dims={"sim": 3}, output=tmp_path / "out")
    before = len(SETUP_CALLS)

    report = pipeline.run(params={"Predict.k": 3}, executor="serial")
    assert report.ok, failure_reasons(report)
    assert SETUP_CALLS[before:] == [3]
    assert read_json(tmp_path / "out/predicted/2.json") == {"sim": 2, "value": 32}

    report = pipeline.run(params={"Predict.k": 4}, output=tmp_path / "out4", executor="serial")
    assert report.ok, failure_reasons(report)
    assert SETUP_CALLS[before:] == [3, 4]
    assert read_json(tmp_path / "out4/predicted/2.json") == {"sim": 2, "value": 42}


def _model_stage(version: int) -> Any:
    @stage(name="model", outputs={"v": "model/{sim}.json"}, over=("sim",))
    class Model:
        def __init__(self, *, k: int = 1):
            self.k = k

        def setup(self):
            self.version = version

        def process(self, item: Item):
            return {"version": self.version}

    return Model


def test_redefined_class_stage_runs_its_new_code(tmp_path):
    # A notebook user edits a class stage and runs the cell again: the new class must serve items.
    first = Pipeline([_model_stage(1)], dims={"sim": 1}, output=tmp_path / "one")
    assert first.run().ok
    second = Pipeline([_model_stage(2)], dims={"sim": 1}, output=tmp_path / "two")
    assert second.run().ok

    assert read_json(tmp_path / "one/model/0.json") == {"version": 1}
    assert read_json(tmp_path / "two/model/0.json") == {"version": 2}


def test_stage_stays_callable_as_a_plain_function():
    assert tagged.name == "tagged"
    assert tagged.fn(Item({"split": "train", "sim": 3})) == {
        "tags": {"split": "train", "sim": 3},
        "split": "train",
        "sim": 3,
    }
    assert np.array_equal(sky.fn(Item({"split": "a", "sim": 2}), npix=2), [2.0, 2.0])
    assert scaled.fn([1, 2], offset=3) == [4, 5]
    assert _model_stage(5).name == "model"


# --- failures --------------------------------------------------------------------------------------


def test_failed_item_stops_its_downstream_but_not_its_siblings_or_other_branches(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([fragile, after_fragile, root2, independent], dims={"sim": 4}, output=out)
    report = pipeline.run()

    assert not report.ok
    (failure,) = report.failures
    assert failure.stage == "fragile"
    assert "sim=2" in failure.item
    assert "boom at sim 2" in failure.reason
    assert "RuntimeError" in (failure.error or "")
    assert files(out) == sorted(
        [f"fragile/{s}.json" for s in (0, 1, 3)]
        + [f"root2/{s}.json" for s in range(4)]
        + [f"independent/{s}.json" for s in range(4)]
    )


def test_fail_fast_stops_at_the_first_failed_item(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([fragile, after_fragile, root2, independent], dims={"sim": 4}, output=out)
    # serial: items run in order, so "the first failed item" is exact (in parallel, items in
    # flight finish)
    report = pipeline.run(params={"fragile.bad": 1}, fail_fast=True, executor="serial")

    assert not report.ok
    assert files(out) == ["fragile/0.json"]


def test_item_whose_body_raises_leaves_no_file_at_its_output_path(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([always_raises], dims={"sim": 2}, output=out).run()

    assert not report.ok
    assert not (out / "raises/0.json").exists()
    assert temp_files(tmp_path) == []


def test_failed_write_leaves_neither_the_output_nor_a_temporary_file(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([half_written], dims={"sim": 2}, output=out).run()

    assert not report.ok
    assert len(report.failures) == 2
    assert "no space left on device" in report.failures[0].reason
    assert files(out) == []


def test_successful_run_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "out"
    report = Pipeline([numbers, posted, two_outputs, writes_itself, shout], dims={"sim": 3}, output=out).run()

    assert report.ok, failure_reasons(report)
    assert temp_files(out) == []
    assert all(not Path(f).name.startswith(".") for f in files(out))


# --- selectors, filters and parameters -------------------------------------------------------------


def chain_pipeline(out: Path) -> Pipeline:
    return Pipeline([chain_a, chain_b, chain_c, side], dims={"sim": 2}, output=out)


def stages_written(out: Path) -> list[str]:
    return sorted({f.split("/")[0] for f in files(out)})


def test_selectors_choose_a_stage_its_upstream_or_its_downstream(tmp_path):
    pipeline = chain_pipeline(tmp_path / "out")

    assert pipeline.run(["+chain_b"], output=tmp_path / "up").ok
    assert stages_written(tmp_path / "up") == ["chain_a", "chain_b"]

    assert pipeline.run(["chain_b"], output=tmp_path / "up").ok
    assert pipeline.run(["chain_a+"], output=tmp_path / "down").ok
    assert stages_written(tmp_path / "down") == ["chain_a", "chain_b", "chain_c"]
    assert read_json(tmp_path / "down/chain_c/1.json") == 3


def test_selecting_a_stage_whose_producer_outputs_are_missing_suggests_plus_stage(tmp_path):
    pipeline = chain_pipeline(tmp_path / "out")

    with pytest.raises(SelectionError) as caught:
        pipeline.run(["chain_b"])

    message = str(caught.value)
    assert "chain_a" in message
    assert "+chain_b" in message
    assert caught.value.exit_code == 2
    assert files(tmp_path / "out") == []


def test_group_selectors_choose_one_member_or_all(tmp_path):
    grp = group("g", [g_first, g_second])
    pipeline = Pipeline([grp, side], dims={"sim": 1}, output=tmp_path / "out")

    assert pipeline.run(["g:g_first"], output=tmp_path / "one").ok
    assert stages_written(tmp_path / "one") == ["g1"]
    for i, selector in enumerate(["g", "g:all", "g:*"]):
        assert pipeline.run([selector], output=tmp_path / f"all{i}").ok
        assert stages_written(tmp_path / f"all{i}") == ["g1", "g2"]
    assert read_json(tmp_path / "all0/g2/0.json") == 0


def test_unknown_selector_names_the_known_stages_and_the_closest_match(tmp_path):
    pipeline = chain_pipeline(tmp_path / "out")

    with pytest.raises(SelectionError) as caught:
        pipeline.run(["chain_bb"])

    message = str(caught.value)
    assert "chain_bb" in message
    for name in ("chain_a", "chain_b", "chain_c", "side"):
        assert name in message
    assert "did you mean" in message.lower() or "closest" in message.lower()


def test_missing_source_file_is_an_error_naming_it_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline(
        [chain_a, masked],
        sources={"mask": "{data}/mask.json"},
        paths={"data": tmp_path / "raw"},
        dims={"sim": 2},
        output=out,
    )

    with pytest.raises(ConfigError) as caught:
        pipeline.run()

    assert str(Path("raw") / "mask.json") in str(caught.value)
    assert caught.value.exit_code == 2
    assert files(out) == []


def cube_pipeline(out: Path) -> Pipeline:
    return Pipeline([cube], splits={"train": 3, "test": 2}, dims={"freq": [30, 100, 353]}, output=out)


def cube_items(out: Path) -> set[tuple[str, int, int]]:
    found = set()
    for f in files(out):
        _, split, freq, sim = f.removesuffix(".json").split("/")
        found.add((split, int(sim), int(freq)))
    return found


def test_where_runs_only_the_matching_items(tmp_path):
    pipeline = cube_pipeline(tmp_path / "out")

    assert pipeline.run(where=["split=test"], output=tmp_path / "a").ok
    assert cube_items(tmp_path / "a") == {("test", s, f) for s in range(2) for f in (30, 100, 353)}

    assert pipeline.run(where=["sim=0:2", "freq=30,100"], output=tmp_path / "b").ok
    assert cube_items(tmp_path / "b") == {
        (sp, s, f) for sp in ("train", "test") for s in (0, 1) for f in (30, 100)
    }

    assert pipeline.run(where={"split": "train", "sim": "2:"}, output=tmp_path / "c").ok
    assert cube_items(tmp_path / "c") == {("train", 2, f) for f in (30, 100, 353)}


def test_where_with_an_unknown_dim_is_an_error(tmp_path):
    pipeline = cube_pipeline(tmp_path / "out")

    with pytest.raises(StagewiseError) as caught:
        pipeline.run(where=["frequency=30"])

    assert caught.value.exit_code == 2
    assert "frequency" in str(caught.value)
    assert files(tmp_path / "out") == []


def test_a_pipeline_runs_again_right_away_on_the_same_output(tmp_path):
    pipeline = Pipeline([show_params], output=tmp_path / "out")

    assert pipeline.run().ok
    assert pipeline.run(params={"show_params.x": 9}).ok
    assert read_json(tmp_path / "out/params.json")["x"] == 9


def test_run_params_override_the_pipelines_params_flat_or_nested(tmp_path):
    pipeline = Pipeline([show_params], params={"show_params.x": 2}, output=tmp_path / "out")

    assert pipeline.run().ok
    assert read_json(tmp_path / "out/params.json") == {"x": 2, "y": 0.5, "name": "a"}

    assert pipeline.run(params={"show_params.x": 5, "show_params.y": 1}).ok
    assert read_json(tmp_path / "out/params.json") == {"x": 5, "y": 1.0, "name": "a"}

    assert pipeline.run(params={"show_params": {"name": "b"}}).ok
    assert read_json(tmp_path / "out/params.json") == {"x": 2, "y": 0.5, "name": "b"}


# --- assets, handlers, loading ---------------------------------------------------------------------


def test_asset_view_reads_paths_and_lists_existing_items(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([tagged, config], splits={"train": [0, 5], "test": 1}, output=out)
    assert pipeline.run().ok
    (out / "tagged/train/0005.json").unlink()

    view = pipeline.asset("tagged.tags")
    assert view.path(split="train", sim=5) == out / "tagged/train/0005.json"
    assert view.read(split="test", sim=0)["tags"] == {"split": "test", "sim": 0}

    train = dict(view.items(split="train"))
    assert list(train) == [0]
    assert train[0].read()["sim"] == 0
    assert train[0].path == out / "tagged/train/0000.json"
    assert sorted(k for k, _ in view.items()) == [("test", 0), ("train", 0)]
    assert [k for k, _ in view.items(split="test", sim=0)] == [()]

    assert pipeline.asset("config.conf").read() == {"offset": 100}


def test_registered_handler_is_used_by_extension_and_by_name(tmp_path):
    out = tmp_path / "out"
    pipeline = Pipeline([shout], dims={"sim": 2}, output=out)

    assert pipeline.run().ok
    assert (out / "upper/1.apiup").read_text() == "HELLO 1"
    assert (out / "upper/1.dat").read_text() == "BYE 1"
    assert pipeline.asset("shout.b").read(sim=0) == "BYE 0"


def test_load_reads_a_pipeline_file_and_a_named_pipeline_in_a_script(
    tmp_path, monkeypatch, in_process_loading
):
    (tmp_path / "runapi_load_stages.py").write_text(
        textwrap.dedent(
            """
            from stagewise import stage

            @stage(outputs={"v": "loaded/{split}/{sim}.json"}, over=("split", "sim"))
            def loaded(item, *, add: int = 0):
                return item.sim + add
            """
        )
    )
    (tmp_path / "pipeline.yaml").write_text(
        textwrap.dedent(
            """
            pipeline: loaded_demo
            stages_from: [runapi_load_stages.py]
            output: yaml_out
            splits: {train: [0, 5]}
            params: {loaded.add: 10}
            """
        )
    )
    (tmp_path / "runapi_load_script.py").write_text(
        textwrap.dedent(
            """
            from stagewise import Pipeline, stage

            @stage(outputs={"v": "scripted/{sim}.json"}, over=("sim",))
            def scripted(item):
                return item.sim * 2

            pipeline = Pipeline([scripted], dims={"sim": 1}, output="default_out")
            other = Pipeline([scripted], dims={"sim": 3}, output="other_out")
            """
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    from_yaml = stagewise.load(tmp_path / "pipeline.yaml")
    assert from_yaml.run().ok
    assert read_json(tmp_path / "yaml_out/loaded/train/5.json") == 15

    monkeypatch.chdir(tmp_path)
    from_script = stagewise.load("runapi_load_script.py:other")
    assert from_script.run().ok
    assert files(tmp_path / "other_out") == [f"scripted/{s}.json" for s in range(3)]
    assert read_json(tmp_path / "other_out/scripted/2.json") == 4
    assert not (tmp_path / "default_out").exists()
