"""energy.py (issues 15, 23): board, node and facility power; the energy of work; ownership cost.

Checks against published numbers name their source and tolerance in the docstring; tests that
compare the code with itself say "invariant"."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import energy as en
from tokenmath import validate_energy as ve
from tokenmath.cli import app

CAT = tm.load_catalog()
ROOT = Path(__file__).parents[1]
CASES = {json.loads(x)["id"]: json.loads(x) for x in
         (ROOT / "src/tokenmath/validation/energy_cases.jsonl").read_text().splitlines() if x.strip()}
FAC = en.Facility(pue=1.3, usd_per_kwh=0.08, facility_usd_per_kw_month=150.0, cost_of_capital=0.1, years=5.0)
POWER = en.ChipPower(board_w=700.0, idle_w=105.0, host_w=350.0, all_in_kw=1.73, host_max_w=575.0, a0=0.54, a1=0.056)


def _fit_script():
    spec = importlib.util.spec_from_file_location("fit_power", ROOT / "scripts" / "fit_power.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(*args):
    r = CliRunner().invoke(app, list(args) + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ---- the board-power model against measurements it never saw --------------------------------


def test_power_fit_reproduces_from_its_script():
    """Invariant: validation/power_fit.json's a0, a1 are what scripts/fit_power.py computes from the
    shipped board cases (to the 6 digits stored): the coefficients are not typed by hand."""
    a0, a1 = _fit_script().fit()
    fit = en.power_fit()
    assert (round(a0, 6), round(a1, 6)) == (fit["a0"], fit["a1"])


def test_board_power_never_fitted_meets_the_issue_targets():
    """ML.ENERGY leaderboard v3 (github ml-energy/leaderboard, commit 0cd52da: 143 H100 configurations
    of 8 catalog models under vLLM) and Argonne's LLM-Inference-Bench (16 H100 rows, vLLM and
    TensorRT-LLM, batch 1-64): each row's board power predicted by a fit that never saw its model
    (leave one model out). Issue 23's targets are the tolerances: median |error| <= 10 %, p90 <= 25 %,
    over all rows and over the 44 rows at batch <= 16 (where the model before issue 23 was 2x high)."""
    fp = _fit_script()
    rows = fp._rows()
    ratio = fp.cross_validate(rows, lambda c: c.model)
    err = np.abs(ratio - 1)
    small = np.array([r[0].batch <= 16 for r in rows])
    assert len(rows) >= 150 and small.sum() >= 40
    assert np.median(err) <= 0.10 and np.percentile(err, 90) <= 0.25
    assert np.median(err[small]) <= 0.10 and np.percentile(err[small], 90) <= 0.25


def test_board_power_transfers_across_sources():
    """Leave one source out: a fit on ML.ENERGY alone (vLLM 0.11, continuous batching, NVML energy
    counters) predicts Argonne's 16 H100 measurements (static batches of 1024 in / 1024 out,
    vLLM and TensorRT-LLM 2024, nvidia-smi sampling; chuyishang's and Morrison's idle readings put the
    sampling spread near 5 %). Tolerance: median |error| <= 10 %, every row within 30 %."""
    fp = _fit_script()
    rows = fp._rows()
    arg = np.array(["argonne" in r[0].id for r in rows])
    a0, a1 = fp.fit([r for r, a in zip(rows, arg) if not a])
    e = np.array([fp._predict(a0, a1, r) / r[0].measured - 1 for r, a in zip(rows, arg) if a])
    assert e.size == 16
    assert np.median(np.abs(e)) <= 0.10 and np.abs(e).max() <= 0.30


def test_small_batch_board_power_is_not_the_old_2x():
    """ML.ENERGY v3, Qwen3-8B on one H100 (lm-arena-chat), batch 8 / 16 / 32: 427 / 451 / 478 W per GPU.
    Issue 23 reported the old model about twice the measurement at batch 8-32 (on the held-out
    generation); here on Hopper, within 20 % each (the leave-one-source-out p90 at batch <= 16 is 19 %;
    the same model on GPQA draws 494-608 W at these batches: the spread between tasks is the error)."""
    cases = {c.id: c for c, _ in ve.load_energy_cases()}
    s = CAT.system("h100-sxm")
    for mns in (8, 16, 32):
        c = cases[f"mlenergy-v3-qwen3-8b-lm-arena-chat-h100-x1-mns{mns}-board"]
        assert ve.board_watts(c, en.chip_power(s)) == pytest.approx(c.measured, rel=0.20), mns


def test_roofline_busy_shares_do_not_predict_better():
    """Invariant of the shipped choice: adding the roofline's HBM and compute busy shares (over the
    measured step) to the activity does not lower the leave-one-model-out median error, and the model
    before issue 23 (busy shares only, no tokens-per-chip term) is worse (docs/energy.md)."""
    alt = _fit_script().alternatives(_fit_script()._rows())
    shipped = alt["a0 + a1 ln tau (shipped)"]["median_abs_error"]
    assert all(v["median_abs_error"] >= shipped - 1e-9 for v in alt.values())
    assert alt["a0 + k_m u_m + k_c u_c (no tau: the model before issue 23)"]["median_abs_error"] > shipped + 0.02


# ---- levels, the energy of work ----------------------------------------------------------------


def test_invariant_levels_add_up_and_parts_sum_to_the_facility():
    """Invariants: node = board + host, facility = node × PUE, the parts sum to the facility's watts,
    J/token × tokens/s = watts at each level, and the headline keys follow --level."""
    e = en.step_energy(POWER, FAC, chips=8, step_s=0.02, compute_s=0.004, memory_s=0.012, tokens=64)
    assert e.node_watts == pytest.approx(e.board_watts + e.host_watts, rel=1e-12)
    assert e.facility_watts == pytest.approx(e.node_watts * 1.3, rel=1e-12)
    assert sum(e.parts_w.values()) == pytest.approx(e.facility_watts, rel=1e-12)
    for lvl in en.LEVELS:
        x = en.step_energy(POWER, FAC, chips=8, step_s=0.02, compute_s=0.004, memory_s=0.012, tokens=64, level=lvl)
        assert x.watts == pytest.approx(getattr(x, f"{lvl}_watts"), rel=1e-12)
        assert x.joules_per_token * (64 / 0.02) == pytest.approx(x.watts, rel=1e-12)
    sweep = en.step_energy(POWER, FAC, chips=8, step_s=np.array([0.01, 0.02]), compute_s=np.array([0.001, 0.02]),
                           memory_s=np.array([0.01, 0.01]), tokens=np.array([8.0, 512.0]))
    assert np.shape(sweep.watts) == (2,) and np.all(np.diff(sweep.board_watts_per_chip) > 0)


def test_request_energy_per_output_token_against_ml_energy():
    """ML.ENERGY v3: Llama-3.1-8B-Instruct on one H100 (vLLM, lm-arena-chat, batch 63.9, mean output 396
    tokens) uses 0.1186 J of GPU energy per output token, prefill included. `energy --input-tokens
    --output-tokens --level board` counts the same way (input 500: ML.ENERGY publishes no prompt
    lengths). Tolerance 30 %: the prompt length is assumed, and the calibrated step has run up to
    ~20 % fast here (10.3 vs 12.4 ms before issue 22's refits; 11.6 ms, 6.4 % fast, since the one that
    charges a MoE layer without shared experts only its attention's dense kernels)."""
    r = run("energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--batch", "64",
            "--input-tokens", "500", "--output-tokens", "396", "--level", "board")["request"]
    assert r["level"] == "board" and r["joules_per_output_token"] == r["board_joules_per_output_token"]
    assert r["board_joules_per_output_token"] == pytest.approx(0.1186, rel=0.30)
    assert 0 < r["prefill_share"] < 0.5
    assert r["node_joules_per_output_token"] > r["board_joules_per_output_token"]


def test_joules_per_output_token_never_fitted():
    """ML.ENERGY v3 and LLM-Inference-Bench J per output token (GPU energy, prefill included, ÷ output
    tokens; 159 rows): board power from a fit without the row's model, × the calibrated estimate's
    step time. The issue's target median <= 15 % is the tolerance on the median; the p90 tolerance is
    40 %, the step estimate's own p90 error on these rows (41 % measured in issue 23's work), not the
    power model's (with the measured step time the J/token error is the board error: p90 15 %)."""
    cv = en.power_fit()["cross_validated"]["leave_one_model_out"]
    fp = _fit_script()
    rows = fp._rows()
    ratio = fp.cross_validate(rows, lambda c: c.model)
    jpt = fp._jpt_cases()
    est = []
    for r, q in zip(rows, ratio):
        c, T = jpt[r[0].id.removesuffix("-board")]
        est.append(c.chips * q * r[0].measured * T / c.batch / c.measured - 1)
    est = np.abs(est)
    assert np.median(est) <= 0.15 and np.percentile(est, 90) <= 0.40
    assert cv["joules_per_output_token"]["median_abs_error"] == pytest.approx(np.median(est), abs=1e-4)


def test_node_power_of_an_8_gpu_h100_node():
    """Latif et al. 2024 (arXiv 2412.08602): an 8-GPU H100 HGX node peaks at 8.4 kW with its GPUs near
    full utilisation — the measurement the host figure comes from (in-sample: exact). Newkirk et al.
    2025 (arXiv 2506.14551, same laboratory): computationally intensive training runs at 76 % of the
    10.2 kW rating, 969 W per GPU — out of sample; tolerance 10 % (the training board share is
    'over 85 %' of TDP, a lower bound)."""
    r = ve.validate_energy(ve.load_energy_cases(ROOT / "src/tokenmath/validation/energy/node-h100.jsonl"))
    by = {x.id: x for x in r.rows}
    assert by["latif-2024-h100-hgx-node-max-8-gpu"].predicted == pytest.approx(1050.0, rel=1e-9)
    assert by["latif-2024-h100-hgx-node-max-8-gpu"].used_in_fit == "host power"
    assert by["newkirk-2025-h100-node-training-intensive"].predicted == pytest.approx(969.0, rel=0.10)


def test_host_is_measured_and_the_rating_stays_the_bound():
    """DGX H100 rating 10.2 kW for 8 GPUs (575 W host per GPU) vs the 8.4 kW measured (350 W): the
    host power energy answers use is the measurement, the rating is kept beside it (and is what a
    facility provisions). Systems with a rating only take the measured/rated ratio, said."""
    h = en.chip_power(CAT.system("h100-sxm"))
    assert h.host_w == pytest.approx(350.0) and h.host_max_w == pytest.approx(575.0) and h.host_w < h.host_max_w
    assert h.provisioned_w == pytest.approx(700 + 575)
    b = en.chip_power(CAT.system("b200"))
    assert b.host_w == pytest.approx(787.5 * 350 / 575, rel=1e-3) and any("rating" in a for a in b.assumptions)


# ---- power caps ----------------------------------------------------------------------------------


def test_invariant_power_cap_lowers_board_power_and_slows_compute_bound_work():
    """Invariants: a cap below the demand holds the board at the cap, lowers the clock to
    φ = ((cap − idle)/(demand − idle))^(1/3) and stretches only the compute-bound share of the pass;
    a cap above the demand changes nothing; memory-bound work (compute share 0) does not slow."""
    capped = en.ChipPower(**{**POWER.__dict__, "cap_w": 500.0})
    demand, *_ = en.board_power(POWER, 512)
    assert demand > 500
    w, _, phi, factor = en.board_power(capped, 512, compute_share=0.4)
    assert w == pytest.approx(500.0) and phi == pytest.approx(((500 - 105) / (demand - 105)) ** (1 / 3))
    assert factor == pytest.approx(0.4 / phi + 0.6) and factor > 1
    assert en.board_power(capped, 512, compute_share=0.0)[3] == pytest.approx(1.0)
    low = en.board_power(POWER, 2)[0]
    assert en.board_power(en.ChipPower(**{**POWER.__dict__, "cap_w": low + 1}), 2)[0] == pytest.approx(low)
    e = run("energy", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "4", "--batch", "512",
            "--power-cap-w", "450", "--level", "board")
    free = run("energy", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "4", "--batch", "512",
               "--level", "board")
    assert e["board_watts_per_chip"] == pytest.approx(450.0) and e["step_s"] > free["step_s"]
    assert e["energy"]["slowdown"] == pytest.approx(e["step_s"] / free["step_s"], rel=1e-9)


# ---- facility --------------------------------------------------------------------------------------


def test_facility_classes_set_the_pue_and_the_default_is_said():
    """Cottier et al. 2024 (arXiv 2405.21015, A.4) / Epoch's cost code: PUE 1.1 for hyperscalers, 1.25
    otherwise; Uptime Institute 2024: 1.56 industry average (exact, the sources' own figures). The
    default class is named in every answer's assumptions; --pue replaces the class."""
    base = ["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--batch", "64"]
    for cls, pue in (("hyperscale", 1.10), ("colo", 1.25), ("average", 1.56)):
        d = run(*base, "--facility", cls)
        assert d["power"]["pue"] == pytest.approx(pue) and d["facility_watts"] == pytest.approx(d["node_watts"] * pue)
    d = run(*base)
    assert d["power"]["facility_class"] == "colo" and any("default" in a for a in d["power"]["assumptions"])
    assert run(*base, "--pue", "1.4")["power"]["pue"] == pytest.approx(1.4)


# ---- training ----------------------------------------------------------------------------------


def test_llama_3_1_405b_training_energy_like_with_like():
    """Meta's Llama 3.1 model card: 405B trained on 30.84 M H100-80GB GPU-hours at 'TDP of 700W' —
    21,588 MWh, a board-level figure at TDP (the card's own convention). tokenmath's same-convention
    figure, chip-hours × 700 W, from 6·N·D on 16,384 H100 for 15.6 T tokens at 41 % MFU (Llama 3
    paper: 15.6 T tokens, 38-43 % MFU): within ±20 % (issue 23's target; the card's hours include
    post-training and restarts the 6·N·D count does not). The measured-draw board figure (OLMo 2:
    over 85 % of TDP while training) sits below it, node and facility above."""
    d = run("train", "time", "--model", "llama-3.1-405b", "--system", "h100-sxm", "--chips", "16384",
            "--tokens", "15.6T", "--mfu", "0.41")
    assert d["board_energy_at_tdp_mwh"] == pytest.approx(CASES["metacard-llama-3.1-405b-training-energy"]["value"], rel=0.20)
    assert d["board_energy_mwh"] < d["board_energy_at_tdp_mwh"] < d["node_energy_mwh"] < d["facility_energy_mwh"]
    assert d["energy_level"] == "facility" and d["energy_mwh"] == d["facility_energy_mwh"]
    assert d["gpu_energy_mwh"] == d["board_energy_mwh"]


# ---- ownership -------------------------------------------------------------------------------


def test_capital_recovery_factor_is_the_annuity():
    """CRF = r(1+r)^n/((1+r)^n − 1): 10 % over 5 years is 0.263797 (any annuity table, e.g. the
    capital recovery factor table of engineering economics texts, 5 digits); r = 0 is straight-line 1/n.
    rel 1e-5."""
    assert en.capital_recovery_factor(0.10, 5) == pytest.approx(0.26380, rel=1e-5)
    assert en.capital_recovery_factor(0.0, 4) == pytest.approx(0.25)
    assert en.capital_recovery_factor(0.08, 3) == pytest.approx(0.38803, rel=1e-5)


@pytest.mark.parametrize("system, published", [("h100-sxm", 1.69), ("b200", 2.34), ("gb200-nvl72", 2.75)])
def test_tco_near_published_ownership_estimates(system, published):
    """SemiAnalysis' AI Cloud TCO model as InferenceX uses it (github SemiAnalysisAI/InferenceX-app
    constants.ts GPU_SPECS costn, commit 77ca49a): owning per GPU-hour for 'Neocloud Giants ... that
    plan to own their own chips (4-year Economic Useful Life)': H100 $1.69, B200 $2.34, GB200 $2.75.
    tokenmath's defaults are that owner's: 4 years, GPU financing at 10 %, colocation rent and PUE,
    the cluster network (Epoch: 19 % of cluster capex). Tolerance ±20 % (issue 23's target). The
    hyperscaler tier (H100 $1.30, B200 $1.95, GB200 $2.21) is 9-46 % below: docs/energy.md."""
    d = run("tco", "--system", system)
    assert d["usd_per_chip_hour"] == pytest.approx(published, rel=0.20)
    assert d["network_capex_usd"] == pytest.approx(d["server_capex_usd"] * 0.19 / 0.81, rel=1e-9)
    assert d["capex_usd"] == pytest.approx(d["server_capex_usd"] + d["network_capex_usd"] + d["other_capex_usd"])


def test_tco_electricity_adds_the_host():
    """Invariant (issue 23: a mutation making the electricity chip − host survived every test): the
    power term is (average board + host) × PUE × $/kWh, and 100 W more host costs exactly
    100 W × PUE × $/kWh more per hour; the parts sum to the total."""
    s = CAT.system("h100-sxm")
    t0 = en.tco(s, fac=FAC, power=en.chip_power(s, overrides={"host_w": 200.0}))
    t1 = en.tco(s, fac=FAC, power=en.chip_power(s, overrides={"host_w": 300.0}))
    assert t1.power_usd_per_chip_hour - t0.power_usd_per_chip_hour == pytest.approx(100 * 1.3 / 1e3 * 0.08, rel=1e-9)
    assert t0.power_usd_per_chip_hour == pytest.approx((t0.average_chip_w + 200.0) * 1.3 / 1e3 * 0.08, rel=1e-12)
    parts = t0.capex_usd_per_chip_hour + t0.power_usd_per_chip_hour + t0.facility_usd_per_chip_hour
    assert parts == pytest.approx(t0.usd_per_chip_hour, rel=1e-12)


def test_breakeven_utilisation_equalises_owned_and_api_cost():
    """At u*, owning costs exactly what the API charges for the tokens (invariant of the closed form)."""
    t = en.Tco("x", 30000.0, 0.9, 0.07, 0.2, 1.17, 1.3, 0.7, 371.0, 0.2638, 0.0385, 0.0832)
    tps, api = 1000.0, 1.0
    u = en.breakeven_utilisation(t, tokens_per_s_per_chip=tps, api_usd_per_mtok=api)
    owned = t.capex_usd_per_chip_hour + t.facility_usd_per_chip_hour + t.power_idle_usd_per_chip_hour \
        + (t.power_busy_usd_per_chip_hour - t.power_idle_usd_per_chip_hour) * u
    assert owned == pytest.approx(u * tps * 3600 / 1e6 * api, rel=1e-12)
    assert en.breakeven_utilisation(t, tokens_per_s_per_chip=10.0, api_usd_per_mtok=1.0) is None  # never pays


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
    """--cost tco on a serving command charges a token a *busy* chip-hour of owning — `tokenmath tco`'s
    $/h ÷ its utilisation (70 %: tokens are made only in busy hours) — instead of the catalog's rental
    price: every $/Mtok of the answer scales by that / rental (invariant, rel 1e-9), the physics
    unchanged. A fleet's $/day pays for its chips every hour, busy or not: the owning $/h itself
    (traffic's 1,152 H100s for 1M tokens/s of Llama-3.1-70B cost 1,152 × 24 × $1.90, not × $2.72: a
    user review found it 43 % high). A chip without a sourced capex is one sentence, exit 2."""
    tr = run("tco", "--system", "h100-sxm")
    t = tr["usd_per_busy_chip_hour"]
    assert t == pytest.approx(tr["usd_per_chip_hour"] / tr["utilisation"], rel=1e-12) and tr["utilisation"] == 0.7
    rent = CAT.system("h100-sxm").usd_per_chip_hour
    base = [cmd[0], "--model", "llama-3.1-70b", "--system", "h100-sxm"] + cmd[1:]
    rented = run(*base)
    owned = run(*base, "--cost", "tco")
    pairs = list(zip(_values(rented, "usd_per_mtok"), _values(owned, "usd_per_mtok")))
    assert all(b / a == pytest.approx(t / rent, rel=1e-9) for a, b in pairs if a), pairs[:3]
    days = list(zip(_values(rented, "usd_per_day"), _values(owned, "usd_per_day")))
    assert all(b / a == pytest.approx(tr["usd_per_chip_hour"] / rent, rel=1e-9) for a, b in days if a), days[:3]
    assert bool(days) == (cmd[0] == "traffic") and (pairs or days)
    r = CliRunner().invoke(app, [cmd[0], "--model", "llama-3.1-8b", "--system", "mi355x"] + cmd[1:] + ["--cost", "tco"])
    assert r.exit_code == 2 and "--cost tco cannot price mi355x" in r.output


def test_tco_words_say_what_each_number_is():
    """The power line names the board's average and the host's watts apart (their sum × PUE × price
    is what it charges: invariant, rel 1e-9), the facility line the provisioned watts it charges rent
    on, and a chip without a board power (tpu-v7) is priced once it is given."""
    r = CliRunner().invoke(app, ["tco", "--system", "h100-sxm"])
    assert r.exit_code == 0, r.output
    d = run("tco", "--system", "h100-sxm")
    assert f"({d['average_chip_w']:,.0f} W average board + {d['host_w']:,.0f} W host)" in r.stdout
    assert f"provisioned {d['provisioned_w']:,.0f} W" in r.stdout
    kwh = d["pue"] / 1e3 * d["usd_per_kwh"]
    assert d["power_usd_per_chip_hour"] == pytest.approx((d["average_chip_w"] + d["host_w"]) * kwh, rel=1e-9)
    assert "per busy chip-hour" in r.stdout
    d = run("tco", "--system", "tpu-v7", "--board-w", "1000", "--capex-usd-per-chip", "20000")
    assert "board_w = 1000 (given)" in d["assumptions"]
    assert run("energy", "--model", "llama-3.1-8b", "--system", "tpu-v7", "--board-w", "1000")["power"]["board_w"] == 1000


# ---- the answers carry their level ------------------------------------------------------------


def test_energy_keys_in_serving_answers_say_their_level():
    """step, curve, layout, plan, fleet and train carry their energy with its level: serving answers
    node (a server at the wall), fleet and train the facility; each level by name."""
    st = run("step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8", "--batch", "64", "--context", "4096")
    assert st["energy_level"] == "node" and st["watts"] == st["node_watts"]
    assert st["board_watts"] < st["node_watts"] < st["facility_watts"]
    cv = run("curve", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--over", "batch", "--points", "5")
    assert all(p["joules_per_token"] > 0 and p["energy_level"] == "node" for p in cv["points"])
    pl = run("plan", "--model", "llama-3.1-8b", "--systems", "h100-sxm", "--objective", "energy")
    assert pl["objective"] == "energy" and pl["best"]["joules_per_token"] > 0 and pl["best"]["energy_level"] == "node"


def test_fleet_energy_is_facility_per_request_and_per_day():
    """The fleet's energy is at the facility (× PUE), per output token, per request and per day
    (invariants: J/request = watts / request rate, MWh/day = watts × 24 h)."""
    d = run("fleet", "--model", "llama-3.1-8b", "--systems", "h100-sxm", "--request-rate", "5", "--input-tokens", "1000",
            "--output-tokens", "300", "--verify", "0")
    b = d["best"]
    assert b["energy_level"] == "facility"
    assert b["facility_joules_per_request"] == pytest.approx(b["watts"] / 5.0, rel=1e-9)
    assert b["facility_mwh_per_day"] == pytest.approx(b["watts"] * 24 / 1e6, rel=1e-9)


# ---- validation of energy ------------------------------------------------------------------------


def test_energy_cases_are_sourced_and_hold_no_held_out_data():
    """Issue 23: energy cases from >= 4 publications (ML.ENERGY, Argonne, two Brookhaven papers), each
    with its source and date; no Blackwell measurement and nothing from MLPerf (held out)."""
    cases = [c for c, _ in ve.load_energy_cases()]
    assert len(cases) >= 300 and {c.metric for c in cases} == set(ve.METRICS)
    assert len({ve.source_key(c) for c in cases}) >= 4
    for c in cases:
        assert c.source and c.date
        text = (c.system + c.id + c.source + c.notes).lower()
        assert not any(b in text for b in ("b200", "gb200", "b300", "gb300", "blackwell", "mlperf", "mlcommons")), c.id


def test_ci_gate_energy_validation_has_not_regressed():
    """The CI gate, per metric: `tokenmath validate`'s energy report on the shipped cases may not rise
    above the medians and p90s recorded when the power model was fitted (validation/power_fit.json
    in_sample) plus a 2-point margin; every case is predicted; the 80 % bands (from the cross-validated
    fit) hold 70-95 % of the board and J/token cases."""
    r = ve.validate_energy()
    rec = en.power_fit()["in_sample"]
    assert not r.failures and set(r.by_metric) == set(ve.METRICS)
    for m, v in r.by_metric.items():
        assert v["median_abs_error"] <= rec[m]["median_abs_error"] + 0.02, m
        assert v["p90_abs_error"] <= rec[m]["p90_abs_error"] + 0.04, m
    for m in ("board_watts_per_chip", "joules_per_output_token"):
        assert 0.70 <= r.by_metric[m]["band_coverage"] <= 0.95, (m, r.by_metric[m])


def test_cli_validate_runs_energy_cases(tmp_path):
    """`tokenmath validate FILE` with energy cases reports them per metric (median, p90, band coverage);
    a file mixing step and energy cases gets both reports."""
    f = tmp_path / "mixed.jsonl"
    step = (ROOT / "src/tokenmath/validation/cases/engines.jsonl").read_text().splitlines()[0]
    energy = (ROOT / "src/tokenmath/validation/energy/node-h100.jsonl").read_text()
    f.write_text(step + "\n" + energy)
    r = CliRunner().invoke(app, ["validate", str(f), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n"] == 1 and d["energy"]["by_metric"]["node_watts_per_chip"]["n"] == 2
    only = tmp_path / "energy.jsonl"
    only.write_text(energy)
    r = CliRunner().invoke(app, ["validate", str(only)])
    assert r.exit_code == 0 and "node_watts_per_chip" in r.stdout and "in 80% band" in r.stdout


@pytest.mark.parametrize("line, fragment", [
    ('{"id": "x", "metric": "board_watts_per_chip", "model": "llama-3.1-8b", "system": "h100-sxm", "chips": 1, '
     '"batch": 8, "measured": -5, "source": "s"}', "measured"),
    ('{"id": "x", "metric": "board_watts_per_chip", "model": "llama-3.1-8b", "system": "h100-sxm", "chips": 1, '
     '"batch": 8, "measured": 400, "source": "s", "workload": "idle"}', "workload"),
])
def test_bad_energy_case_files(tmp_path, line, fragment):
    f = tmp_path / "bad.jsonl"
    f.write_text(line + "\n")
    r = CliRunner().invoke(app, ["validate", str(f)])
    assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output


# ---- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["tco", "--system", "h100-sxm", "--pue", "0.5"], "--pue"),
    (["tco", "--system", "h100-sxm", "--utilisation", "2"], "--utilisation"),
    (["tco", "--system", "h100-sxm", "--years", "0"], "--years"),
    (["tco", "--system", "h100-sxm", "--cost-of-capital", "-0.1"], "--cost-of-capital"),
    (["tco", "--system", "h100-sxm", "--facility", "moon"], "--facility"),
    (["tco", "--system", "h100-sxm", "--other-capex-share", "-1"], "--other-capex-share"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--idle-w", "-5"], "--idle-w"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--level", "rack"], "--level"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--power-cap-w", "50"], "--power-cap-w"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--power-cap-w", "900"], "--power-cap-w"),
    (["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--input-tokens", "100"], "--output-tokens"),
    (["train", "time", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--tokens", "1T",
      "--level", "x"], "--level"),
    (["tco", "--system", "h100-sxm", "--model", "llama-3.1-8b"], "--price-sheet"),
    (["tco", "--system", "tpu-v7"], "give --board-w"),
    (["tco", "--system", "h100-sxm", "--board-w", "0"], "--board-w"),
])
def test_bad_energy_and_tco_input_is_one_sentence(args, fragment):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert fragment in r.output and "Traceback" not in r.output and "nan" not in r.output.lower().split()


def test_invariant_every_energy_figure_is_finite_over_a_sweep():
    """Invariant: no NaN or inf anywhere in an energy answer, across batch 1 to 4096 and the three levels."""
    for b in ("1", "4096"):
        for lvl in en.LEVELS:
            d = run("energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--batch", b,
                    "--level", lvl, "--input-tokens", "1000", "--output-tokens", "200")
            flat = list(_values(d, "watts")) + list(_values(d, "joules_per_output_token"))
            assert flat and all(math.isfinite(x) and x > 0 for x in flat)


@pytest.mark.parametrize("model, cached", [("qwen3-30b-a3b", None), ("deepseek-v3", 512.0), ("llama-3.1-70b", None)])
def test_invariant_plan_energy_of_many_rows_is_each_rows_own(model, cached):
    """Invariant: energy.plan_energy evaluates the planner's rows as one roofline broadcast per
    system and dtype pair over all their layouts (short rows padded) and one step_energy per
    replica size; each row's watts, J/token and tokens/s per MW equal that row evaluated alone
    (a one-row call), to 1e-12 — no row takes another's batch, layout or padding."""
    from tokenmath.plan import plan_system

    m, s = tm.get_model(model), tm.get_system("h100-sxm")
    cols, _, _ = plan_system(m, s, input_tokens=1000, output_tokens=500, estimate="calibrated")
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(len(cols["batch"]), size=min(40, len(cols["batch"])), replace=False))
    many = en.plan_energy(m, {s.name: s}, cols, rows, 1000, 500, prompt_cached=cached, level="facility")
    assert len({(int(cols["tp"][r]), int(cols["ep"][r]), int(cols["pp"][r])) for r in rows}) > 3
    for k, r in enumerate(rows):
        one = en.plan_energy(m, {s.name: s}, cols, [r], 1000, 500, prompt_cached=cached, level="facility")
        for a, b in zip(many, one):
            assert a[k] == pytest.approx(b[0], rel=1e-12)
