"""`tokenmath ...`: parse the arguments, call the core, print with rich or as one JSON object.

No physics here. Bad input raises TokenmathError in the core; this layer prints its one sentence
to stderr and exits 2.

The commands live in one module per group (listing, serving, cluster, training, prices, validation,
simulate, web, report), each registered on `app` when this package is imported. Those modules import
only typer and this package at the top; the core, numpy, rich tables and matplotlib are imported inside
the command that uses them, so `tokenmath --help` and a single command start fast
(benchmarks/bench_startup.py; tests/test_startup.py keeps the heavy modules out of `--help`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import contextlib
import functools
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import TokenmathError
from ..units import check_dtype, count, parse_bounded, seconds, si  # noqa: F401  (count, seconds, si: for the command modules)

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..specs import Dtypes, Efficiency

app = typer.Typer(rich_markup_mode=None, 
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How fast and how cheaply an LLM can be served, and why (the roofline math of Reiner Pope's lecture).",
)


class _LazyConsole:
    """A rich Console made on first use: rich.console costs ~0.07 s to import, which `--help` need not pay."""

    def __init__(self, make):
        self._make = make
        self._console = None

    def get(self):
        """The Console itself (for rich.progress.Progress(console=...))."""
        if self._console is None:
            self._console = self._make()
        return self._console

    def __getattr__(self, name):
        return getattr(self.get(), name)


# a zero printed with a minus sign ("-0", "-0.00", "-0.0%"): a rounding artefact, never a result
_NEGATIVE_ZERO = re.compile(r"(^|[^\w.\-]|\x1b\[[0-9;]*m)-(0(?:\.0+)?(?:e[+-]?0+)?)(?!\d|[.,]\d)")


def unsigned_zeros(text: str) -> str:
    """`text` with every printed negative zero ('-0.00 s') written as zero ('0.00 s')."""
    return _NEGATIVE_ZERO.sub(r"\1\2", text) if "-0" in text else text


class _Stdout:
    """sys.stdout (looked up at each write, so a test runner's swap is seen) with negative zeros unsigned."""

    def write(self, text: str) -> int:
        return sys.stdout.write(unsigned_zeros(text))

    def __getattr__(self, name):
        return getattr(sys.stdout, name)


def _stdout_console():
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich would exit 1; the command's guard exits quietly with 141
            self.quiet = True
            raise BrokenPipeError

    return _Console(file=_Stdout(), soft_wrap=True, width=None if sys.stdout.isatty() else 150)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


out = _LazyConsole(_stdout_console)
err = _LazyConsole(_stderr_console)

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
    least: float = 1e-9  # the smallest nonzero magnitude that means anything (a subnormal 5e-324 does not)


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
    "--prefix-tokens": Bound(_TOKENS, low=0, low_inclusive=True, whole=True, meaning="shared prefix tokens per request"),
    "--verify": Bound(20, low=0, low_inclusive=True, whole=True, meaning="candidate fleets simulated"),
    # rates and totals
    "--tokens-per-s": Bound(1e12, meaning="tokens per second"),
    "--demand-tokens-per-s": Bound(1e12, meaning="tokens per second"),
    "--rate": Bound(1e6, meaning="requests per second"),
    "--request-rate": Bound(1e7, meaning="requests per second"),
    "--tokens": Bound(1e17, meaning="training tokens", least=1.0),
    "--chip-hours": Bound(1e12, meaning="chip-hours"),
    "--active-params": Bound(1e15, meaning="parameters", least=1.0),
    "--flops": Bound(1e35, meaning="FLOPs", least=1.0),
    "--min-tokens-per-s-per-user": Bound(1e7, meaning="tokens per second per user"),
    # chips and layouts
    "--chips": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--tp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--ep": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="chips"),
    "--pp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="pipeline stages"),
    "--dp": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="replicas"),
    "--microbatches": Bound(1e5, low=1, low_inclusive=True, whole=True, meaning="microbatches"),
    "--redundant-experts": Bound(1e5, low=0, low_inclusive=True, whole=True, meaning="expert copies"),
    "--virtual-stages": Bound(1000, low=1, low_inclusive=True, whole=True, meaning="model chunks per device"),
    "--zero": Bound(3, low=0, low_inclusive=True, whole=True, meaning="ZeRO stage"),
    "--points": Bound(10_000, low=2, low_inclusive=True, whole=True, meaning="curve points"),
    # times
    "--duration-s": Bound(1e6, kind="seconds", meaning="simulated seconds"),
    "--cadence-s": Bound(3600, kind="seconds", meaning="seconds per step"),
    "--max-ttft-s": Bound(1e6, kind="seconds", meaning="seconds"),
    "--ttft-p99-s": Bound(3600, kind="seconds", meaning="seconds"),
    "--ttft-p50-s": Bound(3600, kind="seconds", meaning="seconds"),
    "--tpot-p99-s": Bound(3600, kind="seconds", meaning="seconds per output token"),
    "--tpot-p50-s": Bound(3600, kind="seconds", meaning="seconds per output token"),
    "--hold-s": Bound(1e9, low=-math.inf, kind="seconds", meaning="hold time, seconds"),
    "--hop-latency": Bound(1.0, low=0, low_inclusive=True, kind="seconds", meaning="seconds per hop"),
    "--latency-target-s": Bound(60, kind="seconds", meaning="seconds per decode step"),
    "--sparsity": Bound(1e4, low=1, low_inclusive=True, meaning="N_total / N_active"),
    "--lifetime-days": Bound(36_500, meaning="days"),
    # fractions, multipliers, prices
    "--flops-efficiency": Bound(1.0, meaning="fraction of peak"),
    "--hbm-efficiency": Bound(1.0, meaning="fraction of peak"),
    "--mfu": Bound(1.0, meaning="MFU, a fraction of peak"),
    "--acceptance": Bound(1.0, low=0, low_inclusive=True, meaning="acceptance rate"),
    "--prefix-hit-rate": Bound(1.0, low=0, low_inclusive=True, meaning="share of requests whose prefix is cached"),
    # fleet production features (issue 25): MTP in decode pools, the prefix cache's tier, a day's warm-up
    "--mtp-draft-tokens": Bound(16, low=0, low_inclusive=True, whole=True, meaning="tokens drafted per decode step"),
    "--prefill-tokens-per-rank": Bound(1_048_576, low=1, low_inclusive=True, whole=True,
                                       meaning="new tokens per attention-DP rank in one prefill pass"),
    "--mtp-acceptance": Bound(1.0, low=0, low_inclusive=True, meaning="acceptance rate of each drafted token"),
    "--prefix-cache-gb": Bound(1e9, meaning="GB of prefix cache for the whole fleet"),
    "--prefix-count": Bound(1e12, low=1, low_inclusive=True, whole=True, meaning="distinct prefixes in use"),
    "--load-gb-per-s": Bound(1e4, meaning="GB/s per chip while a replica loads its weights"),
    "--utilisation": Bound(1.0, low=0, low_inclusive=True, meaning="share of hours busy"),
    "--cost-of-capital": Bound(1.0, low=0, low_inclusive=True, meaning="a yearly rate (0.1 = 10 %)"),
    "--pue": Bound(5.0, low=1.0, low_inclusive=True, meaning="power usage effectiveness"),
    "--years": Bound(50, meaning="years"),
    "--usd-per-kwh": Bound(10.0, low=0, low_inclusive=True, kind="usd", meaning="$ per kWh"),
    "--facility-usd-per-kw-month": Bound(1e4, low=0, low_inclusive=True, kind="usd", meaning="$ per kW-month"),
    "--capex-usd-per-chip": Bound(1e8, kind="usd", meaning="$ per chip"),
    "--idle-w": Bound(1e5, low=0, low_inclusive=True, meaning="watts"),
    "--processes": Bound(64, low=1, low_inclusive=True, whole=True, meaning="worker processes"),
    "--seconds": Bound(60, low=0.1, low_inclusive=True, kind="seconds", meaning="seconds of measurement"),
    "--host-w": Bound(1e5, low=0, low_inclusive=True, meaning="watts"),
    "--board-w": Bound(1e5, meaning="watts per chip"),
    "--power-cap-w": Bound(1e5, meaning="watts per chip"),
    "--other-capex-share": Bound(10.0, low=0, low_inclusive=True, meaning="a share of the server's capex"),
    "--speedup": Bound(1e6, meaning="times the reference speed"),
    "--price-multiplier": Bound(1e6, meaning="times the reference price"),
    # an API's prices as published (prices infer): the catalog's range, $0.000001 to $10,000 per million tokens
    "--input-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million input tokens"),
    "--output-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million output tokens"),
    "--cache-read-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million cached input tokens"),
    "--cache-write-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million input tokens written to a cache"),
    "--long-context-threshold-tokens": Bound(_TOKENS, whole=True, meaning="prompt tokens where the price steps up"),
    "--long-context-input-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million input tokens past the threshold"),
    "--long-context-output-usd-per-mtok": Bound(1e4, kind="usd", meaning="$ per million output tokens past the threshold"),
    "--fast-price-multiplier": Bound(1e3, meaning="times the standard price"),
    "--fast-speedup": Bound(1e3, meaning="times the standard output speed"),
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
        x = parse_bounded(value, b.kind, what=flag, low=b.low, low_inclusive=low_inclusive, high=b.high,
                          whole=b.whole, meaning=b.meaning)
        if x != 0 and abs(x) < b.least:
            zero = " (or 0)" if low_inclusive and b.low == 0 else ""
            raise TokenmathError(f"{flag} = {value!r} is too small to mean anything: expected at least {b.least:g}"
                                 f"{zero} ({b.meaning})")
    except TokenmathError as e:
        if shown is None:
            raise
        raise TokenmathError(str(e).replace(f"{flag} = {value!r}", f"{flag} = {shown}", 1)) from None
    return x + 0.0  # -0 is 0: a signed zero never reaches a result


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


# ---- output paths: checked before any work is done (tokenmath.paths: the one policy) ----------------

PLOT_FORMATS = (".png", ".svg", ".pdf")
# every option that names a file the command writes: kwarg -> (flag, replaced without --force?, formats).
# Charts replace: a chart is a view the command redraws from its inputs. Data files (cases, presets,
# a system TOML) are read by other commands and may hold what cannot be measured again: --force.
OUTPUTS: dict[str, tuple[str, bool, tuple[str, ...] | None]] = {
    "plot": ("--plot", True, PLOT_FORMATS),
    "plot_energy": ("--plot-energy", True, PLOT_FORMATS),
    "out": ("--out", False, None),
    "cases_out": ("--cases-out", False, None),
}
OUTPUT_FOLDERS = {"plots_dir": "--plots"}  # a folder of charts (report --plots)
DashboardOpt = Annotated[bool, typer.Option("--dashboard", help="With --scheduler local: open the Dask dashboard (on 127.0.0.1 only) and print its address; off by default.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file, or write through a symbolic link at its name.")]


def _inputs(kwargs) -> list:
    """Every path-like value a command was given (its possible inputs): what an output must not be."""
    found = []
    for k, v in kwargs.items():
        if k in OUTPUTS or k in OUTPUT_FOLDERS:
            continue
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, (str, Path)) and not isinstance(x, bool):
                found.append(x)
    return found


def _check_outputs(kwargs) -> None:
    """Check every output a command names before it does any work; replace each by the path to write."""
    from .. import paths

    force = bool(kwargs.get("force"))
    inputs = None
    for key, (flag, replaces, formats) in OUTPUTS.items():
        if kwargs.get(key) is not None:
            inputs = _inputs(kwargs) if inputs is None else inputs
            kwargs[key] = paths.output_path(kwargs[key], flag, inputs=inputs, force=force, replaces=replaces,
                                            suffixes=formats)
    for key, flag in OUTPUT_FOLDERS.items():
        if kwargs.get(key) is not None:
            from ..report import REPORT_PLOT_FILES

            inputs = _inputs(kwargs) if inputs is None else inputs
            kwargs[key] = paths.output_folder(kwargs[key], flag, inputs=inputs, force=force, files=REPORT_PLOT_FILES,
                                              suffixes=PLOT_FORMATS)


def write_output(path: Path, data: str | bytes, flag: str, *, force: bool = False) -> Path:
    """Write a data output (checked by _check_outputs) atomically; it replaces a file only with --force."""
    from .. import paths

    return paths.write_atomic(path, data, flag=flag, replace=force)


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
    np = sys.modules.get("numpy")  # not imported: then no numpy value can be in the record
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
    elif np is not None and isinstance(obj, np.ndarray):
        return _nonfinite(obj.tolist(), path)
    elif isinstance(obj, (float, np.floating) if np is not None else float) and math.isinf(obj):
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
ChipsOpt = Annotated[Optional[int], Num("--chips", help="Chips in one replica; default: the scale-up domain (box or rack), or for TPU pods the fewest that hold weights + KV — grown past it (more boxes or racks) when weights + KV do not fit.")]


def one_line(text: str) -> str:
    """`text` with its line breaks written as \\n, so an error stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


PIPE_CLOSED_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a program stopped by a closed pipe
_OUTPUT_ERRNOS = {28, 122, 5}  # ENOSPC, EDQUOT, EIO: stdout cannot take the output (a full disk, /dev/full)


def _stdout_closed() -> None:
    """The reader of stdout has gone: point stdout at /dev/null so nothing more is written (nor a
    BrokenPipeError printed at exit) and the program ends quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (a test runner's buffer)
        pass


def handles_errors(fn):
    """Turn TokenmathError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import numpy as np
        from rich.markup import escape

        token = _INPUTS.set(_given_inputs(fn, kwargs))
        try:
            for v in kwargs.values():
                if isinstance(v, _Invalid):
                    raise TokenmathError(v.message)
            # where the command writes is checked before any work, so a bad path fails at once
            _check_outputs(kwargs)
            # numpy's RuntimeWarnings (overflow, invalid value) would print before the error sentence;
            # a non-finite result is caught by the output guard instead
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = fn(*args, **kwargs)
            sys.stdout.flush()  # a reader that closed the pipe is found here, not at interpreter exit
            return result
        except BrokenPipeError:  # `tokenmath ... | head`: the reader has what it wanted
            _stdout_closed()
            raise typer.Exit(PIPE_CLOSED_EXIT) from None
        except TokenmathError as e:  # one line, even where a value quoted in it holds a line break
            err.print(f"[bold red]error:[/] {escape(one_line(str(e)))}", highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, KeyboardInterrupt):
            raise
        except OSError as e:
            if e.errno not in _OUTPUT_ERRNOS or os.environ.get("TOKENMATH_DEBUG"):
                return _internal(e)
            err.print(f"[bold red]error:[/] the output could not be written ({escape(e.strerror or str(e))})",
                      highlight=False)
            raise typer.Exit(2) from None
        except Exception as e:  # a bug of ours, not bad input: one line, the traceback on request
            return _internal(e)
        finally:
            _INPUTS.reset(token)

    def _internal(e: Exception):
        from rich.markup import escape

        if os.environ.get("TOKENMATH_DEBUG"):
            raise e
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))} — please report it;"
                  " set TOKENMATH_DEBUG=1 for the traceback", highlight=False)
        raise typer.Exit(1) from None

    return wrapper


@contextlib.contextmanager
def progress(label: str, total: int, json_: bool):
    """A transient progress bar on stderr while long work runs, as update(done, total=, description=);
    off (and rich.progress not even imported) for --json or when stderr is not a terminal."""
    if json_ or not sys.stderr.isatty():
        yield lambda done, total=None, description=None: None
        return
    from rich.progress import Progress

    with Progress(console=err.get(), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def update(done, total=None, description=None):
            kw = {k: v for k, v in (("total", total), ("description", description)) if v is not None}
            bar.update(task, completed=done, **kw)

        yield update


def command(*a, **kw):
    def deco(fn):
        return app.command(*a, **kw)(handles_errors(fn))

    return deco


def _catalog(files: list[Path] | None) -> Catalog:
    from ..catalog import load_catalog

    return load_catalog(files or None)


def _catalog_checked(files: list[Path] | None) -> None:
    """--catalog on a command that needs no catalog data: accepted like everywhere, and read so a bad
    file is reported the same way."""
    if files:
        _catalog(files)


def _emit_json(obj) -> None:
    _check_finite(obj)
    from .. import report as rp

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
    from ..specs import Dtypes

    return Dtypes(weight=check_dtype(weight), kv=check_dtype(kv), compute=check_dtype(compute))


def _count(text: str, what: str, *, allow_zero: bool = False) -> float:
    """A count-like flag ('8k', '1.5M'): parsed and bounded by FLAGS[what]."""
    return _num(text, what, allow_zero=allow_zero)


CostOpt = Annotated[str, typer.Option("--cost", help="rental (the catalog's $/chip-hour) or tco (what owning costs: `tokenmath tco`).")]
COSTS = ("rental", "tco")


def _priced(system, cost: str, *, strict: bool = True):
    """The system priced by `cost`: its rental price, or what owning it costs (energy.tco). With
    strict, a system with no sourced capex is an error; else it loses its price (drops out of a
    cost comparison, which says so)."""
    if cost not in COSTS:
        raise TokenmathError(f"--cost = {cost!r}; expected 'rental' or 'tco'")
    if cost == "rental":
        return system
    from dataclasses import replace

    from ..energy import priced_by_tco, tco, tco_price_source

    if strict:
        try:
            t = tco(system)
        except TokenmathError as e:
            raise TokenmathError(f"--cost tco cannot price {system.name} ({e}); give --usd-per-chip-hour, e.g. from "
                                 f"`tokenmath tco --system {system.name} --capex-usd-per-chip X`") from None
        # tokens are made in busy hours only: a busy chip-hour costs the owning $/h ÷ the utilisation
        return replace(system, usd_per_chip_hour=t.usd_per_chip_hour / t.utilisation, price_source=tco_price_source(t))
    return priced_by_tco(system)


SparseOpt = Annotated[Optional[int], Num("--sparse-topk", help="What-if: sparse attention reading only K cached tokens per layer.")]
SparseModeOpt = Annotated[Optional[str], typer.Option("--sparse-mode", help="With --sparse-topk: 'topk' (DeepSeek DSA: min(L, K), the default) or 'sqrt' (the lecture's sketch: √(K·L)).")]
SPARSE_MODES = ("topk", "sqrt")


def _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips, *, batch=1.0,
           sparse_topk=None, sparse_mode=None):
    """Resolve the pieces every serving command shares (api.resolve_serving); chips default to one
    replica; the context is a count of tokens."""
    from ..api import resolve_serving

    if chips is not None and chips < 1:
        raise TokenmathError(f"--chips = {chips} must be >= 1")
    L = _count(context, "--context", allow_zero=True)
    m, s, _, dt, chips = resolve_serving(_catalog(catalog), model, system, L, weight_dtype, kv_dtype, compute_dtype,
                                         chips, batch=batch, sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    return m, s, L, dt, chips


EfficiencyOpt = Annotated[str, typer.Option("--efficiency", help="'calibrated' (the estimate, default), 'roofline' (the bound), or a preset .json from `tokenmath calibrate`.")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="Engine profile: trtllm, vllm or sglang (default: the generic fit); add a run's features with +, e.g. sglang+deepep_low_latency+two_batch_overlap (catalog/engines.toml).")]


def _profile(efficiency: str, engine: str | None, system):
    from .. import profiles as pf

    return pf.choose(efficiency, engine=engine, system=system)


def _efficiency(flops: float, hbm: float) -> Efficiency:
    from ..specs import Efficiency

    if flops == 1.0 and hbm == 1.0:
        return Efficiency()
    return Efficiency(flops=flops, hbm=hbm, label="user")


ModelOpt = Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")]
SystemOpt = Annotated[str, typer.Option("--system", help="Catalog system name.")]
ContextOpt = Annotated[str, typer.Option("--context", help="Context length L (tokens; '128k' = 128,000: k/M are decimal).")]


def _version(value: bool) -> None:
    """`tokenmath --version`: the installed package's version (importlib.metadata, read only when asked)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        print(f"tokenmath {version('tokenmath')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from .. import __version__

        print(f"tokenmath {__version__} (not installed: the source tree's version)")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the installed tokenmath version and exit.")] = None,
) -> None:
    """How fast and how cheaply an LLM can be served, and why (the roofline math of Reiner Pope's lecture)."""


def main() -> None:
    # tokenmath's arrays are small: OpenBLAS's thread pool would cost more CPU at start-up (~0.1 s on
    # 2 cores) than it ever saves; a user's own setting wins. `probe` measures the machine's matmul
    # rate and needs every core.
    if sys.argv[1:2] != ["probe"]:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:  # `tokenmath --help | head -1`: quiet, like a program stopped by SIGPIPE
        _stdout_closed()
        sys.exit(PIPE_CLOSED_EXIT)
    except TokenmathError as e:  # raised outside a command (e.g. while parsing)
        from rich.markup import escape

        err.print(f"error: {escape(one_line(str(e)))}", highlight=False)
        sys.exit(2)


# the facade (tokenmath.api) parses, resolves and checks through these, under public names, so a Python
# call and a command share one number parser with its bounds, one pricing and one finiteness guard
parse_number, check_finite, dtypes_of, efficiency_of, names_of, priced, profile_of = (
    _num, _check_finite, _dtypes, _efficiency, _names, _priced, _profile)

# the commands, in the order `--help` lists them; each module registers its commands on `app`
from . import listing, serving, cluster, fleet, energy, own, training, prices, validation, simulate, web, report, explore  # noqa: E402,F401,I001
