"""Refresh the printed lines under `$ tokenmath ...` examples in README.md and docs/*.md whose numbers
the command no longer prints (tests/test_docs.py): each shown line is matched to the output line with
the same words once numbers are masked, and replaced by it; lines with no unique match are listed
for a hand edit (prose figures too are left to the author). Run from the repository root after a
change that moves the estimate (a kernels.json or calibrated.json refit):

    .venv/bin/python scripts/refresh_doc_outputs.py
"""
import re, shlex, sys
from pathlib import Path
from typer.testing import CliRunner
from tokenmath.cli import app
sys.path.insert(0, "tests")
from test_docs import examples, shown_numbers, SKIP  # noqa

ROOT = Path(".").resolve()
NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

def skel(line):
    return re.sub(r"\s+", " ", NUM.sub("#", line)).strip()

def main():
    import os
    import tempfile

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    os.chdir(tempfile.mkdtemp(prefix="refresh-docs-"))  # what the examples write (e.g. explore's --out) lands here
    for doc in docs:
        lines = doc.read_text(encoding="utf-8").splitlines()
        changed = False
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ tokenmath "):
                cmd = lines[i][2:]
                while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
                cmd = re.sub(r"\s+#.*$", "", cmd)
                j = i + 1
                while j < len(lines) and not lines[j].startswith(("$ ", "```")):
                    j += 1
                shown = lines[i + 1:j]
                if shown and not any(s in cmd for s in SKIP):
                    res = CliRunner().invoke(app, shlex.split(cmd)[1:])
                    out = (res.stdout + res.stderr).splitlines()
                    missing = [n for n in shown_numbers("\n".join(shown)) if n not in res.stdout + res.stderr]
                    if missing:
                        by = {}
                        for o in out:
                            by.setdefault(skel(o), []).append(o)
                        for k in range(i + 1, j):
                            ln = lines[k]
                            if not NUM.search(ln):
                                continue
                            cands = by.get(skel(ln))
                            if cands and len(set(cands)) == 1:
                                new = cands[0]
                                # keep the doc's indentation
                                new = ln[:len(ln) - len(ln.lstrip())] + new.lstrip()
                                if new != ln:
                                    lines[k] = new
                                    changed = True
                            elif any(n in ln for n in missing):
                                print(f"{doc}:{k + 1}: no unique match ({len(cands or [])}) for: {ln.strip()[:120]}")
                i = j
                continue
            i += 1
        if changed:
            doc.write_text("\n".join(lines) + "\n", encoding="utf-8")
            print("updated", doc)

main()
