"""The Python facade (tokenmath.api, issue 27): one call per CLI command, the CLI's JSON exactly, the
CLI's errors, results a notebook can use, and the names it shares with submodules.

The CLI calls the facade, so most tests here are invariants (the code against itself, named so): they
guard the wiring, not the physics, which the published-number tests of each module check."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import tokenmath as tm
from tokenmath import api
from tokenmath.cli import app

ROOT = Path(__file__).resolve().parents[1]
FACADE = ("step", "curve", "client", "plan", "fleet", "energy", "tco", "validate")

# CLI parameter names (the command functions') that the facade spells with the unit or in full
RENAMED = {
    "plan": {"min_user": "min_tokens_per_s_per_user", "max_ttft": "max_ttft_s", "demand": "demand_tokens_per_s"},
    "fleet": {"ttft_p99": "ttft_p99_s", "tpot_p99": "tpot_p99_s", "ttft_p50": "ttft_p50_s", "tpot_p50": "tpot_p50_s"},
    "tco": {"capex": "capex_usd_per_chip", "facility_cost": "facility_usd_per_kw_month"},
}
CLI_ONLY = {"json_", "plot", "plot_energy", "force", "dashboard"}


SKIP = ("my.toml", "my-cases.jsonl", "bad.toml")  # files the reader makes (as tests/test_docs.py skips them)


def readme_commands(docs: bool = False) -> list[str]:
    """Every `$ tokenmath <facade command> ...` line of the README (with `docs`, of docs/*.md too;
    continuations joined)."""
    out = []
    pages = [ROOT / "README.md", *(sorted((ROOT / "docs").glob("*.md")) if docs else [])]
    lines = [line for page in pages for line in page.read_text(encoding="utf-8").splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("$ tokenmath "):
            cmd = line[2:]
            j = i
            while cmd.rstrip().endswith("\\"):
                j += 1
                cmd = cmd.rstrip()[:-1] + " " + lines[j].strip()
            cmd = cmd.split("  #")[0].split(" # ")[0].strip()
            args = shlex.split(cmd)[1:]
            if args and args[0] in FACADE and "..." not in args and not any(s in cmd for s in SKIP):
                out.append(cmd)
    return list(dict.fromkeys(out))


def without_charts(args: list[str]) -> list[str]:
    """The arguments less --plot/--plot-energy FILE (a chart is no part of the JSON) and --json."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--plot", "--plot-energy"):
            skip = True
        elif a != "--json":
            out.append(a)
    return out


def facade_kwargs(command: str, args: list[str]) -> dict:
    """The CLI's arguments as the facade's keywords: parsed by the command's own parser (click), then
    renamed; the flags that only the CLI has (--json, --plot, --force) dropped."""
    click_cmd = typer.main.get_command(app).commands[command]
    ctx = click_cmd.make_context(command, list(args), resilient_parsing=False)
    kw = {}
    for name, value in ctx.params.items():
        if name in CLI_ONLY:
            continue
        kw[RENAMED.get(command, {}).get(name, name)] = value
    return kw


def cli_json(args: list[str]) -> tuple[int, dict | None, str]:
    res = CliRunner().invoke(app, [*args, "--json"])
    return res.exit_code, (json.loads(res.stdout) if res.exit_code == 0 else None), res.stderr


def test_readme_shows_the_facade_commands():
    """The README shows the facade's commands (the comparison below runs on them)."""
    shown = {shlex.split(c)[1] for c in readme_commands()}
    assert {"step", "plan", "fleet", "energy", "tco", "validate"} <= shown, shown


@pytest.mark.parametrize("cmd", readme_commands(docs=True))
def test_invariant_documented_command_gives_the_same_json_both_ways(cmd, tmp_path, monkeypatch):
    """Invariant: each README and docs/ command of a facade function, run as `tokenmath ... --json` and
    as `tm.<command>(**the same arguments)`, gives the same JSON — or the same one-sentence error.
    Every CLI option reaches the facade by its name (RENAMED), so an option the CLI gains without the
    facade fails here."""
    monkeypatch.chdir(tmp_path)
    args = without_charts(shlex.split(cmd)[1:])
    command = args[0]
    code, record, stderr = cli_json(args)
    kw = facade_kwargs(command, args[1:])
    fn = getattr(tm, command)
    if code == 2:
        with pytest.raises(tm.TokenmathError) as e:
            fn(**kw)
        assert str(e.value) in " ".join(stderr.split()), (str(e.value), stderr)
        return
    assert code == 0, stderr
    assert fn(**kw).to_dict() == record


def test_invariant_curve_and_spec_objects_match_the_cli():
    """Invariant: spec objects and plain numbers give what the CLI gives for names and '4k' strings."""
    m, s = tm.get_model("deepseek-v3"), tm.get_system("gb200-nvl72")
    by_objects = tm.step(model=m, system=s, batch=2048, context=4000).to_dict()
    assert by_objects == cli_json(["step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "2048",
                                   "--context", "4k"])[1]
    c = tm.curve("deepseek-v3", "gb200-nvl72", over="context", points=5)
    assert c.to_dict() == cli_json(["curve", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--over", "context",
                                    "--points", "5"])[1]


@pytest.mark.parametrize("call, cli", [
    (lambda: tm.step(model="deepseek-v3", system="gb200-nvl72", batch="0"),
     ["step", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--batch", "0"]),
    (lambda: tm.step(model="deepseek-v4", system="gb200-nvl72"),
     ["step", "--model", "deepseek-v4", "--system", "gb200-nvl72"]),
    (lambda: tm.curve(model="deepseek-v3", system="gb200-nvl72", points=1),
     ["curve", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--points", "1"]),
    (lambda: tm.curve(model="deepseek-v3", system="gb200-nvl72", context="nan"),
     ["curve", "--model", "deepseek-v3", "--system", "gb200-nvl72", "--context", "nan"]),
    (lambda: tm.energy(model="llama-3.1-8b", system="h100-sxm", input_tokens=500),
     ["energy", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--input-tokens", "500"]),
    (lambda: tm.tco(system="h100-sxm", utilisation=1.5), ["tco", "--system", "h100-sxm", "--utilisation", "1.5"]),
    (lambda: tm.plan(model="llama-3.1-8b", systems=""), ["plan", "--model", "llama-3.1-8b", "--systems", ""]),
    (lambda: tm.fleet(model="llama-3.1-8b", request_rate=10, export="ollama"),
     ["fleet", "--model", "llama-3.1-8b", "--request-rate", "10", "--export", "ollama"]),
    (lambda: tm.validate(efficiency="best"), ["validate", "--efficiency", "best"]),
])
def test_invariant_bad_input_is_the_clis_one_sentence(call, cli):
    """Invariant: bad input raises TokenmathError with the sentence the CLI prints (exit 2)."""
    res = CliRunner().invoke(app, cli)
    assert res.exit_code == 2, res.stdout
    with pytest.raises(tm.TokenmathError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and msg in " ".join(res.stderr.split()), (msg, res.stderr)


def test_a_non_finite_result_is_an_error_not_a_nan():
    """The facade keeps the CLI's last guard: no inf reaches a record (here a price of $1e-300 an hour
    is refused by the flag's bound before any work)."""
    with pytest.raises(tm.TokenmathError, match="usd-per-chip-hour"):
        tm.step(model="llama-3.1-8b", system="h100-sxm", usd_per_chip_hour=1e-300)


def test_names_shared_with_submodules_are_both(tmp_path):
    """tm.plan / fleet / energy / validate are the facade functions and still the submodules, whichever
    is imported first (a fresh interpreter each way)."""
    probe = """
import sys
{first}
import tokenmath as tm
from tokenmath.fleet import fleet as core_fleet, Slo
from tokenmath import energy as en
import tokenmath.validate as vd
import tokenmath.plan
for name in ("plan", "fleet", "energy", "validate"):
    obj = getattr(tm, name)
    assert callable(obj) and obj is sys.modules["tokenmath." + name], name
assert core_fleet is tm.fleet.fleet and Slo is tm.fleet.Slo and tm.Slo is Slo
assert en.tco is sys.modules["tokenmath.energy"].tco and callable(vd.load_cases)
r = tm.tco(system="h100-sxm")
assert r["system"] == "h100-sxm"
import inspect
assert "request_rate" in inspect.signature(tm.fleet).parameters
print("ok")
"""
    for first in ("import tokenmath.fleet, tokenmath.energy", "from tokenmath import validate", "pass"):
        res = subprocess.run([sys.executable, "-c", probe.format(first=first)], capture_output=True, text=True)
        assert res.stdout.strip() == "ok", (first, res.stderr[-2000:])


def test_monkeypatching_a_facade_name_still_works(monkeypatch):
    """A test may replace tm.fleet; deleting the replacement brings the callable submodule back."""
    monkeypatch.setattr(tm, "fleet", "replaced")
    assert tm.fleet == "replaced"
    monkeypatch.undo()
    assert callable(tm.fleet) and tm.fleet is sys.modules["tokenmath.fleet"]


def test_import_tokenmath_stays_cheap():
    """`import tokenmath` (and reading tm.step's name) imports none of the heavy libraries; calling it does."""
    probe = ("import sys, tokenmath as tm; tm.__all__; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'rich', 'typer', 'pydantic',"
             " 'matplotlib'}))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def test_frames_carry_units_in_column_names():
    pd = pytest.importorskip("pandas")
    c = tm.curve(model="deepseek-v3", system="gb200-nvl72", points=5)
    df = c.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == len(c["points"])
    for col in ("batch_sequences", "context_tokens", "step_s", "roofline_step_s", "tokens_per_s_per_chip",
                "usd_per_mtok", "range_80.step_s_lo", "range_80.step_s_hi", "mfu_fraction"):
        assert col in df.columns, col
    # each row is the record's point, renamed (an invariant of the conversion)
    assert df["step_s"].tolist() == [p["step_s"] for p in c["points"]]
    assert (df["range_80.step_s_lo"] <= df["step_s"]).all() and (df["step_s"] <= df["range_80.step_s_hi"]).all()
    p = tm.plan(model="llama-3.1-8b", systems="h100-sxm,b200", min_tokens_per_s_per_user=50)
    pf = p.to_frame()
    assert len(pf) == len(p["frontier"]) and {"system", "usd_per_mtok", "tokens_per_s_per_user"} <= set(pf.columns)
    with pytest.raises(tm.TokenmathError, match="one point"):
        tm.tco(system="h100-sxm").to_frame()


def test_validation_rows_frame():
    pytest.importorskip("pandas")
    v = tm.validate(efficiency="roofline")
    df = v.to_frame()
    assert len(df) == v["n"] and {"id", "predicted", "measured", "error_fraction", "metric"} <= set(df.columns)


def test_text_html_and_plot(tmp_path):
    r = tm.step(model="llama-3.1-70b", system="h100-sxm", chips=8, batch=64, context="8k", weight_dtype="fp8",
                kv_dtype="fp8")
    res = CliRunner().invoke(app, ["step", "--model", "llama-3.1-70b", "--system", "h100-sxm", "--chips", "8",
                                   "--batch", "64", "--context", "8k", "--weight-dtype", "fp8", "--kv-dtype", "fp8"])
    # the text is the CLI's (the same lines; the CLI's console may wrap a table differently)
    for line in ("estimate: ", "roofline bound: ", "memory per chip"):
        ours = next(x for x in str(r).splitlines() if x.startswith(line))
        assert ours in res.stdout, line
    html = r._repr_html_()
    assert "<table>" in html and "step_s" in html and "&lt;" not in html.split("<table>")[1][:20]
    c = tm.curve(model="deepseek-v3", system="gb200-nvl72", points=5)
    assert c._repr_html_().count("<tr>") == len(c["points"]) + 1
    pytest.importorskip("matplotlib")
    out = c.plot(tmp_path / "c.png")
    assert Path(out).stat().st_size > 1000
    fig = c.plot()
    assert hasattr(fig, "savefig")
    with pytest.raises(tm.TokenmathError, match="no chart"):
        r.plot()


def test_docstring_examples_run():
    """Every public facade function has a docstring that says its units and holds an example, and the
    examples run (doctest)."""
    import doctest

    for name in FACADE:
        doc = getattr(api, name).__doc__
        assert doc and ">>> " in doc and "Example" in doc, name
        assert any(u in doc for u in ("seconds", "$", "tokens", " J", "W)", "fraction")), name
    res = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= len(FACADE) and res.failed == 0, res


def test_site_nav_holds_every_docs_page_and_the_api_page_every_facade_function():
    """mkdocs.yml (the site `make docs` builds in CI with --strict) lists every page of docs/ as a
    chapter, and the API page documents every facade function (an invariant of the files)."""
    import re

    nav = set(re.findall(r":\s*([\w.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.M))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages == nav, (sorted(pages - nav), sorted(nav - pages))
    api_page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    members = re.search(r"members: \[(.*?)\]", api_page).group(1)
    assert set(FACADE) <= {x.strip() for x in members.split(",")}


def test_plan_plots_both_charts(tmp_path):
    pytest.importorskip("matplotlib")
    p = tm.plan(model="llama-3.1-8b", systems="h100-sxm,b200", min_tokens_per_s_per_user=50)
    assert Path(p.plot(tmp_path / "frontier.svg")).stat().st_size > 1000
    assert Path(p.plot_energy(tmp_path / "energy.png")).stat().st_size > 1000
    with pytest.raises(tm.TokenmathError, match="format"):
        p.plot(tmp_path / "frontier.txt")


def test_invariant_every_facade_function_runs_quietly_with_its_record_checked_finite():
    """Invariant: each facade function of tokenmath.api is wrapped by api._facade (quiet, and its record
    checked finite, the CLI's last guard); a decorator lost when a function is inserted above another
    would leave that one unguarded."""
    from tokenmath import api

    for name in ("step", "curve", "client", "plan", "_fleet", "energy", "tco", "validate", "engines"):  # fleet: _fleet's
        assert hasattr(getattr(api, name), "__wrapped__"), name
