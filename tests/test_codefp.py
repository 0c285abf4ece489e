"""Tests for the code fingerprint (``stagewise.state.codefp``): what edits rerun a stage.

Each test writes a small project (``stages.py`` importing ``helpers.py``, ...) into a fresh
folder per version and imports it under the same module names, so that two versions differ
only by the edit under test.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagewise.errors import ConfigError
from stagewise.state.codefp import CodeFingerprint, changed_parts, code_fingerprint

SRC = Path(__file__).resolve().parents[1] / "src"


class ProjectLoader:
    """Writes versions of a fixture project and imports each under the same module names."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0
        self.paths: list[str] = []
        self.names: set[str] = set()
        self.saved = dict(sys.modules)

    def load(
        self, files: dict[str, str], *, main: str = "stages", sys_paths: Sequence[str] = ("",)
    ) -> tuple[ModuleType, Path]:
        """Write ``files`` (relative path -> source) into a new folder and import ``main``."""
        self.unload()
        self.count += 1
        root = self.base / f"v{self.count}"
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
            self.names.add(Path(relative).parts[-1].removesuffix(".py"))
            self.names.update(Path(relative).parts[:-1])
        self.paths = [str(root / sub) for sub in sys_paths]
        sys.path[:0] = self.paths
        importlib.invalidate_caches()
        return importlib.import_module(main), root

    def unload(self) -> None:
        for path in self.paths:
            sys.path.remove(path)
        self.paths = []
        for name in list(sys.modules):
            if name.partition(".")[0] in self.names:
                del sys.modules[name]

    def close(self) -> None:
        self.unload()
        for name, module in self.saved.items():
            if name.partition(".")[0] in self.names:
                sys.modules[name] = module


@pytest.fixture
def project(tmp_path: Path) -> Iterator[ProjectLoader]:
    loader = ProjectLoader(tmp_path)
    yield loader
    loader.close()


def fingerprint(
    project: ProjectLoader,
    files: dict[str, str],
    roots: Sequence[str] = ("clean",),
    **kwargs: object,
) -> CodeFingerprint:
    """Load a project version and fingerprint the named objects of its ``stages`` module."""
    module, root = project.load(files)
    objects = [getattr(module, name) for name in roots]
    return code_fingerprint(objects, project_dirs=[root], **kwargs)  # type: ignore[arg-type]


HELPERS = '''\
"""Helpers of the fixture project."""
THRESHOLD = 3


def smooth(x):
    """Smooth the data."""
    return x * 2
'''

STAGES = """\
import helpers


def clean(x, *, threshold=3.0):
    \"\"\"Clean the data.\"\"\"
    y = helpers.smooth(x)  # smooth first
    return y + helpers.THRESHOLD
"""


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_comment_only_edit_keeps_digest(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    stages = edit(STAGES, "# smooth first", "# a different comment\n    # and another")
    after = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    assert after.digest == before.digest


def test_docstring_edit_keeps_digest(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    stages = edit(STAGES, "Clean the data.", "Clean the data, longer.\n\n    Args: ...")
    helpers = edit(HELPERS, "Smooth the data.", "Smooth it.")
    after = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    assert after.digest == before.digest


def test_reformatting_keeps_digest(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    stages = edit(STAGES, "y = helpers.smooth(x)", "y = (\n        helpers.smooth( x, )\n    )\n\n")
    stages = edit(
        stages,
        "def clean(x, *, threshold=3.0):",
        "def clean(\n    x,\n    *,\n    threshold = 3.0,\n):",
    )
    after = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    assert after.digest == before.digest


def test_body_edit_changes_digest_and_names_the_function(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    stages = edit(STAGES, "return y + helpers.THRESHOLD", "return y - helpers.THRESHOLD")
    after = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    assert after.digest != before.digest
    assert changed_parts(before.parts, after.parts) == ["stages.clean"]


def test_helper_edit_through_module_attribute_is_named(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    after = fingerprint(project, {"stages.py": STAGES, "helpers.py": edit(HELPERS, "x * 2", "x * 3")})
    assert after.digest != before.digest
    assert changed_parts(before.parts, after.parts) == ["helpers.smooth"]


def test_helper_edit_through_from_import_is_detected(project: ProjectLoader) -> None:
    stages = "from helpers import smooth\n\ndef clean(x):\n    return smooth(x)\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(HELPERS, "* 2", "* 3")})
    assert changed_parts(before.parts, after.parts) == ["helpers.smooth"]


def test_helper_of_helper_edit_is_detected(project: ProjectLoader) -> None:
    helpers = "import deep\n\ndef smooth(x):\n    return deep.kernel(x) + 1\n"
    deep = "def kernel(x):\n    return x * 2\n"
    files = {"stages.py": STAGES.replace("helpers.THRESHOLD", "1"), "helpers.py": helpers}
    before = fingerprint(project, {**files, "deep.py": deep})
    after = fingerprint(project, {**files, "deep.py": edit(deep, "x * 2", "x * 4")})
    assert changed_parts(before.parts, after.parts) == ["deep.kernel"]


def test_submodule_reached_through_package_attributes_is_detected(project: ProjectLoader) -> None:
    stages = "from pkg import mod\n\ndef clean(x):\n    return mod.sub.f(x)\n"
    files = {
        "stages.py": stages,
        "pkg/__init__.py": "",
        "pkg/mod/__init__.py": "from . import sub\n",
    }
    before = fingerprint(project, {**files, "pkg/mod/sub.py": "def f(x):\n    return x\n"})
    after = fingerprint(project, {**files, "pkg/mod/sub.py": "def f(x):\n    return -x\n"})
    assert changed_parts(before.parts, after.parts) == ["pkg.mod.sub.f"]


def test_module_constant_change_is_detected(project: ProjectLoader) -> None:
    stages = STAGES + "\nLIMITS = {'lo': 0, 'hi': (1, 2.5)}\n\ndef other(x):\n    return LIMITS\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS}, ("clean", "other"))
    after = fingerprint(
        project,
        {"stages.py": stages.replace("2.5", "3.5"), "helpers.py": HELPERS.replace("= 3", "= 4")},
        ("clean", "other"),
    )
    assert changed_parts(before.parts, after.parts) == ["helpers.THRESHOLD", "stages.LIMITS"]


def test_third_party_module_change_is_ignored(project: ProjectLoader) -> None:
    stages = "import extlib\n\ndef clean(x):\n    return extlib.g(x)\n"

    def run(body: str) -> CodeFingerprint:
        files = {"proj/stages.py": stages, "vendor/extlib.py": f"def g(x):\n    return {body}\n"}
        module, root = project.load(files, sys_paths=("proj", "vendor"))
        return code_fingerprint([module.clean], project_dirs=[root / "proj"])

    before, after = run("x"), run("x + 1")
    assert after.digest == before.digest
    assert list(after.parts) == ["stages.clean"]


def test_site_packages_inside_the_project_folder_is_ignored(project: ProjectLoader) -> None:
    stages = "import extlib\n\ndef clean(x):\n    return extlib.g(x)\n"
    venv = ".venv/lib/python3/site-packages"

    def run(body: str) -> CodeFingerprint:
        files = {"stages.py": stages, f"{venv}/extlib.py": f"def g(x):\n    return {body}\n"}
        module, root = project.load(files, sys_paths=("", venv))
        return code_fingerprint([module.clean], project_dirs=[root])

    assert run("x").digest == run("x + 1").digest


CLASS_STAGES = """\
import helpers

class Clean:
    def __init__(self, *, threshold=3.0):
        self.threshold = threshold

    def setup(self):
        self.mask = helpers.smooth(1)

    def process(self, x):
        return x * self.threshold
"""


def test_class_stage_setup_change_is_detected_and_named(project: ProjectLoader) -> None:
    files = {"stages.py": CLASS_STAGES, "helpers.py": HELPERS}
    before = fingerprint(project, files, ("Clean",))
    after = fingerprint(project, {**files, "stages.py": edit(CLASS_STAGES, "(1)", "(2)")}, ("Clean",))
    assert changed_parts(before.parts, after.parts) == ["stages.Clean.setup"]
    helper = fingerprint(project, {**files, "helpers.py": edit(HELPERS, "* 2", "* 5")}, ("Clean",))
    assert changed_parts(before.parts, helper.parts) == ["helpers.smooth"]


def test_class_stage_init_default_is_a_parameter_not_code(project: ProjectLoader) -> None:
    files = {"stages.py": CLASS_STAGES, "helpers.py": HELPERS}
    before = fingerprint(project, files, ("Clean",))
    after = fingerprint(project, {**files, "stages.py": edit(CLASS_STAGES, "3.0", "2.0")}, ("Clean",))
    assert after.digest == before.digest


DECORATED = """\
import functools

class StageLike:
    def __init__(self, fn):
        self.__stagewise_fn__ = fn

def stage(**options):
    return StageLike

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper

@stage(memory="1GB", over=("sim",))
def clean(x):
    return x + 1

@logged
def wrapped(x):
    return x + 2
"""


def test_decorator_argument_change_on_the_root_keeps_digest(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": DECORATED})
    after = fingerprint(project, {"stages.py": edit(DECORATED, '"1GB"', '"2GB"')})
    assert after.digest == before.digest
    assert list(before.parts) == ["stages.clean"]  # unwrapped through __stagewise_fn__


def test_functools_wraps_root_is_unwrapped(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": DECORATED}, ("wrapped",))
    after = fingerprint(project, {"stages.py": edit(DECORATED, "x + 2", "x + 3")}, ("wrapped",))
    assert list(before.parts) == ["stages.wrapped"]
    assert changed_parts(before.parts, after.parts) == ["stages.wrapped"]


def test_keyword_only_default_of_the_root_is_a_parameter_not_code(project: ProjectLoader) -> None:
    before = fingerprint(project, {"stages.py": STAGES, "helpers.py": HELPERS})
    stages = edit(STAGES, "threshold=3.0", "threshold=2.5")
    after = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    assert after.digest == before.digest


def test_version_change_changes_digest(project: ProjectLoader) -> None:
    files = {"stages.py": STAGES, "helpers.py": HELPERS}
    none, one, two = (fingerprint(project, files, version=v) for v in (None, "1", "2"))
    assert len({none.digest, one.digest, two.digest}) == 3
    assert changed_parts(one.parts, two.parts) == ["<version>"]


def test_pre_and_post_hook_changes_are_detected(project: ProjectLoader) -> None:
    hooks = "def pre_scale(data, **params):\n    return data * 2\n"
    files = {"stages.py": STAGES + "\nfrom hooks import pre_scale\n", "helpers.py": HELPERS}
    roots = ("clean", "pre_scale")
    before = fingerprint(project, {**files, "hooks.py": hooks}, roots)
    after = fingerprint(project, {**files, "hooks.py": edit(hooks, "* 2", "* 3")}, roots)
    assert changed_parts(before.parts, after.parts) == ["hooks.pre_scale"]


def test_third_party_hook_counts_by_name_only(project: ProjectLoader) -> None:
    module, root = project.load({"stages.py": STAGES, "helpers.py": HELPERS})
    with_sqrt = code_fingerprint([module.clean, math.sqrt], project_dirs=[root])
    with_exp = code_fingerprint([module.clean, math.exp], project_dirs=[root])
    assert changed_parts(with_sqrt.parts, with_exp.parts) == ["math.exp", "math.sqrt"]


def test_recursion_between_helpers_terminates(project: ProjectLoader) -> None:
    helpers = "def a(n):\n    return b(n - 1) if n else 0\n\ndef b(n):\n    return a(n)\n"
    stages = "import helpers\n\ndef clean(x):\n    return helpers.a(x)\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(helpers, "a(n)\n", "a(n + 0)\n")})
    assert sorted(before.parts) == ["helpers.a", "helpers.b", "stages.clean"]
    assert changed_parts(before.parts, after.parts) == ["helpers.b"]


def test_module_mode_detects_change_in_unreferenced_function(project: ProjectLoader) -> None:
    files = {"stages.py": STAGES, "helpers.py": HELPERS + "\ndef unused():\n    return 1\n"}
    edited = {**files, "helpers.py": edit(files["helpers.py"], "return 1", "return 2")}
    assert fingerprint(project, files).digest == fingerprint(project, edited).digest
    before = fingerprint(project, files, mode="module")
    after = fingerprint(project, edited, mode="module")
    assert sorted(before.parts) == ["helpers", "stages"]
    assert changed_parts(before.parts, after.parts) == ["helpers"]


def test_module_mode_ignores_docstrings_and_comments(project: ProjectLoader) -> None:
    files = {"stages.py": STAGES, "helpers.py": HELPERS}
    before = fingerprint(project, files, mode="module")
    helpers = edit(HELPERS, '"""Helpers of the fixture project."""', "# nothing here\n")
    after = fingerprint(project, {**files, "helpers.py": helpers}, mode="module")
    assert after.digest == before.digest


def test_parameter_named_like_a_global_is_not_followed(project: ProjectLoader) -> None:
    stages = "def sky():\n    return 1\n\ndef clean(sky):\n    return sky + 1\n"
    before = fingerprint(project, {"stages.py": stages})
    after = fingerprint(project, {"stages.py": edit(stages, "return 1\n", "return 2\n")})
    assert list(before.parts) == ["stages.clean"]
    assert after.digest == before.digest


def test_instance_of_a_project_class_includes_its_class(project: ProjectLoader) -> None:
    helpers = "class Model:\n    def predict(self, x):\n        return x\n"
    stages = "import helpers\nMODEL = helpers.Model()\n\ndef clean(x):\n    return MODEL.predict(x)\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(helpers, "return x", "return -x")})
    assert changed_parts(before.parts, after.parts) == ["helpers.Model.predict"]


def test_registry_dict_of_functions_follows_the_functions(project: ProjectLoader) -> None:
    stages = (
        "import helpers\nREGISTRY = {'s': helpers.smooth}\n\ndef clean(x):\n    return REGISTRY['s'](x)\n"
    )
    before = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(HELPERS, "* 2", "* 3")})
    assert changed_parts(before.parts, after.parts) == ["helpers.smooth"]


def test_import_inside_the_function_takes_the_module_whole(project: ProjectLoader) -> None:
    stages = "def clean(x):\n    import helpers\n    return helpers.smooth(x)\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": HELPERS})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(HELPERS, "* 2", "* 3")})
    assert changed_parts(before.parts, after.parts) == ["helpers"]


def test_submodule_not_yet_imported_is_read_without_importing_it(project: ProjectLoader) -> None:
    stages = "import pkg\n\ndef clean(x):\n    return pkg.lazy.f(x)\n"
    files = {"stages.py": stages, "pkg/__init__.py": ""}
    lazy = "raise RuntimeError('must not be imported')\ndef f(x):\n    return x\n"
    before = fingerprint(project, {**files, "pkg/lazy.py": lazy})
    after = fingerprint(project, {**files, "pkg/lazy.py": edit(lazy, "return x", "return 2 * x")})
    assert "pkg.lazy" not in sys.modules
    assert changed_parts(before.parts, after.parts) == ["pkg.lazy"]


def test_value_like_instances_count_by_value(project: ProjectLoader) -> None:
    helpers = textwrap.dedent("""\
        import dataclasses, enum

        @dataclasses.dataclass(frozen=True)
        class Config:
            lr: float = 0.1

        class Mode(enum.Enum):
            FAST = 1
            SLOW = 2
    """)
    stages = textwrap.dedent("""\
        import helpers
        CONFIG = helpers.Config(lr=0.01)
        MODE = helpers.Mode.FAST

        def clean(x):
            return x * CONFIG.lr if MODE else x
    """)
    before = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    stages = edit(edit(stages, "0.01", "0.02"), "Mode.FAST", "Mode.SLOW")
    after = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    assert {"helpers.Config", "helpers.Mode"} <= set(before.parts)
    assert changed_parts(before.parts, after.parts) == ["stages.CONFIG", "stages.MODE"]


def test_lru_cached_helper_is_followed_through_wrapped(project: ProjectLoader) -> None:
    helpers = "import functools\n\n@functools.lru_cache\ndef smooth(x):\n    return x * 2\n"
    stages = "import helpers\n\ndef clean(x):\n    return helpers.smooth(x)\n"
    before = fingerprint(project, {"stages.py": stages, "helpers.py": helpers})
    after = fingerprint(project, {"stages.py": stages, "helpers.py": edit(helpers, "* 2", "* 3")})
    assert changed_parts(before.parts, after.parts) == ["helpers.smooth"]


def test_stagewise_itself_is_never_fingerprinted(project: ProjectLoader) -> None:
    stages = (
        "import stagewise.errors\nfrom stagewise.state.codefp import changed_parts\n\n"
        "def clean(x):\n    changed_parts({}, {})\n    raise stagewise.errors.StageError(x)\n"
    )
    module, root = project.load({"stages.py": stages})
    result = code_fingerprint([module.clean], project_dirs=[root, SRC])  # a development checkout
    assert list(result.parts) == ["stages.clean"]


def test_module_mode_import_cycle_terminates(project: ProjectLoader) -> None:
    files = {"stages.py": STAGES, "helpers.py": "import stages\n" + HELPERS}
    result = fingerprint(project, files, mode="module")
    assert sorted(result.parts) == ["helpers", "stages"]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["", "# note", "#"])), max_size=6))
def test_comments_and_blank_lines_anywhere_keep_digest(
    insertions: list[tuple[int, str]],
) -> None:
    lines = STAGES.splitlines()
    edited = list(lines)
    for position, text in sorted(insertions, reverse=True):
        index = min(position, len(edited))
        following = edited[index] if index < len(edited) else ""
        indent = following[: len(following) - len(following.lstrip())]
        edited.insert(index, indent + text if text else "")
    with tempfile.TemporaryDirectory() as folder:
        loader = ProjectLoader(Path(folder))
        try:
            before = fingerprint(loader, {"stages.py": STAGES, "helpers.py": HELPERS})
            stages = "\n".join(edited) + "\n"
            after = fingerprint(loader, {"stages.py": stages, "helpers.py": HELPERS})
        finally:
            loader.close()
    assert after.digest == before.digest


def exec_function(source: str, name: str = "f") -> object:
    """Define a function by exec, as a notebook or REPL would (no source on disk)."""
    namespace: dict[str, object] = {"__name__": "notebook_cell"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace[name]


def test_exec_defined_function_falls_back_to_bytecode(tmp_path: Path) -> None:
    source = "def g(x):\n    return x + 1\n\ndef f(x):\n    '''Doc.'''\n    return g(x) * 2\n"

    def digest(src: str) -> CodeFingerprint:
        return code_fingerprint([exec_function(src)], project_dirs=[tmp_path])

    first, again = digest(source), digest(source)
    assert first.digest == again.digest
    assert first.bytecode_parts == ("notebook_cell.f", "notebook_cell.g")
    assert digest(source.replace("* 2", "* 3")).digest != first.digest
    assert digest(source.replace("'''Doc.'''", "'''Other.'''")).digest == first.digest
    helper_edit = digest(source.replace("x + 1", "x + 5"))
    assert changed_parts(first.parts, helper_edit.parts) == ["notebook_cell.g"]


def test_bytecode_digest_is_stable_after_specialisation(tmp_path: Path) -> None:
    fn = exec_function("def f(x):\n    return x.real + 1\n")
    before = code_fingerprint([fn], project_dirs=[tmp_path])
    for value in range(2000):  # warm the adaptive interpreter
        fn(value)  # type: ignore[operator]
    assert code_fingerprint([fn], project_dirs=[tmp_path]).digest == before.digest


def test_repeated_calls_reuse_the_normalised_cache(
    project: ProjectLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, root = project.load({"stages.py": CLASS_STAGES, "helpers.py": HELPERS})
    first = code_fingerprint([module.Clean], project_dirs=[root])

    def no_source(obj: object) -> str:
        raise AssertionError("source read twice")

    monkeypatch.setattr(inspect, "getsource", no_source)
    again = code_fingerprint([module.Clean], project_dirs=[root])
    assert again == first
    assert again.bytecode_parts == ()


DETERMINISM_STAGES = """\
import helpers

TAGS = {"alpha", "beta", "gamma", "delta", frozenset({"x", "y", "z"})}
TABLE = {"b": 2, "a": [1.5, None, b"raw"]}

def clean(x):
    return helpers.smooth(x) if x in TAGS else TABLE
"""

DETERMINISM_SCRIPT = """\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import stages
from stagewise.state.codefp import code_fingerprint
print(code_fingerprint([stages.clean], project_dirs=[Path(sys.argv[1])]).digest)
"""


def test_digest_is_identical_across_processes_and_hash_seeds(project: ProjectLoader) -> None:
    module, root = project.load({"stages.py": DETERMINISM_STAGES, "helpers.py": HELPERS})
    here = code_fingerprint([module.clean], project_dirs=[root])
    assert "stages.TAGS" in here.parts
    digests = set()
    for seed in ("0", "1234"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC)}
        result = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT, str(root)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(result.stdout.strip())
    assert digests == {here.digest}


def test_changed_parts_lists_added_removed_and_changed_names() -> None:
    old = {"a.f": "1", "a.g": "2", "a.h": "3"}
    new = {"a.f": "1", "a.g": "9", "a.k": "4"}
    assert changed_parts(old, new) == ["a.g", "a.h", "a.k"]
    assert changed_parts(old, dict(old)) == []


def test_unknown_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fingerprint mode"):
        code_fingerprint([test_unknown_mode_is_a_config_error], project_dirs=[tmp_path], mode="file")  # type: ignore[arg-type]
