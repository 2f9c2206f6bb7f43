"""Transformers generated from their definitions: BERT-base and BERT-large (Devlin et al.
2019, as Hugging Face's BertModel: embeddings, encoder layers, pooler), GPT-2 small,
medium, large and XL (Radford et al. 2019, as released: the output layer tied to the token
embedding) and Transformer-big (Vaswani et al. 2017, Table 3: 6 + 6 layers, d 1024, 16
heads, d_ff 4096, sinusoidal positions, one embedding shared by encoder, decoder and output
over a vocabulary of about 37,000 tokens).

A sample is one sequence of seq_len tokens (Transformer-big: a source and a target sentence
of seq_len tokens each). Forward FLOPs per sample: 2 per multiply-accumulate of every
matrix product, that is 2 x its weights per token, plus attention's two products (scores
and their weighted sum, 2 x seq_len x d multiply-accumulates per token and layer); a tied
output layer computes on the embedding's weights and so has FLOPs and no parameters of its
own: its gradient is the embedding's, ready when the backward reaches the embedding.
Layer norms and embeddings' lookups count no FLOPs.
"""

from __future__ import annotations

from .workload import Layer, Workload

BERT = {"bert-base": (768, 12), "bert-large": (1024, 24)}
GPT2 = {
    "gpt2-small": (768, 12),
    "gpt2-medium": (1024, 24),
    "gpt2-large": (1280, 36),
    "gpt2-xl": (1600, 48),
}
BERT_VOCAB, BERT_POSITIONS = 30522, 512
GPT2_VOCAB, GPT2_POSITIONS = 50257, 1024
TRANSFORMER_BIG = dict(d=1024, ff=4096, layers=6, vocab=37000)


def _linear(name: str, fin: int, fout: int, tokens: int) -> Layer:
    return Layer(name, (fin * fout, fout), forward_flops=2.0 * fin * fout * tokens)


def _norm(name: str, d: int) -> Layer:
    return Layer(name, (d, d), forward_flops=0.0)


def _attention_products(name: str, d: int, queries: int, keys: int) -> Layer:
    """Q K^T and the weighted sum of V: no parameters, 2 x 2 x queries x keys x d FLOPs."""
    return Layer(name, (), forward_flops=4.0 * queries * keys * d)


def bert(name: str, seq_len: int = 512) -> Workload:
    d, depth = BERT[name]
    s = seq_len
    layers = [
        Layer("embeddings.word_embeddings", (BERT_VOCAB * d,), forward_flops=0.0),
        Layer("embeddings.position_embeddings", (BERT_POSITIONS * d,), forward_flops=0.0),
        Layer("embeddings.token_type_embeddings", (2 * d,), forward_flops=0.0),
        _norm("embeddings.LayerNorm", d),
    ]
    for i in range(depth):
        p = f"encoder.layer.{i}"
        layers += [
            _linear(f"{p}.attention.self.query", d, d, s),
            _linear(f"{p}.attention.self.key", d, d, s),
            _linear(f"{p}.attention.self.value", d, d, s),
            _attention_products(f"{p}.attention.scores", d, s, s),
            _linear(f"{p}.attention.output.dense", d, d, s),
            _norm(f"{p}.attention.output.LayerNorm", d),
            _linear(f"{p}.intermediate.dense", d, 4 * d, s),
            _linear(f"{p}.output.dense", 4 * d, d, s),
            _norm(f"{p}.output.LayerNorm", d),
        ]
    layers.append(_linear("pooler.dense", d, d, 1))
    return Workload(name, tuple(layers), source=f"transformers.BertModel ({name}, seq {s})")


def gpt2(name: str, seq_len: int = 1024) -> Workload:
    d, depth = GPT2[name]
    s = seq_len
    layers = [
        Layer("wte", (GPT2_VOCAB * d,), forward_flops=0.0),
        Layer("wpe", (GPT2_POSITIONS * d,), forward_flops=0.0),
    ]
    for i in range(depth):
        p = f"h.{i}"
        layers += [
            _norm(f"{p}.ln_1", d),
            _linear(f"{p}.attn.c_attn", d, 3 * d, s),
            _attention_products(f"{p}.attn.scores", d, s, s),
            _linear(f"{p}.attn.c_proj", d, d, s),
            _norm(f"{p}.ln_2", d),
            _linear(f"{p}.mlp.c_fc", d, 4 * d, s),
            _linear(f"{p}.mlp.c_proj", 4 * d, d, s),
        ]
    layers += [
        _norm("ln_f", d),
        Layer("lm_head (tied to wte)", (), forward_flops=2.0 * d * GPT2_VOCAB * s),
    ]
    return Workload(name, tuple(layers), source=f"GPT-2 as released ({name}, context {s})")


def transformer_big(seq_len: int = 32) -> Workload:
    d, ff, depth, vocab = (TRANSFORMER_BIG[k] for k in ("d", "ff", "layers", "vocab"))
    s = seq_len
    layers = [Layer("embed_tokens (shared)", (vocab * d,), forward_flops=0.0)]

    def attention(p, queries, keys):
        return [
            _linear(f"{p}.q_proj", d, d, queries),
            _linear(f"{p}.k_proj", d, d, keys),
            _linear(f"{p}.v_proj", d, d, keys),
            _attention_products(f"{p}.products", d, queries, keys),
            _linear(f"{p}.out_proj", d, d, queries),
        ]

    for i in range(depth):
        p = f"encoder.layers.{i}"
        layers += attention(f"{p}.self_attn", s, s) + [
            _norm(f"{p}.self_attn_layer_norm", d),
            _linear(f"{p}.fc1", d, ff, s),
            _linear(f"{p}.fc2", ff, d, s),
            _norm(f"{p}.final_layer_norm", d),
        ]
    for i in range(depth):
        p = f"decoder.layers.{i}"
        layers += attention(f"{p}.self_attn", s, s) + [_norm(f"{p}.self_attn_layer_norm", d)]
        layers += attention(f"{p}.encoder_attn", s, s) + [_norm(f"{p}.encoder_attn_layer_norm", d)]
        layers += [
            _linear(f"{p}.fc1", d, ff, s),
            _linear(f"{p}.fc2", ff, d, s),
            _norm(f"{p}.final_layer_norm", d),
        ]
    layers.append(Layer("output_projection (tied)", (), forward_flops=2.0 * d * vocab * s))
    return Workload(
        "transformer-big", tuple(layers), source=f"Vaswani et al. 2017, big (pairs of {s} tokens)"
    )
