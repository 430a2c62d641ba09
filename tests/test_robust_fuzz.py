"""Issue 24: a seeded fuzz over every file kind and every command, in the suite (the larger campaign
is scripts/fuzz_campaign.py; its figures are in docs/cli.md). Invariants of the CLI's contract:
every hostile file is read or refused in one sentence (TokenmathError), every command line ends in
exit 0 or one `error:` line with exit 2 (or click's usage message), never a traceback, and no file
changes but the outputs the line names."""

from __future__ import annotations

import importlib.util
import os
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenmath import TokenmathError
from tokenmath.cli import app

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_campaign", ROOT / "scripts" / "fuzz_campaign.py")
fc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fc)
SEED = 24


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    sb = tmp_path_factory.mktemp("fuzz")
    corpus = fc.build_corpus(sb, SEED, per_kind=2)
    fc.make_outputs(sb)
    return sb, corpus


def _read(kind: str, path: Path):
    """The reader each kind of file goes through (the same functions the commands call)."""
    from tokenmath import profiles
    from tokenmath.catalog import load_catalog
    from tokenmath.hf import load_config, model_from_config
    from tokenmath.importer import import_results
    from tokenmath.validate import load_cases
    from tokenmath.workload import read_trace

    if kind == "config":
        return model_from_config(load_config(path))
    if kind == "toml":
        return load_catalog([path])
    if kind in ("csv", "jsonl"):
        return read_trace(path)
    if kind.startswith("bench:"):
        return import_results([str(path)], kind.split(":")[1], model="llama-3.1-8b", system="h100-sxm", chips=1)
    if kind == "cases":
        return load_cases(path)
    if kind == "preset":
        profiles._preset.cache_clear()
        return profiles.choose(str(path))
    raise ValueError(kind)


def test_fuzz_every_file_kind(sandbox):
    """Every file of the seeded corpus (mutants of a real file of each kind, and FIFOs, folders,
    /dev/zero, /proc/self/mem, links, sparse files past the limits) is read or refused in one
    sentence, each in bounded time."""
    sb, corpus = sandbox
    kinds = {k for k, _ in corpus}
    assert {"config", "toml", "csv", "jsonl", "cases", "preset"} <= kinds and sum(k.startswith("bench:") for k in kinds) == 4
    refused = 0
    t_all = time.perf_counter()
    for kind, rel in corpus:
        t0 = time.perf_counter()
        try:
            _read(kind, sb / rel)
        except TokenmathError as e:
            msg = str(e)
            assert msg and "Traceback" not in msg, (rel, msg)
            refused += 1
        assert time.perf_counter() - t0 < 10, rel
    assert refused > len(corpus) // 2  # the corpus is hostile: most files are refused
    assert time.perf_counter() - t_all < 60


def test_fuzz_every_command(sandbox, monkeypatch):
    """Four seeded command lines of every command (hostile values, inputs and outputs)."""
    sb, corpus = sandbox
    monkeypatch.chdir(sb)
    rng = random.Random(SEED)
    lines = fc.Lines(rng, corpus)
    runner = CliRunner()
    commands = [c for c, _ in lines.table]
    assert len(commands) >= 30
    for command in commands:
        for _ in range(4):
            args = lines.draw(command)
            if "--scheduler" in args:  # a local cluster takes seconds to start; the io tests cover it
                i = args.index("--scheduler")
                args[i + 1] = "tcp://127.0.0.1:1" if args[i + 1] == "local" else args[i + 1]
            before = fc.snapshot(sb)
            t0 = time.perf_counter()
            res = runner.invoke(app, args)
            r = {"code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr or "", "hwm_kb": 0, "binds": [],
                 "elapsed": time.perf_counter() - t0,
                 "exc": None if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)}
            bad = fc.classify(args, r, before, fc.snapshot(sb), sb, rss_limit_kb=1)
            assert set(bad) <= {"rss"}, (args, bad, r["stderr"][-500:], r["exc"])
            assert r["elapsed"] < 30, args


def test_invariant_campaign_counts_what_it_must():
    """The campaign's classifier finds each failure it counts (so its zeros mean something)."""
    base = {"code": 0, "stdout": "", "stderr": "", "exc": None, "hwm_kb": 10, "binds": [], "elapsed": 0.1}
    sb = Path("/sandbox")
    assert fc.classify(["x"], base, {}, {}, sb, 100) == []
    assert "internal" in fc.classify(["x"], base | {"code": 1, "stderr": "internal error: X"}, {}, {}, sb, 100)
    assert "traceback" in fc.classify(["x"], base | {"stderr": "Traceback (most"}, {}, {}, sb, 100)
    assert "not_one_line" in fc.classify(["x"], base | {"code": 2, "stderr": "error: a\nb"}, {}, {}, sb, 100)
    assert fc.classify(["x"], base | {"code": 2, "stderr": "Usage: x\nTry 'x --help'\n\nError: y"}, {}, {}, sb, 100) == []
    assert "rss" in fc.classify(["x"], base | {"hwm_kb": 101}, {}, {}, sb, 100)
    assert fc.classify(["x"], {"hang": True}, {}, {}, sb, 100) == ["hang"]
    assert "files" in fc.classify(["x"], base, {}, {"/sandbox/files/a.json": (1,)}, sb, 100)
    assert fc.classify(["x", "--out", "o.json"], base, {}, {"/sandbox/o.json": (1,)}, sb, 100) == []
    assert "files" in fc.classify(["x"], base, {}, {"/sandbox/out/.o.json.abc.tmp": (1,)}, sb, 100)
    assert "sockets" in fc.classify(["x"], base | {"binds": ["0.0.0.0"]}, {}, {}, sb, 100)
    assert "sockets" in fc.classify(["x"], base | {"binds": ["127.0.0.1"]}, {}, {}, sb, 100)
    assert fc.classify(["x", "--scheduler", "local"], base | {"binds": ["127.0.0.1"]}, {}, {}, sb, 100) == []
    assert os.path.sep == "/"
