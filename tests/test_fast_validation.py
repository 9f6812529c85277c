"""The validators that read a well-formed spec without pydantic (nnspec/vocabulary/fast.py,
nnspec/schema/top.py) against the pydantic models that define the format: they accept nothing the models
refuse, give exactly what the models give (types included), and every example is read without pydantic."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnspec.schema.models import SpecModel
from nnspec.schema.top import InputData, from_model, validate_top
from nnspec.vocabulary import fast
from nnspec.vocabulary.initializers import REGISTRY
from nnspec.vocabulary.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if not p.name.startswith("bad_"))

VALUES = [None, True, False, 0, 1, 2, 3, 256, 257, -1, -2**31 + 1, 2**31 - 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63,
          10**400, 0.0, -0.0, 0.5, 1.0, 2.0, -0.5, 0.999999, 1e-5, 1e-38, 1e-39, 1e-300, 3.4e38, 3.5e38, 1e300,
          math.inf, -math.inf, math.nan, "same", "valid", "nearest", "bilinear", "last", "channels", "tokens",
          "features", "map", "none", "tanh", "fan_in", "float32", "int64", "x", "", "1", [], [1], [1, 2], [1, 2, 3],
          [1, 2, 3, 4], [1, 2, 3, 4, 5], [0], [0, 1], [2**31], [1.5], [True], ["a"], [[1]], [None], {}, {"a": 1},
          {"weight": "zeros"}, {"x": [1, {"y": 2.5}]}]


def same(a, b) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def pydantic_dump(model, data):
    from pydantic import ValidationError

    try:
        return model.model_validate(data).model_dump()
    except ValidationError:
        return None


MODELS = {**{kind.args.name: kind.args for kind in KINDS.values()},
          **{init.args.name: init.args for init in REGISTRY.values()}}


def test_every_kind_and_initializer_has_an_entry_with_the_models_fields_and_defaults():
    from pydantic_core import PydanticUndefined

    for name, ref in MODELS.items():
        model = ref.resolve()
        assert model.__name__ == name
        assert name in fast.MODELS, f"{name} has no entry in nnspec/vocabulary/fast.py MODELS"
        entry = fast.MODELS[name]
        assert list(entry) == list(model.model_fields), name
        for field, info in model.model_fields.items():
            default = entry[field][1]
            if info.default is PydanticUndefined and info.default_factory is None:
                assert default is fast.REQUIRED, (name, field)
            else:
                assert same(default, info.get_default(call_default_factory=True)), (name, field)


def _valid_base(ref) -> dict:
    """Each required field with a value the model accepts."""
    model = ref.resolve()
    base = {}
    for field, info in model.model_fields.items():
        if info.is_required():
            base[field] = next(v for v in VALUES if pydantic_dump(model, {**base, field: v, **{
                f: 1 for f, i in model.model_fields.items() if i.is_required() and f not in base and f != field}}))
    return base


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_accepts_only_what_the_model_accepts_and_gives_its_dump(name):
    ref = MODELS[name]
    model = ref.resolve()
    base = _valid_base(ref)
    assert same(fast.validate(ref, base), pydantic_dump(model, base)), base
    for field in model.model_fields:
        accepted = 0
        for value in VALUES:
            data = {**base, field: value}
            got = fast.validate(ref, data)
            if got is not None:
                accepted += 1
                assert same(got, pydantic_dump(model, data)), (field, value)
        assert accepted, f"{name}.{field}: the fast path accepts none of the test values"
    assert fast.validate(ref, {**base, "unknown_key": 1}) is None
    assert fast.validate(ref, [base]) is None


def _top_equal(got, model) -> bool:
    want = from_model(model)
    for attr in ("nnspec", "name", "description", "seed", "init", "layers"):
        if not same(getattr(got, attr), getattr(want, attr)):
            return False
    if isinstance(got.input, InputData) != isinstance(want.input, InputData):
        return False
    inputs = ((got.input.shape, got.input.dtype, got.input.layout), (want.input.shape, want.input.dtype,
              want.input.layout)) if isinstance(got.input, InputData) else (got.input, want.input)
    return (same(*inputs) and list(got.blocks) == list(want.blocks)
            and all(same(got.blocks[b].args, want.blocks[b].args) and same(got.blocks[b].layers, want.blocks[b].layers)
                    for b in got.blocks))


def _spec_model(data):
    from pydantic import ValidationError

    try:
        return SpecModel.model_validate(data)
    except ValidationError:
        return None


def test_the_top_level_of_every_example_is_read_as_the_model_reads_it():
    for path in EXAMPLES:
        data = yaml.safe_load(path.read_text())
        got = validate_top(data)
        assert got is not None, path
        assert _top_equal(got, SpecModel.model_validate(data)), path


TOP = {"nnspec": 1, "name": "m", "input": [3, 8, 8], "layers": [{"relu": None}]}
TOP_VALUES = VALUES + [{"shape": [3]}, {"shape": [3], "dtype": "int64"}, {"shape": [4, 2], "layout": "tokens"},
                       {"shape": [3], "layout": "x"}, {"shape": [3], "other": 1}, {"shape": []},
                       {"b": {"layers": [{"relu": None}]}}, {"b": {"args": {"w": 2, "f": 0.5, "s": "x", "l": [1],
                                                                            "n": None, "t": True},
                                                                   "layers": [1]}},
                       {"b": {"args": {"w": math.inf}, "layers": [1]}}, {"b": {"layers": []}},
                       {"b": {"args": {"w": {"x": 1}}, "layers": [1]}}, {"b": {"args": [], "layers": [1]}},
                       {"b": {"other": 1, "layers": [1]}}, {1: {"layers": [1]}}]


@pytest.mark.parametrize("key", ["nnspec", "name", "input", "description", "seed", "init", "blocks", "layers",
                                 "unknown"])
def test_the_top_level_fast_path_accepts_only_what_the_model_accepts(key):
    accepted = 0
    for value in TOP_VALUES:
        data = {**TOP, key: value}
        got = validate_top(data)
        if got is not None:
            accepted += 1
            model = _spec_model(data)
            assert model is not None and _top_equal(got, model), (key, value)
    assert accepted or key == "unknown"


def test_checking_the_examples_never_imports_pydantic():
    code = ("import sys, nnspec\n"
            f"for p in {[str(p) for p in EXAMPLES]!r}:\n"
            "    nnspec.check(p)\n"
            "assert not any(m == 'pydantic' or m.startswith(('pydantic.', 'pydantic_core')) for m in sys.modules), "
            "sorted(m for m in sys.modules if 'pydantic' in m)\n"
            "assert 'jinja2' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
