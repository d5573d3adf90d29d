"""Arithmetic: sub (element-wise difference), scale and shift (by a constant), and matmul. add, mul and concat,
the merges of residual networks, live in merge.py."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import Float, Op, Shape, ShapeError, fmt_shape, prod, register
from .merge import broadcast, broadcast_same_rank


@register
class Sub(Op):
    """The element-wise difference of two inputs, the first minus the second.

    Inputs: 2, of the same rank; each dimension equal, or 1 in one of them
    Output: the broadcast shape
    Lowered to: `a - b`
    """

    op: Literal["sub"]

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = 2
    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return broadcast_same_rank("sub", inputs, "give both inputs the same rank, with 1 where one broadcasts")

    def lower(self, b, args, inputs, output, meta):
        import operator

        return b.call_function(operator.sub, args)


@register
class Scale(Op):
    """Multiplies by a constant: `{op: scale, factor: 0.5}` is `x * 0.5`.

    Inputs: 1
    Output: unchanged; no parameters (a learnable scale is a `mul` by a `parameter`)
    Lowered to: `x * factor`
    """

    op: Literal["scale"]
    factor: Float() = Field(description="the constant to multiply by")

    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def lower(self, b, args, inputs, output, meta):
        import operator

        return b.call_function(operator.mul, [args[0], self.factor])

    def label(self) -> str:
        return f"scale ×{self.factor:g}"


@register
class Shift(Op):
    """Adds a constant: `{op: shift, value: 1.0}` is `x + 1.0`.

    Inputs: 1
    Output: unchanged; no parameters
    Lowered to: `x + value`
    """

    op: Literal["shift"]
    value: Float() = Field(description="the constant to add (negative to subtract)")

    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def lower(self, b, args, inputs, output, meta):
        import operator

        return b.call_function(operator.add, [args[0], self.value])

    def label(self) -> str:
        return f"shift {self.value:+g}"


@register
class Matmul(Op):
    """The matrix product of two inputs.

    Inputs: 2: a `[..., n, k]` and b `[..., k, m]`, of the same rank, at least 2 per sample (with the batch in
        front, a lower rank would be read as a batch of vectors)
    Output: `[..., n, m]`; leading dimensions broadcast. MACs n·k·m per leading index
    Lowered to: `torch.matmul(a, b)`
    """

    op: Literal["matmul"]

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = 2
    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        a, b = inputs
        if len(a) < 2 or len(a) != len(b):
            raise ShapeError(f"matmul needs two inputs of the same rank, at least 2 per sample: got {fmt_shape(a)} "
                             f"and {fmt_shape(b)}", code="RG051",
                             help="give the inputs [..., n, k] and [..., k, m] shapes of the same rank")
        if a[-1] != b[-2]:
            raise ShapeError(f"matmul inner dimensions differ: {fmt_shape(a)} has {a[-1]} columns, {fmt_shape(b)} "
                             f"has {b[-2]} rows", code="RG051",
                             help="the first input's last dimension must equal the second's next-to-last")
        lead = broadcast([a[:-2], b[:-2]])
        if lead is None:
            raise ShapeError(f"matmul's leading dimensions do not broadcast: {fmt_shape(a)} and {fmt_shape(b)}",
                             code="RG051", help="each leading dimension must be equal, or 1 in one of the inputs")
        return (*lead, a[-2], b[-1])

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return prod(output) * inputs[0][-1]

    def receptive_field(self, fields, inputs, output, meta):
        return None  # a product over whole rows and columns: not a spatial window

    def lower(self, b, args, inputs, output, meta):
        import torch

        return b.call_function(torch.matmul, args)
