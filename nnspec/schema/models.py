"""Pydantic models of the spec file's top level, version 1.

Layer items and initializers are validated against the vocabulary
(`nnspec.vocabulary`); this module holds what only a whole file has.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from nnspec.vocabulary.args import PosInt, Seed, Strict


class InputSpec(Strict):
    shape: list[PosInt] = Field(min_length=1, max_length=4, description="one example's shape, channels first, "
                                                                        "batch excluded")
    dtype: Literal["float32", "int64"] = Field("float32", description="`float32`, or `int64` for embedding ids")
    layout: Optional[Literal["features", "map", "tokens"]] = Field(
        None, description="`features` [F], a `map` [C, *S] or `tokens` [T, D]; default: [F] features, "
                          "[C, *S] a map")


class BlockDef(Strict):
    args: dict[str, Union[bool, int, float, str, list, None]] = Field(default_factory=dict)
    layers: list = Field(min_length=1)


class SpecModel(Strict):
    """The top level of a spec file."""

    nnspec: int
    name: str
    input: Union[Annotated[list[PosInt], Field(min_length=1, max_length=4)], InputSpec]
    description: Optional[str] = None
    seed: Optional[Seed] = None
    init: dict = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: list = Field(min_length=1)

    def input_spec(self) -> InputSpec:
        return self.input if isinstance(self.input, InputSpec) else InputSpec(shape=self.input)
