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
            if any(name == n or name.endswith("." + n) for n in names):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.25)


def _check_parity(name: str, size: int, batch: int, params: int, standalone: tuple[str, ...] = (),
                  reference=None, spec_params: dict | None = None) -> None:
    network = resgraph.load(SPECS / f"{name}.yaml", params=spec_params)
    assert network.params == params
    # Built on the meta device and given the reference's tensors (`assign`): no time spent drawing weights
    # that are replaced anyway. The load is still strict.
    model = resgraph.compile(network, device="meta")
    torch.manual_seed(0)
    reference = reference() if reference is not None else getattr(torchvision.models, name)()
    assert sum(p.numel() for p in reference.parameters()) == params
    randomize_batch_norm(reference)
    randomize_norms(reference)
    _randomize_parameters(reference, standalone)
    result = model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(model.state_dict()) == list(reference.state_dict())
    model.eval(), reference.eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.shape == expected.shape == (batch, expected.shape[1])
    assert expected.abs().max().item() > 1e-2   # not a comparison of near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-5


def _same_keys_and_shapes(name: str) -> None:
    """The full-size spec against torchvision's model, both on the meta device: keys, order and shapes."""
    model = resgraph.compile(SPECS / f"{name}.yaml", device="meta")
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]


def test_convnext_tiny_keys():
    _same_keys_and_shapes("convnext_tiny")


def test_convnext_small_configuration():
    # The spec's params at a small size (4 stages of 1, 1, 2 and 1 blocks, 8 to 64 channels) against
    # torchvision's own ConvNeXt class at the same size; the full size is the slow test below.
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    dims, depths = [8, 16, 32, 64], [1, 1, 2, 1]
    setting = [CNBlockConfig(d, dims[i + 1] if i < 3 else None, n) for i, (d, n) in enumerate(zip(dims, depths))]
    reference = lambda: ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=10)   # noqa: E731
    params = sum(p.numel() for p in reference().parameters())
    _check_parity("convnext_tiny", 32, 2, params, ("layer_scale",), reference,
                  {"dims": dims, "depths": depths, "num_classes": 10})


@pytest.mark.slow
def test_convnext_tiny():
    _check_parity("convnext_tiny", 64, 2, 28_589_128, standalone=("layer_scale",))


VIT_HEAD = ("class_token", "pos_embedding", "heads.head.weight", "heads.head.bias")


def test_vit_b_16_keys():
    _same_keys_and_shapes("vit_b_16")


def test_vit_small_configuration():
    # The spec's params at a small size (2 layers, 32x32 images of 4 patches) against torchvision's own
    # VisionTransformer class at the same size: outputs, keys and their order. The full size is the slow
    # test below (one forward of ViT-B/16 costs seconds on a shared CPU).
    from torchvision.models.vision_transformer import VisionTransformer

    size = {"image_size": 32, "patch_size": 16, "layers": 2, "heads": 4, "hidden": 64, "mlp_dim": 96,
            "num_classes": 10}
    reference = lambda: VisionTransformer(32, 16, 2, 4, 64, 96, num_classes=10)   # noqa: E731
    params = sum(p.numel() for p in reference().parameters())
    _check_parity("vit_b_16", 32, 2, params, VIT_HEAD, reference, size)


@pytest.mark.slow
def test_vit_b_16():
    # 224x224 is the size its position embedding is for; class token, positions and the head (zeros in
    # torchvision) randomised too
    _check_parity("vit_b_16", 224, 1, 86_567_656, standalone=VIT_HEAD)


def test_shufflenet_v2_x1_0():
    _check_parity("shufflenet_v2_x1_0", 32, 2, 2_278_604)


def test_regnet_y_400mf():
    _check_parity("regnet_y_400mf", 32, 1, 4_344_144)
