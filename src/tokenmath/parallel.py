"""Run independent tasks in-process or on a Dask cluster, reporting progress (planner, simulator).

The one runner. `scheduler=None` runs the tasks in this process, one after another. `"local"` starts
a Dask LocalCluster of worker *processes* on this machine (one per core, at most one per task, one
thread each) and closes it when the tasks are done. It has no side effects a user did not ask for:

- no dashboard: Dask's scheduler always runs an HTTP server, so it is bound to 127.0.0.1 on a free
  port with the dashboard routes off; the scheduler and workers talk over 127.0.0.1 only. Nothing
  listens on a network interface. `options(dashboard=True)` (the CLI's `--dashboard`) turns the
  dashboard on, still on 127.0.0.1, and says where;
- no log lines or tracebacks of Dask's own: its loggers are silenced in this process and the
  workers, and what the worker processes write to stderr goes to a temporary file; a cluster that
  fails to start, or a worker that dies, is one sentence quoting the last line of that log;
- a task's own error (TokenmathError) is raised here unchanged: one sentence.

`"processes"` runs the tasks in a pool of worker processes on this machine (one per core; the
standard library's ProcessPoolExecutor: no Dask import, no listening socket). Any other value of
`scheduler` is the address of a running Dask scheduler (optional extra `dask`).

`stream_tasks` is the same runner for work too large to hold: items come from an iterator, at most
two per worker are in flight, and each result is handed to a callback as it finishes (explore).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import TokenmathError

CONNECT_TIMEOUT_S = 5.0  # a scheduler that does not answer in this long is reported, not waited on
START_TIMEOUT_S = 60.0  # a local cluster that has not started in this long is reported
LOOPBACK = "127.0.0.1"
DASHBOARD_PORT = 8787  # Dask's default; a free port is taken when it is busy


@dataclass(frozen=True)
class Options:
    """How the runner runs (not what it computes): the local cluster's dashboard, and where to say
    its address."""

    dashboard: bool = False
    notify: Callable[[str], None] | None = None


_OPTIONS: contextvars.ContextVar[Options] = contextvars.ContextVar("tokenmath_parallel", default=Options())


@contextlib.contextmanager
def options(*, dashboard: bool = False, notify: Callable[[str], None] | None = None):
    """Within the block, a local cluster opens its dashboard (on 127.0.0.1) when `dashboard`, and
    `notify(text)` is told its address."""
    token = _OPTIONS.set(Options(dashboard=dashboard, notify=notify))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


@contextlib.contextmanager
def _quiet_dask():
    """Dask's loggers silenced and its warnings (a busy port, a slow event loop) hidden in this process."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "bokeh")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _children_stderr(log):
    """While worker processes are started, file descriptor 2 is `log`, so they inherit it (their
    stderr goes there, not to the user's terminal); this process's own stderr comes back after."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _last_line(log) -> str:
    try:
        log.flush()
        log.seek(0)
        lines = [x.strip() for x in log.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except (OSError, ValueError):
        return ""
    return lines[-1][:200] if lines else ""


def _local_client(n_tasks: int, opts: Options, log):
    """A LocalCluster of worker processes on 127.0.0.1 and a client of it (see the module docstring)."""
    from dask.distributed import Client, LocalCluster

    workers = max(1, min(n_tasks, os.cpu_count() or 1))
    http = f"{LOOPBACK}:{DASHBOARD_PORT if opts.dashboard else 0}"
    try:
        with _children_stderr(log):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                                   dashboard_address=http, scheduler_kwargs={"dashboard": opts.dashboard},
                                   worker_dashboard_address=None, silence_logs=logging.CRITICAL,
                                   timeout=START_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - any failure to start is the user's environment, said in one sentence
        why = _last_line(log) or f"{type(e).__name__}: {e}"
        raise TokenmathError(f"--scheduler local: the Dask cluster of {workers} worker process(es) did not start"
                             f" ({why[:200]}); leave --scheduler out to run in-process") from None
    client = Client(cluster, set_as_default=False)
    if opts.dashboard and opts.notify is not None:
        opts.notify(f"Dask dashboard: {cluster.dashboard_link} (on {LOOPBACK} only; closes when the run ends)")
    return client, cluster


def _connect(Client, scheduler: str):
    """A Dask client for a scheduler address, failing in CONNECT_TIMEOUT_S with one sentence when the
    address is malformed or nothing answers there."""
    address = scheduler.strip()
    if not address or any(c.isspace() for c in address) or len(address) > 300:
        raise TokenmathError(f"--scheduler = {scheduler!r} is not a Dask scheduler address; expected 'local' or"
                             " tcp://HOST:PORT")
    try:  # the address parsed first (dask's own parser): a Client half-built on a malformed one
        # leaves a close that times out at exit
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, loc = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(loc)
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
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
    tasks such as the folds of a cross-validation; fn and the items must pickle); "local" starts a local cluster of worker processes (loopback
    only, no dashboard unless `options(dashboard=True)`); any other value is a Dask scheduler
    address (optional extra `dask`)."""
    n = len(items)
    opts = _OPTIONS.get()
    if scheduler == "processes":
        scheduler, processes = None, max(1, os.cpu_count() or 1)
    if opts.dashboard and scheduler != "local":
        raise TokenmathError("--dashboard shows the local cluster's Dask dashboard: it needs --scheduler local")
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
    with tempfile.TemporaryFile() as log, _quiet_dask():
        cluster = None
        if scheduler == "local":
            client, cluster = _local_client(n, opts, log)
        else:
            client = _connect(Client, scheduler)
        try:
            futures = {client.submit(fn, item, pure=False, **kwargs): i for i, item in enumerate(items)}
            results: list[Any] = [None] * n
            for done, fut in enumerate(as_completed(futures, loop=client.loop)):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except TokenmathError:
                    raise
                except Exception as e:  # noqa: BLE001
                    if type(e).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
                        raise _died(scheduler, label(items[i]), log) from None
                    raise
                if progress:
                    progress(done + 1, n, label(items[i]))
            return results
        finally:
            _close(client, cluster)


_END = object()


def _close(client, cluster) -> None:
    """Close a Dask client and the local cluster it started (if any), quietly: the answer is in."""
    with contextlib.suppress(Exception):
        client.close(timeout=10)
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def _died(scheduler: str, what: str, log=None) -> TokenmathError:
    why = _last_line(log) if log is not None else ""
    return TokenmathError(f"--scheduler {scheduler}: a worker died while running {what[:100]!r}"
                          + (f" ({why})" if why else "") + "; leave --scheduler out to run in-process")


def stream_tasks(fn: Callable[[Any], Any], items, *, scheduler: str | None = None,
                 on_result: Callable[[Any, Any], None], label: Callable[[Any], str] = str,
                 workers: int | None = None) -> None:
    """fn(item) for every item of an iterable, each result handed to on_result(item, result) in this
    process as it finishes (in the order they finish); at most two items per worker in flight, so
    neither the items nor the results are ever all held. scheduler: None (this process, in order),
    "processes" (a local process pool, one worker per core or `workers`), "local" (a Dask
    LocalCluster) or a Dask scheduler address. A worker's TokenmathError is raised here unchanged."""
    it = iter(items)
    if _OPTIONS.get().dashboard and scheduler != "local":
        raise TokenmathError("--dashboard shows the local cluster's Dask dashboard: it needs --scheduler local")
    if scheduler is None:
        for item in it:
            on_result(item, fn(item))
        return
    if scheduler == "processes":
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        n = max(1, int(workers or os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=n) as pool:
            pending: dict = {}

            def fill():
                while len(pending) < 2 * n:
                    item = next(it, _END)
                    if item is _END:
                        return
                    pending[pool.submit(fn, item)] = item

            fill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    item = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        raise _died("processes", label(item)) from None
                    on_result(item, result)
                fill()
        return
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise TokenmathError("--scheduler needs Dask: pip install 'tokenmath[dask]'") from None
    opts = _OPTIONS.get()
    with tempfile.TemporaryFile() as log, _quiet_dask():
        cluster = None
        if scheduler == "local":
            client, cluster = _local_client(int(workers or os.cpu_count() or 1), opts, log)
        else:
            client = _connect(Client, scheduler)
        try:
            n = max(1, len(client.scheduler_info().get("workers", {})) or 1)
            pending = {}
            for _ in range(2 * n):
                item = next(it, _END)
                if item is _END:
                    break
                pending[client.submit(fn, item, pure=False)] = item
            seq = as_completed(list(pending), loop=client.loop)
            for fut in seq:
                item = pending.pop(fut)
                try:
                    result = fut.result()
                except TokenmathError:
                    raise
                except Exception as e:  # noqa: BLE001
                    if type(e).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
                        raise _died(scheduler, label(item), log) from None
                    raise
                on_result(item, result)
                nxt = next(it, _END)
                if nxt is not _END:
                    f = client.submit(fn, nxt, pure=False)
                    pending[f] = nxt
                    seq.add(f)
        finally:
            _close(client, cluster)
