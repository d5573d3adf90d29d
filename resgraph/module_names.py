"""Names a spec node or block call cannot have as a torch submodule: Python keywords, and the attributes a compiled
module already has (`forward`, `to`, `eval`, `training`, ...). Used by `validate` (a warning) and by lowering
(which renames the module), so that such a name never breaks `compile`; no torch import here.
"""

from __future__ import annotations

import functools
import keyword
import re
from typing import TYPE_CHECKING, Collection

if TYPE_CHECKING:  # pragma: no cover
    from .diagnostics import Diagnostics, Note, Span
    from .graph import Graph

# The attributes of a compiled module (fx.GraphModule, nn.Module, nn.Sequential) in torch 2.x, dunders left out;
# tests/test_lower.py checks this list against the installed torch, and lowering adds whatever else torch has.
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "_CALL", "_apply", "_backward_hooks", "_backward_pre_hooks", "_boxed_call", "_buffers",
    "_call_impl", "_code", "_compiled_call_impl", "_create_node_hooks", "_deepcopy_hooks", "_deepcopy_init",
    "_erase_node_hooks", "_forward_hooks", "_forward_hooks_always_called", "_forward_hooks_with_kwargs",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_get_backward_hooks", "_get_backward_pre_hooks",
    "_get_item_by_idx", "_get_name", "_graph", "_is_full_backward_hook", "_lineno_map", "_load_from_state_dict",
    "_load_state_dict_post_hooks", "_load_state_dict_pre_hooks", "_maybe_warn_non_full_backward_hook", "_modules",
    "_named_members", "_non_persistent_buffers_set", "_parameters", "_prologue_start", "_recompile_submodules",
    "_register_create_node_hook", "_register_deepcopy_hook", "_register_erase_node_hook",
    "_register_load_state_dict_pre_hook", "_register_replace_node_hook", "_register_state_dict_hook",
    "_replace_hooks", "_replicate_for_data_parallel", "_repr_html_", "_save_to_state_dict", "_set_replace_hook",
    "_share_key", "_shared", "_slow_forward", "_state_dict_hooks", "_state_dict_pre_hooks", "_tracer_cls",
    "_tracer_extras", "_unregister_create_node_hook", "_unregister_deepcopy_hook", "_unregister_erase_node_hook",
    "_unregister_replace_node_hook", "_version", "_wrapped_call", "_wrapped_call_impl", "add_module",
    "add_submodule", "append", "apply", "bfloat16", "buffers", "call_super_init", "children", "code", "compile",
    "cpu", "cuda", "delete_all_unused_submodules", "delete_submodule", "double", "dump_patches", "eval", "extend",
    "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "graph",
    "half", "insert", "ipu", "load_state_dict", "meta", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "pop", "print_readable", "recompile",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "shape_env",
    "share_memory", "state_dict", "to", "to_empty", "to_folder", "train", "training", "type", "xpu", "zero_grad"
})


_DUNDER = re.compile(r"__[A-Za-z0-9](?:\w*[A-Za-z0-9])?__")   # Python's special names: `__init__`, not `__init___`


def is_reserved(name: str, attributes: Collection[str] = MODULE_ATTRIBUTES) -> bool:
    """True when `name` cannot be a submodule attribute: a keyword, a dunder or an attribute modules have."""
    if attributes is MODULE_ATTRIBUTES:
        return _reserved(name)
    return keyword.iskeyword(name) or _DUNDER.fullmatch(name) is not None or name in attributes


@functools.lru_cache(maxsize=4096)   # validate asks once per node, and nets repeat their few local names
def _reserved(name: str) -> bool:
    return keyword.iskeyword(name) or _DUNDER.fullmatch(name) is not None or name in MODULE_ATTRIBUTES


def module_attribute(name: str, taken: Collection[str], attributes: Collection[str] = MODULE_ATTRIBUTES) -> str:
    """The attribute a node's module gets: its own name, or, where that is reserved, the name followed by
    underscores (`forward` -> `forward_`), as many as keep it apart from the other names of its scope."""
    if not is_reserved(name, attributes):
        return name
    attribute = name + "_"
    while attribute in taken or is_reserved(attribute, attributes):
        attribute += "_"
    return attribute


def warn_reserved_names(graph: "Graph", diagnostics: "Diagnostics") -> None:
    """Warn (RG039) once per definition where a node or block call is renamed in the compiled module, so that
    its state_dict keys (`forward_.weight`) differ from the spec's name."""
    # The common case, checked without building every scope's names: each distinct name once (nets repeat
    # their few local names; the instances of one call share its path)
    names = {node.name[len(node.prefix):] for node in graph.nodes.values() if node.op is not None}
    call_paths = {instance.call for instance in graph.instances.values()}
    if not any(map(_reserved, names)) and not any(_reserved(call.rpartition(".")[2]) for call in call_paths):
        return
    calls = graph.block_calls()
    scopes: dict[str, list[str]] = {}
    for node in graph:
        if node.op is not None:
            scopes.setdefault(node.prefix[:-1], []).append(node.local_name)
    for scope, made in calls.items():
        scopes.setdefault(scope, []).extend(call.rpartition(".")[2] for call in made)
    for scope, names in scopes.items():
        taken = frozenset(names)
        for name in names:
            attribute = module_attribute(name, taken)
            if attribute == name:
                continue
            span, notes = _where(graph, scope, name, calls)
            what = "a Python keyword" if keyword.iskeyword(name) else "an attribute every torch module has"
            diagnostics.warning("RG039", f"`{name}` is {what}, so its module is named `{attribute}` "
                                f"(state_dict keys `{attribute}.*`)", span, notes=notes,
                                help=f"rename the node, e.g. to `{name}_layer`, to choose the name yourself")


def _where(graph: "Graph", scope: str, name: str, calls: dict) -> "tuple[Span | None, tuple[Note, ...]]":
    """The span of the node or block call `name` in `scope`, and its notes (None where it cannot be found)."""
    path = f"{scope}.{name}" if scope else name
    node = graph.nodes.get(path)
    if node is not None and node.op is not None:
        return node.span, node.notes
    instance = calls.get(scope, {}).get(path, [None])[0]
    if instance is not None:
        depth, parent = 1, instance.call.rpartition(".")[0]
        while parent in graph.instances:
            depth, parent = depth + 1, graph.instances[parent].call.rpartition(".")[0]
        for node in graph:
            if node.name.startswith(instance.name + ".") and len(node.notes) >= depth:
                note = node.notes[depth - 1]
                return note.span, node.notes[:depth - 1]
    return None, ()



def module_paths(graph: "Graph") -> tuple[dict[str, str], dict[str, str]]:
    """Each op node's module (or tensor) path in the compiled network, as lowering names it (no torch), and the
    path of the shortcut module of each `add` with a `shortcut_name`. A node's path is that of its block instance,
    then its `key` or its name; an instance's is its call's `key` or name in the caller's instance, then, where the
    call repeats, the repetition's name (`layer1.0`, `trunk_output.block1.block1-0`). A single name torch reserves
    is renamed as lowering renames it (`forward_`). `resgraph expand` keys its flat nodes with these paths, so that
    the flat spec keeps the state_dict keys."""
    calls = graph.block_calls()
    own: dict[str, list[str]] = {}
    for node in graph:
        if node.op is not None:
            own.setdefault(node.prefix[:-1], []).append(node.local_name)

    def attribute(scope: str, name: str) -> str:
        if "." in name or not _reserved(name):   # a dotted `key` is a path the user chose, as in lowering
            return name
        taken = frozenset(own.get(scope, []) + [call.rpartition(".")[2] for call in calls.get(scope, {})])
        return module_attribute(name, taken)

    instances: dict[str, str] = {}   # instance -> its module path

    def instance_path(scope: str) -> str:
        if scope not in instances:
            instances[scope] = graph.scope_path(scope, attribute)
        return instances[scope]

    nodes: dict[str, str] = {}
    shortcuts: dict[str, str] = {}
    for node in graph:
        if node.op is None:
            continue
        scope = node.prefix[:-1]
        nodes[node.name] = _joined(instance_path(scope), attribute(scope, node.module_name))
        shortcut = getattr(node.op, "shortcut_name", None)
        if shortcut is not None:
            shortcuts[node.name] = _joined(instance_path(scope), attribute(scope, shortcut))
    return nodes, shortcuts


def _joined(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
