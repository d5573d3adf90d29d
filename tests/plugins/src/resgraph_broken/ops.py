"""An op whose shape rule divides by zero for inputs with one channel."""

from __future__ import annotations

from typing import Literal

from resgraph.ops import Op, Shape, register


@register
class BrokenNorm(Op):
    """A norm whose shape rule is wrong: it divides by (channels - 1)."""

    op: Literal["broken_norm"]

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        groups = shape[0] // (shape[0] - 1)
        return (shape[0] * groups // groups, *shape[1:])
