"""Export to .pt2 (torch.export) and .onnx (run with onnxruntime), batch dimension dynamic."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import resgraph
from resgraph.cli import main

from .conftest import ROOT, SPECS

SPEC = SPECS / "cifar_resnet20.yaml"


def reference(batch: int):
    model = resgraph.compile(SPEC, seed=0).eval()
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        return x, model(x)


def export(tmp_path, suffix):
    out = tmp_path / f"net.{suffix}"
    result = CliRunner().invoke(main, ["export", str(SPEC), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing else left behind
    return out


def test_pt2_reloads_and_matches_for_batch_1_and_3(tmp_path):
    program = torch.export.load(str(export(tmp_path, "pt2")))
    for batch in (1, 3):
        x, expected = reference(batch)
        assert (program.module()(x) - expected).abs().max().item() <= 1e-4


def test_onnx_runs_in_onnxruntime_for_batch_1_and_3(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    session = onnxruntime.InferenceSession(str(export(tmp_path, "onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    for batch in (1, 3):
        x, expected = reference(batch)
        (out,) = session.run(None, {"input": x.numpy()})
        assert (torch.from_numpy(out) - expected).abs().max().item() <= 1e-4


def test_unknown_suffix(tmp_path):
    result = CliRunner().invoke(main, ["export", str(SPEC), "-o", str(tmp_path / "net.h5")])
    assert result.exit_code == 2 and ".onnx" in result.stderr and not list(tmp_path.iterdir())


def test_onnx_without_the_extra_names_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    out = tmp_path / "net.onnx"
    result = CliRunner().invoke(main, ["export", str(SPEC), "-o", str(out)])
    assert result.exit_code == 2 and "pip install 'resgraph[export]'" in result.stderr
    assert not out.exists()


# ---- the ops of issue 10: 1-d to 3-d layers, pads, activations, reductions, arithmetic ----------------------

OPS_SPEC = ROOT / "tests" / "data" / "issue10_ops.yaml"


def test_issue10_ops_export_to_pt2_and_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = resgraph.compile(OPS_SPEC, seed=0).eval()
    runner = CliRunner()
    for suffix in ("pt2", "onnx"):
        result = runner.invoke(main, ["export", str(OPS_SPEC), "-o", str(tmp_path / f"net.{suffix}")],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    program = torch.export.load(str(tmp_path / "net.pt2")).module()
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 2, 4, 6, 6, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        assert expected.shape == (batch, 6)
        assert (program(x) - expected).abs().max().item() <= 1e-4
        (out,) = session.run(None, {"input": x.numpy()})
        assert (torch.from_numpy(out) - expected).abs().max().item() <= 1e-4
