"""The spec library: every file in specs/ validates cleanly, every network has its published
parameter count (shape inference and the compiled module agree), and the deep and unusual ones
run. Reference counts: /work/shared/reference/resnet_facts.md (torchvision, akamaster's CIFAR
ResNets, osmr/imgclsmob and timm, each computed there with the reference code)."""

from __future__ import annotations

import re

import pytest
import torch

import resgraph

from .conftest import SPECS, randomize_batch_norm

SPEC_FILES = sorted(SPECS.rglob("*.yaml"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(SPECS)) for p in SPEC_FILES])
def test_every_spec_validates_without_diagnostics(path):
    assert resgraph.validate(path) == []


# (spec file, param overrides, exact parameter count, where the count comes from)
COUNTS = [
    # He et al. 2015, CIFAR-10, 6n+2 layers; option A = akamaster/pytorch_resnet_cifar10, option B = osmr
    ("cifar_resnet20", {}, 269_722),
    ("cifar_resnet", {"n": 3, "shortcut": "pad"}, 269_722),
    ("cifar_resnet", {"n": 5, "shortcut": "pad"}, 464_154),
    ("cifar_resnet", {"n": 7, "shortcut": "pad"}, 658_586),
    ("cifar_resnet", {"n": 9, "shortcut": "pad"}, 853_018),
    ("cifar_resnet", {"n": 18, "shortcut": "pad"}, 1_727_962),
    ("cifar_resnet", {"n": 200, "shortcut": "pad"}, 19_421_274),
    ("cifar_resnet", {"n": 3, "shortcut": "auto"}, 272_474),
    ("cifar_resnet", {"n": 9, "shortcut": "auto"}, 855_770),
    ("cifar_resnet", {"n": 18, "shortcut": "auto"}, 1_730_714),
    # plain nets: the residual twin minus its shortcuts' parameters (none for option A on CIFAR;
    # ImageNet: the three downsample projections, 8,448 + 33,280 + 132,096)
    ("cifar_plain20", {}, 269_722),
    ("cifar_plain56", {}, 853_018),
    ("cifar_resnet56", {}, 853_018),
    ("plain18", {}, 11_689_512 - 173_824),
    ("plain34", {}, 21_797_672 - 173_824),
    # He et al. 2016, pre-activation, CIFAR-10 (= osmr PreResNet-164(BN) / -1001)
    ("preact_resnet164", {}, 1_703_258),
    ("preact_resnet1001", {}, 10_327_706),
    ("preact_resnet164", {"num_classes": 100}, 1_726_388),
    # Zagoruyko & Komodakis 2016 (= osmr), CIFAR-10 unless num_classes says otherwise
    ("wrn28_10", {}, 36_479_194),
    ("wrn28_10", {"num_classes": 100}, 36_536_884),
    ("wrn28_10", {"depth": 16, "k": 4}, 2_748_890),
    ("wrn28_10", {"depth": 40, "k": 4}, 8_949_210),
    ("wrn28_10", {"depth": 16, "k": 8}, 10_961_370),
    ("wrn28_10", {"depth": 22, "k": 8}, 17_158_106),
    ("wrn28_10", {"depth": 40, "k": 8}, 35_748_314),
    # Hu et al. 2018 (= timm seresnet*, osmr)
    ("se_resnet50", {}, 28_088_024),
    ("se_resnet50", {"layers": [3, 4, 23, 3]}, 49_326_872),
    ("se_resnet50", {"groups": 32, "width_per_group": 4}, 27_559_896),
    # He T. et al. 2019, timm resnet50d / resnet101d
    ("resnet50d", {}, 25_576_264),
    ("resnet50d", {"layers": [3, 4, 23, 3]}, 44_568_392),
    # the residual MLP: 784*256+256 + 4*2*(256*256+256) + 256*10+10
    ("residual_mlp", {}, 729_866),
]


@pytest.mark.parametrize("name, params, expected", COUNTS,
                         ids=[name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params, _ in COUNTS])
def test_parameter_count(name, params, expected):
    path = SPECS / f"{name}.yaml"
    assert resgraph.load(path, params=params).params == expected
    model = resgraph.compile(path, device="meta", params=params)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_resnet50d_and_se_resnet50_macs():
    # conv + linear MACs at 224x224, as computed with the reference implementations (avg pools not counted)
    assert resgraph.load(SPECS / "resnet50d.yaml").macs == 4_328_824_832
    assert resgraph.load(SPECS / "se_resnet50.yaml").macs == 4_091_699_200


def test_plain_nets_are_their_residual_twins_without_shortcuts():
    for plain, residual in [("plain18", "resnet18"), ("plain34", "resnet34"), ("cifar_plain56", "cifar_resnet")]:
        plain_net = resgraph.load(SPECS / f"{plain}.yaml")
        residual_params = {"n": 9} if residual == "cifar_resnet" else None
        plain_model = resgraph.compile(plain_net, device="meta")
        residual_model = resgraph.compile(SPECS / f"{residual}.yaml", device="meta", params=residual_params)
        assert not any(node.op is not None and node.op.op_name() == "add" for node in plain_net.graph)
        assert list(plain_model.state_dict()) == [key for key in residual_model.state_dict()
                                                  if ".downsample." not in key]


def test_preact_units_have_nothing_after_the_addition():
    network = resgraph.load(SPECS / "preact_resnet164.yaml")
    users = network.graph.users()
    adds = [node.name for node in network.graph if node.op is not None and node.op.op_name() == "add"]
    assert len(adds) == 3 * 18
    for name in adds:
        # each sum feeds the next unit's BN and (identity units) its addition, or the final BN; never a ReLU
        assert {network.graph.nodes[user].op.op_name() for user in users[name]} <= {"batchnorm2d", "add"}
    # a projecting unit's shortcut is a bias-free 1x1 conv of the pre-activated input
    shortcut = network.graph.nodes["layer2.0.shortcut"]
    assert shortcut.inputs == ["layer2.0.relu1"]
    assert (shortcut.op.kernel, shortcut.op.stride, shortcut.op.bias) == (1, 2, False)


def test_preact_resnet1001_runs():
    model = resgraph.compile(SPECS / "preact_resnet1001.yaml")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # Untrained, 333 un-normalised branches overflow float32 in eval mode (BN running stats are 0 / 1; osmr's
    # PreResNet-1001 gives NaN too), so first set the running stats to this batch's (momentum None: a plain average).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    torch.set_flush_denormal(True)  # denormals make the CPU pass ~6x slower
    try:
        with torch.no_grad():
            model(x)
        model.eval()
        with torch.inference_mode():
            y = model(x)
    finally:
        torch.set_flush_denormal(False)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()


def _run_capturing(model, x, unit_input_module, unit_output_user):
    """Run `model` on `x`, capturing the input of `unit_input_module` (a unit's first conv) and the input
    of `unit_output_user` (the first conv of the next unit, which reads the unit's output)."""
    captured = {}
    hooks = [model.get_submodule(name).register_forward_pre_hook(
        lambda module, args, key=key: captured.setdefault(key, args[0].clone()))
        for key, name in (("input", unit_input_module), ("output", unit_output_user))]
    try:
        y = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return y, captured["input"], captured["output"]


def _bottleneck_branch(unit, x):
    x = torch.relu(unit.bn1(unit.conv1(x)))
    x = torch.relu(unit.bn2(unit.conv2(x)))
    return unit.bn3(unit.conv3(x))


def test_se_resnet50_gates_the_branch_before_the_addition():
    model = resgraph.compile(SPECS / "se_resnet50.yaml").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y, unit_in, unit_out = _run_capturing(model, x, "layer2.0.conv1", "layer2.1.conv1")
        assert y.shape == (2, 1000)
        unit = model.get_submodule("layer2.0")
        assert (unit.se.fc1.in_channels, unit.se.fc1.out_channels, unit.se.fc2.out_channels) == (512, 32, 512)
        assert unit.se.fc1.bias is not None and unit.se.fc2.bias is not None
        branch = _bottleneck_branch(unit, unit_in)
        gate = torch.sigmoid(unit.se.fc2(torch.relu(unit.se.fc1(branch.mean((2, 3), keepdim=True)))))
        expected = torch.relu(branch * gate + unit.downsample(unit_in))
        assert torch.allclose(unit_out, expected, atol=1e-5)


def test_resnet50d_downsamples_by_average_pooling():
    model = resgraph.compile(SPECS / "resnet50d.yaml").eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y, unit_in, unit_out = _run_capturing(model, x, "layer2.0.conv1", "layer2.1.conv1")
        assert y.shape == (2, 1000)
        # the deep stem: three 3x3 convolutions, 32 / 32 / 64 channels, the first with stride 2
        convs = [model.get_submodule(f"stem.conv{i}") for i in (1, 2, 3)]
        assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
            (32, (3, 3), (2, 2)), (32, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
        # layer2's shortcut: 2x2 average pool (ceil mode, padding not counted), then a stride-1 1x1 conv and BN
        unit = model.get_submodule("layer2.0")
        assert (unit.downsample.conv.kernel_size, unit.downsample.conv.stride) == ((1, 1), (1, 1))
        pooled = torch.nn.functional.avg_pool2d(unit_in, 2, 2, ceil_mode=True, count_include_pad=False)
        expected = torch.relu(_bottleneck_branch(unit, unit_in) + unit.downsample.bn(unit.downsample.conv(pooled)))
        assert torch.allclose(unit_out, expected, atol=1e-5)


def test_residual_mlp_adds_the_block_input_before_the_activation():
    model = resgraph.compile(SPECS / "residual_mlp.yaml").eval()
    x = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = torch.relu(model.fc_in(x))
        for i in range(4):
            block = model.get_submodule(f"layers.{i}")
            a = torch.relu(block.fc2(torch.relu(block.fc1(a))) + a)  # a[l+2] = g(z[l+2] + a[l])
        assert torch.allclose(model(x), model.fc(a), atol=1e-6)


def _timm_key(key: str) -> str:
    """Our module path -> timm's: the deep stem is timm's Sequential `conv1` plus `bn1`, and avg_down's conv and
    BN are `downsample.1` and `.2` there (the units are `layerN.<i>` in both)."""
    stem = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6", "bn3": "bn1"}
    key = re.sub(r"^stem\.(\w+)\.", lambda m: stem[m.group(1)] + ".", key)
    return key.replace(".downsample.conv.", ".downsample.1.").replace(".downsample.bn.", ".downsample.2.")


@pytest.mark.parametrize("name, timm_name", [("resnet50d", "resnet50d"), ("se_resnet50", "seresnet50")])
def test_timm_parity(name, timm_name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False).eval()
    randomize_batch_norm(reference)
    model = resgraph.compile(SPECS / f"{name}.yaml").eval()
    ours = {_timm_key(key): key for key in model.state_dict()}
    assert set(ours) == set(reference.state_dict())
    model.load_state_dict({ours[key]: value for key, value in reference.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(x), rtol=1e-5, atol=1e-4)


# ---- the Transformer encoder: torch.nn's own layers as the reference --------------------------------

BERT_BASE = {"d_model": 768, "heads": 12, "dim_feedforward": 3072, "seq_len": 10, "num_layers": 1}


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights everywhere (torch initialises biases to 0 and norms to 1, which would hide a swap)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_is_torchs(activation):
    # BERT-base sizes: attention 4*768^2 + 4*768, MLP 2*768*3072 + 3072 + 768, two norms 4*768
    assert resgraph.load(SPECS / "transformer_encoder.yaml", params=BERT_BASE).params == 7_087_872
    model = resgraph.compile(SPECS / "transformer_encoder.yaml", params=BERT_BASE | {"activation": activation})
    torch.manual_seed(0)
    reference = _perturbed(torch.nn.TransformerEncoderLayer(
        d_model=768, nhead=12, dim_feedforward=3072, activation=activation, norm_first=True, batch_first=True))
    assert sum(p.numel() for p in model.parameters()) == 7_087_872
    # The one layer is `layers.0` (the `repeat` of the stack): the keys below it are torch's
    model.load_state_dict({f"layers.0.{key}": value for key, value in reference.state_dict().items()}, strict=True)
    model.eval()
    x = torch.randn(2, 10, 768, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5
    # with autograd on, torch takes its unfused path
    assert (model(x) - reference(x)).abs().max().item() <= 1e-5


def test_transformer_encoder_stack_is_torchs():
    params = {"d_model": 64, "heads": 4, "dim_feedforward": 128, "seq_len": 7, "num_layers": 3}
    model = resgraph.compile(SPECS / "transformer_encoder.yaml", params=params)
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, norm_first=True, batch_first=True)
    reference = _perturbed(torch.nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False))
    assert set(model.state_dict()) == set(reference.state_dict())  # no key mapping at all
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    x = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5


# ---- the U-Net: concat skips across resolutions ---------------------------------------------------

def test_unet_restores_the_input_size():
    assert resgraph.validate(SPECS / "unet.yaml") == []
    network = resgraph.load(SPECS / "unet.yaml")
    assert network.params == 7_762_498
    # the paper's widths with 3 input channels: milesial/Pytorch-UNet's UNet(3, 2, bilinear=False)
    assert resgraph.load(SPECS / "unet.yaml", params={"width": 64, "in_channels": 3}).params == 31_037_698
    shapes = {name: network.graph.nodes[name].shape for name in
              ("enc1.relu2", "enc4.relu2", "bottleneck.relu2", "up4.upconv", "up4.cat", "up1.cat", "head")}
    assert shapes == {"enc1.relu2": (32, 64, 64), "enc4.relu2": (256, 8, 8), "bottleneck.relu2": (512, 4, 4),
                      "up4.upconv": (256, 8, 8), "up4.cat": (512, 8, 8), "up1.cat": (64, 64, 64), "head": (2, 64, 64)}
    model = resgraph.compile(network).eval()
    assert model.get_submodule("up4.upconv").weight.shape == (512, 256, 2, 2)
    with torch.no_grad():
        y = model(torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (2, 2, 64, 64)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_unet_depth_is_a_param(depth):
    network = resgraph.load(SPECS / "unet.yaml", params={"depth": depth})
    nodes = network.graph.nodes
    assert [f"enc{k}.relu2" in nodes for k in range(1, 6)] == [k <= depth for k in range(1, 6)]
    assert [f"up{k}.cat" in nodes for k in range(1, 6)] == [k <= depth for k in range(1, 6)]
    assert nodes["bottleneck.relu2"].shape == (32 * 2**depth, 64 // 2**depth, 64 // 2**depth)
    assert nodes["bottleneck.conv1"].inputs == [f"pool{depth}"]
    assert nodes[f"up{depth}.upconv"].inputs == ["bottleneck.relu2"]
    model = resgraph.compile(network).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_unet_input_size_must_divide_by_16():
    # 60 -> 30 -> 15 -> 7 (max pooling floors) -> 3; the decoder doubles 3 to 6 and would meet the 7x7 skip
    # (RG051 at `up4.cat`): the spec's `require` says why first, before anything is built
    diagnostics = resgraph.validate(SPECS / "unet.yaml", params={"size": 60})
    assert [(d.code, d.message) for d in diagnostics] == [
        ("RG023", "requirement `size % 2**depth == 0` is false (`depth` = 4, `size` = 60)")]
    assert "divisible by 2**depth" in diagnostics[0].help
