r"""kl tools and test-set estimates (docs/theory.md, T4, T5 and the test-set check convention C).

* Binary relative entropy (T5) and its inverses, used by every PAC-Bayes-kl bound (B3, B3p,
  B4n, B5n):

  .. math::

    \mathrm{kl}(q\|p) = q\ln\frac qp + (1-q)\ln\frac{1-q}{1-p},\qquad
    \mathrm{kl}^{-1}_{\rm up}(q, c) = \sup\{p\in[q,1] : \mathrm{kl}(q\|p)\le c\},

  and :math:`\mathrm{kl}^{-1}_{\rm low}` the mirror image on :math:`[0, q]`. The inverses
  are computed by bisection and rounded outwards, so an upper bound stays an upper bound.
* Test-set estimates (T4, Hoeffding 1963): the mean :math:`\hat R` of n i.i.d. variables in
  [0, 1] satisfies :math:`R \le \hat R + s` and :math:`R \ge \hat R - s` each with probability
  :math:`\ge 1-\delta`, :math:`s = \sqrt{\ln(1/\delta)/(2n)}`; the exact binomial alternative
  is the Clopper-Pearson interval.
* Seed-to-seed intervals: the Student-t interval :math:`\bar x \pm t_{(1+\ell)/2, S-1}\,
  s/\sqrt S` of S independent runs (the 95 % intervals of every figure and of the arena's
  phases), valid for normally distributed run-level values.
* The check of a bound U against a test estimate (C): it holds when :math:`\hat R - s \le U`,
  strictly when :math:`\hat R + s \le U`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special  # (not scipy.stats: its import costs a command 0.4 s)

from cmcd_theory.bounds._checks import _check_delta, _check_int, _check_real


def _x_minus_log1p(x: np.ndarray, small: np.ndarray) -> np.ndarray:
    """x - log(1 + x) >= 0 for x >= -1, accurate also where it is ~ x^2 / 2 (small |x|):
    the entries of the mask ``small`` (``|x| < 1e-2``) by the series, the others as
    ``x - log1p(x)`` (x = -1 gives +inf; the caller's ``np.errstate`` ignores divide and
    invalid)."""
    out = x - np.log1p(x)
    if small.any():
        xs = x[small]
        # Series sum_{j >= 2} (-1)^j x^j / j (Horner); 10 terms leave a relative error < 1e-19.
        acc = np.zeros_like(xs)
        for j in range(11, 1, -1):
            acc = 1.0 / j - xs * acc
        out[small] = xs * xs * acc
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
    """:func:`kl_bernoulli` on float64 arrays of one shape, already checked to lie in [0, 1]."""
    return _KlAt(q)(p)


class _KlAt:
    """kl(q || p) as a function of p at a fixed checked ``q`` (a float64 array): what depends
    on q alone (which entries are 0, 1 or inside, ``1 - q``, ``ln q``, ``ln(1 - q)``) is
    computed once; each call evaluates :func:`kl_bernoulli`'s formula at ``p`` (checked, of
    q's shape). The bisection of :func:`_kl_inverse` calls it ~40 times per inversion with
    the same q. (Every array a log sees is contiguous, as a masked copy is.)"""

    def __init__(self, q: np.ndarray):
        self.shape = q.shape
        at0, at1 = q == 0.0, q == 1.0
        self.ends = q.ndim == 0 or bool(at0.any() or at1.any())
        self.at0, self.at1, self.mid = at0, at1, ~(at0 | at1)
        qm = q[self.mid] if self.ends else np.ascontiguousarray(q)
        self.qm, self.omq = qm, 1.0 - qm
        with np.errstate(divide="ignore"):
            self.log_q, self.log1m_q = np.log(qm), np.log1p(-qm)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.at(p)

    def at(self, p: np.ndarray) -> np.ndarray:
        """kl(q || p) under the caller's ``np.errstate`` (divide, invalid ignored)."""
        if not self.ends:
            return np.maximum(self._inside(np.ascontiguousarray(p)), 0.0)  # -0.0 -> 0.0
        kl = np.empty(self.shape)
        kl[self.at0] = -np.log1p(-p[self.at0])  # kl(0 || p) = -ln(1 - p)
        kl[self.at1] = -np.log(p[self.at1])  # kl(1 || p) = -ln p
        kl[self.mid] = self._inside(p[self.mid])
        return np.maximum(kl, 0.0)  # -0.0 -> 0.0

    def _inside(self, pm: np.ndarray) -> np.ndarray:
        """The entries with 0 < q < 1 (``pm`` their p): ``q g(h/q) + (1-q) g(-h/(1-q))``,
        ``h = p - q``, each term near x = 0 through g (no cancellation), elsewhere through
        differences of logs (exact where p or 1 - p is tiny)."""
        qm, omq = self.qm, self.omq
        h = pm - qm
        nh = -h
        x1, x2 = h / qm, nh / omq
        ax1, ax2 = np.abs(x1), np.abs(x2)
        # g is needed only where |x| < 1/2 (the where drops the other entries)
        near1, near2 = ax1 < 0.5, ax2 < 0.5
        t1 = np.where(
            near1, qm * _x_minus_log1p(x1, ax1 < 1e-2), h + qm * (self.log_q - np.log(pm))
        )
        t2 = np.where(
            near2, omq * _x_minus_log1p(x2, ax2 < 1e-2), nh + omq * (self.log1m_q - np.log1p(-pm))
        )
        return t1 + t2


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
    with np.errstate(divide="ignore", invalid="ignore"):
        outer = _bisect(_KlAt(q), q, c, tol, upper)
    # q at the far end (q = 1 for upper, q = 0 for lower) or c = inf: the end itself.
    end = 1.0 if upper else 0.0
    out = np.where((q == end) | np.isinf(c), end, outer)
    return float(out) if out.ndim == 0 else out


def _bisect(kl_at: _KlAt, q: np.ndarray, c: np.ndarray, tol: float, upper: bool) -> np.ndarray:
    """The bisection of :func:`_kl_inverse` on checked arrays of one shape (under its
    ``np.errstate``): the outer end of the final bracket of every entry."""
    # Invariant: kl(q || inner) <= c < kl(q || outer); the answer lies between them.
    inner = q.copy()
    outer = np.ones(q.shape) if upper else np.zeros(q.shape)
    for _ in range(200):  # the width halves each step: ~40 steps for tol = 1e-12
        # outer - inner (upper) or inner - outer (lower): |outer - inner|, never negative
        width = outer - inner if upper else inner - outer
        mid = 0.5 * (inner + outer)
        active = (width > tol) & (mid != inner) & (mid != outer)
        if not active.any():
            break
        to_outer = active & (kl_at.at(mid) > c)
        np.copyto(outer, mid, where=to_outer)
        np.copyto(inner, mid, where=active ^ to_outer)  # active and not over
    return outer


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


def _kl_steps(*steps) -> list:
    """Run the generators ``steps`` together and return their return values: each yields the
    arguments ``(q, c)`` of :func:`kl_inverse_upper` (arrays, or numbers) and is sent its
    value, of the broadcast shape of q and c. The inversions pending at once are computed
    by one bisection over all their entries, each entry alone, so every generator gets the
    numbers its own call would give, in fewer numpy calls (B3 and B3p of one probe:
    :func:`~cmcd_theory.bounds.pac_bayes.pac_bayes_bounds`)."""
    out: list = [None] * len(steps)
    pending: dict = {}

    def advance(i, value=None):
        try:
            pending[i] = steps[i].send(value)
        except StopIteration as done:
            pending.pop(i, None)
            out[i] = done.value

    for i in range(len(steps)):
        advance(i)
    while pending:
        pairs = {i: np.broadcast_arrays(*map(np.asarray, qc)) for i, qc in pending.items()}
        q = np.concatenate([qb.reshape(-1) for qb, _ in pairs.values()])
        c = np.concatenate([cb.reshape(-1) for _, cb in pairs.values()])
        p = kl_inverse_upper(q, c)
        at = 0
        for i, (qb, _) in pairs.items():
            value = p[at : at + qb.size].reshape(qb.shape)
            at += qb.size
            advance(i, float(value) if value.ndim == 0 else value)
    return out


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
    lo = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, delta / 2))  # Beta quantile
    hi = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - delta / 2))
    return lo, hi


class HoldoutCheck(NamedTuple):
    """Outcome of checking a bound against a test-set estimate (docs/theory.md, C)."""

    holds: bool  # err_hat - slack <= bound
    holds_strict: bool  # err_hat + slack <= bound
    slack: float  # hoeffding_slack(n_test, delta_test)


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


def student_t_interval(x, level: float = 0.95) -> tuple[float, float]:
    """``(mean, half)`` of the Student-t interval ``mean +- t_{(1+level)/2, S-1} s / sqrt(S)``
    of the finite values of ``x`` (S of them; ``s`` the sample standard deviation). The mean
    is NaN without values and ``half`` is NaN with fewer than 2.

    >>> [round(v, 4) for v in student_t_interval([0.1, 0.2, 0.3])]
    [0.2, 0.2484]
    """
    v = np.asarray(x, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan
    return mean, float(
        special.stdtrit(v.size - 1, 0.5 + level / 2) * v.std(ddof=1) / math.sqrt(v.size)
    )
