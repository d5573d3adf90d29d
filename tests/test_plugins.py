"""Plugins: the example package tests/plugins/src/resgraph_cbam registers the op `cbam`, loaded from
`plugins:` in a spec and, in a subprocess, through its entry point (the .dist-info under
tests/plugins/installed, as `pip install` would write it); validated without torch, compiled, rendered,
exported and imported. A plugin whose shape rule raises gives a located diagnostic (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import resgraph
from resgraph.cli import main

from .conftest import ROOT

CBAM_SPEC = """\
resgraph: 1
name: cbam_net
{plugins}input: [16, 12, 12]
nodes:
  conv: {{op: conv2d, out: 32, kernel: 3, padding: 1}}
  attention: {{op: cbam, reduction: 8}}
  add: {{op: add, inputs: [attention, conv]}}
  pool: adaptive_avgpool2d
  flat: flatten
  fc: {{op: linear, out: 10}}
"""


def reference_cbam(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """CBAM written out from the paper's equations, with the module's weights."""
    w1, w2, ws = module.mlp[0].weight, module.mlp[2].weight, module.spatial.weight

    def mlp(v):
        return torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(v, w1)), w2)

    x = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    pooled = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
    return x * torch.sigmoid(torch.nn.functional.conv2d(pooled, ws, padding=ws.shape[-1] // 2))


def test_plugin_named_in_the_spec(tmp_path, plugins_on_path):
    path = tmp_path / "cbam.yaml"
    path.write_text(CBAM_SPEC.format(plugins="plugins: [resgraph_cbam.ops]\n"))
    assert resgraph.validate(path) == []
    network = resgraph.load(path)
    attention = network.graph.nodes["attention"]
    assert attention.meta["params"] == 2 * 32 * 4 + 2 * 49
    model = resgraph.compile(network).eval()
    assert network.params == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        conv = model.conv(x)
        assert (model.attention(conv) - reference_cbam(conv, model.attention)).abs().max() <= 1e-6
        expected = model(x)
    assert "cbam reduction=8 kernel=7" in resgraph.render(network, tmp_path / "cbam.dot").read_text()

    from resgraph.export import export

    source = export(network, tmp_path / "cbam_net.py").read_text()
    assert "from resgraph_cbam.modules import CBAM" in source and "CBAM(32, reduction=8)" in source
    namespace: dict = {}
    exec(compile(source, "cbam_net.py", "exec"), namespace)  # noqa: S102 - the file this test just wrote
    ejected = namespace["CbamNet"]().eval()
    ejected.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert (ejected(x) - expected).abs().max() <= 1e-6


def test_a_spec_without_the_plugin_names_it(tmp_path, plugins_on_path):
    from resgraph.plugins import load_plugin

    assert load_plugin("resgraph_cbam.ops").ops == ("cbam",)
    path = tmp_path / "cbam.yaml"
    path.write_text(CBAM_SPEC.format(plugins=""))
    (error,) = resgraph.validate(path)
    assert error.code == "RG013" and "plugin `resgraph_cbam.ops`" in error.message
    assert error.help == "name the plugin in the file that uses it: `plugins: [resgraph_cbam.ops]`"


def test_import_maps_the_plugins_module_to_its_op(plugins_on_path):
    from resgraph.importer import import_module
    from resgraph.plugins import load_plugin

    load_plugin("resgraph_cbam.ops")
    from resgraph_cbam.modules import CBAM

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), CBAM(8, reduction=2, kernel=5))
    text = import_module(model, input_shape=(3, 10, 10))
    assert 'plugins: ["resgraph_cbam.ops"]' in text and "{op: cbam, reduction: 2, kernel: 5}" in text
    compiled = resgraph.compile(resgraph.load("imported.yaml", text=text)).eval()
    compiled.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        assert (compiled(x) - model(x)).abs().max() <= 1e-6


def test_a_plugin_whose_shape_rule_raises_exits_1(tmp_path, plugins_on_path):
    path = tmp_path / "broken.yaml"
    path.write_text("resgraph: 1\nplugins: [resgraph_broken.ops]\ninput: [1, 4, 4]\nnodes:\n"
                    "  conv: {op: conv2d, out: 1, kernel: 1}\n  norm: {op: broken_norm}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:6:3: error[RG093]: `norm`: plugin `resgraph_broken.ops` raised ZeroDivisionError" in result.output
    assert "Traceback" not in result.output


ENTRY_POINT_SCRIPT = textwrap.dedent("""
    import json, sys
    import resgraph
    from resgraph.plugins import installed_plugins
    spec, out = sys.argv[1], sys.argv[2]
    found = {"installed": installed_plugins(), "diagnostics": [d.code for d in resgraph.validate(spec)],
             "refused": [d.code for d in resgraph.validate(spec, plugins=False)],
             "torch_after_validate": "torch" in sys.modules}
    if sys.argv[3] == "validate":
        print(json.dumps(found))
        sys.exit(0)
    network = resgraph.load(spec)
    model = resgraph.compile(network)
    found["params"] = [network.params, sum(p.numel() for p in model.parameters())]
    found["rendered"] = "cbam reduction=8" in resgraph.render(network, out + "/net.dot").read_text()
    from pathlib import Path
    from resgraph.export import export
    found["exported"] = "from resgraph_cbam.modules import CBAM" in export(network, Path(out) / "net.py").read_text()
    print(json.dumps(found))
""")


@pytest.mark.parametrize("steps", ["validate", pytest.param("all", marks=pytest.mark.slow)])
def test_plugin_installed_through_its_entry_point(tmp_path, steps):
    """In a fresh interpreter whose sys.path holds the plugin's .dist-info (an installed package): `validate`
    finds `cbam` through the entry point without importing torch; then (slow) compile, render, export."""
    spec = tmp_path / "cbam.yaml"
    spec.write_text(CBAM_SPEC.format(plugins=""))   # no `plugins:`: the installed plugin provides `cbam`
    plugins = ROOT / "tests" / "plugins"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(plugins / "src"), str(plugins / "installed")]))
    done = subprocess.run([sys.executable, "-c", ENTRY_POINT_SCRIPT, str(spec), str(tmp_path), steps], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["installed"] == [["cbam", "resgraph_cbam.ops"]]
    assert found["diagnostics"] == [] and found["refused"] == ["RG013"]
    assert found["torch_after_validate"] is False   # loading the plugin imports no torch: its op file does not
    if steps == "all":
        assert found["params"][0] == found["params"][1] and found["rendered"] and found["exported"]
