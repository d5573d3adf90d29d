"""Tensor layout ops: reshape, permute, transpose, unflatten, select, slice, chunk, split, roll, expand and
channel_shuffle. They move or pick elements and have no parameters.

Dimensions (`dim`, `dims`, `dim0`, `dim1`) count as torch counts them, the batch included: 0 is the batch
(which these ops may not move or cut), 1 the first per-sample dimension (the channels of an image, the
tokens of a sequence), and a negative `dim` counts from the last (-1). Shapes (`shape`, `sizes`) are
per sample, as `input:` is: the batch is implicit. chunk and split have several outputs: another node reads
output k of node `parts` as `parts:k`.
"""


import operator
from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import (EXPRESSION_SCHEMA, MAX_DIM, Int, Op, Shape, ShapeError, _as_int, _describe, attribute, fail,
                   fmt_shape, prod, register)
from .dense import _sample_dim

MAX_RANK = 8


def Sizes(minimum: int, allow_minus_one: bool = False, min_items: int = 1, scalar: bool = False,
          one_unknown: bool = True) -> Any:
    """A list of integers (up to `MAX_RANK`), each at least `minimum`, with -1 where allowed (at most one,
    with `one_unknown`); with `scalar`, a single integer too."""

    def one(value: Any) -> int:
        if allow_minus_one and value == -1 and not isinstance(value, bool):
            return -1
        return _as_int(value, minimum, MAX_DIM)

    def check(value: Any) -> Any:
        if scalar and not isinstance(value, (list, tuple)):
            return one(value)
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected a list of integers, got {_describe(value)}", "e.g. `[4, -1]`" if allow_minus_one
                       else "e.g. `[4, 16]`")
        if not min_items <= len(value) <= MAX_RANK:
            raise fail(f"expected {min_items} to {MAX_RANK} integers, got {len(value)}")
        values = tuple(one(v) for v in value)
        if allow_minus_one and one_unknown and values.count(-1) > 1:
            raise fail("at most one size may be -1 (the one worked out from the others)")
        return values

    item: dict = {"type": "integer"}
    if minimum is not None:
        item["minimum"] = -1 if allow_minus_one else minimum
    schema: dict = {"type": "array", "items": {"anyOf": [item, EXPRESSION_SCHEMA]}, "minItems": min_items,
                    "maxItems": MAX_RANK}
    if scalar:
        schema = {"anyOf": [item, schema]}
    return attribute(check, schema)


DIM = "a dimension, counting the batch as 0 as torch does (1: the first per-sample dimension; -1: the last)"


def _fill(sizes: tuple[int, ...], total: int, attr: str, what: str) -> tuple[int, ...]:
    """Sizes with their -1 worked out so that they hold `total` elements."""
    known = prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if total % known:
            raise ShapeError(f"{what} of {total} elements cannot be laid out as {fmt_shape(sizes)}: {total} is not "
                             f"divisible by {known}", attr=attr,
                             help="the sizes other than -1 must divide the number of elements")
        return tuple(total // known if s == -1 else s for s in sizes)
    if known != total:
        raise ShapeError(f"{what} has {total} elements but {fmt_shape(sizes)} holds {known}", attr=attr,
                         help="the sizes must multiply to the number of elements; one of them may be -1")
    return sizes


def _listed(value: Any) -> str:
    return str(value) if isinstance(value, int) else "[" + ", ".join(str(v) for v in value) + "]"


class _Listing(Op):
    """Labels that show list attributes as lists (`permute [0, 2, 1]`), not as kernel sizes (`0x2x1`)."""

    def label(self) -> str:
        parts = [_listed(getattr(self, a)) if len(self.label_attrs) == 1 else f"{a}={_listed(getattr(self, a))}"
                 for a in self.label_attrs if getattr(self, a) is not None]
        return " ".join([self.op_name(), *parts])


@register
class Reshape(_Listing):
    """Gives each sample the shape `shape`.

    Inputs: 1: any shape with as many elements per sample
    Output: `shape` (per sample; one size may be -1, worked out from the others)
    Lowered to: `x.reshape(-1, *shape)`
    """

    op: Literal["reshape"]
    shape: Sizes(1, allow_minus_one=True) = Field(description="the per-sample output shape; one size may be -1")

    label_attrs: ClassVar[tuple[str, ...]] = ("shape",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return _fill(tuple(self.shape), prod(inputs[0]), "shape", f"an input of shape {fmt_shape(inputs[0])}")

    def lower(self, b, args, inputs, output, meta):
        shape = tuple(output) if output is not None else tuple(self.shape)
        if -1 in shape:  # only where lowered without the shape rule's output (tests run lowerings eagerly)
            return b.call_method("reshape", [args[0], b.call_method("size", [args[0], 0]), *shape])
        return b.call_method("reshape", [args[0], -1, *shape])


@register
class Unflatten(Op):
    """Splits dimension `dim` into `sizes`.

    Inputs: 1
    Output: the input with dimension `dim` (the batch is 0, as torch counts) replaced by `sizes`, which
        multiply to its size (one may be -1)
    Lowered to: `x.unflatten(dim, sizes)`
    """

    op: Literal["unflatten"]
    dim: Int(None) = Field(description=DIM)
    sizes: Sizes(1, allow_minus_one=True) = Field(description="the sizes that dimension `dim` becomes")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        sizes = _fill(tuple(self.sizes), shape[dim], "sizes", f"dimension {self.dim} ({shape[dim]})")
        return (*shape[:dim], *sizes, *shape[dim + 1:])

    def lower(self, b, args, inputs, output, meta):
        return b.call_method("unflatten", [args[0], self.dim, tuple(self.sizes)])


@register
class Permute(_Listing):
    """Reorders the dimensions, as `torch.permute` and torchvision's `Permute([0, 2, 3, 1])`.

    Inputs: 1
    Output: the input's dimensions in the order `dims`, which lists every dimension once, the batch (0) first
    Lowered to: `x.permute(*dims)`
    """

    op: Literal["permute"]
    dims: Sizes(None, min_items=2) = Field(description="the new order of the dimensions, the batch (0) first; "
                                                        "negative ones count from the last")

    label_attrs: ClassVar[tuple[str, ...]] = ("dims",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        full = len(shape) + 1
        if len(self.dims) != full:
            raise ShapeError(f"`dims` lists {len(self.dims)} dimensions but the input has {full} (batch included)",
                             attr="dims", help=f"list each of the {full} dimensions once, the batch (0) first")
        order = [d + full if d < 0 else d for d in self.dims]
        if sorted(order) != list(range(full)):
            raise ShapeError(f"`dims: {list(self.dims)}` is not an order of the dimensions 0 to {full - 1}",
                             attr="dims", help="list each dimension exactly once")
        if order[0] != 0:
            raise ShapeError("`dims` must keep the batch (0) first", attr="dims",
                             help="shapes are per sample: start `dims` with 0")
        return tuple(shape[d - 1] for d in order[1:])

    def lower(self, b, args, inputs, output, meta):
        return b.call_method("permute", [args[0], *self.dims])


@register
class Transpose(Op):
    """Swaps two dimensions.

    Inputs: 1
    Output: the input with dimensions `dim0` and `dim1` swapped (the batch is 0, as torch counts)
    Lowered to: `x.transpose(dim0, dim1)`
    """

    op: Literal["transpose"]
    dim0: Int(None) = Field(description=DIM)
    dim1: Int(None) = Field(description=DIM)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        a, c = _sample_dim(self.dim0, len(shape), "dim0"), _sample_dim(self.dim1, len(shape), "dim1")
        out = list(shape)
        out[a], out[c] = shape[c], shape[a]
        return tuple(out)

    def lower(self, b, args, inputs, output, meta):
        return b.call_method("transpose", [args[0], self.dim0, self.dim1])


@register
class Select(_Listing):
    """Picks one position of a dimension (ViT's class token: `x[:, 0]` is `{dim: 1, index: 0}`).

    Inputs: 1
    Output: the input without dimension `dim`; `index` in range, negative counting from the end
    Lowered to: `x.select(dim, index)`
    """

    op: Literal["select"]
    dim: Int(None) = Field(1, description=DIM)
    index: Int(None) = Field(description="the position to take; negative counts from the end")

    label_attrs: ClassVar[tuple[str, ...]] = ("dim", "index")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        if not -shape[dim] <= self.index < shape[dim]:
            raise ShapeError(f"`index: {self.index}` is out of range for dimension {self.dim} of size {shape[dim]}",
                             attr="index", help=f"use an index from {-shape[dim]} to {shape[dim] - 1}")
        return (*shape[:dim], *shape[dim + 1:])

    def lower(self, b, args, inputs, output, meta):
        return b.call_method("select", [args[0], self.dim, self.index])


@register
class Index(_Listing):
    """Picks the positions `indices` of dimension `dim`, in that order, as `x.index_select(dim, indices)`.

    Inputs: 1
    Output: the input with dimension `dim` of size len(indices) (repeats allowed; negative ones count from the end)
    Lowered to: indexing with a list, `x[:, [0, 2]]`
    """

    op: Literal["index"]
    dim: Int(None) = Field(1, description=DIM)
    indices: Sizes(None) = Field(description="the positions to take, in order; negative ones count from the end")

    label_attrs: ClassVar[tuple[str, ...]] = ("dim", "indices")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        wrong = [i for i in self.indices if not -shape[dim] <= i < shape[dim]]
        if wrong:
            raise ShapeError(f"`indices` {wrong} are out of range for dimension {self.dim} of size {shape[dim]}",
                             attr="indices", help=f"use indices from {-shape[dim]} to {shape[dim] - 1}")
        return (*shape[:dim], len(self.indices), *shape[dim + 1:])

    def lower(self, b, args, inputs, output, meta):
        dim = _sample_dim(self.dim, len(inputs[0]), "dim") + 1
        return b.call_function(operator.getitem, [args[0], (slice(None),) * dim + (list(self.indices),)])


@register
class Slice(Op):
    """`start:stop:step` along dimension `dim`.

    Inputs: 1
    Output: the input with dimension `dim` of size len(range(size)[start:stop:step]) (Python's rules for negative
        and out-of-range bounds); the result must not be empty
    Lowered to: indexing, `x[:, :, start:stop:step]`
    """

    op: Literal["slice"]
    dim: Int(None) = Field(1, description=DIM)
    start: Int(None) | None = Field(None, description="the first position (default: 0); negative counts from the end")
    stop: Int(None) | None = Field(None, description="the position after the last (default: the end)")
    step: Int(1) = Field(1, description="the distance between taken positions")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        size = len(range(shape[dim])[self.start:self.stop:self.step])
        if size == 0:
            raise ShapeError(f"`{self.start if self.start is not None else ''}:"
                             f"{self.stop if self.stop is not None else ''}:{self.step}` leaves nothing of dimension "
                             f"{self.dim} (size {shape[dim]})", attr="start",
                             help="choose bounds that keep at least one position")
        return (*shape[:dim], size, *shape[dim + 1:])

    def lower(self, b, args, inputs, output, meta):
        dim = _sample_dim(self.dim, len(inputs[0]), "dim") + 1
        index = (slice(None),) * dim + (slice(self.start, self.stop, None if self.step == 1 else self.step),)
        return b.call_function(operator.getitem, [args[0], index])

    def label(self) -> str:
        bounds = f"{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}"
        return f"slice dim={self.dim} {bounds}" + (f":{self.step}" if self.step != 1 else "")


@register
class Chunk(_Listing):
    """Cuts dimension `dim` into `chunks` pieces, as `torch.chunk`.

    Inputs: 1
    Output: several: pieces of ceil(size / chunks) along `dim`, the last maybe smaller, and maybe fewer pieces than
        asked; read piece k as `name:k`
    Lowered to: `x.chunk(chunks, dim=dim)`
    """

    op: Literal["chunk"]
    chunks: Int(1) = Field(description="how many pieces")
    dim: Int(None) = Field(1, description=DIM)

    multiple_outputs: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("chunks", "dim")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        size = -(-shape[dim] // self.chunks)   # ceil, exact for any size
        _check_piece_count(-(-shape[dim] // size), "chunks")
        pieces = [size] * (shape[dim] // size) + ([shape[dim] % size] if shape[dim] % size else [])
        meta["outputs"] = [(*shape[:dim], p, *shape[dim + 1:]) for p in pieces]
        return meta["outputs"][0]

    def lower(self, b, args, inputs, output, meta):
        return b.call_method("chunk", [args[0], self.chunks], {"dim": self.dim})


@register
class Split(_Listing):
    """Cuts dimension `dim` into pieces, as `torch.split`.

    Inputs: 1
    Output: several: pieces of `sizes` each along `dim` (the last may be smaller) for a number, or of the listed
        sizes, which must add up to the dimension; read piece k as `name:k`
    Lowered to: `x.split(sizes, dim=dim)`
    """

    op: Literal["split"]
    sizes: Sizes(1, scalar=True) = Field(description="the size of every piece, or a list of the pieces' sizes")
    dim: Int(None) = Field(1, description=DIM)

    multiple_outputs: ClassVar[bool] = True
    label_attrs: ClassVar[tuple[str, ...]] = ("sizes", "dim")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        dim = _sample_dim(self.dim, len(shape), "dim")
        n = shape[dim]
        if isinstance(self.sizes, int):
            _check_piece_count(-(-n // self.sizes), "sizes")
            pieces = [self.sizes] * (n // self.sizes) + ([n % self.sizes] if n % self.sizes else [])
        else:
            pieces = list(self.sizes)
            if sum(pieces) != n:
                raise ShapeError(f"`sizes: {pieces}` add up to {sum(pieces)}, but dimension {self.dim} has size {n}",
                                 attr="sizes", help=f"give sizes that add up to {n}")
        meta["outputs"] = [(*shape[:dim], p, *shape[dim + 1:]) for p in pieces]
        return meta["outputs"][0]

    def lower(self, b, args, inputs, output, meta):
        sizes = self.sizes if isinstance(self.sizes, int) else list(self.sizes)
        return b.call_method("split", [args[0], sizes], {"dim": self.dim})


# More pieces than any network reads one by one: each is a node with a shape, so a huge count (a dimension of
# 2**31 cut into pieces of 1) would exhaust memory before anything is built.
MAX_PIECES = 4096


def _check_piece_count(count: int, attr: str) -> None:
    if count > MAX_PIECES:
        raise ShapeError(f"this cuts the dimension into {count:,} pieces, more than {MAX_PIECES:,}", attr=attr,
                         code="RG035", help="cut into fewer, larger pieces (each piece is an output read as `name:k`)")


class OutputItem(Op):
    """Output k of a node with several outputs: made by expansion for each reference `name:k`; not an op
    a spec names. Lowers to `parts[k]`."""

    op: Literal["output_item"]
    index: int

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        outputs = meta["outputs_of_input"]
        return outputs[self.index]

    def lower(self, b, args, inputs, output, meta):
        return b.call_function(operator.getitem, [args[0], self.index])

    def label(self) -> str:
        return f"output {self.index}"


@register
class Roll(_Listing):
    """Rolls the elements along `dims` by `shifts` (elements leaving one end come back at the other); Swin's
    shifted windows.

    Inputs: 1
    Output: unchanged; one shift per dimension
    Lowered to: `torch.roll(x, shifts, dims)`
    """

    op: Literal["roll"]
    shifts: Sizes(None, scalar=True) = Field(description="how far to move along each of `dims` (negative: back)")
    dims: Sizes(None, scalar=True) = Field(description="the dimensions to roll along (" + DIM[2:] + ")")

    label_attrs: ClassVar[tuple[str, ...]] = ("shifts", "dims")

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        shifts = (self.shifts,) if isinstance(self.shifts, int) else self.shifts
        dims = (self.dims,) if isinstance(self.dims, int) else self.dims
        if len(shifts) != len(dims):
            raise ShapeError(f"{len(shifts)} shifts for {len(dims)} dims", attr="shifts",
                             help="give one shift per dimension")
        for d in dims:
            _sample_dim(d, len(shape), "dims")
        return shape

    def lower(self, b, args, inputs, output, meta):
        import torch

        return b.call_function(torch.roll, [args[0], self.shifts, self.dims])


@register
class Expand(Op):
    """Broadcasts a tensor to a batch and a shape: ViT's `class_token.expand(n, -1, -1)`.

    Inputs: 1–2: the tensor (sizes of 1, and a batch of 1 such as a `parameter`'s, grow), and optionally a tensor
        whose batch size to take
    Output: `shape` (-1 keeps a size; default: the input's shape), one size per input dimension
    Lowered to: `x.expand(like.size(0), *shape)`; the result is a view
    """

    op: Literal["expand"]
    shape: Sizes(1, allow_minus_one=True, one_unknown=False) | None = Field(
        None, description="the per-sample shape to broadcast to, with -1 where a size stays")

    max_inputs: ClassVar[int | None] = 2

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        shape = inputs[0]
        if self.shape is None:
            return shape
        if len(self.shape) != len(shape):
            raise ShapeError(f"`shape: {list(self.shape)}` has {len(self.shape)} dimensions but the input "
                             f"{fmt_shape(shape)} has {len(shape)}", attr="shape",
                             help="give one size per dimension of the input, -1 where it stays")
        out = []
        for have, want in zip(shape, self.shape):
            if want != -1 and have not in (1, want):
                raise ShapeError(f"cannot expand {fmt_shape(shape)} to {fmt_shape(self.shape)}: only sizes of 1 "
                                 "grow", attr="shape", help="use -1 where a size stays")
            out.append(have if want == -1 else want)
        return tuple(out)

    def lower(self, b, args, inputs, output, meta):
        batch = b.call_method("size", [args[-1], 0])
        shape = (-1,) * len(inputs[0]) if self.shape is None else tuple(self.shape)
        return b.call_method("expand", [args[0], batch, *shape])


@register
class ChannelShuffle(_Listing):
    """Interleaves the channels of `groups` groups, as ShuffleNet's `channel_shuffle`.

    Inputs: 1: `[C, ...]` with at least one more dimension, C divisible by `groups`
    Output: unchanged
    Lowered to: `F.channel_shuffle(x, groups)`
    """

    op: Literal["channel_shuffle"]
    groups: Int(1) = Field(description="the number of channel groups to interleave")

    label_attrs: ClassVar[tuple[str, ...]] = ("groups",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if len(shape) < 2:
            raise ShapeError(f"`channel_shuffle` expects a [channels, ...] input with at least one more dimension, "
                             f"got {fmt_shape(shape)}", help="insert a `reshape` or `unflatten` first")
        if shape[0] % self.groups:
            raise ShapeError(f"{shape[0]} channels are not divisible by `groups: {self.groups}`", attr="groups",
                             help="choose groups that divide the channels")
        return shape

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.channel_shuffle, [args[0], self.groups])
