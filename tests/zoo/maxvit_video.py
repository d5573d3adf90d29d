"""The video models of torchvision.models.video beyond R3D (mc3_18 and r2plus1d_18 extend the Video ResNet
family of r3d_18.yaml; S3D is a family of its own) and MaxViT-T, whose partitioned relative-position attention
is the composite op `relative_position_attention` (resgraph/ops/maxvit.py)."""

from __future__ import annotations

from . import Model
from .torchvision_existing import tv


def _video(name, family, smallest=False, **kwargs) -> Model:
    return Model(name=name, spec=f"{name}.yaml", family=family, reference=tv(name),
                 reference_name=f"torchvision.models.video.{name}", smallest=smallest, **kwargs)


MODELS = [
    # full-size clips (16 x 112 x 112) under `-m zoo`; r3d_18 is the family's smallest
    _video("mc3_18", "Video ResNet"),
    _video("r2plus1d_18", "Video ResNet"),
    # the smallest clip S3D admits: its last average pool covers 2 x 7 x 7
    _video("s3d", "S3D", smallest=True, params={"frames": 13, "size": 209}),
    Model(name="maxvit_t", spec="maxvit_t.yaml", family="MaxViT", reference=tv("maxvit_t"),
          reference_name="torchvision.models.maxvit_t"),
    # the smallest input MaxViT-T admits (every stage's map divisible by the 7 x 7 partition), in the default run
    Model(name="maxvit_t_221", spec="maxvit_t.yaml", family="MaxViT", smallest=True, params={"size": 221},
          reference=tv("maxvit_t", input_size=(221, 221)),
          reference_name="torchvision.models.maxvit_t(input_size=(221, 221))",
          note="maxvit_t at 221 x 221, the smallest input it admits (odd sizes round up at each stride)"),
]
