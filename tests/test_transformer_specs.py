"""What BERT and Llama (specs/bert.yaml, specs/llama.yaml) need of the language, each checked against a
computation written here by hand: a repeated block that shares its other inputs (BERT's attention mask
reaches every layer), a state_dict in declaration order where nodes run in another (Hugging Face's
Llama registers its norms last), `positions` and sdpa's key mask; and both specs written out
as Python (`resgraph export`). Their parity with Hugging Face `transformers` is in tests/test_zoo.py."""

from __future__ import annotations

import math
import re

import pytest
import torch

import resgraph
from resgraph.eject import eject_network
from resgraph.modules import ScaledDotProductAttention

from .conftest import SPECS
from .zoo.hf import BERT_SMALL, LLAMA_SMALL

LLAMA_TINY = dict(LLAMA_SMALL, width=64, layers=1, ffn=128, vocab=64)   # 8 heads of 8, 2 key/value heads

SHARED = """
resgraph: 1
input: {x: [6], gate: [6]}
blocks:
  gated:
    inputs: [input, gate]
    nodes:
      fc: {op: linear, out: 6, inputs: input}
      gated: {op: mul, inputs: [fc, gate]}
      add: {op: add, inputs: [gated, input]}
nodes:
  layers: {block: gated, repeat: 3, inputs: [x, gate]}
"""


def test_a_repeated_block_chains_its_first_input_and_shares_the_others(load_text):
    network = load_text(SHARED)
    model = resgraph.compile(network, seed=1).eval()
    x, gate = torch.randn(2, 6), torch.rand(2, 6)
    expected = x
    for layer in model.layers:   # by hand: every layer reads the previous one's output and the same gate
        expected = expected + layer.fc(expected) * gate
    with torch.no_grad():
        assert torch.allclose(model(x, gate), expected.detach(), atol=1e-6)
    assert [i.inputs for i in network.graph.instances.values()] == [
        ["x", "gate"], ["layers.0.add", "gate"], ["layers.1.add", "gate"]]


FORWARD = """
resgraph: 1
input: [4]
nodes:
  head: {op: linear, out: 3, inputs: norm}     # declared first, runs last
  body: {op: linear, out: 4, inputs: input}
  norm: {op: layernorm, inputs: body}
outputs: head
"""


def test_the_state_dict_follows_declaration_order_where_nodes_run_in_another(load_text, tmp_path):
    network = load_text(FORWARD)
    model = resgraph.compile(network, seed=0).eval()
    assert list(model.state_dict()) == ["head.weight", "head.bias", "body.weight", "body.bias", "norm.weight",
                                        "norm.bias"]
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.equal(model(x), model.head(model.norm(model.body(x))))
    namespace: dict = {}
    exec(compile(eject_network(network), "forward.py", "exec"), namespace)   # our own generated file
    torch.manual_seed(0)
    ejected = namespace["Spec"]().eval()
    assert list(ejected.state_dict()) == list(model.state_dict())
    ejected.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(ejected(x), model(x))


def test_positions_are_the_ids_of_each_position_and_no_state(load_text):
    network = load_text("""
        resgraph: 1
        input: {shape: [5], dtype: int64}
        nodes:
          ids: {op: embedding, num: 10, dim: 4}
          positions: {op: positions, inputs: input}
          table: {op: embedding, num: 8, dim: 4}
          sum: {op: add, inputs: [ids, table]}
        """)
    model = resgraph.compile(network).eval()
    assert list(model.state_dict()) == ["ids.weight", "table.weight"]
    tokens = torch.randint(0, 10, (2, 5))
    assert torch.equal(model.positions(tokens), torch.arange(5).expand(2, 5))
    with torch.no_grad():
        assert torch.equal(model(tokens), model.ids(tokens) + model.table.weight[:5])
    on_meta = resgraph.compile(network, device="meta")   # nothing to load: right after a state_dict is assigned
    on_meta.load_state_dict(model.state_dict(), assign=True)
    with torch.no_grad():
        assert torch.equal(on_meta(tokens), model(tokens))


def reference_attention(q, k, v, heads, kv_heads, mask, causal):
    """Attention written out: scores, padded keys (and later positions) at -inf, softmax, weighted values."""
    batch, lq, lk = q.shape[0], q.shape[1], k.shape[1]
    q = q.reshape(batch, lq, heads, -1).transpose(1, 2)
    k = k.reshape(batch, lk, kv_heads, -1).transpose(1, 2).repeat_interleave(heads // kv_heads, 1)
    v = v.reshape(batch, lk, kv_heads, -1).transpose(1, 2).repeat_interleave(heads // kv_heads, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    hidden = (mask == 0)[:, None, None, :].expand(-1, heads, lq, -1)
    if causal:
        hidden = hidden | torch.ones(lq, lk, dtype=torch.bool).triu(1)
    weights = scores.masked_fill(hidden, float("-inf")).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(batch, lq, -1)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_the_key_mask_hides_padded_keys(causal, kv_heads):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 16, generator=generator)
    k, v = (torch.randn(2, 6, kv_heads * 4, generator=generator) for _ in range(2))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    attention = ScaledDotProductAttention(4, kv_heads, causal=causal)
    got = attention(q, k, v, mask)
    assert torch.allclose(got, reference_attention(q, k, v, 4, kv_heads, mask, causal), atol=1e-6)
    changed = v.clone()
    changed[1, 4:] += 10.0   # the padded keys' values reach no query
    assert torch.equal(attention(q, k, changed, mask)[1], got[1])
    assert torch.equal(attention(q, k, v, mask.float())[0], attention(q, k, v)[0])   # all ones: no mask at all


def test_bert_hides_padding_from_every_token():
    network = resgraph.load(SPECS / "bert.yaml", params=BERT_SMALL)
    model = resgraph.compile(network, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, BERT_SMALL["vocab"], (1, 16), generator=generator)
    mask, types = torch.ones(1, 16, dtype=torch.int64), torch.zeros(1, 16, dtype=torch.int64)
    mask[:, 12:] = 0
    other = ids.clone()
    other[:, 12:] = (other[:, 12:] + 1) % BERT_SMALL["vocab"]   # other tokens in the padding only
    with torch.no_grad():
        hidden, pooled = model(ids, mask, types)
        other_hidden, other_pooled = model(other, mask, types)
        unmasked, _ = model(other, torch.ones_like(mask), types)
    assert torch.equal(hidden[:, :12], other_hidden[:, :12]) and torch.equal(pooled, other_pooled)
    assert (unmasked[:, :12] - hidden[:, :12]).abs().max() > 1e-3   # without the mask they would be seen
    assert hidden.shape == (1, 16, 64) and pooled.shape == (1, 64)


@pytest.mark.parametrize("name, params", [("bert", BERT_SMALL), ("llama", LLAMA_TINY)])
def test_bert_and_llama_are_written_out_as_python(name, params):
    network = resgraph.load(SPECS / f"{name}.yaml", params=params)
    source = eject_network(network)
    namespace: dict = {}
    exec(compile(source, f"{name}.py", "exec"), namespace)   # our own generated file
    model = resgraph.compile(network, seed=3).eval()
    torch.manual_seed(3)
    ejected = namespace[source.split("\nclass ")[-1].split("(")[0]]().eval()
    ours, theirs = model.state_dict(), ejected.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[key], theirs[key]) for key in ours)   # same init
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, params["vocab"], (2, params["seq_len"]), generator=generator)
    if name == "bert":
        mask = torch.ones_like(ids)
        mask[1, -3:] = 0
        args = (ids, mask, torch.randint(0, 2, ids.shape, generator=generator))
        assert re.search(r"for layer in self\.encoder\.layer:\n +(\w+) = layer\(\1, attention_mask\)", source)
    else:
        args = (ids,)
    with torch.no_grad():
        expected, got = model(*args), ejected(*args)
    for e, g in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (expected, got))):
        assert (e - g).abs().max().item() <= 1e-5
