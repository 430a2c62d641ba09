"""The catalog: systems (chips in scale-up domains) and models, as TOML package data.

`load_catalog(["my.toml"])` returns the built-in catalog with the user's tables added or
overriding same-named ones. A user TOML uses the same schema:

    [systems.my-gpu]            # or [chips.my-gpu]; a chip alone is a 1-chip domain
    bf16_flops_per_s = "1 PFLOP/s"
    hbm_bytes = "96 GB"
    hbm_bytes_per_s = "4 TB/s"
    source = "vendor datasheet"
    as_of = "2026-01"

    [models.my-model]           # by config.json (path relative to the TOML file) ...
    config = "path/to/config.json"
    [models.my-moe]             # ... or by totals
    total_params = 700e9
    active_params = 37e9
    kv_bytes_per_token = 70272

TOML is validated with pydantic: unknown fields, wrong units and missing fields are errors that
name the file, the table and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..errors import TokenmathError, unknown_name
from ..hf import model_from_config_file
from ..specs import Chip, Model, PriceSheet, System, Tier
from ..units import check_dtype, parse_quantity

BUILTIN_DIR = Path(__file__).parent
BUILTIN_FILES = (BUILTIN_DIR / "systems.toml", BUILTIN_DIR / "models.toml", BUILTIN_DIR / "prices.toml",
                 BUILTIN_DIR / "storage.toml")
SECONDS_PER_YEAR = 365.25 * 86400.0

Number = float | int | str

_KINDS = {
    "bf16_flops_per_s": "flops_per_s",
    "fp8_flops_per_s": "flops_per_s",
    "int8_flops_per_s": "flops_per_s",
    "fp4_flops_per_s": "flops_per_s",
    "hbm_bytes": "bytes",
    "hbm_bytes_per_s": "bytes_per_s",
    "scaleup_bytes_per_s": "bytes_per_s",
    "scaleout_bytes_per_s": "bytes_per_s",
    "ddr_bytes": "bytes",
    "ddr_bytes_per_s": "bytes_per_s",
    "flash_bytes": "bytes",
    "flash_bytes_per_s": "bytes_per_s",
    "power_w": "watts",
    "usd_per_chip_hour": "usd",
    "total_params": "count",
    "active_params": "count",
    "kv_bytes_per_token": "bytes",
    "scaleup_chips": "count",
    "bytes": "bytes",
    "bytes_per_s": "bytes_per_s",
}


def _parse_fields(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, kind in _KINDS.items():
        v = out.get(key)
        if v is not None:
            out[key] = parse_quantity(v, kind, what=key)
            if out[key] < 0 or (out[key] == 0 and key not in ("usd_per_chip_hour",)):
                raise ValueError(f"{key} = {v!r} must be > 0")
    return out


class _Table(BaseModel):
    """A catalog table: unknown fields are errors, numbers may carry units ("3.35 TB/s")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _units(cls, data: Any) -> Any:
        return _parse_fields(data) if isinstance(data, dict) else data


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
        chip = Chip(
            name=self.chip or name, hbm_bytes=self.hbm_bytes, hbm_bytes_per_s=self.hbm_bytes_per_s,
            bf16_flops_per_s=self.bf16_flops_per_s, fp8_flops_per_s=self.fp8_flops_per_s,
            int8_flops_per_s=self.int8_flops_per_s, fp4_flops_per_s=self.fp4_flops_per_s, power_w=self.power_w,
        )
        ddr = Tier(self.ddr_bytes, self.ddr_bytes_per_s, "host DDR", "ddr") if self.ddr_bytes and self.ddr_bytes_per_s else None
        flash = Tier(self.flash_bytes, self.flash_bytes_per_s, "local flash", "flash") if self.flash_bytes and self.flash_bytes_per_s else None
        return System(
            name=name, chip=chip, scaleup_chips=self.scaleup_chips, scaleup_bytes_per_s=self.scaleup_bytes_per_s,
            scaleout_bytes_per_s=self.scaleout_bytes_per_s, usd_per_chip_hour=self.usd_per_chip_hour,
            ddr=ddr, flash=flash, description=self.description, preliminary=self.preliminary,
            source=self.source, price_source=self.price_source, as_of=self.as_of, notes=self.notes,
        )


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
        if self.config is not None:
            path = Path(self.config)
            if not path.is_absolute():
                path = base_dir / path
            m = model_from_config_file(path, name=name, source=self.source, as_of=self.as_of)
            return _replace(m, notes=self.notes, config_path=str(path),
                            **({"weight_dtype": self.weight_dtype} if self.weight_dtype else {}))
        wd = self.weight_dtype or "bf16"
        return Model(
            name=name, total_params_given=self.total_params, active_params_given=self.active_params,
            kv_bytes_per_token_given=self.kv_bytes_per_token, n_layers=self.layers, weight_dtype=wd, base_dtype=wd,
            source=self.source, as_of=self.as_of, notes=self.notes,
        )


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
        price = None
        if self.usd_per_gb is not None:
            if self.usd_per_gb < 0 or self.amortization_years <= 0:
                raise TokenmathError(f"[storage.{name}] needs usd_per_gb >= 0 and amortization_years > 0")
            price = self.usd_per_gb / 1e9 / (self.amortization_years * SECONDS_PER_YEAR)
        return Tier(self.bytes, self.bytes_per_s, name, self.tier, price, f"{self.source} ({self.as_of})")


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
    source: str
    as_of: str
    notes: str = ""

    @model_validator(mode="after")
    def _positive(self) -> "PriceTable":
        for k in ("input_usd_per_mtok", "output_usd_per_mtok", "cache_read_usd_per_mtok", "long_context_threshold_tokens",
                  "long_context_input_usd_per_mtok", "long_context_output_usd_per_mtok", "batch_multiplier",
                  "fast_price_multiplier", "fast_speedup"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ValueError(f"{k} = {v!r} must be > 0")
        return self

    def to_sheet(self, name: str) -> PriceSheet:
        writes = tuple(sorted((parse_ttl(k), float(v)) for k, v in self.cache_write_usd_per_mtok.items()))
        return PriceSheet(name=name, provider=self.provider, model=self.model, input_usd_per_mtok=self.input_usd_per_mtok,
                          output_usd_per_mtok=self.output_usd_per_mtok, cache_read_usd_per_mtok=self.cache_read_usd_per_mtok,
                          cache_write_usd_per_mtok=writes, long_context_threshold_tokens=self.long_context_threshold_tokens,
                          long_context_input_usd_per_mtok=self.long_context_input_usd_per_mtok,
                          long_context_output_usd_per_mtok=self.long_context_output_usd_per_mtok,
                          batch_multiplier=self.batch_multiplier, fast_price_multiplier=self.fast_price_multiplier,
                          fast_speedup=self.fast_speedup, source=self.source, as_of=self.as_of, notes=self.notes)


_TTL = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_ttl(text: str) -> float:
    """'5m' -> 300, '1h' -> 3600 (cache TTLs as price sheets write them)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*", str(text))
    if not m:
        raise TokenmathError(f"cache TTL {text!r} is not like '5m', '1h', '30s' or '1d'")
    return float(m.group(1)) * _TTL[m.group(2)]


def _replace(obj, **kw):
    from dataclasses import replace

    return replace(obj, **kw)


@dataclass(frozen=True)
class Catalog:
    systems: dict[str, System] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    prices: dict[str, PriceSheet] = field(default_factory=dict)
    storage: dict[str, Tier] = field(default_factory=dict)

    def price_sheet(self, name: str) -> PriceSheet:
        if isinstance(name, PriceSheet):
            return name
        if name not in self.prices:
            raise unknown_name("price sheet", name, sorted(self.prices))
        return self.prices[name]

    def storage_tier(self, kind: str) -> Tier | None:
        """The catalog's device for a tier kind (the first defined, or a user's override)."""
        found = [t for t in self.storage.values() if t.kind == kind]
        return found[-1] if found else None

    def system(self, name: str) -> System:
        if isinstance(name, System):
            return name
        if name not in self.systems:
            raise unknown_name("system", name, sorted(self.systems))
        return self.systems[name]

    def model(self, name_or_path: str) -> Model:
        """A catalog name, or a path to a Hugging Face config.json."""
        if isinstance(name_or_path, Model):
            return name_or_path
        if name_or_path in self.models:
            return self.models[name_or_path]
        p = Path(name_or_path)
        if p.suffix == ".json" or p.is_file() or "/" in name_or_path:
            return model_from_config_file(p)
        raise unknown_name("model", name_or_path, sorted(self.models))


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TokenmathError(f"catalog file {str(path)!r} does not exist")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise TokenmathError(f"catalog file {str(path)!r} is not valid TOML ({e})") from None


def _first_error(path: Path, table: str, e: ValidationError) -> TokenmathError:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "missing":
        msg = f"is missing field {loc!r}"
    elif err.get("type") == "extra_forbidden":
        msg = f"has unknown field {loc!r}"
    elif loc:
        msg = f"field {loc!r}: {msg}"
    return TokenmathError(f"catalog file {str(path)!r}, [{table}] {msg}")


def _load_file(path: Path, systems: dict, models: dict, prices: dict, storage: dict, ddr_refs: dict) -> None:
    data = _read_toml(path)
    unknown = set(data) - {"systems", "chips", "models", "prices", "storage"}
    if unknown:
        raise TokenmathError(
            f"catalog file {str(path)!r} has top-level table(s) {sorted(unknown)}; expected [systems.NAME], "
            "[chips.NAME], [models.NAME], [prices.NAME] or [storage.NAME]"
        )
    for section, Table, convert, store in (("prices", PriceTable, "to_sheet", prices),
                                           ("storage", StorageTable, "to_tier", storage)):
        for name, table in (data.get(section) or {}).items():
            if not isinstance(table, dict):
                raise TokenmathError(f"catalog file {str(path)!r}: [{section}.{name}] must be a table")
            try:
                store[name] = getattr(Table.model_validate(table), convert)(name)
            except ValidationError as e:
                raise _first_error(path, f"{section}.{name}", e) from None
            except TokenmathError as e:
                raise TokenmathError(f"catalog file {str(path)!r}, [{section}.{name}]: {e}") from None
    for section in ("systems", "chips"):
        for name, table in (data.get(section) or {}).items():
            if not isinstance(table, dict):
                raise TokenmathError(f"catalog file {str(path)!r}: [{section}.{name}] must be a table")
            try:
                t = SystemTable.model_validate(table)
                systems[name] = t.to_system(name)
                if t.ddr:
                    ddr_refs[name] = (t.ddr, t.ddr_share, path)
                else:
                    ddr_refs.pop(name, None)
            except ValidationError as e:
                raise _first_error(path, f"{section}.{name}", e) from None
            except TokenmathError as e:
                raise TokenmathError(f"catalog file {str(path)!r}, [{section}.{name}]: {e}") from None
    for name, table in (data.get("models") or {}).items():
        if not isinstance(table, dict):
            raise TokenmathError(f"catalog file {str(path)!r}: [models.{name}] must be a table")
        try:
            models[name] = ModelTable.model_validate(table).to_model(name, path.parent)
        except ValidationError as e:
            raise _first_error(path, f"models.{name}", e) from None
        except TokenmathError as e:
            raise TokenmathError(f"catalog file {str(path)!r}, [models.{name}]: {e}") from None


@lru_cache(maxsize=16)
def _load(files: tuple[str, ...]) -> Catalog:
    systems: dict[str, System] = {}
    models: dict[str, Model] = {}
    prices: dict[str, PriceSheet] = {}
    storage: dict[str, Tier] = {}
    ddr_refs: dict[str, tuple[str, float, Path]] = {}
    for f in files:
        _load_file(Path(f), systems, models, prices, storage, ddr_refs)
    for name, (ref, share, path) in ddr_refs.items():  # resolve host-memory references once all files are read
        if ref not in storage or storage[ref].kind != "ddr":
            known = sorted(k for k, t in storage.items() if t.kind == "ddr")
            raise TokenmathError(f"catalog file {str(path)!r}, [systems.{name}]: ddr = {ref!r} is not a [storage.NAME] of "
                                 f"tier 'ddr' (known: {', '.join(known) or 'none'})")
        dev = storage[ref]
        tier = Tier(dev.bytes * share, dev.bytes_per_s * share, dev.name, "ddr", dev.usd_per_byte_s, dev.source)
        systems[name] = _replace(systems[name], ddr=tier)
    return Catalog(systems=systems, models=models, files=files, prices=prices, storage=storage)


def load_catalog(extra: list[str | Path] | tuple | None = None) -> Catalog:
    """The built-in catalog plus user TOML files (later files override earlier names)."""
    files = tuple(str(p) for p in BUILTIN_FILES) + tuple(str(Path(p).resolve()) for p in (extra or ()))
    return _load(files)


def get_model(name_or_path: str | Model, catalog: Catalog | None = None) -> Model:
    return (catalog or load_catalog()).model(name_or_path)


def get_system(name: str | System, catalog: Catalog | None = None) -> System:
    return (catalog or load_catalog()).system(name)


__all__ = ["Catalog", "load_catalog", "get_model", "get_system"]
