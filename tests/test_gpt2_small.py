"""examples/gpt2_small.yaml is GPT-2 small: parameters, GPT-2's initialisation, and the last hidden state of a
plain-PyTorch GPT-2 (and of the `transformers` package's GPT2Model where it is installed) given the same weights.

Lean on purpose: one thread, batch 1, a short sequence; the reference is made on the meta device and takes our
tensors (no second initialisation of 124M weights). `parity --perturb` runs on a reduced-width copy of the spec
(the same text with smaller numbers): the full model's Keras build would cost the suite tens of seconds.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from helpers import spec_from_text  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import nnspec  # noqa: E402
from nnspec.parity import run_parity  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "examples" / "gpt2_small.yaml"
PARAMS = 124_439_808  # GPT2Model: wte + wpe + 12 blocks + ln_f (the LM head is wte, tied)
LAYERS, WIDTH, HEADS, VOCAB, CONTEXT = 12, 768, 12, 50257, 1024
PROJ_STD = 0.02 / math.sqrt(2 * LAYERS)


# -- a plain-PyTorch GPT-2, with GPT-2's parameter names and Conv1D layout ([in, out]) ----------------------

class Conv1D(nn.Module):
    """GPT-2's Conv1D: y = x @ weight + bias, weight [in, out] (the transpose of nn.Linear's)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(width, 3 * width)
        self.c_proj = Conv1D(width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        future = torch.ones(t, t, dtype=torch.bool).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(width, 4 * width)
        self.c_proj = Conv1D(4 * width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, layers=LAYERS, width=WIDTH, heads=HEADS, vocab=VOCAB, context=CONTEXT) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, eps=1e-5)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


# GPT-2's names -> nnspec's, and whether GPT-2 stores the tensor transposed (Conv1D)
RENAME = [
    (r"h\.(\d+)\.ln_1\.", r"h.\1.attn_branch.branch.ln_1.", False),
    (r"h\.(\d+)\.attn\.c_attn\.weight", r"h.\1.attn_branch.branch.attn.in_proj_weight", True),
    (r"h\.(\d+)\.attn\.c_attn\.bias", r"h.\1.attn_branch.branch.attn.in_proj_bias", False),
    (r"h\.(\d+)\.attn\.c_proj\.weight", r"h.\1.attn_branch.branch.attn.out_proj.weight", True),
    (r"h\.(\d+)\.attn\.c_proj\.bias", r"h.\1.attn_branch.branch.attn.out_proj.bias", False),
    (r"h\.(\d+)\.ln_2\.", r"h.\1.mlp_branch.branch.ln_2.", False),
    (r"h\.(\d+)\.mlp\.(c_fc|c_proj)\.weight", r"h.\1.mlp_branch.branch.\2.weight", True),
    (r"h\.(\d+)\.mlp\.(c_fc|c_proj)\.bias", r"h.\1.mlp_branch.branch.\2.bias", False),
]


def ours_of(name: str) -> tuple[str, bool]:
    for pattern, replacement, transposed in RENAME:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name), transposed
    return name, False  # wte, wpe, ln_f: the same names


def their_state(ours: dict, names) -> dict:
    """GPT-2's state dict (for the parameter names given) holding our tensors, Conv1D weights transposed."""
    state = {}
    for name in names:
        key, transposed = ours_of(name)
        state[name] = ours[key].t() if transposed else ours[key]
    return state


@pytest.fixture(scope="module")
def built():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = nnspec.load(SPEC)
    model = nnspec.build(spec, "torch", seed=0)
    yield spec, model
    torch.set_num_threads(threads)


def test_parameter_count_and_names(built):
    spec, model = built
    assert spec.params == PARAMS == sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        reference = GPT2()
    assert sum(p.numel() for p in reference.parameters()) == PARAMS
    ours = dict(model.state_dict())
    theirs = reference.state_dict()
    assert sorted(ours_of(name)[0] for name in theirs) == sorted(ours)  # every tensor has exactly one partner
    for name, value in theirs.items():
        key, transposed = ours_of(name)
        assert tuple(ours[key].shape) == tuple(value.t().shape if transposed else value.shape), name


def test_initialisation_is_gpt2s(built):
    """normal(0.02) everywhere, zero biases, the two residual projections normal(0.02 / sqrt(24)), layernorms
    ones and zeros: checked on the spec's plan and on the built tensors' moments."""
    _spec, model = built
    state = model.state_dict()
    for key, value in state.items():
        if value.dim() == 1:
            expected = 1.0 if key.endswith(("ln_1.weight", "ln_2.weight")) or key == "ln_f.weight" else 0.0
            assert torch.all(value == expected), key
            continue
        std = PROJ_STD if key.endswith(("out_proj.weight", "c_proj.weight")) else 0.02
        sample = value.flatten()[:200_000].double()
        assert abs(float(sample.mean())) < 5 * std / math.sqrt(sample.numel()), key
        assert abs(float(sample.std()) / std - 1) < 0.02, (key, float(sample.std()), std)


@contextlib.contextmanager
def perturbed(model):
    """The model with its zero biases and unit layernorm scales moved by random values, so that every tensor
    shows in the output; yields its state dict, and puts the 1-D tensors back afterwards (the module's model
    is shared by the tests)."""
    gen = torch.Generator().manual_seed(1)
    saved = {key: value.clone() for key, value in model.state_dict().items() if value.dim() == 1}
    state = dict(model.state_dict())
    with torch.no_grad():
        for key, value in saved.items():
            state[key].copy_(value + 0.1 * torch.randn(value.shape, generator=gen))
    try:
        yield state
    finally:
        with torch.no_grad():
            for key, value in saved.items():
                state[key].copy_(value)


def test_last_hidden_state_equals_a_plain_gpt2(built):
    _spec, model = built
    with perturbed(model) as state:
        with torch.device("meta"):
            reference = GPT2()
        reference.load_state_dict(their_state(state, reference.state_dict()), assign=True)
        model.eval()
        reference.eval()
        ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            expected = reference(ids)
            got = model(ids)
        assert got.shape == (1, 12, WIDTH)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        # the attention is causal: a change at position 8 leaves positions 0 to 7 as they were
        changed = ids.clone()
        changed[0, 8] = (changed[0, 8] + 1) % VOCAB
        with torch.no_grad():
            other = model(changed)
        torch.testing.assert_close(other[:, :8], got[:, :8])
        assert not torch.allclose(other[:, 8:], got[:, 8:])


def test_last_hidden_state_equals_transformers_gpt2model(built):
    transformers = pytest.importorskip("transformers")
    _spec, model = built
    config = transformers.GPT2Config(n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS, vocab_size=VOCAB,
                                     n_positions=CONTEXT, activation_function="gelu_new", layer_norm_epsilon=1e-5)
    reference = transformers.GPT2Model(config).eval()
    names = [name for name, _ in reference.named_parameters()]
    with perturbed(model) as state:
        mine = {k: v.contiguous() for k, v in their_state(state, names).items()}
        missing, unexpected = reference.load_state_dict(mine, strict=False)
        assert not unexpected and not [k for k in missing if k in names]
        ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(3))
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(ids), reference(ids).last_hidden_state, atol=1e-4, rtol=1e-4)


def reduced_text(text: str) -> str:
    """The example with width 32, 4 heads, an MLP of 128, 97 token ids, 16 positions and 2 blocks: the same
    structure, init and arguments otherwise."""
    for old, new in (("[1024]", "[16]"), ("length: 1024", "length: 16"), ("num: 50257", "num: 97"),
                     ("dim: 768", "dim: 32"), ("out: 3072", "out: 128"), ("out: 768", "out: 32"),
                     ("heads: 12", "heads: 4"), ("repeat: 12", "repeat: 2")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_parity_with_perturbed_weights_on_a_reduced_copy():
    pytest.importorskip("keras")
    spec = spec_from_text(reduced_text(SPEC.read_text()), "gpt2_reduced.yaml")
    assert not spec.diagnostics
    report = run_parity(spec, seed=0, batch=1, perturb_weights=True)
    assert report.ok, report.text()
    assert report.shape == (16, 32)


def test_check_is_clean():
    spec = nnspec.load(SPEC)
    assert not spec.diagnostics
