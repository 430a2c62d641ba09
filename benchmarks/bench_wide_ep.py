"""The planner's search with wide expert-parallel layouts (issue 25 target: <= 1 s CPU for
DeepSeek-V3 over every catalog system). Measured: `plan(...)` in-process, colocated and as a
disaggregated decode pool (--pool decode), with the wide-EP layouts (wide_ep.wide_ep_layouts: EP
over up to 36 scale-up domains, at most 320 chips) added to the layouts it searched before.
Comparator, in the same run: the same searches without the wide-EP layouts (the planner of
issue 13), which shows what the wider search costs. CPU time of the first call (cold: the
layouts' terms computed and cached) and the best of 3 after it; the target is held by the first.

Run: make bench   (or .venv/bin/python benchmarks/bench_wide_ep.py [model ...])
"""

from __future__ import annotations

import sys
import time
from unittest import mock

import tokenmath as tm
from _timing import cpu_best  # noqa: E402  (benchmarks/_timing.py, beside this script)
from tokenmath import plan as pl

TARGET_S = 1.0



def cpu_s(fn, repeats: int = 3) -> float:
    return cpu_best(fn, repeats)


def main() -> None:
    cat = tm.load_catalog()
    systems = list(cat.systems.values())
    names = sys.argv[1:] or ["deepseek-v3"]
    full = pl.candidate_layouts
    narrow = lambda m, s, **kw: full(m, s, **(kw | {"wide_ep": False}))  # noqa: E731
    worst = 0.0
    print(f"{'model':<16} {'pool':<10} {'layouts':>8} {'wide':>6} {'first':>6} {'CPU s':>7} {'without wide EP':>16} {'best point':<40}")
    for name in names:
        m = cat.model(name)
        wide = sum(len(pl.wide_ep_layouts(m, s)) for s in systems)
        for decode_only in (False, True):
            kw = dict(input_tokens=2000, output_tokens=500, decode_only=decode_only)
            t0 = time.process_time()
            result = pl.plan(m, systems, **kw)
            first = time.process_time() - t0  # cold: the layouts' cached terms computed once
            t = cpu_s(lambda: pl.plan(m, systems, **kw))
            with mock.patch.object(pl, "candidate_layouts", narrow):
                t0 = cpu_s(lambda: pl.plan(m, systems, **kw))
            worst = max(worst, first)
            b = result.best
            where = "-" if b is None else f"{b.system} TP{b.tp} EP{b.ep} PP{b.pp}, {b.tokens_per_s_per_chip:,.0f} tok/s/chip"
            print(f"{name:<16} {'decode' if decode_only else 'colocated':<10} {result.layouts:>8} {wide:>6} {first:>6.3f} {t:>7.3f}"
                  f" {t0:>16.3f} {where:<40}")
    print(f"worst: {worst:.3f} s CPU (target <= {TARGET_S} s) — {'OK' if worst <= TARGET_S else 'OVER'}")


if __name__ == "__main__":
    main()
