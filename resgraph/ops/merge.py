"""Merge ops: add (the residual sum, with the ResNet paper's shortcut options), concat and mul."""


import math
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal

from pydantic import Field

from .base import KEY_PATTERN, Choice, Int, Op, Shape, ShapeError, fmt_shape, prod, register


class Shortcut(str, Enum):
    IDENTITY = "identity"  # shapes must match
    PAD = "pad"            # option A: subsample by striding, zero-fill new channels; no parameters
    PROJECT = "project"    # option B/C: 1x1 convolution + batch norm
    AUTO = "auto"          # identity where shapes match, projection where they don't


SHORTCUT_NAMES = {"identity": "identity", "pad": "pad", "project": "projection", "auto": "auto"}


@dataclass(frozen=True)
class ShortcutPlan:
    """How one skip input of an add is brought to the branch's shape."""

    kind: Shortcut
    in_shape: Shape
    out_shape: Shape
    stride: tuple[int, ...] = ()



def _strides(source: Shape, target: Shape) -> tuple[int, ...] | None:
    """Strides that take `source`'s spatial size to `target`'s (ceil(s / stride) == t), if any."""
    strides = []
    for s, t in zip(source[1:], target[1:]):
        if t < 1 or t > s:
            return None
        stride = max(1, math.ceil(s / t)) if t > 1 else s
        if (s + stride - 1) // stride != t:
            stride = next((k for k in range(1, s + 1) if (s + k - 1) // k == t), 0)
            if not stride:
                return None
        strides.append(stride)
    return tuple(strides)


def _factor(large: Shape, small: Shape) -> str:
    """`by 2` where one spatial size is a whole multiple of the other in every dimension, else the sizes."""
    ratios = {l // s if s and l % s == 0 else None for l, s in zip(large, small)}
    return f"by {ratios.pop()}" if len(ratios) == 1 and None not in ratios else \
        f"from {fmt_shape(large)} to {fmt_shape(small)}"


def _mismatch_help(branch: Shape, skip: Shape) -> str:
    if len(branch) != len(skip):
        return "the branch and the shortcut must have the same rank; check the branch's ops"
    if branch[1:] != skip[1:] and all(s <= b for s, b in zip(skip[1:], branch[1:])):
        return (f"the shortcut is subsampled {_factor(branch[1:], skip[1:])} ({fmt_shape(skip[1:])}) but the branch "
                f"is not ({fmt_shape(branch[1:])}): give the branch the same stride (on its first convolution), or "
                "remove the stride from the shortcut")
    if branch[0] != skip[0] and branch[1:] != skip[1:]:
        return (f"the channels ({skip[0]} -> {branch[0]}) and the spatial size ({fmt_shape(skip[1:])} -> "
                f"{fmt_shape(branch[1:])}) both change: set `shortcut: project` (1x1 conv + batch norm with the "
                "branch's stride, as torchvision's `downsample`) or `shortcut: pad` (option A, no parameters)")
    if branch[1:] == skip[1:]:
        return (f"the channels differ ({skip[0]} -> {branch[0]}): set `shortcut: project` (1x1 conv + batch norm), "
                f"`shortcut: pad` (zero channels, no parameters), or make the branch end with {skip[0]} channels")
    return (f"the branch subsamples {_factor(skip[1:], branch[1:])} ({fmt_shape(skip[1:])} -> "
            f"{fmt_shape(branch[1:])}) but the shortcut does not: set `shortcut: project` or `shortcut: pad` (they "
            "subsample the shortcut by the branch's stride), or keep stride 1 in the branch")


@register
class Add(Op):
    """The residual sum y = F(x) + x. The first input is the branch F(x); the others are shortcuts.

    Inputs: ≥2: branch, shortcut(s)
    Output: the branch's shape; see [add](#add)
    Lowered to: `+=` / `+`, shortcut modules
    """

    op: Literal["add"]
    shortcut: Choice(*(s.value for s in Shortcut)) = Shortcut.IDENTITY.value
    shortcut_name: str = Field("downsample", pattern=KEY_PATTERN,
                               description="module name of a projection or padding shortcut (a dotted path, as "
                                           "a `key`, places it in containers: `resgraph expand` writes "
                                           "`layer2.0.downsample`)")

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    fresh_output: ClassVar[bool] = True

    def plan(self, branch: Shape, skip: Shape) -> ShortcutPlan:
        policy = Shortcut(self.shortcut)
        if policy is Shortcut.AUTO:
            policy = Shortcut.IDENTITY if branch == skip else Shortcut.PROJECT
        elif policy is Shortcut.PAD and branch == skip:
            policy = Shortcut.IDENTITY  # option A pads only where the shape changes
        if policy is Shortcut.IDENTITY:
            if branch != skip:
                raise ShapeError(
                    f"identity shortcut shapes differ: the branch gives {fmt_shape(branch)} but the shortcut "
                    f"carries {fmt_shape(skip)}", help=_mismatch_help(branch, skip), attr="shortcut", code="RG050")
            return ShortcutPlan(policy, skip, branch)
        if len(branch) != len(skip) or len(branch) > 4:
            raise ShapeError(f"a `{policy.value}` shortcut cannot map {fmt_shape(skip)} to {fmt_shape(branch)}",
                             help=_mismatch_help(branch, skip), attr="shortcut", code="RG050")
        stride = _strides(skip, branch)
        if stride is None:
            raise ShapeError(f"no strided shortcut maps the spatial size {fmt_shape(skip[1:])} to "
                             f"{fmt_shape(branch[1:])}", attr="shortcut", code="RG050",
                             help="the branch must subsample by a whole stride (output = ceil(input / stride))")
        if policy is Shortcut.PAD and branch[0] < skip[0]:
            raise ShapeError(f"a `pad` shortcut can only add channels, but {skip[0]} -> {branch[0]} removes them",
                             attr="shortcut", code="RG050", help="use `shortcut: project`")
        return ShortcutPlan(policy, skip, branch, stride)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        branch = inputs[0]
        meta["shortcuts"] = [self.plan(branch, skip) for skip in inputs[1:]]
        projected = sum(1 for p in meta["shortcuts"] if p.kind is not Shortcut.IDENTITY)
        if projected > 1:
            raise ShapeError("only one shortcut of an add may be projected or padded", attr="shortcut",
                             help="add the inputs in two steps")
        return branch

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        total = 0
        for plan in meta.get("shortcuts", ()):
            if plan.kind is Shortcut.PROJECT:
                c_in, c_out = plan.in_shape[0], plan.out_shape[0]
                total += c_in * c_out + (2 * c_out if len(plan.out_shape) > 1 else 0)
        return total

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return sum(prod(p.out_shape) * p.in_shape[0] for p in meta.get("shortcuts", ()) if p.kind is Shortcut.PROJECT)

    def lower(self, b, args, inputs, output, meta):
        import operator

        from ..modules import projection, ZeroPadShortcut

        skips = []
        for arg, plan in zip(args[1:], meta["shortcuts"]):
            module = None
            if plan.kind is Shortcut.PROJECT:
                module = projection(plan.in_shape, plan.out_shape, plan.stride)
            elif plan.kind is Shortcut.PAD:
                module = ZeroPadShortcut(plan.stride, plan.in_shape[0], plan.out_shape[0])
            skips.append(b.shortcut(module, arg, self.shortcut_name))
        total = args[0]
        # `out += identity`, as torchvision writes it, where nothing else reads the branch output.
        combine = operator.iadd if b.can_overwrite(0) else operator.add
        for skip in skips:
            total = b.call_function(combine, [total, skip])
            combine = operator.iadd
        return total

    def label(self) -> str:
        return "add" if self.shortcut == "identity" else f"add ({self.shortcut})"

    def shaped_label(self, meta: dict) -> str:
        """`add (identity)`, `add (projection)`, `add (pad)`: what `auto` became once shapes were known."""
        kinds = [SHORTCUT_NAMES[plan.kind.value] for plan in meta.get("shortcuts", ())]
        return f"add ({', '.join(dict.fromkeys(kinds))})" if kinds else self.label()


@register
class Concat(Op):
    """Concatenation along `dim` (torch numbering: 0 is the batch, 1 the channels).

    Inputs: ≥2
    Output: sum along `dim`; see [concat](#concat)
    Lowered to: `torch.cat`
    """

    op: Literal["concat"]
    dim: Int(None) = 1

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    fresh_output: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("dim",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        from .dense import _sample_dim

        first = inputs[0]
        dim = _sample_dim(self.dim, len(first), "dim")
        for other in inputs[1:]:
            same_rank = len(other) == len(first)
            if not same_rank or any(a != b for i, (a, b) in enumerate(zip(first, other)) if i != dim):
                raise ShapeError(
                    f"concat inputs must agree in every dimension but `dim: {self.dim}`: got {fmt_shape(first)} "
                    f"and {fmt_shape(other)}", code="RG051",
                    help="resize one input (stride, pooling or upsampling) so the other dimensions match")
        return (*first[:dim], sum(s[dim] for s in inputs), *first[dim + 1:])

    def lower(self, b, args, inputs, output, meta):
        import torch

        return b.call_function(torch.cat, [list(args)], {"dim": self.dim})


def broadcast(shapes: list[Shape]) -> Shape | None:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def broadcast_same_rank(op: str, inputs: list[Shape], rank_help: str) -> Shape:
    """The shape element-wise `op` gives inputs of one rank that broadcast; ShapeError (RG051) otherwise.
    The batch dimension comes first, so torch would align it with a dimension of an input of another rank."""
    if len({len(s) for s in inputs}) > 1:
        raise ShapeError(f"{op} inputs must have the same number of dimensions: "
                         + " and ".join(fmt_shape(s) for s in inputs), code="RG051", help=rank_help)
    shape = broadcast(inputs)
    if shape is None:
        raise ShapeError(f"{op} inputs do not broadcast: " + " and ".join(fmt_shape(s) for s in inputs),
                         code="RG051", help="each dimension must be equal, or 1 in one of the inputs")
    return shape


@register
class Mul(Op):
    """Element-wise product with broadcasting: gating, as in squeeze-and-excitation.

    Inputs: ≥2
    Output: broadcast shape; same rank; see [mul](#mul)
    Lowered to: `*`
    """

    op: Literal["mul"]

    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return broadcast_same_rank("mul", inputs, "give the gate the input's rank, with 1 where it broadcasts, "
                                                  "e.g. [channels, 1, 1]")

    def lower(self, b, args, inputs, output, meta):
        import operator

        total = args[0]
        for other in args[1:]:
            total = b.call_function(operator.mul, [total, other])
        return total
