"""Fit the board-power model of energy.py on measured board power and write
src/tokenmath/validation/power_fit.json.

The model (energy.py): a chip running a pass with τ new tokens per chip draws

    P = P_idle + (P_board − P_idle) · clip(a0 + a1 · ln τ, 0, 1)

so (P − P_idle) / (P_board − P_idle) = a0 + a1 · ln τ is linear in ln τ: least squares over every
shipped board_watts_per_chip case of a serving or static workload (validation/energy/*.jsonl:
Hopper GPUs only, Blackwell held out). P_board and P_idle are each case's chip's (energy.toml).

Then what the fit does on rows it never saw: refit without each model (leave one model out) and
without each source (leave one source out), predict the held-out rows, and report median / p90
|error| for board watts, for node watts (the host added) and for J per output token (on the
calibrated estimate's step time, and on the measured one). The 10th-90th percentiles of
predicted/measured under leave-one-model-out are each metric's 80 % band. The roofline's compute
and HBM busy shares (over the measured step) are tried as extra terms and reported.

Run: .venv/bin/python scripts/fit_power.py   (tests/test_energy.py checks the stored fit refits exactly)
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src/tokenmath/validation/power_fit.json"
FIT_WORKLOADS = ("serving", "static")


def _rows():
    """(case, idle W, board W, τ, activity) of every board case the fit uses."""
    import tokenmath as tm
    from tokenmath import energy as en
    from tokenmath import validate_energy as ve

    cat = tm.load_catalog()
    out = []
    for c, _ in ve.load_energy_cases():
        if c.metric != "board_watts_per_chip" or c.workload not in FIT_WORKLOADS:
            continue
        idle, board = en.idle_and_board(cat.system(c.system))
        tau = max(c.batch / c.chips, 1.0)
        out.append((c, idle, board, tau, (c.measured - idle) / (board - idle)))
    return out


def fit(rows=None) -> tuple[float, float]:
    """(a0, a1) by least squares of activity on [1, ln τ]."""
    rows = _rows() if rows is None else rows
    X = np.array([[1.0, np.log(r[3])] for r in rows])
    y = np.array([r[4] for r in rows])
    (a0, a1), *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(a0), float(a1)


def _predict(a0, a1, r):
    _, idle, board, tau, _ = r
    return idle + (board - idle) * float(np.clip(a0 + a1 * np.log(tau), 0.0, 1.0))


def _summary(err) -> dict:
    a = np.abs(np.asarray(err, float))
    return {"n": int(a.size), "median_abs_error": round(float(np.median(a)), 4),
            "p90_abs_error": round(float(np.percentile(a, 90)), 4)}


def cross_validate(rows, group) -> dict[str, np.ndarray]:
    """Predicted/measured of every row from a fit without its group."""
    keys = np.array([group(r[0]) for r in rows])
    ratio = np.zeros(len(rows))
    for k in np.unique(keys):
        held = keys == k
        a0, a1 = fit([r for r, h in zip(rows, held) if not h])
        for i in np.nonzero(held)[0]:
            ratio[i] = _predict(a0, a1, rows[i]) / rows[i][0].measured
    return ratio


def _jpt_cases():
    """J/token cases paired with their board case (same id stem): (jpt case, estimated step s)."""
    import tokenmath as tm
    from tokenmath import validate_energy as ve
    from tokenmath.specs import Dtypes

    cat = tm.load_catalog()
    out = {}
    for c, _ in ve.load_energy_cases():
        if c.metric != "joules_per_output_token":
            continue
        m, s = cat.model(c.model), cat.system(c.system)
        T = ve.estimated_step_s(c, m, s, ve.layout_of(c, m), Dtypes.for_point(m, c.weight_dtype, c.kv_dtype or "bf16"))
        out[c.id.removesuffix("-jpt")] = (c, T)
    return out


def _busy_shares(c):
    """(u_c, u_m) of the case's decode pass over its measured step: the roofline's compute and HBM terms."""
    import tokenmath as tm
    from tokenmath import validate_energy as ve
    from tokenmath.specs import Dtypes
    from tokenmath.stepmodel import op_step

    cat = tm.load_catalog()
    m, s = cat.model(c.model), cat.system(c.system)
    op = op_step(m, s, ve.layout_of(c, m), c.batch, c.input_tokens + c.output_tokens / 2, 1.0, kernels=None,
                 dtypes=Dtypes.for_point(m, c.weight_dtype, c.kv_dtype or "bf16"), check=False)
    bp = op.bound_parts
    T = c.step_s_measured
    return float(bp["compute_s"]) / T, float(bp["weights_s"] + bp["kv_s"] + bp["activations_s"]) / T


def alternatives(rows) -> dict:
    """Leave-one-model-out |error| of richer activity models (the roofline's busy shares over the
    measured step as extra terms): what the shipped form was chosen against."""
    shares = np.array([_busy_shares(r[0]) for r in rows])
    y = np.array([r[4] for r in rows])
    lt = np.log([r[3] for r in rows])
    models = np.array([r[0].model for r in rows])
    meas = np.array([r[0].measured for r in rows])
    idle = np.array([r[1] for r in rows])
    board = np.array([r[2] for r in rows])
    out = {}
    for name, X in (("a0 + a1 ln tau (shipped)", np.c_[np.ones(len(rows)), lt]),
                    ("+ k_m u_m", np.c_[np.ones(len(rows)), lt, shares[:, 1]]),
                    ("+ k_m u_m + k_c u_c", np.c_[np.ones(len(rows)), lt, shares[:, 1], shares[:, 0]]),
                    ("a0 + k_m u_m + k_c u_c (no tau: the model before issue 23)", np.c_[np.ones(len(rows)), shares[:, 1], shares[:, 0]])):
        ratio = np.zeros(len(rows))
        for k in np.unique(models):
            tr = models != k
            coef, *_ = np.linalg.lstsq(X[tr], y[tr], rcond=None)
            ratio[~tr] = (idle[~tr] + (board[~tr] - idle[~tr]) * np.clip(X[~tr] @ coef, 0, 1)) / meas[~tr]
        out[name] = _summary(ratio - 1)
    return out


def main() -> None:
    import tokenmath as tm
    from tokenmath import energy as en

    rows = _rows()
    a0, a1 = fit(rows)
    OUT.write_text(json.dumps({"a0": round(a0, 6), "a1": round(a1, 6)}) + "\n", encoding="utf-8")
    en.power_fit.cache_clear()
    cat = tm.load_catalog()
    small = np.array([r[0].batch <= 16 for r in rows])
    jpt = _jpt_cases()
    cv, bands = {}, {}
    for name, group in (("leave_one_model_out", lambda c: c.model),
                        ("leave_one_source_out", lambda c: c.source.split(" ")[1] if c.source.startswith("github") else c.source)):
        ratio = cross_validate(rows, group)
        rec = {"board_watts_per_chip": _summary(ratio - 1),
               "board_watts_per_chip_batch_le_16": _summary(ratio[small] - 1)}
        # node: the held-out board prediction + the host (measured); J/token: × chips × step / batch
        host = np.array([en.host_watts(cat.system(r[0].system))[0] for r in rows])
        pred_board = ratio * np.array([r[0].measured for r in rows])
        node_ratio = (pred_board + host) / (np.array([r[0].measured for r in rows]) + host)
        rec["node_watts_per_chip_from_board_cases"] = _summary(node_ratio - 1)
        est, mst = [], []
        for r, pb in zip(rows, pred_board):
            pair = jpt.get(r[0].id.removesuffix("-board"))
            if pair is None:
                continue
            c, T = pair
            est.append(c.chips * pb * T / c.batch / c.measured)
            if c.step_s_measured:
                mst.append(c.chips * pb * c.step_s_measured / c.batch / c.measured)
        rec["joules_per_output_token"] = _summary(np.array(est) - 1)
        rec["joules_per_output_token_with_measured_step"] = _summary(np.array(mst) - 1)
        cv[name] = rec
        if name == "leave_one_model_out":
            bands["board_watts_per_chip"] = [round(float(np.percentile(ratio, 10)), 4), round(float(np.percentile(ratio, 90)), 4)]
            bands["node_watts_per_chip"] = [round(float(np.percentile(node_ratio, 10)), 4),
                                            round(float(np.percentile(node_ratio, 90)), 4)]
            bands["joules_per_output_token"] = [round(float(np.percentile(est, 10)), 4), round(float(np.percentile(est, 90)), 4)]
    sources = sorted({r[0].source.split(" ")[1] if r[0].source.startswith("github") else r[0].source for r in rows})
    rec = {
        "a0": round(a0, 6), "a1": round(a1, 6),
        "source": (f"scripts/fit_power.py: least squares of (P - P_idle)/(P_board - P_idle) on [1, ln tau] over "
                   f"{len(rows)} measured board powers of Hopper GPUs serving LLMs ({', '.join(sources)}; "
                   "validation/energy/*.jsonl), tau = batch / chips"),
        "n_fit": len(rows), "fit_sources": sources, "fit_date": _dt.date.today().isoformat(),
        "tau_range": [round(min(r[3] for r in rows), 3), round(max(r[3] for r in rows), 3)],
        "cross_validated": cv, "bands": bands, "alternatives_leave_one_model_out": alternatives(rows),
    }
    OUT.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    en.power_fit.cache_clear()
    # the in-sample report the CI gate holds `tokenmath validate` to, per metric
    from tokenmath import validate_energy as ve

    r = ve.validate_energy()
    rec["in_sample"] = {m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
                        for m, s in r.by_metric.items()}
    OUT.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    print(f"a0 = {a0:.6f}, a1 = {a1:.6f} on {len(rows)} cases -> {OUT.relative_to(ROOT)}")
    for k, v in cv.items():
        print(f"  {k}: " + "; ".join(f"{m} {s['median_abs_error']:.1%}/{s['p90_abs_error']:.1%} (n={s['n']})" for m, s in v.items()))
    for k, v in rec["alternatives_leave_one_model_out"].items():
        print(f"  alternative {k}: {v['median_abs_error']:.1%}/{v['p90_abs_error']:.1%}")
    print("  in-sample (tokenmath validate): " + "; ".join(f"{m} {s['median_abs_error']:.1%}/{s['p90_abs_error']:.1%}"
                                                        for m, s in rec["in_sample"].items()))


if __name__ == "__main__":
    main()
