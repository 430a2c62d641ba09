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
from .kvcache import attention_flops_per_token, kv_cache
from .layout import layout_memory
from .parallelism import HOP_LATENCY_S_DEFAULT, Layout, check_layout, kv_head_split, link_bytes_per_s, placement
from .params import mlp_params, param_counts
from .roofline import resolve_dtypes
from .specs import Dtypes, Efficiency, Model, System
from .units import COMPUTE_CLASS, dtype_bytes

# Activations a token moves per GEMM it passes through: its input and output rows in BF16. An
# estimate of tokenmath's (it matters only where M is large, where compute dominates anyway).
ACT_BYTES = 2.0


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
        t_c = np.asarray(t_c, float) * tile_pad(rows, self.tile_m)
        return _pnorm(t_c / self.e_c, np.asarray(t_m, float) / self.e_m, self.p) + self.t0_s


def tile_pad(rows, tile_m: float):
    """⌈M/tile⌉·tile / M: the share of a GEMM's multiply work spent on rows padded to the tile (1
    where the tile is 1 or M unknown). M below 1 (a fraction of a token per expert, on average)
    counts as 1 row."""
    if rows is None or tile_m <= 1:
        return 1.0
    m = np.maximum(np.asarray(rows, float), 1.0)
    return np.ceil(m / tile_m) * tile_m / m


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
    + t0q where activations are quantised first (FP8, FP4). tile_m: M rows padded to the tile."""

    e_c0: float
    kappa: float
    e_m: float
    p: float
    t0_s: float
    t0q_s: float = 0.0
    tile_m: float = 1.0

    def e_c(self, rate_ratio=1.0):
        return 1.0 / (1.0 / self.e_c0 + self.kappa * np.asarray(rate_ratio, float))

    def curve(self, rate_ratio: float = 1.0, quantised: bool = False) -> GemmCurve:
        """The curve on a chip whose kernel dtype runs `rate_ratio` × its BF16 peak."""
        return GemmCurve(float(self.e_c(rate_ratio)), self.e_m, self.p,
                         self.t0_s + (self.t0q_s if quantised else 0.0), self.tile_m)

    def time_s(self, t_c, t_m, rate_ratio=1.0, quantised=0.0, rows=None):
        """Vectorised over kernels of mixed dtypes (the fit's form): rate_ratio and quantised are
        arrays like t_c."""
        t_c = np.asarray(t_c, float) * tile_pad(rows, self.tile_m)
        return (_pnorm(t_c / self.e_c(rate_ratio), np.asarray(t_m, float) / self.e_m, self.p)
                + self.t0_s + self.t0q_s * np.asarray(quantised, float))


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

    gemm: dict  # dtype family ("tensor", "fp8_block", "int8", "w8a16", "w4a16") -> GemmFamily, dense GEMMs
    moe: dict  # dtype family -> GemmFamily, the MoE layer's grouped GEMMs
    attention: dict  # kv class ("bf16" | "fp8") -> AttentionCurve
    mla: dict  # kv class -> AttentionCurve
    all_reduce: CommCurve
    alltoall: CommCurve
    custom_all_reduce: dict = None  # engine -> CommCurve
    mla_ampere: dict = None  # kv class -> AttentionCurve (MLA decode has no fast Ampere kernel)
    source: str = ""

    def pick(self, table: dict, cls: str):
        return table.get(cls) or table.get("fp8" if cls in ("fp4", "int8", "int4") else "bf16") or next(iter(table.values()))

    def gemm_curve(self, op: str, family: str, rate_ratio: float, quantised: bool) -> GemmCurve:
        """The fitted family of `op` ("gemm" | "moe") resolved on a chip: its dtype runs `rate_ratio`
        × the chip's BF16 peak. A family the table lacks falls back to "tensor" (the BF16/FP8 fit)."""
        return _gemm_curve(self, op, family, float(rate_ratio), bool(quantised))


@lru_cache(maxsize=512)
def _gemm_curve(kernels: Kernels, op: str, family: str, rate_ratio: float, quantised: bool) -> GemmCurve:
    table = kernels.gemm if op == "gemm" else kernels.moe
    fam = table.get(family) or table.get("tensor") or next(iter(table.values()))
    return fam.curve(rate_ratio, quantised)


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
        return _f(np.asarray(self.flops) / (np.asarray(T) * self._chips_axis() * self.peak_flops_per_s))

    def mbu(self, step_s=None):
        """Model bandwidth utilisation: the bytes the step must read (weights touched + KV) ÷ (step
        time × chips × peak HBM B/s) — Databricks' definition ("LLM Inference Performance
        Engineering: Best Practices", 2023). Re-reads of weights a layout replicates count as waste."""
        T = self.step_s if step_s is None else step_s
        return _f((np.asarray(self.weight_bytes) + np.asarray(self.kv_bytes))
                  / (np.asarray(T) * self._chips_axis() * self.peak_hbm_bytes_per_s))

    def _chips_axis(self):
        """Chips per replica, broadcastable against the step: one number, or (layouts, 1) for a
        many-layout pass (chips has one entry per layout, the step a leading layout axis)."""
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
    gemms_per_layer: int  # dense kernels per layer as engines fuse them (QKV, O, gate_up, down; MLA: 6)
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
    gemms = 6 if model.attention.kind == "mla" else 4
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
    pp_inv_bw: float  # Σ over stage boundaries of 1/bandwidth, / PP (0 when PP = 1)
    hops_s: float
    chips: float
    billed_chips: float


@lru_cache(maxsize=8192)
def layout_terms(model: Model, system: System, layout: Layout, kernels: Kernels, engine: Engine,
                 hop_latency_s: float) -> LayoutTerms:
    """The layout as numbers: degrees, the links each collective takes (in-domain or scale-out),
    the all-reduce curve (an engine's one-shot kernel inside a domain), the domains an EP group
    and the pipeline cross, the billed chips. Raises for a link the catalog does not publish."""
    dom = system.scaleup_chips
    tp, pp, sc = layout.tp, layout.pp, layout.stage_chips
    tp_alpha, tp_e, tp_bw = 0.0, 1.0, 1.0  # TP = 1: no all-reduce (its term is 0 × these)
    if tp > 1:
        ar = kernels.all_reduce
        if tp <= dom and kernels.custom_all_reduce:  # engines' one-shot kernels inside a domain
            ar = kernels.custom_all_reduce.get(engine.name) or kernels.custom_all_reduce.get("generic") or ar
        tp_alpha, tp_e, tp_bw = ar.alpha_s, ar.e_link, link_bytes_per_s(system, tp > dom, f"TP {tp}")
    ep = layout.ep
    ep_on = f_out = remote = 0.0
    up_bw = out_bw = 1.0
    ep_hop = 0.0
    if model.moe is not None and ep > 1:
        ep_on = 1.0
        in_dom = min(ep, dom)
        f_out = 1.0 - in_dom / ep
        up_bw = link_bytes_per_s(system, False, "an expert-parallel all-to-all")
        if f_out:
            D = ep / in_dom
            remote = (D - 1) * (1 - (1 - 1 / D) ** model.moe.k)
            out_bw = link_bytes_per_s(system, True, f"EP {ep} across {dom}-chip domains")
            ep_hop = 2 * hop_latency_s
    place = placement(layout, system)
    inv_bw = hops = 0.0
    if pp > 1:
        for i in range(pp):
            across = place.stage_domain[i] != place.stage_domain[(i + 1) % pp] or sc > dom
            inv_bw += 1.0 / link_bytes_per_s(system, across, "a pipeline boundary between domains")
            hops += hop_latency_s if across else 0.0
    return LayoutTerms(float(pp), float(layout.m), float(tp), float(sc), float(layout.attention_dp), float(ep),
                       float(kv_head_split(model, layout)), _z_max(ep), tp_alpha, tp_e, tp_bw, ep_on, f_out, remote,
                       up_bw, out_bw, ep_hop, inv_bw / pp, hops, float(layout.replica_chips), float(place.billed_chips))


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
        dense_family=d_fam, expert_family=e_fam, dense_ratio=rate_ratio(chip, d_kcls),
        expert_ratio=rate_ratio(chip, e_kcls), dense_quantised=d_q, expert_quantised=e_q,
        dense_kernel_flops_per_s=float(chip.flops_per_s(d_cls if roofline else d_kcls)))


@dataclass(frozen=True)
class Microbatch:
    """What one microbatch puts on one chip of a pipeline stage (arrays broadcast over batch,
    context and the leading layout axis)."""

    layers: float  # the stage's layers
    moe_layers: float
    tokens: float | np.ndarray  # new tokens in the microbatch: decode/new tokens plus prefill chunks
    rank_tokens: float | np.ndarray  # ... on one attention-DP rank (TP ranks see all of theirs)
    rank_seqs: float | np.ndarray  # sequences whose logits one attention-DP rank computes


def microbatch(shape: ModelShape, lt: LayoutTerms, batch, new_tokens, prefill_tokens, prefill_seqs) -> Microbatch:
    """One microbatch of `batch` sequences × `new_tokens` plus `prefill_tokens` prompt tokens
    (belonging to `prefill_seqs` sequences; None: each its own) on a stage: attention-DP ranks
    split the sequences, m microbatches the batch."""
    tok = (batch * new_tokens + prefill_tokens) / lt.m
    seqs = batch + (prefill_tokens if prefill_seqs is None else np.asarray(prefill_seqs, float))
    return Microbatch(layers=shape.layers / lt.pp, moe_layers=shape.moe_layers / lt.pp, tokens=tok,
                      rank_tokens=tok / lt.adp, rank_seqs=seqs / lt.m / lt.adp)


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


NO_TERM = Term()


def _pnorm(t_c, t_m, p):
    """(t_c^p + t_m^p)^(1/p), computed on the larger of the two (no overflow, 0 at 0)."""
    hi = np.maximum(t_c, t_m)
    safe = np.where(hi > 0, hi, 1.0)
    return hi * ((t_c / safe) ** p + (t_m / safe) ** p) ** (1.0 / p)


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
                replica_weight_bytes=lt.tp * w)


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
                replica_weight_bytes=lt.tp * w)


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


def experts_touched(tokens, k: int, n_experts: int, chips, expert_fetch: str = "expected"):
    """Expert-equivalents of weights one chip reads in a pass, of the n_experts/chips it holds:
    "expected" — those its `tokens` tokens touch under uniform routing, E/chips·(1 − (1 − k/E)^T)
    (grouped-GEMM kernels skip empty experts); "all" — every one, every pass (the lecture's model)."""
    held = n_experts / chips
    if expert_fetch == "expected":
        return held * (1.0 - (1.0 - k / n_experts) ** tokens)
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
    touched = experts_touched(mb.tokens, k, E, lt.sc, expert_fetch)
    flops = 2.0 * shape.expert_params * pairs * mb.moe_layers
    w = touched * shape.expert_params * rates.expert_bytes_per_param * mb.moe_layers
    act = pairs * ACT_BYTES * 2 * shape.hidden * 2 * mb.moe_layers
    rows = pairs * imbalance / np.maximum(touched, 1e-12)
    t = gemm_time(curve, flops * imbalance, w + act, mb.moe_layers, rates.expert_flops_per_s,
                  rates.hbm_bytes_per_s, engine, rows=rows)
    return Term(time_s=t, flops=flops, compute_s=flops / rates.bound_flops_per_s, weight_bytes=w, act_bytes=act,
                replica_weight_bytes=lt.sc * w)


def attention_curve(model: Model, system: System, kernels: Kernels, kv_dtype: str) -> AttentionCurve:
    """The fitted attention kernel for the model's attention (GQA or MLA; MLA decode on a chip
    without FP8 — Ampere — has no fast kernel) and the KV dtype's class (FP8 or BF16)."""
    kv_cls = "fp8" if kv_dtype in ("fp8", "int8") else "bf16"
    if model.attention.kind == "mla":
        table = kernels.mla_ampere if (kernels.mla_ampere and not system.chip.flops_per_s("fp8")) else kernels.mla
    else:
        table = kernels.attention
    return kernels.pick(table, kv_cls)


def kv_read_time(kv_bytes, context, curve: AttentionCurve, engine: Engine, hbm_bytes_per_s: float):
    """Streaming the KV a kernel attends to: its bytes padded per sequence to KV tiles (s0 tokens),
    at the curve's fraction of HBM bandwidth."""
    e_m = min(curve.e_m * engine.memory_scale, 1.0)
    return kv_bytes * (context + curve.s0) / np.maximum(context, 1.0) / (hbm_bytes_per_s * e_m)


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
    return np.maximum(t, kv_time_s) + curve.pre_t0_s * engine.floor_scale * layers


def attention_time(model: Model, lt: LayoutTerms, mb: Microbatch, batch, context, new_tokens, rates: KernelRates,
                   curve: AttentionCurve, engine: Engine) -> Term:
    """Attention of the pass's own sequences: `batch` sequences each adding `new_tokens` after
    `context` cached ones, split over attention-DP ranks and (by heads) TP ranks. Decode (S = 1):
    the KV read and MLA's absorbed FLOPs; a prompt (S > 1): the causal FLOPs at the mean context
    L + (S − 1)/2, MLA un-absorbed (multi-head on decompressed K, V)."""
    S = new_tokens
    seqs = batch / lt.m / lt.adp
    mean_ctx = context + (S - 1) / 2
    per_tok = np.where(S > 1, np.asarray(attention_flops_per_token(model, mean_ctx, absorbed=False)),
                       np.asarray(attention_flops_per_token(model, mean_ctx))) / lt.pp
    flops = seqs * S * per_tok / lt.tp  # heads split over TP (MLA too: its heads, not its latent)
    ctx = context + S
    kv = seqs * np.asarray(kv_cache(model, ctx, rates.kv_dtype).read_bytes) / lt.pp / lt.kv_split
    t_kv = kv_read_time(kv, ctx, curve, engine, rates.hbm_bytes_per_s)
    Fa = rates.attention_flops_per_s
    t = np.where(S > 1, prompt_attention_time(flops, t_kv, S, mb.layers, curve, engine, Fa),
                 decode_attention_time(flops, t_kv, mb.layers, curve, engine, Fa))
    return Term(time_s=t, flops=flops, compute_s=flops / Fa, kv_bytes=kv, replica_kv_bytes=lt.adp * lt.kv_split * kv)


def prefill_chunk_attention_time(model: Model, lt: LayoutTerms, mb: Microbatch, prefill_tokens, prefill_context,
                                 prefill_seqs, rates: KernelRates, curve: AttentionCurve, engine: Engine) -> Term:
    """Prompt chunks mixed into the pass (chunked prefill): `prefill_tokens` tokens attending to
    `prefill_context` each on average, causal and compute bound, in chunks of prefill_tokens ÷
    prefill_seqs tokens (None: one chunk)."""
    P = prefill_tokens
    Fa = rates.attention_flops_per_s
    flops = P / lt.m / lt.adp * np.asarray(attention_flops_per_token(model, prefill_context, absorbed=False)) / lt.pp / lt.tp
    chunk = np.maximum(P / np.maximum(np.asarray(prefill_seqs if prefill_seqs is not None else 1.0, float), 1e-9), 1.0)
    t = np.where(P > 0, flash_attention_time(flops, chunk, curve, engine, Fa)
                 + curve.pre_t0_s * engine.floor_scale * mb.layers, 0.0)
    return Term(time_s=t, flops=flops, compute_s=flops / Fa)


def tp_allreduce_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch, engine: Engine) -> Term:
    """Two all-reduces per layer of the rank's tokens' hidden vectors (BF16), ring traffic
    2(TP − 1)/TP of the message: α + bytes / (link · e_link) each; 0 at TP = 1."""
    msg = mb.rank_tokens * shape.hidden * ACT_BYTES
    frac = 2 * (lt.tp - 1) / lt.tp
    e_link = np.minimum(lt.tp_e_link * engine.network_scale, 1.0)
    t = 2 * mb.layers * (lt.tp_alpha_s * engine.floor_scale + frac * msg / (lt.tp_bw * e_link))
    return Term(time_s=t, link_s=2 * mb.layers * frac * msg / lt.tp_bw)


def ep_alltoall_time(model: Model, shape: ModelShape, lt: LayoutTerms, mb: Microbatch, imbalance, rates: KernelRates,
                     curve: CommCurve, engine: Engine) -> Term:
    """Dispatch + combine of each MoE layer, from the busiest rank (`imbalance`× the mean). Dispatch
    is FP8 when the weights are ≤ 1 byte (activations are quantised before sending, as DeepEP and
    TensorRT-LLM's wide EP do), combine BF16, of each token's k copies, (EP − 1)/EP of them leaving
    the chip. Across domains a token travels once per distinct remote domain among its k experts
    (then is forwarded inside it), over the scale-out NIC in parallel with the scale-up links, and
    pays a hop each way. 0 at EP = 1."""
    if model.moe is None or not shape.moe_layers:
        return NO_TERM
    e_l = min(curve.e_link * engine.network_scale, 1.0)
    k = model.moe.k
    b_w = rates.expert_bytes_per_param
    per_copy = shape.hidden * (min(ACT_BYTES, b_w if b_w <= 1 else ACT_BYTES) + ACT_BYTES)
    t_up = mb.tokens / lt.sc * k * per_copy * (lt.ep - 1) / lt.ep * imbalance / (lt.ep_up_bw * e_l)
    t_out = mb.tokens / lt.sc * lt.ep_remote * per_copy * imbalance / (lt.ep_out_bw * e_l)
    lat = 2 * curve.alpha_s * engine.floor_scale + lt.ep_hop_s
    t = lt.ep_on * mb.moe_layers * (np.maximum(t_up, t_out) + lat)
    return Term(time_s=t, link_s=lt.ep_on * mb.moe_layers * np.maximum(t_up, t_out) * e_l / imbalance)


def pp_transfer_time(shape: ModelShape, lt: LayoutTerms, mb: Microbatch) -> Term:
    """Each stage sends its share of the microbatch's hidden vectors (BF16) to the next, at the
    boundary's link (the hop latencies between domains are the round's, `pipeline_round_s`)."""
    t = mb.tokens / lt.sc * shape.hidden * ACT_BYTES * lt.pp_inv_bw
    return Term(time_s=t, link_s=t)


# --------------------------------------------------------------------------------------------
# The pass: the terms summed, a round of the pipeline, and the bound of the same pass
# --------------------------------------------------------------------------------------------


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
    return np.maximum(lt.m * stage_s, lt.pp * stage_s + lt.hops_s)


def _combine(compute_s, memory_s, network_s, overlap: str):
    """One stage's resources together: "full" overlap takes the max, "none" adds the network."""
    if overlap == "full":
        return np.maximum(np.maximum(compute_s, memory_s), network_s)
    return np.maximum(compute_s, memory_s) + network_s


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
    decides = np.where((net > np.maximum(c, mem)) & (net > 0), 2, np.where(c >= mem, 0, 1))
    return PassBound(compute_s=c, weights_s=w_s, kv_s=kv_s, activations_s=act_s, memory_s=mem, network_s=net,
                     step_s=pipeline_round_s(_combine(c, mem, net, overlap), lt), decides=decides)


# Which of OpStep's parts each term of `pass_terms` reports under (a new term names its part here).
STAGE_PARTS = ("dense_gemm_s", "expert_gemm_s", "attention_s", "tp_comm_s", "ep_comm_s", "pp_comm_s")
TERM_PART = {"dense_gemm": "dense_gemm_s", "lm_head": "dense_gemm_s", "expert_gemm": "expert_gemm_s",
             "attention": "attention_s", "prefill_chunks": "attention_s", "tp_allreduce": "tp_comm_s",
             "ep_alltoall": "ep_comm_s", "pp_transfer": "pp_comm_s"}


def pass_terms(model: Model, system: System, lt: LayoutTerms, batch, context, new_tokens, prefill_tokens,
               prefill_context, prefill_seqs, *, kernels: Kernels, engine: Engine, rates: KernelRates,
               expert_fetch: str = "expected") -> tuple[dict[str, Term], float | np.ndarray]:
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
    att = attention_curve(model, system, kernels, rates.kv_dtype)
    return {
        "dense_gemm": dense_gemm_time(sh, lt, mb, rates, gemm, engine),
        "lm_head": lm_head_time(sh, lt, mb, rates, gemm, engine),
        "expert_gemm": expert_gemm_time(model, sh, lt, mb, imb, rates, moe, engine, expert_fetch),
        "attention": attention_time(model, lt, mb, batch, context, new_tokens, rates, att, engine),
        "prefill_chunks": prefill_chunk_attention_time(model, lt, mb, prefill_tokens, prefill_context, prefill_seqs,
                                                       rates, att, engine),
        "tp_allreduce": tp_allreduce_time(sh, lt, mb, engine),
        "ep_alltoall": ep_alltoall_time(model, sh, lt, mb, imb, rates, kernels.alltoall, engine),
        "pp_transfer": pp_transfer_time(sh, lt, mb),
    }, imb


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
        lt = stack_layout_terms([layout_terms(model, system, lay, kernels, engine, hop_latency_s) for lay in layout])
    else:
        lt = layout_terms(model, system, layout, kernels, engine, hop_latency_s)
    return _op_core(model, system, lt, tuple(layout) if many else layout, batch, context, new_tokens, kernels, engine,
                    roofline, prefill_tokens, prefill_context, prefill_seqs, dtypes, expert_fetch, overlap,
                    efficiency)


def _op_core(model, system, lt: LayoutTerms, layout, batch, context, new_tokens, kernels: Kernels, engine: Engine,
             roofline: bool, prefill_tokens, prefill_context, prefill_seqs, dtypes: Dtypes, expert_fetch: str = "expected",
             overlap: str = "full", efficiency: Efficiency | None = None) -> OpStep:
    """The pass assembled from its terms: their sum per stage, a round of the pipeline plus the
    per-step overhead, never below the bound of the same pass (`pass_bound` of the same terms)."""
    B = np.asarray(batch, float)
    L = np.asarray(context, float)
    S = np.asarray(new_tokens, float)
    P = np.asarray(prefill_tokens, float)
    Lp = np.asarray(prefill_context, float)
    if np.any(B < 0) or np.any(S < 1) or np.any(P < 0) or np.any(L < 0) or np.any(Lp < 0):
        raise TokenmathError("batch, context and prefill tokens must be >= 0 and new tokens >= 1")
    rates = kernel_rates(model, system, dtypes, roofline)
    terms, imb = pass_terms(model, system, lt, B, L, S, P, Lp, prefill_seqs, kernels=kernels, engine=engine,
                            rates=rates, expert_fetch=expert_fetch)
    # the stage is the sum of its terms (one stream: kernels do not overlap), reported in OpStep's parts
    times, links = {p: [] for p in STAGE_PARTS}, {p: [] for p in STAGE_PARTS}
    for name, t in terms.items():
        times[TERM_PART[name]].append(t.time_s)
        links[TERM_PART[name]].append(t.link_s)
    part_s = {p: _sum(v) for p, v in times.items()}
    stage = _sum(part_s.values())
    bd = pass_bound(terms.values(), lt, rates.hbm_bytes_per_s, overlap)
    if roofline and efficiency is not None:  # a roofline at the user's achieved fractions of peak
        step = pipeline_round_s(_combine(bd.compute_s / efficiency.flops, bd.memory_s / efficiency.hbm,
                                         bd.network_s / efficiency.network, overlap), lt)
    elif roofline:
        step = bd.step_s
    else:
        step = np.maximum(pipeline_round_s(stage, lt) + engine.overhead_s, bd.step_s)
    tokens = B * S + P
    shape = np.shape(step)

    def bc(x):
        if not shape:  # one pass (the common scalar call): no broadcasting to do
            return float(x)
        a = np.asarray(x, float)
        return np.array(a if a.shape == shape else np.broadcast_to(a, shape))

    names = np.broadcast_to(np.array(["compute", "memory", "network"])[bd.decides], shape)
    # the model's work in the step (whole replica, no layout copies): FLOPs are split over every
    # chip of a stage; each term counts its own weights and KV once (Term.replica_*)
    m, pp, hops = lt.m, lt.pp, lt.hops_s
    work_flops = m * pp * lt.sc * _sum(t.flops for t in terms.values())
    work_w = m * pp * _sum(t.replica_weight_bytes for t in terms.values())
    work_kv = m * pp * _sum(t.replica_kv_bytes for t in terms.values())
    many = isinstance(layout, tuple)
    return OpStep(
        batch=bc(B), context=bc(L), new_tokens=bc(S), prefill_tokens=bc(P),
        dense_gemm_s=bc(pp * part_s["dense_gemm_s"]), expert_gemm_s=bc(pp * part_s["expert_gemm_s"]),
        attention_s=bc(pp * part_s["attention_s"]), tp_comm_s=bc(pp * part_s["tp_comm_s"]),
        ep_comm_s=bc(pp * part_s["ep_comm_s"]), pp_comm_s=bc(pp * part_s["pp_comm_s"] + hops),
        overhead_s=engine.overhead_s, step_s=bc(step), bound_s=bc(bd.step_s), expert_imbalance=bc(imb),
        tokens_per_s=bc(tokens / step),
        chips=lt.chips[:, 0].astype(int) if many else int(lt.chips), billed_chips=lt.billed_chips[:, 0] if many else lt.billed_chips,
        layout=layout, label=engine.label if efficiency is None or not roofline else f"roofline × efficiencies ({efficiency.label})",
        bound_parts={"compute_s": bc(m * bd.compute_s), "weights_s": bc(m * bd.weights_s), "kv_s": bc(m * bd.kv_s),
                     "activations_s": bc(m * bd.activations_s), "network_s": bc(m * bd.network_s), "hops_s": bc(hops),
                     **{p: bc(m * _sum(links[p])) for p in ("tp_comm_s", "ep_comm_s", "pp_comm_s")}},
        bound_name=str(names) if names.ndim == 0 else np.array(names),
        flops=bc(work_flops), weight_bytes=bc(work_w), kv_bytes=bc(work_kv), peak_flops_per_s=rates.bound_flops_per_s,
        peak_hbm_bytes_per_s=rates.hbm_bytes_per_s, expert_fetch=expert_fetch,
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
