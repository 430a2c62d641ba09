"""tokenmath: how fast and how cheaply an LLM can be served and trained, and why.

    >>> import tokenmath as tm
    >>> m, s = tm.get_model("deepseek-v3"), tm.get_system("gb200-nvl72")
    >>> tm.step_time(m, s, batch=2048, context=4096).bound   # the roofline bound
    'memory'
    >>> est = tm.estimate_pass(m, s, batch=2048, context=4096, profile=tm.choose_profile("calibrated", system=s))
    >>> est.label.startswith("calibrated")                  # the estimate, with its 80 % band
    True
"""

# name -> the module that defines it; imported on first use (module __getattr__), so that
# `import tokenmath.cli` and `tokenmath --help` do not pay for numpy, pydantic and the core
_EXPORTS = {
    "catalog": ("Catalog", "get_model", "get_system", "load_catalog"),
    "errors": ("TokenmathError",),
    "estimate": ("Estimated", "default_layout", "estimate_pass"),
    "exploration": ("Exploration", "explore"),  # tokenmath.explore: the function (design-space exploration)
    "fleet": ("FleetPlan", "Slo"),  # the function: tokenmath.fleet.fleet (the module has its name)
    "workload": ("Workload", "read_trace"),
    "hf": ("model_from_config", "model_from_config_file"),
    "kvcache": ("KvCache", "attention_flops_per_token", "kv_bytes_per_token", "kv_cache"),
    "profiles": ("Profile",),
    "params": ("ParamCounts", "param_counts", "weight_bytes", "weights_read_bytes"),
    "roofline": ("StepTime", "chips_to_fit", "hardware_ratio", "hbm_drain_s", "memory_required_bytes", "slopes",
                 "step_time"),
    "serving": ("balance_batch", "balance_batch_with_kv", "batch_to_fill_hbm", "cost_floor_usd_per_mtok",
                "latency_floor_s"),
    "stepmodel": ("OpStep", "op_step"),
    "specs": ("ROOFLINE", "Attention", "Chip", "Dtypes", "Efficiency", "Mlp", "Model", "Moe", "System", "Tier"),
    "units": ("dtype_bytes", "parse_quantity"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
_WHERE["choose_profile"] = "profiles"  # profiles.choose, under its public name
_RENAMED = {"choose_profile": "choose"}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'tokenmath' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{mod}", __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "Attention", "Catalog", "Chip", "Dtypes", "Efficiency", "KvCache", "Mlp", "Model", "Moe", "ParamCounts",
    "ROOFLINE", "StepTime", "System", "Tier", "TokenmathError", "Estimated", "OpStep", "Profile",
    "choose_profile", "default_layout", "estimate_pass", "op_step", "FleetPlan", "Slo", "Workload",
    "read_trace", "Exploration", "explore",
    "attention_flops_per_token", "balance_batch", "balance_batch_with_kv", "batch_to_fill_hbm", "chips_to_fit",
    "cost_floor_usd_per_mtok", "dtype_bytes", "get_model", "get_system", "hardware_ratio", "hbm_drain_s",
    "kv_bytes_per_token", "kv_cache", "latency_floor_s", "load_catalog", "memory_required_bytes",
    "model_from_config", "model_from_config_file", "param_counts", "parse_quantity", "slopes", "step_time",
    "weight_bytes", "weights_read_bytes",
]
