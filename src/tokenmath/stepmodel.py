"""The per-operation step model: the calibrated estimate of one forward pass, term by term.

The roofline (roofline.py, layout.py) charges a pass max(FLOPs / peak, bytes / bandwidth) as a
whole. A real pass is a sequence of kernels, each with its own shape, and each falls short of the
roofline in its own way. Here a pass of one replica, per chip and per pipeline stage, is

    dense GEMMs      attention projections, dense MLP, shared experts, router, lm_head:
                     gemm_s(FLOPs, bytes) with the GEMM curve below; M = tokens on the TP rank
    expert GEMMs     the busiest EP rank: its expected maximum of routed token-expert pairs
                     (not the mean), the experts it is expected to touch, M = tokens per expert
    attention        in its own compute dtype (BF16 or FP8, never FP4): prefill's causal term at
                     the prompt's length, decode's KV read and (MLA) its absorbed FLOPs
    communication    latency + bytes / achieved bandwidth for each collective: TP all-reduces,
                     EP dispatch + combine (in-domain vs scale-out), PP send/recv
    overhead         one fixed per-step term (scheduling, sampling, launch; CUDA graphs remove
                     per-layer launches) plus each kernel's measured floor t0

and the stage time is their sum (no overlap between kernels of one stream). The GEMM curve is

    gemm_s = ((t_c / e_c)^p + (t_m / e_m)^p)^(1/p) + t0,   t_c = FLOPs / peak, t_m = bytes / BW

whose shape depends only on t_c/t_m — the intensity over the chip's ridge point — so the fitted
(e_c, e_m, p) transfer to a chip with no measurements: a chip enters through its datasheet. The
coefficients come from measured kernel timings (kernels.json, fitted by scripts/fit_kernels.py on
A100/H100/H200 tables); an engine profile (profiles.py) scales them with a few end-to-end
parameters fitted on published serving results.

Every term broadcasts over batch and context. `bound_s` is the roofline of the same pass (same
bytes and FLOPs, efficiencies 1, no latencies): the estimate is never below it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from .errors import TokenmathError
from .kvcache import attention_flops_per_token, kv_cache
from .layout import HOP_LATENCY_S_DEFAULT, Layout, _kv_head_split, _link, check_layout, layout_memory, placement
from .params import mlp_params, param_counts
from .roofline import resolve_dtypes
from .specs import Dtypes, Efficiency, Model, System
from .units import COMPUTE_CLASS, dtype_bytes

# Activations a token moves per GEMM it passes through: its input and output rows in BF16. An
# estimate of tokenmath's (it matters only where M is large, where compute dominates anyway).
ACT_BYTES = 2.0


@dataclass(frozen=True)
class GemmCurve:
    """gemm_s = ((t_c/e_c)^p + (t_m/e_m)^p)^(1/p) + t0 (see the module docstring)."""

    e_c: float
    e_m: float
    p: float
    t0_s: float

    def time_s(self, t_c, t_m):
        t_c = np.asarray(t_c, float) / self.e_c
        t_m = np.asarray(t_m, float) / self.e_m
        hi = np.maximum(t_c, t_m)
        safe = np.where(hi > 0, hi, 1.0)
        return hi * ((t_c / safe) ** self.p + (t_m / safe) ** self.p) ** (1.0 / self.p) + self.t0_s


@dataclass(frozen=True)
class AttentionCurve:
    """Prefill ("flash"): causal FLOPs / (BF16 peak · e_max · s/(s + s_half)) + t0.
    Decode ("roofline_pad"): the GEMM blend of FLOPs / (peak · e_c) and KV bytes·(s + s0)/s /
    (BW · e_m), + t0 — s0 is the per-sequence padding of KV tiles; e_c = None drops the FLOPs term
    ("bandwidth_pad", GQA decode). One kernel per layer."""

    e_max: float
    s_half: float
    pre_t0_s: float
    e_m: float
    s0: float
    dec_t0_s: float
    e_c: float | None = None
    p: float = 1.0


@dataclass(frozen=True)
class CommCurve:
    """One collective call: alpha + factor(n) · bytes / (link BW · e_link)."""

    alpha_s: float
    e_link: float


@dataclass(frozen=True, eq=False)
class Kernels:
    """Fitted per-operation curves (kernels.json): GEMMs and MoE grouped GEMMs per compute
    class, attention per KV dtype (GQA and MLA), collectives (NCCL, and each engine's custom
    all-reduce inside a scale-up domain). Compared and hashed by identity (its tables are dicts),
    so caches can key on the loaded set."""

    gemm: dict  # compute class -> GemmCurve
    moe: dict  # compute class -> GemmCurve
    attention: dict  # kv class ("bf16" | "fp8") -> AttentionCurve
    mla: dict  # kv class -> AttentionCurve
    all_reduce: CommCurve
    alltoall: CommCurve
    custom_all_reduce: dict = None  # engine -> CommCurve
    mla_ampere: dict = None  # kv class -> AttentionCurve (MLA decode has no fast Ampere kernel)
    source: str = ""

    def pick(self, table: dict, cls: str):
        return table.get(cls) or table.get("fp8" if cls in ("fp4", "int8", "int4") else "bf16") or next(iter(table.values()))


@dataclass(frozen=True)
class Engine:
    """End-to-end parameters of an engine (or vendor) profile, on top of the kernel curves."""

    overhead_s: float = 0.0  # fixed per step
    compute_scale: float = 1.0  # multiplies every kernel's e_c (≤ 1: the engine's kernels fall short)
    memory_scale: float = 1.0  # multiplies every kernel's e_m / e_kv
    network_scale: float = 1.0  # multiplies e_link
    routing_cv: float = 0.0  # coefficient of variation of per-rank expert load beyond multinomial noise
    floor_scale: float = 1.0  # multiplies every kernel's fixed floor t0 (CUDA graphs, fusion)
    max_batch: float | None = None  # engine cap on sequences per replica
    name: str | None = None  # trtllm | vllm | sglang: picks the engine's custom all-reduce
    label: str = "estimate"


@dataclass(frozen=True)
class OpStep:
    """One pass of one replica: the estimate and its parts (seconds, per pass = one round of the
    pipeline), with the roofline bound of the same pass beside it."""

    batch: float | np.ndarray
    context: float | np.ndarray
    new_tokens: float | np.ndarray
    prefill_tokens: float | np.ndarray
    dense_gemm_s: float | np.ndarray
    expert_gemm_s: float | np.ndarray
    attention_s: float | np.ndarray
    tp_comm_s: float | np.ndarray
    ep_comm_s: float | np.ndarray
    pp_comm_s: float | np.ndarray
    overhead_s: float
    step_s: float | np.ndarray
    bound_s: float | np.ndarray  # roofline of the same pass: a floor, never above step_s
    expert_imbalance: float | np.ndarray  # busiest EP rank's load / the mean
    tokens_per_s: float | np.ndarray  # new tokens (decode + prefill) per second, one replica
    chips: int
    billed_chips: float
    layout: Layout
    label: str
    # the bound's terms: what one chip spends on each resource over the step (m microbatches), at
    # peak rates and ideal links — compute_s, weights_s, kv_s, activations_s (HBM), network_s, hops_s
    bound_parts: dict = None
    bound_name: str | np.ndarray = "memory"  # "compute" | "memory" | "network": what decides the bound
    # the model's work in the step, whole replica: FLOPs, and the HBM bytes it must read (weights
    # its tokens touch, once per microbatch, and the KV it attends to), without the layout's copies
    flops: float | np.ndarray = 0.0
    weight_bytes: float | np.ndarray = 0.0
    kv_bytes: float | np.ndarray = 0.0
    peak_flops_per_s: float = 0.0  # per chip, the datasheet line of the compute dtype
    peak_hbm_bytes_per_s: float = 0.0  # per chip
    expert_fetch: str = "expected"

    @property
    def parts(self) -> dict:
        return {k: getattr(self, k) for k in ("dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s",
                                              "ep_comm_s", "pp_comm_s", "overhead_s")}

    def mfu(self, step_s=None):
        """Model FLOPs utilisation: the step's model FLOPs ÷ (step time × chips × peak FLOP/s of
        the compute dtype) — PaLM's definition (Chowdhery et al. 2022, appendix B), for one pass.
        step_s: the time to charge (default this pass's own step_s)."""
        T = self.step_s if step_s is None else step_s
        return _f(np.asarray(self.flops) / (np.asarray(T) * np.asarray(self.chips) * self.peak_flops_per_s))

    def mbu(self, step_s=None):
        """Model bandwidth utilisation: the bytes the step must read (weights touched + KV) ÷ (step
        time × chips × peak HBM B/s) — Databricks' definition ("LLM Inference Performance
        Engineering: Best Practices", 2023). Re-reads of weights a layout replicates count as waste."""
        T = self.step_s if step_s is None else step_s
        return _f((np.asarray(self.weight_bytes) + np.asarray(self.kv_bytes))
                  / (np.asarray(T) * np.asarray(self.chips) * self.peak_hbm_bytes_per_s))


# --------------------------------------------------------------------------------------------
# Model shape, per layer (cached: depends only on the model)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    layers: int
    moe_layers: int
    dense_params_per_layer: float  # attention + dense MLP or shared experts + router, averaged over layers
    expert_params: float  # one routed expert
    lm_head_params: float
    gemms_per_layer: int  # dense kernels per layer as engines fuse them (QKV, O, gate_up, down; MLA: 6)


@lru_cache(maxsize=1024)
def _shape(model: Model) -> _Shape:
    pc = param_counts(model)
    h = model.hidden
    n_moe = sum(model.layer_moe)
    dense = pc.attention + (pc.mlp or 0) + (pc.shared_experts or 0) + (pc.router or 0) + (pc.per_layer_input or 0)
    expert = mlp_params(h, model.moe.expert) if model.moe else 0
    lm_head = pc.lm_head or (pc.embedding if model.tied_embeddings else 0)
    gemms = 6 if model.attention.kind == "mla" else 4
    return _Shape(model.n_layers, n_moe, dense / model.n_layers, float(expert), float(lm_head), gemms)


_IDEAL_ATT = AttentionCurve(1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0)
IDEAL = Kernels(gemm={"bf16": GemmCurve(1.0, 1.0, 1.0, 0.0)}, moe={"bf16": GemmCurve(1.0, 1.0, 1.0, 0.0)},
                attention={"bf16": _IDEAL_ATT}, mla={"bf16": _IDEAL_ATT}, all_reduce=CommCurve(0.0, 1.0),
                alltoall=CommCurve(0.0, 1.0), source="roofline (efficiencies 1)")


def _z_max(n: int) -> float:
    """E[max of n standard normals], Blom's approximation (0 for n = 1)."""
    if n <= 1:
        return 0.0
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25))


def expert_imbalance(tokens, k: int, n_experts: int, ep, routing_cv: float = 0.0, *, z=None):
    """Busiest EP rank's routed token-expert pairs ÷ the mean, for `tokens` tokens each routed to k
    of n_experts experts spread evenly over `ep` ranks: the mean μ = tokens·k/ep, the variance
    μ(1 − 1/ep) of uniform (multinomial) routing plus (cv·μ)² of skewed popularity, and the
    expected maximum of `ep` such loads ≈ μ + z(ep)·σ (z: the expected maximum of ep normals).
    `ep` may be an array (one per layout) with `z` its z(ep); at ep = 1 the ratio is exactly 1."""
    T = np.asarray(tokens, float)
    if z is None:
        if ep <= 1:
            return np.ones_like(T) if T.ndim else 1.0
        z = _z_max(ep)
    mu = np.maximum(T * k / ep, 1e-12)
    sigma = np.sqrt(mu * (1 - 1 / ep) + (routing_cv * mu) ** 2)
    # a rank cannot hold more than every token's k picks landing on its experts
    cap = np.minimum(T * np.minimum(k, n_experts // ep), T * k) / mu
    return np.minimum(1.0 + z * sigma / mu, np.maximum(cap, 1.0))


# --------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LayoutTerms:
    """Everything a pass needs from its layout, as numbers: one layout's floats, or arrays of
    shape (layouts, 1) stacked by `_stack` so that one broadcast call evaluates many layouts.
    Built by `_layout_terms`, which raises for a layout the system cannot run (a missing link)."""

    pp: float
    m: float
    tp: float
    sc: float  # chips per stage
    adp: float  # attention-DP ranks
    ep: float
    kv_split: float  # ways TP splits one sequence's KV
    z_ep: float  # expected maximum of ep standard normals
    tp_alpha_s: float  # all-reduce latency (0 when TP = 1)
    tp_e_link: float
    tp_bw: float  # the TP link's bandwidth (1 when TP = 1: unused)
    ep_on: float  # 1 where EP > 1 (an all-to-all runs)
    ep_f_out: float  # share of an EP group outside the domain
    ep_remote: float  # distinct remote domains a token visits
    ep_up_bw: float
    ep_out_bw: float
    ep_hop_s: float  # 2 hops when the all-to-all leaves the domain
    pp_inv_bw: float  # Σ over stage boundaries of 1/bandwidth, / PP (0 when PP = 1)
    hops_s: float
    chips: float
    billed_chips: float


@lru_cache(maxsize=8192)
def _layout_terms(model: Model, system: System, layout: Layout, kernels: Kernels, engine: Engine,
                  hop_latency_s: float) -> _LayoutTerms:
    dom = system.scaleup_chips
    tp, pp, sc = layout.tp, layout.pp, layout.stage_chips
    tp_alpha, tp_e, tp_bw = 0.0, 1.0, 1.0  # TP = 1: no all-reduce (its term is 0 × these)
    if tp > 1:
        ar = kernels.all_reduce
        if tp <= dom and kernels.custom_all_reduce:  # engines' one-shot kernels inside a domain
            ar = kernels.custom_all_reduce.get(engine.name) or kernels.custom_all_reduce.get("generic") or ar
        tp_alpha, tp_e, tp_bw = ar.alpha_s, ar.e_link, _link(system, tp > dom, f"TP {tp}")
    ep = layout.ep
    ep_on = f_out = remote = 0.0
    up_bw = out_bw = 1.0
    ep_hop = 0.0
    if model.moe is not None and ep > 1:
        ep_on = 1.0
        in_dom = min(ep, dom)
        f_out = 1.0 - in_dom / ep
        up_bw = _link(system, False, "an expert-parallel all-to-all")
        if f_out:
            D = ep / in_dom
            remote = (D - 1) * (1 - (1 - 1 / D) ** model.moe.k)
            out_bw = _link(system, True, f"EP {ep} across {dom}-chip domains")
            ep_hop = 2 * hop_latency_s
    place = placement(layout, system)
    inv_bw = hops = 0.0
    if pp > 1:
        for i in range(pp):
            across = place.stage_domain[i] != place.stage_domain[(i + 1) % pp] or sc > dom
            inv_bw += 1.0 / _link(system, across, "a pipeline boundary between domains")
            hops += hop_latency_s if across else 0.0
    return _LayoutTerms(float(pp), float(layout.m), float(tp), float(sc), float(layout.attention_dp), float(ep),
                        float(_kv_head_split(model, layout)), _z_max(ep), tp_alpha, tp_e, tp_bw, ep_on, f_out, remote,
                        up_bw, out_bw, ep_hop, inv_bw / pp, hops, float(layout.replica_chips), float(place.billed_chips))


def _stack(terms: list[_LayoutTerms]) -> _LayoutTerms:
    """Many layouts' terms as arrays of shape (layouts, 1): a leading layout axis for broadcasting."""
    return _LayoutTerms(*(np.array([getattr(t, f.name) for t in terms], float)[:, None]
                          for f in dataclasses.fields(_LayoutTerms)))


EXPERT_FETCH = ("expected", "all")
OVERLAP = ("full", "none")


def op_step(model: Model, system: System, layout: Layout, batch, context, new_tokens=1.0, *, kernels: Kernels | None,
            engine: Engine | None = None, prefill_tokens=0.0, prefill_context=0.0, prefill_seqs=None,
            dtypes: Dtypes = Dtypes(), hop_latency_s: float = HOP_LATENCY_S_DEFAULT, check: bool = True,
            expert_fetch: str = "expected", overlap: str = "full", efficiency: Efficiency | None = None) -> OpStep:
    """Estimated time of one pass of a replica laid out as `layout` (kernels=None: the roofline
    bound of the same pass, step_s = bound_s).

    batch, context, new_tokens: `batch` sequences each adding `new_tokens` tokens after `context`
      cached ones (decode: new_tokens = 1; a whole prompt: context 0, new_tokens = its length).
    prefill_tokens, prefill_context: prompt tokens chunked into the same pass (chunked prefill
      mixed into decode), attending on average to `prefill_context` tokens each; prefill_seqs:
      how many sequences those chunks belong to (for their logits), default prefill_tokens/1.
    `layout` may also be a list of layouts: then every input broadcasts against a leading layout
      axis (shape (layouts, 1) per layout), one call for all of them (the planner's search);
      chips, billed_chips are arrays and `layout` the tuple. The caller checks each layout first.
    expert_fetch: "expected" (default) — a chip reads only the routed experts its tokens touch,
      E/EP·(1 − (1 − k/E)^T) of them for T tokens under uniform routing (grouped-GEMM kernels skip
      empty experts); "all" — every expert it holds, every step (the lecture's model; equal once
      T is large). The estimate and the bound both use it: one convention per pass.
    overlap: how the bound combines the network with compute and HBM: "full" (default) takes the
      max — the true floor; "none" adds it (the estimate never overlaps, so both are floors of it).
    efficiency: with kernels=None, a roofline scaled by these achieved fractions of peak (a
      user's what-if, labelled); bound_s stays the pure roofline.
    """
    if expert_fetch not in EXPERT_FETCH:
        raise TokenmathError(f"expert fetch = {expert_fetch!r}; expected 'expected' or 'all'")
    if overlap not in OVERLAP:
        raise TokenmathError(f"overlap = {overlap!r}; expected 'none' or 'full'")
    many = isinstance(layout, (list, tuple))
    if check and not many:
        check_layout(model, system, layout)
    engine = engine or Engine()
    roofline = kernels is None
    if roofline:
        kernels, engine = IDEAL, Engine(label="roofline")
    if many:
        lt = _stack([_layout_terms(model, system, lay, kernels, engine, hop_latency_s) for lay in layout])
    else:
        lt = _layout_terms(model, system, layout, kernels, engine, hop_latency_s)
    return _op_core(model, system, lt, tuple(layout) if many else layout, batch, context, new_tokens, kernels, engine,
                    roofline, prefill_tokens, prefill_context, prefill_seqs, dtypes, expert_fetch, overlap,
                    efficiency)


def _op_core(model, system, lt: _LayoutTerms, layout, batch, context, new_tokens, kernels: Kernels, engine: Engine,
             roofline: bool, prefill_tokens, prefill_context, prefill_seqs, dtypes: Dtypes, expert_fetch: str = "expected",
             overlap: str = "full", efficiency: Efficiency | None = None) -> OpStep:
    B = np.asarray(batch, float)
    L = np.asarray(context, float)
    S = np.asarray(new_tokens, float)
    P = np.asarray(prefill_tokens, float)
    Lp = np.asarray(prefill_context, float)
    if np.any(B < 0) or np.any(S < 1) or np.any(P < 0) or np.any(L < 0) or np.any(Lp < 0):
        raise TokenmathError("batch, context and prefill tokens must be >= 0 and new tokens >= 1")
    weight, kv, compute, cls = resolve_dtypes(model, system, dtypes)
    F_roof = float(system.chip.flops_per_s(cls))  # the datasheet line the bound charges
    if not roofline and dtypes.compute is None and not system.chip.flops_per_s(COMPUTE_CLASS[weight]):
        # weight-only quantisation (MXFP4 on Hopper, FP8 on Ampere): kernels dequantise to BF16
        # and multiply there (Triton / Marlin W4A16), not at the next wider datasheet line
        cls = "bf16" if system.chip.flops_per_s("bf16") else cls
    sh = _shape(model)
    chip = system.chip
    pp, m, tp, sc, adp = lt.pp, lt.m, lt.tp, lt.sc, lt.adp
    layers = sh.layers / pp
    moe_layers = sh.moe_layers / pp
    F = float(chip.flops_per_s(cls))
    BW = chip.hbm_bytes_per_s
    es = engine
    b_w = dtype_bytes(weight)
    dense_dtype = weight
    if dtypes.weight is None and "attention" in model.unquantized_parts:
        dense_dtype = model.base_dtype  # e.g. gpt-oss: MXFP4 experts, BF16 attention
    b_dense = dtype_bytes(dense_dtype)
    d_cls = system.compute_class_for(dtypes.compute or dense_dtype)
    F_d = float(chip.flops_per_s(d_cls))
    g = kernels.pick(kernels.gemm, d_cls)
    fs = es.floor_scale

    # tokens in one microbatch: decode/new tokens plus mixed prefill chunks
    tok = (B * S + P) / m
    tok_rank = tok / adp  # attention-DP ranks split the sequences; TP ranks see all of theirs
    seqs_rank = (B + (P if prefill_seqs is None else np.asarray(prefill_seqs, float))) / m / adp

    def gemm(curve: GemmCurve, flops, bytes_, n_kernels, peak):
        c = GemmCurve(min(curve.e_c * es.compute_scale, 1.0), min(curve.e_m * es.memory_scale, 1.0), curve.p, 0.0)
        return c.time_s(flops / peak, bytes_ / BW) + curve.t0_s * fs * n_kernels

    # dense GEMMs (per chip: the TP share of every dense matrix of the stage's layers)
    dense_params_chip = sh.dense_params_per_layer * layers / tp
    dense_flops = 2.0 * tok_rank * dense_params_chip
    dense_act = tok_rank * ACT_BYTES * 2 * model.hidden * sh.gemms_per_layer * layers / tp
    dense_bytes = dense_params_chip * b_dense + dense_act
    lm_params = sh.lm_head_params / pp / tp
    lm_flops = 2.0 * seqs_rank * lm_params
    lm_bytes = lm_params * dtype_bytes(model.base_dtype if dtypes.weight is None else weight)
    dense_s = gemm(g, dense_flops, dense_bytes, sh.gemms_per_layer * layers, F_d) + gemm(g, lm_flops, lm_bytes, 1.0 / pp, F_d)
    b_dense_f = (dense_flops + lm_flops) * F / F_d  # in units of the expert peak F, for the bound
    b_dense_b = dense_bytes + lm_bytes

    # expert GEMMs on the busiest rank
    expert_s = np.zeros_like(dense_s)
    imb = np.ones_like(dense_s)
    b_exp_f = b_exp_b = e_flops = e_wbytes = e_act = 0.0
    if model.moe is not None and sh.moe_layers:
        E, k = model.moe.n_experts, model.moe.k
        imb = expert_imbalance(tok, k, E, lt.ep, es.routing_cv, z=lt.z_ep)
        pairs_chip = tok * k / sc  # mean routed token-expert pairs a chip computes (all its shards)
        experts_chip = E / sc  # expert-equivalents of weights a chip holds
        touched = experts_chip * (1.0 - (1.0 - k / E) ** tok) if expert_fetch == "expected" else experts_chip + 0 * tok
        e_flops = 2.0 * sh.expert_params * pairs_chip * moe_layers
        e_wbytes = touched * sh.expert_params * b_w * moe_layers
        e_act = pairs_chip * ACT_BYTES * 2 * model.hidden * 2 * moe_layers
        e_bytes = e_wbytes + e_act
        mc = kernels.pick(kernels.moe, cls)
        expert_s = gemm(mc, e_flops * imb, e_bytes, 2 * moe_layers, F)
        b_exp_f, b_exp_b = e_flops * F / F_roof, e_bytes  # the bound charges the datasheet line

    # attention, in its own dtype: BF16 peak (FP8 KV runs FP8 kernels; the KV dtype's fitted
    # efficiency against the BF16 peak carries it), never the FP4 weight peak
    Fa = float(chip.flops_per_s("bf16") or chip.flops_per_s(system.compute_class_for("fp8")))
    kv_cls = "fp8" if kv in ("fp8", "int8") else "bf16"
    if model.attention.kind == "mla":
        table = kernels.mla_ampere if (kernels.mla_ampere and not chip.flops_per_s("fp8")) else kernels.mla
    else:
        table = kernels.attention
    ac = kernels.pick(table, kv_cls)
    heads_split = tp  # heads split over TP (MLA too: its heads, not its latent)
    e_a = min(ac.e_max * es.compute_scale, 1.0)
    # decode (or a whole prompt when S > 1): B·S tokens at context L
    seq_dec = B / m / adp
    # a prompt pass (S > 1) runs MLA un-absorbed (multi-head on decompressed K, V); decode absorbed
    per_tok = np.where(S > 1, np.asarray(attention_flops_per_token(model, L + (S - 1) / 2, absorbed=False)),
                       np.asarray(attention_flops_per_token(model, L + (S - 1) / 2))) / pp
    dec_flops = seq_dec * S * per_tok / heads_split
    ctx = L + S
    kv_read = seq_dec * np.asarray(kv_cache(model, ctx, kv).read_bytes) / pp / lt.kv_split
    t_m = kv_read * (ctx + ac.s0) / np.maximum(ctx, 1.0) / (BW * min(ac.e_m * es.memory_scale, 1.0))
    if ac.e_c:
        t_c = dec_flops / (Fa * min(ac.e_c * es.compute_scale, 1.0))
        hi = np.maximum(t_c, t_m)
        safe = np.where(hi > 0, hi, 1.0)
        t_dec = hi * ((t_c / safe) ** ac.p + (t_m / safe) ** ac.p) ** (1 / ac.p)
    else:
        t_dec = t_m
    t_pre = dec_flops / (Fa * e_a * S / (S + ac.s_half))  # a prompt pass: the flash form at length S
    attn_s = np.where(S > 1, np.maximum(t_pre, t_m), t_dec) + np.where(S > 1, ac.pre_t0_s, ac.dec_t0_s) * fs * layers
    # mixed prefill chunks: P tokens attending to Lp each, causal, compute bound
    pre_flops = P / m / adp * np.asarray(attention_flops_per_token(model, Lp, absorbed=False)) / pp / heads_split
    chunk = np.maximum(P / np.maximum(np.asarray(prefill_seqs if prefill_seqs is not None else 1.0, float), 1e-9), 1.0)
    attn_s = attn_s + np.where(P > 0, pre_flops / (Fa * e_a * chunk / (chunk + ac.s_half)) + ac.pre_t0_s * fs * layers, 0.0)
    b_att_f = (dec_flops + pre_flops) * F / Fa  # in units of the GEMM peak, for the bound
    b_att_b = kv_read

    # communication: each term is zero where its parallelism is 1 (TP, EP, PP)
    h = model.hidden
    msg = tok_rank * h * ACT_BYTES
    tp_frac = 2 * (tp - 1) / tp
    tp_s = 2 * layers * (lt.tp_alpha_s * fs + tp_frac * msg / (lt.tp_bw * np.minimum(lt.tp_e_link * es.network_scale, 1.0)))
    tp_ideal = 2 * layers * tp_frac * msg / lt.tp_bw
    ep_s = np.zeros_like(dense_s)
    ep_ideal = 0.0
    if model.moe is not None and sh.moe_layers:
        ep = lt.ep
        e_l = min(kernels.alltoall.e_link * es.network_scale, 1.0)
        # dispatch (FP8 when the weights are ≤ 1 byte: activations are quantised before sending,
        # as DeepEP and TensorRT-LLM's wide EP do) + combine (BF16) of each token's k copies; the
        # busiest rank receives imb× the mean. Across domains a token travels once per distinct
        # remote domain among its k experts (then is forwarded inside it): D_r = (D−1)/D · D(1 − (1 − 1/D)^k)
        k = model.moe.k
        per_copy = h * (min(ACT_BYTES, b_w if b_w <= 1 else ACT_BYTES) + ACT_BYTES)
        t_up = tok / sc * k * per_copy * (ep - 1) / ep * imb / (lt.ep_up_bw * e_l)
        t_out = tok / sc * lt.ep_remote * per_copy * imb / (lt.ep_out_bw * e_l)
        lat = 2 * kernels.alltoall.alpha_s * fs + lt.ep_hop_s
        ep_s = lt.ep_on * moe_layers * (np.maximum(t_up, t_out) + lat)
        ep_ideal = lt.ep_on * moe_layers * np.maximum(t_up, t_out) * e_l / imb
    pp_s = tok / sc * h * ACT_BYTES * lt.pp_inv_bw
    hops = lt.hops_s

    stage = dense_s + expert_s + attn_s + tp_s + ep_s + pp_s
    step = np.maximum(m * stage, pp * stage + hops) + es.overhead_s
    # the roofline of the same pass: one max over the stage's FLOPs, bytes and link bytes (ideal
    # links; overlap "none" adds the link time instead)
    b_c = (b_dense_f + b_exp_f + b_att_f) / F
    b_w_s = (dense_params_chip * b_dense + lm_bytes + e_wbytes) / BW
    b_kv_s = b_att_b / BW
    b_act_s = (dense_act + e_act) / BW
    b_mem = b_w_s + b_kv_s + b_act_s
    b_net = tp_ideal + ep_ideal + pp_s

    def combine(c, mem, net):
        return np.maximum(np.maximum(c, mem), net) if overlap == "full" else np.maximum(c, mem) + net

    b_stage = combine(b_c, b_mem, b_net)
    bound = np.maximum(m * b_stage, pp * b_stage + hops)
    if roofline and efficiency is not None:  # a roofline at the user's achieved fractions of peak
        e_stage = combine(b_c / efficiency.flops, b_mem / efficiency.hbm, b_net / efficiency.network)
        step = np.maximum(m * e_stage, pp * e_stage + hops)
    else:
        step = bound if roofline else np.maximum(step, bound)
    tokens = B * S + P
    shape = np.shape(step)

    def bc(x):
        a = np.broadcast_to(np.asarray(x, float), shape)
        return float(a) if a.ndim == 0 else np.array(a)

    code = np.where((b_net > np.maximum(b_c, b_mem)) & (b_net > 0), 2, np.where(b_c >= b_mem, 0, 1))
    names = np.broadcast_to(np.array(["compute", "memory", "network"])[code], shape)
    # the model's work in the step (whole replica, no layout copies): each per-chip term times the
    # chips that split it — dense weights and KV are split TP ways (and KV by heads), so their
    # attention-DP copies are not counted; FLOPs and experts are split over every chip of a stage
    per = m * pp
    work_flops = per * sc * (dense_flops + lm_flops + e_flops + dec_flops + pre_flops)
    work_w = per * (tp * (dense_params_chip * b_dense + lm_bytes) + sc * e_wbytes)
    work_kv = per * adp * lt.kv_split * kv_read
    many = isinstance(layout, tuple)
    return OpStep(
        batch=bc(B), context=bc(L), new_tokens=bc(S), prefill_tokens=bc(P),
        dense_gemm_s=bc(pp * dense_s), expert_gemm_s=bc(pp * expert_s), attention_s=bc(pp * attn_s),
        tp_comm_s=bc(pp * tp_s), ep_comm_s=bc(pp * ep_s), pp_comm_s=bc(pp * pp_s + hops), overhead_s=es.overhead_s,
        step_s=bc(step), bound_s=bc(bound), expert_imbalance=bc(imb), tokens_per_s=bc(tokens / step),
        chips=lt.chips[:, 0].astype(int) if many else int(lt.chips), billed_chips=lt.billed_chips[:, 0] if many else lt.billed_chips,
        layout=layout, label=es.label if efficiency is None or not roofline else f"roofline × efficiencies ({efficiency.label})",
        bound_parts={"compute_s": bc(m * b_c), "weights_s": bc(m * b_w_s), "kv_s": bc(m * b_kv_s),
                     "activations_s": bc(m * b_act_s), "network_s": bc(m * b_net), "hops_s": bc(hops),
                     "tp_comm_s": bc(m * tp_ideal), "ep_comm_s": bc(m * ep_ideal), "pp_comm_s": bc(m * pp_s)},
        bound_name=str(names) if names.ndim == 0 else np.array(names),
        flops=bc(work_flops), weight_bytes=bc(work_w), kv_bytes=bc(work_kv), peak_flops_per_s=F_roof,
        peak_hbm_bytes_per_s=BW, expert_fetch=expert_fetch,
    )


def _f(x):
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a


def max_batch(model: Model, system: System, layout: Layout, context, *, dtypes: Dtypes = Dtypes(),
              usable_fraction: float = 0.9, cap: float | None = None) -> float:
    """Largest batch per replica whose KV fits in the usable HBM (engines keep ~10 % for
    activations and workspaces: an assumption), capped by the engine's maximum."""
    m1 = layout_memory(model, system, layout, 1.0, context, dtypes=dtypes)
    usable = m1.hbm_bytes_per_chip * usable_fraction - m1.weights_bytes_per_chip
    per_seq = m1.total_bytes_per_chip - m1.weights_bytes_per_chip
    b = math.floor(usable / per_seq) if per_seq > 0 else 0
    if b < 1:
        raise TokenmathError(
            f"{model.name} does not fit on {layout.replica_chips} × {system.name} as {layout.describe()}: "
            f"weights take {m1.weights_bytes_per_chip / 1e9:.1f} GB of {m1.hbm_bytes_per_chip / 1e9:.0f} GB per chip")
    if cap:
        b = min(b, cap)
    return float(b)


# Prefill tokens an engine folds into one step: TensorRT-LLM's max_num_tokens and SGLang's
# chunked_prefill_size both default to 8192 (their serving docs); a named assumption.
CHUNK_TOKENS_DEFAULT = 8192


def steady_step_s(model: Model, system: System, layout: Layout, batch, input_tokens: float, output_tokens: float, *,
                  kernels: Kernels | None, engine: Engine | None = None, dtypes: Dtypes = Dtypes(),
                  chunk_tokens: float = CHUNK_TOKENS_DEFAULT, cached_tokens: float = 0.0, expert_fetch: str = "expected",
                  overlap: str = "full"):
    """Mean step time of continuous batching with chunked prefill at `batch` sequences per
    replica — the time per output token a user sees.

    Each step decodes one token per sequence (mean context I + O/2). To replace the batch/O
    sequences finishing per step, P = batch·I/O prompt tokens per step must be prefilled; they
    ride in chunks of c = min(chunk_tokens, max(I, P)) tokens, so a fraction P/c of steps carries
    one, and each such step costs what its chunk adds to a decode step:

        T = T_dec(B) + (P / c) · (T_mixed(B, c) − T_dec(B))

    The marginal form matters for MoE models: a decode-only step reads only the experts its
    tokens touch, a step carrying a chunk touches nearly all. `cached_tokens`: prompt tokens
    found in a prefix cache, not prefilled (they still sit in the decode context). kernels=None:
    the roofline bound of the same steps (op_step's conventions: expert_fetch, overlap)."""
    B = np.asarray(batch, float)
    I, O = float(input_tokens), float(output_tokens)
    Ip = I - float(cached_tokens)  # prompt tokens each request prefills
    if not 1.0 <= Ip <= I:
        raise TokenmathError(f"cached prompt tokens = {cached_tokens!r}; expected 0 to input tokens − 1 ({I - 1:g})")
    P = B * Ip / O
    c = np.minimum(chunk_tokens, np.maximum(Ip, P))
    # both passes in one broadcast call: [decode only | decode + one chunk]
    shape = np.broadcast_shapes(np.shape(B), np.shape(c))
    Bb, cb = np.broadcast_to(B, shape), np.broadcast_to(c, shape)
    both = op_step(model, system, layout, np.stack([Bb, Bb]), I + O / 2, 1.0, kernels=kernels, engine=engine,
                   dtypes=dtypes, check=False, prefill_tokens=np.stack([np.zeros(shape), cb]),
                   prefill_context=I - Ip / 2, prefill_seqs=np.stack([np.zeros(shape), cb / Ip]),
                   expert_fetch=expert_fetch, overlap=overlap)
    t = np.asarray(both.step_s)
    t_dec, t_mixed = t[0], t[1]
    out = t_dec + (P / c) * (t_mixed - t_dec)
    return float(out) if np.ndim(out) == 0 else out
