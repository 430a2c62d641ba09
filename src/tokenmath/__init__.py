"""tokenmath: how fast and how cheaply an LLM can be served and trained, and why.

    >>> import tokenmath as tm
    >>> m, s = tm.get_model("deepseek-v3"), tm.get_system("gb200-nvl72")
    >>> tm.step_time(m, s, batch=2048, context=4096).bound   # the roofline bound
    'memory'
    >>> est = tm.estimate_pass(m, s, batch=2048, context=4096, profile=tm.choose_profile("calibrated", system=s))
    >>> est.label.startswith("calibrated")                  # the estimate, with its 80 % band
    True
"""

from .catalog import Catalog, get_model, get_system, load_catalog
from .errors import TokenmathError
from .estimate import Estimated, default_layout, estimate_pass
from .hf import model_from_config, model_from_config_file
from .kvcache import KvCache, attention_flops_per_token, kv_bytes_per_token, kv_cache
from .profiles import Profile, choose as choose_profile
from .params import ParamCounts, param_counts, weight_bytes, weights_read_bytes
from .roofline import StepTime, chips_to_fit, hardware_ratio, hbm_drain_s, memory_required_bytes, slopes, step_time
from .serving import (
    balance_batch,
    balance_batch_with_kv,
    batch_to_fill_hbm,
    cost_floor_usd_per_mtok,
    latency_floor_s,
)
from .stepmodel import OpStep, op_step
from .specs import ROOFLINE, Attention, Chip, Dtypes, Efficiency, Mlp, Model, Moe, System, Tier
from .units import dtype_bytes, parse_quantity

__version__ = "0.1.0"

__all__ = [
    "Attention", "Catalog", "Chip", "Dtypes", "Efficiency", "KvCache", "Mlp", "Model", "Moe", "ParamCounts",
    "ROOFLINE", "StepTime", "System", "Tier", "TokenmathError", "Estimated", "OpStep", "Profile",
    "choose_profile", "default_layout", "estimate_pass", "op_step",
    "attention_flops_per_token", "balance_batch", "balance_batch_with_kv", "batch_to_fill_hbm", "chips_to_fit",
    "cost_floor_usd_per_mtok", "dtype_bytes", "get_model", "get_system", "hardware_ratio", "hbm_drain_s",
    "kv_bytes_per_token", "kv_cache", "latency_floor_s", "load_catalog", "memory_required_bytes",
    "model_from_config", "model_from_config_file", "param_counts", "parse_quantity", "slopes", "step_time",
    "weight_bytes", "weights_read_bytes",
]
