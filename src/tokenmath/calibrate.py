"""Calibration: the preset's profiles fitted to the validation cases, cross-validated.

fit_preset: a generic profile fitted on the NVIDIA cases; on it a factor per other vendor; on that a
factor per engine × vendor. Each factor is shrunk toward its parent (a penalty λ·|x|²/2 on its log,
every source weighing once, λ chosen by leave-one-source-out cross-validation inside the training
cases), so a vendor or engine with few sources stays near its parent, and one whose factors do not
carry over from source to source keeps none.

calibrate: fit_preset on every case, then leave-one-source-out and leave-one-vendor-out
cross-validation; the 80 % bands per class from the cross-validated residuals, their coverage on
sources never fitted, and the figures the CI gates hold later errors to. fit_user_preset: a few
factors on the shipped preset fitted to a user's own cases. Predictions and reports are validate.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .parallel import run_tasks
from .profiles import (BAND_CELLS, BAND_DIMENSIONS, BAND_MIN_N, BAND_MIN_SOURCES, ROOFLINE_PROFILE, apply_factors,
                       band_cell, band_for, band_levels, choose_from, factor_group, profile_from_record, vendor)
from .validate import (Case, Prediction, Report, band_coverage, case_batch_limit, error_summary, load_cases,
                       metric_kind, predict, range_class, source_key, step_residual, summarize, validate)

# --------------------------------------------------------------------------------------------
# What is fitted, and within what
# --------------------------------------------------------------------------------------------

# (name, lower, upper, start, scale) of the generic profile. The routing skew (Engine.routing_cv) is
# not fitted: it stays 0, the multinomial noise of random routing (stepmodel.expert_imbalance). Fitted,
# it was not identifiable — 0.03 on every visible case, its upper bound 1.0 with the one source of
# multi-node EP (LMSYS) held out, which then put those runs +160 … +261 % (docs/validation.md, "The
# routing skew is not fitted"). A user preset may still set it, as a what-if.
GENERIC_PARAMS = (("overhead_s", 0.0, 0.05, 2e-3, 1e-3), ("compute_scale", 0.2, 1.5, 0.9, 0.2),
                  ("memory_scale", 0.2, 1.5, 0.9, 0.2), ("network_scale", 0.05, 1.5, 0.7, 0.2),
                  ("floor_scale", 0.0, 2.0, 1.0, 0.3))
BATCH_CAPS = (None, 256, 512, 1024, 2048)
# Source effects: each source's own per-step cost beyond the generic profile's (its harness, engine
# release and settings: dstack's early-2025 engines paid ~30 ms a step), fitted beside the generic
# profile as a nuisance and not shipped: a held-out source, like a user's deployment, gets none.
# Without them the shared parameters absorbed one source's step cost (the kernel-floor scale went
# from ×1.06 to ×1.67 with InferenceX held out, which dstack's 93 cases then dominated):
# docs/validation.md, "Source effects".
SOURCE_EFFECT_MAX_S = 0.05  # at most this added or taken per step (the overhead with it kept >= 0)
SOURCE_EFFECT_PRIOR_S = 0.02  # in units of a typical decode step, as the factors' added overhead (OVERHEAD_PRIOR_S)
SOURCE_EFFECT_LAMBDA = 2.0  # the L1 penalty λ·|effect| / prior: a source departs from the rest only where its cases pay for it
SOURCE_EFFECTS = True  # the shipped fit has them (docs/validation.md, "Source effects"); False: the fit before 2026-12-07
# Bounds that are physical limits, not a search range: there "at the bound" means the data want none
# of it (no per-step overhead beyond the kernels' own floors, kernel floors × 0).
PHYSICAL_BOUNDS = {("overhead_s", "lower"), ("floor_scale", "lower")}

# A vendor's and an engine × vendor's profile: factors on its parent's profile (overhead_add_s,
# compute_factor, memory_factor), fitted as x = (added overhead / OVERHEAD_PRIOR_S, log compute factor,
# log memory factor).
FACTOR_BOUNDS = (0.1, 10.0)  # × on the parent's compute / memory scale
OVERHEAD_ADD_MAX_S = 0.05  # an added per-step overhead at most this (and the sum never below 0)
OVERHEAD_PRIOR_S = 0.02  # added overhead in units of a typical decode step (~20 ms): a unit costs as a factor of e
SOFT_L1_SCALE = 0.3  # residuals (log predicted/measured) beyond ~0.3 count linearly, not squared: outliers do not steer
# The penalty λ·|x|²/2 is λ pseudo-sources that say "no change" (every source's cases weigh 1 together);
# λ is chosen among these by cross-validation (inf: the level's factors are all 1, its parent is kept)
LAMBDA_GRID = (1 / 32, 0.125, 0.5, 2.0, 8.0, 32.0, math.inf)
OWN_LAMBDA_MIN_SOURCES = 5  # a group of this many sources or more chooses its own λ (on its own sources; fewer: docs/validation.md, "Shrinkage")
# With source effects (SOURCE_EFFECTS, the shipped fit): λ by the one-standard-error rule, and a group's own λ
# from this many sources (its own 5–6 sources' spread was too noisy a standard error: docs/validation.md)
OWN_LAMBDA_MIN_SOURCES_ONE_SE = 8

USER_FACTOR_BOUNDS = (0.1, 10.0)  # a user fit's factor on the shipped preset (fitted in log space)
AT_BOUND_TOL = 1e-3  # a fitted value this close to a bound, as a share of its range (log range for factors), is at it

# The CI gate: every class of these with at least GATE_MIN_N cases may not get worse than the figure
# recorded at fit time by more than max(absolute, relative × recorded)
GATE_DIMENSIONS = ("metric", "model_class", "engine", "vendor")
GATE_MIN_N = 5
GATE_TOL_MEDIAN = (0.02, 0.15)
GATE_TOL_P90 = (0.05, 0.15)
# "Profiles that never hurt": on no held-out source may the engine tag raise the median |error| by more
# than this — the resolution of the published numbers (tables of 2–3 significant figures, charts read by eye)
ENGINE_TAG_TOLERANCE = 0.02
BAND_RULE = "cell"  # a query's band: its cell's prediction interval (profiles.band_for; docs/validation.md says why)


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
                              "range": [float(lo), float(hi)], "physical": (name, side) in PHYSICAL_BOUNDS})
    return out


def _factor_bounds(parent_overhead_s: float) -> dict:
    return {"overhead_add_s": (-parent_overhead_s, OVERHEAD_ADD_MAX_S)}


def _factor_at_bounds(f: dict, parent: dict, tol: float, profile: str, path: list) -> list[dict]:
    """A vendor's or engine × vendor's factors at their bounds (an added overhead at its lower bound
    only when that takes a positive parent overhead to zero)."""
    out = at_bounds(f, {k: FACTOR_BOUNDS for k in ("compute_factor", "memory_factor")}, log=True, tol=tol,
                    profile=profile)
    po = float(parent.get("overhead_s", 0.0))
    for x in at_bounds(f, _factor_bounds(po), tol=tol, profile=profile):
        if x["side"] == "upper" or po > 1e-9:
            out.append(x | {"physical": x["side"] == "lower"})
    return [x | {"path": path} for x in out]


def preset_at_bounds(rec: dict, tol: float = AT_BOUND_TOL) -> list[dict]:
    """Every parameter of a fitted preset record (generic, per vendor, per engine × vendor) at its
    fit's bound; each says where it sits in the record (`path`) and whether the bound is physical."""
    generic = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    g = rec.get("generic", {})
    out = [x | {"path": ["generic", x["parameter"]]} for x in at_bounds(g, generic, tol=tol, profile="generic")]
    if int(rec.get("preset_format", 1)) < 2:  # a preset from before issue 22: absolute engine parameters
        for eng, v in sorted(rec.get("engines", {}).items()):
            out += [x | {"path": ["engines", eng, x["parameter"]]} for x in at_bounds(
                v, {n: generic[n] for n in ("overhead_s", "compute_scale", "memory_scale")}, tol=tol,
                profile=f"engine {eng}")]
        for ven, v in sorted(rec.get("vendors", {}).items()):
            out += [x | {"path": ["vendors", ven, x["parameter"]]} for x in at_bounds(
                v, {n: (0.1, 2.0) for n in ("compute_scale", "memory_scale")}, tol=tol, profile=f"vendor {ven}")]
        return out
    vendors = rec.get("vendors", {})
    for ven, f in sorted(vendors.items()):
        out += _factor_at_bounds(f, g, tol, f"vendor {ven}", ["vendors", ven])
    for eng, cells in sorted(rec.get("engines", {}).items()):
        for ven, f in sorted(cells.items()):
            parent = apply_factors(g, vendors.get(ven, {}))
            out += _factor_at_bounds(f, parent, tol, f"engine {eng} × {ven}", ["engines", eng, ven])
    for x in out:
        x["path"] = x["path"] + ([x["parameter"]] if x["path"][-1] != x["parameter"] else [])
    return out


# --------------------------------------------------------------------------------------------
# The generic profile
# --------------------------------------------------------------------------------------------


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
                        x_scale=[scale[n] for n in names], loss="soft_l1", f_scale=SOFT_L1_SCALE, max_nfev=60)
    return dict(base) | {n: float(v) for n, v in zip(names, res.x)}


def with_effect(rec: dict, case, effects: dict | None) -> dict:
    """`rec` with the case's source effect added to its per-step overhead, the sum kept ≥ 0 (no
    effect: `rec`)."""
    e = (effects or {}).get(source_key(case), 0.0)
    return rec if not e else rec | {"overhead_s": max(0.0, float(rec.get("overhead_s", 0.0)) + e)}


def _fit_with_source_effects(cases, cat, names, make, bounds: dict, x0: dict, scale: dict,
                             effects0: dict | None = None) -> tuple[dict, dict]:
    """_fit_params over the named parameters and, beside them, one source effect per source (a per-step
    overhead added to the profile's, ±SOURCE_EFFECT_MAX_S, the sum kept ≥ 0, penalised toward 0 by
    SOURCE_EFFECT_LAMBDA: the profile's overhead is then a typical source's, and each source's effect
    its departure from it): each case is predicted with its source's effect. Returns (parameters,
    {source: effect_s}). The Jacobian is sparse — a source's effect moves only its own cases — so the
    finite differences of every effect cost one evaluation together (least_squares' jac_sparsity)."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    srcs = sorted({source_key(c) for c, _ in cases})
    idx = np.array([srcs.index(source_key(c)) for c, _ in cases])
    k, n, m = len(names), len(cases), len(srcs)
    lo = np.array([bounds[x][0] for x in names] + [-SOURCE_EFFECT_MAX_S] * m)
    hi = np.array([bounds[x][1] for x in names] + [SOURCE_EFFECT_MAX_S] * m)
    e0 = effects0 or {}
    start = np.clip([x0.get(x, 1.0) for x in names] + [e0.get(src, 0.0) for src in srcs], lo + 1e-12, hi - 1e-12)

    def residuals(x):
        rec, eff = dict(zip(names, x[:k])), x[k:]
        by_source = {src: float(e) for src, e in zip(srcs, eff)}
        out = _residuals(cases, cat, lambda case: make(case, with_effect(rec, case, by_source)))
        # an L1 penalty λ·|effect| / prior (residuals whose squares are it): the profile's overhead lands on a
        # typical source's, where a ridge let one source far from the rest (dstack) pull it up
        return np.concatenate([out, np.sign(eff) * np.sqrt(SOURCE_EFFECT_LAMBDA * np.abs(eff) / SOURCE_EFFECT_PRIOR_S)])

    sparsity = lil_matrix((n + m, k + m), dtype=int)
    sparsity[:n, :k] = 1
    sparsity[np.arange(n), k + idx] = 1
    sparsity[n + np.arange(m), k + np.arange(m)] = 1
    res = least_squares(residuals, start, bounds=(lo, hi), x_scale=[scale[x] for x in names] + [5e-3] * m,
                        loss="soft_l1", f_scale=SOFT_L1_SCALE, max_nfev=60, jac_sparsity=sparsity)
    return ({x: float(v) for x, v in zip(names, res.x[:k])},
            {src: float(v) for src, v in zip(srcs, res.x[k:])})


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


def fit_generic(cases, cat: Catalog, caps=BATCH_CAPS, source_effects: bool = SOURCE_EFFECTS) -> tuple[dict, dict]:
    """The generic profile (GENERIC_PARAMS) and the engine batch cap, fitted on `cases` with a source
    effect per source beside them (_fit_with_source_effects): the parameters at the first cap of
    `caps`, then the cap whose median |error| is lowest at those parameters, and the parameters
    refitted there (from the first fit) when it is another cap. Returns (the profile record,
    {source: effect_s}); source_effects False: no effects are fitted ({}), the fit shipped before
    2026-12-07."""
    bounds = {n: (lo, hi) for n, lo, hi, _, _ in GENERIC_PARAMS}
    start = {n: v for n, _, _, v, _ in GENERIC_PARAMS}
    scale = {n: sc for n, _, _, _, sc in GENERIC_PARAMS}
    names = [n for n, *_ in GENERIC_PARAMS]

    def fit(cap, x0, effects0=None):
        make = lambda case, rec: profile_from_record(rec | {"max_batch": cap}, engine=case.engine)  # noqa: E731
        if not source_effects:
            return _fit_params(cases, cat, names, {}, make, bounds, x0, scale) | {"max_batch": cap}, {}
        rec, effects = _fit_with_source_effects(cases, cat, names, make, bounds, x0, scale, effects0)
        return rec | {"max_batch": cap}, effects

    def median(rec, effects):
        r = _residuals(cases, cat, lambda case: profile_from_record(with_effect(rec, case, effects), engine=case.engine))
        return float(np.median(np.abs(np.expm1(r))))

    rec, effects = fit(caps[0], start)
    best, seen = (caps[0], median(rec, effects)), {_batch_limits(cases, cat, caps[0])}
    for cap in caps[1:]:
        limits = _batch_limits(cases, cat, cap)
        if limits in seen:  # the same residuals as an earlier cap's at every parameter
            continue
        seen.add(limits)
        m = median(rec | {"max_batch": cap}, effects)
        if m < best[1]:
            best = (cap, m)
    if best[0] != caps[0]:
        rec, effects = fit(best[0], {n: rec[n] for n in names}, effects)
    return rec | {"n_cases": len(cases)}, effects


# --------------------------------------------------------------------------------------------
# Vendor and engine × vendor factors, shrunk toward their parent
# --------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """One vendor's or engine × vendor's cases, and the profile record its factors multiply."""

    name: str  # "amd" | "vllm" (its vendor is `vendor`)
    vendor: str
    cases: list
    parent: dict
    sources: np.ndarray  # each case's source
    idx: np.ndarray  # each case's index in the cases being fitted (for _generic_shifts)
    effects: dict | None = None  # {source: its source effect, s} (fit_generic's), added to its cases' overhead

    @property
    def weights(self) -> np.ndarray:
        """Each case's weight: 1 / its source's cases here, so that every source counts once (cases of
        one source share its models, setup and benchmark: they are not independent evidence)."""
        _, inv, counts = np.unique(self.sources, return_inverse=True, return_counts=True)
        return 1.0 / counts[inv]

    @property
    def label(self) -> str:
        return self.name if self.name == self.vendor else f"{self.name} × {self.vendor}"


def factor_record(x) -> dict:
    """Fitted x (added overhead / OVERHEAD_PRIOR_S, log compute factor, log memory factor) as factors."""
    return {"overhead_add_s": float(x[0]) * OVERHEAD_PRIOR_S, "compute_factor": float(math.exp(x[1])),
            "memory_factor": float(math.exp(x[2]))}


def _x_bounds(parent: dict) -> tuple[np.ndarray, np.ndarray]:
    lf = math.log(FACTOR_BOUNDS[0]), math.log(FACTOR_BOUNDS[1])
    lo = np.array([-float(parent.get("overhead_s", 0.0)) / OVERHEAD_PRIOR_S, lf[0], lf[0]])
    hi = np.array([OVERHEAD_ADD_MAX_S / OVERHEAD_PRIOR_S, lf[1], lf[1]])
    return lo, hi


def _group_residuals(g: _Group, cat, x) -> np.ndarray:
    rec = apply_factors(g.parent, factor_record(x))
    return _residuals(g.cases, cat, lambda case: profile_from_record(with_effect(rec, case, g.effects),
                                                                     engine=case.engine))


def _soft_l1(r) -> np.ndarray:
    """least_squares' soft-L1 cost of each residual (≈ r²/2 below SOFT_L1_SCALE, linear beyond)."""
    f = SOFT_L1_SCALE
    return f * f * (np.sqrt(1.0 + (np.asarray(r) / f) ** 2) - 1.0)


def soft_l1_residual(r, w=1.0) -> np.ndarray:
    """Residuals whose squares sum to 2·Σ w²·_soft_l1(r): a weighted soft-L1 fit as plain least squares
    (scipy's own `loss=` would apply the scale to the weighted residual, so a weight would move it).
    Written r·√(2/(1 + √(1 + (r/f)²))), which keeps r's sign and loses no precision near 0. Used by
    scripts/fit_kernels.py for the kernel curves (docs/kernels.md, "The loss")."""
    r = np.asarray(r, float)
    z = r / SOFT_L1_SCALE
    return w * r * np.sqrt(2.0 / (1.0 + np.sqrt(1.0 + z * z)))


def _penalised_loss(weights: np.ndarray):
    """least_squares loss for [data residuals..., √λ·x]: each data residual's soft-L1 cost times its
    weight, each penalty residual's square (so the penalty is exactly λ·|x|²/2)."""
    n = len(weights)
    f2 = SOFT_L1_SCALE ** 2

    def rho(z):
        out = np.empty((3, z.size))
        t = 1.0 + z[:n] / f2
        out[0, :n] = weights * 2 * f2 * (np.sqrt(t) - 1.0)
        out[1, :n] = weights / np.sqrt(t)
        out[2, :n] = -0.5 * weights / (t ** 1.5 * f2)
        out[0, n:], out[1, n:], out[2, n:] = z[n:], 1.0, 0.0
        return out

    return rho


JAC_STEP = 0.02  # the step (in x) of the Jacobian the choice of λ linearises with


def _linearise(g: _Group, cat) -> tuple[np.ndarray, np.ndarray]:
    """The group's residuals at x = 0 (its parent's profile) and their Jacobian in x, by forward
    differences of JAC_STEP: r(x) ≈ r0 + J x. Nearly exact for factors below 1 (a step's time is
    about linear in the log of its efficiencies); less so where a scale saturates (e × scale = 1)."""
    x = np.zeros(3)
    r0 = _group_residuals(g, cat, x)
    _, hi = _x_bounds(g.parent)
    J = np.empty((len(r0), 3))
    for k in range(3):
        h = np.zeros(3)
        h[k] = JAC_STEP if x[k] + JAC_STEP <= hi[k] else -JAC_STEP
        J[:, k] = (_group_residuals(g, cat, x + h) - r0) / h[k]
    return r0, J


def _fit_group(g: _Group, cat, lam: float, x0, max_nfev: int = 15) -> np.ndarray:
    """One group's factors: min Σ weight·soft_l1(r) + λ·|x|²/2 on the full model, from x0 (the
    linearised fit)."""
    from scipy.optimize import least_squares

    lo, hi = _x_bounds(g.parent)
    # strictly inside the bounds, and not all at 0: trf's first trust region is |x0| wide
    start = np.clip(np.asarray(x0, float), lo + 0.05, hi - 0.05)
    res = least_squares(lambda x: np.concatenate([_group_residuals(g, cat, x), math.sqrt(lam) * x]), start,
                        bounds=(lo, hi), loss=_penalised_loss(g.weights), max_nfev=max_nfev, ftol=1e-5, xtol=1e-5,
                        diff_step=1e-4)
    return res.x


def _linear_fit(a, J, lam: float, lo, hi, weights=None, iters: int = 12) -> np.ndarray:
    """min Σ weight·soft_l1(a + J x) + λ|x|²/2 by iteratively reweighted least squares, x within
    bounds: a group's fit on its linearised model (what the choice of λ refits per fold)."""
    x = np.zeros(J.shape[1])
    if not math.isfinite(lam) or len(a) == 0:
        return x
    wt = np.ones(len(a)) if weights is None else np.asarray(weights, float)
    for _ in range(iters):
        r = a + J @ x
        w = wt / np.sqrt(1.0 + (r / SOFT_L1_SCALE) ** 2)
        A = (J.T * w) @ J + (lam + 1e-9) * np.eye(J.shape[1])
        x = np.clip(np.linalg.solve(A, -(J.T * w) @ a), lo, hi)
    return x


def _generic_shifts(cases, cat: Catalog, generic: dict, sources: np.ndarray, nvidia: np.ndarray,
                    effects: dict | None = None) -> dict:
    """How every case's residual moves when the generic profile is refitted without one source, for
    each source with NVIDIA cases (the generic's): {source: shift}, on the model linearised in the
    generic's parameters (forward differences of a tenth of each parameter's scale; the refit is soft-L1
    on the other NVIDIA cases, within the parameters' bounds). What lets the choice of λ hold a source
    out of the generic fit too, as the outer cross-validation does. With source `effects`, the held-out
    source also loses its own (a held-out source gets none), and every case keeps its source's."""
    names = [n for n, *_ in GENERIC_PARAMS]
    lo = np.array([b for _, b, _, _, _ in GENERIC_PARAMS])
    hi = np.array([b for _, _, b, _, _ in GENERIC_PARAMS])
    scale = np.array([sc for *_, sc in GENERIC_PARAMS])
    theta = np.array([float(generic[n]) for n in names])

    def resid(th, eff=effects):
        rec = generic | dict(zip(names, th))
        return _residuals(cases, cat, lambda case: profile_from_record(with_effect(rec, case, eff), engine=case.engine))

    r0 = resid(theta)
    lose = resid(theta, None) - r0 if effects and any(effects.values()) else np.zeros(len(r0))  # without its effect
    G = np.empty((len(r0), len(names)))  # d r / d u, u = (θ − θ0) / scale
    for k in range(len(names)):
        h = 0.1 * scale[k] * (1 if theta[k] + 0.1 * scale[k] <= hi[k] else -1)
        th = theta.copy()
        th[k] += h
        G[:, k] = (resid(th) - r0) / (h / scale[k])
    ulo, uhi = (lo - theta) / scale, (hi - theta) / scale
    out = {}
    for s in np.unique(sources[nvidia]):
        keep = nvidia & (sources != s)
        u = np.zeros(len(names))
        for _ in range(12):
            w = 1.0 / np.sqrt(1.0 + ((r0[keep] + G[keep] @ u) / SOFT_L1_SCALE) ** 2)
            A = (G[keep].T * w) @ G[keep] + 1e-6 * np.eye(len(names))
            u = np.clip(np.linalg.solve(A, -(G[keep].T * w) @ r0[keep]), ulo, uhi)
        out[str(s)] = G @ u + np.where(sources == s, lose, 0.0)
    return out


def _choose_lambda(groups: list[_Group], lin: dict, grid, shifts: dict | None = None,
                   one_se: bool = False) -> tuple[float, dict]:
    """The λ of `grid` chosen by leave-one-source-out inside the training cases: each source's cases
    predicted by factors fitted to the group's other sources (a group with one source: its factors
    are 1 there), on the linearised model r0 + J x, shifted by `shifts` (the generic refitted without
    that source, _generic_shifts); a λ's cost is the mean soft-L1 cost of a source's cases, summed
    over sources (each source counts once); the lowest wins, ties to the larger λ. one_se: the
    one-standard-error rule (Hastie, Tibshirani and Friedman, The Elements of Statistical Learning,
    2nd ed., §7.10) instead — the largest λ whose cost is within one standard error of the lowest,
    the error of the paired per-source difference — so a level whose held-out cost is flat in λ
    keeps its parent (with source effects, a λ that won by noise moved a held-out source's error by
    5 points; docs/validation.md, "Source effects")."""
    shifts = shifts or {}
    cost, per = {}, {}
    for lam in grid:
        costs = []
        for g in groups:
            r0, J = lin[g.label]
            lo, hi = _x_bounds(g.parent)
            w = g.weights
            for s in np.unique(g.sources):
                test = g.sources == s
                a = r0 + shifts[s][g.idx] if s in shifts else r0
                x = _linear_fit(a[~test], J[~test], lam, lo, hi, w[~test]) if (~test).any() else np.zeros(3)
                costs.append(float(_soft_l1(a[test] + J[test] @ x).mean()))
        per[lam] = np.array(costs)
        cost[lam] = float(per[lam].sum())
    best = min(grid, key=lambda lam: (round(cost[lam], 9), -lam))
    if not one_se:
        return best, cost
    n = len(per[best])

    def within(lam):
        d = per[lam] - per[best]
        se = math.sqrt(n) * float(d.std(ddof=1)) if n > 1 else 0.0
        return cost[lam] - cost[best] <= se + 1e-12

    return max((lam for lam in grid if within(lam)), key=lambda lam: lam), cost


def _json_lam(lam: float):
    """λ as the preset stores it: a number, or "inf" (JSON has no infinity)."""
    return lam if math.isfinite(lam) else "inf"


def _fit_level(groups: list[_Group], cat, lambdas, own_min_sources: int | None = None,
               shifts: dict | None = None, one_se: bool = False) -> tuple[dict, dict]:
    """Factors of every group of one level (vendors, or engine × vendor cells): {label: x}, and what
    was chosen and why. λ: the one given, or chosen from `lambdas` by _choose_lambda — for a group of
    at least `own_min_sources` sources (default OWN_LAMBDA_MIN_SOURCES) on its own sources, for the
    others on all the level's groups together (a group of one or two sources cannot say how well its
    factors transfer). With each group's own-data weight per factor (its sources' information /
    (that + λ): 1 keeps what its own cases say, 0 keeps its parent)."""
    lambdas = tuple(lambdas)
    own_min_sources = OWN_LAMBDA_MIN_SOURCES if own_min_sources is None else own_min_sources
    if not groups:
        return {}, {"lambda": None, "grid": [_json_lam(x) for x in lambdas], "cv_cost": {}, "own_weight": {},
                    "lambda_by_group": {}}
    lin = {g.label: _linearise(g, cat) for g in groups}
    lam, cost = _choose_lambda(groups, lin, lambdas, shifts, one_se) if len(lambdas) > 1 else (lambdas[0], {})
    xs, weights, lams = {}, {}, {}
    for g in groups:
        r0, J = lin[g.label]
        lam_g = lam
        if len(lambdas) > 1 and len(np.unique(g.sources)) >= own_min_sources:
            lam_g, _ = _choose_lambda([g], lin, lambdas, shifts, one_se)
        lams[g.label] = _json_lam(lam_g)
        w = g.weights / np.sqrt(1.0 + (r0 / SOFT_L1_SCALE) ** 2)
        info = ((J ** 2) * w[:, None]).sum(axis=0)
        if not math.isfinite(lam_g):
            xs[g.label], weights[g.label] = np.zeros(3), [0.0, 0.0, 0.0]
            continue
        lo, hi = _x_bounds(g.parent)
        xs[g.label] = _fit_group(g, cat, lam_g, _linear_fit(r0, J, lam_g, lo, hi, g.weights))
        weights[g.label] = [float(v) for v in info / (info + lam_g)]
    return xs, {"lambda": _json_lam(lam), "grid": [_json_lam(x) for x in lambdas],
                "cv_cost": {str(_json_lam(k)): v for k, v in cost.items()}, "own_weight": weights,
                "lambda_by_group": lams}


def _group_record(g: _Group, x, info: dict) -> dict:
    return factor_record(x) | {"n_cases": len(g.cases), "n_sources": int(len(np.unique(g.sources))),
                               "lambda": info["lambda_by_group"][g.label],
                               "own_weight": dict(zip(("overhead", "compute", "memory"), info["own_weight"][g.label]))}


def fit_factors(cases, cat: Catalog, generic: dict, lambdas=LAMBDA_GRID, effects: dict | None = None,
                one_se: bool = False) -> dict:
    """On `generic`: a factor per vendor other than NVIDIA and chip generation (`factor_group`: "amd
    CDNA 3", all of that group's cases), then a factor per engine × group (that cell's cases, on its
    group's profile). Each level's factors are shrunk
    toward 1 by a penalty λ·|x|²/2 against data in which every source counts once (x: added
    overhead / OVERHEAD_PRIOR_S, log factors), λ chosen from `lambdas` by leave-one-source-out
    inside `cases` (one value: that λ; inf: no factors). `effects`: fit_generic's source effects, added
    to the overhead of every case of their source (whatever its vendor); one_se: λ by the
    one-standard-error rule, a group's own from OWN_LAMBDA_MIN_SOURCES_ONE_SE sources (_choose_lambda).
    Returns the preset's vendors, engines and shrinkage records."""
    vend = np.array([factor_group(cat.system(c.system)) for c, _ in cases])  # vendor and generation
    src = np.array([source_key(c) for c, _ in cases])
    engine = np.array([c.engine or "" for c, _ in cases])
    lambdas = tuple(lambdas)
    shifts = _generic_shifts(cases, cat, generic, src, vend == "nvidia", effects) if len(lambdas) > 1 else {}

    def group(name, v, mask, parent):
        idx = np.flatnonzero(mask)
        return _Group(name, v, [cases[i] for i in idx], parent, src[idx], idx, effects)

    vgroups = [group(v, v, vend == v, generic) for v in sorted(set(vend) - {"nvidia"})]
    own = OWN_LAMBDA_MIN_SOURCES_ONE_SE if one_se else None
    vx, vinfo = _fit_level(vgroups, cat, lambdas, own, shifts=shifts, one_se=one_se)
    vendors = {g.vendor: _group_record(g, vx[g.label], vinfo) for g in vgroups}
    cells = sorted({(e, v) for e, v in zip(engine, vend) if e})
    egroups = [group(e, v, (engine == e) & (vend == v), apply_factors(generic, vendors.get(v, {}))) for e, v in cells]
    ex, einfo = _fit_level(egroups, cat, lambdas, own, shifts=shifts, one_se=one_se)
    engines: dict = {}
    for g in egroups:
        engines.setdefault(g.name, {})[g.vendor] = _group_record(g, ex[g.label], einfo)
    return {"vendors": vendors, "engines": engines, "shrinkage": {"vendor": vinfo, "engine": einfo}}


def fit_preset(cases, catalog: Catalog | None = None, caps=BATCH_CAPS, lambdas=LAMBDA_GRID,
               source_effects: bool = SOURCE_EFFECTS) -> dict:
    """Fit the preset's profiles: the generic profile (and the engine batch cap) on the NVIDIA cases,
    every engine together (fit_generic); on it the vendor and engine × vendor factors, shrunk toward
    their parents (fit_factors). Returns the preset's profile records."""
    cat = catalog or load_catalog()
    nv = [(c, p) for c, p in cases if vendor(cat.system(c.system)) == "nvidia"] or list(cases)
    generic, effects = fit_generic(nv, cat, caps, source_effects)
    return {"preset_format": 2, "generic": generic} | fit_factors(cases, cat, generic, lambdas, effects,
                                                                  one_se=source_effects) | {
        "systems": sorted({c.system for c, _ in cases}), "sources": sorted({source_key(c) for c, _ in cases})} | (
        {"source_effects_s": effects} if source_effects else {})


# --------------------------------------------------------------------------------------------
# Cross-validation, bands, gates
# --------------------------------------------------------------------------------------------


def _predict_fold(rec: dict, test, cat, engine: bool) -> list[Prediction]:
    """The held-out cases under a fold's preset, each flagged outside the fitted range where its
    system was not in the fold's cases; `engine` False: every case with no engine tag."""
    rows = []
    for case, path in test:
        try:
            p = predict(case, choose_from(rec, engine=case.engine if engine else None, system=cat.system(case.system)),
                        cat, base_dir=path.parent)
        except TokenmathError:
            continue
        if case.system not in rec["systems"]:
            p = replace(p, outside_fitted_range=(f"system {case.system} not in the fold's cases",))
        rows.append(p)
    return rows


def _fold(item, cat, caps, lambdas, source_effects=SOURCE_EFFECTS):
    """One fold: fit on `train`, predict `test` engine-tagged and untagged (run_tasks' task)."""
    train, test = item
    rec = fit_preset(train, cat, caps, lambdas, source_effects)
    return (_predict_fold(rec, test, cat, True), _predict_fold(rec, test, cat, False),
            {k: rec["shrinkage"][k]["lambda"] for k in rec["shrinkage"]})


@dataclass(frozen=True)
class CrossValidation:
    """Held-out predictions of every case (each group held out in turn, the rest fitted)."""

    what: str  # "source" | "vendor"
    rows: list[Prediction]  # engine-tagged: each case's engine × vendor profile
    untagged: list[Prediction]  # the same folds, each case with no engine tag (the vendor's profile)
    lambdas: dict  # held-out group -> {"vendor": λ, "engine": λ} chosen inside its fold


def cross_validation(cases, catalog: Catalog | None = None, key=source_key, what: str = "source", caps=BATCH_CAPS,
                   lambdas=LAMBDA_GRID, progress=None, processes: int | None = None,
                   source_effects: bool = SOURCE_EFFECTS) -> CrossValidation:
    """Hold out each group of `key`, fit on the rest, predict it (engine-tagged and untagged). Folds
    run in `processes` worker processes (default: one per CPU, at most the folds); source_effects: each
    fold fitted with them (fit_preset)."""
    import os

    cat = catalog or load_catalog()
    groups = sorted({key(c) for c, _ in cases})
    folds = [([(c, p) for c, p in cases if key(c) != g], [(c, p) for c, p in cases if key(c) == g]) for g in groups]
    kept = [(g, f) for g, f in zip(groups, folds) if f[0]]
    n_proc = processes if processes is not None else (os.cpu_count() or 1)
    out = run_tasks(_fold, [f for _, f in kept], progress=progress, label=lambda f: f"{what} {key(f[1][0][0])}",
                    processes=n_proc, cat=cat, caps=caps, lambdas=lambdas, source_effects=source_effects)
    rows = [p for o in out for p in o[0]]
    untagged = [p for o in out for p in o[1]]
    return CrossValidation(what, rows, untagged, {g: o[2] for (g, _), o in zip(kept, out)})


def _weighted_percentile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """The q-quantile (0–1) of x with weights w (the midpoint rule of the weighted empirical CDF)."""
    o = np.argsort(x)
    x, w = x[o], w[o]
    c = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(q, c, x))


def band_q(r: np.ndarray, sources: np.ndarray) -> list:
    """[lo, hi, n] of residuals `r` from `sources`: the prediction interval for the next source's
    residual (profiles.band_levels: the 10th/90th percentiles with the small-sample correction for
    k sources), each source weighing once (its cases share a model, setup and benchmark: a band is
    for the next source, and sources differ more than the cases within one)."""
    _, inv, counts = np.unique(sources, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    lo, hi = band_levels(len(counts))
    return [_weighted_percentile(r, w, lo), _weighted_percentile(r, w, hi), int(len(r))]


def _band_keys(p: Prediction) -> dict:
    return {"model_class": p.model_class, "engine": p.engine, "vendor": p.vendor, "range": range_class(p)}


def band_table(rows: list[Prediction], min_n: int = BAND_MIN_N, rule: str = BAND_RULE, cells=BAND_CELLS,
               min_sources: int = BAND_MIN_SOURCES) -> dict:
    """The preset's 80 % bands from held-out predictions: the step residual (validate.step_residual:
    log(predicted / measured) divided by the answer's sensitivity to step time, in time sense) of
    every row; per cell of `cells` (finest level first) with at least `min_n` residuals from at least
    `min_sources` sources, their prediction interval for the next source (band_q); pooled over all
    rows; and, for reading, the same per class of each band dimension (`by`, [lo, hi, n]; what a
    query's band was under the rules before "cell")."""
    r = np.array([step_residual(p) for p in rows])
    src = np.array([p.source for p in rows])
    keys = [_band_keys(p) for p in rows]
    out_cells: dict = {}
    for dims in cells:
        groups: dict = {}
        for i, k in enumerate(keys):
            c = band_cell(dims, k)
            if c is not None:
                groups.setdefault(c[1], []).append(i)
        level = ",".join(dims)
        out_cells[level] = {key: band_q(r[ix], src[ix]) for key, ix in sorted(groups.items())
                            if len(ix) >= min_n and len(set(src[ix])) >= min_sources}
    by = {}
    for dim in BAND_DIMENSIONS:
        col = np.array([k[dim] for k in keys])
        by[dim] = {v: band_q(r[col == v], src[col == v]) for v in sorted(set(col) - {"unknown"})}
    pooled = band_q(r, src)
    n_src = int(len(set(src)))
    return {"step": pooled[:2], "n": pooled[2], "n_sources": n_src, "cells": out_cells, "by": by, "min_n": min_n,
            "min_sources": min_sources, "rule": rule,
            "note": "a query's band: the prediction interval for the next source of the leave-one-source-out step "
                    "residuals (log(predicted/measured step time): an answer's error divided by its sensitivity to "
                    "step time) of its cell (cells: " + "; ".join(",".join(d) for d in cells) + f"; each with >= {min_n}"
                    f" residuals from >= {min_sources} sources), else pooled (step); each source weighing once; the "
                    "10th/90th percentiles with the small-sample correction for k sources (levels 0.1 - 0.4/k, "
                    "0.9 + 0.4/k); [lo, hi, n] per cell; `by`: the same per class of each dimension, for reading"}


def _row_band(table: dict, p: Prediction):
    return band_for(table, model_class=p.model_class, engine=None if p.engine == "unknown" else p.engine,
                    vendor=p.vendor, outside=bool(p.outside_fitted_range))


def nested_band_coverage(rows: list[Prediction], key=lambda p: p.source, rule: str = BAND_RULE) -> tuple[dict, list]:
    """Coverage of the 80 % bands on data never fitted: each source's held-out predictions against
    bands built from the other sources' held-out residuals only (band_table of the rows whose `key`
    differs). (coverage, each row's (lo, hi))."""
    tables = {}
    row_bands = []
    for p in rows:
        k = key(p)
        if k not in tables:
            tables[k] = band_table([x for x in rows if key(x) != k], rule=rule)
        row_bands.append(_row_band(tables[k], p))
    return band_coverage(rows, row_bands), row_bands


CV_RESIDUAL_COLUMNS = ("id", "source", "metric", "model_class", "engine", "vendor", "outside", "log_error",
                       "sensitivity")


def residual_record(rows: list[Prediction]) -> dict:
    """The held-out predictions as the preset keeps them (enough to rebuild the bands and their nested
    coverage without refitting: rows_from_residuals): one row per case, CV_RESIDUAL_COLUMNS, the error
    as log(predicted / measured)."""
    return {"columns": list(CV_RESIDUAL_COLUMNS),
            "rows": [[p.id, p.source, p.metric, p.model_class, p.engine, p.vendor, bool(p.outside_fitted_range),
                      round(math.log(p.predicted / p.measured), 6),
                      None if p.sensitivity is None else round(float(p.sensitivity), 6)] for p in rows]}


def rows_from_residuals(rec: dict) -> list[Prediction]:
    """Predictions rebuilt from residual_record (measured 1, predicted e^log_error): what a band needs
    of them (source, classes, metric, error, sensitivity), not the case's own figures."""
    cols = rec["columns"]
    out = []
    for row in rec["rows"]:
        d = dict(zip(cols, row))
        pred = math.exp(float(d["log_error"]))
        out.append(Prediction(d["id"], d["metric"], pred, 1.0, pred - 1.0, "", d["source"], "", None,
                              outside_fitted_range=("outside the fold's systems",) if d["outside"] else (),
                              vendor=d["vendor"], engine=d["engine"], model_class=d["model_class"],
                              sensitivity=d["sensitivity"]))
    return out


def band_record(rows: list[Prediction]) -> dict:
    """What a preset keeps of its bands, from the leave-one-source-out predictions: the band table,
    its coverage on sources never fitted (nested_band_coverage) and the residuals both are built from
    (both built from the residuals as kept, so that they can be rebuilt from the preset exactly)."""
    kept = residual_record(rows)
    rows = rows_from_residuals(kept)
    coverage, _ = nested_band_coverage(rows)
    return {"bands": band_table(rows), "cv_band_80_coverage": coverage | {
        "method": "each source's held-out predictions against bands from the other sources' held-out residuals"},
        "cv_residuals": kept}


def gate_record(report: Report) -> dict:
    """What the CI gate holds later errors to: overall and per GATE_DIMENSIONS class, median and p90
    |error| on these cases."""
    return {"in_sample": error_summary([r.error for r in report.rows]),
            "in_sample_by": {d: getattr(report, f"by_{d}") for d in GATE_DIMENSIONS}}


def _tol(recorded: float, tol: tuple[float, float]) -> float:
    return max(tol[0], tol[1] * recorded)


def gate_failures(report: Report, recorded: dict) -> list[str]:
    """One sentence per figure that got worse than recorded (gate_record at fit time) by more than
    its tolerance: overall, and every class of GATE_DIMENSIONS with at least GATE_MIN_N cases, median
    (GATE_TOL_MEDIAN) and p90 (GATE_TOL_P90); a recorded class no longer predicted fails too."""
    out = []
    checks = [("all cases", recorded.get("in_sample"), error_summary([r.error for r in report.rows]))]
    for d in GATE_DIMENSIONS:
        now = getattr(report, f"by_{d}")
        for k, rec in sorted((recorded.get("in_sample_by", {}).get(d) or {}).items()):
            if rec.get("n", 0) >= GATE_MIN_N:
                checks.append((f"{d} {k}", rec, now.get(k)))
    for what, rec, now in checks:
        if rec is None:
            continue
        if now is None or now["n"] < rec["n"]:
            out.append(f"{what}: {0 if now is None else now['n']} cases predicted, {rec['n']} when recorded")
            continue
        for stat, tol in (("median_abs_error", GATE_TOL_MEDIAN), ("p90_abs_error", GATE_TOL_P90)):
            allowed = rec[stat] + _tol(rec[stat], tol)
            if now[stat] > allowed:
                out.append(f"{what}: {stat.split('_')[0]} |error| {now[stat]:.1%}, recorded {rec[stat]:.1%}"
                           f" (allowed up to {allowed:.1%})")
    return out


def _by(report: Report) -> dict:
    return {d: getattr(report, f"by_{d}") for d in ("source", "vendor", "engine", "metric", "model_class")}


def calibrate(cases: list[tuple[Case, Path]] | None = None, catalog: Catalog | None = None,
              progress=None, cross_validate: bool = True, *, processes: int | None = None,
              source_effects: bool = SOURCE_EFFECTS) -> dict:
    """Fit the preset on all cases (fit_preset) and record what the CI gates hold later errors to;
    then cross-validate it: leave-one-source-out (each source predicted by a fit to the others: the
    headline figure, per class, engine-tagged against untagged, and the 80 % bands per class with
    their coverage on sources never fitted) and leave-one-vendor-out. source_effects: every fit with
    source effects and the one-standard-error choice of λ (fit_preset; docs/validation.md, "Source
    effects"; SOURCE_EFFECTS, the shipped fit). Returns the preset record (what `tokenmath calibrate
    --out` saves)."""
    import datetime

    cases = cases if cases is not None else load_cases()
    cat = catalog or load_catalog()
    rec = fit_preset(cases, cat, source_effects=source_effects)
    rec["at_bound"] = preset_at_bounds(rec)
    rec["fit_date"] = datetime.date.today().isoformat()
    rec["n_cases"] = len(cases)
    rec["cases"] = "validation/cases/*.jsonl"
    ins = validate(cases, "calibrated", cat, preset=rec)
    rec |= gate_record(ins)
    roof = validate(cases, ROOFLINE_PROFILE, cat)
    rec["roofline"] = error_summary([r.error for r in roof.rows])
    if not cross_validate:
        return rec
    caps = (rec["generic"]["max_batch"],)
    loso = cross_validation(cases, cat, source_key, "source", caps, progress=progress, processes=processes,
                            source_effects=source_effects)
    lovo = cross_validation(cases, cat, lambda c: vendor(cat.system(c.system)), "vendor", caps, progress=progress,
                            processes=processes, source_effects=source_effects)
    cv = summarize(loso.rows, "leave-one-source-out")
    un = summarize(loso.untagged, "leave-one-source-out, no engine tag")
    rec["cross_validated"] = {"method": "leave-one-source-out", "sources": sorted({source_key(c) for c, _ in cases}),
                              "n": len(loso.rows), "median_abs_error": cv.median_abs_error,
                              "p90_abs_error": cv.p90_abs_error, "lambdas": loso.lambdas}
    rec["cross_validated_untagged"] = error_summary([r.error for r in loso.untagged])
    rec["engine_vs_untagged_by_source"] = {k: {"n": v["n"], "engine": v["median_abs_error"],
                                               "untagged": un.by_source[k]["median_abs_error"]}
                                           for k, v in cv.by_source.items() if k in un.by_source}
    lv = summarize(lovo.rows, "leave-one-vendor-out")
    rec["leave_one_vendor_out"] = {"by_vendor": lv.by_vendor, "lambdas": lovo.lambdas} | error_summary(
        [r.error for r in lovo.rows])
    for g, v in _by(cv).items():
        rec[f"cv_by_{g}"] = v
    rec["cv_class_table"] = cv.class_table
    rec |= band_record(loso.rows)
    rec["worst_cv_cases"] = [{"id": x.id, "error": x.error, "metric": x.metric, "source": x.source, "note": x.note}
                             for x in sorted(loso.rows, key=lambda x: -abs(x.error))[:10]]
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
    dd = d | {"adjust": adjust, "adjust_format": 2}
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
    d = {k: v for k, v in src.items() if k not in ("adjust", "adjust_format", "user_fit")}
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
           # what the fit minimises (mean soft-L1 cost of log predicted/measured): it starts at the shipped
           # preset, so it ends no higher; the median |error| can move either way
           "soft_l1_cost": {"shipped": float(_soft_l1(shipped).mean()), "fitted": float(_soft_l1(fitted).mean())},
           "fit_date": datetime.date.today().isoformat(), "base_fit_date": d.get("fit_date"),
           "cases": sorted({str(p) for _, p in cases}),
           # a factor (this fit's, on top of the base's) that ended at ×0.1 or ×10: not a measurement
           "at_bound": at_bounds(own, {n: USER_FACTOR_BOUNDS for n in names}, log=True)}
    out = d | {"adjust": adjust, "adjust_format": 2, "user_fit": fit, "at_bound": fit["at_bound"]}
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
