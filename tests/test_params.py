"""Stage parameters: reading them from signatures, converting values, plain forms for hashing."""

from __future__ import annotations

import copy
import enum
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagewise.errors import ParameterError
from stagewise.model import params as params_module
from stagewise.model.convert import canonical_json, convert, to_plain
from stagewise.model.params import (
    UNSET,
    ParamSpec,
    missing_required,
    params_of,
    type_name,
    unknown_names,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Shape(enum.Enum):
    BOX = (1, 2)


def mse(x: float) -> float:
    return x * x


def load_module(tmp_path: Path, source: str) -> Any:
    """Import ``source`` as a real module file (annotations behave as in user code)."""
    path = tmp_path / "user_stages.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("user_stages", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message(excinfo: pytest.ExceptionInfo[ParameterError]) -> str:
    return excinfo.value.message


# --- UNSET ---------------------------------------------------------------------------------


def test_unset_is_a_singleton_distinct_from_none() -> None:
    assert repr(UNSET) == "<unset>"
    assert UNSET is not None
    assert pickle.loads(pickle.dumps(UNSET)) is UNSET
    assert copy.deepcopy(UNSET) is UNSET


def test_paramspec_is_required_without_default() -> None:
    assert ParamSpec("n", int).required
    assert not ParamSpec("n", int, default=None).required
    assert ParamSpec("n", Optional[int], 3).type_name == "int | None"  # noqa: UP045


# --- type names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "name"),
    [
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (bool, "bool"),
        (Path, "Path"),
        (Any, "Any"),
        (list, "list"),
        (list[int], "list[int]"),
        (tuple[int, ...], "tuple[int, ...]"),
        (tuple[int, str], "tuple[int, str]"),
        (dict[str, float], "dict[str, float]"),
        (Literal["mlp", "cnn"], "Literal['mlp', 'cnn']"),
        (Optional[int], "int | None"),  # noqa: UP045
        (int | None, "int | None"),
        (Union[int, str], "int | str"),  # noqa: UP007
        (Color, "Color"),
        (Annotated[int, "meta"], "int"),
        ("np.ndarray", "np.ndarray"),
    ],
)
def test_type_name_reads_like_python(annotation: Any, name: str) -> None:
    assert type_name(annotation) == name


# --- params_of -----------------------------------------------------------------------------


def test_params_of_takes_keyword_only_parameters_in_order() -> None:
    def body(item, sky, *args, npix: int = 8, seed: int, tag="x", **kwargs):  # type: ignore[no-untyped-def]
        pass

    specs = params_of(body)
    assert list(specs) == ["npix", "seed", "tag"]
    assert specs["npix"] == ParamSpec("npix", int, 8, "")
    assert specs["seed"].required and specs["seed"].default is UNSET
    assert specs["tag"].annotation is str


def test_params_of_skips_names() -> None:
    def body(*, out: int = 1, n: int = 2) -> None:
        pass

    assert list(params_of(body, skip={"out"})) == ["n"]


@pytest.mark.parametrize(
    ("default", "annotation"),
    [(3, int), (0.5, float), (True, bool), ("a", str), (Path("x"), Path), ([1], list)],
)
def test_unhinted_parameter_takes_the_type_of_its_default(default: Any, annotation: Any) -> None:
    def body(*, p=default):  # type: ignore[no-untyped-def]
        pass

    assert params_of(body)["p"].annotation is annotation


def test_unhinted_parameter_without_default_or_with_none_is_any() -> None:
    def body(*, a, b=None):  # type: ignore[no-untyped-def]
        pass

    specs = params_of(body)
    assert specs["a"].annotation is Any and specs["b"].annotation is Any


def test_hinted_parameter_with_none_default_accepts_none() -> None:
    # The implicit Optional that PEP 484 dropped is still written by users: it must work.
    def body(*, n: int = None, m: int | None = None) -> None:  # type: ignore[assignment]  # noqa: RUF013
        pass

    specs = params_of(body)
    assert specs["n"].type_name == "int | None"
    assert specs["m"].type_name == "int | None"
    assert convert(None, specs["n"], place="s.n") is None


def test_annotated_hints_are_stripped() -> None:
    def body(*, n: Annotated[int, "pixels"] = 1) -> None:
        pass

    assert params_of(body)["n"].annotation is int


def test_help_from_google_docstring() -> None:
    def body(*, npix: int = 8, seed: int = 0) -> None:
        """Draw a sky.

        Args:
            npix (int): number of
                pixels.
            seed: base random seed.
        """

    specs = params_of(body)
    assert specs["npix"].help == "number of pixels."
    assert specs["seed"].help == "base random seed."


def test_help_from_google_keyword_args_section() -> None:
    def body(item: Any, *, npix: int = 8) -> None:
        """Draw a sky.

        Args:
            item: the item.

        Keyword Args:
            npix: number of pixels.
        """

    assert params_of(body)["npix"].help == "number of pixels."


def test_help_from_numpy_docstring() -> None:
    def body(*, npix: int = 8, seed: int = 0) -> None:
        """Draw a sky.

        Parameters
        ----------
        npix : int
            number of pixels.
        seed : int
            base random seed.
        """

    specs = params_of(body)
    assert (specs["npix"].help, specs["seed"].help) == ("number of pixels.", "base random seed.")


def test_help_from_rest_docstring() -> None:
    def body(*, npix: int = 8, seed: int = 0) -> None:
        """Draw a sky.

        :param int npix: number of pixels.
        :param seed: base random seed.
        """

    specs = params_of(body)
    assert (specs["npix"].help, specs["seed"].help) == ("number of pixels.", "base random seed.")


def test_help_is_empty_when_undocumented_or_unparseable() -> None:
    def bare(*, n: int = 1) -> None:
        pass

    def odd(*, n: int = 1) -> None:
        """Args:
        n
        """

    assert params_of(bare)["n"].help == ""
    assert params_of(odd)["n"].help == ""


def test_class_parameters_come_from_init_with_help_from_both_docstrings() -> None:
    class Fit:
        """Fit a model.

        Args:
            lr: learning rate.
            epochs: from the class docstring.
        """

        def __init__(self, path: str = "", *, lr: float = 1e-3, epochs: int, depth=3) -> None:
            """Configure.

            Args:
                epochs: passes over the data.
            """

    specs = params_of(Fit)
    assert list(specs) == ["lr", "epochs", "depth"]
    assert specs["lr"].help == "learning rate."
    assert specs["epochs"].help == "passes over the data."
    assert specs["epochs"].required
    assert specs["depth"].annotation is int


def test_class_without_init_has_no_parameters() -> None:
    class Plain:
        pass

    assert params_of(Plain) == {}


def test_future_annotations_are_resolved(tmp_path: Path) -> None:
    module = load_module(
        tmp_path,
        """
        from __future__ import annotations
        from pathlib import Path
        from typing import Literal

        def body(*, layers: list[int] = [8], root: Path = Path("."), kind: Literal["a", "b"] = "a"):
            pass
        """,
    )
    specs = params_of(module.body)
    assert specs["layers"].annotation == list[int]
    assert specs["root"].annotation is Path
    assert specs["kind"].type_name == "Literal['a', 'b']"


def test_unresolvable_annotation_stays_a_string_and_accepts_anything(tmp_path: Path) -> None:
    module = load_module(
        tmp_path,
        """
        from __future__ import annotations

        def body(*, arr: np.ndarray = None, n: int = 2, w: Weights = None):
            pass
        """,
    )
    specs = params_of(module.body)
    assert specs["arr"].annotation == "np.ndarray"
    assert specs["arr"].type_name == "np.ndarray"
    assert specs["w"].type_name == "Weights"
    assert specs["n"].annotation is int  # the good hints keep their types
    assert convert([1, 2], specs["arr"], place="s.arr") == [1, 2]
    assert convert("[1, 2]", specs["arr"], place="s.arr", from_text=True) == [1, 2]


# --- missing and unknown -------------------------------------------------------------------


def test_missing_required_and_unknown_names() -> None:
    def body(*, threshold: float, seed: int = 0, epochs: int) -> None:
        pass

    specs = params_of(body)
    assert missing_required(specs, {"epochs": 3}) == ["threshold"]
    assert missing_required(specs, {"epochs": UNSET, "threshold": None}) == ["epochs"]
    assert unknown_names(specs, {"treshold": 1, "seed": 2, "zzz": 3}) == [
        ("treshold", "did you mean 'threshold'?"),
        ("zzz", None),
    ]


# --- convert: values from YAML or Python ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        (3, int, 3),
        (np.int64(3), int, 3),
        (Level.HIGH, int, 2),
        (2, float, 2.0),
        (0.5, float, 0.5),
        ("1e-3", float, 0.001),
        ("-1E5", float, -1e5),
        (np.float32(0.5), float, 0.5),
        ("hi", str, "hi"),
        (True, bool, True),
        (np.bool_(False), bool, False),
        ("a/b", Path, Path("a/b")),
        (Path("a"), Path, Path("a")),
        ("cnn", Literal["mlp", "cnn"], "cnn"),
        (1, Literal[1, 2], 1),
        (None, Optional[int], None),  # noqa: UP045
        (4, int | None, 4),
        ("x", Union[int, str], "x"),  # noqa: UP007
        (3, Union[float, int], 3.0),  # noqa: UP007
        ([1, 2], list[int], [1, 2]),
        ((1, 2), list[int], [1, 2]),
        ([1, 2], tuple[int, ...], (1, 2)),
        ([1, "a"], tuple[int, str], (1, "a")),
        ([1, "a"], list, [1, "a"]),
        ([2, 1, 2], set[int], {1, 2}),
        ({1}, frozenset[int], frozenset({1})),
        ({"a": 1, "b": "2e-1"}, dict[str, float], {"a": 1.0, "b": 0.2}),
        ({1: "x"}, dict[int, str], {1: "x"}),
        ({"anything": [1]}, Any, {"anything": [1]}),
        (object, Any, object),
        ([1, [2]], Optional[list[Any]], [1, [2]]),  # noqa: UP045
        (5, Annotated[int, "m"], 5),
        (None, type(None), None),
    ],
)
def test_convert_accepts_values_of_the_declared_type(value: Any, annotation: Any, expected: Any) -> None:
    result = convert(value, annotation, place="s.p")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "annotation", "text"),
    [
        ("abc", int, "train.epochs: expected int, got 'abc'"),
        (True, int, "train.epochs: expected int, got True"),
        (3.0, int, "train.epochs: expected int, got 3.0"),
        (2.5, int, "train.epochs: expected int, got 2.5"),
        ("3", int, "train.epochs: expected int, got '3'"),
        (True, float, "train.epochs: expected float, got True"),
        ("fast", float, "train.epochs: expected float, got 'fast'"),
        (None, float, "train.epochs: expected float, got None"),
        (3, str, "train.epochs: expected str, got 3"),
        (1, bool, "train.epochs: expected bool, got 1"),
        ("yes", bool, "train.epochs: expected bool, got 'yes'"),
        (3, Path, "train.epochs: expected Path, got 3"),
        ("rnn", Literal["mlp", "cnn"], "train.epochs: expected one of 'mlp', 'cnn', got 'rnn'"),
        (True, Literal[1, 2], "train.epochs: expected one of 1, 2, got True"),
        ("x", Optional[int], "train.epochs: expected int | None, got 'x'"),  # noqa: UP045
        (None, int, "train.epochs: expected int, got None"),
        (1.5, Union[int, str], "train.epochs: expected int | str, got 1.5"),  # noqa: UP007
        ("64,64", list[int], "train.epochs: expected list[int], got '64,64'"),
        ([1, 2, 3], tuple[int, int], "train.epochs: expected tuple[int, int], got [1, 2, 3]"),
        ([1], dict[str, int], "train.epochs: expected dict[str, int], got [1]"),
        ({1, 2}, list[int], "train.epochs: expected list[int], got {1, 2}"),
        (0, type(None), "train.epochs: expected None, got 0"),
    ],
)
def test_convert_rejects_values_of_another_type(value: Any, annotation: Any, text: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert(value, annotation, place="train.epochs")
    assert message(excinfo) == text


def test_element_errors_name_the_element() -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert([64, "x"], list[int], place="train.layers")
    assert message(excinfo) == "train.layers[1]: expected int, got 'x'"
    with pytest.raises(ParameterError) as excinfo:
        convert({"a": 1, "b": "z"}, dict[str, float], place="train.w")
    assert message(excinfo) == "train.w.b: expected float, got 'z'"
    with pytest.raises(ParameterError) as excinfo:
        convert([1, 2], tuple[int, str], place="t")
    assert message(excinfo) == "t[1]: expected str, got 2"


def test_optional_reports_the_failing_element() -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert([1, "x"], Optional[list[int]], place="s.layers")  # noqa: UP045
    assert message(excinfo) == "s.layers[1]: expected int, got 'x'"


def test_optional_literal_lists_none_among_the_options() -> None:
    annotation = Optional[Literal["a", "b"]]  # noqa: UP045
    assert convert(None, annotation, place="p") is None
    assert convert("none", annotation, place="p", from_text=True) is None
    with pytest.raises(ParameterError) as excinfo:
        convert("c", annotation, place="p")
    assert message(excinfo) == "p: expected one of 'a', 'b', None, got 'c'"


def test_error_place_can_be_a_file_place() -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert("abc", int, place="pipeline.yaml: stages.train.params.epochs")
    assert str(excinfo.value) == "pipeline.yaml: stages.train.params.epochs: expected int, got 'abc'"


def test_convert_takes_a_paramspec() -> None:
    assert convert("3", ParamSpec("n", int), place="s.n", from_text=True) == 3


@pytest.mark.parametrize("value", [Color.RED, "RED", "red"])
def test_enum_accepts_member_name_or_value(value: Any) -> None:
    assert convert(value, Color, place="p") is Color.RED


def test_int_enum_by_value_not_by_bool() -> None:
    assert convert(2, Level, place="p") is Level.HIGH
    assert convert("2", Level, place="p", from_text=True) is Level.HIGH
    with pytest.raises(ParameterError) as excinfo:
        convert(True, Level, place="p")
    assert message(excinfo) == "p: expected Level, got True"


def test_enum_error_hints_the_member_names() -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert("blue", Color, place="plot.color")
    assert message(excinfo) == "plot.color: expected Color, got 'blue'"
    assert excinfo.value.hint == "choose one of 'RED', 'GREEN'"


# --- convert: command-line text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("3", int, 3),
        ("-3", int, -3),
        ("1_000", int, 1000),
        ("1e-3", float, 0.001),
        ("-1e-3", float, -0.001),
        ("2", float, 2.0),
        ("hello, world", str, "hello, world"),
        ("", str, ""),
        ("true", bool, True),
        ("YES", bool, True),
        ("On", bool, True),
        ("1", bool, True),
        ("false", bool, False),
        ("no", bool, False),
        ("OFF", bool, False),
        ("0", bool, False),
        ("a/b.npy", Path, Path("a/b.npy")),
        ("none", Optional[int], None),  # noqa: UP045
        ("Null", int | None, None),
        ("~", Optional[str], None),  # noqa: UP045
        ("7", Optional[int], 7),  # noqa: UP045
        ("3", Union[int, str], 3),  # noqa: UP007
        ("3", Union[str, int], "3"),  # noqa: UP007
        ("cnn", Literal["mlp", "cnn"], "cnn"),
        ("2", Literal[1, 2], 2),
        ("true", Literal[True, "auto"], True),
        ("GREEN", Color, Color.GREEN),
        ("green", Color, Color.GREEN),
        ("64,64", list[int], [64, 64]),
        ("64, 32", list[int], [64, 32]),
        ("-1,-2", list[int], [-1, -2]),
        ("[64, 64]", list[int], [64, 64]),
        ("[]", list[int], []),
        ("", list[int], []),
        ("8", list[int], [8]),
        ("1e-3,2e-3", list[float], [0.001, 0.002]),
        ("[1e-3, 0.5]", list[float], [0.001, 0.5]),
        ("a,b", list[Path], [Path("a"), Path("b")]),
        ("[on, off]", list[bool], [True, False]),
        ("1,2", tuple[int, ...], (1, 2)),
        ("1,x", tuple[int, str], (1, "x")),
        ("2,1,2", set[int], {1, 2}),
        ("[a, b]", frozenset[str], frozenset({"a", "b"})),
        ("{a: 1, b: 2}", dict[str, int], {"a": 1, "b": 2}),
        ('{"a": 1e-3}', dict[str, float], {"a": 0.001}),
        ("{}", dict[str, int], {}),
        ("3", Any, 3),
        ("[1, a]", Any, [1, "a"]),
        ("text: {", Any, "text: {"),
        ("", Any, ""),
    ],
)
def test_convert_parses_text_by_the_declared_type(text: str, annotation: Any, expected: Any) -> None:
    result = convert(text, annotation, place="s.p", from_text=True)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation", "error"),
    [
        ("abc", int, "train.epochs: expected int, got 'abc'"),
        ("3.5", int, "train.epochs: expected int, got '3.5'"),
        ("1e3", int, "train.epochs: expected int, got '1e3'"),
        ("fast", float, "train.epochs: expected float, got 'fast'"),
        ("maybe", bool, "train.epochs: expected bool, got 'maybe'"),
        ("none", int, "train.epochs: expected int, got 'none'"),
        ("x", Optional[int], "train.epochs: expected int | None, got 'x'"),  # noqa: UP045
        ("rnn", Literal["mlp", "cnn"], "train.epochs: expected one of 'mlp', 'cnn', got 'rnn'"),
        ("3", Literal[1, 2], "train.epochs: expected one of 1, 2, got '3'"),
        ("blue", Color, "train.epochs: expected Color, got 'blue'"),
        ("1,x", list[int], "train.epochs[1]: expected int, got 'x'"),
        ("1,,2", list[int], "train.epochs[1]: expected int, got ''"),
        ("[1, x]", list[int], "train.epochs[1]: expected int, got 'x'"),
        ("[1, 2", list[int], "train.epochs: expected list[int], got '[1, 2'"),
        ("1,2,3", tuple[int, int], "train.epochs: expected tuple[int, int], got '1,2,3'"),
        ("a=1", dict[str, int], "train.epochs: expected dict[str, int], got 'a=1'"),
        ("[1]", dict[str, int], "train.epochs: expected dict[str, int], got '[1]'"),
        ("{a: x}", dict[str, int], "train.epochs.a: expected int, got 'x'"),
    ],
)
def test_convert_rejects_text_that_does_not_parse(text: str, annotation: Any, error: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        convert(text, annotation, place="train.epochs", from_text=True)
    assert message(excinfo) == error


def test_from_text_with_an_object_converts_it_as_an_object() -> None:
    assert convert(5, int, place="p", from_text=True) == 5
    assert convert([1, 2], list[int], place="p", from_text=True) == [1, 2]


# --- to_plain and canonical_json -----------------------------------------------------------


def test_to_plain_gives_json_data() -> None:
    value = {
        "path": Path("a/b"),
        "color": Color.RED,
        "shape": Shape.BOX,
        "pair": (1, (2, 3)),
        "tags": {"b", "a"},
        "n": np.int64(3),
        "x": np.float64(0.5),
        "arr": np.arange(3),
        "day": date(2024, 1, 2),
        "nested": {Path("k"): [Level.LOW]},
    }
    plain = to_plain(value)
    assert plain == {
        "path": "a/b",
        "color": "red",
        "shape": "BOX",
        "pair": [1, [2, 3]],
        "tags": ["a", "b"],
        "n": 3,
        "x": 0.5,
        "arr": [0, 1, 2],
        "day": "2024-01-02",
        "nested": {"k": [1]},
    }
    assert type(plain["n"]) is int and type(plain["nested"]["k"][0]) is int
    json.dumps(plain)


def test_canonical_json_is_sorted_and_compact() -> None:
    params = {"b": (1, 2), "a": Path("x"), "c": {"z": 1, "y": None}}
    assert canonical_json(params) == '{"a":"x","b":[1,2],"c":{"y":null,"z":1}}'


def test_canonical_json_is_the_same_for_equivalent_values() -> None:
    from_yaml = {
        "lr": convert(1, float, place="s.lr"),
        "layers": convert([8, 8], list[int], place="s.l"),
    }
    from_cli = {
        "layers": convert("8,8", list[int], place="s.l", from_text=True),
        "lr": convert("1.0", float, place="s.lr", from_text=True),
    }
    assert canonical_json(from_yaml) == canonical_json(from_cli)


def test_canonical_json_names_functions_and_rejects_other_objects() -> None:
    assert canonical_json({"loss": mse}) == f'{{"loss":"{__name__}:mse"}}'
    with pytest.raises(ParameterError, match="cannot be hashed"):
        canonical_json({"thing": object()})


# --- round trips ---------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False)


@given(st.integers())
def test_int_round_trips(v: int) -> None:
    assert convert(str(v), int, place="p", from_text=True) == v
    assert convert(to_plain(v), int, place="p") == v


@given(finite_floats)
def test_float_round_trips(v: float) -> None:
    assert convert(repr(v), float, place="p", from_text=True) == v
    assert convert(to_plain(v), float, place="p") == v


@given(st.booleans())
def test_bool_round_trips(v: bool) -> None:
    assert convert(str(v), bool, place="p", from_text=True) is v
    assert convert(to_plain(v), bool, place="p") is v


@given(st.lists(st.integers()))
def test_int_list_round_trips(v: list[int]) -> None:
    assert convert(",".join(map(str, v)), list[int], place="p", from_text=True) == v
    assert convert(json.dumps(v), list[int], place="p", from_text=True) == v
    assert convert(to_plain(v), list[int], place="p") == v


@given(st.tuples(st.integers(), finite_floats, st.booleans()))
def test_fixed_tuple_round_trips(v: tuple[int, float, bool]) -> None:
    annotation = tuple[int, float, bool]
    text = ",".join([str(v[0]), repr(v[1]), str(v[2])])
    assert convert(text, annotation, place="p", from_text=True) == v
    assert convert(to_plain(v), annotation, place="p") == v


@given(st.dictionaries(st.text(min_size=1), finite_floats))
def test_str_float_dict_round_trips_through_json(v: dict[str, float]) -> None:
    assert convert(json.loads(canonical_json(v)), dict[str, float], place="p") == v


@given(st.sampled_from(list(Color) + list(Level) + list(Shape)))
def test_enum_round_trips(v: enum.Enum) -> None:
    assert convert(to_plain(v), type(v), place="p") is v
    assert convert(v.name, type(v), place="p", from_text=True) is v


def test_nan_converts_from_text_and_yaml() -> None:
    assert math.isnan(convert("nan", float, place="p", from_text=True))
    assert math.isinf(convert(float("inf"), float, place="p"))


# --- import cost ---------------------------------------------------------------------------


def test_importing_params_does_not_import_yaml_or_docstring_parser() -> None:
    code = (
        "import sys, stagewise.model.params, stagewise.model.convert; "
        "print(sorted({'yaml', 'docstring_parser', 'numpy'} & set(sys.modules)))"
    )
    src = str(Path(params_module.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "[]"
