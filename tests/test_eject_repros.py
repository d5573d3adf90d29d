"""Issue 14, section 1, repro by repro: `resgraph export -o net.py` must neither run code from the spec
nor write a file that does not import or computes something else; and issue 15's frozen ejected classes:
they take the spec's params (eject-constructor) and draw compile's initial weights (eject-init)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import resgraph
from resgraph.cli import main
from resgraph.eject import eject_network

from .conftest import SPECS

PAYLOAD = '__import__("os").system("echo INJECTED > pwned.txt")'


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is several times faster than many on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Each spec exports with exit 0 and the file imports, and builds, without running anything.
INERT = {
    "name_closes_the_docstring": f"""
        resgraph: 1
        name: 'pwn\"\"\" + str({PAYLOAD}) + \"\"\"'
        input: [4]
        nodes:
          fc: {{op: linear, out: 2}}
    """,
    "block_doc_ends_in_a_backslash": f"""
        resgraph: 1
        name: net
        doc: '\"\"\" + str({PAYLOAD}) + \"\"\"'
        input: [4]
        blocks:
          b:
            doc: 'ends in a backslash\\'
            nodes:
              fc: {{op: linear, out: 2}}
        nodes:
          blk: {{block: b}}
    """,
    "nul_in_the_name": """
        resgraph: 1
        name: "a\\0b"
        input: [4]
        nodes:
          fc: {op: linear, out: 2}
    """,
    "backslash_n_in_the_doc": """
        resgraph: 1
        name: net
        doc: 'b\\N'
        input: [4]
        nodes:
          fc: {op: linear, out: 2}
    """,
    "line_separators_in_the_doc": """
        resgraph: 1
        name: "line\\Lsep\\Ppara"
        doc: "a\\Lb\\Pc\\N\\_"
        input: [4]
        nodes:
          fc: {op: linear, out: 2}
    """,
}


def _write(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


IMPORTER = textwrap.dedent("""
    import importlib.util, pathlib, sys
    import torch
    torch.set_num_threads(1)
    for path in sys.argv[1:]:
        spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
        model = classes[-1]().eval()
        with torch.no_grad():
            model(torch.randn(2, 4))
        print("imported", pathlib.Path(path).stem, repr(module.__doc__.splitlines()[0]))
""")


def test_hostile_names_and_docs_export_to_files_that_import_and_run_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    written = []
    for name, text in INERT.items():
        out = work / f"{name}.py"
        result = CliRunner().invoke(main, ["export", str(_write(tmp_path, name, text)), "-o", str(out)])
        assert result.exit_code == 0, (name, result.output)
        source = out.read_text(encoding="utf-8")
        compile(source, str(out), "exec")   # parses: no NUL, no unclosed string
        written.append(str(out))
    (tmp_path / "importer.py").write_text(IMPORTER)
    result = subprocess.run([sys.executable, str(tmp_path / "importer.py"), *written], capture_output=True,
                            text=True, cwd=work, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("imported") == len(INERT)
    assert "INJECTED" not in result.stdout.replace(PAYLOAD, "") + result.stderr
    assert not (work / "pwned.txt").exists()
    # the payload is the docstring's text, verbatim
    assert f'pwn""" + str({PAYLOAD}) + """, ejected by resgraph' in result.stdout


def _ejected(network, tmp_path, name="ejected"):
    path = tmp_path / f"{name}.py"
    path.write_text(eject_network(network), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # generated from the specs of this file, which carry no payload
    sys.modules.pop(name, None)
    return module


def _agree(network, tmp_path, *inputs, **arguments):
    compiled = resgraph.compile(network, seed=0).eval()
    module = _ejected(network, tmp_path)
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    ejected = classes[-1](**arguments).eval()
    ejected.load_state_dict(compiled.state_dict(), strict=True)
    with torch.no_grad():
        expected, got = compiled(*inputs), ejected(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a - b).abs().max().item() <= 1e-6
    return got


def test_a_node_used_twice_and_returned(tmp_path, load_text):
    network = load_text("""
        resgraph: 1
        name: net
        input: [4]
        nodes:
          n0: relu6
          n1: {op: add, inputs: [n0, n0]}
        outputs: [n0, n1]
    """)
    x = torch.full((2, 4), 8.0)
    n0, n1 = _agree(network, tmp_path, x)
    assert n0.sum().item() == 48 and n1.sum().item() == 96


def test_a_three_input_add_with_a_pad_shortcut(tmp_path, load_text):
    network = load_text("""
        resgraph: 1
        name: net
        input: [4, 8, 8]
        nodes:
          c: {op: conv2d, out: 4, kernel: 1}
          d: {op: conv2d, out: 8, kernel: 1}
          e: {op: conv2d, out: 8, kernel: 1, inputs: input}
          s: {op: add, inputs: [d, c, e], shortcut: pad}
    """)
    _agree(network, tmp_path, torch.randn(2, 4, 8, 8))


def test_a_node_named_x_and_block_params_named_self_and_nn(tmp_path, load_text):
    network = load_text("""
        resgraph: 1
        name: net
        input: [4]
        blocks:
          b:
            params: {self: 3, nn: 2, F: 1}
            nodes:
              fc: {op: linear, out: "self + nn + F"}
        nodes:
          x: {op: linear, out: 4}
          blk: {block: b, with: {self: 1}}
          again: {block: b}
    """)
    source = eject_network(network)
    assert "self_" in source and "nn_" in source
    _agree(network, tmp_path, torch.randn(2, 4))


def test_non_finite_params_are_written_as_float_calls(tmp_path, load_text):
    network = load_text("""
        resgraph: 1
        name: net
        params: {a: .nan, b: .inf, c: -.inf}
        input: [4]
        blocks:
          b:
            params: {w: 4, s: .nan}
            nodes:
              fc: {op: linear, out: "w if s != s else 2"}
        nodes:
          blk: {block: b}
          other: {block: b, with: {w: 3}}
    """)
    source = eject_network(network)
    assert 'a: float = float("nan")' in source and 'b: float = float("inf")' in source
    assert 'c: float = -float("inf")' in source and 's: float = float("nan")' in source
    _agree(network, tmp_path, torch.randn(2, 4))


def test_eject_constructor_takes_the_specs_params(tmp_path):
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    module = _ejected(network, tmp_path)
    import inspect

    signature = inspect.signature(module.CifarResnet20)
    assert {name: p.default for name, p in signature.parameters.items()} == \
        {"num_classes": 10, "n": 3, "shortcut": "pad"}
    assert module.CifarResnet20(num_classes=100).linear.out_features == 100
    with pytest.raises(ValueError, match="--set n="):
        module.CifarResnet20(n=5)   # the depth is the structure written out: re-export for another
    _agree(network, tmp_path, torch.randn(2, 3, 32, 32), num_classes=10)


def test_eject_init_draws_compiles_initial_weights(tmp_path):
    network = resgraph.load(SPECS / "cifar_resnet20.yaml")
    module = _ejected(network, tmp_path)
    torch.manual_seed(7)
    ejected = module.CifarResnet20().state_dict()
    torch.manual_seed(7)
    compiled = resgraph.compile(network, seed=None).state_dict()
    assert ejected.keys() == compiled.keys()
    for key in compiled:
        assert torch.equal(ejected[key], compiled[key]), key
    # Kaiming normal, fan_out: std sqrt(2 / (16 * 9)) = 0.118 for conv1, not the default uniform's 0.11
    assert abs(ejected["conv1.weight"].std().item() - (2 / (16 * 9)) ** 0.5) < 0.01


@pytest.mark.parametrize("name", ["preact_resnet164", "residual_mlp"])
def test_eject_init_with_projections_variants_and_linear_blocks(tmp_path, name):
    network = resgraph.load(SPECS / f"{name}.yaml")
    module = _ejected(network, tmp_path)
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, torch.nn.Module)]
    torch.manual_seed(11)
    ejected = classes[-1]().state_dict()
    torch.manual_seed(11)
    compiled = resgraph.compile(network, seed=None).state_dict()
    assert ejected.keys() == compiled.keys()
    assert all(torch.equal(ejected[key], compiled[key]) for key in compiled)
