"""The `resgraph` command through its real entry points: exit codes, output, and no torch on the
validate path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from resgraph.cli import main

from .conftest import CASES, ROOT, SPECS

ALL_SPECS = sorted(SPECS.rglob("*.yaml"))


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resgraph", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_every_spec_in_the_library():
    result = run("validate", *map(str, ALL_SPECS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok (") == len(ALL_SPECS)
    assert result.stderr == ""


def test_validate_bad_spec_exits_1_with_location_and_both_shapes():
    path = CASES / "bad" / "identity_stride2.yaml"
    result = run("validate", str(path))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:13:54: error[RG050]: ")
    assert "[128, 28, 28]" in first and "[64, 56, 56]" in first
    assert "Traceback" not in result.stderr


def test_validate_never_imports_torch():
    code = (
        "import sys\n"
        "from resgraph.cli import main\n"
        "try:\n"
        f"    main(['validate', {str(SPECS / 'resnet50.yaml')!r}, {str(CASES / 'bad' / 'identity_stride2.yaml')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 1, exit.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'graphviz', 'numpy'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr


def test_validate_json_format():
    result = invoke("validate", "--format", "json", str(CASES / "bad" / "unknown_op.yaml"), str(SPECS / "resnet18.yaml"))
    assert result.exit_code == 1
    (item,) = json.loads(result.stdout)
    assert {k: item[k] for k in ("line", "column", "code", "severity")} == \
        {"line": 5, "column": 13, "code": "RG013", "severity": "error"}


def test_missing_file_is_an_io_error_exit_2():
    result = invoke("validate", "does/not/exist.yaml")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_usage_error_exit_2():
    assert invoke("validate").exit_code == 2
    result = invoke("summary", str(SPECS / "resnet18.yaml"), "--set", "num_classes")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr


def test_summary_reports_resnet50_params_and_macs():
    result = run("summary", "specs/resnet50.yaml")
    assert result.returncode == 0, result.stderr
    assert "params:  25,557,032" in result.stdout
    assert "MACs:    4,089,184,256" in result.stdout
    assert "layer2.0.conv2" in result.stdout


def test_summary_with_set():
    result = invoke("summary", str(SPECS / "resnet18.yaml"), "--set", "num_classes=10")
    assert result.exit_code == 0
    assert "params:  11,181,642" in result.stdout  # 11,689,512 - 512 * 990 - 990


def test_set_of_an_unknown_parameter():
    result = invoke("summary", str(SPECS / "resnet18.yaml"), "--set", "num_clases=10")
    assert result.exit_code == 1 and "did you mean `num_classes`?" in result.stderr


def test_compile_runs_a_check_forward_pass():
    result = run("compile", "specs/cifar_resnet20.yaml", "--set", "num_classes=100", "--code")
    assert result.returncode == 0, result.stderr
    assert "params:  275,572" in result.stdout  # 269,722 + 64 * 90 + 90
    assert "check forward pass (batch 2, float32, eval) ok" in result.stdout
    assert "# CifarResnet20: the network\ndef forward(self, x):" in result.stdout
    assert "# Basic: `layer1.0`, `layer1.1`, `layer1.2` and 4 more" in result.stdout
    assert "# Basic: `layer2.0`, `layer3.0`\n" in result.stdout  # the two with a zero-padding shortcut
    assert "layer1 = self.layer1(relu)" in result.stdout and "conv1 = self.conv1(x)" in result.stdout


def test_compile_on_meta_skips_the_forward_pass():
    result = invoke("compile", str(SPECS / "resnet50.yaml"), "--device", "meta")
    assert result.exit_code == 0 and "compiled `resnet50` on meta" in result.stdout


def test_compile_refuses_past_the_memory_limit():
    result = invoke("compile", str(SPECS / "resnet50.yaml"), "--max-memory", "0.01")
    assert result.exit_code == 2 and "--max-memory" in result.stderr and "25,557,032 parameters" in result.stderr


def test_compile_zero_init_residual_warns_where_it_has_no_effect():
    result = invoke("compile", str(SPECS / "residual_mlp.yaml"), "--device", "meta", "--zero-init-residual")
    assert result.exit_code == 0
    assert "warning: zero_init_residual has no effect on 4 residual adds, the first `layers.0.add`" in result.stderr
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on machines without CUDA")
def test_compile_on_cuda_without_cuda_is_a_usage_error():
    result = invoke("compile", str(SPECS / "resnet18.yaml"), "--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr


def test_render_writes_each_format(tmp_path):
    for suffix in ("svg", "png", "pdf", "dot"):
        out = tmp_path / f"net.{suffix}"
        result = invoke("render", str(SPECS / "cifar_resnet20.yaml"), "-o", str(out))
        assert result.exit_code == 0, result.stderr
        assert out.stat().st_size > 100
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "net.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "net.svg").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.dot", "net.pdf", "net.png", "net.svg"]


def test_render_unknown_suffix_leaves_nothing(tmp_path):
    result = invoke("render", str(SPECS / "resnet18.yaml"), "-o", str(tmp_path / "net.jpeg2000"))
    assert result.exit_code == 2 and ".svg" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_render_of_an_invalid_spec_draws_it_up_to_the_error(tmp_path):
    out = tmp_path / "net.svg"
    result = invoke("render", str(CASES / "bad" / "identity_stride2.yaml"), "-o", str(out))
    assert result.exit_code == 1 and "error[RG050]" in result.stderr and "class=\"node op error\"" in out.read_text()


def test_schema_is_json_schema():
    result = invoke("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "resgraph spec" and "nodes" in schema["properties"]


def test_version_and_help():
    assert invoke("--version").stdout.startswith("resgraph, version ")
    result = run("--help")
    assert result.returncode == 0 and "validate" in result.stdout and "render" in result.stdout


def test_every_spec_in_the_library_conforms_to_the_published_schema():
    import jsonschema

    from resgraph.diagnostics import Diagnostics
    from resgraph.source import load_source

    schema = json.loads(invoke("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for path in ALL_SPECS:
        data = load_source(path, Diagnostics()).data
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]
        assert not errors, (path.name, errors[:3])


def test_lsp_without_pygls_says_how_to_install_it(monkeypatch):
    import sys

    for name in ("pygls", "pygls.lsp.server", "lsprotocol"):
        monkeypatch.setitem(sys.modules, name, None)   # `import` of a None entry raises ImportError
    monkeypatch.delitem(sys.modules, "resgraph.lsp", raising=False)
    result = CliRunner().invoke(main, ["lsp"])
    assert result.exit_code == 2
    assert "`resgraph lsp` needs pygls 2: pip install 'resgraph[lsp]'" in result.output
