"""Experiment scripts: helpers, and one quick run end to end (CSV columns, bounds, figures)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import common


def test_ci95_matches_student_t_interval():
    x = np.array([0.1, 0.4, 0.35, 0.2])
    m, h = common.ci95(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean())
    assert m - h == pytest.approx(lo) and m + h == pytest.approx(hi)
    assert np.isnan(common.ci95([0.3])[1])


def test_summarize_and_slope():
    df = pd.DataFrame({"g": [0, 0, 1, 1], "v": [1.0, 3.0, 5.0, 5.0]})
    s = common.summarize(df, ["g"], ["v"])
    assert s["v_mean"].tolist() == [2.0, 5.0]
    assert s["v_lo"].iloc[1] == s["v_hi"].iloc[1] == 5.0
    x = np.array([100.0, 400.0, 1600.0])
    assert common.loglog_slope(x, 3.0 * x**-0.5) == pytest.approx(-0.5)


def test_reproduce_rejects_unknown_experiment(capsys):
    from experiments import reproduce

    with pytest.raises(SystemExit) as e:
        reproduce.main(["--only", "no_such_experiment"])
    assert e.value.code == 2
    assert "--only: must be one of" in capsys.readouterr().err


def test_reproduce_jobs_schedules_longest_first_and_reports_failures(tmp_path, monkeypatch):
    """--jobs > 1: one process per experiment, longest recorded wall time first, a failure is
    an error naming the experiment (or, with --keep-going, a NaN time while the rest run)."""
    import json
    import subprocess
    import sys

    from experiments import reproduce

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "quick").mkdir(parents=True)
    for name, wall in (("world_gallery", 5.0), ("mfeat", 50.0)):
        (tmp_path / "results" / "quick" / f"{name}.json").write_text(
            json.dumps({"wall_time_s": wall})
        )
    started, real_popen = [], subprocess.Popen

    def fake_popen(cmd, stdout, stderr):
        name = cmd[2].split(".")[1]
        started.append(name)
        code = 3 if name == "convergence_m" else 0
        return real_popen(
            [sys.executable, "-c", f"import sys; sys.exit({code})"], stdout=stdout, stderr=stderr
        )

    monkeypatch.setattr(reproduce.subprocess, "Popen", fake_popen)
    times = reproduce.main(["--quick", "--jobs", "2", "--only", "world_gallery,mfeat"])
    assert started == ["mfeat", "world_gallery"] and set(times) == {"mfeat", "world_gallery"}
    assert (tmp_path / "results" / "quick" / "logs" / "mfeat.log").exists()
    with pytest.raises(RuntimeError, match="convergence_m"):
        reproduce.main(["--quick", "--jobs", "2", "--only", "convergence_m"])
    times = reproduce.main(
        ["--quick", "--jobs", "2", "--keep-going", "--only", "convergence_m,world_gallery"]
    )
    assert np.isnan(times["convergence_m"]) and times["world_gallery"] >= 0


def test_error_vs_distance_quick(tmp_path):
    from experiments import error_vs_distance

    out, fig = tmp_path / "r", tmp_path / "f"
    df = error_vs_distance.main(
        ["--quick", "--seeds", "2", "--out-dir", str(out), "--fig-dir", str(fig), "--no-progress"]
    )
    csv = pd.read_csv(out / "error_vs_distance.csv")
    assert len(csv) == len(df) == 4 * 2 * 2  # 4 distances x 2 methods x 2 seeds
    for col in (
        "channel",
        "method",
        "t",
        "seed",
        "tv_latent",
        "bayes_A",
        "bayes_B",
        "err_B",
        "b2_total",
        "b3_total",
        "b3_total_deterministic",
    ):
        assert col in csv, col
    meta = json.loads((out / "error_vs_distance.json").read_text())
    assert meta["quick"] and "findings" in meta
    for ext in ("png", "pdf"):
        assert os.path.getsize(fig / f"error_vs_distance.{ext}") > 1000
    # the plotted bounds hold for every row they are plotted for, up to the test set's slack
    slack = common.test_slack(20000)
    b = csv[csv["method"] == error_vs_distance.BOUND_METHOD]
    assert len(b) == 8 and b["b2_total"].notna().all()
    assert (b["b2_total"] >= b["err_B"] - slack).all()
    assert (b["b3_total_deterministic"] >= b["err_B"] - slack).all()
    # B3p (split prior) is computed on every certified row; each form's bound on L(Q) holds
    # against the held-out error of its own stochastic probe
    assert b["b3p_total"].notna().all() and b["b3_measured_stochastic"].notna().all()
    assert (b["b3_total"] >= b["b3_measured_stochastic"] - slack).all()
    assert (b["b3p_total"] >= b["b3p_measured_stochastic"] - slack).all()
    # B1a on the exact ground truth; the oracle probe cannot beat the Bayes floor
    assert (csv["bayes_B"] <= csv["bayes_A"] + csv["tv_latent"] + 1e-9).all()
    o = csv[csv["method"] == "oracle"]
    assert (o["err_B"] >= o["bayes_B"] - slack - 0.01).all()
    # claim (i) on this grid: the error is increasing in the distance (seed-averaged)
    e = b.groupby("t")["err_B"].mean().to_numpy()
    assert np.all(np.diff(e) > 0)


def test_convergence_slope_interval_and_unresolved_points():
    """The fitted slope comes with its 95% interval; points whose interval contains 0 are
    reported (as upper limits), not dropped silently."""
    from experiments import convergence_m

    m = np.array([256.0, 1024.0, 4096.0, 16384.0])
    slope, half = convergence_m.slope_with_interval(m, 2.0 * m**-0.7)
    assert slope == pytest.approx(-0.7) and half == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    slope, half = convergence_m.slope_with_interval(
        m, m**-0.5 * np.exp(0.1 * rng.standard_normal(4))
    )
    assert half > 0 and abs(slope + 0.5) < 3 * half
    rows = [
        {
            "method": "cmc",
            "m": mm,
            "seed": s,
            "t": 0.0,
            "distill_gap": g + e,
            "b4_gap": 1.0,
            "distill_pop_loss": 1.0,
            "b4_pop_slack": 0.0,
            "b4_total": 2.0,
            "err_B": 0.1,
            "bayes_B": 0.1,
        }
        for mm, g in ((256, 0.1), (1024, 0.03), (4096, 0.0))
        for s, e in enumerate((-0.01, 0.0, 0.01))
    ]
    f = convergence_m.findings(pd.DataFrame(rows))
    assert f["gap_unresolved_m_shown_as_upper_limits[cmc]"] == [4096]
    assert f["gap_slope_fitted_on_m[cmc]"] == [256, 1024]


def test_plot_only_redraws_from_saved_results_without_recomputing(tmp_path):
    """``--plot-only`` re-draws a figure from the committed CSV/JSON: the CSV and JSON stay
    byte-identical, the PNG and PDF appear, and a missing CSV is one line with exit status 2."""
    import shutil
    import subprocess
    import sys

    out, figs = tmp_path / "results", tmp_path / "figures"
    out.mkdir()
    figs.mkdir()
    for ext in ("csv", "json"):
        shutil.copy(f"results/generalization_n.{ext}", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cmd = [sys.executable, "-m", "experiments.generalization_n", "--plot-only"]
    run = subprocess.run(
        [*cmd, "--out-dir", str(out), "--fig-dir", str(figs)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (figs / "generalization_n.png").stat().st_size > 0
    assert (figs / "generalization_n.pdf").stat().st_size > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(
        [*cmd, "--out-dir", str(empty), "--fig-dir", str(figs)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "--plot-only" in run.stderr
