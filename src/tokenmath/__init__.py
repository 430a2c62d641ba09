"""tokenmath: how fast and how cheaply an LLM can be served and trained, and why.

One call per CLI command, by name, with the CLI's defaults and errors (tokenmath.api):

    >>> import tokenmath as tm
    >>> r = tm.step(model="deepseek-v3", system="gb200-nvl72", batch=2048, context="4k")
    >>> r["estimate"].startswith("calibrated"), r["roofline"]["bound"]   # the estimate; the bound beside it
    (True, 'memory')

The library underneath, for your own sweeps:

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
    "api": ("Result", "step", "curve", "tco", "engines"),  # the facade (plan, fleet, energy, validate: see _FACADE_MODULES)
    "errors": ("TokenmathError",),
    "estimate": ("Estimated", "default_layout", "estimate_pass"),
    "exploration": ("Exploration", "explore"),  # tokenmath.explore: the function (design-space exploration)
    "fleet": ("FleetPlan", "Slo"),  # the function: tokenmath.fleet.fleet (the module has its name)
    "workload": ("Workload", "read_trace"),
    "hf": ("model_from_config", "model_from_config_file"),
    "kvcache": ("KvCache", "attention_flops_per_token", "kv_bytes_per_token", "kv_cache"),
    "layout": ("serving_hbm_bytes",),
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


# ---- facade functions that share their name with a submodule -----------------------------------
# tm.plan, tm.fleet, tm.energy, tm.validate and tm.client are both the submodule (`from tokenmath import fleet as
# fl; fl.Slo`, `import tokenmath.energy`) and the facade function (`tm.fleet(model=..., ...)`): the
# submodule object is made callable (its class becomes _CallableModule, whose __call__ is the facade
# function of tokenmath.api). The package's attribute is a data descriptor, so it is the callable
# module however and whenever the submodule was imported (importing a submodule sets the package's
# attribute, which the descriptor's setter takes).
_FACADE_MODULES = ("plan", "fleet", "energy", "validate", "client")

import sys as _sys  # noqa: E402
import types as _types  # noqa: E402


class _CallableModule(_types.ModuleType):
    """A tokenmath submodule that is also the facade function of its name: `tm.fleet(...)` runs
    tokenmath.api.fleet (help: `help(tokenmath.api.fleet)`); `tm.fleet.Slo` is the module's."""

    def __call__(self, *args, **kwargs):
        return self._facade()(*args, **kwargs)

    def _facade(self):
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])

    @property
    def __signature__(self):  # inspect.signature(tm.fleet), a notebook's tm.fleet? : the facade's
        import inspect

        return inspect.signature(self._facade())


def _facade_module(name: str) -> property:
    def get(pkg):
        import importlib

        mod = pkg.__dict__.get(f"_{name}_set")  # an object set by hand (a test's monkeypatch) wins
        if mod is None:
            mod = importlib.import_module(f".{name}", __name__)
        if type(mod) is _types.ModuleType:
            mod.__class__ = _CallableModule
        return mod

    def set_(pkg, value):
        if isinstance(value, _types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            pkg.__dict__.pop(f"_{name}_set", None)
            if type(value) is _types.ModuleType:
                value.__class__ = _CallableModule
        else:
            pkg.__dict__[f"_{name}_set"] = value

    def delete(pkg):
        pkg.__dict__.pop(f"_{name}_set", None)

    return property(get, set_, delete, f"tokenmath.{name}: the submodule, callable as the facade function {name}()")


class _Package(_types.ModuleType):
    """The tokenmath package: a module whose facade names are data descriptors (_facade_module)."""


for _name in _FACADE_MODULES:
    setattr(_Package, _name, _facade_module(_name))
_sys.modules[__name__].__class__ = _Package
del _name


__version__ = "0.1.0"

__all__ = [
    "step", "curve", "client", "plan", "fleet", "energy", "tco", "validate", "engines", "Result",
    "Attention", "Catalog", "Chip", "Dtypes", "Efficiency", "KvCache", "Mlp", "Model", "Moe", "ParamCounts",
    "ROOFLINE", "StepTime", "System", "Tier", "TokenmathError", "Estimated", "OpStep", "Profile",
    "choose_profile", "default_layout", "estimate_pass", "op_step", "FleetPlan", "Slo", "Workload",
    "read_trace", "Exploration", "explore",
    "attention_flops_per_token", "balance_batch", "balance_batch_with_kv", "batch_to_fill_hbm", "chips_to_fit",
    "cost_floor_usd_per_mtok", "dtype_bytes", "get_model", "get_system", "hardware_ratio", "hbm_drain_s",
    "kv_bytes_per_token", "kv_cache", "latency_floor_s", "load_catalog", "memory_required_bytes",
    "model_from_config", "model_from_config_file", "param_counts", "parse_quantity", "serving_hbm_bytes", "slopes",
    "step_time",
    "weight_bytes", "weights_read_bytes",
]
