"""The op registry: every op is one class in one file of this package, registered by name.

The built-in op modules are imported when a spec first uses one of their ops (`Registry` in base.py):
`BUILTIN_MODULES` names the module of each built-in op, in the registry's order (the op reference's). A new
op gets a line here; one without a line still works (its name makes the registry import every module), and
tests/test_ops.py says what to add."""

from .base import REGISTRY, Bool, Choice, Float, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register

BUILTIN_MODULES = {
    "relu": "activation", "relu6": "activation", "gelu": "activation", "silu": "activation", "sigmoid": "activation",
    "tanh": "activation", "hardswish": "activation", "hardsigmoid": "activation", "mish": "activation",
    "leaky_relu": "activation", "elu": "activation", "softplus": "activation", "prelu": "activation",
    "softmax": "activation", "log_softmax": "activation",
    "sub": "arithmetic", "scale": "arithmetic", "shift": "arithmetic", "matmul": "arithmetic",
    "multihead_attention": "attention",
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv",
    "linear": "dense", "flatten": "dense", "dropout": "dense", "drop_path": "dense", "identity": "dense",
    "reshape": "layout", "unflatten": "layout", "permute": "layout", "transpose": "layout", "select": "layout",
    "index": "layout", "slice": "layout", "chunk": "layout", "split": "layout", "roll": "layout", "expand": "layout",
    "channel_shuffle": "layout",
    "relative_position_attention": "maxvit",
    "add": "merge", "concat": "merge", "mul": "merge",
    "activation": "named_activation",
    "batchnorm1d": "norm", "batchnorm2d": "norm", "batchnorm3d": "norm", "instancenorm1d": "norm",
    "instancenorm2d": "norm", "instancenorm3d": "norm", "layernorm": "norm", "rmsnorm": "norm", "groupnorm": "norm",
    "pad": "pad",
    "maxpool1d": "pool", "maxpool2d": "pool", "maxpool3d": "pool", "avgpool1d": "pool", "avgpool2d": "pool",
    "avgpool3d": "pool", "adaptive_avgpool1d": "pool", "adaptive_avgpool2d": "pool", "adaptive_avgpool3d": "pool",
    "adaptive_maxpool1d": "pool", "adaptive_maxpool2d": "pool", "adaptive_maxpool3d": "pool",
    "mean": "reduce", "sum": "reduce", "amax": "reduce",
    "conv_transpose1d": "resample", "conv_transpose2d": "resample", "conv_transpose3d": "resample",
    "upsample": "resample", "pixel_shuffle": "resample", "pixel_unshuffle": "resample",
    "embedding": "sequence", "lstm": "sequence", "gru": "sequence", "sdpa": "sequence", "positions": "sequence",
    "rope": "sequence",
    "shifted_window_attention": "swin", "patch_merging": "swin",
    "parameter": "tensor", "buffer": "tensor",
}

REGISTRY.declare_builtin(__name__, BUILTIN_MODULES)

# What a plugin's op class uses (docs/plugins.md): the base class, the attribute types and `register`.
__all__ = ["REGISTRY", "BUILTIN_MODULES", "Op", "Shape", "ShapeError", "Bool", "Choice", "Float", "Int", "Ints",
           "fmt_shape", "prod", "register"]
