"""Plugins: ops that users define as classes of the built-in ops' form, in their own Python packages.

A spec names the modules it needs (`plugins: [my_package.my_ops]`); installed packages may also offer
modules in the entry-point group `resgraph.ops`. Loading a plugin imports it: it is code that runs, so
only the plugins a spec names or that are installed are loaded, and `--no-plugins` loads none. Parsing
(pass 2) asks this module which ops a file may use; nothing here imports torch.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass
from .ops.base import REGISTRY, Op, is_builtin

ENTRY_POINT_GROUP = "resgraph.ops"


@dataclass(frozen=True)
class Loaded:
    """What loading one plugin module gave: the ops it registered, or the error (a one-line text)."""

    module: str
    ops: tuple[str, ...] = ()
    error: str | None = None


_loaded: dict[str, Loaded] = {}
_installed: list[tuple[str, str]] | None = None   # (entry point name, module) of installed plugins


def _ops_of(module: str) -> tuple[str, ...]:
    """The plugin ops whose classes are defined in `module` or below it."""
    return tuple(sorted(name for name, cls in REGISTRY.items() if not is_builtin(cls)
                        and (cls.__module__ == module or cls.__module__.startswith(module + "."))))


def load_plugin(module: str) -> Loaded:
    """Import `module` (once per process) and report the ops it registered; never raises."""
    if module in _loaded:
        return _loaded[module]
    if module == "resgraph" or module.startswith("resgraph."):
        result = Loaded(module, error="resgraph's own modules are not plugins")
    else:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a plugin's import may raise anything; it becomes a diagnostic
            result = Loaded(module, error=_describe(exc))
        else:
            ops = _ops_of(module)
            result = Loaded(module, ops) if ops else Loaded(
                module, error="it registers no ops (define op classes decorated with `@register`)")
    _loaded[module] = result
    return result


def installed_plugins() -> list[tuple[str, str]]:
    """(entry point name, module) of every installed plugin (entry-point group `resgraph.ops`), once
    per process. An entry point names a module (`cbam = resgraph_cbam.ops`); `module:attribute` loads
    the module."""
    global _installed
    if _installed is None:
        from importlib.metadata import entry_points

        _installed = sorted({(point.name, point.value.partition(":")[0].strip())
                             for point in entry_points(group=ENTRY_POINT_GROUP)})
    return _installed


def plugin_of(op: Op | type[Op]) -> str | None:
    """The module of a plugin op's class (None for a built-in op)."""
    cls = op if isinstance(op, type) else type(op)
    return None if is_builtin(cls) else cls.__module__


def _describe(exc: BaseException) -> str:
    """`ValueError: message (file.py:12)`: the exception and the innermost frame that raised it."""
    own = __file__.rpartition("/")[0] + "/"   # resgraph's own frames say nothing about the plugin
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(("<", own))
              and "importlib" not in f.filename]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}" + (f": {text}" if text else "") + where


def plugin_frame(exc: BaseException, op: Op) -> str | None:
    """`path/to/ops.py:42` of the innermost frame of `exc` in the plugin's own files, for a diagnostic."""
    module = sys.modules.get(type(op).__module__)
    package = (getattr(module, "__file__", None) or "").rpartition("/")[0]
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if package and frame.filename.startswith(package):
            found = f"{frame.filename}:{frame.lineno}"
    return found


def describe_exception(exc: BaseException) -> str:
    """`ValueError: message`, without the location."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}" + (f": {text}" if text else "")


__all__ = ["ENTRY_POINT_GROUP", "Loaded", "load_plugin", "installed_plugins", "plugin_of", "plugin_frame",
           "describe_exception"]
