"""`tokenmath validate | calibrate`: predicted vs measured, and the fit of the profiles."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import (
    ForceOpt, write_output, JsonOpt, CatalogOpt, Num, command, _catalog, _finish, _drawn, err, TokenmathError,
)


# ---- accuracy -----------------------------------------------------------------------------------


@command("validate")
def validate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files (JSON lines); default: the shipped cases.")] = None,
    efficiency: Annotated[str, typer.Option("--efficiency", help="'calibrated' (each case: its engine and vendor profile), 'roofline' (the bound), or a preset .json.")] = "calibrated",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw predicted vs measured to this file.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Predicted vs measured on validation cases: per-case error and median / p90 by metric, system, source, vendor, engine, model class; the class table (model class × engine, × vendor); how often the 80 % band holds the measurement."""
    from .. import api

    r = api.validate(files, efficiency=efficiency, catalog=catalog)
    _drawn(r, plot)
    _finish(json_, r.record, r.lines)


@command("calibrate")
def calibrate_cmd(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Case files to fit on (default: the shipped cases).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the preset (default: print only).")] = None,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="Skip cross-validation (fit only; no bands).")] = False,
    processes: Annotated[Optional[int], Num("--processes", help="Worker processes for the cross-validation's folds (default: one per CPU).")] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="With case files: refit every profile on them alone, instead of fitting a few factors on the shipped preset.")] = False,
    base: Annotated[Optional[Path], typer.Option("--base", help="With case files: the preset to start from (default: the shipped one).")] = None,
    source_effects: Annotated[Optional[bool], typer.Option("--source-effects/--no-source-effects", help="When every profile is refitted (no case files, or --from-scratch): fit a per-step cost per source beside the generic profile (not shipped: a held-out source gets none) and choose λ by the one-standard-error rule, as the shipped preset was fitted (docs/validation.md, 'Source effects'); default on. --no-source-effects: the fit shipped before 2026-12-07.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Fit a preset: with your case files, a few factors on the shipped preset (how many depends on how many cases; cross-validated); without, refit the shipped profiles (generic; per vendor and per engine × vendor, each shrunk toward its parent by cross-validation) and say how much each was shrunk and which parameters sit at a bound."""
    from .. import report as rp

    from .. import calibrate as cb
    from .. import validate as vd

    if source_effects is None:  # on wherever every profile is refitted; a few factors on the shipped preset have none
        source_effects = not files or from_scratch
    elif source_effects and files and not from_scratch:
        raise TokenmathError("--source-effects refits every profile; with your case files add --from-scratch, or leave"
                             " it out to fit a few factors on the shipped preset")
    if base is not None and (from_scratch or not files):
        raise TokenmathError("--base is the preset a fit to your case files starts from; it has no effect with"
                             f" {'--from-scratch' if from_scratch else 'no case files'} (which refit every profile"
                             " from the cases alone): leave it out")
    cases = []
    for f in files or [None]:
        cases += vd.load_cases(f)
    if (from_scratch or not files) and not no_cv:
        sources = {vd.source_key(c) for c, _ in cases}
        if len(sources) < 2:  # leave-one-source-out needs a source to hold out and one to fit on
            raise TokenmathError(f"cross-validation holds out one source at a time, and these {len(cases):,} cases"
                                 f" come from {len(sources)} source ({', '.join(sorted(sources))[:100]}); give cases"
                                 " from two or more sources, or --no-cv")
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise TokenmathError("calibration needs scipy: pip install 'tokenmath[fit]'") from None
    if files and not from_scratch:
        rec = cb.fit_user_preset(cases, _catalog(catalog), base=None if base is None else str(base),
                                 cross_validate=not no_cv)
        if out is not None:
            write_output(out, json.dumps(rp.jsonable(rec), indent=2), "--out", force=force)
            err.print(f"wrote {out}")
        lines = rp.render_user_fit(rec, out)
        return _finish(json_, rp.jsonable(rec), lines[:2] + rp.at_bound_lines(rec["user_fit"]["at_bound"], factors=True)
                       + lines[2:])
    rec = cb.calibrate(cases, _catalog(catalog), progress=lambda i, n, g: err.print(f"  fold {i}/{n}: {g}"),
                       cross_validate=not no_cv, processes=processes, source_effects=source_effects)
    if out is not None:
        write_output(out, json.dumps(rp.jsonable(rec), indent=2), "--out", force=force)
        err.print(f"wrote {out}")
    _finish(json_, rp.jsonable(rec), rp.render_calibration(rec) + rp.at_bound_lines(rec["at_bound"]))


