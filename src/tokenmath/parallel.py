"""Run independent tasks in-process or on a Dask cluster, reporting progress (planner, simulator)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .errors import TokenmathError


CONNECT_TIMEOUT_S = 5.0  # a scheduler that does not answer in this long is reported, not waited on


def _connect(Client, scheduler: str):
    """A Dask client for 'local' (in-process cluster) or a scheduler address, failing in CONNECT_TIMEOUT_S
    with one sentence when the address is malformed or nothing answers there."""
    if scheduler == "local":
        return Client(processes=False, dashboard_address=None)
    address = scheduler.strip()
    if not address or any(c.isspace() for c in address) or len(address) > 300:
        raise TokenmathError(f"--scheduler = {scheduler!r} is not a Dask scheduler address; expected 'local' or"
                             " tcp://HOST:PORT")
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (ValueError, TypeError) as e:  # a malformed address
        raise TokenmathError(f"--scheduler = {scheduler!r} is not a Dask scheduler address ({e}); expected 'local'"
                             " or tcp://HOST:PORT") from None
    except Exception:  # nothing answers, or something that is not a Dask scheduler does
        raise TokenmathError(f"--scheduler = {scheduler!r}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s;"
                             " start it, check the address (tcp://HOST:PORT), or leave --scheduler out to run"
                             " in-process") from None


def run_tasks(fn: Callable[..., Any], items: Sequence[Any], *, scheduler: str | None = None,
              progress: Callable[[int, int, str], None] | None = None, label: Callable[[Any], str] = str,
              processes: int = 1, **kwargs) -> list[Any]:
    """fn(item, **kwargs) for every item, results in the order of `items`.

    scheduler: None runs in-process (in `processes` worker processes when more than 1: for CPU-bound
    tasks such as the folds of a cross-validation; fn and the items must pickle); "local" starts an
    in-process Dask cluster; any other value is a Dask scheduler address (optional extra `dask`)."""
    n = len(items)
    if scheduler is None and processes > 1 and n > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed as done_in_order

        with ProcessPoolExecutor(max_workers=min(int(processes), n)) as pool:
            futures = {pool.submit(fn, item, **kwargs): i for i, item in enumerate(items)}
            results: list[Any] = [None] * n
            for k, fut in enumerate(done_in_order(futures)):
                i = futures[fut]
                results[i] = fut.result()
                if progress:
                    progress(k + 1, n, label(items[i]))
        return results
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
    client = _connect(Client, scheduler)
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
