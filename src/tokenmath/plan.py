"""The deployment planner: enumerate layouts × batch sizes × dtypes on candidate systems, drop the
infeasible ones (memory, divisibility, SLOs), and return the Pareto frontier of cost (or tokens/s
per chip) against tokens/s per user, the cheapest deployment that meets every SLO, and the chips a
demand needs.

Per request of I input and O output tokens on one replica:
    decode context L = I + O/2;  T_dec(B) = the layout's decode step at batch B
    replica time per request = O·T_dec(B)/B + T_prefill(B prompts of I)/B   (prompts prefilled B at a time)
    output tokens/s per replica = O / that;  tokens/s per user = 1/T_dec(B);  TTFT = T_prefill(one prompt)
Batch sizes are one broadcast call per layout; Python loops only over discrete layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import TokenmathError
from .layout import layout_memory, layout_step
from .parallelism import HOP_LATENCY_S_DEFAULT, Layout, check_layout
from .roofline import resolve_dtypes
from .specs import ROOFLINE, Dtypes, Efficiency, Model, System
from .wide_ep import wide_ep_layouts  # noqa: F401  (re-exported: the fleet searches the same layouts)

BATCH_POINTS = 40


@dataclass(frozen=True)
class PlanPoint:
    system: str
    chips: int  # chips a replica uses
    billed_chips: float  # with the idle chips its placement strands
    tp: int
    ep: int
    pp: int
    dp: int
    batch: float
    weight_dtype: str
    kv_dtype: str
    tokens_per_s_per_chip: float  # output tokens, prefill time included, per billed chip
    tokens_per_s_per_user: float
    usd_per_mtok: float | None  # $ per million output tokens (input processing included)
    ttft_s: float
    step_s: float
    total_bytes_per_chip: float
    bound: str
    replicas: int | None = None
    total_chips: float | None = None
    watts: float | None = None  # the replica at the wall (energy.py)
    joules_per_token: float | None = None  # per output token
    tokens_per_s_per_mw: float | None = None
    redundant_experts: int = 0  # EPLB copies spread with the routed experts (wide EP)

    @property
    def layout(self) -> Layout:
        """The point's layout (one replica: DP 1)."""
        return Layout(tp=self.tp, ep=self.ep, pp=self.pp, redundant_experts=self.redundant_experts)


@dataclass(frozen=True)
class Plan:
    model: str
    input_tokens: float
    output_tokens: float
    min_tokens_per_s_per_user: float | None
    max_ttft_s: float | None
    demand_tokens_per_s: float | None
    objective: str  # "cost" ($/Mtok over the priced systems) or "throughput" (tokens/s per chip, when none has a price)
    frontier: list[PlanPoint]
    best: PlanPoint | None
    evaluated: int  # (layout, batch, dtype) points computed
    feasible: int  # of which fit in memory and meet every SLO
    layouts: int
    rejected: dict[str, int] = field(default_factory=dict)  # why layouts were dropped before batching
    unpriced_systems: tuple[str, ...] = ()  # left out of a cost comparison: give --usd-per-chip-hour
    estimate: str = "roofline"  # what every number is: "calibrated YYYY-MM ..." or "roofline"
    range_80: dict | None = None  # the best point's 80 % band
    roofline: dict | None = None  # the best point's roofline bound (estimate.roofline_record), same layout and batch


def candidate_layouts(model: Model, system: System, *, max_pp: int = 4, wide_ep: bool = False) -> list[Layout]:
    """Layouts worth trying on one system: stages of power-of-two chips up to one domain (and
    two domains for expert parallelism, to show the scale-out penalty), capped at 256 chips;
    for MoE models EP over the stage (experts must divide), TP of 1–8 inside it; PP of 1, 2, 4.
    wide_ep: for MoE models also the wide expert-parallel layouts over many domains
    (`wide_ep_layouts`: EP up to 320 chips over the scale-out network, attention data-parallel,
    redundant experts where EP does not divide the experts). Off by default: a caller that
    rebuilds a layout from a plan point must carry its redundant experts (PlanPoint.layout)."""
    dom = system.scaleup_chips
    cap = min(256, 2 * dom if model.moe else dom)
    sizes = [2**i for i in range(0, 9) if 2**i <= cap]
    if dom <= cap and dom not in sizes:
        sizes.append(dom)
    heads = model.attention.n_heads
    out: list[Layout] = []
    pps = [p for p in (1, 2, 4) if p <= max_pp and p <= model.n_layers]
    for sc in sizes:
        for pp in pps:
            if model.moe is not None:
                for tp in (1, 2, 4, 8):
                    if tp > sc or sc % tp or heads % tp:
                        continue
                    ep = sc if sc > 1 else 1
                    if ep > 1 and model.moe.n_experts % ep:
                        continue
                    out.append(Layout(tp=tp, ep=ep, pp=pp))
            else:
                if heads % sc == 0 or sc == 1:
                    out.append(Layout(tp=sc, pp=pp))
    if wide_ep and model.moe is not None:
        seen = set(out)
        out += [lay for lay in wide_ep_layouts(model, system) if lay not in seen]
    return out


COLUMNS = ("chips", "billed_chips", "tp", "ep", "pp", "redundant_experts", "batch", "tokens_per_s_per_chip", "tokens_per_s_per_user",
           "usd_per_mtok", "ttft_s", "step_s", "total_bytes_per_chip")
TEXT_COLUMNS = ("system", "weight_dtype", "kv_dtype", "bound")


def _columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {k: np.array([]) for k in COLUMNS + TEXT_COLUMNS}
    return {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS + TEXT_COLUMNS}


def points(cols: dict[str, np.ndarray], index=None) -> list[PlanPoint]:
    """Materialise rows of the columnar result as PlanPoints."""
    idx = range(len(cols["batch"])) if index is None else index
    out = []
    for i in idx:
        usd = cols["usd_per_mtok"][i]
        out.append(PlanPoint(
            system=str(cols["system"][i]), chips=int(cols["chips"][i]), billed_chips=float(cols["billed_chips"][i]),
            tp=int(cols["tp"][i]), ep=int(cols["ep"][i]), pp=int(cols["pp"][i]), dp=1, batch=float(cols["batch"][i]),
            redundant_experts=int(cols["redundant_experts"][i]),
            weight_dtype=str(cols["weight_dtype"][i]), kv_dtype=str(cols["kv_dtype"][i]),
            tokens_per_s_per_chip=float(cols["tokens_per_s_per_chip"][i]),
            tokens_per_s_per_user=float(cols["tokens_per_s_per_user"][i]),
            usd_per_mtok=None if np.isnan(usd) else float(usd), ttft_s=float(cols["ttft_s"][i]),
            step_s=float(cols["step_s"][i]), total_bytes_per_chip=float(cols["total_bytes_per_chip"][i]),
            bound=str(cols["bound"][i]),
        ))
    return out


def pareto_indices(user: np.ndarray, value: np.ndarray, *, lower_is_better: bool) -> np.ndarray:
    """Indices of the points no other point beats on both tokens/s per user (higher) and value."""
    if len(user) == 0:
        return np.array([], dtype=int)
    v = value if lower_is_better else -value
    order = np.lexsort((v, -user))  # fastest first; among equals, the best value first
    best = np.minimum.accumulate(v[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = v[order][1:] < best[:-1]
    return order[keep]


def _evaluate(model: Model, system: System, layout: Layout, dtypes: Dtypes, I: float, O: float,
              efficiency: Efficiency, usd_per_chip_hour: float | None, overlap: str) -> dict[str, np.ndarray] | None:
    """The roofline's columns for one layout (the estimate's path is _evaluate_estimate_layouts)."""
    L = I + O / 2.0
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    mem1 = layout_memory(model, system, layout, 1.0, L, dtypes=dtypes)
    if not mem1.fits:
        return None
    # largest batch that fits: memory is affine in B
    per_seq = (mem1.total_bytes_per_chip - mem1.weights_bytes_per_chip)
    b_max = (mem1.hbm_bytes_per_chip - mem1.weights_bytes_per_chip) / per_seq
    b_max = max(1.0, math.floor(min(b_max, 1e7)))
    grid = np.unique(np.concatenate([np.round(np.geomspace(1, b_max, BATCH_POINTS)), [b_max]]))
    grid = grid[grid >= layout.m] if b_max >= layout.m else np.array([float(layout.m)])
    kw = dict(dtypes=dtypes, efficiency=efficiency, overlap=overlap, usd_per_chip_hour=usd_per_chip_hour, check=False)
    # resident sequences sit at every point of their lives: their KV averages I + O/2 tokens
    # one broadcast call: decode steps at every batch (context L, 1 new token), then prompts prefilled
    # B at a time sharing the weight read (context I/2, I new tokens), then one lone prompt (TTFT)
    k = len(grid)
    both = layout_step(model, system, layout, np.concatenate([grid, grid, [1.0]]),
                       np.concatenate([np.full(k, L), np.full(k + 1, I / 2.0)]),
                       new_tokens=np.concatenate([np.ones(k), np.full(k + 1, float(I))]), **kw)
    steps = np.asarray(both.step_s)
    fits = np.asarray(both.memory.fits)[:k]
    t_dec, t_pre_b, ttft = steps[:k][fits], steps[k:2 * k][fits], float(steps[-1])
    g = grid[fits]
    replica_tps = O / (O * t_dec / g + t_pre_b / g)
    return _cols(system, layout, both.billed_chips, g, replica_tps, t_dec, ttft, usd_per_chip_hour,
                 np.asarray(both.memory.total_bytes_per_chip)[:k][fits], weight, kv, np.asarray(both.bound)[:k][fits])


def _usd_per_mtok(system, usd_per_chip_hour, billed, replica_tps) -> np.ndarray:
    """$ per million output tokens of replicas billing `billed` chips at the given $/chip-hour (else
    the catalog's) and making `replica_tps` tokens/s; NaN where neither gives a price."""
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    return np.full(np.shape(replica_tps), np.nan) if price is None else billed * price / 3600.0 / replica_tps * 1e6


def _cols(system, layout, billed, g, replica_tps, tpot, ttft, usd_per_chip_hour, total_bytes, weight, kv, bound):
    """One layout's points as the planner's columns."""
    n = len(g)
    usd = _usd_per_mtok(system, usd_per_chip_hour, billed, replica_tps)
    full = lambda v: np.full(n, v)  # noqa: E731
    return {
        "chips": full(layout.replica_chips), "billed_chips": full(billed), "tp": full(layout.tp), "ep": full(layout.ep),
        "pp": full(layout.pp), "redundant_experts": full(layout.redundant_experts), "batch": g, "tokens_per_s_per_chip": replica_tps / billed,
        "tokens_per_s_per_user": 1.0 / tpot, "usd_per_mtok": usd, "ttft_s": full(ttft), "step_s": tpot,
        "total_bytes_per_chip": np.asarray(total_bytes, float), "system": full(system.name),
        "weight_dtype": full(weight), "kv_dtype": full(kv), "bound": np.broadcast_to(bound, (n,)),
    }


def _evaluate_estimate_layouts(model, system, layouts: list[Layout], dtypes, I, O, profile, usd_per_chip_hour,
                               rejected: dict[str, int], cached: float = 0.0,
                               decode_only: bool = False, overlap: str = "full") -> tuple[dict[str, np.ndarray] | None, int]:
    """The estimate's columns for every layout of one system and dtype in one broadcast
    (layouts × batches): continuous batching with chunked prefill at each batch (the user's time
    per output token includes the prompt chunks sharing the step), TTFT of a lone prompt.
    Layouts whose weights do not fit, or that need a link the system lacks, are counted in
    `rejected` and left out; the count returned beside the columns is the layouts evaluated
    (all but those lacking a link, as the roofline's path counts them). decode_only: a decode
    pool of a disaggregated fleet — steps carry no prompt chunks (prompts arrive prefilled)."""
    from .parallelism import Layouts
    from .stepmodel import layout_terms, op_step, steady_step_s

    L = I + O / 2.0
    weight, kv, *_ = resolve_dtypes(model, system, dtypes)
    la = Layouts(layouts)
    # the estimate fills what a serving engine does (layout.serving_hbm_bytes, by the engine's
    # kv_budget rule); the roofline, all of HBM
    serving = profile.kernels is not None
    kvb = profile.engine.kv_budget if serving else "total"
    mem1 = layout_memory(model, system, la, 1.0, L, dtypes=dtypes, kv_budget=kvb)
    fit = np.asarray(mem1.serves if serving else mem1.fits, bool)[:, 0]
    if (~fit).any():
        rejected["weights do not fit"] = rejected.get("weights do not fit", 0) + int((~fit).sum())
    keep = []
    from .stepmodel import IDEAL, Engine

    kern, eng = (IDEAL, Engine(label="roofline")) if profile.kernels is None else (profile.kernels, profile.engine)
    for i in np.nonzero(fit)[0]:
        try:
            layout_terms(model, system, layouts[i], kern, eng, HOP_LATENCY_S_DEFAULT)
            keep.append(i)
        except TokenmathError as e:
            key = str(e).split(":")[0][:80]
            rejected[key] = rejected.get(key, 0) + 1
    evaluated = len(layouts) - (int(fit.sum()) - len(keep))
    if not keep:
        return None, evaluated
    keep = np.array(keep)
    lays = [layouts[i] for i in keep]
    la = Layouts(lays)
    w = np.asarray(mem1.weights_bytes_per_chip, float)[keep, 0]
    per_seq = np.asarray(mem1.total_bytes_per_chip, float)[keep, 0] - w
    # largest batch that fits: memory is affine in B; then the batch grid of each layout (a row)
    usable = np.asarray(mem1.serving_bytes_per_chip if serving else mem1.hbm_bytes_per_chip, float).reshape(-1)
    usable = usable[keep] if usable.size > 1 else usable
    b_max = np.maximum(1.0, np.floor(np.minimum((usable - w) / per_seq, 1e7)))
    G = np.concatenate([np.round(np.geomspace(1.0, b_max, BATCH_POINTS, axis=1)), b_max[:, None]], axis=1)
    valid = np.ones_like(G, bool)
    valid[:, 1:] = G[:, 1:] != G[:, :-1]  # rows ascend: a repeat of its left neighbour is a duplicate
    m = la.m
    small = b_max[:, None] < m  # fewer sequences fit than microbatches: one point at B = m
    G = np.where(small, m, G)
    valid = np.where(small, np.arange(G.shape[1]) == 0, valid & (G >= m))
    cap = profile.engine.max_batch
    if cap:
        under = valid & (G <= cap)
        first = valid & (np.cumsum(valid, axis=1) == 1)
        valid = np.where(under.any(axis=1, keepdims=True), under, first)
    try:
        if decode_only:
            tpot = np.asarray(op_step(model, system, lays, G, L, 1.0, kernels=profile.kernels, engine=profile.engine,
                                      dtypes=dtypes, check=False, overlap=overlap).step_s, float)
        else:
            tpot = np.asarray(steady_step_s(model, system, lays, G, I, O, kernels=profile.kernels,
                                            engine=profile.engine, dtypes=dtypes, cached_tokens=cached,
                                            overlap=overlap), float)
        one = op_step(model, system, lays, np.ones((len(lays), 1)), float(cached), float(I - cached),
                      kernels=profile.kernels, engine=profile.engine, dtypes=dtypes, check=False, overlap=overlap)
    except TokenmathError as e:  # one reason for every layout (e.g. no FLOP/s for a dtype)
        key = str(e).split(":")[0][:80]
        rejected[key] = rejected.get(key, 0) + len(lays)
        return None, evaluated - len(lays)
    mem = layout_memory(model, system, la, G, L, dtypes=dtypes, kv_budget=kvb)
    valid &= np.asarray(mem.serves if serving else mem.fits, bool)
    r, c = np.nonzero(valid)
    g, t = G[r, c], tpot[r, c]
    billed = np.asarray(one.billed_chips, float)[r]
    replica_tps = g / t
    n = len(g)
    full = lambda v: np.full(n, v)  # noqa: E731
    col = lambda attr: np.array([getattr(x, attr) for x in lays])[r]  # noqa: E731
    return {
        "chips": col("replica_chips"), "billed_chips": billed, "tp": col("tp"), "ep": col("ep"), "pp": col("pp"),
        "redundant_experts": col("redundant_experts"),
        "batch": g, "tokens_per_s_per_chip": replica_tps / billed, "tokens_per_s_per_user": 1.0 / t,
        "usd_per_mtok": _usd_per_mtok(system, usd_per_chip_hour, billed, replica_tps),
        "ttft_s": np.asarray(one.step_s, float)[r, 0], "step_s": t,
        "total_bytes_per_chip": np.asarray(mem.total_bytes_per_chip, float)[r, c], "system": full(system.name),
        "weight_dtype": full(weight), "kv_dtype": full(kv),
        "bound": full("estimate" if profile.kernels is not None else "roofline"),
    }, evaluated


def deployable_weight_dtypes(model: Model, system: System) -> list[str | None]:
    """The weight dtypes a deployment would try on this system: the checkpoint's (None), FP8 where
    the checkpoint is wider, and FP4 where the chip has FP4 tensor cores (NVFP4 on NVIDIA, MXFP4
    elsewhere) — how these models are served, not only how they ship."""
    from .profiles import vendor
    from .units import dtype_bytes

    out: list[str | None] = [None]
    native = dtype_bytes(model.weight_dtype)
    if native > 1 and system.chip.flops_per_s("fp8"):
        out.append("fp8")
    if native > 0.5625 and system.chip.flops_per_s("fp4"):
        out.append("nvfp4" if vendor(system) == "nvidia" else "mxfp4")
    return out


def plan_system(model: Model, system: System, *, input_tokens: float, output_tokens: float,
                weight_dtypes: Iterable[str | None] | str = "deployable", kv_dtype: str = "bf16",
                efficiency: Efficiency = ROOFLINE, usd_per_chip_hour: float | None = None,
                overlap: str = "full", estimate: str = "calibrated",
                engine: str | None = None, cached_input_tokens: float = 0.0,
                decode_only: bool = False, wide_ep: bool = False,
                layouts: Sequence[Layout] | None = None) -> tuple[dict[str, np.ndarray], int, dict[str, int]]:
    """Every feasible (layout, batch, dtype) point on one system, before SLOs, as columns:
    (columns, layouts evaluated, reasons layouts were rejected). estimate: 'calibrated' (the
    per-operation estimate under the engine's and the system's vendor profile) or 'roofline'
    (the bound, scaled by `efficiency`). cached_input_tokens: prompt tokens a prefix cache
    serves per request on average (not prefilled; the estimate's path only). decode_only: the
    points of a disaggregated decode pool (no prompt chunks in its steps; the estimate's path).
    wide_ep: search the wide expert-parallel layouts too (`wide_ep_layouts`; the columns carry
    each point's `redundant_experts`). layouts: search these instead of the system's candidates."""
    from .profiles import choose

    profile = choose(estimate, engine=engine, system=system)
    parts: list[dict[str, np.ndarray]] = []
    rejected: dict[str, int] = {}
    n_layouts = 0
    if weight_dtypes == "deployable":
        weight_dtypes = deployable_weight_dtypes(model, system)
    for wd in weight_dtypes:
        dt = Dtypes(weight=wd, kv=kv_dtype)
        try:
            resolve_dtypes(model, system, dt)
        except TokenmathError:
            rejected["no FLOP/s for the dtype"] = rejected.get("no FLOP/s for the dtype", 0) + 1
            continue
        checked = []
        for lay in (candidate_layouts(model, system, wide_ep=wide_ep) if layouts is None else layouts):
            try:
                check_layout(model, system, lay)
            except TokenmathError as e:
                key = str(e).split(":")[0][:80]
                rejected[key] = rejected.get(key, 0) + 1
                continue
            checked.append(lay)
        if not profile.is_roofline or efficiency == ROOFLINE:  # all layouts of the system in one broadcast
            # (the roofline bound too: op_step's bound of the same passes, the one every answer shows)
            cols, n = _evaluate_estimate_layouts(model, system, checked, dt, input_tokens, output_tokens, profile,
                                                 usd_per_chip_hour, rejected, cached_input_tokens,
                                                 decode_only, overlap) \
                if checked else (None, 0)
            n_layouts += n
            if cols is not None:
                parts.append(cols)
            continue
        for lay in checked:
            try:
                cols = _evaluate(model, system, lay, dt, input_tokens, output_tokens, efficiency, usd_per_chip_hour,
                                 overlap)
            except TokenmathError as e:
                key = str(e).split(":")[0][:80]
                rejected[key] = rejected.get(key, 0) + 1
                continue
            n_layouts += 1
            if cols is None:
                rejected["weights do not fit"] = rejected.get("weights do not fit", 0) + 1
            else:
                parts.append(cols)
    return _columns(parts), n_layouts, rejected


RATE_STEPS = 6  # tries of refine_at_rate per layout: a grid step of ~1.25x to 0.5 % of the batch
RATE_LAYOUTS = 12  # most layouts refined per call: best-first, while one could still beat the best found


def refine_at_rate(model: Model, systems: dict[str, System], cols: dict[str, np.ndarray], min_tokens_per_s_per_user: float,
                   *, input_tokens: float, output_tokens: float, max_ttft_s: float | None = None,
                   usd_per_chip_hour: float | None = None, overlap: str = "full", estimate: str = "calibrated",
                   engine: str | None = None, cached_input_tokens: float = 0.0, decode_only: bool = False,
                   weight_dtypes: Iterable[str | None] | str = "deployable") -> dict[str, np.ndarray]:
    """The batch each promising layout can run at a rate-per-user SLO, between the search's grid
    points: the grid's batches step by ~1.25×, so the largest grid batch meeting the rate can sit a
    quarter below the largest batch that does (DeepSeek-V3's EP144 decode on H800 at 20 tokens/s per
    user: 59 sequences per GPU on the grid, 68 that meet it). For each layout (system, dtypes,
    degrees) whose largest batch meeting the SLO has a grid neighbour above it that misses, and
    that could beat the cheapest point found (its cost at the upper neighbour's throughput), the
    batch is searched between the two — where the step, nearly affine in the batch there, reaches
    1/rate, to 0.5 % of the batch (RATE_STEPS tries) — and the row at the largest batch found meeting
    the rate is added: returns `cols` with those rows appended. Layouts are taken most promising
    first, and each refined row can lower the cost to beat: the search stops at the first layout
    whose hope no longer beats it (branch and bound; at most RATE_LAYOUTS layouts).
    `cols` as plan_system writes them (each layout's grid one run of rows, batches ascending). The
    estimate's path only (the calibrated step model, or the roofline of its passes).
    weight_dtypes: what the search was given (plan_system's), so a row's dtypes are rebuilt as it
    built them: the checkpoint's (None) where its dtype is the checkpoint's and the list is the
    deployable one, else the dtype named."""
    from .profiles import choose
    from .stepmodel import op_step, steady_step_s

    U = float(min_tokens_per_s_per_user)
    L = input_tokens + output_tokens / 2.0  # the decode context the search charges
    n = len(cols["batch"])
    if not n:
        return cols
    ok = cols["tokens_per_s_per_user"] >= U
    if max_ttft_s is not None:
        ok &= cols["ttft_s"] <= max_ttft_s
    if not ok.any():
        return cols
    usd = cols["usd_per_mtok"].astype(float)
    priced = bool((ok & ~np.isnan(usd)).any())
    # what to beat: the cheapest ($/Mtok), or where nothing is priced the most tokens/s per chip
    value = usd if priced else -cols["tokens_per_s_per_chip"].astype(float)
    best = float(np.nanmin(np.where(ok, value, np.nan)))
    # the search writes each layout's batch grid as one run of rows, batches ascending (plan_system):
    # a run's rows meeting the rate are a prefix, and the row after its last is the grid point above
    batch = cols["batch"].astype(float)
    same = np.ones(max(n - 1, 0), bool)
    for c in ("system", "weight_dtype", "kv_dtype", "tp", "ep", "pp", "redundant_experts"):
        same &= cols[c][1:] == cols[c][:-1]
    same &= batch[1:] > batch[:-1]
    i_top = np.flatnonzero(ok[:-1] & ~ok[1:] & same & ~np.isnan(value[:-1]))
    b_next = batch[i_top + 1]
    hope = value[i_top] * batch[i_top] / b_next if priced else value[i_top] * b_next / batch[i_top]
    keep = hope < best
    todo = sorted(zip(hope[keep].tolist(), i_top[keep].tolist(), b_next[keep].tolist()))
    out = []
    for hope_i, i, b_next in todo[:RATE_LAYOUTS]:
        if hope_i >= best:  # sorted by hope: no layout left can beat the best refined so far
            break
        system = systems[str(cols["system"][i])]
        profile = choose(estimate, engine=engine, system=system)
        lay = Layout(tp=int(cols["tp"][i]), ep=int(cols["ep"][i]), pp=int(cols["pp"][i]),
                     redundant_experts=int(cols["redundant_experts"][i]))
        wd = str(cols["weight_dtype"][i])
        named = weight_dtypes != "deployable" and wd in list(weight_dtypes)
        dt = Dtypes.for_point(model, wd, str(cols["kv_dtype"][i]), named=named)
        kw = dict(kernels=profile.kernels, engine=profile.engine, dtypes=dt, overlap=overlap)

        def step_s(b: float) -> float:  # the search's time per output token at batch b (float passes)
            if decode_only:
                return float(op_step(model, system, lay, b, L, 1.0, check=False, **kw).step_s)
            return float(steady_step_s(model, system, lay, b, input_tokens, output_tokens,
                                       cached_tokens=cached_input_tokens, **kw))

        # the step is nearly affine in the batch between grid points: each try is where the line
        # through the bracket's ends reaches 1/U (falling back to the middle), until the bracket is
        # within 0.5 % of the batch or one sequence
        lo, hi, t_lo = float(batch[i]), b_next, float(cols["step_s"][i])
        t_hi = float(cols["step_s"][i + 1])
        for _ in range(RATE_STEPS):
            if hi - lo <= max(1.0, 0.005 * lo):
                break
            guess = lo + (1.0 / U - t_lo) * (hi - lo) / (t_hi - t_lo) if t_hi > t_lo else (lo + hi) / 2
            b = float(np.clip(np.floor(guess), lo + 1, hi - 1))
            t = step_s(b)
            if 1.0 / t >= U:
                lo, t_lo = b, t
                nudge = float(min(hi - 1, lo + max(1.0, np.ceil(0.005 * lo))))  # is the bracket closed?
                if nudge > lo:
                    t2 = step_s(nudge)
                    lo, t_lo, hi, t_hi = (nudge, t2, hi, t_hi) if 1.0 / t2 >= U else (lo, t_lo, nudge, t2)
            else:
                hi, t_hi = b, t
        if lo <= batch[i]:
            continue
        # the grid row's columns at the new batch (TTFT, chips and dtypes do not depend on it)
        billed = float(cols["billed_chips"][i])
        replica_tps = np.array([lo / t_lo])
        mem = layout_memory(model, system, lay, lo, L, dtypes=dt)
        row = {k: cols[k][i:i + 1].copy() for k in COLUMNS + TEXT_COLUMNS}
        row.update(batch=np.array([lo]), step_s=np.array([t_lo]), tokens_per_s_per_user=np.array([1.0 / t_lo]),
                   tokens_per_s_per_chip=replica_tps / billed,
                   usd_per_mtok=_usd_per_mtok(system, usd_per_chip_hour, billed, replica_tps),
                   total_bytes_per_chip=np.array([float(mem.total_bytes_per_chip)]))
        out.append(row)
        best = min(best, float(row["usd_per_mtok"][0]) if priced else -float(row["tokens_per_s_per_chip"][0]))
    return _columns([cols, *out]) if out else cols


def plan(model: Model, systems: list[System], *, input_tokens: float, output_tokens: float,
         min_tokens_per_s_per_user: float | None = None, max_ttft_s: float | None = None,
         demand_tokens_per_s: float | None = None, weight_dtypes: Iterable[str | None] | str = "deployable",
         kv_dtype: str = "bf16", efficiency: Efficiency = ROOFLINE, overlap: str = "full",
         usd_per_chip_hour: float | None = None, scheduler: str | None = None,
         progress: Callable[[int, int, str], None] | None = None, estimate: str = "calibrated",
         engine: str | None = None, goal: str = "cost", decode_only: bool = False, wide_ep: bool = True) -> Plan:
    """Search every system for the cheapest way to serve `model` under the SLOs.

    scheduler: None runs in-process; "local" starts an in-process Dask cluster; any other value is
    the address of a running Dask scheduler (optional extra `dask`), one task per system.
    goal: "cost" (the cheapest; tokens/s per chip where no system has a price) or "energy" (the
    fewest joules per output token, energy.py). decode_only: plan the decode pool of a
    prefill/decode-disaggregated deployment (steps carry no prompt chunks; TTFT stays a lone
    prompt's prefill) — where wide EP with attention DP pays off, as in DeepSeek's EP144 decode.
    wide_ep: search the wide expert-parallel layouts across domains too (default)."""
    if goal not in ("cost", "energy"):
        raise TokenmathError(f"--objective = {goal!r}; expected 'cost' or 'energy'")
    if overlap not in ("full", "none"):
        raise TokenmathError(f"overlap = {overlap!r}; expected 'none' or 'full'")
    for name, v in (("input tokens", input_tokens), ("output tokens", output_tokens)):
        if not (v >= 1 and math.isfinite(v)):
            raise TokenmathError(f"{name} = {v!r} must be >= 1")
    for name, v in (("min tokens/s per user", min_tokens_per_s_per_user), ("max TTFT", max_ttft_s),
                    ("demand", demand_tokens_per_s)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise TokenmathError(f"{name} = {v!r} must be a positive number")
    if not systems:
        raise TokenmathError("no systems to plan on")
    if model.is_totals_only:
        raise TokenmathError(f"model {model.name!r} is defined by totals only; the planner lays out layers and "
                             "experts, so it needs the architecture (a config.json)")
    weight_dtypes = weight_dtypes if weight_dtypes == "deployable" else list(weight_dtypes)
    kw = dict(input_tokens=input_tokens, output_tokens=output_tokens, weight_dtypes=weight_dtypes, kv_dtype=kv_dtype,
              efficiency=efficiency, usd_per_chip_hour=usd_per_chip_hour, overlap=overlap, estimate=estimate,
              engine=engine, decode_only=decode_only, wide_ep=wide_ep)
    results = _run(model, systems, kw, scheduler, progress)

    cols = _columns([r[0] for r in results])
    if min_tokens_per_s_per_user is not None and estimate != "roofline" and goal == "cost":
        cols = refine_at_rate(model, {s.name: s for s in systems}, cols, min_tokens_per_s_per_user,
                              input_tokens=input_tokens, output_tokens=output_tokens, max_ttft_s=max_ttft_s,
                              usd_per_chip_hour=usd_per_chip_hour, overlap=overlap, estimate=estimate, engine=engine,
                              decode_only=decode_only, weight_dtypes=weight_dtypes)
    layouts = sum(r[1] for r in results)
    rejected: dict[str, int] = {}
    for _, _, rej in results:
        for k, v in rej.items():
            rejected[k] = rejected.get(k, 0) + v
    evaluated = len(cols["batch"])
    ok = np.ones(evaluated, dtype=bool)
    if min_tokens_per_s_per_user is not None:
        ok &= cols["tokens_per_s_per_user"] >= min_tokens_per_s_per_user
    if max_ttft_s is not None:
        ok &= cols["ttft_s"] <= max_ttft_s
    priced = ok & ~np.isnan(cols["usd_per_mtok"].astype(float))
    unpriced = tuple(sorted(set(cols["system"][ok & ~priced].tolist())))
    objective = "cost" if priced.any() else "throughput"
    if priced.any() and goal != "energy":
        ok = priced
    idx = np.nonzero(ok)[0]
    user = cols["tokens_per_s_per_user"][idx]
    energy_cols = None
    if goal == "energy":
        from .energy import plan_energy

        objective = "energy"
        energy_cols = plan_energy(model, {s.name: s for s in systems}, cols, idx, float(input_tokens), float(output_tokens))
        known = ~np.isnan(energy_cols[1])
        idx, user, energy_cols = idx[known], user[known], tuple(c[known] for c in energy_cols)
        value = energy_cols[1]
        front_local = pareto_indices(user, value, lower_is_better=True)
        front = idx[front_local]
        best_i = idx[np.lexsort((-user, value))[0]] if len(idx) else None
    elif objective == "cost":
        value = cols["usd_per_mtok"][idx].astype(float)
        front = idx[pareto_indices(user, value, lower_is_better=True)]
        best_i = idx[np.lexsort((-user, value))[0]] if len(idx) else None
    else:
        value = cols["tokens_per_s_per_chip"][idx]
        front = idx[pareto_indices(user, value, lower_is_better=False)]
        best_i = idx[np.lexsort((-user, -value))[0]] if len(idx) else None
    frontier = points(cols, front)
    best = None if best_i is None else points(cols, [best_i])[0]
    frontier, best = _with_energy(model, systems, cols, front, best_i, frontier, best, input_tokens, output_tokens)
    if best is not None and demand_tokens_per_s is not None:
        per_replica = best.tokens_per_s_per_chip * best.billed_chips
        replicas = math.ceil(demand_tokens_per_s / per_replica)
        best = _replace(best, replicas=replicas, total_chips=replicas * best.billed_chips)
    ok_count = int(ok.sum())
    from .profiles import choose

    label, band = "roofline", None
    bound = None if best is None else plan_bound(model, next(x for x in systems if x.name == best.system), best,
                                                 float(input_tokens), float(output_tokens), usd_per_chip_hour, overlap,
                                                 decode_only)
    if estimate != "roofline":
        label = choose(estimate, engine=engine).label + " (+ each system's vendor profile)"
        prof = None if best is None else choose(estimate, engine=engine, system=next(s for s in systems if s.name == best.system))
        from .profiles import model_class

        mc = model_class(model)  # the band of the model's class (MLA for DeepSeek), as every other answer
        r80 = None if prof is None else prof.range_80(best.step_s, model_class=mc, bound=bound["step_s"])
        if r80 is not None:  # never past the bound of the same layout and batch
            lo, hi = r80
            band = {"step_s": [lo, hi], "tokens_per_s_per_chip": [best.tokens_per_s_per_chip * best.step_s / hi,
                                                                   best.tokens_per_s_per_chip * best.step_s / lo]}
            if best.usd_per_mtok is not None:
                band["usd_per_mtok"] = [best.usd_per_mtok * lo / best.step_s, best.usd_per_mtok * hi / best.step_s]
    elif efficiency.label != "roofline":
        label = f"roofline × efficiencies ({efficiency.label})"
    return Plan(estimate=label, range_80=band, roofline=bound,
        
        model=model.name, input_tokens=float(input_tokens), output_tokens=float(output_tokens),
        min_tokens_per_s_per_user=min_tokens_per_s_per_user, max_ttft_s=max_ttft_s,
        demand_tokens_per_s=demand_tokens_per_s, objective=objective, frontier=frontier, best=best,
        evaluated=evaluated, feasible=ok_count, layouts=layouts, rejected=rejected, unpriced_systems=unpriced,
    )


def plan_bound(model: Model, system: System, p: PlanPoint, I: float, O: float, usd_per_chip_hour: float | None = None,
               overlap: str = "full", decode_only: bool = False) -> dict:
    """The roofline bound of a planner point (estimate.roofline_record): the same layout, batch,
    dtypes and continuous batching with chunked prefill, at peak rates (stepmodel.steady_step_s
    with kernels=None); TTFT's bound is a lone prompt's."""
    from .estimate import roofline_record
    from .stepmodel import op_step, steady_step_s

    lay = p.layout
    dt = Dtypes.for_point(model, p.weight_dtype, p.kv_dtype)
    ov = overlap
    if decode_only:  # a decode pool's steps carry no prompt chunks
        tpot = float(op_step(model, system, lay, p.batch, I + O / 2, 1.0, kernels=None, dtypes=dt, check=False,
                             overlap=ov).step_s)
    else:
        tpot = float(steady_step_s(model, system, lay, p.batch, I, O, kernels=None, dtypes=dt, overlap=ov))
    ttft = float(op_step(model, system, lay, 1.0, 0.0, I, kernels=None, dtypes=dt, check=False, overlap=ov).step_s)
    dec = op_step(model, system, lay, p.batch, I + O / 2, 1.0, kernels=None, dtypes=dt, check=False, overlap=ov)
    per_chip = p.batch / tpot / p.billed_chips
    price = system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
    usd = None if price is None else price / 3600.0 / per_chip * 1e6
    return roofline_record({"step_s": tpot, "tokens_per_s": p.batch / tpot, "tokens_per_s_per_chip": per_chip,
                            "tokens_per_s_per_user": 1.0 / tpot, "usd_per_mtok": usd,
                            "bound": str(dec.bound_name)},
                           ttft_s=ttft, point="the best point's layout and batch")


def _with_energy(model, systems, cols, front, best_i, frontier, best, I, O):
    """The frontier's and the best point's watts, J/token and tokens/s per MW (energy.py)."""
    from .energy import plan_energy

    rows = list(front) + ([] if best_i is None else [best_i])
    w, j, mw = plan_energy(model, {s.name: s for s in systems}, cols, rows, float(I), float(O))
    nan = lambda x: None if np.isnan(x) else float(x)  # noqa: E731
    pts = [_replace(p, watts=nan(w[i]), joules_per_token=nan(j[i]), tokens_per_s_per_mw=nan(mw[i]))
           for i, p in enumerate(frontier)]
    if best is not None:
        best = _replace(best, watts=nan(w[-1]), joules_per_token=nan(j[-1]), tokens_per_s_per_mw=nan(mw[-1]))
    return pts, best


def _replace(p, **kw):
    from dataclasses import replace

    return replace(p, **kw)


def _plan_one(system, model, **kw):
    return plan_system(model, system, **kw)


def _run(model, systems, kw, scheduler, progress):
    from .parallel import run_tasks

    return run_tasks(_plan_one, systems, scheduler=scheduler, progress=progress, label=lambda s: s.name,
                     model=model, **kw)
