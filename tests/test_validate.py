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
MARGIN = 0.02  # absolute: the gate fails if the calibrated median |error| rises more than 2 points


def test_shipped_cases_parse_and_cover_every_metric_they_claim():
    """Issue 11: ≥ 150 shipped cases from ≥ 6 independent sources, every one with its source and
    engine, none of them NVIDIA Blackwell (the held-out generation)."""
    cases = vd.load_cases()
    assert len(cases) == PRESET["n_cases"] and len(cases) >= 150
    assert {c.metric for c, _ in cases} <= set(vd.METRICS)
    assert all(c.source and c.engine for c, _ in cases)
    assert len({vd.source_key(c) for c, _ in cases}) >= 6
    blackwell = ("b200", "gb200", "b300", "gb300", "blackwell")
    for c, _ in cases:
        assert not any(b in (c.system + c.id + c.source + c.notes).lower() for b in blackwell), c.id
    assert {"nvidia", "amd"} <= {pf.vendor(tm.get_system(c.system)) for c, _ in cases}


def test_ci_gate_calibrated_error_has_not_regressed():
    """The calibrated preset's median |error| on the shipped cases may not rise above the value
    recorded when it was fitted (plus a 2-point margin): accuracy cannot silently regress."""
    r = vd.validate(vd.load_cases(), "calibrated")
    assert not r.failures
    assert r.median_abs_error <= PRESET["in_sample"]["median_abs_error"] + MARGIN
    assert r.p90_abs_error <= PRESET["in_sample"]["p90_abs_error"] + 2 * MARGIN


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
    g = PRESET["generic"]
    assert 0 <= g["overhead_s"] <= 0.05 and 0 <= g["routing_cv"] <= 1
    for k in ("compute_scale", "memory_scale", "network_scale"):
        assert 0.05 <= g[k] <= 1.5
    for prof in PRESET["engines"].values():
        assert prof["n_cases"] >= cb.MIN_CASES_ENGINE
    lo, hi = PRESET["bands"]["step"]
    assert lo < 0 < hi  # the band brackets the estimate


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
    """The fit itself (scipy least squares) on a dozen cases improves on the roofline."""
    cases = vd.load_cases()[:12]
    rec = cb.calibrate(cases, cross_validate=False)
    fitted = vd.validate(cases, "calibrated", preset=rec)
    assert fitted.median_abs_error < vd.validate(cases, pf.ROOFLINE_PROFILE).median_abs_error


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
