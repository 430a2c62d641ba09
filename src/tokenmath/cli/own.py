"""`tokenmath import | probe`: your own numbers — benchmark results as cases, this machine as a system."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import ForceOpt, write_output, Num, JsonOpt, CatalogOpt, command, _catalog, _finish, TokenmathError, si
from ..units import sig

FORMATS = ("vllm-bench", "sglang-bench", "genai-perf", "guidellm")


@command("import")
def import_cmd(
    files: Annotated[list[Path], typer.Argument(help="Result files the benchmark tool saved.")],
    fmt: Annotated[str, typer.Option("--format", help="vllm-bench | sglang-bench | genai-perf | guidellm")],
    model: Annotated[str, typer.Option("--model", help="Catalog model (or config.json) that was served.")],
    system: Annotated[str, typer.Option("--system", help="Catalog system it ran on.")],
    chips: Annotated[int, Num("--chips", help="Chips of the replica that was measured.")],
    tp: Annotated[Optional[int], Num("--tp", help="Tensor-parallel degree (default: --chips for a dense model; for a MoE model 1, with EP over --chips).")] = None,
    ep: Annotated[Optional[int], Num("--ep", help="Expert-parallel degree.")] = None,
    pp: Annotated[Optional[int], Num("--pp", help="Pipeline stages.")] = None,
    weight_dtype: Annotated[Optional[str], typer.Option("--weight-dtype", help="Weights as served (default: the checkpoint's).")] = None,
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV cache dtype as served.")] = "bf16",
    engine: Annotated[Optional[str], typer.Option("--engine", help="Engine profile the cases use (default: from the format).")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the cases (JSON lines) here.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False, catalog: CatalogOpt = None,
) -> None:
    """Turn vLLM / SGLang / genai-perf / guidellm result files into validation cases (time per output token, output tokens/s per chip, TTFT) for `validate` and `calibrate`."""
    from ..importer import import_results
    from ..units import check_dtype
    from ..validate import Case

    if fmt not in FORMATS:
        raise TokenmathError(f"--format = {fmt!r}; expected one of {', '.join(FORMATS)}")
    cat = _catalog(catalog)
    m, s = cat.model(model), cat.system(system)  # one sentence for an unknown name
    from ..parallelism import check_layout
    from ..validate import case_layout

    lay = case_layout(m, chips, tp, ep, pp)  # the layout validate will run: refused here as `layout` would
    check_layout(m, s, lay)
    if chips % lay.replica_chips:
        raise TokenmathError(f"--chips = {chips} is not a whole number of {lay.describe()} replicas of {lay.replica_chips}"
                             " chips; give the chips of the replica measured and its --tp/--ep/--pp")
    cases = import_results([str(f) for f in files], fmt, model=m.name, system=s.name, chips=chips, tp=tp, ep=ep, pp=pp,
                           weight_dtype=None if weight_dtype is None else check_dtype(weight_dtype),
                           kv_dtype=check_dtype(kv_dtype), engine=engine)
    from pydantic import ValidationError

    for c in cases:  # every case in the shipped format, its numbers in physical ranges, or one sentence
        try:
            Case(**c)
        except ValidationError as e:
            bad = e.errors()[0]
            field = ".".join(str(x) for x in bad.get("loc", ()))
            raise TokenmathError(f"the result files give case {str(c.get('id'))[:100]!r} a field {field!r} the case format"
                                 f" refuses: {bad.get('msg', '').removeprefix('Value error, ')}") from None
    if out is not None:
        write_output(out, "".join(json.dumps(c) + "\n" for c in cases), "--out", force=force)
    rec = {"format": fmt, "files": [str(f) for f in files], "cases": cases, "out": None if out is None else str(out)}
    lines = [f"{len(cases)} cases from {len(files)} file(s) ({fmt}), {m.name} on {chips} × {s.name}"
             + (f" -> {out}" if out else "")]
    for c in cases:
        lines.append(f"  {c['id']}: {c['metric']} = {sig(c['measured'], 6)} (batch {c.get('batch') or '-'},"
                     f" {c['input_tokens']:,.0f} in / {c['output_tokens']:,.0f} out)")
    if out is not None:
        lines.append(f"  next: tokenmath validate {out}; tokenmath calibrate {out} --out my-preset.json")
    _finish(json_, rec, lines)


@command("probe")
def probe_cmd(
    out: Annotated[Optional[Path], typer.Option("--out", help="Write this machine as a catalog system (TOML for --catalog).")] = None,
    name: Annotated[str, typer.Option("--name", help="System name in the TOML.")] = "this-machine",
    seconds: Annotated[float, Num("--seconds", help="Time budget of the measurement (0.1–60 s).")] = 2.0,
    decode: Annotated[Optional[Path], typer.Option("--decode", help="A Hugging Face config.json: time real decode steps of it, randomly initialised (needs torch + transformers).")] = None,
    cases_out: Annotated[Optional[Path], typer.Option("--cases-out", help="With --decode: write the timed steps as validation cases here.")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Measure this machine's sustained memory bandwidth and matmul FLOP/s by dtype (numpy on the CPU; PyTorch on a GPU when installed) and write it as a catalog system."""
    from .. import probe as pr

    if decode is not None:  # refuse before measuring anything
        if out is None:
            raise TokenmathError("--decode needs --out: its cases run on the system --out writes")
        import importlib.util

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            raise TokenmathError("probe --decode needs PyTorch and transformers: pip install 'tokenmath[probe]'")
        from ..hf import load_config

        load_config(decode)  # a config.json that cannot be read is refused before measuring anything
    r = pr.probe(seconds=seconds)
    rec = {"device": r.device, "memory_bytes_per_s": r.memory_bytes_per_s, "flops_per_s": dict(r.flops_per_s),
           "memory_bytes": r.memory_bytes, "system": name if out is not None else None}
    lines = [f"{r.device}: memory {si(r.memory_bytes_per_s, 'B/s')} sustained, "
             + ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in r.flops_per_s.items()) + f"; {si(r.memory_bytes, 'B')} memory"]
    if out is not None:
        import tempfile

        toml = pr.system_toml(r, name)
        with tempfile.TemporaryDirectory() as tmp:  # it loads, or one sentence says why, before it is written
            trial = Path(tmp) / "system.toml"
            trial.write_text(toml, encoding="utf-8")
            _catalog([trial]).system(name)
        write_output(out, toml, "--out", force=force)
        rec["toml"] = str(out)
        lines.append(f"  wrote {out}: use it as --catalog {out} --system {name}")
    if decode is not None:
        cases = pr.probe_decode(decode, system=name)
        rec["decode_cases"] = cases
        for c in cases:
            lines.append(f"  decode step, batch {c['batch']:,.0f} at {c['input_tokens']:,.0f} tokens: {sig(c['measured'] * 1e3, 3)} ms")
        if cases_out is not None:
            write_output(cases_out, "".join(json.dumps(c) + "\n" for c in cases), "--cases-out", force=force)
            lines.append(f"  wrote {cases_out}: tokenmath validate {cases_out} --catalog {out} --efficiency roofline")
    _finish(json_, rec, lines)
