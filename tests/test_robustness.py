"""Property-based robustness: mutated valid specs end in the project's own diagnostics, located in
the file, and never in any other exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resgraph
from resgraph.source import load_source
from resgraph.diagnostics import Diagnostics

from .conftest import SPECS

# Self-contained seeds (no includes, so a mutated copy can be written anywhere).
SEEDS = [
    """
resgraph: 1
name: seed_cnn
input: [3, 16, 16]
params: {planes: 8, classes: 4}
blocks:
  basic:
    params: {planes: null, stride: 1, shortcut: auto}
    let: {width: planes * 2}
    nodes:
      conv1: {op: conv2d, out: width, kernel: 3, stride: stride, padding: 1, bias: false}
      bn1: batchnorm2d
      relu1: relu
      conv2: {op: conv2d, out: planes, kernel: 3, padding: 1, bias: false}
      bn2: batchnorm2d
      add: {op: add, inputs: [bn2, input], shortcut: shortcut}
      relu2: relu
nodes:
  stem: {op: conv2d, out: planes, kernel: 3, padding: 1}
  stage1: {block: basic, repeat: 2, with: {planes: planes}}
  stage2: {block: basic, repeat: 2, with: {planes: planes * 2}, first: {stride: 2}}
  pool: {op: adaptive_avgpool2d, size: 1}
  flat: flatten
  head: {op: linear, out: classes}
""",
    """
resgraph: 1
name: seed_mlp
input: {x: [16], gate: [16]}
params: {width: 16}
nodes:
  fc1: {op: linear, out: width, inputs: x}
  norm: {op: layernorm, shape: [16]}
  act: gelu
  sig: {op: sigmoid, inputs: gate}
  gated: {op: mul, inputs: [act, sig]}
  res: {op: add, inputs: [gated, x]}
  both: {op: concat, inputs: [res, fc1], dim: 1}
  drop: {op: dropout, p: 0.1}
  out: {op: linear, out: 2}
outputs: [out, res]
""",
]

SCALARS = st.one_of(st.integers(-3, 70000), st.sampled_from([0, 1, 2, -1, 2**40, 1.5, 1e3, float("nan")]),
                    st.booleans(), st.none(), st.sampled_from(["", "x", "planes", "pad", "same", "stem", "input",
                                                              "1 +", "planes // 0", "layers[3]", "basic",
                                                              "conv2d", "add", "__import__('os')", "a.b"]),
                    st.lists(st.integers(-1, 5), max_size=4))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


@st.composite
def mutated(draw):
    seed = draw(st.sampled_from(SEEDS))
    diagnostics = Diagnostics()
    data = copy.deepcopy(load_source("seed.yaml", diagnostics, text=seed).data)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for segment in path[:-1]:
            parent = parent[segment]
        key = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "wrap"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(SCALARS)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["inputs", "op", "block", "repeat", "strides", "x", "with"]))] = parent.pop(key)
        else:
            parent[key] = {"op": draw(st.sampled_from(["relu", "add", "nope"]))} if draw(st.booleans()) else [parent[key]]
    return data


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_specs_only_raise_spec_errors_located_in_the_file(tmp_path_factory, data):
    path = Path(tmp_path_factory.mktemp("mutant")) / "spec.yaml"
    path.write_text(json.dumps(data, allow_nan=True).replace("NaN", ".nan"))  # JSON is YAML
    diagnostics = resgraph.validate(path)
    for diagnostic in diagnostics:
        assert diagnostic.code.startswith("RG") and diagnostic.message
        if diagnostic.is_error and diagnostic.code != "RG035":
            assert diagnostic.span is not None and diagnostic.span.file == str(path), diagnostic
    if not any(d.is_error for d in diagnostics) and data.get("nodes"):
        network = resgraph.load(path)
        # A spec that validates must compile, on the meta device at least, to the counted size.
        model = resgraph.compile(network, device="meta")
        assert sum(p.numel() for p in model.parameters()) == network.params


def test_seeds_are_valid(tmp_path):
    for index, seed in enumerate(SEEDS):
        path = tmp_path / f"seed{index}.yaml"
        path.write_text(seed)
        assert resgraph.validate(path) == [], index
