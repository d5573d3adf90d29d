"""Tensors that are not layers: `parameter` (learnable, with a named init) and `buffer` (fixed, from a named
generator). Each is the node's own tensor in the state_dict, under the node's name or its `key`.

Such a tensor has a batch of 1 (or none): it broadcasts against batched tensors (`add`, `mul`), and
`expand` brings it to a batch (ViT's class token).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import Bool, Choice, Float, Ints, Op, Shape, ShapeError, fmt_shape, prod, register
from .layout import Sizes

BATCH = ("store a leading size of 1 for the batch, as torchvision's ViT does (`class_token` is [1, 1, 768] for a "
         "per-sample shape [1, 768]); false stores the per-sample shape alone (ConvNeXt's `layer_scale`, "
         "[96, 1, 1]). Either broadcasts against a batch")


class _Tensor(Op):
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = 0

    def stored_shape(self, shape: Shape) -> tuple[int, ...]:
        return ((1,) if self.batch else ()) + tuple(shape)

    def receptive_field(self, fields, inputs, output, meta):
        return None


@register
class Parameter(_Tensor):
    """A learnable tensor: ViT's `class_token` and `pos_embedding`, ConvNeXt's `layer_scale`.

    Inputs: 0
    Output: `shape` (stored with a leading 1 for the batch unless `batch: false`); ∏shape params. Initialised by
        `init`: `zeros`, `ones`, `constant` (`value`), `normal` (`mean`, `std`), `trunc_normal` (`mean`, `std`, cut
        at `mean` ± 2 `std`) or `uniform` (`low` ≤ `high`)
    Lowered to: an `nn.Parameter` of the node's module, read with `self.<name>`
    """

    op: Literal["parameter"]
    shape: Sizes(1) = Field(description="the per-sample shape")
    batch: Bool = Field(True, description=BATCH)
    init: Choice("zeros", "ones", "constant", "normal", "trunc_normal", "uniform") = Field(
        "zeros", description="how its values start")
    value: Float() = Field(0.0, description="the value of `init: constant`")
    mean: Float() = Field(0.0, description="the mean of `init: normal` and `trunc_normal`")
    std: Float(0.0) = Field(1.0, description="the standard deviation of `init: normal` and `trunc_normal`")
    low: Float() = Field(0.0, description="the lower bound of `init: uniform`")
    high: Float() = Field(1.0, description="the upper bound of `init: uniform`")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        if self.init == "uniform" and self.low > self.high:
            raise ShapeError(f"`low: {self.low}` is above `high: {self.high}`", attr="low",
                             help="give `low` <= `high`")
        return tuple(self.shape)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return prod(self.shape)

    def make(self) -> Any:
        import torch
        import torch.nn as nn

        tensor = torch.empty(self.stored_shape(self.shape))
        if not tensor.is_meta:
            if self.init == "zeros":
                nn.init.zeros_(tensor)
            elif self.init == "ones":
                nn.init.ones_(tensor)
            elif self.init == "constant":
                nn.init.constant_(tensor, self.value)
            elif self.init == "normal":
                nn.init.normal_(tensor, self.mean, self.std)
            elif self.init == "trunc_normal":
                nn.init.trunc_normal_(tensor, self.mean, self.std, self.mean - 2 * self.std,
                                      self.mean + 2 * self.std)
            else:
                nn.init.uniform_(tensor, self.low, self.high)
        return nn.Parameter(tensor)

    def lower(self, b, args, inputs, output, meta):
        return b.get_attr(self.make())

    def label(self) -> str:
        return f"parameter {fmt_shape(self.stored_shape(self.shape))}, {self.init}"


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The Transformer's positions (Vaswani et al. 2017): sin(p / 10000^(2i/d)) at 2i, cos at 2i + 1."""
    import torch

    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table.float()


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """Swin's index into a table of relative position biases, [h*w, h*w] int64: torchvision's
    `_get_relative_position_bias` table index, as `relative_position_index` is built in swin_transformer.py."""
    import torch

    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))
    flat = torch.flatten(coords, 1)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += height - 1
    relative[:, :, 1] += width - 1
    relative[:, :, 0] *= 2 * width - 1
    return relative.sum(-1)


@register
class Buffer(_Tensor):
    """A fixed (not learnable) tensor from a named generator.

    Inputs: 0
    Output: `shape` for `zeros` and `ones`; `sinusoidal` positions of `shape: [length, dim]` (dim even); Swin's
        `relative_position_index` of a `window: [h, w]` is `[h*w, h*w]`, int64. Stored with a leading 1 with
        `batch`; no params
    Lowered to: a buffer of the node's module, saved in the state_dict (unless `persistent: false`)
    """

    op: Literal["buffer"]
    generator: Choice("zeros", "ones", "sinusoidal", "relative_position_index") = Field(
        description="what the tensor holds")
    shape: Sizes(1) | None = Field(None, description="the per-sample shape (not for `relative_position_index`)")
    window: Ints(1) | None = Field(None, description="the window [height, width] of `relative_position_index`")
    batch: Bool = Field(False, description=BATCH)
    persistent: Bool = Field(True, description="saved in the state_dict")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        if self.generator == "relative_position_index":
            if self.window is None or self.shape is not None:
                raise ShapeError("`relative_position_index` takes `window: [height, width]` and no `shape`",
                                 attr="window" if self.window is not None else None,
                                 help="e.g. `window: [7, 7]`")
            h, w = self._window()
            return (h * w, h * w)
        if self.shape is None or self.window is not None:
            raise ShapeError(f"`{self.generator}` takes a `shape` and no `window`",
                             attr="window" if self.window is not None else None, help="e.g. `shape: [197, 768]`")
        if self.generator == "sinusoidal" and (len(self.shape) != 2 or self.shape[1] % 2):
            raise ShapeError(f"`sinusoidal` positions take `shape: [length, dim]` with an even dim, got "
                             f"{fmt_shape(self.shape)}", attr="shape")
        return tuple(self.shape)

    def _window(self) -> tuple[int, int]:
        if isinstance(self.window, int):
            return self.window, self.window
        if len(self.window) != 2:
            raise ShapeError(f"`window` takes two sizes, [height, width], got {len(self.window)}", attr="window")
        return tuple(self.window)

    def make(self, shape: Shape) -> Any:
        import torch

        if self.generator == "zeros":
            tensor = torch.zeros(shape)
        elif self.generator == "ones":
            tensor = torch.ones(shape)
        elif self.generator == "sinusoidal":
            tensor = sinusoidal_positions(*shape)
        else:
            h, w = self._window()
            tensor = relative_position_index(h, w)
        return tensor.reshape(self.stored_shape(shape))

    def lower(self, b, args, inputs, output, meta):
        # a buffer out of the state_dict is computed again after meta-device materialisation (lower.py)
        return b.get_attr(self.make(output), persistent=self.persistent,
                          recompute=None if self.persistent else functools.partial(self.make, output))

    def label(self) -> str:
        return f"buffer {self.generator}"
