"""A request rate that varies over a day: what `fleet --rate-curve FILE` reads.

A rate curve is rows of (time_s, requests_per_s), times strictly increasing. Each row's rate holds
from its time until the next row's; the last row's holds for as long as the gap before it (so 24
hourly rows cover 24 h, 96 quarter-hour rows cover 24 h). The curve is read as one period of a
cycle that repeats (a day after a day): the interval after the last is the first.

Two formats, chosen by the file's first non-blank character ('{' = JSON lines, else CSV):

    time_s,requests_per_s          {"time_s": 0, "requests_per_s": 1200}
    0,1200                         {"time_s": 3600, "requests_per_s": 1100}
    3600,1100

`example:deepseek-v3-day` names the curve shipped with tokenmath (package data, examples/): DeepSeek's
published day. Read through the bounded reader (errors.read_user_text): at most MAX_CURVE_BYTES bytes and
MAX_CURVE_ROWS rows; every bad row is one sentence naming the file, the row and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TokenmathError, parse_json, read_user_text

MAX_CURVE_BYTES = 4_000_000  # a week of one-minute rows as JSON lines is ~0.5 MB
MAX_CURVE_ROWS = 20_160  # two weeks of one-minute intervals; each interval is O(pools) of work
MAX_CURVE_SPAN_S = 366 * 86_400.0  # a year: longer is capacity planning, not a fleet over a day
MAX_RATE = 1e7  # requests per second (fleet.MAX_RATE)
HEADER = ("time_s", "requests_per_s")


@dataclass(frozen=True)
class RateCurve:
    """Rows of a rate curve: start of each interval (s), its length (s), its rate (requests/s)."""

    time_s: np.ndarray
    duration_s: np.ndarray
    requests_per_s: np.ndarray
    name: str = ""

    @property
    def span_s(self) -> float:
        return float(np.sum(self.duration_s))

    @property
    def peak_requests_per_s(self) -> float:
        return float(np.max(self.requests_per_s))

    @property
    def mean_requests_per_s(self) -> float:
        """Time-weighted mean rate over the span."""
        return float(np.sum(self.requests_per_s * self.duration_s) / self.span_s)


def rate_curve(time_s, requests_per_s, *, name: str = "", where: str = "rate curve") -> RateCurve:
    """A RateCurve from two sequences (the same checks as a file's rows, naming row numbers from 1)."""
    t = [float(x) for x in np.asarray(time_s, float).reshape(-1)]
    r = [float(x) for x in np.asarray(requests_per_s, float).reshape(-1)]
    if len(t) != len(r):
        raise TokenmathError(f"{where}: {len(t)} times but {len(r)} rates; expected one rate per time")
    for i, (ti, ri) in enumerate(zip(t, r), 1):
        _check_row(where, i, ti, ri)
    return _build(t, r, where, name)


def _check_row(where: str, row: int, t: float, r: float) -> None:
    if not (math.isfinite(t) and 0 <= t <= MAX_CURVE_SPAN_S):
        raise TokenmathError(f"{where}, row {row}: time_s = {t!r}; expected seconds from 0 to {MAX_CURVE_SPAN_S:,.0f}")
    if not (math.isfinite(r) and 0 <= r <= MAX_RATE):
        raise TokenmathError(f"{where}, row {row}: requests_per_s = {r!r}; expected a number from 0 to {MAX_RATE:g}")


def _build(t: list[float], r: list[float], where: str, name: str) -> RateCurve:
    if len(t) < 2:
        raise TokenmathError(f"{where} has {len(t)} row{'s' if len(t) != 1 else ''}; expected at least 2 (the gap"
                             " between rows gives each interval's length)")
    if len(t) > MAX_CURVE_ROWS:
        raise TokenmathError(f"{where} has more than {MAX_CURVE_ROWS:,} rows; tokenmath reads at most that many")
    for i in range(1, len(t)):
        if not t[i] > t[i - 1]:
            raise TokenmathError(f"{where}, row {i + 1}: time_s = {t[i]:g} is not after the row before ({t[i - 1]:g});"
                                 " expected times in increasing order")
    ta = np.asarray(t, float)
    gaps = np.diff(ta)
    dur = np.append(gaps, gaps[-1])
    if float(ta[-1] + dur[-1] - ta[0]) > MAX_CURVE_SPAN_S:
        raise TokenmathError(f"{where} spans {float(ta[-1] + dur[-1] - ta[0]):,.0f} s; expected at most a year"
                             f" ({MAX_CURVE_SPAN_S:,.0f} s)")
    ra = np.asarray(r, float)
    if not ra.max() > 0:
        raise TokenmathError(f"{where}: every requests_per_s is 0; expected a positive rate somewhere")
    return RateCurve(ta, dur, ra, name)


def _number(text, where: str, row: int, key: str) -> float:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise TokenmathError(f"{where}, row {row}: {key} = {str(text)[:40]!r}; expected a number")
    try:
        x = float(text)
    except (TypeError, ValueError):
        shown = str(text)[:40]
        raise TokenmathError(f"{where}, row {row}: {key} = {shown!r}; expected a number") from None
    return x


def parse_rate_curve(text: str, where: str, name: str = "") -> RateCurve:
    """A rate curve from text: CSV with the header `time_s,requests_per_s`, or JSON lines of
    {"time_s": .., "requests_per_s": ..}. Rows are numbered from 1 after the header (CSV), or by
    record (JSON lines); blank lines and lines starting with '#' are skipped."""
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise TokenmathError(f"{where} is empty; expected a header `time_s,requests_per_s` and rows, or JSON lines")
    t, r = [], []
    if lines[0][1].startswith("{"):
        for row, (i, ln) in enumerate(lines, 1):
            if row > MAX_CURVE_ROWS:
                raise TokenmathError(f"{where} has more than {MAX_CURVE_ROWS:,} rows; tokenmath reads at most that many")
            d = parse_json(ln, f"{where}, line {i}", max_depth=2, max_items=64)
            if not isinstance(d, dict) or any(k not in d for k in HEADER):
                raise TokenmathError(f"{where}, line {i}: expected an object with keys 'time_s' and 'requests_per_s'")
            tv, rv = (_number(d[k], where, row, k) for k in HEADER)
            _check_row(where, row, tv, rv)
            t.append(tv)
            r.append(rv)
    else:
        head = [c.strip().lower() for c in lines[0][1].split(",")]
        if sorted(head) != sorted(HEADER):
            shown = lines[0][1][:60]
            raise TokenmathError(f"{where}: the header is {shown!r}; expected `time_s,requests_per_s`")
        it, ir = head.index("time_s"), head.index("requests_per_s")
        for row, (i, ln) in enumerate(lines[1:], 1):
            if row > MAX_CURVE_ROWS:
                raise TokenmathError(f"{where} has more than {MAX_CURVE_ROWS:,} rows; tokenmath reads at most that many")
            cells = [c.strip() for c in ln.split(",")]
            if len(cells) != 2:
                raise TokenmathError(f"{where}, row {row} (line {i}) has {len(cells)} values; expected 2"
                                     " (time_s, requests_per_s)")
            tv, rv = _number(cells[it], where, row, "time_s"), _number(cells[ir], where, row, "requests_per_s")
            _check_row(where, row, tv, rv)
            t.append(tv)
            r.append(rv)
    return _build(t, r, where, name)


EXAMPLE_PREFIX = "example:"


def read_rate_curve(path) -> RateCurve:
    """Read a rate-curve file (module docstring), bounded in bytes and rows. `example:NAME` reads a
    curve shipped with tokenmath (example_path)."""
    if isinstance(path, str) and path.startswith(EXAMPLE_PREFIX):
        path = example_path(path[len(EXAMPLE_PREFIX):])
    shown = str(path)[:200]
    where = f"rate curve {shown if shown.isprintable() else repr(shown)}"
    text = read_user_text(path, where, MAX_CURVE_BYTES, "a rate curve", "CSV or JSON lines")
    return parse_rate_curve(text, where, Path(path).stem)


def example_path(name: str = "deepseek-v3-day") -> Path:
    """A rate curve shipped with tokenmath (package data, tokenmath/examples/NAME.csv)."""
    root = Path(__file__).resolve().parent / "examples"
    known = sorted(x.stem for x in root.glob("*.csv"))
    if name not in known:
        raise TokenmathError(f"no example rate curve {name[:60]!r}; shipped: {', '.join(known)}")
    return root / f"{name}.csv"


__all__ = ["RateCurve", "rate_curve", "parse_rate_curve", "read_rate_curve", "example_path", "MAX_CURVE_ROWS",
           "MAX_CURVE_BYTES"]
