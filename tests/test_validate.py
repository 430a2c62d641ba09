"""validate.py (issue 7): case format, the error report, the calibrated preset, and the CI gate."""

import json

import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import calibrate as cb
from tokenmath import validate as vd
from tokenmath.cli import app

from tokenmath import profiles as pf

PRESET = json.loads(pf.PRESET_FILE.read_text())


def test_shipped_cases_parse_and_cover_every_metric_they_claim():
    """Issue 11: ≥ 150 shipped cases from ≥ 6 independent sources, every one with its source (and its
    engine where the source names one: NVIDIA NIM pages do not), none of them NVIDIA Blackwell (the
    held-out generation); the preset was fitted on exactly these."""
    cases = vd.load_cases()
    assert len(cases) == PRESET["n_cases"] and len(cases) >= 150
    assert {c.metric for c, _ in cases} <= set(vd.METRICS)
    assert all(c.source for c, _ in cases)
    assert all(c.engine or "NIM" in c.notes for c, _ in cases)
    assert len({vd.source_key(c) for c, _ in cases}) >= 6
    blackwell = ("b200", "gb200", "b300", "gb300", "blackwell")
    for c, _ in cases:
        assert not any(b in (c.system + c.id + c.source + c.notes).lower() for b in blackwell), c.id
    assert {"nvidia", "amd"} <= {pf.vendor(tm.get_system(c.system)) for c, _ in cases}


def test_ci_gate_per_metric_and_class_has_not_regressed():
    """The CI gate (issue 22): on the shipped cases, the calibrated preset's median and p90 |error|,
    overall and for every metric, model class, engine and vendor with at least GATE_MIN_N cases, may
    not rise above the figure `calibrate` recorded for it at fit time (calibrated.json `in_sample`,
    `in_sample_by`; a refit moves them together) by more than max(2 points, 15 %) on the median and
    max(5 points, 15 %) on the p90 (calibrate.GATE_TOL_*): accuracy cannot silently regress in a class
    that the overall figure hides."""
    assert set(PRESET.get("in_sample_by", {})) == set(cb.GATE_DIMENSIONS), "refit: calibrated.json has no per-class gate figures"
    r = vd.validate(vd.load_cases(), "calibrated")
    assert not r.failures
    assert cb.gate_failures(r, PRESET) == []


def test_calibrated_beats_the_roofline_and_says_which_is_which():
    """accuracy-notes.md: a plain roofline is 1.4–1.9× optimistic against measured serving; the
    calibrated estimate must do at least twice as well on the median, cross-validated."""
    roof = vd.validate(vd.load_cases(), pf.ROOFLINE_PROFILE)
    cal = vd.validate(vd.load_cases(), "calibrated")
    assert roof.label == "roofline" and cal.label.startswith("calibrated")
    assert PRESET["cross_validated"]["median_abs_error"] < roof.median_abs_error / 2
    optimistic = [(r.error < 0) if vd.metric_kind(r.metric) == "time" else (r.error > 0) for r in roof.rows]
    assert sum(optimistic) > 0.75 * len(roof.rows)  # the bound is mostly too fast
    assert PRESET["cross_validated"]["method"] == "leave-one-source-out"
    assert PRESET["cross_validated"]["median_abs_error"] >= PRESET["in_sample"]["median_abs_error"] - 0.01
    assert set(PRESET["leave_one_vendor_out"]["by_vendor"]) >= {"nvidia", "amd"}


def test_preset_parameters_are_physical():
    """Invariant of a fitted preset: parameters inside their fit's ranges, every engine × vendor and
    vendor profile fitted on at least one case, the band bracketing the estimate."""
    g = PRESET["generic"]
    assert 0 <= g["overhead_s"] <= 0.05 and "routing_cv" not in g  # not fitted (calibrate.GENERIC_PARAMS)
    for k in ("compute_scale", "memory_scale", "network_scale"):
        assert 0.05 <= g[k] <= 1.5
    assert PRESET.get("preset_format") == 2, "refit: calibrated.json is from before issue 22's engine × vendor profiles"
    lo, hi = cb.FACTOR_BOUNDS
    for f in [*PRESET["vendors"].values(), *(c for cells in PRESET["engines"].values() for c in cells.values())]:
        assert f["n_cases"] >= 1 and lo <= f["compute_factor"] <= hi and lo <= f["memory_factor"] <= hi
        assert f["overhead_add_s"] <= cb.OVERHEAD_ADD_MAX_S
    q10, q90 = PRESET["bands"]["step"]
    assert q10 < 0 < q90  # the band brackets the estimate


def test_every_case_is_answered_and_beyond_the_estimate_is_said():
    """Issue 11: every case answered; where the measured point lies beyond what the estimate
    reaches, the row says so with the reason."""
    r = vd.validate(vd.load_cases(), "calibrated")
    assert not r.failures
    for x in r.beyond:
        assert "beyond the estimate" in x.note


def test_prediction_by_hand_ttft():
    """ttft_s: one prefill pass of I tokens attending to I/2 on average (roofline, no corrections)."""
    case = vd.Case(id="x", model="llama-2-7b", system="h100-sxm", chips=1, weight_dtype="fp16", kv_dtype="fp16", tp=1,
                   batch=1, input_tokens=2048, output_tokens=1, metric="ttft_s", measured=0.036, source="test")
    p = vd.predict(case)
    m = tm.get_model("llama-2-7b")
    st = tm.step_time(m, tm.get_system("h100-sxm"), 1, 1023.5, 2048, chips=1, dtypes=tm.Dtypes(weight="fp16", kv="fp16"))
    assert p.predicted == pytest.approx(st.step_s, rel=0.02)  # KV read at L + S vs L: a small share at batch 1


def test_outside_fitted_range_is_flagged(tmp_path):
    f = tmp_path / "cases.jsonl"
    f.write_text(json.dumps({"id": "b200-8b", "model": "llama-3.1-8b", "system": "b200", "chips": 1, "weight_dtype": "fp8",
                             "kv_dtype": "fp8", "tp": 1, "batch": 1, "input_tokens": 1000, "output_tokens": 1,
                             "metric": "ttft_s", "measured": 0.02, "source": "made up for the test"}) + "\n")
    res = CliRunner().invoke(app, ["validate", str(f), "--json"])
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)["rows"][0]
    assert row["outside_fitted_range"] == ["system b200 not in the calibration data"]


def test_user_case_with_config_path_relative_to_the_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((vd.Path(__file__).parent / "data" / "llama-2-13b.json").read_text())
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"id": "13b", "model": "m/config.json", "system": "a100-sxm-80gb", "chips": 1,
                             "weight_dtype": "fp16", "kv_dtype": "fp16", "tp": 1, "batch": 1, "input_tokens": 512,
                             "output_tokens": 1, "metric": "ttft_s", "measured": 0.05, "source": "test"}) + "\n")
    r = vd.validate(vd.load_cases(f))
    assert r.rows[0].model == "config"


@pytest.mark.parametrize("line, fragment", [
    ("{not json", "line 1 is not JSON"),
    ('{"id": "a"}', "field 'model'"),
    ('{"id":"a","model":"llama-3.1-8b","system":"h100-sxm","chips":1,"input_tokens":1,"output_tokens":1,'
     '"metric":"speed","measured":1,"source":"s"}', "metric = 'speed'"),
])
def test_bad_case_files(tmp_path, line, fragment):
    f = tmp_path / "bad.jsonl"
    f.write_text(line + "\n")
    res = CliRunner().invoke(app, ["validate", str(f)])
    assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.stderr


def test_cli_validate_report_and_plot(tmp_path):
    res = CliRunner().invoke(app, ["validate", "--plot", str(tmp_path / "v.png"), "--json"])
    assert res.exit_code == 0, res.stderr
    rec = json.loads(res.stdout)
    assert {"rows", "median_abs_error", "p90_abs_error", "by_metric", "by_system", "by_source", "by_vendor",
            "by_engine", "by_model_class", "estimate"} <= set(rec)
    assert {"id", "predicted", "measured", "error"} <= set(rec["rows"][0])
    assert (tmp_path / "v.png").stat().st_size > 10_000


def test_calibration_fit_runs_on_a_small_set():
    """The fit itself (scipy least squares) on a few dozen cases of two vendors and several engines
    improves on the roofline, records the gate's figures, and `calibrate`'s text says how far each
    level was shrunk (λ, own-data weights) and which parameters sit at a bound."""
    from tokenmath import report as rp

    allc = vd.load_cases()
    cases = [x for x in allc if x[0].engine == "vllm"][:16] + [x for x in allc if x[0].engine == "trtllm"][:12]
    cases += [x for x in allc if pf.vendor(tm.get_system(x[0].system)) == "amd"][:12]
    rec = cb.calibrate(cases, cross_validate=False)
    fitted = vd.validate(cases, "calibrated", preset=rec)
    assert fitted.median_abs_error < vd.validate(cases, pf.ROOFLINE_PROFILE).median_abs_error
    assert set(rec["in_sample_by"]) == set(cb.GATE_DIMENSIONS) and rec["roofline"]["n"] == len(cases)
    assert any(g.startswith("amd CDNA") for g in rec["vendors"]) and {"vllm", "trtllm"} <= set(rec["engines"])
    text = "\n".join(rp.render_calibration(rec))
    assert ("vendor × chip generation level: λ = " in text and "engine × vendor × generation level: λ = " in text
            and "own-data weight" in text)


@pytest.mark.slow
def test_slow_dstacks_source_effect_is_the_step_cost_its_engines_paid():
    """`calibrate` fits a per-step cost per source beside the generic profile (calibrate.SOURCE_EFFECTS;
    the effects are not shipped: a held-out source gets none). The effect it finds for dstack (its early-2025 engine releases) against what the
    sources themselves measured: on 8 × H200 at concurrency 4, DeepSeek-R1's TPOT was 43.6 ms with
    SGLang 0.4.3 and 55.1 ms with TensorRT-LLM 0.17 in dstack's runs (dstackai/benchmarks, March
    2025), 10.3 ms and 13.8 ms in InferenceX's runs of the same model, chip, engines and concurrency
    (2026-03 and 2025-11) — gaps of 33.3 ms and 41.3 ms a step. Tolerance: half the smaller gap to
    1.5 × the larger, since the lengths differ (3,200/800 against 1k/8k and 1k/1k) and the effect is
    one figure for the source's three engines. The L1 penalty leaves every other source's effect
    under a fifth of it: the shared parameters are the physics of the rest. Invariant beside it: the
    shipped preset is this fit (its generic compute scale and dstack's effect, to a fit's stopping
    point)."""
    cat = tm.load_catalog()
    allc = vd.load_cases()
    cases = {c.id: c for c, _ in allc}
    gaps = [cases[d].measured - cases[i].measured for d, i in (
        ("dstack-dsr1-h200-sglang-3200-800-c4-tpot", "ix-dsr1-fp8-h200-sglang-tp8-1k8k-c4-tpot"),
        ("dstack-dsr1-h200-trtllm-3200-800-c4-tpot", "ix-dsr1-fp8-h200-trt-tp8-1k1k-c4-tpot"))]
    assert gaps == pytest.approx([0.0333, 0.0413], abs=2e-4)
    nv = [x for x in allc if pf.vendor(cat.system(x[0].system)) == "nvidia"]
    generic, eff = cb.fit_generic(nv, cat, caps=(None,), source_effects=True)
    assert 0.5 * min(gaps) <= eff["dstackai/benchmarks"] <= 1.5 * max(gaps)
    assert all(abs(v) < eff["dstackai/benchmarks"] / 5 for k, v in eff.items() if k != "dstackai/benchmarks")
    assert generic["compute_scale"] == pytest.approx(PRESET["generic"]["compute_scale"], rel=1e-6)
    assert eff["dstackai/benchmarks"] == pytest.approx(PRESET["source_effects_s"]["dstackai/benchmarks"], rel=1e-6)


def test_calibrate_source_effects_with_user_cases_needs_from_scratch():
    """`--source-effects` refits every profile, so with a user's case files and no --from-scratch
    (a few factors on the shipped preset) it is refused: one sentence, exit 2, before any fit."""
    from typer.testing import CliRunner

    from tokenmath.cli import app

    path = str(pf.PRESET_FILE.parent / "cases" / "engines.jsonl")
    r = CliRunner().invoke(app, ["calibrate", path, "--source-effects", "--no-cv"])
    assert r.exit_code == 2 and "--from-scratch" in r.output and "Traceback" not in r.output


def test_invariant_fit_without_source_effects_fits_none():
    """`--no-source-effects` (calibrate.fit_generic(..., source_effects=False)) is the fit shipped
    before 2026-12-07: no source gets an effect, and the preset record carries no source_effects_s.
    On a small set (10 cases from each of three NVIDIA sources), so it runs in seconds."""
    cat = tm.load_catalog()
    nv = [x for x in vd.load_cases() if pf.vendor(cat.system(x[0].system)) == "nvidia"]
    sources = sorted({vd.source_key(c) for c, _ in nv})[:3]
    cases = [x for s in sources for x in [y for y in nv if vd.source_key(y[0]) == s][:10]]
    rec = cb.fit_preset(cases, caps=(None,), source_effects=False)
    assert "source_effects_s" not in rec and rec["generic"]["compute_scale"] > 0
    with_eff = cb.fit_preset(cases, caps=(None,))
    assert set(with_eff["source_effects_s"]) == set(sources)


def test_invariant_presets_from_before_issue_22_still_load():
    """A preset file written before issue 22 (absolute engine parameters, vendor factors as
    compute_scale / memory_scale) still gives profiles: the engine's own parameters, the vendor's
    factors on top, the pooled band."""
    old = {"fit_date": "2026-12-02", "generic": {"overhead_s": 1e-3, "compute_scale": 0.8, "memory_scale": 1.2},
           "engines": {"vllm": {"overhead_s": 2e-3, "compute_scale": 0.7, "memory_scale": 1.0, "n_cases": 9}},
           "vendors": {"amd": {"compute_scale": 0.5, "memory_scale": 0.8, "n_cases": 9}},
           "bands": {"step": [-0.2, 0.4]}}
    p = pf.choose_from(old, engine="vllm", system=tm.get_system("mi300x"))
    assert p.label == "calibrated 2026-12 vllm + amd"
    assert (p.engine.overhead_s, p.engine.compute_scale, p.engine.memory_scale) == pytest.approx((2e-3, 0.35, 0.8))
    assert p.band_q("mla") == (-0.2, 0.4)


def test_invariant_an_estimate_carries_its_model_class_band():
    """estimate_pass asks the profile for the band of the model's class (MLA for DeepSeek-V3): the
    step band it reports is Profile.range_80 of that class."""
    m, s = tm.get_model("deepseek-v3"), tm.get_system("h200-sxm")
    prof = tm.choose_profile("calibrated", system=s)
    est = tm.estimate_pass(m, s, batch=64, context=2000, chips=8, profile=prof)
    assert est.range_80["step_s"] == pytest.approx(prof.range_80(est.step_s, model_class="mla"), rel=1e-12)


@pytest.mark.parametrize("extra", ["", " with a preset at /a/rather/long/path/to/my-own-preset-fitted-on-my-cases.json" * 3])
def test_invariant_validate_plot_title_lies_inside_the_figure(extra):
    """Invariant (issue 21: the `validate --plot` title was clipped at both edges): after layout, the
    title's bounding box, measured by matplotlib's renderer, lies inside the figure, and it still says
    every word of the title (wrapped, never cut)."""
    from tokenmath import plots

    r = vd.validate(vd.load_cases()[:40], "calibrated")
    title = f"{len(r.rows)} cases, {r.label}{extra}"
    fig = plots.predicted_vs_measured(r, title=title)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    t = fig.axes[0].title
    box, page = t.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (box, page)
    assert t.get_text().split() == f"{title}: median |error| {r.median_abs_error:.0%}".split()
    plots.plt.close(fig)


# --------------------------------------------------------------------------------------------
# Predictions of each metric as its source measured it (issue 22: docs/validation.md, "How each
# metric is predicted")
# --------------------------------------------------------------------------------------------


import numpy as np  # noqa: E402  (kept beside the tests that use them)

from tokenmath.catalog import load_catalog  # noqa: E402


def _case(**kw):
    base = dict(id="t", model="deepseek-r1", system="h200-sxm", chips=8, weight_dtype="fp8", kv_dtype="bf16", tp=8,
                ep=1, input_tokens=1000, output_tokens=1000, metric="output_tokens_per_s_per_chip_at_user_rate",
                measured=100.0, source="test", engine="sglang")
    return vd.Case(**(base | kw))


def test_measured_concurrency_beyond_the_kv_queues_at_the_batch_that_fits():
    """Published (ML.ENERGY leaderboard v3.0, github ml-energy/leaderboard @0cd52dab89, Qwen3-8B on
    one H100, vLLM 0.11.1 with max_num_seqs 96; GPQA, mean output 8,052 tokens, input ~300
    assumed): the engine ran 81.99 sequences on average although 96 were allowed — the KV was
    full. The running batch the estimate caps a measured concurrency at (the KV that fits at the
    mean context I + O/2, in 90 % of the H100's 80 GiB less the runtime's 3.5 GiB: 89) is within 15 % of it (the prompt length is assumed ±150
    tokens and output lengths vary); reserving each request's whole output (I + O) would cap it
    near 45. The same source ran 63–128 sequences on Qwen3-8B/32B/235B above that reservation
    (the shipped rows), so a concurrency is capped at the mean context."""
    case = _case(model="qwen3-8b", system="h100-sxm", chips=1, tp=1, weight_dtype="bf16", batch=96, input_tokens=300,
                 output_tokens=8052.4, metric="tpot_s", measured=0.0278755, engine="vllm")
    p = vd.predict(case, pf.choose(engine="vllm", system=tm.get_system("h100-sxm")))
    assert p.batch_used == pytest.approx(81.99, rel=0.15)
    assert "beyond the estimate's memory" in p.note and p.sensitivity == 1.0
    for row in ("mle3-qwen3-8b-h100-x1-mns64-tpot", "mle3-qwen3-32b-h100-x2-mns64-tpot",
                "mle3-qwen3-235b-fp8-h100-x8-mns128-tpot"):
        c, path = next(x for x in vd.load_cases() if x[0].id == row)
        ctx = vd._ctx(c, pf.ROOFLINE_PROFILE, load_catalog(), path.parent)
        full = vd._max_batch(ctx.model, ctx.system, ctx.layout, c.input_tokens + c.output_tokens, ctx.dtypes, None)
        assert c.batch > 1.2 * full
        assert vd.predict(c, pf.ROOFLINE_PROFILE, base_dir=path.parent).batch_used == c.batch


def test_invariant_a_measured_concurrency_is_used_as_given():
    """Invariant: with the concurrency given, the rate per chip is the client's output throughput
    at it (output tokens / run time: c·O/E2E, prefill included) — never a batch solved for —
    and is as sensitive to the step time as a rate (−1); TPOT and other times +1."""
    prof = pf.choose(engine="sglang", system=tm.get_system("h200-sxm"))
    p = vd.predict(_case(batch=32, min_tokens_per_s_per_user=1e6), prof)
    c = vd._ctx(_case(batch=32), prof, load_catalog(), None)
    run = c.loop(32.0, 1000, 1000)
    assert p.batch_used == 32 and p.predicted == pytest.approx(run.output_tokens_per_s / 8)
    assert p.sensitivity == -1.0 and p.prefill_share == pytest.approx(run.prefill_share)
    assert "beyond the estimate at concurrency 32" in p.note  # a million tokens/s per user is not reached
    assert vd.predict(_case(batch=32, metric="tpot_s"), prof).sensitivity == 1.0
    assert vd.predict(_case(batch=32, metric="tpot_s"), prof).predicted == pytest.approx(run.tpot_s)


@pytest.mark.parametrize("rate", [20.0, 30.0, 60.0])
def test_invariant_solved_batch_sensitivity_is_the_answers_response_to_the_step(rate):
    """Invariant (issue 22, frontier points amplify step errors): without a concurrency, the
    batch is solved so the client's TPOT meets the rate; the reported d log(answer)/d log(step)
    equals the answer's response when every step time is scaled by 1.05^±1 (finite difference,
    within 3 %), and its size exceeds 1 — a step that is too short is answered with a batch too
    big by more than the step's error."""
    import dataclasses

    prof = pf.choose(engine="sglang", system=tm.get_system("h200-sxm"))
    case = _case(min_tokens_per_s_per_user=rate)
    p = vd.predict(case, prof)
    ctx = vd._ctx(case, prof, load_catalog(), None)

    class Scaled(vd._Ctx):
        def loop(self, *a, **k):
            r = vd._Ctx.loop(self, *a, **k)
            s = self.scale
            return dataclasses.replace(r, decode_step_s=r.decode_step_s * s, prefill_s=r.prefill_s * s,
                                       cycle_s=r.cycle_s * s, e2e_s=r.e2e_s * s, ttft_s=r.ttft_s * s,
                                       tpot_s=r.tpot_s * s, output_tokens_per_s=r.output_tokens_per_s / s)

    top = vd._max_batch(ctx.model, ctx.system, ctx.layout, 2000, ctx.dtypes, prof.engine.max_batch)
    out = []
    for s in (1 / 1.05, 1.05):
        sc = Scaled(ctx.model, ctx.system, ctx.layout, ctx.dtypes, ctx.profile)
        object.__setattr__(sc, "scale", s)
        out.append(vd._solve_rate(sc, 1000, 1000, rate, top).tokens_per_s)
    fd = (np.log(out[1]) - np.log(out[0])) / (2 * np.log(1.05))
    assert 1 < p.batch_used < top
    assert p.sensitivity == pytest.approx(fd, rel=0.03)
    assert p.sensitivity < -1.2
    assert 1 / ctx.loop(p.batch_used, 1000, 1000).tpot_s == pytest.approx(rate, rel=0.01)  # the rate is met, just


def test_invariant_solved_batch_at_the_cap_or_beyond_reach_moves_as_a_rate():
    """Invariant: where the rate is met even at the largest batch that fits, or at no batch, the
    batch does not move with the step time: sensitivity −1 (and the row says which)."""
    prof = pf.choose(engine="sglang", system=tm.get_system("h200-sxm"))
    slow = vd.predict(_case(min_tokens_per_s_per_user=0.01), prof)
    fast = vd.predict(_case(min_tokens_per_s_per_user=1e5), prof)
    assert slow.sensitivity == -1.0 and not slow.note
    assert fast.sensitivity == -1.0 and fast.batch_used == 1.0 and "no batch reaches" in fast.note


def test_case_arrivals_and_requests(tmp_path):
    """A case may say how its client's requests arrived and how many the run had: fixed-length
    runs (waves) put half of a wave's prefill into TTFT (a shorter TPOT), and 500 prompts at
    concurrency 128 take 4 waves (3.9 waves' output: 2.3 % less throughput than the steady state)."""
    prof = pf.choose(engine="sglang", system=tm.get_system("h200-sxm"))
    base = dict(batch=128, input_tokens=3200, output_tokens=800)
    spread = vd.predict(_case(metric="tpot_s", **base), prof)
    waves = vd.predict(_case(metric="tpot_s", arrivals="waves", **base), prof)
    assert waves.predicted < spread.predicted
    steady = vd.predict(_case(arrivals="waves", **base), prof)
    run = vd.predict(_case(arrivals="waves", requests=500, **base), prof)
    assert run.predicted / steady.predicted == pytest.approx(500 / 512, rel=1e-9)
    for line, fragment in (('"arrivals": "burst"', "arrivals = 'burst'"), ('"requests": 0', "requests = 0")):
        f = tmp_path / "bad.jsonl"
        f.write_text('{"id":"a","model":"llama-3.1-8b","system":"h100-sxm","chips":1,"input_tokens":1,'
                     '"output_tokens":1,"metric":"tpot_s","measured":1,"source":"s",' + line + "}\n")
        res = CliRunner().invoke(app, ["validate", str(f)])
        assert res.exit_code == 2 and fragment in res.stderr and "Traceback" not in res.stderr


def test_invariant_a_max_throughput_run_never_holds_more_than_its_requests():
    """Invariant: a run of N prompts sent at once holds at most N sequences, however many would
    fit; with no request count the engine's batch is the largest that fits. And every shipped
    max-throughput case that states its request count is predicted at no more than that batch."""
    prof = pf.choose(engine="trtllm", system=tm.get_system("h200-sxm"))
    base = dict(model="llama-3.1-8b", chips=1, tp=1, weight_dtype="fp8", kv_dtype="fp8", input_tokens=202,
                output_tokens=214, metric="max_output_tokens_per_s_per_chip", engine="trtllm")
    free = vd.predict(_case(**base), prof)
    run = vd.predict(_case(requests=500, **base), prof)
    assert free.batch_used > 1000 and run.batch_used == 500.0
    assert run.predicted < free.predicted
    report = vd.validate(profile="calibrated")
    cases = {c.id: c for c, _ in vd.load_cases()}
    stated = [r for r in report.rows if r.metric == "max_output_tokens_per_s_per_chip" and cases[r.id].requests]
    assert len(stated) >= 90
    assert all(r.batch_used <= cases[r.id].requests for r in stated)


def test_a_run_of_500_requests_is_predicted_at_500_sequences():
    """Published (github NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md, stored commit
    258c7540, 'Online Serving Measurements': 'All data in the table below was generated using
    version 0.14.0, with 500 requests and BF16 precision'), QPS INF rows at 467 in / 256 out:
    Llama 3.1 8B on one H100, Output Tput 9,420 tok/s; Llama 3.1 70B on four H200 (TP4), 4,185
    tok/s. No more than the 500 requests were ever in flight, although ~600 and ~1,500 sequences
    fit in the KV. The estimate at the 500 sequences the runs had must hold each measurement
    inside its 80 % band (the dense class's cross-validated band, Profile.range_80)."""
    for system, model, chips, measured in (("h100-sxm", "llama-3.1-8b", 1, 9420.0),
                                           ("h200-sxm", "llama-3.1-70b", 4, 4185.0 / 4)):
        prof = pf.choose(engine="trtllm", system=tm.get_system(system))
        case = _case(model=model, system=system, chips=chips, tp=chips, weight_dtype="bf16", kv_dtype="bf16",
                     input_tokens=467, output_tokens=256, metric="max_output_tokens_per_s_per_chip",
                     engine="trtllm", measured=measured, requests=500)
        p = vd.predict(case, prof)
        lo, hi = prof.range_80(p.predicted, model_class=p.model_class, sensitivity=p.sensitivity)
        assert p.batch_used == 500.0
        assert lo <= measured <= hi, (system, p.predicted, lo, hi)


def test_validate_json_rows_carry_sensitivity_and_prefill_share(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"id": "r", "model": "llama-3.1-8b", "system": "h100-sxm", "chips": 1, "weight_dtype": "fp8",
                             "kv_dtype": "fp8", "tp": 1, "input_tokens": 1000, "output_tokens": 1000,
                             "min_tokens_per_s_per_user": 50, "metric": "output_tokens_per_s_per_chip_at_user_rate",
                             "measured": 3000, "source": "test", "engine": "vllm"}) + "\n")
    res = CliRunner().invoke(app, ["validate", str(f), "--json"])
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)["rows"][0]
    assert row["sensitivity"] < -1 and 0 < row["prefill_share"] < 1


# ---- issue 22: profiles that never hurt, bands that mean what they say, honest gates -----------------


def test_invariant_the_penalty_is_exactly_quadratic():
    """Invariant of calibrate._penalised_loss: least_squares' cost (½ Σ rho) of [data residuals r,
    √λ·x] is Σ weight·soft_l1(r) + λ·|x|²/2 exactly, however large x (a Gaussian prior of λ
    pseudo-sources, not a robust one)."""
    import math

    import numpy as np

    r, w = np.array([-2.0, -0.1, 0.0, 0.3, 5.0]), np.array([0.5, 0.5, 1.0, 0.25, 0.25])
    x = np.array([-3.0, 0.2, 4.0])
    for lam in (0.125, 8.0, 512.0):
        z = np.concatenate([r, math.sqrt(lam) * x]) ** 2
        cost = 0.5 * cb._penalised_loss(w)(z)[0].sum()
        assert cost == pytest.approx(float((w * cb._soft_l1(r)).sum() + lam * (x ** 2).sum() / 2), rel=1e-12)


def test_invariant_shrinkage_pulls_a_small_group_toward_its_parent():
    """Invariant of the penalised fit (calibrate._linear_fit): on a linear model whose data want the
    log memory factor x = 0.01, one source (weight 1) at λ = 8 keeps about 1/9 of it and 100 sources
    about 100/108 (partial pooling: n/(n + λ); the soft-L1 weight of a residual this small is 1 to
    within 1e-3); λ = inf keeps none (the parent profile)."""
    import numpy as np

    lo, hi = np.full(3, -5.0), np.full(3, 5.0)

    def fit(n, lam):
        J = np.tile([[0.0, 0.0, -1.0]], (n, 1))  # memory-bound steps: log time falls one for one with log factor
        a = np.full(n, 0.01)  # each case predicted 1 % too slow at x = 0: the data want x = 0.01
        return cb._linear_fit(a, J, lam, lo, hi)[2]

    assert fit(1, 8.0) == pytest.approx(0.01 / 9, rel=1e-3)
    assert fit(100, 8.0) == pytest.approx(0.01 * 100 / 108, rel=1e-3)
    assert fit(100, float("inf")) == 0.0


def test_invariant_band_for_takes_the_query_class():
    """Invariant of profiles.band_for under the rules of presets before "cell": each dimension's class
    band with enough residuals counts, the band is their mean (or union under rule 'widest'); a class
    below min_n, or a query of no known class, gets the pooled band."""
    bands = {"step": [-0.2, 0.3], "min_n": 20, "rule": "mean",
             "by": {"model_class": {"dense": [-0.1, 0.1, 100], "mla": [-0.5, 0.9, 40], "moe": [-0.3, 0.4, 5]},
                    "engine": {"vllm": [-0.3, 0.3, 50]}, "vendor": {"amd": [-0.2, 0.7, 30]},
                    "range": {"inside": [-0.2, 0.3, 200], "outside": [-0.6, 0.6, 25]}}}
    assert pf.band_for(bands) == (-0.2, 0.3)
    assert pf.band_for(bands, model_class="dense") == (-0.1, 0.1)
    assert pf.band_for(bands, model_class="moe") == (-0.2, 0.3)  # 5 residuals: pooled
    assert pf.band_for(bands, model_class="mla", engine="vllm") == pytest.approx((-0.4, 0.6))
    assert pf.band_for(bands, model_class="mla", vendor="amd", outside=True) == pytest.approx(
        ((-0.5 - 0.2 - 0.6) / 3, (0.9 + 0.7 + 0.6) / 3))
    assert pf.band_for(bands | {"rule": "widest"}, model_class="dense", vendor="amd") == (-0.2, 0.7)
    assert pf.band_for({}) is None


def test_invariant_range_80_widens_with_the_answers_sensitivity():
    """Invariant of Profile.range_80: a figure that moves s times the step time's (log) gets a band s
    times as wide in log; a rate (s = −1) gets the step band inverted."""
    import math

    prof = pf.choose("calibrated", system=tm.get_system("h100-sxm"))
    step = 0.02
    lo1, hi1 = prof.range_80(step)
    lo3, hi3 = prof.range_80(step, sensitivity=3.0)
    assert math.log(hi3 / lo3) == pytest.approx(3 * math.log(hi1 / lo1), rel=1e-9)
    rlo, rhi = prof.range_80(1 / step, sensitivity=-1.0)
    assert (rlo, rhi) == pytest.approx((1 / hi1, 1 / lo1), rel=1e-9)


def test_invariant_band_for_takes_the_querys_cell():
    """Invariant of profiles.band_for under rule "cell" (issue 22 on): the first cell of the query the
    table has a band for, finest level first; a query in no such cell (or of no known class), the
    pooled band."""
    bands = {"step": [-0.2, 0.3], "rule": "cell",
             "cells": {"model_class,engine": {"mla,sglang": [-0.9, 0.8, 40]},
                       "model_class": {"dense": [-0.1, 0.1, 100], "mla": [-0.5, 0.9, 60]}}}
    assert pf.band_for(bands, model_class="mla", engine="sglang") == (-0.9, 0.8)
    assert pf.band_for(bands, model_class="mla", engine="vllm") == (-0.5, 0.9)
    assert pf.band_for(bands, model_class="mla") == (-0.5, 0.9)  # no engine: the model class's cell
    assert pf.band_for(bands, model_class="dense", engine="sglang", vendor="amd", outside=True) == (-0.1, 0.1)
    assert pf.band_for(bands, model_class="moe", engine="sglang") == (-0.2, 0.3)  # no cell: pooled
    assert pf.band_for(bands) == (-0.2, 0.3)


def test_band_levels_are_a_prediction_interval_for_the_next_source():
    """profiles.band_levels (the small-sample correction of a q10/q90) against the theory it rests on:
    for k exchangeable draws, the interval between the order statistics of rank (k + 1)·0.1 and
    (k + 1)·0.9 holds a new draw 80 % of the time whatever the distribution (the distribution-free
    prediction interval, as in split conformal prediction). Monte Carlo: k single-case sources from a
    skewed distribution (lognormal), the band built as calibrate.band_q builds it, 20,000 trials per k;
    - k ≥ 9 (rank (k + 1)·0.1 ≥ 1): coverage 0.80 to within 0.015 (5 standard errors of the trials,
      plus the interpolation between order statistics); the plain 10th/90th percentiles fall short
      (about 0.8·k/(k + 1): 0.74 at k = 9, 0.76 at k = 18);
    - k < 9: no interval of the draws can hold 80 %; the band is their range, which holds
      (k − 1)/(k + 1) (0.5 at k = 3, 0.67 at k = 5)."""
    import numpy as np

    rng = np.random.default_rng(22)
    trials = 20_000
    for k in (3, 5, 9, 18, 40):
        x = rng.lognormal(0.0, 0.7, size=(trials, k + 1))
        src = np.arange(k)
        w = np.ones(k)
        hit = plain = 0
        for t in range(trials):
            lo, hi, _ = cb.band_q(x[t, :k], src)
            hit += lo <= x[t, k] <= hi
            plain += cb._weighted_percentile(x[t, :k], w, 0.1) <= x[t, k] <= cb._weighted_percentile(x[t, :k], w, 0.9)
        expected = 0.80 if k >= 9 else (k - 1) / (k + 1)
        assert hit / trials == pytest.approx(expected, abs=0.015), (k, hit / trials)
        if k in (9, 18):  # the correction matters: the plain percentiles hold less
            assert plain / trials < hit / trials - 0.02, (k, plain / trials, hit / trials)


def _shipped_residual_rows():
    return cb.rows_from_residuals(PRESET["cv_residuals"])


def test_invariant_the_shipped_bands_rebuild_from_the_shipped_residuals():
    """Invariant: the preset's bands and their nested coverage are what calibrate.band_record builds
    from the leave-one-source-out residuals the preset keeps (cv_residuals), so rebuilding them
    (scripts/rebuild_bands.py --from-residuals) changes nothing; one residual per shipped case."""
    rows = _shipped_residual_rows()
    assert len(rows) == PRESET["n_cases"] == len(vd.load_cases())
    new = cb.band_record(rows)
    assert new["bands"] == PRESET["bands"]
    assert new["cv_band_80_coverage"] == PRESET["cv_band_80_coverage"]


def test_invariant_a_rows_band_never_uses_its_own_sources_residuals():
    """Invariant of calibrate.nested_band_coverage (the coverage on data never fitted): a row's band is
    built from the other sources' held-out residuals only. Moving every residual of the row's own
    source (its model class's cell included) leaves its band exactly as it was; moving another
    source's residuals of the same cell moves it (so the check can fail)."""
    import dataclasses
    import math

    rows = _shipped_residual_rows()
    _, bq = cb.nested_band_coverage(rows)
    i = next(j for j, r in enumerate(rows) if r.model_class == "mla" and r.source == "inferencex")
    own = rows[i].source

    def shifted(sel, by):
        return [dataclasses.replace(r, predicted=r.predicted * math.exp(by)) if sel(r) else r for r in rows]

    _, bq_own = cb.nested_band_coverage(shifted(lambda r: r.source == own, 3.0))
    assert bq_own[i] == bq[i]
    _, bq_other = cb.nested_band_coverage(shifted(lambda r: r.source == "dstackai/benchmarks", 3.0))
    assert bq_other[i] != bq[i]


@pytest.mark.parametrize("model_class", [
    "dense",
    "moe",
    pytest.param("mla", marks=pytest.mark.xfail(strict=True, reason=(
        "issue 22, left: 57.9 % of 159 MLA cases since decode attention's grouped-query curve and its refit, unchanged when AMD's block-FP8 GEMMs got their own curve; 57.2 % since TensorRT-LLM's KV budget became an engine feature (its refit raised the floor scale ×1.11 → ×1.22), unchanged when the collective curves got their knee (floor scale ×1.22 → ×1.12); 55.3 % since the weight-only MoE floor is split by path (the refit raised the generic floor scale ×1.04 → ×1.11); 62.9 % with a per-step cost per source fitted beside the shared scales (calibrate.SOURCE_EFFECTS); 65.4 % before, since the routing skew is no longer fitted (LMSYS's multi-node "
        "MLA rows, no longer +0.96 … +1.28 held out, stopped widening the band the others give dstack); 67.9 % "
        "after the refit on kernel curves fitted with a robust loss (61.0 % before it, 68.6 % before the refit in which gpt-oss's cases keep their BF16 attention, 76.1 % "
        "before the refits that charge a MoE layer without shared experts only its attention's dense kernels and "
        "fit GQA decode attention on ≤ 32 query heads per KV head). dstack's DeepSeek-R1 rows (93 of 159; "
        "early-2025 engines on MI300X and H200) have step residuals −1.12 … −0.49 (q10–q90: steps predicted "
        "39–67 % too short) and barely move; each refit's generic scales move the other 5 MLA sources, "
        "so the band they give dstack reaches fewer of its rows. A step-model error on one source's setup"))),
])
def test_nested_band_coverage_per_model_class_meets_the_target(model_class):
    """Issue 22's target: the 80 % band holds the measurement on data never fitted 70–90 % of the time,
    overall and per model class. Recomputed here from the leave-one-source-out residuals the preset
    keeps (cv_residuals; the slow test recomputes those too): each source's rows against bands built
    from the other sources' residuals only (calibrate.nested_band_coverage, the shipped rule: the
    model class's prediction interval for the next source). Measured on the shipped preset
    (2026-12-08, AMD's block-FP8 GEMM curve): overall 74.4 %, dense 81.0 %, MoE 78.9 % (MLA
    57.9 %: the expected failure above)."""
    cov, _ = cb.nested_band_coverage(_shipped_residual_rows())
    assert 0.70 <= cov["share"] <= 0.90, cov["share"]
    share = cov["by_model_class"][model_class]["share"]
    assert 0.70 <= share <= 0.90, (model_class, share)


def test_validate_reports_band_coverage_and_the_class_table():
    """Issue 22: `validate` reports band_80_coverage (share of cases whose measurement lies inside
    its 80 % band) overall and per class, each row's band, and the class table (model class × engine,
    × vendor), in JSON and in text. Invariants: the overall share is the share of rows marked inside,
    and each row's band brackets its prediction."""
    res = CliRunner().invoke(app, ["validate", "--json"])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    cov = d["band_80_coverage"]
    inside = [r["in_band_80"] for r in d["rows"]]
    assert cov["n"] == len(inside) and cov["share"] == pytest.approx(sum(inside) / len(inside))
    assert {"by_model_class", "by_engine", "by_vendor", "by_range", "by_metric"} <= set(cov)
    for r in d["rows"]:
        lo, hi = r["range_80"]
        assert lo <= r["predicted"] * (1 + 1e-12) and r["predicted"] <= hi * (1 + 1e-12)
    assert set(d["class_table"]) == {"engine", "vendor"}
    assert set(d["class_table"]["vendor"]) == {r["model_class"] for r in d["rows"]}
    text = CliRunner().invoke(app, ["validate"]).stdout
    assert "model class × engine" in text and "model class × vendor" in text and "80 % band holds the measurement" in text
    # and the coverage on sources never fitted (the preset's nested figure), overall and per model class
    nested = d["preset"]["cv_band_80_coverage"]
    assert set(nested["by_model_class"]) == {"dense", "moe", "mla"}
    line = next(x for x in text.splitlines() if "on sources never fitted (the preset's leave-one-source-out)" in x)
    assert all(f"{k} {v['share']:.0%} ({v['n']})" in line for k, v in nested["by_model_class"].items()), line


def _ttft_gate_demo(monkeypatch, factor):
    """The shipped preset on the shipped cases before and after the prefill attention term is scaled
    by `factor` (stepmodel.prompt_attention_time): (before, after) reports."""
    from tokenmath import stepmodel

    cases = vd.load_cases()
    before = vd.validate(cases, "calibrated")
    orig = stepmodel.prompt_attention_time
    monkeypatch.setattr(stepmodel, "prompt_attention_time", lambda *a, **k: orig(*a, **k) * factor)
    after = vd.validate(cases, "calibrated")
    return before, after


def test_the_gate_catches_what_the_overall_gate_missed(monkeypatch):
    """Issue 22's blind spot: a change that nearly doubled the TTFT error (7.2 % → 12.7 %) passed a
    gate on the overall median/p90 alone. Reproduced here by a deliberate perturbation of about that
    size — the prefill attention term (stepmodel.prompt_attention_time) × 4, a causal count off by a
    factor (with the shipped preset on its 598 cases: ttft_s 9.0 % → 14.0 %, overall median 19.6 % →
    19.8 %, p90 unchanged; the perturbation moves with the fit: × 0.3 served until the refit that
    charges a MoE layer without shared experts only its attention's dense kernels, after which it
    moves ttft_s by −0.1 points, and × 2 by +2.3) — which raises the ttft_s median |error| by 3 points
    or more while the overall figures stay within the old gate's margins (2 points median, 4 points
    p90); the per-metric gate (calibrate.gate_failures, against the figures recorded before the
    change) names ttft_s. Invariant of the gate: the unperturbed report passes its own record."""
    before, after = _ttft_gate_demo(monkeypatch, 4.0)
    recorded = cb.gate_record(before)
    assert cb.gate_failures(before, recorded) == []
    t0, t1 = before.by_metric["ttft_s"]["median_abs_error"], after.by_metric["ttft_s"]["median_abs_error"]
    assert t1 >= t0 + 0.03, (t0, t1)
    assert after.median_abs_error <= before.median_abs_error + 0.02  # the old gate passes...
    assert after.p90_abs_error <= before.p90_abs_error + 0.04
    failures = cb.gate_failures(after, recorded)
    assert any(f.startswith("metric ttft_s:") for f in failures), failures  # ...the new one does not


def test_readme_accuracy_table_is_the_shipped_presets():
    """The README's accuracy table is rendered from the shipped preset (report.accuracy_table;
    `python scripts/accuracy_table.py --write` regenerates it after a refit), so it cannot drift from
    calibrated.json (invariant)."""
    from tokenmath import report as rp

    readme = (vd.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- accuracy-table: begin (scripts/accuracy_table.py writes it) -->", "<!-- accuracy-table: end -->"
    assert begin in readme and end in readme
    shown = readme.split(begin, 1)[1].split(end, 1)[0].strip().splitlines()
    assert shown == rp.accuracy_table(PRESET)


def test_calibrate_reports_the_nested_band_coverage_per_model_class():
    """Issue 22: calibrate's report (report.render_calibration of the preset it writes) gives the band
    rule and the coverage on sources never fitted, overall and per model class, engine and vendor —
    the preset's own figures (invariant of the rendering)."""
    from tokenmath import report as rp

    lines = rp.render_calibration(PRESET)
    cov = PRESET["cv_band_80_coverage"]
    i = next(j for j, x in enumerate(lines) if "on sources never fitted, target 70–90 %" in x)
    assert f"{cov['share']:.0%} of {cov['n']}" in lines[i]
    assert lines[i + 1].strip().startswith("by model class:")
    assert all(f"{k} {v['share']:.0%} ({v['n']})" in lines[i + 1] for k, v in cov["by_model_class"].items())
    rule = next(x for x in lines if "80 % band (pooled)" in x)
    assert "its cell's (model class dense" in rule and "prediction interval for the next source" in rule


def test_invariant_the_band_rule_table_in_the_docs_is_the_scripts():
    """docs/validation.md's table of band rules (nested coverage overall and per model class under the
    rule before issue 22's "cell" rule and its alternatives) is what scripts/band_rules.py prints from
    the shipped residuals, so it cannot drift from them (invariant); and its shipped row reproduces
    the coverage calibrate recorded in the preset (`cv_band_80_coverage`, overall and per model class),
    which checks the script's rules against calibrate's."""
    import importlib.util

    root = vd.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("band_rules", root / "scripts" / "band_rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lines = mod.table(_shipped_residual_rows())
    doc = (root / "docs" / "validation.md").read_text(encoding="utf-8")
    assert "\n".join(lines) in doc
    cov = PRESET["cv_band_80_coverage"]
    shares = [cov["share"]] + [cov["by_model_class"][c]["share"] for c in ("dense", "moe", "mla")]
    assert "**model class, with the correction (shipped)**" in lines[5]
    assert lines[5].endswith(" | ".join(f"**{100 * x:.1f} %**" for x in shares) + " |")


@pytest.fixture(scope="session")
def shipped_cross_validation(tmp_path_factory):
    """The leave-one-source-out refit of every fold (minutes), shared by the slow tests below — and
    across pytest-xdist workers: the first worker to ask computes it under an exclusive lock and
    pickles it to the run's shared temporary folder; a worker that asks later waits on the lock and
    reads it (otherwise each worker that runs one of these tests refits every fold)."""
    import fcntl
    import os
    import pickle

    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: nothing to share
        return cb.cross_validation(vd.load_cases(), caps=(PRESET["generic"]["max_batch"],))
    shared = tmp_path_factory.getbasetemp().parent  # pytest-N/: one folder per run, shared by its workers
    path, lock = shared / "shipped_cross_validation.pkl", shared / "shipped_cross_validation.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if path.exists():
            return pickle.loads(path.read_bytes())
        cv = cb.cross_validation(vd.load_cases(), caps=(PRESET["generic"]["max_batch"],))
        path.write_bytes(pickle.dumps(cv))
        return cv


@pytest.mark.slow
def test_slow_cross_validation_reproduces_the_shipped_figures(shipped_cross_validation):
    """Issue 22: the headline figure is recomputed, not read. Every fold of leave-one-source-out is
    refitted (calibrate.cross_validation, the engine batch cap fixed at the shipped fit's, λ chosen
    inside each fold) and
    - its median and p90 |error| equal what calibrated.json records (and the README's table shows),
      to 0.5 / 1 point: the same code on the same cases (a fit's stopping point may move a hair);
    - the 80 % bands hold the measurement on sources never fitted (each source against bands built
      from the other sources' held-out residuals) 70–90 % of the time — the issue's target — and as
      often as recorded (to 1 point overall, 2 per model class: the residuals the preset keeps,
      cv_residuals, from which the fast per-class test recomputes it, are these);
    - tagging a held-out source's cases with their engine costs no source more than
      calibrate.ENGINE_TAG_TOLERANCE (2 points, the resolution of the published numbers) of median
      |error| against the same fold's untagged answer (profiles that never hurt) — the next test."""
    cv = shipped_cross_validation
    s = vd.summarize(cv.rows, "leave-one-source-out")
    rec = PRESET["cross_validated"]
    assert s.median_abs_error == pytest.approx(rec["median_abs_error"], abs=0.005)
    assert s.p90_abs_error == pytest.approx(rec["p90_abs_error"], abs=0.01)
    coverage, _ = cb.nested_band_coverage(cv.rows)
    assert 0.70 <= coverage["share"] <= 0.90, coverage
    assert coverage["share"] == pytest.approx(PRESET["cv_band_80_coverage"]["share"], abs=0.01)
    for mc, rec_mc in PRESET["cv_band_80_coverage"]["by_model_class"].items():  # and per model class
        assert coverage["by_model_class"][mc]["share"] == pytest.approx(rec_mc["share"], abs=0.02), mc


@pytest.mark.slow
def test_slow_multi_node_expert_parallel_decode_transfers_held_out(shipped_cross_validation):
    """The LMSYS posts are the only multi-node expert-parallel runs of the visible set; held out, the
    other sources' fit must still predict their decode steps within the issue's 30 % target for a
    class (issue 22). Published: DeepSeek-V3 on 72 H100 (EP72, 256 sequences a GPU, 22,282 tokens/s
    per node: lmsys.org/blog/2025-05-05-large-scale-ep) and Kimi-K2 on 96 H200 (EP96, 480 a GPU,
    24k tokens/s per node: lmsys.org/blog/2025-07-20-k2-large-scale-ep), each a step derived from
    throughput and batch (the cases' notes), read to 2–5 significant figures. With the routing skew
    fitted these were +208 % and +261 % held out: the fold without LMSYS pushed it to its bound
    (calibrate.GENERIC_PARAMS says why it is no longer fitted)."""
    rows = {r.id: r for r in shipped_cross_validation.rows}
    for cid in ("vis-sglang-dsv3-h100-ep72-decode", "lmsys-k2-128h200-decode-ep96-b480pergpu"):
        assert abs(rows[cid].error) <= 0.30, (cid, rows[cid].error)


@pytest.mark.slow
def test_slow_engine_profiles_never_hurt_a_held_out_source(shipped_cross_validation):
    """Issue 22, 'profiles that never hurt': tagging a held-out source's cases with their engine
    costs no source more than calibrate.ENGINE_TAG_TOLERANCE (2 points, the resolution of the
    published numbers) of median |error| against the same fold's untagged answer. Met since the
    refit with Hopper's and MI300X's HBM in the units their drivers report (GiB), and again since the
    routing skew is no longer fitted and a group needs 5 sources to choose its own λ (gpustack's
    3.2 points with 4): the largest cost is TRT-LLM v0.6.1's, 1.3 points (calibrated.json
    engine_vs_untagged_by_source)."""
    cv = shipped_cross_validation
    s = vd.summarize(cv.rows, "leave-one-source-out")
    untagged = vd.summarize(cv.untagged, "untagged")
    hurt = {k: (v["median_abs_error"], untagged.by_source[k]["median_abs_error"]) for k, v in s.by_source.items()
            if v["median_abs_error"] > untagged.by_source[k]["median_abs_error"] + cb.ENGINE_TAG_TOLERANCE}
    assert not hurt, f"engine-tagged worse than untagged (median |error|) on held-out {hurt}"


def test_invariant_factors_are_per_vendor_and_chip_generation():
    """Invariant of profiles.factor_group: MI300X and MI325X (CDNA 3) take one factor record, MI355X
    (CDNA 4) its own; an AMD chip of a generation the preset has no cases of takes the generic
    profile, not another generation's factors; a preset keyed by vendor ("amd", before this change)
    still applies to every AMD chip; NVIDIA chips are the generic profile's own."""
    import dataclasses as dc

    sysof = tm.get_system
    assert {pf.factor_group(sysof(n)) for n in ("mi300x", "mi325x")} == {"amd CDNA 3"}
    assert pf.factor_group(sysof("mi355x")) == "amd CDNA 4" and pf.factor_group(sysof("h100-sxm")) == "nvidia"
    p3, p4, gen = (pf.choose_from(PRESET, system=sysof(n)) for n in ("mi300x", "mi355x", "h100-sxm"))
    assert p3.label.endswith("amd CDNA 3") and p4.label.endswith("amd CDNA 4")
    assert p3.engine.memory_scale != p4.engine.memory_scale
    cdna5 = dc.replace(sysof("mi355x"), chip=dc.replace(sysof("mi355x").chip, architecture="CDNA 5"))
    new = pf.choose_from(PRESET, system=cdna5)
    assert (new.engine.memory_scale, new.engine.compute_scale) == (gen.engine.memory_scale, gen.engine.compute_scale)
    old = {"fit_date": "2026-12-02", "preset_format": 2, "generic": PRESET["generic"],
           "vendors": {"amd": {"overhead_add_s": 0.0, "compute_factor": 0.5, "memory_factor": 0.8, "n_cases": 9}}}
    for n in ("mi300x", "mi355x"):
        p = pf.choose_from(old, system=sysof(n))
        assert p.label.endswith("+ amd") or p.label.endswith(" amd")
        assert p.engine.memory_scale == pytest.approx(PRESET["generic"]["memory_scale"] * 0.8)


def test_systems_json_names_the_chip_generation():
    """`tokenmath systems --json` carries each system's `architecture` (the catalog's, sourced in
    systems.toml's header: AMD MI300X and MI325X are CDNA 3, MI355X CDNA 4)."""
    from typer.testing import CliRunner

    from tokenmath.cli import app

    res = CliRunner().invoke(app, ["systems", "--json"])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    recs = d if isinstance(d, list) else d.get("systems", d)
    arch = {r["name"]: r["architecture"] for r in (recs if isinstance(recs, list) else recs.values())}
    assert arch["mi300x"] == arch["mi325x"] == "CDNA 3" and arch["mi355x"] == "CDNA 4" and arch["h100-sxm"] == "Hopper"


def test_a_case_naming_the_checkpoints_dtype_runs_the_checkpoint_as_published():
    """gpt-oss-120b's published checkpoint (config.json, huggingface.co/openai/gpt-oss-120b, shipped
    in catalog/configs/openai--gpt-oss-120b.json) quantises only its experts to MXFP4:
    `quantization_config.modules_to_not_convert` lists the attention, the router, the embeddings
    and the lm_head. A measured run of it (InferenceX's, vLLM on 8 × H100, weight_dtype "mxfp4")
    multiplies those parts in BF16, so a case naming the checkpoint's own dtype is predicted with
    BF16 dense GEMMs (2 bytes a parameter, the BF16 kernel family) and MXFP4 experts; a case naming
    another dtype (LMSYS's BF16 gpt-oss run) takes that dtype everywhere."""
    from tokenmath.stepmodel import kernel_rates

    cat = load_catalog()
    cases = {c.id: (c, p) for c, p in vd.load_cases()}
    c, path = cases["ix-gptoss120b-mxfp4-h100-vllm-tp8-1k1k-c4-tpot"]
    ctx = vd._ctx(c, pf.ROOFLINE_PROFILE, cat, path.parent)
    r = kernel_rates(ctx.model, ctx.system, ctx.dtypes, False)
    assert (r.dense_family, r.dense_bytes_per_param, r.head_bytes_per_param) == ("tensor", 2.0, 2.0)
    assert r.expert_family == "w4a16" and r.expert_bytes_per_param == pytest.approx(4.25 / 8)
    c, path = cases["lmsys-gptoss-gpt-oss-120b-h100-tp8-bf16-b1-1024-512"]
    ctx = vd._ctx(c, pf.ROOFLINE_PROFILE, cat, path.parent)
    r = kernel_rates(ctx.model, ctx.system, ctx.dtypes, False)
    assert r.expert_bytes_per_param == 2.0 and r.dense_bytes_per_param == 2.0


def test_invariant_soft_l1_residual_is_the_soft_l1_cost_as_least_squares():
    """Invariant of calibrate.soft_l1_residual (the kernel fits' loss, scripts/fit_kernels.py): its
    squares sum to 2·Σ w²·soft_l1(r), it keeps each residual's sign, it is ≈ w·r (least squares) well
    inside SOFT_L1_SCALE and grows like √|r| (soft-L1's linear cost) far outside, and it loses no
    precision near 0 (1e-12 stays 1e-12)."""
    import numpy as np

    r = np.array([-5.0, -0.3, -1e-3, -1e-12, 0.0, 1e-12, 1e-3, 0.3, 5.0])
    w = np.linspace(0.2, 2.0, r.size)
    out = cb.soft_l1_residual(r, w)
    assert float((out ** 2).sum()) == pytest.approx(2.0 * float((w ** 2 * cb._soft_l1(r)).sum()), rel=1e-12)
    assert np.all(np.sign(out) == np.sign(r))
    assert cb.soft_l1_residual(1e-12) == pytest.approx(1e-12, rel=1e-9)
    assert cb.soft_l1_residual(1e-3) == pytest.approx(1e-3, rel=1e-5)
    f = cb.SOFT_L1_SCALE
    big = np.array([100.0, 400.0])
    assert cb.soft_l1_residual(big[1]) / cb.soft_l1_residual(big[0]) == pytest.approx(2.0, rel=0.05)
    assert cb.soft_l1_residual(100.0) == pytest.approx(np.sqrt(2 * f * 100.0), rel=0.05)
