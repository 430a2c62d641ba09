"""Issue 16: your own numbers — import results, fit a preset to them, use it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenmath.cli import app

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "src" / "tokenmath" / "validation" / "cases" / "engines.jsonl"


@pytest.fixture(scope="module")
def vllm_cases(tmp_path_factory):
    """Twelve published vLLM results from the shipped cases (src/tokenmath/validation/cases/engines.jsonl,
    each with its own source): a user's deployment stands in for by real measurements."""
    rows = [x for x in ENGINES.read_text().splitlines() if '"engine": "vllm"' in x][:12]
    assert len(rows) == 12
    p = tmp_path_factory.mktemp("own") / "my-cases.jsonl"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_calibrate_on_your_cases_then_use_the_preset(vllm_cases, tmp_path):
    """calibrate FILE fits few factors on the shipped preset (3 for 12 cases: one per 4), reports the
    shipped, in-sample and leave-one-out errors; the fit's own loss (mean soft-L1 of log
    predicted/measured) ends no higher than the shipped preset's on the same cases (invariant: least
    squares started there; the median |error| may move either way). The preset then works as
    --efficiency and names itself in every label; validate shows it beside the shipped one."""
    out = tmp_path / "preset.json"
    r = CliRunner().invoke(app, ["calibrate", str(vllm_cases), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    f = d["user_fit"]
    assert f["params"] == ["memory_scale", "overhead_s", "compute_scale"] and f["n_cases"] == 12
    assert f["cross_validated"]["method"] == "leave-one-out" and f["cross_validated"]["n"] == 12
    assert f["soft_l1_cost"]["fitted"] <= f["soft_l1_cost"]["shipped"] * (1 + 1e-9)
    assert set(f["factors"]) == set(f["params"]) and all(0.1 <= v <= 10 for v in f["factors"].values())
    st = json.loads(CliRunner().invoke(app, ["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1",
                                             "--batch", "64", "--context", "2000", "--efficiency", str(out),
                                             "--json"]).stdout)
    assert "preset.json" in st["estimate"] and "fitted to 12 cases" in st["estimate"]
    v = json.loads(CliRunner().invoke(app, ["validate", str(vllm_cases), "--efficiency", str(out), "--json"]).stdout)
    assert v["shipped"]["n"] == 12 and v["shipped"]["median_abs_error"] == pytest.approx(
        f["shipped_error"]["median_abs_error"], rel=1e-9)
    head = CliRunner().invoke(app, ["validate", str(vllm_cases), "--efficiency", str(out)]).stdout.splitlines()[0]
    assert "your fit of memory_scale, overhead_s, compute_scale on 12 cases" in head and "598" not in head


def test_few_cases_fit_one_factor_and_say_so(vllm_cases, tmp_path):
    """Two cases carry one factor (memory_scale) and no cross-validation (fewer than 3)."""
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(vllm_cases.read_text().splitlines()[:2]) + "\n")
    r = CliRunner().invoke(app, ["calibrate", str(two), "--json"])
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["user_fit"]
    assert f["params"] == ["memory_scale"] and "cross_validated" not in f


BENCH = ROOT / "tests" / "data" / "bench"


@pytest.mark.parametrize("fmt, name, engine", [("vllm-bench", "vllm_llama8b_c16.json", None),
                                               ("sglang-bench", "sglang_runs.jsonl", None),
                                               ("genai-perf", "profile_export_genai_perf.json", "vllm"),
                                               ("guidellm", "guidellm_benchmarks.json", "vllm")])
def test_import_validate_calibrate_use_for_every_format(fmt, name, engine, tmp_path):
    """docs/own-numbers.md's walk-through, for every format: import a result file (tests/data/bench: made in
    each tool's documented format, tests/data/bench/README.md), validate the cases, fit a preset, and use it.
    Invariants: every case is in the shipped format, the preset names itself, validate shows the shipped
    preset beside it."""
    cases, preset = tmp_path / "c.jsonl", tmp_path / "p.json"
    args = ["import", str(BENCH / name), "--format", fmt, "--model", "llama-3.1-8b", "--system", "h100-sxm",
            "--chips", "1", "-o", str(cases)] + (["--engine", engine] if engine else [])
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert cases.read_text().strip()
    r = CliRunner().invoke(app, ["validate", str(cases), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["calibrate", str(cases), "--out", str(preset), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(CliRunner().invoke(app, ["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1",
                                             "--batch", "16", "--context", "2k", "--efficiency", str(preset),
                                             "--json"]).stdout)
    assert "p.json" in st["estimate"]
    v = json.loads(CliRunner().invoke(app, ["validate", str(cases), "--efficiency", str(preset), "--json"]).stdout)
    assert "shipped" in v and "p.json" in v["estimate"]


def test_probe_writes_a_system_the_catalog_accepts(tmp_path):
    """tokenmath probe --out writes a system; a step on it runs (probe bounded to ~1 s)."""
    toml = tmp_path / "me.toml"
    r = CliRunner().invoke(app, ["probe", "--out", str(toml), "--name", "me", "--seconds", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["memory_bytes_per_s"] > 1e9 and d["system"] == "me"
    r = CliRunner().invoke(app, ["step", "--catalog", str(toml), "--system", "me", "--model", "llama-3.1-8b",
                                 "--batch", "1", "--context", "1000", "--efficiency", "roofline", "--json"])
    assert r.exit_code == 0, r.output


def test_probe_decode_needs_torch_or_times_real_steps(tmp_path):
    """Without PyTorch, --decode is one sentence (exit 2). With it (the `probe` extra), it times decode
    steps of a tiny randomly initialised Llama and writes decode_step_s cases that validate against the
    probed system (a measured check of the roofline on this machine: an invariant that each step is
    positive and at least the roofline bound of the same pass)."""
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 128, "intermediate_size": 344,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                               "vocab_size": 1024, "max_position_embeddings": 1024}))
    toml, cases = tmp_path / "me.toml", tmp_path / "pc.jsonl"
    r = CliRunner().invoke(app, ["probe", "--out", str(toml), "--name", "me", "--seconds", "0.5", "--decode", str(cfg),
                                 "--cases-out", str(cases), "--json"])
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        assert r.exit_code == 2 and "needs PyTorch and transformers" in r.output
        return
    assert r.exit_code == 0, r.output
    v = json.loads(CliRunner().invoke(app, ["validate", str(cases), "--catalog", str(toml), "--efficiency", "roofline",
                                            "--json"]).stdout)
    assert len(v["rows"]) == 4 and all(row["predicted"] <= row["measured"] for row in v["rows"])


# ---- issue 21: a fit that ends at a bound says so ----------------------------------------------------


@pytest.fixture(scope="module")
def slow_cases(tmp_path_factory):
    """Eight published vLLM cases (engines.jsonl) made 50× slower: times × 50, rates ÷ 50. No factor
    within ×0.1–×10 on memory and overhead can explain that, so the fit must end at its bounds."""
    from tokenmath.validate import metric_kind

    rows = [json.loads(x) for x in ENGINES.read_text().splitlines() if '"engine": "vllm"' in x][:8]
    for r in rows:
        r["measured"] = r["measured"] * 50 if metric_kind(r["metric"]) == "time" else r["measured"] / 50
    p = tmp_path_factory.mktemp("slow") / "slow.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_calibrate_reports_factors_at_their_bound(slow_cases, tmp_path):
    """Both fitted factors hit a bound (memory × 0.1, overhead × 10): JSON `at_bound` lists each with its
    value, bound and side (in `user_fit` and at the top level), the text names them, and `validate`
    with the written preset repeats them."""
    out = tmp_path / "slow-preset.json"
    r = CliRunner().invoke(app, ["calibrate", str(slow_cases), "--no-cv", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    got = {(x["parameter"], x["side"], x["bound"]) for x in d["user_fit"]["at_bound"]}
    assert got == {("memory_scale", "lower", 0.1), ("overhead_s", "upper", 10.0)}
    assert d["at_bound"] == d["user_fit"]["at_bound"]
    for x in d["at_bound"]:
        assert x["value"] == pytest.approx(x["bound"], rel=5e-3) and x["value"] == pytest.approx(d["adjust"][x["parameter"]])
    text = CliRunner().invoke(app, ["calibrate", str(slow_cases), "--no-cv"]).stdout
    assert "2 fitted parameters at a bound of the fit" in text and "overhead_s × 10 (upper bound × 10" in text
    v = json.loads(CliRunner().invoke(app, ["validate", str(slow_cases), "--efficiency", str(out), "--json"]).stdout)
    assert {("your fit (× on the preset)", "overhead_s")} <= {(x["profile"], x["parameter"]) for x in v["at_bound"]}


def test_calibrate_inside_its_bounds_says_none(vllm_cases):
    """The twelve real vLLM cases fit inside the bounds: `at_bound` is empty and the text says so."""
    r = CliRunner().invoke(app, ["calibrate", str(vllm_cases), "--no-cv", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["user_fit"]["at_bound"] == []
    assert "no fitted parameter is at a bound of its fit" in CliRunner().invoke(
        app, ["calibrate", str(vllm_cases), "--no-cv"]).stdout


def test_invariant_at_bounds_tolerance():
    """Invariant of calibrate.at_bounds: a value within AT_BOUND_TOL of the range (log range for factors)
    from a bound is reported on that side; one just outside is not."""
    from tokenmath import calibrate as cb

    tol = cb.AT_BOUND_TOL
    b = {"x": (0.2, 1.5)}
    assert [y["side"] for y in cb.at_bounds({"x": 1.5 - 0.5 * tol * 1.3}, b)] == ["upper"]
    assert cb.at_bounds({"x": 1.5 - 2 * tol * 1.3}, b) == [] and cb.at_bounds({"x": 0.9}, b) == []
    assert [y["side"] for y in cb.at_bounds({"x": 0.2}, b)] == ["lower"]
    f = {"k": (0.1, 10.0)}
    assert cb.at_bounds({"k": 10 * (1 - 0.5 * tol * 4.6)}, f, log=True)[0]["bound"] == 10.0
    assert cb.at_bounds({"k": 10 * (1 - 3 * tol * 4.6)}, f, log=True) == []


def test_invariant_validate_lists_the_shipped_presets_parameters_at_a_bound():
    """Invariant: `validate` lists the shipped preset's parameters that sit at a bound of their fit, each
    within the tolerance of it (of the log range for factors), at the place in the preset its `path`
    names, and no other. (Which ones depends on the fit: docs/validation.md, "At a bound".)"""
    import math

    from tokenmath import calibrate as cb
    from tokenmath import profiles as pf

    preset = pf.preset_record(None)
    listed = json.loads(CliRunner().invoke(app, ["validate", "--json"]).stdout)["at_bound"]
    assert listed == cb.preset_at_bounds(preset)
    for x in listed:
        lo, hi = x["range"]
        f = math.log if x["parameter"].endswith("_factor") else (lambda v: v)
        assert abs(f(x["value"]) - f(x["bound"])) <= cb.AT_BOUND_TOL * (f(hi) - f(lo))
        table = preset
        for key in x["path"]:
            table = table[key]
        assert x["value"] == table


def test_import_refuses_a_layout_that_layout_refuses(tmp_path):
    """`import` checks the layout its cases will be validated on, as `layout` does: Llama-3.1-8B's 32
    attention heads do not divide over TP 3, and 3 chips are not a whole number of TP2 replicas (a
    user review found both accepted, then predicted against throughput divided by 3)."""
    bench = ROOT / "tests" / "data" / "bench" / "vllm_llama8b_c16.json"
    base = ["import", str(bench), "--format", "vllm-bench", "--model", "llama-3.1-8b", "--system", "h100-sxm",
            "-o", str(tmp_path / "c.jsonl")]
    r = CliRunner().invoke(app, base + ["--chips", "3"])
    assert r.exit_code == 2 and "do not divide over TP 3" in r.stderr
    r = CliRunner().invoke(app, base + ["--chips", "3", "--tp", "2"])
    assert r.exit_code == 2 and "not a whole number of" in r.stderr
    assert not (tmp_path / "c.jsonl").exists()
    assert CliRunner().invoke(app, base + ["--chips", "4", "--tp", "2"]).exit_code == 0  # two TP2 replicas
