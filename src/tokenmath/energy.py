"""Energy and total cost of ownership: the watts of a pass at three levels, joules per output token,
tokens per megawatt, and what owning a chip costs per hour.

Three levels of power, each named wherever a watt or a joule appears:

    board     one accelerator board (what NVML / rocm-smi read)
    node      boards + the host's share (CPUs, DRAM, NICs, switches, fans, conversion losses):
              what a rack PDU or a power analyser at the server's inlet reads
    facility  node × PUE (cooling and power distribution): what the utility meter reads

Board power of a chip running a pass that puts τ new tokens on each chip (decode: B·S / chips):

    demand  = P_idle + (P_board − P_idle) · clip(a0 + a1 · ln max(1, τ), 0, 1)
    P_chip  = min(demand, power cap)

P_board is the datasheet limit (TDP), P_idle the idle draw (measured; else the measured idle share
of board power, 0.15 on A100 and H100). a0 is the floor of a chip whose kernels run (clocks up:
the P0 state), a1 how the activity of its SMs and HBM grows with the tokens in flight. Both are
fitted by scripts/fit_power.py on measured board power of Hopper GPUs serving LLMs (ML.ENERGY
v3 and Argonne's LLM-Inference-Bench; validation/energy/*.jsonl), cross-validated leave one
model out and leave one source out; the fit is stored in validation/power_fit.json. The
roofline's compute and HBM busy shares were tried as further terms and did not predict better out
of sample (docs/energy.md), so they are reported beside the power, not inside it.

A power cap below the demand lowers the clocks. With dynamic power ∝ C·V²·f and V ∝ f over the
DVFS range (Hennessy & Patterson, Computer Architecture 6th ed., §1.5), the clock falls to
φ = ((cap − P_idle)/(demand − P_idle))^(1/3) of its uncapped value, the compute-bound share of the
pass (the bound's compute time over compute + HBM time) runs 1/φ slower and the HBM-bound share
does not.

Host power per chip is measured at load where a source has it (an 8-GPU HGX H100 node), else the
published maximum rating × that measured/rated ratio, else Google's published host share; the
maximum rating stays beside it as the upper bound. The facility multiplies by the PUE of its
class (hyperscale, colo, average; energy.toml).

Ownership, per chip-hour (`tco`): capital (the server's share + the cluster network + other)
recovered as an annuity over `years` at `cost_of_capital`, electricity for the chip (busy a
`utilisation` share of the hours, idle the rest) and its host × PUE, and the facility's
$/kW-month on the provisioned power (board limit + host rating).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import TokenmathError
from .specs import System
from .units import sig

DATA = Path(__file__).with_name("catalog") / "energy.toml"
FIT = Path(__file__).with_name("validation") / "power_fit.json"
HOURS_PER_YEAR = 8766.0  # 365.25 days
HOURS_PER_MONTH = HOURS_PER_YEAR / 12
LEVELS = ("board", "node", "facility")
SERVER_LEVEL = "node"  # what a reader of one server's or replica's answer expects: the power analyser's figure
FLEET_LEVEL = "facility"  # a fleet or a training run: the utility's meter
LEVEL_WORDS = {"board": "board (the accelerators alone)", "node": "node at the wall (boards + host)",
               "facility": "facility (node × PUE)"}
DVFS_EXPONENT = 3.0  # P_dyn ∝ C·V²·f with V ∝ f (Hennessy & Patterson 6th ed. §1.5): f ∝ P_dyn^(1/3)


@lru_cache(maxsize=4)
def _data(path: str = str(DATA)) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


@lru_cache(maxsize=4)
def power_fit(path: str = str(FIT)) -> dict:
    """The fitted board-power coefficients and their cross-validation (scripts/fit_power.py)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
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


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise TokenmathError(f"--level = {level!r}; expected one of {', '.join(LEVELS)}")
    return level


# --------------------------------------------------------------------------------------------
# The chip's power figures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipPower:
    """Watts of one accelerator and its share of the host, with where each figure came from."""

    board_w: float  # the board's power limit (datasheet TDP, or given)
    idle_w: float  # idle draw (measured, or the measured idle share of board power)
    host_w: float  # the host's draw per chip at load (measured, or derived: `assumptions` says how)
    all_in_kw: float | None = None  # provisioned all-in power per chip, where a source publishes it
    host_max_w: float | None = None  # the host's maximum rating per chip: the upper bound of host_w
    cap_w: float | None = None  # a power cap below the board limit (nvidia-smi -pl), or None
    a0: float = 0.0  # fitted activity floor of a chip whose kernels run
    a1: float = 0.0  # fitted growth of activity per e-fold of tokens per chip
    assumptions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def limit_w(self) -> float:
        """The most the board may draw: the cap where one is set, else its board power."""
        return self.board_w if self.cap_w is None else min(self.cap_w, self.board_w)

    @property
    def provisioned_w(self) -> float:
        """Power a facility provisions per chip: the board limit + the host's rating (or its measured draw)."""
        return self.board_w + (self.host_w if self.host_max_w is None else max(self.host_max_w, self.host_w))


def _board_and_idle(system: System, board_w: float | None = None) -> tuple[float, float, list[str], list[str]]:
    """(board W, idle W, assumptions, sources): the datasheet limit (or `board_w`, given) and the
    measured idle (or the measured idle share of board power, said)."""
    chips = _data().get("chips", {})
    row = chips.get(system.name, {})
    board = board_w or row.get("board_w") or system.chip.power_w
    if not board:
        raise TokenmathError(f"{system.name} has no board power in the catalog or energy.toml; give --board-w "
                             "(watts per chip) on `tokenmath energy`, `tokenmath tco` or `tokenmath train time`")
    assumptions, sources = [], []
    if board_w:
        assumptions.append(f"board_w = {board_w:g} (given)")
    else:
        sources.append(f"board {board:g} W: " + (row.get("board_source") or "catalog power_w"))
    if row.get("idle_w") and not board_w:
        sources.append(f"idle {row['idle_w']:g} W: {row.get('idle_source', '')}")
        return float(board), float(row["idle_w"]), assumptions, sources
    pm = _data().get("power_model", {})
    share = pm.get("idle_share")
    if not share:
        raise TokenmathError("energy.toml has no power_model.idle_share; give --idle-w")
    assumptions.append(f"idle = {share:g} × board power, the share measured on A100 and H100 (energy.toml "
                       "power_model.idle_share)")
    return float(board), share * float(board), assumptions, sources


def idle_and_board(system: System) -> tuple[float, float]:
    """(idle W, board W) of the chip: what the power fit needs besides the measurements."""
    board, idle, _, _ = _board_and_idle(system)
    return idle, board


def host_watts(system: System, board_w: float | None = None) -> tuple[float, float | None, list[str], list[str]]:
    """(host W per chip, its maximum rating or None, assumptions, sources): measured at load where a
    source has it, else the rating × the measured/rated ratio of an HGX H100 node, else Google's host
    share × the board power (`board_w`, default the chip's)."""
    if board_w is None:
        board_w = _board_and_idle(system)[0]
    return _host(system, board_w)


def _host(system: System, board: float) -> tuple[float, float | None, list[str], list[str]]:
    """(host W per chip, its maximum rating or None, assumptions, sources)."""
    d = _data()
    row = d.get("systems", {}).get(system.name, {})
    hm = d.get("host_model", {})
    rating = row.get("host_max_w_per_chip")
    if row.get("host_w_per_chip") is not None:
        return (float(row["host_w_per_chip"]), None if rating is None else float(rating), [],
                [f"host {row['host_w_per_chip']:g} W per chip (measured at load): {row.get('host_source', '')}"]
                + ([] if rating is None else [f"host rating {rating:g} W per chip: {row.get('host_max_source', '')}"]))
    if rating is not None and hm.get("measured_over_rated"):
        r = float(hm["measured_over_rated"])
        return (r * float(rating), float(rating),
                [f"host = {r:.3f} × its rating {rating:g} W per chip: the measured/rated ratio of an 8-GPU HGX H100 node "
                 "(energy.toml host_model.measured_over_rated); no measurement of this system"],
                [f"host rating {rating:g} W per chip: {row.get('host_max_source', '')}"])
    share = hm.get("host_share_of_board")
    if share:
        return (float(share) * board, None,
                [f"host = {share:.3f} × board power: Google's published host CPU+DRAM share of accelerator energy "
                 "(energy.toml host_model.host_share_of_board); this system's host power is not published"], [])
    return 0.0, None, ["host (CPU, NIC, switch, fan) power not published for this system: 0 W (give --host-w)"], []


def chip_power(system: System, *, overrides: dict | None = None) -> ChipPower:
    """The chip's power figures: board and idle (energy.toml, the catalog's power_w), the fitted
    board-power coefficients (validation/power_fit.json), the system's host draw; `overrides`
    (board_w, idle_w, host_w, cap_w) replace any (a given board without a measured idle takes the
    measured idle share)."""
    d = _data()
    sysrow = d.get("systems", {}).get(system.name, {})
    overrides = dict(overrides or {})
    board_w = overrides.pop("board_w", None)
    if board_w is not None:
        board_w = _positive("--board-w", board_w, high=1e5)
    board, idle, assumptions, sources = _board_and_idle(system, board_w)
    fit = power_fit()
    if "a0" not in fit or "a1" not in fit:
        raise TokenmathError("validation/power_fit.json holds no fit; run scripts/fit_power.py")
    sources.append(f"activity a0 {fit['a0']:.4f}, a1 {fit['a1']:.4f} per e-fold of tokens per chip: {fit.get('source', '')}")
    host, rating, a, s = _host(system, board)
    p = ChipPower(board, idle, host, sysrow.get("all_in_kw_per_chip"), rating, None, float(fit["a0"]), float(fit["a1"]),
                  tuple(assumptions + a), tuple(sources + s))
    for k, v in overrides.items():
        if v is None:
            continue
        flag = {"cap_w": "--power-cap-w"}.get(k, f"--{k.replace('_', '-')}")
        if k == "cap_w":
            x = _positive(flag, v, low=p.idle_w, high=p.board_w)
        else:
            x = _positive(flag, v, low_inclusive=True, high=p.board_w if k == "idle_w" else 1e5)
        kept = tuple(a for a in p.assumptions if not (k == "idle_w" and a.startswith("idle =")) and
                     not (k == "host_w" and a.startswith("host ")))
        p = replace(p, **{k: x}, assumptions=kept + (f"{k} = {v:g} (given)",))
    if p.idle_w >= p.board_w:
        raise TokenmathError(f"idle power {p.idle_w:g} W is not below the board power {p.board_w:g} W")
    return p


# --------------------------------------------------------------------------------------------
# Facility and financing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facility:
    pue: float
    usd_per_kwh: float
    facility_usd_per_kw_month: float
    cost_of_capital: float
    years: float
    sources: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    facility_class: str | None = None  # hyperscale | colo | average, or None where --pue was given


def facility_classes() -> dict:
    return _data().get("facility", {}).get("classes", {})


def facility(*, pue=None, facility_class: str | None = None, usd_per_kwh=None, facility_usd_per_kw_month=None,
             cost_of_capital=None, years=None) -> Facility:
    """Facility and financing assumptions: energy.toml's sourced defaults, any of them replaced.
    PUE: `pue` if given, else the `facility_class`'s (default: energy.toml's default_class)."""
    d = _data().get("facility", {})
    classes = facility_classes()
    out, sources, assumptions = {}, [], []
    cls = None
    if pue is not None:
        out["pue"] = _positive("--pue", pue, low=1.0, low_inclusive=True, high=5.0)
        assumptions.append(f"pue = {pue:g} (given)")
    else:
        cls = facility_class or d.get("default_class")
        if cls not in classes:
            raise TokenmathError(f"--facility = {cls!r}; expected one of {', '.join(sorted(classes))}")
        out["pue"] = float(classes[cls]["pue"])
        sources.append(f"PUE {out['pue']:g} ({cls}): {classes[cls].get('source', '')}")
        if facility_class is None:
            assumptions.append(f"facility class {cls!r} (PUE {out['pue']:g}), the default class (hyperscale, colo or "
                               "average); give --pue")
    given = dict(usd_per_kwh=usd_per_kwh, facility_usd_per_kw_month=facility_usd_per_kw_month,
                 cost_of_capital=cost_of_capital, years=years)
    srckey = {"usd_per_kwh": "usd_per_kwh_source", "facility_usd_per_kw_month": "facility_source",
              "cost_of_capital": "cost_of_capital_source", "years": "years_source"}
    for k, v in given.items():
        if v is not None:
            out[k] = v
            assumptions.append(f"{k} = {v:g} (given)")
        elif d.get(k) is not None:
            out[k] = d[k]
            sources.append(f"{k} {d[k]:g}: {d.get(srckey[k], '')}")
        else:
            out[k] = math.nan
    checks = (("--usd-per-kwh", "usd_per_kwh", dict(low_inclusive=True, high=10.0)),
              ("--facility-usd-per-kw-month", "facility_usd_per_kw_month", dict(low_inclusive=True, high=1e4)),
              ("--cost-of-capital", "cost_of_capital", dict(low_inclusive=True, high=1.0)),
              ("--years", "years", dict(low=0.0, high=50.0)))
    for flag, k, kw in checks:
        if not (isinstance(out[k], float) and math.isnan(out[k])):
            out[k] = _positive(flag, out[k], **kw)
    return Facility(float(out["pue"]), float(out["usd_per_kwh"]), float(out["facility_usd_per_kw_month"]),
                    float(out["cost_of_capital"]), float(out["years"]), tuple(sources), tuple(assumptions), cls)


# --------------------------------------------------------------------------------------------
# Board power of a pass, and the energy of a step
# --------------------------------------------------------------------------------------------


def board_power(power: ChipPower, tokens_per_chip, compute_share=0.0):
    """(board W per chip, activity, clock ratio φ, step-time factor) of a chip running a pass with
    `tokens_per_chip` new tokens on each chip. Under a cap below the demand the clocks fall to φ and
    the `compute_share` of the pass runs 1/φ slower (factor = compute_share/φ + 1 − compute_share).
    Numbers or arrays."""
    import numpy as np

    tau = np.maximum(np.asarray(tokens_per_chip, float), 1.0)
    act = np.clip(power.a0 + power.a1 * np.log(tau), 0.0, 1.0)
    demand = power.idle_w + (power.board_w - power.idle_w) * act
    limit = power.limit_w
    over = demand > limit
    phi = np.where(over, ((limit - power.idle_w) / np.maximum(demand - power.idle_w, 1e-9)) ** (1.0 / DVFS_EXPONENT), 1.0)
    s = np.clip(np.asarray(compute_share, float), 0.0, 1.0)
    factor = s / phi + (1.0 - s)
    return _f(np.minimum(demand, limit)), _f(act), _f(phi), _f(factor)


@dataclass(frozen=True)
class StepEnergy:
    """Power and energy of one pass of one replica (all its chips) at the three levels; `watts`,
    `joules_per_token` and `tokens_per_s_per_mw` are at `level`. Per-token figures are per new
    token of the pass."""

    chips: int
    step_s: float  # the pass's time (× the cap's slowdown where a power cap binds)
    tokens: float
    level: str
    tokens_per_chip: float  # τ: new tokens per working chip in the pass
    activity: float  # a0 + a1·ln τ, clipped to [0, 1]
    board_watts_per_chip: float  # one working accelerator
    board_watts: float  # every accelerator of the replica (its idle chips at idle)
    host_watts: float
    node_watts: float  # board + host: at the wall of the servers
    facility_watts: float  # node × PUE
    pue: float
    watts: float  # at `level`
    joules_per_token: float  # at `level`
    board_joules_per_token: float
    node_joules_per_token: float
    facility_joules_per_token: float
    tokens_per_s_per_mw: float  # at `level`
    tokens_per_s_per_mw_provisioned: float | None  # on InferenceX's all-in provisioned power
    parts_w: dict  # idle, compute, memory, host, facility (PUE − 1): sums to facility_watts
    u_compute: float  # the bound's compute time / step (reported; not a term of the power model)
    u_memory: float
    power_cap_w: float | None = None
    clock_ratio: float = 1.0  # φ: the clock under the cap / the uncapped clock
    slowdown: float = 1.0  # step time under the cap / without it
    assumptions: tuple[str, ...] = field(default=())

    @property
    def chip_w(self):
        """One working accelerator's board power (the name before issue 23; board level)."""
        return self.board_watts_per_chip

    @property
    def node_watts_per_chip(self):
        return self.node_watts / max(self.chips, 1)


def step_energy(power: ChipPower, fac: Facility, *, chips: int, step_s, compute_s, memory_s, tokens,
                idle_chips: float = 0.0, level: str = SERVER_LEVEL, tokens_per_chip=None) -> StepEnergy:
    """Watts and joules of a pass: `compute_s`/`memory_s` are the roofline's terms of the pass (what
    one chip spends on each), `step_s` its (estimated) duration, `tokens` the new tokens it produces,
    `tokens_per_chip` τ (default tokens / chips). `idle_chips`: chips billed with the replica but idle
    (idle + host power). Numbers or arrays (a curve): every figure broadcasts."""
    import numpy as np

    check_level(level)
    T = np.asarray(step_s, float)
    if not np.all(np.isfinite(T)) or np.any(T <= 0):
        raise TokenmathError("step time must be a positive finite number of seconds")
    tok = np.asarray(tokens, float)
    tau = tok / chips if tokens_per_chip is None else np.asarray(tokens_per_chip, float)
    c, m = np.asarray(compute_s, float), np.asarray(memory_s, float)
    share = np.where(c + m > 0, c / np.maximum(c + m, 1e-30), 0.0)
    chip_w, act, phi, factor = board_power(power, tau, share)
    T = T * np.asarray(factor)
    u_c = np.clip(c / T, 0.0, 1.0)
    u_m = np.clip(m / T, 0.0, 1.0)
    idle_n = np.asarray(idle_chips, float)
    board = chips * np.asarray(chip_w) + idle_n * power.idle_w
    host = (chips + idle_n) * power.host_w + 0.0 * T
    node = board + host
    fw = node * fac.pue
    at = {"board": board, "node": node, "facility": fw}
    # attribution of the activity above idle to compute and memory by the bound's time shares (a view)
    active = chips * (np.asarray(chip_w) - power.idle_w)
    parts = {"idle": (chips + idle_n) * power.idle_w + 0.0 * T, "compute": active * share,
             "memory": active * (1.0 - share), "host": host}
    parts["facility"] = (fac.pue - 1.0) * node
    tps = tok / T
    prov = None if not power.all_in_kw else _f(tps / ((chips + idle_n) * power.all_in_kw * 1e3 / 1e6))
    w = at[level]
    assumptions = power.assumptions + fac.assumptions
    capped = power.cap_w is not None and bool(np.any(np.asarray(phi) < 1.0))
    if capped:
        assumptions += (f"power cap {power.cap_w:g} W binds: clocks at {float(np.min(phi)):.0%} of uncapped, the "
                        f"compute-bound share of the pass {float(np.max(share)):.0%} slowed by 1/φ (dynamic power ∝ f³)",)
    return StepEnergy(int(chips), _f(T), _f(tok + 0 * T), level, _f(np.maximum(tau, 1.0) + 0 * T), _f(act + 0 * T),
                      _f(chip_w + 0 * T), _f(board), _f(host), _f(node), _f(fw), fac.pue, _f(w), _f(w * T / tok),
                      _f(board * T / tok), _f(node * T / tok), _f(fw * T / tok), _f(tps / (w / 1e6)), prov,
                      {k: _f(v) for k, v in parts.items()}, _f(u_c), _f(u_m), power.cap_w, _f(phi + 0 * T),
                      _f(np.asarray(factor) + 0 * T), assumptions)


def _f(x):
    import numpy as np

    a = np.asarray(x, float)
    return float(a) if a.ndim == 0 else a


def energy_of(st, system: System, *, step_s=None, power: ChipPower | None = None, fac: Facility | None = None,
              level: str = SERVER_LEVEL) -> StepEnergy:
    """The energy of a pass from its roofline StepTime `st` (or a sweep of them) over `step_s` (the
    estimate's step; default the bound's own)."""
    import numpy as np

    chips = st.assumptions.chips
    tokens = np.asarray(st.batch) * np.asarray(st.new_tokens)
    return step_energy(power or chip_power(system), fac or facility(), chips=chips,
                       step_s=st.step_s if step_s is None else step_s, compute_s=st.compute_s, memory_s=st.memory_s,
                       tokens=tokens, level=level)


def energy_of_pass(est, system: System, *, power: ChipPower | None = None, fac: Facility | None = None,
                   level: str = SERVER_LEVEL) -> StepEnergy:
    """The energy of a pass from its estimate (estimate.estimate_pass): τ = its new tokens (decode
    and prefill chunks) per working chip; the layout's chips draw that power, the chips its
    placement strands draw idle + host. The bound's compute and HBM terms of the same pass are the
    compute share a power cap slows. Numbers or arrays (a sweep)."""
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
                       tokens=tokens, idle_chips=float(idle), level=level)


def maybe_energy_of_pass(est, system: System, level: str = SERVER_LEVEL) -> StepEnergy | None:
    """energy_of_pass, or None where the chip has no power figures (the answer says so instead)."""
    try:
        return energy_of_pass(est, system, level=level)
    except TokenmathError:
        return None


def maybe_energy_of(st, system: System, *, step_s=None, level: str = SERVER_LEVEL) -> StepEnergy | None:
    """energy_of, or None where the chip has no power figures (the answer says so instead)."""
    try:
        return energy_of(st, system, step_s=step_s, level=level)
    except TokenmathError:
        return None


def busy_shares(model, system: System, *, batch: float, context: float, chips: int, tp: int, ep: int = 1,
                weight_dtype: str | None = None) -> tuple[float, float, float]:
    """(u_c, u_m, estimated step s) of a decode step at `batch` and `context` on a TP × EP replica:
    the bound's compute and HBM terms of the pass over the calibrated estimate's step."""
    from .estimate import estimate_pass
    from .layout import Layout
    from .profiles import choose
    from .specs import Dtypes

    lay = Layout(tp=tp, ep=ep)
    if lay.replica_chips != int(chips):
        raise TokenmathError(f"TP {tp} × EP {ep} uses {lay.replica_chips} chips, not {chips}")
    est = estimate_pass(model, system, batch, context, 1.0, layout=lay, dtypes=Dtypes(weight=weight_dtype),
                        profile=choose("calibrated", system=system))
    bp = est.op.bound_parts
    T = float(est.step_s)
    return float(bp["compute_s"]) / T, float(bp["weights_s"] + bp["kv_s"] + bp["activations_s"]) / T, T


# --------------------------------------------------------------------------------------------
# The energy of work: a request (prefill + decode) under continuous batching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestEnergy:
    """The energy of one request of `input_tokens` in / `output_tokens` out on a replica serving
    `batch` requests at once, as measured benchmarks count it: all the replica's energy, prefill
    included, divided among the requests (ML.ENERGY: energy ÷ output tokens)."""

    input_tokens: float
    output_tokens: float
    batch: float
    level: str
    time_per_output_token_s: float  # the steady step with prefill chunked in (stepmodel.steady_step_s)
    board_joules: float
    node_joules: float
    facility_joules: float
    joules: float  # at `level`
    joules_per_output_token: float  # at `level`
    board_joules_per_output_token: float
    node_joules_per_output_token: float
    facility_joules_per_output_token: float
    prefill_share: float  # of the request's time (and energy) spent in its prefill
    board_watts_per_chip: float
    assumptions: tuple[str, ...] = ()

    @property
    def wh(self) -> float:
        return self.joules / 3600.0


def request_energy(model, system: System, layout, batch: float, input_tokens: float, output_tokens: float, *,
                   profile, dtypes=None, power: ChipPower | None = None, fac: Facility | None = None,
                   level: str = SERVER_LEVEL, idle_chips: float = 0.0) -> RequestEnergy:
    """J per request and per output token of a replica at `batch` concurrent requests, continuous
    batching with chunked prefill: each step makes `batch` output tokens and prefills batch/O new
    prompts, so a request's share of the replica's energy is P · T_step · O / batch, prefill
    included. T_step: stepmodel.steady_step_s under `profile`. The board power is at τ = batch /
    chips (decode tokens per chip: the convention of the power fit)."""
    import numpy as np

    from .specs import Dtypes
    from .stepmodel import op_step, steady_step_s

    check_level(level)
    dt = dtypes or Dtypes()
    power = power or chip_power(system)
    fac = fac or facility()
    B, I, O = float(batch), float(input_tokens), float(output_tokens)
    if B <= 0 or I < 1 or O < 1:
        raise TokenmathError(f"batch {B:g}, input {I:g} and output {O:g} tokens: expected batch > 0 and token counts >= 1")
    chips = layout.replica_chips
    kern = None if profile.is_roofline else profile.kernels
    eng = None if kern is None else profile.engine
    T = float(steady_step_s(model, system, layout, B, I, O, kernels=kern, engine=eng, dtypes=dt))
    # prefill's share: what the chunks add to the decode-only step (steady_step_s's marginal form; on an
    # attention-DP layout the ranks prefill their own prompts side by side, not one lone prompt at a time)
    t_dec = float(op_step(model, system, layout, B, I + O / 2, 1.0, kernels=kern, engine=eng, dtypes=dt,
                          check=False).step_s)
    share = float(np.clip(1.0 - t_dec / T, 0.0, 1.0))
    op = op_step(model, system, layout, B, I + O / 2, 1.0, kernels=None, dtypes=dt, check=False)
    bp = op.bound_parts
    e = step_energy(power, fac, chips=chips, step_s=T, compute_s=float(bp["compute_s"]),
                    memory_s=float(bp["weights_s"] + bp["kv_s"] + bp["activations_s"]), tokens=B,
                    idle_chips=idle_chips, level=level)
    T = float(e.step_s)
    per_req = T * O / B
    j = {k: float(getattr(e, f"{k}_watts")) * per_req for k in LEVELS}
    return RequestEnergy(I, O, B, level, T, j["board"], j["node"], j["facility"], j[level], j[level] / O,
                         j["board"] / O, j["node"] / O, j["facility"] / O, share, float(e.board_watts_per_chip),
                         e.assumptions)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def training_board_share() -> float:
    """Board power while training, as a share of the board limit (energy.toml [power_model])."""
    return float(_data().get("power_model", {}).get("training_board_share", 1.0))


@dataclass(frozen=True)
class TrainingEnergy:
    """Energy of a training run at the three levels; `energy_mwh` is at `level` (default facility)."""

    level: str
    energy_mwh: float  # at `level`
    board_energy_mwh: float  # the accelerators at their measured training draw
    node_energy_mwh: float
    facility_energy_mwh: float
    board_energy_at_tdp_mwh: float  # GPU-hours × board limit: how model cards count (Meta's Llama 3.1 card)
    chip_w: float  # board power per chip while training
    host_w: float
    pue: float
    assumptions: tuple[str, ...] = ()

    @property
    def gpu_energy_mwh(self) -> float:
        """The accelerators alone (board level; the name before issue 23)."""
        return self.board_energy_mwh


def training_energy(system: System, chips: int, seconds: float, *, power: ChipPower | None = None,
                    fac: Facility | None = None, level: str = FLEET_LEVEL) -> TrainingEnergy:
    """Energy of a training run: every chip at the measured training board power (a share of its
    board limit, energy.toml [power_model] training_board_share: OLMo 2 on H100 draws over 85 % of
    700 W while training) for the whole run, plus host, × PUE. `board_energy_at_tdp_mwh` is the
    model cards' convention (GPU-hours × TDP), the figure to compare with them."""
    check_level(level)
    power = power or chip_power(system)
    fac = fac or facility()
    t = _positive("seconds", seconds)
    share = training_board_share()
    chip_w = min(share * power.board_w, power.limit_w)
    h = chips * t / 3.6e9  # MW-hours per watt per chip
    board = chip_w * h
    node = (chip_w + power.host_w) * h
    fw = node * fac.pue
    e = {"board": board, "node": node, "facility": fw}
    return TrainingEnergy(level, float(e[level]), float(board), float(node), float(fw), float(power.board_w * h),
                          float(chip_w), float(power.host_w), fac.pue,
                          power.assumptions + fac.assumptions +
                          (f"training board power {share:g} × board limit (energy.toml power_model.training_board_share)",))


# --------------------------------------------------------------------------------------------
# The planner's rows
# --------------------------------------------------------------------------------------------


def plan_energy(model, systems: dict, cols: dict, rows, input_tokens: float, output_tokens: float, *,
                prompt_cached: float | None = None, level: str = SERVER_LEVEL):
    """(watts per replica at `level`, J per output token, output tokens/s per MW) of planner rows:
    each row's decode step at its batch, on its layout: board power at τ = batch / replica chips,
    the roofline's compute and HBM terms of that pass (with `prompt_cached`, also the prompt
    chunks each step carries) as the compute share a cap slows; the replica's output tokens/s
    (prefill included) gives the energy per token. The layout's chips draw that power, the idle
    chips of its domains idle + host. NaN where the chip has no power figures."""
    import numpy as np

    from .layout import Layout
    from .specs import Dtypes
    from .stepmodel import op_step

    check_level(level)
    rows = np.asarray(rows, int)
    w, j, mw = (np.full(len(rows), np.nan) for _ in range(3))
    if not len(rows):
        return w, j, mw
    # the rows by (system, TP, EP, PP, weight dtype, KV dtype): each column's values as codes, combined
    if len(rows) == 1:  # one row (a plan's best point, explore's row): one group
        first, split = [0], [np.array([0])]
    else:
        code = np.zeros(len(rows), np.int64)
        for c in ("system", "tp", "ep", "pp", "weight_dtype", "kv_dtype"):
            u, inv = np.unique(np.asarray(cols[c])[rows], return_inverse=True)
            code = code * len(u) + inv.reshape(-1)
        _, first, inv = np.unique(code, return_index=True, return_inverse=True)
        order = np.argsort(inv.reshape(-1), kind="stable")
        split = np.split(order, np.cumsum(np.bincount(inv.reshape(-1)))[:-1])
    L = input_tokens + output_tokens / 2.0
    groups: dict = {}  # (system, weight dtype, KV dtype) -> [(layout, the rows' positions)]: one op_step each
    for f, sel in zip(first, split):
        r0 = rows[f]
        groups.setdefault((str(cols["system"][r0]), str(cols["weight_dtype"][r0]), str(cols["kv_dtype"][r0])),
                          []).append((Layout(tp=int(cols["tp"][r0]), ep=int(cols["ep"][r0]), pp=int(cols["pp"][r0])),
                                      sel))
    for (name, wd, kv), members in groups.items():
        s = systems[name]
        try:
            power, fac = chip_power(s), facility()
        except TokenmathError:
            continue
        dt = Dtypes.for_point(model, wd, kv)
        lays = [lay for lay, _ in members]
        # every layout's rows as one (layouts, rows) batch array (short rows padded with their first
        # batch): the roofline of all of them in one broadcast call, like the planner's search
        width = max(len(sel) for _, sel in members)
        B = np.empty((len(members), width))
        for i, (_, sel) in enumerate(members):
            b = cols["batch"][rows[sel]].astype(float)
            B[i] = np.concatenate([b, np.full(width - len(b), b[0])])
        # one layout (a plan's best point, explore's row): its own pass, a float one for one row
        one = len(lays) == 1
        at = (lays[0], float(B[0, 0]) if width == 1 else B[0]) if one else (lays, B)
        op = op_step(model, s, *at, L, 1.0, kernels=None, dtypes=dt, check=False)
        bp = {k: np.broadcast_to(np.asarray(v, float).reshape(len(lays), -1), B.shape)
              for k, v in op.bound_parts.items()}
        compute = bp["compute_s"]
        if prompt_cached is not None:  # the prompt chunks sharing each step: B/O prompts of I − cached tokens
            Ip = input_tokens - prompt_cached
            pre = op_step(model, s, lays[0] if one else lays, 1.0 if one else np.ones((len(lays), 1)), prompt_cached,
                          Ip, kernels=None, dtypes=dt, check=False)
            compute = compute + B / output_tokens * np.asarray(pre.bound_parts["compute_s"], float).reshape(-1, 1)
        memory = bp["weights_s"] + bp["kv_s"] + bp["activations_s"]
        by_chips: dict = {}  # layouts of one replica size share one step_energy call
        for i, (lay, sel) in enumerate(members):
            by_chips.setdefault(lay.replica_chips, []).append((i, sel))
        for chips, parts in by_chips.items():
            sel = np.concatenate([sel for _, sel in parts])
            r = rows[sel]
            pick = lambda a: np.concatenate([a[i, :len(sel_i)] for i, sel_i in parts])  # noqa: E731
            billed = cols["billed_chips"][r].astype(float)
            e = step_energy(power, fac, chips=chips, step_s=cols["step_s"][r].astype(float), compute_s=pick(compute),
                            memory_s=pick(memory), tokens=pick(B), idle_chips=billed - chips, level=level)
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
    capex_usd: float  # all capital per chip: the server's share + the cluster network + other
    capex_usd_per_chip_hour: float
    power_usd_per_chip_hour: float
    facility_usd_per_chip_hour: float
    usd_per_chip_hour: float
    rental_usd_per_chip_hour: float | None
    utilisation: float
    average_chip_w: float  # board level, over busy and idle hours
    capital_recovery_factor: float
    power_idle_usd_per_chip_hour: float  # electricity at utilisation 0
    power_busy_usd_per_chip_hour: float  # electricity at utilisation 1
    assumptions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    server_capex_usd: float = 0.0  # the server's (or rack's) share per chip
    network_capex_usd: float = 0.0  # the cluster's scale-out network per chip
    other_capex_usd: float = 0.0  # storage, installation: a given share
    busy_chip_w: float = 0.0  # board power while busy
    host_w: float = 0.0  # measured host draw per chip
    node_average_w: float = 0.0  # average_chip_w + host_w
    facility_average_w: float = 0.0  # node_average_w × PUE
    provisioned_w: float = 0.0  # board limit + host rating: what the facility rent is charged on


def capital_recovery_factor(rate: float, years: float) -> float:
    """The annual payment that repays 1 over `years` at interest `rate` (an annuity)."""
    if rate == 0:
        return 1.0 / years
    g = (1.0 + rate) ** years
    return rate * g / (g - 1.0)


def network_share() -> tuple[float, str]:
    """(the cluster network's share of cluster capex, its source)."""
    t = _data().get("tco", {})
    return float(t.get("network_share_of_cluster_capex", 0.0)), t.get("network_source", "")


def tco(system: System, *, capex_usd: float | None = None, utilisation: float = 0.7, fac: Facility | None = None,
        power: ChipPower | None = None, busy_tokens_per_chip: float | None = None, network: bool = True,
        other_capex_share: float = 0.0) -> Tco:
    """$ per chip-hour of owning `system`'s chips: capital as an annuity on the server's share + the
    cluster network (a sourced share of cluster capex; `network=False` leaves it out) + other
    (`other_capex_share` of the server's share: storage, installation; no sourced default), the
    electricity of the board (busy `utilisation` of the hours at `busy_tokens_per_chip`, idle the
    rest) and the host (measured) × PUE, and the facility's $/kW-month on the provisioned power."""
    u = _positive("--utilisation", utilisation, low_inclusive=True, high=1.0)
    fac = fac or facility()
    for flag, v in (("--usd-per-kwh", fac.usd_per_kwh), ("--facility-usd-per-kw-month", fac.facility_usd_per_kw_month),
                    ("--years", fac.years), ("--cost-of-capital", fac.cost_of_capital)):
        if math.isnan(v):
            raise TokenmathError(f"no sourced default for {flag[2:]}; give {flag}")
    power = power or chip_power(system)
    row = _data().get("chips", {}).get(system.name, {})
    tt = _data().get("tco", {})
    assumptions, sources = list(power.assumptions + fac.assumptions), list(power.sources + fac.sources)
    if capex_usd is None:
        if not row.get("capex_usd"):
            raise TokenmathError(f"no sourced capex for {system.name}; give --capex-usd-per-chip")
        capex_usd = row["capex_usd"]
        sources.append(f"capex ${capex_usd:,.0f}: {row.get('capex_source', '')}")
    else:
        assumptions.append(f"capex ${capex_usd:,.0f} per chip (given)")
    server = _positive("--capex-usd-per-chip", capex_usd, high=1e8)
    other_share = _positive("--other-capex-share", other_capex_share, low_inclusive=True, high=10.0)
    share, nsrc = network_share()
    net = server * share / (1.0 - share) if network and share > 0 else 0.0
    if net:
        sources.append(f"cluster network {share:.0%} of cluster capex (× {1 / (1 - share):.3f} on the server's share): {nsrc}")
    else:
        assumptions.append("cluster network left out (--no-network)" if not network else "no sourced network share")
    other = server * other_share
    if other_share:
        assumptions.append(f"storage, installation and other capital {other_share:.0%} of the server's share (given)")
    else:
        assumptions.append("storage and installation not in the capital (no sourced share; give --other-capex-share)")
    capex = server + net + other
    crf = capital_recovery_factor(fac.cost_of_capital, fac.years)
    capex_h = capex * crf / HOURS_PER_YEAR
    tau = float(tt.get("busy_tokens_per_chip", 256.0)) if busy_tokens_per_chip is None else _positive(
        "busy tokens per chip", busy_tokens_per_chip)
    if busy_tokens_per_chip is None:
        assumptions.append(f"busy = serving at {tau:g} tokens per chip per step ({tt.get('busy_source', 'energy.toml tco.busy_tokens_per_chip')})")
    else:
        assumptions.append(f"busy = serving at {sig(tau, 4)} tokens per chip per step (the pass compared)")
    busy, _, _, _ = board_power(power, tau)
    avg_w = power.idle_w + u * (busy - power.idle_w)
    kwh = fac.pue / 1e3 * fac.usd_per_kwh  # $ per W-hour at the facility's meter
    power_h = (avg_w + power.host_w) * kwh
    prov = power.provisioned_w
    facility_h = prov / 1e3 * fac.facility_usd_per_kw_month / HOURS_PER_MONTH
    total = capex_h + power_h + facility_h
    node_avg = avg_w + power.host_w
    return Tco(system.name, capex, capex_h, power_h, facility_h, total, system.usd_per_chip_hour, u, avg_w, crf,
               (power.idle_w + power.host_w) * kwh, (busy + power.host_w) * kwh, tuple(assumptions), tuple(sources),
               server, net, other, float(busy), power.host_w, node_avg, node_avg * fac.pue, prov)


def busy_tokens_of(est) -> float:
    """New tokens per chip per step of an estimated pass (estimate.Estimated): the operating point of
    a busy hour when `tco` is compared with that pass."""
    op = est.op
    return float(op.batch) * float(op.new_tokens) / float(op.chips)


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
    return priced_by(system, t)


def priced_by(system: System, t: Tco) -> System:
    """The system priced per busy chip-hour by the TCO `t` (none at 0 % utilisation), busy
    `t.utilisation` of its held hours (System.busy_share: fleets pay the owning $/h)."""
    busy = busy_chip_hour_usd(t)
    if busy is None:
        return replace(system, usd_per_chip_hour=None)
    return replace(system, usd_per_chip_hour=busy, price_source=tco_price_source(t), busy_share=t.utilisation)


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


__all__ = ["busy_chip_hour_usd", "priced_by_tco", "energy_of_pass", "maybe_energy_of_pass", "TrainingEnergy",
           "training_energy", "maybe_energy_of", "ChipPower", "Facility", "StepEnergy", "Tco", "chip_power", "facility",
           "step_energy", "energy_of", "tco", "priced_by", "busy_tokens_of", "capital_recovery_factor", "breakeven_utilisation", "board_power",
           "RequestEnergy", "request_energy", "LEVELS", "check_level", "facility_classes", "power_fit"]
