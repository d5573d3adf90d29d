"""pad: widen (or, in constant mode, crop) the trailing dimensions of a tensor, as torch's `F.pad`."""


from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import Choice, Float, Op, Shape, ShapeError, attribute, fail, fmt_shape, register

MODES = ("constant", "reflect", "replicate", "circular")


def _as_widths(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise fail("expected a list of widths, two per padded dimension",
                   "as torch's F.pad: `[left, right]` pads the last dimension, `[left, right, top, bottom]` "
                   "the last two")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"expected integer widths, got `{v}`")
    return tuple(value)


Widths = attribute(_as_widths, {"type": "array", "items": {"type": "integer"}, "minItems": 2})


@register
class Pad(Op):
    """Pads (or, with negative widths, crops) the trailing dimensions, as torch's `F.pad`.

    Inputs: 1: any shape for `constant` (the batch cannot be padded); for `reflect`, `replicate` and `circular`,
        the last 1 to 3 dimensions padded, with at most one dimension more (the channels of `[C, ...]`)
    Output: each padded size plus its two widths (≥ 1); `widths` lists a width before and after each padded
        dimension, the last dimension first (`[left, right, top, bottom]` for an image). `reflect` needs each width
        smaller than its dimension, `circular` at most its dimension; `value` only with `constant`
    Lowered to: `F.pad(x, widths, mode, value)`
    """

    op: Literal["pad"]
    widths: Widths = Field(description="two widths per padded dimension, last dimension first, as F.pad's `pad`")
    mode: Choice(*MODES) = Field("constant", description="what fills the border")
    value: Float() = Field(0.0, description="the fill value of `constant` mode")

    label_attrs: ClassVar[tuple[str, ...]] = ()

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        widths = _as_widths(self.widths)
        if len(widths) % 2:
            raise ShapeError(f"expected an even number of widths (two per padded dimension), got {len(widths)}",
                             attr="widths", help="give a width before and after each dimension, last dimension first")
        padded = len(widths) // 2
        if self.value != 0.0 and self.mode != "constant":
            raise ShapeError(f"`value` only applies to `mode: constant`, not `{self.mode}`", attr="value",
                             help="leave `value` out")
        if self.mode == "constant":
            if padded > len(shape):
                raise ShapeError(f"{len(widths)} widths pad {padded} dimensions, but the input {fmt_shape(shape)} "
                                 f"has {len(shape)} per sample", attr="widths",
                                 help="give two widths per dimension to pad, last dimension first; the batch "
                                      "cannot be padded")
        elif padded > 3 or len(shape) not in (padded, padded + 1):
            raise ShapeError(f"`mode: {self.mode}` pads the last 1 to 3 dimensions of an input with at most one "
                             f"more (the channels); got {len(widths)} widths for an input {fmt_shape(shape)}",
                             attr="widths", help="give two widths per spatial dimension, last dimension first"
                             + (f" ({2 * (len(shape) - 1)} widths here)" if 2 <= len(shape) <= 4 else ""))
        sizes = list(shape)
        for k in range(padded):
            dim = len(shape) - 1 - k
            before, after = widths[2 * k], widths[2 * k + 1]
            size = shape[dim]
            limit = {"reflect": lambda w: w < size, "circular": lambda w: w <= size}.get(self.mode)
            if limit is not None and not (limit(before) and limit(after)):
                bound = "smaller than" if self.mode == "reflect" else "at most"
                raise ShapeError(f"`mode: {self.mode}` needs widths {bound} the dimension they pad: widths "
                                 f"[{before}, {after}] for a dimension of size {size}", attr="widths",
                                 help="use smaller widths, or `mode: replicate` or `constant`")
            if size + min(before, 0) + min(after, 0) < 0:
                raise ShapeError(f"widths [{before}, {after}] crop more than the {size} elements of the dimension",
                                 attr="widths", help="negative widths crop; crop at most the dimension's size")
            sizes[dim] = size + before + after
            if sizes[dim] < 1:
                raise ShapeError(f"widths [{before}, {after}] crop a dimension of size {size} to nothing",
                                 attr="widths", help="negative widths crop; keep at least one element")
        return tuple(sizes)

    def receptive_field(self, fields, inputs, output, meta):
        return fields[0] if fields and fields[0] is not None and len(inputs[0]) == len(output) else None

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        kwargs: dict = {"pad": list(_as_widths(self.widths))}
        if self.mode != "constant":
            kwargs["mode"] = self.mode
        if self.value != 0.0:
            kwargs["value"] = self.value
        return b.call_function(F.pad, args, kwargs)

    def label(self) -> str:
        return f"pad {self.mode} {', '.join(str(w) for w in _as_widths(self.widths))}"
