"""`tokenmath ...`: parse the arguments, call the core, print with rich or as one JSON object.

No physics here. Bad input raises TokenmathError in the core; this layer prints its one sentence
to stderr and exits 2.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import ipaddress
import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import report as rp
from .catalog import Catalog, load_catalog
from .errors import TokenmathError
from .kvcache import kv_cache
from .params import param_counts
from . import serving as sv
from .roofline import default_replica_chips, step_time
from .specs import Dtypes, Efficiency
from .units import check_dtype, count, parse_bounded, seconds, si

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How fast and how cheaply an LLM can be served, and why (the roofline math of Reiner Pope's lecture).",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, soft_wrap=True)

# ---- the one number parser: every numeric flag, with the bound of what is physically sensible ----


@dataclass(frozen=True)
class Bound:
    """What a flag's number may be: low < x (or low <= x) <= high, whole or not, in units of `kind`."""

    high: float
    low: float = 0.0
    low_inclusive: bool = False
    whole: bool = False
    kind: str = "count"
    meaning: str = ""


_TOKENS = 1e8  # longest context / prompt / output anyone serves is ~1e7 tokens; 10x headroom
FLAGS: dict[str, Bound] = {
    # token and sequence counts
    "--batch": Bound(1e7, whole=True, meaning="sequences per replica"),
    "--reference-batch": Bound(1e7, whole=True, meaning="sequences per replica"),
    "--max-batch": Bound(1e7, low=1, low_inclusive=True, whole=True, meaning="sequences per replica"),
    "--micro-batch": Bound(1e7, low=1, low_inclusive=True, whole=True, meaning="sequences per microbatch"),
    "--context": Bound(_TOKENS, whole=True, meaning="tokens of context"),
    "--new-tokens": Bound(_TOKENS, whole=True, meaning="new tokens per sequence"),
    "--prompt-tokens": Bound(_TOKENS, whole=True, meaning="prompt tokens"),
    "--input-tokens": Bound(_TOKENS, whole=True, meaning="prompt tokens per request"),
    "--output-tokens": Bound(_TOKENS, whole=True, meaning="output tokens per request"),
    "--seq-len": Bound(_TOKENS, whole=True, meaning="tokens per sequence"),
    "--crossover-context": Bound(_TOKENS, whole=True, meaning="tokens of context"),
    "--sparse-topk": Bound(_TOKENS, low=1, low_inclusive=True, whole=True, meaning="cached tokens read per layer"),
    "--chunk-tokens": Bound(_TOKENS, low=1, low_inclusive=True, whole=True, meaning="prefill tokens per step"),
    "--draft-tokens": Bound(1000, low=0, low_inclusive=True, whole=True, meaning="tokens drafted per verify pass"),
    # rates and totals
    "--tokens-per-s": Bound(1e12, meaning="tokens per second"),
    "--demand-tokens-per-s": Bound(1e12, meaning="tokens per second"),
    "--rate": Bound(1e6, meaning="requests per second"),
    "--tokens": Bound(1e17, meaning="training tokens"),
    "--chip-hours": Bound(1e12, meaning="chip-hours"),
    "--active-params": Bound(1e15, meaning="parameters"),
    "--flops": Bound(1e35, meaning="FLOPs"),
    "--min-tokens-per-s-per-user": Bound(1e7, meaning="tokens per second per user"),
    # chips and layouts
    "--chips": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--tp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--ep": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--pp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="pipeline stages"),
    "--dp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="replicas"),
    "--microbatches": Bound(1e5, low=1, low_inclusive=True, whole=True, meaning="microbatches"),
    "--virtual-stages": Bound(1000, low=1, low_inclusive=True, whole=True, meaning="model chunks per device"),
    "--zero": Bound(3, low=0, low_inclusive=True, whole=True, meaning="ZeRO stage"),
    "--points": Bound(10_000, low=2, low_inclusive=True, whole=True, meaning="curve points"),
    # times
    "--duration-s": Bound(1e6, kind="seconds", meaning="simulated seconds"),
    "--cadence-s": Bound(3600, kind="seconds", meaning="seconds per step"),
    "--max-ttft-s": Bound(1e6, kind="seconds", meaning="seconds"),
    "--hold-s": Bound(1e9, low=-math.inf, kind="seconds", meaning="hold time, seconds"),
    "--hop-latency": Bound(1.0, low=0, low_inclusive=True, kind="seconds", meaning="seconds per hop"),
    "--lifetime-days": Bound(36_500, meaning="days"),
    # fractions, multipliers, prices
    "--flops-efficiency": Bound(1.0, meaning="fraction of peak"),
    "--hbm-efficiency": Bound(1.0, meaning="fraction of peak"),
    "--mfu": Bound(1.0, meaning="MFU, a fraction of peak"),
    "--acceptance": Bound(1.0, low=0, low_inclusive=True, meaning="acceptance rate"),
    "--speedup": Bound(1e6, meaning="times the reference speed"),
    "--price-multiplier": Bound(1e6, meaning="times the reference price"),
    "--reuse": Bound(1e9, low=0, low_inclusive=True, meaning="reuses"),
    "--rl-factor": Bound(100, meaning="FLOPs per parameter-token"),
    "--rl-efficiency": Bound(100, meaning="MFU relative to pre-training"),
    "--inference-efficiency": Bound(100, meaning="MFU relative to pre-training"),
    "--usd-per-chip-hour": Bound(1e4, low=0, low_inclusive=True, kind="usd", meaning="$ per chip-hour"),
    "--seed": Bound(2**32 - 1, low=0, low_inclusive=True, whole=True, meaning="random seed"),
    "--port": Bound(65535, low=1, low_inclusive=True, whole=True, meaning="TCP port"),
}
MAX_SIMULATED_REQUESTS = 1_000_000  # --rate × --duration-s


def _num(value, flag: str, *, allow_zero: bool = False, shown: str | None = None) -> float:
    """Parse a flag's value with its bound from FLAGS (allow_zero lowers a '> 0' bound to '>= 0')."""
    b = FLAGS[flag]
    low_inclusive = b.low_inclusive or (allow_zero and b.low == 0)
    try:
        return parse_bounded(value, b.kind, what=flag, low=b.low, low_inclusive=low_inclusive, high=b.high,
                             whole=b.whole, meaning=b.meaning)
    except TokenmathError as e:
        if shown is None:
            raise
        raise TokenmathError(str(e).replace(f"{flag} = {value!r}", f"{flag} = {shown}", 1)) from None


class _Invalid:
    """A flag value that failed to parse: carried to the command, which reports it as one sentence."""

    def __init__(self, message: str):
        self.message = message


def _number_parser(flag: str):
    """typer parser for a typed numeric flag: our parser and bound instead of int()/float(), which take
    'nan', 'inf', '1e308' and full-width digits ('１２'). A bad value comes back as _Invalid, so the
    command reports it as one sentence (exit 2) like every other bad input."""
    whole = FLAGS[flag].whole

    def parse(value):
        if value is None or isinstance(value, (_Invalid, bool)):
            return value
        if isinstance(value, (int, float)):  # a default
            return value
        text = str(value)
        shown = text if text and text.isprintable() and text == text.strip() else repr(text)
        try:
            x = _num(text, flag, shown=shown)
        except TokenmathError as e:
            return _Invalid(str(e))
        return int(x) if whole else x

    return parse


def Num(flag: str, help: str = "", **kw):
    """typer.Option for a numeric flag, parsed by `_num` with the flag's bound."""
    metavar = "INTEGER" if FLAGS[flag].whole else "NUMBER"
    return typer.Option(flag, help=help, parser=_number_parser(flag), metavar=metavar, **kw)


def _names(text: str | None, flag: str, what: str) -> list[str] | None:
    """A comma-separated list flag: None when not given; an error when given but empty ('', ',')."""
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise TokenmathError(f"{flag} = {text!r} lists no {what}; give a comma-separated list, or leave {flag} out")
    return names


# ---- plot paths: checked before any work is done -----------------------------------------------------

PLOT_FORMATS = (".png", ".svg", ".pdf")


def _plot_path(path: Path | None, flag: str = "--plot") -> Path | None:
    """The file a chart will be written to: a supported format, in a folder that exists and is writable."""
    if path is None:
        return None
    path = Path(path)
    formats = ", ".join(PLOT_FORMATS)
    if not path.suffix:
        raise TokenmathError(f"{flag} = '{path}' has no file extension; end it in one of {formats}")
    if path.suffix.lower() not in PLOT_FORMATS:
        raise TokenmathError(f"{flag} = '{path}': format {path.suffix!r} is not supported; use one of {formats}")
    if len(path.name.encode()) > 255:
        raise TokenmathError(f"{flag}: the file name is {len(path.name.encode())} bytes long; at most 255 fit")
    _writable_folder(path.parent, flag, path)
    if path.is_dir():
        raise TokenmathError(f"{flag} = '{path}' is a folder; give a file name ending in one of {formats}")
    if path.exists() and not os.access(path, os.W_OK):
        raise TokenmathError(f"{flag} = '{path}' exists and is not writable")
    return path


def _writable_folder(folder: Path, flag: str, given: Path) -> None:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise TokenmathError(f"{flag} = '{given}': the folder '{folder}' {what}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TokenmathError(f"{flag} = '{given}': the folder '{folder}' is not writable")


def _plots_dir(folder: Path | None, flag: str = "--plots") -> Path | None:
    """A folder charts go into: an existing writable folder, or a new one inside an existing writable folder."""
    if folder is None:
        return None
    folder = Path(folder)
    if folder.exists():
        _writable_folder(folder, flag, folder)
    else:
        if len(folder.name.encode()) > 255:
            raise TokenmathError(f"{flag}: the folder name is {len(folder.name.encode())} bytes long; at most 255 fit")
        _writable_folder(folder.parent, flag, folder)
    return folder


# ---- the last guard before output: no NaN or inf reaches stdout -------------------------------------

_INPUTS: contextvars.ContextVar[str] = contextvars.ContextVar("tokenmath_inputs", default="these inputs")
_NONFINITE_TEXT = re.compile(r"(?<![\w.])[-+]?(?:nan|inf|infinity)(?![\w])", re.IGNORECASE)


def _given_inputs(fn, kwargs) -> str:
    """The flags whose values differ from their defaults, for the message of a result that is not finite."""
    import inspect

    given = []
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        return "these inputs"
    for name, v in kwargs.items():
        prm = sig.parameters.get(name)
        if prm is None or v is None or (prm.default is not inspect.Parameter.empty and v == prm.default):
            continue
        flag = "--" + name.rstrip("_").replace("_", "-")
        for meta in getattr(prm.annotation, "__metadata__", ()):
            decls = getattr(meta, "param_decls", None) or ()
            flag = next((d for d in decls if isinstance(d, str) and d.startswith("--")), flag)
        if isinstance(v, bool):
            given.append(flag)
        else:
            given.append(f"{flag} {' '.join(map(str, v)) if isinstance(v, list) else v}")
    return ", ".join(given) if given else "the default inputs"


def _nonfinite(obj, path: str = "") -> str | None:
    """The first field of a record holding inf (NaN is 'no data' in a record and prints as null)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _nonfinite(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = _nonfinite(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(obj, np.ndarray):
        return _nonfinite(obj.tolist(), path)
    elif isinstance(obj, (float, np.floating)) and math.isinf(obj):
        return path or "value"
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _nonfinite({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, path)
    return None


def _not_finite(field: str) -> TokenmathError:
    return TokenmathError(f"the result {field} is not a finite number for {_INPUTS.get()}: these inputs are outside"
                          " what tokenmath can compute; try values nearer to a real deployment")


def _check_finite(record) -> None:
    field = _nonfinite(record)
    if field:
        raise _not_finite(field)


def _check_text(lines) -> None:
    for line in lines:
        if isinstance(line, str):
            m = _NONFINITE_TEXT.search(line)
            if m:
                raise _not_finite(f"printed as {m.group(0)!r}")


# ---- shared options ------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
CatalogOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--catalog", help="Extra catalog TOML ([systems.NAME], [chips.NAME], [models.NAME]); repeatable."),
]
WeightOpt = Annotated[Optional[str], typer.Option("--weight-dtype", help="Weight dtype (bf16, fp8, fp4, mxfp4, ...); default: the checkpoint's.")]
KvOpt = Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtype.")]
ComputeOpt = Annotated[Optional[str], typer.Option("--compute-dtype", help="Matmul dtype; default: the weight dtype (or the next wider the chip supports).")]
ChipsOpt = Annotated[Optional[int], Num("--chips", help="Chips in one replica; default: the scale-up domain (box or rack), or for TPU pods the fewest that hold weights + KV.")]


def handles_errors(fn):
    """Turn TokenmathError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        token = _INPUTS.set(_given_inputs(fn, kwargs))
        try:
            for v in kwargs.values():
                if isinstance(v, _Invalid):
                    raise TokenmathError(v.message)
            # where charts go is checked before any work, so a bad path fails at once
            if kwargs.get("plot") is not None:
                kwargs["plot"] = _plot_path(kwargs["plot"])
            if kwargs.get("plots_dir") is not None:
                kwargs["plots_dir"] = _plots_dir(kwargs["plots_dir"])
            # numpy's RuntimeWarnings (overflow, invalid value) would print before the error sentence;
            # a non-finite result is caught by the output guard instead
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return fn(*args, **kwargs)
        except TokenmathError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug of ours, not bad input: one line, the traceback on request
            if os.environ.get("TOKENMATH_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))} — please report it;"
                      " set TOKENMATH_DEBUG=1 for the traceback", highlight=False)
            raise typer.Exit(1) from None
        finally:
            _INPUTS.reset(token)

    return wrapper


def command(*a, **kw):
    def deco(fn):
        return app.command(*a, **kw)(handles_errors(fn))

    return deco


def _catalog(files: list[Path] | None) -> Catalog:
    return load_catalog(files or None)


def _catalog_checked(files: list[Path] | None) -> None:
    """--catalog on a command that needs no catalog data: accepted like everywhere, and read so a bad
    file is reported the same way."""
    if files:
        _catalog(files)


def _emit_json(obj) -> None:
    _check_finite(obj)
    print(rp.dumps(obj))


def _finish(json_: bool, record, lines) -> None:
    """Print one JSON object, or the plain-words lines; a non-finite result is an error, not output."""
    if json_:
        return _emit_json(record)
    lines = list(lines)
    _check_text(lines)
    for line in lines:
        out.print(line, highlight=False)


def _dtypes(weight: str | None, kv: str, compute: str | None) -> Dtypes:
    return Dtypes(weight=check_dtype(weight), kv=check_dtype(kv), compute=check_dtype(compute))


def _count(text: str, what: str, *, allow_zero: bool = False) -> float:
    """A count-like flag ('8k', '1.5M'): parsed and bounded by FLAGS[what]."""
    return _num(text, what, allow_zero=allow_zero)


SparseOpt = Annotated[Optional[int], Num("--sparse-topk", help="What-if: sparse attention reading only K cached tokens per layer.")]
SparseModeOpt = Annotated[Optional[str], typer.Option("--sparse-mode", help="With --sparse-topk: 'topk' (DeepSeek DSA: min(L, K), the default) or 'sqrt' (the lecture's sketch: √(K·L)).")]
SPARSE_MODES = ("topk", "sqrt")


def _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, *, batch=1.0,
           sparse_topk=None, sparse_mode=None):
    """Resolve the pieces every serving command shares; chips default to one replica."""
    from .kvcache import with_sparse_attention

    if sparse_mode is not None:
        if sparse_mode not in SPARSE_MODES:
            raise TokenmathError(f"--sparse-mode = {sparse_mode!r}; expected one of {', '.join(SPARSE_MODES)}")
        if sparse_topk is None:
            raise TokenmathError(f"--sparse-mode = {sparse_mode!r} needs --sparse-topk K (the cached tokens read per layer)")
    sparse_mode = sparse_mode or "topk"
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    if sparse_topk is not None:
        m = with_sparse_attention(m, sparse_topk, mode=sparse_mode)
    L = _count(context, "--context", allow_zero=True)
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    if chips is None:
        chips = default_replica_chips(m, s, L, batch, weight_dtype=dt.weight, kv_dtype=dt.kv)
    elif chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    return m, s, L, dt, chips


EfficiencyOpt = Annotated[str, typer.Option("--efficiency", help="'calibrated' (the estimate, default), 'roofline' (the bound), or a preset .json from `tokenmath calibrate`.")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="Engine profile: trtllm, vllm or sglang (default: the generic fit).")]


def _profile(efficiency: str, engine: str | None, system):
    from . import profiles as pf

    return pf.choose(efficiency, engine=engine, system=system)


def _efficiency(flops: float, hbm: float) -> Efficiency:
    if flops == 1.0 and hbm == 1.0:
        return Efficiency()
    return Efficiency(flops=flops, hbm=hbm, label="user")


# ---- catalog listings ----------------------------------------------------------------------


@command("models")
def models_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's models."""
    cat = _catalog(catalog)
    rows = []
    for name, m in sorted(cat.models.items()):
        pc = param_counts(m)
        kv = kv_cache(m, 1.0)
        rows.append({
            "name": name, "family": m.family, "total_params": pc.total, "active_params": pc.active,
            "sparsity": pc.sparsity, "kv_bytes_per_token": kv.stored_bytes_per_token,
            "native_weight_dtype": m.weight_dtype, "source": m.source, "as_of": m.as_of,
        })
    if json_:
        return _emit_json({"models": rows})
    t = Table(title="tokenmath models", title_justify="left")
    for col in ("name", "family", "total", "active", "N_tot/N_act", "KV B/token (bf16)", "weights", "as of"):
        t.add_column(col, justify="right" if col not in ("name", "family") else "left")
    for r in rows:
        t.add_row(r["name"], r["family"], count(r["total_params"], 4), count(r["active_params"], 4), f"{r['sparsity']:.1f}",
                  f"{r['kv_bytes_per_token']:,.0f}", r["native_weight_dtype"], r["as_of"])
    out.print(t)


@command("systems")
def systems_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's systems (chips in scale-up domains)."""
    cat = _catalog(catalog)
    rows = [rp.system_record(s) for _, s in sorted(cat.systems.items())]
    if json_:
        return _emit_json({"systems": rows})
    t = Table(title="tokenmath systems (per chip; FLOP/s dense)", title_justify="left")
    for col in ("name", "domain", "bf16", "fp8", "fp4", "HBM", "HBM B/s", "drain", "$/chip-h", "as of"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        t.add_row(
            r["name"] + (" *" if r["preliminary"] else ""), str(r["scaleup_chips"]),
            si(r["bf16_flops_per_s"]) if r["bf16_flops_per_s"] else "-",
            si(r["fp8_flops_per_s"]) if r["fp8_flops_per_s"] else "-",
            si(r["fp4_flops_per_s"]) if r["fp4_flops_per_s"] else "-",
            si(r["hbm_bytes"], "B"), si(r["hbm_bytes_per_s"], "B/s"), seconds(r["hbm_drain_s"]),
            f"{r['usd_per_chip_hour']:.2f}" if r["usd_per_chip_hour"] is not None else "-", r["as_of"],
        )
    out.print(t)
    out.print("* preliminary figures. '-' = not published; give it in a --catalog TOML.")


# ---- one model / one system ------------------------------------------------------------------


@command("model")
def model_cmd(
    name: Annotated[str, typer.Argument(help="Catalog name or path to a Hugging Face config.json.")],
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' = 128,000: k/M are decimal).")] = "1",
    kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Parameter counts (by part) and KV-cache bytes of one model."""
    cat = _catalog(catalog)
    m = cat.model(name)
    L = _count(context, "--context")
    rec = rp.model_record(m, L, check_dtype(kv_dtype))
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    out.print(f"[bold]{m.name}[/] ({m.family}) — {m.source}")
    t = Table(show_header=True)
    t.add_column("part")
    t.add_column("parameters", justify="right")
    for part, n in rec["breakdown"].items():
        if n is not None:
            t.add_row(part, f"{n:,}")
    t.add_row("[bold]total[/] (N_total)", f"[bold]{rec['total_params']:,}[/]")
    t.add_row("[bold]active per token[/] (N_active)", f"[bold]{rec['active_params']:,}[/]")
    out.print(t)
    out.print(
        f"sparsity N_total/N_active = {rec['sparsity']:.2f}; layers = {rec['layers']}; "
        f"native weights {rec['native_weight_dtype']} = {si(rec['weight_bytes'], 'B')}"
    )
    out.print(
        f"KV cache ({kv_dtype}) at L = {L:,.0f}: stored {rec['kv_bytes_per_token']:,.1f} B/token "
        f"({si(rec['kv_bytes_per_sequence'], 'B')} per sequence); read per decode step "
        f"{rec['kv_read_bytes_per_token']:,.1f} B/token ({si(rec['kv_read_bytes_per_step'], 'B')})"
    )


@command("system")
def system_cmd(
    name: Annotated[str, typer.Argument(help="Catalog system name.")],
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """One system's specs, with its HBM drain time and hardware ratio."""
    s = _catalog(catalog).system(name)
    rec = rp.system_record(s)
    if json_:
        return _emit_json(rec)
    t = Table(title=f"{s.name} — {s.description}", title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    units = {"flops_per_s": "FLOP/s", "bytes_per_s": "B/s", "bytes": "B"}
    for k, v in rec.items():
        if k in ("name", "description", "hardware_ratio") or v is None:
            continue
        if isinstance(v, float) and k.endswith("_s") and "per_s" not in k:
            text = seconds(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            unit = next((u for suffix, u in units.items() if k.endswith(suffix)), "")
            text = si(v, unit) if unit else f"{v:,.4g}"
        else:
            text = str(v)
        t.add_row(k, text)
    for cls, r in rec["hardware_ratio"].items():
        t.add_row(f"hardware ratio ({cls})", f"{r:.0f}")
    out.print(t)


# ---- the roofline step -----------------------------------------------------------------------


@command("step")
def step_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")],
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "1",
    context: Annotated[str, typer.Option("--context", help="Context length attended to (L, tokens; '8k' = 8,000: k/M are decimal).")] = "0",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    chips: ChipsOpt = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    flops_efficiency: Annotated[float, Num("--flops-efficiency", help="Achieved fraction of peak FLOP/s.")] = 1.0,
    hbm_efficiency: Annotated[float, Num("--hbm-efficiency", help="Achieved fraction of peak HBM bandwidth.")] = 1.0,
    efficiency: EfficiencyOpt = "calibrated",
    engine: EngineOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="Roofline: 'all' experts streamed each step, or 'expected' for the batch.")] = "all",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    allow_overflow: Annotated[bool, typer.Option(help="Report a layout whose weights + KV exceed HBM instead of failing.")] = False,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Time, cost and bound of one forward pass: the calibrated estimate (default) and the roofline bound beside it."""
    B = _count(batch, "--batch")
    S = _count(new_tokens, "--new-tokens")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, batch=B)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    eff = _efficiency(flops_efficiency, hbm_efficiency)
    prof = _profile(efficiency, engine, s)
    if eff.label == "user" and not prof.is_roofline:
        raise TokenmathError("--flops-efficiency / --hbm-efficiency scale the roofline; give them with --efficiency roofline")
    st = step_time(m, s, B, L, S, chips=chips, dtypes=dt, efficiency=eff, usd_per_chip_hour=price,
                   expert_fetch=expert_fetch, attention_flops=attention_flops)
    if not st.fits and not allow_overflow:
        raise TokenmathError(
            f"{m.name} needs {si(st.memory_bytes, 'B')} (weights + KV of {B:,.0f} × {L:,.0f} tokens) but "
            f"{chips} × {s.name} hold {si(st.hbm_bytes, 'B')}; use more --chips, a smaller --batch or --context, "
            f"narrower dtypes, or --allow-overflow"
        )
    rec = rp.step_record(st)
    est = None
    if prof.is_roofline:
        rec["estimate"] = "roofline" if eff.label == "roofline" else f"roofline × user efficiencies (flops {eff.flops:g}, hbm {eff.hbm:g})"
    else:
        from .estimate import estimate_pass, estimate_record

        est = estimate_pass(m, s, B, L, S, chips=chips, dtypes=dt, profile=prof, usd_per_chip_hour=price)
        rec["roofline"] = {k: rec[k] for k in ("step_s", "tokens_per_s", "tokens_per_s_per_chip", "usd_per_mtok", "bound")}
        rec.update(estimate_record(est))
        rec["mfu"] = float(st.flops / (est.step_s * st.assumptions.flops_per_s_per_chip * chips))
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    a = st.assumptions
    t = Table(title=f"{m.name} on {chips} × {s.name}: B = {B:,.0f}, L = {L:,.0f}, S = {S:,.0f}  —  roofline terms",
              title_justify="left")
    t.add_column("term")
    t.add_column("time", justify="right")
    t.add_column("formula")
    t.add_row("compute", seconds(st.compute_s), "B·S·(2·N_active + attn FLOPs(L)) / (chips·FLOP/s)")
    t.add_row("weight fetch", seconds(st.weights_s), "weight bytes / (chips·HBM B/s)")
    t.add_row("KV fetch", seconds(st.kv_s), "B·KV bytes read(L) / (chips·HBM B/s)")
    t.add_row("network", seconds(st.network_s), a.network)
    t.add_row("[bold]roofline step[/]", f"[bold]{seconds(st.step_s)}[/]", f"max(compute, weights + KV) → [bold]{st.bound}[/] bound")
    out.print(t)
    if est is not None:
        _print_estimate(est, price is not None or s.usd_per_chip_hour is not None)
    cost = f"${st.usd_per_mtok:,.4g} per million tokens" if st.usd_per_mtok is not None else "no price (--usd-per-chip-hour)"
    out.print(f"{'bound' if est is not None else 'roofline'}: {st.tokens_per_s:,.0f} tokens/s ({st.tokens_per_s_per_chip:,.0f} per chip); {cost}; "
              f"MFU {st.mfu:.1%}, MBU {st.mbu:.1%}; memory {si(st.memory_bytes, 'B')} of {si(st.hbm_bytes, 'B')}")
    out.print(f"[dim]{a.label if est is None else est.label}; weights {a.weight_dtype}, KV {a.kv_dtype}, compute {a.compute_dtype} "
              f"({si(a.flops_per_s_per_chip, 'FLOP/s')}/chip); {a.usd_per_chip_hour if a.usd_per_chip_hour is not None else 'no'} $/chip-h; "
              f"experts: {a.expert_fetch}; attention FLOPs {'on' if a.attention_flops else 'off'}[/]")


def _print_estimate(est, priced: bool) -> None:
    """The estimate's table: each operation's time, then the step with its 80 % band."""
    op = est.op
    t = Table(title=f"estimate ({est.label}), layout TP{op.layout.tp} EP{op.layout.ep} PP{op.layout.pp}",
              title_justify="left")
    t.add_column("operation")
    t.add_column("time", justify="right")
    names = {"dense_gemm_s": "dense GEMMs", "expert_gemm_s": "expert GEMMs (busiest rank)", "attention_s": "attention",
             "tp_comm_s": "TP all-reduce", "ep_comm_s": "EP dispatch + combine", "pp_comm_s": "PP send/recv",
             "overhead_s": "per-step overhead"}
    for k, v in op.parts.items():
        t.add_row(names[k], seconds(float(np.max(v))))
    lo, hi = est.range_80["step_s"] if est.range_80 else (est.step_s, est.step_s)
    t.add_row("[bold]estimated step[/]", f"[bold]{seconds(est.step_s)}[/]")
    out.print(t)
    cost = f"; ${est.usd_per_mtok:,.4g}/Mtok" if priced and est.usd_per_mtok is not None else ""
    out.print(f"[bold]estimate[/]: {seconds(est.step_s)} per step (80 % band {seconds(lo)} – {seconds(hi)}), "
              f"{est.tokens_per_s_per_chip:,.0f} tokens/s per chip, {est.tokens_per_s_per_user:,.1f} per user{cost}; "
              f"the roofline bound of the same pass is {seconds(est.roofline_step_s)}")


# ---- serving economics ----------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")]
SystemOpt = Annotated[str, typer.Option("--system", help="Catalog system name.")]
ContextOpt = Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' = 128,000: k/M are decimal).")]


@command("curve")
def curve_cmd(
    model: ModelOpt, system: SystemOpt,
    over: Annotated[str, typer.Option("--over", help="Sweep 'batch' (at --context) or 'context' (at --batch).")] = "batch",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Batch for --over context (default: the balance batch).")] = None,
    context: ContextOpt = "4096",
    points: Annotated[int, Num("--points", help="Grid points (log spaced).")] = 60,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curve to this PNG/SVG file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch or context (the estimate; the roofline beside it)."""
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    st = sv.curve(m, s, over=over, batch=B, context=L, points=points, chips=chips, dtypes=dt)
    prof = _profile(efficiency, engine, s)
    est = None
    if not prof.is_roofline:
        from .estimate import estimate_pass

        est = estimate_pass(m, s, st.batch, st.context, 1.0, chips=chips, dtypes=dt, profile=prof)
    if plot is not None:
        from . import plots

        title = f"{m.name} on {chips} × {s.name}"
        if over == "batch":
            plots.latency_vs_batch(st, title=f"{title}, L = {L:,.0f}", path=plot,
                                   balance_batch=sv.balance_batch(m, s, dtypes=dt), drain_s=sv.hbm_drain_s(s))
        else:
            plots.cost_vs_context(st, title=f"{title}, B = {float(np.atleast_1d(st.batch)[0]):,.0f}", path=plot,
                                  crossover=sv.balance_context(m, s, None, chips=chips, dtypes=dt))
        err.print(f"wrote {plot}")
    rec = rp.curve_record(st, over, est)
    _check_finite(rec)
    if json_:
        return _emit_json(rec)
    t = Table(title=f"{m.name} on {chips} × {s.name}: over {over} — {rec['estimate']}"
              + ("" if est is None else "; compute/weights/KV are the roofline's terms"), title_justify="left")
    for col in ("batch", "context", "step", "roofline", "compute", "weights", "KV", "tok/s/chip", "tok/s/user", "$/Mtok", "bound"):
        t.add_column(col, justify="right")
    for p in rec["points"]:
        t.add_row(f"{p['batch']:,.0f}", f"{p['context']:,.0f}", seconds(p["step_s"]), seconds(p.get("roofline_step_s", p["step_s"])), seconds(p["compute_s"]),
                  seconds(p["weights_s"]), seconds(p["kv_s"]), f"{p['tokens_per_s_per_chip']:,.0f}",
                  f"{p['tokens_per_s_per_user']:,.1f}", "-" if p["usd_per_mtok"] is None else f"{p['usd_per_mtok']:.4g}",
                  p["bound"] + ("" if p["fits"] else " (overflows HBM)"))
    out.print(t)


@command("balance")
def balance_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Solve the balance context with weights at this batch.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Floors and balance points, solved exactly: B*, B* with KV, L*, latency and cost floors."""
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    b = sv.balance(m, s, L, batch=B, chips=chips, dtypes=dt, attention_flops=attention_flops)
    _finish(json_, rp.jsonable(b), rp.render_balance(b, m, s))


@command("fastmode")
def fastmode_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    speedup: Annotated[Optional[float], Num("--speedup", help="Target speed multiplier (tokens/s per user).")] = None,
    price_multiplier: Annotated[Optional[float], Num("--price-multiplier", help="Target price multiplier.")] = None,
    reference_batch: Annotated[Optional[str], typer.Option("--reference-batch", help="The normal-mode batch (default: cost-optimal).")] = None,
    draft_tokens: Annotated[int, Num("--draft-tokens", help="Speculative decoding: tokens drafted per verify pass.")] = 0,
    acceptance: Annotated[float, Num("--acceptance", help="Speculative decoding: acceptance rate per drafted token.")] = 0.8,
    draft_model: Annotated[Optional[str], typer.Option("--draft-model", help="Draft model (default: an MTP head, cost neglected).")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the price/speed frontier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fast mode / slow mode: what a smaller batch buys in speed and costs in price."""
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    ref = None if reference_batch is None else _count(reference_batch, "--reference-batch")
    fm = sv.fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref, chips=chips, dtypes=dt)
    where = f"{m.name} on {chips} × {s.name} at L = {L:,.0f}"
    if speedup is not None and fm.batch is None:
        raise TokenmathError(
            f"--speedup = {speedup:g} is out of reach for {where}: a batch cut buys at most {fm.max_speedup:.2f}×"
            f" (batch 1, against the {seconds(fm.latency_floor_s)} latency floor); give --speedup up to"
            f" {fm.max_speedup:.2f}, or more --chips")
    if price_multiplier is not None and fm.batch is None:
        lowest = 1.0 / fm.max_saving if fm.max_saving > 0 else 1.0
        raise TokenmathError(
            f"--price-multiplier = {price_multiplier:g} is out of reach for {where}: the cheapest point (the cost"
            f" floor) is {lowest:.3g}× the reference price; give --price-multiplier >= {lowest:.3g}")
    rec = rp.fastmode_record(fm)
    if draft_tokens:
        dm = _catalog(catalog).model(draft_model) if draft_model else None
        spec = sv.speculative_decode(m, s, fm.batch or fm.reference_batch, L, draft_tokens, acceptance,
                                     draft_model=dm, chips=chips, dtypes=dt)
        rec["speculative"] = rp.jsonable(spec)
    if plot is not None:
        from . import plots

        plots.price_speed_frontier(fm, title=f"{m.name} on {chips} × {s.name}, L = {L:,.0f}", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rec, rp.render_fastmode(fm, m, s, rec.get("speculative")))


@command("traffic")
def traffic_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Global decode demand (tokens/s; '128k', '200M').")],
    batch: Annotated[Optional[str], typer.Option("--batch", help="Sequences per step (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Batching cadence: replicas, chips and $/day for a demand; queueing bounds of 'a train every T'."""
    D = _count(tokens_per_s, "--tokens-per-s")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                batch=B or 1)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    tr = sv.traffic(m, s, D, batch=B, context=L, chips=chips, dtypes=dt, usd_per_chip_hour=price)
    _finish(json_, rp.traffic_record(tr), rp.render_traffic(tr, m, s))


@command("prefill")
def prefill_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Prompt length P (tokens).")] = "8192",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Decode batch (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost per token vs pass length to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Prefill vs decode: cost per token by pass length, the output/input cost ratio, time to first token."""
    P = _count(prompt_tokens, "--prompt-tokens")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    pd = sv.prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips, dtypes=dt)
    if plot is not None:
        from . import plots

        plots.prefill_vs_decode_cost(pd, title=f"{m.name} on {chips} × {s.name}, P = {P:,.0f}", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.prefill_record(pd), rp.render_prefill(pd, m, s))


# ---- cluster layouts and the planner ---------------------------------------------------------


@command("layout")
def layout_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, Num("--chips", help="Chips the layout uses: TP·EP·PP·DP with max(TP, EP) per stage.")],
    ep: Annotated[int, Num("--ep", help="Expert-parallel degree (chips per stage for MoE).")] = 1,
    pp: Annotated[int, Num("--pp", help="Pipeline stages.")] = 1,
    tp: Annotated[int, Num("--tp", help="Tensor-parallel degree.")] = 1,
    dp: Annotated[int, Num("--dp", help="Data-parallel replicas.")] = 1,
    batch: Annotated[str, typer.Option("--batch", help="Sequences per replica (all microbatches).")] = "1",
    context: ContextOpt = "4096",
    microbatches: Annotated[Optional[int], Num("--microbatches", help="Microbatches in flight (default PP).")] = None,
    overlap: Annotated[str, typer.Option("--overlap", help="Network overlap with compute: 'none' (adds) or 'full' (max).")] = "none",
    hop_latency: Annotated[Optional[str], typer.Option("--hop-latency", help="Latency of one hop between domains ('10us').")] = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Memory per chip, network terms and the step of one layout (EP × PP × TP × DP): the estimate, with the roofline beside it."""
    from . import layout as lay

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    B = _count(batch, "--batch")
    L = _count(context, "--context", allow_zero=True)
    dt = _dtypes(weight_dtype, kv_dtype, compute_dtype)
    hop = lay.HOP_LATENCY_S_DEFAULT if hop_latency is None else _num(hop_latency, "--hop-latency")
    layout = lay.Layout(tp=tp, ep=ep, pp=pp, dp=dp, microbatches=microbatches)
    lay.check_layout(m, s, layout, chips=chips)
    st = lay.layout_step(m, s, layout, B, L, dtypes=dt, overlap=overlap, hop_latency_s=hop)
    rec = rp.layout_record(st)
    lines = rp.render_layout(st, m, s)
    prof = _profile(efficiency, engine, s)
    if prof.is_roofline:
        rec["estimate"] = "roofline"
    else:
        from .estimate import estimate_pass, estimate_record

        est = estimate_pass(m, s, B, L, 1.0, layout=layout, dtypes=dt, profile=prof)
        rec["roofline"] = {k: rec[k] for k in ("step_s", "tokens_per_s", "tokens_per_s_per_chip", "tokens_per_s_per_user",
                                               "usd_per_mtok", "bound")}
        er = estimate_record(est)
        er.pop("layout")
        rec.update(rp.jsonable(er))
        lines = [("  roofline bound: " + x[2:]) if x.startswith("  step ") else x for x in lines]
        lines += rp.render_estimate(est)
    _finish(json_, rec, lines)


@command("plan")
def plan_cmd(
    model: ModelOpt,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated systems (default: the whole catalog).")] = None,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request (I).")] = "2000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Generated tokens per request (O).")] = "500",
    min_user: Annotated[Optional[float], Num("--min-tokens-per-s-per-user", help="SLO: decode speed each user sees.")] = None,
    max_ttft: Annotated[Optional[float], Num("--max-ttft-s", help="SLO: time to first token (s).")] = None,
    demand: Annotated[Optional[str], typer.Option("--demand-tokens-per-s", help="Total output tokens/s to serve.")] = None,
    weight_dtypes: Annotated[Optional[str], typer.Option("--weight-dtypes", help="Comma-separated weight dtypes to try (default: the checkpoint's, FP8, and FP4 where the chip has it).")] = None,
    kv_dtype: KvOpt = "bf16",
    overlap: Annotated[str, typer.Option("--overlap", help="Network overlap with compute: none|full.")] = "none",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="One price for every system (else the catalog's).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, or 'local' (default: in-process).")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the frontier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Cheapest way to serve a model under SLOs, searched over layouts × batch × dtypes on the catalog (the estimate; --efficiency roofline for the bound)."""
    from rich.progress import Progress

    from . import plan as pl

    cat = _catalog(catalog)
    m = cat.model(model)
    names = _names(systems, "--systems", "system name") or sorted(cat.systems)
    syss = [cat.system(n) for n in names]
    wds = [check_dtype(x) for x in _names(weight_dtypes, "--weight-dtypes", "dtype")] if weight_dtypes is not None else "deployable"
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    D = None if demand is None else _count(demand, "--demand-tokens-per-s")
    kw = dict(input_tokens=_count(input_tokens, "--input-tokens"), output_tokens=_count(output_tokens, "--output-tokens"),
              min_tokens_per_s_per_user=min_user, max_ttft_s=max_ttft, demand_tokens_per_s=D, weight_dtypes=wds,
              kv_dtype=check_dtype(kv_dtype), overlap=overlap, usd_per_chip_hour=price, scheduler=scheduler,
              estimate=efficiency, engine=engine)
    with Progress(console=err, transient=True, disable=json_ or not sys.stderr.isatty()) as bar:
        task = bar.add_task("planning", total=len(syss))
        result = pl.plan(m, syss, progress=lambda done, total, name: bar.update(task, completed=done,
                                                                                description=f"planning: {name}"), **kw)
    if plot is not None:
        from . import plots

        plots.plan_frontier(result, title=f"{m.name}: I = {kw['input_tokens']:,.0f}, O = {kw['output_tokens']:,.0f}",
                            path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.plan_record(result), rp.render_plan(result))


@command("bubble")
def bubble_cmd(
    schedule: Annotated[str, typer.Option("--schedule", help="gpipe | 1f1b | interleaved | zb-h1 | zero-bubble")],
    pp: Annotated[int, Num("--pp", help="Pipeline stages.")],
    microbatches: Annotated[int, Num("--microbatches", help="Microbatches per step (m).")],
    virtual_stages: Annotated[int, Num("--virtual-stages", help="Model chunks per device (interleaved).")] = 1,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Training pipeline bubble and activation memory of a schedule, with a timeline."""
    from . import layout as lay

    _catalog_checked(catalog)

    b = lay.bubble(schedule, pp, microbatches, virtual_stages)
    drawn = lay.timeline(schedule, pp, microbatches) if schedule in ("gpipe", "1f1b") and pp * microbatches <= 400 else []
    rec = rp.jsonable(b) | {"timeline": drawn}
    lines = [
        f"{schedule}: PP {pp}, {microbatches} microbatches" + (f", {virtual_stages} virtual stages" if virtual_stages > 1 else ""),
        f"  bubble fraction = {b.bubble_fraction:.1%} of each device's step; activations of"
        f" {b.peak_activation_microbatches:g} microbatches held at once",
        f"  source: {b.source}",
    ] + [f"  {row}" for row in drawn]
    if drawn:
        lines.append("  one column per forward-pass time; digit n = forward of microbatch n (mod 10), letter = its"
                     " backward (a = 0, b = 1, …; two columns: backward costs 2 forwards), '.' = idle (the bubble)")
    _finish(json_, rec, lines)


# ---- training ---------------------------------------------------------------------------------

train_app = typer.Typer(no_args_is_help=True, help="Training economics: time and cost, over-training, Chinchilla, memory.")
app.add_typer(train_app, name="train")


def train_command(name):
    def deco(fn):
        return train_app.command(name)(handles_errors(fn))

    return deco


@train_command("time")
def train_time_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, Num("--chips", help="Chips training together.")],
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens D ('15.6T').")],
    mfu: Annotated[float, Num("--mfu", help="Achieved fraction of peak (Llama 3 405B: 0.38–0.43).")] = 0.4,
    dtype: Annotated[str, typer.Option("--dtype", help="Matmul dtype whose peak MFU is measured against.")] = "bf16",
    recompute: Annotated[bool, typer.Option("--recompute/--no-recompute", help="Full recompute / reversible: 8·N·D instead of 6·N·D.")] = False,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """How long, and what it costs, to train on D tokens: FLOPs = 6·N_active·D at an MFU."""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    t = tr.train_time(m, s, chips, _count(tokens, "--tokens"), mfu=mfu, dtype=check_dtype(dtype),
                      flops_per_param_token=8.0 if recompute else 6.0, usd_per_chip_hour=price)
    lines = [
        f"{m.name} on {chips:,} × {s.name}, {t.tokens:,.4g} tokens at {t.mfu:.0%} MFU ({dtype} peak {si(t.flops_per_s_per_chip, 'FLOP/s')})",
        f"  FLOPs = {t.flops_per_param_token:g}·N_active·D = {t.flops_per_param_token:g} × {t.active_params:,.4g} × {t.tokens:,.4g} = {t.flops:.3g}",
        f"  time = FLOPs / (chips · peak · MFU) = {t.days:,.1f} days ({t.chip_hours:,.0f} chip-hours), {rp.usd(t.usd)}",
    ]
    _finish(json_, rp.jsonable(t), lines)


@train_command("mfu")
def train_mfu_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens of the published run.")],
    chip_hours: Annotated[str, typer.Option("--chip-hours", help="Published chip-hours ('2.664M').")],
    dtype: Annotated[str, typer.Option("--dtype", help="Peak to measure against.")] = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """The MFU a published run implies: 6·N_active·D / (chip-hours · 3600 · peak)."""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    D, H = _count(tokens, "--tokens"), _count(chip_hours, "--chip-hours")
    u = tr.implied_mfu(m, s, D, H, dtype=check_dtype(dtype))
    _finish(json_, {"mfu": u, "dtype": dtype, "tokens": D, "chip_hours": H},
            [f"{m.name}: {D:,.4g} tokens in {H:,.4g} {s.name}-hours imply {u:.1%} of the {dtype} peak"])


@train_command("overtrain")
def train_overtrain_cmd(
    active_params: Annotated[str, typer.Option("--active-params", help="N_active ('100G').")],
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Serving demand ('50M').")],
    lifetime_days: Annotated[float, Num("--lifetime-days", help="How long the model serves.")],
    rl_factor: Annotated[float, Num("--rl-factor", help="RL FLOPs per parameter-token, 2 (forward only) to 6.")] = 4.0,
    rl_efficiency: Annotated[float, Num("--rl-efficiency", help="RL rollouts' MFU relative to pre-training.")] = 0.3,
    inference_efficiency: Annotated[float, Num("--inference-efficiency", help="Decode MFU relative to pre-training.")] = 0.3,
    fit: Annotated[str, typer.Option("--fit", help="hoffmann | besiroglu (for the exact optimum).")] = "hoffmann",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the loss/compute picture to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """How much to over-train given serving demand: equal pre-training, RL and inference costs."""
    from . import training as tr

    _catalog_checked(catalog)

    N = _count(active_params, "--active-params")
    o = tr.overtrain(N, _count(tokens_per_s, "--tokens-per-s"), lifetime_days, rl_factor=rl_factor,
                     rl_efficiency=rl_efficiency, inference_efficiency=inference_efficiency, fit=fit)
    if plot is not None:
        from . import plots

        plots.loss_frontier(o, fit, title=f"N_active = {N:.3g}, {o.inference_tokens:.3g} inference tokens", path=plot)
        err.print(f"wrote {plot}")
    e = o.exact
    lines = [
        f"inference: {o.inference_tokens:.3g} tokens over {lifetime_days:g} days; costs equalised (FLOPs / relative MFU):",
        f"  pre-training {o.pretrain_tokens:.3g} tokens (6·N per token), RL {o.rl_tokens:.3g} tokens ({o.rl_flops_per_param_token:g}·N"
        f" at {o.rl_efficiency:g} efficiency), inference at {o.inference_efficiency:g} efficiency",
        f"  Chinchilla: 20 × {N:.3g} = {o.chinchilla_tokens:.3g} tokens -> over-trained {o.overtraining_factor:,.0f}×"
        f" ({o.pretrain_tokens / N:,.0f} tokens per active parameter)",
        f"  the exact optimum ({fit} fit, same quality as a Chinchilla-trained {N:.3g}): {e.params:.3g} params on {e.tokens:.3g}"
        f" tokens ({e.tokens_per_param:,.0f} per param), {e.saving_fraction:.0%} less total compute — a loss fit far outside"
        " its data, so read it as a direction",
    ]
    _finish(json_, rp.jsonable(o), lines)


@train_command("chinchilla")
def train_chinchilla_cmd(
    flops: Annotated[str, typer.Option("--flops", help="Training compute C (FLOPs, e.g. 5.76e23).")],
    fit: Annotated[str, typer.Option("--fit", help="hoffmann | besiroglu")] = "hoffmann",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Compute-optimal model size and tokens for a budget, and the loss the fit predicts."""
    from . import training as tr

    _catalog_checked(catalog)

    C = _count(flops, "--flops")
    co = tr.compute_optimal(C, fit)
    n20 = (C / (6 * 20)) ** 0.5
    rec = rp.jsonable(co) | {"rule_of_20": {"params": n20, "tokens": 20 * n20,
                                          "loss": tr.chinchilla_loss(n20, 20 * n20, fit)},
                           "fit_source": tr.get_fit(fit).source}
    lines = [
        f"C = {C:.3g} FLOPs ({fit}: {tr.get_fit(fit).source})",
        f"  compute-optimal: N = {co.params:.3g} params, D = {co.tokens:.3g} tokens ({co.tokens_per_param:.1f} per param),"
        f" loss {co.loss:.4f}",
        f"  20-tokens-per-param rule: N = {n20:.3g}, D = {20 * n20:.3g}, loss {rec['rule_of_20']['loss']:.4f}",
    ]
    _finish(json_, rec, lines)


@train_command("memory")
def train_memory_cmd(
    model: ModelOpt, system: SystemOpt,
    chips: Annotated[int, Num("--chips", help="DP × TP × PP.")],
    dp: Annotated[int, Num("--dp", help="Data-parallel degree.")], tp: Annotated[int, Num("--tp", help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, Num("--pp", help="Pipeline stages.")] = 1, ep: Annotated[int, Num("--ep", help="Expert parallelism (inside DP × TP).")] = 1,
    micro_batch: Annotated[int, Num("--micro-batch", help="Sequences per microbatch (b).")] = 1,
    seq_len: Annotated[str, typer.Option("--seq-len", help="Sequence length (tokens).")] = "4096",
    zero: Annotated[int, Num("--zero", help="ZeRO stage 0|1|2|3 (3 = FSDP).")] = 1,
    recompute: Annotated[str, typer.Option("--recompute", help="none | selective | full | reversible")] = "selective",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the memory stack to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Training memory per chip: weights, gradients, Adam state, activations; does it fit?"""
    from . import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    S = _count(seq_len, "--seq-len")
    mem = tr.train_memory(m, s, dp=dp, tp=tp, pp=pp, ep=ep, micro_batch=micro_batch, seq_len=int(S), zero=zero,
                          recompute=recompute, chips=chips)
    if plot is not None:
        from . import plots

        plots.memory_stack(mem, title=f"{m.name}: DP{dp} TP{tp} PP{pp}, ZeRO-{zero}, {recompute}", path=plot)
        err.print(f"wrote {plot}")
    lines = [
        f"{m.name} on {chips} × {s.name} (DP {dp}, TP {tp}, PP {pp}, EP {ep}), micro-batch {micro_batch} × {S:,.0f} tokens",
        f"  weights {si(mem.weights_bytes_per_chip, 'B')} + gradients {si(mem.grads_bytes_per_chip, 'B')} + optimizer"
        f" {si(mem.optimizer_bytes_per_chip, 'B')} (ZeRO-{zero}) + activations {si(mem.activation_bytes_per_chip, 'B')}"
        f" ({recompute}) = {si(mem.total_bytes_per_chip, 'B')} of {si(mem.hbm_bytes_per_chip, 'B')}:"
        f" {'fits' if mem.fits else 'does NOT fit'}",
        f"  compute per token: {mem.flops_per_param_token:g}·N ({'one extra forward' if mem.flops_per_param_token > 6 else 'no recompute of whole layers'})",
    ]
    _finish(json_, rp.jsonable(mem), lines)


# ---- reading prices ---------------------------------------------------------------------------

prices_app = typer.Typer(no_args_is_help=True, help="What API price sheets reveal; KV-cache memory tiers.")
app.add_typer(prices_app, name="prices")


def prices_command(name):
    def deco(fn):
        return prices_app.command(name)(handles_errors(fn))

    return deco


@prices_command("sheets")
def prices_sheets_cmd(json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """List the catalog's price sheets ($ per million tokens)."""
    cat = _catalog(catalog)
    rows = [rp.jsonable(p) for _, p in sorted(cat.prices.items())]
    if json_:
        return _emit_json({"sheets": rows})
    t = Table(title="API price sheets ($ per million tokens)", title_justify="left")
    for col in ("name", "provider", "input", "output", "out/in", "cache read", "cache write", ">ctx tier", "fast", "as of"):
        t.add_column(col, justify="left" if col in ("name", "provider") else "right")
    for p in rows:
        writes = ", ".join(f"{w[1]:g}@{w[0] / 60:g}m" for w in p["cache_write_usd_per_mtok"]) or "-"
        tier = (f"{p['long_context_threshold_tokens']:,.0f}: {p['long_context_input_usd_per_mtok'] or '-'}/"
                f"{p['long_context_output_usd_per_mtok'] or '-'}") if p["long_context_threshold_tokens"] else "-"
        fast = f"{p['fast_price_multiplier']:g}× price" + (f", {p['fast_speedup']:g}× speed" if p["fast_speedup"] else "") \
            if p["fast_price_multiplier"] else "-"
        t.add_row(p["name"], p["provider"], f"{p['input_usd_per_mtok']:g}", f"{p['output_usd_per_mtok']:g}",
                  f"{p['output_usd_per_mtok'] / p['input_usd_per_mtok']:.1f}",
                  "-" if p["cache_read_usd_per_mtok"] is None else f"{p['cache_read_usd_per_mtok']:g}", writes, tier, fast,
                  p["as_of"])
    out.print(t)


@prices_command("infer")
def prices_infer_cmd(
    sheet: Annotated[str, typer.Argument(help="A price sheet name (tokenmath prices sheets).")],
    system: Annotated[str, typer.Option("--system", help="Hardware assumed behind the API.")] = "gb200-nvl72",
    active_params: Annotated[str, typer.Option("--active-params", help="Assumed N_active (the lecture's 100B).")] = "100G",
    model: Annotated[Optional[str], typer.Option("--model", help="A stand-in model for the batch/ratio analysis.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Compute dtype for the KV crossover.")] = "fp8",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What a price sheet implies: KV bytes/token, candidate attention layouts, how memory bound decode is, cache tiers, fast mode."""
    from . import prices as pr

    cat = _catalog(catalog)
    sh, s = cat.price_sheet(sheet), cat.system(system)
    m = cat.model(model) if model else None
    inf = pr.infer(sh, s, active_params=_count(active_params, "--active-params"), model=m, storage=cat.storage,
                   models=cat.models, dtype=check_dtype(dtype))
    _finish(json_, rp.jsonable(inf), rp.render_infer(inf, sh))


@prices_command("kv-from-tier")
def prices_kv_cmd(
    active_params: Annotated[str, typer.Option("--active-params", help="N_active.")],
    crossover_context: Annotated[str, typer.Option("--crossover-context", help="Context of the price step ('200k').")],
    system: SystemOpt,
    dtype: Annotated[str, typer.Option("--dtype", help="Compute dtype.")] = "fp8",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """KV bytes per token implied by a long-context price step: 2·N_active·BW / (FLOP/s · L*)."""
    from . import prices as pr

    cat = _catalog(catalog)
    s = cat.system(system)
    N, L = _count(active_params, "--active-params"), _count(crossover_context, "--crossover-context")
    kv = pr.kv_from_tier(N, L, s, dtype=check_dtype(dtype))
    layouts = pr.candidate_layouts(kv, models=cat.models)
    lines = [f"kv = 2 × {N:.3g} × {si(s.chip.hbm_bytes_per_s, 'B/s')} / ({si(s.flops_per_s(dtype), 'FLOP/s')} × {L:,.0f})"
             f" = {kv:,.0f} bytes per token"] + [f"  {x.description}: {x.bytes_per_token:,.0f} B ({x.ratio:.2f}×)" for x in layouts]
    _finish(json_, {"kv_bytes_per_token": kv, "candidate_layouts": rp.jsonable(layouts)}, lines)


@prices_command("tiers")
def prices_tiers_cmd(system: SystemOpt, json_: JsonOpt = False, catalog: CatalogOpt = None) -> None:
    """Memory tiers of a system: capacity, bandwidth and drain time (capacity / bandwidth)."""
    from . import prices as pr

    cat = _catalog(catalog)
    ts = pr.tiers(cat.system(system), cat.storage)
    rec = {k: {"capacity_bytes": t.bytes, "bytes_per_s": t.bytes_per_s, "drain_s": t.drain_s, "device": t.name,
               "usd_per_byte_s": t.usd_per_byte_s, "source": t.source} for k, t in ts.items()}
    lines = [f"{k:>5}: {si(t.bytes, 'B')} at {si(t.bytes_per_s, 'B/s')} -> drain {seconds(t.drain_s)} ({t.name})"
             for k, t in ts.items()]
    _finish(json_, rec, lines)


@prices_command("cache")
def prices_cache_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Cached prompt length P.")],
    hold_s: Annotated[str, typer.Option("--hold-s", help="How long the cache is kept ('300', '1h').")],
    reuse: Annotated[float, Num("--reuse", help="Expected reuses while held (hit rate × requests).")] = 1.0,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs hold time per tier to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Where to keep a prompt's KV cache for a hold time: recompute, HBM, DDR, flash or disk."""
    from . import prices as pr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    hs = _num(hold_s, "--hold-s")
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    cc = pr.cache_costs(m, s, _count(prompt_tokens, "--prompt-tokens"), hs, reuse=reuse, storage=cat.storage,
                        dtypes=_dtypes(weight_dtype, kv_dtype, None), usd_per_chip_hour=price)
    if plot is not None:
        from . import plots

        plots.cache_cost_vs_hold(m, s, cc.prompt_tokens, cat.storage, reuse=reuse,
                                 title=f"{m.name} on {s.name}: {cc.prompt_tokens:,.0f}-token prompt", path=plot)
        err.print(f"wrote {plot}")
    _finish(json_, rp.cache_record(cc), rp.render_cache(cc, m, s))


@prices_command("long-context")
def prices_long_context_cmd(
    system: SystemOpt = "gb200-nvl72",
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated models (default: the catalog's).")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Why contexts stall near 100k–1M: each model's KV crossover and where attention FLOPs matter."""
    from . import prices as pr

    cat = _catalog(catalog)
    s = cat.system(system)
    names = _names(models, "--models", "model name") or sorted(n for n, m in cat.models.items() if not m.is_totals_only)
    rows = [pr.long_context(cat.model(n), s) for n in names]
    lines = [f"{s.name}: L* = context where KV fetch per token = compute per token (weights amortised); L_eq = where"
             " attention FLOPs = weight FLOPs"]
    for r in rows:
        lines.append(f"  {r.model:<18} KV {r.kv_bytes_per_token:>9,.0f} B/token   L* {('none' if r.balance_context is None else f'{r.balance_context:,.0f}'):>9}"
                     f"   L_eq {r.attention_equals_weights_context:>11,.0f}   cost 1M/8k {('-' if r.cost_ratio_1m_vs_8k is None else f'{r.cost_ratio_1m_vs_8k:,.1f}×'):>8}")
    lines.append("  cost 1M/8k: $/token at 1M tokens of context over $/token at 8k (weights amortised). Where L* < 8k the"
                 " KV read sets the cost at both lengths, so the ratio is the context ratio, 1,000,000/8,192 ≈ 122×,"
                 " whatever the model; windows, sparse attention (DSA) or an L* above 8k make it differ.")
    sold = pr.longest_sold_context(cat.prices.values())
    if sold.tokens:
        lines.append(f"  sold today: prompts up to {sold.tokens:,.0f} tokens ({', '.join(sold.sheets)}; the sheets' published"
                     " input limits), past the lecture's 100-200k plateau, at the long-context tier's price")
    _finish(json_, {"system": s.name, "models": rp.jsonable(rows), "longest_sold_context": rp.jsonable(sold)}, lines)


# ---- accuracy -----------------------------------------------------------------------------------


@command("validate")
def validate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files (JSON lines); default: the shipped cases.")] = None,
    efficiency: Annotated[str, typer.Option("--efficiency", help="'calibrated' (each case: its engine and vendor profile), 'roofline' (the bound), or a preset .json.")] = "calibrated",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw predicted vs measured to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Predicted vs measured on validation cases: per-case error and median / p90 by metric, system, source, vendor, engine, model class."""
    from . import profiles as pf
    from . import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    preset = None
    if efficiency == "roofline":
        prof, fitted = pf.ROOFLINE_PROFILE, None
    else:
        if efficiency not in ("calibrated", "estimate") and not efficiency.endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        preset = pf.preset_record(None if efficiency in ("calibrated", "estimate") else efficiency)
        prof, fitted = "calibrated", set(preset.get("systems", []))
    r = vd.validate(cases, prof, _catalog(catalog), fitted_systems=fitted, preset=preset)
    if plot is not None:
        from . import plots

        plots.predicted_vs_measured(r, title=f"{len(r.rows)} cases, {r.label}", path=plot)
        err.print(f"wrote {plot}")
    rec = rp.validation_record(r, preset)
    _finish(json_, rec, rp.render_validation(r, preset))


@command("calibrate")
def calibrate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files to fit on (default: the shipped cases).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the preset (default: print only).")] = None,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="Skip cross-validation (fit only; no bands).")] = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fit the calibrated profiles (generic, per engine, per vendor; scipy) and report their cross-validated error."""
    from . import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise TokenmathError("calibration needs scipy: pip install 'tokenmath[fit]'") from None
    rec = vd.calibrate(cases, _catalog(catalog), progress=lambda i, n, g: err.print(f"  fold {i}/{n}: {g}"),
                       cross_validate=not no_cv)
    if out is not None:
        out.write_text(json.dumps(rp.jsonable(rec), indent=2))
        err.print(f"wrote {out}")
    _finish(json_, rp.jsonable(rec), rp.render_calibration(rec))


@command("simulate")
def simulate_cmd(
    model: ModelOpt, system: SystemOpt,
    rate: Annotated[str, typer.Option("--rate", help="Requests per second (Poisson); comma-separate to sweep.")] = "10",
    duration_s: Annotated[float, Num("--duration-s", help="Simulated seconds.")] = 600.0,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request.")] = "1000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Output tokens per request.")] = "200",
    max_batch: Annotated[Optional[int], Num("--max-batch", help="Batch cap (default: what fits in HBM).")] = None,
    prefill: Annotated[str, typer.Option("--prefill", help="'first' (own step) or 'chunked' (folded into decode steps).")] = "chunked",
    chunk_tokens: Annotated[int, Num("--chunk-tokens", help="Prefill tokens per step when chunked.")] = 2048,
    cadence_s: Annotated[Optional[float], Num("--cadence-s", help="Fixed step time: a train departs every T.")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    seed: Annotated[int, Num("--seed", help="Random seed of the arrivals.")] = 0,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler for sweeps ('local' or an address).")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Discrete-event simulation of one replica: TTFT, time per output token and throughput (p50/p90/p99)."""
    from rich.progress import Progress

    from . import simulate as simmod

    rates = [float(_count(r, "--rate")) for r in _names(rate, "--rate", "rate")]
    if len(rates) > 100:
        raise TokenmathError(f"--rate lists {len(rates)} rates; sweep at most 100 at once")
    n_req = max(rates) * duration_s
    if n_req > MAX_SIMULATED_REQUESTS:
        raise TokenmathError(
            f"--rate {max(rates):g} × --duration-s {duration_s:g} = {n_req:.3g} simulated requests, beyond the"
            f" {MAX_SIMULATED_REQUESTS:,} tokenmath simulates; lower --rate or shorten --duration-s")
    n_in, n_out = _count(input_tokens, "--input-tokens"), _count(output_tokens, "--output-tokens")
    m, s, L, dt, chips = _setup(catalog, model, system, input_tokens, weight_dtype, kv_dtype, None, chips)
    eff, overhead = Efficiency(), 0.0
    prof = _profile(efficiency, engine, s)
    if not prof.is_roofline:
        from .estimate import linearised

        eff, overhead = linearised(m, s, chips=chips, dtypes=dt, profile=prof, input_tokens=n_in, output_tokens=n_out)
    runs = [dict(rate_per_s=r, duration_s=duration_s, input_tokens=int(n_in),
                 output_tokens=int(n_out), chips=chips, max_batch=max_batch,
                 prefill=prefill, chunk_tokens=chunk_tokens, cadence_s=cadence_s, dtypes=dt, efficiency=eff,
                 overhead_s=overhead, seed=seed) for r in rates]
    with Progress(console=err, transient=True, disable=json_ or not sys.stderr.isatty()) as bar:
        task = bar.add_task("simulating", total=len(runs))
        results = simmod.simulate_many(m, s, runs, scheduler=scheduler,
                                       progress=lambda i, n, lab: bar.update(task, completed=i))
    label = "roofline" if prof.is_roofline else eff.label
    recs = [rp.jsonable(r) | {"rate_per_s": run["rate_per_s"], "estimate": label} for r, run in zip(results, runs)]
    lines = [f"{m.name} on {chips} × {s.name}: {duration_s:g} s of Poisson arrivals, prefill {prefill}, batch cap"
             f" {results[0].max_batch}" + (f", fixed cadence {seconds(cadence_s)}" if cadence_s else "") + f"; step times: {label}"]
    for rec in recs:
        lines.append(f"  {rec['rate_per_s']:g} req/s: {rec['output_tokens_per_s']:,.0f} output tokens/s, mean batch"
                     f" {rec['mean_batch']:,.0f}; TTFT p50 {seconds(rec['ttft_s']['p50'])} p99 {seconds(rec['ttft_s']['p99'])};"
                     f" per token p50 {seconds(rec['tpot_s']['p50'])}; completed {rec['completed']:,} of {rec['requests']:,}")
    _finish(json_, recs[0] if len(recs) == 1 else {"runs": recs, "estimate": label}, lines)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$", re.ASCII)


def _check_host(host: str) -> bool:
    """A bind address: an IP address or a host name; True when it is loopback (this machine only)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
        raise TokenmathError(f"--host = {host!r} is not an IP address or host name; e.g. 127.0.0.1 (this machine only)"
                             " or 0.0.0.0 (every interface)")
    return host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost")


@command("serve")
def serve_cmd(
    port: Annotated[int, Num("--port", help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: this machine only).")] = "127.0.0.1",
) -> None:
    """Start the interactive blackboard (Streamlit; optional extra `web`) on http://HOST:PORT."""
    loopback = _check_host(host)
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise TokenmathError("the blackboard needs Streamlit: pip install 'tokenmath[web]'") from None
    if not 1 <= port <= 65535:
        raise TokenmathError(f"--port = {port} must be between 1 and 65535")
    from .web import APP

    args = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.maxUploadSize", "1",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none"]
    if not loopback:
        err.print(f"[bold yellow]warning:[/] --host {escape(host)} is not this machine only: anyone who can reach it"
                  " can use the blackboard (it has no login); leave --host out to bind 127.0.0.1", highlight=False)
    err.print(f"tokenmath blackboard on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, args)


# ---- the main job ------------------------------------------------------------------------------


@command("report")
def report_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")] = "deepseek-v3",
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")] = "gb200-nvl72",
    context: Annotated[str, typer.Option("--context", help="Context length L (tokens).")] = "4096",
    chips: Annotated[Optional[int], Num("--chips", help="Chips per replica; default the scale-up domain.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    plots_dir: Annotated[Optional[Path], typer.Option("--plots", help="Write the blackboard charts (PNG) to this folder.")] = None,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """Explain a model on a system in plain words (default: DeepSeek-V3 on a GB200 NVL72, the lecture's example)."""
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    L = _count(context, "--context", allow_zero=True)
    if chips is not None and chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    r = rp.build_report(m, s, context=L, chips=chips, dtypes=_dtypes(weight_dtype, kv_dtype, compute_dtype))
    rec = rp.report_record(r)
    _check_finite(rec)
    if plots_dir is not None:
        plots_dir.mkdir(exist_ok=True)  # its parent exists (checked before the work)
    written = rp.write_report_plots(r, plots_dir) if plots_dir is not None else []
    rec = rec | {"plots": [str(p) for p in written]}
    if json_:
        return _emit_json(rec)
    out.rule(f"[bold]tokenmath report: {m.name} on {r.chips} × {s.name}[/]")
    for heading, lines in rp.render_report(r):
        out.print(f"\n[bold cyan]{heading}[/]")
        for line in lines:
            out.print(line, highlight=False)
    if written:
        out.print("\n[bold cyan]Charts[/]")
        for p in written:
            out.print(f"  {p}", highlight=False)


def main() -> None:
    try:
        app()
    except TokenmathError as e:  # raised outside a command (e.g. while parsing)
        err.print(f"error: {escape(str(e))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
