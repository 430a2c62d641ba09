"""After a refit, carry the figures quoted in prose (paragraphs with a `<!-- figures: tokenmath ... -->`
comment, docs/writing-docs.md) from the old fit's output to the new one's.

For each annotated paragraph of README.md and docs/*.md that quotes a figure its command no longer
prints, the command is run under the OLD preset and under the shipped (new) one. Where the two
outputs have the same lines once numbers are masked, their numbers pair up by position; a quoted
figure that the old output printed, and that maps to one new value, is replaced by it. What cannot
be carried (an output whose lines changed, a figure printed in two places that moved differently)
is listed for a hand edit. The tests (tests/test_docs.py) stay the judge.

    git show HEAD:src/tokenmath/validation/calibrated.json > /tmp/old-preset.json
    .venv/bin/python scripts/refresh_prose_figures.py /tmp/old-preset.json

When the code moved too (a change to the step model, then a refit), give the old source tree as
well, e.g. a worktree of HEAD: the old outputs are then computed by that code with its preset.

    git worktree add /tmp/old HEAD
    .venv/bin/python scripts/refresh_prose_figures.py --old-src /tmp/old/src
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_docs import (FIGURE, FIGURES_CMD, NOT_PROSE, annotated_paragraphs,  # noqa: E402
                       prose_figures_missing)

from tokenmath import profiles  # noqa: E402
from tokenmath.cli import app  # noqa: E402


def run(cmd: str) -> str:
    res = CliRunner().invoke(app, shlex.split(cmd)[1:])
    return res.stdout + res.stderr


OLD_RUNNER = """
import json, shlex, sys
from typer.testing import CliRunner
from tokenmath.cli import app
out = {}
for c in json.loads(sys.stdin.read()):
    r = CliRunner().invoke(app, shlex.split(c)[1:])
    out[c] = r.stdout + r.stderr
print(json.dumps(out))
"""


def outputs_of_source(src: Path, cmds: list[str]) -> dict[str, str]:
    """Each command's output as the tokenmath under `src` (another checkout) prints it."""
    import json
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(src))
    p = subprocess.run([sys.executable, "-c", OLD_RUNNER], input=json.dumps(cmds), capture_output=True, text=True,
                       env=env, check=True)
    return json.loads(p.stdout)


def outputs_under(preset: Path, cmds: list[str]) -> dict[str, str]:
    """Each command's output with `preset` in the shipped preset's place (restored after)."""
    shipped = profiles.PRESET_FILE
    keep = Path(tempfile.mkdtemp()) / "shipped.json"
    shutil.copy(shipped, keep)
    try:
        shutil.copy(preset, shipped)
        _clear_caches()
        return {c: run(c) for c in cmds}
    finally:
        shutil.copy(keep, shipped)
        _clear_caches()


def _clear_caches() -> None:
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("tokenmath"):
            for obj in list(vars(mod).values()):
                if hasattr(obj, "cache_clear"):
                    obj.cache_clear()


def mapping(old: str, new: str) -> dict[str, set[str]]:
    """Old printed number -> the new numbers printed in its place, where the lines match once
    numbers are masked."""
    out: dict[str, set[str]] = {}
    ol, nl = old.splitlines(), new.splitlines()
    if len(ol) != len(nl):
        return out
    for a, b in zip(ol, nl):
        if FIGURE.sub("#", a).split() != FIGURE.sub("#", b).split():
            continue
        for x, y in zip(FIGURE.findall(a), FIGURE.findall(b)):
            out.setdefault(x, set()).add(y)
    return out


def main() -> int:
    args = sys.argv[1:]
    old_src = Path(args[args.index("--old-src") + 1]).resolve() if "--old-src" in args else None
    old_preset = None if old_src else Path(args[0]).resolve()
    os.chdir(tempfile.mkdtemp(prefix="refresh-prose-"))
    todo = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line, text in annotated_paragraphs(doc):
            cmds = [" ".join(c.split()) for c in FIGURES_CMD.findall(text)]
            missing, _ = prose_figures_missing(text, [run(c) for c in cmds])
            if missing:
                todo.append((doc, line, text, cmds, missing))
    cmds = sorted({c for *_, cs, _ in todo for c in cs})
    before = outputs_of_source(old_src, cmds) if old_src else outputs_under(old_preset, cmds)
    after = {c: run(c) for c in cmds}
    left = 0
    for doc, line, text, cs, missing in todo:
        maps: dict[str, set[str]] = {}
        for c in cs:
            for k, v in mapping(before[c], after[c]).items():
                maps.setdefault(k, set()).update(v)
        new_text = text
        for fig in missing:
            targets = maps.get(fig)
            if not targets or len(targets) != 1:
                print(f"{doc.name}:{line}: {fig} — {'not printed by the old fit either' if not targets else 'moved to ' + ', '.join(sorted(targets))}: edit by hand")
                left += 1
                continue
            (to,) = targets
            prose = NOT_PROSE.split(new_text)
            spans = NOT_PROSE.findall(new_text)
            pat = re.compile(r"(?<![\w.\-,])" + re.escape(fig) + r"(?![\w\-]|\.\d|,\d{3})")
            prose = [pat.sub(to, p) for p in prose]
            new_text = "".join(p + (spans[i] if i < len(spans) else "") for i, p in enumerate(prose))
        if new_text != text:
            body = doc.read_text(encoding="utf-8")
            doc.write_text(body.replace(text, new_text, 1), encoding="utf-8")
            print(f"updated {doc.name}:{line}")
    print(f"{left} figure(s) left for a hand edit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
