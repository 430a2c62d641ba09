"""Benchmark result files -> validation cases (issue 16, `tokenmath import`).

A user who ran `vllm bench serve`, SGLang's `bench_serving`, NVIDIA GenAI-Perf or GuideLLM has
result files; `import_results` turns each measured run in them into validation cases in the shipped
format (`validate.Case`): the median time per output token at the measured concurrency and context
(`tpot_s`), output tokens/s per chip at that concurrency (`output_tokens_per_s_per_chip_at_user_rate`,
with the per-user rate 1/TPOT) and the median time to first token (`ttft_s`). `source` keeps the file
name, the tool and its version (when the file holds one); `notes` says what was assumed.

Formats and the keys read, from the tools' own code (stored commits, read for this module):

- ``vllm-bench``: the JSON `vllm bench serve --save-result` writes (one object; `--append-result`
  writes one per line): github vllm-project/vllm vllm/benchmarks/serve.py (stored commit
  009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1), `main_async` result_json: date ("%Y%m%d-%H%M%S"),
  backend, model_id, num_prompts, request_rate ("inf" or a number), max_concurrency; merged with
  `benchmark()`'s result: duration, completed, total_input_tokens, total_output_tokens,
  request_throughput, output_throughput, input_lens/output_lens (only with --save-detailed),
  mean_/median_/std_/pNN_{ttft,tpot,itl,e2el}_ms (e2el only when asked for).
- ``sglang-bench``: the JSONL `python -m sglang.bench_serving --output-file` appends, one object
  per run: github sgl-project/sglang python/sglang/bench_serving.py (stored commit
  0033168f0f58b2bc05aa0273bd475d9c01bafb1c), `benchmark()` result: backend, dataset_name,
  request_rate, max_concurrency, random_input_len, random_output_len, duration, completed,
  total_input_tokens, total_output_tokens, request_throughput, output_throughput,
  mean_/median_e2e_latency_ms, mean_/median_ttft_ms, mean_/median_tpot_ms, concurrency (aggregate
  request time / wall time), accept_length; docs/developer_guide/bench_serving.md "JSONL output format".
- ``genai-perf``: `profile_export_genai_perf.json`: github triton-inference-server/perf_analyzer
  genai-perf/genai_perf/export_data/json_exporter.py and metrics/{llm_metrics,statistics}.py (stored
  commit 4cc7650c23bc80d16a27c1049950d87f399c9b7a): one object per metric with "unit" and avg, p25,
  p50, p75, p90, p95, p99, min, max, std (time metrics in ms): time_to_first_token,
  inter_token_latency, request_latency, output_sequence_length, input_sequence_length,
  request_throughput and output_token_throughput (avg only); "input_config" holds the CLI arguments
  (concurrency, request_rate, model, service_kind/backend, ...).
- ``guidellm``: the benchmarks report (`guidellm benchmark --output-path benchmarks.json`): github
  vllm-project/guidellm src/guidellm/benchmark/schemas/generative/{report,benchmark,metrics}.py
  (stored commits 5a63252c, 03820eba, 52b6fe22): {"metadata": {"guidellm_version", ...}, "args",
  "benchmarks": [{"config" (older: "args"): {"strategy": {"type_": "concurrent", "streams": N} |
  {"type_": "synchronous"} | ...}, "start_time" (unix s), "metrics": {name: {"successful":
  {"mean", "median", ...}, "incomplete", "errored", "total"}}}]} with metrics request_concurrency,
  requests_per_second, prompt_token_count, output_token_count, time_to_first_token_ms,
  inter_token_latency_ms, time_per_output_token_ms, output_tokens_per_second.

Files are read whole, at most MAX_FILE_BYTES (64 MB: a --save-detailed vLLM file of 10,000
requests is a few MB). What cannot be read is refused with one TokenmathError sentence naming the
file and the key.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from .errors import TokenmathError, check_nesting, read_user_file

FORMATS = ("vllm-bench", "sglang-bench", "genai-perf", "guidellm")
MAX_FILE_BYTES = 64 * 1024 * 1024
_TOOL = {"vllm-bench": "vllm bench serve", "sglang-bench": "sglang.bench_serving", "genai-perf": "genai-perf",
         "guidellm": "guidellm"}
_TIME_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "us": 1e-6, "ns": 1e-9}


class _File:
    """One result file: its display name and the sentences that refuse it."""

    def __init__(self, path: Path, fmt: str = ""):
        self.path = path
        self.name = str(path)
        self.fmt = fmt

    def fail(self, msg: str) -> TokenmathError:
        return TokenmathError(f"result file {self.name!r}: {msg}")

    def num(self, obj, key: str, where: str = "", *, required: bool = False, positive: bool = False):
        """obj[key] as a finite float >= 0 (> 0 with `positive`); None when absent/null and optional."""
        label = f"{where}{key}"
        if not isinstance(obj, dict) or obj.get(key) is None:
            if required:
                raise self.fail(f"key {label!r} is missing (a {self.fmt} result has it)")
            return None
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"key {label!r} is {_show(v)}; expected a number")
        try:
            f = float(v)
        except OverflowError:
            raise self.fail(f"key {label!r} is too large") from None
        if not math.isfinite(f) or f < 0 or (positive and f == 0):
            raise self.fail(f"key {label!r} is {_show(v)}; expected a finite number {'>' if positive else '>='} 0")
        return f


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


class _Run:
    """What one measured run gives, in SI units, with the assumptions made to get it."""

    def __init__(self, label: str):
        self.label = label
        self.version: str | None = None
        self.date: str | None = None
        self.date_how = ""
        self.concurrency: float | None = None
        self.input_tokens: float | None = None
        self.output_tokens: float | None = None
        self.tpot_s: float | None = None
        self.ttft_s: float | None = None
        self.output_tokens_per_s: float | None = None
        self.engine: str | None = None
        self.notes: list[str] = []


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _load(f: _File, jsonl_ok: bool) -> list:
    raw = read_user_file(f.path, f"result file {f.name!r}", MAX_FILE_BYTES, "a benchmark result file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise f.fail("is not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise f.fail("is nested too deeply to read") from None
    except ValueError as e:
        first = e
    else:
        check_nesting(doc, f"result file {f.name!r}")  # bounded depth and count of values
        return [doc]
    if jsonl_ok:  # vllm --append-result and sglang --output-file: one object per line
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except RecursionError:
                raise f.fail(f"line {i} is nested too deeply to read") from None
            except ValueError as e:
                raise f.fail(f"line {i} is not JSON ({getattr(e, 'msg', str(e))[:80]})") from None
            check_nesting(out[-1], f"result file {f.name!r}, line {i}")
        if out:
            return out
    raise f.fail(f"is not JSON ({getattr(first, 'msg', str(first))[:80]})")


def _objects(f: _File, docs: list) -> list[dict]:
    out = []
    for d in docs:
        items = d if isinstance(d, list) else [d]
        for x in items:
            if not isinstance(x, dict):
                raise f.fail(f"holds a JSON {type(x).__name__}, not an object of results")
            out.append(x)
    if not out:
        raise f.fail("holds no results")
    return out


def _mtime_date(f: _File) -> str:
    try:
        return datetime.fromtimestamp(f.path.stat().st_mtime, timezone.utc).date().isoformat()
    except (OSError, ValueError, OverflowError):
        return None


def _set_mtime_date(r: _Run, f: _File, why: str) -> None:
    r.date = _mtime_date(f)
    r.date_how = f"date = the file's modification date ({why})"


def _stamp_date(v) -> str | None:
    """vLLM's "%Y%m%d-%H%M%S" (or an ISO date) -> YYYY-MM-DD; None if unreadable."""
    if not isinstance(v, str):
        return None
    m = re.match(r"^(\d{4})-?(\d{2})-?(\d{2})", v.strip())
    if not m:
        return None
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3])).date().isoformat()
    except ValueError:
        return None


def _little(f: _File, rate: float | None, latency_s: float | None, where: str) -> float | None:
    if rate is None or latency_s is None:
        return None
    c = rate * latency_s
    if not math.isfinite(c) or c <= 0:
        raise f.fail(f"the concurrency from {where} is {c!r}; expected a finite number > 0")
    return c


def _engine_from_backend(backend) -> str | None:
    if not isinstance(backend, str):
        return None
    b = backend.lower()
    if b.startswith("sglang"):
        return "sglang"
    if b.startswith("vllm"):
        return "vllm"
    if b.startswith("trt") or "tensorrt" in b:
        return "trtllm"
    return None


def _serving_run(f: _File, d: dict, i: int, fmt: str) -> _Run:
    """vllm-bench and sglang-bench: the same flat keys (sglang's script was adapted from vLLM's)."""
    r = _Run(f"run {i + 1}")
    completed = f.num(d, "completed", required=True, positive=True)
    lens_i, lens_o = d.get("input_lens"), d.get("output_lens")
    if _num_list(lens_i) and _num_list(lens_o):
        r.input_tokens = sum(lens_i) / len(lens_i)
        r.output_tokens = sum(lens_o) / len(lens_o)
        r.notes.append(f"mean input/output tokens = mean of input_lens/output_lens ({len(lens_i)} requests)")
    else:
        r.input_tokens = f.num(d, "total_input_tokens", required=True) / completed
        r.output_tokens = f.num(d, "total_output_tokens", required=True) / completed
        r.notes.append(f"mean input/output tokens = total_input_tokens/total_output_tokens / completed ({completed:g})")
    med_tpot = f.num(d, "median_tpot_ms")
    r.tpot_s = med_tpot * 1e-3 if med_tpot is not None else None
    med_ttft = f.num(d, "median_ttft_ms")
    r.ttft_s = med_ttft * 1e-3 if med_ttft is not None else None
    r.output_tokens_per_s = f.num(d, "output_throughput")

    mc = f.num(d, "max_concurrency", positive=True)
    rate = d.get("request_rate")
    rate_s = "inf" if rate in (None, "inf") or (isinstance(rate, (int, float)) and not math.isfinite(rate)) else f"{rate} req/s"
    if mc is not None:
        n = f.num(d, "num_prompts", positive=True) or completed
        r.concurrency = min(mc, n)
        r.notes.append(f"batch = max_concurrency {mc:g}" + (f" capped at the {n:g} requests" if n < mc else "")
                       + f" (the client's limit, request rate {rate_s}; ramp-up and tail run below it)")
    elif fmt == "sglang-bench" and f.num(d, "concurrency", positive=True) is not None:
        r.concurrency = f.num(d, "concurrency")
        r.notes.append(f"batch = the measured mean concurrency {r.concurrency:.4g} (total request time / wall time; "
                       f"no max_concurrency, request rate {rate_s})")
    else:
        thr = f.num(d, "request_throughput")
        e2e_key = "mean_e2el_ms" if fmt == "vllm-bench" else "mean_e2e_latency_ms"
        e2e = f.num(d, e2e_key)
        how = e2e_key
        if e2e is None:
            ttft, tpot = f.num(d, "mean_ttft_ms"), f.num(d, "mean_tpot_ms")
            if ttft is not None and tpot is not None:
                e2e = ttft + tpot * max(r.output_tokens - 1, 0)
                how = "mean_ttft_ms + mean_tpot_ms x (mean output - 1)"
        r.concurrency = _little(f, thr, e2e * 1e-3 if e2e is not None else None, "request_throughput x " + how)
        if r.concurrency is None:
            raise f.fail("key 'max_concurrency' is missing or null, and the concurrency cannot be derived "
                         "(it needs request_throughput and a mean latency)")
        r.notes.append(f"batch = {r.concurrency:.4g} by Little's law (request_throughput x {how}; "
                       f"no max_concurrency, request rate {rate_s})")
    if fmt == "vllm-bench":
        r.date = _stamp_date(d.get("date"))
        if r.date:
            r.date_how = "date from the file's 'date' key"
        else:
            _set_mtime_date(r, f, "no readable 'date' key")
        r.engine = "vllm"
        r.notes.append("engine assumed vllm (the tool's own server; backend "
                       f"{d.get('backend')!r})" if isinstance(d.get("backend"), str) else "engine assumed vllm")
    else:
        _set_mtime_date(r, f, "bench_serving writes no date")
        r.engine = _engine_from_backend(d.get("backend"))
        r.notes.append(f"engine {r.engine or 'unknown'} from backend {d.get('backend')!r}")
        acc = f.num(d, "accept_length")
        if acc is not None and acc > 1:
            r.notes.append(f"speculative decoding accept length {acc:g}: TPOT includes its speedup")
    for k in ("version", "vllm_version", "sglang_version"):
        if isinstance(d.get(k), str):
            r.version = d[k][:40]
    return r


def _num_list(v) -> bool:
    return (isinstance(v, list) and len(v) > 0
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in v))


def _gp_stat(f: _File, d: dict, key: str, stat: str, *, time: bool = False, required: bool = False):
    m = d.get(key)
    if m is None:
        if required:
            raise f.fail(f"key {key!r} is missing")
        return None
    if not isinstance(m, dict):
        raise f.fail(f"key {key!r} is {_show(m)}; expected an object with {stat!r}")
    v = f.num(m, stat, f"{key}.", required=required)
    if v is None or not time:
        return v
    unit = m.get("unit", "ms")
    if not isinstance(unit, str) or unit not in _TIME_UNITS:  # a list or object is not a unit (found by the fuzzer)
        raise f.fail(f"key '{key}.unit' is {_show(unit)}; expected one of {', '.join(_TIME_UNITS)}")
    return v * _TIME_UNITS[unit]


def _genai_perf_run(f: _File, d: dict, i: int) -> _Run:
    r = _Run("run 1")
    r.input_tokens = _gp_stat(f, d, "input_sequence_length", "avg", required=True)
    r.output_tokens = _gp_stat(f, d, "output_sequence_length", "avg", required=True)
    r.notes.append("mean input/output tokens = input_sequence_length.avg/output_sequence_length.avg")
    r.tpot_s = _gp_stat(f, d, "inter_token_latency", "p50", time=True)
    r.ttft_s = _gp_stat(f, d, "time_to_first_token", "p50", time=True)
    r.output_tokens_per_s = _gp_stat(f, d, "output_token_throughput", "avg")
    cfg = d.get("input_config")
    if cfg is not None and not isinstance(cfg, dict):
        raise f.fail(f"key 'input_config' is {_show(cfg)}; expected an object")
    cfg = cfg or {}
    conc = f.num(cfg, "concurrency", "input_config.", positive=True)
    if conc is not None and cfg.get("request_rate") is None:
        r.concurrency = conc
        r.notes.append(f"batch = input_config.concurrency {conc:g} (genai-perf keeps that many requests in flight)")
    else:
        rate = _gp_stat(f, d, "request_throughput", "avg")
        lat = _gp_stat(f, d, "request_latency", "avg", time=True)
        r.concurrency = _little(f, rate, lat, "request_throughput.avg x request_latency.avg")
        if r.concurrency is None:
            raise f.fail("key 'input_config.concurrency' is missing, and the concurrency cannot be derived "
                         "(it needs request_throughput.avg and request_latency.avg)")
        r.notes.append(f"batch = {r.concurrency:.4g} by Little's law (request_throughput.avg x request_latency.avg; "
                       f"request rate {cfg.get('request_rate')!r})")
    r.notes.append("TPOT = inter_token_latency.p50 (genai-perf: (request latency - TTFT) / (output tokens - 1))")
    kind = " ".join(str(cfg.get(k, "")) for k in ("service_kind", "backend", "endpoint_type"))
    r.engine = "trtllm" if ("tensorrtllm" in kind or "trtllm" in kind) else ("vllm" if "vllm" in kind else None)
    r.notes.append(f"engine {r.engine} from input_config service_kind/backend" if r.engine else
                   "engine unknown (input_config names no vllm/tensorrtllm backend; pass --engine)")
    for k in ("genai_perf_version", "version"):
        if isinstance(d.get(k), str):
            r.version = d[k][:40]
    _set_mtime_date(r, f, "genai-perf writes no date")
    return r


def _gl_stat(f: _File, metrics: dict, key: str, stat: str, bi: int, *, required: bool = False):
    where = f"benchmarks[{bi}].metrics.{key}"
    m = metrics.get(key)
    if m is None:
        if required:
            raise f.fail(f"key {where!r} is missing")
        return None
    if not isinstance(m, dict):
        raise f.fail(f"key {where!r} is {_show(m)}; expected an object")
    for status in ("successful", "total"):
        s = m.get(status)
        if isinstance(s, dict) and s.get(stat) is not None:
            return f.num(s, stat, f"{where}.{status}.")
    if required:
        raise f.fail(f"key '{where}.successful.{stat}' is missing")
    return None


def _guidellm_runs(f: _File, d: dict) -> list[_Run]:
    benches = d.get("benchmarks")
    if not isinstance(benches, list):
        raise f.fail("key 'benchmarks' is missing or not a list (a guidellm report holds its runs there)")
    if not benches:
        raise f.fail("key 'benchmarks' is an empty list")
    meta = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
    version = meta.get("guidellm_version") if isinstance(meta.get("guidellm_version"), str) else None
    runs = []
    for bi, b in enumerate(benches):
        if not isinstance(b, dict):
            raise f.fail(f"key 'benchmarks[{bi}]' is {_show(b)}; expected an object")
        metrics = b.get("metrics")
        if not isinstance(metrics, dict):
            raise f.fail(f"key 'benchmarks[{bi}].metrics' is missing or not an object")
        r = _Run(f"benchmark {bi + 1}")
        r.version = version[:40] if version else None
        r.notes.append("engine unknown (a guidellm report does not name the server; pass --engine)")
        r.input_tokens = _gl_stat(f, metrics, "prompt_token_count", "mean", bi, required=True)
        r.output_tokens = _gl_stat(f, metrics, "output_token_count", "mean", bi, required=True)
        r.notes.append("mean input/output tokens = prompt_token_count/output_token_count successful.mean")
        itl = _gl_stat(f, metrics, "inter_token_latency_ms", "median", bi)
        if itl is not None:
            r.tpot_s = itl * 1e-3
            r.notes.append("TPOT = inter_token_latency_ms successful.median ((last - first token time) / (output - 1))")
        else:
            tpot = _gl_stat(f, metrics, "time_per_output_token_ms", "median", bi)
            if tpot is not None:
                r.tpot_s = tpot * 1e-3
                r.notes.append("TPOT = time_per_output_token_ms successful.median (guidellm counts the first "
                               "token's wait in it; inter_token_latency_ms absent)")
        ttft = _gl_stat(f, metrics, "time_to_first_token_ms", "median", bi)
        r.ttft_s = ttft * 1e-3 if ttft is not None else None
        r.output_tokens_per_s = _gl_stat(f, metrics, "output_tokens_per_second", "mean", bi)
        cfg = b.get("config") if isinstance(b.get("config"), dict) else b.get("args")
        strat = cfg.get("strategy") if isinstance(cfg, dict) else None
        kind = strat.get("type_") if isinstance(strat, dict) else None
        if kind == "concurrent":
            r.concurrency = f.num(strat, "streams", f"benchmarks[{bi}].config.strategy.", required=True, positive=True)
            r.notes.append(f"batch = strategy streams {r.concurrency:g} (concurrent)")
        elif kind == "synchronous":
            r.concurrency = 1.0
            r.notes.append("batch = 1 (synchronous strategy)")
        else:
            c = _gl_stat(f, metrics, "request_concurrency", "mean", bi)
            if c is None or c <= 0:
                raise f.fail(f"key 'benchmarks[{bi}].metrics.request_concurrency' is missing or zero, and the "
                             f"strategy ({kind!r}) fixes no concurrency")
            r.concurrency = c
            r.notes.append(f"batch = the measured mean request_concurrency {c:.4g} (strategy {kind!r})")
        t = b.get("start_time")
        if t is None and isinstance(b.get("scheduler_metrics"), dict):
            t = b["scheduler_metrics"].get("measure_start_time")
        if t is None and isinstance(b.get("run_stats"), dict):
            t = b["run_stats"].get("start_time")
        try:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise ValueError
            r.date = datetime.fromtimestamp(float(t), timezone.utc).date().isoformat()
            r.date_how = "date from the benchmark's start_time (UTC)"
        except (ValueError, OverflowError, OSError):
            _set_mtime_date(r, f, "no readable start_time")
        runs.append(r)
    return runs


# --------------------------------------------------------------------------------------------
# Runs -> cases
# --------------------------------------------------------------------------------------------


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()[:60] or "file"


def _cases(f: _File, r: _Run, fmt: str, idx: int, n_runs: int, base: dict) -> list[dict]:
    if not r.input_tokens or not r.output_tokens:
        raise f.fail(f"{r.label}: mean input tokens {r.input_tokens!r} and mean output tokens {r.output_tokens!r} "
                     "must both be > 0")
    tool = _TOOL[fmt] + (f" {r.version}" if r.version else " (version not in file)")
    where = f", {r.label} of {n_runs}" if n_runs > 1 else ""
    source = f"{f.path.name} ({tool}; tokenmath import --format {fmt}{where})"
    engine = base.pop("engine") or r.engine
    notes = list(r.notes)
    if base.get("_engine_given"):
        notes = [n for n in notes if not n.startswith("engine")] + [f"engine {engine} as given"]
    base.pop("_engine_given", None)
    notes.append(r.date_how)
    common = dict(base, engine=engine, source=source, date=r.date, input_tokens=r.input_tokens,
                  output_tokens=r.output_tokens, min_tokens_per_s_per_user=None, dp=1)
    stem = f"import-{fmt}-{_slug(f.path.stem)}" + (f"-{idx + 1}" if n_runs > 1 else "")
    c = r.concurrency
    mean_ctx = r.input_tokens + r.output_tokens / 2
    out = []
    if r.tpot_s:
        out.append(dict(common, id=f"{stem}-tpot", metric="tpot_s", measured=r.tpot_s, batch=c,
                        notes="; ".join([f"measured = median TPOT {r.tpot_s * 1e3:.4g} ms at concurrency {c:.4g}, "
                                         f"mean context = mean input + mean output / 2 = {mean_ctx:.4g} tokens"] + notes)))
    if r.output_tokens_per_s:
        chips = base["chips"]
        d = dict(common, id=f"{stem}-tput", metric="output_tokens_per_s_per_chip_at_user_rate",
                 measured=r.output_tokens_per_s / chips, batch=c,
                 notes="; ".join([f"measured = output throughput {r.output_tokens_per_s:.6g} tok/s / {chips} chips"
                                  + ("; min_tokens_per_s_per_user = 1 / median TPOT" if r.tpot_s else "")] + notes))
        if r.tpot_s:
            d["min_tokens_per_s_per_user"] = 1.0 / r.tpot_s
        out.append(d)
    if r.ttft_s:
        out.append(dict(common, id=f"{stem}-ttft", metric="ttft_s", measured=r.ttft_s, batch=1,
                        notes="; ".join([f"measured = median TTFT {r.ttft_s * 1e3:.4g} ms; predicted as one prompt's "
                                         f"prefill (batch 1): queueing and prefill batched with other requests at "
                                         f"concurrency {c:.4g} are not modelled, so a loaded server measures above it"]
                                        + notes)))
    if not out:
        raise f.fail(f"{r.label}: none of median TPOT, output throughput or median TTFT is present and > 0")
    return out


def import_results(paths, fmt: str, *, model: str, system: str, chips: int, tp: int | None = None,
                   ep: int | None = None, pp: int | None = None, weight_dtype: str | None = None,
                   kv_dtype: str | None = "bf16", engine: str | None = None) -> list[dict]:
    """Validation case dicts (each passes `validate.Case(**d)`) from benchmark result files of
    format `fmt` (one of FORMATS): per measured run a `tpot_s`, an
    `output_tokens_per_s_per_chip_at_user_rate` and a `ttft_s` case, as far as the file has them."""
    if fmt not in FORMATS:
        raise TokenmathError(f"--format = {fmt!r}; expected one of {', '.join(FORMATS)}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise TokenmathError("no result files given; name at least one")
    for name, v in (("--model", model), ("--system", system)):
        if not isinstance(v, str) or not v.strip():
            raise TokenmathError(f"{name} = {v!r}; expected a catalog name or a config.json path")
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise TokenmathError(f"--chips = {chips!r}; expected a whole number >= 1")
    for name, v in (("--tp", tp), ("--ep", ep), ("--pp", pp)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise TokenmathError(f"{name} = {v!r}; expected a whole number >= 1")
    base = dict(model=model, system=system, chips=chips, tp=tp, ep=ep, pp=pp, weight_dtype=weight_dtype,
                kv_dtype=kv_dtype)
    out: list[dict] = []
    seen: dict[str, int] = {}
    for p in paths:
        f = _File(Path(p), fmt)
        objs = _objects(f, _load(f, jsonl_ok=fmt in ("vllm-bench", "sglang-bench")))
        if fmt == "guidellm":
            if len(objs) != 1:
                raise f.fail("holds more than one JSON object; a guidellm report is one")
            runs = _guidellm_runs(f, objs[0])
        elif fmt == "genai-perf":
            if len(objs) != 1:
                raise f.fail("holds more than one JSON object; a genai-perf profile export is one")
            runs = [_genai_perf_run(f, objs[0], 0)]
        else:
            runs = [_serving_run(f, d, i, fmt) for i, d in enumerate(objs)]
        for i, r in enumerate(runs):
            for c in _cases(f, r, fmt, i, len(runs), dict(base, engine=engine, _engine_given=engine is not None)):
                k = seen.get(c["id"], 0)  # two files with the same stem: keep ids unique
                seen[c["id"]] = k + 1
                if k:
                    c["id"] = f"{c['id']}-{k + 1}"
                _check_case(f, c)
                out.append(c)
    return out


def _check_case(f: "_File", c: dict) -> None:
    """A case the file's numbers make that the case schema refuses (e.g. half an output token on
    average: the fuzz found a ValidationError leaking) is the file's error, in one sentence."""
    from pydantic import ValidationError

    from .errors import validation_message
    from .validate import Case

    try:
        Case(**c)
    except ValidationError as e:
        raise f.fail(f"run {c['id']!r} gives a case outside the physical ranges ({validation_message(e)})") from None


def write_cases(cases: list[dict], path: str | Path, *, replace: bool = False) -> Path:
    """Write case dicts as JSON lines (the shipped case format), atomically (tokenmath.paths): an
    existing file is replaced only with replace=True."""
    from .paths import write_atomic

    return write_atomic(path, "".join(json.dumps(c) + "\n" for c in cases), flag="cases file", replace=replace)
