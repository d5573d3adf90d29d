"""The summary (issue 12): JSON for machines, per-block subtotals and activation memory, shortcut kinds as
inference decided them, and `--input` overriding the declared input shape."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.report import summary_data, summary_table

from .conftest import SPECS


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_summary_json_follows_its_schema_and_adds_up():
    network = resgraph.load(SPECS / "resnet50.yaml")
    result = invoke("summary", str(SPECS / "resnet50.yaml"), "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "resgraph-summary/1" and data["network"] == "resnet50"
    assert data["inputs"] == [{"name": "input", "shape": [3, 224, 224], "dtype": "float"}]
    assert data["outputs"] == [{"name": "fc", "shape": [1000]}]
    nodes = {row["name"]: row for row in data["nodes"]}
    assert list(nodes) == [node.name for node in network.graph.topological_order()]
    conv1 = nodes["conv1"]
    assert conv1 == {"name": "conv1", "op": "conv2d", "label": "conv2d 7x7, 64, stride 2", "inputs": ["input"],
                     "shape": [64, 112, 112], "dtype": "float", "params": 9408, "macs": 118013952,
                     "activation_bytes": 64 * 112 * 112 * 4, "block": None}
    # The published counts (torchvision: 25,557,032 parameters, 4.09 GMACs), and sums of the rows.
    assert data["totals"]["params"] == 25_557_032 == sum(row["params"] for row in nodes.values())
    assert data["totals"]["macs"] == 4_089_184_256 == sum(row["macs"] for row in nodes.values())
    assert data["totals"]["activation_bytes"] == 4 * sum(math.prod(row["shape"]) for row in nodes.values())
    blocks = {entry["name"]: entry for entry in data["blocks"]}
    layer2 = blocks["layer2"]
    assert (layer2["block"], layer2["instances"], layer2["parent"], layer2["nodes"]) == ("bottleneck", 4, None, 40)
    assert layer2["params"] == sum(row["params"] for name, row in nodes.items() if name.startswith("layer2."))
    assert layer2["input_shapes"] == [[256, 56, 56]] and layer2["output_shape"] == [512, 28, 28]
    assert blocks["layer2.0"]["parent"] == "layer2" and blocks["layer2.0"]["instances"] == 1
    assert nodes["layer2.0.add"]["label"] == "add (projection)" and nodes["layer2.0.add"]["block"] == "layer2.0"


def test_the_text_table_has_subtotals_activations_and_shortcut_kinds():
    table = summary_table(resgraph.load(SPECS / "cifar_resnet20.yaml").graph)
    header = table.splitlines()[0].split()
    assert header == ["node", "op", "output", "params", "MACs", "activations"]
    assert "add (auto)" not in table
    assert "layer2.0.add    add (pad)" in table and "layer2.1.add    add (identity)" in table
    subtotal = next(line for line in table.splitlines() if line.startswith("= layer2"))
    assert subtotal.split()[:5] == ["=", "layer2", "basic", "×3,", "21"]   # block, count, nodes
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    layer2 = sum(node.meta.get("params", 0) for node in network.graph if node.name.startswith("layer2."))
    assert f"{layer2:,}" in subtotal
    graph = resgraph.load(SPECS / "resnet18.yaml").graph
    resnet18 = summary_table(graph)
    assert "layer2.0.add    add (projection)" in resnet18
    total = 4 * sum(math.prod(node.shape) for node in graph)
    assert f"activations: {total:,} bytes" in resnet18


def test_activation_memory_counts_every_output_in_float32_and_int64_ids_in_8_bytes():
    data = summary_data(resgraph.load(SPECS / "tiny_decoder.yaml").graph)
    first = data["nodes"][0]
    assert first["dtype"] == "int64" and first["activation_bytes"] == 8 * math.prod(first["shape"])


def test_input_overrides_the_declared_shape_for_summary_compile_and_render(tmp_path):
    small = json.loads(invoke("summary", str(SPECS / "resnet50.yaml"), "--format", "json", "--input",
                              "3,160,160").stdout)
    assert small["inputs"][0]["shape"] == [3, 160, 160]
    assert small["totals"]["params"] == 25_557_032 and small["totals"]["macs"] < 4_089_184_256 * 0.6
    network = resgraph.load(SPECS / "resnet50.yaml", inputs=[3, 160, 160])
    assert network.graph.nodes["layer4.2.relu3"].shape == (2048, 5, 5)
    result = invoke("compile", str(SPECS / "resnet18.yaml"), "--input", "3,64,64", "--device", "meta")
    assert result.exit_code == 0 and "input 3x64x64" in result.stdout
    out = tmp_path / "net.dot"
    assert invoke("render", str(SPECS / "resnet18.yaml"), "--input", "3x96x96", "-o", str(out)).exit_code == 0
    assert "3×96×96" in out.read_text()


def test_input_by_name_for_a_network_with_several_inputs(load_text):
    text = "resgraph: 1\ninput: {x: [8], y: [8]}\nnodes:\n  sum: {op: add, inputs: [x, y]}\n"
    network = load_text(text, inputs={"y": [8]})
    assert network.input_shapes == {"x": (8,), "y": (8,)}
    network = load_text(text.replace("[8], y: [8]", "[3, 8], y: [3, 8]"), inputs={"x": [3, 8], "y": [3, 8]})
    assert network.output_shapes == {"sum": (3, 8)}


@pytest.mark.parametrize("given, message", [
    ("3,a,160", "in `3,a,160`, dimension 2 `a` is not a size from 1 to 2**31 - 1"),
    ("3,0,160", "dimension 2 `0` is not a size"),
    ("3,,160", "dimension 2 is empty"),
    ("=3,1,1", "names no input before `=`"),
])
def test_a_bad_input_value_is_a_usage_error_that_points_at_it(given, message):
    result = CliRunner().invoke(main, ["summary", str(SPECS / "resnet18.yaml"), "--input", given])
    assert result.exit_code == 2 and message in result.output and "--input" in result.output


def test_an_input_the_network_cannot_take_is_an_error_located_in_the_spec():
    """ViT-B/16's position embedding has 197 tokens: a 200x200 image gives 145, located at the add."""
    result = CliRunner().invoke(main, ["summary", str(SPECS / "vit_b_16.yaml"), "--input", "3,200,200"])
    assert result.exit_code == 1 and "`positioned`" in result.output and "specs/vit_b_16.yaml:" in result.output


def test_summary_json_names_the_keys_of_a_dict_output():
    data = summary_data(resgraph.load(SPECS / "fcn_resnet50.yaml", {"size": 64}).graph)
    assert [(o["key"], o["name"], o["shape"]) for o in data["outputs"]] == \
        [("out", "upsample", [21, 64, 64]), ("aux", "aux_upsample", [21, 64, 64])]
    assert all("key" not in o for o in summary_data(resgraph.load(SPECS / "resnet18.yaml").graph)["outputs"])
