"""The schema of a preset JSON (`--efficiency FILE.json`, `calibrate --base FILE.json`): what
`tokenmath calibrate --out` writes and profiles.choose_from reads.

A preset from a user is input like any other: read by the bounded reader (errors.read_user_json),
then checked here, so a wrong type, a NaN, a negative scale or a 50,000-deep file is one sentence
naming the field, never a TypeError deep in the step model. The bounds are what is physically
sensible for a fitted factor (a scale of peak between 0 and 100, an overhead under 10 s per step),
wider than any fit's own bounds (validate.py), so every preset calibrate writes passes.
Fields a preset carries for people (cross-validation summaries, worst cases) are kept as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import TokenmathError

MAX_PRESET_BYTES = 4_000_000  # the shipped calibrated.json is ~20 KB
MAX_PRESET_DEPTH = 16

Scale = Annotated[float, Field(gt=0, le=100)]  # a factor on peak FLOP/s, bandwidth, link rate or kernel floors
Name = Annotated[str, Field(min_length=1, max_length=64)]
LogError = Annotated[float, Field(ge=-20, le=20)]  # a band's edge: log(predicted / measured)
Band = tuple[LogError, LogError]
ClassBand = tuple[LogError, LogError, Annotated[int, Field(ge=0, le=10**7)]]  # and the cases it rests on
ENGINE_FIELDS = ("overhead_s", "compute_scale", "memory_scale", "network_scale", "routing_cv", "floor_scale")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class EngineRecord(_Record):
    """A profile's fitted engine parameters (generic, or one engine's); a missing one keeps the
    generic profile's value (or the Engine default)."""

    # a parameter may be left out (the default None is not validated), never given as null
    overhead_s: Annotated[float, Field(ge=0, le=10)] = None  # type: ignore[assignment]
    compute_scale: Scale = None  # type: ignore[assignment]
    memory_scale: Scale = None  # type: ignore[assignment]
    network_scale: Scale = None  # type: ignore[assignment]
    routing_cv: Annotated[float, Field(ge=0, le=100)] = None  # type: ignore[assignment]
    floor_scale: Scale = None  # type: ignore[assignment]
    max_batch: Optional[Annotated[float, Field(ge=1, le=1e7)]] = None  # null: no engine cap
    n_cases: Annotated[int, Field(ge=0, le=10**7)] = 0


Lambda = Union[Annotated[float, Field(ge=0, le=1e6)], Literal["inf"]]  # a shrinkage strength (calibrate.py)


class VendorRecord(_Record):
    """A vendor's (or an engine × vendor's) factors on its parent profile: an added overhead and
    factors on the compute and memory scales (preset_format 2, issue 22); presets before it stored
    a vendor's factors as compute_scale / memory_scale. The shrinkage it was fitted with is kept."""

    overhead_add_s: Annotated[float, Field(ge=-10, le=10)] = None  # type: ignore[assignment]
    compute_factor: Scale = None  # type: ignore[assignment]
    memory_factor: Scale = None  # type: ignore[assignment]
    compute_scale: Scale = None  # type: ignore[assignment]
    memory_scale: Scale = None  # type: ignore[assignment]
    n_cases: Annotated[int, Field(ge=0, le=10**7)] = 0
    n_sources: Annotated[int, Field(ge=0, le=10**5)] = 0
    lambda_: Lambda = Field(default=None, alias="lambda")  # type: ignore[assignment]
    own_weight: Annotated[dict[Name, Annotated[float, Field(ge=0, le=1)]], Field(max_length=8)] = {}


class AtBound(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    parameter: Annotated[str, Field(max_length=64)]
    value: float
    bound: float
    side: Literal["lower", "upper"]
    range: tuple[float, float]


class UserFit(BaseModel):
    """What a fit to a user's cases adds (its summaries are kept as they are)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    n_cases: Annotated[int, Field(ge=0, le=10**7)] = 0
    at_bound: Annotated[list[AtBound], Field(max_length=100)] = []


class ErrorSummary(BaseModel):
    """A median / p90 |error| summary a report prints (the preset's cross-validated figures)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    median_abs_error: Annotated[float, Field(ge=0, le=1e6)]
    p90_abs_error: Annotated[float, Field(ge=0, le=1e6)]


class CoverageCell(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    n: Annotated[int, Field(ge=0, le=10**7)]
    share: Annotated[float, Field(ge=0, le=1)]


class Coverage(CoverageCell):
    """The nested band coverage a report prints: overall, and per model class."""

    by_model_class: Annotated[dict[Name, CoverageCell], Field(max_length=64)] = {}


class Preset(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    generic: EngineRecord
    # an engine's own parameters (preset_format 1) or its factors per vendor (format 2)
    engines: Annotated[dict[Name, Union[EngineRecord, Annotated[dict[Name, VendorRecord], Field(max_length=64)]]],
                       Field(max_length=64)] = {}
    vendors: Annotated[dict[Name, VendorRecord], Field(max_length=64)] = {}
    adjust: dict[Literal[ENGINE_FIELDS], Annotated[float, Field(gt=0, le=1000)]] = {}  # type: ignore[valid-type]
    bands: Annotated[dict[Name, Union[Band, Annotated[str, Field(max_length=1000)], Annotated[int, Field(ge=0, le=10**7)],
                                      # per class: {"model_class": {"moe": [lo, hi, n], ...}, ...}
                                      Annotated[dict[Name, Annotated[dict[Name, Union[Band, ClassBand]], Field(max_length=256)]],
                                                Field(max_length=16)]]], Field(max_length=16)] = {}
    fit_date: Optional[Annotated[str, Field(max_length=40)]] = None
    systems: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=10_000)] = []
    user_fit: Optional[UserFit] = None
    # the summaries `tokenmath validate` prints from the preset (report.render_validation)
    n_cases: Annotated[int, Field(ge=0, le=10**7)] = 0
    cross_validated: Optional[ErrorSummary] = None
    cv_band_80_coverage: Optional[Coverage] = None

    @field_validator("bands")
    @classmethod
    def _ordered(cls, v: dict) -> dict:
        for k, x in v.items():
            if isinstance(x, tuple) and len(x) == 2 and x[0] > x[1]:
                raise ValueError(f"band {k!r} = [{x[0]:g}, {x[1]:g}]: the 10th percentile is above the 90th")
        return v


def _union_tag(part: Any) -> bool:
    """pydantic names the member of a Union in an error's location ('EngineRecord', 'dict[str,...]',
    'tuple[...]', 'int'); the user's file has only the keys."""
    p = str(part)
    return p.endswith("Record") or "[" in p or p in {"str", "int", "float", "literal['inf']"}


def _show(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def check_preset(d: Any, where: str) -> dict:
    """`d` (a parsed preset) if it fits the schema, else one sentence naming the field."""
    if not isinstance(d, dict):
        raise TokenmathError(f"{where} holds a JSON {type(d).__name__}; expected an object with a 'generic' profile")
    if "generic" not in d:
        raise TokenmathError(f"{where} has no 'generic' profile; refit with `tokenmath calibrate`")
    try:
        Preset.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()) if not _union_tag(x))
        if err.get("type") == "extra_forbidden":
            raise TokenmathError(f"{where}: field {loc!r} is not a preset field") from None
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        got = f" (got {_show(err['input'])})" if "input" in err else ""
        raise TokenmathError(f"{where}: field {loc!r}: {msg}{got}") from None
    return d
