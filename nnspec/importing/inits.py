"""Which initializer made a tensor: constants exactly, random tensors by a Kolmogorov-Smirnov test.

Each tensor gets the set of candidates its values do not reject (KS p-value at least `ACCEPT`); the
spec then takes, for each (kind, role), the candidate most of its tensors accept as the model-wide
default, and writes the others as `init.paths` exceptions. Candidates: PyTorch's default, kaiming and
xavier (normal and uniform, each mode, gain of relu or 1), Keras's truncated normals (he, lecun, glorot) and the
VarianceScaling of keras.applications' EfficientNets,
and fitted ones: normal with the sample's std, uniform with the sample's bounds (rounded to a short number
where the test still accepts it). Two candidates can be the same distribution (a 1x1 conv with as many
inputs as outputs has fan_in = fan_out): the model-wide choice settles it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ACCEPT = 1e-3  # a candidate is kept while the KS test's p-value is at least this
SAMPLE = 20_000  # values tested per tensor (a fixed random subset of larger tensors)
WEIGHTED = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


@dataclass
class Inference:
    accepted: dict = field(default_factory=dict)  # key -> (initializer value, p-value or None when exact)
    best: str = ""  # the key of the best candidate (also when none is accepted)
    best_value: object = None
    best_p: float = 0.0
    exact: bool = False
    sample: object = None  # the sorted values tested (random tensors)
    fitted: dict = field(default_factory=dict)  # key -> value of the fitted candidates (no fans: shared)


def key_of(value) -> str:
    from nnspec.importing.render import scalar

    return scalar(value)


def _named(keras: bool, fan_in: int, fan_out: int, kind: str, role: str, bias_fan_in) -> list:
    """(value, scipy distribution) of every candidate that has no fitted number."""
    from scipy import stats

    out = []
    if kind in WEIGHTED and role == "weight":
        bound = 1 / math.sqrt(fan_in)
        out.append(("torch_default", stats.uniform(-bound, 2 * bound)))
    elif kind in WEIGHTED and role == "bias" and bias_fan_in:
        bound = 1 / math.sqrt(bias_fan_in)
        out.append(("torch_default", stats.uniform(-bound, 2 * bound)))
    elif kind in ("embedding", "position_embedding") and role == "weight":
        out.append(("torch_default", stats.norm(0, 1)))
    elif kind == "attention" and role in ("in_weight", "out_weight"):
        # nn.MultiheadAttention: xavier_uniform_ on in_proj_weight; out_proj keeps nn.Linear's own init
        bound = math.sqrt(6 / (fan_in + fan_out)) if role == "in_weight" else 1 / math.sqrt(fan_in)
        out.append(("torch_default", stats.uniform(-bound, 2 * bound)))
    if not (fan_in and fan_out) or role not in ("weight", "in_weight", "out_weight", "weight_ih", "weight_hh"):
        return out
    glorot = "glorot_uniform" if keras else "xavier_uniform"
    avg = (fan_in + fan_out) / 2
    out.append((glorot, stats.uniform(-math.sqrt(3 / avg), 2 * math.sqrt(3 / avg))))
    for mode, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
        for nonlinearity, gain in (("relu", math.sqrt(2)), ("linear", 1.0)):
            args = {"mode": mode, "nonlinearity": nonlinearity}
            out.append(({"kaiming_normal": args}, stats.norm(0, gain / math.sqrt(fan))))
            bound = gain * math.sqrt(3 / fan)
            out.append(({"kaiming_uniform": args}, stats.uniform(-bound, 2 * bound)))
    out.append(("xavier_normal", stats.norm(0, math.sqrt(1 / avg))))
    if keras:
        # Keras's *_normal: a normal cut at 2 std, scaled so that the variance is scale / fan
        for name, scale, fan in (("he_normal", 2.0, fan_in), ("lecun_normal", 1.0, fan_in),
                                 ("glorot_normal", 1.0, avg)):
            std = math.sqrt(scale / fan) / 0.87962566103423978
            out.append((name, stats.truncnorm(-2, 2, 0, std)))
        for name, scale, fan in (("he_uniform", 6.0, fan_in), ("lecun_uniform", 3.0, fan_in)):
            bound = math.sqrt(scale / fan)
            out.append((name, stats.uniform(-bound, 2 * bound)))
        # keras.applications' EfficientNets: VarianceScaling(2, fan_out, truncated_normal) for convs and
        # VarianceScaling(1/3, fan_out, uniform) for the classifier
        std = math.sqrt(2.0 / fan_out) / 0.87962566103423978
        out.append(({"variance_scaling": {"scale": 2.0, "mode": "fan_out"}}, stats.truncnorm(-2, 2, 0, std)))
        bound = math.sqrt(1.0 / fan_out)
        out.append(({"variance_scaling": {"scale": 1 / 3, "mode": "fan_out", "distribution": "uniform"}},
                    stats.uniform(-bound, 2 * bound)))
    return out


def _short(x: float) -> list:
    """Short numbers near x, shortest first."""
    out = []
    for digits in (1, 2, 3):
        out.append(float(f"{x:.{digits}g}"))
    k = round(1 / (x * x)) if x > 0 else 0
    if k > 0:
        out.append(1 / math.sqrt(k))
    out.append(float(f"{x:.6g}"))
    return out


def _pvalue(sample, dist) -> float:
    """The KS test's p-value (the asymptotic distribution: exact enough at these sizes, and fast);
    `sample` sorted."""
    from scipy import stats

    n = len(sample)
    cdf = dist.cdf(sample)
    d = max(float(np.max(np.arange(1, n + 1) / n - cdf)), float(np.max(cdf - np.arange(n) / n)))
    return float(stats.kstwobign.sf(d * math.sqrt(n)))


def _fitted(sample, values, extra=None) -> list:
    """(value, distribution) for a normal and a uniform fitted to the sample (bounds: to all the values),
    with short numbers; `extra`, a list, receives the other short normals the test accepts."""
    from scipy import stats

    out = []
    n = len(sample)
    mean, std = float(np.mean(sample)), float(np.std(sample))
    if std <= 0:
        return out
    centred = abs(mean) < 4 * std / math.sqrt(n)
    m = 0.0 if centred else float(f"{mean:.4g}")
    shorts = list(dict.fromkeys(_short(std)))
    for s in shorts:
        if abs(s - std) <= 0.03 * std:
            dist = stats.norm(m, s)
            if _pvalue(sample, dist) >= ACCEPT or s == shorts[-1]:
                out.append(({"normal": ({"std": s} if m == 0 else {"mean": m, "std": s})}, dist))
                break
    if extra is not None:
        # the other short stds near the sample's that the test accepts: a small tensor's sample std strays
        # further from the one drawn with (torchvision's MLP biases, normal std 1e-6), and the model-wide
        # choice settles on the one most tensors accept
        for s in shorts:
            value = {"normal": ({"std": s} if m == 0 else {"mean": m, "std": s})}
            if abs(s - std) <= 0.1 * std and value != (out[0][0] if out else None) and _pvalue(sample, stats.norm(m, s)) >= ACCEPT:
                extra.append((value, stats.norm(m, s)))
    low, high = float(np.min(values)), float(np.max(values))
    pad = (high - low) / max(values.size - 1, 1)
    if abs(low + high) < 0.05 * (high - low):
        top = max(-low, high)  # the bound lies just above the largest magnitude drawn
        k = round(1 / (top * top))
        shorts = _short(top) + [1 / math.sqrt(j) for j in (k - 1, k, k + 1) if j > 0]
        fits = sorted((b for b in shorts if top <= b <= top + 20 * pad), key=lambda b: len(repr(b)))
        b = fits[0] if fits else float(f"{top + pad:.6g}")
        out.append(({"uniform": {"low": -b, "high": b}}, stats.uniform(-b, 2 * b)))
    else:
        low, high = low - pad, high + pad
        lo, hi = float(f"{low:.4g}"), float(f"{high:.4g}")
        out.append(({"uniform": {"low": lo, "high": hi}}, stats.uniform(lo, hi - lo)))
    return out


def _short_float32(v: float) -> float:
    """A float32 value as the shortest number that rounds to it (torch.ones(...) * 1e-6 holds
    9.99999997e-07, written 1e-06: the same float32 when built); any other value as it is."""
    single = np.float32(v)
    if float(single) != v:
        return v
    short = float(str(single))
    return short if np.float32(short) == single else v


def _constant(values: np.ndarray, kind: str):
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        v = _short_float32(float(flat[0]))
        return "zeros" if v == 0 else "ones" if v == 1 else {"constant": v}
    if values.ndim == 2 and values.size > 1:
        g = float(values[0, 0])
        if g != 0 and np.array_equal(values, g * np.eye(*values.shape, dtype=values.dtype)):
            return "eye" if g == 1 else {"eye": g}
    if values.ndim >= 3 and kind.startswith("conv") and not kind.startswith("conv_transpose"):
        dirac = np.zeros_like(values)
        centre = tuple(s // 2 for s in values.shape[2:])
        for i in range(min(values.shape[0], values.shape[1])):
            dirac[(i, i) + centre] = 1
        if np.array_equal(values, dirac):
            return "dirac"
    return None


def infer(values, kind: str, role: str, fan_in: int, fan_out: int, bias_fan_in=None, keras: bool = False,
          seed: int = 0) -> Inference:
    values = np.asarray(values, dtype=np.float64)
    constant = _constant(values, kind)
    if constant is not None:
        key = key_of(constant)
        return Inference({key: (constant, None)}, key, constant, 1.0, True)
    flat = values.reshape(-1)
    if flat.size > SAMPLE:
        flat = np.random.default_rng(seed).choice(flat, SAMPLE, replace=False)
    flat = np.sort(flat)
    result = Inference()
    scored = []
    for value, dist in _named(keras, fan_in, fan_out, kind, role, bias_fan_in):
        scored.append((value, _pvalue(flat, dist), True))
    extra = []
    for value, dist in _fitted(flat, values.reshape(-1), extra):
        scored.append((value, _pvalue(flat, dist), False))
        result.fitted[key_of(value)] = value
    result.sample = flat
    for value, p, _ in scored:
        if p >= ACCEPT:
            result.accepted[key_of(value)] = (value, p)
    for value, dist in extra:  # accepted, for the model-wide choice; never a tensor's own best
        result.accepted[key_of(value)] = (value, _pvalue(flat, dist))
        result.fitted[key_of(value)] = value
    # on a tie the model-wide choice takes the earlier candidate: the named ones first, then the fitted ones,
    # the roundest number first (what a person writes: std 0.02 over the 0.019 of a small sample)
    std = float(np.std(flat))
    rank = {key: (_digits(value), abs(_std(value) - std)) for key, value in result.fitted.items()}
    result.accepted = dict(sorted(result.accepted.items(), key=lambda kv: rank.get(kv[0], (-1, 0))))
    named_ok = [(v, p) for v, p, named in scored if named and p >= ACCEPT]
    pool = named_ok or [(v, p) for v, p, _ in scored]
    if pool:
        value, p = max(pool, key=lambda vp: vp[1])
        result.best, result.best_value, result.best_p = key_of(value), value, p
    return result


@dataclass
class Choice:
    defaults: dict  # (kind, role) -> (value, comment)
    roles: dict  # role -> (value, comment): defaults shared by several kinds
    exceptions: list  # (tensor path, value, comment)
    uncertain: int = 0
    total: int = 0


def _std(value) -> float:
    (name, args), = value.items()
    return args["std"] if name == "normal" else (args["high"] - args["low"]) / math.sqrt(12)


def _digits(value) -> int:
    """The significant digits of a fitted candidate's numbers ({normal: {std: 1.0e-06}}: 1)."""
    (_, args), = value.items()
    return sum(len(f"{float(x):.15g}".split("e")[0].replace("-", "").replace(".", "").strip("0")) for x in
               args.values())


def _share_fits(inferences: list) -> None:
    """When no candidate fits every random tensor of a group, each is also tested against the numbers fitted to
    the others: a small tensor's own fit strays (torchvision ViT's MLP biases: 768 values of normal std 1e-6
    fit 1.04e-6), and the model-wide choice then finds the number most of them accept."""
    from scipy import stats

    random = [inf for inf in inferences if not inf.exact and inf.sample is not None]
    if len(random) < 2 or set.intersection(*(set(inf.accepted) for inf in random)):
        return
    pooled = np.sort(np.concatenate([inf.sample for inf in random]))
    if len(pooled) > SAMPLE:
        pooled = np.sort(np.random.default_rng(0).choice(pooled, SAMPLE, replace=False))
    extra = []
    shared = {key_of(value): value for value, _ in _fitted(pooled, pooled, extra) + extra}  # fitted to all values
    for inf in random:
        shared.update(inf.fitted)

    def dist(value):
        (name, args), = value.items()
        if name == "normal":
            return stats.norm(args.get("mean", 0.0), args["std"])
        return stats.uniform(args["low"], args["high"] - args["low"])

    for inf in random:
        for key, value in shared.items():
            if key not in inf.accepted:
                p = _pvalue(inf.sample, dist(value))
                if p >= ACCEPT:
                    inf.accepted[key] = (value, p)
    # on a tie the model-wide choice takes the candidate earlier in the tensors' lists: the named ones first,
    # as before, then the fitted ones, the shortest number first, then the one whose mean and std are nearest
    # to those of all the values (a better estimate of the scale than a KS p-value)
    mean, std = float(np.mean(pooled)), float(np.std(pooled))
    off = {key: abs(dist(value).mean() - mean) + abs(dist(value).std() - std) for key, value in shared.items()}
    rank = {key: n for n, key in enumerate(sorted(shared, key=lambda k: (_digits(shared[k]), off[k])))}
    for inf in random:
        inf.accepted = dict(sorted(inf.accepted.items(), key=lambda kv: rank.get(kv[0], -1)))


def choose(tensors: list) -> Choice:
    """tensors: (spec tensor path, kind, role, Inference). The model-wide defaults and the exceptions."""
    groups: dict = {}
    for entry in tensors:
        groups.setdefault((entry[1], entry[2]), []).append(entry)
    choice = Choice({}, {}, [], total=len(tensors))
    for (kind, role), members in groups.items():
        _share_fits([inf for *_, inf in members])
        counts: dict = {}
        order: dict = {}
        for _, _, _, inf in members:
            for rank, key in enumerate(inf.accepted):
                counts[key] = counts.get(key, 0) + 1
                order.setdefault(key, rank)
        if not counts:  # no tensor of the group fits any candidate: its most frequent best guess, flagged
            bests = [inf.best for *_, inf in members]
            key = max(bests, key=bests.count)
            best = [inf for *_, inf in members if inf.best == key]
            choice.uncertain += len(best)
            choice.defaults[(kind, role)] = (best[0].best_value, f"uncertain: the best candidate has KS p >= "
                                                                 f"{min(i.best_p for i in best):.2g}, {len(best)} "
                                                                 f"tensor{'s' * (len(best) != 1)}")
        else:
            key = max(counts, key=lambda k: (counts[k], -order[k]))
            value = next(inf.accepted[key][0] for *_, inf in members if key in inf.accepted)
            ps = [inf.accepted[key][1] for *_, inf in members if key in inf.accepted]
            n = len(ps)
            if all(p is None for p in ps):
                comment = f"exact, {n} tensor{'s' * (n != 1)}"
            else:
                comment = f"KS p >= {min(p for p in ps if p is not None):.2g}, {n} tensor{'s' * (n != 1)}"
            choice.defaults[(kind, role)] = (value, comment)
        for path, _, _, inf in members:
            if key in inf.accepted or (not counts and inf.best == key):
                continue
            if inf.exact:
                note = "exact"
            elif inf.best_p >= ACCEPT:
                note = f"KS p = {inf.best_p:.2g}"
            else:
                note = f"uncertain: the best candidate has KS p = {inf.best_p:.2g}"
                choice.uncertain += 1
            choice.exceptions.append((path, inf.best_value, note))
    for (_kind, role), (value, comment) in list(choice.defaults.items()):
        same = [k for (k, r), (v, _) in choice.defaults.items() if r == role and key_of(v) == key_of(value)]
        if len(same) >= 2 and role not in choice.roles:
            choice.roles[role] = (value, f"{', '.join(same)}: " + comment.split(",")[0])
    for (kind, role) in list(choice.defaults):
        if role in choice.roles and key_of(choice.defaults[(kind, role)][0]) == key_of(choice.roles[role][0]):
            del choice.defaults[(kind, role)]
    return choice
