"""Estimated distances between modalities: the quantities that need a learned probe (B1, B1b).

* :func:`tv_classifier_lower_bound`: a certified lower bound on TV from a held-out two-sample
  classifier, ``TV >= 2 acc - 1`` minus a Hoeffding slack; :func:`two_sample_accuracy` is that
  classifier's held-out balanced accuracy (traceable);
* :func:`gaussian_feature_tv`: TV between learned source and target features on the Gaussian
  track (linear maps and encoders), the certified quantity of B1b, from the class-conditional
  Gaussians of :func:`feature_gaussians` and the Monte Carlo TV of :func:`gaussian_mixture_tv`.

The exact ground truth of a world (``tv_latent``, ``bayes_error``, ``gaussian_axes_bayes_error``,
the Monte Carlo checks ``tv_monte_carlo``, ...) lives in :mod:`cmcd_theory.worlds` (its
``ground_truth`` and ``exact`` modules) and is re-exported here, so ``divergences.tv_latent``
and the rest keep working.

Everything that is a bound or a tail probability is computed in float64 (numpy/scipy).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory.learn.probe import fit_probe, probe_predict
from cmcd_theory.worlds import QUAD_TOL as QUAD_TOL
from cmcd_theory.worlds import Interval as Interval
from cmcd_theory.worlds import World
from cmcd_theory.worlds import bayes_error as bayes_error
from cmcd_theory.worlds import bayes_error_exact as bayes_error_exact
from cmcd_theory.worlds import bayes_error_monte_carlo as bayes_error_monte_carlo
from cmcd_theory.worlds import gaussian_axes_bayes_error as gaussian_axes_bayes_error
from cmcd_theory.worlds import latent_logpdf as latent_logpdf
from cmcd_theory.worlds import pair_agreement as pair_agreement
from cmcd_theory.worlds import sample_latent_np as sample_latent_np
from cmcd_theory.worlds import tv_latent as tv_latent
from cmcd_theory.worlds import tv_latent_monte_carlo as tv_latent_monte_carlo
from cmcd_theory.worlds import tv_latent_per_class as tv_latent_per_class
from cmcd_theory.worlds import tv_monte_carlo as tv_monte_carlo
from cmcd_theory.worlds.ground_truth import _check_delta, _law_B

# ---- certified lower bound from a two-sample classifier (B1) -----------------------------------


def _quadratic_features(x, y, num_classes):
    f = jnp.concatenate([jnp.ones_like(x[:, :1]), x, x * x], axis=1)
    if y is None:
        return f
    onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
    return (onehot[:, :, None] * f[:, None, :]).reshape(x.shape[0], -1)


def two_sample_accuracy(
    key: jax.Array,
    xp,
    xq,
    yp=None,
    yq=None,
    *,
    num_classes=None,
    train_frac: float = 0.5,
    l2: float = 1e-4,
    steps: int = 300,
):
    """Held-out balanced accuracy of the two-sample classifier of
    :func:`tv_classifier_lower_bound` (traceable: ``jit`` / ``vmap`` over keys and samples).

    The one implementation of that classifier: logistic regression (``steps`` full-batch
    steps of :func:`~cmcd_theory.learn.probe.fit_probe`) on standardised quadratic features, fitted
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


def tv_classifier_lower_bound(
    key: jax.Array,
    xp,
    xq,
    yp=None,
    yq=None,
    *,
    num_classes=None,
    delta: float = 0.05,
    train_frac: float = 0.5,
    l2: float = 1e-4,
) -> dict:
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
    acc = float(
        two_sample_accuracy(
            key,
            xp,
            xq,
            None if yp is None else jnp.asarray(yp),
            None if yq is None else jnp.asarray(yq),
            num_classes=num_classes,
            train_frac=train_frac,
            l2=l2,
        )
    )
    slack = 2.0 * math.sqrt(math.log(1.0 / delta) / (2.0 * n_test))
    return {
        "lower": 2 * acc - 1 - slack,
        "estimate": 2 * acc - 1,
        "acc": acc,
        "slack": slack,
        "n_test": n_test,
        "delta": delta,
    }


# ---- B1 on the Gaussian track: TV of learned features ---------------------------------------


def gaussian_mixture_tv(
    means_p, covs_p, means_q, covs_q, n: int = 100_000, seed: int = 0, delta: float = 0.01
) -> Interval:
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
        lr = -0.5 * np.sum(white_q**2, 1) + 0.5 * np.sum(xi**2, 1) - log_det
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
        mu, std = cfg.source_class_means(), cfg.sigma  # s_A | y ~ N(mean, sigma^2 I), G8
        cov = std**2 * A @ A.T
    else:
        law = _law_B(cfg, cfg.t if t is None else float(t))
        if len([c for c in law if c[0] > 0]) != 1:
            raise ValueError(
                f"the {cfg.channel} channel gives a mixture: not on the Gaussian track"
            )
        _, mu, std = next(c for c in law if c[0] > 0)
        A_s, A_nu = A[:, :k], A[:, k:]
        cov = std**2 * A_s @ A_s.T + cfg.nuisance_scale**2 * A_nu @ A_nu.T
        A = A_s
    means = mu @ A.T
    cov = cov + cfg.obs_noise**2 * W @ W.T
    return means, np.broadcast_to(cov, (cfg.num_classes,) + cov.shape).copy()


def gaussian_feature_tv(
    world: World,
    W_A,
    W_B,
    t: float | None = None,
    n: int = 100_000,
    seed: int = 0,
    delta: float = 0.01,
) -> Interval:
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

    def second_moment(m, c):
        return float(np.mean(np.sum(m**2, 1) + np.trace(c, axis1=1, axis2=2)))

    c_match = math.sqrt(second_moment(mp, cp) / second_moment(mq, cq))
    best = None
    for c in (1.0, c_match):
        iv = gaussian_mixture_tv(mp, cp, c * mq, c * c * cq, n=n, seed=seed, delta=delta / 2)
        if best is None or iv.upper < best.upper:
            best = iv
    assert best is not None  # the loop above runs twice
    return Interval(best.estimate, best.lower, best.upper, best.n, delta)
