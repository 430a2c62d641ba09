"""Start-up time of the command line (issue 13): CPU seconds of the whole process, best of 5.

Targets: `tokenmath --help` <= 0.2 s, `tokenmath step --model deepseek-v3 --system gb200-nvl72 --batch 64
--context 4k` <= 0.3 s. The comparator, measured in the same run, is an empty interpreter (`python -c pass`):
what no command can go below. Children run with Python's bytecode cache on, as an installed package
does (PYTHONDONTWRITEBYTECODE, set on some machines, would recompile every module on every run); the
first run of each command writes the cache and is not counted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

RUNS = 5
EXE = Path(sys.executable).with_name("tokenmath")
CASES = (
    ("tokenmath --help", [str(EXE), "--help"], 0.2),
    ("tokenmath step --model deepseek-v3 --system gb200-nvl72 --batch 64 --context 4k",
     [str(EXE), "step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "64", "--context", "4k"], 0.3),
)


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cpu_s(cmd: list[str]) -> float:
    """CPU seconds (user + system) of one child process, best of RUNS (after one warm-up run)."""
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    best = float("inf")
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def main() -> None:
    if not EXE.exists():
        sys.exit(f"{EXE} not found: install tokenmath into this interpreter's environment first")
    empty = cpu_s([sys.executable, "-c", "pass"])
    print(f"start-up, CPU seconds of the whole process, best of {RUNS} ({os.cpu_count()} cores)")
    print(f"  comparator: empty interpreter (python -c pass) {empty:.3f} s")
    for label, cmd, target in CASES:
        t = cpu_s(cmd)
        verdict = "meets" if t <= target else "MISSES"
        print(f"  {label}: {t:.3f} s ({t - empty:.3f} s above the empty interpreter); target <= {target} s: {verdict}")


if __name__ == "__main__":
    main()
