"""Calibration: the preset's profiles fitted to the validation cases, cross-validated.

A generic profile, then vendor and engine profiles on top (fit_preset); leave-one-source-out and
leave-one-vendor-out cross-validation and the 80 % band from its residuals (calibrate); a few
factors on the shipped preset fitted to a user's own cases (fit_user_preset). Predictions and
reports are validate.py's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .profiles import choose_from, profile_from_record, vendor
from .validate import (Case, Prediction, case_batch_limit, error_summary, load_cases, metric_kind, predict, source_key,
                       summarize, validate)

# --------------------------------------------------------------------------------------------
# Calibration: a generic profile, then engine and vendor profiles on top, cross-validated
# --------------------------------------------------------------------------------------------

# (name, lower, upper, start, scale)
GENERIC_PARAMS = (("overhead_s", 0.0, 0.05, 2e-3, 1e-3), ("compute_scale", 0.2, 1.5, 0.9, 0.2),
                  ("memory_scale", 0.2, 1.5, 0.9, 0.2), ("network_scale", 0.05, 1.5, 0.7, 0.2),
                  ("routing_cv", 0.0, 1.0, 0.2, 0.1), ("floor_scale", 0.0, 2.0, 1.0, 0.3))
ENGINE_FIT = ("overhead_s", "compute_scale", "memory_scale")
VENDOR_FIT = ("compute_scale", "memory_scale")
BATCH_CAPS = (None, 256, 512, 1024, 2048)
MIN_CASES_ENGINE = 8  # fewer cases than this: the engine keeps the generic profile
MIN_CASES_VENDOR = 8
VENDOR_BOUNDS = (0.1, 2.0)  # a vendor factor on the generic compute / memory scales
USER_FACTOR_BOUNDS = (0.1, 10.0)  # a user fit's factor on the shipped preset (fitted in log space)
AT_BOUND_TOL = 1e-3  # a fitted value this close to a bound, as a share of its range (log range for factors), is at it


def at_bounds(values: dict, bounds: dict, *, log: bool = False, tol: float = AT_BOUND_TOL, profile: str | None = None,
              ) -> list[dict]:
    """The fitted parameters that ended at (within `tol` of the range from) one of their bounds: there
    the fit wanted to go further, so the value is the bound's, not a measurement. `log`: the range
    is measured on a log scale (factors fitted as log x)."""
    out = []
    for name, (lo, hi) in bounds.items():
        v = values.get(name)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        f = (lambda x: math.log(x)) if log else (lambda x: x)  # noqa: E731
        width = f(hi) - f(lo)
        for side, b in (("lower", lo), ("upper", hi)):
            if abs(f(max(v, 1e-300) if log else v) - f(b)) <= tol * width:
                out.append(({"profile": profile} if profile else {})
                           | {"parameter": name, "value": float(v), "bound": float(b), "side": side,
                              "range": [float(lo), float(hi)]})
    return out


def preset_at_bounds(rec: dict, tol: float = AT_BOUND_TOL) -> list[dict]:
    """Every parameter of a fitted preset record (generic, per engine, per vendor) at its fit's bound."""
    generic = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    out = at_bounds(rec.get("generic", {}), generic, tol=tol, profile="generic")
    for eng, v in sorted(rec.get("engines", {}).items()):
        out += at_bounds(v, {n: generic[n] for n in ENGINE_FIT}, tol=tol, profile=f"engine {eng}")
    for ven, v in sorted(rec.get("vendors", {}).items()):
        out += at_bounds(v, {n: VENDOR_BOUNDS for n in VENDOR_FIT}, tol=tol, profile=f"vendor {ven}")
    return out


def _residuals(cases, cat, make_profile):
    out = []
    for case, path in cases:
        try:
            p = predict(case, make_profile(case), cat, base_dir=path.parent)
            out.append(math.log(p.predicted / case.measured))
        except TokenmathError:
            out.append(3.0)
    return np.asarray(out)


def _fit_params(cases, cat, names, base: dict, make, bounds: dict, x0: dict, scale: dict) -> dict:
    """Least squares in log(predicted / measured) over the named parameters (soft_l1: a few
    outliers do not steer the fit)."""
    from scipy.optimize import least_squares

    if not cases or not names:
        return dict(base)

    def profile_of(x):
        rec = dict(base) | dict(zip(names, x))
        return lambda case: make(case, rec)

    lo = [bounds[n][0] for n in names]
    hi = [bounds[n][1] for n in names]
    start = np.clip([x0.get(n, base.get(n, 1.0)) for n in names], np.array(lo) + 1e-12, np.array(hi) - 1e-12)
    res = least_squares(lambda x: _residuals(cases, cat, profile_of(x)), start, bounds=(lo, hi),
                        x_scale=[scale[n] for n in names], loss="soft_l1", f_scale=0.3, max_nfev=60)
    return dict(base) | {n: float(v) for n, v in zip(names, res.x)}


def _batch_limits(cases, cat, cap) -> tuple:
    """Each case's largest batch (its HBM limit, capped at the engine batch cap `cap`): all that the
    cap changes in a prediction, so two caps with the same limits fit to the same profile."""
    out = []
    for case, path in cases:
        try:
            out.append(case_batch_limit(case, path, cat, cap))
        except TokenmathError:
            out.append(None)
    return tuple(out)


def fit_preset(cases, catalog: Catalog | None = None, caps=BATCH_CAPS) -> dict:
    """Fit the generic profile (and the engine batch cap), then each engine's and each vendor's
    on its own cases where there are enough; returns the preset's profile records."""
    cat = catalog or load_catalog()
    bounds = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    x0 = {n: v for n, _, _, v, _ in GENERIC_PARAMS}
    scale = {n: sc for n, _, _, _, sc in GENERIC_PARAMS}
    names = [n for n, *_ in GENERIC_PARAMS]
    # the generic profile: NVIDIA cases (vendors get their own factor after), every engine together
    vend = {id(c): vendor(cat.system(c.system)) for c, _ in cases}
    nv = [(c, p) for c, p in cases if vend[id(c)] == "nvidia"] or list(cases)
    best = None
    seen = set()
    for cap in caps:
        limits = _batch_limits(nv, cat, cap)
        if limits in seen:  # the same residuals as an earlier cap's at every parameter: the same fit, not better
            continue
        seen.add(limits)
        make = lambda case, rec, cap=cap: profile_from_record(rec | {"max_batch": cap}, engine=case.engine)  # noqa: E731
        rec = _fit_params(nv, cat, names, {}, make, bounds, x0, scale) | {"max_batch": cap}
        med = float(np.median(np.abs(np.expm1(_residuals(nv, cat, lambda case: profile_from_record(rec, engine=case.engine))))))
        if best is None or med < best[1]:
            best = (rec, med)
    generic = best[0] | {"n_cases": len(nv)}
    # vendor factors (e.g. AMD's ROCm stack): the compute and memory scales on the generic profile,
    # fitted on every case of that vendor whatever its engine
    vendors = {}
    for v in sorted(set(vend.values()) - {"nvidia"}):
        mine = [(c, p) for c, p in cases if vend[id(c)] == v]
        if len(mine) < MIN_CASES_VENDOR:
            continue

        def make_v(case, rec):
            return profile_from_record(generic | {k: generic.get(k, 1.0) * rec[k] for k in VENDOR_FIT}, engine=case.engine)

        fb = {n: VENDOR_BOUNDS for n in VENDOR_FIT}
        rec = _fit_params(mine, cat, list(VENDOR_FIT), {n: 1.0 for n in VENDOR_FIT}, make_v, fb, {},
                          {n: 0.2 for n in VENDOR_FIT})
        vendors[v] = {k: rec[k] for k in VENDOR_FIT} | {"n_cases": len(mine)}
    # engine profiles: overhead and the two scales refitted on the engine's own cases (any vendor,
    # its vendor factor applied on top), where there are enough of them
    engines = {}
    for eng in sorted({c.engine for c, _ in cases if c.engine}):
        mine = [(c, p) for c, p in cases if c.engine == eng]
        if len(mine) < MIN_CASES_ENGINE:
            continue

        def make_e(case, rec):
            f = vendors.get(vend[id(case)], {})
            return profile_from_record(rec | {k: rec[k] * f.get(k, 1.0) for k in VENDOR_FIT}, engine=case.engine)

        rec = _fit_params(mine, cat, list(ENGINE_FIT), generic, make_e, bounds, {}, scale)
        engines[eng] = {k: rec[k] for k in ENGINE_FIT} | {"n_cases": len(mine)}
    return {"generic": generic, "engines": engines, "vendors": vendors}


def _cv(cases, cat, key, progress=None, what="source", caps=BATCH_CAPS) -> list[Prediction]:
    """Hold out each group of `key`, fit on the rest (the engine batch cap fixed at the full
    fit's choice), predict it."""
    groups = sorted({key(c) for c, _ in cases})
    rows: list[Prediction] = []
    folds = [([(c, p) for c, p in cases if key(c) != g], [(c, p) for c, p in cases if key(c) == g]) for g in groups]
    folds = [(tr, te) for tr, te in folds if tr]
    from concurrent.futures import ProcessPoolExecutor

    workers = min(len(folds), os.cpu_count() or 1, 4)
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        futures = [pool.submit(fit_preset, tr, cat, caps) for tr, _ in folds]
        for i, ((_, test), fut) in enumerate(zip(folds, futures)):
            rec = fut.result()
            for case, path in test:
                try:
                    rows.append(predict(case, choose_from(rec, engine=case.engine, system=cat.system(case.system)), cat,
                                        base_dir=path.parent))
                except TokenmathError:
                    continue
            if progress:
                progress(i + 1, len(folds), f"{what} {key(test[0][0])}")
    return rows


class _Serial:
    """A stand-in executor that runs each task when submitted (one core, or tests)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *a):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*a))
        return f


def calibrate(cases: list[tuple[Case, Path]] | None = None, catalog: Catalog | None = None,
              progress=None, cross_validate: bool = True) -> dict:
    """Fit the preset on all cases and cross-validate it: leave-one-source-out (each source
    predicted by a fit to the others) and leave-one-vendor-out. The residuals of the
    leave-one-source-out predictions give every estimate its 80 % band. Returns the preset record
    (what `tokenmath calibrate --out` saves)."""
    import datetime

    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    rec = fit_preset(cases, cat)
    rec["at_bound"] = preset_at_bounds(rec)
    rec["fit_date"] = datetime.date.today().isoformat()
    rec["n_cases"] = len(cases)
    rec["cases"] = "validation/cases/*.jsonl"
    rec["systems"] = sorted({c.system for c, _ in cases})
    in_rows = validate(cases, "calibrated", cat, preset=rec).rows
    rec["in_sample"] = error_summary([r.error for r in in_rows])
    if not cross_validate:
        return rec
    caps = (rec["generic"]["max_batch"],)
    loso = _cv(cases, cat, source_key, progress, "source", caps)
    lovo = _cv(cases, cat, lambda c: vendor(cat.system(c.system)), progress, "vendor", caps)
    cv = summarize(loso, "leave-one-source-out")
    rec["cross_validated"] = {"method": "leave-one-source-out", "sources": sorted({source_key(c) for c, _ in cases}),
                              "n": len(loso), "median_abs_error": cv.median_abs_error, "p90_abs_error": cv.p90_abs_error}
    rec["leave_one_vendor_out"] = {"by_vendor": summarize(lovo, "lovo").by_vendor} | error_summary([r.error for r in lovo])
    for g in ("source", "vendor", "engine", "metric", "model_class"):
        rec[f"cv_by_{g}"] = getattr(cv, f"by_{g}")
    # residuals in time sense (log predicted time / measured time): a rate metric's sign flips
    r = np.asarray([math.log1p(x.error) * (1 if metric_kind(x.metric) == "time" else -1) for x in loso])
    rec["bands"] = {"step": [float(np.percentile(r, 10)), float(np.percentile(r, 90))],
                    "note": "10th/90th percentiles of log(predicted/measured step time), leave-one-source-out"}
    rec["worst_cv_cases"] = [{"id": x.id, "error": x.error, "metric": x.metric, "source": x.source, "note": x.note}
                             for x in sorted(loso, key=lambda x: -abs(x.error))[:10]]
    return rec


# --------------------------------------------------------------------------------------------
# A preset fitted to a user's own cases, starting from the shipped one
# --------------------------------------------------------------------------------------------

# Parameters a user fit adjusts, in the order more cases unlock them (one per CASES_PER_PARAM cases):
# decode is mostly memory-bound, then the fixed per-step cost, then compute, kernel floors, links.
USER_FIT_ORDER = ("memory_scale", "overhead_s", "compute_scale", "floor_scale", "network_scale")
CASES_PER_PARAM = 4
MAX_USER_CASES = 2000


def user_fit_params(n_cases: int) -> tuple[str, ...]:
    """Which factors `n_cases` cases can carry: one per CASES_PER_PARAM, at least one."""
    return USER_FIT_ORDER[:min(len(USER_FIT_ORDER), max(1, n_cases // CASES_PER_PARAM))]


def _user_residuals(cases, cat, d: dict, adjust: dict) -> np.ndarray:
    from .profiles import choose_from

    dd = d | {"adjust": adjust}
    out = []
    for case, path in cases:
        try:
            prof = choose_from(dd, engine=case.engine, system=cat.system(case.system), name="fit")
            out.append(math.log(predict(case, prof, cat, base_dir=path.parent).predicted / case.measured))
        except TokenmathError:
            out.append(3.0)
    return np.asarray(out)


def _compose(base: dict, new: dict) -> dict:
    return {k: base.get(k, 1.0) * new.get(k, 1.0) for k in set(base) | set(new)}


def _fit_adjust(cases, cat, d: dict, names, base: dict | None = None, *, fitted: dict | None = None) -> dict:
    """Factors on `names` (on top of `base`'s factors, which stay) that fit the cases; returns the
    combined factors (and puts the fitted ones alone, before combining, into `fitted`)."""
    from scipy.optimize import least_squares

    base = base or {}
    lo, hi = (math.log(b) for b in USER_FACTOR_BOUNDS)
    res = least_squares(lambda x: _user_residuals(cases, cat, d, _compose(base, dict(zip(names, np.exp(x))))),
                        np.zeros(len(names)), bounds=(np.full(len(names), lo), np.full(len(names), hi)),
                        loss="soft_l1", f_scale=0.3, max_nfev=80)
    new = {n: float(math.exp(v)) for n, v in zip(names, res.x)}
    if fitted is not None:
        fitted.update(new)
    return _compose(base, new)


def fit_user_preset(cases: list[tuple[Case, Path]], catalog: Catalog | None = None, base: str | None = None,
                    cross_validate: bool = True, progress=None) -> dict:
    """Fit factors on the shipped preset (or `base`) to the user's cases: which factors depends on how
    many cases there are (user_fit_params). Reports the shipped preset's error on these cases, the
    fitted in-sample error and — with cross_validate — the leave-one-out error (10 folds past 40
    cases), whose residuals become the preset's 80 % band when there are at least 5 cases."""
    import datetime

    from .profiles import preset_record

    if not cases:
        raise TokenmathError("no cases to fit: give case files (tokenmath import writes them)")
    if len(cases) > MAX_USER_CASES:
        raise TokenmathError(f"{len(cases):,} cases; a user fit takes at most {MAX_USER_CASES:,}")
    cat = catalog or load_catalog()
    src = preset_record(base)
    d = {k: v for k, v in src.items() if k not in ("adjust", "user_fit")}
    base_adjust = dict(src.get("adjust", {}))  # a user preset as the base: its factors stay, the new multiply
    names = user_fit_params(len(cases))

    def fit_on(train):
        return _fit_adjust(train, cat, d, user_fit_params(len(train)), base_adjust)

    def resid(test, adj):
        return _user_residuals(test, cat, d, adj)

    own: dict = {}
    adjust = _fit_adjust(cases, cat, d, names, base_adjust, fitted=own)
    shipped = resid(cases, base_adjust)
    fitted = resid(cases, adjust)
    err = lambda r: error_summary([float(np.expm1(x)) for x in r])  # noqa: E731
    fit = {"params": list(names), "factors": adjust, "n_cases": len(cases),
           "why_these": f"one factor per {CASES_PER_PARAM} cases, in the order {', '.join(USER_FIT_ORDER)}",
           "shipped_error": err(shipped), "in_sample": err(fitted),
           "fit_date": datetime.date.today().isoformat(), "base_fit_date": d.get("fit_date"),
           "cases": sorted({str(p) for _, p in cases}),
           # a factor (this fit's, on top of the base's) that ended at ×0.1 or ×10: not a measurement
           "at_bound": at_bounds(own, {n: USER_FACTOR_BOUNDS for n in names}, log=True)}
    out = d | {"adjust": adjust, "user_fit": fit, "at_bound": fit["at_bound"]}
    if cross_validate and len(cases) >= 3:
        n = len(cases)
        folds = np.arange(n) % (n if n <= 40 else 10)
        cv = np.empty(n)
        for k, f in enumerate(np.unique(folds)):
            if progress:
                progress(k + 1, len(np.unique(folds)), "fold")
            train = [c for c, g in zip(cases, folds) if g != f]
            test = [c for c, g in zip(cases, folds) if g == f]
            cv[folds == f] = resid(test, fit_on(train))
        fit["cross_validated"] = err(cv) | {"method": "leave-one-out" if n <= 40 else "10-fold"}
        if n >= 5:
            kinds = np.array([1 if metric_kind(c.metric) == "time" else -1 for c, _ in cases])
            r = cv * kinds
            out["bands"] = {"step": [float(np.percentile(r, 10)), float(np.percentile(r, 90))],
                            "note": f"10th/90th percentiles of log(predicted/measured step time), {fit['cross_validated']['method']} on your {n} cases"}
    return out
