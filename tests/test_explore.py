"""tokenmath explore (issue 26): hypothetical chips × models × workloads, Parquet parts, resume, front.

No published measurement exists for a chip that does not exist, so the checks here are invariants
(named so): a variant equal to a catalog system answers as the planner does on that system, more
of a resource never costs more, the rows round-trip through Parquet with their units, a resumed run
recomputes nothing, and bad input is one sentence (exit 2). The planner's estimate itself is checked
against published measurements in test_plan.py / test_validate.py."""

import json
import math

import pytest
from typer.testing import CliRunner

pytest.importorskip("pyarrow")

import pyarrow.parquet as pq  # noqa: E402

import tokenmath as tm  # noqa: E402
from tokenmath import exploration as ex  # noqa: E402
from tokenmath.cli import app  # noqa: E402

runner = CliRunner()

SMALL = dict(model="qwen3-8b", base_chip="h100-sxm", input_tokens=1000, output_tokens=200,
             min_tokens_per_s_per_user=30)


def cli(*args):
    res = runner.invoke(app, ["explore", *args])
    return res.exit_code, res.stdout, res.stderr


def test_invariant_variant_equal_to_h200_answers_as_the_planner_on_h200(tmp_path, cat):
    """invariant: an H100 SXM with the H200's HBM (141 GB at 4.8 TB/s; catalog systems.toml) and price
    is an H200 SXM (same FLOP/s, NVLink, scale-out and power), so its point is the planner's best on
    the catalog H200 at the same SLO — the same $/Mtok, tokens/s per chip, layout and batch."""
    h200 = cat.system("h200-sxm")
    r = tm.explore(**SMALL, vary=[f"hbm_bytes={h200.chip.hbm_bytes}", f"hbm_bytes_per_s={h200.chip.hbm_bytes_per_s}",
                                  f"usd_per_chip_hour={h200.usd_per_chip_hour}"], out=tmp_path / "a.parquet")
    assert r.points == 1 and r.feasible == 1
    row = pq.read_table(tmp_path / "a.parquet").to_pylist()[0]
    from tokenmath.plan import plan

    p = plan(cat.model("qwen3-8b"), [h200], input_tokens=1000, output_tokens=200, min_tokens_per_s_per_user=30)
    assert row["usd_per_mtok"] == pytest.approx(p.best.usd_per_mtok, rel=1e-9)
    assert row["tokens_per_s_per_chip"] == pytest.approx(p.best.tokens_per_s_per_chip, rel=1e-9)
    assert (row["tp"], row["ep"], row["pp"], row["batch"]) == (p.best.tp, p.best.ep, p.best.pp, p.best.batch)
    # the bound beside it is the plan's bound of the same deployment
    assert row["roofline_usd_per_mtok"] == pytest.approx(p.roofline["usd_per_mtok"], rel=1e-9)
    assert row["roofline_usd_per_mtok"] <= row["usd_per_mtok"]
    assert row["usd_per_mtok_lo"] <= row["usd_per_mtok"] <= row["usd_per_mtok_hi"]


def test_invariant_more_hbm_bandwidth_never_costs_more(tmp_path):
    """invariant: the same deployments on a chip with more HBM bandwidth (everything else equal) step no
    slower, so the cheapest one meeting the SLO costs no more and the front is monotone."""
    r = tm.explore(model="deepseek-v3", base_chip="h100-sxm", vary=["hbm_bytes_per_s=3.35e12:13.4e12:4"],
                   input_tokens=2000, output_tokens=500, min_tokens_per_s_per_user=50, out=tmp_path / "b.parquet")
    rows = sorted(pq.read_table(tmp_path / "b.parquet").to_pylist(), key=lambda x: x["hbm_bytes_per_s"])
    cost = [x["usd_per_mtok"] for x in rows]
    assert all(x["feasible"] for x in rows)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(cost, cost[1:])), cost
    assert cost[-1] < cost[0]  # and it does matter: DeepSeek-V3 decode on an H100 reads HBM
    assert all(x["roofline_usd_per_mtok"] <= x["usd_per_mtok"] for x in rows)
    assert all(x["joules_per_token"] > 0 for x in rows)
    assert {x["binding"] for x in rows} <= {p[:-2] for p in ex.PARTS}


def test_invariant_parquet_units_schema_and_json_contract(tmp_path):
    """invariant: every column of the Parquet parts carries its unit; --json carries the contract's keys
    (points, out, seconds, pareto) and equals tokenmath.explore(...).to_dict() but for timings."""
    out = tmp_path / "c.parquet"
    code, stdout, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--vary",
                               "scaleup_bytes_per_s=225e9,450e9", "--input-tokens", "1000", "--output-tokens", "200",
                               "--min-tokens-per-s-per-user", "30", "--out", str(out), "--json")
    assert code == 0, stderr
    d = json.loads(stdout)
    for k in ("points", "out", "seconds", "pareto"):
        assert k in d
    assert d["points"] == 2 and d["out"] == str(out) and d["pareto"]
    t = pq.read_table(out)
    units = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in t.schema}
    assert units["scaleup_bytes_per_s"] == "B/s"
    assert units["usd_per_mtok"].startswith("USD per million output tokens")
    assert units["joules_per_token"].startswith("J per output token")
    r = tm.explore(model="qwen3-8b", base_chip="h100-sxm", vary=["scaleup_bytes_per_s=225e9,450e9"],
                   input_tokens=1000, output_tokens=200, min_tokens_per_s_per_user=30, out=out)
    py = r.to_dict()
    for k in ("seconds", "points_per_s", "notes", "chunks_skipped"):
        py.pop(k), d.pop(k)
    assert py == d


def test_resume_skips_written_chunks_and_recomputes_a_missing_one(tmp_path):
    """A second run with the same arguments reads every chunk back (computes none); a chunk deleted
    in between is computed again, and the rows are the same."""
    out = tmp_path / "d.parquet"
    kw = dict(SMALL, vary=["hbm_bytes_per_s=2e12:4e12:3", "scaleup_chips=4,8"], out=out, memory_gb=0.5)
    first = tm.explore(**kw)
    key = lambda r: (r["hbm_bytes_per_s"], r["scaleup_chips"])  # noqa: E731
    rows_first = sorted(pq.read_table(out).to_pylist(), key=key)
    # 0.5 GB leaves (0.5 - 0.5) GB for rows with one worker: chunks of one point
    assert first.chunks == first.points == 6 and first.chunks_skipped == 0
    again = tm.explore(**kw)
    assert again.chunks_skipped == again.chunks == 6 and again.points == 6
    (out / "part-000002.parquet").unlink()
    third = tm.explore(**kw)
    assert third.chunks_skipped == 5
    rows = sorted(pq.read_table(out).to_pylist(), key=key)
    assert rows == rows_first
    assert third.pareto == first.pareto


def test_processes_scheduler_gives_the_same_rows(tmp_path):
    """--scheduler processes (a local process pool) writes the rows one process writes."""
    kw = dict(SMALL, vary=["hbm_bytes_per_s=2e12:4e12:4"])
    a = tm.explore(**kw, out=tmp_path / "one.parquet")
    b = tm.explore(**kw, out=tmp_path / "many.parquet", scheduler="processes")
    key = lambda r: r["hbm_bytes_per_s"]  # noqa: E731
    ra = sorted(pq.read_table(tmp_path / "one.parquet").to_pylist(), key=key)
    rb = sorted(pq.read_table(tmp_path / "many.parquet").to_pylist(), key=key)
    assert ra == rb and a.pareto == b.pareto


def test_plan_accepts_scheduler_processes():
    """`tokenmath plan --scheduler processes` runs the systems in a process pool: the same best."""
    res = runner.invoke(app, ["plan", "--model", "qwen3-8b", "--systems", "h100-sxm,a100-sxm-80gb", "--input-tokens",
                              "1000", "--output-tokens", "200", "--json"])
    par = runner.invoke(app, ["plan", "--model", "qwen3-8b", "--systems", "h100-sxm,a100-sxm-80gb", "--input-tokens",
                              "1000", "--output-tokens", "200", "--scheduler", "processes", "--json"])
    assert res.exit_code == 0 and par.exit_code == 0, par.stderr
    assert json.loads(res.stdout)["best"] == json.loads(par.stdout)["best"]


@pytest.mark.parametrize("args, words", [
    (["--vary", "hbm_bandwidth=1:2:3"], ["'hbm_bandwidth' is not a field", "hbm_bytes_per_s", "scaleup_chips"]),
    (["--vary", "hbm_bytes_per_s=1e12:2e12:1000", "--vary", "bf16_flops_per_s=1e14:1e15:1000",
      "--vary", "hbm_bytes=1e10:1e11:1001"], ["1,001,000,000 points", "at most 1,000,000,000"]),
    (["--vary", "hbm_bytes_per_s=-1e12,2e12"], ["--vary hbm_bytes_per_s", "must be >="]),
    (["--vary", "hbm_bytes_per_s=1e17"], ["must be at most"]),
    (["--vary", "scaleup_chips=2.5"], ["whole number"]),
    (["--vary", "hbm_bytes_per_s=1e12:2e12"], ["START:STOP:N"]),
    (["--vary", "hbm_bytes_per_s=1e12", "--vary", "hbm_bytes_per_s=2e12"], ["given twice"]),
    (["--memory-gb", "0.1"], ["--memory-gb", "cannot hold"]),
    (["--scheduler", "threads"], ["--scheduler = 'threads'"]),
])
def test_bad_input_is_one_sentence(tmp_path, args, words):
    code, stdout, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--out", str(tmp_path / "e.parquet"),
                               *args)
    assert code == 2, (stdout, stderr)
    text = " ".join(stderr.split())
    assert text.startswith("error:") and "Traceback" not in text
    for w in words:
        assert w in text, text
    assert not (tmp_path / "e.parquet").exists() or not list((tmp_path / "e.parquet").glob("part-*"))


def test_out_holding_another_exploration_is_refused(tmp_path):
    out = tmp_path / "f.parquet"
    tm.explore(**SMALL, vary=["hbm_bytes_per_s=3e12"], out=out)
    code, _, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--vary", "hbm_bytes_per_s=4e12",
                          "--input-tokens", "1000", "--output-tokens", "200", "--out", str(out))
    assert code == 2 and "holds another exploration" in stderr
    (tmp_path / "file.parquet").write_text("x")
    code, _, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--out", str(tmp_path / "file.parquet"))
    assert code == 2 and "is a file" in stderr


def test_invariant_heat_map_grid_is_the_rows(tmp_path):
    """invariant: read_grid's cells are the rows' $/Mtok at each pair of axis values."""
    out = tmp_path / "g.parquet"
    tm.explore(**SMALL, vary=["hbm_bytes_per_s=2e12,4e12", "bf16_flops_per_s=5e14,1e15,2e15"], out=out)
    xs, ys, grid = ex.read_grid(out, "hbm_bytes_per_s", "bf16_flops_per_s")
    assert grid.shape == (3, 2)
    for r in pq.read_table(out).to_pylist():
        i, j = list(ys).index(r["bf16_flops_per_s"]), list(xs).index(r["hbm_bytes_per_s"])
        assert grid[i, j] == r["usd_per_mtok"]
    assert all(math.isfinite(v) for v in grid.ravel())


def test_a_dask_cluster_address_gives_the_same_rows(tmp_path):
    """--scheduler tcp://HOST:PORT: the chunks run as Dask tasks on a running cluster (here one started
    in this test, on 127.0.0.1, in-process workers), their rows written here: the same rows, and a
    bounded number in flight (more chunks than 2 × workers)."""
    distributed = pytest.importorskip("distributed")
    kw = dict(SMALL, vary=["hbm_bytes_per_s=2e12:4e12:5"], memory_gb=0.5)
    a = tm.explore(**kw, out=tmp_path / "one.parquet")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        b = tm.explore(**kw, out=tmp_path / "dask.parquet", scheduler=cluster.scheduler_address)
    assert b.chunks == 5 and b.points == 5
    key = lambda r: r["hbm_bytes_per_s"]  # noqa: E731
    assert sorted(pq.read_table(tmp_path / "one.parquet").to_pylist(), key=key) == \
        sorted(pq.read_table(tmp_path / "dask.parquet").to_pylist(), key=key)
    assert a.pareto == b.pareto


def test_no_scheduler_answering_is_one_sentence(tmp_path):
    code, _, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--out", str(tmp_path / "h.parquet"),
                          "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "no Dask scheduler answered" in stderr
    assert not (tmp_path / "h.parquet").exists()  # nothing written: no folder left behind


def test_without_pyarrow_is_one_sentence(tmp_path, monkeypatch):
    """pyarrow is an optional extra: without it, explore says how to install it (exit 2), nothing else."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    code, _, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--out", str(tmp_path / "i.parquet"))
    assert code == 2 and "pip install 'tokenmath[explore]'" in stderr
    assert not (tmp_path / "i.parquet").exists()


def test_plot_needs_two_chip_axes_before_any_work(tmp_path):
    code, _, stderr = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--vary", "hbm_bytes_per_s=2e12,3e12",
                          "--out", str(tmp_path / "j.parquet"), "--plot", str(tmp_path / "j.png"))
    assert code == 2 and "two chip axes" in stderr
    assert not (tmp_path / "j.parquet").exists()


def test_invariant_speed_objective_is_never_slower_nor_cheaper_than_cost(tmp_path):
    """invariant: --objective speed picks, among the same deployments, the fastest per user, so per point
    it is at least as fast as --objective cost's pick and costs at least as much."""
    kw = dict(SMALL, vary=["hbm_bytes_per_s=2e12,4e12"])
    tm.explore(**kw, out=tmp_path / "cost.parquet")
    tm.explore(**kw, objective="speed", out=tmp_path / "speed.parquet")
    key = lambda r: r["hbm_bytes_per_s"]  # noqa: E731
    cost = sorted(pq.read_table(tmp_path / "cost.parquet").to_pylist(), key=key)
    speed = sorted(pq.read_table(tmp_path / "speed.parquet").to_pylist(), key=key)
    for c, s in zip(cost, speed):
        assert s["tokens_per_s_per_user"] >= c["tokens_per_s_per_user"]
        assert s["usd_per_mtok"] >= c["usd_per_mtok"] * (1 - 1e-12)
    assert any(s["tokens_per_s_per_user"] > 2 * c["tokens_per_s_per_user"] for c, s in zip(cost, speed))


def test_invariant_a_shared_search_gives_what_a_fresh_one_gives(tmp_path, cat):
    """invariant: points that differ only in price, board power or SLO share one planner search in a
    chunk (exploration._search); each row equals the row of a fresh search of that point (rel 1e-12)."""
    out = tmp_path / "k.parquet"
    tm.explore(model="qwen3-8b", base_chip="h100-sxm", input_tokens=1000, output_tokens=200,
               vary=["hbm_bytes_per_s=2e12,4e12", "usd_per_chip_hour=1,2.5", "power_w=500,900",
                     "min_tokens_per_s_per_user=20,60"], out=out)
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 16
    base, m = cat.system("h100-sxm"), cat.model("qwen3-8b")
    for r in rows:
        s = ex.variant(base, {k: r[k] for k in ("hbm_bytes_per_s", "usd_per_chip_hour", "power_w")})
        fresh = ex.evaluate_point(m, s, 1000.0, 200.0, r["min_tokens_per_s_per_user"])
        for k, v in fresh.items():
            assert r[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    # the price scales the cost and nothing else
    a = [r for r in rows if r["usd_per_chip_hour"] == 1 and r["power_w"] == 500]
    b = [r for r in rows if r["usd_per_chip_hour"] == 2.5 and r["power_w"] == 500]
    for x, y in zip(a, b):
        assert y["usd_per_mtok"] == pytest.approx(2.5 * x["usd_per_mtok"], rel=1e-12)
        assert y["tokens_per_s_per_chip"] == x["tokens_per_s_per_chip"]


def test_invariant_layout_axes_split_the_search(tmp_path, cat):
    """invariant: a layout axis (tp, ep, pp) keeps the planner's candidate layouts with that degree, so
    each feasible row runs that degree, the best over a TP axis that lists every candidate TP is the
    unrestricted point's answer (rel 1e-12), and a degree no candidate has (DeepSeek-V3 EP1 on an
    8-chip H100 domain: 671 GB of FP8 weights need more than one chip's expert slice) is an
    infeasible row, not an error."""
    kw = dict(model="deepseek-v3", base_chip="h100-sxm", input_tokens=2000, output_tokens=500,
              min_tokens_per_s_per_user=20)
    tm.explore(**kw, vary=["tp=1,2,4,8", "ep=1,8,16"], out=tmp_path / "lay.parquet")
    rows = pq.read_table(tmp_path / "lay.parquet").to_pylist()
    assert len(rows) == 12
    schema = pq.read_schema(next((tmp_path / "lay.parquet").glob("part-*")))
    assert str(schema.field("tp").type) == "int64" and schema.field("ep").metadata[b"meaning"].startswith(b"expert")
    feas = [r for r in rows if r["feasible"]]
    assert feas and all(r["deployments"] > 0 for r in feas)
    assert all(r["ep"] in (8, 16) for r in feas)
    assert not any(r["feasible"] for r in rows if r["ep"] == 1)
    assert all(r["deployments"] == 0 and r["infeasible"].startswith(("no deployment fits", "no candidate layout"))
               for r in rows if r["ep"] == 1)
    assert all(r["infeasible"] is None for r in feas)
    tm.explore(**kw, out=tmp_path / "all.parquet")
    best = pq.read_table(tmp_path / "all.parquet").to_pylist()[0]
    cheapest = min(feas, key=lambda r: r["usd_per_mtok"])
    assert cheapest["usd_per_mtok"] == pytest.approx(best["usd_per_mtok"], rel=1e-12)
    assert (cheapest["tp"], cheapest["ep"], cheapest["pp"]) == (best["tp"], best["ep"], best["pp"])
    code, _, err = cli("--model", "qwen3-8b", "--base-chip", "h100-sxm", "--vary", "tp=3.5",
                       "--out", str(tmp_path / "bad.parquet"))
    assert code == 2 and "whole number" in " ".join(err.split())


def test_invariant_an_unmet_slo_says_the_fastest_rate_reached(tmp_path):
    """invariant: a point no deployment serves at the SLO says why in `infeasible`, quoting the fastest
    tokens/s per user any deployment reached — the --objective speed answer of the same point."""
    kw = dict(model="qwen3-8b", base_chip="h100-sxm", input_tokens=1000, output_tokens=200)
    tm.explore(**kw, min_tokens_per_s_per_user=5000, out=tmp_path / "slo.parquet")
    row = pq.read_table(tmp_path / "slo.parquet").to_pylist()[0]
    assert not row["feasible"] and row["deployments"] > 0 and row["usd_per_mtok"] is None
    tm.explore(**kw, objective="speed", out=tmp_path / "fast.parquet")
    fast = pq.read_table(tmp_path / "fast.parquet").to_pylist()[0]
    assert row["infeasible"] == (f"no deployment reaches 5,000 tokens/s per user (the fastest: "
                                 f"{fast['tokens_per_s_per_user']:,.4g})")


def test_invariant_exploration_in_a_notebook(tmp_path):
    """invariant: the notebook view of an exploration — to_frame() holds every point written (the
    Parquet rows, resumed chunks included) and _repr_html_ names the count and the front."""
    pytest.importorskip("pandas")
    r = tm.explore(model="qwen3-8b", base_chip="h100-sxm", vary=["scaleup_bytes_per_s=225e9,450e9"],
                   input_tokens=1000, output_tokens=200, out=tmp_path / "n.parquet")
    frame = r.to_frame()
    assert len(frame) == r.points == 2
    assert "usd_per_mtok" in frame.columns and "scaleup_bytes_per_s" in frame.columns
    assert sorted(frame["scaleup_bytes_per_s"]) == [225e9, 450e9]
    html = r._repr_html_()
    assert "2 points" in html and "Pareto front" in html
