"""The planner over every catalog system, for every catalog model with an architecture (issue 13).

For each model: the CPU time of `plan(...)` in-process (the search: layouts × batches × the
deployable weight dtypes, the calibrated estimate), and of the whole `tokenmath plan --model M`
process (start-up included: the target, <= 0.5 s CPU). Comparator, measured in the same run: the
same search evaluated one layout at a time (one op_step broadcast per layout over its batches,
the planner's design before issue 13), for the first model. CPU time, best of 3.

Run: make bench   (or .venv/bin/python benchmarks/bench_plan.py [model ...])
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tokenmath as tm
from tokenmath.errors import TokenmathError
from tokenmath.layout import check_layout
from tokenmath.plan import candidate_layouts, deployable_weight_dtypes, plan
from tokenmath.profiles import choose
from tokenmath.specs import Dtypes
from tokenmath.stepmodel import op_step, steady_step_s

CLI = str(Path(sys.executable).with_name("tokenmath"))
TARGET_S = 0.5


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: bytecode cached


def process_cpu_s(args: list[str], repeats: int = 3) -> float:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def one_layout_at_a_time(m, systems, I=2000.0, O=500.0) -> int:
    """The comparator: every (system, dtype, layout) evaluated by its own calls, 41 batches each."""
    points = 0
    for s in systems:
        prof = choose("calibrated", system=s)
        for wd in deployable_weight_dtypes(m, s):
            dt = Dtypes(weight=wd)
            for lay in candidate_layouts(m, s):
                try:
                    check_layout(m, s, lay)
                    g = np.round(np.geomspace(1, 1000, 41))
                    steady_step_s(m, s, lay, g, I, O, kernels=prof.kernels, engine=prof.engine, dtypes=dt)
                    op_step(m, s, lay, 1.0, 0.0, I, kernels=prof.kernels, engine=prof.engine, dtypes=dt, check=False)
                    points += len(g)
                except TokenmathError:
                    continue
    return points


def main() -> None:
    cat = tm.load_catalog()
    systems = list(cat.systems.values())
    names = sys.argv[1:] or sorted(n for n, m in cat.models.items() if not m.is_totals_only)
    worst = 0.0
    for i, name in enumerate(names):
        m = cat.model(name)
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            p = plan(m, systems, input_tokens=2000, output_tokens=500)
            best = min(best, time.process_time() - t0)
        whole = process_cpu_s([CLI, "plan", "--model", name])
        worst = max(worst, whole)
        line = (f"plan {name:<18} {len(systems)} systems, {p.layouts:>5,} layouts, {p.evaluated:>6,} points: "
                f"search {best:5.3f} s, whole process {whole:5.2f} s CPU")
        if i == 0:
            t0 = time.process_time()
            one_layout_at_a_time(m, systems)
            ref = time.process_time() - t0
            line += f"   (one layout at a time: search {ref:5.2f} s, {ref / best:4.1f}× slower)"
        print(line + f"   target <= {TARGET_S} s: {'meets' if whole <= TARGET_S else 'MISSES'}")
    print(f"worst whole process: {worst:.2f} s CPU ({'meets' if worst <= TARGET_S else 'MISSES'} the {TARGET_S} s target)")


if __name__ == "__main__":
    main()
