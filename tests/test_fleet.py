"""fleet.py (issue 14): fleets sized from requests under tail-latency SLOs, checked in simulation."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import fleet as fl
from tokenmath.cli import app

CAT = tm.load_catalog()
DEEPSEEK = "https://github.com/deepseek-ai/open-infra-index/blob/main/202502OpenSourceWeek/day_6_one_more_thing_deepseekV3R1_inference_system_overview.md"


@pytest.fixture(scope="module")
def deepseek_production():
    """DeepSeek's own serving of V3/R1 on H800 nodes (open-infra-index day 6, commit 56d8685,
    24 h from 2025-02-27): 608 B input tokens/day (56.3 % from the on-disk KV cache), 168 B
    output tokens/day, 20–22 tokens/s per user, mean KV length 4,989 tokens per output token.
    As requests: O = 1,211 and I = 4,383 keep I/O = 608/168 and I + O/2 = 4,989; the rate is
    168e9 / 86,400 / 1,211 = 1,605 requests/s; the SLO is the users' 20 tokens/s (TPOT p50 50 ms)."""
    return fl.fleet(CAT.model("deepseek-v3"), [CAT.system("h800-sxm")], request_rate=1605, input_tokens=4383,
                    output_tokens=1211, prefix_tokens=4382, prefix_hit_rate=0.563, disaggregation="on",
                    slo=fl.Slo(tpot_p50_s=0.05, ttft_p99_s=10.0), usd_per_chip_hour=2.0)


@pytest.mark.xfail(strict=False, reason="issue 22's refit widened the pooled 80 % band (0.63x-2.26x on the "
                   "per-generation fit; MLA's own 0.30x-2.82x): too wide for this check to bind (its own guard "
                   "0.5 < fast < 1.0 < slow < 1.5 fails); issue 25's production checks at a +-30 % tolerance replace it")
def test_deepseek_production_fleet_size(deepseek_production):
    """Published (DEEPSEEK, above): the fleet averaged 226.75 nodes = 1,814 H800 (peak 278 nodes =
    2,224), prefill at 73.7k input tokens/s per node (9,213 per GPU, cache hits included) and decode
    at 14.8k output tokens/s per node (1,850 per GPU). The tolerance is the estimate's own 80 % band
    (the calibrated profile's cross-validated residuals, profiles.range_80: a measured step lies
    between 0.62× and 1.30× the estimate), not a window fitted to today's answer: DeepSeek's
    measured rates per GPU, and so its fleet, must lie inside the band around tokenmath's. The
    band was meant to cover the layouts' difference when tokenmath's layouts stopped at EP over two
    8-GPU nodes; since issue 25 the fleet runs wide EP, and tests/test_fleet_day.py checks DeepSeek's
    day at ±30 % on DeepSeek's engine."""
    from tokenmath.profiles import choose

    f = deepseek_production
    b = f.best
    assert b is not None and b.mode == "disaggregated" and b.simulated.meets_slo
    fast, slow = choose("calibrated", system=CAT.system("h800-sxm")).range_80(1.0)  # measured step / estimate
    assert 0.5 < fast < 1.0 < slow < 1.5
    pre, dec = b.pools
    input_per_gpu = 608e9 / 86400 / (pre.replicas * pre.billed_chips_per_replica)
    output_per_gpu = 168e9 / 86400 / (dec.replicas * dec.billed_chips_per_replica)
    assert input_per_gpu / slow <= 9213 <= input_per_gpu / fast
    assert output_per_gpu / slow <= 1850 <= output_per_gpu / fast
    assert b.total_chips * fast <= 1814 <= b.total_chips * slow


def test_deepseek_kv_transfer_is_its_mla_latent():
    """DeepSeek-V3's config (kv_lora_rank 512 + qk_rope_head_dim 64, 61 layers, BF16) stores 70,272 B
    of KV per token: a 4,383-token prompt is 308.0 MB. Between two 8-GPU H800 replicas over the
    scale-out NIC (the catalog's 50 GB/s per GPU, 400 Gb/s CX7) each GPU sends its share: 308.0 MB /
    (8 × 50 GB/s) + one 10 µs hop = 0.780 ms. Hand formula, rel 1e-9."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    t = fl.kv_transfer_s(m, s, s, 4383, prefill_chips=8, decode_chips=8)
    expected = 70272 * 4383 / (8 * s.scaleout_bytes_per_s) + 10e-6
    assert s.scaleout_bytes_per_s == pytest.approx(50e9)
    assert t == pytest.approx(expected, rel=1e-9)
    # inside one NVL72 domain the same transfer rides NVLink (900 GB/s per GPU)
    g = CAT.system("gb200-nvl72")
    inside = fl.kv_transfer_s(m, g, g, 4383, prefill_chips=8, decode_chips=16)
    assert inside == pytest.approx(70272 * 4383 / (8 * g.scaleup_bytes_per_s), rel=1e-9)


def _md1_waiting_cdf(t: float, lam: float, D: float) -> float:
    """P(W <= t) in an M/D/1 queue (Poisson arrivals at lam, service exactly D, FIFO): Erlang's
    formula (A. K. Erlang 1909, "The theory of probabilities and telephone conversations", Nyt
    Tidsskrift for Matematik B 20; the c = 1 case of G. J. Franx 2001, "A simple solution for the
    M/D/c waiting time distribution", Oper. Res. Lett. 29(5)):
        P(W <= t) = (1 − ρ) Σ_{k=0}^{⌊t/D⌋} [λ(kD − t)]^k / k! · e^{−λ(kD − t)},  ρ = λD.
    Its terms alternate and grow like e^{λt}, so it is summed in 80-digit decimals."""
    from decimal import Decimal, localcontext

    with localcontext() as c:
        c.prec = 80
        lam_d, D_d, t_d = Decimal(lam), Decimal(D), Decimal(t)
        total = Decimal(0)
        for k in range(int(t / D) + 1):
            x = lam_d * (k * D_d - t_d)
            total += (x ** k if k else Decimal(1)) / math.factorial(k) * (-x).exp()  # 0^0 = 1 (Decimal refuses it)
        return float((1 - lam_d * D_d) * total)


def _md1_waiting_quantile(q: float, lam: float, D: float) -> float:
    lo, hi = 0.0, D
    while _md1_waiting_cdf(hi, lam, D) < q:
        hi *= 2
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _md1_waiting_cdf(mid, lam, D) < q else (lo, mid)
    return hi


def test_md1_reference_agrees_with_pollaczek_khinchine():
    """The reference itself, checked two ways before it checks the fleet: P(W = 0) = 1 − ρ, and its mean,
    ∫ (1 − F), equals the Pollaczek–Khinchine mean wait of M/D/1, ρD / (2(1 − ρ)) (Kleinrock 1975,
    "Queueing Systems" vol. 1, ch. 5, the P-K mean-value formula with service variance 0), to 1e-4."""
    lam, D = 7.0, 0.12  # ρ = 0.84
    rho = lam * D
    assert _md1_waiting_cdf(0.0, lam, D) == pytest.approx(1 - rho, rel=1e-12)
    ts = np.linspace(0.0, 30 * D, 1501)  # P(W > 30 D) is about 1e-5 here
    mean = np.trapezoid([1 - _md1_waiting_cdf(t, lam, D) for t in ts], ts)
    assert mean == pytest.approx(rho * D / (2 * (1 - rho)), rel=1e-4)


@pytest.mark.parametrize("rate, ttft_p99_s", [(20, 1.0), (50, 2.0)])
def test_prefill_tail_matches_the_md1_closed_form(rate, ttft_p99_s):
    """Independent reference for the fleet's steady-state tails. A 6,000-token prompt fills one
    8,192-token prefill pass alone, so a disaggregated fleet's prefill replica is an M/D/1 queue:
    Poisson arrivals at λ/R_p, FIFO, each pass exactly the screen's T_p. Its TTFT is the wait W plus
    T_p plus the KV transfer, so its p99 is the M/D/1 p99 of W (Erlang's formula above) + T_p + t_kv.
    The closed form is exact; the fleet's is a simulation with a stated 95 % interval, so the check is
    that the interval holds the exact value (at the sizes the search settles on: ρ ≈ 0.57 and 0.85),
    and that it is a measurement, not a shrug: at most ±12.5 % of the exact value. The fleet stops at
    ±5 % or at its request cap; at ρ ≈ 0.85 (the size since the 2026-12-07 refit, 0.81 before) the
    M/D/1 p99 converges slowest and the capped run states ±10.4 %."""
    f = fl.fleet(CAT.model("llama-3.1-8b"), [CAT.system("h100-sxm")], request_rate=rate, input_tokens=6000,
                 output_tokens=100, slo=fl.Slo(ttft_p99_s=ttft_p99_s, tpot_p99_s=0.05), disaggregation="on")
    pre = f.best.pools[0]
    assert pre.role == "prefill" and pre.max_batch == 1
    lam, D = rate / pre.replicas, pre.step_s
    assert 0.5 < lam * D < 0.9  # a queue that matters
    exact = _md1_waiting_quantile(0.99, lam, D) + D + f.best.kv_transfer_s
    lo, hi = f.best.simulated.ttft_p99_ci_s
    assert lo <= exact <= hi
    assert hi - lo <= 0.25 * exact  # the interval is a measurement, not a shrug (±12.5 % at most here)


def test_aggregated_tails_match_a_ten_times_longer_independent_run():
    """The fleet's steady-state reading of an aggregated pool (warm-up cut by MSER-5, 95 % interval by
    sectioning, at most REQUEST_CAP requests) against a separate `simulate` run ten times longer, of
    the same replica at the same share of the rate (λ/R), drawn from its own random stream, the first
    10 % discarded: both p99s (TTFT and TPOT) agree within their 95 % intervals. The simulator itself
    is checked against closed forms in tests/test_simulate.py; this checks the reading of it."""
    from tokenmath.estimate import linearised
    from tokenmath.layout import Layout
    from tokenmath.profiles import choose
    from tokenmath.simulate import simulate
    from tokenmath.specs import Dtypes
    from tokenmath.steady import percentile_interval

    m, s = CAT.model("llama-3.1-8b"), CAT.system("h100-sxm")
    f = fl.fleet(m, [s], request_rate=50, input_tokens=1000, output_tokens=200,
                 slo=fl.Slo(ttft_p99_s=0.5, tpot_p99_s=0.03), disaggregation="off")
    p, sim = f.best.pools[0], f.best.simulated
    dt = Dtypes(weight=None if p.weight_dtype == m.weight_dtype else p.weight_dtype, kv=p.kv_dtype)
    eff, ov = linearised(m, s, chips=p.chips_per_replica, dtypes=dt, profile=choose("calibrated", system=s),
                         input_tokens=1000, output_tokens=200, batch=float(p.max_batch),
                         layout=Layout(tp=p.tp, ep=p.ep, pp=p.pp))
    lam = 50 / p.replicas
    n = 10 * fl.REQUEST_CAP
    r = simulate(m, s, rate_per_s=lam, duration_s=n / lam, input_tokens=1000, output_tokens=200,
                 chips=p.chips_per_replica, max_batch=p.max_batch, prefill="chunked", chunk_tokens=fl.CHUNK_TOKENS,
                 dtypes=dt, efficiency=eff, overhead_s=ov, seed=12345, per_request=True)
    keep = slice(r.requests // 10, None)
    for long_run, (lo, hi) in ((r.ttft_each_s[keep], sim.ttft_p99_ci_s), (r.tpot_each_s[keep], sim.tpot_p99_ci_s)):
        iv = percentile_interval(long_run[~np.isnan(long_run)], 99)
        assert iv.low <= hi and lo <= iv.high, (iv, lo, hi)


QWEN = dict(request_rate=200, input_tokens=3000, output_tokens=300, slo=fl.Slo(ttft_p99_s=1.0, tpot_p99_s=0.04))


@pytest.fixture(scope="module")
def qwen_h100():
    """Issue 21's reproducer: qwen3-32b, 200 requests/s, 3,000 in / 300 out, TTFT p99 ≤ 1 s, TPOT p99
    ≤ 40 ms, on H100: auto answered 126 chips ($163.80/h) where off verified 104 ($135.20/h)."""
    m, syss = CAT.model("qwen3-32b"), [CAT.system("h100-sxm")]
    return {mode: fl.fleet(m, syss, disaggregation=mode, **QWEN) for mode in ("auto", "off", "on")}


def test_auto_is_never_dearer_than_off_or_on(qwen_h100):
    """Issue 21 (reproducer 2): `--disaggregation auto` returns the cheapest verified option: its $/h
    is at most what `off` and `on` each verify, and below the $163.80/h auto answered before."""
    auto, off, on = (qwen_h100[k].best for k in ("auto", "off", "on"))
    assert auto.usd_per_hour <= off.usd_per_hour * (1 + 1e-12)
    assert auto.usd_per_hour <= on.usd_per_hour * (1 + 1e-12)
    assert auto.usd_per_hour < 163.80
    assert auto.simulated.meets_slo and off.simulated.meets_slo and on.simulated.meets_slo


def test_disaggregated_text_gives_each_pools_simulated_requests(qwen_h100):
    """A disaggregated fleet's text gives each pool's simulated requests per replica and its warm-up,
    not their sum (a user review read '68,000 requests per replica' where the prefill pool ran 64,000
    and the decode pool 4,000, above the 64,000 cap it documents); the JSON's runs agree (invariant)."""
    from tokenmath import report as rp

    f = qwen_h100["on"]
    sim = f.best.simulated
    line = rp._fleet_sim_line(sim)
    assert len(sim.runs) == 2
    for r in sim.runs:
        assert f"{r.role} {r.requests:,} (the first {r.warmup:,} discarded as warm-up)" in line
    assert f"{sim.requests:,} requests per replica" not in line


def test_invariant_every_option_shown_as_meeting_is_verified_at_steady_state(qwen_h100):
    """Invariant (issue 21): every option reported as meeting the SLOs was read at steady state (its
    warm-up cut inside the first half of each run, at least FIRST_REQUESTS requests per pool), and the
    upper end of every p99's 95 % interval is within its SLO; its p99s are within ±5 % or its run
    reached the stated cap. Options that miss say so."""
    for f in qwen_h100.values():
        assert f.best in f.candidates
        for o in f.candidates:
            s = o.simulated
            assert s is not None and len(s.runs) == len(o.pools)
            if not s.meets_slo:
                continue
            assert s.ttft_p99_ci_s[0] <= s.ttft_p99_s <= s.ttft_p99_ci_s[1] <= 1.0
            assert s.tpot_p99_ci_s[0] <= s.tpot_p99_s <= s.tpot_p99_ci_s[1] <= 0.04
            for r in s.runs:
                assert r.settled and r.meets and r.requests >= fl.FIRST_REQUESTS
                assert r.converged or r.stop == "request cap"
                assert r.warmup < r.requests / 2
            assert s.goodput_requests_per_s >= 0.99 * 200
            assert o.total_chips >= f.flop_lower_bound_chips > 0


def test_invariant_each_pool_is_sized_down_to_the_fewest_replicas_that_meet(qwen_h100):
    """Invariant (issue 21, item 2): each pool of each verified option has the fewest replicas that met in
    its search: one fewer was tried and missed, or is below its floor (100 % of the screen's
    capacity). Before, a decode pool was left at 23 replicas with TPOT p99 19 ms against a 40 ms SLO;
    the same pool now runs near its SLO."""
    for f in qwen_h100.values():
        for o in f.candidates:
            if not o.simulated.meets_slo:
                continue
            for p, (role, hist) in zip(o.pools, o.simulated.sizing):
                tried = dict(hist)
                assert tried[p.replicas]
                floor = math.ceil(200 / p.capacity_requests_per_s * (1 - 1e-12))
                assert p.replicas == floor or tried.get(p.replicas - 1) is False
    dec = qwen_h100["on"].best.pools[1]
    assert dec.role == "decode" and qwen_h100["on"].best.simulated.tpot_p99_s > 0.75 * 0.04


def test_invariant_the_search_ranks_a_resized_fleet_by_the_fleet_it_would_build(qwen_h100):
    """Invariant: the search ranks candidates at resized replica counts by fleet._resized_totals
    (chips, $/h, watts) without building them; those are, bit for bit, the totals of the fleet
    fleet._resize builds at the same counts — for aggregated and disaggregated candidates, at
    counts below, at and above their own."""
    seen = 0
    for plan in qwen_h100.values():
        for o in plan.candidates:
            for scale in (0.5, 1.0, 3.0):
                reps = tuple(max(1, round(p.replicas * scale)) for p in o.pools)
                built = fl._resize(o, reps, QWEN["request_rate"], QWEN["input_tokens"], QWEN["output_tokens"])
                assert fl._resized_totals(o, reps) == (built.total_chips, built.usd_per_hour, built.watts)
                seen += 1
    assert seen >= 6


def test_the_issues_printed_alternative_misses_at_steady_state():
    """Issue 21 (reproducer 3): the README printed 'aggregated 18×B200 TP1 EP8 ... meets the SLOs' for
    DeepSeek-V3 at 500 requests/s, 2,000 in / 400 out, TPOT p99 ≤ 50 ms; at 15,000 requests it reached
    57.5 ms and `tokenmath simulate` over 600 s 53.2 ms (the issue's own measurements). Verified at
    steady state, that fleet is sized to the fewest replicas that meet (one fewer was tried and
    missed), with the upper end of its TPOT p99 interval within the SLO. (Where that count falls
    moves with the kernel curves: 19 under issue 21's, 18 under issue 22's FP4 family.)"""
    m, s = CAT.model("deepseek-v3"), CAT.system("b200")
    slo = fl.Slo(ttft_p99_s=2.0, tpot_p99_s=0.05)
    cands = [o for o in fl._aggregated(m, [s], 2000.0, 400.0, 0.0, 500.0, slo, fl.UTILISATION_DEFAULT, None, None)
             if (o.pools[0].tp, o.pools[0].ep, o.pools[0].pp, o.pools[0].weight_dtype) == (1, 8, 1, "nvfp4")]
    o = max(cands, key=lambda c: c.pools[0].capacity_requests_per_s)  # the batch fleet() keeps for this layout
    ctx = dict(model=m, by_name={s.name: s}, rate=500.0, I=2000.0, O=400.0, cached=0.0, engine=None, trace=None, sized={})
    v = fl._verify(ctx, o, slo)
    tried = dict(v.simulated.sizing[0][1])
    # the fewest replicas that meet the SLOs at steady state, every smaller count tried missing (the
    # issue's printed "18 × B200 meets" came from a short run; the count moves with the estimate)
    n = v.pools[0].replicas
    assert tried[n] is True and all(ok is False for m, ok in tried.items() if m < n)
    assert v.simulated.meets_slo and v.simulated.tpot_p99_ci_s[1] <= 0.05


def test_fleet_cli_json_contract_and_export():
    r = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-70b", "--request-rate", "20", "--input-tokens", "1000",
                                 "--output-tokens", "500", "--ttft-p99-s", "1", "--tpot-p99-s", "0.04", "--systems",
                                 "h100-sxm", "--export", "vllm", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["request_rate"] == 20 and d["estimate"].startswith("calibrated")
    b = d["best"]
    assert b["mode"] in ("aggregated", "disaggregated")
    for p in b["pools"]:
        assert {"role", "system", "replicas", "chips_per_replica", "tp", "ep", "pp", "dp", "max_batch"} <= set(p)
    assert {"total_chips", "usd_per_hour", "usd_per_mtok_output", "usd_per_mtok_all_tokens", "goodput_requests_per_s",
            "simulated"} <= set(b) and "usd_per_mtok" not in b
    assert {"ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "slo_attainment", "ttft_p99_ci_s", "tpot_p99_ci_s",
            "requests_simulated", "warmup_requests_discarded", "converged"} <= set(b["simulated"])
    lo, hi = b["simulated"]["ttft_p99_ci_s"]
    assert lo <= b["simulated"]["ttft_p99_s"] <= hi
    assert d["steady_state"]["warmup_rule"] == "MSER-5" and d["steady_state"]["confidence"] == 0.95
    assert isinstance(d["frontier"], list) and d["export"] and any(x.startswith("vllm serve") for x in d["export"])


@pytest.mark.parametrize("args, fragment", [
    (["--request-rate", "-3"], "--request-rate"),
    (["--request-rate", "0"], "--request-rate"),
    (["--request-rate", "10", "--tpot-p99-s", "1e-5"], "no fleet of llama-3.1-70b meets the SLOs"),
    (["--request-rate", "10", "--disaggregation", "maybe"], "--disaggregation"),
    (["--request-rate", "10", "--prefix-tokens", "500"], "--prefix-hit-rate"),
    (["--request-rate", "10", "--export", "tgi"], "--export"),
    ([], "--request-rate"),
    (["--request-rate", "0.00001"], "expected at least 0.0001"),
    (["--request-rate", "10", "--weight-dtypes", ","], "--weight-dtypes"),
    (["--request-rate", "10", "--weight-dtypes", "fp7"], "fp7"),
])
def test_fleet_cli_errors_are_one_sentence(args, fragment):
    base = ["fleet", "--model", "llama-3.1-70b", "--systems", "h100-sxm"]
    if args:
        base += ["--input-tokens", "1000", "--output-tokens", "500"]
    r = CliRunner().invoke(app, base + args)
    assert r.exit_code == 2, r.output
    assert fragment in r.output and "Traceback" not in r.output


def test_fleet_from_the_azure_code_trace():
    """The first 200 rows of Azure's LLM inference trace (AzurePublicDataset
    AzureLLMInferenceTrace_code.csv, commit b469a11, tests/data/traces): 1.0046 requests/s, 2,071.075
    tokens in and 24.535 out on average (a plain csv-module pass in tests/test_workload.py gives the
    same). The fleet reads its rate and lengths from the trace (rel 1e-3) and its simulation
    replays the trace's own arrivals and lengths; at --request-rate 10 the trace is compressed
    to that rate."""
    path = "tests/data/traces/AzureLLMInferenceTrace_code_head200.csv"
    base = ["fleet", "--model", "llama-3.1-8b", "--trace", path, "--ttft-p99-s", "2", "--tpot-p99-s", "0.05",
            "--systems", "h100-sxm", "--json"]
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    base[4] = str(root / path)
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["workload"]["requests"] == 200 and d["workload"]["replayed_to_fill_runs"]
    assert d["request_rate"] == pytest.approx(1.0046, rel=1e-3)
    assert d["input_tokens"] == pytest.approx(2071.075, rel=1e-6) and d["output_tokens"] == pytest.approx(24.535, rel=1e-6)
    assert d["best"]["simulated"]["slo_attainment"] >= 0.99
    r = CliRunner().invoke(app, base + ["--request-rate", "10"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["request_rate"] == pytest.approx(10, rel=1e-9)


def test_energy_objective_uses_no_more_energy_than_the_cost_objective():
    """Invariant (issue 15): --objective energy answers with a fleet whose wall power is at most the
    cost objective's (both meet their SLOs in simulation)."""
    kw = dict(request_rate=200, input_tokens=1000, output_tokens=500, slo=fl.Slo(ttft_p99_s=1.0, tpot_p99_s=0.04))
    syss = [CAT.system(n) for n in ("h100-sxm", "b200", "mi300x")]
    e = fl.fleet(CAT.model("llama-3.1-70b"), syss, objective="energy", **kw).best
    c = fl.fleet(CAT.model("llama-3.1-70b"), syss, **kw).best
    assert e.simulated.meets_slo and e.joules_per_token > 0
    assert c.watts is not None and e.watts <= c.watts * (1 + 1e-9)


def test_prefix_cache_memory_and_tier():
    """A 2,000-token shared prefix of Llama-3.1-70B holds 2,000 × 327,680 B (80 layers × 8 KV heads × 128 ×
    (K, V) × 2 B, from its config) = 655.36 MB; with one prefix shared by every request at 100 requests/s
    and a hit rate of 0.8 it is reused every 1/(100 · 0.8) = 12.5 ms, far below HBM's drain time, so the
    lecture's rule keeps it in HBM (exact)."""
    f = fl.fleet(CAT.model("llama-3.1-70b"), [CAT.system("h100-sxm"), CAT.system("b200")], request_rate=100,
                 input_tokens=3000, output_tokens=300, prefix_tokens=2000, prefix_hit_rate=0.8,
                 slo=fl.Slo(ttft_p99_s=2.0, tpot_p99_s=0.05))
    pc = f.prefix_cache
    assert pc["kv_bytes"] == 2000 * 327680 and pc["reuse_interval_s"] == pytest.approx(0.0125)
    assert pc["tier"] == "hbm" and pc["prefixes_assumed"] and f.cached_input_tokens == 1600


def test_dollars_per_mtok_say_which_tokens():
    """Issue 21 (item 5): the fleet's $/h over its output tokens (usd_per_mtok_output) and over every
    token in and out (usd_per_mtok_all_tokens) — at 3,000 in / 300 out they differ 11× — each by its
    definition (exact), and the text says which."""
    r = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-8b", "--request-rate", "20", "--input-tokens", "3000",
                                 "--output-tokens", "300", "--ttft-p99-s", "1", "--tpot-p99-s", "0.05", "--systems",
                                 "h100-sxm", "--json"])
    assert r.exit_code == 0, r.output
    b = json.loads(r.stdout)["best"]
    assert b["usd_per_mtok_output"] == pytest.approx(b["usd_per_hour"] / 3600 / (20 * 300) * 1e6, rel=1e-12)
    assert b["usd_per_mtok_all_tokens"] == pytest.approx(b["usd_per_hour"] / 3600 / (20 * 3300) * 1e6, rel=1e-12)
    assert b["usd_per_mtok_output"] / b["usd_per_mtok_all_tokens"] == pytest.approx(11.0, rel=1e-12)
    text = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-8b", "--request-rate", "20", "--input-tokens", "3000",
                                    "--output-tokens", "300", "--ttft-p99-s", "1", "--tpot-p99-s", "0.05", "--systems",
                                    "h100-sxm"]).output
    assert "per million output tokens" in text and "per million tokens in + out" in text


def test_weight_dtypes_are_stated_and_chosen():
    """Issue 21 (item 4): the default weight dtypes are stated per system (B200 tries NVFP4 where H100
    cannot), every pool names its dtype, and --weight-dtypes fp8 keeps every pool at FP8."""
    base = ["fleet", "--model", "llama-3.1-70b", "--request-rate", "20", "--input-tokens", "1000", "--output-tokens",
            "500", "--ttft-p99-s", "1", "--tpot-p99-s", "0.04", "--systems", "h100-sxm,b200", "--json"]
    d = json.loads(CliRunner().invoke(app, base).stdout)
    assert d["weight_dtypes"]["asked"] == "deployable"
    assert d["weight_dtypes"]["tried"] == {"h100-sxm": ["bf16", "fp8"], "b200": ["bf16", "fp8", "nvfp4"]}
    r = CliRunner().invoke(app, base + ["--weight-dtypes", "fp8"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["weight_dtypes"] == {"asked": ["fp8"], "tried": {"h100-sxm": ["fp8"], "b200": ["fp8"]}}
    assert all(p["weight_dtype"] == "fp8" for o in [d["best"], *d["candidates"]] for p in o["pools"])
    text = CliRunner().invoke(app, base[:-1]).output
    assert "weights tried: h100-sxm bf16, fp8; b200 bf16, fp8, nvfp4 (default:" in text


def test_very_low_rates_simulate_requests_not_seconds():
    """Issue 21 (item 6): at 0.001 requests/s the fleet simulates its requests however long they span
    (the work is bounded by requests, not by simulated time): one replica, each request served alone,
    no internal 'duration = …' sentence; below 0.0001 requests/s it refuses in one sentence."""
    r = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-8b", "--request-rate", "0.001", "--input-tokens",
                                 "1000", "--output-tokens", "100", "--ttft-p99-s", "1", "--tpot-p99-s", "0.05",
                                 "--systems", "h100-sxm", "--json"])
    assert r.exit_code == 0, r.output
    b = json.loads(r.stdout)["best"]
    assert "duration" not in r.output
    assert sum(p["replicas"] for p in b["pools"]) == len(b["pools"])
    assert b["simulated"]["requests_simulated"] >= fl.FIRST_REQUESTS and b["simulated"]["converged"]


def test_fleet_plot_marks_the_verified_fleet(tmp_path):
    """The --plot chart is drawn from the same result (the aggregated frontier per million output
    tokens, analytic, and the verified fleet marked): the file is written and is a PNG."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "fleet.png"
    r = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-8b", "--request-rate", "50", "--input-tokens", "1000",
                                 "--output-tokens", "200", "--ttft-p99-s", "0.5", "--tpot-p99-s", "0.03", "--systems",
                                 "h100-sxm", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invariant_layouts_given_are_the_layouts_searched():
    """invariant: `fleet(layouts={system: [...]})` searches only the layouts given, for every pool
    (plan.plan_system(layouts=...) for decode and aggregated pools, the prefill pools directly)."""
    from tokenmath.parallelism import Layout

    f = fl.fleet(CAT.model("llama-3.1-8b"), [CAT.system("h100-sxm")], request_rate=20, input_tokens=500,
                 output_tokens=200, slo=fl.Slo(ttft_p99_s=1.0, tpot_p99_s=0.05), verify=1,
                 layouts={"h100-sxm": [Layout(tp=2)]})
    assert f.best is not None and all((p.tp, p.ep, p.pp) == (2, 1, 1) for p in f.best.pools)
