"""The op registry: every op is one class in one file of this package, registered by name."""

from . import activation, conv, dense, merge, norm, pool  # noqa: F401  (registration side effects)
from .base import REGISTRY, Op, Shape, ShapeError

__all__ = ["REGISTRY", "Op", "Shape", "ShapeError"]
