"""Parallelism arithmetic: how a model is laid out on chips, what each chip holds, and the
network terms of a step (the lecture's 32:00–1:18).

A layout is TP × EP × PP × DP (parallelism.py: the Layout type, placement, the divisor rules and
link choice, re-exported here). Inside one pipeline stage `stage_chips = max(TP, EP)` chips hold
that stage's layers: the routed experts are split over all of them, attention/dense weights are
split TP ways and replicated over the remaining `attention_dp = stage_chips / TP` ranks.

Network terms per decode step, per chip (bandwidths one direction, per chip):
    MoE all-to-all   tokens × k × hidden × bytes × 2 (dispatch + combine) × (EP−1)/EP per MoE layer,
                     split between the scale-up links and — for the share of experts outside the
                     chip's domain — the scale-out NIC; the two run in parallel (max)
    TP all-reduce    2 per layer, ring: 2·(TP−1)/TP × tokens × hidden × bytes / link bandwidth
    PP transfer      tokens × hidden × bytes per stage boundary, plus a hop latency per boundary
                     crossing between domains, once per token (decode is sequential)
Overlap with compute is an explicit assumption: "none" adds the network time, "full" takes the max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
# the vocabulary lives in parallelism.py; re-exported so `tokenmath.layout.Layout` etc. keep working
from .parallelism import (HOP_LATENCY_S_DEFAULT, Layout, Layouts, Placement, check_layout,  # noqa: F401
                          kv_head_split, largest_divisor_at_most, link_bytes_per_s, placement)
from .params import param_counts
from .roofline import resolve_dtypes, slopes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .units import dtype_bytes

# Activations and communication buffers are transient and small in decode: per token in flight on
# a chip, ACTIVATION_BUFFERS hidden-sized vectors (residual, normed input, attention and MLP
# outputs) plus, for MoE, k received copies. An estimate of tokenmath's, labelled as such.
ACTIVATION_BUFFERS = 4

# What a serving engine may fill with weights, KV and activations: SERVING_HBM_FRACTION of HBM
# (vLLM's EngineArgs default gpu_memory_utilization is 0.90, vllm/engine/arg_utils.py) less what the
# process holds besides — the runtime's context, library workspaces and safety margin
# (RUNTIME_RESERVE_BYTES, aiconfigurator's "other_mem", 3.5 GiB) and, once a replica spans several
# chips, the collective library's buffers (COLLECTIVE_RESERVE_BYTES, its "nccl_mem" at 4 and 8
# GPUs, 392 MiB): github ai-dynamo/aiconfigurator, aiconfigurator-core 0.12.0 systems/h100_sxm.yaml
# and h200_sxm.yaml, "misc". aiconfigurator's figures are for NVIDIA GPUs; they are used for every
# chip for want of a per-vendor source (an assumption).
SERVING_HBM_FRACTION = 0.9
RUNTIME_RESERVE_BYTES = 3.5 * 2**30
COLLECTIVE_RESERVE_BYTES = 392 * 2**20
# Of what the fraction is taken (an engine feature, catalog/engines.toml `kv_budget`):
#   "total"  of all HBM, weights included (vLLM's gpu_memory_utilization, SGLang's
#            mem_fraction_static): weights, KV and activations fill fraction · HBM − reserve
#   "free"   of the memory left free once the weights and the runtime are loaded (TensorRT-LLM's
#            KvCacheConfig.free_gpu_memory_fraction): weights + fraction · (HBM − reserve − weights)
KV_BUDGETS = ("total", "free")


@dataclass(frozen=True)
class LayoutMemory:
    """Bytes one chip holds (the busiest chip of a balanced layout)."""

    weights_bytes_per_chip: float
    expert_bytes_per_chip: float
    dense_bytes_per_chip: float  # attention, dense MLP, shared experts, embeddings (replicated over attention DP)
    kv_bytes_per_chip: float | np.ndarray
    activation_bytes_per_chip: float | np.ndarray
    total_bytes_per_chip: float | np.ndarray
    hbm_bytes_per_chip: float
    fits: bool | np.ndarray  # total ≤ HBM: the bound's test
    sequences_per_chip: float | np.ndarray
    serving_bytes_per_chip: float | np.ndarray = math.inf  # what an engine may fill (serving_hbm_bytes)
    serves: bool | np.ndarray = True  # total ≤ serving_bytes_per_chip: the estimate's test


def reserve_bytes(layout):
    """Bytes per chip the runtime keeps for itself: RUNTIME_RESERVE_BYTES and, on a replica of several
    chips, COLLECTIVE_RESERVE_BYTES (above); a number, or an array over Layouts."""
    many = np.asarray(layout.replica_chips) > 1
    out = RUNTIME_RESERVE_BYTES + np.where(many, COLLECTIVE_RESERVE_BYTES, 0.0)
    return float(out) if np.ndim(out) == 0 else out


def kv_budget_words(kv_budget: str, fraction: float = SERVING_HBM_FRACTION, *, short: bool = False) -> str:
    """What an engine may fill under its KV rule, in words (`short`: a table cell) — the one place
    the two rules of KV_BUDGETS are phrased for people (max_batch's error, client, engines)."""
    if kv_budget == "free":
        return (f"{fraction:g} of free after weights" if short else
                f"{fraction * 100:.0f} % of what the weights and the runtime reserve leave free, TensorRT-LLM's rule")
    if kv_budget == "total":
        return f"{fraction:g} of HBM" if short else f"{fraction * 100:.0f} % of HBM less the runtime reserve"
    raise TokenmathError(f"kv_budget = {kv_budget!r}; expected one of {', '.join(KV_BUDGETS)}")


def serving_hbm_bytes(system: System, layout, fraction: float = SERVING_HBM_FRACTION, *, kv_budget: str = "total",
                      weights_bytes=0.0):
    """Bytes per chip a serving engine fills with weights, KV and activations: `fraction` of HBM less
    the runtime's reserve and, on a replica of several chips, the collective buffers (above); with
    kv_budget "free" (TensorRT-LLM), the weights per chip (`weights_bytes`) plus `fraction` of what
    they and the reserve leave free. `layout`: a Layout, or Layouts (an array, one row per layout)."""
    reserve = reserve_bytes(layout)
    if kv_budget == "free":
        w = np.asarray(weights_bytes, float)
        out = w + fraction * (system.chip.hbm_bytes - reserve - w)
    elif kv_budget == "total":
        out = system.chip.hbm_bytes * fraction - reserve
    else:
        raise TokenmathError(f"kv_budget = {kv_budget!r}; expected one of {', '.join(KV_BUDGETS)}")
    return float(out) if np.ndim(out) == 0 else out


@lru_cache(maxsize=4096)
def _weight_split(model: Model, weight_dtype: str | None) -> tuple[float, float]:
    """(routed-expert bytes, everything-else bytes) at the chosen or native dtype."""
    from .params import weight_bytes

    total = weight_bytes(model, weight_dtype)
    pc = param_counts(model)
    experts = (pc.routed_experts or 0) * dtype_bytes(weight_dtype or model.weight_dtype)
    return experts, total - experts


def layout_memory(model: Model, system: System, layout: Layout, batch, context, *, dtypes: Dtypes = Dtypes(),
                  new_tokens: float = 1.0, kv_budget: str = "total") -> LayoutMemory:
    """Memory per chip. Weights: experts·(E + R)/E / (stage_chips·PP) + the rest / (TP·PP), R the
    layout's redundant expert copies. KV: the batch of one
    replica, B = m·b sequences, spread over PP stages (each holds its layers) and over attention-DP
    ranks and KV-head shards: B·kv(L) / (PP·attention_dp·head_split). With B = PP·b the PP cancels:
    pipelining divides weight memory per chip, not KV memory per chip (the lecture's 1:08 result).
    kv_budget: how the engine sizes what it may fill (serving_hbm_bytes, `serves`)."""
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    experts, dense = _weight_split(model, dtypes.weight)
    if model.moe is not None:  # redundant copies (EPLB) add R expert slots to the E routed experts
        experts = experts * (model.moe.n_experts + layout.redundant_experts) / model.moe.n_experts
    e_chip = experts / (layout.stage_chips * layout.pp)
    d_chip = dense / (layout.tp * layout.pp)
    B = np.asarray(batch, float)
    kvc = kv_cache(model, np.asarray(context, float) + new_tokens, kv)
    shards = layout.pp * layout.attention_dp * kv_head_split(model, layout)
    kv_chip = B * np.asarray(kvc.stored_bytes) / shards
    tokens_in_flight = B / layout.m * new_tokens / layout.attention_dp
    per_token = model.hidden * 2.0 * (ACTIVATION_BUFFERS + (model.moe.k if model.moe else 0))
    act = tokens_in_flight * per_token
    total = e_chip + d_chip + kv_chip + act
    hbm = system.chip.hbm_bytes
    usable = serving_hbm_bytes(system, layout, kv_budget=kv_budget, weights_bytes=e_chip + d_chip)
    return LayoutMemory(
        weights_bytes_per_chip=e_chip + d_chip, expert_bytes_per_chip=e_chip, dense_bytes_per_chip=d_chip,
        kv_bytes_per_chip=_s(kv_chip), activation_bytes_per_chip=_s(act), total_bytes_per_chip=_s(total),
        hbm_bytes_per_chip=hbm, fits=_b(total <= hbm), sequences_per_chip=_s(B / (layout.pp * layout.attention_dp)),
        serving_bytes_per_chip=usable, serves=_b(total <= usable),
    )


@dataclass(frozen=True)
class Network:
    """Seconds per decode token (summed over the stages a token crosses), per chip."""

    all_to_all_s: float | np.ndarray
    tp_allreduce_s: float | np.ndarray
    pp_transfer_s: float | np.ndarray
    pipeline_hop_latency_s: float
    scale_out_fraction: float  # share of all-to-all traffic that leaves the scale-up domain
    domains_per_replica: int
    stage_boundaries_across_domains: int

    @property
    def network_s(self):
        return self.all_to_all_s + self.tp_allreduce_s + self.pp_transfer_s + self.pipeline_hop_latency_s


def network_terms(model: Model, system: System, layout: Layout, batch, *, new_tokens: float = 1.0,
                  act_dtype: str = "bf16", efficiency: Efficiency = ROOFLINE,
                  hop_latency_s: float = HOP_LATENCY_S_DEFAULT) -> Network:
    """The network time a token's forward pass spends, per chip, summed over the PP stages."""
    h = model.hidden
    b_act = dtype_bytes(act_dtype)
    dom = system.scaleup_chips
    tokens = np.asarray(batch, float) / layout.m * new_tokens  # one microbatch
    per_chip_tokens = tokens / layout.stage_chips  # each chip sends its share of the microbatch
    eff = efficiency.network

    # MoE all-to-all
    a2a = np.zeros_like(per_chip_tokens)
    f_out = 0.0
    if model.moe is not None and layout.ep > 1:
        in_domain = min(layout.ep, dom)
        f_out = 1.0 - in_domain / layout.ep
        moe_layers = sum(model.layer_moe)
        bytes_ = per_chip_tokens * model.moe.k * h * b_act * 2.0 * (layout.ep - 1) / layout.ep
        t_up = bytes_ * (1 - f_out) / link_bytes_per_s(system, False, "an expert-parallel all-to-all")
        t_out = bytes_ * f_out / link_bytes_per_s(system, True, f"EP {layout.ep} across {dom}-chip domains") if f_out else 0.0
        a2a = np.maximum(t_up, t_out) * moe_layers / eff

    # TP all-reduce: 2 per layer, ring
    ar = np.zeros_like(per_chip_tokens)
    if layout.tp > 1:
        bw = link_bytes_per_s(system, layout.tp > dom, f"TP {layout.tp}")
        rank_tokens = tokens / layout.attention_dp
        ar = 2 * model.n_layers * 2 * (layout.tp - 1) / layout.tp * rank_tokens * h * b_act / bw / eff

    # PP boundaries: which stage boundaries fall between domains
    crossings = 0
    pp_t = np.zeros_like(per_chip_tokens)
    place = placement(layout, system)
    if layout.pp > 1:
        for i in range(layout.pp):  # the last boundary closes the ring back to stage 0
            across = place.stage_domain[i] != place.stage_domain[(i + 1) % layout.pp] or layout.stage_chips > dom
            crossings += across
            bw = link_bytes_per_s(system, across, "a pipeline boundary between domains") if across else (
                system.scaleup_bytes_per_s or link_bytes_per_s(system, False, "a pipeline boundary"))
            pp_t = pp_t + per_chip_tokens * h * b_act / bw / eff
    hops = crossings * hop_latency_s
    domains = place.domains
    return Network(
        all_to_all_s=_s(a2a), tp_allreduce_s=_s(ar), pp_transfer_s=_s(pp_t), pipeline_hop_latency_s=hops,
        scale_out_fraction=f_out, domains_per_replica=domains, stage_boundaries_across_domains=crossings,
    )


@dataclass(frozen=True)
class LayoutStep:
    """A decode (or prefill) step of one replica under a layout."""

    layout: Layout
    batch: float | np.ndarray
    context: float | np.ndarray
    new_tokens: float | np.ndarray
    compute_s: float | np.ndarray  # per token, summed over stages
    weights_s: float | np.ndarray
    kv_s: float | np.ndarray
    network_s: float | np.ndarray
    all_to_all_s: float | np.ndarray
    pipeline_hop_latency_s: float
    stage_s: float | np.ndarray  # one stage, one microbatch
    step_s: float | np.ndarray  # time between a sequence's tokens (a full round of the pipeline)
    pipeline_idle_fraction: float | np.ndarray  # stage time lost because m < PP
    bound: str | np.ndarray
    tokens_per_s: float | np.ndarray  # per replica
    tokens_per_s_per_chip: float | np.ndarray
    tokens_per_s_per_user: float | np.ndarray
    usd_per_mtok: float | np.ndarray | None
    memory: LayoutMemory
    network: Network
    overlap: str
    hop_latency_s: float
    chips: int  # chips a replica uses
    billed_chips: float  # ... plus the idle chips its placement strands (what tokens/s per chip and $ count)
    placement: Placement


def layout_step(model: Model, system: System, layout: Layout, batch, context, *, new_tokens: float = 1.0,
                dtypes: Dtypes = Dtypes(), efficiency: Efficiency = ROOFLINE, overlap: str = "none",
                hop_latency_s: float = HOP_LATENCY_S_DEFAULT, usd_per_chip_hour: float | None = None,
                act_dtype: str = "bf16", check: bool = True) -> LayoutStep:
    """Roofline step of one replica laid out as `layout`, `batch` sequences (all microbatches),
    broadcasting over batch and context.

    Per stage and microbatch of b = B/m sequences, per chip:
        compute = b·S·c₁(L) / (PP · stage_chips)           c₁ = one sequence's compute on one chip
        weights = that chip's weight bytes / BW            (re-read for every microbatch)
        kv      = its KV share for the microbatch / BW
        stage   = max(compute, weights + kv) + network   (overlap "none"; "full": max of all three)
    A sequence's next token needs every stage once plus the hops: PP·stage + hops; with m ≥ PP
    microbatches the stages stay busy and a round takes max(m·stage, PP·stage + hops).
    """
    if overlap not in ("none", "full"):
        raise TokenmathError(f"overlap = {overlap!r}; expected 'none' or 'full'")
    if not (hop_latency_s >= 0 and math.isfinite(hop_latency_s)):
        raise TokenmathError(f"hop latency = {hop_latency_s!r} s must be >= 0")
    if check:
        check_layout(model, system, layout)
    B = np.asarray(batch, float)
    if np.any(B < 1):
        raise TokenmathError(f"batch = {batch!r} must be >= 1 sequence per replica")
    L = np.asarray(context, float)
    new_tokens = np.asarray(new_tokens, float)
    if np.any(new_tokens < 1):
        raise TokenmathError(f"new tokens = {new_tokens!r} must be >= 1 per sequence")
    pp, m = layout.pp, layout.m
    one = slopes(model, system, L, chips=1, dtypes=dtypes, efficiency=efficiency)
    mem = layout_memory(model, system, layout, B, L, dtypes=dtypes, new_tokens=new_tokens)
    bw = system.chip.hbm_bytes_per_s * efficiency.hbm
    b = B / m
    compute = b * new_tokens * np.asarray(one.compute_s_per_seq) / (pp * layout.stage_chips)
    weights = mem.weights_bytes_per_chip / bw
    shards = pp * layout.attention_dp * kv_head_split(model, layout)
    kv = b * np.asarray(one.kv_bytes_per_seq) / shards / bw
    net = network_terms(model, system, layout, B, new_tokens=new_tokens, act_dtype=act_dtype, efficiency=efficiency,
                        hop_latency_s=hop_latency_s)
    net_stage = (net.all_to_all_s + net.tp_allreduce_s + net.pp_transfer_s) / pp
    memory = weights + kv
    if overlap == "full":
        stage = np.maximum(np.maximum(compute, memory), net_stage)
    else:
        stage = np.maximum(compute, memory) + net_stage
    latency = pp * stage + net.pipeline_hop_latency_s
    step = np.maximum(m * stage, latency)
    idle = 1.0 - (m * stage) / step
    bound_idx = np.where(net_stage > np.maximum(compute, memory), 2, np.where(compute >= memory, 0, 1))
    tokens_per_s = B * new_tokens / step
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    place = placement(layout, system)
    chips = place.billed_chips
    usd = None if price is None else step * chips * price / 3600.0 / (B * new_tokens) * 1e6
    shape = np.shape(step)

    def bc(x):
        return _s(x if np.shape(x) == shape else np.broadcast_to(x, shape))

    return LayoutStep(
        layout=layout, batch=bc(B), context=bc(L), new_tokens=bc(new_tokens),
        compute_s=bc(pp * compute), weights_s=bc(pp * weights), kv_s=bc(pp * kv),
        network_s=bc(pp * net_stage + net.pipeline_hop_latency_s), all_to_all_s=bc(net.all_to_all_s),
        pipeline_hop_latency_s=net.pipeline_hop_latency_s, stage_s=bc(stage), step_s=bc(step),
        pipeline_idle_fraction=bc(idle), bound=_str(np.broadcast_to(np.array(["compute", "memory", "network"])[bound_idx], shape)),
        tokens_per_s=bc(tokens_per_s), tokens_per_s_per_chip=bc(tokens_per_s / chips),
        tokens_per_s_per_user=bc(new_tokens / step), usd_per_mtok=None if usd is None else bc(usd),
        memory=mem, network=net, overlap=overlap, hop_latency_s=hop_latency_s, chips=layout.replica_chips,
        billed_chips=chips, placement=place,
    )


# --------------------------------------------------------------------------------------------
# The lecture's rules, as functions
# --------------------------------------------------------------------------------------------


def pipeline_boundary_ratio(model: Model, system: System, layers_per_stage: float) -> float:
    """Scale-up time ÷ scale-out time for one token crossing a pipeline boundary between racks
    (lecture 50:47): inside the rack each MoE layer all-to-alls 2·k hidden vectors over scale-up,
    the boundary sends one over scale-out, so the ratio is 2·k·layers_per_stage·BW_out/BW_up.
    At ≥ 1 the rack boundary is not the bottleneck."""
    if model.moe is None:
        raise TokenmathError(f"{model.name} is dense: the rule compares MoE all-to-all traffic with a pipeline hop")
    up = link_bytes_per_s(system, False, "the pipeline-boundary rule")
    out = link_bytes_per_s(system, True, "the pipeline-boundary rule")
    return 2.0 * model.moe.k * layers_per_stage * out / up


def min_layers_per_stage(model: Model, system: System) -> int:
    """Fewest MoE layers per pipeline stage for which a rack boundary costs no more than the
    all-to-all inside the rack: ⌈BW_up / (2·k·BW_out)⌉."""
    return max(1, math.ceil(1.0 / pipeline_boundary_ratio(model, system, 1.0) - 1e-12))


def _s(x):
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a


def _b(x):
    a = np.asarray(x)
    return bool(a) if a.ndim == 0 else a


def _str(x):
    a = np.asarray(x)
    return str(a) if a.ndim == 0 else a


# --------------------------------------------------------------------------------------------
# Pipeline schedules for training: bubbles, memory, and a timeline
# --------------------------------------------------------------------------------------------

SCHEDULES = {
    "gpipe": "Huang et al. 2019, GPipe (arXiv 1811.06965): all forwards, then all backwards; bubble (p−1)/(m+p−1)",
    "1f1b": "Narayanan et al. 2021, PipeDream-Flush / 1F1B (arXiv 2006.09503; Megatron-LM arXiv 2104.04473 §2.2): "
            "same bubble as GPipe, activations of p microbatches instead of m",
    "interleaved": "Narayanan et al. 2021, Megatron-LM interleaved 1F1B (arXiv 2104.04473 §2.2.2): v model chunks "
                   "per device shrink the bubble to (p−1)/v microbatch-times: (p−1)/(v·m+p−1)",
    "zb-h1": "Qi et al. 2024, Zero Bubble Pipeline Parallelism (arXiv 2401.10241), ZB-H1: splitting backward into B "
             "and W leaves (p−1)·T_F of bubble, a third of 1F1B's, at 1F1B's memory",
    "zero-bubble": "Qi et al. 2024 (arXiv 2401.10241), ZB-H2: no bubble in steady state (m ≥ p) for about twice "
                   "1F1B's activation memory (2p microbatches)",
}


@dataclass(frozen=True)
class Bubble:
    schedule: str
    pp: int
    microbatches: int
    virtual_stages: int
    bubble_fraction: float  # idle share of the step, per device
    peak_activation_microbatches: float  # microbatches of activations a stage holds at once
    source: str


def bubble(schedule: str, pp: int, microbatches: int, virtual_stages: int = 1) -> Bubble:
    """Bubble fraction and activation memory of a training pipeline schedule, from its paper.
    Units: forward = 1, backward = 2 (B and W = 1 each for the zero-bubble schedules)."""
    if schedule not in SCHEDULES:
        raise TokenmathError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    for name, v in (("PP", pp), ("microbatches", microbatches), ("virtual stages", virtual_stages)):
        if int(v) != v or v < 1:
            raise TokenmathError(f"{name} = {v!r} must be a whole number >= 1")
    p, m, v = int(pp), int(microbatches), int(virtual_stages)
    if schedule != "interleaved" and v != 1:
        raise TokenmathError(f"virtual stages = {v} applies to the interleaved schedule only")
    if schedule == "gpipe":
        frac, mem = (p - 1) / (m + p - 1), m
    elif schedule == "1f1b":
        frac, mem = (p - 1) / (m + p - 1), min(m, p)
    elif schedule == "interleaved":
        if m % p:
            raise TokenmathError(f"interleaved 1F1B needs microbatches ({m}) to be a multiple of PP ({p})")
        frac, mem = (p - 1) / (v * m + p - 1), min(m, p) * (1 + (p - 1) / (p * v))
    elif schedule == "zb-h1":
        frac, mem = (p - 1) / (3 * m + p - 1), min(m, p)
    else:  # zero-bubble (ZB-H2)
        frac = 0.0 if m >= p else (p - m) / p
        mem = min(m, 2 * p - 1)
    return Bubble(schedule, p, m, v, float(frac), float(mem), SCHEDULES[schedule])


def timeline(schedule: str, pp: int, microbatches: int) -> list[str]:
    """An ASCII timeline (one row per stage, one column per forward-time unit) like the lecture's
    diagram: digits are forward passes of microbatch n, letters their backward passes (two units),
    '.' is the bubble. Drawn for 'gpipe', '1f1b' and 'inference' (forward only, m ≥ PP)."""
    p, m = int(pp), int(microbatches)
    if p < 1 or m < 1:
        raise TokenmathError("PP and microbatches must be >= 1")
    if p * m > 4000:
        raise TokenmathError(f"a timeline of {p} stages × {m} microbatches is too large to draw; use <= 4000")
    sym_f = lambda i: "0123456789"[i % 10]  # noqa: E731
    sym_b = lambda i: "abcdefghij"[i % 10]  # noqa: E731
    rows: list[list[str]] = [[] for _ in range(p)]
    if schedule == "inference":
        for s in range(p):
            rows[s] = ["."] * s + [sym_f(i) for i in range(m)] + ["."] * (p - 1 - s)
        return [f"stage {s}: " + "".join(r) for s, r in enumerate(rows)]
    if schedule not in ("gpipe", "1f1b"):
        raise TokenmathError(f"timelines are drawn for gpipe, 1f1b and inference, not {schedule!r}")
    # event simulation: each stage runs its op list in order; an op starts when its input is ready
    ops = []
    for s in range(p):
        if schedule == "gpipe":
            seq = [("F", i) for i in range(m)] + [("B", i) for i in reversed(range(m))]
        else:
            warm = min(p - s - 1, m)
            seq = [("F", i) for i in range(warm)]
            f, b = warm, 0
            while b < m:
                if f < m:
                    seq.append(("F", f))
                    f += 1
                seq.append(("B", b))
                b += 1
        ops.append(seq)
    done: dict[tuple[str, int, int], int] = {}
    clock = [0] * p
    pending = [0] * p
    progressed = True
    while progressed:
        progressed = False
        for s in range(p):
            while pending[s] < len(ops[s]):
                kind, i = ops[s][pending[s]]
                dep = ("F", s - 1, i) if kind == "F" and s > 0 else ("B", s + 1, i) if kind == "B" and s < p - 1 else (
                    ("F", s, i) if kind == "B" else None)
                if dep is not None and dep not in done:
                    break
                start = max(clock[s], done.get(dep, 0))
                dur = 1 if kind == "F" else 2
                rows[s] += ["."] * (start - len(rows[s])) + [sym_f(i) if kind == "F" else sym_b(i)] * dur
                clock[s] = start + dur
                done[(kind, s, i)] = clock[s]
                pending[s] += 1
                progressed = True
    width = max(len(r) for r in rows)
    return [f"stage {s}: " + "".join(r + ["."] * (width - len(r))) for s, r in enumerate(rows)]
