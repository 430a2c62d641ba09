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
