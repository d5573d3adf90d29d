"""The torch module of the `cbam` op (imported only when a network is compiled)."""

from __future__ import annotations

import torch
import torch.nn as nn


class CBAM(nn.Module):
    """Channel attention (shared MLP of the average- and max-pooled input), then spatial attention
    (convolution of the channel mean and max), each a sigmoid gate times its input. Every argument of
    `__init__` is kept as an attribute of the same name, so `resgraph export` can write the call."""

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7) -> None:
        super().__init__()
        self.channels, self.reduction, self.kernel = channels, reduction, kernel
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        x = x * channel.sigmoid()
        spatial = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
        return x * self.spatial(spatial).sigmoid()
