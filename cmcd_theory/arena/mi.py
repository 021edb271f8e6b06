"""Gaussian mutual-information estimates from samples (docs/theory.md, P5).

One estimator for both sides of the CCH comparison on learned features:

* :func:`gaussian_mi`: the mutual information of the Gaussian with the sample's covariance,
  ``I_G(U; V) = -1/2 sum_i log(1 - rho_i^2)``, ``rho_i`` the sample canonical correlations of U
  and V, minus its mean under independence (Bartlett's chi-square approximation), floored at 0;
* :func:`label_mi`: the same estimator with V the one-hot label indicator, which is the
  Gaussian class-conditional (LDA) plug-in ``1/2 log det Sigma_Z - 1/2 log det Sigma_within``.

Why one Gaussian estimator on both sides: CCH compares two mutual informations, so an error
that differs between the sides moves the call. A plug-in Gaussian estimate of I(Z_A; Z_B) and a
k-NN or neural estimate of I(Z_B; Y) would carry different biases at these sample sizes (m in
the hundreds, n down to 16); the same Gaussian family on both sides, with the same null-mean
correction, puts them in one unit. It is exact for jointly Gaussian (Z_A, Z_B) and for Gaussian
class-conditionals with a shared covariance, and otherwise measures linear (second-moment)
dependence only.
"""

from __future__ import annotations

import math

import numpy as np

#: eigenvalues of a sample covariance below this fraction of the largest are dropped (the
#: features are L2-normalised and may span fewer than p directions)
RANK_TOL = 1e-9


def _whiten(x: np.ndarray) -> np.ndarray:
    """Centred ``x`` mapped to coordinates with identity sample covariance, on the span of its
    eigenvalues above ``RANK_TOL`` times the largest: shape (N, rank)."""
    x = x - x.mean(axis=0)
    cov = x.T @ x / (x.shape[0] - 1)
    w, v = np.linalg.eigh(cov)
    keep = w > RANK_TOL * max(float(w.max()), 0.0) if w.size else np.zeros(0, bool)
    if not keep.any():
        return np.zeros((x.shape[0], 0))
    return x @ (v[:, keep] / np.sqrt(w[keep]))


def canonical_correlations(u, v) -> np.ndarray:
    """Sample canonical correlations of ``u`` (N, p) and ``v`` (N, q), in [0, 1], descending:
    the singular values of the cross-covariance of the whitened samples.

    >>> rng = np.random.default_rng(0)
    >>> u = rng.normal(size=(2000, 2))
    >>> float(canonical_correlations(u, u @ [[1.0, 0.0], [2.0, 1.0]])[0]) > 0.999
    True
    """
    u, v = np.asarray(u, float), np.asarray(v, float)
    if u.shape[0] != v.shape[0]:
        raise ValueError(f"u and v must have the same rows, got {u.shape[0]} and {v.shape[0]}")
    wu, wv = _whiten(u), _whiten(v)
    if wu.shape[1] == 0 or wv.shape[1] == 0:
        return np.zeros(0)
    rho = np.linalg.svd(wu.T @ wv / (u.shape[0] - 1), compute_uv=False)
    return np.clip(rho, 0.0, 1.0)


def null_mean(n: int, p: int, q: int) -> float:
    """Mean of the plug-in ``-1/2 sum log(1 - rho_i^2)`` when U and V are independent Gaussians:
    Bartlett's statistic ``-(N - 1 - (p + q + 1) / 2) sum log(1 - rho_i^2)`` is approximately
    chi-square with ``p q`` degrees of freedom, so the plug-in's mean is
    ``p q / (2 (N - 1 - (p + q + 1) / 2))`` (the denominator floored at 1).

    Reference: M. S. Bartlett, *The statistical significance of canonical correlations*,
    Biometrika 32, 1941; T. W. Anderson, *An Introduction to Multivariate Statistical
    Analysis*, 3rd ed., 2003, Section 12.4.

    >>> round(null_mean(101, 2, 2), 6)
    0.020513
    """
    return p * q / (2.0 * max(n - 1 - (p + q + 1) / 2.0, 1.0))


def gaussian_mi(u, v, *, corrected: bool = True) -> float:
    """Gaussian estimate of ``I(U; V)`` in nats from N paired rows.

    ``I_G = -1/2 sum_i log(1 - rho_i^2)`` over the sample canonical correlations (the mutual
    information of the Gaussian with the sample covariance; exact in the limit for jointly
    Gaussian U, V), minus :func:`null_mean` of the retained dimensions when ``corrected``, floored
    at 0. A correlation of 1 (a deterministic linear relation) gives ``inf``.

    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(20000, 1))
    >>> y = 0.6 * x + 0.8 * rng.normal(size=(20000, 1))   # correlation 0.6
    >>> abs(gaussian_mi(x, y) - (-0.5 * math.log(1 - 0.36))) < 0.01
    True
    """
    u, v = np.asarray(u, float), np.asarray(v, float)
    u, v = u.reshape(len(u), -1), v.reshape(len(v), -1)
    rho = canonical_correlations(u, v)
    if rho.size and rho.max() >= 1.0:
        return math.inf
    plug = float(-0.5 * np.sum(np.log1p(-(rho**2))))
    if not corrected:
        return plug
    p, q = _whiten(u).shape[1], _whiten(v).shape[1]
    return max(plug - null_mean(u.shape[0], p, q), 0.0)


def one_hot(y, num_classes: int | None = None) -> np.ndarray:
    """The label indicator with one column per class present in ``y`` but the last (the
    columns of all classes sum to 1, so one is redundant): shape (N, present - 1)."""
    y = np.asarray(y).astype(int).ravel()
    present = np.unique(y)
    return (y[:, None] == present[None, :-1]).astype(float)


def label_mi(z, y, *, corrected: bool = True) -> float:
    """Gaussian estimate of ``I(Z; Y)`` in nats: :func:`gaussian_mi` of the features and the
    one-hot labels (:func:`one_hot`).

    It equals the Gaussian class-conditional (LDA) plug-in
    ``1/2 log det Sigma_Z - 1/2 log det Sigma_within``, with ``Sigma_within`` the residual
    covariance of Z after regressing it on the labels (the pooled within-class scatter over
    N - 1): for jointly distributed (Z, e_Y) the Gaussian MI is
    ``1/2 log det Sigma_Z - 1/2 log det(Sigma_Z - Sigma_ZY Sigma_YY^-1 Sigma_YZ)`` and the second
    matrix is that residual covariance. For Gaussian classes with a shared covariance it is an
    upper bound on I(Z; Y) (the entropy of Z is at most that of the Gaussian with its
    covariance), equal to ``1/2 log det(I + Sigma_within^-1 Sigma_between)``: a separation of
    the class means in within-class units, not capped by the label entropy ``log K``.

    >>> rng = np.random.default_rng(2)
    >>> y = rng.integers(0, 3, size=3000)
    >>> z = np.eye(3)[y] * 2.0 + rng.normal(size=(3000, 3))
    >>> r = z - np.stack([z[y == c].mean(0) for c in range(3)])[y]     # within-class residuals
    >>> lda = 0.5 * (np.linalg.slogdet(np.cov(z.T))[1] - np.linalg.slogdet(r.T @ r / 2999)[1])
    >>> bool(abs(label_mi(z, y, corrected=False) - lda) < 1e-9)
    True
    """
    return gaussian_mi(z, one_hot(y), corrected=corrected)
