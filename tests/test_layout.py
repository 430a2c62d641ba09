"""layout.py (issue 4): memory per chip, network terms, pipelines, the lecture's rules, bubbles."""

import re

import numpy as np
import pytest

import tokenmath as tm
from tokenmath import layout as lay
from tokenmath.layout import Layout
from tokenmath.specs import Chip, Dtypes, System

CAT = tm.load_catalog()
DS3 = CAT.model("deepseek-v3")
GB200 = CAT.system("gb200-nvl72")
H100 = CAT.system("h100-sxm")
FP8 = Dtypes(weight="fp8")


def test_memory_per_chip_by_hand():
    """DeepSeek-V3 FP8 on EP 64: routed experts (653.9e9 params) / 64 per chip, every other weight
    (17.1e9 params) replicated on each attention-DP rank, the batch's KV split 64 ways."""
    pc = tm.param_counts(DS3)
    B, L = 2048, 4096
    mem = lay.layout_memory(DS3, GB200, Layout(ep=64), B, L, dtypes=FP8, new_tokens=0)
    assert mem.expert_bytes_per_chip == pytest.approx(pc.routed_experts / 64)
    assert mem.dense_bytes_per_chip == pytest.approx((pc.total - pc.routed_experts) * 1.0)
    assert mem.kv_bytes_per_chip == pytest.approx(B * 70_272 * L / 64)
    assert mem.activation_bytes_per_chip == 0  # S = 0 new tokens in flight
    decode = lay.layout_memory(DS3, GB200, Layout(ep=64), B, L, dtypes=FP8)  # S = 1
    assert decode.activation_bytes_per_chip == pytest.approx(B / 64 * 7168 * 2 * (4 + 8))
    assert mem.total_bytes_per_chip == pytest.approx(mem.weights_bytes_per_chip + mem.kv_bytes_per_chip
                                                     + mem.activation_bytes_per_chip)


def test_Q08_pipelining_divides_weights_not_kv():
    """Lecture 1:08–1:11 (lecture-claims L31): with B = P·b sequences microbatched over P stages,
    weights per chip fall as 1/P while KV per chip stays b·L·kv/E. DeepSeek-V3 FP8, E = 64,
    b = 2,400, L = 32k: KV ≈ 86 GB per GPU at every P (BF16 MLA latent). Tolerance 1 %."""
    b, L = 2400, 32_768
    mems = [lay.layout_memory(DS3, GB200, Layout(ep=64, pp=p), p * b, L, dtypes=FP8) for p in (1, 2, 4)]
    w = [m.weights_bytes_per_chip for m in mems]
    assert w[1] == pytest.approx(w[0] / 2) and w[2] == pytest.approx(w[0] / 4)
    for m in mems:
        assert m.kv_bytes_per_chip == pytest.approx(86e9, rel=0.01)


def test_all_to_all_bytes_direct_count():
    """Per chip per MoE layer: its tokens × k × hidden × bytes, dispatch and combine, to the (EP−1)/EP
    of experts on other chips; in one NVL72 all over NVLink (900 GB/s)."""
    B = 4096
    net = lay.network_terms(DS3, GB200, Layout(ep=64), B)
    per_chip_tokens = B / 64
    bytes_ = per_chip_tokens * 8 * 7168 * 2 * 2 * 63 / 64
    assert net.all_to_all_s == pytest.approx(bytes_ / 900e9 * 58, rel=1e-12)
    assert net.scale_out_fraction == 0 and net.tp_allreduce_s == 0


def test_L25_two_racks_pay_the_scale_out_penalty():
    """L25/Q10 (39:38): one MoE layer across 2 racks sends half the tokens off-rack over links
    BW_up/BW_out = 9× slower, so the all-to-all is ≈ 0.5 × 9 = 4.5× slower (the lecture: ≈4× at 8×)."""
    tokens_per_chip = 64
    one = lay.network_terms(DS3, GB200, Layout(ep=64), 64 * tokens_per_chip)
    two = lay.network_terms(DS3, GB200, Layout(ep=128), 128 * tokens_per_chip)
    assert two.scale_out_fraction == pytest.approx(1 - 72 / 128)
    two_racks = lay.network_terms(DS3, System("x2", GB200.chip, 64, 900e9, 100e9), Layout(ep=128), 128 * tokens_per_chip)
    assert two_racks.scale_out_fraction == 0.5
    ratio = two_racks.all_to_all_s / one.all_to_all_s
    assert ratio == pytest.approx(0.5 * 9 * (127 / 128) / (63 / 64), rel=1e-9)


def test_deepseek_one_rack_vs_two_boxes():
    """Issue 4: DeepSeek-V3 (673 GB in FP8) does not fit one 8×H100 box (640 GB); two boxes (EP16)
    fit but send half the all-to-all over 50 GB/s NICs; one GB200 NVL72 holds it in one domain."""
    one_box = lay.layout_memory(DS3, H100, Layout(ep=8), 1, 4096)
    assert not one_box.fits
    two = lay.layout_step(DS3, H100, Layout(ep=16), 256, 4096)
    rack = lay.layout_step(DS3, GB200, Layout(ep=64), 256, 4096)
    assert two.memory.fits and rack.memory.fits
    assert two.network.scale_out_fraction == 0.5 and rack.network.scale_out_fraction == 0
    assert two.all_to_all_s > 5 * rack.all_to_all_s
    assert two.placement.domains == 2 and rack.placement.idle_chips == 8


def test_validation_messages():
    with pytest.raises(tm.TokenmathError, match=r"TP\(1\) × EP\(64\) × PP\(4\) × DP\(1\) needs 256 chips.*72"):
        lay.check_layout(DS3, GB200, Layout(ep=64, pp=4), chips=72)
    with pytest.raises(tm.TokenmathError, match="256 experts do not divide over EP 72: use EP 64 and leave 8 chips idle"):
        lay.check_layout(DS3, GB200, Layout(ep=72))
    with pytest.raises(tm.TokenmathError, match="dense"):
        lay.check_layout(CAT.model("llama-3.1-70b"), H100, Layout(ep=8))
    with pytest.raises(tm.TokenmathError, match="heads do not divide"):
        lay.check_layout(CAT.model("llama-3.1-70b"), H100, Layout(tp=3))
    with pytest.raises(tm.TokenmathError, match="totals only"):
        lay.check_layout(CAT.model("lecture-moe-700b"), GB200, Layout())
    with pytest.raises(tm.TokenmathError, match="scale-out bandwidth"):
        lay.layout_step(DS3, CAT.system("rubin-nvl144"), Layout(ep=128), 128, 1000)


def test_L35_inference_pipelining_is_latency_neutral():
    """L35 (1:00): in inference, pipelining neither helps nor hurts per-token latency (apart from
    hops): the stages' weight fetches sum to the unpipelined one; m = P keeps every stage busy."""
    kw = dict(dtypes=FP8, hop_latency_s=0.0)
    flat = lay.layout_step(DS3, GB200, Layout(ep=64), 1024, 4096, **kw)
    piped = lay.layout_step(DS3, GB200, Layout(ep=64, pp=4), 4096, 4096, **kw)
    assert piped.tokens_per_s_per_user == pytest.approx(flat.tokens_per_s_per_user, rel=0.02)
    assert piped.pipeline_idle_fraction == pytest.approx(0, abs=1e-12)
    starved = lay.layout_step(DS3, GB200, Layout(ep=64, pp=4, microbatches=2), 4096, 4096, **kw)
    assert starved.pipeline_idle_fraction == pytest.approx(0.5)  # m < P leaves stages idle


def test_L34_hop_latency_adds_per_token():
    """L34 (1:15): 4 stages on 4 racks with a hop of ~2.5 ms add ~10 ms per token (the lecture's
    20 -> 30 ms) — a decode token must go around the whole ring. The default hop is 10 µs."""
    kw = dict(dtypes=FP8)
    base = lay.layout_step(DS3, GB200, Layout(ep=64, pp=4), 4 * 512, 4096, hop_latency_s=0.0, **kw)
    slow = lay.layout_step(DS3, GB200, Layout(ep=64, pp=4), 4 * 512, 4096, hop_latency_s=2.5e-3, **kw)
    assert slow.pipeline_hop_latency_s == pytest.approx(10e-3)
    assert slow.network.stage_boundaries_across_domains == 4
    assert slow.step_s - base.step_s == pytest.approx(10e-3, rel=1e-6)
    assert lay.HOP_LATENCY_S_DEFAULT == 10e-6


def test_L27_pipeline_rack_boundary_rule():
    """L27 (50:47): a pipeline boundary between racks is harmless when
    scale-up time / scale-out time = (1/BW ratio) × 2 × k × layers per stage ≥ 1. DeepSeek (k = 8)
    at the lecture's ratio 8: 2·8·1/8 = 2, so one layer per rack suffices; at GB200's 9: 1.78."""
    eight = System("r8", GB200.chip, 72, 800e9, 100e9)
    assert lay.pipeline_boundary_ratio(DS3, eight, 1) == pytest.approx(2.0)
    assert lay.pipeline_boundary_ratio(DS3, GB200, 1) == pytest.approx(16 / 9)
    assert lay.min_layers_per_stage(DS3, GB200) == 1
    slow_net = System("slow", GB200.chip, 72, 900e9, 10e9)
    assert lay.min_layers_per_stage(DS3, slow_net) == 6  # ⌈90/16⌉


def test_Q12_bigger_domain_lowers_latency_floor():
    """Q12 (1:17): weight fetches use every chip of the domain in parallel, so the latency floor
    scales as 1/domain size; more PP does not lower it."""
    f8 = tm.latency_floor_s(DS3, GB200, chips=8)
    f72 = tm.latency_floor_s(DS3, GB200, chips=72)
    assert f8 / f72 == pytest.approx(9)
    one = lay.layout_step(DS3, GB200, Layout(ep=64), 64, 0, hop_latency_s=0)
    four = lay.layout_step(DS3, GB200, Layout(ep=64, pp=4), 64, 0, hop_latency_s=0)
    assert four.step_s == pytest.approx(one.step_s, rel=0.05)


def test_broadcast_over_batch_and_context():
    st = lay.layout_step(DS3, GB200, Layout(ep=64), np.array([1, 64, 4096]), np.array([[1000], [100_000]]))
    assert st.step_s.shape == (2, 3) and st.memory.fits.shape == (2, 3)
    one = lay.layout_step(DS3, GB200, Layout(ep=64), 64, 100_000)
    assert st.step_s[1, 1] == pytest.approx(one.step_s)


@pytest.mark.parametrize("p, m", [(2, 2), (4, 4), (4, 8), (3, 7)])
def test_bubble_formulas_match_simulated_timelines(p, m):
    """GPipe (Huang et al. 2019) and 1F1B (Narayanan et al. 2021): bubble (p−1)/(m+p−1); the
    simulated schedule (F = 1, B = 2 units) has exactly that idle share per stage."""
    for schedule in ("gpipe", "1f1b"):
        rows = lay.timeline(schedule, p, m)
        cells = [r.split(": ")[1] for r in rows]
        idle = sum(c.count(".") for c in cells) / sum(len(c) for c in cells)
        assert idle == pytest.approx(lay.bubble(schedule, p, m).bubble_fraction, rel=1e-12)


def test_bubble_schedules_from_papers():
    """Narayanan et al. 2021 §2.2.2: interleaving v chunks divides the bubble by v; Qi et al. 2024:
    ZB-H1 leaves a third of 1F1B's bubble at 1F1B's memory, ZB-H2 none at ~2p microbatches."""
    p, m = 8, 16
    one = lay.bubble("1f1b", p, m)
    assert one.bubble_fraction == pytest.approx(7 / 23)
    assert lay.bubble("gpipe", p, m).peak_activation_microbatches == m
    assert one.peak_activation_microbatches == p
    inter = lay.bubble("interleaved", p, m, virtual_stages=4)
    assert inter.bubble_fraction == pytest.approx(7 / (4 * 16 + 7))
    zb1 = lay.bubble("zb-h1", p, m)
    assert zb1.bubble_fraction == pytest.approx(7 / (3 * 16 + 7))
    assert lay.bubble("zero-bubble", p, m).bubble_fraction == 0
    with pytest.raises(tm.TokenmathError, match="multiple"):
        lay.bubble("interleaved", 4, 6, 2)
    with pytest.raises(tm.TokenmathError, match="unknown schedule"):
        lay.bubble("dualpipe", 4, 8)


def test_inference_timeline_has_no_idle_slots_in_steady_state():
    rows = lay.timeline("inference", 4, 4)
    assert rows[3].endswith("0123") and rows[0].startswith("stage 0: 0123")


def test_trtllm_kv_cache_is_ninety_percent_of_the_memory_free_after_loading():
    """TensorRT-LLM sizes its KV cache as free_gpu_memory_fraction (default 0.9) of the memory left
    once the engine is loaded (nvidia.github.io/TensorRT-LLM "How to Change KV Cache Behavior"),
    the `kv_budget = "free"` rule of catalog/engines.toml. Measured: NVIDIA/TensorRT-LLM issue #1400
    (2024-04-04), a 7B SmoothQuant engine on one A100 SXM4 80 GB with its engine at 6,683 MiB logged
    "Allocate 69524783104 bytes for k/v cache". Tolerance 5 %: the rule's runtime reserve is
    aiconfigurator's 3.5 GiB for any engine (layout.RUNTIME_RESERVE_BYTES); what that release held
    besides its engine is not in the log, and 2 GiB either way moves the KV 2.6 %. The vLLM-style
    rule (0.9 of all HBM, weights included) is asserted further off (−4.3 % against −2.7 %)."""
    a100 = CAT.system("a100-sxm-80gb")
    one = Layout(tp=1)
    w = 6683 * 2**20
    free_rule = lay.serving_hbm_bytes(a100, one, kv_budget="free", weights_bytes=w) - w
    total_rule = lay.serving_hbm_bytes(a100, one) - w
    assert free_rule == pytest.approx(69_524_783_104, rel=0.05)
    assert abs(free_rule / 69_524_783_104 - 1) < abs(total_rule / 69_524_783_104 - 1)


def test_invariant_the_free_memory_rule_never_holds_less_and_the_planner_uses_the_engines_rule():
    """Invariant (an identity, not a check of truth): weights + 0.9·(HBM − reserve − weights) exceeds
    0.9·HBM − reserve by 0.1·(weights + reserve), so TensorRT-LLM's rule fits at least as many
    sequences; `plan --engine trtllm` and `validate` size batches by it, the generic estimate by
    the total rule; an unknown rule is one sentence."""
    from tokenmath.errors import TokenmathError
    from tokenmath.profiles import engine_features
    from tokenmath.stepmodel import max_batch

    m = CAT.model("llama-3.3-70b")
    for layout in (Layout(tp=2), Layout(tp=4), Layout(tp=8)):
        b_total = max_batch(m, H100, layout, 3000.0, dtypes=FP8)
        b_free = max_batch(m, H100, layout, 3000.0, dtypes=FP8, kv_budget="free")
        mem = lay.layout_memory(m, H100, layout, 1.0, 3000.0, dtypes=FP8)
        gain = 0.1 * (mem.weights_bytes_per_chip + lay.RUNTIME_RESERVE_BYTES + lay.COLLECTIVE_RESERVE_BYTES)
        assert lay.serving_hbm_bytes(H100, layout, kv_budget="free", weights_bytes=mem.weights_bytes_per_chip) \
            == pytest.approx(mem.serving_bytes_per_chip + gain, rel=1e-12)
        assert b_free >= b_total
    assert engine_features("trtllm")["kv_budget"] == "free"
    assert engine_features("vllm")["kv_budget"] == engine_features("sglang")["kv_budget"] == "total"
    with pytest.raises(TokenmathError, match="kv_budget = 'most'; expected one of total, free"):
        lay.serving_hbm_bytes(H100, Layout(tp=2), kv_budget="most")
    from tokenmath.plan import plan_system

    kw = dict(input_tokens=3000.0, output_tokens=500.0, weight_dtypes=["fp8"], layouts=[Layout(tp=2)])
    tops = [float(np.max(plan_system(m, H100, engine=e, **kw)[0]["batch"])) for e in (None, "vllm", "trtllm")]
    b = [max_batch(m, H100, Layout(tp=2), 3250.0, dtypes=FP8, kv_budget=r) for r in ("total", "free")]
    assert tops == [b[0], b[0], b[1]] and b == [71.0, 78.0]  # README's "78 sequences of 3,250 tokens instead of 71"


def test_invariant_one_phrasing_of_each_kv_rule_and_a_too_big_model_named_as_such():
    """Invariant (wording, not a published number): the two KV rules are phrased in one place
    (`layout.kv_budget_words`) and `max_batch`'s refusal uses it; a model whose weights alone exceed a
    chip's HBM is told so, not given a 'usable' budget larger than the HBM (the free rule's
    w + 0.9·(HBM − reserve − w) exceeds the HBM once w does)."""
    from tokenmath.catalog import get_model, get_system
    from tokenmath.errors import TokenmathError
    from tokenmath.layout import kv_budget_words
    from tokenmath.parallelism import Layout
    from tokenmath.stepmodel import max_batch

    assert kv_budget_words("total") == "90 % of HBM less the runtime reserve"
    assert "TensorRT-LLM" in kv_budget_words("free") and kv_budget_words("free", short=True) == "0.9 of free after weights"
    with pytest.raises(TokenmathError, match="kv_budget = 'half'"):
        kv_budget_words("half")
    h100 = get_system("h100-sxm")
    for rule in ("total", "free"):
        with pytest.raises(TokenmathError, match=r"weights take 811\.7 GB a chip, more than its 85\.9 GB of HBM"):
            max_batch(get_model("llama-3.1-405b"), h100, Layout(tp=1), 4096, kv_budget=rule)
        with pytest.raises(TokenmathError, match=re.escape(kv_budget_words(rule))):
            max_batch(get_model("llama-3.1-70b"), h100, Layout(tp=2), 2_000_000, kv_budget=rule)
