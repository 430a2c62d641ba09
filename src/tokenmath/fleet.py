"""Fleet planning from requests: how many replicas of which layout on which system serve a request
rate under tail-latency SLOs, aggregated or with prefill and decode split into pools.

Per request of I input and O output tokens (h·P of the input served by a prefix cache), at rate λ:

  aggregated   each replica runs continuous batching with chunked prefill (the planner's points:
               plan.plan_system). Its capacity at batch B is C = B / (O · T(B)) requests/s, T the
               steady step with prompt chunks riding along. Replicas R = ⌈λ / (ρ·C)⌉.
  disaggregated  a prefill pool runs prompts alone. A pass of b prompts takes T_p(b), so a replica
               serves b / T_p(b) prompts/s and TTFT ≥ T_p(b) + the KV transfer. A decode pool
               runs decode-only steps: C_d = B / (O · T_d(B)). The KV of a prompt,
               kv_bytes(I), moves from the prefill to the decode replica over the scale-up link
               when both sit in one domain, else over the scale-out NIC, every chip sending its
               share: t_kv = kv_bytes(I) / (link B/s · min(chips_p, chips_d)) + one hop.

The screen sizes every pool to a load ρ = UTILISATION_DEFAULT (0.85). Then candidates are verified
in simulation at steady state (steady.py): each pool's replica is simulated under its share of the
workload, the warm-up is discarded (MSER-5), and the run is grown fourfold until the p99 of TTFT
and of TPOT is known within ±5 % (95 % sectioning interval) or REQUEST_CAP requests. A pool meets its SLOs
when the interval's upper end is within them. Each verified pool is then sized down by bisection
on its replicas (up when the screen's size misses), every step verified the same way. Candidates
are verified in order of their cost at 100 % load, a floor no sizing goes below, until no
unverified one can be cheaper than the best verified: the answer is the cheapest verified fleet.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .layout import layout_memory
from .parallelism import HOP_LATENCY_S_DEFAULT, Layout, check_layout
from .params import param_counts
from .specs import Dtypes, Model, System
from .steady import CONFIDENCE, Interval, mser5, percentile_interval
from .units import sig

# Load a pool is planned to: capacity × ρ. Queueing delay grows as 1/(1 − ρ); 0.85 is a common
# planning target for latency-bound services. It is where the search starts: the verified size
# may end up above or below it.
UTILISATION_DEFAULT = 0.85
VERIFY_DEFAULT = 12  # the most candidate fleets verified (the search usually stops sooner: see fleet())
MAX_RATE = 1e7  # requests per second
MIN_RATE = 1e-4  # requests per second (one every 2.8 h): below, a fleet is one replica serving each request alone
CHUNK_TOKENS = 8192  # the prefill token budget of one pass (stepmodel.CHUNK_TOKENS_DEFAULT)
# A prefill pool's pass holds up to CHUNK_TOKENS new tokens per attention-DP rank: each rank batches
# its own prompts (SGLang's chunked-prefill size is per rank; DeepSeek profiles 16K tokens per GPU with
# every GPU its own rank, github deepseek-ai/profile-data README commit 4496024), so a wide-EP replica
# of 32 ranks prefills 32 chunks at once and its expert weights are read once for all of them.
# `fleet(prefill_tokens_per_rank=...)` / --prefill-tokens-per-rank sets it.
PREFILL_PROMPTS_MAX = 4096  # prompts in one prefill pass, at most (bounds the search)
# The screen keeps a prefill pass (or a lone prompt's TTFT) under this share of the TTFT SLO: a
# request may wait about one pass in the queue before its own, so a pass near the SLO misses its p99.
TTFT_SCREEN_SHARE = 0.5
# Steady-state verification (steady.py holds the statistics)
REL_HALF_WIDTH = 0.05  # stop once every p99's 95 % half-width is within 5 % of it
FIRST_REQUESTS = 4_000  # per replica, the first run of a check
WIDE_EP = True  # search plan.wide_ep_layouts (EP across scale-up domains, redundant experts) for every pool
REQUEST_CAP = 64_000  # per replica and pool, the most one check simulates (also within simulate.MAX_STEPS)
MAX_REPLICA_GROWTH = 6  # steps up (×1.15 each) when the screen's size misses its SLOs
MAX_BISECTION = 12  # halvings of the replica range when sizing down (a range of 4,096 replicas)
GROWTH = 4  # the run is grown fourfold (4,000 → 16,000 → 64,000) until the stopping rule holds


@dataclass(frozen=True)
class Slo:
    """Latency objectives (seconds); None = none. TPOT is time per output token after the first."""

    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    ttft_p50_s: float | None = None
    tpot_p50_s: float | None = None

    def ttft_limit(self) -> float:
        return min(v for v in (self.ttft_p99_s, self.ttft_p50_s, math.inf) if v is not None)

    def tpot_limit(self) -> float:
        return min(v for v in (self.tpot_p99_s, self.tpot_p50_s, math.inf) if v is not None)


@dataclass(frozen=True)
class Pool:
    role: str  # "both" | "prefill" | "decode"
    system: str
    replicas: int
    chips_per_replica: int
    billed_chips_per_replica: float
    tp: int
    ep: int
    pp: int
    dp: int  # replicas (data parallel copies)
    max_batch: int  # sequences per replica (prefill: prompts per pass)
    weight_dtype: str
    kv_dtype: str
    capacity_requests_per_s: float  # one replica, analytic
    step_s: float  # decode step (both/decode) or prefill pass (prefill), analytic
    usd_per_hour: float | None
    watts_per_replica: float | None = None  # facility level (node × PUE), busy at its analytic step (energy.py)
    mtp_draft_tokens: int = 0  # decode: tokens drafted per step (MTP / speculative decoding; speculative.py)
    mtp_tokens_per_step: float = 1.0  # decode: tokens each step yields per sequence, e = (1 − a^(k+1)) / (1 − a)
    verify_step_s: float | None = None  # decode with MTP: the pass over 1 + k tokens (step_s = it / e)
    redundant_experts: int = 0  # wide EP: EPLB copies of routed experts spread over the EP ranks (wide_ep.py)

    @property
    def layout(self) -> Layout:
        """The replica's layout (redundant experts included: a wide-EP layout needs them to divide)."""
        return Layout(tp=self.tp, ep=self.ep, pp=self.pp, redundant_experts=self.redundant_experts)


@dataclass(frozen=True)
class PoolRun:
    """One pool's steady-state check at a replica count: its replica simulated under its share of
    the workload, the warm-up discarded, the tails it measures with their 95 % intervals."""

    role: str
    replicas: int
    requests: int  # simulated on one replica in the final run, warm-up included
    warmup: int  # leading requests discarded (MSER-5)
    settled: bool  # the warm-up rule found its cut inside the first half of the run
    converged: bool  # settled and every p99 measured within ±REL_HALF_WIDTH
    stop: str  # why the run stopped growing: "±5 %", "request cap", "misses"
    ttft: tuple[Interval, Interval] | None  # (p50, p99) when the pool decides TTFT
    tpot: tuple[Interval, Interval] | None  # (p50, p99) when the pool decides TPOT
    share_meeting: float  # of the kept requests, the share meeting this pool's thresholds
    meets: bool  # settled, and every SLO it decides met at the interval's upper end


@dataclass(frozen=True)
class Simulated:
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    slo_attainment: float  # share of requests meeting every SLO
    goodput_requests_per_s: float  # the fleet's requests/s meeting every SLO
    requests: int  # simulated per replica in the final runs (every pool's), warm-up included
    meets_slo: bool
    ttft_p99_ci_s: tuple[float, float] = (math.nan, math.nan)  # 95 % interval
    tpot_p99_ci_s: tuple[float, float] = (math.nan, math.nan)
    ttft_p50_ci_s: tuple[float, float] = (math.nan, math.nan)
    tpot_p50_ci_s: tuple[float, float] = (math.nan, math.nan)
    warmup_requests_discarded: int = 0  # every pool's
    converged: bool = False  # every pool settled with its p99s within ±5 %
    runs: tuple[PoolRun, ...] = ()  # the final check of each pool
    sizing: tuple[tuple[str, tuple[tuple[int, bool], ...]], ...] = ()  # per pool: (replicas, met) tried, in order


@dataclass(frozen=True)
class FleetOption:
    mode: str  # "aggregated" | "disaggregated"
    pools: tuple[Pool, ...]
    total_chips: float
    usd_per_hour: float | None
    usd_per_mtok_output: float | None  # $ per million OUTPUT tokens (the whole fleet's cost over O tokens)
    usd_per_mtok_all_tokens: float | None  # $ per million tokens in + out (I + O per request)
    analytic_ttft_s: float
    analytic_tpot_s: float
    kv_transfer_s: float | None
    tokens_per_s_per_user: float
    simulated: Simulated | None = None
    watts: float | None = None  # every replica of every pool, facility level (node × PUE), busy (energy.py)
    joules_per_token: float | None = None  # watts / (rate · O): facility J per output token, prefill included
    joules_per_request: float | None = None  # watts / rate: facility J per request (prefill + decode)

    @property
    def goodput_requests_per_s(self) -> float | None:
        return None if self.simulated is None else self.simulated.goodput_requests_per_s


@dataclass(frozen=True)
class FleetPlan:
    model: str
    request_rate: float
    input_tokens: float
    output_tokens: float
    cached_input_tokens: float
    slo: Slo
    estimate: str
    best: FleetOption | None
    candidates: list[FleetOption]  # verified by simulation, best first
    frontier: list[dict]  # cost vs tokens/s per user over the aggregated candidates (analytic)
    mode_reason: str
    flop_lower_bound_chips: float
    screen_error: dict = field(default_factory=dict)  # simulated / analytic − 1 for the best
    workload: dict = field(default_factory=dict)
    prefix_cache: dict | None = None  # where the shared prefixes' KV is kept and what holding it costs
    weight_dtypes: dict = field(default_factory=dict)  # asked ("deployable" or a list) and tried, by system
    search: dict = field(default_factory=dict)  # candidates screened, verified, and why the search stopped
    features: dict = field(default_factory=dict)  # production features asked: MTP in decode pools
    wide_ep_reason: str = ""  # why the best fleet's expert parallelism crosses scale-up domains (or "")


# --------------------------------------------------------------------------------------------
# Candidates (analytic)
# --------------------------------------------------------------------------------------------


def _points(model, s, layouts, **kw):
    """plan.plan_system's points on system `s`: over its candidate layouts, or over the layouts given
    for it (`layouts[s.name]`, e.g. wide-EP layouts from a layout search)."""
    from .plan import plan_system

    lays = None if layouts is None else layouts.get(s.name)
    return plan_system(model, s, wide_ep=WIDE_EP, layouts=None if lays is None else list(lays), **kw)


def _aggregated(model, systems, I, O, cached, rate, slo, rho, usd_per_chip_hour, engine, energy=False,
                weight_dtypes="deployable", fetch=None, layouts=None) -> list[FleetOption]:
    out = []
    for s in systems:
        cols, _, _ = _points(model, s, layouts, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                                 engine=engine, cached_input_tokens=cached,
                                 weight_dtypes=dtypes_for(model, s, weight_dtypes))
        if not len(cols["batch"]):
            continue
        if fetch:  # a prefix hit read back from its tier before the prompt (analytic TTFT; the simulation leaves it out)
            cols = dict(cols, ttft_s=cols["ttft_s"] + fetch.get(s.name, 0.0) / cols["chips"])
        ok = (cols["step_s"] <= slo.tpot_limit()) & (cols["ttft_s"] <= TTFT_SCREEN_SHARE * slo.ttft_limit())
        price = s.held_usd_per_chip_hour(usd_per_chip_hour)  # a fleet pays every held hour
        rows = np.nonzero(ok)[0]
        watts = _pool_watts(model, s, cols, rows, I, O, cached) if energy else [None] * len(rows)
        c = _row_lists(cols, rows)
        for i, w in enumerate(watts):
            billed = float(c["billed_chips"][i])
            cap = float(c["tokens_per_s_per_chip"][i]) * billed / O
            R = max(1, math.ceil(rate / (rho * cap)))
            pool = Pool("both", s.name, R, int(c["chips"][i]), billed, int(c["tp"][i]), int(c["ep"][i]),
                        int(c["pp"][i]), R, int(c["batch"][i]), str(c["weight_dtype"][i]),
                        str(c["kv_dtype"][i]), cap, float(c["step_s"][i]),
                        None if price is None else R * billed * price, w,
                        redundant_experts=int(c["redundant_experts"][i]))
            out.append(_option("aggregated", (pool,), rate, I, O, float(c["ttft_s"][i]), float(c["step_s"][i]),
                               None))
    return out


def _totals(pools, replicas, usd_per_hour) -> tuple[float, float | None, float | None]:
    """(chips, $/hour, watts) of a fleet whose pools run `replicas` replicas costing `usd_per_hour` each
    pool (None where unpriced): what _option records and the search ranks candidates by."""
    chips = sum(r * p.billed_chips_per_replica for p, r in zip(pools, replicas))
    usd = None if any(u is None for u in usd_per_hour) else sum(usd_per_hour)
    w = None if any(p.watts_per_replica is None for p in pools) else \
        sum(r * p.watts_per_replica for p, r in zip(pools, replicas))
    return chips, usd, w


def _usd_at(p: Pool, replicas: int) -> float | None:
    """A pool's $/hour at another replica count."""
    return None if p.usd_per_hour is None else p.usd_per_hour / p.replicas * replicas


def _option(mode, pools, rate, I, O, ttft, tpot, kv_s) -> FleetOption:
    chips, usd, w = _totals(pools, [p.replicas for p in pools], [p.usd_per_hour for p in pools])
    per_out = None if usd is None else usd / 3600.0 / (rate * O) * 1e6  # the fleet's $/s over output tokens/s
    per_all = None if usd is None else usd / 3600.0 / (rate * (I + O)) * 1e6  # ... over every token in and out
    return FleetOption(mode, tuple(pools), chips, usd, per_out, per_all, ttft, tpot, kv_s, 1.0 / tpot, watts=w,
                       joules_per_token=None if w is None else w / (rate * O), joules_per_request=None if w is None else w / rate)


def _resize(o: FleetOption, replicas: tuple[int, ...], rate: float, I: float, O: float) -> FleetOption:
    """The same fleet with each pool at its new replica count (cost, chips and watts follow)."""
    pools = tuple(replace(p, replicas=r, dp=r, usd_per_hour=_usd_at(p, r)) for p, r in zip(o.pools, replicas))
    return replace(_option(o.mode, pools, rate, I, O, o.analytic_ttft_s, o.analytic_tpot_s, o.kv_transfer_s),
                   simulated=o.simulated)


def _resized_totals(o: FleetOption, replicas) -> tuple[float, float | None, float | None]:
    """(chips, $/hour, watts) of `_resize(o, replicas, ...)` without building the fleet (the search
    ranks tens of thousands of resized candidates): the same _totals of the same pools."""
    return _totals(o.pools, replicas, [_usd_at(p, r) for p, r in zip(o.pools, replicas)])


def _pool_watts(model, system, cols, rows, I, O, cached=None):
    """Watts per replica of planner rows (energy.plan_energy), NaN -> None; `cached` given: the rows
    are aggregated replicas whose steps also carry prompt chunks."""
    from .energy import plan_energy

    w, _, _ = plan_energy(model, {system.name: system}, cols, rows, I, O, prompt_cached=cached, level="facility")
    return [None if np.isnan(x) else float(x) for x in w]


def _prefill_watts(model, s, lay, per_pass, cached, Ip, dt, t_pass):
    """Watts of a prefill replica running passes of each size (its roofline terms over the pass)."""
    from .energy import maybe_energy_of
    from .roofline import step_time

    st = step_time(model, s, np.asarray(per_pass, float), float(cached) + Ip / 2, float(Ip), chips=lay.replica_chips,
                   dtypes=dt)
    e = maybe_energy_of(st, s, step_s=t_pass, level="facility")
    return [None] * len(per_pass) if e is None else [float(x) for x in np.atleast_1d(e.watts)]


def _prefill_pools(model, s, I, cached, rate, slo, rho, usd_per_chip_hour, engine, energy=False,
                   weight_dtypes="deployable", fetch=None, layouts=None,
                   chunk_tokens: float = CHUNK_TOKENS) -> list[tuple[Pool, float]]:
    """(pool, pass time) for each layout and prompts-per-pass that fits, on one system."""
    from .plan import candidate_layouts
    from .profiles import choose
    from .stepmodel import layout_terms, op_step

    prof = choose("calibrated", engine=engine, system=s)
    Ip = I - cached
    # prompts per pass: powers of two up to the pass budget, chunk_tokens per attention-DP rank (one
    # prompt at least), each layout to its own budget
    per_pass = np.unique(np.clip(2 ** np.arange(0, 13), 1, PREFILL_PROMPTS_MAX))
    price = s.held_usd_per_chip_hour(usd_per_chip_hour)  # a fleet pays every held hour
    out = []
    for wd in dtypes_for(model, s, weight_dtypes):
        dt = Dtypes(weight=wd)
        lays, caps = [], []
        given = None if layouts is None else layouts.get(s.name)
        for lay in (candidate_layouts(model, s, wide_ep=WIDE_EP) if given is None else given):
            try:
                check_layout(model, s, lay)
                if lay.pp > 1:
                    continue  # a prefill pool gains nothing from pipeline stages in flight one prompt deep
                budget = chunk_tokens * lay.attention_dp
                fits = [b for b in per_pass if b * Ip <= budget or b == 1]
                while fits and not layout_memory(model, s, lay, float(fits[-1]), I, dtypes=dt,
                                                 kv_budget=prof.engine.kv_budget).serves:
                    fits.pop()  # the prompts of a pass hold their KV until it ends
                if not fits:
                    continue
                layout_terms(model, s, lay, prof.kernels, prof.engine, HOP_LATENCY_S_DEFAULT)
                lays.append(lay)
                caps.append(fits[-1])
            except TokenmathError:
                continue
        if not lays:
            continue
        try:
            op = op_step(model, s, lays, np.broadcast_to(per_pass, (len(lays), len(per_pass))), float(cached),
                         float(Ip), kernels=prof.kernels, engine=prof.engine, dtypes=dt, check=False)
        except TokenmathError:
            continue
        t = np.asarray(op.step_s, float)
        if fetch:  # a pass of b prompts first reads b cached prefixes from their tier, every chip its share
            t = t + per_pass[None, :] * fetch.get(s.name, 0.0) / np.array([x.replica_chips for x in lays], float)[:, None]
        weight = dt.weight or model.weight_dtype
        for i, lay in enumerate(lays):
            pw = _prefill_watts(model, s, lay, per_pass, cached, Ip, dt, t[i]) if energy else [None] * len(per_pass)
            for j, b in enumerate(per_pass):
                if b > caps[i] or t[i, j] > TTFT_SCREEN_SHARE * slo.ttft_limit():
                    continue
                billed = float(op.billed_chips[i])
                cap = float(b / t[i, j])
                R = max(1, math.ceil(rate / (rho * cap)))
                out.append((Pool("prefill", s.name, R, lay.replica_chips, billed, lay.tp, lay.ep, lay.pp, R, int(b),
                                 weight, "bf16", cap, float(t[i, j]), None if price is None else R * billed * price,
                                 pw[j], redundant_experts=lay.redundant_experts), float(t[i, j])))
    return out


def _decode_pools(model, s, I, O, rate, slo, rho, usd_per_chip_hour, engine, energy=False,
                  weight_dtypes="deployable", mtp=(0, 0.0), layouts=None, refine: bool = True) -> list[Pool]:
    from .plan import refine_at_rate

    dts = dtypes_for(model, s, weight_dtypes)
    cols, _, _ = _points(model, s, layouts, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                             engine=engine, decode_only=True, weight_dtypes=dts)
    k, e = int(mtp[0]), 1.0
    if refine and not k:  # the batch at the TPOT limit between grid points (the grid steps by ~1.25×), as `plan` finds it
        cols = refine_at_rate(model, {s.name: s}, cols, 1.0 / slo.tpot_limit(), input_tokens=I, output_tokens=O,
                              usd_per_chip_hour=usd_per_chip_hour, engine=engine, decode_only=True, weight_dtypes=dts)
    price = s.held_usd_per_chip_hour(usd_per_chip_hour)  # a fleet pays every held hour
    out = []
    n = len(cols["batch"])
    per_token = np.asarray(cols["step_s"], float) if n else np.array([])
    verify = None
    if k and n:  # each step verifies k drafts: a pass over 1 + k tokens per sequence yields e tokens
        from .speculative import expected_tokens_per_verify

        e = expected_tokens_per_verify(k, mtp[1])
        verify = _mtp_verify_steps(model, s, cols, I + O / 2.0, k, engine)
        per_token = verify / e
    rows = np.nonzero(per_token <= slo.tpot_limit())[0] if n else np.array([], int)
    watts = _pool_watts(model, s, cols, rows, I, O) if energy else [None] * len(rows)
    c = _row_lists(dict(cols, per_token=per_token, verify=per_token if verify is None else verify), rows)
    for i, w in enumerate(watts):
        billed = float(c["billed_chips"][i])
        cap = float(c["batch"][i]) / (O * float(c["per_token"][i]))  # requests/s of one replica
        R = max(1, math.ceil(rate / (rho * cap)))
        out.append(Pool("decode", s.name, R, int(c["chips"][i]), billed, int(c["tp"][i]), int(c["ep"][i]),
                        int(c["pp"][i]), R, int(c["batch"][i]), str(c["weight_dtype"][i]),
                        str(c["kv_dtype"][i]), cap, float(c["per_token"][i]),
                        None if price is None else R * billed * price, w, k, e,
                        None if verify is None else float(c["verify"][i]),
                        redundant_experts=int(c["redundant_experts"][i])))
    return out


def _row_lists(cols: dict, rows) -> dict:
    """The planner columns a pool is built from, at `rows`, as Python lists (one conversion per
    column, not one numpy scalar per field and row)."""
    rows = np.asarray(rows, int)
    return {k: np.asarray(cols[k])[rows].tolist() for k in
            ("billed_chips", "tokens_per_s_per_chip", "chips", "tp", "ep", "pp", "batch", "weight_dtype", "kv_dtype",
             "step_s", "ttft_s", "redundant_experts", "per_token", "verify") if k in cols}


def _mtp_verify_steps(model, s, cols, context, k, engine) -> np.ndarray:
    """The verify pass over 1 + k tokens per sequence for every planner row (speculative.verify_pass_s:
    the one composition, shared with `fastmode`), one call per layout and dtype."""
    from .profiles import choose
    from .speculative import verify_pass_s

    prof = choose("calibrated", engine=engine, system=s)
    out = np.empty(len(cols["batch"]))
    keys = list(zip(cols["tp"].tolist(), cols["ep"].tolist(), cols["pp"].tolist(), cols["redundant_experts"].tolist(),
                    cols["weight_dtype"].tolist(), cols["kv_dtype"].tolist()))
    for key in dict.fromkeys(keys):
        idx = np.array([i for i, x in enumerate(keys) if x == key])
        tp, ep, pp, red, wd, kv = key
        dt = Dtypes.for_point(model, wd, kv)
        lay = Layout(tp=int(tp), ep=int(ep), pp=int(pp), redundant_experts=int(red))
        out[idx] = verify_pass_s(model, s, lay, cols["batch"][idx], context, k,
                                 kernels=prof.kernels, engine=prof.engine, dtypes=dt)[0]
    return out


def kv_transfer_s(model: Model, prefill: System, decode: System, input_tokens: float, *, prefill_chips: int,
                  decode_chips: int, kv_dtype: str = "bf16", kv_bytes: float | None = None) -> float | None:
    """Seconds to move one prompt's KV from a prefill replica to a decode replica: over the
    scale-up link when both replicas fit one domain of the same system, else over the scale-out
    NIC; every chip sends its share in parallel; plus one hop. None when no link is published.
    kv_bytes: the prompt's stored KV when the caller already has it (default: kv_cache's)."""
    kv = float(kv_cache(model, input_tokens, kv_dtype).stored_bytes) if kv_bytes is None else kv_bytes
    same_domain = prefill.name == decode.name and prefill_chips + decode_chips <= prefill.scaleup_chips
    bw = prefill.scaleup_bytes_per_s if same_domain else min(
        x for x in (prefill.scaleout_bytes_per_s, decode.scaleout_bytes_per_s, math.inf) if x)
    if not bw or not math.isfinite(bw):
        return None
    return kv / (bw * min(prefill_chips, decode_chips)) + (0.0 if same_domain else HOP_LATENCY_S_DEFAULT)


def _disaggregated(model, systems, I, O, cached, rate, slo, rho, usd_per_chip_hour, engine, keep=4,
                   energy=False, by_energy=False, weight_dtypes="deployable", mtp=(0, 0.0),
                   fetch=None, layouts=None, chunk_tokens: float = CHUNK_TOKENS) -> list[FleetOption]:
    def cost(p: Pool):
        if by_energy:
            return p.replicas * p.watts_per_replica if p.watts_per_replica is not None else math.inf
        return p.usd_per_hour if p.usd_per_hour is not None else math.inf

    pre, dec = [], []
    for s in systems:
        pools = _prefill_pools(model, s, I, cached, rate, slo, rho, usd_per_chip_hour, engine, energy, weight_dtypes,
                               fetch, layouts, chunk_tokens)
        pre += [p for p, _ in sorted(pools, key=lambda x: (cost(x[0]), x[1]))[:keep]]
        dec += sorted(_decode_pools(model, s, I, O, rate, slo, rho, usd_per_chip_hour, engine, energy, weight_dtypes,
                                    mtp, layouts, refine=not by_energy), key=cost)[:keep]  # the refinement ranks by cost
    by_name = {s.name: s for s in systems}
    kv = float(kv_cache(model, I, "bf16").stored_bytes)  # one prompt's KV, the same for every pair
    out = []
    for p in pre:
        for d in dec:
            t_kv = kv_transfer_s(model, by_name[p.system], by_name[d.system], I, prefill_chips=p.chips_per_replica,
                                 decode_chips=d.chips_per_replica, kv_bytes=kv)
            if t_kv is None or p.step_s + t_kv > TTFT_SCREEN_SHARE * slo.ttft_limit():
                continue
            out.append(_option("disaggregated", (p, d), rate, I, O, p.step_s + t_kv, d.step_s, t_kv))
    return out


# --------------------------------------------------------------------------------------------
# Verification by simulation, at steady state
# --------------------------------------------------------------------------------------------
#
# Every replica of a pool sees its share of the workload: Poisson arrivals at λ/R (a dispatcher that
# sends each request to a random replica; round-robin would be smoother, so this errs long), or
# every R-th request of the trace. One replica is simulated; the pool's tails are its tails. A
# check of a pool at R replicas runs FIRST_REQUESTS requests, discards the warm-up (MSER-5), and
# grows the run fourfold until every p99 it measures is known within ±5 % (95 % sectioning
# interval), or REQUEST_CAP, or until an interval lies wholly above its SLO (a clear miss needs no
# more digits). Nothing else stops it early: a "meets" read off a short run of a tail set by rare
# congestion was overturned by the full run often enough to matter (a p99 of 746 ms at 4,000
# requests, 1.3 s at 256,000, in one aggregated pool).
# The arrivals of all checks of a pool are one stream of exponential gaps scaled by R/λ (common
# random numbers), so a pool checked at two sizes differs by its size, not by its luck.


def _arrivals(rate: float, n: int, trace=None, replicas: int = 1, offset: int = 0):
    """Every replicas-th request of the trace (replayed end to end until there are n): times
    from 0, input and output tokens."""
    a, ins, outs = trace.arrival_s, trace.input_tokens, trace.output_tokens
    need = n * replicas + offset
    if len(a) < need:  # replay the trace end to end until every replica has its n requests
        reps = -(-need // len(a))
        span = float(a[-1] - a[0]) + (float(a[-1] - a[0]) / max(len(a) - 1, 1) if len(a) > 1 else replicas / rate)
        a = np.concatenate([a + k * span for k in range(reps)])
        ins, outs = np.tile(ins, reps), np.tile(outs, reps)
    idx = np.arange(offset, len(a), replicas)[:n]
    return a[idx] - a[idx[0]], ins[idx], outs[idx]


class _Runs:
    """What every check of one pool shares: the workload and the pool's step model, computed once.
    `__call__(R, n)` simulates one replica of the pool at R replicas on n requests and returns
    ({"ttft": ..., "tpot": ...} per request in arrival order, steps simulated)."""

    def __init__(self, ctx: dict, option: FleetOption, pool: Pool, seed: int):
        self.ctx, self.option, self.pool = ctx, option, pool
        self.gaps = np.random.default_rng(seed).exponential(1.0, size=REQUEST_CAP)
        self.setup = None

    def times(self, R: int, n: int):
        c = self.ctx
        if c["trace"] is None:
            return np.cumsum(self.gaps[:n]) * (R / c["rate"]), None, None
        return _arrivals(c["rate"], n, c["trace"], R)

    def first_requests(self) -> int:
        """FIRST_REQUESTS, or fewer where simulate.MAX_STEPS could bind in the first run (every
        request decoded alone); later runs are bounded by the steps the first one took."""
        from .simulate import MAX_STEPS

        O = self.ctx["O"] if self.ctx["trace"] is None else float(np.mean(self.ctx["trace"].output_tokens))
        return int(max(100, min(FIRST_REQUESTS, 0.8 * MAX_STEPS / max(O, 1.0))))


class _AggregatedRuns(_Runs):
    measures = ("ttft", "tpot")

    def __call__(self, R: int, n: int):
        from .estimate import linearised
        from .profiles import choose
        from .simulate import simulate

        c, p = self.ctx, self.pool
        model, s = c["model"], c["by_name"][p.system]
        dt = Dtypes.for_point(model, p.weight_dtype, p.kv_dtype)
        if self.setup is None:
            prof = choose("calibrated", engine=c["engine"], system=s)
            self.setup = linearised(model, s, chips=p.chips_per_replica, dtypes=dt, profile=prof,
                                    input_tokens=c["I"] - c["cached"], output_tokens=c["O"], batch=float(p.max_batch),
                                    layout=p.layout)
        eff, ov = self.setup
        times, ins, outs = self.times(R, n)
        dur = float(times[-1]) * (1 + 1e-9) + 1e-6
        lengths = None if ins is None else (np.maximum(ins - c["cached"], 1).astype(int), outs.astype(int))
        r = simulate(model, s, rate_per_s=len(times) / dur, duration_s=dur, input_tokens=max(1, round(c["I"] - c["cached"])),
                     output_tokens=max(1, round(c["O"])), chips=p.chips_per_replica, max_batch=p.max_batch,
                     prefill="chunked", chunk_tokens=CHUNK_TOKENS, dtypes=dt, efficiency=eff, overhead_s=ov,
                     arrivals=times, lengths=lengths, per_request=True)
        ttft = r.ttft_each_s
        never = np.isnan(ttft)
        if never.any():  # not served when the run stopped: at least the time to its end
            end = float(np.nanmax(times + ttft)) if (~never).any() else float(times[-1])
            ttft = np.where(never, np.maximum(end - times, 0.0), ttft)
        return {"ttft": ttft, "tpot": r.tpot_each_s}, r.steps


class _PrefillRuns(_Runs):
    """A prefill replica: prompts queue FIFO and run in passes of up to max_batch; a pass takes the
    screen's T_p however many it holds. TTFT = the pass's end − arrival + the KV transfer."""

    measures = ("ttft",)

    def first_requests(self) -> int:
        return FIRST_REQUESTS

    def __call__(self, R: int, n: int):
        p = self.pool
        times = self.times(R, n)[0].tolist()
        b, t_pass, kv = p.max_batch, p.step_s, self.option.kv_transfer_s or 0.0
        done = [0.0] * n
        free, k, passes = 0.0, 0, 0
        while k < n:
            start = free if free > times[k] else times[k]
            j = k + 1
            while j < n and j - k < b and times[j] <= start:
                j += 1
            free = start + t_pass
            for i in range(k, j):
                done[i] = free
            k = j
            passes += 1
        return {"ttft": np.asarray(done) - np.asarray(times) + kv}, passes


class _DecodeRuns(_Runs):
    """A decode replica: requests arrive prefilled and join at the next step boundary, up to
    max_batch at once; a step with b sequences takes the estimate's decode step at batch b. Its
    arrivals are the pool's share of the workload: iid prefill delays leave a Poisson stream
    Poisson (the displacement theorem, Kingman 1993, "Poisson Processes"), so the prefill pool does
    not change them. TPOT = (last token − arrival) / (O − 1), a wait for a free slot included."""

    measures = ("tpot",)

    def __call__(self, R: int, n: int):
        c, p = self.ctx, self.pool
        if self.setup is None:
            self.setup = _decode_steps(c["model"], c["by_name"][p.system], p, c["I"] + c["O"] / 2, c["engine"])
        times, _, outs = self.times(R, n)
        outs = np.full(n, max(1, int(round(c["O"])))) if outs is None else outs.astype(int)
        last, steps = _continuous_batching(times, outs - 1, self.setup, p.max_batch)
        tpot = np.full(n, np.nan)
        multi = outs > 1
        tpot[multi] = (last[multi] - times[multi]) / (outs[multi] - 1)
        return {"tpot": tpot}, steps


def _decode_steps(model, system, pool: Pool, context: float, engine):
    """The estimate's decode step time by batch 1..max_batch for the pool's layout (a table)."""
    from .profiles import choose
    from .stepmodel import op_step

    prof = choose("calibrated", engine=engine, system=system)
    lay = pool.layout
    b = np.arange(1, pool.max_batch + 1, dtype=float)
    dt = Dtypes.for_point(model, pool.weight_dtype, pool.kv_dtype)
    if pool.mtp_draft_tokens:  # each step yields e tokens per sequence (the mean): its time per token
        from .speculative import verify_pass_s

        return verify_pass_s(model, system, lay, b, context, pool.mtp_draft_tokens, kernels=prof.kernels,
                             engine=prof.engine, dtypes=dt)[0] / pool.mtp_tokens_per_step
    return np.asarray(op_step(model, system, lay, b, context, 1.0, kernels=prof.kernels, engine=prof.engine,
                              dtypes=dt).step_s, float).reshape(-1)


def _continuous_batching(ready, tokens, step_of_batch, cap):
    """A decode replica, event by event: requests (in order of `ready`) join at the first step
    boundary at or after they are ready, up to `cap` at once; a step with b sequences takes
    step_of_batch[b − 1] and gives each one token. Between a join and a completion the batch is
    fixed, so a run of k steps lasts k·T(b) and is taken at once. Returns (the time of each
    request's last token, steps simulated)."""
    from .simulate import MAX_STEPS

    n = len(ready)
    at = [float(x) for x in ready] + [math.inf]
    left = [int(x) for x in tokens]
    T = [float(x) for x in step_of_batch]
    done = [math.nan] * n
    running: list[tuple[int, int]] = []  # heap of (step at which it finishes, request)
    t, step, steps, nxt = 0.0, 0, 0, 0
    waiting: list[int] = []  # FIFO, consumed from `head`
    head = 0
    while nxt < n or head < len(waiting) or running:
        while at[nxt] <= t:
            if left[nxt] <= 0:
                done[nxt] = at[nxt]
            else:
                waiting.append(nxt)
            nxt += 1
        while head < len(waiting) and len(running) < cap:
            i = waiting[head]
            head += 1
            heapq.heappush(running, (step + left[i], i))
        if not running:
            if nxt < n:
                t = max(t, at[nxt])
            continue
        dt = T[len(running) - 1]
        k = running[0][0] - step  # steps to the next completion ...
        if len(running) < cap and head == len(waiting) and at[nxt] < math.inf:  # ... or to the next join
            k = min(k, max(1, math.ceil((at[nxt] - t) / dt)))
        t += k * dt
        step += k
        steps += k
        if steps > MAX_STEPS:
            raise TokenmathError(f"the decode simulation passed {MAX_STEPS:,} steps; shorten the workload")
        while running and running[0][0] <= step:
            done[heapq.heappop(running)[1]] = t
    return np.asarray(done), steps


def _pool_check(runs: _Runs, R: int, slo: Slo) -> PoolRun:
    """One pool at R replicas, run to steady state (the comment above): from FIRST_REQUESTS, the run
    grown ×GROWTH until every p99 is within ±5 %, or an interval lies wholly above its SLO (a clear
    miss), or REQUEST_CAP. Only a clear miss stops early: a tail set by rare congestion (a full batch
    in an aggregated replica) can look met in a few thousand requests and not in 64,000."""
    from .simulate import MAX_STEPS

    n = runs.first_requests()
    while True:
        series, steps = runs(R, n)
        res, verdict = _analyse(runs.pool.role, R, series, runs.measures, slo)
        if res.converged:
            return replace(res, stop="±5 %")
        if verdict == "misses":
            return replace(res, stop="misses")
        grow = min(GROWTH * n, REQUEST_CAP)
        if n >= REQUEST_CAP or steps * grow / n > 0.8 * MAX_STEPS:  # the cap, or the simulator's step bound
            return replace(res, stop="request cap")
        n = grow


def _limits(slo: Slo, what: str) -> tuple[float | None, float | None]:
    return (slo.ttft_p50_s, slo.ttft_p99_s) if what == "ttft" else (slo.tpot_p50_s, slo.tpot_p99_s)


def _analyse(role: str, R: int, series: dict, measures: tuple[str, ...], slo: Slo) -> tuple[PoolRun, str]:
    """Warm-up, tails with their intervals, and the verdict of one run. Returns (the run, "misses"
    when an interval lies wholly above its SLO, "meets" when the run settled and every interval
    lies wholly below, else "open")."""
    n = len(next(iter(series.values())))
    cut, settled = 0, True
    for what in measures:
        x = series[what]
        idx = np.nonzero(~np.isnan(x))[0]
        if not idx.size:  # nothing to measure (every output a single token)
            continue
        w = mser5(x[idx])
        cut = max(cut, int(idx[w.discard]) if w.discard < idx.size else n)
        settled &= w.settled
    tails, ok, meets, clear_miss, converged = {}, np.ones(n - cut, bool), settled, False, settled
    for what in measures:
        x = series[what][cut:]
        valid = ~np.isnan(x)
        v = x[valid]
        q = (percentile_interval(v, 50), percentile_interval(v, 99)) if v.size else (Interval(0.0, 0.0),) * 2
        tails[what] = q
        converged &= q[1].relative_half_width <= REL_HALF_WIDTH
        for limit, iv in zip(_limits(slo, what), q):
            if limit is not None:
                meets &= iv.high <= limit  # at its upper end: met with 97.5 % confidence
                clear_miss |= iv.low > limit
        lim = slo.ttft_limit() if what == "ttft" else slo.tpot_limit()
        ok &= np.where(valid, x <= lim, True)
    run = PoolRun(role, R, n, cut, settled, bool(converged), "", tails.get("ttft"), tails.get("tpot"),
                  float(ok.mean()) if ok.size else 0.0, bool(meets))
    return run, ("misses" if clear_miss else "meets" if meets else "open")


def _size_pool(runs: _Runs, start: int, floor: int, slo: Slo) -> tuple[int, PoolRun, tuple[tuple[int, bool], ...]]:
    """The fewest replicas of a pool that meet its SLOs, every size checked the same way
    (_pool_check). Check the screen's size `start`; step up (×1.15) while it misses, at most
    MAX_REPLICA_GROWTH times; then bisect down between the last size that missed (or floor − 1, the
    size at 100 % load less one) and the first that met. Returns (replicas, their check, every
    (replicas, met) tried, in order). Without a size that meets: the largest tried and its check."""
    tried: dict[int, PoolRun] = {}

    def meets(R: int) -> bool:
        if R not in tried:
            tried[R] = _pool_check(runs, R, slo)
        return tried[R].meets

    order = lambda: tuple((r, tried[r].meets) for r in tried)  # noqa: E731
    lo, hi, R = max(floor, 1) - 1, None, max(start, floor, 1)
    for g in range(MAX_REPLICA_GROWTH + 1):
        if meets(R):
            hi = R
            break
        lo = R
        if g < MAX_REPLICA_GROWTH:
            R = max(R + 1, math.ceil(R * 1.15))
    if hi is None:
        return R, tried[R], order()
    for _ in range(MAX_BISECTION):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi, tried[hi], order()


def _floor_replicas(p: Pool, rate: float) -> int:
    """Replicas at 100 % of the screen's capacity: no steady fleet has fewer."""
    return max(1, math.ceil(rate / p.capacity_requests_per_s * (1 - 1e-12)))


def _pool_signature(o: FleetOption, i: int) -> tuple:
    """What a pool's sizing depends on: the pool (its layout, dtypes, batch, step) and, for a
    prefill pool, the KV transfer that its TTFT carries."""
    p = o.pools[i]
    return (o.mode, p.role, p.system, p.tp, p.ep, p.pp, p.weight_dtype, p.kv_dtype, p.max_batch, p.step_s,
            p.capacity_requests_per_s, o.kv_transfer_s if p.role == "prefill" else None)


def _sized(ctx: dict, o: FleetOption, i: int):
    """A pool's sizing if already done (pools recur across candidates: a prefill pool paired with
    several decode pools is sized once), else None."""
    return ctx["sized"].get(_pool_signature(o, i))


def _verify(ctx: dict, o: FleetOption, slo: Slo) -> FleetOption:
    """The option verified at steady state and sized: each pool searched for its fewest replicas
    that meet the SLOs it decides (aggregated: all of them; prefill: TTFT; decode: TPOT)."""
    kinds = [_AggregatedRuns] if o.mode == "aggregated" else [_PrefillRuns, _DecodeRuns]
    sized, checks, sizing = [], [], []
    for i, (p, kind) in enumerate(zip(o.pools, kinds)):
        sig = _pool_signature(o, i)
        if sig not in ctx["sized"]:
            ctx["sized"][sig] = _size_pool(kind(ctx, o, p, seed=i), p.replicas, _floor_replicas(p, ctx["rate"]), slo)
        R, run, hist = ctx["sized"][sig]
        sized.append(R)
        checks.append(run)
        sizing.append((p.role, hist))
    v = _resize(o, tuple(sized), ctx["rate"], ctx["I"], ctx["O"])
    return replace(v, simulated=_combine(checks, tuple(sizing), ctx["rate"]))


def _combine(runs: list[PoolRun], sizing, rate: float) -> Simulated:
    """The fleet's tails from its pools' checks: TTFT from the pool that decides it, TPOT likewise;
    attainment the product of the pools' shares (one pool: its joint share)."""
    ttft = next(r.ttft for r in runs if r.ttft is not None)
    tpot = next(r.tpot for r in runs if r.tpot is not None)
    att = float(np.prod([r.share_meeting for r in runs]))
    ci = lambda iv: (iv.low, iv.high)  # noqa: E731
    return Simulated(ttft[0].estimate, ttft[1].estimate, tpot[0].estimate, tpot[1].estimate, att, att * rate,
                     sum(r.requests for r in runs), all(r.meets for r in runs), ci(ttft[1]), ci(tpot[1]), ci(ttft[0]),
                     ci(tpot[0]), sum(r.warmup for r in runs), all(r.converged for r in runs), tuple(runs), sizing)


# --------------------------------------------------------------------------------------------
# The answer
# --------------------------------------------------------------------------------------------


def _check(name: str, v, *, positive: bool = True, most: float = math.inf):
    if v is None:
        return
    if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 if positive else v >= 0) and v <= most):
        raise TokenmathError(f"{name} = {v!r}; expected a {'positive' if positive else 'non-negative'} finite number"
                             + (f" up to {most:g}" if math.isfinite(most) else ""))


def flop_lower_bound_chips(model: Model, system: System, rate: float, I: float, O: float) -> float:
    """2·N_active·(I + O)·λ / the chip's highest published FLOP/s (any dtype): no fleet of this
    system serves the rate on fewer chips, whatever its layout or batch."""
    peak = max(system.chip.flops_per_s(c) or 0.0 for c in ("bf16", "fp8", "int8", "fp4"))
    return 2.0 * param_counts(model).active * (I + O) * rate / peak


def fleet(model: Model, systems: list[System], *, request_rate: float | None = None, input_tokens: float | None = None,
          output_tokens: float | None = None, slo: Slo = Slo(), disaggregation: str = "auto",
          prefix_tokens: float = 0.0, prefix_hit_rate: float = 0.0, objective: str = "cost",
          usd_per_chip_hour: float | None = None, engine: str | None = None, trace=None,
          utilisation: float = UTILISATION_DEFAULT, verify: int = VERIFY_DEFAULT, progress=None,
          weight_dtypes="deployable", mtp_draft_tokens: int = 0, mtp_acceptance: float = 0.0,
          prefix_cache_tier: str | None = None, prefix_cache_bytes: float | None = None,
          prefix_count: int | None = None, storage: dict | None = None,
          layouts: dict | None = None, prefill_tokens_per_rank: float = CHUNK_TOKENS) -> FleetPlan:
    """The cheapest fleet (or the fewest chips, or the least energy) that serves `request_rate`
    requests/s of `input_tokens` in and `output_tokens` out under `slo`, verified at steady state in
    simulation and sized down while it still meets the SLOs. A `trace` (workload.Workload) gives the
    rate and the mean lengths instead, and drives the simulation. `weight_dtypes`: "deployable"
    (the checkpoint's, FP8 where the checkpoint is wider, FP4 where the chip has it:
    plan.deployable_weight_dtypes) or a list of dtypes to try on every system, or a dict of lists by system name.

    The search: the screen's candidates (one per system, layout, dtype and mode) are verified in
    order of their cost at 100 % load, which no sizing goes below; it stops when the next one's
    floor is no cheaper than the best verified fleet, or after `verify` candidates.

    `mtp_draft_tokens` k and `mtp_acceptance` a: decode pools verify k drafted tokens a step (MTP or
    speculative decoding; speculative.py), each step a pass over 1 + k tokens yielding
    e = (1 − a^(k+1)) / (1 − a) tokens per sequence; the draft itself is taken as free (an MTP head
    is one layer of ~60). Modelled in decode pools only: with MTP, fleets are disaggregated.
    `prefix_cache_tier` ("hbm", "dram", "ssd") and `prefix_cache_bytes`: where the prefix cache lives
    and its capacity, which limits the hit rate (prefix_tier.py). `layouts`: {system name: [Layout, ...]}
    to search on a system instead of plan.candidate_layouts (wide-EP layouts across scale-up domains are
    searched by default: WIDE_EP). `prefill_tokens_per_rank`: a prefill pass's new tokens per
    attention-DP rank (default CHUNK_TOKENS): a wide-EP prefill replica of many ranks batches that
    many prompts per rank into one pass (DeepSeek profiles 16,384 per GPU)."""
    if disaggregation not in ("auto", "on", "off"):
        raise TokenmathError(f"--disaggregation = {disaggregation!r}; expected 'auto', 'on' or 'off'")
    if objective not in ("cost", "chips", "energy"):
        raise TokenmathError(f"--objective = {objective!r}; expected 'cost', 'chips' or 'energy'")
    if not (isinstance(prefill_tokens_per_rank, (int, float)) and 1 <= prefill_tokens_per_rank <= 1_048_576):
        raise TokenmathError(f"--prefill-tokens-per-rank = {prefill_tokens_per_rank!r}; expected tokens from 1 to 1,048,576")
    stats = {}
    if trace is not None:
        from .workload import stats as trace_stats

        st = trace_stats(trace)
        if st.rate_per_s is None:
            raise TokenmathError(f"the trace {st.name or ''} has every request at one instant: it has no rate; "
                                 "give --request-rate to spread it")
        if request_rate is not None:  # the trace's shape at the asked rate: time compressed or stretched
            from .workload import scale_rate

            _check_rate(request_rate)
            trace = scale_rate(trace, request_rate / st.rate_per_s)
            st = trace_stats(trace)
        stats = {k: v for k, v in st.__dict__.items()}
        # a run of a check needs FIRST_REQUESTS to REQUEST_CAP requests per replica: a shorter trace is
        # replayed end to end, and then the simulation repeats itself (its interval says how steady
        # the replay is, not how well these requests stand for the traffic)
        stats["replayed_to_fill_runs"] = bool(st.requests < FIRST_REQUESTS)
        request_rate = st.rate_per_s
        input_tokens = input_tokens or st.input_tokens_mean
        output_tokens = output_tokens or st.output_tokens_mean
    if request_rate is None or input_tokens is None or output_tokens is None:
        missing = [f for f, v in (("--request-rate", request_rate), ("--input-tokens", input_tokens),
                                  ("--output-tokens", output_tokens)) if v is None]
        raise TokenmathError(f"{' and '.join(missing)} not given: a workload needs --request-rate, --input-tokens and "
                             "--output-tokens, or --trace")
    _check_rate(request_rate)
    _check("--input-tokens", input_tokens, most=1e7)
    _check("--output-tokens", output_tokens, most=1e7)
    for name, v in (("--ttft-p99-s", slo.ttft_p99_s), ("--tpot-p99-s", slo.tpot_p99_s),
                    ("--ttft-p50-s", slo.ttft_p50_s), ("--tpot-p50-s", slo.tpot_p50_s)):
        _check(name, v, most=3600)
    _check("--prefix-tokens", prefix_tokens, positive=False, most=input_tokens - 1)
    _check("--prefix-hit-rate", prefix_hit_rate, positive=False, most=1.0)
    if prefix_hit_rate and not prefix_tokens:
        raise TokenmathError("--prefix-hit-rate needs --prefix-tokens (the shared prefix's length)")
    if not 0 < utilisation < 1:
        raise TokenmathError(f"utilisation = {utilisation!r}; expected between 0 and 1")
    if not 0 <= verify <= 20:
        raise TokenmathError(f"verify = {verify!r}; expected 0 to 20 candidates")
    if not systems:
        raise TokenmathError("no systems to plan on")
    if isinstance(weight_dtypes, dict):
        if not any(weight_dtypes.get(s.name) for s in systems):
            raise TokenmathError("no weight dtype to try on any system given (" + ", ".join(s.name for s in systems) + ")")
    elif weight_dtypes != "deployable":
        weight_dtypes = list(weight_dtypes)
        if not weight_dtypes:
            raise TokenmathError("--weight-dtypes lists no dtype; give one or more, or leave it out")
    if not (isinstance(mtp_draft_tokens, int) and not isinstance(mtp_draft_tokens, bool) and 0 <= mtp_draft_tokens <= 16):
        raise TokenmathError(f"--mtp-draft-tokens = {mtp_draft_tokens!r}; expected a whole number from 0 to 16")
    _check("--mtp-acceptance", mtp_acceptance, positive=False, most=1.0)
    if mtp_draft_tokens and disaggregation == "off":
        raise TokenmathError("MTP is modelled in decode pools of disaggregated fleets; leave out --disaggregation off"
                             " or --mtp-draft-tokens")
    I, O, rate = float(input_tokens), float(output_tokens), float(request_rate)
    cached = float(prefix_tokens) * float(prefix_hit_rate)
    tier_info, fetch = None, None
    if prefix_cache_tier is not None:
        from .prefix_tier import distinct_prefixes, prefix_cache_tier as cache_in_tier, tier_per_chip

        if prefix_cache_bytes is not None:
            _check("--prefix-cache-gb", prefix_cache_bytes, most=1e18)
        if prefix_count is not None and not (isinstance(prefix_count, int) and 1 <= prefix_count <= 1e12):
            raise TokenmathError(f"--prefix-count = {prefix_count!r}; expected a whole number from 1 to 1e12")
        if storage is None and prefix_cache_tier == "ssd":  # the catalog's flash drives
            from .catalog import load_catalog

            storage = load_catalog().storage
        n_prefixes, assumed = distinct_prefixes(trace, prefix_count)
        kw_tier = dict(prefixes=n_prefixes, prefixes_assumed=assumed, storage=storage)
        if prefix_cache_tier != "hbm":  # every prompt's hit is read back from the tier: seconds per prompt per chip
            fetch = {}
            for s in systems:
                t = tier_per_chip(s, prefix_cache_tier, storage)
                fetch[s.name] = float(kv_cache(model, float(prefix_tokens), "bf16").stored_bytes) / t.bytes_per_s
        if prefix_cache_bytes is not None:
            tier_info = cache_in_tier(model, systems[0], prefix_tokens, prefix_hit_rate, prefix_cache_tier,
                                      capacity_bytes=prefix_cache_bytes, holder_chips=None,
                                      hbm_left_bytes_per_chip=None, **kw_tier)
            cached = float(prefix_tokens) * tier_info["hit_rate"]
        elif not (prefix_tokens and prefix_hit_rate):
            raise TokenmathError("--prefix-cache-tier needs --prefix-tokens and --prefix-hit-rate (the prefix and the"
                                 " share of requests that find it with an unlimited cache)")
    mtp = (int(mtp_draft_tokens), float(mtp_acceptance))

    cands: list[FleetOption] = []
    if disaggregation == "off" or (disaggregation == "auto" and not mtp_draft_tokens):
        cands += _aggregated(model, systems, I, O, cached, rate, slo, utilisation, usd_per_chip_hour, engine, True,
                             weight_dtypes, fetch, layouts)
    if disaggregation in ("auto", "on"):
        cands += _disaggregated(model, systems, I, O, cached, rate, slo, utilisation, usd_per_chip_hour, engine,
                                energy=True, by_energy=objective == "energy", weight_dtypes=weight_dtypes, mtp=mtp,
                                fetch=fetch, layouts=layouts, chunk_tokens=prefill_tokens_per_rank)
    from .profiles import choose

    label = choose("calibrated", engine=engine).label + " (+ each system's vendor profile)"
    tried = _dtypes_tried(model, systems, weight_dtypes)
    if not cands:
        raise TokenmathError(_unreachable(model, systems, I, O, cached, slo, usd_per_chip_hour, engine, disaggregation,
                                          weight_dtypes, layouts))

    def key_of(chips: float, usd: float | None, watts: float | None):
        if objective == "energy":
            return (0 if watts is not None else 1, watts or math.inf, chips)
        if objective == "cost" and usd is not None:
            return (0, usd, chips)
        return (1 if objective == "cost" else 0, chips, usd or math.inf)

    def key(o: FleetOption):
        return key_of(o.total_chips, o.usd_per_hour, o.watts)

    ctx = dict(model=model, by_name={s.name: s for s in systems}, rate=rate, I=I, O=O, cached=cached, engine=engine,
               trace=trace, sized={})

    def floor_key(o: FleetOption):
        """The candidate at its pools' verified sizes where known, else at 100 % load (no sizing goes
        below it); inf where a pool is known to miss."""
        reps = []
        for i, p in enumerate(o.pools):
            done = _sized(ctx, o, i)
            if done is not None and not done[1].meets:
                return (math.inf,)
            reps.append(done[0] if done is not None else _floor_replicas(p, rate))
        return key_of(*_resized_totals(o, reps))

    # one candidate per mode, system, layout and dtype: the batch with the lowest floor (the most
    # capacity that passes the screen); then best-first on the floor, which rises as pools are sized:
    # a candidate is verified only while its floor is below the best verified fleet (branch and
    # bound), so no unverified one is cheaper.
    cands.sort(key=lambda o: (floor_key(o), key(o), -min(p.capacity_requests_per_s for p in o.pools)))
    distinct, seen = [], set()
    for o in cands:
        sig = (o.mode,) + tuple((p.system, p.tp, p.ep, p.pp, p.weight_dtype) for p in o.pools)
        if sig not in seen:
            seen.add(sig)
            distinct.append(o)
    heap = [(floor_key(o), i) for i, o in enumerate(distinct)]
    heapq.heapify(heap)
    verified: list[FleetOption] = []
    best, simulated = None, 0
    stopped = "--verify is 0: nothing was simulated" if not verify else "every candidate verified or known to miss"
    while heap and verify:
        fk, i = heapq.heappop(heap)
        o = distinct[i]
        now = floor_key(o)
        if now != fk:  # a pool of it was sized since: its floor rose
            heapq.heappush(heap, (now, i))
            continue
        if now == (math.inf,):
            continue  # a pool of it misses the SLOs at every size tried
        if best is not None and now >= key(best):
            stopped = ("no unverified candidate can be cheaper: the next one's floor (its cost at 100 % load) is"
                       " no lower than the best verified fleet's")
            break
        new = sum(_sized(ctx, o, j) is None for j in range(len(o.pools)))
        if new and simulated >= verify:
            stopped = (f"the budget of {verify} candidates simulated (--verify) was reached; an unverified candidate"
                       " might be cheaper")
            break
        if progress and new:
            progress(simulated, max(verify, 1), f"verifying {o.mode} on {', '.join(p.system for p in o.pools)}")
        simulated += bool(new)
        v = _verify(ctx, o, slo)
        verified.append(v)
        if v.simulated.meets_slo and (best is None or key(v) < key(best)):
            best = v
    if progress:
        progress(len(verified), len(verified), "done")
    if verify and best is None:
        raise TokenmathError(_missed(model, verified, slo))
    if best is None:  # verify = 0: the screen's cheapest, unverified
        best = distinct[0]
    verified.sort(key=lambda o: (0 if o.simulated.meets_slo else 1, key(o)))
    reason = _mode_reason(cands, verified, best, disaggregation, key)
    err = {}
    if best.simulated is not None:
        err = {"ttft_p50": best.simulated.ttft_p50_s / best.analytic_ttft_s - 1,
               "tpot_p50": best.simulated.tpot_p50_s / best.analytic_tpot_s - 1}
    agg = [o for o in cands if o.mode == "aggregated" and o.usd_per_mtok_output is not None]
    frontier = _frontier(agg)
    by_name = ctx["by_name"]
    lb = sum(flop_lower_bound_chips(model, by_name[p.system], rate, I, O)
             * (p.replicas * p.billed_chips_per_replica / best.total_chips) for p in best.pools)
    pc = None if not cached else _prefix_cache(model, by_name[best.pools[0].system], prefix_tokens, prefix_hit_rate,
                                               rate, trace, prefix_count)
    search = {"screened": len(cands), "distinct": len(distinct), "verified": len(verified), "simulated": simulated,
              "pools_sized": len(ctx["sized"]), "stopped": stopped}
    if mtp_draft_tokens and disaggregation == "auto":
        reason = f"MTP is modelled in decode pools, so only disaggregated fleets were built; {reason}"
    if prefix_cache_tier is not None and tier_info is None:  # capacity from the chips that serve prompts
        holder = best.pools[0]
        hs = by_name[holder.system]
        left = None
        if prefix_cache_tier == "hbm":
            from .layout import layout_memory

            ctx_tokens = I if holder.role == "prefill" else I + O / 2.0
            mem = layout_memory(model, hs, holder.layout, float(holder.max_batch),
                                ctx_tokens, dtypes=Dtypes.for_point(model, holder.weight_dtype, holder.kv_dtype))
            # what is left of the serving engine's memory (layout.serving_hbm_bytes) beside the pool's batch
            left = float(max(0.0, np.min(np.asarray(mem.serving_bytes_per_chip) - mem.total_bytes_per_chip)))
        tier_info = cache_in_tier(model, hs, prefix_tokens, prefix_hit_rate, prefix_cache_tier, capacity_bytes=None,
                                  holder_chips=holder.replicas * holder.chips_per_replica, hbm_left_bytes_per_chip=left,
                                  **kw_tier)
        if tier_info["hit_rate"] < prefix_hit_rate * (1 - 1e-9):  # the cache binds: plan again at the hit rate it allows
            again = fleet(model, systems, request_rate=rate, input_tokens=I, output_tokens=O, slo=slo,
                          disaggregation=disaggregation, prefix_tokens=prefix_tokens, prefix_hit_rate=prefix_hit_rate,
                          objective=objective, usd_per_chip_hour=usd_per_chip_hour, engine=engine, trace=trace,
                          utilisation=utilisation, verify=verify, progress=progress, weight_dtypes=weight_dtypes,
                          mtp_draft_tokens=mtp_draft_tokens, mtp_acceptance=mtp_acceptance,
                          prefix_cache_tier=prefix_cache_tier, prefix_cache_bytes=tier_info["capacity_bytes"],
                          prefix_count=prefix_count, storage=storage, layouts=layouts)
            again.prefix_cache["cache_tier"]["capacity_from"] = (
                f"the first plan's {holder.role} pool ({holder.replicas} × {holder.chips_per_replica} {hs.name}),"
                " planned again at the hit rate it allows")
            return again
        tier_info["capacity_from"] = f"the {holder.role} pool's chips ({holder.replicas} × {holder.chips_per_replica} {hs.name})"
    if tier_info is not None:
        pc = dict(pc or {}, cache_tier=tier_info)
    features = {"mtp": None if not mtp_draft_tokens else {
        "draft_tokens": int(mtp_draft_tokens), "acceptance": float(mtp_acceptance),
        "tokens_per_step": next((p.mtp_tokens_per_step for p in best.pools if p.role == "decode"), None),
        "note": "decode pools verify k drafts a step (a pass over 1 + k tokens, speculative.py); the draft head is"
                " taken as free; the simulation takes each step's yield at its mean"}}
    return FleetPlan(model.name, rate, I, O, cached, slo, label, best, verified, frontier, reason, lb, err, stats, pc,
                     {"asked": weight_dtypes if isinstance(weight_dtypes, (str, dict)) else list(weight_dtypes), "tried": tried},
                     search, features, _wide_ep_reason(best, cands, by_name, key))


def _check_rate(rate) -> None:
    _check("--request-rate", rate, most=MAX_RATE)
    if rate < MIN_RATE:
        raise TokenmathError(f"--request-rate = {rate:g} requests/s; expected at least {MIN_RATE:g} (one request every"
                             f" {1 / MIN_RATE / 3600:.1f} h): below that a fleet is one replica serving each request alone")


def dtypes_for(model, system, weight_dtypes) -> list:
    """The weight dtypes to try on `system`: "deployable" (plan.deployable_weight_dtypes), one list
    for every system, or a dict of lists by system name (e.g. only the dtypes an engine can launch)."""
    from .plan import deployable_weight_dtypes

    if isinstance(weight_dtypes, str) and weight_dtypes == "deployable":
        return deployable_weight_dtypes(model, system)
    if isinstance(weight_dtypes, dict):
        return list(weight_dtypes.get(system.name, []))
    return list(weight_dtypes)


def _dtypes_tried(model, systems, weight_dtypes) -> dict[str, list[str]]:
    """The weight dtypes tried on each system, by name (None = the checkpoint's)."""
    return {s.name: [wd or model.weight_dtype for wd in dtypes_for(model, s, weight_dtypes)] for s in systems}


def _prefix_cache(model, system, prefix_tokens: float, hit_rate: float, rate: float, trace,
                  prefix_count: int | None = None) -> dict:
    """The shared prefixes' KV: how many there are (the trace's distinct prefix ids, else one
    prefix shared by every request — a labelled assumption), how often each is reused, the memory
    tier whose drain time fits that interval (prices.cache_costs, the lecture's rule), and what
    holding them there costs per hour, against recomputing them."""
    from .prices import cache_costs

    n, assumed = 1, True
    if trace is not None and trace.prefix_id is not None:
        ids = trace.prefix_id[trace.prefix_id >= 0]
        if ids.size:
            n, assumed = int(np.unique(ids).size), False
    if assumed and prefix_count is not None:
        n, assumed = int(prefix_count), False
    interval = n / (rate * hit_rate)  # seconds between reuses of one prefix
    cc = cache_costs(model, system, prefix_tokens, interval)
    t = cc.best_tier
    per_hour = None
    if t != "rematerialize" and cc.tiers[t].hold_usd is not None:
        per_hour = n * cc.tiers[t].hold_usd / max(interval, 1e-12) * 3600.0
    elif t == "rematerialize":
        per_hour = rate * hit_rate * cc.rematerialize_usd * 3600.0
    return {"prefixes": n, "prefixes_assumed": assumed, "prefix_tokens": float(prefix_tokens),
            "kv_bytes": n * cc.kv_bytes, "reuse_interval_s": interval, "tier": t, "usd_per_hour": per_hour,
            "note": ("one prefix shared by every request (no trace prefix ids): an assumption" if assumed
                     else f"{n:,} distinct prefixes" + (" (--prefix-count)" if prefix_count is not None
                                                        and not (trace is not None and trace.prefix_id is not None)
                                                        else " in the trace"))}


def _ep_chips(p: Pool) -> int:
    """The chips one EP group spans: a pipeline stage (max(TP, EP), parallelism.Layout.stage_chips); PP
    stages beyond it cross domains by pipeline transfers, not by the all-to-all."""
    return max(p.tp, p.ep)


def _spans_domains(p: Pool, by_name: dict) -> bool:
    return p.ep > 1 and _ep_chips(p) > by_name[p.system].scaleup_chips


def _wide_ep_reason(best, cands, by_name, key) -> str:
    """Why the best fleet runs expert parallelism across scale-up domains: which pools do, and the
    cheapest screened fleet that keeps every EP group inside one domain, at the screen's load."""
    wide = [p for p in best.pools if _spans_domains(p, by_name)] if best is not None else []
    if not wide:
        return ""
    what = "; ".join(f"{p.role} EP{p.ep} over {_ep_chips(p) // by_name[p.system].scaleup_chips} scale-up domains"
                     f" of {by_name[p.system].scaleup_chips} ({p.system}"
                     + (f", +{p.redundant_experts} redundant experts" if p.redundant_experts else "") + ")"
                     for p in wide)
    why = ("each chip holds 1/EP of the routed experts, so a replica batches more sequences per expert read, and"
           " the dispatch and combine cross the scale-out network")
    inside = [o for o in cands if not any(_spans_domains(p, by_name) for p in o.pools)]
    if not inside:
        return f"wide EP: {what} — {why}; no fleet with each EP group inside one domain passes the analytic screen"
    alt = min(inside, key=key)
    if best.usd_per_hour is not None and alt.usd_per_hour is not None:
        unit, b, a = "$/h", best.usd_per_hour, alt.usd_per_hour
    else:
        unit, b, a = "chips", best.total_chips, alt.total_chips
    return (f"wide EP: {what} — {why}; the cheapest fleet with each EP group inside one domain screens at {sig(a, 4)} {unit}"
            f" (analytic, {UTILISATION_DEFAULT:.0%} load, before verification), this one is verified at {sig(b, 4)} {unit}")


def _mode_reason(cands, verified, best, disaggregation, key) -> str:
    """What the screen thought of the two modes and what verification decided."""
    if disaggregation != "auto":
        return f"--disaggregation {disaggregation}"
    agg = [o for o in cands if o.mode == "aggregated"]
    dis = [o for o in cands if o.mode == "disaggregated"]
    if not agg:
        return "only disaggregated fleets pass the analytic screen"
    if not dis:
        return "no disaggregated fleet passes the analytic screen"
    a, d = min(agg, key=key), min(dis, key=key)
    energy = a.watts is not None and d.watts is not None and key(a)[1] == a.watts
    if energy:
        what, val = "kW at the facility (× PUE)", lambda o: o.watts / 1e3  # noqa: E731
    elif a.usd_per_hour is not None and d.usd_per_hour is not None:
        what, val = "$/h", lambda o: o.usd_per_hour  # noqa: E731
    else:
        what, val = "chips", lambda o: o.total_chips  # noqa: E731
    if math.isclose(val(a), val(d), rel_tol=1e-9):
        screen = "aggregated and disaggregated cost the same in the analytic screen"
    else:
        better = "uses less energy" if energy else "is cheaper"
        screen = f"{'disaggregated' if key(d) < key(a) else 'aggregated'} {better} in the analytic screen"
    screen += f" at {UTILISATION_DEFAULT:.0%} load ({what}: aggregated {sig(val(a), 4)}, disaggregated {sig(val(d), 4)})"
    if best is None or best.simulated is None:
        return f"{screen}; no candidate was verified"
    parts = []
    for mode in ("aggregated", "disaggregated"):
        tried = [o for o in verified if o.mode == mode]
        met = [o for o in tried if o.simulated.meets_slo]
        if met:
            parts.append(f"{mode} {sig(val(min(met, key=key)), 4)}")
        elif tried:
            parts.append(f"{mode}: {len(tried)} verified, none meets the SLOs")
        else:
            parts.append(f"{mode}: not verified (none could beat the best even at 100 % load)")
    return f"{screen}; verified at steady state and sized down: {'; '.join(parts)}; the answer is {best.mode}"


def _frontier(opts: list[FleetOption]) -> list[dict]:
    if not opts:
        return []
    user = np.array([o.tokens_per_s_per_user for o in opts])
    cost = np.array([o.usd_per_mtok_output for o in opts])
    order = np.lexsort((cost, -user))
    best, out = math.inf, []
    for i in order:
        if cost[i] < best:
            best = cost[i]
            p = opts[i].pools[0]
            out.append({"system": p.system, "tp": p.tp, "ep": p.ep, "pp": p.pp, "replicas": p.replicas,
                        "max_batch": p.max_batch, "tokens_per_s_per_user": float(user[i]),
                        "usd_per_mtok_output": float(cost[i])})
    return out


def _missed(model, verified: list[FleetOption], slo: Slo) -> str:
    """One sentence when every verified candidate misses: the closest one's tails and what binds."""
    def excess(o):
        s = o.simulated
        return max(s.ttft_p99_ci_s[1] / (slo.ttft_p99_s or math.inf), s.tpot_p99_ci_s[1] / (slo.tpot_p99_s or math.inf),
                   s.ttft_p50_ci_s[1] / (slo.ttft_p50_s or math.inf), s.tpot_p50_ci_s[1] / (slo.tpot_p50_s or math.inf))

    o = min(verified, key=excess)
    s = o.simulated
    ttft_bad = any(not r.meets for r in s.runs if r.ttft is not None and r.tpot is None) or (
        (slo.ttft_p99_s and s.ttft_p99_ci_s[1] > slo.ttft_p99_s) or (slo.ttft_p50_s and s.ttft_p50_ci_s[1] > slo.ttft_p50_s))
    binds = ("TTFT binds: the prefill pass itself plus about one pass of queueing" if ttft_bad
             else "TPOT binds: the decode step's weight and KV reads at the batch that fills the fleet")
    unsettled = "" if all(r.settled for r in s.runs) else "; its queue had not settled within the request cap"
    pools = " + ".join(f"{p.replicas} × {p.system} TP{p.tp} EP{p.ep} PP{p.pp}" for p in o.pools)
    return (f"no fleet of {model.name} meets the SLOs at steady state in simulation; the closest, {o.mode} {pools}, "
            f"reaches TTFT p99 {s.ttft_p99_s:.3g} s and TPOT p99 {s.tpot_p99_s * 1e3:.3g} ms (95 % upper ends"
            f" {s.ttft_p99_ci_s[1]:.3g} s and {s.tpot_p99_ci_s[1] * 1e3:.3g} ms) with up to {MAX_REPLICA_GROWTH} rounds"
            f" of 15 % more replicas ({binds}{unsettled}); relax the SLOs or give more systems")


def _unreachable(model, systems, I, O, cached, slo, usd_per_chip_hour, engine, disaggregation,
                 weight_dtypes="deployable", layouts=None) -> str:
    """One sentence: the best TTFT and TPOT any candidate reaches, and which SLO binds."""
    best_tpot, best_ttft = math.inf, math.inf
    for s in systems:
        cols, _, _ = _points(model, s, layouts, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                                 engine=engine, cached_input_tokens=cached,
                                 weight_dtypes=dtypes_for(model, s, weight_dtypes))
        if len(cols["batch"]):
            best_tpot = min(best_tpot, float(cols["step_s"].min()))
            best_ttft = min(best_ttft, float(cols["ttft_s"].min()))
    if not math.isfinite(best_tpot):
        dts = "" if isinstance(weight_dtypes, str) else (
            " with the weight dtypes tried (" + "; ".join(f"{k} {', '.join(v) or 'none'}" for k, v in
                                                   _dtypes_tried(model, systems, weight_dtypes).items()) + ")")
        return f"{model.name} fits on none of the systems given ({', '.join(s.name for s in systems)}){dts}"
    binds = []
    if best_tpot > slo.tpot_limit():
        binds.append(f"TPOT: the fastest is {best_tpot * 1e3:,.1f} ms per token (the decode step's weight and KV reads), "
                     f"the SLO {slo.tpot_limit() * 1e3:,.1f} ms")
    if best_ttft > slo.ttft_limit():
        binds.append(f"TTFT: the fastest prefill of one prompt is {best_ttft:,.3f} s (compute), the SLO {slo.ttft_limit():,.3f} s")
    what = "; ".join(binds) or "TTFT and TPOT cannot both be met by one layout"
    return f"no fleet of {model.name} meets the SLOs ({disaggregation} disaggregation): {what}"




# --------------------------------------------------------------------------------------------
# A fleet over a day: a rate that varies
# --------------------------------------------------------------------------------------------
#
# The replica is verified once, at the curve's peak (fleet() at the peak rate: each pool simulated
# at steady state and sized down while it meets its SLOs). Its verified capacity per replica is
# then c = λ_peak / R_peak for each pool. Each interval is sized by R(t) = ⌈λ(t) / c⌉ (at least
# MIN_REPLICAS): every replica then sees Poisson arrivals at λ(t)/R(t) ≤ c, the per-replica load
# the simulation verified, so the SLOs hold in every interval without simulating it again (a
# Poisson stream split at random is Poisson at each replica). Replicas started between intervals
# first load their weights: weights per chip / the load bandwidth, charged as chip-time.

MIN_REPLICAS = 1  # per pool, in every interval: a service never scales to zero here


@dataclass(frozen=True)
class DayInterval:
    start_s: float
    duration_s: float
    requests_per_s: float
    replicas: tuple[int, ...]  # per pool, in the order of FleetDay.pools
    chips: float  # serving (billed) chips
    nodes: int  # scale-up domains (an HGX node of 8 GPUs, an NVL72 rack of 72) the replicas occupy
    started: tuple[int, ...]  # replicas started at the interval's start, per pool
    warmup_chip_s: float  # chip-seconds spent loading the started replicas' weights
    usd: float | None  # serving + warm-up in this interval


@dataclass(frozen=True)
class FleetDay:
    """A fleet over a rate curve: the replica verified at the peak, then every interval sized by
    rate / verified capacity per replica, with the warm-up of replicas started between intervals."""

    model: str
    curve: str
    plan: FleetPlan  # the fleet verified at the curve's peak rate
    pools: tuple[Pool, ...]  # the peak fleet's pools (layouts, chips per replica)
    capacity_requests_per_s: tuple[float, ...]  # verified, per replica of each pool: λ_peak / R_peak
    load_bytes_per_s: tuple[float, ...]  # per chip, of each pool (weights load bandwidth)
    load_s: tuple[float, ...]  # seconds to load a replica's weights, per pool
    intervals: tuple[DayInterval, ...]
    span_s: float
    chips_average: float  # serving + warm-up chip-time over the span
    chips_peak: float
    nodes_average: float
    nodes_peak: int
    serving_chips_average: float
    usd_per_day: float | None  # the span's cost scaled to 24 h (serving + warm-up)
    warmup_usd_per_day: float | None
    warmup_chip_s_per_day: float
    requests_per_day: float
    notes: tuple[str, ...] = ()
    node_chips: tuple[int, ...] = ()  # chips per node (scale-up domain) of each pool's system
    tokens_per_s_per_node_at_peak: tuple[float, ...] = ()  # prefill: input tokens (hits included); else output


def load_bytes_per_s_default(system: System) -> float:
    """The weights' load bandwidth per chip when none is given: the chip's scale-out NIC at line rate
    (the catalog's scaleout_bytes_per_s), weights streamed from a remote store — the fastest they can
    reach the node, so the warm-up it gives is a floor (engines also start up: give a lower
    bandwidth to include it)."""
    if not system.scaleout_bytes_per_s:
        raise TokenmathError(f"{system.name} has no published scale-out bandwidth to load weights over; give"
                             " --load-gb-per-s")
    return float(system.scaleout_bytes_per_s)


def fleet_day(model: Model, systems: list[System], curve, *, input_tokens: float, output_tokens: float,
              slo: Slo = Slo(), load_bytes_per_s: float | None = None, min_replicas: int = MIN_REPLICAS,
              **fleet_kw) -> FleetDay:
    """The fleet over a rate curve (ratecurve.RateCurve): fleet() verified at the curve's peak rate,
    then each interval sized by its rate / the verified capacity per replica (the comment above),
    replicas started between intervals charged their weight-load time as chip-time. The curve is one
    period of a cycle: the first interval starts from the last one's replicas. `load_bytes_per_s`:
    per chip (None: load_bytes_per_s_default of each pool's system). Other keywords go to fleet()."""
    from .layout import layout_memory

    if "request_rate" in fleet_kw or "trace" in fleet_kw:
        raise TokenmathError("a rate curve gives the rate: leave out --request-rate and --trace")
    if load_bytes_per_s is not None:
        _check("--load-gb-per-s", load_bytes_per_s, most=1e13)
    if not (isinstance(min_replicas, int) and 0 <= min_replicas <= 1000):
        raise TokenmathError(f"min_replicas = {min_replicas!r}; expected a whole number from 0 to 1,000")
    lam = np.asarray(curve.requests_per_s, float)
    dur = np.asarray(curve.duration_s, float)
    peak = float(lam.max())
    plan = fleet(model, systems, request_rate=peak, input_tokens=input_tokens, output_tokens=output_tokens, slo=slo,
                 **fleet_kw)
    best = plan.best
    by_name = {s.name: s for s in systems}
    pools = best.pools
    cap = tuple(peak / p.replicas for p in pools)
    # replicas per interval and pool: ⌈λ(t)/c⌉, never more than the verified peak size
    R = np.stack([np.minimum(np.maximum(np.ceil(lam / c * (1 - 1e-12)), min_replicas), p.replicas)
                  for p, c in zip(pools, cap)], axis=1).astype(int)
    started = np.maximum(R - np.roll(R, 1, axis=0), 0)  # the curve repeats: the first follows the last
    bw, load = [], []
    for p in pools:
        s = by_name[p.system]
        b = float(load_bytes_per_s) if load_bytes_per_s is not None else load_bytes_per_s_default(s)
        mem = layout_memory(model, s, p.layout, 1.0, float(input_tokens),
                            dtypes=Dtypes.for_point(model, p.weight_dtype, p.kv_dtype))
        bw.append(b)
        load.append(float(np.max(mem.weights_bytes_per_chip)) / b)
    billed = np.array([p.billed_chips_per_replica for p in pools])
    chips = R @ billed
    warm = started @ (billed * np.array(load))
    dom = np.array([by_name[p.system].scaleup_chips for p in pools], float)
    per_rep = np.array([p.chips_per_replica for p in pools], float)
    nodes = np.ceil(R * per_rep / dom * (1 - 1e-12)).sum(axis=1).astype(int)
    prices = [None if p.usd_per_hour is None else p.usd_per_hour / p.replicas / p.billed_chips_per_replica
              for p in pools]  # $ per chip-hour of each pool
    priced = all(x is not None for x in prices)
    usd = None
    if priced:
        per_chip_s = np.array(prices) / 3600.0
        usd = (R * billed * dur[:, None]) @ per_chip_s + started @ (billed * np.array(load) * per_chip_s)
        warm_usd = float(started.sum(axis=0) @ (billed * np.array(load) * per_chip_s))
    span = float(dur.sum())
    day = 86_400.0 / span
    chip_s = float(chips @ dur) + float(warm.sum())
    iv = tuple(DayInterval(float(t0), float(d), float(r), tuple(int(x) for x in Ri), float(c), int(n),
                           tuple(int(x) for x in st), float(w), None if usd is None else float(u))
               for t0, d, r, Ri, c, n, st, w, u in zip(curve.time_s, dur, lam, R, chips, nodes, started, warm,
                                                       usd if usd is not None else [None] * len(lam)))
    notes = (f"each pool verified once, at the peak rate {sig(peak, 4)} requests/s (simulated at steady state and sized"
             " down); every interval sized by its rate / the verified capacity per replica, so each replica's load"
             " never passes the verified one",
             "replicas started between intervals are charged their weight-load time (weights per chip / the load"
             " bandwidth) as chip-time; stopping is free; the curve repeats (the first interval follows the last)")
    if abs(span - 86_400.0) > 1e-6:
        notes += (f"the curve spans {sig(span / 3600, 4)} h: per-day figures are its figures × 24 h / span",)
    return FleetDay(model.name, curve.name, plan, pools, cap, tuple(bw), tuple(load), iv, span,
                    chip_s / span, float(chips.max()), float(nodes @ dur / span), int(nodes.max()),
                    float(chips @ dur / span), None if usd is None else float(usd.sum()) * day,
                    None if usd is None else warm_usd * day, float(warm.sum()) * day,
                    float(lam @ dur) * day, notes, tuple(int(x) for x in dom),
                    tuple((input_tokens if p.role == "prefill" else output_tokens) * peak
                          / (p.replicas * p.chips_per_replica / d_) for p, d_ in zip(pools, dom)))


__all__ = ["Slo", "Pool", "PoolRun", "Simulated", "FleetOption", "FleetPlan", "fleet", "kv_transfer_s",
           "fleet_day", "FleetDay", "DayInterval", "load_bytes_per_s_default", "MIN_REPLICAS",
           "flop_lower_bound_chips", "UTILISATION_DEFAULT", "REL_HALF_WIDTH", "REQUEST_CAP", "FIRST_REQUESTS", "MIN_RATE",
           "CONFIDENCE"]
