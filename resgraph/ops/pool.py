"""Pooling: maxpool2d, avgpool2d and adaptive_avgpool2d, with torch's output-size rule."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import Bool, Int, Ints, Op, Shape, ShapeError, fmt_shape, register, spatial, window_field


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape (aten/src/ATen/native/Pool.h)."""
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _Pool2d(Op):
    kernel: Ints(1)
    stride: Ints(1) | None = None
    padding: Ints(0) = 0
    ceil_mode: Bool = False

    makes_map: ClassVar[bool] = True

    def _geometry(self, shape: Shape, dilation: int | tuple[int, ...] = 1):
        if len(shape) != 3:
            raise ShapeError(f"`{self.op_name()}` expects a [channels, height, width] input, got {fmt_shape(shape)}")
        kernel = spatial(self.kernel, 2, "kernel")
        stride = spatial(self.stride if self.stride is not None else self.kernel, 2, "stride")
        padding = spatial(self.padding, 2, "padding")
        dilation = spatial(dilation, 2, "dilation")
        if any(p * 2 > k for p, k in zip(padding, kernel)):
            raise ShapeError(f"padding {fmt_shape(padding)} is more than half the kernel {fmt_shape(kernel)}",
                             attr="padding", help="pooling padding may be at most half the kernel size")
        out = tuple(pool_output_size(s, k, st, p, d, self.ceil_mode)
                    for s, k, st, p, d in zip(shape[1:], kernel, stride, padding, dilation))
        if any(o < 1 for o in out):
            raise ShapeError(f"the pooling window is larger than the input {fmt_shape(shape[1:])}",
                             attr="kernel", help="use a smaller kernel, or adaptive_avgpool2d")
        return (shape[0], *out)

    def _stride(self):
        return self.stride if self.stride is not None else self.kernel

    def receptive_field(self, fields, inputs, output, meta):
        return window_field(fields[0], spatial(self.kernel, 2, "kernel"), spatial(self._stride(), 2, "stride"),
                            spatial(getattr(self, "dilation", 1), 2, "dilation"))

    def label(self) -> str:
        kernel = "x".join(str(k) for k in spatial(self.kernel, 2, "kernel"))
        stride = "x".join(str(s) for s in spatial(self._stride(), 2, "stride"))
        return f"{self.op_name()} {kernel}, /{stride}"


@register
class MaxPool2d(_Pool2d):
    """2-d max pooling.

    Inputs: 1: `[C, H, W]`
    Output: `[C, H', W']`, torch's pooling rule
    Lowered to: `F.max_pool2d`
    """

    op: Literal["maxpool2d"]
    dilation: Ints(1) = 1

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return self._geometry(inputs[0], self.dilation)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs = {"kernel_size": self.kernel, "stride": self._stride(), "padding": self.padding}
        if self.dilation != 1:
            kwargs["dilation"] = self.dilation
        if self.ceil_mode:
            kwargs["ceil_mode"] = True
        return b.call_function(F.max_pool2d, args, kwargs)


@register
class AvgPool2d(_Pool2d):
    """2-d average pooling.

    Inputs: 1: `[C, H, W]`
    Output: `[C, H', W']`, torch's pooling rule
    Lowered to: `F.avg_pool2d`
    """

    op: Literal["avgpool2d"]
    count_include_pad: Bool = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return self._geometry(inputs[0])

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs = {"kernel_size": self.kernel, "stride": self._stride(), "padding": self.padding}
        if self.ceil_mode:
            kwargs["ceil_mode"] = True
        if not self.count_include_pad:
            kwargs["count_include_pad"] = False
        return b.call_function(F.avg_pool2d, args, kwargs)


@register
class AdaptiveAvgPool2d(Op):
    """Average-pools to a fixed output size (`size: 1` for global average pooling).

    Inputs: 1: `[C, H, W]`
    Output: `[C, h, w]`
    Lowered to: `F.adaptive_avg_pool2d`
    """

    makes_map: ClassVar[bool] = True

    op: Literal["adaptive_avgpool2d"]
    size: Ints(1) = 1

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) != 3:
            raise ShapeError(f"`adaptive_avgpool2d` expects a [channels, height, width] input, got {fmt_shape(shape)}")
        return (shape[0], *spatial(self.size, 2, "size"))

    def receptive_field(self, fields, inputs, output, meta):
        # torch's adaptive windows: about ceil(in / out) wide, floor(in / out) apart; size 1 sees everything.
        sizes = inputs[0][1:]
        kernel = [-(-s // o) for s, o in zip(sizes, output[1:])]
        stride = [max(1, s // o) for s, o in zip(sizes, output[1:])]
        return window_field(fields[0], kernel, stride, (1, 1))

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.adaptive_avg_pool2d, args, {"output_size": spatial(self.size, 2, "size")})

    def label(self) -> str:
        return f"adaptive_avgpool2d {'x'.join(str(s) for s in spatial(self.size, 2, 'size'))}"
