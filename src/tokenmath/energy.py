"""Energy and total cost of ownership: watts of a step, joules per token, tokens per megawatt, and
what owning a chip costs per hour.

Power of one chip during a pass whose roofline compute time is t_c, memory time t_m, and whose
(estimated or bound) step time is T:

    u_c = t_c / T,  u_m = t_m / T        (the shares of the step the tensor cores / HBM are busy)
    P_chip = P_idle + (P_board − P_idle) · min(1, k_c·u_c + k_m·u_m)

P_board is the datasheet limit and P_idle the measured idle draw. k_c and k_m, the board's
dynamic range per unit of compute and memory busy share, are fitted by scripts/fit_power.py on
measured GPU power during LLM serving (ML.ENERGY, H100; energy_cases.jsonl) and stored in
energy.toml [power_fit]. Like the kernel curves, they transfer to another chip through its
datasheet: its own board power and busy shares. The system adds its non-accelerator draw per chip
(host CPUs, memory, NICs, switches, fans: `host_w_per_chip`). The facility multiplies by PUE. So

    P_facility = chips · (P_chip + P_host) · PUE,   J/token = P_facility · T / tokens,
    tokens/s per MW = tokens/s / (P_facility / 10⁶).

Where energy.toml has no measured idle for a chip, the idle is taken as the same share of its board
power as on the nearest measured chip, and every result says so (`assumptions`).

Ownership, per chip-hour (`tco`): capital recovered as an annuity over `years` at `cost_of_capital`
(CRF = r(1+r)ⁿ / ((1+r)ⁿ − 1)), electricity for the chip and host at the modelled utilisation × PUE,
and the facility's $/kW-month on the provisioned IT power.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import TokenmathError
from .specs import System

DATA = Path(__file__).with_name("catalog") / "energy.toml"
HOURS_PER_YEAR = 8766.0  # 365.25 days
HOURS_PER_MONTH = HOURS_PER_YEAR / 12


@dataclass(frozen=True)
class ChipPower:
    """Watts one accelerator draws (board power), with where each figure came from."""

    board_w: float
    idle_w: float
    k_compute: float  # board dynamic range per unit of compute busy share (fitted)
    k_memory: float  # ... per unit of memory busy share (fitted)
    host_w: float  # the system's non-accelerator draw per chip
    all_in_kw: float | None  # provisioned all-in power per chip, where a source publishes it
    assumptions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def busy_w(self) -> float:
        """Board power of memory-bound decode at its full roofline share (u_m = 1)."""
        return self.idle_w + (self.board_w - self.idle_w) * min(1.0, self.k_memory)


@dataclass(frozen=True)
class Facility:
    pue: float
    usd_per_kwh: float
    facility_usd_per_kw_month: float
    cost_of_capital: float
    years: float
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()


@lru_cache(maxsize=4)
def _data(path: str = str(DATA)) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _positive(name: str, v, *, low: float = 0.0, high: float = math.inf, low_inclusive: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TokenmathError(f"{name} = {v!r} is not a number") from None
    ok = math.isfinite(x) and (x >= low if low_inclusive else x > low) and x <= high
    if not ok:
        rng = f"{'≥' if low_inclusive else '>'} {low:g}" + (f" and ≤ {high:g}" if math.isfinite(high) else "")
        raise TokenmathError(f"{name} = {v!r}; expected a finite number {rng}")
    return x


def _board_and_idle(system: System, board_w: float | None = None) -> tuple[float, float, list[str], list[str]]:
    """(board W, idle W, assumptions, sources): the datasheet limit (or `board_w`, given) and the
    measured idle (or the idle share of the nearest measured chip, said)."""
    chips = _data().get("chips", {})
    row = chips.get(system.name, {})
    board = board_w or row.get("board_w") or system.chip.power_w
    if not board:
        raise TokenmathError(f"{system.name} has no board power in the catalog or energy.toml; give --board-w "
                             "(watts per chip) on `tokenmath energy` or `tokenmath tco`")
    assumptions, sources = [], []
    if board_w:
        assumptions.append(f"board_w = {board_w:g} (given)")
    else:
        sources.append(f"board {board:g} W: " + (row.get("board_source") or "catalog power_w"))
    if row.get("idle_w") and not board_w:
        sources.append(f"idle {row['idle_w']:g} W: {row.get('idle_source', '')}")
        return float(board), float(row["idle_w"]), assumptions, sources
    from .profiles import vendor

    v = vendor(system)
    measured = sorted((0 if (("mi" in n) == (v == "amd") and ("tpu" in n) == (v == "google")) else 1, n,
                       r["idle_w"] / r["board_w"]) for n, r in chips.items() if r.get("idle_w") and r.get("board_w"))
    if not measured:
        raise TokenmathError("energy.toml has no measured idle power for any chip; give --idle-w")
    _, name, share = measured[0]
    assumptions.append(f"idle = {share:.3f} × board power, the share measured on {name}")
    return float(board), share * float(board), assumptions, sources


def idle_and_board(system: System) -> tuple[float, float]:
    """(idle W, board W) of the chip: what the power fit needs besides the measurements."""
    board, idle, _, _ = _board_and_idle(system)
    return idle, board


def chip_power(system: System, *, overrides: dict | None = None) -> ChipPower:
    """The chip's power figures: board and idle (energy.toml, the catalog's power_w), the fitted
    [power_fit] coefficients, the system's host draw; `overrides` (board_w, idle_w, host_w)
    replace any (a given board without a measured idle takes the nearest measured chip's idle share)."""
    d = _data()
    sysrow = d.get("systems", {}).get(system.name, {})
    overrides = dict(overrides or {})
    board_w = overrides.pop("board_w", None)
    if board_w is not None:
        board_w = _positive("--board-w", board_w, high=1e5)
    board, idle, assumptions, sources = _board_and_idle(system, board_w)
    fit = d.get("power_fit", {})
    if not fit.get("k_compute") or not fit.get("k_memory"):
        raise TokenmathError("energy.toml has no [power_fit]; run scripts/fit_power.py")
    sources.append(f"k_compute {fit['k_compute']:.3f}, k_memory {fit['k_memory']:.3f}: {fit.get('source', '')}")
    host = sysrow.get("host_w_per_chip")
    if host is None:
        host = 0.0
        assumptions.append("host (CPU, NIC, switch, fan) power not published for this system: 0 W (give --host-w)")
    else:
        sources.append(f"host {host:g} W per chip: {sysrow.get('source', '')}")
    p = ChipPower(board, idle, float(fit["k_compute"]), float(fit["k_memory"]), float(host),
                  sysrow.get("all_in_kw_per_chip"), tuple(assumptions), tuple(sources))
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        flag = f"--{k.replace('_', '-')}"
        x = _positive(flag, v, low_inclusive=True, high=p.board_w if k == "idle_w" else 1e5)
        kept = tuple(a for a in p.assumptions if not (k == "idle_w" and a.startswith("idle =")) and
                     not (k == "host_w" and a.startswith("host (")))
        p = replace(p, **{k: x}, assumptions=kept + (f"{k} = {v:g} (given)",))
    return p


# Financing has no sourced default: straight-line recovery (0 %) unless --cost-of-capital is given, and said.
COST_OF_CAPITAL_UNSOURCED = 0.0


def facility(*, pue=None, usd_per_kwh=None, facility_usd_per_kw_month=None, cost_of_capital=None,
             years=None) -> Facility:
    """Facility and financing assumptions: energy.toml's sourced defaults, any of them replaced.
    A figure with neither a source nor a value is NaN here, and `tco` asks for it by its flag."""
    d = _data().get("facility", {})
    given = dict(pue=pue, usd_per_kwh=usd_per_kwh, facility_usd_per_kw_month=facility_usd_per_kw_month,
                 cost_of_capital=cost_of_capital, years=years)
    out, sources, assumptions = {}, [], []
    srckey = {"pue": "pue_source", "usd_per_kwh": "usd_per_kwh_source",
              "facility_usd_per_kw_month": "facility_source", "cost_of_capital": "cost_of_capital_source",
              "years": "years_source"}
    for k, v in given.items():
        if v is not None:
            out[k] = v
            assumptions.append(f"{k} = {v:g} (given)")
        elif d.get(k) is not None:
            out[k] = d[k]
            sources.append(f"{k} {d[k]:g}: {d.get(srckey[k], '')}")
        elif k == "cost_of_capital":
            out[k] = COST_OF_CAPITAL_UNSOURCED
            assumptions.append("cost of capital not sourced: 0 % (straight-line recovery); give --cost-of-capital")
        else:
            out[k] = math.nan
    checks = (("--pue", "pue", dict(low=1.0, low_inclusive=True, high=5.0)),
              ("--usd-per-kwh", "usd_per_kwh", dict(low_inclusive=True, high=10.0)),
              ("--facility-usd-per-kw-month", "facility_usd_per_kw_month", dict(low_inclusive=True, high=1e4)),
              ("--cost-of-capital", "cost_of_capital", dict(low_inclusive=True, high=1.0)),
              ("--years", "years", dict(low=0.0, high=50.0)))
    for flag, k, kw in checks:
        if not (isinstance(out[k], float) and math.isnan(out[k])):
            _positive(flag, out[k], **kw)
    if math.isnan(float(out["pue"])):
        raise TokenmathError("no sourced PUE in energy.toml; give --pue")
    return Facility(float(out["pue"]), float(out["usd_per_kwh"]), float(out["facility_usd_per_kw_month"]),
                    float(out["cost_of_capital"]), float(out["years"]), tuple(sources), tuple(assumptions))


# --------------------------------------------------------------------------------------------
# The energy of a step
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepEnergy:
    """Power and energy of one pass of one replica (all its chips), facility included."""

    chips: int
    step_s: float
    tokens: float
    chip_w: float  # one accelerator, at this step's busy shares
    watts: float  # the replica at the wall: chips · (chip + host) · PUE
    joules_per_token: float
    tokens_per_s_per_mw: float
    tokens_per_s_per_mw_provisioned: float | None  # on the all-in provisioned power (InferenceX's definition)
    parts_w: dict  # idle, compute, memory, host, facility (PUE − 1): the replica's watts by cause
    u_compute: float
    u_memory: float
    assumptions: tuple[str, ...] = field(default=())


def step_energy(power: ChipPower, fac: Facility, *, chips: int, step_s, compute_s, memory_s, tokens,
                idle_chips: float = 0.0) -> StepEnergy:
    """Watts and joules of a pass: `compute_s`/`memory_s` are the roofline's terms of the pass
    (what one chip spends on each over the step), `step_s` its (estimated) duration; `tokens` the
    new tokens it produces. `idle_chips`: chips billed with the replica but idle in its domains
    (they draw idle and host power). Numbers or arrays (a curve): every figure broadcasts."""
    import numpy as np

    T = np.asarray(step_s, float)
    if not np.all(np.isfinite(T)) or np.any(T <= 0):
        raise TokenmathError("step time must be a positive finite number of seconds")
    u_c = np.clip(np.asarray(compute_s, float) / T, 0.0, 1.0)
    u_m = np.clip(np.asarray(memory_s, float) / T, 0.0, 1.0)
    span = power.board_w - power.idle_w
    act = power.k_compute * u_c + power.k_memory * u_m
    scale = np.minimum(act, 1.0) / np.maximum(act, 1e-12)  # < 1 where the board limit caps
    chip_w = power.idle_w + span * np.minimum(act, 1.0)
    idle_n = np.asarray(idle_chips, float)
    wall = (chips * (chip_w + power.host_w) + idle_n * (power.idle_w + power.host_w)) * fac.pue
    parts = {"idle": (chips + idle_n) * power.idle_w + 0.0 * T,
             "compute": chips * span * power.k_compute * u_c * scale,
             "memory": chips * span * power.k_memory * u_m * scale,
             "host": (chips + idle_n) * power.host_w + 0.0 * T}
    parts["facility"] = (fac.pue - 1.0) * (parts["idle"] + parts["compute"] + parts["memory"] + parts["host"])
    tps = np.asarray(tokens, float) / T
    prov = None if not power.all_in_kw else _f(tps / ((chips + idle_n) * power.all_in_kw * 1e3 / 1e6))
    return StepEnergy(int(chips), _f(T), _f(np.asarray(tokens, float) + 0 * T), _f(chip_w), _f(wall),
                      _f(wall * T / np.asarray(tokens, float)), _f(tps / (wall / 1e6)), prov,
                      {k: _f(v) for k, v in parts.items()}, _f(u_c), _f(u_m), power.assumptions + fac.assumptions)


def _f(x):
    import numpy as np

    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a


def energy_of(st, system: System, *, step_s=None, power: ChipPower | None = None,
              fac: Facility | None = None) -> StepEnergy:
    """The energy of a pass from its roofline StepTime `st` (or a sweep of them): the busy shares are its
    compute and memory terms over `step_s` (the estimate's step; default the bound's own)."""
    return step_energy(power or chip_power(system), fac or facility(), chips=st.assumptions.chips,
                       step_s=st.step_s if step_s is None else step_s, compute_s=st.compute_s,
                       memory_s=st.memory_s, tokens=st.batch * st.new_tokens)


def energy_of_pass(est, system: System, *, power: ChipPower | None = None, fac: Facility | None = None) -> StepEnergy:
    """The energy of a pass from its estimate (estimate.estimate_pass): each chip's busy shares are
    the bound's compute and HBM terms of the same pass (same layout, chips and expert-fetch
    convention; stepmodel.OpStep.bound_parts) over the estimate's step time; the layout's chips
    draw that power, the idle chips its placement strands draw idle + host power. With the
    roofline profile the step time is the bound's own. Numbers or arrays (a sweep)."""
    import numpy as np

    op = est.op
    bp = op.bound_parts
    chips = np.asarray(op.chips)
    idle = np.asarray(op.billed_chips, float) - chips
    if chips.ndim:
        raise TokenmathError("energy_of_pass takes one layout (not a list of layouts)")
    tokens = np.asarray(op.batch) * np.asarray(op.new_tokens) + np.asarray(op.prefill_tokens)
    return step_energy(power or chip_power(system), fac or facility(), chips=int(chips), step_s=est.step_s,
                       compute_s=bp["compute_s"], memory_s=np.asarray(bp["weights_s"]) + bp["kv_s"] + bp["activations_s"],
                       tokens=tokens, idle_chips=float(idle))


def maybe_energy_of_pass(est, system: System) -> StepEnergy | None:
    """energy_of_pass, or None where the chip has no power figures (the answer says so instead)."""
    try:
        return energy_of_pass(est, system)
    except TokenmathError:
        return None


def busy_shares(model, system: System, *, batch: float, context: float, chips: int, tp: int, ep: int = 1,
                weight_dtype: str | None = None) -> tuple[float, float, float]:
    """(u_c, u_m, estimated step s) of a decode step at `batch` and `context` on a TP × EP replica:
    the bound's compute and HBM terms of the same pass over the calibrated estimate's step (the
    convention energy_of_pass uses). What the power fit (scripts/fit_power.py) and its checks
    evaluate the model at. `chips`: the replica's chips (checked against the layout's)."""
    from .estimate import estimate_pass
    from .layout import Layout
    from .profiles import choose
    from .specs import Dtypes

    dt = Dtypes(weight=weight_dtype)
    lay = Layout(tp=tp, ep=ep)
    if lay.replica_chips != int(chips):
        raise TokenmathError(f"TP {tp} × EP {ep} uses {lay.replica_chips} chips, not {chips}")
    est = estimate_pass(model, system, batch, context, 1.0, layout=lay, dtypes=dt,
                        profile=choose("calibrated", system=system))
    bp = est.op.bound_parts
    T = float(est.step_s)
    return float(bp["compute_s"]) / T, float(bp["weights_s"] + bp["kv_s"] + bp["activations_s"]) / T, T


def maybe_energy_of(st, system: System, *, step_s=None) -> StepEnergy | None:
    """energy_of, or None where the chip has no power figures (the answer says so instead)."""
    try:
        return energy_of(st, system, step_s=step_s)
    except TokenmathError:
        return None


@dataclass(frozen=True)
class TrainingEnergy:
    energy_mwh: float  # at the wall: chips · (P_chip + P_host) · PUE · time
    gpu_energy_mwh: float  # the accelerators alone (what model cards count)
    chip_w: float
    pue: float
    assumptions: tuple[str, ...] = ()


def training_energy(system: System, chips: int, seconds: float, *, power: ChipPower | None = None,
                    fac: Facility | None = None) -> TrainingEnergy:
    """Energy of a training run: every chip at its board power (TDP) for the whole run, as model
    cards count it (Meta's Llama 3.1 card: GPU-hours × 700 W) — an upper bound of the accelerators'
    draw, since the serving fit does not cover training's mix — plus host, times PUE."""
    power = power or chip_power(system)
    fac = fac or facility()
    gpu = chips * power.board_w * _positive("seconds", seconds) / 3.6e9
    return TrainingEnergy(float(gpu * (power.board_w + power.host_w) / power.board_w * fac.pue), float(gpu),
                          float(power.board_w), fac.pue,
                          power.assumptions + fac.assumptions + ("training at board power (TDP): an upper bound",))


def plan_energy(model, systems: dict, cols: dict, rows, input_tokens: float, output_tokens: float, *,
                prompt_cached: float | None = None):
    """(watts per replica, J per output token, output tokens/s per MW) of planner rows: each
    row's decode step at its batch and mean context I + O/2, on its layout, gives the busy shares
    — the roofline bound's compute and HBM terms of that pass (stepmodel.op_step with
    kernels=None; the convention energy_of_pass uses) over the row's step time; its replica's
    output tokens/s (prefill included) gives the energy per token. With `prompt_cached`
    (aggregated replicas: continuous batching with chunked prefill), each step also carries B/O
    prompts of I − cached tokens, whose compute joins the step's busy share. The layout's chips
    draw that power, the idle chips of its domains idle + host. NaN where the chip has no power
    figures."""
    import numpy as np

    from .layout import Layout
    from .specs import Dtypes
    from .stepmodel import op_step

    rows = np.asarray(rows, int)
    w, j, mw = (np.full(len(rows), np.nan) for _ in range(3))
    if not len(rows):
        return w, j, mw
    key = np.array([f"{cols['system'][r]}|{int(cols['tp'][r])}|{int(cols['ep'][r])}|{int(cols['pp'][r])}|"
                    f"{cols['weight_dtype'][r]}|{cols['kv_dtype'][r]}" for r in rows])
    L = input_tokens + output_tokens / 2.0
    for k in np.unique(key):
        sel = np.nonzero(key == k)[0]
        name, tp, ep, pp, wd, kv = k.split("|")
        s = systems[name]
        try:
            power, fac = chip_power(s), facility()
        except TokenmathError:
            continue
        r = rows[sel]
        lay = Layout(tp=int(tp), ep=int(ep), pp=int(pp))
        dt = Dtypes(weight=None if wd == model.weight_dtype else wd, kv=kv)
        B = cols["batch"][r].astype(float)
        op = op_step(model, s, lay, B, L, 1.0, kernels=None, dtypes=dt, check=False)
        bp = op.bound_parts
        compute = np.asarray(bp["compute_s"], float)
        if prompt_cached is not None:  # the prompt chunks sharing each step: B/O prompts of I − cached tokens
            Ip = input_tokens - prompt_cached
            pre = op_step(model, s, lay, 1.0, prompt_cached, Ip, kernels=None, dtypes=dt, check=False)
            compute = compute + B / output_tokens * float(pre.bound_parts["compute_s"])
        billed = cols["billed_chips"][r].astype(float)
        e = step_energy(power, fac, chips=lay.replica_chips, step_s=cols["step_s"][r].astype(float), compute_s=compute,
                        memory_s=np.asarray(bp["weights_s"]) + bp["kv_s"] + bp["activations_s"], tokens=B,
                        idle_chips=billed - lay.replica_chips)
        replica_tps = cols["tokens_per_s_per_chip"][r].astype(float) * billed
        w[sel] = e.watts
        j[sel] = np.asarray(e.watts) / replica_tps
        mw[sel] = replica_tps / (np.asarray(e.watts) / 1e6)
    return w, j, mw


# --------------------------------------------------------------------------------------------
# Ownership
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tco:
    """What owning one chip costs per hour, by part (each *_usd_per_chip_hour), summing to the total."""

    system: str
    capex_usd: float
    capex_usd_per_chip_hour: float
    power_usd_per_chip_hour: float
    facility_usd_per_chip_hour: float
    usd_per_chip_hour: float
    rental_usd_per_chip_hour: float | None
    utilisation: float
    average_chip_w: float
    capital_recovery_factor: float
    power_idle_usd_per_chip_hour: float  # electricity at utilisation 0
    power_busy_usd_per_chip_hour: float  # electricity at utilisation 1
    assumptions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def capital_recovery_factor(rate: float, years: float) -> float:
    """The annual payment that repays 1 over `years` at interest `rate` (an annuity)."""
    if rate == 0:
        return 1.0 / years
    g = (1.0 + rate) ** years
    return rate * g / (g - 1.0)


def tco(system: System, *, capex_usd: float | None = None, utilisation: float = 0.7, fac: Facility | None = None,
        power: ChipPower | None = None) -> Tco:
    """$ per chip-hour of owning `system`'s chips: capital as an annuity, electricity at the
    modelled utilisation (busy serving decode that share of the time, idle the rest) × PUE, and the facility's $/kW-month on the provisioned IT power (board + host)."""
    u = _positive("--utilisation", utilisation, low_inclusive=True, high=1.0)
    fac = fac or facility()
    for flag, v in (("--usd-per-kwh", fac.usd_per_kwh), ("--facility-usd-per-kw-month", fac.facility_usd_per_kw_month),
                    ("--years", fac.years)):
        if math.isnan(v):
            raise TokenmathError(f"no sourced default for {flag[2:]}; give {flag}")
    power = power or chip_power(system)
    row = _data().get("chips", {}).get(system.name, {})
    assumptions, sources = list(power.assumptions + fac.assumptions), list(power.sources + fac.sources)
    if capex_usd is None:
        if not row.get("capex_usd"):
            raise TokenmathError(f"no sourced capex for {system.name}; give --capex-usd-per-chip")
        capex_usd = row["capex_usd"]
        sources.append(f"capex ${capex_usd:,.0f}: {row.get('capex_source', '')}")
    else:
        assumptions.append(f"capex ${capex_usd:,.0f} per chip (given)")
    capex = _positive("--capex-usd-per-chip", capex_usd, high=1e8)
    crf = capital_recovery_factor(fac.cost_of_capital, fac.years)
    capex_h = capex * crf / HOURS_PER_YEAR
    busy = power.busy_w
    avg_w = power.idle_w + u * (busy - power.idle_w)
    kwh = fac.pue / 1e3 * fac.usd_per_kwh  # $ per W-hour at the wall
    power_h = (avg_w + power.host_w) * kwh
    facility_h = (power.board_w + power.host_w) / 1e3 * fac.facility_usd_per_kw_month / HOURS_PER_MONTH
    total = capex_h + power_h + facility_h
    return Tco(system.name, capex, capex_h, power_h, facility_h, total, system.usd_per_chip_hour, u, avg_w, crf,
               (power.idle_w + power.host_w) * kwh, (busy + power.host_w) * kwh, tuple(assumptions), tuple(sources))


def busy_chip_hour_usd(t: Tco) -> float | None:
    """What a busy chip-hour costs an owner: the hourly cost of owning ÷ the utilisation (tokens are
    made only in the busy hours; capital and facility are paid in all of them). None at 0 %."""
    return None if t.utilisation <= 0 else t.usd_per_chip_hour / t.utilisation


def priced_by_tco(system: System, **kw) -> System:
    """The system priced by what owning it costs per *busy* chip-hour (`tco` ÷ its utilisation,
    default 70 %), so $/Mtok = that × busy step time / tokens is consistent with the utilisation
    the $/h assumed; or with no price where its capex is not known (it then drops out of cost
    comparisons, saying so)."""
    try:
        t = tco(system, **kw)
    except TokenmathError:
        return replace(system, usd_per_chip_hour=None)
    busy = busy_chip_hour_usd(t)
    if busy is None:
        return replace(system, usd_per_chip_hour=None)
    return replace(system, usd_per_chip_hour=busy, price_source=tco_price_source(t))


def tco_price_source(t: Tco) -> str:
    """The words a TCO-priced answer carries: which figure, at what utilisation."""
    return (f"tokenmath tco: ${t.usd_per_chip_hour:,.3f}/h owned ÷ {t.utilisation:.0%} utilisation = "
            f"${t.usd_per_chip_hour / t.utilisation:,.3f} per busy chip-hour")


def breakeven_utilisation(owned: Tco, *, tokens_per_s_per_chip: float, api_usd_per_mtok: float) -> float | None:
    """The utilisation above which owning the chip costs less per token than buying the same
    tokens from the API. Owned cost per chip-hour is fixed + p₀ + (p₁ − p₀)·u (capital and
    facility fixed, electricity from idle p₀ to busy p₁); the API charges R·u for the tokens a chip
    makes at utilisation u, R = tokens/s · 3600 / 10⁶ · $/Mtok. Owning wins above
    u* = (fixed + p₀) / (R − (p₁ − p₀)); None when it never does (u* > 1)."""
    R = _positive("tokens/s per chip", tokens_per_s_per_chip) * 3600.0 / 1e6 * _positive("API $/Mtok", api_usd_per_mtok)
    fixed = owned.capex_usd_per_chip_hour + owned.facility_usd_per_chip_hour
    denom = R - (owned.power_busy_usd_per_chip_hour - owned.power_idle_usd_per_chip_hour)
    if denom <= 0:
        return None
    u = (fixed + owned.power_idle_usd_per_chip_hour) / denom
    return u if u <= 1.0 else None


__all__ = ["busy_chip_hour_usd", "priced_by_tco", "energy_of_pass", "maybe_energy_of_pass", "TrainingEnergy", "training_energy", "maybe_energy_of", "ChipPower", "Facility", "StepEnergy", "Tco", "chip_power", "facility", "step_energy", "energy_of", "tco",
           "capital_recovery_factor", "breakeven_utilisation"]
