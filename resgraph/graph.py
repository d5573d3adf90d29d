"""The graph IR that expansion produces and every later pass reads, and its structural checks.

A `Graph` is an ordered set of `Node`s (inputs first, then ops in declaration order), each
knowing its dotted path name, op, producers and source location; passes leave results in `meta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .diagnostics import Diagnostics, Note, Span

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from .ops.base import Op, Shape
    from .source import KeyPath, SourceFile


@dataclass(eq=False)
class Node:
    """One op (or graph input) after expansion.

    `name` is the dotted path (`layer2.0.conv1`), `prefix` the path of the block instance it
    sits in (`layer2.0.`), `scopes` the chain of block instances for diagram clusters.
    """

    name: str
    op: "Op | None"                      # None for a graph input
    inputs: list[str]
    source: "SourceFile | None" = None
    path: "KeyPath" = ()                 # where the node's mapping sits in `source.data`
    notes: tuple[Note, ...] = ()         # the instantiation chain, innermost last
    prefix: str = ""
    scopes: tuple[str, ...] = ()
    index: int = 0                       # declaration order, for a deterministic topological sort
    failed: bool = False                 # its attributes were invalid (already reported)
    allow: frozenset[str] = frozenset()  # warning codes it may raise unreported (its own and its calls' `allow`)
    shape: "Shape | None" = None
    dtype: str = "float"                 # `float` (the compile dtype) or `int64`, inferred with the shape
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_input(self) -> bool:
        return self.op is None and not self.failed

    @property
    def local_name(self) -> str:
        return self.name[len(self.prefix):]

    @property
    def module_name(self) -> str:
        """Its module (or tensor) path within its block instance: its `key`, else its local name."""
        key = getattr(self.op, "key", None)
        return key if key is not None else self.local_name

    @property
    def span(self) -> Span | None:
        if self.source is None:
            return None
        return self.source.span(self.path, key=True)

    def attr_span(self, attr: str | None) -> Span | None:
        if self.source is None:
            return None
        if attr is None:
            return self.span
        return self.source.span(self.path + (attr,))

    def input_span(self, position: int) -> Span | None:
        """The span of the reference to input `position`, or the node's own span."""
        if self.source is None:
            return None
        data = self.source.data
        try:
            for segment in self.path:
                data = data[segment]
        except (KeyError, IndexError, TypeError):
            return self.span
        refs = data.get("inputs") if isinstance(data, dict) else None
        if isinstance(refs, list) and position < len(refs):
            return self.source.span(self.path + ("inputs", position))
        if isinstance(refs, str):
            return self.source.span(self.path + ("inputs",))
        return self.span


@dataclass
class Instance:
    """One instantiation of a block: `layer2.0`, made by the call `layer2`, repetition 0."""

    name: str                        # the dotted path of the instance (its nodes' prefix, without the dot)
    block: str                       # the block definition's name
    call: str                        # the dotted path of the call that made it
    index: int | None                # the repetition, None when the call has no `repeat`
    values: dict[str, Any]           # its params and `let` values, and `index`
    inputs: list[str]                # the nodes it reads
    output: str                      # the node that is its output
    key: str | None = None           # the call's module path in its scope, where it has a `key`
    outputs: list[str] | None = None  # a block with several outputs (`output: [c3, c4, c5]`): its nodes, in order;
                                      # `output` is the first. None for a block with one output


@dataclass
class Graph:
    """The expanded network: nodes by name, graph inputs and outputs, in a stable order."""

    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    training_outputs: list[str] = field(default_factory=list)   # returned in training only, after `outputs`
    # the keys of a mapping `outputs` (`{out: ..., aux: ...}`), one per output, in order: forward returns a dict;
    # empty where `outputs` is a name or a list (a tensor or a tuple)
    output_keys: list[str] = field(default_factory=list)
    output_spans: list[Span | None] = field(default_factory=list)
    instances: dict[str, Instance] = field(default_factory=dict)   # in the order they were made
    params: dict[str, Any] = field(default_factory=dict)   # the top-level params' values it was built with

    _digraph: "nx.DiGraph | None" = field(default=None, repr=False)

    def add(self, node: Node) -> None:
        node.index = len(self.nodes)
        self.nodes[node.name] = node
        self._digraph = None

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def to_networkx(self) -> "nx.DiGraph":
        """Edges run producer -> consumer, labelled with the consumer's input position.

        Built once and cached: passes must not mutate it, nor change node inputs after expansion."""
        if self._digraph is None:
            self._digraph = self._build_digraph()
        return self._digraph

    def _build_digraph(self) -> "nx.DiGraph":
        import networkx as nx  # imported here: it costs a noticeable share of `resgraph validate`

        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for node in self.nodes.values():
            for position, producer in enumerate(node.inputs):
                if producer in self.nodes and not g.has_edge(producer, node.name):
                    g.add_edge(producer, node.name, position=position)
        return g

    def output_names(self) -> list[str]:
        """How each output is named where it is shown: its key in a mapping `outputs`, else its node."""
        return list(self.output_keys) if self.output_keys else list(self.outputs)

    def training_only(self) -> set[str]:
        """The nodes that only `training_outputs` read (or are): computed in training only."""
        if not self.training_outputs:
            return set()
        needed = set(self.outputs)
        for node in reversed(self.topological_order()):
            if node.name in needed:
                needed.update(node.inputs)
        return {name for name in self.nodes if name not in needed}

    def users(self) -> dict[str, list[str]]:
        """Each node's consumers, one entry per use (a node read twice by one add appears twice)."""
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for producer in node.inputs:
                if producer in users:
                    users[producer].append(node.name)
        return users

    def in_declaration_order(self) -> bool:
        """True when every node's producers are declared before it (no forward references):
        declaration order is then a topological order, and the graph cannot have a cycle."""
        nodes = self.nodes
        return all(nodes[name].index < node.index for node in nodes.values() for name in node.inputs
                   if name in nodes)

    def topological_order(self) -> list[Node]:
        """Producers before consumers; ties broken by declaration order, so output is byte-stable.

        Requires an acyclic graph."""
        if self.in_declaration_order():
            return list(self.nodes.values())  # what the lexicographical sort below would return
        import networkx as nx

        g = self.to_networkx()
        order = nx.lexicographical_topological_sort(g, key=lambda name: self.nodes[name].index)
        return [self.nodes[name] for name in order]

    def block_calls(self) -> dict[str, dict[str, list[Instance]]]:
        """Scope ("" for the network, else an instance path) -> the block calls made directly in it ->
        their instances, in order. `layer2.0` and `layer2.1` are made by the call `layer2`."""
        calls: dict[str, dict[str, list[Instance]]] = {}
        for instance in self.instances.values():
            parent = instance.call.rpartition(".")[0]
            calls.setdefault(parent, {}).setdefault(instance.call, []).append(instance)
        return calls

    def exposed_outputs(self, instance: str) -> list[str]:
        """The network outputs inside block instance `instance` that its caller cannot take as the call's result
        (`outputs: [layer1.0.relu2]`, or `layer1.0` where `layer1` repeats): its module returns them after its own
        output. The result of a call is the output of its last instance, so that one is not among them."""
        prefix, own = instance + ".", self.instances[instance]
        last = own.index is None or f"{own.call}.{own.index + 1}" not in self.instances
        returned = own.outputs or [own.output]
        return [name for name in dict.fromkeys(self.outputs) if self.nodes[name].prefix.startswith(prefix)
                and not (name in returned and last)]

    def module_path(self, node: Node) -> str:
        """The node's module (or tensor) path in the compiled network: the `key`s or names of the calls and the
        repetitions it sits in, then its own key or name (`transformer.h.0.attn.c_attn`)."""
        scope = self.scope_path(node.prefix[:-1])
        return f"{scope}.{node.module_name}" if scope else node.module_name

    def scope_path(self, scope: str, rename: Callable[[str, str], str] = lambda caller, name: name) -> str:
        """The module path of block instance `scope` ('' for the network): each enclosing call's `key` or name,
        as `rename(caller scope, name)` gives it (lowering renames names torch reserves), then, where the call
        repeats, the repetition's name (`layer1.0`, `trunk_output.block1.block1-0`)."""
        parts = []
        while scope:
            instance = self.instances[scope]
            if instance.index is not None:
                parts.append(scope.rpartition(".")[2])
            caller = instance.call.rpartition(".")[0]
            parts.append(rename(caller, instance.key or instance.call.rpartition(".")[2]))
            scope = caller
        return ".".join(reversed(parts))

    def scope_starts(self, order: list[Node]) -> dict[str, int]:
        """Each scope (call or instance) -> the position in `order` of its first node: where a
        call goes among the statements of its parent."""
        starts: dict[str, int] = {}
        for position, node in enumerate(order):
            for scope in node.scopes:
                starts.setdefault(scope, position)
        return starts

    @property
    def total_params(self) -> int:
        return sum(node.meta.get("params", 0) for node in self)

    @property
    def total_macs(self) -> int:
        return sum(node.meta.get("macs", 0) for node in self)


def check_graph(graph: Graph, diagnostics: Diagnostics) -> bool:
    """Check that the graph is acyclic, that every op has a valid number of inputs, and warn
    about nodes no output depends on. Requires resolved references; returns True when sound."""
    sound = True
    for node in graph:
        if node.op is None:
            continue
        op = type(node.op)
        count = len(node.inputs)
        if count < op.min_inputs or (op.max_inputs is not None and count > op.max_inputs):
            if op.max_inputs == op.min_inputs:
                wanted = f"exactly {op.min_inputs}"
            elif op.max_inputs is None:
                wanted = f"at least {op.min_inputs}"
            else:
                wanted = f"{op.min_inputs} to {op.max_inputs}"
            plural = "s" if op.min_inputs != 1 or op.max_inputs != 1 else ""
            what = f"`{node.name}`" if node.local_name == op.op_name() else f"`{node.name}` (`{op.op_name()}`)"
            diagnostics.error("RG044", f"{what} takes {wanted} input{plural}, got {count}",
                              node.attr_span("inputs") if count else node.span,
                              help="list the inputs with `inputs: [branch, shortcut]`" if op.min_inputs > 1 else
                              "give it one input with `inputs: name`", notes=node.notes)
            sound = False

    cycle = None
    if not graph.in_declaration_order():  # otherwise no cycle is possible
        import networkx as nx

        g = graph.to_networkx()
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
    if cycle:
        path = " -> ".join(f"`{u}`" for u, _ in cycle) + f" -> `{cycle[0][0]}`"
        first = graph.nodes[cycle[0][1]]
        notes = tuple(Note(f"`{v}` reads `{u}`", graph.nodes[v].input_span(g.edges[u, v]["position"]))
                      for u, v in cycle)
        diagnostics.error("RG041", f"the graph has a cycle: {path}", first.input_span(g.edges[cycle[0]]["position"]),
                          help="a node cannot depend on its own output; break the loop by changing one of these "
                               "`inputs`", notes=notes)
        return False

    # Liveness, one backward sweep in topological order: a node is needed if a needed node reads it.
    needed: set[str] = {output for output in graph.outputs + graph.training_outputs if output in graph.nodes}
    for node in reversed(graph.topological_order()):
        if node.name in needed:
            needed.update(node.inputs)
    reported_spans: set[Span | None] = set()
    for node in graph:
        if node.name in needed or "RG043" in node.allow:
            continue
        span = node.span
        if span in reported_spans:
            continue  # one warning per definition, not one per block instance
        reported_spans.add(span)
        what = "input" if node.is_input else "node"
        diagnostics.warning("RG043", f"{what} `{node.name}` is not used by any output", span,
                            help="remove it, use it as an input of another node, or list it in `outputs`; if it "
                                 "is meant to be unused (an auxiliary head, a probe), say so with `allow: [RG043]`",
                            notes=node.notes)
    return sound
