"""Tests of cmcd_theory.worlds (docs/theory.md G1-G4).

* validation: every invalid config raises a ValueError whose message names the parameter;
* determinism: the same key gives the same samples, different keys different ones;
* JAX: every sampler runs under ``jit`` and ``vmap`` (over keys, and over a traced ``t``) and
  agrees with the plain call;
* G2: the empirical law of ``s_B | y`` matches the table of G2 for every channel. Where that
  law is Gaussian the checks are exact: a sample mean of n draws of N(m, v) is N(m, v / n) and
  ``(n - 1) S^2 / v`` is chi-square(n - 1); a count of replaced rows is Binomial(n, t). Each
  check has a two-sided level of ``ALPHA = 1e-6``; there are about 190 of them, so a correct
  sampler fails them with probability below 2e-4 (union bound);
* t = 0 gives ``s_B = s`` for every channel;
* G3: linear maps have orthonormal columns; the nonlinear map is inverted explicitly;
  ``input_radius`` exceeds every norm of a large sample of observations and views (a correct
  radius fails this with probability below 6e-4).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cmcd_theory import worlds
from cmcd_theory.worlds import (
    DISTANCE_CHANNELS as CHANNELS,
)
from cmcd_theory.worlds import (
    WorldConfig,
    apply_channel,
    make_world,
    observe,
    sample,
    sample_latents,
    sample_pairs,
    sample_source,
    sample_target_labeled,
    sample_target_latents,
    views,
)

N = 12_000  # one sample size everywhere: eager JAX compiles each op once per shape
N_MOMENTS = N  # sample size of the statistical tests
ALPHA = 1e-6  # two-sided level of each statistical check below
Z = stats.norm.isf(ALPHA / 2)  # ~4.9 standard errors

# A small world that keeps every test fast; K < latent_dim and J a strict subset, so that the
# per-class and per-coordinate structure of the channels is visible.
SMALL = WorldConfig(
    num_classes=3,
    latent_dim=5,
    separation=3.0,
    sigma=0.8,
    n_attenuated=2,
    eta_max=2.0,
    d_A=7,
    d_B=6,
    view_noise=0.4,
)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, name",
    [
        (dict(t=-0.1), "t"),
        (dict(t=1.5), "t"),
        (dict(t=float("nan")), "t"),
        (dict(num_classes=9, latent_dim=8), "num_classes"),
        (dict(num_classes=1), "num_classes"),
        (dict(d_A=7, latent_dim=8), "d_A"),
        (dict(d_B=7, latent_dim=8), "d_B"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=0.0), "sigma"),
        (dict(separation=-2.0), "separation"),
        (dict(eta_max=-0.5), "eta_max"),
        (dict(view_noise=-0.1), "view_noise"),
        (dict(obs_noise=-0.1), "obs_noise"),
        (dict(channel="blur"), "channel"),
        (dict(observation="quadratic"), "observation"),
        (dict(n_attenuated=0), "n_attenuated"),
        (dict(n_attenuated=9, latent_dim=8), "n_attenuated"),
        (dict(latent_dim=0), "latent_dim"),
    ],
)
def test_invalid_config_raises_naming_parameter(changes, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        WorldConfig(**changes)


def test_valid_boundaries_are_accepted():
    for t in (0, 0.0, 1, 1.0):
        assert WorldConfig(t=t).t == float(t)
    cfg = WorldConfig(num_classes=8, latent_dim=8, d_A=8, d_B=8, n_attenuated=8, eta_max=0.0)
    assert cfg.n_attenuated == 8
    assert WorldConfig(latent_dim=6, d_A=6, d_B=6).n_attenuated == 6  # default J = all of [k]
    with pytest.raises(ValueError, match="^sigma"):
        WorldConfig().replace(sigma=-1.0)  # replace validates again


def test_default_attenuated_set_follows_latent_dim():
    """J = all coordinates by default, also after ``replace(latent_dim=...)``."""
    assert WorldConfig(latent_dim=8).replace(latent_dim=16).n_attenuated == 16
    assert WorldConfig(latent_dim=8).replace(latent_dim=4, num_classes=4).n_attenuated == 4


def test_samplers_reject_bad_sizes_and_modality():
    world = make_world(SMALL)
    key = jax.random.key(0)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="^n "):
            sample(world, key, n)
    with pytest.raises(ValueError, match="^modality"):
        observe(world, jnp.zeros((2, SMALL.latent_dim)), "C")
    with pytest.raises(ValueError, match="^config"):
        make_world(SMALL.as_dict())


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def _all_outputs(world, key, n=N):
    """Every sampler's output for one key, as a flat list of arrays."""
    ks = jax.random.split(key, 6)
    smp = sample(world, ks[0], n)
    return [
        *smp,
        sample_source(world, ks[1], n),
        *sample_pairs(world, ks[2], n),
        *sample_target_labeled(world, ks[3], n),
        sample_target_latents(world, ks[4], n),
        *views(world, ks[5], smp.s, "A"),
        *views(world, ks[5], smp.s_B, "B"),
    ]


@pytest.mark.parametrize(
    "channel, observation",
    [
        ("attenuate", "linear"),
        ("noise", "nonlinear"),
        ("corrupt", "linear"),
        ("rotate", "nonlinear"),
    ],
)
def test_same_key_same_samples_different_key_different(channel, observation):
    cfg = SMALL.replace(channel=channel, observation=observation, t=0.5, obs_noise=0.1)
    w1, w2 = make_world(cfg), make_world(cfg)
    for name in w1.maps:
        np.testing.assert_array_equal(w1.maps[name], w2.maps[name])
    a = _all_outputs(w1, jax.random.key(3))
    b = _all_outputs(w2, jax.random.key(3))
    c = _all_outputs(w1, jax.random.key(4))
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    # the map seed is part of the world: another seed gives other maps
    w3 = make_world(cfg.replace(map_seed=1))
    assert not np.allclose(w1.maps["QA"], w3.maps["QA"])


# ---------------------------------------------------------------------------------------------
# jit and vmap
# ---------------------------------------------------------------------------------------------


def _assert_tree_close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_samplers_under_jit_and_vmap():
    """One jitted program vmaps ``apply_channel`` over a traced t for every channel, vmaps
    ``sample`` jointly over keys and a traced t, and draws views; every output must equal the
    plain (eager, Python-float t) call."""
    wlds = [make_world(SMALL.replace(channel=c, t=0.3, observation="nonlinear")) for c in CHANNELS]
    key = jax.random.key(11)
    keys = jax.random.split(key, 3)
    ts = jnp.array([0.0, 0.25, 1.0])
    s = sample(wlds[0], key, N).s
    w = wlds[CHANNELS.index("corrupt")]  # the channel with the most random draws

    def program(wlds, w, key, keys, ts, s):
        return dict(
            channel_over_t=[jax.vmap(lambda t: apply_channel(v, key, s, t))(ts) for v in wlds],
            sample_over_key_t=jax.vmap(lambda k, t: sample(w, k, N, t))(keys, ts),
            views=views(w, key, s, "B"),
        )

    got = jax.jit(program)(wlds, w, key, keys, ts, s)
    for j, v in enumerate(wlds):
        np.testing.assert_allclose(got["channel_over_t"][j][0], s, rtol=1e-6, atol=1e-6)  # t = 0
        for i, t in enumerate(np.asarray(ts).tolist()):
            np.testing.assert_allclose(
                got["channel_over_t"][j][i], apply_channel(v, key, s, t), rtol=1e-5, atol=1e-5
            )
        # an explicit t overrides the config's
        np.testing.assert_array_equal(sample(v, key, N, v.config.t).s_B, sample(v, key, N).s_B)
    for i, t in enumerate(np.asarray(ts).tolist()):
        _assert_tree_close(
            jax.tree_util.tree_map(lambda x: x[i], got["sample_over_key_t"]),
            sample(w, keys[i], N, t),
        )
    _assert_tree_close(got["views"], views(w, key, s, "B"))


# ---------------------------------------------------------------------------------------------
# G2: the law of s_B given y
# ---------------------------------------------------------------------------------------------


def _check_gaussian_moments(x, mean, var):
    """Exact tests that the rows of x (n, k) are i.i.d. N(mean, var I) coordinate by coordinate.

    Sample mean ~ N(mean, var / n); (n - 1) S^2 / var ~ chi-square(n - 1). Level ALPHA each.
    """
    n = x.shape[0]
    x = np.asarray(x, np.float64)
    z = (x.mean(0) - mean) / math.sqrt(var / n)
    assert np.all(np.abs(z) < Z), f"means off by {z} standard errors"
    q = (n - 1) * x.var(0, ddof=1) / var
    lo, hi = stats.chi2.ppf(ALPHA / 2, n - 1), stats.chi2.isf(ALPHA / 2, n - 1)
    assert np.all((q > lo) & (q < hi)), f"variance ratios {x.var(0, ddof=1) / var}"


def _binomial_accept(count, n, p):
    lo, hi = stats.binom.ppf(ALPHA / 2, n, p), stats.binom.isf(ALPHA / 2, n, p)
    return lo <= count <= hi


@pytest.mark.parametrize("t", [0.4, 1.0])
def test_attenuate_law(t):
    cfg = SMALL.replace(channel="attenuate")
    world = make_world(cfg)
    y, s = sample_latents(world, jax.random.key(1), N_MOMENTS)
    s_b = np.asarray(apply_channel(world, jax.random.key(2), s, t))
    s, y = np.asarray(s), np.asarray(y)
    J = np.arange(cfg.latent_dim) < cfg.n_attenuated
    # outside J the latent passes unchanged
    np.testing.assert_array_equal(s_b[:, ~J], s[:, ~J])
    mu = cfg.class_means()
    for c in range(cfg.num_classes):
        # G2: s_B | y ~ N(mu_y - t P_J mu_y, sigma^2 I)
        _check_gaussian_moments(s_b[y == c], mu[c] - t * J * mu[c], cfg.sigma**2)


@pytest.mark.parametrize("t", [0.4, 1.0])
def test_noise_law(t):
    cfg = SMALL.replace(channel="noise")
    world = make_world(cfg)
    y, s = sample_latents(world, jax.random.key(1), N_MOMENTS)
    s_b = np.asarray(apply_channel(world, jax.random.key(2), s, t))
    y = np.asarray(y)
    eta = t * cfg.eta_max
    for c in range(cfg.num_classes):
        # G2: s_B | y ~ N(mu_y, (sigma^2 + eta^2) I), eta = t eta_max
        _check_gaussian_moments(s_b[y == c], cfg.class_means()[c], cfg.sigma**2 + eta**2)


@pytest.mark.parametrize("t", [0.3, 1.0])
def test_corrupt_law(t):
    cfg = SMALL.replace(channel="corrupt")
    world = make_world(cfg)
    y, s = sample_latents(world, jax.random.key(1), N_MOMENTS)
    s_b = np.asarray(apply_channel(world, jax.random.key(2), s, t))
    s, y = np.asarray(s), np.asarray(y)
    replaced = np.any(s_b != s, axis=1)
    # a kept row is the clean latent, bit for bit
    np.testing.assert_array_equal(s_b[~replaced], s[~replaced])
    # mixture weight: the number of replaced rows is Binomial(n, t), in every class
    assert _binomial_accept(replaced.sum(), len(y), t), replaced.mean()
    for c in range(cfg.num_classes):
        assert _binomial_accept(replaced[y == c].sum(), int((y == c).sum()), t)
        # a replaced row is a label-free draw N(0, sigma^2 I)
        _check_gaussian_moments(s_b[replaced & (y == c)], 0.0, cfg.sigma**2)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
def test_rotate_exact(t):
    cfg = SMALL.replace(channel="rotate")
    world = make_world(cfg)
    _, s = sample_latents(world, jax.random.key(1), N)
    s_b = np.asarray(apply_channel(world, jax.random.key(2), s, t), np.float64)
    s = np.asarray(s, np.float64)
    a = t * math.pi / 2  # R_t: angle t pi / 2 in the plane of e_1, e_2
    expect = s.copy()
    expect[:, 0] = math.cos(a) * s[:, 0] - math.sin(a) * s[:, 1]
    expect[:, 1] = math.sin(a) * s[:, 0] + math.cos(a) * s[:, 1]
    np.testing.assert_allclose(s_b, expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s_b[:, 2:], s[:, 2:])
    np.testing.assert_allclose(np.linalg.norm(s_b, axis=1), np.linalg.norm(s, axis=1), rtol=1e-5)


@pytest.mark.parametrize("channel", CHANNELS)
def test_t_zero_is_identity(channel):
    """t = 0: s_B = s, from the config's t and from an explicit t = 0 (the traced t = 0 of a
    jitted sampler is checked in test_samplers_under_jit_and_vmap)."""
    world = make_world(SMALL.replace(channel=channel, t=0.0))
    world_half = make_world(SMALL.replace(channel=channel, t=0.5))
    for key in jax.random.split(jax.random.key(5), 3):
        for smp in (sample(world, key, N), sample(world_half, key, N, 0.0)):
            if channel == "rotate":  # s R_0^T: a product with the identity matrix
                np.testing.assert_allclose(smp.s_B, smp.s, rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(smp.s_B, smp.s)


# ---------------------------------------------------------------------------------------------
# G3: observation maps; G4 views
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("observation", ["linear", "nonlinear"])
def test_maps_have_orthonormal_columns(observation):
    world = make_world(SMALL.replace(observation=observation))
    k = SMALL.latent_dim
    for name, q in world.maps.items():
        q = np.asarray(q, np.float64)
        assert q.shape[1] == k
        np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-5, err_msg=name)
    assert world.maps["QA"].shape == (SMALL.d_A, k) and world.maps["QB"].shape == (SMALL.d_B, k)
    if observation == "nonlinear":  # square first layers: orthogonal both ways
        for name in ("QA1", "QB1"):
            q = np.asarray(world.maps[name], np.float64)
            np.testing.assert_allclose(q @ q.T, np.eye(k), atol=1e-5)


@pytest.mark.parametrize("channel", ["attenuate", "rotate"])
def test_observation_maps_are_inverted_exactly(channel):
    """x determines its latent (G3): invert g explicitly and recover s and s_B."""
    assert worlds.LEAKY_SLOPE > 0  # strictly monotone, so invertible
    for observation in ("linear", "nonlinear"):
        world = make_world(SMALL.replace(channel=channel, t=0.6, observation=observation))
        smp = sample(world, jax.random.key(8), N)
        for x, s, m in ((smp.x_A, smp.s, "A"), (smp.x_B, smp.s_B, "B")):
            z = np.asarray(x, np.float64) @ np.asarray(world.maps["Q" + m], np.float64)
            if observation == "nonlinear":
                u = np.where(z >= 0, z, z / worlds.LEAKY_SLOPE)
                z = u @ np.asarray(world.maps["Q" + m + "1"], np.float64)
            np.testing.assert_allclose(z, s, atol=1e-4)


@pytest.mark.parametrize("channel", CHANNELS)
def test_input_radius_exceeds_observation_norms(channel):
    """Every observation and view of a large sample lies inside ``input_radius``.

    Per observation the radius fails with probability at most ``coverage``; this file checks
    4 channels x 2 observation kinds x 6 x 12,000 = 576,000 observations at coverage 1e-9, so
    a correct radius fails here with probability below 6e-4 (union bound).
    """
    n, coverage = N_MOMENTS, 1e-9
    for observation, obs_noise in (("linear", 0.0), ("nonlinear", 0.2)):
        cfg = SMALL.replace(channel=channel, t=1.0, observation=observation, obs_noise=obs_noise)
        world = make_world(cfg)
        r = cfg.input_radius(coverage)
        assert r > cfg.input_radius(1e-3)  # a smaller coverage needs a larger radius
        k1, k2, k3, k4 = jax.random.split(jax.random.key(21), 4)
        smp = sample(world, k1, n)
        s_b = sample_target_latents(world, k2, n)
        xs = [smp.x_A, smp.x_B, *views(world, k3, smp.s, "A"), *views(world, k4, s_b, "B")]
        norms = np.concatenate([np.linalg.norm(np.asarray(x, np.float64), axis=1) for x in xs])
        assert norms.size == 6 * n
        assert norms.max() < r, (norms.max(), r)


# ---------------------------------------------------------------------------------------------
# channels as an extension point; G7 pairing channels; G6 nuisance
# ---------------------------------------------------------------------------------------------


class _Shift(worlds.Channel):
    """A user channel: s_B = s + 2 t e_1 (exact TV per class 2 Phi(t / sigma) - 1)."""

    name = "test_shift"

    def apply(self, world, key, y, s, t):
        return y, s.at[:, 0].add(2.0 * t)

    def tv_latent_per_class(self, config, t):
        return np.full(config.num_classes, 2 * stats.norm.cdf(t / config.sigma) - 1)


@pytest.fixture
def shift_channel():
    ch = worlds.register_channel(_Shift())
    yield ch
    worlds.unregister_channel(ch.name)


def test_registry_validates_and_user_channel_runs(shift_channel):
    assert "test_shift" in worlds.CHANNELS and set(worlds.BUILTIN_CHANNELS) <= set(worlds.CHANNELS)
    cfg = SMALL.replace(channel="test_shift", t=0.5)
    assert hash(cfg) == hash(SMALL.replace(channel="test_shift", t=0.5))  # static jit argument
    w = make_world(cfg)
    smp = jax.jit(sample, static_argnums=2)(w, jax.random.key(0), 64)
    np.testing.assert_allclose(smp.s_B[:, 0], smp.s[:, 0] + 1.0, atol=1e-6)
    np.testing.assert_array_equal(smp.y_B, smp.y)
    with pytest.raises(ValueError, match="^channel.name"):
        worlds.register_channel(_Shift())  # already registered
    with pytest.raises(ValueError, match="^channel.name"):
        worlds.register_channel(worlds.Attenuate(), replace=True)  # built-ins stay
    with pytest.raises(ValueError, match="^channel must be a Channel"):
        worlds.register_channel("shift")
    with pytest.raises(ValueError, match="^name"):
        worlds.unregister_channel("noise")
    with pytest.raises(ValueError, match="^y is required"):
        worlds.apply_channel(make_world(SMALL.replace(channel="mispair")), jax.random.key(0), smp.s)


@pytest.mark.parametrize("t", [0.3, 1.0])
def test_resample_law_and_instance(t):
    """G7 resample: s_B | y is N(mu_y, sigma^2 I) exactly (so TV_latent = 0), a Binomial(n, t)
    number of rows is redrawn, independent of s (correlation of the redrawn rows is 0), and the
    others keep s."""
    cfg = SMALL.replace(channel="resample")
    world = make_world(cfg)
    smp = sample(world, jax.random.key(31), N, t)
    y, s, s_b = (np.asarray(a, np.float64) for a in (smp.y, smp.s, smp.s_B))
    np.testing.assert_array_equal(smp.y_B, smp.y)
    kept = np.all(s_b == s, axis=1)
    assert _binomial_accept(int((~kept).sum()), N, t)
    mu = cfg.class_means()
    for c in range(cfg.num_classes):
        _check_gaussian_moments(s_b[y == c], mu[c], cfg.sigma**2)
    r = (
        (s_b - mu[smp.y])[~kept].ravel()
        @ (s - mu[smp.y])[~kept].ravel()
        / (cfg.sigma**2 * (~kept).sum() * cfg.latent_dim)
    )
    assert abs(r) < Z / math.sqrt((~kept).sum() * cfg.latent_dim)


@pytest.mark.parametrize("t", [0.25, 0.8])
def test_mispair_law_and_pair_agreement(t):
    """G7 mispair: P(y_B = y) = 1 - t (Binomial), y_B uniform given a flip over the other
    classes (chi-square), s_B | y_B is N(mu_{y_B}, sigma^2 I) (so TV_latent = 0), s kept on
    agreeing pairs."""
    cfg = SMALL.replace(channel="mispair")
    smp = sample(make_world(cfg), jax.random.key(32), N, t)
    y, y_b = np.asarray(smp.y), np.asarray(smp.y_B)
    s, s_b = np.asarray(smp.s, np.float64), np.asarray(smp.s_B, np.float64)
    agree = y == y_b
    assert _binomial_accept(int(agree.sum()), N, 1 - t)
    assert np.all(s_b[agree] == s[agree])
    K = cfg.num_classes
    shift = ((y_b - y) % K)[~agree]
    counts = np.bincount(shift, minlength=K)[1:]
    assert stats.chisquare(counts).pvalue > ALPHA
    assert stats.chisquare(np.bincount(y_b, minlength=K)).pvalue > ALPHA  # y_B uniform
    mu = cfg.class_means()
    for c in range(K):
        _check_gaussian_moments(s_b[y_b == c], mu[c], cfg.sigma**2)
        # and Gaussian in shape: KS of the standardised class coordinate
        assert stats.kstest((s_b[y_b == c, c] - mu[c, c]) / cfg.sigma, "norm").pvalue > ALPHA


NUIS = SMALL.replace(
    nuisance_dim=3, nuisance_scale=2.0, nuisance_rho=0.3, d_B=9, channel="noise", t=0.5
)


@pytest.mark.parametrize(
    "changes, name",
    [
        (dict(nuisance_dim=-1), "nuisance_dim"),
        (dict(nuisance_dim=1.5), "nuisance_dim"),
        (dict(nuisance_scale=0.0), "nuisance_scale"),
        (dict(nuisance_rho=1.2), "nuisance_rho"),
        (dict(nuisance_rho=-0.1), "nuisance_rho"),
        (dict(nuisance_dim=3, d_B=7), "d_B"),
    ],
)
def test_nuisance_config_validation(changes, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        SMALL.replace(**changes)


def test_nuisance_world_defaults_and_bayes_error_of_x_B():
    """G6: nonlinear maps by default; s_B (hence law(s_B, y), TV_latent) is the one of the world
    without nuisance for the same key; nu ~ N(0, sigma_nu^2 I) independent of y; x_B determines
    (s_B, nu) and the true posterior p(y | x_B) = p(y | s_B) errs Binomial(n, eps*_B)."""
    from cmcd_theory.learn import divergences

    assert (
        NUIS.observation == "nonlinear"
        and SMALL.replace(nuisance_dim=2, d_B=7).observation == "nonlinear"
    )
    world = make_world(NUIS)
    key = jax.random.key(41)
    smp = sample(world, key, N)
    plain = sample(make_world(NUIS.replace(nuisance_dim=0, observation="nonlinear")), key, N)
    np.testing.assert_array_equal(smp.s_B, plain.s_B)
    np.testing.assert_array_equal(smp.y_B, plain.y_B)
    k, q = NUIS.latent_dim, NUIS.nuisance_dim
    nu = np.asarray(smp.u_B[:, k:], np.float64)
    assert nu.shape == (N, q)
    for c in range(NUIS.num_classes):
        _check_gaussian_moments(nu[np.asarray(smp.y) == c], 0.0, NUIS.nuisance_scale**2)
    # invert g_B = Q2 leaky(Q1 u) and classify with the true posterior of the latent part
    z = np.asarray(smp.x_B, np.float64) @ np.asarray(world.maps["QB"], np.float64)
    u = np.where(z >= 0, z, z / worlds.LEAKY_SLOPE) @ np.asarray(world.maps["QB1"], np.float64)
    np.testing.assert_allclose(u, smp.u_B, atol=1e-4)
    logp = np.stack(
        [divergences.latent_logpdf(NUIS, "B", c, u[:, :k]) for c in range(NUIS.num_classes)], 1
    )
    errors = int(np.sum(np.argmax(logp, 1) != np.asarray(smp.y_B)))
    eps = divergences.bayes_error_exact(NUIS, "B")
    assert eps == divergences.bayes_error_exact(NUIS.replace(nuisance_dim=0), "B")
    assert divergences.tv_latent(NUIS) == divergences.tv_latent(NUIS.replace(nuisance_dim=0))
    assert _binomial_accept(errors, N, eps), (errors / N, eps)


@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_nuisance_views_resample_a_fraction_rho(rho):
    """Each view's nuisance is sqrt(1 - rho) nu + sqrt(rho) nu_new: law N(0, sigma_nu^2 I) and
    correlation 1 - rho between two views (0 = shared, exactly equal)."""
    cfg = NUIS.replace(nuisance_rho=rho, view_noise=0.0)
    world = make_world(cfg)
    smp = sample(world, jax.random.key(42), N)
    v1, v2 = views(world, jax.random.key(43), smp.u_B, "B")
    k = cfg.latent_dim

    def inv(x):
        z = np.asarray(x, np.float64) @ np.asarray(world.maps["QB"], np.float64)
        return np.where(z >= 0, z, z / worlds.LEAKY_SLOPE) @ np.asarray(
            world.maps["QB1"], np.float64
        )

    n1, n2 = inv(v1)[:, k:], inv(v2)[:, k:]
    np.testing.assert_allclose(inv(v1)[:, :k], smp.s_B, atol=1e-4)  # view noise 0
    _check_gaussian_moments(n1, 0.0, cfg.nuisance_scale**2)
    r = np.mean(n1 * n2) / cfg.nuisance_scale**2
    if rho == 0.0:
        np.testing.assert_allclose(n1, n2, atol=1e-4)
    else:
        assert abs(r - (1 - rho)) < Z * math.sqrt(2.0 / (N * cfg.nuisance_dim)), r
    assert cfg.input_radius(1e-9) > np.linalg.norm(np.asarray(v1), axis=1).max()
