"""Roofline points per second for a broadcast sweep (issue 2 target: >= 1e7 points/s on 2 cores).

A "point" is one (batch, context) pair evaluated by tokenmath.step_time with its full breakdown
(compute, weight and KV fetch, bound, tokens/s, $/Mtok, MFU, MBU, memory fit).
Run: make bench   (or .venv/bin/python benchmarks/bench_roofline.py [points])
"""

from __future__ import annotations

import sys
import time

import numpy as np

import tokenmath as tm


def bench(model: str, system: str, n_points: int, repeats: int = 3) -> float:
    cat = tm.load_catalog()
    m, s = cat.model(model), cat.system(system)
    n_b = 1000
    n_l = n_points // n_b
    B = np.geomspace(1, 1e5, n_b)
    L = np.geomspace(1, 1e6, n_l)[:, None]
    tm.step_time(m, s, B[:10], L[:10])  # warm caches (parameter counts, imports)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        st = tm.step_time(m, s, B, L)
        best = min(best, time.perf_counter() - t0)
    assert st.step_s.size == n_b * n_l and np.all(np.isfinite(st.step_s))
    return n_b * n_l / best


def main() -> None:
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 2_000_000
    for model, system in [("deepseek-v3", "gb200-nvl72"), ("llama-3.1-70b", "h100-sxm"), ("gpt-oss-120b", "h200-sxm")]:
        rate = bench(model, system, n)
        verdict = "meets" if rate >= 1e7 else "MISSES"
        print(f"{model:>14} on {system:<12} {n:>10,} points: {rate:,.0f} points/s ({verdict} the 1e7 target)")


if __name__ == "__main__":
    main()
