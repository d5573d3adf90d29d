"""resgraph: residual networks declared in YAML, validated before training, compiled to torch.

The public API: `load`, `validate`, `compile`, `render` and `summary`, and the `SpecError`
they raise. Nothing here imports torch until a module is compiled.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .diagnostics import Diagnostic, Diagnostics, Severity, SpecError, Span
from .expand import FileCache, Program, expand_blocks, load_program
from .graph import Graph, check_graph
from .module_names import warn_reserved_names
from .shapes import infer_shapes
from .ties import check_ties

if TYPE_CHECKING:  # pragma: no cover
    import torch

__version__ = "0.1.0"
__all__ = ["Network", "SpecError", "Diagnostic", "Severity", "Span", "load", "validate", "compile", "render",
           "summary", "__version__"]

DTYPES = ("float32", "float16", "bfloat16", "float64")
DEFAULT_MAX_MEMORY_BYTES = 16 * 2**30
PathLike = str | os.PathLike
InputShapes = Sequence[int] | Mapping[str, Sequence[int]]


class Network:
    """A validated spec: its parsed program and the expanded graph with every shape inferred."""

    def __init__(self, program: Program, graph: Graph, warnings: list[Diagnostic], sources: dict[str, str]) -> None:
        self.program = program
        self.graph = graph
        self.warnings = warnings
        self.sources = sources

    @property
    def input_files(self) -> list[str]:
        """The files this network was read from (the spec and every file it includes or extends), which
        no output of the same run may replace."""
        return [path for path in self.sources if os.path.isfile(path)]

    @property
    def spec(self):
        return self.program.spec

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def params(self) -> int:
        """Number of trainable parameters."""
        return self.graph.total_params

    @property
    def macs(self) -> int:
        """Multiply-accumulates of convolutions and linear layers for one sample."""
        return self.graph.total_macs

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.graph.nodes[name].shape for name in self.graph.inputs}

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each output's shape, by its node (or by its key, where `outputs` is a mapping)."""
        return {key: self.graph.nodes[name].shape for key, name in zip(self.graph.output_names(), self.graph.outputs)}

    def memory_estimate(self, batch: int = 1, itemsize: int = 4) -> tuple[int, int]:
        """(bytes of parameters, bytes of every node's output for `batch` samples): an upper bound of
        what one training step keeps for backward, known before anything is allocated."""
        activations = sum(math.prod(node.shape) for node in self.graph if node.shape is not None)
        return self.params * itemsize, activations * batch * itemsize

    def summary(self) -> str:
        from .report import summary_table

        return summary_table(self.graph)

    def compile(self, **options: Any) -> "torch.nn.Module":
        return compile(self, **options)

    def render(self, output: PathLike, depth: int | None = 0, **options: Any) -> Path:
        return render(self, output, depth=depth, **options)

    def analyze(self):
        """Paths from input to output, depth in weight layers, receptive fields (no torch)."""
        from .analysis import analyse_paths

        return analyse_paths(self.graph)

    def _repr_svg_(self) -> str | None:
        """The diagram in a notebook: each top-level block call as one box with its shortcut arcs (as `render`
        draws by default); None (Jupyter then shows the text repr) where graphviz's `dot` is missing."""
        from .diagram import svg_of

        return svg_of(self.graph)

    def __repr__(self) -> str:
        return f"<Network {self.name}: {len(self.graph)} nodes, {self.params:,} params>"


@contextlib.contextmanager
def _collector_paused():
    """The passes allocate many small objects that all stay alive until the end; the cyclic garbage
    collector's repeated full scans of them would make big nets superlinear."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _analyse(path: PathLike, params: Mapping[str, Any] | None, text: str | None,
             include_path: Sequence[PathLike] = (), plugins: bool = True,
             inputs: InputShapes | None = None) -> tuple[Network | None, Diagnostics]:
    """Run every static pass; returns the network (None on errors) and all diagnostics."""
    with _collector_paused():
        return _run_passes(path, params, text, include_path, plugins=plugins, inputs=inputs)


def _run_passes(path: PathLike, params: Mapping[str, Any] | None, text: str | None,
                include_path: Sequence[PathLike] = (), cache: FileCache | None = None,
                plugins: bool = True, inputs: InputShapes | None = None) -> tuple[Network | None, Diagnostics]:
    state = run_passes(path, params, text, cache, include_path=include_path, plugins=plugins, inputs=inputs)
    return (state.network if not state.diagnostics.has_errors else None), state.diagnostics


class Analysis:
    """What the static passes made of a spec, kept even where they stopped (for the editor)."""

    def __init__(self, diagnostics: Diagnostics, program: Program | None = None, graph: Graph | None = None,
                 network: Network | None = None) -> None:
        self.diagnostics, self.program, self.graph, self.network = diagnostics, program, graph, network


def run_passes(path: PathLike, params: Mapping[str, Any] | None = None, text: str | None = None,
               cache: FileCache | None = None, *, include_path: Sequence[PathLike] = (),
               plugins: bool = True, inputs: InputShapes | None = None) -> Analysis:
    """Every static pass in order; `graph` is set when expansion succeeded (its shapes may be partial).

    `inputs` overrides declared input shapes: a shape for the one input, or input name -> shape."""
    from .lint import allowed, check_allow, lint_graph

    diagnostics = Diagnostics()
    program = load_program(path, diagnostics, text, include_path=include_path, cache=cache, allow_plugins=plugins)
    if program is None:
        return Analysis(diagnostics)
    check_allow(program, diagnostics)
    state = Analysis(diagnostics, program)
    graph = expand_blocks(program, diagnostics, params, _input_shapes(inputs))
    if graph is not None:
        state.graph = graph
        if check_graph(graph, diagnostics) and infer_shapes(graph, diagnostics) and check_ties(graph, diagnostics) \
                and not diagnostics.has_errors:
            warn_reserved_names(graph, diagnostics)
            lint_graph(graph, diagnostics)
    diagnostics.items = [d for d in diagnostics.items if not allowed(program, d)]
    if graph is not None and not diagnostics.has_errors:
        warnings = [d for d in diagnostics.items if not d.is_error]
        state.network = Network(program, graph, warnings, diagnostics.sources)
    return state


def validate(path: PathLike, params: Mapping[str, Any] | None = None, *, text: str | None = None,
             include_path: Sequence[PathLike] = (), plugins: bool = True,
             inputs: InputShapes | None = None) -> list[Diagnostic]:
    """Every error and warning in the spec at `path`; an empty list means it is valid and clean.

    Never raises for a bad spec. Block libraries (files with blocks but no nodes) are checked
    for their definitions only. `include` and `extends` read files under the spec's directory and
    the directories of `include_path` (and $RESGRAPH_PATH) only. Loads the plugins the spec names and
    the installed ones (their code runs: docs/plugins.md); `plugins=False` loads none and refuses a spec
    that names one (RG092).
    """
    with _collector_paused():   # the network is dropped before the collector resumes: it need not scan it
        return _run_passes(path, params, text, include_path, plugins=plugins, inputs=inputs)[1].items


def load(path: PathLike | Network, params: Mapping[str, Any] | None = None, *, text: str | None = None,
         include_path: Sequence[PathLike] = (), plugins: bool = True, inputs: InputShapes | None = None) -> Network:
    """Load, validate and expand a spec; raises `SpecError` with every diagnostic if it is invalid.

    `include_path`: directories besides the spec's own tree that `include` and `extends` may read;
    `plugins` as for `validate`; `inputs` replaces the declared input shapes: `[3, 160, 160]` for the one
    input, `{"image": [3, 160, 160]}` by name (a shape that fits no input is RG077)."""
    if isinstance(path, Network):
        return path
    network, diagnostics = _analyse(path, params, text, include_path, plugins, inputs)
    diagnostics.raise_if_errors()
    if network is None:
        raise SpecError([Diagnostic("RG010", "the spec defines no network (it has no `nodes`)",
                                    Span(str(path), 1, 1, 1, 2),
                                    help="a block library can be validated and included, but not compiled")],
                        diagnostics.sources)
    return network


def _dtype(dtype: Any) -> "torch.dtype":
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype `{dtype}`; choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _size(count: int) -> str:
    return f"{count / 2**30:.3g} GiB" if count >= 2**30 else f"{count / 2**20:.3g} MiB"


def compile(spec: PathLike | Network, *, device: Any = "cpu", dtype: Any = None,
            params: Mapping[str, Any] | None = None, seed: int | None = 0, zero_init_residual: bool = False,
            max_memory_bytes: int | None = DEFAULT_MAX_MEMORY_BYTES, batch: int = 1,
            include_path: Sequence[PathLike] = (), inputs: InputShapes | None = None) -> "torch.nn.Module":
    """Compile a spec into a `torch.fx.GraphModule` (a plain `nn.Module`) in training mode.

    `device="meta"` builds without allocating memory, for counting huge networks. Weights are
    initialised as torchvision does, from a private RNG seeded with `seed` (None: the global
    RNG), identically on every device. Before anything is allocated, refuses networks whose
    parameters and training activations for `batch` samples would need more than
    `max_memory_bytes` (None: no limit).
    """
    import torch

    from .lower import lower_to_fx

    network = load(spec, params, include_path=include_path, inputs=inputs)
    torch_dtype = _dtype(dtype)
    device = torch.device(device)
    weights, activations = network.memory_estimate(batch, torch_dtype.itemsize)
    if max_memory_bytes is not None and device.type != "meta" and weights + activations > max_memory_bytes:
        name = str(torch_dtype).removeprefix("torch.")
        raise SpecError([Diagnostic(
            "RG036", f"`{network.name}` needs about {_size(weights + activations)} in {name}: "
            f"{network.params:,} parameters ({_size(weights)}) and activations of {_size(activations)} for a "
            f"batch of {batch}, more than the limit of {_size(max_memory_bytes)}",
            help="raise the limit (`--max-memory` on the command line, `max_memory_bytes=` in Python), or "
                 "compile on `device=\"meta\"` to inspect it without allocating")], network.sources)
    if device.type == "meta":
        with torch.device("meta"):
            module = lower_to_fx(network.graph, seed=seed, zero_init_residual=zero_init_residual)
    else:
        module = lower_to_fx(network.graph, seed=seed, zero_init_residual=zero_init_residual)
    return module.to(device=device, dtype=torch_dtype)


def render(spec: PathLike | Network, output: PathLike, params: Mapping[str, Any] | None = None,
           depth: int | str | None = "auto", *, include_path: Sequence[PathLike] = (), rankdir: str = "TB",
           dpi: float | None = None, blocks: bool = False, inputs: InputShapes | None = None,
           plugins: bool = True) -> Path:
    """Draw the network; the format follows the suffix of `output` (.svg .png .pdf .dot, or .html: the
    interactive viewer, one self-contained page, which opens with blocks deeper than `depth` collapsed and
    needs a valid spec; `"auto"`, the default: the viewer picks the level).

    `depth` draws that many levels of block nesting and each deeper block call or instance as one box, with
    its shortcut arcs (0, what the default `"auto"` means here: each top-level call is one box,
    `layer1: bottleneck ×3`; None: every node). `rankdir`: `TB` (top to bottom) or `LR`; `dpi`: the
    resolution of a .png; `blocks`: each block definition once, in detail, instead of the network. An
    invalid spec whose error is at a node is still drawn, up to that node (red, with the message beside
    it), and then `SpecError` is raised."""
    from .diagram import FORMATS, RenderError, render_to_file

    output = Path(output)
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS and suffix != "html":
        raise RenderError(f"cannot tell the format of `{output}`: use a .svg, .png, .pdf, .dot or .html suffix")
    if depth == "auto" and suffix != "html":
        depth = 0
    if isinstance(spec, Network):
        network = spec
    else:
        with _collector_paused():
            state = run_passes(spec, params, include_path=include_path, plugins=plugins, inputs=inputs)
        if state.diagnostics.has_errors:
            failing = failing_nodes(state.graph, state.diagnostics.items) if state.graph is not None else {}
            if failing and not blocks and suffix != "html":
                try:
                    render_to_file(state.graph, output, depth, state.diagnostics.sources, rankdir=rankdir,
                                   dpi=dpi, errors=failing)
                except RenderError:
                    pass   # the spec's errors are what to report; no file is written
            state.diagnostics.raise_if_errors()
        network = state.network or load(spec, params, include_path=include_path, plugins=plugins, inputs=inputs)
    if suffix == "html":
        from .viewer import write_viewer

        try:
            return write_viewer(network.graph, network.sources, output, doc=network.spec.doc,
                                depth=None if depth == "auto" else (10**6 if depth is None else depth),
                                inputs=network.input_files)
        except FileNotFoundError as exc:
            raise RenderError(str(exc)) from None
    return render_to_file(network.graph, output, depth, network.input_files, rankdir=rankdir, dpi=dpi,
                          blocks=blocks)


def failing_nodes(graph: Graph, diagnostics: Sequence[Diagnostic]) -> dict[str, str]:
    """The nodes where shape inference stopped (no shape, but every input has one), each with the message of
    its error: what a drawing of an invalid spec marks in red."""
    errors = [d for d in diagnostics if d.is_error]
    found: dict[str, str] = {}
    for node in graph:
        if node.shape is not None or node.is_input or \
                any(graph.nodes[name].shape is None for name in node.inputs if name in graph.nodes):
            continue
        for diagnostic in errors:
            if f"`{node.name}`" in diagnostic.message:
                found[node.name] = f"error[{diagnostic.code}]: {diagnostic.message}"
                break
    return found


def summary(spec: PathLike | Network, params: Mapping[str, Any] | None = None, *,
            include_path: Sequence[PathLike] = (), inputs: InputShapes | None = None) -> str:
    """A table of every node's output shape, parameters and MACs, with totals (no torch needed)."""
    return load(spec, params, include_path=include_path, inputs=inputs).summary()


def _input_shapes(inputs: InputShapes | None) -> dict[str, tuple[int, ...]] | None:
    """`[3, 160, 160]` -> {"": (3, 160, 160)} (the one input); a mapping by name as it is."""
    if inputs is None:
        return None
    if isinstance(inputs, Mapping):
        return {str(name): tuple(shape) for name, shape in inputs.items()}
    return {"": tuple(inputs)}
