#!/usr/bin/env python
"""Print (or, with --write, put into README.md) the accuracy table of a calibrated preset.

The table is report.accuracy_table(preset): every figure read from the preset record that
`tokenmath calibrate` wrote (roofline, in-sample, leave-one-source-out, leave-one-vendor-out,
per class, band coverage). tests/test_validate.py checks that the README's table equals the one
rendered from the shipped src/tokenmath/validation/calibrated.json, so after a refit run

    python scripts/accuracy_table.py --write

and commit README.md with calibrated.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenmath import report
from tokenmath.profiles import PRESET_FILE

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- accuracy-table: begin (scripts/accuracy_table.py writes it) -->"
END = "<!-- accuracy-table: end -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", type=Path, default=PRESET_FILE, help="preset JSON (default: the shipped one)")
    ap.add_argument("--write", action="store_true", help="replace the table between the markers in README.md")
    args = ap.parse_args()
    lines = report.accuracy_table(json.loads(args.preset.read_text()))
    if not args.write:
        print("\n".join(lines))
        return
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN!r} … {END!r} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail, encoding="utf-8")
    print(f"wrote the accuracy table ({len(lines)} lines) into {README}")


if __name__ == "__main__":
    main()
