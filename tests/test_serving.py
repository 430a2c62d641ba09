"""serving.py closed forms agree with brute force over the roofline step itself."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath.specs import Chip, Model, System

CAT = tm.load_catalog()
SYSTEMS = sorted(n for n, s in CAT.systems.items() if s.chip.bf16_flops_per_s and s.usd_per_chip_hour)


@st.composite
def random_pairs(draw):
    total = draw(st.floats(1e9, 2e12))
    active = total / draw(st.floats(1.0, 40.0))
    kv = draw(st.floats(1e3, 1e6))
    m = Model(name="rand", total_params_given=total, active_params_given=active, kv_bytes_per_token_given=kv)
    chip = Chip(name="c", hbm_bytes=draw(st.floats(16e9, 300e9)), hbm_bytes_per_s=draw(st.floats(5e11, 2e13)),
                bf16_flops_per_s=draw(st.floats(1e14, 5e15)))
    s = System(name="s", chip=chip, scaleup_chips=draw(st.sampled_from([1, 8, 72])),
               usd_per_chip_hour=draw(st.floats(0.5, 5.0)))
    return m, s


@settings(max_examples=60, deadline=None)
@given(random_pairs(), st.floats(0, 1e6))
def test_closed_forms_match_grid(pair, context):
    """B* from the formula = where compute time crosses memory time on a dense grid (the grid
    resolution, 0.1 %, is the tolerance); the cost floor = the grid's minimum cost."""
    m, s = pair
    grid = np.geomspace(1, 1e8, 20001)
    sweep = tm.step_time(m, s, grid, 0.0)
    cross = grid[np.argmax(sweep.compute_s >= sweep.memory_s)]
    assert tm.balance_batch(m, s) == pytest.approx(cross, rel=2e-3)

    bkv = tm.balance_batch_with_kv(m, s, context)
    sweep = tm.step_time(m, s, grid, context)
    if bkv is None:
        assert np.all(sweep.bound == "memory")
    elif bkv < 1e8 * 0.99 and bkv > 1:
        cross = grid[np.argmax(sweep.compute_s >= sweep.memory_s)]
        assert bkv == pytest.approx(cross, rel=2e-3)

    floor = tm.cost_floor_usd_per_mtok(m, s, context)
    assert np.min(sweep.usd_per_mtok) >= floor * (1 - 1e-9)
    assert np.min(sweep.usd_per_mtok) == pytest.approx(floor, rel=0.01)  # reached as B -> 1e8


def test_latency_floor_is_batch_one_weight_time():
    m, s = CAT.model("deepseek-v3"), CAT.system("gb200-nvl72")
    st1 = tm.step_time(m, s, 1, 0)
    assert tm.latency_floor_s(m, s) == pytest.approx(st1.weights_s, rel=1e-12)
    assert st1.step_s >= tm.latency_floor_s(m, s)


@pytest.mark.parametrize("name", SYSTEMS)
def test_batch_to_fill_hbm_fills_it(name):
    m, s = CAT.model("llama-3.1-70b"), CAT.system(name)
    n = tm.chips_to_fit(m, s, 1, 8192)
    b = tm.batch_to_fill_hbm(m, s, 8192, chips=n)
    if b >= 1:
        assert tm.step_time(m, s, b, 8192, chips=n).fits
    assert not tm.step_time(m, s, b + 1, 8192, chips=n).fits
