"""The torchvision models whose specs predate the zoo: the ResNet family (He et al. 2015) with its
wide and ResNeXt variants, and one model each of ConvNeXt, ViT, ShuffleNetV2, RegNetY, MobileNetV3,
GoogLeNet and the video R3D."""

from __future__ import annotations

from . import Model


def tv(name: str, **kwargs):
    """A torchvision model by name, built lazily (torchvision is imported when the test runs). RegNet
    computes its stage widths with tensors and reads them back (`.tolist()`), which the meta device cannot:
    those few tensors are made on the CPU."""
    def build():
        import torch
        import torchvision
        from torchvision.models import regnet

        if not name.startswith("regnet_"):
            return torchvision.models.get_model(name, **kwargs)
        widths = regnet.BlockParams.from_init_params

        def on_cpu(*args, **kw):
            with torch.device("cpu"):
                return widths(*args, **kw)
        original, regnet.BlockParams.from_init_params = regnet.BlockParams.__dict__["from_init_params"], on_cpu
        try:
            return torchvision.models.get_model(name, **kwargs)
        finally:
            regnet.BlockParams.from_init_params = original
    return build


def _model(name, family, smallest=False, spec=None, reference=None, **kwargs) -> Model:
    return Model(name=name, spec=spec or f"{name}.yaml", family=family, reference=reference or tv(name),
                 reference_name=f"torchvision.models.{name}", smallest=smallest, **kwargs)


MODELS = [
    _model("resnet18", "ResNet", smallest=True),
    _model("resnet34", "ResNet"),
    _model("resnet50", "ResNet"),
    _model("resnet101", "ResNet"),
    _model("resnet152", "ResNet"),
    _model("resnext50_32x4d", "ResNeXt", smallest=True),
    _model("resnext101_32x8d", "ResNeXt"),
    _model("resnext101_64x4d", "ResNeXt"),
    _model("wide_resnet50_2", "Wide ResNet", smallest=True),
    _model("wide_resnet101_2", "Wide ResNet"),
    _model("convnext_tiny", "ConvNeXt", smallest=True),
    _model("vit_b_16", "ViT", smallest=True, relative=True),
    _model("shufflenet_v2_x1_0", "ShuffleNetV2"),   # the family's smallest is x0_5 (tests/zoo/cnn_classic.py)
    _model("regnet_y_400mf", "RegNetY", smallest=True),
    _model("mobilenet_v3_large", "MobileNetV3", smallest=True),
    _model("googlenet", "GoogLeNet", smallest=True, reference=tv("googlenet", aux_logits=True, init_weights=True)),
    Model(name="r3d_18", spec="r3d_18.yaml", family="Video ResNet", reference_name="torchvision.models.video.r3d_18",
          reference=tv("r3d_18"), smallest=True, params={"frames": 8, "size": 56}),
]
