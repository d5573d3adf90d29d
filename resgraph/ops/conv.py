"""Convolutions: conv1d, conv2d and conv3d, with torch's output-size rule and torchvision's init."""


from typing import Any, ClassVar, Literal

from .base import Bool, Choice, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register, spatial, window_field

LAYOUTS = {1: "[channels, length]", 2: "[channels, height, width]", 3: "[channels, depth, height, width]"}


def layout_name(spatial_dims: int) -> str:
    """The per-sample layout an op over `spatial_dims` spatial dimensions expects, for messages."""
    return LAYOUTS[spatial_dims]


def stride_text(stride: tuple[int, ...]) -> str:
    """`, stride 2` (or `, stride 1x2`) for diagram labels; nothing for stride 1."""
    if set(stride) == {1}:
        return ""
    return ", stride " + ("x".join(str(s) for s in stride) if len(set(stride)) > 1 else str(stride[0]))


def init_conv(module: Any) -> None:
    """torchvision's ResNet init: Kaiming normal, fan_out, for the ReLU that follows."""
    import torch.nn as nn

    if module.weight.is_meta:
        return  # nothing to draw on the meta device, and its sampling kernels are slow
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class _ConvNd(Op):
    out: Int(1)
    kernel: Ints(1)
    stride: Ints(1) = 1
    padding: Ints(0, literals=("same", "valid")) = 0
    dilation: Ints(1) = 1
    groups: Int(1) = 1
    bias: Bool = True
    padding_mode: Choice("zeros", "reflect", "replicate", "circular") = "zeros"

    spatial_dims: ClassVar[int]
    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True
    makes_map: ClassVar[bool] = True

    def _geometry(self, inputs: list[Shape]) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        (shape,) = inputs
        n = self.spatial_dims
        if len(shape) != n + 1:
            raise ShapeError(f"`{self.op_name()}` expects a {layout_name(n)} input, got {fmt_shape(shape)}",
                             help="insert a `reshape` or `unflatten` before it, or use the op that matches the input's rank")
        kernel, stride = spatial(self.kernel, n, "kernel"), spatial(self.stride, n, "stride")
        dilation = spatial(self.dilation, n, "dilation")
        if self.padding == "same":
            if any(s != 1 for s in stride):
                raise ShapeError("`padding: same` only works with stride 1", attr="padding",
                                 help="give the padding as a number, e.g. `padding: "
                                      f"{(kernel[0] - 1) // 2 * dilation[0]}`")
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        elif self.padding == "valid":
            padding = (0,) * n
        else:
            padding = spatial(self.padding, n, "padding")
        return shape[0], kernel, stride, padding, dilation

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        channels, kernel, stride, padding, dilation = self._geometry(inputs)
        if channels % self.groups:
            raise ShapeError(f"{channels} input channels are not divisible by `groups: {self.groups}`",
                             attr="groups", help="choose groups that divide the input channels")
        if self.out % self.groups:
            raise ShapeError(f"`out: {self.out}` is not divisible by `groups: {self.groups}`", attr="out",
                             help="choose `out` and `groups` so that every group gets the same number of channels")
        sizes = inputs[0][1:]
        if self.padding_mode != "zeros":
            widths = padding
            if self.padding == "same":
                # torch pads d * (k - 1) in all; with an odd total the extra one goes on the right
                widths = tuple(d * (k - 1) - d * (k - 1) // 2 for k, d in zip(kernel, dilation))
            limit = {"reflect": lambda p, s: p < s, "replicate": lambda p, s: True,
                     "circular": lambda p, s: p <= s}[self.padding_mode]
            if not all(limit(p, s) for p, s in zip(widths, sizes)):
                raise ShapeError(f"padding {max(widths)} is too large for `padding_mode: {self.padding_mode}` "
                                 f"on an input of size {fmt_shape(sizes)}", attr="padding")
        if self.padding == "same":
            return (self.out, *sizes)
        out = tuple(conv_output_size(*a) for a in zip(sizes, kernel, stride, padding, dilation))
        if any(o < 1 for o in out):
            effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
            raise ShapeError(f"the kernel ({fmt_shape(effective)} with dilation) is larger than the padded "
                             f"input ({fmt_shape(tuple(s + 2 * p for s, p in zip(sizes, padding)))})",
                             attr="kernel", help="use a smaller kernel or more padding, or feed a larger input")
        return (self.out, *out)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        return self.out * (inputs[0][0] // self.groups) * prod(kernel) + (self.out if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        return prod(output) * (inputs[0][0] // self.groups) * prod(kernel)

    def parameter_shapes(self, inputs: list[Shape], output: Shape, meta: dict) -> dict[str, Shape]:
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        weight = (self.out, inputs[0][0] // self.groups, *kernel)
        return {"weight": weight, **({"bias": (self.out,)} if self.bias else {})}

    def receptive_field(self, fields, inputs, output, meta):
        n = self.spatial_dims
        return window_field(fields[0], spatial(self.kernel, n, "kernel"), spatial(self.stride, n, "stride"),
                            spatial(self.dilation, n, "dilation"))

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[self.spatial_dims]
        module = cls(inputs[0][0], self.out, self.kernel, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups, bias=self.bias, padding_mode=self.padding_mode)
        init_conv(module)
        return b.call_module(module, args)

    def label(self) -> str:
        kernel = "x".join(str(k) for k in spatial(self.kernel, self.spatial_dims, "kernel"))
        text = f"{self.op_name()} {kernel}, {self.out}"
        text += stride_text(spatial(self.stride, self.spatial_dims, "stride"))
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.dilation != 1:
            text += f", dilation={self.dilation}"
        return text


@register
class Conv1d(_ConvNd):
    """1-d convolution over a [channels, length] input.

    Inputs: 1: `[C, L]`
    Output: `[out, L']`, L' = ⌊(L + 2p − d(k−1) − 1)/s⌋ + 1. `same` keeps L and needs stride 1. C and `out`
        divisible by `groups`.
    Lowered to: `nn.Conv1d`, Kaiming-normal (fan_out) weights
    """

    op: Literal["conv1d"]
    spatial_dims: ClassVar[int] = 1


@register
class Conv2d(_ConvNd):
    """2-d convolution over a [channels, height, width] input.

    Inputs: 1: `[C, H, W]`
    Output: `[out, H', W']`, same rule per spatial dim
    Lowered to: `nn.Conv2d`, Kaiming-normal (fan_out) weights
    """

    op: Literal["conv2d"]
    spatial_dims: ClassVar[int] = 2


@register
class Conv3d(_ConvNd):
    """3-d convolution over a [channels, depth, height, width] input (video, volumes).

    Inputs: 1: `[C, D, H, W]`
    Output: `[out, D', H', W']`, per spatial size X: X' = ⌊(X + 2p − d(k−1) − 1)/s⌋ + 1. `same` keeps the sizes and
        needs stride 1. C and `out` divisible by `groups`.
    Lowered to: `nn.Conv3d` (out·C/groups·∏k weights, plus `out` with `bias`), Kaiming-normal (fan_out) weights
    """

    op: Literal["conv3d"]
    spatial_dims: ClassVar[int] = 3
