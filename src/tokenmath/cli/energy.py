"""`tokenmath energy | tco`: watts and joules of a pass at three levels (board, node, facility), the
energy of a request, and what owning a chip costs per hour."""

from typing import Annotated, Optional

import typer

from . import (
    Num, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, ChipsOpt, command, _finish, EfficiencyOpt, EngineOpt,
    ModelOpt, SystemOpt,
)

LevelOpt = Annotated[Optional[str], typer.Option("--level", help="Which power the headline watts and J/token are: board (the accelerators), node (boards + host: at the server's wall; the default here), facility (node × PUE).")]
FacilityOpt = Annotated[Optional[str], typer.Option("--facility", help="Facility class for the PUE: hyperscale, colo (the default) or average; --pue replaces it.")]
CapOpt = Annotated[Optional[float], Num("--power-cap-w", help="A board power cap (W per chip, as nvidia-smi -pl sets): the board draws at most this; compute-bound work slows.")]


@command("energy")
def energy_cmd(
    model: ModelOpt, system: SystemOpt,
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "64",
    context: Annotated[str, typer.Option("--context", help="Context length (L, tokens).")] = "4096",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="With --output-tokens: the energy of the work, per request and per output token (prefill included, continuous batching at --batch).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Output tokens of that request.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    level: LevelOpt = None, facility: FacilityOpt = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness of the facility (≥ 1), instead of its class's.")] = None,
    power_cap_w: CapOpt = None,
    idle_w: Annotated[Optional[float], Num("--idle-w", help="Idle power per chip (W), instead of the sourced figure.")] = None,
    host_w: Annotated[Optional[float], Num("--host-w", help="Host CPU/NIC/switch/fan power per chip (W), instead of the measured figure.")] = None,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all'; the estimate, the bound and the power alike.")] = "expected",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Power and energy of a pass at three levels — board (the accelerators), node (boards + host, at the server's wall; the default), facility (× PUE) — watts by cause, J/token, tokens/s per MW; with --input-tokens/--output-tokens, the energy of a request and per output token, prefill included."""
    from .. import api

    r = api.energy(model, system, batch=batch, context=context, new_tokens=new_tokens, input_tokens=input_tokens,
                   output_tokens=output_tokens, chips=chips, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                   compute_dtype=compute_dtype, efficiency=efficiency, engine=engine, level=level, facility=facility,
                   pue=pue, power_cap_w=power_cap_w, idle_w=idle_w, host_w=host_w, board_w=board_w,
                   expert_fetch=expert_fetch, catalog=catalog)
    _finish(json_, r.record, r.lines)


@command("tco")
def tco_cmd(
    system: SystemOpt,
    capex: Annotated[Optional[str], typer.Option("--capex-usd-per-chip", help="Purchase price per chip with its share of the server or rack ($), before the cluster network.")] = None,
    years: Annotated[Optional[float], Num("--years", help="Years the capital is recovered over.")] = None,
    cost_of_capital: Annotated[Optional[float], Num("--cost-of-capital", help="Annual cost of capital (0.1 = 10 %).")] = None,
    usd_per_kwh: Annotated[Optional[float], Num("--usd-per-kwh", help="Electricity price ($ per kWh).")] = None,
    facility: FacilityOpt = None,
    pue: Annotated[Optional[float], Num("--pue", help="Power usage effectiveness (≥ 1), instead of the facility class's.")] = None,
    facility_cost: Annotated[Optional[float], Num("--facility-usd-per-kw-month", help="Facility (colocation) $ per kW of provisioned power per month.")] = None,
    utilisation: Annotated[float, Num("--utilisation", help="Share of hours the chip is busy (0–1).")] = 0.7,
    board_w: Annotated[Optional[float], Num("--board-w", help="Board power limit per chip (W), where the catalog has none or to replace it.")] = None,
    host_w: Annotated[Optional[float], Num("--host-w", help="Host power per chip (W), instead of the measured figure.")] = None,
    power_cap_w: CapOpt = None,
    no_network: Annotated[bool, typer.Option("--no-network", help="Leave the cluster network out of the capital (a single server).")] = False,
    other_capex_share: Annotated[Optional[float], Num("--other-capex-share", help="Storage, installation and other capital as a share of the server's capex (no sourced default: 0).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="With --price-sheet: owning vs buying this model's tokens.")] = None,
    price_sheet: Annotated[Optional[str], typer.Option("--price-sheet", help="An API price sheet (`tokenmath prices sheets`) to compare with.")] = None,
    batch: Annotated[str, typer.Option("--batch", help="With --model: sequences per replica.")] = "256",
    context: Annotated[str, typer.Option("--context", help="With --model: context (tokens).")] = "4096",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What owning a chip costs per hour: capital (server + cluster network, an annuity at the cost of capital), electricity (board + measured host, × PUE) at the utilisation, facility rent on the provisioned power; the rental price beside it."""
    from .. import api

    r = api.tco(system, capex_usd_per_chip=capex, years=years, cost_of_capital=cost_of_capital, usd_per_kwh=usd_per_kwh,
                facility=facility, pue=pue, facility_usd_per_kw_month=facility_cost, utilisation=utilisation,
                board_w=board_w, host_w=host_w, power_cap_w=power_cap_w, no_network=no_network,
                other_capex_share=other_capex_share, model=model, price_sheet=price_sheet, batch=batch, context=context,
                catalog=catalog)
    _finish(json_, r.record, r.lines)
