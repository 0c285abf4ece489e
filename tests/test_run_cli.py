"""``stagewise run`` end to end: scratch projects in ``tmp_path`` driven in subprocesses.

Each test writes a ``stages.py`` and a ``pipeline.yaml`` (or a script) and checks the exit code
(0 done, 1 an item failed, 2 usage or validation), what was printed, the files written and
their contents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stagewise

STAGES = '''
from stagewise import REJECT, Item, Result, group, stage


@stage(outputs={"sky": "sky/{split}/{sim:04d}.json"}, over=("split", "sim"))
def simulate(item: Item, *, npix: int = 3, seed: int = 0, fail_sim: int = -1):
    """Draw a sky.

    Args:
        npix: number of pixels.
        seed: base random seed.
        fail_sim: a sim that raises.
    """
    if item.sim == fail_sim:
        raise ValueError(f"cannot simulate sim {item.sim}")
    return {"split": item.split, "sim": item.sim, "pixels": [seed + item.sim] * npix}


@stage(
    inputs={"sky": "simulate.sky", "mask": "mask"},
    outputs={"map": "maps/{split}/{freq}/{sim:04d}.json"},
    over=("split", "sim", "freq"),
)
def observe(item: Item, sky, mask, *, noise: float = 0.5, reject_freq: int = -1):
    """Observe a sky at one frequency.

    Args:
        noise: additive noise.
        reject_freq: a frequency whose maps are rejected.
    """
    if item.freq == reject_freq:
        return REJECT
    values = [p * m * item.freq + noise for p, m in zip(sky["pixels"], mask)]
    return Result({"values": values}, meta={"peak": max(values)})


@stage(inputs={"maps": "observe.map"}, outputs={"stats": "stats/{split}.json"}, over=("split",))
def summarize(maps, *, scale: float = 1.0):
    """Count the maps of a split.

    Args:
        scale: a factor.
    """
    return {"keys": [list(k) for k in maps], "n": len(maps), "scale": scale}


@stage(outputs={"note": "notes/{split}/{sim}.txt"}, over=("sim",))
def notes(item: Item):
    return f"{item.split} {item.sim}"


@stage(outputs={"values": "settings.json"})
def settings(*, count: int = 1, ratio: float = 0.5, shift: float = 0.0, label: str = "a"):
    return {"count": count, "ratio": ratio, "shift": shift, "label": label}


@stage(outputs={"feat": "feat/{split}/{sim}.json"}, over=("sim",))
def prep(item: Item, *, threshold: float = 1.0):
    return item.sim * threshold


@stage(inputs={"feat": "prep.feat"}, outputs={"model": "model.json"})
def fit(feat, *, cutoff: float = 1.0):
    return {"keys": [list(k) for k in feat], "cutoff": cutoff}


train = group("train", [prep, fit], shared={"threshold": ["prep.threshold", "fit.cutoff"]})
'''

PIPELINE = """
pipeline: cli_demo
stages_from: [stages.py]
output: out
paths: {data: raw}
sources:
  mask: "{data}/mask.json"
splits: {train: [0, 5, 7], test: 2}
dims: {freq: [30, 100, 353]}
"""

SPLIT_SIMS = [("train", 0), ("train", 5), ("train", 7), ("test", 0), ("test", 1)]
FREQS = (30, 100, 353)


# --- helpers ---------------------------------------------------------------------------------------


def run_cli(cwd: Path, *args: str, command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stagewise ARGS`` (or ``command ARGS``) in ``cwd``."""
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [*(command or [sys.executable, "-m", "stagewise"]), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done


def describe(done: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(map(str, done.args))}\n[exit {done.returncode}]\n--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"


def files(root: Path) -> list[str]:
    """Every file under ``root`` (posix, relative), hidden ones included, but not stagewise's own."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".stagewise" not in p.relative_to(root).parts
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def stages_written(root: Path) -> list[str]:
    return sorted({f.split("/")[0] for f in files(root)})


def sky_files(pairs: list[tuple[str, int]] = SPLIT_SIMS) -> list[str]:
    return [f"sky/{split}/{sim:04d}.json" for split, sim in pairs]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo project: splits, a freq dim, a source, a reduce, a group and independent stages."""
    (tmp_path / "stages.py").write_text(STAGES)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/mask.json").write_text("[1, 0, 2]")
    return tmp_path


# --- a full run ------------------------------------------------------------------------------------


def test_run_writes_every_output_with_its_contents_and_exits_0(demo):
    done = run_cli(demo, "run")

    assert done.returncode == 0, describe(done)
    out = demo / "out"
    assert files(out) == sorted(
        sky_files()
        + [f"maps/{sp}/{f}/{s:04d}.json" for sp, s in SPLIT_SIMS for f in FREQS]
        + ["stats/train.json", "stats/test.json"]
        + [f"notes/{sp}/{s}.txt" for sp, s in SPLIT_SIMS]
        + ["settings.json", "model.json"]
        + [f"feat/{sp}/{s}.json" for sp, s in SPLIT_SIMS]
    ), describe(done)
    assert read_json(out / "sky/train/0005.json") == {"split": "train", "sim": 5, "pixels": [5, 5, 5]}
    assert read_json(out / "maps/test/100/0001.json") == {"values": [100.5, 0.5, 200.5]}
    stats = read_json(out / "stats/train.json")
    assert stats["keys"] == [[s, f] for s in (0, 5, 7) for f in FREQS]
    assert (out / "notes/test/1.txt").read_text() == "test 1"
    assert list(out.rglob(".*.tmp*")) == []


def test_console_script_and_module_are_the_same_program(demo):
    script = Path(sys.executable).parent / "stagewise"

    done = run_cli(demo, "run", "simulate", command=[str(script)])

    assert done.returncode == 0, describe(done)
    assert files(demo / "out") == sorted(sky_files())
    version = run_cli(demo, "--version")
    assert version.returncode == 0, describe(version)
    assert stagewise.__version__ in version.stdout


# --- failures --------------------------------------------------------------------------------------


def test_failed_item_exits_1_showing_traceback_and_tags_while_other_branches_run(demo):
    done = run_cli(demo, "run", "--simulate.fail_sim", "5")

    assert done.returncode == 1, describe(done)
    out = demo / "out"
    written = files(out)
    # the failing stage's other items ran; nothing was left at the failed item's path
    assert [f for f in written if f.startswith("sky/")] == sorted(
        sky_files([p for p in SPLIT_SIMS if p != ("train", 5)])
    )
    # stages downstream of the failure did not start
    assert not any(f.startswith(("maps/", "stats/")) for f in written), describe(done)
    # independent branches ran
    assert [f for f in written if f.startswith("notes/")] == sorted(
        f"notes/{sp}/{s}.txt" for sp, s in SPLIT_SIMS
    )
    assert "model.json" in written and "settings.json" in written
    # the error is shown with the item's tags and the last lines of its traceback
    assert "ValueError: cannot simulate sim 5" in done.stderr
    assert 'raise ValueError(f"cannot simulate sim {item.sim}")' in done.stderr
    line = next(ln for ln in done.stderr.splitlines() if "simulate" in ln and "sim=5" in ln)
    assert "split=train" in line
    assert "Traceback" not in done.stdout


def test_fail_fast_stops_at_the_first_failed_item(demo):
    done = run_cli(demo, "run", "--executor", "serial", "--fail-fast", "--simulate.fail_sim", "5")

    assert done.returncode == 1, describe(done)
    assert files(demo / "out") == ["sky/train/0000.json"]


# --- selectors -------------------------------------------------------------------------------------


def test_selectors_pick_a_stage_with_its_upstream_or_its_downstream(demo):
    only = run_cli(demo, "run", "simulate", "--output", "only")
    up = run_cli(demo, "run", "+observe", "--output", "up")
    down = run_cli(demo, "run", "observe+", "--output", "only")

    for done in (only, up, down):
        assert done.returncode == 0, describe(done)
    assert stages_written(demo / "up") == ["maps", "sky"]
    assert stages_written(demo / "only") == ["maps", "sky", "stats"]
    assert read_json(demo / "only/stats/test.json")["n"] == 6


def test_group_selectors_pick_one_member_or_every_member(demo):
    member = run_cli(demo, "run", "train:prep", "--output", "member")
    whole = run_cli(demo, "run", "train", "--output", "whole")
    star = run_cli(demo, "run", "train:*", "--output", "star")
    everything = run_cli(demo, "run", "train:all", "--output", "all")

    for done in (member, whole, star, everything):
        assert done.returncode == 0, describe(done)
    assert stages_written(demo / "member") == ["feat"]
    for folder in ("whole", "star", "all"):
        assert stages_written(demo / folder) == ["feat", "model.json"]
    assert read_json(demo / "all/model.json")["keys"] == [
        ["test", 0],
        ["test", 1],
        ["train", 0],
        ["train", 5],
        ["train", 7],
    ]


def test_group_question_mark_lists_the_groups_stages_and_runs_nothing(demo):
    done = run_cli(demo, "run", "train:?")

    assert done.returncode == 0, describe(done)
    assert "prep" in done.stdout and "fit" in done.stdout
    assert "simulate" not in done.stdout
    assert files(demo / "out") == []


def test_unknown_selector_exits_2_naming_known_stages_and_the_closest(demo):
    done = run_cli(demo, "run", "simulat")

    assert done.returncode == 2, describe(done)
    assert "simulat" in done.stderr
    for name in ("simulate", "observe", "summarize", "notes", "settings", "prep", "fit"):
        assert name in done.stderr, describe(done)
    assert "did you mean 'simulate'" in done.stderr.lower() or "did you mean simulate" in done.stderr.lower()
    assert "Traceback" not in done.stderr
    assert files(demo / "out") == []


def test_stage_whose_unselected_producer_has_no_outputs_exits_2_suggesting_plus(demo):
    done = run_cli(demo, "run", "observe")

    assert done.returncode == 2, describe(done)
    assert "simulate" in done.stderr
    assert "+observe" in done.stderr
    assert files(demo / "out") == []


def test_missing_source_file_exits_2_naming_it_before_anything_runs(demo):
    (demo / "raw/mask.json").unlink()

    done = run_cli(demo, "run")

    assert done.returncode == 2, describe(done)
    assert "raw/mask.json" in done.stderr
    assert "Traceback" not in done.stderr
    assert files(demo / "out") == []  # simulate runs before observe, yet nothing ran


# --- item filters ----------------------------------------------------------------------------------


def test_where_runs_only_the_matching_items(demo):
    by_split = run_cli(demo, "run", "+observe", "--where", "split=test", "--where", "freq=30,100")
    by_range = run_cli(demo, "run", "simulate", "--where", "sim=0:2", "--output", "range")

    assert by_split.returncode == 0, describe(by_split)
    assert files(demo / "out") == sorted(
        sky_files([("test", 0), ("test", 1)])
        + [f"maps/test/{f}/{s:04d}.json" for s in (0, 1) for f in (30, 100)]
    )
    assert by_range.returncode == 0, describe(by_range)
    assert files(demo / "range") == sorted(sky_files([("train", 0), ("test", 0), ("test", 1)]))


def test_where_with_an_unknown_dim_exits_2(demo):
    done = run_cli(demo, "run", "--where", "band=30")

    assert done.returncode == 2, describe(done)
    assert "band" in done.stderr
    assert "freq" in done.stderr  # the dims it could have been
    assert files(demo / "out") == []


# --- parameters ------------------------------------------------------------------------------------


def test_parameter_overrides_are_converted_to_the_declared_types(demo):
    done = run_cli(
        demo,
        "run",
        "settings",
        "--settings.count=3",
        "--settings.ratio",
        "2",
        "--settings.shift",
        "-1.5",
        "--settings.label",
        "7",
    )

    assert done.returncode == 0, describe(done)
    text = (demo / "out/settings.json").read_text()
    values = json.loads(text)
    assert values == {"count": 3, "ratio": 2.0, "shift": -1.5, "label": "7"}
    assert type(values["count"]) is int and type(values["ratio"]) is float


def test_config_files_flat_and_nested_set_parameters_below_the_command_line(demo):
    (demo / "flat.yaml").write_text("settings.count: 7\nsettings.label: from-config\n")
    (demo / "nested.yaml").write_text("settings:\n  ratio: 0.25\n")

    done = run_cli(
        demo,
        "run",
        "settings",
        "--config",
        "flat.yaml",
        "--config",
        "nested.yaml",
        "--settings.label",
        "from-cli",
    )

    assert done.returncode == 0, describe(done)
    assert read_json(demo / "out/settings.json") == {
        "count": 7,
        "ratio": 0.25,
        "shift": 0.0,
        "label": "from-cli",
    }


def test_dry_run_prints_the_plan_per_stage_and_writes_nothing(demo):
    done = run_cli(demo, "run", "--dry-run")

    assert done.returncode == 0, describe(done)
    assert files(demo / "out") == []
    plan = done.stdout
    for name, count in [("simulate", 5), ("observe", 15), ("summarize", 2), ("settings", 1)]:
        line = next((ln for ln in plan.splitlines() if name in ln), "")
        assert str(count) in line, describe(done)


def test_run_help_lists_stage_parameters_grouped_by_stage_with_type_and_default(demo):
    done = run_cli(demo, "run", "--help")

    assert done.returncode == 0, describe(done)
    text = done.stdout
    assert "--where" in text
    npix = next(ln for ln in text.splitlines() if "--simulate.npix" in ln)
    assert "int" in npix and "3" in npix and "number of pixels" in npix
    noise = next(ln for ln in text.splitlines() if "--observe.noise" in ln)
    assert "float" in noise and "0.5" in noise
    assert "--train.prep.threshold" in text
    # grouped by stage: simulate's parameters come together, before observe's
    order = [text.index(f"--simulate.{p}") for p in ("npix", "seed", "fail_sim")]
    assert max(order) < text.index("--observe.noise")


# --- rejection -------------------------------------------------------------------------------------


def test_rejected_items_write_nothing_are_absent_downstream_and_the_run_exits_0(demo):
    done = run_cli(demo, "run", "+summarize", "--observe.reject_freq", "100")

    assert done.returncode == 0, describe(done)
    maps = [f for f in files(demo / "out") if f.startswith("maps/")]
    assert len(maps) == 10
    assert not any("/100/" in f for f in maps)
    assert read_json(demo / "out/stats/train.json")["keys"] == [[s, f] for s in (0, 5, 7) for f in (30, 353)]


# --- user handlers, script mode, loading results ---------------------------------------------------


HANDLER_STAGES = """
from pathlib import Path

import stagewise
from stagewise import Asset, stage


class UpperHandler:
    def read(self, path):
        return Path(path).read_text()

    def write(self, path, data):
        Path(path).write_text(str(data).upper())


stagewise.register_handler("upper", UpperHandler, extensions=[".up"])


@stage(outputs={"loud": "loud/{sim}.up", "named": Asset("named/{sim}.dat", handler="upper")}, over=("sim",))
def shout(item):
    return {"loud": f"hello {item.sim}", "named": f"bye {item.sim}"}


@stage(inputs={"loud": "shout.loud", "named": "shout.named"}, outputs={"both": "both/{sim}.json"}, over=("sim",))
def echo(loud, named):
    return [loud, named]
"""


def test_handler_registered_in_the_stage_module_works_by_extension_and_by_name(tmp_path):
    (tmp_path / "stages.py").write_text(HANDLER_STAGES)
    (tmp_path / "pipeline.yaml").write_text("stages_from: [stages.py]\noutput: out\ndims: {sim: 2}\n")

    done = run_cli(tmp_path, "run")

    assert done.returncode == 0, describe(done)
    assert (tmp_path / "out/loud/1.up").read_text() == "HELLO 1"
    assert (tmp_path / "out/named/1.dat").read_text() == "BYE 1"
    assert read_json(tmp_path / "out/both/0.json") == ["HELLO 0", "BYE 0"]


EXPERIMENT = '''
from stagewise import Pipeline, stage


@stage(outputs={"v": "scaled/{sim}.json"}, over=("sim",))
def scale(item, *, x: int = 1):
    """Scale a sim.

    Args:
        x: the factor.
    """
    return {"sim": item.sim, "value": item.sim * x}


pipeline = Pipeline([scale], dims={"sim": 3}, output="results")

if __name__ == "__main__":
    pipeline.main()
'''


def test_script_with_pipeline_main_runs_its_own_stages_with_overrides(tmp_path):
    (tmp_path / "experiment.py").write_text(EXPERIMENT)

    done = run_cli(tmp_path, "run", "--scale.x", "3", command=[sys.executable, "experiment.py"])

    assert done.returncode == 0, describe(done)
    assert files(tmp_path / "results") == [f"scaled/{s}.json" for s in range(3)]
    assert read_json(tmp_path / "results/scaled/2.json") == {"sim": 2, "value": 6}


def test_results_of_a_command_line_run_are_readable_from_python(demo, in_process_loading):
    done = run_cli(demo, "run", "+observe", "--where", "split=train")
    assert done.returncode == 0, describe(done)

    pipeline = stagewise.load(demo / "pipeline.yaml")

    assert pipeline.asset("simulate.sky").read(split="train", sim=7)["pixels"] == [7, 7, 7]
    assert pipeline.asset("observe.map").path(split="train", sim=5, freq=30) == (
        demo / "out/maps/train/30/0005.json"
    )
    assert sorted(k for k, _ in pipeline.asset("observe.map").items(split="train", sim=0)) == [30, 100, 353]
    rows = pipeline.meta("observe")
    if not isinstance(rows, list):  # a DataFrame when pandas is installed
        rows = rows.to_dict("records")
    assert len(rows) == 9
    assert list(rows[0])[:3] == ["split", "sim", "freq"]
    row = next(r for r in rows if (r["sim"], r["freq"]) == (5, 100))
    assert row == {"split": "train", "sim": 5, "freq": 100, "peak": 1000.5}


def test_stages_from_a_file_outside_the_pipeline_folder_runs_in_worker_processes(project):
    # the stage module lives beside, not below, the pipeline file: workers must import it too
    project.write(
        "lib/shared_steps.py",
        """
        from stagewise import Item, stage

        @stage(outputs={"double": "double/{i}.json"}, over=("i",))
        def double(item: Item):
            return {"i": item.i, "double": 2 * item.i}
        """,
    )
    project.pipeline(
        """
        pipeline: outside
        stages_from: [../lib/shared_steps.py]
        output: out
        dims: {i: 4}
        """,
        relpath="conf/pipeline.yaml",
    )
    result = project.cli("run", "conf/pipeline.yaml", "--executor", "local", "-j", "2")
    assert result.code == 0, result.describe()
    out = project.root / "conf" / "out" / "double"
    assert json.loads((out / "3.json").read_text()) == {"i": 3, "double": 6}
