"""The op registry: every op is one class in one file of this package, registered by name."""

# registration side effects: importing a module registers its ops
from . import (activation, arithmetic, attention, conv, dense, merge, named_activation, norm, pad, pool,  # noqa: F401
               reduce, resample)
from .base import REGISTRY, Op, Shape, ShapeError

__all__ = ["REGISTRY", "Op", "Shape", "ShapeError"]
