"""Differential tests of the specs that need the tensor layout ops, `parameter` and node keys against
torchvision: ConvNeXt-T, ViT-B/16, ShuffleNet V2 and RegNetY-400MF, each written by hand in specs/."""

from __future__ import annotations

import pytest
import torch
import torchvision

import resgraph

from .conftest import SPECS, randomize_batch_norm, randomize_norms


def _randomize_parameters(model, names: tuple[str, ...]) -> None:
    """Standalone parameters (`layer_scale` starts at 1e-6, which would hide every block's branch)."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.rpartition(".")[2] in names:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.25)


def _check_parity(name: str, size: int, batch: int, params: int, standalone: tuple[str, ...] = ()) -> None:
    network = resgraph.load(SPECS / f"{name}.yaml")
    assert network.params == params
    model = resgraph.compile(network)
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    assert sum(p.numel() for p in reference.parameters()) == params
    randomize_batch_norm(reference)
    randomize_norms(reference)
    _randomize_parameters(reference, standalone)
    result = model.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(model.state_dict()) == list(reference.state_dict())
    model.eval(), reference.eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.shape == expected.shape == (batch, 1000)
    assert expected.abs().max().item() > 1e-2   # not a comparison of near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-5


def test_convnext_tiny():
    # 64x64: every stage still runs (the stem and three downsamplings divide by 32)
    _check_parity("convnext_tiny", 64, 2, 28_589_128, standalone=("layer_scale",))
