"""Specs as data: frozen dataclasses for hardware and models, with provenance beside the numbers.

SI units everywhere, the unit in the name. `None` means "not published / not given", never -1.
Derived quantities (parameter counts, KV bytes, drain times) are computed elsewhere from these
fields, never stored next to them where they could disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import TokenmathError
from .units import COMPUTE_CLASS, WIDER, check_dtype


# --------------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------------


def _cached_hash(self) -> int:
    """Hash a frozen spec once and keep it: caches key on Models and Systems with ~80 fields and
    per-layer tuples, and rehashing them on every lookup cost more than the formulas they cache."""
    h = self.__dict__.get("_hash")
    if h is None:
        h = hash(tuple(getattr(self, f.name) for f in fields(self)))
        object.__setattr__(self, "_hash", h)
    return h


def _state_without_hash(self) -> dict:
    """Pickle without the kept hash: str hashes differ between processes (PYTHONHASHSEED)."""
    return {k: v for k, v in self.__dict__.items() if k != "_hash"}


@dataclass(frozen=True)
class Chip:
    """One accelerator (one GPU package / TPU chip). FLOP/s are dense (no 2:4 sparsity)."""

    name: str
    hbm_bytes: float
    hbm_bytes_per_s: float
    bf16_flops_per_s: float | None = None
    fp8_flops_per_s: float | None = None
    int8_flops_per_s: float | None = None
    fp4_flops_per_s: float | None = None
    power_w: float | None = None
    # the vendor's name for the chip's generation ("Hopper", "CDNA 3"): chips of one generation share
    # their kernels' achieved fractions of the datasheet, so calibrated factors are fitted per generation
    architecture: str = ""

    def flops_per_s(self, compute_class: str) -> float | None:
        return getattr(self, f"{compute_class}_flops_per_s", None)

    @property
    def compute_classes(self) -> list[str]:
        return [c for c in ("bf16", "fp8", "int8", "fp4") if self.flops_per_s(c)]


@dataclass(frozen=True)
class Tier:
    """A memory tier (HBM, host DDR, local flash, disk) as a device: capacity, bandwidth and what
    holding a byte on it costs per second (None when no price is known)."""

    bytes: float
    bytes_per_s: float
    name: str = ""
    kind: str = ""  # "hbm" | "ddr" | "flash" | "disk"
    usd_per_byte_s: float | None = None
    source: str = ""

    @property
    def drain_s(self) -> float:
        """Capacity / bandwidth: the time to read the whole device once."""
        return self.bytes / self.bytes_per_s


@dataclass(frozen=True)
class PriceSheet:
    """An API price sheet, $ per million tokens as published; None = not offered / not published."""

    name: str
    provider: str
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: tuple[tuple[float, float], ...] = ()  # (TTL seconds, $/Mtok)
    long_context_threshold_tokens: float | None = None
    long_context_input_usd_per_mtok: float | None = None
    long_context_output_usd_per_mtok: float | None = None
    batch_multiplier: float | None = None
    fast_price_multiplier: float | None = None
    fast_speedup: float | None = None
    max_input_tokens: float | None = None  # the longest prompt the API accepts (its context window)
    source: str = ""
    as_of: str = ""
    notes: str = ""


@dataclass(frozen=True)
class System:
    """Chips joined into scale-up domains (NVLink / ICI / NeuronLink), domains joined by scale-out.

    Bandwidths are per chip, one direction.
    """

    __hash__ = _cached_hash
    __getstate__ = _state_without_hash

    name: str
    chip: Chip
    scaleup_chips: int
    scaleup_bytes_per_s: float | None = None
    scaleout_bytes_per_s: float | None = None
    usd_per_chip_hour: float | None = None
    ddr: Tier | None = None
    flash: Tier | None = None
    description: str = ""
    preliminary: bool = False
    source: str = ""
    price_source: str = ""
    as_of: str = ""
    notes: str = ""
    # usd_per_chip_hour is charged per busy chip-hour; a chip held for an hour is busy this share of it
    # (a rental price: 1, every rented hour is paid; a TCO price: its utilisation, energy.priced_by_tco)
    busy_share: float = 1.0

    def held_usd_per_chip_hour(self, given: float | None = None) -> float | None:
        """What holding one chip for an hour costs, busy or idle: a `given` price (a rental, paid every
        hour), else the $/chip-hour × busy_share (the rental price itself; the owning cost per hour
        under TCO). Fleets' $/h and `traffic`'s $/day use it."""
        if given is not None:
            return float(given)
        return None if self.usd_per_chip_hour is None else self.usd_per_chip_hour * self.busy_share

    @property
    def scaleup_to_scaleout_ratio(self) -> float | None:
        """BW_up / BW_out, derived (≈ 8–9 on current NVIDIA racks)."""
        if self.scaleup_bytes_per_s and self.scaleout_bytes_per_s:
            return self.scaleup_bytes_per_s / self.scaleout_bytes_per_s
        return None

    def compute_class_for(self, dtype: str) -> str:
        """The datasheet FLOP/s line a dtype's matmuls run at on this chip (falls back wider)."""
        cls: str | None = COMPUTE_CLASS[check_dtype(dtype)]
        while cls is not None and not self.chip.flops_per_s(cls):
            cls = WIDER.get(cls)
        if cls is None:
            have = ", ".join(self.chip.compute_classes) or "none"
            raise TokenmathError(
                f"system {self.name!r} publishes no FLOP/s for {dtype} or any wider dtype "
                f"(it has: {have}); choose one of those as the compute or weight dtype"
            )
        return cls

    def flops_per_s(self, dtype: str) -> float:
        return float(self.chip.flops_per_s(self.compute_class_for(dtype)))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attention:
    """Self-attention of one layer type. kind: "gqa" (covers MHA and MQA) or "mla"."""

    kind: str
    n_heads: int
    n_kv_heads: int
    head_dim: int  # query/key head dim (MLA: nope + rope)
    v_head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: str = "none"  # "none" | "head" (one head_dim vector each) | "full" (whole q/k width)
    sinks: bool = False  # one learned logit per head (gpt-oss)
    # MLA (DeepSeek-V2/V3, Kimi K2)
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    # Sparse attention with a lightning indexer (DeepSeek-V3.2 DSA)
    index_topk: int | None = None
    index_n_heads: int | None = None
    index_head_dim: int | None = None
    # Keys reused as values (Gemma 4 attention_k_eq_v on its full-attention layers): no v_proj; the
    # value is the key projection's output (RMS-normed without a scale, no RoPE), so the KV cache
    # still holds a K and a V tensor per token, as transformers' cache stores them.
    k_eq_v: bool = False


@dataclass(frozen=True)
class Mlp:
    """A feed-forward block: gated (SwiGLU/GeGLU: 3 matrices) or plain (2 matrices)."""

    intermediate: int
    gated: bool = True
    bias: bool = False


@dataclass(frozen=True)
class Moe:
    """Routed experts (+ optional always-on shared experts) replacing the MLP in MoE layers."""

    n_experts: int
    k: int  # experts active per token
    expert: Mlp
    n_shared: int = 0
    shared: Mlp | None = None
    router_bias: bool = False  # a bias on the router logits (gpt-oss)
    expert_score_bias: bool = False  # aux-loss-free balancing bias (DeepSeek-V3 e_score_correction_bias)
    shared_gate: bool = False  # a sigmoid gate on the shared expert (Qwen2-MoE)
    router_scales: bool = False  # a hidden-size input scale and one scale per expert (Gemma4TextRouter)
    norms: int = 0  # norm vectors the MoE block adds per MoE layer (Gemma 4: 3)
    # group-limited routing (DeepSeek-V3 config.json n_group / topk_group): the experts form n_group
    # equal groups and a token's k experts come from at most topk_group of them; 1 / 1 = no limit
    n_group: int = 1
    topk_group: int = 1


@dataclass(frozen=True)
class Model:
    """A transformer, either with its architecture (from a config.json) or by totals alone.

    Per-layer tuples have one entry per decoder layer:
      layer_window[i]   None = full attention; an int = tokens attended (sliding window or chunk)
      layer_moe[i]      True where the MLP is the MoE
      layer_stores_kv[i] False where the layer reuses another layer's KV (cross-layer sharing)

    `attention` is the geometry of the sliding / main layers; `global_attention`, when given, that
    of the full-attention layers (layer_window None) where they differ (Gemma 4: own KV heads and
    head dim). Use `attention_of(window)` to get a layer's geometry.
    """

    __hash__ = _cached_hash
    __getstate__ = _state_without_hash

    name: str
    family: str = "totals"
    hidden: int | None = None
    n_layers: int | None = None
    vocab: int | None = None
    tied_embeddings: bool = False
    attention: Attention | None = None
    mlp: Mlp | None = None  # dense MLP (dense layers of an MoE model too)
    moe: Moe | None = None
    layer_window: tuple[int | None, ...] = ()
    layer_moe: tuple[bool, ...] = ()
    layer_stores_kv: tuple[bool, ...] = ()
    norms_per_layer: int = 2
    norm_bias: bool = False  # LayerNorm with bias (2 vectors) vs RMSNorm (1)
    mtp_layers: int = 0  # multi-token-prediction modules, counted apart from the main totals
    # Gemma 4 (Gemma4TextModel / Gemma4TextDecoderLayer in transformers):
    global_attention: Attention | None = None  # full-attention layers' own geometry (None: as `attention`)
    shared_kv_has_kv_proj: bool = True  # False: a layer reusing another's KV has no k/v proj or k-norm
    shared_kv_mlp_factor: int = 1  # MLP width multiplier on layers that reuse KV (use_double_wide_mlp: 2)
    moe_with_dense_mlp: bool = False  # MoE layers also run the dense `mlp` beside the experts (enable_moe_block)
    per_layer_input_dim: int = 0  # per-layer input embeddings (PLE): width per layer (hidden_size_per_layer_input)
    per_layer_input_vocab: int | None = None  # rows of the PLE table (vocab_size_per_layer_input; None = vocab)
    # dtypes the checkpoint ships in: `weight_dtype` for quantised linear layers,
    # `base_dtype` for what stays unquantised (embeddings, norms, router, unconverted modules)
    weight_dtype: str = "bf16"
    base_dtype: str = "bf16"
    unquantized_parts: tuple[str, ...] = ("embedding", "lm_head", "norms", "router")
    # totals-only models (the lecture's "700B total / 37B active")
    total_params_given: float | None = None
    active_params_given: float | None = None
    kv_bytes_per_token_given: float | None = None
    max_context: int | None = None
    # sparse attention: how many cached tokens a decode step reads. "topk" reads min(L, k) (DSA);
    # "sqrt" is the lecture's sketch, min(L, sqrt(k·L)) (equal to k at L = k, growing as √L).
    sparse_mode: str = "topk"
    sparse_topk_given: int | None = None  # for totals-only models (architecture models use attention.index_topk)
    source: str = ""
    as_of: str = ""
    notes: str = ""
    config_path: str | None = None
    # where a serving engine loads the weights (issue 21, export): the Hugging Face repo id of the
    # checkpoint in `weight_dtype`, and other published checkpoints of the same model as
    # (weight_dtype, repo id) pairs (pre-quantised exports, e.g. ("fp8", "Qwen/Qwen3-32B-FP8"))
    hf_repo: str | None = None
    checkpoints: tuple[tuple[str, str], ...] = ()

    @property
    def is_totals_only(self) -> bool:
        return self.attention is None

    def attention_of(self, window: int | None) -> Attention | None:
        """The attention geometry of a layer with this layer_window entry."""
        if window is None and self.global_attention is not None:
            return self.global_attention
        return self.attention


# --------------------------------------------------------------------------------------------
# Assumptions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Efficiency:
    """Achieved fraction of each peak. All 1.0 = the pure roofline (a bound, not an estimate)."""

    flops: float = 1.0
    hbm: float = 1.0
    network: float = 1.0
    label: str = "roofline"

    def __post_init__(self) -> None:
        for name in ("flops", "hbm", "network"):
            v = getattr(self, name)
            if not (0 < v <= 1.0):
                raise TokenmathError(f"efficiency {name} = {v!r} must be in (0, 1]")


ROOFLINE = Efficiency()


@dataclass(frozen=True)
class Dtypes:
    """The dtypes a step runs with; None = the model's native dtype / the weight dtype."""

    weight: str | None = None
    kv: str = "bf16"
    compute: str | None = None

    def __post_init__(self) -> None:
        check_dtype(self.weight)
        check_dtype(self.kv)
        check_dtype(self.compute)

    @classmethod
    def for_point(cls, model: "Model", weight_dtype: str, kv: str = "bf16", *, named: bool = False) -> "Dtypes":
        """The dtypes a planner point ran with, from its resolved weight dtype: the checkpoint's own
        (weight None: parts a checkpoint leaves unquantised stay so) where that dtype is the
        checkpoint's, unless the search was given it by name (`named`), else that dtype."""
        return cls(weight=None if (weight_dtype == model.weight_dtype and not named) else weight_dtype, kv=kv)


__all__ = ["Chip", "Tier", "System", "Attention", "Mlp", "Moe", "Model", "Efficiency", "ROOFLINE", "Dtypes"]


def beyond_context_note(model: Model, context: float) -> str:
    """A sentence when `context` (tokens) passes the model's maximum (its config's
    max_position_embeddings), else ''."""
    if not model.max_context or context <= model.max_context:
        return ""
    return (f"contexts past {model.name}'s maximum of {model.max_context:,} tokens (up to {context:,.0f} here) are a"
            " what-if: the arithmetic extends, the model was not built for them")
