"""Reductions over dimensions: mean, sum and amax, with keepdim (global pooling written as torch code writes it:
`x.mean((2, 3))`)."""


from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import GLOBAL, Bool, Op, Shape, ShapeError, attribute, fail, register


def _as_dims(value: Any) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise fail("expected at least one dimension", "e.g. `dims: [2, 3]` for the height and width of an image")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"expected an integer dimension, got `{v}`")
    return tuple(values)


Dims = attribute(_as_dims, {"anyOf": [{"type": "integer"},
                                      {"type": "array", "items": {"type": "integer"}, "minItems": 1}]})


class _Reduction(Op):
    """Reduces over `dims`, numbered as torch numbers them with the batch: 0 is the batch (which may not be
    named), 1 the channels, 2... the spatial dimensions; negative values count from the end. So for a spec input
    of per-sample shape [C, H, W], `dims: [2, 3]` (or `[-2, -1]`) reduces height and width, as
    `x.mean((2, 3))` on the [batch, C, H, W] tensor does."""

    dims: Dims = Field(description="the dimensions to reduce: an integer or a list; torch numbering, the batch "
                                   "is 0 and may not be named, negative counts from the end")
    keepdim: Bool = Field(False, description="keep each reduced dimension with size 1 (e.g. [C, 1, 1])")

    function_name: ClassVar[str]

    def _sample_dims(self, shape: Shape) -> list[int]:
        from .dense import _sample_dim

        found = [_sample_dim(d, len(shape), "dims") for d in _as_dims(self.dims)]
        if len(set(found)) != len(found):
            raise ShapeError(f"`dims: {list(_as_dims(self.dims))}` names a dimension twice", attr="dims",
                             help="list each dimension once (negative numbers count from the end)")
        return found

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        reduced = set(self._sample_dims(shape))
        if self.keepdim:
            return tuple(1 if i in reduced else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in reduced)

    def receptive_field(self, fields, inputs, output, meta):
        # A dimension reduced with keepdim (global pooling) covers the whole input.
        field = fields[0]
        if field is None or len(output) != len(inputs[0]):
            return None
        size, jump = field
        extents = inputs[0][1:]
        return tuple(GLOBAL if o == 1 < n else r for r, n, o in zip(size, extents, output[1:])), jump

    def lower(self, b, args, inputs, output, meta):
        import torch

        dims = _as_dims(self.dims)
        kwargs: dict = {"dim": dims[0] if len(dims) == 1 else dims}
        if self.keepdim:
            kwargs["keepdim"] = True
        return b.call_function(getattr(torch, self.function_name), args, kwargs)

    def label(self) -> str:
        dims = _as_dims(self.dims)
        text = f"{self.op_name()} dim {dims[0]}" if len(dims) == 1 else \
            f"{self.op_name()} dims {', '.join(str(d) for d in dims)}"
        return text + (", keepdim" if self.keepdim else "")


@register
class Mean(_Reduction):
    """The mean over `dims`: global average pooling with `dims: [2, 3]`.

    Inputs: 1: any shape
    Output: the input shape without the `dims` (torch numbering: the batch is 0 and may not be named; negative counts
        from the end), or with each kept as size 1 under `keepdim`; `dims: [2, 3]` of `[C, H, W]` gives `[C]`
    Lowered to: `torch.mean(x, dim, keepdim)`
    """

    op: Literal["mean"]
    function_name: ClassVar[str] = "mean"


@register
class Sum(_Reduction):
    """The sum over `dims`.

    Inputs: 1: any shape
    Output: the input shape without the `dims` (torch numbering: the batch is 0 and may not be named; negative counts
        from the end), or with each kept as size 1 under `keepdim`; `dims: [2, 3]` of `[C, H, W]` gives `[C]`
    Lowered to: `torch.sum(x, dim, keepdim)`
    """

    op: Literal["sum"]
    function_name: ClassVar[str] = "sum"


@register
class Amax(_Reduction):
    """The maximum over `dims`: global max pooling with `dims: [2, 3]`.

    Inputs: 1: any shape
    Output: the input shape without the `dims` (torch numbering: the batch is 0 and may not be named; negative counts
        from the end), or with each kept as size 1 under `keepdim`; `dims: [2, 3]` of `[C, H, W]` gives `[C]`
    Lowered to: `torch.amax(x, dim, keepdim)`
    """

    op: Literal["amax"]
    function_name: ClassVar[str] = "amax"
