"""Properties over the whole catalog (hypothesis): monotone step times, no NaN/inf anywhere."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenmath as tm
from tokenmath.report import step_record, jsonable
from tokenmath.specs import Dtypes

CAT = tm.load_catalog()
MODELS = sorted(CAT.models)
SYSTEMS = sorted(CAT.systems)
DTYPES = ["bf16", "fp8", "fp4", "mxfp4", "int8"]


def usable(system_name, weight):
    s = CAT.system(system_name)
    try:
        s.compute_class_for(weight or "bf16")
        return True
    except tm.TokenmathError:
        return False


cases = st.tuples(st.sampled_from(MODELS), st.sampled_from(SYSTEMS), st.sampled_from([None] + DTYPES),
                  st.sampled_from(["bf16", "fp8"]), st.integers(1, 512))


@settings(max_examples=150, deadline=None)
@given(cases, st.floats(1, 1e6), st.floats(1, 10), st.floats(0, 2e6), st.floats(0, 10), st.integers(1, 4096))
def test_step_monotone_in_batch_and_context(case, b, b_factor, L, L_factor, S):
    name, sysname, weight, kv, chips = case
    if not usable(sysname, weight or CAT.model(name).weight_dtype):
        return
    m, s, dt = CAT.model(name), CAT.system(sysname), Dtypes(weight=weight, kv=kv)
    for fetch in ("all", "expected"):
        base = tm.step_time(m, s, b, L, S, chips=chips, dtypes=dt, expert_fetch=fetch)
        more_b = tm.step_time(m, s, b * b_factor, L, S, chips=chips, dtypes=dt, expert_fetch=fetch)
        more_l = tm.step_time(m, s, b, L + L * L_factor, S, chips=chips, dtypes=dt, expert_fetch=fetch)
        assert more_b.step_s >= base.step_s * (1 - 1e-12)
        assert more_l.step_s >= base.step_s * (1 - 1e-12)


@settings(max_examples=150, deadline=None)
@given(cases, st.floats(1, 1e7), st.floats(0, 1e7), st.integers(1, 100_000))
def test_no_nan_or_inf_for_valid_inputs(case, b, L, S):
    name, sysname, weight, kv, chips = case
    if not usable(sysname, weight or CAT.model(name).weight_dtype):
        return
    st_ = tm.step_time(CAT.model(name), CAT.system(sysname), b, L, S, chips=chips, dtypes=Dtypes(weight=weight, kv=kv),
                       usd_per_chip_hour=2.0)
    rec = jsonable(step_record(st_))  # raises on NaN/inf
    for k, v in rec.items():
        if isinstance(v, float):
            assert math.isfinite(v), k
    assert st_.bound in ("compute", "memory", "network")


def test_vectorised_sweep_has_no_nan():
    m, s = CAT.model("gpt-oss-120b"), CAT.system("h100-sxm")
    st_ = tm.step_time(m, s, np.geomspace(1, 1e6, 200), np.geomspace(1, 1e7, 300)[:, None], chips=8)
    for field in ("step_s", "mfu", "mbu", "usd_per_mtok", "tokens_per_s"):
        assert np.all(np.isfinite(getattr(st_, field))), field
