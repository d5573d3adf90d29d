"""activation: an element-wise activation chosen by name, so that a param can choose it (`op` itself is literal).

It lowers exactly as the op it names (any element-wise activation op: relu, relu6, gelu, silu, sigmoid, tanh, ...),
giving the same code and modules."""

from __future__ import annotations

from typing import ClassVar, Literal

from .activation import _Activation
from .base import REGISTRY, Choice, Op, Shape, register

# Every element-wise activation op registered so far (ops/__init__.py imports this module after them).
FUNCTIONS = tuple(sorted(name for name, cls in REGISTRY.items() if issubclass(cls, _Activation)))


@register
class Activation(Op):
    """`{op: activation, function: act}` with a param `act: relu` runs `relu`; as torch's Transformer layers
    take `activation="relu"` or `"gelu"`.

    Inputs: 1
    Output: unchanged; the op `function` names, so that a param can choose it (`function: act`)
    Lowered to: as the named op
    """

    op: Literal["activation"]
    function: Choice(*FUNCTIONS) = "relu"

    # The named op's output may be one its backward needs (sigmoid, tanh): never overwritten in place.
    fresh_output: ClassVar[bool] = False

    def named(self) -> Op:
        return REGISTRY[self.function].model_validate({"op": self.function})

    def infer_shape(self, inputs: list[Shape], meta: dict) -> Shape:
        return self.named().infer_shape(inputs, meta)

    def lower(self, b, args, inputs, output, meta):
        return self.named().lower(b, args, inputs, output, meta)

    def label(self) -> str:
        return self.function
