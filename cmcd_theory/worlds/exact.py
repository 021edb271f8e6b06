"""Exact ground truth in closed form or by quadrature, float64 (docs/theory.md, G2, G5b).

The formulas every channel and every ground-truth quantity of a world is built from, as pure
functions of numbers (numpy/scipy, no JAX, nothing else of the package):

* :func:`_tv_equal_cov`: TV of two isotropic Gaussians with one covariance (G2: attenuate,
  corrupt, rotate);
* :func:`_tv_equal_mean`: TV of two isotropic Gaussians with one mean (G2: noise);
* :func:`_tv_isotropic`: TV of any two isotropic Gaussians (G8: a source channel beside the
  target's);
* :func:`_rotation_matrix_np`: the rotation ``R_t`` of the rotate channel;
* :func:`_iso_logpdf`: the log density of an isotropic Gaussian;
* :func:`gaussian_axes_bayes_error`: the Bayes error of K Gaussian classes on orthonormal axes,
  by one 1-D quadrature per class to :data:`QUAD_TOL` (G5b).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

QUAD_TOL = 1e-12  # absolute tolerance asked of each 1-D integral (G5b); the target is 1e-8


def _tv_equal_cov(dist, sigma):
    """TV between N(a, s^2 I) and N(b, s^2 I) with norm(a - b) = dist: 2 Phi(dist / 2s) - 1."""
    return 2.0 * special.ndtr(np.asarray(dist, np.float64) / (2.0 * sigma)) - 1.0


def _tv_equal_mean(k: int, s1: float, s2: float):
    """TV between N(m, s1^2 I_k) and N(m, s2^2 I_k) (G2 noise): 0 for ``s1 = s2``, else
    ``F(r2 / s1^2) - F(r2 / s2^2)`` with F the chi-square(k) CDF and
    ``r2 = 2 k ln(s2/s1) s1^2 s2^2 / (s2^2 - s1^2)``, the squared radius where the densities
    cross."""
    from scipy import stats  # here, not at the top: the import costs a command 0.4 s

    if s2 == s1:
        return 0.0
    r2 = 2 * k * math.log(s2 / s1) * s1**2 * s2**2 / (s2**2 - s1**2)
    return stats.chi2.cdf(r2 / s1**2, k) - stats.chi2.cdf(r2 / s2**2, k)


def _tv_isotropic(dist: float, k: int, s1: float, s2: float) -> float:
    r"""TV between ``N(a, s1^2 I_k)`` and ``N(b, s2^2 I_k)`` with ``norm(a - b) = dist`` (G8).

    Equal scales: :func:`_tv_equal_cov`. Otherwise (by symmetry ``s1 < s2``) the first density
    is larger exactly on a ball: with ``l_i = 1 / s_i^2``, its centre is
    ``c = (l1 a - l2 b) / (l1 - l2)`` and its squared radius
    ``R^2 = l1 l2 dist^2 / (l1 - l2)^2 + 2 k ln(s2 / s1) / (l1 - l2)``; since
    ``a - c = l2 (b - a) / (l1 - l2)`` and ``b - c = l1 (b - a) / (l1 - l2)``,

    .. math:: \mathrm{TV} = F_{k,\lambda_1}(R^2 / s_1^2) - F_{k,\lambda_2}(R^2 / s_2^2),\quad
              \lambda_1 = \Big(\frac{l_2\,d}{(l_1 - l_2) s_1}\Big)^2,\quad
              \lambda_2 = \Big(\frac{l_1\,d}{(l_1 - l_2) s_2}\Big)^2,

    with ``F_{k, lambda}`` the noncentral chi-square CDF (``dist = 0``: :func:`_tv_equal_mean`).

    Example:
      >>> bool(abs(_tv_isotropic(0.0, 3, 1.0, 2.0) - _tv_equal_mean(3, 1.0, 2.0)) < 1e-12)
      True
    """
    from scipy import stats  # here, not at the top: the import costs a command 0.4 s

    if s1 == s2:
        return float(_tv_equal_cov(dist, s1))
    if s1 > s2:
        s1, s2 = s2, s1
    l1, l2 = 1.0 / s1**2, 1.0 / s2**2
    r2 = l1 * l2 * dist**2 / (l1 - l2) ** 2 + 2 * k * math.log(s2 / s1) / (l1 - l2)
    nc1 = (l2 * dist / ((l1 - l2) * s1)) ** 2
    nc2 = (l1 * dist / ((l1 - l2) * s2)) ** 2

    def cdf(x, nc):
        return stats.chi2.cdf(x, k) if nc == 0 else stats.ncx2.cdf(x, k, nc)

    return float(cdf(r2 / s1**2, nc1) - cdf(r2 / s2**2, nc2))


def _rotation_matrix_np(t: float, k: int) -> np.ndarray:
    """R_t in float64: rotation by angle ``t pi / 2`` in the plane of ``e_1, e_2`` (k x k)."""
    a = t * math.pi / 2
    r = np.eye(k)
    r[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return r


def _iso_logpdf(x, mean, std):
    """Log density of ``N(mean, std^2 I_k)`` at the rows of x (n, k)."""
    k = x.shape[-1]
    return (
        -0.5 * np.sum((x - mean) ** 2, axis=-1) / std**2
        - k * math.log(std)
        - 0.5 * k * math.log(2 * math.pi)
    )


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
    from scipy import integrate  # imported here: at module level it costs every command ~0.2 s

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
            return (
                math.exp(-0.5 * z * z)
                / math.sqrt(2 * math.pi)
                * float(
                    np.prod(special.ndtr((ay * ay + pos * pos + 2 * ay * sv * z) / (2 * pos * sv)))
                )
            )

        lo = -ay / (2 * sv) if n_zero else -np.inf
        val, e = integrate.quad(integrand, lo, np.inf, epsabs=QUAD_TOL, epsrel=0.0, limit=200)
        correct += val
        err += e
    eps = 1.0 - correct / a.size
    return (eps, err / a.size) if return_error else eps
