"""Shared fixtures: paths of the spec library and a helper to load a spec from text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import resgraph

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
CASES = Path(__file__).resolve().parent / "cases"


def spec_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def load_text(tmp_path):
    """Load a spec from YAML text written to a file (so that includes and spans work)."""

    def load(text: str, name: str = "spec.yaml", **kwargs):
        path = tmp_path / name
        path.write_text(spec_text(text))
        return resgraph.load(path, **kwargs)

    return load


@pytest.fixture
def validate_text(tmp_path):
    def validate(text: str, name: str = "spec.yaml", **kwargs):
        path = tmp_path / name
        path.write_text(spec_text(text))
        return resgraph.validate(path, **kwargs)

    return validate
