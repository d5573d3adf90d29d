"""Module constructors as expression trees (`nn.Conv2d(64, planes, kernel_size=3, ...)`), for the ejector:
what rebuilds each torch module, and its Python text, formatted as black formats a call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from .modules import (ChannelLayerNorm, ChannelRMSNorm, DropPath, PatchMerging, Positions, RelativePositionAttention,
                      RotaryEmbedding, ScaledDotProductAttention, ShiftedWindowAttention, TransposedLinear,
                      ZeroPadShortcut)
from .ops.tensor import relative_position_index, sinusoidal_positions
from .python_text import python_float, python_string

LINE_LENGTH = 88  # black's default


class EjectError(Exception):
    """The network uses something the ejector cannot write out."""


# ---- module constructors as expression trees ------------------------------------------------------

@dataclass
class Call:
    """`func(arg, ..., key=value, ...)`: args are (keyword or None, value or Call)."""

    func: str
    args: list[tuple[str | None, Any]]
    init: bool = False   # written `init_conv(...)`: the compiler's init of a convolution, drawn as it draws it


def same(values: Sequence[Any]) -> Any:
    """`(3, 3)` -> `3`: how a hand-written module states a square kernel."""
    values = tuple(values)
    return values[0] if values and all(v == values[0] for v in values) else values


def constructor(module: nn.Module) -> Call:
    """The call that rebuilds `module` (its structure; weights come from a state_dict)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        cls = f"nn.{type(module).__name__}"
        padding = module.padding if isinstance(module.padding, str) else same(module.padding)
        return Call(cls, init=True, args=[(None, module.in_channels), (None, module.out_channels),
                          ("kernel_size", same(module.kernel_size)), ("stride", same(module.stride)),
                          ("padding", padding), ("dilation", same(module.dilation)), ("groups", module.groups),
                          ("bias", module.bias is not None), ("padding_mode", module.padding_mode)])
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d,
                           nn.InstanceNorm3d)):
        cls = f"nn.{type(module).__name__}"
        return Call(cls, [(None, module.num_features), ("eps", module.eps), ("momentum", module.momentum),
                          ("affine", module.affine), ("track_running_stats", module.track_running_stats)])
    if isinstance(module, (nn.RMSNorm, ChannelRMSNorm)):
        shape = module.normalized_shape
        return Call(type(module).__name__ if isinstance(module, ChannelRMSNorm) else "nn.RMSNorm",
                    [(None, shape[0] if len(shape) == 1 else list(shape)), ("eps", module.eps),
                     ("elementwise_affine", module.elementwise_affine)])
    if isinstance(module, nn.LayerNorm):
        shape = module.normalized_shape
        return Call("ChannelLayerNorm" if isinstance(module, ChannelLayerNorm) else "nn.LayerNorm",
                    [(None, shape[0] if len(shape) == 1 else list(shape)), ("eps", module.eps),
                     ("elementwise_affine", module.elementwise_affine),
                     ("bias", getattr(module, "bias", None) is not None or not module.elementwise_affine)])
    if isinstance(module, nn.GroupNorm):
        return Call("nn.GroupNorm", [(None, module.num_groups), (None, module.num_channels), ("eps", module.eps),
                                     ("affine", module.affine)])
    if isinstance(module, nn.Linear):
        return Call("nn.Linear", [(None, module.in_features), (None, module.out_features),
                                  ("bias", module.bias is not None)])
    if isinstance(module, nn.Dropout):
        return Call("nn.Dropout", [("p", module.p)])
    if isinstance(module, DropPath):
        return Call("DropPath", [(None, module.p)])
    if isinstance(module, nn.PReLU):
        return Call("nn.PReLU", [(None, module.num_parameters), ("init", module.init)])
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return Call(f"nn.{type(module).__name__}", init=True, args=[
            (None, module.in_channels), (None, module.out_channels), ("kernel_size", same(module.kernel_size)),
            ("stride", same(module.stride)), ("padding", same(module.padding)),
            ("output_padding", same(module.output_padding)), ("groups", module.groups),
            ("bias", module.bias is not None), ("dilation", same(module.dilation))])
    if isinstance(module, nn.MultiheadAttention):
        if module.bias_k is not None or module.add_zero_attn:
            raise EjectError("can write out attention modules without extra key/value biases only")
        extra = [] if module._qkv_same_embed_dim else [("kdim", module.kdim), ("vdim", module.vdim)]
        return Call("nn.MultiheadAttention", [
            (None, module.embed_dim), (None, module.num_heads), ("dropout", module.dropout),
            ("bias", module.in_proj_bias is not None), ("batch_first", module.batch_first)] + extra)
    if isinstance(module, nn.Embedding):
        return Call("nn.Embedding", [(None, module.num_embeddings), (None, module.embedding_dim),
                                     ("padding_idx", module.padding_idx)])
    if isinstance(module, (nn.LSTM, nn.GRU)) and type(module) in (nn.LSTM, nn.GRU):
        if getattr(module, "proj_size", 0):
            raise EjectError("can write out LSTMs without `proj_size` only")
        return Call(f"nn.{type(module).__name__}", [
            (None, module.input_size), (None, module.hidden_size), ("num_layers", module.num_layers),
            ("bias", module.bias), ("batch_first", module.batch_first), ("dropout", module.dropout),
            ("bidirectional", module.bidirectional)])
    if isinstance(module, TransposedLinear):
        return Call("TransposedLinear", [(None, module.in_features), (None, module.out_features),
                                         ("bias", module.bias is not None)])
    if isinstance(module, ScaledDotProductAttention):
        return Call("ScaledDotProductAttention", [(None, module.heads), (None, module.kv_heads),
                                                  ("causal", module.causal), ("dropout", module.dropout),
                                                  ("scale", module.scale)])
    if isinstance(module, Positions):
        return Call("Positions", [])
    if isinstance(module, RotaryEmbedding):
        return Call("RotaryEmbedding", [(None, module.heads), ("base", module.base),
                                        ("interleaved", module.interleaved)])
    if isinstance(module, RelativePositionAttention):
        return Call("RelativePositionAttention", [(None, module.to_qkv.in_features), (None, module.head_dim),
                                                  (None, module.max_seq_len)])
    if isinstance(module, ShiftedWindowAttention):
        return Call("ShiftedWindowAttention", [
            (None, module.dim), ("window_size", list(module.window_size)), ("shift_size", list(module.shift_size)),
            ("num_heads", module.num_heads), ("qkv_bias", module.qkv_bias), ("proj_bias", module.proj_bias),
            ("attention_dropout", module.attention_dropout), ("dropout", module.dropout), ("version", module.version)])
    if isinstance(module, PatchMerging):
        return Call("PatchMerging", [(None, module.dim), ("version", module.version), ("eps", module.eps)])
    if isinstance(module, nn.Sequential):
        return Call("nn.Sequential", [(None, constructor(child)) for child in module])
    if type(module).__module__.split(".")[0] not in ("torch", "resgraph"):
        return _plugin_constructor(module)
    if isinstance(module, ZeroPadShortcut):
        if len(module.stride) != 2 or module.stride[0] != module.stride[1]:
            raise EjectError("can write out zero-padding shortcuts of 2-d inputs with a square stride only")
        return Call("ZeroPadShortcut", [(None, same(module.stride)), (None, module.in_channels),
                                        (None, module.out_channels)])
    raise EjectError(f"cannot write out a `{type(module).__name__}` module")


def tensor_constructor(op: Any, shape: Sequence[int]) -> Call:
    """The expression that makes a `parameter` or `buffer` node's tensor as the compiler makes it (see
    ops/tensor.py), drawing the same values from one seed: `nn.Parameter(torch.zeros(1, 1, 768))`,
    `nn.Parameter(nn.init.normal_(torch.empty(1, 197, 768), std=0.02))`, `torch.zeros(8, 16)`."""
    stored = list(op.stored_shape(shape))
    empty = Call("torch.empty", [(None, size) for size in stored])
    if op.op_name() == "parameter":
        if op.init in ("zeros", "ones"):
            tensor = Call(f"torch.{op.init}", [(None, size) for size in stored])
        elif op.init == "constant":
            tensor = Call("nn.init.constant_", [(None, empty), (None, float(op.value))])
        elif op.init == "normal":
            tensor = Call("nn.init.normal_", [(None, empty), ("mean", float(op.mean)), ("std", float(op.std))])
        elif op.init == "trunc_normal":
            mean, std = float(op.mean), float(op.std)
            tensor = Call("nn.init.trunc_normal_", [(None, empty), ("mean", mean), ("std", std),
                                                    ("a", mean - 2 * std), ("b", mean + 2 * std)])
        else:
            tensor = Call("nn.init.uniform_", [(None, empty), ("a", float(op.low)), ("b", float(op.high))])
        return Call("nn.Parameter", [(None, tensor)])
    if op.generator in ("zeros", "ones"):
        return Call(f"torch.{op.generator}", [(None, size) for size in stored])
    if op.generator == "sinusoidal":
        tensor = Call("sinusoidal_positions", [(None, size) for size in shape])
    else:
        tensor = Call("relative_position_index", [(None, size) for size in op._window()])
    return Call("torch.unsqueeze", [(None, tensor), (None, 0)]) if len(stored) > len(shape) else tensor


def helpers_called(call: Call) -> set[str]:
    """The functions of HELPER_SOURCES that `call` calls (a buffer's `sinusoidal_positions`)."""
    found = {call.func} & set(HELPER_SOURCES)
    for _, value in call.args:
        if isinstance(value, Call):
            found |= helpers_called(value)
    return found


def _plugin_constructor(module: nn.Module) -> Call:
    """A plugin's module: `Class(arg=value, ...)` from its `__init__` arguments, which it keeps as attributes of
    the same names (docs/plugins.md); the ejected file imports the class from the plugin."""
    cls = type(module)
    parameters = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [p.name for p in parameters if not hasattr(module, p.name)]
    if missing:
        raise EjectError(f"cannot write out a `{cls.__module__}.{cls.__qualname__}` module: its `__init__` argument "
                         f"`{missing[0]}` is not kept as an attribute of the same name")
    args = []
    for parameter in parameters:
        value = getattr(module, parameter.name)
        if not (value is None or isinstance(value, (bool, int, float, str, tuple, list))):
            raise EjectError(f"cannot write out a `{cls.__qualname__}` module: its argument `{parameter.name}` is a "
                             f"`{type(value).__name__}`")
        if parameter.default is not inspect.Parameter.empty and equal(parameter.default, value):
            continue
        args.append((None if parameter.default is inspect.Parameter.empty else parameter.name, value))
    return Call(cls.__name__, args)


DEFAULTS = {  # keyword arguments left out when they equal torch's default
    "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros",
    "eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True, "elementwise_affine": True,
    "p": 0.5, "output_padding": 0, "dropout": 0.0, "padding_idx": None, "num_layers": 1,
    "bidirectional": False, "batch_first": False, "causal": False, "scale": None, "base": 10000.0,
    "interleaved": False,
}
# Classes whose defaults differ from DEFAULTS (instance norms have neither affine weights nor running stats).
CLASS_DEFAULTS = {
    **{f"nn.InstanceNorm{n}d": {**DEFAULTS, "affine": False, "track_running_stats": False} for n in (1, 2, 3)},
    "nn.PReLU": {"init": 0.25},
    "nn.init.normal_": {"mean": 0.0, "std": 1.0},
    "nn.init.trunc_normal_": {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0},
    "nn.init.uniform_": {"a": 0.0, "b": 1.0},
    "ShiftedWindowAttention": {"qkv_bias": True, "proj_bias": True, "attention_dropout": 0.0, "dropout": 0.0,
                               "version": 1},
    "PatchMerging": {"version": 1, "eps": 1e-5},
}


def leaves(call: Call, path: tuple = ()) -> list[tuple[tuple, Any]]:
    found = []
    for position, (key, value) in enumerate(call.args):
        if isinstance(value, Call):
            found += leaves(value, path + (position,))
        else:
            found.append((path + (position,), value))
    return found


def shape_of(call: Call) -> Any:
    return (call.func, tuple((key, shape_of(v) if isinstance(v, Call) else None) for key, v in call.args))


@dataclass(frozen=True)
class Name:
    """A reference to a constructor parameter (or a local of `__init__`) in generated code."""

    text: str


def substitute(call: Call, replacements: dict[tuple, Any], path: tuple = (),
                class_defaults: dict[str, dict[str, Any]] | None = None) -> Call:
    """`call` with the leaves at `replacements` replaced, and keyword arguments that equal their
    default left out (torch's, or those of the ejected classes in `class_defaults`)."""
    defaults = (class_defaults or {}).get(call.func) or CLASS_DEFAULTS.get(call.func, DEFAULTS)
    args = []
    for position, (key, value) in enumerate(call.args):
        here = path + (position,)
        if isinstance(value, Call):
            value = substitute(value, replacements, here, class_defaults)
        elif here in replacements:
            value = replacements[here]
        if key is not None and not isinstance(value, (Call, Name)) and key in defaults \
                and equal(defaults[key], value):
            continue
        args.append((key, value))
    return Call(call.func, args, call.init)


# ---- rendering Python source, formatted as black would -------------------------------------------

def literal(value: Any) -> str:
    if isinstance(value, Name):
        return value.text
    if isinstance(value, str):
        return python_string(value)
    if isinstance(value, float):
        return python_float(value)
    if isinstance(value, slice):
        return f"slice({literal(value.start)}, {literal(value.stop)}, {literal(value.step)})"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def _arg_text(key: str | None, value: Any, indent: int) -> list[str]:
    if isinstance(value, Call):
        lines = format_call(value, indent, prefix=f"{key}=" if key else "")
        return lines
    return [" " * indent + (f"{key}=" if key else "") + literal(value)]


def has_init(call: Call) -> bool:
    return call.init or any(isinstance(value, Call) and has_init(value) for _, value in call.args)


def _initialised(call: Call) -> Call:
    """`init_conv(nn.Conv2d(...))` for a convolution (see `Call.init`)."""
    return Call("init_conv", [(None, Call(call.func, call.args))]) if call.init else call


def _brackets(call: Call) -> tuple[str, str]:
    """`func(` and `)`; a Call named `[]` or `()` is a list or tuple display (`[("block1-0", Block(...))]`)."""
    if call.func in ("[]", "()"):
        return call.func[0], call.func[1]
    return call.func + "(", ")"


def flat_call(call: Call) -> str:
    call = _initialised(call)
    parts = []
    for key, value in call.args:
        text = flat_call(value) if isinstance(value, Call) else literal(value)
        parts.append(f"{key}={text}" if key else text)
    opening, closing = _brackets(call)
    return opening + ", ".join(parts) + closing


def format_call(call: Call, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for `prefix + call + suffix`, split the way black splits a call that is too long."""
    call = _initialised(call)
    pad = " " * indent
    one = pad + prefix + flat_call(call) + suffix
    if len(one) <= LINE_LENGTH or not call.args:
        return [one]
    opening, closing = _brackets(call)
    head = pad + prefix + opening
    inner = ", ".join((f"{k}=" if k else "") + (flat_call(v) if isinstance(v, Call) else literal(v))
                      for k, v in call.args)
    if len(pad) + 4 + len(inner) <= LINE_LENGTH:
        return [head, pad + "    " + inner, pad + closing + suffix]
    lines = [head]
    for key, value in call.args:
        arg_lines = _arg_text(key, value, indent + 4)
        arg_lines[-1] += ","
        lines += arg_lines
    return lines + [pad + closing + suffix]




PAD_SOURCE = '''class ZeroPadShortcut(nn.Module):
    """The ResNet paper's option A: subsample by striding, then zero-pad the new channels."""

    def __init__(self, stride: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = (out_channels - in_channels) // 2
        self.after = out_channels - in_channels - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))'''

INIT_SOURCE = '''def init_conv(module: nn.Module) -> nn.Module:
    """torchvision's ResNet init, as resgraph's compiler draws it: Kaiming normal, fan_out, for ReLU."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return module'''

# resgraph's own modules and init, written into an ejected file that uses them (it imports only torch).
HELPER_SOURCES = {"DropPath": inspect.getsource(DropPath).rstrip(), "ZeroPadShortcut": PAD_SOURCE,
                  "init_conv": INIT_SOURCE,
                  "ScaledDotProductAttention": inspect.getsource(ScaledDotProductAttention).rstrip(),
                  "RotaryEmbedding": inspect.getsource(RotaryEmbedding).rstrip(),
                  "Positions": inspect.getsource(Positions).rstrip(),
                  "TransposedLinear": inspect.getsource(TransposedLinear).rstrip(),
                  "ChannelLayerNorm": inspect.getsource(ChannelLayerNorm).rstrip(),
                  "ChannelRMSNorm": inspect.getsource(ChannelRMSNorm).rstrip(),
                  "sinusoidal_positions": inspect.getsource(sinusoidal_positions).rstrip(),
                  "relative_position_index": inspect.getsource(relative_position_index).rstrip(),
                  "RelativePositionAttention": inspect.getsource(RelativePositionAttention).rstrip(),
                  "ShiftedWindowAttention": inspect.getsource(ShiftedWindowAttention).rstrip(),
                  "PatchMerging": inspect.getsource(PatchMerging).rstrip()}
# What a helper's source uses beyond torch: other helpers, and `math`.
HELPER_NEEDS = {"RelativePositionAttention": {"relative_position_index"}}
HELPERS_USING_MATH = frozenset({"sinusoidal_positions", "RelativePositionAttention"})


# Module constructor arguments that an op attribute sets directly, so the spec's expression for
# the attribute can be written in their place.
ATTRIBUTE_OF = {"1": "out", "out_channels": "out", "kernel_size": "kernel", "stride": "stride", "padding": "padding",
                "dilation": "dilation", "groups": "groups", "bias": "bias", "p": "p", "eps": "eps",
                "momentum": "momentum", "output_padding": "output_padding", "dropout": "dropout"}


def normalised(value: Any) -> Any:
    """Lists as tuples, so that a list param and a module's tuple argument compare equal."""
    return tuple(value) if isinstance(value, list) else value


def equal(a: Any, b: Any) -> bool:
    """The same value, of the same type (a NaN param's value is its own)."""
    a, b = normalised(a), normalised(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and a != a and b != b)


def leaf(call: Call, path: tuple) -> Any:
    value: Any = call
    for position in path:
        value = value.args[position][1]
    return value


def arg_name(call: Call, path: tuple) -> str:
    parts = []
    value: Any = call
    for position in path:
        key, value = value.args[position]
        parts.append(key or str(position))
    return "_".join(parts)
