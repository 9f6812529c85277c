"""`nnspec import torch|keras MODULE:CALLABLE`: load the model, write its spec; problems as diagnostics."""

from __future__ import annotations

import importlib
import json
import os
import sys

from nnspec.importing import ImportProblem

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def _error(message: str, code: int) -> int:
    print(f"nnspec: error: {message}", file=sys.stderr)
    return code


def load_callable(target: str):
    """MODULE:CALLABLE (or MODULE.CALLABLE) -> the object; the current directory is importable."""
    if ":" in target:
        module_name, _, attr = target.partition(":")
    elif "." in target:
        module_name, _, attr = target.rpartition(".")
    else:
        raise ValueError(f"{target!r}: write MODULE:CALLABLE, e.g. torchvision.models:resnet18 or mymodels:Net")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error in the module's own code
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def make_model(target: str, args_text, is_model) -> object:
    obj = load_callable(target)
    if is_model(obj):
        if args_text:
            raise ValueError(f"{target} is a model already; --args is for a callable that makes one")
        return obj
    if not callable(obj):
        raise ValueError(f"{target} is a {type(obj).__name__}, neither a model nor a callable that makes one")
    args, kwargs = [], {}
    if args_text:
        try:
            given = json.loads(args_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--args is not JSON ({exc.msg} at character {exc.pos}): {args_text!r}") from None
        if isinstance(given, dict):
            kwargs = given
        elif isinstance(given, list):
            args = given
        else:
            raise ValueError(f"--args is a JSON object (keyword arguments) or list (positional), got {args_text!r}")
    try:
        model = obj(*args, **kwargs)
    except Exception as exc:
        raise ValueError(f"{target}(...) failed: {type(exc).__name__}: {exc}") from None
    if not is_model(model):
        raise ValueError(f"{target}(...) returned a {type(model).__name__}, not a model")
    return model


def run(args) -> int:
    try:
        if args.framework == "torch":
            if not args.input:
                return _error("importing from torch needs --input, one sample's shape channels first (e.g. "
                              "--input 3,224,224)", EXIT_USAGE)
            import torch

            from nnspec.importing.torch_import import _input_shape, from_torch

            try:
                shape = _input_shape(args.input)
            except ImportProblem as exc:
                return _error(f"--input: {exc.message}", EXIT_USAGE)
            model = make_model(args.target, args.args, lambda o: isinstance(o, torch.nn.Module))
            text = from_torch(model, shape, args.name)
        else:
            if args.input:
                return _error("--input is for torch; a Keras model knows its input shape", EXIT_USAGE)
            import keras

            from nnspec.importing.keras_import import from_keras

            model = make_model(args.target, args.args, lambda o: isinstance(o, keras.Model))
            text = from_keras(model, args.name)
    except (ValueError, ImportError) as exc:  # ImportError: torch, keras or scipy missing
        return _error(str(exc), EXIT_USAGE)
    except ImportProblem as exc:
        print(f"{exc.where}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        print("nnspec: error: the model cannot be written as a spec; nothing was written", file=sys.stderr)
        return EXIT_FOUND
    if args.output and args.output != "-":
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            return _error(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE)
        notes = [line for line in text.splitlines() if line.startswith("#   ")]
        print(f"wrote {args.output} ({len(text.splitlines())} lines)"
              + (f"; `nnspec check` reports {len(notes)} finding(s), listed at its top" if notes else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK
