"""The initializers' arguments, as pydantic models (named by `initializers.py`, imported when first used:
see nnspec/vocabulary/fast.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nnspec.vocabulary.initializers import FAN_MODES, NONLINEARITIES, VS_DISTRIBUTIONS, VS_MODES


class InitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, defer_build=True)


class NoArgs(InitArgs):
    pass


class ConstantArgs(InitArgs):
    value: float = Field(description="the value of every element")


class GainArgs(InitArgs):
    gain: float = Field(1.0, description="scale factor, positive")


class UniformArgs(InitArgs):
    low: float = Field(description="lower bound (inclusive)")
    high: float = Field(description="upper bound (exclusive), above low")


class NormalArgs(InitArgs):
    mean: float = Field(0.0, description="mean of the normal distribution")
    std: float = Field(description="standard deviation, positive")


class TruncNormalArgs(InitArgs):
    mean: float = Field(0.0, description="mean of the normal distribution before truncation")
    std: float = Field(description="standard deviation before truncation, positive")
    low: float = Field(-2.0, description="absolute lower bound (not scaled by std)")
    high: float = Field(2.0, description="absolute upper bound (not scaled by std)")


class KaimingArgs(InitArgs):
    a: float = Field(0.0, description="negative slope of the leaky_relu that follows (used when nonlinearity is "
                                      "leaky_relu)")
    # closed sets, checked by check_arguments (its messages name the allowed values); the enum is for the schema
    mode: str = Field("fan_in", description="`fan_in` keeps the forward variance, `fan_out` the backward one",
                      json_schema_extra={"enum": list(FAN_MODES)})
    nonlinearity: str = Field("leaky_relu", description="the nonlinearity that follows, for calculate_gain",
                              json_schema_extra={"enum": list(NONLINEARITIES)})


class SparseArgs(InitArgs):
    sparsity: float = Field(description="fraction of each column set to zero, in [0, 1)")
    std: float = Field(0.01, description="standard deviation of the non-zero elements, positive")


class VarianceScalingArgs(InitArgs):
    scale: float = Field(1.0, description="variance numerator, positive")
    mode: str = Field("fan_in", description="the fan that divides the scale; `fan_avg`: their mean",
                      json_schema_extra={"enum": list(VS_MODES)})
    distribution: str = Field("truncated_normal", description="`truncated_normal` (cut at +-2 std, rescaled), "
                              "`untruncated_normal` or `uniform`", json_schema_extra={"enum": list(VS_DISTRIBUTIONS)})


class ValuesArgs(InitArgs):
    values: list = Field(description="nested lists of numbers, exactly the tensor's shape")  # checked by check_arguments


class ChunksArgs(InitArgs):
    parts: list = Field(description="the initializers of the parts, in order: the first axis is split into this "
                                    "many equal parts", min_length=1)


class LogPriorArgs(InitArgs):
    counts: list[float] = Field(description="one positive count (or frequency) per class")
