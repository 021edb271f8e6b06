"""The theory arena (cmcd_theory.arena; docs/theory.md, P): phase labels, scores, the prior,
the Gaussian MI estimators, the predictor API, and one tiny run end to end."""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cmcd_theory import arena
from cmcd_theory.arena import mi, predictors, prior, scoring
from cmcd_theory.arena.predictors import Budget, Evidence, Prediction, Predictor
from cmcd_theory.worlds import WorldConfig

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "custom_predictor.py"
T975_4 = 2.7764451051977987  # t_{0.975, 4}: five seeds


def _rows(errs: dict) -> pd.DataFrame:
    """Sweep-like rows of one cell: ``{method: [err_B per seed]}``."""
    return pd.DataFrame(
        [
            {"draw": 0, "t": 0.2, "n": 32, "method": m, "seed": s, "err_B": e}
            for m, es in errs.items()
            for s, e in enumerate(es)
        ]
    )


def test_phase_labels_match_a_hand_computed_paired_t_interval():
    sup = [0.30, 0.32, 0.29, 0.31, 0.33]
    ssl = [0.40, 0.41, 0.39, 0.42, 0.40]  # worse on average: not the best target-only
    cmc = [0.25, 0.28, 0.27, 0.26, 0.30]  # pays
    cmd = [0.36, 0.35, 0.37, 0.34, 0.38]  # loses
    l2 = [0.30, 0.34, 0.28, 0.31, 0.32]  # no significant difference
    cells = scoring.cell_gains(
        _rows({"supervised": sup, "target_ssl": ssl, "cmc": cmc, "cmd": cmd, "l2": l2}),
        cmcd=("cmc", "cmd", "l2"),
        target_only=("supervised", "target_ssl"),
    )
    assert (cells["best_target_only"] == "supervised").all()
    assert (cells["seed_count"] == 5).all()
    for method, errs, phase in (("cmc", cmc, "+"), ("cmd", cmd, "-"), ("l2", l2, "0")):
        d = np.array(sup) - np.array(errs)
        half = T975_4 * d.std(ddof=1) / math.sqrt(5)
        row = cells[cells["method"] == method].iloc[0]
        assert row["gain"] == pytest.approx(d.mean(), abs=1e-12)
        assert row["gain_lo"] == pytest.approx(d.mean() - half, abs=1e-12)
        assert row["gain_hi"] == pytest.approx(d.mean() + half, abs=1e-12)
        assert row["phase"] == phase
    assert np.isnan(scoring.paired_interval([0.1])[1:]).all()  # one seed: no interval
    assert scoring.phase_of(float("nan"), float("nan")) == "0"


def test_wilson_and_balanced_accuracy_intervals():
    lo, hi = scoring.wilson_interval(8, 10)
    z = stats.norm.ppf(0.975)
    # the Wilson interval solves |p - 0.8| = z sqrt(p (1 - p) / 10) at its ends
    for p in (lo, hi):
        assert abs(p - 0.8) == pytest.approx(z * math.sqrt(p * (1 - p) / 10), rel=1e-9)
    assert np.isnan(scoring.wilson_interval(0, 0)).all()
    truth = np.array([True] * 7 + [False] * 5)
    calls = np.array([True] * 6 + [False] + [False] * 4 + [True])
    ba, ba_lo, ba_hi = scoring.balanced_accuracy(calls, truth)
    assert ba == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert ba_lo < ba < ba_hi


def test_the_constant_scores_exactly_one_half_balanced_when_both_phases_occur():
    truth = np.array([True, True, True, False, False])
    ba, lo, hi = scoring.balanced_accuracy(np.ones(5, bool), truth)
    assert ba == 0.5 and lo < 0.5 < hi
    assert np.isnan(scoring.balanced_accuracy(np.ones(3, bool), np.ones(3, bool))[0])  # one phase
    board = scoring.score_predictors([predictors.BUILTIN[0]], _cells())
    assert (board.loc[board["predictor"] == "always_distil", "balanced_accuracy"] == 0.5).all()


def _cells() -> pd.DataFrame:
    """A small cell table (no training): two routes, n in {16, 64, 256}, both phases."""
    world = json.dumps(WorldConfig(num_classes=3, latent_dim=4).as_dict())
    rows = []
    for method in ("cmc", "cmd"):
        for n, gain, phase in (
            (16, 0.05, "+"),
            (64, 0.01, "+"),
            (256, -0.03, "-"),
            (512, -0.001, "0"),
        ):
            rows.append(
                {
                    "draw": 0,
                    "t": 0.0,
                    "n": n,
                    "method": method,
                    "gain": gain,
                    "gain_lo": gain - 0.01,
                    "gain_hi": gain + 0.01,
                    "phase": phase,
                    "world_config": world,
                    "M": 1024,
                    "m": 512,
                    "num_classes": 3,
                    "feature_dim": 4,
                    "params_A": 2000,
                    "params_B": 1900,
                    "params_probe": 15,
                    **Evidence(
                        bayes_A=0.1, bayes_B=0.1, tv_latent=0.0, mi_AB=2.0, mi_By=0.9
                    ).as_dict(),
                }
            )
    return pd.DataFrame(rows)


def test_a_user_written_predictor_runs_through_the_scoring_api():
    seen = []

    def small_n(world, budget, evidence):
        seen.append((world.num_classes, evidence.mi_AB, evidence.bayes_A))
        return Prediction(budget.n <= 64, 64.0 - budget.n)

    mine = Predictor("small_n", small_n, uses=("feature_mi",), source="a test")
    board = arena.score_predictors([predictors.BUILTIN[0], mine], _cells())
    assert set(board["method"]) == {"cmc", "cmd", "all"}
    got = board[board["predictor"] == "small_n"].set_index("method")
    assert got.loc["all", "cells"] == 6 and got.loc["all", "correct"] == 6
    assert got.loc["all", "accuracy"] == 1.0 and got.loc["all", "balanced_accuracy"] == 1.0
    # Spearman over all cells, the non-significant one included: ranks (4, 3, 1, 2) vs (4, 3, 2, 1)
    assert got.loc["cmc", "spearman"] == pytest.approx(0.8)
    # the world is the cell's config; undeclared evidence (ground truth here) is blanked
    assert all(k == 3 and math.isnan(a) and math.isnan(b) for k, a, b in seen)
    calls = arena.predict_cells([mine], _cells())
    assert calls["call_small_n"].tolist() == [True, True, False, False] * 2
    with pytest.raises(ValueError, match="evidence groups"):
        Predictor("bad", small_n, uses=("test_errors",))
    with pytest.raises(ValueError, match="distinct"):
        arena.predict_cells([mine, mine], _cells())


def test_builtin_predictors_follow_their_statements():
    b = Budget(
        M=1024,
        m=512,
        n=16,
        num_classes=4,
        feature_dim=8,
        params_A=3000,
        params_B=2000,
        params_probe=36,
    )
    ev = Evidence(
        tv_latent=0.1,
        bayes_A=0.05,
        bayes_B=0.1,
        mi_AB=0.5,
        mi_By=0.8,
        certificate_route=0.9,
        certificate_target=1.1,
        mi_features_AB=2.0,
        mi_features_By=0.5,
        mi_pre_AB=0.1,
        mi_pre_By=0.3,
    )
    calls = {p.name: p(None, b, ev) for p in predictors.BUILTIN}
    assert calls["always_distil"] == Prediction(True, None)
    u_cmcd = 0.05 + 0.1 + math.sqrt(3000 / 1024) + math.sqrt(2000 / 512) + math.sqrt(36 / 16)
    u_target = 0.1 + math.sqrt(2036 / 16)
    assert calls["paper_population"].margin == pytest.approx(u_target - u_cmcd)
    assert calls["paper_population"].pays == (u_target > u_cmcd)
    assert calls["certificates"] == Prediction(True, pytest.approx(0.2))
    assert calls["cch_latent"] == Prediction(False, pytest.approx(-0.3))
    assert calls["cch_features"] == Prediction(True, pytest.approx(1.5))
    assert calls["cch_features_pre"] == Prediction(False, pytest.approx(-0.2))
    # at large n the supervised route's estimation term shrinks below the CMCD route's
    assert not predictors.paper_population(None, b._replace(n=100_000), ev).pays


def test_prior_draws_are_valid_fresh_and_depend_on_the_seed():
    a = arena.draw_worlds(11, 5)
    assert [d.world for d in arena.draw_worlds(11, 5)] == [d.world for d in a]
    assert arena.draw_worlds(11, 2)[1].world == a[1].world  # draw i depends on (seed, i)
    b = arena.draw_worlds(12, 5)
    assert all(x.world != y.world for x, y in zip(a, b))
    P = prior.PRIOR
    for d in a + b:
        c = d.config()
        assert c.num_classes in P["num_classes"]
        assert c.num_classes <= c.latent_dim <= c.num_classes + 4
        assert P["separation"][0] <= c.separation <= P["separation"][1]
        assert P["sigma"][0] <= c.sigma <= P["sigma"][1]
        assert 0 <= c.source_t <= 1 and 1 <= c.n_attenuated <= c.num_classes
        axes = c.source_axis_indices()
        assert axes == tuple(range(c.latent_dim)) or set(axes) <= set(range(c.num_classes))
        blind_spot = (c.nuisance_dim, c.nuisance_rho) == P["blind_spot_nuisance"]
        assert blind_spot or (
            c.nuisance_dim in P["nuisance_dim"] and c.nuisance_rho in P["nuisance_rho"]
        )
        assert list(d.t_grid) == sorted(set(d.t_grid)) and set(d.t_grid) <= set(P["t"])
        assert list(d.n_grid) == sorted(set(d.n_grid)) and set(d.n_grid) <= set(P["n"])
        assert len(d.t_grid) == len(d.n_grid) == 3 and d.m in P["m"]
        assert prior.world_config(json.loads(json.dumps(c.as_dict()))) == c
    with pytest.raises(ValueError, match="draws"):
        arena.draw_worlds(0, 0)


def test_prior_version_2_regime_probabilities():
    """docs/theory.md P6: version 2 puts probability 2/3 on an intact source and 3/4 on the
    blind spot of target SSL (q = 8, rho = 0), so 1/2 on the regime where both hold; the draws
    follow (1000 draws, tolerances of about 4 binomial standard deviations)."""
    P = prior.PRIOR
    assert P["source_intact"] == pytest.approx(2 / 3) and P["blind_spot"] == 0.75
    assert prior.describe_prior()["version"] == 2
    worlds = [prior.draw_world(0, i).world for i in range(1000)]
    intact = np.array([w["source_t"] == 0 for w in worlds])
    blind = np.array([(w["nuisance_dim"], w["nuisance_rho"]) == (8, 0.0) for w in worlds])
    assert intact.mean() == pytest.approx(2 / 3, abs=0.06)
    assert blind.mean() == pytest.approx(3 / 4, abs=0.06)
    assert (intact & blind).mean() == pytest.approx(1 / 2, abs=0.065)


def test_gaussian_mi_estimators():
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.normal(size=(n, 2))
    rho = np.array([0.8, 0.3])
    y = x * rho + rng.normal(size=(n, 2)) * np.sqrt(1 - rho**2)
    exact = -0.5 * np.sum(np.log(1 - rho**2))
    assert mi.gaussian_mi(x, y) == pytest.approx(exact, abs=0.02)
    # independent samples: the corrected estimate is near 0 on average, the plug-in is not
    ind = [
        (
            mi.gaussian_mi(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), corrected=False),
            mi.gaussian_mi(rng.normal(size=(60, 4)), rng.normal(size=(60, 4))),
        )
        for _ in range(200)
    ]
    plug = np.mean([p for p, _ in ind])
    assert plug == pytest.approx(mi.null_mean(60, 4, 4), rel=0.15)
    assert np.mean([c for _, c in ind]) < 0.3 * plug
    assert mi.gaussian_mi(x, x) == math.inf
    # labels: the one-hot Gaussian MI is the LDA plug-in; a missing class is dropped
    lab = rng.integers(0, 3, size=n)
    z = np.eye(3)[lab] + rng.normal(size=(n, 3))
    assert mi.one_hot(lab).shape == (n, 2) and mi.one_hot(np.array([0, 2, 2])).shape == (3, 1)
    assert 0.1 < mi.label_mi(z, lab) < math.log(3)


@pytest.mark.slow
def test_a_tiny_arena_run_end_to_end(tmp_path):
    """One drawn world, two cells, two seeds, short training (the only run in this file):
    the cell table has every ground-truth, evidence, budget and call column, the evidence
    comes from training data, and a saved table scores predictors again (the example's too)."""
    draws = arena.draw_worlds(3, 1, grid_points=1)
    pc = arena.arena_pipeline(quick=True)
    ssl = pc.ssl.replace(steps=20)
    pc = pc.replace(
        ssl=ssl,
        distill=ssl,
        supervised=pc.supervised.replace(steps=20),
        probe_steps=20,
        n_test=1000,
    )
    cells = arena.run_arena(draws, seeds=2, pipeline=pc, cmcd=("cmc",))
    assert len(cells) == 1
    for col in (
        "draw",
        "channel",
        "t",
        "n",
        "method",
        "seed_count",
        "gain",
        "gain_lo",
        "gain_hi",
        "phase",
        "tv_latent",
        "bayes_A",
        "bayes_B",
        "mi_AB",
        "mi_By",
        "world_config",
        *Budget._fields,
        *Evidence().as_dict(),
    ):
        assert col in cells, col
    for p in predictors.BUILTIN:
        assert cells[f"call_{p.name}"].dtype == bool
    row = cells.iloc[0]
    assert row["seed_count"] == 2 and row["phase"] in "+-0"
    for col in (
        "certificate_route",
        "certificate_target",
        "mi_features_AB",
        "mi_features_By",
        "mi_pre_AB",
        "mi_pre_By",
        "bayes_A",
        "bayes_B",
        "mi_By",
    ):
        assert np.isfinite(row[col]), col
    again = arena.predict_cells(
        predictors.BUILTIN, cells.drop(columns=[c for c in cells if c.startswith("call_")])
    )
    assert (again.filter(like="call_") == cells.filter(like="call_")).all().all()
    # the example's own predictor scores the saved table (examples/custom_predictor.py --cells)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    spec = importlib.util.spec_from_file_location("custom_predictor", EXAMPLE)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    board = ex.main(["--cells", str(tmp_path / "cells.csv")])
    assert "teacher_beats_target" in set(board["predictor"])
