"""Sequence ops: embedding (of int64 ids), the recurrent layers lstm and gru, scaled-dot-product attention
over explicit queries, keys and values, position ids, and rotary position embedding. Sequences are [length, features]
per sample (torch's `batch_first=True` layout)."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import Bool, Float, Int, Op, Shape, ShapeError, fmt_shape, register


def _sequence(op: str, shape: Shape, what: str = "input") -> tuple[int, int]:
    if len(shape) != 2:
        raise ShapeError(f"`{op}` expects a [length, features] {what}, got {fmt_shape(shape)}",
                         help="sequence ops read [length, features] per sample (torch's batch_first layout); "
                              "an `embedding` of token ids gives that shape")
    return shape[0], shape[1]


@register
class Embedding(Op):
    """A lookup table: each int64 id of the input becomes a learnable vector of `dim` values.

    Inputs: 1: int64 ids of any shape (declare the input with `dtype: int64`), each in 0 .. num − 1
    Output: the input's shape with `dim` appended, e.g. `[length]` → `[length, dim]`; num·dim params
    Lowered to: `nn.Embedding(num, dim, padding_idx)`; state_dict key `<name>.weight`
    """

    op: Literal["embedding"]
    num: Int(1) = Field(description="the number of ids (vocabulary size): ids run from 0 to num - 1")
    dim: Int(1) = Field(description="the size of each vector")
    padding_idx: Int(None) | None = Field(None, description="an id whose vector is zero and gets no gradient "
                                                             "(e.g. the padding token); negative counts from num")

    label_attrs: ClassVar[tuple[str, ...]] = ("num", "dim")

    def infer_dtype(self, dtypes: list[str]) -> str:
        if dtypes[0] != "int64":
            raise ShapeError("`embedding` reads integer ids but its input holds floats",
                             help="declare the input as ids: `input: {shape: [length], dtype: int64}`",
                             code="RG090")
        return "float"

    def index_bound(self, position: int) -> int | None:
        return self.num

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        if self.padding_idx is not None and not -self.num <= self.padding_idx < self.num:
            raise ShapeError(f"`padding_idx: {self.padding_idx}` is not an id of a table of {self.num}",
                             attr="padding_idx", help=f"ids run from 0 to {self.num - 1} (or -1 to -{self.num})")
        return (*inputs[0], self.dim)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return self.num * self.dim

    def parameter_shapes(self, inputs: list[Shape], output: Shape, meta: dict) -> dict[str, Shape]:
        return {"weight": (self.num, self.dim)}

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        return b.call_module(nn.Embedding(self.num, self.dim, padding_idx=self.padding_idx), args)

    def receptive_field(self, fields, inputs, output, meta):
        return None


class _Recurrent(Op):
    hidden: Int(1) = Field(description="the size of the hidden state (per direction)")
    layers: Int(1, 1000) = Field(1, description="recurrent layers stacked, each reading the one below's states")
    bidirectional: Bool = Field(False, description="also run each layer backwards; the output concatenates "
                                                   "both directions' states (2 * hidden)")
    dropout: Float(0.0, 1.0) = Field(0.0, description="dropout on the states between layers (not after the last), "
                                                      "in training")
    bias: Bool = Field(True, description="learn the biases (two per gate, as torch's)")

    gates: ClassVar[int]
    module_name: ClassVar[str]
    weight_layer: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("hidden", "layers", "bidirectional")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        length, _ = _sequence(self.op_name(), inputs[0])
        return (length, self.hidden * self.directions)

    def _per_step(self, features: int) -> tuple[int, int]:
        """(weights, biases) of every layer and direction: what one time step multiplies by, and adds."""
        weights = biases = 0
        for layer in range(self.layers):
            width = features if layer == 0 else self.hidden * self.directions
            weights += self.directions * self.gates * self.hidden * (width + self.hidden)
            biases += self.directions * 2 * self.gates * self.hidden
        return weights, biases

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        weights, biases = self._per_step(inputs[0][1])
        return weights + (biases if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return inputs[0][0] * self._per_step(inputs[0][1])[0]

    def receptive_field(self, fields, inputs, output, meta):
        return None

    def lower(self, b, args, inputs, output, meta):
        import operator

        import torch.nn as nn

        cls = getattr(nn, self.module_name)
        module = cls(inputs[0][-1], self.hidden, num_layers=self.layers, bias=self.bias, batch_first=True,
                     dropout=self.dropout, bidirectional=self.bidirectional)
        # The module returns (every step's hidden state of the last layer, the final states).
        result = b.call_module(module, args)
        return b.call_function(operator.getitem, [result, 0])


@register
class LSTM(_Recurrent):
    """A long short-term memory network over a sequence.

    Inputs: 1: `[length, features]`
    Output: `[length, hidden]` (`[length, 2·hidden]` bidirectional): the last layer's hidden state at every step.
        Params per layer and direction: 4·hidden·(input + hidden) weights, plus 8·hidden biases with `bias`
    Lowered to: `nn.LSTM(..., batch_first=True)`, output 0; torch's state_dict keys (`<name>.weight_ih_l0`,
        `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `..._reverse`)
    """

    op: Literal["lstm"]
    gates: ClassVar[int] = 4
    module_name: ClassVar[str] = "LSTM"


@register
class GRU(_Recurrent):
    """A gated recurrent unit network over a sequence.

    Inputs: 1: `[length, features]`
    Output: `[length, hidden]` (`[length, 2·hidden]` bidirectional): the last layer's hidden state at every step.
        Params per layer and direction: 3·hidden·(input + hidden) weights, plus 6·hidden biases with `bias`
    Lowered to: `nn.GRU(..., batch_first=True)`, output 0; torch's state_dict keys
    """

    op: Literal["gru"]
    gates: ClassVar[int] = 3
    module_name: ClassVar[str] = "GRU"


@register
class ScaledDotProductAttention(Op):
    """Scaled-dot-product attention over explicit queries, keys and values.

    Inputs: 3 or 4: query `[Lq, Eq]`, key `[Lk, Ek]`, value `[Lk, Ev]`; the query's features split into `heads`
        heads of size Eq/heads, the key's and value's into `kv_heads` (default `heads`; fewer is grouped-query
        attention, `heads` a multiple of it), with Ek = kv_heads · Eq/heads. A fourth input, a key mask `[Lk]`
        (int64 or float: nonzero where the key may be attended to, 0 at padding; Hugging Face's `attention_mask`),
        hides the keys it zeroes from every query
    Output: `[Lq, heads · Ev/kv_heads]`; no params (put `linear` projections before it). MACs count both products,
        Q·Kᵀ and the weights times V
    Lowered to: resgraph's `ScaledDotProductAttention` module: `F.scaled_dot_product_attention` with `is_causal`
        and `dropout_p` (training only); a key mask becomes its boolean `attn_mask` (with the causal mask, where
        `causal`)
    """

    op: Literal["sdpa"]
    heads: Int(1) = Field(1, description="query heads")
    kv_heads: Int(1) | None = Field(None, description="key/value heads (grouped-query attention); default: `heads`")
    causal: Bool = Field(False, description="position i attends to key positions up to i only (the mask is "
                                            "aligned top-left where the query and key lengths differ, as torch's)")
    dropout: Float(0.0, 1.0) = Field(0.0, description="dropout on the attention weights, in training")
    scale: Float(positive=True) | None = Field(None, description="the factor of Q·Kᵀ; default 1 / sqrt(head size)")

    min_inputs: ClassVar[int] = 3
    max_inputs: ClassVar[int | None] = 4
    label_attrs: ClassVar[tuple[str, ...]] = ("heads", "kv_heads", "causal")

    def infer_dtype(self, dtypes: list[str]) -> str:
        # The key mask may hold ids (a tokenizer's int64 `attention_mask`); queries, keys and values are floats.
        return super().infer_dtype(dtypes[:3])

    def index_bound(self, position: int) -> int | None:
        return 2 if position == 3 else None   # a mask of 0 and 1

    def _geometry(self, inputs: list[Shape]) -> tuple[int, int, int, int]:
        (lq, eq), (lk, ek), (lv, ev) = (_sequence("sdpa", s, what) for s, what in
                                         zip(inputs, ("query", "key", "value")))
        heads, kv_heads = self.heads, self.kv_heads or self.heads
        if heads % kv_heads:
            raise ShapeError(f"`heads: {heads}` is not a multiple of `kv_heads: {kv_heads}`", attr="kv_heads",
                             help="each key/value head serves the same number of query heads")
        if eq % heads:
            raise ShapeError(f"the query's {eq} features are not divisible by `heads: {heads}`", attr="heads")
        head = eq // heads
        if ek != kv_heads * head:
            raise ShapeError(f"the key has {ek} features; {kv_heads} key head{'s' * (kv_heads != 1)} of the "
                             f"query's head size {head} need {kv_heads * head}", attr="kv_heads",
                             help="queries and keys need the same head size")
        if ev % kv_heads:
            raise ShapeError(f"the value's {ev} features are not divisible by `kv_heads: {kv_heads}`",
                             attr="kv_heads")
        if lk != lv:
            raise ShapeError(f"the key has {lk} positions and the value {lv}", help="keys and values come in pairs")
        if len(inputs) == 4 and tuple(inputs[3]) != (lk,):
            raise ShapeError(f"the key mask is {fmt_shape(inputs[3])}; the key has {lk} positions, so the mask "
                             f"must be [{lk}]", help="the fourth input masks keys: one value per key position, "
                                                     "nonzero to attend, 0 to hide")
        return lq, lk, head, ev // kv_heads

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        lq, _, _, value_head = self._geometry(inputs)
        return (lq, self.heads * value_head)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        lq, lk, head, value_head = self._geometry(inputs)
        return self.heads * lq * lk * (head + value_head)

    def receptive_field(self, fields, inputs, output, meta):
        return None

    def lower(self, b, args, inputs, output, meta):
        from ..modules import ScaledDotProductAttention as Module

        return b.call_module(Module(self.heads, self.kv_heads or self.heads, self.causal, self.dropout, self.scale),
                             args)


@register
class Positions(Op):
    """The position ids of a sequence, 0 .. length − 1: what a learnt position table (an `embedding`) reads, as
    BERT's `position_embeddings` do.

    Inputs: 1: a sequence `[length, ...]` of ids or features (only its length is read)
    Output: `[length]`, int64: 0, 1, ..., length − 1 in every sample; no params, no state (nothing in the state_dict,
        as Hugging Face's non-persistent `position_ids` buffer)
    Lowered to: resgraph's `Positions` module: `torch.arange(length)` on the input's device, expanded to the batch
    """

    op: Literal["positions"]

    def infer_dtype(self, dtypes: list[str]) -> str:
        return "int64"   # of ids or of features alike

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        if not inputs[0]:
            raise ShapeError("`positions` needs a sequence `[length, ...]`, got a scalar per sample",
                             help="give it the token ids or the embedded sequence")
        return (inputs[0][0],)

    def receptive_field(self, fields, inputs, output, meta):
        return None

    def lower(self, b, args, inputs, output, meta):
        from ..modules import Positions as Module

        return b.call_module(Module(), args)


@register
class Rope(Op):
    """Rotary position embedding, e.g. of the queries or the keys before `sdpa`.

    Inputs: 1: `[length, features]`, split into `heads` heads of an even size
    Output: unchanged; no params. In each head, channel pairs are rotated by position · base^(−2i / head size),
        positions counting from 0; `interleaved: false` pairs channel i with i + head size / 2 (Hugging Face Llama's
        `rotate_half`), `interleaved: true` pairs 2i with 2i + 1 (RoFormer, GPT-J, Meta's Llama)
    Lowered to: resgraph's `RotaryEmbedding` module
    """

    op: Literal["rope"]
    heads: Int(1) = Field(1, description="heads the features are split into; each is rotated alike")
    base: Float(positive=True) = Field(10000.0, description="the base of the rotation frequencies (theta)")
    interleaved: Bool = Field(False, description="pair channels 2i and 2i + 1 instead of i and i + head size / 2")

    label_attrs: ClassVar[tuple[str, ...]] = ("heads", "interleaved")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        _, features = _sequence("rope", inputs[0])
        if features % self.heads:
            raise ShapeError(f"{features} features are not divisible by `heads: {self.heads}`", attr="heads")
        if (features // self.heads) % 2:
            raise ShapeError(f"the head size {features // self.heads} is odd: rotary embedding rotates pairs of "
                             "channels", attr="heads", help="use an even head size")
        return inputs[0]

    def receptive_field(self, fields, inputs, output, meta):
        return None

    def lower(self, b, args, inputs, output, meta):
        from ..modules import RotaryEmbedding

        return b.call_module(RotaryEmbedding(self.heads, self.base, self.interleaved), args)
