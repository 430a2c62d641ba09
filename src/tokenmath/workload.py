"""Workloads for fleet planning: request arrivals with input and output lengths (issue 14).

A `Workload` is a list of requests: when each arrives (seconds from 0, sorted), how many prompt
tokens it brings (`input_tokens`), how many it generates (`output_tokens`), and optionally which
shared prompt prefix it starts with (`prefix_id`, -1 = none). It comes from

* a generator: `poisson(rate_per_s, duration_s, input_tokens, output_tokens, lengths=...)`, fixed
  lengths or lognormal / exponential lengths with the given MEAN;
* a trace file: `read_trace(path)` reads the Azure LLM inference trace CSV
  (`TIMESTAMP,ContextTokens,GeneratedTokens`, Azure/AzurePublicDataset) or our JSON-lines format
  (`{"arrival_s": 0.12, "input_tokens": 1000, "output_tokens": 200, "prefix_id": 3}` per line).

`stats(w)` gives the rate and the length statistics; `scale_rate` and `head` reshape a workload for
simulation. Every malformed file is one TokenmathError sentence naming the file, the line and the
value; the readers are bounded in bytes (MAX_TRACE_BYTES) and rows (MAX_REQUESTS). numpy only.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import json.scanner
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TokenmathError, read_user_file

MAX_REQUESTS = 1_000_000  # requests in one workload read from a file (the simulator's bound too)
MAX_TRACE_BYTES = 128_000_000  # bytes of one trace file (~3.5M Azure CSV rows; the row bound binds first)
MAX_REQUEST_TOKENS = 100_000_000  # input or output tokens of one request in a trace (simulate.MAX_TOKENS)
MAX_CONTEXT_TOKENS = 1_048_576  # default cap on generated lengths: 2^20, the longest catalog context windows
MAX_PREFIX_ID = 2**62
LENGTHS = ("fixed", "lognormal", "exponential")
DEFAULT_SIGMA = 1.0  # lognormal shape: the log-lengths' std; Azure 2023 traces have 0.85-1.36 (docs/workload.md)

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
JSONL_KEYS = ("arrival_s", "input_tokens", "output_tokens", "prefix_id")


# ---- the workload -----------------------------------------------------------------------------

def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests: arrival times (s, sorted, >= 0; a trace's first request is at 0), input and output
    tokens (whole numbers >= 1), optional shared-prefix ids (-1 = no shared prefix).

    `duration_s` is the observation window; None means "up to the last arrival" (a trace)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_id: np.ndarray | None = None
    duration_s: float | None = None
    name: str = ""
    source: str = ""

    def __post_init__(self):
        arr = np.asarray(self.arrival_s, dtype=float).reshape(-1)
        n = arr.size
        if n == 0:
            raise TokenmathError("a workload needs at least one request; got none")
        if not np.all(np.isfinite(arr)) or arr[0] < 0:
            raise TokenmathError("arrival_s must be finite times >= 0 s")
        if np.any(np.diff(arr) < 0):
            raise TokenmathError("arrival_s must be sorted (non-decreasing)")
        cols = {}
        for key in ("input_tokens", "output_tokens"):
            raw = np.asarray(getattr(self, key)).reshape(-1)
            if raw.size != n:
                raise TokenmathError(f"{key} has {raw.size:,} entries but arrival_s has {n:,}")
            if raw.dtype.kind not in "iuf" or (raw.dtype.kind == "f" and not np.all(np.isfinite(raw))):
                raise TokenmathError(f"{key} must be whole numbers of tokens >= 1")
            if raw.dtype.kind == "f" and np.any(raw != np.round(raw)):
                raise TokenmathError(f"{key} must be whole numbers of tokens >= 1")
            if np.any(raw < 1) or np.any(raw > MAX_REQUEST_TOKENS):
                bad = raw[(raw < 1) | (raw > MAX_REQUEST_TOKENS)][0]
                raise TokenmathError(f"{key} = {bad:g} must be between 1 and {MAX_REQUEST_TOKENS:,} tokens")
            cols[key] = raw.astype(np.int64)
        pre = None
        if self.prefix_id is not None:
            raw = np.asarray(self.prefix_id).reshape(-1)
            if raw.size != n:
                raise TokenmathError(f"prefix_id has {raw.size:,} entries but arrival_s has {n:,}")
            if raw.dtype.kind not in "iu" or np.any(raw < -1) or np.any(raw >= MAX_PREFIX_ID):
                raise TokenmathError("prefix_id must be whole numbers >= 0, or -1 for no shared prefix")
            pre = _frozen(raw.astype(np.int64))
        if self.duration_s is not None:
            d = self.duration_s
            if isinstance(d, bool) or not (isinstance(d, (int, float, np.integer, np.floating)) and math.isfinite(d)
                                           and d > 0 and d >= arr[-1]):
                raise TokenmathError(f"duration_s = {d!r} must be a finite number of seconds > 0 and at least "
                                     f"the last arrival ({arr[-1]:g} s)")
            object.__setattr__(self, "duration_s", float(d))
        object.__setattr__(self, "arrival_s", _frozen(arr))
        object.__setattr__(self, "input_tokens", _frozen(cols["input_tokens"]))
        object.__setattr__(self, "output_tokens", _frozen(cols["output_tokens"]))
        object.__setattr__(self, "prefix_id", pre)

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def __repr__(self) -> str:
        return f"Workload({len(self):,} requests, name={self.name!r}, source={self.source!r})"


@dataclass(frozen=True)
class WorkloadStats:
    """What a workload asks for, flat (every field a number or a string, so `vars()` is JSON).

    rate_per_s = requests / duration_s; duration_s is the window the workload was generated over,
    or for a trace the time from the first to the last arrival; rate_per_s is None when every
    request arrives at one instant (no rate can be read off). Token statistics are over requests:
    the mean, percentiles by numpy's linear interpolation, the maximum. prefix_share: requests that
    carry a shared-prefix id (prefix_id >= 0); prefix_reuse_share: requests whose prefix id appeared
    earlier in the workload, the hit rate of an unbounded prefix cache (0 without ids)."""

    requests: int
    duration_s: float
    rate_per_s: float | None
    input_tokens_mean: float
    input_tokens_p50: float
    input_tokens_p90: float
    input_tokens_p99: float
    input_tokens_max: int
    output_tokens_mean: float
    output_tokens_p50: float
    output_tokens_p90: float
    output_tokens_p99: float
    output_tokens_max: int
    prefix_share: float
    prefix_reuse_share: float
    name: str = ""
    source: str = ""


def _length_stats(key: str, x: np.ndarray) -> dict:
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {f"{key}_mean": float(x.mean()), f"{key}_p50": float(p50), f"{key}_p90": float(p90),
            f"{key}_p99": float(p99), f"{key}_max": int(x.max())}


def stats(w: Workload) -> WorkloadStats:
    """Rate and length statistics of a workload (see WorkloadStats for the definitions)."""
    n = len(w)
    duration = w.duration_s if w.duration_s is not None else float(w.arrival_s[-1])
    rate = n / duration if duration > 0 else None
    if rate is not None and not math.isfinite(rate):  # a window far below a nanosecond
        rate = None
    share = reuse = 0.0
    if w.prefix_id is not None:
        ids = w.prefix_id
        has = ids >= 0
        share = float(has.mean())
        if has.any():
            _, first = np.unique(ids[has], return_index=True)
            reuse = float((has.sum() - first.size) / n)
    return WorkloadStats(requests=n, duration_s=float(duration), rate_per_s=rate,
                         **_length_stats("input_tokens", w.input_tokens),
                         **_length_stats("output_tokens", w.output_tokens),
                         prefix_share=share, prefix_reuse_share=reuse, name=w.name, source=w.source)


# ---- generators --------------------------------------------------------------------------------

def _positive(name: str, x, unit: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(x) or x <= 0:
        raise TokenmathError(f"{name} = {x!r} must be a positive number of {unit}")
    return float(x)


def _draw_lengths(what: str, mean, kind: str, sigma: float, cap: int, n: int, rng) -> np.ndarray:
    if isinstance(mean, bool) or not isinstance(mean, (int, float, np.integer, np.floating)) or not math.isfinite(mean):
        raise TokenmathError(f"{what} = {mean!r} must be a number of tokens >= 1")
    if not 1 <= mean <= cap:
        raise TokenmathError(f"{what} = {mean:g} must be between 1 and the maximum context {cap:,} tokens")
    if kind == "fixed":
        if mean != round(mean):
            raise TokenmathError(f"{what} = {mean:g} must be a whole number of tokens with lengths='fixed'")
        return np.full(n, int(mean), dtype=np.int64)
    if kind == "lognormal":  # E[X] = exp(mu + sigma^2/2) = mean
        x = rng.lognormal(mean=math.log(mean) - sigma**2 / 2, sigma=sigma, size=n)
    else:
        x = rng.exponential(scale=float(mean), size=n)
    return np.clip(np.rint(x), 1, cap).astype(np.int64)


def poisson(rate_per_s: float, duration_s: float, input_tokens: float = 1000, output_tokens: float = 200, *,
            lengths: str = "fixed", sigma: float = DEFAULT_SIGMA, max_tokens: int = MAX_CONTEXT_TOKENS,
            seed: int = 0) -> Workload:
    """Poisson arrivals at `rate_per_s` over [0, `duration_s`) with input and output lengths:

    * lengths="fixed": every request has exactly `input_tokens` / `output_tokens` (whole numbers);
    * lengths="lognormal": the given values are the MEANS; log-length ~ Normal(ln(mean) - sigma²/2,
      sigma), sigma the std of the log-lengths (default 1.0, about the Azure 2023 traces);
    * lengths="exponential": the given values are the MEANS of an exponential distribution.

    Drawn lengths are rounded to the nearest whole token, at least 1 and at most `max_tokens`
    (default 2^20 = 1,048,576). The mean is that of the continuous distribution; rounding and the
    floor at 1 raise the drawn mean by about 35 % at mean 1, 10 % at 2, 2 % at 5 and under 0.5 %
    from 10 tokens up (tests/test_workload.py); the cap lowers it only for means near `max_tokens`."""
    rate = _positive("rate_per_s", rate_per_s, "requests per second")
    dur = _positive("duration_s", duration_s, "seconds")
    if lengths not in LENGTHS:
        raise TokenmathError(f"lengths = {lengths!r}; expected one of {', '.join(repr(k) for k in LENGTHS)}")
    if lengths == "lognormal":
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma <= 10):
            raise TokenmathError(f"sigma = {sigma!r} must be a number in (0, 10] (the std of the log-lengths)")
    if (isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer))
            or not 1 <= max_tokens <= MAX_REQUEST_TOKENS):
        raise TokenmathError(f"max_tokens = {max_tokens!r} must be a whole number between 1 and {MAX_REQUEST_TOKENS:,}")
    expected = rate * dur
    if expected > MAX_REQUESTS:
        raise TokenmathError(f"rate {rate:g}/s × duration {dur:g} s = {expected:.3g} requests; at most "
                             f"{MAX_REQUESTS:,} in one workload (shorten the duration)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TokenmathError(f"seed = {seed!r} must be a whole number >= 0")
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(expected))  # a Poisson process on [0, T): N ~ Poisson(rate·T), times uniform
    if n == 0:
        raise TokenmathError(f"no request arrives in {dur:g} s at {rate:g} requests per second (seed {seed}); "
                             "raise the rate or the duration")
    times = np.sort(rng.uniform(0.0, dur, size=n))
    ins = _draw_lengths("input_tokens", input_tokens, lengths, float(sigma), int(max_tokens), n, rng)
    outs = _draw_lengths("output_tokens", output_tokens, lengths, float(sigma), int(max_tokens), n, rng)
    shape = "" if lengths == "fixed" else f" {lengths}" + (f" sigma {sigma:g}" if lengths == "lognormal" else "")
    return Workload(arrival_s=times, input_tokens=ins, output_tokens=outs, duration_s=dur,
                    name=f"poisson {rate:g}/s, {input_tokens:g} in / {output_tokens:g} out{shape}",
                    source=f"generated (seed {seed})")


def scale_rate(w: Workload, factor: float) -> Workload:
    """The same requests arriving `factor` times faster: arrival times (and the window) divided by
    `factor`; lengths unchanged. factor 2 doubles the rate."""
    f = _positive("factor", factor, "times the rate")
    dur = None if w.duration_s is None else w.duration_s / f
    return Workload(arrival_s=w.arrival_s / f, input_tokens=w.input_tokens, output_tokens=w.output_tokens,
                    prefix_id=w.prefix_id, duration_s=dur, name=f"{w.name} ×{f:g} rate".strip(), source=w.source)


def head(w: Workload, duration_s: float) -> Workload:
    """The requests arriving in the first `duration_s` seconds (arrival < duration_s); the window
    becomes `duration_s`, or stays the workload's own when that is shorter."""
    d = _positive("duration_s", duration_s, "seconds")
    keep = w.arrival_s < d
    k = int(keep.sum())
    if k == 0:
        raise TokenmathError(f"no request of {w.name or 'the workload'} arrives in the first {d:g} s "
                             f"(the first arrives at {w.arrival_s[0]:g} s)")
    if w.duration_s is not None:
        window = min(d, w.duration_s)
    else:  # a trace: its window ends at its last arrival
        window = None if d > w.arrival_s[-1] else d
    return Workload(arrival_s=w.arrival_s[:k], input_tokens=w.input_tokens[:k], output_tokens=w.output_tokens[:k],
                    prefix_id=None if w.prefix_id is None else w.prefix_id[:k], duration_s=window,
                    name=f"{w.name} first {d:g} s".strip(), source=w.source)


def to_jsonl(w: Workload) -> str:
    """The workload in the JSON-lines trace format (`read_trace` reads it back)."""
    rows = []
    for i in range(len(w)):
        row = {"arrival_s": float(w.arrival_s[i]), "input_tokens": int(w.input_tokens[i]),
               "output_tokens": int(w.output_tokens[i])}
        if w.prefix_id is not None and w.prefix_id[i] >= 0:
            row["prefix_id"] = int(w.prefix_id[i])
        rows.append(json.dumps(row))
    return "\n".join(rows) + "\n"


# ---- readers -----------------------------------------------------------------------------------

def _show(value) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def _too_many(where: str, line: int) -> TokenmathError:
    return TokenmathError(f"{where} line {line:,}: more than {MAX_REQUESTS:,} requests, the most one trace may "
                          f"hold (cut it, e.g. `head -n {MAX_REQUESTS + 1}`)")


# Each reader has a fast path (vectorised checks over whole columns, the common well-formed file) and
# the reference path (row by row, the one that words the error). The fast path accepts only what the
# reference path accepts, with the same values; whenever it is unsure it hands over to the reference
# path, which then raises for the first bad line or returns the same Workload (tested by fuzzing).

_INT = re.compile(r"[+]?[0-9]{1,12}")
_STAMP = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
                    r"(?:[.,]([0-9]{1,9}))?[ ]?(Z|UTC|[+-][0-9]{2}:?[0-9]{2})?")


class _Unsure(Exception):
    """The fast path cannot vouch for the input: run the reference path."""


def _tokens(where: str, line: int, col: str, text: str) -> int:
    s = text.strip()
    if not _INT.fullmatch(s):
        raise TokenmathError(f"{where} line {line:,}: {col} = {_show(text)} is not a whole number of tokens")
    v = int(s)
    if v < 1 or v > MAX_REQUEST_TOKENS:
        raise TokenmathError(f"{where} line {line:,}: {col} = {v:,} must be between 1 and {MAX_REQUEST_TOKENS:,} tokens")
    return v


def _stamp(where: str, line: int, text: str, days: dict) -> tuple[int, int]:
    """(seconds since 0001-01-01, nanoseconds) of 'YYYY-MM-DD HH:MM:SS[.fffffff][Z|±HH:MM]' (UTC if no zone)."""
    m = _STAMP.fullmatch(text.strip())

    def bad(why=""):
        return TokenmathError(f"{where} line {line:,}: TIMESTAMP = {_show(text)} is not a date-time like "
                              f"'2023-11-16 18:15:46.6805900'{why}")

    if not m:
        raise bad()
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    key = (y, mo, d)
    day = days.get(key)
    if day is None:
        try:
            day = _dt.date(int(y), int(mo), int(d)).toordinal()
        except ValueError:
            raise bad(" (no such date)") from None
        days[key] = day
    h, mn, s = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or s > 59:
        raise bad(" (no such time of day)")
    off = 0
    if zone and zone not in ("Z", "UTC"):
        z = zone.replace(":", "")
        zh, zm = int(z[1:3]), int(z[3:5])
        if zh > 23 or zm > 59:
            raise bad(" (no such time zone)")
        off = (1 if z[0] == "+" else -1) * (zh * 3600 + zm * 60)
    return day * 86400 + h * 3600 + mn * 60 + s - off, int((frac or "0").ljust(9, "0"))


def _fast_tokens(col: list) -> np.ndarray:
    joined = "".join(col)
    if not (joined.isascii() and joined.isdigit()) or min(map(len, col)) < 1 or max(map(len, col)) > 12:
        raise _Unsure
    v = np.fromiter(map(int, col), dtype=np.int64, count=len(col))
    if v.min() < 1 or v.max() > MAX_REQUEST_TOKENS:
        raise _Unsure
    return v


_DIGIT_COLS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]


def _fast_stamps(col: list) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds and nanoseconds of same-width 'YYYY-MM-DD HH:MM:SS[.f{1,9}]' stamps, vectorised."""
    lengths = set(map(len, col))
    if len(lengths) != 1:
        raise _Unsure
    (L,) = lengths
    joined = "".join(col)
    if not (L == 19 or 21 <= L <= 29) or not joined.isascii():
        raise _Unsure
    b = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(len(col), L)
    seps = {4: b"-", 7: b"-", 10: b" ", 13: b":", 16: b":"} | ({19: b"."} if L > 19 else {})
    if any(np.any(b[:, i] != ord(c)) for i, c in seps.items()):
        raise _Unsure
    digit_cols = _DIGIT_COLS + list(range(20, L))
    d = b[:, digit_cols].astype(np.int64) - 48
    if d.min() < 0 or d.max() > 9:
        raise _Unsure
    y = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    mo, dd, hh, mi, ss = (d[:, 4 + 2 * k] * 10 + d[:, 5 + 2 * k] for k in range(5))
    if hh.max() > 23 or mi.max() > 59 or ss.max() > 59:
        raise _Unsure
    keys, inverse = np.unique(y * 10000 + mo * 100 + dd, return_inverse=True)
    try:
        ordinals = np.array([_dt.date(int(k) // 10000, int(k) // 100 % 100, int(k) % 100).toordinal() for k in keys],
                            dtype=np.int64)
    except ValueError:
        raise _Unsure from None
    secs = ordinals[inverse.reshape(-1)] * 86400 + hh * 3600 + mi * 60 + ss
    ns = np.zeros(len(col), dtype=np.int64)
    for j in range(L - 20):
        ns += d[:, 14 + j] * 10 ** (8 - j)
    return secs, ns


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TokenmathError(f"{where} line {line:,}: byte {data[e.start]:#04x} is not UTF-8 text") from None


def _build(where: str, times_s: np.ndarray, ins, outs, pres, name: str) -> Workload:
    if len(ins) == 0:
        raise TokenmathError(f"{where} has no requests (only a header or blank lines)")
    order = np.argsort(times_s, kind="stable")  # rows may be unsorted
    t = times_s[order]
    t = np.round(t - t[0], 9)  # arrivals to the nanosecond (the Azure trace has 100 ns)
    pre = None if pres is None else np.asarray(pres, dtype=np.int64)[order]
    return Workload(arrival_s=t, input_tokens=np.asarray(ins, dtype=np.int64)[order],
                    output_tokens=np.asarray(outs, dtype=np.int64)[order], prefix_id=pre, name=name,
                    source=where.removeprefix("trace "))


def _csv_header(reader, where: str) -> tuple[list, list]:
    header = next(reader)
    while not any(c.strip() for c in header):
        header = next(reader)
    names = [c.strip().lower() for c in header]
    idx = []
    for col in AZURE_COLUMNS:
        if col.lower() not in names:
            raise TokenmathError(f"{where} line {reader.line_num:,}: the header {_show(','.join(header))} lacks "
                                 f"the column {col}; expected {','.join(AZURE_COLUMNS)}")
        idx.append(names.index(col.lower()))
    return header, idx


def _csv_rows(text: str, where: str, fast: bool):
    """(whole seconds, nanoseconds, input tokens, output tokens) of the rows, in file order."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header, (it, ic, ig) = _csv_header(reader, where)
        need = max(it, ic, ig) + 1
        if fast:
            ts, cs, gs = [], [], []
            for row in reader:
                if len(row) < need:
                    if any(c.strip() for c in row):
                        raise _Unsure
                    continue
                ts.append(row[it])
                cs.append(row[ic])
                gs.append(row[ig])
            if not ts or len(ts) > MAX_REQUESTS:
                raise _Unsure
            secs, ns = _fast_stamps(ts)
            return secs, ns, _fast_tokens(cs), _fast_tokens(gs)
        stamps, ins, outs, days = [], [], [], {}
        for row in reader:
            line = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(stamps) >= MAX_REQUESTS:
                raise _too_many(where, line)
            if len(row) < need:
                raise TokenmathError(f"{where} line {line:,}: {_show(','.join(row))} has {len(row)} field(s); "
                                     f"expected {len(header)} ({','.join(c.strip() for c in header)})")
            stamps.append(_stamp(where, line, row[it], days))
            ins.append(_tokens(where, line, "ContextTokens", row[ic]))
            outs.append(_tokens(where, line, "GeneratedTokens", row[ig]))
    except StopIteration:
        raise TokenmathError(f"{where} is empty; expected a header {','.join(AZURE_COLUMNS)}") from None
    except csv.Error as e:
        if fast:
            raise _Unsure from None
        raise TokenmathError(f"{where} line {reader.line_num:,}: not valid CSV ({e})") from None
    if not stamps:
        raise TokenmathError(f"{where} has a header but no requests")
    st = np.asarray(stamps, dtype=np.int64)  # whole seconds (< 3.2e11) and nanoseconds: no int64 overflow
    return st[:, 0], st[:, 1], ins, outs


def parse_azure_csv(data: bytes, where: str = "trace", name: str = "", *, _fast: bool = True) -> Workload:
    """An Azure LLM inference trace (CSV, header TIMESTAMP,ContextTokens,GeneratedTokens; other
    columns ignored; column names matched without case) -> Workload. Arrival = seconds since the
    earliest TIMESTAMP (rows are sorted by time); ContextTokens -> input, GeneratedTokens -> output.
    TIMESTAMP is 'YYYY-MM-DD HH:MM:SS' with up to 9 fractional digits, 'T' or ' ' between, and an
    optional zone (Z, UTC, +HH:MM); without a zone all rows are taken in one (unstated) zone."""
    text = _decode(data, where)
    if not text.strip():
        raise TokenmathError(f"{where} is empty; expected a header {','.join(AZURE_COLUMNS)} and one row per request")
    try:
        secs, ns, ins, outs = _csv_rows(text, where, fast=_fast)
    except _Unsure:
        secs, ns, ins, outs = _csv_rows(text, where, fast=False)
    times = (secs - secs.min()).astype(float) + ns / 1e9
    return _build(where, times, ins, outs, None, name)


def _json_number(where: str, line: int, key: str, v, *, whole: bool, lo: float, hi: float) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TokenmathError(f"{where} line {line:,}: {key} = {_show(v)} is a {type(v).__name__}; expected a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise TokenmathError(f"{where} line {line:,}: {key} = {v} is not a finite number")
    if whole and v != int(v):
        raise TokenmathError(f"{where} line {line:,}: {key} = {v!r} is not a whole number")
    if not lo <= v <= hi:
        raise TokenmathError(f"{where} line {line:,}: {key} = {_show(v)} must be between {lo:,g} and {hi:,g}")
    return int(v) if whole else float(v)


_REQUIRED = frozenset(JSONL_KEYS[:3])
_ALLOWED = frozenset(JSONL_KEYS)


def _fast_column(objs: list, key: str, lo: float, hi: float, whole: bool, default=None) -> np.ndarray:
    col = [o.get(key, default) for o in objs]
    if not all(type(v) is int or type(v) is float for v in col):
        raise _Unsure
    try:
        a = np.array(col, dtype=float)
    except (OverflowError, ValueError):  # an int beyond the float range
        raise _Unsure from None
    if not np.all(np.isfinite(a)) or a.min() < lo or a.max() > hi:
        raise _Unsure
    if whole:
        if np.any(a != np.round(a)) or a.max() >= 2**53 or a.min() <= -(2**53):
            raise _Unsure  # whole numbers are exact in a float only below 2^53: beyond, the reference path
        return a.astype(np.int64)
    return a


def _jsonl_fast(text: str):
    lines = [s for s in map(str.strip, text.split("\n")) if s]
    if not lines or len(lines) > MAX_REQUESTS:
        raise _Unsure
    scan = json.scanner.make_scanner(json.JSONDecoder())  # json.loads without its per-call wrappers
    try:
        parsed = [scan(s, 0) for s in lines]
    except (ValueError, RecursionError, StopIteration):
        raise _Unsure from None
    if not all(end == len(s) for (_, end), s in zip(parsed, lines)):
        raise _Unsure  # trailing text after the object: the reference path words the error
    objs = [o for o, _ in parsed]
    if not all(type(o) is dict and _REQUIRED <= o.keys() <= _ALLOWED for o in objs):
        raise _Unsure
    t = _fast_column(objs, "arrival_s", 0, 1e12, False)
    ins = _fast_column(objs, "input_tokens", 1, MAX_REQUEST_TOKENS, True)
    outs = _fast_column(objs, "output_tokens", 1, MAX_REQUEST_TOKENS, True)
    if any("prefix_id" in o for o in objs):
        for o in objs:
            if o.get("prefix_id", -1) is None:
                o["prefix_id"] = -1
        pre = _fast_column(objs, "prefix_id", -1, MAX_PREFIX_ID - 1, True, default=-1)
        pre = pre if np.any(pre >= 0) else None
    else:
        pre = None
    return t, ins, outs, pre


def _jsonl_slow(text: str, where: str):
    times, ins, outs, pres, any_prefix = [], [], [], [], False
    for line, raw in enumerate(text.split("\n"), start=1):
        s = raw.strip()
        if not s:
            continue
        if len(times) >= MAX_REQUESTS:
            raise _too_many(where, line)
        try:
            obj = json.loads(s)
        except (ValueError, RecursionError) as e:
            why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply or too long"
            raise TokenmathError(f"{where} line {line:,}: {_show(s)} is not JSON ({why})") from None
        if not isinstance(obj, dict):
            raise TokenmathError(f"{where} line {line:,}: {_show(s)} is a {type(obj).__name__}; expected an object "
                                 "like {\"arrival_s\": 0.12, \"input_tokens\": 1000, \"output_tokens\": 200}")
        extra = [k for k in obj if k not in JSONL_KEYS]
        if extra:
            raise TokenmathError(f"{where} line {line:,}: unknown key {_show(extra[0])}; expected "
                                 f"{', '.join(JSONL_KEYS)}")
        for k in JSONL_KEYS[:3]:
            if k not in obj:
                raise TokenmathError(f"{where} line {line:,}: the key {k} is missing")
        times.append(_json_number(where, line, "arrival_s", obj["arrival_s"], whole=False, lo=0, hi=1e12))
        ins.append(_json_number(where, line, "input_tokens", obj["input_tokens"], whole=True, lo=1,
                                hi=MAX_REQUEST_TOKENS))
        outs.append(_json_number(where, line, "output_tokens", obj["output_tokens"], whole=True, lo=1,
                                 hi=MAX_REQUEST_TOKENS))
        p = obj.get("prefix_id")
        if p is None:
            pres.append(-1)
        else:
            pres.append(_json_number(where, line, "prefix_id", p, whole=True, lo=-1, hi=MAX_PREFIX_ID - 1))
            any_prefix = any_prefix or pres[-1] >= 0
    return np.asarray(times, dtype=float), ins, outs, pres if any_prefix else None


def parse_jsonl(data: bytes, where: str = "trace", name: str = "", *, _fast: bool = True) -> Workload:
    """Our JSON-lines trace: one object per line with arrival_s (s, >= 0), input_tokens and
    output_tokens (whole, >= 1), optionally prefix_id (whole >= 0; -1 or null = none); blank lines
    skipped, other keys refused. Rows are sorted by arrival and re-based so the first is at 0."""
    text = _decode(data, where)
    if not text.strip():
        raise TokenmathError(f"{where} is empty; expected one JSON object per line with "
                             "arrival_s, input_tokens, output_tokens")
    try:
        if not _fast:
            raise _Unsure
        t, ins, outs, pre = _jsonl_fast(text)
    except _Unsure:
        t, ins, outs, pre = _jsonl_slow(text, where)
    return _build(where, t, ins, outs, pre, name)


def trace_from_bytes(data: bytes, where: str = "trace", *, format: str | None = None, name: str = "") -> Workload:
    """Parse trace bytes as `format` ("csv" = Azure, "jsonl"), or by content when None: a first
    non-blank line starting with '{' is JSON lines, anything else the Azure CSV."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if lines > MAX_REQUESTS + 1:  # refused before parsing: the row bound must not cost a parse of every row
        raise TokenmathError(f"{where} has {lines:,} lines; a trace holds at most {MAX_REQUESTS:,} requests"
                             " (one per line, after a header)")
    if format is None:
        first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        format = "jsonl" if first == b"{" else "csv"
    if format == "csv":
        return parse_azure_csv(data, where, name)
    if format == "jsonl":
        return parse_jsonl(data, where, name)
    raise TokenmathError(f"trace format = {format!r}; expected 'csv' (Azure LLM inference trace) or 'jsonl'")


def read_trace(path, *, format: str | None = None) -> Workload:
    """Read a trace file: .csv -> the Azure LLM inference trace, .jsonl / .ndjson -> our JSON lines,
    any other name by content (see trace_from_bytes). At most MAX_TRACE_BYTES bytes, MAX_REQUESTS rows."""
    p = Path(path)
    shown = str(path)[:200]
    where = f"trace {shown if shown.isprintable() else repr(shown)}"
    data = read_user_file(p, where, MAX_TRACE_BYTES, "a trace")
    if format is None:
        ext = p.suffix.lower()
        format = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(ext)
    return trace_from_bytes(data, where, format=format, name=p.stem)
