"""Start-up invariants (issue 13): `tokenmath --help` imports none of the heavy libraries, and the built-in
catalog's fast path (no pydantic) gives the same catalog as the validated path. Not timed: the figures are
in benchmarks/bench_startup.py."""

import dataclasses
import subprocess
import sys

from tokenmath import catalog as cat_mod
from tokenmath.catalog import schema

HEAVY = ("matplotlib", "pydantic", "scipy", "streamlit", "numpy", "pandas", "dask")

PROBE = """
import sys
sys.argv = ["tokenmath", "--help"]
import tokenmath.cli
try:
    tokenmath.cli.main()
except SystemExit as e:
    assert e.code in (0, None), e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("HEAVY", ",".join(heavy))
"""


def test_help_imports_no_heavy_library():
    res = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], capture_output=True, text=True, check=True)
    assert "Commands" in res.stdout  # the help was printed
    assert res.stdout.strip().splitlines()[-1] == "HEAVY", res.stdout.strip().splitlines()[-1]


def test_probe_sees_a_heavy_import():
    """The probe can fail: importing the core (numpy) is seen."""
    probe = PROBE.replace("import tokenmath.cli\n", "import tokenmath.cli, tokenmath.roofline\n")
    res = subprocess.run([sys.executable, "-c", probe % (HEAVY,)], capture_output=True, text=True, check=True)
    assert "numpy" in res.stdout.strip().splitlines()[-1]


def test_builtin_catalog_without_pydantic_equals_the_validated_one():
    files = tuple(str(p) for p in cat_mod.BUILTIN_FILES)
    fast = cat_mod._load(files, trusted=frozenset(files))
    checked = cat_mod._load(files)  # every table through the pydantic models of catalog/schema.py
    assert fast.models and fast.systems and fast.prices and fast.storage
    assert repr(fast) == repr(checked)  # repr: also tells 1 from 1.0


def test_row_dataclasses_declare_the_pydantic_fields():
    """The fast path's rows and the pydantic models: the same fields, the same defaults."""
    for section, row in cat_mod._ROWS.items():
        ours = {}
        for f in dataclasses.fields(row):
            if f.default is not dataclasses.MISSING:
                ours[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                ours[f.name] = f.default_factory()
            else:
                ours[f.name] = "required"
        theirs = {k: "required" if v.is_required() else v.get_default(call_default_factory=True)
                  for k, v in schema.TABLES[section].model_fields.items()}
        assert ours == theirs, section


def test_load_catalog_of_builtin_files_needs_no_pydantic():
    probe = ("import sys; from tokenmath.catalog import load_catalog; c = load_catalog(); "
             "assert c.model('deepseek-v3') and c.system('gb200-nvl72'); print('pydantic' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
