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
from .ops.base import ReceptiveField
from .ops.merge import Shortcut

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class PathStats:
    """The input -> output paths of one output, by length in weight layers."""

    output: str
    histogram: dict[int, int]            # length -> number of paths

    @property
    def count(self) -> int:
        return sum(self.histogram.values())

    @property
    def longest(self) -> int:
        return max(self.histogram)

    @property
    def shortest(self) -> int:
        return min(self.histogram)

    @property
    def mean(self) -> float:
        return sum(length * n for length, n in self.histogram.items()) / self.count


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
            top = max(stats.histogram.values())
            for length in sorted(stats.histogram):
                n = stats.histogram[length]
                bar = "#" * max(1, round(40 * n / top)) if n else ""
                lines.append(f"  {length:>6}  {n:>{max(6, len(f'{top:,}'))},}  {bar}")
        if self.receptive_fields:
            lines += ["", "receptive fields (size in input pixels, jump between outputs):"]
            width = max(len(name) for name in self.receptive_fields)
            for name, (size, jump) in self.receptive_fields.items():
                lines.append(f"  {name:<{width}}  {'x'.join(map(str, size)):>9}  jump {'x'.join(map(str, jump))}")
        return "\n".join(lines)


def _shifted(histogram: list[int], by: int) -> list[int]:
    return [0] * by + histogram if by else histogram


def _added(a: list[int], b: list[int]) -> list[int]:
    if len(a) < len(b):
        a, b = b, a
    return [x + (b[i] if i < len(b) else 0) for i, x in enumerate(a)]


def analyse_paths(graph: Graph) -> Analysis:
    """Requires inferred shapes. Counts paths exactly (Python integers: 2^333 is fine).

    A path's length is the number of weight layers (convolutions, linear layers, and the 1x1
    convolution of a projection shortcut) it passes through."""
    histograms: dict[str, list[int]] = {}
    fields: dict[str, ReceptiveField | None] = {}
    receptive: dict[str, ReceptiveField] = {}
    weight_layers = 0
    for node in graph.topological_order():
        if node.is_input:
            histograms[node.name] = [1]
            rank = len(node.shape)
            fields[node.name] = ((1,) * (rank - 1), (1,) * (rank - 1)) if rank >= 2 else None
            continue
        plans = node.meta.get("shortcuts") or []
        total: list[int] = []
        for position, producer in enumerate(node.inputs):
            extra = 1 if position >= 1 and position - 1 < len(plans) and \
                plans[position - 1].kind is Shortcut.PROJECT else 0
            total = _added(total, _shifted(histograms[producer], extra))
        weight_layers += int(type(node.op).weight_layer) + sum(p.kind is Shortcut.PROJECT for p in plans)
        histograms[node.name] = _shifted(total, int(type(node.op).weight_layer))
        shapes = [graph.nodes[name].shape for name in node.inputs]
        fields[node.name] = node.op.receptive_field([fields[name] for name in node.inputs], shapes, node.shape,
                                                    node.meta)
        if fields[node.name] is not None:
            receptive[node.name] = fields[node.name]
    paths = [PathStats(output, {length: n for length, n in enumerate(histograms[output]) if n})
             for output in graph.outputs]
    return Analysis(graph.name, paths, receptive, weight_layers)


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

    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn((batch, *graph.nodes[name].shape), generator=generator) for name in graph.inputs]
    model.train()
    model.zero_grad(set_to_none=True)
    output = model(*inputs)
    output = output[0] if isinstance(output, tuple) else output
    if output.dim() == 2:
        labels = torch.randint(0, output.shape[1], (batch,), generator=generator)
        loss = F.cross_entropy(output, labels)
    else:
        loss = output.pow(2).mean()
    loss.backward()
    norms = [(name, module.weight.grad.norm().item()) for name, module in weight_layer_modules(model)
             if module.weight.grad is not None]
    return GradientReport(graph.name, norms)


def plot_gradients(reports: list[GradientReport], path: str) -> None:
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
    write_atomically(Path(path), buffer.getvalue())
