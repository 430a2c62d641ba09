"""stepmodel.closed_loop / client_metrics (issue 22): what a benchmark client at a fixed
concurrency reports — TTFT, TPOT = (E2E − TTFT)/(O − 1), output tokens / run time — from the
engine's decode step and the time each prompt adds (docs/validation.md, "How each metric is
predicted")."""

import math

import numpy as np
import pytest

import tokenmath as tm
from tokenmath.errors import TokenmathError
from tokenmath.parallelism import Layout
from tokenmath.profiles import choose
from tokenmath.specs import Dtypes
from tokenmath.stepmodel import client_metrics, closed_loop, op_step, steady_step_s

# dstack's DeepSeek-R1 benchmark (github dstackai/benchmarks, branch deepseek-r1-benchmark, commit
# 7f37e66977, Deepseek-R1/raw_data/online_results.csv; blog 2025-03-18): SGLang bench_serving, random
# dataset with --random-range-ratio 1 (fixed lengths: 3,200 in), 500 prompts, --max-concurrency c.
# (name, c, output tokens, mean_ttft_ms, mean_tpot_ms, output_throughput tok/s, completed)
DSTACK = [
    ("mi300x-vllm-3200-800-c4", 4, 800, 1259.239487, 46.20285759, 83.82220831, 500),
    ("mi300x-vllm-3200-800-c16", 16, 800, 4261.061847, 55.57127128, 258.1444835, 500),
    ("mi300x-vllm-3200-800-c64", 64, 800, 12233.66578, 77.96798761, 671.838344, 500),
    ("mi300x-vllm-3200-800-c128", 128, 800, 22245.64614, 109.0719536, 914.7383228, 500),
    ("h200-sglang-3200-800-c32", 32, 800, 10992.45549, 63.63639162, 405.5433975, 500),
    ("h200-sglang-3200-800-c128", 128, 800, 36230.47317, 110.7541571, 802.5429047, 500),
    ("h200-vllm-3200-800-c64", 64, 800, 14164.37107, 65.61773396, 758.3782529, 500),
    ("mi300x-sglang-3200-800-c16", 16, 800, 4186.809573, 47.0948801, 300.9758512, 500),
    ("mi300x-sglang-3200-3200-c128", 128, 3200, 27824.34941, 121.9050897, 957.6705109, 500),
]
# the c = 128 series over output length, same runs (name, O, TTFT ms, TPOT ms)
DSTACK_SERIES = {
    "mi300x-vllm": [(800, 22245.64614, 109.0719536), (1600, 22502.75001, 102.5909757),
                    (3200, 22143.35855, 103.1311934), (6400, 28339.55226, 127.9427978)],
    "mi300x-sglang": [(800, 27308.81256, 135.7318958), (1600, 27706.32235, 123.2047534),
                      (3200, 27824.34941, 121.9050897), (6400, 35202.17118, 137.7621777)],
    "h200-sglang": [(800, 36230.47317, 110.7541571), (1600, 35417.987, 100.4008092),
                    (3200, 32593.70738, 96.69052681), (6400, 31927.771, 99.47912898)],
}


def _invert(c, O, ttft_s, tpot_s, arrivals):
    """The decode step T_d and per-prompt prefill W that client_metrics maps to the measured TTFT
    and TPOT. For waves it is linear in both: read its coefficients off unit inputs."""
    assert arrivals == "waves"
    a = client_metrics(c, c, 1.0, 0.0, O, arrivals=arrivals)
    b = client_metrics(c, c, 0.0, 1.0, O, arrivals=arrivals)
    m = np.array([[a.ttft_s, b.ttft_s], [a.tpot_s, b.tpot_s]])
    return np.linalg.solve(m, [ttft_s, tpot_s])


def _invert_spread(c, O, ttft_s, tpot_s):
    """The same reading for spread arrivals, where a prompt's wait behind others (prompt_wait_s)
    makes it non-linear: the (T_d, W) > 0 on a fine log grid whose client numbers are nearest the
    measured ones (log distance)."""
    t_d = np.geomspace(1e-4, 1.0, 500)[:, None]
    w = np.geomspace(1e-4, 100.0, 500)[None, :]
    r = client_metrics(float(c), float(c), t_d, w, O)
    dist = np.hypot(np.log(r.ttft_s / ttft_s), np.log(np.maximum(r.tpot_s, 1e-12) / tpot_s))
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    return t_d[i, 0], w[0, j]


@pytest.mark.parametrize("name,c,O,ttft_ms,tpot_ms,tput,n", DSTACK, ids=[d[0] for d in DSTACK])
def test_client_throughput_from_ttft_and_tpot_matches_dstack(name, c, O, ttft_ms, tpot_ms, tput, n):
    """Published: dstack's bench_serving rows give TTFT, TPOT and output throughput separately.
    Through the client's definitions (E2E = TTFT + (O − 1)·TPOT; c requests in flight, Little's
    law; fixed lengths run in waves, so 500 prompts take ceil(500/c) waves) the first two give
    the third within 1.5 % (the rows' own rounding is ~0.1 %; the fit of the wave model is what
    is tested). The steady state alone (no ramp) is 1.5–2.5 % high wherever 500/c is not whole.
    TensorRT-LLM rows are left out: their 'concurrency' column (4–28× the client's) says the
    server saw a different load than the client's semaphore."""
    t_d, w = _invert(c, O, ttft_ms / 1e3, tpot_ms / 1e3, "waves")
    assert t_d > 0 and w > 0
    run = client_metrics(c, c, t_d, w, O, arrivals="waves", requests=n)
    assert float(run.e2e_s) == pytest.approx(ttft_ms / 1e3 + (O - 1) * tpot_ms / 1e3, rel=1e-9)
    assert float(run.output_tokens_per_s) == pytest.approx(tput, rel=0.015)
    steady = float(client_metrics(c, c, t_d, w, O, arrivals="waves").output_tokens_per_s)
    if n % c:
        assert steady / tput - 1 > 0.005
    else:
        assert steady == pytest.approx(tput, rel=0.002)


@pytest.mark.parametrize("run", sorted(DSTACK_SERIES))
def test_fixed_length_runs_are_waves_not_spread(run):
    """Published (dstack, c = 128, O = 800 … 6,400, same engine and prompts): read through the
    wave accounting (half of a wave's prefill lands in TTFT, half stretches the decode), every
    run gives a positive decode step that grows with the context (I + O/2 from 3,600 to 6,400),
    and one prefill time per prompt across output lengths within ±30 %. Read as spread arrivals
    (every other prompt inside a request's decode, less the wait behind the prompts ahead of it)
    the same identical prompts would need a prefill time that grows more than 3-fold with the
    output length: fixed-length runs are waves."""
    rows = DSTACK_SERIES[run]
    waves = [_invert(128, O, ttft / 1e3, tpot / 1e3, "waves") for O, ttft, tpot in rows]
    t_d = [x[0] for x in waves]
    w = [x[1] for x in waves]
    assert all(t > 0 for t in t_d)
    assert t_d[-1] > t_d[0]
    assert max(w) / min(w) < 1.3
    spread = [_invert_spread(128, O, ttft / 1e3, tpot / 1e3) for O, ttft, tpot in rows]
    w_spread = [x[1] for x in spread]
    assert w_spread[-1] / w_spread[0] > 3


def _dsr1():
    m, s = tm.get_model("deepseek-r1"), tm.get_system("h200-sxm")
    prof = choose(engine="sglang", system=s)
    return m, s, Layout(tp=8, ep=1, pp=1, dp=1), prof, Dtypes(weight="fp8", kv="bf16")


def test_invariant_client_identities_and_the_server_mean_step():
    """Invariant: E2E = TTFT + (O − 1)·TPOT for every request; output/s = c·O/E2E; the server's
    mean step (steady_step_s) is the cycle over O; prefill share = B·W/cycle."""
    m, s, lay, prof, dt = _dsr1()
    c = np.array([1.0, 8.0, 64.0, 128.0])
    for arrivals in ("spread", "waves"):
        r = closed_loop(m, s, lay, c, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt, arrivals=arrivals)
        np.testing.assert_allclose(r.e2e_s, r.ttft_s + 799 * r.tpot_s, rtol=1e-12)
        np.testing.assert_allclose(r.output_tokens_per_s, c * 800 / r.e2e_s, rtol=1e-12)
        np.testing.assert_allclose(r.prefill_share, c * r.prefill_s / r.cycle_s, rtol=1e-12)
        steady = steady_step_s(m, s, lay, c, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt)
        np.testing.assert_allclose(steady, r.cycle_s / 800, rtol=1e-12)
    # one request: its own prompt is all of its TTFT, none of its TPOT
    one = closed_loop(m, s, lay, 1, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt)
    assert one.tpot_s == pytest.approx(one.decode_step_s, rel=1e-12)
    assert one.ttft_s == pytest.approx(one.decode_step_s + one.prefill_s, rel=1e-12)
    # waves move prefill from the decode into TTFT, same cycle
    sp = closed_loop(m, s, lay, 128, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt)
    wv = closed_loop(m, s, lay, 128, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt, arrivals="waves")
    assert wv.cycle_s == pytest.approx(sp.cycle_s) and wv.tpot_s < sp.tpot_s and wv.ttft_s > sp.ttft_s


def test_invariant_a_prompts_wait_behind_others_is_the_m_d_1_mean():
    """Invariant: with spread arrivals a prompt waits Wq = ρ·W/(2(1 − ρ)) behind the others (the
    Pollaczek–Khinchine mean for a single server with fixed service W at utilisation ρ = B·W/cycle;
    Kleinrock, Queueing Systems vol. 1, 1975), never more than the B − 1 other prompts, not at all
    alone or in waves; what it waits is in its TTFT and out of its decode (the cycle is unchanged)."""
    m, s, lay, prof, dt = _dsr1()
    c = np.array([1.0, 8.0, 64.0, 128.0])
    r = closed_loop(m, s, lay, c, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt)
    rho = r.prefill_share
    np.testing.assert_allclose(r.prompt_wait_s, np.minimum(rho * r.prefill_s / (2 * (1 - rho)), (c - 1) * r.prefill_s),
                               rtol=1e-12)
    assert r.prompt_wait_s[0] == 0.0 and np.all(np.diff(r.prompt_wait_s) > 0)
    np.testing.assert_allclose(r.ttft_s, r.decode_step_s + r.prefill_s + r.prompt_wait_s, rtol=1e-12)
    wv = closed_loop(m, s, lay, c, 3200, 800, kernels=prof.kernels, engine=prof.engine, dtypes=dt, arrivals="waves")
    assert np.all(wv.prompt_wait_s == 0.0)
    # a prompt far longer than the decode it rides: the cap (B − 1)·W binds
    big = client_metrics(4.0, 4.0, 0.001, 1.0, 10.0)
    assert big.prompt_wait_s == pytest.approx(3.0) and big.ttft_s == pytest.approx(0.001 + 1.0 + 3.0)


def test_invariant_beyond_the_batch_cap_requests_queue():
    """Invariant: above the cap the engine runs the cap; the rest wait (E2E grows with the
    concurrency, TPOT and output/s stay those of the cap) — the client sees a plateau."""
    m, s, lay, prof, dt = _dsr1()
    kw = dict(kernels=prof.kernels, engine=prof.engine, dtypes=dt, batch_cap=100.0)
    at, above = (closed_loop(m, s, lay, c, 1000, 3700, **kw) for c in (100.0, 200.0))
    assert above.decode_batch == 100.0 and above.queue_s == pytest.approx(at.e2e_s)
    assert above.tpot_s == pytest.approx(at.tpot_s) and above.output_tokens_per_s == pytest.approx(at.output_tokens_per_s)
    assert above.e2e_s == pytest.approx(2 * at.e2e_s)


def test_invariant_mean_context_of_a_long_reasoning_decode():
    """Invariant (issue 22: DeepSeek-R1 at ~3.7k output tokens): the decode step at the mean
    context I + O/2 is the mean of the steps a request sees over its decode (context I … I + O),
    within 1 % — the step is near-linear in context, so one pass at the mean stands for them all."""
    m, s, lay, prof, dt = _dsr1()
    I, O, B = 1000.0, 3700.0, 64.0
    ctx = I + np.arange(0.0, O, 50.0)
    steps = op_step(m, s, lay, B, ctx, 1.0, kernels=prof.kernels, engine=prof.engine, dtypes=dt, check=False).step_s
    at_mean = op_step(m, s, lay, B, I + O / 2, 1.0, kernels=prof.kernels, engine=prof.engine, dtypes=dt, check=False).step_s
    assert float(at_mean) == pytest.approx(float(np.mean(steps)), rel=0.01)
    assert np.asarray(steps)[-1] > 1.1 * np.asarray(steps)[0]  # and the KV read does grow with it


@pytest.mark.parametrize("kw,fragment", [
    (dict(arrivals="burst"), "arrivals = 'burst'"),
    (dict(requests=0), "requests = 0"),
    (dict(batch_cap=0.5), "batch cap = 0.5"),
    (dict(concurrency=0.0), "concurrency"),
    (dict(output_tokens=math.inf), "output tokens"),
])
def test_closed_loop_bad_input_is_one_sentence(kw, fragment):
    m, s, lay, prof, dt = _dsr1()
    args = dict(concurrency=8.0, input_tokens=1000, output_tokens=1000) | {k: v for k, v in kw.items()
                                                                          if k in ("concurrency", "output_tokens")}
    rest = {k: v for k, v in kw.items() if k not in args}
    with pytest.raises(TokenmathError, match=fragment.replace("(", r"\(")):
        closed_loop(m, s, lay, args["concurrency"], args["input_tokens"], args["output_tokens"], kernels=prof.kernels,
                    engine=prof.engine, dtypes=dt, **rest)
