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


# ---- figures quoted in prose: the convention of docs/writing-docs.md --------------------------------
# A paragraph (lines up to a blank line, outside ``` fences) that quotes computed figures names the
# command(s) that print them in an HTML comment, invisible when rendered:
#     <!-- figures: tokenmath plan --model deepseek-v3 --min-tokens-per-s-per-user 20 -->
# Each named command runs, and every figure of the paragraph must be a number it prints (by value:
# 2552 and 2,552 are one number, 0.32 is not 0.316). A figure is a number with a thousands separator,
# a decimal point, or 3+ digits that is not part of a name (b200, llama-3.1-70b, 2026-12-02, 10⁶);
# numbers in `inline code`, in link targets and in comments are not figures. A number that is not the
# command's (a year, the lecture's figure quoted for contrast) is listed in <!-- not-figures: 2,400 -->.

FIGURES_CMD = re.compile(r"<!--\s*figures:\s*(.*?)\s*-->", re.S)
NOT_FIGURES = re.compile(r"<!--\s*not-figures:\s*(.*?)\s*-->", re.S)
FIGURE = re.compile(r"(?<![\w.\-])(?<!\d,)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w\-]|\.\d|,\d{3})")
NOT_PROSE = re.compile(r"<!--.*?-->|`[^`]*`|\]\([^)]*\)", re.S)  # comments, inline code, link targets


def figures(text: str) -> dict[float, str]:
    """The figures in a text, by value (each as first written): numbers with a separator, a decimal
    point or 3+ digits, outside names."""
    out: dict[float, str] = {}
    for n in FIGURE.findall(text):
        if "," in n or "." in n or len(n) >= 3:
            out.setdefault(float(n.replace(",", "")), n)
    return out


def annotated_paragraphs(path: Path):
    """(first line number, paragraph text) of each paragraph with a `figures:` comment."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced, start, block = False, None, []
    for i, line in enumerate(lines + [""], 1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or line.startswith("```") or not line.strip():
            if block and FIGURES_CMD.search(" ".join(block)):
                yield start, "\n".join(block)
            block = []
            continue
        if not block:
            start = i
        block.append(line)


def prose_figures_missing(paragraph: str, outputs: list[str]) -> tuple[list[str], list[str]]:
    """(figures of the paragraph that no output prints, not-figures entries the paragraph does not hold)."""
    ignored = {float(x.replace(",", "")) for m in NOT_FIGURES.findall(paragraph) for x in m.split()}
    quoted = figures(NOT_PROSE.sub(" ", paragraph))
    printed = {float(n.replace(",", "")) for text in outputs for n in FIGURE.findall(text)}  # any number, "9 GB" too
    missing = [shown for v, shown in quoted.items() if v not in printed and v not in ignored]
    stale = [f"{v:g}" for v in ignored if v not in quoted]
    return missing, stale


def prose_cases():
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line, text in annotated_paragraphs(doc):
            out.append(pytest.param(doc.relative_to(ROOT).as_posix(), line, text, id=f"{doc.name}:{line}"))
    return out


def _run_figures_command(cmd: str) -> str:
    args = shlex.split(cmd)
    assert args and args[0] == "tokenmath", f"a figures: comment names a tokenmath command, not {cmd!r}"
    res = CliRunner().invoke(app, args[1:])
    assert res.exit_code == 0, f"`{cmd}` exits {res.exit_code}: {res.stderr[-500:]}"
    return res.stdout + res.stderr


@pytest.mark.parametrize("doc, line, text", prose_cases())
def test_figures_in_prose_are_what_the_named_command_prints(doc, line, text, tmp_path, monkeypatch):
    """Every figure in an annotated paragraph is printed by the command(s) its `figures:` comment names
    (docs/writing-docs.md)."""
    monkeypatch.chdir(tmp_path)
    cmds = [" ".join(c.split()) for c in FIGURES_CMD.findall(text)]
    missing, stale = prose_figures_missing(text, [_run_figures_command(c) for c in cmds])
    names = " + ".join(f"`{c}`" for c in cmds)
    assert figures(NOT_PROSE.sub(" ", text)), f"{doc}:{line}: a figures: comment on a paragraph that quotes no figure"
    assert not missing, (f"{doc}:{line}: the paragraph quotes {', '.join(missing)}, which {names} does not print"
                         " today: update the paragraph to the printed figures (or list a number that is not the"
                         " command's — a year, a quoted source — in <!-- not-figures: ... -->)")
    assert not stale, f"{doc}:{line}: <!-- not-figures: --> lists {', '.join(stale)}, which the paragraph does not quote"


def test_prose_figures_are_found_and_a_stale_one_fails():
    """The checker itself (an invariant of the convention): the right numbers count as figures, and a
    paragraph quoting a figure the command does not print fails, naming it."""
    text = ("DeepSeek-V3 on b200 (TP1 EP8, llama-3.1-70b, top-2,048, fitted 2026-12-02, 10⁶ points, `--batch 835`, [x](docs/a2.md)):"
            " $0.316/Mtok, 2,552 per chip, 392 chips, 24.4 tokens/s, 8 chips, 20 users, 1M tokens/s; 2,400 quoted.\n"
            "<!-- figures: tokenmath x -->\n<!-- not-figures: 2,400 -->")
    assert set(figures(NOT_PROSE.sub(" ", text)).values()) == {"0.316", "2,552", "392", "24.4", "2,400"}
    printed = "cheapest: b200 ... 24.4 tokens/s per user, 2552 per chip, $0.316/Mtok; 49 replicas = 392 chips"
    assert prose_figures_missing(text, [printed]) == ([], [])
    assert prose_figures_missing(text, [printed.replace("0.316", "0.32")]) == (["0.316"], [])
    assert prose_figures_missing(text.replace("2,400 quoted", "quoted"), [printed]) == ([], ["2400"])
    assert prose_figures_missing("KV 9.0 GB per chip", ["KV 9 GB"]) == ([], [])  # by value, however printed
    assert prose_cases(), "no annotated paragraph in README.md or docs/: the convention is applied nowhere"
