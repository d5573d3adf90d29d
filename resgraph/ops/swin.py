"""Swin Transformer's composite ops (Liu et al. 2021, 2022): shifted-window attention with its relative
position biases, and patch merging; each as torchvision's module of the same name, over channels-last maps."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import Bool, Float, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register, spatial, window_field

CPB_HIDDEN = 512   # the width of Swin V2's continuous position bias MLP (torchvision's `cpb_mlp`)


def _channels_last_map(op: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"`{op}` expects a channels-last map [height, width, channels], got {fmt_shape(shape)}",
                         help="move the channels last first: `{op: permute, dims: [0, 2, 3, 1]}`")
    return shape[0], shape[1], shape[2]


# The most tokens one window may hold: its `relative_position_index` buffer has one int64 entry per pair of
# them (4,096 tokens, a 64 x 64 window: 16.8 M entries, 134 MB), which compile allocates whatever the input.
MAX_WINDOW_TOKENS = 4096


@register
class ShiftedWindowAttention(Op):
    """Swin's (shifted) window multi-head self-attention with relative position biases, as torchvision's
    `ShiftedWindowAttention` (`version: 1`) and `ShiftedWindowAttentionV2` (`version: 2`). The map is padded
    on the bottom and right to whole windows, rolled by `-shift` (not along a dimension that one window
    covers), cut into windows; in each window, attention with a bias per relative position (keys from
    another region of the rolled map masked by -100); then everything is undone. Version 1 scales dot
    products and reads the biases from a learnt table; version 2 uses cosine attention times a learnt
    per-head `logit_scale` (at most 100), biases 16·sigmoid of a 2-512-heads MLP (`cpb_mlp`) of log-spaced
    relative coordinates, and no key bias.

    MACs count the two projections (queries, keys and values, 3C², and the output, C², per position of
    the padded map), the two attention products (Q·Kᵀ and the weights times V: window·C per position each)
    and, in version 2, the bias MLP over the (2h−1)(2w−1) relative positions; as FlopCounterMode does, not
    the softmax, the normalisation, the scaling or the additions.

    Inputs: 1: a channels-last map `[H, W, C]`, C divisible by `heads`
    Output: `[H, W, C]`; params 4C² + 4C (with both biases) + version 1: (2h−1)(2w−1)·heads (the bias table),
        version 2: heads (`logit_scale`) + 2·512 + 512 + 512·heads (`cpb_mlp`); buffers (not params):
        `relative_position_index` and, in version 2, `relative_coords_table`; MACs Hp·Wp·(4C² + 2·h·w·C)
        (+ (2h−1)(2w−1)·512·(2 + heads) in version 2) for the map padded to Hp x Wp
    Lowered to: resgraph's `ShiftedWindowAttention` module (torchvision's attribute names: `qkv`, `proj`,
        `relative_position_bias_table`, `relative_position_index`, `logit_scale`, `cpb_mlp`,
        `relative_coords_table`)
    """

    op: Literal["shifted_window_attention"]
    heads: Int(1) = Field(description="attention heads; they must divide the channels")
    window: Ints(1) = Field(description="the window [height, width] (or one size for both)")
    shift: Ints(0) = Field(0, description="the cyclic shift [down, right] of the map before it is cut into windows "
                                          "(0: regular windows; Swin alternates 0 and window // 2); less than the "
                                          "window; not applied along a dimension one window covers")
    version: Int(1, 2) = Field(1, description="1: Swin (a learnt table of biases, scaled dot products); 2: Swin V2 "
                                              "(cosine attention, biases from `cpb_mlp`)")
    qkv_bias: Bool = Field(True, description="biases of the query, key and value projection (`qkv`)")
    proj_bias: Bool = Field(True, description="bias of the output projection (`proj`)")
    attention_dropout: Float(0.0, 1.0) = Field(0.0, description="dropout on the attention weights, in training")
    dropout: Float(0.0, 1.0) = Field(0.0, description="dropout on the output, in training")

    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("heads", "window", "shift")

    def _sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, shift), one value per spatial dimension."""
        return spatial(self.window, 2, "window"), spatial(self.shift, 2, "shift")

    def _window(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """`_sizes`, checked: shifts smaller than the window, no window of 1 in version 2."""
        window, shift = self._sizes()
        for size, step, axis in zip(window, shift, ("height", "width")):
            if step >= size:
                raise ShapeError(f"the shift {step} is not smaller than the window's {axis} {size}", attr="shift",
                                 help=f"shift by less than the window: Swin's shifted blocks use `shift: "
                                      f"{size // 2}` (window // 2), the others `shift: 0`")
        if window[0] * window[1] > MAX_WINDOW_TOKENS:
            raise ShapeError(f"a window of {window[0]} x {window[1]} holds {window[0] * window[1]:,} tokens, more "
                             f"than {MAX_WINDOW_TOKENS:,}: its relative-position index would have one entry per "
                             "pair of them", attr="window",
                             help="Swin's windows are 7 x 7 (V1) and 8 x 8 to 16 x 16 (V2); a window as large as "
                                  "the whole map is global attention: use `sdpa` or `multihead_attention` for that")
        if self.version == 2 and 1 in window:
            raise ShapeError("version 2 needs a window of at least 2 along each dimension", attr="window",
                             help="its relative coordinates are divided by the window size minus 1; use "
                                  "`version: 1` for windows of size 1")
        return window, shift

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        _, _, channels = _channels_last_map("shifted_window_attention", inputs[0])
        self._window()
        if channels % self.heads:
            raise ShapeError(f"the {channels} channels are not divisible by `heads: {self.heads}`", attr="heads",
                             help=f"each head gets channels / heads channels: choose heads that divide {channels}")
        return inputs[0]

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        (height, width), _ = self._window()
        channels = inputs[0][2]
        projections = 4 * channels * channels + (3 * channels if self.qkv_bias else 0) + \
            (channels if self.proj_bias else 0)
        if self.version == 1:
            return projections + (2 * height - 1) * (2 * width - 1) * self.heads
        return projections + self.heads + 2 * CPB_HIDDEN + CPB_HIDDEN + CPB_HIDDEN * self.heads

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        (height, width), _ = self._window()
        rows, columns, channels = inputs[0]
        padded = -(-rows // height) * height * (-(-columns // width) * width)
        macs = padded * (4 * channels * channels + 2 * height * width * channels)
        if self.version == 2:
            macs += (2 * height - 1) * (2 * width - 1) * CPB_HIDDEN * (2 + self.heads)
        return macs

    def receptive_field(self, fields, inputs, output, meta):
        # An output sees the positions of its window: a window of the rolled map is a block of neighbours (the
        # mask keeps apart the regions that the roll brought together), so as a window-sized kernel of stride 1.
        field = fields[0]
        if field is None or len(field[0]) != 2:
            return None
        window, _ = self._sizes()
        return window_field(field, window, (1, 1), (1, 1))

    def lower(self, b, args, inputs, output, meta):
        from ..modules import ShiftedWindowAttention as Module

        window, shift = self._sizes()
        module = Module(inputs[0][2], list(window), list(shift), self.heads, qkv_bias=self.qkv_bias,
                        proj_bias=self.proj_bias, attention_dropout=self.attention_dropout, dropout=self.dropout,
                        version=self.version)
        return b.call_module(module, args)

    def label(self) -> str:
        return super().label() + (" v2" if self.version == 2 else "")


@register
class PatchMerging(Op):
    """Swin's downsampling, as torchvision's `PatchMerging` (`version: 1`) and `PatchMergingV2` (`version: 2`):
    the channels-last map padded to even sizes, each 2x2 patch's four vectors concatenated (torchvision's
    order: (0, 0), (1, 0), (0, 1), (1, 1)), projected from 4C to 2C by `reduction` (no bias), with a
    LayerNorm `norm` before the projection (version 1, over 4C) or after it (version 2, over 2C).

    Inputs: 1: a channels-last map `[..., H, W, C]`
    Output: `[..., ceil(H/2), ceil(W/2), 2C]`; params 8C² + 8C (version 1) or 8C² + 4C (version 2); MACs
        ceil(H/2)·ceil(W/2)·8C² per leading index (the projection; the norm is not counted)
    Lowered to: resgraph's `PatchMerging` module (torchvision's attribute names: `reduction`, `norm`)
    """

    op: Literal["patch_merging"]
    version: Int(1, 2) = Field(1, description="1: norm over 4C before the projection (Swin); 2: norm over 2C after "
                                              "it (Swin V2)")
    eps: Float(0.0, positive=True) = Field(1e-5, description="the LayerNorm's epsilon")

    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) < 3:
            raise ShapeError(f"`patch_merging` expects a channels-last map [..., height, width, channels], got "
                             f"{fmt_shape(shape)}", help="move the channels last first: "
                                                         "`{op: permute, dims: [0, 2, 3, 1]}`")
        *lead, rows, columns, channels = shape
        return (*lead, -(-rows // 2), -(-columns // 2), 2 * channels)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        channels = inputs[0][-1]
        return 8 * channels * channels + (8 if self.version == 1 else 4) * channels

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return prod(output) * 4 * inputs[0][-1]   # 4C inputs to each of the 2C outputs

    def receptive_field(self, fields, inputs, output, meta):
        field = fields[0]   # as a 2x2 kernel of stride 2 over the height and width
        return window_field(field, (2, 2), (2, 2), (1, 1)) if field is not None and len(field[0]) == 2 else None

    def lower(self, b, args, inputs, output, meta):
        from ..modules import PatchMerging as Module

        return b.call_module(Module(inputs[0][-1], version=self.version, eps=self.eps), args)

    def label(self) -> str:
        return "patch_merging" + (" v2" if self.version == 2 else "")


__all__ = ["ShiftedWindowAttention", "PatchMerging"]
