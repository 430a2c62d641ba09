"""roofline.py: the step time, its bound, throughput, cost, MFU/MBU, and the hardware ratio."""

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath.specs import Dtypes, Efficiency


def test_hardware_ratio_matches_scaling_book(cat):
    """jax-ml/scaling-book (tpus.md / inference.md, commit 0819a7d): B_crit ≈ 240 for TPU v5e in
    bf16 (1.97e14 / 8.2e11) and ≈ 295 for H100 bf16 (989e12 / 3.35e12). Tolerance 1 %."""
    assert tm.hardware_ratio(cat.system("tpu-v5e"), "bf16") == pytest.approx(240, rel=0.01)
    assert tm.hardware_ratio(cat.system("h100-sxm"), "bf16") == pytest.approx(295, rel=0.01)


def test_step_by_hand_llama_8b_on_one_h100(cat):
    """Each term recomputed from the datasheet (NVIDIA H100 SXM: 989 TFLOP/s dense bf16,
    3.35 TB/s) and the config: 32 layers, 32 heads × 128, 8 KV heads. Tolerance 1e-9."""
    m, s = cat.model("llama-3.1-8b"), cat.system("h100-sxm")
    B, L = 8, 1024
    st = tm.step_time(m, s, B, L, chips=1)
    n_matmul = 8_030_261_248 - 128_256 * 4096  # input embedding is a lookup
    attn = 32 * 2 * 32 * (128 + 128) * L
    assert st.compute_s == pytest.approx(B * (2 * n_matmul + attn) / 989e12, rel=1e-9)
    assert st.weights_s == pytest.approx(n_matmul * 2 / 3.35e12, rel=1e-9)
    assert st.kv_s == pytest.approx(B * 131_072 * L / 3.35e12, rel=1e-9)
    assert st.step_s == pytest.approx(st.weights_s + st.kv_s, rel=1e-12)
    assert st.bound == "memory"
    assert st.tokens_per_s == pytest.approx(B / st.step_s)
    assert st.usd_per_mtok == pytest.approx(st.step_s * 1.30 / 3600 / B * 1e6)
    assert st.mbu == pytest.approx(1.0) and st.mfu == pytest.approx(st.compute_s / st.step_s)


def test_bound_switches_at_balance_batch(cat, ds3):
    s = cat.system("h800-sxm")
    bstar = tm.balance_batch(ds3, s)
    below = tm.step_time(ds3, s, bstar * (1 - 1e-6), 0, chips=8)
    above = tm.step_time(ds3, s, bstar * (1 + 1e-6), 0, chips=8)
    assert below.bound == "memory" and above.bound == "compute"
    assert above.mfu == pytest.approx(1.0, rel=1e-5)


def test_broadcast_equals_loop(cat, ds3):
    s = cat.system("gb200-nvl72")
    B = np.array([1, 10, 100, 1000, 10000])
    L = np.array([[0], [1000], [100_000]])
    sweep = tm.step_time(ds3, s, B, L)
    assert sweep.step_s.shape == (3, 5)
    for i, l in enumerate(L[:, 0]):
        for j, b in enumerate(B):
            one = tm.step_time(ds3, s, int(b), int(l))
            assert sweep.step_s[i, j] == pytest.approx(one.step_s, rel=1e-12)
            assert sweep.bound[i, j] == one.bound


def test_prefill_chunk_is_compute_bound(cat):
    m, s = cat.model("llama-3.1-70b"), cat.system("h100-sxm")
    decode = tm.step_time(m, s, 1, 4096, 1, chips=8)
    prefill = tm.step_time(m, s, 1, 4096, 4096, chips=8)
    assert decode.bound == "memory" and prefill.bound == "compute"
    assert prefill.tokens_per_s > 100 * decode.tokens_per_s


def test_expected_expert_fetch_at_batch_one(ds3, cat):
    """At B = 1 a token touches 8 of 256 experts per layer: only 8/256 of the routed bytes move."""
    s = cat.system("h800-sxm")
    pc = tm.param_counts(ds3)
    st = tm.step_time(ds3, s, 1, 0, chips=8, expert_fetch="expected", dtypes=Dtypes(weight="fp8"))
    routed = pc.routed_experts
    expected = (tm.weights_read_bytes(ds3, "fp8") - routed) + routed * 8 / 256
    assert st.weight_bytes_read == pytest.approx(expected, rel=1e-12)
    big = tm.step_time(ds3, s, 100_000, 0, chips=8, expert_fetch="expected", dtypes=Dtypes(weight="fp8"))
    assert big.weight_bytes_read == pytest.approx(tm.weights_read_bytes(ds3, "fp8"), rel=1e-9)


def test_compute_dtype_falls_back_wider(cat, ds3):
    st = tm.step_time(ds3, cat.system("h100-sxm"), 64, 0, chips=8, dtypes=Dtypes(weight="fp4"))
    assert st.assumptions.compute_class == "fp8"  # H100 has no FP4 tensor cores
    with pytest.raises(tm.TokenmathError, match="no FLOP/s for bf16"):
        tm.step_time(ds3, cat.system("rubin-nvl144"), 1, 0, dtypes=Dtypes(weight="bf16"))


def test_efficiency_scales_terms(cat, ds3):
    s = cat.system("gb200-nvl72")
    base = tm.step_time(ds3, s, 4096, 2048)
    half = tm.step_time(ds3, s, 4096, 2048, efficiency=Efficiency(flops=0.5, hbm=0.5, label="half"))
    assert half.step_s == pytest.approx(2 * base.step_s)
    assert half.mfu == pytest.approx(base.mfu / 2)
    assert "half" in half.assumptions.label and "roofline" in base.assumptions.label
    with pytest.raises(tm.TokenmathError, match="efficiency flops"):
        Efficiency(flops=1.5)


def test_chips_to_fit(cat):
    m = cat.model("llama-3.1-70b")
    # 141.1 GB of bf16 weights: more than an H100's 80 GiB (85.9 GB), less than an H200's 141 GiB
    # (151.4 GB; aiconfigurator h100_sxm.yaml and h200_sxm.yaml mem_capacity) — the bound, all of HBM
    assert tm.chips_to_fit(m, cat.system("h100-sxm"), 1, 1000) == 2
    assert tm.chips_to_fit(m, cat.system("h200-sxm"), 1, 1000) == 1
    assert tm.chips_to_fit(cat.model("llama-3.1-8b"), cat.system("b200"), 1, 1000) == 1
    # DeepSeek-V3 in FP8 (673 GB) on H100: the 8-GPU box holds 687 GB, with 1.7 GB a chip to spare —
    # in all of HBM (a serving engine's runtime and activations do not fit beside it: stepmodel.max_batch)
    assert tm.chips_to_fit(cat.model("deepseek-v3"), cat.system("h100-sxm"), 1, 1000) == 8


@pytest.mark.parametrize("kw, msg", [
    ({"batch": 0}, "batch = 0 must be >= 1"),
    ({"batch": -3}, "batch"),
    ({"context": -1}, "context"),
    ({"new_tokens": 0}, "new_tokens"),
    ({"chips": 0}, "chips"),
    ({"chips": 2.5}, "whole number"),
    ({"batch": np.nan}, "finite"),
    ({"expert_fetch": "some"}, "expert_fetch"),
])
def test_bad_inputs_are_one_sentence(cat, ds3, kw, msg):
    args = dict(batch=1, context=0) | kw
    with pytest.raises(tm.TokenmathError, match=msg):
        tm.step_time(ds3, cat.system("gb200-nvl72"), **args)


def test_no_price_gives_none_not_nan(cat, ds3):
    st = tm.step_time(ds3, cat.system("tpu-v7"), 64, 1000, chips=64)
    assert st.usd_per_mtok is None
    st = tm.step_time(ds3, cat.system("tpu-v7"), 64, 1000, chips=64, usd_per_chip_hour=2.0)
    assert st.usd_per_mtok > 0


def test_expected_expert_fetch_counts_every_token_of_the_pass_against_sampling():
    """expert_fetch="expected" streams the experts a pass of B·S tokens is expected to touch:
    against 2,000 sampled uniform routings (each token picks k distinct of E experts) of
    B = 4 sequences × S = 8 new tokens, DeepSeek-V3's 256 experts top-8, the fetched routed
    bytes agree within 3 % — a pass of several new tokens per sequence touches more experts than
    one token per sequence (the B·S exponent, not B)."""
    import numpy as np

    m, s = tm.get_model("deepseek-v3"), tm.get_system("h200-sxm")
    E, k, T = m.moe.n_experts, m.moe.k, 4 * 8
    rng = np.random.default_rng(1)
    touched = np.mean([len(np.unique(np.argsort(rng.random((T, E)), axis=1)[:, :k])) for _ in range(2000)])
    a = tm.step_time(m, s, 4, 1000, 8, chips=8, expert_fetch="expected")
    full = tm.step_time(m, s, 4, 1000, 8, chips=8, expert_fetch="all")
    from tokenmath.params import routed_expert_bytes

    routed = routed_expert_bytes(m)
    fetched_routed = a.weight_bytes_read - (full.weight_bytes_read - routed)
    assert fetched_routed / routed == pytest.approx(touched / E, rel=0.03)
    one = tm.step_time(m, s, 4, 1000, 1, chips=8, expert_fetch="expected")
    assert a.weight_bytes_read > one.weight_bytes_read


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["deepseek-v3", "deepseek-v3.2", "qwen3-235b-a22b", "gpt-oss-120b", "mixtral-8x7b"]),
       sysname=st.sampled_from(["h200-sxm", "b300", "gb200-nvl72", "mi355x"]),
       batch=st.floats(1, 4096), new=st.sampled_from([1.0, 2.0, 8.0, 512.0]), mode=st.sampled_from(["all", "expected"]))
def test_latency_floor_is_a_floor_in_every_expert_fetch_mode(name, sysname, batch, new, mode):
    """Issue 12: the latency floor of a mode is never above a step in that mode."""
    m, s = tm.get_model(name), tm.get_system(sysname)
    step = tm.step_time(m, s, batch, 1000, new, expert_fetch=mode).step_s
    assert step >= tm.latency_floor_s(m, s, expert_fetch=mode) * (1 - 1e-12)
