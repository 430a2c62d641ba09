"""Wide expert parallelism across domains (issue 25): layouts over many scale-out-connected
domains, redundant experts, node-limited routing, the planner's search — checked against the
production figures DeepSeek and LMSYS published, and invariants of the arithmetic."""

import json
import math
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath.cli import app
from tokenmath.parallelism import Layout, check_layout, redundant_experts_for
from tokenmath.plan import candidate_layouts, plan, plan_system, refine_at_rate, wide_ep_layouts
from tokenmath.profiles import choose
from tokenmath.specs import Dtypes
from tokenmath.stepmodel import alltoall_copies, op_step

CAT = tm.load_catalog()
DS3 = CAT.model("deepseek-v3")
H800 = CAT.system("h800-sxm")
FP8 = Dtypes(weight="fp8")
# DeepSeek's stated engine features (open-infra-index day 6, commit 56d8685): DeepEP kernels
# (low-latency in decode, normal in prefill) and dual micro-batch overlap; the base profile is the
# calibrated generic one — DeepSeek's own engine has no fitted profile.
DEEPSEEK_ENGINE = "generic+deepep_auto+two_batch_overlap"
DAY6 = ("github deepseek-ai/open-infra-index 202502OpenSourceWeek/"
        "day_6_one_more_thing_deepseekV3R1_inference_system_overview.md, commit 56d8685")


def run_json(*args):
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --------------------------------------------------------------------------------------------
# Checks against published production figures
# --------------------------------------------------------------------------------------------


def test_deepseek_decode_throughput_per_node():
    """DeepSeek-V3/R1 decode in production (DAY6): EP144 over 18 H800 nodes with 32 redundant
    experts, DP144 attention, FP8 matmuls and dispatch, BF16 combine; ~14.8k output tokens/s per
    node at an average 20–22 tokens/s per user and a mean KV length of 4,989 tokens per output
    token. As requests (I = 4,383, O = 1,211: I/O = 608 B/168 B and I + O/2 = 4,989, the same as
    tests/test_fleet.py), the estimate's EP144 decode at the largest batch that still gives 20 tokens/s
    per user must give the published rate per node within ±30 % — the issue's window; the published
    figure is a day's average (its occupancy below 1 makes the capacity estimate run high, its MTP
    use, not stated in day 6, would make it run low), so the window cannot be narrower than the day's
    spread. The planner's EP144 points and, between its ~1.25× batch grid steps, the batch that still
    meets the rate (plan.refine_at_rate, what `plan` answers with: the grid alone stops at 59 sequences
    per GPU where 69 meet it).
    Measured (2026-12-07): 74 sequences per GPU, 11.8k per node (−20 %; 69 and 11.1k before the source
    effects of calibrate.SOURCE_EFFECTS were fitted, 68 and 10.9k before the kernel
    curves were fitted with a loss robust to each table's tail; 12.4k, −16 %, before the refits that charge
    a MoE layer without shared experts only its attention's dense kernels and fit decode attention on
    ≤ 32 query heads per KV head: both moved the shared generic scales, kernel floors ×0.90 → ×1.01
    and memory ×0.91 → ×0.86, and DeepSeek-V3's step with them). Dispatch + combine is entirely hidden
    (two micro-batches), so the step is the dense GEMMs, expert GEMMs and MLA attention of the
    busiest rank."""
    cols, _, _ = plan_system(DS3, H800, input_tokens=4383, output_tokens=1211, weight_dtypes=["fp8"],
                             engine=DEEPSEEK_ENGINE, decode_only=True, wide_ep=True)
    cols = {k: v[cols["ep"] == 144] for k, v in cols.items()}
    n = len(cols["batch"])
    cols = refine_at_rate(DS3, {H800.name: H800}, cols, 20, input_tokens=4383, output_tokens=1211,
                          engine=DEEPSEEK_ENGINE, decode_only=True, weight_dtypes=["fp8"])
    assert len(cols["batch"]) > n
    ok = cols["tokens_per_s_per_user"] >= 20
    i = int(np.argmax(np.where(ok, cols["tokens_per_s_per_chip"], 0.0)))
    # the EP144 layout is the published one: 288 slots = 2 routed experts per GPU
    assert cols["redundant_experts"][i] == 32
    per_node = 8 * float(cols["tokens_per_s_per_chip"][i])
    assert per_node == pytest.approx(14_800, rel=0.30)


def test_deepseek_decode_plan_picks_wide_ep():
    """The planner's decode pool for DeepSeek-V3 on H800 at the production load's request shape and
    20 tokens/s per user (DAY6) picks EP over at least 4 nodes, as DeepSeek does (EP144): with
    attention DP and the all-to-all hidden, wider EP divides the expert weights each GPU reads and
    lets the batch grow, which TP8 EP8 inside one node cannot."""
    p = plan(DS3, [H800], input_tokens=4383, output_tokens=1211, min_tokens_per_s_per_user=20,
             weight_dtypes=["fp8"], engine=DEEPSEEK_ENGINE, decode_only=True)
    assert p.best is not None and p.best.ep >= 32 and p.best.tp == 1
    assert 8 * p.best.tokens_per_s_per_chip == pytest.approx(14_800, rel=0.30)


def test_deepseek_prefill_throughput_per_node():
    """DeepSeek-V3/R1 prefill in production (DAY6): EP32 over 4 H800 nodes with 32 redundant
    experts (9 routed + 1 shared per GPU), ~73.7k input tokens/s per node including cache hits,
    56.3 % of input tokens served from the on-disk KV cache. DeepSeek's profile of the same
    deployment runs 16K tokens per GPU per pass (github deepseek-ai/profile-data README, commit
    4496024). A mean request (I = 4,383) prefills its 1,915 uncached tokens after 2,468 cached
    ones; the estimate's computed tokens per node over (1 − 0.563) must land within ±30 % of the
    published rate (the issue's window). Measured (2026-12-07): 95.0k, +28.9 %, since the weight-only MoE
    floor was split by path and the preset refitted (its generic scales moved; DeepSeek's FP8-block MoE
    family itself is unchanged); 97.2k, +31.8 %, an expected failure, while the routing skew was no longer
    fitted and before that refit (95.0k, +29 %, before; 90.9k, +23 %, before the kernel curves were fitted
    with a loss robust to each table's tail): the estimate is the pool's capacity at
    full passes, the published figure a day's average over a pool sized for first-token latency,
    so the estimate lies above it — by the pool's idle share, which DeepSeek does not publish."""
    prof = choose("calibrated", engine=DEEPSEEK_ENGINE, system=H800)
    I, hit = 4383, 0.563
    cached = round(hit * I)
    new = I - cached
    lay = Layout(ep=32, redundant_experts=32)
    check_layout(DS3, H800, lay)
    assert (256 + 32) / 32 == 9  # 9 routed experts per GPU, as published
    op = op_step(DS3, H800, lay, 32 * 16384 / new, cached, new, kernels=prof.kernels, engine=prof.engine, dtypes=FP8)
    per_node_incl_hits = 8 * 16384 / op.step_s / (1 - hit)
    assert per_node_incl_hits == pytest.approx(73_700, rel=0.30)
    assert op.ep_comm_s > 0 and op.overlap_s < 0  # dispatch/combine: its own term, hidden by the other micro-batch


def test_lmsys_96_h100_prefill_and_decode_per_node():
    """LMSYS, 'Deploying DeepSeek with PD Disaggregation and Large-scale Expert Parallelism on 96
    H100 GPUs' (2025-05-05, github lm-sys/lm-sys.github.io blog/2025-05-05-large-scale-ep.md, stored
    commit 2db4e40): prefill on 4 nodes (EP32), 16,384 tokens per device of 4,096-token prompts,
    50,302 input tokens/s per node; decode on 9 nodes (EP72), 256 sequences per device at 2,000
    tokens of KV, 22,282 output tokens/s per node (SGLang, DeepEP normal / low-latency, two-batch
    overlap: validation/case_features.toml). Through `tokenmath layout` (EP72 takes 32 redundant
    experts: 288 = 4 × 72), each within ±30 % (the issue's window). These two measurements are
    among the calibration cases (validation/cases: eng-sglang-lsep-dsv3-h100-ep32-prefill-4k,
    vis-sglang-dsv3-h100-ep72-decode), so this checks that `layout` answers as the validated pass
    does, not an out-of-sample prediction."""
    pre = run_json("layout", "--model", "deepseek-v3", "--system", "h100-sxm", "--chips", "32", "--ep", "32",
                   "--batch", "128", "--context", "0", "--new-tokens", "4096", "--weight-dtype", "fp8",
                   "--engine", "sglang+deepep_normal+two_batch_overlap")
    assert 8 * pre["tokens_per_s_per_chip"] == pytest.approx(50_302, rel=0.30)
    assert pre["expert_parallel"]["mode"] == "normal" and pre["parts"]["ep_comm_s"] > 0
    dec = run_json("layout", "--model", "deepseek-v3", "--system", "h100-sxm", "--chips", "72", "--ep", "72",
                   "--batch", str(72 * 256), "--context", "2000", "--weight-dtype", "fp8",
                   "--engine", "sglang+deepep_low_latency+two_batch_overlap")
    assert dec["expert_parallel"]["redundant_experts"] == 32 and dec["expert_parallel"]["mode"] == "low_latency"
    assert 8 * dec["tokens_per_s_per_chip"] == pytest.approx(22_282, rel=0.30)


def test_h800_catalog_entry_is_sourced():
    """The H800 node DeepSeek served on: NVLink 400 GB/s bidirectional = 200 GB/s one way (H100's
    900 cut for export; aiconfigurator h800_sxm.yaml, reference/hardware.jsonl), one 400 Gb/s CX7
    InfiniBand NIC per GPU, "~50 GB/s maximum" (github deepseek-ai/DeepEP docs/legacy.md, commit
    dd758ca; "IB (50 GB/s)" in the DeepSeek-V3 technical report, arXiv 2412.19437 §3.2.2), 8 GPUs
    per node; compute and HBM as H100 SXM. Exact: these are the sources' numbers."""
    assert H800.scaleup_chips == 8
    assert H800.scaleup_bytes_per_s == 200e9 and H800.scaleout_bytes_per_s == 50e9
    assert H800.chip.hbm_bytes_per_s == 3.35e12 and H800.chip.flops_per_s("fp8") == 1979e12


# --------------------------------------------------------------------------------------------
# The CLI answers with the cross-node terms
# --------------------------------------------------------------------------------------------


def test_layout_ep144_answers_with_cross_node_terms():
    """`layout --ep 144 --chips 144` on H800: 32 redundant experts are added (256 do not divide
    over 144), the EP group spans 18 nodes, every token's copies are split between NVLink and
    InfiniBand, and dispatch/combine is its own named term in the text and the JSON."""
    args = ["layout", "--model", "deepseek-v3", "--system", "h800-sxm", "--ep", "144", "--chips", "144",
            "--batch", str(144 * 64), "--context", "4989", "--weight-dtype", "fp8", "--engine", DEEPSEEK_ENGINE]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "EP 144 over 18 × 8-chip domains" in res.stdout and "dispatch + combine" in res.stdout
    assert "32 redundant" in res.stdout and "node-limited routing" in res.stdout
    d = run_json(*args)["expert_parallel"]
    assert d["domains"] == 18 and d["expert_slots"] == 288 and d["experts_per_chip"] == 2
    assert d["low_latency_copies_across"] == pytest.approx(8 * (1 - 8 / 144))
    assert d["ep_comm_s"] > 0 and d["kv_room_bytes_per_chip"] > 0
    assert not d["node_limited"]  # 18 nodes do not divide 8 groups: EPLB's global policy


@pytest.mark.parametrize("args, fragment", [
    (["--ep", "144", "--chips", "144", "--redundant-experts", "0"], "32 redundant experts make 288"),
    (["--ep", "8", "--chips", "8", "--redundant-experts", "300"], "exceed the model's 256 experts"),
    (["--tp", "8", "--chips", "8", "--redundant-experts", "8"], "need expert parallelism"),
    (["--ep", "144", "--chips", "144", "--redundant-experts", "-1"], "--redundant-experts"),
])
def test_layout_redundant_expert_errors(args, fragment):
    res = CliRunner().invoke(app, ["layout", "--model", "deepseek-v3", "--system", "h800-sxm", *args])
    assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.output


# --------------------------------------------------------------------------------------------
# Invariants of the arithmetic
# --------------------------------------------------------------------------------------------


def test_invariant_node_limited_routing_matches_sampling():
    """DeepSeek-V3's group-limited routing (its config.json: n_group 8, topk_group 4) with whole
    groups packed onto domains (EPLB's hierarchical policy): EP32 over 4 nodes, 2 groups per node.
    The distinct remote nodes a token reaches, sampled (4 of 8 groups, then 8 experts of the 4
    groups' 128), is at most the closed form's count, which takes every chosen group to be used,
    and within 10 % of it (invariant of the closed form against sampling)."""
    assert (DS3.moe.n_group, DS3.moe.topk_group) == (8, 4)
    rng = np.random.default_rng(3)
    n, E, ep, dom = 20000, 256, 32, 8
    groups = np.argsort(rng.random((n, 8)), axis=1)[:, :4]
    experts = np.stack([rng.choice(128, 8, replace=False) for _ in range(n)])
    chosen = groups[np.arange(n)[:, None], experts // 32] * 32 + experts % 32
    node = chosen // (E // 4)  # groups 0-1 on node 0, 2-3 on node 1, ...
    sampled = np.mean([len(set(x) - {0}) for x in node])
    _, closed = alltoall_copies("ht", ep, dom, 8, E, groups=(8, 4))
    _, free = alltoall_copies("ht", ep, dom, 8, E)
    assert sampled <= float(closed) + 0.02 and float(closed) == pytest.approx(sampled, rel=0.10)
    assert float(closed) < float(free)  # the limit lowers the traffic


def test_invariant_redundant_experts_cost_memory_not_correctness():
    """Redundant copies add (E + R)/E to the expert bytes per chip and nothing to the rest;
    redundant_experts_for gives the fewest that divide (invariant)."""
    from tokenmath.layout import layout_memory

    assert redundant_experts_for(256, 144) == 32 and redundant_experts_for(256, 32) == 0
    assert redundant_experts_for(256, 72) == 32 and redundant_experts_for(256, 1) == 0
    a = layout_memory(DS3, H800, Layout(ep=32), 1.0, 4096, dtypes=FP8)
    b = layout_memory(DS3, H800, Layout(ep=32, redundant_experts=32), 1.0, 4096, dtypes=FP8)
    assert b.expert_bytes_per_chip == pytest.approx(a.expert_bytes_per_chip * 288 / 256, rel=1e-12)
    assert b.dense_bytes_per_chip == a.dense_bytes_per_chip


def test_invariant_wide_ep_layouts_are_valid_and_bounded():
    """Every wide-EP candidate passes check_layout, spans whole domains, stays within 320 chips and
    12.5 % redundant experts; systems without a scale-out link get only one whole domain (EP72 on
    an NVL72-class rack with 32 redundant experts), dense models none (invariant)."""
    for s in CAT.systems.values():
        lays = wide_ep_layouts(DS3, s)
        assert len(lays) <= 13 * 4
        for lay in lays:
            check_layout(DS3, s, lay)
            assert lay.ep % s.scaleup_chips == 0 and lay.ep <= 320 and lay.redundant_experts <= 32
        if not s.scaleout_bytes_per_s:
            assert all(lay.ep == s.scaleup_chips for lay in lays)
    nvl = wide_ep_layouts(DS3, CAT.system("gb200-nvl72"))
    assert Layout(tp=1, ep=72, redundant_experts=32) in nvl
    assert wide_ep_layouts(CAT.model("llama-3.1-70b"), H800) == []
    assert any(x.ep == 144 for x in candidate_layouts(DS3, H800, wide_ep=True))
    assert not any(x.redundant_experts for x in candidate_layouts(DS3, H800))  # off unless asked


def test_plan_search_with_wide_ep_stays_fast():
    """The planner's search over every catalog system for DeepSeek-V3, wide-EP layouts included,
    takes at most 1 s of CPU (the issue's target; benchmarks/bench_wide_ep.py measures it beside
    the search without wide EP). Best of 2, to shed a cold cache."""
    systems = list(CAT.systems.values())
    best = math.inf
    for _ in range(2):
        t0 = time.process_time()
        plan(DS3, systems, input_tokens=2000, output_tokens=500)
        best = min(best, time.process_time() - t0)
    assert best <= 1.0


def test_invariant_fleet_wide_ep_reason_counts_ep_groups_not_pipeline_stages():
    """Invariant: a fleet's `wide_ep_reason` names the pools whose EP group (a pipeline stage,
    max(TP, EP) chips) spans more than one scale-up domain. A TP1 EP8 PP2 replica on 8-GPU nodes
    crosses nodes only by pipeline transfers, so it is not wide EP; TP1 EP16 is, over 2 domains."""
    from types import SimpleNamespace

    from tokenmath import fleet as fl

    by = {"h800-sxm": H800}

    def pool(ep, pp):
        return fl.Pool(role="decode", system="h800-sxm", replicas=1, chips_per_replica=ep * pp,
                       billed_chips_per_replica=ep * pp, tp=1, ep=ep, pp=pp, dp=1, max_batch=1,
                       weight_dtype="fp8", kv_dtype="bf16", capacity_requests_per_s=1.0, step_s=1.0,
                       usd_per_hour=None)

    assert not fl._spans_domains(pool(8, 2), by)
    assert fl._spans_domains(pool(16, 2), by) and fl._spans_domains(pool(32, 1), by)
    narrow, wide = (SimpleNamespace(pools=(pool(8, 2),), usd_per_hour=None, total_chips=16),
                    SimpleNamespace(pools=(pool(16, 2),), usd_per_hour=None, total_chips=32))
    assert fl._wide_ep_reason(narrow, [narrow], by, lambda o: o.total_chips) == ""
    why = fl._wide_ep_reason(wide, [wide, narrow], by, lambda o: o.total_chips)
    assert "decode EP16 over 2 scale-up domains of 8" in why and "inside one domain screens at 16 chips" in why
