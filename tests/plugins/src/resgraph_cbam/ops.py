"""The `cbam` op: schema, shape rule, parameter count, MACs, lowering and label, as resgraph's own ops.

Importing this module registers the op; it imports no torch (validation stays torch-free).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from resgraph.ops import Int, Op, Shape, ShapeError, fmt_shape, register


@register
class CBAM(Op):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention, then spatial attention.

    Input and output: [channels, height, width]. Channel attention: a shared two-layer MLP (1x1
    convolutions without bias, channels -> channels // reduction -> channels) of the average- and the
    max-pooled input, summed, sigmoid, times the input. Spatial attention: the channel mean and max,
    a `kernel` x `kernel` convolution (2 -> 1 channels, no bias), sigmoid, times the input. Lowers to
    `resgraph_cbam.modules.CBAM`; its keys are `<name>.mlp.0.weight`, `<name>.mlp.2.weight`,
    `<name>.spatial.weight`."""

    op: Literal["cbam"]
    reduction: Int(1) = Field(16, description="the channel MLP's hidden layer has channels // reduction units")
    kernel: Int(1) = Field(7, description="the spatial attention's kernel size (odd)")

    fresh_output: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("reduction", "kernel")
    # `resgraph import` maps modules of these classes to this op, with `import_attributes`.
    imports: ClassVar[tuple[str, ...]] = ("resgraph_cbam.modules.CBAM",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) != 3:
            raise ShapeError(f"`cbam` expects a [channels, height, width] input, got {fmt_shape(shape)}")
        if shape[0] < self.reduction:
            raise ShapeError(f"{shape[0]} channels leave no hidden units with `reduction: {self.reduction}`",
                             attr="reduction", help=f"use a reduction of at most {shape[0]}")
        if self.kernel % 2 == 0:
            raise ShapeError(f"`kernel: {self.kernel}` is even: the spatial map would change size", attr="kernel",
                             help=f"use an odd kernel, e.g. {self.kernel + 1}")
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        channels = inputs[0][0]
        return 2 * channels * (channels // self.reduction) + 2 * self.kernel * self.kernel

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        channels, height, width = inputs[0]
        return 2 * 2 * channels * (channels // self.reduction) + height * width * 2 * self.kernel * self.kernel

    def lower(self, b: Any, args: list, inputs: list[Shape], output: Shape, meta: dict) -> Any:
        from .modules import CBAM as Module   # torch is imported here, when a network is compiled

        return b.call_module(Module(inputs[0][0], self.reduction, self.kernel), args)

    @classmethod
    def import_attributes(cls, module: Any, shape: Shape | None) -> dict:
        return {"reduction": module.reduction, "kernel": module.kernel}
