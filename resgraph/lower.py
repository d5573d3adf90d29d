"""Pass 5 of the pipeline: the shaped graph IR -> nested torch.fx GraphModules.

Each op lowers itself through a `Builder`. The network and every block instance become one
GraphModule each (a repeated call an `nn.Sequential` of them), so module paths and state_dict
keys are the spec's dotted names, as in a hand-written model, and each forward is straight-line.
"""

from __future__ import annotations

import keyword
import re
import sys
import warnings
import weakref
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from .graph import Graph, Node

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)


class Builder:
    """What an op's `lower` may do: add a submodule call or a function call for the current node."""

    def __init__(self, graph: Graph, users: dict[str, list[str]] | None = None) -> None:
        self.ir = graph
        self.fx = fx.Graph()
        self.modules: dict[str, nn.Module] = {}   # attribute name (within the scope) -> module
        self.node: Node | None = None
        self._users = users if users is not None else graph.users()
        self._outputs = set(graph.outputs)

    def call_module(self, module: nn.Module, args: Sequence[Any], name: str | None = None,
                    kwargs: dict | None = None) -> fx.Node:
        """Register `module` as the node's (or as `name` within the node's block) and call it."""
        assert self.node is not None
        target = name or self.node.local_name
        if target in self.modules:
            raise ValueError(f"two modules would be named `{self.node.prefix + target}`")
        self.modules[target] = module
        return self._traced(self.fx.call_module(target, tuple(args), kwargs or {}))

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


def _identifier(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit() or keyword.iskeyword(text):
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
    module = _ScopeLowering(graph, modules).build("")
    if zero_init_residual:
        _zero_init_residual(graph, modules)
    _NETWORKS[module] = graph
    return module


# The IR each compiled network came from, for its notebook summary; held beside the module rather than
# in it, so that copying or pickling a model does not copy the IR. A copy shows its text repr.
_NETWORKS: weakref.WeakKeyDictionary[nn.Module, Graph] = weakref.WeakKeyDictionary()


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

    def build(self, scope: str) -> fx.GraphModule:
        graph = self.graph
        b = Builder(graph, self.users)
        values: dict[str, fx.Node] = {}
        if scope:
            instance = graph.instances[scope]
            names = graph_inputs = list(instance.inputs)
            placeholders = _block_input_names(len(names))
            outputs = [instance.output]
            class_name = _class_name(instance.block)
        else:
            graph_inputs = list(graph.inputs)
            placeholders = ["x"] if graph_inputs == ["input"] else [_identifier(name) for name in graph_inputs]
            outputs = list(graph.outputs)
            class_name = _class_name(graph.name)
        for name, placeholder in zip(graph_inputs, placeholders):
            if name not in values:
                values[name] = b.fx.placeholder(placeholder)
        items: list[tuple[int, Any]] = [(self.position[node.name], node) for node in self.own.get(scope, [])]
        items += [(self.first[call], call) for call in self.calls.get(scope, {})]
        for _, item in sorted(items, key=lambda pair: pair[0]):
            if isinstance(item, Node):
                b.node = item
                args = [values[name] for name in item.inputs]
                shapes = [graph.nodes[name].shape for name in item.inputs]
                values[item.name] = item.op.lower(b, args, shapes, item.shape, item.meta)
                for attribute, module in b.modules.items():
                    self.modules.setdefault(item.prefix + attribute, module)
                continue
            instances = self.calls[scope][item]
            children = [self.build(i.name) for i in instances]
            child = children[0] if instances[0].index is None else nn.Sequential(*children)
            local = item.rpartition(".")[2]
            b.node = None
            b.modules[local] = child
            values[instances[-1].output] = b.fx.call_module(local, tuple(values[name] for name in instances[0].inputs))
        results = [values[name] for name in outputs]
        b.fx.output(results[0] if len(results) == 1 else tuple(results))
        root = nn.Module()
        for attribute, module in b.modules.items():
            root.add_module(attribute, module)
        return (CompiledNetwork if scope == "" else CompiledModule)(root, b.fx, class_name=class_name)


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
    graph = _NETWORKS.get(network)
    if graph is not None:
        declared = [graph.nodes[name].shape for name in graph.inputs]
        given = [tuple(arg.shape[1:]) if isinstance(arg, torch.Tensor) else None for arg in args]
        if len(given) != len(declared) or any(g != d for g, d in zip(given, declared)):
            shown = ", ".join(f"`{name}` as [{', '.join(map(str, shape))}]"
                              for name, shape in zip(graph.inputs, declared))
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
        # fx's deepcopy re-runs __init__ without the class name (every copy would be `GraphModule`).
        name = type(self).__name__
        return lambda copy, root, graph: fx.GraphModule.__init__(copy, root, graph, class_name=name)


class CompiledNetwork(CompiledModule):
    """The network's own module: as a block's, and errors raised in its forward name the spec node."""

    _CALL = _call_network


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


def check_forward(module: nn.Module, graph: Graph, device: Any, dtype: Any, batch: int = 2) -> None:
    """Run one eval-mode forward pass on random input and compare shapes with the inferred ones."""
    inputs = [torch.randn((batch, *graph.nodes[name].shape), device=device, dtype=dtype) for name in graph.inputs]
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            result = module(*inputs)
    finally:
        module.train(was_training)
    results = result if isinstance(result, tuple) else (result,)
    for name, tensor in zip(graph.outputs, results):
        expected = (batch, *graph.nodes[name].shape)
        if tuple(tensor.shape) != expected:
            raise RuntimeError(f"output `{name}` has shape {tuple(tensor.shape)}, the shape rules predicted {expected}")

