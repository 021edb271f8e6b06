r"""B4n: stage 2 with normalised student features, a per-pair PAC-Bayes-kl bound
(docs/theory.md, B4n).

Student :math:`u = \mathrm{normalize}(W\,\mathrm{clip}(x))`, teacher features of norm
:math:`\le 1`, population loss :math:`L(W)` = the expected B->A tuple loss over tuples of N
fresh pairs (:func:`~cmcd_theory.learn.training.tuple_loss` with ``"cmc"``). The bound is on
the *stochastic* student :math:`Q = N(cW, \sigma^2 I_D)`: with probability
:math:`\ge 1-\delta`,

.. math::

  E_{W'\sim Q} L(W') \le b\,\mathrm{kl}^{-1}_{up}\Big(\hat g^{up}/b,\
    \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),

where the n pairs are NOT used to fit the prior mean :math:`W_{prior}` (a student fitted on a
disjoint split of the pairs), :math:`P = N(W_{prior}, \sigma^2 I)` with
:math:`\sigma = \kappa\|W_{prior}\|_F/\sqrt D`, :math:`\kappa` on a grid of G values
(:data:`KAPPA_GRID`), :math:`c = \langle W, W_{prior}\rangle/\|W\|^2`,
:math:`\mathrm{KL} = \|cW - W_{prior}\|^2/(2\sigma^2)`;
:math:`g(u, z) = \ln(1 + (N-1)M^+(u)e^{-u\cdot z/\tau})` (Jensen over the N - 1 candidates,
:func:`candidate_mgf_upper` for :math:`M^+`, Lemma 2), with values in :math:`[0, b]`,
:math:`b = \ln(1 + (N-1)e^{2/\tau})`; :math:`\hat g^{up}` the kl upper end of its Monte Carlo
mean over the independent posterior draws of every pair. The budget is split in three:
:math:`\delta/3` for :math:`M^+`, for the Monte Carlo and for the PAC-Bayes union over the
grid. :func:`_kl_bound_on_range`, the two kl steps for a loss in [0, b], is shared with B5n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

import numpy as np

from cmcd_theory.bounds._checks import (
    _check_delta,
    _check_grid,
    _check_int,
    _check_real,
    _NormalizedLossTerms,
)
from cmcd_theory.bounds.kl import kl_inverse_upper
from cmcd_theory.bounds.tuples import _log1p_nm1_exp

#: B4n prior scales kappa: sigma_p = kappa ||W_prior||_F / sqrt(D); 2^(j/2), j = -10..-1.
KAPPA_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-10, 0))
#: B4n cover radius epsilon of the unit sphere for the uniform bound on M(u).
COVER_EPS: float = 0.005


def _mean_exp(u, bank, tau):
    """(1/n_b) sum_j exp((u . z_j - 1) / tau) per row of u, in float64 blocks."""
    out = np.empty(u.shape[0])
    for s in range(0, u.shape[0], 1024):
        out[s : s + 1024] = np.exp((u[s : s + 1024] @ bank.T - 1.0) / tau).mean(axis=1)
    return out


def candidate_mgf_upper(u, bank, tau: float, delta: float, eps: float = COVER_EPS):
    r"""Upper bounds on :math:`M(u) = E_{z\sim\mu_A} e^{u\cdot z/\tau}` for every unit u (B4n).

    ``bank`` holds :math:`n_b` i.i.d. teacher features (norm <= 1) of source samples
    independent of the teacher's training data. With :math:`f_u(z) = e^{(u\cdot z-1)/\tau}\in
    (0,1]`, a cover :math:`C` of the unit sphere :math:`S^{k-1}` at radius :math:`\epsilon`
    (:math:`|C|\le(1+2/\epsilon)^k`) and the Chernoff (kl) bound at each cover point with
    :math:`\delta/|C|`: with probability :math:`\ge1-\delta`, for every unit u,

    .. math::

      M(u) \le e^{(1+\epsilon)/\tau}\,\mathrm{kl}^{-1}_{up}\Big(\min\big(1,
        e^{\epsilon/\tau}\bar f_u\big),\ \frac{k\ln(1+2/\epsilon) + \ln(1/\delta)}{n_b}\Big),
      \qquad \bar f_u = \frac1{n_b}\sum_j f_u(z_j),

    since :math:`\|u - c\|\le\epsilon` gives :math:`f_u\le e^{\epsilon/\tau}f_c` and
    :math:`f_c\le e^{\epsilon/\tau}f_u` (docs/theory.md, B4n, Lemma 2).

    Args:
      u: (n, k) unit vectors.
      bank: (n_b, k) teacher features, norms <= 1.
      tau: temperature > 0.
      delta: failure probability in (0, 1).
      eps: cover radius in (0, 1].

    Returns:
      (n,) float64 upper bounds on M(u).
    """
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    delta = _check_delta("delta", delta)
    eps = _check_real("eps", eps, lo=0.0, hi=1.0, lo_open=True)
    u = np.asarray(u, np.float64)
    bank = np.asarray(bank, np.float64)
    if u.ndim != 2 or bank.ndim != 2 or u.shape[1] != bank.shape[1]:
        raise ValueError(f"u (n, k) and bank (n_b, k) must share k, got {u.shape}, {bank.shape}")
    if np.any(np.abs(np.linalg.norm(u, axis=1) - 1.0) > 1e-6):
        raise ValueError("u must hold unit vectors")
    if np.any(np.linalg.norm(bank, axis=1) > 1.0 + 1e-6):
        raise ValueError("bank features must have norm <= 1")
    k, n_b = u.shape[1], bank.shape[0]
    fbar = _mean_exp(u, bank, tau)
    c = (k * math.log1p(2.0 / eps) + math.log(1.0 / delta)) / n_b
    return _mgf_upper(fbar, c, tau, eps)


def _mgf_upper(fbar, c: float, tau: float, eps: float):
    """:math:`M^+` from the bank averages ``fbar`` and the kl budget ``c`` (B4n, Lemma 2).

    Capped at :math:`e^{1/\tau}`, which bounds :math:`M(u)` for every unit u (``|u . z| <= 1``):
    the cap keeps the per-pair loss g of B4n in :math:`[0, b]`, as its Monte Carlo step needs.
    """
    q = np.minimum(1.0, math.exp(eps / tau) * fbar)
    return np.minimum(math.exp(1.0 / tau), math.exp((1.0 + eps) / tau) * kl_inverse_upper(q, c))


@dataclasses.dataclass(frozen=True)
class NormalizedDistillBound(_NormalizedLossTerms):
    """B4n terms: ``total = b kl_inv_up(empirical_upper / b, complexity + confidence)``."""

    label: ClassVar[str] = "B4n"
    empirical: float  # mean per-pair Jensen loss g of the stochastic student (MC)
    complexity: float  # KL(Q || P) / n
    confidence: float  # ln(2 sqrt(n) G / delta_pb) / n
    total: float  # bound on E_{W~Q} L(W), the stochastic student's population loss
    empirical_upper: float  # MC upper end (kl, over n * n_draws independent draws) times b
    empirical_exact_mgf: float  # the same mean with the bank's plain average in place of M+
    kl: float
    kappa: float  # chosen prior scale (grid value)
    sigma: float  # posterior = prior standard deviation per weight
    nu: float  # relative noise: u = normalize(W x + nu ||x|| xi)
    centre_scale: float  # c: posterior mean c W (closest multiple of W to the prior mean)
    loss_range: float  # b = log(1 + (N - 1) e^{2/tau})
    n: int  # pairs in the bound's sample
    n_bank: int
    n_draws: int
    tuple_size: int
    tau: float
    D: int
    delta: float
    delta_mgf: float
    delta_mc: float
    delta_pac_bayes: float
    grid_size: int


def normalized_distillation_bound(
    x,
    z,
    W,
    W_prior,
    bank,
    *,
    tau: float,
    tuple_size: int,
    seed,
    delta: float = 0.05,
    n_draws: int = 2,
    kappa_grid: Sequence[float] = KAPPA_GRID,
    eps: float = COVER_EPS,
) -> NormalizedDistillBound:
    r"""B4n: stage-2 CMC (B->A) population loss of a normalised linear student, per pair.

    The bound of the module docstring on :math:`E_{W'\sim Q} L(W')`, the population loss of
    the stochastic student :math:`Q = N(cW, \sigma^2 I_D)`, at confidence :math:`1-\delta`.
    Every grid value is paid for in the confidence terms (union bound), so the values at which
    the bound is evaluated may be chosen from the data: a proxy on the first 1024 pairs and
    4096 bank features ranks them, the full bound is evaluated at the best proxy value and its
    grid neighbours, and the smallest total is returned.

    Args:
      x: (n, d) target inputs of the bound's pairs.
      z: (n, k) teacher features of the same pairs (norm <= 1).
      W: (k, d) trained student weight.
      W_prior: (k, d) prior mean, fitted without these n pairs.
      bank: (n_b, k) teacher features of source samples independent of the teacher's
        training data (e.g. the source side of all m pairs).
      tau: CMC temperature > 0.
      tuple_size: N >= 2.
      seed: seed of the posterior draws.
      delta: confidence in (0, 1).
      n_draws: posterior draws per pair >= 1.
      kappa_grid: prior scales fixed in advance.
      eps: cover radius of :func:`candidate_mgf_upper`.

    Returns:
      :class:`NormalizedDistillBound`.
    """
    x, z, W, Wp = _pair_arrays(x, z, W, W_prior)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    N = _check_int("tuple_size", tuple_size, 2)
    delta = _check_delta("delta", delta)
    n_draws = _check_int("n_draws", n_draws, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    return _normalized_distillation_bound(
        x, z, W, Wp, bank, seed, tau, N, delta, n_draws, kappas, eps
    )


def _normalized_distillation_bound(
    x, z, W, Wp, bank, seed, tau, N, delta, n_draws, kappas, eps
) -> NormalizedDistillBound:
    """B4n of checked arguments (:func:`normalized_distillation_bound`; ``bank`` and ``eps``
    are checked here): the posterior centre, the confidence accounting (``delta / 3`` each to
    the bank's moment bound, the Monte Carlo step and PAC-Bayes), the posterior draws, the
    search over the grid (:func:`_proxy_search`) and the row at the chosen grid value."""
    n, D = x.shape[0], W.size
    c = _centre_scale(W, Wp)
    d_mgf = d_mc = d_pb = delta / 3.0
    b = _log1p_nm1_exp(N, 2.0 / tau)
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n_draws, n, W.shape[0]))
    p_norm = float(np.linalg.norm(Wp))
    conf = math.log(2.0 * math.sqrt(n) * kappas.size / d_pb) / n
    c_mc = math.log(kappas.size / d_mc) / (n * n_draws)
    bank = _bank_array(bank, z.shape[1])
    eps = _check_real("eps", eps, lo=0.0, hi=1.0, lo_open=True)
    c_mgf = (z.shape[1] * math.log1p(2.0 / eps) + math.log(1.0 / d_mgf)) / bank.shape[0]
    draws = _StudentDraws(
        x @ W.T, np.linalg.norm(x, axis=1)[:, None], xi, z, bank, tau, N, eps, c_mgf
    )

    def evaluate(kappa, rows, bank_rows):
        """B4n at the grid value ``kappa`` on the pairs ``rows`` and bank features
        ``bank_rows``: (total, emp, emp_up, emp0, kl, sigma, nu)."""
        sigma = kappa * p_norm / math.sqrt(D)
        nu = sigma / c
        kl = float(np.sum((c * W - Wp) ** 2)) / (2.0 * sigma * sigma)
        emp, emp0 = _jensen_means(draws, nu, rows, bank_rows)
        total, emp_up = _kl_bound_on_range(emp, kl, n, b, c_mc, conf)
        return total, emp, emp_up, emp0, kl, sigma, nu

    kappa, (total, emp, emp_up, emp0, kl, sigma, nu) = _proxy_search(
        evaluate, kappas, n, bank.shape[0]
    )
    return NormalizedDistillBound(
        empirical=emp,
        complexity=kl / n,
        confidence=conf,
        total=total,
        empirical_upper=emp_up,
        empirical_exact_mgf=emp0,
        kl=kl,
        kappa=float(kappa),
        sigma=sigma,
        nu=nu,
        centre_scale=c,
        loss_range=b,
        n=n,
        n_bank=int(bank.shape[0]),
        n_draws=n_draws,
        tuple_size=N,
        tau=tau,
        D=D,
        delta=delta,
        delta_mgf=d_mgf,
        delta_mc=d_mc,
        delta_pac_bayes=d_pb,
        grid_size=int(kappas.size),
    )


def _pair_arrays(x, z, W, W_prior) -> tuple:
    """float64 ``(x, z, W, W_prior)`` of B4n: x (n, d) and z (n, k) with the same n >= 1,
    W and W_prior (k, d), teacher features of norm <= 1."""
    x = np.asarray(x, np.float64)
    z = np.asarray(z, np.float64)
    W = np.asarray(W, np.float64)
    Wp = np.asarray(W_prior, np.float64)
    if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"x (n, d) and z (n, k) must have the same n >= 1, got {x.shape}, {z.shape}"
        )
    if W.shape != (z.shape[1], x.shape[1]) or Wp.shape != W.shape:
        raise ValueError(
            f"W and W_prior must have shape (k, d) = {(z.shape[1], x.shape[1])}, "
            f"got {W.shape}, {Wp.shape}"
        )
    if np.any(np.linalg.norm(z, axis=1) > 1.0 + 1e-6):
        raise ValueError("teacher features z must have norm <= 1")
    return x, z, W, Wp


def _bank_array(bank, k: int) -> np.ndarray:
    """float64 bank of B4n: (n_b, k) teacher features, n_b >= 1, norms <= 1."""
    bank = np.asarray(bank, np.float64)
    if bank.ndim != 2 or bank.shape[1] != k or bank.shape[0] < 1:
        raise ValueError(f"bank must have shape (n_b, {k}), got {bank.shape}")
    if np.any(np.linalg.norm(bank, axis=1) > 1.0 + 1e-6):
        raise ValueError("bank features must have norm <= 1")
    return bank


def _centre_scale(W: np.ndarray, Wp: np.ndarray) -> float:
    r"""B4n's posterior centre scale :math:`c = \langle W, W_{prior}\rangle/\|W\|^2` (the
    multiple of W closest to the prior mean); it must be positive, or the bound refuses."""
    c = float(np.sum(W * Wp) / np.sum(W * W)) if np.any(W) else 0.0
    if not c > 0:
        raise ValueError(
            "the prior mean must have a positive inner product with W "
            f"(<W, W_prior> / ||W||^2 = {c!r})"
        )
    return c


class _StudentDraws(NamedTuple):
    """What B4n's Monte Carlo shares across grid values: the student's pre-activations, the
    standard normal draws, the teacher features and the constants of :math:`M^+`."""

    wx: np.ndarray  # (n, k) W x
    xn: np.ndarray  # (n, 1) ||x||: the weight noise nu ||x|| xi on the pre-activation
    xi: np.ndarray  # (n_draws, n, k) standard normal
    z: np.ndarray  # (n, k) teacher features of the pairs
    bank: np.ndarray  # (n_b, k) teacher features of the bank
    tau: float
    N: int
    eps: float  # cover radius of M+
    c_mgf: float  # kl budget of M+


def _jensen_means(draws: _StudentDraws, nu: float, rows, bank_rows) -> tuple[float, float]:
    r"""Monte Carlo means of the per-pair loss g (with :math:`M^+`) and of ``g0`` (the bank's
    plain average in place of :math:`M^+`) over the pairs ``rows``, the bank features
    ``bank_rows`` and every draw. The student :math:`u = \mathrm{normalize}(Wx + \nu\|x\|\xi)`,
    :math:`\nu = \sigma/c`, has the law of :math:`\mathrm{normalize}(W'x)` for
    :math:`W'\sim Q = N(cW, \sigma^2 I)` (normalising removes the scale c)."""
    g, g0 = [], []
    for r in range(draws.xi.shape[0]):
        v = draws.wx[rows] + nu * draws.xn[rows] * draws.xi[r, rows]
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        a = np.sum(u * draws.z[rows], axis=1) / draws.tau
        fbar = _mean_exp(u, draws.bank[bank_rows], draws.tau)
        m_up = _mgf_upper(fbar, draws.c_mgf, draws.tau, draws.eps)
        g.append(np.logaddexp(0.0, math.log(draws.N - 1) + np.log(m_up) - a))
        g0.append(np.logaddexp(0.0, math.log(draws.N - 1) + np.log(fbar) + 1.0 / draws.tau - a))
    return float(np.mean(g)), float(np.mean(g0))


def _kl_bound_on_range(
    emp: float, kl: float, n: int, b: float, c_mc: float, conf: float
) -> tuple[float, float]:
    r"""The two kl steps of B4n and B5n for a loss with values in [0, b]: the Monte Carlo upper
    end :math:`\hat g^{up} = b\,\mathrm{kl}^{-1}_{up}(\min(\bar g/b, 1), c_{mc})` and the
    PAC-Bayes-kl bound :math:`b\,\mathrm{kl}^{-1}_{up}(\min(\hat g^{up}/b, 1),
    \mathrm{KL}/n + conf)`. Returns ``(total, emp_up)``."""
    emp_up = b * float(kl_inverse_upper(min(emp / b, 1.0), c_mc))
    total = b * float(kl_inverse_upper(min(emp_up / b, 1.0), kl / n + conf))
    return total, emp_up


def _proxy_search(evaluate: Callable, kappas: np.ndarray, n: int, n_bank: int) -> tuple:
    """B4n's choice of grid value: every value on a proxy (the first 1024 pairs and 4096 bank
    features), then the full bound at the best proxy value and its grid neighbours. Returns
    ``(kappa, evaluate(kappa, all, all))`` with the smallest total (the first on ties)."""
    sub, bsub = slice(0, min(n, 1024)), slice(0, min(n_bank, 4096))
    proxy = [evaluate(kp, sub, bsub)[0] for kp in kappas]
    j = int(np.argmin(proxy))
    near = kappas[max(0, j - 1) : j + 2]
    best = (near[0], evaluate(near[0], slice(None), slice(None)))
    for kappa in near[1:]:
        result = evaluate(kappa, slice(None), slice(None))
        if result[0] < best[1][0]:
            best = (kappa, result)
    return best
