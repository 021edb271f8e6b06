"""Tests of a source that forgets (docs/theory.md G8) and of the combined route (O5).

* validation: ``source_t`` and ``source_axes`` raise a ValueError naming the parameter;
* ``source_t = 0`` draws nothing more: every sampler returns what the formula of G1-G7 gives;
* the JAX sampler has the law of G8: class means ``alpha mu_y``, variance sigma^2, and the
  within-class correlation ``alpha_j beta_j`` of ``(s_A,j, s_B,j)``;
* exact ground truth against Monte Carlo with the true densities: ``TV_latent`` (Hoeffding
  interval at level ``ALPHA``), eps*_A by G5b (the same), ``I(s_A; s_B | y)`` in closed form;
* the latent mutual informations against an independent exact value (K = 2, where every term
  is a one-dimensional integral) and against a second Monte Carlo run with another seed;
* ``I(s_A; s_B) < I(s_B; y)`` is reachable (the CCH latent rule can say "do not distil"), and
  ``I(s; s_B) >= I(s_B; y)`` without a source channel (data processing);
* the pipeline: ``bayes_A`` is the source's, and the ``cmc_ssl`` route runs in a sweep.

Each statistical check has a two-sided level of at most ``ALPHA = 1e-6`` (the CLT ones use
``Z`` standard errors); a correct implementation fails the file with probability below 1e-4.
"""

import math

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from cmcd_theory import worlds
from cmcd_theory.learn import pipeline
from cmcd_theory.learn.training import TrainConfig
from cmcd_theory.worlds import (
    WorldConfig,
    bayes_error_exact,
    bayes_error_monte_carlo,
    latent_conditional_mutual_information,
    latent_mutual_information,
    make_world,
    sample,
    tv_latent,
    tv_latent_monte_carlo,
)

ALPHA = 1e-6
Z = stats.norm.isf(ALPHA / 2)  # ~4.9 standard errors
N = 12_000

# the small world of tests/test_worlds.py with a source channel on a class axis and on a
# coordinate that carries no class mean
SRC = WorldConfig(
    num_classes=3,
    latent_dim=5,
    separation=3.0,
    sigma=0.8,
    n_attenuated=2,
    eta_max=2.0,
    d_A=7,
    d_B=6,
    view_noise=0.4,
    t=0.3,
    source_t=0.6,
    source_axes=(1, 4),
)


# ---------------------------------------------------------------------------------------------
# the config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, name",
    [
        (dict(source_t=-0.1), "source_t"),
        (dict(source_t=1.5), "source_t"),
        (dict(source_t=float("nan")), "source_t"),
        (dict(source_axes=(0, 0)), "source_axes"),
        (dict(source_axes=(8,)), "source_axes"),
        (dict(source_axes=(-1,)), "source_axes"),
        (dict(source_axes=(0.5,)), "source_axes"),
        (dict(source_axes=(True,)), "source_axes"),
        (dict(source_axes="01"), "source_axes"),
        (dict(source_axes=3), "source_axes"),
    ],
)
def test_invalid_source_fields_raise_naming_parameter(changes, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        WorldConfig(**changes)


def test_source_fields_defaults_dict_and_hash():
    c = WorldConfig()
    assert not c.has_source_channel and c.source_axis_indices() == (0, 1, 2, 3)
    assert "source_t" not in c.as_dict() and WorldConfig(**c.as_dict()) == c
    d = WorldConfig(source_t=0.5, source_axes=[2, 0, 7])
    assert d.source_axes == (2, 0, 7) and d.as_dict()["source_axes"] == [2, 0, 7]
    assert WorldConfig(**d.as_dict()) == d and hash(d) == hash(WorldConfig(**d.as_dict()))
    np.testing.assert_array_equal(d.source_gain(), [0.5, 1, 0.5, 1, 1, 1, 1, 0.5])
    assert not WorldConfig(source_t=0.5, source_axes=()).has_source_channel
    # the teacher's world keeps the source channel
    assert pipeline.source_world_config(d.replace(channel="noise", t=0.4)).source_t == 0.5


# ---------------------------------------------------------------------------------------------
# samplers
# ---------------------------------------------------------------------------------------------


def _reference_sample(world, key, n):
    """The paired sample of G1-G7 (no source channel), from the primitives."""
    k_lat, k_ch, k_a, k_b = jax.random.split(key, 4)
    y, s = worlds.sample_latents(world, k_lat, n)
    y_b, s_b = worlds.transmit(world, k_ch, y, s)
    u_b = s_b
    return y, s, s_b, worlds.observe(world, s, "A", k_a), worlds.observe(world, u_b, "B", k_b), y_b


def test_source_t_zero_leaves_samplers_bitwise_unchanged():
    key = jax.random.key(11)
    for cfg in (
        SRC.replace(source_t=0.0, obs_noise=0.1),
        SRC.replace(source_t=0.0, source_axes=None),
    ):
        w = make_world(cfg)
        smp = sample(w, key, 257)
        for got, ref in zip(smp[:6], _reference_sample(w, key, 257)):
            np.testing.assert_array_equal(got, ref)
        assert smp.s_A is smp.s
        _, s = worlds.sample_latents(w, key, 100)
        np.testing.assert_array_equal(worlds.sample_source(w, key, 100), s)
    plain = sample(make_world(SRC.replace(source_t=0.0, source_axes=None)), key, 64)
    other = sample(make_world(SRC.replace(source_t=0.0, source_axes=(0,))), key, 64)
    for a, b in zip(plain, other):
        np.testing.assert_array_equal(a, b)


def test_source_channel_sampler_law_and_correlation():
    """law(s_A | y) = N(alpha mu_y, sigma^2 I), x_A = g_A(s_A), and the within-class
    correlation of (s_A,j, s_B,j) is alpha_j beta_j (G8), on the JAX sampler."""
    w = make_world(SRC)
    smp = sample(w, jax.random.key(5), N)
    np.testing.assert_allclose(smp.x_A, worlds.observe(w, smp.s_A, "A"), atol=1e-6)
    off = np.array([0, 2, 3])  # outside J_A the source is the shared latent
    np.testing.assert_array_equal(np.asarray(smp.s_A)[:, off], np.asarray(smp.s)[:, off])
    y = np.asarray(smp.y)
    s_a, s_b = np.asarray(smp.s_A, np.float64), np.asarray(smp.s_B, np.float64)
    alpha = SRC.source_gain()
    beta = 1.0 - SRC.t * SRC.attenuated_mask()
    means = SRC.source_class_means()
    for c in range(SRC.num_classes):
        a, b = s_a[y == c], s_b[y == c]
        n_c = a.shape[0]
        assert np.all(np.abs(a.mean(0) - means[c]) < Z * SRC.sigma / math.sqrt(n_c))
        chi = (n_c - 1) * a.var(0, ddof=1) / SRC.sigma**2
        lo, hi = stats.chi2.ppf(ALPHA / 2, n_c - 1), stats.chi2.isf(ALPHA / 2, n_c - 1)
        assert np.all((chi > lo) & (chi < hi))
        rho = alpha * beta
        for j in range(SRC.latent_dim):
            if rho[j] == 1.0:  # neither channel touches coordinate j: shared exactly
                np.testing.assert_array_equal(a[:, j], b[:, j])
                continue
            # Fisher z: atanh(r) ~ N(atanh(rho), 1 / (n - 3))
            r = np.corrcoef(a[:, j], b[:, j])[0, 1]
            assert abs(np.arctanh(r) - np.arctanh(rho[j])) < Z / math.sqrt(n_c - 3), (c, j, r)


def test_stage1_uses_the_source_latents():
    w = make_world(SRC)
    s_a = np.asarray(worlds.sample_source(w, jax.random.key(2), N))
    _, s = worlds.sample_latents(w, jax.random.key(2), N)
    assert not np.array_equal(s_a[:, 1], np.asarray(s)[:, 1])
    # law of the source latent: per-coordinate variance sigma^2, mean of the mixture alpha mu
    mix_mean = SRC.source_class_means().mean(0)
    assert np.all(np.abs(s_a.mean(0) - mix_mean) < Z * 1.5 / math.sqrt(N))


# ---------------------------------------------------------------------------------------------
# TV_latent and eps*_A against Monte Carlo with the true densities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["attenuate", "noise", "rotate", "resample", "mispair"])
def test_tv_latent_with_source_channel_against_monte_carlo(channel):
    cfg = SRC.replace(channel=channel, t=0.5)
    iv = tv_latent_monte_carlo(cfg, n=20_000, seed=3, delta=ALPHA)
    exact = tv_latent(cfg)
    assert iv.lower <= exact <= iv.upper, (channel, exact, iv)
    assert exact > 0  # the source moved, whatever the target does


def test_tv_latent_closed_form_by_hand_and_nan_without_one():
    # attenuate on both sides: 2 Phi(norm(m_A - m_B) / 2 sigma) - 1 per class
    mu = SRC.class_means()
    m_a = mu * SRC.source_gain()
    m_b = mu * (1.0 - SRC.t * SRC.attenuated_mask())
    by_hand = np.mean(2 * stats.norm.cdf(np.linalg.norm(m_a - m_b, axis=1) / (2 * SRC.sigma)) - 1)
    assert tv_latent(SRC) == pytest.approx(by_hand, abs=1e-14)
    assert math.isnan(tv_latent(SRC.replace(channel="corrupt", t=0.5)))
    assert tv_latent(SRC.replace(channel="corrupt", t=0.0)) == pytest.approx(
        tv_latent(SRC.replace(t=0.0)), abs=1e-14
    )


@pytest.mark.parametrize("source_t, axes", [(0.6, (1, 4)), (0.3, None), (1.0, None), (1.0, (0,))])
def test_bayes_error_A_against_monte_carlo(source_t, axes):
    cfg = SRC.replace(source_t=source_t, source_axes=axes)
    exact = bayes_error_exact(cfg, "A")
    iv = bayes_error_monte_carlo(cfg, "A", n=40_000, seed=4, delta=ALPHA)
    assert iv.lower <= exact <= iv.upper, (exact, iv)
    if source_t == 1.0 and axes is None:
        assert exact == pytest.approx(1 - 1 / cfg.num_classes, abs=1e-12)
    assert exact > bayes_error_exact(cfg.replace(source_t=0.0), "A")
    assert pipeline.ground_truth(cfg)["bayes_A"] == exact


# ---------------------------------------------------------------------------------------------
# latent mutual informations
# ---------------------------------------------------------------------------------------------


def _mi_label_two_classes(D):
    """I(y; X) for two equally likely classes whose laws share a covariance and are D apart in
    Mahalanobis distance: log 2 - E log(1 + exp(-L)), L ~ N(D^2 / 2, D^2) (1-D integral)."""
    if D == 0:
        return 0.0

    def f(z):
        return stats.norm.pdf(z) * np.logaddexp(0.0, -(D * D / 2 + D * z))

    return math.log(2) - integrate.quad(f, -np.inf, np.inf, epsabs=1e-13)[0]


def test_latent_mi_against_exact_two_class_formula():
    """K = 2, attenuate on both sides: ``I(s_A; s_B) = I(s_A; s_B | y) + I(y; s_A) + I(y; s_B)
    - I(y; s_A, s_B)``, every term a closed form or a 1-D integral."""
    cfg = WorldConfig(
        num_classes=2,
        latent_dim=3,
        separation=2.5,
        sigma=1.0,
        d_A=3,
        d_B=3,
        t=0.3,
        source_t=0.6,
        source_axes=(0, 2),
    )
    alpha, beta = cfg.source_gain(), np.full(3, 0.7)
    rho = alpha * beta
    d = cfg.class_means()[0] - cfg.class_means()[1]
    D_a, D_b = np.linalg.norm(alpha * d), np.linalg.norm(beta * d)
    D_ab = math.sqrt(np.sum(d**2 * (alpha**2 - 2 * rho * alpha * beta + beta**2) / (1 - rho**2)))
    cond = -0.5 * np.sum(np.log(1 - rho**2))
    assert latent_conditional_mutual_information(cfg) == pytest.approx(cond, abs=1e-14)
    exact_by = _mi_label_two_classes(D_b)
    exact_ab = cond + _mi_label_two_classes(D_a) + exact_by - _mi_label_two_classes(D_ab)
    mi = latent_mutual_information(cfg, n=100_000, seed=1)
    zz = Z / 1.959963984540054
    assert abs(mi.mi_AB - exact_ab) < zz * mi.mi_AB_half, (mi, exact_ab)
    assert abs(mi.mi_By - exact_by) < zz * mi.mi_By_half, (mi, exact_by)


def test_conditional_mi_closed_form_against_the_sampler():
    """``I(s_A; s_B | y) = -1/2 sum log(1 - rho_j^2)`` against the mean of the true log density
    ratio on draws of the JAX sampler (float64 densities of G8's bivariate normals)."""
    cfg = SRC.replace(n_attenuated=5, t=0.4)  # every coordinate touched: finite
    smp = sample(make_world(cfg), jax.random.key(9), N)
    y = np.asarray(smp.y)
    a = np.asarray(smp.s_A, np.float64) - cfg.source_class_means()[y]
    b = np.asarray(smp.s_B, np.float64) - (cfg.class_means() * (1 - 0.4))[y]
    rho = cfg.source_gain() * 0.6
    v = cfg.sigma**2
    quad = (rho**2 * (a * a + b * b) - 2 * rho * a * b) / (2 * v * (1 - rho**2))
    log_ratio = np.sum(-0.5 * np.log(1 - rho**2) - quad, axis=1)
    exact = latent_conditional_mutual_information(cfg)
    assert abs(log_ratio.mean() - exact) < Z * log_ratio.std(ddof=1) / math.sqrt(N)
    assert latent_conditional_mutual_information(SRC) == math.inf  # coordinates 2, 3 shared
    assert latent_conditional_mutual_information(cfg.replace(channel="resample", t=0.5)) is None
    assert latent_conditional_mutual_information(cfg.replace(channel="mispair", t=1.0)) == 0.0


@pytest.mark.parametrize("channel", ["noise", "corrupt", "resample", "mispair"])
def test_latent_mi_two_seeds_agree(channel):
    cfg = SRC.replace(channel=channel, t=0.5, source_axes=tuple(range(5)))
    a = latent_mutual_information(cfg, n=30_000, seed=0)
    b = latent_mutual_information(cfg, n=30_000, seed=1)
    zz = Z / 1.959963984540054
    for m, h in (("mi_AB", "mi_AB_half"), ("mi_By", "mi_By_half")):
        gap = abs(getattr(a, m) - getattr(b, m))
        assert gap < zz * math.hypot(getattr(a, h), getattr(b, h)), (channel, m, a, b)
    assert 0 < a.mi_By < math.log(cfg.num_classes)


def test_mi_source_below_target_label_information_is_reachable():
    """A source that forgets its class axes beside a target that keeps them: the CCH latent rule
    (distil iff I(s_A; s_B) > I(s_B; y)) says "do not distil"."""
    cfg = WorldConfig(num_classes=4, latent_dim=4, t=0.1, source_t=0.9)
    mi = latent_mutual_information(cfg, n=50_000)
    assert mi.mi_AB + mi.mi_AB_half < mi.mi_By - mi.mi_By_half
    # without a source channel, I(s; s_B) >= I(s_B; y) (s_B depends on y only through s)
    plain = latent_mutual_information(WorldConfig(t=0.5), n=50_000)
    assert plain.mi_AB - plain.mi_AB_half > plain.mi_By + plain.mi_By_half
    assert latent_mutual_information(WorldConfig(t=0.0), n=1000).mi_AB == math.inf


def test_latent_mi_rejects_channel_without_pair_law():
    with pytest.raises(ValueError, match="rotate"):
        latent_mutual_information(SRC.replace(channel="rotate"), n=100)
    with pytest.raises(ValueError, match="^n"):
        latent_mutual_information(SRC, n=1)


# ---------------------------------------------------------------------------------------------
# the combined route (O5)
# ---------------------------------------------------------------------------------------------


def test_cmc_ssl_route_runs_in_a_sweep():
    from cmcd_theory.sweeps import sweep

    assert "cmc_ssl" in pipeline.METHODS and "cmc_ssl" in pipeline.TEACHER_METHODS
    assert "cmc_ssl" not in pipeline.BASELINES and pipeline.CMC_SSL_WEIGHT == 1.0
    tiny = pipeline.PipelineConfig(
        M=128,
        m=128,
        n=32,
        n_test=500,
        n_pop=128,
        tuple_size=64,
        probe_steps=20,
        ssl=TrainConfig(steps=20),
        distill=TrainConfig(steps=20),
    )
    wc = WorldConfig(num_classes=3, latent_dim=4, d_A=6, d_B=5, source_t=0.7)
    df = sweep.run_sweep(
        {"t": [0.2], "method": ["cmc_ssl"]}, world=wc, pipeline=tiny, seeds=[0], progress=False
    )
    row = df.iloc[0]
    assert np.isfinite(row["err_B"]) and 0 <= row["err_B"] <= 1
    assert np.isfinite(row["distill_gap"]) and np.isfinite(row["err_A_head"])
    assert row["bayes_A"] == bayes_error_exact(wc, "A")
