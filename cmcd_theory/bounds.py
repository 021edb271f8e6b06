"""Every bound of docs/theory.md (B1-B6) as a pure function of numbers, in float64.

A bound takes the same inputs as the measurement it bounds (a probe's training features,
labels and weights; an empirical distillation loss and the sizes it was computed from) and
returns a frozen dataclass of named terms: at least ``empirical``, ``complexity``,
``confidence`` and ``total``, plus every parameter that was chosen (margin, norm grid value,
prior scale, the confidence share of each grid point). ``.as_dict()`` gives a flat row for a
table. Nothing is clipped: a vacuous bound (``total >= 1`` for a 0-1 risk) is returned as is,
with ``.vacuous`` saying so.

Where a constant (margin ``rho``, norm ``Lambda``, prior scale ``sigma_p``) is picked after
seeing the data, it is picked from a grid fixed in advance (the module constants below) and
``delta`` is divided by the grid size (union bound), which keeps the bound valid for the
classifier actually trained.

Contents, by label of docs/theory.md:

* kl tools: :func:`kl_bernoulli`, :func:`kl_inverse_upper`, :func:`kl_inverse_lower`
* test-set estimates: :func:`hoeffding_slack`, :func:`risk_upper`, :func:`clopper_pearson`,
  :func:`holds_on_test_set`
* B1 :func:`transfer_bound`
* B2 :func:`margin_bound`
* B3 :func:`gaussian_kl`, :func:`sample_convergence_upper`, :func:`maurer_bound`,
  :func:`pac_bayes_kl_bound`; B3p :func:`pac_bayes_split_prior_bound`,
  :func:`stochastic_error_rate`
* B4 :func:`tuple_split`, :func:`distillation_tuple_lipschitz`,
  :func:`distillation_loss_range`, :func:`distillation_bound`
* B5 :func:`infonce_tuple_lipschitz`, :func:`infonce_loss_range`, :func:`ssl_bound`
* B4n :func:`candidate_mgf_upper`, :func:`normalized_distillation_bound`
* B5n :func:`normalized_ssl_bound`
* B6 :func:`end_to_end_report`
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
from typing import ClassVar, Mapping, NamedTuple, Optional, Sequence

import numpy as np
from scipy import special, stats

from cmcd_theory import validation as V

__all__ = [
    "RHO_GRID",
    "MARGIN_LAMBDA_GRID",
    "SIGMA_P_GRID",
    "SIGMA_Q_RELATIVE_GRID",
    "LAMBDA_GRID",
    "kl_bernoulli",
    "kl_inverse_upper",
    "kl_inverse_lower",
    "hoeffding_slack",
    "risk_upper",
    "clopper_pearson",
    "holds_on_test_set",
    "HoldoutCheck",
    "TransferBound",
    "transfer_bound",
    "MarginBound",
    "margin_bound",
    "gaussian_kl",
    "sample_convergence_upper",
    "maurer_bound",
    "PacBayesBound",
    "pac_bayes_kl_bound",
    "stochastic_error_rate",
    "SplitPriorPacBayesBound",
    "pac_bayes_split_prior_bound",
    "tuple_split",
    "distillation_tuple_lipschitz",
    "distillation_loss_range",
    "infonce_tuple_lipschitz",
    "infonce_loss_range",
    "TupleLossBound",
    "distillation_bound",
    "ssl_bound",
    "KAPPA_GRID",
    "COVER_EPS",
    "candidate_mgf_upper",
    "NormalizedDistillBound",
    "normalized_distillation_bound",
    "NormalizedSSLBound",
    "normalized_ssl_bound",
    "ReportRow",
    "end_to_end_report",
]

# --------------------------------------------------------------------------------------
# Grids fixed in advance (union bounds). Tuples, so that nobody mutates them in place.
# --------------------------------------------------------------------------------------

#: B2 margins rho: 2^j, j = -10..10 (21 values).
RHO_GRID: tuple = tuple(2.0**j for j in range(-10, 11))
#: B2 weight norms Lambda (max_y ||w_y||, or ||w_1 - w_2|| in the binary form): 2^j,
#: j = -4..16 (21 values).
MARGIN_LAMBDA_GRID: tuple = tuple(2.0**j for j in range(-4, 17))
#: B3 prior standard deviations sigma_p: 2^(j/2), j = -16..16 (33 values, 2^-8 .. 2^8).
SIGMA_P_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-16, 17))
#: B3 default posterior standard deviations, relative to ||W_hat||_F / sqrt(D):
#: 2^(j/2), j = -10..0 (11 values, 1/32 .. 1).
SIGMA_Q_RELATIVE_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-10, 1))
#: B4 / B5 Frobenius norms of the encoder weight: 2^j, j = -2..12 (15 values).
LAMBDA_GRID: tuple = tuple(2.0**j for j in range(-2, 13))

# Relative slack allowed when a measured norm is compared with the bound it must satisfy
# (float32 features normalised to 1 have norms 1 +- 1e-7); beyond it a ValueError is raised.
_NORM_RTOL = 1e-6


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _check_real(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    return V.real(name, value, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)


def _check_delta(name: str, delta) -> float:
    return V.probability(name, delta)


def _check_int(name: str, value, lo: int) -> int:
    return V.integer(name, value, lo=lo)


def _check_grid(name: str, grid) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64).ravel()
    if g.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError(f"{name} must hold finite positive numbers, got {grid!r}")
    g = np.sort(g)
    if np.any(np.diff(g) == 0):
        raise ValueError(f"{name} must not repeat a value (it would be charged twice)")
    return g


def _choice(name: str, value, allowed: Sequence[str]) -> str:
    return V.choice(name, value, allowed)


def _smallest_covering(name: str, grid: np.ndarray, value: float, grid_name: str) -> float:
    """Smallest grid value >= value; a value above the grid is an error, never clipped."""
    idx = np.searchsorted(grid, value, side="left")
    if idx == grid.size:
        raise ValueError(
            f"{name} = {value!r} exceeds the largest value of {grid_name} ({grid[-1]!r}); "
            f"no bound of the union covers it (extend the grid before seeing the data)"
        )
    return float(grid[idx])


class _Terms:
    """Mixin: ``as_dict()`` (a flat row) and ``vacuous``."""

    label: ClassVar[str] = ""

    def as_dict(self) -> dict:
        """The named terms as a flat dict (one table row), with ``bound`` the label."""
        row = {"bound": getattr(self, "name", self.label)}
        row.update(dataclasses.asdict(self))
        row["vacuous"] = self.vacuous
        return row

    @property
    def vacuous(self) -> bool:
        """True when ``total >= 1``: the bound says nothing about a 0-1 risk."""
        return bool(self.total >= 1.0)


class _NormalizedLossTerms(_Terms):
    """Mixin of the per-sample bounds on a normalised contrastive loss (B4n, B5n): vacuous at
    ``log N`` (``tuple_size`` N), the loss of features that ignore the input (equal logits)."""

    @property
    def vacuous(self) -> bool:
        """True when ``total >= log N``: no better than an encoder that ignores its input."""
        return bool(self.total >= math.log(self.tuple_size))


# --------------------------------------------------------------------------------------
# kl tools (B3) and test-set estimates (C)
# --------------------------------------------------------------------------------------


def _x_minus_log1p(x: np.ndarray) -> np.ndarray:
    """x - log(1 + x) >= 0 for x >= -1, accurate also where it is ~ x^2 / 2 (small |x|)."""
    out = np.empty_like(x)
    small = np.abs(x) < 1e-2
    xs = x[small]
    # Series sum_{j >= 2} (-1)^j x^j / j (Horner); 10 terms leave a relative error < 1e-19.
    acc = np.zeros_like(xs)
    for j in range(11, 1, -1):
        acc = 1.0 / j - xs * acc
    out[small] = xs * xs * acc
    xl = x[~small]
    with np.errstate(divide="ignore"):
        out[~small] = xl - np.log1p(xl)   # x = -1 gives +inf
    return out


def kl_bernoulli(q, p):
    r"""Binary relative entropy :math:`\mathrm{kl}(q \| p)` between Bernoulli(q) and Bernoulli(p).

    .. math::

      \mathrm{kl}(q\|p) = q \ln\frac{q}{p} + (1-q)\ln\frac{1-q}{1-p},
      \qquad 0 \ln 0 = 0,

    and :math:`+\infty` when :math:`p \in \{0, 1\}` and :math:`q \ne p`. Numerical care: the
    direct formula loses all precision near :math:`p = q`, where kl is
    :math:`\approx (p-q)^2 / (2q(1-q))` but its two terms are :math:`\approx \pm(p - q)`; so
    for :math:`0 < q < 1` it is evaluated as
    :math:`q\,g(h/q) + (1-q)\,g(-h/(1-q))` with :math:`h = p - q`, :math:`g(x) = x - \ln(1+x)`
    (the linear terms cancel exactly), :math:`g` by its series for small :math:`|x|`, and
    each term for :math:`|x| \ge 1/2` as :math:`h + q\ln(q/p)` resp.
    :math:`-h + (1-q)\ln((1-q)/(1-p))` with ``log`` / ``log1p`` of p, q themselves.
    Used by B3 (docs/theory.md).

    Args:
      q: float or array in [0, 1].
      p: float or array in [0, 1] (broadcast against ``q``).

    Returns:
      float64 (array if an input is an array), >= 0.

    Example:
      >>> round(float(kl_bernoulli(0.5, 0.25)), 6)
      0.143841

    References:
      Cover and Thomas, Elements of Information Theory (2nd ed.), Section 2.3.
    """
    q = np.asarray(q, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if np.any(~np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    kl = _kl_bernoulli(*np.broadcast_arrays(q, p))
    return kl[()] if kl.ndim == 0 else kl


def _kl_bernoulli(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """:func:`kl_bernoulli` on float64 arrays of one shape, already checked to lie in [0, 1]
    (the bisection of :func:`_kl_inverse` calls it ~40 times per inversion)."""
    kl = np.empty(q.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        at0, at1 = q == 0.0, q == 1.0
        kl[at0] = -np.log1p(-p[at0])                  # kl(0 || p) = -ln(1 - p)
        kl[at1] = -np.log(p[at1])                     # kl(1 || p) = -ln p
        mid = ~(at0 | at1)
        qm, pm = q[mid], p[mid]
        h = pm - qm
        x1, x2 = h / qm, -h / (1.0 - qm)
        # Each term is q g(x1) resp. (1-q) g(x2); near x = 0 through g (no cancellation),
        # elsewhere through differences of logs (exact where p or 1 - p is tiny).
        near1, near2 = np.abs(x1) < 0.5, np.abs(x2) < 0.5
        t1 = np.where(near1, qm * _x_minus_log1p(np.where(near1, x1, 0.0)),
                      h + qm * (np.log(qm) - np.log(pm)))
        t2 = np.where(near2, (1.0 - qm) * _x_minus_log1p(np.where(near2, x2, 0.0)),
                      -h + (1.0 - qm) * (np.log1p(-qm) - np.log1p(-pm)))
        kl[mid] = t1 + t2
    return np.maximum(kl, 0.0)                         # -0.0 -> 0.0


def _kl_inverse(q, c, tol: float, upper: bool):
    """Vectorised bisection shared by the upper and lower kl inverses."""
    q = np.asarray(q, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if np.any(~np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    if np.any(np.isnan(c)) or np.any(c < 0):
        raise ValueError(f"c must be >= 0, got {c!r}")
    tol = _check_real("tol", tol, lo=0.0, lo_open=True)
    q, c = np.broadcast_arrays(q, c)
    # Invariant: kl(q || inner) <= c < kl(q || outer); the answer lies between them.
    inner = q.copy()
    outer = np.ones_like(q) if upper else np.zeros_like(q)
    for _ in range(200):            # the width halves each step: ~40 steps for tol = 1e-12
        width = np.abs(outer - inner)
        mid = 0.5 * (inner + outer)
        active = (width > tol) & (mid != inner) & (mid != outer)
        if not np.any(active):
            break
        over = _kl_bernoulli(q, mid) > c
        outer = np.where(active & over, mid, outer)
        inner = np.where(active & ~over, mid, inner)
    # q at the far end (q = 1 for upper, q = 0 for lower) or c = inf: the end itself.
    end = 1.0 if upper else 0.0
    out = np.where((q == end) | np.isinf(c), end, outer)
    return float(out) if out.ndim == 0 else out


def kl_inverse_upper(q, c, tol: float = 1e-12):
    r"""Upper kl inverse :math:`\sup\{p \in [q, 1] : \mathrm{kl}(q\|p) \le c\}`, by bisection.

    :math:`p \mapsto \mathrm{kl}(q\|p)` is continuous and increasing on :math:`[q, 1]`, from
    0 to :math:`+\infty` (for :math:`q < 1`), so the supremum :math:`p^*` solves
    :math:`\mathrm{kl}(q\|p^*) = c`. Bisection keeps ``lo`` with kl <= c and ``hi`` with
    kl > c and stops when ``hi - lo <= tol``; it returns ``hi``, so the result is never below
    :math:`p^*` (an upper bound stays an upper bound) and exceeds it by at most ``tol``.
    Vectorised: ``q`` and ``c`` broadcast. Used by B3 (Seeger 2002; Maurer 2004; Langford
    and Caruana 2002).

    Args:
      q: empirical value(s) in [0, 1].
      c: kl budget(s) >= 0 (``inf`` gives 1).
      tol: bisection width > 0.

    Returns:
      float (array if an input is an array) in [q, 1].

    Example:
      >>> p = kl_inverse_upper(0.0, 0.1)      # closed form 1 - exp(-c) at q = 0
      >>> abs(p - (1 - math.exp(-0.1))) < 1e-12
      True

    References:
      M. Seeger, PAC-Bayesian generalisation error bounds for Gaussian process
      classification, JMLR 3, 2002. A. Maurer, A note on the PAC Bayesian theorem,
      arXiv:cs/0411099, 2004.
    """
    return _kl_inverse(q, c, tol, upper=True)


def kl_inverse_lower(q, c, tol: float = 1e-12):
    r"""Lower kl inverse :math:`\inf\{p \in [0, q] : \mathrm{kl}(q\|p) \le c\}`, by bisection.

    Mirror image of :func:`kl_inverse_upper`: returns the lower end of the final bracket,
    never above the infimum and below it by at most ``tol`` (a lower bound stays a lower
    bound). Vectorised like :func:`kl_inverse_upper`.

    Args:
      q: empirical value(s) in [0, 1].
      c: kl budget(s) >= 0 (``inf`` gives 0).
      tol: bisection width > 0.

    Returns:
      float (array if an input is an array) in [0, q].

    Example:
      >>> p = kl_inverse_lower(1.0, 0.1)      # closed form exp(-c) at q = 1
      >>> abs(p - math.exp(-0.1)) < 1e-12
      True

    References:
      As :func:`kl_inverse_upper`.
    """
    return _kl_inverse(q, c, tol, upper=False)


def hoeffding_slack(n: int, delta: float) -> float:
    r"""One-sided Hoeffding slack :math:`\sqrt{\ln(1/\delta) / (2n)}`.

    For the mean :math:`\hat R` of ``n`` i.i.d. variables in [0, 1] with mean ``R``,
    :math:`P[R > \hat R + s] \le \delta` and :math:`P[R < \hat R - s] \le \delta`
    (docs/theory.md, C: test-set checks).

    Args:
      n: number of samples >= 1.
      delta: failure probability in (0, 1).

    Returns:
      float > 0.

    Example:
      >>> round(hoeffding_slack(10_000, 0.05), 6)
      0.012239

    References:
      W. Hoeffding, Probability inequalities for sums of bounded random variables,
      JASA 58, 1963, Theorem 2.
    """
    n = _check_int("n", n, 1)
    delta = _check_delta("delta", delta)
    return math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def risk_upper(err_hat: float, n: int, delta: float) -> float:
    r"""Hoeffding upper confidence bound :math:`\hat R + \sqrt{\ln(1/\delta)/(2n)}` on a risk.

    Args:
      err_hat: test-set error in [0, 1] on ``n`` fresh samples.
      n: test-set size >= 1.
      delta: failure probability in (0, 1).

    Returns:
      float (not clipped at 1).

    Example:
      >>> round(risk_upper(0.1, 10_000, 0.05), 6)
      0.112239

    References:
      Hoeffding 1963, Theorem 2.
    """
    err_hat = _check_real("err_hat", err_hat, lo=0.0, hi=1.0)
    return err_hat + hoeffding_slack(n, delta)


def clopper_pearson(k: int, n: int, delta: float) -> tuple:
    r"""Two-sided Clopper-Pearson interval for a binomial proportion at level :math:`1-\delta`.

    .. math::

      [\,\mathrm{Beta}^{-1}(\delta/2; k, n-k+1),\;
         \mathrm{Beta}^{-1}(1-\delta/2; k+1, n-k)\,],

    with the lower end 0 at ``k = 0`` and the upper end 1 at ``k = n``. Each end alone is a
    one-sided bound at level :math:`1 - \delta/2`.

    Args:
      k: number of errors, 0 <= k <= n.
      n: number of trials >= 1.
      delta: failure probability in (0, 1).

    Returns:
      (lower, upper) floats.

    Example:
      >>> lo, hi = clopper_pearson(0, 100, 0.05)
      >>> lo, round(hi, 4)
      (0.0, 0.0362)

    References:
      C. J. Clopper and E. S. Pearson, The use of confidence or fiducial limits illustrated
      in the case of the binomial, Biometrika 26, 1934.
    """
    n = _check_int("n", n, 1)
    k = _check_int("k", k, 0)
    if k > n:
        raise ValueError(f"k must be <= n = {n}, got {k}")
    delta = _check_delta("delta", delta)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(delta / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - delta / 2, k + 1, n - k))
    return lo, hi


class HoldoutCheck(NamedTuple):
    """Outcome of checking a bound against a test-set estimate (docs/theory.md, C)."""

    holds: bool          # err_hat - slack <= bound
    holds_strict: bool   # err_hat + slack <= bound
    slack: float         # hoeffding_slack(n_test, delta_test)


def holds_on_test_set(bound: float, err_hat: float, n_test: int, delta_test: float) -> HoldoutCheck:
    r"""Check an upper bound ``U`` on a risk ``R`` against a test estimate (docs/theory.md, C).

    ``holds``: :math:`\hat R - s \le U` with :math:`s` = :func:`hoeffding_slack`. When
    :math:`R \le U` really holds, this fails with probability at most ``delta_test``
    (because :math:`P[\hat R - s > R] \le \delta_{test}`). ``holds_strict``:
    :math:`\hat R + s \le U`, i.e. the test set itself certifies :math:`R \le U` at
    level :math:`1 - \delta_{test}`.

    Args:
      bound: the bound value ``U`` (unclipped).
      err_hat: test error in [0, 1] on ``n_test`` samples independent of everything the
        bound used.
      n_test: test-set size >= 1.
      delta_test: failure probability in (0, 1).

    Returns:
      :class:`HoldoutCheck` ``(holds, holds_strict, slack)``.

    Example:
      >>> holds_on_test_set(0.2, 0.205, 10_000, 0.05).holds
      True
    """
    bound = _check_real("bound", bound)
    err_hat = _check_real("err_hat", err_hat, lo=0.0, hi=1.0)
    s = hoeffding_slack(n_test, delta_test)
    return HoldoutCheck(bool(err_hat - s <= bound), bool(err_hat + s <= bound), s)


# --------------------------------------------------------------------------------------
# B1: modality-gap transfer
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransferBound(_Terms):
    """B1: ``total = empirical + complexity`` with ``empirical = R_A``, ``complexity = TV``."""

    label: ClassVar[str] = "B1"
    empirical: float    # risk of the head on the source features, R_A(h o phi_A)
    complexity: float   # upper bound on TV(P^A, P^B)
    confidence: float   # 0: B1 is a population identity, no sampling term of its own
    total: float        # R_A + TV (unclipped)


def transfer_bound(risk_source: float, tv_upper: float) -> TransferBound:
    r"""B1: :math:`R_B(h) \le R_A(h) + \mathrm{TV}(P^A, P^B)` for any [0,1]-valued loss.

    For any measurable head ``h`` and loss with values in [0, 1],
    :math:`|E_{P^B} l(h(z), y) - E_{P^A} l(h(z), y)| \le \mathrm{TV}(P^A, P^B)`.
    With ``risk_source`` a population value and ``tv_upper`` a valid upper bound on the TV,
    the total is a valid bound on :math:`R_B`. If ``risk_source`` is a test estimate, pass its
    upper confidence bound (:func:`risk_upper`) instead, or check with both slacks as
    :func:`end_to_end_report` does. The TV itself is computed in
    ``cmcd_theory/divergences.py``.

    Args:
      risk_source: :math:`R_A(h)` in [0, 1].
      tv_upper: upper bound on the TV distance, >= 0 (may exceed 1 if it carries a slack).

    Returns:
      :class:`TransferBound` (``total`` unclipped; ``vacuous`` when >= 1).

    Example:
      >>> transfer_bound(0.1, 0.25).total
      0.35

    References:
      docs/theory.md, B1; e.g. D. A. Levin and Y. Peres, Markov Chains and Mixing Times
      (2nd ed.), Proposition 4.5.
    """
    r = _check_real("risk_source", risk_source, lo=0.0, hi=1.0)
    tv = _check_real("tv_upper", tv_upper, lo=0.0)
    return TransferBound(empirical=r, complexity=tv, confidence=0.0, total=r + tv)


# --------------------------------------------------------------------------------------
# Probe helpers shared by B2 and B3
# --------------------------------------------------------------------------------------


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
            f"weights must have shape (K, D) with K >= 2 and D = {z.shape[1]}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    K = w.shape[0]
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({z.shape[0]},), got "
                         f"{y.dtype} {y.shape}")
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


# --------------------------------------------------------------------------------------
# B2: margin bound
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MarginBound(_Terms):
    """B2 terms: ``total = empirical + complexity + confidence`` at the chosen grid point."""

    label: ClassVar[str] = "B2"
    empirical: float              # ramp loss Rhat_rho at the chosen rho
    complexity: float             # (4K/rho) Rad (multi-class) or (2/rho) Rad (binary)
    confidence: float             # sqrt(log(1/d')/(2n)) or 3 sqrt(log(2/d')/(2n))
    total: float
    rho: float                    # chosen margin (grid value)
    Lambda: float                 # grid value covering Lambda_hat
    Lambda_hat: float             # max_y ||w~_y|| (multi-class) or ||w~_1 - w~_2|| (binary)
    r: float                      # norm bound on augmented features (data_free), else max norm
    rademacher: float             # the bound on the (empirical) Rademacher complexity used
    empirical_margin_loss: float  # same as ``empirical``
    empirical_error: float        # 0-1 training error of the probe (margin <= 0), for reference
    n: int
    K: int
    delta: float
    delta_per_point: float        # delta / grid_size
    grid_size: int                # len(rho_grid) * len(lambda_grid)
    form: str                     # "sample" or "data_free"
    binary: bool


def margin_bound(features, labels, weights, bias=None, delta: float = 0.05, *,
                 rho_grid: Sequence[float] = RHO_GRID,
                 lambda_grid: Sequence[float] = MARGIN_LAMBDA_GRID,
                 form: str = "sample", binary: Optional[bool] = None,
                 feature_norm_bound: float = 1.0) -> MarginBound:
    r"""B2: Rademacher margin bound for the linear probe on frozen features.

    For the scorers :math:`(z, y) \mapsto w_y \cdot \tilde z` (bias folded in:
    :math:`\tilde z = (z, 1)`, :math:`\tilde w_y = (w_y, b_y)`), margin
    :math:`\rho_h(z, y) = \tilde w_y\cdot\tilde z - \max_{y'\ne y}\tilde w_{y'}\cdot\tilde z`
    and ramp loss :math:`\Phi_\rho(u) = \min(1, \max(0, 1 - u/\rho))`, with probability
    :math:`\ge 1-\delta` over the ``n`` labeled samples, simultaneously for every grid point
    :math:`(\rho, \Lambda)` and every probe with norm :math:`\le \Lambda`
    (:math:`\delta' = \delta / |\text{grid}|`):

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

    :math:`R(h)` counts ties as errors (margin <= 0). For each :math:`\rho` only the smallest
    grid :math:`\Lambda \ge \hat\Lambda` is evaluated (larger ones are never better); the
    minimum total over :math:`\rho` is returned. The features must not depend on the ``n``
    labeled samples.

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
    n, K = z.shape[0], w.shape[0]
    delta = _check_delta("delta", delta)
    form = _choice("form", form, ("sample", "data_free"))
    if binary is None:
        binary = K == 2
    if binary and K != 2:
        raise ValueError(f"binary=True needs K = 2 classes, got K = {K}")
    rhos = _check_grid("rho_grid", rho_grid)
    lambdas = _check_grid("lambda_grid", lambda_grid)
    bound_z = _check_real("feature_norm_bound", feature_norm_bound, lo=0.0, lo_open=True)

    sq_norms = np.sum(z * z, axis=1)
    max_norm = float(np.sqrt(sq_norms.max()))
    if form == "data_free":
        raw_max = float(np.sqrt(np.max(sq_norms - (1.0 if has_bias else 0.0))))
        if raw_max > bound_z * (1 + _NORM_RTOL):
            raise ValueError(
                f"a feature has norm {raw_max!r} > feature_norm_bound = {bound_z!r}: the "
                f"data-free form needs an almost-sure norm bound")
        r = math.sqrt(max(bound_z, raw_max) ** 2 + (1.0 if has_bias else 0.0))
    else:
        r = max_norm

    lambda_hat = float(np.linalg.norm(w[0] - w[1]) if binary
                       else np.max(np.linalg.norm(w, axis=1)))
    lam = _smallest_covering("the probe norm Lambda_hat", lambdas, lambda_hat, "lambda_grid")
    grid_size = rhos.size * lambdas.size
    d_pt = delta / grid_size

    margins = _margins(z @ w.T, y)
    err = float(np.mean(margins <= 0))
    ramp = np.mean(np.clip(1.0 - margins[None, :] / rhos[:, None], 0.0, 1.0), axis=1)
    if form == "sample":
        rad = lam * math.sqrt(float(sq_norms.sum())) / n
        conf = 3.0 * math.sqrt(math.log(2.0 / d_pt) / (2.0 * n))
    else:
        rad = lam * r / math.sqrt(n)
        conf = math.sqrt(math.log(1.0 / d_pt) / (2.0 * n))
    factor = 2.0 if binary else 4.0 * K
    complexity = factor * rad / rhos
    totals = ramp + complexity + conf
    j = int(np.argmin(totals))
    return MarginBound(
        empirical=float(ramp[j]), complexity=float(complexity[j]), confidence=conf,
        total=float(totals[j]), rho=float(rhos[j]), Lambda=lam, Lambda_hat=lambda_hat, r=r,
        rademacher=rad, empirical_margin_loss=float(ramp[j]), empirical_error=err, n=n, K=K,
        delta=delta, delta_per_point=d_pt, grid_size=grid_size, form=form, binary=bool(binary))


# --------------------------------------------------------------------------------------
# B3: PAC-Bayes-kl bound
# --------------------------------------------------------------------------------------


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
    empirical: float              # MC estimate of the empirical stochastic loss Lhat_S(Q)
    complexity: float             # KL(Q||P) / n
    confidence: float             # ln(2 sqrt(n) / delta_pb') / n
    total: float                  # bound on the stochastic risk L(Q)
    total_deterministic: float    # 2 * total: bound on R(W_hat) (unclipped)
    empirical_upper: float        # kl_inv_up(empirical, ln(2 G_q / delta_mc) / (n N_w))
    mc_correction: float          # empirical_upper - empirical
    kl: float                     # KL(Q || P)
    sigma_p: float
    sigma_q: float
    empirical_deterministic: float  # training 0-1 error of W_hat (margin <= 0)
    weight_norm: float            # ||W_hat||_F (bias included)
    n: int
    K: int
    D: int                        # number of probe weights
    delta: float
    delta_mc: float               # total share of delta spent on the MC correction
    delta_pac_bayes: float        # total share spent on the sigma_p union
    n_weight_samples: int
    sigma_p_grid_size: int
    sigma_q_grid_size: int


def _stochastic_errors(z, y, w, sigma_q, seed, n_draws, chunk):
    """Mean 0-1 loss (margin <= 0) of W = W_hat + sigma_q * eps over the sample, per sigma_q,
    with an independent weight draw for every (sample point, draw): the scores of point i
    under W are ``W_hat z_i + sigma_q eps z_i`` and ``eps z_i ~ N(0, ||z_i||^2 I_K)``, so each
    point's draw is ``||z_i|| xi`` with xi standard normal (no weight matrix is formed); the
    xi come from ``np.random.default_rng(seed)``.

    The same standard normal draws serve every sigma_q (the union bound over sigma_q does
    not need independent draws). Returns (G_q,) floats. A deterministic function of its
    arguments: for a plain seed (int or sequence of ints) the result is memoised, so the bound
    forms that certify the same probe at different shares of delta draw the weights once.
    """
    key = _memo_key(z, y, w, sigma_q, seed, n_draws, chunk)
    if key is not None and key in _MC_MEMO:
        _MC_MEMO.move_to_end(key)
        return _MC_MEMO[key].copy()
    rng = np.random.default_rng(seed)
    K = w.shape[0]
    base = z @ w.T                                   # (n, K)
    norms = np.linalg.norm(z, axis=1)[None, :, None]
    idx = np.asarray(y)[None, :, None]
    is_label = np.zeros(base.shape, bool)
    np.put_along_axis(is_label, idx[0], True, axis=-1)
    errors = np.zeros(sigma_q.size)
    done = 0
    while done < n_draws:
        c = min(chunk, n_draws - done)
        noise = norms * rng.standard_normal((c, z.shape[0], K))     # (c, n, K)
        scores = np.empty_like(noise)
        for g, s in enumerate(sigma_q):
            # scores = base + s * noise, and the margin s_y - max_{y' != y} s_y' (the values
            # of _margins(base[None] + s * noise, y), computed in place)
            np.multiply(noise, s, out=scores)
            scores += base
            correct = np.take_along_axis(scores, np.broadcast_to(idx, (c,) + idx.shape[1:]), axis=-1)[..., 0]
            np.copyto(scores, -np.inf, where=is_label)
            errors[g] += np.count_nonzero(correct - scores.max(axis=-1) <= 0)
        done += c
    errors /= n_draws * z.shape[0]
    if key is not None:
        _MC_MEMO[key] = errors.copy()
        while len(_MC_MEMO) > _MC_MEMO_MAX:
            _MC_MEMO.popitem(last=False)
    return errors


# _stochastic_errors of this process: (arrays' digest, seed, draws, chunk) -> errors
_MC_MEMO: "collections.OrderedDict" = collections.OrderedDict()
_MC_MEMO_MAX = 64


def _memo_key(z, y, w, sigma_q, seed, n_draws, chunk):
    """A digest of everything :func:`_stochastic_errors` depends on; None for a seed that is
    not a plain int or sequence of ints (a Generator carries state: never memoised)."""
    def plain(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
    if not (plain(seed) or (isinstance(seed, (list, tuple)) and all(plain(x) for x in seed))):
        return None
    h = hashlib.sha1()
    for a in (z, y, w, sigma_q):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.view(np.uint8).reshape(-1))
    seed = tuple(int(x) for x in seed) if isinstance(seed, (list, tuple)) else int(seed)
    return h.hexdigest(), repr(seed), int(n_draws), int(chunk)


def pac_bayes_kl_bound(features, labels, weights, bias=None, *, seed,
                       delta: float = 0.05,
                       sigma_p_grid: Sequence[float] = SIGMA_P_GRID,
                       sigma_q_grid: Optional[Sequence[float]] = None,
                       n_weight_samples: int = 1000,
                       delta_mc_fraction: float = 0.5,
                       chunk_size: Optional[int] = None) -> PacBayesBound:
    r"""B3: PAC-Bayes-kl bound for the linear probe, with Monte Carlo correction.

    Prior :math:`P_{\sigma_p} = N(0, \sigma_p^2 I_D)`, posterior
    :math:`Q_{\sigma_q} = N(\hat W, \sigma_q^2 I_D)` over all :math:`D = K(d+1)` probe weights
    (:math:`D = Kd` without bias); 0-1 loss counts ties as errors. The budget
    :math:`\delta` is split: :math:`\delta_{mc} = f\delta` for the Monte Carlo correction,
    shared by the :math:`G_q` values of :math:`\sigma_q` tried, and
    :math:`\delta_{pb} = (1-f)\delta` for the PAC-Bayes bound, shared by the :math:`G_p` grid
    values of :math:`\sigma_p`. For every grid pair,

    .. math::

      \hat L^{up} = \mathrm{kl}^{-1}_{\rm up}\Big(\hat L_{S,N_w}(Q),
          \frac{\ln(2G_q/\delta_{mc})}{n N_w}\Big),\qquad
      L(Q) \le \mathrm{kl}^{-1}_{\rm up}\Big(\hat L^{up},
          \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\, G_p/\delta_{pb})}{n}\Big),

    and the smallest value is returned. Validity: the PAC-Bayes bound holds for all Q at
    once for each prior, the union over :math:`\sigma_p` costs :math:`G_p`; the MC bound
    holds, conditionally on the sample, for each :math:`\sigma_q` at level
    :math:`\delta_{mc}/G_q`, union over the :math:`G_q` values. So :math:`\sigma_q` may depend
    on the sample (the default grid is relative to :math:`\|\hat W\|_F/\sqrt D`) but not on
    the weight draws. Derandomisation: for every point where :math:`\hat W` errs, some
    :math:`y'\ne y` has :math:`(\hat w_{y'}-\hat w_y)\cdot\tilde z \ge 0`, and the symmetric
    Gaussian perturbation keeps that sign with probability :math:`\ge 1/2`, so
    :math:`R(\hat W) \le 2L(Q)` (``total_deterministic``, unclipped).

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
    z, y, w, _ = _augment(features, labels, weights, bias)
    n, K = z.shape[0], w.shape[0]
    D = w.size
    delta = _check_delta("delta", delta)
    frac = _check_real("delta_mc_fraction", delta_mc_fraction, lo=0.0, hi=1.0,
                       lo_open=True, hi_open=True)
    n_w = _check_int("n_weight_samples", n_weight_samples, 1)
    sps = _check_grid("sigma_p_grid", sigma_p_grid)
    w_norm = float(np.linalg.norm(w))
    if sigma_q_grid is None:
        scale = w_norm / math.sqrt(D) if w_norm > 0 else 1.0
        sqs = _check_grid("sigma_q_grid", np.asarray(SIGMA_Q_RELATIVE_GRID) * scale)
    else:
        sqs = _check_grid("sigma_q_grid", sigma_q_grid)
    if chunk_size is None:
        chunk_size = max(1, int(4_000_000 // (n * K)))
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    delta_mc, delta_pb = frac * delta, (1.0 - frac) * delta
    emp_mc = _stochastic_errors(z, y, w, sqs, seed, n_w, chunk_size)
    # n * N_w independent 0-1 values (one weight draw per point and draw): Chernoff-kl
    emp_up = kl_inverse_upper(emp_mc, math.log(2.0 * sqs.size / delta_mc) / (n * n_w))
    d_pb = delta_pb / sps.size
    conf = math.log(2.0 * math.sqrt(n) / d_pb) / n

    # All (sigma_q, sigma_p) pairs at once: kl (G_q, G_p), then one vectorised inversion.
    kls = np.array([[gaussian_kl(w_norm**2, D, sq, sp) for sp in sps] for sq in sqs])
    totals = kl_inverse_upper(emp_up[:, None], kls / n + conf)
    gq, gp = np.unravel_index(int(np.argmin(totals)), totals.shape)
    total, sp, kl = float(totals[gq, gp]), float(sps[gp]), float(kls[gq, gp])
    err_det = float(np.mean(_margins(z @ w.T, y) <= 0))
    return PacBayesBound(
        empirical=float(emp_mc[gq]), complexity=kl / n, confidence=conf, total=total,
        total_deterministic=2.0 * total, empirical_upper=float(emp_up[gq]),
        mc_correction=float(emp_up[gq] - emp_mc[gq]), kl=kl, sigma_p=float(sp),
        sigma_q=float(sqs[gq]), empirical_deterministic=err_det, weight_norm=w_norm, n=n, K=K,
        D=D, delta=delta, delta_mc=delta_mc, delta_pac_bayes=delta_pb, n_weight_samples=n_w,
        sigma_p_grid_size=int(sps.size), sigma_q_grid_size=int(sqs.size))


def stochastic_error_rate(features, labels, weights, bias=None, *, sigma: float, seed,
                          n_draws: int = 1) -> float:
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
    chunk = max(1, int(4_000_000 // (z.shape[0] * w.shape[0])))
    return float(_stochastic_errors(z, y, w, np.array([sigma]), seed,
                                    n_draws, chunk)[0])


@dataclasses.dataclass(frozen=True)
class SplitPriorPacBayesBound(_Terms):
    """B3p terms. ``total = kl_inv_up(empirical_upper, complexity + confidence)`` on the
    ``n`` points the prior did not see."""

    label: ClassVar[str] = "B3p"
    empirical: float              # MC estimate of Lhat_{S_1}(Q) on the n evaluation points
    complexity: float             # KL(Q||P) / n
    confidence: float             # ln(2 sqrt(n) G / delta_pb) / n
    total: float                  # bound on the stochastic risk L(Q)
    total_deterministic: float    # 2 * total: bound on R(W_hat) (unclipped)
    empirical_upper: float        # kl_inv_up(empirical, ln(G / delta_mc) / (n N_w))
    mc_correction: float          # empirical_upper - empirical
    kl: float                     # ||c W_hat - W_0||^2 / (2 sigma^2)
    kappa: float                  # sigma / (||W_0||_F / sqrt(D)), from the grid
    sigma: float                  # prior and posterior standard deviation
    scale: float                  # c: posterior mean c W_hat (c > 0)
    prior_norm: float             # ||W_0||_F (bias included)
    weight_norm: float            # ||W_hat||_F (bias included)
    empirical_deterministic: float  # 0-1 error of W_hat on the n evaluation points
    n: int                        # evaluation points (not seen by the prior)
    n_prior: int                  # points the prior mean was fitted on
    K: int
    D: int
    delta: float
    delta_mc: float
    delta_pac_bayes: float
    n_weight_samples: int
    grid_size: int


def pac_bayes_split_prior_bound(features, labels, weights, bias=None, *, prior_weights,
                                prior_bias=None, n_prior: int, seed, delta: float = 0.05,
                                kappa_grid: Sequence[float] = SIGMA_Q_RELATIVE_GRID,
                                n_weight_samples: int = 1000, delta_mc_fraction: float = 0.5,
                                chunk_size: Optional[int] = None) -> SplitPriorPacBayesBound:
    r"""B3p: PAC-Bayes-kl bound for the linear probe with a data-dependent (split) prior.

    The labeled sample is split, in an order fixed before the data, into :math:`S_0`
    (``n_prior`` points) and :math:`S_1` (the ``n`` points given here). The prior mean
    :math:`W_0` (``prior_weights``, ``prior_bias``) must be a function of :math:`S_0` only
    (e.g. the probe fitted on :math:`S_0`); :math:`\hat W` may be fitted on all the data. For
    :math:`\kappa` in ``kappa_grid`` (fixed in advance, :math:`G` values),
    :math:`\sigma = \kappa\lVert W_0\rVert_F/\sqrt D`, prior :math:`N(W_0, \sigma^2 I_D)`,
    posterior :math:`Q_\kappa = N(c\hat W, \sigma^2 I_D)`,
    :math:`c = \langle\hat W, W_0\rangle/\lVert\hat W\rVert_F^2` (the multiple of
    :math:`\hat W` closest to :math:`W_0`; 1 if that is not positive). With probability
    :math:`\ge 1-\delta`, for every grid value,

    .. math::

      L(Q_\kappa) \le \mathrm{kl}^{-1}_{\rm up}\Big(\mathrm{kl}^{-1}_{\rm up}\Big(\hat L_{S_1,N_w},
        \frac{\ln(G/\delta_{mc})}{nN_w}\Big),\
        \frac{\lVert c\hat W - W_0\rVert^2/(2\sigma^2) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),

    and :math:`R(\hat W) = R(c\hat W) \le 2L(Q_\kappa)`; the smallest value is returned
    (docs/theory.md, B3p).

    Args:
      features, labels: (n, d), (n,) the evaluation part :math:`S_1`, which the prior did not
        see.
      weights, bias: :math:`\hat W` (K, d) and (K,) or None.
      prior_weights, prior_bias: :math:`W_0`, same shapes (``prior_bias`` None iff ``bias``
        is None).
      n_prior: :math:`|S_0| \ge 1` (recorded; the bound does not depend on it).
      seed: seed of the numpy Generator of the weight draws.
      delta: confidence in (0, 1).
      kappa_grid: relative scales fixed before the data (default
        :data:`SIGMA_Q_RELATIVE_GRID`).
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
    z, y, w, has_bias = _augment(features, labels, weights, bias)
    if (prior_bias is None) != (not has_bias):
        raise ValueError("prior_bias must be given exactly when bias is given")
    _, _, w0, _ = _augment(np.asarray(features)[:1], np.asarray(labels)[:1], prior_weights,
                          prior_bias)
    if w0.shape != w.shape:
        raise ValueError("prior_weights must have the shape of weights")
    n, K, D = z.shape[0], w.shape[0], w.size
    n_prior = _check_int("n_prior", n_prior, 1)
    delta = _check_delta("delta", delta)
    frac = _check_real("delta_mc_fraction", delta_mc_fraction, lo=0.0, hi=1.0,
                       lo_open=True, hi_open=True)
    n_w = _check_int("n_weight_samples", n_weight_samples, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    G = kappas.size
    w0_norm, w_norm = float(np.linalg.norm(w0)), float(np.linalg.norm(w))
    c = float(np.sum(w * w0) / w_norm**2) if w_norm > 0 else 1.0
    if not c > 0:
        c = 1.0   # any c > 0 is a valid posterior centre; c > 0 keeps the argmax of W_hat
    sigmas = kappas * (w0_norm / math.sqrt(D) if w0_norm > 0 else 1.0)
    if chunk_size is None:
        chunk_size = max(1, int(4_000_000 // (n * K)))
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    delta_mc, delta_pb = frac * delta, (1.0 - frac) * delta
    mean = c * w
    emp_mc = _stochastic_errors(z, y, mean, sigmas, seed, n_w, chunk_size)
    # n N_w independent 0-1 values, one-sided Chernoff-kl, union over the G scales
    emp_up = kl_inverse_upper(emp_mc, math.log(G / delta_mc) / (n * n_w))
    conf = math.log(2.0 * math.sqrt(n) * G / delta_pb) / n
    dist2 = float(np.sum((mean - w0) ** 2))
    kls = np.array([gaussian_kl(dist2, D, s, s) for s in sigmas])   # = dist2 / (2 sigma^2)
    totals = kl_inverse_upper(emp_up, kls / n + conf)
    g = int(np.argmin(totals))
    total = float(totals[g])
    return SplitPriorPacBayesBound(
        empirical=float(emp_mc[g]), complexity=float(kls[g]) / n, confidence=conf, total=total,
        total_deterministic=2.0 * total, empirical_upper=float(emp_up[g]),
        mc_correction=float(emp_up[g] - emp_mc[g]), kl=float(kls[g]), kappa=float(kappas[g]),
        sigma=float(sigmas[g]), scale=c, prior_norm=w0_norm, weight_norm=w_norm,
        empirical_deterministic=float(np.mean(_margins(z @ w.T, y) <= 0)), n=n,
        n_prior=n_prior, K=K, D=D, delta=delta, delta_mc=delta_mc, delta_pac_bayes=delta_pb,
        n_weight_samples=n_w, grid_size=G)


# --------------------------------------------------------------------------------------
# B4 / B5: contrastive losses over i.i.d. tuples
# --------------------------------------------------------------------------------------


def tuple_split(m: int, tuple_size: int) -> int:
    r"""Number of disjoint tuples :math:`n_t = \lfloor m / N \rfloor` (B4, B5).

    Splitting the samples into disjoint tuples of N makes the tuples i.i.d.; the last
    :math:`m - N n_t` samples are left out.

    Args:
      m: number of samples >= 0.
      tuple_size: N >= 1.

    Returns:
      :math:`n_t \ge 1`; ValueError if ``m < tuple_size``.

    Example:
      >>> tuple_split(1000, 64)
      15
    """
    m = _check_int("m", m, 0)
    N = _check_int("tuple_size", tuple_size, 1)
    n_t = m // N
    if n_t < 1:
        raise ValueError(f"m = {m} samples give no complete tuple of tuple_size = {N}")
    return n_t


def _log1p_nm1_exp(N: int, a: float) -> float:
    """log(1 + (N - 1) exp(a)) without overflow (0 for N = 1)."""
    if N == 1:
        return 0.0
    return float(np.logaddexp(0.0, math.log(N - 1) + a))


def distillation_tuple_lipschitz(tuple_size: int, tau: float, loss: str = "cmc") -> float:
    r"""Lipschitz constant of the tuple-mean distillation loss in the stacked student features (B4).

    For teacher features of norm :math:`\le 1`, each per-anchor B->A loss (CMC, or CMD with
    any teacher distribution :math:`p_A(\cdot|i)`) is :math:`(2/\tau)`-Lipschitz in its
    anchor's student feature, so the tuple mean is

    .. math::

      L_{\rm cmc} = L_{\rm cmd} = \frac{2}{\tau\sqrt N},\qquad
      L_{\rm cmc\_symmetric} = \frac12\Big(\frac{2}{\tau\sqrt N} + \frac{\sqrt2}{\tau}\Big)
        = \frac1\tau\Big(\frac{1}{\sqrt N} + \frac{1}{\sqrt 2}\Big),

    the symmetric CLIP form (O2) adding the A->B direction, :math:`\sqrt2/\tau`-Lipschitz
    (not divided by :math:`\sqrt N`: every student feature is a candidate of every anchor).

    Args:
      tuple_size: N >= 1.
      tau: student temperature > 0.
      loss: ``"cmc"`` (B->A), ``"cmd"`` or ``"cmc_symmetric"``.

    Returns:
      float > 0.

    Example:
      >>> distillation_tuple_lipschitz(4, 0.5)
      2.0

    References:
      docs/theory.md, B4.
    """
    N = _check_int("tuple_size", tuple_size, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    loss = _choice("loss", loss, ("cmc", "cmd", "cmc_symmetric"))
    if loss == "cmc_symmetric":
        return (1.0 / math.sqrt(N) + 1.0 / math.sqrt(2.0)) / tau
    return 2.0 / (tau * math.sqrt(N))


def distillation_loss_range(tuple_size: int, tau: float, lambda_b: float, r_b: float) -> float:
    r"""Upper end b of the distillation loss range [0, b] (B4).

    .. math:: b = \ln\big(1 + (N-1)\, e^{2\Lambda_B r_B/\tau}\big),

    since every logit difference :math:`u_i\cdot(z_A^j - z_A^i)/\tau` is at most
    :math:`2\Lambda_B r_B/\tau` for :math:`\|u_i\| \le \Lambda_B r_B`,
    :math:`\|z_A^j\| \le 1`. Same b for CMC (either direction) and CMD.

    Args:
      tuple_size: N >= 1.
      tau: temperature > 0.
      lambda_b: Frobenius-norm bound :math:`\Lambda_B \ge 0`.
      r_b: input clip radius :math:`r_B > 0`.

    Returns:
      float >= 0 (computed with logaddexp: no overflow at small tau).

    Example:
      >>> round(distillation_loss_range(2, 1.0, 0.5, 1.0), 6)   # log(1 + e)
      1.313262
    """
    N = _check_int("tuple_size", tuple_size, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    lam = _check_real("lambda_b", lambda_b, lo=0.0)
    r = _check_real("r_b", r_b, lo=0.0, lo_open=True)
    return _log1p_nm1_exp(N, 2.0 * lam * r / tau)


def infonce_tuple_lipschitz(N: int, tau: float, R: float) -> float:
    r"""Lipschitz constant of the tuple-mean symmetric InfoNCE loss (O1) in both views (B5).

    For :math:`U, V \in \mathbb R^{N\times k}` with rows of norm :math:`\le R` and
    :math:`L(U, V) = \frac1{2N}\sum_i[\mathrm{CE}(\text{row}\ i) + \mathrm{CE}(\text{col}\ i)]`
    on logits :math:`UV^\top/\tau`,

    .. math::

      \|L(U,V) - L(U',V')\| \le L_N \|(U,V) - (U',V')\|_F,\qquad
      L_N = \frac R\tau\Big(\sqrt{\frac 2N} + \frac{c_N}{\sqrt 2}\Big),\quad
      c_N = \min\big(\sqrt 2,\ 1 + 1/\sqrt N\big).

    Derivation (docs/theory.md, B5): :math:`\nabla_U L = GV/\tau`,
    :math:`\nabla_V L = G^\top U/\tau` with :math:`G = (P + Q - 2I)/(2N)`, P the row-softmax
    (row-stochastic), Q the column-softmax (column-stochastic). :math:`\|(P-I)V\|_F \le 2R\sqrt N`
    (each row is :math:`\sum_j P_{ij}v_j - v_i`), :math:`\|(Q-I)V\|_F \le c_N N R` (column
    bound :math:`\sum_j \|q_j - e_j\|\|v_j\|`, or :math:`\|Q\|_{op} \le \sqrt{\|Q\|_1\|Q\|_\infty}
    \le \sqrt N`), and the same for :math:`G^\top U`; so
    :math:`\|\nabla L\| \le \sqrt2\,R(1/\sqrt N + c_N/2)/\tau` on the convex set of admissible
    features. Tight at N = 2 (:math:`L_2 = 2R/\tau`).

    Args:
      N: tuple (batch) size >= 1.
      tau: temperature > 0.
      R: feature-norm bound > 0 (:math:`\Lambda_A r_A`).

    Returns:
      float > 0.

    Example:
      >>> infonce_tuple_lipschitz(2, 1.0, 1.0)
      2.0

    References:
      docs/theory.md, B5.
    """
    N = _check_int("N", N, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    R = _check_real("R", R, lo=0.0, lo_open=True)
    c_n = min(math.sqrt(2.0), 1.0 + 1.0 / math.sqrt(N))
    return (R / tau) * (math.sqrt(2.0 / N) + c_n / math.sqrt(2.0))


def infonce_loss_range(N: int, tau: float, R: float) -> float:
    r"""Upper end b of the InfoNCE loss range [0, b] for features of norm <= R (B5).

    .. math:: b = \ln\big(1 + (N-1)\, e^{2R^2/\tau}\big).

    Args:
      N: tuple size >= 1.
      tau: temperature > 0.
      R: feature-norm bound >= 0.

    Returns:
      float >= 0.

    Example:
      >>> round(infonce_loss_range(2, 2.0, 1.0), 6)   # log(1 + e)
      1.313262
    """
    N = _check_int("N", N, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    R = _check_real("R", R, lo=0.0)
    return _log1p_nm1_exp(N, 2.0 * R * R / tau)


@dataclasses.dataclass(frozen=True)
class TupleLossBound(_Terms):
    """B4 / B5 terms: ``total = empirical + complexity + confidence`` (``name`` says which)."""

    label: ClassVar[str] = "B4/B5"
    name: str                 # "B4" (distillation, in m) or "B5" (stage 1, in M)
    empirical: float          # empirical tuple-mean loss Lhat(W)
    complexity: float         # 2 * rademacher
    confidence: float         # b sqrt(log(1/d')/(2 n_t)) or 3 b sqrt(log(2/d')/(2 n_t))
    total: float              # bound on the population tuple loss L(W)
    rademacher: float         # sqrt2 * lipschitz * Lambda * sqrt(k S) / n_t
    lipschitz: float          # Lipschitz constant of the tuple mean in stacked features
    loss_range: float         # b: the loss lies in [0, b]
    Lambda: float             # grid value covering Lambda_hat
    Lambda_hat: float         # ||W||_F of the trained encoder
    r: float                  # input clip radius
    feature_dim: int          # k, output coordinates of the encoder
    sum_sq_norms: float       # S used (its maximum n_t * inputs_per_tuple * r^2 if data-free)
    n_tuples: int
    tuple_size: int
    inputs_per_tuple: int     # N (B4) or 2N (B5)
    tau: float
    delta: float
    delta_per_point: float
    grid_size: int
    form: str
    loss: str

    @property
    def vacuous(self) -> bool:
        """True when ``total >= loss_range``: no better than the trivial bound b."""
        return bool(self.total >= self.loss_range)


def _tuple_bound(name, loss, emp_loss, n_tuples, tuple_size, inputs_per_tuple, tau, lam_hat,
                 r, k, delta, form, sum_sq_norms, lambda_grid, lipschitz_fn, range_fn):
    n_t = _check_int("n_tuples", n_tuples, 1)
    delta = _check_delta("delta", delta)
    form = _choice("form", form, ("data_free", "sample"))
    grid = _check_grid("lambda_grid", lambda_grid)
    lam = _smallest_covering("the weight norm", grid, lam_hat, "lambda_grid")
    d_pt = delta / grid.size
    s_max = n_t * inputs_per_tuple * r * r
    if form == "sample":
        if sum_sq_norms is None:
            raise ValueError("sum_sq_norms is required for form='sample'")
        s = _check_real("sum_sq_norms", sum_sq_norms, lo=0.0)
        if s > s_max * (1 + _NORM_RTOL):
            raise ValueError(
                f"sum_sq_norms = {s!r} exceeds n_tuples * {inputs_per_tuple} * r^2 = {s_max!r}:"
                f" the inputs were not clipped to the ball of radius r")
    else:
        if sum_sq_norms is not None:
            raise ValueError("sum_sq_norms is only used by form='sample'")
        s = s_max
    lip = lipschitz_fn(lam)
    b = range_fn(lam)
    emp = _check_real("emp_loss", emp_loss, lo=0.0)
    if emp > b * (1 + _NORM_RTOL) + 1e-12:
        raise ValueError(
            f"emp_loss = {emp!r} exceeds the loss range b = {b!r}: the loss was not computed "
            f"in the form the bound covers (unnormalised W clip(x), teacher norms <= 1)")
    rad = math.sqrt(2.0) * lip * lam * math.sqrt(k * s) / n_t
    if form == "data_free":
        conf = b * math.sqrt(math.log(1.0 / d_pt) / (2.0 * n_t))
    else:
        conf = 3.0 * b * math.sqrt(math.log(2.0 / d_pt) / (2.0 * n_t))
    return TupleLossBound(
        name=name, empirical=emp, complexity=2.0 * rad, confidence=conf,
        total=emp + 2.0 * rad + conf, rademacher=rad, lipschitz=lip, loss_range=b, Lambda=lam,
        Lambda_hat=lam_hat, r=r, feature_dim=k, sum_sq_norms=s, n_tuples=n_t,
        tuple_size=tuple_size, inputs_per_tuple=inputs_per_tuple, tau=tau, delta=delta,
        delta_per_point=d_pt, grid_size=int(grid.size), form=form, loss=loss)


def distillation_bound(emp_loss: float, n_tuples: int, tuple_size: int, tau: float,
                       lambda_b: float, r_b: float, feature_dim: int, delta: float = 0.05, *,
                       loss: str = "cmc", form: str = "data_free",
                       sum_sq_norms: Optional[float] = None,
                       lambda_grid: Sequence[float] = LAMBDA_GRID) -> TupleLossBound:
    r"""B4: distillation convergence in the number of pairs m (Rademacher over i.i.d. tuples).

    Student :math:`\phi_B(x) = W\,\mathrm{clip}(x)`, :math:`W \in \mathbb R^{k\times d}`,
    inputs clipped to radius :math:`r_B`, unnormalised student features in the loss, teacher
    features of norm :math:`\le 1`, the m pairs split into :math:`n_t = \lfloor m/N\rfloor`
    disjoint tuples (:func:`tuple_split`). With :math:`\Lambda` the smallest grid value
    :math:`\ge \|W\|_F`, :math:`\delta' = \delta/|\text{grid}|`, Lipschitz constant
    :math:`L` (:func:`distillation_tuple_lipschitz`), range
    :math:`b = \ln(1 + (N-1)e^{2\Lambda r_B/\tau})` and
    :math:`\mathrm{Rad} \le \sqrt2\, L\, \Lambda\sqrt{kS}/n_t` (Maurer's vector contraction,
    linear class), with probability :math:`\ge 1-\delta`:

    .. math::

      \text{data-free } (S = n_t N r_B^2):\quad L(W) \le \hat L(W)
          + \frac{4\sqrt2\,\Lambda r_B\sqrt k}{\tau\sqrt{n_t}}
          + b\sqrt{\frac{\ln(1/\delta')}{2n_t}}\quad(\text{CMC, CMD}),

      \text{sample}:\quad L(W) \le \hat L(W) + 2\,\mathrm{Rad}(S)
          + 3b\sqrt{\frac{\ln(2/\delta')}{2n_t}},

    S the sum of squared clipped input norms over all tuples. ``L(W)`` is the expected
    tuple-mean loss; ``emp_loss`` its mean over the :math:`n_t` tuples, in the same form.

    Args:
      emp_loss: empirical tuple-mean loss in [0, b].
      n_tuples: :math:`n_t \ge 1`.
      tuple_size: N >= 1 (pairs per tuple).
      tau: student temperature > 0 (:math:`\tau_B` for CMD).
      lambda_b: :math:`\|W\|_F` of the trained student, >= 0.
      r_b: input clip radius > 0.
      feature_dim: k >= 1, output coordinates of the student.
      delta: confidence parameter in (0, 1).
      loss: ``"cmc"`` (B->A), ``"cmd"``, or ``"cmc_symmetric"`` (O2, both directions).
      form: ``"data_free"`` or ``"sample"``.
      sum_sq_norms: S, required for ``"sample"``, at most :math:`n_t N r_B^2`.
      lambda_grid: norms fixed in advance (default :data:`LAMBDA_GRID`).

    Returns:
      :class:`TupleLossBound` with ``name = "B4"``.

    Example:
      >>> b = distillation_bound(1.0, 100, 8, 0.5, 3.0, 1.0, 16)
      >>> b.Lambda, round(b.complexity, 4)          # 4 sqrt2 * 4 * 1 * 4 / (0.5 * 10)
      (4.0, 18.1019)

    References:
      A. Maurer, A vector-contraction inequality for Rademacher complexities, ALT 2016,
      Corollary 1. Mohri et al. 2018, Theorem 3.3. docs/theory.md, B4.
    """
    N = _check_int("tuple_size", tuple_size, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    lam_hat = _check_real("lambda_b", lambda_b, lo=0.0)
    r = _check_real("r_b", r_b, lo=0.0, lo_open=True)
    k = _check_int("feature_dim", feature_dim, 1)
    loss = _choice("loss", loss, ("cmc", "cmd", "cmc_symmetric"))
    return _tuple_bound(
        "B4", loss, emp_loss, n_tuples, N, N, tau, lam_hat, r, k, delta, form, sum_sq_norms,
        lambda_grid,
        lipschitz_fn=lambda lam: distillation_tuple_lipschitz(N, tau, loss),
        range_fn=lambda lam: distillation_loss_range(N, tau, lam, r))


def ssl_bound(emp_loss: float, n_tuples: int, tuple_size: int, tau: float, lambda_a: float,
              r_a: float, feature_dim: int, delta: float = 0.05, *, form: str = "data_free",
              sum_sq_norms: Optional[float] = None,
              lambda_grid: Sequence[float] = LAMBDA_GRID) -> TupleLossBound:
    r"""B5: stage-1 (InfoNCE, O1) convergence in the number of source samples M.

    Encoder :math:`\phi_A(x) = W\,\mathrm{clip}(x)` on both views, inputs clipped to
    :math:`r_A`, unnormalised features, M samples split into :math:`n_t = \lfloor M/N\rfloor`
    tuples of N samples with two views each (2N inputs per tuple). With :math:`\Lambda` the
    smallest grid value :math:`\ge \|W\|_F`, :math:`R = \Lambda r_A`,
    :math:`L_N` = :func:`infonce_tuple_lipschitz` (N, tau, R),
    :math:`b = \ln(1 + (N-1)e^{2R^2/\tau})`,
    :math:`\mathrm{Rad} \le \sqrt2\,L_N\Lambda\sqrt{kS}/n_t` (S over the 2N inputs of every
    tuple, :math:`S \le 2N n_t r_A^2`), with probability :math:`\ge 1-\delta`:

    .. math::

      \text{data-free}:\quad L(W) \le \hat L(W) + \frac{4\,\ell_N\sqrt{N}\,\Lambda^2 r_A^2\sqrt k}
          {\tau\sqrt{n_t}} + b\sqrt{\frac{\ln(1/\delta')}{2n_t}},\qquad
          \ell_N = \sqrt{2/N} + c_N/\sqrt2,

      \text{sample}:\quad L(W) \le \hat L(W) + 2\,\mathrm{Rad}(S)
          + 3b\sqrt{\frac{\ln(2/\delta')}{2n_t}}.

    Args:
      emp_loss: empirical tuple-mean InfoNCE loss in [0, b].
      n_tuples: :math:`n_t \ge 1`.
      tuple_size: N >= 1.
      tau: temperature > 0.
      lambda_a: :math:`\|W\|_F` of the trained encoder, >= 0.
      r_a: input clip radius > 0.
      feature_dim: k >= 1.
      delta: confidence parameter in (0, 1).
      form: ``"data_free"`` or ``"sample"``.
      sum_sq_norms: S over both views, required for ``"sample"``.
      lambda_grid: norms fixed in advance (default :data:`LAMBDA_GRID`).

    Returns:
      :class:`TupleLossBound` with ``name = "B5"``.

    Example:
      >>> b = ssl_bound(1.0, 100, 2, 1.0, 1.0, 1.0, 4)
      >>> b.lipschitz, round(b.complexity, 4)       # 2; 2 sqrt2 * 2 * 1 * sqrt(4*400)/100
      (2.0, 2.2627)

    References:
      A. Maurer, ALT 2016, Corollary 1. Mohri et al. 2018, Theorem 3.3.
      docs/theory.md, B5.
    """
    N = _check_int("tuple_size", tuple_size, 1)
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    lam_hat = _check_real("lambda_a", lambda_a, lo=0.0)
    r = _check_real("r_a", r_a, lo=0.0, lo_open=True)
    k = _check_int("feature_dim", feature_dim, 1)
    return _tuple_bound(
        "B5", "infonce", emp_loss, n_tuples, N, 2 * N, tau, lam_hat, r, k, delta, form,
        sum_sq_norms, lambda_grid,
        lipschitz_fn=lambda lam: infonce_tuple_lipschitz(N, tau, lam * r),
        range_fn=lambda lam: infonce_loss_range(N, tau, lam * r))


# --------------------------------------------------------------------------------------
# B6: the end-to-end report
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """One line of the B6 table: a bound, its value, the measured quantity, and the check."""

    name: str            # "B2", "B3", "B1b", "B1a", "floor"
    statement: str       # the inequality checked
    kind: str            # "upper": measured <= value; "lower": measured >= value
    value: float         # the bound's value
    measured: float      # the measured quantity it bounds
    slack: float         # estimation slack allowed in ``holds``
    holds: bool          # measured within value up to the slack
    holds_strict: bool   # measured within value with the slack charged against it

    def as_dict(self) -> dict:
        """The row as a flat dict."""
        return dataclasses.asdict(self)


def _get(measured, key):
    """measured[key] as a float; None when absent, None or NaN (not applicable)."""
    if isinstance(measured, Mapping):
        value = measured.get(key)
    else:
        value = getattr(measured, key, None)
    if value is None or math.isnan(float(value)):
        return None
    return float(value)


def end_to_end_report(measured, n_test: int, delta_test: float = 0.05, *,
                      n_test_source: Optional[int] = None,
                      bayes_slack: float = 0.0) -> list:
    r"""B6: every bound of the trained pipeline beside the measured target error, as table rows.

    ``measured`` (a mapping or an object with attributes) holds any of: ``err_B`` (target
    test error of the deterministic pipeline, required), ``err_B_stochastic`` (test error
    of the Gaussian-perturbed probe), ``err_A_head`` (source test error of the same head),
    ``bayes_A``, ``bayes_B``, ``tv_latent``, ``tv_features_upper``, ``b2_total``,
    ``b3_total`` (stochastic B3 total; compared with ``err_B`` through
    :math:`R \le 2L(Q)`, and with ``err_B_stochastic`` directly). A row appears when its
    inputs are present (a missing, None or NaN value means "not applicable"). Test
    estimates are checked as in docs/theory.md, C: with
    :math:`s = ` :func:`hoeffding_slack` (n_test, delta_test), an upper bound U holds when
    :math:`\hat R - s \le U` (strictly when :math:`\hat R + s \le U`). B1b compares two
    estimates: :math:`\hat R_B - s_B \le \hat R_A + s_A + \mathrm{TV}`. B1a compares exact
    (or Monte Carlo, with ``bayes_slack``) Bayes errors. ``floor``:
    :math:`\hat R_B + s \ge \epsilon_B^*`.

    Args:
      measured: the measured numbers (see above).
      n_test: target test-set size >= 1.
      delta_test: failure probability per check, in (0, 1).
      n_test_source: source test-set size for ``err_A_head`` (default ``n_test``).
      bayes_slack: total half-width allowed for Monte Carlo Bayes errors, >= 0.

    Returns:
      list of :class:`ReportRow`.

    Example:
      >>> rows = end_to_end_report({"err_B": 0.2, "b2_total": 0.9, "bayes_A": 0.1,
      ...                           "bayes_B": 0.15, "tv_latent": 0.1}, n_test=10_000)
      >>> [(r.name, r.holds) for r in rows]
      [('B2', True), ('B1a', True), ('floor', True)]
    """
    s = hoeffding_slack(n_test, delta_test)
    s_a = hoeffding_slack(n_test if n_test_source is None else n_test_source, delta_test)
    bayes_slack = _check_real("bayes_slack", bayes_slack, lo=0.0)
    err_b = _get(measured, "err_B")
    if err_b is None:
        raise ValueError("measured must provide err_B")
    err_b = _check_real("err_B", err_b, lo=0.0, hi=1.0)
    rows = []

    def upper(name, statement, value, est, slack_low, slack_high):
        rows.append(ReportRow(name, statement, "upper", value, est, slack_low,
                              bool(est - slack_low <= value), bool(est + slack_high <= value)))

    b2 = _get(measured, "b2_total")
    if b2 is not None:
        upper("B2", "R_B <= B2 total", b2, err_b, s, s)
    b3 = _get(measured, "b3_total")
    if b3 is not None:
        upper("B3", "R_B <= 2 L(Q) (B3, derandomised)", 2.0 * b3, err_b, s, s)
        err_q = _get(measured, "err_B_stochastic")
        if err_q is not None:
            upper("B3 stochastic", "L_B(Q) <= B3 total", b3, err_q, s, s)
    err_a = _get(measured, "err_A_head")
    tv_f = _get(measured, "tv_features_upper")
    if err_a is not None and tv_f is not None:
        # Both sides are estimates: R_B >= Rhat_B - s and R_A <= Rhat_A + s_a.
        upper("B1b", "R_B <= R_A(same head) + TV(learned features)", err_a + tv_f, err_b,
              s + s_a, s + s_a)
    bayes_a, bayes_b = _get(measured, "bayes_A"), _get(measured, "bayes_B")
    tv_lat = _get(measured, "tv_latent")
    if bayes_a is not None and bayes_b is not None and tv_lat is not None:
        value = bayes_a + tv_lat
        rows.append(ReportRow("B1a", "eps*_B <= eps*_A + TV_latent", "upper", value, bayes_b,
                              bayes_slack, bool(bayes_b - bayes_slack <= value + 1e-12),
                              bool(bayes_b + bayes_slack <= value + 1e-12)))
    if bayes_b is not None:
        rows.append(ReportRow("floor", "R_B >= eps*_B", "lower", bayes_b, err_b, s + bayes_slack,
                              bool(err_b + s + bayes_slack >= bayes_b),
                              bool(err_b - s - bayes_slack >= bayes_b)))
    return rows


# --------------------------------------------------------------------------------------
# B4n: stage 2 with normalised student features (per-pair PAC-Bayes-kl)
# --------------------------------------------------------------------------------------

#: B4n prior scales kappa: sigma_p = kappa ||W_prior||_F / sqrt(D); 2^(j/2), j = -10..-1.
KAPPA_GRID: tuple = tuple(2.0 ** (j / 2) for j in range(-10, 0))
#: B4n cover radius epsilon of the unit sphere for the uniform bound on M(u).
COVER_EPS: float = 0.005


def _mean_exp(u, bank, tau):
    """(1/n_b) sum_j exp((u . z_j - 1) / tau) per row of u, in float64 blocks."""
    out = np.empty(u.shape[0])
    for s in range(0, u.shape[0], 1024):
        out[s:s + 1024] = np.exp((u[s:s + 1024] @ bank.T - 1.0) / tau).mean(axis=1)
    return out


def candidate_mgf_upper(u, bank, tau: float, delta: float, eps: float = COVER_EPS):
    r"""Upper bounds on :math:`M(u) = E_{z\sim\mu_A} e^{u\cdot z/\tau}`, valid for all unit u at once (B4n).

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
    empirical: float          # mean per-pair Jensen loss g of the stochastic student (MC)
    complexity: float         # KL(Q || P) / n
    confidence: float         # ln(2 sqrt(n) G / delta_pb) / n
    total: float              # bound on E_{W~Q} L(W), the stochastic student's population loss
    empirical_upper: float    # MC upper end (kl, over n * n_draws independent draws) times b
    empirical_exact_mgf: float  # the same mean with the bank's plain average in place of M+
    kl: float
    kappa: float              # chosen prior scale (grid value)
    sigma: float              # posterior = prior standard deviation per weight
    nu: float                 # relative noise: u = normalize(W x + nu ||x|| xi)
    centre_scale: float       # c: posterior mean c W (closest multiple of W to the prior mean)
    loss_range: float         # b = log(1 + (N - 1) e^{2/tau})
    n: int                    # pairs in the bound's sample
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


def normalized_distillation_bound(x, z, W, W_prior, bank, *, tau: float, tuple_size: int,
                                  seed, delta: float = 0.05, n_draws: int = 2,
                                  kappa_grid: Sequence[float] = KAPPA_GRID,
                                  eps: float = COVER_EPS) -> NormalizedDistillBound:
    r"""B4n: stage-2 CMC (B->A) population loss of a normalised linear student, per pair.

    Student :math:`u = \mathrm{normalize}(W\,\mathrm{clip}(x))`, teacher features of norm
    :math:`\le 1`, population loss :math:`L(W)` = the expected B->A tuple loss over tuples of
    N fresh pairs (:func:`~cmcd_theory.training.tuple_loss` with ``"cmc"``). The bound is on
    the *stochastic* student :math:`Q = N(cW, \sigma^2 I_D)`: with probability
    :math:`\ge 1-\delta` (docs/theory.md, B4n),

    .. math::

      E_{W'\sim Q} L(W') \le b\,\mathrm{kl}^{-1}_{up}\Big(\hat g^{up}/b,\
        \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),

    where ``x, z`` are the n pairs NOT used to fit the prior mean ``W_prior`` (a student fitted
    on a disjoint split of the pairs), :math:`P = N(W_{prior}, \sigma^2 I)` with
    :math:`\sigma = \kappa\|W_{prior}\|_F/\sqrt D`, :math:`\kappa` on a grid of G values,
    :math:`c = \langle W, W_{prior}\rangle/\|W\|^2`, :math:`\mathrm{KL} = \|cW -
    W_{prior}\|^2/(2\sigma^2)`; :math:`g(u, z) = \ln(1 + (N-1)M^+(u)e^{-u\cdot z/\tau})`
    (Jensen over the N - 1 candidates, :func:`candidate_mgf_upper` for :math:`M^+`), with
    values in :math:`[0, b]`, :math:`b = \ln(1 + (N-1)e^{2/\tau})`; :math:`\hat g^{up}` the kl
    upper end of its Monte Carlo mean over ``n_draws`` independent posterior draws per pair.
    The budget is split in three: :math:`\delta/3` for :math:`M^+`, for the Monte Carlo and
    for the PAC-Bayes union over the grid.

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
    x = np.asarray(x, np.float64)
    z = np.asarray(z, np.float64)
    W = np.asarray(W, np.float64)
    Wp = np.asarray(W_prior, np.float64)
    if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x (n, d) and z (n, k) must have the same n >= 1, got {x.shape}, {z.shape}")
    if W.shape != (z.shape[1], x.shape[1]) or Wp.shape != W.shape:
        raise ValueError(f"W and W_prior must have shape (k, d) = {(z.shape[1], x.shape[1])}, "
                         f"got {W.shape}, {Wp.shape}")
    if np.any(np.linalg.norm(z, axis=1) > 1.0 + 1e-6):
        raise ValueError("teacher features z must have norm <= 1")
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    N = _check_int("tuple_size", tuple_size, 2)
    delta = _check_delta("delta", delta)
    n_draws = _check_int("n_draws", n_draws, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    n, D = x.shape[0], W.size
    c = float(np.sum(W * Wp) / np.sum(W * W)) if np.any(W) else 0.0
    if not c > 0:
        raise ValueError("the prior mean must have a positive inner product with W "
                         f"(<W, W_prior> / ||W||^2 = {c!r})")
    d_mgf = d_mc = d_pb = delta / 3.0
    b = _log1p_nm1_exp(N, 2.0 / tau)
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n_draws, n, W.shape[0]))
    wx = x @ W.T
    xn = np.linalg.norm(x, axis=1)[:, None]
    p_norm = float(np.linalg.norm(Wp))
    conf = math.log(2.0 * math.sqrt(n) * kappas.size / d_pb) / n
    c_mc = math.log(kappas.size / d_mc) / (n * n_draws)
    bank = np.asarray(bank, np.float64)
    if bank.ndim != 2 or bank.shape[1] != z.shape[1] or bank.shape[0] < 1:
        raise ValueError(f"bank must have shape (n_b, {z.shape[1]}), got {bank.shape}")
    if np.any(np.linalg.norm(bank, axis=1) > 1.0 + 1e-6):
        raise ValueError("bank features must have norm <= 1")
    eps = _check_real("eps", eps, lo=0.0, hi=1.0, lo_open=True)
    c_mgf = (z.shape[1] * math.log1p(2.0 / eps) + math.log(1.0 / d_mgf)) / bank.shape[0]
    def evaluate(kappa, rows, bank_rows):
        sigma = kappa * p_norm / math.sqrt(D)
        nu = sigma / c
        kl = float(np.sum((c * W - Wp) ** 2)) / (2.0 * sigma * sigma)
        g, g0 = [], []
        for r in range(n_draws):
            v = wx[rows] + nu * xn[rows] * xi[r, rows]
            u = v / np.linalg.norm(v, axis=1, keepdims=True)
            a = np.sum(u * z[rows], axis=1) / tau
            fbar = _mean_exp(u, bank[bank_rows], tau)
            m_up = _mgf_upper(fbar, c_mgf, tau, eps)
            g.append(np.logaddexp(0.0, math.log(N - 1) + np.log(m_up) - a))
            g0.append(np.logaddexp(0.0, math.log(N - 1) + np.log(fbar) + 1.0 / tau - a))
        emp = float(np.mean(g))
        emp_up = b * float(kl_inverse_upper(min(emp / b, 1.0), c_mc))
        total = b * float(kl_inverse_upper(min(emp_up / b, 1.0), kl / n + conf))
        return total, emp, emp_up, float(np.mean(g0)), kl, sigma, nu

    # Every grid value is paid for in the confidence terms (union bound), so the values at
    # which the bound is evaluated may be chosen from the data: a cheap proxy (the first 1024
    # pairs and 4096 bank features) ranks them, and the full bound is evaluated at the best
    # proxy value and its grid neighbours; the smallest total is returned.
    sub, bsub = slice(0, min(n, 1024)), slice(0, min(bank.shape[0], 4096))
    proxy = [evaluate(kp, sub, bsub)[0] for kp in kappas]
    j = int(np.argmin(proxy))
    best = None
    for kappa in kappas[max(0, j - 1): j + 2]:
        total, emp, emp_up, emp0, kl, sigma, nu = evaluate(kappa, slice(None), slice(None))
        if best is None or total < best.total:
            best = NormalizedDistillBound(
                empirical=emp, complexity=kl / n, confidence=conf, total=total,
                empirical_upper=emp_up, empirical_exact_mgf=emp0, kl=kl,
                kappa=float(kappa), sigma=sigma, nu=nu, centre_scale=c, loss_range=b, n=n,
                n_bank=int(bank.shape[0]), n_draws=n_draws, tuple_size=N, tau=tau,
                D=D, delta=delta, delta_mgf=d_mgf, delta_mc=d_mc, delta_pac_bayes=d_pb,
                grid_size=int(kappas.size))
    return best


# --------------------------------------------------------------------------------------
# B5n: stage 1 with normalised features (per-sample PAC-Bayes-kl, fresh candidates)
# --------------------------------------------------------------------------------------

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
    empirical: float          # MC mean of the per-anchor loss with fresh candidates (stochastic encoder)
    complexity: float         # KL(Q || P) / n
    confidence: float         # ln(2 sqrt(n) G / delta_pb) / n
    total: float              # bound on E_{W~Q} L(W), the stochastic encoder's population O1 loss
    empirical_upper: float    # kl upper end of the MC mean (over n * n_draws independent draws)
    empirical_mean_encoder: float  # the same MC mean with the posterior mean c W (no noise)
    kl: float
    kappa: float              # chosen prior scale (grid value)
    sigma: float              # posterior = prior standard deviation per weight
    nu: float                 # sigma / c: the weight noise relative to the trained W
    centre_scale: float       # c: posterior mean c O W (O, c: the rotation and scale of W closest
                              # to the prior mean; E_Q L equals that of N(c W, sigma^2 I))
    loss_range: float         # b = log(1 + (N - 1) e^{2/tau})
    n: int                    # samples in the bound's sample S2
    n_draws: int              # posterior draws (each with N - 1 fresh candidates) per sample
    tuple_size: int
    tau: float
    D: int
    delta: float
    delta_mc: float
    delta_pac_bayes: float
    grid_size: int


def normalized_ssl_bound(x, x_pos, W, W_prior, sample_candidates, *, tau: float,
                         tuple_size: int, seed, delta: float = 0.05, n_draws: int = 1,
                         kappa_grid: Sequence[float] = KAPPA_GRID) -> NormalizedSSLBound:
    r"""B5n: stage-1 population InfoNCE (O1) loss of a normalised linear encoder, per sample.

    Encoder :math:`\phi_W(x) = \mathrm{normalize}(W\,\mathrm{clip}(x))` on both views;
    population loss :math:`L(W)` = the expected symmetric O1 loss of a tuple of N fresh
    samples (two views each). The bound is on the *stochastic* encoder
    :math:`Q = N(cW, \sigma^2 I_D)`, one weight draw per tuple: with probability
    :math:`\ge 1-\delta` (docs/theory.md, B5n),

    .. math::

      E_{W'\sim Q} L(W') \le b\,\mathrm{kl}^{-1}_{up}\Big(\hat h^{up}/b,\
        \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n\,G/\delta_{pb})}{n}\Big),\qquad
      \hat h^{up} = b\,\mathrm{kl}^{-1}_{up}\Big(\frac{\bar Y}{b}, \frac{\ln(G/\delta_{mc})}{n\,n_w}\Big),

    where ``x, x_pos`` are the two views of the n samples NOT used to fit the prior mean
    ``W_prior``, :math:`P = N(W_{prior}, \sigma^2 I)`, :math:`\sigma = \kappa\|W_{prior}\|_F
    /\sqrt D` on a grid of G values, :math:`c = \langle W, W_{prior}\rangle/\|W\|^2`, and
    :math:`\bar Y` the mean over the n samples and ``n_draws`` draws each of
    :math:`Y = \ln(1 + \sum_{j<N} e^{(u\cdot v_j - u\cdot v)/\tau})`, with an independent weight
    :math:`W'\sim Q` per draw, :math:`u, v` the features of the sample's two views and
    :math:`v_j` those of N - 1 fresh candidate inputs, all under :math:`W'`. Values lie in
    :math:`[0, b]`, :math:`b = \ln(1 + (N-1)e^{2/\tau})`. :math:`\delta` is split in two
    equal parts: the Monte Carlo step and the PAC-Bayes union over the grid.

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
    x = np.asarray(x, np.float64)
    xp = np.asarray(x_pos, np.float64)
    W = np.asarray(W, np.float64)
    Wp = np.asarray(W_prior, np.float64)
    if x.ndim != 2 or xp.shape != x.shape or x.shape[0] < 1:
        raise ValueError(f"x and x_pos must have the same shape (n, d), n >= 1, got {x.shape}, "
                         f"{xp.shape}")
    if W.ndim != 2 or W.shape[1] != x.shape[1] or Wp.shape != W.shape:
        raise ValueError(f"W and W_prior must have shape (k, {x.shape[1]}), got {W.shape}, {Wp.shape}")
    if not callable(sample_candidates):
        raise ValueError("sample_candidates must be a callable (block, count) -> (count, d)")
    tau = _check_real("tau", tau, lo=0.0, lo_open=True)
    N = _check_int("tuple_size", tuple_size, 2)
    delta = _check_delta("delta", delta)
    n_draws = _check_int("n_draws", n_draws, 1)
    kappas = _check_grid("kappa_grid", kappa_grid)
    n, d = x.shape
    D = W.size
    if not np.any(W):
        raise ValueError("W must not be zero")
    # O1 with normalised features is invariant under W -> c O W (c > 0, O orthogonal): centre
    # the posterior at the rotation and scale of W closest to the prior mean (Procrustes)
    O = _procrustes(W, Wp)
    W = O @ W
    c = float(np.sum(W * Wp) / np.sum(W * W))
    if not c > 0:
        raise ValueError("the prior mean must have a positive inner product with O W "
                         f"(<O W, W_prior> / ||W||^2 = {c!r})")
    d_mc = d_pb = delta / 2.0
    b = _log1p_nm1_exp(N, 2.0 / tau)
    G = kappas.size
    sigmas = kappas * float(np.linalg.norm(Wp)) / math.sqrt(D)
    total_draws = n * n_draws
    rng = np.random.default_rng(seed)
    sums = np.zeros(G)
    sum0 = 0.0
    cW = c * W

    def per_anchor(F):
        F = F / np.sqrt(np.maximum(np.einsum("bnk,bnk->bn", F, F), 1e-300))[..., None]
        u, v, cand = F[:, 0], F[:, 1], F[:, 2:]
        pos = np.einsum("bk,bk->b", u, v) / tau
        neg = np.einsum("bk,bjk->bj", u, cand) / tau - pos[:, None]
        top = np.maximum(neg.max(axis=1), 0.0)  # log(1 + sum exp(neg)) by log-sum-exp
        return top + np.log(np.exp(-top) + np.exp(neg - top[:, None]).sum(axis=1))

    c_mc = math.log(G / d_mc) / total_draws
    conf = math.log(2.0 * math.sqrt(n) * G / d_pb) / n

    def totals(g, emp_g):
        kl = float(np.sum((cW - Wp) ** 2)) / (2.0 * sigmas[g] ** 2)
        emp_up = b * float(kl_inverse_upper(min(emp_g / b, 1.0), c_mc))
        return b * float(kl_inverse_upper(min(emp_up / b, 1.0), kl / n + conf)), emp_up, kl

    # Every grid value is paid for (union bound over the G values in both steps), so which
    # values are evaluated may depend on the data and the draws: all G on the first
    # _B5N_PROXY draws, then only the best of them and its grid neighbours on the rest.
    active = list(range(G))
    counts = np.zeros(G, dtype=np.int64)
    for blk, start in enumerate(range(0, total_draws, _B5N_BLOCK)):
        if start >= _B5N_PROXY and len(active) == G:
            j = int(np.argmin([totals(g, sums[g] / counts[g])[0] for g in range(G)]))
            active = list(range(max(0, j - 1), min(G, j + 2)))
        idx = np.arange(start, min(start + _B5N_BLOCK, total_draws)) % n  # draw t -> sample t mod n
        B = idx.size
        cand = np.asarray(sample_candidates(blk, B * (N - 1)), np.float64)
        if cand.shape != (B * (N - 1), d):
            raise ValueError(f"sample_candidates must return shape ({B * (N - 1)}, {d}), "
                             f"got {cand.shape}")
        X = np.concatenate([x[idx, None], xp[idx, None], cand.reshape(B, N - 1, d)], axis=1)
        mean_part = X @ cW.T                                               # (B, N + 1, k)
        noise_part = X @ rng.standard_normal((B,) + W.shape).transpose(0, 2, 1)
        sum0 += float(per_anchor(mean_part).sum())
        for g in active:
            sums[g] += float(per_anchor(mean_part + sigmas[g] * noise_part).sum())
            counts[g] += B
    emp = sums / np.maximum(counts, 1)
    best = None
    for g in active:
        total, emp_up, kl = totals(g, emp[g])
        if best is None or total < best.total:
            best = NormalizedSSLBound(
                empirical=float(emp[g]), complexity=kl / n, confidence=conf, total=total,
                empirical_upper=emp_up, empirical_mean_encoder=sum0 / total_draws, kl=kl,
                kappa=float(kappas[g]), sigma=float(sigmas[g]), nu=float(sigmas[g]) / c,
                centre_scale=c, loss_range=b, n=n, n_draws=n_draws, tuple_size=N, tau=tau, D=D,
                delta=delta, delta_mc=d_mc, delta_pac_bayes=d_pb, grid_size=int(G))
    return best
