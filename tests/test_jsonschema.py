"""The shipped JSON Schema: current, valid Draft 2020-12, accepts every example, rejects typos."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from nnspec.schema.jsonschema import schema_text
from nnspec.schema.loader import load_document

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../nnspec.schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((ROOT / "nnspec.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(load_document("<t>", text).data)]


def test_shipped_schema_is_current():
    assert (ROOT / "nnspec.schema.json").read_text() == schema_text(), (
        "regenerate it: .venv/bin/nnspec schema > nnspec.schema.json")


def test_there_are_examples():
    names = {p.name for p in EXAMPLES}
    assert {"mlp.yaml", "small_cnn.yaml", "resnet_blocks.yaml", "cifar_resnet.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_starts_with_the_modeline(path):
    assert path.read_text().splitlines()[0] == MODELINE
    assert (path.parent / "../nnspec.schema.json").resolve() == (ROOT / "nnspec.schema.json").resolve()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_schema(validator, path):
    assert errors(validator, path.read_text()) == []


BLOCKS_WITH_ARGS = """nnspec: 1
name: m
input: [3, 16, 16]
init:
  weight: {kaiming_normal: {mode: fan_out}}
  conv2d: {bias: zeros}
blocks:
  unit:
    args: {k: required, ch: 8, n: 1, use_bias: true, p: 0.1, mode: fan_in}
    layers:
      - conv2d: {out: $ch, kernel: [$k, $k], padding: $k, bias: $use_bias, repeat: $n,
                 init: {weight: {kaiming_uniform: {mode: $mode}}}}
      - dropout: {p: $p}
      - residual:
          branch: [{conv2d: {out: $ch, kernel: 1, name: proj}}]
          repeat: $n
layers:
  - unit: {k: 3, repeat: 2, name: first, init: {weight: xavier_uniform}, allow: {NS201: "reason"}}
  - unit: {k: 1, ch: 4, mode: fan_out}
  - unit: null
  - relu
  - residual: [relu, identity]
"""


def test_arg_references_and_block_calls_are_accepted(validator):
    assert errors(validator, BLOCKS_WITH_ARGS) == []


@pytest.mark.parametrize("layers", [
    "  - conv2d: {out: 8, kernel: 3, stirde: 2}\n",   # typo in an argument
    "  - linear: {out: '8'}\n",                       # numeric string
    "  - linear: {out: 0}\n",                         # out of range
    "  - linear: {out: 4, bias: 1}\n",
    "  - relu: {name: 'a b'}\n",                      # not an identifier
    "  - dropout: {p: 0.1, rate: 0.2}\n",
    "  - linear: {out: 4, init: {weight: xavier_unifrom}}\n",
    "  - linear: {out: 4, init: {wieght: zeros}}\n",
    "  - linear: {out: 4, allow: {NS201: ''}}\n",
    "  - residual: {branch: [relu], shortcu: [relu]}\n",
    "  - {linear: {out: 4}, relu: null}\n",
])
def test_typos_and_bad_values_are_rejected(validator, layers):
    assert errors(validator, "nnspec: 1\nname: m\ninput: [3, 16, 16]\nlayers:\n" + layers)


@pytest.mark.parametrize("text", [
    "nnspec: 1\nname: m\ninput: [16]\nlayer:\n  - relu\n",
    "nnspec: 1\nname: m\ninput: [16]\nlayers:\n  - relu\nseeed: 1\n",
    "nnspec: 2\nname: m\ninput: [16]\nlayers:\n  - relu\n",
    "nnspec: 1\nname: m\ninput: {shape: [16], dtyp: int64}\nlayers:\n  - relu\n",
    "nnspec: 1\nname: m\ninput: [16]\ninit: {wieght: zeros}\nlayers:\n  - relu\n",
    "nnspec: 1\nname: m\ninput: [16]\nblocks: {b: {layers: [relu], arg: {}}}\nlayers:\n  - b\n",
    "nnspec: 1\ninput: [16]\nlayers:\n  - relu\n",
])
def test_top_level_typos_are_rejected(validator, text):
    assert errors(validator, text)
