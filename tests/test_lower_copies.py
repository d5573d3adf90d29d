"""Copies of compiled networks (issue 15): `pickle` (DataLoader workers, checkpoints) and `copy.deepcopy`
(EMA) keep the classes, module names, weights, outputs and the runtime error notes that name the spec node."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.fx as fx

import resgraph
from resgraph.lower import CompiledModule, CompiledNetwork

from .conftest import SPECS

ROUND_TRIPS = {"pickle": lambda model: pickle.loads(pickle.dumps(model)), "deepcopy": copy.deepcopy,
               "pickle twice": lambda model: pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(model))))}


@pytest.fixture(scope="module")
def model():
    return resgraph.compile(SPECS / "cifar_resnet20.yaml", seed=0).eval()


def notes_of(model, x) -> list[str]:
    with pytest.raises(RuntimeError) as caught:
        model(x)
    return list(getattr(caught.value, "__notes__", []))


def structure(model) -> list[tuple[str, str, type, str]]:
    """Every fx module: its path, class name, resgraph base class and generated code."""
    return [(name, type(module).__name__, type(module).__mro__[1], module.code)
            for name, module in model.named_modules() if isinstance(module, fx.GraphModule)]


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copy_keeps_classes_names_weights_and_outputs(model, how):
    twin = ROUND_TRIPS[how](model)
    assert isinstance(twin, CompiledNetwork) and type(twin).__name__ == type(model).__name__ == "CifarResnet20"
    assert isinstance(twin.layer1[0], CompiledModule) and not isinstance(twin.layer1[0], CompiledNetwork)
    assert structure(twin) == structure(model)
    assert [name for name, _ in twin.named_modules()] == [name for name, _ in model.named_modules()]
    assert twin.training is False and twin.layer1[0].bn1.training is False
    original, copied = model.state_dict(), twin.state_dict()
    assert list(copied) == list(original) and all(torch.equal(copied[k], original[k]) for k in original)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_a_copy_raises_with_the_same_notes(model, how):
    twin = ROUND_TRIPS[how](model)
    wrong = torch.randn(2, 4, 32, 32)
    notes = notes_of(model, wrong)
    assert len(notes) == 2 and "raised in node `conv1` (conv2d), defined at" in notes[0]
    assert "declares `input` as [3, 32, 32]" in notes[1]
    assert notes_of(twin, wrong) == notes
    # inside a block: the note names the block's node, in the copy too
    block_notes = notes_of(model.layer2[0], torch.randn(2, 3, 8, 8))
    assert notes_of(ROUND_TRIPS[how](model.layer2[0]), torch.randn(2, 3, 8, 8)) == block_notes


def test_torch_functions_that_pickle_cannot_name_survive():
    """`F.max_pool2d` is a closure made by torch's boolean_dispatch: pickled by its qualified name."""
    model = resgraph.compile(SPECS / "resnet18.yaml", device="meta")
    twin = pickle.loads(pickle.dumps(model))
    assert structure(twin) == structure(model)
