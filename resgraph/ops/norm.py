"""Normalisation layers: batchnorm1d/2d/3d, instancenorm1d/2d/3d, layernorm, rmsnorm, groupnorm."""


from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import Bool, Float, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register


def init_norm(module: Any) -> None:
    """torchvision's init for norm layers: weight 1, bias 0."""
    import torch.nn as nn

    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class _BatchNorm(Op):
    eps: Float(0.0, positive=True) = 1e-5
    momentum: Float(0.0, 1.0) = 0.1
    affine: Bool = True
    track_running_stats: Bool = True

    ranks: ClassVar[tuple[int, ...]]
    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) not in self.ranks:
            layouts = {1: "[features]", 2: "[channels, length]", 3: "[channels, height, width]",
                       4: "[channels, depth, height, width]"}
            expected = " or ".join(layouts[r] for r in self.ranks)
            raise ShapeError(f"`{self.op_name()}` expects a {expected} input, got {fmt_shape(shape)}",
                             help="use batchnorm1d for [features] or [channels, length], batchnorm2d for images, "
                                  "batchnorm3d for [channels, depth, height, width]")
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return 2 * inputs[0][0] if self.affine else 0

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}[self.ranks[-1]]
        module = cls(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                     track_running_stats=self.track_running_stats)
        init_norm(module)
        return b.call_module(module, args)


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the features of `[F]` or the channels of `[C, L]`.

    Inputs: 1: `[F]` or `[C, L]`
    Output: unchanged; 2·C params if affine
    Lowered to: `nn.BatchNorm1d`, weight 1, bias 0
    """

    op: Literal["batchnorm1d"]
    ranks: ClassVar[tuple[int, ...]] = (1, 2)


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over the channels of a `[C, H, W]` map.

    Inputs: 1: `[C, H, W]`
    Output: unchanged
    Lowered to: `nn.BatchNorm2d`, weight 1, bias 0
    """

    op: Literal["batchnorm2d"]
    ranks: ClassVar[tuple[int, ...]] = (3,)


@register
class BatchNorm3d(_BatchNorm):
    """Batch normalisation over the channels of a [channels, depth, height, width] input (video, volumes).

    Inputs: 1: `[C, D, H, W]`
    Output: unchanged; 2·C params if affine
    Lowered to: `nn.BatchNorm3d`, weight 1, bias 0
    """

    op: Literal["batchnorm3d"]
    ranks: ClassVar[tuple[int, ...]] = (4,)


class _InstanceNorm(Op):
    eps: Float(0.0, positive=True) = Field(1e-5, description="added to the variance for stability")
    momentum: Float(0.0, 1.0) = Field(0.1, description="running-statistics update rate (with track_running_stats)")
    affine: Bool = Field(False, description="a learnable per-channel weight and bias (torch's default: none)")
    track_running_stats: Bool = Field(False, description="keep running statistics and use them in eval mode")

    spatial_dims: ClassVar[int]
    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        from .conv import layout_name

        (shape,) = inputs
        n = self.spatial_dims
        if len(shape) != n + 1:
            raise ShapeError(f"`{self.op_name()}` expects a {layout_name(n)} input, got {fmt_shape(shape)}",
                             help="instance norm normalises each channel of each sample over its spatial "
                                  "dimensions: use the op that matches the input's rank")
        if prod(shape[1:]) == 1:
            raise ShapeError(f"`{self.op_name()}` over a single spatial element ({fmt_shape(shape)}) normalises "
                             "every value to 0", help="torch refuses it unless it uses running statistics in eval "
                                                      "mode; normalise before the spatial size shrinks to 1, or use "
                                                      "batch norm")
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return 2 * inputs[0][0] if self.affine else 0

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        cls = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[self.spatial_dims]
        module = cls(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                     track_running_stats=self.track_running_stats)
        init_norm(module)
        return b.call_module(module, args)


@register
class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of a [channels, length] input: each channel of each sample over its length.

    Inputs: 1: `[C, L]`
    Output: unchanged; 2·C params with `affine`. A single spatial element is refused (it would normalise to 0)
    Lowered to: `nn.InstanceNorm1d`, weight 1, bias 0
    """

    op: Literal["instancenorm1d"]
    spatial_dims: ClassVar[int] = 1


@register
class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of a [channels, height, width] input (style transfer, CycleGAN's ResNet generator).

    Inputs: 1: `[C, H, W]`
    Output: unchanged; 2·C params with `affine`. A single spatial element is refused (it would normalise to 0)
    Lowered to: `nn.InstanceNorm2d`, weight 1, bias 0
    """

    op: Literal["instancenorm2d"]
    spatial_dims: ClassVar[int] = 2


@register
class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of a [channels, depth, height, width] input.

    Inputs: 1: `[C, D, H, W]`
    Output: unchanged; 2·C params with `affine`. A single spatial element is refused (it would normalise to 0)
    Lowered to: `nn.InstanceNorm3d`, weight 1, bias 0
    """

    op: Literal["instancenorm3d"]
    spatial_dims: ClassVar[int] = 3


CHANNELS_FIRST = ("normalise over the channels (dimension 1) of a [channels, ...] map at every position, as "
                  "ConvNeXt's LayerNorm2d; `shape` is then left out")


class _TrailingNorm(Op):
    shape: Ints(1) | None = Field(None, description="the trailing dimensions to normalise over (default: the last)")
    channels_first: Bool = Field(False, description=CHANNELS_FIRST)
    elementwise_affine: Bool = True

    fresh_output: ClassVar[bool] = True

    def normalized_shape(self, input_shape: Shape) -> tuple[int, ...]:
        if self.channels_first:
            return input_shape[:1]
        if self.shape is None:
            return input_shape[-1:]
        return (self.shape,) if isinstance(self.shape, int) else tuple(self.shape)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if not shape:
            raise ShapeError(f"`{self.op_name()}` needs an input with at least one dimension to normalise over, "
                             "got []")
        if self.channels_first:
            if self.shape is not None:
                raise ShapeError("`channels_first` normalises over the channels: leave `shape` out", attr="shape")
            return shape
        normalized = self.normalized_shape(shape)
        if len(normalized) > len(shape) or tuple(shape[len(shape) - len(normalized):]) != normalized:
            raise ShapeError(f"`shape: {fmt_shape(normalized)}` does not match the trailing dimensions of the "
                             f"input {fmt_shape(shape)}", attr="shape",
                             help="leave `shape` out to normalise over the last dimension")
        return shape


@register
class LayerNorm(_TrailingNorm):
    """Layer normalisation over the trailing `shape` dimensions (default: the last), or the channels.

    Inputs: 1: `[..., *shape]`; with `channels_first`, `[C, ...]`
    Output: unchanged; ∏shape params with `elementwise_affine` (2·∏shape with `bias`); with `channels_first`, C or 2·C
    Lowered to: `nn.LayerNorm`; with `channels_first`, resgraph's `ChannelLayerNorm` (an `nn.LayerNorm` that moves
        the channels last and back, as torchvision's LayerNorm2d, with the same `weight` and `bias`)
    """

    op: Literal["layernorm"]
    eps: Float(0.0, positive=True) = 1e-5
    bias: Bool = True

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        if not self.elementwise_affine:
            return 0
        return prod(self.normalized_shape(inputs[0])) * (2 if self.bias else 1)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        from ..modules import ChannelLayerNorm

        cls = ChannelLayerNorm if self.channels_first else nn.LayerNorm
        module = cls(self.normalized_shape(inputs[0]), eps=self.eps, elementwise_affine=self.elementwise_affine,
                     bias=self.bias)
        return b.call_module(module, args)


@register
class RMSNorm(_TrailingNorm):
    """Root-mean-square norm (Zhang & Sennrich 2019; Llama): x / sqrt(mean(x²) + eps) times a learnt `weight`.

    Inputs: 1: `[..., *shape]` (default: over the last dimension); with `channels_first`, `[C, ...]`
    Output: unchanged; ∏shape params with `elementwise_affine` (C with `channels_first`), no bias
    Lowered to: `nn.RMSNorm`; with `channels_first`, resgraph's `ChannelRMSNorm`
    """

    op: Literal["rmsnorm"]
    eps: Float(0.0, positive=True) | None = Field(None, description="added to the mean square; default: torch's, "
                                                                    "the dtype's machine epsilon")

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return prod(self.normalized_shape(inputs[0])) if self.elementwise_affine else 0

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        from ..modules import ChannelRMSNorm

        cls = ChannelRMSNorm if self.channels_first else nn.RMSNorm
        module = cls(self.normalized_shape(inputs[0]), eps=self.eps, elementwise_affine=self.elementwise_affine)
        return b.call_module(module, args)


@register
class GroupNorm(Op):
    """Group normalisation over [channels, ...] inputs.

    Inputs: 1: `[C, …]`
    Output: unchanged; C divisible by `groups`
    Lowered to: `nn.GroupNorm`, weight 1, bias 0
    """

    op: Literal["groupnorm"]
    groups: Int(1)
    eps: Float(0.0, positive=True) = 1e-5
    affine: Bool = True

    fresh_output: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("groups",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if not shape:
            raise ShapeError("`groupnorm` expects a [channels, ...] input, got []")
        if shape[0] % self.groups:
            raise ShapeError(f"{shape[0]} channels are not divisible by `groups: {self.groups}`", attr="groups")
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return 2 * inputs[0][0] if self.affine else 0

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        module = nn.GroupNorm(self.groups, inputs[0][0], eps=self.eps, affine=self.affine)
        init_norm(module)
        return b.call_module(module, args)
