"""MaxViT's attention (Tu et al. 2022, arXiv:2204.01697): multi-head self-attention with a relative-position bias
inside each window of a partitioned map, a composite op as torchvision has a dedicated module for it. The
partitions themselves (window or grid), the norms, the MLP and the residual sums are written with plain ops
(specs/blocks/maxvit.yaml)."""


import math
from typing import ClassVar, Literal

from pydantic import Field

from .base import Int, Op, Shape, ShapeError, fmt_shape, register


@register
class RelativePositionAttention(Op):
    """MaxViT's relative-position multi-head self-attention, within each of G groups of P tokens, the tokens of a
    √P x √P window (a window partition) or of a grid (a grid partition, after swapping the two axes). Heads of
    `head_dim` features; the queries, keys and values come from one projection, the keys are scaled by D^-½ (D the
    whole width, as torchvision's), each head adds a learnt bias per relative offset (a (2√P − 1)² x heads table,
    indexed by a fixed [P, P] buffer) to its logits, and the heads are merged by a second projection.

    MACs count both projections (4·G·P·D²) and the two attention products, Q·Kᵀ and the weights times V
    (2·G·P²·D), as FlopCounterMode counts torchvision's module; the scaling, the bias and the softmax are not
    counted, as activations are not counted elsewhere.

    Inputs: 1: `[G, P, D]`: G groups (windows) of P tokens, P a square, D divisible by `head_dim`
    Output: `[G, P, D]`; 4D² + 4D + (2√P − 1)²·D/head_dim params; a [P, P] int64 buffer `relative_position_index`
        (in the state_dict, not a param); MACs 4·G·P·D² + 2·G·P²·D
    Lowered to: resgraph's `RelativePositionAttention` module, torchvision's `RelativePositionalMultiHeadAttention`
        (models/maxvit.py) with its attribute names: `to_qkv` and `merge` (`nn.Linear`),
        `relative_position_bias_table`, `relative_position_index`
    """

    op: Literal["relative_position_attention"]
    head_dim: Int(1) = Field(description="features per head; it must divide the input's features (heads = "
                                         "features // head_dim)")

    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("head_dim",)

    def _geometry(self, shape: Shape) -> tuple[int, int, int, int]:
        """(groups, tokens, features, window side)."""
        if len(shape) != 3:
            raise ShapeError(f"`relative_position_attention` expects a [groups, tokens, features] input, got "
                             f"{fmt_shape(shape)}", help="partition the map into windows first (reshape and permute "
                                                         "to [windows, window tokens, channels])")
        groups, tokens, features = shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ShapeError(f"the {tokens} tokens of a group are not a square window",
                             help="each group holds the tokens of a size x size window, e.g. 49 for 7 x 7")
        if features % self.head_dim:
            raise ShapeError(f"the {features} features are not divisible by `head_dim: {self.head_dim}`",
                             attr="head_dim", help="choose a head size that divides the features, e.g. 32")
        return groups, tokens, features, side

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        self._geometry(inputs[0])
        return inputs[0]

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        _, _, features, side = self._geometry(inputs[0])
        heads = features // self.head_dim
        # to_qkv [3D, D] + 3D, merge [D, D] + D, the bias table [(2 side - 1)^2, heads]
        return 4 * features * features + 4 * features + (2 * side - 1) ** 2 * heads

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        groups, tokens, features, _ = self._geometry(inputs[0])
        return 4 * groups * tokens * features * features + 2 * groups * tokens * tokens * features

    def receptive_field(self, fields, inputs, output, meta):
        return None   # tokens of a window, not a spatial map

    def lower(self, b, args, inputs, output, meta):
        from ..modules import RelativePositionAttention as Module

        # what torch is given, unchecked: the module refuses what it cannot compute (tests/test_ops.py runs it so)
        *_, tokens, features = inputs[0]
        return b.call_module(Module(features, self.head_dim, tokens), args)


__all__ = ["RelativePositionAttention"]
