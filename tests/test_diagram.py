"""Rendering: every node and edge is in the DOT text, skip edges are marked by shortcut kind."""

from __future__ import annotations

import re

import pytest

import resgraph
from resgraph.diagram import RenderError, render_to_file, to_digraph

from .conftest import SPECS


def test_dot_has_every_node_and_marks_skip_edges():
    network = resgraph.load(SPECS / "resnet18.yaml")
    source = to_digraph(network.graph).source
    for node in network.graph:
        assert re.search(rf'^\s*"?{re.escape(node.name)}"? \[', source, re.MULTILINE), node.name
    skips = [line for line in source.splitlines() if 'class="skip' in line]
    # resnet18: 8 blocks, 3 of them with a projection shortcut.
    assert len(skips) == 8
    assert sum('class="skip project"' in line for line in skips) == 3
    assert sum('class="skip identity"' in line for line in skips) == 5
    assert all("style=dashed" in line for line in skips if "identity" in line)
    assert 'cluster_layer2.0' in source and "64×56×56" in source


def test_pad_shortcuts_are_drawn_as_such():
    source = to_digraph(resgraph.load(SPECS / "cifar_resnet20.yaml").graph).source
    assert source.count('class="skip pad"') == 2 and "zero-pad" in source


def test_dot_is_deterministic():
    network = resgraph.load(SPECS / "resnet50.yaml")
    assert to_digraph(network.graph).source == to_digraph(resgraph.load(SPECS / "resnet50.yaml").graph).source


def test_failed_render_keeps_the_existing_file(tmp_path, monkeypatch):
    network = resgraph.load(SPECS / "resnet18.yaml")
    out = tmp_path / "net.svg"
    out.write_text("previous")
    monkeypatch.setenv("PATH", "")   # graphviz's `dot` cannot be found
    with pytest.raises(RenderError, match="not installed"):
        render_to_file(network.graph, out)
    assert out.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["net.svg"]


def test_svg_repr_for_notebooks(monkeypatch):
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    assert network._repr_svg_().lstrip().startswith("<?xml")
    # Without graphviz's `dot`, Jupyter falls back to the text repr instead of printing a traceback.
    monkeypatch.setenv("PATH", "")
    assert network._repr_svg_() is None


def test_depth_collapses_block_instances():
    network = resgraph.load(SPECS / "resnet50.yaml")
    stages = to_digraph(network.graph, depth=0).source
    assert 'layer2 [label="layer2\\nbottleneck ×4"' in stages
    assert "layer2.0" not in stages and 'class="skip' not in stages
    assert 'layer2 -> layer3 [label="512×28×28"]' in stages
    units = to_digraph(network.graph, depth=1).source
    assert '"layer2.0" [label="0\\nbottleneck"' in units and "cluster_layer2" in units
    assert '"layer1.2" -> "layer2.0" [label="256×56×56"]' in units
    assert "layer2.0.conv1" not in units


def test_outputs_of_chunk_are_nodes_graphviz_reads_as_such(tmp_path):
    import subprocess

    network = resgraph.load(SPECS / "shufflenet_v2_x1_0.yaml")
    source = to_digraph(network.graph).source
    # a name with `:` would read as node `halves`, port `1`: such a node gets a plain id, its name as label
    assert '[label="halves:1\\noutput 1"' in source and 'tooltip="stage2.1.halves:1"' in source
    assert '\t"stage2.1.halves:1" [' not in source and '-> "stage2.1.halves:1"' not in source
    result = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "port" not in result.stderr, result.stderr


def test_big_networks_collapse_past_the_node_budget(tmp_path, monkeypatch):
    """Issue 14: graphviz ran for minutes on 8,400 nodes and out of memory on 21,000. Images collapse deeper
    blocks automatically past NODE_BUDGET, and say so; `.dot` text keeps every node."""
    import resgraph.diagram as diagram

    network = resgraph.load(SPECS / "resnet18.yaml")
    monkeypatch.setattr(diagram, "NODE_BUDGET", 30)
    with pytest.warns(diagram.DiagramCollapsed, match=r"has \d+ nodes.*`--depth`"):
        render_to_file(network.graph, tmp_path / "net.svg")
    assert (tmp_path / "net.svg").read_text().count("<g id=\"node") <= 30
    render_to_file(network.graph, tmp_path / "net.dot")   # no warning: text for every node
    assert "layer4.1.conv2" in (tmp_path / "net.dot").read_text()
    monkeypatch.setattr(diagram, "MAX_DRAWN", 10)
    with pytest.warns(diagram.DiagramCollapsed), pytest.raises(RenderError, match="more than graphviz can lay out"):
        render_to_file(network.graph, tmp_path / "other.svg")
    assert not (tmp_path / "other.svg").exists()


def test_graphviz_runs_under_a_time_limit(tmp_path, monkeypatch):
    network = resgraph.load(SPECS / "resnet50.yaml")
    monkeypatch.setenv("RESGRAPH_RENDER_TIMEOUT", "0.001")
    with pytest.raises(RenderError, match=r"did not finish within 0.001 s.*--depth"):
        render_to_file(network.graph, tmp_path / "net.svg")
    assert list(tmp_path.iterdir()) == []


def test_cli_says_when_it_collapses(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import resgraph.diagram as diagram
    from resgraph.cli import main

    monkeypatch.setattr(diagram, "NODE_BUDGET", 30)
    result = CliRunner().invoke(main, ["render", str(SPECS / "resnet18.yaml"), "-o", str(tmp_path / "n.svg")])
    assert result.exit_code == 0 and "note: `resnet18` has" in result.output
