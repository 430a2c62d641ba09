"""Fuzz campaign over the whole CLI (issue 24): hostile files into every reader, fuzzed flags into
every command, with the process watched for what a user must never see.

    .venv/bin/python scripts/fuzz_campaign.py --runs 10000 --files-per-kind 170 --seed 24 --workers 2

Phase 1 feeds every hostile file (config.json, catalog TOML, Azure CSV and JSON-lines traces,
benchmark results of the four formats, case files, presets; mutants of real files plus special files:
FIFOs, folders, /dev/zero, /proc/self/mem, sparse files past every size limit, dangling and looping
links) to the command that reads it. Phase 2 runs `--runs` command lines: every command, its required
options from a valid base, then 1-4 options set to adversarial values (numbers, names, enumerations,
hostile files as inputs, hostile names as outputs: existing files, links, folders, FIFOs, the input
itself, missing folders, 300-byte names). Phase 3 runs `--pipe-runs` of them through the installed
`tokenmath` program with stdout closed after 10 bytes (a closed pipe).

Each run happens in a worker process (in-process CliRunner, so the campaign is fast) that is killed
and counted as a hang past `--timeout-s`. Counted per run:
  internal     exit 1 with 'internal error', or an exception that escaped the command
  traceback    'Traceback' anywhere in stdout or stderr
  not_one_line an `error:` answer (exit 2) of more than one line
  other_exit   an exit code other than 0, 2 (and 141 for a closed pipe)
  hang         no answer within --timeout-s
  rss          the worker's peak resident memory in the run (VmHWM, reset before each run through
               /proc/self/clear_refs) above --rss-limit-mb
  files        a file in the sandbox created, changed or removed other than the outputs the run named
               (and their link targets with --force), or a temporary file left behind
  sockets      a socket bound in the run (audit hook 'socket.bind') on an address other than 127.0.0.1,
               or on any address by a command not given --scheduler local
Click's own usage errors (a missing required option: 'Usage: ... Error: ...', exit 2) are counted
apart (usage), not as failures: they come from the argument parser before any command runs.

The figures it prints are in docs/cli.md ("Fuzz campaign"); rerun it after changing a reader or a
writer. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tokenmath"
CONFIG = SRC / "catalog" / "configs" / "meta-llama--Meta-Llama-3.1-8B.json"
PRESET = SRC / "validation" / "calibrated.json"
CASES = SRC / "validation" / "cases" / "engines.jsonl"
TRACE_CSV = ROOT / "tests" / "data" / "traces" / "AzureLLMInferenceTrace_conv_head200.csv"
TRACE_JSONL = ROOT / "tests" / "data" / "traces" / "example.jsonl"
BENCH = {  # format -> a real result file of it (tests/data/bench/README.md says where each comes from)
    "vllm-bench": ROOT / "tests" / "data" / "bench" / "vllm_llama8b_c16.json",
    "sglang-bench": ROOT / "tests" / "data" / "bench" / "sglang_runs.jsonl",
    "genai-perf": ROOT / "tests" / "data" / "bench" / "profile_export_genai_perf.json",
    "guidellm": ROOT / "tests" / "data" / "bench" / "guidellm_benchmarks.json",
}
CATALOG_TOML = ('[systems.fz]\ndescription = "fuzz"\nchip = "fz"\nbf16_flops_per_s = 1e15\nhbm_bytes = 80e9\n'
                'hbm_bytes_per_s = 3e12\nscaleup_chips = 8\nscaleup_bytes_per_s = 4.5e11\nusd_per_chip_hour = 2.0\n'
                'source = "fuzz"\nas_of = "2026-01"\n')

NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e400", "-1e308", "1e-320", "5e-324", "0", "-0",
           "-0.0", "-1", "0.5", "1.5", "99999999999999999999", "１２", "١٢", "12\u00a0", "", " ", ",", "garbage", "1e",
           "--1", "1,000", "8k", "1.5M", "1e7", "1e8", "1" * 400, "0x10", "1_000", "½", "²", "+5", "1", "2", "8",
           "64", "4096", "1k", "32k", "1M", "0.3", "0.9", "2.5", "100", "1e6", "-5", "3.7e-9", "1e-9"]
# (no NUL: a program's arguments are C strings, so no shell can pass one; NUL bytes go into files instead)
JUNK = ["", " ", "-", "--", "-x", "--trust-remote-code", "x" * 300, "a\x01b", "../../etc/passwd", "é", "😀",
        "h100", "llama", "none", "null", "{}", "[]", "'", '"', "\\", "%s", "${HOME}", "*", "a,b", ",,", "\n", "\t"]
MODELS = ["llama-3.1-8b", "llama-3.1-70b", "deepseek-v3", "gpt-oss-120b", "mixtral-8x7b", "qwen3-8b"]
SYSTEMS = ["h100-sxm", "h200-sxm", "gb200-nvl72", "mi300x", "a100-sxm-80gb", "tpu-v5p"]
ENUMS = {
    "--over": ["batch", "context"], "--efficiency": ["calibrated", "roofline", "estimate"],
    "--engine": ["trtllm", "vllm", "sglang"], "--cost": ["rental", "tco"], "--expert-fetch": ["expected", "all"],
    "--sparse-mode": ["topk", "sqrt"], "--overlap": ["full", "none"], "--objective": ["cost", "chips", "energy"],
    "--schedule": ["gpipe", "1f1b", "interleaved", "zb-h1", "zero-bubble"], "--prefill": ["first", "chunked"],
    "--disaggregation": ["auto", "on", "off"], "--export": ["vllm", "sglang", "trtllm"],
    "--format": list(BENCH), "--recompute": ["none", "selective", "full", "reversible"],
    "--fit": ["hoffmann", "besiroglu"], "--dtype": ["bf16", "fp8", "fp4"], "--weight-dtype": ["bf16", "fp8", "fp4", "mxfp4"],
    "--kv-dtype": ["bf16", "fp8"], "--compute-dtype": ["bf16", "fp8"], "--weight-dtypes": ["fp8", "bf16,fp8", "fp4"],
    "--scheduler": ["tcp://127.0.0.1:1", "local", "", "not an address", "tcp://[::1]:x"],
    "--name": ["this-machine", "x y", "", "a" * 300, "[x]", "x.y"],
    "--host": ["127.0.0.1", "0.0.0.0", "", "::1", "bad host"],
}
NAME_OPTS = {"--model", "--system", "--systems", "--draft-model", "--models", "--price-sheet", "--hf-model"}
PATH_IN = {"--catalog", "--trace", "--decode", "--base"}
PATH_OUT = {"--plot", "--plot-energy", "--out", "-o", "--cases-out", "--plots"}
SKIP_COMMANDS = {("serve",)}  # starts a web server (a socket the user asks for); not fuzzed
# base arguments that make each command valid; {files} are filled from the corpus
BASE = {
    ("models",): [], ("systems",): [], ("model",): ["llama-3.1-8b"], ("system",): ["h100-sxm"],
    ("step",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("curve",): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--points", "8"],
    ("client",): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1", "--concurrency", "1,8"],
    ("balance",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("fastmode",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("traffic",): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--tokens-per-s", "1M"],
    ("prefill",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("layout",): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--tp", "8"],
    ("plan",): ["--model", "llama-3.1-8b", "--systems", "h100-sxm,h200-sxm"],
    ("bubble",): ["--schedule", "1f1b", "--pp", "4", "--microbatches", "8"],
    ("fleet",): ["--model", "llama-3.1-8b", "--request-rate", "2", "--input-tokens", "1000", "--output-tokens", "100",
                 "--systems", "h100-sxm", "--verify", "1"],
    ("energy",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("tco",): ["--system", "h100-sxm", "--capex-usd-per-chip", "25000"],
    ("import",): ["{bench}", "--format", "{format}", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1"],
    ("probe",): ["--seconds", "0.1"],
    ("validate",): ["{cases}", "--efficiency", "roofline"],
    ("calibrate",): ["{cases}", "--no-cv"],
    ("simulate",): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--duration-s", "30", "--rate", "2"],
    ("report",): ["--model", "llama-3.1-8b", "--system", "h100-sxm"],
    ("train", "time"): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--tokens", "1T"],
    ("train", "mfu"): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--tokens", "1T", "--chip-hours", "1M"],
    ("train", "overtrain"): ["--active-params", "100G", "--tokens-per-s", "50M", "--lifetime-days", "60"],
    ("train", "chinchilla"): ["--flops", "1e23"],
    ("train", "memory"): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "8", "--dp", "8"],
    ("prices", "sheets"): [], ("prices", "infer"): ["--input-usd-per-mtok", "3", "--output-usd-per-mtok", "15"],
    ("prices", "kv-from-tier"): ["--active-params", "100G", "--crossover-context", "200k", "--system", "h100-sxm"],
    ("prices", "tiers"): ["--system", "h100-sxm"],
    ("prices", "cache"): ["--model", "llama-3.1-8b", "--system", "h100-sxm", "--prompt-tokens", "10k", "--hold-s", "300"],
    ("prices", "long-context"): [],
}
SLOW = {("fleet",): 0.3, ("plan",): 0.5, ("probe",): 0.3, ("calibrate",): 0.5, ("report",): 0.6, ("validate",): 0.7}


# ---- the hostile-file corpus ------------------------------------------------------------------------


def _mutants(rng: random.Random, data: bytes, kind: str) -> list[tuple[str, bytes]]:
    """Mutations of a valid file's bytes: (name, bytes)."""
    text = data.decode("utf-8", "replace")
    out = [("empty", b""), ("blank", b"\n\n  \n"), ("binary", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000)))),
           ("utf16", text.encode("utf-16")), ("bom", b"\xef\xbb\xbf" + data), ("crlf", data.replace(b"\n", b"\r\n"))]
    cut = rng.randint(0, max(len(data) - 1, 0))
    out.append(("truncated", data[:cut]))
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        if flipped:
            flipped[rng.randrange(len(flipped))] = rng.getrandbits(8)
    out.append(("flipped", bytes(flipped)))
    pos = rng.randint(0, len(data))
    out.append(("nul", data[:pos] + b"\x00" + data[pos:]))
    out.append(("badutf8", data[:pos] + b"\xff\xfe\xc3" + data[pos:]))
    lines = data.splitlines(keepends=True)
    if lines:
        dup = list(lines)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(dup))
            op = rng.random()
            if op < 0.4:
                dup.insert(i, dup[i])
            elif op < 0.8 and len(dup) > 1:
                del dup[i]
            else:
                dup[i] = dup[i][::-1]
        out.append(("lines", b"".join(dup)))
    # a number replaced by an absurd one, a value replaced by another type
    import re

    nums = list(re.finditer(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", data))
    for j in range(3):
        if nums:
            m = rng.choice(nums)
            new = rng.choice([b"1e400", b"-1e400", b"NaN", b"Infinity", b"-0", b"5e-324", b"9" * 5000, b"-1", b"0",
                              b"1e308", b'"x"', b"null", b"[]", b"{}", b"true", b"1e30", b"0.000001", b"-7"])
            out.append((f"number{j}", data[:m.start()] + new + data[m.end():]))
    strs = list(re.finditer(rb'"[^"\n]{1,40}"', data))
    for j in range(2):
        if strs:
            m = rng.choice(strs)
            new = rng.choice([b'"' + b"x" * 100_000 + b'"', b"[1,2]", b"{}", b'""', b"123", b'"\\u0000"', b'"h100"'])
            out.append((f"string{j}", data[:m.start()] + new + data[m.end():]))
    depth = rng.choice([100, 1000, 50_000])
    if kind in ("config", "bench", "preset", "cases", "jsonl"):
        out.append(("deep", b"[" * depth + b"]" * depth))
        out.append(("deepobj", b'{"generic": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"))
        out.append(("wide", b"[" + b"1," * 200_000 + b"1]"))
        out.append(("list", b"[1, 2, 3]"))
        out.append(("string", b'"hello"'))
    if kind == "toml":
        out.append(("deep", b"x = " + b"[" * depth + b"]" * depth + b"\n"))
        out.append(("inline", b"x = {" + b"a = {" * 500 + b"}" * 500 + b"}\n"))
    if kind in ("csv", "jsonl"):
        out.append(("manylines", (b"TIMESTAMP,ContextTokens,GeneratedTokens\n" if kind == "csv" else b"") + b"\n" * 1_000_003))
    return out


def build_corpus(sandbox: Path, seed: int = 24, per_kind: int = 1) -> list[tuple[str, str]]:
    """(kind, path relative to `sandbox`) of hostile files written under sandbox/files: `per_kind`
    rounds of mutants of each kind's valid file, plus special files. Kinds: config, toml, csv, jsonl,
    bench:<format>, cases, preset. The same seed gives the same files."""
    rng = random.Random(seed)
    folder = sandbox / "files"
    folder.mkdir(parents=True, exist_ok=True)
    bases = {"config": CONFIG.read_bytes(), "toml": CATALOG_TOML.encode(), "csv": TRACE_CSV.read_bytes(),
             "jsonl": TRACE_JSONL.read_bytes(), "cases": b"".join(CASES.read_bytes().splitlines(keepends=True)[:6]),
             "preset": PRESET.read_bytes()}
    for fmt, p in BENCH.items():
        bases[f"bench:{fmt}"] = p.read_bytes()
    suffix = {"config": ".json", "toml": ".toml", "csv": ".csv", "jsonl": ".jsonl", "cases": ".jsonl", "preset": ".json"}
    out = []
    for kind, data in bases.items():
        sfx = suffix.get(kind) or BENCH[kind.split(":")[1]].suffix
        base_kind = "bench" if kind.startswith("bench") else kind
        stem = kind.replace(":", "_")
        names = {f"{stem}-valid{sfx}": data}
        for r in range(per_kind):
            for name, blob in _mutants(rng, data, base_kind):
                names[f"{stem}-{r}-{name}{sfx}"] = blob
        for name, blob in names.items():
            (folder / name).write_bytes(blob)
            out.append((kind, f"files/{name}"))
        # special files, each with the kind's suffix
        special = {f"{stem}-fifo{sfx}": "fifo", f"{stem}-dir{sfx}": "dir", f"{stem}-zero{sfx}": "/dev/zero",
                   f"{stem}-mem{sfx}": "/proc/self/mem", f"{stem}-dangling{sfx}": str(folder / "nowhere"),
                   f"{stem}-loop{sfx}": "loop", f"{stem}-sparse{sfx}": "sparse"}
        for name, what in special.items():
            p = folder / name
            if what == "fifo":
                os.mkfifo(p)
            elif what == "dir":
                p.mkdir()
            elif what == "loop":
                p.symlink_to(p)
            elif what == "sparse":
                with open(p, "wb") as f:
                    f.truncate(200_000_000)  # past every reader's limit; no disk used
            else:
                p.symlink_to(what)
            out.append((kind, f"files/{name}"))
    return out


def make_outputs(sandbox: Path) -> None:
    """The names outputs are fuzzed with: existing files, links, a folder, a FIFO (under sandbox/out)."""
    out = sandbox / "out"
    out.mkdir(exist_ok=True)
    (out / "existing.png").write_bytes(b"old chart")
    (out / "existing.json").write_text('{"old": true}')
    (out / "target.png").write_bytes(b"link target")
    (out / "target.json").write_text("link target")
    for name, to in (("link.png", "target.png"), ("link.json", "target.json"), ("dangling.png", "nowhere/x.png")):
        (out / name).symlink_to(to)
    (out / "dir.png").mkdir()
    os.mkfifo(out / "fifo.png")


def file_command(kind: str, p: str, rng: random.Random) -> list[str]:
    """The command line that reads a file of `kind` (a path relative to the sandbox)."""
    if kind == "config":
        return rng.choice([["model", p, "--json"], ["step", "--model", p, "--system", "h100-sxm"]])
    if kind == "toml":
        return rng.choice([["systems", "--catalog", p], ["step", "--model", "llama-3.1-8b", "--system", "fz", "--catalog", p]])
    if kind in ("csv", "jsonl"):
        return ["fleet", "--model", "llama-3.1-8b", "--trace", p, "--systems", "h100-sxm", "--ttft-p99-s", "5", "--verify", "1"]
    if kind.startswith("bench:"):
        return ["import", p, "--format", kind.split(":")[1], "--model", "llama-3.1-8b", "--system", "h100-sxm", "--chips", "1"]
    if kind == "cases":
        return rng.choice([["validate", p, "--efficiency", "roofline"], ["validate", p], ["calibrate", p, "--no-cv"]])
    if kind == "preset":
        return rng.choice([["step", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--efficiency", p],
                           ["validate", "files/cases-valid.jsonl", "--efficiency", p]])
    raise ValueError(kind)


# ---- fuzzed command lines ---------------------------------------------------------------------------


def command_table():
    """(command path, [(option, kind)]) for every command: kind is 'flag', 'number', 'path_in',
    'path_out', 'name', 'enum' or 'text'; arguments as ('ARG', name)."""
    import typer

    from tokenmath.cli import FLAGS, app

    table = []

    def walk(cmd, prefix):
        if hasattr(cmd, "commands"):
            for n, c in cmd.commands.items():
                walk(c, prefix + (n,))
            return
        if prefix in SKIP_COMMANDS:
            return
        opts = []
        for prm in cmd.params:
            if type(prm).__name__.endswith("Argument"):
                opts.append(("ARG", prm.name))
                continue
            o = prm.opts[0]
            if o == "-o":
                o = "-o"
            if getattr(prm, "is_flag", False):
                kind = "flag"
            elif o in FLAGS or prm.name in ("rate", "request_rate", "input_tokens", "output_tokens", "context", "batch",
                                            "tokens_per_s", "prompt_tokens", "demand", "prefix_tokens", "usd_per_chip_hour"):
                kind = "number"
            elif o in PATH_OUT:
                kind = "path_out"
            elif o in PATH_IN:
                kind = "path_in"
            elif o in NAME_OPTS:
                kind = "name"
            elif o in ENUMS:
                kind = "enum"
            else:
                kind = "text"
            opts.append((o, kind))
        table.append((prefix, opts))

    walk(typer.main.get_command(app), ())
    return table


class Lines:
    """Random command lines over every command, from a seed, with hostile files and names."""

    def __init__(self, rng: random.Random, corpus: list[tuple[str, str]]):
        self.rng, self.corpus = rng, corpus
        self.table = command_table()
        self.by_kind: dict[str, list[str]] = {}
        for k, p in corpus:
            self.by_kind.setdefault(k.split(":")[0], []).append(p)
        self.outputs = ["out/new.png", "out/new.svg", "out/new.json", "out/new.toml", "out/existing.png", "out/existing.json",
                        "out/link.png", "out/link.json", "out/dangling.png", "out/dir.png", "out/fifo.png",
                        "out/missing/x.png", "", ".", "out/" + "x" * 300 + ".png", "/dev/null", "/dev/full", "out/a\nb.png",
                        "out/plots", "out", "out/new.txt", "out/noext"]

    def value(self, opt: str, kind: str, inputs: list[str]) -> str:
        rng = self.rng
        if kind == "number":
            return rng.choice(NUMBERS) if rng.random() < 0.85 else rng.choice([f"{rng.uniform(-10, 10) * 10 ** rng.randint(-12, 20):g}", str(rng.randint(-10**9, 10**12))])
        if kind == "enum":
            return rng.choice(ENUMS[opt]) if rng.random() < 0.8 else rng.choice(JUNK)
        if kind == "name":
            r = rng.random()
            if r < 0.55:
                return rng.choice(SYSTEMS if "system" in opt else MODELS) if opt != "--systems" else ",".join(rng.sample(SYSTEMS, rng.randint(1, 3)))
            if r < 0.75 and opt in ("--model", "--draft-model"):
                return rng.choice(self.by_kind["config"])
            return rng.choice(JUNK)
        if kind == "path_in":
            pool = {"--catalog": "toml", "--trace": rng.choice(["csv", "jsonl"]), "--decode": "config", "--base": "preset"}[opt]
            return rng.choice(self.by_kind[pool]) if rng.random() < 0.85 else rng.choice(JUNK + ["out/existing.json"])
        if kind == "path_out":
            if inputs and rng.random() < 0.1:
                return rng.choice(inputs)  # the output named as one of the inputs
            return rng.choice(self.outputs)
        if kind == "text":
            return rng.choice(JUNK + NUMBERS[:10] + ["fp8", "bf16", "x"])
        raise ValueError(kind)

    def fill(self, base: list[str]) -> list[str]:
        out = []
        for a in base:
            if a == "{bench}":
                fmt = self.rng.choice(list(BENCH))
                out.append(f"files/bench_{fmt}-valid{BENCH[fmt].suffix}")
                self._fmt = fmt
            elif a == "{format}":
                out.append(getattr(self, "_fmt", "vllm-bench"))
            elif a == "{cases}":
                out.append(self.rng.choice(self.by_kind["cases"]) if self.rng.random() < 0.5 else "files/cases-valid.jsonl")
            else:
                out.append(a)
        return out

    def draw(self, command: tuple[str, ...] | None = None) -> list[str]:
        """A random command line (of `command` when given)."""
        rng = self.rng
        while True:
            prefix, opts = rng.choice(self.table)
            if command is not None:
                prefix, opts = next((c, o) for c, o in self.table if c == command)
                break
            if rng.random() < SLOW.get(prefix, 1.0):
                break
        args = list(prefix) + self.fill(BASE.get(prefix, []))
        inputs = [a for a in args if a.startswith("files/")]
        for _ in range(rng.randint(1, 4)):
            opt, kind = rng.choice(opts)
            if opt == "ARG":
                if kind in ("files",):
                    pool = "bench" if prefix == ("import",) else "cases"
                    args.insert(len(prefix), rng.choice(self.by_kind[pool]))
                elif kind == "name":
                    args.insert(len(prefix), rng.choice(MODELS + SYSTEMS + JUNK))
                elif kind == "sheet":
                    args.insert(len(prefix), rng.choice(["anthropic-claude-sonnet-4", "x", ""] + JUNK))
                continue
            if kind == "flag":
                if opt == "--dashboard" and rng.random() < 0.7:
                    continue
                args.append(opt)
            else:
                val = self.value(opt, kind, inputs)
                if opt == "--scheduler" and val == "local" and rng.random() < 0.8:
                    val = "tcp://127.0.0.1:1"  # a local cluster takes seconds to start: a few of them suffice
                args += [opt, val]
        if rng.random() < 0.3:
            args.append("--json")
        if rng.random() < 0.02:
            args.append("--no-such-option")
        return args


def outputs_of(args: list[str]) -> list[str]:
    """The outputs a command line names (what it may change), with their link targets."""
    out = []
    for i, a in enumerate(args[:-1]):
        if a in PATH_OUT:
            out.append(args[i + 1])
    return out


# ---- the worker: one run at a time, in-process ----------------------------------------------------------


def _worker(conn, sandbox: str):
    os.chdir(sandbox)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    binds: list = []

    def hook(event, args):
        if event == "socket.bind":
            try:
                binds.append(str(args[1][0]) if isinstance(args[1], tuple) else str(args[1]))
            except Exception:  # noqa: BLE001
                binds.append("?")

    sys.addaudithook(hook)
    from typer.testing import CliRunner

    from tokenmath.cli import app

    runner = CliRunner()
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        args = msg
        binds.clear()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        t0 = time.perf_counter()
        res = runner.invoke(app, args)
        elapsed = time.perf_counter() - t0
        hwm = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        exc = res.exception
        conn.send({"code": res.exit_code, "stdout": res.stdout[-3000:], "stderr": (res.stderr or "")[-3000:],
                   "exc": None if exc is None or isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"[:300],
                   "elapsed": elapsed, "hwm_kb": hwm, "binds": list(binds)})


class Pool:
    """Worker processes, each in its own sandbox folder (the same corpus in each)."""

    def __init__(self, sandboxes: list[Path]):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.sandboxes = sandboxes
        self.workers = [self._start(i) for i in range(len(sandboxes))]

    def _start(self, i: int):
        a, b = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(b, str(self.sandboxes[i])), daemon=True)
        p.start()
        a.recv()
        return [p, a]

    def run(self, i: int, args: list[str], timeout_s: float) -> dict:
        w = self.workers[i]
        w[1].send(args)
        if w[1].poll(timeout_s):
            return w[1].recv()
        w[0].kill()
        w[0].join()
        self.workers[i] = self._start(i)
        return {"hang": True}

    def close(self):
        for p, c in self.workers:
            try:
                c.send(None)
            except OSError:
                pass
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


# ---- checks -----------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):  # a folder changes its mtime when an allowed output appears in it
                snap[p] = (st.st_mode, st.st_ino)
            else:
                snap[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return snap


def allowed_changes(args: list[str], sandbox: Path) -> set[str]:
    ok = set()
    for o in outputs_of(args):
        if not o:
            continue
        p = o if os.path.isabs(o) else str(sandbox / o)
        ok.add(os.path.normpath(p))
        try:
            ok.add(os.path.realpath(p))
        except (OSError, ValueError):
            pass
    return ok


def classify(args, r: dict, before, after, sandbox: Path, rss_limit_kb: int) -> list[str]:
    """The failures of one run (empty: it held)."""
    if r.get("hang"):
        return ["hang"]
    bad = []
    text = r["stdout"] + r["stderr"]
    err = r["stderr"].strip()
    usage = err.startswith("Usage:") or "Try '" in err
    if r["exc"] is not None or "internal error" in err:
        bad.append("internal")
    if "Traceback" in text:
        bad.append("traceback")
    if r["code"] not in (0, 2):
        bad.append("other_exit")
    if r["code"] == 2 and not usage and len(err.splitlines()) != 1:
        bad.append("not_one_line")
    if r["hwm_kb"] > rss_limit_kb:
        bad.append("rss")
    ok = allowed_changes(args, sandbox)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    stray = {p for p in changed if not any(p == a or p.startswith(a + os.sep) for a in ok)}
    if stray or any(os.path.basename(p).startswith(".") and p.endswith(".tmp") for p in after):
        bad.append("files")
    local = "--scheduler" in args and args[args.index("--scheduler") + 1: args.index("--scheduler") + 2] == ["local"]
    for b in r["binds"]:
        if b not in ("127.0.0.1", "::1", "localhost") or not local:
            bad.append("sockets")
            break
    return bad


def run_campaign(runs: int, per_kind: int, seed: int, workers: int, timeout_s: float, rss_limit_mb: int,
                 pipe_runs: int, keep: bool) -> dict:
    import threading

    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="tokenmath-fuzz-"))
    t_start = time.time()
    repo_before = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    sandboxes = [root / f"w{w}" for w in range(workers)]
    for sb in sandboxes:
        corpus = build_corpus(sb, seed, per_kind)
        make_outputs(sb)
    lines = Lines(rng, corpus)
    jobs = [file_command(k, p, rng) for k, p in corpus] + [lines.draw() for _ in range(runs)]
    pool = Pool(sandboxes)
    counts: Counter = Counter()
    examples: dict[str, list] = {}
    stats = {"peak_kb": 0, "slowest": (0.0, None), "usage": 0, "done": 0}
    lock = threading.Lock()

    def share(w: int):
        sb = sandboxes[w]
        for i in range(w, len(jobs), workers):
            args = jobs[i]
            before = snapshot(sb)
            r = pool.run(w, args, timeout_s)
            after = snapshot(sb)
            bad = classify(args, r, before, after, sb, rss_limit_mb * 1024)
            with lock:
                for b in bad:
                    counts[b] += 1
                    if len(examples.setdefault(b, [])) < 5:
                        examples[b].append({"args": args, "result": {k: v for k, v in r.items() if k != "stdout"}})
                if not r.get("hang"):
                    if r["hwm_kb"] > stats["peak_kb"]:
                        stats["peak_kb"], stats["peak_run"] = r["hwm_kb"], args
                    if r["elapsed"] > stats["slowest"][0]:
                        stats["slowest"] = (r["elapsed"], args)
                    if r["code"] == 2 and r["stderr"].strip().startswith("Usage:"):
                        stats["usage"] += 1
                stats["done"] += 1
                if stats["done"] % 500 == 0:
                    print(f"  {stats['done']:,}/{len(jobs):,} runs, {time.time() - t_start:,.0f} s, {dict(counts)}",
                          file=sys.stderr, flush=True)

    threads = [threading.Thread(target=share, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()

    # phase 3: the installed program, stdout closed after 10 bytes
    pipe: Counter = Counter()
    exe = shutil.which("tokenmath", path=str(Path(sys.executable).parent)) or "tokenmath"
    for _ in range(pipe_runs):
        args = lines.draw()
        p = subprocess.Popen([exe, *args], cwd=sandboxes[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        p.stdout.read(10)
        p.stdout.close()
        try:
            _, err = p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pipe["hang"] += 1
            continue
        err = err.decode("utf-8", "replace")
        pipe[f"exit {p.returncode}"] += 1
        if "Traceback" in err or "internal error" in err or "BrokenPipe" in err or p.returncode not in (0, 2, 141):
            pipe["failures"] += 1
            if len(examples.setdefault("pipe", [])) < 5:
                examples["pipe"].append({"args": args, "code": p.returncode, "stderr": err[-500:]})
    repo_after = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    n_files = len(corpus)
    result = {
        "seed": seed, "hostile_files": n_files, "file_kinds": sorted({k for k, _ in corpus}),
        "fuzzed_runs": runs, "runs_total": len(jobs), "closed_pipe_runs": pipe_runs,
        "failures": {k: counts.get(k, 0) for k in ("internal", "traceback", "not_one_line", "other_exit", "hang", "rss",
                                                    "files", "sockets")},
        "repository_changed": repo_before != repo_after,
        "closed_pipe": dict(pipe), "usage_errors": stats["usage"], "peak_rss_mb": round(stats["peak_kb"] / 1024, 1),
        "peak_rss_run": stats.get("peak_run"),
        "rss_limit_mb": rss_limit_mb, "timeout_s": timeout_s,
        "slowest_run_s": round(stats["slowest"][0], 2), "slowest_run": stats["slowest"][1],
        "wall_s": round(time.time() - t_start, 1), "examples": examples,
    }
    if keep:
        result["sandbox"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="fuzzed command lines (phase 2)")
    ap.add_argument("--files-per-kind", type=int, default=6, help="rounds of mutants per file kind (phase 1)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=120.0, help="a run with no answer by then is a hang")
    ap.add_argument("--rss-limit-mb", type=int, default=1024, help="a run whose peak RSS passes this is unbounded")
    ap.add_argument("--pipe-runs", type=int, default=200, help="runs of the installed program into a closed pipe")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox folder")
    ap.add_argument("--json", dest="json_out", help="also write the figures to this file")
    a = ap.parse_args(argv)
    result = run_campaign(a.runs, a.files_per_kind, a.seed, a.workers, a.timeout_s, a.rss_limit_mb, a.pipe_runs, a.keep)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if a.json_out:
        Path(a.json_out).write_text(text)
    fails = sum(result["failures"].values()) + result["closed_pipe"].get("failures", 0) + result["closed_pipe"].get("hang", 0)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
