"""Parity of the issue-10 proof specs beyond 2-d image ResNets: torchvision's MobileNetV3-Large (hard-swish,
hard-sigmoid squeeze-and-excitation, depthwise convolutions) and R3D-18 (3-d convolutions over video clips),
and a 1-d residual CNN for time series against a hand-written torch module. Each: strict load_state_dict of the
reference's weights (batch-norm statistics and affine parameters randomised first), eval mode, equal outputs."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

import resgraph

from .conftest import SPECS, randomize_batch_norm


def _assert_parity(model: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    randomize_batch_norm(reference)
    assert list(model.state_dict()) == list(reference.state_dict())   # the same keys, in the same order
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval(), reference.eval()
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.shape == expected.shape
    assert expected.abs().max().item() > 1e-2   # not a comparison of near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-5


def test_mobilenet_v3_large_is_torchvisions():
    network = resgraph.load(SPECS / "mobilenet_v3_large.yaml")
    assert network.params == 5_483_032
    assert round(network.macs / 1e9, 2) == 0.22   # torchvision's published GFLOPS (MACs) at 224x224
    model = resgraph.compile(network)
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_large()
    # 96x96 keeps the test fast; the pooling before the classifier is adaptive
    _assert_parity(model, reference, torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1)))


def test_r3d_18_is_torchvisions():
    # The spec declares torchvision's 16 x 112 x 112 clips; shapes are inferred, so a smaller clip runs here.
    assert round(resgraph.load(SPECS / "r3d_18.yaml").macs / 1e9, 2) == 40.70   # torchvision's GFLOPS, 16x112x112
    params = {"frames": 8, "size": 56}
    network = resgraph.load(SPECS / "r3d_18.yaml", params=params)
    assert network.params == 33_371_472
    assert network.graph.nodes["layer4.1.relu"].shape == (512, 1, 4, 4)
    model = resgraph.compile(network)
    assert isinstance(model.get_submodule("layer2.0.downsample.0"), nn.Conv3d)
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18()
    _assert_parity(model, reference, torch.randn(1, 3, 8, 56, 56, generator=torch.Generator().manual_seed(1)))


class BasicBlock1d(nn.Module):
    """A hand-written 1-d basic block: two 7-wide conv-BN units around a shortcut, projected (1x1 conv + BN
    with the stride) where the stride or the width changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, kernel: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(inplanes, planes, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(planes)
        self.conv2 = nn.Conv1d(planes, planes, kernel, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv1d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm1d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class ResNet1d(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 32, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(32)
        self.maxpool = nn.MaxPool1d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock1d(32, 32), BasicBlock1d(32, 32))
        self.layer2 = nn.Sequential(BasicBlock1d(32, 64, stride=2), BasicBlock1d(64, 64))
        self.layer3 = nn.Sequential(BasicBlock1d(64, 128, stride=2), BasicBlock1d(128, 128))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(-1))


def test_resnet1d_is_the_hand_written_module():
    network = resgraph.load(SPECS / "resnet1d.yaml")
    assert network.graph.nodes["layer3.1.relu2"].shape == (128, 64)   # 1024 / 16: stem, pool, two strides
    model = resgraph.compile(network)
    torch.manual_seed(0)
    reference = ResNet1d()
    assert network.params == sum(p.numel() for p in reference.parameters()) == 543_781
    _assert_parity(model, reference, torch.randn(3, 1, 1024, generator=torch.Generator().manual_seed(1)))
