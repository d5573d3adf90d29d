"""The few torch modules resgraph's lowering needs beyond torch.nn (imported only when lowering)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops.conv import init_conv
from .ops.norm import init_norm
from .ops.tensor import relative_position_index


class ZeroPadShortcut(nn.Module):
    """The ResNet paper's option A: subsample by striding, then zero-pad the new channels.

    As in the reference CIFAR implementation, the zero channels are split before and after
    the existing ones. The module has no parameters and no state_dict entries.
    """

    def __init__(self, stride: tuple[int, ...], in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.stride, self.in_channels, self.out_channels = tuple(stride), in_channels, out_channels
        extra = out_channels - in_channels
        self.before, self.after = extra // 2, extra - extra // 2
        # Worked out once: the forward runs in every stage-opening block of every step.
        self._index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in self.stride)
        self._subsample = any(s != 1 for s in self.stride)
        self._pad = (0, 0) * len(self.stride) + (self.before, self.after) if extra else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._subsample:
            x = x[self._index]
        if self._pad is not None:
            x = F.pad(x, self._pad)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, channels=+{self.before}+{self.after}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero each sample with probability p
    and scale the rest by 1 / (1 - p); in eval, the identity. On a residual branch before the
    addition, it drops the branch for that sample. The same draws as torchvision's
    stochastic_depth(x, p, "row") and timm's DropPath; no parameters, no state_dict entries.
    (resgraph export copies this class's source into the files it writes.)"""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            noise.div_(keep)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TransposedLinear(nn.Module):
    """A linear layer whose weight is stored [in, out] (the transpose of nn.Linear's), applied as
    `addmm(bias, x, weight)`: Hugging Face's `Conv1D` of GPT-2, with its keys and shapes. Initialised as nn.Linear
    draws its [out, in] weight and bias, transposed, so the two layouts start from the same function.
    (resgraph export copies this class's source into the files it writes.)"""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        drawn = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(drawn.weight.detach().t().contiguous())
        if bias:
            self.bias = nn.Parameter(drawn.bias.detach())
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.bias is None:
            out = torch.mm(flat, self.weight)
        else:
            out = torch.addmm(self.bias, flat, self.weight)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def projection(in_shape: tuple[int, ...], out_shape: tuple[int, ...], stride: tuple[int, ...]) -> nn.Module:
    """Option B/C: a 1x1 convolution with the shortcut's stride, then batch norm (torchvision's downsample)."""
    c_in, c_out = in_shape[0], out_shape[0]
    if len(in_shape) == 1:
        return nn.Linear(c_in, c_out, bias=False)
    conv_cls, norm_cls = {2: (nn.Conv1d, nn.BatchNorm1d), 3: (nn.Conv2d, nn.BatchNorm2d),
                          4: (nn.Conv3d, nn.BatchNorm3d)}[len(in_shape)]
    conv = conv_cls(c_in, c_out, kernel_size=1, stride=stride, bias=False)
    norm = norm_cls(c_out)
    init_conv(conv)
    init_norm(norm)
    return nn.Sequential(conv, norm)


class ScaledDotProductAttention(nn.Module):
    """Attention over explicit queries, keys and values given as [batch, length, heads * head_dim]:
    split into heads, `F.scaled_dot_product_attention`, heads merged back. With fewer key/value heads
    than query heads (grouped-query attention), each key/value head serves `heads // kv_heads` query
    heads, as `enable_gqa=True` does. An optional key mask [batch, key length] (nonzero: attend, 0: padding,
    as Hugging Face's `attention_mask`) hides keys from every query. Dropout of the attention weights applies
    in training only. No parameters."""

    def __init__(self, heads: int, kv_heads: int, causal: bool = False, dropout: float = 0.0,
                 scale: float | None = None) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.causal, self.dropout, self.scale = heads, kv_heads, causal, dropout, scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length = query.shape[0], query.shape[1]
        q = query.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k = key.unflatten(-1, (self.kv_heads, -1)).transpose(1, 2)
        v = value.unflatten(-1, (self.kv_heads, -1)).transpose(1, 2)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        causal, allowed = self.causal, None
        if mask is not None:
            if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[1] != key.shape[1]:
                raise ValueError(f"the key mask is {list(mask.shape)}; expected [batch, key length] = "
                                 f"{[batch, key.shape[1]]}")
            allowed = (mask != 0)[:, None, None, :]                      # [batch, 1, 1, key length]
            if causal:   # both masks in one: sdpa takes `attn_mask` or `is_causal`, not both
                allowed = allowed & torch.ones(length, key.shape[1], dtype=torch.bool, device=mask.device).tril()
                causal = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=causal, scale=self.scale)
        return out.transpose(1, 2).reshape(batch, length, -1)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, kv_heads={self.kv_heads}, causal={self.causal}, dropout={self.dropout}"


class Positions(nn.Module):
    """The position ids 0 .. length - 1 of a [batch, length, ...] sequence, [batch, length] int64 (one row per
    sample, as Hugging Face's BERT expands its `position_ids`), made afresh for each input's length and device:
    nothing to load or to move. No parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) of a [batch, length, heads * head_dim] input: in each
    head, channel pairs are rotated by the angle position * base^(-2i / head_dim). `interleaved=False`
    pairs channel i with i + head_dim / 2 (Hugging Face's Llama, `rotate_half`); `interleaved=True` pairs
    channels 2i and 2i + 1 (RoFormer, GPT-J, Meta's Llama code). Positions count from 0. No parameters."""

    def __init__(self, heads: int, base: float = 10000.0, interleaved: bool = False) -> None:
        super().__init__()
        self.heads, self.base, self.interleaved = heads, base, interleaved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.unflatten(-1, (self.heads, -1))                      # [batch, length, heads, head_dim]
        dim = heads.shape[-1]
        exponents = torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim
        positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        angles = torch.outer(positions, self.base ** -exponents)       # [length, head_dim / 2]
        if self.interleaved:
            angles = angles.repeat_interleave(2, dim=-1)
            pairs = heads.unflatten(-1, (-1, 2))
            rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        else:
            angles = torch.cat((angles, angles), dim=-1)
            first, second = heads.chunk(2, dim=-1)
            rotated = torch.cat((-second, first), dim=-1)
        cos = angles.cos()[:, None, :].to(x.dtype)
        sin = angles.sin()[:, None, :].to(x.dtype)
        return (heads * cos + rotated * sin).flatten(-2)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, base={self.base}, interleaved={self.interleaved}"
class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels (dimension 1) of a [batch, channels, ...] map at every position, as
    torchvision's ConvNeXt `LayerNorm2d`: the same computation and the same `weight` and `bias`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)


class ChannelRMSNorm(nn.RMSNorm):
    """RMSNorm over the channels (dimension 1) of a [batch, channels, ...] map at every position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class RelativePositionAttention(nn.Module):
    """MaxViT's multi-head self-attention with a relative-position bias (Tu et al. 2022), inside each group of a
    [batch, groups, tokens, features] input whose tokens form a size x size window: torchvision's
    `RelativePositionalMultiHeadAttention`, the same attribute names and the same computation. The queries, keys
    and values come from one projection `to_qkv`; the keys are scaled by features ** -0.5 (the whole width, as
    torchvision's); each head adds the bias `relative_position_bias_table[relative_position_index]` to its
    logits before the softmax; `merge` projects the heads back."""

    def __init__(self, features: int, head_dim: int, tokens: int) -> None:
        super().__init__()
        if features % head_dim:
            raise ValueError(f"features: {features} must be divisible by head_dim: {head_dim}")
        self.n_heads, self.head_dim = features // head_dim, head_dim
        self.size, self.max_seq_len = math.isqrt(tokens), tokens
        if self.size * self.size != tokens:
            raise ValueError(f"the {tokens} tokens of a group are not a square window")
        self.to_qkv = nn.Linear(features, self.n_heads * head_dim * 3)
        self.scale_factor = features ** -0.5
        self.merge = nn.Linear(self.n_heads * head_dim, features)
        self.relative_position_bias_table = nn.Parameter(
            nn.init.trunc_normal_(torch.empty((2 * self.size - 1) ** 2, self.n_heads), std=0.02))
        self.register_buffer("relative_position_index", relative_position_index(self.size, self.size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, groups, tokens, features = x.shape
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(batch, groups, tokens, self.n_heads, self.head_dim).permute(0, 1, 3, 2, 4)
        k = k.reshape(batch, groups, tokens, self.n_heads, self.head_dim).permute(0, 1, 3, 2, 4)
        v = v.reshape(batch, groups, tokens, self.n_heads, self.head_dim).permute(0, 1, 3, 2, 4)
        k = k * self.scale_factor
        logits = torch.einsum("bghid,bghjd->bghij", q, k)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(self.max_seq_len, self.max_seq_len, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        weights = F.softmax(logits + bias, dim=-1)
        out = torch.einsum("bghij,bghjd->bghid", weights, v)
        return self.merge(out.permute(0, 1, 3, 2, 4).reshape(batch, groups, tokens, features))

    def extra_repr(self) -> str:
        return f"heads={self.n_heads}, head_dim={self.head_dim}, window={self.size}x{self.size}"


class ShiftedWindowAttention(nn.Module):
    """Swin's window attention with relative position biases (Liu et al. 2021), computed as torchvision's
    models/swin_transformer.py `shifted_window_attention` computes it, with its attribute names (hence its
    state_dict keys) over a [batch, height, width, channels] input: the map padded on the bottom and right to
    whole windows, cyclically shifted by `shift_size` (not along a dimension that one window covers), cut
    into windows of `window_size`, multi-head self-attention in each window (keys of another region of a
    shifted map masked by -100), and everything undone in reverse.

    `version=1` (Swin): scaled dot products plus a learnt table of biases per relative position
    (`relative_position_bias_table`). `version=2` (Swin V2, Liu et al. 2022): cosine attention scaled by
    the learnt `logit_scale` (at most 100), biases from a small MLP (`cpb_mlp`) of log-spaced relative
    coordinates (`relative_coords_table`), squashed to 16·sigmoid, and no key bias (the middle third of
    `qkv.bias` is zeroed on use)."""

    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int,
                 qkv_bias: bool = True, proj_bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0, version: int = 1) -> None:
        super().__init__()
        self.dim, self.window_size, self.shift_size = dim, list(window_size), list(shift_size)
        self.num_heads, self.qkv_bias, self.proj_bias = num_heads, qkv_bias, proj_bias
        self.attention_dropout, self.dropout, self.version = attention_dropout, dropout, version
        height, width = self.window_size
        if version == 1:
            self.relative_position_bias_table = nn.Parameter(
                nn.init.trunc_normal_(torch.zeros((2 * height - 1) * (2 * width - 1), num_heads), std=0.02))
        else:
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
            coords_h = torch.arange(-(height - 1), height, dtype=torch.float32)
            coords_w = torch.arange(-(width - 1), width, dtype=torch.float32)
            table = torch.stack(torch.meshgrid([coords_h, coords_w], indexing="ij"))
            table = table.permute(1, 2, 0).contiguous().unsqueeze(0)   # 1, 2*Wh-1, 2*Ww-1, 2
            table[:, :, :, 0] /= height - 1
            table[:, :, :, 1] /= width - 1
            table *= 8   # to -8 .. 8, then log-spaced
            table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
            self.register_buffer("relative_coords_table", table)
        coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))
        flat = torch.flatten(coords, 1)
        relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()   # Wh*Ww, Wh*Ww, 2
        relative[:, :, 0] += height - 1
        relative[:, :, 1] += width - 1
        relative[:, :, 0] *= 2 * width - 1
        self.register_buffer("relative_position_index", relative.sum(-1).flatten())
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        if version == 2:
            self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True),
                                         nn.Linear(512, num_heads, bias=False))
        for linear in [m for m in self.modules() if isinstance(m, nn.Linear)]:   # as torchvision's SwinTransformer
            nn.init.trunc_normal_(linear.weight, std=0.02)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def relative_position_bias(self) -> torch.Tensor:
        """[1, heads, Wh*Ww, Wh*Ww]: the bias added to the attention logits of every window."""
        tokens = self.window_size[0] * self.window_size[1]
        if self.version == 1:
            table = self.relative_position_bias_table
        else:
            table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index].view(tokens, tokens, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.version == 2 else bias

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        B, H, W, C = input.shape
        window_size, num_heads = self.window_size, self.num_heads
        pad_r = (window_size[1] - W % window_size[1]) % window_size[1]
        pad_b = (window_size[0] - H % window_size[0]) % window_size[0]
        x = F.pad(input, (0, 0, 0, pad_r, 0, pad_b))
        _, pad_H, pad_W, _ = x.shape
        shift_size = self.shift_size.copy()
        if window_size[0] >= pad_H:   # one window covers the map: nothing to shift
            shift_size[0] = 0
        if window_size[1] >= pad_W:
            shift_size[1] = 0
        if sum(shift_size) > 0:
            x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
        num_windows = (pad_H // window_size[0]) * (pad_W // window_size[1])
        x = x.view(B, pad_H // window_size[0], window_size[0], pad_W // window_size[1], window_size[1], C)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(B * num_windows, window_size[0] * window_size[1], C)

        qkv_bias = self.qkv.bias
        if self.version == 2 and qkv_bias is not None:   # no key bias
            qkv_bias = qkv_bias.clone()
            length = qkv_bias.numel() // 3
            qkv_bias[length: 2 * length].zero_()
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.version == 2:   # cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=4.605170185988092).exp()   # at most log(100)
        else:
            q = q * (C // num_heads) ** -0.5
            attn = q.matmul(k.transpose(-2, -1))
        attn = attn + self.relative_position_bias()

        if sum(shift_size) > 0:   # a window of the shifted map may hold parts of up to 4 regions: mask across
            attn_mask = x.new_zeros((pad_H, pad_W))
            h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]), (-shift_size[0], None))
            w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]), (-shift_size[1], None))
            count = 0
            for h in h_slices:
                for w in w_slices:
                    attn_mask[h[0]: h[1], w[0]: w[1]] = count
                    count += 1
            attn_mask = attn_mask.view(pad_H // window_size[0], window_size[0], pad_W // window_size[1],
                                       window_size[1])
            attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window_size[0] * window_size[1])
            attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
            attn_mask = attn_mask.masked_fill(attn_mask != 0, float(-100.0)).masked_fill(attn_mask == 0, float(0.0))
            attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
            attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, num_heads, x.size(1), x.size(1))

        attn = F.softmax(attn, dim=-1)
        attn = F.dropout(attn, p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), C)
        x = F.linear(x, self.proj.weight, self.proj.bias)
        x = F.dropout(x, p=self.dropout, training=self.training)

        x = x.view(B, pad_H // window_size[0], pad_W // window_size[1], window_size[0], window_size[1], C)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, pad_H, pad_W, C)
        if sum(shift_size) > 0:
            x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
        return x[:, :H, :W, :].contiguous()

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, window_size={self.window_size}, shift_size={self.shift_size}, "
                f"num_heads={self.num_heads}, version={self.version}")


class PatchMerging(nn.Module):
    """Swin's downsampling, as torchvision's `PatchMerging` (`version=1`) and `PatchMergingV2` (`version=2`):
    a [batch, H, W, C] map padded to even sizes, each 2x2 patch's four C-vectors concatenated (4C, in
    torchvision's order) and projected to 2C by `reduction` (no bias); `norm` (LayerNorm) comes before the
    projection in V1 (over 4C), after it in V2 (over 2C)."""

    def __init__(self, dim: int, version: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.version, self.eps = dim, version, eps
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim if version == 1 else 2 * dim, eps=eps)
        nn.init.trunc_normal_(self.reduction.weight, std=0.02)   # as torchvision's SwinTransformer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W, _ = x.shape[-3:]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]],
                      -1)
        if self.version == 1:
            return self.reduction(self.norm(x))
        return self.norm(self.reduction(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, version={self.version}"
