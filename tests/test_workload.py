"""Workloads for fleet planning (issue 14): generators, trace readers, statistics.

The real-trace checks use the first 200 rows of the Azure LLM inference traces 2023 (Patel et al.,
"Splitwise", ISCA 2024; CC-BY), copied unchanged (CRLF line ends) from Azure/AzurePublicDataset at
commit b469a113cedca53ddc3bdea71a143dc4b7d8700c, data/AzureLLMInferenceTrace_code.csv and
data/AzureLLMInferenceTrace_conv.csv, into tests/data/traces/*_head200.csv.
"""

import csv
import datetime as dt
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenmath.errors import TokenmathError
from tokenmath.workload import (
    MAX_CONTEXT_TOKENS,
    MAX_REQUESTS,
    MAX_TRACE_BYTES,
    Workload,
    head,
    parse_azure_csv,
    parse_jsonl,
    poisson,
    read_trace,
    scale_rate,
    stats,
    to_jsonl,
    trace_from_bytes,
)

TRACES = Path(__file__).parent / "data" / "traces"
CODE = TRACES / "AzureLLMInferenceTrace_code_head200.csv"
CONV = TRACES / "AzureLLMInferenceTrace_conv_head200.csv"
EXAMPLE = TRACES / "example.jsonl"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _one_sentence(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _plain_csv_pass(path: Path):
    """Independent of the reader: csv module + datetime.strptime (truncating the 7th fractional
    digit, < 1 µs): count, n / (last - first) seconds, mean context and generated tokens."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ts = [dt.datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f") for r in rows]
    span = (max(ts) - min(ts)).total_seconds()
    ins = [int(r["ContextTokens"]) for r in rows]
    outs = [int(r["GeneratedTokens"]) for r in rows]
    return len(rows), len(rows) / span, sum(ins) / len(ins), sum(outs) / len(outs), span


# ---- the real Azure trace ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CODE, CONV], ids=["code", "conv"])
def test_azure_trace_count_rate_and_means(path):
    """Azure LLM inference trace 2023, first 200 rows (commit b469a11, see the module docstring):
    the reader's count, rate and length means equal a plain csv-module pass; tolerance 1e-6
    relative on the rate (the 7th fractional digit the plain pass drops), exact on the means."""
    n, rate, mean_in, mean_out, span = _plain_csv_pass(path)
    w = read_trace(path)
    s = stats(w)
    assert s.requests == n == 200
    assert s.duration_s == pytest.approx(span, rel=1e-6)
    assert s.rate_per_s == pytest.approx(rate, rel=1e-6)
    assert s.input_tokens_mean == pytest.approx(mean_in, rel=1e-12)
    assert s.output_tokens_mean == pytest.approx(mean_out, rel=1e-12)
    assert w.arrival_s[0] == 0 and np.all(np.diff(w.arrival_s) >= 0)
    assert s.prefix_share == 0 and w.prefix_id is None


def test_azure_code_head_numbers():
    """The numbers docs/workload.md quotes for the 200-row code sample (Azure trace 2023): 200
    requests over 199.09 s = 1.005 requests/s, 2,071 tokens in and 24.5 out on average."""
    s = stats(read_trace(CODE))
    assert s.duration_s == pytest.approx(199.089585, abs=1e-6)
    assert s.rate_per_s == pytest.approx(1.0046, abs=1e-4)
    assert s.input_tokens_mean == pytest.approx(2071.075)
    assert s.output_tokens_mean == pytest.approx(24.535)
    assert s.input_tokens_max == 7436 and s.output_tokens_max == 697


def test_unsorted_rows_are_sorted_and_rebased():
    rows = CODE.read_text().splitlines()[1:6]
    data = (HEADER + "\n".join(reversed(rows)) + "\n").encode()
    w = parse_azure_csv(data, "trace x.csv")
    ref = parse_azure_csv((HEADER + "\n".join(rows) + "\n").encode(), "trace y.csv")
    assert np.array_equal(w.arrival_s, ref.arrival_s)
    assert np.array_equal(w.input_tokens, ref.input_tokens)
    assert np.array_equal(w.output_tokens, ref.output_tokens)


def test_timestamp_precision_zone_and_columns():
    data = ("GeneratedTokens, timestamp ,ContextTokens,Extra\r\n"
            "5,2023-11-16 23:59:59.9999999,10,a\r\n"
            "7,2023-11-17T00:00:00.0000001Z,20,b\r\n"
            "9,2023-11-17 01:00:00+01:00,30,c\r\n").encode()
    w = parse_azure_csv(data)
    # 01:00+01:00 is midnight UTC, 1e-7 s after the first row and 1e-7 s before the second
    assert w.arrival_s.tolist() == pytest.approx([0.0, 1e-7, 2e-7], abs=1e-12)
    assert w.input_tokens.tolist() == [10, 30, 20] and w.output_tokens.tolist() == [5, 9, 7]


# ---- JSON lines ---------------------------------------------------------------------------------

def test_jsonl_example_and_prefix_shares():
    w = read_trace(EXAMPLE)
    s = stats(w)
    assert s.requests == 10 and s.duration_s == 2.5 and s.rate_per_s == pytest.approx(4.0)
    assert s.prefix_share == pytest.approx(0.6)  # ids 1 ×3, 3 ×3
    assert s.prefix_reuse_share == pytest.approx(0.4)  # all but the first of each id
    assert w.prefix_id.tolist()[:3] == [1, 3, -1]


def test_jsonl_roundtrip_and_content_sniffing(tmp_path):
    w = poisson(5, 20, 800, 100, lengths="lognormal", seed=3)
    p = tmp_path / "trace.txt"
    p.write_text(to_jsonl(w))
    back = read_trace(p)  # no known extension: sniffed as JSON lines
    assert np.allclose(back.arrival_s, w.arrival_s - w.arrival_s[0])
    assert np.array_equal(back.input_tokens, w.input_tokens)
    q = tmp_path / "azure.dat"
    q.write_bytes(CODE.read_bytes())
    assert len(read_trace(q)) == 200  # sniffed as CSV


def test_jsonl_unsorted_rebased():
    data = b'{"arrival_s": 5, "input_tokens": 1, "output_tokens": 2}\n{"arrival_s": 3.5, "input_tokens": 4, "output_tokens": 5}\n'
    w = parse_jsonl(data)
    assert w.arrival_s.tolist() == [0.0, 1.5] and w.input_tokens.tolist() == [4, 1]


# ---- malformed input: one sentence naming file, line, value ------------------------------------

BAD_CSV = [
    ("", "is empty"),
    ("\n\n", "is empty"),
    (HEADER, "no requests"),
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,3\n", "lacks the column GeneratedTokens"),
    ("a,b,c\n1,2,3\n", "lacks the column TIMESTAMP"),
    (HEADER + "2023-11-16 18:15:46.6805900,abc,3\n", "line 2: ContextTokens = 'abc' is not a whole number"),
    (HEADER + "2023-11-16 18:15:46.6805900,12.5,3\n", "ContextTokens = '12.5' is not a whole number"),
    (HEADER + "2023-11-16 18:15:46.6805900,-4,3\n", "line 2: ContextTokens = '-4' is not a whole number"),
    (HEADER + "2023-11-16 18:15:46.6805900,4,0\n", "line 2: GeneratedTokens = 0 must be between 1"),
    (HEADER + "2023-11-16 18:15:46.6805900,4,nan\n", "GeneratedTokens = 'nan' is not a whole number"),
    (HEADER + "2023-11-16 18:15:46.6805900,4,1\n2023-02-30 00:00:00,4,1\n", "line 3: TIMESTAMP = '2023-02-30 00:00:00'"),
    (HEADER + "yesterday,4,1\n", "TIMESTAMP = 'yesterday' is not a date-time"),
    (HEADER + "2023-11-16 25:00:00,4,1\n", "no such time of day"),
    (HEADER + "2023-11-16 18:15:46\n", "line 2: '2023-11-16 18:15:46' has 1 field(s); expected 3"),
    (HEADER + "2023-11-16 18:15:46,4,999999999999\n", "must be between 1 and 100,000,000 tokens"),
]


@pytest.mark.parametrize("text, expect", BAD_CSV)
def test_bad_csv_one_sentence(text, expect, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TokenmathError) as e:
        read_trace(p)
    msg = _one_sentence(e.value)
    assert expect in msg and "bad.csv" in msg, msg


BAD_JSONL = [
    ('{"arrival_s": 0, "input_tokens": 1}', "line 1: the key output_tokens is missing"),
    ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 0}', "output_tokens = 0 must be between 1"),
    ('{"arrival_s": -1, "input_tokens": 1, "output_tokens": 1}', "arrival_s = -1 must be between 0"),
    ('{"arrival_s": NaN, "input_tokens": 1, "output_tokens": 1}', "arrival_s = nan is not a finite number"),
    ('{"arrival_s": 0, "input_tokens": "9", "output_tokens": 1}', "input_tokens = '9' is a str"),
    ('{"arrival_s": 0, "input_tokens": true, "output_tokens": 1}', "input_tokens = True is a bool"),
    ('{"arrival_s": 0, "input_tokens": 1.5, "output_tokens": 1}', "input_tokens = 1.5 is not a whole number"),
    ('{"arrival_s": 0, "input_token": 1, "output_tokens": 1}', "unknown key 'input_token'"),
    ('\n{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n[1, 2]', "line 3: '[1, 2]' is a list"),
    ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1', "line 1:"),
    ('[' * 100000, "is not JSON"),
    ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "prefix_id": -2}', "prefix_id = -2 must be between -1"),
    ('{"arrival_s": 1e400, "input_tokens": 1, "output_tokens": 1}', "arrival_s = inf is not a finite"),
    ('{"arrival_s": 0, "input_tokens": ' + "9" * 5000 + ', "output_tokens": 1}', "line 1:"),
    ('{"arrival_s": 1' + "0" * 400 + ', "input_tokens": 1, "output_tokens": 1}', "arrival_s = 1000000"),
    ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "prefix_id": 4611686018427387904.0}',
     "prefix_id = 4.611686018427388e+18 must be between -1"),
]


@pytest.mark.parametrize("text, expect", BAD_JSONL)
def test_bad_jsonl_one_sentence(text, expect, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(text)
    with pytest.raises(TokenmathError) as e:
        read_trace(p)
    msg = _one_sentence(e.value)
    assert expect in msg and "bad.jsonl" in msg, msg


def test_not_utf8_names_the_line():
    with pytest.raises(TokenmathError, match=r"line 2: byte 0xff is not UTF-8"):
        parse_azure_csv(HEADER.encode() + b"\xff,1,2\n", "trace t.csv")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(TokenmathError, match="does not exist"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TokenmathError, match="trace format = 'xml'"):
        read_trace(EXAMPLE, format="xml")


def test_row_limit_names_the_line(monkeypatch):
    import tokenmath.workload as wl

    monkeypatch.setattr(wl, "MAX_REQUESTS", 3)
    rows = "".join(f"2023-11-16 18:15:4{i},10,2\n" for i in range(5))
    with pytest.raises(TokenmathError, match=r"line 5: more than 3 requests"):
        parse_azure_csv((HEADER + rows).encode(), "trace t.csv")
    lines = "".join('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n' for _ in range(5))
    with pytest.raises(TokenmathError, match=r"line 4: more than 3 requests"):
        parse_jsonl(lines.encode(), "trace t.jsonl")


def test_size_limit_is_stated(tmp_path, monkeypatch):
    import tokenmath.workload as wl

    monkeypatch.setattr(wl, "MAX_TRACE_BYTES", 100)
    p = tmp_path / "big.csv"
    p.write_bytes(CODE.read_bytes())
    with pytest.raises(TokenmathError, match=r"big.csv is [\d,]+ bytes; a trace is at most 100 bytes"):
        read_trace(p)
    assert MAX_TRACE_BYTES >= 100_000_000 and MAX_REQUESTS == 1_000_000


# ---- fuzz: only TokenmathError or a valid Workload, in bounded time ----------------------------

def _valid(w: Workload):
    assert len(w) >= 1 and w.arrival_s[0] == 0 and np.all(np.diff(w.arrival_s) >= 0)
    assert np.all(np.isfinite(w.arrival_s))
    assert w.input_tokens.min() >= 1 and w.output_tokens.min() >= 1
    s = stats(w)
    assert s.requests == len(w) and (s.rate_per_s is None or math.isfinite(s.rate_per_s))


def _same(a: Workload, b: Workload):
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.input_tokens, b.input_tokens)
    assert np.array_equal(a.output_tokens, b.output_tokens)
    assert (a.prefix_id is None) == (b.prefix_id is None)
    assert a.prefix_id is None or np.array_equal(a.prefix_id, b.prefix_id)


def _try(data: bytes, fmt):
    """One TokenmathError sentence or a valid Workload, within 2 s; and the vectorised fast path
    gives exactly what the row-by-row reference path gives (or hands over to it)."""
    t0 = time.perf_counter()
    try:
        w = trace_from_bytes(data, "trace fuzz", format=fmt)
    except TokenmathError as e:
        assert "trace fuzz" in _one_sentence(e)
        w = None
    else:
        _valid(w)
    assert time.perf_counter() - t0 < 2.0
    if fmt is not None:
        parse = parse_azure_csv if fmt == "csv" else parse_jsonl
        try:
            ref = parse(data, "trace fuzz", _fast=False)
        except TokenmathError:
            assert w is None
        else:
            _same(w, ref)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([None, "csv", "jsonl"]))
def test_fuzz_random_bytes(data, fmt):
    _try(data, fmt)


_field = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes(min_value=dt.datetime(1, 1, 1)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f") + "0"),
)


@FUZZ
@given(st.lists(st.lists(_field, min_size=0, max_size=4), max_size=12))
def test_fuzz_random_csv_rows(rows):
    text = HEADER + "\n".join(",".join(f.replace("\n", " ") for f in r) for r in rows)
    _try(text.encode(), "csv")


_good_row = st.tuples(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 1, 1)),
    st.integers(1, 10**5), st.integers(1, 10**4),
).map(lambda r: f"{r[0].strftime('%Y-%m-%d %H:%M:%S.%f')}0,{r[1]},{r[2]}")


@FUZZ
@given(st.lists(st.one_of(_good_row, _good_row, _good_row, st.text(max_size=30)), min_size=1, max_size=12))
def test_fuzz_mostly_valid_csv_rows(rows):
    """Mostly well-formed Azure rows (fast path) with the odd broken one (reference path)."""
    _try((HEADER + "\n".join(r.replace("\n", " ").replace("\r", " ") for r in rows)).encode(), "csv")


_jval = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**10), st.integers(), st.floats(),
                  st.text(max_size=5))


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["arrival_s", "input_tokens", "output_tokens", "prefix_id", "x"]),
                                _jval, max_size=5), max_size=10))
def test_fuzz_random_jsonl_rows(objs):
    _try("\n".join(json.dumps(o) for o in objs).encode(), "jsonl")


_good_obj = st.fixed_dictionaries(
    {"arrival_s": st.floats(0, 1e6), "input_tokens": st.integers(1, 10**6), "output_tokens": st.integers(1, 10**4)},
    optional={"prefix_id": st.one_of(st.none(), st.integers(-1, 50), st.floats(-2, 60))},
)


@FUZZ
@given(st.lists(st.one_of(_good_obj, _good_obj, st.dictionaries(st.text(max_size=3), _jval, max_size=2)),
                min_size=1, max_size=10))
def test_fuzz_mostly_valid_jsonl_rows(objs):
    _try("\n".join(json.dumps(o) for o in objs).encode(), "jsonl")


# ---- generators ---------------------------------------------------------------------------------

def test_poisson_fixed():
    w = poisson(50, 200, 1000, 200, seed=1)
    s = stats(w)
    assert s.rate_per_s == pytest.approx(50, rel=0.02)  # sd of N/T is sqrt(10000)/200 = 0.5/s = 1 %
    assert set(w.input_tokens.tolist()) == {1000} and set(w.output_tokens.tolist()) == {200}
    gaps = np.diff(w.arrival_s)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03) and gaps.std() == pytest.approx(1 / 50, rel=0.05)
    assert w.duration_s == 200 and w.arrival_s.max() < 200
    assert np.array_equal(poisson(50, 200, 1000, 200, seed=1).arrival_s, w.arrival_s)  # seeded


@pytest.mark.parametrize("kind", ["lognormal", "exponential"])
def test_poisson_lengths_have_the_given_mean(kind):
    """The given value is the mean of the distribution: sample means within 2 % at 20k requests
    (lognormal sigma 1: sd of the mean = sqrt(e-1)/sqrt(n) = 0.9 %)."""
    w = poisson(100, 200, 2000, 30, lengths=kind, seed=2)
    s = stats(w)
    assert s.input_tokens_mean == pytest.approx(2000, rel=0.03)
    assert s.output_tokens_mean == pytest.approx(30, rel=0.03)
    if kind == "exponential":  # median of an exponential = mean · ln 2
        assert s.input_tokens_p50 == pytest.approx(2000 * math.log(2), rel=0.03)
    else:  # median of the lognormal = mean · exp(-sigma²/2)
        assert s.input_tokens_p50 == pytest.approx(2000 * math.exp(-0.5), rel=0.03)
        logs = np.log(w.input_tokens)
        assert logs.std() == pytest.approx(1.0, rel=0.03)


def test_rounding_floor_and_cap():
    w = poisson(100, 100, 1.0, 1.0, lengths="exponential", seed=4)
    assert w.input_tokens.min() == 1  # never 0
    assert stats(w).input_tokens_mean == pytest.approx(1.35, rel=0.03)  # the floor at 1 raises a mean of 1
    w = poisson(100, 100, 500, 50, lengths="lognormal", sigma=3, max_tokens=1000, seed=4)
    assert w.input_tokens.max() == 1000
    assert MAX_CONTEXT_TOKENS == 2**20


@pytest.mark.parametrize("kwargs, expect", [
    (dict(rate_per_s=0, duration_s=10), "rate_per_s = 0 must be a positive number"),
    (dict(rate_per_s=-1, duration_s=10), "rate_per_s = -1"),
    (dict(rate_per_s=float("nan"), duration_s=10), "rate_per_s = nan"),
    (dict(rate_per_s=1, duration_s=float("inf")), "duration_s = inf"),
    (dict(rate_per_s=1e6, duration_s=10), "at most 1,000,000"),
    (dict(rate_per_s=1e-9, duration_s=1), "no request arrives"),
    (dict(rate_per_s=1, duration_s=10, lengths="normal"), "lengths = 'normal'"),
    (dict(rate_per_s=1, duration_s=10, input_tokens=0.5), "input_tokens = 0.5 must be between 1"),
    (dict(rate_per_s=1, duration_s=10, input_tokens=10.5), "whole number of tokens with lengths='fixed'"),
    (dict(rate_per_s=1, duration_s=10, output_tokens=2e6), "maximum context 1,048,576"),
    (dict(rate_per_s=1, duration_s=10, lengths="lognormal", sigma=0), "sigma = 0"),
    (dict(rate_per_s=1, duration_s=10, max_tokens=0), "max_tokens = 0"),
])
def test_poisson_bad_input(kwargs, expect):
    with pytest.raises(TokenmathError) as e:
        poisson(**kwargs)
    assert expect in _one_sentence(e.value)


# ---- reshaping ----------------------------------------------------------------------------------

def test_scale_rate_and_head():
    w = read_trace(CODE)
    s = stats(w)
    fast = scale_rate(w, 4)
    assert stats(fast).rate_per_s == pytest.approx(4 * s.rate_per_s)
    assert np.array_equal(fast.input_tokens, w.input_tokens)
    h = head(w, 60)
    assert len(h) == int((w.arrival_s < 60).sum()) and h.duration_s == 60
    assert stats(h).rate_per_s == pytest.approx(len(h) / 60)
    assert head(w, 1e6).duration_s is None and len(head(w, 1e6)) == 200
    g = poisson(10, 100, seed=5)
    assert head(g, 30).duration_s == 30 and head(g, 500).duration_s == 100
    with pytest.raises(TokenmathError, match="factor = 0"):
        scale_rate(w, 0)
    with pytest.raises(TokenmathError, match="no request"):
        head(g, float(g.arrival_s[0]))  # strictly before the first arrival


def test_workload_validation_and_immutability():
    w = Workload(arrival_s=[0, 1, 2], input_tokens=[5, 6, 7], output_tokens=[1, 1, 1])
    with pytest.raises(ValueError):
        w.arrival_s[0] = 3  # read-only arrays
    with pytest.raises(AttributeError):
        w.name = "x"
    for kw, expect in [
        (dict(arrival_s=[], input_tokens=[], output_tokens=[]), "at least one request"),
        (dict(arrival_s=[1, 0], input_tokens=[1, 1], output_tokens=[1, 1]), "sorted"),
        (dict(arrival_s=[0, 1], input_tokens=[1, 0], output_tokens=[1, 1]), "input_tokens = 0"),
        (dict(arrival_s=[0, 1], input_tokens=[1], output_tokens=[1, 1]), "input_tokens has 1 entries"),
        (dict(arrival_s=[0, 1], input_tokens=[1, 2], output_tokens=[1, 1], prefix_id=[0, -3]), "prefix_id"),
        (dict(arrival_s=[0, 5], input_tokens=[1, 2], output_tokens=[1, 1], duration_s=2), "duration_s = 2"),
    ]:
        with pytest.raises(TokenmathError, match=expect):
            Workload(**kw)


def test_single_instant_has_no_rate():
    s = stats(Workload(arrival_s=[0, 0], input_tokens=[5, 6], output_tokens=[1, 2]))
    assert s.rate_per_s is None and s.duration_s == 0 and s.input_tokens_mean == 5.5


def test_docs_example_runs(monkeypatch):
    """docs/workload.md's Python example runs from the repository root and prints what it shows."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "workload.md").read_text(encoding="utf-8")
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(root)
    env: dict = {}
    exec(code, env)
    s = env["s"]
    shown = code.rsplit("#", 1)[1].split(",")
    got = [s.requests, s.rate_per_s, s.input_tokens_mean, s.output_tokens_mean]
    assert [float(x) for x in shown] == pytest.approx(got, rel=1e-4)
