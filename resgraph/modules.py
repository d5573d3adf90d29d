"""The few torch modules resgraph's lowering needs beyond torch.nn (imported only when lowering)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops.conv import init_conv
from .ops.norm import init_norm


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
