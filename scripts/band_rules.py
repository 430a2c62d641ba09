#!/usr/bin/env python
"""Print the nested 80 % band coverage of the shipped leave-one-source-out residuals under other
band rules than the shipped one: the table in docs/validation.md ("Why one level, the model class"),
which tests/test_validate.py checks against this script's output.

Each rule builds a row's band from the other sources' residuals only (as
calibrate.nested_band_coverage does for the shipped rule), and the coverage is the share of rows
whose step residual lies inside. The shipped rule's row is calibrate.nested_band_coverage itself.

    python scripts/band_rules.py
"""

from __future__ import annotations

import numpy as np

from tokenmath import calibrate as cb
from tokenmath import profiles as pf
from tokenmath import validate as vd

CLASSES = ("dense", "moe", "mla")


def _quantiles(r, src, corrected: bool, by_source: bool = True) -> tuple[float, float]:
    _, inv, counts = np.unique(src, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv] if by_source else np.ones(len(r))
    lo, hi = pf.band_levels(len(counts)) if corrected else (0.1, 0.9)
    return cb._weighted_percentile(r, w, lo), cb._weighted_percentile(r, w, hi)


def _keys(p) -> dict:
    return {"model_class": p.model_class, "engine": p.engine, "vendor": p.vendor, "range": vd.range_class(p)}


def nested(rows, band) -> np.ndarray:
    """Each row inside the band `band(row, r, src, keys)` built from the other sources' rows."""
    r = np.array([vd.step_residual(p) for p in rows])
    src = np.array([p.source for p in rows])
    keys = [_keys(p) for p in rows]
    inside = np.zeros(len(rows), bool)
    for s in np.unique(src):
        train = src != s
        tr_keys = [k for k, t in zip(keys, train) if t]
        for i in np.flatnonzero(~train):
            lo, hi = band(keys[i], r[train], src[train], tr_keys)
            inside[i] = lo <= r[i] <= hi
    return inside


def union_rule(corrected: bool):
    """Before issue 22's "cell" rule: the union of the query's classes in each band dimension with at
    least BAND_MIN_N residuals, else pooled."""
    def band(key, r, src, keys):
        picks = []
        for dim in pf.BAND_DIMENSIONS:
            m = np.array([k[dim] == key[dim] for k in keys]) if key[dim] != "unknown" else np.zeros(len(keys), bool)
            if m.sum() >= pf.BAND_MIN_N:
                picks.append(_quantiles(r[m], src[m], corrected))
        if not picks:
            return _quantiles(r, src, corrected)
        lo, hi = zip(*picks)
        return min(lo), max(hi)
    return band


def cell_rule(levels, corrected: bool = True, by_source: bool = True):
    """The first of the query's cells (finest level first) with at least BAND_MIN_N residuals from at
    least BAND_MIN_SOURCES sources, else pooled."""
    def band(key, r, src, keys):
        for dims in levels:
            if any(key[d] == "unknown" for d in dims):
                continue
            m = np.array([all(k[d] == key[d] for d in dims) for k in keys])
            if m.sum() >= pf.BAND_MIN_N and len(set(src[m])) >= pf.BAND_MIN_SOURCES:
                return _quantiles(r[m], src[m], corrected, by_source)
        return _quantiles(r, src, corrected, by_source)
    return band


def table(rows) -> list[str]:
    mc = np.array([p.model_class for p in rows])
    shipped, _ = cb.nested_band_coverage(rows)
    rules = [
        ("before: the union of the query's classes in 4 dimensions (model class, engine, vendor, inside/outside),"
         " plain q10/q90", nested(rows, union_rule(False))),
        ("the same union, with the small-sample correction", nested(rows, union_rule(True))),
        ("model class, plain q10/q90", nested(rows, cell_rule([("model_class",)], corrected=False))),
        ("**model class, with the correction (shipped)**", None),
        ("model class × engine, then model class", nested(rows, cell_rule([("model_class", "engine"), ("model_class",)]))),
        ("model class × vendor, then model class", nested(rows, cell_rule([("model_class", "vendor"), ("model_class",)]))),
        ("model class, each case weighing once (not each source)",
         nested(rows, cell_rule([("model_class",)], by_source=False))),
    ]
    out = ["| rule | overall | dense | MoE | MLA |", "|---|---|---|---|---|"]
    for name, inside in rules:
        if inside is None:
            cells = [shipped["share"]] + [shipped["by_model_class"][c]["share"] for c in CLASSES]
            out.append(f"| {name} | " + " | ".join(f"**{x:.1%}**".replace("%", " %") for x in cells) + " |")
            continue
        cells = [inside.mean()] + [inside[mc == c].mean() for c in CLASSES]
        out.append(f"| {name} | " + " | ".join(f"{x:.1%}".replace("%", " %") for x in cells) + " |")
    return out


def main() -> None:
    rows = cb.rows_from_residuals(pf.preset_record()["cv_residuals"])
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
