"""hf.py: config.json -> Model, generically, for every family the issue names."""

import json

import pytest

import tokenmath as tm
from tokenmath.hf import model_from_config


def base(**kw):
    cfg = dict(model_type="llama", hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
               num_key_value_heads=2, intermediate_size=128, vocab_size=100)
    cfg.update(kw)
    return cfg


def test_gqa_mha_mqa_kv_heads():
    assert model_from_config(base()).attention.n_kv_heads == 2
    assert model_from_config(base(num_key_value_heads=None)).attention.n_kv_heads == 8  # MHA default
    assert model_from_config(base(num_key_value_heads=1)).attention.n_kv_heads == 1  # MQA
    falcon = model_from_config(dict(model_type="falcon", hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                                    multi_query=True, vocab_size=100))
    assert falcon.attention.n_kv_heads == 1 and not falcon.mlp.gated and falcon.mlp.intermediate == 256


def test_mla_fields(cat):
    a = cat.model("deepseek-v3").attention
    assert (a.kind, a.kv_lora_rank, a.qk_rope_head_dim, a.q_lora_rank) == ("mla", 512, 64, 1536)


def test_dense_first_layers_and_shared_experts(cat):
    m = cat.model("deepseek-v3")
    assert m.layer_moe[:3] == (False, False, False) and all(m.layer_moe[3:])
    assert m.moe.n_shared == 1 and m.mlp.intermediate == 18432
    k2 = cat.model("kimi-k2")  # model_type kimi_k2 is read by its fields, not its name
    assert k2.family == "kimi_k2" and sum(k2.layer_moe) == 60 and k2.moe.n_experts == 384


def test_sliding_window_layer_types(cat):
    m = cat.model("gpt-oss-120b")
    assert m.layer_window.count(128) == 18 and m.layer_window.count(None) == 18
    assert m.moe.router_bias and m.attention.sinks and m.attention.qkv_bias and m.attention.o_bias


def test_gemma3_pattern_and_text_config():
    """Gemma 3 27B (HF google/gemma-3-27b text_config, shared/reference models.jsonl): 62 layers,
    sliding_window_pattern 6 -> 52 local + 10 global (Gemma 3 report: 5:1)."""
    cfg = {"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62, "num_attention_heads": 32,
        "num_key_value_heads": 16, "head_dim": 128, "intermediate_size": 21504, "vocab_size": 262208,
        "sliding_window": 1024, "sliding_window_pattern": 6}}
    m = model_from_config(cfg)
    assert m.layer_window.count(None) == 10 and m.layer_window.count(1024) == 52
    assert m.tied_embeddings and m.norms_per_layer == 4 and m.attention.qk_norm == "head"


def test_qwen2_biases_and_sliding_switch():
    m = model_from_config(base(model_type="qwen2", sliding_window=4096, use_sliding_window=False))
    assert m.attention.qkv_bias and not m.attention.o_bias
    assert set(m.layer_window) == {None}
    m = model_from_config(base(model_type="qwen2", sliding_window=16, use_sliding_window=True, max_window_layers=2))
    assert m.layer_window == (None, None, 16, 16)


def test_llama4_interleaved_moe_and_chunked_attention():
    from pathlib import Path

    m = tm.model_from_config_file(Path(__file__).parent / "data" / "llama-4-maverick.json")
    assert m.layer_moe[:4] == (False, True, False, True)
    assert m.layer_window[:4] == (8192, 8192, 8192, None)  # every 4th layer is global (NoPE)
    assert m.moe.n_shared == 1 and m.mlp.intermediate == 16384


def test_minimax_full_qk_norm_and_routing_bias():
    m = model_from_config(base(model_type="minimax_m2", num_local_experts=8, num_experts_per_tok=2,
                               use_qk_norm=True, qk_norm_type="per_layer", use_routing_bias=True))
    assert m.attention.qk_norm == "full" and m.moe.expert_score_bias
    pc = tm.param_counts(m)
    assert pc.attention == 4 * (64 * 64 + 2 * 64 * 16 + 64 * 64 + (8 + 2) * 8)


def test_dsa_fields(cat):
    a = cat.model("deepseek-v3.2").attention
    assert (a.index_topk, a.index_n_heads, a.index_head_dim) == (2048, 64, 128)


def test_kv_sharing_gemma3n_style():
    m = model_from_config(base(num_kv_shared_layers=2))
    assert m.layer_stores_kv == (True, True, False, False)


def test_unknown_family_with_readable_fields_works():
    m = model_from_config(base(model_type="brand_new_arch"))
    assert m.family == "brand_new_arch" and tm.param_counts(m).total > 0


def test_unknown_family_missing_fields_is_one_sentence():
    with pytest.raises(tm.TokenmathError) as e:
        model_from_config({"model_type": "mystery", "hidden_size": 64})
    msg = str(e.value)
    assert "num_hidden_layers" in msg and "mystery" in msg and "\n" not in msg


def test_broken_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(tm.TokenmathError, match="not valid JSON"):
        tm.model_from_config_file(p)
    p.write_text(json.dumps([1, 2]))
    with pytest.raises(tm.TokenmathError, match="expected an object"):
        tm.model_from_config_file(p)
    with pytest.raises(tm.TokenmathError, match="does not exist"):
        tm.model_from_config_file(tmp_path / "missing.json")


def test_bad_values():
    with pytest.raises(tm.TokenmathError, match="num_experts_per_tok = 9 exceeds"):
        model_from_config(base(num_local_experts=8, num_experts_per_tok=9))
    with pytest.raises(tm.TokenmathError, match="non-negative integer"):
        model_from_config(base(hidden_size=-5))
    with pytest.raises(tm.TokenmathError, match="not a multiple"):
        model_from_config(base(num_key_value_heads=3))


def test_quantization_config_dtypes(cat):
    assert cat.model("deepseek-v3").weight_dtype == "fp8"
    m = cat.model("gpt-oss-120b")
    assert m.weight_dtype == "mxfp4" and "attention" in m.unquantized_parts
    assert cat.model("llama-3.1-8b").weight_dtype == "bf16"


# ---- Gemma 4 (transformers 5.25.0 Gemma4TextConfig / Gemma4TextModel; counts in test_params.py) ----

from pathlib import Path  # noqa: E402

DATA = Path(__file__).parent / "data"


def test_gemma4_fields_are_read():
    """gemma4-26b-a4b-like: sliding layers 8 KV heads of 256; full layers (every 6th) their own 2
    KV heads of 512 with keys reused as values; 128 experts, top_k_experts 8, beside a dense MLP."""
    m = tm.model_from_config_file(DATA / "gemma4-26b-a4b-like.json")
    a, g = m.attention, m.global_attention
    assert (m.family, a.n_kv_heads, a.head_dim, a.k_eq_v) == ("gemma4_text", 8, 256, False)
    assert (g.n_heads, g.n_kv_heads, g.head_dim, g.v_head_dim, g.k_eq_v) == (16, 2, 512, 512, True)
    assert m.layer_window.count(None) == 5 and m.layer_window.count(1024) == 25
    assert (m.moe.n_experts, m.moe.k, m.moe.expert.intermediate, m.mlp.intermediate) == (128, 8, 704, 2112)
    assert all(m.layer_moe) and m.moe_with_dense_mlp and m.per_layer_input_dim == 0
    assert m.attention_of(None) is g and m.attention_of(1024) is a
    saved = tm.model_from_config_file(DATA / "gemma4-26b-a4b-saved.json")  # per_layer_config form
    assert saved.global_attention == g and saved.layer_window == m.layer_window


def test_gemma4_kv_bytes_per_layer_type():
    """KV bytes per token, bf16 (2 B), by hand: a layer caches n_kv x (head_dim K + head_dim V).
    26b-a4b-like at L = 1024 (the window): 25 sliding x 8 x 512 x 2 = 204,800 plus 5 full x 2 x
    1,024 x 2 = 20,480 -> 225,280 B/token; the L-proportional slope is the full layers' 20,480.
    Keys reused as values still cache K and V: transformers 5.25's cache holds a K and a V tensor
    of (1, n_kv, L, head_dim) on those layers (checked by running a tiny Gemma 4 on CPU with
    DynamicCache; the value is k_proj's output before k_norm and RoPE, a different tensor).
    31b-like at L = 1024: 50 x 16 x 512 x 2 = 819,200 + 10 x 4 x 1,024 x 2 = 81,920 -> 901,120.
    e2b-like at L = 512: the last 20 of 35 layers reuse KV; of layers 0-14, 12 slide (1 x 512 x 2
    = 1,024 each) and 3 are full (1 KV head: num_global_key_value_heads is ignored without
    k_eq_v; 1 x 1,024 x 2 = 2,048 each) -> 12,288 + 6,144 = 18,432 B/token."""
    m = tm.model_from_config_file(DATA / "gemma4-26b-a4b-like.json")
    kv = tm.kv_cache(m, 1024)
    assert kv.stored_bytes_per_token == 225_280 and kv.full_bytes_per_token == 20_480
    assert tm.kv_cache(m, 4096).stored_bytes == 25 * 8192 * 1024 + 20_480 * 4096
    assert tm.kv_cache(tm.model_from_config_file(DATA / "gemma4-31b-like.json"), 1024).stored_bytes_per_token == 901_120
    e2b = tm.kv_cache(tm.model_from_config_file(DATA / "gemma4-e2b-like.json"), 512)
    assert e2b.stored_bytes_per_token == 18_432 and (e2b.layers_full, e2b.layers_windowed, e2b.layers_shared) == (3, 12, 20)


def test_gemma4_attention_flops_per_layer_type():
    """26b-a4b-like, one token attending to L: 2 x 16 heads x (256 + 256) per token on 25 sliding
    layers (at most 1,024 tokens) and 2 x 16 x (512 + 512) on 5 full layers (KV-shared layers
    attend too)."""
    m = tm.model_from_config_file(DATA / "gemma4-26b-a4b-like.json")
    L = 8192
    assert tm.attention_flops_per_token(m, L) == 25 * 2 * 16 * 512 * 1024 + 5 * 2 * 16 * 1024 * L
