"""The initializer registry: arguments, checks, exact distributions and docs.

One entry per initializer. Both backends and `nnspec initializers` read this
table; a new initializer is one entry here plus one entry per backend table.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Optional

from nnspec.vocabulary.fast import lazy_models
from nnspec.vocabulary.scaling import KERAS_FAMILY

FLOAT32_MAX = 3.4028234663852886e38  # every tensor is float32: a larger number would be inf there
SIGMAS = 10  # a normal draw never lies further from the mean than this many std (float32 draws reach ~6)
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
FAN_MODES = ("fan_in", "fan_out")
VS_MODES = ("fan_in", "fan_out", "fan_avg")
VS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


_models = lazy_models("nnspec.vocabulary.init_args")  # the argument models, imported when first used
NoArgs = _models.NoArgs
ConstantArgs = _models.ConstantArgs
GainArgs = _models.GainArgs
UniformArgs = _models.UniformArgs
NormalArgs = _models.NormalArgs
TruncNormalArgs = _models.TruncNormalArgs
KaimingArgs = _models.KaimingArgs
SparseArgs = _models.SparseArgs
VarianceScalingArgs = _models.VarianceScalingArgs
ValuesArgs = _models.ValuesArgs
ChunksArgs = _models.ChunksArgs
LogPriorArgs = _models.LogPriorArgs


@dataclass(frozen=True)
class Initializer:
    name: str
    args: type  # a pydantic model (InitArgs), or a lazy reference to one
    summary: str
    short: Optional[str] = None  # the argument a short form names
    needs_fans: bool = False  # NS210 on 1-D tensors
    constant: bool = False  # zeros / ones / constant: every element equal
    deterministic: bool = False
    torch: str = ""
    keras: str = ""
    formula: str = ""
    safe: str = ""
    unsafe: str = ""
    detail: str = ""
    aliases: tuple = field(default_factory=tuple)


def _vs_doc(scale: str, mode: str, dist: str) -> str:
    return f"Keras VarianceScaling(scale={scale}, mode={mode}, distribution={dist})"


REGISTRY: dict[str, Initializer] = {}


def _add(init: Initializer) -> None:
    REGISTRY[init.name] = init


_add(Initializer("zeros", NoArgs, "every element 0: biases, norm shifts, zero-init heads and residual tails",
                 constant=True, deterministic=True, torch="nn.init.zeros_(t)", keras="keras.initializers.Zeros()",
                 formula="w = 0",
                 safe="biases, norm beta, the output head, the last tensor of a residual branch, LoRA's B",
                 unsafe="the weight of a hidden layer (NS201), before ReLU (NS202), twice in a row (NS203)"))
_add(Initializer("ones", NoArgs, "every element 1: norm scales", constant=True, deterministic=True,
                 torch="nn.init.ones_(t)", keras="keras.initializers.Ones()", formula="w = 1",
                 safe="norm gamma (the default of both frameworks)",
                 unsafe="any weight: units start identical (NS201) and activations grow by fan_in per layer (NS204)"))
_add(Initializer("constant", ConstantArgs, "every element `value`", short="value", constant=True,
                 deterministic=True, torch="nn.init.constant_(t, value)", keras="keras.initializers.Constant(value)",
                 formula="w = value", safe="biases that need a specific start (use log_prior for class priors)",
                 unsafe="weights: as zeros/ones (NS201, NS203, NS204)"))
_add(Initializer("eye", GainArgs, "gain times the identity matrix: identity adapters", short="gain",
                 deterministic=True, torch="nn.init.eye_(t); t.mul_(gain)", keras="keras.initializers.Identity(gain)",
                 formula="w[i, j] = gain if i == j else 0 (rectangular allowed)",
                 safe="a square linear layer that should start as a passthrough (an adapter inserted into a "
                      "trained network)",
                 unsafe="anything not 2-D (NS206); a non-square matrix leaves units zero or drops inputs (NS207)"))
_add(Initializer("dirac", NoArgs, "identity convolution: each output channel copies its input channel",
                 deterministic=True, torch="nn.init.dirac_(t, groups)", keras="nnspec Dirac(groups) (own class)",
                 formula="w[g*opg + d, d, centre] = 1 for d < min(opg, in/groups), opg = out/groups; else 0",
                 safe="same-padded, stride-1, odd-kernel convs with out == in: deep plain networks start as identity",
                 unsafe="non-conv tensors (NS208); layers that cannot be an identity (NS209)",
                 detail="For output channel o in group g = o // opg, with d = o % opg, the filter is zero except a "
                        "single 1 at the centre tap of input channel d of that group. The convolution at each "
                        "position then reads exactly input channel d at the same position: output channel o is a "
                        "copy of input channel g*(in/groups) + d. With an odd kernel, stride 1 and padding "
                        "dilation*(k-1)/2 the layer is an exact identity; extra outputs (out > in) stay zero and "
                        "extra inputs (in > out) are dropped. Keras lays the kernel out as (*k, in/groups, out), so "
                        "nnspec's Keras Dirac sets K[centre..., d, g*opg + d] = 1."))
_add(Initializer("uniform", UniformArgs, "U[low, high)", torch="nn.init.uniform_(t, low, high)",
                 keras="keras.initializers.RandomUniform(low, high)", formula="w ~ U[low, high)"))
_add(Initializer("normal", NormalArgs, "N(mean, std^2), untruncated", short=None,
                 torch="nn.init.normal_(t, mean, std)", keras="keras.initializers.RandomNormal(mean, std)",
                 formula="w ~ N(mean, std^2)"))
_add(Initializer("trunc_normal", TruncNormalArgs, "N(mean, std^2) cut at the ABSOLUTE bounds low and high",
                 torch="nn.init.trunc_normal_(t, mean, std, low, high)",
                 keras="nnspec TruncNormal (own class; Keras's TruncatedNormal cuts at mean +- 2 std)",
                 formula="w ~ N(mean, std^2) conditioned on low <= w <= high",
                 detail="The bounds do not scale with std: {std: 0.02} keeps the default bounds -2 and 2, so it is "
                        "in effect untruncated (timm's ViT init)."))
_add(Initializer("xavier_uniform", GainArgs, "Glorot uniform with gain", short="gain", needs_fans=True,
                 torch="nn.init.xavier_uniform_(t, gain)", keras=_vs_doc("gain**2", "fan_avg", "uniform"),
                 formula="w ~ U(+-gain*sqrt(6/(fan_in+fan_out)))"))
_add(Initializer("xavier_normal", GainArgs, "Glorot normal with gain, untruncated", short="gain", needs_fans=True,
                 torch="nn.init.xavier_normal_(t, gain)",
                 keras=_vs_doc("gain**2", "fan_avg", "untruncated_normal") + " (not GlorotNormal: truncated)",
                 formula="w ~ N(0, gain^2 * 2/(fan_in+fan_out))"))
_add(Initializer("kaiming_uniform", KaimingArgs, "He uniform, PyTorch's arguments", needs_fans=True,
                 torch="nn.init.kaiming_uniform_(t, a, mode, nonlinearity)",
                 keras=_vs_doc("gain**2", "mode", "uniform"),
                 formula="w ~ U(+-gain*sqrt(3/fan)), gain = calculate_gain(nonlinearity, a)"))
_add(Initializer("kaiming_normal", KaimingArgs, "He normal, PyTorch's arguments, untruncated", needs_fans=True,
                 torch="nn.init.kaiming_normal_(t, a, mode, nonlinearity)",
                 keras=_vs_doc("gain**2", "mode", "untruncated_normal") + " (not HeNormal: truncated)",
                 formula="w ~ N(0, gain^2/fan), gain = calculate_gain(nonlinearity, a)"))
_add(Initializer("orthogonal", GainArgs, "a (semi-)orthogonal matrix times gain", short="gain", needs_fans=True,
                 torch="nn.init.orthogonal_(t, gain)", keras="keras.initializers.Orthogonal(gain)",
                 formula="QR of a Gaussian matrix, signs fixed, times gain (same distribution on both targets)"))
_add(Initializer("sparse", SparseArgs, "N(0, std^2) with a fraction of each column zeroed", short="sparsity",
                 needs_fans=True, torch="nn.init.sparse_(t, sparsity, std)", keras="nnspec Sparse (own class)",
                 formula="w ~ N(0, std^2); then ceil(sparsity*rows) rows of each column set to 0"))
_add(Initializer("variance_scaling", VarianceScalingArgs, "Keras's VarianceScaling", needs_fans=True,
                 torch="computed bound/std: uniform_, normal_ or trunc_normal_",
                 keras="keras.initializers.VarianceScaling(scale, mode, distribution)",
                 formula="n = fan (fan_avg: mean); uniform: U(+-sqrt(3*scale/n)); untruncated_normal: "
                         "N(0, scale/n); truncated_normal: std sqrt(scale/n)/0.8796 cut at +-2 std"))
for _name, (_scale, _mode, _dist) in KERAS_FAMILY.items():
    _add(Initializer(_name, NoArgs, f"Keras's {_name} (VarianceScaling({_scale}, {_mode}, {_dist}))",
                     needs_fans=True, torch="computed: " + ("uniform_" if _dist == "uniform" else "trunc_normal_"),
                     keras=f"keras.initializers.{''.join(p.title() for p in _name.split('_'))}()",
                     formula=f"VarianceScaling(scale={_scale}, mode={_mode}, distribution={_dist})"
                             + ("; the normal is TRUNCATED at +-2 std" if _dist != "uniform" else "")))
_add(Initializer("values", ValuesArgs, "exactly these numbers (shape must match the tensor)", short="values",
                 deterministic=True, torch="t.copy_(torch.tensor(values))", keras="nnspec Values (own class)",
                 formula="w = values"))
_add(Initializer("log_prior", LogPriorArgs, "bias = log(count / total): initial softmax = class frequencies",
                 short="counts", deterministic=True, torch="t.copy_(torch.tensor(log(counts/total)))",
                 keras="nnspec Values (own class) with the computed logs",
                 formula="b_k = log(counts_k / sum(counts))",
                 safe="the output bias of a classifier with imbalanced classes (with a zero or small head weight)"))
_add(Initializer("chunks", ChunksArgs, "the first axis split into n equal parts, each with its own initializer",
                 short="parts", torch="each part as its own tensor (fans of the part), from the part's own stream",
                 keras="nnspec Chunks (own class): each part's Keras initializer on its slice",
                 formula="w[i*k:(i+1)*k] ~ init_i on a tensor of shape [k, ...], k = size(0) / n",
                 safe="gate-wise and q/k/v-wise choices: an LSTM forget bias of one, "
                      "`bias_ih: {chunks: [zeros, ones, zeros, zeros]}`",
                 detail="n must divide the first axis (NS004 otherwise). Each part is initialised as a tensor of "
                        "its own shape, so fan-scaled initializers use the part's fans (fan_out = size(0) / n * "
                        "receptive field), as per-gate initialisation in Keras's recurrent layers does."))
_add(Initializer("torch_default", NoArgs, "what PyTorch's own module would do",
                 torch="the module's reset_parameters: kaiming_uniform_(a=sqrt(5)); bias U(+-1/sqrt(fan_in)); "
                       "norm ones/zeros; embedding N(0, 1)",
                 keras="VarianceScaling(1/3, fan_in, uniform); bias RandomUniform(+-1/sqrt(fan_in)); "
                       "Ones/Zeros; RandomNormal(0, 1)",
                 formula="weight U(+-1/sqrt(fan_in)); bias U(+-1/sqrt(fan_in of the weight))"))

NAMES = tuple(REGISTRY)


def constant_value(name: str, args: dict, role: str) -> Optional[float]:
    """The value of every element when the initializer is a constant fill, else None."""
    if name == "zeros":
        return 0.0
    if name == "ones":
        return 1.0
    if name == "constant":
        return float(args["value"])
    if name == "torch_default" and role in ("gamma", "beta"):
        return 1.0 if role == "gamma" else 0.0
    if name == "chunks":
        values = {constant_value(part.name, part.args, role) for part in args["parts"]}
        return values.pop() if len(values) == 1 else None
    return None


def nested_shape(values) -> Optional[tuple]:
    """The shape of a nested list, or None if it is ragged."""
    if not isinstance(values, list):
        return ()
    if not values:
        return (0,)
    shapes = {nested_shape(v) for v in values}
    if len(shapes) != 1 or None in shapes:
        return None
    return (len(values),) + shapes.pop()


def check_arguments(name: str, args: dict) -> list[tuple[str, str]]:
    """Shape-independent NS211 problems: a list of (argument, message)."""
    problems = []
    if "gain" in args and args["gain"] <= 0:
        problems.append(("gain", f"gain must be positive, got {args['gain']}"))
    if "std" in args and args["std"] <= 0:
        problems.append(("std", f"std must be positive, got {args['std']}"))
    if name == "uniform" and args["low"] >= args["high"]:
        problems.append(("low", f"low must be below high, got low={args['low']}, high={args['high']}"))
    if name == "trunc_normal":
        if args["low"] >= args["high"]:
            problems.append(("low", f"low must be below high, got low={args['low']}, high={args['high']}"))
        elif not args["low"] <= args["mean"] <= args["high"]:
            problems.append(("mean", f"the bounds [{args['low']}, {args['high']}] exclude the mean {args['mean']}"))
    if name == "sparse" and not 0 <= args["sparsity"] < 1:
        problems.append(("sparsity", f"sparsity must be in [0, 1), got {args['sparsity']}"))
    if name in ("kaiming_uniform", "kaiming_normal"):
        if args["mode"] not in FAN_MODES:
            problems.append(("mode", f"mode must be one of {', '.join(FAN_MODES)}, got {args['mode']!r}"))
        if args["nonlinearity"] not in NONLINEARITIES:
            problems.append(("nonlinearity", f"unknown nonlinearity {args['nonlinearity']!r}; allowed: "
                                             + ", ".join(NONLINEARITIES)))
    if name == "variance_scaling":
        if args["scale"] <= 0:
            problems.append(("scale", f"scale must be positive, got {args['scale']}"))
        if args["mode"] not in VS_MODES:
            problems.append(("mode", f"mode must be one of {', '.join(VS_MODES)}, got {args['mode']!r}"))
        if args["distribution"] not in VS_DISTRIBUTIONS:
            problems.append(("distribution", f"distribution must be one of {', '.join(VS_DISTRIBUTIONS)}, got "
                                             f"{args['distribution']!r}"))
    if name == "values" and not _all_numbers(args["values"]):
        problems.append(("values", "values must hold only finite numbers within float32's range (nested lists for "
                                   "2-D and up)"))
    elif name == "values" and nested_shape(args["values"]) is None:
        problems.append(("values", "values is a ragged list; every row must have the same length"))
    if name == "log_prior" and any(c <= 0 for c in args["counts"]):
        problems.append(("counts", "every count must be positive"))
    elif name == "log_prior" and args["counts"]:
        total = sum(args["counts"])
        if not math.isfinite(total) or any(c / total == 0 for c in args["counts"]):
            problems.append(("counts", "the counts span more than float64's range: log(count / total) would not be "
                                       "a finite number; scale them (only their ratios matter)"))
    out_of_range = set()
    for arg, value in args.items():
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            out_of_range.add(arg)
            problems.append((arg, f"{arg} = {value:g} is beyond float32's range (about 3.4e38): the tensor would "
                                  "hold inf"))
    if not problems:
        problems.extend(float32_problems(name, args))
    return problems


def to_float32(x: float) -> float:
    """`x` rounded to float32 as a tensor would hold it (+-inf when beyond its range)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def float32_problems(name: str, args: dict) -> list[tuple[str, str]]:
    """What the arguments do in float32, where every tensor lives: a scale that rounds to 0 there, bounds that
    become equal, and draws (or the range PyTorch computes, `high - low`) that overflow it."""
    problems = []
    for arg in ("std", "gain", "scale"):
        if arg in args and args[arg] > 0 and to_float32(args[arg]) == 0:
            problems.append((arg, f"{arg} = {args[arg]:g} is 0 in float32 (its smallest positive number is about "
                                  "1.4e-45): every element would be equal"))
    if name in ("uniform", "trunc_normal") and args["low"] < args["high"]:
        low, high = to_float32(args["low"]), to_float32(args["high"])
        if low >= high:
            problems.append(("high", f"low = {args['low']!r} and high = {args['high']!r} are the same number in "
                                     "float32: there is no range to draw from"))
        elif name == "uniform" and abs(args["high"] - args["low"]) > FLOAT32_MAX:
            problems.append(("high", f"high - low = {args['high'] - args['low']:g} is beyond float32's range (about "
                                     "3.4e38): the draw would overflow (PyTorch refuses it)"))
    if name in ("normal", "sparse") and not problems:
        mean = args.get("mean", 0.0)
        if abs(mean) + SIGMAS * args["std"] > FLOAT32_MAX:
            problems.append(("std", f"mean {mean:g} and std {args['std']:g} draw numbers beyond float32's range "
                                    f"(|mean| + {SIGMAS} std must stay below about 3.4e38): weights would be inf"))
    if name == "trunc_normal" and not problems and args["std"] * math.sqrt(2) > FLOAT32_MAX:
        # PyTorch scales erfinv draws by std * sqrt(2) in float32 before clipping: inf there, times 0, is nan
        problems.append(("std", f"std = {args['std']:g}: std * sqrt(2) is beyond float32's range (about 3.4e38), "
                                "where the draws are scaled: weights would be nan"))
    gain_scaled = ("xavier_uniform", "xavier_normal", "orthogonal", "eye")
    if name in gain_scaled and "gain" in args and SIGMAS * args["gain"] > FLOAT32_MAX:
        problems.append(("gain", f"gain = {args['gain']:g} scales draws beyond float32's range (at most about "
                                 f"{FLOAT32_MAX / SIGMAS:.3g}): weights would be inf"))
    return problems


def _all_numbers(values) -> bool:
    if isinstance(values, list):
        return all(_all_numbers(v) for v in values)
    if not isinstance(values, (int, float)) or isinstance(values, bool):
        return False
    try:  # an integer beyond float's range (10**400) is no finite float either; nor is 1e39 in float32
        return abs(float(values)) <= FLOAT32_MAX
    except OverflowError:
        return False


def log_prior(counts: list[float]) -> list[float]:
    total = float(sum(counts))
    return [math.log(c / total) for c in counts]
