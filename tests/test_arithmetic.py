"""Block-argument arithmetic: Python's precedence and integer rules, no eval, plain text left alone."""

from __future__ import annotations

import pytest

from nnspec.compiler.arithmetic import ExpressionError, evaluate, names_in, tokens_of

ENV = {"w": 6, "k": 3, "p": 0.5, "act": "relu", "big": 2**40, "huge": 2**1200}


@pytest.mark.parametrize("text", ["$w * 4", "$w*4 // 2", "($k - 1) // 2", "$p * 0.5", "-$k + 10", "2 + 3 * $w",
                                  "(2 + 3) * $w", "$w / 4", "$w // 4", "$w - -$k", "1e2 * $p", ".5 * $w",
                                  "$w * ($k + (1 - $k) * 2)"])
def test_evaluates_as_python_does(text):
    python = text.replace("$", "")
    assert evaluate(text, ENV, "b") == eval(python, {}, dict(ENV))  # the test's reference only
    assert type(evaluate(text, ENV, "b")) is type(eval(python, {}, dict(ENV)))


@pytest.mark.parametrize("text", ["$w", "costs $5 each", "$w and more", "relu", "5 * 3", "$w % 2",
                                  "__import__('os')", "$w; 1", "$w.real * 2", "", "$ w * 2"])
def test_other_strings_are_not_expressions(text):
    assert tokens_of(text) is None


@pytest.mark.parametrize("text, code, words", [
    ("$x * 2", "NS105", "`$x` is not an argument of block `b`"),
    ("$act * 2", "NS004", "not a number"),
    ("$w // ($k - 3)", "NS004", "divides by zero"),
    ("($w * 2", "NS004", "unclosed"),
    ("$w * ", "NS004", "ends in the middle"),
    ("$w $k * 2", "NS004", "unexpected"),
    ("$w ** 2", "NS004", "unexpected"),
    ("$big * $big", "NS004", "beyond"),
    ("$huge / 2", "NS004", "beyond"),
    ("$huge // 2 + 1", "NS004", "beyond"),
])
def test_errors(text, code, words):
    with pytest.raises(ExpressionError) as info:
        evaluate(text, ENV, "b")
    assert info.value.code == code and words in info.value.message


def test_names_are_found_for_the_unused_argument_check():
    assert names_in("($k - 1) // 2 + $w") == {"k", "w"}


def test_expressions_build_the_shapes_they_say():
    text = """
nnspec: 1
name: m
input: [4, 9, 9]
blocks:
  b:
    args: {width: required, k: 3, act: relu}
    layers:
      - conv2d: {out: $width * 4, kernel: $k, padding: ($k - 1) // 2}
      - $act
      - conv2d: {out: $width * 4 // 2, kernel: 1}
layers:
  - b: {width: 2}
  - b: {width: 3, k: 5, act: identity}
"""
    from nnspec.compiler.pipeline import analyse_text

    spec, diags = analyse_text(text, "m.yaml")
    assert diags == []
    shapes = [(layer.path, tuple(layer.out_shape)) for layer in spec.graph.layers()]
    assert shapes == [("b_1.conv2d_1", (8, 9, 9)), ("b_1.relu_1", (8, 9, 9)), ("b_1.conv2d_2", (4, 9, 9)),
                      ("b_2.conv2d_1", (12, 9, 9)), ("b_2.identity_1", (12, 9, 9)), ("b_2.conv2d_2", (6, 9, 9))]


def test_an_argument_used_only_in_an_expression_is_used():
    from nnspec.compiler.pipeline import analyse_text

    text = """
nnspec: 1
name: m
input: [4, 5, 5]
blocks:
  b:
    args: {k: 3, unused: 1}
    layers:
      - conv2d: {out: 4, kernel: $k, padding: ($k - 1) // 2}
layers:
  - b: {k: 5}
"""
    _, diags = analyse_text(text, "m.yaml")
    assert [(d.code, d.line) for d in diags] == [("NS105", 7)]
    assert "`unused`" in diags[0].message


def test_a_number_of_thousands_of_digits_is_too_large_not_a_crash():
    for text in ("$a * " + "9" * 5000, "$a * 1" + "0" * 19):
        with pytest.raises(ExpressionError) as info:
            evaluate(text, {"a": 1}, "b")
        assert info.value.code == "NS004" and "beyond what any argument takes" in info.value.message
    assert evaluate("$a + " + "0" * 5000 + "7", {"a": 1}, "b") == 8  # leading zeros are only zeros
