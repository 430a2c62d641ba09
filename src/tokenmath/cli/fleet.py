"""`tokenmath fleet`: a fleet sized from requests under tail-latency SLOs, verified in simulation."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import ForceOpt, CatalogOpt, EngineOpt, JsonOpt, ModelOpt, Num, _drawn, _finish, command, progress, CostOpt


@command("fleet")
def fleet_cmd(
    model: ModelOpt,
    request_rate: Annotated[Optional[str], typer.Option("--request-rate", help="Requests per second to serve.")] = None,
    input_tokens: Annotated[Optional[str], typer.Option("--input-tokens", help="Prompt tokens per request (mean).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", help="Generated tokens per request (mean).")] = None,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="A trace: Azure LLM CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or JSON lines; gives the rate and lengths and drives the simulation.")] = None,
    ttft_p99: Annotated[Optional[float], Num("--ttft-p99-s", help="SLO: 99th percentile time to first token (s).")] = None,
    tpot_p99: Annotated[Optional[float], Num("--tpot-p99-s", help="SLO: 99th percentile time per output token (s).")] = None,
    ttft_p50: Annotated[Optional[float], Num("--ttft-p50-s", help="SLO: median time to first token (s).")] = None,
    tpot_p50: Annotated[Optional[float], Num("--tpot-p50-s", help="SLO: median time per output token (s).")] = None,
    systems: Annotated[Optional[str], typer.Option("--systems", help="Comma-separated systems (default: the whole catalog).")] = None,
    disaggregation: Annotated[str, typer.Option("--disaggregation", help="auto (the cheaper that meets the SLOs), on (prefill and decode pools), off.")] = "auto",
    prefix_tokens: Annotated[Optional[str], typer.Option("--prefix-tokens", help="Shared prompt prefix per request (tokens).")] = None,
    prefix_hit_rate: Annotated[Optional[float], Num("--prefix-hit-rate", help="Share of requests whose prefix is in the cache (0-1).")] = None,
    objective: Annotated[str, typer.Option("--objective", help="cost ($/h; chips where no price), chips, or energy (J per output token).")] = "cost",
    verify: Annotated[Optional[int], Num("--verify", help="The most candidate fleets verified (simulated at steady state and sized down; default 12); the search stops sooner once no unverified one can be cheaper.")] = None,
    weight_dtypes: Annotated[Optional[str], typer.Option("--weight-dtypes", help="Comma-separated weight dtypes to try on every system (default: the checkpoint's, FP8, and FP4 where the chip has it).")] = None,
    export: Annotated[Optional[str], typer.Option("--export", help="Launch commands for the chosen pools: vllm | sglang | trtllm.")] = None,
    hf_model: Annotated[Optional[str], typer.Option("--hf-model", help="Checkpoint (Hugging Face repo id or path) for --export, served as stored (default: the catalog's hf_repo, or its published checkpoint in the planned weight dtype).")] = None,
    usd_per_chip_hour: Annotated[Optional[str], typer.Option(help="One price for every system (else the catalog's).")] = None,
    engine: EngineOpt = None, cost: CostOpt = "rental",
    rate_curve: Annotated[Optional[str], typer.Option("--rate-curve", help="A rate over a day: CSV `time_s,requests_per_s` or JSON lines (example:deepseek-v3-day is DeepSeek's published day, shipped); the fleet is verified at its peak and sized interval by interval (needs --input-tokens and --output-tokens).")] = None,
    load_gb_per_s: Annotated[Optional[str], typer.Option("--load-gb-per-s", help="With --rate-curve: GB/s per chip at which a started replica loads its weights (default: the system's scale-out NIC, a floor on the warm-up).")] = None,
    prefill_tokens_per_rank: Annotated[Optional[int], Num("--prefill-tokens-per-rank", help="A prefill pool's pass: new tokens per attention-DP rank (default 8,192, the engines' chunk; DeepSeek profiles 16,384 per GPU). A wide-EP replica of many ranks batches that many per rank.")] = None,
    mtp_draft_tokens: Annotated[Optional[int], Num("--mtp-draft-tokens", help="MTP / speculative decoding in decode pools: tokens drafted per step (verified in one pass over 1 + k tokens).")] = None,
    mtp_acceptance: Annotated[Optional[float], Num("--mtp-acceptance", help="Acceptance rate of each drafted token (0-1); e.g. 0.85-0.9 for DeepSeek-V3's MTP (arXiv 2412.19437 §5.4.3).")] = None,
    prefix_cache_tier: Annotated[Optional[str], typer.Option("--prefix-cache-tier", help="Where the prefix cache lives: hbm | dram | ssd; its capacity limits the hit rate and its bandwidth adds the fetch to each prefill pass.")] = None,
    prefix_count: Annotated[Optional[int], Num("--prefix-count", help="With --prefix-cache-tier: distinct prefixes in use, equally popular (default: a trace's prefix ids, else 1 shared by every request).")] = None,
    prefix_cache_gb: Annotated[Optional[str], typer.Option("--prefix-cache-gb", help="The prefix cache's capacity in GB for the whole fleet (default: the tier's capacity on the fleet's chips).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw cost vs tokens/s per user to this file (with --rate-curve: chips over the day beside the rate).")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Which hardware, how many chips, what layout and what cost serve a request rate under p50/p99 TTFT and TPOT SLOs: aggregated or disaggregated prefill/decode, verified at steady state in simulation and sized down while the SLOs hold."""
    from .. import api
    from ..fleet import VERIFY_DEFAULT

    with progress("screening fleets" if rate_curve is None else "screening fleets at the peak rate",
                  max(verify or VERIFY_DEFAULT, 1), json_) as update:
        r = api._fleet(model, request_rate=request_rate, input_tokens=input_tokens, output_tokens=output_tokens,
                       trace=trace, ttft_p99_s=ttft_p99, tpot_p99_s=tpot_p99, ttft_p50_s=ttft_p50, tpot_p50_s=tpot_p50,
                       systems=systems, disaggregation=disaggregation, prefix_tokens=prefix_tokens,
                       prefix_hit_rate=prefix_hit_rate, objective=objective, verify=verify, weight_dtypes=weight_dtypes,
                       export=export, hf_model=hf_model, usd_per_chip_hour=usd_per_chip_hour, engine=engine, cost=cost,
                       catalog=catalog, rate_curve=rate_curve, load_gb_per_s=load_gb_per_s,
                       mtp_draft_tokens=mtp_draft_tokens, mtp_acceptance=mtp_acceptance,
                       prefix_cache_tier=prefix_cache_tier, prefix_cache_gb=prefix_cache_gb, prefix_count=prefix_count,
                       prefill_tokens_per_rank=prefill_tokens_per_rank,
                       progress=lambda done, total, what: update(done, total=total, description=what))
    _drawn(r, plot)
    _finish(json_, r.record, r.lines)
    if r.parts["export_refused"] is not None:  # the fleet shown, then the one sentence (exit 2)
        raise r.parts["export_refused"]
