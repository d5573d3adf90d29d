"""The op registry: every op is one class in one file of this package, registered by name.

The built-in op modules are imported when a spec first uses one of their ops (`Registry` in base.py):
`BUILTIN_MODULES` names the module of each built-in op. A new op gets a line here; one without a line
still works (its name makes the registry import every module), and tests/test_ops.py says what to add."""

from .base import REGISTRY, Bool, Choice, Float, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register

BUILTIN_MODULES = {
    "elu": "activation", "gelu": "activation", "hardsigmoid": "activation", "hardswish": "activation",
    "leaky_relu": "activation", "log_softmax": "activation", "mish": "activation", "prelu": "activation",
    "relu": "activation", "relu6": "activation", "sigmoid": "activation", "silu": "activation",
    "softmax": "activation", "softplus": "activation", "tanh": "activation",
    "matmul": "arithmetic", "scale": "arithmetic", "shift": "arithmetic", "sub": "arithmetic",
    "multihead_attention": "attention",
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv",
    "drop_path": "dense", "dropout": "dense", "flatten": "dense", "identity": "dense", "linear": "dense",
    "channel_shuffle": "layout", "chunk": "layout", "expand": "layout", "index": "layout", "permute": "layout",
    "reshape": "layout", "roll": "layout", "select": "layout", "slice": "layout", "split": "layout",
    "transpose": "layout", "unflatten": "layout",
    "relative_position_attention": "maxvit",
    "add": "merge", "concat": "merge", "mul": "merge",
    "activation": "named_activation",
    "batchnorm1d": "norm", "batchnorm2d": "norm", "batchnorm3d": "norm", "groupnorm": "norm",
    "instancenorm1d": "norm", "instancenorm2d": "norm", "instancenorm3d": "norm", "layernorm": "norm",
    "rmsnorm": "norm",
    "pad": "pad",
    "adaptive_avgpool1d": "pool", "adaptive_avgpool2d": "pool", "adaptive_avgpool3d": "pool",
    "adaptive_maxpool1d": "pool", "adaptive_maxpool2d": "pool", "adaptive_maxpool3d": "pool", "avgpool1d": "pool",
    "avgpool2d": "pool", "avgpool3d": "pool", "maxpool1d": "pool", "maxpool2d": "pool", "maxpool3d": "pool",
    "amax": "reduce", "mean": "reduce", "sum": "reduce",
    "conv_transpose1d": "resample", "conv_transpose2d": "resample", "conv_transpose3d": "resample",
    "pixel_shuffle": "resample", "pixel_unshuffle": "resample", "upsample": "resample",
    "embedding": "sequence", "gru": "sequence", "lstm": "sequence", "rope": "sequence", "sdpa": "sequence",
    "buffer": "tensor", "parameter": "tensor",
}

REGISTRY.declare_builtin(__name__, BUILTIN_MODULES)

# What a plugin's op class uses (docs/plugins.md): the base class, the attribute types and `register`.
__all__ = ["REGISTRY", "BUILTIN_MODULES", "Op", "Shape", "ShapeError", "Bool", "Choice", "Float", "Int", "Ints",
           "fmt_shape", "prod", "register"]
