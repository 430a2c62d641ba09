"""The pydantic models that validate a user's catalog TOML: unknown fields, wrong units, out-of-range
numbers and missing fields become one sentence naming the file, the table and the field.

Imported only when a user file (--catalog) is read; the built-in files load straight into the row
dataclasses of tokenmath.catalog, which declare the same fields with the same defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model, field_validator, model_validator

from ..errors import TokenmathError
from ..hf import hf_repo_id
from ..specs import Model, PriceSheet, System, Tier
from ..units import check_dtype
from . import (_LIMITS, CheckpointRow, ModelRow, PriceRow, StorageRow, SystemRow, _check_range, _parse_fields, to_model,
                to_sheet, to_system, to_tier)


def _repo(v: str | None) -> str | None:
    if v is not None and hf_repo_id(v) is None:
        raise ValueError(f"hf_repo = {v!r} is not a Hugging Face repo id; expected 'owner/name' (letters, digits, "
                         "'-', '_', '.')")
    return v


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


def _fields(row: type, name: str) -> type[_Table]:
    """A _Table whose fields are the row dataclass's (catalog/__init__.py): each field is declared
    once, for the built-in fast path and for the pydantic path alike."""
    hints = typing.get_type_hints(row)
    spec = {}
    for f in dataclasses.fields(row):
        if f.default is not dataclasses.MISSING:
            spec[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not dataclasses.MISSING:
            spec[f.name] = (hints[f.name], f.default_factory())
        else:
            spec[f.name] = (hints[f.name], ...)
    return create_model(f"_{name}Fields", __base__=_Table, **spec)


class SystemTable(_fields(SystemRow, "System")):
    """A [systems.NAME] / [chips.NAME] table of a user catalog: SystemRow's fields, validated."""

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


class ModelTable(_fields(ModelRow, "Model")):
    """A [models.NAME] table of a user catalog: ModelRow's fields, validated."""

    @field_validator("weight_dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        try:
            return check_dtype(v)
        except TokenmathError as e:
            raise ValueError(str(e)) from None

    @field_validator("hf_repo")
    @classmethod
    def _hf_repo(cls, v: str | None) -> str | None:
        return _repo(v)

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


class CheckpointTable(_fields(CheckpointRow, "Checkpoint")):
    """A [checkpoints.NAME] table of a user catalog: CheckpointRow's fields, validated."""

    @field_validator("weight_dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        try:
            return check_dtype(v)
        except TokenmathError as e:
            raise ValueError(str(e)) from None

    @field_validator("hf_repo")
    @classmethod
    def _hf_repo(cls, v: str) -> str:
        return _repo(v)


class StorageTable(_fields(StorageRow, "Storage")):
    """A [storage.NAME] table of a user catalog: StorageRow's fields, validated."""

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        if v not in ("ddr", "flash", "disk"):
            raise ValueError(f"tier = {v!r}; expected 'ddr', 'flash' or 'disk'")
        return v

    def to_tier(self, name: str) -> Tier:
        return to_tier(self, name)


class PriceTable(_fields(PriceRow, "Price")):
    """A [prices.NAME] table of a user catalog: PriceRow's fields, validated."""

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
          "prices": PriceTable, "checkpoints": CheckpointTable}
