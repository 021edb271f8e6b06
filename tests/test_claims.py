"""The paper's claims, measured (docs/theory.md, C), and the bounds asserted on a quick sweep
(the nuisance and pairing worlds: test_claims_worlds.py).

Each test states its claim; the numbers come from sweeps run here, never from constants.
All sweeps share one theory-track configuration (quick sizes, n = 1000 labels, unnormalised
student features in the stage-2 loss, the form B4 covers), so compiled programs and the
stage-1 teachers are reused.
"""

import numpy as np
import pytest
from scipy import stats

from cmcd_theory import bounds
from cmcd_theory.certify import certify
from cmcd_theory.learn import divergences
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig

T_GRID = [0.0, 0.25, 0.5, 0.75, 1.0]
_q = quick_pipeline()
THEORY = _q.replace(n=1000, n_pop=16384, distill=_q.distill.replace(student_features="raw"))
CERTIFIED_T = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def distance_sweep():
    """CMC and CMD on the attenuate, noise and corrupt channels, 5 distances, 3 seeds; every
    bound certified on the attenuate cells at t in {0, 0.5, 1} for seeds 0 and 1."""
    rows = []

    def post(w, c, method, t, seed, row, arts):
        if w.config.channel != "attenuate" or t not in CERTIFIED_T or seed > 1:
            return {}
        res = certify(w, c, method, t, seed, row, arts)
        rows.extend({"t": t, "method": method, "seed": seed, **r} for r in res["rows"])
        return res["wide"]

    df = run_sweep(
        {"channel": ["attenuate", "noise", "corrupt"], "t": T_GRID, "method": ["cmc", "cmd"]},
        pipeline=THEORY,
        seeds=3,
        postprocess=post,
        progress=False,
    )
    return df, rows


@pytest.mark.parametrize("channel", ["attenuate", "noise", "corrupt"])
@pytest.mark.parametrize("method", ["cmc", "cmd"])
def test_claim_i_error_grows_with_modality_distance(distance_sweep, channel, method):
    """Claim (i): seed-averaged target error increases with TV_latent (Spearman >= 0.9)."""
    df, _ = distance_sweep
    d = df[(df.channel == channel) & (df.method == method)]
    g = d.groupby("t")[["tv_latent", "err_B"]].mean()
    assert len(g) == 5
    rho = stats.spearmanr(g.tv_latent, g.err_B).statistic
    assert rho >= 0.9, (channel, method, g)


def test_error_never_below_bayes_floor(distance_sweep):
    """No learner beats eps*_B: err_B + slack >= bayes_B (slack: the test set's; eps*_B is
    exact)."""
    df, _ = distance_sweep
    slack = bounds.hoeffding_slack(THEORY.n_test, 0.001)
    assert (df.err_B + slack >= df.bayes_B).all()


def test_bounds_hold_on_quick_sweep(distance_sweep):
    """B1a, B1b (Gaussian track), B2, B3 and B4 hold on every certified configuration."""
    _, rows = distance_sweep
    assert len({(r["t"], r["method"], r["seed"]) for r in rows}) == len(CERTIFIED_T) * 2 * 2
    names = {r["bound"] for r in rows}
    assert {"B1a", "B1b", "B2_sample", "B2_data_free", "B3", "B4_data_free", "B4_sample"} <= names
    failed = [r for r in rows if not r["holds"]]
    assert not failed, failed


def test_b3_non_vacuous_from_n_1000_on_default_world(distance_sweep):
    """B3 (stochastic probe) is below 1 - 1/K at n = 1000 on the default world (t = 0)."""
    df, _ = distance_sweep
    d = df[(df.channel == "attenuate") & (df.t == 0.0)].dropna(subset=["b3_total"])
    K = WorldConfig().num_classes
    assert len(d) == 4
    assert (d.b3_total < 1 - 1 / K).all(), d.b3_total


def test_t0_large_sample_reaches_bayes_error():
    """At t = 0 with m = 8192 pairs and n = 4096 labels, CMC and CMD come within 0.01 of eps*_B."""
    df = run_sweep(
        {"t": [0.0], "method": ["cmc", "cmd"]},
        pipeline=THEORY.replace(m=8192, n=4096),
        seeds=2,
        progress=False,
    )
    bayes = divergences.bayes_error(WorldConfig(), "B").estimate
    g = df.groupby("method").err_B.mean()
    assert (g - bayes).abs().max() <= 0.01, (g, bayes)


@pytest.fixture(scope="module")
def m_sweep():
    rows = []

    def post(w, c, method, t, seed, row, arts):
        res = certify(w, c, method, t, seed, row, arts, parts=("B4",))
        rows.extend(res["rows"])
        return res["wide"]

    df = run_sweep(
        {"t": [0.5], "method": ["cmc"], "m": [128, 512, 1024]},
        pipeline=THEORY,
        seeds=3,
        postprocess=post,
        progress=False,
    )
    return df, rows


def test_claim_ii_distillation_gap_falls_with_m(m_sweep):
    """Claim (ii): the stage-2 generalisation gap falls with m, log-log slope <= -0.4."""
    df, _ = m_sweep
    g = df.groupby("m").distill_gap.mean()
    assert (g > 0).all(), g
    slope = np.polyfit(np.log(g.index.values), np.log(g.values), 1)[0]
    assert slope <= -0.4, (slope, g)


def test_b4_holds_and_shrinks_with_m(m_sweep):
    """B4: the population stage-2 loss is below the bound for every m, and the bound's
    estimation terms shrink with m (what makes it a convergence statement)."""
    df, rows = m_sweep
    b4 = [r for r in rows if r["bound"].startswith("B4")]
    assert len(b4) == 2 * 3 * 3
    assert all(r["holds"] for r in b4)
    excess = (df.b4_total - df.distill_train_loss).groupby(df.m).mean()
    assert excess.is_monotonic_decreasing, excess
