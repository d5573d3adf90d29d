"""Semantic segmentation from torchvision.models.segmentation (FCN, DeepLabV3 and LR-ASPP on dilated
ResNet and MobileNetV3 backbones, returning torchvision's {'out', 'aux'} dict), and GNMT's residual
LSTM encoder (Wu et al. 2016) against the hand-written module below."""

from __future__ import annotations

from . import Model


def segmentation(name: str):
    """A torchvision segmentation model, no weights, with its auxiliary head where torchvision has one."""
    def build():
        import torchvision

        aux = {} if name.startswith("lraspp") else {"aux_loss": True}
        return torchvision.models.get_model(name, weights=None, weights_backbone=None, **aux)
    return build


def _segmentation(name: str, family: str, smallest: bool = False, size: int = 40) -> Model:
    aux = "" if name.startswith("lraspp") else ", aux_loss=True"
    # The default run checks the outputs of the smallest variant at a small size; -m zoo the others at 520,
    # torchvision's evaluation size. At 40x40 every dilated convolution still reaches past the centre of its
    # map (MobileNetV3's last stage is 3x3 there); FCN's ResNet-50 at 32x32 has 4x4 maps in layer3 and layer4,
    # where layer4's dilation of 4 reaches only the centre: fcn_resnet101 (under -m zoo, at 520) runs the same
    # lines of fcn_resnet50.yaml, which it extends.
    return Model(name=name, spec=f"{name}.yaml", family=family, reference=segmentation(name),
                 reference_name=f"torchvision.models.segmentation.{name}(weights=None{aux})", smallest=smallest,
                 params={"size": size} if smallest else {})


# ---- GNMT

GNMT_SMALL = {"vocab": 97, "hidden": 24, "seq_len": 4}   # 8 layers as GNMT, small widths
# GNMT's sizes; 4 steps (the spec's default is 50): FlopCounterMode walks an LSTM step by step on meta
GNMT_FULL = {"seq_len": 4}


def gnmt_encoder(vocab: int = 32000, hidden: int = 1024, num_layers: int = 8, dropout: float = 0.0):
    """GNMT's encoder written by hand, as MLPerf's reference (ResidualRecurrentEncoder) writes it: embedding,
    a bidirectional LSTM, an LSTM from both directions' states back to `hidden`, then LSTMs with a residual
    connection each; dropout on every layer's input. Batch first, without sequence packing."""
    import torch.nn as nn

    class ResidualLSTMLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True)

        def forward(self, x):
            y, _ = self.lstm(self.dropout(x))
            return x + y

    class GNMTEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedder = nn.Embedding(vocab, hidden, padding_idx=0)
            self.bi_lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
            self.lstm = nn.LSTM(2 * hidden, hidden, batch_first=True)
            self.residual_layers = nn.ModuleList(ResidualLSTMLayer() for _ in range(num_layers - 2))
            self.dropout = nn.Dropout(dropout)
            for layer in self.residual_layers:
                layer.dropout = self.dropout

        def forward(self, tokens):
            x, _ = self.bi_lstm(self.dropout(self.embedder(tokens)))
            x, _ = self.lstm(self.dropout(x))
            for layer in self.residual_layers:
                x = layer(x)
            return x

    return GNMTEncoder()


def _tokens(vocab: int, seq_len: int, batch: int = 2):
    def example(generator):
        import torch

        return torch.randint(0, vocab, (batch, seq_len), generator=generator)
    return example


def _gnmt(name: str, params: dict, smallest: bool) -> Model:
    sizes = {"vocab": 32000, "hidden": 1024, "seq_len": 50, **params}

    def macs_input():
        import torch

        return torch.zeros((1, sizes["seq_len"]), dtype=torch.int64)
    return Model(name=name, spec="gnmt.yaml", family="GNMT residual LSTM", smallest=smallest, params=params,
                 reference=lambda: gnmt_encoder(sizes["vocab"], sizes["hidden"]),
                 reference_name="GNMT's encoder written in torch (tests/zoo/seg_gnmt.py)",
                 example=_tokens(sizes["vocab"], sizes["seq_len"]), macs_input=macs_input)


MODELS = [
    _segmentation("fcn_resnet50", "FCN", smallest=True, size=32),
    _segmentation("fcn_resnet101", "FCN"),
    _segmentation("deeplabv3_mobilenet_v3_large", "DeepLabV3", smallest=True),
    _segmentation("deeplabv3_resnet50", "DeepLabV3"),
    _segmentation("deeplabv3_resnet101", "DeepLabV3"),
    _segmentation("lraspp_mobilenet_v3_large", "LR-ASPP", smallest=True),
    _gnmt("gnmt_small", GNMT_SMALL, smallest=True),
    _gnmt("gnmt", GNMT_FULL, smallest=False),
]
