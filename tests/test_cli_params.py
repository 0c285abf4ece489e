"""Stage parameters from the command line, config files and saved configs, as a new user meets them.

An ArgBind-style five-stage experiment (download, preprocess, train, evaluate, analyze) driven
only through ``python -m stagewise`` in a scratch folder: ``run --help`` lists every parameter,
overrides of every supported type are converted by the declared type, wrong values and unknown
names stop with exit 2 and a message naming the parameter, ``--config`` files layer between the
pipeline file and the command line, ``--save-config`` writes a file that repeats the run, and a
script ending in ``pipeline.main()`` takes the same command line.

Every stage body appends one JSON line to ``ran.log`` (its name, the parameter values it received
and their Python types), so a test sees exactly which stage bodies ran and with what.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from conftest import CliResult, Project

STAGES = '''
from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Literal, Optional

from stagewise import stage

LOG = Path(__file__).with_name("ran.log")


def ran(name, **params):
    """Record that a stage body ran, with the values (and types) of its parameters."""
    line = {"stage": name, "params": params, "types": {k: type(v).__name__ for k, v in params.items()}}
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\\n")


class Optimizer(enum.Enum):
    SGD = "sgd"
    ADAM = "adam"


@stage(outputs={"raw": "raw.json"})
def download(*, url: str = "https://example.org/data.csv", retries: int = 3, dest: Path = Path("downloads")):
    """Download the raw data.

    Args:
        url: where the data lives.
        retries: attempts before giving up.
        dest: folder for the downloaded files.
    """
    ran("download", url=url, retries=retries, dest=dest)
    return {"values": [1.0, 2.0, 3.0, 4.0]}


@stage(inputs={"raw": "download.raw"}, outputs={"clean": "clean.json"})
def preprocess(raw, *, scale: float = 1.0, normalize: bool = True, bounds: tuple[float, ...] = (0.0, 10.0)):
    """Scale and clip the raw values.

    Parameters
    ----------
    scale : float
        factor applied to every value.
    normalize : bool
        divide by the largest value.
    bounds : tuple of float
        clip range, low then high.
    """
    ran("preprocess", scale=scale, normalize=normalize, bounds=bounds)
    values = [min(max(v * scale, bounds[0]), bounds[-1]) for v in raw["values"]]
    top = max(values) if normalize else 1.0
    return {"values": [v / top for v in values]}


@stage(inputs={"clean": "preprocess.clean"}, outputs={"model": "model.json"})
def train(
    clean,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    layers: list[int] = [32],
    verbose: bool = True,
    model: Literal["mlp", "cnn"] = "mlp",
    opt: Optimizer = Optimizer.SGD,
    seed: Optional[int] = 0,
):
    """Train the model.

    Args:
        epochs: number of passes over the data.
        lr: learning rate.
        layers: hidden layer sizes.
        verbose: print the loss every epoch.
        model: model architecture.
        opt: optimiser.
        seed: random seed; none for a fresh one.
    """
    ran("train", epochs=epochs, lr=lr, layers=layers, verbose=verbose, model=model, opt=opt, seed=seed)
    return {"epochs": epochs, "lr": lr, "layers": layers, "model": model, "opt": opt.name, "seed": seed}


@stage(inputs={"model": "train.model", "clean": "preprocess.clean"}, outputs={"scores": "scores.json"})
def evaluate(model, clean, *, weights: dict[str, float] = {"acc": 1.0}, split: Literal["valid", "test"] = "test"):
    """Score the model.

    :param weights: weight of each metric in the total.
    :param split: which split to score on.
    """
    ran("evaluate", weights=weights, split=split)
    return {"total": sum(weights.values()) * len(clean["values"]), "epochs": model["epochs"]}


@stage(inputs={"scores": "evaluate.scores"}, outputs={"report": "report.txt"})
def analyze(scores, *, title: str, dpi: int = 100):
    """Write the report.

    Args:
        title: report title.
        dpi: figure resolution.
    """
    ran("analyze", title=title, dpi=dpi)
    return f"{title}: {scores['total']}"
'''

PIPELINE = """
pipeline: experiment
stages_from: [stages.py]
output: out
stages:
  download: {}
  preprocess: {}
  train: {params: {lr: 0.01}}
  evaluate: {}
  analyze: {params: {title: Baseline}}
params: {train.epochs: 20, train.layers: [16, 16], preprocess.scale: 2.0}
"""

# The same stages without any parameter values: analyze.title, which is required, stays unset.
BARE = """
pipeline: bare
stages_from: [stages.py]
output: out_bare
"""

# Runs whose subject is parameters, not execution, use the in-process executor: it starts faster.
# The default (process pool) executor is used where values must cross to a worker process.
SERIAL_RUN = ("run", "--executor", "serial")

STAGE_ORDER = ["download", "preprocess", "train", "evaluate", "analyze"]

ALL_PARAMS = {
    "download.url", "download.retries", "download.dest",
    "preprocess.scale", "preprocess.normalize", "preprocess.bounds",
    "train.epochs", "train.lr", "train.layers", "train.verbose", "train.model", "train.opt", "train.seed",
    "evaluate.weights", "evaluate.split",
    "analyze.title", "analyze.dpi",
}  # fmt: skip


@pytest.fixture
def experiment(project: Project) -> Project:
    """The five-stage experiment, with ``pipeline.yaml`` (parameters set) and ``bare.yaml`` (none)."""
    project.stages(STAGES)
    project.pipeline(PIPELINE)
    project.pipeline(BARE, "bare.yaml")
    return project


def ran(project: Project, folder: str = "") -> list[dict[str, Any]]:
    """The stage bodies that ran since the log was last cleared, in order."""
    log = project.root / folder / "ran.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def ran_stages(project: Project, folder: str = "") -> list[str]:
    """The names of the stage bodies that ran, in order."""
    return [entry["stage"] for entry in ran(project, folder)]


def forget_runs(project: Project, folder: str = "") -> None:
    """Clear the log of stage bodies that ran."""
    (project.root / folder / "ran.log").unlink(missing_ok=True)


def ok(result: CliResult) -> CliResult:
    """Fail with everything printed unless the command exited 0."""
    assert result.code == 0, result.describe()
    return result


def assert_no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.output, result.describe()


# --- run --help ---------------------------------------------------------------------------------

# name -> (type as shown, default as shown, help text from the docstring)
HELP_EXPECTED = {
    "download.url": ("str", "https://example.org/data.csv", "where the data lives."),
    "download.retries": ("int", "3", "attempts before giving up."),
    "download.dest": ("Path", "downloads", "folder for the downloaded files."),
    "preprocess.scale": ("float", "1.0", "factor applied to every value."),
    "preprocess.normalize": ("bool", "True", "divide by the largest value."),
    "preprocess.bounds": ("tuple[float, ...]", "0.0, 10.0", "clip range, low then high."),
    "train.epochs": ("int", "50", "number of passes over the data."),
    "train.lr": ("float", "0.001", "learning rate."),
    "train.layers": ("list[int]", "32", "hidden layer sizes."),
    "train.verbose": ("bool", "True", "print the loss every epoch."),
    "train.model": ("Literal['mlp', 'cnn']", "'mlp'", "model architecture."),
    "train.opt": ("Optimizer", "SGD", "optimiser."),
    "train.seed": ("int", "0", "random seed; none for a fresh one."),
    "evaluate.weights": ("dict[str, float]", "'acc': 1.0", "weight of each metric in the total."),
    "evaluate.split": ("Literal['valid', 'test']", "'test'", "which split to score on."),
    "analyze.title": ("str", "required", "report title."),
    "analyze.dpi": ("int", "100", "figure resolution."),
}


def test_run_help_lists_every_parameter_grouped_by_stage_with_type_default_and_help(experiment):
    result = ok(experiment.cli("run", "--help"))
    lines = result.stdout.splitlines()

    def param_line(name: str) -> int:
        found = [
            i for i, line in enumerate(lines) if f"--{name} " in line or line.rstrip().endswith(f"--{name}")
        ]
        assert len(found) == 1, f"--{name} should be listed once:\n{result.describe()}"
        return found[0]

    previous_end = -1
    for stage in STAGE_ORDER:
        names = [n for n in HELP_EXPECTED if n.startswith(stage + ".")]
        rows = sorted(param_line(n) for n in names)
        # Grouped by stage: one block per stage, under a heading naming the stage.
        assert rows[-1] - rows[0] + 1 == len(rows), f"{stage}'s parameters are not together:\n{result.stdout}"
        heading = [i for i in range(previous_end + 1, rows[0]) if stage in lines[i] and "--" not in lines[i]]
        assert heading, f"no heading for stage {stage} above its parameters:\n{result.stdout}"
        previous_end = rows[-1]
    for name, (type_text, default, help_text) in HELP_EXPECTED.items():
        line = lines[param_line(name)]
        assert type_text in line, f"--{name}: type {type_text!r} not shown in {line!r}"
        assert default in line, f"--{name}: default {default!r} not shown in {line!r}"
        assert help_text in line, f"--{name}: help {help_text!r} not shown in {line!r}"
    seed = lines[param_line("train.seed")]
    assert "None" in seed or "Optional" in seed, f"train.seed should read as optional: {seed!r}"
    assert not (experiment.root / "out").exists(), "--help must not run anything"
    assert ran(experiment) == []


def test_run_help_with_config_and_overrides_still_lists_every_parameter(experiment):
    experiment.write("flat.yaml", "train.epochs: 100\n")
    result = ok(experiment.cli("run", "--help", "--config", "flat.yaml", "--train.lr", "3"))
    for name, (type_text, _, help_text) in HELP_EXPECTED.items():
        line = result.line_with(f"--{name}")
        assert type_text in line and help_text in line, line
    assert ran(experiment) == []


# --- overrides ------------------------------------------------------------------------------------


def test_overrides_of_every_type_reach_the_stage_converted_to_the_declared_type(experiment):
    overrides = (
        "--train.epochs", "100", "--train.lr", "-1e-3", "--train.layers", "64,64",
        "--train.verbose", "false", "--train.model", "cnn", "--train.opt", "ADAM",
        "--train.seed", "none", "--preprocess.bounds=0.5,2", "--preprocess.normalize=off",
        "--download.dest=data/raw", "--download.retries=5", "--download.url", "-",
    )  # fmt: skip
    ok(experiment.cli("run", "+train", *overrides))
    bodies = {entry["stage"]: entry for entry in ran(experiment)}
    assert list(bodies) == ["download", "preprocess", "train"]
    assert bodies["train"]["params"] == {
        "epochs": 100, "lr": -0.001, "layers": [64, 64], "verbose": False, "model": "cnn",
        "opt": "Optimizer.ADAM", "seed": None,
    }  # fmt: skip
    assert bodies["train"]["types"] == {
        "epochs": "int", "lr": "float", "layers": "list", "verbose": "bool", "model": "str",
        "opt": "Optimizer", "seed": "NoneType",
    }  # fmt: skip
    assert bodies["preprocess"]["params"] == {"scale": 2.0, "normalize": False, "bounds": [0.5, 2.0]}
    assert bodies["preprocess"]["types"]["bounds"] == "tuple"
    assert bodies["download"]["params"] == {"url": "-", "retries": 5, "dest": "data/raw"}
    assert bodies["download"]["types"]["dest"] in ("PosixPath", "WindowsPath")


def test_params_converts_the_other_spellings_of_override_values(experiment):
    overrides = (
        "--train.lr", "1e-3", "--train.layers", "[64, 64]", "--train.epochs=7", "--train.verbose", "no",
        "--train.opt=adam", "--train.seed=12", "--evaluate.weights", "{acc: 2, f1: 0.5}",
        "--evaluate.split=valid", "--analyze.title", "--a title starting with dashes",
    )  # fmt: skip
    rows = experiment.params_json(*overrides)
    expected = {
        "train.lr": 0.001, "train.layers": [64, 64], "train.epochs": 7, "train.verbose": False,
        "train.opt": "adam", "train.seed": 12, "evaluate.weights": {"acc": 2.0, "f1": 0.5},
        "evaluate.split": "valid", "analyze.title": "--a title starting with dashes",
    }  # fmt: skip
    assert {name: rows[name]["value"] for name in expected} == expected
    assert {rows[name]["origin"] for name in expected} == {"cli"}
    assert rows["train.model"]["origin"] == "default"


def test_wrong_value_of_each_type_exits_2_naming_the_parameter_and_the_value(experiment):
    wrong = (
        "--train.epochs", "abc", "--train.model", "rnn", "--train.lr", "fast", "--train.verbose", "maybe",
        "--train.opt", "NADAM", "--train.layers", "64,x", "--train.seed", "abc",
        "--preprocess.bounds", "a,b", "--evaluate.weights", "nope", "--analyze.dpi", "1.5",
    )  # fmt: skip
    result = experiment.cli("run", *wrong)
    assert result.code == 2, result.describe()
    result.line_with("train.epochs: expected int, got 'abc'")
    result.line_with("train.model: expected one of 'mlp', 'cnn', got 'rnn'")
    result.line_with("train.lr: expected float, got 'fast'")
    result.line_with("train.verbose: expected bool, got 'maybe'")
    result.line_with("train.opt", "'NADAM'", "'SGD'", "'ADAM'")
    result.line_with("train.layers[1]: expected int, got 'x'")
    result.line_with("train.seed", "'abc'")
    result.line_with("preprocess.bounds[0]: expected float, got 'a'")
    result.line_with("evaluate.weights", "'nope'")
    result.line_with("analyze.dpi: expected int, got '1.5'")
    assert_no_traceback(result)
    assert ran(experiment) == []


def test_unknown_stage_parameter_or_selector_exits_2_with_did_you_mean(experiment):
    names = experiment.cli("run", "--trian.epochs", "3", "--train.epoch", "3")
    assert names.code == 2, names.describe()
    names.line_with("trian", "did you mean 'train'")
    names.line_with("epoch", "did you mean 'epochs'")
    selector = experiment.cli("run", "trian")
    assert selector.code == 2, selector.describe()
    selector.line_with("unknown", "'trian'")
    assert "did you mean 'train'" in selector.output, selector.describe()
    for result in (names, selector):
        assert_no_traceback(result)
    assert ran(experiment) == []


def test_required_parameter_left_unset_exits_2_naming_it_and_how_to_set_it(experiment):
    result = experiment.cli("run", "bare.yaml")
    assert result.code == 2, result.describe()
    line = result.line_with("analyze.title")
    assert "required" in line, line
    assert "--analyze.title" in result.output, f"the message should say how to set it:\n{result.describe()}"
    assert_no_traceback(result)
    assert ran(experiment) == []


def test_selectors_run_only_the_chosen_stages(experiment):
    ok(experiment.cli(*SERIAL_RUN, "+train"))
    assert ran_stages(experiment) == ["download", "preprocess", "train"]
    forget_runs(experiment)
    ok(experiment.cli(*SERIAL_RUN, "evaluate+"))
    assert ran_stages(experiment) == ["evaluate", "analyze"]
    forget_runs(experiment)
    ok(experiment.cli(*SERIAL_RUN, "train", "--train.epochs", "3"))
    assert ran_stages(experiment) == ["train"], "stages downstream of train were not selected"
    assert json.loads((experiment.root / "out" / "model.json").read_text())["epochs"] == 3


def test_print_params_prints_the_selected_stages_resolved_parameters(experiment):
    result = ok(experiment.cli(*SERIAL_RUN, "download", "--print-params", "--download.retries=5"))
    line = result.stdout.splitlines()[0] if result.stdout else ""
    assert "download" in line and "retries" in line and "5" in line, result.describe()
    assert "url" in result.stdout and "example.org" in result.stdout, result.describe()
    assert "train" not in result.stdout and "epochs" not in result.stdout, "only the selected stage"
    assert ran_stages(experiment) == ["download"]


# --- config files ---------------------------------------------------------------------------------


def test_config_files_flat_and_nested_layer_between_the_pipeline_file_and_the_command_line(experiment):
    experiment.write("flat.yaml", "train.epochs: 100\ntrain.layers: [8]\ntrain.lr: 1e-3\n")
    experiment.write(
        "nested.yaml",
        "train:\n  epochs: 200\n  layers: [4, 4]\n  model: cnn\nevaluate:\n  weights: {acc: 2, f1: 0.5}\n",
    )

    rows = experiment.params_json("--config", "flat.yaml", "--config", "nested.yaml", "--train.epochs", "300")
    for row in rows.values():
        assert {"name", "type", "value", "default", "origin", "help"} <= set(row), row
    seen = {name: (rows[name]["value"], rows[name]["origin"]) for name in rows}
    assert seen["train.seed"] == (0, "default")
    assert seen["preprocess.scale"] == (2.0, "file")  # params: in the pipeline file
    assert seen["analyze.title"] == ("Baseline", "file")  # stages.analyze.params
    assert seen["train.lr"] == (0.001, "config:flat.yaml")  # over stages.train.params
    assert seen["train.layers"] == ([4, 4], "config:nested.yaml")  # the later file wins
    assert seen["train.model"] == ("cnn", "config:nested.yaml")
    assert seen["train.epochs"] == (300, "cli")  # over every file
    assert seen["evaluate.weights"] == ({"acc": 2.0, "f1": 0.5}, "config:nested.yaml")  # a dict stays whole
    assert rows["train.epochs"]["default"] == 50
    assert rows["train.epochs"]["type"] == "int"
    assert rows["train.epochs"]["help"] == "number of passes over the data."

    swapped = experiment.params_json("--config", "nested.yaml", "--config", "flat.yaml")
    assert (swapped["train.epochs"]["value"], swapped["train.epochs"]["origin"]) == (100, "config:flat.yaml")
    assert (swapped["train.layers"]["value"], swapped["train.layers"]["origin"]) == ([8], "config:flat.yaml")
    assert (swapped["train.model"]["value"], swapped["train.model"]["origin"]) == (
        "cnn",
        "config:nested.yaml",
    )


SAVE_OVERRIDES = (
    "--train.epochs", "7", "--train.opt", "ADAM", "--train.seed", "none", "--preprocess.bounds", "0.5,2",
    "--download.dest", "elsewhere", "--evaluate.weights", "{acc: 2}",
)  # fmt: skip


def test_save_config_writes_every_resolved_parameter_and_the_run_settings_then_runs(experiment):
    ok(experiment.cli(*SERIAL_RUN, "+train", "-j", "1", "--save-config", "saved.yaml", *SAVE_OVERRIDES))
    assert ran_stages(experiment) == ["download", "preprocess", "train"]
    saved = yaml.safe_load((experiment.root / "saved.yaml").read_text(encoding="utf-8"))
    assert set(saved) == ALL_PARAMS | {"stagewise"}
    assert saved["train.epochs"] == 7  # command line
    assert saved["train.lr"] == 0.01  # pipeline file
    assert saved["download.retries"] == 3  # default
    assert saved["analyze.title"] == "Baseline"  # an unselected stage's parameter too
    assert saved["train.seed"] is None
    assert saved["preprocess.bounds"] == [0.5, 2.0]
    assert saved["evaluate.weights"] == {"acc": 2.0}
    settings = saved["stagewise"]
    assert {"select", "output", "jobs"} <= set(settings)
    assert settings["select"] == ["+train"]
    assert settings["jobs"] == 1
    assert (experiment.root / settings["output"]).resolve() == (experiment.root / "out").resolve()


def test_saved_config_written_by_a_dry_run_repeats_the_run_and_takes_changes(experiment):
    result = ok(experiment.cli("run", "+train", "--save-config", "saved.yaml", "--dry-run", *SAVE_OVERRIDES))
    assert (experiment.root / "saved.yaml").is_file(), result.describe()
    assert ran(experiment) == [], "--save-config with --dry-run only writes the file"
    assert not (experiment.root / "out" / "raw.json").exists()

    ok(experiment.cli(*SERIAL_RUN, "--config", "saved.yaml"))
    bodies = {entry["stage"]: entry["params"] for entry in ran(experiment)}
    assert list(bodies) == ["download", "preprocess", "train"], "the saved selection, not every stage"
    assert bodies["train"]["epochs"] == 7 and bodies["train"]["opt"] == "Optimizer.ADAM"
    assert bodies["train"]["seed"] is None
    assert bodies["preprocess"]["bounds"] == [0.5, 2.0]
    assert bodies["download"]["dest"] == "elsewhere"

    forget_runs(experiment)
    ok(experiment.cli(*SERIAL_RUN, "--config", "saved.yaml"))
    assert ran(experiment) == [], "the same parameters again: everything is up to date"

    ok(experiment.cli(*SERIAL_RUN, "--config", "saved.yaml", "--train.epochs", "9", "--output", "other"))
    assert ran_stages(experiment) == ["download", "preprocess", "train"]
    assert json.loads((experiment.root / "other" / "model.json").read_text())["epochs"] == 9
    assert json.loads((experiment.root / "out" / "model.json").read_text())["epochs"] == 7
    assert not (experiment.root / "other" / "scores.json").exists()


def test_save_config_into_a_missing_folder_writes_it_or_says_why_without_a_traceback(experiment):
    result = experiment.cli("run", "--save-config", "configs/saved.yaml", "--dry-run")
    assert_no_traceback(result)
    if result.code == 0:
        assert (experiment.root / "configs" / "saved.yaml").is_file(), result.describe()
    else:
        assert result.code == 2, result.describe()
        result.line_with("configs/saved.yaml")
    assert ran(experiment) == []


def test_save_config_writes_nothing_when_an_override_is_wrong(experiment):
    result = experiment.cli("run", "--save-config", "saved.yaml", "--train.epochs", "abc")
    assert result.code == 2, result.describe()
    result.line_with("train.epochs: expected int, got 'abc'")
    assert not (experiment.root / "saved.yaml").exists(), "a config that silently differs from the command"
    assert ran(experiment) == []


def test_relative_output_in_a_config_file_is_relative_to_the_pipeline_files_folder(project):
    project.stages(STAGES, "proj/stages.py")
    project.pipeline(PIPELINE, "proj/pipeline.yaml")
    project.write("cfg/run.yaml", "download.retries: 4\nstagewise: {select: [download], output: results}\n")
    ok(project.cli(*SERIAL_RUN, "proj/pipeline.yaml", "--config", "cfg/run.yaml"))
    assert (project.root / "proj" / "results" / "raw.json").is_file()
    assert not (project.root / "results").exists()
    assert not (project.root / "cfg" / "results").exists()
    assert [(e["stage"], e["params"]["retries"]) for e in ran(project, "proj")] == [("download", 4)]


def test_bad_config_files_exit_2_naming_the_file(experiment):
    experiment.write("unknown_key.yaml", "stagewise: {select: [download], outptu: elsewhere}\n")
    experiment.write("broken.yaml", "train.epochs: [1, 2\n")
    experiment.write("typo.yaml", "train:\n  epoch: 3\n  model: rnn\n")
    experiment.write("a_list.yaml", "- train.epochs\n- 3\n")

    unknown = experiment.cli("run", "--config", "unknown_key.yaml")
    assert unknown.code == 2, unknown.describe()
    unknown.line_with("unknown_key.yaml", "outptu")
    broken = experiment.cli("run", "--config", "broken.yaml")
    assert broken.code == 2, broken.describe()
    broken.line_with("broken.yaml")
    typo = experiment.cli("run", "--config", "typo.yaml")
    assert typo.code == 2, typo.describe()
    typo.line_with("typo.yaml", "epoch", "did you mean 'epochs'")
    typo.line_with("typo.yaml", "train.model: expected one of 'mlp', 'cnn', got 'rnn'")
    not_a_mapping = experiment.cli("run", "--config", "a_list.yaml")
    assert not_a_mapping.code == 2, not_a_mapping.describe()
    not_a_mapping.line_with("a_list.yaml")
    missing = experiment.cli("run", "--config", "missing.yaml")
    assert missing.code == 2, missing.describe()
    missing.line_with("missing.yaml")
    for result in (unknown, broken, typo, not_a_mapping, missing):
        assert_no_traceback(result)
    assert ran(experiment) == []


# --- params and output streams --------------------------------------------------------------------


def test_params_prints_a_readable_table_marking_an_unset_required_parameter_and_exits_0(experiment):
    result = ok(experiment.cli("params", "bare.yaml"))
    header = result.stdout.splitlines()[0].split()
    assert header == ["name", "type", "value", "default", "origin", "help"], result.stdout
    epochs = result.line_with("train.epochs")
    for text in ("int", "50", "default", "number of passes over the data."):
        assert text in epochs, epochs
    assert "<required>" in result.line_with("analyze.title"), result.stdout
    names = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]
    assert set(names) == ALL_PARAMS


def test_data_goes_to_stdout_and_logs_to_stderr(experiment):
    run = ok(experiment.cli(*SERIAL_RUN, "download"))
    assert run.stdout == "", f"a run prints only logs and progress, on stderr:\n{run.describe()}"
    assert "download" in run.stderr, run.describe()
    params = ok(experiment.cli("params", "--format", "json"))
    assert {row["name"] for row in json.loads(params.stdout)} == ALL_PARAMS
    status = ok(experiment.cli("status", "--format", "json"))
    by_stage = {row["stage"]: row for row in json.loads(status.stdout)}
    assert by_stage["download"]["done"] == 1
    assert by_stage["train"]["done"] == 0


# --- script mode ----------------------------------------------------------------------------------

SCRIPT = '''
import json
from pathlib import Path

from stagewise import Pipeline, stage

LOG = Path(__file__).with_name("ran.log")


@stage(outputs={"model": "model.json"})
def train(*, epochs: int = 10, lr: float = 0.1):
    """Train the model.

    Args:
        epochs: number of passes over the data.
        lr: learning rate.
    """
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": "train", "params": {"epochs": epochs, "lr": lr}}) + "\\n")
    return {"epochs": epochs, "lr": lr}


@stage(inputs={"model": "train.model"}, outputs={"score": "score.json"})
def evaluate(model, *, k: int = 3):
    """Score the model.

    Args:
        k: number of folds.
    """
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": "evaluate", "params": {"k": k}}) + "\\n")
    return {"score": model["epochs"] * k}


pipeline = Pipeline([train, evaluate], output="out")

if __name__ == "__main__":
    pipeline.main()
'''


def script(project: Project, *args: str) -> CliResult:
    """``python experiment.py ARGS`` in the project folder."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "experiment.py", *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return CliResult(("experiment.py", *args), done.returncode, done.stdout, done.stderr)


def test_script_with_pipeline_main_takes_the_same_command_line(project):
    project.write("experiment.py", SCRIPT)
    ok(script(project, "run", "train", "--train.epochs", "3"))
    assert ran(project) == [{"stage": "train", "params": {"epochs": 3, "lr": 0.1}}]
    assert json.loads((project.root / "out" / "model.json").read_text()) == {"epochs": 3, "lr": 0.1}

    params = ok(script(project, "params"))
    assert params.stdout.splitlines()[0].split()[:2] == ["name", "type"], params.describe()
    for name, text in (
        ("train.epochs", "number of passes"),
        ("train.lr", "learning rate"),
        ("evaluate.k", "folds"),
    ):
        assert text in params.line_with(name)

    usage = ok(script(project, "run", "--help"))
    for flag, text in (("--train.epochs", "number of passes"), ("--evaluate.k", "number of folds")):
        line = usage.line_with(flag)
        assert text in line and "int" in line, line
    assert len(ran(project)) == 1, "params and --help run nothing"
