"""Export a compiled network: standalone PyTorch source (.py), a torch.export program (.pt2) or
ONNX (.onnx), chosen by the output file's suffix. Every file is written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import check_output, write_atomically, write_through_directory

FORMATS = ("py", "pt2", "onnx")


class ExportError(Exception):
    """The export cannot be done (unknown suffix, a missing optional dependency, an exporter failure)."""


def export(network: Any, output: Path, *, seed: int | None = 0) -> Path:
    """Write `network` (a loaded `resgraph.Network`) to `output`; the batch dimension stays dynamic."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ExportError(f"cannot tell the format of `{output}`: use a .py, .pt2 or .onnx suffix")
    inputs = network.input_files
    check_output(output, inputs)   # before the work: an output that would replace the spec is refused at once
    if suffix == "py":
        from .eject import eject_network

        return write_atomically(output, eject_network(network).encode("utf-8"), inputs=inputs)
    import torch

    import resgraph

    model = resgraph.compile(network, seed=seed).eval()
    # A network with `training_outputs` is exported as in eval: the forward without the training-only nodes.
    model = getattr(model, "eval_forward", model)
    from .lower import example_inputs

    example = tuple(example_inputs(network.graph, 2))
    batch = torch.export.Dim("batch", min=1, max=2**16)
    dynamic = tuple({0: batch} for _ in example)
    if suffix == "pt2":
        program = torch.export.export(model, example, dynamic_shapes=dynamic)
        return _write_through_file(output, lambda path: torch.export.save(program, path), inputs)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the `export` extra: pip install 'resgraph[export]' "
                          "(onnx, onnxscript; onnxruntime to run the file)") from None
    names = [name for name in network.input_shapes]
    outputs = list(network.output_shapes)

    def save(path: str) -> None:
        torch.onnx.export(model, example, path, input_names=names, output_names=outputs,
                          dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)

    return _write_through_file(output, save, inputs)


def _write_through_file(output: Path, save, inputs: list[str]) -> Path:
    """Exporters write to a path: they write into a temporary directory beside the target (see atomic.py)."""
    def guarded(path: str) -> None:
        try:
            save(path)
        except Exception as exc:  # the exporters raise many types; report them as one
            raise ExportError(f"the {output.suffix} exporter failed: {type(exc).__name__}: {exc}") from exc

    return write_through_directory(output, guarded, inputs=inputs)
