"""The example notebook (docs/notebook.ipynb) runs from top to bottom, so it cannot rot: the lecture's
running example through the facade (tm.step, tm.curve, tm.energy, tm.tco, tm.plan) and one fleet sized
from requests (tm.fleet). Its cells assert what they claim (the bound is a floor of the estimate, the
verified fleet meets its SLOs); this test checks that every cell ran and that results display as
tables and charts. CI installs nbclient and ipykernel (the dev extra) and never skips it."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"


def _need(module: str):
    if os.environ.get("CI"):
        return __import__(module)
    return pytest.importorskip(module)


def test_example_notebook_runs(tmp_path):
    nbformat = _need("nbformat")
    nbclient = _need("nbclient")
    _need("ipykernel")
    _need("pandas")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the notebook is stored without outputs (they would go stale); clear them before committing"
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert {"text/html", "image/png"} <= kinds, kinds  # results as tables, the curve as a chart
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for said in ("roofline bound", "B* = ", "J per token", "tokens/s per user", "simulated TTFT p99"):
        assert said in text, said
