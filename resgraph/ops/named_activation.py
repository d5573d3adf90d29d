"""activation: an element-wise activation chosen by name, so that a param can choose it (`op` itself is literal).

It lowers exactly as the op it names (any element-wise activation op: relu, relu6, gelu, silu, sigmoid, tanh,
hardswish, ...), with that op's defaults, giving the same code and modules."""


from typing import ClassVar, Literal

from .activation import _Activation
from .base import REGISTRY, Choice, Op, Shape, register

# Every element-wise activation op: those of activation.py, registered by the import above (looked up
# without importing the other op modules). softmax and log_softmax normalise over a dimension rather than
# element-wise, and run here with theirs (the last).
FUNCTIONS = tuple(sorted({name for name, cls in REGISTRY.registered().items() if issubclass(cls, _Activation)}
                         | {"softmax", "log_softmax"} & set(REGISTRY.registered())))


@register
class Activation(Op):
    """`{op: activation, function: act}` with a param `act: relu` runs `relu`; as torch's Transformer layers
    take `activation="relu"` or `"gelu"`, and torchvision's MobileNetV3 `nn.ReLU` or `nn.Hardswish`. The named
    op runs with its defaults (`leaky_relu`: slope 0.01, `elu`: alpha 1, `prelu`: one learnable slope,
    `softplus`: beta 1, `softmax` / `log_softmax`: the last dimension); one input, its shape unchanged.

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

    def count_params(self, inputs: list[Shape], output: Shape, meta: dict) -> int:
        return self.named().count_params(inputs, output, meta)

    def receptive_field(self, fields, inputs, output, meta):
        return self.named().receptive_field(fields, inputs, output, meta)

    def lower(self, b, args, inputs, output, meta):
        return self.named().lower(b, args, inputs, output, meta)

    def label(self) -> str:
        return self.function
