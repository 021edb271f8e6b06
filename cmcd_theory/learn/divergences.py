"""Ground truth of a world and distances between modalities (docs/theory.md, G2, G5, B1).

* :func:`tv_latent`: the exact modality distance ``TV(law(s, y), law(s_B, y))`` of every
  channel (closed forms of G2), float64.
* :func:`tv_monte_carlo`: a Monte Carlo TV between two known densities with a Hoeffding
  interval, ``TV = E_{x~P} max(0, 1 - q(x)/p(x))``.
* :func:`bayes_error`: eps*_A, eps*_B (closed form for K = 2, Monte Carlo with an interval
  otherwise).
* :func:`tv_classifier_lower_bound`: a certified lower bound on TV from a held-out two-sample
  classifier, ``TV >= 2 acc - 1`` minus a Hoeffding slack.
* :func:`gaussian_feature_tv`: TV between learned source and target features on the Gaussian
  track (linear maps and encoders), the certified quantity of B1b.

Everything that is a bound or a tail probability is computed in float64 (numpy/scipy).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, special, stats

from cmcd_theory import validation as V
from cmcd_theory.probe import fit_probe, probe_predict
from cmcd_theory import worlds
from cmcd_theory.worlds import WorldConfig, World


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
    law = worlds.get_channel(config.channel).law_B(config, t)
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
    tv = np.asarray(worlds.get_channel(config.channel).tv_latent_per_class(config, t), np.float64)
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
    return float(worlds.get_channel(config.channel).pair_agreement(config, t))


# ---- known densities of the latents (float64) ----------------------------------------------

def _iso_logpdf(x, mean, std):
    k = x.shape[-1]
    return (-0.5 * np.sum((x - mean) ** 2, axis=-1) / std ** 2
            - k * math.log(std) - 0.5 * k * math.log(2 * math.pi))


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

QUAD_TOL = 1e-12  # absolute tolerance asked of each 1-D integral (G5b); the target is 1e-8


def gaussian_axes_bayes_error(a, v: float, *, return_error: bool = False):
    r"""Exact Bayes error of K classes ``N(a_c e_c, v I)`` on orthonormal axes, uniform prior (G5b).

    Given y, the coordinates ``s_c = a_c [c = y] + sqrt(v) z_c`` are independent, and the Bayes
    rule is ``argmax_c (a_c s_c - a_c^2 / 2)``. For ``a_y > 0``

    .. math:: P(\mathrm{correct}\mid y) = \int_{z_0}^{\infty} \varphi(z) \prod_{c\ne y,\,a_c>0}
              \Phi\Big(\frac{a_y^2 + a_c^2 + 2 a_y \sqrt v\, z}{2 a_c \sqrt v}\Big)\,dz,

    with ``z_0 = -a_y / (2 sqrt v)`` if some ``a_c = 0`` (a zero-norm class scores 0) and
    ``-inf`` otherwise; for ``a_y = 0`` the class ties with the Z zero-norm classes (ties split
    uniformly) and wins iff every positive-norm class scores below 0:
    ``P = (1 / Z) prod_{a_c > 0} Phi(a_c / (2 sqrt v))``. ``eps* = 1 - mean_y P(correct | y)``.
    Each integral is computed by :func:`scipy.integrate.quad` to ``QUAD_TOL``.

    Args:
      a: (K,) norms ``a_c >= 0`` of the class means.
      v: the common variance ``v > 0``.
      return_error: also return the sum of quad's absolute error estimates (divided by K).

    Returns:
      eps* (float64), or ``(eps*, error_estimate)``.

    Example:
      >>> round(gaussian_axes_bayes_error([3.5 / 2 ** 0.5] * 4, 1.0), 6)
      0.096829
    """
    a = np.asarray(a, np.float64)
    if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"a must be a vector of K >= 2 finite norms >= 0, got {a!r}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"v must be a finite number > 0, got {v!r}")
    sv = math.sqrt(v)
    zero = a == 0
    n_zero = int(zero.sum())
    correct, err = 0.0, 0.0
    for y, ay in enumerate(a):
        others = np.delete(a, y)
        pos = others[others > 0]
        if ay == 0:
            correct += float(np.prod(special.ndtr(pos / (2 * sv)))) / n_zero
            continue

        def integrand(z, ay=ay, pos=pos):
            return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * float(
                np.prod(special.ndtr((ay * ay + pos * pos + 2 * ay * sv * z) / (2 * pos * sv))))

        lo = -ay / (2 * sv) if n_zero else -np.inf
        val, e = integrate.quad(integrand, lo, np.inf, epsabs=QUAD_TOL, epsrel=0.0, limit=200)
        correct += val
        err += e
    eps = 1.0 - correct / a.size
    return (eps, err / a.size) if return_error else eps


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
    v = worlds.get_channel(config.channel).bayes_error_B(config, t)
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


# ---- certified lower bound from a two-sample classifier (B1) -----------------------------------

def _quadratic_features(x, y, num_classes):
    f = jnp.concatenate([jnp.ones_like(x[:, :1]), x, x * x], axis=1)
    if y is None:
        return f
    onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
    return (onehot[:, :, None] * f[:, None, :]).reshape(x.shape[0], -1)


def two_sample_accuracy(key: jax.Array, xp, xq, yp=None, yq=None, *, num_classes=None,
                        train_frac: float = 0.5, l2: float = 1e-4, steps: int = 300):
    """Held-out balanced accuracy of the two-sample classifier of
    :func:`tv_classifier_lower_bound` (traceable: ``jit`` / ``vmap`` over keys and samples).

    The one implementation of that classifier: logistic regression (``steps`` full-batch
    steps of :func:`~cmcd_theory.probe.fit_probe`) on standardised quadratic features, fitted
    on a ``train_frac`` share of the pairs and tested on the rest. Shapes are static:
    ``xp``, ``xq`` of shape (n, d); labels optional as in :func:`tv_classifier_lower_bound`.

    Returns:
      a float32 scalar, the balanced accuracy on the held-out pairs.
    """
    n = xp.shape[0]
    n_train = int(round(train_frac * n))
    perm = jax.random.permutation(key, n)
    tr, te = perm[:n_train], perm[n_train:]
    fp = _quadratic_features(xp, yp, num_classes)
    fq = _quadratic_features(xq, yq, num_classes)
    # standardise with training statistics (columns that are constant keep scale 1)
    ftr = jnp.concatenate([fp[tr], fq[tr]])
    mean, std = ftr.mean(0), ftr.std(0)
    std = jnp.where(std > 1e-8, std, 1.0)
    ztr = (ftr - mean) / std
    ltr = jnp.concatenate([jnp.zeros(n_train, jnp.int32), jnp.ones(n_train, jnp.int32)])
    clf = fit_probe(ztr, ltr, 2, l2=l2, steps=steps)
    ok_p = probe_predict(clf, (fp[te] - mean) / std) == 0
    ok_q = probe_predict(clf, (fq[te] - mean) / std) == 1
    return jnp.mean(0.5 * (ok_p.astype(jnp.float32) + ok_q.astype(jnp.float32)))


def tv_classifier_lower_bound(key: jax.Array, xp, xq, yp=None, yq=None, *, num_classes=None,
                              delta: float = 0.05, train_frac: float = 0.5,
                              l2: float = 1e-4) -> dict:
    r"""Certified lower bound on ``TV(P, Q)`` from a held-out two-sample classifier (B1).

    A classifier f trained on the first part of the samples is tested on ``n_test`` held-out
    pairs ``(x_p^i, x_q^i)``. For any fixed f, the balanced accuracy satisfies
    ``acc = 1/2 + (P(E) - Q(E)) / 2 <= 1/2 + TV / 2`` with ``E = {f = P}``. The pair terms
    ``(1[f(x_p^i) = P] + 1[f(x_q^i) = Q]) / 2`` are independent across i (even when
    ``x_p^i`` and ``x_q^i`` are coupled, e.g. the two modalities of one latent), so Hoeffding
    over the n_test pairs gives, with probability >= 1 - delta,

    .. math:: \mathrm{TV} \ge 2\,\widehat{acc} - 1 - 2\sqrt{\log(1/\delta) / (2 n_{test})}.

    The classifier is a logistic regression on quadratic features ``[1, x, x^2]`` (so a change
    of variance is visible), per class when labels are given (then the bound is on the TV of
    the joint laws ``(x, y)``, B1's quantity).

    Args:
      key: PRNG key for the shuffle.
      xp, xq: samples (n, d) of P and Q (same n).
      yp, yq: optional labels (n,) to bound the TV of the joint laws.
      num_classes: K, required with labels.
      delta: confidence level.
      train_frac: fraction of the pairs used to fit the classifier.
      l2: ridge strength of the classifier.

    Returns:
      dict with ``lower`` (the certified bound, may be negative: TV >= 0 always holds too),
      ``estimate`` (``2 acc - 1``, a point estimate without guarantee), ``acc``, ``slack``,
      ``n_test``, ``delta``.
    """
    _check_delta(delta)
    xp, xq = jnp.asarray(xp, jnp.float32), jnp.asarray(xq, jnp.float32)
    if xp.shape != xq.shape or xp.ndim != 2:
        raise ValueError(f"xp and xq must have the same shape (n, d), got {xp.shape}, {xq.shape}")
    if (yp is None) != (yq is None):
        raise ValueError("give both yp and yq, or neither")
    if yp is not None and num_classes is None:
        raise ValueError("num_classes is required with labels")
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must be in (0, 1), got {train_frac}")
    n = xp.shape[0]
    n_train = int(round(train_frac * n))
    n_test = n - n_train
    if n_train < 2 or n_test < 1:
        raise ValueError(f"need more samples: n={n} gives n_train={n_train}, n_test={n_test}")
    acc = float(two_sample_accuracy(key, xp, xq, None if yp is None else jnp.asarray(yp),
                                    None if yq is None else jnp.asarray(yq),
                                    num_classes=num_classes, train_frac=train_frac, l2=l2))
    slack = 2.0 * math.sqrt(math.log(1.0 / delta) / (2.0 * n_test))
    return {"lower": 2 * acc - 1 - slack, "estimate": 2 * acc - 1, "acc": acc, "slack": slack,
            "n_test": n_test, "delta": delta}


# ---- B1 on the Gaussian track: TV of learned features ---------------------------------------

def gaussian_mixture_tv(means_p, covs_p, means_q, covs_q, n: int = 100_000, seed: int = 0,
                        delta: float = 0.01) -> Interval:
    """Class-averaged TV between Gaussian class-conditionals, by Monte Carlo (B1b).

    ``TV(P, Q) = (1/K) sum_y TV(N(m^p_y, C^p_y), N(m^q_y, C^q_y))`` for equal uniform label
    marginals; each term by :func:`tv_monte_carlo` logic with n draws, the average's interval by
    Hoeffding over the nK draws. Covariances must be positive definite (else the supports
    differ and TV needs no Monte Carlo: raise).
    """
    _check_delta(delta)
    means_p, means_q = np.asarray(means_p, np.float64), np.asarray(means_q, np.float64)
    covs_p, covs_q = np.asarray(covs_p, np.float64), np.asarray(covs_q, np.float64)
    K, d = means_p.shape
    rng = np.random.default_rng(seed)
    vals = []
    for y in range(K):
        try:
            lp_chol = np.linalg.cholesky(covs_p[y])
            lq_chol = np.linalg.cholesky(covs_q[y])
        except np.linalg.LinAlgError as err:
            raise ValueError(f"covariance of class {y} is not positive definite") from err
        xi = rng.standard_normal((n, d))
        x = means_p[y] + xi @ lp_chol.T
        # whitened residuals: under P they are xi itself; under Q, L_q^{-1} (x - m_q)
        white_q = (x - means_q[y]) @ np.linalg.inv(lq_chol).T
        log_det = np.sum(np.log(np.diag(lq_chol))) - np.sum(np.log(np.diag(lp_chol)))
        lr = -0.5 * np.sum(white_q ** 2, 1) + 0.5 * np.sum(xi ** 2, 1) - log_det
        vals.append(np.mean(1.0 - np.exp(np.minimum(lr, 0.0))))
    est = float(np.mean(vals))
    half = math.sqrt(math.log(2 / delta) / (2 * n * K))
    return Interval(est, est - half, est + half, n * K, delta)


def feature_gaussians(world: World, W: np.ndarray, modality: str, t: float | None = None):
    """Class-conditional Gaussians of the pre-normalisation features ``u = W x`` (B1b track).

    Requires the linear observation map and a channel whose law of ``s_B | y_B`` is one
    Gaussian (attenuate, noise, rotate, resample, mispair). On a nuisance world (G6) the
    nuisance adds ``sigma_nu^2 A_nu A_nu^T`` to the target's covariance. The linear encoder's
    clip does not matter after normalisation (``normalize(W clip(x)) = normalize(W x)``) and
    normalisation can only shrink TV (data processing), so the TV of these Gaussians
    upper-bounds the TV of the normalised features.

    Returns:
      ``(means (K, p), covs (K, p, p))`` in float64.
    """
    cfg = world.config
    if cfg.observation != "linear":
        raise ValueError("the Gaussian track needs observation='linear'")
    W = np.asarray(W, np.float64)
    Q = np.asarray(world.maps["Q" + modality], np.float64)
    A = W @ Q
    k = cfg.latent_dim
    if modality == "A":
        mu, std = cfg.class_means(), cfg.sigma
        cov = std ** 2 * A @ A.T
    else:
        law = _law_B(cfg, cfg.t if t is None else float(t))
        if len([c for c in law if c[0] > 0]) != 1:
            raise ValueError(f"the {cfg.channel} channel gives a mixture: not on the Gaussian track")
        _, mu, std = next(c for c in law if c[0] > 0)
        A_s, A_nu = A[:, :k], A[:, k:]
        cov = std ** 2 * A_s @ A_s.T + cfg.nuisance_scale ** 2 * A_nu @ A_nu.T
        A = A_s
    means = mu @ A.T
    cov = cov + cfg.obs_noise ** 2 * W @ W.T
    return means, np.broadcast_to(cov, (cfg.num_classes,) + cov.shape).copy()


def gaussian_feature_tv(world: World, W_A, W_B, t: float | None = None, n: int = 100_000,
                        seed: int = 0, delta: float = 0.01) -> Interval:
    """``TV(P^A, P^B)`` of the learned features ``W_A x_A`` and ``W_B x_B`` (B1b, Gaussian track).

    The head sees ``normalize(u)``, and ``normalize(c u) = normalize(u)`` for every ``c > 0``,
    so by data processing ``TV(normalize(u_A), normalize(u_B)) <= TV(u_A, c u_B)`` for any
    positive c. Two values are tried: ``c = 1`` and the c that equalises the mean squared
    norms of ``u_A`` and ``c u_B`` (computed from the Gaussians' parameters, not from the
    Monte Carlo draws); each gets ``delta / 2`` so the smaller ``upper`` stays valid. The
    returned interval is the one with the smaller upper end; its ``upper`` is a certified upper
    bound (probability >= 1 - delta) on the TV of the normalised features the head sees.
    """
    _check_delta(delta)
    mp, cp = feature_gaussians(world, W_A, "A", t)
    mq, cq = feature_gaussians(world, W_B, "B", t)
    second_moment = lambda m, c: float(np.mean(np.sum(m ** 2, 1) + np.trace(c, axis1=1, axis2=2)))
    c_match = math.sqrt(second_moment(mp, cp) / second_moment(mq, cq))
    best = None
    for c in (1.0, c_match):
        iv = gaussian_mixture_tv(mp, cp, c * mq, c * c * cq, n=n, seed=seed, delta=delta / 2)
        if best is None or iv.upper < best.upper:
            best = iv
    return Interval(best.estimate, best.lower, best.upper, best.n, delta)
