"""units.py: the edge parser and dtype widths."""

import numpy as np
import pytest

from tokenmath import TokenmathError
from tokenmath.units import count, dtype_bytes, parse_positive, parse_quantity, seconds, si


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("3.35 TB/s", "bytes_per_s", 3.35e12),
        ("80GB", "bytes", 80e9),
        ("80 GiB", "bytes", 80 * 2**30),
        ("200k", "count", 200_000),
        ("1.5M", "count", 1.5e6),
        ("989 TFLOP/s", "flops_per_s", 989e12),
        ("400 Gbit/s", "bytes_per_s", 50e9),
        ("700 W", "watts", 700),
        ("15 ms", "seconds", 0.015),
        ("$2.5", "usd", 2.5),
        (3.35e12, "bytes_per_s", 3.35e12),
    ],
)
def test_parse_quantity(text, kind, expected):
    """Decimal prefixes unless a binary one is written (DESIGN.md units convention); exact to 1e-12."""
    assert parse_quantity(text, kind) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text, kind", [("80 GX", "bytes"), ("fast", "count"), ("3 TB/s", "bytes"), ("nan", "count")])
def test_parse_rejects_with_one_sentence(text, kind):
    with pytest.raises(TokenmathError) as e:
        parse_quantity(text, kind, what="hbm_bytes")
    assert "hbm_bytes" in str(e.value) and "\n" not in str(e.value)


def test_parse_positive_rejects_zero_and_negative():
    with pytest.raises(TokenmathError, match="must be > 0"):
        parse_positive("0", "count", what="--batch")
    with pytest.raises(TokenmathError, match="must be >= 0"):
        parse_positive("-1", "count", what="--context", allow_zero=True)


def test_dtype_bytes_include_block_scales():
    """OCP Microscaling spec v1.0: MXFP4 = 4-bit elements + one 8-bit scale per 32 -> 4.25 bit;
    NVIDIA NVFP4 = 4-bit + one FP8 scale per 16 -> 4.5 bit. The lecture's FP4 is half a byte."""
    assert dtype_bytes("bf16") == 2
    assert dtype_bytes("fp8") == 1
    assert dtype_bytes("fp4") == 0.5
    assert dtype_bytes("mxfp4") == pytest.approx(4.25 / 8, rel=0)
    assert dtype_bytes("nvfp4") == pytest.approx(4.5 / 8, rel=0)
    with pytest.raises(TokenmathError, match="unknown dtype 'fp5'"):
        dtype_bytes("fp5")


def test_formatting():
    assert si(3.35e12, "B/s") == "3.35 TB/s"
    assert seconds(0.0239) == "23.9 ms"
    assert count(671_026_404_352) == "671 billion"


def test_a_value_that_rounds_up_to_the_next_unit_is_written_in_it():
    """999.6 ms at three digits is 1 s (a step the CLI printed as 'attention 1e+03 ms'), 999.96
    million is 1 billion; values clear of a boundary keep their unit."""
    assert seconds(0.99964) == "1 s" and seconds(0.0009996) == "1 ms" and seconds(59.99) == "1 min"
    assert si(999.6e9, "B") == "1 TB" and count(999.96e6) == "1 billion"
    assert seconds(0.9986) == "999 ms" and si(998.4e9, "B") == "998 GB" and seconds(1.5e-3) == "1.5 ms"
    assert "e+" not in " ".join(seconds(x) + si(x * 1e9, "B") for x in np.geomspace(1e-9, 1e6, 2001))


def test_sig_writes_plain_numbers_with_separators():
    """`units.sig`, the CLI's number format where a figure has no unit prefix (tokens/s per MW,
    prefixes held): 146,158 at four digits is 146,200, not '1.462e+05'; small values keep their digits."""
    from tokenmath.units import sig

    assert sig(146158.3, 4) == "146,200" and sig(29830.0, 4) == "29,830" and sig(2431000, 4) == "2,431,000"
    assert sig(0.01684, 3) == "0.0168" and sig(2.431, 3) == "2.43" and sig(999.6, 3) == "1,000"
    assert sig(0) == "0" and sig(-0.0) == "0" and sig(None) == "n/a" and "e" not in sig(7.3e11, 4)
