"""Tensor path patterns: the model's `init.paths` and `nnspec.initialize(..., only=...)`."""

from __future__ import annotations

import pytest

import nnspec
from nnspec.compiler.paths import compile_pattern

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SPEC = """
nnspec: 1
name: tiny
input: [3, 8, 8]
seed: 1
init:
  paths:
{paths}
  conv2d:
    weight: {{kaiming_normal: {{mode: fan_out, nonlinearity: relu}}}}
blocks:
  unit:
    layers:
      - residual:
          - conv2d: {{out: 4, kernel: 3, padding: 1, name: conv}}
          - batchnorm: {{name: bn}}
layers:
  - conv2d: {{out: 4, kernel: 3, padding: 1, name: stem}}
  - unit: {{repeat: 2, name: stage{call}}}
  - global_avg_pool
  - linear: {{out: 5, name: head{head}}}
"""


def spec_text(paths: dict, call: str = "", head: str = "") -> str:
    lines = "\n".join(f'    "{k}": {v}' for k, v in paths.items()) or "    {}"
    if not paths:
        return SPEC.replace("  paths:\n{paths}\n", "").format(call=call, head=head)
    return SPEC.format(paths=lines, call=call, head=head)


def origins(spec) -> dict:
    return {t.path: (t.init.name, t.origin) for t in spec.graph.tensors()}


@pytest.mark.parametrize("pattern, path, hit", [
    ("layer4.**.bn3.gamma", "layer4.0.residual_1.branch.bn3.gamma", True),
    ("layer4.**.bn3.gamma", "layer4.bn3.gamma", True),
    ("layer4.**.bn3.gamma", "layer3.0.residual_1.branch.bn3.gamma", False),
    ("head.*", "head.weight", True),
    ("head.*", "head.0.weight", False),
    ("**.bias", "a.b.bias", True),
    ("**", "a.b.c", True),
    ("a.**", "a.b", True),
    ("a.**", "a", False),
    ("stage.*.residual_1.branch.conv.weight", "stage.1.residual_1.branch.conv.weight", True),
    ("st*e.0.**", "stage.0.x.weight", True),
    ("st*e.0.**", "stage.10.x.weight", False),
])
def test_glob(pattern, path, hit):
    assert bool(compile_pattern(pattern).match(path)) is hit


def test_paths_set_initializers_with_the_pattern_as_origin():
    spec = nnspec.loads(spec_text({"stage.**.bn.gamma": "zeros", "head.*": "{normal: {std: 0.01}}"}))
    got = origins(spec)
    assert got["stage.0.residual_1.branch.bn.gamma"] == ("zeros", 'init.paths["stage.**.bn.gamma"]')
    assert got["stage.1.residual_1.branch.bn.gamma"] == ("zeros", 'init.paths["stage.**.bn.gamma"]')
    assert got["head.weight"] == ("normal", 'init.paths["head.*"]')
    assert got["head.bias"] == ("normal", 'init.paths["head.*"]')
    assert got["stem.weight"] == ("kaiming_normal", "init.conv2d.weight")
    assert spec.diagnostics == []
    rows = {t.path: t for t in spec.graph.tensors()}
    assert rows["head.weight"].origin_span.line == 9


def test_resolution_order():
    # the layer's own init beats a pattern; a pattern beats the block call's init and the kind default;
    # the first matching pattern in file order wins
    spec = nnspec.loads(spec_text({"**.conv.weight": "xavier_uniform", "stage.0.**.weight": "ones",
                                   "head.weight": "ones"},
                                  call=", init: {conv2d: {bias: zeros}, gamma: {constant: 2}}",
                                  head=", init: {weight: zeros}"), "order.yaml")
    got = origins(spec)
    assert got["stage.0.residual_1.branch.conv.weight"] == ("xavier_uniform", 'init.paths["**.conv.weight"]')
    assert got["stage.1.residual_1.branch.conv.weight"] == ("xavier_uniform", 'init.paths["**.conv.weight"]')
    assert got["stage.0.residual_1.branch.conv.bias"][0] == "zeros"  # block call's init, below the patterns
    assert got["stage.0.residual_1.branch.bn.gamma"] == ("constant", "block call stage.0")
    assert got["head.weight"] == ("zeros", "layer")
    codes = sorted((d.code, d.line, d.message) for d in spec.diagnostics)
    assert [(c, line) for c, line, _ in codes] == [("NS212", 9), ("NS212", 10)]
    assert "decides no tensor" in codes[0][2]  # stage.0.**.weight: shadowed by the first pattern
    assert "decides no tensor" in codes[1][2]  # head.weight: the layer sets its own


def test_pattern_matching_nothing_is_ns212_at_the_key():
    spec = nnspec.loads(spec_text({"head.*": "zeros", "nothing.**": "ones"}), "none.yaml")
    [diag] = spec.diagnostics
    assert (diag.code, diag.line, diag.column) == ("NS212", 9, 5)
    assert "matches no tensor" in diag.message


def test_bad_patterns_and_block_level_paths_are_errors():
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(spec_text({"head..weight": "zeros", "head.w-x": "ones", "head.*": "nope"}))
    assert [d.code for d in info.value.diagnostics] == ["NS004", "NS004", "NS008"]
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.loads(spec_text({}, call=', init: {paths: {"**.gamma": zeros}}'))
    [diag] = info.value.diagnostics
    assert diag.code == "NS003" and "model's top-level" in diag.message


def test_paths_give_the_values_of_the_same_init_written_on_the_layer():
    by_path = nnspec.build(nnspec.loads(spec_text({"head.*": "{normal: {std: 0.01}}"})))
    own = nnspec.build(nnspec.loads(spec_text({}, head=", init: {weight: {normal: {std: 0.01}}, "
                                                     "bias: {normal: {std: 0.01}}}")))
    a, b = by_path.state_dict(), own.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_schema_accepts_paths():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    from nnspec.schema.jsonschema import build_schema

    data = yaml.safe_load(spec_text({"head.*": "zeros", "layer4.**.bn3.gamma": "{normal: {std: 0.01}}"}))
    jsonschema.validate(data, build_schema())
    data["init"]["paths"]["a..b"] = "zeros"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, build_schema())


# --- initialize(only=...) -------------------------------------------------------------------------------

def _scrambled(model):
    with torch.no_grad():
        gen = torch.Generator().manual_seed(123)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if b.is_floating_point():
                b.add_(1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("only, touched", [
    ("head.*", {"head.weight", "head.bias"}),
    (["stage.1.**.bn.gamma", "stem.bias"], {"stage.1.residual_1.branch.bn.weight", "stem.bias"}),
    ("stage.**.bn.weight", {"stage.0.residual_1.branch.bn.weight", "stage.1.residual_1.branch.bn.weight"}),
])
def test_only_reinitialises_just_the_matching_tensors(only, touched):
    spec = nnspec.loads(spec_text({"head.*": "{normal: {std: 0.01}}"}))
    fresh = nnspec.build(spec, seed=7).state_dict()
    model = nnspec.build(spec, seed=7)
    before = _scrambled(model)
    nnspec.initialize(model, only=only)
    after = model.state_dict()
    for key in after:
        if key in touched:
            assert torch.equal(after[key], fresh[key]), key
            assert not torch.equal(after[key], before[key]), key
        elif "running" in key and any(t.rsplit(".", 1)[0] == key.rsplit(".", 1)[0] for t in touched):
            assert torch.equal(after[key], fresh[key]), key  # the statistics of a selected norm layer
        else:
            assert torch.equal(after[key], before[key]), key  # bit for bit


def test_only_with_a_spec_and_a_seed_equals_that_build():
    spec = nnspec.loads(spec_text({}))
    model = nnspec.build(spec, seed=1)
    nnspec.initialize(model, spec, seed=5, only="head.*")
    other = nnspec.build(spec, seed=5).state_dict()
    assert torch.equal(model.state_dict()["head.weight"], other["head.weight"])


def test_only_matching_nothing_raises_and_changes_nothing():
    model = nnspec.build(nnspec.loads(spec_text({})))
    before = _scrambled(model)
    with pytest.raises(ValueError, match="'nope.\\*' match no tensor"):
        nnspec.initialize(model, only=["head.*", "nope.*"])
    with pytest.raises(ValueError, match="not a name"):
        nnspec.initialize(model, only="head..weight")
    with pytest.raises(ValueError, match="empty"):
        nnspec.initialize(model, only=[])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_matching_never_backtracks():
    import time

    pattern = compile_pattern(".".join(["**"] * 30 + ["*a*a*a*a*a*a*a*a*a*a*a*a*"] + ["**"] * 30 + ["b"]))
    start = time.process_time()
    assert not pattern.match(".".join(["a" * 40] * 40))
    assert time.process_time() - start < 5.0  # processor time, generous: a blow-up takes minutes


# --- model.initialize(only=...): built and emitted models --------------------------------------------------

@pytest.mark.parametrize("only", ["head.*", ["stage.1.**.bn.gamma", "stem.bias"], "stage.**.bn.weight"])
def test_model_initialize_only_on_built_and_emitted_models(tmp_path, only):
    """`model.initialize(only=...)` of a built model, and `nnspec.initialize(model, only=...)` of an emitted
    file's (whose own `initialize` keeps to the whole model, to stay short), re-initialise exactly what
    `nnspec.initialize(model, only=...)` does on the built model, with the model's seed or a given one."""
    from helpers import import_source

    spec = nnspec.loads(spec_text({"head.*": "{normal: {std: 0.01}}"}))
    module = import_source(nnspec.emit(spec, "torch"), tmp_path)
    for seed in (None, 9):
        reference = nnspec.build(spec, seed=7)
        _scrambled(reference)
        nnspec.initialize(reference, seed=seed, only=only)
        for model in (nnspec.build(spec, seed=7), module.build(7)):
            before = _scrambled(model)
            if hasattr(model, "_nnspec_state"):  # the emitted file's model
                nnspec.initialize(model, seed=seed, only=only)
            else:
                model.initialize(seed, only=only)
            after = model.state_dict()
            assert after.keys() == reference.state_dict().keys()
            changed = {k for k in after if not torch.equal(after[k], before[k])}
            assert changed and changed == {k for k, v in reference.state_dict().items()
                                           if not torch.equal(v, before[k])}, type(model)
            for key in after:
                assert torch.equal(after[key], reference.state_dict()[key]), (type(model), key)


def test_model_initialize_only_refuses_as_nnspec_initialize_does():
    spec = nnspec.loads(spec_text({}))
    for model in (nnspec.build(spec),):
        before = _scrambled(model)
        for only in (["head.*", "nope.*"], "head..weight", [], "", 3, ["head.*", None]):
            with pytest.raises((ValueError, TypeError)) as ours:
                model.initialize(only=only)
            with pytest.raises((ValueError, TypeError)) as theirs:
                nnspec.initialize(model, only=only)
            assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key])
