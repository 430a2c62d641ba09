"""Training economics (the lecture's 1:18–1:33 and 2:04–2:13): compute and time, Chinchilla and
inference-aware sizing, the equal-cost rule for pre-training / RL / inference, MoE quality vs
expert count, training memory per chip, and reversible layers.

Every factor is a named argument with its source; nothing here is fitted on the fly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .params import param_counts
from .specs import Model, System
from .units import dtype_bytes, sig

SECONDS_PER_DAY = 86_400.0

# --------------------------------------------------------------------------------------------
# Compute and time
# --------------------------------------------------------------------------------------------

# FLOPs per active parameter per token (2 per multiply-add; the backward pass costs twice the forward)
PRETRAIN_FLOPS_PER_PARAM_TOKEN = 6.0  # forward 2 + backward 4 (Kaplan et al. 2020; Hoffmann et al. 2022)
INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0
RECOMPUTE_FLOPS_PER_PARAM_TOKEN = 8.0  # full recompute or reversible layers: one extra forward (Gomez et al. 2017)


def _positive(name: str, v) -> float:
    if v is None or not (float(v) > 0 and math.isfinite(float(v))):
        raise TokenmathError(f"{name} = {v!r} must be a positive number")
    return float(v)


def _fraction(name: str, v) -> float:
    if v is None or not (0 < float(v) <= 1):
        raise TokenmathError(f"{name} = {v!r} must be in (0, 1]")
    return float(v)


@dataclass(frozen=True)
class TrainTime:
    flops: float
    seconds: float
    days: float
    chip_hours: float
    usd: float | None
    mfu: float
    chips: int
    flops_per_s_per_chip: float
    flops_per_param_token: float
    active_params: float
    tokens: float


def train_time(model: Model, system: System, chips: int, tokens: float, *, mfu: float = 0.4, dtype: str = "bf16",
               flops_per_param_token: float = PRETRAIN_FLOPS_PER_PARAM_TOKEN,
               usd_per_chip_hour: float | None = None) -> TrainTime:
    """Time and cost of training on `tokens` tokens: FLOPs = 6·N_active·D (2 for inference, 8 with
    full recompute) at `mfu` of the chips' dense peak in `dtype`. The default MFU 0.4 is Llama 3
    405B's published 38–43 % on H100 (arXiv 2407.21783, Table 4)."""
    if int(chips) != chips or chips < 1:
        raise TokenmathError(f"chips = {chips!r} must be a whole number >= 1")
    D = _positive("tokens", tokens)
    u = _fraction("MFU", mfu)
    N = float(param_counts(model).active)
    flops = flops_per_param_token * N * D
    peak = system.flops_per_s(dtype)
    seconds = flops / (chips * peak * u)
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    chip_hours = seconds * chips / 3600.0
    return TrainTime(flops, seconds, seconds / SECONDS_PER_DAY, chip_hours, None if price is None else chip_hours * price,
                     u, int(chips), peak, flops_per_param_token, N, D)


def implied_mfu(model: Model, system: System, tokens: float, chip_hours: float, *, dtype: str = "bf16",
                flops_per_param_token: float = PRETRAIN_FLOPS_PER_PARAM_TOKEN) -> float:
    """The MFU a published run implies: 6·N_active·D / (chip-hours × 3600 × peak FLOP/s). Above 1
    the run could not have happened on these chips: one sentence, naming the figures."""
    N = float(param_counts(model).active)
    u = flops_per_param_token * N * _positive("tokens", tokens) / (
        _positive("chip hours", chip_hours) * 3600.0 * system.flops_per_s(dtype))
    if u > 1.0:
        raise TokenmathError(f"{sig(tokens, 4)} tokens in {sig(chip_hours, 4)} chip-hours would need {u:.0%} of the "
                             f"{system.compute_class_for(dtype)} peak of {system.name}: more than the chips can do; "
                             "check --tokens, --chip-hours and --system")
    return u


def rl_flops(active_params: float, tokens: float, *, flops_per_param_token: float = 4.0) -> float:
    """RL: every rollout token is generated (2·N) and some are trained on (+4·N): 2–6 FLOPs per
    parameter-token (lecture 1:22). The lower MFU of rollouts is applied where costs are compared."""
    if not 2.0 <= flops_per_param_token <= 6.0:
        raise TokenmathError(f"RL FLOPs per parameter-token = {flops_per_param_token!r}; expected 2 (forward only) to 6")
    return flops_per_param_token * _positive("active params", active_params) * _positive("tokens", tokens)


# --------------------------------------------------------------------------------------------
# Chinchilla and beyond
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossFit:
    """L(N, D) = E + A/N^alpha + B/D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str


FITS = {
    # Hoffmann et al. 2022 (arXiv 2203.15556), Approach 3, rounded as published
    "hoffmann": LossFit(1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022, Chinchilla, Approach 3 (arXiv 2203.15556)"),
    # Besiroglu et al. 2024 (arXiv 2404.10102): refit of Approach 3 from the paper's own data
    "besiroglu": LossFit(1.8172, 482.01, 2085.43, 0.3478, 0.3658,
                         "Besiroglu et al. 2024, Chinchilla Scaling: A Replication Attempt (arXiv 2404.10102)"),
}
CHINCHILLA_TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022: Chinchilla 70B on 1.4T tokens


def get_fit(fit: str | LossFit) -> LossFit:
    if isinstance(fit, LossFit):
        return fit
    if fit not in FITS:
        raise TokenmathError(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
    return FITS[fit]


def chinchilla_loss(params, tokens, fit: str | LossFit = "hoffmann"):
    """Predicted loss of a model of `params` trained on `tokens` (broadcasts)."""
    f = get_fit(fit)
    N, D = np.asarray(params, float), np.asarray(tokens, float)
    if np.any(N <= 0) or np.any(D <= 0):
        raise TokenmathError("params and tokens must be positive")
    out = f.E + f.A / N**f.alpha + f.B / D**f.beta
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class ComputeOptimal:
    flops: float
    params: float
    tokens: float
    loss: float
    tokens_per_param: float
    fit: str


def compute_optimal(flops: float, fit: str | LossFit = "hoffmann") -> ComputeOptimal:
    """Minimise L(N, D) subject to 6·N·D = C (Hoffmann et al. eq. 4):
    N* = G·(C/6)^(β/(α+β)),  D* = (C/6)/N*,  G = (α·A / (β·B))^(1/(α+β))."""
    f = get_fit(fit)
    C = _positive("FLOPs", flops)
    G = (f.alpha * f.A / (f.beta * f.B)) ** (1.0 / (f.alpha + f.beta))
    N = G * (C / 6.0) ** (f.beta / (f.alpha + f.beta))
    D = C / 6.0 / N
    return ComputeOptimal(C, N, D, chinchilla_loss(N, D, f), D / N, fit if isinstance(fit, str) else "custom")


def compute_optimal_for_params(params: float, fit: str | LossFit = "hoffmann") -> ComputeOptimal:
    """The budget for which a model of `params` is compute-optimal (the inverse of N*(C)):
    C = 6·N·D with D = (N/G)^((α+β)/β) / N."""
    f = get_fit(fit)
    N = _positive("params", params)
    G = (f.alpha * f.A / (f.beta * f.B)) ** (1.0 / (f.alpha + f.beta))
    C6 = (N / G) ** ((f.alpha + f.beta) / f.beta)
    return compute_optimal(6.0 * C6, fit)


def tokens_for_loss(params, loss: float, fit: str | LossFit = "hoffmann"):
    """Training tokens a model of `params` needs to reach `loss` (inf when it never can)."""
    f = get_fit(fit)
    N = np.asarray(params, float)
    room = loss - f.E - f.A / N**f.alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(room > 0, (f.B / np.where(room > 0, room, 1.0)) ** (1.0 / f.beta), np.inf)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class InferenceAware:
    """Sardana, Doubov & Frankle 2024 (arXiv 2401.00448): minimise training + lifetime inference
    FLOPs at a fixed loss."""

    loss: float
    inference_tokens: float
    params: float
    tokens: float
    tokens_per_param: float
    training_flops: float
    inference_flops: float
    total_flops: float
    baseline_params: float | None = None
    baseline_total_flops: float | None = None
    saving_fraction: float | None = None


def inference_aware_optimum(loss: float, inference_tokens: float, *, fit: str | LossFit = "hoffmann",
                            inference_cost_factor: float = 1.0, baseline_params: float | None = None) -> InferenceAware:
    """Minimise 6·N·D(N) + 2·N·D_inf·factor over N, where D(N) reaches `loss`. A golden-section
    search on log N over the convex total (N from the smallest model that can reach the loss);
    `inference_cost_factor` > 1 charges inference its lower MFU. With a baseline size, also the
    cost of training that size to the same loss and the saving."""
    f = get_fit(fit)
    if not loss > f.E:
        raise TokenmathError(f"loss = {loss!r} is at or below the fit's irreducible loss E = {f.E}")
    Dinf = float(inference_tokens)
    if Dinf < 0 or not math.isfinite(Dinf):
        raise TokenmathError(f"inference tokens = {inference_tokens!r} must be >= 0")
    n_min = (f.A / (loss - f.E)) ** (1.0 / f.alpha) * (1 + 1e-9)

    def total(logN):
        N = math.exp(logN)
        return 6.0 * N * tokens_for_loss(N, loss, f) + 2.0 * N * Dinf * inference_cost_factor

    lo, hi = math.log(n_min), math.log(n_min) + math.log(1e6)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = total(a), total(b)
    for _ in range(200):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = total(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = total(b)
        if hi - lo < 1e-10:
            break
    N = math.exp(0.5 * (lo + hi))
    D = tokens_for_loss(N, loss, f)
    train, inf = 6.0 * N * D, 2.0 * N * Dinf * inference_cost_factor
    base_total = saving = None
    if baseline_params is not None:
        Db = tokens_for_loss(baseline_params, loss, f)
        base_total = 6.0 * baseline_params * Db + 2.0 * baseline_params * Dinf * inference_cost_factor
        saving = 1.0 - (train + inf) / base_total
    return InferenceAware(loss, Dinf, N, D, D / N, train, inf, train + inf, baseline_params, base_total, saving)


# --------------------------------------------------------------------------------------------
# The lecture's equal-cost rule: pre-training, RL and inference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overtrain:
    active_params: float
    inference_tokens: float
    pretrain_tokens: float
    rl_tokens: float
    chinchilla_tokens: float
    overtraining_factor: float  # D_pretrain / (20·N_active)
    pretrain_cost: float  # chip-FLOP-equivalents (FLOPs / relative efficiency), equal by construction
    rl_cost: float
    inference_cost: float
    rl_flops_per_param_token: float
    rl_efficiency: float
    inference_efficiency: float
    exact: InferenceAware  # what the loss-based optimum says for the same N and inference demand


def overtrain(active_params: float, tokens_per_s: float, lifetime_days: float, *, rl_factor: float = 4.0,
              rl_efficiency: float = 0.3, inference_efficiency: float = 0.3,
              fit: str | LossFit = "hoffmann") -> Overtrain:
    """Lecture 1:20–1:32: make the three costs equal. Cost ∝ FLOPs / efficiency, with pre-training
    at 6·N per token (efficiency 1, the reference), RL at r·N (2–6) with rollouts at
    `rl_efficiency` of pre-training's MFU, inference at 2·N at `inference_efficiency` (≈ 0.3 in the
    lecture: decode runs far below peak). Then
        D_inf = tokens/s × lifetime,  D_pre = D_inf · (2/u_inf)/6,  D_RL = D_pre · 6/(r/u_RL),
    and the over-training factor is D_pre / (20·N_active) (Chinchilla's 20 applied to active
    params, an assumption for MoE models)."""
    N = _positive("active params", active_params)
    R = _positive("tokens per second", tokens_per_s)
    days = _positive("lifetime days", lifetime_days)
    if not 2.0 <= rl_factor <= 6.0:
        raise TokenmathError(f"RL factor = {rl_factor!r}; expected 2 (forward only) to 6 (all rollouts trained on)")
    u_rl, u_inf = _fraction("RL efficiency", rl_efficiency), _fraction("inference efficiency", inference_efficiency)
    D_inf = R * days * SECONDS_PER_DAY
    cost = 2.0 * N * D_inf / u_inf
    D_pre = cost / (6.0 * N)
    D_rl = cost / (rl_factor * N / u_rl)
    chin = CHINCHILLA_TOKENS_PER_PARAM * N
    target = chinchilla_loss(N, chin, fit)
    exact = inference_aware_optimum(target, D_inf, fit=fit, inference_cost_factor=1.0 / u_inf, baseline_params=N)
    return Overtrain(N, D_inf, D_pre, D_rl, chin, D_pre / chin, cost, cost, cost, rl_factor, u_rl, u_inf, exact)


# --------------------------------------------------------------------------------------------
# MoE quality vs expert count (Clark et al. 2022)
# --------------------------------------------------------------------------------------------

# Clark et al. 2022, "Unified Scaling Laws for Routed Language Models" (arXiv 2202.01169): the
# paper's fitted coefficients were not found in a citable source (shared/reference README). The
# default exponent is anchored to the lecture's reading of its figure — a 64-expert model with
# ~370M activated parameters matches a ~1.3B dense one — so N_eff = N·E^γ with
# γ = ln(1.3/0.37)/ln 64 = 0.302. LABELLED: pass your own exponent (and the paper's N-dependent
# interaction term, γ(N) = γ + c·ln(N/N0)) when you have the coefficients.
MOE_EXPONENT_LECTURE_ANCHOR = math.log(1.3 / 0.37) / math.log(64)
MOE_ANCHOR_PARAMS = 370e6


def effective_dense_params(active_params, experts, *, exponent: float = MOE_EXPONENT_LECTURE_ANCHOR,
                           interaction: float = 0.0, reference_params: float = MOE_ANCHOR_PARAMS):
    """Dense-equivalent size of an E-expert model with N active parameters: N·E^γ(N), with
    γ(N) = exponent + interaction·ln(N/reference) (Clark et al.'s form: the gain shrinks with N
    when interaction < 0)."""
    N, E = np.asarray(active_params, float), np.asarray(experts, float)
    if np.any(N <= 0) or np.any(E < 1):
        raise TokenmathError("active params must be > 0 and experts >= 1")
    gamma = exponent + interaction * np.log(N / reference_params)
    out = N * E ** np.maximum(gamma, 0.0)
    return float(out) if np.ndim(out) == 0 else out


def experts_for_quality(multiplier: float, *, exponent: float = MOE_EXPONENT_LECTURE_ANCHOR) -> float:
    """Experts needed for the quality of `multiplier`× more active (dense) parameters: E = m^(1/γ)."""
    return _positive("quality multiplier", multiplier) ** (1.0 / exponent)


@dataclass(frozen=True)
class SparsityTradeoff:
    experts: np.ndarray
    total_params: np.ndarray
    effective_params: np.ndarray
    sparsity: np.ndarray
    balance_batch: np.ndarray
    weight_bytes: np.ndarray
    chips_to_hold_weights: np.ndarray
    cost_floor_usd_per_mtok: float | None  # set by N_active: the same for every row


def sparsity_tradeoff(active_params: float, experts, system: System, *, expert_fraction: float = 2 / 3,
                      experts_per_token: int = 1, weight_dtype: str = "fp8",
                      exponent: float = MOE_EXPONENT_LECTURE_ANCHOR) -> SparsityTradeoff:
    """The lecture's 30:41 point: at fixed N_active, more experts buy quality (N·E^γ) for free in
    FLOPs (the cost floor is set by N_active), paid in memory capacity (total params) and in users
    (the balance batch grows with N_total/N_active). `expert_fraction` of the active parameters are
    expert MLP weights (2/3 is the MLP share of a standard transformer block, an assumption)."""
    from .roofline import hardware_ratio

    N = _positive("active params", active_params)
    E = np.asarray(experts, float)
    if np.any(E < experts_per_token):
        raise TokenmathError("experts must be >= experts per token")
    total = N * (1 - expert_fraction) + N * expert_fraction * E / experts_per_token
    sparsity = total / N
    r = hardware_ratio(system, weight_dtype)
    wb = total * dtype_bytes(weight_dtype)
    cost = None
    if system.usd_per_chip_hour is not None:
        cost = 2.0 * N / system.flops_per_s(weight_dtype) * system.usd_per_chip_hour / 3600.0 * 1e6
    return SparsityTradeoff(E, total, effective_dense_params(N, E / experts_per_token, exponent=exponent), sparsity,
                            r * sparsity, wb, np.ceil(wb / system.chip.hbm_bytes), cost)


# --------------------------------------------------------------------------------------------
# Training memory per chip
# --------------------------------------------------------------------------------------------

# Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
# (arXiv 2205.05198), Table 2: activation bytes per layer for sequence s, micro-batch b, hidden h,
# heads a, 16-bit activations, with tensor parallelism t and sequence parallelism:
#     no recompute:        s·b·h·(34 + 5·a·s/h) / t
#     selective recompute: s·b·h·34 / t          (attention's s×s tensors recomputed)
#     full recompute:      s·b·h·2               (only each layer's input is kept; it is recomputed)
# Reversible layers (Gomez et al. 2017, RevNets) keep no per-layer activations: a couple of layers'
# worth at a time, at the cost of one extra forward pass (≈ 8·N·D instead of 6·N·D).
RECOMPUTE_MODES = ("none", "selective", "full", "reversible")


@dataclass(frozen=True)
class TrainMemory:
    weights_bytes_per_chip: float
    grads_bytes_per_chip: float
    optimizer_bytes_per_chip: float
    activation_bytes_per_chip: float
    total_bytes_per_chip: float
    hbm_bytes_per_chip: float
    fits: bool
    chips: int
    zero: int
    recompute: str
    flops_per_param_token: float
    params_per_chip: float
    layers_per_stage: float
    microbatches_in_flight: int


def train_memory(model: Model, system: System, *, dp: int, tp: int = 1, pp: int = 1, ep: int = 1,
                 micro_batch: int = 1, seq_len: int = 4096, zero: int = 1, recompute: str = "selective",
                 weight_dtype: str = "bf16", grad_dtype: str = "bf16", optimizer_bytes_per_param: float = 12.0,
                 chips: int | None = None) -> TrainMemory:
    """Bytes per chip to train `model` with mixed-precision Adam: bf16 weights and gradients, fp32
    master weights + Adam's two moments = 12 bytes per parameter (Rajbhandari et al. 2020, ZeRO).
    ZeRO-1 shards the optimizer state over the ranks holding a copy of each parameter, ZeRO-2 also
    the gradients, ZeRO-3/FSDP also the weights: the DP ranks for non-expert parameters, only the
    DP / EP expert-data-parallel ranks for routed experts (EP already splits them). Parameters per
    chip = (non-expert / (TP·PP)) + (routed experts / (EP·TP·PP)).
    Activations follow Korthikanti et al. (above) for the layers of one stage, times the
    microbatches a 1F1B stage holds (PP of them on the first stage)."""
    for name, v in (("DP", dp), ("TP", tp), ("PP", pp), ("EP", ep), ("micro-batch", micro_batch), ("sequence length", seq_len)):
        if int(v) != v or v < 1:
            raise TokenmathError(f"{name} = {v!r} must be a whole number >= 1")
    if zero not in (0, 1, 2, 3):
        raise TokenmathError(f"ZeRO stage = {zero!r}; expected 0, 1, 2 or 3")
    if recompute not in RECOMPUTE_MODES:
        raise TokenmathError(f"recompute = {recompute!r}; expected one of {', '.join(RECOMPUTE_MODES)}")
    if model.is_totals_only:
        raise TokenmathError(f"model {model.name!r} is defined by totals only; training memory needs its architecture")
    if ep > 1 and model.moe is None:
        raise TokenmathError(f"EP = {ep} but {model.name} is dense")
    need = dp * tp * pp
    if chips is not None and chips != need:
        raise TokenmathError(f"DP({dp}) × TP({tp}) × PP({pp}) = {need} chips, but {chips} were given")
    if ep > dp * tp:
        raise TokenmathError(f"EP {ep} must fit inside DP × TP = {dp * tp} chips of a stage")
    pc = param_counts(model)
    experts = pc.routed_experts or 0
    dense = (pc.total - experts) / (tp * pp)  # replicated over the DP ranks
    expert = experts / (ep * tp * pp)  # replicated over the expert-data-parallel ranks only: DP·TP / (EP·TP)
    params = dense + expert
    edp = max(1.0, dp / ep)  # ZeRO shards a parameter over the ranks that hold a copy of it
    w, g = dtype_bytes(weight_dtype), dtype_bytes(grad_dtype)

    def sharded(bytes_per_param: float, stage: int) -> float:
        return bytes_per_param * (dense / (dp if zero >= stage else 1) + expert / (edp if zero >= stage else 1))

    weights, grads, optim = sharded(w, 3), sharded(g, 2), sharded(optimizer_bytes_per_param, 1)
    h, a, s, b = model.hidden, model.attention.n_heads, float(seq_len), float(micro_batch)
    layers = model.n_layers / pp
    if recompute == "none":
        per_layer = s * b * h * (34 + 5 * a * s / h) / tp
    elif recompute == "selective":
        per_layer = s * b * h * 34 / tp
    elif recompute == "full":
        per_layer = s * b * h * 2
    else:
        per_layer = 0.0
    in_flight = pp  # 1F1B: the first stage holds PP microbatches' activations
    act = per_layer * layers * in_flight
    if recompute == "full":
        act += s * b * h * (34 + 5 * a * s / h) / tp  # one layer rematerialised at a time
    if recompute == "reversible":
        act = 2 * s * b * h * (34 + 5 * a * s / h) / tp  # about two layers' full activations at a time
    flops_ppt = RECOMPUTE_FLOPS_PER_PARAM_TOKEN if recompute in ("full", "reversible") else PRETRAIN_FLOPS_PER_PARAM_TOKEN
    total = weights + grads + optim + act
    return TrainMemory(weights, grads, optim, act, total, system.chip.hbm_bytes, total <= system.chip.hbm_bytes,
                       need, zero, recompute, flops_ppt, params, layers, in_flight)


# --------------------------------------------------------------------------------------------
# Reversible (additive-coupling / Feistel) blocks, shown to work
# --------------------------------------------------------------------------------------------


def reversible_forward(x: np.ndarray, y: np.ndarray, fns) -> tuple[np.ndarray, np.ndarray]:
    """A stack of additive-coupling blocks (x, y) -> (y + F(x), x), the Feistel construction the
    lecture links to RevNets (Gomez et al. 2017). F can be any function, invertible or not."""
    for F in fns:
        x, y = y + F(x), x
    return x, y


def reversible_inverse(x: np.ndarray, y: np.ndarray, fns) -> tuple[np.ndarray, np.ndarray]:
    """Undo reversible_forward exactly: from (a, b) = (y + F(x), x), x = b and y = a − F(b)."""
    for F in reversed(list(fns)):
        x, y = y, x - F(y)
    return x, y


def random_mlp(width: int, hidden: int, rng: np.random.Generator):
    """A random two-layer ReLU MLP (not invertible: ReLU discards sign information)."""
    w1 = rng.standard_normal((width, hidden)) / math.sqrt(width)
    w2 = rng.standard_normal((hidden, width)) / math.sqrt(hidden)
    return lambda v: np.maximum(v @ w1, 0.0) @ w2
