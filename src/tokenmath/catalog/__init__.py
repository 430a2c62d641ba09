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

A table naming an entry that already exists (a built-in system, model, price sheet or storage device,
or one from an earlier --catalog file) is merged into it field by field: the fields it gives replace
the existing ones, the others are kept, and the merged table is validated as a whole. For a model,
giving `config` drops the existing totals and giving any of the totals drops the existing `config`
(a model is read one way). `replace = true` in a table replaces the existing entry whole instead.

    [checkpoints.NAME]          # a published checkpoint of a catalog model in another weight dtype
    model = "qwen3-32b"
    weight_dtype = "fp8"
    hf_repo = "Qwen/Qwen3-32B-FP8"

A user's TOML is validated with pydantic (catalog/schema.py): unknown fields, wrong units and missing fields are errors that
name the file, the table and the field. Every number must be finite and inside a physically sensible
range (`_LIMITS`, e.g. hbm_bytes from 1 MB to 1 PB, ddr_share from 0.001 to 1, amortization_years
from 0.1 to 100, API prices from $0.000001 to $10,000 per million tokens), and a catalog file is at
most 4 MiB of UTF-8 TOML. Names are matched exactly first, then case-insensitively when one name fits.

The built-in files are trusted (and tested through the pydantic path too): they are read straight into
the row dataclasses below, so a command that uses only them never imports pydantic.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import TokenmathError, read_user_file, unknown_name
from ..hf import MAX_LAYERS, _show, hf_repo_id, model_from_config_file
from ..specs import Chip, Model, PriceSheet, System, Tier
from ..units import check_dtype, parse_quantity

BUILTIN_DIR = Path(__file__).parent
BUILTIN_FILES = (BUILTIN_DIR / "systems.toml", BUILTIN_DIR / "models.toml", BUILTIN_DIR / "prices.toml",
                 BUILTIN_DIR / "storage.toml")
SECONDS_PER_YEAR = 365.25 * 86400.0
MAX_CATALOG_BYTES = 4 * 2**20  # the built-in files are ~10 KB each

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


# Physically sensible ranges (least, most, unit) for every number a catalog table holds, inclusive.
# A value outside is refused with one sentence naming the field, the value and the range.
_FLOPS = (1e9, 1e19, "FLOP/s")           # 1 GFLOP/s .. 10 EFLOP/s per chip
_BW = (1e6, 1e17, "B/s")                 # 1 MB/s .. 100 PB/s
_USD_MTOK = (1e-6, 1e4, "$ per million tokens")
_LIMITS: dict[str, tuple[float, float, str]] = {
    "bf16_flops_per_s": _FLOPS, "fp8_flops_per_s": _FLOPS, "int8_flops_per_s": _FLOPS, "fp4_flops_per_s": _FLOPS,
    "hbm_bytes": (1e6, 1e15, "bytes (1 MB .. 1 PB per chip)"),
    "hbm_bytes_per_s": _BW, "scaleup_bytes_per_s": _BW, "scaleout_bytes_per_s": _BW,
    "ddr_bytes": (1e6, 1e18, "bytes"), "ddr_bytes_per_s": _BW,
    "flash_bytes": (1e6, 1e18, "bytes"), "flash_bytes_per_s": _BW,
    "power_w": (0.1, 1e6, "W"),
    "usd_per_chip_hour": (0.0, 1e4, "$ per chip-hour"),
    "scaleup_chips": (1, 1e6, "chips"),
    "ddr_share": (1e-3, 1.0, "(the share of one host-memory device each chip gets)"),
    "total_params": (1, 1e16, "parameters"), "active_params": (1, 1e16, "parameters"),
    "kv_bytes_per_token": (1e-3, 1e10, "bytes per token"),
    "layers": (1, MAX_LAYERS, "layers"),
    "bytes": (1e6, 1e18, "bytes"), "bytes_per_s": (1e3, 1e17, "B/s"),
    "usd_per_gb": (0.0, 1e4, "$ per GB"),
    "amortization_years": (0.1, 100.0, "years"),
    "input_usd_per_mtok": _USD_MTOK, "output_usd_per_mtok": _USD_MTOK, "cache_read_usd_per_mtok": _USD_MTOK,
    "cache_write_usd_per_mtok": _USD_MTOK,
    "long_context_input_usd_per_mtok": _USD_MTOK, "long_context_output_usd_per_mtok": _USD_MTOK,
    "long_context_threshold_tokens": (1, 1e10, "tokens"),
    "max_input_tokens": (1, 1e10, "tokens"),
    "batch_multiplier": (1e-3, 100.0, "(a multiplier on the list price)"),
    "fast_price_multiplier": (1e-3, 1e3, "(a multiplier on the list price)"),
    "fast_speedup": (1e-3, 1e3, "(a multiplier on the output speed)"),
}


def _check_range(key: str, v: float) -> None:
    least, most, unit = _LIMITS[key]
    if not least <= v <= most:  # also refuses NaN
        raise ValueError(f"{key} = {v:g} must be between {least:g} and {most:g} {unit}")


def _parse_fields(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, kind in _KINDS.items():
        v = out.get(key)
        if v is not None:
            try:
                out[key] = parse_quantity(v, kind, what=key)
            except OverflowError:  # an integer beyond float range
                raise ValueError(f"{key} = {_show(v)} is too large to be a number tokenmath can use") from None
            if out[key] < 0 or (out[key] == 0 and key not in ("usd_per_chip_hour",)):
                raise ValueError(f"{key} = {v!r} must be > 0")
    return out


# ---- the tables' fields: plain dataclasses, so the built-in files load without pydantic --------------
# catalog/schema.py holds the pydantic models that validate user files; they declare the same fields
# with the same defaults (tests/test_catalog.py checks that the two agree and load equal catalogs).


@dataclass(frozen=True)
class SystemRow:
    hbm_bytes: float
    hbm_bytes_per_s: float
    source: str
    as_of: str
    description: str = ""
    chip: str = ""
    bf16_flops_per_s: float | None = None
    fp8_flops_per_s: float | None = None
    int8_flops_per_s: float | None = None
    fp4_flops_per_s: float | None = None
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
    notes: str = ""
    architecture: str = ""  # the vendor's name for the chip's generation ("Hopper", "CDNA 3")


@dataclass(frozen=True)
class ModelRow:
    source: str
    as_of: str
    config: str | None = None
    total_params: float | None = None
    active_params: float | None = None
    kv_bytes_per_token: float | None = None
    weight_dtype: str | None = None
    layers: int | None = None
    hf_repo: str | None = None  # the Hugging Face repo id a serving engine loads (None: from config.json)
    hf_repo_source: str = ""  # where that id was read (the model page), when it is not the config's source
    notes: str = ""


@dataclass(frozen=True)
class CheckpointRow:
    """A [checkpoints.NAME] table: a published checkpoint of a catalog model in another weight dtype."""

    model: str
    weight_dtype: str
    hf_repo: str
    source: str
    as_of: str
    notes: str = ""


@dataclass(frozen=True)
class Checkpoint(CheckpointRow):
    """A published checkpoint of `model` whose linear layers are stored in `weight_dtype`: its
    [checkpoints.NAME] row and the NAME."""

    name: str = ""


@dataclass(frozen=True)
class StorageRow:
    tier: str
    bytes: float
    bytes_per_s: float
    source: str
    as_of: str
    usd_per_gb: float | None = None
    amortization_years: float = 5.0
    notes: str = ""


@dataclass(frozen=True)
class PriceRow:
    provider: str
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str
    as_of: str
    cache_read_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: dict[str, float] = field(default_factory=dict)
    long_context_threshold_tokens: float | None = None
    long_context_input_usd_per_mtok: float | None = None
    long_context_output_usd_per_mtok: float | None = None
    batch_multiplier: float | None = None
    fast_price_multiplier: float | None = None
    fast_speedup: float | None = None
    max_input_tokens: float | None = None
    notes: str = ""


def to_system(t, name: str) -> System:
    """A [systems.NAME] table (a SystemRow or its pydantic twin) as a System."""
    chip = Chip(
        name=t.chip or name, hbm_bytes=t.hbm_bytes, hbm_bytes_per_s=t.hbm_bytes_per_s,
        bf16_flops_per_s=t.bf16_flops_per_s, fp8_flops_per_s=t.fp8_flops_per_s,
        int8_flops_per_s=t.int8_flops_per_s, fp4_flops_per_s=t.fp4_flops_per_s, power_w=t.power_w,
        architecture=t.architecture,
    )
    ddr = Tier(t.ddr_bytes, t.ddr_bytes_per_s, "host DDR", "ddr") if t.ddr_bytes and t.ddr_bytes_per_s else None
    flash = Tier(t.flash_bytes, t.flash_bytes_per_s, "local flash", "flash") if t.flash_bytes and t.flash_bytes_per_s else None
    return System(
        name=name, chip=chip, scaleup_chips=t.scaleup_chips, scaleup_bytes_per_s=t.scaleup_bytes_per_s,
        scaleout_bytes_per_s=t.scaleout_bytes_per_s, usd_per_chip_hour=t.usd_per_chip_hour,
        ddr=ddr, flash=flash, description=t.description, preliminary=t.preliminary,
        source=t.source, price_source=t.price_source, as_of=t.as_of, notes=t.notes,
    )


def to_model(t, name: str, base_dir: Path) -> Model:
    """A [models.NAME] table as a Model: read from its config.json, or by totals."""
    if t.config is not None:
        path = Path(t.config)
        if not path.is_absolute():
            path = base_dir / path
        m = model_from_config_file(path, name=name, source=t.source, as_of=t.as_of)
        return _replace(m, notes=t.notes, config_path=str(path),
                        **({"weight_dtype": t.weight_dtype} if t.weight_dtype else {}),
                        **({"hf_repo": t.hf_repo} if t.hf_repo else {}))
    wd = t.weight_dtype or "bf16"
    return Model(
        name=name, total_params_given=t.total_params, active_params_given=t.active_params,
        kv_bytes_per_token_given=t.kv_bytes_per_token, n_layers=t.layers, weight_dtype=wd, base_dtype=wd,
        source=t.source, as_of=t.as_of, notes=t.notes, hf_repo=t.hf_repo,
    )


def to_checkpoint(t, name: str) -> Checkpoint:
    """A [checkpoints.NAME] table as a Checkpoint."""
    return Checkpoint(name=name, model=t.model, weight_dtype=t.weight_dtype, hf_repo=t.hf_repo, source=t.source,
                      as_of=t.as_of, notes=t.notes)


def to_tier(t, name: str) -> Tier:
    """A [storage.NAME] table as a Tier, its price amortised per byte-second."""
    price = None
    if t.usd_per_gb is not None:
        if t.usd_per_gb < 0 or t.amortization_years <= 0:
            raise TokenmathError(f"[storage.{name}] needs usd_per_gb >= 0 and amortization_years > 0")
        price = t.usd_per_gb / 1e9 / (t.amortization_years * SECONDS_PER_YEAR)
    return Tier(t.bytes, t.bytes_per_s, name, t.tier, price, f"{t.source} ({t.as_of})")


def to_sheet(t, name: str) -> PriceSheet:
    """A [prices.NAME] table as a PriceSheet (cache-write TTLs in seconds)."""
    writes = tuple(sorted((parse_ttl(k), float(v)) for k, v in t.cache_write_usd_per_mtok.items()))
    return PriceSheet(name=name, provider=t.provider, model=t.model, input_usd_per_mtok=t.input_usd_per_mtok,
                      output_usd_per_mtok=t.output_usd_per_mtok, cache_read_usd_per_mtok=t.cache_read_usd_per_mtok,
                      cache_write_usd_per_mtok=writes, long_context_threshold_tokens=t.long_context_threshold_tokens,
                      long_context_input_usd_per_mtok=t.long_context_input_usd_per_mtok,
                      long_context_output_usd_per_mtok=t.long_context_output_usd_per_mtok,
                      batch_multiplier=t.batch_multiplier, fast_price_multiplier=t.fast_price_multiplier,
                      fast_speedup=t.fast_speedup, max_input_tokens=t.max_input_tokens,
                      source=t.source, as_of=t.as_of, notes=t.notes)


_TTL = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
MAX_TTL_S = 366 * 86400.0  # a cache kept longer than a year is storage, not a cache


def parse_ttl(text: str) -> float:
    """'5m' -> 300, '1h' -> 3600 (cache TTLs as price sheets write them); 1 s to 366 days."""
    m = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,12})?)\s*(s|m|min|h|d)\s*", str(text))
    if not m:
        raise TokenmathError(f"cache TTL {_show(text)} is not like '5m', '1h', '30s' or '1d'")
    ttl = float(m.group(1)) * _TTL[m.group(2)]
    if not 1.0 <= ttl <= MAX_TTL_S:
        raise TokenmathError(f"cache TTL {_show(text)} must be between 1 s and 366 days")
    return ttl


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
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)

    def price_sheet(self, name: str) -> PriceSheet:
        if isinstance(name, PriceSheet):
            return name
        found = _lookup(name, self.prices)
        if found is None:
            raise unknown_name("price sheet", name, sorted(self.prices))
        return found

    def storage_tier(self, kind: str) -> Tier | None:
        """The catalog's device for a tier kind (the first defined, or a user's override)."""
        found = [t for t in self.storage.values() if t.kind == kind]
        return found[-1] if found else None

    def system(self, name: str) -> System:
        if isinstance(name, System):
            return name
        found = _lookup(name, self.systems)
        if found is None:
            raise unknown_name("system", name, sorted(self.systems))
        return found

    def model(self, name_or_path: str) -> Model:
        """A catalog name, or a path to a Hugging Face config.json."""
        if isinstance(name_or_path, Model):
            return name_or_path
        found = _lookup(name_or_path, self.models)
        if found is not None:
            return found
        p = Path(name_or_path)
        if p.suffix == ".json" or "/" in name_or_path or _is_file(p):
            return model_from_config_file(p)
        raise unknown_name("model", name_or_path, sorted(self.models))


def _lookup(name: Any, table: dict[str, Any]) -> Any:
    """The entry named exactly `name`, else the one entry whose name matches ignoring case, else None."""
    if not isinstance(name, str):
        raise TokenmathError(f"a catalog name must be text, not {_show(name)}")
    if name in table:
        return table[name]
    folded = name.casefold()
    hits = [k for k in table if k.casefold() == folded]
    return table[hits[0]] if len(hits) == 1 else None


def _is_file(p: Path) -> bool:
    """Path.is_file that answers False for names the OS refuses (too long, embedded NUL, ...)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    where = f"catalog file {str(path)!r}"
    raw = read_user_file(path, where, MAX_CATALOG_BYTES, "a catalog file")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw:
        raise TokenmathError(f"{where} looks like UTF-16 or binary data; expected UTF-8 TOML text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TokenmathError(f"{where} is not UTF-8 text (byte {e.start}); expected UTF-8 TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TokenmathError(f"{where} is not valid TOML ({e})") from None
    except RecursionError:
        raise TokenmathError(f"{where} nests arrays or inline tables too deeply to read (a catalog needs two levels)") from None
    except ValueError as e:  # e.g. a number tomllib cannot convert
        raise TokenmathError(f"{where} is not TOML that tokenmath can read ({str(e)[:80]})") from None


def _first_error(path: Path, table: str, e) -> TokenmathError:
    """A pydantic ValidationError as one sentence naming the file, the table and the field."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "missing":
        msg = f"is missing field {loc!r}"
    elif err.get("type") == "extra_forbidden":
        msg = f"has unknown field {loc!r}"
    elif loc:
        msg = f"field {loc!r}: {msg}"
        if "input" in err:
            msg += f" (got {_show(err['input'])})"
    return _TableError(f"catalog file {str(path)!r}, [{table}] {msg}")


class _TableError(TokenmathError):
    """A table that failed validation, already worded with its file and table."""


_ROWS = {"systems": SystemRow, "chips": SystemRow, "models": ModelRow, "storage": StorageRow, "prices": PriceRow,
         "checkpoints": CheckpointRow}
_FLOAT_FIELDS = {cls: frozenset(f.name for f in fields(cls) if "float" in str(f.type)) for cls in set(_ROWS.values())}


def _row_trusted(path: Path, section: str, name: str, table: dict[str, Any]):
    """A built-in table straight into its row dataclass: units parsed and numbers made float as pydantic
    would, without its validation (the built-in files are trusted, and tested through `_row_checked`)."""
    cls = _ROWS[section]
    data = _parse_fields(table)
    for key in _FLOAT_FIELDS[cls] & data.keys():
        v = data[key]
        if isinstance(v, int) and not isinstance(v, bool):
            data[key] = float(v)
    if cls is SystemRow and "scaleup_chips" in data:
        data["scaleup_chips"] = int(data["scaleup_chips"])
    if cls in (ModelRow, CheckpointRow):
        data["weight_dtype"] = check_dtype(data.get("weight_dtype"))
    return cls(**data)


def _row_checked(path: Path, section: str, name: str, table: dict[str, Any]):
    """A user's table validated by its pydantic model (catalog/schema.py)."""
    from pydantic import ValidationError

    from .schema import TABLES

    try:
        return TABLES[section].model_validate(table)
    except ValidationError as e:
        raise _first_error(path, f"{section}.{name}", e) from None


_SECTIONS = ("systems", "chips", "models", "prices", "storage", "checkpoints")
_MODEL_TOTALS = ("total_params", "active_params", "kv_bytes_per_token", "layers")


def _merge(section: str, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """An override merged into the existing table field by field: `new`'s fields replace `old`'s, the
    others are kept. A model is read one way, so a new `config` drops the old totals and new totals
    drop the old `config`."""
    old = dict(old)
    if section == "models":
        if "config" in new:
            for k in _MODEL_TOTALS:
                old.pop(k, None)
        if any(k in new for k in _MODEL_TOTALS):
            old.pop("config", None)
    if section == "systems" and "usd_per_chip_hour" in new and "price_source" not in new:
        old["price_source"] = "the user's catalog"  # not the replaced price's source
    return old | new


class _Store:
    """What the files read so far hold: each entry's merged raw table (for the next override) and its
    converted value."""

    def __init__(self):
        self.raw: dict[tuple[str, str], dict[str, Any]] = {}
        self.systems: dict[str, System] = {}
        self.models: dict[str, Model] = {}
        self.prices: dict[str, PriceSheet] = {}
        self.storage: dict[str, Tier] = {}
        self.checkpoints: dict[str, Checkpoint] = {}
        self.ddr_refs: dict[str, tuple[str, float, Path]] = {}
        self.checkpoint_files: dict[str, Path] = {}


def _load_file(path: Path, store: _Store, trusted: bool = False) -> None:
    data = _read_toml(path)
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise TokenmathError(
            f"catalog file {str(path)!r} has top-level table(s) {sorted(unknown)}; expected [systems.NAME], "
            "[chips.NAME], [models.NAME], [prices.NAME], [storage.NAME] or [checkpoints.NAME]"
        )
    for section in _SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise TokenmathError(
                f"catalog file {str(path)!r}: {section!r} = {_show(data[section])} must be a table of "
                f"[{section}.NAME] tables"
            )
    row = _row_trusted if trusted else _row_checked

    def tables(section):
        for name, table in (data.get(section) or {}).items():
            if not isinstance(table, dict):
                raise TokenmathError(f"catalog file {str(path)!r}: [{section}.{name}] must be a table")
            yield name, table

    def add(section, name, table, convert):
        """Merge the table into the entry of that name (if any), validate the result, convert and keep it."""
        table = dict(table)
        replace = table.pop("replace", False)
        if not isinstance(replace, bool):
            raise TokenmathError(f"catalog file {str(path)!r}, [{section}.{name}] replace = {_show(replace)} must be "
                                 "true or false")
        if section == "models" and isinstance(table.get("config"), str):
            cfg = Path(table["config"])  # relative to the file that names it, also once merged into another entry
            table["config"] = str(cfg if cfg.is_absolute() else path.parent / cfg)
        key = ("systems" if section == "chips" else section, name)
        merged = table if replace or key not in store.raw else _merge(section, store.raw[key], table)
        try:
            convert(row(path, section, name, merged))
        except _TableError:
            raise
        except TokenmathError as e:
            raise TokenmathError(f"catalog file {str(path)!r}, [{section}.{name}]: {e}") from None
        store.raw[key] = merged

    for section, to, target in (("prices", to_sheet, store.prices), ("storage", to_tier, store.storage),
                                ("checkpoints", to_checkpoint, store.checkpoints)):
        for name, table in tables(section):
            add(section, name, table, lambda t, name=name, to=to, target=target: target.__setitem__(name, to(t, name)))

    def add_system(t, name):
        store.systems[name] = to_system(t, name)
        if t.ddr:
            store.ddr_refs[name] = (t.ddr, t.ddr_share, path)
        else:
            store.ddr_refs.pop(name, None)

    for section in ("systems", "chips"):
        for name, table in tables(section):
            add(section, name, table, lambda t, name=name: add_system(t, name))
    for name, table in tables("models"):
        add("models", name, table, lambda t, name=name: store.models.__setitem__(name, to_model(t, name, path.parent)))
    for name in (data.get("checkpoints") or {}):
        store.checkpoint_files[name] = path


def _attach_checkpoints(store: _Store) -> None:
    """Each model gets its published checkpoints as (weight_dtype, repo id) pairs."""
    by_model: dict[str, list[tuple[str, str]]] = {}
    for name, c in store.checkpoints.items():
        if c.model not in store.models:
            raise TokenmathError(f"catalog file {str(store.checkpoint_files[name])!r}, [checkpoints.{name}] model = "
                                 f"{c.model!r} is not a catalog model; expected one of {', '.join(sorted(store.models))}")
        by_model.setdefault(c.model, []).append((c.weight_dtype, c.hf_repo))
    for m, pairs in by_model.items():
        dtypes = [d for d, _ in pairs]
        dup = sorted({d for d in dtypes if dtypes.count(d) > 1})
        if dup:
            names = sorted(n for n, c in store.checkpoints.items() if c.model == m and c.weight_dtype == dup[0])
            raise TokenmathError(f"catalog [checkpoints.{names[0]}] and [checkpoints.{names[1]}] both give model {m!r} "
                                 f"in {dup[0]}; keep one")
        store.models[m] = _replace(store.models[m], checkpoints=tuple(sorted(pairs)))


def _load(files: tuple[str, ...], trusted: frozenset[str] = frozenset()) -> Catalog:
    store = _Store()
    for f in files:
        _load_file(Path(f), store, trusted=f in trusted)
    systems, storage = store.systems, store.storage
    for name, (ref, share, path) in store.ddr_refs.items():  # resolve host-memory references once all files are read
        if ref not in storage or storage[ref].kind != "ddr":
            known = sorted(k for k, t in storage.items() if t.kind == "ddr")
            raise TokenmathError(f"catalog file {str(path)!r}, [systems.{name}]: ddr = {ref!r} is not a [storage.NAME] of "
                                 f"tier 'ddr' (known: {', '.join(known) or 'none'})")
        dev = storage[ref]
        tier = Tier(dev.bytes * share, dev.bytes_per_s * share, dev.name, "ddr", dev.usd_per_byte_s, dev.source)
        systems[name] = _replace(systems[name], ddr=tier)
    _attach_checkpoints(store)
    return Catalog(systems=systems, models=store.models, files=files, prices=store.prices, storage=storage,
                   checkpoints=store.checkpoints)


_CACHE: OrderedDict[tuple, tuple[Catalog, tuple]] = OrderedDict()
_CACHE_SIZE = 16


def _stamp(path: str) -> tuple:
    """What identifies one version of a file: path, mtime_ns, size, inode (None if it cannot be stat'ed)."""
    try:
        st = os.stat(path)
        return (path, st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, ValueError):
        return (path, None, None, None)


def _resolve(p: str | Path) -> str:
    try:
        return str(Path(p).resolve())
    except (OSError, ValueError, RuntimeError):
        return str(p)  # _read_toml then names it in one sentence


def load_catalog(extra: list[str | Path] | tuple | None = None) -> Catalog:
    """The built-in catalog plus user TOML files (later files override earlier names).

    Cached per process, keyed on each file's (path, mtime_ns, size, inode) and checked against the
    config.json files its models were read from, so an edited file is read again.
    """
    if isinstance(extra, (str, Path)):
        extra = [extra]
    files = tuple(str(p) for p in BUILTIN_FILES) + tuple(_resolve(p) for p in (extra or ()))
    key = tuple(_stamp(f) for f in files)
    hit = _CACHE.get(key)
    if hit is not None and all(_stamp(s[0]) == s for s in hit[1]):
        _CACHE.move_to_end(key)
        return hit[0]
    cat = _load(files, frozenset(str(p) for p in BUILTIN_FILES))
    deps = tuple(_stamp(m.config_path) for m in cat.models.values() if m.config_path)
    _CACHE[key] = (cat, deps)
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return cat


def get_model(name_or_path: str | Model, catalog: Catalog | None = None) -> Model:
    return (catalog or load_catalog()).model(name_or_path)


def get_system(name: str | System, catalog: Catalog | None = None) -> System:
    return (catalog or load_catalog()).system(name)


def __getattr__(name: str):
    """The pydantic models (SystemTable, ModelTable, StorageTable, PriceTable), imported on first use."""
    if name in ("SystemTable", "ModelTable", "StorageTable", "PriceTable"):
        from . import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Catalog", "load_catalog", "get_model", "get_system"]
