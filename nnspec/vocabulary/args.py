"""The arguments of every layer kind, as pydantic models.

Layer items are a one-key mapping whose key is a layer kind or a block name;
each kind's arguments are a model here, named by the kind registry. Every model
forbids unknown keys and takes scalars strictly: no numeric strings, no
booleans as integers, only finite numbers.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, lt=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, defer_build=True)


class ItemKeys(Strict):
    """Keys every item accepts (init/allow/repeat/name); their values are checked separately."""

    name: Optional[str] = None
    repeat: Optional[PosInt] = None
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
    eps: PosFloat = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


class LayerNormArgs(ItemKeys):
    eps: PosFloat = 1e-5
    over: Literal["last", "channels"] = "last"


class GroupNormArgs(ItemKeys):
    groups: PosInt
    eps: PosFloat = 1e-5


class RMSNormArgs(ItemKeys):
    eps: PosFloat = 1e-6


class PReLUArgs(ItemKeys):
    per_channel: bool = False


class DropPathArgs(ItemKeys):
    p: Probability


class EmbeddingArgs(ItemKeys):
    num: PosInt
    dim: PosInt


class LeakyReluArgs(ItemKeys):
    slope: Annotated[float, Field(ge=0)] = 0.01


class EluArgs(ItemKeys):
    alpha: PosFloat = 1.0


class GeluArgs(ItemKeys):
    approximate: Literal["none", "tanh"] = "none"


class SoftmaxArgs(ItemKeys):
    axis: int = -1


class DropoutArgs(ItemKeys):
    p: Probability = 0.5


class PoolArgs(ItemKeys):
    kernel: IntOrList
    stride: Optional[IntOrList] = None
    padding: Union[NonNegInt, list[NonNegInt]] = 0
    ceil_mode: bool = False


class ConvTransposeArgs(ItemKeys):
    out: PosInt
    kernel: IntOrList
    stride: IntOrList = 1
    padding: Union[NonNegInt, list[NonNegInt]] = 0
    output_padding: Union[NonNegInt, list[NonNegInt]] = 0
    dilation: IntOrList = 1
    groups: PosInt = 1
    bias: bool = True


class UpsampleArgs(ItemKeys):
    scale: IntOrList = 2
    mode: Literal["nearest", "bilinear"] = "nearest"


class AdaptivePoolArgs(ItemKeys):
    size: IntOrList


class GlobalPoolArgs(ItemKeys):
    keep_dims: bool = False


class SliceArgs(ItemKeys):
    start: NonNegInt = 0
    stop: Optional[PosInt] = None  # None: to the end
    axis: Literal["channels", "tokens"] = "channels"


class ChannelShuffleArgs(ItemKeys):
    groups: PosInt


class ToMapArgs(ItemKeys):
    size: Optional[Annotated[list[PosInt], Field(min_length=1, max_length=3)]] = None
