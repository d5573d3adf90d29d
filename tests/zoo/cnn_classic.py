"""The classic torchvision CNNs written by hand: AlexNet, VGG (with and without batch norm), SqueezeNet,
DenseNet, Inception-v3, MNASNet, MobileNetV2, MobileNetV3-Small and the other widths of ShuffleNetV2
(docs/zoo.md). Parity runs at a small input where the network allows (a `size` param): the adaptive
pools let VGG's and AlexNet's 100M-parameter classifiers see a small image."""

from __future__ import annotations

from . import Model
from .torchvision_existing import tv

SMALL = {"size": 32}   # the smallest input these nets take (a 1x1 map before the global pool)


def _model(name, family, smallest=False, **kwargs) -> Model:
    kwargs.setdefault("reference", tv(name))
    return Model(name=name, spec=f"{name}.yaml", family=family, reference_name=f"torchvision.models.{name}",
                 smallest=smallest, **kwargs)


MODELS = [
    _model("alexnet", "AlexNet", smallest=True, params={"size": 64}),   # 63x63 at least
    # VGG's five pools bring a 32x32 input to 1x1, which the adaptive pool spreads to 7x7 for the classifier;
    # torch's default initialisation draws its 130M weights in half the time of torchvision's normals
    *[_model(name, "VGG", smallest=name == "vgg11", params=SMALL, reference=tv(name, init_weights=False))
      for name in ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")],
    _model("squeezenet1_0", "SqueezeNet", params=SMALL),
    _model("squeezenet1_1", "SqueezeNet", smallest=True, params=SMALL),
    _model("densenet121", "DenseNet", smallest=True, params=SMALL),
    _model("densenet161", "DenseNet", params=SMALL),
    _model("densenet169", "DenseNet", params=SMALL),
    _model("densenet201", "DenseNet", params=SMALL),
    _model("inception_v3", "Inception-v3", reference=tv("inception_v3", aux_logits=True, init_weights=True),
           note="MACs count the auxiliary head (5.7 M), which the eval-mode reference does not run"),
    # the default run's parity: the auxiliary head needs 299x299 inputs; without it 75x75 is enough (torch's
    # default initialisation: torchvision's truncated normals cost seconds, and the values do not matter here)
    Model(name="inception_v3_no_aux", spec="inception_v3.yaml", family="Inception-v3", smallest=True,
          reference=tv("inception_v3", aux_logits=False, init_weights=False),
          reference_name="torchvision.models.inception_v3(aux_logits=False)",
          params={"aux_logits": False, "size": 75}),
    _model("mnasnet0_5", "MNASNet", smallest=True, params=SMALL),
    _model("mnasnet0_75", "MNASNet"),
    _model("mnasnet1_0", "MNASNet"),
    _model("mnasnet1_3", "MNASNet"),
    _model("mobilenet_v2", "MobileNetV2", smallest=True, params=SMALL),
    _model("mobilenet_v3_small", "MobileNetV3"),   # the family's default-run parity is mobilenet_v3_large's
    _model("shufflenet_v2_x0_5", "ShuffleNetV2", smallest=True, params=SMALL),
    _model("shufflenet_v2_x1_5", "ShuffleNetV2"),
    _model("shufflenet_v2_x2_0", "ShuffleNetV2"),
]
