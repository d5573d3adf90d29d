"""Rendering: every node and edge is in the DOT text, skip edges are marked by shortcut kind."""

from __future__ import annotations

import re

import pytest

import resgraph
from resgraph.diagram import RenderError, render_to_file, to_digraph

from .conftest import CASES, SPECS


def test_dot_has_every_node_and_marks_skip_edges():
    network = resgraph.load(SPECS / "resnet18.yaml")
    source = to_digraph(network.graph).source
    for node in network.graph:
        assert re.search(rf'^\s*"?{re.escape(node.name)}"? \[', source, re.MULTILINE), node.name
    skips = [line for line in source.splitlines() if 'class="skip' in line]
    # resnet18: 8 blocks, 3 of them with a projection shortcut; as in He et al.'s figures, identity arcs are
    # solid, projections dotted and labelled with their 1x1 convolution.
    assert len(skips) == 8
    assert sum('class="skip project"' in line for line in skips) == 3
    assert sum('class="skip identity"' in line for line in skips) == 5
    assert all("style=solid" in line for line in skips if "identity" in line)
    assert all("style=dotted" in line and "projection: 1x1 conv, stride 2" in line for line in skips
               if "project" in line)
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
    # One box per call, its shapes in and out, and its shortcut arcs by kind from its input side to a sum.
    assert 'layer2 [label="layer2: bottleneck ×4\\n256×56×56 → 512×28×28"' in stages
    assert "layer2.0" not in stages
    arcs = [line.strip() for line in stages.splitlines() if line.strip().startswith('layer2 -> "(sum) layer2"')]
    assert len(arcs) == 3   # the box's output into its sum, and one arc per shortcut kind, from its input side
    assert 'label="projection: 1x1 conv, stride 2 (first)" class="skip project"' in arcs[1] and "tailport=n" in arcs[1]
    assert 'label="identity ×3" class="skip identity"' in arcs[2] and "style=solid" in arcs[2]
    assert '"(sum) layer2" -> layer3 [label="512×28×28"' in stages
    units = to_digraph(network.graph, depth=1).source
    assert '"layer2.0" [label="layer2.0: bottleneck\\n256×56×56 → 512×28×28"' in units and "cluster_layer2" in units
    assert '"(sum) layer1.2" -> "layer2.0" [label="256×56×56"' in units
    assert '"layer2.0" -> "(sum) layer2.0" [label="projection: 1x1 conv, stride 2" class="skip project"' in units
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
    result = CliRunner().invoke(main, ["render", str(SPECS / "resnet18.yaml"), "-o", str(tmp_path / "n.svg"),
                                       "--depth", "all"])
    assert result.exit_code == 0 and "note: `resnet18` has" in result.output


# Issue 12: drawings fit for a paper.

def svg_geometry(svg: str) -> tuple[float, float, list[float]]:
    """(width, height, font sizes) in points of an SVG as shown at 100% zoom: graphviz's sizes in pt, times the
    scale from the viewBox to the size and the top group's `scale(...)` transform."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    width, height = (float(root.get(key).removesuffix("pt")) for key in ("width", "height"))
    box_width = float(root.get("viewBox").split()[2])
    group = root.find("{http://www.w3.org/2000/svg}g")
    scale = float(re.search(r"scale\(([\d.]+)", group.get("transform")).group(1))
    zoom = width / box_width * scale
    fonts = [float(element.get("font-size")) * zoom for element in root.iter() if element.get("font-size")]
    return width, height, fonts


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_the_default_drawing_of_every_spec_is_readable(spec, tmp_path):
    """At the default depth, no drawing is taller than about 4 times its width, and no text is below 9 pt."""
    path = resgraph.render(SPECS / f"{spec}.yaml", tmp_path / "net.svg")
    width, height, fonts = svg_geometry(path.read_text(encoding="utf-8"))
    assert height <= 4 * width, (spec, width, height)
    assert fonts and min(fonts) >= 9, (spec, sorted(set(fonts)))


def test_labels_say_things_once_and_as_a_person_would():
    from resgraph.diagram import build_drawing

    for spec in ("resnet18", "resnet50", "unet", "googlenet", "vit_b_16"):
        drawing = build_drawing(resgraph.load(SPECS / f"{spec}.yaml").graph)
        for box in drawing.boxes.values():
            assert len(set(box.lines)) == len(box.lines), (spec, box.lines)           # no `relu / relu`
            assert not any(re.search(r"/\d", line) for line in box.lines), box.lines  # `stride 2`, not `/2x2`
    labels = {box.id: box.lines for box in build_drawing(resgraph.load(SPECS / "resnet18.yaml").graph).boxes.values()}
    assert labels["relu"] == ("relu",) and labels["layer1.0.relu1"] == ("relu1",)
    assert labels["conv1"] == ("conv1", "conv2d 7x7, 64, stride 2")
    assert labels["maxpool"] == ("maxpool", "maxpool2d 3x3, stride 2")
    assert labels["layer2.0.add"] == ("add (projection)",) and labels["layer2.1.add"] == ("add (identity)",)


def test_concat_skips_are_drawn_as_skips():
    source = to_digraph(resgraph.load(SPECS / "unet.yaml").graph, depth=0).source
    skips = [line for line in source.splitlines() if 'class="skip concat"' in line]
    # depth 4: each encoder stage feeds its decoder stage around the bottleneck
    assert sorted(re.match(r"\s*(\w+) -> (\w+)", line).groups() for line in skips) == \
        [("enc1", "up1"), ("enc2", "up2"), ("enc3", "up3"), ("enc4", "up4")]
    assert all("style=dashed" in line for line in skips) and "concat skip" in source   # and in the legend
    # An inception block's branches are parallel paths, not skips.
    assert 'class="skip' not in to_digraph(resgraph.load(SPECS / "googlenet.yaml").graph).source


def test_the_legend_explains_what_is_drawn():
    source = to_digraph(resgraph.load(SPECS / "cifar_resnet20.yaml").graph, depth=0).source
    legend = source[source.index("cluster_(legend)"):]
    assert "identity shortcut" in legend and "zero-padding shortcut" in legend and "block call drawn as one box" in legend
    assert "projection shortcut" not in legend   # option A has no projection
    assert "cluster_(legend)" not in to_digraph(resgraph.load(SPECS / "cifar_resnet20.yaml").graph, legend=False).source


def test_rankdir_and_dpi(tmp_path):
    import struct

    network = resgraph.load(SPECS / "resnet18.yaml")
    assert "rankdir=LR" in to_digraph(network.graph, 0, rankdir="LR").source
    assert "tailport=w" in to_digraph(network.graph, 0, rankdir="LR").source   # arcs leave from the input side
    sizes = {}
    for dpi in (72, 144):
        png = resgraph.render(network, tmp_path / f"net{dpi}.png", dpi=dpi).read_bytes()
        sizes[dpi] = struct.unpack(">II", png[16:24])
    assert abs(sizes[144][0] / sizes[72][0] - 2) < 0.05 and abs(sizes[144][1] / sizes[72][1] - 2) < 0.05
    with pytest.raises(ValueError, match="rankdir"):
        to_digraph(network.graph, rankdir="BT")


def test_blocks_draws_each_definition_once_in_detail():
    from resgraph.diagram import block_drawing

    graph = resgraph.load(SPECS / "se_resnet50.yaml").graph
    drawing = block_drawing(graph)
    assert [g.label for g in drawing.groups.values()] == ["block se_bottleneck (as drawn in layer1.1)",
                                                          "block se (as drawn in layer1.0.se)"]
    ops = [box.node for box in drawing.boxes.values() if box.kind == "op"]
    assert ops == [f"layer1.1.{n}" for n in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "add",
                                            "relu3")] + [f"layer1.0.se.{n}" for n in ("pool", "fc1", "relu", "fc2",
                                                                                     "gate", "scale")]
    # the nested `se` call is one box inside the bottleneck; the bottleneck's identity shortcut is drawn
    assert [box.lines[0] for box in drawing.boxes.values() if box.kind == "block"] == ["se"]
    assert [a.kind for a in drawing.arrows if a.kind in ("identity", "project")] == ["identity"]


def test_an_invalid_spec_is_drawn_up_to_its_error(tmp_path):
    from click.testing import CliRunner

    from resgraph.cli import main

    out = tmp_path / "net.svg"
    result = CliRunner().invoke(main, ["render", str(CASES / "bad" / "identity_stride2.yaml"), "-o", str(out)])
    assert result.exit_code == 1 and "error[RG050]" in result.output   # the diagnostic, as usual
    svg = out.read_text(encoding="utf-8")
    assert 'class="node op error"' in svg and "#ffcdd2" in svg          # the failing node, red
    assert "error[RG050]: `layer2.add`: identity shortcut" in svg       # its message beside it
    assert ">conv1<" in svg and ">bn2<" in svg and ">relu2<" not in svg  # everything up to the error, nothing after
    assert "layer1: basic" in svg   # the rest stays collapsed


def test_a_spec_that_fails_before_shapes_draws_nothing(tmp_path):
    from click.testing import CliRunner

    from resgraph.cli import main

    out = tmp_path / "net.svg"
    result = CliRunner().invoke(main, ["render", str(CASES / "bad" / "cycle.yaml"), "-o", str(out)])
    assert result.exit_code == 1 and "RG041" in result.output and not out.exists()


def test_notebook_repr_of_a_deep_network_is_the_collapsed_drawing():
    """Issue 12: preact_resnet1001's notebook SVG was 4.7 MB (5.5 s); bench/run.py --only notebook times it."""
    svg = resgraph.load(SPECS / "preact_resnet1001.yaml")._repr_svg_()
    assert len(svg.encode("utf-8")) <= 500_000
    # its first unit's shortcut is a 1x1 convolution written out in the block: a projection, as in the paper
    assert "layer1: preact_bottleneck ×111" in svg and "identity ×110" in svg
    assert "projection: 1x1 conv (first)" in svg and "projection: 1x1 conv, stride 2 (first)" in svg
