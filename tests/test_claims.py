"""The paper's claims, measured (docs/theory.md, C), and the bounds asserted on a quick sweep.

Each test states its claim; the numbers come from sweeps run here, never from constants.
"""

import numpy as np
import pytest
from scipy import stats

from cmcd_theory import bounds, divergences
from cmcd_theory.certify import certify
from cmcd_theory.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig

T_GRID = [0.0, 0.25, 0.5, 0.75, 1.0]
THEORY = quick_pipeline()
THEORY = THEORY.replace(distill=THEORY.distill.replace(student_features="raw"))


@pytest.fixture(scope="module")
def distance_sweep():
    """CMC and CMD on the attenuate, noise and corrupt channels, 5 distances, 3 seeds."""
    return run_sweep({"channel": ["attenuate", "noise", "corrupt"], "t": T_GRID, "method": ["cmc", "cmd"]},
                     pipeline=quick_pipeline(), seeds=3, progress=False)


@pytest.mark.parametrize("channel", ["attenuate", "noise", "corrupt"])
@pytest.mark.parametrize("method", ["cmc", "cmd"])
def test_claim_i_error_grows_with_modality_distance(distance_sweep, channel, method):
    """Claim (i): seed-averaged target error increases with TV_latent (Spearman >= 0.9)."""
    d = distance_sweep[(distance_sweep.channel == channel) & (distance_sweep.method == method)]
    g = d.groupby("t")[["tv_latent", "err_B"]].mean()
    assert len(g) == 5
    rho = stats.spearmanr(g.tv_latent, g.err_B).statistic
    assert rho >= 0.9, (channel, method, g)


def test_error_never_below_bayes_floor(distance_sweep):
    """No learner beats eps*_B: err_B + slack >= bayes_B (slack: test set and Bayes MC)."""
    slack = bounds.hoeffding_slack(20000, 0.001) + 2 * bounds.hoeffding_slack(200_000, 0.005)
    assert (distance_sweep.err_B + slack >= distance_sweep.bayes_B).all()


def test_t0_large_sample_reaches_bayes_error():
    """At t = 0 with m = 8192 pairs and n = 4096 labels, CMC and CMD come within 0.01 of eps*_B."""
    cfg = quick_pipeline().replace(M=4096, m=8192, n=4096)
    df = run_sweep({"t": [0.0], "method": ["cmc", "cmd"]}, pipeline=cfg, seeds=2, progress=False)
    bayes = divergences.bayes_error(WorldConfig(), "B").estimate
    g = df.groupby("method").err_B.mean()
    assert (g - bayes).abs().max() <= 0.01, (g, bayes)


@pytest.fixture(scope="module")
def m_sweep():
    cfg = THEORY.replace(n_pop=16384, n=1000)
    rows = []

    def post(w, c, method, t, seed, row, arts):
        res = certify(w, c, method, t, seed, row, arts)
        rows.extend(res["rows"])
        return res["wide"]

    df = run_sweep({"t": [0.5], "method": ["cmc"], "m": [128, 512, 2048]}, pipeline=cfg, seeds=3,
                   postprocess=post, progress=False)
    return df, rows


def test_claim_ii_distillation_gap_falls_with_m(m_sweep):
    """Claim (ii): the stage-2 generalisation gap falls with m, log-log slope <= -0.4."""
    df, _ = m_sweep
    g = df.groupby("m").distill_gap.mean()
    assert (g > 0).all(), g
    slope = np.polyfit(np.log(g.index.values), np.log(g.values), 1)[0]
    assert slope <= -0.4, (slope, g)


def test_b4_holds_and_bounds_the_population_loss(m_sweep):
    """B4: the population stage-2 loss is below the bound for every m (rows of certify)."""
    _, rows = m_sweep
    b4 = [r for r in rows if r["bound"].startswith("B4")]
    assert len(b4) == 2 * 3 * 3
    assert all(r["holds"] for r in b4)
    df, _ = m_sweep
    # the bound's estimation terms shrink with m (what makes it a convergence statement)
    assert df.groupby("m").b4_total.mean().is_monotonic_decreasing


def test_bounds_hold_on_quick_sweep():
    """B1a, B1b (Gaussian track), B2, B3 and B4 hold on every configuration of a quick sweep."""
    rows = []

    def post(w, c, method, t, seed, row, arts):
        res = certify(w, c, method, t, seed, row, arts)
        rows.extend(res["rows"])
        return res["wide"]

    run_sweep({"channel": ["attenuate"], "t": [0.0, 0.5, 1.0], "method": ["cmc", "cmd"], "n": [1000]},
              pipeline=THEORY, seeds=2, postprocess=post, progress=False)
    names = {r["bound"] for r in rows}
    assert {"B1a", "B1b", "B2_sample", "B2_data_free", "B3", "B4_data_free", "B4_sample"} <= names
    failed = [r for r in rows if not r["holds"]]
    assert not failed, failed


def test_b3_non_vacuous_from_n_1000_on_default_world():
    """B3 (stochastic probe) is below 1 - 1/K at n = 1000 and n = 4000 on the default world."""
    out = {}

    def post(w, c, method, t, seed, row, arts):
        res = certify(w, c, method, t, seed, row, arts)
        out[(c.n, seed)] = res["wide"]["b3_total"]
        return res["wide"]

    run_sweep({"t": [0.0], "method": ["cmc"], "n": [1000, 4000]}, pipeline=THEORY, seeds=2,
              postprocess=post, progress=False)
    K = WorldConfig().num_classes
    assert len(out) == 4
    assert max(out.values()) < 1 - 1 / K, out
