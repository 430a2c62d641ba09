"""`tokenmath step | curve | client | balance | fastmode | traffic | prefill`: one pass and serving economics."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, Num, JsonOpt, CatalogOpt, WeightOpt, KvOpt, ComputeOpt, ChipsOpt, command, _catalog, _emit_json,
    _finish, _count, _setup, SparseOpt, SparseModeOpt, EfficiencyOpt, EngineOpt, _profile, ModelOpt,
    SystemOpt, ContextOpt, out, err, _num, TokenmathError, seconds, CostOpt, _priced, _drawn,
)


# ---- the roofline step -----------------------------------------------------------------------


@command("step")
def step_cmd(
    model: Annotated[str, typer.Option("--model", help="Catalog name or config.json path.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system name.")],
    batch: Annotated[str, typer.Option("--batch", help="Sequences in the pass (B).")] = "1",
    context: Annotated[str, typer.Option("--context", help="Context length attended to (L, tokens; '8k' = 8,000: k/M are decimal).")] = "0",
    new_tokens: Annotated[str, typer.Option("--new-tokens", help="New tokens per sequence (S): 1 = decode.")] = "1",
    chips: Annotated[Optional[int], Num("--chips", help="Chips in one replica. Default: the scale-up domain (box or rack; for TPU pods the fewest that hold weights + KV), grown by powers of two and then whole domains until weights + KV fit — the output says when it grew. Chips the default layout cannot use (e.g. past the experts' divisors) are said, and neither used nor billed.")] = None,
    weight_dtype: WeightOpt = None,
    kv_dtype: KvOpt = "bf16",
    compute_dtype: ComputeOpt = None,
    flops_efficiency: Annotated[float, Num("--flops-efficiency", help="With --efficiency roofline: achieved fraction of peak FLOP/s (a what-if).")] = 1.0,
    hbm_efficiency: Annotated[float, Num("--hbm-efficiency", help="With --efficiency roofline: achieved fraction of peak HBM bandwidth (a what-if).")] = 1.0,
    efficiency: EfficiencyOpt = "calibrated",
    engine: EngineOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    cost: CostOpt = "rental",
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads, for the estimate, the bound and the energy alike: 'expected' (those its B·S tokens touch, E·(1 − (1 − k/E)^(B·S)); the default) or 'all' (every expert, every step: the lecture's model).")] = "expected",
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L (--no-attention-flops: the lecture's closed form; totals-only models with --efficiency roofline).")] = True,
    allow_overflow: Annotated[bool, typer.Option(help="Report a layout whose weights + KV exceed HBM instead of failing.")] = False,
    json_: JsonOpt = False,
    catalog: CatalogOpt = None,
) -> None:
    """One forward pass: the calibrated estimate (the answer), with the roofline bound of the same pass (same layout, chips and expert fetch) beside it."""
    from .. import api

    r = api.step(model, system, batch=batch, context=context, new_tokens=new_tokens, chips=chips,
                 weight_dtype=weight_dtype, kv_dtype=kv_dtype, compute_dtype=compute_dtype,
                 flops_efficiency=flops_efficiency, hbm_efficiency=hbm_efficiency, efficiency=efficiency, engine=engine,
                 usd_per_chip_hour=usd_per_chip_hour, cost=cost, expert_fetch=expert_fetch,
                 attention_flops=attention_flops, allow_overflow=allow_overflow, catalog=catalog)
    if json_:
        return _emit_json(r.record)
    _print_lines(r.lines, last_highlighted="estimate" in r.parts)


def _answer(r, plot, json_: bool) -> None:
    """A facade result as the command prints it: its chart where asked, then --json or its lines."""
    _drawn(r, plot)
    if json_:
        return _emit_json(r.record)
    _print_lines(r.lines)


def _print_lines(lines, *, last_highlighted: bool = True) -> None:
    """A facade result's text as the command prints it: tables as they are, lines of words without
    number highlighting (the last one, the dim assumptions line, with it where `last_highlighted`)."""
    for i, x in enumerate(lines):
        if not isinstance(x, str) or (last_highlighted and i == len(lines) - 1):
            out.print(x)
        else:
            out.print(x, highlight=False)


# ---- serving economics ----------------------------------------------------------------------


@command("curve")
def curve_cmd(
    model: ModelOpt, system: SystemOpt,
    over: Annotated[str, typer.Option("--over", help="Sweep 'batch' (at --context) or 'context' (at --batch).")] = "batch",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Batch for --over context (default: the balance batch).")] = None,
    context: ContextOpt = "4096",
    points: Annotated[int, Num("--points", help="Grid points (log spaced).")] = 60,
    chips: Annotated[Optional[int], Num("--chips", help="Chips in one replica (default: the scale-up domain, grown until the first point's weights + KV fit; said in the output).")] = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    expert_fetch: Annotated[str, typer.Option(help="Routed experts a step reads: 'expected' for its tokens (default) or 'all' (the lecture's model); the estimate and the bound alike.")] = "expected",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curve to this PNG/SVG file: the estimate with its 80 % band, the roofline bound beside it.")] = None,
    force: ForceOpt = False,
    cost: CostOpt = "rental",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Step latency, tokens/s per chip and per user, and $/Mtok over batch or context: the estimate, with the roofline bound of the same passes beside it."""
    from .. import api

    r = api.curve(model, system, over=over, batch=batch, context=context, points=points, chips=chips,
                  weight_dtype=weight_dtype, kv_dtype=kv_dtype, compute_dtype=compute_dtype, sparse_topk=sparse_topk,
                  sparse_mode=sparse_mode, efficiency=efficiency, engine=engine, expert_fetch=expert_fetch, cost=cost,
                  catalog=catalog)
    _answer(r, plot, json_)


@command("client")
def client_cmd(
    model: ModelOpt, system: SystemOpt,
    concurrency: Annotated[Optional[str], typer.Option("--concurrency", help="Requests in flight, comma-separated (e.g. 1,8,64); default: powers of two up to the first at or past the sequences whose KV fits (at most 4,096), and that count; none past --requests.")] = None,
    input_tokens: Annotated[str, typer.Option("--input-tokens", help="Prompt tokens per request.")] = "1000",
    output_tokens: Annotated[str, typer.Option("--output-tokens", help="Output tokens per request.")] = "1000",
    requests: Annotated[Optional[str], typer.Option("--requests", help="The run's request count (--num-prompts); default: the steady state.")] = None,
    arrivals: Annotated[str, typer.Option("--arrivals", help="'spread' (random lengths: prompts arrive through the run) or 'waves' (fixed lengths, e.g. --random-range-ratio 1: a wave of prompts starts and ends together).")] = "spread",
    chips: ChipsOpt = None,
    weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw output tokens/s per chip against tokens/s per user to this PNG/SVG file, one point per concurrency, the estimate's 80 % band and the roofline bound beside it.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """What a benchmark client at a fixed concurrency reports (vllm bench serve / sglang bench_serving --max-concurrency, genai-perf): TTFT, TPOT, tokens/s per user and per chip — the estimate with its 80 % band, the roofline bound of the same runs beside it."""
    from .. import api

    r = api.client(model, system, concurrency=concurrency, input_tokens=input_tokens, output_tokens=output_tokens,
                   requests=requests, arrivals=arrivals, chips=chips, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                   compute_dtype=compute_dtype, efficiency=efficiency, engine=engine, catalog=catalog)
    _answer(r, plot, json_)


@command("balance")
def balance_cmd(
    model: ModelOpt, system: SystemOpt, context: ContextOpt = "4096",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Solve the balance context with weights at this batch.")] = None,
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    sparse_topk: SparseOpt = None, sparse_mode: SparseModeOpt = None,
    attention_flops: Annotated[bool, typer.Option("--attention-flops/--no-attention-flops", help="Count attention FLOPs at context L.")] = True,
    latency_target_s: Annotated[Optional[float], Num("--latency-target-s", help="Also: the largest model whose decode step meets this latency on these chips (L29).")] = None,
    sparsity: Annotated[Optional[float], Num("--sparsity", help="With --latency-target-s: N_total/N_active for the largest model's N_active (default: the model's).")] = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Floors and balance points: B*, B* with KV, L*, latency and cost floors on the roofline (exact), each beside the estimate's counterpart."""
    from .. import report as rp
    from .. import serving as sv

    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                sparse_topk=sparse_topk, sparse_mode=sparse_mode)
    if sparsity is not None and latency_target_s is None:
        raise TokenmathError("--sparsity sets the largest model's N_active for --latency-target-s; give --latency-target-s too")
    prof = _profile(efficiency, engine, s)
    b = sv.balance(m, s, L, batch=B, chips=chips, dtypes=dt, attention_flops=attention_flops)
    est = unavailable = None
    if not prof.is_roofline:
        if m.is_totals_only:
            raise TokenmathError(f"model {m.name!r} is defined by totals only; the estimate needs its architecture (a"
                                 " config.json) — use --efficiency roofline for the bound alone")
        try:
            est = sv.estimated_balance(m, s, L, chips=chips, dtypes=dt, profile=prof, batch=B)
        except TokenmathError as e:  # the lecture's quantities on the bound still stand; say why the estimate is missing
            unavailable = str(e)
    kv = None if m.is_totals_only else sv.decode_flops_per_kv_byte(m, s, context=max(L, 1), kv_dtype=dt.kv)
    largest = None
    if latency_target_s is not None:
        largest = sv.largest_model_for_latency(s, latency_target_s, chips=chips, sparsity=sparsity, reference=m,
                                               profile=None if est is None else prof, dtypes=dt, context=L)
    rec = rp.balance_record(b, est, kv, largest)
    lines = rp.render_balance(b, m, s, est, kv, largest, roofline_only=prof.is_roofline)
    if unavailable:
        rec |= {"estimate": prof.label, "estimate_unavailable": unavailable}
        lines.insert(1, f"  estimate ({prof.label}): unavailable — {unavailable}")
    _finish(json_, rec, lines)


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
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the price/speed frontier to this file.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fast mode / slow mode: what a smaller batch buys in speed and costs in price (the estimate; the roofline beside it)."""
    from .. import report as rp
    from .. import serving as sv

    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    ref = None if reference_batch is None else _count(reference_batch, "--reference-batch")
    if speedup is not None and price_multiplier is not None:
        raise TokenmathError("give --speedup or --price-multiplier, not both")
    prof = _profile(efficiency, engine, s)
    est = None
    if not prof.is_roofline:
        est = sv.estimated_fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref,
                                     chips=chips, dtypes=dt, profile=prof)
    answer = est
    try:
        fm = sv.fast_mode(m, s, L, speedup=speedup, price_multiplier=price_multiplier, reference=ref, chips=chips, dtypes=dt)
    except TokenmathError:
        if est is None:
            raise
        # a slow mode past the bound's HBM: the bound has no answer for the target; show its frontier alone
        fm = sv.fast_mode(m, s, L, reference=ref, chips=chips, dtypes=dt)
    if answer is None:
        answer = fm
    where = f"{m.name} on {chips} × {s.name} at L = {L:,.0f}"
    which = "" if est is None else f" (the estimate, {est.estimate}; the roofline bound allows {fm.max_speedup:.2f}×)"
    if speedup is not None and answer.batch is None:
        if speedup < 1:
            raise TokenmathError(
                f"--speedup = {speedup:g} is out of reach for {where}: a slower mode needs more sequences than the "
                f"{answer.batch_to_fill_hbm if est is not None else sv.batch_to_fill_hbm(m, s, L, chips=chips, dtypes=dt):,.0f}"
                " that fit in HBM; give --speedup closer to 1")
        raise TokenmathError(
            f"--speedup = {speedup:g} is out of reach for {where}: a batch cut buys at most {answer.max_speedup:.2f}×"
            f" (batch 1, a {seconds(answer.latency_floor_s)} step){which}; give --speedup up to"
            f" {answer.max_speedup:.2f}, or more --chips")
    if price_multiplier is not None and answer.batch is None:
        lowest = 1.0 / answer.max_saving if answer.max_saving > 0 else 1.0
        floor = "the lowest estimated cost among batches that fit" if est is not None else "the cost floor"
        raise TokenmathError(
            f"--price-multiplier = {price_multiplier:g} is out of reach for {where}: the cheapest point ({floor})"
            f" is {lowest:.3g}× the reference price; give --price-multiplier >= {lowest:.3g}")
    rec = rp.fastmode_record(fm, est)
    if draft_tokens:
        dm = _catalog(catalog).model(draft_model) if draft_model else None
        roof_spec = sv.speculative_decode(m, s, fm.batch or fm.reference_batch, L, draft_tokens, acceptance,
                                          draft_model=dm, chips=chips, dtypes=dt)
        if est is None:
            rec["speculative"] = rp.jsonable(roof_spec)
        else:
            spec = sv.speculative_decode(m, s, est.batch or est.reference_batch, L, draft_tokens, acceptance,
                                         draft_model=dm, chips=chips, dtypes=dt, profile=prof, layout=est.layout)
            rec["speculative"] = rp.jsonable(spec) | {"roofline": rp.jsonable(roof_spec)}
            rec["roofline"]["speculative"] = rp.jsonable(roof_spec)
    if plot is not None:
        from .. import plots

        plots.price_speed_frontier(fm, title=f"{m.name} on {chips} × {s.name}, L = {L:,.0f}", path=plot, estimate=est)
        err.print(f"wrote {plot}")
    _finish(json_, rec, rp.render_fastmode(fm, m, s, rec.get("speculative"), est, reference_given=ref is not None))


@command("traffic")
def traffic_cmd(
    model: ModelOpt, system: SystemOpt,
    tokens_per_s: Annotated[str, typer.Option("--tokens-per-s", help="Global decode demand (tokens/s; '128k', '200M').")],
    batch: Annotated[Optional[str], typer.Option("--batch", help="Sequences per step (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="Override the catalog's rental price.")] = None,
    cost: CostOpt = "rental",
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Batching cadence: replicas, chips and $/day for a demand (the estimate; the roofline beside it); queueing bounds of 'a train every T'."""
    from .. import report as rp
    from .. import serving as sv

    D = _count(tokens_per_s, "--tokens-per-s")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips,
                                batch=B or 1)
    price = None if usd_per_chip_hour is None else _num(usd_per_chip_hour, "--usd-per-chip-hour")
    if cost == "tco" and price is not None:
        raise TokenmathError("--cost tco and --usd-per-chip-hour both set the price; give one")
    s = _priced(s, cost)
    prof = _profile(efficiency, engine, s)
    kw = dict(batch=B, context=L, chips=chips, dtypes=dt, usd_per_chip_hour=price)
    # the estimate first: its layout holds no more than the bound's pooled HBM, so a batch it takes the bound takes
    tr = None if prof.is_roofline else sv.traffic(m, s, D, profile=prof, **kw)
    roof = sv.traffic(m, s, D, **kw)
    tr = tr or roof
    _finish(json_, rp.traffic_record(tr, roof), rp.render_traffic(tr, m, s, roof))


@command("prefill")
def prefill_cmd(
    model: ModelOpt, system: SystemOpt,
    prompt_tokens: Annotated[str, typer.Option("--prompt-tokens", help="Prompt length P (tokens).")] = "8192",
    batch: Annotated[Optional[str], typer.Option("--batch", help="Decode batch (default: cost-optimal).")] = None,
    context: ContextOpt = "4096",
    chips: ChipsOpt = None, weight_dtype: WeightOpt = None, kv_dtype: KvOpt = "bf16", compute_dtype: ComputeOpt = None,
    efficiency: EfficiencyOpt = "calibrated", engine: EngineOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost per token vs pass length to this file.")] = None,
    force: ForceOpt = False,
    cost: CostOpt = "rental",
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Prefill vs decode: cost per token by pass length, the output/input cost ratio, time to first token (the estimate; the roofline beside it)."""
    from .. import report as rp
    from .. import serving as sv

    P = _count(prompt_tokens, "--prompt-tokens")
    B = None if batch is None else _count(batch, "--batch")
    m, s, L, dt, chips = _setup(catalog, model, system, context, weight_dtype, kv_dtype, compute_dtype, chips)
    s = _priced(s, cost)
    prof = _profile(efficiency, engine, s)
    pd = sv.prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips, dtypes=dt)
    est = None if prof.is_roofline else sv.estimated_prefill_vs_decode(m, s, P, batch=B, context=L, chips=chips,
                                                                       dtypes=dt, profile=prof)
    if plot is not None:
        from .. import plots

        plots.prefill_vs_decode_cost(pd, title=f"{m.name} on {chips} × {s.name}, P = {P:,.0f}", path=plot, estimate=est)
        err.print(f"wrote {plot}")
    _finish(json_, rp.prefill_record(pd, est), rp.render_prefill(pd, m, s, est))
