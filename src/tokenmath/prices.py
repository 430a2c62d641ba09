"""Reading prices (the lecture's 1:33–2:04): providers price close to cost, so a price sheet is a
measurement. Each inversion below prints its formula and assumptions.

    long-context tier at L*  ->  KV bytes/token = 2·N_active·BW / (FLOP/s · L*)   (KV fetch = compute there)
    output/input price ratio ->  the decode batch at which decode costs that many prefill tokens
    fast mode (p×, s×)       ->  batch cut B_normal/B_fast = p·s, normal step = (1 + (s−1)/(1 − 1/p))·W
    cache TTLs               ->  the memory tier whose drain time (capacity / bandwidth) is nearest the TTL
and the economics of holding a prompt's KV cache in HBM, host DDR, flash or disk versus recomputing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .params import param_counts
from .roofline import resolve_dtypes, slopes
from .specs import Dtypes, Model, PriceSheet, System, Tier
from .units import count, dtype_bytes

TIER_ORDER = ("hbm", "ddr", "flash", "disk")


# --------------------------------------------------------------------------------------------
# Memory tiers
# --------------------------------------------------------------------------------------------


def tiers(system: System, storage: dict[str, Tier] | None = None, *, usd_per_chip_hour: float | None = None) -> dict[str, Tier]:
    """HBM from the chip (priced at the chip's rental: holding a byte costs its share of the chip),
    host DDR where the system has it, and the catalog's flash and disk devices (generic: any host
    can carry them). Per chip."""
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    hbm = Tier(system.chip.hbm_bytes, system.chip.hbm_bytes_per_s, f"{system.name} HBM", "hbm",
               None if price is None else price / 3600.0 / system.chip.hbm_bytes, system.source)
    out = {"hbm": hbm}
    if system.ddr is not None:
        out["ddr"] = system.ddr
    devices = storage or {}
    for kind in ("flash", "disk"):
        own = getattr(system, kind, None) if kind == "flash" else None
        found = [t for t in devices.values() if t.kind == kind]
        if own is not None:
            out[kind] = own
        elif found:
            out[kind] = found[-1]
    return out


def tier_for_hold(hold_s: float, available: dict[str, Tier]) -> str:
    """The lecture's rule (2:01): keep a cache in the tier whose drain time is nearest the hold
    time (on a log scale) — there holding and retrieving cost the same."""
    if not (hold_s > 0 and math.isfinite(hold_s)):
        raise TokenmathError(f"hold time = {hold_s!r} s must be positive")
    return min(available, key=lambda k: abs(math.log(available[k].drain_s / hold_s)))


# --------------------------------------------------------------------------------------------
# Inversions
# --------------------------------------------------------------------------------------------


def kv_from_tier(active_params: float, crossover_context: float, system: System, *, dtype: str = "fp8") -> float:
    """KV bytes per token implied by a price step at context L*, if L* is where KV fetch time equals
    compute time with the weights amortised (1:35): 2·N_active / FLOP/s = L*·kv / BW, so
    kv = 2·N_active·BW / (FLOP/s · L*). The lecture's check: 100B active, 200k, 8-bit compute on a
    ~300-ratio chip (FLOP/s ÷ BW = 600) -> 1.7 kB."""
    N = float(active_params)
    L = float(crossover_context)
    if not (N > 0 and L > 0 and math.isfinite(N) and math.isfinite(L)):
        raise TokenmathError("active params and crossover context must be positive numbers")
    return 2.0 * N * system.chip.hbm_bytes_per_s / (system.flops_per_s(dtype) * L)


@dataclass(frozen=True)
class KvLayout:
    description: str
    bytes_per_token: float
    ratio: float  # this layout's bytes ÷ the target


def candidate_layouts(kv_bytes_per_token: float, *, models: dict[str, Model] | None = None, tolerance: float = 1.6,
                      limit: int = 12) -> list[KvLayout]:
    """Attention layouts that store about `kv_bytes_per_token`: layers with their own KV × 2 (K, V)
    × KV heads × head dim × bytes (with cross-layer sharing the unique layers are few), MLA latents,
    and the catalog's real models for comparison; within ×`tolerance`, closest first."""
    target = float(kv_bytes_per_token)
    if not (target > 0 and math.isfinite(target)):
        raise TokenmathError(f"KV bytes per token = {kv_bytes_per_token!r} must be positive")
    out: list[KvLayout] = []
    for layers in (1, 2, 4, 8, 16, 24, 32, 48, 61, 64, 80, 96, 126):
        for heads in (1, 2, 4, 8, 16):
            for hd in (64, 128, 256):
                for b, dt in ((1, "fp8"), (2, "bf16")):
                    v = layers * 2 * heads * hd * b
                    what = "1 layer that stores KV (the others share it)" if layers == 1 else f"{layers} layers that store KV"
                    out.append(KvLayout(f"GQA: {what} × 2 (K, V) × {heads} KV heads × {hd} dims × {dt}", v, v / target))
        for b, dt in ((1, "fp8"), (2, "bf16")):
            v = layers * (512 + 64) * b
            what = "1 layer" if layers == 1 else f"{layers} layers"
            out.append(KvLayout(f"MLA: {what} × (512 latent + 64 rope) × {dt}", v, v / target))
    keep = [x for x in out if 1 / tolerance <= x.ratio <= tolerance]
    keep.sort(key=lambda x: (abs(math.log(x.ratio)), x.bytes_per_token))
    keep = keep[:limit]
    seen: set = set()
    real = []
    for name, m in sorted((models or {}).items()):
        key = m.config_path or name
        if key in seen or m.is_totals_only:
            continue
        seen.add(key)
        kvc = kv_cache(m, 1.0, "bf16")
        v = float(kvc.full_bytes_per_token) or float(kvc.stored_bytes_per_token)
        real.append(KvLayout(f"catalog model {name} (bf16 KV, per token of context beyond any window)", v, v / target))
    return keep + sorted(real, key=lambda x: x.bytes_per_token)


def fast_mode_explanation(price_multiplier: float, speedup: float) -> dict:
    """Explain (p×, s×) by batch shrinkage alone on the same chips, purely memory bound:
    T = W + B·k. Then B_normal/B_fast = p·s and s·(W + B_f·k) = W + B_n·k give
    B_n·k/W = (s − 1)/(1 − 1/p): the normal step is 1 + that, in units of the weight-fetch time W,
    and the fast step (s times shorter) sits that close to the latency floor W."""
    p, s = float(price_multiplier), float(speedup)
    if not (p > 0 and s > 0 and math.isfinite(p) and math.isfinite(s)):
        raise TokenmathError("price multiplier and speed-up must be positive numbers")
    if p <= 1 or s <= 1:
        return {"consistent": False, "reason": "a batch cut raises price and speed together: needs p > 1 and s > 1",
                "batch_reduction": None, "normal_step_over_weight_fetch": None, "fast_step_over_weight_fetch": None,
                "max_further_speedup": None}
    x = (s - 1) / (1 - 1 / p)
    return {"consistent": True, "reason": "memory-bound batch shrinkage on the same chips", "batch_reduction": p * s,
            "normal_step_over_weight_fetch": 1 + x, "fast_step_over_weight_fetch": (1 + x) / s,
            "max_further_speedup": (1 + x) / s}


@dataclass(frozen=True)
class Inference:
    sheet: str
    system: str
    active_params: float
    kv_bytes_per_token: float | None
    candidate_layouts: list[KvLayout]
    decode_prefill_cost_ratio: float
    batch_at_price_ratio: float | None  # decode batch giving that ratio (needs a model)
    ratio_at_cost_optimal_batch: float | None
    cache_tiers: dict[str, str]  # TTL label -> tier
    fast_mode: dict | None
    assumptions: list[str]
    cache_write_surcharge_per_minute: dict[str, float] = None  # TTL label -> (write/input − 1) / TTL minutes
    active_params_source: str = ""  # where N_active came from: the stand-in model, given, or the lecture's assumption
    prices: dict | None = None  # the prices read ($/Mtok as published; the sheet's, or given as flags)


def cache_write_surcharge_per_minute(sheet: PriceSheet) -> dict[str, float]:
    """What each prompt-cache write tier charges above the input price, per minute it is held, as
    a fraction of the input price: (write price / input price − 1) / TTL in minutes. Anthropic's
    5-minute write at 1.25× is 0.05 per minute, the 1-hour write at 2× is 0.017: the hour tier is
    3× cheaper per minute held — it points to a cheaper memory tier (lecture 1:59, L62)."""
    return {_ttl_label(t): (price / sheet.input_usd_per_mtok - 1.0) / (t / 60.0)
            for t, price in sheet.cache_write_usd_per_mtok}


def _ttl_label(s: float) -> str:
    return f"{s / 3600:g}h" if s >= 3600 else f"{s / 60:g}m" if s >= 60 else f"{s:g}s"


DEFAULT_ACTIVE_PARAMS = 100e9  # the lecture's "100B active" (1:35): an assumption, labelled wherever it is used


def active_params_for(active_params: float | None, model: Model | None) -> tuple[float, str]:
    """N_active behind an API, and where it comes from: given; else the stand-in model's own N_active;
    else the lecture's 100B, labelled an assumption."""
    if active_params is not None:
        return float(active_params), "given with --active-params"
    if model is not None:
        return float(param_counts(model).active), f"the stand-in model {model.name}'s, from --model"
    return DEFAULT_ACTIVE_PARAMS, "an assumption, the lecture's 100B: give --active-params or --model"


def infer(sheet: PriceSheet, system: System, *, active_params: float | None = None, model: Model | None = None,
          storage: dict[str, Tier] | None = None, models: dict[str, Model] | None = None, context: float = 4096,
          prompt_tokens: float = 8192, dtype: str = "fp8") -> Inference:
    """Everything a price sheet implies about the model and hardware behind it. N_active is
    `active_params` where given, else the stand-in `model`'s, else the lecture's 100B (an
    assumption); the result says which (`active_params_source`)."""
    from . import serving

    active_params, n_source = active_params_for(active_params, model)
    kv = None
    layouts: list[KvLayout] = []
    if sheet.long_context_threshold_tokens:
        kv = kv_from_tier(active_params, sheet.long_context_threshold_tokens, system, dtype=dtype)
        layouts = candidate_layouts(kv, models=models)
    ratio = sheet.output_usd_per_mtok / sheet.input_usd_per_mtok
    b_ratio = r_opt = None
    if model is not None:
        b_ratio = serving.batch_for_cost_ratio(model, system, ratio, context=context, prompt_tokens=prompt_tokens)
        try:
            pd = serving.prefill_vs_decode(model, system, prompt_tokens, context=context)
            r_opt = pd.output_input_cost_ratio
        except TokenmathError:
            r_opt = None
    avail = tiers(system, storage)
    cache = {_ttl_label(t): tier_for_hold(t, avail) for t, _ in sheet.cache_write_usd_per_mtok}
    fast = None
    if sheet.fast_price_multiplier and sheet.fast_speedup:
        fast = fast_mode_explanation(sheet.fast_price_multiplier, sheet.fast_speedup)
    notes = [
        f"KV crossover: kv = 2·N_active·BW/(FLOP/s·L*) with N_active = {count(active_params, 3)}, {n_source}; {system.name}, "
        f"{dtype} compute, weights amortised, attention FLOPs dropped",
        "output/input ratio read as decode cost ÷ prefill cost per token (same margin on both)",
        "cache tier: the tier whose drain time (capacity/bandwidth) is nearest the TTL",
    ]
    if sheet.fast_price_multiplier and not sheet.fast_speedup:
        notes.append(f"fast mode: a {sheet.fast_price_multiplier:g}× price with no published speed-up implies no batch"
                     " cut (give the speed-up: --fast-speedup)")
    return Inference(sheet.name, system.name, float(active_params), kv, layouts, ratio, b_ratio, r_opt, cache, fast, notes,
                     cache_write_surcharge_per_minute(sheet), n_source, sheet_prices(sheet))


PRICE_FIELDS = ("input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "long_context_threshold_tokens",
                "long_context_input_usd_per_mtok", "long_context_output_usd_per_mtok", "fast_price_multiplier",
                "fast_speedup")


def sheet_prices(sheet: PriceSheet) -> dict:
    """The figures of a sheet that `infer` reads, with cache writes keyed by their TTL ('5m', '1h')."""
    return {k: getattr(sheet, k) for k in PRICE_FIELDS} | {
        "cache_write_usd_per_mtok": {_ttl_label(t): p for t, p in sheet.cache_write_usd_per_mtok}}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def sheet_from_prices(base: PriceSheet | None = None, *, cache_write_usd_per_mtok: dict[float, float] | None = None,
                      **prices: float | None) -> PriceSheet:
    """A price sheet from prices read off a page (no TOML): the figures in `prices` (keyword names as
    PRICE_FIELDS, $/Mtok; None = not given) and cache writes {TTL seconds: $/Mtok}, on top of `base`
    (a catalog sheet whose fields they replace, cache writes TTL by TTL) or alone, when input and
    output must both be given.
    Checked for consistency (check_sheet); an error names each figure as its `prices infer` flag."""
    from dataclasses import replace

    unknown = set(prices) - set(PRICE_FIELDS)
    if unknown:
        raise TokenmathError(f"unknown price field(s) {', '.join(sorted(unknown))}; expected {', '.join(PRICE_FIELDS)}")
    given = {k: float(v) for k, v in prices.items() if v is not None}
    for k, v in given.items():
        if not (v > 0 and math.isfinite(v)):
            raise TokenmathError(f"{_flag(k)} = {v!r} must be a positive number")
    writes = tuple(sorted((float(t), float(p)) for t, p in (cache_write_usd_per_mtok or {}).items()))
    if base is None:
        missing = [_flag(k) for k in ("input_usd_per_mtok", "output_usd_per_mtok") if k not in given]
        if missing:
            raise TokenmathError(f"prices given as flags need both --input-usd-per-mtok and --output-usd-per-mtok;"
                                 f" missing {' and '.join(missing)} (or name a price sheet: tokenmath prices sheets)")
        sheet = PriceSheet(name="command-line", provider="", model="", cache_write_usd_per_mtok=writes,
                           source="given on the command line", **given)
    else:
        if not given and not writes:
            return base
        merged = tuple(sorted((dict(base.cache_write_usd_per_mtok) | dict(writes)).items()))  # TTL by TTL
        kw = dict(given) | ({"cache_write_usd_per_mtok": merged} if writes else {})
        shown = ", ".join([f"{_flag(k)} {v:g}" for k, v in given.items()]
                          + [f"--cache-write-usd-per-mtok {_ttl_label(t)}={p:g}" for t, p in writes])
        sheet = replace(base, name=f"{base.name} + flags", source=f"{base.source}; changed on the command line: {shown}",
                        **kw)
    check_sheet(sheet, given=set(given) | ({"cache_write_usd_per_mtok"} if writes else set()),
                base=None if base is None else base.name)
    return sheet


def check_sheet(sheet: PriceSheet, *, given: set[str] | None = None, base: str | None = None) -> None:
    """Raise one sentence where a sheet's figures contradict each other: a long-context price without
    its threshold, or below the base price (a tier past L* costs more, not less); a cache read dearer
    than an uncached input token; a cache write cheaper than one (a write is a prefill, then storage);
    a fast-mode speed-up without its price multiplier. `given` names the figures set by flags and
    `base` the sheet the others come from, so the sentence says which is which."""
    given = set(PRICE_FIELDS) if given is None else given

    def show(field: str, value: float | None = None) -> str:
        v = getattr(sheet, field) if value is None else value
        where = "" if field in given or base is None else f" (sheet {base}'s)"
        return f"{_flag(field)} = {v:g}{where}"

    for k in ("long_context_input_usd_per_mtok", "long_context_output_usd_per_mtok"):
        if getattr(sheet, k) is not None and not sheet.long_context_threshold_tokens:
            raise TokenmathError(f"{show(k)} needs --long-context-threshold-tokens: the prompt length above which"
                                 " that price applies")
    for tier, flat in (("long_context_input_usd_per_mtok", "input_usd_per_mtok"),
                       ("long_context_output_usd_per_mtok", "output_usd_per_mtok")):
        if getattr(sheet, tier) is not None and getattr(sheet, tier) < getattr(sheet, flat):
            raise TokenmathError(f"{show(tier)} is below {show(flat)}: a long-context tier prices prompts past the"
                                 " threshold higher, not lower")
    if sheet.cache_read_usd_per_mtok is not None and sheet.cache_read_usd_per_mtok > sheet.input_usd_per_mtok:
        raise TokenmathError(f"{show('cache_read_usd_per_mtok')} is above {show('input_usd_per_mtok')}: a cache hit"
                             " costs less than an uncached input token")
    for ttl, price in sheet.cache_write_usd_per_mtok:
        if price < sheet.input_usd_per_mtok:
            where = "" if "cache_write_usd_per_mtok" in given or base is None else f" (sheet {base}'s)"
            raise TokenmathError(f"--cache-write-usd-per-mtok {_ttl_label(ttl)}={price:g}{where} is below"
                                 f" {show('input_usd_per_mtok')}: writing a cache costs the prefill, then storage")
    if sheet.fast_speedup and not sheet.fast_price_multiplier:
        raise TokenmathError(f"{show('fast_speedup')} needs --fast-price-multiplier: the inversion reads the price"
                             " and the speed of fast mode together")


# --------------------------------------------------------------------------------------------
# KV memory-tier economics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierCost:
    tier: str
    device: str
    drain_s: float
    hold_usd: float | None  # keeping the prompt's KV for the hold time
    retrieve_usd: float | None  # reading it back, per reuse (the device's bandwidth share)
    total_usd: float | None  # hold + reuse × retrieve
    fits: bool


@dataclass(frozen=True)
class CacheCosts:
    prompt_tokens: float
    hold_s: float
    reuse: float
    kv_bytes: float
    rematerialize_usd: float  # recomputing the prefill, per reuse
    rematerialize_total_usd: float
    tiers: dict[str, TierCost]
    best_tier: str  # "rematerialize" or a tier
    break_even_hold_s: dict[str, float]  # hold time at which a tier costs as much as recomputing
    implied_write_usd_per_mtok: float | None  # per prompt token: hold cost of the best storing tier
    implied_read_usd_per_mtok: float | None  # per prompt token: one retrieve from it


def cache_costs(model: Model, system: System, prompt_tokens: float, hold_s: float, *, reuse: float = 1.0,
                storage: dict[str, Tier] | None = None, dtypes: Dtypes = Dtypes(),
                usd_per_chip_hour: float | None = None) -> CacheCosts:
    """Three ways to have a prompt's KV when it is reused (1:49–2:03): recompute it (pay prefill
    compute at $/chip-second each time), hold it in a tier (bytes × hold time × that tier's $ per
    byte-second) and read it back (bytes / tier bandwidth × the tier's $ per second, per reuse).
    Returns each cost, the cheapest, and the hold time at which each tier breaks even with
    recomputing. Costs are per chip-equivalent; prices of DDR, flash and disk are capex amortised
    over 5 years (catalog/storage.toml, labelled)."""
    P = float(prompt_tokens)
    if not (P >= 1 and math.isfinite(P)):
        raise TokenmathError(f"prompt tokens = {prompt_tokens!r} must be >= 1")
    if not (hold_s >= 0 and math.isfinite(hold_s)):
        raise TokenmathError(f"hold time = {hold_s!r} s must be >= 0")
    if not (reuse > 0 and math.isfinite(reuse)):
        raise TokenmathError(f"reuse = {reuse!r} must be positive")
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    if price is None:
        raise TokenmathError(f"{system.name} has no price in the catalog; give --usd-per-chip-hour")
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    kvb = float(kv_cache(model, P, kv).stored_bytes)
    # prefill of P tokens on one chip-equivalent: compute bound, each token attending to P/2 on average
    per_tok = float(slopes(model, system, P / 2.0, chips=1, dtypes=dtypes).compute_s_per_seq)
    remat = P * per_tok * price / 3600.0
    avail = tiers(system, storage, usd_per_chip_hour=price)
    costs: dict[str, TierCost] = {}
    even: dict[str, float] = {}
    for name in TIER_ORDER:
        if name not in avail:
            continue
        t = avail[name]
        if t.usd_per_byte_s is None:
            costs[name] = TierCost(name, t.name, t.drain_s, None, None, None, kvb <= t.bytes)
            continue
        hold = kvb * hold_s * t.usd_per_byte_s
        device_usd_per_s = t.usd_per_byte_s * t.bytes
        retrieve = 0.0 if name == "hbm" else kvb / t.bytes_per_s * device_usd_per_s
        costs[name] = TierCost(name, t.name, t.drain_s, hold, retrieve, hold + reuse * retrieve, kvb <= t.bytes)
        per_s = kvb * t.usd_per_byte_s
        even[name] = max(0.0, (reuse * remat - reuse * retrieve) / per_s) if per_s > 0 else math.inf
    options = {"rematerialize": reuse * remat} | {k: c.total_usd for k, c in costs.items() if c.total_usd is not None and c.fits}
    best = min(options, key=options.get)
    store = best if best != "rematerialize" else None
    w = r = None
    if store is not None:
        w = costs[store].hold_usd / P * 1e6
        r = costs[store].retrieve_usd / P * 1e6
    return CacheCosts(P, float(hold_s), float(reuse), kvb, remat, reuse * remat, costs, best, even, w, r)


# --------------------------------------------------------------------------------------------
# Long-context economics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LongContext:
    model: str
    kv_bytes_per_token: float
    balance_context: float | None  # KV fetch = compute per token (weights amortised)
    attention_equals_weights_context: float  # attention FLOPs = 2·N_active per token
    cost_ratio_1m_vs_8k: float | None  # cost floor at 1M over at 8k


def long_context(model: Model, system: System, *, dtypes: Dtypes = Dtypes()) -> LongContext:
    """Why contexts stall near 100k–1M: past L* decode cost grows ∝ L (KV fetch), while the
    quadratic attention FLOPs only match the weight FLOPs at L_eq = 2·N_active / attention FLOPs
    per context token."""
    from . import serving
    from .kvcache import attention_flops_per_token

    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    per = float(kv_cache(model, 1.0, kv).full_bytes_per_token)
    L_star = serving.balance_context(model, system, None, dtypes=dtypes)
    a1 = float(attention_flops_per_token(model, 1.0))
    L_eq = 2.0 * param_counts(model).active / a1 if a1 > 0 else math.inf
    c8 = serving.cost_floor_usd_per_mtok(model, system, 8192, dtypes=dtypes)
    c1m = serving.cost_floor_usd_per_mtok(model, system, 1_000_000, dtypes=dtypes)
    return LongContext(model.name, per, L_star, L_eq, None if not c8 else c1m / c8)


@dataclass(frozen=True)
class SoldContext:
    """The longest prompt a price sheet accepts, and which sheets accept it (their published limits)."""

    tokens: float | None
    sheets: tuple[str, ...]


def longest_sold_context(sheets) -> SoldContext:
    """The largest published input limit among the sheets: a check on the lecture's "contexts plateau
    at 100-200k" — 1M-token prompts are on sale today (Gemini 2.5 Pro and 3.1 Pro: 1,048,576 tokens)."""
    limits = [(s.max_input_tokens, s.name) for s in sheets if s.max_input_tokens]
    if not limits:
        return SoldContext(None, ())
    top = max(t for t, _ in limits)
    return SoldContext(float(top), tuple(sorted(n for t, n in limits if t == top)))


__all__ = ["longest_sold_context", "SoldContext", "sheet_from_prices", "check_sheet", "sheet_prices", "active_params_for",
           "DEFAULT_ACTIVE_PARAMS", "tiers", "tier_for_hold", "kv_from_tier", "candidate_layouts", "fast_mode_explanation", "infer",
           "Inference", "cache_costs", "CacheCosts", "TierCost", "long_context", "LongContext", "KvLayout"]
