"""docs/spec.md's op reference is generated from the registry: it lists every op, and is current."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from resgraph.ops import REGISTRY

from .conftest import ROOT


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("op_reference", ROOT / "docs" / "op_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_op_reference_in_docs_is_current(reference):
    page = (ROOT / "docs" / "spec.md").read_text()
    assert reference.updated(page) == page, "docs/spec.md's op reference is out of date: run python docs/op_reference.py"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_op_documents_its_output_and_lowering(reference, name):
    sections = reference._docstring_sections(REGISTRY[name])
    assert sections.get("Output:") or sections.get(""), f"`{name}` has no docstring"
    assert sections.get("Lowered to:"), f"`{name}`'s docstring has no `Lowered to:` line"
    row = next(line for line in reference.table().splitlines() if line.startswith(f"| `{name}` |"))
    for field in REGISTRY[name].model_fields:
        if field not in reference.COMMON:
            assert f"`{field}` (" in row


def test_check_mode_reports_a_stale_page(reference, tmp_path, monkeypatch, capsys):
    stale = tmp_path / "spec.md"
    stale.write_text(f"intro\n{reference.START}\n| old |\n{reference.END}\noutro\n")
    monkeypatch.setattr(reference, "PAGE", stale)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    assert reference.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert reference.main([]) == 0 and reference.main(["--check"]) == 0
    assert stale.read_text().startswith("intro\n") and stale.read_text().endswith("outro\n")
