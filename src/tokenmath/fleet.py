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

ρ = UTILISATION_DEFAULT (0.85) keeps queues finite. Then the best few candidates go through a
simulation under the workload (Poisson at the rate, or the trace): p50/p99 TTFT and TPOT, the share
of requests meeting every SLO, goodput. The answer is the cheapest fleet that meets its SLOs in
simulation. Replicas are added until it does, up to MAX_REPLICA_GROWTH. The analytic screen's
error against the simulation is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .layout import layout_memory
from .parallelism import HOP_LATENCY_S_DEFAULT, Layout, check_layout
from .params import param_counts
from .specs import Dtypes, Model, System

# Load a pool is planned to: capacity × ρ. Queueing delay grows as 1/(1 − ρ); 0.85 is a common
# planning target for latency-bound services, and the simulation then checks the tails.
UTILISATION_DEFAULT = 0.85
VERIFY_DEFAULT = 3  # candidates verified by simulation
MAX_REPLICA_GROWTH = 6  # times replicas are raised (×1.15 each) when a simulation misses an SLO
SIM_REQUESTS = 1500  # requests simulated per pool replica (the tails' sample); bounded by the trace
MAX_RATE = 1e7  # requests per second
CHUNK_TOKENS = 8192  # the prefill token budget of one pass (stepmodel.CHUNK_TOKENS_DEFAULT)
# The screen keeps a prefill pass (or a lone prompt's TTFT) under this share of the TTFT SLO: a
# request may wait about one pass in the queue before its own, so a pass near the SLO misses its p99.
TTFT_SCREEN_SHARE = 0.5


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
    watts_per_replica: float | None = None  # at the wall, busy at its analytic step (energy.py)


@dataclass(frozen=True)
class Simulated:
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    slo_attainment: float  # share of requests meeting every SLO
    goodput_requests_per_s: float  # the fleet's requests/s meeting every SLO
    requests: int  # simulated per replica
    meets_slo: bool


@dataclass(frozen=True)
class FleetOption:
    mode: str  # "aggregated" | "disaggregated"
    pools: tuple[Pool, ...]
    total_chips: float
    usd_per_hour: float | None
    usd_per_mtok: float | None  # $ per million output tokens
    analytic_ttft_s: float
    analytic_tpot_s: float
    kv_transfer_s: float | None
    tokens_per_s_per_user: float
    simulated: Simulated | None = None
    watts: float | None = None  # every replica of every pool at the wall, busy (energy.py)
    joules_per_token: float | None = None  # watts / (rate · O): per output token, prefill included

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


# --------------------------------------------------------------------------------------------
# Candidates (analytic)
# --------------------------------------------------------------------------------------------


def _price(system: System, usd_per_chip_hour: float | None) -> float | None:
    return system.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour


def _aggregated(model, systems, I, O, cached, rate, slo, rho, usd_per_chip_hour, engine, energy=False) -> list[FleetOption]:
    from .plan import plan_system

    out = []
    for s in systems:
        cols, _, _ = plan_system(model, s, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                                 engine=engine, cached_input_tokens=cached)
        if not len(cols["batch"]):
            continue
        ok = (cols["step_s"] <= slo.tpot_limit()) & (cols["ttft_s"] <= TTFT_SCREEN_SHARE * slo.ttft_limit())
        price = _price(s, usd_per_chip_hour)
        rows = np.nonzero(ok)[0]
        watts = _pool_watts(model, s, cols, rows, I, O, cached) if energy else [None] * len(rows)
        for i, w in zip(rows, watts):
            billed = float(cols["billed_chips"][i])
            cap = float(cols["tokens_per_s_per_chip"][i]) * billed / O
            R = max(1, math.ceil(rate / (rho * cap)))
            pool = Pool("both", s.name, R, int(cols["chips"][i]), billed, int(cols["tp"][i]), int(cols["ep"][i]),
                        int(cols["pp"][i]), R, int(cols["batch"][i]), str(cols["weight_dtype"][i]),
                        str(cols["kv_dtype"][i]), cap, float(cols["step_s"][i]),
                        None if price is None else R * billed * price, w)
            out.append(_option("aggregated", (pool,), rate, O, float(cols["ttft_s"][i]), float(cols["step_s"][i]), None))
    return out


def _option(mode, pools, rate, O, ttft, tpot, kv_s) -> FleetOption:
    chips = sum(p.replicas * p.billed_chips_per_replica for p in pools)
    usd = None if any(p.usd_per_hour is None for p in pools) else sum(p.usd_per_hour for p in pools)
    per_mtok = None if usd is None else usd / 3600.0 / (rate * O) * 1e6
    w = None if any(p.watts_per_replica is None for p in pools) else sum(p.replicas * p.watts_per_replica for p in pools)
    return FleetOption(mode, tuple(pools), chips, usd, per_mtok, ttft, tpot, kv_s, 1.0 / tpot, watts=w,
                       joules_per_token=None if w is None else w / (rate * O))


def _pool_watts(model, system, cols, rows, I, O, cached=None):
    """Watts per replica of planner rows (energy.plan_energy), NaN -> None; `cached` given: the rows
    are aggregated replicas whose steps also carry prompt chunks."""
    from .energy import plan_energy

    w, _, _ = plan_energy(model, {system.name: system}, cols, rows, I, O, prompt_cached=cached)
    return [None if np.isnan(x) else float(x) for x in w]


def _prefill_watts(model, s, lay, per_pass, cached, Ip, dt, t_pass):
    """Watts of a prefill replica running passes of each size (its roofline terms over the pass)."""
    from .energy import maybe_energy_of
    from .roofline import step_time

    st = step_time(model, s, np.asarray(per_pass, float), float(cached) + Ip / 2, float(Ip), chips=lay.replica_chips,
                   dtypes=dt)
    e = maybe_energy_of(st, s, step_s=t_pass)
    return [None] * len(per_pass) if e is None else [float(x) for x in np.atleast_1d(e.watts)]


def _prefill_pools(model, s, I, cached, rate, slo, rho, usd_per_chip_hour, engine, energy=False) -> list[tuple[Pool, float]]:
    """(pool, pass time) for each layout and prompts-per-pass that fits, on one system."""
    from .plan import candidate_layouts, deployable_weight_dtypes
    from .profiles import choose
    from .stepmodel import layout_terms, op_step

    prof = choose("calibrated", engine=engine, system=s)
    Ip = I - cached
    per_pass = np.unique(np.clip(2 ** np.arange(0, 6), 1, max(1, int(CHUNK_TOKENS // Ip))))
    price = _price(s, usd_per_chip_hour)
    out = []
    for wd in deployable_weight_dtypes(model, s):
        dt = Dtypes(weight=wd)
        lays = []
        for lay in candidate_layouts(model, s):
            try:
                check_layout(model, s, lay)
                if lay.pp > 1 or not layout_memory(model, s, lay, float(per_pass[-1]), I, dtypes=dt).fits:
                    continue  # a prefill pool gains nothing from pipeline stages in flight one prompt deep
                layout_terms(model, s, lay, prof.kernels, prof.engine, HOP_LATENCY_S_DEFAULT)
                lays.append(lay)
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
        weight = dt.weight or model.weight_dtype
        for i, lay in enumerate(lays):
            pw = _prefill_watts(model, s, lay, per_pass, cached, Ip, dt, t[i]) if energy else [None] * len(per_pass)
            for j, b in enumerate(per_pass):
                if t[i, j] > TTFT_SCREEN_SHARE * slo.ttft_limit():
                    continue
                billed = float(op.billed_chips[i])
                cap = float(b / t[i, j])
                R = max(1, math.ceil(rate / (rho * cap)))
                out.append((Pool("prefill", s.name, R, lay.replica_chips, billed, lay.tp, lay.ep, lay.pp, R, int(b),
                                 weight, "bf16", cap, float(t[i, j]), None if price is None else R * billed * price,
                                 pw[j]), float(t[i, j])))
    return out


def _decode_pools(model, s, I, O, rate, slo, rho, usd_per_chip_hour, engine, energy=False) -> list[Pool]:
    from .plan import plan_system

    cols, _, _ = plan_system(model, s, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                             engine=engine, decode_only=True)
    price = _price(s, usd_per_chip_hour)
    out = []
    rows = np.nonzero(cols["step_s"] <= slo.tpot_limit())[0] if len(cols["batch"]) else np.array([], int)
    watts = dict(zip(rows, _pool_watts(model, s, cols, rows, I, O) if energy else [None] * len(rows)))
    for i in rows:
        billed = float(cols["billed_chips"][i])
        cap = float(cols["tokens_per_s_per_chip"][i]) * billed / O
        R = max(1, math.ceil(rate / (rho * cap)))
        out.append(Pool("decode", s.name, R, int(cols["chips"][i]), billed, int(cols["tp"][i]), int(cols["ep"][i]),
                        int(cols["pp"][i]), R, int(cols["batch"][i]), str(cols["weight_dtype"][i]),
                        str(cols["kv_dtype"][i]), cap, float(cols["step_s"][i]), None if price is None else R * billed * price,
                        watts[i]))
    return out


def kv_transfer_s(model: Model, prefill: System, decode: System, input_tokens: float, *, prefill_chips: int,
                  decode_chips: int, kv_dtype: str = "bf16") -> float | None:
    """Seconds to move one prompt's KV from a prefill replica to a decode replica: over the
    scale-up link when both replicas fit one domain of the same system, else over the scale-out
    NIC; every chip sends its share in parallel; plus one hop. None when no link is published."""
    kv = float(kv_cache(model, input_tokens, kv_dtype).stored_bytes)
    same_domain = prefill.name == decode.name and prefill_chips + decode_chips <= prefill.scaleup_chips
    bw = prefill.scaleup_bytes_per_s if same_domain else min(
        x for x in (prefill.scaleout_bytes_per_s, decode.scaleout_bytes_per_s, math.inf) if x)
    if not bw or not math.isfinite(bw):
        return None
    return kv / (bw * min(prefill_chips, decode_chips)) + (0.0 if same_domain else HOP_LATENCY_S_DEFAULT)


def _disaggregated(model, systems, I, O, cached, rate, slo, rho, usd_per_chip_hour, engine, keep=4,
                   energy=False, by_energy=False) -> list[FleetOption]:
    def cost(p: Pool):
        if by_energy:
            return p.replicas * p.watts_per_replica if p.watts_per_replica is not None else math.inf
        return p.usd_per_hour if p.usd_per_hour is not None else math.inf

    pre, dec = [], []
    for s in systems:
        pools = _prefill_pools(model, s, I, cached, rate, slo, rho, usd_per_chip_hour, engine, energy)
        pre += [p for p, _ in sorted(pools, key=lambda x: (cost(x[0]), x[1]))[:keep]]
        dec += sorted(_decode_pools(model, s, I, O, rate, slo, rho, usd_per_chip_hour, engine, energy), key=cost)[:keep]
    by_name = {s.name: s for s in systems}
    out = []
    for p in pre:
        for d in dec:
            t_kv = kv_transfer_s(model, by_name[p.system], by_name[d.system], I, prefill_chips=p.chips_per_replica,
                                 decode_chips=d.chips_per_replica)
            if t_kv is None or p.step_s + t_kv > TTFT_SCREEN_SHARE * slo.ttft_limit():
                continue
            out.append(_option("disaggregated", (p, d), rate, O, p.step_s + t_kv, d.step_s, t_kv))
    return out


# --------------------------------------------------------------------------------------------
# Verification by simulation
# --------------------------------------------------------------------------------------------


def _arrivals(rate: float, n: int, rng, trace=None, replicas: int = 1, offset: int = 0):
    """One replica's share: Poisson at rate/replicas, or every replicas-th request of the trace."""
    if trace is None:
        return np.cumsum(rng.exponential(replicas / rate, size=n)), None, None
    a, ins, outs = trace.arrival_s, trace.input_tokens, trace.output_tokens
    need = n * replicas + offset
    if len(a) < need:  # replay the trace end to end until every replica has its ~n requests
        reps = -(-need // len(a))
        span = float(a[-1] - a[0]) + (float(a[-1] - a[0]) / max(len(a) - 1, 1) if len(a) > 1 else replicas / rate)
        a = np.concatenate([a + k * span for k in range(reps)])
        ins, outs = np.tile(ins, reps), np.tile(outs, reps)
    idx = np.arange(offset, len(a), replicas)[:n]
    return a[idx] - a[idx[0]], ins[idx], outs[idx]


def _attainment(ttft, tpot, slo: Slo, joint: bool = True) -> float:
    """Share of requests meeting every SLO threshold. joint=False: TTFT and TPOT come from two
    simulations (the pools of a disaggregated fleet), so the shares multiply (independent pools)."""
    ok_ttft = ttft <= slo.ttft_limit()
    ok_tpot = np.where(np.isnan(tpot), True, tpot <= slo.tpot_limit())
    if joint:
        return float((ok_ttft & ok_tpot).mean()) if len(ttft) else 0.0
    return float(ok_ttft.mean() * ok_tpot.mean()) if len(ttft) and len(tpot) else 0.0


def _summary(ttft, tpot, slo, rate, requests, joint: bool = True) -> Simulated:
    att = _attainment(ttft, tpot, slo, joint)
    tp = tpot[~np.isnan(tpot)]
    tp = tp if len(tp) else np.array([0.0])
    s = Simulated(float(np.percentile(ttft, 50)), float(np.percentile(ttft, 99)), float(np.percentile(tp, 50)),
                  float(np.percentile(tp, 99)), att, att * rate, requests, False)
    meets = ((slo.ttft_p99_s is None or s.ttft_p99_s <= slo.ttft_p99_s) and
             (slo.tpot_p99_s is None or s.tpot_p99_s <= slo.tpot_p99_s) and
             (slo.ttft_p50_s is None or s.ttft_p50_s <= slo.ttft_p50_s) and
             (slo.tpot_p50_s is None or s.tpot_p50_s <= slo.tpot_p50_s))
    return replace(s, meets_slo=bool(meets))


def _decode_steps(model, system, pool: Pool, context: float, engine):
    """The estimate's decode step time by batch 1..max_batch for the pool's layout (a table)."""
    from .profiles import choose
    from .stepmodel import op_step

    prof = choose("calibrated", engine=engine, system=system)
    lay = Layout(tp=pool.tp, ep=pool.ep, pp=pool.pp)
    b = np.arange(1, pool.max_batch + 1, dtype=float)
    dt = Dtypes(weight=None if pool.weight_dtype == model.weight_dtype else pool.weight_dtype, kv=pool.kv_dtype)
    return np.asarray(op_step(model, system, lay, b, context, 1.0, kernels=prof.kernels, engine=prof.engine,
                              dtypes=dt).step_s, float).reshape(-1)


def _continuous_batching(ready, outs, step_of_batch, cap):
    """A decode replica: requests join at the next step boundary once `ready`, up to `cap` at once;
    a step with b running sequences takes step_of_batch[b − 1] and gives each one token. Returns
    the time of each request's last token (its `outs` tokens all decoded)."""
    n = len(ready)
    order = np.argsort(ready, kind="stable")
    done = np.where(outs <= 0, ready, np.nan)
    t, i, steps = 0.0, 0, 0
    left: dict[int, int] = {}
    waiting: list[int] = []
    while i < n or waiting or left:
        while i < n and ready[order[i]] <= t:
            if outs[order[i]] > 0:
                waiting.append(int(order[i]))
            i += 1
        while waiting and len(left) < cap:
            r = waiting.pop(0)
            left[r] = int(outs[r])
        if not left:
            if i < n:
                t = max(t, float(ready[order[i]]))
            continue
        t += float(step_of_batch[len(left) - 1])
        steps += 1
        for r in list(left):
            left[r] -= 1
            if left[r] <= 0:
                done[r] = t
                del left[r]
        if steps > 5_000_000:
            raise TokenmathError("the decode simulation passed 5,000,000 steps; shorten the workload")
    return done


def _simulate_option(model, systems, opt: FleetOption, rate, I, O, cached, slo, engine, trace, seed=0) -> Simulated:
    from .estimate import linearised
    from .profiles import choose
    from .simulate import simulate

    by_name = {s.name: s for s in systems}
    rng = np.random.default_rng(seed)
    if opt.mode == "aggregated":
        p = opt.pools[0]
        s = by_name[p.system]
        times, ins, outs = _arrivals(rate, SIM_REQUESTS, rng, trace, p.replicas)
        dt = Dtypes(weight=None if p.weight_dtype == model.weight_dtype else p.weight_dtype, kv=p.kv_dtype)
        prof = choose("calibrated", engine=engine, system=s)
        eff, ov = linearised(model, s, chips=p.chips_per_replica, dtypes=dt, profile=prof, input_tokens=I - cached,
                             output_tokens=O, batch=float(p.max_batch), layout=Layout(tp=p.tp, ep=p.ep, pp=p.pp))
        dur = float(times[-1]) + 1e-9
        lengths = None if ins is None else (np.maximum(ins - cached, 1).astype(int), outs.astype(int))
        r = simulate(model, s, rate_per_s=len(times) / dur, duration_s=dur * 1.0000001 + 1e-6,
                     input_tokens=max(1, round(I - cached)), output_tokens=max(1, round(O)), chips=p.chips_per_replica,
                     max_batch=p.max_batch, prefill="chunked", chunk_tokens=CHUNK_TOKENS, dtypes=dt, efficiency=eff,
                     overhead_s=ov, arrivals=times, seed=seed, lengths=lengths, per_request=True)
        return _summary(r.ttft_each_s, r.tpot_each_s, slo, rate, len(times))
    # disaggregated: a prefill replica serves prompts FIFO in passes of up to b (a pass takes its
    # full time however many it holds), the KV moves, a decode replica batches them continuously.
    # Each pool is simulated at its own share of the rate; the decode replica's arrivals carry the
    # prefill delays drawn from the prefill simulation.
    p, d = opt.pools
    times, _, _ = _arrivals(rate, SIM_REQUESTS, rng, trace, p.replicas)
    free, done_p, k = 0.0, np.empty(len(times)), 0
    while k < len(times):
        start = max(free, times[k])
        j = k + 1
        while j < len(times) and j - k < p.max_batch and times[j] <= start:
            j += 1
        free = start + p.step_s
        done_p[k:j] = free
        k = j
    ttft = done_p - times + opt.kv_transfer_s  # the first token comes with the prefill's last logits
    t_d, _, outs = _arrivals(rate, SIM_REQUESTS, rng, trace, d.replicas)
    outs = np.full(len(t_d), int(O)) if outs is None else outs.astype(int)
    ready = t_d + rng.choice(ttft, size=len(t_d))
    table = _decode_steps(model, by_name[d.system], d, I + O / 2, engine)
    last = _continuous_batching(ready, outs - 1, table, d.max_batch)
    multi = outs > 1
    tpot = np.full(len(t_d), np.nan)
    tpot[multi] = (last[multi] - ready[multi]) / (outs[multi] - 1)
    return _summary(ttft, tpot, slo, rate, len(times), joint=False)


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
          utilisation: float = UTILISATION_DEFAULT, verify: int = VERIFY_DEFAULT, progress=None) -> FleetPlan:
    """The cheapest fleet (or the fewest chips) that serves `request_rate` requests/s of
    `input_tokens` in and `output_tokens` out under `slo`, verified in simulation. A `trace`
    (workload.Workload) gives the rate and the mean lengths instead, and drives the simulation."""
    if disaggregation not in ("auto", "on", "off"):
        raise TokenmathError(f"--disaggregation = {disaggregation!r}; expected 'auto', 'on' or 'off'")
    if objective not in ("cost", "chips", "energy"):
        raise TokenmathError(f"--objective = {objective!r}; expected 'cost', 'chips' or 'energy'")
    stats = {}
    if trace is not None:
        from .workload import stats as trace_stats

        st = trace_stats(trace)
        if st.rate_per_s is None:
            raise TokenmathError(f"the trace {st.name or ''} has every request at one instant: it has no rate; "
                                 "give --request-rate to spread it")
        if request_rate is not None:  # the trace's shape at the asked rate: time compressed or stretched
            from .workload import scale_rate

            _check("--request-rate", request_rate, most=MAX_RATE)
            trace = scale_rate(trace, request_rate / st.rate_per_s)
            st = trace_stats(trace)
        stats = {k: v for k, v in st.__dict__.items()}
        request_rate = st.rate_per_s
        input_tokens = input_tokens or st.input_tokens_mean
        output_tokens = output_tokens or st.output_tokens_mean
    if request_rate is None or input_tokens is None or output_tokens is None:
        raise TokenmathError("give --request-rate, --input-tokens and --output-tokens, or --trace")
    _check("--request-rate", request_rate, most=MAX_RATE)
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
    I, O, rate = float(input_tokens), float(output_tokens), float(request_rate)
    cached = float(prefix_tokens) * float(prefix_hit_rate)

    cands: list[FleetOption] = []
    if disaggregation in ("auto", "off"):
        cands += _aggregated(model, systems, I, O, cached, rate, slo, utilisation, usd_per_chip_hour, engine, True)
    if disaggregation in ("auto", "on"):
        cands += _disaggregated(model, systems, I, O, cached, rate, slo, utilisation, usd_per_chip_hour, engine,
                                energy=True, by_energy=objective == "energy")
    from .profiles import choose

    label = choose("calibrated", engine=engine).label + " (+ each system's vendor profile)"
    if not cands:
        raise TokenmathError(_unreachable(model, systems, I, O, cached, slo, usd_per_chip_hour, engine, disaggregation))

    def key(o: FleetOption):
        if objective == "energy":
            return (0 if o.watts is not None else 1, o.watts or math.inf, o.total_chips)
        if objective == "cost" and o.usd_per_hour is not None:
            return (0, o.usd_per_hour, o.total_chips)
        return (1 if objective == "cost" else 0, o.total_chips, o.usd_per_hour or math.inf)

    cands.sort(key=key)
    # distinct fleets (by system and layout) in order of cost, simulated and grown until they meet
    # the SLOs; stop once `verify` of them do, or after 3 × verify simulated
    distinct, seen = [], set()
    for o in cands:
        sig = (o.mode,) + tuple((p.system, p.tp, p.ep, p.pp, p.weight_dtype) for p in o.pools)
        if sig not in seen:
            seen.add(sig)
            distinct.append(o)
    budget = distinct[:3 * verify]
    verified, passed = [], 0
    for n, o in enumerate(budget):
        if passed >= verify:
            break
        if progress:
            progress(n, len(budget), f"simulating {o.mode} on {', '.join(p.system for p in o.pools)}")
        for attempt in range(MAX_REPLICA_GROWTH + 1):
            sim = _simulate_option(model, systems, o, rate, I, O, cached, slo, engine, trace)
            o = replace(o, simulated=sim)
            if sim.meets_slo:
                passed += 1
                break
            if attempt < MAX_REPLICA_GROWTH:  # the option kept is the one its simulation describes
                o = _grow(o, rate, O)
        verified.append(o)
    if progress:
        progress(len(budget), len(budget), "done")
    ok = [o for o in verified if o.simulated and o.simulated.meets_slo]
    if verify and not ok:
        raise TokenmathError(_missed(model, verified, slo))
    best = min(ok, key=key) if ok else distinct[0]
    reason = _mode_reason(cands, best, disaggregation, key)
    err = {}
    if best is not None and best.simulated is not None:
        err = {"ttft_p50": best.simulated.ttft_p50_s / best.analytic_ttft_s - 1,
               "tpot_p50": best.simulated.tpot_p50_s / best.analytic_tpot_s - 1}
    agg = [o for o in cands if o.mode == "aggregated" and o.usd_per_mtok is not None]
    frontier = _frontier(agg)
    by_name = {s.name: s for s in systems}
    lb = 0.0 if best is None else sum(flop_lower_bound_chips(model, by_name[p.system], rate, I, O)
                                      * (p.replicas * p.billed_chips_per_replica / best.total_chips) for p in best.pools)
    pc = None if best is None or not cached else _prefix_cache(model, by_name[best.pools[0].system], prefix_tokens,
                                                                prefix_hit_rate, rate, trace)
    return FleetPlan(model.name, rate, I, O, cached, slo, label, best, verified, frontier, reason, lb, err, stats, pc)


def _prefix_cache(model, system, prefix_tokens: float, hit_rate: float, rate: float, trace) -> dict:
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
                     else f"{n} distinct prefixes in the trace")}


def _grow(o: FleetOption, rate: float, O: float) -> FleetOption:
    pools = tuple(replace(p, replicas=math.ceil(p.replicas * 1.15), dp=math.ceil(p.replicas * 1.15),
                          usd_per_hour=None if p.usd_per_hour is None else p.usd_per_hour / p.replicas * math.ceil(p.replicas * 1.15))
                  for p in o.pools)
    return replace(_option(o.mode, pools, rate, O, o.analytic_ttft_s, o.analytic_tpot_s, o.kv_transfer_s), simulated=o.simulated)


def _mode_reason(cands, best, disaggregation, key) -> str:
    if disaggregation != "auto":
        return f"--disaggregation {disaggregation}"
    agg = [o for o in cands if o.mode == "aggregated"]
    dis = [o for o in cands if o.mode == "disaggregated"]
    if not agg:
        return "only disaggregated fleets meet the SLOs in the analytic screen"
    if not dis:
        return "no disaggregated fleet meets the SLOs in the analytic screen"
    a, d = min(agg, key=key), min(dis, key=key)
    if a.watts is not None and d.watts is not None and key(a)[1] == a.watts:  # the energy objective
        what, va, vd = "kW at the wall", a.watts / 1e3, d.watts / 1e3
    elif a.usd_per_hour is not None and d.usd_per_hour is not None:
        what, va, vd = "$/h", a.usd_per_hour, d.usd_per_hour
    else:
        what, va, vd = "chips", a.total_chips, d.total_chips
    if math.isclose(va, vd, rel_tol=1e-9):
        screen = "aggregated and disaggregated cost the same in the analytic screen"
    else:
        better = "uses less energy" if what.startswith("kW") else "is cheaper"
        screen = f"{'disaggregated' if key(d) < key(a) else 'aggregated'} {better} in the analytic screen"
    after = ("no candidate was simulated" if best is None or best.simulated is None
             else f"{best.mode} is the best that meets the SLOs in simulation")
    return f"{screen} ({what}: aggregated {va:,.4g}, disaggregated {vd:,.4g}); {after}"


def _frontier(opts: list[FleetOption]) -> list[dict]:
    if not opts:
        return []
    user = np.array([o.tokens_per_s_per_user for o in opts])
    cost = np.array([o.usd_per_mtok for o in opts])
    order = np.lexsort((cost, -user))
    best, out = math.inf, []
    for i in order:
        if cost[i] < best:
            best = cost[i]
            p = opts[i].pools[0]
            out.append({"system": p.system, "tp": p.tp, "ep": p.ep, "pp": p.pp, "replicas": p.replicas,
                        "max_batch": p.max_batch, "tokens_per_s_per_user": float(user[i]), "usd_per_mtok": float(cost[i])})
    return out


def _missed(model, verified: list[FleetOption], slo: Slo) -> str:
    """One sentence when every simulated candidate misses: the closest one's tails and what binds."""
    def excess(o):
        s = o.simulated
        return max(s.ttft_p99_s / (slo.ttft_p99_s or math.inf), s.tpot_p99_s / (slo.tpot_p99_s or math.inf),
                   s.ttft_p50_s / (slo.ttft_p50_s or math.inf), s.tpot_p50_s / (slo.tpot_p50_s or math.inf))

    o = min(verified, key=excess)
    s = o.simulated
    ttft_bad = (slo.ttft_p99_s and s.ttft_p99_s > slo.ttft_p99_s) or (slo.ttft_p50_s and s.ttft_p50_s > slo.ttft_p50_s)
    binds = ("TTFT binds: the prefill pass itself plus about one pass of queueing" if ttft_bad
             else "TPOT binds: the decode step's weight and KV reads at the batch that fills the fleet")
    pools = " + ".join(f"{p.replicas} × {p.system} TP{p.tp} EP{p.ep} PP{p.pp}" for p in o.pools)
    return (f"no fleet of {model.name} meets the SLOs in simulation; the closest, {o.mode} {pools}, reaches TTFT p99 "
            f"{s.ttft_p99_s:.3g} s and TPOT p99 {s.tpot_p99_s * 1e3:.3g} ms after {MAX_REPLICA_GROWTH} rounds of "
            f"added replicas ({binds}); relax the SLOs or give more systems")


def _unreachable(model, systems, I, O, cached, slo, usd_per_chip_hour, engine, disaggregation) -> str:
    """One sentence: the best TTFT and TPOT any candidate reaches, and which SLO binds."""
    from .plan import plan_system

    best_tpot, best_ttft = math.inf, math.inf
    for s in systems:
        cols, _, _ = plan_system(model, s, input_tokens=I, output_tokens=O, usd_per_chip_hour=usd_per_chip_hour,
                                 engine=engine, cached_input_tokens=cached)
        if len(cols["batch"]):
            best_tpot = min(best_tpot, float(cols["step_s"].min()))
            best_ttft = min(best_ttft, float(cols["ttft_s"].min()))
    if not math.isfinite(best_tpot):
        return f"{model.name} fits on none of the systems given ({', '.join(s.name for s in systems)})"
    binds = []
    if best_tpot > slo.tpot_limit():
        binds.append(f"TPOT: the fastest is {best_tpot * 1e3:,.1f} ms per token (the decode step's weight and KV reads), "
                     f"the SLO {slo.tpot_limit() * 1e3:,.1f} ms")
    if best_ttft > slo.ttft_limit():
        binds.append(f"TTFT: the fastest prefill of one prompt is {best_ttft:,.3f} s (compute), the SLO {slo.ttft_limit():,.3f} s")
    what = "; ".join(binds) or "TTFT and TPOT cannot both be met by one layout"
    return f"no fleet of {model.name} meets the SLOs ({disaggregation} disaggregation): {what}"


__all__ = ["Slo", "Pool", "Simulated", "FleetOption", "FleetPlan", "fleet", "kv_transfer_s", "flop_lower_bound_chips",
           "UTILISATION_DEFAULT"]
