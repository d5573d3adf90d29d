"""Residual analysis of a shaped graph: paths, depths and receptive fields (static, no torch), and
gradient norms at initialisation (dynamic, with torch).

Veit et al. (2016) read a residual network as an ensemble of paths: n blocks give 2^n paths
from input to output, with binomially distributed lengths. This module counts them exactly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_atomically
from .graph import Graph
from .ops.base import GLOBAL, ReceptiveField
from .ops.merge import Shortcut

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class PathStats:
    """The input -> output paths of one output: their number, depths in weight layers and (where the network is
    small enough to list it, see HISTOGRAM_BUDGET) how many paths have each length."""

    output: str
    histogram: dict[int, int] | None     # length -> number of paths; None: not computed for a network this size
    count: int = 0
    longest: int = 0
    shortest: int = 0
    total_length: int = 0                # the sum of every path's length, for the mean

    def __post_init__(self) -> None:
        if self.histogram is not None and not self.count:
            self.count = sum(self.histogram.values())
            self.longest, self.shortest = max(self.histogram), min(self.histogram)
            self.total_length = sum(length * n for length, n in self.histogram.items())

    @property
    def mean(self) -> float:
        return self.total_length / self.count if self.count else 0.0


@dataclass
class Analysis:
    network: str
    paths: list[PathStats]
    receptive_fields: dict[str, ReceptiveField] = field(default_factory=dict)   # spatial nodes only
    weight_layers: int = 0

    def to_text(self) -> str:
        lines = [f"network: {self.network} ({self.weight_layers} weight layers)"]
        for stats in self.paths:
            lines += [
                f"output `{stats.output}`: {stats.count:,} input->output paths",
                f"  depth in weight layers: longest {stats.longest}, shortest {stats.shortest}, "
                f"mean {stats.mean:.2f}",
                "  paths by length:",
            ]
            if stats.histogram is None:
                lines[-1] = (f"  paths by length: not listed for a network this size (more than "
                             f"{HISTOGRAM_BUDGET:,} length counts to add up); the figures above are exact")
                continue
            top = max(stats.histogram.values())
            for length in sorted(stats.histogram):
                n = stats.histogram[length]
                bar = "#" * max(1, round(40 * n / top)) if n else ""
                lines.append(f"  {length:>6}  {n:>{max(6, len(f'{top:,}'))},}  {bar}")
        if self.receptive_fields:
            lines += ["", "receptive fields (size in input pixels, jump between outputs):"]
            width = max(len(name) for name in self.receptive_fields)
            for name, (size, jump) in self.receptive_fields.items():
                lines.append(f"  {name:<{width}}  {_size_text(size):>9}  jump {'x'.join(map(str, jump))}")
        return "\n".join(lines)


def _size_text(size: tuple[int | None, ...]) -> str:
    """`19x19`; `global` where every dimension sees the whole input (GLOBAL), else that dimension's entry."""
    if all(r is GLOBAL for r in size):
        return "global"
    return "x".join("global" if r is GLOBAL else str(r) for r in size)


def _shifted(histogram: list[int], by: int) -> list[int]:
    return [0] * by + histogram if by else histogram


def _added(a: list[int], b: list[int]) -> list[int]:
    if len(a) < len(b):
        a, b = b, a
    return [x + (b[i] if i < len(b) else 0) for i, x in enumerate(a)]


# The histograms of path lengths cost, in all, one addition per node and length a path to it can have; past this
# many (a chain of thousands of residual blocks) they are left out, and only the count, the longest, the shortest
# and the mean are computed, each with one number per node.
HISTOGRAM_BUDGET = 5_000_000


@dataclass
class _Paths:
    """The paths from the inputs to one node: how many, their longest and shortest lengths and the sum of the
    lengths, exactly (Python integers: 2^10000 paths is fine), in constant memory per node."""

    count: int
    longest: int
    shortest: int
    total: int

    def extended(self, by: int) -> "_Paths":
        return _Paths(self.count, self.longest + by, self.shortest + by, self.total + by * self.count)


def _merged(parts: list[_Paths]) -> _Paths:
    reached = [p for p in parts if p.count]
    if not reached:   # a `parameter` or `buffer` (no inputs), or what only they feed: no path from an input
        return _Paths(0, 0, 0, 0)
    return _Paths(sum(p.count for p in reached), max(p.longest for p in reached), min(p.shortest for p in reached),
                  sum(p.total for p in reached))


def analyse_paths(graph: Graph) -> Analysis:
    """Requires inferred shapes. Counts paths exactly, by dynamic programming over the DAG (paths to a node are
    the paths to its inputs, one layer longer through a weight layer), never listing them.

    A path's length is the number of weight layers (convolutions, linear layers, and the 1x1
    convolution of a projection shortcut) it passes through. Each node's figures are dropped after
    its last consumer, so memory follows the widest cut of the graph, not its size."""
    order = graph.topological_order()
    last_use = {name: position for position, node in enumerate(order) for name in node.inputs}
    outputs = set(graph.outputs)
    paths: dict[str, _Paths] = {}
    fields: dict[str, ReceptiveField | None] = {}
    receptive: dict[str, ReceptiveField] = {}
    weight_layers = 0
    cost = 0
    for position, node in enumerate(order):
        if node.is_input:
            paths[node.name] = _Paths(1, 0, 0, 0)
            rank = len(node.shape)
            fields[node.name] = ((1,) * (rank - 1), (1,) * (rank - 1)) if rank >= 2 else None
            continue
        weight = int(type(node.op).weight_layer)
        lengths = _input_lengths(node)
        paths[node.name] = _merged([paths[producer].extended(extra)
                                    for producer, extra in zip(node.inputs, lengths)]).extended(weight)
        cost += paths[node.name].longest + 1
        weight_layers += weight + sum(lengths)
        shapes = [graph.nodes[name].shape for name in node.inputs]
        fields[node.name] = node.op.receptive_field([fields[name] for name in node.inputs], shapes, node.shape,
                                                    node.meta)
        if fields[node.name] is not None:
            receptive[node.name] = fields[node.name]
        for producer in node.inputs:
            if last_use.get(producer) == position and producer not in outputs:
                del paths[producer], fields[producer]
    histograms = _histograms(graph, order, last_use) if cost <= HISTOGRAM_BUDGET else {}
    stats = []
    for output in graph.outputs:
        found = paths[output]
        histogram = histograms.get(output)
        stats.append(PathStats(output, None if histogram is None else
                               {length: n for length, n in enumerate(histogram) if n},
                               found.count, found.longest, found.shortest, found.total))
    return Analysis(graph.name, stats, receptive, weight_layers)


def _input_lengths(node) -> list[int]:
    """The weight layers between each input and the node itself: 1 through a projection shortcut, else 0."""
    plans = node.meta.get("shortcuts") or []
    return [1 if position >= 1 and position - 1 < len(plans) and plans[position - 1].kind is Shortcut.PROJECT
            else 0 for position in range(len(node.inputs))]


def _histograms(graph: Graph, order: list, last_use: dict[str, int]) -> dict[str, list[int]]:
    """The number of paths of each length to every output (index: length), dropping each node's after its last
    consumer. The caller checks the cost first (HISTOGRAM_BUDGET)."""
    outputs = set(graph.outputs)
    histograms: dict[str, list[int]] = {}
    for position, node in enumerate(order):
        if node.is_input:
            histograms[node.name] = [1]
            continue
        total: list[int] = []
        for producer, extra in zip(node.inputs, _input_lengths(node)):
            total = _added(total, _shifted(histograms[producer], extra))
        histograms[node.name] = _shifted(total, int(type(node.op).weight_layer))
        for producer in node.inputs:
            if last_use.get(producer) == position and producer not in outputs:
                del histograms[producer]
    return {name: histograms[name] for name in graph.outputs}


# ---- dynamic: gradients at initialisation ----------------------------------------------------------

@dataclass
class GradientReport:
    network: str
    norms: list[tuple[str, float]]       # weight layer (module path) -> gradient norm of its weight

    @property
    def first_to_last(self) -> float:
        return self.norms[0][1] / self.norms[-1][1] if self.norms and self.norms[-1][1] else float("nan")

    def to_text(self) -> str:
        lines = [f"gradient norms at initialisation, `{self.network}` ({len(self.norms)} weight layers):"]
        width = max(len(name) for name, _ in self.norms)
        lines += [f"  {depth:>4}  {name:<{width}}  {norm:.4e}" for depth, (name, norm) in enumerate(self.norms, 1)]
        lines.append(f"first/last ratio: {self.first_to_last:.4g}")
        return "\n".join(lines)


def weight_layer_modules(model: "torch.nn.Module") -> list[tuple[str, Any]]:
    """Convolution and linear modules, in the order the forward code calls them."""
    import torch.nn as nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
    return [(name, module) for name, module in model.named_modules() if isinstance(module, kinds)]


def gradient_norms(model: "torch.nn.Module", graph: Graph, seed: int = 0, batch: int = 8) -> GradientReport:
    """One forward and backward pass in training mode on a seeded random batch.

    The loss is cross-entropy against seeded random labels when the (first) output is
    [batch, classes], the mean square of the output otherwise."""
    import torch
    import torch.nn.functional as F

    from .lower import example_inputs

    generator = torch.Generator().manual_seed(seed)
    inputs = example_inputs(graph, batch, generator=generator)   # int64 ids for token inputs
    model.train()
    model.zero_grad(set_to_none=True)
    output = model(*inputs)
    output = output[0] if isinstance(output, tuple) else output
    if isinstance(output, dict):   # a mapping `outputs` (torchvision's {'out', 'aux'}, an FPN's maps): its first
        output = next(iter(output.values()))
    if output.dim() == 2:
        labels = torch.randint(0, output.shape[1], (batch,), generator=generator)
        loss = F.cross_entropy(output, labels)
    else:
        loss = output.pow(2).mean()
    loss.backward()
    norms = [(name, module.weight.grad.norm().item()) for name, module in weight_layer_modules(model)
             if module.weight.grad is not None]
    return GradientReport(graph.name, norms)


def plot_gradients(reports: list[GradientReport], path: str, inputs: list[str] = ()) -> None:
    """Gradient norm against depth, one line per network, on a log scale."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'resgraph[analysis]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    for report in reports:
        axes.plot(range(1, len(report.norms) + 1), [n for _, n in report.norms], marker=".", label=report.network)
    axes.set_yscale("log")
    axes.set_xlabel("weight layer (input to output)")
    axes.set_ylabel("gradient norm of the weight")
    axes.set_title("gradient norms at initialisation")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(figure)
    write_atomically(Path(path), buffer.getvalue(), inputs=inputs)
