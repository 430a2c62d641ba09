"""The arguments every surface takes, parsed one way: the number parser with each flag's bound of what
is physically sensible (FLAGS), comma-separated lists, dtypes, the efficiency and cost options, and
the guard that no result holds an infinity. The CLI (tokenmath.cli) and the Python facade
(tokenmath.api) both parse through here, so a command and a call cannot accept different inputs.
Light at import (no numpy, no pydantic): the CLI's start-up pays for it."""

from __future__ import annotations

import contextvars
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import TokenmathError
from .units import check_dtype, parse_bounded

if TYPE_CHECKING:
    from .specs import Dtypes, Efficiency

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
    "--concurrency": Bound(1e6, low=1, low_inclusive=True, whole=True, meaning="requests in flight"),
    "--requests": Bound(1e9, low=1, low_inclusive=True, whole=True, meaning="requests the run sends"),
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

def parse_number(value, flag: str, *, allow_zero: bool = False, shown: str | None = None) -> float:
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

def names_of(text: str | None, flag: str, what: str) -> list[str] | None:
    """A comma-separated list flag: None when not given; an error when given but empty ('', ',')."""
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise TokenmathError(f"{flag} = {text!r} lists no {what}; give a comma-separated list, or leave {flag} out")
    return names

GIVEN_INPUTS: contextvars.ContextVar[str] = contextvars.ContextVar("tokenmath_inputs", default="these inputs")

def nonfinite_field(obj, path: str = "") -> str | None:
    """The first field of a record holding inf (NaN is 'no data' in a record and prints as null)."""
    np = sys.modules.get("numpy")  # not imported: then no numpy value can be in the record
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = nonfinite_field(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = nonfinite_field(v, f"{path}[{i}]")
            if hit:
                return hit
    elif np is not None and isinstance(obj, np.ndarray):
        return nonfinite_field(obj.tolist(), path)
    elif isinstance(obj, (float, np.floating) if np is not None else float) and math.isinf(obj):
        return path or "value"
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return nonfinite_field({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, path)
    return None


def not_finite(field: str) -> TokenmathError:
    return TokenmathError(f"the result {field} is not a finite number for {GIVEN_INPUTS.get()}: these inputs are outside"
                          " what tokenmath can compute; try values nearer to a real deployment")


def check_finite(record) -> None:
    field = nonfinite_field(record)
    if field:
        raise not_finite(field)

def dtypes_of(weight: str | None, kv: str, compute: str | None) -> Dtypes:
    from .specs import Dtypes

    return Dtypes(weight=check_dtype(weight), kv=check_dtype(kv), compute=check_dtype(compute))


def count_of(text: str, what: str, *, allow_zero: bool = False) -> float:
    """A count-like flag ('8k', '1.5M'): parsed and bounded by FLAGS[what]."""
    return parse_number(text, what, allow_zero=allow_zero)

COSTS = ("rental", "tco")


def priced(system, cost: str, *, strict: bool = True, usd_per_chip_hour: float | None = None):
    """The system priced by `cost`: its rental price, or what owning it costs (energy.tco). With
    strict, a system with no sourced capex is an error; else it loses its price (drops out of a
    cost comparison, which says so). A given `usd_per_chip_hour` (rental) replaces the price and
    says so."""
    if cost not in COSTS:
        raise TokenmathError(f"--cost = {cost!r}; expected 'rental' or 'tco'")
    if cost == "rental":
        if usd_per_chip_hour is not None:
            from dataclasses import replace

            return replace(system, usd_per_chip_hour=float(usd_per_chip_hour), price_source="given: --usd-per-chip-hour",
                           busy_share=1.0)
        return system
    from .energy import priced_by, priced_by_tco, tco

    if strict:
        try:
            t = tco(system)
        except TokenmathError as e:
            raise TokenmathError(f"--cost tco cannot price {system.name} ({e}); give --usd-per-chip-hour, e.g. from "
                                 f"`tokenmath tco --system {system.name} --capex-usd-per-chip X`") from None
        return priced_by(system, t)  # tokens are made in busy hours: the owning $/h ÷ the utilisation
    return priced_by_tco(system)

def profile_of(efficiency: str, engine: str | None, system):
    from . import profiles as pf

    return pf.choose(efficiency, engine=engine, system=system)


def efficiency_of(flops: float, hbm: float) -> Efficiency:
    from .specs import Efficiency

    if flops == 1.0 and hbm == 1.0:
        return Efficiency()
    return Efficiency(flops=flops, hbm=hbm, label="user")

PLOT_FORMATS = (".png", ".svg", ".pdf")
SPARSE_MODES = ("topk", "sqrt")
