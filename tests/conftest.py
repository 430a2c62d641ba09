import os

# The suite runs one pytest-xdist worker per CPU: BLAS thread pools in every worker would oversubscribe
# the cores (and spin), so each worker's BLAS runs on one thread, as the CLI's does. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

import tokenmath as tm


@pytest.fixture(scope="session")
def cat():
    return tm.load_catalog()


@pytest.fixture(scope="session")
def ds3(cat):
    return cat.model("deepseek-v3")


def cli_json(*args):
    """Run `tokenmath ARGS --json` in-process; insist on exit 0 and return the parsed object."""
    import json

    from typer.testing import CliRunner

    from tokenmath.cli import app

    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)
