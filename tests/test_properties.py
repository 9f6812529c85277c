"""Property tests: random valid specs check clean, build on both targets with the shapes `check`
inferred, emit code that rebuilds the in-memory models value for value, and compute one function.

The specs come from `spec_generator` (every layer kind, residuals with identity and projection
shortcuts, blocks with `$arg`s, `repeat`, every initializer on the roles it fits, token models with attention
blocks). CI runs a few deterministic examples; NNSPEC_PROPERTY_EXAMPLES=N runs N fresh random ones.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from helpers import assert_same_module_tree, assert_same_state, import_source
from spec_generator import HypothesisChoices, RandomChoices, spec_text

import nnspec
from nnspec.compiler.backends.keras_backend import input_to_keras, output_to_logical
from nnspec.parity import random_batch, run_parity
from nnspec.vocabulary.initializers import REGISTRY
from nnspec.vocabulary.kinds import KINDS

# Tiny random models legitimately take a softmax over an axis of size 1, or an even kernel with `same`.
pytestmark = [pytest.mark.filterwarnings("ignore:You are using a softmax over axis:UserWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")]

_REQUESTED = int(os.environ.get("NNSPEC_PROPERTY_EXAMPLES", "0") or 0)
EXAMPLES = _REQUESTED or 60


@st.composite
def specs(draw):
    """(YAML text, the output shape the generator tracked)."""
    return spec_text(HypothesisChoices(draw))


def keras_weights(model):
    return [(v.path, keras.ops.convert_to_numpy(v)) for v in model.weights]


def check_spec(text: str, tracked_shape: tuple, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "prop_model.yaml"
    path.write_text(text, encoding="utf-8")
    errors = [d.concise() for d in nnspec.check(path) if d.is_error]
    assert not errors, errors
    spec = nnspec.load(path)
    assert spec.output_shape == tracked_shape
    seed = 11

    # torch: built in memory; the forward shape is the inferred one
    model = nnspec.build(spec, "torch", seed=seed)
    model.eval()
    x = random_batch(spec, 2, 0)
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    assert tuple(y.shape) == (2, *spec.output_shape)
    assert sum(p.numel() for p in model.parameters()) == spec.params

    # keras: the static output shape and a forward pass, in the logical layout
    kmodel = nnspec.build(spec, "keras", seed=seed)
    static = output_to_logical(np.zeros((1, *kmodel.output_shape[1:]), dtype="float32"), spec).shape[1:]
    assert tuple(static) == spec.output_shape
    ky = output_to_logical(keras.ops.convert_to_numpy(kmodel(input_to_keras(x, spec), training=False)), spec)
    assert ky.shape == (2, *spec.output_shape)

    # the emitted code of each target rebuilds the in-memory model value for value
    emitted = import_source(nnspec.emit(spec, "torch"), directory, "prop_torch").build(seed)
    assert_same_state(emitted.state_dict(), model.state_dict())
    assert_same_module_tree(emitted, model)
    emitted.eval()
    with torch.no_grad():
        assert torch.equal(emitted(torch.from_numpy(x)), y)
    kemitted = import_source(nnspec.emit(spec, "keras"), directory, "prop_keras").build(seed)
    expected, got = keras_weights(kmodel), keras_weights(kemitted)
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (p, a), (_, b) in zip(got, expected):
        assert a.dtype == b.dtype and np.array_equal(a, b), p

    # parity: the same (perturbed) weights compute the same function on both targets
    report = run_parity(spec, perturb_weights=True, seed=seed)
    assert report.ok, report.text()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not _REQUESTED, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(example=specs())
def test_random_valid_specs(example, tmp_path_factory):
    text, shape = example
    note(text)
    check_spec(text, shape, tmp_path_factory.mktemp("prop"))


def _names_in(data, names: set) -> set:
    seen, stack = set(), [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            seen.update(k for k in value if k in names)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value in names:
            seen.add(value)
    return seen


def test_the_generator_reaches_every_kind_and_initializer():
    """The generator can write every layer kind, every initializer, `$arg`s, `repeat` and waivers."""
    texts = [spec_text(RandomChoices(random.Random(seed)))[0] for seed in range(400)]
    kinds, inits = set(), set()
    for text in texts:
        data = yaml.safe_load(text)
        kinds |= _names_in(data["layers"], set(KINDS) | {"residual"}) | _names_in(data.get("blocks", {}),
                                                                                  set(KINDS) | {"residual"})
        inits |= _names_in(data, set(REGISTRY))
    assert set(KINDS) | {"residual"} == kinds, sorted(set(KINDS) - kinds)
    assert set(REGISTRY) == inits, sorted(set(REGISTRY) - inits)
    for feature in ("$a", "repeat:", "shortcut:", "allow:", "int64", "blocks:"):
        assert any(feature in t for t in texts), feature


def test_the_generator_writes_token_models():
    """Token models of every start (ids, a tokens input, an image's patches) and end (a global pool, the class
    token's slice, flatten, tokens), with attention blocks as `add` merges and residuals, class tokens and
    learned positions."""
    texts = [spec_text(RandomChoices(random.Random(seed)))[0] for seed in range(400)]
    tokens = [yaml.safe_load(t) for t in texts if "prop_tokens" in t]
    assert len(tokens) >= 60
    inputs = {("ids" if (d["input"].get("dtype") if isinstance(d["input"], dict) else None) else
               "tokens" if isinstance(d["input"], dict) else "patches") for d in tokens}
    assert inputs == {"ids", "tokens", "patches"}
    found = set()
    for data in tokens:
        text = yaml.safe_dump(data)
        found |= _names_in(data, {"class_token", "position_embedding", "attention", "rmsnorm", "scale",
                                  "global_avg_pool", "global_max_pool", "flatten", "slice", "drop_path"})
        found |= {f for f, needle in (("add_attention", "add:"), ("residual_attention", "residual:"),
                                      ("chunks", "chunks:"), ("causal", "causal: true"), ("block", "blocks:"),
                                      ("zero_out_weight", "out_weight: zeros")) if needle in text}
    assert found == {"class_token", "position_embedding", "attention", "rmsnorm", "scale", "global_avg_pool",
                     "global_max_pool", "flatten", "slice", "drop_path", "add_attention", "residual_attention",
                     "chunks", "causal", "block", "zero_out_weight"}, found


def test_random_specs_check_clean_without_a_framework():
    """Many more generated specs than the full property runs: each checks without an error and its
    inferred output shape is the one the generator tracked (check time only: fast)."""
    for seed in range(300):
        text, shape = spec_text(RandomChoices(random.Random(seed)))
        try:
            spec = nnspec.loads(text, f"generated_{seed}.yaml")
        except nnspec.SpecError as exc:
            raise AssertionError(f"seed {seed}:\n{text}\n{exc}") from None
        assert spec.output_shape == shape, (seed, text)
