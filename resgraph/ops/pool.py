"""Pooling in 1-d, 2-d and 3-d: maxpool, avgpool, adaptive_avgpool and adaptive_maxpool, with torch's
output-size rules. One class per family, generalised over the spatial dimensions as `_ConvNd` is."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import GLOBAL, Bool, Ints, Op, Shape, ShapeError, fmt_shape, register, spatial, window_field
from .conv import layout_name, stride_text


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape (aten/src/ATen/native/Pool.h)."""
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


class _PoolNd(Op):
    kernel: Ints(1) = Field(description="window size: an integer, or one per spatial dimension")
    stride: Ints(1) | None = Field(None, description="step between windows; default: the kernel size")
    padding: Ints(0) = Field(0, description="implicit padding on both sides, at most half the kernel")
    ceil_mode: Bool = Field(False, description="round the output size up instead of down")

    spatial_dims: ClassVar[int]
    makes_map: ClassVar[bool] = True

    def _geometry(self, shape: Shape, dilation: int | tuple[int, ...] = 1):
        n = self.spatial_dims
        if len(shape) != n + 1:
            raise ShapeError(f"`{self.op_name()}` expects a {layout_name(n)} input, got {fmt_shape(shape)}")
        kernel = spatial(self.kernel, n, "kernel")
        stride = spatial(self._stride(), n, "stride")
        padding = spatial(self.padding, n, "padding")
        dilation = spatial(dilation, n, "dilation")
        if any(p * 2 > k for p, k in zip(padding, kernel)):
            raise ShapeError(f"padding {fmt_shape(padding)} is more than half the kernel {fmt_shape(kernel)}",
                             attr="padding", help="pooling padding may be at most half the kernel size")
        out = tuple(pool_output_size(s, k, st, p, d, self.ceil_mode)
                    for s, k, st, p, d in zip(shape[1:], kernel, stride, padding, dilation))
        if any(o < 1 for o in out):
            raise ShapeError(f"the pooling window is larger than the input {fmt_shape(shape[1:])}",
                             attr="kernel", help=f"use a smaller kernel, or adaptive_avgpool{n}d")
        return (shape[0], *out)

    def _stride(self):
        return self.stride if self.stride is not None else self.kernel

    def receptive_field(self, fields, inputs, output, meta):
        n = self.spatial_dims
        return window_field(fields[0], spatial(self.kernel, n, "kernel"), spatial(self._stride(), n, "stride"),
                            spatial(getattr(self, "dilation", 1), n, "dilation"))

    def _kwargs(self) -> dict:
        return {"kernel_size": self.kernel, "stride": self._stride(), "padding": self.padding}

    def label(self) -> str:
        n = self.spatial_dims
        kernel = "x".join(str(k) for k in spatial(self.kernel, n, "kernel"))
        stride = spatial(self._stride(), n, "stride")
        return f"{self.op_name()} {kernel}" + stride_text(stride)


class _MaxPoolNd(_PoolNd):
    dilation: Ints(1) = Field(1, description="spacing between the window's elements")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return self._geometry(inputs[0], self.dilation)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs = self._kwargs()
        if self.dilation != 1:
            kwargs["dilation"] = self.dilation
        if self.ceil_mode:
            kwargs["ceil_mode"] = True
        function = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[self.spatial_dims]
        return b.call_function(function, args, kwargs)


class _AvgPoolNd(_PoolNd):
    count_include_pad: Bool = Field(True, description="count the padding zeros in each window's average")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        output = self._geometry(inputs[0])
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        if self.spatial_dims == 3 and any(s < k for s, k in zip(inputs[0][1:], kernel)):
            # torch's avg_pool3d (pool3d_shape_check with check_input_size) wants the unpadded input to cover
            # the kernel, where max_pool3d and the 1-d and 2-d pools only need one output
            raise ShapeError(f"`avgpool3d` needs an input at least as large as the kernel: {fmt_shape(inputs[0][1:])} "
                             f"is smaller than {fmt_shape(kernel)} (padding does not count)", attr="kernel",
                             help="use a smaller kernel, or adaptive_avgpool3d")
        return output

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs = self._kwargs()
        if self.ceil_mode:
            kwargs["ceil_mode"] = True
        if not self.count_include_pad:
            kwargs["count_include_pad"] = False
        function = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[self.spatial_dims]
        return b.call_function(function, args, kwargs)


@register
class MaxPool1d(_MaxPoolNd):
    """Max pooling over a [channels, length] input.

    Inputs: 1: `[C, L]`
    Output: `[C, L']`, per spatial size X: X' = ⌊(X + 2p − d(k−1) − 1)/s⌋ + 1 (rounded up with
        `ceil_mode`); stride defaults to the kernel, padding at most half the kernel
    Lowered to: `F.max_pool1d`
    """

    op: Literal["maxpool1d"]
    spatial_dims: ClassVar[int] = 1


@register
class MaxPool2d(_MaxPoolNd):
    """Max pooling over a [channels, height, width] input.

    Inputs: 1: `[C, H, W]`
    Output: `[C, H', W']`, per spatial size X: X' = ⌊(X + 2p − d(k−1) − 1)/s⌋ + 1 (rounded up with
        `ceil_mode`); stride defaults to the kernel, padding at most half the kernel
    Lowered to: `F.max_pool2d`
    """

    op: Literal["maxpool2d"]
    spatial_dims: ClassVar[int] = 2


@register
class MaxPool3d(_MaxPoolNd):
    """Max pooling over a [channels, depth, height, width] input.

    Inputs: 1: `[C, D, H, W]`
    Output: `[C, D', H', W']`, per spatial size X: X' = ⌊(X + 2p − d(k−1) − 1)/s⌋ + 1 (rounded up with
        `ceil_mode`); stride defaults to the kernel, padding at most half the kernel
    Lowered to: `F.max_pool3d`
    """

    op: Literal["maxpool3d"]
    spatial_dims: ClassVar[int] = 3


@register
class AvgPool1d(_AvgPoolNd):
    """Average pooling over a [channels, length] input.

    Inputs: 1: `[C, L]`
    Output: `[C, L']`, per spatial size X: X' = ⌊(X + 2p − k)/s⌋ + 1 (rounded up with `ceil_mode`);
        stride defaults to the kernel, padding at most half the kernel
    Lowered to: `F.avg_pool1d`
    """

    op: Literal["avgpool1d"]
    spatial_dims: ClassVar[int] = 1


@register
class AvgPool2d(_AvgPoolNd):
    """Average pooling over a [channels, height, width] input.

    Inputs: 1: `[C, H, W]`
    Output: `[C, H', W']`, per spatial size X: X' = ⌊(X + 2p − k)/s⌋ + 1 (rounded up with `ceil_mode`);
        stride defaults to the kernel, padding at most half the kernel
    Lowered to: `F.avg_pool2d`
    """

    op: Literal["avgpool2d"]
    spatial_dims: ClassVar[int] = 2


@register
class AvgPool3d(_AvgPoolNd):
    """Average pooling over a [channels, depth, height, width] input.

    Inputs: 1: `[C, D, H, W]`
    Output: `[C, D', H', W']`, per spatial size X: X' = ⌊(X + 2p − k)/s⌋ + 1 (rounded up with `ceil_mode`);
        stride defaults to the kernel, padding at most half the kernel; the unpadded input must cover the kernel
    Lowered to: `F.avg_pool3d`
    """

    op: Literal["avgpool3d"]
    spatial_dims: ClassVar[int] = 3


class _AdaptivePoolNd(Op):
    size: Ints(1) = Field(1, description="output size: an integer, or one per spatial dimension (1: global pooling)")

    spatial_dims: ClassVar[int]
    kind: ClassVar[str]  # "avg" or "max"
    makes_map: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        n = self.spatial_dims
        if len(shape) != n + 1:
            raise ShapeError(f"`{self.op_name()}` expects a {layout_name(n)} input, got {fmt_shape(shape)}")
        return (shape[0], *spatial(self.size, n, "size"))

    def receptive_field(self, fields, inputs, output, meta):
        # torch's adaptive windows: about ceil(in / out) wide, floor(in / out) apart; size 1 sees everything.
        sizes = inputs[0][1:]
        kernel = [-(-s // o) for s, o in zip(sizes, output[1:])]
        stride = [max(1, s // o) for s, o in zip(sizes, output[1:])]
        field = window_field(fields[0], kernel, stride, (1,) * len(sizes))
        if field is None:
            return None
        size, jump = field
        return tuple(GLOBAL if o == 1 < s else r for r, s, o in zip(size, sizes, output[1:])), jump

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        n = self.spatial_dims
        function = {("avg", 1): F.adaptive_avg_pool1d, ("avg", 2): F.adaptive_avg_pool2d,
                    ("avg", 3): F.adaptive_avg_pool3d, ("max", 1): F.adaptive_max_pool1d,
                    ("max", 2): F.adaptive_max_pool2d, ("max", 3): F.adaptive_max_pool3d}[self.kind, n]
        return b.call_function(function, args, {"output_size": spatial(self.size, n, "size")})

    def label(self) -> str:
        return f"{self.op_name()} {'x'.join(str(s) for s in spatial(self.size, self.spatial_dims, 'size'))}"


@register
class AdaptiveAvgPool1d(_AdaptivePoolNd):
    """Average-pools a [channels, length] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, L]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_avg_pool1d`
    """

    op: Literal["adaptive_avgpool1d"]
    spatial_dims: ClassVar[int] = 1
    kind: ClassVar[str] = "avg"


@register
class AdaptiveAvgPool2d(_AdaptivePoolNd):
    """Average-pools a [channels, height, width] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, H, W]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_avg_pool2d`
    """

    op: Literal["adaptive_avgpool2d"]
    spatial_dims: ClassVar[int] = 2
    kind: ClassVar[str] = "avg"


@register
class AdaptiveAvgPool3d(_AdaptivePoolNd):
    """Average-pools a [channels, depth, height, width] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, D, H, W]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_avg_pool3d`
    """

    op: Literal["adaptive_avgpool3d"]
    spatial_dims: ClassVar[int] = 3
    kind: ClassVar[str] = "avg"


@register
class AdaptiveMaxPool1d(_AdaptivePoolNd):
    """Max-pools a [channels, length] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, L]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_max_pool1d`
    """

    op: Literal["adaptive_maxpool1d"]
    spatial_dims: ClassVar[int] = 1
    kind: ClassVar[str] = "max"


@register
class AdaptiveMaxPool2d(_AdaptivePoolNd):
    """Max-pools a [channels, height, width] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, H, W]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_max_pool2d`
    """

    op: Literal["adaptive_maxpool2d"]
    spatial_dims: ClassVar[int] = 2
    kind: ClassVar[str] = "max"


@register
class AdaptiveMaxPool3d(_AdaptivePoolNd):
    """Max-pools a [channels, depth, height, width] input to a fixed output size (`size: 1`: global pooling).

    Inputs: 1: `[C, D, H, W]`
    Output: `[C, *size]`
    Lowered to: `F.adaptive_max_pool3d`
    """

    op: Literal["adaptive_maxpool3d"]
    spatial_dims: ClassVar[int] = 3
    kind: ClassVar[str] = "max"
