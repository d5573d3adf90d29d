"""Attention: multihead_attention over [length, embed] sequences (torch's layout with `batch_first=True`):
self-attention, or cross-attention to a memory, optionally causal; lowered to `nn.MultiheadAttention` as
torch's own Transformer layers call it."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import GLOBAL, Bool, Float, Int, Op, Shape, ShapeError, fmt_shape, register


@register
class MultiheadAttention(Op):
    """Multi-head attention, `heads` heads of `embed // heads` channels. Inputs: `[x]` (self-attention:
    queries, keys and values are all x), `[query, memory]` (cross-attention: keys and values are the
    memory) or `[query, key, value]`; each [length, features]. Output: the query's shape.

    MACs count the four projections (queries, keys, values and output: 4·L·E² multiply-accumulates for
    self-attention) and the two attention products (Q·Kᵀ and the weights times V: 2·L²·E); the softmax,
    the scaling and the bias additions are not counted, as norms and activations are not counted elsewhere.

    Inputs: 1–3: the queries `[L, E]`, then the keys (and values) to attend to `[S, Ek]` (self-attention
        where there is one input; the keys double as values where there are two)
    Output: `[L, E]`; 4E² + 4E params with bias for self-attention, 4E² without; MACs 4·L·E² (projections)
        + 2·L·S·E (the two attention products) for self-attention; `causal` masks later positions
    Lowered to: `nn.MultiheadAttention(E, heads, dropout, bias, batch_first=True)` (with `kdim`/`vdim` where the
        key and value sizes differ), called with `need_weights=False`, element 0 of its result
    """

    op: Literal["multihead_attention"]
    heads: Int(1) = Field(description="attention heads; they must divide the query's embedding size")
    dropout: Float(0.0, 1.0) = Field(0.0, description="dropout on the attention weights, in training")
    bias: Bool = Field(True, description="biases in the input and output projections")
    causal: Bool = Field(False, description="query position i attends to key positions up to i only (a decoder's "
                                            "self-attention)")

    max_inputs: ClassVar[int | None] = 3
    fresh_output: ClassVar[bool] = True   # the output projection's result, which no backward pass needs
    weight_layer: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("heads", "causal")

    @staticmethod
    def _roles(inputs: list[Shape]) -> tuple[Shape, Shape, Shape]:
        """(query, key, value) shapes."""
        if len(inputs) == 1:
            return inputs[0], inputs[0], inputs[0]
        if len(inputs) == 2:
            return inputs[0], inputs[1], inputs[1]
        return inputs[0], inputs[1], inputs[2]

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        shape, key, value = self._roles(inputs)
        for other, role in ((key, "key"), (value, "value")):
            if len(inputs) > 1 and len(other) != 2:
                raise ShapeError(f"`multihead_attention` expects a [length, features] {role}, got {fmt_shape(other)}",
                                 help="attention works on sequences: give each sample a [length, features] shape")
        if len(inputs) > 1 and key[0] != value[0]:
            raise ShapeError(f"the key has {key[0]} positions and the value {value[0]}",
                             help="keys and values come in pairs")
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
        (_, embed), (_, kdim), (_, vdim) = self._roles(inputs)
        # query, key and value projections to E ([3E, E] in one in_proj when kdim = vdim = E, + 3E bias);
        # out_proj: [E, E] weight (+ E bias)
        return embed * (2 * embed + kdim + vdim) + (4 * embed if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        (length, embed), (memory, kdim), (_, vdim) = self._roles(inputs)
        return (2 * length * embed * embed + memory * (kdim + vdim) * embed   # the four projections
                + 2 * length * memory * embed)                               # Q·Kᵀ and the weights times V

    def receptive_field(self, fields, inputs, output, meta):
        # Every output depends on every input position: the field covers the whole input.
        field = fields[0]
        if field is None:
            return None
        size, jump = field
        return tuple(GLOBAL if n > 1 else r for r, n in zip(size, inputs[0][1:])), jump

    def lower(self, b, args, inputs, output, meta):
        import operator

        import torch.nn as nn

        query, key, value = self._roles(inputs)
        kdim, vdim = key[-1], value[-1]
        module = nn.MultiheadAttention(query[-1], self.heads, dropout=self.dropout, bias=self.bias, batch_first=True,
                                       kdim=kdim if kdim != query[-1] else None,
                                       vdim=vdim if vdim != query[-1] else None)
        q, k, v = self._roles(args)
        # Without the weights torch may take its fused path. The module returns (output, weights).
        if self.causal:
            # torch needs a mask beside the `is_causal` hint, though with need_weights=False it uses the hint
            mask = b.call_method("new_ones", [q, query[0], key[0]], {"dtype": _bool_dtype()})
            mask = b.call_method("triu", [mask, 1])
            # forward(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)
            result = b.call_module(module, [q, k, v, None, False, mask, True, True])
        else:
            result = b.call_module(module, [q, k, v], kwargs={"need_weights": False})
        return b.call_function(operator.getitem, [result, 0])


def _bool_dtype():
    import torch

    return torch.bool
