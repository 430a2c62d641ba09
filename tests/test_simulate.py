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
    free = 2 * 80e9 - tm.weight_bytes(CAT.model("llama-3.1-70b"))
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
    with pytest.raises(tm.TokenmathError, match="beyond the 500"):
        sm.simulate(m, s, chips=1, rate_per_s=10, duration_s=60, output_tokens=200, max_batch=4)
