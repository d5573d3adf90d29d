"""Lowering to torch.fx: names, readable code, in-place rules, init, devices and dtypes."""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import torch

import resgraph

from .conftest import SPECS

BASIC = """
    resgraph: 1
    name: tiny
    input: [4, 8, 8]
    blocks:
      basic:
        params: {planes: null, stride: 1}
        nodes:
          conv1: {op: conv2d, out: planes, kernel: 3, stride: stride, padding: 1, bias: false}
          bn1: batchnorm2d
          relu1: relu
          conv2: {op: conv2d, out: planes, kernel: 3, padding: 1, bias: false}
          bn2: batchnorm2d
          add: {op: add, inputs: [bn2, input], shortcut: auto}
          relu2: relu
    nodes:
      stage: {block: basic, repeat: 2, with: {planes: 8}, first: {stride: 2}}
      pool: {op: adaptive_avgpool2d, size: 1}
      flat: flatten
      fc: {op: linear, out: 3}
"""


def test_generated_code_reads_like_torchvision(load_text):
    model = resgraph.compile(load_text(BASIC))
    assert "stage = self.stage(x)" in model.code
    block = model.stage[0]
    assert type(block).__name__ == "Basic" and type(model.stage).__name__ == "Sequential"
    assert "conv1 = self.conv1(x)" in block.code
    assert "bn2 += downsample" in block.code
    assert "relu1 = bn1.relu_()" in block.code
    assert "+=" in model.stage[1].code and "downsample" not in model.stage[1].code
    assert type(model).__name__ == "Tiny"
    assert [name for name, _ in model.named_children()] == ["stage", "fc"]
    assert isinstance(model.get_submodule("stage.0.downsample.0"), torch.nn.Conv2d)


def test_blocks_with_the_same_code_share_one_class_as_hand_written_blocks_do(load_text):
    spec = load_text(BASIC.replace("repeat: 2", "repeat: 3"))
    model, other = resgraph.compile(spec), resgraph.compile(spec)
    first, second, third = model.stage
    assert type(second) is type(third) is type(other.stage[1])
    assert type(first) is not type(second) and type(first).__name__ == type(second).__name__ == "Basic"
    # fx's traceback-rewriting wrapper is skipped: a block call is a plain nn.Module call
    assert type(second).__call__ is torch.nn.Module.__call__

    # Editing one instance's graph leaves its twins' code alone.
    x = torch.randn(2, 8, 4, 4)
    model.eval()
    with torch.no_grad():
        before = second(x), third(x)
        output = next(node for node in second.graph.nodes if node.op == "output")
        with second.graph.inserting_before(output):
            negated = second.graph.call_function(torch.neg, (output.args[0],))
        output.args = (negated,)
        second.recompile()
        assert type(second) is not type(third) and type(second).__name__ == "Basic"
        assert "torch.neg" in second.code and "torch.neg" not in third.code
        assert torch.equal(second(x), -before[0]) and torch.equal(third(x), before[1])


def test_a_deep_copy_keeps_class_names_and_shared_classes(load_text):
    model = resgraph.compile(load_text(BASIC.replace("repeat: 2", "repeat: 3"))).eval()
    twin = copy.deepcopy(model)
    assert [type(m).__name__ for m in twin.modules()] == [type(m).__name__ for m in model.modules()]
    assert type(twin.stage[1]) is type(model.stage[1]) is type(twin.stage[2])
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))


def test_training_step_works_with_in_place_ops(load_text):
    model = resgraph.compile(load_text(BASIC))
    x = torch.randn(4, 4, 8, 8, requires_grad=True)
    model(x).sum().backward()  # autograd's version counters would reject a wrong in-place op
    assert all(p.grad is not None for p in model.parameters())


def test_a_value_read_twice_is_not_overwritten(load_text):
    model = resgraph.compile(load_text("""
        resgraph: 1
        input: [8]
        nodes:
          fc: {op: linear, out: 8}
          double: {op: add, inputs: [fc, fc]}
          act: relu
          out: {op: add, inputs: [act, fc]}
    """))
    x = torch.randn(2, 8)
    fc = model.fc(x)
    expected = torch.relu(fc + fc) + fc
    assert torch.allclose(model(x), expected)
    assert "+=" not in model.code.split("double")[1].split("\n")[0]


def test_init_is_seeded_and_leaves_the_global_rng_alone(load_text):
    network = load_text(BASIC)
    state = torch.random.get_rng_state()
    a = resgraph.compile(network, seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    b = resgraph.compile(network, seed=7).state_dict()
    c = resgraph.compile(network, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stage.0.conv1.weight"], c["stage.0.conv1.weight"])


def test_torchvision_init_scheme(load_text):
    model = resgraph.compile(load_text(BASIC))
    bn = model.get_submodule("stage.0.bn1")
    assert torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    conv = model.get_submodule("stage.1.conv1").weight
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * k * k)).
    expected = (2 / (8 * 9)) ** 0.5
    assert abs(conv.std().item() - expected) / expected < 0.2


def test_zero_init_residual(load_text):
    network = load_text(BASIC)
    plain = resgraph.compile(network)
    zeroed = resgraph.compile(network, zero_init_residual=True)
    for index in (0, 1):
        assert torch.equal(zeroed.get_submodule(f"stage.{index}.bn2").weight, torch.zeros(8))
        assert torch.equal(plain.get_submodule(f"stage.{index}.bn2").weight, torch.ones(8))
    assert torch.equal(zeroed.get_submodule("stage.0.bn1").weight, torch.ones(8))


SE_GATED = """
    resgraph: 1
    input: [8, 6, 6]
    blocks:
      gate:
        params: {channels: null}
        nodes:
          pool: {op: adaptive_avgpool2d, size: 1}
          fc: {op: conv2d, out: channels, kernel: 1}
          sigmoid: sigmoid
          scale: {op: mul, inputs: [ORDER]}
      unit:
        nodes:
          conv1: {op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
          bn1: batchnorm2d
          relu1: relu
          conv2: {op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
          bn2: batchnorm2d
          drop: {op: dropout, p: 0.1}
          se: {block: gate, with: {channels: 8}}
          same: identity
          add: {op: add, inputs: [same, input]}
          relu2: relu
    nodes:
      stage: {block: unit, repeat: 2}
"""


@pytest.mark.parametrize("order", ["input, sigmoid", "sigmoid, input"])
def test_zero_init_residual_follows_the_branch_through_an_se_gate(load_text, order):
    # The branch ends bn2 -> dropout -> mul(., gate) -> identity, as an SE block's `mul(bn3, gate)`; the gate's
    # factor is told apart by its broadcast shape, whichever input it is.
    network = load_text(SE_GATED.replace("ORDER", order))
    plain = resgraph.compile(network)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zeroed = resgraph.compile(network, zero_init_residual=True)
    for index in (0, 1):
        assert torch.equal(zeroed.get_submodule(f"stage.{index}.bn2").weight, torch.zeros(8))
        assert torch.equal(zeroed.get_submodule(f"stage.{index}.bn1").weight, torch.ones(8))
        assert torch.equal(plain.get_submodule(f"stage.{index}.bn2").weight, torch.ones(8))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():  # every unit starts as relu(x + 0)
        assert torch.equal(zeroed.eval()(x), torch.relu(torch.relu(x)))


PREACT = """
    resgraph: 1
    input: [8, 6, 6]
    blocks:
      preact:
        nodes:
          bn1: batchnorm2d
          relu1: relu
          conv1: {op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
          bn2: batchnorm2d
          relu2: relu
          conv2: {op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
          add: {op: add, inputs: [conv2, input]}
      post:
        nodes:
          conv: {op: conv2d, out: 8, kernel: 3, padding: 1, bias: false}
          bn: batchnorm2d
          add: {op: add, inputs: [bn, input]}
    nodes:
      units: {block: preact, repeat: 3}
      last: {block: post}
"""


def test_zero_init_residual_warns_about_branches_without_a_norm(load_text):
    network = load_text(PREACT)
    with pytest.warns(UserWarning, match=r"no effect on 3 residual adds, the first `units\.0\.add`: its branch ends "
                                         r"in conv2d `units\.0\.conv2`") as caught:
        zeroed = resgraph.compile(network, zero_init_residual=True)
    assert len(caught) == 1  # one warning for all of them, pointing at the caller
    assert caught[0].filename == __file__
    assert torch.equal(zeroed.get_submodule("last.bn").weight, torch.zeros(8))
    for index in range(3):  # nothing else is touched
        assert torch.equal(zeroed.get_submodule(f"units.{index}.bn2").weight, torch.ones(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resgraph.compile(network)  # no warning without zero_init_residual


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_dtypes(load_text, dtype):
    model = resgraph.compile(load_text(BASIC), dtype=dtype).eval()
    expected = getattr(torch, dtype)
    assert all(p.dtype == expected for p in model.parameters())
    if dtype != "float16":  # half convolutions are not implemented on every CPU build
        with torch.no_grad():
            assert model(torch.randn(2, 4, 8, 8, dtype=expected)).dtype == expected


def test_meta_device_counts_without_allocating():
    model = resgraph.compile(SPECS / "resnet50.yaml", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


def test_memory_limit_refuses_with_the_estimate(load_text):
    network = load_text(BASIC)
    with pytest.raises(resgraph.SpecError) as info:
        resgraph.compile(network, max_memory_bytes=1000)
    message = info.value.diagnostics[0].message
    assert info.value.diagnostics[0].code == "RG036" and f"{network.params:,} parameters" in message
    assert "max_memory_bytes" in info.value.diagnostics[0].help
    weights, activations = network.memory_estimate(batch=1, itemsize=4)
    assert weights == network.params * 4
    # Every node's output, one sample: input 4x8x8, two stride-2 units of 8x4x4 (7 nodes each), pool, fc.
    assert activations == 4 * (4 * 8 * 8 + 14 * 8 * 4 * 4 + 8 + 8 + 3)


def test_memory_limit_counts_activations_for_the_batch(load_text):
    network = load_text(BASIC)
    weights, activations = network.memory_estimate(batch=1000, itemsize=4)
    limit = weights + activations // 2  # the weights fit, the activations of 1,000 samples do not
    resgraph.compile(network, max_memory_bytes=limit, batch=1)
    with pytest.raises(resgraph.SpecError, match="for a batch of 1000"):
        resgraph.compile(network, max_memory_bytes=limit, batch=1000)


def test_unknown_dtype_is_a_value_error(load_text):
    with pytest.raises(ValueError, match="unknown dtype"):
        resgraph.compile(load_text(BASIC), dtype="float8")


def test_several_outputs_give_a_tuple(load_text):
    model = resgraph.compile(load_text("""
        resgraph: 1
        input: {image: [3, 8, 8], extra: [5]}
        nodes:
          conv: {op: conv2d, out: 4, kernel: 3, inputs: image}
          pool: {op: adaptive_avgpool2d, size: 1}
          flat: flatten
          side: {op: linear, out: 2, inputs: extra}
        outputs: [flat, side]
    """))
    flat, side = model(torch.randn(2, 3, 8, 8), torch.randn(2, 5))
    assert flat.shape == (2, 4) and side.shape == (2, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda(dtype):
    model = resgraph.compile(SPECS / "resnet18.yaml", device="cuda", dtype=dtype).eval()
    cpu = resgraph.compile(SPECS / "resnet18.yaml").eval()
    assert all(p.is_cuda for p in model.parameters())
    # Same seed, same weights on every device.
    assert torch.equal(model.conv1.weight.float().cpu(), cpu.conv1.weight.to(getattr(torch, dtype)).float())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = model(x.cuda().to(getattr(torch, dtype))).float().cpu()
        tolerance = 1e-3 if dtype == "float32" else 0.1
        assert (out - cpu(x)).abs().max().item() < tolerance * max(1.0, cpu(x).abs().max().item())


def test_notebook_representations(load_text):
    network = load_text(BASIC)
    html = resgraph.compile(network)._repr_html_()
    assert html.startswith("<p><b>tiny</b>") and "<td><code>stage.0.conv1</code></td>" in html
    assert f"{network.params:,} parameters" in html
    assert not hasattr(torch.nn.Linear(2, 2), "_repr_html_")  # only the compiled model's own class
    # Same code, other widths: the two models share their classes, not their summaries.
    wider = load_text(BASIC.replace("planes: 8", "planes: 16"))
    first, second = resgraph.compile(network), resgraph.compile(wider)
    assert type(first) is type(second)
    assert f"{network.params:,} parameters" in first._repr_html_()
    assert f"{wider.params:,} parameters" in second._repr_html_()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_runtime_error_names_the_spec_node_and_the_declared_input():
    model = resgraph.compile(SPECS / "resnet18.yaml").eval()
    with pytest.raises(RuntimeError, match="expected input") as caught:
        model(torch.randn(1, 4, 32, 32))
    running, inputs = caught.value.__notes__
    assert running == f"resgraph: raised in node `conv1` (conv2d), defined at {SPECS / 'resnet18.yaml'}:13:3"
    assert inputs == ("resgraph: the spec declares `input` as [3, 224, 224] per sample, after a batch dimension; "
                      "this call got [1, 4, 32, 32]")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_runtime_error_inside_a_block_names_the_node_in_the_block():
    # 100 is not a multiple of 8: the decoder's upsampled 24x24 meets the encoder's 25x25 skip.
    model = resgraph.compile(SPECS / "unet.yaml").eval()
    with pytest.raises(RuntimeError, match="Sizes of tensors must match") as caught:
        model(torch.randn(1, 1, 100, 100))
    assert caught.value.__notes__[0] == \
        f"resgraph: raised in node `up3.cat` (concat), defined at {SPECS / 'unet.yaml'}:53:7"
    # The right shape runs, and a block called on its own is a plain module call.
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    with pytest.raises(RuntimeError) as caught:
        model.enc1(torch.randn(1, 3, 8, 8))
    assert not getattr(caught.value, "__notes__", None)


def test_a_block_call_keyed_with_a_name_torch_reserves_is_renamed_as_a_node_is(load_text):
    # `key: eval` on a call once crashed compile (torch's add_module refuses `eval`); found by the mutant fuzz
    network = load_text("""
        resgraph: 1
        input: [4]
        blocks:
          dense: {nodes: {fc: {op: linear, out: 4}}}
        nodes:
          layers: {block: dense, repeat: 2, key: eval}
          head: {op: linear, out: 2, key: train}
    """)
    model = resgraph.compile(network)
    assert list(model.state_dict()) == ["eval_.0.fc.weight", "eval_.0.fc.bias", "eval_.1.fc.weight",
                                        "eval_.1.fc.bias", "train_.weight", "train_.bias"]
    assert model(torch.randn(3, 4)).shape == (3, 2)


# Buffers left out of the state_dict, at the top and in each instance of a repeated block under a `key`, one of
# them an int64 index: what no checkpoint holds, and what meta-device materialisation must compute again.
VOLATILE_BUFFERS = """resgraph: 1
input: [4, 64]
blocks:
  stage:
    nodes:
      fc: {op: linear, out: 64}
      table: {op: buffer, generator: sinusoidal, shape: [4, 64], persistent: false, key: consts.1}
      sum: {op: add, inputs: [fc, table]}
nodes:
  table: {op: buffer, generator: sinusoidal, shape: [4, 64], persistent: false}
  sum: {op: add, inputs: [input, table]}
  body: {block: stage, repeat: 2}
  windows: {op: buffer, generator: relative_position_index, window: [2, 2], persistent: false}
outputs: {out: body, windows: windows}
"""


def _materialised(how: str, network, weights: dict) -> torch.nn.Module:
    """The network built on meta, then made real as torch documents it."""
    model = resgraph.compile(network, device="meta")
    if how == "assign":
        model.load_state_dict(weights, assign=True)
    elif how == "to_empty":
        model.to_empty(device="cpu")
        model.load_state_dict(weights)
    elif how == "nested":   # the network inside a user's model, which is what is loaded
        model = torch.nn.Sequential(model)
        model.load_state_dict({f"0.{key}": value for key, value in weights.items()}, assign=True)
    else:   # a copy and a pickle of the meta network keep the recipe
        import pickle

        model = pickle.loads(pickle.dumps(copy.deepcopy(model)))
        model.to_empty(device="cpu")
        model.load_state_dict(weights)
    return model


@pytest.mark.parametrize("how", ["assign", "to_empty", "nested", "copied"])
def test_non_persistent_buffers_are_computed_again_after_meta_materialisation(load_text, how):
    """A `persistent: false` buffer of a network built on meta stayed on meta after `load_state_dict(...,
    assign=True)` (the forward silently computed nothing) and was uninitialised memory after `to_empty`: no
    state_dict holds it. It is computed again after the load, on the weights' device."""
    network = load_text(VOLATILE_BUFFERS)
    reference = resgraph.compile(network).eval()
    weights = reference.state_dict()
    assert not any("table" in key or "consts" in key or "windows" in key for key in weights)
    model = _materialised(how, network, weights).eval()
    expected = dict(reference.named_buffers())
    got = {name.removeprefix("0."): buffer for name, buffer in model.named_buffers()}
    assert list(got) == list(expected) == ["table", "windows", "body.0.consts.1", "body.1.consts.1"]
    for name, buffer in got.items():
        assert buffer.device.type == "cpu" and buffer.dtype == expected[name].dtype, name
        assert torch.equal(buffer, expected[name]), name
    x = torch.randn(2, 4, 64)
    with torch.no_grad():
        got, want = model(x), reference(x)
    assert list(got) == ["out", "windows"]
    assert all(torch.equal(got[key], want[key]) for key in want)


def test_a_non_persistent_buffer_follows_the_dtype_of_the_weights_assigned():
    network = resgraph.load("volatile.yaml", text=VOLATILE_BUFFERS)
    weights = resgraph.compile(network, dtype="float64").state_dict()
    model = resgraph.compile(network, device="meta")   # float32 on meta
    model.load_state_dict(weights, assign=True)
    assert model.table.dtype == torch.float64 and model.windows.dtype == torch.int64
    assert torch.equal(model.table, resgraph.compile(network, dtype="float64").table)
