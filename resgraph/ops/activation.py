"""Element-wise activations: relu, relu6, gelu, silu, sigmoid, tanh. Stateless, so lowered to functions."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import Choice, Op, Shape, register


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
