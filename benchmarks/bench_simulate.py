"""One hour of traffic at 100 requests/s through the serving simulator (issue 7 target: <= 10 s on
2 cores). Run: .venv/bin/python benchmarks/bench_simulate.py"""

from __future__ import annotations

import time

import tokenmath as tm
from tokenmath.simulate import simulate


def main() -> None:
    cat = tm.load_catalog()
    for model, system, chips, I, O in (("llama-3.1-8b", "h100-sxm", 1, 500, 200), ("llama-3.1-70b", "h100-sxm", 8, 1000, 300),
                                       ("deepseek-v3", "gb200-nvl72", 72, 2000, 500)):
        for prefill in ("first", "chunked"):
            t0 = time.perf_counter()
            r = simulate(cat.model(model), cat.system(system), chips=chips, rate_per_s=100, duration_s=3600,
                         input_tokens=I, output_tokens=O, prefill=prefill)
            dt = time.perf_counter() - t0
            verdict = "meets" if dt <= 10 else "MISSES"
            print(f"{model:>14} on {chips} × {system:<12} prefill {prefill:<7}: {r.requests:,} requests, {r.steps:,} steps"
                  f" in {dt:.2f} s ({verdict} the 10 s target)")


if __name__ == "__main__":
    main()
