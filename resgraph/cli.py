"""The `resgraph` command: argument parsing and printing only; every command calls the public API.

Exit codes: 0 success, 1 the spec is invalid, 2 usage or I/O error, 3 internal error; 141 (128 + SIGPIPE)
when the reader of the output went away (`resgraph validate specs/*.yaml | head -1`), quietly, as a Unix
tool killed by SIGPIPE; 143 (128 + SIGTERM) when terminated while writing an output.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import click

import resgraph
from .diagnostics import Diagnostic, SpecError, render_json, render_text
from .source import parse_value

EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13   # what a shell reports for a tool killed by SIGPIPE (`yes | head -1`)
# Errors about the files and the run rather than the spec: the file could not be read or is not a regular
# file, a limit the user set, an output that would replace an input or is not a regular file.
USAGE_CODES = frozenset({"RG004", "RG007", "RG036", "RG075", "RG076"})
BUG_REPORT = "https://github.com/resgraph/resgraph/issues"


def _color(stream) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def _exit_code(diagnostics: list[Diagnostic]) -> int:
    errors = [d for d in diagnostics if d.is_error]
    if errors and all(d.code in USAGE_CODES for d in errors):
        return EXIT_USAGE  # the file could not be read, or a limit the user set: not an invalid spec
    return EXIT_INVALID if errors else 0


def _print_diagnostics(diagnostics: list[Diagnostic], sources: dict[str, str]) -> None:
    if diagnostics:
        click.echo(render_text(diagnostics, sources, color=_color(sys.stderr)), err=True)
        errors = sum(1 for d in diagnostics if d.is_error)
        others = len(diagnostics) - errors
        parts = [f"{errors} error{'s' * (errors != 1)}"] if errors else []
        parts += [f"{others} warning{'s' * (others != 1)}"] if others else []
        click.echo(", ".join(parts), err=True)


def _handle_errors(command: Callable) -> Callable:
    """Turn every failure into a message and an exit code; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except SpecError as exc:
            _print_diagnostics(exc.diagnostics, exc.sources)
            sys.exit(_exit_code(exc.diagnostics))
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:
            _output_closed()
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            from .diagram import RenderError
            from .eject import EjectError
            from .export import ExportError

            if debug:
                traceback.print_exc()
            if isinstance(exc, (RenderError, ExportError, EjectError, OSError, ValueError)):
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_USAGE)
            click.echo(f"internal error: {type(exc).__name__}: {exc} -- this is a bug in resgraph; please report "
                       f"it at {BUG_REPORT}" + ("" if debug else " (run again with --debug for the traceback)"),
                       err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


def _output_closed() -> None:
    """The reader of stdout is gone: stop at once and quietly with status 141, as a Unix tool does on SIGPIPE.

    Python ignores SIGPIPE, so the write raised BrokenPipeError instead; stdout is pointed at /dev/null so
    that flushing it at exit cannot raise again (Python's documented recipe for this case)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def generated_code(module: Any) -> str:
    """The forward code of the network and of each block class (one instance of each), torchvision-style."""
    import torch.fx as fx

    groups: dict[tuple[str, str], list[str]] = {}   # (class, code) -> the modules that run it
    for name, submodule in module.named_modules():
        if isinstance(submodule, fx.GraphModule):
            code = submodule.code.strip("\n")
            groups.setdefault((type(submodule).__name__, code), []).append(name or "the network")
    parts = []
    for (cls, code), names in groups.items():
        shown = ", ".join(f"`{n}`" if n != "the network" else n for n in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        parts.append(f"# {cls}: {shown}{more}\n{code}")
    return "\n\n".join(parts)


def _parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"`{item}` is not KEY=VALUE (e.g. `--set num_classes=10`)", param_hint="--set")
        try:
            params[key.strip()] = parse_value(text)
        except ValueError as exc:
            raise click.BadParameter(f"`{item}`: {exc}", param_hint="--set") from None
    return params


def _finite(value: float) -> float:
    if value != value:   # NaN passes FloatRange
        raise click.BadParameter("give a number of GiB, e.g. `--max-memory 64`", param_hint="--max-memory")
    return value


include_path_option = click.option(
    "-I", "--include-path", "include_path", multiple=True, metavar="DIR",
    type=click.Path(exists=True, file_okay=False, path_type=str),
    help="A directory that `include` and `extends` may also read (repeatable; also $RESGRAPH_PATH). "
         "Without it, specs read files under their own directory only.")
set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="Override a spec parameter (repeatable), e.g. --set num_classes=10.")
spec_argument = click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
plugins_option = click.option("--no-plugins", "no_plugins", is_flag=True,
                              help="Load no plugins (a plugin is Python code that runs when loaded): neither the "
                                   "installed ones nor those a spec names, which is then an error (RG092).")


input_option = click.option(
    "--input", "input_shapes", multiple=True, metavar="SHAPE",
    help="Override the declared per-sample input shape, e.g. --input 3,160,160; NAME=SHAPE for one of several "
         "inputs (repeatable).")


class _Depth(click.ParamType):
    """`--depth`: a number of nesting levels, or `all`."""

    name = "N|all"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or value == "auto" or isinstance(value, int):
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            depth = int(value)
        except ValueError:
            depth = -1
        if depth < 0:
            self.fail(f"`{value}` is not a number of levels (0, 1, 2, ...); `--depth all` draws every node", param,
                      ctx)
        return depth


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(resgraph.__version__, prog_name="resgraph")
@click.option("--debug", is_flag=True, help="Show Python tracebacks of internal errors.")
def main(debug: bool) -> None:
    """Residual networks declared in YAML: validate, compile to torch, summarise and draw them."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@set_option
@include_path_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one machine-readable list of diagnostics for all files (for editors and CI).")
@plugins_option
@_handle_errors
def validate(specs: tuple[str, ...], sets: tuple[str, ...], include_path: tuple[str, ...],
             output_format: str, no_plugins: bool) -> None:
    """Check specs without building them (no torch import, unless a plugin imports it). Exit 0 when every
    spec is valid."""
    params = _parse_sets(sets)
    everything: list[Diagnostic] = []
    sources: dict[str, str] = {}
    codes = []
    for path in specs:
        network, diagnostics = resgraph._analyse(path, params or None, None, include_path, not no_plugins)
        everything += diagnostics.items
        sources.update(diagnostics.sources)
        codes.append(_exit_code(diagnostics.items))
        if output_format == "text":
            _print_diagnostics(diagnostics.items, diagnostics.sources)
            if not diagnostics.has_errors:
                what = (f"{len(network.graph)} nodes, {network.params:,} params" if network is not None
                        else "block library")
                click.echo(f"{path}: ok ({what})")
    if output_format == "json":
        click.echo(render_json(everything))
    sys.exit(max(codes, key=lambda c: (c == EXIT_INVALID, c)) if any(codes) else 0)


@main.command(name="compile")
@spec_argument
@set_option
@include_path_option
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, meta, ...")
@click.option("--dtype", type=click.Choice(list(resgraph.DTYPES)), default="float32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weight initialisation.")
@click.option("--zero-init-residual", is_flag=True, help="Zero the norm that ends each residual branch.")
@click.option("--max-memory", type=click.FloatRange(0, 2**40), callback=lambda ctx, param, value: _finite(value),
              default=resgraph.DEFAULT_MAX_MEMORY_BYTES / 2**30, show_default=True,
              metavar="GIB", help="Refuse networks whose parameters and activations (for --batch samples) "
                                  "would need more memory than this.")
@click.option("--batch", type=click.IntRange(1, 2**31 - 1), default=2, show_default=True,
              help="Batch size of the check pass.")
@click.option("--code", "show_code", is_flag=True, help="Print the generated forward code.")
@input_option
@plugins_option
@_handle_errors
def compile_command(spec: str, sets: tuple[str, ...], include_path: tuple[str, ...], device: str, dtype: str,
                    seed: int, zero_init_residual: bool, max_memory: float, batch: int, show_code: bool,
                    input_shapes: tuple[str, ...], no_plugins: bool) -> None:
    """Build the torch module, run a check forward pass and print a summary."""
    import torch

    from .lower import check_forward

    network = resgraph.load(spec, _parse_sets(sets) or None, include_path=include_path,
                            plugins=not no_plugins, inputs=_parse_input_shapes(input_shapes))
    _print_diagnostics(network.warnings, network.sources)
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")
    try:
        torch.empty(0, device=torch_device)   # torch knows the name but may not be built for it (xla, mps)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise click.BadParameter(f"this torch cannot allocate tensors on `{device}` ({str(exc).split('. ')[0][:160]}); "
                                 "use cpu, meta or an available cuda device", param_hint="--device") from None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # e.g. zero_init_residual without effect
        warnings.simplefilter("always")
        module = resgraph.compile(network, device=device, dtype=dtype, seed=seed,
                                  zero_init_residual=zero_init_residual, max_memory_bytes=int(max_memory * 2**30),
                                  batch=batch)
    built = time.perf_counter() - start
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    click.echo(network.summary())
    if show_code:
        click.echo(generated_code(module))
    actual = sum(p.numel() for p in module.parameters())
    if actual != network.params:
        raise RuntimeError(f"the module has {actual:,} parameters but the shape rules counted {network.params:,}")
    message = f"compiled `{network.name}` on {device} in {built:.2f} s"
    if torch_device.type != "meta":
        start = time.perf_counter()
        check_forward(module, network.graph, torch_device, getattr(torch, dtype), batch)
        message += f"; check forward pass (batch {batch}, {dtype}, eval) ok in {time.perf_counter() - start:.2f} s"
    click.echo(message)


@main.command()
@spec_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The diagram file; its suffix picks the format: .svg .png .pdf .dot, or .html (the interactive "
                   "viewer: one self-contained page).")
@set_option
@include_path_option
@click.option("--depth", type=_Depth(), default="auto", show_default=False,
              help="Levels of block nesting drawn in detail; each deeper block call or instance is one box with its "
                   "shortcut arcs (default 0: each top-level call, `layer1: bottleneck ×3`; for .html the viewer "
                   "picks); `--depth all` draws every node.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB", show_default=True,
              help="TB: top to bottom; LR: left to right.")
@click.option("--dpi", type=click.FloatRange(min=1, max=2400), default=None,
              help="Resolution of a .png (graphviz's default: 96).")
@click.option("--blocks", is_flag=True, help="Draw each block definition once, in detail, instead of the network.")
@input_option
@plugins_option
@_handle_errors
def render(spec: str, output: str, sets: tuple[str, ...], include_path: tuple[str, ...], depth: int | str | None,
           rankdir: str, dpi: float | None, blocks: bool, input_shapes: tuple[str, ...], no_plugins: bool) -> None:
    """Draw the network with graphviz: block calls as boxes with their shortcut arcs, shapes on edges, a legend.
    An invalid spec is drawn up to its error, marked red, and the exit status is 1."""
    from .diagram import DiagramCollapsed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagramCollapsed)
        try:
            network = resgraph.load(spec, _parse_sets(sets) or None, include_path=include_path,
                                    plugins=not no_plugins, inputs=_parse_input_shapes(input_shapes))
        except SpecError:
            resgraph.render(spec, output, _parse_sets(sets) or None, depth, include_path=include_path,
                            rankdir=rankdir.upper(), dpi=dpi, blocks=blocks,
                            inputs=_parse_input_shapes(input_shapes), plugins=not no_plugins)
            raise
        _print_diagnostics(network.warnings, network.sources)
        path = resgraph.render(network, output, depth=depth, rankdir=rankdir.upper(), dpi=dpi, blocks=blocks)
    for warning in caught:
        click.echo(f"note: {warning.message}", err=True)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=str))
@set_option
@include_path_option
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The TCP port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; only this machine can connect unless you name another "
                   "(e.g. 0.0.0.0 for every interface).")
@click.option("--edit", is_flag=True, help="Add an editor pane whose text is saved to SPEC (atomically).")
@plugins_option
@_handle_errors
def serve(spec: str, sets: tuple[str, ...], include_path: tuple[str, ...], port: int, host: str, edit: bool,
          no_plugins: bool) -> None:
    """Serve the interactive viewer of SPEC and update it whenever SPEC or a file it includes is saved (the
    diagram, the summary, or the diagnostics). Stop with Ctrl+C."""
    from .serve import Playground, is_loopback, serve as serve_playground

    playground = Playground(spec, _parse_sets(sets) or None, include_path, not no_plugins, edit)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can read the spec"
                   + (" and, with --edit, change it" if edit else ""), err=True)

    def ready(server) -> None:
        click.echo(f"serving {spec} at {server.url}" + (" (editable)" if edit else "") + "; Ctrl+C stops")
        sys.stdout.flush()

    try:
        serve_playground(playground, host, port, ready)
    except OSError as exc:   # it cannot listen there: a usage error, said without the generic handler's imports
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@main.command()
@spec_argument
@set_option
@include_path_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every node, block subtotal and total as one JSON object (schema in docs/cli.md).")
@input_option
@plugins_option
@_handle_errors
def summary(spec: str, sets: tuple[str, ...], include_path: tuple[str, ...], output_format: str,
            input_shapes: tuple[str, ...], no_plugins: bool) -> None:
    """Per-node output shape, parameters, MACs and activation memory, block subtotals and totals (no torch)."""
    from .report import summary_json

    network = resgraph.load(spec, _parse_sets(sets) or None, include_path=include_path,
                            plugins=not no_plugins, inputs=_parse_input_shapes(input_shapes))
    _print_diagnostics(network.warnings, network.sources)
    click.echo(summary_json(network.graph) if output_format == "json" else network.summary())


def _load_either(target: str, params: dict[str, Any] | None, include_path: tuple[str, ...],
                 inputs: Any, plugins: bool) -> "resgraph.Network":
    """A spec file, or `MODULE:CALLABLE` (a torch module, through `import`: runs that code) where no such file
    exists."""
    module, colon, attribute = target.partition(":")
    if colon and not os.path.exists(target) and module.replace(".", "_").isidentifier() and \
            attribute.replace(".", "_").isidentifier():
        from .importer import import_module

        if params:
            raise click.BadParameter(f"`{target}` is a Python callable, not a spec: `--set` has nothing to set there "
                                     "(its keyword arguments: write the spec with `resgraph import --arg`)",
                                     param_hint="--set")
        text = import_module(target, inputs)
        return resgraph.load(f"{attribute}.yaml", text=text, inputs=inputs)
    return resgraph.load(target, params, include_path=include_path, plugins=plugins, inputs=inputs)


@main.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@set_option
@click.option("--set-a", "sets_a", multiple=True, metavar="KEY=VALUE", help="Override a parameter of A only.")
@click.option("--set-b", "sets_b", multiple=True, metavar="KEY=VALUE", help="Override a parameter of B only.")
@include_path_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every change as one JSON object (schema in docs/cli.md).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Also draw both networks as one diagram, changes coloured: .svg .png .pdf .dot, or .html (a "
                   "self-contained page with the drawing and the report).")
@click.option("--depth", type=_Depth(), default="0", show_default=True,
              help="Levels of block nesting drawn in detail in the -o drawing (as for `render`).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB", show_default=True)
@input_option
@plugins_option
@_handle_errors
def diff(a: str, b: str, sets: tuple[str, ...], sets_a: tuple[str, ...], sets_b: tuple[str, ...],
         include_path: tuple[str, ...], output_format: str, output: str | None, depth: int | None, rankdir: str,
         input_shapes: tuple[str, ...], no_plugins: bool) -> None:
    """Compare two networks, block by block: A and B are spec files or MODULE:CALLABLE (through `import`, which
    runs that code). `--set` and `--input` apply to both, `--set-a` and `--set-b` to one. Exit 0 when they are
    the same, 1 when they differ, 2 on an error (either spec invalid, a bad option or output)."""
    from pathlib import Path

    from .diff import diff_graphs, diff_json, diff_text, write_diff

    sides = (sets + sets_a, sets + sets_b)
    inputs = _parse_input_shapes(input_shapes)
    try:
        first = _load_either(a, _parse_sets(sides[0]) or None, include_path, inputs, not no_plugins)
        second = _load_either(b, _parse_sets(sides[1]) or None, include_path, inputs, not no_plugins)
    except SpecError as exc:   # `diff`'s convention: 1 means "different", so an invalid spec is 2
        _print_diagnostics(exc.diagnostics, exc.sources)
        sys.exit(EXIT_USAGE)
    for network in (first, second):
        _print_diagnostics(network.warnings, network.sources)
    result = diff_graphs(first.graph, second.graph, " ".join([a, *(f"--set {s}" for s in sides[0])]),
                         " ".join([b, *(f"--set {s}" for s in sides[1])]))
    if output:
        write_diff(result, Path(output), first.input_files + second.input_files, depth=depth, rankdir=rankdir.upper())
    click.echo(diff_json(result) if output_format == "json" else diff_text(result))
    if output:
        click.echo(f"wrote {output}", err=True)
    sys.exit(0 if result.same else 1)


@main.command()
@spec_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The file; its suffix picks the format: .py (standalone PyTorch source), .pt2 (torch.export), "
                   ".onnx (needs the `export` extra).")
@set_option
@include_path_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights (.pt2 and .onnx).")
@plugins_option
@_handle_errors
def export(spec: str, output: str, sets: tuple[str, ...], include_path: tuple[str, ...], seed: int,
           no_plugins: bool) -> None:
    """Write the network out: as a standalone PyTorch file that needs only torch (and the plugins it uses),
    or as a program."""
    from pathlib import Path

    from .export import export as export_network

    network = resgraph.load(spec, _parse_sets(sets) or None, include_path=include_path,
                            plugins=not no_plugins)
    _print_diagnostics(network.warnings, network.sources)
    click.echo(f"wrote {export_network(network, Path(output), seed=seed)}")


@main.command()
@spec_argument
@set_option
@include_path_option
@click.option("--grad", is_flag=True, help="Also run one forward and backward pass at initialisation and report "
                                             "the gradient norm of every weight layer (imports torch).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=str), metavar="FILE",
              help="Draw gradient norm against depth to FILE (.png, .svg, .pdf; needs matplotlib). Implies --grad.")
@click.option("--compare", type=click.Path(dir_okay=False, path_type=str), metavar="SPEC",
              help="A second spec analysed alongside, e.g. a plain net against its residual twin.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weights, batch and labels.")
@click.option("--batch", type=click.IntRange(1, 2**31 - 1), default=8, show_default=True)
@_handle_errors
def analyze(spec: str, sets: tuple[str, ...], include_path: tuple[str, ...], grad: bool, plot: str | None,
            compare: str | None, seed: int, batch: int) -> None:
    """Paths, depths and receptive fields of a network; with --grad, its gradients at initialisation."""
    from pathlib import Path

    from .analysis import analyse_paths, gradient_norms, plot_gradients
    from .atomic import check_output

    params = _parse_sets(sets) or None
    networks = [resgraph.load(spec, params, include_path=include_path)]
    networks += [resgraph.load(compare, include_path=include_path)] if compare else []
    inputs = [file for network in networks for file in network.input_files]
    if plot:
        check_output(Path(plot), inputs)   # before the work: a plot never replaces a spec
    reports = []
    for network in networks:
        _print_diagnostics(network.warnings, network.sources)
        click.echo(analyse_paths(network.graph).to_text())
        if grad or plot:
            report = gradient_norms(resgraph.compile(network, seed=seed), network.graph, seed=seed, batch=batch)
            reports.append(report)
            click.echo("\n" + report.to_text())
        click.echo()
    if plot:
        plot_gradients(reports, plot, inputs)
        click.echo(f"wrote {plot}")


def _parse_input_shapes(values: tuple[str, ...]) -> Any:
    """`3,224,224` (the one input) or `NAME=3,64,64` (repeatable, one per input of the forward)."""
    shapes: dict[str, list[int]] = {}
    for item in values:
        name, sep, dims = item.rpartition("=")
        if sep and not name.strip():
            raise click.BadParameter(f"`{item}` names no input before `=`; write NAME=SHAPE, e.g. `image=3,64,64`",
                                     param_hint="--input")
        parts = dims.replace("x", ",").split(",")
        shape = []
        for position, part in enumerate(parts, start=1):
            text = part.strip()
            if not text.isdigit() or int(text) < 1 or int(text) > 2**31 - 1:
                what = "is empty" if not text else f"`{text}` is not a size from 1 to 2**31 - 1"
                raise click.BadParameter(f"in `{item}`, dimension {position} {what}; give a shape like `3,224,224` "
                                         "or `image=3,64,64`", param_hint="--input")
            shape.append(int(text))
        key = name.strip() if sep else ""
        if key in shapes:
            raise click.BadParameter(f"`{item}`: {'the input' if not key else f'input `{key}`'} is given twice",
                                     param_hint="--input")
        shapes[key] = shape
    if not shapes:
        return None
    if "" in shapes:
        if len(shapes) > 1:
            raise click.BadParameter("give one unnamed shape, or a NAME=shape per input", param_hint="--input")
        return shapes[""]
    return shapes


@main.command(name="import")
@click.argument("target", metavar="MODULE:CALLABLE")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The spec file to write (atomically).")
@click.option("--arg", "args", multiple=True, metavar="KEY=VALUE",
              help="A keyword argument for CALLABLE (repeatable), read as a YAML scalar, e.g. --arg num_classes=10.")
@click.option("--input", "inputs", multiple=True, metavar="SHAPE",
              help="Per-sample input shape, e.g. 3,224,224 (default: from the first layer); NAME=SHAPE for each "
                   "input of a forward with several.")
@_handle_errors
def import_command(target: str, output: str, args: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    """Write the spec of a torch module: MODULE:CALLABLE, e.g. torchvision.models:resnet50.

    This RUNS PYTHON CODE: it imports MODULE and calls CALLABLE(**args) to build the module,
    which it traces with torch.fx. Import only code you trust. (No other command runs code:
    spec files are data.) The spec is checked to compile to the module's state_dict keys.
    """
    from pathlib import Path

    from .atomic import write_atomically
    from .importer import import_module

    kwargs = {}
    for item in args:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise click.BadParameter(f"`{item}` is not KEY=VALUE (e.g. `--arg num_classes=10`)", param_hint="--arg")
        try:
            kwargs[key.strip()] = parse_value(text)
        except ValueError as exc:
            raise click.BadParameter(f"`{item}`: {exc}", param_hint="--arg") from None
    text = import_module(target, _parse_input_shapes(inputs), kwargs)
    network = resgraph.load(output, text=text)
    write_atomically(Path(output), text.encode("utf-8"))
    blocks = len(network.spec.blocks)
    click.echo(f"wrote {output} ({blocks} block{'s' * (blocks != 1)}, {len(network.graph)} nodes, "
               f"{network.params:,} params)")


@main.command()
@spec_argument
@set_option
@click.option("--origins", is_flag=True, help="Annotate each value with where it came from: the file:line of the "
                                              "literal or expression, and the params, `with`, `--set` or `extends` "
                                              "that gave its names their values.")
@_handle_errors
def expand(spec: str, sets: tuple[str, ...], origins: bool) -> None:
    """Print the network as one flat spec: blocks and repeats unrolled, every expression evaluated."""
    from .provenance import expanded_spec

    params = _parse_sets(sets)
    network = resgraph.load(spec, params or None)
    _print_diagnostics(network.warnings, network.sources)
    click.echo(expanded_spec(network.program, network.graph, params, origins=origins, source_name=spec), nl=False)


@main.command()
@spec_argument
@click.argument("node")
@set_option
@_handle_errors
def explain(spec: str, node: str, sets: tuple[str, ...]) -> None:
    """Show one node (e.g. `layer3.0.conv2`): its shape and counts, each attribute and where it came from."""
    from .diagnostics import did_you_mean
    from .provenance import Provenance

    params = _parse_sets(sets)
    network = resgraph.load(spec, params or None)
    found = network.graph.nodes.get(node)
    if found is None or found.is_input:
        names = [n.name for n in network.graph if not n.is_input]
        hint = did_you_mean(node, names) or ("nodes here: " + ", ".join(f"`{n}`" for n in names[:8])
                                             + (", ..." if len(names) > 8 else ""))
        raise click.BadParameter(f"`{node}` is not a node of `{network.name}`; {hint}", param_hint="NODE")
    click.echo(Provenance(network.program, network.graph, params).explain(found))


@main.command()
def lsp() -> None:
    """Run the language server over stdio, for editors (see docs/editor.md); needs pygls."""
    try:
        from .lsp import serve
    except ImportError as exc:
        if exc.name not in ("pygls", "lsprotocol") and not str(exc.name or "").startswith(("pygls.", "lsprotocol.")):
            raise
        click.echo("error: `resgraph lsp` needs pygls 2: pip install 'resgraph[lsp]' (or pip install 'pygls>=2')",
                   err=True)
        sys.exit(EXIT_USAGE)
    serve()


@main.command()
@_handle_errors
def schema() -> None:
    """Print the JSON Schema of the spec language (for yaml-language-server and other editors)."""
    from .spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
