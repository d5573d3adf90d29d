"""Dense and tensor-plumbing ops: linear, flatten, dropout, drop_path, identity."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import Bool, Choice, Float, Int, Op, Shape, ShapeError, fmt_shape, prod, register


@register
class Linear(Op):
    """A fully-connected layer over the last dimension.

    Inputs: 1: `[…, F]`
    Output: `[…, out]` (last dimension)
    Lowered to: `nn.Linear` (weight `[out, F]`); with `weight_layout: in_out`, resgraph's `TransposedLinear`, whose
        weight is stored `[F, out]` and applied as `addmm(bias, x, weight)` (Hugging Face's `Conv1D` of GPT-2)
    """

    op: Literal["linear"]
    out: Int(1)
    bias: Bool = True
    weight_layout: Choice("out_in", "in_out") = Field(
        "out_in", description="how the weight is stored: `out_in` ([out, in], torch's nn.Linear) or `in_out` "
                              "([in, out], Hugging Face's Conv1D in GPT-2); the same computation")

    fresh_output: ClassVar[bool] = True
    weight_layer: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if not shape:
            raise ShapeError("`linear` needs an input with at least one dimension")
        return (*shape[:-1], self.out)

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return inputs[0][-1] * self.out + (self.out if self.bias else 0)

    def count_macs(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return prod(output) * inputs[0][-1]

    def parameter_shapes(self, inputs: list[Shape], output: Shape, meta: dict) -> dict[str, Shape]:
        features = inputs[0][-1]
        weight = (self.out, features) if self.weight_layout == "out_in" else (features, self.out)
        return {"weight": weight, **({"bias": (self.out,)} if self.bias else {})}

    def lower(self, b, args, inputs, output, meta):
        if self.weight_layout == "in_out":
            from ..modules import TransposedLinear

            return b.call_module(TransposedLinear(inputs[0][-1], self.out, bias=self.bias), args)
        import torch.nn as nn

        return b.call_module(nn.Linear(inputs[0][-1], self.out, bias=self.bias), args)

    def label(self) -> str:
        return f"linear {self.out}" + ("" if self.bias else ", no bias") + \
            (", [in, out] weight" if self.weight_layout == "in_out" else "")


def _sample_dim(dim: int, rank: int, attr: str) -> int:
    """Map a torch dimension (batch included) onto the per-sample shape of `rank` dims."""
    full = rank + 1
    if not -full <= dim < full:
        raise ShapeError(f"`{attr}: {dim}` is out of range for an input with {full} dimensions "
                         f"(batch included)", attr=attr)
    dim = dim + full if dim < 0 else dim
    if dim == 0:
        raise ShapeError(f"`{attr}` refers to the batch dimension", attr=attr,
                         help="dimensions count the batch as 0, as in torch: channels are dimension 1")
    return dim - 1


@register
class Flatten(Op):
    """torch.flatten(x, start_dim, end_dim); dimensions count the batch as 0, as in torch.

    Inputs: 1
    Output: dims `start_dim..end_dim` multiplied into one
    Lowered to: `torch.flatten`
    """

    op: Literal["flatten"]
    start_dim: Int(None) = 1
    end_dim: Int(None) = -1

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        start = _sample_dim(self.start_dim, len(shape), "start_dim")
        end = _sample_dim(self.end_dim, len(shape), "end_dim")
        if start > end:
            raise ShapeError(f"`start_dim` ({self.start_dim}) comes after `end_dim` ({self.end_dim})")
        return (*shape[:start], prod(shape[start:end + 1]), *shape[end + 1:])

    def lower(self, b, args, inputs, output, meta):
        import torch

        return b.call_function(torch.flatten, args, {"start_dim": self.start_dim, "end_dim": self.end_dim}
                               if self.end_dim != -1 else {"start_dim": self.start_dim})


@register
class Dropout(Op):
    """Zeroes each element with probability `p` in training (scaling the rest by 1/(1−p)); the identity in eval.

    Inputs: 1
    Output: unchanged
    Lowered to: `nn.Dropout`
    """

    op: Literal["dropout"]
    p: Float(0.0, 1.0) = 0.5

    label_attrs: ClassVar[tuple[str, ...]] = ("p",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        return b.call_module(nn.Dropout(self.p), args)


@register
class DropPath(Op):
    """Stochastic depth on a residual branch: in training, drop the branch for each sample with probability
    `p` (scaling survivors by 1 / (1 - p)); in eval, the identity. Put it before the `add`.

    Inputs: 1
    Output: unchanged
    Lowered to: stochastic depth (Huang et al. 2016): in training, each sample is zeroed with probability `p`
        and the rest scaled by 1/(1−p); the identity in eval. On a residual branch before the `add`, it drops
        the branch per sample. `resgraph.modules.DropPath`, the same draws as torchvision's `stochastic_depth(x,
        p, "row")`; no parameters
    """

    op: Literal["drop_path"]
    p: Float(0.0, 1.0) = 0.0

    label_attrs: ClassVar[tuple[str, ...]] = ("p",)

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def lower(self, b, args, inputs, output, meta):
        from ..modules import DropPath as DropPathModule

        return b.call_module(DropPathModule(self.p), args)


@register
class Identity(Op):
    """Passes its input through; useful as a named tap or a block's explicit output.

    Inputs: 1
    Output: unchanged
    Lowered to: nothing (passes the tensor on)
    """

    op: Literal["identity"]

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def lower(self, b, args, inputs, output, meta):
        return args[0]


__all__ = ["Linear", "Flatten", "Dropout", "DropPath", "Identity", "fmt_shape"]
