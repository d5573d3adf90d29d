"""Swin Transformer (Liu et al. 2021) and Swin Transformer V2 (Liu et al. 2022), as torchvision builds them
(weights=None). The smallest of each family runs in the default pytest at 96x96: the maps of the first two
stages (24x24 and 12x12) are larger than a window, so shifted windows, their attention masks and (for
windows of 7, and for V2's 8 in the second stage) the padding to whole windows all run; the last two stages
fit in one window, where torchvision skips the shift. Every variant runs at 224 under `-m zoo`."""

from __future__ import annotations

from . import Model
from .torchvision_existing import tv


def _model(name: str, family: str, smallest: bool = False) -> Model:
    return Model(name=name, spec=f"{name}.yaml", family=family, reference=tv(name),
                 reference_name=f"torchvision.models.{name}", smallest=smallest,
                 params={"size": 72} if smallest else {})


MODELS = [
    _model("swin_t", "Swin", smallest=True),
    _model("swin_s", "Swin"),
    _model("swin_b", "Swin"),
    _model("swin_v2_t", "Swin-V2", smallest=True),
    _model("swin_v2_s", "Swin-V2"),
    _model("swin_v2_b", "Swin-V2"),
]
