"""The modern torchvision CNNs and ViTs (issue #11, part 2): EfficientNet B0-B7 and V2 S/M/L, RegNetX and
the larger RegNetYs, ConvNeXt S/B/L and the ViTs beyond B/16. Every variant is a hand-written spec in specs/;
RegNetY-400MF, ConvNeXt-T and ViT-B/16 (each family's smallest) are registered in torchvision_existing.py."""

from __future__ import annotations

from . import Model
from .torchvision_existing import tv


def _model(name, family, smallest=False, **kwargs) -> Model:
    return Model(name=name, spec=f"{name}.yaml", family=family, reference=tv(name),
                 reference_name=f"torchvision.models.{name}", smallest=smallest, **kwargs)


MODELS = [
    # EfficientNet and EfficientNetV2: parity (and MACs) of the smallest at 64x64 in the default run (the
    # specs' `size`); the others at their default, torchvision's evaluation size (B1 240 ... B7 600, V2 480)
    _model("efficientnet_b0", "EfficientNet", smallest=True, params={"size": 64}),
    *(_model(f"efficientnet_b{b}", "EfficientNet") for b in range(1, 8)),
    _model("efficientnet_v2_s", "EfficientNetV2", smallest=True, params={"size": 64}),
    *(_model(f"efficientnet_v2_{s}", "EfficientNetV2") for s in ("m", "l")),
    # RegNetX: parity (and MACs) of the smallest at 32x32 in the default run (its block is RegNetY's, whose parity
    # tests/test_parity_layout.py checks too; ending in global pooling, the network takes any size)
    _model("regnet_x_400mf", "RegNetX", smallest=True, params={"size": 32}),
    *(_model(f"regnet_x_{s}", "RegNetX") for s in ("800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")),
    *(_model(f"regnet_y_{s}", "RegNetY") for s in ("800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf", "128gf")),
    *(_model(f"convnext_{s}", "ConvNeXt") for s in ("small", "base", "large")),
    *(_model(f"vit_{s}", "ViT", relative=True) for s in ("b_32", "l_16", "l_32", "h_14")),
]
