"""The pydantic models that validate a user's catalog TOML: unknown fields, wrong units, out-of-range
numbers and missing fields become one sentence naming the file, the table and the field.

Imported only when a user file (--catalog) is read; the built-in files load straight into the row
dataclasses of tokenmath.catalog, which declare the same fields with the same defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..errors import TokenmathError
from ..specs import Model, PriceSheet, System, Tier
from ..units import check_dtype
from . import _LIMITS, _check_range, _parse_fields, to_model, to_sheet, to_system, to_tier


class _Table(BaseModel):
    """A catalog table: unknown fields are errors, numbers may carry units ("3.35 TB/s")."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _units(cls, data: Any) -> Any:
        return _parse_fields(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _ranges(self) -> "_Table":
        for key in type(self).model_fields:
            if key not in _LIMITS:
                continue
            v = getattr(self, key)
            for x in (v.values() if isinstance(v, dict) else (v,)):
                if x is not None:
                    _check_range(key, x)
        return self


class SystemTable(_Table):
    description: str = ""
    chip: str = ""
    bf16_flops_per_s: float | None = None
    fp8_flops_per_s: float | None = None
    int8_flops_per_s: float | None = None
    fp4_flops_per_s: float | None = None
    hbm_bytes: float
    hbm_bytes_per_s: float
    scaleup_bytes_per_s: float | None = None
    scaleup_chips: int = 1
    scaleout_bytes_per_s: float | None = None
    ddr_bytes: float | None = None
    ddr_bytes_per_s: float | None = None
    flash_bytes: float | None = None
    flash_bytes_per_s: float | None = None
    power_w: float | None = None
    usd_per_chip_hour: float | None = None
    price_source: str = ""
    ddr: str | None = None  # a [storage.NAME] of tier "ddr" (host memory)
    ddr_share: float = 1.0  # share of that device per chip (two GPUs share a Grace CPU: 0.5)
    preliminary: bool = False
    source: str
    as_of: str
    notes: str = ""

    @model_validator(mode="before")
    @classmethod
    def _units(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = _parse_fields(data)
            if "scaleup_chips" in data:
                n = data["scaleup_chips"]
                _check_range("scaleup_chips", n)
                if n != int(n):
                    raise ValueError(f"scaleup_chips = {n!r} must be a whole number of chips")
                data["scaleup_chips"] = int(n)
        return data

    @model_validator(mode="after")
    def _some_flops(self) -> "SystemTable":
        if not any((self.bf16_flops_per_s, self.fp8_flops_per_s, self.int8_flops_per_s, self.fp4_flops_per_s)):
            raise ValueError("needs at least one of bf16_flops_per_s, fp8_flops_per_s, int8_flops_per_s, fp4_flops_per_s")
        return self

    def to_system(self, name: str) -> System:
        return to_system(self, name)


class ModelTable(_Table):
    config: str | None = None
    total_params: float | None = None
    active_params: float | None = None
    kv_bytes_per_token: float | None = None
    weight_dtype: str | None = None
    layers: int | None = None
    source: str
    as_of: str
    notes: str = ""

    @field_validator("weight_dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        try:
            return check_dtype(v)
        except TokenmathError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _one_way(self) -> "ModelTable":
        totals = (self.total_params, self.active_params, self.kv_bytes_per_token)
        if self.config is None and None in totals:
            raise ValueError("needs either config = 'path/to/config.json' or all of total_params, active_params, kv_bytes_per_token")
        if self.config is not None and any(t is not None for t in totals):
            raise ValueError("gives both a config.json and totals; use one")
        if self.active_params is not None and self.total_params is not None and self.active_params > self.total_params:
            raise ValueError(f"active_params = {self.active_params:g} exceeds total_params = {self.total_params:g}")
        return self

    def to_model(self, name: str, base_dir: Path) -> Model:
        return to_model(self, name, base_dir)


class StorageTable(_Table):
    tier: str
    bytes: float
    bytes_per_s: float
    usd_per_gb: float | None = None
    amortization_years: float = 5.0
    source: str
    as_of: str
    notes: str = ""

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        if v not in ("ddr", "flash", "disk"):
            raise ValueError(f"tier = {v!r}; expected 'ddr', 'flash' or 'disk'")
        return v

    def to_tier(self, name: str) -> Tier:
        return to_tier(self, name)


class PriceTable(_Table):
    provider: str
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: dict[str, float] = {}
    long_context_threshold_tokens: float | None = None
    long_context_input_usd_per_mtok: float | None = None
    long_context_output_usd_per_mtok: float | None = None
    batch_multiplier: float | None = None
    fast_price_multiplier: float | None = None
    fast_speedup: float | None = None
    max_input_tokens: float | None = None
    source: str
    as_of: str
    notes: str = ""

    @model_validator(mode="after")
    def _positive(self) -> "PriceTable":
        for k in ("input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "long_context_threshold_tokens",
                  "long_context_input_usd_per_mtok", "long_context_output_usd_per_mtok", "batch_multiplier",
                  "fast_price_multiplier", "fast_speedup", "max_input_tokens"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"{k} = {v!r} must be > 0")
        return self

    def to_sheet(self, name: str) -> PriceSheet:
        return to_sheet(self, name)


TABLES = {"systems": SystemTable, "chips": SystemTable, "models": ModelTable, "storage": StorageTable,
          "prices": PriceTable}
