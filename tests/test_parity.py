"""Differential tests against implementations no one here wrote: torchvision's ResNets, and the
reference CIFAR ResNet's state_dict keys (akamaster/pytorch_resnet_cifar10, option A)."""

from __future__ import annotations

import pytest
import torch
import torchvision

import resgraph

from .conftest import ROOT, SPECS, randomize_batch_norm

# The state_dict keys and shapes of akamaster/pytorch_resnet_cifar10's resnet20 (option A),
# copied from the team's checked reference facts (shared/reference/).
REFERENCE = ROOT / "tests" / "data"


# Parameter counts from torchvision; MACs (conv + linear at 224x224) are torchvision's GFLOPS figures
# where it publishes them to enough digits, checked exactly. The big ones run under `pytest -m slow`; the
# zoo (tests/test_zoo.py) checks every one's keys on the meta device by default and outputs under `-m zoo`.
FAMILY = [
    pytest.param("resnet18", 11_689_512, 1_814_073_344, 224, id="resnet18"),
    pytest.param("resnet34", 21_797_672, None, 96, id="resnet34"),
    pytest.param("resnet50", 25_557_032, 4_089_184_256, 224, id="resnet50"),
    pytest.param("resnet101", 44_549_160, None, 64, marks=pytest.mark.slow, id="resnet101"),
    pytest.param("resnet152", 60_192_808, 11_513_626_624, 64, marks=pytest.mark.slow, id="resnet152"),
    pytest.param("wide_resnet50_2", 68_883_240, None, 64, marks=pytest.mark.slow, id="wide_resnet50_2"),
    pytest.param("wide_resnet101_2", 126_886_696, None, 64, marks=pytest.mark.slow, id="wide_resnet101_2"),
    pytest.param("resnext50_32x4d", 25_028_904, 4_230_479_872, 64, id="resnext50_32x4d"),
    pytest.param("resnext101_32x8d", 88_791_336, None, 64, marks=pytest.mark.slow, id="resnext101_32x8d"),
    pytest.param("resnext101_64x4d", 83_455_272, None, 64, marks=pytest.mark.slow, id="resnext101_64x4d"),
]


@pytest.mark.parametrize("name, params, macs, size", FAMILY)
def test_torchvision_parity(name, params, macs, size):
    network = resgraph.load(SPECS / f"{name}.yaml")
    assert network.params == params
    if macs is not None:
        assert network.macs == macs
    model = resgraph.compile(network)
    assert sum(p.numel() for p in model.parameters()) == params

    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    randomize_batch_norm(reference)
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(model.state_dict()) == list(reference.state_dict())

    model.eval(), reference.eval()
    # The big nets run at a smaller resolution to keep the suite fast; their pooling is adaptive.
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.shape == (2, 1000)
    assert (got - expected).abs().max().item() <= 1e-5


def test_resnet50_num_classes_override():
    model = resgraph.compile(SPECS / "resnet50.yaml", device="meta", params={"num_classes": 10})
    assert model.fc.out_features == 10
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 - 2048 * 990 - 990


def test_cifar_resnet20_matches_the_reference_implementation():
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    assert network.params == 269_722
    model = resgraph.compile(network)
    rows = [line.split("\t") for line in (REFERENCE / "cifar_resnet20_optionA_keys.txt").read_text().splitlines()
            if line.strip()]
    expected = {key: tuple(int(d) for d in shape.strip("()").split(",") if d.strip()) for key, shape in rows}
    got = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert got == expected
    # Option A: the shortcut of the first block of stages 2 and 3 pads planes//4 zero channels on each side.
    shortcut = model.get_submodule("layer2.0.downsample")
    assert (shortcut.before, shortcut.after, shortcut.stride) == (8, 8, (2, 2))
    x = torch.randn(2, 16, 32, 32)
    reference = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(shortcut(x), reference)
