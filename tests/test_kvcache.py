"""kvcache.py: bytes stored per token and read per decode step, for every attention kind."""

from pathlib import Path

import numpy as np
import pytest

import tokenmath as tm
from tokenmath.hf import model_from_config

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "name, expected",
    [
        # Zhao et al., "Insights into DeepSeek-V3", ISCA'25 (arXiv 2505.09343), Table 1, BF16:
        # DeepSeek-V3 70.272 KB, Qwen-2.5-72B (same GQA shape as Llama-3.1-70B) 327.68 KB, LLaMA-3.1-405B 516.096 KB.
        ("deepseek-v3", 70_272),
        ("llama-3.1-70b", 327_680),
        ("llama-3.1-405b", 516_096),
        # Kimi K2 has DeepSeek-V3's MLA latent (512 + 64) on 61 layers: same bytes.
        ("kimi-k2", 70_272),
        # shared/reference misc.jsonl derived checks (arithmetic on the configs): Llama-3.1-8B
        # 131,072; Qwen3-235B-A22B 192,512; Mixtral 131,072.
        ("llama-3.1-8b", 131_072),
        ("qwen3-235b-a22b", 192_512),
        ("mixtral-8x7b", 131_072),
    ],
)
def test_published_kv_bytes_per_token_bf16(cat, name, expected):
    """Exact (tolerance 0) at any context for full-attention models."""
    m = cat.model(name)
    for L in (1, 4096, 131_072):
        assert tm.kv_bytes_per_token(m, L, "bf16") == expected


def test_kv_dtype_scales_bytes(ds3):
    assert tm.kv_bytes_per_token(ds3, 1000, "fp8") == 70_272 / 2


def test_sliding_window_stores_min_L_W(cat):
    """gpt-oss-120b (misc.jsonl derived check): 73,728 B/token while L <= 128, and the 18
    full-attention layers' 36,864 B/token beyond the window (18 windowed layers keep 128 tokens)."""
    m = cat.model("gpt-oss-120b")
    assert tm.kv_bytes_per_token(m, 128) == 73_728
    kv = tm.kv_cache(m, 1_000_000)
    assert kv.stored_bytes == 36_864 * 1_000_000 + 36_864 * 128
    assert kv.full_bytes_per_token == 36_864
    assert (kv.layers_full, kv.layers_windowed) == (18, 18)


def test_gemma3_local_global_mix():
    """misc.jsonl: Gemma-3-27B keeps 81,920 B/token on 10 global layers and 425,984 B/token on 52
    local layers capped at 1,024 tokens (BF16). Exact."""
    cfg = {"model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62, "num_attention_heads": 32,
           "num_key_value_heads": 16, "head_dim": 128, "intermediate_size": 21504, "vocab_size": 262208,
           "sliding_window": 1024, "sliding_window_pattern": 6}
    m = model_from_config(cfg)
    L = np.array([512, 1024, 100_000])
    expected = 81_920 * L + 425_984 * np.minimum(L, 1024)
    np.testing.assert_array_equal(tm.kv_cache(m, L).stored_bytes, expected)


def test_cross_layer_sharing_stores_nothing():
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100}
    plain = model_from_config(cfg)
    shared = model_from_config(cfg | {"num_kv_shared_layers": 3})
    assert tm.kv_bytes_per_token(shared, 10) == tm.kv_bytes_per_token(plain, 10) / 4
    assert tm.kv_cache(shared, 10).layers_shared == 3


def test_sparse_attention_reads_topk_plus_indexer(cat):
    """DeepSeek-V3.2 (config index_topk 2048, index_head_dim 128): each token stores its 576-element
    MLA latent plus a 128-element indexer key (FP8 per DeepSeek-V3.2-Exp report); a decode step
    reads min(L, 2048) latents but every indexer key."""
    m = cat.model("deepseek-v3.2")
    L = 100_000
    kv = tm.kv_cache(m, L, "bf16")
    assert kv.stored_bytes == 61 * (576 * 2 + 128) * L
    assert kv.read_bytes == 61 * (576 * 2 * 2048 + 128 * L)
    assert kv.read_bytes_per_token < kv.stored_bytes_per_token / 5
    short = tm.kv_cache(m, 1000)
    assert short.read_bytes == short.stored_bytes  # below top-k everything is read


def test_broadcast_and_zero_context(ds3):
    L = np.array([[0.0], [10.0]])
    kv = tm.kv_cache(ds3, L)
    assert kv.stored_bytes.shape == (2, 1) and kv.stored_bytes[0, 0] == 0
    assert np.all(np.isfinite(kv.stored_bytes_per_token))
    with pytest.raises(tm.TokenmathError, match="context"):
        tm.kv_cache(ds3, -1)


def test_attention_flops_equal_weight_flops_where_lecture_claims_say():
    """lecture-claims.md L53: attention FLOPs per decoded token equal the weight FLOPs 2·N_active
    at L_eq = 2·N_a/(4·layers·heads·d_head) ≈ 31k (Llama-3.1-8B), 54k (70B), 98k (405B), 14k
    (Qwen3-235B-A22B), and 4.4k for DeepSeek-V3's absorbed MLA. Tolerance 3 %."""
    cat = tm.load_catalog()
    for name, L_eq in [("llama-3.1-8b", 31e3), ("llama-3.1-70b", 54e3), ("llama-3.1-405b", 98e3),
                       ("qwen3-235b-a22b", 14e3), ("deepseek-v3", 4.4e3)]:
        m = cat.model(name)
        two_n = 2 * tm.param_counts(m).active
        L = two_n / tm.attention_flops_per_token(m, 1.0)  # linear in L
        assert L == pytest.approx(L_eq, rel=0.03), name
