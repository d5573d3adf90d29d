"""Export a compiled network: standalone PyTorch source (.py), a torch.export program (.pt2) or
ONNX (.onnx), chosen by the output file's suffix. Every file is written atomically."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .atomic import write_atomically

FORMATS = ("py", "pt2", "onnx")


class ExportError(Exception):
    """The export cannot be done (unknown suffix, a missing optional dependency, an exporter failure)."""


def export(network: Any, output: Path, *, seed: int | None = 0) -> Path:
    """Write `network` (a loaded `resgraph.Network`) to `output`; the batch dimension stays dynamic."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ExportError(f"cannot tell the format of `{output}`: use a .py, .pt2 or .onnx suffix")
    if suffix == "py":
        from .eject import eject_network

        return write_atomically(output, eject_network(network).encode("utf-8"))
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
        return _write_through_file(output, lambda path: torch.export.save(program, path))
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

    return _write_through_file(output, save)


def _write_through_file(output: Path, save) -> Path:
    """Exporters write to a path: let them write a temporary file, then move its bytes in atomically."""
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / ("model" + output.suffix))
        try:
            save(path)
        except Exception as exc:  # the exporters raise many types; report them as one
            raise ExportError(f"the {output.suffix} exporter failed: {type(exc).__name__}: {exc}") from exc
        return write_atomically(output, Path(path).read_bytes())
