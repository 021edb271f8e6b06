r"""B5n: stage 1 with normalised features, a per-sample PAC-Bayes-kl bound with fresh
candidates (docs/theory.md, B5n).

Encoder :math:`\phi_W(x) = \mathrm{normalize}(W\,\mathrm{clip}(x))` on both views;
population loss :math:`L(W)` = the expected symmetric O1 loss of a tuple of N fresh samples
(two views each). The bound is on the *stochastic* encoder :math:`Q = N(cOW, \sigma^2 I_D)`,
one weight draw per tuple: with probability :math:`\ge 1-\delta`,

.. math::

  E_{W'\sim Q} L(W') \le b\,\mathrm{kl}^{-1}_{up}\Big(\hat h^{up}/b,\
    \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),\qquad
  \hat h^{up} = b\,\mathrm{kl}^{-1}_{up}\Big(\frac{\bar Y}{b},
    \frac{\ln(G/\delta_{mc})}{n\,n_w}\Big),

where the n samples (two views each) are NOT used to fit the prior mean :math:`W_{prior}`,
:math:`P = N(W_{prior}, \sigma^2 I)`, :math:`\sigma = \kappa\|W_{prior}\|_F/\sqrt D` with
:math:`\kappa` on a grid of G values (:data:`~cmcd_theory.bounds.normalized_distill.KAPPA_GRID`),
:math:`cO` the scale and rotation of W closest to the prior mean (O1 with normalised
features is invariant under :math:`W \mapsto cOW`; O by orthogonal Procrustes,
:math:`c = \langle OW, W_{prior}\rangle/\|W\|^2`), and :math:`\bar Y` the mean over the n
samples and :math:`n_w` draws each of
:math:`Y = \ln(1 + \sum_{j<N} e^{(u\cdot v_j - u\cdot v)/\tau})`, with an independent weight
:math:`W'\sim Q` per draw, :math:`u, v` the features of the sample's two views and
:math:`v_j` those of N - 1 fresh candidate inputs, all under :math:`W'`. Values lie in
:math:`[0, b]`, :math:`b = \ln(1 + (N-1)e^{2/\tau})`. :math:`\delta` is split in two equal
parts: the Monte Carlo step and the PAC-Bayes union over the grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from cmcd_theory.bounds._checks import (
    _check_delta,
    _check_grid,
    _check_int,
    _check_real,
    _NormalizedLossTerms,
)
from cmcd_theory.bounds.normalized_distill import KAPPA_GRID, _kl_bound_on_range
from cmcd_theory.bounds.tuples import _log1p_nm1_exp

#: B5n Monte Carlo: anchors x draws are processed in blocks of this many draws; every grid
#: value is evaluated on the first _B5N_PROXY draws, the best one and its neighbours on all.
_B5N_BLOCK = 512
_B5N_PROXY = 4096


def _procrustes(W, W_prior):
    """The orthogonal O (k x k) maximising <O W, W_prior> (orthogonal Procrustes: O = U V^T for
    the SVD U S V^T of W_prior W^T)."""
    U, _, Vt = np.linalg.svd(W_prior @ W.T)
    return U @ Vt


@dataclasses.dataclass(frozen=True)
class NormalizedSSLBound(_NormalizedLossTerms):
    """B5n terms: ``total = b kl_inv_up(empirical_upper / b, complexity + confidence)``."""

    label: ClassVar[str] = "B5n"
    empirical: float  # MC mean per-anchor loss, fresh candidates (stochastic encoder)
    complexity: float  # KL(Q || P) / n
    confidence: float  # ln(2 sqrt(n) G / delta_pb) / n
    total: float  # bound on E_{W~Q} L(W), the stochastic encoder's population O1 loss
    empirical_upper: float  # kl upper end of the MC mean (over n * n_draws independent draws)
    empirical_mean_encoder: float  # the same MC mean with the posterior mean c W (no noise)
    kl: float
    kappa: float  # chosen prior scale (grid value)
    sigma: float  # posterior = prior standard deviation per weight
    nu: float  # sigma / c: the weight noise relative to the trained W
    centre_scale: float  # c: posterior mean c O W (O, c: the rotation and scale of W closest
    # to the prior mean; E_Q L equals that of N(c W, sigma^2 I))
    loss_range: float  # b = log(1 + (N - 1) e^{2/tau})
    n: int  # samples in the bound's sample S2
    n_draws: int  # posterior draws (each with N - 1 fresh candidates) per sample
    tuple_size: int
    tau: float
    D: int
    delta: float
    delta_mc: float
    delta_pac_bayes: float
    grid_size: int


def normalized_ssl_bound(
    x,
    x_pos,
    W,
    W_prior,
    sample_candidates,
    *,
    tau: float,
    tuple_size: int,
    seed,
    delta: float = 0.05,
    n_draws: int = 1,
    kappa_grid: Sequence[float] = KAPPA_GRID,
) -> NormalizedSSLBound:
    r"""B5n: stage-1 population InfoNCE (O1) loss of a normalised linear encoder, per sample.

    The bound of the module docstring on :math:`E_{W'\sim Q} L(W')`, the population loss of
    the stochastic encoder, at confidence :math:`1-\delta`. Every grid value is paid for
    (union bound over the G values in both steps), so which values are evaluated may depend
    on the data and the draws: all G on the first ``_B5N_PROXY`` draws, then only the best
    of them and its grid neighbours on the rest.

    Args:
      x, x_pos: (n, d) the two views (inputs) of each of the bound's n samples.
      W: (k, d) trained encoder weight; W_prior: (k, d) prior mean, fitted without these n
        samples.
      sample_candidates: ``(block, count) -> (count, d)`` fresh i.i.d. inputs with the law of
        one view of a fresh sample, independent of everything else and across calls (the
        caller derives each block's draws from its own key, so results are reproducible).
      tau: O1 temperature > 0.
      tuple_size: N >= 2.
      seed: seed of the weight draws.
      delta: confidence in (0, 1).
      n_draws: weight draws per sample >= 1.
      kappa_grid: prior scales fixed in advance.

    Returns:
      :class:`NormalizedSSLBound` at the grid value with the smallest total.
    """
    x, xp, W, Wp = _view_arrays(x, x_pos, W, W_prior)
    if not callable(sample_candidates):
        raise ValueError("sample_candidates must be a callable (block, count) -> (count, d)")
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    N = _check_int("tuple_size", tuple_size, 2)
    delta = _check_delta("delta", delta)
    n_draws = _check_int("n_draws", n_draws, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    return _normalized_ssl_bound(
        x, xp, W, Wp, sample_candidates, seed, tau, N, delta, n_draws, kappas
    )


def _normalized_ssl_bound(
    x, xp, W, Wp, sample_candidates, seed, tau, N, delta, n_draws, kappas
) -> NormalizedSSLBound:
    """B5n of checked arguments (:func:`normalized_ssl_bound`): the posterior centre, the
    confidence accounting (``delta / 2`` to the Monte Carlo step, ``delta / 2`` to PAC-Bayes,
    each a union over the grid), the Monte Carlo means and the row at the best grid value."""
    n, D = x.shape[0], W.size
    W, c = _rotated_centre(W, Wp)
    d_mc = d_pb = delta / 2.0
    b = _log1p_nm1_exp(N, 2.0 / tau)
    G = kappas.size
    sigmas = kappas * float(np.linalg.norm(Wp)) / math.sqrt(D)
    total_draws = n * n_draws
    cW = c * W
    c_mc = math.log(G / d_mc) / total_draws
    conf = math.log(2.0 * math.sqrt(n) * G / d_pb) / n

    def totals(g, emp_g):
        """B5n at grid value ``g`` from the Monte Carlo mean ``emp_g``: (total, emp_up, kl)."""
        kl = float(np.sum((cW - Wp) ** 2)) / (2.0 * sigmas[g] ** 2)
        total, emp_up = _kl_bound_on_range(emp_g, kl, n, b, c_mc, conf)
        return total, emp_up, kl

    sums, counts, sum0, active = _monte_carlo(
        x,
        xp,
        cW,
        sigmas,
        np.random.default_rng(seed),
        sample_candidates,
        N,
        tau,
        total_draws,
        rank=lambda g, emp_g: totals(g, emp_g)[0],
    )
    emp = sums / np.maximum(counts, 1)
    best = (*totals(active[0], emp[active[0]]), active[0])
    for g in active[1:]:
        total, emp_up, kl = totals(g, emp[g])
        if total < best[0]:
            best = (total, emp_up, kl, g)
    total, emp_up, kl, g = best
    return NormalizedSSLBound(
        empirical=float(emp[g]),
        complexity=kl / n,
        confidence=conf,
        total=total,
        empirical_upper=emp_up,
        empirical_mean_encoder=sum0 / total_draws,
        kl=kl,
        kappa=float(kappas[g]),
        sigma=float(sigmas[g]),
        nu=float(sigmas[g]) / c,
        centre_scale=c,
        loss_range=b,
        n=n,
        n_draws=n_draws,
        tuple_size=N,
        tau=tau,
        D=D,
        delta=delta,
        delta_mc=d_mc,
        delta_pac_bayes=d_pb,
        grid_size=int(G),
    )


def _view_arrays(x, x_pos, W, W_prior) -> tuple:
    """float64 ``(x, x_pos, W, W_prior)`` of B5n: the two views (n, d), n >= 1, and the
    weights (k, d)."""
    x = np.asarray(x, np.float64)
    xp = np.asarray(x_pos, np.float64)
    W = np.asarray(W, np.float64)
    Wp = np.asarray(W_prior, np.float64)
    if x.ndim != 2 or xp.shape != x.shape or x.shape[0] < 1:
        raise ValueError(
            f"x and x_pos must have the same shape (n, d), n >= 1, got {x.shape}, {xp.shape}"
        )
    if W.ndim != 2 or W.shape[1] != x.shape[1] or Wp.shape != W.shape:
        raise ValueError(
            f"W and W_prior must have shape (k, {x.shape[1]}), got {W.shape}, {Wp.shape}"
        )
    return x, xp, W, Wp


def _rotated_centre(W: np.ndarray, Wp: np.ndarray) -> tuple[np.ndarray, float]:
    r"""``(O W, c)``: the rotation of W closest to the prior mean (:func:`_procrustes`) and the
    scale :math:`c = \langle OW, W_{prior}\rangle/\|W\|^2`, which must be positive. O1 with
    normalised features is invariant under :math:`W \mapsto cOW` (c > 0, O orthogonal), so
    the posterior is centred at :math:`cOW`."""
    if not np.any(W):
        raise ValueError("W must not be zero")
    W = _procrustes(W, Wp) @ W
    c = float(np.sum(W * Wp) / np.sum(W * W))
    if not c > 0:
        raise ValueError(
            "the prior mean must have a positive inner product with O W "
            f"(<O W, W_prior> / ||W||^2 = {c!r})"
        )
    return W, c


def _anchor_losses(F: np.ndarray, tau: float) -> np.ndarray:
    r"""Per-anchor loss :math:`Y = \ln(1 + \sum_j e^{(u\cdot v_j - u\cdot v)/\tau})` of a
    block of pre-activations ``F`` (B, N + 1, k): row 0 the anchor view, row 1 its positive,
    rows 2.. the N - 1 fresh candidates; features normalised here, log-sum-exp stabilised."""
    F = F / np.sqrt(np.maximum(np.einsum("bnk,bnk->bn", F, F), 1e-300))[..., None]
    u, v, cand = F[:, 0], F[:, 1], F[:, 2:]
    pos = np.einsum("bk,bk->b", u, v) / tau
    neg = np.einsum("bk,bjk->bj", u, cand) / tau - pos[:, None]
    top = np.maximum(neg.max(axis=1), 0.0)  # log(1 + sum exp(neg)) by log-sum-exp
    return top + np.log(np.exp(-top) + np.exp(neg - top[:, None]).sum(axis=1))


def _candidates(sample_candidates: Callable, blk: int, B: int, N: int, d: int) -> np.ndarray:
    """The N - 1 fresh candidate inputs of each of the B draws of block ``blk``, (B, N - 1, d)."""
    cand = np.asarray(sample_candidates(blk, B * (N - 1)), np.float64)
    if cand.shape != (B * (N - 1), d):
        raise ValueError(
            f"sample_candidates must return shape ({B * (N - 1)}, {d}), got {cand.shape}"
        )
    return cand.reshape(B, N - 1, d)


def _monte_carlo(
    x, xp, cW, sigmas, rng, sample_candidates, N: int, tau: float, total_draws: int, rank: Callable
) -> tuple:
    """B5n's Monte Carlo over ``total_draws`` draws (draw t uses sample t mod n), in blocks of
    ``_B5N_BLOCK``: per draw one weight noise and N - 1 fresh candidates, shared by every grid
    scale. After ``_B5N_PROXY`` draws only the best grid value by ``rank(g, mean)`` and its
    neighbours stay active. Returns ``(sums, counts, sum0, active)``: per grid value the sum
    and number of losses, the sum under the posterior mean ``cW`` (no noise), the final
    active grid values."""
    n, d = x.shape
    G = sigmas.size
    sums = np.zeros(G)
    sum0 = 0.0
    active = list(range(G))
    counts = np.zeros(G, dtype=np.int64)
    for blk, start in enumerate(range(0, total_draws, _B5N_BLOCK)):
        if start >= _B5N_PROXY and len(active) == G:
            j = int(np.argmin([rank(g, sums[g] / counts[g]) for g in range(G)]))
            active = list(range(max(0, j - 1), min(G, j + 2)))
        idx = np.arange(start, min(start + _B5N_BLOCK, total_draws)) % n  # draw t -> sample t mod n
        B = idx.size
        cand = _candidates(sample_candidates, blk, B, N, d)
        X = np.concatenate([x[idx, None], xp[idx, None], cand], axis=1)
        mean_part = X @ cW.T  # (B, N + 1, k)
        noise_part = X @ rng.standard_normal((B,) + cW.shape).transpose(0, 2, 1)
        sum0 += float(_anchor_losses(mean_part, tau).sum())
        for g in active:
            sums[g] += float(_anchor_losses(mean_part + sigmas[g] * noise_part, tau).sum())
            counts[g] += B
    return sums, counts, sum0, active
