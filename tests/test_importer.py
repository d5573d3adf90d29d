"""`resgraph import`: torch modules -> specs that compile back to the same module tree. Differential:
torchvision's ResNets and models written here load into their imported specs with strict=True and
give the same outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import yaml
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.diagnostics import CODES
from resgraph.importer import import_module

from .conftest import SPECS, randomize_batch_norm

# The big nets are imported on the meta device (keys, shapes and layer settings, no weights);
# the others also run a forward pass against torchvision.
COMPUTED = ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2"]
ON_META = ["resnet101", "resnet152", "wide_resnet101_2", "resnext101_32x8d", "resnext101_64x4d"]
REPEATS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}


def round_trip(model: nn.Module, path: Path, input_shape, **kwargs) -> tuple[str, nn.Module]:
    """Import `model`, write the spec, load and compile it, and load the model's weights strictly."""
    text = import_module(model, input_shape, **kwargs)
    path.write_text(text)
    compiled = resgraph.compile(resgraph.load(path))
    result = compiled.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(compiled.state_dict()) == list(model.state_dict())
    return text, compiled


def assert_same_outputs(model: nn.Module, compiled: nn.Module, *shape: int) -> None:
    model.eval(), compiled.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", COMPUTED)
def test_torchvision_resnet_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_batch_norm(getattr(torchvision.models, name)())
    text, compiled = round_trip(model, tmp_path / f"{name}.yaml", (3, 224, 224))  # run below at 64x64
    assert_same_outputs(model, compiled, 3, 64, 64)
    # The same network as the hand-written spec of the library.
    imported, written = resgraph.load(tmp_path / f"{name}.yaml"), resgraph.load(SPECS / f"{name}.yaml")
    assert (imported.params, imported.macs) == (written.params, written.macs)


@pytest.mark.parametrize("name", ON_META)
def test_big_torchvision_resnets_import_on_meta(name, tmp_path):
    with torch.device("meta"):
        model = getattr(torchvision.models, name)()
    text = import_module(model, (3, 224, 224))
    (tmp_path / f"{name}.yaml").write_text(text)
    network = resgraph.load(tmp_path / f"{name}.yaml")
    compiled = resgraph.compile(network, device="meta")
    assert [(k, v.shape) for k, v in compiled.state_dict().items()] == \
        [(k, v.shape) for k, v in model.state_dict().items()]
    written = resgraph.load(SPECS / f"{name}.yaml")
    assert (network.params, network.macs) == (written.params, written.macs)
    if name in REPEATS:
        spec = yaml.safe_load(text)
        assert [spec["nodes"][f"layer{i}"]["repeat"] for i in range(1, 5)] == REPEATS[name]


def test_imported_resnet50_reads_like_the_library_spec():
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    spec = yaml.safe_load(import_module(model, (3, 224, 224)))
    assert list(spec["blocks"]) == ["bottleneck"]
    block = spec["blocks"]["bottleneck"]
    assert block["doc"] == "torchvision.models.resnet.Bottleneck"
    assert block["params"] == {"conv1_out": None, "stride": 1}
    assert block["nodes"]["conv3"]["out"] == "conv1_out * 4"
    assert block["nodes"]["add"] == {"op": "add", "shortcut": "auto", "inputs": ["bn3", "input"]}
    assert len(spec["nodes"]) + len(block["nodes"]) < 40
    assert spec["nodes"]["layer1"] == {"block": "bottleneck", "repeat": 3, "with": {"conv1_out": 64}}
    assert spec["nodes"]["layer2"] == {"block": "bottleneck", "repeat": 4, "with": {"conv1_out": 128},
                                       "first": {"stride": 2}}
    assert spec["input"] == [3, 224, 224] and spec["name"] == "res_net"


def test_default_input_shape_comes_from_the_first_layer():
    with torch.device("meta"):
        model = torchvision.models.resnet18(num_classes=10)
    text = import_module(model)
    assert "input: [3, 224, 224]" in text
    assert resgraph.load(Path("resnet18.yaml"), text=text).output_shapes == {"fc": (10,)}


# ---- models written here ----------------------------------------------------------------------

class ResidualMLPBlock(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class MLP(nn.Module):
    def __init__(self, in_features: int = 48, width: int = 32, depth: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.SiLU())
        self.blocks = nn.Sequential(*[ResidualMLPBlock(width, 2 * width) for _ in range(depth)])
        self.gate = nn.Linear(width, width)
        self.norm = nn.BatchNorm1d(2 * width)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        gated = h * torch.sigmoid(self.gate(h))
        return self.head(torch.tanh(self.norm(torch.cat([h, gated], dim=1))))


def make_mlp(width: int = 32, depth: int = 3) -> nn.Module:
    """The target of `tests.test_importer:make_mlp`."""
    torch.manual_seed(0)
    return MLP(width=width, depth=depth)


class Unflatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        return self.fc(x).view(x.size(0), 2, 4)


class BatchMerge(Unflatten):
    def forward(self, x):
        return self.fc(x).view(-1, 4)   # [2 * batch, 4]: the batch dimension changes


def test_a_reshape_with_the_batch_first_is_a_reshape(tmp_path):
    model = Unflatten()
    text, compiled = round_trip(model, tmp_path / "unflatten.yaml", (4,))
    assert "{op: reshape, shape: [2, 4]}" in text
    assert_same_outputs(model, compiled, 4)


class Signal2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding="same", dilation=2, padding_mode="reflect")
        self.norm = nn.GroupNorm(3, 6)
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.grouped = nn.Conv2d(6, 6, (1, 3), padding=(0, 1), groups=3)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        y = self.pool(F.silu(self.norm(self.conv(x))))                # [6, 8, 8]
        y = F.max_pool2d(self.grouped(y).relu(), 3, 2, 1)            # [6, 4, 4]
        y = F.gelu(y, approximate="tanh") + F.adaptive_avg_pool2d(y, 4)
        return self.fc(y.view(y.size(0), -1))


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm1d(8, eps=1e-3, momentum=0.01)
        self.out = nn.Conv1d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return torch.flatten(self.out(y) + y, 1)


class ResNetDBlock(nn.Module):
    """A residual block whose projection (average pool, 1x1 conv, batch norm) is not resgraph's."""

    def __init__(self, channels: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or channels != out:
            self.downsample = nn.Sequential(nn.AvgPool2d(stride), nn.Conv2d(channels, out, 1, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        out = self.bn(self.conv(x))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(ResNetDBlock(8, 8, 1), ResNetDBlock(8, 8, 1))
        self.layer2 = nn.Sequential(ResNetDBlock(8, 16, 2), ResNetDBlock(16, 16, 1), ResNetDBlock(16, 16, 1))
        self.layers = nn.ModuleList([ResNetDBlock(16, 16, 1) for _ in range(2)])

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        for layer in self.layers:
            x = layer(x)
        return x


class TwoInputs(nn.Module):
    """Several inputs and outputs, and a squeeze-and-excitation gate (`mul`) from torchvision."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mask = nn.Conv2d(1, 8, 1)
        self.se = torchvision.ops.SqueezeExcitation(8, 2)

    def forward(self, image, mask):
        features = self.conv(image) + self.mask(mask)
        return self.se(features), features


def test_several_inputs_and_outputs_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TwoInputs().eval()
    text = import_module(model, {"image": (3, 8, 8), "mask": (1, 8, 8)})
    # The forward's argument names; `mask` is also a submodule's, so its input takes another.
    assert "input: {image: [3, 8, 8], mask_1: [1, 8, 8]}" in text and "outputs: [se, add]" in text
    (tmp_path / "two.yaml").write_text(text)
    compiled = resgraph.compile(tmp_path / "two.yaml").eval()
    compiled.load_state_dict(model.state_dict(), strict=True)
    inputs = torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        for got, expected in zip(compiled(*inputs), model(*inputs)):
            assert (got - expected).abs().max().item() <= 1e-5
    gate = yaml.safe_load(text)["blocks"]["squeeze_excitation"]["nodes"]
    assert gate["mul"] == {"op": "mul", "inputs": ["scale_activation", "input"]}


def test_user_mlp_round_trips_from_a_module(tmp_path):
    model = randomize_batch_norm(make_mlp())
    text, compiled = round_trip(model, tmp_path / "mlp.yaml", (3, 4, 4))
    assert_same_outputs(model, compiled, 3, 4, 4)
    spec = yaml.safe_load(text)
    assert spec["nodes"]["blocks"] == {"block": "residual_mlp_block", "repeat": 3}
    nodes = spec["blocks"]["residual_mlp_block"]["nodes"]
    assert nodes["add"] == {"op": "add", "inputs": ["drop", "input"]}
    assert nodes["gelu"] == "gelu" and nodes["drop"] == {"op": "dropout", "p": 0.1}


def test_user_mlp_round_trips_from_a_target_with_arguments(tmp_path):
    text = import_module("tests.test_importer:make_mlp", (48,), {"width": 16, "depth": 2})
    (tmp_path / "mlp.yaml").write_text(text)
    compiled = resgraph.compile(tmp_path / "mlp.yaml")
    model = make_mlp(width=16, depth=2)
    compiled.load_state_dict(model.state_dict(), strict=True)
    assert_same_outputs(model, compiled, 48)
    assert yaml.safe_load(text)["name"] == "make_mlp"


def test_functions_methods_and_layer_settings_round_trip(tmp_path):
    torch.manual_seed(0)
    for model, shape in ((Signal2d(), (3, 16, 16)), (randomize_batch_norm(Conv1dNet()), (4, 32))):
        _, compiled = round_trip(model, tmp_path / "net.yaml", shape)
        assert_same_outputs(model, compiled, *shape)


def test_a_stage_whose_first_block_differs_uses_first_block(tmp_path):
    torch.manual_seed(0)
    model = randomize_batch_norm(ResNetD())
    text, compiled = round_trip(model, tmp_path / "resnet_d.yaml", (3, 16, 16))
    assert_same_outputs(model, compiled, 3, 16, 16)
    spec = yaml.safe_load(text)
    assert list(spec["blocks"]) == ["res_net_d_block", "layer2_0_downsample", "res_net_d_block_1"]
    assert spec["nodes"]["layer1"] == {"block": "res_net_d_block", "repeat": 2, "with": {"conv_out": 8}}
    assert spec["nodes"]["layer2"] == {"block": "res_net_d_block", "first_block": "res_net_d_block_1", "repeat": 3,
                                       "first": {"stride": 2}}
    # A ModuleList looped over in the forward is never called itself, but still a chain of blocks.
    assert spec["nodes"]["layers"] == {"block": "res_net_d_block", "repeat": 2}


# ---- what cannot be imported ------------------------------------------------------------------

def import_error(target, *args, **kwargs) -> str:
    with pytest.raises(resgraph.SpecError) as info:
        import_module(target, *args, **kwargs)
    assert all(d.code == "RG060" for d in info.value.diagnostics)
    return str(info.value)


def unmapped_layer() -> nn.Module:
    """A model with a torch.nn layer that has no resgraph op (Softshrink), at path `1.1`."""
    return nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.Softshrink()))


def test_an_op_without_a_resgraph_op_is_named_with_its_path():
    model = unmapped_layer()
    message = import_error(model, (4,))
    assert message.startswith("error[RG060]: cannot import `1.1`")
    assert "`torch.nn.Softshrink` has no resgraph op" in message
    assert "help: resgraph imports the torch.nn layers docs/import.md lists (Conv1d, Conv2d" in message


def test_mobilenet_v2_round_trips(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2().eval()
    path = tmp_path / "mobilenet_v2.yaml"
    path.write_text(import_module(model, (3, 64, 64)))
    compiled = resgraph.compile(path).eval()
    compiled.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max().item() <= 1e-5


def test_efficientnet_round_trips_with_stochastic_depth_as_drop_path(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0()
    path = tmp_path / "efficientnet_b0.yaml"
    text = import_module(model, (3, 64, 64))
    path.write_text(text)
    assert "op: drop_path" in text
    compiled = resgraph.compile(path)
    compiled.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64)
    model.eval(), compiled.eval()
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max().item() <= 1e-5
    # In training, the same seed draws the same per-sample masks as torchvision's stochastic_depth.
    model.train(), compiled.train()
    with torch.no_grad():
        torch.manual_seed(7)
        expected = model(x)
        torch.manual_seed(7)
        assert (compiled(x) - expected).abs().max().item() <= 1e-5


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), Gate())

    def forward(self, x):
        return self.inner(x)


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


class OwnParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * self.scale


class OwnBuffer(OwnParameter):
    def __init__(self) -> None:
        super().__init__()
        del self.scale
        self.register_buffer("scale", torch.ones(4))


def test_a_parameter_the_forward_reads_is_a_parameter_node(tmp_path):
    model = OwnParameter()
    with torch.no_grad():
        model.scale.uniform_(0.5, 1.5)
    text, compiled = round_trip(model, tmp_path / "own.yaml", (4,))
    assert "scale: {op: parameter, shape: [4], batch: false}" in text
    assert_same_outputs(model, compiled, 4)


@pytest.mark.parametrize("model, expected", [
    (Branchy(), r"torch\.fx cannot trace the model in `inner\.1` \(tests\.test_importer\.Gate\): "),
    (Shared(), r"`fc` is called more than once, sharing its parameters"),
    (OwnBuffer(), r"reads the tensor `scale` directly in its forward, and it is not a learnable parameter"),
    (BatchMerge(), r"`Tensor\.view` at the top level: `Tensor\.view` other than a flatten to \[batch, features\] or a reshape"),
], ids=["control-flow", "shared-weights", "own-buffer", "view"])
def test_what_a_spec_cannot_say_is_a_diagnostic(model, expected):
    assert re.search(expected, import_error(model, (4,)))


def test_bad_targets_are_diagnostics():
    assert "`no_such_module` is not `MODULE:CALLABLE`" in import_error("no_such_module")
    assert "No module named 'no_such_module'" in import_error("no_such_module:f")
    assert "did you mean `resnet18`?" in import_error("torchvision.models:resnt18")
    assert "raised TypeError" in import_error("tests.test_importer:make_mlp", None, {"wdth": 3})
    assert CODES["RG060"] == "cannot import"


# ---- the command ------------------------------------------------------------------------------

def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_import_command_writes_the_spec(tmp_path):
    output = tmp_path / "mlp.yaml"
    result = invoke("import", "tests.test_importer:make_mlp", "-o", str(output), "--arg", "width=16",
                    "--arg", "depth=2", "--input", "3,4,4")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {output} (2 blocks, ")
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.yaml"]  # no temporary file left behind
    compiled = resgraph.compile(output)
    compiled.load_state_dict(make_mlp(width=16, depth=2).state_dict(), strict=True)


def test_import_command_failure_leaves_the_output_alone(tmp_path):
    output = tmp_path / "out.yaml"
    output.write_text("previous\n")
    result = CliRunner().invoke(main, ["import", "tests.test_importer:unmapped_layer", "--input", "4", "-o",
                                       str(output)])
    assert result.exit_code == 1
    assert "error[RG060]: cannot import `1.1`" in result.output and "Softshrink" in result.output
    assert "Traceback" not in result.output
    assert output.read_text() == "previous\n" and len(list(tmp_path.iterdir())) == 1


def test_import_command_usage_errors_and_help():
    assert invoke("import", "x:y", "-o", "o.yaml", "--input", "3,a").exit_code == 2
    assert invoke("import", "x:y", "-o", "o.yaml", "--arg", "novalue").exit_code == 2
    help_text = " ".join(invoke("import", "--help").output.split())
    assert "RUNS PYTHON CODE" in help_text and "imports MODULE and calls CALLABLE" in help_text


class LayoutNet(nn.Module):
    """Layout calls and layers that map to resgraph's layout ops and rmsnorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.shuffle = nn.ChannelShuffle(2)
        self.norm = nn.RMSNorm(8, eps=1e-6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.shuffle(self.conv(x))
        x = torch.roll(x, (1, -1), (2, 3))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x.transpose(2, 3).select(1, 0)
        return self.fc(x)


def test_layout_calls_and_rmsnorm_round_trip(tmp_path):
    torch.manual_seed(0)
    model = LayoutNet()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
    text, compiled = round_trip(model, tmp_path / "layout.yaml", (4, 6, 5))
    assert_same_outputs(model, compiled, 4, 6, 5)
    ops = [node["op"] for node in yaml.safe_load(text)["nodes"].values() if isinstance(node, dict)]
    assert {"permute", "transpose", "select", "roll", "rmsnorm", "channel_shuffle"} <= set(ops)
# ---- issue 10: spatial ops in 1-d to 3-d, activations, reductions, arithmetic, padding -----------------------

class Volume3d(nn.Module):
    """A 3-d network through the new layer mappings, a subclass of nn.Conv3d that keeps its forward (as
    torchvision's Conv3DSimple), and their function forms."""

    class Conv3dSimple(nn.Conv3d):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__(cin, cout, kernel_size=3, padding=1, bias=False)

    def __init__(self) -> None:
        super().__init__()
        self.conv = self.Conv3dSimple(2, 4)
        self.bn = nn.BatchNorm3d(4)
        self.act = nn.Hardswish()
        self.pool = nn.MaxPool3d(2)
        self.norm = nn.InstanceNorm3d(4, affine=True)
        self.pad = nn.ReplicationPad3d(1)
        self.up = nn.ConvTranspose3d(4, 3, 2, stride=2)
        self.prelu = nn.PReLU(3)
        self.gap = nn.AdaptiveMaxPool3d(1)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, x):
        y = self.pool(self.act(self.bn(self.conv(x))))                    # [4, 4, 4, 4]
        y = F.avg_pool3d(self.norm(y), 2, ceil_mode=True)                  # [4, 2, 2, 2]
        y = self.prelu(self.up(self.pad(y)))                               # [3, 8, 8, 8]
        y = F.leaky_relu(y, 0.2) - F.adaptive_avg_pool3d(y, 1)             # sub, broadcasting
        return self.softmax(torch.flatten(self.gap(y), 1) * 0.5 + 1.0)     # scale, shift


class Signal1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 5, padding=2)
        self.pool = nn.AvgPool1d(3, stride=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.max_pool1d(F.elu(self.conv(x), 0.5), 2)                     # [8, 16]
        y = F.pad(self.pool(y), (1, 2), mode="reflect")                    # [8, 10]
        y = F.softplus(F.mish(y), beta=2.0).mean(-1)                       # [8]
        return F.softmax(self.fc(y), dim=-1)


class SubPixel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.unshuffle = nn.PixelUnshuffle(2)

    def forward(self, x):
        y = torch.matmul(self.left(x), self.right(x))                       # [4, 8, 8]
        y = self.unshuffle(self.shuffle(y))                                 # [1, 16, 16] -> [4, 8, 8]
        return F.pixel_shuffle(y, 2).sum(dim=(2, 3), keepdim=True) * y.amax(1, keepdim=True).mean((2, 3), True)


@pytest.mark.parametrize("model, shape, ops", [
    (Volume3d, (2, 8, 8, 8), ["conv3d", "batchnorm3d", "hardswish", "maxpool3d", "instancenorm3d", "avgpool3d",
                              "pad", "conv_transpose3d", "prelu", "leaky_relu", "adaptive_avgpool3d", "sub",
                              "adaptive_maxpool3d", "scale", "shift", "log_softmax"]),
    (Signal1d, (3, 32), ["conv1d", "elu", "maxpool1d", "avgpool1d", "pad", "mish", "softplus", "mean", "softmax"]),
    (SubPixel, (3, 8, 8), ["matmul", "pixel_shuffle", "pixel_unshuffle", "sum", "amax", "mean", "mul"]),
], ids=["3d", "1d", "subpixel"])
def test_spatial_layers_and_functions_round_trip(tmp_path, model, shape, ops):
    torch.manual_seed(0)
    model = randomize_batch_norm(model())
    text, compiled = round_trip(model, tmp_path / "net.yaml", shape)
    assert_same_outputs(model, compiled, *shape)
    written = {node["op"] if isinstance(node, dict) else node
               for scope in [yaml.safe_load(text)["nodes"]] for node in scope.values()
               if isinstance(node, str) or "op" in node}
    assert set(ops) <= written


def test_mobilenet_v3_large_imports_on_meta_as_the_library_spec(tmp_path):
    with torch.device("meta"):
        model = torchvision.models.mobilenet_v3_large()
    text = import_module(model, (3, 224, 224))
    assert "hardsigmoid" in text and "hardswish" in text
    (tmp_path / "mobilenet_v3_large.yaml").write_text(text)
    imported = resgraph.load(tmp_path / "mobilenet_v3_large.yaml")
    written = resgraph.load(SPECS / "mobilenet_v3_large.yaml")
    assert (imported.params, imported.macs) == (written.params, written.macs)
    compiled = resgraph.compile(imported, device="meta")
    assert [(k, v.shape) for k, v in compiled.state_dict().items()] == \
        [(k, v.shape) for k, v in model.state_dict().items()]


def test_r3d_18_imports_on_meta_as_the_library_spec(tmp_path):
    with torch.device("meta"):
        model = torchvision.models.video.r3d_18()
    (tmp_path / "r3d.yaml").write_text(import_module(model, (3, 8, 56, 56)))
    imported = resgraph.load(tmp_path / "r3d.yaml")
    written = resgraph.load(SPECS / "r3d_18.yaml", params={"frames": 8, "size": 56})
    assert (imported.params, imported.macs) == (written.params, written.macs)
