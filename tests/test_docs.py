"""Every `$ tokenmath ...` example in the README and docs/ runs: exit 0, or exit 2 where the
example shows an error. Examples that need files the reader makes (my.toml, my-cases.jsonl), a
server (`serve`), or the long refit (`calibrate`) are listed and skipped by name."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenmath.cli import app

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("serve", "calibrate", "my.toml", "my-cases.jsonl", "bad.toml", "...", " / ")


def examples():
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ tokenmath "):
                cmd = line[2:]
                while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                shown = []
                j = i + 1
                while j < len(lines) and not lines[j].startswith(("$ ", "```")):
                    shown.append(lines[j])
                    j += 1
                cmd = re.sub(r"\s+#.*$", "", cmd)
                if not any(s in cmd for s in SKIP):
                    out.append(pytest.param(cmd, 2 if nxt.startswith("error:") else 0, "\n".join(shown),
                                            id=f"{doc.name}:{i + 1}"))
            i += 1
    return out


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def shown_numbers(text: str) -> set[str]:
    """Numbers a documented output shows (a thousands separator or a decimal point, or 3+ digits):
    each must appear in what the command prints now, so the docs cannot drift from the code."""
    return {n for n in NUMBER.findall(text) if ("," in n or "." in n or len(n) >= 3) and not n.endswith(",")}


@pytest.mark.parametrize("cmd, code, shown", examples())
def test_documented_example_runs(cmd, code, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(cmd)[1:]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == code, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stdout + res.stderr
    printed = res.stdout + res.stderr
    missing = sorted(n for n in shown_numbers(shown) if n not in printed)
    assert not missing, f"{cmd}: the docs show {missing}, which the command no longer prints"


def python_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


LITERAL = re.compile(r"^(?P<expr>[^#]+?)\s+#\s*(?P<num>-?\d[\d_]*(?:\.\d+)?)\b(?!\s*[×x*/])")


@pytest.mark.parametrize("block", python_blocks())
def test_readme_python_runs_and_its_exact_numbers_hold(block):
    """The README's Python examples run as written, and a line commented with a bare number (e.g.
    `tm.param_counts(m).total  # 671_026_404_352`) evaluates to that number (rel 1e-9)."""
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    for line in block.splitlines():
        m = LITERAL.match(line)
        if m and "=" not in m.group("expr").split("(")[0]:
            got = eval(m.group("expr"), ns)
            assert float(got) == pytest.approx(float(m.group("num").replace("_", "")), rel=1e-9), line
