"""`resgraph import` over torchvision's classification models (issue 11): every model torch.fx can trace
round-trips to a spec with blocks that compiles back exactly (strict state_dict, equal outputs with
randomised norms); each one it cannot take gets exactly one RG060. docs/import_table.py writes the table of
docs/import.md from the same measurement.

By default: output parity for small instances of the families the importer maps specially (ViT's class
token, positions and attention; ConvNeXt's LayerNorm2d and layer scale; MobileNetV3), meta-device imports of
full-size models, and the one-diagnostic rule for models it refuses. `pytest -m slow`: every model of
`torchvision.models.list_models(module=torchvision.models)`, outputs compared where it imports."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import resgraph  # noqa: E402
from resgraph import SpecError  # noqa: E402
from resgraph.importer import import_module  # noqa: E402

from .zoo import randomize  # noqa: E402  (tests/zoo: the project's way to randomise norms)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import import_table  # noqa: E402

ALL = torchvision.models.list_models(module=torchvision.models)


def round_trip(model, input_shape) -> tuple[float, float]:
    """Import `model`, compile the spec, load the randomised model's state_dict strictly; the max abs
    difference of the outputs and it relative to the largest output (eval mode, seeded input)."""
    torch.manual_seed(0)
    randomize(model)
    model.eval()
    modes = [m.training for m in model.modules()]
    text = import_module(model, input_shape)
    assert [m.training for m in model.modules()] == modes, "the import changed the model's train/eval modes"
    assert "blocks:" in text, "the spec has no blocks"
    network = resgraph.load(Path("imported.yaml"), text=text)
    compiled = resgraph.compile(network)
    theirs, ours = model.state_dict(), compiled.state_dict()
    assert list(ours) == list(theirs)
    assert [tuple(t.shape) for t in ours.values()] == [tuple(t.shape) for t in theirs.values()]
    compiled.load_state_dict(theirs, strict=True)
    compiled.eval()
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    assert got.shape == expected.shape
    scale = expected.abs().max().item()
    assert scale > 1e-2, "the reference's output is near zero: proves nothing"
    diff = (got.double() - expected.double()).abs().max().item()
    return diff, diff / scale


def small_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=10)


def small_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)], stochastic_depth_prob=0.1,
                    num_classes=10)


@pytest.mark.parametrize("build, shape", [
    pytest.param(small_vit, (3, 32, 32), id="vit"),
    pytest.param(small_convnext, (3, 32, 32), id="convnext"),
])
def test_small_torchvision_models_round_trip_with_equal_outputs(build, shape):
    assert round_trip(build(), shape)[0] <= 1e-5


def test_multihead_attention_imports_as_the_op_with_torch_keys():
    text = import_module(small_vit(), (3, 32, 32))
    assert "{op: multihead_attention, heads: 2}" in text
    assert "class_token: {op: parameter, shape: [1, 16]}" in text
    assert "pos_embedding: {op: parameter, shape: [17, 16]}" in text


@functools.cache
def measured(name: str) -> import_table.Row:
    return import_table.measure(name)


# name -> whether it imports: one model per mapping the importer does for torchvision (the class token,
# positions and attention; LayerNorm2d and layer scale; chunk and channel_shuffle; RegNet's `block1-0`
# names; Swin's window attention, patch merging and a StochasticDepth called twice), and one it refuses.
DEFAULT = {"vit_b_16": True, "convnext_tiny": True, "shufflenet_v2_x0_5": True, "regnet_x_400mf": True,
           "swin_t": True, "maxvit_t": False}


@pytest.mark.parametrize("name", DEFAULT)
def test_full_size_models_import_or_give_one_diagnostic(name):
    """On the meta device: the importer checks keys, shapes and settings itself; a refusal is one RG060
    (asserted in `measure`)."""
    row = measured(name)
    assert row.imported == DEFAULT[name], row.reason
    if row.imported:
        assert row.blocks > 0 and row.repeats > 0 or name in ("vit_b_16", "convnext_tiny", "swin_t")


def test_a_refused_model_gets_exactly_one_rg060():
    """MaxViT makes a constant tensor in its forward: one RG060 (asserted in `measure`) names the module."""
    assert measured("maxvit_t").reason.startswith("`blocks.0.layers.0.layers.window_attention.attn_layer.1` makes a "
                                                  "constant tensor in its forward")


def test_unmapped_calls_of_several_kinds_make_one_diagnostic():
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.erf(torch.nn.functional.softshrink(self.fc(x)) + torch.erf(x))

    with pytest.raises(SpecError) as caught:
        import_module(Odd(), (4,))
    (diagnostic,) = caught.value.errors
    assert diagnostic.message.startswith("cannot import `torch.nn.functional.softshrink` at the top level")
    assert diagnostic.message.endswith("also without an op: `torch.erf`")


def test_docs_table_agrees_for_the_default_models():
    """docs/import.md's table (docs/import_table.py) has a row for every model, and the default models'
    rows are what the importer does now."""
    rows = import_table.existing_rows((ROOT / "docs" / "import.md").read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(ALL), "run docs/import_table.py"
    for name in DEFAULT:
        assert rows[name] == measured(name).cells(), f"{name}: run docs/import_table.py {name}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_torchvision_model_round_trips_or_gives_one_diagnostic(name):
    """A refusal is one RG060 with its reason (asserted in `measure`; docs/import.md lists it); an import
    compiles back with equal outputs: max abs diff <= 1e-5, or <= 1e-4 relative to the output (the largest)."""
    row = import_table.measure(name)
    if not row.imported:
        assert row.reason
        return
    assert row.blocks > 0
    model = import_table.build(name, device="cpu")
    diff, relative = round_trip(model, import_table.INPUTS.get(name, (3, 224, 224)))
    print(f"{name}: max abs diff {diff:.2e}, relative {relative:.2e}")
    assert diff <= 1e-5 or relative <= 1e-4


class CrossAttention(torch.nn.Module):
    """A decoder's cross-attention to a memory, without biases: `multihead_attention` with inputs [query, memory]."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.attn = torch.nn.MultiheadAttention(8, 2, bias=False, batch_first=True)

    def forward(self, x, memory):
        out, _ = self.attn(self.norm(x), memory, memory)
        return out + x


def test_cross_attention_round_trips_with_equal_outputs():
    model = CrossAttention().eval()
    text = import_module(model, {"x": (5, 8), "memory": (7, 8)})
    assert "{op: multihead_attention, heads: 2, bias: false, inputs: [norm, memory]}" in text
    compiled = resgraph.compile(resgraph.load(Path("cross.yaml"), text=text)).eval()
    compiled.load_state_dict(model.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(1)
    x, memory = torch.randn(2, 5, 8, generator=generator), torch.randn(2, 7, 8, generator=generator)
    with torch.no_grad():
        assert (compiled(x, memory) - model(x, memory)).abs().max().item() <= 1e-5
