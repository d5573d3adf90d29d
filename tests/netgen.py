"""A generator of small random valid networks, for differential tests of compile against its artefacts.

Each network is a spec text built from the existing ops (conv, norms, activations, pools, add with
identity/pad/project shortcuts and three inputs, concat, mul, flatten, linear, layernorm), wired at
random: nodes read any earlier node, several times, and several nodes are returned. Shapes are
tracked here so that most specs are valid; the caller validates each and skips the rare invalid one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAP_UNARY = ["relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "identity", "batchnorm2d", "dropout", "groupnorm",
             "conv2d", "conv2d", "conv2d", "maxpool2d", "avgpool2d", "activation"]
VECTOR_UNARY = ["relu", "tanh", "sigmoid", "gelu", "linear", "linear", "batchnorm1d", "layernorm", "identity"]


@dataclass
class _Value:
    name: str
    shape: tuple[int, ...]


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def random_network(seed: int, max_nodes: int = 10) -> str:
    """The YAML text of a random network; the same seed gives the same text."""
    rng = random.Random(seed)
    channels, size = rng.choice([2, 3, 4]), rng.choice([4, 5, 6, 8])
    two_inputs = rng.random() < 0.15
    if two_inputs:
        head = f"input: {{image: [{channels}, {size}, {size}], mask: [{channels}, {size}, {size}]}}\n"
        values = [_Value("image", (channels, size, size)), _Value("mask", (channels, size, size))]
    else:
        head = f"input: [{channels}, {size}, {size}]\n"
        values = [_Value("input", (channels, size, size))]
    lines: list[str] = []
    count = rng.randint(2, max_nodes)
    flattened = False

    def pick(rank: int | None = None) -> _Value:
        pool = [v for v in values if rank is None or len(v.shape) == rank] or values
        # recent values more often, so that chains form, but any earlier one can be read again
        return pool[-1] if rng.random() < 0.5 else rng.choice(pool)

    for index in range(count):
        name = f"n{index}"
        maps = [v for v in values if len(v.shape) == 3]
        if not flattened and maps and (rng.random() < 0.12 or index == count - 2):
            source = pick(3)
            node = {"op": "flatten", "inputs": source.name}
            shape: tuple[int, ...] = (source.shape[0] * source.shape[1] * source.shape[2],)
            if rng.random() < 0.5:
                lines.append(f"  {name}p: {{op: adaptive_avgpool2d, size: 1, inputs: {source.name}}}")
                values.append(_Value(f"{name}p", (source.shape[0], 1, 1)))
                node["inputs"], shape = f"{name}p", (source.shape[0],)
            flattened = True
        else:
            rank = 1 if flattened and rng.random() < 0.6 else 3
            source = pick(rank)
            rank = len(source.shape)
            kind = rng.random()
            node, shape = None, source.shape
            if kind < 0.22:
                node, shape = _merge(rng, values, source, name)
            if node is None:
                node, shape = _unary(rng, source)
        text = ", ".join(f"{key}: {_yaml(value)}" for key, value in node.items())
        lines.append(f"  {name}: {{{text}}}")
        values.append(_Value(name, shape))
    names = [v.name for v in values if v.name.startswith("n")]
    outputs = sorted(set(rng.sample(names, k=min(len(names), rng.choice([1, 1, 2, 3])))) | {names[-1]},
                     key=names.index)
    return ("resgraph: 1\nname: fuzz\n" + head + "nodes:\n" + "\n".join(lines) + "\n" +
            f"outputs: [{', '.join(outputs)}]\n")


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _unary(rng: random.Random, source: _Value) -> tuple[dict, tuple[int, ...]]:
    shape = source.shape
    if len(shape) == 1:
        op = rng.choice(VECTOR_UNARY)
        node: dict = {"op": op, "inputs": source.name}
        if op == "linear":
            out = rng.randint(1, 6)
            node.update(out=out, bias=rng.random() < 0.7)
            return node, (out,)
        if op == "layernorm":
            node["elementwise_affine"] = rng.random() < 0.8
        return node, shape
    c, h, w = shape
    op = rng.choice(MAP_UNARY)
    node = {"op": op, "inputs": source.name}
    if op == "conv2d":
        kernel = rng.choice([1, 3]) if h >= 3 else 1
        stride = rng.choice([1, 1, 2]) if h >= 2 else 1
        padding = kernel // 2 if rng.random() < 0.8 else 0
        out = rng.randint(1, 6)
        groups = c if rng.random() < 0.15 and out % c == 0 else 1
        node.update(out=out, kernel=kernel, stride=stride, padding=padding, bias=rng.random() < 0.5)
        if groups != 1:
            node["groups"] = groups
        return node, (out, _conv_size(h, kernel, stride, padding), _conv_size(w, kernel, stride, padding))
    if op in ("maxpool2d", "avgpool2d"):
        if h < 2:
            return {"op": "relu", "inputs": source.name}, shape
        node.update(kernel=2, stride=2)
        return node, (c, h // 2, w // 2)
    if op == "groupnorm":
        node["groups"] = rng.choice([g for g in (1, 2, c) if c % g == 0])
    if op == "dropout":
        node["p"] = 0.25
    if op == "activation":
        node["function"] = rng.choice(["relu", "sigmoid", "tanh"])
    if op == "batchnorm2d" and rng.random() < 0.2:
        node["affine"] = False
    return node, shape


def _merge(rng: random.Random, values: list[_Value], branch: _Value, name: str) -> tuple[dict | None, tuple]:
    same = [v for v in values if v.shape == branch.shape]
    op = rng.choice(["add", "add", "add", "concat", "mul"])
    if op == "add":
        # a shortcut that needs a pad or a projection: more channels, or a subsampled map
        different = [v for v in values if len(v.shape) == len(branch.shape) and v.shape != branch.shape
                     and (len(v.shape) == 1 or (v.shape[0] <= branch.shape[0] and v.shape[1] >= branch.shape[1]
                                                 and v.shape[2] >= branch.shape[2]))]
        if different and rng.random() < 0.4:
            skip = rng.choice(different)
            policy = "project" if len(branch.shape) == 1 else rng.choice(["pad", "project", "auto"])
            inputs = [branch.name, skip.name] + ([rng.choice(same).name] if rng.random() < 0.4 else [])
            node = {"op": "add", "inputs": inputs, "shortcut": policy}
            if rng.random() < 0.3:
                node["shortcut_name"] = "proj"
            return node, branch.shape
        count = rng.choice([2, 2, 3])
        inputs = [branch.name] + [rng.choice(same).name for _ in range(count - 1)]   # may repeat a node
        return {"op": "add", "inputs": inputs}, branch.shape
    if op == "mul":
        inputs = [branch.name, rng.choice(same).name]
        return {"op": "mul", "inputs": inputs}, branch.shape
    if len(branch.shape) == 3:
        fits = [v for v in values if len(v.shape) == 3 and v.shape[1:] == branch.shape[1:]]
    else:
        fits = [v for v in values if len(v.shape) == 1]
    others = [rng.choice(fits) for _ in range(rng.choice([1, 2]))]
    channels = branch.shape[0] + sum(v.shape[0] for v in others)
    return {"op": "concat", "inputs": [branch.name] + [v.name for v in others]}, (channels, *branch.shape[1:])
