"""The op registry: every op is one class in one file of this package, registered by name."""

# registration side effects: importing a module registers its ops
from . import activation, attention, conv, dense, layout, merge, named_activation, norm, pool, resample, tensor  # noqa: F401
from .base import REGISTRY, Op, Shape, ShapeError

__all__ = ["REGISTRY", "Op", "Shape", "ShapeError"]
