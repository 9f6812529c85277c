"""The code table: every diagnostic nnspec can emit, with its documentation.

This table is the single source of `nnspec rule CODE`, `nnspec rule --list`,
`docs/rules.md`, and the SARIF rule list. Codes are stable: never renumber.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: str
    summary: str
    what: str
    why: str
    example: str
    use_instead: str

    def render(self) -> str:
        return (
            f"{self.code} ({self.name}) [{self.severity}]\n{self.summary}\n\n"
            f"## What it does\n{self.what}\n\n## Why is this bad\n{self.why}\n\n"
            f"## Example\n```yaml\n{self.example.rstrip()}\n```\n\n"
            f"## Use instead\n```yaml\n{self.use_instead.rstrip()}\n```\n"
        )


_TABLE = [
    Code("NS001", "yaml-unreadable", "error",
         "The file cannot be read as YAML: syntax error, not UTF-8, empty or unreadable.",
         "Reports a file that the YAML parser cannot turn into a document, at the parser's position.",
         "Nothing else can be checked until the file parses.",
         "layers:\n  - linear: {out: 10\n",
         "layers:\n  - linear: {out: 10}\n"),
    Code("NS002", "duplicate-key", "error",
         "A mapping holds the same key twice.",
         "Reports the second occurrence of a key, naming the line of the first.",
         "YAML loaders silently keep the last value, so one of the two settings is ignored without a word.",
         "linear: {out: 10, out: 20}\n",
         "linear: {out: 20}\n"),
    Code("NS003", "unknown-key", "error",
         "A key that this place does not accept (also an `init` role the layer does not have).",
         "Reports keys that no layer kind, initializer or top-level section defines, with the closest valid name.",
         "A typo such as `stirde` would otherwise be ignored and the layer silently built with the default.",
         "conv2d: {out: 16, kernel: 3, stirde: 2}\n",
         "conv2d: {out: 16, kernel: 3, stride: 2}\n"),
    Code("NS004", "bad-value", "error",
         "A layer or model argument has the wrong type or is out of range.",
         "Checks every argument strictly: integers are not booleans, numeric strings are not numbers, numbers are finite.",
         "A value like `out: \"16\"` or `p: 1.5` would either crash a framework or build a different model than intended.",
         "linear: {out: 0}\n",
         "linear: {out: 16}\n"),
    Code("NS005", "limit-exceeded", "error",
         "A limit was exceeded: file size, nesting depth, alias or block expansion, the parameter or activation "
         "budget, or a tensor too large to index.",
         "Refuses inputs that would need unbounded time or memory before they are walked: huge files, deeply nested "
         "documents, alias bombs (\"billion laughs\"), blocks and `repeat` that expand beyond the limit, models whose "
         "parameters or activations (estimated from the shapes, for `probe`'s batch) exceed the budget, and tensors "
         "whose size in bytes does not fit a 64-bit integer.",
         "A malicious or mistaken file must not be able to hang CI or exhaust memory.",
         "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n# ... nine more levels\n",
         "# write the layers out, or use `repeat` and blocks\n"),
    Code("NS006", "unsafe-tag", "error",
         "A YAML tag that would construct an object (`!!python/...`, unknown tags).",
         "nnspec only loads plain YAML data; any explicit tag other than the core schema's is refused.",
         "Object-constructing tags are a remote-code-execution vector (CVE-2017-18342, CVE-2020-1747).",
         "name: !!python/object/apply:os.system [\"id\"]\n",
         "name: my_model\n"),
    Code("NS007", "unsafe-name", "error",
         "A name that is not a safe identifier for generated code.",
         "Names become Python identifiers in emitted code and module attributes in PyTorch; they must be ASCII "
         "identifiers, not keywords, not dunders, not names the generated code uses, not `nn.Module` attributes.",
         "An unsafe name could break or inject code into the emitted module, or shadow `forward`, `train`, `to`...",
         "linear: {out: 10, name: forward}\n",
         "linear: {out: 10, name: head}\n"),
    Code("NS008", "unknown-name", "error",
         "Unknown layer kind, block or initializer.",
         "Reports a kind or initializer name that nnspec does not know, with the closest valid name.",
         "A misspelt kind cannot be built; nnspec never imports a name from the file.",
         "- conv2: {out: 16, kernel: 3}\n",
         "- conv2d: {out: 16, kernel: 3}\n"),
    Code("NS009", "missing-argument", "error",
         "A required argument is missing.",
         "Reports, at the item, each required argument it does not give.",
         "A layer without its size cannot be built.",
         "- linear: {bias: false}\n",
         "- linear: {out: 10, bias: false}\n"),
    Code("NS010", "not-a-spec", "error",
         "Not an nnspec spec: the top level is not a mapping, or has no `nnspec` key.",
         "Every spec starts with `nnspec: 1`; a list, a scalar or another config file is not one.",
         "Checking an unrelated YAML file as a model would only produce noise.",
         "- linear: {out: 10}\n",
         "nnspec: 1\nname: mlp\ninput: [16]\nlayers:\n  - linear: {out: 10}\n"),
    Code("NS011", "unsupported-version", "error",
         "The format version is not one that this nnspec understands.",
         "`nnspec:` must be 1.",
         "A file written for another format version may mean something else.",
         "nnspec: 2\n",
         "nnspec: 1\n"),
    Code("NS101", "shape-mismatch", "error",
         "Two shapes that must agree do not (a residual's branch and shortcut).",
         "Infers every layer's output shape and compares the two paths into a residual add.",
         "The framework would fail at the first forward pass, or broadcast silently.",
         "- residual:\n    - conv2d: {out: 32, kernel: 3, padding: 1}   # input has 16 channels\n",
         "- residual:\n    branch:\n      - conv2d: {out: 32, kernel: 3, padding: 1}\n"
         "    shortcut:\n      - conv2d: {out: 32, kernel: 1}\n"),
    Code("NS102", "impossible-geometry", "error",
         "A kernel larger than its padded input, an output size below 1, `same` padding with stride > 1, or pool "
         "padding above half the kernel.",
         "Computes each spatial size as PyTorch does and refuses sizes the framework would refuse.",
         "The model cannot run on inputs of the declared size.",
         "input: [3, 4, 4]\nlayers:\n  - conv2d: {out: 8, kernel: 7}\n",
         "input: [3, 4, 4]\nlayers:\n  - conv2d: {out: 8, kernel: 3, padding: 1}\n"),
    Code("NS103", "groups-not-divisible", "error",
         "Input channels or `out` are not divisible by `groups`.",
         "Checks the grouped-convolution precondition of both frameworks.",
         "PyTorch and Keras refuse such a layer.",
         "- conv2d: {out: 10, kernel: 3, groups: 4}\n",
         "- conv2d: {out: 12, kernel: 3, groups: 4}\n"),
    Code("NS104", "wrong-rank", "error",
         "A layer is applied to an input of the wrong rank or dtype.",
         "Checks each layer's expected input rank (conv2d needs [C, H, W]) and dtype (embedding needs integer ids).",
         "The framework would fail at the first forward pass.",
         "input: [16]\nlayers:\n  - conv2d: {out: 8, kernel: 3}\n",
         "input: [1, 4, 4]\nlayers:\n  - conv2d: {out: 8, kernel: 3}\n"),
    Code("NS105", "block-arguments", "error",
         "Block arguments: unknown, missing or unused; or a block that calls itself.",
         "Checks every block call against the block's `args`, every `$arg` against the arguments, and the call graph "
         "for cycles.",
         "An unused argument is usually a typo; a recursive block never ends.",
         "blocks:\n  b:\n    args: {ch: required}\n    layers: [{linear: {out: 8}}]\n",
         "blocks:\n  b:\n    args: {ch: required}\n    layers: [{linear: {out: $ch}}]\n"),
    Code("NS106", "duplicate-name", "error",
         "A duplicate name in one scope, or a block named like a kind, role or initializer.",
         "Names are module paths and checkpoint keys; they must be unique.",
         "Two layers with one name would overwrite each other in the module and in the state dict.",
         "- linear: {out: 8, name: fc}\n- linear: {out: 8, name: fc}\n",
         "- linear: {out: 8, name: fc1}\n- linear: {out: 8, name: fc2}\n"),
    Code("NS107", "last-axis-of-a-map", "warning",
         "`linear`, `layernorm`, `rmsnorm` or `softmax` (default axis) on a map acts on its last spatial axis.",
         "Reports a layer that acts on the last logical axis (as PyTorch's nn.Linear and nn.LayerNorm do) placed "
         "on a map [C, *S], where the last axis is a spatial one (the width), not the channels. The meaning is "
         "version 1's and stays; the warning says what it is.",
         "On features [F] and tokens [T, D] these layers act on the channels (F, D). On a map they mix or "
         "normalise the pixels of each row instead, which is almost never meant: a `linear` after a conv "
         "usually wants `flatten` or global pooling first, and a ConvNeXt LayerNorm wants the channels.",
         "input: [3, 32, 32]\nlayers:\n  - conv2d: {out: 16, kernel: 3}\n  - layernorm\n  - linear: {out: 10}\n",
         "input: [3, 32, 32]\nlayers:\n  - conv2d: {out: 16, kernel: 3}\n  - layernorm: {over: channels}\n"
         "  - global_avg_pool\n  - linear: {out: 10}\n"),
    Code("NS201", "hidden-constant-weight", "error",
         "zeros, ones or constant on the weight of a hidden linear, conv or embedding layer.",
         "Flags a constant weight on a layer that is neither the output head (the last layer with tensors before "
         "the model output, through parameter-free layers) nor a residual tail (the last layer with tensors on a "
         "residual's branch or shortcut, through parameter-free layers that are not activations). Its output units "
         "get identical incoming weights, so they start identical, or differ only by their biases when those "
         "differ.",
         "Units with identical incoming weights compute the same function of the input (up to their biases); "
         "whether they come apart depends on the layers after them. With a random next layer they are pulled apart "
         "after the first step (with zeros before ReLU nothing moves at all, NS202); with a constant next layer and "
         "uniform biases they stay identical forever (NS203). Either way the layer starts with the capacity of a "
         "single unit.",
         "- linear: {out: 64, init: {weight: zeros}}\n- tanh\n- linear: {out: 10}\n",
         "- linear: {out: 64, init: {weight: xavier_uniform}}\n- tanh\n- linear: {out: 10}\n"),
    Code("NS202", "dead-relu", "error",
         "A zero weight or zero norm scale whose fixed output reaches `relu` or `relu6` at or below 0.",
         "Follows the output of a layer whose weight (or gamma) is zero and whose bias (or beta) is a fixed value "
         "(zeros, constant, values, log_prior) or absent, to a `relu`, `relu6` or `leaky_relu` with slope 0, and "
         "fires when the value that arrives there is at or below 0. On the way it passes dropout, flatten, pooling, "
         "identity and activations (each maps the fixed value to another fixed value: tanh, gelu, silu, elu and "
         "leaky_relu keep a non-positive value non-positive), and a norm layer when the value is exactly 0 (the "
         "norm then outputs its beta). It stops at a weight layer, at a residual (its shortcut carries the "
         "gradient) and at a residual's add. It applies at exempt positions too; waive it on the layer it points "
         "at.",
         "The pre-activation is the same non-positive constant for every input, and ReLU's slope there is 0, so "
         "every gradient into the layer, and into everything before it, is exactly zero: training never starts.",
         "- linear: {out: 64, init: {weight: zeros, bias: zeros}}\n- relu\n",
         "- linear: {out: 64, init: {weight: {kaiming_uniform: {nonlinearity: relu}}, bias: zeros}}\n- relu\n"),
    Code("NS203", "constant-chain", "error",
         "Two linear, conv or embedding layers in a row both have constant weights.",
         "Reported at the first of two linear, conv or embedding layers in a row that both use zeros, ones or "
         "constant for their weight, naming the second, when the first one's bias is constant or absent (a random "
         "bias tells its units apart). Between the two it passes parameter-free layers and norm layers whose gamma "
         "and beta are both constant. When the flow enters a residual, every path (branch and shortcut) must meet "
         "a constant weight, and a path that carries the units unchanged to the add (an identity shortcut) is "
         "followed on after the residual. The model output (the loss tells units apart) and the add of a residual "
         "that the units did not enter (the other path adds values of its own) end the search. It applies at "
         "exempt positions too. A dropout between the two is named: its random "
         "masks are then the only thing that tells the units apart.",
         "Units of a layer stay interchangeable when their incoming weights are identical and their outgoing "
         "weights are identical: gradient descent gives them identical updates forever, so the first layer never "
         "has more than one distinct unit.",
         "- linear: {out: 16, init: {weight: ones}}\n- tanh\n- linear: {out: 3, init: {weight: ones}}\n",
         "- linear: {out: 16, init: {weight: xavier_uniform}}\n- tanh\n- linear: {out: 3, init: {weight: zeros}}\n"),
    Code("NS204", "exploding-constant", "warning",
         "A non-zero constant weight whose value times fan_in exceeds 1 in magnitude.",
         "Computes |value| * fan_in for ones and constant weights of linear and conv layers, and |value| * n for "
         "transposed convolutions, n the inputs one output sums: input channels per group times the kernel taps "
         "that reach it (about kernel / stride per axis; not PyTorch's fan_in of that weight). An embedding looks "
         "one row up and sums nothing, so it is not checked.",
         "Each output is the value times the sum of fan_in inputs: inputs of one sign (after a ReLU, say) grow by "
         "that factor per layer, e.g. 512x for `ones` on a 512-input layer.",
         "- linear: {out: 10, init: {weight: ones}, name: head}\n",
         "- linear: {out: 10, init: {weight: {constant: 0.001}}, name: head}\n"),
    Code("NS205", "zero-norm-scale", "error",
         "A zero norm scale (gamma) anywhere but an exempt position.",
         "Flags `gamma: zeros` (or constant 0) on batchnorm, layernorm, groupnorm or rmsnorm unless the layer is a "
         "residual tail (the "
         "last layer with tensors on a residual's branch or shortcut, through parameter-free layers that are not "
         "activations: zero-init residual) or the output head.",
         "With gamma = 0 the layer outputs beta (rmsnorm: 0) for every input: everything before it is cut off at "
         "init, and no "
         "gradient passes back through it until gamma moves away from 0.",
         "- batchnorm: {init: {gamma: zeros}}\n- relu\n",
         "- batchnorm\n- relu\n"),
    Code("NS206", "eye-not-2d", "error",
         "eye on a tensor that is not 2-D.",
         "`eye` is the identity matrix; PyTorch's `eye_` and Keras's `Identity` accept only 2-D tensors. It cannot "
         "be waived: the model could not be built.",
         "A bias is 1-D and a conv weight is 3-D or more: neither has a diagonal. For a conv, `dirac` is the "
         "identity.",
         "- conv2d: {out: 16, kernel: 3, padding: 1, init: {weight: eye}}\n",
         "- conv2d: {out: 16, kernel: 3, padding: 1, init: {weight: dirac}}\n"),
    Code("NS207", "eye-not-square", "warning",
         "eye on a non-square matrix.",
         "Flags `eye` on a [out, in] weight with out != in.",
         "With more outputs than inputs the extra units start at zero (dead or symmetric); with fewer, inputs "
         "beyond `out` are dropped.",
         "input: [32]\nlayers:\n  - linear: {out: 64, init: {weight: eye}}\n",
         "input: [32]\nlayers:\n  - linear: {out: 32, init: {weight: eye}}\n"),
    Code("NS208", "dirac-not-conv", "error",
         "dirac on anything but a conv weight (3-D, 4-D or 5-D).",
         "`dirac` places a one at the kernel centre of output channel i for input channel i: it only means "
         "something for a convolution kernel. It cannot be waived: the model could not be built.",
         "PyTorch's `dirac_` refuses other ranks; on a linear layer `eye` is the identity.",
         "- linear: {out: 16, init: {weight: dirac}}\n",
         "- linear: {out: 16, init: {weight: eye}}\n"),
    Code("NS209", "dirac-not-identity", "warning",
         "dirac where the layer cannot be an identity.",
         "Flags dirac when out/groups differs from in/groups, stride is above 1, the kernel is even, or the "
         "padding changes the size (with dilation d, size-preserving padding is d*(k-1)/2).",
         "The point of dirac is an exact identity at init; otherwise channels are dropped or zero, or the output "
         "is shifted or subsampled.",
         "- conv2d: {out: 16, kernel: 4, padding: same, init: {weight: dirac}}\n",
         "- conv2d: {out: 16, kernel: 3, padding: same, init: {weight: dirac}}\n"),
    Code("NS210", "needs-fans", "error",
         "An initializer that needs fans or a matrix on a 1-D tensor.",
         "xavier, kaiming, orthogonal, sparse, variance_scaling and the Keras glorot/he/lecun family need a weight "
         "with at least 2 dimensions; biases, gamma and beta have one. It cannot be waived: the model could not be "
         "built.",
         "PyTorch raises \"Fan in and fan out can not be computed for tensor with fewer than 2 dimensions\"; Keras "
         "silently uses (n, n), so the two targets would disagree.",
         "- linear: {out: 10, init: {bias: xavier_uniform}}\n",
         "- linear: {out: 10, init: {bias: zeros}}\n"),
    Code("NS211", "bad-initializer-argument", "error",
         "Impossible initializer arguments.",
         "std or gain not positive, low >= high, trunc bounds that exclude the mean, sparsity outside [0, 1), an "
         "unknown nonlinearity or mode, `values` of the wrong shape, `log_prior` counts of the wrong length or not "
         "positive, `log_prior` on anything but a bias, `sparse` on a tensor that is not 2-D. It cannot be waived: "
         "the model could not be built.",
         "The framework would raise, or silently produce a degenerate tensor.",
         "- linear: {out: 10, init: {weight: {normal: {std: 0}}}}\n",
         "- linear: {out: 10, init: {weight: {normal: {std: 0.02}}}}\n"),
    Code("NS212", "unused-default", "warning",
         "A model-level `init` entry matches no tensor.",
         "Reports defaults like `init: {conv2d: ...}` in a model without conv2d layers, or a role default that every "
         "tensor overrides.",
         "A default that applies nowhere is usually a typo or a leftover, and the reader assumes it is in force.",
         "init:\n  conv2d: {weight: dirac}\nlayers:\n  - linear: {out: 10}\n",
         "init:\n  linear: {weight: xavier_uniform}\nlayers:\n  - linear: {out: 10}\n"),
    Code("NS213", "unused-waiver", "warning",
         "An `allow` waiver that waives nothing, or that names an unknown code or one that cannot be waived.",
         "Reports each `allow` entry whose rule did not fire on any layer it covers (a waiver on a block call or a "
         "residual covers every layer inside it). Only NS201-NS205, NS207, NS209 and NS214-NS217 can be waived: the other codes "
         "describe a model that could not be built (NS206, NS208, NS210, NS211) or a problem of the spec itself, so "
         "a waiver of them is reported too.",
         "Stale waivers hide the next real problem and mislead reviewers.",
         "- linear: {out: 10, allow: {NS201: \"zero head\"}}\n",
         "- linear: {out: 10}\n"),
    Code("NS214", "recurrent-input-cut", "error",
         "Zero weight_ih and zero weight_hh in one layer and direction of an lstm or gru.",
         "Flags an `lstm` or `gru` whose input weights `weight_ih` and recurrent weights `weight_hh` of one layer "
         "and direction are both zero (zeros, constant 0, or chunks of zeros), by role or through `init.paths`; it "
         "names the first such layer and direction. `eye` or `orthogonal` on weight_hh (IRNN, Keras) and a forget "
         "bias of one through `chunks` are not affected.",
         "Every gate is then its bias alone: the hidden state starts at zero and moves the same way for every input "
         "sequence, so the layer's output at init is one fixed value whatever the input (`nnspec probe` shows its "
         "output identical across the batch), and its hidden units differ only by their biases.",
         "- lstm: {hidden: 64, init: {weight_ih: zeros, weight_hh: zeros}}\n",
         "- lstm: {hidden: 64, init: {weight_ih: glorot_uniform, weight_hh: orthogonal}}\n"),
    Code("NS215", "recurrent-constant-input", "error",
         "A constant weight_ih (one value per gate, or for all) on an lstm or gru.",
         "Flags `weight_ih` of an `lstm` or `gru` initialised with zeros, ones or constant, or with `chunks` whose "
         "parts are all constants (a value per gate), in any layer and direction, unless weight_hh is zero there "
         "too (NS214). Constants per gate belong on the biases (Keras's forget bias of one).",
         "Every hidden unit of a gate then reads the input through identical weights: the units start as copies "
         "of one another, told apart only by their biases and by what weight_hh mixes in, and the layer starts "
         "with the input capacity of a single unit per gate (`nnspec probe` shows one distinct input-weight row "
         "per gate).",
         "- gru: {hidden: 32, init: {weight_ih: {constant: 0.1}}}\n",
         "- gru: {hidden: 32, init: {weight_ih: glorot_uniform}}\n"),
    Code("NS216", "constant-attention-weight", "error",
         "A constant query, key or value part of an attention's in_weight, or a constant out_weight on a hidden "
         "attention.",
         "Reads the rows of `in_weight` (query, key and value stacked, [3D, D]) part by part, through `chunks`, "
         "and flags each part that starts at one constant (zeros, ones, constant; a query and key that are both "
         "zero with a zero query bias are NS217 instead). Also flags a constant `out_weight` unless the attention "
         "is the output head or the last layer with tensors of a residual branch or shortcut (zero-init "
         "residual: tensor-free layers such as dropout after it do not move the end).",
         "With a constant part every unit of it is the same multiple of the sum of the input, plus its bias: the "
         "units start identical, as NS201 says of a linear layer. A constant query or key lets each head's "
         "attention pattern see the input through one number per position, and when both are constant (with "
         "uniform biases) that lasts: within a head the query units get identical updates, and so do the key "
         "units, forever. A constant value makes each head repeat one number per position across its units; all three constant (with uniform biases) make every "
         "head compute the same attention and the same output. A random `out_weight` pulls the units apart after "
         "the first step, but the layer starts with the capacity of one unit per part. A constant `out_weight` "
         "away from a residual tail makes the output units identical (zero: the output is `out_bias` for every "
         "input).",
         "input: {shape: [16, 64], layout: tokens}\nlayers:\n  - attention: {heads: 4, init: {in_weight: {constant: 0.01}}}\n",
         "input: {shape: [16, 64], layout: tokens}\nlayers:\n  - attention: {heads: 4}   # xavier_uniform, as "
         "nn.MultiheadAttention\n"),
    Code("NS217", "frozen-uniform-attention", "error",
         "An attention whose query and key weights are zero and whose query bias is zero or absent.",
         "Flags an `attention` whose `in_weight` query rows and key rows both start at zero (the whole tensor "
         "`zeros`, or `chunks` with zeros for the first two parts) while the query part of `in_bias` is zero "
         "(the default) or there is no bias. It applies at every position, a residual tail included.",
         "The query is 0 for every input, so every score is 0 and every head attends with equal weight to every "
         "position it may see (a running mean when causal): the layer is an average of its value projection. "
         "It stays so: the key is the same at every position (its bias), and the softmax's gradient sums to zero "
         "over the positions, so the query receives no gradient; the key's gradient is a multiple of the query, "
         "0. The query and key weights and biases never move, whatever the optimizer, so the model never learns "
         "where to attend.",
         "input: {shape: [16, 64], layout: tokens}\nlayers:\n  - residual: [layernorm, {attention: {heads: 4, "
         "init: {in_weight: zeros, out_weight: zeros}}}]\n",
         "input: {shape: [16, 64], layout: tokens}\nlayers:\n  - residual: [layernorm, {attention: {heads: 4, "
         "init: {out_weight: zeros}}}]\n"),
    Code("NS301", "target-unsupported", "error",
         "A construct one target cannot express.",
         "Reports a layer or argument that one of the backends cannot build with the same semantics: today, a "
         "convolution with both a stride above 1 and a dilation above 1, which Keras refuses.",
         "One spec must mean the same model on both targets.",
         "- conv2d: {out: 16, kernel: 3, stride: 2, dilation: 2, padding: 2}\n",
         "- conv2d: {out: 16, kernel: 3, dilation: 2, padding: 2}\n- maxpool2d: {kernel: 2}\n"),
]

CODES: dict[str, Code] = {c.code: c for c in _TABLE}
FAMILIES = ("NS0", "NS1", "NS2", "NS3")


def lookup(code: str) -> Code | None:
    return CODES.get(code.upper())


def render_rules_markdown() -> str:
    """docs/rules.md: the rule table and every rule's documentation, generated from this table."""
    lines = [
        "# Rules",
        "",
        ("<!-- Generated from nnspec/codes.py by nnspec.codes.render_rules_markdown(); "
         "do not edit by hand. -->"),
        "",
        "Every diagnostic nnspec reports has a stable code. `nnspec rule CODE` prints the same text.",
        "",
        "| code | name | severity | summary |",
        "|---|---|---|---|",
    ]
    lines += rules_table_rows(link="#")
    for c in _TABLE:
        lines += [
            "", f"## {c.code}", "", f"`{c.name}` ({c.severity}): {c.summary}", "",
            "### What it does", "", c.what, "",
            "### Why is this bad", "", c.why, "",
            "### Example", "", "```yaml", c.example.rstrip(), "```", "",
            "### Use instead", "", "```yaml", c.use_instead.rstrip(), "```",
        ]
    return "\n".join(lines) + "\n"


def rules_table_rows(link: str) -> list[str]:
    """Rows of the rule table; each code links to `link` + its anchor (in docs/rules.md)."""
    return [f"| [{c.code}]({link}{c.code.lower()}) | {c.name} | {c.severity} | {_cell(c.summary)} |" for c in _TABLE]


def render_readme_rules_table() -> str:
    """The rule table of the README (kept current by a test)."""
    rows = ["| code | name | severity | summary |", "|---|---|---|---|"] + rules_table_rows("docs/rules.md#")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
