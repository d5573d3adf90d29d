"""Attention: multihead_attention, self-attention over a [length, embed] sequence (torch's layout with
`batch_first=True`), lowered to `nn.MultiheadAttention` as torch's own Transformer layers call it."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import Bool, Float, Int, Op, Shape, ShapeError, fmt_shape, register


@register
class MultiheadAttention(Op):
    """Self-attention: queries, keys and values are all the input, `heads` heads of `embed // heads` channels.

    MACs count the four projections (queries, keys, values and output: 4·L·E² multiply-accumulates)
    and the two attention products (Q·Kᵀ and the weights times V: 2·L²·E); the softmax, the scaling
    and the bias additions are not counted, as norms and activations are not counted elsewhere.

    Inputs: 1: `[L, E]` (a sequence)
    Output: unchanged; self-attention (query = key = value = the input); 4E² + 4E params with bias, 4E² without;
        MACs 4·L·E² (projections) + 2·L²·E (the two attention products)
    Lowered to: `nn.MultiheadAttention(E, heads, dropout, bias, batch_first=True)`, called with
        `need_weights=False`, element 0 of its result
    """

    op: Literal["multihead_attention"]
    heads: Int(1)
    dropout: Float(0.0, 1.0) = 0.0
    bias: Bool = True

    fresh_output: ClassVar[bool] = True   # the output projection's result, which no backward pass needs
    weight_layer: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("heads",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) != 2:
            raise ShapeError(f"`multihead_attention` expects a [length, embed] input, got {fmt_shape(shape)}",
                             help="attention works on sequences: give each sample a [length, embed] shape")
        embed = shape[1]
        if embed % self.heads:
            divisors = [h for h in range(1, min(embed, 64) + 1) if embed % h == 0 and h != 1]
            suggestion = f", e.g. {', '.join(str(h) for h in divisors[-3:])}" if divisors else ""
            raise ShapeError(f"the embedding size {embed} is not divisible by `heads: {self.heads}`", attr="heads",
                             help=f"each head gets embed / heads channels: choose heads that divide {embed}"
                                  f"{suggestion}")
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        embed = inputs[0][1]
        # in_proj: [3E, E] weight (+ 3E bias); out_proj: [E, E] weight (+ E bias)
        return 4 * embed * embed + (4 * embed if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        length, embed = inputs[0]
        return 4 * length * embed * embed + 2 * length * length * embed

    def receptive_field(self, fields, inputs, output, meta):
        # Every output depends on every input position: the field covers the whole input.
        field = fields[0]
        if field is None:
            return None
        size, jump = field
        extents = inputs[0][1:]
        return tuple(r + (n - 1) * j for r, n, j in zip(size, extents, jump)), jump

    def lower(self, b, args, inputs, output, meta):
        import operator

        import torch.nn as nn

        module = nn.MultiheadAttention(inputs[0][-1], self.heads, dropout=self.dropout, bias=self.bias,
                                       batch_first=True)
        (x,) = args
        # Without the weights torch may take its fused path. The module returns (output, weights).
        result = b.call_module(module, [x, x, x], kwargs={"need_weights": False})
        return b.call_function(operator.getitem, [result, 0])
