"""Population quantities of a world, exact or by Monte Carlo with an interval (G2, G5, G5b, G7).

The ground truth every estimate and bound is compared with; each is a function of the
:class:`~cmcd_theory.worlds.config.WorldConfig` (and t) alone, in float64 (numpy/scipy):

* :func:`tv_latent`, :func:`tv_latent_per_class`: the exact modality distance
  ``TV(law(s, y), law(s_B, y_B))`` of the world's channel (the closed forms of G2);
* :func:`pair_agreement`: ``P(y_B = y)`` (G7);
* :func:`bayes_error_exact`, :func:`bayes_error`: eps*_A, eps*_B by G5b's quadrature
  (:func:`~cmcd_theory.worlds.exact.gaussian_axes_bayes_error`), or by Monte Carlo with an
  interval for a channel that states no exact form;
* :func:`latent_logpdf`, :func:`sample_latent_np`: the known densities and samplers of the
  latents, and the Monte Carlo checks built on them, :func:`tv_monte_carlo`,
  :func:`tv_latent_monte_carlo`, :func:`bayes_error_monte_carlo`, each with a Hoeffding
  :class:`Interval`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cmcd_theory import validation as V
from cmcd_theory.worlds.config import WorldConfig, get_channel
from cmcd_theory.worlds.exact import _iso_logpdf, gaussian_axes_bayes_error


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


def tv_latent_per_class(config: WorldConfig, t: float | None = None) -> np.ndarray:
    r"""Exact ``TV(law(s | y), law(s_B | y_B = y))`` for each class y (G2, G7), shape (K,), float64.

    Each channel states its own closed form (:meth:`cmcd_theory.worlds.Channel.tv_latent_per_class`):

    * attenuate: ``2 Phi(t norm(P_J mu_y) / 2 sigma) - 1``
    * noise: ``F(r2 / sigma1^2) - F(r2 / sigma2^2)``, F the chi-square(k) CDF,
      ``r2 = 2 k ln(sigma2/sigma1) sigma1^2 sigma2^2 / (sigma2^2 - sigma1^2)``
    * corrupt: ``t (2 Phi(norm(mu_y) / 2 sigma) - 1)``
    * rotate: ``2 Phi(norm(mu_y - R_t mu_y) / 2 sigma) - 1``
    * resample, mispair: 0 (G7)

    A nuisance (G6) changes none of them: TV_latent is a statement about ``law(s_B, y)``.
    """
    t = config.t if t is None else float(t)
    _check_t(t)
    tv = np.asarray(get_channel(config.channel).tv_latent_per_class(config, t), np.float64)
    if tv.shape != (config.num_classes,):
        raise ValueError(f"channel {config.channel!r} returned per-class TV of shape {tv.shape}, "
                         f"expected ({config.num_classes},)")
    return tv


def tv_latent(config: WorldConfig, t: float | None = None) -> float:
    """Exact modality distance ``TV_latent(t) = sum_y pi_y TV(law(s|y), law(s_B|y))`` (G2)."""
    return float(np.mean(tv_latent_per_class(config, t)))


def pair_agreement(config: WorldConfig, t: float | None = None) -> float:
    """``P(y_B = y)``: the class agreement of a pair (G7; 1 for every label-keeping channel)."""
    t = config.t if t is None else float(t)
    _check_t(t)
    return float(get_channel(config.channel).pair_agreement(config, t))


# ---- known densities of the latents (float64) ----------------------------------------------

def latent_logpdf(config: WorldConfig, modality: str, y: int, x: np.ndarray,
                  t: float | None = None) -> np.ndarray:
    """Log density of ``s | y`` (modality ``"A"``) or ``s_B | y_B`` (``"B"``) at rows of x."""
    t = config.t if t is None else float(t)
    _check_t(t)
    mu = config.class_means()
    if modality == "A":
        return _iso_logpdf(x, mu[y], config.sigma)
    if modality != "B":
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    terms = [math.log(w) + _iso_logpdf(x, means[y], std) for w, means, std in _law_B(config, t) if w > 0]
    return terms[0] if len(terms) == 1 else np.logaddexp.reduce(np.stack(terms), axis=0)


def sample_latent_np(config: WorldConfig, modality: str, y: int, n: int,
                     rng: np.random.Generator, t: float | None = None) -> np.ndarray:
    """Draw n rows of ``s | y`` (``"A"``) or ``s_B | y_B`` (``"B"``) in float64 numpy."""
    t = config.t if t is None else float(t)
    _check_t(t)
    mu, k = config.class_means(), config.latent_dim
    xi = rng.standard_normal((n, k))
    if modality == "A":
        return mu[y] + config.sigma * xi
    law = _law_B(config, t)
    comp = rng.choice(len(law), size=n, p=np.array([w for w, _, _ in law]))
    means = np.stack([m[y] for _, m, _ in law])
    stds = np.array([sd for _, _, sd in law])
    return means[comp] + stds[comp, None] * xi


def tv_monte_carlo(sample_p, logpdf_p, logpdf_q, n: int, rng: np.random.Generator,
                   delta: float = 0.01) -> Interval:
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


def tv_latent_monte_carlo(config: WorldConfig, t: float | None = None, n: int = 100_000,
                          seed: int = 0, delta: float = 0.01) -> Interval:
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
    G3's injective, noise-free maps (``obs_noise`` must be 0)."""
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    t = config.t if t is None else float(t)
    _check_t(t)
    if config.obs_noise > 0:
        raise ValueError("bayes_error is the latent Bayes error; it equals the observation's "
                         "only for obs_noise = 0")
    if modality == "A":
        return gaussian_axes_bayes_error(np.full(config.num_classes, config.separation / math.sqrt(2)),
                                         config.sigma ** 2)
    v = get_channel(config.channel).bayes_error_B(config, t)
    return None if v is None else float(v)


def bayes_error(config: WorldConfig, modality: str, t: float | None = None, n: int = 200_000,
                seed: int = 0, delta: float = 0.01) -> Interval:
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


def bayes_error_monte_carlo(config: WorldConfig, modality: str, t: float | None = None,
                            n: int = 200_000, seed: int = 0, delta: float = 0.01) -> Interval:
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
