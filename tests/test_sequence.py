"""Sequence networks against hand-written torch modules: int64 token inputs, embedding, a residual
LSTM stack, and a causal decoder with rotary embeddings and grouped-query attention (both RoPE
conventions, each written here independently of resgraph's module)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import resgraph

from .conftest import SPECS, randomize_norms


class ResidualLSTM(nn.Module):
    """GNMT's residual LSTM stack, as one would write it by hand."""

    def __init__(self, vocab: int, width: int, num_layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(nn.ModuleDict({"lstm": nn.LSTM(width, width, batch_first=True)})
                                    for _ in range(num_layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            out, _ = layer["lstm"](x)
            x = out + x
        return self.head(x)


def compare(model: nn.Module, reference: nn.Module, tokens: torch.Tensor) -> float:
    reference.load_state_dict(model.state_dict(), strict=True)
    model.eval(), reference.eval()
    with torch.no_grad():
        return (model(tokens) - reference(tokens)).abs().max().item()


def test_residual_lstm_stack_equals_a_hand_written_module():
    params = {"vocab": 50, "width": 24, "seq_len": 9, "num_layers": 2}
    network = resgraph.load(SPECS / "residual_lstm.yaml", params)
    assert network.input_shapes == {"input": (9,)} and network.graph.nodes["input"].dtype == "int64"
    model = resgraph.compile(network, seed=3)
    reference = ResidualLSTM(50, 24, 2)
    assert network.params == sum(p.numel() for p in reference.parameters())
    assert [k for k in model.state_dict()] == [k for k in reference.state_dict()]
    assert "layers.1.lstm.weight_hh_l0" in model.state_dict()
    tokens = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(0))
    assert compare(model, reference, tokens) <= 1e-5


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Hugging Face's Llama."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_half(x: torch.Tensor, base: float) -> torch.Tensor:
    """x: [batch, heads, length, head_dim], as transformers' apply_rotary_pos_emb."""
    dim, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = torch.outer(torch.arange(length).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def rope_complex(x: torch.Tensor, base: float) -> torch.Tensor:
    """Meta's Llama (precompute_freqs_cis, apply_rotary_emb): channel pairs as complex numbers."""
    dim, length = x.shape[-1], x.shape[-2]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    freqs_cis = torch.polar(torch.ones(length, dim // 2), torch.outer(torch.arange(length).float(), freqs))
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs_cis).flatten(-2).type_as(x)


class DecoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, kv_heads: int, mlp: int, rope) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.rope = heads, kv_heads, width // heads, rope
        self.norm1 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, mlp)
        self.down = nn.Linear(mlp, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        h = self.norm1(x)
        q = self.q(h).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rope(q), self.rope(k)
        groups = self.heads // self.kv_heads   # transformers' repeat_kv
        k = k[:, :, None].expand(batch, self.kv_heads, groups, length, self.head_dim).reshape(batch, -1, length,
                                                                                            self.head_dim)
        v = v[:, :, None].expand(batch, self.kv_heads, groups, length, self.head_dim).reshape(batch, -1, length,
                                                                                            self.head_dim)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, width)
        x = self.o(attended) + x
        return self.down(F.gelu(self.up(self.norm2(x)))) + x


class Decoder(nn.Module):
    def __init__(self, vocab: int, width: int, heads: int, kv_heads: int, mlp: int, layers: int, rope) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.layers = nn.Sequential(*(DecoderLayer(width, heads, kv_heads, mlp, rope) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.layers(self.embed(tokens))))


@pytest.mark.parametrize("interleaved", [False, True])
def test_causal_decoder_equals_a_hand_written_module(interleaved):
    base = 500.0
    params = {"vocab": 40, "width": 32, "heads": 4, "kv_heads": 2, "mlp": 48, "num_layers": 1, "seq_len": 7,
              "interleaved": interleaved, "rope_base": base}
    network = resgraph.load(SPECS / "tiny_decoder.yaml", params)
    model = randomize_norms(resgraph.compile(network, seed=1))
    rope = (lambda x: rope_complex(x, base)) if interleaved else (lambda x: rope_half(x, base))
    reference = Decoder(40, 32, 4, 2, 48, 1, rope)
    assert network.params == sum(p.numel() for p in reference.parameters())
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(0))
    assert compare(model, reference, tokens) <= 1e-5
    # the other convention gives another network: the test can tell them apart
    other = Decoder(40, 32, 4, 2, 48, 1, (lambda x: rope_half(x, base)) if interleaved else
                    (lambda x: rope_complex(x, base)))
    assert compare(model, other, tokens) > 1e-3


def test_causal_attention_does_not_see_the_future():
    network = resgraph.load(SPECS / "tiny_decoder.yaml", {"seq_len": 6, "num_layers": 1})
    model = resgraph.compile(network).eval()
    tokens = torch.randint(0, 128, (1, 6), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[0, 4:] = (changed[0, 4:] + 1) % 128
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6) and not torch.allclose(a[:, 4:], b[:, 4:])


def test_multihead_attention_causal_and_cross_equal_torch_calls():
    spec = """
resgraph: 1
input: {x: [5, 8], memory: [7, 6]}
nodes:
  self_attn: {op: multihead_attention, heads: 2, causal: true, inputs: x}
  cross: {op: multihead_attention, heads: 2, inputs: [self_attn, memory]}
"""
    network = resgraph.load("mha.yaml", text=spec)
    model = resgraph.compile(network).eval()
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 7, 6)
    with torch.no_grad():
        mask = nn.Transformer.generate_square_subsequent_mask(5)
        h = model.self_attn(x, x, x, attn_mask=mask, need_weights=False)[0]
        expected = model.cross(h, memory, memory, need_weights=False)[0]
        assert (model(x, memory) - expected).abs().max() <= 1e-5
    assert network.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("text,message", [
    ("input: [4]\nnodes:\n  e: {op: embedding, num: 5, dim: 3}", "`embedding` reads integer ids"),
    ("input: {shape: [4], dtype: int64}\nnodes:\n  l: {op: linear, out: 3}", "computes on floats"),
])
def test_dtype_mismatch_is_rg090(text, message):
    with pytest.raises(resgraph.SpecError) as info:
        resgraph.load("d.yaml", text="resgraph: 1\n" + text)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "RG090" and message in diagnostic.message and diagnostic.span.line == 4


@pytest.mark.parametrize("suffix", ["py", pytest.param("onnx", marks=pytest.mark.slow),
                                    pytest.param("pt2", marks=pytest.mark.slow)])
def test_sequence_networks_export(tmp_path, suffix):
    from resgraph.export import export

    network = resgraph.load(SPECS / "tiny_decoder.yaml", {"num_layers": 1, "seq_len": 5})
    path = export(network, tmp_path / f"decoder.{suffix}")
    tokens = torch.randint(0, 128, (3, 5), generator=torch.Generator().manual_seed(0))
    model = resgraph.compile(network).eval()
    with torch.no_grad():
        expected = model(tokens)
    if suffix == "py":
        import importlib.util

        loader = importlib.util.spec_from_file_location("decoder_module", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        ejected = module.TinyDecoder().eval()
        ejected.load_state_dict(model.state_dict(), strict=True)
        with torch.no_grad():
            assert (ejected(tokens) - expected).abs().max() <= 1e-5
    elif suffix == "pt2":
        program = torch.export.load(str(path))
        assert (program.module()(tokens) - expected).abs().max() <= 1e-5
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        (got,) = session.run(None, {"input": tokens.numpy()})
        assert abs(got - expected.numpy()).max() <= 1e-4


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16, padding_idx=0)
        self.lstm1 = nn.LSTM(16, 16, batch_first=True)
        self.lstm2 = nn.GRU(16, 8, num_layers=2, bidirectional=True, batch_first=True, dropout=0.1)
        self.head = nn.Linear(16, 50)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        out, _ = self.lstm1(x)
        x = out + x
        return self.head(self.lstm2(x)[0])


def test_import_maps_embedding_lstm_and_gru_back():
    from resgraph.importer import import_module

    model = TokenModel().eval()
    text = import_module(model, input_shape=(9,))
    assert "input: {shape: [9], dtype: int64}" in text
    assert "{op: lstm, hidden: 16}" in text and "{op: gru, hidden: 8, layers: 2, bidirectional: true" in text
    tokens = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    assert compare(resgraph.compile(resgraph.load("imported.yaml", text=text)), model, tokens) <= 1e-5
