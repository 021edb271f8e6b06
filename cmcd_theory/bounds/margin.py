r"""B2: Rademacher margin bound for the linear probe on frozen features (docs/theory.md, B2).

Scorers :math:`(z, y) \mapsto \tilde w_y\cdot\tilde z` with the bias folded in
(:math:`\tilde z = (z, 1)`, :math:`\tilde w_y = (w_y, b_y)`), margin
:math:`\rho_h(z, y) = \tilde w_y\cdot\tilde z - \max_{y'\ne y}\tilde w_{y'}\cdot\tilde z`,
ramp loss :math:`\Phi_\rho(u) = \min(1, \max(0, 1 - u/\rho))`. With probability
:math:`\ge 1-\delta` over the ``n`` labeled samples, simultaneously for every grid point
:math:`(\rho, \Lambda)` of :data:`RHO_GRID` x :data:`MARGIN_LAMBDA_GRID` and every probe with
norm :math:`\le \Lambda` (:math:`\delta' = \delta / |\text{grid}|`):

multi-class (Mohri et al. 2018, Thm 9.2 with Thm 9.3's Rademacher bound),
:math:`\Lambda \ge \max_y \|\tilde w_y\|`:

.. math::

  \text{sample:}\quad R(h) \le \hat R_\rho + \frac{4K}{\rho}\,
      \frac{\Lambda\sqrt{\sum_i \|\tilde z_i\|^2}}{n} + 3\sqrt{\frac{\ln(2/\delta')}{2n}},
  \qquad
  \text{data-free:}\quad R(h) \le \hat R_\rho + \frac{4K\Lambda r}{\rho\sqrt n}
      + \sqrt{\frac{\ln(1/\delta')}{2n}};

binary, ``K = 2`` (Mohri et al. 2018, Thm 5.8 and Cor 5.10): the two-class margin equals
:math:`y_\pm\, w\cdot\tilde z` with :math:`w = \tilde w_1 - \tilde w_2` and
:math:`y_\pm = +1` for class 0, :math:`-1` for class 1, so the binary theorem applies
with :math:`\Lambda \ge \|\tilde w_1 - \tilde w_2\|` (at most :math:`2\max_y\|\tilde w_y\|`):
complexity :math:`(2/\rho)\Lambda\sqrt{\sum_i\|\tilde z_i\|^2}/n` (sample) or
:math:`2\Lambda r/(\rho\sqrt n)` (data-free), same confidence terms.

:math:`R(h)` counts ties as errors (margin <= 0). The features must not depend on the ``n``
labeled samples. The probe helpers :func:`_augment` and :func:`_margins` are shared with B3
and B3p (:mod:`cmcd_theory.bounds.pac_bayes`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from cmcd_theory.bounds._checks import (
    _NORM_RTOL,
    _check_delta,
    _check_grid,
    _check_real,
    _choice,
    _smallest_covering,
    _Terms,
)

#: B2 margins rho: 2^j, j = -10..10 (21 values).
RHO_GRID: tuple = tuple(2.0**j for j in range(-10, 11))
#: B2 weight norms Lambda (max_y ||w_y||, or ||w_1 - w_2|| in the binary form): 2^j,
#: j = -4..16 (21 values).
MARGIN_LAMBDA_GRID: tuple = tuple(2.0**j for j in range(-4, 17))


def _augment(features, labels, weights, bias):
    """Validated float64 (Z~, y, W~, has_bias): bias folded in as a constant coordinate 1."""
    z = np.asarray(features, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"features must have shape (n, D) with n, D >= 1, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("features must be finite")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != z.shape[1] or w.shape[0] < 2:
        raise ValueError(
            f"weights must have shape (K, D) with K >= 2 and D = {z.shape[1]}, got {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    K = w.shape[0]
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be integers of shape ({z.shape[0]},), got {y.dtype} {y.shape}"
        )
    if np.any(y < 0) or np.any(y >= K):
        raise ValueError(f"labels must lie in [0, K) = [0, {K})")
    has_bias = bias is not None
    if has_bias:
        b = np.asarray(bias, dtype=np.float64)
        if b.shape != (K,) or not np.all(np.isfinite(b)):
            raise ValueError(f"bias must be finite of shape ({K},), got {b.shape}")
        z = np.concatenate([z, np.ones((z.shape[0], 1))], axis=1)
        w = np.concatenate([w, b[:, None]], axis=1)
    return z, y.astype(np.int64), w, has_bias


def _margins(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Multi-class margins :math:`s_y - \max_{y' \ne y} s_{y'}` along the last axis.

    scores (..., n, K), y (n,) -> (..., n).
    """
    idx = np.broadcast_to(y[:, None], scores.shape[:-1] + (1,))
    correct = np.take_along_axis(scores, idx, axis=-1)[..., 0]
    others = scores.copy()
    np.put_along_axis(others, idx, -np.inf, axis=-1)
    return correct - others.max(axis=-1)


@dataclasses.dataclass(frozen=True)
class MarginBound(_Terms):
    """B2 terms: ``total = empirical + complexity + confidence`` at the chosen grid point."""

    label: ClassVar[str] = "B2"
    empirical: float  # ramp loss Rhat_rho at the chosen rho
    complexity: float  # (4K/rho) Rad (multi-class) or (2/rho) Rad (binary)
    confidence: float  # sqrt(log(1/d')/(2n)) or 3 sqrt(log(2/d')/(2n))
    total: float
    rho: float  # chosen margin (grid value)
    Lambda: float  # grid value covering Lambda_hat
    Lambda_hat: float  # max_y ||w~_y|| (multi-class) or ||w~_1 - w~_2|| (binary)
    r: float  # norm bound on augmented features (data_free), else max norm
    rademacher: float  # the bound on the (empirical) Rademacher complexity used
    empirical_margin_loss: float  # same as ``empirical``
    empirical_error: float  # 0-1 training error of the probe (margin <= 0), for reference
    n: int
    K: int
    delta: float
    delta_per_point: float  # delta / grid_size
    grid_size: int  # len(rho_grid) * len(lambda_grid)
    form: str  # "sample" or "data_free"
    binary: bool


def margin_bound(
    features,
    labels,
    weights,
    bias=None,
    delta: float = 0.05,
    *,
    rho_grid: Sequence[float] = RHO_GRID,
    lambda_grid: Sequence[float] = MARGIN_LAMBDA_GRID,
    form: str = "sample",
    binary: bool | None = None,
    feature_norm_bound: float = 1.0,
) -> MarginBound:
    r"""B2: Rademacher margin bound for the linear probe on frozen features.

    The bound of the module docstring, at level :math:`1-\delta` for every grid point at once
    (union bound). For each :math:`\rho` only the smallest grid :math:`\Lambda \ge
    \hat\Lambda` is evaluated (larger ones are never better); the minimum total over
    :math:`\rho` is returned.

    Args:
      features: (n, D) training features the probe was fit on.
      labels: (n,) integers in [0, K).
      weights: (K, D) probe weights.
      bias: (K,) probe bias, or None (no bias: no constant coordinate).
      delta: confidence parameter in (0, 1).
      rho_grid: margins fixed in advance (default :data:`RHO_GRID`).
      lambda_grid: norms fixed in advance (default :data:`MARGIN_LAMBDA_GRID`).
      form: ``"sample"`` (empirical Rademacher) or ``"data_free"``.
      binary: use the binary form; default ``K == 2``. Requires ``K == 2``.
      feature_norm_bound: almost-sure bound on :math:`\|z\|` (1 for normalised features);
        ``data_free`` only: ``r = sqrt(bound^2 + 1)`` with a bias, else ``bound``, and a
        sample norm above it raises ValueError.

    Returns:
      :class:`MarginBound`.

    Example:
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0]] * 500)
      >>> y = np.array([0, 1] * 500)
      >>> w = np.array([[1.0, -1.0], [-1.0, 1.0]])
      >>> b = margin_bound(z, y, w, form="data_free")
      >>> b.Lambda_hat, b.Lambda, b.rho, b.empirical
      (2.8284271247461903, 4.0, 2.0, 0.0)

    References:
      M. Mohri, A. Rostamizadeh, A. Talwalkar, Foundations of Machine Learning (2nd ed.),
      MIT Press 2018: Theorem 5.8, Corollary 5.10 (binary), Theorems 9.2 and 9.3
      (multi-class).
    """
    z, y, w, has_bias = _augment(features, labels, weights, bias)
    K = w.shape[0]
    delta = _check_delta("delta", delta)
    form = _choice("form", form, ("sample", "data_free"))
    if binary is None:
        binary = K == 2
    if binary and K != 2:
        raise ValueError(f"binary=True needs K = 2 classes, got K = {K}")
    rhos = _check_grid("rho_grid", rho_grid)
    lambdas = _check_grid("lambda_grid", lambda_grid)
    bound_z = _check_real("feature_norm_bound", feature_norm_bound, lo=0.0, lo_open=True)
    return _margin_bound(z, y, w, has_bias, delta, form, binary, rhos, lambdas, bound_z)


def _margin_bound(z, y, w, has_bias, delta, form, binary, rhos, lambdas, bound_z) -> MarginBound:
    """B2 of checked arguments (:func:`margin_bound`): the probe norm and its grid cover, the
    feature radius, the terms at every grid margin and the row at the margin with the smallest
    total."""
    n, K = z.shape[0], w.shape[0]
    sq_norms = np.sum(z * z, axis=1)
    r = _feature_radius(sq_norms, has_bias, bound_z, form)
    lambda_hat = float(np.linalg.norm(w[0] - w[1]) if binary else np.max(np.linalg.norm(w, axis=1)))
    lam = _smallest_covering("the probe norm Lambda_hat", lambdas, lambda_hat, "lambda_grid")
    grid_size = rhos.size * lambdas.size
    d_pt = delta / grid_size

    margins = _margins(z @ w.T, y)
    err = float(np.mean(margins <= 0))
    factor = 2.0 if binary else 4.0 * K
    ramp, complexity, rad, conf = _margin_terms(
        margins, rhos, lam, sq_norms, r, n, d_pt, form, factor
    )
    totals = ramp + complexity + conf
    j = int(np.argmin(totals))
    return MarginBound(
        empirical=float(ramp[j]),
        complexity=float(complexity[j]),
        confidence=conf,
        total=float(totals[j]),
        rho=float(rhos[j]),
        Lambda=lam,
        Lambda_hat=lambda_hat,
        r=r,
        rademacher=rad,
        empirical_margin_loss=float(ramp[j]),
        empirical_error=err,
        n=n,
        K=K,
        delta=delta,
        delta_per_point=d_pt,
        grid_size=grid_size,
        form=form,
        binary=bool(binary),
    )


def _feature_radius(sq_norms: np.ndarray, has_bias: bool, bound_z: float, form: str) -> float:
    """r of B2: the norm bound on the augmented features.

    ``data_free``: the almost-sure bound ``sqrt(bound_z^2 + 1)`` with a bias (else ``bound_z``),
    which every sample norm must respect up to a relative ``_NORM_RTOL``; ``sample``: the
    largest augmented sample norm (recorded only: the sample form uses the norms themselves).
    """
    if form == "data_free":
        raw_max = float(np.sqrt(np.max(sq_norms - (1.0 if has_bias else 0.0))))
        if raw_max > bound_z * (1 + _NORM_RTOL):
            raise ValueError(
                f"a feature has norm {raw_max!r} > feature_norm_bound = {bound_z!r}: the "
                f"data-free form needs an almost-sure norm bound"
            )
        return math.sqrt(max(bound_z, raw_max) ** 2 + (1.0 if has_bias else 0.0))
    return float(np.sqrt(sq_norms.max()))


def _margin_terms(
    margins: np.ndarray,
    rhos: np.ndarray,
    lam: float,
    sq_norms: np.ndarray,
    r: float,
    n: int,
    d_pt: float,
    form: str,
    factor: float,
):
    r"""The terms of B2 at every grid margin :math:`\rho`, for the covering norm ``lam``.

    Returns ``(ramp, complexity, rad, conf)``: the empirical ramp losses
    :math:`\hat R_\rho` and complexities ``factor * rad / rho`` (arrays over ``rhos``; factor
    :math:`4K`, or 2 in the binary form), the Rademacher bound ``rad``
    (:math:`\Lambda\sqrt{\sum_i\|\tilde z_i\|^2}/n` in the sample form,
    :math:`\Lambda r/\sqrt n` data-free) and the confidence term at :math:`\delta'` = ``d_pt``.
    """
    ramp = np.mean(np.clip(1.0 - margins[None, :] / rhos[:, None], 0.0, 1.0), axis=1)
    if form == "sample":
        rad = lam * math.sqrt(float(sq_norms.sum())) / n
        conf = 3.0 * math.sqrt(math.log(2.0 / d_pt) / (2.0 * n))
    else:
        rad = lam * r / math.sqrt(n)
        conf = math.sqrt(math.log(1.0 / d_pt) / (2.0 * n))
    return ramp, factor * rad / rhos, rad, conf
