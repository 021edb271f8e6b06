"""Population quantities of a world, exact or by Monte Carlo with an interval (G2, G5, G5b, G7).

The ground truth every estimate and bound is compared with; each is a function of the
:class:`~cmcd_theory.worlds.config.WorldConfig` (and t) alone, in float64 (numpy/scipy):

* :func:`tv_latent`, :func:`tv_latent_per_class`: the exact modality distance
  ``TV(law(s_A, y), law(s_B, y_B))`` of the world's channels (the closed forms of G2, and of
  G8 when the source has a channel of its own);
* :func:`pair_agreement`: ``P(y_B = y)`` (G7);
* :func:`bayes_error_exact`, :func:`bayes_error`: eps*_A, eps*_B by G5b's quadrature
  (:func:`~cmcd_theory.worlds.exact.gaussian_axes_bayes_error`), or by Monte Carlo with an
  interval for a channel that states no exact form;
* :func:`latent_logpdf`, :func:`sample_latent_np`: the known densities and samplers of the
  latents, and the Monte Carlo checks built on them, :func:`tv_monte_carlo`,
  :func:`tv_latent_monte_carlo`, :func:`bayes_error_monte_carlo`, each with a Hoeffding
  :class:`Interval`;
* :func:`latent_mutual_information`: ``I(s_A; s_B)`` and ``I(s_B; y_B)`` (G8) by Monte Carlo
  with the true densities and 95 % CLT half-widths, and
  :func:`latent_conditional_mutual_information`: ``I(s_A; s_B | y)`` in closed form.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special

from cmcd_theory import validation as V
from cmcd_theory.worlds.config import WorldConfig, get_channel
from cmcd_theory.worlds.exact import _iso_logpdf, _tv_isotropic, gaussian_axes_bayes_error


class Interval(NamedTuple):
    """A Monte Carlo estimate with a two-sided ``1 - delta`` Hoeffding interval."""

    estimate: float
    lower: float
    upper: float
    n: int
    delta: float


def _check_delta(delta):
    V.probability("delta", delta)


def _check_t(t):
    V.unit_interval("t", t)


def _law_B(config: WorldConfig, t: float) -> list:
    """The channel's exact law of ``s_B | y_B`` (mixture of isotropic Gaussians)."""
    law = get_channel(config.channel).law_B(config, t)
    if law is None:
        raise ValueError(f"channel {config.channel!r} does not state its law (Channel.law_B)")
    return law


def _tv_source_channel_per_class(config: WorldConfig, t: float) -> np.ndarray:
    """``TV(law(s_A | y), law(s_B | y_B = y))`` per class when the source has a channel (G8).

    Both laws isotropic Gaussians (the target's law_B one component): the exact TV of
    :func:`~cmcd_theory.worlds.exact._tv_isotropic` (``2 Phi(norm(m_A,y - m_B,y) / 2 sigma) - 1``
    for equal scales: attenuate, rotate, resample, mispair; the noncentral chi-square form for
    noise). NaN for every class where the target's law is a mixture (corrupt at 0 < t < 1) or
    unstated: no closed form holds there.
    """
    law = get_channel(config.channel).law_B(config, t)
    comps = [c for c in law if c[0] > 0] if law is not None else []
    if len(comps) != 1:
        return np.full(config.num_classes, np.nan)
    _, means_b, std_b = comps[0]
    dist = np.linalg.norm(config.source_class_means() - np.asarray(means_b, np.float64), axis=1)
    return np.array(
        [_tv_isotropic(float(d), config.latent_dim, config.sigma, float(std_b)) for d in dist]
    )


def tv_latent_per_class(config: WorldConfig, t: float | None = None) -> np.ndarray:
    r"""Exact ``TV(law(s_A | y), law(s_B | y_B = y))`` for each class y (G2, G7, G8), shape (K,),
    float64 (``s_A = s`` unless the source has a channel of its own, G8).

    Each channel states its own closed form
    (:meth:`cmcd_theory.worlds.Channel.tv_latent_per_class`):

    * attenuate: ``2 Phi(t norm(P_J mu_y) / 2 sigma) - 1``
    * noise: ``F(r2 / sigma1^2) - F(r2 / sigma2^2)``, F the chi-square(k) CDF,
      ``r2 = 2 k ln(sigma2/sigma1) sigma1^2 sigma2^2 / (sigma2^2 - sigma1^2)``
    * corrupt: ``t (2 Phi(norm(mu_y) / 2 sigma) - 1)``
    * rotate: ``2 Phi(norm(mu_y - R_t mu_y) / 2 sigma) - 1``
    * resample, mispair: 0 (G7)

    With a source channel (G8, ``source_t > 0``) both laws are isotropic Gaussians wherever the
    target's is one: ``2 Phi(norm(m_A,y - m_B,y) / 2 sigma) - 1`` with
    ``m_A,y = mu_y - t_A P_{J_A} mu_y`` and ``m_B,y`` the target's mean (attenuate, rotate,
    resample, mispair), a noncentral chi-square form for noise; NaN where no closed form holds
    (corrupt at 0 < t < 1, a user channel without :meth:`~cmcd_theory.worlds.Channel.law_B`).

    A nuisance (G6) changes none of them: TV_latent is a statement about ``law(s_B, y)``.
    """
    t = config.t if t is None else float(t)
    _check_t(t)
    if config.has_source_channel:
        return _tv_source_channel_per_class(config, t)
    tv = np.asarray(get_channel(config.channel).tv_latent_per_class(config, t), np.float64)
    if tv.shape != (config.num_classes,):
        raise ValueError(
            f"channel {config.channel!r} returned per-class TV of shape {tv.shape}, "
            f"expected ({config.num_classes},)"
        )
    return tv


def tv_latent(config: WorldConfig, t: float | None = None) -> float:
    """Exact modality distance ``TV_latent(t) = sum_y pi_y TV(law(s_A|y), law(s_B|y))`` (G2, G8;
    ``s_A = s`` without a source channel; NaN where :func:`tv_latent_per_class` is)."""
    return float(np.mean(tv_latent_per_class(config, t)))


def pair_agreement(config: WorldConfig, t: float | None = None) -> float:
    """``P(y_B = y)``: the class agreement of a pair (G7; 1 for every label-keeping channel)."""
    t = config.t if t is None else float(t)
    _check_t(t)
    return float(get_channel(config.channel).pair_agreement(config, t))


# ---- known densities of the latents (float64) ----------------------------------------------


def latent_logpdf(
    config: WorldConfig, modality: str, y: int, x: np.ndarray, t: float | None = None
) -> np.ndarray:
    """Log density of ``s_A | y`` (modality ``"A"``; ``s | y`` without a source channel, G8) or
    ``s_B | y_B`` (``"B"``) at rows of x."""
    t = config.t if t is None else float(t)
    _check_t(t)
    mu = config.source_class_means()
    if modality == "A":
        return _iso_logpdf(x, mu[y], config.sigma)
    if modality != "B":
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    terms = [
        math.log(w) + _iso_logpdf(x, means[y], std) for w, means, std in _law_B(config, t) if w > 0
    ]
    return terms[0] if len(terms) == 1 else np.logaddexp.reduce(np.stack(terms), axis=0)


def sample_latent_np(
    config: WorldConfig,
    modality: str,
    y: int,
    n: int,
    rng: np.random.Generator,
    t: float | None = None,
) -> np.ndarray:
    """Draw n rows of ``s_A | y`` (``"A"``; ``s | y`` without a source channel, G8) or
    ``s_B | y_B`` (``"B"``) in float64 numpy."""
    t = config.t if t is None else float(t)
    _check_t(t)
    mu, k = config.source_class_means(), config.latent_dim
    xi = rng.standard_normal((n, k))
    if modality == "A":
        return mu[y] + config.sigma * xi
    law = _law_B(config, t)
    comp = rng.choice(len(law), size=n, p=np.array([w for w, _, _ in law]))
    means = np.stack([m[y] for _, m, _ in law])
    stds = np.array([sd for _, _, sd in law])
    return means[comp] + stds[comp, None] * xi


def tv_monte_carlo(
    sample_p, logpdf_p, logpdf_q, n: int, rng: np.random.Generator, delta: float = 0.01
) -> Interval:
    r"""Monte Carlo TV between two known densities with a Hoeffding interval.

    .. math:: \mathrm{TV}(P, Q) = \mathbb E_{x\sim P}\max\big(0, 1 - q(x)/p(x)\big)

    The integrand lies in [0, 1], so ``estimate +- sqrt(log(2/delta) / 2n)`` covers TV with
    probability >= 1 - delta.

    Args:
      sample_p: ``(n, rng) -> (n, d)`` sampler of P.
      logpdf_p, logpdf_q: ``(n, d) -> (n,)`` log densities.
      n: number of draws.
      rng: numpy Generator (explicit seed).
      delta: confidence level of the interval.

    Returns:
      :class:`Interval`.
    """
    _check_delta(delta)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    x = sample_p(n, rng)
    ratio = np.exp(np.minimum(logpdf_q(x) - logpdf_p(x), 0.0))  # q/p capped at 1
    est = float(np.mean(1.0 - ratio))
    half = math.sqrt(math.log(2 / delta) / (2 * n))
    return Interval(est, est - half, est + half, n, delta)


def tv_latent_monte_carlo(
    config: WorldConfig,
    t: float | None = None,
    n: int = 100_000,
    seed: int = 0,
    delta: float = 0.01,
) -> Interval:
    """Monte Carlo ``TV_latent`` (n draws per class), to check the closed forms of G2.

    The class average of K independent means of n [0, 1]-variables each is a mean of nK
    independent [0, 1]-variables, so Hoeffding with nK draws gives its interval.
    """
    _check_delta(delta)
    t = config.t if t is None else float(t)
    _check_t(t)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    vals = []
    for y in range(config.num_classes):
        x = sample_latent_np(config, "A", y, n, rng, t)
        lq = latent_logpdf(config, "B", y, x, t)
        lp = latent_logpdf(config, "A", y, x, t)
        vals.append(np.mean(1.0 - np.exp(np.minimum(lq - lp, 0.0))))
    est = float(np.mean(vals))
    half = math.sqrt(math.log(2 / delta) / (2 * n * config.num_classes))
    return Interval(est, est - half, est + half, n * config.num_classes, delta)


# ---- Bayes errors (G5, G5b) ------------------------------------------------------------------


def bayes_error_exact(config: WorldConfig, modality: str, t: float | None = None) -> float | None:
    """Exact Bayes error eps*_A (modality ``"A"``) or eps*_B (``"B"``) by G5b's quadrature, or
    ``None`` where the channel states none. A nuisance (G6) leaves eps*_B unchanged, and so do
    G3's injective, noise-free maps (``obs_noise`` must be 0). eps*_A is that of the source
    latent ``s_A``: with a source channel (G8) G5b's norms are ``a_c = (1 - t_A [c in J_A])
    Delta / sqrt 2`` (law(s_A | y) keeps the variance sigma^2); it does not depend on t."""
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    t = config.t if t is None else float(t)
    _check_t(t)
    if config.obs_noise > 0:
        raise ValueError(
            "bayes_error is the latent Bayes error; it equals the observation's "
            "only for obs_noise = 0"
        )
    if modality == "A":
        a = np.full(config.num_classes, config.separation / math.sqrt(2))
        if config.has_source_channel:
            a = a * config.source_gain()[: config.num_classes]  # class c lives on axis e_c
        return gaussian_axes_bayes_error(a, config.sigma**2)
    v = get_channel(config.channel).bayes_error_B(config, t)
    return None if v is None else float(v)


def bayes_error(
    config: WorldConfig,
    modality: str,
    t: float | None = None,
    n: int = 200_000,
    seed: int = 0,
    delta: float = 0.01,
) -> Interval:
    """Bayes error of predicting the label from the latent of ``modality`` (G5, G5b).

    Exact (an interval of zero width, ``n = 0``) wherever :func:`bayes_error_exact` is known,
    which is every built-in channel; otherwise :func:`bayes_error_monte_carlo` with
    ``n, seed, delta``.
    """
    _check_delta(delta)
    v = bayes_error_exact(config, modality, t)
    if v is not None:
        return Interval(v, v, v, 0, delta)
    return bayes_error_monte_carlo(config, modality, t, n=n, seed=seed, delta=delta)


def bayes_error_monte_carlo(
    config: WorldConfig,
    modality: str,
    t: float | None = None,
    n: int = 200_000,
    seed: int = 0,
    delta: float = 0.01,
) -> Interval:
    """Monte Carlo Bayes error: the error rate of the posterior argmax on n draws of the
    channel's stated law (:meth:`~cmcd_theory.worlds.Channel.law_B`), with a Hoeffding interval.
    The check of the quadrature, and the fallback for a channel without an exact form."""
    _check_delta(delta)
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    t = config.t if t is None else float(t)
    _check_t(t)
    K = config.num_classes
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    x = np.empty((n, config.latent_dim))
    for c in range(K):
        idx = np.flatnonzero(y == c)
        x[idx] = sample_latent_np(config, modality, c, idx.size, rng, t)
    logp = np.stack([latent_logpdf(config, modality, c, x, t) for c in range(K)], axis=1)
    est = float(np.mean(np.argmax(logp, axis=1) != y))
    half = math.sqrt(math.log(2 / delta) / (2 * n))
    return Interval(est, max(est - half, 0.0), min(est + half, 1.0), n, delta)


# ---- latent mutual informations (G8) ------------------------------------------------------------

Z95 = 1.959963984540054  # two-sided 95 % normal quantile of the CLT half-widths


class LatentMutualInformation(NamedTuple):
    """``I(s_A; s_B)`` and ``I(s_B; y_B)`` in nats (G8), each a Monte Carlo mean with the half-width
    of its two-sided 95 % CLT interval (``1.96 sd / sqrt(n)``); ``mi_AB = inf`` (half-width 0)
    where some coordinate of a pair is shared exactly."""

    mi_AB: float
    mi_AB_half: float
    mi_By: float
    mi_By_half: float


class _PairComponent(NamedTuple):
    weight: float
    shift: int
    means_B: np.ndarray  # (K, k), indexed by the source class y
    var_B: float
    cov: np.ndarray  # (k,) Cov(s_A,j, s_B,j | y, component) = alpha_j gain_j sigma^2


def _pair_components(config: WorldConfig, t: float) -> list:
    """The channel's pair law (:meth:`~cmcd_theory.worlds.Channel.pair_law`) joined to the
    source channel's gain alpha: the components of positive weight of the law of
    ``(s_A, s_B, y_B)`` given y (G8)."""
    law = get_channel(config.channel).pair_law(config, t)
    if law is None:
        raise ValueError(
            f"channel {config.channel!r} states no coordinate-wise pair law "
            "(Channel.pair_law); the latent mutual informations cover attenuate, "
            "noise, corrupt, resample, mispair"
        )
    var_a, alpha = config.sigma**2, config.source_gain()
    return [
        _PairComponent(
            float(w),
            int(r),
            np.asarray(m, np.float64),
            float(v),
            alpha * np.asarray(g, np.float64) * var_a,
        )
        for w, r, m, v, g in law
        if w > 0
    ]


def _rho2(config: WorldConfig, c: _PairComponent) -> np.ndarray:
    """Squared correlation of ``(s_A,j, s_B,j)`` given y in one component, shape (k,)."""
    return c.cov**2 / (config.sigma**2 * c.var_B)


_SHARED = 1.0 - 1e-12  # rho^2 at or above it: the coordinate is shared exactly (to float64)


def latent_conditional_mutual_information(
    config: WorldConfig, t: float | None = None
) -> float | None:
    r"""Exact ``I(s_A; s_B | y)`` in nats (G8), y the source's class.

    Given y, where the pair law is one component (attenuate, noise, and every channel at
    ``t = 0``), ``(s_A, s_B)`` is jointly Gaussian with independent coordinates of correlation
    ``rho_j = alpha_j beta_j sigma / sqrt(var_B)`` (alpha, beta the source's and target's
    attenuation factors), so

    .. math:: I(s_A; s_B \mid y) = -\tfrac12 \sum_j \log(1 - \rho_j^2),

    ``inf`` if some ``rho_j = 1`` (a coordinate neither channel touches). Where every component
    has ``rho = 0`` the pair is independent given y and the value is 0; otherwise (a mixture
    with correlated components) ``None``: no closed form.

    Example:
      >>> round(latent_conditional_mutual_information(WorldConfig(t=0.5, source_t=0.5,
      ...       source_axes=tuple(range(8)))), 6)  # rho = 1/4 on all 8 coordinates
      0.258154
    """
    t = config.t if t is None else float(t)
    _check_t(t)
    comps = _pair_components(config, t)
    rho2 = [_rho2(config, c) for c in comps]
    if all(not np.any(r) for r in rho2):
        return 0.0
    if len(comps) != 1:
        return None
    if np.any(rho2[0] >= _SHARED):
        return math.inf
    return float(-0.5 * np.sum(np.log1p(-rho2[0])))


def _log_bivariate(
    u: np.ndarray, w: np.ndarray, var_a: float, var_b: float, cov: np.ndarray
) -> np.ndarray:
    """Log density of k independent centred bivariate normals (variances ``var_a``, ``var_b``,
    covariances ``cov`` (k,)) at the residuals ``u, w`` (n, k), summed over coordinates."""
    det = var_a * var_b - cov**2
    q = (var_b * u * u - 2.0 * cov * u * w + var_a * w * w) / det
    return -0.5 * np.sum(q + np.log(det), axis=-1) - u.shape[-1] * math.log(2 * math.pi)


def _draw_pairs(config: WorldConfig, comps: list, n: int, rng: np.random.Generator) -> tuple:
    """n draws of ``(s_A, s_B, y_B)`` from the exact pair law (G8), float64: y uniform, a
    component by weight, ``s_A = m_A,y + sigma z1`` and ``s_B = m_B + (cov / sigma) z1 +
    sqrt(var_B - cov^2 / sigma^2) z2`` (z1, z2 independent standard normals), which has the
    component's means, variances and covariance."""
    K, k, sd = config.num_classes, config.latent_dim, config.sigma
    y = rng.integers(0, K, n)
    w = np.array([c.weight for c in comps])
    comp = rng.choice(len(comps), size=n, p=w / w.sum())
    z1, z2 = rng.standard_normal((2, n, k))
    s_a = config.source_class_means()[y] + sd * z1
    s_b, y_b = np.empty((n, k)), np.empty(n, np.int64)
    for i, c in enumerate(comps):
        idx = comp == i
        resid = np.sqrt(np.maximum(c.var_B - c.cov**2 / sd**2, 0.0))
        s_b[idx] = c.means_B[y[idx]] + (c.cov / sd) * z1[idx] + resid * z2[idx]
        y_b[idx] = (y[idx] + c.shift) % K
    return s_a, s_b, y_b


def _target_logpdfs(config: WorldConfig, comps: list, s_b: np.ndarray, y_b: np.ndarray) -> tuple:
    """``log p(s_B)``, ``log p(s_B, y_B)`` per draw and ``log p(y_B)`` per draw, exact: the law
    of s_B is the mixture over (y, component) of ``N(means_B[y], var_B I)`` with weight
    ``w / K``, whose target label is ``(y + shift) mod K``."""
    K = config.num_classes
    term_list: list[np.ndarray] = []
    label_list: list[int] = []
    log_py = np.full(K, -np.inf)
    for c in comps:
        for y in range(K):
            lw = math.log(c.weight / K)
            term_list.append(lw + _iso_logpdf(s_b, c.means_B[y], math.sqrt(c.var_B)))
            label_list.append((y + c.shift) % K)
            log_py[label_list[-1]] = np.logaddexp(log_py[label_list[-1]], lw)
    terms, labels = np.stack(term_list, axis=1), np.array(label_list)
    own = np.where(labels[None, :] == y_b[:, None], terms, -np.inf)
    return special.logsumexp(terms, axis=1), special.logsumexp(own, axis=1), log_py[y_b]


def _pair_logpdf(config: WorldConfig, comps: list, s_a: np.ndarray, s_b: np.ndarray) -> np.ndarray:
    """``log p(s_A, s_B)`` per draw, exact: the mixture over (y, component) of the
    coordinate-wise bivariate normals of G8 with weight ``w / K``."""
    m_a, var_a = config.source_class_means(), config.sigma**2
    terms = [
        math.log(c.weight / config.num_classes)
        + _log_bivariate(s_a - m_a[y], s_b - c.means_B[y], var_a, c.var_B, c.cov)
        for c in comps
        for y in range(config.num_classes)
    ]
    return special.logsumexp(np.stack(terms, axis=1), axis=1)


def _mean_half(x: np.ndarray) -> tuple:
    """Sample mean and 95 % CLT half-width ``1.96 sd / sqrt(n)``."""
    return float(np.mean(x)), float(Z95 * np.std(x, ddof=1) / math.sqrt(x.size))


def latent_mutual_information(
    config: WorldConfig, t: float | None = None, *, n: int = 200_000, seed: int = 0
) -> LatentMutualInformation:
    r"""``I(s_A; s_B)`` and ``I(s_B; y_B)`` in nats by Monte Carlo with the true densities (G8).

    The world's pair law (:meth:`~cmcd_theory.worlds.Channel.pair_law`) with the source
    channel's gain alpha makes the joint law of ``(s_A, s_B, y_B)`` an exact mixture over the
    class y and the channel's components, each a product over coordinates of bivariate normals
    of correlation ``alpha_j beta_j sigma / sqrt(var_B)``. On n draws (float64, ``seed``)

    .. math:: \hat I(s_A; s_B) = \overline{\log p(s_A, s_B) - \log p(s_A) - \log p(s_B)},\quad
              \hat I(s_B; y_B) = \overline{\log p(s_B, y_B) - \log p(s_B) - \log p(y_B)},

    every density exact per draw (log-sum-exp over the components); each mean is unbiased and
    its half-width is that of the 95 % CLT interval. ``y_B`` is the target's label (``y`` but
    for mispair); the nuisance of G6 is in ``x_B``, not in ``s_B``, and changes neither.
    ``I(s_A; s_B) = inf`` when a coordinate is shared exactly (``rho_j = 1``: neither channel
    touches it; the joint law then has no density), e.g. at ``t = source_t = 0``.

    Args:
      config: the world (channels attenuate, noise, corrupt, resample, mispair; a channel
        without a pair law, e.g. rotate, raises ``ValueError`` naming it).
      t: the target channel's knob; default ``config.t``.
      n: Monte Carlo draws (>= 2).
      seed: seed of the numpy generator.

    Returns:
      :class:`LatentMutualInformation` ``(mi_AB, mi_AB_half, mi_By, mi_By_half)``.

    Example:
      >>> mi = latent_mutual_information(WorldConfig(num_classes=4, latent_dim=4, t=0.1,
      ...                                            source_t=0.9), n=20_000)
      >>> bool(mi.mi_AB + mi.mi_AB_half < mi.mi_By - mi.mi_By_half)  # "do not distil" (G8)
      True
    """
    t = config.t if t is None else float(t)
    _check_t(t)
    V.integer("n", n, lo=2)
    V.integer("seed", seed, lo=0)
    comps = _pair_components(config, t)
    s_a, s_b, y_b = _draw_pairs(config, comps, n, np.random.default_rng(seed))
    lp_b, lp_by, lp_y = _target_logpdfs(config, comps, s_b, y_b)
    mi_by = _mean_half(lp_by - lp_b - lp_y)
    if any(np.any(_rho2(config, c) >= _SHARED) for c in comps):
        return LatentMutualInformation(math.inf, 0.0, *mi_by)
    m_a = config.source_class_means()
    lp_a = special.logsumexp(
        np.stack(
            [_iso_logpdf(s_a, m_a[y], config.sigma) for y in range(config.num_classes)], axis=1
        ),
        axis=1,
    )
    lp_a = lp_a - math.log(config.num_classes)
    mi_ab = _mean_half(_pair_logpdf(config, comps, s_a, s_b) - lp_a - lp_b)
    return LatentMutualInformation(*mi_ab, *mi_by)
