"""Logical layouts: every shape is `features` [F], a `map` [C, *S], `tokens` [T, D], or integer `ids` [T].

A `Shape` is a tuple of sizes (batch excluded) that carries its layout; tokens
made from a map remember the map's spatial grid, so `to_map` can restore it.
Inference lives in one place: the shape pass wraps what a kind's `infer`
returns using the kind's `out_layout`.
"""

from __future__ import annotations

from typing import Optional

FEATURES, MAP, TOKENS, IDS = "features", "map", "tokens", "ids"
LAYOUTS = (FEATURES, MAP, TOKENS)
FLOAT_LAYOUTS = (FEATURES, MAP, TOKENS)
WRITTEN = {FEATURES: "features [F]", MAP: "a map [C, *S]", TOKENS: "tokens [T, D]", IDS: "integer ids [T]"}


class Shape(tuple):
    """Sizes of one sample's axes, with the layout they are in."""

    layout: str
    grid: Optional[tuple]

    def __new__(cls, dims, layout: str, grid: Optional[tuple] = None):
        self = super().__new__(cls, dims)
        self.layout = layout
        self.grid = tuple(grid) if grid is not None else None
        return self

    def __reduce__(self):
        return (Shape, (tuple(self), self.layout, self.grid))

    def __repr__(self) -> str:
        return f"Shape({list(self)}, {self.layout})"

    @property
    def channel_axis(self) -> int:
        """The logical axis `concat`, `slice`, `scale` and `prelu` act on: C of a map, D of tokens, F."""
        return len(self) - 1 if self.layout == TOKENS else 0

    @property
    def channels(self) -> int:
        return self[self.channel_axis]

    def describe(self) -> str:
        return f"{self.layout} {list(self)}"


def input_layout(dims: tuple, dtype: str, written: Optional[str] = None) -> str:
    """The layout of the model input: as written, else ids for int64, features for 1-D, a map otherwise."""
    if dtype == "int64":
        return IDS
    if written is not None:
        return written
    return FEATURES if len(dims) == 1 else MAP


def layout_problem(dims: tuple, layout: str) -> Optional[str]:
    """Why `dims` cannot be in `layout`, or None."""
    if layout == FEATURES and len(dims) != 1:
        return f"a `features` input has one axis [F], got {len(dims)}"
    if layout == TOKENS and len(dims) != 2:
        return f"a `tokens` input has two axes [T, D], got {len(dims)}"
    if layout == MAP and not 2 <= len(dims) <= 4:
        return f"a `map` input has 2 to 4 axes [C, *S], got {len(dims)}"
    return None


def keep(in_shape: Shape, dims: tuple) -> Shape:
    """The output of a layer that keeps its input's layout; tokens keep their grid while T is unchanged."""
    grid = in_shape.grid if in_shape.layout == TOKENS and len(dims) == 2 and dims[0] == in_shape[0] else None
    return Shape(dims, in_shape.layout, grid)


def as_shape(dims, in_shape: Shape, out_layout) -> Shape:
    """What a kind's `infer` returned, as a Shape: `out_layout` is None (the input's layout), a layout name,
    or a function (args-free) of the input shape and the output sizes."""
    if isinstance(dims, Shape):
        return dims
    if out_layout is None:
        return keep(in_shape, tuple(dims))
    if callable(out_layout):
        return out_layout(in_shape, tuple(dims))
    return Shape(tuple(dims), out_layout)
