"""`nnspec initializers [NAME]`: written from the registry the compiler uses."""

from __future__ import annotations

import pytest

from nnspec.cli import main
from nnspec.vocabulary.initializers import REGISTRY


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_lists_every_initializer_with_both_counterparts(capsys):
    code, out, _ = run(capsys, "initializers")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "what"]
    for name, init in REGISTRY.items():
        row = next(line for line in lines if line.split()[0] == name)
        assert init.torch in row and init.keras in row


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_initializer_has_full_documentation(capsys, name):
    code, out, _ = run(capsys, "initializers", name)
    assert code == 0
    for section in ("arguments:", "formula:", "PyTorch:", "Keras 3:"):
        assert section in out


def test_documentation_shows_the_code_the_backends_emit(capsys):
    _, out, _ = run(capsys, "initializers", "kaiming_normal")
    # torch's kaiming_normal_ std for fan_in 128, drawn block by block from the tensor's stream
    assert 'init_tensor_(w, seed, "normal", mean=0.0, std=0.125)' in out and "nn.init.normal_(block" in out
    assert 'distribution="untruncated_normal"' in out and "HeNormal" not in out.split("Keras 3:")[1]
    _, out, _ = run(capsys, "initializers", "he_normal")
    assert "nn.init.trunc_normal_(" in out and "keras.initializers.HeNormal(" in out


def test_dirac_explains_each_output_channel_and_the_keras_layout(capsys):
    _, out, _ = run(capsys, "initializers", "dirac")
    assert "output channel" in out and "identity" in out
    assert "(*k, in/groups, out)" in out
    assert "NS208" in out and "NS209" in out


def test_zero_initializers_say_where_they_are_safe(capsys):
    _, out, _ = run(capsys, "initializers", "zeros")
    assert "safe:" in out and "bias" in out and "NS201" in out


def test_unknown_initializer_is_a_usage_error_with_a_suggestion(capsys):
    code, _, err = run(capsys, "initializers", "kaiming_norml")
    assert code == 2 and "kaiming_normal" in err
