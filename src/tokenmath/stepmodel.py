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
                     EP dispatch + combine as the engine runs them (only with attention DP:
                     DeepEP low-latency or normal kernels, or an all-gather; in-domain vs
                     scale-out), PP send/recv
    overlap          where the engine runs two micro-batches (two-batch overlap), one half's EP
                     communication hidden under the other's compute: a negative part
    overhead         one fixed per-step term (scheduling, sampling, launch; CUDA graphs remove
                     per-layer launches) plus each kernel's measured floor t0

and the stage time is their sum (no overlap between kernels of one stream, except the named
two-batch overlap an engine runs). With attention data parallelism the pass waits for its busiest
rank: whole sequences on each, one prompt on one. The GEMM curve is

    gemm_s = ((t_c / e_c)^p + (t_m / e_m)^p)^(1/p) + t0,   t_c = FLOPs / peak, t_m = bytes / BW

whose shape depends only on t_c/t_m — the intensity over the chip's ridge point — and on r, the
kernel dtype's peak over the chip's BF16 peak (e_c = 1/(1/e_c0 + κ·r): `GemmFamily`), so the
fitted families transfer to a chip with no measurements: a chip enters through its datasheet
(FP4 on Blackwell or MI355X at its own r; 4-bit weights on a chip without FP4 units as weight-only
kernels at the BF16 line: `gemm_kernel_kind`). The coefficients come from measured kernel timings
(kernels.json, fitted by scripts/fit_kernels.py on A100/H100/H200/L40S tables, the transfer to a
held-out chip and from BF16 to FP8 tested in tests/test_kernels.py); an engine profile
(profiles.py) scales them with a few end-to-end parameters fitted on published serving results.

Every term broadcasts over batch and context. `bound_s` is the roofline of the same pass (same
bytes and FLOPs, efficiencies 1, no latencies): the estimate is never below it.

The code follows the terms. `op_step` turns a layout into numbers (`layout_terms`), the dtypes
into each kernel's peak and bytes per parameter (`kernel_rates`) and the batch into what one
microbatch puts on one chip of a stage (`microbatch`); then one pure function per operation, each
named after the question it answers, returns a `Term` — its estimated time and the FLOPs, HBM
bytes and ideal link time the bound of the same pass charges for it:

    dense_gemm_time, lm_head_time              dense GEMMs and the logits
    expert_gemm_time (expert_imbalance,        the busiest EP rank's grouped GEMMs
                      experts_touched)
    attention_time (decode_attention_time,     the pass's own sequences: decode or a whole prompt
                    prompt_attention_time)
    prefill_chunk_attention_time               prompt chunks mixed into a decode step
    tp_allreduce_time, ep_alltoall_time,       the collectives and the pipeline's send/recv
    pp_transfer_time

`pass_terms` lists them for one stage and microbatch; `pass_bound` sums the same terms' FLOPs,
bytes and link time into the roofline of the pass; `_op_core` assembles the step. A new term is
one more such function, one more entry in `pass_terms` and in `TERM_PART` (the OpStep part it
reports under): the bound then counts it too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .errors import TokenmathError
from .kvcache import attention_terms, kv_terms
from .layout import SERVING_HBM_FRACTION, kv_budget_words, layout_memory, reserve_bytes, serving_hbm_bytes
from .parallelism import (HOP_LATENCY_S_DEFAULT, Layout, busiest_rank_share, check_layout, kv_head_split,
                          link_bytes_per_s, placement)
from .params import mlp_params, param_counts
from .roofline import resolve_dtypes
from .specs import Dtypes, Efficiency, Model, System
from .units import COMPUTE_CLASS, dtype_bytes

# Activations a token moves per GEMM it passes through: its input and output rows in BF16. An
# estimate of tokenmath's (it matters only where M is large, where compute dominates anyway).
ACT_BYTES = 2.0


# --------------------------------------------------------------------------------------------
# One formula for a number and for arrays: every term below is written once. Given Python floats
# (one pass: `tokenmath step`, a notebook's loop) these helpers stay in plain float arithmetic,
# which is ~20× cheaper per operation than numpy on 0-d arrays; given arrays (a sweep, the
# planner's layouts × batches) they are numpy's ufuncs. docs/speed.md, "One estimated pass".
# --------------------------------------------------------------------------------------------


_NUM = (int, float)


def _num(x) -> bool:
    return isinstance(x, _NUM)


def num_or_array(x):
    """A Python number as a float, anything else as a float array (the one-pass float path's entry:
    estimate.py uses it too)."""
    return float(x) if isinstance(x, _NUM) else np.asarray(x, float)


def _mx(a, b):
    return (a if a >= b else b) if isinstance(a, _NUM) and isinstance(b, _NUM) else np.maximum(a, b)


def _mn(a, b):
    return (a if a <= b else b) if isinstance(a, _NUM) and isinstance(b, _NUM) else np.minimum(a, b)


def _where(cond, a, b):
    return (a if cond else b) if isinstance(cond, (bool, np.bool_)) else np.where(cond, a, b)


def _sqrt(x):
    return math.sqrt(x) if _num(x) else np.sqrt(x)


@dataclass(frozen=True)
class GemmCurve:
    """gemm_s = ((t_c·pad/e_c)^p + (t_m/e_m)^p)^(1/p) + t0 (see the module docstring) — one kernel
    family on one chip at one dtype. pad = ⌈M/tile_m⌉·tile_m / M: the kernel's M rows padded to its
    tile (tile_m = 1: no padding; `rows` None: not known, no padding)."""

    e_c: float
    e_m: float
    p: float
    t0_s: float
    tile_m: float = 1.0

    def time_s(self, t_c, t_m, rows=None):
        t_c = num_or_array(t_c) * tile_pad(rows, self.tile_m)
        return _pnorm(t_c / self.e_c, num_or_array(t_m) / self.e_m, self.p) + self.t0_s


def tile_pad(rows, tile_m: float):
    """⌈M/tile⌉·tile / M: the share of a GEMM's multiply work spent on rows padded to the tile (1
    where the tile is 1 or M unknown). M below 1 (a fraction of a token per expert, on average)
    counts as 1 row."""
    if rows is None or tile_m <= 1:
        return 1.0
    m = _mx(num_or_array(rows), 1.0)
    return (math.ceil(m / tile_m) if _num(m) else np.ceil(m / tile_m)) * tile_m / m


@dataclass(frozen=True)
class GemmFamily:
    """A fitted kernel family (kernels.json: one per dtype family and op — dense GEMM or MoE grouped
    GEMM), dimensionless so a datasheet resolves it on any chip (`curve`).

    Compute: a kernel whose multiplies run r times the chip's BF16 rate (r = peak of its dtype ÷
    BF16 peak: 1 for BF16 and weight-only kernels, 2 for FP8 on Hopper/Ada, 4 for FP4 on Blackwell
    or MI355X) sustains e_c = 1 / (1/e_c0 + κ·r) of its own peak — the work that does not speed
    up with narrower operands (address generation, synchronisation, epilogue, scaling) costs
    κ × the BF16 tensor time of the same FLOPs (Amdahl). Memory: e_m of HBM bandwidth on the
    bytes it must move (weights with their block scales, activations). Floors: t0 per kernel,
    + t0q where activations are quantised first (FP8, FP4), + t0ep for a MoE layer on the
    expert-parallel path (EP > 1: each rank's tokens permuted to its own experts and back, a
    separate kernel path in the engines' tables) where the tables hold both paths. tile_m: M rows
    padded to the tile."""

    e_c0: float
    kappa: float
    e_m: float
    p: float
    t0_s: float
    t0q_s: float = 0.0
    tile_m: float = 1.0
    t0ep_s: float = 0.0

    def e_c(self, rate_ratio=1.0):
        return 1.0 / (1.0 / self.e_c0 + self.kappa * np.asarray(rate_ratio, float))

    def curve(self, rate_ratio: float = 1.0, quantised: bool = False, ep_path: bool = False) -> GemmCurve:
        """The curve on a chip whose kernel dtype runs `rate_ratio` × its BF16 peak; ep_path: a MoE
        layer sharded by expert parallelism (EP > 1)."""
        return GemmCurve(float(self.e_c(rate_ratio)), self.e_m, self.p,
                         self.t0_s + (self.t0q_s if quantised else 0.0) + (self.t0ep_s if ep_path else 0.0),
                         self.tile_m)

    def time_s(self, t_c, t_m, rate_ratio=1.0, quantised=0.0, rows=None, ep_path=0.0):
        """Vectorised over kernels of mixed dtypes (the fit's form): rate_ratio, quantised and
        ep_path are arrays like t_c."""
        t_c = np.asarray(t_c, float) * tile_pad(rows, self.tile_m)
        return (_pnorm(t_c / self.e_c(rate_ratio), np.asarray(t_m, float) / self.e_m, self.p)
                + self.t0_s + self.t0q_s * np.asarray(quantised, float) + self.t0ep_s * np.asarray(ep_path, float))


@dataclass(frozen=True)
class AttentionCurve:
    """Prefill ("flash"): causal FLOPs / (BF16 peak · e_max · s/(s + s_half)) + t0.
    Decode ("roofline_pad", GQA and MLA): the GEMM blend of FLOPs / (peak · e_c) and KV
    bytes·(s + s0)/s / (BW · e_m), + t0 — s0 is the per-sequence padding of KV tiles; e_c = None
    drops the FLOPs term (a "bandwidth_pad" curve). One kernel per layer."""

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
    """One collective call: its latency alpha and its link time factor(n) · bytes / (link BW · e_link),
    joined by a p-norm (`comm_call_time`): p = 1 is their sum; p < 1 charges more near the
    crossover, where the library switches protocol, and reaches e_link for large messages."""

    alpha_s: float
    e_link: float
    p: float = 1.0


@dataclass(frozen=True)
class A2ACurve:
    """One phase (dispatch or combine) of an expert-parallel all-to-all kernel family:
    alpha + max(in-domain bytes / (scale-up BW · e_up), out-of-domain bytes / (scale-out BW · e_out)),
    fitted on DeepEP's measured kernels (validation/alltoall.json, scripts/fit_alltoall.py)."""

    alpha_s: float
    e_up: float
    e_out: float


@dataclass(frozen=True, eq=False)
class Kernels:
    """Fitted per-operation curves (kernels.json): GEMMs and MoE grouped GEMMs per compute
    class, attention per KV dtype (GQA and MLA), collectives (NCCL, and each engine's custom
    all-reduce inside a scale-up domain). Compared and hashed by identity (its tables are dicts),
    so caches can key on the loaded set."""

    gemm: dict  # dtype family ("tensor", "fp8_block", "int8", "w8a16", "w4a16"; "fp8_block@cdna": AMD's own) -> GemmFamily, dense GEMMs
    moe: dict  # dtype family -> GemmFamily, the MoE layer's grouped GEMMs
    attention: dict  # kv class ("bf16" | "fp8") -> AttentionCurve
    mla: dict  # kv class -> AttentionCurve
    all_reduce: CommCurve
    alltoall: CommCurve
    custom_all_reduce: dict = None  # engine -> CommCurve
    mla_ampere: dict = None  # kv class -> AttentionCurve (MLA decode has no fast Ampere kernel)
    source: str = ""
    # expert-parallel all-to-all kernels: mode ("ll" low-latency | "ht" normal) -> phase
    # ("dispatch" | "combine") -> A2ACurve; None: every mode on `alltoall` (the roofline: ideal links)
    ep_a2a: dict = None
    all_gather: CommCurve = None  # NCCL all-gather / reduce-scatter (attention-DP gather mode); None: all_reduce's
    reduce_scatter: CommCurve = None

    def pick(self, table: dict, cls: str):
        return table.get(cls) or table.get("fp8" if cls in ("fp4", "int8", "int4") else "bf16") or next(iter(table.values()))

    def gemm_curve(self, op: str, family: str, rate_ratio: float, quantised: bool, ep_path: bool = False) -> GemmCurve:
        """The fitted family of `op` ("gemm" | "moe") resolved on a chip: its dtype runs `rate_ratio`
        × the chip's BF16 peak; ep_path: a MoE layer on the expert-parallel path (EP > 1). A family
        the table lacks falls back to "tensor" (the BF16/FP8 fit)."""
        return _gemm_curve(self, op, family, float(rate_ratio), bool(quantised), bool(ep_path))


@lru_cache(maxsize=512)
def _gemm_curve(kernels: Kernels, op: str, family: str, rate_ratio: float, quantised: bool,
                ep_path: bool = False) -> GemmCurve:
    table = kernels.gemm if op == "gemm" else kernels.moe
    fam = table.get(family) or table.get(family.partition("@")[0]) or table.get("tensor") or next(iter(table.values()))
    return fam.curve(rate_ratio, quantised, ep_path)


def kernel_arch(system: System) -> str:
    """The kernel library a chip's GEMMs run on, where it has curves of its own: "cdna" for AMD
    Instinct (CDNA 3 / CDNA 4: ROCm's aiter and hipBLASLt), "" for the rest (the NVIDIA-fitted curves)."""
    return "cdna" if system.chip.architecture.lower().startswith("cdna") else ""


def arch_family(system: System, family: str) -> str:
    """`family` on this chip's kernel library: "fp8_block@cdna" on MI300X/MI355X. A table without that
    key answers with the plain family (Kernels.gemm_curve), so only a curve measured on the library
    replaces the NVIDIA fit (docs/kernels.md, "AMD's own block-FP8 GEMMs")."""
    arch = kernel_arch(system)
    return f"{family}@{arch}" if arch else family


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
    # Named engine features (catalog/engines.toml, each from the engine's documentation or source;
    # set by the engine profile or a case's stated flags, never fitted):
    # how attention-DP ranks hand tokens to the experts (used only where attention DP > 1):
    #   "alltoall"  dispatch/combine of each token to the ranks holding its experts (normal kernels)
    #   "deepep"    DeepEP: low-latency kernels for decode passes, normal for prefill (`deepep_mode`)
    #   "allgather" every rank gathers all ranks' tokens before the MoE, reduce-scatters after
    moe_a2a: str = "alltoall"
    deepep_mode: str = "auto"  # auto (low_latency for decode, normal for prefill) | normal | low_latency
    # share of the EP dispatch/combine hidden under the other micro-batch's compute when the
    # engine splits each pass into two micro-batches (SGLang two-batch overlap, DeepSeek's dual
    # micro-batch overlap, vLLM DBO); 0 = one batch, nothing hidden
    comm_overlap: float = 0.0
    # of what the engine's memory fraction is taken (layout.KV_BUDGETS): "total" HBM (vLLM, SGLang)
    # or the memory "free" after the weights load (TensorRT-LLM); sets the batch that fits
    kv_budget: str = "total"


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
    # the communication two micro-batches hide under each other's compute (≤ 0; 0 without overlap):
    # the parts, this included, add up to the step
    overlap_s: float | np.ndarray = 0.0

    @property
    def parts(self) -> dict:
        return {k: getattr(self, k) for k in ("dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s",
                                              "ep_comm_s", "pp_comm_s", "overhead_s", "overlap_s")}

    def mfu(self, step_s=None):
        """Model FLOPs utilisation: the step's model FLOPs ÷ (step time × chips × peak FLOP/s of
        the compute dtype) — PaLM's definition (Chowdhery et al. 2022, appendix B), for one pass.
        step_s: the time to charge (default this pass's own step_s)."""
        T = self.step_s if step_s is None else step_s
        return _f(num_or_array(self.flops) / (num_or_array(T) * self._chips_axis() * self.peak_flops_per_s))

    def mbu(self, step_s=None):
        """Model bandwidth utilisation: the bytes the step must read (weights touched + KV) ÷ (step
        time × chips × peak HBM B/s) — Databricks' definition ("LLM Inference Performance
        Engineering: Best Practices", 2023). Re-reads of weights a layout replicates count as waste."""
        T = self.step_s if step_s is None else step_s
        return _f((num_or_array(self.weight_bytes) + num_or_array(self.kv_bytes))
                  / (num_or_array(T) * self._chips_axis() * self.peak_hbm_bytes_per_s))

    def _chips_axis(self):
        """Chips per replica, broadcastable against the step: one number, or (layouts, 1) for a
        many-layout pass (chips has one entry per layout, the step a leading layout axis)."""
        if isinstance(self.chips, (int, float)):  # one layout
            return float(self.chips)
        c = np.asarray(self.chips, float)
        return c[:, None] if c.ndim == 1 and np.ndim(self.step_s) == 2 else c


# --------------------------------------------------------------------------------------------
# Model shape, per layer (cached: depends only on the model)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What the step model needs of a model, per layer."""

    layers: int
    moe_layers: int
    dense_params_per_layer: float  # attention + dense MLP or shared experts + router, averaged over layers
    expert_params: float  # one routed expert
    lm_head_params: float
    gemms_per_layer: float  # dense kernels per layer as engines fuse them, averaged over layers (model_shape)
    hidden: int


@lru_cache(maxsize=1024)
def model_shape(model: Model) -> ModelShape:
    """The model per layer: dense and expert parameters, the lm_head, the fused dense kernels."""
    pc = param_counts(model)
    h = model.hidden
    n_moe = sum(model.layer_moe)
    dense = pc.attention + (pc.mlp or 0) + (pc.shared_experts or 0) + (pc.router or 0) + (pc.per_layer_input or 0)
    expert = mlp_params(h, model.moe.expert) if model.moe else 0
    lm_head = pc.lm_head or (pc.embedding if model.tied_embeddings else 0)
    # dense kernels per layer as engines fuse them: attention QKV and O (MLA: q_a, q_b, kv_a, O), and
    # gate_up and down where the layer has a dense MLP or shared experts; a MoE layer's router and
    # grouped GEMMs are the MoE op's own (its floor, expert_gemm_time), so a MoE layer without shared
    # experts (gpt-oss, Qwen3-MoE, Mixtral) runs only the attention's
    attn = 4 if model.attention.kind == "mla" else 2
    mlp_layers = model.n_layers - n_moe + (n_moe if model.moe is not None and model.moe.n_shared else 0)
    gemms = attn + 2.0 * mlp_layers / model.n_layers
    return ModelShape(model.n_layers, n_moe, dense / model.n_layers, float(expert), float(lm_head), gemms, h)


_IDEAL_ATT = AttentionCurve(1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0)
IDEAL = Kernels(gemm={"tensor": GemmFamily(1.0, 0.0, 1.0, 1.0, 0.0)}, moe={"tensor": GemmFamily(1.0, 0.0, 1.0, 1.0, 0.0)},
                attention={"bf16": _IDEAL_ATT}, mla={"bf16": _IDEAL_ATT}, all_reduce=CommCurve(0.0, 1.0),
                alltoall=CommCurve(0.0, 1.0), source="roofline (efficiencies 1)")


# --------------------------------------------------------------------------------------------
# The layout, the dtypes and the batch as numbers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutTerms:
    """Everything a pass needs from its layout, as numbers: one layout's floats, or arrays of
    shape (layouts, 1) stacked by `stack_layout_terms` so that one broadcast call evaluates many
    layouts. Built by `layout_terms`, which raises for a layout the system cannot run (a missing
    link)."""

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
    # copies of one token an EP rank sends per phase, in-domain (up) and across domains (out):
    ep_ll_up: float  # low-latency kernels, one message per routed expert: k(dom − 1)/EP
    ep_ll_out: float  # ... k(1 − dom/EP)
    ep_ht_up: float  # normal kernels, one per distinct rank in the domain: (dom − 1)(1 − (1 − 1/EP)^k)
    z_adp: float  # expected maximum of attention-DP-rank standard normals (their uneven loads)
    ag_bw: float  # the link an attention-DP all-gather crosses (scale-out when the stage spans domains)
    pp_inv_bw: float  # Σ over stage boundaries of 1/bandwidth, / PP (0 when PP = 1)
    hops_s: float
    chips: float
    billed_chips: float
    expert_slots: float = 0.0  # routed experts + redundant copies spread over the EP ranks (0: dense)
    tp_p: float = 1.0  # the all-reduce curve's knee (CommCurve.p)


@lru_cache(maxsize=8192)
def layout_terms(model: Model, system: System, layout: Layout, kernels: Kernels, engine: Engine,
                 hop_latency_s: float) -> LayoutTerms:
    """The layout as numbers: degrees, the links each collective takes (in-domain or scale-out),
    the all-reduce curve (an engine's one-shot kernel inside a domain), the domains an EP group
    and the pipeline cross, the billed chips. Raises for a link the catalog does not publish."""
    dom = system.scaleup_chips
    tp, pp, sc = layout.tp, layout.pp, layout.stage_chips
    tp_alpha, tp_e, tp_bw, tp_p = 0.0, 1.0, 1.0, 1.0  # TP = 1: no all-reduce (its term is 0 × these)
    if tp > 1:
        ar = kernels.all_reduce
        if tp <= dom and kernels.custom_all_reduce:  # engines' one-shot kernels inside a domain
            ar = kernels.custom_all_reduce.get(engine.name) or kernels.custom_all_reduce.get("generic") or ar
        tp_alpha, tp_e, tp_bw, tp_p = ar.alpha_s, ar.e_link, link_bytes_per_s(system, tp > dom, f"TP {tp}"), ar.p
    ep = layout.ep
    ep_on = f_out = remote = ll_up = ll_out = ht_up = 0.0
    up_bw = out_bw = ag_bw = 1.0
    ep_hop = 0.0
    if model.moe is not None and ep > 1:
        ep_on = 1.0
        k = model.moe.k
        in_dom = min(ep, dom)
        f_out = 1.0 - in_dom / ep
        up_bw = ag_bw = link_bytes_per_s(system, False, "an expert-parallel all-to-all")
        ll_up, ll_out = (float(x) for x in alltoall_copies("ll", ep, dom, k))
        ht_up, remote = (float(x) for x in alltoall_copies("ht", ep, dom, k, model.moe.n_experts,
                                                           groups=(model.moe.n_group, model.moe.topk_group)))
        if f_out:
            out_bw = link_bytes_per_s(system, True, f"EP {ep} across {dom}-chip domains")
            ep_hop = 2 * hop_latency_s
        if sc > dom:
            ag_bw = link_bytes_per_s(system, True, f"attention-DP gather over {sc} chips across {dom}-chip domains")
    place = placement(layout, system)
    inv_bw = hops = 0.0
    if pp > 1:
        for i in range(pp):
            across = place.stage_domain[i] != place.stage_domain[(i + 1) % pp] or sc > dom
            inv_bw += 1.0 / link_bytes_per_s(system, across, "a pipeline boundary between domains")
            hops += hop_latency_s if across else 0.0
    return LayoutTerms(float(pp), float(layout.m), float(tp), float(sc), float(layout.attention_dp), float(ep),
                       float(kv_head_split(model, layout)), _z_max(ep), tp_alpha, tp_e, tp_bw, ep_on, f_out, remote,
                       up_bw, out_bw, ep_hop, ll_up, ll_out, ht_up, _z_max(layout.attention_dp), ag_bw, inv_bw / pp, hops,
                       float(layout.replica_chips), float(place.billed_chips),
                       float(model.moe.n_experts + layout.redundant_experts) if model.moe is not None else 0.0,
                       float(tp_p))


def stack_layout_terms(terms: list[LayoutTerms]) -> LayoutTerms:
    """Many layouts' terms as arrays of shape (layouts, 1): a leading layout axis for broadcasting."""
    return LayoutTerms(*(np.array([getattr(t, f.name) for t in terms], float)[:, None]
                         for f in dataclasses.fields(LayoutTerms)))


@dataclass(frozen=True)
class KernelRates:
    """The peak each kind of kernel runs at on this chip, and the bytes per parameter it reads."""

    bound_flops_per_s: float  # the datasheet line of the compute dtype: what the bound charges
    expert_flops_per_s: float  # expert GEMMs (weight-only quantisation: the BF16 line they multiply at)
    dense_flops_per_s: float  # dense GEMMs and lm_head, in the dense weights' dtype
    attention_flops_per_s: float  # BF16 (or the FP8 line where a chip has no BF16), never FP4
    hbm_bytes_per_s: float
    expert_bytes_per_param: float
    dense_bytes_per_param: float
    head_bytes_per_param: float
    expert_class: str  # compute class of the expert GEMMs
    dense_class: str  # ... of the dense GEMMs (the datasheet line the bound charges them at)
    kv_dtype: str
    # the kernel family each GEMM runs (stepmodel.GemmFamily, kernels.json), the ratio of its
    # dtype's peak to the chip's BF16 peak, whether it quantises activations, and (dense) the peak
    # its kernel multiplies at — BF16 for weight-only kernels, whose datasheet line may be wider
    dense_family: str = "tensor"
    expert_family: str = "tensor"
    dense_ratio: float = 1.0
    expert_ratio: float = 1.0
    dense_quantised: bool = False
    expert_quantised: bool = False
    dense_kernel_flops_per_s: float = 0.0


def rate_ratio(chip, cls: str) -> float:
    """The peak of compute class `cls` ÷ the chip's BF16 peak (datasheet). A chip that publishes no
    BF16 figure (a preliminary sheet) is taken at BF16 = half its FP8 line, as on every chip that
    publishes both."""
    f = float(chip.flops_per_s(cls) or 0.0)
    f16 = float(chip.flops_per_s("bf16") or 0.0) or 0.5 * float(chip.flops_per_s("fp8") or 0.0)
    return f / f16 if f and f16 else 1.0


@lru_cache(maxsize=256)
def block_scaled(model: Model) -> bool:
    """Whether the checkpoint's FP8 weights carry block scales (its Hugging Face config declares
    quantization_config.weight_block_size, as DeepSeek-V3/R1 and Kimi-K2 do: 128×128 blocks,
    run by DeepGEMM-class kernels) rather than one scale per tensor (ModelOpt FP8)."""
    if not model.config_path:
        return False
    try:
        q = json.loads(Path(model.config_path).read_text()).get("quantization_config")
    except (OSError, ValueError):
        return False
    return isinstance(q, dict) and bool(q.get("weight_block_size"))


def gemm_kernel_kind(system: System, dtype: str, compute: str | None = None, block: bool = False,
                     moe: bool = False) -> tuple[str, str, bool]:
    """(kernel family, compute class it multiplies in, quantised activations) of a GEMM whose
    weights are `dtype` on this chip:

      BF16 / FP16                   "tensor" at the BF16 line
      a dtype the chip multiplies   "tensor" at its own line (FP8 on Hopper/Ada/MI300, FP4 on
                                    Blackwell/MI355X): activations quantised; FP8 with block scales
                                    "fp8_block"; INT8 "int8" (dense)
      a dtype it cannot multiply    weight-only: "w4a16" (≤ 4 bits) or "w8a16", dequantised and
                                    multiplied at the BF16 line (Marlin, Machete, Triton MXFP4) —
                                    e.g. MXFP4 experts on Hopper or MI300X/MI325X
      `compute` given               "tensor" at the line of that dtype (the user's choice, e.g. W4A8)

    MoE has no W8A16 or INT8 table: 8-bit weight-only experts take "w4a16" (the weight-only
    grouped kernel, with 1-byte weights), INT8 experts "tensor"."""
    chip = system.chip
    if compute is not None:
        cls = system.compute_class_for(compute)
        return "tensor", cls, cls != "bf16"
    own = COMPUTE_CLASS[dtype]
    if own == "bf16":
        return "tensor", system.compute_class_for(dtype), False
    if chip.flops_per_s(own):
        fam = "fp8_block" if (own == "fp8" and block) else ("int8" if own == "int8" and not moe else "tensor")
        return fam, own, True
    cls = "bf16" if chip.flops_per_s("bf16") else system.compute_class_for(dtype)
    return ("w4a16" if dtype_bytes(dtype) < 1 or moe else "w8a16"), cls, False


@lru_cache(maxsize=4096)
def kernel_rates(model: Model, system: System, dtypes: Dtypes, roofline: bool) -> KernelRates:
    """Which peak and bytes per parameter each kernel runs at, and which fitted kernel family
    (`gemm_kernel_kind`). Weight-only quantisation (MXFP4 on Hopper, FP8 on Ampere) dequantises to
    BF16 and multiplies there (Triton / Marlin W4A16), not at the next wider datasheet line — the
    estimate's kernels only; the bound charges the datasheet line of the compute dtype. Parts a
    checkpoint leaves unquantised (gpt-oss: MXFP4 experts, BF16 attention) run in the base dtype.
    Attention runs in its own dtype: the BF16 peak (FP8 KV runs FP8 kernels; the KV dtype's fitted
    efficiency against the BF16 peak carries it). Weight bytes per parameter include block scales
    (units.DTYPE_BYTES: NVFP4 4.5 bits, MXFP4 4.25)."""
    weight, kv, compute, cls = resolve_dtypes(model, system, dtypes)
    chip = system.chip
    F_roof = float(chip.flops_per_s(cls))
    if not roofline and dtypes.compute is None and not chip.flops_per_s(COMPUTE_CLASS[weight]):
        cls = "bf16" if chip.flops_per_s("bf16") else cls
    dense_dtype = weight
    if dtypes.weight is None and "attention" in model.unquantized_parts:
        dense_dtype = model.base_dtype  # e.g. gpt-oss: MXFP4 experts, BF16 attention
    d_cls = system.compute_class_for(dtypes.compute or dense_dtype)
    block = dtypes.weight in (None, model.weight_dtype) and weight == "fp8" and block_scaled(model)
    d_fam, d_kcls, d_q = gemm_kernel_kind(system, dense_dtype, dtypes.compute, block)
    e_fam, e_kcls, e_q = gemm_kernel_kind(system, weight, dtypes.compute, block, moe=True)
    return KernelRates(
        bound_flops_per_s=F_roof, expert_flops_per_s=float(chip.flops_per_s(cls)),
        dense_flops_per_s=float(chip.flops_per_s(d_cls)),
        attention_flops_per_s=float(chip.flops_per_s("bf16") or chip.flops_per_s(system.compute_class_for("fp8"))),
        hbm_bytes_per_s=chip.hbm_bytes_per_s, expert_bytes_per_param=dtype_bytes(weight),
        dense_bytes_per_param=dtype_bytes(dense_dtype),
        head_bytes_per_param=dtype_bytes(model.base_dtype if dtypes.weight is None else weight),
        expert_class=cls, dense_class=d_cls, kv_dtype=kv,
        dense_family=arch_family(system, d_fam), expert_family=arch_family(system, e_fam),
        dense_ratio=rate_ratio(chip, d_kcls),
        expert_ratio=rate_ratio(chip, e_kcls), dense_quantised=d_q, expert_quantised=e_q,
        dense_kernel_flops_per_s=float(chip.flops_per_s(d_cls if roofline else d_kcls)))


@dataclass(frozen=True)
class Microbatch:
    """What one microbatch puts on one chip of a pipeline stage (arrays broadcast over batch,
    context and the leading layout axis). With attention data parallelism a sequence lives on one
    attention-DP rank, and the stage waits for its busiest rank: the `rank_*` fields are that
    rank's share, not the mean."""

    layers: float  # the stage's layers
    moe_layers: float
    tokens: float | np.ndarray  # new tokens in the microbatch: decode/new tokens plus prefill chunks
    rank_tokens: float | np.ndarray  # ... on the busiest attention-DP rank (TP ranks see all of theirs)
    rank_seqs: float | np.ndarray  # sequences whose logits the busiest attention-DP rank computes
    rank_batch: float | np.ndarray = 0.0  # the pass's own sequences on the busiest rank (attention)
    rank_prefill: float | np.ndarray = 0.0  # prompt-chunk tokens on the busiest rank
    decode: bool | np.ndarray = True  # one new token per sequence and no prompt chunk (a decode batch)
    seqs: float | np.ndarray = 0.0  # sequences whose logits the microbatch computes, all ranks


def microbatch(shape: ModelShape, lt: LayoutTerms, batch, new_tokens, prefill_tokens, prefill_seqs) -> Microbatch:
    """One microbatch of `batch` sequences × `new_tokens` plus `prefill_tokens` prompt tokens
    (belonging to `prefill_seqs` sequences; None: each its own) on a stage: m microbatches split
    the batch, and the attention-DP ranks split the sequences — whole sequences, so a one-prompt
    prefill runs on one rank and the busiest rank holds at least one whole sequence."""
    B = num_or_array(batch) / lt.m
    S = num_or_array(new_tokens)
    P = num_or_array(prefill_tokens) / lt.m
    tok = B * S + P
    rank_batch = busiest_rank_share(B, lt.adp)
    if _num(P) and P == 0:  # no prompt chunks (a decode or prompt pass of its own sequences)
        rank_pre, rank_seqs, seqs = 0.0, rank_batch, B
    else:
        seqs_p = P if prefill_seqs is None else num_or_array(prefill_seqs) / lt.m  # prompts the chunks belong to
        pieces = _mx(seqs_p, 1.0)  # a chunk shorter than its prompt is still one rank's
        rank_pre = _where(P > 0, P * busiest_rank_share(pieces, lt.adp) / pieces, 0.0)
        rank_seqs = rank_batch + _where(P > 0, busiest_rank_share(seqs_p, lt.adp), 0.0)
        seqs = B + _where(P > 0, seqs_p, 0.0)
    return Microbatch(layers=shape.layers / lt.pp, moe_layers=shape.moe_layers / lt.pp, tokens=tok,
                      rank_tokens=rank_batch * S + rank_pre, rank_seqs=rank_seqs, rank_batch=rank_batch,
                      rank_prefill=rank_pre, decode=(S == 1) & (P == 0), seqs=seqs)


# --------------------------------------------------------------------------------------------
# The terms: one pure function per operation, each returning what it costs the estimate and the
# bound. Per chip, per pipeline stage, one microbatch; zero where the operation does not run.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One operation of a stage: the estimate's time for it, and what the roofline bound of the
    same pass charges for it (FLOPs at the peak the bound uses, HBM bytes, link time at ideal
    bandwidth) — per chip, one microbatch — with the model work it does for the whole replica
    (for MFU and MBU: weights and KV counted once, without the layout's copies)."""

    time_s: float | np.ndarray = 0.0
    flops: float | np.ndarray = 0.0  # per chip
    compute_s: float | np.ndarray = 0.0  # flops / the peak the bound charges
    weight_bytes: float | np.ndarray = 0.0  # HBM bytes per chip, by kind
    kv_bytes: float | np.ndarray = 0.0
    act_bytes: float | np.ndarray = 0.0
    link_s: float | np.ndarray = 0.0  # at ideal link bandwidth, no latency
    replica_weight_bytes: float | np.ndarray = 0.0  # the model's weights read, whole replica
    replica_kv_bytes: float | np.ndarray = 0.0
    # the model's FLOPs for the whole stage, each token once (None: `flops` × the stage's chips —
    # right where the chips split the work; replicated dense layers and the busiest rank need their own)
    replica_flops: float | np.ndarray | None = None


NO_TERM = Term()


def _pnorm(t_c, t_m, p):
    """(t_c^p + t_m^p)^(1/p), computed on the larger of the two (no overflow, 0 at 0)."""
    hi, lo = _mx(t_c, t_m), _mn(t_c, t_m)
    r = lo / _where(hi > 0, hi, 1.0)  # in [0, 1]: one power of the ratio, not one of each time
    return hi * (1.0 + r ** p) ** (1.0 / p)


def comm_call_time(alpha_s, link_s, p):
    """One collective call (`CommCurve`): its latency and its link time joined by a p-norm — their sum
    at p = 1; at p < 1 more than the sum near the crossover (the library's protocol switch) and
    the link time alone for large messages (scripts/fit_kernels.py's "comm_knee" form)."""
    return _pnorm(alpha_s, link_s, p)


def gemm_time(curve: GemmCurve, flops, bytes_, n_kernels, peak_flops_per_s: float, hbm_bytes_per_s: float,
              engine: Engine, rows=None):
    """Time of `n_kernels` GEMMs doing `flops` and moving `bytes_` in all, on the fitted `curve`
    with the engine's scales on its efficiencies (each capped at 1: never above the roofline) and
    on its floor; `rows`: each kernel's M (tokens, or tokens per expert), padded to the curve's tile."""
    c = GemmCurve(min(curve.e_c * engine.compute_scale, 1.0), min(curve.e_m * engine.memory_scale, 1.0), curve.p, 0.0,
                  curve.tile_m)
    return (c.time_s(flops / peak_flops_per_s, bytes_ / hbm_bytes_per_s, rows)
            + curve.t0_s * engine.floor_scale * n_kernels)


def dense_gemm_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch, rates: KernelRates, curve: GemmCurve,
                    engine: Engine) -> Term:
    """The dense GEMMs of the stage's layers (attention projections, dense MLP, shared experts,
    router): each chip holds the TP share of every dense matrix and multiplies M = the tokens of
    its attention-DP rank through it, reading the weights once and each token's activations in and
    out of every fused kernel."""
    params = shape.dense_params_per_layer * mb.layers / lt.tp
    flops = 2.0 * mb.rank_tokens * params
    act = mb.rank_tokens * ACT_BYTES * 2 * shape.hidden * shape.gemms_per_layer * mb.layers / lt.tp
    w = params * rates.dense_bytes_per_param
    t = gemm_time(curve, flops, w + act, shape.gemms_per_layer * mb.layers, rates.dense_kernel_flops_per_s,
                  rates.hbm_bytes_per_s, engine, rows=mb.rank_tokens)
    return Term(time_s=t, flops=flops, compute_s=flops / rates.dense_flops_per_s, weight_bytes=w, act_bytes=act,
                replica_weight_bytes=lt.tp * w,
                replica_flops=2.0 * mb.tokens * shape.dense_params_per_layer * mb.layers)


def lm_head_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch, rates: KernelRates, curve: GemmCurve,
                 engine: Engine) -> Term:
    """The logits: one row per sequence (only the last position of a prompt), the lm_head split TP
    ways on the last stage (spread over the stages here: 1/PP of it, one kernel per PP stages)."""
    params = shape.lm_head_params / lt.pp / lt.tp
    flops = 2.0 * mb.rank_seqs * params
    w = params * rates.head_bytes_per_param
    t = gemm_time(curve, flops, w, 1.0 / lt.pp, rates.dense_kernel_flops_per_s, rates.hbm_bytes_per_s, engine,
                  rows=mb.rank_seqs)
    return Term(time_s=t, flops=flops, compute_s=flops / rates.dense_flops_per_s, weight_bytes=w,
                replica_weight_bytes=lt.tp * w, replica_flops=2.0 * mb.seqs * shape.lm_head_params / lt.pp)


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
    T = num_or_array(tokens)
    if z is None:
        if ep <= 1:
            return np.ones_like(T) if np.ndim(T) else 1.0
        z = _z_max(ep)
    mu = _mx(T * k / ep, 1e-12)
    sigma = _sqrt(mu * (1 - 1 / ep) + (routing_cv * mu) ** 2)
    # a rank cannot hold more than every token's k picks landing on its experts
    cap = _mn(T * _mn(k, n_experts // ep), T * k) / mu
    return _mn(1.0 + z * sigma / mu, _mx(cap, 1.0))


def experts_touched(tokens, k: int, n_experts: int, chips, expert_fetch: str = "expected", slots=None):
    """Expert-equivalents of weights one chip reads in a pass, of the n_experts/chips it holds:
    "expected" — those its `tokens` tokens touch under uniform routing, E/chips·(1 − (1 − k/E)^T)
    (grouped-GEMM kernels skip empty experts); "all" — every one, every pass (the lecture's model).
    slots: E + R expert slots with R redundant copies (each copy takes E/(E + R) of its expert's
    tokens): (E + R)/chips held, each touched with probability 1 − (1 − k/E)^(T·E/(E + R))."""
    n_slots = n_experts if slots is None else _mx(slots, n_experts)
    held = n_slots / chips
    if expert_fetch == "expected":
        return held * (1.0 - (1.0 - k / n_experts) ** (tokens * n_experts / n_slots))
    return held + 0 * tokens


def expert_gemm_time(model: Model, shape: ModelShape, lt: LayoutTerms, mb: Microbatch, imbalance,
                     rates: KernelRates, curve: GemmCurve, engine: Engine, expert_fetch: str = "expected") -> Term:
    """The routed experts' grouped GEMMs on the busiest EP rank: `imbalance`× the mean routed
    token-expert pairs of a chip (M = pairs per touched expert, padded to the family's tile), the
    experts it is expected to touch read once, one floor t0 per MoE layer (the fitted MoE op is the
    whole layer: routing, permute, both grouped GEMMs, finalise). The bound charges the mean pairs
    at the datasheet line of the compute dtype."""
    if model.moe is None or not shape.moe_layers:
        return NO_TERM
    E, k = model.moe.n_experts, model.moe.k
    pairs = mb.tokens * k / lt.sc  # mean routed token-expert pairs a chip computes (all its shards)
    touched = experts_touched(mb.tokens, k, E, lt.sc, expert_fetch, slots=lt.expert_slots)
    flops = 2.0 * shape.expert_params * pairs * mb.moe_layers
    w = touched * shape.expert_params * rates.expert_bytes_per_param * mb.moe_layers
    act = pairs * ACT_BYTES * 2 * shape.hidden * 2 * mb.moe_layers
    rows = pairs * imbalance / _mx(touched, 1e-12)
    t = gemm_time(curve, flops * imbalance, w + act, mb.moe_layers, rates.expert_flops_per_s,
                  rates.hbm_bytes_per_s, engine, rows=rows)
    return Term(time_s=t, flops=flops, compute_s=flops / rates.bound_flops_per_s, weight_bytes=w, act_bytes=act,
                replica_weight_bytes=lt.sc * w)


def attention_curve(model: Model, system: System, kernels: Kernels, kv_dtype: str) -> AttentionCurve:
    """The fitted attention kernel for the model's attention (GQA or MLA; MLA decode on a chip
    without FP8 — Ampere — has no fast kernel) and the KV dtype's class (FP8 or BF16). Multi-head
    attention (one query head per KV head) decodes on its own kernel, with its own curve where the
    table has one (docs/kernels.md, "Grouped and multi-head decode")."""
    kv_cls = "fp8" if kv_dtype in ("fp8", "int8") else "bf16"
    att = model.attention
    if att.kind == "mla":
        table = kernels.mla_ampere if (kernels.mla_ampere and not system.chip.flops_per_s("fp8")) else kernels.mla
    else:
        table = kernels.attention
        if att.n_heads == att.n_kv_heads and f"{kv_cls}_mha" in table:
            return table[f"{kv_cls}_mha"]
    return kernels.pick(table, kv_cls)


def kv_read_time(kv_bytes, context, curve: AttentionCurve, engine: Engine, hbm_bytes_per_s: float):
    """Streaming the KV a kernel attends to: its bytes padded per sequence to KV tiles (s0 tokens),
    at the curve's fraction of HBM bandwidth."""
    e_m = min(curve.e_m * engine.memory_scale, 1.0)
    return kv_bytes * (context + curve.s0) / _mx(context, 1.0) / (hbm_bytes_per_s * e_m)


def flash_attention_time(flops, length, curve: AttentionCurve, engine: Engine, peak_flops_per_s: float):
    """Causal prefill attention FLOPs at e_max · s/(s + s_half) of the peak: short chunks run far
    below it."""
    e_a = min(curve.e_max * engine.compute_scale, 1.0)
    return flops / (peak_flops_per_s * e_a * length / (length + curve.s_half))


def decode_attention_time(flops, kv_time_s, layers, curve: AttentionCurve, engine: Engine, peak_flops_per_s: float):
    """Decode attention: the KV read blended with the FLOPs where the curve has a compute
    efficiency (MLA's absorbed FLOPs are not small), else the KV read alone; one kernel a layer."""
    t = kv_time_s
    if curve.e_c:
        t_c = flops / (peak_flops_per_s * min(curve.e_c * engine.compute_scale, 1.0))
        t = _pnorm(t_c, kv_time_s, curve.p)
    return t + curve.dec_t0_s * engine.floor_scale * layers


def prompt_attention_time(flops, kv_time_s, new_tokens, layers, curve: AttentionCurve, engine: Engine,
                          peak_flops_per_s: float):
    """A prompt pass (S > 1): the flash form at the prompt's length, never faster than its KV
    read; one kernel a layer."""
    t = flash_attention_time(flops, new_tokens, curve, engine, peak_flops_per_s)
    return _mx(t, kv_time_s) + curve.pre_t0_s * engine.floor_scale * layers


def attention_length(new_tokens, context):
    """The length whose causal prompt has the same attention work (score-matrix area) as S new
    tokens after L cached ones, S·L + S²/2: √(S² + 2·S·L). It is S for a prompt (L = 0), so the
    flash curve fitted on prompts is unchanged there, and it keeps a few tokens after a long
    context (a speculative-decoding verify pass, `--new-tokens 2`) from being charged as a
    2-token prompt: their kernel streams the whole KV once, like decode."""
    S = num_or_array(new_tokens)
    return _sqrt(S * S + 2.0 * S * num_or_array(context))


def dp_context_imbalance(rank_seqs, z_adp, context_cv):
    """The busiest attention-DP rank's attention load over its mean, when its n sequences' contexts
    vary (coefficient of variation `context_cv`: e.g. the ages of sequences in continuous
    batching) and ranks receive sequences at random: Σ of n contexts has relative spread cv/√n,
    and the slowest of the ranks sits z(ranks) spreads above the mean. 1 for one rank, one length."""
    n = _mx(num_or_array(rank_seqs), 1.0)
    return 1.0 + z_adp * num_or_array(context_cv) / _sqrt(n)


def attention_time(model: Model, lt: LayoutTerms, mb: Microbatch, batch, context, new_tokens, rates: KernelRates,
                   curve: AttentionCurve, engine: Engine, context_cv=0.0) -> Term:
    """Attention of the pass's own sequences: `batch` sequences each adding `new_tokens` after
    `context` cached ones, split over attention-DP ranks (the busiest rank's sequences) and (by
    heads) TP ranks. Decode (S = 1): the KV read and MLA's absorbed FLOPs. S > 1: the causal FLOPs
    at the mean context L + (S − 1)/2 on the flash curve at the prompt-equivalent length
    (`attention_length`: S for a prompt, KV-bound for a few tokens after a long cache); MLA runs
    un-absorbed (multi-head on decompressed K, V) for a prompt, and absorbed on the decode kernel
    while the cache is at least as long as the new tokens (a speculative verify pass: engines run
    MLA's decode kernels with several query tokens)."""
    S = num_or_array(new_tokens)
    L = num_or_array(context)
    seqs = mb.rank_batch * dp_context_imbalance(mb.rank_batch, lt.z_adp, context_cv)  # the busiest DP rank's
    mean_ctx = L + (S - 1) / 2
    decode_like = (S == 1) | ((L >= S) if model.attention.kind == "mla" else False)
    one = isinstance(decode_like, bool)  # one pass: only its own kernel's form is computed
    if not one and (decode_like.all() or not decode_like.any()):  # arrays of one form (a decode sweep)
        one, decode_like = True, bool(decode_like.flat[0]) if decode_like.size else True
    if one:
        per_tok = attention_terms(model, decode_like).at(mean_ctx) / lt.pp
    else:
        per_tok = np.where(decode_like, attention_terms(model, True).at(mean_ctx),
                           attention_terms(model, False).at(mean_ctx)) / lt.pp
    flops = seqs * S * per_tok / lt.tp  # heads split over TP (MLA too: its heads, not its latent)
    ctx = L + S
    kv_seq = kv_terms(model, rates.kv_dtype).read.at(ctx) / lt.pp / lt.kv_split  # one sequence's KV read
    kv = seqs * kv_seq
    t_kv = kv_read_time(kv, ctx, curve, engine, rates.hbm_bytes_per_s)
    Fa = rates.attention_flops_per_s
    if one:
        t = (decode_attention_time(flops, t_kv, mb.layers, curve, engine, Fa) if decode_like else
             prompt_attention_time(flops, t_kv, attention_length(S, L), mb.layers, curve, engine, Fa))
    else:
        t = np.where(decode_like, decode_attention_time(flops, t_kv, mb.layers, curve, engine, Fa),
                     prompt_attention_time(flops, t_kv, attention_length(S, L), mb.layers, curve, engine, Fa))
    # the replica's own KV (every sequence once), not the busiest rank's copy times the ranks
    return Term(time_s=t, flops=flops, compute_s=flops / Fa, kv_bytes=kv,
                replica_kv_bytes=num_or_array(batch) / lt.m * lt.kv_split * kv_seq,
                replica_flops=num_or_array(batch) / lt.m * S * per_tok)


def prefill_chunk_attention_time(model: Model, lt: LayoutTerms, mb: Microbatch, prefill_tokens, prefill_context,
                                 prefill_seqs, rates: KernelRates, curve: AttentionCurve, engine: Engine) -> Term:
    """Prompt chunks mixed into the pass (chunked prefill): `prefill_tokens` tokens attending to
    `prefill_context` each on average, causal and compute bound, in chunks of prefill_tokens ÷
    prefill_seqs tokens (None: one chunk)."""
    P = prefill_tokens
    if _num(P) and P == 0:  # no prompt chunk in this pass
        return Term(replica_flops=0.0)
    Fa = rates.attention_flops_per_s
    per_tok = attention_terms(model, False).at(num_or_array(prefill_context))
    flops = mb.rank_prefill * per_tok / lt.pp / lt.tp
    chunk = _mx(P / _mx(num_or_array(prefill_seqs if prefill_seqs is not None else 1.0), 1e-9), 1.0)
    t = _where(P > 0, flash_attention_time(flops, chunk, curve, engine, Fa)
               + curve.pre_t0_s * engine.floor_scale * mb.layers, 0.0)
    return Term(time_s=t, flops=flops, compute_s=flops / Fa, replica_flops=num_or_array(P) / lt.m * per_tok / lt.pp)


def tp_allreduce_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch, engine: Engine) -> Term:
    """Two all-reduces per layer of the rank's tokens' hidden vectors (BF16), ring traffic
    2(TP − 1)/TP of the message: α and bytes / (link · e_link) joined by the curve's knee
    (`comm_call_time`) each; 0 at TP = 1."""
    msg = mb.rank_tokens * shape.hidden * ACT_BYTES
    frac = 2 * (lt.tp - 1) / lt.tp
    e_link = _mn(lt.tp_e_link * engine.network_scale, 1.0)
    t = 2 * mb.layers * comm_call_time(lt.tp_alpha_s * engine.floor_scale, frac * msg / (lt.tp_bw * e_link), lt.tp_p)
    return Term(time_s=t, link_s=2 * mb.layers * frac * msg / lt.tp_bw)


A2A_MODES = ("alltoall", "deepep", "allgather")
DEEPEP_MODES = ("auto", "normal", "low_latency")
FP8_DISPATCH_BYTES = 1.0 + 4.0 / 128  # FP8 activations with one float32 scale per 128 channels (DeepEP's format)


def a2a_low_latency(engine: Engine, decode):
    """Whether a pass's dispatch/combine runs the low-latency kernels (True) or the normal,
    high-throughput ones: DeepEP's `auto` picks low-latency for decode batches and normal for
    prefill (SGLang `--deepep-mode`, docs/advanced_features/server_arguments.md); other modes
    run normal kernels."""
    one = isinstance(decode, (bool, np.bool_))
    if engine.moe_a2a != "deepep" or engine.deepep_mode == "normal":
        return False if one else np.zeros_like(np.asarray(decode, bool))
    if engine.deepep_mode == "low_latency":
        return True if one else np.ones_like(np.asarray(decode, bool))
    return bool(decode) if one else np.asarray(decode, bool)


def _miss(n_experts, share, k):
    """P(none of a token's k distinct experts, of n_experts, falls in a group holding `share` of
    them): Π_{i<k} (E − E·share − i)/(E − i) — without replacement; (1 − share)^k when E is None."""
    if n_experts is None:
        return (1 - share) ** k
    E = float(n_experts)
    p = 1.0
    for i in range(int(k)):
        p = p * _mx(E - E * share - i, 0.0) / (E - i)
    return p


def alltoall_copies(mode: str, ep, domain, k, n_experts=None, *, groups=None):
    """Copies of one token an EP rank sends in one phase, (inside its scale-up domain, to other
    domains), with its k distinct experts of n_experts spread evenly over `ep` ranks in domains of
    `domain` chips: "ll" (low-latency kernels) one message per routed expert, k(dom − 1)/EP and
    k(1 − dom/EP); "ht" (normal kernels) one per distinct rank in the domain and one per distinct
    remote domain (then forwarded inside it) — DeepEP's two kernel families (github
    deepseek-ai/DeepEP docs/legacy.md). A rank or domain is hit unless all k experts miss it.

    groups = (G, g): group-limited routing (DeepSeek-V3's config.json n_group = 8, topk_group = 4:
    a token's experts lie in at most 4 of 8 groups). Where the D domains divide the G groups,
    DeepSeek's load balancer packs whole groups onto domains (github deepseek-ai/EPLB README,
    commit d52c72d, "Hierarchical Load Balancing": "When the number of server nodes divides the
    number of expert groups ... We first pack the expert groups to nodes evenly"), so a token
    reaches a remote domain only through one of its g groups: a domain holding G/D groups is hit
    unless all g chosen groups miss it, 1 − C(G − G/D, g)/C(G, g) (taking every chosen group to
    hold at least one of the token's experts, an upper bound), never above the unlimited count.
    Otherwise ("Global Load Balancing": experts replicated "regardless of expert groups", as in
    DeepSeek's EP144 decode) the limit does not follow the domains and the count is unlimited.
    The low-latency count is the mean number of experts off the domain: the limit leaves it."""
    ep = np.asarray(ep, float)
    dom = np.minimum(ep, domain)
    D = ep / dom
    if mode == "ll":
        return k * (dom - 1) / ep, k * (1 - dom / ep)
    up = (dom - 1) * (1 - _miss(n_experts, 1 / ep, k))
    hit = 1 - _miss(n_experts, 1 / np.maximum(D, 1.0), k)
    if groups is not None and groups[0] > 1 and np.ndim(D) == 0 and D > 1 and groups[0] % round(float(D)) == 0:
        G, g = int(groups[0]), int(groups[1])
        hit = min(float(hit), 1.0 - math.comb(G - G // round(float(D)), g) / math.comb(G, g))
    out = np.where(D > 1, (D - 1) * hit, 0.0)
    return up, out


def alltoall_phase_s(curve: A2ACurve, tokens, copies_up, copies_out, bytes_per_token: float, up_bw, out_bw, *,
                     network_scale: float = 1.0, floor_scale: float = 1.0):
    """One phase (dispatch or combine) for a rank moving `tokens` tokens of `bytes_per_token`:
    α + max(in-domain bytes / (scale-up · e_up), across bytes / (scale-out · e_out)), efficiencies
    capped at 1 (never faster than the links)."""
    t_up = tokens * copies_up * bytes_per_token / (up_bw * min(curve.e_up * network_scale, 1.0))
    t_out = tokens * copies_out * bytes_per_token / (out_bw * min(curve.e_out * network_scale, 1.0))
    return curve.alpha_s * floor_scale + _mx(t_up, t_out)


def _a2a_curves(kernels: Kernels, mode: str) -> tuple[A2ACurve, A2ACurve]:
    if kernels.ep_a2a and mode in kernels.ep_a2a:
        c = kernels.ep_a2a[mode]
        return c["dispatch"], c["combine"]
    a = kernels.alltoall  # no fitted family (the roofline): the generic curve on both links
    one = A2ACurve(a.alpha_s, a.e_link, a.e_link)
    return one, one


def ep_alltoall_time(model: Model, shape: ModelShape, lt: LayoutTerms, mb: Microbatch, imbalance, rates: KernelRates,
                     kernels: Kernels, engine: Engine) -> Term:
    """Dispatch + combine of each MoE layer, as the engine runs them (`engine.moe_a2a`).

    Only attention data parallelism needs them: where TP ≥ EP (one attention-DP rank) every chip
    already holds every token and the layer's TP all-reduce sums the experts' outputs
    (`tp_allreduce_time`), so nothing is dispatched — TensorRT-LLM's MoE communication factory
    returns none without attention DP. With attention-DP ranks, one rank moves, for the larger of
    what the busiest DP rank sends and what the busiest expert rank receives (`imbalance`× the
    mean), each token's activations — FP8 with block scales when the weights are ≤ 1 byte (DeepEP
    and TensorRT-LLM quantise before sending), BF16 back:

      low-latency kernels   one message per routed expert: k(dom − 1)/EP copies over the scale-up
                            links and k(1 − dom/EP) over the scale-out NIC, in parallel
      normal kernels        one per distinct rank inside the domain and one per distinct remote
                            domain (forwarded inside it), DeepEP's NVLink + RDMA forwarding
      all-gather            every rank gathers the other DP ranks' tokens (padded to the busiest)
                            and reduce-scatters the outputs: 2 ring collectives of (ranks − 1)·T·h·2

    each phase α + max(in-domain bytes / (scale-up · e_up), across bytes / (scale-out · e_out)),
    on the curves fitted to DeepEP's measured kernels (validation/alltoall.json), plus a hop each
    way when the EP group leaves the domain. 0 at EP = 1."""
    if model.moe is None or not shape.moe_layers:
        return NO_TERM
    dp = num_or_array(lt.adp) > 1  # tokens differ between ranks: they must travel
    on = lt.ep_on * dp
    h = shape.hidden
    b_d = FP8_DISPATCH_BYTES if rates.expert_bytes_per_param <= 1 else ACT_BYTES
    b_c = ACT_BYTES
    mean = mb.tokens / lt.sc  # a chip's mean share of the stage's tokens
    T = _mx(mb.rank_tokens / lt.tp, imbalance * mean)  # the busiest sender or receiver
    ns = engine.network_scale
    if engine.moe_a2a == "allgather":
        ag = kernels.all_gather or kernels.all_reduce
        rs = kernels.reduce_scatter or kernels.all_reduce
        vol = (lt.adp - 1) * mb.rank_tokens * h * ACT_BYTES  # every chip gathers the other ranks' rows, padded
        t = lt.ep_hop_s + comm_call_time(ag.alpha_s * engine.floor_scale, vol / (lt.ag_bw * min(ag.e_link * ns, 1.0)), ag.p) \
            + comm_call_time(rs.alpha_s * engine.floor_scale, vol / (lt.ag_bw * min(rs.e_link * ns, 1.0)), rs.p)
        ideal = 2 * (lt.adp - 1) * (mb.tokens / lt.sc) * h * ACT_BYTES / lt.ag_bw
        return Term(time_s=on * mb.moe_layers * t, link_s=on * mb.moe_layers * ideal)
    ll = a2a_low_latency(engine, mb.decode)
    times, ideals = [], []
    modes = (("ll", lt.ep_ll_up, lt.ep_ll_out), ("ht", lt.ep_ht_up, lt.ep_remote))
    if isinstance(ll, bool):  # one pass: only the kernels it runs
        modes = modes[:1] if ll else modes[1:]
    for mode, up, out in modes:
        t = lt.ep_hop_s
        ideal = 0.0
        for c, b in zip(_a2a_curves(kernels, mode), (b_d, b_c)):
            t = t + alltoall_phase_s(c, T, up, out, h * b, lt.ep_up_bw, lt.ep_out_bw, network_scale=ns,
                                     floor_scale=engine.floor_scale)
            ideal = ideal + mean * _mx(up * h * b / lt.ep_up_bw, out * h * b / lt.ep_out_bw)
        times.append(t)
        ideals.append(ideal)
    if len(times) == 1:
        t, ideal = times[0], ideals[0]
    else:
        t = np.where(ll, times[0], times[1])
        ideal = np.where(ll, ideals[0], ideals[1])
    return Term(time_s=on * mb.moe_layers * t, link_s=on * mb.moe_layers * ideal)


def pp_transfer_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch) -> Term:
    """Each stage sends its share of the microbatch's hidden vectors (BF16) to the next, at the
    boundary's link (the hop latencies between domains are the round's, `pipeline_round_s`)."""
    t = mb.tokens / lt.sc * shape.hidden * ACT_BYTES * lt.pp_inv_bw
    return Term(time_s=t, link_s=t)


# --------------------------------------------------------------------------------------------
# The pass: the terms summed, a round of the pipeline, and the bound of the same pass
# --------------------------------------------------------------------------------------------


def two_batch_overlap(part_s: dict, stage, half_terms: dict, lt: LayoutTerms, fraction: float):
    """The stage as two micro-batches whose EP dispatch/combine hides under each other's compute
    (SGLang `--enable-two-batch-overlap`, DeepSeek's dual micro-batch overlap: while one half
    waits on its all-to-all the other computes). Every term is evaluated at half the tokens —
    so each half re-reads the weights it touches, the overlap's cost at small batch — and
    `fraction` of the smaller of (communication, the rest) of each half is hidden:

        stage = 2 · (Σ half-terms − fraction · min(EP comm, everything else))

    Only layouts with attention DP and EP (where the all-to-all runs) split; others keep one
    batch. Returns the parts (both halves), the stage and the time hidden per stage."""
    hp = {p: [] for p in STAGE_PARTS}
    for name, t in half_terms.items():
        hp[TERM_PART[name]].append(t.time_s)
    half = {p: _sum(v) for p, v in hp.items()}
    comm = half["ep_comm_s"]
    rest = _sum(v for p, v in half.items() if p != "ep_comm_s")
    hidden = fraction * _mn(comm, rest)
    on = (num_or_array(lt.ep_on) > 0) & (num_or_array(lt.adp) > 1)
    parts = {p: _where(on, 2 * half[p], part_s[p]) for p in STAGE_PARTS}
    new_stage = _where(on, 2 * (comm + rest - hidden), stage)
    return parts, new_stage, _where(on, 2 * hidden, 0.0)


def _sum(values):
    """Σ values in order, skipping the terms' literal zeros (an operation that does not run adds
    no work to a sweep's arrays)."""
    total = None
    for v in values:
        if type(v) is float and v == 0.0:
            continue
        total = v if total is None else total + v
    return 0.0 if total is None else total


def pipeline_round_s(stage_s, lt: LayoutTerms):
    """A round of the pipeline: with m microbatches over PP stages, max(m·stage, PP·stage + hops)
    (a sequence's next token needs every stage once plus the hops between domains)."""
    return _mx(lt.m * stage_s, lt.pp * stage_s + lt.hops_s)


def _combine(compute_s, memory_s, network_s, overlap: str):
    """One stage's resources together: "full" overlap takes the max, "none" adds the network."""
    if overlap == "full":
        return _mx(_mx(compute_s, memory_s), network_s)
    return _mx(compute_s, memory_s) + network_s


@dataclass(frozen=True)
class PassBound:
    """The roofline of a pass: one stage's resources for one microbatch at peak rates and ideal
    links (the terms' FLOPs, HBM bytes and link time summed), and the round they give."""

    compute_s: float | np.ndarray
    weights_s: float | np.ndarray
    kv_s: float | np.ndarray
    activations_s: float | np.ndarray
    memory_s: float | np.ndarray  # weights + KV + activations
    network_s: float | np.ndarray
    step_s: float | np.ndarray  # the round: pipeline_round_s of the combined stage
    decides: int | np.ndarray  # 0 compute, 1 memory, 2 network


def pass_bound(terms, lt: LayoutTerms, hbm_bytes_per_s: float, overlap: str = "full") -> PassBound:
    """The roofline of the same pass as the terms: their FLOPs at peak, HBM bytes at full
    bandwidth and link bytes at ideal links, combined per `overlap`, over a round of the pipeline."""
    c, w, kv, act, net = (_sum(getattr(t, f) for t in terms)
                          for f in ("compute_s", "weight_bytes", "kv_bytes", "act_bytes", "link_s"))
    w_s, kv_s, act_s = w / hbm_bytes_per_s, kv / hbm_bytes_per_s, act / hbm_bytes_per_s
    mem = w_s + kv_s + act_s
    decides = _where((net > _mx(c, mem)) & (net > 0), 2, _where(c >= mem, 0, 1))
    return PassBound(compute_s=c, weights_s=w_s, kv_s=kv_s, activations_s=act_s, memory_s=mem, network_s=net,
                     step_s=pipeline_round_s(_combine(c, mem, net, overlap), lt), decides=decides)


# Which of OpStep's parts each term of `pass_terms` reports under (a new term names its part here).
STAGE_PARTS = ("dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s", "ep_comm_s", "pp_comm_s")
TERM_PART = {"dense_gemm": "dense_gemm_s", "lm_head": "dense_gemm_s", "expert_gemm": "expert_gemm_s",
             "attention": "attention_s", "prefill_chunks": "attention_s", "tp_allreduce": "tp_comm_s",
             "ep_alltoall": "ep_comm_s", "pp_transfer": "pp_comm_s"}


def pass_terms(model: Model, system: System, lt: LayoutTerms, batch, context, new_tokens, prefill_tokens,
               prefill_context, prefill_seqs, *, kernels: Kernels, engine: Engine, rates: KernelRates,
               expert_fetch: str = "expected", context_cv=0.0) -> tuple[dict[str, Term], float | np.ndarray]:
    """Every operation of one stage for one microbatch, in the order a layer runs them, each from
    its own function with the fitted curve it runs on; and the busiest EP rank's imbalance (1 for
    a dense model). Inputs are arrays that broadcast (op_step's, after checking)."""
    sh = model_shape(model)
    mb = microbatch(sh, lt, batch, new_tokens, prefill_tokens, prefill_seqs)
    imb = 1.0
    if model.moe is not None and sh.moe_layers:
        imb = expert_imbalance(mb.tokens, model.moe.k, model.moe.n_experts, lt.ep, engine.routing_cv, z=lt.z_ep)
    gemm = kernels.gemm_curve("gemm", rates.dense_family, rates.dense_ratio, rates.dense_quantised)
    moe = kernels.gemm_curve("moe", rates.expert_family, rates.expert_ratio, rates.expert_quantised)
    moe_ep = kernels.gemm_curve("moe", rates.expert_family, rates.expert_ratio, rates.expert_quantised, ep_path=True)
    if moe_ep.t0_s != moe.t0_s:  # the family's floor on the expert-parallel path, per layout (EP > 1)
        moe = dataclasses.replace(moe, t0_s=_where(lt.ep > 1, moe_ep.t0_s, moe.t0_s))
    att = attention_curve(model, system, kernels, rates.kv_dtype)
    return {
        "dense_gemm": dense_gemm_time(sh, lt, mb, rates, gemm, engine),
        "lm_head": lm_head_time(sh, lt, mb, rates, gemm, engine),
        "expert_gemm": expert_gemm_time(model, sh, lt, mb, imb, rates, moe, engine, expert_fetch),
        "attention": attention_time(model, lt, mb, batch, context, new_tokens, rates, att, engine, context_cv),
        "prefill_chunks": prefill_chunk_attention_time(model, lt, mb, prefill_tokens, prefill_context, prefill_seqs,
                                                       rates, att, engine),
        "tp_allreduce": tp_allreduce_time(sh, lt, mb, engine),
        "ep_alltoall": ep_alltoall_time(model, sh, lt, mb, imb, rates, kernels, engine),
        "pp_transfer": pp_transfer_time(sh, lt, mb),
    }, imb


EXPERT_FETCH = ("expected", "all")
OVERLAP = ("full", "none")


# points per evaluation when op_step is given a large array of them for one layout: a chunk's
# hundreds of intermediate arrays (64 kB each) stay in cache and reuse the memory the last chunk freed,
# where one pass over 10^5 points asks the OS for fresh pages for every one (800 kB each).
# benchmarks/bench_explore.py 2a: ~2× fewer ns a point on the 2-core CI machine; 4,096-16,384 alike.
CHUNK_POINTS = 8192


def op_step(model: Model, system: System, layout: Layout, batch, context, new_tokens=1.0, *, kernels: Kernels | None,
            engine: Engine | None = None, prefill_tokens=0.0, prefill_context=0.0, prefill_seqs=None,
            dtypes: Dtypes = Dtypes(), hop_latency_s: float = HOP_LATENCY_S_DEFAULT, check: bool = True,
            expert_fetch: str = "expected", overlap: str = "full", efficiency: Efficiency | None = None,
            context_cv=0.0) -> OpStep:
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
    context_cv: coefficient of variation of the batch's context lengths (0: one length, as in a
      static benchmark); with attention data parallelism the busiest rank attends to more
      (`dp_context_imbalance`).
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
        lt = stack_layout_terms([layout_terms(model, system, lay, kernels, engine, hop_latency_s) for lay in layout])
    else:
        lt = layout_terms(model, system, layout, kernels, engine, hop_latency_s)
    scalars = (batch, context, new_tokens, prefill_tokens, prefill_context, prefill_seqs, context_cv)
    if not many and not all(x is None or isinstance(x, _NUM) for x in scalars):
        points = dict(batch=batch, context=context, new_tokens=new_tokens, prefill_tokens=prefill_tokens,
                      prefill_context=prefill_context, prefill_seqs=prefill_seqs, context_cv=context_cv)
        shape = np.broadcast_shapes(*(np.shape(x) for x in scalars if x is not None))
    else:
        shape = ()
    if math.prod(shape) > 2 * CHUNK_POINTS:  # a large array of points, one layout: in cache-sized chunks
        flat = {k: np.broadcast_to(np.asarray(x, float), shape).ravel() if np.ndim(x) else x
                for k, x in points.items()}
        out = None
        for i in range(0, math.prod(shape), CHUNK_POINTS):
            c = _op_core(model, system, lt, layout, kernels=kernels, engine=engine, roofline=roofline, dtypes=dtypes,
                         expert_fetch=expert_fetch, overlap=overlap, efficiency=efficiency,
                         **{k: x[i:i + CHUNK_POINTS] if np.ndim(x) else x for k, x in flat.items()})
            out = _fill(out, c, i, math.prod(shape))
        return _shaped(out, shape)
    return _op_core(model, system, lt, tuple(layout) if many else layout, batch, context, new_tokens, kernels, engine,
                    roofline, prefill_tokens, prefill_context, prefill_seqs, dtypes, expert_fetch, overlap,
                    efficiency, context_cv)


def _fill(out: dict | None, chunk: OpStep, start: int, n: int) -> dict:
    """Copy one chunk's OpStep into the whole call's fields from `start` (allocated at the first
    chunk, n points each): array fields and bound_parts' arrays by slice; what does not vary by
    point (chips, the layout, peaks, labels) from the first chunk. The chunk's own arrays are freed
    before the next is computed, so its temporaries reuse warm memory."""
    if out is None:
        out = {f.name: getattr(chunk, f.name) for f in dataclasses.fields(OpStep)}
        out["bound_parts"] = dict(chunk.bound_parts)
        floats = [(d, k) for d in (out, out["bound_parts"]) for k, v in d.items()
                  if isinstance(v, np.ndarray) and v.dtype == float]
        block = np.empty((len(floats), n))  # one allocation (numpy backs it with huge pages), a row a field
        for row, (d, k) in zip(block, floats):
            d[k] = row
        for d in (out, out["bound_parts"]):
            for k, v in d.items():
                if isinstance(v, np.ndarray) and v.dtype != float:
                    d[k] = np.empty(n, v.dtype)
    for d, src in ((out, vars(chunk)), (out["bound_parts"], chunk.bound_parts)):
        for k, v in src.items():
            if isinstance(v, np.ndarray):
                d[k][start:start + len(v)] = v
    return out


def _shaped(out: dict, shape: tuple) -> OpStep:
    """The OpStep of `_fill`'s fields, each array reshaped to the call's `shape`."""
    for d in (out, out["bound_parts"]):
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.reshape(shape)
    return OpStep(**out)


def _op_core(model, system, lt: LayoutTerms, layout, batch, context, new_tokens, kernels: Kernels, engine: Engine,
             roofline: bool, prefill_tokens, prefill_context, prefill_seqs, dtypes: Dtypes, expert_fetch: str = "expected",
             overlap: str = "full", efficiency: Efficiency | None = None, context_cv=0.0) -> OpStep:
    """The pass assembled from its terms: their sum per stage, a round of the pipeline plus the
    per-step overhead, never below the bound of the same pass (`pass_bound` of the same terms).
    An engine that overlaps communication (`Engine.comm_overlap`) runs the stage as two
    micro-batches (`two_batch_overlap`)."""
    one = all(_num(x) for x in (batch, context, new_tokens, prefill_tokens, prefill_context))
    if one:  # one pass: plain floats all the way (the helpers above)
        B, L, S, P, Lp = float(batch), float(context), float(new_tokens), float(prefill_tokens), float(prefill_context)
        if B < 0 or S < 1 or P < 0 or L < 0 or Lp < 0:
            raise TokenmathError("batch, context and prefill tokens must be >= 0 and new tokens >= 1")
        if not math.isfinite(L + S):
            raise TokenmathError(f"context = {L + S!r} must be a finite number of tokens >= 0")
    else:
        B = np.asarray(batch, float)
        L = np.asarray(context, float)
        S = np.asarray(new_tokens, float)
        P = np.asarray(prefill_tokens, float)
        Lp = np.asarray(prefill_context, float)
        if np.any(B < 0) or np.any(S < 1) or np.any(P < 0) or np.any(L < 0) or np.any(Lp < 0):
            raise TokenmathError("batch, context and prefill tokens must be >= 0 and new tokens >= 1")
        if not np.all(np.isfinite(L + S)):
            raise TokenmathError(f"context = {L + S!r} must be a finite number of tokens >= 0")
    rates = kernel_rates(model, system, dtypes, roofline)
    terms, imb = pass_terms(model, system, lt, B, L, S, P, Lp, prefill_seqs, kernels=kernels, engine=engine,
                            rates=rates, expert_fetch=expert_fetch, context_cv=context_cv)
    # the stage is the sum of its terms (one stream: kernels do not overlap), reported in OpStep's parts
    times, links = {p: [] for p in STAGE_PARTS}, {p: [] for p in STAGE_PARTS}
    for name, t in terms.items():
        times[TERM_PART[name]].append(t.time_s)
        links[TERM_PART[name]].append(t.link_s)
    part_s = {p: _sum(v) for p, v in times.items()}
    stage = _sum(part_s.values())
    hidden = 0.0
    if not roofline and engine.comm_overlap > 0 and model.moe is not None:
        half, _ = pass_terms(model, system, dataclasses.replace(lt, m=2 * lt.m), B, L, S, P, Lp, prefill_seqs,
                             kernels=kernels, engine=engine, rates=rates, expert_fetch=expert_fetch,
                             context_cv=context_cv)
        part_s, stage, hidden = two_batch_overlap(part_s, stage, half, lt, engine.comm_overlap)
    bd = pass_bound(terms.values(), lt, rates.hbm_bytes_per_s, overlap)
    if roofline and efficiency is not None:  # a roofline at the user's achieved fractions of peak
        step = pipeline_round_s(_combine(bd.compute_s / efficiency.flops, bd.memory_s / efficiency.hbm,
                                         bd.network_s / efficiency.network, overlap), lt)
    elif roofline:
        step = bd.step_s
    else:
        step = _mx(pipeline_round_s(stage, lt) + engine.overhead_s, bd.step_s)
    tokens = B * S + P
    shape = () if isinstance(step, float) else np.shape(step)

    def bc(x, own=False):
        """x as a float (one pass) or an array of the step's shape that the result owns: computed
        here (`own`) and already that shape, as is; else a copy (never a view of the caller's input)."""
        if not shape:  # one pass (the common scalar call): no broadcasting to do
            return float(x)
        a = np.asarray(x, float)
        if a.shape == shape:
            return a if own else a.copy()
        return np.array(np.broadcast_to(a, shape))

    names = (("compute", "memory", "network")[bd.decides] if not shape and _num(bd.decides)
             else np.array(["compute", "memory", "network"])[np.broadcast_to(bd.decides, shape)])
    # the model's work in the step (whole replica, no layout copies): FLOPs are split over every
    # chip of a stage; each term counts its own weights and KV once (Term.replica_*)
    m, pp, hops = lt.m, lt.pp, lt.hops_s
    work_flops = m * pp * _sum(lt.sc * t.flops if t.replica_flops is None else t.replica_flops
                               for t in terms.values())
    work_w = m * pp * _sum(t.replica_weight_bytes for t in terms.values())
    work_kv = m * pp * _sum(t.replica_kv_bytes for t in terms.values())
    many = isinstance(layout, tuple)
    return OpStep(
        batch=bc(B), context=bc(L), new_tokens=bc(S), prefill_tokens=bc(P),
        dense_gemm_s=bc(pp * part_s["dense_gemm_s"], own=True), expert_gemm_s=bc(pp * part_s["expert_gemm_s"], own=True),
        attention_s=bc(pp * part_s["attention_s"], own=True), tp_comm_s=bc(pp * part_s["tp_comm_s"], own=True),
        ep_comm_s=bc(pp * part_s["ep_comm_s"], own=True), pp_comm_s=bc(pp * part_s["pp_comm_s"] + hops, own=True),
        overhead_s=engine.overhead_s, overlap_s=bc(0.0 - pp * hidden, own=True), step_s=bc(step, own=True), bound_s=bc(bd.step_s, own=step is not bd.step_s), expert_imbalance=bc(imb),
        tokens_per_s=bc(tokens / step, own=True),
        chips=lt.chips[:, 0].astype(int) if many else int(lt.chips), billed_chips=lt.billed_chips[:, 0] if many else lt.billed_chips,
        layout=layout, label=engine.label if efficiency is None or not roofline else f"roofline × efficiencies ({efficiency.label})",
        bound_parts={"compute_s": bc(m * bd.compute_s, own=True), "weights_s": bc(m * bd.weights_s, own=True), "kv_s": bc(m * bd.kv_s, own=True),
                     "activations_s": bc(m * bd.activations_s, own=True), "network_s": bc(m * bd.network_s, own=True), "hops_s": bc(hops),
                     **{p: bc(m * _sum(links[p]), own=True) for p in ("tp_comm_s", "ep_comm_s", "pp_comm_s")}},
        bound_name=names if isinstance(names, str) else (str(names) if names.ndim == 0 else names),
        flops=bc(work_flops, own=True), weight_bytes=bc(work_w, own=True), kv_bytes=bc(work_kv, own=True), peak_flops_per_s=rates.bound_flops_per_s,
        peak_hbm_bytes_per_s=rates.hbm_bytes_per_s, expert_fetch=expert_fetch,
    )


def _f(x):
    if isinstance(x, _NUM):
        return float(x)
    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a


def max_batch(model: Model, system: System, layout: Layout, context, *, dtypes: Dtypes = Dtypes(),
              usable_fraction: float = SERVING_HBM_FRACTION, cap: float | None = None, kv_budget: str = "total") -> float:
    """Largest batch per replica whose KV fits in what a serving engine may fill
    (layout.serving_hbm_bytes: `usable_fraction` of HBM less the runtime's reserve, or with
    kv_budget "free" of what the weights leave), capped by the engine's maximum."""
    m1 = layout_memory(model, system, layout, 1.0, context, dtypes=dtypes)
    budget = serving_hbm_bytes(system, layout, usable_fraction, kv_budget=kv_budget,
                               weights_bytes=m1.weights_bytes_per_chip)
    usable = budget - m1.weights_bytes_per_chip
    per_seq = m1.total_bytes_per_chip - m1.weights_bytes_per_chip
    b = math.floor(usable / per_seq) if per_seq > 0 else 0
    if b < 1:
        w_gb, hbm_gb, res_gb = m1.weights_bytes_per_chip / 1e9, m1.hbm_bytes_per_chip / 1e9, reserve_bytes(layout) / 1e9
        head = f"{model.name} does not fit on {layout.replica_chips} × {system.name} as {layout.describe()}: "
        if hbm_gb <= res_gb:
            raise TokenmathError(head + f"its {hbm_gb:.1f} GB of HBM a chip is less than the runtime's reserve "
                                 f"{res_gb:.1f} GB, and nothing is left per chip for weights or KV")
        if w_gb >= hbm_gb - res_gb:
            raise TokenmathError(head + f"weights take {w_gb:.1f} GB a chip, more than its {hbm_gb:.1f} GB of HBM "
                                 f"less the runtime's reserve {res_gb:.1f} GB")
        what = (f"weights take {w_gb:.1f} GB" if usable <= 0 else
                f"weights take {w_gb:.1f} GB and one sequence's KV at {float(np.max(context)):,.0f} tokens {per_seq / 1e9:.1f} GB")
        raise TokenmathError(head + f"{what} of the {budget / 1e9:.1f} GB usable per chip "
                             f"({kv_budget_words(kv_budget, usable_fraction)}; {hbm_gb:.1f} GB of HBM, the runtime's reserve {res_gb:.1f} GB)")
    if cap:
        b = min(b, cap)
    return float(b)


# Prefill tokens an engine folds into one step: TensorRT-LLM's max_num_tokens and SGLang's
# chunked_prefill_size both default to 8192 (their serving docs); a named assumption.
CHUNK_TOKENS_DEFAULT = 8192


def steady_context_cv(input_tokens: float, output_tokens: float) -> float:
    """Coefficient of variation of the decoding sequences' contexts in steady continuous batching
    with fixed lengths: their ages are uniform over the O output tokens, so contexts are uniform
    on [I, I + O] — standard deviation O/√12 about the mean I + O/2."""
    return float(output_tokens) / math.sqrt(12.0) / (float(input_tokens) + float(output_tokens) / 2.0)

def _decode_and_chunk(model, system, layout, B, I: float, O: float, *, kernels, engine, dtypes, chunk_tokens: float,
                      cached_tokens: float, expert_fetch: str, overlap: str):
    """The two passes continuous batching at `B` sequences is made of, in one broadcast call (two
    float passes for one batch on one layout): a decode-only step, and the same step carrying one
    prompt chunk. Returns (T_dec, T_mixed, chunk tokens, prompt tokens each request prefills)."""
    Ip = I - float(cached_tokens)  # prompt tokens each request prefills
    if not 1.0 <= Ip <= I:
        raise TokenmathError(f"cached prompt tokens = {cached_tokens!r}; expected 0 to input tokens − 1 ({I - 1:g})")
    kw = dict(kernels=kernels, engine=engine, dtypes=dtypes, check=False, prefill_context=I - Ip / 2,
              expert_fetch=expert_fetch, overlap=overlap, context_cv=steady_context_cv(I, O))
    if _num(B) and not isinstance(layout, (list, tuple)):  # one batch on one layout: two float passes
        c = min(float(chunk_tokens), max(Ip, B * Ip / O))
        t_dec = op_step(model, system, layout, B, I + O / 2, 1.0, prefill_tokens=0.0, prefill_seqs=0.0, **kw).step_s
        t_mix = op_step(model, system, layout, B, I + O / 2, 1.0, prefill_tokens=c, prefill_seqs=c / Ip, **kw).step_s
        return t_dec, t_mix, c, Ip
    P = B * Ip / O
    c = np.minimum(chunk_tokens, np.maximum(Ip, P))
    shape = np.broadcast_shapes(np.shape(B), np.shape(c))
    Bb, cb = np.broadcast_to(B, shape), np.broadcast_to(c, shape)
    both = op_step(model, system, layout, np.stack([Bb, Bb]), I + O / 2, 1.0,
                   prefill_tokens=np.stack([np.zeros(shape), cb]), prefill_seqs=np.stack([np.zeros(shape), cb / Ip]),
                   **kw)
    t = np.asarray(both.step_s)
    return t[0], t[1], c, Ip


def steady_step_s(model: Model, system: System, layout: Layout, batch, input_tokens: float, output_tokens: float, *,
                  kernels: Kernels | None, engine: Engine | None = None, dtypes: Dtypes = Dtypes(),
                  chunk_tokens: float = CHUNK_TOKENS_DEFAULT, cached_tokens: float = 0.0, expert_fetch: str = "expected",
                  overlap: str = "full"):
    """Mean step time of continuous batching with chunked prefill at `batch` sequences per
    replica — the server's time per output token (a client's TPOT differs slightly: see
    `closed_loop`).

    Each step decodes one token per sequence (mean context I + O/2). To replace the batch/O
    sequences finishing per step, P = batch·I/O prompt tokens per step must be prefilled; they
    ride in chunks of c = min(chunk_tokens, max(I, P)) tokens, so a fraction P/c of steps carries
    one, and each such step costs what its chunk adds to a decode step:

        T = T_dec(B) + (P / c) · (T_mixed(B, c) − T_dec(B))

    The marginal form matters for MoE models: a decode-only step reads only the experts its
    tokens touch, a step carrying a chunk touches nearly all. `cached_tokens`: prompt tokens
    found in a prefix cache, not prefilled (they still sit in the decode context). kernels=None:
    the roofline bound of the same steps (op_step's conventions: expert_fetch, overlap)."""
    B = float(batch) if _num(batch) else np.asarray(batch, float)
    I, O = float(input_tokens), float(output_tokens)
    t_dec, t_mixed, c, Ip = _decode_and_chunk(model, system, layout, B, I, O, kernels=kernels, engine=engine,
                                              dtypes=dtypes, chunk_tokens=chunk_tokens, cached_tokens=cached_tokens,
                                              expert_fetch=expert_fetch, overlap=overlap)
    out = t_dec + (B * Ip / O / c) * (t_mixed - t_dec)
    return float(out) if np.ndim(out) == 0 else out


# How a client's requests arrive at the engine, relative to each other (closed_loop):
#   "spread": arrivals spread over the cycle (random lengths, many requests: a long run's steady
#             state) — the prefill of the others falls inside a request's decode;
#   "waves":  requests admitted together finish together (fixed lengths, or a burst): each wave
#             is prefilled, in order, before or while it decodes, so on average half of the
#             wave's prefill lands in a request's time to first token and half in its decode.
ARRIVALS = ("spread", "waves")
PREFILL_IN_DECODE = {"spread": 1.0, "waves": 0.5}
MAX_REQUESTS = 10**9  # a benchmark run's request count (bounds the ramp/drain arithmetic)


@dataclass(frozen=True)
class ClosedLoop:
    """A benchmark client holding `concurrency` requests in flight against one replica — vLLM's
    benchmark_serving / SGLang's bench_serving with --max-concurrency and request rate inf,
    genai-perf / AIPerf at a fixed concurrency — as the client measures it (per replica, SI).

    decode_batch      B = min(concurrency, batch cap): sequences the engine runs; the rest queue
    decode_step_s     T_d: a decode-only step of B sequences at the mean context I + O/2
    prefill_s         W: what one request's prompt adds to the steps that carry its chunks
    cycle_s           O·T_d + B·W: wall time in which the B running requests are replaced once
    e2e_s             (concurrency / B)·cycle: Little's law for a closed loop (queueing included)
    ttft_s, tpot_s    the client's time to first token and (E2E − TTFT)/(O − 1) per request
    output_tokens_per_s   total output tokens / run time: concurrency·O/E2E in the steady state
    prefill_share     B·W / cycle: the share of wall time the engine spends prefilling
    queue_s           time a request waits for a slot (0 below the cap)
    prompt_wait_s     time its prompt waits behind other prompts (spread arrivals; prompt_wait_s)
    """

    concurrency: float | np.ndarray
    decode_batch: float | np.ndarray
    decode_step_s: float | np.ndarray
    prefill_s: float | np.ndarray
    cycle_s: float | np.ndarray
    e2e_s: float | np.ndarray
    ttft_s: float | np.ndarray
    tpot_s: float | np.ndarray
    output_tokens_per_s: float | np.ndarray
    prefill_share: float | np.ndarray
    queue_s: float | np.ndarray
    arrivals: str = "spread"
    prompt_wait_s: float | np.ndarray = 0.0  # spread arrivals: mean wait behind other prompts (prompt_wait_s)


def prompt_wait_s(B, decode_step_s, prefill_s, output_tokens: float):
    """Mean time a prompt arriving at random waits for the prompts ahead of it (spread arrivals).

    The engine prefills prompts one after another, each taking W of its time, and spends the share
    ρ = B·W / cycle of its time on them (cycle = O·T_d + B·W). Taken as a single server with a fixed
    service time W and random arrivals (M/D/1), the Pollaczek–Khinchine mean-value formula gives the
    mean wait ρ·W / (2(1 − ρ)) = B·W² / (2·O·T_d), since 1 − ρ = O·T_d / cycle (L. Kleinrock,
    Queueing Systems vol. 1, 1975, §5.6). A closed loop is less bursty than random arrivals, so
    this is an upper estimate; a prompt waits at most for the B − 1 others."""
    B, t_d, W = np.asarray(B, float), np.asarray(decode_step_s, float), np.asarray(prefill_s, float)
    O = float(output_tokens)
    pk = B * W * W / (2.0 * O * np.maximum(t_d, 1e-30))
    return np.minimum(pk, np.maximum(B - 1.0, 0.0) * W)


def _check_requests(requests) -> None:
    if requests is not None and not (math.isfinite(requests) and 1 <= requests <= MAX_REQUESTS):
        raise TokenmathError(f"requests = {requests!r}; expected 1 to {MAX_REQUESTS:g}")


def client_metrics(concurrency, decode_batch, decode_step_s, prefill_s, output_tokens: float, *,
                   arrivals: str = "spread", requests: float | None = None) -> ClosedLoop:
    """A benchmark client's numbers from the engine's two times (the accounting of closed_loop,
    pure arithmetic): `decode_batch` B sequences running of `concurrency` in flight, a decode step
    T_d and the time W one request's prompt adds to the steps that carry it."""
    if arrivals not in ARRIVALS:
        raise TokenmathError(f"arrivals = {arrivals!r}; expected one of {', '.join(ARRIVALS)}")
    _check_requests(requests)
    c, B = np.asarray(concurrency, float), np.asarray(decode_batch, float)
    t_d, W, O = np.asarray(decode_step_s, float), np.asarray(prefill_s, float), float(output_tokens)
    phi = PREFILL_IN_DECODE[arrivals]
    cycle = O * t_d + B * W
    e2e = (c / B) * cycle
    queue = e2e - cycle
    wait = prompt_wait_s(B, t_d, W, O) if arrivals == "spread" else np.zeros_like(t_d)
    ttft = queue + t_d + W + wait + (1.0 - phi) * (B - 1.0) * W
    # bench_serving counts TPOT as 0 for a one-token output (no decode); the others' prefill that a
    # request waited out before its first token is not in its decode
    tpot = t_d + (phi * (B - 1.0) * W - wait) / (O - 1.0) if O > 1 else np.zeros_like(t_d)
    if requests is not None and arrivals == "waves":
        n = float(requests)
        run_s = np.ceil(n / c - 1e-9) * e2e
    else:
        n, run_s = c, e2e
    return ClosedLoop(_f(c), _f(B), _f(t_d), _f(W), _f(cycle), _f(e2e), _f(ttft), _f(tpot), _f(n * O / run_s),
                      _f(B * W / cycle), _f(queue), arrivals, _f(wait))


def closed_loop(model: Model, system: System, layout: Layout, concurrency, input_tokens: float, output_tokens: float,
                *, kernels: Kernels | None, engine: Engine | None = None, dtypes: Dtypes = Dtypes(),
                batch_cap: float | None = None, arrivals: str = "spread", requests: float | None = None,
                chunk_tokens: float = CHUNK_TOKENS_DEFAULT, cached_tokens: float = 0.0,
                expert_fetch: str = "expected", overlap: str = "full") -> ClosedLoop:
    """What a benchmark client reports at `concurrency` requests in flight (one replica).

    Per request the client records TTFT and its end-to-end latency E2E, and reports
    TPOT = (E2E − TTFT)/(O − 1) averaged over requests and output throughput = total output
    tokens / run time (vLLM benchmarks/benchmark_serving.py `calculate_metrics`; SGLang
    python/sglang/bench_serving.py, adapted from it). The engine runs B = min(concurrency,
    batch_cap) sequences; each step decodes one token for each (T_d at the mean context
    I + O/2) and carries the prompt chunks of arriving requests, each prompt adding
    W = (I/c)·(T_mixed − T_d) (steady_step_s's marginal form). In the time the B running
    requests are replaced once, every slot takes O steps (its prompt's step and O − 1 decodes)
    and B prompts are prefilled:

        cycle = O·T_d + B·W,   E2E = (concurrency/B)·cycle,   output/s = concurrency·O/E2E

    A request's first token comes with the step that ends its prompt (T_d + W) after any
    queueing and after the share (1 − φ) of the others' prefill that precedes it; the rest of
    their prefill, φ(B − 1)·W, stretches its decode:

        TTFT = queue + T_d + W + Wq + (1 − φ)(B − 1)·W,   TPOT = T_d + (φ(B − 1)·W − Wq)/(O − 1)

    φ = 1 for "spread" arrivals, 1/2 for "waves" (ARRIVALS). Wq: with spread arrivals a prompt
    that arrives while another is being prefilled waits its turn (prompt_wait_s, an M/D/1 mean);
    waves carry that order explicitly in (1 − φ), so Wq = 0 there. steady_step_s = cycle/O, the
    server's mean step. `requests`: the run's request count N. No more than N are ever in flight
    (concurrency is taken as min(concurrency, N): a run of 500 prompts sent at once runs at most
    500 sequences, however many would fit); with waves the run lasts ceil(N/concurrency) cycles
    of E2E (the last wave partly empty), with spread arrivals N/c of them (the client's ramp and
    drain cost nothing to first order). None: the steady state."""
    if arrivals not in ARRIVALS:
        raise TokenmathError(f"arrivals = {arrivals!r}; expected one of {', '.join(ARRIVALS)}")
    I, O = float(input_tokens), float(output_tokens)
    if not (math.isfinite(I) and math.isfinite(O) and I >= 1 and O >= 1):
        raise TokenmathError(f"input tokens = {I:g}, output tokens = {O:g}; expected both ≥ 1")
    c = np.asarray(concurrency, float)
    if not np.all(np.isfinite(c) & (c >= 1)):
        raise TokenmathError(f"concurrency = {concurrency!r}; expected ≥ 1 request in flight")
    if batch_cap is not None and not (math.isfinite(batch_cap) and batch_cap >= 1):
        raise TokenmathError(f"batch cap = {batch_cap!r}; expected ≥ 1 sequence")
    _check_requests(requests)
    if requests is not None:  # a client holds no more requests in flight than its run sends
        c = np.minimum(c, float(requests))
    B = np.minimum(c, batch_cap) if batch_cap is not None else c
    t_d, t_mixed, chunk, Ip = _decode_and_chunk(model, system, layout, B, I, O, kernels=kernels, engine=engine,
                                                dtypes=dtypes, chunk_tokens=chunk_tokens, cached_tokens=cached_tokens,
                                                expert_fetch=expert_fetch, overlap=overlap)
    W = (Ip / chunk) * np.maximum(t_mixed - t_d, 0.0)
    return client_metrics(c, B, t_d, W, O, arrivals=arrivals, requests=requests)


@dataclass(frozen=True)
class RateSolution:
    """The batch at which a client's TPOT meets a stated rate per user, and what it gives."""

    batch: float
    tokens_per_s: float  # output tokens/s of the replica
    tpot_s: float
    sensitivity: float  # d log(tokens_per_s) / d log(step time)
    prefill_share: float
    note: str = ""


RATE_GRID = 64  # batches tried between 1 and the cap (geometric), then refined twice
RATE_REFINE = 8
ELASTICITY_STEP = 0.02  # ± in log batch for the local slopes


def solve_rate(loop, rate: float, top: float) -> RateSolution:
    """The best batch whose client TPOT meets `rate` tokens/s per user, between 1 and `top`:
    `loop(batch)` is the closed loop at that many requests in flight (closed_loop with everything
    else fixed; it must broadcast over an array of batches). The largest batch that meets the rate,
    where throughput rises with batch, found on a geometric grid and refined in the bracket where
    the rate stops being met, so the answer is continuous in the step time and its sensitivity is
    the local one:

        A = B·O / cycle(B),  TPOT(B*) = 1/rate   ⇒   d log A / d log T = −(1 − ε_c)/ε_t − 1

    with ε_t, ε_c the slopes of log TPOT and log cycle against log B at B* (all step times
    scaled by s: B* moves by −1/ε_t in log, the cycle by ε_c·that + 1). At the cap or at batch
    1 the batch does not move: −1."""
    if not (math.isfinite(rate) and rate >= 0):
        raise TokenmathError(f"tokens/s per user = {rate!r}; expected a finite rate ≥ 0")
    top = max(float(top), 1.0)
    grid = np.unique(np.geomspace(1.0, top, RATE_GRID))
    run = loop(grid)
    tpot, tput = np.atleast_1d(run.tpot_s), np.atleast_1d(run.output_tokens_per_s)
    ok = tpot * rate <= 1.0
    if not ok.any():
        return RateSolution(1.0, float(tput[0]), float(tpot[0]), -1.0, float(np.atleast_1d(run.prefill_share)[0]),
                            f"beyond the estimate: no batch reaches {rate:.4g} tokens/s per user "
                            f"(batch 1 gives {1 / tpot[0]:.4g}); answered at batch 1")
    i = int(np.argmax(np.where(ok, tput, -1.0)))
    lo = grid[i]
    if i + 1 < len(grid) and not ok[i + 1]:
        hi = grid[i + 1]
        for _ in range(2):
            sub = np.geomspace(lo, hi, RATE_REFINE + 1)
            t = np.atleast_1d(loop(sub).tpot_s)
            j = int(np.nonzero(t * rate <= 1.0)[0].max())
            lo, hi = sub[j], sub[min(j + 1, RATE_REFINE)]
    at = loop(lo)
    sens = -1.0
    if 1.0 < lo < top * (1 - 1e-9):
        h = ELASTICITY_STEP
        side = loop(lo * np.exp([-h, h]))
        eps_t = float(np.diff(np.log(side.tpot_s))[0]) / (2 * h)
        eps_c = float(np.diff(np.log(side.cycle_s))[0]) / (2 * h)
        if eps_t > 1e-6:
            sens = -(1.0 - eps_c) / eps_t - 1.0
    return RateSolution(float(lo), float(at.output_tokens_per_s), float(at.tpot_s), float(sens),
                        float(at.prefill_share))
