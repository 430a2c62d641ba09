"""Run independent tasks in-process or on a Dask cluster, reporting progress (planner, simulator)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .errors import TokenmathError


def run_tasks(fn: Callable[..., Any], items: Sequence[Any], *, scheduler: str | None = None,
              progress: Callable[[int, int, str], None] | None = None, label: Callable[[Any], str] = str,
              **kwargs) -> list[Any]:
    """fn(item, **kwargs) for every item, results in the order of `items`.

    scheduler: None runs in-process; "local" starts an in-process Dask cluster; any other value is
    a Dask scheduler address (optional extra `dask`)."""
    n = len(items)
    if scheduler is None:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item, **kwargs))
            if progress:
                progress(i + 1, n, label(item))
        return out
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise TokenmathError("--scheduler needs Dask: pip install 'tokenmath[dask]'") from None
    client = Client(processes=False, dashboard_address=None) if scheduler == "local" else Client(scheduler)
    try:
        futures = {client.submit(fn, item, pure=False, **kwargs): i for i, item in enumerate(items)}
        results: list[Any] = [None] * n
        for done, fut in enumerate(as_completed(futures)):
            i = futures[fut]
            results[i] = fut.result()
            if progress:
                progress(done + 1, n, label(items[i]))
        return results
    finally:
        client.close()
