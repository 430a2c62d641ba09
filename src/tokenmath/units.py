"""Units at the edge: dtype byte widths and a small parser for "3.35 TB/s", "80GB", "200k".

Inside tokenmath every number is in SI base units (bytes, seconds, FLOP, dollars) and the unit is
in the name (`hbm_bytes_per_s`). This module turns what people type into those numbers, and back.
Decimal prefixes (k, M, G, T, P, E = 10^3n) unless a binary one is written (Ki, Mi, Gi, Ti = 2^10n).

Why not pint: bytes are dimensionless there and "200k" would parse as 200 Boltzmann constants; the
few units this tool needs fit in a table.
"""

from __future__ import annotations

import math
import re

from .errors import TokenmathError

# Bytes per stored element. Block-scaled formats include their scales:
# MXFP4 = 4-bit E2M1 values + one 8-bit E8M0 scale per 32 (OCP MX spec v1.0) -> 4.25 bit;
# NVFP4 = 4-bit values + one FP8 E4M3 scale per 16 (NVIDIA Blackwell docs) -> 4.5 bit.
# Plain "fp4"/"int4" is the lecture's half byte with scales ignored.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,
    "int4": 0.5,
    "mxfp4": 4.25 / 8,
    "nvfp4": 4.5 / 8,
}

# Which datasheet FLOP/s line a compute dtype runs at.
COMPUTE_CLASS: dict[str, str] = {
    "fp32": "bf16",  # tensor-core math on fp32 master weights still runs bf16 matmuls
    "bf16": "bf16",
    "fp16": "bf16",
    "fp8": "fp8",
    "int8": "int8",
    "fp4": "fp4",
    "int4": "fp4",
    "mxfp4": "fp4",
    "nvfp4": "fp4",
}
# When a chip lacks a compute class, matmuls run at the next wider one (fp4 weights on an H100
# are up-converted and multiplied in fp8).
WIDER: dict[str, str | None] = {"fp4": "fp8", "int8": "fp8", "fp8": "bf16", "bf16": None}

HF_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a dtype name ("bf16", "fp8", "mxfp4", ...)."""
    key = dtype.lower()
    if key not in DTYPE_BYTES:
        raise TokenmathError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BYTES)}"
        )
    return DTYPE_BYTES[key]


def check_dtype(dtype: str | None) -> str | None:
    if dtype is None:
        return None
    dtype_bytes(dtype)
    return dtype.lower()


_PREFIX = {
    "": 1.0,
    "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
    "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9,
}

# unit spellings per kind -> factor to SI
_UNITS: dict[str, dict[str, float]] = {
    "bytes": {"B": 1.0, "byte": 1.0, "bytes": 1.0, "bit": 1 / 8, "b": 1 / 8},
    "bytes_per_s": {"B/s": 1.0, "Bps": 1.0, "bytes/s": 1.0, "bit/s": 1 / 8, "b/s": 1 / 8, "bps": 1 / 8},
    "flops_per_s": {"FLOP/s": 1.0, "FLOPS": 1.0, "flop/s": 1.0, "FLOPs": 1.0, "OP/s": 1.0, "OPS": 1.0},
    "seconds": {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "day": 86400.0, "days": 86400.0},
    "watts": {"W": 1.0},
    "count": {"": 1.0, "tokens": 1.0, "token": 1.0, "params": 1.0, "chips": 1.0},
    "usd": {"": 1.0, "$": 1.0, "USD": 1.0, "usd": 1.0},
}

# ASCII digits only: Python's \\d also matches "１２" (full-width) and other scripts' digits, which
# would silently parse as 12.
_NUM = re.compile(r"^\s*\$?\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*(.*?)\s*$", re.ASCII)
_MAX_TEXT = 100  # longer strings are not numbers anyone typed


def parse_quantity(value: float | int | str, kind: str, *, what: str = "value") -> float:
    """Parse a number with optional prefix and unit into SI base units.

    >>> parse_quantity("3.35 TB/s", "bytes_per_s")
    3350000000000.0
    >>> parse_quantity("200k", "count")
    200000.0
    """
    if kind not in _UNITS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(value, bool):
        raise TokenmathError(f"{what} = {value!r} is a boolean; expected a number")
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # an int beyond float range
            raise TokenmathError(f"{what} = {value!r} is too large to be a number tokenmath can compute with") from None
    else:
        text = str(value)
        if len(text) > _MAX_TEXT:
            raise TokenmathError(f"{what} = {text[:20]!r}... ({len(text)} characters) is not a number with a unit")
        if text.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
            raise TokenmathError(f"{what} = {text!r} is not a finite number")
        if any(ch.isdigit() and not ch.isascii() for ch in text):
            raise TokenmathError(f"{what} = {text!r} uses non-ASCII digits; write the number with 0-9")
        m = _NUM.match(text)
        if not m:
            raise TokenmathError(f"{what} = {value!r} is not a number with a unit")
        number, unit = float(m.group(1)), m.group(2).replace(" ", "")
        factor = _unit_factor(unit, kind)
        if factor is None:
            expected = ", ".join(repr(u) for u in _UNITS[kind] if u) or "a plain number"
            raise TokenmathError(
                f"{what} = {value!r} has unit {unit!r}; expected a prefix (k, M, G, T, Gi, ...) "
                f"and one of {expected}"
            )
        out = number * factor
    if not math.isfinite(out):
        raise TokenmathError(f"{what} = {value!r} is not a finite number")
    return out


def _fmt_bound(x: float) -> str:
    return f"{x:,.0f}" if abs(x) < 1e13 and float(x).is_integer() else f"{x:.3g}"


def parse_bounded(value: float | int | str, kind: str = "count", *, what: str, low: float = 0.0,
                  low_inclusive: bool = False, high: float | None = None, whole: bool = False,
                  meaning: str = "") -> float:
    """The one validated number parser for user input: parse_quantity (ASCII digits, finite, a known
    unit), then a whole number if `whole`, then low < x (or low <= x) and x <= high. Every failure is
    one sentence naming `what`, the value and the bound; `meaning` says what the number counts
    ("sequences per replica") so the bound reads as physics, not as an arbitrary limit.

    >>> parse_bounded("8k", what="--batch", low=1, low_inclusive=True, high=1e7, whole=True)
    8000.0
    """
    out = parse_quantity(value, kind, what=what)
    of = f" ({meaning})" if meaning else ""
    if whole and not float(out).is_integer():
        raise TokenmathError(f"{what} = {value!r} must be a whole number{of}")
    if out < low or (out == low and not low_inclusive):
        raise TokenmathError(f"{what} = {value!r} must be {'>=' if low_inclusive else '>'} {_fmt_bound(low)}{of}")
    if high is not None and out > high:
        raise TokenmathError(f"{what} = {value!r} must be at most {_fmt_bound(high)}{of}")
    return out


def _unit_factor(unit: str, kind: str) -> float | None:
    table = _UNITS[kind]
    if unit in table:
        return table[unit]
    # longest prefix first so "Gi" wins over "G"
    for prefix in sorted(_PREFIX, key=len, reverse=True):
        if prefix and unit.startswith(prefix):
            rest = unit[len(prefix):]
            if rest in table:
                return _PREFIX[prefix] * table[rest]
    return None


def parse_positive(value: float | int | str, kind: str, *, what: str, allow_zero: bool = False) -> float:
    """parse_quantity, then insist on > 0 (or >= 0)."""
    out = parse_quantity(value, kind, what=what)
    if out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise TokenmathError(f"{what} = {value!r} must be {bound}")
    return out


# ---- formatting (used by report.py; lives here so every surface writes units the same way) ----

_SI = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")]


def _rounded(value: float, digits: int) -> float:
    """`value` at `digits` significant digits, to choose its unit by (the value itself is written
    unrounded in it): a value just under a unit's boundary that rounds up to it takes the larger unit."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def sig(value: float, digits: int = 3) -> str:
    """A plain number at `digits` significant digits with thousands separators, never in e-notation
    from 1e-4 up: 146,200 (not "1.462e+05"), 2,983, 0.0168, 2.43."""
    if value is None:
        return "n/a"
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else f"{v:g}"  # never a signed zero
    r = float(f"{v:.{digits}g}")
    return f"{r:,.0f}" if abs(r) >= 10 ** digits else f"{r:,.{digits}g}"


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """1.23e12, 'B/s' -> '1.23 TB/s' (decimal prefixes)."""
    if value is None:
        return "n/a"
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    r = abs(_rounded(value, digits))  # the unit from the rounded value: 999.96e9 is 1 T, not "1e+03 G"
    for scale, prefix in _SI:
        if r >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}".strip()
    return f"{value:.{digits}g} {unit}".strip()


def count(value: float, digits: int = 4) -> str:
    """Counts (parameters, tokens) in words people use: 671.0 billion, 37.55 billion, 128 thousand."""
    if value is None:
        return "n/a"
    r = abs(_rounded(value, digits))
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if r >= scale:
            return f"{value / scale:.{digits}g} {word}"
    return f"{value:,.0f}"


def seconds(value: float, digits: int = 3) -> str:
    """A duration in the most readable unit."""
    if value is None:
        return "n/a"
    a = abs(_rounded(value, digits))  # the unit from the rounded value: 0.99996 s is 1 s, not "1e+03 ms"
    if a >= 86400 * 2:
        return f"{value / 86400:.{digits}g} days"
    if a >= 3600:
        return f"{value / 3600:.{digits}g} h"
    if a >= 60:
        return f"{value / 60:.{digits}g} min"
    if a >= 1:
        return f"{value:.{digits}g} s"
    if a >= 1e-3:
        return f"{value * 1e3:.{digits}g} ms"
    if a >= 1e-6:
        return f"{value * 1e6:.{digits}g} µs"
    if a < 5e-13:  # below a picosecond (a fitted term at its bound of 0): nothing a clock resolves
        return "0 ns"
    return f"{value * 1e9:.{digits}g} ns"
