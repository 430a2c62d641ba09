"""A fleet answer for every catalog model over every catalog system (issue 14 target: <= 10 s CPU
each; since issue 21 that includes the steady-state verification and the size-down of every
candidate verified). The question is issue 14's: 2,000 requests/s, 1,000 tokens in and 500 out,
p99 TTFT under 1 s, p99 TPOT under 33 ms (30 tokens/s per user). Comparator, measured in the same
run: the analytic screen alone (no simulation), which shows what the verification costs. The
last column is the same question with --disaggregation off, where every candidate is an aggregated
replica, the slowest kind to verify (the serving simulator, not the two queues).

Run: make bench   (or .venv/bin/python benchmarks/bench_fleet.py [model ...])
"""

from __future__ import annotations

import sys
import time

import tokenmath as tm
from tokenmath.errors import TokenmathError
from tokenmath.fleet import Slo, fleet

TARGET_S = 10.0


def main() -> None:
    cat = tm.load_catalog()
    systems = list(cat.systems.values())
    names = sys.argv[1:] or sorted(n for n, m in cat.models.items() if not m.is_totals_only)
    slo = Slo(ttft_p99_s=1.0, tpot_p99_s=1 / 30)
    worst = worst_off = 0.0
    for name in names:
        m = cat.model(name)
        kw = dict(request_rate=2000, input_tokens=1000, output_tokens=500, slo=slo)
        t0 = time.process_time()
        try:
            f = fleet(m, systems, **kw)
        except TokenmathError as e:
            print(f"fleet {name:<18} {e}")
            continue
        total = time.process_time() - t0
        t0 = time.process_time()
        fleet(m, systems, verify=0, **kw)
        screen = time.process_time() - t0
        t0 = time.process_time()
        try:
            fleet(m, systems, disaggregation="off", **kw)
        except TokenmathError:
            pass
        off = time.process_time() - t0
        worst = max(worst, total)
        worst_off = max(worst_off, off)
        b = f.best
        what = "no fleet meets the SLOs" if b is None else (
            f"{b.mode:<13} {b.total_chips:>6,.0f} chips, goodput {b.simulated.goodput_requests_per_s:,.0f}/s, "
            f"TTFT p99 {b.simulated.ttft_p99_s * 1e3:4.0f} ms, TPOT p99 {b.simulated.tpot_p99_s * 1e3:4.1f} ms")
        print(f"fleet {name:<18} {total:5.2f} s CPU (analytic screen alone {screen:5.2f} s)   {what}"
              f"   target <= {TARGET_S:g} s: {'meets' if total <= TARGET_S else 'MISSES'}"
              f"   (aggregated only: {off:5.2f} s)")
    print(f"worst: {worst:.2f} s CPU ({'meets' if worst <= TARGET_S else 'MISSES'} the {TARGET_S:g} s target);"
          f" aggregated only: {worst_off:.2f} s")


if __name__ == "__main__":
    main()
