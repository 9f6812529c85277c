"""Mutation fuzzing of `nnspec.check`: any input gets located diagnostics, never a traceback, fast.

Seeds are the examples, every YAML fixture under tests/fixtures (the fuzz regressions included) and
a few specs from `spec_generator`. Each case applies one to four mutations to a seed: delete,
duplicate, reorder and move lines; swap a token for a number, a null, a huge value, a string, a
YAML tag, an anchor or an alias; add merge keys, deep nesting and huge `repeat`s; splice lines of
another seed; flip, insert and delete bytes; break indentation; truncate; write integers in other radixes
and beyond the digit limit; put huge, tiny and float32-edge floats in layer and initializer arguments;
put control characters in comments, names, keys and waiver reasons; pass list and number arguments
through `repeat`; chain blocks that call each other (cycles included).

Every case must give a list of diagnostics, each with a known code and severity, and a line and
column >= 1 that lie in the file; `check` must not raise, must not report an internal error, and
must finish within a second (`LIMIT_S`).

    python tests/fuzz_mutations.py --cases 20000 --seconds 600 [--seed N] [--save]
    python -m tests.fuzz_mutations --cases 2000

`--save` keeps every failing input in tests/fixtures/fuzz/, which tests/test_fuzz.py replays.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REGRESSIONS = HERE / "fixtures" / "fuzz"
LIMIT_S = 1.0
HANG_S = 20.0  # a case still running after this long is stopped and reported
MEMORY_LIMIT = 4 << 30  # the command's address-space limit: a memory bomb becomes a MemoryError, not a dead machine

if str(HERE) not in sys.path:  # `python -m tests.fuzz_mutations` from the repository root
    sys.path.insert(0, str(HERE))


# -- seeds -------------------------------------------------------------------------------------------------

def seeds(generated: int = 12) -> list[tuple[str, bytes]]:
    """(name, content) of every seed file, sorted, plus `generated` random valid specs."""
    out = []
    for pattern in ("examples/*.yaml", "tests/fixtures/**/*.yaml"):
        for path in sorted(ROOT.glob(pattern)):
            out.append((str(path.relative_to(ROOT)), path.read_bytes()))
    if generated:
        from spec_generator import random_spec_text

        out += [(f"generated:{i}", random_spec_text(i).encode()) for i in range(generated)]
    return out


# -- mutations ---------------------------------------------------------------------------------------------

HUGE = [b"1e308", b"-1e308", b"1e999", str(10**30).encode(), b"99999999", b"4294967297", b"9" * 400,
        b"0x7fffffffffffffff", b"-99999999"]
NUMBERS = [b"0", b"-1", b"1", b"2", b"3", b"2.5", b"-0.0", b"1e-4", b"0.0001", b"0o17", b"0x1f", b".inf",
           b"-.inf", b".nan", b"+1", b"1_000"]
NULLS = [b"null", b"~", b"", b"Null", b"NULL"]
STRINGS = [b"'3'", b'"x"', b"yes", b"no", b"on", b"true", b"false", b"[]", b"{}", b"[1, 2]", b"{a: 1}",
           b"[[1, 2], [3]]", b"$x", b"$", b"$a0", b"'$a0'", b"relu", b"same", b"valid", b"required", b"forward",
           b"__init__", b"x; import os", b"'a\\nb'", "ｆｏｒｗａｒｄ".encode(), b"residual", b"zeros", b"dirac",
           b"eye", b"'\"\"\"'", b"\"\\x00\"", b"|\n  block", b">-\n  folded", b"- item", b"? complex", b"!"]
TAGS = [b"!!python/object:os.system ", b"!!python/object/apply:os.system ", b"!!python/name:os.system ",
        b"!foo ", b"!!str ", b"!!int ", b"!!float ", b"!!bool ", b"!!null ", b"!!binary ", b"!!set ",
        b"!!omap ", b"!!timestamp ", b"!!map ", b"!!seq ", b"!<tag:yaml.org,2002:python/none> ", b"! ",
        b"!!merge "]
TOKEN = re.compile(rb"[A-Za-z0-9_.$~+\-]+")
INSERT_BYTES = [b"\x00", b"\xff", b"\xfe", b"\t", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\x1b", b"\x85",
                "\u2028".encode(), "\ufeff".encode(), b"\xc3", b"\xe2\x80", b":", b"-", b"#", b"&", b"*", b"[",
                b"{", b"}", b"]", b",", b"'", b'"', b"|", b">", b"%YAML 1.1\n---\n", b"\n---\n", b"\n...\n"]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def _tokens(data: bytes) -> list[re.Match]:
    return list(TOKEN.finditer(data))


def _replace_token(rng: random.Random, data: bytes, new: bytes) -> bytes:
    tokens = _tokens(data)
    if not tokens:
        return data + new
    m = rng.choice(tokens)
    return data[:m.start()] + new + data[m.end():]


def delete_lines(rng, data, others):
    lines = _lines(data)
    i = rng.randrange(len(lines))
    del lines[i:i + rng.choice([1, 1, 1, 2, 5])]
    return _join(lines)


def duplicate_line(rng, data, others):
    lines = _lines(data)
    i = rng.randrange(len(lines))
    j = rng.choice([i, i, rng.randrange(len(lines))])
    lines.insert(j, lines[i])
    return _join(lines)


def swap_lines(rng, data, others):
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return _join(lines)


def shuffle_lines(rng, data, others):
    lines = _lines(data)
    i = rng.randrange(len(lines))
    chunk = lines[i:i + rng.randint(2, 6)]
    rng.shuffle(chunk)
    lines[i:i + len(chunk)] = chunk
    return _join(lines)


def number(rng, data, others):
    return _replace_token(rng, data, rng.choice(NUMBERS))


def huge(rng, data, others):
    return _replace_token(rng, data, rng.choice(HUGE))


def null(rng, data, others):
    return _replace_token(rng, data, rng.choice(NULLS))


def string(rng, data, others):
    return _replace_token(rng, data, rng.choice(STRINGS))


def tag(rng, data, others):
    tokens = _tokens(data)
    if not tokens:
        return rng.choice(TAGS) + data
    m = rng.choice(tokens)
    return data[:m.start()] + rng.choice(TAGS) + data[m.start():]


def anchor_alias(rng, data, others):
    """An anchor on one value and aliases of it elsewhere (before or after it, or of an undefined one)."""
    tokens = _tokens(data)
    if len(tokens) < 2:
        return data + b"\nx: &a [*a]\n"
    name = rng.choice([b"a", b"x", b"anchor"])
    a, b = sorted(rng.sample(tokens, 2), key=lambda m: m.start())
    if rng.random() < 0.3:
        a, b = b, a
    edits = [(a.start(), a.start(), b"&" + name + b" "), (b.start(), b.end(), b"*" + name)]
    if rng.random() < 0.3:
        c = rng.choice(tokens)
        if c.start() not in (a.start(), b.start()):
            edits.append((c.start(), c.end(), b"*" + rng.choice([name, b"undefined"])))
    out = data
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        if start <= len(out):
            out = out[:start] + new + out[end:]
    return out


def merge_key(rng, data, others):
    lines = _lines(data)
    i = rng.randrange(len(lines))
    indent = re.match(rb"[ \-]*", lines[i]).group(0).replace(b"-", b" ")
    lines.insert(i, indent + rng.choice([b"<<: *a", b"<<: {out: 3}", b"<<: [*a, *b]", b"<<: 5", b"<<: [1]",
                                         b"'<<': 1"]))
    return _join(lines)


def nest(rng, data, others):
    depth = rng.choice([3, 30, 70, 200, 2000])
    open_, close = rng.choice([(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")])
    if open_ == b"- ":
        block = b"\n".join(b"  " * d + b"- " for d in range(depth)) + b"x"
        return data + b"\nlayers:\n" + block + b"\n"
    return _replace_token(rng, data, open_ * depth + b"1" + close * depth)


def repeat_bomb(rng, data, others):
    """A huge `repeat` (or input dimension, or width) where one fits."""
    for key in (b"repeat: ", b"out: ", b"num: ", b"dim: ", b"input: [", b"kernel: "):
        spots = [m.end() for m in re.finditer(re.escape(key), data)]
        if spots and rng.random() < 0.5:
            at = rng.choice(spots)
            m = re.match(rb"[0-9$a-z_]*", data[at:])
            return data[:at] + rng.choice(HUGE[3:] + [b"100000", b"5000", b"999"]) + data[at + m.end():]
    return data.replace(b"- relu", b"- relu: {repeat: " + rng.choice([b"1000000", b"20000"]) + b"}", 1)


def _vocabulary() -> list[bytes]:
    from nnspec.codes import CODES
    from nnspec.vocabulary.initializers import REGISTRY
    from nnspec.vocabulary.kinds import KINDS, ROLES

    keys = ("residual branch shortcut name repeat init allow args layers blocks input shape dtype seed nnspec "
            "description out kernel stride padding dilation groups bias eps momentum num dim slope alpha "
            "approximate axis p value gain low high mean std a mode nonlinearity sparsity scale distribution "
            "values counts int64 float32 same valid required fan_in fan_out fan_avg uniform truncated_normal none "
            "add multiply concat branches channels tokens features map layout keep_dims start stop size parts "
            "over last output_padding ceil_mode per_channel $a*2 ($k-1)//2 $w/0")
    keys += " heads causal length in_weight in_bias out_weight out_bias token"  # attention and the token kinds
    keys += (" hidden bidirectional sequence weight_ih weight_hh bias_ih bias_hh weight_ih_l0 weight_hh_l1_reverse"
             " lstm_1.weight_hh_l0")  # the recurrent kinds
    keys += " offset [[0,1],[0,1]] [1,[2,3]]"  # pad and rescale
    words = list(KINDS) + list(REGISTRY) + list(ROLES) + list(CODES) + keys.split()
    return [w.encode() for w in words]


VOCABULARY: list[bytes] = []


def swap_word(rng, data, others):
    """A known word (kind, initializer, role, key, code) becomes another: semantics, not syntax, go wrong."""
    if not VOCABULARY:
        VOCABULARY.extend(_vocabulary())
    known = set(VOCABULARY)
    tokens = [m for m in _tokens(data) if m.group(0) in known]
    if not tokens:
        return _replace_token(rng, data, rng.choice(VOCABULARY))
    m = rng.choice(tokens)
    return data[:m.start()] + rng.choice(VOCABULARY) + data[m.end():]


def splice(rng, data, others):
    other = _lines(rng.choice(others))
    lines = _lines(data)
    i = rng.randrange(len(other))
    chunk = other[i:i + rng.randint(1, 8)]
    j = rng.randrange(len(lines) + 1)
    lines[j:j] = chunk
    return _join(lines)


def flip_bytes(rng, data, others):
    if not data:
        return bytes([rng.randrange(256)])
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out))
        out[i] = out[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(out)


def insert_bytes(rng, data, others):
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(INSERT_BYTES) + data[i:]


def delete_bytes(rng, data, others):
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 8):]


def break_indent(rng, data, others):
    lines = _lines(data)
    i = rng.randrange(len(lines))
    line = lines[i]
    stripped = line.lstrip(b" ")
    indent = len(line) - len(stripped)
    new = rng.choice([max(0, indent - 1), max(0, indent - 2), indent + 1, indent + 2, indent + 4, 0])
    prefix = b"\t" if rng.random() < 0.15 else b" " * new
    lines[i] = prefix + stripped
    return _join(lines)


def truncate(rng, data, others):
    return data[:rng.randrange(len(data) + 1)]


RADIX = [b"0x0", b"0x10", b"0o17", b"0x7fffffff", b"0x80000000", b"0x7fffffffffffffff", b"0x8000000000000000",
         b"0o7777777777777777777777", b"0x" + b"f" * 40, b"0x" + b"f" * 3570, b"0x" + b"f" * 3600,
         b"0o" + b"7" * 4790, b"0o" + b"7" * 4800, b"9" * 4300, b"9" * 4301, b"+" + b"0" * 5000 + b"1", b"0x"]


def radix_integer(rng, data, others):
    """A number becomes an integer in another radix, small, at a framework's bound, or beyond the digit limit."""
    spots = [m for m in re.finditer(rb"(?<![\w.])[0-9]+(?![\w.])", data)]
    new = rng.choice(RADIX)
    if not spots:
        return _replace_token(rng, data, new)
    m = rng.choice(spots)
    return data[:m.start()] + new + data[m.end():]


FLOAT_KEYS = (b"slope", b"alpha", b"eps", b"momentum", b"p", b"std", b"mean", b"gain", b"low", b"high", b"value",
              b"scale", b"a", b"sparsity")
HUGE_FLOATS = [b"1e39", b"3.4e38", b"3.4028235e38", b"3.41e38", b"-3.5e38", b"1.7976931348623157e308", b"1e-50",
               b"1e-45", b"5e-324", b"1.1754943508222875e-38", b"1.0e-38", b"-0.0", b"1e308", b"3.0e37"]
FLOAT_INITS = [b"{normal: {std: %s}}", b"{normal: {mean: %s, std: 1.0}}", b"{uniform: {low: -%s, high: %s}}",
               b"{trunc_normal: {std: %s}}", b"{xavier_uniform: %s}", b"{orthogonal: %s}", b"{eye: %s}",
               b"{constant: %s}", b"{sparse: {sparsity: 0.5, std: %s}}", b"{kaiming_normal: {a: %s}}",
               b"{variance_scaling: {scale: %s}}", b"{values: [%s]}"]


def huge_float(rng, data, others):
    """A float argument of a layer or an initializer becomes huge, tiny or at float32's edge."""
    value = rng.choice(HUGE_FLOATS)
    spots = [m for m in re.finditer(rb"\b(" + b"|".join(FLOAT_KEYS) + rb"): *([-+0-9.e]+)", data)]
    if spots and rng.random() < 0.5:
        m = rng.choice(spots)
        return data[:m.start(2)] + value + data[m.end(2):]
    layers = [m for m in re.finditer(rb"(linear|conv[123]d): *\{out: *[0-9]+", data)]
    if layers and rng.random() < 0.6:
        m = rng.choice(layers)
        init = rng.choice(FLOAT_INITS).replace(b"%s", value.lstrip(b"-"))
        return data[:m.end()] + b", init: {" + rng.choice([b"weight", b"bias"]) + b": " + init + b"}" + data[m.end():]
    kind = rng.choice([b"leaky_relu: {slope: %s}", b"elu: {alpha: %s}", b"layernorm: {eps: %s}",
                       b"batchnorm: {eps: %s, momentum: 0.1}", b"dropout: {p: %s}"])
    return data.replace(b"layers:\n", b"layers:\n  - " + kind.replace(b"%s", value) + b"\n", 1)


CONTROL = [b"\x1b]0;title\x07", b"\x1b[2J", b"\x07", b"\x08", b"\x7f", b"\xc2\x85", b"\xc2\x9b", "\u202e".encode(),
           "\ufffe".encode(), "\uffff".encode(), b"\r", "\u2028".encode(), b"\x00"]
ESCAPED = [b'"\\x1b[2J"', b'"\\a"', b'"a\\nb"', b'"\\uFFFE"', b'"\\u202e"', b'"\\x7f"', b'"\\N"',
           b'"\\n::error file=x.py::forged"', b'"\\U0001F600"', b'"\\L"']


def control_text(rng, data, others):
    """Control characters in text: raw in a comment or a value, or escaped in a double-quoted name, key, reason."""
    lines = _lines(data)
    i = rng.randrange(len(lines))
    choice = rng.random()
    if choice < 0.35:
        lines[i] = lines[i] + b"  # " + rng.choice(CONTROL) + b" comment"
    elif choice < 0.7:
        return _replace_token(rng, data, rng.choice(ESCAPED))
    else:
        reason = rng.choice(ESCAPED)
        m = re.search(rb"(linear|conv[123]d): *\{out: *[0-9]+", data)
        if m:
            return data[:m.end()] + b", init: {weight: zeros}, allow: {NS201: " + reason + b"}" + data[m.end():]
        lines[i] = lines[i] + rng.choice(CONTROL)
    return _join(lines)


ARG_LENGTHS = [1, 10, 1000, 20000]  # the values a block argument holds, expanded through `repeat`
ARG_REPEATS = [1, 10, 100]
CHAIN_DEPTHS = [2, 10, 40, 300]  # blocks calling the next, an argument passed down the chain


def _add_blocks(data: bytes, blocks: bytes, call: bytes) -> bytes:
    if b"\nblocks:\n" in data:
        data = data.replace(b"\nblocks:\n", b"\nblocks:\n" + blocks, 1)
    else:
        data = data + b"\nblocks:\n" + blocks
    if b"\nlayers:\n" in data:
        return data.replace(b"\nlayers:\n", b"\nlayers:\n" + call, 1)
    return data + b"\nlayers:\n" + call


def repeat_args(rng, data, others):
    """A block with a list (or number) argument, called under `repeat`, its default or value reaching a layer."""
    n = rng.choice(ARG_LENGTHS)
    values = b"[" + b", ".join(rng.choice([b"1", b"0.5", b"1e39", b"0x10"]) for _ in range(n)) + b"]"
    blocks = (b"  rb_:\n    args: {v: " + values + b", w: " + rng.choice([b"3", b"0x7fffffff", b"1e39", b"null"])
              + b"}\n    layers:\n      - linear: {out: $w, init: {bias: {values: $v}}}\n")
    call = b"  - rb_: {repeat: " + str(rng.choice(ARG_REPEATS)).encode() + (b", w: 2" if rng.random() < 0.5 else b"") \
        + b"}\n"
    return _add_blocks(data, blocks, call)


def block_chain(rng, data, others):
    """Blocks that each call the next, passing an argument down, sometimes back to the first (a cycle)."""
    depth = rng.choice(CHAIN_DEPTHS)
    lines = []
    for i in range(depth):
        callee = (b"  - ch_" + str(i + 1).encode() + b": {x: $x}") if i + 1 < depth else b"  - linear: {out: $x}"
        if i + 1 == depth and rng.random() < 0.2:
            callee = b"  - ch_0: {x: $x}"
        lines.append(b"  ch_" + str(i).encode() + b":\n    args: {x: required}\n    layers:\n    " + callee + b"\n")
    value = rng.choice([b"4", b"0x10", b"1e39", b"ch_0", b"[1, 2]"])
    return _add_blocks(data, b"".join(lines), b"  - ch_0: {x: " + value + b"}\n")


MUTATIONS = {f.__name__: f for f in (
    delete_lines, duplicate_line, swap_lines, shuffle_lines, number, huge, null, string, tag, anchor_alias,
    merge_key, nest, repeat_bomb, swap_word, splice, flip_bytes, insert_bytes, delete_bytes, break_indent, truncate,
    radix_integer, huge_float, control_text, repeat_args, block_chain)}


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[bytes, list[str]]:
    applied = []
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        name = rng.choice(list(MUTATIONS))
        data = MUTATIONS[name](rng, data, others)
        applied.append(name)
    return data, applied


# -- the oracle --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    seconds: float
    problems: list = field(default_factory=list)  # what is wrong: crash, bad location, slow

    @property
    def ok(self) -> bool:
        return not self.problems


def check_case(data: bytes, path: str, limit_s: float = LIMIT_S) -> Outcome:
    """Run `nnspec.check` on `data` written at `path`; report every broken promise."""
    import nnspec
    from nnspec.codes import CODES
    from nnspec.diagnostics import SEVERITIES, Diagnostic

    with open(path, "wb") as fh:
        fh.write(data)
    start = time.perf_counter()
    try:
        with _deadline(HANG_S):
            diags = nnspec.check(path)
    except Hung:
        return Outcome(time.perf_counter() - start, [f"slow: hung for more than {HANG_S} s (stopped)"])
    except BaseException as exc:  # the fuzzer reports whatever escapes
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Outcome(time.perf_counter() - start, [f"check raised {type(exc).__name__}: {exc}\n"
                                                     + traceback.format_exc()])
    seconds = time.perf_counter() - start
    problems = []
    if seconds > limit_s:  # time it again: one slow run on a busy machine is not a slow input
        again = time.perf_counter()
        nnspec.check(path)
        seconds = min(seconds, time.perf_counter() - again)
        if seconds > limit_s:
            problems.append(f"slow: {seconds:.2f} s (the limit is {limit_s} s)")
    if not isinstance(diags, list):
        return Outcome(seconds, [f"check returned {type(diags).__name__}, not a list"])
    # YAML (and Python's splitlines) also break lines at a lone CR, NEL, LS and PS
    n_lines = max(data.count(b"\n"), len(data.decode("utf-8", "replace").splitlines())) + 1
    for d in diags:
        if not isinstance(d, Diagnostic):
            problems.append(f"not a Diagnostic: {d!r}")
            continue
        if "internal error" in d.message:
            problems.append(f"crash: {d.message}\n{_traceback(data, path)}")
        if d.code not in CODES or d.severity not in SEVERITIES:
            problems.append(f"unknown code or severity: {d.code} {d.severity}")
        if not (isinstance(d.line, int) and isinstance(d.column, int)) or d.line < 1 or d.column < 1:
            problems.append(f"no location: line {d.line!r}, column {d.column!r}: {d.message}")
        elif d.line > n_lines:
            problems.append(f"line {d.line} is past the end of the file ({n_lines} lines): {d.message}")
        if d.file != path:
            problems.append(f"names another file: {d.file!r}")
    problems.extend(_rendering_problems(diags, path))
    return Outcome(seconds, problems)


_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _rendering_problems(diags: list, path: str) -> list[str]:
    """What people and CI read: the full and concise text hold no raw control character (a terminal or a CI
    log would act on it) and no line that starts a workflow command; junit is well-formed XML."""
    import xml.dom.minidom

    from nnspec import formats

    problems = []
    for name, text in (("full", formats.render_full(diags)), ("concise", formats.render_concise(diags)),
                       ("github", formats.render_github(diags))):
        bad = _RAW_CONTROL.search(text)
        if bad:
            problems.append(f"render: the {name} format holds the raw control character U+{ord(bad.group(0)):04X}")
        if name != "github" and any(line.startswith("::") for line in text.splitlines()):
            problems.append(f"render: a line of the {name} format starts a workflow command")
    try:
        xml.dom.minidom.parseString(formats.render_junit(diags, [path]).encode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        problems.append(f"render: junit is not well-formed XML: {exc}")
    return problems


class Hung(BaseException):
    """Raised by the deadline's alarm; a BaseException, so that `check`'s own `except Exception` lets it by."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Stop a case that hangs (where SIGALRM exists and this is the main thread): a hang is a finding too."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def alarm(signum, frame):
        raise Hung

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _traceback(data: bytes, path: str) -> str:
    from nnspec.compiler.pipeline import analyse_bytes

    try:
        analyse_bytes(data, path)
    except Exception:  # noqa: BLE001 - whatever it was, show it
        return traceback.format_exc()
    return ""


# -- the run -----------------------------------------------------------------------------------------------

@dataclass
class Report:
    cases: int = 0
    failures: list = field(default_factory=list)  # (case, seed name, mutations, data, problems)
    slowest: tuple = (0.0, "", [])
    seconds: float = 0.0

    def summary(self) -> str:
        crashes = sum(1 for f in self.failures if any(not p.startswith("slow") for p in f[4]))
        slow = sum(1 for f in self.failures if any(p.startswith("slow") for p in f[4]))
        t, name, applied = self.slowest
        return (f"{self.cases} cases in {self.seconds:.1f} s: {crashes} crash(es) or bad diagnostics, {slow} slow; "
                f"slowest case {t * 1000:.1f} ms ({name}: {', '.join(applied)})")


def run(cases: int, seed: int = 0, seconds: float | None = None, save: bool = False, generated: int = 12,
        verbose: bool = False, limit_s: float = LIMIT_S) -> Report:
    rng = random.Random(seed)
    corpus = seeds(generated)
    contents = [content for _, content in corpus]
    report = Report()
    saved: set = set()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnspec-fuzz-") as tmp:
        path = os.path.join(tmp, "mutant.yaml")
        for _, content in corpus:  # warm up (imports, pydantic's schemas) outside the timed cases
            check_case(content, path, limit_s=float("inf"))
        for case in range(cases):
            if seconds is not None and time.perf_counter() - started > seconds:
                break
            name, content = corpus[rng.randrange(len(corpus))]
            data, applied = mutate(rng, content, contents)
            outcome = check_case(data, path, limit_s)
            report.cases += 1
            if outcome.seconds > report.slowest[0]:
                report.slowest = (outcome.seconds, name, applied)
            if not outcome.ok:
                report.failures.append((case, name, applied, data, outcome.problems))
                if verbose:
                    print(f"case {case} ({name}: {', '.join(applied)}):\n  " + "\n  ".join(outcome.problems),
                          file=sys.stderr)
                kind = signature(outcome.problems)
                if save and kind not in saved:  # one input per kind of failure: mutants of a saved input
                    saved.add(kind)             # would fail alike until it is fixed
                    print(f"  saved {save_regression(data)}", file=sys.stderr)
    report.seconds = time.perf_counter() - started
    return report


def signature(problems: list[str]) -> tuple:
    """What kind of failure this is: each problem's first line, numbers left out."""
    return tuple(sorted({re.sub(r"[0-9.]+", "#", p.splitlines()[0]) for p in problems}))


def save_regression(data: bytes) -> Path:
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    path = REGRESSIONS / f"case_{hashlib.sha1(data).hexdigest()[:12]}.yaml"
    path.write_bytes(data)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generated", type=int, default=12, help="random valid specs added to the seeds")
    parser.add_argument("--save", action="store_true", help=f"keep failing inputs in {REGRESSIONS}")
    parser.add_argument("--limit", type=float, default=LIMIT_S, help="seconds a case may take")
    args = parser.parse_args(argv)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    report = run(args.cases, args.seed, args.seconds, args.save, args.generated, verbose=True, limit_s=args.limit)
    print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
