"""`resgraph expand` (the network as one flat spec) and `resgraph explain` (one node), with the origin
of every value, on a spec that `extends` another, with `--set`; through the console entry point."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main

from .conftest import SPECS

BASE = """\
resgraph: 1
params: {width: 8, num_classes: 10}
input: [3, 16, 16]
blocks:
  unit:
    params: {planes: null, stride: 1}
    let: {wide: planes * 2}
    nodes:
      conv: {op: conv2d, out: wide, kernel: 3, stride: stride, padding: 1, bias: false}
      bn: batchnorm2d
      relu: relu
      add: {op: add, inputs: [relu, input], shortcut: project}
nodes:
  stage: {block: unit, repeat: 2, with: {planes: width}, first: {stride: 2}}
  pool: {op: adaptive_avgpool2d, size: 1}
  flat: flatten
  fc: {op: linear, out: num_classes}
allow: [RG053, RG101]
"""


def _files(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    child = tmp_path / "child.yaml"
    child.write_text("resgraph: 1\nextends: base.yaml\nparams: {width: 16}\n")
    return tmp_path / "base.yaml", child


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_expand_with_origins_of_an_extends_spec_with_set(tmp_path):
    base, child = _files(tmp_path)
    result = invoke("expand", str(child), "--set", "num_classes=5", "--origins")
    assert result.exit_code == 0, result.output
    text = result.output
    lines = text.splitlines()
    # the expanded spec is itself a spec: it validates and compiles to the same parameter count
    expanded = resgraph.load(tmp_path / "expanded.yaml", text=text)
    original = resgraph.load(child, {"num_classes": 5})
    assert expanded.params == original.params and len(expanded.graph) == len(original.graph)
    assert "stage.0" not in "".join(n.name for n in expanded.graph)   # blocks unrolled
    assert expanded.program.blocks == {} and expanded.spec.params == {}
    assert f"# param width = 16: param at {child}:3 (`child.yaml` extends `base.yaml` and sets it)" in lines
    assert "# param num_classes = 5: `--set num_classes=5`" in lines
    assert f"  stage_0_conv:  # stage.0.conv, at {base}:9" in lines
    assert (f"    out: 32  # `wide` at {base}:9; wide = 32: let `planes * 2` of block `unit` at {base}:7; planes = 16: "
            f"`with` of `stage` at {base}:14: `width`; width = 16: param at {child}:3 (`child.yaml` extends "
            f"`base.yaml` and sets it)") in lines
    first, second = (lines.index(f"  stage_{i}_conv:  # stage.{i}.conv, at {base}:9") for i in (0, 1))
    assert lines[first + 5] == (f"    stride: 2  # `stride` at {base}:9; stride = 2: `first` of `stage` at {base}:14")
    assert lines[second + 5] == (f"    stride: 1  # `stride` at {base}:9; stride = 1: default of param `stride` of "
                                 f"block `unit` at {base}:6")
    assert f"    kernel: 3  # literal at {base}:9" in lines
    assert "    out: 5  # `num_classes` at " + str(base) + ":17; num_classes = 5: `--set num_classes=5`" in lines
    # each flat node and shortcut module keeps its module path in the compiled network
    assert '    key: "stage.0.conv"  # its module path' in lines
    assert '    shortcut_name: "stage.0.downsample"' in lines and '    shortcut_name: "stage.1.downsample"' in lines


def test_expand_without_origins_round_trips_resnet34():
    result = invoke("expand", str(SPECS / "resnet34.yaml"))
    assert result.exit_code == 0, result.output
    assert "#" not in "".join(line.split("#")[0] for line in result.output.splitlines())
    expanded = resgraph.load("resnet34_expanded.yaml", text=result.output)
    assert expanded.params == resgraph.load(SPECS / "resnet34.yaml").params == 21_797_672
    module = resgraph.compile(expanded, device="meta")   # and it compiles, to torchvision's resnet34 count
    assert sum(p.numel() for p in module.parameters()) == 21_797_672


def test_explain_one_node_of_an_extends_spec_with_set(tmp_path):
    base, child = _files(tmp_path)
    result = invoke("explain", str(child), "stage.0.conv", "--set", "num_classes=5")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        f"stage.0.conv: conv2d 3x3, 32, stride 2  ({base}:9)",
        f"  in `stage.0`, an instance of block `unit` made here at {base}:14",
        "  inputs: input",
        "  output: [32, 8, 8]; 864 params; 55,296 MACs",
    ]
    assert f"  out = 32: `wide` at {base}:9" in result.output
    assert f"      width = 16: param at {child}:3 (`child.yaml` extends `base.yaml` and sets it)" in result.output
    assert "  dilation = 1: the op's default" in result.output
    fc = invoke("explain", str(child), "fc", "--set", "num_classes=5").output
    assert "  out = 5: `num_classes` at" in fc and "      num_classes = 5: `--set num_classes=5`" in fc
    missing = invoke("explain", str(child), "stage.0.conv3")
    assert missing.exit_code == 2 and "`stage.0.conv3` is not a node of `child`; did you mean `stage.0.conv`?" \
        in missing.output


@pytest.mark.parametrize("name", ["unet", "transformer_encoder", "resnext50_32x4d", "se_resnet50", "cifar_resnet20",
                                  "residual_mlp"])
def test_expanded_spec_has_the_same_nodes_params_and_macs(name):
    from resgraph.provenance import expanded_spec

    network = resgraph.load(SPECS / f"{name}.yaml")
    for origins in (False, True):
        again = resgraph.load(f"{name}_expanded.yaml", text=expanded_spec(network.program, network.graph,
                                                                          origins=origins))
        assert (len(again.graph), again.params, again.macs) == (len(network.graph), network.params, network.macs)
        assert again.warnings == [] and not again.program.blocks


def test_explain_says_what_a_computed_key_reads():
    path = SPECS / "vgg16_bn.yaml"
    result = invoke("explain", str(path), "features.conv3_2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    key = next(i for i, line in enumerate(lines) if line.startswith("  key = "))
    assert lines[key].startswith('  key = "17": `{s3 + k}` at ') and lines[key].endswith("vgg.yaml:55")
    assert lines[key + 1].startswith("      k = 3: let `3 if batch_norm else 2` of block `features`")


# Keyed nodes in a block (RegNet's `f.a.0`), under a keyed and repeated call with `names`, beside a node whose name
# torch reserves (renamed `forward_` in the compiled module) and a projection shortcut.
KEYED = """\
resgraph: 1
input: [3, 8, 8]
allow: [RG039]
blocks:
  unit:
    params: {out: null}
    nodes:
      a_conv: {op: conv2d, out: out, kernel: 3, padding: 1, bias: false, key: f.a.0}
      a_bn: {op: batchnorm2d, key: f.a.1}
      forward: {op: conv2d, out: out, kernel: 1}
      add: {op: add, inputs: [forward, input], shortcut: auto}
nodes:
  stem: {op: conv2d, out: 4, kernel: 1, key: stem.0}
  stage: {block: unit, repeat: 2, names: "block1-{i}", key: trunk_output.block1, with: {out: 8}}
  pool: {op: adaptive_avgpool2d, size: 1}
  flat: flatten
  head: {op: linear, out: 2, key: fc}
"""


def _state_dict_keys(network) -> list[str]:
    return list(resgraph.compile(network, device="meta").state_dict())


def test_expand_keeps_the_instance_path_of_keyed_nodes_in_blocks(tmp_path):
    """`resgraph expand` wrote a keyed node of a block instance with its own `key` alone (`key: "f.a.0"` for every
    instance): the flat spec failed to validate (RG086, two nodes at `f.a.0`). Each flat node's key is now its
    module path, and the flat spec compiles to the original's state_dict keys, in order."""
    path = tmp_path / "keyed.yaml"
    path.write_text(KEYED)
    result = invoke("expand", str(path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert ('  stage_block1_0_a_conv: {op: conv2d, key: "trunk_output.block1.block1-0.f.a.0", out: 8, kernel: 3, '
            'padding: 1, bias: false, inputs: [stem]}  # stage.block1-0.a_conv') in lines
    assert any('key: "trunk_output.block1.block1-1.forward_"' in line for line in lines)
    assert any('shortcut_name: "trunk_output.block1.block1-0.downsample"' in line for line in lines)
    expanded = resgraph.load(tmp_path / "expanded.yaml", text=result.output)
    assert expanded.warnings == [] and not expanded.program.blocks
    original = resgraph.load(path)
    keys = _state_dict_keys(original)
    assert {"trunk_output.block1.block1-0.f.a.0.weight", "trunk_output.block1.block1-1.forward_.weight"} <= set(keys)
    assert _state_dict_keys(expanded) == keys


@pytest.mark.parametrize("name", ["regnet_x_400mf", "resnet18", "lraspp_mobilenet_v3_large", "bert", "googlenet",
                                  "shufflenet_v2_x1_0", "vgg11_bn"])
def test_expanded_spec_compiles_to_the_same_state_dict_keys(name):
    """Also what the flat spec dropped or broke before: the dtype of int64 inputs (BERT's ids), the keys of a
    mapping `outputs` (LR-ASPP returns {out}), the `training_outputs` (GoogLeNet's auxiliary heads), a reference to
    one output of a node (ShuffleNet's `halves:1`, written as the internal op `output_item`) and a block's `allow`
    (VGG's RG100 warnings came back)."""
    from resgraph.provenance import expanded_spec

    network = resgraph.load(SPECS / f"{name}.yaml")
    for origins in (False, True):
        again = resgraph.load(f"{name}_expanded.yaml", text=expanded_spec(network.program, network.graph,
                                                                          origins=origins))
        assert again.warnings == []
        assert _state_dict_keys(again) == _state_dict_keys(network)
        assert again.graph.output_keys == network.graph.output_keys
        assert len(again.graph.outputs) == len(network.graph.outputs)
        assert len(again.graph.training_outputs) == len(network.graph.training_outputs)
        assert [again.graph.nodes[name].dtype for name in again.graph.inputs] == \
            [network.graph.nodes[name].dtype for name in network.graph.inputs]


TIED = """\
resgraph: 1
input: {shape: [6], dtype: int64}
blocks:
  lm:
    nodes:
      embed: {op: embedding, num: 30, dim: 12}
      head: {op: linear, out: 30, bias: false, tie: {weight: embed.weight}}
nodes:
  stem: {op: embedding, num: 30, dim: 12}
  proj: {op: linear, out: 30, bias: false, tie: {weight: stem.weight}}
  first: {block: lm, inputs: input}
  second: {block: lm, inputs: input}
outputs: [proj, first, second]
"""


def test_expand_writes_ties_to_the_flat_names_of_their_owners(tmp_path):
    """`resgraph expand` wrote a `tie` as the text of a Python dict (`tie: "{'weight': 'wte.weight'}"`): GPT-2's flat
    spec failed to validate (RG048). A tie is a node reference, as `inputs`: it names its owner's flat node, in the
    network and inside block instances, and the flat spec keeps the keys, the count and the shared tensors."""
    from resgraph.provenance import expanded_spec

    network = resgraph.load(tmp_path / "tied.yaml", text=TIED)
    text = expanded_spec(network.program, network.graph)
    assert 'tie: {weight: "stem.weight"}' in text and 'tie: {weight: "second_embed.weight"}' in text
    again = resgraph.load(tmp_path / "flat.yaml", text=text)
    assert again.warnings == [] and again.params == network.params
    assert _state_dict_keys(again) == _state_dict_keys(network)
    model = resgraph.compile(again, device="meta")
    assert model.get_submodule("second.head").weight is model.get_submodule("second.embed").weight
