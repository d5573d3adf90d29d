"""Detection backbones from torchvision.models.detection: ResNet-50 with a feature pyramid network
(Lin et al. 2017), written with blocks that have several outputs (a trunk returning its four stages, an
FPN returning five maps), returning torchvision's dict {'0', '1', '2', '3', 'pool'}."""

from __future__ import annotations

from . import Model


def resnet_fpn(name: str):
    """torchvision's resnet_fpn_backbone, no weights, every layer trainable, with nn.BatchNorm2d: its default
    FrozenBatchNorm2d holds the affine weights as buffers and has no `num_batches_tracked` (tests/
    test_block_outputs.py loads the spec's weights into that default model and compares its outputs)."""
    def build():
        import torch
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        return resnet_fpn_backbone(backbone_name=name, weights=None, trainable_layers=5,
                                   norm_layer=torch.nn.BatchNorm2d)
    return build


MODELS = [
    # The default run checks outputs and MACs at 72x72: odd maps from layer2 on (9, 5, 3), so the top-down
    # path's nearest upsampling to each lateral's size is exercised (3 -> 5 -> 9 -> 18), and 'pool' is 2x2.
    Model(name="resnet50_fpn", spec="resnet50_fpn.yaml", family="Detection backbones",
          reference=resnet_fpn("resnet50"), params={"size": 72}, smallest=True,
          reference_name='torchvision.models.detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet50", '
                         'weights=None, trainable_layers=5, norm_layer=nn.BatchNorm2d)'),
]
