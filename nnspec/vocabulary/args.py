"""The arguments of every layer kind, as pydantic models.

Layer items are a one-key mapping whose key is a layer kind or a block name;
each kind's arguments are a model here, named by the kind registry. Every model
forbids unknown keys and takes scalars strictly: no numeric strings, no
booleans as integers, only finite numbers.
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
    out: PosInt = Field(description="output features (PyTorch out_features, Keras units)")
    bias: bool = Field(True, description="add a learnable bias")


IntOrList = Union[PosInt, list[PosInt]]
Padding = Union[NonNegInt, list[NonNegInt], Literal["same", "valid"]]


class ConvArgs(ItemKeys):
    out: PosInt = Field(description="output channels")
    kernel: IntOrList = Field(description="kernel size: one integer for every spatial axis, or one per axis")
    stride: IntOrList = Field(1, description="step between kernel positions: one integer, or one per axis")
    padding: Padding = Field(0, description="zeros added on both sides of each spatial axis (one integer or one per "
                                            "axis), or `same` (stride 1 only) or `valid` (no padding)")
    dilation: IntOrList = Field(1, description="spacing between kernel taps: one integer, or one per axis")
    groups: PosInt = Field(1, description="channel groups; input and output channels must both be divisible by it")
    bias: bool = Field(True, description="add a learnable bias")


class BatchNormArgs(ItemKeys):
    eps: Epsilon = Field(1e-5, description="added to the variance before the square root")
    momentum: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1, description="PyTorch's running-statistics momentum (Keras gets 1 - momentum)")


class LayerNormArgs(ItemKeys):
    eps: Epsilon = Field(1e-5, description="added to the variance before the square root")
    over: Literal["last", "channels"] = Field("last", description="`last`: the last axis (v1's meaning, PyTorch's "
                                              "nn.LayerNorm); `channels`: each position of a map over C (ConvNeXt)")


class GroupNormArgs(ItemKeys):
    groups: PosInt = Field(description="channel groups normalised together; the channels must divide by it")
    eps: Epsilon = Field(1e-5, description="added to the variance before the square root")


class RMSNormArgs(ItemKeys):
    eps: Epsilon = Field(1e-6, description="added to the mean square before the square root")


class PReLUArgs(ItemKeys):
    per_channel: bool = Field(False, description="one learnable slope per channel instead of one for all")


class DropPathArgs(ItemKeys):
    p: Probability = Field(description="probability of dropping the whole branch for a sample, in training")


class EmbeddingArgs(ItemKeys):
    num: PosInt = Field(description="number of ids (the vocabulary size); ids run from 0 to num - 1")
    dim: PosInt = Field(description="length of each embedding vector")


class PositionEmbeddingArgs(ItemKeys):
    length: PosInt = Field(description="the most positions it can add (rows of its table); the input may be shorter")


class AttentionArgs(ItemKeys):
    heads: PosInt = Field(description="number of attention heads; must divide the token width D")
    causal: bool = Field(False, description="mask future positions: position t attends to positions <= t only")
    bias: bool = Field(True, description="learnable biases on the q/k/v and output projections")
    dropout: Probability = Field(0.0, description="dropout on the attention probabilities, in training only")


MAX_RECURRENT_LAYERS = 256  # each layer is its own tensors and loop; a bound keeps `check` fast on any file


class RecurrentArgs(ItemKeys):
    hidden: PosInt = Field(description="hidden state width H of each direction (PyTorch hidden_size, Keras units)")
    layers: Annotated[int, Field(ge=1, le=MAX_RECURRENT_LAYERS)] = Field(
        1, description="stacked recurrent layers; layer k > 0 reads layer k - 1's outputs")
    bidirectional: bool = Field(False, description="also run each layer backwards over the sequence and "
                                                   "concatenate the two directions (forward first): width 2H")
    output: Literal["sequence", "last"] = Field("sequence", description="`sequence`: the top layer's output at "
                                                "every position, tokens [T, H*dirs]; `last`: the top layer's "
                                                "final hidden state of each direction, features [H*dirs]")


class LeakyReluArgs(ItemKeys):
    slope: Annotated[float, Field(ge=0), Float32] = Field(0.01, description="slope for negative inputs")


class EluArgs(ItemKeys):
    alpha: PosFloat = Field(1.0, description="value the output approaches for large negative inputs (times -1)")


class GeluArgs(ItemKeys):
    approximate: Literal["none", "tanh"] = Field("none", description="`none`: exact (erf); `tanh`: the tanh "
                                                                     "approximation")


class SoftmaxArgs(ItemKeys):
    axis: Annotated[int, Field(ge=-MAX_DIM, le=MAX_DIM)] = Field(-1, description="logical axis (channels first, batch excluded); negative counts from the end")


class DropoutArgs(ItemKeys):
    p: Probability = Field(0.5, description="probability of zeroing each element in training, in [0, 1)")


class PoolArgs(ItemKeys):
    kernel: IntOrList = Field(description="window size: one integer for every spatial axis, or one per axis")
    stride: Optional[IntOrList] = Field(None, description="step between windows; default: the kernel size")
    padding: Union[NonNegInt, list[NonNegInt]] = Field(0, description="padding on both sides of each spatial "
                                                                      "axis, at most kernel // 2")
    ceil_mode: bool = Field(False, description="round the output size up, as PyTorch's ceil_mode (the last "
                                               "window must start inside the input or its left padding)")


class ConvTransposeArgs(ItemKeys):
    out: PosInt = Field(description="output channels")
    kernel: IntOrList = Field(description="kernel size: one integer for every spatial axis, or one per axis")
    stride: IntOrList = Field(1, description="upsampling factor: one integer, or one per axis")
    padding: Union[NonNegInt, list[NonNegInt]] = Field(0, description="dilation * (kernel - 1) - padding zeros "
                                                                      "added on both sides, as PyTorch's")
    output_padding: Union[NonNegInt, list[NonNegInt]] = Field(0, description="extra size on one side of each "
                                                                             "axis; below the stride or dilation")
    dilation: IntOrList = Field(1, description="spacing between kernel taps: one integer, or one per axis")
    groups: PosInt = Field(1, description="channel groups; input and output channels must both be divisible by it")
    bias: bool = Field(True, description="add a learnable bias")


class UpsampleArgs(ItemKeys):
    scale: IntOrList = Field(2, description="integer scale factor: one for every spatial axis, or one per axis")
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="`nearest`, or `bilinear` (2-D maps, "
                                                                        "align_corners false)")


class AdaptivePoolArgs(ItemKeys):
    size: IntOrList = Field(description="output size: one integer for every spatial axis, or one per axis "
                                        "(PyTorch's bins)")


class GlobalPoolArgs(ItemKeys):
    keep_dims: bool = Field(False, description="keep the pooled axes with size 1: a map [C, 1, ...] (tokens [1, D])")


class SliceArgs(ItemKeys):
    start: NonNegInt = Field(0, description="first index kept")
    stop: Optional[PosInt] = Field(None, description="index after the last one kept; default: the end of the axis")
    axis: Literal["channels", "tokens"] = Field("channels", description="`channels`: the channel axis (map C, "
                                                "tokens D, features F); `tokens`: the positions T of tokens")


class ChannelShuffleArgs(ItemKeys):
    groups: PosInt = Field(description="channel groups to interleave (ShuffleNet); the channels must divide by it")


PadPair = Annotated[list[NonNegInt], Field(min_length=2, max_length=2)]
Finite32 = Annotated[float, Float32]


class PadArgs(ItemKeys):
    padding: Union[NonNegInt, list[Union[NonNegInt, PadPair]]] = Field(
        description="zeros added to the spatial axes of a map: one integer for every side, or one entry per "
                    "spatial axis, an integer (both sides) or [before, after] (Keras's ZeroPadding2D(((top, "
                    "bottom), (left, right))) is [[top, bottom], [left, right]])")


class RescaleArgs(ItemKeys):
    scale: Union[Finite32, list[Finite32]] = Field(1.0, description="factor: one number, or one per channel "
                                                                    "(the channel axis: map C, tokens D, features F)")
    offset: Union[Finite32, list[Finite32]] = Field(0.0, description="added after the factor: one number, or one "
                                                                     "per channel")


class ToMapArgs(ItemKeys):
    size: Optional[Annotated[list[PosInt], Field(min_length=1, max_length=3)]] = Field(
        None, description="spatial sizes whose product is T; default: the grid the tokens came from, or [T]")
