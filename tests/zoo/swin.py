"""Swin Transformer (Liu et al. 2021) and Swin Transformer V2 (Liu et al. 2022), as torchvision builds them
(weights=None). The smallest of each family runs in the default pytest at 72x72: the maps of the first two
stages (18x18 and 9x9) are larger than a window (7, or 8 in V2), so shifted windows, their attention masks
and the padding to whole windows all run, and patch merging pads the odd maps 9 and 5; the last two stages
(5 and 3) fit in one window, where torchvision skips the shift. The other variants run at 224 under
`-m zoo`; docs/zoo.md gives all six at 224 (swin_t and swin_v2_t measured with `measure_parity` at `size: 224`)."""

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
