"""`tokenmath validate | calibrate`: predicted vs measured, and the fit of the profiles."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    JsonOpt, CatalogOpt, command, _catalog, _finish, err, TokenmathError,
)


# ---- accuracy -----------------------------------------------------------------------------------


@command("validate")
def validate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files (JSON lines); default: the shipped cases.")] = None,
    efficiency: Annotated[str, typer.Option("--efficiency", help="'calibrated' (each case: its engine and vendor profile), 'roofline' (the bound), or a preset .json.")] = "calibrated",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw predicted vs measured to this file.")] = None,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Predicted vs measured on validation cases: per-case error and median / p90 by metric, system, source, vendor, engine, model class."""
    from .. import report as rp

    from .. import profiles as pf
    from .. import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    preset = None
    if efficiency == "roofline":
        prof, fitted = pf.ROOFLINE_PROFILE, None
    else:
        if efficiency not in ("calibrated", "estimate") and not efficiency.endswith(".json"):
            raise TokenmathError(f"--efficiency = {efficiency!r}; expected 'calibrated', 'roofline' or a preset .json file")
        preset = pf.preset_record(None if efficiency in ("calibrated", "estimate") else efficiency)
        prof, fitted = "calibrated", set(preset.get("systems", []))
    r = vd.validate(cases, prof, _catalog(catalog), fitted_systems=fitted, preset=preset)
    if plot is not None:
        from .. import plots

        plots.predicted_vs_measured(r, title=f"{len(r.rows)} cases, {r.label}", path=plot)
        err.print(f"wrote {plot}")
    rec = rp.validation_record(r, preset)
    _finish(json_, rec, rp.render_validation(r, preset))


@command("calibrate")
def calibrate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files to fit on (default: the shipped cases).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the preset (default: print only).")] = None,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="Skip cross-validation (fit only; no bands).")] = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fit the calibrated profiles (generic, per engine, per vendor; scipy) and report their cross-validated error."""
    from .. import report as rp

    from .. import validate as vd

    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise TokenmathError("calibration needs scipy: pip install 'tokenmath[fit]'") from None
    rec = vd.calibrate(cases, _catalog(catalog), progress=lambda i, n, g: err.print(f"  fold {i}/{n}: {g}"),
                       cross_validate=not no_cv)
    if out is not None:
        out.write_text(json.dumps(rp.jsonable(rec), indent=2))
        err.print(f"wrote {out}")
    _finish(json_, rp.jsonable(rec), rp.render_calibration(rec))
