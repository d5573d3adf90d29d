"""Hostile strings and names (tests/hostile.py) through validate, compile and export: every generated
.py parses, mentions nothing it should not call, and, imported in a subprocess in a directory of its
own, runs no payload and computes what the compiled module computes. A spec that resgraph refuses
is refused with diagnostics (SpecError) or, for export, an EjectError: never a broken file."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import resgraph
from resgraph.eject import EjectError
from resgraph.export import export

from .hostile import NAMES, SIDE_EFFECT_FILE, TEXTS, yaml_string

# Names that no generated file has any reason to mention: their appearance outside a string is an injection.
FORBIDDEN = {"__import__", "eval", "exec", "open", "os", "system", "compile", "globals", "subprocess", "builtins",
             "__builtins__", "breakpoint", "input", "vars", "locals"}


def text_specs() -> list[tuple[str, str]]:
    cases = []
    for index, text in enumerate(TEXTS):
        s = yaml_string(text)
        # the block's doc comes before the network's (a trailing backslash there once escaped the quotes)
        cases.append((f"text{index}", f"resgraph: 1\nname: {s}\ndoc: {s}\ninput: [4]\nparams: {{label: {s}}}\n"
                                      f"blocks:\n  b:\n    doc: {s}\n    params: {{mode: {s}}}\n"
                                      f"    nodes:\n      fc: {{op: linear, out: 3}}\n"
                                      f"nodes:\n  blk: {{block: b}}\n  fc: {{op: linear, out: 2}}\n"))
    return cases


def name_specs() -> list[tuple[str, str]]:
    cases = []
    for index, name in enumerate(NAMES):
        cases.append((f"node{index}", f"resgraph: 1\ninput: [4]\nnodes:\n  {name}: {{op: linear, out: 4}}\n"
                                      f"  after: {{op: add, inputs: [{name}, {name}]}}\noutputs: [{name}, after]\n"))
        # a block, its param, a network param and a named input, all called `name`
        cases.append((f"block{index}", f"resgraph: 1\nparams: {{{name}: 3}}\ninput: {{{name}: [4]}}\n"
                                       f"blocks:\n  {name}:\n    params: {{{name}: 3}}\n"
                                       f"    let: {{w: '{name} * 2'}}\n"
                                       f"    nodes:\n      fc: {{op: linear, out: w}}\n"
                                       f"      n: {{op: linear, out: '{name} + 1'}}\n"
                                       f"nodes:\n  a: {{block: {name}, with: {{{name}: 5}}, inputs: {name}}}\n"
                                       f"  b: {{block: {name}, with: {{{name}: {name}}}}}\n"
                                       f"  fc: {{op: linear, out: {name}}}\n"))
    return cases


def _names_outside_strings(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr"):
            # only `getattr(self, "0a")`: a module whose name is no identifier, as fx writes it
            first, second = node.args[0], node.args[1]
            if not (isinstance(first, ast.Name) and first.id == "self" and isinstance(second, ast.Constant)
                    and isinstance(second.value, str)):
                found.add(node.func.id)
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.add(node.attr)   # `self.open` is a node's module, not the builtin
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {alias.name for alias in node.names} | {getattr(node, "module", None) or ""}
    return found


RUNNER = textwrap.dedent("""
    import importlib.util, json, sys
    import torch
    torch.set_num_threads(1)
    cases = torch.load(sys.argv[1], weights_only=True)
    for case in cases:
        spec = importlib.util.spec_from_file_location(case["module"], case["path"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = getattr(module, case["class"])()
        if case["weights"] is not None:
            model.load_state_dict(case["weights"], strict=True)
        model.eval()
        with torch.no_grad():
            out = model(*case["inputs"])
        out = out if isinstance(out, tuple) else (out,)
        if case["outputs"] is None:   # compile cannot build this one: the file imports and runs, that is all
            continue
        assert len(out) == len(case["outputs"]), case["path"]
        for got, expected in zip(out, case["outputs"]):
            assert (got - expected).abs().max().item() <= 1e-6, case["path"]
    print("checked", len(cases))
""")


def test_hostile_strings_and_names_are_inert_in_exported_python(tmp_path):
    """(.pt2 and .onnx of a hostile name: tests/test_export_fuzz.py)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_hostile_cases(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_hostile_cases(tmp_path):
    work = tmp_path / "work"   # the subprocess runs here: a payload that ran would leave a file
    work.mkdir()
    manifest, refused = [], {}
    for case, text in text_specs() + name_specs():
        spec_path = tmp_path / f"{case}.yaml"
        spec_path.write_text(text, encoding="utf-8")
        try:
            network = resgraph.load(spec_path)
        except resgraph.SpecError as error:
            assert error.diagnostics, case
            refused[case] = "validate"
            continue
        target = work / f"{case}.py"
        try:
            model = resgraph.compile(network, seed=0).eval()
        except Exception:   # compile cannot build it (issue 14, section 3); export refuses, or writes a good file
            model = None
        try:
            export(network, target)
        except EjectError:
            assert model is None, case   # what compile builds, export writes
            assert not target.exists()
            refused[case] = "export"
            continue
        source = target.read_text(encoding="utf-8")
        tree = ast.parse(source)   # parses, and has no NUL or unclosed string
        assert not _names_outside_strings(tree) & FORBIDDEN, case
        assert "\x00" not in source and "\u2028" not in source and "\u2029" not in source, case
        inputs = [torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
                  for shape in network.input_shapes.values()]
        outputs = None
        if model is not None:
            with torch.no_grad():
                outputs = model(*inputs)
            outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
        class_name = [node.name for node in tree.body if isinstance(node, ast.ClassDef)][-1]
        manifest.append({"module": f"ejected_{case}", "path": str(target), "class": class_name, "inputs": inputs,
                         "weights": model.state_dict() if model is not None else None, "outputs": outputs})
    # Most cases must get through: the corpus tests export, not only the validator.
    assert len(manifest) >= len(TEXTS) + len(NAMES), refused
    torch.save(manifest, tmp_path / "manifest.pt")
    (tmp_path / "runner.py").write_text(RUNNER)
    result = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "manifest.pt")],
                            capture_output=True, text=True, cwd=work, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"checked {len(manifest)}"
    assert "INJECTED" not in result.stdout + result.stderr
    assert sorted(p.name for p in work.iterdir() if p.suffix != ".py" and p.name != "__pycache__") == []
    assert not (work / SIDE_EFFECT_FILE).exists() and not (Path.cwd() / SIDE_EFFECT_FILE).exists()
