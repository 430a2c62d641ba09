"""energy.py (issue 15): watts of a step, joules per token, tokens per MW, and the cost of owning a chip."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import energy as en
from tokenmath.cli import app

CAT = tm.load_catalog()
POWER = en.ChipPower(board_w=700.0, idle_w=70.0, k_compute=1.8, k_memory=0.8, host_w=300.0, all_in_kw=1.73)
CASES = {json.loads(x)["id"]: json.loads(x) for x in
         (Path(en.__file__).parent / "validation" / "energy_cases.jsonl").read_text().splitlines() if x.strip()}
FAC = en.Facility(pue=1.3, usd_per_kwh=0.08, facility_usd_per_kw_month=150.0, cost_of_capital=0.1, years=5.0)


def test_capital_recovery_factor_is_the_annuity():
    """CRF = r(1+r)^n/((1+r)^n − 1): 10 % over 5 years is 0.263797 (any annuity table, e.g. the
    capital recovery factor table of engineering economics texts, 5 digits); r = 0 is straight-line 1/n.
    rel 1e-5."""
    assert en.capital_recovery_factor(0.10, 5) == pytest.approx(0.26380, rel=1e-5)
    assert en.capital_recovery_factor(0.0, 4) == pytest.approx(0.25)
    assert en.capital_recovery_factor(0.08, 3) == pytest.approx(0.38803, rel=1e-5)


def test_step_energy_adds_up_and_is_capped_at_the_board():
    """Invariants: the parts sum to the wall power; J/token × tokens/s = watts; a step busy on
    both resources is capped at the board power."""
    e = en.step_energy(POWER, FAC, chips=8, step_s=0.02, compute_s=0.004, memory_s=0.02, tokens=64)
    assert sum(e.parts_w.values()) == pytest.approx(e.watts, rel=1e-12)
    assert e.joules_per_token * (64 / 0.02) == pytest.approx(e.watts, rel=1e-12)
    assert e.tokens_per_s_per_mw == pytest.approx(64 / 0.02 / (e.watts / 1e6), rel=1e-12)
    both = en.step_energy(POWER, FAC, chips=1, step_s=1.0, compute_s=1.0, memory_s=1.0, tokens=1)
    assert both.chip_w == pytest.approx(700.0)
    assert sum(both.parts_w.values()) == pytest.approx(both.watts, rel=1e-12)
    sweep = en.step_energy(POWER, FAC, chips=8, step_s=np.array([0.01, 0.02]), compute_s=np.array([0.001, 0.02]),
                           memory_s=np.array([0.01, 0.01]), tokens=np.array([8.0, 512.0]))
    assert np.shape(sweep.watts) == (2,) and np.all(np.diff(sweep.watts) > 0)


def test_breakeven_utilisation_equalises_owned_and_api_cost():
    """At u*, owning costs exactly what the API charges for the tokens (invariant of the closed form)."""
    t = en.Tco("x", 30000.0, 0.9, 0.07, 0.2, 1.17, 1.3, 0.7, 371.0, 0.2638, 0.0385, 0.0832)
    tps, api = 1000.0, 1.0
    u = en.breakeven_utilisation(t, tokens_per_s_per_chip=tps, api_usd_per_mtok=api)
    owned = t.capex_usd_per_chip_hour + t.facility_usd_per_chip_hour + t.power_idle_usd_per_chip_hour \
        + (t.power_busy_usd_per_chip_hour - t.power_idle_usd_per_chip_hour) * u
    assert owned == pytest.approx(u * tps * 3600 / 1e6 * api, rel=1e-12)
    assert en.breakeven_utilisation(t, tokens_per_s_per_chip=10.0, api_usd_per_mtok=1.0) is None  # never pays


@pytest.mark.parametrize("args, fragment", [
    (["tco", "--system", "h100-sxm", "--pue", "0.5"], "--pue"),
    (["tco", "--system", "h100-sxm", "--utilisation", "2"], "--utilisation"),
    (["tco", "--system", "h100-sxm", "--years", "0"], "--years"),
    (["tco", "--system", "h100-sxm", "--cost-of-capital", "-0.1"], "--cost-of-capital"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--idle-w", "-5"], "--idle-w"),
    (["tco", "--system", "h100-sxm", "--model", "llama-3.1-8b"], "--price-sheet"),
    (["tco", "--system", "tpu-v7"], "give --board-w"),
    (["tco", "--system", "h100-sxm", "--board-w", "0"], "--board-w"),
])
def test_bad_energy_and_tco_input_is_one_sentence(args, fragment):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert fragment in r.output and "Traceback" not in r.output


def _gpu_watts_and_jpt(cid):
    c = CASES[cid]
    m, s, su = CAT.model(c["model"]), CAT.system(c["system"]), c["setup"]
    wd = "fp8" if su["precision"] == "fp8" else None
    u_c, u_m, T = en.busy_shares(m, s, batch=su["batch"], context=su["output_tokens"] / 2, chips=su["chips"],
                                 tp=su["tp"], ep=su.get("ep", 1), weight_dtype=wd)
    e = en.step_energy(en.chip_power(s), en.facility(), chips=su["chips"], step_s=T, compute_s=u_c * T,
                       memory_s=u_m * T, tokens=su["batch"])
    gpu_w = e.chip_w * su["chips"]
    return c, gpu_w, gpu_w * T / su["batch"]


def test_power_fit_reproduces_from_its_script():
    """energy.toml [power_fit] is what scripts/fit_power.py computes from the two ML.ENERGY points (exact to
    the 6 digits stored): the coefficients are not typed by hand."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fit_power", Path(__file__).parents[1] / "scripts" / "fit_power.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    k_c, k_m = mod.fit()
    fit = en._data()["power_fit"]
    assert (round(k_c, 6), round(k_m, 6)) == (fit["k_compute"], fit["k_memory"])


@pytest.mark.parametrize("cid", ["mlenergy-v3-llama-3.1-70b-h100-x4-mns8-power",
                                 "mlenergy-v3-llama-3.1-70b-h100-x4-mns512-power"])
def test_gpu_power_out_of_sample(cid):
    """ML.ENERGY leaderboard v3 (github ml-energy/leaderboard, commit 0cd52da, 2026-02): Llama-3.1-70B on
    4 × H100 under vLLM draws 1,765 W at batch 8 and 2,493 W at batch 512 (all four GPUs). The power fit
    used only Llama-3.1-8B on one H100; these are out of sample. Tolerance 25 % (measured: +17 %, +12 %)."""
    c, gpu_w, _ = _gpu_watts_and_jpt(cid)
    assert gpu_w == pytest.approx(c["value"], rel=0.25)


@pytest.mark.parametrize("cid", ["mlenergy-v3-llama-3.1-8b-h100-x1-mns8-jpt", "mlenergy-v3-llama-3.1-70b-h100-x4-mns8-jpt"])
def test_joules_per_token_at_small_batch(cid):
    """ML.ENERGY v3: 0.455 J per output token (Llama-3.1-8B, 1 × H100, batch 8) and 3.76 J (Llama-3.1-70B,
    4 × H100, batch 8), GPU energy only. tokenmath's GPU-only J/token of a decode step at the same batch
    (context half the mean output: prompts are not published). Tolerance 25 %."""
    c, _, jpt = _gpu_watts_and_jpt(cid)
    assert jpt == pytest.approx(c["value"], rel=0.25)


@pytest.mark.parametrize("cid", [k for k, v in CASES.items() if v["kind"] == "joules_per_token"
                                 and v["setup"]["batch"] > 8.5 and v["model"] in CAT.models])
def test_joules_per_token_at_large_batch_is_a_lower_bound(cid):
    """ML.ENERGY v3 J/output token at batch 64–512 counts the prefill of prompts whose lengths are not
    published, and tokenmath's decode throughput at large batch runs ahead of vLLM's (issue 11's gap), so
    tokenmath's decode-only J/token sits below the measurement: within [0.25, 1.25] × of it (measured
    0.33–0.83 ×)."""
    c, _, jpt = _gpu_watts_and_jpt(cid)
    assert 0.25 * c["value"] <= jpt <= 1.25 * c["value"]


def test_llama_3_1_405b_training_energy():
    """Meta's Llama 3.1 model card: 405B trained on 30.84 M H100-80GB GPU-hours at a 700 W TDP = 21,588
    MWh (GPU energy at TDP). tokenmath: 6·N·D on 16,384 H100 for 15 T tokens at the default MFU 0.4 (Llama 3's
    published 38–43 %), every GPU at board power. Tolerance 25 % (the card's hours include more than the
    final run)."""
    c = CASES["metacard-llama-3.1-405b-training-energy"]
    from tokenmath import training as tr
    m, s = CAT.model("llama-3.1-405b"), CAT.system("h100-sxm")
    t = tr.train_time(m, s, 16384, 15e12)
    e = en.training_energy(s, 16384, t.seconds)
    assert e.gpu_energy_mwh == pytest.approx(c["value"], rel=0.25)
    assert e.energy_mwh > e.gpu_energy_mwh  # host and PUE on top


def test_inferencex_tokens_per_provisioned_mw_is_within_a_factor_three():
    """InferenceX (SemiAnalysis, InferenceMAX blog 2025-10): gpt-oss-120b at 1k in / 8k out and ~90 tokens/s
    per user: H100 900k, MI300X 750k tokens/s per provisioned MW (all-in 1.73 / 1.79 kW per GPU). The power
    side is a definition (throughput ÷ provisioned kW); the truth being checked is throughput, where the
    estimate is 2.8× optimistic at 8k outputs on these chips: a factor 3 is the tolerance, and the gap is
    reported in docs/energy.md."""
    from tokenmath.plan import plan
    m = CAT.model("gpt-oss-120b")
    for cid in ("inferencex-gpt-oss-120b-h100-sxm-1k8k-tpmw", "inferencex-gpt-oss-120b-mi300x-1k8k-tpmw"):
        c = CASES[cid]
        s = CAT.system(c["system"])
        b = plan(m, [s], input_tokens=1024, output_tokens=8192, min_tokens_per_s_per_user=90).best
        per_mw = b.tokens_per_s_per_chip / (en.chip_power(s).all_in_kw * 1e3) * 1e6
        assert c["value"] / 3 <= per_mw <= c["value"] * 3


def test_energy_keys_in_serving_answers_and_the_energy_command():
    """step, curve, layout and plan carry watts, joules_per_token and tokens_per_s_per_mw; energy gives the
    breakdown whose parts sum to the wall power; train time gains energy_mwh."""
    run = lambda *a: json.loads(CliRunner().invoke(app, list(a) + ["--json"]).stdout)  # noqa: E731
    st = run("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64", "--context", "4096")
    assert st["watts"] > 0 and st["joules_per_token"] > 0 and st["tokens_per_s_per_mw"] > 0
    cv = run("curve", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--over", "batch", "--points", "5")
    assert all(p["joules_per_token"] > 0 for p in cv["points"])
    ly = run("layout", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--tp", "8", "--batch", "64")
    assert ly["watts"] > 0
    pl = run("plan", "--model", "llama-3.1-8b", "--systems", "h100-sxm", "--objective", "energy")
    assert pl["objective"] == "energy" and pl["best"]["joules_per_token"] > 0
    e = run("energy", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64",
            "--input-tokens", "1000", "--output-tokens", "300")
    assert sum(e["energy"]["parts_w"].values()) == pytest.approx(e["watts"], rel=1e-9) and e["request"]["joules"] > 0
    tt = run("train", "time", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1024", "--tokens", "1T")
    assert tt["energy_mwh"] > tt["gpu_energy_mwh"] > 0


def test_tco_parts_sum_and_sit_near_the_rental_price():
    """tco's parts sum to the total (invariant). Against SemiAnalysis' InferenceX TCO (github
    SemiAnalysisAI/InferenceX-app, 2026-04): H100 owned by a hyperscaler $1.30 per GPU-hour; tokenmath with
    energy.toml's sourced capex ($33,750), 4-year life, EIA power, CBRE colocation and PUE 1.56, at 10 % cost
    of capital: within 40 %."""
    r = CliRunner().invoke(app, ["tco", "--system", "h100-sxm", "--cost-of-capital", "0.10", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    parts = d["capex_usd_per_chip_hour"] + d["power_usd_per_chip_hour"] + d["facility_usd_per_chip_hour"]
    assert parts == pytest.approx(d["usd_per_chip_hour"], rel=1e-12)
    assert d["usd_per_chip_hour"] == pytest.approx(1.30, rel=0.40)


def _values(obj, key):
    """Every value of `key` anywhere in a JSON record."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, (int, float)):
                yield v
            yield from _values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v, key)


@pytest.mark.parametrize("cmd", [["step", "--batch", "64", "--context", "4096"], ["curve", "--points", "3"],
                                 ["layout", "--chips", "8", "--tp", "8", "--batch", "64"], ["prefill"],
                                 ["traffic", "--tokens-per-s", "1M"]])
def test_cost_tco_prices_serving_answers_by_ownership(cmd):
    """--cost tco on a serving command charges a *busy* chip-hour of owning — `tokenmath tco`'s $/h ÷ its
    utilisation (70 %: tokens are made only in busy hours; issue 21 found it priced at 100 % busy) —
    instead of the catalog's rental price: every $ figure of the answer scales by that / rental
    (invariant, rel 1e-9), the physics unchanged; a chip without a sourced capex is one sentence, exit 2."""
    tr = json.loads(CliRunner().invoke(app, ["tco", "--system", "h100-sxm", "--json"]).stdout)
    t = tr["usd_per_busy_chip_hour"]
    assert t == pytest.approx(tr["usd_per_chip_hour"] / tr["utilisation"], rel=1e-12) and tr["utilisation"] == 0.7
    rent = CAT.system("h100-sxm").usd_per_chip_hour
    base = [cmd[0], "--model", "llama-3.1-70b", "--system", "h100-sxm"] + cmd[1:] + ["--json"]
    rented = json.loads(CliRunner().invoke(app, base).stdout)
    r = CliRunner().invoke(app, base + ["--cost", "tco"])
    assert r.exit_code == 0, r.output
    owned = json.loads(r.stdout)
    keys = ("usd_per_mtok", "usd_per_day")
    pairs = [(a, b) for k in keys for a, b in zip(_values(rented, k), _values(owned, k))]
    assert pairs and all(b / a == pytest.approx(t / rent, rel=1e-9) for a, b in pairs if a), pairs[:3]
    r = CliRunner().invoke(app, [cmd[0], "--model", "llama-3.1-8b", "--system", "mi355x"] + cmd[1:] + ["--cost", "tco"])
    assert r.exit_code == 2 and "--cost tco cannot price mi355x" in r.output


def test_tco_words_say_what_each_number_is():
    """Issue 21: `tco` printed "573 W average chip + host" for the chip alone, and advised --board-w, which
    did not exist. The power line names the chip's average and the host's watts apart (their sum is
    what the electricity line charges: invariant, rel 1e-9), `--board-w` exists on `tco` and `energy`,
    and a chip without a board power (tpu-v7) is priced once it is given."""
    r = CliRunner().invoke(app, ["tco", "--system", "h100-sxm"])
    assert r.exit_code == 0, r.output
    d = json.loads(CliRunner().invoke(app, ["tco", "--system", "h100-sxm", "--json"]).stdout)
    assert f"({d['average_chip_w']:,.0f} W average chip + {d['host_w']:,.0f} W host)" in r.stdout
    kwh = d["pue"] / 1e3 * d["usd_per_kwh"]
    assert d["power_usd_per_chip_hour"] == pytest.approx((d["average_chip_w"] + d["host_w"]) * kwh, rel=1e-9)
    assert "per busy chip-hour" in r.stdout
    r = CliRunner().invoke(app, ["tco", "--system", "tpu-v7", "--board-w", "1000", "--capex-usd-per-chip", "20000", "--json"])
    assert r.exit_code == 0, r.output
    assert "board_w = 1000 (given)" in json.loads(r.stdout)["assumptions"]
    e = CliRunner().invoke(app, ["energy", "--model", "llama-3.1-8b", "--system", "tpu-v7", "--board-w", "1000", "--json"])
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["power"]["board_w"] == 1000
