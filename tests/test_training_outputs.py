"""`training_outputs`: nodes returned in training only, as torchvision's GoogLeNet and Inception v3 return
their auxiliary logits (a named tuple in training, the logits alone in eval)."""

from __future__ import annotations

import copy

import pytest
import torch

import resgraph

AUX_SPEC = """\
resgraph: 1
name: aux_net
input: [3, 16, 16]
nodes:
  conv1: {op: conv2d, out: 8, kernel: 3, padding: 1}
  relu1: relu
  conv2: {op: conv2d, out: 8, kernel: 3, padding: 1}
  add: {op: add, inputs: [conv2, relu1]}
  pool: adaptive_avgpool2d
  flat: flatten
  fc: {op: linear, out: 10}
  aux_pool: {op: adaptive_avgpool2d, inputs: relu1}
  aux_flat: flatten
  aux_fc: {op: linear, out: 10}
outputs: fc
training_outputs: aux_fc
"""


@pytest.fixture
def network():
    return resgraph.load("aux_net.yaml", text=AUX_SPEC)


def test_training_only_nodes_are_not_unused(network):
    assert resgraph.validate("aux_net.yaml", text=AUX_SPEC) == []
    assert network.graph.training_only() == {"aux_pool", "aux_flat", "aux_fc"}
    assert network.output_shapes == {"fc": (10,)}


def test_training_returns_a_named_tuple_and_eval_the_logits(network):
    model = resgraph.compile(network)
    assert "aux_fc.weight" in model.state_dict() and network.params == sum(p.numel() for p in model.parameters())
    calls = []
    model.aux_fc.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert type(out).__name__ == "AuxNetOutputs" and out._fields == ("fc", "aux_fc") and len(calls) == 1
    with torch.no_grad():
        expected_aux = model.aux_fc(torch.relu(model.conv1(x)).mean((2, 3)))
    assert (out.aux_fc - expected_aux).abs().max() <= 1e-6
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and len(calls) == 2   # the aux head did not run (2: the check above)
    assert (logits - out.fc).abs().max() <= 1e-6


def test_a_copy_shares_nothing_with_the_original_and_moves_as_one(network):
    model = resgraph.compile(network)
    twin = copy.deepcopy(model).to(torch.float64)
    assert twin.eval_forward.conv1 is twin.conv1 and twin.training_forward.aux_fc is twin.aux_fc
    assert twin.conv1 is not model.conv1 and model.conv1.weight.dtype == torch.float32
    assert twin.eval()(torch.randn(1, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64



@pytest.mark.slow
def test_googlenet_spec_equals_torchvision_in_training_and_in_eval():
    from torchvision.models import googlenet

    from .conftest import SPECS, randomize_batch_norm

    params = {"num_classes": 10, "image_size": 64, "dropout": 0.0, "dropout_aux": 0.0}   # no dropout: comparable
    network = resgraph.load(SPECS / "googlenet.yaml", params)
    model = randomize_batch_norm(resgraph.compile(network, seed=0))
    reference = googlenet(weights=None, num_classes=10, aux_logits=True, init_weights=False, dropout=0.0,
                          dropout_aux=0.0)
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model.train()(x), reference.train()(x)   # batch statistics, all three heads
        assert type(ours).__name__ == "GooglenetOutputs" and len(ours) == len(theirs) == 3
        for got, expected in zip(ours, theirs):   # (logits, aux2, aux1) in both
            assert (got - expected).abs().max() <= 1e-5
        model.load_state_dict(reference.state_dict())   # the running statistics the training pass updated
        ours, theirs = model.eval()(x), reference.eval()(x)
        assert isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor)
        assert (ours - theirs).abs().max() <= 1e-5


def test_a_training_output_left_out_by_when_is_not_returned():
    # torchvision's Inception v3 with aux_logits=False returns the logits alone, in training too
    text = AUX_SPEC.replace("name: aux_net\n", "name: aux_net\nparams: {aux: true}\n").replace(
        "aux_fc: {op: linear, out: 10}", "aux_fc: {op: linear, out: 10, when: aux}")
    x = torch.randn(2, 3, 16, 16)
    with_head = resgraph.compile(resgraph.load("aux_net.yaml", text=text)).train()
    assert len(with_head(x)) == 2
    network = resgraph.load("aux_net.yaml", text=text, params={"aux": False})
    assert network.graph.training_outputs == []
    without = resgraph.compile(network).train()
    assert isinstance(without(x), torch.Tensor) and without(x).shape == (2, 10)


@pytest.mark.slow
def test_inception_v3_spec_equals_torchvision_in_training_with_its_auxiliary_head():
    # the zoo compares eval-mode outputs, which the auxiliary head does not reach: here training mode does
    from torchvision.models import inception_v3

    from .conftest import SPECS, randomize_batch_norm

    params = {"num_classes": 10, "dropout": 0.0}
    model = randomize_batch_norm(resgraph.compile(SPECS / "inception_v3.yaml", params=params, seed=0))
    reference = inception_v3(weights=None, num_classes=10, aux_logits=True, init_weights=False, dropout=0.0)
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model.train()(x), reference.train()(x)   # batch statistics, both heads
        assert type(ours).__name__ == "InceptionV3Outputs" and len(ours) == len(theirs) == 2
        for got, expected in zip(ours, theirs):   # (logits, aux logits) in both
            assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_exported_python_branches_on_training_as_the_compiled_network(tmp_path):
    """`.py` export of GoogLeNet (small, 10 classes, dropout on): the auxiliary heads run under `if
    self.training:` where the compiled network runs them, so that from one seed training gives the same
    named tuple (dropout drawing the same numbers) and eval the logits alone, without the heads."""
    import importlib.util

    from resgraph.eject import eject_network

    from .conftest import SPECS

    network = resgraph.load(SPECS / "googlenet.yaml", {"num_classes": 10})
    path = tmp_path / "googlenet_export.py"
    path.write_text(eject_network(network))
    spec = importlib.util.spec_from_file_location("googlenet_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiled = resgraph.compile(network)
    exported = module.Googlenet()
    assert list(exported.state_dict()) == list(compiled.state_dict())
    exported.load_state_dict(compiled.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    expected = compiled(x)
    torch.manual_seed(1)
    got = exported(x)
    assert type(got).__name__ == type(expected).__name__ == "GooglenetOutputs"
    assert got._fields == expected._fields and len(got) == 3
    assert all((g - e).abs().max().item() <= 1e-6 for g, e in zip(got, expected))
    assert expected.aux1_fc2.abs().max().item() > 1e-2
    calls = []
    exported.aux1.register_forward_hook(lambda *args: calls.append(1))
    compiled.eval(), exported.eval()
    with torch.no_grad():
        logits = exported(x)
        assert isinstance(logits, torch.Tensor) and not calls
        assert (logits - compiled(x)).abs().max().item() <= 1e-5
