"""Groups (Pimlico's multistage modules) from the outside: selectors, shared parameters, ``--next``.

A group ``model_train`` of three stages (preprocess -> fit -> evaluate) with a shared parameter
``threshold`` that sets ``preprocess.threshold`` and ``fit.cutoff``, defined either in Python
(``group(...)`` in the stages module, collected by ``stages_from``) or in the pipeline file
(``groups:`` with ``stages:``, ``shared:`` and ``params:``). Every stage body appends one JSON line
to ``ran.log``, so a test sees which bodies ran and with which values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from conftest import CliResult, Project

STAGES = '''
import json
from pathlib import Path

from stagewise import group, stage

LOG = Path(__file__).with_name("ran.log")


def ran(name, **params):
    with LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": name, "params": params}) + "\\n")


@stage(inputs={"data": "data"}, outputs={"kept": "kept.json"})
def preprocess(data, *, threshold: float = 1.0):
    """Keep the values at or above a threshold.

    Args:
        threshold: smallest value kept.
    """
    ran("preprocess", threshold=threshold)
    return [v for v in data if v >= threshold]


@stage(inputs={"kept": "preprocess.kept"}, outputs={"model": "model.json"})
def fit(kept, *, cutoff: float = 2.0, degree: int = 1):
    """Count the kept values above a cutoff.

    Args:
        cutoff: values above this count as positive.
        degree: polynomial degree.
    """
    ran("fit", cutoff=cutoff, degree=degree)
    return {"positives": sum(v > cutoff for v in kept), "cutoff": cutoff}


@stage(inputs={"model": "fit.model"}, outputs={"score": "score.json"})
def evaluate(model, *, k: int = 3):
    """Score the fit.

    Args:
        k: number of folds.
    """
    ran("evaluate", k=k)
    return {"score": model["positives"] * k}
'''

PYTHON_GROUP = """

model_train = group(
    "model_train",
    [preprocess, fit, evaluate],
    shared={"threshold": ["preprocess.threshold", "fit.cutoff"]},
    params={"evaluate.k": 5},
)
"""

HEAD = """
pipeline: grouped
stages_from: [stages.py]
output: out
sources: {data: raw/data.json}
"""

YAML_GROUP = """
groups:
  model_train:
    stages: [preprocess, fit, evaluate]
    shared: {threshold: [preprocess.threshold, fit.cutoff]}
    params: {evaluate.k: 5}
"""

MEMBERS = ["model_train:preprocess", "model_train:fit", "model_train:evaluate"]
PARAM_NAMES = {
    "model_train.preprocess.threshold",
    "model_train.fit.cutoff",
    "model_train.fit.degree",
    "model_train.evaluate.k",
}

# Runs whose subject is selection and parameters use the in-process executor: it starts faster.
SERIAL_RUN = ("run", "--executor", "serial")


def make_project(project: Project, definition: str) -> Project:
    """The grouped pipeline, its group defined in Python or in the pipeline file."""
    project.write("raw/data.json", "[1, 5, 9, 2]")
    if definition == "python":
        project.stages(STAGES + PYTHON_GROUP)
        project.pipeline(HEAD)
    else:
        project.stages(STAGES)
        project.pipeline(HEAD + YAML_GROUP)
    return project


@pytest.fixture(params=["python", "yaml"])
def grouped(request: pytest.FixtureRequest, project: Project) -> Project:
    """The grouped pipeline, once with a Python ``group(...)``, once with a YAML ``groups:``."""
    return make_project(project, request.param)


@pytest.fixture
def py_grouped(project: Project) -> Project:
    """The grouped pipeline with the group defined in Python."""
    return make_project(project, "python")


def ran(project: Project) -> list[dict[str, Any]]:
    log = project.root / "ran.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def ran_stages(project: Project) -> list[str]:
    return [entry["stage"] for entry in ran(project)]


def forget_runs(project: Project) -> None:
    (project.root / "ran.log").unlink(missing_ok=True)


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.describe()
    return result


def values(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """name -> (value, origin)."""
    return {name: (row["value"], row["origin"]) for name, row in rows.items()}


# --- parameters -----------------------------------------------------------------------------------


def test_group_parameters_are_named_by_group_and_the_shared_one_sets_every_target(grouped):
    unset = grouped.params_json()
    assert set(unset) == PARAM_NAMES
    assert values(unset) == {
        "model_train.preprocess.threshold": (1.0, "default"),  # unset shared: each target its own default
        "model_train.fit.cutoff": (2.0, "default"),
        "model_train.fit.degree": (1, "default"),
        "model_train.evaluate.k": (5, "file"),
    }
    shared = grouped.params_json("--model_train.threshold", "7", "--model_train.fit.degree", "3")
    assert values(shared) == {
        "model_train.preprocess.threshold": (7.0, "cli"),
        "model_train.fit.cutoff": (7.0, "cli"),
        "model_train.fit.degree": (3, "cli"),
        "model_train.evaluate.k": (5, "file"),
    }


def test_group_question_mark_prints_the_groups_stages_and_runs_nothing(grouped):
    result = ok(grouped.cli("run", "model_train:?"))
    for name in ("preprocess", "fit", "evaluate"):
        assert name in result.stdout, result.describe()
    assert ran(grouped) == []
    assert not (grouped.root / "out" / "kept.json").exists()


def test_run_help_lists_group_parameters_and_the_shared_one(py_grouped):
    result = ok(py_grouped.cli("run", "--help"))
    for flag, help_text in (
        ("--model_train.preprocess.threshold", "smallest value kept."),
        ("--model_train.fit.cutoff", "values above this count as positive."),
        ("--model_train.evaluate.k", "number of folds."),
    ):
        assert help_text in result.line_with(flag)
    shared = result.line_with("--model_train.threshold")
    assert "preprocess.threshold" in shared and "fit.cutoff" in shared, shared


def test_shared_and_direct_values_that_differ_in_one_layer_exit_2(py_grouped):
    clash = py_grouped.cli(*SERIAL_RUN, "--model_train.threshold", "7", "--model_train.fit.cutoff", "5")
    assert clash.code == 2, clash.describe()
    clash.line_with("model_train.threshold", "model_train.fit.cutoff")
    assert "Traceback" not in clash.output
    assert ran(py_grouped) == []

    # The same value twice is no contradiction.
    agree = py_grouped.params_json("--model_train.threshold", "7", "--model_train.fit.cutoff", "7")
    assert agree["model_train.fit.cutoff"]["value"] == 7.0

    # Within the pipeline file too: the group's params and the file's params are one layer.
    py_grouped.pipeline(
        HEAD + "params: {model_train.threshold: 7, model_train.fit.cutoff: 5}\n", "clash.yaml"
    )
    in_file = py_grouped.check("clash.yaml")
    assert in_file.code == 2, in_file.describe()
    in_file.line_with("model_train.threshold", "model_train.fit.cutoff")


def test_across_layers_the_higher_layer_wins_between_shared_and_direct_values(py_grouped):
    py_grouped.pipeline(HEAD + "params: {model_train.threshold: 7}\n", "shared_in_file.yaml")
    py_grouped.pipeline(HEAD + "params: {model_train.fit.cutoff: 5}\n", "direct_in_file.yaml")
    py_grouped.write("nested.yaml", "model_train:\n  threshold: 4\n  fit: {degree: 3}\n")
    py_grouped.write("direct.yaml", "model_train.fit.cutoff: 3\n")

    direct_wins = py_grouped.params_json("shared_in_file.yaml", "--model_train.fit.cutoff", "5")
    assert values(direct_wins)["model_train.preprocess.threshold"] == (7.0, "file")
    assert values(direct_wins)["model_train.fit.cutoff"] == (5.0, "cli")

    shared_wins = py_grouped.params_json("direct_in_file.yaml", "--model_train.threshold", "7")
    assert values(shared_wins)["model_train.preprocess.threshold"] == (7.0, "cli")
    assert values(shared_wins)["model_train.fit.cutoff"] == (7.0, "cli")

    config = py_grouped.params_json(
        "direct_in_file.yaml", "--config", "nested.yaml", "--model_train.preprocess.threshold", "6"
    )
    assert values(config) == {
        "model_train.preprocess.threshold": (6.0, "cli"),
        "model_train.fit.cutoff": (4.0, "config:nested.yaml"),  # the config file is above the file
        "model_train.fit.degree": (3, "config:nested.yaml"),
        "model_train.evaluate.k": (5, "file"),
    }

    later_config = py_grouped.params_json("--config", "nested.yaml", "--config", "direct.yaml")
    assert values(later_config)["model_train.preprocess.threshold"] == (4.0, "config:nested.yaml")
    assert values(later_config)["model_train.fit.cutoff"] == (3.0, "config:direct.yaml")


def test_shared_values_in_a_yaml_group_are_file_values_below_the_command_line(project):
    make_project(project, "yaml")
    project.pipeline(
        HEAD + YAML_GROUP.replace("{evaluate.k: 5}", "{threshold: 7, evaluate.k: 5}"), "seven.yaml"
    )
    rows = project.params_json("seven.yaml", "--model_train.fit.cutoff", "5")
    assert values(rows) == {
        "model_train.preprocess.threshold": (7.0, "file"),
        "model_train.fit.cutoff": (5.0, "cli"),
        "model_train.fit.degree": (1, "default"),
        "model_train.evaluate.k": (5, "file"),
    }


def test_unknown_shared_target_fails_check(project):
    project.write("raw/data.json", "[1, 5, 9, 2]")
    project.stages(STAGES + PYTHON_GROUP.replace('"fit.cutoff"', '"fitt.cutoff"'), "typo_stages.py")
    project.stages(STAGES)
    project.pipeline(HEAD.replace("stages.py", "typo_stages.py"), "python_typo.yaml")
    project.pipeline(HEAD + YAML_GROUP.replace("fit.cutoff]", "fit.cutof]"), "yaml_typo.yaml")

    in_python = project.check("python_typo.yaml")
    assert in_python.code == 2, in_python.describe()
    in_python.line_with("fitt.cutoff", "model_train")
    assert "did you mean 'fit'" in in_python.output, in_python.describe()
    in_yaml = project.check("yaml_typo.yaml")
    assert in_yaml.code == 2, in_yaml.describe()
    in_yaml.line_with("fit.cutof", "model_train")
    assert "did you mean 'cutoff'" in in_yaml.output, in_yaml.describe()


# --- selectors ------------------------------------------------------------------------------------


def test_group_selectors_pick_one_member_or_every_member(py_grouped):
    ok(py_grouped.cli(*SERIAL_RUN, "model_train:preprocess"))
    assert ran_stages(py_grouped) == ["preprocess"]
    forget_runs(py_grouped)
    ok(py_grouped.cli(*SERIAL_RUN, "fit"))  # a bare name, unique in the pipeline
    assert ran_stages(py_grouped) == ["fit"]
    for selector in ("model_train:all", "model_train:*", "model_train"):
        forget_runs(py_grouped)
        ok(py_grouped.cli(*SERIAL_RUN, selector, "--force"))
        assert ran_stages(py_grouped) == ["preprocess", "fit", "evaluate"], selector


def test_unknown_stage_in_a_group_selector_exits_2_naming_the_groups_stages(py_grouped):
    result = py_grouped.cli("run", "model_train:fitt")
    assert result.code == 2, result.describe()
    result.line_with("fitt")
    assert "did you mean 'fit'" in result.output, result.describe()
    assert ran(py_grouped) == []


def test_run_next_runs_one_ready_stage_per_call_then_says_nothing_to_do(py_grouped):
    for expected in ("preprocess", "fit", "evaluate"):
        forget_runs(py_grouped)
        ok(py_grouped.cli(*SERIAL_RUN, "--next"))
        assert ran_stages(py_grouped) == [expected]
    forget_runs(py_grouped)
    done = ok(py_grouped.cli(*SERIAL_RUN, "--next"))
    assert "nothing to do" in done.stdout, done.describe()
    assert ran(py_grouped) == []
    # Work is whatever is out of date, not only what never ran: a new cutoff makes fit next.
    ok(py_grouped.cli(*SERIAL_RUN, "--next", "--model_train.fit.cutoff", "9"))
    assert ran_stages(py_grouped) == ["fit"]


# --- groups in list, status and graph -------------------------------------------------------------


def test_groups_show_in_list_status_and_graph(grouped):
    listing = grouped.list_json()
    assert listing["groups"]["model_train"]["stages"] == ["preprocess", "fit", "evaluate"]
    assert listing["groups"]["model_train"]["shared"] == {"threshold": ["preprocess.threshold", "fit.cutoff"]}
    assert [s["name"] for s in listing["stages"]] == MEMBERS
    assert {s["group"] for s in listing["stages"]} == {"model_train"}

    status = ok(grouped.cli("status", "--format", "json"))
    assert [row["stage"] for row in json.loads(status.stdout)] == MEMBERS

    graph = ok(grouped.cli("graph")).stdout.splitlines()
    starts = [i for i, line in enumerate(graph) if line.split()[:2] == ["subgraph", "model_train"]]
    assert len(starts) == 1, "\n".join(graph)
    end = next(i for i in range(starts[0], len(graph)) if graph[i].strip() == "end")
    inside = "\n".join(graph[starts[0] + 1 : end])
    for member in MEMBERS:
        assert member in inside, f"{member} not inside the subgraph:\n" + "\n".join(graph)


# --- Python API -----------------------------------------------------------------------------------

API_SCRIPT = """
import json

from stagewise import Pipeline
from stages import model_train

if __name__ == "__main__":
    pipeline = Pipeline([model_train], sources={"data": "raw/data.json"}, output="out")
    first = pipeline.run(["model_train:preprocess"])
    second = pipeline.run(["model_train:fit"], params={"model_train.threshold": 7})
    with_seven = pipeline.status(params={"model_train.threshold": 7})
    as_run = pipeline.status(params={"model_train.fit.cutoff": 7})
    defaults = pipeline.status()
    print(json.dumps({
        "ok": [first.ok, second.ok],
        "with_seven": {s.stage: {"done": s.done, "stale": s.stale} for s in with_seven},
        "as_run": {s.stage: {"done": s.done, "stale": s.stale} for s in as_run},
        "defaults": {s.stage: {"done": s.done, "stale": s.stale} for s in defaults},
    }))
"""


def test_python_api_runs_one_group_stage_with_a_shared_value_and_reports_status(py_grouped):
    py_grouped.write("api.py", API_SCRIPT)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "api.py"],
        cwd=py_grouped.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] == [True, True]
    assert ran(py_grouped) == [
        {"stage": "preprocess", "params": {"threshold": 1.0}},
        {"stage": "fit", "params": {"cutoff": 7.0, "degree": 1}},
    ]
    model = json.loads((py_grouped.root / "out" / "model.json").read_text())
    assert model == {"positives": 1, "cutoff": 7.0}  # of the kept 1, 5, 9, 2 only 9 is above 7
    # The values each stage ran with: preprocess's default threshold, fit's cutoff of 7.
    assert report["as_run"] == {
        "model_train:preprocess": {"done": 1, "stale": 0},
        "model_train:fit": {"done": 1, "stale": 0},
        "model_train:evaluate": {"done": 0, "stale": 0},
    }
    assert report["with_seven"]["model_train:preprocess"] == {"done": 0, "stale": 1}  # threshold now 7
    assert report["defaults"]["model_train:preprocess"] == {"done": 1, "stale": 0}
    assert report["defaults"]["model_train:fit"] == {"done": 0, "stale": 1}  # cutoff back to 2
