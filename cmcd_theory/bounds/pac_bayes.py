r"""B3 / B3p: PAC-Bayes-kl bounds for the linear probe (docs/theory.md, B3 and B3p).

Gaussian posteriors over all :math:`D = K(d+1)` probe weights (:math:`D = Kd` without bias),
0-1 loss with ties counted as errors, two steps at confidence :math:`\delta_{mc} = f\delta`
and :math:`\delta_{pb} = (1-f)\delta`:

* Monte Carlo (Langford and Caruana 2002): the mean loss :math:`\hat L_{S,N_w}` of
  :math:`N_w` weight draws per point gives
  :math:`\hat L_S(Q) \le \hat L^{up} = \mathrm{kl}^{-1}_{\rm up}(\hat L_{S,N_w},\ c_{mc})`;
* PAC-Bayes-kl (Maurer 2004; Seeger 2002): for a prior P independent of the sample,

  .. math::

    L(Q) \le \mathrm{kl}^{-1}_{\rm up}\Big(\hat L^{up},
        \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\, G/\delta_{pb})}{n}\Big).

B3 (:func:`pac_bayes_kl_bound`): prior :math:`N(0, \sigma_p^2 I_D)`, :math:`\sigma_p` on
:data:`SIGMA_P_GRID` (:math:`G_p` values), posterior :math:`N(\hat W, \sigma_q^2 I_D)`,
:math:`G_q` values of :math:`\sigma_q`, :math:`c_{mc} = \ln(2G_q/\delta_{mc})/(nN_w)`.
Validity: the PAC-Bayes bound holds for all Q at once for each prior, the union over
:math:`\sigma_p` costs :math:`G_p`; the MC bound holds, conditionally on the sample, for each
:math:`\sigma_q` at level :math:`\delta_{mc}/G_q`, union over the :math:`G_q` values. So
:math:`\sigma_q` may depend on the sample (the default grid :data:`SIGMA_Q_RELATIVE_GRID` is
relative to :math:`\|\hat W\|_F/\sqrt D`) but not on the weight draws.

B3p (:func:`pac_bayes_split_prior_bound`): the labeled sample is split, in an order fixed
before the data, into :math:`S_0` (``n_prior`` points) and :math:`S_1` (the ``n`` points the
bound uses). The prior mean :math:`W_0` is a function of :math:`S_0` only; for
:math:`\kappa` on a grid of G values, :math:`\sigma = \kappa\lVert W_0\rVert_F/\sqrt D`,
prior :math:`N(W_0, \sigma^2 I_D)`, posterior :math:`Q_\kappa = N(c\hat W, \sigma^2 I_D)`,
:math:`c = \langle\hat W, W_0\rangle/\lVert\hat W\rVert_F^2` (the multiple of :math:`\hat W`
closest to :math:`W_0`; 1 if that is not positive),
:math:`\mathrm{KL} = \lVert c\hat W - W_0\rVert^2/(2\sigma^2)` and
:math:`c_{mc} = \ln(G/\delta_{mc})/(nN_w)`.

Derandomisation (both): for every point where :math:`\hat W` errs, some :math:`y'\ne y` has
:math:`(\hat w_{y'}-\hat w_y)\cdot\tilde z \ge 0`, and the symmetric Gaussian perturbation
keeps that sign with probability :math:`\ge 1/2`, so :math:`R(\hat W) = R(c\hat W) \le 2L(Q)`
(``total_deterministic``, unclipped).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Generator, Sequence
from typing import ClassVar

import numpy as np

from cmcd_theory.bounds._checks import (
    _check_delta,
    _check_grid,
    _check_int,
    _check_real,
    _Terms,
)
from cmcd_theory.bounds.kl import _kl_steps, kl_inverse_upper
from cmcd_theory.bounds.margin import _augment, _margins

# the Monte Carlo of B3 / B3p (its memo too) is pac_bayes_mc's; the names are kept here
from cmcd_theory.bounds.pac_bayes_mc import _MC_MEMO as _MC_MEMO
from cmcd_theory.bounds.pac_bayes_mc import _memo_key as _memo_key
from cmcd_theory.bounds.pac_bayes_mc import _stochastic_errors as _stochastic_errors

#: B3 prior standard deviations sigma_p: 2^(j/2), j = -16..16 (33 values, 2^-8 .. 2^8).
SIGMA_P_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-16, 17))
#: B3 default posterior standard deviations, relative to ||W_hat||_F / sqrt(D):
#: 2^(j/2), j = -10..0 (11 values, 1/32 .. 1).
SIGMA_Q_RELATIVE_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-10, 1))


def gaussian_kl(mean_sq_norm: float, dim: int, sigma_q: float, sigma_p: float) -> float:
    r"""KL from posterior :math:`N(\hat W, \sigma_q^2 I)` to prior :math:`N(0, \sigma_p^2 I)` (B3).

    .. math::

      \mathrm{KL}(Q\|P) = \frac D2\Big(\frac{\sigma_q^2}{\sigma_p^2} - 1
          - \ln\frac{\sigma_q^2}{\sigma_p^2}\Big) + \frac{\|\hat W\|^2}{2\sigma_p^2}.

    Args:
      mean_sq_norm: :math:`\|\hat W\|^2 \ge 0` (all weights, bias included).
      dim: number of weights D >= 1.
      sigma_q: posterior standard deviation > 0.
      sigma_p: prior standard deviation > 0.

    Returns:
      float >= 0.

    Example:
      >>> gaussian_kl(2.0, 10, 1.0, 1.0)
      1.0

    References:
      e.g. G. K. Dziugaite and D. M. Roy, Computing nonvacuous generalization bounds for
      deep (stochastic) neural networks with many more parameters than training data,
      UAI 2017, Section 4.
    """
    m2 = _check_real("mean_sq_norm", mean_sq_norm, lo=0.0)
    dim = _check_int("dim", dim, 1)
    sq = _check_real("sigma_q", sigma_q, lo=0.0, lo_open=True)
    sp = _check_real("sigma_p", sigma_p, lo=0.0, lo_open=True)
    return _gaussian_kl(m2, dim, sq, sp)


def _gaussian_kl(m2: float, dim: int, sq: float, sp: float) -> float:
    """:func:`gaussian_kl` of checked Python numbers (B3's and B3p's grids call it per scale)."""
    ratio = (sq / sp) ** 2
    # ratio - 1 - log(ratio) >= 0; written with log so that it is exact at ratio = 1.
    return 0.5 * dim * (ratio - 1.0 - math.log(ratio)) + m2 / (2.0 * sp * sp)


def sample_convergence_upper(emp_mc: float, n_samples: int, delta: float) -> float:
    r"""Monte Carlo correction of B3: upper bound on :math:`\hat L_S(Q)` from ``n_samples`` draws.

    With :math:`\hat L_{S,N_w}` the mean empirical 0-1 loss of :math:`N_w` weights drawn
    i.i.d. from Q, with probability :math:`\ge 1-\delta` over the draws,
    :math:`\mathrm{kl}(\hat L_{S,N_w}\|\hat L_S(Q)) \le \ln(2/\delta)/N_w`, hence

    .. math:: \hat L_S(Q) \le \mathrm{kl}^{-1}_{\rm up}\big(\hat L_{S,N_w},\ \ln(2/\delta)/N_w\big).

    (The per-draw losses lie in [0, 1], so the binomial Chernoff bound applies.)

    Args:
      emp_mc: Monte Carlo estimate in [0, 1].
      n_samples: number of weight draws N_w >= 1.
      delta: failure probability in (0, 1).

    Returns:
      float in [emp_mc, 1].

    Example:
      >>> round(sample_convergence_upper(0.0, 1000, 0.05), 6)   # 1 - exp(-ln(40)/1000)
      0.003682

    References:
      J. Langford and R. Caruana, (Not) bounding the true error, NIPS 2001 (2002).
    """
    emp_mc = _check_real("emp_mc", emp_mc, lo=0.0, hi=1.0)
    n_samples = _check_int("n_samples", n_samples, 1)
    delta = _check_delta("delta", delta)
    return kl_inverse_upper(emp_mc, math.log(2.0 / delta) / n_samples)


def maurer_bound(emp_loss: float, kl: float, n: int, delta: float) -> float:
    r"""PAC-Bayes-kl bound of B3 (Maurer 2004): an upper bound on the stochastic risk L(Q).

    .. math::

      L(Q) \le \mathrm{kl}^{-1}_{\rm up}\big(\hat L,\ [\mathrm{KL} + \ln(2\sqrt n/\delta)]/n\big).

    With probability :math:`\ge 1-\delta` over the ``n`` samples, for all posteriors Q,
    :math:`\mathrm{kl}(\hat L_S(Q)\|L(Q)) \le [\mathrm{KL}(Q\|P) + \ln(2\sqrt n/\delta)]/n`,
    for a [0, 1]-valued loss and a prior P independent of the sample. Maurer proves it for
    :math:`n \ge 8` via :math:`\xi(n) \le 2\sqrt n`; :math:`\xi(n) \le 2\sqrt n` also holds
    for n = 1..7 by direct evaluation (tests/test_bounds.py), so it holds for every n >= 1.
    ``emp_loss`` may be any upper bound on :math:`\hat L_S(Q)` (the inverse is increasing
    in its first argument).

    Args:
      emp_loss: (upper bound on) the empirical stochastic loss, in [0, 1].
      kl: KL(Q || P) >= 0.
      n: number of samples >= 1.
      delta: failure probability in (0, 1).

    Returns:
      float in [emp_loss, 1].

    Example:
      >>> round(maurer_bound(0.05, 10.0, 1000, 0.05), 4)
      0.1008

    References:
      A. Maurer, A note on the PAC Bayesian theorem, arXiv:cs/0411099, 2004, Theorem 5.
      M. Seeger, JMLR 3, 2002, Theorem 1.
    """
    emp_loss = _check_real("emp_loss", emp_loss, lo=0.0, hi=1.0)
    kl = _check_real("kl", kl, lo=0.0)
    n = _check_int("n", n, 1)
    delta = _check_delta("delta", delta)
    return kl_inverse_upper(emp_loss, (kl + math.log(2.0 * math.sqrt(n) / delta)) / n)


@dataclasses.dataclass(frozen=True)
class PacBayesBound(_Terms):
    """B3 terms. ``total = kl_inv_up(empirical_upper, complexity + confidence)``."""

    label: ClassVar[str] = "B3"
    empirical: float  # MC estimate of the empirical stochastic loss Lhat_S(Q)
    complexity: float  # KL(Q||P) / n
    confidence: float  # ln(2 sqrt(n) / delta_pb') / n
    total: float  # bound on the stochastic risk L(Q)
    total_deterministic: float  # 2 * total: bound on R(W_hat) (unclipped)
    empirical_upper: float  # kl_inv_up(empirical, ln(2 G_q / delta_mc) / (n N_w))
    mc_correction: float  # empirical_upper - empirical
    kl: float  # KL(Q || P)
    sigma_p: float
    sigma_q: float
    empirical_deterministic: float  # training 0-1 error of W_hat (margin <= 0)
    weight_norm: float  # ||W_hat||_F (bias included)
    n: int
    K: int
    D: int  # number of probe weights
    delta: float
    delta_mc: float  # total share of delta spent on the MC correction
    delta_pac_bayes: float  # total share spent on the sigma_p union
    n_weight_samples: int
    sigma_p_grid_size: int
    sigma_q_grid_size: int


def pac_bayes_kl_bound(
    features,
    labels,
    weights,
    bias=None,
    *,
    seed,
    delta: float = 0.05,
    sigma_p_grid: Sequence[float] = SIGMA_P_GRID,
    sigma_q_grid: Sequence[float] | None = None,
    n_weight_samples: int = 1000,
    delta_mc_fraction: float = 0.5,
    chunk_size: int | None = None,
) -> PacBayesBound:
    r"""B3: PAC-Bayes-kl bound for the linear probe, with Monte Carlo correction.

    Prior :math:`P_{\sigma_p} = N(0, \sigma_p^2 I_D)`, posterior
    :math:`Q_{\sigma_q} = N(\hat W, \sigma_q^2 I_D)`; :math:`\delta_{mc} = f\delta` is
    shared by the :math:`G_q` values of :math:`\sigma_q`, :math:`\delta_{pb} = (1-f)\delta`
    by the :math:`G_p` values of :math:`\sigma_p`. For every grid pair,

    .. math::

      \hat L^{up} = \mathrm{kl}^{-1}_{\rm up}\Big(\hat L_{S,N_w}(Q),
          \frac{\ln(2G_q/\delta_{mc})}{n N_w}\Big),\qquad
      L(Q) \le \mathrm{kl}^{-1}_{\rm up}\Big(\hat L^{up},
          \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\, G_p/\delta_{pb})}{n}\Big),

    and the smallest value is returned, with :math:`R(\hat W) \le 2L(Q)` beside it (validity
    and derandomisation: module docstring).

    Args:
      features: (n, d) training features the probe was fit on.
      labels: (n,) integers in [0, K).
      weights: (K, d) probe weights :math:`\hat W`.
      bias: (K,) probe bias or None.
      seed: seed of the numpy Generator for the weight draws (int, SeedSequence or
        Generator; an int makes the result reproducible).
      delta: confidence parameter in (0, 1).
      sigma_p_grid: prior scales fixed before seeing data (default :data:`SIGMA_P_GRID`).
      sigma_q_grid: posterior scales; default
        :data:`SIGMA_Q_RELATIVE_GRID` times :math:`\|\hat W\|_F/\sqrt D` (times 1 if
        :math:`\hat W = 0`).
      n_weight_samples: Monte Carlo draws :math:`N_w \ge 1` per :math:`\sigma_q`.
      delta_mc_fraction: share f in (0, 1) of delta for the MC correction.
      chunk_size: draws processed at once (memory); default keeps arrays near 4e6 entries.

    Returns:
      :class:`PacBayesBound`.

    Example:
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0]] * 500); y = np.array([0, 1] * 500)
      >>> w = np.array([[4.0, -4.0], [-4.0, 4.0]])
      >>> pb = pac_bayes_kl_bound(z, y, w, seed=0, n_weight_samples=200)
      >>> bool(pb.empirical < pb.total < 0.1), pb.total_deterministic == 2 * pb.total
      (True, True)

    References:
      A. Maurer, arXiv:cs/0411099, 2004. M. Seeger, JMLR 3, 2002. J. Langford and
      R. Caruana, NIPS 2001. G. K. Dziugaite and D. M. Roy, UAI 2017. M. Perez-Ortiz et al.,
      Tighter risk certificates for neural networks, JMLR 22, 2021.
    """
    args = (features, labels, weights, bias, seed, delta, sigma_p_grid, sigma_q_grid)
    return _kl_steps(_zero_prior_steps(*args, n_weight_samples, delta_mc_fraction, chunk_size))[0]


def _zero_prior_steps(
    features,
    labels,
    weights,
    bias,
    seed,
    delta,
    sigma_p_grid,
    sigma_q_grid,
    n_weight_samples,
    delta_mc_fraction,
    chunk_size,
):
    """:func:`pac_bayes_kl_bound` (every argument given) as a generator of its kl inversions,
    run by :func:`~cmcd_theory.bounds.kl._kl_steps`: the checks, the Monte Carlo, then it
    yields ``(q, c)`` and is sent ``kl_inverse_upper(q, c)`` (twice); it returns the bound."""
    z, y, w, _ = _augment(features, labels, weights, bias)
    n, K, D = z.shape[0], w.shape[0], w.size
    delta = _check_delta("delta", delta)
    delta_mc, delta_pb = _delta_shares(delta, delta_mc_fraction)
    n_w = _check_int("n_weight_samples", n_weight_samples, 1)
    sps = _check_grid("sigma_p_grid", sigma_p_grid)
    w_norm = float(np.linalg.norm(w))
    sqs = _sigma_q_grid(sigma_q_grid, w_norm, D)
    chunk_size = _chunk_size(chunk_size, n, K)
    return (
        yield from _pac_bayes_kl(
            z, y, w, w_norm, sps, sqs, seed, n_w, chunk_size, delta, delta_mc, delta_pb
        )
    )


def _pac_bayes_kl(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    w_norm: float,
    sps: np.ndarray,
    sqs: np.ndarray,
    seed,
    n_w: int,
    chunk_size: int,
    delta: float,
    delta_mc: float,
    delta_pb: float,
) -> Generator[tuple, np.ndarray, PacBayesBound]:
    r"""B3 of checked arguments (:func:`pac_bayes_kl_bound`; ``z``, ``w`` augmented by the
    bias): the Monte Carlo errors at every posterior scale :math:`\sigma_q`, the two kl steps at
    every :math:`(\sigma_q, \sigma_p)` pair (:func:`_zero_prior_terms`, yielded) and the terms at
    the pair with the smallest bound."""
    n, K, D = z.shape[0], w.shape[0], w.size
    emp_mc = _stochastic_errors(z, y, w, sqs, seed, n_w, chunk_size)
    emp_up, conf, totals, kls = yield from _zero_prior_terms(
        emp_mc, w_norm, D, sqs, sps, n, n_w, delta_mc, delta_pb
    )
    gq, gp = np.unravel_index(int(np.argmin(totals)), totals.shape)
    total, sp, kl = float(totals[gq, gp]), float(sps[gp]), float(kls[gq, gp])
    err_det = float(np.mean(_margins(z @ w.T, y) <= 0))
    return PacBayesBound(
        empirical=float(emp_mc[gq]),
        complexity=kl / n,
        confidence=conf,
        total=total,
        total_deterministic=2.0 * total,
        empirical_upper=float(emp_up[gq]),
        mc_correction=float(emp_up[gq] - emp_mc[gq]),
        kl=kl,
        sigma_p=float(sp),
        sigma_q=float(sqs[gq]),
        empirical_deterministic=err_det,
        weight_norm=w_norm,
        n=n,
        K=K,
        D=D,
        delta=delta,
        delta_mc=delta_mc,
        delta_pac_bayes=delta_pb,
        n_weight_samples=n_w,
        sigma_p_grid_size=int(sps.size),
        sigma_q_grid_size=int(sqs.size),
    )


def _delta_shares(delta: float, delta_mc_fraction) -> tuple[float, float]:
    """``(delta_mc, delta_pb) = (f delta, (1 - f) delta)``: the shares of the confidence budget
    spent on the Monte Carlo correction and on the PAC-Bayes bound (B3, B3p), f in (0, 1)."""
    frac = _check_real(
        "delta_mc_fraction", delta_mc_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True
    )
    return frac * delta, (1.0 - frac) * delta


def _sigma_q_grid(sigma_q_grid, w_norm: float, D: int) -> np.ndarray:
    r"""B3's posterior scales: the given grid, or :data:`SIGMA_Q_RELATIVE_GRID` times
    :math:`\|\hat W\|_F/\sqrt D` (times 1 if :math:`\hat W = 0`). Either may depend on the
    sample, never on the weight draws."""
    if sigma_q_grid is None:
        scale = w_norm / math.sqrt(D) if w_norm > 0 else 1.0
        return _check_grid("sigma_q_grid", np.asarray(SIGMA_Q_RELATIVE_GRID) * scale)
    return _check_grid("sigma_q_grid", sigma_q_grid)


def _chunk_size(chunk_size: int | None, n: int, K: int) -> int:
    """Weight draws processed at once by :func:`_stochastic_errors`; the default keeps the
    (draws, n, K) arrays near 4e6 entries."""
    if chunk_size is None:
        chunk_size = max(1, int(4_000_000 // (n * K)))
    return _check_int("chunk_size", chunk_size, 1)


def _zero_prior_terms(
    emp_mc: np.ndarray,
    w_norm: float,
    D: int,
    sqs: np.ndarray,
    sps: np.ndarray,
    n: int,
    n_w: int,
    delta_mc: float,
    delta_pb: float,
) -> Generator[tuple, np.ndarray, tuple]:
    r"""B3's two kl steps at every :math:`(\sigma_q, \sigma_p)` pair at once, each yielded as
    the arguments ``(q, c)`` of :func:`~cmcd_theory.bounds.kl_inverse_upper` (and sent its
    value: :func:`~cmcd_theory.bounds.kl._kl_steps`).

    Returns ``(emp_up, conf, totals, kls)``: the Monte Carlo upper ends (one per
    :math:`\sigma_q`, union over the :math:`G_q` values), the confidence term
    :math:`\ln(2\sqrt n\,G_p/\delta_{pb})/n`, and the bounds and KLs, both
    :math:`(G_q, G_p)`, from one vectorised kl inversion.
    """
    # n * N_w independent 0-1 values (one weight draw per point and draw): Chernoff-kl
    emp_up = yield emp_mc, math.log(2.0 * sqs.size / delta_mc) / (n * n_w)
    d_pb = delta_pb / sps.size
    conf = math.log(2.0 * math.sqrt(n) / d_pb) / n
    # the grids are checked (positive, finite): the unchecked KL on their Python floats
    sp_list = sps.tolist()
    kls = np.array([[_gaussian_kl(w_norm**2, D, sq, sp) for sp in sp_list] for sq in sqs.tolist()])
    totals = yield emp_up[:, None], kls / n + conf
    return emp_up, conf, totals, kls


def stochastic_error_rate(
    features, labels, weights, bias=None, *, sigma: float, seed, n_draws: int = 1
) -> float:
    r"""Measured 0-1 error of the stochastic probe :math:`W\sim N(\hat W, \sigma^2 I_D)` (B3, B3p).

    Each point gets ``n_draws`` independent weight draws (one fresh draw per use of the
    stochastic classifier), ties counted as errors; the mean over points and draws is an
    unbiased estimate of :math:`L(Q)` on held-out data, and the per-point averages are i.i.d.
    in [0, 1], so Hoeffding's slack with the number of points applies (docs/theory.md, C).

    Args:
      features: (n, d) held-out features; labels: (n,) in [0, K).
      weights, bias: the posterior mean (K, d), (K,) or None.
      sigma: posterior standard deviation >= 0 (0: the deterministic probe).
      seed: seed of the numpy Generator of the draws.
      n_draws: draws per point >= 1.

    Returns:
      float in [0, 1].

    Example:
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([0, 1])
      >>> stochastic_error_rate(z, y, np.eye(2), sigma=0.0, seed=0)
      0.0
    """
    z, y, w, _ = _augment(features, labels, weights, bias)
    sigma = _check_real("sigma", sigma, lo=0.0)
    n_draws = _check_int("n_draws", n_draws, 1)
    chunk = _chunk_size(None, z.shape[0], w.shape[0])
    # a held-out error is counted once: no memo (its digest would cost more than it saves)
    errors = _stochastic_errors(z, y, w, np.array([sigma]), seed, n_draws, chunk, memo=False)
    return float(errors[0])


def prefetch_monte_carlo(bound: Callable, kwargs: dict) -> None:
    """Draw and count now the Monte Carlo errors that ``bound(**kwargs)`` will use
    (``bound``: :func:`pac_bayes_kl_bound` or :func:`pac_bayes_split_prior_bound`), without
    its kl steps: the bound's own checks and Monte Carlo run, and it stops before its first
    kl inversion. For a plain seed the errors are memoised (:func:`_stochastic_errors`,
    whatever ``delta``), so the bound finds them (certify counts them in a background thread
    while it does other work)."""
    steps = _bound_steps(bound, kwargs)
    next(steps)  # the checks and the Monte Carlo; then the first kl inversion would follow
    steps.close()


@dataclasses.dataclass(frozen=True)
class SplitPriorPacBayesBound(_Terms):
    """B3p terms. ``total = kl_inv_up(empirical_upper, complexity + confidence)`` on the
    ``n`` points the prior did not see."""

    label: ClassVar[str] = "B3p"
    empirical: float  # MC estimate of Lhat_{S_1}(Q) on the n evaluation points
    complexity: float  # KL(Q||P) / n
    confidence: float  # ln(2 sqrt(n) G / delta_pb) / n
    total: float  # bound on the stochastic risk L(Q)
    total_deterministic: float  # 2 * total: bound on R(W_hat) (unclipped)
    empirical_upper: float  # kl_inv_up(empirical, ln(G / delta_mc) / (n N_w))
    mc_correction: float  # empirical_upper - empirical
    kl: float  # ||c W_hat - W_0||^2 / (2 sigma^2)
    kappa: float  # sigma / (||W_0||_F / sqrt(D)), from the grid
    sigma: float  # prior and posterior standard deviation
    scale: float  # c: posterior mean c W_hat (c > 0)
    prior_norm: float  # ||W_0||_F (bias included)
    weight_norm: float  # ||W_hat||_F (bias included)
    empirical_deterministic: float  # 0-1 error of W_hat on the n evaluation points
    n: int  # evaluation points (not seen by the prior)
    n_prior: int  # points the prior mean was fitted on
    K: int
    D: int
    delta: float
    delta_mc: float
    delta_pac_bayes: float
    n_weight_samples: int
    grid_size: int


def pac_bayes_split_prior_bound(
    features,
    labels,
    weights,
    bias=None,
    *,
    prior_weights,
    prior_bias=None,
    n_prior: int,
    seed,
    delta: float = 0.05,
    kappa_grid: Sequence[float] = SIGMA_Q_RELATIVE_GRID,
    n_weight_samples: int = 1000,
    delta_mc_fraction: float = 0.5,
    chunk_size: int | None = None,
) -> SplitPriorPacBayesBound:
    r"""B3p: PAC-Bayes-kl bound for the linear probe with a data-dependent (split) prior.

    The prior mean :math:`W_0` must be a function of :math:`S_0` only (e.g. the probe fitted
    on :math:`S_0`); :math:`\hat W` may be fitted on all the data. With probability
    :math:`\ge 1-\delta`, for every grid value :math:`\kappa` (notation: module docstring),

    .. math::

      L(Q_\kappa) \le \mathrm{kl}^{-1}_{\rm up}\Big(\mathrm{kl}^{-1}_{\rm up}\Big(\hat L_{S_1,N_w},
        \frac{\ln(G/\delta_{mc})}{nN_w}\Big),\
        \frac{\lVert c\hat W - W_0\rVert^2/(2\sigma^2) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),

    and :math:`R(\hat W) = R(c\hat W) \le 2L(Q_\kappa)`; the smallest value is returned.

    Args:
      features, labels: (n, d), (n,) the evaluation part :math:`S_1`, which the prior did not
        see.
      weights, bias: :math:`\hat W` (K, d) and (K,) or None.
      prior_weights, prior_bias: :math:`W_0`, same shapes (``prior_bias`` None iff ``bias``
        is None).
      n_prior: :math:`|S_0| \ge 1` (recorded; the bound does not depend on it).
      seed: seed of the numpy Generator of the weight draws.
      delta: confidence in (0, 1).
      kappa_grid: relative scales fixed in advance (default :data:`SIGMA_Q_RELATIVE_GRID`).
      n_weight_samples: draws :math:`N_w \ge 1` per point.
      delta_mc_fraction: share f in (0, 1) of delta for the Monte Carlo correction.
      chunk_size: draws processed at once (memory).

    Returns:
      :class:`SplitPriorPacBayesBound`.

    Example:
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0]] * 500); y = np.array([0, 1] * 500)
      >>> w = np.array([[4.0, -4.0], [-4.0, 4.0]])
      >>> pb = pac_bayes_split_prior_bound(z, y, w, prior_weights=0.9 * w, n_prior=1000,
      ...                                  seed=0, n_weight_samples=200)
      >>> bool(pb.total < 0.02), pb.scale == 0.9
      (True, True)

    References:
      M. Perez-Ortiz, O. Rivasplata, J. Shawe-Taylor, Cs. Szepesvari, Tighter risk
      certificates for neural networks, JMLR 22, 2021. E. Parrado-Hernandez, A. Ambroladze,
      J. Shawe-Taylor, S. Sun, PAC-Bayes bounds with data dependent priors, JMLR 13, 2012.
      A. Maurer, arXiv:cs/0411099, 2004.
    """
    args = (features, labels, weights, bias, prior_weights, prior_bias, n_prior, seed, delta)
    steps = _split_prior_steps(*args, kappa_grid, n_weight_samples, delta_mc_fraction, chunk_size)
    return _kl_steps(steps)[0]


def _split_prior_steps(
    features,
    labels,
    weights,
    bias,
    prior_weights,
    prior_bias,
    n_prior,
    seed,
    delta,
    kappa_grid,
    n_weight_samples,
    delta_mc_fraction,
    chunk_size,
):
    """:func:`pac_bayes_split_prior_bound` (every argument given) as a generator of its kl
    inversions, as :func:`_zero_prior_steps`."""
    z, y, w, has_bias = _augment(features, labels, weights, bias)
    w0 = _prior_mean(features, labels, prior_weights, prior_bias, has_bias, w.shape)
    n, K, D = z.shape[0], w.shape[0], w.size
    n_prior = _check_int("n_prior", n_prior, 1)
    delta = _check_delta("delta", delta)
    delta_mc, delta_pb = _delta_shares(delta, delta_mc_fraction)
    n_w = _check_int("n_weight_samples", n_weight_samples, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    posterior = _split_prior_posterior(w, w0, kappas, D)
    chunk_size = _chunk_size(chunk_size, n, K)
    deltas = (delta, delta_mc, delta_pb)
    return (
        yield from _split_prior_bound(
            z, y, w, w0, kappas, posterior, seed, n_w, chunk_size, n_prior, deltas
        )
    )


def pac_bayes_bounds(*calls: tuple) -> list:
    """``[bound(**kwargs) for bound, kwargs in calls]``, ``bound`` :func:`pac_bayes_kl_bound` or
    :func:`pac_bayes_split_prior_bound`, computed together: each call's checks and Monte Carlo
    in turn, then their kl inversions at once (:func:`~cmcd_theory.bounds.kl._kl_steps`: one
    bisection, each entry inverted alone), so every bound is the one its own call gives, in
    fewer numpy calls. certify computes a probe's B3 and B3p so.

    Example:
      >>> z = np.array([[1.0, 0.0], [0.0, 1.0]] * 500); y = np.array([0, 1] * 500)
      >>> w = np.array([[4.0, -4.0], [-4.0, 4.0]])
      >>> kw = dict(features=z, labels=y, weights=w, seed=0, n_weight_samples=50)
      >>> b3, b3p = pac_bayes_bounds((pac_bayes_kl_bound, kw), (pac_bayes_split_prior_bound,
      ...                             dict(kw, prior_weights=0.9 * w, n_prior=1000)))
      >>> b3 == pac_bayes_kl_bound(**kw), b3p.scale
      (True, 0.9)
    """
    return _kl_steps(*(_bound_steps(bound, kwargs) for bound, kwargs in calls))


def _bound_steps(bound: Callable, kwargs: dict) -> Generator:
    """The generator of ``bound(**kwargs)``'s kl inversions (:data:`_STEPS`), its defaults
    filled in; ValueError for a bound that is not B3 or B3p."""
    if bound not in _STEPS:
        raise ValueError(
            "calls: each bound must be pac_bayes_kl_bound or pac_bayes_split_prior_bound, "
            f"got {bound!r}"
        )
    args = inspect.signature(bound).bind(**kwargs)
    args.apply_defaults()
    return _STEPS[bound](**args.arguments)


def _split_prior_posterior(
    w: np.ndarray, w0: np.ndarray, kappas: np.ndarray, D: int
) -> tuple[float, float, float, np.ndarray]:
    r"""B3p's posteriors :math:`Q_\kappa = N(c\hat W, \sigma^2 I_D)`: ``(w0_norm, w_norm, c,
    sigmas)``, the norms :math:`\|W_0\|_F`, :math:`\|\hat W\|_F`, the centre scale c
    (:func:`_posterior_scale`) and the grid scales :math:`\sigma = \kappa\,\|W_0\|_F/\sqrt D`
    (:math:`\kappa` alone if :math:`W_0 = 0`)."""
    w0_norm, w_norm = float(np.linalg.norm(w0)), float(np.linalg.norm(w))
    c = _posterior_scale(w, w0, w_norm)
    sigmas = kappas * (w0_norm / math.sqrt(D) if w0_norm > 0 else 1.0)
    return w0_norm, w_norm, c, sigmas


def _split_prior_bound(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    w0: np.ndarray,
    kappas: np.ndarray,
    posterior: tuple,
    seed,
    n_w: int,
    chunk_size: int,
    n_prior: int,
    deltas: tuple,
) -> Generator[tuple, np.ndarray, SplitPriorPacBayesBound]:
    r"""B3p of checked arguments (:func:`pac_bayes_split_prior_bound`; ``z``, ``w``, ``w0``
    augmented by the bias; ``posterior`` of :func:`_split_prior_posterior`, ``deltas`` =
    ``(delta, delta_mc, delta_pb)``): the Monte Carlo errors of the posterior at every grid
    scale, the two kl steps at every scale (:func:`_split_prior_terms`) and the terms at the
    scale with the smallest bound."""
    w0_norm, w_norm, c, sigmas = posterior
    delta, delta_mc, delta_pb = deltas
    n, K, D = z.shape[0], w.shape[0], w.size
    G = kappas.size
    mean = c * w
    emp_mc = _stochastic_errors(z, y, mean, sigmas, seed, n_w, chunk_size)
    dist2 = float(np.sum((mean - w0) ** 2))
    emp_up, conf, totals, kls = yield from _split_prior_terms(
        emp_mc, dist2, D, sigmas, n, n_w, delta_mc, delta_pb
    )
    g = int(np.argmin(totals))
    total = float(totals[g])
    return SplitPriorPacBayesBound(
        empirical=float(emp_mc[g]),
        complexity=float(kls[g]) / n,
        confidence=conf,
        total=total,
        total_deterministic=2.0 * total,
        empirical_upper=float(emp_up[g]),
        mc_correction=float(emp_up[g] - emp_mc[g]),
        kl=float(kls[g]),
        kappa=float(kappas[g]),
        sigma=float(sigmas[g]),
        scale=c,
        prior_norm=w0_norm,
        weight_norm=w_norm,
        empirical_deterministic=float(np.mean(_margins(z @ w.T, y) <= 0)),
        n=n,
        n_prior=n_prior,
        K=K,
        D=D,
        delta=delta,
        delta_mc=delta_mc,
        delta_pac_bayes=delta_pb,
        n_weight_samples=n_w,
        grid_size=G,
    )


def _split_prior_terms(
    emp_mc: np.ndarray,
    dist2: float,
    D: int,
    sigmas: np.ndarray,
    n: int,
    n_w: int,
    delta_mc: float,
    delta_pb: float,
) -> Generator[tuple, np.ndarray, tuple]:
    r"""B3p's two kl steps at every grid scale :math:`\sigma` (G values) at once, yielded as
    :func:`_zero_prior_terms`' are.

    Returns ``(emp_up, conf, totals, kls)``: the Monte Carlo upper ends, the confidence term
    :math:`\ln(2\sqrt n\,G/\delta_{pb})/n`, the bounds and the KLs
    :math:`\|c\hat W - W_0\|^2/(2\sigma^2)` (``dist2`` the squared distance), one per scale.
    """
    G = sigmas.size
    # n N_w independent 0-1 values, one-sided Chernoff-kl, union over the G scales
    emp_up = yield emp_mc, math.log(G / delta_mc) / (n * n_w)
    conf = math.log(2.0 * math.sqrt(n) * G / delta_pb) / n
    kls = np.array([_gaussian_kl(dist2, D, s, s) for s in sigmas.tolist()])  # dist2 / (2 s^2)
    totals = yield emp_up, kls / n + conf
    return emp_up, conf, totals, kls


def _prior_mean(
    features, labels, prior_weights, prior_bias, has_bias: bool, shape: tuple
) -> np.ndarray:
    r"""B3p's prior mean :math:`W_0`, validated and augmented like :math:`\hat W` (its bias
    folded in as a last column); its shape must be ``shape``, that of :math:`\hat W`."""
    if (prior_bias is None) != (not has_bias):
        raise ValueError("prior_bias must be given exactly when bias is given")
    _, _, w0, _ = _augment(
        np.asarray(features)[:1], np.asarray(labels)[:1], prior_weights, prior_bias
    )
    if w0.shape != shape:
        raise ValueError("prior_weights must have the shape of weights")
    return w0


def _posterior_scale(w: np.ndarray, w0: np.ndarray, w_norm: float) -> float:
    r"""B3p's posterior centre scale :math:`c = \langle\hat W, W_0\rangle/\|\hat W\|_F^2`, the
    multiple of :math:`\hat W` closest to the prior mean; 1 when that is not positive."""
    c = float(np.sum(w * w0) / w_norm**2) if w_norm > 0 else 1.0
    if not c > 0:
        c = 1.0  # any c > 0 is a valid posterior centre; c > 0 keeps the argmax of W_hat
    return c


#: the generator of each bound's kl inversions (:func:`pac_bayes_bounds`)
_STEPS: dict[Callable, Callable[..., Generator]] = {
    pac_bayes_kl_bound: _zero_prior_steps,
    pac_bayes_split_prior_bound: _split_prior_steps,
}
