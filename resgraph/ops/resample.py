"""Upsampling: conv_transpose1d/2d/3d (learned, torch's output-size rule), upsample (fixed interpolation), and
pixel_shuffle / pixel_unshuffle (channels to space and back)."""


import math
from fractions import Fraction
from typing import ClassVar, Literal

from pydantic import Field

from .base import (MAX_DIM, Bool, Choice, Float, Int, Ints, Op, ReceptiveField, Shape, ShapeError, fmt_shape, grown,
                   prod, register, spatial)
from .conv import init_conv, layout_name, stride_text


def transposed_output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int,
                           dilation: int) -> int:
    """torch's ConvTranspose rule: (size - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _scaled_field(field: ReceptiveField | None, taps: list[int], steps: list[Fraction]) -> ReceptiveField | None:
    """The field of an upsampling op whose outputs each read `taps[i]` neighbouring inputs along dimension i and
    step `steps[i]` inputs from one output to the next; None where that step is not a whole number of pixels."""
    if field is None:
        return None
    size, jump = field
    jumps = [j * step for j, step in zip(jump, steps)]
    if any(j.denominator != 1 for j in jumps):
        return None
    return (tuple(grown(r, (t - 1) * j) for r, t, j in zip(size, taps, jump)), tuple(int(j) for j in jumps))


class _ConvTransposeNd(Op):
    out: Int(1) = Field(description="output channels")
    kernel: Ints(1) = Field(description="kernel size: an integer, or one per spatial dimension")
    stride: Ints(1) = Field(1, description="the upsampling factor")
    padding: Ints(0) = Field(0, description="rows and columns removed from each side of the output")
    output_padding: Ints(0) = Field(0, description="extra size on one side, smaller than the stride or dilation")
    dilation: Ints(1) = Field(1, description="spacing between kernel taps")
    groups: Int(1) = Field(1, description="blocked connections from input to output channels")
    bias: Bool = Field(True, description="a learnable bias per output channel")

    spatial_dims: ClassVar[int]
    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True
    makes_map: ClassVar[bool] = True

    def _geometry(self, shape: Shape):
        n = self.spatial_dims
        if len(shape) != n + 1:
            raise ShapeError(f"`{self.op_name()}` expects a {layout_name(n)} input, got {fmt_shape(shape)}",
                             help="insert a `reshape` or `unflatten` before it, or use the op that matches the input's rank")
        return (spatial(self.kernel, n, "kernel"), spatial(self.stride, n, "stride"),
                spatial(self.padding, n, "padding"), spatial(self.output_padding, n, "output_padding"),
                spatial(self.dilation, n, "dilation"))

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        kernel, stride, padding, output_padding, dilation = self._geometry(shape)
        if shape[0] % self.groups:
            raise ShapeError(f"{shape[0]} input channels are not divisible by `groups: {self.groups}`",
                             attr="groups", help="choose groups that divide the input channels")
        if self.out % self.groups:
            raise ShapeError(f"`out: {self.out}` is not divisible by `groups: {self.groups}`", attr="out",
                             help="choose `out` and `groups` so that every group gets the same number of channels")
        if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
            raise ShapeError(f"`output_padding: {fmt_shape(output_padding)}` must be smaller than the stride "
                             f"({fmt_shape(stride)}) or the dilation ({fmt_shape(dilation)})", attr="output_padding",
                             help="output_padding only picks among the sizes a stride > 1 makes ambiguous: "
                                  "use 0 to stride - 1")
        out = tuple(transposed_output_size(*a) for a in zip(shape[1:], kernel, stride, padding, output_padding,
                                                             dilation))
        if any(o < 1 for o in out):
            raise ShapeError(f"`padding: {fmt_shape(padding)}` leaves no output: the result would be "
                             f"{fmt_shape(out)}", attr="padding",
                             help="a transposed convolution's padding removes rows and columns of its output: "
                                  "use less padding or a larger kernel")
        return (self.out, *out)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        return inputs[0][0] * (self.out // self.groups) * prod(kernel) + (self.out if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        # Every input element is multiplied into kernel-size outputs of each channel of its group.
        kernel = spatial(self.kernel, self.spatial_dims, "kernel")
        return prod(inputs[0]) * (self.out // self.groups) * prod(kernel)

    def receptive_field(self, fields, inputs, output, meta):
        # Neighbouring outputs are jump / stride apart: the field ends (None) where that is not a whole number
        # of input pixels, as for a transposed convolution of the network's input itself.
        kernel, stride, padding, _, dilation = self._geometry(inputs[0])
        taps = []
        for k, s, p, d in zip(kernel, stride, padding, dilation):
            # Output o reads input i through tap t where o + p = i·s + t·d; per output phase, the inputs read
            # lie (t_max - t_min)·d / s apart. The widest phase bounds the field.
            span = 1
            for phase in range(s):
                used = [t for t in range(k) if (phase + p - t * d) % s == 0]
                if used:
                    span = max(span, (max(used) - min(used)) * d // s + 1)
            taps.append(span)
        return _scaled_field(fields[0], taps, [Fraction(1, s) for s in stride])

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[self.spatial_dims]
        module = cls(inputs[0][0], self.out, self.kernel, stride=self.stride, padding=self.padding,
                     output_padding=self.output_padding, groups=self.groups, bias=self.bias, dilation=self.dilation)
        init_conv(module)
        return b.call_module(module, args)

    def label(self) -> str:
        n = self.spatial_dims
        kernel = "x".join(str(k) for k in spatial(self.kernel, n, "kernel"))
        text = f"{self.op_name()} {kernel}, {self.out}"
        stride = spatial(self.stride, n, "stride")
        if n != 2:  # newer ops write the stride out; conv_transpose2d keeps `x2` for now
            text += stride_text(stride)
        elif set(stride) != {1}:
            text += f", x{'x'.join(str(s) for s in stride)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text


@register
class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-d convolution over a [channels, length] input.

    Inputs: 1: `[C, L]`
    Output: `[out, L']`, per spatial size X: X' = (X − 1)s − 2p + d(k−1) + output_padding + 1 (≥ 1);
        output_padding smaller than the stride or the dilation; C and `out` divisible by `groups`
    Lowered to: `nn.ConvTranspose1d` (C·out/groups·∏k weights, plus `out` with `bias`), Kaiming-normal (fan_out)
        weights
    """

    op: Literal["conv_transpose1d"]
    spatial_dims: ClassVar[int] = 1


@register
class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-d convolution over a [channels, height, width] input (the "up-convolution" of U-Net).

    Inputs: 1: `[C, H, W]`
    Output: `[out, H', W']`, per spatial size X: X' = (X − 1)s − 2p + d(k−1) + output_padding + 1 (≥ 1);
        output_padding smaller than the stride or the dilation; C and `out` divisible by `groups`
    Lowered to: `nn.ConvTranspose2d` (C·out/groups·∏k weights, plus `out` with `bias`), Kaiming-normal (fan_out)
        weights
    """

    op: Literal["conv_transpose2d"]
    spatial_dims: ClassVar[int] = 2


@register
class ConvTranspose3d(_ConvTransposeNd):
    """Transposed 3-d convolution over a [channels, depth, height, width] input.

    Inputs: 1: `[C, D, H, W]`
    Output: `[out, D', H', W']`, per spatial size X: X' = (X − 1)s − 2p + d(k−1) + output_padding + 1 (≥ 1);
        output_padding smaller than the stride or the dilation; C and `out` divisible by `groups`
    Lowered to: `nn.ConvTranspose3d` (C·out/groups·∏k weights, plus `out` with `bias`), Kaiming-normal (fan_out)
        weights
    """

    op: Literal["conv_transpose3d"]
    spatial_dims: ClassVar[int] = 3


@register
class Upsample(Op):
    """Resizes the spatial dimensions by interpolation: `F.interpolate` with `scale` or `size` (one of them), or
    to the spatial size of a second input, read when the network runs (`inputs: [x, ref]`, as torchvision's
    segmentation heads resize to the image's size).

    With `scale`, each output size is floor(size · scale), as in torch. `nearest` works on 1 to 3 spatial
    dimensions, `bilinear` on [channels, height, width]; `align_corners` applies to `bilinear` only.

    Inputs: 1: `[C, …]`, 1–3 spatial dims (`bilinear`: `[C, H, W]`); or 2: that and `ref` `[C', …]` with as
        many spatial dims, without `scale` or `size`
    Output: `[C, …']`: `size`, ⌊each spatial size · `scale`⌋ (≥ 1), or `ref`'s spatial size
    Lowered to: `F.interpolate`; with `ref`, `F.interpolate(x, size=ref.shape[2:], …)`
    """

    op: Literal["upsample"]
    scale: Float(0.0, positive=True) | None = None
    size: Ints(1) | None = None
    mode: Choice("nearest", "bilinear") = "nearest"
    align_corners: Bool = False

    label_attrs: ClassVar[tuple[str, ...]] = ("scale", "size", "mode")
    makes_map: ClassVar[bool] = True
    max_inputs: ClassVar[int | None] = 2

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        shape = inputs[0]
        if len(inputs) == 2:
            given = "size" if self.size is not None else "scale" if self.scale is not None else None
            if given is not None:
                raise ShapeError(f"`upsample` with a second input takes its size from it, not from `{given}`",
                                 attr=given, help=f"remove `{given}` to resize to the second input's spatial "
                                                  "size, or remove the second input")
        elif (self.scale is None) == (self.size is None):
            raise ShapeError("`upsample` takes either `scale` or `size`" + (", not both" if self.size else ""),
                             attr="size" if self.size is not None else None,
                             help="`scale: 2` doubles every spatial size; `size: [h, w]` sets them")
        ranks = (3,) if self.mode == "bilinear" else (2, 3, 4)
        if len(shape) not in ranks:
            expected = "[channels, height, width]" if self.mode == "bilinear" else \
                "[channels, length], [channels, height, width] or [channels, depth, height, width]"
            raise ShapeError(f"`upsample` with `mode: {self.mode}` expects a {expected} input, got {fmt_shape(shape)}",
                             attr="mode" if self.mode == "bilinear" else None)
        if self.align_corners and self.mode == "nearest":
            raise ShapeError("`align_corners` only applies to `mode: bilinear`", attr="align_corners",
                             help="leave `align_corners` out for `nearest`")
        if len(inputs) == 2:
            ref = inputs[1]
            if len(ref) != len(shape):
                def dims(n: int) -> str:
                    return f"{n} spatial dimension" + ("" if n == 1 else "s")

                raise ShapeError(f"`upsample` cannot resize its {fmt_shape(shape)} input ({dims(len(shape) - 1)}) "
                                 f"to the spatial size of its second input, {fmt_shape(ref)} "
                                 f"({dims(len(ref) - 1)})", attr="inputs",
                                 help="the second input gives only the size: it needs as many spatial dimensions "
                                      "as the first (its channels may differ)")
            return (shape[0], *ref[1:])
        if self.size is not None:
            return (shape[0], *spatial(self.size, len(shape) - 1, "size"))
        scaled = [s * self.scale for s in shape[1:]]   # in floating point, as torch computes it
        if not all(math.isfinite(x) and x <= MAX_DIM for x in scaled):
            raise ShapeError(f"`scale: {self.scale}` makes {fmt_shape(shape[1:])} larger than {MAX_DIM:,} per "
                             "dimension", attr="scale", code="RG046",
                             help="use a scale that gives a size torch can hold, e.g. 2")
        out = tuple(math.floor(x) for x in scaled)
        if any(o < 1 for o in out):
            raise ShapeError(f"`scale: {self.scale}` shrinks {fmt_shape(shape[1:])} to nothing ({fmt_shape(out)})",
                             attr="scale", help="every output size, floor(size * scale), must be at least 1")
        return (shape[0], *out)

    def receptive_field(self, fields, inputs, output, meta):
        # Outputs step by a fraction of an input pixel; the field ends (None) where that step, times the
        # input's jump, is not a whole number of pixels (upsampling the network's input itself, for one).
        sizes, outs = inputs[0][1:], output[1:]
        if self.scale is not None:   # torch steps through the input by 1 / scale
            steps = [Fraction(1) / Fraction(self.scale) for _ in sizes]
        elif self.mode == "bilinear" and self.align_corners:
            steps = [Fraction(s - 1, o - 1) if o > 1 else Fraction(1) for s, o in zip(sizes, outs)]
        else:
            steps = [Fraction(s, o) for s, o in zip(sizes, outs)]
        # nearest reads one input per output, bilinear its two neighbours (one where the size is kept: a copy)
        taps = [2 if self.mode == "bilinear" and step != 1 and s > 1 else 1 for s, step in zip(sizes, steps)]
        # an input of extent 1 (a pooled map spread back over the image) is copied to every output: jump 0
        steps = [Fraction(0) if s == 1 else step for s, step in zip(sizes, steps)]
        return _scaled_field(fields[0], taps, steps)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs: dict = {}
        if len(args) == 2:   # `F.interpolate(x, size=ref.shape[2:], ...)`, read when the network runs
            kwargs["mode"] = self.mode
            if self.mode != "nearest" or self.align_corners:
                kwargs["align_corners"] = self.align_corners
            return b.resize_like(args[0], args[1], kwargs)
        if self.size is not None:
            kwargs["size"] = self.size
        if self.scale is not None:
            kwargs["scale_factor"] = self.scale
        kwargs["mode"] = self.mode
        if self.mode != "nearest" or self.align_corners:
            kwargs["align_corners"] = self.align_corners
        return b.call_function(F.interpolate, args, kwargs)

    def label(self) -> str:
        if self.size is None and self.scale is None:   # the size of a second input
            return f"upsample {self.mode}, to input 2's size"
        return super().label()


class _PixelShuffleBase(Op):
    factor: Int(1) = Field(description="the upscale (pixel_shuffle) or downscale (pixel_unshuffle) factor r")

    def _check(self, shape: Shape) -> None:
        if len(shape) < 3:
            raise ShapeError(f"`{self.op_name()}` expects a [channels, height, width] input, got {fmt_shape(shape)}",
                             help="pixel shuffling moves channels to the last two (spatial) dimensions and back")

    def label(self) -> str:
        return f"{self.op_name()} {self.factor}"


@register
class PixelShuffle(_PixelShuffleBase):
    """Moves channels to space (Shi et al. 2016, sub-pixel convolution), r = `factor`.

    Inputs: 1: `[..., C·r², H, W]`, the channels divisible by r²
    Output: `[..., C, H·r, W·r]`; dimensions before the last three are kept
    Lowered to: `F.pixel_shuffle(x, factor)`
    """

    op: Literal["pixel_shuffle"]

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        self._check(shape)
        *lead, c, h, w = shape
        r2 = self.factor ** 2
        if c % r2:
            raise ShapeError(f"{c} channels are not divisible by `factor`² = {r2}", attr="factor",
                             help="pixel_shuffle turns each group of factor² channels into a factor×factor patch")
        return (*lead, c // r2, h * self.factor, w * self.factor)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.pixel_shuffle, args, {"upscale_factor": self.factor})


@register
class PixelUnshuffle(_PixelShuffleBase):
    """Moves space to channels, the inverse of `pixel_shuffle`, r = `factor`.

    Inputs: 1: `[..., C, H·r, W·r]`, H and W divisible by r
    Output: `[..., C·r², H, W]`; dimensions before the last three are kept
    Lowered to: `F.pixel_unshuffle(x, factor)`
    """

    op: Literal["pixel_unshuffle"]

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        self._check(shape)
        *lead, c, h, w = shape
        if h % self.factor or w % self.factor:
            raise ShapeError(f"the spatial size {fmt_shape((h, w))} is not divisible by `factor: {self.factor}`",
                             attr="factor", help="pixel_unshuffle turns each factor×factor patch into channels")
        return (*lead, c * self.factor ** 2, h // self.factor, w // self.factor)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.pixel_unshuffle, args, {"downscale_factor": self.factor})
