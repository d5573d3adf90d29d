"""Activations: relu, relu6, gelu, silu, sigmoid, tanh, hardswish, hardsigmoid, leaky_relu, elu, mish, softplus
(element-wise, stateless, so lowered to functions), prelu (a learnable slope: a module), and softmax /
log_softmax over one dimension."""


from typing import ClassVar, Literal

from pydantic import Field

from .base import Choice, Float, Int, Op, Shape, ShapeError, fmt_shape, register


class _Activation(Op):
    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return inputs[0]

    def function(self):
        raise NotImplementedError

    def lower(self, b, args, inputs, output, meta):
        return b.call_function(self.function(), args)


class _InPlaceActivation(_Activation):
    def lower(self, b, args, inputs, output, meta):
        # In place where nothing else reads the input, as torchvision's ReLU(inplace=True).
        if b.can_overwrite(0):
            return b.call_function(self.function(), args, {"inplace": True})
        return b.call_function(self.function(), args)


@register
class ReLU(_InPlaceActivation):
    """max(x, 0).

    Inputs: 1
    Output: unchanged
    Lowered to: `x.relu()` (`x.relu_()`, in place, where safe)
    """

    op: Literal["relu"]

    def lower(self, b, args, inputs, output, meta):
        # `x.relu_()`, not `F.relu(x, inplace=True)`: the same kernel without a Python wrapper around it.
        return b.call_method("relu_" if b.can_overwrite(0) else "relu", args)


@register
class ReLU6(_InPlaceActivation):
    """min(max(x, 0), 6), as in MobileNet v2.

    Inputs: 1
    Output: unchanged
    Lowered to: `F.relu6` (in place where safe)
    """

    op: Literal["relu6"]

    def function(self):
        import torch.nn.functional as F

        return F.relu6


@register
class GELU(_Activation):
    """Gaussian error linear unit, x·Φ(x) (or its tanh approximation).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.gelu`
    """

    op: Literal["gelu"]
    approximate: Choice("none", "tanh") = "none"

    fresh_output: ClassVar[bool] = True  # backward needs the input, not the output

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        if self.approximate == "none":
            return b.call_function(F.gelu, args)
        return b.call_function(F.gelu, args, {"approximate": self.approximate})


@register
class SiLU(_Activation):
    """x·sigmoid(x) (swish).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.silu`
    """

    op: Literal["silu"]

    fresh_output: ClassVar[bool] = True

    def function(self):
        import torch.nn.functional as F

        return F.silu


@register
class Sigmoid(_Activation):
    """1 / (1 + exp(−x)).

    Inputs: 1
    Output: unchanged
    Lowered to: `torch.sigmoid`
    """

    op: Literal["sigmoid"]

    def function(self):
        import torch

        return torch.sigmoid


@register
class Tanh(_Activation):
    """Hyperbolic tangent.

    Inputs: 1
    Output: unchanged
    Lowered to: `torch.tanh`
    """

    op: Literal["tanh"]

    def function(self):
        import torch

        return torch.tanh


# ---- MobileNetV3's hard activations, and the parametrised ones -----------------------------------

@register
class Hardswish(_Activation):
    """x · relu6(x + 3) / 6 (Howard et al. 2019, MobileNetV3).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.hardswish`
    """

    op: Literal["hardswish"]

    fresh_output: ClassVar[bool] = True  # backward needs the input, not the output

    def function(self):
        import torch.nn.functional as F

        return F.hardswish


@register
class Hardsigmoid(_Activation):
    """relu6(x + 3) / 6, MobileNetV3's gate.

    Inputs: 1
    Output: unchanged
    Lowered to: `F.hardsigmoid`
    """

    op: Literal["hardsigmoid"]

    def function(self):
        import torch.nn.functional as F

        return F.hardsigmoid


@register
class Mish(_Activation):
    """x · tanh(softplus(x)) (Misra 2019).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.mish`
    """

    op: Literal["mish"]

    fresh_output: ClassVar[bool] = True

    def function(self):
        import torch.nn.functional as F

        return F.mish


@register
class LeakyReLU(_Activation):
    """max(0, x) + negative_slope · min(0, x).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.leaky_relu(x, negative_slope)`
    """

    op: Literal["leaky_relu"]
    negative_slope: Float() = Field(0.01, description="the slope for negative inputs")

    label_attrs: ClassVar[tuple[str, ...]] = ("negative_slope",)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.leaky_relu, args, {"negative_slope": self.negative_slope})


@register
class ELU(_Activation):
    """x for x > 0, alpha · (exp(x) − 1) otherwise (Clevert et al. 2015).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.elu(x, alpha)`
    """

    op: Literal["elu"]
    alpha: Float() = Field(1.0, description="the value the output tends to for large negative inputs is −alpha")

    label_attrs: ClassVar[tuple[str, ...]] = ("alpha",)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.elu, args, {"alpha": self.alpha})


@register
class Softplus(_Activation):
    """log(1 + exp(beta · x)) / beta, linear above `threshold` (in units of beta · x).

    Inputs: 1
    Output: unchanged
    Lowered to: `F.softplus(x, beta, threshold)`
    """

    op: Literal["softplus"]
    beta: Float(positive=True) = Field(1.0, description="sharpness; larger is closer to relu")
    threshold: Float() = Field(20.0, description="above beta · x > threshold, the output is x (numerical stability)")

    label_attrs: ClassVar[tuple[str, ...]] = ("beta",)

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.softplus, args, {"beta": self.beta, "threshold": self.threshold})


@register
class PReLU(_Activation):
    """max(0, x) + a · min(0, x) with a learnable slope a (He et al. 2015).

    Inputs: 1: any shape; with `num_parameters` > 1, `[C, ...]` with C = `num_parameters`
    Output: unchanged. `num_parameters` params: one slope shared by all channels, or one per channel
    Lowered to: `nn.PReLU(num_parameters, init)`
    """

    op: Literal["prelu"]
    num_parameters: Int(1) = Field(1, description="1 (one slope shared by all channels) or the input's channels")
    init: Float() = Field(0.25, description="the initial slope")

    fresh_output: ClassVar[bool] = True

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        (shape,) = inputs
        if self.num_parameters != 1 and (not shape or shape[0] != self.num_parameters):
            channels = f"{shape[0]} channels" if shape else "no channel dimension"
            raise ShapeError(f"`num_parameters: {self.num_parameters}` does not match the input {fmt_shape(shape)} "
                             f"({channels})", attr="num_parameters",
                             help="use 1 for one slope shared by all channels, or the number of channels"
                                  + (f" ({shape[0]})" if shape else ""))
        return shape

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return self.num_parameters

    def lower(self, b, args, inputs, output, meta):
        import torch.nn as nn

        return b.call_module(nn.PReLU(self.num_parameters, init=self.init), args)

    def label(self) -> str:
        return "prelu" if self.num_parameters == 1 else f"prelu {self.num_parameters}"


class _SoftmaxBase(Op):
    dim: Int(None) = Field(-1, description="the dimension to normalise over; torch numbering (the batch is 0 and "
                                           "may not be named; 1 is channels), negative counts from the end")

    fresh_output: ClassVar[bool] = False  # softmax's backward reads its output

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        from .dense import _sample_dim

        (shape,) = inputs
        _sample_dim(self.dim, len(shape), "dim")
        return shape

    def receptive_field(self, fields, inputs, output, meta):
        return None if self._spatial_dim(inputs[0]) else super().receptive_field(fields, inputs, output, meta)

    def _spatial_dim(self, shape: Shape) -> bool:
        """True where the normalised dimension is a spatial one: every output then sees that whole dimension."""
        from .dense import _sample_dim

        return _sample_dim(self.dim, len(shape), "dim") > 0

    def label(self) -> str:
        return f"{self.op_name()} dim {self.dim}"


@register
class Softmax(_SoftmaxBase):
    """exp(x) / sum(exp(x)) along `dim`.

    Inputs: 1
    Output: unchanged; `dim` in torch numbering (the batch is 0 and may not be named)
    Lowered to: `F.softmax(x, dim)`
    """

    op: Literal["softmax"]

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.softmax, args, {"dim": self.dim})


@register
class LogSoftmax(_SoftmaxBase):
    """log(softmax(x)) along `dim`, computed stably.

    Inputs: 1
    Output: unchanged; `dim` in torch numbering (the batch is 0 and may not be named)
    Lowered to: `F.log_softmax(x, dim)`
    """

    op: Literal["log_softmax"]

    def lower(self, b, args, inputs, output, meta):
        import torch.nn.functional as F

        return b.call_function(F.log_softmax, args, {"dim": self.dim})
