"""The public API is exactly what ``stagewise.__all__`` lists, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import stagewise

PUBLIC = [
    "REJECT",
    "Asset",
    "AssetIOError",
    "AssetView",
    "Collection",
    "ConfigError",
    "Group",
    "HandlerError",
    "Item",
    "Lazy",
    "Out",
    "OutputHandle",
    "ParameterError",
    "Pipeline",
    "Problem",
    "Reject",
    "Result",
    "RunFailed",
    "SelectionError",
    "Stage",
    "StageError",
    "StagewiseError",
    "StateError",
    "TemplateError",
    "ValidationError",
    "__version__",
    "group",
    "load",
    "register_handler",
    "stage",
]


def test_the_public_names_are_pinned():
    assert sorted(stagewise.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves_to_an_object():
    for name in stagewise.__all__:
        assert getattr(stagewise, name) is not None, name


def test_an_unknown_name_is_an_attribute_error():
    try:
        stagewise.no_such_thing  # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("stagewise.no_such_thing should not exist")


def test_importing_stagewise_loads_no_heavy_library():
    code = (
        "import sys, stagewise; "
        "heavy = [m for m in ('numpy', 'yaml', 'rich', 'distributed', 'sqlite3', 'cloudpickle') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
