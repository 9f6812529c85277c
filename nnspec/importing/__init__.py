"""Import: an existing PyTorch module or Keras model -> the text of an nnspec spec that rebuilds it.

`from_torch(module, input_shape)` traces the module with torch.fx, `from_keras(model)` reads the Keras
layer graph; both decompose the model into chains, merges (add, multiply, concat) and blocks
(`structure.py`), infer each tensor's initializer from its values (`inits.py`) and write ordinary YAML
(`render.py`) that `nnspec check` reads. What the vocabulary cannot express is an `ImportProblem` naming
the module and the missing construct, never a spec that computes something else.
"""

from __future__ import annotations


class ImportProblem(Exception):
    """The model cannot be written as a spec: `where` names the module or layer, `message` what is missing."""

    def __init__(self, where: str, message: str, hint: str = ""):
        super().__init__(f"{where}: {message}" + (f" ({hint})" if hint else ""))
        self.where, self.message, self.hint = where, message, hint


def from_torch(module, input_shape, name=None) -> str:
    """The YAML text of a spec that rebuilds `module` (a torch.nn.Module); `input_shape`: one sample,
    channels first, e.g. (3, 224, 224)."""
    from nnspec.importing.torch_import import from_torch as run

    return run(module, input_shape, name)


def from_keras(model, name=None) -> str:
    """The YAML text of a spec that rebuilds `model` (a Keras Sequential or functional model)."""
    from nnspec.importing.keras_import import from_keras as run

    return run(model, name)
