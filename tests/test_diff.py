"""`resgraph diff` (issue 12): block-level changes between two networks, as text, JSON and one coloured drawing;
exit 0 when the same, 1 when different, 2 on an error."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.diff import diff_graphs, diff_text

from .conftest import CASES, SPECS


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_deeper_stage_is_one_change_of_the_call_and_one_run_of_instances():
    result = invoke("diff", str(SPECS / "resnet50.yaml"), str(SPECS / "resnet101.yaml"))
    assert result.exit_code == 1
    text = result.stdout
    assert "~ changed `layer3`: bottleneck ×6 -> ×23" in text
    assert "+ added 17 instances of `bottleneck`: `layer3.6` .. `layer3.22` (170 nodes, +18,992,128 params" in text
    assert "params: 25,557,032 -> 44,549,160 (+18,992,128, +74.3%)" in text
    assert "layer4" not in text   # reading the last unit of a longer stage is no change of layer4's own
    data = json.loads(invoke("diff", str(SPECS / "resnet50.yaml"), str(SPECS / "resnet101.yaml"),
                             "--format", "json").stdout)
    a, b = resgraph.load(SPECS / "resnet50.yaml"), resgraph.load(SPECS / "resnet101.yaml")
    assert data["schema"] == "resgraph-diff/1" and data["same"] is False
    assert data["params"] == {"a": a.params, "b": b.params, "delta": b.params - a.params}
    assert data["macs"]["delta"] == b.macs - a.macs
    added = [c for c in data["changes"] if c["change"] == "added"]
    assert len(added) == 1 and added[0]["names"] == [f"layer3.{i}" for i in range(6, 23)]
    assert {c["what"] for c in data["changes"]} == {"call", "instances", "network"}


def test_a_plain_net_against_its_residual_twin_loses_every_add():
    result = invoke("diff", str(SPECS / "resnet18.yaml"), str(SPECS / "plain18.yaml"), "--format", "json")
    data = json.loads(result.stdout)
    removed = [name for c in data["changes"] if c["change"] == "removed" for name in c["names"]]
    assert sorted(removed) == sorted(f"layer{s}.{i}.add" for s in range(1, 5) for i in range(2))
    calls = [c for c in data["changes"] if c["what"] == "call"]
    assert [c["summary"] for c in calls] == ["basic ×2 -> plain ×2"] * 4
    projection = next(c for c in data["changes"] if c["names"] == ["layer2.0.add"])
    assert projection["summary"] == "add (projection), 8,448 params, 128x28x28"
    assert data["params"]["delta"] == -173_824 and result.exit_code == 1


def test_a_shortcut_policy_change_is_reported_with_what_it_became():
    spec = str(SPECS / "cifar_resnet20.yaml")
    result = invoke("diff", spec, spec, "--set-b", "shortcut=project")
    assert result.exit_code == 1
    text = result.stdout
    assert "+++ " + spec + " --set shortcut=project" in text
    assert ("~ changed `layer2.0.add`: shortcut: pad -> project; shortcut kind: pad -> projection; params: 0 -> 576; "
            "macs: 0 -> 131,072") in text
    assert ("~ changed `add` in 2 instances of `layer2` (`layer2.1.add` .. `layer2.2.add`), each: shortcut: pad -> "
            "project; shortcut kind: identity -> projection") in text
    data = json.loads(invoke("diff", spec, spec, "--set-b", "shortcut=project", "--format", "json").stdout)
    changed = [name for c in data["changes"] for name in c["names"]]
    assert sorted(changed) == sorted(f"layer{s}.{i}.add" for s in range(1, 4) for i in range(3))


def test_the_same_network_is_exit_0_and_an_error_is_exit_2(tmp_path):
    spec = str(SPECS / "resnet18.yaml")
    result = invoke("diff", spec, spec)
    assert result.exit_code == 0 and "no differences" in result.stdout
    result = CliRunner().invoke(main, ["diff", spec, str(CASES / "bad" / "identity_stride2.yaml")])
    assert result.exit_code == 2 and "error[RG050]" in result.output   # invalid, not "different"
    result = CliRunner().invoke(main, ["diff", spec, str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["diff", spec, spec, "-o", str(tmp_path / "diff.jpg")])
    assert result.exit_code == 2 and ".svg" in result.output and list(tmp_path.iterdir()) == []


def test_the_drawing_colours_added_removed_and_changed(tmp_path):
    out = tmp_path / "diff.svg"
    invoke("diff", str(SPECS / "resnet18.yaml"), str(SPECS / "plain18.yaml"), "-o", str(out))
    svg = out.read_text(encoding="utf-8")
    ET.fromstring(svg)
    assert svg.count('class="node block changed"') == 4 and "basic ×2 &#45;&gt; plain ×2" in svg
    assert "identity ×2, removed" in svg and "#c62828" in svg   # the removed shortcuts, red
    out = tmp_path / "units.dot"
    invoke("diff", str(SPECS / "resnet50.yaml"), str(SPECS / "resnet101.yaml"), "--depth", "1", "-o", str(out))
    dot = out.read_text(encoding="utf-8")
    added = [line for line in dot.splitlines() if 'class="block added"' in line]
    assert len(added) == 17 and all("#c8e6c9" in line for line in added)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs


def test_the_html_page_is_self_contained(tmp_path):
    out = tmp_path / "diff.html"
    result = invoke("diff", str(SPECS / "cifar_resnet20.yaml"), str(SPECS / "cifar_resnet56.yaml"), "-o", str(out))
    assert result.exit_code == 1
    page = out.read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(page)
    assert "svg" in parser.tags and "pre" in parser.tags and "script" not in parser.tags
    links = [value for name, value in parser.attributes if name in ("href", "src", "xlink:href")]
    assert links == []   # nothing to fetch: it opens without a network
    assert "cifar_resnet20 -&gt; cifar_resnet56" in page and "~ changed `layer1`: basic ×3 -&gt; ×9" in page


def test_either_side_may_be_a_python_module(monkeypatch):
    """MODULE:CALLABLE goes through `import` (here a stand-in that writes the spec; the real one below)."""
    import resgraph.importer

    made = []

    def import_module(target, input_shape=None, kwargs=None, *, name=None):
        made.append((target, input_shape))
        return (SPECS / "resnet18.yaml").read_text().replace("include: [blocks/resnet.yaml]",
                                                             f"include: [{SPECS / 'blocks' / 'resnet.yaml'}]")

    monkeypatch.setattr(resgraph.importer, "import_module", import_module)
    result = invoke("diff", "torchvision.models:resnet18", str(SPECS / "resnet18.yaml"), "--input", "3,64,64")
    assert made == [("torchvision.models:resnet18", [3, 64, 64])]
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_either_side_may_be_a_python_module_traced(tmp_path, monkeypatch):
    (tmp_path / "tiny_models.py").write_text(
        "import torch.nn as nn\n\n"
        "def mlp(width=8):\n"
        "    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = invoke("diff", "tiny_models:mlp", "tiny_models:mlp")
    assert result.exit_code == 0, result.output
    spec = tmp_path / "wider.yaml"
    spec.write_text("resgraph: 1\nname: mlp\ninput: [4]\nnodes:\n  '0': {op: linear, out: 16}\n")
    result = invoke("diff", "tiny_models:mlp", str(spec))
    assert result.exit_code == 1 and "+++ " + str(spec) in result.stdout


def test_diff_in_python():
    a, b = resgraph.load(SPECS / "resnet34.yaml").graph, resgraph.load(SPECS / "resnet18.yaml").graph
    diff = diff_graphs(a, b, "resnet34", "resnet18")
    assert not diff.same and "- removed 4 instances of `basic`: `layer3.2` .. `layer3.5`" in diff_text(diff)
