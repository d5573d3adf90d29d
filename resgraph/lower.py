"""Pass 5 of the pipeline: the shaped graph IR -> nested torch.fx GraphModules.

Each op lowers itself through a `Builder`. The network and every block instance become one
GraphModule each (a repeated call an `nn.Sequential` of them), so module paths and state_dict
keys are the spec's dotted names, as in a hand-written model, and each forward is straight-line.
"""

from __future__ import annotations

import keyword
import operator
import re
import sys
import warnings
import weakref
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from .graph import Graph, Node
from .module_names import MODULE_ATTRIBUTES, module_attribute

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm,
          nn.RMSNorm)


class Builder:
    """What an op's `lower` may do: add a submodule call or a function call for the current node."""

    def __init__(self, graph: Graph, users: dict[str, list[str]] | None = None, taken: frozenset[str] = frozenset()
                 ) -> None:
        self.ir = graph
        self.fx = fx.Graph()
        self.modules: dict[str, nn.Module] = {}   # attribute name (within the scope) -> module
        self.spec_names: dict[str, str] = {}      # attribute name -> the spec's name, where they differ
        self.taken = taken                        # the spec's names in the scope, which renamed ones avoid
        self.node: Node | None = None
        self._users = users if users is not None else graph.users()
        self._outputs = set(graph.outputs) | set(graph.training_outputs)   # returned: never overwritten
        for instance in graph.instances.values():   # nor what a block with several outputs returns
            if instance.outputs is not None:
                self._outputs.update(instance.outputs)

    def call_module(self, module: nn.Module, args: Sequence[Any], name: str | None = None,
                    kwargs: dict | None = None) -> fx.Node:
        """Register `module` as the node's (or as `name` within the node's block) and call it."""
        assert self.node is not None
        target = name or self.node.module_name
        if "." not in target:   # a `key` is a path the user chose; a plain name may be one torch reserves
            target = self.attribute(target)
        if target in self.modules:
            raise ValueError(f"two modules would be named `{self.node.prefix + target}`")
        self.modules[target] = module
        if target == self.node.local_name or name is not None:
            return self._traced(self.fx.call_module(target, tuple(args), kwargs or {}))
        # a `key` (`block.0`): the value is still named after the node, `dwconv = getattr(self.block, "0")(x)`
        return self._traced(self.fx.create_node("call_module", target, tuple(args), kwargs or {},
                                                name=_identifier(self.node.local_name)))

    def get_attr(self, tensor: torch.Tensor, persistent: bool = True,
                 recompute: Callable[[], torch.Tensor] | None = None) -> fx.Node:
        """Register `tensor` (an `nn.Parameter`, or a buffer) as the node's own attribute and read it.

        `recompute` makes a buffer left out of the state_dict (`persistent=False`) again: no checkpoint holds
        it, so after a network built on the meta device is materialised (`load_state_dict(..., assign=True)`,
        or `to_empty` and a load) it is computed anew (see `_recompute_buffers`)."""
        assert self.node is not None
        target = self.node.module_name
        if target in self.modules:
            raise ValueError(f"two attributes would be named `{self.node.prefix + target}`")
        self.modules[target] = (tensor if persistent or isinstance(tensor, nn.Parameter)
                                else _Volatile(tensor, recompute))
        return self._traced(self.fx.create_node("get_attr", target, name=_identifier(self.node.local_name)))

    def attribute(self, name: str) -> str:
        """The attribute of the module named `name` in the spec: `forward` or `class` cannot be one (see
        module_names.py; `validate` warns), and become `forward_`, `class_`."""
        attribute = module_attribute(name, self.taken, _module_attributes())
        if attribute != name:
            self.spec_names[attribute] = name
        return attribute

    def shortcut(self, module: nn.Module | None, arg: Any, name: str) -> Any:
        """A shortcut path: `module` (a projection or zero-padding) applied to `arg`, or `arg` itself."""
        return arg if module is None else self.call_module(module, [arg], name=name)

    def call_function(self, function: Callable, args: Sequence[Any], kwargs: dict | None = None) -> fx.Node:
        assert self.node is not None
        return self._traced(self.fx.create_node("call_function", function, tuple(args), kwargs or {},
                                                name=_identifier(self.node.local_name)))

    def call_method(self, method: str, args: Sequence[Any], kwargs: dict | None = None) -> fx.Node:
        """`args[0].method(*args[1:])`: for the ops whose tensor method is the fast path (`F.relu` is a
        Python wrapper around `Tensor.relu`; calling it cost 2% of a batch-1 ResNet-110 forward)."""
        assert self.node is not None
        return self._traced(self.fx.create_node("call_method", method, tuple(args), kwargs or {},
                                                name=_identifier(self.node.local_name)))

    def resize_like(self, x: Any, ref: Any, kwargs: dict) -> fx.Node:
        """`F.interpolate(x, size=ref.shape[2:], **kwargs)`: resized to `ref`'s spatial size when the network
        runs, as torchvision's segmentation models resize to the image's."""
        assert self.node is not None
        shape = self._traced(self.fx.create_node("call_function", getattr, (ref, "shape")))
        size = self._traced(self.fx.create_node("call_function", operator.getitem, (shape, slice(2, None))))
        import torch.nn.functional as F

        return self.call_function(F.interpolate, [x], {"size": size, **kwargs})

    def _traced(self, node: fx.Node) -> fx.Node:
        """Remember which spec node the call belongs to, for errors raised while it runs."""
        span = self.node.span
        node.meta[SPEC_NODE] = (self.node.name, self.node.op.op_name(), str(span) if span else None)
        return node

    def can_overwrite(self, position: int) -> bool:
        """True when input `position` may be modified in place: a fresh tensor that only this node reads.

        This is the rule torchvision's hand-written blocks follow (`out += identity`,
        `relu(inplace=True)` after a norm); autograd's version counters would catch a mistake.
        """
        assert self.node is not None
        producer = self.ir.nodes[self.node.inputs[position]]
        return (producer.op is not None and type(producer.op).fresh_output
                and len(self._users[producer.name]) == 1 and producer.name not in self._outputs)


_ATTRIBUTES: list[frozenset[str]] = []


def _module_attributes() -> frozenset[str]:
    """module_names.MODULE_ATTRIBUTES, and any attribute this torch's modules have beyond it."""
    if not _ATTRIBUTES:
        probe = CompiledNetwork(nn.Module(), fx.Graph(), class_name="Probe")
        found = set(dir(probe)) | set(vars(probe)) | set(dir(nn.Sequential()))
        _ATTRIBUTES.append(MODULE_ATTRIBUTES | {name for name in found if not name.startswith("__")})
    return _ATTRIBUTES[0]


def _identifier(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit() or keyword.iskeyword(text) or text == "self":  # `self`: forward's own
        text = "_" + text
    return text


def _class_name(name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words if w) or "Network"
    return text if text[0].isalpha() else "Net" + text


def lower_to_fx(graph: Graph, *, seed: int | None = 0, zero_init_residual: bool = False) -> fx.GraphModule:
    """Build the module on the current default device.

    Requires every node to have a shape. Initialisation is torchvision's (each op's own
    `lower` applies it) and is drawn from a private RNG seeded with `seed`, so the global RNG
    is left untouched; `seed=None` uses the global RNG.
    """
    if seed is None:
        return _build(graph, zero_init_residual)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(graph, zero_init_residual)


def _build(graph: Graph, zero_init_residual: bool) -> fx.GraphModule:
    modules: dict[str, nn.Module] = {}   # every module by its full path, for zero_init_residual
    lowering = _ScopeLowering(graph, modules)
    module = lowering.build("")
    ties = _ties(graph, lowering.node_modules, module)
    if ties:
        hold_ties(module, ties)
    if graph.training_outputs:
        module = TrainingOutputsNetwork(module, graph)
        if ties:
            hold_ties(module, ties)
    if zero_init_residual:
        _zero_init_residual(graph, modules)
    if any(getattr(owner, "_resgraph_recompute", None) for owner in module.modules()):
        module.register_load_state_dict_post_hook(_recompute_buffers)
    _NETWORKS[module] = graph
    # What the error notes need of the IR, kept in the module itself so that copies and pickles keep it.
    module._resgraph_inputs = tuple((name, graph.nodes[name].shape) for name in graph.inputs)
    return module


# The IR each compiled network came from, for its notebook summary; held beside the module rather than
# in it, so that copying or pickling a model does not copy the IR. A copy shows its text repr.
_NETWORKS: weakref.WeakKeyDictionary[nn.Module, Graph] = weakref.WeakKeyDictionary()


def _ties(graph: Graph, node_modules: dict[str, list[nn.Module]], network: nn.Module
          ) -> tuple[tuple[str, str, str, str], ...]:
    """(module path, parameter, module path of the tensor's owner, its parameter) for every `tie` of the graph
    (`node.meta['tied']`, left by the ties pass), the paths relative to `network`."""
    tied = [node for node in graph if node.meta.get("tied")]
    if not tied:
        return ()
    paths = {id(module): path for path, module in network.named_modules(remove_duplicate=False)}

    def owner(name: str, parameter: str) -> str:
        for module in node_modules.get(name, ()):
            if isinstance(module, nn.Module) and isinstance(module._parameters.get(parameter), nn.Parameter):
                return paths[id(module)]
        raise ValueError(f"`{name}` made no module with a parameter `{parameter}` to tie")

    return tuple((owner(node.name, name), name, owner(source, parameter), parameter)
                 for node in tied for name, (source, parameter) in node.meta["tied"].items())


def hold_ties(module: nn.Module, ties: tuple[tuple[str, str, str, str], ...]) -> None:
    """Make the tied modules of `module` hold their owners' `nn.Parameter`s, now and again after anything that
    replaces parameters: `to_empty` and `.to()` (`_apply`, which makes a parameter per module) and
    `load_state_dict` (with `assign=True`, one per key). A state_dict that holds a tied tensor once (under its
    owner's key, as Hugging Face's safetensors files do) loads strictly too."""
    module.__dict__["_resgraph_ties"] = ties
    module.register_load_state_dict_post_hook(_retie_after_load)
    retie(module)


def retie(module: nn.Module) -> None:
    for target, name, source, parameter in getattr(module, "_resgraph_ties", ()):
        setattr(module.get_submodule(target), name, module.get_submodule(source).get_parameter(parameter))


def _retie_after_load(module: nn.Module, incompatible: Any) -> None:
    retie(module)
    for target, name, source, parameter in getattr(module, "_resgraph_ties", ()):
        key, owner = f"{target}.{name}" if target else name, f"{source}.{parameter}" if source else parameter
        if key in incompatible.missing_keys and owner not in incompatible.missing_keys:
            incompatible.missing_keys.remove(key)


class _ScopeLowering:
    """Lowers the network as nested modules, as a hand-written model is: one GraphModule per block
    instance (its class named after the block), `nn.Sequential` for a repeated call. Every module
    call in generated code is then one attribute away (`self.conv1`), never `getattr(self.layer1, "0")`,
    which costs measurable Python time in deep nets."""

    def __init__(self, graph: Graph, modules: dict[str, nn.Module]) -> None:
        self.graph, self.modules = graph, modules
        self.users = graph.users()
        order = graph.topological_order()
        self.order = order
        self.position = {node.name: index for index, node in enumerate(order)}
        self.own: dict[str, list[Node]] = {}
        for node in order:
            if not node.is_input:
                self.own.setdefault(node.prefix[:-1], []).append(node)
        self.first = graph.scope_starts(order)
        self.calls = graph.block_calls()
        self.exposed_cache: dict[str, list[str]] = {}
        self.node_modules: dict[str, list[nn.Module]] = {}   # node name -> the modules its lowering made
        # Where nodes run in another order than they are declared (a node reading one declared after it),
        # each scope's modules are put back in declaration order: the state_dict then follows the spec, as
        # an nn.Module's follows its `__init__` whatever order its `forward` calls them in (Hugging Face's
        # Llama registers `self_attn` and `mlp` before the norms that run first).
        self.declared: dict[str, int] | None = None
        if not graph.in_declaration_order():
            declaration = list(graph.nodes.values())
            self.declared = {node.name: position for position, node in enumerate(declaration)}
            self.declared.update(graph.scope_starts(declaration))

    def exposed(self, scope: str) -> list[str]:
        """The network outputs inside block instance `scope` that its module returns after its own output."""
        if scope not in self.exposed_cache:
            self.exposed_cache[scope] = self.graph.exposed_outputs(scope)
        return self.exposed_cache[scope]

    def build(self, scope: str) -> fx.GraphModule:
        graph = self.graph
        taken = frozenset([n.local_name for n in self.own.get(scope, [])]
                          + [call.rpartition(".")[2] for call in self.calls.get(scope, {})])
        b = Builder(graph, self.users, taken)
        values: dict[str, fx.Node] = {}
        if scope:
            instance = graph.instances[scope]
            names = graph_inputs = list(instance.inputs)
            placeholders = _block_input_names(len(names))
            outputs = (instance.outputs or [instance.output]) + self.exposed(scope)
            class_name = _class_name(instance.block)
        else:
            graph_inputs = list(graph.inputs)
            placeholders = ["x"] if graph_inputs == ["input"] else [_identifier(name) for name in graph_inputs]
            outputs = list(graph.outputs) + list(graph.training_outputs)
            class_name = _class_name(graph.name)
        for name, placeholder in zip(graph_inputs, placeholders):
            if name not in values:
                values[name] = b.fx.placeholder(placeholder)
        called_by_index: list[tuple[str, nn.Module]] = []
        items: list[tuple[int, Any]] = [(self.position[node.name], node) for node in self.own.get(scope, [])]
        items += [(self.first[call], call) for call in self.calls.get(scope, {})]
        ranks: dict[str, int] = {}   # attribute -> the declaration position of the node or call that made it
        rank = 0
        for _, item in sorted(items, key=lambda pair: pair[0]):
            if self.declared is not None:   # what the item before made
                ranks.update((attribute, rank) for attribute in b.modules if attribute not in ranks)
                rank = self.declared[item.name if isinstance(item, Node) else item]
            if isinstance(item, Node):
                b.node = item
                args = [values[name] for name in item.inputs]
                shapes = [graph.nodes[name].shape for name in item.inputs]
                before = len(b.modules)
                values[item.name] = item.op.lower(b, args, shapes, item.shape, item.meta)
                if len(b.modules) > before:
                    self.node_modules[item.name] = list(b.modules.values())[before:]
                for attribute, module in b.modules.items():
                    if isinstance(module, nn.Module):
                        self.modules.setdefault(item.prefix + b.spec_names.get(attribute, attribute), module)
                continue
            instances = self.calls[scope][item]
            children = [self.build(i.name) for i in instances]
            child = children[0] if instances[0].index is None else \
                nn.Sequential(OrderedDict((i.name.rpartition(".")[2], c) for i, c in zip(instances, children)))
            local = instances[0].key or item.rpartition(".")[2]
            if "." not in local:   # as for an op node's key: a single name may be one torch reserves (`forward`)
                local = b.attribute(local)
            if local in b.modules:
                raise ValueError(f"two modules would be named `{scope + '.' if scope else ''}{local}`")
            b.node = None
            b.modules[local] = child
            args = tuple(values[name] for name in instances[0].inputs)
            shared = args[1:]   # a repeated call's inputs after the first reach every instance
            several = instances[-1].outputs   # a block with several outputs returns a tuple (never repeated)
            if not any(self.exposed(i.name) for i in instances) and (instances[0].index is None or not shared) \
                    and several is None:
                values[instances[-1].output] = b.fx.call_module(local, args)
                continue
            # A network output inside these instances (each returns (output, *those nodes)), or inputs they share:
            # called one by one (`self.layer1[0]`: the GraphModule made below copies only the modules called, so
            # `layer1` is set again).
            called_by_index.append((local, child))
            for position, instance in enumerate(instances):
                result = b.fx.call_module(local if instance.index is None else f"{local}.{position}", args)
                inner = self.exposed(instance.name)
                own = instance.outputs or [instance.output]
                for index, name in enumerate(inner, start=len(own)):
                    values[name] = b.fx.create_node("call_function", operator.getitem, (result, index),
                                                    name=_identifier(name))
                if instance.outputs is not None:   # `backbone_0 = self.backbone(x)[0]`, ... as `call:k` reads them
                    items = [b.fx.create_node("call_function", operator.getitem, (result, index),
                                              name=_identifier(f"{item.rpartition('.')[2]}_{index}"))
                             for index in range(len(own))]
                    for name, value in zip(own, items):
                        values.setdefault(name, value)
                    result = items[0]
                elif inner:
                    result = b.fx.call_function(operator.getitem, (result, 0))
                args = (result, *shared)
            values[instances[-1].output] = args[0]
        results = [values[name] for name in outputs]
        if not scope and graph.output_keys:   # a mapping `outputs`: a dict, in the spec's order
            b.fx.output(dict(zip(graph.output_keys, results)))
        else:
            b.fx.output(results[0] if len(results) == 1 else tuple(results))
        root = nn.Module()
        for attribute, module in b.modules.items():
            _place(root, attribute, module)
        built = (CompiledNetwork if scope == "" else CompiledModule)(root, b.fx, class_name=class_name)
        for attribute, module in called_by_index:
            setattr(built, attribute, module)
        for attribute, module in b.modules.items():
            if isinstance(module, _Volatile):  # fx copies every tensor attribute as a persistent buffer
                owner, _, name = attribute.rpartition(".")
                built.get_submodule(owner)._non_persistent_buffers_set.add(name)
                if module.recompute is not None:
                    built.__dict__.setdefault("_resgraph_recompute", {})[attribute] = module.recompute
        if self.declared is not None:
            ranks.update((attribute, rank) for attribute in b.modules if attribute not in ranks)
            _in_declaration_order(built, ranks)
        return built


def _in_declaration_order(module: nn.Module, ranks: dict[str, int]) -> None:
    """Reorder the children, parameters and buffers of `module` (and of the plain containers a `key` made in
    it) by `ranks`, the declaration position of what made each attribute; a container ranks as its first
    attribute. fx registers them in the order `forward` first uses them."""
    first: dict[str, int] = {}   # attribute or container path -> the smallest rank at or under it
    for attribute, rank in ranks.items():
        parts = attribute.split(".")
        for end in range(1, len(parts) + 1):
            path = ".".join(parts[:end])
            first[path] = min(first.get(path, rank), rank)

    def visit(owner: nn.Module, prefix: str) -> None:
        for store in (owner._modules, owner._parameters, owner._buffers):
            for name in sorted(store, key=lambda name: first.get(prefix + name, sys.maxsize)):   # fx's own: last
                store[name] = store.pop(name)
        for name, child in owner._modules.items():
            if prefix + name not in ranks and child is not None:   # a container of keyed attributes
                visit(child, prefix + name + ".")

    visit(module, "")


def _same_order(copy: nn.Module, original: nn.Module) -> None:
    """A copy's submodules (deep copy, unpickled) in the original's order (fx's __init__ registers them in call
    order)."""
    names = [name for name in original._modules if name in copy._modules]
    if list(copy._modules) != names:
        for name in names + [name for name in list(copy._modules) if name not in names]:
            copy._modules[name] = copy._modules.pop(name)


class _Volatile:
    """A buffer left out of the state_dict (`persistent: false`), and how to compute it again (or None)."""

    def __init__(self, tensor: torch.Tensor, recompute: Callable[[], torch.Tensor] | None = None) -> None:
        self.tensor = tensor
        self.recompute = recompute


def _recompute_buffers(network: nn.Module, incompatible_keys: Any) -> None:
    """A load_state_dict post-hook of a network with buffers left out of the state_dict: computes them again.

    Torch's ways of materialising a network built on the meta device leave such a buffer wrong, since no
    checkpoint holds it: `load_state_dict(sd, assign=True)` leaves it on meta (the forward then computes
    nothing), and `to_empty(device=...)` before a load leaves it uninitialised memory. This is torch's and
    Hugging Face's answer for buffers that are a function of the configuration (torchtune's rotary
    `reset_parameters`, transformers' `_init_weights` of `inv_freq`): compute them again, here after every
    load, in place on the buffer's own device and dtype; one still on meta goes to the device (and, if it is
    floating point, the dtype) of the loaded weights, and stays on meta while they are."""
    owners = [(owner, recipes) for owner in network.modules()
              if (recipes := owner.__dict__.get("_resgraph_recompute"))]
    loaded = next((t for t in (*network.parameters(), *network.buffers()) if not t.is_meta), None)
    floating = next((p.dtype for p in network.parameters() if p.is_floating_point() and not p.is_meta), None)
    with torch.no_grad():
        for owner, recipes in owners:
            for attribute, recompute in recipes.items():
                path, _, name = attribute.rpartition(".")
                holder = owner.get_submodule(path)
                current = holder._buffers.get(name)
                if current is None:
                    continue
                if not current.is_meta:
                    with torch.device(current.device):
                        current.copy_(recompute())
                elif loaded is not None:
                    dtype = floating if current.is_floating_point() and floating is not None else current.dtype
                    with torch.device(loaded.device):
                        holder._buffers[name] = recompute().to(dtype)


def _place(root: nn.Module, path: str, value: Any) -> None:
    """Put a module, parameter or buffer at the dotted `path` under `root`, making plain containers on the way
    (a node's `key`: `block.0`, `encoder.pos_embedding`)."""
    *containers, name = path.split(".")
    for part in containers:
        child = root._modules.get(part)
        if child is None:
            child = nn.Module()
            root.add_module(part, child)
        root = child
    if isinstance(value, nn.Parameter):
        root.register_parameter(name, value)
    elif isinstance(value, _Volatile):
        root.register_buffer(name, value.tensor, persistent=False)
    elif isinstance(value, torch.Tensor):
        root.register_buffer(name, value)
    else:
        root.add_module(name, value)


SPEC_NODE = "resgraph_node"   # fx node meta: (spec node name, op, "file:line:col")


def _call_network(self, *args, **kwargs):
    """A compiled network's `__call__`: an error raised inside it gets a note naming the spec node (and its
    file, line and column) that was running, and the declared input shapes where the inputs differ."""
    try:
        return nn.Module.__call__(self, *args, **kwargs)
    except Exception as error:
        if hasattr(error, "add_note"):  # Python 3.11+
            for note in _error_notes(self, error, args):
                error.add_note(note)
        raise


def _error_notes(network: nn.Module, error: BaseException, args: tuple) -> list[str]:
    notes = []
    running = None   # the innermost generated forward in the traceback, and its line
    trace = error.__traceback__
    while trace is not None:
        module = trace.tb_frame.f_locals.get("self")
        if isinstance(module, CompiledModule) and trace.tb_frame.f_code is type(module).forward.__code__:
            running = module, trace.tb_lineno - trace.tb_frame.f_code.co_firstlineno
        trace = trace.tb_next
    if running is not None:
        module, line = running
        index = (getattr(module, "_lineno_map", None) or {}).get(line)   # fx's generated line -> node index
        nodes = list(module.graph.nodes)
        meta = nodes[index].meta.get(SPEC_NODE) if index is not None and index < len(nodes) else None
        if meta is not None:
            name, op, location = meta
            notes.append(f"resgraph: raised in node `{name}` ({op})" + (f", defined at {location}" if location else ""))
    inputs = getattr(network, "_resgraph_inputs", None)
    if inputs is not None:
        declared = [tuple(shape) for _, shape in inputs]
        given = [tuple(arg.shape[1:]) if isinstance(arg, torch.Tensor) else None for arg in args]
        if len(given) != len(declared) or any(g != d for g, d in zip(given, declared)):
            shown = ", ".join(f"`{name}` as [{', '.join(map(str, shape))}]" for name, shape in inputs)
            got = ", ".join("[" + ", ".join(map(str, arg.shape)) + "]" if isinstance(arg, torch.Tensor)
                            else type(arg).__name__ for arg in args)
            notes.append(f"resgraph: the spec declares {shown} per sample, after a batch dimension; "
                         f"this call got {got or 'no input'}")
    return notes


class CompiledModule(fx.GraphModule):
    """A GraphModule whose instances with the same generated code share one class, as instances of a
    hand-written block share its class and its `forward`.

    fx gives every GraphModule a class of its own, to hold its own `forward`. Fifty-four block
    classes in a CIFAR ResNet-110 cost 1.8% of a batch-1 forward against one hand-written class
    (attribute lookups through many types; measured with 1x3x4x4 inputs, where Python is all
    there is). Recompiling an instance (a changed `graph`) first moves it to a class of its own,
    so its twins keep their code. Calls also skip fx's wrapper, which only rewrites tracebacks of
    errors in generated code and cost another ~2.5%.
    """

    _shared: weakref.WeakValueDictionary[tuple, type] = weakref.WeakValueDictionary()
    _CALL = nn.Module.__call__

    def recompile(self):
        cls = type(self)
        if self._shared.get(getattr(cls, "_share_key", None)) is cls:
            private = type(cls.__name__, cls.__bases__, {})   # fx's per-instance GraphModuleImpl
            self.__class__ = private
            cls = private
        python_code = super().recompile()
        cls.__call__ = cls._CALL   # through the class: a plain function, not one bound to this instance
        names = tuple(sorted((name, id(value)) for name, value in python_code.globals.items()))
        key = (cls.__bases__, cls.__name__, python_code.src, names)
        twin = self._shared.setdefault(key, cls)
        if twin is not cls:
            self.__class__ = twin
        else:
            cls._share_key = key
        return python_code

    def _repr_html_(self) -> str | None:
        """A notebook shows a compiled network as its summary table (None: the text repr)."""
        graph = _NETWORKS.get(self)
        if graph is None:
            return None
        from .report import summary_html

        return summary_html(graph)

    def _deepcopy_init(self):
        # fx's deepcopy re-runs __init__ without the class name (every copy would be `GraphModule`), and
        # drops the attributes __init__ does not set (the declared inputs of the error notes).
        name = type(self).__name__

        def init(copy, root, graph):
            fx.GraphModule.__init__(copy, root, graph, class_name=name)
            _restore(copy, root.__dict__)
            _same_order(copy, root)

        return init

    def __reduce__(self):
        """Pickle as (class, class name, the module's state, the graph with its nodes' spec locations).

        fx pickles a GraphModule as its generated code and re-traces it on loading: the copy is a plain
        `GraphModule` whose nodes have lost which spec node they came from. This keeps both."""
        state = {key: value for key, value in self.__dict__.items() if key != "_graph"}
        kind = "network" if isinstance(self, CompiledNetwork) else "module"
        return _unpickle_compiled, (kind, type(self).__name__, state, _graph_state(self.graph))


class _KeepsTies:
    """A network's module that ties parameters again after `.to()` and `to_empty` (`hold_ties`)."""

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        retie(self)   # `_apply` makes one new parameter per module, untying what a `tie` tied
        return result


class CompiledNetwork(_KeepsTies, CompiledModule):
    """The network's own module: as a block's, and errors raised in its forward name the spec node."""

    _CALL = _call_network


# Attributes that fx's GraphModule.__init__ resets or does not know, restored on copies and unpickled modules.
_KEPT = ("training", "_resgraph_inputs", "_resgraph_recompute", "meta", "_resgraph_ties")


def _restore(module: nn.Module, state: dict) -> None:
    for key, value in state.items():
        if key in _KEPT or key.endswith("_hooks") or key.endswith("_hooks_with_kwargs"):
            module.__dict__[key] = value


class _Ref:
    """A reference to an earlier node by name, in a pickled graph's arguments."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return _Ref, (self.name,)


class _Function:
    """A call_function target by its qualified name (some of torch's functions, such as `F.max_pool2d`, are
    closures that pickle cannot name)."""

    __slots__ = ("qualified_name",)

    def __init__(self, qualified_name: str) -> None:
        self.qualified_name = qualified_name

    def __reduce__(self):
        return _Function, (self.qualified_name,)

    def resolve(self) -> Callable:
        import importlib

        parts = self.qualified_name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            for part in parts[split:]:
                value = getattr(value, part)
            return value
        raise ImportError(f"cannot find `{self.qualified_name}`")


def _target(node: fx.Node) -> Any:
    if node.op == "call_function":
        try:
            name = fx.node._get_qualified_name(node.target)
            if _Function(name).resolve() is node.target:
                return _Function(name)
        except Exception:  # noqa: BLE001 - not nameable: pickled as itself
            pass
    return node.target


def _graph_state(graph: fx.Graph) -> list[tuple]:
    """The graph as plain data: per node (op, name, target, args, kwargs, spec node), earlier nodes by name."""
    return [(node.op, node.name, _target(node), fx.node.map_arg(node.args, lambda arg: _Ref(arg.name)),
             fx.node.map_arg(node.kwargs, lambda arg: _Ref(arg.name)), node.meta.get(SPEC_NODE))
            for node in graph.nodes]


def _unpickle_compiled(kind: str, class_name: str, state: dict, nodes: list[tuple]) -> fx.GraphModule:
    graph = fx.Graph()
    made: dict[str, fx.Node] = {}

    def resolve(value):
        return fx.node.map_aggregate(value, lambda item: made[item.name] if isinstance(item, _Ref) else item)

    for op, name, target, args, kwargs, spec_node in nodes:
        target = target.resolve() if isinstance(target, _Function) else target
        node = graph.create_node(op, target, resolve(args), resolve(kwargs), name=name)
        if spec_node is not None:
            node.meta[SPEC_NODE] = spec_node
        made[name] = node
    root = nn.Module()
    root.__dict__.update(state)
    module = (CompiledNetwork if kind == "network" else CompiledModule)(root, graph, class_name=class_name)
    _restore(module, state)
    _same_order(module, root)
    return module


class TrainingOutputsNetwork(_KeepsTies, nn.Module):
    """A network with `training_outputs`, returned as torchvision's GoogLeNet and Inception return their
    auxiliary logits: in training, a named tuple of `outputs` then `training_outputs`; in eval, `outputs`
    alone, and the nodes only the training outputs read do not run.

    Two generated forwards share one set of modules (and so one state_dict, with the spec's keys): the
    whole graph for training, and the graph without the training-only nodes for eval. `torch.export` and
    ONNX export see the branch taken in the mode they trace (eval)."""

    def __init__(self, full: CompiledNetwork, graph: Graph) -> None:
        super().__init__()
        self._modules = full._modules   # the same submodules: one state_dict, one `.to()`
        names = [_identifier(name) for name in graph.outputs + graph.training_outputs]
        self.outputs_type = _outputs_type(_class_name(graph.name) + "Outputs", tuple(names))
        eval_graph = fx.Graph()
        values = eval_graph.graph_copy(full.graph, {})
        main = [values] if len(graph.outputs) + len(graph.training_outputs) == 1 else list(values.args) \
            if isinstance(values, fx.Node) else list(values)
        eval_graph.output(main[0] if len(graph.outputs) == 1 else tuple(main[:len(graph.outputs)]))
        for node in reversed(list(eval_graph.nodes)):   # the training-only calls (every call here is pure)
            if node.op not in ("placeholder", "output") and not node.users:
                eval_graph.erase_node(node)
        # Held outside `_modules` (they are views of this module, not children of it).
        self.__dict__["training_forward"] = full
        self.__dict__["eval_forward"] = CompiledNetwork(full, eval_graph, class_name=type(full).__name__)

    def forward(self, *args: Any) -> Any:
        if self.training:
            return self.outputs_type(*self.training_forward(*args))
        return self.eval_forward(*args)

    @property
    def code(self) -> str:
        return "# in training\n" + self.training_forward.code + "\n# in eval\n" + self.eval_forward.code

    def _repr_html_(self) -> str | None:
        graph = _NETWORKS.get(self)
        if graph is None:
            return None
        from .report import summary_html

        return summary_html(graph)


_OUTPUT_TYPES: dict[tuple[str, tuple[str, ...]], type] = {}


def _outputs_type(name: str, fields: tuple[str, ...]) -> type:
    """One named tuple class per (name, fields), as torchvision's `GoogLeNetOutputs`."""
    import collections

    key = (name, fields)
    if key not in _OUTPUT_TYPES:
        _OUTPUT_TYPES[key] = collections.namedtuple(name, fields)
    return _OUTPUT_TYPES[key]


def _block_input_names(count: int) -> list[str]:
    """A block's forward reads `x`, as hand-written blocks do, or `input_0`, `input_1`, ..."""
    return ["x"] if count == 1 else [f"input_{index}" for index in range(count)]


# Parameter-free ops through which a zeroed norm still zeroes the branch: the branch's value is
# linear in the followed input (for `mul`, the gated tensor; the gate is another factor).
_SCALE_LINEAR = frozenset({"mul", "identity", "dropout", "drop_path"})


def _branch_norm(graph: Graph, modules: dict[str, nn.Module], name: str) -> tuple[nn.Module | None, str]:
    """The norm that ends the residual branch whose last node is `name`, following the branch backwards through
    `_SCALE_LINEAR` ops (SE blocks end in `mul(bn3, gate)`). Returns the norm, or None where the branch ends in
    something else (a conv in pre-activation units, a norm without a weight), and the node where it ends."""
    while True:  # inputs always lead to earlier nodes, so this ends
        module = modules.get(name)
        if isinstance(module, _NORMS):
            return (module if getattr(module, "weight", None) is not None else None), name
        node = graph.nodes[name]
        if node.op is None or node.op.op_name() not in _SCALE_LINEAR or not node.inputs:
            return None, name
        following = node.inputs[0]
        if node.op.op_name() == "mul":
            # The factor with the product's shape is the gated tensor; a broadcast gate ([C, 1, 1]) is not.
            following = next((i for i in node.inputs if graph.nodes[i].shape == node.shape), following)
        name = following


def _zero_init_residual(graph: Graph, modules: dict[str, nn.Module]) -> None:
    """Zero the scale of the norm that ends each residual branch, so every block starts as identity
    (Goyal et al. 2017; torchvision's `zero_init_residual`). The branch (an add's first input) is followed
    back through parameter-free ops that keep it linear (`mul`'s gated input, identity, dropout, drop_path) to its
    norm; adds whose branch ends otherwise (pre-activation units end in a conv) get one warning."""
    missed: list[tuple[str, str]] = []
    for node in graph:
        if node.op is None or node.op.op_name() != "add":
            continue
        norm, end = _branch_norm(graph, modules, node.inputs[0])
        if norm is None:
            missed.append((node.name, end))
        else:
            nn.init.zeros_(norm.weight)
    if missed:
        (first, end), count = missed[0], len(missed)
        ending = graph.nodes[end]
        what = f"{ending.op.op_name()} `{end}`" if ending.op is not None else f"the input `{end}`"
        warnings.warn(f"zero_init_residual has no effect on {count} residual add{'s' * (count != 1)}, the first "
                      f"`{first}`: its branch ends in {what}, not in a norm with a weight (zero_init_residual "
                      "follows the branch back through mul, identity, dropout and drop_path only)",
                      stacklevel=_caller_level())


def _caller_level() -> int:
    """The `stacklevel` of a warning that points at the first frame outside resgraph (the user's call)."""
    package = __name__.split(".")[0]
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == package:
        level, frame = level + 1, frame.f_back
    return level


def index_bound(graph: Graph, name: str) -> int:
    """The largest id an int64 input may hold, plus one: the smallest table among the ops that read it
    (2 where no op states a bound)."""
    bounds = []
    for node in graph:
        if node.op is not None:
            bounds += [node.op.index_bound(position) for position, producer in enumerate(node.inputs)
                       if producer == name]
    return min((b for b in bounds if b is not None), default=2)


def example_inputs(graph: Graph, batch: int, device: Any = None, dtype: Any = None,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Random inputs of the declared shapes: normal floats, or int64 ids below each input's `index_bound`."""
    inputs = []
    for name in graph.inputs:
        node = graph.nodes[name]
        if node.dtype == "int64":
            inputs.append(torch.randint(0, index_bound(graph, name), (batch, *node.shape), generator=generator)
                          .to(device))
        else:
            inputs.append(torch.randn((batch, *node.shape), generator=generator, dtype=dtype).to(device))
    return inputs


def check_forward(module: nn.Module, graph: Graph, device: Any, dtype: Any, batch: int = 2) -> None:
    """Run one eval-mode forward pass on random input and compare shapes with the inferred ones."""
    inputs = example_inputs(graph, batch, device, dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            result = module(*inputs)
    finally:
        module.train(was_training)
    results = tuple(result.values()) if isinstance(result, dict) else result if isinstance(result, tuple) \
        else (result,)
    for name, tensor in zip(graph.outputs, results):
        expected = (batch, *graph.nodes[name].shape)
        if tuple(tensor.shape) != expected:
            raise RuntimeError(f"output `{name}` has shape {tuple(tensor.shape)}, the shape rules predicted {expected}")

