"""Fit the power model's k_compute and k_memory (energy.py) on measured GPU power during LLM serving
and write them to src/tokenmath/catalog/energy.toml [power_fit].

The fit points are two ML.ENERGY leaderboard v3 measurements of Llama-3.1-8B on one H100 under vLLM
(validation/energy_cases.jsonl): batch 8 (486.4 W) and batch 512 (688.3 W). At each, the busy
shares u_c, u_m come from tokenmath's own estimate (energy.busy_shares) at the case's batch and a
decode context of half its mean output (ML.ENERGY publishes no prompt lengths: an assumption of the
fit, stated in energy.toml). Two equations, two unknowns:

    (P − P_idle) / (P_board − P_idle) = k_c · u_c + k_m · u_m

Run: .venv/bin/python scripts/fit_power.py   (tests/test_energy.py checks the stored values refit exactly)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "src/tokenmath/validation/energy_cases.jsonl"
TOML = ROOT / "src/tokenmath/catalog/energy.toml"
FIT_IDS = ("mlenergy-v3-llama-3.1-8b-h100-x1-mns8-power", "mlenergy-v3-llama-3.1-8b-h100-x1-mns512-power")


def fit() -> tuple[float, float]:
    import tokenmath as tm
    from tokenmath import energy as en

    cat = tm.load_catalog()
    rows = {json.loads(x)["id"]: json.loads(x) for x in CASES.read_text().splitlines() if x.strip()}
    A, y = [], []
    for cid in FIT_IDS:
        c = rows[cid]
        m, s, su = cat.model(c["model"]), cat.system(c["system"]), c["setup"]
        idle, board = en.idle_and_board(s)
        u_c, u_m, _ = en.busy_shares(m, s, batch=su["batch"], context=su["output_tokens"] / 2, chips=su["chips"],
                                     tp=su["tp"], ep=su.get("ep", 1))
        A.append([u_c, u_m])
        y.append((c["value"] / su["chips"] - idle) / (board - idle))
    k_c, k_m = np.linalg.solve(np.array(A), np.array(y))
    return float(k_c), float(k_m)


def main() -> None:
    k_c, k_m = fit()
    section = (f"[power_fit]\nk_compute = {k_c:.6f}\nk_memory = {k_m:.6f}\n"
               f'source = "scripts/fit_power.py on ML.ENERGY v3 H100 Llama-3.1-8B batch 8 and 512 (validation/energy_cases.jsonl: '
               f'{", ".join(FIT_IDS)}); decode context = half the mean output (no prompt lengths published)"\n')
    text = TOML.read_text(encoding="utf-8")
    text = re.sub(r"\[power_fit\]\n(?:[^\[]*\n)?", "", text).rstrip() + "\n\n" + section
    TOML.write_text(text, encoding="utf-8")
    print(f"k_compute = {k_c:.6f}, k_memory = {k_m:.6f} -> {TOML.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
