"""The video models of torchvision.models.video beyond R3D (mc3_18 and r2plus1d_18 extend the Video ResNet
family of r3d_18.yaml; S3D is a family of its own) and MaxViT-T, whose partitioned relative-position attention
is the composite op `relative_position_attention` (resgraph/ops/maxvit.py)."""

from __future__ import annotations

from . import Model
from .torchvision_existing import tv


def _video(name, family, smallest=False, **kwargs) -> Model:
    return Model(name=name, spec=f"{name}.yaml", family=family, reference=tv(name),
                 reference_name=f"torchvision.models.video.{name}", smallest=smallest, **kwargs)


MAXVIT_MINI = {"num_classes": 10, "size": 64, "partition": 2, "head_dim": 8, "stem_channels": 16,
               "channels": [16, 32, 48, 64], "depths": [1, 1, 2, 1]}


def _maxvit_mini():
    from torchvision.models.maxvit import MaxVit

    mini = MAXVIT_MINI
    return MaxVit(input_size=(mini["size"], mini["size"]), stem_channels=mini["stem_channels"],
                  partition_size=mini["partition"], block_channels=mini["channels"], block_layers=mini["depths"],
                  head_dim=mini["head_dim"], stochastic_depth_prob=0.2, num_classes=mini["num_classes"])


MODELS = [
    # full-size clips (16 x 112 x 112) under `-m zoo`; r3d_18 is the family's smallest
    _video("mc3_18", "Video ResNet"),
    _video("r2plus1d_18", "Video ResNet"),
    # the smallest clip S3D admits: its last average pool covers 2 x 7 x 7
    _video("s3d", "S3D", smallest=True, params={"frames": 13, "size": 209}),
    Model(name="maxvit_t", spec="maxvit_t.yaml", family="MaxViT", reference=tv("maxvit_t"),
          reference_name="torchvision.models.maxvit_t"),
    # the smallest input MaxViT-T admits (every stage's map divisible by the 7 x 7 partition; odd sizes round up
    # at each stride): parity under `-m zoo` too
    Model(name="maxvit_t_221", spec="maxvit_t.yaml", family="MaxViT", params={"size": 221},
          reference=tv("maxvit_t", input_size=(221, 221)),
          reference_name="torchvision.models.maxvit_t(input_size=(221, 221))",
          note="maxvit_t at 221 x 221, the smallest input it admits"),
    # maxvit_t's spec with smaller params, against torchvision's MaxVit class built alike: the same blocks, keys
    # and code paths (windows and grids of several partitions) in the default run, for about 2 s of CPU where
    # maxvit_t's own parity costs about 11 s (it admits no input below 221 x 221)
    Model(name="maxvit_mini", spec="maxvit_t.yaml", family="MaxViT", smallest=True, params=MAXVIT_MINI,
          reference=_maxvit_mini, reference_name="torchvision.models.maxvit.MaxVit (maxvit_t's code, scaled down)",
          note="maxvit_t.yaml with params " + ", ".join(f"{k}={v}" for k, v in MAXVIT_MINI.items())),
]
