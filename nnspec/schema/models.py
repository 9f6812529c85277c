"""Pydantic models of the spec format, version 1.

Layer items are a one-key mapping whose key is a layer kind or a block name,
so the item list is dispatched by `nnspec.schema.items`; each kind's
arguments are a model here. Every model forbids unknown keys and takes scalars
strictly: no numeric strings, no booleans as integers, only finite numbers.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# Every number a layer hands to a framework is bounded here, so that what passes `check` never makes
# PyTorch or Keras fail: sizes fit a C int (the frameworks' int32 paths, cuDNN, XLA), floats are finite and
# nonzero in float32 (every tensor is float32), seeds are what torch.manual_seed accepts.
MAX_DIM = 2**31 - 1  # one size, width or count
MAX_SEED = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: a smaller eps is 0 or denormal there



def _float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise PydanticCustomError("less_than_equal", "Input should be within float32's range (at most about 3.4e38), "
                                  "where every tensor computes")
    return value


def _normal_float32(value: float) -> float:
    if value < FLOAT32_TINY:
        raise PydanticCustomError("greater_than_equal", "Input should be at least about 1.2e-38, float32's smallest "
                                  "normal number (a smaller eps is 0 or denormal there)")
    return value


Float32 = AfterValidator(_float32)
PosInt = Annotated[int, Field(ge=1, le=MAX_DIM)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_DIM)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
PosFloat = Annotated[float, Field(gt=0), Float32]
Epsilon = Annotated[float, Field(gt=0), Float32, AfterValidator(_normal_float32)]
Probability = Annotated[float, Field(ge=0, lt=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, defer_build=True)


class ItemKeys(Strict):
    """Keys every item accepts (init/allow/repeat/name); their values are checked separately."""

    name: Optional[str] = None
    repeat: Optional[Annotated[int, Field(ge=1)]] = None  # bounded by the expansion limit
    init: Optional[dict] = None
    allow: Optional[dict] = None


class NoLayerArgs(ItemKeys):
    pass


class LinearArgs(ItemKeys):
    out: PosInt
    bias: bool = True


IntOrList = Union[PosInt, list[PosInt]]
Padding = Union[NonNegInt, list[NonNegInt], Literal["same", "valid"]]


class ConvArgs(ItemKeys):
    out: PosInt
    kernel: IntOrList
    stride: IntOrList = 1
    padding: Padding = 0
    dilation: IntOrList = 1
    groups: PosInt = 1
    bias: bool = True


class BatchNormArgs(ItemKeys):
    eps: Epsilon = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


class LayerNormArgs(ItemKeys):
    eps: Epsilon = 1e-5


class EmbeddingArgs(ItemKeys):
    num: PosInt
    dim: PosInt


class LeakyReluArgs(ItemKeys):
    slope: Annotated[float, Field(ge=0), Float32] = 0.01


class EluArgs(ItemKeys):
    alpha: PosFloat = 1.0


class GeluArgs(ItemKeys):
    approximate: Literal["none", "tanh"] = "none"


class SoftmaxArgs(ItemKeys):
    axis: Annotated[int, Field(ge=-MAX_DIM, le=MAX_DIM)] = -1


class DropoutArgs(ItemKeys):
    p: Probability = 0.5


class PoolArgs(ItemKeys):
    kernel: IntOrList
    stride: Optional[IntOrList] = None
    padding: Union[NonNegInt, list[NonNegInt]] = 0


class InputSpec(Strict):
    shape: list[PosInt] = Field(min_length=1, max_length=4)
    dtype: Literal["float32", "int64"] = "float32"


class BlockDef(Strict):
    args: dict[str, Union[bool, int, float, str, list, None]] = Field(default_factory=dict)
    layers: list = Field(min_length=1)


class SpecModel(Strict):
    """The top level of a spec file."""

    nnspec: int
    name: str
    input: Union[Annotated[list[PosInt], Field(min_length=1, max_length=4)], InputSpec]
    description: Optional[str] = None
    seed: Optional[Seed] = None
    init: dict = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: list = Field(min_length=1)

    def input_spec(self) -> InputSpec:
        return self.input if isinstance(self.input, InputSpec) else InputSpec(shape=self.input)
