"""Measure this machine and write it as a catalog system: `probe()` then `system_toml(result, name)`.

What is measured (docs/probe.md):

- sustained memory bandwidth: a STREAM-like copy (a = b) and triad (a = b + s*c) over arrays much
  larger than the last-level cache, split across the cores in threads (numpy releases the GIL in
  its loops), best of a few repeats, counting every byte read and written;
- matmul FLOP/s per dtype: square matrices, 2*n^3 FLOP per product, n sized so one product takes
  about 0.2 s, best of a few repeats. numpy runs fp64 and fp32 through its BLAS; it has no native
  bf16 or fp16 matmul (float16 falls back to a slow loop), so a CPU reports no half-precision figure.

With PyTorch importable and a CUDA device present, the same two figures are measured on the GPU
instead (device copy/triad bandwidth and torch.matmul in bf16, fp16, fp32), synchronised around
each timing. torch is imported only on that path and only when it is installed. The GPU path is
small and written for `torch.cuda`; it is exercised only where torch and a GPU exist.

The total time is bounded by `seconds` (0.1 .. 60): each stage gets a share of it and starts no new
repeat past its share (one repeat already running finishes).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TokenmathError

MIN_SECONDS, MAX_SECONDS = 0.1, 60.0
ARRAY_CAP_BYTES = 512e6          # all the bandwidth arrays together, at most
MATMUL_TARGET_S = 0.2            # one timed product takes about this long
_MIB = 2**20


@dataclass(frozen=True)
class ProbeResult:
    """What `probe()` measured. Rates are the best of the repeats (SI units: byte/s, FLOP/s)."""

    device: str                          # CPU model (from /proc/cpuinfo) or the CUDA device name
    backend: str                         # "numpy" (CPU) or "torch-cuda"
    memory_bytes_per_s: float            # sustained, bytes read + written per second (best kernel)
    flops_per_s: dict[str, float]        # by dtype: "fp64", "fp32" (CPU); "bf16", "fp16", "fp32" (GPU)
    memory_bytes: float                  # installed RAM (CPU) or device memory (GPU)
    cores: int                           # CPU cores this process may use, or the GPU's SMs
    seconds: float                       # wall time the probe took
    as_of: str                           # the date measured, YYYY-MM-DD
    memory_by_kernel: dict[str, float] = field(default_factory=dict)  # "copy", "triad" -> byte/s
    array_bytes: float = 0.0             # bytes of each bandwidth array
    matmul_n: dict[str, int] = field(default_factory=dict)            # dtype -> n of the n x n product
    notes: tuple[str, ...] = ()          # caveats found while measuring


# ---- the machine's description -----------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("model name", or "Hardware"/"Processor" on ARM), else platform."""
    text = _read("/proc/cpuinfo")
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.M)
        if m and m.group(1).strip():
            return " ".join(m.group(1).split())
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _meminfo(key: str) -> float | None:
    m = re.search(rf"^{key}:\s*(\d+)\s*kB", _read("/proc/meminfo"), flags=re.M)
    return float(m.group(1)) * 1024 if m else None


def ram_bytes() -> float:
    """Installed RAM: MemTotal from /proc/meminfo, else pages x page size."""
    total = _meminfo("MemTotal")
    if total:
        return total
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9  # a guess only used to size arrays; the result then says so


def _available_bytes(total: float) -> float:
    avail = _meminfo("MemAvailable")
    return avail if avail else total / 2


def last_level_cache_bytes() -> float:
    """The last-level cache of all sockets together (distinct caches of the highest level, from sysfs)."""
    best_level, caches = 0, {}
    for d in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int(_read(str(d / "level")).strip() or 0)
            kind = _read(str(d / "type")).strip()
            size = _read(str(d / "size")).strip()
            shared = _read(str(d / "shared_cpu_list")).strip()
        except ValueError:
            continue
        if kind == "Instruction" or not size:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", size)
        if not m:
            continue
        b = int(m.group(1)) * {"": 1, "K": 1024, "M": _MIB, "G": 2**30}[m.group(2)]
        if level > best_level:
            best_level, caches = level, {}
        if level == best_level:
            caches[shared] = b
    return float(sum(caches.values())) if caches else 32.0 * _MIB


# ---- checks --------------------------------------------------------------------------------------


def _check_seconds(seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)):
        raise TokenmathError(f"seconds = {seconds!r} must be a number between {MIN_SECONDS:g} and {MAX_SECONDS:g}")
    s = float(seconds)
    if not (MIN_SECONDS <= s <= MAX_SECONDS):  # also refuses NaN
        raise TokenmathError(f"seconds = {s:g} must be between {MIN_SECONDS:g} and {MAX_SECONDS:g} "
                             "(the probe's total time budget)")
    return s


def _today() -> str:
    return _dt.date.today().isoformat()


# ---- the CPU path (numpy) ------------------------------------------------------------------------


def _bandwidth_numpy(budget_s: float, cores: int, notes: list[str]) -> tuple[dict[str, float], float]:
    """Copy and triad over three fp64 arrays, one contiguous slice per thread; byte/s by kernel."""
    total = ram_bytes()
    cap = min(ARRAY_CAP_BYTES, total / 8, _available_bytes(total) / 4) / 3   # per array
    llc = last_level_cache_bytes()
    want = max(4 * llc, 32 * _MIB)                   # STREAM's rule: each array >= 4x the caches
    by_time = budget_s * 4e9 / 10                    # a triad moves 5 arrays; leave room for repeats at ~4 GB/s
    size = int(max(min(want, cap, by_time), 1 * _MIB)) // 4096 * 4096
    if size < 4 * llc:
        notes.append(f"bandwidth arrays of {size / 1e6:.0f} MB each are under 4x the {llc / 1e6:.0f} MB last-level "
                     "cache (limited by the time or memory allowed), so the figure may be overstated")
    n = size // 8
    threads = max(1, min(cores, 64))
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
    a, b, c = np.empty(n), np.empty(n), np.empty(n)
    s = 3.0
    nbytes = float(n * 8)

    def run(pool, fn):
        t = time.perf_counter()
        list(pool.map(fn, bounds))
        return time.perf_counter() - t

    def touch(r):  # first touch from the thread that will use the slice
        lo, hi = r
        a[lo:hi] = 1.0
        b[lo:hi] = 2.0
        c[lo:hi] = 0.5

    def copy(r):  # reads b, writes a: 2 arrays of traffic
        lo, hi = r
        np.copyto(a[lo:hi], b[lo:hi])

    def triad(r):  # a = s*c (read c, write a), a += b (read a, read b, write a): 5 arrays of traffic
        lo, hi = r
        np.multiply(c[lo:hi], s, out=a[lo:hi])
        np.add(a[lo:hi], b[lo:hi], out=a[lo:hi])

    best = {"copy": 0.0, "triad": 0.0}
    traffic = {"copy": 2 * nbytes, "triad": 5 * nbytes}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        run(pool, touch)
        end = start + budget_s
        reps = 0
        while reps < 2 or time.perf_counter() < end:
            for k, fn in (("copy", copy), ("triad", triad)):
                dt = run(pool, fn)
                if dt > 0:
                    best[k] = max(best[k], traffic[k] / dt)
            reps += 1
            if reps >= 50:
                break
    if not math.isfinite(a[n // 2]) or a[n // 2] != 2.0 + s * 0.5:
        raise TokenmathError("the bandwidth kernel computed a wrong value; the measurement is not trusted")
    return best, float(size)


def _matmul_numpy(dtype_name: str, budget_s: float, notes: list[str]) -> tuple[float, int]:
    """Best FLOP/s of square n x n products in `dtype_name`, n grown until one takes ~MATMUL_TARGET_S."""
    dtype = {"fp64": np.float64, "fp32": np.float32}[dtype_name]
    item = np.dtype(dtype).itemsize
    total = ram_bytes()
    n_cap = int(math.sqrt(min(ARRAY_CAP_BYTES, total / 8, _available_bytes(total) / 4) / (3 * item)))
    n_cap = max(64, n_cap // 64 * 64)
    target = min(MATMUL_TARGET_S, budget_s / 4)
    end = time.perf_counter() + budget_s
    rng = np.random.default_rng(0)

    def timed(n):
        a = rng.random((n, n), dtype=dtype)
        b = rng.random((n, n), dtype=dtype)
        out = np.empty((n, n), dtype=dtype)
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        return time.perf_counter() - t, (a, b, out)

    n = min(128, n_cap)
    timed(n)                          # warms BLAS's threads; not counted
    dt, _ = timed(n)
    while dt < target / 8 and n * 2 <= n_cap and time.perf_counter() < end:
        n *= 2
        dt, _ = timed(n)
    if dt > 0:
        n = int(n * (target / dt) ** (1 / 3)) // 64 * 64
    n = max(64, min(n, n_cap))
    if n == n_cap and dt < target / 8:
        notes.append(f"{dtype_name} matmul capped at n = {n} by the memory allowed; the figure may be low")
    dt, (a, b, out) = timed(n)
    best = 2.0 * n**3 / dt if dt > 0 else 0.0
    reps = 1
    # best of at least 5 (bounded: each takes about `target`): one product preempted on a busy machine
    # must not stand for the chip
    while (time.perf_counter() < end or reps < 5) and reps < 20:
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        dt = time.perf_counter() - t
        if dt > 0:
            best = max(best, 2.0 * n**3 / dt)
        reps += 1
    return best, n


def _probe_numpy(seconds: float, t0: float) -> ProbeResult:
    notes: list[str] = []
    cores = cpu_cores()
    dtypes = ("fp32", "fp64")
    mem_budget = 0.4 * seconds
    mm_budget = 0.6 * seconds / len(dtypes)
    by_kernel, array_bytes = _bandwidth_numpy(mem_budget, cores, notes)
    flops, sizes = {}, {}
    for d in dtypes:
        flops[d], sizes[d] = _matmul_numpy(d, mm_budget, notes)
    notes.append("numpy has no native bf16/fp16 matmul, so no half-precision figure was measured")
    return ProbeResult(
        device=cpu_name(), backend="numpy", memory_bytes_per_s=max(by_kernel.values()), flops_per_s=flops,
        memory_bytes=ram_bytes(), cores=cores, seconds=time.perf_counter() - t0, as_of=_today(),
        memory_by_kernel=by_kernel, array_bytes=array_bytes, matmul_n=sizes, notes=tuple(notes),
    )


# ---- the GPU path (torch, only when installed) ---------------------------------------------------


def _torch():
    """The torch module if it is installed (imported only now), else None."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except Exception:  # a broken install is treated as absent
        return None
    return torch


def _cuda_available(torch) -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:
        return False


def _probe_torch(torch, dev, seconds: float, t0: float) -> ProbeResult:
    """Copy/triad bandwidth and torch.matmul FLOP/s on `dev` (a torch.device), synchronised around each
    timing. Written for CUDA; on a CPU device it runs too (useful only to check the code path)."""
    notes: list[str] = []
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    if cuda:
        props = torch.cuda.get_device_properties(dev)
        name, total, cores = props.name, float(props.total_memory), int(props.multi_processor_count)
        free = float(torch.cuda.mem_get_info(dev)[0])
    else:
        name, total, cores = cpu_name(), ram_bytes(), cpu_cores()
        free = _available_bytes(total)

    def best_of(fn, budget_s):
        """Best seconds per call of fn: warm once, size a batch of calls to ~budget/4, repeat to budget."""
        end = time.perf_counter() + budget_s
        fn()
        sync()
        t = time.perf_counter()
        fn()
        sync()
        one = max(time.perf_counter() - t, 1e-6)
        calls = int(max(1, min(1000, budget_s / 4 / one)))
        best = one
        while True:
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            best = min(best, (time.perf_counter() - t) / calls)
            if time.perf_counter() >= end:
                return best

    # bandwidth: three fp32 arrays, together at most 1/8 of free memory and 3 GiB (512 MB on a CPU device)
    size = int(min(2**30 if cuda else ARRAY_CAP_BYTES / 3, free / 8 / 3)) // 4096 * 4096
    n = size // 4
    a = torch.empty(n, dtype=torch.float32, device=dev)
    b = torch.full((n,), 2.0, dtype=torch.float32, device=dev)
    c = torch.full((n,), 0.5, dtype=torch.float32, device=dev)
    mem_budget = 0.4 * seconds
    by_kernel = {
        "copy": 2 * size / best_of(lambda: a.copy_(b), mem_budget / 2),                       # read b, write a
        "triad": 3 * size / best_of(lambda: torch.add(b, c, alpha=3.0, out=a), mem_budget / 2),  # read b, c; write a
    }
    a = b = c = None  # free the arrays before the matmuls

    kinds = [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)]
    if not cuda:
        kinds = [("fp32", torch.float32)]
    elif not torch.cuda.is_bf16_supported():
        kinds = kinds[1:]
        notes.append("the device reports no bf16 support, so bf16 was not measured")
    tf32 = cuda and bool(getattr(torch.backends.cuda.matmul, "allow_tf32", False))
    flops, sizes = {}, {}
    mm_budget = 0.6 * seconds / len(kinds)
    for label, dt in kinds:
        item = torch.empty((), dtype=dt).element_size()
        n_cap = max(256, int(min(8192, math.sqrt(free / 8 / (3 * item)))) // 64 * 64)

        def operands(n):
            x = torch.rand((n, n), dtype=torch.float32, device=dev).to(dt)
            y = torch.rand((n, n), dtype=torch.float32, device=dev).to(dt)
            return x, y, torch.empty((n, n), dtype=dt, device=dev)

        n_mm = min(1024, n_cap)  # size n so one product takes ~min(50 ms, budget/8), up to n_cap
        x, y, z = operands(n_mm)
        torch.matmul(x, y, out=z)
        sync()
        t = time.perf_counter()
        torch.matmul(x, y, out=z)
        sync()
        one = max(time.perf_counter() - t, 1e-6)
        n_new = int(n_mm * (min(0.05, mm_budget / 8) / one) ** (1 / 3)) // 64 * 64
        n_mm = max(256, min(n_new, n_cap))
        x, y, z = operands(n_mm)
        per = best_of(lambda: torch.matmul(x, y, out=z), mm_budget)
        key = "tf32" if (label == "fp32" and tf32) else label
        flops[key], sizes[key] = 2.0 * n_mm**3 / per, n_mm
        x = y = z = None
    if tf32:
        notes.append("torch.backends.cuda.matmul.allow_tf32 is on, so the fp32 product ran as tf32 (labelled tf32)")
    if cuda:
        torch.cuda.empty_cache()
    return ProbeResult(
        device=name, backend="torch-cuda" if cuda else "torch-cpu", memory_bytes_per_s=max(by_kernel.values()),
        flops_per_s=flops, memory_bytes=total, cores=cores, seconds=time.perf_counter() - t0, as_of=_today(),
        memory_by_kernel=by_kernel, array_bytes=float(size), matmul_n=sizes, notes=tuple(notes),
    )


# ---- the entry point -----------------------------------------------------------------------------


def probe(*, seconds: float = 2.0, device: str = "auto") -> ProbeResult:
    """Measure this machine: sustained memory bandwidth and matmul FLOP/s per dtype, in about `seconds`.

    device: "auto" (a CUDA GPU through PyTorch when both are present, else the CPU with numpy),
    "cpu" (numpy), or "cuda" / "cuda:N" (PyTorch required).
    """
    s = _check_seconds(seconds)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", device):
        raise TokenmathError(f"device = {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    t0 = time.perf_counter()
    if device == "cpu":
        return _probe_numpy(s, t0)
    torch = _torch()
    if device == "auto":
        if torch is None or not _cuda_available(torch):
            return _probe_numpy(s, t0)
        return _probe_torch(torch, torch.device("cuda", torch.cuda.current_device()), s, t0)
    if torch is None:
        raise TokenmathError(f"device = {device!r} needs PyTorch, which is not installed (pip install torch)")
    if not _cuda_available(torch):
        raise TokenmathError(f"device = {device!r}, but PyTorch sees no CUDA device")
    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise TokenmathError(f"device = {device!r}, but PyTorch sees {torch.cuda.device_count()} CUDA device(s)")
    return _probe_torch(torch, torch.device("cuda", index), s, t0)


# ---- the catalog table ---------------------------------------------------------------------------

# Which measured dtype fills the catalog's bf16_flops_per_s, in order of preference. The catalog has
# no fp16/fp32/fp64 fields; a system needs at least one FLOP/s field, so a machine without native
# bf16 puts its best wider figure there and the notes say which.
_BF16_FROM = ("bf16", "fp16", "tf32", "fp32", "fp64")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def default_name(result: ProbeResult) -> str:
    """A catalog name for the probed machine: 'probe-' and the device's name in lower-case words."""
    slug = re.sub(r"[^a-z0-9]+", "-", result.device.lower()).strip("-")[:40].strip("-")
    return f"probe-{slug or 'machine'}"


def _num(x: float) -> str:
    return f"{float(x):.4g}".replace("e+", "e")


def system_toml(result: ProbeResult, name: str) -> str:
    """A catalog TOML with one [systems.NAME] table for the probed machine, which `--catalog` accepts.

    Mapping: memory bandwidth -> hbm_bytes_per_s, RAM (or device memory) -> hbm_bytes, the measured
    matmul rate -> bf16_flops_per_s (bf16 where it ran, else the best of fp16, tf32, fp32, fp64, named in
    `notes`), one chip in a one-chip domain, source and as_of from the probe.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenmathError(f"system name {name!r} must be 1-64 letters, digits, '-' or '_', starting with a "
                             "letter or digit")
    from .catalog import _LIMITS  # the catalog's physical ranges, so a file it would refuse is never written

    filled = next((d for d in _BF16_FROM if result.flops_per_s.get(d, 0) > 0), None)
    if filled is None:
        raise TokenmathError("the probe measured no matmul FLOP/s, so no catalog system can be written")
    values = {"bf16_flops_per_s": result.flops_per_s[filled], "hbm_bytes": result.memory_bytes,
              "hbm_bytes_per_s": result.memory_bytes_per_s}
    for key, v in values.items():
        least, most, unit = _LIMITS[key]
        if not (math.isfinite(v) and least <= v <= most):
            raise TokenmathError(f"the probe measured {key} = {v:g}, outside the catalog's range {least:g} .. "
                                 f"{most:g} {unit}; not writing it")
    measured = ", ".join(f"{d} {v / 1e9:.4g} GFLOP/s" for d, v in result.flops_per_s.items())
    kernels = ", ".join(f"{k} {v / 1e9:.4g} GB/s" for k, v in result.memory_by_kernel.items())
    kind = "device memory" if result.backend == "torch-cuda" else "installed RAM"
    note = [
        f"measured matmul: {measured}",
        "bf16_flops_per_s holds the measured bf16 rate" if filled == "bf16" else
        f"bf16_flops_per_s holds the measured {filled} rate: this machine ran no native bf16 matmul",
        f"hbm_bytes_per_s is the best sustained {'copy/triad' if kernels else 'copy'} bandwidth"
        + (f" ({kernels}, bytes read + written)" if kernels else ""),
        f"hbm_bytes is the {kind}",
        *result.notes,
    ]
    src = f"tokenmath probe on {result.device}, {result.as_of}"
    lines = [
        f"# Written by `tokenmath probe` ({result.backend}, {result.seconds:.1f} s) on {result.as_of}.",
        "# Use it with: tokenmath step --catalog THIS_FILE --system " + name + " --model llama-3.1-8b",
        "",
        f"[systems.{name}]",
        f"description = {json.dumps(f'{result.device} ({result.cores} cores), measured by tokenmath probe')}",
        f"chip = {json.dumps(result.device)}",
        f"bf16_flops_per_s = {_num(values['bf16_flops_per_s'])}    # measured {filled}",
        f"hbm_bytes = {_num(values['hbm_bytes'])}",
        f"hbm_bytes_per_s = {_num(values['hbm_bytes_per_s'])}",
        "scaleup_chips = 1",
        f"source = {json.dumps(src)}",
        f"as_of = {json.dumps(result.as_of)}",
        f"notes = {json.dumps('; '.join(note))}",
        "",
    ]
    return "\n".join(lines)


MAX_DECODE_BATCH = 256
MAX_DECODE_CONTEXT = 32768


def probe_decode(config_path, *, system: str, batches=(1, 4), contexts=(128, 512), steps: int = 3,
                 device: str = "auto") -> list[dict]:
    """Time real decode steps of a randomly initialised model built from a Hugging Face
    config.json (no weights downloaded; PyTorch and transformers needed, the `probe` extra) at each
    (batch, context), and return them as `decode_step_s` validation cases for `system` (the name
    `probe --out` gave this machine). Each step is the median of `steps` decode passes after a
    prefill of `context` tokens, synchronised on a GPU."""
    import statistics
    import time
    from pathlib import Path

    from .errors import TokenmathError

    try:
        import torch
        import transformers
    except ImportError:
        raise TokenmathError("probe --decode needs PyTorch and transformers: pip install torch transformers") from None
    from .hf import load_config

    path = Path(config_path)
    config = load_config(path)  # the bounded reader: one sentence for a missing, special, huge or non-JSON file
    for b in batches:
        if not (isinstance(b, int) and 1 <= b <= MAX_DECODE_BATCH):
            raise TokenmathError(f"decode batch {b!r}; expected 1 to {MAX_DECODE_BATCH}")
    for L in contexts:
        if not (isinstance(L, int) and 1 <= L <= MAX_DECODE_CONTEXT):
            raise TokenmathError(f"decode context {L!r}; expected 1 to {MAX_DECODE_CONTEXT} tokens")
    if not 1 <= steps <= 50:
        raise TokenmathError(f"decode steps {steps!r}; expected 1 to 50")
    cuda = device != "cpu" and torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg = transformers.AutoConfig.for_model(**config)
    model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype).to(dev).eval()
    vocab = int(getattr(cfg, "vocab_size", 32000))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cases = []
    with torch.inference_mode():
        for B in batches:
            for L in contexts:
                ids = torch.randint(0, vocab, (B, L), device=dev)
                past = model(ids, use_cache=True).past_key_values
                nxt = torch.randint(0, vocab, (B, 1), device=dev)
                times = []
                for _ in range(steps):
                    sync()
                    t = time.perf_counter()
                    out = model(nxt, past_key_values=past, use_cache=True)
                    sync()
                    times.append(time.perf_counter() - t)
                    past = out.past_key_values
                step = statistics.median(times)
                cases.append({
                    "id": f"probe-{path.stem}-b{B}-l{L}", "model": str(path), "system": system, "chips": 1,
                    "tp": 1, "ep": 1, "pp": 1, "batch": float(B), "input_tokens": float(L), "output_tokens": 1.0,
                    "metric": "decode_step_s", "measured": step,
                    "weight_dtype": "bf16" if cuda else "fp32", "kv_dtype": "bf16" if cuda else "fp32",
                    "source": f"tokenmath probe --decode on {torch.cuda.get_device_name(dev) if cuda else cpu_name()}"
                              f" (torch {torch.__version__}, transformers {transformers.__version__})",
                    "date": _today(), "engine": None,
                    "notes": f"random weights; median of {steps} decode steps after a {L}-token prefill; eager PyTorch"
                             " (no fused kernels, no CUDA graphs): expect it slower than a serving engine"})
    return cases


__all__ = ["ProbeResult", "probe", "probe_decode", "system_toml", "default_name"]
