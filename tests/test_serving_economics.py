"""serving.py (issue 3): closed forms vs brute force, and the lecture's serving numbers."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath import serving as sv
from tokenmath.hf import model_from_config
from tokenmath.kvcache import with_sparse_attention
from tokenmath.specs import Chip, Dtypes, Model, System
from typer.testing import CliRunner

from tokenmath.cli import app

CAT = tm.load_catalog()


@st.composite
def systems(draw):
    chip = Chip(name="c", hbm_bytes=draw(st.floats(16e9, 300e9)), hbm_bytes_per_s=draw(st.floats(5e11, 2e13)),
                bf16_flops_per_s=draw(st.floats(1e14, 5e15)))
    return System(name="s", chip=chip, scaleup_chips=draw(st.sampled_from([1, 8, 72])),
                  usd_per_chip_hour=draw(st.floats(0.5, 5.0)))


@st.composite
def arch_models(draw):
    """Small random architectures: GQA with optional sliding windows and sparse attention."""
    layers = draw(st.integers(2, 12))
    heads = draw(st.sampled_from([8, 16, 32]))
    cfg = {"model_type": "llama", "hidden_size": draw(st.sampled_from([1024, 2048, 4096])), "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": draw(st.sampled_from([1, 2, 8])),
           "intermediate_size": draw(st.sampled_from([4096, 8192, 14336])), "vocab_size": 32000}
    if draw(st.booleans()):
        cfg["layer_types"] = [draw(st.sampled_from(["sliding_attention", "full_attention"])) for _ in range(layers)]
        cfg["sliding_window"] = draw(st.sampled_from([128, 1024, 4096]))
    m = model_from_config(cfg)
    if draw(st.booleans()):
        m = with_sparse_attention(m, draw(st.sampled_from([256, 2048])), mode=draw(st.sampled_from(["topk", "sqrt"])),
                                  index_head_dim=draw(st.sampled_from([0, 64])))
    return m


GRID_L = np.unique(np.concatenate([np.geomspace(1, 1e9, 40001), [128, 256, 1024, 2048, 4096]]))


def grid_root(diff):
    """First grid context where the sign changes (the brute-force reference)."""
    neg = np.nonzero(diff <= 0)[0]
    return None if len(neg) == 0 else GRID_L[neg[0]]


@settings(max_examples=60, deadline=None)
@given(arch_models(), systems(), st.one_of(st.none(), st.floats(1, 1e5)))
def test_balance_context_matches_grid(m, s, batch):
    """L* from the piecewise-exact solver = the first sign change on a 40k-point log grid
    (grid spacing 0.05 % is the tolerance, 0.2 % allowed)."""
    p = tm.slopes(m, s, GRID_L, chips=1)
    if batch is None:
        diff = p.compute_s_per_seq - p.kv_s_per_seq
    else:
        diff = batch * p.compute_s_per_seq - p.weights_s - batch * p.kv_s_per_seq
    ref = grid_root(np.asarray(diff))
    got = sv.balance_context(m, s, batch, chips=1)
    if ref is None:
        assert got is None or got > GRID_L[-1] * 0.99
    elif ref == GRID_L[0]:
        assert got is not None and got <= GRID_L[0] * 1.001
    else:
        assert got == pytest.approx(ref, rel=2e-3)


@settings(max_examples=80, deadline=None)
@given(arch_models(), systems(), st.floats(1, 5e4), st.floats(0, 2e5), st.floats(0.01, 100))
def test_fastmode_inversions_match_grid(m, s, ref_batch, context, factor):
    """batch_for_step and batch_for_cost invert T(B) and T(B)/B exactly: evaluating the step at
    the returned batch gives back the target (rel 1e-9)."""
    p = tm.slopes(m, s, context, chips=1)
    T_ref = float(np.maximum(ref_batch * p.compute_s_per_seq, p.weights_s + ref_batch * p.kv_s_per_seq))
    def T(b):  # the step, from the same slopes, valid for fractional batches too
        return float(np.maximum(b * p.compute_s_per_seq, p.weights_s + b * p.kv_s_per_seq))

    b = sv.batch_for_step(p, T_ref / factor)
    if b is not None:
        assert T(b) == pytest.approx(T_ref / factor, rel=1e-9)
        if b >= 1:
            assert tm.step_time(m, s, b, context, chips=1).step_s == pytest.approx(T_ref / factor, rel=1e-9)
    else:
        assert T_ref / factor < p.weights_s
    target = T_ref / ref_batch * factor
    b = sv.batch_for_cost(p, target)
    if b is not None:
        assert T(b) / b == pytest.approx(target, rel=1e-9)
    else:
        assert target <= max(float(p.compute_s_per_seq), float(p.kv_s_per_seq)) * (1 + 1e-12)


def test_balance_context_is_lecture_formula_for_totals_models():
    """L46 (1:34): with weights at batch B, L* = [2·N_a·BW/FLOPs − N_total·b_w/B] / kv; with the
    weights amortised, L* = 2·N_a·BW/(FLOPs·kv). Exact for a totals-only model (1e-9)."""
    m = tm.Model(name="m", total_params_given=700e9, active_params_given=37e9, kv_bytes_per_token_given=70272,
                 weight_dtype="fp8", base_dtype="fp8")
    s = CAT.system("h800-sxm")
    F, BW = 1979e12, 3.35e12
    assert sv.balance_context(m, s, None, chips=8) == pytest.approx(2 * 37e9 * BW / (F * 70272), rel=1e-9)
    B = 20_000
    expect = (2 * 37e9 * BW / F - 700e9 * 1 / B) / 70272
    assert sv.balance_context(m, s, B, chips=1) == pytest.approx(expect, rel=1e-9)


def test_L11_deepseek_crossover_on_h800():
    """lecture-claims quick reference: DeepSeek-V3 on H800, FP8, BF16 MLA KV: L* = 2·37e9·3.35e12 /
    (1979e12·70,272) ≈ 1,783 (attention FLOPs dropped; ours uses N_matmul = 36.6e9, 1 % lower).
    With MLA's absorbed attention FLOPs counted, L* moves out to ≈ 2,600. Tolerance 2 %."""
    ds3, h800 = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    dt = Dtypes(weight="fp8")
    assert sv.balance_context(ds3, h800, None, dtypes=dt, attention_flops=False) == pytest.approx(1783, rel=0.02)
    assert sv.balance_context(ds3, h800, None, dtypes=dt) > 2400


def test_sparse_attention_moves_the_balance_context_out():
    """L55: sparse attention reads top-k (or √L) tokens instead of L. With a fixed top-k the KV
    read stops growing, and so does the attended compute: past the top-k, compute wins at every
    context (no crossover). With the lecture's √L sketch (reads √(k·L)) the crossover in tokens
    *read* is unchanged, so it moves from L* to L*²/k — exactly."""
    ds3, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    dense = sv.balance_context(ds3, s, None)
    topk = sv.balance_context(with_sparse_attention(ds3, 2048), s, None)
    sqrt = sv.balance_context(with_sparse_attention(ds3, 2048, mode="sqrt"), s, None)
    assert dense < 3000
    assert topk is None  # beyond 2,048 tokens the read stops growing: compute always wins
    assert sqrt == pytest.approx(dense**2 / 2048, rel=1e-6)
    # DeepSeek-V3.2's DSA still reads every token's FP8 indexer key (128 B per layer) and its
    # indexer FLOPs grow ~5× slower than that read on a GB200: the crossover only moves to ~5k.
    v32 = CAT.model("deepseek-v3.2")
    v32_l = sv.balance_context(v32, s, None)
    assert dense < v32_l < 2.5 * dense
    no_indexer = with_sparse_attention(ds3, 2048, index_head_dim=0)
    assert sv.balance_context(no_indexer, s, None) is None


def test_L56_fast_mode_six_times_price_for_two_and_a_half_speed():
    """L56 (01:02): 6× price for 2.5× speed, by shrinking the batch on the same chips. Purely memory
    bound, that pins the normal step at 2.8 × the weight-fetch time W and the fast batch at 1/15 of
    the normal one; fast mode then sits at 1.12·W, so even 100× the price buys ≤ 1.12× more."""
    m = tm.Model(name="mem-bound", total_params_given=1e12, active_params_given=1e9, kv_bytes_per_token_given=1e5,
                 weight_dtype="fp8", base_dtype="fp8")
    s = CAT.system("gb200-nvl72")
    p = tm.slopes(m, s, 10_000)
    ref = 1.8 * p.weights_s / p.kv_s_per_seq  # B·k = 1.8·W  <=>  T_ref = 2.8·W
    fm = sv.fast_mode(m, s, 10_000, speedup=2.5, reference=ref)
    assert fm.price_multiplier == pytest.approx(6.0, rel=1e-9)
    assert fm.batch == pytest.approx(ref / 15, rel=1e-9)
    assert fm.reference_step_s == pytest.approx(2.8 * p.weights_s, rel=1e-6)
    rich = sv.fast_mode(m, s, 10_000, price_multiplier=100, reference=ref)
    assert rich.speedup / fm.speedup < 1.13
    assert fm.max_speedup == pytest.approx(2.8, rel=0.01)


def test_fast_mode_lever_more_chips():
    """1:17: a bigger scale-up domain lowers the latency floor (bandwidths add); more batch cannot."""
    ds3, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    fm = sv.fast_mode(ds3, s, 4096)
    chips, speed = zip(*fm.chips_lever)
    assert chips[-1] == 72 and list(speed) == sorted(speed)
    assert sv.latency_floor_s(ds3, s, chips=8) == pytest.approx(9 * sv.latency_floor_s(ds3, s, chips=72))
    assert fm.max_saving >= 1.0 and fm.max_speedup > 1.0


def test_moe_fast_mode_bound_reads_the_experts_a_batch_touches():
    """A bound is below what an engine achieves. The lecture's floor streams every expert, which
    for DeepSeek-V3 on 8 × H200 (FP8, 671 GB over 8 × 4.8 TB/s = 17.5 ms) is above the estimate's
    batch-1 step; at batch 1 a token reads the dense weights and 8 of 256 experts a layer. The
    roofline fast mode of a MoE model therefore uses the expected-experts step: its floor is
    latency_floor_s(expert_fetch="expected"), below the estimate at every chip count, and its
    bisection inverts the same curve (rel 1e-6). The lecture's figure is kept beside it."""
    ds3, s = CAT.model("deepseek-v3"), CAT.system("h200-sxm")
    fm = sv.fast_mode(ds3, s, 4096, speedup=1.5)
    assert fm.expert_fetch == "expected"
    assert fm.latency_floor_s == pytest.approx(sv.latency_floor_s(ds3, s, chips=8, expert_fetch="expected"))
    assert fm.latency_floor_every_expert_s == pytest.approx(sv.latency_floor_s(ds3, s, chips=8))
    assert fm.latency_floor_every_expert_s == pytest.approx(671e9 / (8 * 4.8e12), rel=0.03)
    est = sv.estimated_fast_mode(ds3, s, 4096, profile=calibrated(s))
    assert fm.latency_floor_s < est.latency_floor_s  # the bound below the estimate at batch 1
    t = tm.step_time(ds3, s, fm.batch, 4096, chips=8, expert_fetch="expected").step_s
    assert fm.reference_step_s / t == pytest.approx(1.5, rel=1e-6)
    rich = sv.fast_mode(ds3, s, 4096, price_multiplier=3.0)
    t = tm.step_time(ds3, s, rich.batch, 4096, chips=8, expert_fetch="expected").step_s
    assert (t / rich.batch) / (rich.reference_step_s / rich.reference_batch) == pytest.approx(3.0, rel=1e-6)
    assert fm.max_speedup > fm.max_speedup_every_expert
    dense = sv.fast_mode(CAT.model("llama-3.1-70b"), CAT.system("h100-sxm"), 4096)
    assert dense.expert_fetch == "all" and dense.max_speedup_every_expert is None


def test_speculative_decoding_expected_tokens():
    """Leviathan et al. 2023 (arXiv 2211.17192), eq. 1: E[tokens] = (1 − a^(k+1)) / (1 − a)."""
    assert sv.expected_tokens_per_verify(4, 0.8) == pytest.approx((1 - 0.8**5) / 0.2, rel=1e-12)
    assert sv.expected_tokens_per_verify(3, 1.0) == 4
    assert sv.expected_tokens_per_verify(0, 0.5) == 1
    with pytest.raises(tm.TokenmathError):
        sv.expected_tokens_per_verify(2, 1.5)


def test_deepseek_mtp_speedup_when_memory_bound():
    """DeepSeek (arXiv 2505.09343 via misc.jsonl): MTP with one drafted token accepted 80–90 % of the
    time gives ~1.8× generation speed. Memory-bound, the two-token verify pass costs what a one-token
    step does, so speed-up = E[tokens] = 1 + a. Tolerance 5 %."""
    ds3, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    spec = sv.speculative_decode(ds3, s, 64, 4096, 1, 0.85, chips=16)
    assert spec.speedup == pytest.approx(1.8, rel=0.05)
    assert spec.price_multiplier == pytest.approx(1 / spec.speedup, rel=0.01)
    draft = sv.speculative_decode(ds3, s, 64, 4096, 3, 0.7, draft_model=CAT.model("llama-3.1-8b"), chips=16)
    assert draft.draft_s > 0 and draft.step_s > draft.verify_step_s


def test_L18_cadence_128k_tokens_per_s_and_global_share():
    """L18 (26:24): a batch of 2,000 departing 64 times a second is 128,000 tokens/s (a 15.6 ms
    step). L19 (27:19): against Google's reported 480T tokens/month (May 2025, press via
    docs/lecture-claims.md L19: 480e12 / (30.4 days · 86,400 s) = 182.7M tokens/s) one such replica
    is ~1/1,400 — the lecture's "1/1000" order. Checked through `traffic` itself: a totals-only
    model whose weight fetch on one chip takes exactly 1/64 s (memory bound, no KV), at batch 2,000,
    needs ⌈182.7M / 128k⌉ = 1,428 replicas (derived here by hand; exact)."""
    assert sv.cadence_tokens_per_s(2000, 1 / 64) == pytest.approx(128_000, rel=1e-12)
    assert sv.cadence_tokens_per_s(2000, 0.0156) == pytest.approx(128_000, rel=0.002)
    chip = Chip(name="c", hbm_bytes=1e12, hbm_bytes_per_s=1e12, bf16_flops_per_s=1e18)
    s = System(name="s", chip=chip, scaleup_chips=1, usd_per_chip_hour=2.0)
    m = Model(name="m", total_params_given=1e12 / 64 / 2, active_params_given=1e9, kv_bytes_per_token_given=1e-9,
              weight_dtype="bf16", base_dtype="bf16")  # 2 B/weight: 1e12/64 bytes read per step at 1e12 B/s
    demand = 480e12 / (30.4 * 86400)
    t = sv.traffic(m, s, demand, batch=2000, context=1, chips=1)
    assert t.step_s == pytest.approx(1 / 64, rel=1e-9)
    assert t.tokens_per_s_per_replica == pytest.approx(128_000, rel=1e-9)
    assert t.replicas == 1428
    assert t.usd_per_day == pytest.approx(1428 * 2.0 * 24)


def test_traffic_replicas_and_queueing_bounds():
    """L14 (22:12): a train departs every T; worst wait T, worst latency 2·T, mean wait T/2."""
    ds3, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    t = sv.traffic(ds3, s, 183e6, batch=2048, context=4096)
    assert t.replicas * t.tokens_per_s_per_replica >= 183e6
    assert (t.replicas - 1) * t.tokens_per_s_per_replica < 183e6
    assert t.chips == 72 * t.replicas and t.usd_per_day == pytest.approx(t.chips * 3.30 * 24)
    assert t.max_queue_wait_s == t.step_s and t.max_latency_s == 2 * t.step_s and t.mean_queue_wait_s == t.step_s / 2
    assert t.tokens_per_s_per_replica == pytest.approx(2048 / t.step_s)


def test_prefill_compute_bound_decode_memory_bound():
    """Q06 (1:45): prefill is compute bound, decode memory bound; per-token decode costs several
    times prefill, falling toward ~1× as the batch grows (L50: price sheets charge ~5×)."""
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    small = sv.prefill_vs_decode(m, s, 8192, batch=16, context=4096, chips=8)
    big = sv.prefill_vs_decode(m, s, 8192, batch=256, context=4096, chips=8)
    assert small.prefill.bound == "compute" and small.decode.bound == "memory"
    assert small.output_input_cost_ratio > 5 > big.output_input_cost_ratio > 1
    assert small.ttft_s == pytest.approx(small.prefill.step_s)
    assert small.ttft_at_load_s > small.ttft_s
    b5 = sv.batch_for_cost_ratio(m, s, 5.0, context=4096, prompt_tokens=8192, chips=8)
    at5 = sv.prefill_vs_decode(m, s, 8192, batch=b5, context=4096, chips=8)
    assert at5.output_input_cost_ratio == pytest.approx(5.0, rel=1e-9)
    by_s = small.by_pass_length
    per_token = by_s.step_s / by_s.new_tokens
    assert np.all(np.diff(per_token) <= 1e-15)  # cost per token never rises with pass length


def test_balance_record_for_deepseek_gb200_fp4():
    """L09 on the lecture's hardware: DeepSeek-V3 on GB200 in FP4. Lecture: 300 × 8 = 2,400; with
    the real sparsity 17.9 and GB200's ratio 313 (lecture-claims L07) B* ≈ 5,600–5,700. 2 %."""
    b = sv.balance(CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"), 4096, dtypes=Dtypes(weight="fp4"))
    assert b.expert_ratio == 32 and b.sparsity == pytest.approx(17.87, abs=0.01)
    assert b.balance_batch == pytest.approx(313 * 18.1, rel=0.02)
    assert b.hardware_ratio == pytest.approx(312.5)
    assert b.flops_per_byte == pytest.approx(10e15 / 8e12)


def test_curve_over_batch_and_context():
    ds3, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    cb = sv.curve(ds3, s, over="batch", context=4096, points=50)
    assert cb.batch[0] == 1 and np.all(np.diff(cb.step_s) >= 0)
    assert np.all(np.diff(cb.usd_per_mtok) <= 1e-15)  # cost per token never rises with batch
    cc = sv.curve(ds3, s, over="context", batch=1000, points=50)
    assert np.all(np.diff(cc.step_s) >= 0) and cc.context[-1] >= 1e6
    with pytest.raises(tm.TokenmathError, match="over"):
        sv.curve(ds3, s, over="chips")


def test_errors_are_sentences():
    ds3, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    with pytest.raises(tm.TokenmathError, match="not both"):
        sv.fast_mode(ds3, s, speedup=2, price_multiplier=3)
    with pytest.raises(tm.TokenmathError, match="does not fit"):
        sv.fast_mode(ds3, s, 4096, chips=1)
    with pytest.raises(tm.TokenmathError, match="positive"):
        sv.traffic(ds3, s, -5)
    with pytest.raises(tm.TokenmathError, match="topk"):
        with_sparse_attention(ds3, 0)


def test_slow_mode_beyond_hbm_is_refused_with_the_reachable_range():
    """Issue 12: `fastmode --speedup 0.5` returned a batch above what fits in HBM, unflagged."""
    m, s = tm.get_model("deepseek-v3"), tm.get_system("gb200-nvl72")
    with pytest.raises(tm.TokenmathError, match="fit in"):
        sv.fast_mode(m, s, 4096, speedup=0.5)
    # the cost-optimal reference already fills HBM here; from a smaller reference a slow mode fits
    ok = sv.fast_mode(m, s, 4096, speedup=0.5, reference=1000)
    assert 1000 < ok.batch <= sv.batch_to_fill_hbm(m, s, 4096)


# --------------------------------------------------------------------------------------------
# Issue 21: the estimate is the answer in balance / fastmode / traffic / prefill / report, the
# roofline bound beside it; one definition of "HBM full"; L29 and L51 as one figure each
# --------------------------------------------------------------------------------------------

from conftest import cli_json  # noqa: E402
from tokenmath import profiles as pf  # noqa: E402
from tokenmath.estimate import default_layout, estimate_pass  # noqa: E402
from tokenmath.layout import Layout, layout_memory  # noqa: E402

DS3, GB200 = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
DS = ["--model", "deepseek-v3", "--system", "gb200-nvl72"]


def calibrated(system):
    return pf.choose("calibrated", system=system)


def test_issue21_traffic_answers_with_the_estimate_and_shows_the_bound():
    """Issue 21 reproducer: `traffic --model deepseek-v3 --system gb200-nvl72 --tokens-per-s 183M`
    said 6,984 chips (26,444 tokens/s per chip, the roofline) while the calibrated estimate gives
    ~3.8× fewer tokens per chip. Now the answer is the estimate — at a batch its own layout holds —
    and the bound sits under `roofline`. Invariant: the answer's figures are estimate_pass's at its
    batch; the bound's are step_time's at the roofline's HBM-full batch (exact)."""
    rec = cli_json("traffic", *DS, "--tokens-per-s", "183M")
    roof = rec["roofline"]
    assert rec["estimate"].startswith("calibrated") and roof["estimate"] == "roofline"
    assert roof["chips"] == 6984 and roof["tokens_per_s_per_chip"] == pytest.approx(26_444, rel=1e-4)
    lay = default_layout(DS3, GB200, 72)
    assert rec["batch"] <= sv.batch_to_fill_hbm(DS3, GB200, 4096, layout=lay)  # no overflowing layout
    e = estimate_pass(DS3, GB200, rec["batch"], 4096, 1.0, layout=lay, profile=calibrated(GB200))
    assert rec["tokens_per_s_per_chip"] == pytest.approx(float(e.tokens_per_s_per_chip), rel=1e-9)
    assert rec["chips"] == 72 * math.ceil(183e6 / float(e.tokens_per_s) * (1 - 1e-12))
    assert rec["chips"] > 3 * roof["chips"]  # the issue's 3.8× fewer tokens per chip
    lo, hi = rec["chips_range_80"]
    assert lo <= rec["chips"] <= hi
    bound = cli_json("traffic", *DS, "--tokens-per-s", "183M", "--efficiency", "roofline")
    assert bound["estimate"] == "roofline" and bound["chips"] == 6984 and bound["roofline"]["chips"] == 6984


def test_invariant_traffic_refuses_a_batch_that_does_not_fit():
    """A --batch above what HBM holds was answered as if it fit; now one sentence, exit 2."""
    fill = sv.batch_to_fill_hbm(DS3, GB200, 4096, chips=72)
    with pytest.raises(tm.TokenmathError, match="does not fit in HBM"):
        sv.traffic(DS3, GB200, 1e6, batch=fill + 1, context=4096)
    lay = default_layout(DS3, GB200, 72)
    est_fill = sv.batch_to_fill_hbm(DS3, GB200, 4096, layout=lay)
    with pytest.raises(tm.TokenmathError, match="estimate's layout"):
        sv.traffic(DS3, GB200, 1e6, batch=est_fill + 1, context=4096, profile=calibrated(GB200))


def test_invariant_estimated_balance_matches_brute_force():
    """The estimate's counterparts against brute force over every whole batch that fits (one
    broadcast call of 36k points): the lowest estimated cost per token and its batch, and the knee
    — the smallest batch within 5 % of that lowest cost — exactly; the estimated balance context
    is where attention time equals the weight GEMMs' (rel 1e-3); the latency floor counterpart is
    the estimated batch-1 step, above its own bound."""
    prof = calibrated(GB200)
    eb = sv.estimated_balance(DS3, GB200, 4096, profile=prof)
    B = np.arange(1.0, eb.batch_to_fill_hbm + 1)
    e = estimate_pass(DS3, GB200, B, 4096, 1.0, layout=eb.layout, profile=prof)
    cost = np.asarray(e.step_s) / B
    i = int(np.argmin(cost))
    assert eb.lowest_cost_batch == B[i]
    knee = B[np.argmax(cost <= 1.05 * cost[i])]
    assert eb.knee_batch == knee and eb.knee_tolerance == 0.05
    assert eb.lowest_usd_per_mtok == pytest.approx(float(np.asarray(e.usd_per_mtok)[i]), rel=1e-9)
    at = estimate_pass(DS3, GB200, eb.balance_context_batch, eb.balance_context, 1.0, layout=eb.layout, profile=prof).op
    assert float(at.attention_s) == pytest.approx(float(at.dense_gemm_s + at.expert_gemm_s), rel=1e-3)
    one = estimate_pass(DS3, GB200, 1.0, 4096, 1.0, layout=eb.layout, profile=prof)
    assert eb.latency_floor_s == pytest.approx(float(one.step_s)) and eb.latency_floor_s > eb.latency_floor_bound_s
    assert eb.latency_floor_bound_s >= sv.latency_floor_s(DS3, GB200)  # the layout's bound ≥ the pooled floor


def test_balance_cli_labels_roofline_quantities_and_gives_estimate_counterparts():
    """`balance` JSON: the lecture's quantities as the roofline defines them (top level and under
    `roofline`), `estimate` the label, `estimated` the counterparts; with --efficiency roofline
    `estimated` is null. The text says which line is which."""
    rec = cli_json("balance", *DS, "--context", "4096")
    assert rec["estimate"].startswith("calibrated") and rec["roofline"]["balance_batch"] == rec["balance_batch"]
    est = rec["estimated"]
    assert {"knee_batch", "lowest_cost_batch", "lowest_usd_per_mtok", "latency_floor_s", "balance_context",
            "batch_to_fill_hbm", "layout", "method"} <= set(est)
    assert est["latency_floor_s"] > rec["latency_floor_s"] and est["lowest_usd_per_mtok"] > rec["cost_floor_usd_per_mtok"]
    bound = cli_json("balance", *DS, "--efficiency", "roofline")
    assert bound["estimate"] == "roofline" and bound["estimated"] is None
    res = CliRunner().invoke(app, ["balance", *DS])
    for phrase in ("roofline B*", "estimate: cost per token stops falling", "roofline L*", "estimate: the step at batch 1",
                   "estimate: the lowest among batches that fit"):
        assert phrase in res.stdout, phrase


def test_invariant_estimated_fast_mode_inverts_its_curve():
    """fastmode on the estimate: the batch returned for a speed-up or a price multiplier gives back
    that target on the estimated curve (rel 1e-6); batch 1 is the most a batch cut buys; the
    reference is the estimate's cost-optimal batch, so a slow mode saves nothing more (max_saving 1)."""
    prof = calibrated(GB200)
    f = sv.estimated_fast_mode(DS3, GB200, 4096, speedup=2.5, profile=prof)
    T = lambda b: float(estimate_pass(DS3, GB200, b, 4096, 1.0, layout=f.layout, profile=prof).step_s)  # noqa: E731
    assert f.reference_batch == sv.estimated_cost_optimal_batch(DS3, GB200, 4096, layout=f.layout, profile=prof)
    assert T(f.batch) == pytest.approx(f.reference_step_s / 2.5, rel=1e-6) and f.speedup == pytest.approx(2.5, rel=1e-6)
    assert f.max_speedup == pytest.approx(f.reference_step_s / T(1.0), rel=1e-9) and f.max_saving == pytest.approx(1.0)
    p = sv.estimated_fast_mode(DS3, GB200, 4096, price_multiplier=3, profile=prof)
    assert (T(p.batch) / p.batch) / (f.reference_step_s / f.reference_batch) == pytest.approx(3, rel=1e-6)
    assert np.all(np.diff(f.frontier_speedup) <= 1e-12)  # speed falls as the batch grows back to the reference
    assert sv.estimated_fast_mode(DS3, GB200, 4096, speedup=f.max_speedup * 1.01, profile=prof).batch is None


def test_fastmode_cli_answers_with_the_estimate():
    """Issue 21: `fastmode` was roofline-only. The answer is the estimate's; the bound's figures are
    under `roofline`; an unreachable target names the estimate's reach and the bound's."""
    rec = cli_json("fastmode", *DS, "--speedup", "2.5")
    assert rec["estimate"].startswith("calibrated") and rec["roofline"]["speedup"] == pytest.approx(2.5)
    assert rec["speedup"] == pytest.approx(2.5, rel=1e-6) and rec["batch"] < rec["reference_batch"]
    assert rec["max_speedup"] < rec["roofline"]["max_speedup"]  # the bound promises more than the estimate
    res = CliRunner().invoke(app, ["fastmode", *DS, "--speedup", "15"])
    assert res.exit_code == 2 and "the estimate" in res.stderr and "roofline bound allows" in res.stderr


def test_deepseek_mtp_speedup_on_the_estimate():
    """DeepSeek-V3 technical report (arXiv 2412.19437, §5.4.3) and DeepSeek's ISCA'25 paper (arXiv
    2505.09343, via shared/reference/misc.jsonl): MTP's second token is accepted 80–90 % of the time,
    giving ~1.8× the generation speed. The estimate's verify pass (the
    composition in serving.speculative_decode) at batch 64 on 16 × H800 must land between 10 %
    below that report and the E[tokens] = 1.85 ceiling at 85 % acceptance (the report gives no batch
    or context, hence the band)."""
    h800 = CAT.system("h800-sxm")
    spec = sv.speculative_decode(DS3, h800, 64, 4096, 1, 0.85, chips=16, profile=calibrated(h800))
    assert spec.estimate.startswith("calibrated")
    assert 0.9 * 1.8 <= spec.speedup <= 1.85
    assert spec.verify_step_s > spec.plain_step_s and spec.price_multiplier == pytest.approx(1 / spec.speedup, rel=1e-9)


def test_invariant_estimated_prefill_is_estimate_pass():
    """prefill on the estimate: TTFT is estimate_pass(1, 0, P); the cost ratio is decode's s/token
    over prefill's; by pass length the time per token falls from decode to prefill."""
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    prof, dt = calibrated(s), Dtypes(weight="fp8", kv="fp8")
    e = sv.estimated_prefill_vs_decode(m, s, 8192, batch=64, context=4096, chips=8, dtypes=dt, profile=prof)
    lay = default_layout(m, s, 8)
    pre = estimate_pass(m, s, 1.0, 0.0, 8192.0, layout=lay, dtypes=dt, profile=prof)
    dec = estimate_pass(m, s, 64.0, 4096, 1.0, layout=lay, dtypes=dt, profile=prof)
    assert e.ttft_s == pytest.approx(float(pre.step_s)) and e.ttft_at_load_s > float(dec.step_s)
    assert e.output_input_cost_ratio == pytest.approx((float(dec.step_s) / 64) / (float(pre.step_s) / 8192))
    assert e.by_pass_length_s_per_token[0] > 10 * e.by_pass_length_s_per_token[-1]
    rec = cli_json("prefill", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64",
                   "--weight-dtype", "fp8", "--kv-dtype", "fp8")
    assert rec["ttft_s"] == pytest.approx(e.ttft_s) and rec["roofline"]["ttft_s"] < rec["ttft_s"]


def test_invariant_estimated_prefill_cost_fills_every_attention_dp_rank():
    """On an attention-DP layout (DeepSeek-V3 on 8 × H200: TP1 EP8, eight attention ranks) a lone
    prompt runs on one rank, so its TTFT is estimate_pass(1, 0, P); prefill's cost per token is
    that of a pass with one prompt per rank, which keeps every chip working and costs less per
    token than the lone prompt (whose idle ranks it would otherwise bill)."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h200-sxm")
    prof = calibrated(s)
    e = sv.estimated_prefill_vs_decode(m, s, 4096, context=4096, profile=prof)
    assert e.layout.attention_dp == 8 and e.prefill_prompts == 8
    lone = estimate_pass(m, s, 1.0, 0.0, 4096.0, layout=e.layout, profile=prof)
    full = estimate_pass(m, s, 8.0, 0.0, 4096.0, layout=e.layout, profile=prof)
    assert e.ttft_s == pytest.approx(float(lone.step_s)) and e.prefill_pass_s == pytest.approx(float(full.step_s))
    assert e.prefill_usd_per_mtok == pytest.approx(float(full.usd_per_mtok))
    assert e.prefill_usd_per_mtok < float(lone.usd_per_mtok)
    assert e.output_input_cost_ratio == pytest.approx((e.decode_step_s / e.decode_batch) / (e.prefill_pass_s / (8 * 4096)))
    rec = cli_json("prefill", "--model", "deepseek-v3", "--system", "h200-sxm", "--prompt-tokens", "4096")
    assert rec["prefill"]["cost_prompts"] == 8 and rec["prefill_usd_per_mtok"] == pytest.approx(e.prefill_usd_per_mtok)
    assert rec["by_pass_length"][-1]["s_per_token"] == pytest.approx(e.by_pass_length_s_per_token[-1])


# ---- one definition of "HBM full" ---------------------------------------------------------------


def test_batch_to_fill_hbm_llama_70b_on_8_h100_from_config_and_datasheet():
    """Independent arithmetic. Llama-3.1-70B config.json (meta-llama/Llama-3.1-70B, Hugging Face):
    hidden 8192, 80 layers, 64 heads, 8 KV heads, head_dim 128, intermediate 28,672, vocab 128,256,
    untied embeddings. Parameters: per layer q,o 2·8192² + k,v 2·8192·1024 + MLP 3·8192·28,672 +
    norms 2·8192 = 855,654,400; × 80 + embeddings and lm_head 2·128,256·8192 + final norm 8192 =
    70,553,706,496 (BF16: 141.107 GB). KV per token BF16: 80·2·8·128·2 = 327,680 B. H100 SXM: 80 GiB
    of HBM3 (aiconfigurator h100_sxm.yaml mem_capacity 85,899,345,920 B; NVIDIA's datasheet writes
    "80GB"). At L = 8192 on 8 chips: ⌊(687.19e9 − 141.107e9) / (327,680·8192)⌋ = 203 (185 if the
    datasheet's 80 GB were decimal)."""
    per_layer = 2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    params = 80 * per_layer + 2 * 128256 * 8192 + 8192
    assert params == 70_553_706_496
    expect = math.floor((8 * 80 * 2**30 - 2 * params) / (80 * 2 * 8 * 128 * 2 * 8192))
    assert expect == 203
    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    assert sv.batch_to_fill_hbm(m, s, 8192, chips=8) == expect


def test_invariant_every_command_reports_the_same_hbm_full_batch():
    """Issue 21: the "does not fit in HBM" batch appeared as 45,689 / 45,816 / 48,744 / 50,179 —
    the last three were log-grid points of `curve` and the report's charts. One function
    (serving.batch_to_fill_hbm) now defines it: on the bound (chips' HBM pooled) and on the
    estimate's layout (its chips, as `layout` counts them, in what a serving engine fills). Every
    command agrees, and `curve`'s `fits` (on the estimate's layout, which its bound shares) flips
    exactly at the layout's."""
    fill = sv.batch_to_fill_hbm(DS3, GB200, 4096, chips=72)
    lay = default_layout(DS3, GB200, 72)
    est_fill = sv.batch_to_fill_hbm(DS3, GB200, 4096, layout=lay)
    assert fill == 45_689 and est_fill < fill
    bal = cli_json("balance", *DS, "--context", "4096")
    rep = cli_json("report")
    fm = cli_json("fastmode", *DS)
    tr = cli_json("traffic", *DS, "--tokens-per-s", "1M")
    assert bal["batch_to_fill_hbm"] == rep["batch_to_fill_hbm"] == fm["roofline"]["reference_batch"] == fill
    assert tr["roofline"]["batch_to_fill_hbm"] == fill
    assert bal["estimated"]["batch_to_fill_hbm"] == rep["estimated"]["batch_to_fill_hbm"] == est_fill
    assert fm["batch_to_fill_hbm"] == tr["batch_to_fill_hbm"] == est_fill
    for points in (60, 120):  # curve runs the estimate's layout, in what a serving engine fills
        c = cli_json("curve", *DS, "--points", str(points))["points"]
        assert max(p["batch"] for p in c if p["fits"]) == est_fill and min(p["batch"] for p in c if not p["fits"]) == est_fill + 1
    # the roofline's own curve (--efficiency roofline) runs the same layout in all of HBM
    c = cli_json("curve", *DS, "--points", "60", "--efficiency", "roofline")["points"]
    assert all(p["fits"] == bool(layout_memory(DS3, GB200, lay, p["batch"], 4096).fits) for p in c)
    assert any(p["fits"] and p["batch"] > est_fill for p in c)
    # the layout path is what `layout` counts in what a serving engine fills (layout.serving_hbm_bytes):
    # full at est_fill, over at est_fill + 1
    assert layout_memory(DS3, GB200, lay, est_fill, 4096).serves and not layout_memory(DS3, GB200, lay, est_fill + 1, 4096).serves
    rec = cli_json("layout", *DS, "--chips", "64", "--tp", "1", "--ep", "64", "--batch", str(int(est_fill)),
                   "--context", "4096")
    assert rec["fits"] and rec["serves"]


@pytest.mark.parametrize("name", ["llama-3.1-70b", "qwen3-235b-a22b", "deepseek-v3", "kimi-k2"])
def test_invariant_layout_fill_is_within_the_pooled_bound(name):
    """No layout holds more sequences than the chips' pooled HBM (the bound's accounting)."""
    m = CAT.model(name)
    for system, chips in (("h100-sxm", 8), ("h200-sxm", 8), ("gb200-nvl72", 72)):
        s = CAT.system(system)
        lay = sv.estimate_layout(m, s, chips, 4096)
        if sv.batch_to_fill_hbm(m, s, 4096, chips=chips) < 1:
            continue
        assert sv.batch_to_fill_hbm(m, s, 4096, layout=lay) <= sv.batch_to_fill_hbm(m, s, 4096, chips=chips)


def test_estimate_layout_shards_the_dense_weights_when_replicas_do_not_fit():
    """Kimi-K2 (1.03 TB in FP8) on 8 × H200 (8 × 141 GiB, of which a serving engine fills 90 % less
    its runtime's 3.5 GiB + 392 MiB: 1.06 TB; layout.serving_hbm_bytes): the default expert-parallel
    layout keeps the dense weights whole on every chip and holds no sequence there; the estimate
    then runs the same EP group with attention tensor-parallel inside it (the dense weights sharded
    over TP), the first such layout that holds a sequence (estimate.replica), and says so in every
    answer."""
    from tokenmath.layout import layout_memory

    m, s = CAT.model("kimi-k2"), CAT.system("h200-sxm")
    dflt = default_layout(m, s, 8)
    assert not layout_memory(m, s, dflt, 1, 4096).serves
    lay = sv.estimate_layout(m, s, 8, 4096)
    assert lay.tp > 1 and lay.ep == dflt.ep and layout_memory(m, s, lay, 1, 4096).serves
    rec = cli_json("traffic", "--model", "kimi-k2", "--system", "h200-sxm", "--tokens-per-s", "1M")
    assert rec["estimate"].startswith("calibrated") and rec["batch"] <= sv.batch_to_fill_hbm(m, s, 4096, layout=lay)
    # where no layout of the chips given holds one sequence, balance still gives the bound and says why
    rec = cli_json("balance", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--context", "10M", "--chips", "8")
    assert rec["estimated"] is None and "does not fit" in rec["estimate_unavailable"]
    # without --chips, the replica grows until one sequence fits, as every command's does (estimate.replica_chips)
    rec = cli_json("balance", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--context", "10M")
    assert rec["estimated"] is not None and rec["chips"] > 8
    assert rec["balance_batch"] == pytest.approx(sv.balance_batch(CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")))


# ---- L29 and L51 as one figure each ------------------------------------------------------------


def test_L29_largest_model_under_a_latency_target():
    """L29 (46:52) with the floors of L03 and L36 (docs/lecture-claims.md, from datasheets): a
    decode step streams every weight once, so a latency target caps N_total at target·chips·BW/b_w.
    Inverting the recomputed floors: DeepSeek-V3's 671 GB FP8 take 17.5 ms on 8 × H200 (4.8 TB/s
    each) and 1.3 ms on 64 GB200s (8 TB/s); "1T FP8 on NVL72: 1.7 ms" (L36). Tolerance 1 %: the
    floors are quoted to 2–3 digits. N_active = N_total / sparsity (671/37 = 18.1 → 37B)."""
    h200 = CAT.system("h200-sxm")
    g = sv.largest_model_for_latency(h200, 17.5e-3, chips=8, weight_dtype="fp8", sparsity=671 / 37)
    assert g.total_params == pytest.approx(671e9, rel=0.01) and g.active_params == pytest.approx(37e9, rel=0.01)
    assert sv.largest_model_for_latency(GB200, 1.3e-3, chips=64).total_params == pytest.approx(671e9, rel=0.01)
    assert sv.largest_model_for_latency(GB200, 1.7e-3, chips=72).total_params == pytest.approx(1e12, rel=0.025)
    assert g.capacity_total_params == pytest.approx(8 * 141 * 2**30, rel=0.01)  # the HBM cap (H200: 141 GiB, aiconfigurator)
    assert sv.largest_model_for_latency(h200, 1.0, chips=8).servable_total_params == g.capacity_total_params
    prof = calibrated(GB200)
    e = sv.largest_model_for_latency(GB200, 10e-3, chips=72, reference=DS3, profile=prof, context=4096)
    one = estimate_pass(DS3, GB200, 1.0, 4096, 1.0, chips=72, profile=prof)
    # the estimate's counterpart: a model like DeepSeek-V3 at exactly its own batch-1 step is DeepSeek-V3
    back = sv.largest_model_for_latency(GB200, float(one.step_s), chips=72, reference=DS3, profile=prof, context=4096)
    assert back.estimated_total_params == pytest.approx(tm.weights_read_bytes(DS3), rel=1e-9)  # FP8: 1 B each
    assert e.estimated_total_params < e.total_params
    with pytest.raises(tm.TokenmathError, match="latency target"):
        sv.largest_model_for_latency(GB200, 0.0)


def test_L51_flops_per_kv_byte_in_decode():
    """L51 (1:52), docs/lecture-claims.md: per cached token, decode attention does 2·G/b_kv FLOPs per
    KV byte for GQA — Llama-3.1-70B (64 query heads over 8 KV heads, G = 8) in BF16: 8 FLOP/B
    against 295 for an H100 (989 TFLOP/s ÷ 3.35 TB/s, datasheet), 37× memory-heavier. DeepSeek-V3's
    MLA, absorbed as decode runs it (config: 128 heads, kv_lora_rank 512, rope 64): 2·128·(1024 + 64)
    FLOPs on (512 + 64)·2 bytes = 241.8 ≈ 242. Exact up to float rounding (1e-9); FP8 KV doubles it."""
    llama, h100 = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    k = sv.decode_flops_per_kv_byte(llama, h100, context=8192)
    assert k.flops_per_kv_byte == pytest.approx(8.0, rel=1e-9) and k.query_heads_per_kv_head == 8
    assert k.chip_flops_per_byte == pytest.approx(989e12 / 3.35e12, rel=1e-9)
    assert k.memory_heaviness == pytest.approx(295.2 / 8, rel=1e-3)
    assert sv.decode_flops_per_kv_byte(llama, h100, kv_dtype="fp8").flops_per_kv_byte == pytest.approx(16.0, rel=1e-9)
    ds = sv.decode_flops_per_kv_byte(DS3, h100)
    assert ds.flops_per_kv_byte == pytest.approx(2 * 128 * (1024 + 64) / ((512 + 64) * 2), rel=1e-9)
    assert round(ds.flops_per_kv_byte) == 242


def test_balance_cli_gives_L29_and_L51_with_units():
    """The two lecture answers as one call each: `balance --latency-target-s` (L29) and the L51 ratio."""
    rec = cli_json("balance", *DS, "--latency-target-s", "1.7ms")
    g = rec["largest_model"]
    assert g["total_params"] == pytest.approx(1.7e-3 * 72 * 8e12, rel=1e-9) and g["latency_target_s"] == 1.7e-3
    assert g["estimate"].startswith("calibrated") and 0 < g["estimated_total_params"] < g["total_params"]
    assert rec["kv_intensity"]["flops_per_kv_byte"] == pytest.approx(241.8, rel=1e-3)
    assert rec["kv_intensity"]["chip_flops_per_byte"] == pytest.approx(2.5e15 / 8e12, rel=1e-9)
    res = CliRunner().invoke(app, ["balance", *DS, "--sparsity", "10"])
    assert res.exit_code == 2 and "--latency-target-s" in res.stderr


def test_report_gives_each_lecture_quantity_on_the_bound_and_the_estimate():
    """The lecture's running example (DeepSeek-V3 on a GB200 NVL72): every floor and balance point
    on the bound, the estimate's counterpart beside it; the Assumptions name the estimate."""
    rec = cli_json("report")
    assert rec["estimate"].startswith("calibrated") and rec["roofline"]["balance_batch"] == rec["balance_batch"]
    assert {"knee_batch", "latency_floor_s", "lowest_usd_per_mtok", "balance_context"} <= set(rec["estimated"])
    assert rec["fastmode"]["estimate"] == rec["estimate"] and rec["fastmode"]["roofline"]["speedup"] == pytest.approx(2.5)
    assert rec["traffic"]["estimate"] == rec["estimate"] and rec["traffic"]["roofline"]["estimate"] == "roofline"
    assert rec["prefill"]["estimate"] == rec["estimate"] and len(rec["estimated_steps"]) == len(rec["steps"])
    res = CliRunner().invoke(app, ["report"])
    assumptions = res.stdout.split("Assumptions")[1]
    assert "estimate (calibrated" in assumptions and "roofline bound" in assumptions
    text = res.stdout.split("Floors and balance points")[1]
    assert text.count("Estimate:") >= 4
    bound = CliRunner().invoke(app, ["report", "--efficiency", "roofline"])
    assert bound.exit_code == 0 and "--efficiency roofline" in bound.stdout.split("Assumptions")[1]


FUZZ_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "1e308", "", "1", "8", "64", "4096", "32k", "1M", "1e7", "0.5", "2.5",
                     "10ms", "1e-9", "100"]),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(lambda x: f"{x:g}"),
)
FUZZ_COMMANDS = [
    (["balance", *DS], ["--context", "--batch", "--chips", "--latency-target-s", "--sparsity"]),
    (["balance", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--engine", "vllm"],
     ["--context", "--chips", "--latency-target-s"]),
    (["fastmode", *DS], ["--context", "--speedup", "--price-multiplier", "--reference-batch", "--draft-tokens",
                         "--acceptance", "--chips"]),
    (["traffic", *DS, "--tokens-per-s", "1M"], ["--tokens-per-s", "--batch", "--context", "--chips"]),
    (["prefill", "--model", "llama-3.1-70b", "--system", "h100-sxm"], ["--prompt-tokens", "--batch", "--context",
                                                                        "--chips"]),
]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_fuzz_economics_commands_answer_or_refuse_in_one_sentence(data):
    """Random and adversarial values into the estimate-answering commands and their new flags: exit 0
    or 2, one sentence on refusal, no traceback, no NaN or inf printed, bounded time (15 s)."""
    import re
    import time

    prefix, flags = data.draw(st.sampled_from(FUZZ_COMMANDS))
    args = list(prefix)
    for flag in data.draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3, unique=True)):
        args += [flag, data.draw(FUZZ_VALUES)]
    if data.draw(st.booleans()):
        args.append("--json")
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    err = res.stderr or ""
    assert res.exit_code in (0, 2), (args, res.exit_code, err, res.exception)
    assert "Traceback" not in res.stdout + err, args
    assert not re.search(r"(?<![\w.])[-+]?(?:nan|inf|infinity)(?![\w])", res.stdout, re.I), (args, res.stdout)
    if res.exit_code == 2:
        assert len(err.strip().splitlines()) == 1, (args, err)
    assert time.perf_counter() - t0 < 15, args


SGLANG_DEEPSEEK = ("github sgl-project/sglang docs/basic_usage/deepseek.md (commit f26e4af), 'Launch DeepSeek "
                   "V3.1/V3/R1 with SGLang': the recommended configuration per weight type")


@pytest.mark.parametrize("system, weight_dtype, chips", [
    ("h200-sxm", "fp8", 8), ("mi300x", "fp8", 8), ("h100-sxm", "fp8", 16), ("h800-sxm", "fp8", 16),
    ("h200-sxm", "bf16", 16), ("mi300x", "bf16", 16), ("h100-sxm", "bf16", 32), ("a100-sxm-80gb", "bf16", 32),
    ("a100-sxm-80gb", "int8", 16), ("l40s", "int8", 32),
])
def test_default_replica_of_deepseek_v3_is_the_deployment_sglang_recommends(system, weight_dtype, chips):
    """Published (SGLANG_DEEPSEEK): DeepSeek-V3/R1 in FP8 on 8 × H200, 8 × MI300X or 2 × 8 × H100/H800;
    in BF16 on 2 × 8 × H200, 2 × 8 × MI300X, 4 × 8 × H100 or 4 × 8 × A100; in INT8 on 16 × A100 or
    32 × L40S (the B200 rows are Blackwell: held out). The estimate's default replica — the fewest
    chips, by powers of two then whole domains, whose weights and one request's KV fit in what a
    serving engine fills (layout.serving_hbm_bytes: 90 % of HBM in the units the driver reports less
    the runtime's reserve) — is never larger than the recommendation, and equal to it in 9 of the 10:
    a count of chips has no tolerance. The one below it, BF16 on MI300X, holds on 8 as TP2 × EP8 —
    180.6 GB of weights a chip in the 181.4 GB an engine fills, 0.8 GB left for KV, one request —
    where SGLang recommends two nodes: the replica is the fewest chips that serve at all, a
    recommendation leaves room for a batch. With the datasheets' "80 GB" read as decimal and all of
    HBM (before this rule), FP8 on 8 × H100 would have "fit"."""
    from tokenmath.estimate import replica

    r = replica(CAT.model("deepseek-v3"), CAT.system(system), 1.0, 4096, dtypes=Dtypes(weight=weight_dtype))
    if (system, weight_dtype) == ("mi300x", "bf16"):
        assert r.chips == chips // 2
    else:
        assert r.chips == chips, SGLANG_DEEPSEEK


@pytest.mark.parametrize("command", [["fastmode", "--speedup", "2"], ["traffic", "--tokens-per-s", "1M"],
                                     ["balance"], ["prefill", "--batch", "8"]])
def test_every_serving_command_answers_on_the_replica_step_chooses(command):
    """Invariant (found in review): without --chips every serving command bills the replica the
    estimate runs on (estimate.replica_chips: weights and KV in what a serving engine fills), so
    DeepSeek-V3 in FP8 on H100 answers on 16 chips in `fastmode`, `traffic`, `balance` and
    `prefill` as in `step`, rather than refusing 8 (the bound's rule, all of HBM: 684 GB in 687)."""
    rec = cli_json(command[0], "--model", "deepseek-v3", "--system", "h100-sxm", *command[1:])
    step = cli_json("step", "--model", "deepseek-v3", "--system", "h100-sxm", "--batch", "1", "--context", "4096")
    assert step["billed_chips"] == 16 and step["layout"]["ep"] == 16
    assert rec["estimate"].startswith("calibrated") and not rec.get("estimate_unavailable")
    chips = {"traffic": lambda r: r["chips_per_replica"], "prefill": lambda r: max(r["layout"]["tp"], r["layout"]["ep"]) * r["layout"]["pp"]}
    assert chips.get(command[0], lambda r: r["chips"])(rec) == 16
