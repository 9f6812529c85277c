"""The shipped JSON Schema: current, valid draft-07, accepts every example, rejects typos."""

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
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(load_document("<t>", text).data)]


def test_shipped_schema_is_current():
    """The copy at the root (for `$schema=../nnspec.schema.json` in a checkout) and the one in the package."""
    for path in (ROOT / "nnspec.schema.json", ROOT / "nnspec" / "nnspec.schema.json"):
        assert path.read_text() == schema_text(), (
            f"regenerate it: nnspec schema -o {path.relative_to(ROOT)}")


def test_schema_is_package_data():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["nnspec"]
    assert "nnspec.schema.json" in data


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


# -- editor help: descriptions, enums, defaults, examples; errors that name the key -----------------------


def walk_properties(schema, path=""):
    if isinstance(schema, dict):
        for key, value in schema.get("properties", {}).items():
            yield f"{path}/{key}", value
        for key, value in schema.items():
            yield from walk_properties(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from walk_properties(value, f"{path}/{i}")


def test_every_property_has_a_description(validator):
    schema = validator.schema
    props = list(walk_properties(schema))
    assert len(props) > 250
    defs = schema["definitions"]
    missing = [path for path, value in props if not value.get("description")
               and not defs.get(value.get("$ref", "#/definitions/-").rsplit("/", 1)[1], {}).get("description")]
    assert missing == []
    descriptions = {value["description"] for _, value in props}
    assert len(descriptions) > 150  # not one text repeated


def test_kinds_initializers_and_rules_carry_their_registry_text(validator):
    from nnspec.codes import CODES
    from nnspec.vocabulary.initializers import REGISTRY
    from nnspec.vocabulary.kinds import KINDS

    defs = validator.schema["definitions"]
    for name, kind in KINDS.items():
        assert kind.summary in defs["Item"]["properties"][name]["description"]
    for name, init in REGISTRY.items():
        assert init.summary in defs["Init"]["properties"][name]["description"]
    for code, c in CODES.items():
        assert c.summary in defs["Allow"]["properties"][code]["description"]
    conv = defs["Item"]["properties"]["conv2d"]["properties"]
    assert conv["groups"]["default"] == 1 and "divisible" in conv["groups"]["description"]
    kaiming = defs["Init"]["properties"]["kaiming_normal"]["properties"]
    assert kaiming["mode"]["default"] == "fan_in"


def enums(schema) -> set:
    found = set()
    if isinstance(schema, dict):
        if "enum" in schema:
            found.add(tuple(schema["enum"]))
        for value in schema.values():
            found |= enums(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= enums(value)
    return found


def test_closed_sets_are_enums(validator):
    from nnspec.vocabulary.initializers import FAN_MODES, NONLINEARITIES, REGISTRY, VS_DISTRIBUTIONS, VS_MODES

    found = enums(validator.schema)
    for closed in (FAN_MODES, NONLINEARITIES, VS_MODES, VS_DISTRIBUTIONS, ("same", "valid"),
                   ("float32", "int64"), ("none", "tanh"), tuple(REGISTRY)):
        assert tuple(closed) in found, closed


def item_errors(validator, item: str):
    doc = load_document("<t>", "nnspec: 1\nname: m\ninput: [3, 16, 16]\nlayers:\n  - " + item + "\n").data
    return list(validator.iter_errors(doc))


@pytest.mark.parametrize("item, key", [
    ("conv2d: {out: 8, kernal: 3}", "kernal"),
    ("linear: {out: 8, init: {weight: {kaiming_normal: {mdoe: fan_out}}}}", "mdoe"),
    ("linear: {out: 8, init: {wieght: zeros}}", "wieght"),
    ("residual: {branch: [relu], shortcu: [relu]}", "shortcu"),
    ("dropout: {p: 0.1, rate: 0.2}", "rate"),
])
def test_misspelt_key_error_names_the_key(validator, item, key):
    errs = item_errors(validator, item)
    assert errs
    best = jsonschema.exceptions.best_match(errs)
    assert f"'{key}' was unexpected" in best.message, best.message
    assert all("is not valid under any of the given schemas" not in e.message for e in errs)


def test_top_level_misspelt_key_is_named(validator):
    doc = load_document("<t>", "nnspec: 1\nname: m\ninput: {shape: [8], dtyp: int64}\nlayers: [relu]\n").data
    assert [e.message for e in validator.iter_errors(doc)] == [
        "Additional properties are not allowed ('dtyp' was unexpected)"]


@pytest.mark.parametrize("item", [
    "linear: {out: 8, init: {weight: {kaiming_normal: {mode: fan_ot}}}}",
    "linear: {out: 8, init: {weight: {kaiming_uniform: {nonlinearity: rellu}}}}",
    "linear: {out: 8, init: {weight: {variance_scaling: {distribution: normal}}}}",
    "gelu: {approximate: tanhh}",
    "conv2d: {out: 8, kernel: 3, padding: full}",
])
def test_values_outside_closed_sets_are_rejected(validator, item):
    assert item_errors(validator, item)


@pytest.mark.parametrize("item", [
    "linear: {out: 8, init: {weight: {kaiming_normal: {mode: fan_out, nonlinearity: relu}}}}",
    "linear: {out: 8, init: {weight: {xavier_uniform: 2.0}, bias: {constant: 0.1}}}",
    "linear: {out: 8, init: {bias: {log_prior: [1, 2, 3, 2, 1, 1, 1, 1]}}}",
    "conv2d: null",  # `check` says what is missing; the schema accepts the form
])
def test_forms_are_accepted(validator, item):
    assert item_errors(validator, item) == []


INPUTS = {"conv1d": "[3, 16]", "conv2d": "[3, 16, 16]", "conv3d": "[2, 8, 8, 8]", "maxpool1d": "[3, 16]",
          "avgpool1d": "[3, 16]", "maxpool2d": "[3, 16, 16]", "avgpool2d": "[3, 16, 16]",
          "maxpool3d": "[2, 8, 8, 8]", "avgpool3d": "[2, 8, 8, 8]", "embedding": "{shape: [5], dtype: int64}",
          "to_map": "{shape: [8, 4], layout: tokens}", "conv_transpose1d": "[3, 16]", "conv_transpose3d": "[2, 4, 4, 4]",
          "class_token": "{shape: [8, 24], layout: tokens}", "position_embedding": "{shape: [8, 24], layout: tokens}",
          "attention": "{shape: [8, 24], layout: tokens}", "lstm": "{shape: [8, 24], layout: tokens}",
          "gru": "{shape: [8, 24], layout: tokens}", "rescale": "[3, 16, 16]"}


def test_every_kind_has_an_example_that_validates_and_checks(validator):
    import yaml

    from nnspec.compiler.pipeline import analyse_text
    from nnspec.vocabulary.kinds import KINDS

    items = validator.schema["definitions"]["Item"]["properties"]
    for kind in KINDS:
        (example,) = items[kind]["examples"]
        jsonschema.Draft7Validator(items[kind]).validate(example)
        item = f"{kind}: {yaml.safe_dump(example, default_flow_style=True).strip().removesuffix('...').strip()}"
        if kind == "drop_path":  # it belongs in a residual branch
            item = f"residual: [{{{item}}}]"
        text = f"nnspec: 1\nname: m\ninput: {INPUTS.get(kind, '[4, 8, 8]')}\nlayers:\n  - {item}\n"
        assert errors(validator, text) == [], kind
        spec, diags = analyse_text(text, "<example>")
        assert spec is not None and [d for d in diags if d.is_error] == [], (kind, text, diags)


def test_schema_command_writes_a_file(tmp_path, capsys):
    from nnspec.cli import main

    target = tmp_path / "s.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert target.read_text() == schema_text()
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_readme_editor_setup_matches_the_naming_convention():
    """The README's VS Code settings parse, and their glob matches `*.nnspec.yaml` files, not other YAML."""
    import fnmatch
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, re.DOTALL)]
    (settings,) = [b for b in blocks if "yaml.schemas" in b]
    ((schema_path, globs),) = settings["yaml.schemas"].items()
    assert schema_path == "./nnspec.schema.json"
    for name, expected in [("resnet.nnspec.yaml", True), ("cfg/a.nnspec.yml", True), ("compose.yaml", False)]:
        assert any(fnmatch.fnmatch(name.rsplit("/", 1)[-1], g) for g in globs) is expected, name
    assert "nnspec schema -o nnspec.schema.json" in readme and "yaml-language-server" in readme


@pytest.mark.parametrize("name", ["merges.yaml", "kinds_layouts.yaml"])
def test_graph_specs_validate(validator, name):
    assert errors(validator, (ROOT / "tests" / "fixtures" / "torch" / name).read_text()) == []


@pytest.mark.parametrize("item, key", [
    ("concat: {branches: [[], [relu]], axs: tokens}", "axs"),
    ("add: {branches: [[], [relu]], axis: tokens}", "axis"),
])
def test_misspelt_merge_keys_are_named(validator, item, key):
    assert any(key in e.message for e in item_errors(validator, item))


def test_arithmetic_in_a_block_body_validates(validator):
    text = """nnspec: 1
name: m
input: [4, 8, 8]
blocks:
  b:
    args: {w: 2, k: 3}
    layers:
      - conv2d: {out: $w * 4, kernel: $k, padding: ($k - 1) // 2}
layers:
  - b: {w: 3}
"""
    assert errors(validator, text) == []


def test_an_argument_naming_an_item_validates(validator):
    """`- $act` in a block's layers (with `act: relu` or `act: identity` in the call) is an item."""
    text = """nnspec: 1
name: m
input: [4, 8, 8]
blocks:
  b:
    args: {act: relu}
    layers:
      - conv2d: {out: 4, kernel: 3}
      - $act
layers:
  - b: {act: identity}
"""
    from nnspec.compiler.pipeline import analyse_text

    assert errors(validator, text) == []
    spec, diags = analyse_text(text, "<m>")
    assert spec is not None and diags == []
    assert errors(validator, text.replace("- $act", "- $act x")) != []
    assert errors(validator, text.replace("- $act", "- $$act")) != []


def test_a_layers_own_init_names_the_roles_only_its_kind_has(validator):
    """attention's in_weight/in_bias/out_weight/out_bias and class_token's token in the layer's own `init`;
    not on another kind, and not in a container's `init` (there they are reached by kind)."""
    head = "nnspec: 1\nname: m\ninput: {shape: [4, 8], layout: tokens}\nlayers:\n"
    good = head + ("  - class_token: {init: {token: zeros}}\n"
                   "  - attention: {heads: 2, init: {in_weight: {chunks: [zeros, xavier_uniform, xavier_uniform]}, "
                   "in_bias: zeros, out_weight: zeros, out_bias: zeros}}\n")
    assert errors(validator, good) == []
    assert errors(validator, head + "  - linear: {out: 3, init: {in_weight: zeros}}\n")
    assert errors(validator, head + "  - residual: {branch: [{attention: {heads: 2}}], init: {in_weight: zeros}}\n")
