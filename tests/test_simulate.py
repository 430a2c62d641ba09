"""simulate.py (issue 7): the simulator agrees with the analytic model and the lecture's cadence bounds."""

import math

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath.cli import app
from tokenmath.simulate import simulate, simulate_many

CAT = tm.load_catalog()
M, S = CAT.model("llama-3.1-8b"), CAT.system("h100-sxm")


def test_light_load_throughput_equals_demand():
    """Below capacity every request is served: output tokens/s = arrival rate × output tokens (3 %)."""
    r = simulate(M, S, chips=1, rate_per_s=20, duration_s=600, input_tokens=500, output_tokens=200, seed=1)
    assert r.completed == r.requests
    assert r.output_tokens_per_s == pytest.approx(20 * 200, rel=0.03)


@pytest.mark.parametrize("prefill", ["first", "chunked"])
def test_saturated_throughput_matches_the_analytic_model(prefill):
    """Overloaded, the replica runs at its batch cap B (L̄ = I + O/2 on average).
    Prefill first (the planner's formula): O / (O·T_dec(B)/B + T_prefill), with
    T_dec = max(B·c(L̄), W + B·k(L̄)) and T_prefill = I·c(I/2).
    Chunked: each step also carries the B·I/O prompt tokens that keep the batch full, so
    T = max(B·c(L̄) + (B·I/O)·c(I/2), W + B·k(L̄)) and throughput = B/T: prompt compute hides inside
    memory-bound decode steps. That assumes the prompt work is spread evenly, so the chunk budget
    is set just above the steady need (B·I/O = 640 tokens per step). The simulation agrees within 10 %."""
    I, O, B = 500, 200, 256
    r = simulate(M, S, chips=1, rate_per_s=400, duration_s=300, input_tokens=I, output_tokens=O, max_batch=B,
                 prefill=prefill, chunk_tokens=700, seed=2)
    sl = tm.slopes(M, S, I + O / 2, chips=1)
    c_pre = float(tm.slopes(M, S, I / 2, chips=1).compute_s_per_seq)
    if prefill == "first":
        t_dec = max(B * sl.compute_s_per_seq, sl.weights_s + B * sl.kv_s_per_seq)
        analytic = O / (O * t_dec / B + I * c_pre)
    else:
        t = max(B * sl.compute_s_per_seq + B * I / O * c_pre, sl.weights_s + B * sl.kv_s_per_seq)
        analytic = B / t
    assert r.output_tokens_per_s == pytest.approx(analytic, rel=0.10)
    assert r.mean_batch == pytest.approx(B, rel=0.05)


def test_bursty_prefill_costs_throughput():
    """Sequences admitted together finish together: with a large chunk budget some steps carry
    thousands of prompt tokens (compute bound) and others none (memory bound); max() is convex, so
    the average step is longer than the smooth analytic one."""
    kw = dict(chips=1, rate_per_s=400, duration_s=300, input_tokens=500, output_tokens=200, max_batch=256,
              prefill="chunked", seed=2)
    smooth, bursty = simulate(M, S, chunk_tokens=700, **kw), simulate(M, S, chunk_tokens=2048, **kw)
    assert bursty.output_tokens_per_s < 0.85 * smooth.output_tokens_per_s


def test_L14_train_departs_every_T():
    """L14 (22:12): with a step departing every T whether full or not, a request waits at most T and
    has its token within 2·T; on average 1.5·T (uniform arrivals, trains never full)."""
    T = 0.02
    r = simulate(M, S, chips=1, rate_per_s=50, duration_s=300, input_tokens=100, output_tokens=1, cadence_s=T, seed=3)
    assert r.completed == r.requests
    assert r.latency_s["p99"] <= 2 * T + 1e-12
    assert r.ttft_s["mean"] == pytest.approx(1.5 * T, rel=0.03)


def test_chunked_prefill_cuts_ttft_under_load():
    kw = dict(chips=1, rate_per_s=60, duration_s=300, input_tokens=2000, output_tokens=200, seed=4)
    first = simulate(M, S, prefill="first", **kw)
    chunked = simulate(M, S, prefill="chunked", chunk_tokens=512, **kw)
    assert chunked.tpot_s["p99"] < first.tpot_s["p99"]  # decode is not paused by whole prefills


def test_batch_cap_is_memory_when_unset():
    r = simulate(CAT.model("llama-3.1-70b"), S, chips=2, rate_per_s=1, duration_s=10, input_tokens=4000, output_tokens=100)
    # what a serving engine fills of each H100's 80 GiB (aiconfigurator h100_sxm.yaml): 90 % less the
    # runtime's 3.5 GiB and NCCL's 392 MiB (layout.serving_hbm_bytes), less the weights
    free = 2 * (0.9 * 80 * 2**30 - 3.5 * 2**30 - 392 * 2**20) - tm.weight_bytes(CAT.model("llama-3.1-70b"))
    assert r.max_batch == int(free / 327_680 // 4100)


def test_sweep_in_process_and_on_dask():
    runs = [dict(rate_per_s=rate, duration_s=60, input_tokens=300, output_tokens=50, chips=1, seed=5) for rate in (5, 20)]
    local = simulate_many(M, S, runs)
    dist = simulate_many(M, S, runs, scheduler="local")
    assert [r.output_tokens_per_s for r in local] == [r.output_tokens_per_s for r in dist]
    assert local[1].output_tokens_per_s > local[0].output_tokens_per_s


def test_bad_inputs():
    with pytest.raises(tm.TokenmathError, match="prefill"):
        simulate(M, S, rate_per_s=1, duration_s=10, prefill="lazy")
    with pytest.raises(tm.TokenmathError, match="duration"):
        simulate(M, S, rate_per_s=1, duration_s=-1)


def test_cli_simulate_json():
    res = CliRunner().invoke(app, ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1",
                                   "--rate", "10", "--duration-s", "60", "--json"])
    assert res.exit_code == 0, res.stderr
    import json

    rec = json.loads(res.stdout)
    assert {"ttft_s", "tpot_s", "output_tokens_per_s", "completed"} <= set(rec)
    assert set(rec["ttft_s"]) == {"p50", "p90", "p99", "mean"}


def test_cli_simulate_names_its_step_times():
    """Issue 11: the simulator runs the estimate (linearised, labelled) unless asked for the bound."""
    import json

    base = ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--rate", "20",
            "--duration-s", "30", "--json"]
    est = json.loads(CliRunner().invoke(app, base).stdout)
    bound = json.loads(CliRunner().invoke(app, base + ["--efficiency", "roofline"]).stdout)
    assert "linearised" in est["estimate"] and bound["estimate"] == "roofline"
    assert est["tpot_s"]["p50"] > bound["tpot_s"]["p50"]


def test_step_cap_refuses_runs_that_must_exceed_it_and_stops_the_loop(monkeypatch):
    """Issue 12 (unbounded work): a run whose outputs alone need more than MAX_STEPS steps is refused
    up front, and the loop stops at MAX_STEPS with the same sentence; the issue-13 workload (1 h at
    100 req/s, ~3 M steps) stays allowed (benchmarks/bench_simulate.py)."""
    import tokenmath.simulate as sm

    m, s = tm.get_model("llama-3.1-8b"), tm.get_system("h100-sxm")
    with pytest.raises(tm.TokenmathError, match="at least"):
        sm.simulate(m, s, chips=1, rate_per_s=1000, duration_s=1000, output_tokens=5000, max_batch=1)
    monkeypatch.setattr(sm, "MAX_STEPS", 500)
    for method in ("events", "steps"):  # the closed-form runs count the steps they stand for
        with pytest.raises(tm.TokenmathError, match="beyond the 500"):
            sm.simulate(m, s, chips=1, rate_per_s=10, duration_s=60, output_tokens=200, max_batch=4, method=method)


# Issue 13: the default `method="events"` advances runs of decode steps in closed form; it must give
# the step loop's answer. Each workload exercises one path: arrivals that join mid-run, a full batch,
# the KV cap, prompts longer than the chunk, outputs of one token, the compute/memory crossing inside
# a run (bursts of 400 short prompts at a batch of 400 start compute bound, then the growing context
# makes them memory bound), per-step overhead and the fixed cadence.
_BURSTS = np.repeat(np.arange(0, 60, 10.0), 400) + np.tile(np.linspace(0, 0.01, 400), 6)
WORKLOADS = {
    "deepseek-light": (CAT.model("deepseek-v3"), CAT.system("gb200-nvl72"),
                       dict(chips=72, rate_per_s=100, duration_s=120, input_tokens=2000, output_tokens=500)),
    "saturated": (M, S, dict(chips=1, rate_per_s=400, duration_s=120, input_tokens=500, output_tokens=200,
                              max_batch=256, chunk_tokens=700, seed=2)),
    "kv-capped": (CAT.model("llama-3.1-70b"), S, dict(chips=2, rate_per_s=20, duration_s=120, input_tokens=4000,
                                                       output_tokens=300, max_batch=10_000, chunk_tokens=1024)),
    "sampled": (M, S, dict(chips=1, rate_per_s=30, duration_s=120, input_tokens=[100, 500, 3000],
                            output_tokens=[1, 20, 400], chunk_tokens=512, overhead_s=2e-3, seed=7)),
    "bursts": (M, S, dict(chips=1, rate_per_s=1, arrivals=_BURSTS, duration_s=60, input_tokens=20,
                           output_tokens=1000, max_batch=400)),
    "cadence": (M, S, dict(chips=1, rate_per_s=50, duration_s=120, input_tokens=100, output_tokens=50,
                            cadence_s=0.02, seed=3)),
    "cadence-long": (M, S, dict(chips=1, rate_per_s=0.5, duration_s=3000, input_tokens=100, output_tokens=3000,
                                 cadence_s=0.01, seed=3)),
}


@pytest.mark.parametrize("prefill", ["first", "chunked"])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_closed_form_runs_equal_the_step_loop(name, prefill):
    model, system, kw = WORKLOADS[name]
    fast = simulate(model, system, prefill=prefill, **kw)
    ref = simulate(model, system, prefill=prefill, method="steps", **kw)
    assert (fast.requests, fast.completed, fast.max_batch) == (ref.requests, ref.completed, ref.max_batch)
    assert fast.steps == pytest.approx(ref.steps, rel=1e-3)
    for field in ("ttft_s", "tpot_s", "latency_s"):
        for q in ("p50", "p90", "p99", "mean"):
            assert getattr(fast, field)[q] == pytest.approx(getattr(ref, field)[q], rel=0.01), (field, q)
    assert fast.output_tokens_per_s == pytest.approx(ref.output_tokens_per_s, rel=0.01)
    assert fast.mean_batch == pytest.approx(ref.mean_batch, rel=0.01)


def test_the_kv_capped_and_burst_workloads_reach_their_limits():
    """The comparisons above mean something only if the paths they name are taken: the 70B workload
    runs 3 sequences (the KV cap: (2 × 73.1 GB a serving engine fills − 141.1 GB of weights) /
    (327,680 B × 4,300 tokens) = 3.8 at the longest context) under a batch cap of 10,000, and the
    bursts cross from compute bound to memory bound inside a run (a step at 400 sequences: compute >
    memory at context 21,
    memory > compute at context 1,020)."""
    model, system, kw = WORKLOADS["kv-capped"]
    r = simulate(model, system, **kw)
    assert r.max_batch == 10_000 and 2.5 < r.mean_batch <= 3
    short, long_ = tm.slopes(M, S, 21, chips=1), tm.slopes(M, S, 1020, chips=1)
    assert 400 * short.compute_s_per_seq > short.weights_s + 400 * short.kv_s_per_seq
    assert 400 * long_.compute_s_per_seq < long_.weights_s + 400 * long_.kv_s_per_seq


@pytest.mark.parametrize("method", ["events", "steps"])
def test_a_train_departs_every_T_late_in_a_long_run(method):
    """Fixed cadence: decoding sequences take every departure, also after 300,000 periods (a step
    ending on a departure used to miss it one time in five once t/T passed ~4,500: the tolerance was
    an absolute 1e-12 periods, below one ulp of t/T). Prompts pause decoding only for the ~1 % of
    departures that carry one, so the median time per token is T."""
    model, system, kw = WORKLOADS["cadence-long"]
    r = simulate(model, system, method=method, **kw)
    assert r.tpot_s["p50"] == pytest.approx(0.01, rel=0.01)


def test_steps_until_is_the_smallest_count_that_reaches():
    """The quadratic's root, nudged for rounding, against counting step by step."""
    from tokenmath.simulate import _steps_until

    for a, b, x in ((1e-3, 0.0, 0.0105), (1e-3, 2e-7, 0.5), (2.0, 1.0, 7.0), (1e-3, 1e-9, 1e-3), (5e-3, 1e-6, 1e-9)):
        for strict in (False, True):
            k, total = 1, a
            while not (total > x if strict else total >= x):
                k, total = k + 1, total + a + b * k
            assert _steps_until(a, b, x, strict) == k, (a, b, x, strict)


def test_unknown_method_is_refused():
    with pytest.raises(tm.TokenmathError, match="method"):
        simulate(M, S, rate_per_s=1, duration_s=10, method="fast")


def test_given_arrivals_may_span_longer_than_generated_ones():
    """Issue 21 (fleet at 0.001 requests/s): the work of a run with given arrival times is bounded by
    their number and MAX_STEPS, so their window may pass MAX_DURATION_S (which bounds rate × duration
    for generated arrivals); a generated run that long is still refused in one sentence. 50 requests
    a day apart are each served alone: every TTFT is the same lone prefill (rel 1e-9)."""
    import tokenmath.simulate as sm

    m, s = tm.get_model("llama-3.1-8b"), tm.get_system("h100-sxm")
    times = np.arange(50) * 86_400.0
    r = sm.simulate(m, s, chips=1, rate_per_s=1 / 86_400, duration_s=times[-1] + 1.0, input_tokens=500,
                    output_tokens=20, arrivals=times, per_request=True)
    assert times[-1] > sm.MAX_DURATION_S and r.completed == 50
    assert np.allclose(r.ttft_each_s, r.ttft_each_s[0], rtol=1e-9)
    with pytest.raises(tm.TokenmathError, match="at most 1e\\+06 s"):
        sm.simulate(m, s, chips=1, rate_per_s=1e-5, duration_s=5e6, input_tokens=500, output_tokens=20)


def test_invariant_linearised_simulator_agrees_with_the_estimate_on_attention_dp():
    """Invariant: on an attention-data-parallel layout (DeepSeek-V3 on a GB200 NVL72, TP1 EP72) the
    simulator's linearised step matches the estimate of the same step. It calibrated its FLOP
    efficiency on one prompt, which runs on one of the 72 attention ranks while the roofline spreads
    its FLOPs over all of them: an efficiency of ~1/72 that a user review found making every token
    ~100× slow (2.46 s per token at a batch whose step the estimate puts at 25 ms). Now one prompt per
    rank: the TPOT p50 at 50 requests/s of 1,000 in / 500 out is the estimated step at the run's mean
    batch and context within 25 % (the linearisation's own approximation)."""
    from conftest import cli_json

    r = cli_json("simulate", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--rate", "50", "--duration-s", "120",
                 "--input-tokens", "1000", "--output-tokens", "500")
    s = cli_json("step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", f"{r['mean_batch']:.0f}",
                 "--context", "1250")
    assert r["tpot_s"]["p50"] == pytest.approx(s["step_s"], rel=0.25)


def test_a_cadence_shorter_than_any_step_is_refused():
    """A fixed cadence makes every step last T whatever it carries (the lecture's trains); a T shorter
    than reading the weights once (plus the per-step overhead) cannot be: one sentence, naming that
    floor (a user review found a 1,000-token prefill 'served' in 145 µs at --cadence-s 0.0001)."""
    with pytest.raises(tm.TokenmathError, match="shorter than any step can be"):
        simulate(tm.get_model("llama-3.1-8b"), tm.get_system("h100-sxm"), chips=1, rate_per_s=10, duration_s=60,
                 input_tokens=1000, output_tokens=100, cadence_s=1e-4)
