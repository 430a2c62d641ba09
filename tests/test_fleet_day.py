"""Fleets over a day (fleet.fleet_day, ratecurve.py), MTP in decode pools (speculative.py) and the
prefix cache's tier (prefix_tier.py): issue 25."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import fleet as fl
from tokenmath.cli import app
from tokenmath.ratecurve import example_path, parse_rate_curve, rate_curve, read_rate_curve

CAT = tm.load_catalog()
DEEPSEEK = ("https://github.com/deepseek-ai/open-infra-index/blob/main/202502OpenSourceWeek/"
            "day_6_one_more_thing_deepseekV3R1_inference_system_overview.md (commit 56d8685)")
EXAMPLE = str(example_path())


def _deepseek_day(**extra):
    """DeepSeek's published day (DEEPSEEK): 608 B input tokens (56.3 % hit the on-disk KV cache) and
    168 B output tokens at 20–22 tokens/s per user. As requests (tests/test_fleet.py's
    deepseek_production): I = 4,383, O = 1,211, a 4,382-token prefix hit by 56.3 % (on SSD: an
    on-disk cache), TPOT p50 ≤ 50 ms (20 tokens/s). The rate over the day follows the shipped curve
    (the node-count chart's shape at the published mean rate; an assumption stated in the file)."""
    return fl.fleet_day(CAT.model("deepseek-v3"), [CAT.system("h800-sxm")], read_rate_curve(EXAMPLE),
                        input_tokens=4383, output_tokens=1211, prefix_tokens=4382, prefix_hit_rate=0.563,
                        disaggregation="on", slo=fl.Slo(tpot_p50_s=0.05, ttft_p99_s=10.0), usd_per_chip_hour=2.0,
                        prefix_cache_tier="ssd", storage=CAT.storage, **{"engine": DEEPSEEK_ENGINE, **extra})


# DeepSeek's serving engine as DEEPSEEK states it: DeepEP's all-to-all and a dual-batch overlap that hides
# the communication of one microbatch under the other's compute (catalog/engines.toml's named features)
DEEPSEEK_ENGINE = "generic+deepep_auto+two_batch_overlap"


@pytest.fixture(scope="module")
def deepseek_day():
    return _deepseek_day()


# ---- the shipped curve against what DeepSeek published --------------------------------------


def test_example_curve_matches_the_published_day():
    """Published (DEEPSEEK): 226.75 nodes on average and 278 at peak over 24 h; 168 B output tokens
    per day. The shipped curve is the node chart's shape at the published output: its mean/peak must be
    226.75/278 and its requests × O = 1,211 must be 168 B tokens per day. Tolerance: the rates are
    written to 0.1 requests/s (rel 1e-4)."""
    c = read_rate_curve(EXAMPLE)
    assert c.span_s == 86_400 and len(c.time_s) == 96
    assert c.mean_requests_per_s / c.peak_requests_per_s == pytest.approx(226.75 / 278, rel=1e-4)
    assert c.mean_requests_per_s * 86_400 * 1211 == pytest.approx(168e9, rel=1e-4)


# ---- the DeepSeek production check ------------------------------------------------------------


def test_deepseek_day_node_count(deepseek_day):
    """Published (DEEPSEEK): over 24 h from 2025-02-27 12:00 UTC+8, V3/R1 ran on 226.75 H800 nodes on
    average and 278 at peak (8 GPUs each), with EP32 prefill and EP144 decode; each node ~73.7k input
    tokens/s prefilling (cache hits included) or ~14.8k output tokens/s decoding. `fleet --rate-curve`
    at the published load, on DeepSeek's engine (DeepEP, dual-batch overlap), must land within ±30 % of
    both node counts (the issue's target), with wide EP — each pool's EP group spanning several 8-GPU
    nodes, as DeepSeek's — and its per-node rates within ±30 % too. Measured (2026-12-07, with a
    per-step cost per source fitted beside the shared scales, calibrate.SOURCE_EFFECTS): 262.9 / 312
    nodes (+16 % / +12 %), prefill EP64 at 89.9k per node (EP32 at the same 768 GPUs at the peak before
    it, 262.2 nodes on average; EP16 with HBM in GiB and the engine's reserve apart) (+22 %: a pool's capacity at the peak against a
    day's average), decode EP288 (DeepSeek's 288 expert slots) at 11.0k (−25 %, the figure nearest
    the window; with the GiB and the grid's batch, EP144 at 10.2k; EP32 prefill before; 265.4 / 316
    and EP16 prefill at 86.3k before that refit, 243.2 / 290 nodes and EP256 decode at 12.4k before
    the one that charges a MoE layer without shared experts only its attention's dense kernels).
    Prefill on EP16, EP32 and EP64 is within 1 % per GPU on the estimate (docs/fleet.md), so which
    the fleet keeps is below the estimate's resolution; the test asks only that both pools leave
    the node. Without DeepSeek's overlap (the generic engine): 313.6 / 382 (+38 % / +37 %), the
    dual-batch overlap is the difference — the test below."""
    d = deepseek_day
    assert d.nodes_average == pytest.approx(226.75, rel=0.30)
    assert d.nodes_peak == pytest.approx(278, rel=0.30)
    pre, dec = d.pools
    node = 8  # GPUs per H800 node (DEEPSEEK)
    assert pre.role == "prefill" and dec.role == "decode" and pre.ep > node and dec.ep > node
    pre_node, dec_node = (float(x) for x in d.tokens_per_s_per_node_at_peak)
    assert pre_node == pytest.approx(73_700, rel=0.30)
    assert dec_node == pytest.approx(14_800, rel=0.30)


def test_invariant_deepseek_day_needs_the_overlap():
    """The same day on the generic engine (no dual-batch overlap; DeepEP's kernels chosen by the
    generic profile) needs more nodes than on DeepSeek's engine: the cross-node dispatch and combine
    then add to each step instead of hiding under the other microbatch's compute. Invariant of the
    feature (the generic answer is measured at 313.6 / 382 nodes, 1.38× the published average)."""
    generic = _deepseek_day(engine=None)
    ours = _deepseek_day()
    assert generic.nodes_average > ours.nodes_average * 1.1


def test_invariant_day_sizing(deepseek_day):
    """Invariant: each interval's replicas are ⌈λ(t) / verified capacity per replica⌉ (at least 1, at
    most the peak's); the day's averages, peaks and cost are the intervals' sums; warm-up is the
    started replicas' weight-load chip-time."""
    d = deepseek_day
    lam = np.array([i.requests_per_s for i in d.intervals])
    dur = np.array([i.duration_s for i in d.intervals])
    for j, (p, cap) in enumerate(zip(d.pools, d.capacity_requests_per_s)):
        assert cap == pytest.approx(lam.max() / p.replicas)
        R = np.array([i.replicas[j] for i in d.intervals])
        assert (R == np.clip(np.ceil(lam / cap - 1e-9), 1, p.replicas)).all()
        assert R.max() == p.replicas  # the peak interval is the verified fleet
        started = np.maximum(R - np.roll(R, 1), 0)
        assert (started == np.array([i.started[j] for i in d.intervals])).all()
    chips = np.array([i.chips for i in d.intervals])
    warm = np.array([i.warmup_chip_s for i in d.intervals])
    assert d.chips_peak == chips.max()
    assert d.serving_chips_average == pytest.approx(chips @ dur / 86_400)
    assert d.chips_average == pytest.approx((chips @ dur + warm.sum()) / 86_400)
    assert d.nodes_peak == max(i.nodes for i in d.intervals)
    assert d.usd_per_day == pytest.approx((chips @ dur + warm.sum()) * 2.0 / 3600)
    assert d.warmup_usd_per_day == pytest.approx(warm.sum() * 2.0 / 3600)
    # H800 nodes are 8 GPUs: 16-GPU replicas fill whole nodes
    assert all(i.nodes == i.chips / 8 for i in d.intervals)


def test_invariant_scale_up_warmup_is_weights_over_load_bandwidth():
    """Invariant: a replica started between intervals is charged weights per chip / load bandwidth as
    chip-time (Llama-3.1-8B in FP8 on one H100: 8.03 GB / 2 GB/s ≈ 4.0 s); stopping is free; the
    curve repeats (the first interval follows the last)."""
    c = rate_curve([0, 3600, 7200, 10800], [30, 120, 120, 30], name="toy")
    d = fl.fleet_day(CAT.model("llama-3.1-8b"), [CAT.system("h100-sxm")], c, input_tokens=1000, output_tokens=200,
                     slo=fl.Slo(ttft_p99_s=2, tpot_p99_s=0.05), disaggregation="off", load_bytes_per_s=2e9)
    (p,) = d.pools
    from tokenmath.params import weight_bytes

    assert p.chips_per_replica == 1
    assert d.load_s[0] == pytest.approx(weight_bytes(CAT.model("llama-3.1-8b"), p.weight_dtype) / 2e9, rel=0.02)
    R = [i.replicas[0] for i in d.intervals]
    assert R[0] == R[3] < R[1] == R[2] == p.replicas
    assert [i.started[0] for i in d.intervals] == [0, R[1] - R[0], 0, 0]
    assert d.intervals[1].warmup_chip_s == pytest.approx((R[1] - R[0]) * d.load_s[0])
    assert d.span_s == 4 * 3600 and "24 h / span" in d.notes[-1]
    assert d.usd_per_day == pytest.approx(sum(i.usd for i in d.intervals) * 6)


# ---- the reader ------------------------------------------------------------------------------


def test_rate_curve_csv_and_json_lines_agree(tmp_path):
    """Invariant: the same rows as CSV and JSON lines read the same; the last row holds as long as the
    gap before it."""
    a = tmp_path / "a.csv"
    a.write_text("time_s,requests_per_s\n0,10\n3600,20\n7200,5\n")
    b = tmp_path / "b.jsonl"
    b.write_text('{"time_s": 0, "requests_per_s": 10}\n{"time_s": 3600, "requests_per_s": 20}\n'
                 '{"time_s": 7200, "requests_per_s": 5}\n')
    x, y = read_rate_curve(a), read_rate_curve(b)
    assert list(x.duration_s) == list(y.duration_s) == [3600, 3600, 3600]
    assert list(x.requests_per_s) == list(y.requests_per_s) == [10, 20, 5]
    assert x.mean_requests_per_s == pytest.approx(35 / 3)


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("time,rate\n0,1\n1,2\n", "expected `time_s,requests_per_s`"),
    ("time_s,requests_per_s\n0,1\n", "expected at least 2"),
    ("time_s,requests_per_s\n0,1\n60,abc\n", "row 2: requests_per_s = 'abc'; expected a number"),
    ("time_s,requests_per_s\n0,1\n60,nan\n", "row 2: requests_per_s = nan"),
    ("time_s,requests_per_s\n0,1\n60,-3\n", "row 2: requests_per_s = -3.0"),
    ("time_s,requests_per_s\n0,1\n60,1e9\n", "expected a number from 0 to 1e+07"),
    ("time_s,requests_per_s\n60,1\n0,2\n", "row 2: time_s = 0 is not after the row before (60)"),
    ("time_s,requests_per_s\n0,1\n60\n", "row 2 (line 3) has 1 values; expected 2"),
    ("time_s,requests_per_s\n0,0\n60,0\n", "every requests_per_s is 0"),
    ('{"time_s": 0, "requests_per_s": 1}\n{"time_s": 60}\n', "line 2: expected an object with keys"),
    ('{"time_s": 0, "requests_per_s": 1}\n{"time_s": 60, "requests_per_s": true}\n', "row 2: requests_per_s = 'True'"),
    ('{"time_s": 0, "requests_per_s": 1}\n{"time_s": 60, "requests_per_s": NaN}\n', "line 2 is not JSON"),
])
def test_rate_curve_errors_are_one_sentence(text, words):
    with pytest.raises(tm.TokenmathError) as e:
        parse_rate_curve(text, "rate curve x.csv")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_rate_curve_rows_are_bounded():
    from tokenmath import ratecurve as rc

    text = "time_s,requests_per_s\n" + "".join(f"{i},1\n" for i in range(rc.MAX_CURVE_ROWS + 1))
    with pytest.raises(tm.TokenmathError, match="more than 20,160 rows"):
        parse_rate_curve(text, "rate curve x.csv")


@pytest.mark.parametrize("args, words", [
    (["--rate-curve", "nosuch.csv"], "rate curve nosuch.csv does not exist"),
    (["--rate-curve", EXAMPLE, "--request-rate", "10"], "leave out --request-rate"),
    (["--rate-curve", "example:nope"], "no example rate curve 'nope'; shipped: deepseek-v3-day"),
    (["--rate-curve", EXAMPLE, "--export", "vllm"], "--export writes the launch of one fleet"),
    (["--load-gb-per-s", "5"], "--load-gb-per-s is the warm-up of replicas started over a day"),
    (["--rate-curve", EXAMPLE, "--load-gb-per-s", "0"], "--load-gb-per-s = '0' must be > 0"),
    (["--mtp-draft-tokens", "1"], "--mtp-draft-tokens and --mtp-acceptance go together"),
    (["--mtp-draft-tokens", "99", "--mtp-acceptance", "0.8"], "--mtp-draft-tokens = 99 must be at most 16"),
    (["--mtp-draft-tokens", "1", "--mtp-acceptance", "1.5"], "--mtp-acceptance = 1.5 must be at most 1"),
    (["--mtp-draft-tokens", "1", "--mtp-acceptance", "0.8", "--disaggregation", "off"], "MTP is modelled in decode pools"),
    (["--prefix-cache-tier", "tape"], "--prefix-cache-tier = 'tape'; expected 'hbm', 'dram' or 'ssd'"),
    (["--prefix-cache-tier", "hbm"], "--prefix-cache-tier needs --prefix-tokens and --prefix-hit-rate"),
    (["--prefix-cache-gb", "10"], "--prefix-cache-gb needs --prefix-cache-tier"),
    (["--prefix-tokens", "500", "--prefix-hit-rate", "0.5", "--prefix-cache-tier", "dram"],
     "h100-sxm has no host DRAM"),
])
def test_cli_errors_exit_2(args, words):
    base = ["fleet", "--model", "llama-3.1-8b", "--input-tokens", "1000", "--output-tokens", "200", "--systems",
            "h100-sxm", "--tpot-p99-s", "0.05", "--ttft-p99-s", "2"]
    if "--rate-curve" not in args:
        base += ["--request-rate", "20"]
    r = CliRunner().invoke(app, base + args)
    assert r.exit_code == 2, r.output
    assert words in r.output, r.output
    assert "Traceback" not in r.output


def test_cli_rate_curve_json_keys(tmp_path):
    """The issue's contract: `fleet --rate-curve FILE --json` carries hours, chips_average, chips_peak,
    nodes_average, nodes_peak, usd_per_day and warmup_usd_per_day; --plot writes the chart."""
    f = tmp_path / "c.csv"
    f.write_text("time_s,requests_per_s\n0,30\n3600,120\n7200,120\n10800,30\n")
    png = tmp_path / "day.png"
    r = CliRunner().invoke(app, ["fleet", "--model", "llama-3.1-8b", "--rate-curve", str(f), "--input-tokens", "1000",
                                 "--output-tokens", "200", "--systems", "h100-sxm", "--tpot-p99-s", "0.05",
                                 "--ttft-p99-s", "2", "--disaggregation", "off", "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout[r.stdout.index("{"):])
    for k in ("hours", "chips_average", "chips_peak", "nodes_average", "nodes_peak", "usd_per_day",
              "warmup_usd_per_day"):
        assert k in rec, k
    assert len(rec["hours"]) == 4 and rec["hours"][1]["replicas"]["both"] == rec["pools"][0]["replicas_at_peak"]
    assert png.stat().st_size > 0


# ---- MTP in decode pools ----------------------------------------------------------------------


def test_mtp_speedup_against_deepseek_v3_report():
    """Published: DeepSeek-V3 Technical Report (arXiv 2412.19437, §5.4.3): the second token's MTP
    acceptance is 85–90 %, which gives 1.8× the tokens per second. One draft (k = 1) yields
    e = 1 + a = 1.85–1.90 tokens per step (Leviathan et al. 2023, eq. 1); the decode speed of one
    sequence on an H800 replica (TP1 EP16, FP8, the published 4,989-token mean KV length) is
    e · T_dec / T_verify. Tolerance ±10 %: the 1.8 is one rounded figure, the verify pass a composed
    approximation (speculative.py)."""
    from tokenmath.parallelism import Layout
    from tokenmath.profiles import choose
    from tokenmath.speculative import expected_tokens_per_verify, verify_pass_s
    from tokenmath.specs import Dtypes

    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    prof = choose("calibrated", system=s)
    tv, tp = verify_pass_s(m, s, Layout(tp=1, ep=16), 1.0, 4989, 1, kernels=prof.kernels, engine=prof.engine,
                           dtypes=Dtypes(weight="fp8"))
    for a in (0.85, 0.90):
        e = expected_tokens_per_verify(1, a)
        assert e == pytest.approx(1 + a)
        assert e * float(tp[0] / tv[0]) == pytest.approx(1.8, rel=0.10)


def test_invariant_fastmode_and_fleet_share_one_formula():
    """Invariant: `fastmode`'s speculative decoding and fleet's decode pools use one composition
    (speculative.py): serving re-exports it, and speculative_decode's verify step is verify_pass_s's."""
    from tokenmath import serving, speculative
    from tokenmath.parallelism import Layout
    from tokenmath.profiles import choose

    assert serving.expected_tokens_per_verify is speculative.expected_tokens_per_verify
    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    prof = choose("calibrated", system=s)
    lay = Layout(tp=1, ep=16)
    sp = serving.speculative_decode(m, s, 64, 4989, 2, 0.8, profile=prof, layout=lay)
    tv, tp = speculative.verify_pass_s(m, s, lay, 64.0, 4989, 2, kernels=prof.kernels, engine=prof.engine)
    assert sp.verify_step_s == pytest.approx(float(tv[0]), rel=1e-12)
    assert sp.plain_step_s == pytest.approx(float(tp[0]), rel=1e-12)


def test_invariant_mtp_decode_pool():
    """Invariant: with MTP the decode pool's time per token is its verify pass / e, its capacity
    B / (O · that), and the answer is disaggregated; k = 0 is the plain fleet."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    kw = dict(request_rate=400, input_tokens=2000, output_tokens=500, slo=fl.Slo(tpot_p50_s=0.05, ttft_p99_s=10.0),
              usd_per_chip_hour=2.0, verify=2)
    f = fl.fleet(m, [s], mtp_draft_tokens=1, mtp_acceptance=0.85, **kw)
    assert f.best.mode == "disaggregated" and "MTP is modelled in decode pools" in f.mode_reason
    d = f.best.pools[1]
    assert d.mtp_draft_tokens == 1 and d.mtp_tokens_per_step == pytest.approx(1.85)
    assert d.step_s == pytest.approx(d.verify_step_s / 1.85)
    assert d.capacity_requests_per_s == pytest.approx(d.max_batch / (500 * d.step_s))
    assert f.features["mtp"]["tokens_per_step"] == pytest.approx(1.85)
    plain = fl.fleet(m, [s], disaggregation="on", **kw)
    zero = fl.fleet(m, [s], disaggregation="on", mtp_draft_tokens=0, mtp_acceptance=0.85, **kw)
    assert zero.best.total_chips == plain.best.total_chips


# ---- the prefix cache's tier ------------------------------------------------------------------


def test_prefix_cache_in_ssd_fetch_and_capacity():
    """Invariant (hand formulas): DeepSeek-V3's 4,382-token prefix is 70,272 B × 4,382 = 307.9 MB of KV;
    from the catalog's flash drive (Micron 9650, 28 GB/s per chip) a hit takes 307.9 MB / 28 GB/s =
    11.0 ms per chip; with one shared prefix the cache never binds, so the hit rate stays 0.563."""
    f = fl.fleet(CAT.model("deepseek-v3"), [CAT.system("h800-sxm")], request_rate=400, input_tokens=4383,
                 output_tokens=1211, prefix_tokens=4382, prefix_hit_rate=0.563, disaggregation="on",
                 slo=fl.Slo(tpot_p50_s=0.05, ttft_p99_s=10.0), usd_per_chip_hour=2.0, verify=2,
                 prefix_cache_tier="ssd", storage=CAT.storage)
    ct = f.prefix_cache["cache_tier"]
    assert ct["kv_bytes_per_prefix"] == 70272 * 4382
    assert ct["fetch_s_per_prompt_chip"] == pytest.approx(70272 * 4382 / 28e9)
    assert ct["hit_rate"] == 0.563 and ct["prefixes_assumed"]
    pre = f.best.pools[0]
    assert ct["capacity_bytes"] == pytest.approx(30.72e12 * pre.replicas * pre.chips_per_replica)


def test_invariant_capacity_limits_the_hit_rate():
    """Invariant: n equally popular prefixes in a cache holding N_c = C / kv(P) of them hit at
    h · min(1, N_c / n); a smaller hit rate leaves more prompt tokens to prefill."""
    m, s = CAT.model("deepseek-v3"), CAT.system("h800-sxm")
    kvb = 70272 * 4382
    kw = dict(request_rate=400, input_tokens=4383, output_tokens=1211, prefix_tokens=4382, prefix_hit_rate=0.6,
              disaggregation="on", slo=fl.Slo(tpot_p50_s=0.05, ttft_p99_s=10.0), usd_per_chip_hour=2.0, verify=2,
              prefix_cache_tier="hbm")
    f = fl.fleet(m, [s], prefix_cache_bytes=250 * kvb, prefix_count=1000, **kw)
    ct = f.prefix_cache["cache_tier"]
    assert ct["prefixes_held"] == pytest.approx(250)
    assert ct["hit_rate"] == pytest.approx(0.6 * 0.25)
    assert f.cached_input_tokens == pytest.approx(4382 * 0.15)
    roomy = fl.fleet(m, [s], prefix_cache_bytes=2000 * kvb, prefix_count=1000, **kw)
    assert roomy.prefix_cache["cache_tier"]["hit_rate"] == pytest.approx(0.6)
    assert roomy.best.pools[0].replicas <= f.best.pools[0].replicas
