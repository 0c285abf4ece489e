"""Prerun validation (SPEC section 10), driven as a user would: ``stagewise check`` on scratch projects.

Each problem is planted on its own in a small pipeline (exactly one problem reported, naming
the file, stage, parameter and place at fault), then several together in one pipeline.
``check`` prints one problem per ``  - `` bullet line on stdout and exits 2; it never writes
the output folder. A few tests go through the Python API: ``stagewise.load(path).check()``.

The scenarios are registered next to their tests and run once, side by side, each as its own
``python -m stagewise check`` process in its own folder (see ``conftest.run_scenarios``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult, Project, Scenario, assert_refused, problem_lines, run_scenarios

PIPELINE = """
pipeline: cmb_demo
stages_from: [stages.py]
output: out
paths: {data: raw}
sources:
  mask: "{data}/mask.npy"
splits: {train: 4, valid: 2, test: 2}
dims: {freq: [30, 100, 353]}
"""

# The SPEC section 3 example, without numpy so that each check starts fast.
SPEC_STAGES = '''
from stagewise import Item, stage


@stage(outputs={"sky": "sky/{split}/{sim:04d}.npy"}, over=("split", "sim"))
def simulate(item: Item, *, npix: int = 3072, seed: int = 0):
    """Draw a Gaussian sky.

    Args:
        npix: number of pixels.
        seed: base random seed.
    """
    return [float(seed)] * npix


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
'''

SIMULATE_DECORATOR = 'over=("split", "sim"))\ndef simulate'
CLEAN_DECORATOR = 'over=("split", "sim"),\n)\ndef clean'


def replace_text(text: str, *pairs: tuple[str, str]) -> str:
    """``text`` with each ``old`` replaced by ``new``; fails if an ``old`` is not there."""
    for old, new in pairs:
        assert old in text, f"{old!r} not in the scenario text"
        text = text.replace(old, new)
    return text


def with_stages(*pairs: tuple[str, str]) -> str:
    return replace_text(SPEC_STAGES, *pairs)


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, stages: str = SPEC_STAGES, pipeline: str = PIPELINE, *, args: tuple[str, ...] = ("check",)
) -> str:
    """Register a project (stages.py + pipeline.yaml) whose command runs with the others."""
    SCENARIOS[name] = Scenario({"stages.py": stages, "pipeline.yaml": pipeline}, args)
    return name


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Project, CliResult]]:
    """The project and command result of a registered scenario."""
    results = run_scenarios(SCENARIOS, tmp_path_factory.mktemp("checks"))
    return results.__getitem__


def single_problem(project: Project, result: CliResult) -> str:
    """The one problem reported; fails when check passed or reported several."""
    assert_refused(project, result)
    problems = problem_lines(result)
    assert len(problems) == 1, result.describe()
    return problems[0]


def assert_mentions(line: str, *fragments: str) -> None:
    missing = [f for f in fragments if f not in line]
    assert not missing, f"{missing!r} not in problem line:\n{line}"


def assert_passes(project: Project, result: CliResult) -> None:
    assert result.code == 0, result.describe()
    assert not problem_lines(result), result.describe()
    assert not (project.root / "out").exists(), "check must not write the output folder"


# --- a valid pipeline ------------------------------------------------------------------------


def test_spec_example_pipeline_passes_check_without_writing(project: Project) -> None:
    project.stages(SPEC_STAGES)
    project.pipeline(PIPELINE)
    project.write("raw/mask.npy", "not read by check")
    result = project.check()
    assert_passes(project, result)
    assert "OK" in result.stdout
    assert result.stderr == "", result.describe()


# --- stage modules import ----------------------------------------------------------------------

SYNTAX_ERROR = scenario(
    "syntax-error",
    """
    from stagewise import stage

    @stage(outputs={"a": "a.json"})
    def broken(:
        return {}
    """,
)


def test_stage_module_with_syntax_error_names_file_and_line(checked) -> None:
    project, result = checked(SYNTAX_ERROR)
    line_no = (project.root / "stages.py").read_text().splitlines().index("def broken(:") + 1
    line = single_problem(project, result)
    assert_mentions(line, "pipeline.yaml", "stages.py", "SyntaxError", f"line {line_no}")


RAISES_AT_IMPORT = scenario(
    "raises-at-import",
    """
    from stagewise import stage

    SETTINGS = {}
    raise RuntimeError("cannot reach the settings server")
    """,
)


def test_stage_module_raising_at_import_names_file_line_and_exception(checked) -> None:
    project, result = checked(RAISES_AT_IMPORT)
    lines = (project.root / "stages.py").read_text().splitlines()
    line_no = lines.index('raise RuntimeError("cannot reach the settings server")') + 1
    line = single_problem(project, result)
    assert_mentions(
        line, "stages.py", "RuntimeError", "cannot reach the settings server", f"stages.py:{line_no}"
    )


def test_import_error_in_a_neighbour_module_names_that_module(project: Project) -> None:
    project.write("helpers.py", "LIMIT = 1 / 0\n")
    project.stages(
        """
        from helpers import LIMIT
        from stagewise import stage

        @stage(outputs={"a": "a.json"})
        def uses_limit():
            return {"limit": LIMIT}
        """
    )
    project.pipeline(PIPELINE)
    line = single_problem(project, project.check())
    assert_mentions(line, "stages.py", "ZeroDivisionError", "helpers.py")


MISSING_MODULE_FILE = scenario(
    "missing-module-file",
    pipeline=replace_text(PIPELINE, ("stages_from: [stages.py]", "stages_from: [stages.py, stagez.py]")),
)


def test_stages_from_naming_a_missing_file_is_reported(checked) -> None:
    line = single_problem(*checked(MISSING_MODULE_FILE))
    assert_mentions(line, "pipeline.yaml", "stages_from", "stagez.py")


# --- input references ----------------------------------------------------------------------------

UNKNOWN_STAGE_REF = scenario(
    "unknown-stage-ref", with_stages(('"sky": "simulate.sky"', '"sky": "simulat.sky"'))
)


def test_input_naming_an_unknown_stage_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_STAGE_REF))
    assert_mentions(line, "pipeline.yaml", "clean", "inputs.sky", "'simulat'", "did you mean 'simulate'")


UNKNOWN_OUTPUT_REF = scenario(
    "unknown-output-ref", with_stages(('"sky": "simulate.sky"', '"sky": "simulate.skyy"'))
)


def test_input_naming_an_unknown_output_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_OUTPUT_REF))
    assert_mentions(line, "pipeline.yaml", "clean", "inputs.sky", "'skyy'", "did you mean 'sky'")


UNKNOWN_SOURCE_REF = scenario("unknown-source-ref", with_stages(('"mask": "mask"', '"mask": "msk"')))


def test_input_naming_an_unknown_source_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_SOURCE_REF))
    assert_mentions(line, "pipeline.yaml", "clean", "inputs.mask", "'msk'", "did you mean 'mask'")


STAGE_AS_REF = scenario("stage-as-ref", with_stages(('"sky": "simulate.sky"', '"sky": "simulate"')))


def test_input_naming_a_stage_instead_of_an_output_lists_its_outputs(checked) -> None:
    line = single_problem(*checked(STAGE_AS_REF))
    assert_mentions(line, "clean", "inputs.sky", "'simulate' is a stage", "simulate.sky")


CYCLE = scenario(
    "cycle",
    """
    from stagewise import stage

    @stage(inputs={"y": "second.y"}, outputs={"x": "x.json"})
    def first(y):
        return y

    @stage(inputs={"x": "first.x"}, outputs={"y": "y.json"})
    def second(x):
        return x
    """,
)


def test_stages_reading_each_other_form_a_cycle_shown_in_order(checked) -> None:
    line = single_problem(*checked(CYCLE))
    assert "cycle" in line
    assert re.search(r"first -> second -> first|second -> first -> second", line), line


SELF_CYCLE = scenario(
    "self-cycle",
    """
    from stagewise import stage

    @stage(inputs={"prev": "refine.model"}, outputs={"model": "model.json"})
    def refine(prev):
        return prev
    """,
)


def test_stage_reading_its_own_output_is_a_cycle(checked) -> None:
    line = single_problem(*checked(SELF_CYCLE))
    assert_mentions(line, "cycle", "refine -> refine")


# --- templates ---------------------------------------------------------------------------------

UNKNOWN_FIELD = scenario(
    "unknown-template-field",
    with_stages(('"sky/{split}/{sim:04d}.npy"', '"sky/{split}/{sim:04d}_{fre}.npy"')),
)


def test_unknown_template_field_suggests_a_known_dim(checked) -> None:
    line = single_problem(*checked(UNKNOWN_FIELD))
    assert_mentions(line, "pipeline.yaml", "simulate", "outputs.sky", "{fre}", "did you mean 'freq'")


TEMPLATE_LACKS_DIM = scenario(
    "template-lacks-dim", with_stages(('"clean/{split}/{sim:04d}.npy"', '"clean/{split}.npy"'))
)


def test_output_template_lacking_a_stage_dim_is_refused(checked) -> None:
    line = single_problem(*checked(TEMPLATE_LACKS_DIM))
    assert_mentions(line, "clean", "outputs.clean", "clean/{split}.npy", "{sim}")


TEMPLATE_EXTRA_DIM = scenario(
    "template-extra-dim",
    """
    from stagewise import stage

    @stage(outputs={"stats": "stats/{split}/{freq}.json"}, over=("split",))
    def tally(item):
        return {}
    """,
)


def test_output_template_using_a_dim_the_stage_is_not_over_is_refused(checked) -> None:
    line = single_problem(*checked(TEMPLATE_EXTRA_DIM))
    assert_mentions(line, "tally", "outputs.stats", "{freq}", "over")


SHARED_TEMPLATE = scenario(
    "shared-template",
    """
    from stagewise import stage

    @stage(outputs={"map": "maps/{split}/{sim}.npy"}, over=("split", "sim"))
    def draw_a(item):
        return [1.0]

    @stage(outputs={"map": "maps/{split}/{sim}.npy"}, over=("split", "sim"))
    def draw_b(item):
        return [2.0]
    """,
)


def test_two_outputs_sharing_a_template_are_refused_naming_both(checked) -> None:
    line = single_problem(*checked(SHARED_TEMPLATE))
    assert_mentions(line, "maps/{split}/{sim}.npy", "draw_a", "draw_b")


DOTDOT_TEMPLATE = scenario(
    "dotdot-template",
    with_stages(('"sky/{split}/{sim:04d}.npy"', '"../escape/{split}/{sim:04d}.npy"')),
)


def test_output_template_with_dotdot_cannot_escape_the_output_root(checked) -> None:
    line = single_problem(*checked(DOTDOT_TEMPLATE))
    assert_mentions(line, "simulate", "outputs.sky", "..")


ABSOLUTE_TEMPLATE = scenario(
    "absolute-template",
    with_stages(('"sky/{split}/{sim:04d}.npy"', '"/var/tmp/elsewhere/{split}/{sim:04d}.npy"')),
)


def test_absolute_output_template_is_refused(checked) -> None:
    line = single_problem(*checked(ABSOLUTE_TEMPLATE))
    assert_mentions(line, "simulate", "outputs.sky", "/var/tmp/elsewhere")


DOTDOT_SOURCE = scenario(
    "dotdot-source", pipeline=replace_text(PIPELINE, ('"{data}/mask.npy"', '"{data}/../mask.npy"'))
)


def test_source_template_with_dotdot_is_refused(checked) -> None:
    line = single_problem(*checked(DOTDOT_SOURCE))
    assert_mentions(line, "pipeline.yaml", "sources.mask", "..")


# --- parameters ------------------------------------------------------------------------------

UNKNOWN_STAGE_PARAM = scenario(
    "unknown-stage-param", pipeline=PIPELINE + "stages:\n  simulate: {params: {npixx: 768}}\n"
)


def test_unknown_parameter_in_stage_params_names_its_place_and_suggests(checked) -> None:
    line = single_problem(*checked(UNKNOWN_STAGE_PARAM))
    assert_mentions(line, "pipeline.yaml", "simulate", "npixx", "did you mean 'npix'")
    assert "stages.simulate.params" in line, f"the place in the file is not named:\n{line}"


UNKNOWN_TOP_PARAM = scenario("unknown-top-param", pipeline=PIPELINE + "params: {simulate.sede: 3}\n")


def test_unknown_parameter_in_top_level_params_names_its_place_and_suggests(checked) -> None:
    line = single_problem(*checked(UNKNOWN_TOP_PARAM))
    assert_mentions(line, "pipeline.yaml", "simulate.sede", "did you mean 'seed'")
    assert re.search(r"\bparams\b", line), f"the place in the file (params) is not named:\n{line}"


UNKNOWN_NESTED_PARAM = scenario(
    "unknown-nested-param", pipeline=PIPELINE + "params:\n  simulate: {sede: 3}\n"
)


def test_unknown_parameter_in_nested_top_level_params_suggests(checked) -> None:
    line = single_problem(*checked(UNKNOWN_NESTED_PARAM))
    assert_mentions(line, "pipeline.yaml", "sede", "did you mean 'seed'")


PARAM_OF_UNKNOWN_STAGE = scenario("param-of-unknown-stage", pipeline=PIPELINE + "params: {simulat.seed: 3}\n")


def test_parameter_of_unknown_stage_suggests_the_stage(checked) -> None:
    line = single_problem(*checked(PARAM_OF_UNKNOWN_STAGE))
    assert_mentions(line, "pipeline.yaml", "simulat", "did you mean 'simulate'")


WRONG_TYPE = scenario("wrong-type", pipeline=PIPELINE + "stages:\n  simulate: {params: {npix: abc}}\n")


def test_parameter_of_wrong_type_names_parameter_expected_type_and_value(checked) -> None:
    line = single_problem(*checked(WRONG_TYPE))
    assert_mentions(line, "pipeline.yaml", "simulate.npix", "expected int, got 'abc'")


LIST_FOR_FLOAT = scenario("list-for-float", pipeline=PIPELINE + "params: {summarize.scale: [1, 2]}\n")


def test_list_given_for_a_float_parameter_is_refused(checked) -> None:
    line = single_problem(*checked(LIST_FOR_FLOAT))
    assert_mentions(line, "summarize.scale", "expected float")


REQUIRED_STAGES = """
from stagewise import stage

@stage(outputs={"model": "model.json"})
def fit(*, epochs: int, lr: float = 0.1):
    return {"epochs": epochs, "lr": lr}
"""
REQUIRED_UNSET = scenario("required-unset", REQUIRED_STAGES)
REQUIRED_IN_FILE = scenario("required-in-file", REQUIRED_STAGES, PIPELINE + "params: {fit.epochs: 3}\n")
REQUIRED_ON_CLI = scenario("required-on-cli", REQUIRED_STAGES, args=("check", "--fit.epochs", "3"))


def test_required_parameter_not_set_is_reported(checked) -> None:
    line = single_problem(*checked(REQUIRED_UNSET))
    assert_mentions(line, "fit.epochs", "required")


def test_required_parameter_set_in_the_file_passes(checked) -> None:
    assert_passes(*checked(REQUIRED_IN_FILE))


def test_required_parameter_set_on_the_command_line_passes(checked) -> None:
    assert_passes(*checked(REQUIRED_ON_CLI))


# --- groups ------------------------------------------------------------------------------------

GROUP_STAGES = """
from stagewise import group, stage

@stage(outputs={"features": "features.json"})
def preprocess(*, threshold: float = 1.0):
    return {"threshold": threshold}

@stage(inputs={"features": "preprocess.features"}, outputs={"model": "model.json"})
def fit(features, *, cutoff: float = 0.5):
    return {"cutoff": cutoff}

model_train = group("model_train", [preprocess, fit], shared={"threshold": SHARED})
"""
SHARED_UNKNOWN_STAGE = scenario(
    "shared-unknown-stage", GROUP_STAGES.replace("SHARED", '["preprocess.threshold", "fitt.cutoff"]')
)
SHARED_UNKNOWN_PARAM = scenario(
    "shared-unknown-param", GROUP_STAGES.replace("SHARED", '["preprocess.threshold", "fit.cutof"]')
)
SHARED_IN_YAML = scenario(
    "shared-in-yaml",
    GROUP_STAGES.replace("SHARED", '"preprocess.threshold"'),
    PIPELINE + "groups:\n  model_train:\n    shared: {cut: [fit.cutof]}\n",
)


def test_group_shared_target_naming_unknown_stage_suggests(checked) -> None:
    line = single_problem(*checked(SHARED_UNKNOWN_STAGE))
    assert_mentions(line, "model_train", "shared.threshold", "fitt", "did you mean 'fit'")


def test_group_shared_target_naming_unknown_parameter_suggests(checked) -> None:
    line = single_problem(*checked(SHARED_UNKNOWN_PARAM))
    assert_mentions(line, "model_train", "shared.threshold", "cutof", "did you mean 'cutoff'")


def test_group_shared_target_added_in_yaml_is_checked(checked) -> None:
    line = single_problem(*checked(SHARED_IN_YAML))
    assert_mentions(line, "model_train", "shared.cut", "cutof", "did you mean 'cutoff'")


# --- handlers ----------------------------------------------------------------------------------

UNKNOWN_HANDLER = scenario(
    "unknown-handler",
    with_stages(
        ("from stagewise import Item, stage", "from stagewise import Asset, Item, stage"),
        ('"sky": "sky/{split}/{sim:04d}.npy"', '"sky": Asset("sky/{split}/{sim:04d}.dat", handler="jsn")'),
    ),
)


def test_unknown_handler_name_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_HANDLER))
    assert_mentions(line, "simulate", "outputs.sky", "'jsn'", "did you mean 'json'")


UNKNOWN_HANDLER_YAML = scenario(
    "unknown-handler-yaml",
    pipeline=PIPELINE
    + "stages:\n  clean:\n    outputs: {clean: {template: 'clean/{split}/{sim}.dat', handler: npyy}}\n",
)


def test_unknown_handler_in_yaml_output_override_suggests(checked) -> None:
    line = single_problem(*checked(UNKNOWN_HANDLER_YAML))
    assert_mentions(line, "clean", "outputs.clean", "'npyy'", "did you mean 'npy'")


UNKNOWN_SOURCE_HANDLER = scenario(
    "unknown-source-handler",
    pipeline=replace_text(PIPELINE, ('"{data}/mask.npy"', "{template: '{data}/mask.bin', handler: nppy}")),
)


def test_unknown_handler_of_a_source_suggests(checked) -> None:
    line = single_problem(*checked(UNKNOWN_SOURCE_HANDLER))
    assert_mentions(line, "sources.mask", "'nppy'", "did you mean 'npy'")


needs_no_astropy = pytest.mark.skipif(
    importlib.util.find_spec("astropy") is not None, reason="astropy is installed: the fits handler works"
)
FITS_BY_EXTENSION = scenario(
    "fits-by-extension", with_stages(('"sky/{split}/{sim:04d}.npy"', '"sky/{split}/{sim:04d}.fits"'))
)
FITS_BY_NAME = scenario(
    "fits-by-name",
    pipeline=PIPELINE
    + "stages:\n  simulate:\n    outputs: {sky: {template: 'sky/{split}/{sim}.dat', handler: fits}}\n",
)


@needs_no_astropy
def test_fits_output_without_astropy_names_the_extra_to_install(checked) -> None:
    line = single_problem(*checked(FITS_BY_EXTENSION))
    assert_mentions(line, "simulate", "outputs.sky", "astropy", "stagewise[fits]")


@needs_no_astropy
def test_fits_handler_named_in_yaml_without_astropy_names_the_extra(checked) -> None:
    line = single_problem(*checked(FITS_BY_NAME))
    assert_mentions(line, "simulate", "outputs.sky", "astropy", "stagewise[fits]")


UNKNOWN_EXTENSION = scenario(
    "unknown-extension", with_stages(('"summary/summary.json"', '"summary/summary.xyz"'))
)


def test_output_with_unknown_extension_is_refused(checked) -> None:
    line = single_problem(*checked(UNKNOWN_EXTENSION))
    assert_mentions(line, "summarize", "outputs.summary", ".xyz")


# --- typed connections ------------------------------------------------------------------------

TYPED_STAGES = """
import numpy as np
from stagewise import stage

@stage(outputs={"sky": "sky/{split}/{sim}.EXT"}, over=("split", "sim"))
def simulate(item):
    return {"sky": [1.0, 2.0]}

@stage(inputs={"sky": "simulate.sky"}, outputs={"clean": "clean/{split}/{sim}.npy"}, over=("split", "sim"))
def clean(sky: np.ndarray):
    return np.asarray(sky)
"""
ARRAY_FROM_JSON = scenario("array-from-json", TYPED_STAGES.replace("EXT", "json"))
MATCHING_TYPES = scenario(
    "matching-types",
    TYPED_STAGES.replace("EXT", "npy")
    + """
@stage(outputs={"stats": "stats.json"})
def stats():
    return {"n": 1}

@stage(inputs={"stats": "stats.stats"}, outputs={"report": "report.txt"})
def report(stats: dict):
    return str(stats)
""",
)


def test_array_input_fed_by_a_json_output_is_refused(checked) -> None:
    line = single_problem(*checked(ARRAY_FROM_JSON))
    assert_mentions(line, "clean", "inputs.sky", "ndarray", "json")


def test_inputs_annotated_with_what_the_producer_handler_returns_pass(checked) -> None:
    assert_passes(*checked(MATCHING_TYPES))


# --- requires --------------------------------------------------------------------------------

REQUIRES_MISSING = scenario(
    "requires-missing",
    with_stages(
        (SIMULATE_DECORATOR, 'over=("split", "sim"), requires=["surely-not-installed-pkg>=1"])\ndef simulate')
    ),
)
REQUIRES_TOO_NEW = scenario(
    "requires-too-new",
    with_stages((SIMULATE_DECORATOR, 'over=("split", "sim"), requires=["pyyaml>=999"])\ndef simulate')),
)
REQUIRES_SATISFIED = scenario(
    "requires-satisfied",
    with_stages(
        (SIMULATE_DECORATOR, 'over=("split", "sim"), requires=["pyyaml>=1", "stagewise"])\ndef simulate')
    ),
)


def test_stage_requiring_a_missing_package_is_reported(checked) -> None:
    line = single_problem(*checked(REQUIRES_MISSING))
    assert_mentions(line, "simulate", "requires", "surely-not-installed-pkg")


def test_stage_requiring_a_newer_version_names_the_installed_one(checked) -> None:
    line = single_problem(*checked(REQUIRES_TOO_NEW))
    assert_mentions(line, "simulate", ">=999", importlib.metadata.version("pyyaml"))
    assert "yaml" in line.lower()


def test_stage_requiring_satisfied_versions_passes(checked) -> None:
    assert_passes(*checked(REQUIRES_SATISFIED))


# --- splits and dims ---------------------------------------------------------------------------

SPLITS_LINE = "splits: {train: 4, valid: 2, test: 2}"
MALFORMED_SPLITS = {
    "negative-count": ("{train: -1, test: 2}", ("splits.train", "-1")),
    "sim-not-an-int": ("{train: [0, a], test: 2}", ("splits.train", "'a'")),
    "sim-a-float": ("{train: [0, 1.5], test: 2}", ("splits.train", "1.5")),
    "split-name-with-slash": ("{train: 4, 'te/st': 2}", ("te/st", "separator")),
}
for _name, (_splits, _) in MALFORMED_SPLITS.items():
    scenario(f"splits-{_name}", pipeline=replace_text(PIPELINE, (SPLITS_LINE, f"splits: {_splits}")))


@pytest.mark.parametrize("case", list(MALFORMED_SPLITS))
def test_malformed_splits_are_reported_at_their_place(checked, case: str) -> None:
    line = single_problem(*checked(f"splits-{case}"))
    assert_mentions(line, "pipeline.yaml", *MALFORMED_SPLITS[case][1])


DUPLICATE_SIMS = scenario(
    "duplicate-sims", pipeline=replace_text(PIPELINE, (SPLITS_LINE, "splits: {train: [0, 1, 1], test: 2}"))
)


def test_duplicate_sims_in_a_split_are_reported(checked) -> None:
    line = single_problem(*checked(DUPLICATE_SIMS))
    assert_mentions(line, "pipeline.yaml", "splits.train", "1")
    assert re.search(r"twice|duplicate|repeated", line), line


DIMS_LINE = "dims: {freq: [30, 100, 353]}"
MALFORMED_DIMS = {
    "reserved-meta": ("{freq: [30], meta: 3}", ("dims.meta", "reserved")),
    "reserved-tags": ("{freq: [30], tags: [a, b]}", ("dims.tags", "reserved")),
    "sim-beside-splits": ("{freq: [30], sim: 10}", ("dims.sim",)),
    "value-with-slash": ("{freq: ['30', 'a/b']}", ("dims.freq", "a/b", "separator")),
    "value-with-backslash": ("{freq: ['30', 'a\\\\b']}", ("dims.freq", "separator")),
    "value-dotdot": ("{freq: [30], band: ['x', '..']}", ("dims.band", "'..'")),
    "duplicate-value": ("{freq: [30, 30]}", ("dims.freq", "30")),
}
for _name, (_dims, _) in MALFORMED_DIMS.items():
    scenario(f"dims-{_name}", pipeline=replace_text(PIPELINE, (DIMS_LINE, f"dims: {_dims}")))


@pytest.mark.parametrize("case", list(MALFORMED_DIMS))
def test_malformed_dims_are_reported_at_their_place(checked, case: str) -> None:
    line = single_problem(*checked(f"dims-{case}"))
    assert_mentions(line, "pipeline.yaml", *MALFORMED_DIMS[case][1])


UNKNOWN_OVER_DIM = scenario(
    "unknown-over-dim",
    """
    from stagewise import stage

    @stage(outputs={"map": "maps/{split}/{sim}.npy"}, over=("split", "sim", "frq"))
    def observe(item):
        return [0.0]
    """,
)


def test_stage_over_an_unknown_dim_is_one_problem_suggesting_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_OVER_DIM))
    assert_mentions(line, "observe", "'frq'", "did you mean 'freq'")


UNKNOWN_SPLIT_RESTRICTION = scenario(
    "unknown-split-restriction",
    with_stages((CLEAN_DECORATOR, 'over=("split", "sim"),\n    splits=["tset"],\n)\ndef clean')),
)
UNKNOWN_SPLIT_RESTRICTION_YAML = scenario(
    "unknown-split-restriction-yaml", pipeline=PIPELINE + "stages:\n  clean: {splits: [tset]}\n"
)


def test_stage_restricted_to_an_unknown_split_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_SPLIT_RESTRICTION))
    assert_mentions(line, "clean", "'tset'", "did you mean 'test'")


def test_yaml_restriction_to_an_unknown_split_suggests_the_closest(checked) -> None:
    line = single_problem(*checked(UNKNOWN_SPLIT_RESTRICTION_YAML))
    assert_mentions(line, "clean", "'tset'", "did you mean 'test'")


PRODUCER_RESTRICTED = scenario(
    "producer-restricted",
    with_stages((SIMULATE_DECORATOR, 'over=("split", "sim"), splits=["train"])\ndef simulate')),
)
PRODUCER_RESTRICTED_YAML = scenario(
    "producer-restricted-yaml", pipeline=PIPELINE + "stages:\n  simulate: {splits: [train, valid]}\n"
)
BOTH_RESTRICTED_YAML = scenario(
    "both-restricted-yaml",
    pipeline=PIPELINE + "stages:\n  simulate: {splits: [train]}\n  clean: {splits: [train]}\n",
)


def test_consumer_over_splits_its_producer_does_not_run_is_refused(checked) -> None:
    line = single_problem(*checked(PRODUCER_RESTRICTED))
    assert_mentions(line, "clean", "inputs.sky", "simulate", "valid", "test")


def test_yaml_restricting_a_producer_alone_is_refused(checked) -> None:
    line = single_problem(*checked(PRODUCER_RESTRICTED_YAML))
    assert_mentions(line, "clean", "inputs.sky", "simulate", "test")


def test_producer_and_consumer_restricted_to_the_same_splits_pass(checked) -> None:
    assert_passes(*checked(BOTH_RESTRICTED_YAML))


# --- stage definitions -----------------------------------------------------------------------

STRAY_BODY_PARAMETER = scenario(
    "stray-body-parameter", with_stages(("def clean(sky, mask, *,", "def clean(sky, mask, weights, *,"))
)
INPUT_NOT_IN_SIGNATURE = scenario(
    "input-not-in-signature", with_stages(("def clean(sky, mask, *,", "def clean(sky, *,"))
)
ITEM_OUT_AND_PARAMS = scenario(
    "item-out-and-params",
    """
    from stagewise import Item, Out, stage

    @stage(outputs={"a": "a/{split}/{sim}.json", "b": "b/{split}/{sim}.json"}, over=("split", "sim"))
    def both(item: Item, out: Out, *, k: int = 1):
        out["a"].write({"k": k})
        out["b"].write({"sim": item.sim})
    """,
)


def test_body_parameter_that_is_no_input_item_or_out_is_reported(checked) -> None:
    line = single_problem(*checked(STRAY_BODY_PARAMETER))
    assert_mentions(line, "clean", "'weights'")


def test_input_declared_but_missing_from_the_signature_is_reported(checked) -> None:
    line = single_problem(*checked(INPUT_NOT_IN_SIGNATURE))
    assert_mentions(line, "clean", "'mask'")


def test_stage_with_item_out_handle_and_keyword_parameters_passes(checked) -> None:
    assert_passes(*checked(ITEM_OUT_AND_PARAMS))


# --- several problems at once --------------------------------------------------------------------

MANY_PROBLEMS_STAGES = """
from stagewise import Asset, stage

@stage(
    outputs={"sky": "sky/{split}/{sim:04d}.npy"},
    over=("split", "sim"),
    requires=["surely-not-installed-pkg>=1"],
)
def simulate(item, *, npix: int = 3072, seed: int = 0):
    return [0.0] * npix

@stage(
    inputs={"sky": "simulat.sky", "mask": "mask"},
    outputs={"clean": "clean/{split}.npy"},
    over=("split", "sim"),
)
def clean(sky, mask, *, threshold: float = 3.0):
    return sky

@stage(
    inputs={"clean": "clean.clean"},
    outputs={"summary": Asset("summary/summary.dat", handler="jsn")},
)
def summarize(clean, weights, *, scale: float = 1.0):
    return {"n": len(clean)}

@stage(outputs={"map": "maps/{split}/{sim}/{band}.npy"}, over=("split", "sim", "bnd"))
def observe(item):
    return [0.0]
"""

MANY_PROBLEMS_PIPELINE = """
stages_from: [stages.py]
output: out
paths: {data: raw}
sources: {mask: "{data}/mask.npy"}
splits: {train: 4, test: [0, 1, 1]}
dims: {meta: 3, band: [a, b]}
stages:
  simulate: {params: {npix: abc}}
params: {summarize.scal: 2}
"""

# the fragments that one problem line holds, for each problem planted above
MANY_PROBLEMS = [
    ("simulate", "surely-not-installed-pkg"),
    ("clean", "inputs.sky", "simulat", "did you mean 'simulate'"),
    ("clean", "outputs.clean", "{sim}"),
    ("summarize", "'jsn'", "did you mean 'json'"),
    ("summarize", "'weights'"),
    ("observe", "'bnd'", "did you mean 'band'"),
    ("splits.test",),
    ("dims.meta", "reserved"),
    ("simulate.npix", "expected int, got 'abc'"),
    ("summarize.scal", "did you mean 'scale'"),
]
MANY_CHECKED = scenario("many-problems", MANY_PROBLEMS_STAGES, MANY_PROBLEMS_PIPELINE)
MANY_RUN = scenario("many-problems-run", MANY_PROBLEMS_STAGES, MANY_PROBLEMS_PIPELINE, args=("run",))


def test_check_reports_every_problem_of_a_pipeline_together(checked) -> None:
    project, result = checked(MANY_CHECKED)
    assert_refused(project, result)
    problems = problem_lines(result)
    for fragments in MANY_PROBLEMS:
        assert any(all(f in p for f in fragments) for p in problems), (fragments, result.describe())
    assert len(problems) >= len(MANY_PROBLEMS)
    assert re.search(rf"\b{len(problems)} problems\b", result.output), result.describe()


def test_run_refuses_a_pipeline_with_problems_and_writes_nothing(checked) -> None:
    project, result = checked(MANY_RUN)
    assert_refused(project, result)
    for fragments in MANY_PROBLEMS:
        result.line_with(*fragments)


# --- the Python API ------------------------------------------------------------------------------


@pytest.mark.usefixtures("in_process_loading")
def test_api_check_of_a_valid_pipeline_returns_no_problem(project: Project) -> None:
    import stagewise

    project.stages(SPEC_STAGES.replace("return sky", "return sky  # api: valid"))
    path = project.pipeline(PIPELINE)
    project.write("raw/mask.npy", "not read by check")
    assert stagewise.load(path).check() == []
    assert not (project.root / "out").exists()


@pytest.mark.usefixtures("in_process_loading")
def test_api_check_returns_every_problem_with_its_place_and_stage(project: Project) -> None:
    import stagewise

    project.stages(MANY_PROBLEMS_STAGES.replace("return sky", "return sky  # api: many"))
    path = project.pipeline(MANY_PROBLEMS_PIPELINE)
    problems = stagewise.load(path).check()
    assert all(isinstance(p, stagewise.Problem) for p in problems)
    assert all(p.severity == "error" for p in problems)
    for fragments in MANY_PROBLEMS:
        assert any(all(f in str(p) for f in fragments) for p in problems), (fragments, problems)
    unknown_ref = next(p for p in problems if "simulat" in p.message and "did you mean" in str(p))
    assert unknown_ref.stage == "clean"
    assert "pipeline.yaml" in unknown_ref.place
    typo = next(p for p in problems if "summarize.scal" in str(p))
    assert typo.stage == "summarize"
    assert not (project.root / "out").exists()


@pytest.mark.usefixtures("in_process_loading")
def test_api_check_converts_parameters_it_is_given(project: Project) -> None:
    import stagewise

    project.stages(SPEC_STAGES.replace("return sky", "return sky  # api: params"))
    pipeline = stagewise.load(project.pipeline(PIPELINE))
    problems = [p for p in pipeline.check(params={"simulate.npix": "abc"}) if p.severity == "error"]
    assert len(problems) == 1, problems
    assert "simulate.npix" in str(problems[0])
    assert "expected int, got 'abc'" in str(problems[0])
    assert [p for p in pipeline.check(params={"simulate.npix": 64}) if p.severity == "error"] == []


@pytest.mark.usefixtures("in_process_loading")
def test_api_check_reports_missing_source_files_as_warnings(project: Project) -> None:
    import stagewise

    project.stages(SPEC_STAGES.replace("return sky", "return sky  # api: warnings"))
    problems = stagewise.load(project.pipeline(PIPELINE)).check()
    assert [p for p in problems if p.severity == "error"] == []
    warnings = [p for p in problems if p.severity == "warning"]
    assert any("mask" in str(w) for w in warnings), problems


@pytest.mark.usefixtures("in_process_loading")
def test_api_loads_same_named_stage_modules_of_two_projects_each_with_its_own_stages(tmp_path: Path) -> None:
    import stagewise

    first, second = Project(tmp_path / "first"), Project(tmp_path / "second")
    first.stages(
        """
        from stagewise import stage

        @stage(outputs={"a": "a.json"})
        def alpha():
            return {"project": 1}
        """
    )
    second.stages(
        """
        from stagewise import stage

        @stage(outputs={"b": "b.json"})
        def beta():
            return {"project": 2}
        """
    )
    one, two = (stagewise.load(p.pipeline("stages_from: [stages.py]\n")) for p in (first, second))
    assert list(one.model.nodes) == ["alpha"]
    assert list(two.model.nodes) == ["beta"]
    assert one.check() == []
    assert two.check() == []
