"""The op registry: every op is one class in one file of this package, registered by name."""

# registration side effects: importing a module registers its ops
from . import (activation, arithmetic, attention, conv, dense, layout, maxvit, merge, named_activation,  # noqa: F401
               norm, pad, pool, reduce, resample, sequence, swin, tensor)
from .base import REGISTRY, Bool, Choice, Float, Int, Ints, Op, Shape, ShapeError, fmt_shape, prod, register

# What a plugin's op class uses (docs/plugins.md): the base class, the attribute types and `register`.
__all__ = ["REGISTRY", "Op", "Shape", "ShapeError", "Bool", "Choice", "Float", "Int", "Ints", "fmt_shape", "prod",
           "register"]
