"""The planner's full search for one model over every catalog system (issue 4 target: <= 1 s on
2 cores). Prints cold (first call, caches empty) and warm timings and the size of the search.
Run: .venv/bin/python benchmarks/bench_plan.py [model ...]
"""

from __future__ import annotations

import sys
import time

import tokenmath as tm
from tokenmath import params
from tokenmath.plan import plan


def main() -> None:
    models = sys.argv[1:] or ["deepseek-v3", "llama-3.1-70b", "qwen3-235b-a22b", "gpt-oss-120b"]
    cat = tm.load_catalog()
    systems = list(cat.systems.values())
    for name in models:
        m = cat.model(name)
        params.param_counts.cache_clear()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            p = plan(m, systems, input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=20, max_ttft_s=2)
            times.append(time.perf_counter() - t0)
        verdict = "meets" if min(times) <= 1.0 else "MISSES"
        print(f"{name:>16}: {len(systems)} systems, {p.layouts:,} layouts, {p.evaluated:,} points — "
              f"cold {times[0]:.2f} s, warm {min(times[1:]):.2f} s ({verdict} the 1 s target)")


if __name__ == "__main__":
    main()
