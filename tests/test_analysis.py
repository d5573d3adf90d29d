"""Residual analysis: exact path counts (Veit et al. 2016), depths, receptive fields, gradient norms."""

from __future__ import annotations

from math import comb

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import resgraph
from resgraph.analysis import analyse_paths, gradient_norms
from resgraph.cli import main

from .conftest import SPECS


def test_cifar_resnet20_has_2_to_the_9_paths_with_binomial_lengths():
    analysis = resgraph.load(SPECS / "cifar_resnet20.yaml").analyze()
    (paths,) = analysis.paths
    assert paths.count == 2**9 == 512
    # Each of the 9 blocks is skipped (0 weight layers, option A) or taken (2); plus conv1 and linear.
    assert paths.histogram == {2 + 2 * k: comb(9, k) for k in range(10)}
    assert (paths.longest, paths.shortest, paths.mean) == (20, 2, 11.0)
    assert analysis.weight_layers == 20


def test_projection_shortcuts_count_as_a_weight_layer_on_their_path():
    (paths,) = resgraph.load(SPECS / "resnet18.yaml").analyze().paths
    assert paths.count == 2**8 and paths.longest == 18
    # The 3 projection shortcuts (stages 2-4) add one layer each to the paths that skip there.
    assert paths.shortest == 2 + 3


@pytest.mark.skipif(not (SPECS / "cifar_plain20.yaml").exists(), reason="plain spec not in the library")
def test_a_plain_net_has_one_path():
    (paths,) = resgraph.load(SPECS / "cifar_plain20.yaml").analyze().paths
    assert paths.histogram == {20: 1}


def test_receptive_fields_of_resnet18_by_hand():
    fields = resgraph.load(SPECS / "resnet18.yaml").analyze().receptive_fields
    # conv1 7x7/2: 7, jump 2; maxpool 3x3/2: 7 + 2*2 = 11, jump 4; then each 3x3 conv adds 2*4 = 8.
    expected = {"conv1": 7, "maxpool": 11, "layer1.0.conv1": 19, "layer1.0.conv2": 27, "layer1.0.add": 27,
                "layer1.1.conv2": 43, "layer2.0.conv1": 51, "layer2.0.conv2": 67, "layer2.1.conv2": 99}
    assert {name: fields[name][0][0] for name in expected} == expected
    assert fields["layer2.0.conv1"][1] == (8, 8)
    assert "fc" not in fields and "flatten" not in fields  # not spatial


def test_gradient_norms_equal_autograd_computed_directly():
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    report = gradient_norms(resgraph.compile(network, seed=3), network.graph, seed=5, batch=4)

    model = resgraph.compile(network, seed=3).train()
    generator = torch.Generator().manual_seed(5)
    x = torch.randn((4, 3, 32, 32), generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    F.cross_entropy(model(x), labels).backward()
    direct = [(name, module.weight.grad.norm().item()) for name, module in model.named_modules()
              if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [name for name, _ in report.norms] == [name for name, _ in direct]
    assert [n for _, n in report.norms] == pytest.approx([n for _, n in direct], rel=1e-6)
    assert report.first_to_last == pytest.approx(direct[0][1] / direct[-1][1], rel=1e-6)


def test_analyze_command_with_plot(tmp_path):
    plot = tmp_path / "grad.png"
    result = CliRunner().invoke(main, ["analyze", str(SPECS / "cifar_resnet20.yaml"), "--plot", str(plot),
                                       "--compare", str(SPECS / "resnet18.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "512 input->output paths" in result.stdout and "256 input->output paths" in result.stdout
    assert "first/last ratio" in result.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_analyze_static_path_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys, resgraph\n"
            f"a = resgraph.load({str(SPECS / 'resnet50.yaml')!r}).analyze()\n"
            "assert a.paths[0].count == 2**16, a.paths[0].count\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _residual_chain(blocks: int) -> str:
    return ("resgraph: 1\ninput: [4]\nblocks:\n  unit:\n    nodes:\n      fc: {op: linear, out: 4}\n"
            f"      add: {{op: add, inputs: [fc, input]}}\nnodes:\n  body: {{block: unit, repeat: {blocks}}}\n")


def test_path_statistics_of_a_long_chain_in_bounded_memory():
    """Issue 14: a valid 20,001-node net died with MemoryError (a histogram of big integers per node). Counted by
    dynamic programming, 6,001 nodes take a few megabytes, and every figure is still exact."""
    import tracemalloc

    network = resgraph.load("chain.yaml", text=_residual_chain(3000))
    tracemalloc.start()
    try:
        (paths,) = network.analyze().paths
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    assert paths.count == 2**3000 and (paths.longest, paths.shortest, paths.mean) == (3000, 0, 1500.0)
    assert paths.histogram is None   # past the budget; the text says so
    assert "not listed for a network this size" in analyse_paths(network.graph).to_text()


def test_dynamic_programming_agrees_with_the_histogram():
    (paths,) = resgraph.load("chain.yaml", text=_residual_chain(12)).analyze().paths
    assert paths.histogram == {k: comb(12, k) for k in range(13)}
    assert (paths.count, paths.longest, paths.shortest, paths.mean) == (2**12, 12, 0, 6.0)


# A squeeze-and-excitation gate (a global pool, broadcast back by `mul`) and an ASPP-style pooled branch
# (a global pool upsampled back to the map and concatenated with it), between local convolutions.
_GLOBAL_POOL_SPEC = """resgraph: 1
input: [3, 32, 32]
nodes:
  conv1: {op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}
  pool: {op: adaptive_avgpool2d, size: 1}
  fc: {op: conv2d, out: 4, kernel: 1}
  gate: sigmoid
  scaled: {op: mul, inputs: [conv1, gate]}
  conv2: {op: conv2d, out: 4, kernel: 3, padding: 1}
  aspp_pool: {op: adaptive_avgpool2d, inputs: conv1, size: 1}
  aspp_up: {op: upsample, size: [16, 16], mode: bilinear}
  local: {op: conv2d, inputs: conv1, out: 4, kernel: 3, padding: 1}
  concat: {op: concat, inputs: [local, aspp_up]}
outputs: {gated: conv2, aspp: concat}
"""


def test_a_global_pool_fed_back_to_the_map_makes_the_field_global_not_huge():
    """LR-ASPP printed fields of 10^16 pixels: the global pool's jump (the whole map) was taken by the `mul` that
    broadcasts it back, and every later window multiplied it. Every output after a global pool sees the whole
    input (GLOBAL), and neighbouring outputs stay as far apart as those of the map the gate scales."""
    fields = resgraph.load("se.yaml", text=_GLOBAL_POOL_SPEC).analyze().receptive_fields
    assert fields["conv1"] == ((3, 3), (2, 2))
    assert fields["pool"][0] == (None, None)
    assert fields["scaled"] == ((None, None), (2, 2))
    assert fields["conv2"] == ((None, None), (2, 2))
    assert fields["local"] == ((7, 7), (2, 2))                     # untouched by the pooled branch beside it
    assert fields["aspp_up"] == ((None, None), (0, 0))             # one value copied to every output
    assert fields["concat"] == ((None, None), (2, 2))


def test_global_fields_agree_with_the_gradient_support():
    """Differential check with autograd: one output of `conv2` (after the gate) depends on every input pixel, and
    one output of `local` on a 7x7 patch, as the static fields say."""
    torch.manual_seed(0)
    model = resgraph.load("se.yaml", text=_GLOBAL_POOL_SPEC).compile().eval()
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    out = model(image)
    (grad,) = torch.autograd.grad(out["gated"][0, :, 8, 8].sum(), image, retain_graph=True)
    assert bool((grad.abs().sum(1) > 0).all())
    (grad,) = torch.autograd.grad(out["aspp"][0, :4, 8, 8].sum(), image)   # the `local` half of the concat
    rows, cols = (grad.abs().sum(1)[0] > 0).nonzero(as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (7, 7)


def test_lraspp_fields_stay_bounded_and_say_global():
    analysis = resgraph.load(SPECS / "lraspp_mobilenet_v3_large.yaml").analyze()
    fields = analysis.receptive_fields
    assert all(r is None or r <= 520 for size, _ in fields.values() for r in size)
    assert all(j <= 528 for _, jump in fields.values() for j in jump)
    assert fields["bneck3.add"] == ((19, 19), (4, 4))              # before the first squeeze-and-excitation
    assert fields["bneck4.block.2.scaled"] == ((None, None), (8, 8))
    assert fields["upsample"] == ((None, None), (1, 1))
    text = analysis.to_text()
    assert "  upsample  " in text and text.rstrip().endswith("global  jump 1x1")


def test_resnet18_global_pool_is_global():
    fields = resgraph.load(SPECS / "resnet18.yaml").analyze().receptive_fields
    assert fields["avgpool"][0] == (None, None)
    assert fields["layer4.1.add"][0] == (435, 435)


def test_parameters_and_buffers_start_no_path():
    """ViT and ConvNeXt crashed `analyze` (`max() arg is an empty sequence`): a `parameter` node has no inputs,
    so no path from the input reaches it; adding it (a position embedding, a layer scale) adds no path."""
    network = resgraph.load("param.yaml", text=(
        "resgraph: 1\ninput: [4, 8]\nnodes:\n  fc: {op: linear, out: 8}\n"
        "  pos: {op: parameter, shape: [4, 8]}\n  table: {op: buffer, generator: ones, shape: [4, 8]}\n"
        "  scaled: {op: mul, inputs: [pos, table]}\n  add: {op: add, inputs: [fc, scaled]}\n"))
    (paths,) = network.analyze().paths
    assert (paths.count, paths.longest, paths.shortest, paths.histogram) == (1, 1, 1, {1: 1})
    (vit,) = resgraph.load(SPECS / "vit_b_16.yaml").analyze().paths
    # 24 residual units (attention, MLP) in 12 layers; the class token's `expand` reads the patch tokens, so the
    # sequence is reached two ways. Longest: conv_proj, 12 x (attention + 2 linears), head; shortest: the two ends.
    assert (vit.count, vit.longest, vit.shortest) == (2 * 2**24, 1 + 12 * 3 + 1, 2)
