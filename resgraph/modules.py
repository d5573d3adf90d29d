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
