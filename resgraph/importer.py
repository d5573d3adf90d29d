"""Import, the pipeline run backwards: a torch `nn.Module` -> resgraph spec text (YAML).

Traces the module with torch.fx, maps every fx node to a registered op, folds submodules into
blocks (instances of one class become one block with params, a chain of them in a container
one call with `repeat`), writes the spec, and checks that it compiles to the same module tree.
The only part of resgraph that runs user code: it imports a Python module and calls a callable.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import operator
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .diagnostics import Diagnostic, SpecError, did_you_mean
from .modules import TransposedLinear
from .ops import REGISTRY

CODE = "RG060"
DEFAULT_IMAGE_SIZE = 224


class _CannotImport(Exception):
    """One reason the model cannot be written as a spec; becomes an RG060 diagnostic."""

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message, self.help = message, help


def _fail(message: str, help: str | None = None) -> SpecError:
    return SpecError([Diagnostic(CODE, message, help=help)])


# ---- the entry point ---------------------------------------------------------------------------

def import_module(target: str | nn.Module, input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
                  kwargs: Mapping[str, Any] | None = None, *, name: str | None = None) -> str:
    """The spec (YAML text) of a torch module: `target` is an `nn.Module`, or `"MODULE:CALLABLE"`,
    which is imported and called with `kwargs` (this runs that Python code).

    `input_shape` is the per-sample input shape (a mapping for several inputs); by default it is
    taken from the first layer (`[in_channels, 224, 224]` for a convolution, `[in_features]` for
    a linear layer). Raises `SpecError` (code RG060) when the module cannot be written as a spec
    that compiles to the same modules; the returned spec is checked to compile to the module's
    state_dict keys, shapes and layer settings.
    """
    from .plugins import installed_plugins, load_plugin

    for _, plugin in installed_plugins():   # their ops may import modules of the model
        load_plugin(plugin)
    model, default_name, origin = _resolve_target(target, dict(kwargs or {}))
    name = name or default_name
    try:
        traced = _trace(model)
        inputs = _input_shapes(traced, input_shape)
        _propagate_shapes(traced, inputs)
        ids = _index_inputs(traced)
        _fold_tuple_results(traced)
        root = _ScopeBuilder(model, traced, inputs).build()
        definitions = _define_blocks(root)
        _check_names(root)
        text = _write_spec(name, origin, inputs, root, definitions, ids)
    except _CannotImport as exc:
        raise _fail(exc.message, exc.help) from None
    _check_round_trip(text, name, model)
    return text


def _resolve_target(target: str | nn.Module, kwargs: dict[str, Any]) -> tuple[nn.Module, str, str]:
    """The module to import, a default spec name, and where it came from (for the spec's doc)."""
    if isinstance(target, nn.Module):
        if kwargs:
            raise _fail("keyword arguments were given for a module that is already built",
                        help="pass a `MODULE:CALLABLE` target to have them passed to the callable")
        cls = type(target)
        return target, _snake_case(cls.__name__), f"an instance of `{_qualified(cls)}`"
    if not isinstance(target, str):
        raise _fail(f"cannot import {type(target).__name__}: expected an nn.Module or a `MODULE:CALLABLE` string")
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise _fail(f"`{target}` is not `MODULE:CALLABLE`", help="e.g. `torchvision.models:resnet50`")
    # As with `python -m`, modules in the working directory are importable.
    added = "" not in sys.path and os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported, not raised
        raise _fail(f"cannot import the Python module `{module_name}`: {type(exc).__name__}: {exc}",
                    help=f"check the module path; it is imported as `import {module_name}` would be") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    owner = module_name
    for part in attribute.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise _fail(f"`{owner}` has no attribute `{part}`", help=did_you_mean(part, public))
        obj, owner = getattr(obj, part), f"{owner}.{part}"
    if isinstance(obj, nn.Module):
        model, called = obj, target
        if kwargs:
            raise _fail(f"`{target}` is a module instance, not a callable; it takes no `--arg`")
    elif callable(obj):
        called = f"{target}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
        try:
            model = obj(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise _fail(f"`{called}` raised {type(exc).__name__}: {exc}") from None
    else:
        raise _fail(f"`{target}` is a {type(obj).__name__}, not a callable that builds an nn.Module")
    if not isinstance(model, nn.Module):
        raise _fail(f"`{called}` returned a {type(model).__name__}, not a torch.nn.Module")
    return model, _snake_case(attribute.split(".")[-1]), f"`{called}` ({_qualified(type(model))})"


# ---- tracing and shapes ------------------------------------------------------------------------

def _plugin_imports() -> dict[str, type]:
    """Qualified module class name -> the plugin op that imports it (`imports` of a plugin's op class)."""
    found = {}
    for cls in REGISTRY.values():
        for qualified in getattr(cls, "imports", ()):
            found[qualified] = cls
    return found


class _LeafTracer(fx.Tracer):
    """fx's tracer, with more kinds of leaf (`call_module` nodes): the modules that plugin ops import, and a
    subclass of a torch.nn layer resgraph maps that keeps the layer's forward (torchvision's `Conv3DSimple` is
    an `nn.Conv3d` with another constructor)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (_qualified(type(m)) in _plugin_imports() or super().is_leaf_module(m, module_qualified_name)
                or _layer_type(m) is not None)


def _layer_type(module: nn.Module) -> type | None:
    """The layer class in `_MODULES` (or torchvision's, `_torchvision_modules`) that `module` is, or is a
    subclass of with the same forward."""
    table = _module_table()
    if type(module) in table:
        return type(module)
    for base in type(module).__mro__[1:]:
        if base in table:
            return base if type(module).forward is base.forward else None
    return None


def _module_table() -> dict[type, tuple[str, Callable[[Any, Any], dict]]]:
    return {**_MODULES, **_torchvision_modules()}


def _trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx's symbolic trace; torch.nn's own layers stay leaves (`call_module` nodes)."""
    tracer = _LeafTracer(autowrap_functions=_autowrapped_functions())
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds for untraceable code
        stack = [path for path, _ in tracer.module_stack.values()] if hasattr(tracer, "module_stack") else []
        where = f"in `{stack[-1]}` ({_qualified(type(model.get_submodule(stack[-1])))})" if stack and stack[-1] \
            else f"in the forward of {_qualified(type(model))}"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _CannotImport(f"torch.fx cannot trace the model {where}: {first_line}",
                            help="resgraph imports models whose forward is the same graph for every input: "
                                 "no control flow on tensor values, no calls on tensor data") from None
    return fx.GraphModule(tracer.root, graph)


def _index_inputs(traced: fx.GraphModule) -> set[str]:
    """The inputs that feed an `nn.Embedding` directly: int64 ids."""
    found = set()
    for node in traced.graph.nodes:
        if node.op == "placeholder" and any(u.op == "call_module" and type(traced.get_submodule(u.target))
                                            is nn.Embedding for u in node.users):
            found.add(node.target)
    return found


def _fold_tuple_results(traced: fx.GraphModule) -> None:
    """`out, _ = self.lstm(x)`: the layer's node stands for item 0 of its result (the op's output); the
    unused final states disappear. Other uses of the tuple stay, and are reported as unsupported."""
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(traced.get_submodule(node.target), _TUPLE_MODULES):
            continue
        items = list(node.users)
        if not all(u.op == "call_function" and u.target is operator.getitem and u.args[0] is node for u in items):
            continue
        firsts = [u for u in items if u.args[1] == 0]
        if any(u.args[1] != 0 and u.users for u in items) or not firsts:
            continue
        node.meta["tensor_meta"] = firsts[0].meta.get("tensor_meta")
        for user in items:
            user.replace_all_uses_with(node)
            traced.graph.erase_node(user)


def _input_shapes(traced: fx.GraphModule, given: Any) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of the forward's inputs, from `given` or from the first layer."""
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if not placeholders:
        raise _CannotImport("the model's forward takes no inputs")
    if isinstance(given, Mapping):
        names = [n.target for n in placeholders]
        unknown = sorted(set(given) - set(names))
        missing = [n for n in names if n not in given]
        if unknown or missing:
            raise _CannotImport(f"input shapes were given for {', '.join(f'`{n}`' for n in given) or 'nothing'}, "
                                f"but the forward takes {', '.join(f'`{n}`' for n in names)}",
                                help="give one shape per input of the forward, by name")
        return {n: _shape(given[n], n) for n in names}
    if given is not None:
        if len(placeholders) != 1:
            raise _CannotImport(f"the forward takes {len(placeholders)} inputs "
                                f"({', '.join(f'`{n.target}`' for n in placeholders)}) but one shape was given",
                                help="give a shape per input, e.g. `--input image=3,64,64 --input mask=1,64,64`")
        return {placeholders[0].target: _shape(given, placeholders[0].target)}
    shapes = {}
    for placeholder in placeholders:
        shape = _shape_from_first_layer(traced, placeholder)
        if shape is None:
            raise _CannotImport(f"cannot tell the shape of the input `{placeholder.target}` from its first layer",
                                help="give it, e.g. `--input 3,224,224` (per sample, without the batch dimension)")
        shapes[placeholder.target] = shape
    return shapes


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, int) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
        raise _CannotImport(f"the shape of `{name}` must be a list of positive integers, got {value!r}")
    return tuple(value)


def _shape_from_first_layer(traced: fx.GraphModule, placeholder: fx.Node) -> tuple[int, ...] | None:
    users = [u for u in placeholder.users if u.op == "call_module"]
    if len(users) + len([u for u in placeholder.users if _is_shape_helper(u)]) != len(placeholder.users) or not users:
        return None   # the shape helpers: ViT reads the input's size before its first convolution
    module = traced.get_submodule(users[0].target)
    if type(module) is nn.Conv2d:
        return (module.in_channels, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    if type(module) is nn.Linear:
        return (module.in_features,)
    return None


def _propagate_shapes(traced: fx.GraphModule, inputs: dict[str, tuple[int, ...]]) -> None:
    """Record every node's output shape in `node.meta["tensor_meta"]`, with fake tensors, or meta tensors for a
    model on the meta device (nothing is computed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.shape_prop import ShapeProp

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    device = next((p.device for p in traced.parameters()), torch.device("cpu"))
    ids = _index_inputs(traced)
    examples = [torch.zeros((2, *shape), device=device, dtype=torch.int64) if name in ids else
                torch.empty((2, *shape), device=device) for name, shape in inputs.items()]
    # In eval mode: the graph is traced already, and the leaves' shapes do not depend on the mode, but a
    # training-mode batch norm under fake tensors decomposes into its statistics update (3/4 of DenseNet's time).
    training = [m for m in traced.modules() if m.training]
    # A model on the meta device runs on meta tensors as it is, several times faster than under fake tensors
    # (DenseNet-121: 2 s against 16 s); one with weights runs under fake tensors, which compute nothing.
    on_meta = all(t.is_meta for t in [*traced.parameters(), *traced.buffers()])
    try:
        traced.eval()
        with contextlib.redirect_stderr(io.StringIO()):   # ShapeProp prints the traceback before it raises
            ShapeProp(traced, fake_mode=None if on_meta else mode).propagate(*examples)
    except Exception as exc:  # noqa: BLE001
        cause = exc.__cause__ or exc   # ShapeProp's own message is the node's repr; the cause says why
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        node = re.match(r"ShapeProp error for: node=%(\S+)", str(exc))
        culprit = next((n for n in traced.graph.nodes if node and n.name == node.group(1)), None)
        if culprit is not None:
            first_line = f"{_describe_place_of(culprit)}: {first_line}"
        shapes = ", ".join(f"`{n}` {list(s)}" for n, s in inputs.items())
        raise _CannotImport(f"the model fails on an input of shape {shapes}: {first_line}",
                            help="give the input shape the model expects with `--input` (per sample)") from None
    finally:
        for module in training:   # the model's own modules: leave each as it was (`train()` would recurse)
            module.training = True


def _describe_place_of(node: fx.Node) -> str:
    """`layer1.0.conv1`, or the function and the module whose forward calls it."""
    if node.op == "call_module":
        return f"`{node.target}`"
    stack = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return f"`{_function_name(node)}` in `{stack[-1]}`" if stack and stack[-1] else f"`{_function_name(node)}`"


def _sample_shape(node: Any) -> tuple[int, ...] | None:
    if isinstance(node, fx.Node) and "sample_shape" in node.meta:   # a parameter without a batch dimension
        return node.meta["sample_shape"]
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return tuple(shape[1:]) if shape is not None else None


# ---- fx nodes -> ops ---------------------------------------------------------------------------

@dataclass
class _Mapped:
    """An fx node as a resgraph op: its attributes (all of them) and its tensor inputs."""

    op: str
    attrs: dict[str, Any]
    args: list[fx.Node]
    inplace: bool = False
    item: int | None = None   # reads output `item` of its input, a node with several outputs (`chunk:1`)


def _compact(value: Any) -> Any:
    """(3, 3) -> 3; (1, 3) -> [1, 3]: the attribute spellings of the spec language."""
    if isinstance(value, (tuple, list)):
        values = [int(v) for v in value]
        return values[0] if len(set(values)) == 1 else values
    return value


def _conv(op: str) -> Callable[[nn.Module, tuple], dict]:
    def attrs(m, shape):
        padding = m.padding if isinstance(m.padding, str) else _compact(m.padding)
        return {"out": m.out_channels, "kernel": _compact(m.kernel_size), "stride": _compact(m.stride),
                "padding": padding, "dilation": _compact(m.dilation), "groups": m.groups,
                "bias": m.bias is not None, "padding_mode": m.padding_mode}
    return attrs


def _batchnorm(m, shape):
    if m.momentum is None:
        raise _Unsupported(f"`{_qualified(type(m))}` with `momentum=None` (a cumulative average)")
    return {"eps": float(m.eps), "momentum": float(m.momentum), "affine": m.affine,
            "track_running_stats": m.track_running_stats}


def _layernorm(m, shape):
    normalized = tuple(m.normalized_shape)
    return {"shape": _compact(normalized) if len(normalized) > 1 or shape is None or normalized != shape[-1:] else None,
            "eps": float(m.eps), "elementwise_affine": m.elementwise_affine,
            "bias": getattr(m, "bias", None) is not None or not m.elementwise_affine}


def _rmsnorm(m, shape):
    normalized = tuple(m.normalized_shape)
    attributes = {"shape": _compact(normalized) if len(normalized) > 1 or shape is None or normalized != shape[-1:]
                  else None, "elementwise_affine": m.elementwise_affine}
    return attributes | ({"eps": float(m.eps)} if m.eps is not None else {})


def _maxpool(m, shape):
    if m.return_indices:
        raise _Unsupported(f"`{_qualified(type(m))}` with `return_indices=True`")
    return {"kernel": _compact(m.kernel_size), "stride": _compact(m.stride if m.stride is not None else m.kernel_size),
            "padding": _compact(m.padding), "dilation": _compact(m.dilation), "ceil_mode": m.ceil_mode}


def _avgpool(m, shape):
    if getattr(m, "divisor_override", None) is not None:
        raise _Unsupported(f"`{_qualified(type(m))}` with `divisor_override`")
    return {"kernel": _compact(m.kernel_size), "stride": _compact(m.stride if m.stride is not None else m.kernel_size),
            "padding": _compact(m.padding), "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}


def _adaptive_size(size, n: int = 2):
    sizes = (size,) * n if isinstance(size, int) or size is None else tuple(size)
    if any(s is None for s in sizes):
        raise _Unsupported("an adaptive pool with a `None` output size (keeping that dimension)")
    return _compact(sizes)


def _embedding(m, shape):
    if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
        raise _Unsupported("`torch.nn.Embedding` with `max_norm`, `scale_grad_by_freq` or `sparse`")
    return {"num": m.num_embeddings, "dim": m.embedding_dim, "padding_idx": m.padding_idx}


def _recurrent(m, shape):
    if not m.batch_first or getattr(m, "proj_size", 0):
        raise _Unsupported(f"`{_qualified(type(m))}` other than with `batch_first=True` (and no `proj_size`)")
    return {"hidden": m.hidden_size, "layers": m.num_layers, "bidirectional": m.bidirectional,
            "dropout": float(m.dropout), "bias": m.bias}


def _adaptive(n: int) -> Callable[[nn.Module, tuple], dict]:
    return lambda m, shape: {"size": _adaptive_size(m.output_size, n)}


def _instancenorm(m, shape):
    if m.track_running_stats and m.momentum is None:
        raise _Unsupported(f"`{_qualified(type(m))}` with `momentum=None` (a cumulative average)")
    return {"eps": float(m.eps), "momentum": float(m.momentum if m.momentum is not None else 0.1),
            "affine": m.affine, "track_running_stats": m.track_running_stats}


def _conv_transpose(m, shape):
    if m.padding_mode != "zeros":
        raise _Unsupported(f"`{_qualified(type(m))}` with `padding_mode={m.padding_mode!r}`")
    return {"out": m.out_channels, "kernel": _compact(m.kernel_size), "stride": _compact(m.stride),
            "padding": _compact(m.padding), "output_padding": _compact(m.output_padding),
            "dilation": _compact(m.dilation), "groups": m.groups, "bias": m.bias is not None}


def _pad_module(mode: str) -> Callable[[nn.Module, tuple], dict]:
    def attrs(m, shape):
        return {"widths": [int(w) for w in m.padding], "mode": mode, "value": float(getattr(m, "value", 0.0))}
    return attrs


def _softmax_module(m, shape):
    if m.dim is None:
        raise _Unsupported(f"`{_qualified(type(m))}` without `dim` (torch's implicit choice is deprecated)")
    return {"dim": m.dim}


class _Unsupported(Exception):
    """A node with no op: `what` names it (collected, one diagnostic per kind)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# torch.nn layer -> (op, its attributes). Exact types: a subclass may have another forward.
_MODULES: dict[type, tuple[str, Callable[[Any, Any], dict]]] = {
    nn.Conv1d: ("conv1d", _conv("conv1d")),
    nn.Conv2d: ("conv2d", _conv("conv2d")),
    nn.BatchNorm1d: ("batchnorm1d", _batchnorm),
    nn.BatchNorm2d: ("batchnorm2d", _batchnorm),
    nn.LayerNorm: ("layernorm", _layernorm),
    nn.GroupNorm: ("groupnorm", lambda m, s: {"groups": m.num_groups, "eps": float(m.eps), "affine": m.affine}),
    nn.Linear: ("linear", lambda m, s: {"out": m.out_features, "bias": m.bias is not None}),
    TransposedLinear: ("linear", lambda m, s: {"out": m.out_features, "bias": m.bias is not None,
                                               "weight_layout": "in_out"}),
    nn.Dropout: ("dropout", lambda m, s: {"p": float(m.p)}),
    nn.Identity: ("identity", lambda m, s: {}),
    nn.Flatten: ("flatten", lambda m, s: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    nn.MaxPool2d: ("maxpool2d", _maxpool),
    nn.AvgPool2d: ("avgpool2d", _avgpool),
    nn.AdaptiveAvgPool2d: ("adaptive_avgpool2d", lambda m, s: {"size": _adaptive_size(m.output_size)}),
    nn.ReLU: ("relu", lambda m, s: {}),
    nn.ReLU6: ("relu6", lambda m, s: {}),
    nn.GELU: ("gelu", lambda m, s: {"approximate": m.approximate}),
    nn.SiLU: ("silu", lambda m, s: {}),
    nn.Sigmoid: ("sigmoid", lambda m, s: {}),
    nn.Tanh: ("tanh", lambda m, s: {}),
    nn.Embedding: ("embedding", _embedding),
    nn.LSTM: ("lstm", _recurrent),
    nn.GRU: ("gru", _recurrent),
    nn.RMSNorm: ("rmsnorm", _rmsnorm),
    nn.ChannelShuffle: ("channel_shuffle", lambda m, s: {"groups": m.groups}),
    nn.Unflatten: ("unflatten", lambda m, s: {"dim": m.dim, "sizes": list(m.unflattened_size)}),
    # issue 10: the spatial ops in 1-d, 2-d and 3-d, activations and padding
    nn.Conv3d: ("conv3d", _conv("conv3d")),
    nn.ConvTranspose1d: ("conv_transpose1d", _conv_transpose),
    nn.ConvTranspose2d: ("conv_transpose2d", _conv_transpose),
    nn.ConvTranspose3d: ("conv_transpose3d", _conv_transpose),
    nn.BatchNorm3d: ("batchnorm3d", _batchnorm),
    nn.InstanceNorm1d: ("instancenorm1d", _instancenorm),
    nn.InstanceNorm2d: ("instancenorm2d", _instancenorm),
    nn.InstanceNorm3d: ("instancenorm3d", _instancenorm),
    nn.MaxPool1d: ("maxpool1d", _maxpool),
    nn.MaxPool3d: ("maxpool3d", _maxpool),
    nn.AvgPool1d: ("avgpool1d", _avgpool),
    nn.AvgPool3d: ("avgpool3d", _avgpool),
    nn.AdaptiveAvgPool1d: ("adaptive_avgpool1d", _adaptive(1)),
    nn.AdaptiveAvgPool3d: ("adaptive_avgpool3d", _adaptive(3)),
    nn.AdaptiveMaxPool1d: ("adaptive_maxpool1d", _adaptive(1)),
    nn.AdaptiveMaxPool2d: ("adaptive_maxpool2d", _adaptive(2)),
    nn.AdaptiveMaxPool3d: ("adaptive_maxpool3d", _adaptive(3)),
    nn.PixelShuffle: ("pixel_shuffle", lambda m, s: {"factor": m.upscale_factor}),
    nn.PixelUnshuffle: ("pixel_unshuffle", lambda m, s: {"factor": m.downscale_factor}),
    nn.Hardswish: ("hardswish", lambda m, s: {}),
    nn.Hardsigmoid: ("hardsigmoid", lambda m, s: {}),
    nn.Mish: ("mish", lambda m, s: {}),
    nn.LeakyReLU: ("leaky_relu", lambda m, s: {"negative_slope": float(m.negative_slope)}),
    nn.ELU: ("elu", lambda m, s: {"alpha": float(m.alpha)}),
    nn.Softplus: ("softplus", lambda m, s: {"beta": float(m.beta), "threshold": float(m.threshold)}),
    nn.PReLU: ("prelu", lambda m, s: {"num_parameters": m.num_parameters, "init": float(m.init)}),
    nn.Softmax: ("softmax", _softmax_module),
    nn.MultiheadAttention: ("multihead_attention", lambda m, s: {}),   # by `_attention`, which sees the call
    nn.LogSoftmax: ("log_softmax", _softmax_module),
    **{getattr(nn, f"{kind}Pad{n}d"): ("pad", _pad_module(mode)) for n in (1, 2, 3) for kind, mode in
       (("Zero", "constant"), ("Constant", "constant"), ("Reflection", "reflect"), ("Replication", "replicate"),
        ("Circular", "circular"))},
}
# Layers that return a tuple whose item 0 is the op's output (the hidden states of every step; attention's
# output beside its weights).
_TUPLE_MODULES = (nn.LSTM, nn.GRU, nn.MultiheadAttention)
_INPLACE_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Dropout, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
                    nn.Mish)
_SUPPORTED_HELP = ("resgraph imports the torch.nn layers docs/import.md lists (Conv1d, Conv2d, BatchNorm1d, ...), "
                   "their functions, tensor arithmetic and torch.cat; replace the layer in the model, or add an op "
                   "for it (one class in resgraph/ops/)")


def _bind(node: fx.Node, names: Sequence[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a function or method call by parameter name (`self` is `input`)."""
    values = dict(defaults)
    values.update(zip(names, node.args))
    values.update(node.kwargs)
    return values


def _unary(op: str, extra: Callable[[dict], dict] = lambda a: {}, inplace: bool = False):
    names = ("input", "approximate") if op == "gelu" else ("input", "inplace")

    def mapping(node: fx.Node) -> _Mapped:
        args = _bind(node, names, {"inplace": inplace, "approximate": "none"})
        return _Mapped(op, extra(args), [args["input"]], inplace=bool(args.get("inplace")))
    return mapping


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _binary(op: str):
    def mapping(node: fx.Node) -> _Mapped:
        args = _bind(node, ("input", "other", "alpha"), {"alpha": 1})
        if args.get("alpha", 1) != 1:
            raise _Unsupported(f"`{_function_name(node)}` with `alpha`")
        operands = [args["input"], args["other"]]
        tensors = [a for a in operands if isinstance(a, fx.Node)]
        constants = [a for a in operands if _is_number(a)]
        if len(tensors) == 1 and len(constants) == 1:
            # `x * 0.5`, `x + 1`, `x - 1`: the scalar ops (a constant minus a tensor has no op)
            if op == "mul":
                return _Mapped("scale", {"factor": float(constants[0])}, tensors)
            if op == "add":
                return _Mapped("shift", {"value": float(constants[0])}, tensors)
            if op == "sub" and operands[0] is tensors[0]:
                return _Mapped("shift", {"value": -float(constants[0])}, tensors)
        if len(tensors) != 2:
            raise _Unsupported(f"`{_function_name(node)}` with a constant operand")
        return _Mapped(op, {}, operands)
    return mapping


def _with(op: str, names: tuple[str, ...], defaults: dict[str, Any], keep: tuple[str, ...]):
    """A function whose attributes are some of its arguments (by parameter name), e.g. F.leaky_relu."""
    def mapping(node: fx.Node) -> _Mapped:
        args = _bind(node, names, defaults)
        attrs = {key: (float(args[key]) if isinstance(args[key], (int, float)) and not isinstance(args[key], bool)
                       and key != "dim" else args[key]) for key in keep}
        if "dim" in attrs and attrs["dim"] is None:
            raise _Unsupported(f"`{_function_name(node)}` without `dim`")
        if "dim" in attrs:
            _not_the_batch(node, attrs["dim"], args["input"])
        return _Mapped(op, attrs, [args["input"]], inplace=bool(args.get("inplace")))
    return mapping


def _reduction(op: str):
    """torch.mean / sum / amax and their Tensor methods over explicit dimensions (not the batch)."""
    def mapping(node: fx.Node) -> _Mapped:
        args = _bind(node, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
        dims = args["dim"]
        if dims is None or dims == [] or dims == ():
            raise _Unsupported(f"`{_function_name(node)}` over every dimension (the batch included)")
        if "dtype" in node.kwargs:
            raise _Unsupported(f"`{_function_name(node)}` with `dtype`")
        dims = [dims] if isinstance(dims, int) else list(dims)
        for dim in dims:
            _not_the_batch(node, dim, args["input"])
        return _Mapped(op, {"dims": dims[0] if len(dims) == 1 else dims, "keepdim": bool(args["keepdim"])},
                       [args["input"]])
    return mapping


def _pad_function(node: fx.Node) -> _Mapped:
    args = _bind(node, ("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
    widths = list(args["pad"])
    if not all(isinstance(w, int) for w in widths):
        raise _Unsupported(f"`{_function_name(node)}` with widths computed at run time")
    return _Mapped("pad", {"widths": widths, "mode": args["mode"], "value": float(args["value"] or 0.0)},
                   [args["input"]])


def _not_the_batch(node: fx.Node, dim: int, tensor: Any) -> None:
    shape = _sample_shape(tensor)
    if dim == 0 or (shape is not None and dim == -(len(shape) + 1)):
        raise _Unsupported(f"`{_function_name(node)}` over the batch dimension")


def _flatten(node: fx.Node) -> _Mapped:
    args = _bind(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    _not_the_batch(node, args["start_dim"], args["input"])
    return _Mapped("flatten", {"start_dim": args["start_dim"], "end_dim": args["end_dim"]}, [args["input"]])


def _dims_call(op: str, names: tuple[str, ...], attributes: Callable[[dict], dict], batch_dims: tuple[str, ...]):
    """A layout call (`x.permute(0, 2, 1)`, `torch.transpose(x, 1, 2)`) with constant dimensions."""
    def mapping(node: fx.Node) -> _Mapped:
        if node.op == "call_method" and op == "permute" and len(node.args) > 2:
            args = {"input": node.args[0], "dims": list(node.args[1:])}   # x.permute(0, 2, 1)
        else:
            args = _bind(node, names, {})
        values = attributes(args)
        if any(isinstance(v, fx.Node) for v in values.values()) or \
                any(isinstance(v, fx.Node) for value in values.values() if isinstance(value, (list, tuple))
                    for v in value):
            raise _Unsupported(f"`{_function_name(node)}` with sizes computed at run time")
        for name in batch_dims:
            for dim in (values[name] if isinstance(values[name], (list, tuple)) else [values[name]]):
                _not_the_batch(node, dim, args["input"])
        return _Mapped(op, values, [args["input"]])
    return mapping


_PERMUTE = _dims_call("permute", ("input", "dims"), lambda a: {"dims": list(a["dims"])}, ())
_TRANSPOSE = _dims_call("transpose", ("input", "dim0", "dim1"), lambda a: {"dim0": a["dim0"], "dim1": a["dim1"]},
                        ("dim0", "dim1"))
_SELECT = _dims_call("select", ("input", "dim", "index"), lambda a: {"dim": a["dim"], "index": a["index"]}, ("dim",))
_ROLL = _dims_call("roll", ("input", "shifts", "dims"),
                   lambda a: {"shifts": _listed(a["shifts"]), "dims": _listed(a.get("dims"))}, ("dims",))
_UNFLATTEN = _dims_call("unflatten", ("input", "dim", "sizes"), lambda a: {"dim": a["dim"], "sizes": list(a["sizes"])},
                        ("dim",))
_CHANNEL_SHUFFLE = _dims_call("channel_shuffle", ("input", "groups"), lambda a: {"groups": a["groups"]}, ())


def _listed(value: Any) -> Any:
    if value is None:
        raise _Unsupported("`torch.roll` without `dims` (it would roll across the batch)")
    return list(value) if isinstance(value, (list, tuple)) else value


def _concat(node: fx.Node) -> _Mapped:
    args = _bind(node, ("tensors", "dim"), {"dim": 0})
    tensors = list(args["tensors"])
    if not all(isinstance(t, fx.Node) for t in tensors):
        raise _Unsupported(f"`{_function_name(node)}` of a constant")
    if len(tensors) == 1:  # DenseNet's first layer concatenates a list of one tensor
        return _Mapped("identity", {}, tensors)
    _not_the_batch(node, args["dim"], tensors[0])
    return _Mapped("concat", {"dim": args["dim"]}, tensors)


def _pool_function(op: str, names: tuple[str, ...], defaults: dict[str, Any]):
    def mapping(node: fx.Node) -> _Mapped:
        args = _bind(node, names, defaults)
        if args.get("return_indices") or args.get("divisor_override") is not None:
            raise _Unsupported(f"`{_function_name(node)}` with `return_indices` or `divisor_override`")
        if op.startswith("adaptive_"):
            return _Mapped(op, {"size": _adaptive_size(args["output_size"], int(op[-2]))}, [args["input"]])
        kernel = _compact(args["kernel_size"])
        stride = _compact(args["stride"]) if args["stride"] not in (None, [], ()) else kernel
        attrs = {"kernel": kernel, "stride": stride, "padding": _compact(args["padding"]),
                 "ceil_mode": bool(args["ceil_mode"])}
        if op.startswith("maxpool"):
            attrs["dilation"] = _compact(args["dilation"])
        else:
            attrs["count_include_pad"] = bool(args["count_include_pad"])
        return _Mapped(op, attrs, [args["input"]])
    return mapping


def _dropout(node: fx.Node) -> _Mapped:
    args = _bind(node, ("input", "p", "training", "inplace"), {"p": 0.5})
    return _Mapped("dropout", {"p": float(args["p"])}, [args["input"]])


def _stochastic_depth(node: fx.Node) -> _Mapped:
    """torchvision.ops.stochastic_depth (EfficientNet, ConvNeXt): per-sample ("row") is resgraph's drop_path."""
    args = _bind(node, ("input", "p", "mode", "training"), {"training": True})
    if args["mode"] != "row":
        raise _Unsupported(f"`torchvision.ops.stochastic_depth` with mode={args['mode']!r} (drop_path drops per "
                           "sample, mode 'row')")
    return _Mapped("drop_path", {"p": float(args["p"])}, [args["input"]])


def _torchvision_functions() -> dict[Any, Callable[[fx.Node], _Mapped]]:
    """Functions torchvision registers with fx (they stay calls in a trace), and its helpers that the tracer
    keeps as calls (`_autowrapped_functions`); only where it is imported."""
    found: dict[Any, Callable[[fx.Node], _Mapped]] = {}
    module = sys.modules.get("torchvision.ops.stochastic_depth")
    if module is not None:
        found[module.stochastic_depth] = _stochastic_depth
    module = sys.modules.get("torchvision.models.shufflenetv2")
    if module is not None:
        found[module.channel_shuffle] = lambda node: _Mapped(
            "channel_shuffle", {"groups": _bind(node, ("x", "groups"), {})["groups"]}, [node.args[0]])
    return found


def _autowrapped_functions() -> tuple:
    """torchvision helpers the tracer records as one call rather than tracing through: ShuffleNetV2's
    `channel_shuffle` reshapes with sizes read from the tensor, which is resgraph's `channel_shuffle`."""
    module = sys.modules.get("torchvision.models.shufflenetv2")
    return (module.channel_shuffle,) if module is not None else ()


def _channel_layernorm(m, shape):
    return {"channels_first": True, "eps": float(m.eps), "elementwise_affine": m.elementwise_affine,
            "bias": getattr(m, "bias", None) is not None or not m.elementwise_affine}


def _window_attention(version: int) -> Callable[[Any, Any], dict]:
    def attrs(m, shape):
        return {"heads": int(m.num_heads), "window": [int(w) for w in m.window_size],
                "shift": [int(s) for s in m.shift_size], "version": version,
                "qkv_bias": m.qkv.bias is not None, "proj_bias": m.proj.bias is not None,
                "attention_dropout": float(m.attention_dropout), "dropout": float(m.dropout)}
    return attrs


def _stochastic_depth_module(m, shape):
    if m.mode != "row":
        raise _Unsupported(f"`StochasticDepth` with mode={m.mode!r} (drop_path drops per sample, mode 'row')")
    return {"p": float(m.p)}


def _patch_merging(version: int) -> Callable[[Any, Any], dict]:
    return lambda m, shape: {"version": version, "eps": float(m.norm.eps)}


def _torchvision_modules() -> dict[type, tuple[str, Callable[[Any, Any], dict]]]:
    """torchvision layers (and Hugging Face's `Conv1D`) that are one resgraph op (with the same state_dict keys);
    only where they are imported.
    ConvNeXt's `LayerNorm2d` reads its own weight in its forward: as a leaf it is `layernorm` over channels.
    Swin's shifted-window attention and patch merging (V1 and V2) are resgraph's composite ops of those names."""
    found: dict[type, tuple[str, Callable[[Any, Any], dict]]] = {}
    convnext = sys.modules.get("torchvision.models.convnext")
    if convnext is not None:
        found[convnext.LayerNorm2d] = ("layernorm", _channel_layernorm)
    ops = sys.modules.get("torchvision.ops.stochastic_depth")
    if ops is not None:   # Swin calls one StochasticDepth twice: as a leaf, each call is its own drop_path
        found[ops.StochasticDepth] = ("drop_path", _stochastic_depth_module)
    hugging_face = sys.modules.get("transformers.pytorch_utils")
    if hugging_face is not None and hasattr(hugging_face, "Conv1D"):   # GPT-2's linear layers, weights [in, out]
        found[hugging_face.Conv1D] = ("linear", lambda m, s: {"out": m.nf, "bias": m.bias is not None,
                                                              "weight_layout": "in_out"})
    swin = sys.modules.get("torchvision.models.swin_transformer")
    if swin is not None:
        found[swin.ShiftedWindowAttention] = ("shifted_window_attention", _window_attention(1))
        found[swin.ShiftedWindowAttentionV2] = ("shifted_window_attention", _window_attention(2))
        found[swin.PatchMerging] = ("patch_merging", _patch_merging(1))
        found[swin.PatchMergingV2] = ("patch_merging", _patch_merging(2))
    return found


def _lowered_as(layer: type) -> str | None:
    """The class name resgraph lowers a torchvision layer to, where it is not the layer's own class."""
    convnext = sys.modules.get("torchvision.models.convnext")
    if convnext is not None and layer is convnext.LayerNorm2d:
        return "ChannelLayerNorm"
    swin = sys.modules.get("torchvision.models.swin_transformer")
    if swin is not None and layer in (swin.ShiftedWindowAttention, swin.ShiftedWindowAttentionV2):
        return "ShiftedWindowAttention"
    if swin is not None and layer in (swin.PatchMerging, swin.PatchMergingV2):
        return "PatchMerging"
    hugging_face = sys.modules.get("transformers.pytorch_utils")
    if hugging_face is not None and layer is getattr(hugging_face, "Conv1D", None):
        return "TransposedLinear"
    return None


def _settings_shown(layer: type | None) -> bool:
    """Whether a layer's `extra_repr` states its settings (torchvision's Swin layers show none: theirs are read
    from the layer's attributes into the op, and checked through the keys, shapes and outputs)."""
    return _lowered_as(layer) not in ("ShiftedWindowAttention", "PatchMerging", "TransposedLinear")


_GELU = _unary("gelu", lambda a: {"approximate": a["approximate"]})
_FUNCTIONS: dict[Any, Callable[[fx.Node], _Mapped]] = {
    operator.add: _binary("add"), operator.iadd: _binary("add"), torch.add: _binary("add"),
    operator.mul: _binary("mul"), operator.imul: _binary("mul"), torch.mul: _binary("mul"),
    torch.cat: _concat, torch.concat: _concat,
    torch.flatten: _flatten,
    F.relu: _unary("relu"), torch.relu: _unary("relu"), torch.relu_: _unary("relu", inplace=True),
    F.relu6: _unary("relu6"),
    F.gelu: _GELU, F.silu: _unary("silu"),
    torch.sigmoid: _unary("sigmoid"), F.sigmoid: _unary("sigmoid"),
    torch.tanh: _unary("tanh"), F.tanh: _unary("tanh"),
    F.max_pool2d: _pool_function("maxpool2d", ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                               "return_indices"),
                                 {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}),
    F.avg_pool2d: _pool_function("avgpool2d", ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                               "count_include_pad", "divisor_override"),
                                 {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}),
    F.adaptive_avg_pool2d: _pool_function("adaptive_avgpool2d", ("input", "output_size"), {}),
    F.dropout: _dropout,
    torch.permute: _PERMUTE, torch.transpose: _TRANSPOSE, torch.select: _SELECT, torch.roll: _ROLL,
    torch.unflatten: _UNFLATTEN, F.channel_shuffle: _CHANNEL_SHUFFLE, torch.channel_shuffle: _CHANNEL_SHUFFLE,
    # issue 10: pools in 1-d and 3-d, adaptive max pools, activations, reductions, arithmetic, padding
    **{getattr(F, f"max_pool{n}d"): _pool_function(f"maxpool{n}d", (
        "input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
        {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}) for n in (1, 3)},
    F.avg_pool1d: _pool_function("avgpool1d", ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                               "count_include_pad"),
                                 {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}),
    F.avg_pool3d: _pool_function("avgpool3d", ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                               "count_include_pad", "divisor_override"),
                                 {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}),
    **{getattr(F, f"adaptive_{kind}_pool{n}d"): _pool_function(f"adaptive_{kind}pool{n}d",
                                                               ("input", "output_size", "return_indices"), {})
       for n in (1, 2, 3) for kind in ("avg", "max") if (kind, n) != ("avg", 2)},
    F.hardswish: _unary("hardswish"), F.hardsigmoid: _unary("hardsigmoid"), F.mish: _unary("mish"),
    F.leaky_relu: _with("leaky_relu", ("input", "negative_slope", "inplace"), {"negative_slope": 0.01},
                        ("negative_slope",)),
    F.elu: _with("elu", ("input", "alpha", "inplace"), {"alpha": 1.0}, ("alpha",)),
    F.softplus: _with("softplus", ("input", "beta", "threshold"), {"beta": 1.0, "threshold": 20.0},
                      ("beta", "threshold")),
    F.softmax: _with("softmax", ("input", "dim"), {"dim": None}, ("dim",)),
    torch.softmax: _with("softmax", ("input", "dim"), {"dim": None}, ("dim",)),
    F.log_softmax: _with("log_softmax", ("input", "dim"), {"dim": None}, ("dim",)),
    torch.log_softmax: _with("log_softmax", ("input", "dim"), {"dim": None}, ("dim",)),
    F.pixel_shuffle: lambda node: _Mapped("pixel_shuffle", {"factor": _bind(node, ("input", "upscale_factor"), {})[
        "upscale_factor"]}, [node.args[0]]),
    F.pixel_unshuffle: lambda node: _Mapped("pixel_unshuffle", {"factor": _bind(node, ("input", "downscale_factor"),
                                                                                  {})["downscale_factor"]},
                                            [node.args[0]]),
    torch.mean: _reduction("mean"), torch.sum: _reduction("sum"), torch.amax: _reduction("amax"),
    operator.sub: _binary("sub"), operator.isub: _binary("sub"), torch.sub: _binary("sub"),
    operator.matmul: _binary("matmul"), torch.matmul: _binary("matmul"),
    F.pad: _pad_function,
}
_METHODS: dict[str, Callable[[fx.Node], _Mapped]] = {
    "add": _binary("add"), "mul": _binary("mul"), "flatten": _flatten,
    "relu": _unary("relu"), "relu_": _unary("relu", inplace=True), "sigmoid": _unary("sigmoid"),
    "tanh": _unary("tanh"),
    "permute": _PERMUTE, "transpose": _TRANSPOSE, "select": _SELECT, "roll": _ROLL, "unflatten": _UNFLATTEN,
    "mean": _reduction("mean"), "sum": _reduction("sum"), "amax": _reduction("amax"),
    "sub": _binary("sub"), "matmul": _binary("matmul"),
    "softmax": _with("softmax", ("input", "dim"), {"dim": None}, ("dim",)),
    "log_softmax": _with("log_softmax", ("input", "dim"), {"dim": None}, ("dim",)),
}


def _attention(node: fx.Node, module: nn.MultiheadAttention) -> _Mapped:
    """`self.attn(q, k, v, need_weights=False)` of an `nn.MultiheadAttention` with `batch_first=True`: the
    `multihead_attention` op, self-attention where q, k and v are one tensor, cross-attention otherwise."""
    what = _describe_module(module)
    args = _bind(node, ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
                        "average_attn_weights", "is_causal"),
                 {"key_padding_mask": None, "need_weights": True, "attn_mask": None, "is_causal": False})
    if not module.batch_first:
        raise _Unsupported(f"{what} with `batch_first=False` (resgraph's sequences are [batch, length, features])")
    if module.bias_k is not None or module.add_zero_attn:
        raise _Unsupported(f"{what} with `add_bias_kv` or `add_zero_attn`")
    if args["key_padding_mask"] is not None or args["attn_mask"] is not None or args["is_causal"]:
        raise _Unsupported(f"{what} called with a mask")
    if (module.in_proj_bias is None) != (module.out_proj.bias is None):
        raise _Unsupported(f"{what} with a bias in one projection only")
    query, key, value = args["query"], args["key"], args["value"]
    if not all(isinstance(v, fx.Node) for v in (query, key, value)):
        raise _Unsupported(f"{what} called with other than tensors")
    inputs = [query] if query is key is value else [query, key] if key is value else [query, key, value]
    return _Mapped("multihead_attention", {"heads": module.num_heads, "dropout": float(module.dropout),
                                           "bias": module.in_proj_bias is not None, "causal": False}, inputs)


def _function_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    if getattr(operator, getattr(target, "__name__", ""), None) is target:
        return f"operator.{target.__name__}"
    name = getattr(target, "__name__", repr(target))
    for home, prefix in ((F, "torch.nn.functional"), (torch, "torch")):
        if getattr(home, name, None) is target:
            return f"{prefix}.{name}"
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else name


def _batch_size_of(value: Any, tensor: fx.Node) -> bool:
    """`tensor.size(0)` or `tensor.shape[0]`, as fx records them."""
    if not isinstance(value, fx.Node):
        return False
    if value.op == "call_method" and value.target == "size" and value.args[:1] == (tensor,):
        return _bind(value, ("input", "dim"), {"dim": None})["dim"] == 0
    if value.op == "call_function" and value.target is operator.getitem and value.args[1] == 0:
        source = value.args[0]
        return (isinstance(source, fx.Node) and source.op == "call_function" and source.target is getattr
                and source.args == (tensor, "shape"))
    return False


def _reshape_as_flatten(node: fx.Node) -> _Mapped | None:
    """`x.view(x.size(0), -1)`, `x.reshape(-1, n)`, `torch.reshape(x, (b, -1))`: flatten from dimension 1."""
    tensor = node.args[0] if node.args else None
    sizes = list(node.args[1:])
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    if "shape" in node.kwargs:
        sizes = list(node.kwargs["shape"])
    before, after = _sample_shape(tensor), _sample_shape(node)
    if not isinstance(tensor, fx.Node) or len(sizes) != 2 or before is None or after is None:
        return None
    features = 1
    for d in before:
        features *= d
    batch_ok = sizes[0] == -1 or _batch_size_of(sizes[0], tensor)
    if batch_ok and sizes[1] in (-1, features) and sizes != [-1, -1] and after == (features,):
        return _Mapped("flatten", {"start_dim": 1, "end_dim": -1}, [tensor])
    return None


_SIZE_ARITHMETIC = (operator.mul, operator.floordiv, operator.add, operator.sub, operator.eq, operator.ne,
                    operator.lt, operator.le, operator.gt, operator.ge, operator.mod)


def _is_shape_helper(node: fx.Node) -> bool:
    """Nodes that read a tensor's size for a reshape, compute with sizes, or assert on them (ViT checks the
    image size); they disappear with the reshape: the spec's shapes are static."""
    if node.op == "call_function" and (node.target in _SIZE_ARITHMETIC or node.target is torch._assert):
        nodes = [a for a in node.args if isinstance(a, fx.Node)]
        return bool(nodes) and all(_is_shape_helper(a) for a in nodes)
    return ((node.op == "call_method" and node.target in ("size", "dim"))
            or (node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",))
            or (node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node)
                and _is_shape_helper(node.args[0])))


def _batch_source(value: Any) -> fx.Node | None:
    """The tensor whose batch size `value` is (`x.size(0)`, `x.shape[0]`), if it is one."""
    if not isinstance(value, fx.Node):
        return None
    if value.op == "call_method" and value.target == "size" and _bind(value, ("input", "dim"), {"dim": None})["dim"] == 0:
        return value.args[0]
    if value.op == "call_function" and value.target is operator.getitem and value.args[1] == 0:
        source = value.args[0]
        if isinstance(source, fx.Node) and source.op == "call_function" and source.target is getattr:
            return source.args[0]
    return None


def _general_reshape(node: fx.Node) -> _Mapped | None:
    """`x.reshape(n, c, h * w)` with the batch first: `reshape` to the traced per-sample shape (static)."""
    tensor = node.args[0] if node.args else None
    sizes = list(node.args[1:])
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    after = _sample_shape(node)
    if not isinstance(tensor, fx.Node) or not sizes or after is None or not after:
        return None
    if _batch_source(sizes[0]) is None:
        return None
    return _Mapped("reshape", {"shape": list(after)}, [tensor])


def _expand(node: fx.Node) -> _Mapped:
    """`class_token.expand(n, -1, -1)` with `n` a tensor's batch size: `expand` to that tensor's batch."""
    tensor, *sizes = node.args
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    like = _batch_source(sizes[0]) if sizes else None
    if like is None or not all(isinstance(v, int) for v in sizes[1:]):
        raise _Unsupported("`Tensor.expand` other than to the batch size of a tensor and constant sizes")
    shape = list(sizes[1:])
    return _Mapped("expand", {"shape": None if all(v == -1 for v in shape) else shape}, [tensor, like])


def _is_several(node: fx.Node) -> bool:
    """A call that returns several tensors resgraph reads as `name:k` (chunk, split)."""
    return ((node.op == "call_method" and node.target in ("chunk", "split"))
            or (node.op == "call_function" and node.target in (torch.chunk, torch.split)))


def _chunk(node: fx.Node) -> _Mapped:
    args = _bind(node, ("input", "chunks", "dim"), {"dim": 0})
    _not_the_batch(node, args["dim"], args["input"])
    return _Mapped("chunk", {"chunks": args["chunks"], "dim": args["dim"]}, [args["input"]])


def _getitem(node: fx.Node) -> _Mapped:
    """`x[:, 0]` (ViT's class token): `select` of one position of one dimension after the batch."""
    tensor, index = node.args
    index = index if isinstance(index, tuple) else (index,)
    everything = slice(None, None, None)
    if isinstance(tensor, fx.Node) and _is_several(tensor) and len(index) == 1 and isinstance(index[0], int):
        return _Mapped("identity", {}, [tensor], item=index[0])   # `x1, x2 = x.chunk(2, dim=1)`
    ints = [i for i, v in enumerate(index) if isinstance(v, int)]
    if (isinstance(tensor, fx.Node) and len(index) >= 2 and index[0] == everything and len(ints) == 1
            and all(v == everything for i, v in enumerate(index) if i != ints[0])):
        return _Mapped("select", {"dim": ints[0], "index": index[ints[0]]}, [tensor])
    raise _Unsupported("`operator.getitem` other than `x[:, i]`")


_FUNCTIONS[operator.getitem] = _getitem
_METHODS["expand"] = _expand
_METHODS["chunk"] = _FUNCTIONS[torch.chunk] = _chunk


def _describe_module(module: nn.Module) -> str:
    return f"`{_qualified(type(module))}`"


def _map_node(node: fx.Node, traced: fx.GraphModule) -> _Mapped:
    if node.op == "call_module":
        module = traced.get_submodule(node.target)
        layer = _layer_type(module)
        entry = _module_table().get(layer) if layer is not None else None
        plugin = _plugin_imports().get(_qualified(type(module))) if entry is None else None
        if plugin is not None:   # a module of a class a plugin op imports (docs/plugins.md)
            entry = (plugin.op_name(), plugin.import_attributes)
        if entry is None:
            raise _Unsupported(_describe_module(module))
        op, attributes = entry
        if layer is nn.MultiheadAttention:
            return _attention(node, module)
        shape = _sample_shape(node.args[0]) if node.args else None
        args = [a for a in node.args]
        if node.kwargs or len(args) != 1 or not isinstance(args[0], fx.Node):
            raise _Unsupported(f"{_describe_module(module)} called with other than one tensor")
        inplace = isinstance(module, _INPLACE_MODULES) and getattr(module, "inplace", False)
        return _Mapped(op, attributes(module, shape), args, inplace=inplace)
    if (node.op == "call_function" and node.target is torch.reshape) or \
            (node.op == "call_method" and node.target in ("view", "reshape")):
        mapped = _reshape_as_flatten(node) or _general_reshape(node)
        if mapped is None:
            raise _Unsupported(f"`{_function_name(node)}` other than a flatten to [batch, features] or a reshape with the batch size first")
        return mapped
    if node.op == "call_function":
        mapping = _FUNCTIONS.get(node.target) or _torchvision_functions().get(node.target)
    elif node.op == "call_method":
        mapping = _METHODS.get(node.target)
    else:
        mapping = None
    if mapping is None:
        raise _Unsupported(f"`{_function_name(node)}`")
    return mapping(node)


# ---- the module tree -> scopes (future blocks) -------------------------------------------------

@dataclass(eq=False)
class _Entry:
    """One node of a scope: an op, a call of a child scope, or a repeated call (a chain of scopes)."""

    name: str
    inputs: list[str]
    op: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    scope: "_Scope | None" = None
    chain: "list[_Scope] | None" = None
    node: fx.Node | None = None
    names: str | None = None   # a chain's instance names where they are not 0..n-1 (`block1-{i}`)
    tie: dict[str, str] | None = None   # `{weight: wte.weight}`: parameters the model shares with another layer


@dataclass(eq=False)
class _Scope:
    """A module whose forward fx traced through: the instance of a future block (or the network)."""

    path: str
    module: nn.Module
    parent: "_Scope | None"
    items: list = field(default_factory=list)           # fx nodes and child scopes, in graph order
    inputs: list[fx.Node] = field(default_factory=list)  # values from outside, in order of first use
    outputs: list[fx.Node] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    output_name: str = ""
    output_names: list[str] = field(default_factory=list)  # the network's outputs (root only)
    collapsed: bool = False      # a container of chained block instances: a `repeat` call in its parent
    shape: int = -1              # scopes with the same shape are instances of one block
    raw: tuple = ()
    definition: "_Definition | None" = None
    values: dict[str, Any] = field(default_factory=dict)  # the instance's param values
    order: int = 0

    def local(self, path: str) -> str:
        return path[len(self.path) + 1:] if self.path else path

    def lineage(self) -> list["_Scope"]:
        scope, chain = self, []
        while scope is not None:
            chain.append(scope)
            scope = scope.parent
        return chain

    def where(self) -> str:
        return f"`{self.path}`" if self.path else "the top level"


def _is_stateful(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


class _ScopeBuilder:
    """The fx graph -> a tree of scopes, each with named entries reading named inputs."""

    def __init__(self, model: nn.Module, traced: fx.GraphModule, inputs: dict[str, tuple[int, ...]]) -> None:
        self.model, self.traced, self.input_shapes = model, traced, inputs
        self.root = _Scope("", model, None)
        self.scopes: dict[str, _Scope] = {"": self.root}
        self.owner: dict[fx.Node, _Scope] = {}
        self.mapped: dict[fx.Node, _Mapped] = {}
        self.calls: Counter = Counter()

    def build(self) -> _Scope:
        self._map_nodes()
        seen: set = set()
        self.first_calls = {n for n in self.mapped
                            if n.op == "call_module" and not (n.target in seen or seen.add(n.target))}
        self._check_state_is_covered()
        self._find_inputs_and_outputs()
        for scope in self._children_first():
            self._name_entries(scope)
        self._tie_shared_parameters()
        return self.root

    def _tie_shared_parameters(self) -> None:
        """A parameter that two layers hold (an LM head's weight that is the token embedding's) belongs to the
        layer that `named_parameters` lists first; the other's entry gets a `tie` to it (same scope only)."""
        entries: dict[str, tuple[_Scope, _Entry]] = {}
        for scope in _post_order(self.root):
            for entry in scope.entries:
                if entry.op is not None and entry.node is not None and entry.node.op == "call_module":
                    entries.setdefault(str(entry.node.target), (scope, entry))
        owners: dict[int, tuple[str, str]] = {}
        for full, parameter in self.model.named_parameters(remove_duplicate=False):
            path, _, name = full.rpartition(".")
            owner = owners.setdefault(id(parameter), (path, name))
            if owner == (path, name):
                continue
            if path not in entries or owner[0] not in entries:
                raise _CannotImport(f"`{full}` is `{'.'.join(filter(None, owner))}`, a parameter shared by "
                                    "modules that are not both layers", help="a spec ties parameters of layers "
                                    "(`tie: {weight: wte.weight}`); share whole layers' weights only")
            (scope, entry), (owner_scope, owner_entry) = entries[path], entries[owner[0]]
            if scope is not owner_scope:
                raise _CannotImport(f"`{full}` is `{'.'.join(owner)}`, in another block",
                                    help="a spec ties parameters of layers in one scope only (`tie: {weight: "
                                         "wte.weight}` names a sibling node)")
            entry.tie = {**(entry.tie or {}), name: f"{owner_entry.name}.{owner[1]}"}

    # -- mapping

    def _map_nodes(self) -> None:
        unsupported: dict[str, list[str]] = {}
        helpers = []
        for node in self.traced.graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            if node.op == "get_attr":
                self.mapped[node] = self._parameter(node)
                self._place(node)
                continue
            if _is_shape_helper(node):
                helpers.append(node)
                continue
            if node.op == "call_function" and isinstance(node.target, type) and issubclass(node.target, tuple):
                scope = self._scope_path(node)
                raise _CannotImport(f"{f'`{scope}`' if scope else 'the model'} returns a "
                                    f"`{_qualified(node.target)}`, a named tuple of several results (torchvision's "
                                    "auxiliary classifiers, in training)",
                                    help="return a tensor or a plain tuple; torchvision's GoogLeNet and Inception-v3 "
                                         "import without their auxiliary classifiers: `--arg aux_logits=false`")
            try:
                mapped = _map_node(node, self.traced)
            except _Unsupported as exc:
                unsupported.setdefault(exc.what, []).append(self._describe_place(node))
                continue
            self.mapped[node] = mapped
            self._place(node)
        for node in helpers:
            if not all(user in self.mapped or _is_shape_helper(user) for user in node.users):
                unsupported.setdefault(f"`{_function_name(node)}`", []).append(self._describe_place(node))
        if unsupported:   # one diagnostic: the first kind, with its first place; the others are counted
            (what, places), *others = unsupported.items()
            more = f" (and {len(places) - 1} more)" if len(places) > 1 else ""
            also = (f"; also without an op: {', '.join(w for w, _ in others[:3])}"
                    f"{f' and {len(others) - 3} more' if len(others) > 3 else ''}") if others else ""
            raise _CannotImport(f"cannot import {places[0]}{more}: {what} has no resgraph op{also}",
                                help=_SUPPORTED_HELP)
        for node, mapped in self.mapped.items():
            if mapped.inplace and len([u for u in mapped.args[0].users if not _is_shape_helper(u)]) > 1:
                raise _CannotImport(f"{self._describe_place(node)} works in place on a tensor that other nodes read "
                                    "too, so they see the result: a graph of values cannot say that",
                                    help="set `inplace=False` on that layer")

    def _parameter(self, node: fx.Node) -> _Mapped:
        """A learnable tensor that a module's forward reads itself (ViT's `class_token`, ConvNeXt's
        `layer_scale`): a `parameter` node named as the attribute, in the scope of the module that owns it."""
        scope = self._scope_path(node)
        owner, _, attribute = node.target.rpartition(".")
        where = f"`{scope}`" if scope else "the model"
        if attribute.startswith("_tensor_constant"):
            raise _CannotImport(f"{where} makes a constant tensor in its forward (`torch.tensor(...)` or a tensor "
                                "computed at trace time)", help="resgraph ops own every tensor; a spec has no "
                                                                "tensor literals")
        try:
            tensor = self.model.get_parameter(node.target)
        except AttributeError:
            raise _CannotImport(f"{where} reads the tensor `{node.target}` directly in its forward, and it is not a "
                                "learnable parameter", help="resgraph writes a buffer only from its named generators "
                                                           "(docs/spec.md, `buffer`); compute it in a torch.nn layer"
                                ) from None
        if owner != scope:
            raise _CannotImport(f"{where} reads the tensor `{node.target}` of another module in its forward",
                                help="a `parameter` node belongs to the block of the module that holds it")
        stored = tuple(tensor.shape)
        batch = len(stored) > 1 and stored[0] == 1
        node.meta["sample_shape"] = stored[1:] if batch else stored
        return _Mapped("parameter", {"shape": list(node.meta["sample_shape"]), "batch": batch}, [])

    def _scope_path(self, node: fx.Node) -> str:
        stack = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
        if node.op == "call_module" and stack:
            stack = stack[:-1]
        return stack[-1] if stack else ""

    def _describe_place(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"`{node.target}`"
        scope = self._scope_path(node)
        return f"`{_function_name(node)}` in `{scope}`" if scope else f"`{_function_name(node)}` at the top level"

    def _scope(self, path: str, key: str, module: nn.Module, parent: _Scope) -> _Scope:
        if "@" in key:
            raise _CannotImport(f"`{path}` is called more than once in the forward",
                                help="resgraph gives every call its own modules; call each submodule once")
        scope = self.scopes.get(path)
        if scope is None:
            scope = _Scope(path, module, parent)
            self.scopes[path] = scope
            parent.items.append(scope)
        elif scope.parent is not parent:
            raise _CannotImport(f"`{path}` is called from two places")
        return scope

    def _descend(self, scope: _Scope, path: str, key: str) -> _Scope:
        """The scope for module `path` under `scope`, with scopes for the containers between them
        (a ModuleList or a Sequential indexed in the forward is never called itself)."""
        if scope.path and not path.startswith(scope.path + "."):
            raise _CannotImport(f"`{scope.path}` calls `{path}`, which is not one of its submodules",
                                help="resgraph names every module after the path of the calls that reach it")
        parts = scope.local(path).split(".")
        for depth in range(1, len(parts)):
            between = ".".join(filter(None, [scope.path] + parts[:depth]))
            scope = self._scope(between, between, self.model.get_submodule(between), scope)
        return self._scope(path, key, self.model.get_submodule(path), scope)

    def _place(self, node: fx.Node) -> None:
        stack = list(node.meta.get("nn_module_stack", {}).items())
        if node.op == "call_module":
            module = self.traced.get_submodule(node.target)
            self.calls[node.target] += 1
            if self.calls[node.target] > 1 and _is_stateful(module):
                raise _CannotImport(f"`{node.target}` is called more than once, sharing its parameters",
                                    help="resgraph gives every layer its own parameters; weight sharing cannot be "
                                         "written in a spec")
            stack = stack[:-1]
        scope = self.root
        for key, (path, _) in stack:
            scope = self._descend(scope, path, key)
        if node.op == "call_module":
            if scope.path and not node.target.startswith(scope.path + "."):
                raise _CannotImport(f"`{scope.path}` calls `{node.target}`, which is not one of its submodules",
                                    help="resgraph names every module after the path of the calls that reach it")
            parts = scope.local(node.target).split(".")
            if len(parts) > 1:
                scope = self._descend(scope, ".".join(filter(None, [scope.path] + parts[:-1])),
                                      ".".join(filter(None, [scope.path] + parts[:-1])))
        scope.items.append(node)
        self.owner[node] = scope

    def _check_state_is_covered(self) -> None:
        called = {node.target for node in self.mapped if node.op == "call_module"}
        read = {node.target for node in self.mapped if node.op == "get_attr"}
        leaves = tuple(target + "." for target in called)
        for path, module in self.model.named_modules():
            if path.startswith(leaves):
                continue   # inside a layer that is one op (a plugin's, attention's out_proj), which owns it

            own = [n for n, _ in module.named_parameters(recurse=False) if f"{path}.{n}".lstrip(".") not in read] + \
                  [n for n, _ in module.named_buffers(recurse=False)]
            if own and path not in called:
                if type(module) in _MODULES:
                    raise _CannotImport(f"`{path}` ({_describe_module(module)[1:-1]}) holds parameters but the "
                                        "forward never calls it",
                                        help="a spec has no unused layers: remove it from the model, or call it")
                raise _CannotImport(f"`{path or 'the model'}` ({_qualified(type(module))}) holds the tensor "
                                    f"`{own[0]}` itself", help="resgraph ops own every parameter and buffer; only "
                                                               "torch.nn layers can hold them")

    # -- scope boundaries

    def _lineage(self, node: fx.Node) -> list[_Scope]:
        owner = self.owner.get(node)
        return owner.lineage() if owner is not None else []

    def _find_inputs_and_outputs(self) -> None:
        """A value read inside a scope but made outside is one of its inputs; a value made inside
        and read outside (or returned by the forward) is its output."""
        for user, mapped in self.mapped.items():
            inside = self._lineage(user)
            for value in mapped.args:
                made = self._lineage(value)
                for scope in inside:
                    if scope is self.root or scope in made:
                        break
                    if value not in scope.inputs:
                        scope.inputs.append(value)
                for scope in made:
                    if scope is self.root or scope in inside:
                        break
                    if value not in scope.outputs:
                        scope.outputs.append(value)
        for value in self.graph_outputs():
            for scope in self._lineage(value):
                if scope is not self.root and value not in scope.outputs:
                    scope.outputs.append(value)

    def graph_outputs(self) -> list[fx.Node]:
        output = next(n for n in self.traced.graph.nodes if n.op == "output")
        result = output.args[0]
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        if not values or not all(isinstance(v, fx.Node) for v in values):
            raise _CannotImport("the forward must return a tensor or a tuple of tensors")
        return values

    def _children_first(self) -> list[_Scope]:
        ordered: list[_Scope] = []

        def visit(scope: _Scope) -> None:
            for item in scope.items:
                if isinstance(item, _Scope):
                    visit(item)
            scope.order = len(ordered)
            ordered.append(scope)

        visit(self.root)
        return ordered

    # -- names

    def _name_entries(self, scope: _Scope) -> None:
        """Entries named as the modules they call; function calls and repeated calls of a
        parameter-free layer get free names (`add`, `relu_1`)."""
        children = dict(scope.module.named_children())
        for child in children:
            chained = re.fullmatch(r"[A-Za-z0-9_-]*[0-9]", child) and self.scopes.get(
                ".".join(filter(None, [scope.path, child]))) is not None   # RegNet's `block1-0`: see _is_chain
            if (not re.fullmatch(r"[A-Za-z0-9_]+", child) and not chained) or child == "index":
                path = ".".join(filter(None, [scope.path, child]))
                raise _CannotImport(f"the submodule `{path}` has a name a spec cannot give a node",
                                    help="node names are letters, digits and `_`, and not `index`")
        taken = set(children) | {"index"}
        if scope is self.root:
            placeholders = [n for n in self.traced.graph.nodes if n.op == "placeholder"]
            local = {}
            for placeholder in placeholders:  # the forward's argument names, unless a submodule has one
                local[placeholder] = _unique("input" if len(placeholders) == 1 else str(placeholder.target), taken)
                taken.add(local[placeholder])
        else:
            if len(scope.outputs) > 1:
                raise _CannotImport(f"{len(scope.outputs)} values leave {scope.where()}, but a block has one output",
                                    help="return one tensor from each submodule, and do not read its inner layers "
                                         "from outside")
            local = {}
            for value in scope.inputs:
                local[value] = _unique("input", taken)
                taken.add(local[value])
        scope.input_names = list(local.values())
        entries: list[_Entry] = []
        for item in scope.items:
            if isinstance(item, _Scope):
                if not item.outputs:
                    raise _CannotImport(f"the result of `{item.path}` is never used",
                                        help="a spec has no unused layers: remove the call from the forward")
                entries.append(_Entry(scope.local(item.path), [], scope=item, node=item.outputs[0]))
            elif (item.op == "call_module" and item in self.first_calls) or item.op == "get_attr":
                entries.append(_Entry(scope.local(item.target), [], node=item))
                taken.add(entries[-1].name)
        for item in scope.items:
            if isinstance(item, fx.Node) and not (item.op == "call_module" and item in self.first_calls) \
                    and item.op != "get_attr":
                base = self.mapped[item].op if item.op != "call_module" else scope.local(item.target)
                entries.append(_Entry(_unique(base, taken), [], node=item))
                taken.add(entries[-1].name)
        order = {id(item): index for index, item in enumerate(scope.items)}
        entries.sort(key=lambda e: order[id(e.scope if e.scope is not None else e.node)])
        absorbed: set[_Scope] = set()
        for entry in entries:
            if entry.scope is None:
                mapped = self.mapped[entry.node]
                entry.op, entry.attrs = mapped.op, dict(mapped.attrs)
                if mapped.op == "add":
                    projection = self._projection(scope, entry.node, mapped)
                    if projection is not None:
                        absorbed.add(projection)
                    entry.attrs = dict(mapped.attrs)
        scope.entries = [e for e in entries if e.scope not in absorbed]
        self._resolve_inputs(scope, local)

    def _projection(self, scope: _Scope, node: fx.Node, mapped: _Mapped) -> _Scope | None:
        """If one operand of an add is resgraph's projection shortcut (Sequential(1x1 conv, batch norm),
        called in this scope, read only by the add), rewrite the add as `shortcut: project` and return
        the projection's scope, which disappears into the add."""
        shapes = [_sample_shape(a) for a in mapped.args]
        for position in (1, 0):
            value = mapped.args[position]
            child = self.owner.get(value)
            if child is None or child.parent is not scope or child.outputs != [value] or len(value.users) != 1:
                continue
            if not self._is_projection(child, shapes[1 - position], _sample_shape(child.inputs[0])):
                continue
            branch = mapped.args[1 - position]
            mapped.args = [branch, child.inputs[0]]
            mapped.attrs["shortcut"] = "project"
            mapped.attrs["shortcut_name"] = scope.local(child.path)
            if _sample_shape(child.inputs[0]) != shapes[1 - position]:
                mapped.attrs["shortcut"] = "auto"  # projects exactly where the shapes differ
            return child
        if shapes[0] != shapes[1]:
            raise _CannotImport(f"the `+` in {scope.where()} adds tensors of shapes {list(shapes[0] or ())} and "
                                f"{list(shapes[1] or ())}: resgraph adds equal shapes, or projects the shortcut "
                                "with a 1x1 convolution and batch norm",
                                help="broadcasting adds cannot be imported")
        # The branch first, as resgraph writes a residual sum: the operand that is not the block's input.
        def is_input(value: fx.Node) -> bool:
            return value in scope.inputs or value.op == "placeholder"

        if is_input(mapped.args[0]) and not is_input(mapped.args[1]):
            mapped.args = [mapped.args[1], mapped.args[0]]
        mapped.attrs.update(shortcut="identity", shortcut_name="downsample")  # the name is unused by identity
        return None

    def _is_projection(self, child: _Scope, branch: tuple | None, skip: tuple | None) -> bool:
        module = child.module
        if type(module) is not nn.Sequential or len(module) != 2 or len(child.items) != 2 or len(child.inputs) != 1:
            return False
        if not all(isinstance(item, fx.Node) and item.op == "call_module" for item in child.items):
            return False
        conv_node, norm_node = child.items
        conv, norm = module[0], module[1]
        if norm_node.args != (conv_node,) or len(conv_node.users) != 1 or branch is None or skip is None:
            return False
        expected = {4: (nn.Conv3d, nn.BatchNorm3d), 3: (nn.Conv2d, nn.BatchNorm2d),
                    2: (nn.Conv1d, nn.BatchNorm1d)}.get(len(skip))
        if expected is None or (type(conv), type(norm)) != expected or conv_node.target != child.path + ".0":
            return False
        ones = (1,) * (len(skip) - 1)
        if (tuple(conv.kernel_size) != ones or conv.bias is not None or conv.groups != 1 or tuple(conv.dilation) != ones
                or conv.padding_mode != "zeros" or (conv.padding if isinstance(conv.padding, str) else
                                                    tuple(conv.padding)) not in ((0,) * len(ones), "valid")):
            return False
        if (norm.eps, norm.momentum, norm.affine, norm.track_running_stats) != (1e-5, 0.1, True, True):
            return False
        if len(branch) != len(skip):
            return False
        try:  # the stride resgraph's projection will use must be the module's
            plan = REGISTRY["add"](op="add", shortcut="project").plan(branch, skip)
        except Exception:  # noqa: BLE001 - a ShapeError: no projection maps these shapes
            return False
        return tuple(plan.stride) == tuple(conv.stride)

    def _resolve_inputs(self, scope: _Scope, local: dict[fx.Node, str]) -> None:
        """Turn each entry's fx arguments into names of siblings or of the scope's inputs."""
        names = {entry.node: entry.name for entry in scope.entries}
        names.update(local)
        for entry in scope.entries:
            values = entry.scope.inputs if entry.scope is not None else self.mapped[entry.node].args
            refs = []
            for value in values:
                if value not in names:
                    owner = self.owner.get(value)
                    raise _CannotImport(f"{scope.where()} reads a value from inside `{owner.path if owner else '?'}` "
                                        "that is not its result",
                                        help="a block's inner layers are private: return what the caller needs")
                item = self.mapped[entry.node].item if entry.scope is None else None
                refs.append(names[value] if item is None else f"{names[value]}:{item}")
            entry.inputs = refs
        if not scope.entries:
            raise _CannotImport(f"{scope.where()} computes nothing resgraph can write")
        if scope is self.root:
            scope.output_names = [names[value] for value in self.graph_outputs()]
        elif not scope.outputs:
            scope.output_name = scope.entries[-1].name
        elif scope.outputs[0] in local or scope.outputs[0] not in names:
            raise _CannotImport(f"{scope.where()} returns one of its inputs unchanged",
                                help="a block's output is one of its nodes")
        else:
            scope.output_name = names[scope.outputs[0]]


def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    count = 1
    while f"{base}_{count}" in taken:
        count += 1
    return f"{base}_{count}"


# ---- scopes -> block definitions with params ---------------------------------------------------

def _tag(value: Any) -> Any:
    """Values compare by type too: `1`, `1.0` and `true` are different attribute values."""
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_tag(v) for v in value))
    return (type(value).__name__, value)


@dataclass
class _Param:
    name: str
    default: Any            # None: required


@dataclass(frozen=True)
class _Expr:
    text: str


@dataclass(eq=False)
class _Definition:
    """One block: the instances (scopes) that share a structure, and the params that tell them apart.
    Blocks that open and continue the same stages (`first_block`, `block`) share their params."""

    shape: int
    instances: list[_Scope]
    name: str = ""
    params: list[_Param] = field(default_factory=list)
    resolved: dict[tuple, Any] = field(default_factory=dict)  # key -> literal value or _Expr

    @property
    def scope(self) -> _Scope:
        return self.instances[0]


def _children(scope: _Scope) -> list[_Scope]:
    found = []
    for entry in scope.entries:
        if entry.scope is not None:
            found.append(entry.scope)
        elif entry.chain is not None:
            found += entry.chain
    return found


def _post_order(root: _Scope) -> list[_Scope]:
    ordered: list[_Scope] = []

    def visit(scope: _Scope) -> None:
        for child in _children(scope):
            visit(child)
        ordered.append(scope)

    visit(root)
    return ordered


def _signature(scope: _Scope) -> tuple:
    """What instances of one block share: the class, the nodes, their attribute names and wiring."""
    parts: list = [type(scope.module), len(scope.input_names), scope.output_name]
    for entry in scope.entries:
        if entry.op is not None:
            parts.append(("op", entry.name, entry.op, tuple(entry.attrs), entry.attrs.get("shortcut_name"),
                          tuple(entry.inputs), tuple(sorted((entry.tie or {}).items()))))
        elif entry.scope is not None:
            parts.append(("call", entry.name, entry.scope.shape, tuple(entry.inputs)))
        else:
            parts.append(("repeat", entry.name, entry.names, entry.chain[-1].shape, entry.chain[0].shape,
                          tuple(entry.inputs)))
    return tuple(parts)


def _raw_values(scope: _Scope) -> tuple:
    """Every attribute value of the instance and of the instances inside it."""
    values: list = []
    for entry in scope.entries:
        if entry.op is not None:
            values.append(tuple(_tag(v) for v in entry.attrs.values()))
        elif entry.scope is not None:
            values.append(entry.scope.raw)
        else:
            values.append((len(entry.chain), entry.chain[0].raw, entry.chain[-1].raw))
    return tuple(values)


def _collapse_containers(scope: _Scope) -> None:
    """A child that only chains instances `0`..`n-1` of one structure, equal from instance 1 on,
    becomes a `repeat` call; instance 0 may differ in values (`first`) or structure (`first_block`)."""
    for entry in scope.entries:
        child = entry.scope
        if child is None or not _is_chain(child):
            continue
        chain = [e.scope for e in child.entries]
        if any(s.shape != chain[-1].shape or s.raw != chain[-1].raw for s in chain[1:]):
            continue
        child.collapsed = True
        entry.scope, entry.chain = None, chain
        prefix = child.entries[0].name[:-1]
        entry.names = f"{prefix}{{i}}" if prefix else None


def _check_names(root: _Scope) -> None:
    """Names that only a chain's `names` pattern can give (RegNet's `block1-0`) must have become one."""
    for scope in _post_order(root):
        for entry in scope.entries:
            if not re.fullmatch(r"[A-Za-z0-9_]+", entry.name):
                path = ".".join(filter(None, [scope.path, entry.name]))
                raise _CannotImport(f"the submodule `{path}` has a name a spec cannot give a node",
                                    help="node names are letters, digits and `_`; `-` only in the instance names of "
                                         "a `repeat` (`names: \"block1-{i}\"`)")


def _is_chain(scope: _Scope) -> bool:
    """Instances `0`..`n-1`, or named `{prefix}0`.. (`names: "block1-{i}"`), each reading the one before."""
    entries = scope.entries
    if not entries or len(scope.input_names) != 1 or scope.output_name != entries[-1].name:
        return False
    previous = scope.input_names[0]
    prefix = entries[0].name[:-1] if entries[0].name.endswith("0") else None
    for index, entry in enumerate(entries):
        if entry.scope is None or entry.name != f"{prefix}{index}" or entry.inputs != [previous]:
            return False
        if len(entry.scope.input_names) != 1:
            return False
        previous = entry.name
    return True


def _define_blocks(root: _Scope) -> list[_Definition]:
    """Group scopes by structure into definitions, then find each definition's params, children first."""
    import graphlib

    shapes: dict[tuple, int] = {}
    for scope in _post_order(root):  # children first: a signature names its children's structures
        _collapse_containers(scope)
        scope.shape = shapes.setdefault(_signature(scope), len(shapes))
        scope.raw = _raw_values(scope)
    by_shape: dict[int, _Definition] = {}
    for scope in _post_order(root)[:-1]:
        definition = by_shape.setdefault(scope.shape, _Definition(scope.shape, []))
        definition.instances.append(scope)
        scope.definition = definition
    definitions = sorted(by_shape.values(), key=lambda d: d.scope.order)
    # A stage's opening block and its other block share params, since `with` reaches both.
    family = {d: d for d in definitions}

    def find(d: _Definition) -> _Definition:
        while family[d] is not d:
            d = family[d]
        return d

    for scope in _post_order(root):
        for entry in scope.entries:
            if entry.chain is not None:
                family[find(entry.chain[0].definition)] = find(entry.chain[-1].definition)
    members: dict[_Definition, list[_Definition]] = {}
    for definition in definitions:
        members.setdefault(find(definition), []).append(definition)
    needs = {head: {find(c.definition) for d in group for c in _children(d.scope)}
             for head, group in members.items()}
    try:
        if any(head in children for head, children in needs.items()):
            raise graphlib.CycleError
        order = list(graphlib.TopologicalSorter(needs).static_order())
    except graphlib.CycleError:
        raise _CannotImport("a block contains an instance of its own structure",
                            help="this is a limit of `resgraph import`; please report it with the model") from None
    for head in order:
        _find_params(members[head])
    root.definition = _Definition(root.shape, [root])
    _find_params([root.definition])
    _name_definitions(definitions)
    return definitions


def _keys(scope: _Scope) -> list[tuple[tuple, Any]]:
    """The values that one instance writes in the spec, each under a key shared by all instances."""
    keys: list[tuple[tuple, Any]] = []
    for entry in scope.entries:
        if entry.op is not None:
            keys += [((entry.name, attr), value) for attr, value in entry.attrs.items() if attr != "shortcut_name"]
        elif entry.scope is not None:
            keys += [((entry.name, "with", p.name), entry.scope.values[p.name])
                     for p in entry.scope.definition.params]
        else:
            chain = entry.chain
            keys.append(((entry.name, "repeat"), len(chain)))
            keys += [((entry.name, "with", p.name), chain[-1].values[p.name]) for p in chain[-1].definition.params]
            if len(chain) > 1:
                keys += [((entry.name, "first", p.name), chain[0].values[p.name])
                         for p in chain[0].definition.params]
    return keys


_MISSING = ("missing", None)


def _find_params(group: list[_Definition]) -> None:
    """Keys equal in every instance stay literal; the others become params: equal columns share one,
    and a column that is a whole multiple of another is written as an expression of it."""
    instances = [scope for definition in group for scope in definition.instances]
    rows = [dict(_keys(scope)) for scope in instances]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    columns = {key: [row.get(key, _MISSING) for row in rows] for key in keys}
    # `auto` is identity where shapes match: instances with and without a projection share it.
    for key, column in columns.items():
        if len(key) == 2 and key[1] == "shortcut" and set(column) - {_MISSING} == {"auto", "identity"}:
            columns[key] = [v if v is _MISSING else "auto" for v in column]
    resolved: dict[tuple, Any] = {}
    firsts: dict[tuple, tuple] = {}       # tagged column -> the key that made it a param
    roots: list[tuple[tuple, list[Any]]] = []
    pending: dict[tuple, tuple[tuple, str]] = {}
    for key, column in columns.items():
        present = [v for v in column if v is not _MISSING]
        tagged = tuple(_tag(v) if v is not _MISSING else _MISSING for v in column)
        if len({_tag(v) for v in present}) == 1:
            resolved[key] = present[0]
        elif tagged in firsts:
            pending[key] = (firsts[tagged], "")
        elif (derived := _derived(column, roots)) is not None:
            pending[key] = derived
        else:
            firsts[tagged] = key
            roots.append((key, column))
    # Short names (`stride`) where they are unambiguous, else with the node's name (`conv1_out`).
    shorts = Counter(key[-1] for key, _ in roots)
    names: dict[tuple, str] = {}
    defaults: dict[str, Any] = {}
    taken = {"index"}
    for key, column in roots:
        wanted = key[-1] if shorts[key[-1]] == 1 and key[-1] != "out" else \
            f"{key[-1]}{key[0]}" if key[0].isdigit() else f"{key[0]}_{key[-1]}"  # out0 for Sequential's `0`
        name = names[key] = _unique(_identifier(wanted), taken)
        taken.add(name)
        present = [v for v in column if v is not _MISSING]
        tagged = [_tag(v) for v in present]
        common, count = Counter(tagged).most_common(1)[0]
        # A default where one value is the rule (stride 1); sizes that change stage by stage stay required.
        defaults[name] = present[tagged.index(common)] if count * 2 > len(present) and len(set(tagged)) <= 2 \
            else None
        resolved[key] = _Expr(name)
    for key, (base, operation) in pending.items():
        resolved[key] = _Expr(f"{names[base]} {operation}".strip())
    first_values = {names[key]: next(v for v in column if v is not _MISSING) for key, column in roots}
    for definition in group:
        definition.resolved = resolved
        own = {key for scope in definition.instances for key in dict(_keys(scope))}
        used = {re.match(r"\w+", resolved[key].text).group() for key in own if isinstance(resolved[key], _Expr)}
        # Every block of the group takes every param; one it does not use defaults to any value.
        definition.params = [_Param(name, defaults[name] if name in used or defaults[name] is not None
                                    else first_values[name]) for name in defaults]
    for scope, row in zip(instances, rows):
        params = {p.name: p.default for p in scope.definition.params}
        for key, value in row.items():
            if key in names:
                params[names[key]] = value
        scope.values = params


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _derived(column: list[Any], roots: list[tuple[tuple, list[Any]]]) -> tuple[tuple, str] | None:
    """(key of a param, `* k` or `// k`) when `column` is that param's column times or over a whole k."""
    if not all(_is_int(v) or v is _MISSING for v in column):
        return None
    for key, base in roots:
        if [v is _MISSING for v in column] != [b is _MISSING for b in base]:
            continue
        pairs = [(v, b) for v, b in zip(column, base) if v is not _MISSING]
        if not all(_is_int(b) and b > 0 and v > 0 for v, b in pairs):
            continue
        for operation, apply in (("*", operator.mul), ("//", operator.floordiv)):
            ratios = {v // b if operation == "*" else b // v for v, b in pairs}
            if len(ratios) == 1 and (factor := ratios.pop()) > 1 and all(apply(b, factor) == v for v, b in pairs):
                return key, f"{operation} {factor}"
    return None


def _identifier(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else "_" + name


def _name_definitions(definitions: list[_Definition]) -> None:
    """Blocks are named after their class (`bottleneck`), a one-off container after its path."""
    taken: set[str] = set()
    for definition in definitions:
        module = definition.scope.module
        if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) and len(definition.instances) == 1:
            base = _identifier(definition.scope.path.replace(".", "_"))
        else:
            base = _snake_case(type(module).__name__)
        definition.name = _unique(base, taken)
        taken.add(definition.name)


def _snake_case(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return _identifier(re.sub(r"\W+", "_", text).strip("_") or "network")


def _qualified(cls: type) -> str:
    if getattr(nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# ---- writing the spec ---------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*( (\*|//) [A-Za-z0-9_]+)?")
_YAML_WORDS = re.compile(r"(?i)(true|false|null|~|yes|no|on|off|y|n)")


def _scalar(value: Any) -> str:
    if isinstance(value, _Expr):
        value = value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and not _YAML_WORDS.fullmatch(text):
        return text
    return json.dumps(text)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and not _YAML_WORDS.fullmatch(name) \
        else json.dumps(name)


def _flow(items: list[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{_key(k)}: {v}" for k, v in items) + "}"


def _argument(value: Any) -> str:
    """A value in `with` or `first`: every string there is an expression, so text is quoted inside."""
    if isinstance(value, _Expr):
        return _scalar(value)
    if isinstance(value, str):
        return json.dumps(repr(value))
    return _scalar(value)


def _op_default(op: str, attr: str) -> Any:
    return REGISTRY[op].model_fields[attr].default


def _write_entry(entry: _Entry, previous: str | None, resolved: dict[tuple, Any]) -> str:
    """One node as a flow mapping (or the op name alone), leaving out what the spec's defaults say."""
    items: list[tuple[str, str]] = []
    if entry.op is not None:
        items.append(("op", entry.op))
        attrs = {attr: resolved.get((entry.name, attr), value) for attr, value in entry.attrs.items()}
        for attr in REGISTRY[entry.op].model_fields:
            if attr in attrs and not _is_default(entry.op, attr, attrs):
                items.append((attr, _scalar(attrs[attr])))
        if entry.tie:
            items.append(("tie", _flow([(name, _scalar(reference)) for name, reference in entry.tie.items()])))
    elif entry.scope is not None:
        definition = entry.scope.definition
        items.append(("block", definition.name))
        with_ = _call_values(definition, lambda p: resolved[(entry.name, "with", p)])
        if with_:
            items.append(("with", _flow(with_)))
    else:
        main, opening = entry.chain[-1].definition, entry.chain[0].definition
        items.append(("block", main.name))
        if opening is not main:
            items.append(("first_block", opening.name))
        items.append(("repeat", _scalar(resolved[(entry.name, "repeat")])))
        if entry.names is not None:
            items.append(("names", _scalar(entry.names)))
        with_ = _call_values(main, lambda p: resolved[(entry.name, "with", p)])
        if with_:
            items.append(("with", _flow(with_)))
        if len(entry.chain) > 1:
            given = dict(with_)
            first = []
            for param in opening.params:
                value = _argument(resolved[(entry.name, "first", param.name)])
                unchanged = given.get(param.name, _argument(param.default) if param.default is not None else None)
                if value != unchanged:
                    first.append((param.name, value))
            if first:
                items.append(("first", _flow(first)))
    if entry.inputs and entry.inputs != [previous]:   # a `parameter` has no inputs and takes none implicitly
        items.append(("inputs", _scalar(entry.inputs if len(entry.inputs) > 1 else entry.inputs[0])))
    if len(items) == 1 and entry.op is not None:
        return entry.op  # the shorthand `bn1: batchnorm2d`
    return _flow(items)


def _is_default(op: str, attr: str, attrs: dict[str, Any]) -> bool:
    value = attrs[attr]
    if attr == "shortcut_name":  # meaningful only where the add projects
        return value == "downsample" or attrs.get("shortcut") == "identity"
    if isinstance(value, _Expr):
        return False
    if attr == "stride" and op[:-2] in ("maxpool", "avgpool"):  # the stride of a pool defaults to its kernel
        return not isinstance(attrs.get("kernel"), _Expr) and _tag(value) == _tag(attrs["kernel"])
    return _tag(value) == _tag(_op_default(op, attr))


def _call_values(definition: _Definition, value_of: Callable[[str], Any]) -> list[tuple[str, str]]:
    values = []
    for param in definition.params:
        value = value_of(param.name)
        if isinstance(value, _Expr) or param.default is None or _tag(value) != _tag(param.default):
            values.append((param.name, _argument(value)))
    return values


def _registered_order(scope: _Scope) -> list[_Entry]:
    """The entries with the ones that own modules with state put in the order the module registers them (its
    `__init__`'s), where that is not the order its forward calls them: torchvision's Swin V2 block registers
    `norm1` before `attn` but normalises the attention's output. The other entries keep their places, and the
    last stays last (it is the block's output); those that move read their inputs by name."""
    children = list(scope.module._modules)

    def rank(entry: _Entry) -> int | None:
        """The registration index of the child of `scope` that holds the entry's module (a container's
        instance `features.7.0` is held by `features.7`)."""
        if entry.scope is not None:
            path = entry.scope.path
        elif entry.node is not None and entry.node.op == "call_module":
            path = str(entry.node.target)
            if not _is_stateful(scope.module.get_submodule(scope.local(path))):
                return None
        else:
            return None
        child = scope.local(path).split(".")[0]
        return children.index(child) if child in children else None

    ranks = [rank(entry) for entry in scope.entries]
    slots = [i for i, r in enumerate(ranks) if r is not None]
    wanted = sorted(slots, key=lambda i: ranks[i])
    if wanted == slots or (slots and slots[-1] == len(ranks) - 1 and wanted[-1] != slots[-1]):
        return list(scope.entries)
    entries = list(scope.entries)
    for slot, source in zip(slots, wanted):
        entries[slot] = scope.entries[source]
    return entries


def _write_nodes(scope: _Scope, indent: str) -> list[str]:
    lines = []
    previous = scope.input_names[0] if len(scope.input_names) == 1 else None  # several: the first node names its
    for entry in _registered_order(scope):
        lines.append(f"{indent}{_key(entry.name)}: {_write_entry(entry, previous, scope.definition.resolved)}")
        previous = entry.name
    return lines


def _write_spec(name: str, origin: str, inputs: dict[str, tuple[int, ...]], root: _Scope,
                definitions: list[_Definition], ids: set[str] = frozenset()) -> str:
    lines = [
        "# Written by `resgraph import`; the model's weights load into the compiled spec with strict=True.",
        "resgraph: 1",
        f"name: {_scalar(name)}",
        f"doc: {json.dumps(f'Imported from {origin}.')}",
    ]
    plugins = sorted({REGISTRY[entry.op].__module__ for scope in _post_order(root) for entry in scope.entries
                      if entry.op in REGISTRY and not REGISTRY[entry.op].__module__.startswith("resgraph.")})
    if plugins:
        lines.append(f"plugins: {_scalar(plugins)}")
    def declared(placeholder: str, shape: tuple[int, ...]) -> str:
        return f"{{shape: {_scalar(list(shape))}, dtype: int64}}" if placeholder in ids else _scalar(list(shape))

    if len(inputs) == 1 and root.input_names == ["input"]:
        lines.append(f"input: {declared(*next(iter(inputs.items())))}")
    else:
        lines.append("input: " + _flow([(n, declared(p, s)) for n, (p, s) in zip(root.input_names, inputs.items())]))
    if definitions:
        lines += ["", "blocks:"]
        for definition in definitions:
            scope = definition.scope
            lines.append(f"  {definition.name}:")
            lines.append(f"    doc: {json.dumps(_qualified(type(scope.module)))}")
            if definition.params:
                params = _flow([(p.name, _scalar(p.default)) for p in definition.params])
                if len(params) <= 100:
                    lines.append(f"    params: {params}")
                else:
                    lines.append("    params:")
                    lines += [f"      {p.name}: {_scalar(p.default)}" for p in definition.params]
            if scope.input_names != ["input"]:
                lines.append(f"    inputs: {_scalar(scope.input_names)}")
            lines.append("    nodes:")
            lines += _write_nodes(scope, "      ")
            if scope.output_name != scope.entries[-1].name:
                lines.append(f"    output: {_key(scope.output_name)}")
            lines.append("")
    else:
        lines.append("")
    lines.append("nodes:")
    lines += _write_nodes(root, "  ")
    outputs = root.output_names
    if outputs != [root.entries[-1].name]:
        lines.append(f"outputs: {_scalar(outputs if len(outputs) > 1 else outputs[0])}")
    return "\n".join(lines) + "\n"




# ---- the check: the spec compiles to the model's module tree -----------------------------------

def _check_round_trip(text: str, name: str, model: nn.Module) -> None:
    """Compile the spec on the meta device; its state_dict must have the model's keys and shapes, and
    each layer that holds state the model's settings (`extra_repr`)."""
    import resgraph

    try:
        network = resgraph.load(Path(f"{_identifier(name)}.yaml"), text=text)
    except SpecError as exc:
        problems = "; ".join(d.message for d in exc.errors[:3])
        raise _fail(f"the imported spec does not validate: {problems}",
                    help="this is a bug in `resgraph import`; please report it with the model") from None
    compiled = resgraph.compile(network, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in compiled.state_dict().items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        listed = ", ".join(f"`{k}`" for k in (missing + extra)[:4])
        raise _fail(f"the imported spec's state_dict differs from the model's: {listed}"
                    f"{' are missing' if missing and not extra else ''}",
                    help="the model uses a structure the importer does not recognise")
    for key in expected:
        if expected[key] != got[key]:
            raise _fail(f"`{key}` has shape {list(got[key])} in the imported spec, {list(expected[key])} in the model")
    ours, theirs = sum(p.numel() for p in compiled.parameters()), sum(p.numel() for p in model.parameters())
    if ours != theirs:
        raise _fail(f"the imported spec has {ours:,} parameters, the model {theirs:,}",
                    help="the model shares parameters in a way the importer does not recognise")
    modules = dict(model.named_modules())
    for path, module in compiled.named_modules():
        if not path or not (any(True for _ in module.parameters(recurse=False))
                            or any(True for _ in module.buffers(recurse=False))):
            continue
        original = modules.get(path)
        layer = _layer_type(original) if original is not None else None
        if (original is not None and layer is None and type(original) is not type(module)
                and _qualified(type(original)) not in _plugin_imports()):
            continue   # a block that holds `parameter` nodes' tensors: their keys and shapes are checked above
        same_layer = type(original) is type(module) or (layer is not None and (
            layer is type(module) or _lowered_as(layer) == type(module).__name__))
        if not same_layer or (_settings_shown(layer) and original.extra_repr() != module.extra_repr()):
            raise _fail(f"`{path}` would be `{module!r}` in the imported spec but is `{original!r}` in the model",
                        help="the model uses a setting the importer does not map")
