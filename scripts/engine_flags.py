"""Regenerate tests/data/engine_flags.json: the command-line flags (and, where the parser checks them,
the accepted values) of the serving engines that `tokenmath fleet --export` writes commands for.

    python scripts/engine_flags.py --vllm-wheel vllm-0.33.0-...whl --sglang-wheel sglang-0.5.23-...whl

The flags are read statically (Python's ast, nothing imported or run) from the engines' own argument
definitions inside their PyPI wheels, so the table is that version's parser:

  vLLM    vllm/engine/arg_utils.py (EngineArgs.add_cli_args: every add_argument name),
          vllm/entrypoints/common/cli_args.py (make_arg_parser's add_argument names; FrontendArgs and
          BaseFrontendArgs fields, each registered as --field-name), vllm/config/cache.py (CacheDType),
          vllm/model_executor/layers/quantization/__init__.py (QuantizationMethods, which
          vllm/config/model.py _verify_quantization checks --quantization against),
          vllm/config/kv_transfer.py (KVProducer / KVConsumer roles) and
          vllm/distributed/kv_transfer/kv_connector/factory.py (register_connector names).
  SGLang  sglang/srt/arg_groups/fields/*.py (ServerArgs' fields, each registered by
          add_cli_args_from_dataclass as --field-name or Arg(cli_name=...), with Arg(aliases=...), and
          skipped when Arg(no_cli=True)), sglang/srt/arg_groups/choices.py (the choice lists they name),
          sglang/srt/server_args.py (the add_argument calls of ServerArgs.add_cli_args).

TensorRT-LLM publishes no wheel on PyPI (its PyPI package is a stub that downloads from NVIDIA's own
index), so its entry was read by hand from the source (commits named in the file) and is kept as it is
when this script rewrites the file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "engine_flags.json"


def _tree(zf: zipfile.ZipFile, name: str) -> ast.Module:
    return ast.parse(zf.read(name).decode("utf-8"), filename=name)


def _strings(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _add_argument_names(tree: ast.AST, within: str | None = None) -> set[str]:
    """The option strings ("-x", "--foo") of every .add_argument(...) call (inside function `within`)."""
    roots = [tree]
    if within is not None:
        roots = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == within]
    out = set()
    for root in roots:
        for n in ast.walk(root):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument":
                for a in n.args:
                    if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("-"):
                        out.add(a.value)
    return out


def _literal_alias(tree: ast.AST, name: str) -> list:
    """The values of `name = Literal[...]` (nested Literal aliases in the same module are expanded)."""
    aliases = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            aliases[n.targets[0].id] = n.value
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value is not None:
            aliases[n.target.id] = n.value

    def values(node) -> list:
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            out = []
            for e in elts:
                out += [e.value] if isinstance(e, ast.Constant) else values(e)
            return out
        if isinstance(node, ast.Name) and node.id in aliases:
            return values(aliases[node.id])
        return []

    return values(aliases[name])


def _class_fields(tree: ast.AST, classes: tuple[str, ...]) -> list[str]:
    return [s.target.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name in classes
            for s in c.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            and not s.target.id.startswith("_")]


def vllm_entry(wheel: Path) -> dict:
    files = {
        "args": "vllm/engine/arg_utils.py",
        "frontend": "vllm/entrypoints/common/cli_args.py",
        "cache": "vllm/config/cache.py",
        "quant": "vllm/model_executor/layers/quantization/__init__.py",
        "kv": "vllm/config/kv_transfer.py",
        "factory": "vllm/distributed/kv_transfer/kv_connector/factory.py",
    }
    with zipfile.ZipFile(wheel) as zf:
        t = {k: _tree(zf, v) for k, v in files.items()}
    flags = _add_argument_names(t["args"], "add_cli_args") | _add_argument_names(t["frontend"], "make_arg_parser")
    flags |= {"--" + f.replace("_", "-") for f in _class_fields(t["frontend"], ("BaseFrontendArgs", "FrontendArgs"))}
    connectors = sorted({n.args[0].value for n in ast.walk(t["factory"]) if isinstance(n, ast.Call)
                         and getattr(n.func, "attr", None) == "register_connector" and n.args
                         and isinstance(n.args[0], ast.Constant)})
    roles = sorted(set(_literal_alias(t["kv"], "KVProducer") + _literal_alias(t["kv"], "KVConsumer")))
    return {
        "version": wheel.name.split("-")[1],
        "source": f"PyPI wheel {wheel.name} (sha256 {_sha256(wheel)})",
        "commands": {
            "vllm serve": {
                "files": sorted(files.values()),
                "positional": ["model_tag"],
                "flags": sorted(flags),
                "values": {
                    "--kv-cache-dtype": _literal_alias(t["cache"], "CacheDType"),
                    "--quantization": _literal_alias(t["quant"], "QuantizationMethods"),
                },
                "json_values": {"--kv-transfer-config": {"kv_connector": connectors, "kv_role": roles}},
            }
        },
    }


def _arg_call(ann) -> tuple[ast.Call | None, ast.AST | None]:
    """(the Arg(...) call or None, the type) of an A[T, ...] / Annotated[T, ...] annotation."""
    if not (isinstance(ann, ast.Subscript) and getattr(ann.value, "id", None) in ("A", "Annotated")):
        return None, None
    elts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
    for e in elts[1:]:
        if isinstance(e, ast.Call) and getattr(e.func, "id", None) == "Arg":
            return e, elts[0]
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            return ast.Call(func=ast.Name("Arg"), args=[], keywords=[]), elts[0]
    return None, elts[0]


def _literal_values(node) -> list | None:
    for n in ast.walk(node):
        if isinstance(n, ast.Subscript) and getattr(n.value, "id", None) == "Literal":
            elts = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            return [e.value for e in elts if isinstance(e, ast.Constant)]
    return None


def sglang_entry(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("sglang/srt/arg_groups/fields/") and n.endswith(".py"))
        fields = {n: _tree(zf, n) for n in names}
        choices_tree = _tree(zf, "sglang/srt/arg_groups/choices.py")
        server = _tree(zf, "sglang/srt/server_args.py")
    consts = {}
    for n in choices_tree.body:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) \
                and isinstance(n.value, (ast.List, ast.Tuple, ast.Set)):
            consts[n.targets[0].id] = [e.value for e in n.value.elts if isinstance(e, ast.Constant)]
    registered = set()  # the field classes ServerArgs collects: server_args.py `_INPUT_NAMESPACES = [...]`
    for n in server.body:
        target = n.targets[0] if isinstance(n, ast.Assign) and len(n.targets) == 1 else getattr(n, "target", None)
        if isinstance(target, ast.Name) and target.id == "_INPUT_NAMESPACES":
            registered = {e.id for e in n.value.elts if isinstance(e, ast.Name)}
    if not registered:
        raise SystemExit("sglang/srt/server_args.py has no _INPUT_NAMESPACES list; the layout changed")
    registered.add("ServerArgs")  # and the fields ServerArgs declares itself
    flags, values = set(), {}
    for tree in [*fields.values(), server]:
        for c in ast.walk(tree):
            if not isinstance(c, ast.ClassDef) or c.name not in registered:
                continue
            for s in c.body:
                if not (isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)):
                    continue
                call, typ = _arg_call(s.annotation)
                if call is None:
                    continue
                kw = {k.arg: k.value for k in call.keywords}
                if isinstance(kw.get("no_cli"), ast.Constant) and kw["no_cli"].value is True:
                    continue
                name = kw["cli_name"].value if isinstance(kw.get("cli_name"), ast.Constant) else \
                    "--" + s.target.id.replace("_", "-")
                opts = [name] + [e.value for e in getattr(kw.get("aliases"), "elts", []) if isinstance(e, ast.Constant)]
                flags |= set(opts)
                ch = kw.get("choices")
                vals = None
                if isinstance(ch, (ast.List, ast.Tuple)):
                    vals = [e.value for e in ch.elts if isinstance(e, ast.Constant)]
                elif isinstance(ch, ast.Name) and ch.id in consts:
                    vals = consts[ch.id]
                elif ch is None and typ is not None:
                    vals = _literal_values(typ)
                if vals is not None:
                    for o in opts:
                        values[o] = vals
    flags |= _add_argument_names(server, "add_cli_args")
    return {
        "version": wheel.name.split("-")[1],
        "source": f"PyPI wheel {wheel.name} (sha256 {_sha256(wheel)})",
        "commands": {
            "python -m sglang.launch_server": {
                "files": ["sglang/srt/server_args.py", "sglang/srt/arg_groups/choices.py"] + names,
                "flags": sorted(flags),
                "values": {k: values[k] for k in sorted(values)},
            }
        },
    }


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vllm-wheel", type=Path, required=True)
    ap.add_argument("--sglang-wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    old = json.loads(a.out.read_text(encoding="utf-8")) if a.out.exists() else {}
    data = {
        "_about": old.get("_about", ""),
        "vllm": vllm_entry(a.vllm_wheel),
        "sglang": sglang_entry(a.sglang_wheel),
        "trtllm": old.get("trtllm", {}),
    }
    a.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {a.out}: " + ", ".join(f"{e} {len(c['flags'])} flags" for e in ("vllm", "sglang")
                                          for c in data[e]["commands"].values()))


if __name__ == "__main__":
    main()
