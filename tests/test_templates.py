"""Path templates: parsing, safe rendering, resolution inside roots, matching back."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagewise.errors import Problem, TemplateError
from stagewise.model.templates import Template, parse_problems, resolve, resolve_str

SKY = "sky/{split}/{sim:04d}.npy"


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("sky/{sim", "unbalanced braces"),
        ("sky/sim}.npy", "unbalanced braces"),
        ("sky/{}.npy", "positional"),
        ("sky/{0}.npy", "positional"),
        ("sky/{a.b}.npy", "attribute and index access"),
        ("sky/{a[0]}.npy", "attribute and index access"),
        ("sky/{a!r}.npy", "conversions"),
        ("sky/{a:{b}}.npy", "nested fields"),
        ("sky/{1a}.npy", "Python identifier"),
        ("sky/{a b}.npy", "Python identifier"),
        ("sky/{a:/>4}.npy", "path separator"),
        ("{sim}/{sim:04d}.npy", "one format spec"),
        ("/x/{sim}.npy", "must be relative"),
        ("\\x\\{sim}.npy", "must be relative"),
        ("C:/x/{sim}.npy", "must be relative"),
        ("../{sim}.npy", "'..'"),
        ("sky/../{sim}.npy", "'..'"),
        ("{data}/../mask.npy", "'..'"),
        ("sky/{sim}/..", "'..'"),
        ("sky/{sim}/", "must name a file"),
        ("", "non-empty"),
        ("a\0b", "NUL"),
    ],
)
def test_malformed_template_is_refused_naming_template_and_problem(text: str, what: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template(text)
    assert what in caught.value.message
    if text:
        assert repr(text) in caught.value.message


def test_non_string_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="must be a string"):
        Template(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["a..b/{sim}.npy", "sky/{sim}..npy", "./sky/{sim}.npy", "..x/a"])
def test_dots_inside_a_component_are_allowed(text: str) -> None:
    assert Template(text).text == text


def test_fields_are_distinct_in_order_of_first_appearance() -> None:
    assert Template("{b}/{a}/{b}_{c:03d}.npy").fields == ("b", "a", "c")
    assert Template("summary/summary.json").fields == ()


def test_escaped_braces_are_literal() -> None:
    template = Template("a{{x}}/{sim}.npy")
    assert template.fields == ("sim",)
    assert template.render({"sim": 3}) == "a{x}/3.npy"
    assert template.match("a{x}/3.npy") == {"sim": "3"}


def test_template_is_an_immutable_hashable_picklable_value() -> None:
    template = Template(SKY)
    assert template == Template(SKY) and hash(template) == hash(Template(SKY))
    assert template != Template("other/{sim}.npy")
    assert {template: 1}[Template(SKY)] == 1
    assert str(template) == SKY and SKY in repr(template)
    assert pickle.loads(pickle.dumps(template)) == template
    with pytest.raises(AttributeError):
        template.text = "x"  # type: ignore[misc]


def test_root_field_is_a_bare_whole_first_component() -> None:
    assert Template("{data}/mask.npy").root_field == "data"
    assert Template("{data}").root_field == "data"
    assert Template("{split}/{sim}.npy").root_field == "split"
    assert Template("{data}_x/mask.npy").root_field is None
    assert Template("{data:>4}/mask.npy").root_field is None
    assert Template("sky/{sim}.npy").root_field is None


# --- rendering ---------------------------------------------------------------------------------


def test_render_applies_format_specs() -> None:
    assert Template(SKY).render({"split": "train", "sim": 3}) == "sky/train/0003.npy"
    assert Template("m/{lr:g}_{freq}.pt").render({"lr": 0.001, "freq": 100}) == "m/0.001_100.pt"
    assert Template("{sim:04d}.npy").render({"sim": -3}) == "-003.npy"


def test_render_ignores_extra_tags() -> None:
    assert Template("s/{sim}.npy").render({"sim": 1, "split": "x", "stage": "f"}) == "s/1.npy"


def test_render_substitutes_a_leading_path_field_with_its_root() -> None:
    paths = {"data": "/abs/raw"}
    assert Template("{data}/mask.npy").render({}, paths) == "/abs/raw/mask.npy"
    assert Template("{data}/{sim:02d}.npy").render({"sim": 1}, paths) == "/abs/raw/01.npy"
    assert Template("{data}").render({}, paths) == "/abs/raw"


def test_render_refuses_a_path_field_that_is_not_first() -> None:
    with pytest.raises(TemplateError, match=r"path tag \{data\} may only be the whole first"):
        Template("x/{data}/mask.npy").render({}, {"data": "/abs/raw"})


@pytest.mark.parametrize("value", ["a/b", "..", ".", "/abs", "", "a\\b", "a\0b"])
def test_render_refuses_unsafe_tag_values(value: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template(SKY).render({"split": value, "sim": 1})
    message = caught.value.message
    assert "split" in message and repr(value) in message and repr(SKY) in message
    assert caught.value.hint is not None and "path separators" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "value"), [("{sim:c}.npy", 47), ("{sim:c}.npy", 46), ("{split:.0}/x", "train")]
)
def test_render_checks_the_formatted_value_not_only_the_raw_one(text: str, value: object) -> None:
    tag = Template(text).fields[0]
    with pytest.raises(TemplateError, match="formatted"):
        Template(text).render({tag: value})


def test_render_names_a_missing_tag_and_the_template() -> None:
    with pytest.raises(TemplateError, match=r"missing tag \{sim\}") as caught:
        Template(SKY).render({"split": "train"})
    assert repr(SKY) in caught.value.message and "split" in caught.value.message


def test_render_names_field_spec_and_value_when_the_spec_does_not_fit() -> None:
    with pytest.raises(TemplateError) as caught:
        Template(SKY).render({"split": "train", "sim": "abc"})
    message = caught.value.message
    assert "sim" in message and "'04d'" in message and "'abc'" in message


# --- resolution --------------------------------------------------------------------------------


def test_resolve_joins_relative_paths_to_the_default_root(tmp_path: Path) -> None:
    out = tmp_path / "out"
    got = resolve("sky/train/0003.npy", default_root=out, allowed_roots=[out])
    assert got == out / "sky" / "train" / "0003.npy"
    assert resolve("a/./b/../c.npy", default_root=out, allowed_roots=[out]) == out / "a" / "c.npy"


def test_resolve_accepts_paths_under_any_allowed_root(tmp_path: Path) -> None:
    out, raw = tmp_path / "out", tmp_path / "raw"
    mask = str(raw / "mask.npy")
    assert resolve(mask, default_root=out, allowed_roots=[out, raw]) == raw / "mask.npy"
    assert resolve_str(mask, default_root=out, allowed_roots=[out, raw]) == mask


@pytest.mark.parametrize("rendered", ["../x.npy", "a/../../x.npy", "../outside/x.npy"])
def test_resolve_refuses_paths_that_leave_the_roots(tmp_path: Path, rendered: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(TemplateError) as caught:
        resolve(rendered, default_root=out, allowed_roots=[out])
    assert repr(rendered) in caught.value.message and str(out) in caught.value.message
    assert caught.value.hint is not None and "cannot resolve outside" in caught.value.hint


def test_resolve_compares_components_not_string_prefixes(tmp_path: Path) -> None:
    inside, sibling = tmp_path / "a" / "b", tmp_path / "a" / "bc"
    assert resolve(str(inside / "x"), default_root=inside, allowed_roots=[inside])
    with pytest.raises(TemplateError):
        resolve(str(sibling / "x"), default_root=inside, allowed_roots=[inside])


def test_resolve_with_a_relative_default_root_starts_at_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    got = resolve("x.npy", default_root=Path("out"), allowed_roots=[tmp_path / "out"])
    assert got == tmp_path / "out" / "x.npy"


def test_path_renders_and_resolves_in_one_call(tmp_path: Path) -> None:
    out, raw = tmp_path / "out", tmp_path / "raw"
    paths, roots = {"data": str(raw)}, [out, raw]
    tags = {"split": "test", "sim": 2}
    sky = Template(SKY).path(tags, paths=paths, default_root=out, allowed_roots=roots)
    assert sky == out / "sky" / "test" / "0002.npy"
    mask = Template("{data}/mask.npy").path({}, paths=paths, default_root=out, allowed_roots=roots)
    assert mask == raw / "mask.npy"
    with pytest.raises(TemplateError):  # a path root that is not allowed
        Template("{data}/m.npy").path({}, paths=paths, default_root=out, allowed_roots=[out])


# --- validation problems -----------------------------------------------------------------------


def _problems(text: str) -> list[Problem]:
    return Template(text).problems(
        known_dims=["split", "sim", "freq"],
        path_names=["data"],
        builtin_tags=["stage", "variant"],
        place="pipeline.yaml: stages.clean.outputs.clean",
        stage="clean",
    )


def test_problems_is_empty_for_known_tags() -> None:
    assert _problems("{data}/{stage}/{split}/{sim:04d}_{freq}_{variant}.npy") == []


def test_problems_reports_each_unknown_tag_with_did_you_mean() -> None:
    first, second = _problems("{frq}/{zzz}.npy")
    assert "unknown tag {frq}" in first.message and first.hint == "did you mean 'freq'?"
    assert "unknown tag {zzz}" in second.message
    assert second.hint is not None and "known tags: data, freq, sim" in second.hint
    assert first.stage == "clean" and str(first).startswith("pipeline.yaml: stages.clean")


@pytest.mark.parametrize("text", ["x/{data}/m.npy", "{data:>4}/m.npy", "{data}/{data}.npy"])
def test_problems_reports_a_path_tag_not_alone_in_first_position(text: str) -> None:
    (problem,) = _problems(text)
    assert "path tag {data} may only be the whole first component" in problem.message


def test_parse_problems_turns_construction_errors_into_problems() -> None:
    template, problems = parse_problems(SKY, "here")
    assert template == Template(SKY) and problems == []
    template, problems = parse_problems("../{sim}.npy", "pipeline.yaml: sources.mask", "s")
    assert template is None
    (problem,) = problems
    assert problem.place == "pipeline.yaml: sources.mask" and "'..'" in problem.message
    assert problem.stage == "s" and problem.severity == "error"


# --- matching and globbing ---------------------------------------------------------------------


def test_match_recovers_formatted_tag_values() -> None:
    template = Template(SKY)
    assert template.match("sky/train/0003.npy") == {"split": "train", "sim": "0003"}
    assert template.match("sky/train/0003.npz") is None
    assert template.match("sky/train/sub/0003.npy") is None
    assert template.match("sky/train/abc.npy") is None  # {sim:04d} is digits


def test_match_uses_digits_to_split_a_component() -> None:
    template = Template("m/{sim:04d}_{name}.pt")
    assert template.match("m/0012_a_b.pt") == {"sim": "0012", "name": "a_b"}


def test_match_requires_a_repeated_field_to_repeat_its_value() -> None:
    template = Template("{sim}/{sim}.npy")
    assert template.match("3/3.npy") == {"sim": "3"}
    assert template.match("3/4.npy") is None


def test_match_refuses_dot_components_and_escapes_literals() -> None:
    assert Template("s/{split}/x.npy").match("s/../x.npy") is None
    template = Template("a+b(1)/{x}.npy")
    assert template.match("a+b(1)/q.npy") == {"x": "q"}
    assert template.match("aab(1)/q.npy") is None


def test_match_strips_a_path_root() -> None:
    template, paths = Template("{data}/{sim}.npy"), {"data": "/abs/raw"}
    assert template.match("/abs/raw/4.npy", paths) == {"sim": "4"}
    assert template.match("/abs/rawx/4.npy", paths) is None
    assert template.match("raw/4.npy") == {"data": "raw", "sim": "4"}


def test_glob_pattern_stars_free_fields_and_renders_fixed_ones() -> None:
    assert Template(SKY).glob_pattern({}) == "sky/*/*.npy"
    assert Template(SKY).glob_pattern({"split": "test"}) == "sky/test/*.npy"
    assert Template(SKY).glob_pattern({"sim": 7}) == "sky/*/0007.npy"
    assert Template("{a}{b}.npy").glob_pattern({}) == "*.npy"
    assert Template("x[1]/{a}.npy").glob_pattern({"a": "b*"}) == "x[[]1]/b[*].npy"
    assert Template("{data}/{sim}.npy").glob_pattern({}, {"data": "/r[1]"}) == "/r[[]1]/*.npy"
    with pytest.raises(TemplateError):
        Template(SKY).glob_pattern({"split": "a/b"})


# --- properties --------------------------------------------------------------------------------

_SAFE_CHARS = st.characters(exclude_characters="/\\\0:", exclude_categories=("Cs",))
_SAFE_TEXT = st.text(_SAFE_CHARS, min_size=1, max_size=12).filter(lambda s: s not in {".", ".."})


@given(split=_SAFE_TEXT, sim=st.integers(-999, 10**6), name=_SAFE_TEXT)
def test_match_inverts_render_for_safe_values(split: str, sim: int, name: str) -> None:
    template = Template("out/{split}/{sim:04d}_{name}.npy")
    rendered = template.render({"split": split, "sim": sim, "name": name})
    assert template.match(rendered) == {"split": split, "sim": format(sim, "04d"), "name": name}


@given(value=st.one_of(st.text(max_size=8), st.sampled_from(["..", ".", "/", "a/..", "/etc"])))
def test_a_rendered_template_never_leaves_its_root(value: str) -> None:
    root = os.path.abspath("out")
    try:
        rendered = Template("{a}/x/{b}.npy").render({"a": value, "b": value})
    except TemplateError:
        return
    assert resolve_str(rendered, default_root=root, allowed_roots=[root]).startswith(root + os.sep)
