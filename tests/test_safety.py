"""The initializer safety rules NS201-NS213: fixtures, positions, messages, waivers, merging, examples, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.codes import CODES, render_rules_markdown
from nnspec.compiler.pipeline import analyse_text
from nnspec.compiler.safety import WAIVABLE

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = ROOT / "examples"
SAFETY_CODES = [f"NS2{n:02d}" for n in range(1, 18)]
SCHEMA_LINE = "# yaml-language-server: $schema=../nnspec.schema.json"

# fixture -> every (code, line) that `nnspec.check` must report, nothing more
FIXTURE_EXPECTATIONS = {
    "NS201_before_activation_in_branch.yaml": {("NS201", 9)},
    "NS201_block_calls.yaml": {("NS201", 9)},
    "NS201_embedding.yaml": {("NS201", 6)},
    "NS201_exempt_head.yaml": set(),
    "NS201_exempt_head_through_softmax.yaml": set(),
    "NS201_exempt_residual_tail.yaml": set(),
    "NS201_hidden_zero.yaml": {("NS201", 6)},
    "NS201_model_default.yaml": {("NS201", 9)},
    "NS202_dead_relu.yaml": {("NS201", 6), ("NS202", 6)},
    "NS202_exempt_add_ends_chain.yaml": set(),
    "NS202_exempt_positive_bias.yaml": set(),
    "NS202_exempt_random_bias.yaml": set(),
    "NS202_leaky_slope_zero.yaml": {("NS202", 6)},
    "NS202_negative_bias_through_pool.yaml": {("NS202", 10)},
    "NS202_through_batchnorm.yaml": {("NS201", 6), ("NS202", 6)},
    "NS202_through_tanh.yaml": {("NS201", 6), ("NS202", 6)},
    "NS202_waived_zero_before_tanh.yaml": set(),
    "NS202_zero_gamma.yaml": {("NS202", 7), ("NS205", 7)},
    "NS203_constant_chain.yaml": {("NS201", 6), ("NS203", 6)},
    "NS203_dropout_between.yaml": {("NS203", 6)},
    "NS203_exempt_random_after_residual.yaml": set(),
    "NS203_exempt_random_bias.yaml": {("NS201", 6)},
    "NS203_exempt_random_norm.yaml": set(),
    "NS203_identity_shortcut.yaml": {("NS203", 6)},
    "NS203_residual_both_paths.yaml": {("NS201", 6), ("NS203", 6), ("NS204", 11)},
    "NS203_through_norm_and_blocks.yaml": {("NS201", 9), ("NS201", 14), ("NS203", 9)},
    "NS203_zero_head.yaml": {("NS203", 6)},
    "NS204_conv_transpose.yaml": {("NS204", 9)},
    "NS204_exempt_embedding.yaml": set(),
    "NS204_exempt_small_constant.yaml": set(),
    "NS204_exempt_small_transposed.yaml": set(),
    "NS204_ones_head.yaml": {("NS204", 8)},
    "NS205_exempt_residual_tail.yaml": set(),
    "NS205_exempt_rmsnorm_tail.yaml": set(),
    "NS205_model_default.yaml": {("NS205", 13)},
    "NS205_rmsnorm.yaml": {("NS205", 7)},
    "NS205_tail_before_activation.yaml": {("NS202", 8), ("NS205", 8)},
    "NS205_zero_gamma.yaml": {("NS205", 7)},
    "NS206_eye_bias.yaml": {("NS206", 6)},
    "NS206_eye_conv.yaml": {("NS206", 6)},
    "NS207_exempt_square.yaml": set(),
    "NS207_eye_rectangular.yaml": {("NS207", 6)},
    "NS208_dirac_gamma.yaml": {("NS208", 7)},
    "NS208_dirac_linear.yaml": {("NS208", 6)},
    "NS209_even_kernel.yaml": {("NS209", 6)},
    "NS209_exempt_identity.yaml": set(),
    "NS209_padding.yaml": {("NS209", 6)},
    "NS209_stride_and_channels.yaml": {("NS209", 6)},
    "NS210_model_default.yaml": {("NS210", 8)},
    "NS210_orthogonal_gamma.yaml": {("NS210", 7)},
    "NS210_xavier_bias.yaml": {("NS210", 6)},
    "NS211_exempt_log_prior_head.yaml": set(),
    "NS211_log_prior_length.yaml": {("NS211", 8)},
    "NS211_log_prior_weight.yaml": {("NS211", 8)},
    "NS211_sparse_conv.yaml": {("NS211", 6)},
    "NS211_values_shape.yaml": {("NS211", 9)},
    "NS212_overridden_everywhere.yaml": {("NS212", 6)},
    "NS212_unused_default.yaml": {("NS212", 6)},
    "NS212_container_init_unused.yaml": {("NS212", 10), ("NS212", 12), ("NS212", 13)},
    "NS213_block_body_waiver.yaml": {("NS213", 11)},
    "NS214_exempt_irnn.yaml": set(),
    "NS214_exempt_keras_defaults.yaml": set(),
    "NS214_model_default.yaml": {("NS214", 8)},
    "NS214_zero_input_and_recurrent.yaml": {("NS214", 7)},
    "NS215_constant_input.yaml": {("NS215", 6)},
    "NS215_exempt_waived.yaml": set(),
    "NS215_gate_constants.yaml": {("NS215", 9)},
    "NS213_container_waiver.yaml": {("NS213", 12)},
    "NS213_exempt_used_waivers.yaml": set(),
    "NS213_not_waivable.yaml": {("NS210", 6), ("NS213", 6)},
    "NS213_unknown_code.yaml": {("NS213", 6)},
    "NS213_unused_waiver.yaml": {("NS213", 8)},
    "NS216_constant_in_weight.yaml": {("NS216", 6)},
    "NS216_exempt_gpt2_init.yaml": set(),
    "NS216_exempt_residual_tail.yaml": set(),
    "NS216_exempt_vit_init.yaml": set(),
    "NS216_hidden_zero_out_weight.yaml": {("NS216", 6)},
    "NS216_value_ones.yaml": {("NS216", 8)},
    "NS217_zero_query_key.yaml": {("NS217", 9)},
    "NS217_zeros_in_residual.yaml": {("NS216", 9), ("NS217", 9)},
}

# rules where "the same choice in a legitimate place" exists: each needs an exempt fixture
EXEMPT_VARIANTS = ("NS201", "NS202", "NS203", "NS204", "NS205", "NS207", "NS209", "NS211", "NS213", "NS214",
                   "NS215", "NS216")

BAD_CHOICES_EXPECTED = {
    ("NS212", 10), ("NS211", 13), ("NS209", 14), ("NS206", 15), ("NS202", 16), ("NS205", 16),
    ("NS201", 18), ("NS202", 18), ("NS214", 22), ("NS215", 23), ("NS217", 24), ("NS216", 25), ("NS208", 27),
    ("NS201", 29), ("NS203", 29), ("NS204", 29), ("NS210", 31), ("NS207", 32), ("NS211", 36), ("NS213", 37),
}


def diagnostics(name: str) -> list:
    return nnspec.check(FIXTURES / name)


def only(name: str, code: str):
    found = [d for d in diagnostics(name) if d.code == code]
    assert len(found) == 1, found
    return found[0]


def check_text(text: str) -> list:
    return analyse_text(text, "inline.yaml")[1]


def codes_lines(diags) -> set:
    return {(d.code, d.line) for d in diags}


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_fixture_gives_exactly_its_diagnostics(name):
    assert codes_lines(diagnostics(name)) == FIXTURE_EXPECTATIONS[name]


def test_every_safety_fixture_is_listed():
    on_disk = {p.name for p in FIXTURES.glob("NS2*.yaml")}
    assert on_disk == set(FIXTURE_EXPECTATIONS)


@pytest.mark.parametrize("code", SAFETY_CODES)
def test_every_rule_has_a_firing_fixture(code):
    firing = [n for n, expected in FIXTURE_EXPECTATIONS.items() if n.startswith(code + "_")
              and any(c == code for c, _ in expected)]
    assert firing, f"no fixture shows {code} firing"


@pytest.mark.parametrize("code", EXEMPT_VARIANTS)
def test_rules_with_legitimate_uses_have_exempt_fixtures(code):
    exempt = [n for n in FIXTURE_EXPECTATIONS if n.startswith((code + "_exempt", code + "_waived"))]
    assert exempt, f"no exempt fixture for {code}"
    for name in exempt:
        assert all(c != code for c, _ in FIXTURE_EXPECTATIONS[name])


@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_severity_and_hint_follow_the_code_table(name):
    for diag in diagnostics(name):
        assert diag.severity == CODES[diag.code].severity
        assert diag.hint, diag


# -- where diagnostics point -------------------------------------------------------------------------------


def test_own_init_entry_is_pointed_at():
    diag = only("NS201_hidden_zero.yaml", "NS201")
    line = (FIXTURES / "NS201_hidden_zero.yaml").read_text().splitlines()[diag.line - 1]
    assert line[diag.column - 1:].startswith("zeros")


def test_model_default_points_at_the_layer_and_names_the_default_line():
    diag = only("NS201_model_default.yaml", "NS201")
    line = (FIXTURES / "NS201_model_default.yaml").read_text().splitlines()[diag.line - 1]
    assert line[diag.column - 1:].startswith("linear: {out: 16}")
    assert "`init.linear.weight` on line 7" in diag.message


def test_block_body_problem_is_reported_once_naming_every_call():
    diag = only("NS201_block_calls.yaml", "NS201")
    assert "(in block calls `mlp_1` (line 12), `mlp_2` (line 13))" in diag.message


def test_block_body_default_names_the_calls_and_the_default():
    diag = only("NS205_model_default.yaml", "NS205")
    assert "`init.batchnorm.gamma` on line 6" in diag.message
    assert "`basic_1` (line 19)" in diag.message and "`basic_2` (line 20)" in diag.message


def test_list_form_residual_items_point_at_their_own_lines():
    # `residual: [items]` puts the branch items directly under `residual` in the document
    diag = only("NS201_before_activation_in_branch.yaml", "NS201")
    assert diag.line == 9


# -- messages claim what is true, and no more --------------------------------------------------------------


def test_ns201_says_units_start_identical_not_that_they_never_train():
    diag = only("NS201_hidden_zero.yaml", "NS201")
    assert "start identical" in diag.message
    assert "never" not in diag.message and "forever" not in diag.message


def test_ns201_with_a_random_bias_says_units_differ_only_by_it():
    assert "differ only by their biases" in only("NS203_exempt_random_bias.yaml", "NS201").message


def test_ns202_names_the_relu_and_the_norm_between():
    diag = only("NS202_through_batchnorm.yaml", "NS202")
    assert "`batchnorm` on line 7" in diag.message and "`relu` on line 8" in diag.message
    assert "never trains" in diag.message


def test_ns202_names_relu6_after_pooling():
    diag = only("NS202_negative_bias_through_pool.yaml", "NS202")
    assert "the constant -0.5" in diag.message and "`relu6` on line 13" in diag.message


def test_ns203_names_the_second_layer():
    assert "`linear` on line 8" in only("NS203_constant_chain.yaml", "NS203").message


def test_ns203_names_every_path_into_a_residual():
    message = only("NS203_residual_both_paths.yaml", "NS203").message
    assert "`conv2d` on line 9" in message and "`conv2d` on line 11" in message


def test_ns203_with_dropout_between_does_not_claim_forever():
    message = only("NS203_dropout_between.yaml", "NS203").message
    assert "`dropout` on line 7" in message and "forever" not in message


def test_ns204_names_the_growth_factor():
    assert "= 64" in only("NS204_ones_head.yaml", "NS204").message


def test_ns204_on_a_transposed_convolution_counts_the_inputs_each_output_sums():
    """8 channels x 2 x 2 taps (kernel 4, stride 2) = 32, not PyTorch's fan_in of the weight (4 x 16 = 64); and
    the claim holds: all-ones inputs (one sign) come out 32 times larger at every interior output."""
    diag = only("NS204_conv_transpose.yaml", "NS204")
    assert (diag.line, diag.column, diag.end_column) == (9, 81, 85)
    assert "sum of up to 32 inputs (8 input channel(s) per group x 4 kernel tap(s)" in diag.message
    assert "|value| * 32 = 32" in diag.message and "1/32 = 0.0312" in diag.hint
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    for kernel, stride, dilation, channels in ((4, 2, 1, 8), (3, 1, 2, 5), (5, 3, 1, 6), (5, 1, 1, 2),
                                               (7, 4, 1, 3)):
        spec = nnspec.loads(f"nnspec: 1\nname: t\ninput: [{channels}, 9, 9]\nlayers:\n  - conv_transpose2d: "
                            f"{{out: 2, kernel: {kernel}, stride: {stride}, dilation: {dilation}, bias: false, "
                            f"init: {{weight: {{constant: 0.5}}}}}}\n")
        (found,) = [d for d in spec.diagnostics if d.code == "NS204"] or [None]
        with torch.no_grad():
            out = nnspec.build(spec, seed=0)(torch.ones(1, channels, 9, 9))
        n = round(out.max().item() / 0.5)  # the most inputs one output sums
        assert found is not None and f"sum of up to {n} inputs" in found.message, (kernel, stride, dilation, n)


def test_transposed_inputs_with_stride_and_dilation_against_pytorch():
    """Stride and dilation both above 1 (refused for Keras, NS301, but PyTorch has them): the taps that reach
    one output are ceil(kernel * gcd(dilation, stride) / stride) per axis."""
    from types import SimpleNamespace

    from nnspec.compiler.safety.layer_rules import transposed_inputs

    torch = pytest.importorskip("torch")
    for kernel, stride, dilation in ((3, 2, 2), (4, 3, 2), (6, 4, 2), (5, 2, 3), (7, 6, 4), (4, 2, 1)):
        conv = torch.nn.ConvTranspose1d(3, 1, kernel, stride=stride, dilation=dilation, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            most = conv(torch.ones(1, 3, 20)).max().item()
        layer = SimpleNamespace(geometry={"kernel": (kernel,), "stride": (stride,), "dilation": (dilation,)},
                                in_shape=(3, 20), args={"groups": 1})
        assert transposed_inputs(layer)[0] == most, (kernel, stride, dilation)


def test_ns205_on_rmsnorm_says_it_outputs_zero():
    diag = only("NS205_rmsnorm.yaml", "NS205")
    assert (diag.line, diag.column) == (7, 29)
    assert "on this `rmsnorm`" in diag.message and "it outputs 0 for every input" in diag.message


def test_ns213_says_why_an_exempt_layer_needs_no_waiver():
    assert "output head" in only("NS213_unused_waiver.yaml", "NS213").message


def test_ns213_reports_a_waiver_of_a_rule_that_cannot_be_waived():
    assert "cannot be waived" in only("NS213_not_waivable.yaml", "NS213").message


def test_ns213_block_body_waiver_is_reported_once():
    message = only("NS213_block_body_waiver.yaml", "NS213").message
    assert "NS204" in message and "2 copies" in message


# -- behaviours on inline specs ----------------------------------------------------------------------------

MLP = """\
nnspec: 1
name: inline
input: {input}
layers:
{layers}
"""


def spec(*layers: str, input: str = "[8]") -> str:
    return MLP.format(input=input, layers="\n".join(f"  - {item}" for item in layers))


def test_repeat_copies_are_merged_and_named_when_the_last_is_the_head():
    diags = check_text(spec("linear: {out: 8, name: fc, repeat: 3, init: {weight: xavier_uniform, bias: zeros}}",
                            "linear: {out: 8, name: mid, repeat: 3, init: {weight: {constant: 0.01}}}"))
    ns201 = [d for d in diags if d.code == "NS201"]
    assert len(ns201) == 1
    assert "(in copies `mid.0`, `mid.1`)" in ns201[0].message


def test_a_waiver_on_a_residual_covers_the_layers_inside():
    text = spec("linear: {out: 8}",
                "residual: {branch: [{linear: {out: 8, init: {weight: zeros}}}, tanh, {linear: {out: 8}}], "
                "allow: {NS201: \"studying it\"}}",
                "linear: {out: 3}")
    assert codes_lines(check_text(text)) == set()


def test_a_waiver_in_a_block_call_is_used_when_any_layer_needs_it():
    text = """\
nnspec: 1
name: inline
input: [8]
blocks:
  pair:
    args: {}
    layers:
      - linear: {out: 8, init: {weight: zeros}}
      - tanh
      - linear: {out: 8}
layers:
  - pair: {allow: {NS201: "deliberate"}}
  - linear: {out: 3}
"""
    assert check_text(text) == []


def test_sigmoid_lifts_zero_above_zero():
    assert codes_lines(check_text(spec("linear: {out: 8, init: {weight: zeros, bias: zeros}}", "sigmoid", "relu",
                                       "linear: {out: 3}"))) == {("NS201", 5)}


def test_leaky_relu_with_a_slope_keeps_gradients():
    assert codes_lines(check_text(spec("linear: {out: 8, init: {weight: zeros, bias: zeros}}", "leaky_relu",
                                       "linear: {out: 3}"))) == {("NS201", 5)}


def test_entering_a_residual_ends_the_dead_relu_search():
    text = spec("linear: {out: 8, init: {weight: zeros, bias: zeros}}", "residual: [relu, {linear: {out: 8}}]",
                "linear: {out: 3}")
    assert codes_lines(check_text(text)) == {("NS201", 5)}


def test_fixed_non_positive_values_also_kill_a_relu():
    text = spec("linear: {out: 3, init: {weight: zeros, bias: {values: [-1.0, 0.0, -2.0]}}}", "relu",
                "linear: {out: 2}")
    ns202 = [d for d in check_text(text) if d.code == "NS202"]
    assert len(ns202) == 1 and "fixed values at or below 0" in ns202[0].message


def test_avg_pool_padding_keeps_a_negative_constant_negative():
    text = spec("conv2d: {out: 4, kernel: 1, init: {weight: zeros, bias: {constant: -1.0}}}",
                "avgpool2d: {kernel: 3, stride: 1, padding: 1}", "relu", "flatten", "linear: {out: 3}",
                input="[2, 4, 4]")
    assert ("NS202", 5) in codes_lines(check_text(text))


def test_dropout_keeps_an_exact_zero_for_the_norm_after_it():
    text = spec("linear: {out: 8, init: {weight: zeros, bias: zeros}, allow: {NS201: \"testing NS202\"}}",
                "dropout", "layernorm", "relu", "linear: {out: 3}")
    ns202 = [d for d in check_text(text) if d.code == "NS202"]
    assert len(ns202) == 1 and "`layernorm` on line 7" in ns202[0].message


def test_a_container_default_is_named_with_its_line():
    text = spec("residual: {branch: [{linear: {out: 8}}, tanh, {linear: {out: 8}}], init: {linear: {weight: ones}}}",
                "linear: {out: 3}")
    ns201 = [d for d in check_text(text) if d.code == "NS201"]
    assert len(ns201) == 1
    assert "the `init` of the enclosing residual on line 5" in ns201[0].message


def test_zero_gamma_on_a_shortcut_tail_is_exempt():
    text = spec("residual: {branch: [{linear: {out: 8}}], shortcut: [{linear: {out: 8}}, "
                "{layernorm: {init: {gamma: zeros}}}, dropout]}", "linear: {out: 3}")
    assert check_text(text) == []


def test_one_diagnostic_per_body_line_even_when_calls_differ():
    text = """\
nnspec: 1
name: inline
input: [4, 8, 8]
blocks:
  widen:
    args: {ch: required}
    layers:
      - conv2d: {out: $ch, kernel: 3, padding: 1, init: {weight: dirac}}
layers:
  - widen: {ch: 8}
  - widen: {ch: 16}
  - global_avg_pool
  - linear: {out: 3}
"""
    ns209 = [d for d in check_text(text) if d.code == "NS209"]
    assert len(ns209) == 1
    assert "`widen_1` (line 10)" in ns209[0].message and "`widen_2` (line 11)" in ns209[0].message


def test_the_output_head_is_found_inside_a_block_call():
    assert diagnostics("NS201_exempt_head_through_softmax.yaml") == []


# -- robustness ----------------------------------------------------------------------------------------------

INITS = st.sampled_from(["zeros", "ones", "{constant: -0.5}", "{constant: 0.01}", "xavier_uniform", "eye", "dirac",
                         "torch_default", "orthogonal", "{values: [1.0, 2.0]}", "{log_prior: [1, 2, 3, 4]}"])
ITEMS = st.one_of(
    st.builds(lambda out, w, b: f"linear: {{out: {out}, init: {{weight: {w}, bias: {b}}}}}",
              st.sampled_from([2, 4]), INITS, INITS),
    st.builds(lambda g, b: f"layernorm: {{init: {{gamma: {g}, beta: {b}}}}}", INITS, INITS),
    st.sampled_from(["relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "elu", "softmax", "dropout", "identity",
                     "leaky_relu: {slope: 0.0}", "{residual: [tanh]}", "{residual: [{linear: {out: 4}}]}"]),
)


CONV_ITEMS = st.one_of(
    st.builds(lambda k, p, w, b: f"conv2d: {{out: 4, kernel: {k}, padding: {p}, init: {{weight: {w}, bias: {b}}}}}",
              st.sampled_from([1, 2, 3]), st.sampled_from([0, 1, "same"]), INITS, INITS),
    st.builds(lambda g, b: f"batchnorm: {{init: {{gamma: {g}, beta: {b}}}}}", INITS, INITS),
    st.sampled_from(["relu", "tanh", "dropout", "avgpool2d: {kernel: 3, stride: 1, padding: 1}",
                     "maxpool2d: {kernel: 3, stride: 1, padding: 1}",
                     ("{residual: {branch: [{conv2d: {out: 4, kernel: 1, init: {weight: zeros}}}], "
                     "shortcut: [{conv2d: {out: 4, kernel: 1, init: {weight: ones}}}]}}")]),
)


def assert_well_formed(text: str) -> None:
    n_lines = len(text.splitlines())
    for diag in check_text(text):
        assert diag.code in CODES
        assert 1 <= diag.line <= n_lines
        assert diag.message and diag.hint


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ITEMS, min_size=1, max_size=7))
def test_rules_never_crash_and_stay_in_the_file(items):
    assert_well_formed(spec("linear: {out: 4}", *items))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CONV_ITEMS, min_size=1, max_size=7))
def test_rules_never_crash_on_conv_stacks(items):
    assert_well_formed(spec("conv2d: {out: 4, kernel: 1}", *items, "global_avg_pool", "linear: {out: 3}",
                            input="[4, 6, 6]"))


# -- examples ------------------------------------------------------------------------------------------------


def test_bad_choices_shows_every_safety_rule():
    diags = nnspec.check(EXAMPLES / "bad_choices.yaml")
    assert codes_lines(diags) == BAD_CHOICES_EXPECTED
    assert {d.code for d in diags} == set(SAFETY_CODES)


def test_bad_choices_lowers():
    spec_, diags = analyse_text((EXAMPLES / "bad_choices.yaml").read_text(), "bad_choices.yaml")
    assert spec_ is not None
    assert not [d for d in diags if not d.code.startswith("NS2")]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_start_with_the_schema_line(path):
    assert path.read_text().splitlines()[0] == SCHEMA_LINE


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("bad_")),
                         ids=lambda p: p.name)
def test_other_examples_are_clean(path):
    assert nnspec.check(path) == []


# -- documentation -------------------------------------------------------------------------------------------


def test_rules_page_is_generated_from_the_code_table():
    assert (ROOT / "docs" / "rules.md").read_text() == render_rules_markdown(), \
        "regenerate: python -c 'from nnspec.codes import render_rules_markdown as r; " \
        "open(\"docs/rules.md\", \"w\").write(r())'"


def test_rules_page_has_every_code_and_section():
    page = render_rules_markdown()
    for code in CODES:
        section = page.split(f"\n## {code}\n", 1)[1].split("\n## ", 1)[0]
        for heading in ("### What it does", "### Why is this bad", "### Example", "### Use instead"):
            assert heading in section, (code, heading)


def test_ns213_documents_exactly_the_waivable_codes():
    sentence = CODES["NS213"].what.split("Only ", 1)[1].split(" can be waived", 1)[0]  # "NS201-NS205, NS207 ..."
    documented = set(re.findall(r"NS2\d\d", sentence))
    for first, last in re.findall(r"NS2(\d\d)-NS2(\d\d)", sentence):
        documented |= {f"NS2{n:02d}" for n in range(int(first), int(last) + 1)}
    assert documented == set(WAIVABLE)


# -- the newer kinds: published practice is quiet, a real problem is still found ----------------------

PUBLISHED_NEW_KINDS = """
nnspec: 1
name: published
input: [8, 6, 6]
init: {weight: kaiming_normal}
layers:
  - conv2d: {out: 8, kernel: 3, padding: 1}
  - prelu: {per_channel: true}
  - residual:
      - conv2d: {out: 8, kernel: 3, padding: 1, groups: 8}
      - layernorm: {over: channels, eps: 1.0e-6}
      - linear_like: null
  - residual:
      - conv2d: {out: 8, kernel: 3, padding: 1}
      - groupnorm: {groups: 2}
      - hardswish
      - conv2d: {out: 8, kernel: 3, padding: 1}
      - groupnorm: {groups: 2, init: {gamma: zeros}}
  - residual:
      - conv2d: {out: 8, kernel: 1}
      - mish
      - scale: {init: {gamma: zeros}}
      - drop_path: {p: 0.1}
  - conv_transpose2d: {out: 4, kernel: 2, stride: 2}
  - prelu
  - to_tokens
  - rmsnorm
  - global_avg_pool
  - linear: {out: 3, init: {weight: zeros}}
"""


def test_published_inits_of_the_newer_kinds_are_quiet():
    """ConvNeXt's layer scale 1e-6 (and zero), a PReLU at 0.25 under a model-wide kaiming `init.weight`,
    zero-init GroupNorm at a residual tail, RMSNorm and transposed convs at their defaults."""
    text = PUBLISHED_NEW_KINDS.replace("      - linear_like: null\n",
                                       "      - conv2d: {out: 8, kernel: 1}\n"
                                       "      - scale: {init: {gamma: {constant: 1.0e-6}}}\n")
    _, diagnostics = analyse_text(text, "published.yaml")
    assert diagnostics == []


def test_a_constant_hidden_transposed_conv_weight_is_still_an_error():
    text = PUBLISHED_NEW_KINDS.replace("      - linear_like: null\n", "").replace(
        "  - conv_transpose2d: {out: 4, kernel: 2, stride: 2}",
        "  - conv_transpose2d: {out: 4, kernel: 2, stride: 2, init: {weight: {constant: 0.1}}}")
    _, diagnostics = analyse_text(text, "published.yaml")
    assert [d.code for d in diagnostics] == ["NS201"]
    assert "output channels" in diagnostics[0].message


def test_a_recurrent_layer_between_two_constant_layers_ends_the_constant_chain():
    """An lstm mixes the units of the layer before it through its random weight_ih: no NS203 claim across it."""
    text = """
nnspec: 1
name: across_lstm
input: {shape: [5, 4], layout: tokens}
layers:
  - linear: {out: 6, init: {weight: {constant: 0.1}, bias: zeros}}
  - tanh
  - lstm: {hidden: 6}
  - linear: {out: 3, init: {weight: {constant: 0.1}}}
"""
    _, diagnostics = analyse_text(text, "across_lstm.yaml")
    assert [d.code for d in diagnostics] == ["NS201"]


@pytest.mark.parametrize("name, line, column, text", [
    ("NS214_zero_input_and_recurrent.yaml", 7, 66, "zeros"),  # the layer's own weight_ih initializer
    ("NS215_constant_input.yaml", 6, 40, "{constant: 0.1}"),
    ("NS215_gate_constants.yaml", 9, 5, "lstm"),  # a path's default: the layer, naming the pattern's line
])
def test_recurrent_rules_point_at_the_initializer_or_the_layer(name, line, column, text):
    code = name[:5]
    d = only(name, code)
    assert (d.line, d.column) == (line, column)
    source = (FIXTURES / name).read_text().splitlines()[line - 1]
    assert source[column - 1:].startswith(text)


def test_recurrent_rule_messages_say_what_the_layer_does():
    assert "the same for every input" in only("NS214_zero_input_and_recurrent.yaml", "NS214").message
    assert "(layer 0)" in only("NS214_zero_input_and_recurrent.yaml", "NS214").message
    assert "(forward)" in only("NS214_model_default.yaml", "NS214").message
    assert "identical input weights" in only("NS215_constant_input.yaml", "NS215").message
    gate = only("NS215_gate_constants.yaml", "NS215")
    assert "(layer 1)" in gate.message and 'init.paths["lstm_1.weight_ih_l1"]' in gate.message


# -- attention (NS216, NS217): published practice is quiet, the degenerate choices are found ------------------

ATTENTION = """
nnspec: 1
name: attn
input: {{shape: [6, 16], layout: tokens}}
layers:
  - residual:
      - layernorm
      - attention: {{heads: 4{args}}}
{after}  - global_avg_pool
  - linear: {{out: 3}}
"""


def attention_codes(args: str = "", after: str = "") -> list:
    return [(d.code, d.line) for d in check_text(ATTENTION.format(args=args, after=after))]


@pytest.mark.parametrize("name", ["NS216_exempt_gpt2_init.yaml", "NS216_exempt_vit_init.yaml",
                                  "NS216_exempt_residual_tail.yaml"])
def test_published_attention_inits_are_quiet(name):
    """GPT-2's init, torchvision's ViT init (zero class token, normal(0.02) positions, zero head), a zero-init
    out_weight and a zero `scale` at the end of a residual branch: no diagnostic at all."""
    assert diagnostics(name) == []


@pytest.mark.parametrize("args, after", [
    (", init: {out_weight: zeros, out_bias: zeros}", ""),
    (", init: {out_weight: zeros}", "      - dropout: {p: 0.1}\n      - drop_path: {p: 0.1}\n"),
    ("", "      - scale: {init: {gamma: zeros}}\n"),
    (", init: {in_weight: {normal: {std: 0.02}}, in_bias: zeros, out_weight: {normal: {std: 0.004}}}", ""),
    (", causal: true, init: {in_weight: {chunks: [xavier_uniform, xavier_uniform, xavier_uniform]}}", ""),
])
def test_attention_inits_of_practice_are_quiet(args, after):
    assert attention_codes(args, after) == []


def test_examples_with_attention_are_clean():
    for name in ("gpt2_small.yaml", "vit_b_16.yaml"):
        assert nnspec.check(EXAMPLES / name) == [], name


@pytest.mark.parametrize("init, expected", [
    ("{in_weight: zeros}", [("NS216", 8), ("NS217", 8)]),
    ("{in_weight: {chunks: [zeros, zeros, xavier_uniform]}}", [("NS217", 8)]),
    ("{in_weight: {chunks: [zeros, zeros, xavier_uniform]}, in_bias: {constant: 0.5}}", [("NS216", 8)]),
    ("{in_weight: {chunks: [xavier_uniform, zeros, xavier_uniform]}}", [("NS216", 8)]),
    ("{in_weight: {chunks: [zeros, xavier_uniform, xavier_uniform]}}", [("NS216", 8)]),
    ("{in_weight: {chunks: [zeros, zeros, zeros, zeros, xavier_uniform, xavier_uniform]}}", [("NS217", 8)]),
    ("{in_weight: {chunks: [zeros, zeros, zeros, xavier_uniform, xavier_uniform, xavier_uniform]}}",
     [("NS216", 8)]),  # the key's second half is random: not frozen
    ("{in_weight: {constant: 0.1}}", [("NS216", 8)]),
])
def test_constant_parts_of_in_weight(init, expected):
    assert attention_codes(f", init: {init}") == expected


def test_ns216_names_the_parts_and_what_stays_identical():
    [diag] = check_text(ATTENTION.format(args=", init: {in_weight: {chunks: [xavier_uniform, xavier_uniform, ones]}}",
                                         after=""))
    assert "the value rows" in diag.message and "query" not in diag.message.split(":")[0]
    assert "constant 1" in diag.message and "repeats one number per position" in diag.message
    [diag] = check_text(ATTENTION.format(args=", init: {in_weight: {constant: 0.1}}", after=""))
    assert "every head computes the same attention and the same output" in diag.message
    assert "forever" in diag.message  # constant query and key with uniform biases: identical updates
    [diag] = check_text(ATTENTION.format(args=", init: {in_weight: {constant: 0.1}, in_bias: {normal: {std: 0.1}}}",
                                         after=""))
    assert "forever" not in diag.message  # random biases tell the units apart


def test_ns217_says_uniform_and_frozen():
    [diag] = check_text(ATTENTION.format(args=", causal: true, init: {in_weight: {chunks: [zeros, zeros, ones]}}",
                                         after="").replace("ones", "xavier_uniform"))
    assert diag.code == "NS217"
    assert "every earlier position and itself" in diag.message and "no gradient" in diag.message
    assert "out_weight" in diag.hint


def test_a_zero_out_weight_away_from_a_residual_tail_is_ns216():
    text = ATTENTION.format(args=", init: {out_weight: zeros}", after="      - linear: {out: 16}\n")
    assert [(d.code, d.line) for d in check_text(text)] == [("NS216", 8)]
    assert "out_bias for every input" in check_text(text)[0].message


def test_attention_rules_can_be_waived():
    args = ', init: {in_weight: zeros}, allow: {NS216: "a test", NS217: "a test"}'
    assert attention_codes(args) == []
