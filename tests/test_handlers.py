"""Tests of the handler registry and of every built-in format (one conformance body for all)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from stagewise.errors import AssetIOError, HandlerError
from stagewise.handlers import (
    describe_handlers,
    entry_points,
    get_handler,
    handler_extensions,
    handler_extra,
    handler_fingerprint,
    handler_for_path,
    handler_modules,
    handler_names,
    handler_returns,
    missing_library,
    register_handler,
    registry,
    returns_match,
    write_atomic,
)
from stagewise.handlers.conformance import check_handler, exactly_equal

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test an empty registry and no entry points, so tests cannot leak into others."""
    monkeypatch.setattr(registry, "_REGISTRY", registry._Registry())
    monkeypatch.setattr(entry_points, "scan", lambda: [])
    yield


# --- conformance: one body, every built-in handler -------------------------------------------


@dataclass(frozen=True)
class Case:
    """One round trip: what is written, and what must come back."""

    handler: str
    extension: str
    make: Callable[[], Any]
    module: str | None = None  # an optional library: skip the case when it is missing
    view: Callable[[Any], Any] | None = None  # turns data into comparable values

    @property
    def id(self) -> str:
        return f"{self.handler}{self.extension}"


def _torch_data() -> Any:
    import torch

    return {"w": torch.arange(6.0).reshape(2, 3), "n": 3}


CASES = [
    Case("npy", ".npy", lambda: np.arange(12.0).reshape(3, 4)),
    Case("npy", ".npy", lambda: np.array([[True, False]])),
    Case(
        "npz",
        ".npz",
        # "file" and "allow_pickle" would clash with np.savez's own arguments.
        lambda: {
            "b": np.arange(3),
            "a": np.ones((2, 2), np.float32),
            "file": np.array([1], np.int8),
        },
    ),
    Case("npz", ".npz", lambda: {"allow_pickle": np.zeros(2)}),
    Case("json", ".json", lambda: {"z": 1, "a": [1, 2.5, None, True, "é"], "m": {"k": "v"}}),
    Case("json", ".json", lambda: [1, "two", 3.0]),
    Case("yaml", ".yaml", lambda: {"z": 1, "a": {"nested": [1, 2]}, "s": "text", "n": None}),
    Case("yaml", ".yml", lambda: ["x", 2, 3.5, False]),
    Case("txt", ".txt", lambda: "line one\r\nline two\n\ttab é\n"),
    Case("txt", ".txt", lambda: ""),
    Case("csv", ".csv", lambda: [{"a": "1", "b": "x,y"}, {"a": "2", "b": 'quote " and\nnewline'}]),
    Case("pickle", ".pkl", lambda: {"set": {1, 2}, "tuple": (1, 2), "array": np.arange(3)}),
    Case("fits", ".fits", lambda: np.arange(12.0).reshape(3, 4), module="astropy"),
    Case("fits", ".fits.gz", lambda: np.arange(6, dtype=np.int32), module="astropy"),
    Case("healpix", ".fits", lambda: np.arange(12.0), module="healpy"),
    Case("hdf5", ".h5", lambda: {"x": np.arange(4), "g": {"y": np.ones(2)}}, module="h5py"),
    Case("hdf5", ".hdf5", lambda: np.arange(6.0).reshape(2, 3), module="h5py"),
    Case(
        "parquet",
        ".parquet",
        lambda: {"a": [1, 2, 3], "b": ["x", "y", "z"]},
        module="pyarrow",
        view=lambda table: table.to_pydict(),
    ),
    Case("png", ".png", lambda: np.arange(48, dtype=np.uint8).reshape(4, 4, 3), module="PIL"),
    Case(
        "torch",
        ".pt",
        _torch_data,
        module="torch",
        view=lambda d: {"w": d["w"].tolist(), "n": d["n"]},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_builtin_handler_conforms(case: Case, tmp_path: Path) -> None:
    if case.module:
        pytest.importorskip(case.module)
    view: Callable[[Any], Any] = case.view or (lambda value: value)
    check_handler(
        get_handler(case.handler),
        case.make(),
        tmp_path,
        extension=case.extension,
        equal=lambda back, data: exactly_equal(view(back), view(data)),
        name=case.handler,
    )


def test_conformance_check_catches_lossy_and_unstable_handlers(tmp_path: Path) -> None:
    class Lossy:
        def read(self, path: Path) -> str:
            return path.read_text().strip()

        def write(self, path: Path, data: Any) -> None:
            path.write_text(data + "\n")

    class Clock(Lossy):
        def read(self, path: Path) -> str:
            return path.read_text().split("|")[0]

        def write(self, path: Path, data: Any) -> None:
            path.write_text(f"{data}|{time.perf_counter_ns()}")

    with pytest.raises(AssertionError, match=re.escape("Lossy: read back 'x', but wrote 'x \\n'")):
        check_handler(Lossy, "x \n", tmp_path / "1", extension=".txt")
    with pytest.raises(AssertionError, match="differ in bytes"):
        check_handler(Clock, "x", tmp_path / "2", extension=".txt")


def test_exactly_equal_is_strict() -> None:
    assert exactly_equal({"a": np.arange(2), "b": [1, (2, 3)]}, {"a": np.arange(2), "b": [1, (2, 3)]})
    assert exactly_equal(np.array([np.nan]), np.array([np.nan]))
    assert not exactly_equal({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order matters
    assert not exactly_equal(np.arange(2), np.arange(2.0))  # dtype matters
    assert not exactly_equal(np.arange(2), [0, 1])
    assert not exactly_equal(1, 1.0)
    assert not exactly_equal((1, 2), [1, 2])


@pytest.mark.parametrize("name", sorted(registry._BUILTINS))
def test_builtin_declares_returns_and_matching_extensions(name: str) -> None:
    handler = registry._object_for(name)  # the class only: works without its library
    table = tuple(e for e, owner in registry._BUILTIN_EXTENSIONS.items() if owner == name)
    assert handler_extensions(handler) == table
    assert isinstance(handler_returns(handler), tuple)
    assert all("." in qualified for qualified in handler_returns(handler))


def test_optional_handlers_name_their_extra() -> None:
    extras = {name: handler_extra(registry._object_for(name)) for name in registry._BUILTINS}
    assert extras["fits"] == "fits" and extras["healpix"] == "healpix"
    assert extras["hdf5"] == "hdf5" and extras["parquet"] == "parquet"
    assert extras["png"] == "images" and extras["torch"] is None


# --- format details --------------------------------------------------------------------------


def test_json_bytes_are_deterministic_and_keep_insertion_order(tmp_path: Path) -> None:
    handler = get_handler("json")
    data = {"b": 1, "a": {"y": 2, "x": [1, 2]}}
    handler.write(tmp_path / "1.json", data)
    handler.write(tmp_path / "2.json", dict(data))
    raw = (tmp_path / "1.json").read_bytes()
    assert raw == (tmp_path / "2.json").read_bytes()
    assert raw.startswith(b'{\n  "b": 1,') and raw.endswith(b"}\n")


def test_json_writes_nan_and_numpy_scalars(tmp_path: Path) -> None:
    handler = get_handler("json")
    handler.write(tmp_path / "x.json", {"nan": math.nan, "n": np.int64(3), "ok": np.bool_(True)})
    back = handler.read(tmp_path / "x.json")
    assert math.isnan(back["nan"]) and back["n"] == 3 and back["ok"] is True


def test_json_refuses_arrays_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(AssetIOError, match=r"ndarray.*tolist"):
        write_atomic(get_handler("json"), tmp_path / "x.json", {"a": np.arange(2)})


def test_txt_refuses_non_str(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    with pytest.raises(AssetIOError, match="txt handler writes a str, got int") as info:
        write_atomic(get_handler("txt"), path, 42, name="txt")
    assert info.value.path == str(path)
    assert list(tmp_path.iterdir()) == []


def test_csv_list_of_rows_reads_back_as_dicts(tmp_path: Path) -> None:
    handler = get_handler("csv")
    handler.write(tmp_path / "t.csv", [["sim", "mean"], [0, 1.5], [1, -2]])
    assert handler.read(tmp_path / "t.csv") == [
        {"sim": "0", "mean": "1.5"},
        {"sim": "1", "mean": "-2"},
    ]


def test_csv_header_is_union_of_keys_in_first_seen_order(tmp_path: Path) -> None:
    handler = get_handler("csv")
    handler.write(tmp_path / "t.csv", [{"b": 1}, {"a": 2, "b": 3}, {"c": "x"}])
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "b,a,c"
    rows = handler.read(tmp_path / "t.csv")
    assert rows == [
        {"b": "1", "a": "", "c": ""},
        {"b": "3", "a": "2", "c": ""},
        {"b": "", "a": "", "c": "x"},
    ]


def test_csv_empty_list_round_trips(tmp_path: Path) -> None:
    handler = get_handler("csv")
    handler.write(tmp_path / "t.csv", [])
    assert handler.read(tmp_path / "t.csv") == []


@pytest.mark.parametrize(
    "data",
    [{"a": 1}, "text", [{"a": 1}, ["a"]], [["a"], [1, 2]]],
    ids=["dict", "str", "mixed", "row-too-long"],
)
def test_csv_refuses_other_shapes(data: Any, tmp_path: Path) -> None:
    with pytest.raises(AssetIOError):
        get_handler("csv").write(tmp_path / "t.csv", data)


def test_npz_reads_back_a_plain_dict(tmp_path: Path) -> None:
    handler = get_handler("npz")
    handler.write(tmp_path / "a.npz", {"x": np.arange(3)})
    back = handler.read(tmp_path / "a.npz")
    assert type(back) is dict
    assert isinstance(back["x"], np.ndarray)


def test_npz_refuses_a_bare_array(tmp_path: Path) -> None:
    with pytest.raises(AssetIOError, match="dict of arrays"):
        get_handler("npz").write(tmp_path / "a.npz", np.arange(3))


def test_npy_named_for_another_extension_writes_that_file(tmp_path: Path) -> None:
    # np.save appends ".npy" to a path lacking it; the handler must not.
    write_atomic(get_handler("npy"), tmp_path / "sky.dat", np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["sky.dat"]
    assert np.array_equal(get_handler("npy").read(tmp_path / "sky.dat"), np.arange(3))


# --- choosing by extension -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("out/0001.npy", "npy"),
        ("X.NPZ", "npz"),
        ("a.b/c.json", "json"),
        ("p.yaml", "yaml"),
        ("p.YML", "yaml"),
        ("notes.txt", "txt"),
        ("t.csv", "csv"),
        ("map.030.fits", "fits"),
        ("MAP.FITS.GZ", "fits"),
        ("m.fit", "fits"),
        ("d.h5", "hdf5"),
        ("d.hdf5", "hdf5"),
        ("t.parquet", "parquet"),
        ("t.pq", "parquet"),
        ("fig.png", "png"),
        ("model.pt", "torch"),
        ("model.pth", "torch"),
        ("sky/{split}/{sim:04d}.npy", "npy"),
        (Path("x") / ".0001.123.tmp.npy", "npy"),
    ],
)
def test_handler_for_path_uses_the_extension(path: str, name: str) -> None:
    assert handler_for_path(path) == name


def test_longest_suffix_wins() -> None:
    class Gz:
        def read(self, path: Path) -> bytes:
            return path.read_bytes()

        def write(self, path: Path, data: Any) -> None:
            path.write_bytes(data)

    register_handler("gz", Gz(), extensions=[".gz"])
    assert handler_for_path("x.gz") == "gz"
    assert handler_for_path("x.fits.gz") == "fits"


@pytest.mark.parametrize("path", ["x.pkl", "x.pickle", "x.dat", "README", ".npy"])
def test_unknown_extension_lists_handlers_and_how_to_name_one(path: str) -> None:
    with pytest.raises(HandlerError) as info:
        handler_for_path(path)
    text = str(info.value)
    assert "pickle" in text and "handler=" in text


def test_healpix_is_never_chosen_by_extension() -> None:
    assert handler_for_path("map.fits") == "fits"
    assert "healpix" in handler_names()


# --- names -----------------------------------------------------------------------------------


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(HandlerError, match=r"unknown handler 'jsn' \(did you mean 'json'\?\)") as e:
        get_handler("jsn")
    assert "register_handler" in str(e.value)


def test_handler_names_lists_builtins_sorted() -> None:
    names = handler_names()
    assert names == sorted(names)
    assert set(registry._BUILTINS) <= set(names)


# --- registering -----------------------------------------------------------------------------


class Upper:
    """A user handler: text stored upper-case, declaring nothing optional."""

    def read(self, path: Path) -> str:
        return path.read_text()

    def write(self, path: Path, data: Any) -> None:
        path.write_text(str(data).upper())


def test_register_an_object_and_choose_it_by_extension(tmp_path: Path) -> None:
    handler = Upper()
    register_handler("upper", handler, extensions=["UP", ".up.txt"])
    assert get_handler("upper") is handler
    assert handler_for_path("a.up") == "upper"
    assert handler_for_path("a.UP.TXT") == "upper"  # longer than the built-in ".txt"
    assert handler_for_path("a.txt") == "txt"
    write_atomic(get_handler("upper"), tmp_path / "x.up", "hi")
    assert get_handler("upper").read(tmp_path / "x.up") == "HI"


def test_register_accepts_one_extension_as_a_string() -> None:
    register_handler("upper", Upper, extensions=".up")
    assert handler_for_path("x.up") == "upper"


def test_register_a_class_instantiates_it() -> None:
    register_handler("upper", Upper)
    assert isinstance(get_handler("upper"), Upper)


def test_register_takes_the_handlers_own_extensions() -> None:
    class Dat(Upper):
        extensions: ClassVar[tuple[str, ...]] = (".dat",)

    register_handler("dat", Dat)
    assert handler_for_path("x.dat") == "dat"


def test_registering_the_same_class_again_is_silent() -> None:
    register_handler("upper", Upper, extensions=[".up"])
    register_handler("upper", Upper(), extensions=[".up"])
    # A module imported twice (as __main__ and by name, or in a worker) makes a new class
    # object with the same module and qualified name.
    twin = type("Upper", (), {"read": Upper.read, "write": Upper.write})
    twin.__module__, twin.__qualname__ = Upper.__module__, Upper.__qualname__
    register_handler("upper", twin, extensions=[".up"])
    assert isinstance(get_handler("upper"), twin)
    assert handler_for_path("a.up") == "upper"


def test_registering_a_builtin_class_under_its_name_is_silent() -> None:
    from stagewise.handlers.arrays import NpyHandler

    register_handler("npy", NpyHandler)
    assert handler_for_path("x.npy") == "npy"


def test_another_handler_under_a_taken_name_needs_replace() -> None:
    class Other(Upper):
        pass

    register_handler("upper", Upper)
    with pytest.raises(HandlerError, match=r"already registered.*replace=True"):
        register_handler("upper", Other)
    with pytest.raises(HandlerError, match=r"built in.*replace=True"):
        register_handler("json", Upper)
    register_handler("json", Upper, replace=True)
    assert isinstance(get_handler("json"), Upper)
    assert handler_for_path("x.json") == "json"


def test_a_builtin_extension_needs_replace() -> None:
    with pytest.raises(HandlerError, match=r"'\.npy' already belongs to handler 'npy'"):
        register_handler("mine", Upper, extensions=[".npy"])
    register_handler("mine", Upper, extensions=[".npy"], replace=True)
    assert handler_for_path("a.npy") == "mine"


def test_reregistering_redefines_the_extensions() -> None:
    register_handler("upper", Upper, extensions=[".up"])
    register_handler("upper", Upper, extensions=[".upper"])
    assert handler_for_path("a.upper") == "upper"
    with pytest.raises(HandlerError):
        handler_for_path("a.up")


@pytest.mark.parametrize("bad", ["", "two words", "a:b", "1st"])
def test_register_rejects_invalid_names(bad: str) -> None:
    with pytest.raises(HandlerError, match="invalid handler name"):
        register_handler(bad, Upper)


def test_register_rejects_objects_without_read_and_write() -> None:
    class ReadOnly:
        def read(self, path: Path) -> str:
            return ""

    with pytest.raises(HandlerError, match="has no write method"):
        register_handler("ro", ReadOnly)


def test_register_rejects_classes_needing_arguments() -> None:
    class Needs(Upper):
        def __init__(self, level: int) -> None:
            self.level = level

    with pytest.raises(HandlerError, match="without arguments"):
        register_handler("needs", Needs)


# --- entry points ----------------------------------------------------------------------------


@dataclass
class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint."""

    name: str
    value: str
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


class Plug(Upper):
    extensions: ClassVar[tuple[str, ...]] = (".plug",)
    extra: ClassVar[str | None] = "plug"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Install two entry points (one broken); return a list counting the scans."""
    scans: list[int] = []

    def fake_scan() -> list[FakeEntryPoint]:
        scans.append(1)
        return [
            FakeEntryPoint("plug", "pkg.mod:Plug", Plug),
            FakeEntryPoint("broken", "gone:Thing", ImportError("No module named 'gone'")),
        ]

    monkeypatch.setattr(entry_points, "scan", fake_scan)
    return scans


def test_entry_points_are_not_scanned_for_builtins(plugins: list[int]) -> None:
    get_handler("npy")
    handler_for_path("x.json")
    assert plugins == []


def test_entry_point_handlers_are_found_by_name_and_extension(plugins: list[int]) -> None:
    assert isinstance(get_handler("plug"), Plug)
    assert handler_for_path("x.PLUG") == "plug"
    assert {"plug", "broken"} <= set(handler_names())
    assert len(plugins) == 1  # scanned once, then cached


def test_a_broken_entry_point_is_reported_when_named(plugins: list[int]) -> None:
    with pytest.raises(HandlerError, match=r"'broken' \(entry point 'gone:Thing'\) failed"):
        get_handler("broken")
    rows = {row.name: row for row in describe_handlers()}
    assert rows["broken"].available is False
    assert rows["plug"].extensions == (".plug",) and rows["plug"].extra == "plug"


# --- missing libraries -----------------------------------------------------------------------


class NeedsMissing(Upper):
    modules: ClassVar[tuple[str, ...]] = ("stagewise_no_such_module.sub",)
    extra: ClassVar[str | None] = "nothing"


def test_missing_library_names_the_extra() -> None:
    register_handler("needy", NeedsMissing)
    message = "handler 'needy' needs stagewise_no_such_module.sub: pip install 'stagewise[nothing]'"
    assert missing_library("needy") == message
    with pytest.raises(HandlerError, match="pip install 'stagewise\\[nothing\\]'"):
        get_handler("needy")
    row = next(r for r in describe_handlers() if r.name == "needy")
    assert row.available is False and row.extra == "nothing"


def test_missing_library_without_extra_names_the_package() -> None:
    class NoExtra(Upper):
        modules: ClassVar[tuple[str, ...]] = ("stagewise_no_such_module",)

    register_handler("noextra", NoExtra)
    assert missing_library("noextra") == (
        "handler 'noextra' needs stagewise_no_such_module: pip install stagewise_no_such_module"
    )


def test_missing_library_is_none_when_installed() -> None:
    assert missing_library("npy") is None
    assert missing_library("json") is None
    with pytest.raises(HandlerError, match="unknown handler"):
        missing_library("nope")


# --- optional attributes ---------------------------------------------------------------------


def test_helpers_tolerate_handlers_without_optional_attributes(tmp_path: Path) -> None:
    handler = Upper()
    assert handler_returns(handler) == ()
    assert handler_extensions(handler) == ()
    assert handler_modules(handler) == ()
    assert handler_extra(handler) is None
    assert handler_fingerprint(handler, tmp_path) is None


def test_returns_match_checks_typed_connections() -> None:
    from collections.abc import Sequence
    from typing import Optional

    json_returns = handler_returns(get_handler("json"))
    assert not returns_match(json_returns, np.ndarray)
    assert returns_match(json_returns, dict)
    assert returns_match(json_returns, Mapping)
    assert returns_match(json_returns, dict[str, int])
    assert returns_match(json_returns, Optional[dict])  # noqa: UP045
    assert returns_match(("numpy.ndarray",), np.ndarray)
    assert returns_match(("numpy.ndarray",), np.ndarray | None)
    assert not returns_match(("numpy.ndarray",), dict)
    assert returns_match(("builtins.str",), Sequence[int])  # str is a Sequence: no error
    assert returns_match((), np.ndarray)
    assert returns_match(("builtins.list",), Any)
    assert returns_match(("some_unimported_lib.Thing",), np.ndarray)  # cannot tell: no error


# --- laziness --------------------------------------------------------------------------------


def test_importing_and_using_the_registry_imports_no_format_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        import stagewise.handlers as h
        h.handler_names(); h.describe_handlers(); h.handler_for_path("a.fits.gz")
        h.missing_library("fits"); h.get_handler("npy"); h.get_handler("yaml")
        heavy = ["numpy", "yaml", "astropy", "healpy", "h5py", "pyarrow", "PIL", "torch"]
        print(",".join(m for m in heavy if m in sys.modules))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == ""


def test_a_handler_replaced_after_use_is_the_one_get_handler_returns() -> None:
    # get_handler remembers its answers (workers ask once per item); registering forgets them.
    class Other(Upper):
        pass

    register_handler("upper", Upper)
    first = get_handler("upper")
    assert get_handler("upper") is first
    register_handler("upper", Other, replace=True)
    assert isinstance(get_handler("upper"), Other)
    json_handler = get_handler("json")
    register_handler("json", Upper, replace=True)
    assert isinstance(get_handler("json"), Upper) and get_handler("json") is not json_handler


@pytest.mark.parametrize("name", ["json", "yaml", "txt", "csv", "pickle", "npy", "npz"])
def test_builtins_declaring_str_paths_read_and_write_str_paths(name: str, tmp_path: Path) -> None:
    samples: dict[str, Any] = {
        "json": {"a": [1, 2]},
        "yaml": {"a": [1, 2]},
        "txt": "é\r\nz",
        "csv": [{"a": "1"}],
        "pickle": {"a": (1, 2)},
        "npy": np.arange(3),
        "npz": {"x": np.arange(3)},
    }
    handler = get_handler(name)
    assert getattr(handler, "_stagewise_str_paths", False)
    path = str(tmp_path / f"x.{name}")
    handler.write(path, samples[name])
    assert exactly_equal(handler.read(path), samples[name])
    assert exactly_equal(handler.read(Path(path)), samples[name])
