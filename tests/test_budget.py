"""experiments.budget: the end-to-end table from bounds_check's rows (no training)."""

import argparse
import json
import os

import numpy as np
import pandas as pd
import pytest

from experiments import budget


def _rows(seed, n, b3, b3p):
    cfg = {
        "channel": "attenuate",
        "t": 0.0,
        "method": "cmc",
        "seed": seed,
        "n_labels": n,
        "student_features": "normalized",
        "err_B": 0.10,
        "distill_pop_loss": 0.58,
    }
    rows = [
        ("B5n", 2.0, 1.5, {}),
        ("B4n", 1.7, 0.6, {}),
        ("B1a", 0.097, 0.097, {}),
        ("B1b", 0.36, 0.10, {}),
        ("B2_sample", 1.2, 0.10, {}),
        ("B2_data_free", 1.0, 0.10, {}),
        ("B3", b3, 0.10, {"measured_stochastic": 0.12}),
        ("B3p", b3p, 0.10, {"measured_stochastic": 0.11}),
        ("probe", 0.39, 0.10, {"attained_by": "B3"}),
        ("floor", 0.097, 0.10, {}),
    ]
    return [{**cfg, "bound": b, "value": v, "measured": m, **extra} for b, v, m, extra in rows]


def test_budget_table_parts_ratios_and_no_total(tmp_path):
    df = pd.DataFrame(
        _rows(0, 1000, 0.5, 0.4)
        + _rows(1, 1000, 0.3, 0.44)
        + [dict(r, student_features="raw") for r in _rows(0, 1000, 0.1, 0.1)]
    )
    tab = budget.table(df)
    by = tab.set_index("bound")
    assert list(tab["bound"]) == [
        "B5n",
        "B4n",
        "B1a",
        "B1b",
        "B2",
        "B3 L(Q)",
        "B3 2L(Q)",
        "certificate",
    ]
    # raw-feature rows are not the default world's pipeline: ignored
    assert (tab["seeds"] == 2).all()
    # B2: the smaller form; B3: per seed the smaller form, its own stochastic error
    assert by.loc["B2", "value"] == 1.0 and by.loc["B2", "attained_by"] == "B2_data_free"
    assert by.loc["B3 L(Q)", "value"] == pytest.approx(np.median([0.2, 0.15]))
    assert by.loc["B3 L(Q)", "measured"] == pytest.approx(np.median([0.11, 0.12]))
    assert by.loc["B3 L(Q)", "ratio"] == pytest.approx(np.median([0.2 / 0.11, 0.15 / 0.12]))
    assert by.loc["B3 L(Q)", "measured_deterministic"] == 0.10
    assert by.loc["B4n", "measured_deterministic"] == 0.58 and by.loc["B4n", "unit"] == "nats"
    assert by.loc["B2", "vacuous"] and not by.loc["B1b", "vacuous"]
    assert (tab["target_error"] == 0.10).all() and (tab["bayes_floor"] == 0.097).all()
    assert not tab["part"].str.contains("total").any()
    args = argparse.Namespace(
        out_dir=str(tmp_path / "r"), fig_dir=str(tmp_path / "f"), quick=True, seeds=2
    )
    os.makedirs(args.out_dir), os.makedirs(args.fig_dir)
    budget.write(df, args)
    meta = json.loads((tmp_path / "r" / "budget.json").read_text())
    assert meta["findings"]["B3 L(Q)@n=1000"]["unit"] == "0-1"
    assert os.path.getsize(tmp_path / "f" / "budget.png") > 1000
