"""The examples run as a user runs them (README: "Certify your own run"), on small sizes."""

import importlib.util
import pathlib

import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_certify_mfeat_end_to_end_through_the_npz(tmp_path, capfd):
    """Train on mfeat, export the npz, certify it with the command line: every bound is listed
    with value, terms, delta and applicability; those that apply hold on the held-out rows."""
    ex = _load("certify_mfeat")
    assert ex.main(["--steps", "20", "--out-dir", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    report = pd.read_csv(tmp_path / "report.csv")
    expected = [
        "B2_sample",
        "B2_data_free",
        "B3",
        "B3p",
        "B4_data_free",
        "B4_sample",
        "B4n",
        "B5_data_free",
        "B5_sample",
        "B5n",
        "B1b",
        "TV_lower",
        "B1a",
        "floor",
        "probe",
    ]
    assert report["bound"].tolist() == expected
    for name in expected:
        assert name in out
    for col in (
        "bounds",
        "value",
        "empirical",
        "complexity",
        "confidence",
        "delta",
        "applicable",
        "reason",
        "vacuous",
        "holds",
    ):
        assert col in report
    applies = report[report["applicable"]]
    assert set(applies["bound"]) == {
        "B2_sample",
        "B2_data_free",
        "B3",
        "B3p",
        "B4_data_free",
        "B4_sample",
        "TV_lower",
        "probe",
    }
    assert applies["value"].notna().all() and applies["delta"].gt(0).all()
    checked = applies[applies["bound"] != "TV_lower"]
    assert checked["holds"].astype(bool).all()
    assert (report.loc[~report["applicable"], "reason"].str.len() > 10).all()
    assert report.loc[report["bound"] == "B2_sample", "delta"].item() == 0.025


def test_custom_channel_runs_through_sweep_and_certify():
    """A channel defined in examples/custom_world.py (no package change) is sampled by
    run_sweep, reports its exact ground truth, and every bound certify computes on it holds."""
    import numpy as np
    from scipy import special

    from cmcd_theory import worlds

    ex = _load("custom_world")
    try:
        df = ex.main(["--steps", "30", "--seeds", "1", "--weight-samples", "50"])
    finally:
        if "shift" in worlds.CHANNELS:
            worlds.unregister_channel("shift")
    assert (df["channel"] == "shift").all() and sorted(df["t"]) == [0.0, 0.5, 1.0]
    assert np.allclose(df["tv_latent"], 2 * special.ndtr(df["t"]) - 1, atol=1e-12)
    assert np.allclose(df["bayes_B"], df["bayes_A"])  # a common shift changes no error
    bounds = df.attrs["bounds"]
    assert {"B1a", "B1b", "B2_sample", "B3", "B4_sample", "floor"} <= set(bounds["bound"])
    assert bounds["holds"].all() and df["bounds_hold"].all()
