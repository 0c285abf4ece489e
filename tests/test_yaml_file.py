"""The pipeline file (SPEC section 4): keys, includes, interpolation, safe loading, overrides.

Every test writes a scratch project and reads it back through the command line
(``check``, ``list --format json``, ``params --format json``), as a user would. The
scenarios are registered next to their tests and run once, side by side, each as its own
``python -m stagewise`` process in its own folder (see ``conftest.run_scenarios``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult, Project, Scenario, assert_refused, problem_lines, run_scenarios

STAGES = '''
from stagewise import Item, stage


@stage(outputs={"sky": "sky/{split}/{sim:04d}.npy"}, over=("split", "sim"))
def simulate(item: Item, *, npix: int = 3072, seed: int = 0, label: str = ""):
    """Draw a Gaussian sky.

    Args:
        npix: number of pixels.
        seed: base random seed.
        label: a name for the run.
    """
    return [float(seed)] * npix


@stage(outputs={"sky": "sky_alt/{split}/{sim:04d}.npy"}, over=("split", "sim"))
def simulate_alt(item: Item, *, amplitude: float = 1.0):
    return [amplitude]


@stage(
    inputs={"sky": "simulate.sky", "mask": "mask"},
    outputs={"clean": "clean/{split}/{sim:04d}.npy"},
    over=("split", "sim"),
)
def clean(sky, mask, *, threshold: float = 3.0):
    return sky


@stage(inputs={"clean": "clean.clean"}, outputs={"summary": "summary/summary.json"})
def summarize(clean, *, scale: float = 1.0):
    return {"n": len(clean), "scale": scale}


@stage(outputs={"features": "features.json"})
def preprocess(*, threshold: float = 1.0):
    return {"threshold": threshold}


@stage(inputs={"features": "preprocess.features"}, outputs={"model": "model.json"})
def fit(features, *, cutoff: float = 0.5, epochs: int = 10):
    return {"cutoff": cutoff, "epochs": epochs}


@stage(inputs={"model": "fit.model"}, outputs={"scores": "scores.json"})
def evaluate(model, *, k: int = 1):
    return {"k": k}
'''
MODULE_ORDER = ["simulate", "simulate_alt", "clean", "summarize", "preprocess", "fit", "evaluate"]

# The same stages, with the last three bundled in a Python group that has no shared parameter.
GROUPED_STAGES = (
    STAGES.replace("from stagewise import Item, stage", "from stagewise import Item, group, stage")
    + '\nmodel_train = group("model_train", [preprocess, fit, evaluate])\n'
)

PIPELINE = """
pipeline: cmb_demo
stages_from: [stages.py]
output: out
paths: {data: raw}
sources:
  mask: "{data}/mask.npy"
splits: {train: 4, valid: 2, test: 2}
"""

SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    pipeline: str,
    *args: str,
    stages: str = STAGES,
    files: Mapping[str, str] | None = None,
    env: Mapping[str, str | None] | None = None,
) -> str:
    """Register a project whose command (``check`` by default) runs with the others."""
    SCENARIOS[name] = Scenario(
        {"stages.py": stages, "pipeline.yaml": pipeline, **(files or {})}, args or ("check",), env or {}
    )
    return name


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Project, CliResult]]:
    """The project and command result of a registered scenario."""
    results = run_scenarios(SCENARIOS, tmp_path_factory.mktemp("yaml"))
    return results.__getitem__


def single_problem(project: Project, result: CliResult) -> str:
    """The one problem ``check`` reported (exit 2, no traceback, nothing written)."""
    assert_refused(project, result)
    problems = problem_lines(result)
    assert len(problems) == 1, result.describe()
    return problems[0]


def error_message(result: CliResult) -> str:
    """The error of a command that could not read the pipeline at all (exit 2, one message)."""
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert result.stderr.strip(), result.describe()
    return result.stderr


def assert_mentions(text: str, *fragments: str) -> None:
    missing = [f for f in fragments if f not in text]
    assert not missing, f"{missing!r} not in:\n{text}"


def listed(result: CliResult) -> dict[str, Any]:
    """``list --format json`` output."""
    assert result.code == 0, result.describe()
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def params(result: CliResult) -> dict[str, dict[str, Any]]:
    """``params --format json`` output, as name -> row."""
    assert result.code == 0, result.describe()
    return {row["name"]: row for row in json.loads(result.stdout)}


def stage_entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["stages"] if s["name"] == name)


def assert_checks_clean(project: Project, result: CliResult) -> None:
    assert result.code == 0, result.describe()
    assert not problem_lines(result), result.describe()


# --- unknown keys ------------------------------------------------------------------------------

UNKNOWN_TOP_KEY = scenario("unknown-top-key", PIPELINE + "stage:\n  simulate: {params: {npix: 8}}\n")


def test_unknown_top_level_key_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_TOP_KEY))
    assert_mentions(line, "pipeline.yaml", "'stage'", "did you mean 'stages'")


UNKNOWN_STAGE_KEY = scenario("unknown-stage-key", PIPELINE + "stages:\n  simulate: {param: {npix: 8}}\n")


def test_unknown_key_in_a_stage_entry_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_STAGE_KEY))
    assert_mentions(line, "pipeline.yaml", "stages.simulate", "'param'", "did you mean 'params'")


UNKNOWN_GROUP_KEY = scenario(
    "unknown-group-key",
    PIPELINE
    + "groups:\n  model_train:\n    stages: [preprocess, fit]\n"
    + "    share: {threshold: [preprocess.threshold, fit.cutoff]}\n",
)


def test_unknown_key_in_a_group_entry_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_GROUP_KEY))
    assert_mentions(line, "pipeline.yaml", "groups.model_train", "'share'", "did you mean 'shared'")


UNKNOWN_STAGE_ENTRY = scenario("unknown-stage-entry", PIPELINE + "stages:\n  simulat: {params: {npix: 8}}\n")


def test_stage_entry_naming_an_unknown_stage_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_STAGE_ENTRY))
    assert_mentions(line, "pipeline.yaml", "simulat", "did you mean 'simulate'")


UNKNOWN_GROUP_MEMBER = scenario(
    "unknown-group-member", PIPELINE + "groups:\n  model_train:\n    stages: [preprocess, fitt]\n"
)


def test_new_group_naming_an_unknown_stage_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_GROUP_MEMBER))
    assert_mentions(line, "pipeline.yaml", "groups.model_train", "'fitt'", "did you mean 'fit'")


UNKNOWN_INPUT_OVERRIDE = scenario(
    "unknown-input-override", PIPELINE + "stages:\n  clean:\n    inputs: {skyy: simulate_alt.sky}\n"
)


def test_overriding_an_unknown_input_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_INPUT_OVERRIDE))
    assert_mentions(line, "pipeline.yaml", "stages.clean.inputs", "'skyy'", "did you mean 'sky'")


UNKNOWN_OUTPUT_OVERRIDE = scenario(
    "unknown-output-override", PIPELINE + "stages:\n  clean:\n    outputs: {clena: 'x/{split}/{sim}.npy'}\n"
)


def test_overriding_an_unknown_output_suggests_the_closest(ran) -> None:
    line = single_problem(*ran(UNKNOWN_OUTPUT_OVERRIDE))
    assert_mentions(line, "pipeline.yaml", "stages.clean.outputs", "'clena'", "did you mean 'clean'")


# --- include -----------------------------------------------------------------------------------

INCLUDE_FILE_WINS = scenario(
    "include-file-wins",
    "include: [common.yaml]\nparams: {simulate.npix: 200}\n",
    "params",
    "--format",
    "json",
    files={"common.yaml": PIPELINE + "params: {simulate.npix: 100, simulate.seed: 1}\n"},
)


def test_included_file_is_merged_and_the_including_file_wins(ran) -> None:
    rows = params(ran(INCLUDE_FILE_WINS)[1])
    assert rows["simulate.npix"]["value"] == 200
    assert rows["simulate.seed"]["value"] == 1
    assert rows["simulate.npix"]["origin"] == rows["simulate.seed"]["origin"] == "file"


NESTED_INCLUDES = scenario(
    "nested-includes",
    "include: [machine.yaml]\nparams:\n  simulate: {seed: 7}\n",
    "params",
    "--format",
    "json",
    files={
        "machine.yaml": "include: [base.yaml]\nparams:\n  simulate: {npix: 20}\n",
        "base.yaml": PIPELINE + "params:\n  simulate: {npix: 10, seed: 5}\n  clean: {threshold: 1.5}\n",
    },
)


def test_nested_includes_merge_deeply_each_file_over_those_it_includes(ran) -> None:
    rows = params(ran(NESTED_INCLUDES)[1])
    assert rows["simulate.npix"]["value"] == 20
    assert rows["simulate.seed"]["value"] == 7
    assert rows["clean.threshold"]["value"] == 1.5


INCLUDE_CYCLE = scenario(
    "include-cycle",
    PIPELINE + "include: [first.yaml]\n",
    files={"first.yaml": "include: [second.yaml]\n", "second.yaml": "include: [first.yaml]\n"},
)


def test_include_cycle_is_an_error_naming_the_files(ran) -> None:
    message = error_message(ran(INCLUDE_CYCLE)[1])
    assert_mentions(message, "cycle", "first.yaml", "second.yaml")


MISSING_INCLUDE = scenario("missing-include", PIPELINE + "include: [nowhere.yaml]\n")


def test_include_of_a_missing_file_names_it(ran) -> None:
    project, result = ran(MISSING_INCLUDE)
    assert result.code == 2, result.describe()
    assert "Traceback" not in result.output
    assert "nowhere.yaml" in result.output
    assert not (project.root / "out").exists()


# --- interpolation -----------------------------------------------------------------------------

ENV_PIPELINE = """
stages_from: [stages.py]
output: "${env:SW_TEST_OUTPUT,results}"
paths: {data: "${env:SW_TEST_DATA_ROOT}"}
sources:
  mask: "{data}/${env:SW_TEST_MASK_NAME}.npy"
splits: {train: 2}
params:
  simulate.label: "${env:SW_TEST_LABEL,nightly}"
"""
ENV_VALUES = {
    "SW_TEST_DATA_ROOT": "/srv/sky-data",
    "SW_TEST_MASK_NAME": "mask_v2",
    "SW_TEST_OUTPUT": None,
    "SW_TEST_LABEL": "weekly",
}
ENV_LIST = scenario("env-list", ENV_PIPELINE, "list", "--format", "json", env=ENV_VALUES)
ENV_PARAMS = scenario("env-params", ENV_PIPELINE, "params", "--format", "json", env=ENV_VALUES)


def test_env_references_take_values_from_the_environment_or_their_default(ran) -> None:
    project, result = ran(ENV_LIST)
    data = listed(result)
    assert data["paths"]["data"] == "/srv/sky-data"
    assert data["sources"]["mask"]["template"] == "{data}/mask_v2.npy"
    assert Path(data["output"]) == project.root / "results"


def test_env_reference_with_default_prefers_the_set_variable(ran) -> None:
    rows = params(ran(ENV_PARAMS)[1])
    assert rows["simulate.label"]["value"] == "weekly"


ENV_TYPED = scenario(
    "env-typed",
    PIPELINE + 'params: {simulate.npix: "${env:SW_TEST_NPIX,64}", simulate.seed: "${env:SW_TEST_SEED,3}"}\n',
    "params",
    "--format",
    "json",
    env={"SW_TEST_NPIX": "128", "SW_TEST_SEED": None},
)


def test_env_values_for_typed_parameters_are_parsed_by_the_declared_type(ran) -> None:
    rows = params(ran(ENV_TYPED)[1])
    assert rows["simulate.npix"]["value"] == 128
    assert rows["simulate.seed"]["value"] == 3


ENV_MISSING = scenario(
    "env-missing",
    PIPELINE.replace("paths: {data: raw}", 'paths: {data: "${env:SW_TEST_SURELY_UNSET}"}'),
    env={"SW_TEST_SURELY_UNSET": None},
)


def test_missing_env_variable_without_default_is_an_error_naming_it(ran) -> None:
    line = single_problem(*ran(ENV_MISSING))
    assert_mentions(line, "pipeline.yaml", "paths.data", "SW_TEST_SURELY_UNSET")


SAME_FILE_REFS = scenario(
    "same-file-refs",
    PIPELINE.replace('mask: "{data}/mask.npy"', 'mask: "${paths.data}/masks/mask.npy"').replace(
        "output: out", 'output: "${paths.data}/derived"'
    ),
    "list",
    "--format",
    "json",
)
SAME_FILE_REF_PARAMS = scenario(
    "same-file-ref-params",
    PIPELINE + 'params: {simulate.label: "${pipeline}-${paths.data}"}\n',
    "params",
    "--format",
    "json",
)


def test_references_to_values_of_the_same_file_are_replaced(ran) -> None:
    project, result = ran(SAME_FILE_REFS)
    data = listed(result)
    assert data["sources"]["mask"]["template"] == "raw/masks/mask.npy"
    assert Path(data["output"]) == project.root / "raw" / "derived"
    assert params(ran(SAME_FILE_REF_PARAMS)[1])["simulate.label"]["value"] == "cmb_demo-raw"


DANGLING_REF = scenario("dangling-ref", PIPELINE.replace("output: out", 'output: "${paths.nothing}/out"'))


def test_reference_to_nothing_in_the_file_is_an_error(ran) -> None:
    project, result = ran(DANGLING_REF)
    assert result.code == 2, result.describe()
    assert_mentions(result.line_with("paths.nothing"), "pipeline.yaml")
    assert not (project.root / "out").exists()


# --- reading the file ------------------------------------------------------------------------

INVALID_YAML = scenario("invalid-yaml", "pipeline: demo\nstages_from: [stages.py]\noutput: out: bad\n")


def test_invalid_yaml_is_reported_with_file_and_line(ran) -> None:
    message = error_message(ran(INVALID_YAML)[1])
    assert_mentions(message, "pipeline.yaml:3")


UNSAFE_TAG = scenario(
    "unsafe-tag", 'pipeline: !!python/object/apply:os.system ["touch pwned"]\nstages_from: [stages.py]\n'
)


def test_python_tags_are_refused_not_executed(ran) -> None:
    project, result = ran(UNSAFE_TAG)
    message = error_message(result)
    assert_mentions(message, "pipeline.yaml:1")
    assert not (project.root / "pwned").exists(), "the YAML tag was executed"


NOT_A_MAPPING = scenario("not-a-mapping", "- stages.py\n- out\n")


def test_file_that_is_not_a_mapping_is_refused_clearly(ran) -> None:
    assert_mentions(error_message(ran(NOT_A_MAPPING)[1]), "pipeline.yaml", "mapping")


def test_missing_pipeline_file_in_the_folder_is_a_clear_error(project: Project) -> None:
    result = project.check()
    assert_mentions(error_message(result), "pipeline.yaml")
    assert not (project.root / "out").exists()


def test_missing_named_pipeline_file_is_a_clear_error(project: Project) -> None:
    assert_mentions(error_message(project.check("elsewhere.yaml")), "elsewhere.yaml")


MISSING_SOURCE = scenario("missing-source", PIPELINE)
PRESENT_SOURCE = scenario("present-source", PIPELINE, files={"raw/mask.npy": "not read by check"})


def test_check_warns_about_missing_source_files_and_passes(ran) -> None:
    project, result = ran(MISSING_SOURCE)
    assert result.code == 0, result.describe()
    warning = next((line for line in result.stderr.splitlines() if "warning" in line.lower()), "")
    assert_mentions(warning, "mask", "raw/mask.npy")
    assert "mask" not in result.stdout.replace("OK", ""), "warnings go to stderr"
    assert not (project.root / "out").exists()


def test_check_does_not_warn_when_source_files_exist(ran) -> None:
    _, result = ran(PRESENT_SOURCE)
    assert result.code == 0, result.describe()
    assert "warning" not in result.stderr.lower(), result.describe()


RELATIVE_TO_FILE = scenario(
    "relative-to-file",
    "",  # the pipeline lives in sub/
    "list",
    "sub/pipeline.yaml",
    "--format",
    "json",
    files={
        "sub/pipeline.yaml": PIPELINE.replace(
            "stages_from: [stages.py]", "stages_from: [stages.py, more_stages]"
        ),
        "sub/stages.py": STAGES.replace("npix: int = 3072", "npix: int = DEFAULT_NPIX").replace(
            "from stagewise import Item, stage",
            "from helpers import DEFAULT_NPIX\nfrom stagewise import Item, stage",
        ),
        "sub/helpers.py": "DEFAULT_NPIX = 512\n",
        "sub/more_stages.py": """
            from stagewise import stage

            @stage(outputs={"extra": "extra.json"})
            def extra_stage():
                return {}
            """,
    },
)


def test_pipeline_file_paths_modules_and_neighbours_are_relative_to_the_file(ran) -> None:
    project, result = ran(RELATIVE_TO_FILE)
    data = listed(result)
    assert Path(data["output"]) == project.root / "sub" / "out"
    assert Path(data["paths"]["data"]) == project.root / "sub" / "raw"
    names = [s["name"] for s in data["stages"]]
    assert "simulate" in names
    assert "extra_stage" in names


# --- stage entries override the Python declaration ----------------------------------------------

SPLITS_OVERRIDE = scenario(
    "splits-override", PIPELINE + "stages:\n  clean: {splits: [test]}\n", "list", "--format", "json"
)


def test_stage_entry_restricts_splits(ran) -> None:
    clean = stage_entry(listed(ran(SPLITS_OVERRIDE)[1]), "clean")
    assert clean["splits"] == ["test"]
    assert clean["items"] == 2


REWIRE = PIPELINE.replace(
    'mask: "{data}/mask.npy"', 'mask: "{data}/mask.npy"\n  wide_mask: "{data}/wide_mask.npy"'
) + ("stages:\n  clean:\n    inputs: {sky: simulate_alt.sky, mask: wide_mask}\n")
REWIRE_LIST = scenario("rewire-list", REWIRE, "list", "--format", "json")
REWIRE_CHECK = scenario("rewire-check", REWIRE)


def test_stage_entry_rewires_inputs_to_another_output_and_source(ran) -> None:
    clean = stage_entry(listed(ran(REWIRE_LIST)[1]), "clean")
    assert clean["inputs"] == {"sky": "simulate_alt.sky", "mask": "wide_mask"}
    assert_checks_clean(*ran(REWIRE_CHECK))


OUTPUTS_OVERRIDE = PIPELINE + (
    "stages:\n"
    "  clean:\n    outputs: {clean: 'cleaned/{split}/{sim}.npy'}\n"
    "  simulate:\n    outputs: {sky: {template: 'sky/{split}/{sim}.dat', handler: npy}}\n"
    "  summarize:\n    outputs: {summary: 'summary/final.yaml'}\n"
)
OUTPUTS_LIST = scenario("outputs-list", OUTPUTS_OVERRIDE, "list", "--format", "json")
OUTPUTS_CHECK = scenario("outputs-check", OUTPUTS_OVERRIDE)


def test_stage_entry_overrides_output_templates_and_handlers(ran) -> None:
    data = listed(ran(OUTPUTS_LIST)[1])
    assert stage_entry(data, "clean")["outputs"]["clean"] == {
        "template": "cleaned/{split}/{sim}.npy",
        "handler": "npy",
    }
    assert stage_entry(data, "simulate")["outputs"]["sky"] == {
        "template": "sky/{split}/{sim}.dat",
        "handler": "npy",
    }
    assert stage_entry(data, "summarize")["outputs"]["summary"] == {
        "template": "summary/final.yaml",
        "handler": "yaml",
    }
    assert_checks_clean(*ran(OUTPUTS_CHECK))


DISPLAY_ORDER = scenario(
    "display-order",
    PIPELINE + "stages:\n  summarize: {}\n  clean: {params: {threshold: 2.5}}\n  simulate: {}\n",
    "list",
    "--format",
    "json",
)


def test_listed_stage_order_is_the_display_order(ran) -> None:
    names = [s["name"] for s in listed(ran(DISPLAY_ORDER)[1])["stages"]]
    assert names[:3] == ["summarize", "clean", "simulate"]
    assert names[3:] == [n for n in MODULE_ORDER if n not in ("summarize", "clean", "simulate")]


# --- groups ------------------------------------------------------------------------------------

NEW_GROUP = PIPELINE + (
    "groups:\n"
    "  model_train:\n"
    "    stages: [preprocess, fit, evaluate]\n"
    "    shared: {threshold: [preprocess.threshold, fit.cutoff]}\n"
    "    params: {threshold: 7, evaluate.k: 5}\n"
)
NEW_GROUP_LIST = scenario("new-group-list", NEW_GROUP, "list", "--format", "json")
NEW_GROUP_PARAMS = scenario("new-group-params", NEW_GROUP, "params", "--format", "json")


def test_groups_entry_defines_a_new_group_from_stages(ran) -> None:
    data = listed(ran(NEW_GROUP_LIST)[1])
    assert data["groups"]["model_train"]["stages"] == ["preprocess", "fit", "evaluate"]
    assert data["groups"]["model_train"]["shared"] == {"threshold": ["preprocess.threshold", "fit.cutoff"]}
    names = [s["name"] for s in data["stages"]]
    assert {"model_train:preprocess", "model_train:fit", "model_train:evaluate"} <= set(names)
    assert not {"preprocess", "fit", "evaluate"} & set(names)


def test_new_group_shared_and_stage_params_set_their_targets(ran) -> None:
    rows = params(ran(NEW_GROUP_PARAMS)[1])
    assert rows["model_train.preprocess.threshold"]["value"] == 7
    assert rows["model_train.fit.cutoff"]["value"] == 7
    assert rows["model_train.evaluate.k"]["value"] == 5
    assert rows["model_train.fit.epochs"]["origin"] == "default"


EXISTING_GROUP = scenario(
    "existing-group",
    PIPELINE
    + "groups:\n  model_train:\n"
    + "    shared: {threshold: [preprocess.threshold, fit.cutoff]}\n"
    + "    params: {threshold: 2.5}\n"
    + "stages:\n  model_train:fit: {params: {epochs: 4}}\n",
    "params",
    "--format",
    "json",
    stages=GROUPED_STAGES,
)


def test_groups_entry_adds_shared_params_to_a_python_group(ran) -> None:
    rows = params(ran(EXISTING_GROUP)[1])
    assert rows["model_train.preprocess.threshold"]["value"] == 2.5
    assert rows["model_train.fit.cutoff"]["value"] == 2.5
    assert rows["model_train.fit.epochs"]["value"] == 4


# --- parameters ------------------------------------------------------------------------------

MIXED_PARAMS = scenario(
    "mixed-params",
    PIPELINE
    + "stages:\n  simulate: {params: {npix: 768}}\n"
    + "params:\n  fit: {epochs: 3}\n  simulate.seed: 5\n  clean: {threshold: 2}\n",
    "params",
    "--format",
    "json",
)


def test_params_nested_flat_and_per_stage_all_apply(ran) -> None:
    rows = params(ran(MIXED_PARAMS)[1])
    assert rows["fit.epochs"]["value"] == 3
    assert rows["simulate.seed"]["value"] == 5
    assert rows["simulate.npix"]["value"] == 768
    assert rows["clean.threshold"]["value"] == 2.0
    assert isinstance(rows["clean.threshold"]["value"], float)
    assert {rows[k]["origin"] for k in ("fit.epochs", "simulate.seed", "simulate.npix")} == {"file"}
    assert rows["fit.cutoff"]["origin"] == "default"


NESTED_GROUP_PARAMS = scenario(
    "nested-group-params",
    PIPELINE + "params:\n  model_train:\n    evaluate: {k: 9}\n    fit: {epochs: 2}\n",
    "params",
    "--format",
    "json",
    stages=GROUPED_STAGES,
)


def test_nested_params_reach_stages_inside_a_group(ran) -> None:
    rows = params(ran(NESTED_GROUP_PARAMS)[1])
    assert rows["model_train.evaluate.k"]["value"] == 9
    assert rows["model_train.fit.epochs"]["value"] == 2
