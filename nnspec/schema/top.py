"""The validated top level of a spec as plain objects, and its validation without pydantic.

`SpecModel` (models.py) defines the top level and says what is wrong with a bad one; a well-formed file
is read by `validate_top` alone (see nnspec/vocabulary/fast.py), so that `check` never imports pydantic
for it. Both paths give a `SpecData`.
"""

from __future__ import annotations

import math
from typing import Optional, Union

from nnspec.vocabulary.fast import MAX_DIM, MAX_SEED, NO

_INPUT_KEYS = ("shape", "dtype", "layout")
_TOP_KEYS = ("nnspec", "name", "input", "description", "seed", "init", "blocks", "layers")


class InputData:
    """One example's input: shape (channels first, batch excluded), dtype and layout (None: by rank)."""

    __slots__ = ("shape", "dtype", "layout")

    def __init__(self, shape: list, dtype: str = "float32", layout: Optional[str] = None):
        self.shape, self.dtype, self.layout = shape, dtype, layout

    def __repr__(self) -> str:
        return f"InputData(shape={self.shape!r}, dtype={self.dtype!r}, layout={self.layout!r})"


class BlockData:
    __slots__ = ("args", "layers")

    def __init__(self, args: dict, layers: list):
        self.args, self.layers = args, layers

    def __repr__(self) -> str:
        return f"BlockData(args={self.args!r}, layers={self.layers!r})"


class SpecData:
    """The top level of a spec file, validated."""

    __slots__ = _TOP_KEYS

    def __init__(self, nnspec: int, name: str, input: Union[list, InputData], description: Optional[str],
                 seed: Optional[int], init: dict, blocks: dict, layers: list):
        self.nnspec, self.name, self.input, self.description = nnspec, name, input, description
        self.seed, self.init, self.blocks, self.layers = seed, init, blocks, layers

    def input_spec(self) -> InputData:
        return self.input if isinstance(self.input, InputData) else InputData(self.input)

    def __repr__(self) -> str:
        return f"SpecData(name={self.name!r}, input={self.input!r}, {len(self.layers)} layers)"


def from_model(model) -> SpecData:
    """The SpecData of a validated pydantic SpecModel."""
    given = model.input
    inp = given if isinstance(given, list) else InputData(given.shape, given.dtype, given.layout)
    blocks = {name: BlockData(block.args, block.layers) for name, block in model.blocks.items()}
    return SpecData(model.nnspec, model.name, inp, model.description, model.seed, model.init, blocks, model.layers)


def _shape(value):
    if type(value) is not list or not 1 <= len(value) <= 4:
        return NO
    for v in value:
        if type(v) is not int or not 1 <= v <= MAX_DIM:
            return NO
    return list(value)


def _block_arg(value) -> bool:
    t = type(value)
    return (value is None or t is bool or t is str or t is list or (t is int and abs(value) <= MAX_SEED)
            or (t is float and math.isfinite(value)))


def _block(value):
    if type(value) is not dict or any(k not in ("args", "layers") for k in value):
        return NO
    args, layers = value.get("args", {}), value.get("layers")
    if type(args) is not dict or type(layers) is not list or not layers:
        return NO
    if not all(type(k) is str and _block_arg(v) for k, v in args.items()):
        return NO
    return BlockData(dict(args), list(layers))


def validate_top(data: dict) -> Optional[SpecData]:
    """The SpecData of a well-formed top level; None when SpecModel must decide (and explain)."""
    if type(data) is not dict or any(key not in _TOP_KEYS for key in data):
        return None
    version, name, given = data.get("nnspec"), data.get("name"), data.get("input", NO)
    if type(version) is not int or abs(version) > MAX_SEED or type(name) is not str:
        return None
    if type(given) is dict:
        if any(key not in _INPUT_KEYS for key in given):
            return None
        shape, dtype, layout = _shape(given.get("shape")), given.get("dtype", "float32"), given.get("layout")
        if shape is NO or dtype not in ("float32", "int64") or type(dtype) is not str:
            return None
        if layout is not None and (type(layout) is not str or layout not in ("features", "map", "tokens")):
            return None
        inp = InputData(shape, dtype, layout)
    else:
        inp = _shape(given)
        if inp is NO:
            return None
    description, seed = data.get("description"), data.get("seed")
    if description is not None and type(description) is not str:
        return None
    if seed is not None and (type(seed) is not int or not 0 <= seed <= MAX_SEED):
        return None
    init, blocks, layers = data.get("init", {}), data.get("blocks", {}), data.get("layers")
    if type(init) is not dict or type(blocks) is not dict or type(layers) is not list or not layers:
        return None
    checked = {}
    for key, value in blocks.items():
        block = _block(value)
        if type(key) is not str or block is NO:
            return None
        checked[key] = block
    return SpecData(version, name, inp, description, seed, dict(init), checked, list(layers))
