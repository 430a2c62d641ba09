#!/usr/bin/env python
"""Rebuild the shipped preset's 80 % bands (and their coverage on sources never fitted) without
refitting its profiles.

The bands come from the leave-one-source-out residuals (calibrate.band_record), which the preset
keeps (`cv_residuals`). After a change to how bands are built (profiles.band_for,
calibrate.band_table), rebuild them from those residuals in seconds:

    python scripts/rebuild_bands.py --from-residuals --write

or recompute the residuals themselves first (every leave-one-source-out fold refitted with the
shipped engine batch cap, about six minutes on one core; the profiles' fitted parameters stay as
they are):

    python scripts/rebuild_bands.py --processes 1 --write

Then `python scripts/accuracy_table.py --write` puts the new coverage into README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from tokenmath import calibrate as cb
from tokenmath.profiles import PRESET_FILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", type=Path, default=PRESET_FILE, help="preset JSON (default: the shipped one)")
    ap.add_argument("--from-residuals", action="store_true", help="use the preset's stored cv_residuals (no refit)")
    ap.add_argument("--processes", type=int, default=1, help="worker processes for the folds (default 1)")
    ap.add_argument("--write", action="store_true", help="write the bands into the preset (else print a summary)")
    args = ap.parse_args()
    rec = json.loads(args.preset.read_text(encoding="utf-8"))
    if args.from_residuals:
        if "cv_residuals" not in rec:
            raise SystemExit(f"{args.preset} keeps no cv_residuals: run without --from-residuals")
        rows = cb.rows_from_residuals(rec["cv_residuals"])
        when = rec["cv_residuals"].get("computed")
    else:
        cv = cb.cross_validation(cb.load_cases(), key=cb.source_key, what="source",
                                 caps=(rec["generic"]["max_batch"],), processes=args.processes)
        rows, when = cv.rows, datetime.date.today().isoformat()
    new = cb.band_record(rows)
    new["cv_residuals"]["computed"] = when
    cov = new["cv_band_80_coverage"]
    print(f"nested 80 % band coverage {cov['share']:.1%} of {cov['n']}; by model class: "
          + ", ".join(f"{k} {v['share']:.1%} ({v['n']})" for k, v in cov["by_model_class"].items()))
    if args.write:
        rec |= new
        args.preset.write_text(json.dumps(rec, indent=2), encoding="utf-8")  # as `tokenmath calibrate --out` writes it
        print(f"wrote bands, cv_band_80_coverage and cv_residuals into {args.preset}")


if __name__ == "__main__":
    main()
