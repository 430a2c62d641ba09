"""`importer.import_results`: benchmark result files -> validation cases (issue 16).

The files under tests/data/bench/ are written for these tests in each tool's documented format
(see tests/data/bench/README.md for the source of each format); every expected value below is
derived by hand from the numbers in those files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenmath import importer
from tokenmath.errors import TokenmathError
from tokenmath.importer import FORMATS, import_results, write_cases
from tokenmath.validate import Case, load_cases

BENCH = Path(__file__).parent / "data" / "bench"
KW = dict(model="llama-3.1-8b", system="h100-sxm", chips=1)


def _by_metric(cases):
    return {c["metric"]: c for c in cases}


def _check(cases):
    for c in cases:
        Case(**c)  # the shipped case format accepts every dict
    assert len({c["id"] for c in cases}) == len(cases)


def test_formats():
    assert FORMATS == ("vllm-bench", "sglang-bench", "genai-perf", "guidellm")


def test_vllm_bench_single_run():
    """vllm_llama8b_c16.json (`vllm bench serve --save-result`): completed 160,
    total_input_tokens 163,840 -> mean input 163840/160 = 1024; total_output_tokens 81,920 -> mean
    output 512; max_concurrency 16 (num_prompts 160 >= 16, so no cap) -> batch 16; median_tpot_ms
    7.4 -> tpot_s 0.0074; output_throughput 2048 tok/s / 1 chip = 2048, per-user rate 1/0.0074 =
    135.14 tok/s; median_ttft_ms 55 -> ttft_s 0.055 (batch 1); date '20250612-101500' -> 2025-06-12."""
    cases = import_results([BENCH / "vllm_llama8b_c16.json"], "vllm-bench", **KW)
    _check(cases)
    assert len(cases) == 3
    m = _by_metric(cases)
    t = m["tpot_s"]
    assert t["measured"] == pytest.approx(0.0074) and t["batch"] == 16
    assert t["input_tokens"] == 1024 and t["output_tokens"] == 512
    assert t["engine"] == "vllm" and t["date"] == "2025-06-12"
    assert "vllm_llama8b_c16.json" in t["source"] and "vllm bench serve" in t["source"]
    assert "version not in file" in t["source"]
    assert "max_concurrency 16" in t["notes"] and "date from the file's 'date' key" in t["notes"]
    assert "mean input + mean output / 2 = 1280" in t["notes"]  # 1024 + 512/2
    u = m["output_tokens_per_s_per_chip_at_user_rate"]
    assert u["measured"] == pytest.approx(2048.0) and u["batch"] == 16
    assert u["min_tokens_per_s_per_user"] == pytest.approx(1 / 0.0074)
    f = m["ttft_s"]
    assert f["measured"] == pytest.approx(0.055) and f["batch"] == 1
    assert t["kv_dtype"] == "bf16" and t["chips"] == 1 and t["model"] == "llama-3.1-8b"


def test_vllm_bench_append_result_lines():
    """vllm_append.jsonl (`--append-result`, two objects, one per line).
    Run 1: max_concurrency null, request_rate 2.0 -> batch by Little's law = request_throughput 1.95
    x (mean_ttft_ms 40 + mean_tpot_ms 6.0 x (mean output 25600/100 - 1 = 255)) ms = 1.95 x 1.570 s
    = 3.0615; mean input 51200/100 = 512; median TPOT 5.9 ms; output 499.2 tok/s.
    Run 2: --save-detailed, input_lens [100, 300] -> mean 200, output_lens [50, 150] -> mean 100;
    max_concurrency 8 capped at num_prompts 2 -> batch 2."""
    cases = import_results([BENCH / "vllm_append.jsonl"], "vllm-bench", **KW)
    _check(cases)
    assert len(cases) == 6
    r1 = _by_metric([c for c in cases if "-1-" in c["id"]])
    r2 = _by_metric([c for c in cases if "-2-" in c["id"]])
    assert r1["tpot_s"]["batch"] == pytest.approx(1.95 * (40 + 6.0 * 255) / 1000)
    assert r1["tpot_s"]["input_tokens"] == 512 and r1["tpot_s"]["output_tokens"] == 256
    assert r1["tpot_s"]["measured"] == pytest.approx(0.0059)
    assert "Little's law" in r1["tpot_s"]["notes"]
    assert r1["output_tokens_per_s_per_chip_at_user_rate"]["measured"] == pytest.approx(499.2)
    assert "run 1 of 2" in r1["tpot_s"]["source"]
    assert r2["tpot_s"]["input_tokens"] == 200 and r2["tpot_s"]["output_tokens"] == 100
    assert r2["tpot_s"]["batch"] == 2 and "capped at the 2 requests" in r2["tpot_s"]["notes"]


def test_sglang_bench_jsonl_two_chips():
    """sglang_runs.jsonl (`bench_serving --output-file`, two runs), --chips 2 --tp 2.
    Run 1: max_concurrency 32 -> batch 32; completed 320, total_input_tokens 655,360 -> 2048,
    total_output_tokens 81,920 -> 256; median_tpot_ms 5.0; output_throughput 5120 / 2 chips = 2560;
    median_ttft_ms 210. Run 2: max_concurrency null -> batch = the measured 'concurrency' 4.4;
    output 1024 / 2 = 512. backend 'sglang' -> engine sglang; no date in the file -> its mtime."""
    cases = import_results([BENCH / "sglang_runs.jsonl"], "sglang-bench", model="llama-3.1-8b",
                           system="h100-sxm", chips=2, tp=2)
    _check(cases)
    r1 = _by_metric([c for c in cases if "-1-" in c["id"]])
    r2 = _by_metric([c for c in cases if "-2-" in c["id"]])
    assert r1["tpot_s"]["batch"] == 32 and r1["tpot_s"]["measured"] == pytest.approx(0.005)
    assert r1["tpot_s"]["input_tokens"] == 2048 and r1["tpot_s"]["output_tokens"] == 256
    assert r1["output_tokens_per_s_per_chip_at_user_rate"]["measured"] == pytest.approx(2560.0)
    assert r1["ttft_s"]["measured"] == pytest.approx(0.21)
    assert r2["tpot_s"]["batch"] == pytest.approx(4.4) and "measured mean concurrency" in r2["tpot_s"]["notes"]
    assert r2["output_tokens_per_s_per_chip_at_user_rate"]["measured"] == pytest.approx(512.0)
    assert all(c["engine"] == "sglang" and c["tp"] == 2 for c in cases)
    assert "modification date" in r1["tpot_s"]["notes"]


def test_genai_perf_profile_export():
    """profile_export_genai_perf.json: input_sequence_length.avg 512, output_sequence_length.avg
    128; input_config.concurrency 8 (request_rate null) -> batch 8 (cross-check: request_throughput
    6.6/s x request_latency 1.2 s = 7.9); inter_token_latency.p50 9.0 ms -> tpot 0.009;
    time_to_first_token.p50 44 ms; output_token_throughput.avg 844.8 tok/s / 1 chip; input_config
    backend 'tensorrtllm' -> engine trtllm."""
    cases = import_results([BENCH / "profile_export_genai_perf.json"], "genai-perf", **KW)
    _check(cases)
    m = _by_metric(cases)
    assert m["tpot_s"]["measured"] == pytest.approx(0.009) and m["tpot_s"]["batch"] == 8
    assert m["tpot_s"]["input_tokens"] == 512 and m["tpot_s"]["output_tokens"] == 128
    assert m["ttft_s"]["measured"] == pytest.approx(0.044)
    assert m["output_tokens_per_s_per_chip_at_user_rate"]["measured"] == pytest.approx(844.8)
    assert m["tpot_s"]["engine"] == "trtllm" and "genai-perf" in m["tpot_s"]["source"]


def test_guidellm_report_three_strategies():
    """guidellm_benchmarks.json (guidellm_version 0.4.0), prompt/output token means 1000/200:
    benchmark 1 synchronous -> batch 1, inter_token_latency_ms median 6.0 -> tpot 0.006 (preferred
    over time_per_output_token_ms 6.3, which includes the first token's wait), output 160 tok/s;
    benchmark 2 concurrent streams 16 -> batch 16, tpot 0.0088, ttft 0.085, 1700 tok/s;
    benchmark 3 constant rate -> batch = measured request_concurrency mean 7.2.
    start_time 1,750,000,000 s = 2025-06-15T15:06:40Z -> date 2025-06-15."""
    cases = import_results([BENCH / "guidellm_benchmarks.json"], "guidellm", **KW)
    _check(cases)
    assert len(cases) == 9
    b = [_by_metric([c for c in cases if f"-{i}-" in c["id"]]) for i in (1, 2, 3)]
    assert b[0]["tpot_s"]["batch"] == 1 and b[0]["tpot_s"]["measured"] == pytest.approx(0.006)
    assert b[0]["output_tokens_per_s_per_chip_at_user_rate"]["measured"] == pytest.approx(160.0)
    assert b[1]["tpot_s"]["batch"] == 16 and b[1]["tpot_s"]["measured"] == pytest.approx(0.0088)
    assert b[1]["ttft_s"]["measured"] == pytest.approx(0.085)
    assert b[2]["tpot_s"]["batch"] == pytest.approx(7.2)
    assert all(c["date"] == "2025-06-15" for c in cases)
    assert all("guidellm 0.4.0" in c["source"] for c in cases)
    assert b[0]["tpot_s"]["input_tokens"] == 1000 and b[0]["tpot_s"]["output_tokens"] == 200
    assert b[0]["tpot_s"]["engine"] is None and "pass --engine" in b[0]["tpot_s"]["notes"]


def test_engine_given_overrides_and_layout_kept():
    cases = import_results([BENCH / "guidellm_benchmarks.json"], "guidellm", model="llama-3.1-70b",
                           system="h100-sxm", chips=4, tp=4, weight_dtype="fp8", kv_dtype="fp8", engine="vllm")
    _check(cases)
    assert all(c["engine"] == "vllm" and c["tp"] == 4 and c["weight_dtype"] == "fp8" for c in cases)
    assert all("engine vllm as given" in c["notes"] for c in cases)
    # 1700 tok/s over 4 chips
    assert [c for c in cases if c["id"].endswith("-2-tput")][0]["measured"] == pytest.approx(425.0)


def test_date_falls_back_to_mtime(tmp_path):
    """No 'date' key -> the file's modification date, said in the notes."""
    d = json.loads((BENCH / "vllm_llama8b_c16.json").read_text())
    del d["date"]
    p = tmp_path / "nodate.json"
    p.write_text(json.dumps(d))
    t = time.mktime((2024, 3, 5, 12, 0, 0, 0, 0, -1))
    os.utime(p, (t, t))
    cases = import_results([p], "vllm-bench", **KW)
    assert all(c["date"] == "2024-03-05" for c in cases)
    assert "modification date" in cases[0]["notes"]


def test_several_files_and_round_trip(tmp_path):
    """Two files in one call; the same file twice keeps ids unique; write_cases -> load_cases."""
    a = BENCH / "vllm_llama8b_c16.json"
    b = tmp_path / "vllm_llama8b_c16.json"
    shutil.copy(a, b)
    cases = import_results([a, b], "vllm-bench", **KW)
    _check(cases)
    assert len(cases) == 6
    out = write_cases(cases, tmp_path / "cases.jsonl")
    loaded = load_cases(out)
    assert [c.id for c, _ in loaded] == [c["id"] for c in cases]


def test_optional_keys_missing_gives_fewer_cases(tmp_path):
    """Only the keys needed for a TPOT case: the throughput and TTFT cases are left out."""
    p = tmp_path / "min.json"
    p.write_text(json.dumps({"completed": 10, "total_input_tokens": 1000, "total_output_tokens": 500,
                             "max_concurrency": 4, "median_tpot_ms": 10.0}))
    cases = import_results([p], "vllm-bench", **KW)
    _check(cases)
    assert [c["metric"] for c in cases] == ["tpot_s"]
    assert cases[0]["input_tokens"] == 100 and cases[0]["output_tokens"] == 50


# --------------------------------------------------------------------------------------------
# Refusals: one sentence naming the file and the key
# --------------------------------------------------------------------------------------------


def _refuse(tmp_path, content, fmt="vllm-bench", name="bad.json"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(TokenmathError) as e:
        import_results([p], fmt, **KW)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    return msg


GOOD = json.loads((BENCH / "vllm_llama8b_c16.json").read_text())


@pytest.mark.parametrize("content, fmt, expect", [
    ("{not json", "vllm-bench", "is not JSON"),
    (b"\xff\xfe\x00garbage", "vllm-bench", "not UTF-8"),
    ("", "genai-perf", "is not JSON"),
    ([1, 2, 3], "vllm-bench", "not an object"),
    ({**GOOD, "completed": None}, "vllm-bench", "'completed' is missing"),
    ({k: v for k, v in GOOD.items() if k != "total_output_tokens"}, "vllm-bench", "'total_output_tokens' is missing"),
    ({**GOOD, "median_tpot_ms": -1.0}, "vllm-bench", "'median_tpot_ms' is -1.0"),
    ('{"completed": NaN}', "vllm-bench", "'completed' is nan"),
    ({**GOOD, "output_throughput": "fast"}, "vllm-bench", "'output_throughput' is 'fast'; expected a number"),
    ({**GOOD, "completed": True}, "vllm-bench", "'completed' is True"),
    ({**GOOD, "max_concurrency": None, "request_throughput": None}, "vllm-bench", "'max_concurrency' is missing"),
    ({**GOOD, "median_tpot_ms": 0, "median_ttft_ms": 0, "output_throughput": 0}, "vllm-bench", "none of median TPOT"),
    ({**GOOD, "total_output_tokens": 0}, "vllm-bench", "must both be > 0"),
    (GOOD, "guidellm", "'benchmarks' is missing"),
    ({"benchmarks": []}, "guidellm", "empty list"),
    ({"benchmarks": [{"metrics": {}}]}, "guidellm", "'benchmarks[0].metrics.prompt_token_count' is missing"),
    (GOOD, "genai-perf", "'input_sequence_length' is missing"),
    ({"input_sequence_length": {"avg": 1}, "output_sequence_length": {"avg": 1},
      "inter_token_latency": {"unit": "fortnights", "p50": 3}}, "genai-perf", "'inter_token_latency.unit'"),
    ("[" * 100000 + "]" * 100000, "genai-perf", "nested too deeply"),
])
def test_refusals(tmp_path, content, fmt, expect):
    assert expect in _refuse(tmp_path, content, fmt)


def test_wrong_format_named(tmp_path):
    """A guidellm report read as vllm-bench: the first required key it lacks is named."""
    msg = _refuse(tmp_path, (BENCH / "guidellm_benchmarks.json").read_text(), "vllm-bench")
    assert "'completed' is missing" in msg


def test_size_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "MAX_FILE_BYTES", 100)
    msg = _refuse(tmp_path, GOOD)
    assert "at most 100 bytes" in msg
    assert importer.MAX_FILE_BYTES == 100 and 64 * 1024 * 1024 > 100


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(TokenmathError, match="does not exist"):
        import_results([tmp_path / "nope.json"], "vllm-bench", **KW)
    with pytest.raises(TokenmathError, match="--format = 'trtllm-bench'"):
        import_results([BENCH / "vllm_llama8b_c16.json"], "trtllm-bench", **KW)
    with pytest.raises(TokenmathError, match="--chips = 0"):
        import_results([BENCH / "vllm_llama8b_c16.json"], "vllm-bench", model="m", system="s", chips=0)
    with pytest.raises(TokenmathError, match="--tp = -2"):
        import_results([BENCH / "vllm_llama8b_c16.json"], "vllm-bench", model="m", system="s", chips=1, tp=-2)
    with pytest.raises(TokenmathError, match="no result files"):
        import_results([], "vllm-bench", **KW)


# --------------------------------------------------------------------------------------------
# Fuzz: random JSON -> cases that Case accepts, or one TokenmathError sentence
# --------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=8) | st.sampled_from(["inf", "20250101-000000", "concurrent", "synchronous", "ms", "s"])
_json = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                     max_leaves=20)
_KEYS = ["completed", "total_input_tokens", "total_output_tokens", "max_concurrency", "median_tpot_ms",
         "median_ttft_ms", "output_throughput", "request_throughput", "mean_ttft_ms", "mean_tpot_ms",
         "mean_e2el_ms", "mean_e2e_latency_ms", "concurrency", "num_prompts", "input_lens", "output_lens", "date",
         "backend", "input_sequence_length", "output_sequence_length", "inter_token_latency", "time_to_first_token",
         "output_token_throughput", "request_latency", "input_config", "benchmarks", "metadata"]
_num = st.integers(0, 5000) | st.floats(0, 1e6) | st.none()
_stat = st.dictionaries(st.sampled_from(["avg", "p50", "unit", "mean", "median"]), _num | st.sampled_from(["ms", "s"]),
                        max_size=4)
_shaped = st.dictionaries(st.sampled_from(_KEYS), _num | _stat | _json, max_size=12)
_gl_metric = st.fixed_dictionaries({"successful": st.fixed_dictionaries({"mean": _num, "median": _num})})
_gl_bench = st.fixed_dictionaries({
    "metrics": st.dictionaries(st.sampled_from(["prompt_token_count", "output_token_count", "inter_token_latency_ms",
                                                "time_to_first_token_ms", "output_tokens_per_second",
                                                "request_concurrency", "time_per_output_token_ms"]),
                               _gl_metric, max_size=7),
    "config": st.fixed_dictionaries({"strategy": st.fixed_dictionaries(
        {"type_": st.sampled_from(["concurrent", "synchronous", "throughput"]), "streams": _num})}),
    "start_time": _num | _json})
_guidellm = st.fixed_dictionaries({"benchmarks": st.lists(_gl_bench, max_size=3)})


def _fuzz_one(tmp_path, doc, fmt):
    p = tmp_path / "fuzz.json"
    try:
        text = json.dumps(doc)
    except (ValueError, TypeError):
        return
    p.write_text(text)
    try:
        cases = import_results([p], fmt, **KW)
    except TokenmathError as e:
        assert "\n" not in str(e) and str(p) in str(e)
        return
    assert cases
    for c in cases:
        Case(**c)
        assert math.isfinite(c["measured"]) and c["measured"] > 0
        assert c["batch"] is None or (math.isfinite(c["batch"]) and c["batch"] > 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_json | _shaped | _guidellm | st.lists(_shaped, max_size=3), fmt=st.sampled_from(FORMATS))
def test_fuzz_random_json(tmp_path, doc, fmt):
    _fuzz_one(tmp_path, doc, fmt)
