"""`tokenmath train ...`: training economics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, Num, JsonOpt, CatalogOpt, handles_errors, _catalog, _catalog_checked, _finish, _count, ModelOpt,
    SystemOpt, app, err, _num, check_dtype, si, TokenmathError,
)
from ..units import sig


# ---- training ---------------------------------------------------------------------------------

train_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Training economics: time and cost, over-training, Chinchilla, memory.")
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
    level: Annotated[Optional[str], typer.Option("--level", help="Which energy `energy_mwh` is: board, node, or facility (× PUE; the default for a training run).")] = None,
    facility: Annotated[Optional[str], typer.Option("--facility", help="Facility class for the PUE: hyperscale, colo (default) or average.")] = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness (≥ 1), instead of the facility class's.")] = None,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), for a chip the catalog has none for (as `energy --board-w`).")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """How long, and what it costs, to train on D tokens: FLOPs = 6·N_active·D at an MFU; its energy at the board, node and facility levels."""
    from .. import report as rp

    from .. import training as tr
    from ..roofline import compute_label

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    t = tr.train_time(m, s, chips, _count(tokens, "--tokens"), mfu=mfu, dtype=check_dtype(dtype),
                      flops_per_param_token=8.0 if recompute else 6.0, usd_per_chip_hour=price)
    lines = [
        f"{m.name} on {chips:,} × {s.name}, {sig(t.tokens, 4)} tokens at {t.mfu:.0%} MFU"
        f" ({compute_label(dtype, s.compute_class_for(dtype))}: peak {si(t.flops_per_s_per_chip, 'FLOP/s')})",
        f"  FLOPs = {t.flops_per_param_token:g}·N_active·D = {t.flops_per_param_token:g} × {sig(t.active_params, 4)} × {sig(t.tokens, 4)} = {t.flops:.3g}",
        f"  time = FLOPs / (chips · peak · MFU) = {t.days:,.1f} days ({t.chip_hours:,.0f} chip-hours), {rp.usd(t.usd)}",
    ]
    from .. import energy as en

    rec = rp.jsonable(t)
    lvl = en.check_level(level or en.FLEET_LEVEL)
    fac = en.facility(pue=pue, facility_class=facility)  # a bad --pue or --facility is the user's: exit 2
    power = None if board_w is None else en.chip_power(s, overrides={"board_w": board_w})
    try:  # a chip without a sourced board power: said in a line, the time and cost still answered
        e = en.training_energy(s, chips, t.seconds, power=power, fac=fac, level=lvl)
        rec |= {"energy_mwh": e.energy_mwh, "energy_level": e.level, "gpu_energy_mwh": e.gpu_energy_mwh,
                "board_energy_mwh": e.board_energy_mwh, "node_energy_mwh": e.node_energy_mwh,
                "facility_energy_mwh": e.facility_energy_mwh, "board_energy_at_tdp_mwh": e.board_energy_at_tdp_mwh,
                "board_energy_at_tdp_means": "chip-hours × the board limit: how model cards count training energy "
                                             "(Meta's Llama 3.1 card: GPU-hours × 700 W TDP)",
                "energy_assumptions": list(e.assumptions)}
        mwh = lambda x: f"{x:,.0f}" if x >= 100 else f"{sig(x, 4)}"  # noqa: E731
        lines.append(f"  energy ({lvl} level) = {mwh(e.energy_mwh)} MWh: boards {mwh(e.board_energy_mwh)} MWh ({e.chip_w:,.0f} W"
                     f" each while training), node {mwh(e.node_energy_mwh)} MWh (+ {e.host_w:,.0f} W host per chip),"
                     f" facility {mwh(e.facility_energy_mwh)} MWh (× PUE {e.pue:g}); at the board limit, as model cards"
                     f" count: {mwh(e.board_energy_at_tdp_mwh)} MWh")
    except TokenmathError as err_:
        rec["energy_mwh"] = None
        lines.append(f"  energy: {err_}")
    _finish(json_, rec, lines)


@train_command("mfu")
def train_mfu_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens of the published run.")],
    chip_hours: Annotated[str, typer.Option("--chip-hours", help="Published chip-hours ('2.664M').")],
    dtype: Annotated[str, typer.Option("--dtype", help="Peak to measure against.")] = "bf16",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """The MFU a published run implies: 6·N_active·D / (chip-hours · 3600 · peak)."""
    from .. import training as tr
    from ..roofline import compute_label

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    D, H = _count(tokens, "--tokens"), _count(chip_hours, "--chip-hours")
    u = tr.implied_mfu(m, s, D, H, dtype=check_dtype(dtype))
    _finish(json_, {"mfu": u, "dtype": dtype, "tokens": D, "chip_hours": H},
            [f"{m.name}: {sig(D, 4)} tokens in {sig(H, 4)} {s.name}-hours imply {u:.1%} of the"
             f" {s.compute_class_for(dtype)} peak" + ("" if s.compute_class_for(dtype) == dtype else
                                                     f" ({compute_label(dtype, s.compute_class_for(dtype))})")])


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
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """How much to over-train given serving demand: equal pre-training, RL and inference costs."""
    from .. import report as rp

    from .. import training as tr

    _catalog_checked(catalog)

    N = _count(active_params, "--active-params")
    o = tr.overtrain(N, _count(tokens_per_s, "--tokens-per-s"), lifetime_days, rl_factor=rl_factor,
                     rl_efficiency=rl_efficiency, inference_efficiency=inference_efficiency, fit=fit)
    if plot is not None:
        from .. import plots

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
    from .. import report as rp

    from .. import training as tr

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
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Training memory per chip: weights, gradients, Adam state, activations; does it fit?"""
    from .. import report as rp

    from .. import training as tr

    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)
    S = _count(seq_len, "--seq-len")
    mem = tr.train_memory(m, s, dp=dp, tp=tp, pp=pp, ep=ep, micro_batch=micro_batch, seq_len=int(S), zero=zero,
                          recompute=recompute, chips=chips)
    if plot is not None:
        from .. import plots

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
