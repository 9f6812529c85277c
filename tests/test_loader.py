"""The YAML loader: YAML 1.2 scalars, positions, duplicate keys, tags, limits, encodings, merge keys."""

from __future__ import annotations

import math
import time
import tracemalloc

import pytest

import nnspec
from nnspec.compiler.pipeline import analyse_bytes, analyse_file, analyse_text
from nnspec.schema import loader
from nnspec.schema.loader import LoadError, load_document

SPEC = "nnspec: 1\nname: m\ninput: [16]\nlayers:\n"


def data(text: str):
    return load_document("<t>", text).data


def load_error(text: str):
    with pytest.raises(LoadError) as info:
        load_document("<t>", text)
    return info.value.diagnostic


def codes(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in analyse_text(text, "<t>")[1]]


# -- YAML 1.2 scalars ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("1e-4", 1e-4), ("1.0e-4", 1e-4), ("1E-4", 1e-4), ("-1e-4", -1e-4), ("+2e3", 2000.0), ("1e4", 1e4),
    (".5", 0.5), ("1.", 1.0), ("0.25", 0.25), ("-0.0", -0.0),
])
def test_floats_follow_yaml_1_2(text, value):
    got = data(f"v: {text}\n")["v"]
    assert isinstance(got, float) and got == value


@pytest.mark.parametrize("text, value", [("10", 10), ("-3", -3), ("+7", 7), ("0755", 755), ("0o17", 15),
                                         ("0x1F", 31), ("0", 0)])
def test_integers_follow_yaml_1_2(text, value):
    got = data(f"v: {text}\n")["v"]
    assert type(got) is int and got == value


@pytest.mark.parametrize("text", ["no", "off", "yes", "on", "y", "n", "No", "OFF", "1:30", "1_000", "0b101",
                                  "12e", "e3", "nan", "inf"])
def test_yaml_1_1_specials_are_strings(text):
    assert data(f"v: {text}\n")["v"] == text


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("FALSE", False), ("false", False),
                                         ("~", None), ("null", None), ("", None)])
def test_booleans_and_null(text, value):
    assert data(f"v: {text}\n")["v"] is value


def test_special_floats_load_and_are_refused_by_the_schema():
    assert data("v: .inf\n")["v"] == math.inf
    assert data("v: -.Inf\n")["v"] == -math.inf
    assert math.isnan(data("v: .nan\n")["v"])
    assert codes(SPEC + "  - layernorm: {eps: .nan}\n") == [("NS004", 5, 22)]


@pytest.mark.parametrize("spelling", ["1e-4", "1.0e-4"])
def test_exponent_float_accepted_where_a_float_is_expected(spelling):
    spec = nnspec.loads(SPEC + f"  - linear: {{out: 4, init: {{weight: {{normal: {{std: {spelling}}}}}}}}}\n"
                               f"  - layernorm: {{eps: {spelling}}}\n")
    layers = list(spec.graph.layers())
    assert layers[0].tensors["weight"].init.args["std"] == pytest.approx(1e-4)
    assert layers[1].args["eps"] == pytest.approx(1e-4)


def test_quoted_exponent_is_a_string_not_a_number():
    assert codes(SPEC + "  - layernorm: {eps: '1e-4'}\n") == [("NS004", 5, 22)]


def test_no_is_a_string_name_but_not_a_padding():
    spec = nnspec.loads("nnspec: 1\nname: no\ninput: [16]\nlayers:\n  - relu\n")
    assert spec.name == "no"
    text = "nnspec: 1\nname: m\ninput: [3, 8, 8]\nlayers:\n  - conv2d: {out: 4, kernel: 3, padding: no}\n"
    diags = analyse_text(text, "<t>")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS004", 5, 42)]
    assert "'no'" in diags[0].message and "boolean" not in diags[0].message


def test_core_tags_are_allowed():
    assert data("v: !!str 5\n")["v"] == "5"
    assert data("v: !!int '7'\n")["v"] == 7
    assert data("v: !!float '1'\n")["v"] == 1.0


# -- positions -------------------------------------------------------------------------------------


def test_every_key_and_value_keeps_its_position():
    doc = load_document("f.yaml", "nnspec: 1\nlayers:\n  - linear:\n      out: 10\n  - relu\n")
    assert (doc.key_span(("layers", 0, "linear", "out")).line, doc.key_span(("layers", 0, "linear", "out")).column) \
        == (4, 7)
    value = doc.span(("layers", 0, "linear", "out"))
    assert (value.file, value.line, value.column, value.end_line, value.end_column) == ("f.yaml", 4, 12, 4, 14)
    assert (doc.span(("layers", 1)).line, doc.span(("layers", 1)).column) == (5, 5)
    # a path that is not in the data falls back to its nearest located ancestor
    assert doc.span(("layers", 0, "linear", "missing")) == doc.span(("layers", 0, "linear"))


# -- duplicate keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, second, first", [
    ("a: 1\nb: 2\na: 3\n", (3, 1), 1),
    ("x: {out: 1, out: 2}\n", (1, 13), 1),
    ("l:\n  - linear:\n      out: 1\n\n      out: 2\n", (5, 7), 3),
])
def test_duplicate_keys_name_both_lines(text, second, first):
    diag = load_error(text)
    assert (diag.code, diag.line, diag.column) == ("NS002", *second)
    assert f"line {first}" in diag.message


def test_same_key_in_different_mappings_is_fine():
    assert data("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


# -- tags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "v: !!python/object:os.system {}\n",
    "v: !!python/object/apply:os.system ['id']\n",
    "v: !!python/name:os.system ''\n",
    "v: !!python/module:os ''\n",
    "v: !foo bar\n",
    "v: !foo {a: 1}\n",
    "v: !foo [1]\n",
    "v: !<tag:example.com,2024:thing> 1\n",
    "v: !!binary aGVsbG8=\n",
    "v: !!timestamp 2001-12-14\n",
    "v: !!set {a, b}\n",
    "v: !!omap [a: 1]\n",
    "v: !!str [1, 2]\n",
    "v: !!map [1, 2]\n",
])
def test_object_constructing_and_unknown_tags_are_ns006(text):
    diag = load_error(text)
    assert (diag.code, diag.line, diag.column) == ("NS006", 1, 4)


def test_python_tag_never_runs(tmp_path):
    marker = tmp_path / "ran"
    text = ("nnspec: 1\nname: !!python/object/apply:pathlib.Path.touch "
            f"[!!python/object/apply:pathlib.Path ['{marker}']]\n")
    assert [d.code for d in analyse_text(text, "<t>")[1]] == ["NS006"]
    assert not marker.exists()


# -- limits ----------------------------------------------------------------------------------------


def _laughs(levels: int, width: int = 9) -> str:
    lines = ["nnspec: 1", "l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [9, 30])
def test_billion_laughs_is_refused_quickly_with_little_memory(levels):
    text = _laughs(levels)
    tracemalloc.start()
    start = time.process_time()
    _, diags = analyse_text(text, "<t>")
    elapsed = time.process_time() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [d.code for d in diags] == ["NS005"]
    assert elapsed < 10.0  # processor time: a blow-up takes minutes, a loaded machine does not move it
    assert peak < 50 * 1024 * 1024


def test_billion_laughs_through_merge_keys_is_refused():
    lines = ["nnspec: 1", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for i in range(1, 12):
        lines.append(f"m{i}: &m{i} {{x: *m{i - 1}, y: *m{i - 1}, z: *m{i - 1}, w: *m{i - 1}}}")
    start = time.process_time()
    diags = analyse_text("\n".join(lines) + "\n", "<t>")[1]
    assert [d.code for d in diags] == ["NS005"]
    assert time.process_time() - start < 10.0  # processor time, generous: a blow-up takes minutes


def test_small_aliases_are_fine():
    spec = nnspec.loads(SPEC + "  - linear: &hidden {out: 16}\n  - relu\n  - linear: *hidden\n")
    assert [layer.out_shape for layer in spec.graph.layers()] == [(16,), (16,), (16,)]


@pytest.mark.parametrize("text", [
    "v: " + "[" * 100 + "]" * 100 + "\n",
    "v: " + "{a: " * 100 + "1" + "}" * 100 + "\n",
    "v:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 100)),
    "v:\n" + "".join("  " * i + "-\n" for i in range(1, 100)),
])
def test_nesting_deeper_than_the_limit_is_ns005(text):
    assert [d.code for d in analyse_text(text, "<t>")[1]] == ["NS005"]


def test_absurd_nesting_is_ns005_not_a_crash():
    start = time.process_time()
    diags = analyse_text("v: " + "[" * 200_000 + "\n", "<t>")[1]
    assert [d.code for d in diags] == ["NS005"]
    assert time.process_time() - start < 10.0  # processor time, generous: a blow-up takes minutes


@pytest.mark.parametrize("text", [
    # blocks of repeats called with repeats: 100**4 layers
    "nnspec: 1\nname: m\ninput: [16]\nblocks:\n  a:\n    layers: [{relu: {repeat: 100}}]\n  b:\n"
    "    layers: [{a: {repeat: 100}}]\n  c:\n    layers: [{b: {repeat: 100}}]\nlayers:\n  - c: {repeat: 100}\n",
    "nnspec: 1\nname: m\ninput: [16]\nlayers:\n  - relu: {repeat: 1000000000}\n",
    # a block body with a large aliased value, called many times
    "nnspec: 1\nname: m\ninput: [300]\nblocks:\n  b:\n    layers:\n      - linear: {out: 300, init: {weight: "
    "{values: [&r [" + ", ".join(["1"] * 300) + "], " + ", ".join(["*r"] * 299) + "]}}}\nlayers:\n"
    "  - b: {repeat: 10000}\n",
])
def test_expansion_through_blocks_and_repeat_is_bounded(text):
    start = time.process_time()
    diags = analyse_text(text, "<t>")[1]
    assert [d.code for d in diags] == ["NS005"]
    assert "expand the model" in diags[0].message
    assert time.process_time() - start < 10.0  # processor time, generous: a blow-up takes minutes


def test_nesting_within_the_limit_is_fine():
    depth = loader.MAX_DEPTH - 2
    assert data("v: " + "[" * depth + "1" + "]" * depth + "\n") is not None


def test_file_size_limit(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"nnspec: 1\n" + b"#" * loader.MAX_FILE_BYTES + b"\n")
    diags = analyse_file(str(big))[1]
    assert [(d.code, d.line) for d in diags] == [("NS005", 1)]
    assert str(loader.MAX_FILE_BYTES) in diags[0].message
    assert [d.code for d in analyse_bytes(big.read_bytes(), "big.yaml")[1]] == ["NS005"]


# -- encodings and empty files ---------------------------------------------------------------------


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (SPEC + "  - relu\n").encode())
    assert nnspec.load(path).name == "m"
    assert nnspec.loads("\ufeff" + SPEC + "  - relu\n").name == "m"


def test_not_utf8_is_ns001_with_position():
    diags = analyse_bytes(b"nnspec: 1\nname: ok\n  # caf\xe9\n", "<t>")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS001", 3, 8)]
    assert "0xe9" in diags[0].message


def test_utf16_is_ns001():
    diags = analyse_bytes((SPEC + "  - relu\n").encode("utf-16"), "<t>")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS001", 1, 1)]


@pytest.mark.parametrize("raw, position", [(b"nnspec: 1\nname: a\x00b\n", (2, 8)),
                                           (b"nnspec: 1\nname: a\x07b\n", (2, 8))])
def test_control_characters_are_ns001_with_position(raw, position):
    diags = analyse_bytes(raw, "<t>")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS001", *position)]
    assert "\n" not in diags[0].message


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# just a comment\n", "# a\n\n  # b\n", "---\n", "--- \n...\n"])
def test_empty_documents_are_ns001(text):
    diags = analyse_text(text, "<t>")[1]
    assert [(d.code, d.line) for d in diags] == [("NS001", 1)]


def test_syntax_error_is_ns001_at_the_parser_position():
    diags = analyse_text("nnspec: 1\nname: m\ninput: [16\nlayers:\n  - relu\n", "<t>")[1]
    assert [d.code for d in diags] == ["NS001"]
    assert diags[0].line in (3, 4)
    diags = analyse_text("nnspec: 1\n  name: m\n", "<t>")[1]
    assert [(d.code, d.line) for d in diags] == [("NS001", 2)]


def test_several_documents_are_ns001():
    assert [(d.code, d.line) for d in analyse_text("nnspec: 1\n---\nnnspec: 1\n", "<t>")[1]] == [("NS001", 2)]


def test_non_scalar_keys_are_refused():
    assert [d.code for d in analyse_text("? [a, b]\n: 1\n", "<t>")[1]] == ["NS004"]


# -- merge keys ------------------------------------------------------------------------------------


def test_merge_keys():
    spec = nnspec.loads(SPEC + "  - linear: &fc {out: 8, bias: false}\n  - relu\n  - linear:\n      <<: *fc\n"
                               "      out: 4\n")
    first, _, second = spec.graph.layers()
    assert first.args == {"out": 8, "bias": False}
    assert second.args == {"out": 4, "bias": False}


def test_merge_key_list_first_mapping_wins():
    assert data("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  w: 3\n")["c"] == \
        {"x": 1, "y": 1, "z": 2, "w": 3}


def test_merge_key_positions_are_those_of_the_winning_entry():
    diags = analyse_text(SPEC + "  - linear: &fc {out: 8, bias: false}\n  - relu\n  - linear:\n      <<: *fc\n"
                                "      out: 0\n", "<t>")[1]
    assert [(d.code, d.line, d.column) for d in diags] == [("NS004", 9, 12)]


def test_merge_needs_a_mapping():
    assert [d.code for d in analyse_text("a:\n  <<: 5\n", "<t>")[1]] == ["NS004"]


def test_quoted_merge_key_is_an_ordinary_key():
    diags = analyse_text(SPEC + "  - linear:\n      out: 3\n      \"<<\": {bias: false}\n", "<t>")[1]
    assert [(d.code, d.line) for d in diags] == [("NS003", 7)]
