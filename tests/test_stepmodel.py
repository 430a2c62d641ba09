"""stepmodel.py (issue 11): the per-operation step model — invariants, the routing imbalance
against exact sampling, and the parts a user sees."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath.layout import Layout
from tokenmath.profiles import choose, load_kernels
from tokenmath.stepmodel import Engine, GemmCurve, expert_imbalance, op_step

CAT = tm.load_catalog()
KERNELS = load_kernels()


@pytest.mark.parametrize("tokens, k, E, ep", [(64, 8, 256, 8), (512, 8, 256, 64), (4096, 2, 8, 8), (16, 8, 128, 16)])
def test_expected_busiest_rank_matches_sampling(tokens, k, E, ep):
    """The expected maximum over EP ranks of routed token-expert pairs, under uniform routing
    (each token picks k distinct experts), against 4,000 sampled routings: within 6 %. Invariant
    of the approximation μ + z(EP)·σ against the exact distribution (no published number needed)."""
    rng = np.random.default_rng(0)
    per_rank = E // ep
    maxima = []
    for _ in range(4000 if tokens <= 512 else 400):
        picks = np.argsort(rng.random((tokens, E)), axis=1)[:, :k]
        counts = np.bincount((picks // per_rank).ravel(), minlength=ep)
        maxima.append(counts.max())
    exact = np.mean(maxima) / (tokens * k / ep)
    assert expert_imbalance(tokens, k, E, ep) == pytest.approx(exact, rel=0.06)


def test_imbalance_falls_with_batch_and_skew_keeps_it():
    r = expert_imbalance(np.array([8, 64, 512, 4096]), 8, 256, 64)
    assert np.all(np.diff(r) < 0) and r[-1] < 1.2
    assert expert_imbalance(4096, 8, 256, 64, routing_cv=0.3) > 1.3  # skewed popularity persists at any batch


def test_gemm_curve_is_never_faster_than_its_roofline():
    c = GemmCurve(0.8, 0.9, 3.0, 2e-6)
    tc, tm_ = np.geomspace(1e-7, 1e-2, 50), np.geomspace(1e-2, 1e-7, 50)
    assert np.all(c.time_s(tc, tm_) >= np.maximum(tc / 0.8, tm_ / 0.9))


CASES = [("llama-3.1-70b", "h100-sxm", Layout(tp=8)), ("deepseek-v3", "h200-sxm", Layout(ep=8)),
         ("qwen3-235b-a22b", "mi300x", Layout(ep=8)), ("gpt-oss-120b", "b200", Layout(tp=1)),
         ("llama-3.1-405b", "gb200-nvl72", Layout(tp=8, pp=2)), ("deepseek-v3", "gb200-nvl72", Layout(ep=64))]


@settings(max_examples=60, deadline=None)
@given(i=st.integers(0, len(CASES) - 1), batch=st.floats(1, 4096), context=st.floats(0, 131072),
       new=st.sampled_from([1.0, 1.0, 4.0, 2048.0]), prefill=st.floats(0, 8192))
def test_estimate_is_never_below_its_roofline_and_parts_add_up(i, batch, context, new, prefill):
    """For any pass, the estimate ≥ the roofline of the same pass (same FLOPs, bytes, link bytes),
    and on one stage without pipeline the step is the sum of the parts (or the bound)."""
    name, sysname, lay = CASES[i]
    m, s = CAT.model(name), CAT.system(sysname)
    prof = choose("calibrated", system=s)
    op = op_step(m, s, lay, batch, context, new, kernels=prof.kernels, engine=prof.engine, prefill_tokens=prefill,
                 prefill_context=context / 2, prefill_seqs=max(prefill / 2048, 1) if prefill else None)
    bound = op_step(m, s, lay, batch, context, new, kernels=None, prefill_tokens=prefill, prefill_context=context / 2,
                    prefill_seqs=max(prefill / 2048, 1) if prefill else None)
    assert np.isfinite(op.step_s) and op.step_s >= op.bound_s * (1 - 1e-12)
    assert bound.step_s == pytest.approx(op.bound_s, rel=1e-12)
    if lay.pp == 1:
        total = sum(float(v) for v in op.parts.values())
        assert op.step_s == pytest.approx(max(total, op.bound_s), rel=1e-9)


@pytest.mark.parametrize("case_id", [
    pytest.param("ix-gptoss120b-mxfp4-h100-vllm-tp8-1k1k-c4-tpot", marks=pytest.mark.xfail(strict=True, reason=(
        "issue 22, left: with the weight-only MoE layer's floor split by path (56 µs tensor-parallel, +33 µs "
        "on the expert-parallel path, GemmFamily.t0ep_s; kernels.md) and the preset refitted, gpt-oss-120b's "
        "TP8 batch-4 step is 4.63 ms against the measured 3.71 ms (+25 %; 4.60 ms before decode attention's "
        "grouped-query curve and its refit), its TP-path floor 56 µs × the "
        "generic floor scale 1.12 against vLLM's 39 µs at that shape; before the split, 4.88 ms "
        "(+32 %; +31 % before HBM was counted in GiB, +26 % with the least-squares "
        "kernel curves, +30 % while its BF16 attention projections were charged as MXFP4 weight-only "
        "kernels): its MXFP4 MoE layer takes the w4a16 family's 82 µs floor × the generic floor scale "
        "1.06, a family pooled over TRT-LLM, vLLM and SGLang 4-bit tables whose form adds the floor to the "
        "expert read; vLLM's own OpenAI-Triton MXFP4 op takes 67-69 µs at 1-2 tokens (kernels.md)"))),
    "ix-dsr1-fp8-h200-sglang-tp8-1k8k-c4-tpot"])
def test_low_concurrency_time_per_token_matches_published(case_id):
    """Issue 11: the fixed per-step overhead must be small enough that low-batch time per output
    token approaches weights / bandwidth (the old fit's 0.23 ms per layer alone put 8 ms under
    gpt-oss-120b's 36 layers and 14 ms under DeepSeek-R1's 61). InferenceX measured 3.71 ms
    (gpt-oss-120b, 8 × H100, vLLM, concurrency 4, 1k/1k) and 10.3 ms (DeepSeek-R1 FP8, 8 × H200,
    SGLang, concurrency 4, 1k/8k) — source and conversion in the case rows
    (validation/cases/inferencex.jsonl). The estimate within 20 %, and above the roofline."""
    from tokenmath import validate as vd

    case, path = next((c, p) for c, p in vd.load_cases() if c.id == case_id)
    p = vd.predict(case, choose("calibrated", engine=case.engine, system=CAT.system(case.system)), CAT, path.parent)
    bound = vd.predict(case, pf_roofline(), CAT, path.parent)
    assert p.predicted == pytest.approx(case.measured, rel=0.20)
    assert p.predicted > bound.predicted


@pytest.mark.parametrize("model, system, layout", [("deepseek-v3", "h100-sxm", Layout(tp=8, ep=8, pp=2)),
                                                   ("llama-3.1-70b", "b200", Layout(tp=2)),
                                                   ("gpt-oss-120b", "mi355x", Layout(tp=1))])
def test_invariant_steady_step_of_one_batch_equals_its_array_element(model, system, layout):
    """Invariant: steady_step_s of one batch on one layout (two float passes) equals the same batch
    as a one-element array (one broadcast call), estimate and bound, rel 1e-12."""
    from tokenmath.stepmodel import steady_step_s

    m, s = CAT.model(model), CAT.system(system)
    prof = choose("calibrated", system=s)
    for kern, eng in ((prof.kernels, prof.engine), (None, None)):
        one = steady_step_s(m, s, layout, 48.0, 2000, 500, kernels=kern, engine=eng, cached_tokens=300.0)
        arr = steady_step_s(m, s, layout, np.array([48.0]), 2000, 500, kernels=kern, engine=eng, cached_tokens=300.0)
        assert isinstance(one, float) and one == pytest.approx(float(arr[0]), rel=1e-12)


def pf_roofline():
    from tokenmath.profiles import ROOFLINE_PROFILE

    return ROOFLINE_PROFILE


def test_attention_runs_in_its_own_dtype_not_fp4():
    """FlashAttention / FlashMLA run BF16 or FP8: an FP4 weight dtype must not speed attention up."""
    m, s = CAT.model("deepseek-v3"), CAT.system("b200")
    prof = choose("calibrated", system=s)
    kw = dict(kernels=prof.kernels, engine=prof.engine)
    a8 = op_step(m, s, Layout(ep=8), 256, 8192, dtypes=tm.Dtypes(weight="fp8"), **kw).attention_s
    a4 = op_step(m, s, Layout(ep=8), 256, 8192, dtypes=tm.Dtypes(weight="nvfp4"), **kw).attention_s
    assert a4 == pytest.approx(a8, rel=1e-9)


def test_engine_overhead_adds_once_per_step():
    m, s = CAT.model("llama-3.1-8b"), CAT.system("h100-sxm")
    a = op_step(m, s, Layout(), 8, 1000, kernels=KERNELS, engine=Engine(overhead_s=0.0))
    b = op_step(m, s, Layout(), 8, 1000, kernels=KERNELS, engine=Engine(overhead_s=1e-3))
    assert b.step_s - a.step_s == pytest.approx(1e-3, rel=1e-9)


@pytest.mark.parametrize("dtype, m, n, k, measured_ms", [
    ("bf16", 1, 8192, 8192, 0.049184), ("bf16", 128, 8192, 8192, 0.05207467), ("bf16", 4096, 8192, 8192, 0.67276804),
    ("bf16", 8192, 8192, 8192, 1.40478404), ("fp8", 1, 8192, 8192, 0.03739733), ("fp8", 4096, 8192, 8192, 0.44659734),
    ("fp8", 8192, 8192, 8192, 0.88491201),
])
def test_gemm_curve_against_measured_h100_kernels(dtype, m, n, k, measured_ms):
    """Measured GEMM latencies on H100 SXM (aiconfigurator-core 0.12.0, PyPI, Apache-2.0:
    systems/data/h100_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet, rows m × n × k, latency in ms)
    against the fitted generic curve on the catalog's datasheet peaks: within 25 % (the fit's
    p90 over all three chips is 33 %, kernels.md)."""
    s = CAT.system("h100-sxm")
    b = 2.0 if dtype == "bf16" else 1.0
    flops = 2.0 * m * n * k
    bytes_ = n * k * b + m * k * b + m * n * 2.0
    curve = KERNELS.gemm_curve("gemm", "tensor", s.chip.flops_per_s(dtype) / s.chip.bf16_flops_per_s, dtype != "bf16")
    t = curve.time_s(flops / s.chip.flops_per_s(dtype), bytes_ / s.chip.hbm_bytes_per_s, m)
    assert float(t) == pytest.approx(measured_ms * 1e-3, rel=0.25)


def test_kernel_fits_hold_out_blackwell():
    """Held-out generation: the kernel curves are fitted on A100/H100/H200 tables only (GEMM and
    MoE families also on L40S's)."""
    import json

    from tokenmath.profiles import KERNELS_FILE

    d = json.loads(KERNELS_FILE.read_text())
    assert set(d["chips"]) <= {"a100_sxm", "h100_sxm", "h200_sxm"}
    assert set(d["gemm_moe_chips"]) <= {"a100_sxm", "h100_sxm", "h200_sxm", "l40s"}
    blackwell = ("b200", "b300", "gb200", "gb300", "rtx_pro_6000", "b60")
    assert not any(b in d["source"].lower() for b in blackwell)


@pytest.mark.parametrize("model, system", [("deepseek-v3", "gb200-nvl72"), ("qwen3-235b-a22b", "h100-sxm"),
                                           ("llama-3.1-70b", "h200-sxm"), ("gpt-oss-120b", "mi355x")])
def test_many_layouts_in_one_call_equal_one_at_a_time(model, system):
    """Invariant (issue 13): op_step over a list of layouts (a leading layout axis, what the planner
    uses) gives, row by row, what op_step gives for each layout alone — every part, the bound and the
    billed chips — for decode with mixed prefill chunks and for a lone prompt. rel 1e-12."""
    from tokenmath.plan import candidate_layouts
    from tokenmath.layout import check_layout
    m, s = CAT.model(model), CAT.system(system)
    prof = choose("calibrated", system=s)
    lays = []
    for lay in candidate_layouts(m, s):
        try:
            check_layout(m, s, lay)
            op_step(m, s, lay, 1.0, 0.0, kernels=prof.kernels, engine=prof.engine)
            lays.append(lay)
        except tm.TokenmathError:
            pass
    assert len(lays) >= 4
    B = np.array([[1.0, 16.0, 300.0]])
    kw = dict(kernels=prof.kernels, engine=prof.engine, prefill_tokens=np.array([[0.0, 2048.0, 8192.0]]),
              prefill_context=1000.0, prefill_seqs=np.array([[0.0, 1.0, 4.0]]))
    many = op_step(m, s, lays, np.repeat(B, len(lays), axis=0), 3000.0, **kw)
    prompt = op_step(m, s, lays, np.ones((len(lays), 1)), 0.0, 2000.0, kernels=prof.kernels, engine=prof.engine)
    for i, lay in enumerate(lays):
        one = op_step(m, s, lay, B[0], 3000.0, **kw)
        for k in ("step_s", "bound_s", "dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s", "ep_comm_s",
                  "pp_comm_s", "expert_imbalance"):
            np.testing.assert_allclose(getattr(many, k)[i], np.ravel(getattr(one, k)), rtol=1e-12, err_msg=f"{lay} {k}")
        assert many.billed_chips[i] == one.billed_chips and many.chips[i] == one.chips
        assert prompt.step_s[i, 0] == pytest.approx(op_step(m, s, lay, 1.0, 0.0, 2000.0, kernels=prof.kernels,
                                                            engine=prof.engine).step_s, rel=1e-12)


@pytest.mark.parametrize("S, L", [(8192, 0), (32768, 0), (4096, 4096)])
def test_prefill_attention_flops_are_the_causal_count(S, L):
    """A prompt chunk of S tokens after L cached ones: token i (0 ≤ i < S) attends to the L + i
    tokens before it, so its QKᵀ and AV cost 4·n_heads·head_dim·(L + i) FLOPs per layer, and the
    chunk Σᵢ 4·h·d·(L + i) = 4·h·d·S·(L + (S − 1)/2). With L = 0 this is FlashAttention-2's count
    (Dao 2023, arXiv 2307.08691, §4.1: forward FLOPs 4·seqlen²·head_dim·n_heads, divided by 2
    with a causal mask), to 1/S. Checked through op_step's model FLOPs of the whole pass, less the
    matmuls counted from Llama-3.1-8B's config.json (hidden 4,096, intermediate 14,336, 32 layers,
    32 query and 8 KV heads of 128, vocabulary 128,256, untied lm_head; the logits of the last
    token only): rel 0.5 %. Counting every token at the chunk's end (L + S − 1) would double the
    attention term (+38 % of the pass at S = 32k)."""
    m, s = CAT.model("llama-3.1-8b"), CAT.system("h100-sxm")
    h, inter, layers, heads, kv_heads, d, vocab = 4096, 14336, 32, 32, 8, 128, 128256
    per_layer = h * heads * d + 2 * h * kv_heads * d + heads * d * h + 3 * h * inter  # q, k, v, o; gate, up, down
    matmul = 2 * S * layers * per_layer + 2 * h * vocab  # every token through the layers; one token's logits
    exact = layers * sum(4 * heads * d * (L + i) for i in range(S))  # Python's own sum over positions
    assert exact == pytest.approx(layers * 4 * heads * d * S * (L + (S - 1) / 2), rel=1e-12)
    if L == 0:
        fa2 = layers * 4 * S**2 * d * heads / 2
        assert exact == pytest.approx(fa2, rel=2.0 / S)
    op = op_step(m, s, Layout(), 1.0, float(L), float(S), kernels=None)
    assert op.flops == pytest.approx(matmul + exact, rel=0.005)
    assert op.flops - matmul == pytest.approx(exact, rel=0.01)


def _terms(name, sysname, lay, batch, context, new, prefill=0.0, prof=None, dtypes=tm.Dtypes()):
    from tokenmath.stepmodel import kernel_rates, layout_terms, pass_terms

    m, s = CAT.model(name), CAT.system(sysname)
    prof = prof or choose("calibrated", system=s)
    lt = layout_terms(m, s, lay, prof.kernels, prof.engine, 10e-6)
    rates = kernel_rates(m, s, dtypes, False)
    f = lambda x: np.asarray(x, float)  # noqa: E731
    terms, imb = pass_terms(m, s, lt, f(batch), f(context), f(new), f(prefill), f(context) / 2,
                            np.maximum(f(prefill) / 2048, 1.0), kernels=prof.kernels, engine=prof.engine, rates=rates)
    return terms, imb, rates


TERM_CASES = CASES + [("deepseek-v3", "a100-sxm-80gb", Layout(ep=8)), ("mixtral-8x7b", "h100-sxm", Layout(tp=2, ep=8)),
                      ("llama-3.1-8b", "tpu-v7", Layout(tp=4, pp=2)), ("qwen3-235b-a22b", "gb200-nvl72", Layout(ep=128))]


@pytest.mark.parametrize("name, sysname, lay", TERM_CASES)
def test_invariant_each_term_is_never_faster_than_its_own_roofline(name, sysname, lay):
    """Invariant of the seam every new term plugs into (stepmodel.pass_terms): each operation's
    estimated time is at least what the bound of the same pass charges for it — its FLOPs at the
    peak, its HBM bytes at full bandwidth, its link bytes at the ideal link — so the estimate's
    parts alone sum to at least the bound, term by term, not only through the final clamp. Over
    decode, prompts and mixed chunks at batch 1 … 4,096 and context 0 … 128k. rel 1e-12."""
    B = np.array([1.0, 16.0, 512.0, 4096.0])[:, None, None]
    L = np.array([0.0, 4000.0, 131072.0])[None, :, None]
    S = np.array([1.0, 2048.0])[None, None, :]
    for prefill in (0.0, 4096.0):
        terms, _, rates = _terms(name, sysname, lay, B, L, S, prefill)
        for key, t in terms.items():
            floor = np.maximum(np.maximum(t.compute_s, t.link_s),
                               (np.asarray(t.weight_bytes) + t.kv_bytes + t.act_bytes) / rates.hbm_bytes_per_s)
            assert np.all(np.asarray(t.time_s) >= floor * (1 - 1e-12)), f"{name} {lay} {key} prefill {prefill}"


@pytest.mark.parametrize("name, sysname, lay", TERM_CASES)
def test_invariant_op_step_is_its_terms(name, sysname, lay):
    """Invariant: op_step's parts are its terms' times summed by TERM_PART (× PP stages), and its
    bound's compute, HBM and network shares are the same terms' shares summed (× m microbatches) —
    so a term added to pass_terms reaches both the estimate and the bound. rel 1e-12."""
    from tokenmath.stepmodel import TERM_PART

    m, s = CAT.model(name), CAT.system(sysname)
    prof = choose("calibrated", system=s)
    B, L, prefill = np.array([1.0, 64.0, 1024.0]), 8000.0, 1024.0
    terms, imb, rates = _terms(name, sysname, lay, B, L, 1.0, prefill, prof)
    op = op_step(m, s, lay, B, L, 1.0, kernels=prof.kernels, engine=prof.engine, prefill_tokens=prefill,
                 prefill_context=L / 2, prefill_seqs=max(prefill / 2048, 1.0))
    for part in op.parts:
        if part == "overhead_s":
            continue
        want = sum(np.asarray(t.time_s) for k, t in terms.items() if TERM_PART[k] == part) * lay.pp
        want = want + (op.pp_comm_s - lay.pp * terms["pp_transfer"].time_s if part == "pp_comm_s" else 0.0)  # + hops
        np.testing.assert_allclose(getattr(op, part), np.broadcast_to(want, B.shape), rtol=1e-12, err_msg=part)
    total = lambda f: lay.m * sum(np.asarray(getattr(t, f)) for t in terms.values())  # noqa: E731
    bw = rates.hbm_bytes_per_s
    np.testing.assert_allclose(op.bound_parts["compute_s"], total("compute_s"), rtol=1e-12)
    np.testing.assert_allclose(op.bound_parts["weights_s"], total("weight_bytes") / bw, rtol=1e-12)
    np.testing.assert_allclose(op.bound_parts["kv_s"], total("kv_bytes") / bw, rtol=1e-12)
    np.testing.assert_allclose(op.bound_parts["network_s"], np.broadcast_to(total("link_s"), B.shape), rtol=1e-12)
    np.testing.assert_allclose(op.expert_imbalance, np.broadcast_to(imb, B.shape), rtol=1e-12)


def test_terms_vanish_where_their_operation_does_not_run():
    """A dense model has no expert GEMMs or all-to-all; TP 1 no all-reduce; PP 1 no send/recv; a
    pass without prompt chunks no chunk attention: each of those terms is exactly 0, in time and in
    what the bound charges."""
    terms, imb, _ = _terms("llama-3.1-8b", "h100-sxm", Layout(), np.array([1.0, 64.0]), 4000.0, 1.0)
    assert imb == 1.0
    for key in ("expert_gemm", "ep_alltoall", "tp_allreduce", "pp_transfer", "prefill_chunks"):
        t = terms[key]
        for f in ("time_s", "compute_s", "weight_bytes", "kv_bytes", "link_s", "flops"):
            assert np.all(np.asarray(getattr(t, f)) == 0.0), (key, f)
    moe, imb, _ = _terms("deepseek-v3", "h200-sxm", Layout(ep=8), 64.0, 4000.0, 1.0)
    assert float(moe["ep_alltoall"].time_s) > 0 and float(moe["expert_gemm"].time_s) > 0 and imb > 1.0


def test_invariant_many_layout_mfu_and_mbu_equal_one_layout_at_a_time():
    """Invariant: MFU and MBU of a many-layout pass (chips one per layout, the step a leading layout
    axis) equal each layout's own, row by row (they raised a shape error before)."""
    import numpy as np

    from tokenmath.parallelism import Layout
    from tokenmath.profiles import choose
    from tokenmath.stepmodel import op_step

    m, s = CAT.model("llama-3.1-70b"), CAT.system("h100-sxm")
    p = choose(system=s)
    lays = [Layout(tp=8), Layout(tp=4, pp=2), Layout(tp=2, pp=4)]
    B = np.array([1.0, 64.0, 512.0])
    many = op_step(m, s, lays, B, 4096.0, kernels=p.kernels, engine=p.engine)
    for i, lay in enumerate(lays):
        one = op_step(m, s, lay, B, 4096.0, kernels=p.kernels, engine=p.engine)
        assert np.allclose(np.asarray(many.mfu())[i], one.mfu(), rtol=1e-12)
        assert np.allclose(np.asarray(many.mbu())[i], one.mbu(), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Issue 22: MoE terms — dispatch/combine modes, attention data parallelism, two-batch overlap,
# and passes of a few tokens after a long cache
# --------------------------------------------------------------------------------------------

from tokenmath.parallelism import HOP_LATENCY_S_DEFAULT  # noqa: E402
from tokenmath.profiles import (case_features, engine_features, load_alltoall, named_feature,  # noqa: E402
                                with_features)
from tokenmath.specs import Dtypes  # noqa: E402
from tokenmath.stepmodel import (FP8_DISPATCH_BYTES, alltoall_copies, alltoall_phase_s,  # noqa: E402
                                 attention_length, dp_context_imbalance, model_shape)

A2A = load_alltoall()


@pytest.mark.parametrize("ep, dispatch_us, combine_us", [(16, 118, 195), (32, 155, 273), (64, 173, 314),
                                                         (128, 192, 369), (256, 194, 360)])
def test_low_latency_alltoall_against_deepep_readme(ep, dispatch_us, combine_us):
    """DeepEP's published low-latency kernels across nodes (github deepseek-ai/DeepEP docs/legacy.md,
    commit dd758ca, 'Low-latency kernels with pure RDMA': H800, CX7 400 Gb/s InfiniBand, 128 tokens
    per batch, hidden 7168, top-8, FP8 dispatch, BF16 combine): each phase's time within 15 %.
    The curves were fitted on aiconfigurator's H100/H200 tables (scripts/fit_alltoall.py), so the
    H800 and its 200 GB/s NVLink are held out; 15 % is the fit's own cross-node p90 (14 %). EP 8 is
    left out: the README's 'pure RDMA' label and its 98 GB/s (> one 50 GB/s NIC) leave the in-node
    path ambiguous."""
    s = CAT.system("h800-sxm")
    up, out = alltoall_copies("ll", ep, s.scaleup_chips, 8)
    for phase, b, meas in (("dispatch", FP8_DISPATCH_BYTES, dispatch_us), ("combine", 2.0, combine_us)):
        t = alltoall_phase_s(A2A["ll"][phase], 128, up, out, 7168 * b, s.scaleup_bytes_per_s, s.scaleout_bytes_per_s)
        assert (t + HOP_LATENCY_S_DEFAULT) * 1e6 == pytest.approx(meas, rel=0.15), phase


@pytest.mark.parametrize("ep, dom, k, E", [(8, 8, 8, 256), (64, 8, 8, 256), (32, 8, 4, 64), (16, 8, 2, 16)])
def test_alltoall_copies_match_sampled_routing(ep, dom, k, E):
    """The copies each kernel family sends per token, against 20,000 sampled routings (k distinct
    experts of E, spread evenly over EP ranks in domains of `dom`): low-latency sends one per
    routed expert off its rank, normal kernels one per distinct rank in the domain and one per
    distinct remote domain. Within 3 % (invariant of the closed form against exact sampling)."""
    rng = np.random.default_rng(1)
    picks = np.argsort(rng.random((20000, E)), axis=1)[:, :k]
    rank = picks // (E // ep)
    home = 0  # a token on rank 0, domain 0
    dom_of = rank // dom
    ll_up = np.mean(np.sum((rank != home) & (dom_of == 0), axis=1))
    ll_out = np.mean(np.sum(dom_of != 0, axis=1))
    ht_up = np.mean([len(set(r[(r != home) & (r // dom == 0)])) for r in rank])
    ht_out = np.mean([len(set(d[d != 0])) for d in dom_of])
    (m_ll_up, m_ll_out), (m_ht_up, m_ht_out) = alltoall_copies("ll", ep, dom, k), alltoall_copies("ht", ep, dom, k, E)
    assert float(m_ll_up) == pytest.approx(ll_up, rel=0.03, abs=1e-9)
    assert float(m_ll_out) == pytest.approx(ll_out, rel=0.03, abs=1e-9)
    assert float(m_ht_up) == pytest.approx(ht_up, rel=0.03, abs=1e-9)
    assert float(m_ht_out) == pytest.approx(ht_out, rel=0.03, abs=1e-9)


def test_no_dispatch_without_attention_data_parallelism():
    """Where TP ≥ EP every chip already holds every token and the TP all-reduce sums the experts'
    outputs: TensorRT-LLM's MoE communication factory returns no communication without attention
    DP (github NVIDIA/TensorRT-LLM tensorrt_llm/_torch/modules/fused_moe/communication/
    communication_factory.py). With attention DP (TP1 EP8) the all-to-all runs."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h200-sxm")
    prof = choose("calibrated", system=s)
    kw = dict(kernels=prof.kernels, engine=prof.engine, dtypes=Dtypes(weight="fp8"), check=False)
    assert op_step(m, s, Layout(tp=8, ep=8), 64, 4000, **kw).ep_comm_s == 0.0
    assert op_step(m, s, Layout(tp=1, ep=8), 64, 4000, **kw).ep_comm_s > 0.0


def test_one_prompt_lives_on_one_attention_dp_rank():
    """A sequence's KV sits on one attention-DP rank, so a one-prompt prefill runs its dense GEMMs
    on one chip: on TP1 EP8 (8 attention-DP ranks) an 8,192-token DeepSeek-V3 prompt's dense
    GEMMs take at least 2 · 8,192 · P_dense FLOPs at the FP8 peak of one H200 (P_dense: every
    layer's attention, shared-expert and dense-MLP parameters, from the model's own counts) — the
    bug modelled it as 1,024 tokens on each of 8 ranks. Eight prompts fill the eight ranks in the
    same time; sixteen put two on each."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h200-sxm")
    prof = choose("calibrated", system=s)
    kw = dict(kernels=prof.kernels, engine=prof.engine, dtypes=Dtypes(weight="fp8"), check=False)
    sh = model_shape(m)
    floor = 2 * 8192 * sh.dense_params_per_layer * sh.layers / s.chip.flops_per_s("fp8")
    one = op_step(m, s, Layout(tp=1, ep=8), 1, 0.0, 8192, **kw)
    assert one.dense_gemm_s >= floor
    assert op_step(m, s, Layout(tp=1, ep=8), 8, 0.0, 8192, **kw).dense_gemm_s == pytest.approx(one.dense_gemm_s)
    assert op_step(m, s, Layout(tp=1, ep=8), 16, 0.0, 8192, **kw).dense_gemm_s > 1.8 * one.dense_gemm_s


@pytest.mark.parametrize("model, system, layout, batch", [("deepseek-v3", "gb200-nvl72", Layout(ep=64), 10676),
                                                          ("deepseek-v3", "h200-sxm", Layout(tp=8), 64),
                                                          ("llama-3.1-70b", "h100-sxm", Layout(tp=8), 64)])
def test_a_two_token_verify_pass_costs_like_decode(model, system, layout, batch):
    """A pass of 2 new tokens per sequence after 4,000 cached ones (a speculative-decoding verify
    pass, `step --new-tokens 2`) reads the same weights and the same KV once as a decode step and
    does twice its FLOPs, so it takes between 1× and 2× the decode step — derived from the pass,
    not from the model's curves. The bug charged it as a 2-token prompt: 2.45 s against 29 ms for
    DeepSeek-V3 on GB200 at batch 10,676 (the issue's numbers)."""
    m, s = CAT.model(model), CAT.system(system)
    prof = choose("calibrated", system=s)
    kw = dict(kernels=prof.kernels, engine=prof.engine, dtypes=Dtypes(weight="fp8"), check=False)
    dec = op_step(m, s, layout, batch, 4000, 1, **kw)
    ver = op_step(m, s, layout, batch, 4000, 2, **kw)
    assert dec.step_s <= ver.step_s <= 2.0 * dec.step_s
    assert dec.attention_s <= ver.attention_s <= 2.0 * dec.attention_s + 1e-12


def test_invariant_attention_length_is_the_prompt_for_a_prompt():
    """The prompt-equivalent length equals S with no cache (so the flash curve fitted on prompts is
    unchanged there) and has the same score-matrix area, S·L + S²/2, after a cache (invariant)."""
    S = np.array([1.0, 64, 2048, 8192])
    assert np.allclose(attention_length(S, 0.0), S)
    Le = attention_length(S, 4000.0)
    assert np.allclose(Le ** 2 / 2, S * 4000.0 + S ** 2 / 2)


@pytest.mark.parametrize("adp, n", [(8, 4), (8, 16), (64, 8), (16, 64)])
def test_dp_context_imbalance_matches_sampling(adp, n):
    """The busiest attention-DP rank's total context when each of `adp` ranks holds n sequences of
    uniformly spread ages (contexts uniform on [I, I + O], I = 2,000, O = 2,000: continuous
    batching at fixed lengths), against 4,000 sampled batches: within 3 % (invariant of μ + z·σ
    against exact sampling)."""
    from tokenmath.stepmodel import _z_max, steady_context_cv

    rng = np.random.default_rng(2)
    ctx = rng.uniform(2000, 4000, size=(4000, adp, n))
    exact = np.mean(ctx.sum(axis=2).max(axis=1)) / (n * 3000)
    assert float(dp_context_imbalance(n, _z_max(adp), steady_context_cv(2000, 2000))) == pytest.approx(exact, rel=0.03)


def _lmsys_ep72(per_device, features):
    m, s = CAT.model("deepseek-v3"), CAT.system("h100-sxm")
    prof = choose("calibrated", engine="sglang", system=s)
    for f in features:
        prof = with_features(prof, named_feature(f))
    return op_step(m, s, Layout(tp=1, ep=72), 72 * per_device, 2000, kernels=prof.kernels, engine=prof.engine,
                   dtypes=Dtypes(weight="fp8"), check=False)


def test_two_batch_overlap_against_lmsys_ablation():
    """LMSYS, 'Deploying DeepSeek with PD Disaggregation and Large-scale Expert Parallelism on 96 H100
    GPUs' (2025-05-05, github lm-sys/lm-sys.github.io blog/2025-05-05-large-scale-ep.md, stored commit
    2db4e40), decode on 9 × 8 H100 (EP72, 2,000-token inputs, DeepEP low-latency): two-batch overlap
    is slower at 32 tokens per device (−27 %) — each half re-reads the weights — and 25.5 % faster
    at 256. The estimate gets the sign at both ends, and at 256 a speed-up between 0 and 60 %: the
    feature hides all of the smaller of communication and compute (the sources describe the overlap
    as complete), which overstates the single measured 25.5 % — the tolerance is that gap, stated."""
    slow = _lmsys_ep72(32, ["deepep_low_latency"]).step_s / _lmsys_ep72(32, ["deepep_low_latency", "two_batch_overlap"]).step_s
    fast = _lmsys_ep72(256, ["deepep_low_latency"]).step_s / _lmsys_ep72(256, ["deepep_low_latency", "two_batch_overlap"]).step_s
    assert slow < 1.0
    assert 1.0 < fast


@pytest.mark.xfail(strict=True, reason="issue 22, left: after the 598-case refit with decode attention's "
                   "grouped-query curve (1.73x with the collectives' knee before it; network scale 0.70: "
                   "communication charged slower than the kernel tables, so more of it to "
                   "hide) the estimate's overlap gives 1.74x (1.69x at network scale 0.64) at "
                   "256 tokens per device against LMSYS's measured 1.255x; SGLang's overlap is partial, the "
                   "feature hides all of min(communication, compute)")
def test_two_batch_overlap_gain_at_256_tokens_per_device_against_lmsys():
    """LMSYS (as above): two-batch overlap 25.5 % faster at 256 tokens per device; a speed-up
    between 0 and 60 % is the tolerance (one measurement; the overlap's completeness unknown)."""
    fast = _lmsys_ep72(256, ["deepep_low_latency"]).step_s / _lmsys_ep72(256, ["deepep_low_latency", "two_batch_overlap"]).step_s
    assert fast < 1.6


def test_invariant_overlap_is_a_part_and_the_parts_add_up():
    """With two-batch overlap the hidden communication is reported as a negative part, and the
    parts (one stage, no pipeline) still add up to the step (invariant)."""
    op = _lmsys_ep72(256, ["deepep_low_latency", "two_batch_overlap"])
    assert op.overlap_s < 0 and -op.overlap_s <= op.ep_comm_s + 1e-12
    assert sum(float(v) for v in op.parts.values()) == pytest.approx(op.step_s, rel=1e-9)


def test_engine_features_are_sourced_and_cases_exist():
    """Every engine feature and named feature set carries its source; every case a feature is set
    for exists among the shipped cases (a renamed case cannot silently lose its flags)."""
    import tomllib

    from tokenmath.profiles import ENGINES_FILE
    from tokenmath.validate import load_cases

    d = tomllib.loads(ENGINES_FILE.read_text())
    for table in ("engines", "features"):
        for name, rec in d[table].items():
            assert rec.get("source"), (table, name)
    assert engine_features("sglang")["moe_a2a"] == "allgather" and engine_features("nope") == {}
    ids = {c.id for c, _ in load_cases()}
    feats = case_features()
    assert feats and set(feats) <= ids


@pytest.mark.parametrize("name,sysname,lay", [
    ("kimi-k2", "h200-sxm", Layout(ep=8)), ("kimi-k2", "h200-sxm", Layout(tp=8)), ("kimi-k2", "h200-sxm", Layout(tp=2, ep=8)),
    ("deepseek-v3", "gb200-nvl72", Layout(ep=64)), ("llama-3.1-70b", "h100-sxm", Layout(tp=4, pp=2))])
def test_mfu_counts_the_model_work_once_whatever_the_layout(name, sysname, lay):
    """MFU's numerator is the model's FLOPs (PaLM, Chowdhery et al. 2022, appendix B: 2·N per token
    for the matmuls plus attention), not the layout's copies: the dense layers an EP layout
    replicates, the busiest attention-DP rank's share or the lm_head each DP rank holds. Counted
    independently from params.param_counts and kvcache.attention_flops_per_token: 64 decode tokens
    at L = 4,096 plus a 2,048-token prompt chunk at a mean context of 1,024 (one sequence's
    logits), rel 1e-4 (norms and the router's softmax are not matmuls)."""
    from tokenmath.kvcache import attention_flops_per_token
    from tokenmath.params import param_counts

    m, s = CAT.model(name), CAT.system(sysname)
    prof = choose("calibrated", system=s)
    op = op_step(m, s, lay, 64, 4096, 1, kernels=prof.kernels, engine=prof.engine, prefill_tokens=2048,
                 prefill_context=1024, prefill_seqs=1)
    pc = param_counts(m)
    body = 2 * (pc.active - pc.embedding - pc.lm_head)
    ref = (64 * (body + float(attention_flops_per_token(m, 4096))) + 2048 * body
           + 2048 * float(attention_flops_per_token(m, 1024, absorbed=False)) + 65 * 2 * pc.lm_head)
    assert float(op.flops) == pytest.approx(ref, rel=1e-4)


ONE_PASS_CASES = [  # (model, system, layout, engine spec): dense, MoE, MLA; TP, EP, attention DP, PP; DeepEP + TBO
    ("llama-3.1-70b", "h100-sxm", dict(tp=8), None),
    ("qwen3-235b-a22b", "h200-sxm", dict(tp=4, ep=4, pp=2), "vllm"),
    ("deepseek-v3", "h100-sxm", dict(tp=8, ep=8, pp=2), None),
    ("deepseek-v3", "h800-sxm", dict(ep=32), "generic+deepep_auto+two_batch_overlap"),
    ("gpt-oss-120b", "mi355x", dict(tp=1), "atom"),
]


@pytest.mark.parametrize("name, sysname, lay, engine", ONE_PASS_CASES)
def test_invariant_one_pass_equals_its_array_element(name, sysname, lay, engine):
    """Invariant: the one-pass path (Python floats through stepmodel's helpers, only the pass's own
    kernel forms computed) gives what the array path gives for the same pass as one element of a
    sweep — decode, a prompt, a speculative verify pass and decode with chunked prefill — to 1e-12."""
    from tokenmath.parallelism import Layout
    from tokenmath.profiles import choose

    m, s = tm.get_model(name), tm.get_system(sysname)
    prof = choose("calibrated", engine=engine, system=s)
    layout = Layout(**lay)
    passes = [dict(batch=64, context=4096), dict(batch=1, context=0, new_tokens=2000),
              dict(batch=32, context=3000, new_tokens=3),
              dict(batch=48, context=2000, prefill_tokens=2048, prefill_context=1024, prefill_seqs=2)]
    for kw in passes:
        one = op_step(m, s, layout, kernels=prof.kernels, engine=prof.engine, **kw)
        arr = op_step(m, s, layout, kernels=prof.kernels, engine=prof.engine,
                                **{k: np.array([v, v]) if k in ("batch", "context") else v for k, v in kw.items()})
        for f in ("step_s", "bound_s", "dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s", "ep_comm_s",
                  "pp_comm_s", "overlap_s", "tokens_per_s", "flops", "weight_bytes", "kv_bytes", "expert_imbalance"):
            assert isinstance(getattr(one, f), float), f
            assert getattr(one, f) == pytest.approx(float(np.asarray(getattr(arr, f))[0]), rel=1e-12, abs=1e-18), (kw, f)
        assert one.bound_name == str(np.asarray(arr.bound_name)[0])
        for k, v in one.bound_parts.items():
            assert v == pytest.approx(float(np.asarray(arr.bound_parts[k])[0]), rel=1e-12, abs=1e-18), (kw, k)


def test_invariant_the_expert_parallel_floor_is_each_layouts_own_in_a_many_layout_call():
    """Invariant: the weight-only MoE family's extra floor on the expert-parallel path
    (GemmFamily.t0ep_s, nonzero for gpt-oss's MXFP4 experts on Hopper) is charged per layout when
    the planner evaluates several layouts in one call: a TP8 layout stacked with an EP8 one gets
    its own (tensor-parallel) expert time, as it does alone (it took the EP floor from its
    neighbour before 2026-12-07), to 1e-12."""
    from tokenmath.parallelism import Layout

    m, s = tm.get_model("gpt-oss-120b"), tm.get_system("h100-sxm")
    prof = choose("calibrated", system=s)
    lays = [Layout(tp=8), Layout(ep=8)]
    many = op_step(m, s, lays, 4.0, 2000.0, kernels=prof.kernels, engine=prof.engine)
    for i, lay in enumerate(lays):
        one = op_step(m, s, lay, 4.0, 2000.0, kernels=prof.kernels, engine=prof.engine)
        for f in ("expert_gemm_s", "step_s"):
            assert float(np.ravel(getattr(many, f))[i]) == pytest.approx(getattr(one, f), rel=1e-12), (lay, f)
    assert one.expert_gemm_s > 1.2 * float(np.ravel(many.expert_gemm_s)[0])  # the paths do differ here


@pytest.mark.parametrize("name, sysname, lay, engine", ONE_PASS_CASES)
def test_invariant_a_large_sweep_in_chunks_equals_one_pass_over_it(name, sysname, lay, engine, monkeypatch):
    """Invariant: op_step evaluates a large array of points in chunks of stepmodel.CHUNK_POINTS (its
    temporaries stay in cache); every field of the answer — the parts, the bound's, what decides it,
    the shape of a 2-D sweep — equals one pass over the whole array, for decode, prompts and
    speculative passes mixed with chunked prefill in one sweep, to 1e-12."""
    import dataclasses

    import tokenmath.stepmodel as sm
    from tokenmath.parallelism import Layout

    m, s = tm.get_model(name), tm.get_system(sysname)
    prof = choose("calibrated", engine=engine, system=s)
    rng = np.random.default_rng(7)
    shape = (61, 97)  # 5,917 points: 11 chunks of 512 and a short one
    kw = dict(batch=rng.uniform(1, 256, shape), context=rng.uniform(0, 16_000, shape),
              new_tokens=rng.choice([1.0, 1.0, 3.0, 512.0], shape), prefill_tokens=rng.choice([0.0, 1024.0], shape[1]))
    monkeypatch.setattr(sm, "CHUNK_POINTS", 512)
    chunked = op_step(m, s, Layout(**lay), kernels=prof.kernels, engine=prof.engine, **kw)
    monkeypatch.setattr(sm, "CHUNK_POINTS", 10**9)
    whole = op_step(m, s, Layout(**lay), kernels=prof.kernels, engine=prof.engine, **kw)
    for f in dataclasses.fields(sm.OpStep):
        a, b = getattr(chunked, f.name), getattr(whole, f.name)
        for k, x in (a.items() if isinstance(a, dict) else [(f.name, a)]):
            y = b[k] if isinstance(a, dict) else b
            if isinstance(y, np.ndarray) and y.dtype == float:
                assert x.shape == shape and np.allclose(x, y, rtol=1e-12, atol=0), k
            elif isinstance(y, np.ndarray):
                assert x.shape == shape and (x == y).all(), k
            else:
                assert x == y, k


@pytest.mark.parametrize("model, kernels", [("gpt-oss-120b", 2), ("qwen3-30b-a3b", 2), ("mixtral-8x7b", 2),
                                            ("llama-3.1-70b", 4), ("deepseek-v3", 6), ("kimi-k2", 6)])
def test_dense_kernels_per_layer_as_vllm_runs_them(model, kernels):
    """Dense kernels a layer launches, each charged the GEMM curve's floor (stepmodel.model_shape), as
    vLLM's model files build the layer (github vllm-project/vllm): gpt-oss (models/gpt_oss.py at
    0025d69) runs `OAIAttention`'s `qkv` and `o_proj`, then `MLPBlock`'s router and `FusedMoE` — the
    MoE op, timed by expert_gemm_time with its own floor; Qwen3-MoE (models/qwen3_moe.py at 002456d)
    builds `qkv_proj` and `o_proj`, and `Qwen3MoeMLP`'s gate_up and down only in `mlp_only_layers`
    (none in the shipped config), every other layer a `Qwen3MoeSparseMoeBlock` (gate, `FusedMoE`);
    Mixtral's (models/mixtral.py at 005df92) `MixtralAttention` (`qkv_proj`, `o_proj`) and `MixtralMoE`
    (gate, fused_moe) likewise. A dense layer (Llama) adds gate_up and down; DeepSeek-V3 and Kimi-K2 (MLA: q_a,
    q_b, kv_a, O) add their shared expert's or dense MLP's two in every layer. Exact: a count."""
    from tokenmath.stepmodel import model_shape

    assert model_shape(CAT.model(model)).gemms_per_layer == kernels
