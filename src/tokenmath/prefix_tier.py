"""A prefix cache in its memory tier: how much it holds, the hit rate that capacity allows, and how
long a hit takes to fetch.

A cached prefix of P tokens is kv(P) bytes (kvcache.kv_cache). The cache lives in one tier
(prices.tiers, per chip: the chip's HBM, the host's DRAM where the catalog gives it, the catalog's
flash drive for SSD) on the chips that serve prompts (the prefill pool, or the aggregated pool), so
its capacity is C = capacity per chip × those chips, or `--prefix-cache-gb`. Per chip:

  hbm   HBM left after the weights and the KV at the pool's batch (layout.layout_memory)
  dram  the host memory's share per chip (the system's `ddr`, e.g. half a Grace CPU per GPU)
  ssd   one flash drive per chip (catalog/storage.toml, the last of tier "flash"): a labelled
        assumption (an 8-GPU server carries about eight NVMe drives)

**Hit rate.** With n distinct prefixes in use (the trace's prefix ids, else `prefix_count`, default
1: one prefix shared by every request, the assumption fleet already states), the cache holds
N_c = C / kv(P) of them. With every prefix equally popular, a request's prefix is resident with
probability min(1, N_c / n), so the hit rate is h · min(1, N_c / n) (h: the hit rate of an
unlimited cache, `--prefix-hit-rate`). A skewed popularity would do better than this: the bound is
the uniform case, stated.

**Fetch.** A hit outside HBM is read back before its prompt's pass: kv(P) / (the tier's bandwidth
per chip × the replica's chips), every chip reading its share. A prefill pass of b prompts waits
for b fetches (no overlap with compute: the conservative case). From HBM the fetch is free.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import TokenmathError
from .kvcache import kv_cache
from .specs import Model, System, Tier

TIERS = {"hbm": "hbm", "dram": "ddr", "ssd": "flash"}  # flag value -> prices.tiers kind


def tier_per_chip(system: System, tier: str, storage: dict[str, Tier] | None = None) -> Tier:
    """The tier a prefix cache lives in, per chip (prices.tiers), or one sentence why there is none."""
    from .prices import tiers

    if tier not in TIERS:
        raise TokenmathError(f"--prefix-cache-tier = {tier!r}; expected 'hbm', 'dram' or 'ssd'")
    avail = tiers(system, storage)
    kind = TIERS[tier]
    if kind not in avail:
        what = {"ddr": "host DRAM (its `ddr` in the catalog)", "flash": "flash drive (catalog/storage.toml)"}[kind]
        raise TokenmathError(f"{system.name} has no {what}: a prefix cache in {tier} has no capacity or bandwidth"
                             " there; choose another --prefix-cache-tier")
    return avail[kind]


def distinct_prefixes(trace, prefix_count: int | None) -> tuple[int, bool]:
    """(n, assumed): the trace's distinct prefix ids, else `prefix_count`, else 1 (assumed)."""
    if trace is not None and getattr(trace, "prefix_id", None) is not None:
        ids = trace.prefix_id[trace.prefix_id >= 0]
        if ids.size:
            return int(np.unique(ids).size), False
    if prefix_count is not None:
        return int(prefix_count), False
    return 1, True


def prefix_cache_tier(model: Model, system: System, prefix_tokens: float, hit_rate: float, tier: str, *,
                      capacity_bytes: float | None, holder_chips: float | None, hbm_left_bytes_per_chip: float | None,
                      prefixes: int, prefixes_assumed: bool, storage: dict[str, Tier] | None = None,
                      kv_dtype: str = "bf16") -> dict:
    """The cache in `tier`: its capacity (given, or per chip × `holder_chips`), the prefixes it holds,
    the hit rate it allows, h · min(1, N_c / n), and the fetch per prompt per chip (module docstring)."""
    if not (prefix_tokens and hit_rate):
        raise TokenmathError("--prefix-cache-tier needs --prefix-tokens and --prefix-hit-rate (the prefix and the"
                             " share of requests that find it with an unlimited cache)")
    kvb = float(kv_cache(model, float(prefix_tokens), kv_dtype).stored_bytes)
    t = None if tier == "hbm" else tier_per_chip(system, tier, storage)
    bw = None if t is None else float(t.bytes_per_s)
    per_chip = None
    if capacity_bytes is None:
        per_chip = max(float(hbm_left_bytes_per_chip or 0.0), 0.0) if tier == "hbm" else float(t.bytes)
        capacity = per_chip * float(holder_chips or 0.0)
    else:
        capacity = float(capacity_bytes)
    held = capacity / kvb if kvb > 0 else math.inf
    share = min(1.0, held / max(prefixes, 1))
    return {"tier": tier, "capacity_bytes": capacity, "capacity_bytes_per_chip": per_chip,
            "capacity_given": capacity_bytes is not None, "kv_bytes_per_prefix": kvb, "prefixes": prefixes,
            "prefixes_assumed": prefixes_assumed, "prefixes_held": held, "hit_rate_unlimited": float(hit_rate),
            "hit_rate": float(hit_rate) * share, "tier_bytes_per_s_per_chip": bw,
            "fetch_s_per_prompt_chip": 0.0 if bw is None else kvb / bw,
            "note": ("every prefix equally popular: the hit rate is h × min(1, prefixes held / prefixes in use)"
                     + ("; one prefix shared by every request (no trace prefix ids, no --prefix-count): an assumption"
                        if prefixes_assumed else ""))}


__all__ = ["TIERS", "tier_per_chip", "distinct_prefixes", "prefix_cache_tier"]
