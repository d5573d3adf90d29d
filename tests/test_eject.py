"""Eject: a spec written out as one standalone PyTorch file, checked in a fresh process in which
resgraph cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import resgraph
from resgraph.eject import eject_network

from .conftest import ROOT, SPECS

CHECK = textwrap.dedent("""
    import importlib.util, sys
    sys.modules["resgraph"] = None  # resgraph is not importable in here
    import torch
    spec = importlib.util.spec_from_file_location("ejected", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, sys.argv[2])()
    model.load_state_dict(torch.load(sys.argv[3], weights_only=True), strict=True)
    model.eval()
    data = torch.load(sys.argv[4], weights_only=True)
    with torch.no_grad():
        out = model(data["x"])
    difference = (out - data["expected"]).abs().max().item()
    assert difference <= 1e-5, difference
    assert not any(name.startswith("resgraph") for name in sys.modules if sys.modules[name] is not None)
    print("ok", difference)
""")


def run_ejected(tmp_path, path, class_name, state_dict, x, expected):
    torch.save(state_dict, tmp_path / "weights.pt")
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    result = subprocess.run([sys.executable, str(script), str(path), class_name, str(tmp_path / "weights.pt"),
                             str(tmp_path / "io.pt")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize("name, reference, size", [
    ("resnet18", "torchvision", 64),
    ("resnet50", "torchvision", 64),
    ("cifar_resnet20", "spec", 32),
])
def test_ejected_file_matches(tmp_path, name, reference, size):
    network = resgraph.load(SPECS / f"{name}.yaml")
    source = eject_network(network)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    if reference == "torchvision":
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)().eval()
    else:
        model = resgraph.compile(network, seed=1).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
    class_name = source.split("\nclass ")[-1].split("(")[0]
    run_ejected(tmp_path, path, class_name, model.state_dict(), x, expected)


def test_one_class_per_block_definition():
    source = eject_network(resgraph.load(SPECS / "resnet50.yaml"))
    assert source.count("\nclass ") == 2  # Bottleneck and the network
    assert "class Bottleneck(nn.Module):" in source
    assert "identity = self.downsample(x) if self.downsample is not None else x" in source
    assert "out += identity" in source
    assert "Bottleneck(256, 128, stride=2, downsample=True)" in source
    assert "import resgraph" not in source and "from resgraph" not in source


def test_zero_padding_shortcut_is_written_out():
    source = eject_network(resgraph.load(SPECS / "cifar_resnet20.yaml"))
    assert "class ZeroPadShortcut(nn.Module):" in source
    assert "ZeroPadShortcut(2, in_channels, planes)" in source


def test_the_input_channels_read_with_shape_are_the_constructors_in_channels(load_text):
    network = load_text("""
        resgraph: 1
        input: [16, 8, 8]
        blocks:
          squeeze:
            let: {quarter: "shape(input)[0] // 4"}
            nodes:
              fc1: {op: conv2d, out: quarter, kernel: 1}
              fc2: {op: conv2d, out: "shape(input)[0]", kernel: 1}
        nodes:
          a: {block: squeeze}
          b: {op: conv2d, out: 32, kernel: 1}
          c: {block: squeeze}
    """)
    source = eject_network(network)
    assert "quarter = in_channels // 4" in source
    assert "Squeeze(16)" in source and "Squeeze(32)" in source
    namespace: dict = {}
    exec(compile(source, "net.py", "exec"), namespace)  # our own generated file, in the test
    compiled = resgraph.compile(network).eval()
    ejected = namespace[source.split("\nclass ")[-1].split("(")[0]]().eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ejected(x), compiled(x), atol=1e-6)


def test_variants_of_a_block_are_named_after_their_conditional_nodes():
    source = eject_network(resgraph.load(SPECS / "wrn28_10.yaml"))
    assert "class PreactBasicWithShortcut(nn.Module):" in source and "class PreactBasic(nn.Module):" in source
    assert "PreactBasicWithShortcut(160, 320, stride=2)," in source and "PreactBasic(320, 320)," in source


def test_drop_path_is_written_out_and_draws_the_same_masks():
    network = resgraph.load(SPECS / "transformer_encoder.yaml",
                            {"drop_path": 0.3, "dropout": 0.0, "num_layers": 2, "d_model": 16, "heads": 2,
                             "seq_len": 5})
    source = eject_network(network)
    assert "class DropPath(nn.Module):" in source and "class ZeroPadShortcut" not in source
    black = pytest.importorskip("black")
    assert black.format_str(source, mode=black.Mode()) == source
    namespace: dict = {}
    exec(compile(source, "net.py", "exec"), namespace)  # our own generated file, in the test
    compiled = resgraph.compile(network, seed=1)
    ejected = namespace["TransformerEncoder"]()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(32, 5, 16, generator=torch.Generator().manual_seed(0))
    ejected.train(), compiled.train()
    with torch.no_grad():
        torch.manual_seed(5)
        expected = compiled(x)
        torch.manual_seed(5)
        assert (ejected(x) - expected).abs().max().item() <= 1e-5
        compiled.eval()
        assert (compiled(x) - expected).abs().max().item() > 1e-3   # no dropout: only drop_path differs


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "cifar_resnet20", "se_resnet50", "residual_mlp",
                                  "preact_resnet164", "resnet50d", "wrn28_10", "transformer_encoder", "unet"])
def test_ejected_source_is_black_formatted_and_equivalent(tmp_path, name):
    black = pytest.importorskip("black")
    network = resgraph.load(SPECS / f"{name}.yaml")
    source = eject_network(network)
    assert black.format_str(source, mode=black.Mode()) == source
    namespace: dict = {}
    exec(compile(source, f"{name}.py", "exec"), namespace)  # our own generated file, in the test
    class_name = source.split("\nclass ")[-1].split("(")[0]
    ejected = namespace[class_name]().eval()
    compiled = resgraph.compile(network, seed=4).eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    shape = next(iter(network.input_shapes.values()))
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ejected(x) - compiled(x)).abs().max().item() <= 1e-5


LAYOUT_SPEC = """
resgraph: 1
input: [8, 6, 6]
nodes:
  parts: {op: split, sizes: [3, 5]}
  a: {op: relu, inputs: "parts:0"}
  b: {op: conv2d, out: 5, kernel: 1, inputs: "parts:1"}
  cat: {op: concat, inputs: [a, b]}
  shuf: {op: channel_shuffle, groups: 2}
  cln: {op: layernorm, channels_first: true, inputs: cat}
  mix: {op: add, inputs: [cln, shuf]}
  crms: {op: rmsnorm, channels_first: true}
  halves: {op: chunk, chunks: 2}
  merged: {op: add, inputs: ["halves:1", "halves:0"]}
  un: {op: unflatten, dim: 1, sizes: [2, -1]}
  fl: {op: flatten, start_dim: 1, end_dim: 2}
  sl: {op: slice, dim: 2, start: 1, stop: 5, step: 2}
  ro: {op: roll, shifts: [1, -1], dims: [2, 3]}
  tr: {op: transpose, dim0: 2, dim1: 3}
  r: {op: reshape, shape: [8, -1, 1]}
  p: {op: permute, dims: [0, 2, 1, 3]}
  ex: {op: expand, shape: [-1, -1, 4]}
  s: {op: select, dim: 1, index: -1}
  picked: {op: index, dim: 2, indices: [3, 0, 0]}
  ln: {op: layernorm}
  rms: {op: rmsnorm}
"""


def test_layout_ops_are_written_out(load_text, tmp_path):
    import importlib.util

    network = load_text(LAYOUT_SPEC)
    path = tmp_path / "layout.py"
    path.write_text(eject_network(network))
    spec = importlib.util.spec_from_file_location("layout_ejected", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiled = resgraph.compile(network).eval()
    ejected = module.Spec().eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(ejected(x), compiled(x))
    assert "x.split([3, 5], dim=1)" in path.read_text() and "[:, :, 1:5:2]" in path.read_text()




@pytest.mark.parametrize("name", ["issue10_ops", pytest.param("mobilenet_v3_large", marks=pytest.mark.slow)])
def test_ejected_file_of_the_issue10_ops_matches(tmp_path, name):
    if name == "issue10_ops":  # issue 10's ops in one network (a 3-d input, reduced to 2-d and 1-d by `mean`)
        network = resgraph.load(ROOT / "tests" / "data" / "issue10_ops.yaml")
        model = resgraph.compile(network, seed=1).eval()
        x = torch.randn(2, 2, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    else:
        import torchvision

        network = resgraph.load(SPECS / f"{name}.yaml")
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)().eval()
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    source = eject_network(network)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    with torch.no_grad():
        expected = model(x)
    class_name = source.split("\nclass ")[-1].split("(")[0]
    run_ejected(tmp_path, path, class_name, model.state_dict(), x, expected)
