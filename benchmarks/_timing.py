"""What every benchmark here times with: the best CPU time of a few runs (process_time, so another
process's load on the shared cores does not count)."""

import time


def cpu_best(fn, repeats: int = 5) -> float:
    """The least CPU seconds `fn()` took over `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best
