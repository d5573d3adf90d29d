"""Differential tests of every registered op against torch.

One harness, parametrised over `resgraph.ops.REGISTRY`. For many random configurations of
each op (attributes and per-sample input shapes, drawn by the op's strategy in `STRATEGIES`)
it builds a one-node spec and checks:

1. when the shape rule accepts the configuration, the module `resgraph.compile` builds from
   the op's own lowering runs, for every batch size in `BATCHES`, and returns
   `(batch, *shape)` for the shape the rule inferred;
2. the parameter count the op reports equals the number of parameters torch creates;
3. when the shape rule rejects the configuration, the op's lowering (run eagerly on real
   tensors, as if the rule had let it through) does not run per sample either. A few
   rejections are deliberate restrictions where torch would run; those are listed in
   `design_reason` and each one is shown to be real by `test_design_restriction_is_real`.

"Runs per sample" means: it raises no error for any batch size in `BATCHES`, the output's
leading dimension is the batch, and the rest of the output shape does not depend on the batch.
Two batch sizes keep torch from "working" by accident when a per-sample dimension happens to
equal the batch size (torch reads a 3-d tensor as an unbatched image, for example).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resgraph
from resgraph.modules import ZeroPadShortcut, projection
from resgraph.ops import REGISTRY
from resgraph.ops.base import ShapeError
from resgraph.ops.named_activation import FUNCTIONS

# torch warns that `padding: same` with an even kernel may copy the input; the copy is fine here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

BATCHES = (2, 3)
SHAPE_CODES = {"RG050", "RG051", "RG052"}
NODE = "x"

Shape = tuple[int, ...]
Case = tuple[dict[str, Any], list[list[int]]]


# ---- running a configuration through resgraph and through torch ------------------------------

# Ops whose first input holds int64 ids, with the bound of the ids (from the attributes).
INDEX_INPUTS = {"embedding": lambda attrs: attrs["num"]}


def spec_text(name: str, attrs: dict[str, Any], shapes: list[list[int]]) -> str:
    """A one-node network: inputs i0, i1, ... feed node `x`. JSON is valid YAML."""
    inputs: dict[str, Any] = {f"i{k}": list(shape) for k, shape in enumerate(shapes)}
    if name in INDEX_INPUTS:
        inputs["i0"] = {"shape": list(shapes[0]), "dtype": "int64"}
    return json.dumps({"resgraph": 1, "input": inputs,
                       "nodes": {NODE: {"op": name, **attrs, "inputs": list(inputs)}}})


def shape_rule(name: str, attrs: dict[str, Any], shapes: list[list[int]]) -> tuple[Any, str | None]:
    """(network, None) when the pipeline accepts the spec, (None, message) when a shape rule rejects it.

    Also checks that calling the op's `infer_shape` directly agrees with the pipeline.
    """
    op = REGISTRY[name].model_validate({"op": name, **attrs})
    try:
        direct: Shape | ShapeError = tuple(op.infer_shape([tuple(s) for s in shapes], {}))
    except ShapeError as exc:
        direct = exc
    try:
        network = resgraph.load("ops.yaml", text=spec_text(name, attrs, shapes))
    except resgraph.SpecError as exc:
        found = [(d.code, d.message) for d in exc.diagnostics]
        assert {d.code for d in exc.diagnostics} <= SHAPE_CODES and len(found) == 1, \
            f"expected one shape error, got {found}"
        assert isinstance(direct, ShapeError), f"load rejects ({found}) but infer_shape gives {direct}"
        return None, exc.diagnostics[0].message
    assert network.graph.nodes[NODE].shape == direct, "load and infer_shape disagree"
    return network, None


def inputs_for(shapes: list[list[int]], batch: int, name: str | None = None,
               attrs: dict[str, Any] | None = None) -> list[torch.Tensor]:
    torch.manual_seed(batch)
    tensors = [torch.randn(batch, *shape) for shape in shapes]
    if name in INDEX_INPUTS:
        tensors[0] = torch.randint(0, INDEX_INPUTS[name](attrs), (batch, *shapes[0]))
    return tensors


class EagerBuilder:
    """Stands in for `resgraph.lower.Builder`: runs an op's `lower` on real tensors, so the lowering
    can be tried on configurations the shape rule rejected (and so never compiled)."""

    def call_module(self, module: torch.nn.Module, args: list, name: str | None = None,
                    kwargs: dict | None = None) -> torch.Tensor:
        return module.eval()(*args, **(kwargs or {}))

    def call_function(self, function: Any, args: list, kwargs: dict | None = None) -> torch.Tensor:
        return function(*args, **(kwargs or {}))

    def call_method(self, method: str, args: list, kwargs: dict | None = None) -> torch.Tensor:
        return getattr(args[0], method)(*args[1:], **(kwargs or {}))

    def get_attr(self, tensor: torch.Tensor, persistent: bool = True, recompute: Any = None) -> torch.Tensor:
        return tensor

    def resize_like(self, x: torch.Tensor, ref: torch.Tensor, kwargs: dict) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=ref.shape[2:], **kwargs)

    def can_overwrite(self, position: int) -> bool:
        return False


# What a lowering may raise for a configuration it cannot run (the shape rule's own ShapeError
# included: adaptive_avgpool2d's lowering broadcasts `size` with the same helper; nn.MultiheadAttention
# checks its arguments with `assert`).
LOWERING_ERRORS = (RuntimeError, ValueError, NotImplementedError, IndexError, KeyError, ShapeError, AssertionError)


def per_sample(run) -> Shape | None:
    """The per-sample output shape of `run(batch)` if it runs per sample (see the module doc), else None."""
    found = set()
    for batch in BATCHES:
        try:
            with torch.no_grad():
                out = run(batch)
        except LOWERING_ERRORS:
            return None
        parts = out if isinstance(out, tuple) else (out,)   # chunk and split have several outputs
        if not parts or any(part.dim() == 0 or part.shape[0] != batch for part in parts):
            return None
        shapes = tuple(tuple(part.shape[1:]) for part in parts)
        found.add(shapes if isinstance(out, tuple) else shapes[0])
    return found.pop() if len(found) == 1 else None


def eager_lowering(name: str, attrs: dict[str, Any], shapes: list[list[int]]) -> Shape | None:
    """Per-sample output shape of the op's own lowering, run without consulting the shape rule."""
    op = REGISTRY[name].model_validate({"op": name, **attrs})
    sample = [tuple(s) for s in shapes]
    return per_sample(lambda batch: op.lower(EagerBuilder(), inputs_for(shapes, batch, name, attrs), sample, None, {}))


def add_kinds(attrs: dict[str, Any], shapes: list[list[int]]) -> list[str]:
    """The shortcut kind each skip input of an add gets under its policy (before any shape check)."""
    policy = attrs.get("shortcut", "identity")
    branch = shapes[0]
    kinds = []
    for skip in shapes[1:]:
        if policy in ("pad", "auto") and skip == branch:
            kinds.append("identity")
        else:
            kinds.append("project" if policy == "auto" else policy)
    return kinds


def shortcut_module(kind: str, skip: list[int], branch: list[int]) -> torch.nn.Module:
    """resgraph's own shortcut module for `kind`, with the stride per spatial dimension that best
    maps `skip` onto `branch`, found by trying every stride on the real module."""

    def build(stride: list[int]) -> torch.nn.Module:
        if kind == "pad":
            return ZeroPadShortcut(tuple(stride), skip[0], branch[0])
        return projection(tuple(skip), tuple(branch), tuple(stride)).eval()

    stride = [1] * (len(skip) - 1)
    if len(skip) == len(branch):
        probe = torch.zeros(1, *skip)
        for i in range(len(stride)):
            for k in range(1, skip[i + 1] + 1):
                trial = stride[:i] + [k] + stride[i + 1:]
                if build(trial)(probe).shape[i + 2] == branch[i + 1]:
                    stride = trial
                    break
    return build(stride)


def add_counterfactual(attrs: dict[str, Any], shapes: list[list[int]]) -> tuple[Shape | None, bool]:
    """What torch would compute for an add the shape rule rejected: each skip goes through the
    module of its shortcut kind (with the best stride), then everything is summed with torch's
    `+`. Returns the per-sample shape (None if it does not run) and whether `+` had to broadcast."""
    branch, skips = shapes[0], shapes[1:]
    kinds = add_kinds(attrs, shapes)
    broadcast = False

    def run(batch: int) -> torch.Tensor:
        nonlocal broadcast
        tensors = inputs_for(shapes, batch)
        total = tensors[0]
        for kind, skip, x in zip(kinds, skips, tensors[1:]):
            if kind != "identity":
                x = shortcut_module(kind, skip, branch)(x)
            broadcast |= x.shape != total.shape
            total = total + x
        return total

    return per_sample(run), broadcast


# ---- deliberate restrictions: the rule rejects, torch would run -------------------------------

ONE_VALUE_LISTS = {f"{op}{n}d": attrs for n in (2, 3) for op, attrs in (
    ("conv", ("stride", "padding", "dilation")), ("conv_transpose", ("stride", "padding", "output_padding", "dilation")),
    ("maxpool", ("kernel", "stride", "padding", "dilation")), ("avgpool", ("kernel", "stride", "padding")))}


# The spatial dimensions of the pools and instance norms, whose lowerings also accept unbatched inputs.
POOL_DIMS = {f"{kind}{n}d": n for n in (1, 2, 3) for kind in ("maxpool", "avgpool", "adaptive_avgpool",
                                                               "adaptive_maxpool", "instancenorm")}


def design_reason(name: str, attrs: dict[str, Any], shapes: list[list[int]], broadcast: bool = False,
                  shape: Shape | None = None) -> str | None:
    """Why the shape rule deliberately rejects a configuration torch would run (with per-sample output
    `shape`), or None."""
    if name in ONE_VALUE_LISTS and any(isinstance(attrs.get(a), list) and len(attrs[a]) == 1
                                       for a in ONE_VALUE_LISTS[name]):
        return (f"a one-element list for a {name[-2]}-d op: torch repeats it, resgraph asks for an integer "
                "or one value per spatial dimension")
    if name in ("maxpool2d", "avgpool2d", "adaptive_avgpool2d") and len(shapes[0]) == 2:
        return ("a 2-d pool of a [channels, length] input: torch would read [batch, channels, length] "
                "as one unbatched image and pool over channels and length")
    pool_dims = POOL_DIMS.get(name)
    if pool_dims is not None and len(shapes[0]) == pool_dims:
        return (f"a {pool_dims}-d pool or norm of an input with only {pool_dims} dimensions per sample: torch "
                "would read the batch as the channels of one unbatched sample")
    if name.startswith("instancenorm") and len(shapes[0]) > 1 and math.prod(shapes[0][1:]) == 1:
        return ("instance norm over a single spatial element: every output is its bias in training, which torch "
                "refuses; only eval mode with running statistics runs it")
    if name == "adaptive_avgpool2d" and attrs.get("size", 1) in (1, [1, 1]) and len(shapes[0]) > 3:
        return ("global average pooling of an input with more than [channels, height, width]: torch's fast "
                "path for size 1 averages the last two dimensions of a tensor of any rank")
    if name in ("layernorm", "rmsnorm") and attrs.get("channels_first") and "shape" in attrs:
        return "`channels_first` with a `shape`: the channels are what it normalises, so `shape` is refused"
    if name == "slice" and 0 in (shape or ()):
        return "a slice that keeps nothing: torch returns an empty dimension, resgraph's sizes are at least 1"
    if name.startswith("conv_transpose") and 0 in (shape or ()):
        return ("a transposed convolution whose padding leaves an empty output: torch returns a tensor with a "
                "dimension of size 0, resgraph's shapes have sizes of at least 1")
    if name == "multihead_attention" and len(shapes[0]) == 1 and all(s == shapes[0] for s in shapes):
        return ("attention over an [embed] input: torch would read [batch, embed] as one unbatched sequence and "
                "attend across the samples of the batch")
    if name in ("lstm", "gru") and len(shapes[0]) == 1:
        return ("a recurrent layer over a [features] input: torch would read [batch, features] as one unbatched "
                "sequence and run across the samples of the batch")
    if name == "sdpa" and all(len(s) == 2 for s in shapes) and shapes[1][0] != shapes[2][0]:
        return ("keys and values of different lengths: torch's kernel does not check them and reads part of "
                "the values")
    if name in ("rope", "sdpa") and any(len(s) != 2 for s in shapes[:3]):   # sdpa's 4th input, a mask, is [Lk]
        return (f"`{name}` over inputs that are not [length, features]: torch would read another dimension "
                "as the positions (or broadcast the extra ones)")
    if name.startswith("pixel_") and len(shapes[0]) < 3:
        return ("pixel shuffling of an input with fewer than [channels, height, width] per sample: torch would "
                "read the batch as the channels of one unbatched image")
    if name == "pad" and 0 in (shape or ()):
        return "a pad whose negative widths crop a dimension to size 0: resgraph's shapes have sizes of at least 1"
    softmax = name in ("softmax", "log_softmax") or (name == "activation" and "softmax" in attrs.get("function", ""))
    if softmax and (not shapes[0] or attrs.get("dim", -1) in (0, -len(shapes[0]) - 1)):
        return "softmax over the batch dimension: a per-sample shape cannot describe it"
    if name == "flatten":
        full = len(shapes[0]) + 1
        if any(attrs.get(a, d) in (0, -full) for a, d in (("start_dim", 1), ("end_dim", -1))):
            return "flatten over the batch dimension: a per-sample shape cannot describe it"
    if name in BATCH_DIM_OPS and _touches_batch(name, attrs, len(shapes[0])):
        return "an op along the batch dimension (dim 0): shapes are per sample, so layout ops leave the batch alone"
    if swin_design_reason(name, attrs):
        return swin_design_reason(name, attrs)
    if name == "add":
        kinds = add_kinds(attrs, shapes)
        if broadcast:
            return "add never broadcasts: every shortcut must bring its input to exactly the branch's shape"
        if sum(k != "identity" for k in kinds) > 1:
            return "only one shortcut of an add may be projected or padded (each would be named `shortcut_name`)"
        if any(k == "pad" and s[0] > shapes[0][0] for k, s in zip(kinds, shapes[1:])):
            return "a `pad` shortcut only adds channels (F.pad with a negative width would crop them)"
        if any(k == "pad" and len(s) > 4 for k, s in zip(kinds, shapes[1:])):
            return "shortcuts are defined for [C], [C, L], [C, H, W] and [C, D, H, W] inputs"
    return None


# Layout ops whose dimension attributes may name the batch (0, or -rank-1): refused, though torch may run them.
BATCH_DIM_OPS = {"transpose": ("dim0", "dim1"), "unflatten": ("dim",), "select": ("dim",), "slice": ("dim",),
                 "index": ("dim",),
                 "chunk": ("dim",), "split": ("dim",), "roll": ("dims",)}


def _touches_batch(name: str, attrs: dict[str, Any], rank: int) -> bool:
    dims = []
    for attr in BATCH_DIM_OPS[name]:
        value = attrs.get(attr, 1)
        dims += value if isinstance(value, list) else [value]
    return any(d in (0, -rank - 1) for d in dims)


# ---- the check --------------------------------------------------------------------------------

def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check(name: str, attrs: dict[str, Any], shapes: list[list[int]]) -> str:
    """Run one configuration; returns "accepted", "rejected" or "restricted" (a `design_reason`)."""
    network, message = shape_rule(name, attrs, shapes)
    if network is None and REGISTRY[name].max_inputs == 0:
        return "rejected"   # a parameter or buffer refused for its attributes: no input torch could take instead
    if network is None:
        if name == "add":
            shape, broadcast = add_counterfactual(attrs, shapes)
        else:
            shape, broadcast = eager_lowering(name, attrs, shapes), False
        if shape is None:
            return "rejected"
        reason = design_reason(name, attrs, shapes, broadcast, shape)
        assert reason is not None, (f"the shape rule rejects a configuration torch runs (per-sample output "
                                    f"{list(shape)}): {message}")
        return "restricted"

    node = network.graph.nodes[NODE]
    module = resgraph.compile(network).eval()
    if REGISTRY[name].max_inputs == 0:   # a parameter or buffer: no batch, or a batch of 1
        with torch.no_grad():
            out = module()
        assert tuple(out.shape) == node.op.stored_shape(node.shape), \
            f"shape rule says {list(node.shape)}, torch gives {list(out.shape)}"
        assert node.meta["params"] == n_params(module) == network.params
        return "accepted"
    for batch in BATCHES:
        if REGISTRY[name].multiple_outputs:
            with torch.no_grad():
                outs = module(*inputs_for(shapes, batch))
            assert [tuple(o.shape) for o in outs] == [(batch, *s) for s in node.meta["outputs"]], \
                f"shape rule says {node.meta['outputs']}, torch gives {[list(o.shape) for o in outs]}"
            continue
        with torch.no_grad():
            out = module(*inputs_for(shapes, batch, name, attrs))
        assert tuple(out.shape) == (batch, *node.shape), \
            f"shape rule says {list(node.shape)}, torch gives {list(out.shape)} at batch {batch}"
    assert node.meta["params"] == n_params(module) == network.params, \
        f"count_params gives {node.meta['params']}, torch creates {n_params(module)}"
    if name == "add":
        check_shortcuts(attrs, shapes, node, module)
    return "accepted"


def check_shortcuts(attrs: dict[str, Any], shapes: list[list[int]], node: Any, module: torch.nn.Module) -> None:
    """The output is the branch's shape, the shortcut module maps its skip input to exactly that
    shape, and a projection's parameters (1x1 conv without bias + batch norm) are counted."""
    branch = shapes[0]
    assert list(node.shape) == branch
    expected_params = 0
    for plan, skip in zip(node.meta["shortcuts"], shapes[1:]):
        if plan.kind.value == "identity":
            assert skip == branch
            continue
        shortcut = module.get_submodule(attrs.get("shortcut_name", "downsample"))
        x = inputs_for([skip], 2)[0]
        with torch.no_grad():
            assert tuple(shortcut(x).shape) == (2, *branch)
        if plan.kind.value == "project":  # a linear layer for [C] inputs, 1x1 conv + BN otherwise
            c_in, c_out = skip[0], branch[0]
            expected = c_in * c_out + (2 * c_out if len(skip) > 1 else 0)
        else:
            expected = 0
        assert n_params(shortcut) == expected
        expected_params += expected
    assert node.meta["params"] == expected_params


# ---- strategies -------------------------------------------------------------------------------

def mostly(usual: Any, *others: Any, times: int = 3) -> st.SearchStrategy:
    """`usual` about `times` times as often as all of `others` together."""
    return st.sampled_from([usual] * times * max(1, len(others)) + list(others))


def weighted(*pairs: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Draw from one of the strategies, chosen with the given integer weights."""
    return st.sampled_from([s for weight, s in pairs for _ in range(weight)]).flatmap(lambda s: s)


def ints(low: int, high: int, n: int) -> st.SearchStrategy:
    """An int-or-list attribute for an op over `n` spatial dimensions: an integer, a list of `n`,
    or now and then a list of the wrong length."""
    one = st.integers(low, high)
    wrong = st.sampled_from([k for k in (1, 2, 3) if k != n]).flatmap(
        lambda k: st.lists(one, min_size=k, max_size=k))
    return weighted((4, one), (3, st.lists(one, min_size=n, max_size=n)), (1, wrong))


@st.composite
def with_optional(draw, attrs: dict[str, Any], optional: dict[str, st.SearchStrategy]) -> dict[str, Any]:
    """`attrs` plus a random subset of `optional`, so defaults get exercised too."""
    attrs = dict(attrs)
    for key, strategy in optional.items():
        if draw(st.booleans()):
            attrs[key] = draw(strategy)
    return attrs


def any_shape(max_rank: int = 4, max_dim: int = 8, min_rank: int = 0) -> st.SearchStrategy:
    return st.integers(min_rank, max_rank).flatmap(
        lambda r: st.lists(st.integers(1, max_dim), min_size=r, max_size=r))


@st.composite
def layout(draw, channels: int, spatial: int, max_size: int = 40) -> list[int]:
    """[channels, *sizes] with `spatial` sizes; sometimes the wrong number of dimensions.
    A third of the sizes are tiny, where windows and padding meet the input's edges."""
    n = draw(mostly(spatial, *sorted({0, 1, 2, 3, 4} - {spatial}), times=4))
    size = weighted((2, st.integers(1, max_size)), (1, st.integers(1, 4)))
    return [channels] + [draw(size) for _ in range(n)]


@st.composite
def conv_case(draw, n: int, max_size: int = 40) -> Case:
    groups = draw(mostly(1, 2, 3, 4, times=1))
    divisible = st.integers(1, 4).map(lambda k: k * groups)
    cin = draw(weighted((3, divisible), (1, st.integers(1, 16))))
    out = draw(weighted((3, divisible), (1, st.integers(1, 16))))
    padding = weighted((5, ints(0, 4, n)), (2, st.just("same")), (1, st.just("valid")))
    if draw(st.integers(0, 3)) == 0:
        # Padding modes other than zeros pad the input before convolving, and each limits the padding
        # by the input's size (reflect: padding < size, circular: padding <= size). Stride-1
        # convolutions whose input sizes sit at those limits, padding mostly `same` (which pads one
        # more on the right than on the left when the kernel's extent is odd).
        kernel = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
        dilation = draw(st.lists(st.integers(1, 2), min_size=n, max_size=n))
        if draw(st.integers(0, 2)):
            padding: Any = "same"
            left = [d * (k - 1) // 2 for k, d in zip(kernel, dilation)]
            right = [d * (k - 1) - p for k, d, p in zip(kernel, dilation, left)]
        else:
            padding = left = right = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
        sizes = [max(1, draw(st.sampled_from([lo, lo + 1, hi, hi + 1]))) for lo, hi in zip(left, right)]
        attrs = {"out": out, "kernel": kernel, "padding": padding, "dilation": dilation, "groups": groups,
                 "padding_mode": draw(st.sampled_from(["reflect", "replicate", "circular"]))}
        return attrs, [[cin, *sizes]]
    attrs = draw(with_optional({"out": out, "kernel": draw(ints(1, 7, n))}, {
        "stride": weighted((1, st.just(1)), (1, ints(1, 4, n))),
        "padding": padding,
        "dilation": ints(1, 3, n),
        "groups": st.just(groups),
        "bias": st.booleans(),
        "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    }))
    return attrs, [draw(layout(cin, n, max_size=max_size))]


@st.composite
def batchnorm_case(draw, ranks: tuple[int, ...]) -> Case:
    attrs = draw(with_optional({}, {
        # eps 0 is refused by every norm: see test_norm_eps_zero_is_refused
        "eps": st.floats(1e-6, 1e-2), "momentum": st.floats(0, 1), "affine": st.booleans(),
        "track_running_stats": st.booleans()}))
    rank = draw(st.sampled_from(list(ranks) * 4 + [0, 1, 2, 3, 4]))
    return attrs, [[draw(st.integers(1, 12)) for _ in range(rank)]]


@st.composite
def layernorm_case(draw) -> Case:
    shape = draw(any_shape(max_rank=3, max_dim=8))
    suffix = st.integers(1, 3).map(lambda k: shape[-k:] if shape else [k])
    attrs = draw(with_optional({}, {
        "shape": st.one_of(st.just(shape[-1] if shape else 1), suffix, suffix, st.integers(1, 8),
                           st.lists(st.integers(1, 8), min_size=1, max_size=3)),
        "eps": st.floats(1e-6, 1e-2), "elementwise_affine": st.booleans(), "bias": st.booleans()}))
    return attrs, [shape]


@st.composite
def groupnorm_case(draw) -> Case:
    groups = draw(st.integers(1, 6))
    channels = draw(st.one_of(st.integers(1, 3).map(lambda k: k * groups), st.integers(1, 16)))
    attrs = draw(with_optional({"groups": groups}, {"eps": st.floats(1e-6, 1e-2), "affine": st.booleans()}))
    rank = draw(st.integers(0, 3))
    shape = [channels] + [draw(st.integers(1, 8)) for _ in range(rank - 1)] if rank else []
    return attrs, [shape]


def elementwise_case(optional: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy:
    return st.tuples(with_optional({}, optional or {}), any_shape().map(lambda shape: [shape]))


@st.composite
def pool_case(draw, dilation: bool = False, count_include_pad: bool = False, n: int = 2, max_size: int = 40) -> Case:
    kernel = draw(ints(1, 5, n))
    half = min(kernel) // 2 if isinstance(kernel, list) else kernel // 2  # the most padding torch allows
    optional = {"stride": ints(1, 4, n), "padding": weighted((2, st.integers(0, half)), (1, ints(0, 3, n))),
                "ceil_mode": st.booleans()}
    if dilation:
        optional["dilation"] = ints(1, 3, n)
    if count_include_pad:
        optional["count_include_pad"] = st.booleans()
    attrs = draw(with_optional({"kernel": kernel}, optional))
    return attrs, [draw(layout(draw(st.integers(1, 8)), n, max_size=max_size))]


@st.composite
def adaptive_case(draw, n: int = 2) -> Case:
    attrs = draw(with_optional({}, {"size": ints(1, 8, n)}))
    return attrs, [draw(layout(draw(st.integers(1, 8)), n, max_size=16 if n < 3 else 9))]


@st.composite
def flatten_case(draw) -> Case:
    attrs = draw(with_optional({}, {"start_dim": st.integers(-5, 4), "end_dim": st.integers(-5, 4)}))
    return attrs, [draw(any_shape(max_dim=6))]


@st.composite
def linear_case(draw) -> Case:
    attrs = draw(with_optional({"out": draw(st.integers(1, 16))}, {"bias": st.booleans()}))
    return attrs, [draw(any_shape(max_rank=3, max_dim=12))]


@st.composite
def add_case(draw) -> Case:
    attrs = draw(with_optional({}, {"shortcut_name": st.sampled_from(["downsample", "proj"])}))
    policy = draw(st.sampled_from([None, "identity", "pad", "pad", "project", "project", "auto", "auto"]))
    if policy is not None:
        attrs["shortcut"] = policy
    branch = draw(any_shape(max_rank=4, max_dim=12, min_rank=1))
    channels = weighted((2, st.integers(1, branch[0])), (2, st.integers(1, 16)))  # fewer channels suit `pad`

    @st.composite
    def skip(draw) -> list[int]:
        how = draw(st.sampled_from(["same", "channels", "stride", "stride", "random"]))
        if how == "same":
            return list(branch)
        if how == "channels":
            return [draw(channels)] + branch[1:]
        if how == "stride":  # a skip input the branch subsampled by a whole stride (output = ceil(input / k))
            sizes = []
            for t in branch[1:]:
                k = draw(st.integers(1, 4))
                sizes.append(draw(st.integers(max(1, (t - 1) * k + 1), t * k)))
            return [draw(channels)] + sizes
        return draw(any_shape(max_rank=4, max_dim=24, min_rank=1))

    others = [draw(skip()) for _ in range(draw(mostly(1, 2, times=2)))]
    return attrs, [branch, *others]


@st.composite
def concat_case(draw) -> Case:
    attrs = draw(with_optional({}, {"dim": mostly(1, -4, -3, -2, -1, 0, 2, 3)}))
    first = draw(any_shape(max_rank=3, max_dim=8))
    others = []
    for _ in range(draw(st.integers(1, 2))):
        other = list(first)
        dim = attrs.get("dim", 1)
        if -len(first) - 1 <= dim <= len(first) and dim % (len(first) + 1) != 0:
            other[dim % (len(first) + 1) - 1] = draw(st.integers(1, 8))
        if draw(st.integers(0, 5)) == 0:  # now and then, inputs that disagree elsewhere
            other = draw(any_shape(max_rank=3, max_dim=8))
        others.append(other)
    return attrs, [first, *others]


@st.composite
def mul_case(draw) -> Case:
    base = draw(any_shape(max_rank=3, max_dim=6))
    shapes = [base]
    for _ in range(draw(st.integers(1, 2))):
        other = [d if draw(st.booleans()) else 1 for d in base]  # a gate, e.g. [C, 1, 1]
        kind = draw(st.integers(0, 7))
        if kind == 0:
            other = other[draw(st.integers(0, len(other))):]  # lower rank: numpy would broadcast it
        elif kind == 1:
            other = [1] + other
        elif kind == 2:
            other = draw(any_shape(max_rank=3, max_dim=6))
        shapes.insert(draw(st.integers(0, len(shapes))), other)
    return {}, shapes


@st.composite
def attention_case(draw) -> Case:
    heads = draw(st.integers(1, 4))
    embed = draw(weighted((4, st.integers(1, 4).map(lambda k: k * heads)), (1, st.integers(1, 12))))
    length = draw(st.integers(1, 6))
    shape = draw(weighted((6, st.just([length, embed])), (1, st.just([embed])), (1, st.just([])),
                          (1, st.just([2, length, embed]))))
    attrs = draw(with_optional({"heads": heads}, {"dropout": st.floats(0, 1), "bias": st.booleans(),
                                                  "causal": st.booleans()}))
    # self-attention [x], cross-attention [query, memory], or [query, key, value]
    count = draw(mostly(1, 2, 3, times=1))
    memory = [draw(st.integers(1, 6)), draw(mostly(embed, 1, 5, 7, times=1))]
    others = [memory] if count == 2 else [memory, [draw(mostly(memory[0], 1, 4)), draw(st.integers(1, 8))]] \
        if count == 3 else []
    if others and draw(st.integers(0, 5)) == 0:   # now and then, a key or value that is not a sequence
        others[-1] = draw(any_shape(max_rank=3, max_dim=6))
    return attrs, [shape, *others]


@st.composite
def conv_transpose_case(draw, n: int = 2, max_size: int = 12) -> Case:
    groups = draw(mostly(1, 2, 3, 4, times=1))
    divisible = st.integers(1, 4).map(lambda k: k * groups)
    cin = draw(weighted((3, divisible), (1, st.integers(1, 16))))
    out = draw(weighted((3, divisible), (1, st.integers(1, 16))))
    attrs = draw(with_optional({"out": out, "kernel": draw(ints(1, 5, n))}, {
        "stride": weighted((1, st.just(1)), (2, ints(1, 4, n))),
        "padding": ints(0, 3, n),
        "output_padding": weighted((1, st.just(0)), (2, ints(0, 3, n))),
        "dilation": ints(1, 3, n),
        "groups": st.just(groups),
        "bias": st.booleans(),
    }))
    return attrs, [draw(layout(cin, n, max_size=max_size))]


@st.composite
def upsample_case(draw) -> Case:
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    shape = draw(layout(draw(st.integers(1, 4)), draw(mostly(2, 1, 3)), max_size=10))
    n = min(3, max(1, len(shape) - 1))
    scale = weighted((2, st.sampled_from([0.5, 1, 1.5, 2, 3, 0.25])), (1, st.floats(0.1, 4)))
    how = draw(st.sampled_from(["scale"] * 4 + ["size"] * 4 + ["ref"] * 3 + ["both", "neither"]))
    attrs: dict[str, Any] = {"mode": mode} if mode != "nearest" or draw(st.booleans()) else {}
    if how in ("scale", "both"):
        attrs["scale"] = draw(scale)
    if how in ("size", "both"):
        attrs["size"] = draw(ints(1, 12, n))
    # a second input gives the size (`F.interpolate(x, size=ref.shape[2:])`); sometimes of another rank
    shapes = [shape, draw(layout(draw(st.integers(1, 4)), n, max_size=10))] if how == "ref" else [shape]
    return draw(with_optional(attrs, {"align_corners": st.booleans()})), shapes


# ---- sequences: embedding, lstm, gru, sdpa, rope (multihead_attention is above) ------------------

def sequence_shape(features: st.SearchStrategy) -> st.SearchStrategy:
    """[length, features] mostly; now and then another rank."""
    return weighted((5, st.tuples(st.integers(1, 7), features).map(list)),
                    (1, any_shape(max_rank=3, max_dim=6)), (1, any_shape(max_rank=3, max_dim=6, min_rank=3)))


@st.composite
def embedding_case(draw) -> Case:
    num = draw(st.integers(1, 20))
    attrs = draw(with_optional({"num": num, "dim": draw(st.integers(1, 8))},
                               {"padding_idx": weighted((2, st.integers(-num, num - 1)),
                                                               (1, st.integers(num, num + 3)),
                                                               (1, st.integers(-num - 3, -num - 1)))}))
    return attrs, [draw(any_shape(max_rank=3, max_dim=6))]


@st.composite
def recurrent_case(draw) -> Case:
    layers = draw(mostly(1, 2, 3))
    attrs = draw(with_optional({"hidden": draw(st.integers(1, 8))},
                               {"bidirectional": st.booleans(), "bias": st.booleans()}))
    if layers > 1:  # torch warns about dropout with one layer, where it does nothing
        attrs["layers"] = layers
        attrs["dropout"] = draw(mostly(0.0, 0.5, 0.25))
    return attrs, [draw(sequence_shape(st.integers(1, 9)))]


@st.composite
def sdpa_case(draw) -> Case:
    kv_heads = draw(st.integers(1, 3))
    heads = draw(weighted((4, st.integers(1, 3).map(lambda k: k * kv_heads)), (1, st.integers(1, 6))))
    head = draw(st.integers(1, 4))
    lq, lk = draw(st.integers(1, 6)), draw(mostly(None, 1, 3, 5, times=1))
    lk = lq if lk is None else lk
    features = weighted((5, st.just(None)), (1, st.integers(1, 12)))   # None: the sizes that fit
    q = [lq, draw(features) or heads * head]
    k = [lk, draw(features) or kv_heads * head]
    v = [draw(mostly(lk, 1, 2)), draw(features) or kv_heads * draw(st.integers(1, 4))]
    shapes = [q, k, v]
    if draw(st.integers(0, 6)) == 0:
        shapes[draw(st.integers(0, 2))] = draw(any_shape(max_rank=3, max_dim=6))
    optional = {"causal": st.booleans(), "dropout": st.floats(0, 1), "scale": st.floats(0.01, 4)}
    if kv_heads != heads or draw(st.booleans()):
        optional["kv_heads"] = st.just(kv_heads)
    attrs = draw(with_optional({"heads": heads}, optional))
    return attrs, shapes


@st.composite
def rope_case(draw) -> Case:
    heads = draw(st.integers(1, 4))
    features = weighted((4, st.integers(1, 4).map(lambda k: 2 * k * heads)), (1, st.integers(1, 12)))
    attrs = draw(with_optional({}, {"heads": st.just(heads), "base": st.floats(2, 1e5),
                                    "interleaved": st.booleans()}))
    return attrs, [draw(sequence_shape(features))]


SEQUENCE_STRATEGIES = {"embedding": embedding_case(), "lstm": recurrent_case(), "gru": recurrent_case(),
                       "sdpa": sdpa_case(), "rope": rope_case()}


# ---- strategies of issue 10's spatial ops, activations, reductions and arithmetic (engineer "spatial") ----

@st.composite
def instancenorm_case(draw, n: int) -> Case:
    attrs = draw(with_optional({}, {"eps": st.floats(1e-6, 1e-2), "momentum": st.floats(0, 1),
                                    "affine": st.booleans(), "track_running_stats": st.booleans()}))
    return attrs, [draw(layout(draw(st.integers(1, 8)), n, max_size=6 if n == 3 else 12))]


@st.composite
def pad_case(draw) -> Case:
    mode = draw(st.sampled_from(["constant", "constant", "reflect", "replicate", "circular"]))
    shape = draw(any_shape(max_rank=4, max_dim=5))
    pairs = draw(weighted((4, st.integers(1, 3)), (1, st.integers(1, 5))))
    widths = draw(st.lists(weighted((4, st.integers(0, 4)), (1, st.integers(-3, -1))),
                           min_size=2 * pairs, max_size=2 * pairs))
    if draw(st.integers(0, 9)) == 0:
        widths = widths[:-1]  # an odd number of widths
    attrs: dict[str, Any] = {"widths": widths}
    if mode != "constant" or draw(st.booleans()):
        attrs["mode"] = mode
    if draw(st.integers(0, 4)) == 0:
        attrs["value"] = draw(st.sampled_from([0.0, 1.5, -2.0]))
    return attrs, [shape]


@st.composite
def pixel_shuffle_case(draw, unshuffle: bool) -> Case:
    factor = draw(st.integers(1, 3))
    rank = draw(mostly(3, 2, 4))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    if rank >= 3 and draw(st.integers(0, 3)):  # mostly sizes that fit the factor
        if unshuffle:
            shape[-2] *= factor
            shape[-1] *= factor
        else:
            shape[-3] *= factor * factor
    return {"factor": factor}, [shape]


@st.composite
def prelu_case(draw) -> Case:
    shape = draw(any_shape(max_rank=3, max_dim=6))
    channels = weighted((2, st.just(shape[0] if shape else 1)), (1, st.integers(1, 6)))
    attrs = draw(with_optional({}, {"num_parameters": channels, "init": st.floats(-1, 1)}))
    return attrs, [shape]


def softmax_case() -> st.SearchStrategy:
    return elementwise_case({"dim": st.integers(-4, 4)})


@st.composite
def reduce_case(draw) -> Case:
    shape = draw(any_shape(max_rank=4, max_dim=6))
    dims = st.integers(-5, 4)
    attrs = draw(with_optional({"dims": draw(weighted((1, dims), (3, st.lists(dims, min_size=1, max_size=3))))},
                               {"keepdim": st.booleans()}))
    return attrs, [shape]


@st.composite
def sub_case(draw) -> Case:
    attrs, shapes = draw(mul_case())
    return attrs, shapes[:2]


def scalar_case(attr: str) -> st.SearchStrategy:
    value = st.floats(-4, 4, allow_nan=False)
    return st.tuples(st.fixed_dictionaries({attr: value}), any_shape().map(lambda shape: [shape]))


@st.composite
def matmul_case(draw) -> Case:
    n, k, m = (draw(st.integers(1, 5)) for _ in range(3))
    lead = draw(any_shape(max_rank=2, max_dim=3))
    a = lead + [n, k]
    b = [d if draw(st.booleans()) else 1 for d in lead] + [k, m]
    kind = draw(st.integers(0, 5))
    if kind == 0:
        b[-2] = draw(st.integers(1, 5))     # inner dimensions that may differ
    elif kind == 1:
        b = b[draw(st.integers(1, len(b))):]  # a lower rank: torch would align the batch with a sample dimension
    elif kind == 2:
        a, b = draw(any_shape(max_rank=3, max_dim=4)), draw(any_shape(max_rank=3, max_dim=4))
    return {}, [a, b]


SPATIAL_STRATEGIES: dict[str, st.SearchStrategy[Case]] = {
    "conv3d": conv_case(3, max_size=7),
    "conv_transpose1d": conv_transpose_case(1),
    "conv_transpose3d": conv_transpose_case(3, max_size=4),
    "maxpool1d": pool_case(dilation=True, n=1),
    "maxpool3d": pool_case(dilation=True, n=3, max_size=9),
    "avgpool1d": pool_case(count_include_pad=True, n=1),
    "avgpool3d": pool_case(count_include_pad=True, n=3, max_size=9),
    "adaptive_avgpool1d": adaptive_case(1),
    "adaptive_avgpool3d": adaptive_case(3),
    "adaptive_maxpool1d": adaptive_case(1),
    "adaptive_maxpool2d": adaptive_case(2),
    "adaptive_maxpool3d": adaptive_case(3),
    "batchnorm3d": batchnorm_case((4,)),
    "instancenorm1d": instancenorm_case(1),
    "instancenorm2d": instancenorm_case(2),
    "instancenorm3d": instancenorm_case(3),
    "pad": pad_case(),
    "pixel_shuffle": pixel_shuffle_case(unshuffle=False),
    "pixel_unshuffle": pixel_shuffle_case(unshuffle=True),
    "hardswish": elementwise_case(),
    "hardsigmoid": elementwise_case(),
    "mish": elementwise_case(),
    "leaky_relu": elementwise_case({"negative_slope": st.floats(-1, 1)}),
    "elu": elementwise_case({"alpha": st.floats(0, 2)}),
    "softplus": elementwise_case({"beta": st.floats(0.1, 4), "threshold": st.floats(1, 30)}),
    "prelu": prelu_case(),
    "softmax": softmax_case(),
    "log_softmax": softmax_case(),
    "mean": reduce_case(),
    "sum": reduce_case(),
    "amax": reduce_case(),
    "sub": sub_case(),
    "scale": scalar_case("factor"),
    "shift": scalar_case("value"),
    "matmul": matmul_case(),
    # `activation` names every activation op; softmax over a low-rank input is what its shape rule rejects
    "activation": weighted((3, elementwise_case({"function": st.sampled_from(FUNCTIONS)})),
                           (1, st.tuples(st.fixed_dictionaries({"function": st.sampled_from(["softmax", "log_softmax"])}),
                                         any_shape(max_rank=2).map(lambda shape: [shape])))),
}
# (`activation` rejects only softmax over the batch dimension, a deliberate restriction where torch would run.)
SPATIAL_TOTAL = {"hardswish", "hardsigmoid", "mish", "leaky_relu", "elu", "softplus", "scale", "shift", "activation"}
SPATIAL_EXAMPLES = {"conv3d": 30, "conv_transpose1d": 40, "conv_transpose3d": 30, "maxpool1d": 40,
                    "maxpool3d": 30, "avgpool1d": 40, "avgpool3d": 30, "pad": 100, "mean": 40, "matmul": 40,
                    "sub": 40}
# ---- end of engineer "spatial"'s strategies ----------------------------------------------------------------


STRATEGIES: dict[str, st.SearchStrategy[Case]] = {
    "conv1d": conv_case(1),
    "conv2d": conv_case(2),
    "batchnorm1d": batchnorm_case((1, 2)),
    "batchnorm2d": batchnorm_case((3,)),
    "layernorm": layernorm_case(),
    "groupnorm": groupnorm_case(),
    "relu": elementwise_case(),
    "relu6": elementwise_case(),
    "gelu": elementwise_case({"approximate": st.sampled_from(["none", "tanh"])}),
    "silu": elementwise_case(),
    "sigmoid": elementwise_case(),
    "tanh": elementwise_case(),
    "maxpool2d": pool_case(dilation=True),
    "avgpool2d": pool_case(count_include_pad=True),
    "adaptive_avgpool2d": adaptive_case(),
    "flatten": flatten_case(),
    "linear": linear_case(),
    "dropout": elementwise_case({"p": st.floats(0, 1)}),
    "drop_path": elementwise_case({"p": st.floats(0, 1)}),
    "identity": elementwise_case(),
    "add": add_case(),
    "concat": concat_case(),
    "mul": mul_case(),
    "multihead_attention": attention_case(),
    "conv_transpose2d": conv_transpose_case(),
    "upsample": upsample_case(),
    "activation": elementwise_case({"function": st.sampled_from(FUNCTIONS)}),
    **SEQUENCE_STRATEGIES,
    **SPATIAL_STRATEGIES,
}

# Ops whose shape rule never rejects anything.
TOTAL = {"relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "dropout", "drop_path", "identity"} | SPATIAL_TOTAL
# More examples where there are more attributes to combine.
EXAMPLES = {"conv1d": 200, "conv2d": 400, "maxpool2d": 300, "avgpool2d": 300, "add": 300, "concat": 120,
            "mul": 120, "layernorm": 120, "flatten": 100, "groupnorm": 80, "linear": 60,
            "batchnorm1d": 60, "batchnorm2d": 60, "adaptive_avgpool2d": 60, "conv_transpose2d": 150,
            "upsample": 150, "multihead_attention": 60, "embedding": 25, "lstm": 12, "gru": 12, "sdpa": 40,
            "rope": 40, **SPATIAL_EXAMPLES}


# ---- tensor layout, parameter and buffer, layernorm over channels, rmsnorm (issue 10, "layout") ----------
# Dimensions are drawn from the whole torch range, batch (0) and out-of-range values included, so that the
# rules' refusals are exercised as well as their results.

def dim_of(rank: int) -> st.SearchStrategy:
    return weighted((3, st.integers(-rank, rank).filter(lambda d: d != 0) if rank else st.just(1)),
                    (1, st.integers(-rank - 2, rank + 1)))


@st.composite
def reshape_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=6))
    total = prod_of(shape)
    if draw(st.integers(0, 3)):   # a factorisation of the elements, perhaps with one -1
        sizes, left = [], total
        for _ in range(draw(st.integers(0, 3))):
            factor = draw(st.sampled_from([d for d in range(1, left + 1) if left % d == 0]))
            sizes.append(factor)
            left //= factor
        sizes.append(left)
        if draw(st.booleans()):
            sizes[draw(st.integers(0, len(sizes) - 1))] = -1
    else:
        sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=4))
    return {"shape": sizes}, [shape]


def prod_of(values: list[int]) -> int:
    total = 1
    for v in values:
        total *= v
    return total


@st.composite
def permute_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_rank=4, max_dim=6))
    dims = [0] + draw(st.permutations(list(range(1, len(shape) + 1))))
    how = draw(st.integers(0, 7))
    if how == 0:
        dims = draw(st.permutations(dims))         # the batch may move
    elif how == 1:
        dims = dims[:-1] if len(dims) > 2 else dims + [1]
    elif how == 2:
        dims = [d - len(dims) if d and draw(st.booleans()) else d for d in dims]   # negative dims
    return {"dims": dims}, [shape]


@st.composite
def transpose_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=6))
    return {"dim0": draw(dim_of(len(shape))), "dim1": draw(dim_of(len(shape)))}, [shape]


@st.composite
def unflatten_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_rank=3, max_dim=8))
    dim = draw(dim_of(len(shape)))
    size = shape[dim - 1 if dim > 0 else dim] if -len(shape) <= dim <= len(shape) and dim else 6
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    first = draw(st.sampled_from(divisors))
    sizes = draw(st.sampled_from([[first, size // first], [first, -1], [-1, size // first], [first],
                                  [first, first + 1]]))
    return {"dim": dim, "sizes": sizes}, [shape]


@st.composite
def select_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=6))
    attrs = draw(with_optional({"index": draw(st.integers(-7, 7))}, {"dim": dim_of(len(shape))}))
    return attrs, [shape]


@st.composite
def index_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=6))
    indices = draw(st.lists(st.integers(-7, 7), min_size=1, max_size=5))
    return draw(with_optional({"indices": indices}, {"dim": dim_of(len(shape))})), [shape]


@st.composite
def slice_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=9))
    bound = st.integers(-11, 11)
    return draw(with_optional({}, {"dim": dim_of(len(shape)), "start": bound, "stop": bound,
                                   "step": st.integers(1, 4)})), [shape]


@st.composite
def chunk_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=9))
    return {"chunks": draw(st.integers(1, 5)), "dim": draw(dim_of(len(shape)))}, [shape]


@st.composite
def split_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=9))
    attrs = draw(with_optional({}, {"dim": dim_of(len(shape))}))
    dim = attrs.get("dim", 1)
    size = shape[dim - 1 if dim > 0 else dim] if -len(shape) <= dim <= len(shape) and dim else 5
    if draw(st.booleans()):
        attrs["sizes"] = draw(st.integers(1, 6))
    else:
        cuts = sorted(draw(st.lists(st.integers(1, max(1, size - 1)), max_size=3, unique=True)))
        parts = [b - a for a, b in zip([0] + cuts, cuts + [size]) if b > a]
        attrs["sizes"] = parts if draw(st.integers(0, 4)) else parts + [1]
    return attrs, [shape]


@st.composite
def roll_case(draw) -> Case:
    shape = draw(any_shape(min_rank=1, max_dim=6))
    count = draw(st.integers(1, 3))
    if draw(st.booleans()):
        return {"shifts": draw(st.integers(-9, 9)), "dims": draw(dim_of(len(shape)))}, [shape]
    return {"shifts": draw(st.lists(st.integers(-9, 9), min_size=count, max_size=count)),
            "dims": draw(st.lists(dim_of(len(shape)), min_size=draw(mostly(count, 1)), max_size=count))}, [shape]


@st.composite
def expand_case(draw) -> Case:
    base = draw(any_shape(min_rank=1, max_rank=3, max_dim=5))
    small = [d if draw(st.booleans()) else 1 for d in base]
    attrs: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        target = [-1 if draw(st.integers(0, 3)) == 0 else d for d in base]
        if draw(st.integers(0, 5)) == 0:
            target = target + [2]
        attrs["shape"] = target
    shapes = [small] + ([base] if draw(st.booleans()) else [])
    if draw(st.integers(0, 5)) == 0:
        shapes[0] = draw(any_shape(min_rank=1, max_rank=3, max_dim=5))
    return attrs, shapes


@st.composite
def channel_shuffle_case(draw) -> Case:
    groups = draw(st.integers(1, 4))
    channels = draw(weighted((3, st.integers(1, 4).map(lambda k: k * groups)), (1, st.integers(1, 9))))
    rank = draw(st.integers(0, 3))
    shape = [channels] + [draw(st.integers(1, 5)) for _ in range(rank)]
    return {"groups": groups}, [shape]


@st.composite
def trailing_norm_case(draw, op: str) -> Case:
    shape = draw(any_shape(max_rank=3, max_dim=8))
    suffix = st.integers(1, 3).map(lambda k: shape[-k:] if shape else [k])
    attrs = draw(with_optional({}, {
        "shape": st.one_of(st.just(shape[-1] if shape else 1), suffix, suffix, st.integers(1, 8),
                           st.lists(st.integers(1, 8), min_size=1, max_size=3)),
        "eps": st.floats(1e-6, 1e-2), "elementwise_affine": st.booleans(),
        **({"bias": st.booleans()} if op == "layernorm" else {})}))
    if draw(st.integers(0, 2)) == 0:   # over the channels of a map, as ConvNeXt's LayerNorm2d
        attrs["channels_first"] = True
        if draw(st.integers(0, 3)):
            attrs.pop("shape", None)
    return attrs, [shape]


def tensor_shape() -> st.SearchStrategy:
    return st.lists(st.integers(1, 6), min_size=1, max_size=4)


@st.composite
def parameter_case(draw) -> Case:
    init = draw(st.sampled_from(["zeros", "ones", "constant", "normal", "trunc_normal", "uniform"]))
    attrs = draw(with_optional({"shape": draw(tensor_shape()), "init": init}, {
        "batch": st.booleans(), "value": st.floats(-2, 2), "std": st.floats(0, 1), "mean": st.floats(-1, 1),
        "low": st.floats(-2, 2), "high": st.floats(-2, 2)}))
    return attrs, []


@st.composite
def buffer_case(draw) -> Case:
    generator = draw(st.sampled_from(["zeros", "ones", "sinusoidal", "relative_position_index"]))
    attrs: dict[str, Any] = {"generator": generator}
    if generator == "relative_position_index" or draw(st.integers(0, 6)) == 0:
        attrs["window"] = draw(weighted((4, st.lists(st.integers(1, 5), min_size=2, max_size=2)),
                                        (1, st.integers(1, 5)), (1, st.lists(st.integers(1, 5), min_size=3,
                                                                              max_size=3))))
    if generator != "relative_position_index" or draw(st.integers(0, 6)) == 0:
        attrs["shape"] = draw(weighted((3, st.tuples(st.integers(1, 9), st.integers(1, 6).map(lambda k: 2 * k))
                                        .map(list)), (1, tensor_shape())))
    return draw(with_optional(attrs, {"batch": st.booleans(), "persistent": st.booleans()})), []


STRATEGIES.update({
    "reshape": reshape_case(),
    "permute": permute_case(),
    "transpose": transpose_case(),
    "unflatten": unflatten_case(),
    "select": select_case(),
    "slice": slice_case(),
    "index": index_case(),
    "chunk": chunk_case(),
    "split": split_case(),
    "roll": roll_case(),
    "expand": expand_case(),
    "channel_shuffle": channel_shuffle_case(),
    "layernorm": trailing_norm_case("layernorm"),
    "rmsnorm": trailing_norm_case("rmsnorm"),
    "parameter": parameter_case(),
    "buffer": buffer_case(),
})
EXAMPLES.update({"reshape": 50, "permute": 40, "slice": 60, "split": 50, "chunk": 40, "expand": 50,
                 "unflatten": 40, "roll": 40, "layernorm": 120, "rmsnorm": 50})
# ---- end of the "layout" block ------------------------------------------------------------------------------


# ---- strategies of issue 11's MaxViT op (engineer "maxvit-video") ---------------------------------------------

@st.composite
def relative_position_attention_case(draw) -> Case:
    """Mostly valid windows ([groups, side², heads · head_dim]); sometimes a token count that is not a square, a
    width that `head_dim` does not divide, or another rank."""
    side, heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 3)), side * side, heads * head_dim]
    fault = draw(st.integers(0, 5))
    if fault == 1:
        shape[1] = draw(st.sampled_from([2, 3, 5, 8]))
    elif fault == 2:
        head_dim = shape[2] + 1
    elif fault == 3:
        shape = draw(weighted((1, st.just(shape[1:])), (1, st.just([*shape, 2]))))
    return {"head_dim": head_dim}, [shape]


STRATEGIES["relative_position_attention"] = relative_position_attention_case()
EXAMPLES["relative_position_attention"] = 15
# ---- end of engineer "maxvit-video"'s strategies -----------------------------------------------------------


# ---- issue 11's Hugging Face models (engineer "hf"): sdpa's key mask, position ids ---------------------------

@st.composite
def masked_sdpa_case(draw) -> Case:
    """sdpa with its fourth input, the key mask: mostly [Lk] of the key, now and then another shape."""
    attrs, shapes = draw(sdpa_case())
    keys = shapes[1][0] if len(shapes[1]) == 2 else 3
    mask = draw(weighted((4, st.just([keys])), (1, any_shape(max_rank=2, max_dim=6))))
    return attrs, shapes + [mask]


@st.composite
def positions_case(draw) -> Case:
    return {}, [draw(weighted((4, sequence_shape(st.integers(1, 9))), (1, st.just([]))))]


STRATEGIES.update({"sdpa": st.one_of(sdpa_case(), masked_sdpa_case()), "positions": positions_case()})
EXAMPLES.update({"sdpa": 60, "positions": 20})
# ---- end of the "hf" block ----------------------------------------------------------------------------------


# ---- Swin's shifted_window_attention and patch_merging (issue 11, engineer "swin") ---------------------------
# Channels-last maps [H, W, C] mostly, now and then another rank; windows that cover the map or not, shifts of
# 0, window // 2 or (a deliberate restriction) not smaller than the window. tests/test_swin.py compares both
# ops' outputs, counts and MACs with torchvision's modules.

@st.composite
def shifted_window_attention_case(draw) -> Case:
    heads = draw(st.integers(1, 3))
    channels = draw(weighted((6, st.integers(1, 3).map(lambda k: k * heads)), (1, st.integers(1, 7))))
    size = st.integers(1, 9)
    shape = draw(weighted((8, st.just([draw(size), draw(size), channels])), (1, any_shape(max_rank=4, max_dim=6))))
    window = draw(weighted((3, st.integers(1, 5)), (3, st.lists(st.integers(1, 5), min_size=2, max_size=2)),
                           (1, st.lists(st.integers(1, 4), min_size=3, max_size=3))))
    sizes = window if isinstance(window, list) else [window] * 2
    shift = draw(weighted((2, st.just(0)), (3, st.just([w // 2 for w in sizes[:2]])),
                          (1, st.lists(st.integers(0, 6), min_size=2, max_size=2))))
    attrs = {"heads": heads, "window": window, "shift": shift, "version": draw(st.sampled_from([1, 2]))}
    return draw(with_optional(attrs, {"qkv_bias": st.booleans(), "proj_bias": st.booleans(),
                                      "dropout": st.floats(0, 1), "attention_dropout": st.floats(0, 1)})), [shape]


@st.composite
def patch_merging_case(draw) -> Case:
    shape = draw(weighted((6, st.lists(st.integers(1, 7), min_size=3, max_size=3)),
                          (2, any_shape(max_rank=5, max_dim=5))))
    return draw(with_optional({}, {"version": st.sampled_from([1, 2]), "eps": st.floats(1e-6, 1e-3)})), [shape]


def swin_design_reason(name: str, attrs: dict[str, Any]) -> str | None:
    """The deliberate restrictions of shifted_window_attention (see `design_reason`)."""
    if name != "shifted_window_attention":
        return None
    window, shift = attrs["window"], attrs.get("shift", 0)
    window = window if isinstance(window, list) else [window] * 2
    shift = shift if isinstance(shift, list) else [shift] * 2
    if any(s >= w for s, w in zip(shift, window)):
        return ("a shift not smaller than the window: torch rolls the map, but the attention mask's regions "
                "(cut at -window and -shift) overlap and mean nothing")
    if attrs.get("version", 1) == 2 and 1 in window:
        return "a window of 1 in version 2: its relative coordinates are divided by 0 and the biases are NaN"
    return None


STRATEGIES.update({"shifted_window_attention": shifted_window_attention_case(),
                   "patch_merging": patch_merging_case()})
EXAMPLES.update({"shifted_window_attention": 20, "patch_merging": 12})
# ---- end of the "swin" block --------------------------------------------------------------------------------


def test_every_registered_op_has_a_strategy():
    assert set(STRATEGIES) == set(REGISTRY)


def test_builtin_modules_names_the_module_of_every_builtin_op():
    """The registry imports an op's module when a spec first uses the op (`BUILTIN_MODULES`); a new op
    missing from the table would still work, but make every lookup of it import every op module."""
    from resgraph.ops import BUILTIN_MODULES
    from resgraph.ops.base import is_builtin

    actual = {name: cls.__module__.rpartition(".")[2] for name, cls in REGISTRY.items() if is_builtin(cls)}
    missing = {name: module for name, module in actual.items() if BUILTIN_MODULES.get(name) != module}
    assert not missing, f"add to BUILTIN_MODULES in resgraph/ops/__init__.py: {missing}"
    assert set(BUILTIN_MODULES) == set(actual), f"not ops: {sorted(set(BUILTIN_MODULES) - set(actual))}"


def test_validation_imports_only_the_op_modules_a_spec_uses():
    """Issue 13 (start-up): `resgraph validate` of a ResNet imports the op modules of its ops, not the
    others (nor torch); the registry still lists every op when asked."""
    import subprocess
    import sys

    spec = Path(__file__).resolve().parent.parent / "specs" / "resnet152.yaml"
    code = ("import sys, resgraph\n"
            f"resgraph.validate({str(spec)!r})\n"
            "ops = sorted(m.rpartition('.')[2] for m in sys.modules if m.startswith('resgraph.ops.'))\n"
            "assert ops == ['activation', 'base', 'conv', 'dense', 'merge', 'norm', 'pool'], ops\n"
            "assert 'torch' not in sys.modules\n"
            "from resgraph.ops import REGISTRY, BUILTIN_MODULES\n"
            "assert set(REGISTRY) >= set(BUILTIN_MODULES) and 'lstm' in REGISTRY and 'resgraph.ops.sequence' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_matches_torch(name):
    outcomes: Counter[str] = Counter()

    @settings(derandomize=True, database=None, max_examples=EXAMPLES.get(name, 30), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(STRATEGIES[name])
    def run(case: Case) -> None:
        attrs, shapes = case
        outcomes[check(name, attrs, shapes)] += 1

    run()
    assert outcomes["accepted"], "the strategy never produced a configuration the shape rule accepts"
    if name not in TOTAL:
        assert outcomes["rejected"], "the strategy never produced a configuration both sides reject"


# One configuration per deliberate restriction, to show that each is real: the shape rule
# rejects it, torch would run it, and `design_reason` names it.
RESTRICTIONS = [
    ("conv2d", {"out": 4, "kernel": 3, "stride": [2]}, [[3, 9, 9]]),
    ("maxpool2d", {"kernel": [3]}, [[3, 9, 9]]),
    ("conv_transpose2d", {"out": 4, "kernel": 3, "stride": [2]}, [[3, 5, 5]]),
    # (not `conv_transpose2d` to an empty map, kernel 1 and padding 1 on 2x2: torch gives [4, 0, 0] with
    # several threads and raises "Output size is too small" with one, so "torch would run it" is not a fact)
    ("avgpool2d", {"kernel": 3, "padding": [1]}, [[3, 9, 9]]),
    ("maxpool2d", {"kernel": 2}, [[5, 8]]),
    ("adaptive_avgpool2d", {"size": 2}, [[5, 8]]),
    ("adaptive_avgpool2d", {"size": [1, 1]}, [[2, 3, 4, 5]]),
    ("flatten", {"start_dim": 0, "end_dim": 0}, [[4, 5]]),
    ("add", {}, [[4, 6, 6], [4, 1, 1]]),
    ("add", {"shortcut": "project"}, [[8, 3, 3], [4, 6, 6], [2, 5, 5]]),
    ("add", {"shortcut": "pad"}, [[4, 6, 6], [8, 6, 6]]),
    ("multihead_attention", {"heads": 2}, [[8]]),
    ("lstm", {"hidden": 4}, [[5]]),
    ("sdpa", {"heads": 1}, [[3, 4, 2], [3, 4, 2], [3, 4, 2]]),
    ("sdpa", {"heads": 1}, [[1, 4], [1, 4], [2, 4]]),


    # issue 10's ops
    ("conv3d", {"out": 4, "kernel": 3, "stride": [2]}, [[3, 5, 5, 5]]),
    ("maxpool1d", {"kernel": 2}, [[8]]),
    ("adaptive_maxpool3d", {"size": 2}, [[3, 4, 4]]),
    ("instancenorm2d", {"track_running_stats": True}, [[4, 1, 1]]),
    ("pixel_shuffle", {"factor": 1}, [[4, 4]]),
    ("pad", {"widths": [-2, 0]}, [[4, 2]]),
    ("softmax", {"dim": 0}, [[5]]),
    ("activation", {"function": "log_softmax"}, [[]]),
    # issue 11's Swin
    ("shifted_window_attention", {"heads": 1, "window": 4, "shift": 4}, [[8, 8, 4]]),
    ("shifted_window_attention", {"heads": 1, "window": [1, 4], "version": 2}, [[8, 8, 4]]),
]


def case_ids(cases: list) -> list[str]:
    return [f"{name}-{i}" for i, (name, _, _) in enumerate(cases)]


@pytest.mark.parametrize("name,attrs,shapes", RESTRICTIONS, ids=case_ids(RESTRICTIONS))
def test_design_restriction_is_real(name, attrs, shapes):
    network, _ = shape_rule(name, attrs, shapes)
    assert network is None
    if name == "add":
        shape, broadcast = add_counterfactual(attrs, shapes)
    else:
        shape, broadcast = eager_lowering(name, attrs, shapes), False
    assert shape is not None
    assert design_reason(name, attrs, shapes, broadcast, shape)


# Configurations that once got past a shape rule (or crashed it), kept as fixed regressions.
REGRESSIONS = [
    # padding: same with an even kernel pads one more on the right, and reflect needs padding < size
    ("conv2d", {"out": 4, "kernel": 4, "padding": "same", "padding_mode": "reflect"}, [[3, 2, 2]]),
    ("conv1d", {"out": 4, "kernel": 2, "padding": "same", "dilation": 3, "padding_mode": "circular"}, [[3, 1]]),
    # a per-sample scalar: no dimension to normalise over / no channels to group
    ("layernorm", {}, [[]]),
    ("groupnorm", {"groups": 1}, [[]]),
    # per-sample ranks differ: with the batch in front, torch aligns the batch with a sample dimension
    ("mul", {}, [[3, 4, 5], [5]]),
    ("mul", {}, [[1, 5], [5]]),
    # torch's avg_pool3d wants the unpadded input to cover the kernel (max_pool3d does not)
    ("avgpool3d", {"kernel": [3, 5, 5], "ceil_mode": True, "count_include_pad": False}, [[7, 8, 2, 1]]),
    # a constant pad crops before it pads: a crop larger than the dimension fails even if the widths sum to > 0
    ("pad", {"widths": [4, -2, 4, 4]}, [[4, 1, 2, 1]]),
    # reflect and friends pad the last k dimensions of an input with k or k + 1 of them
    ("pad", {"widths": [2, 2], "mode": "replicate"}, [[4, 2, 2]]),
]


@pytest.mark.parametrize("name,attrs,shapes", REGRESSIONS, ids=case_ids(REGRESSIONS))
def test_regression(name, attrs, shapes):
    assert check(name, attrs, shapes) == "rejected"


@pytest.mark.parametrize("op", ["batchnorm1d", "batchnorm2d", "layernorm", "groupnorm"])
def test_norm_eps_zero_is_refused(op):
    # torch refuses eps = 0 for batch norm in training mode; no norm has a use for it.
    attrs = {"eps": 0, **({"groups": 1} if op == "groupnorm" else {})}
    with pytest.raises(resgraph.SpecError, match="must be greater than 0"):
        resgraph.load("ops.yaml", text=spec_text(op, attrs, [[4, 5, 5]]))


@pytest.mark.parametrize("p", [0.0, 0.25, 0.9, 1.0])
def test_drop_path_draws_as_torchvision_stochastic_depth(p):
    from torchvision.ops import stochastic_depth

    from resgraph.modules import DropPath

    module = DropPath(p)
    x = torch.randn(64, 3, 4, 4)
    torch.manual_seed(3)
    got = module(x)
    torch.manual_seed(3)
    assert torch.equal(got, stochastic_depth(x, p, "row", training=True))
    if 0.0 < p < 1.0:   # whole samples dropped, the rest scaled
        kept = (got != 0).flatten(1).all(1)
        assert 0 < kept.sum() < 64 and torch.allclose(got[kept], x[kept] / (1 - p))
    assert torch.equal(module.eval()(x), x)
