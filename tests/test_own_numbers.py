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
    shipped, in-sample and leave-one-out errors; the in-sample fit is no worse than the shipped preset
    on the same cases (median, +1 point of slack for the soft-l1 loss). The preset then works as
    --efficiency and names itself in every label; validate shows it beside the shipped one."""
    out = tmp_path / "preset.json"
    r = CliRunner().invoke(app, ["calibrate", str(vllm_cases), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    f = d["user_fit"]
    assert f["params"] == ["memory_scale", "overhead_s", "compute_scale"] and f["n_cases"] == 12
    assert f["cross_validated"]["method"] == "leave-one-out" and f["cross_validated"]["n"] == 12
    assert f["in_sample"]["median_abs_error"] <= f["shipped_error"]["median_abs_error"] + 0.01
    assert set(f["factors"]) == set(f["params"]) and all(0.1 <= v <= 10 for v in f["factors"].values())
    st = json.loads(CliRunner().invoke(app, ["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1",
                                             "--batch", "64", "--context", "2000", "--efficiency", str(out),
                                             "--json"]).stdout)
    assert "preset.json" in st["estimate"] and "fitted to 12 cases" in st["estimate"]
    v = json.loads(CliRunner().invoke(app, ["validate", str(vllm_cases), "--efficiency", str(out), "--json"]).stdout)
    assert v["shipped"]["n"] == 12 and v["shipped"]["median_abs_error"] == pytest.approx(
        f["shipped_error"]["median_abs_error"], rel=1e-9)


def test_few_cases_fit_one_factor_and_say_so(vllm_cases, tmp_path):
    """Two cases carry one factor (memory_scale) and no cross-validation (fewer than 3)."""
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(vllm_cases.read_text().splitlines()[:2]) + "\n")
    r = CliRunner().invoke(app, ["calibrate", str(two), "--json"])
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["user_fit"]
    assert f["params"] == ["memory_scale"] and "cross_validated" not in f
