"""Tests of cmcd_theory.learn.divergences (docs/theory.md G2, G5, B1).

Every statistical check below fails, when the code is right, with a probability it states:

* closed-form ``TV_latent`` against Monte Carlo: a ``1 - DELTA`` Hoeffding interval each;
* K = 2 closed-form Bayes errors against an independent Monte Carlo of the posterior argmax:
  the error count is exactly Binomial(n, eps*), accepted on its central ``1 - DELTA`` range;
* B1a with K = 4: fails only if one of two ``1 - DELTA`` intervals misses;
* the classifier lower bound: certified at ``1 - 1e-3`` per call.

With ``DELTA = 1e-4`` and about 110 such checks, plus 5 certificates at 1e-3, a union bound
puts the probability that a correct implementation fails this file below 2%; the Hoeffding
intervals are conservative, so the real probability is far smaller (the Binomial checks, about
30 of them, are exact). All seeds are fixed, so a run is reproducible.
"""

import math

import jax
import numpy as np
import pytest
from scipy import special, stats

from cmcd_theory import worlds
from cmcd_theory.learn.divergences import (
    bayes_error,
    bayes_error_exact,
    bayes_error_monte_carlo,
    gaussian_axes_bayes_error,
    gaussian_mixture_tv,
    latent_logpdf,
    pair_agreement,
    tv_classifier_lower_bound,
    tv_latent,
    tv_latent_monte_carlo,
    tv_latent_per_class,
    tv_monte_carlo,
)
from cmcd_theory.worlds import DISTANCE_CHANNELS as CHANNELS
from cmcd_theory.worlds import WorldConfig, make_world, sample

DELTA = 1e-4
T_GRID = (0.0, 1 / 3, 2 / 3, 1.0)
N_MC = 20_000  # numpy Monte Carlo draws (per class where per class)
# JAX samples: the size and dimensions of tests/test_worlds.py, so that a joint run compiles
# JAX's eager operations once
N_JAX = 12_000

# K = 4 with J a strict subset (classes 2, 3 are not attenuated; rotate moves classes 0, 1
# only), and K = 2 with a different sigma and a larger noise scale.
K4 = WorldConfig(
    num_classes=4,
    latent_dim=5,
    separation=3.5,
    sigma=1.0,
    n_attenuated=2,
    eta_max=3.0,
    d_A=7,
    d_B=6,
)
K2 = WorldConfig(num_classes=2, latent_dim=5, separation=2.5, sigma=0.7, eta_max=1.5, d_A=7, d_B=6)


# ---------------------------------------------------------------------------------------------
# an independent statement of the G2 laws of s_B | y, written from docs/theory.md
# ---------------------------------------------------------------------------------------------


def _means(cfg):
    mu = np.zeros((cfg.num_classes, cfg.latent_dim))
    for c in range(cfg.num_classes):
        mu[c, c] = cfg.separation / math.sqrt(2)
    return mu


def _g2_logpdf(cfg, t, y, x):
    """log density of s_B | y at the rows of x, from the table of G2."""
    mu, k, sig = _means(cfg)[y], cfg.latent_dim, cfg.sigma

    def iso(m, v):
        return stats.multivariate_normal(m, v * np.eye(k)).logpdf(x)

    if cfg.channel == "attenuate":
        J = np.arange(k) < cfg.n_attenuated
        return iso(mu - t * J * mu, sig**2)
    if cfg.channel == "noise":
        return iso(mu, sig**2 + (t * cfg.eta_max) ** 2)
    if cfg.channel == "corrupt":
        return np.log((1 - t) * np.exp(iso(mu, sig**2)) + t * np.exp(iso(np.zeros(k), sig**2)))
    a = t * math.pi / 2
    R = np.eye(k)
    R[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return iso(R @ mu, sig**2)


@pytest.mark.parametrize("cfg", [K4, K2], ids=["K4", "K2"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_latent_logpdf_is_the_g2_law(cfg, channel):
    cfg = cfg.replace(channel=channel)
    x = np.random.default_rng(0).normal(scale=2.0, size=(50, cfg.latent_dim))
    for t in (0.0, 0.3, 1.0):
        for y in range(cfg.num_classes):
            np.testing.assert_allclose(
                latent_logpdf(cfg, "B", y, x, t), _g2_logpdf(cfg, t, y, x), rtol=1e-10, atol=1e-10
            )
            np.testing.assert_allclose(
                latent_logpdf(cfg, "A", y, x, t), _g2_logpdf(cfg, 0.0, y, x), rtol=1e-10, atol=1e-10
            )


# ---------------------------------------------------------------------------------------------
# closed-form TV against Monte Carlo
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [K4, K2], ids=["K4", "K2"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_closed_form_tv_within_monte_carlo_interval(cfg, channel):
    cfg = cfg.replace(channel=channel)
    for t in T_GRID:
        exact = tv_latent(cfg, t)
        mc = tv_latent_monte_carlo(cfg, t, n=N_MC, seed=1, delta=DELTA)
        assert mc.lower <= exact <= mc.upper, (t, exact, mc)
        assert 0.0 <= exact <= 1.0
    assert tv_latent(cfg, 0.0) == 0.0
    # the distance grows with t on every channel (rotate: the angle grows up to pi / 2)
    tvs = [tv_latent(cfg, t) for t in T_GRID]
    assert all(a < b for a, b in zip(tvs, tvs[1:])), tvs


@pytest.mark.parametrize("channel", ["attenuate", "rotate"])
def test_per_class_tv_against_independent_monte_carlo(channel):
    """Per class, with tv_monte_carlo fed by a sampler and densities written in this file.

    K4 makes the classes differ (J and the rotation plane hold only classes 0 and 1), so a
    class average cannot hide a wrong class. Levels: DELTA per class and t.
    """
    cfg = K4.replace(channel=channel)
    rng = np.random.default_rng(7)
    mu, k = _means(cfg), cfg.latent_dim
    for t in (0.5, 1.0):
        per_class = tv_latent_per_class(cfg, t)
        assert per_class[2] == per_class[3] == 0.0 and per_class[0] > 0.1
        for y in range(cfg.num_classes):
            mc = tv_monte_carlo(
                lambda n, r: mu[y] + cfg.sigma * r.standard_normal((n, k)),
                lambda x: _g2_logpdf(cfg, 0.0, y, x),
                lambda x: _g2_logpdf(cfg, t, y, x),
                n=N_MC,
                rng=rng,
                delta=DELTA,
            )
            assert mc.lower <= per_class[y] <= mc.upper, (y, t, per_class[y], mc)
        assert tv_latent(cfg, t) == pytest.approx(per_class.mean(), abs=1e-15)


def test_noise_tv_matches_gaussian_mixture_tv():
    """Two independent codes: the chi-square closed form of G2 and gaussian_mixture_tv."""
    cfg = K2.replace(channel="noise")
    for t in (0.2, 0.6, 1.0):
        v = cfg.sigma**2 + (t * cfg.eta_max) ** 2
        eye = np.eye(cfg.latent_dim)
        mc = gaussian_mixture_tv(
            _means(cfg),
            np.stack([cfg.sigma**2 * eye] * 2),
            _means(cfg),
            np.stack([v * eye] * 2),
            n=N_MC,
            seed=3,
            delta=DELTA,
        )
        assert mc.lower <= tv_latent(cfg, t) <= mc.upper


# ---------------------------------------------------------------------------------------------
# Bayes errors and B1a
# ---------------------------------------------------------------------------------------------


def _binomial_accept(count, n, p):
    lo, hi = stats.binom.ppf(DELTA / 2, n, p), stats.binom.isf(DELTA / 2, n, p)
    return lo <= count <= hi


@pytest.mark.parametrize("channel", CHANNELS)
def test_k2_closed_form_bayes_errors_against_posterior_argmax(channel):
    """Draw (y, s, s_B) with the world's own JAX sampler; classify each latent by the argmax of
    the G2 densities of this file (uniform prior); the number of errors is Binomial(n, eps*)."""
    cfg = K2.replace(channel=channel)
    world = make_world(cfg)
    for i, t in enumerate(T_GRID):
        smp = sample(world, jax.random.key(100 + i), N_JAX, t)
        y = np.asarray(smp.y)
        for modality, lat, tt in (("A", smp.s, 0.0), ("B", smp.s_B, t)):
            lat = np.asarray(lat, np.float64)
            logp = np.stack([_g2_logpdf(cfg, tt, c, lat) for c in range(2)], axis=1)
            errors = int(np.sum(np.argmax(logp, axis=1) != y))
            eps = bayes_error(cfg, modality, t)
            assert eps.lower == eps.estimate == eps.upper  # closed form: an exact number
            assert _binomial_accept(errors, N_JAX, eps.estimate), (modality, t, errors / N_JAX, eps)


@pytest.mark.parametrize("channel", CHANNELS)
def test_b1a_k2_closed_forms(channel):
    """eps*_B <= eps*_A + TV_latent (B1a); exact numbers, so only float rounding is allowed."""
    for cfg in (K2, K2.replace(separation=1.0, sigma=1.3), K2.replace(n_attenuated=1)):
        cfg = cfg.replace(channel=channel)
        a = bayes_error(cfg, "A").estimate
        assert a == pytest.approx(special.ndtr(-cfg.separation / (2 * cfg.sigma)), abs=1e-15)
        for t in np.linspace(0, 1, 11):
            b = bayes_error(cfg, "B", t).estimate
            assert b <= a + tv_latent(cfg, t) + 1e-12, (t, a, b, tv_latent(cfg, t))
            assert b >= a - 1e-12  # no channel adds information


@pytest.mark.parametrize("channel", CHANNELS)
def test_b1a_k4_monte_carlo(channel):
    """B1a with K = 4 on the interval ends: lower(eps*_B) <= upper(eps*_A) + TV_latent."""
    cfg = K4.replace(channel=channel)
    a = bayes_error(cfg, "A", n=N_MC, seed=5, delta=DELTA)
    assert a.upper - a.lower < 0.04
    for t in T_GRID:
        b = bayes_error(cfg, "B", t, n=N_MC, seed=6, delta=DELTA)
        assert b.lower <= a.upper + tv_latent(cfg, t), (t, a, b, tv_latent(cfg, t))
    # at t = 1 every channel but rotate loses information: eps*_B is clearly above eps*_A
    if channel != "rotate":
        assert b.lower > a.upper


# ---------------------------------------------------------------------------------------------
# certified lower bound from a two-sample classifier
# ---------------------------------------------------------------------------------------------


def test_classifier_lower_bound_below_exact_tv():
    """``lower <= TV`` (certified at 1 - delta per call; 5 cases at delta = 1e-3, so a correct
    bound fails here with probability below 0.5%), and informative where TV is large."""
    n, delta = N_JAX, 1e-3
    cases = [
        ("attenuate", 1.0),
        ("attenuate", 0.0),
        ("noise", 0.5),
        ("corrupt", 1.0),
        ("rotate", 1.0),
    ]
    results = {}
    for i, (channel, t) in enumerate(cases):
        cfg = K4.replace(channel=channel, t=t, n_attenuated=K4.latent_dim)
        smp = sample(make_world(cfg), jax.random.key(40 + i), n)
        # P = law(s, y), Q = law(s_B, y): their TV is TV_latent (B1)
        res = tv_classifier_lower_bound(
            jax.random.key(50 + i),
            smp.s,
            smp.s_B,
            smp.y,
            smp.y,
            num_classes=cfg.num_classes,
            delta=delta,
        )
        exact = tv_latent(cfg)
        assert res["n_test"] == n // 2
        assert res["slack"] == pytest.approx(2 * math.sqrt(math.log(1 / delta) / n))
        assert res["lower"] <= exact, (channel, t, res, exact)
        results[channel, t] = (res, exact)
    res, exact = results["attenuate", 1.0]
    assert exact > 0.7 and res["lower"] > 0.3, (res, exact)
    # the same key gives the same certificate
    cfg = K4.replace(channel="noise", t=0.5, n_attenuated=K4.latent_dim)
    smp = sample(make_world(cfg), jax.random.key(42), n)
    again = tv_classifier_lower_bound(
        jax.random.key(52), smp.s, smp.s_B, smp.y, smp.y, num_classes=cfg.num_classes, delta=delta
    )
    assert again == results["noise", 0.5][0]


# ---------------------------------------------------------------------------------------------
# gaussian_mixture_tv
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m1, m2, s", [(0.0, 1.0, 1.0), (-1.0, 2.0, 0.5), (2.0, 2.0, 1.0), (0.0, 0.3, 2.0)]
)
def test_gaussian_mixture_tv_one_dimensional_closed_form(m1, m2, s):
    """TV(N(m1, s^2), N(m2, s^2)) = 2 Phi(abs(m1 - m2) / 2 s) - 1."""
    exact = 2 * special.ndtr(abs(m1 - m2) / (2 * s)) - 1
    mc = gaussian_mixture_tv([[m1]], [[[s**2]]], [[m2]], [[[s**2]]], n=N_MC, seed=0, delta=DELTA)
    assert mc.lower <= exact <= mc.upper, (exact, mc)
    if m1 == m2:
        assert mc.estimate == pytest.approx(0.0, abs=1e-12)  # 1 - exp(0), up to rounding


def test_gaussian_mixture_tv_class_average():
    """Two classes with different TVs: the class average of the two closed forms."""
    exact = np.mean([2 * special.ndtr(1 / 2) - 1, 2 * special.ndtr(3 / 2) - 1])
    mc = gaussian_mixture_tv(
        [[0.0], [0.0]],
        [[[1.0]], [[1.0]]],
        [[1.0], [3.0]],
        [[[1.0]], [[1.0]]],
        n=N_MC,
        seed=0,
        delta=DELTA,
    )
    assert mc.lower <= exact <= mc.upper
    assert mc.n == 2 * N_MC
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_mixture_tv([[0.0]], [[[0.0]]], [[1.0]], [[[1.0]]])


# ---------------------------------------------------------------------------------------------
# validation and determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_invalid_t_raises(t):
    for call in (
        lambda: tv_latent(K4, t),
        lambda: tv_latent_per_class(K4, t),
        lambda: bayes_error(K4, "B", t, n=100),
        lambda: bayes_error(K2, "B", t),
    ):
        with pytest.raises(ValueError, match=r"^t must"):
            call()


@pytest.mark.parametrize("channel", ["attenuate", "corrupt"])
def test_monte_carlo_tv_rejects_invalid_t(channel):
    with pytest.raises(ValueError, match=r"^t must"):
        tv_latent_monte_carlo(K4.replace(channel=channel), 1.5, n=100)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.5, 2.0])
def test_invalid_delta_raises(delta):
    rng = np.random.default_rng(0)
    calls = [
        lambda: tv_latent_monte_carlo(K4, 0.5, n=100, delta=delta),
        lambda: bayes_error(K4, "B", 0.5, n=100, delta=delta),
        lambda: bayes_error(K2, "B", 0.5, delta=delta),
        lambda: tv_monte_carlo(
            lambda n, r: r.standard_normal((n, 1)),
            lambda x: x[:, 0],
            lambda x: x[:, 0],
            n=10,
            rng=rng,
            delta=delta,
        ),
        lambda: gaussian_mixture_tv([[0.0]], [[[1.0]]], [[1.0]], [[[1.0]]], n=10, delta=delta),
        lambda: tv_classifier_lower_bound(
            jax.random.key(0), np.zeros((4, 1)), np.ones((4, 1)), delta=delta
        ),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^delta must"):
            call()


def test_invalid_modality_raises():
    with pytest.raises(ValueError, match="^modality"):
        bayes_error(K2, "C")
    with pytest.raises(ValueError, match="^modality"):
        latent_logpdf(K2, "C", 0, np.zeros((1, K2.latent_dim)))


def test_same_seed_same_numbers():
    cfg = K4.replace(channel="corrupt")

    def mc(seed):
        return tv_latent_monte_carlo(cfg, 0.5, n=2000, seed=seed)

    assert mc(3) == mc(3) and mc(3) != mc(4)

    def mcb(seed):
        return bayes_error_monte_carlo(cfg, "B", 0.5, n=2000, seed=seed)

    assert mcb(3) == mcb(3) and mcb(3) != mcb(4)
    args = ([[0.0], [1.0]], [[[1.0]], [[2.0]]], [[1.0], [1.0]], [[[1.0]], [[1.0]]])
    assert gaussian_mixture_tv(*args, n=2000, seed=1) == gaussian_mixture_tv(*args, n=2000, seed=1)
    assert gaussian_mixture_tv(*args, n=2000, seed=1) != gaussian_mixture_tv(*args, n=2000, seed=2)


# ---------------------------------------------------------------------------------------------
# G5b: exact Bayes errors by quadrature, for every channel
# ---------------------------------------------------------------------------------------------


def _simpson_bayes(a, v, n_grid=200_001):
    """G5b's integral by composite Simpson on [z_0, 12] (an independent numerical method)."""
    a, sv = np.asarray(a, float), math.sqrt(v)
    zero = a == 0
    correct = 0.0
    for y, ay in enumerate(a):
        pos = np.delete(a, y)
        pos = pos[pos > 0]
        if ay == 0:
            correct += np.prod(special.ndtr(pos / (2 * sv))) / zero.sum()
            continue
        lo = -ay / (2 * sv) if zero.any() else -12.0
        z = np.linspace(lo, 12.0, n_grid)
        f = stats.norm.pdf(z) * np.prod(
            special.ndtr((ay**2 + pos[:, None] ** 2 + 2 * ay * sv * z) / (2 * pos[:, None] * sv)),
            axis=0,
        )
        h = z[1] - z[0]
        correct += h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 1 - correct / a.size


def test_quadrature_known_values_and_accuracy():
    """THEORY.md's quoted number, the K = 2 closed form, an independent Simpson rule to 1e-8."""
    eps, err = gaussian_axes_bayes_error([3.5 / math.sqrt(2)] * 4, 1.0, return_error=True)
    assert round(eps, 6) == 0.096829 and err < 1e-10
    assert gaussian_axes_bayes_error([2.5 / math.sqrt(2)] * 2, 0.49) == pytest.approx(
        special.ndtr(-2.5 / 1.4), abs=1e-12
    )
    for a, v in (
        ([2.47] * 4, 1.0),
        ([2.47, 2.47, 0.6, 0.0, 0.0], 1.7),
        ([0.0, 0.0, 0.0], 1.0),
        ([1.0, 2.0, 3.0], 0.5),
    ):
        assert gaussian_axes_bayes_error(a, v) == pytest.approx(_simpson_bayes(a, v), abs=1e-8), (
            a,
            v,
        )
    assert gaussian_axes_bayes_error([0.0, 0.0, 0.0], 1.0) == pytest.approx(2 / 3, abs=1e-15)
    for bad in ([1.0], [-1.0, 1.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="^a "):
            gaussian_axes_bayes_error(bad, 1.0)
    with pytest.raises(ValueError, match="^v "):
        gaussian_axes_bayes_error([1.0, 1.0], 0.0)


@pytest.mark.parametrize("channel", worlds.BUILTIN_CHANNELS)
def test_quadrature_bayes_within_monte_carlo_interval(channel):
    """Exact eps*_B (G5b) against the Monte Carlo posterior argmax, K = 4 with J = {0, 1} (so
    attenuate at t = 1 has zero-norm classes, the tie rule) and K = 2; level DELTA each."""
    for cfg in (K4, K2):
        cfg = cfg.replace(channel=channel)
        for t in (0.5, 1.0):
            exact = bayes_error_exact(cfg, "B", t)
            mc = bayes_error_monte_carlo(cfg, "B", t, n=N_MC, seed=11, delta=DELTA)
            assert mc.lower <= exact <= mc.upper, (t, exact, mc)
        assert bayes_error_exact(cfg, "A") == bayes_error_exact(cfg, "B", 0.0)
    # B1a holds on the exact numbers (float rounding only)
    for t in np.linspace(0, 1, 6):
        assert bayes_error_exact(K4.replace(channel=channel), "B", t) <= (
            bayes_error_exact(K4, "A") + tv_latent(K4.replace(channel=channel), t) + 1e-12
        )


@pytest.mark.parametrize("channel", worlds.PAIRING_CHANNELS)
def test_pairing_channels_ground_truth(channel):
    cfg = K4.replace(channel=channel)
    for t in T_GRID:
        assert tv_latent(cfg, t) == 0.0
        assert bayes_error_exact(cfg, "B", t) == bayes_error_exact(cfg, "A")
        assert pair_agreement(cfg, t) == (1.0 - t if channel == "mispair" else 1.0)
