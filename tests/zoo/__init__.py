"""The zoo: every spec that claims to be a published model, with the reference that proves it.

Each module in this package (one per family group) defines `MODELS`, a list of `Model`. The checks
here are used by tests/test_zoo.py and by docs/gallery.py, which writes their results into
docs/gallery.md, so the page and the tests measure the same thing:

* `check_meta`: the spec's static parameter count equals the reference's, and on the meta device
  the compiled module has the reference's state_dict keys, in its order, with its shapes (no
  weights drawn: every variant, in the default run);
* `measure_parity`: the reference with norm statistics, affine weights and every constant-initialised
  tensor randomised, loaded strictly into the compiled spec, both in eval mode, one seeded input:
  the largest absolute and relative output difference;
* `measure_macs`: the spec's MACs against `torch.utils.flop_counter.FlopCounterMode`'s FLOPs / 2 for
  the reference's forward on the meta device, at the spec's input shape and batch 1.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

SPECS = Path(__file__).resolve().parents[2] / "specs"


@dataclass(frozen=True)
class Model:
    name: str                                   # the model's own name (torchvision's where it has one)
    spec: str                                   # path under specs/
    family: str                                 # one row group of docs/gallery.md
    reference: Callable[[], Any]                # builds the reference nn.Module, on the current default device
    reference_name: str                         # how docs/gallery.md names the reference
    params: Mapping[str, Any] = field(default_factory=dict)    # the spec's params for this variant
    smallest: bool = False                      # output parity in the default run (else under `-m zoo`)
    # the example input for parity, from a seeded generator; default: a float tensor of the spec's input
    # shape with batch `batch`
    example: Callable[[Any], Any] | None = None
    batch: int = 1
    # the reference's output mapped to what the compiled spec returns (e.g. Hugging Face's `.logits`)
    output: Callable[[Any], Any] | None = None
    relative: bool = False                      # parity judged by relative difference <= 1e-4 (largest models)
    macs_input: Callable[[], Any] | None = None  # the example for FlopCounterMode, built on meta
    note: str = ""                              # shown in docs/gallery.md (e.g. how MACs differ)
    # why output parity cannot run on a test machine (Llama-2-7B: two float32 copies are 54 GB); such a
    # variant's parity test is skipped with this reason, its count, keys and MACs are checked as every other's
    too_large: str = ""

    @property
    def path(self) -> Path:
        return SPECS / self.spec


def _collect() -> list[Model]:
    models = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        models += importlib.import_module(f"{__name__}.{info.name}").MODELS
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"zoo models named twice: {duplicates}"
    return models


MODELS: list[Model] = _collect()


def state_shapes(module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def count(module) -> int:
    """Parameters as torch counts them: a tensor shared by two modules once."""
    return sum(p.numel() for p in module.parameters())


def check_meta(model: Model) -> int:
    """Assert the static count and the meta-device keys, order and shapes; return the count."""
    import torch

    import resgraph

    network = resgraph.load(model.path, params=model.params)
    compiled = resgraph.compile(network, device="meta")
    with torch.device("meta"):
        reference = model.reference()
    assert network.params == count(reference), \
        f"{model.name}: the spec counts {network.params:,} parameters, the reference {count(reference):,}"
    assert count(compiled) == network.params
    ours, theirs = state_shapes(compiled), state_shapes(reference)
    if ours != theirs:
        only_ours = [k for k in ours if k not in theirs][:5]
        only_theirs = [k for k in theirs if k not in ours][:5]
        raise AssertionError(f"{model.name}: state_dicts differ; only in the spec: {only_ours}; only in the "
                             f"reference: {only_theirs}" + ("" if only_ours or only_theirs else "; order differs"))
    return network.params


def randomize(module, seed: int = 0) -> None:
    """Seeded random values for every tensor a fresh model holds constant (norm weights and biases, running
    statistics, zero-initialised heads, layer scales, class tokens): a swapped or missing key then shows in
    the outputs. Variances and norm weights stay in [0.5, 1.5], everything else in [-0.5, 0.5]."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = dict(module.named_parameters())
        tensors.update((name, t) for name, t in module.named_buffers() if t.is_floating_point())
        for name, tensor in tensors.items():
            flat = tensor.detach().reshape(-1)
            if flat.numel() == 0 or not bool((flat == flat[0]).all()):
                continue
            leaf = name.rsplit(".", 1)[-1]
            positive = leaf in ("running_var", "weight") and float(flat[0]) == 1.0
            low, high = (0.5, 1.5) if positive else (-0.5, 0.5)
            tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * (high - low) + low)


def _flatten(value) -> dict[str, Any]:
    """Tensors of an output, by position or key (a dict output keeps its keys)."""
    import torch

    if isinstance(value, torch.Tensor):
        return {"": value}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return {str(i): v for i, v in enumerate(value)}


def example_input(model: Model, network, generator):
    import torch

    if model.example is not None:
        return model.example(generator)
    (shape,) = network.input_shapes.values()
    return torch.randn((model.batch, *shape), generator=generator)


def measure_parity(model: Model) -> tuple[float, float]:
    """Strict load of the randomised reference into the compiled spec; (max abs diff, max relative diff)."""
    import torch

    import resgraph

    network = resgraph.load(model.path, params=model.params)
    compiled = resgraph.compile(network, device="meta")
    torch.manual_seed(0)
    reference = model.reference()
    randomize(reference)
    result = compiled.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    compiled.eval(), reference.eval()
    x = example_input(model, network, torch.Generator().manual_seed(1))
    args = x if isinstance(x, tuple) else (x,)
    with torch.no_grad():
        expected = reference(*args)
        got = compiled(*args)
    if model.output is not None:
        expected = model.output(expected)
    expected, got = _flatten(expected), _flatten(got)
    assert list(expected) == list(got), f"{model.name}: outputs {list(got)}, the reference's {list(expected)}"
    worst_abs = worst_rel = 0.0
    for key, e in expected.items():
        g = got[key]
        assert g.shape == e.shape, f"{model.name}: output {key!r} is {tuple(g.shape)}, expected {tuple(e.shape)}"
        scale = e.abs().max().item()
        assert scale > 1e-2, f"{model.name}: the reference's output is near zero ({scale:.2e}): proves nothing"
        diff = (g.double() - e.double()).abs().max().item()
        worst_abs, worst_rel = max(worst_abs, diff), max(worst_rel, diff / scale)
    return worst_abs, worst_rel


def parity_ok(model: Model, diffs: tuple[float, float]) -> bool:
    return diffs[1] <= 1e-4 if model.relative else diffs[0] <= 1e-5


def measure_macs(model: Model) -> tuple[int, int]:
    """(the spec's MACs, FlopCounterMode's FLOPs / 2 for the reference on the meta device)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import resgraph

    network = resgraph.load(model.path, params=model.params)
    with torch.device("meta"):
        reference = model.reference().eval()
        if model.macs_input is not None:
            x = model.macs_input()
        else:
            (shape,) = network.input_shapes.values()
            x = torch.randn((1, *shape))
        args = x if isinstance(x, tuple) else (x,)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            reference(*args)
    return network.macs, counter.get_total_flops() // 2
