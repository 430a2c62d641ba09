"""One hour of traffic at 100 requests/s through the serving simulator (issue 13 target: <= 2 s of CPU
for DeepSeek-V3 on 72 × GB200 NVL72, input 2,000 / output 500 tokens; the two smaller workloads are
held to the same figure). The fast path (`method="events"`, closed-form runs between events) is timed
against the step loop (`method="steps"`, one pass per step) in the same run: on the full hour when
that takes < 15 s (judged from a 10-minute run), else the 10-minute run × 6, as each line says.
Run: .venv/bin/python benchmarks/bench_simulate.py"""

from __future__ import annotations

import time

import tokenmath as tm
from tokenmath.simulate import simulate

TARGET_S = 2.0
REFERENCE_FULL_UNDER_S = 15.0
WORKLOADS = (("llama-3.1-8b", "h100-sxm", 1, 500, 200), ("llama-3.1-70b", "h100-sxm", 8, 1000, 300),
             ("deepseek-v3", "gb200-nvl72", 72, 2000, 500))


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def _worst_rel(a, b) -> float:
    """Largest relative difference between two results' latency percentiles (TTFT, TPOT, latency)."""
    return max(abs(getattr(a, f)[q] - getattr(b, f)[q]) / abs(getattr(b, f)[q])
               for f in ("ttft_s", "tpot_s", "latency_s") for q in ("p50", "p90", "p99", "mean"))


def main() -> None:
    cat = tm.load_catalog()
    for model, system, chips, I, O in WORKLOADS:
        m, s = cat.model(model), cat.system(system)
        for prefill in ("first", "chunked"):
            def run(method, duration_s=3600):
                return simulate(m, s, chips=chips, rate_per_s=100, duration_s=duration_s, input_tokens=I,
                                output_tokens=O, prefill=prefill, method=method)

            fast, fast_s = _cpu(lambda: run("events"))
            _, short_s = _cpu(lambda: run("steps", 600))
            if 6 * short_s < REFERENCE_FULL_UNDER_S:
                ref, ref_s = _cpu(lambda: run("steps"))
                how = f"full hour; percentiles within {_worst_rel(fast, ref):.0e}"
            else:
                ref_s, how = 6 * short_s, "10-min run × 6"
            verdict = "meets" if fast_s <= TARGET_S else "MISSES"
            print(f"{model:>14} on {chips:>2} × {system:<12} prefill {prefill:<7}: {fast.requests:,} requests,"
                  f" {fast.steps:,} steps in {fast_s:.2f} s CPU ({fast.steps / fast_s / 1e6:.2f} M steps/s);"
                  f" step loop {ref_s:.2f} s ({how}), {ref_s / fast_s:.1f}× ; target {TARGET_S:g} s: {verdict}")


if __name__ == "__main__":
    main()
