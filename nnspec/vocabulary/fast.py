"""Validation of well-formed arguments without pydantic, so that `check` of a valid spec never imports it.

The pydantic models (`args.py`, `init_args.py`, `schema/models.py`) stay the definition: they make the
JSON Schema and every message about a bad value. The validators here are a shortcut that accepts a subset
of what those models accept and returns what `model_dump()` would: each is declared next to its model's
name in `MODELS`, and whatever it is unsure of (a wrong type, a value out of range, an unknown key, a
model without an entry) it answers `None`, and the caller asks the pydantic model, which accepts it or
says what is wrong. tests/test_fast_validation.py checks every entry against its model.

`lazy_models` names the pydantic models without importing them: `kinds.py` and `initializers.py` hold
such references, and pydantic loads when one is first used.
"""

from __future__ import annotations

import math

MAX_DIM = 2**31 - 1
MAX_RECURRENT_LAYERS = 256  # as vocabulary/args.py
MAX_SEED = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
EXACT = 2**53  # an integer given for a float converts exactly up to here

NO = object()  # "not accepted here": the pydantic model decides
REQUIRED = object()


class LazyModel:
    """A pydantic model named by module and class name, imported when first used; attribute access and
    calls go to the model itself."""

    __slots__ = ("module", "name", "_model")

    def __init__(self, module: str, name: str):
        self.module, self.name, self._model = module, name, None

    def resolve(self) -> type:
        if self._model is None:
            import importlib

            self._model = getattr(importlib.import_module(self.module), self.name)
        return self._model

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr not in ("__name__", "__qualname__", "__doc__"):
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {self.module}.{self.name}>"


class lazy_models:  # noqa: N801 - reads as a module: `m.LinearArgs`
    """`lazy_models("nnspec.vocabulary.args").LinearArgs` is a LazyModel, one per name."""

    def __init__(self, module: str):
        self._module, self._cache = module, {}

    def __getattr__(self, name: str) -> LazyModel:
        if name.startswith("_"):
            raise AttributeError(name)
        ref = self._cache.get(name)
        if ref is None:
            ref = self._cache[name] = LazyModel(self._module, name)
        return ref


def model_name(model) -> str:
    """The class name of a model or of a LazyModel."""
    return model.name if isinstance(model, LazyModel) else model.__name__


# -- field validators: value -> validated value, or NO -----------------------------------------------------

def integer(low: int, high: int):
    def check(v):
        return v if type(v) is int and low <= v <= high else NO
    return check


def real(low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False,
         float32: bool = False, normal: bool = False):
    """A strict float: an int or a finite float (an int is converted, as pydantic does)."""
    def check(v):
        t = type(v)
        if t is int:
            if abs(v) > EXACT:
                return NO
            v = float(v)
        elif t is not float or not math.isfinite(v):
            return NO
        if v < low or v > high or (low_open and v == low) or (high_open and v == high):
            return NO
        if float32 and abs(v) > FLOAT32_MAX:
            return NO
        if normal and v < FLOAT32_TINY:
            return NO
        return v
    return check


def boolean(v):
    return v if type(v) is bool else NO


def string(v):
    return v if type(v) is str else NO


def literal(*allowed: str):
    def check(v):
        return v if type(v) is str and v in allowed else NO
    return check


def optional(inner):
    def check(v):
        return None if v is None else inner(v)
    return check


def list_of(inner, min_length: int = 0, max_length: int = MAX_DIM):
    def check(v):
        if type(v) is not list or not min_length <= len(v) <= max_length:
            return NO
        out = [inner(x) for x in v]
        return NO if any(x is NO for x in out) else out
    return check


def one_of(*inners):
    """A union whose members take disjoint types (so pydantic's smart union picks the same one)."""
    def check(v):
        for inner in inners:
            out = inner(v)
            if out is not NO:
                return out
        return NO
    return check


def _copy(v):
    """A deep copy of plain YAML data, as model_dump() gives; NO for anything else."""
    t = type(v)
    if t is dict:
        out = {}
        for k, x in v.items():
            x = _copy(x)
            if x is NO or type(k) not in (str, int, float, bool) and k is not None:
                return NO
            out[k] = x
        return out
    if t is list:
        out = [_copy(x) for x in v]
        return NO if any(x is NO for x in out) else out
    if v is None or t in (str, int, float, bool):
        return v
    return NO


def any_dict(v):
    return _copy(v) if type(v) is dict else NO


def any_list(v, min_length: int = 0):
    return _copy(v) if type(v) is list and len(v) >= min_length else NO


def nonempty_list(v):
    return any_list(v, 1)


POS_INT = integer(1, MAX_DIM)
NON_NEG_INT = integer(0, MAX_DIM)
INT_OR_LIST = one_of(POS_INT, list_of(POS_INT))
EPSILON = real(0, low_open=True, float32=True, normal=True)
PROBABILITY = real(0, 1, high_open=True)
PLAIN_FLOAT = real()
FLOAT32 = real(float32=True)

def item_dict(v):
    """`init` and `allow` of an item: a mapping, not copied (the caller drops these keys from the arguments and
    reads them from the item itself; copying a large `values` on every call of a block would cost time)."""
    return v if type(v) is dict else NO


ITEM_KEYS = {"name": (optional(string), None), "repeat": (optional(integer(1, MAX_SEED)), None),
             "init": (optional(item_dict), None), "allow": (optional(item_dict), None)}


def _item(**fields) -> dict:
    return {**ITEM_KEYS, **fields}


# Each model: {field: (validator, default or REQUIRED)}, in the model's field order.
MODELS: dict = {
    # layer arguments (vocabulary/args.py)
    "NoLayerArgs": _item(),
    "LinearArgs": _item(out=(POS_INT, REQUIRED), bias=(boolean, True)),
    "ConvArgs": _item(out=(POS_INT, REQUIRED), kernel=(INT_OR_LIST, REQUIRED), stride=(INT_OR_LIST, 1),
                      padding=(one_of(NON_NEG_INT, list_of(NON_NEG_INT), literal("same", "valid")), 0),
                      dilation=(INT_OR_LIST, 1), groups=(POS_INT, 1), bias=(boolean, True)),
    "BatchNormArgs": _item(eps=(EPSILON, 1e-5), momentum=(real(0, 1), 0.1)),
    "LayerNormArgs": _item(eps=(EPSILON, 1e-5), over=(literal("last", "channels"), "last")),
    "GroupNormArgs": _item(groups=(POS_INT, REQUIRED), eps=(EPSILON, 1e-5)),
    "RMSNormArgs": _item(eps=(EPSILON, 1e-6)),
    "PReLUArgs": _item(per_channel=(boolean, False)),
    "DropPathArgs": _item(p=(PROBABILITY, REQUIRED)),
    "EmbeddingArgs": _item(num=(POS_INT, REQUIRED), dim=(POS_INT, REQUIRED)),
    "PositionEmbeddingArgs": _item(length=(POS_INT, REQUIRED)),
    "AttentionArgs": _item(heads=(POS_INT, REQUIRED), causal=(boolean, False), bias=(boolean, True),
                           dropout=(PROBABILITY, 0.0)),
    "RecurrentArgs": _item(hidden=(POS_INT, REQUIRED), layers=(integer(1, MAX_RECURRENT_LAYERS), 1),
                           bidirectional=(boolean, False), output=(literal("sequence", "last"), "sequence")),
    "LeakyReluArgs": _item(slope=(real(0, float32=True), 0.01)),
    "EluArgs": _item(alpha=(real(0, low_open=True, float32=True), 1.0)),
    "GeluArgs": _item(approximate=(literal("none", "tanh"), "none")),
    "SoftmaxArgs": _item(axis=(integer(-MAX_DIM, MAX_DIM), -1)),
    "DropoutArgs": _item(p=(PROBABILITY, 0.5)),
    "PoolArgs": _item(kernel=(INT_OR_LIST, REQUIRED), stride=(optional(INT_OR_LIST), None),
                      padding=(one_of(NON_NEG_INT, list_of(NON_NEG_INT)), 0), ceil_mode=(boolean, False)),
    "ConvTransposeArgs": _item(out=(POS_INT, REQUIRED), kernel=(INT_OR_LIST, REQUIRED), stride=(INT_OR_LIST, 1),
                               padding=(one_of(NON_NEG_INT, list_of(NON_NEG_INT)), 0),
                               output_padding=(one_of(NON_NEG_INT, list_of(NON_NEG_INT)), 0),
                               dilation=(INT_OR_LIST, 1), groups=(POS_INT, 1), bias=(boolean, True)),
    "UpsampleArgs": _item(scale=(INT_OR_LIST, 2), mode=(literal("nearest", "bilinear"), "nearest")),
    "AdaptivePoolArgs": _item(size=(INT_OR_LIST, REQUIRED)),
    "GlobalPoolArgs": _item(keep_dims=(boolean, False)),
    "SliceArgs": _item(start=(NON_NEG_INT, 0), stop=(optional(POS_INT), None),
                       axis=(literal("channels", "tokens"), "channels")),
    "ChannelShuffleArgs": _item(groups=(POS_INT, REQUIRED)),
    "PadArgs": _item(padding=(one_of(NON_NEG_INT, list_of(one_of(NON_NEG_INT, list_of(NON_NEG_INT, 2, 2)))),
                              REQUIRED)),
    "RescaleArgs": _item(scale=(one_of(FLOAT32, list_of(FLOAT32)), 1.0),
                         offset=(one_of(FLOAT32, list_of(FLOAT32)), 0.0)),
    "ToMapArgs": _item(size=(optional(list_of(POS_INT, 1, 3)), None)),
    # initializer arguments (vocabulary/init_args.py)
    "NoArgs": {},
    "ConstantArgs": {"value": (PLAIN_FLOAT, REQUIRED)},
    "GainArgs": {"gain": (PLAIN_FLOAT, 1.0)},
    "UniformArgs": {"low": (PLAIN_FLOAT, REQUIRED), "high": (PLAIN_FLOAT, REQUIRED)},
    "NormalArgs": {"mean": (PLAIN_FLOAT, 0.0), "std": (PLAIN_FLOAT, REQUIRED)},
    "TruncNormalArgs": {"mean": (PLAIN_FLOAT, 0.0), "std": (PLAIN_FLOAT, REQUIRED), "low": (PLAIN_FLOAT, -2.0),
                        "high": (PLAIN_FLOAT, 2.0)},
    "KaimingArgs": {"a": (PLAIN_FLOAT, 0.0), "mode": (string, "fan_in"), "nonlinearity": (string, "leaky_relu")},
    "SparseArgs": {"sparsity": (PLAIN_FLOAT, REQUIRED), "std": (PLAIN_FLOAT, 0.01)},
    "VarianceScalingArgs": {"scale": (PLAIN_FLOAT, 1.0), "mode": (string, "fan_in"),
                            "distribution": (string, "truncated_normal")},
    "ValuesArgs": {"values": (any_list, REQUIRED)},
    "ChunksArgs": {"parts": (nonempty_list, REQUIRED)},
    "LogPriorArgs": {"counts": (list_of(PLAIN_FLOAT), REQUIRED)},
}


def validate(model, data) -> dict | None:
    """What `model.model_validate(data).model_dump()` gives, or None when the pydantic model must decide."""
    fields = MODELS.get(model_name(model))
    if fields is None or type(data) is not dict:
        return None
    for key in data:
        if key not in fields:
            return None
    out = {}
    for name, (check, default) in fields.items():
        if name in data:
            value = check(data[name])
            if value is NO:
                return None
            out[name] = value
        elif default is REQUIRED:
            return None
        else:
            out[name] = default
    return out
