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

from ..args import (  # noqa: F401  (the command modules import these from here)
    COSTS, FLAGS, GIVEN_INPUTS, MAX_SIMULATED_REQUESTS, PLOT_FORMATS, SPARSE_MODES, Bound, check_finite, count_of,
    dtypes_of, efficiency_of, names_of, not_finite, parse_number, priced, profile_of,
)
from ..errors import TokenmathError
from ..units import check_dtype, count, parse_bounded, seconds, si  # noqa: F401  (count, seconds, si: for the command modules)

# the CLI's own spellings of the shared parsers (tokenmath.args)
_num, _names, _check_finite, _dtypes, _count, _priced, _profile, _efficiency = (
    parse_number, names_of, check_finite, dtypes_of, count_of, priced, profile_of, efficiency_of)
_not_finite, _INPUTS = not_finite, GIVEN_INPUTS

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


# ---- output paths: checked before any work is done (tokenmath.paths: the one policy) ----------------

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
WeightOpt = Annotated[Optional[str], typer.Option("--weight-dtype", help="Weight dtype (bf16, fp8, fp4, mxfp4, ...) of every part; default: the checkpoint's, whose embeddings, lm_head (and for gpt-oss attention) may stay wider.")]
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


def _drawn(result, plot) -> None:
    """A facade result's chart to `plot` where one was asked for and it has one (said on stderr)."""
    if plot is not None and result.draw is not None:
        result.draw(plot)
        err.print(f"wrote {plot}")


def _finish(json_: bool, record, lines) -> None:
    """Print one JSON object, or the plain-words lines; a non-finite result is an error, not output."""
    if json_:
        return _emit_json(record)
    lines = list(lines)
    _check_text(lines)
    for line in lines:
        out.print(line, highlight=False)


CostOpt = Annotated[str, typer.Option("--cost", help="rental (the catalog's $/chip-hour) or tco (what owning costs: `tokenmath tco`).")]
SparseOpt = Annotated[Optional[int], Num("--sparse-topk", help="What-if: sparse attention reading only K cached tokens per layer.")]
SparseModeOpt = Annotated[Optional[str], typer.Option("--sparse-mode", help="With --sparse-topk: 'topk' (DeepSeek DSA: min(L, K), the default) or 'sqrt' (the lecture's sketch: √(K·L)).")]


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



# the commands, in the order `--help` lists them; each module registers its commands on `app`
from . import listing, serving, cluster, fleet, energy, own, training, prices, validation, simulate, web, report, explore  # noqa: E402,F401,I001
