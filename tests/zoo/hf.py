"""Hugging Face `transformers` models (a test-only dependency), built from a config and never downloaded:
BERT (`BertModel`, bert-base), Llama (`LlamaForCausalLM`, Llama-2-7B on the meta device and a small
config for output parity) and GPT-2 (`GPT2LMHeadModel`, gpt2 (124M) and a small config)."""

from __future__ import annotations

import os

from . import Model

os.environ.setdefault("HF_HUB_OFFLINE", "1")     # nothing here may reach the network

BERT_SMALL = {"seq_len": 16, "vocab": 512, "hidden": 64, "layers": 2, "heads": 4, "intermediate": 256}
LLAMA_SMALL = {"seq_len": 16, "vocab": 512, "width": 256, "layers": 4, "heads": 8, "kv_heads": 2, "ffn": 688}
LLAMA_SMALL_TIED = {**LLAMA_SMALL, "tie_word_embeddings": True}


def bert(hidden=768, layers=12, heads=12, intermediate=3072, vocab=30522, **_):
    def build():
        from transformers import BertConfig, BertModel

        config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=intermediate, vocab_size=vocab, attn_implementation="sdpa")
        return BertModel(config)
    return build


def bert_inputs(seq_len: int, vocab: int):
    """`input_ids`, `attention_mask` (the last quarter is padding) and `token_type_ids` (two segments), in
    `BertModel.forward`'s order, which is the spec's."""
    def example(generator):
        import torch

        ids = torch.randint(0, vocab, (1, seq_len), generator=generator)
        mask = torch.ones((1, seq_len), dtype=torch.int64)
        mask[:, seq_len - seq_len // 4:] = 0
        types = torch.zeros((1, seq_len), dtype=torch.int64)
        types[:, seq_len // 2:] = 1
        return ids, mask, types
    return example


def meta_bert_inputs(seq_len: int):
    """The token ids alone: Hugging Face reads a given mask's values (`.item()`, to skip an all-ones mask), which
    the meta device cannot; the mask and the token types change no product's size, so the count is the same."""
    def example():
        import torch

        return torch.zeros((1, seq_len), dtype=torch.int64)
    return example


def hidden_and_pooled(output):
    return output.last_hidden_state, output.pooler_output


def llama(width=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32000, tie_word_embeddings=False, **_):
    def build():
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                             num_key_value_heads=kv_heads, intermediate_size=ffn, vocab_size=vocab,
                             rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=tie_word_embeddings,
                             attn_implementation="sdpa")
        return LlamaForCausalLM(config)
    return build


GPT2_SMALL = {"seq_len": 16, "vocab": 500, "positions": 64, "width": 64, "layers": 2, "heads": 4}


def gpt2(width=768, layers=12, heads=12, vocab=50257, positions=1024, attention="sdpa", **_):
    """`GPT2LMHeadModel` (its head tied to `transformer.wte`); `attention`: Hugging Face's attention implementation."""
    def build():
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_embd=width, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=positions,
                            bos_token_id=vocab - 1, eos_token_id=vocab - 1, attn_implementation=attention)
        return GPT2LMHeadModel(config)
    return build


def token_ids(seq_len: int, vocab: int):
    def example(generator):
        import torch

        return torch.randint(0, vocab, (1, seq_len), generator=generator)
    return example


def meta_token_ids(seq_len: int):
    def example():
        import torch

        return torch.zeros((1, seq_len), dtype=torch.int64)
    return example


def logits(output):
    return output.logits


MODELS = [
    Model(name="bert_base", spec="bert.yaml", family="BERT", reference=bert(),
          reference_name="transformers.BertModel (bert-base config)", relative=True, output=hidden_and_pooled,
          example=bert_inputs(128, 30522), macs_input=meta_bert_inputs(128)),
    Model(name="bert_small", spec="bert.yaml", family="BERT", reference=bert(**BERT_SMALL),
          reference_name="transformers.BertModel (hidden 64, 2 layers, 4 heads)", params=BERT_SMALL,
          smallest=True, output=hidden_and_pooled, example=bert_inputs(BERT_SMALL["seq_len"], BERT_SMALL["vocab"]),
          macs_input=meta_bert_inputs(BERT_SMALL["seq_len"])),
    Model(name="llama2_7b", spec="llama.yaml", family="Llama", reference=llama(),
          reference_name="transformers.LlamaForCausalLM (Llama-2-7B config)", relative=True,
          output=logits, example=token_ids(128, 32000), macs_input=meta_token_ids(128),
          too_large="two float32 copies of 6.7 G parameters need 54 GB; llama_small is its parity check"),
    Model(name="llama_small", spec="llama.yaml", family="Llama", reference=llama(**LLAMA_SMALL),
          reference_name="transformers.LlamaForCausalLM (width 256, 4 layers, 8 heads, 2 KV heads)",
          params=LLAMA_SMALL, smallest=True, output=logits,
          example=token_ids(LLAMA_SMALL["seq_len"], LLAMA_SMALL["vocab"]),
          macs_input=meta_token_ids(LLAMA_SMALL["seq_len"])),
    Model(name="llama_small_tied", spec="llama.yaml", family="Llama", reference=llama(**LLAMA_SMALL_TIED),
          reference_name="transformers.LlamaForCausalLM (llama_small's config, tie_word_embeddings=True)",
          params=LLAMA_SMALL_TIED, smallest=True, output=logits,
          example=token_ids(LLAMA_SMALL["seq_len"], LLAMA_SMALL["vocab"]),
          macs_input=meta_token_ids(LLAMA_SMALL["seq_len"])),
    Model(name="gpt2", spec="gpt2.yaml", family="GPT-2", reference=gpt2(),
          reference_name="transformers.GPT2LMHeadModel (gpt2 config, 124M)", relative=True, output=logits,
          example=token_ids(128, 50257), macs_input=meta_token_ids(128)),
    Model(name="gpt2_small", spec="gpt2.yaml", family="GPT-2", reference=gpt2(**GPT2_SMALL),
          reference_name="transformers.GPT2LMHeadModel (width 64, 2 layers, 4 heads, vocab 500)",
          params=GPT2_SMALL, smallest=True, output=logits, example=token_ids(GPT2_SMALL["seq_len"], GPT2_SMALL["vocab"]),
          macs_input=meta_token_ids(GPT2_SMALL["seq_len"])),
]
