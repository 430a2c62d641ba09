"""The core never imports a surface (DESIGN.md: report, plots, cli, web sit on top)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenmath"
CORE = ["units", "errors", "specs", "hf", "params", "kvcache", "roofline", "serving", "layout", "plan", "training", "prices", "validate", "simulate", "parallel", "catalog/__init__", "fleet", "workload", "export", "energy",
        "stepmodel", "profiles", "estimate"]
# plots.py draws and report.py formats: both may import the core, never the reverse
SURFACES = {"report", "plots", "cli", "web"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[-1] if node.level else node.module)
            for alias in node.names:
                names.add(alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name.split(".")[-1])
    return names


def test_core_does_not_import_surfaces():
    for mod in CORE:
        path = SRC / f"{mod}.py"
        assert path.is_file(), path
        bad = imported_modules(path) & SURFACES
        assert not bad, f"{mod} imports surface module(s) {bad}"


def test_public_api_is_small_and_importable():
    import tokenmath

    for name in tokenmath.__all__:
        assert hasattr(tokenmath, name), name
