"""B5n (docs/theory.md): stage-1 O1 loss of the normalised linear encoder, per-sample
PAC-Bayes-kl with fresh candidates. Hand-computed arithmetic, the rotation invariance the
posterior's alignment relies on, input errors, and the bound on a small certified run."""

import math

import numpy as np
import pytest

from cmcd_theory import bounds


def _setup(n=5, d=3, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    xp = x + 0.3 * rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    Wp = W + 0.2 * rng.standard_normal((k, d))
    return x, xp, W, Wp


def _cands(d):
    return lambda blk, count: np.random.default_rng([9, blk]).standard_normal((count, d))


def test_b5n_arithmetic_by_hand():
    """Every step recomputed directly: Procrustes alignment, c, sigma, the per-draw loss with
    the same weight noise and candidates, both kl inversions, KL and the confidence term."""
    n, d, k, N, tau, delta, kappa, n_draws = 5, 3, 2, 3, 0.5, 0.1, 0.25, 2
    x, xp, W, Wp = _setup(n, d, k)
    got = bounds.normalized_ssl_bound(
        x,
        xp,
        W,
        Wp,
        _cands(d),
        tau=tau,
        tuple_size=N,
        seed=4,
        delta=delta,
        n_draws=n_draws,
        kappa_grid=[kappa],
    )
    U, _, Vt = np.linalg.svd(Wp @ W.T)
    OW = U @ Vt @ W
    c = np.sum(OW * Wp) / np.sum(OW * OW)
    sigma = kappa * np.linalg.norm(Wp) / math.sqrt(k * d)
    T = n * n_draws
    E = np.random.default_rng(4).standard_normal((T, k, d))
    cand = _cands(d)(0, T * (N - 1)).reshape(T, N - 1, d)
    ys = []
    for t in range(T):
        i = t % n
        Wd = c * OW + sigma * E[t]

        def f(v):
            return Wd @ v / np.linalg.norm(Wd @ v)

        u, v = f(x[i]), f(xp[i])
        ys.append(math.log(1 + sum(math.exp((u @ f(cj) - u @ v) / tau) for cj in cand[t])))
    b = math.log(1 + (N - 1) * math.exp(2 / tau))
    emp = float(np.mean(ys))
    emp_up = b * bounds.kl_inverse_upper(emp / b, math.log(1 / (delta / 2)) / T)
    kl = np.sum((c * OW - Wp) ** 2) / (2 * sigma**2)
    conf = math.log(2 * math.sqrt(n) / (delta / 2)) / n
    total = b * bounds.kl_inverse_upper(emp_up / b, kl / n + conf)
    assert got.empirical == pytest.approx(emp, rel=1e-12)
    assert got.empirical_upper == pytest.approx(emp_up, rel=1e-12)
    assert got.kl == pytest.approx(kl, rel=1e-12)
    assert got.confidence == pytest.approx(conf, rel=1e-12)
    assert got.total == pytest.approx(total, rel=1e-12)
    assert got.loss_range == pytest.approx(b, rel=1e-12)
    assert got.centre_scale == pytest.approx(c, rel=1e-12)
    assert got.delta_mc + got.delta_pac_bayes == pytest.approx(delta)
    assert got.vacuous == (got.total >= math.log(N))


def test_b5n_invariant_under_rotating_and_scaling_the_trained_weight():
    """normalize(c O W x) = O normalize(W x): the certified object, hence the bound, is the
    same for W and any scaled rotation of it (the posterior is aligned with the prior)."""
    x, xp, W, Wp = _setup(n=6, d=4, k=3, seed=1)
    R = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    kw = dict(tau=0.2, tuple_size=4, seed=0, n_draws=3)
    a = bounds.normalized_ssl_bound(x, xp, W, Wp, _cands(4), **kw)
    b_ = bounds.normalized_ssl_bound(x, xp, 2.5 * R @ W, Wp, _cands(4), **kw)
    assert b_.total == pytest.approx(a.total, rel=1e-9)
    assert b_.kl == pytest.approx(a.kl, rel=1e-9)


def test_b5n_more_samples_tighter_and_errors():
    x, xp, W, Wp = _setup(n=40, d=3, k=2, seed=3)
    kw = dict(tau=0.5, tuple_size=3, seed=0, n_draws=2)
    small = bounds.normalized_ssl_bound(x[:10], xp[:10], W, Wp, _cands(3), **kw)
    assert small.confidence > bounds.normalized_ssl_bound(x, xp, W, Wp, _cands(3), **kw).confidence
    with pytest.raises(ValueError, match="tuple_size"):
        bounds.normalized_ssl_bound(x, xp, W, Wp, _cands(3), tau=0.5, tuple_size=1, seed=0)
    with pytest.raises(ValueError, match="x and x_pos"):
        bounds.normalized_ssl_bound(x, xp[:3], W, Wp, _cands(3), tau=0.5, tuple_size=3, seed=0)
    with pytest.raises(ValueError, match="sample_candidates"):
        bounds.normalized_ssl_bound(x, xp, W, Wp, None, tau=0.5, tuple_size=3, seed=0)
    with pytest.raises(ValueError, match="sample_candidates must return"):
        bounds.normalized_ssl_bound(
            x, xp, W, Wp, lambda b, c: np.zeros((c, 2)), tau=0.5, tuple_size=3, seed=0
        )
    with pytest.raises(ValueError, match="tau"):
        bounds.normalized_ssl_bound(x, xp, W, Wp, _cands(3), tau=0.0, tuple_size=3, seed=0)


@pytest.mark.slow
def test_b5n_holds_on_a_small_certified_run():
    """A trained stage 1 (small sizes): B5n holds against the measured population loss of the
    perturbed encoder, spends exactly delta, and the statistics are recorded."""
    from cmcd_theory import certify, worlds
    from cmcd_theory.learn.pipeline import (
        PipelineConfig,
        seed_keys,
        source_world_config,
        train_teacher,
    )
    from cmcd_theory.learn.training import TrainConfig

    cfg = PipelineConfig(M=512, tuple_size=32, ssl=TrainConfig(steps=60, batch_size=64))
    world = worlds.make_world(source_world_config(worlds.WorldConfig()))
    teacher = train_teacher(world, seed_keys([0])[0][0], cfg)
    # n_pop = one Monte Carlo block of candidates (512 (N - 1)): one compiled sampler serves both
    res = certify.certify_stage1(world, cfg, 0, teacher, delta=0.05, n_pop=512 * 31, mc_draws=2048)
    w, (row,) = res["wide"], res["rows"]
    assert row["bound"] == "B5n" and row["holds"]
    assert w["b5n_pop_loss_stochastic"] <= w["b5n_total"]
    assert w["b5n_total"] < math.log(32) + 20  # finite and in the loss's range
    assert res["spent"]["b5n_total"] == pytest.approx(0.05)
    assert w["ssl_gap"] == pytest.approx(w["ssl_pop_loss"] - w["ssl_train_loss"], abs=1e-6)
    assert set(certify.PART_KEYS["B5"]) <= set(certify.WIDE_KEYS)


def test_convergence_M_findings_and_figure(tmp_path):
    """The stage-1 experiment's findings (resolved points fitted, the others upper limits,
    B5n ratios against the measured losses) and its figure, on a synthetic table."""
    import argparse

    import pandas as pd

    from experiments import convergence_M_stage1

    rows = []
    for M, gap in ((256, 0.2), (1024, 0.05), (4096, 0.0)):
        for s in range(3):
            g = gap + 0.005 * (s - 1)
            rows.append(
                {
                    "M": M,
                    "seed": s,
                    "tuple_size": 128,
                    "ssl_train_loss": 1.5 - g,
                    "ssl_pop_loss": 1.5,
                    "ssl_gap": g,
                    "b5n_total": 2.0 + 1000 / M,
                    "b5n_gap": 0.5 + g + 1000 / M,
                    "b5n_pop_loss_stochastic": 1.6,
                    "b5n_empirical": 1.55,
                    "b5n_empirical_mean_encoder": 1.5,
                    "b5n_empirical_upper": 1.7,
                    "b5n_kl_over_n": 1e-3,
                    "b5n_confidence": 5e-3,
                    "b5n_nu": 0.1,
                    "b5n_holds": True,
                    "b5n_delta": 0.05,
                }
            )
    df = pd.DataFrame(rows)
    f = convergence_M_stage1.findings(df)
    assert f["gap_slope_fitted_on_M"] == [256, 1024]
    assert f["gap_unresolved_M_shown_as_upper_limits"] == [4096]
    assert f["gap_loglog_slope"] == pytest.approx(math.log(0.05 / 0.2) / math.log(4), abs=1e-3)
    assert f["b5n_over_pop_stochastic[M=4096]"] == pytest.approx(
        (2.0 + 1000 / 4096) / 1.6, abs=1e-3
    )
    assert f["b5n_below_log_N[M=256]"] is False and f["b5n_below_log_N[M=1024]"] is True
    args = argparse.Namespace(seeds=3, quick=True, fig_dir=str(tmp_path))
    convergence_M_stage1.plot(df, args, f)
    assert (tmp_path / "convergence_M_stage1.png").stat().st_size > 1000


def test_b5n_column_spends_delta_through_certify_features():
    """certify_features with the B5n arrays: the b5n_total column is charged exactly delta
    (Certificate.spent, the accounting tests/test_confidence.py checks for every column)."""
    from cmcd_theory import certify

    x, xp, W, Wp = _setup(n=30, d=3, k=2, seed=5)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 2))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = rng.integers(0, 2, 50)
    s1 = {
        "x": x,
        "x_pos": xp,
        "W": W,
        "W_prior": Wp,
        "sample_candidates": _cands(3),
        "tau": 0.5,
        "tuple_size": 4,
        "n_draws": 2,
        "x_pop": np.concatenate([x, x]),
        "x_pop_pos": np.concatenate([xp, xp]),
        "ssl_train_loss": 1.0,
        "ssl_pop_loss": 1.1,
    }
    cert = certify.certify_features(
        z,
        y,
        stage1_normalized=s1,
        n_weight_samples=10,
        not_applicable={"B3": "not requested", "probe": "not requested"},
    )
    assert cert.spent["b5n_total"] == pytest.approx(0.05)
    row = [r for r in cert.rows if r["bound"] == "B5n"][0]
    assert row["applicable"] and row["value"] == pytest.approx(cert.wide["b5n_total"])
    assert cert.wide["ssl_pop_loss"] == 1.1 and np.isnan(cert.wide["ssl_gap"])
