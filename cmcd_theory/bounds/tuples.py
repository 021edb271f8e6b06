r"""B4 / B5: contrastive losses over i.i.d. tuples, Rademacher bounds (docs/theory.md, B4, B5).

A linear encoder :math:`W\,\mathrm{clip}(x)`, :math:`W\in\mathbb R^{k\times d}`, inputs clipped
to radius r, unnormalised features in the loss; the samples are split into
:math:`n_t = \lfloor m/N\rfloor` disjoint tuples of N (:func:`tuple_split`), which makes the
tuples i.i.d. With :math:`\Lambda` the smallest value of :data:`LAMBDA_GRID` covering
:math:`\|W\|_F`, :math:`\delta' = \delta/|\text{grid}|`, L the Lipschitz constant of the
tuple-mean loss in the stacked features, the loss in :math:`[0, b]`, and S the sum of squared
clipped input norms, with probability :math:`\ge 1-\delta` (T1 with T2, T3):

.. math::

  \mathrm{Rad} \le \sqrt2\, L\, \Lambda\sqrt{kS}/n_t,\qquad
  \text{data-free } (S \text{ at its maximum}):\ L(W) \le \hat L(W) + 2\,\mathrm{Rad}
      + b\sqrt{\frac{\ln(1/\delta')}{2n_t}},\qquad
  \text{sample}:\ L(W) \le \hat L(W) + 2\,\mathrm{Rad}(S) + 3b\sqrt{\frac{\ln(2/\delta')}{2n_t}}.

* B4 (:func:`distillation_bound`, stage 2 in the number of pairs m): N inputs per tuple,
  :math:`L = 2/(\tau\sqrt N)` (:func:`distillation_tuple_lipschitz`),
  :math:`b = \ln(1 + (N-1)e^{2\Lambda r_B/\tau})` (:func:`distillation_loss_range`).
* B5 (:func:`ssl_bound`, stage 1 InfoNCE in M): 2N inputs per tuple (two views),
  :math:`R = \Lambda r_A`, :math:`L_N` = :func:`infonce_tuple_lipschitz`,
  :math:`b = \ln(1 + (N-1)e^{2R^2/\tau})` (:func:`infonce_loss_range`).
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
    _check_int,
    _check_real,
    _choice,
    _smallest_covering,
    _Terms,
)

#: B4 / B5 Frobenius norms of the encoder weight: 2^j, j = -2..12 (15 values).
LAMBDA_GRID: tuple = tuple(2.0**j for j in range(-2, 13))


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
    name: str  # "B4" (distillation, in m) or "B5" (stage 1, in M)
    empirical: float  # empirical tuple-mean loss Lhat(W)
    complexity: float  # 2 * rademacher
    confidence: float  # b sqrt(log(1/d')/(2 n_t)) or 3 b sqrt(log(2/d')/(2 n_t))
    total: float  # bound on the population tuple loss L(W)
    rademacher: float  # sqrt2 * lipschitz * Lambda * sqrt(k S) / n_t
    lipschitz: float  # Lipschitz constant of the tuple mean in stacked features
    loss_range: float  # b: the loss lies in [0, b]
    Lambda: float  # grid value covering Lambda_hat
    Lambda_hat: float  # ||W||_F of the trained encoder
    r: float  # input clip radius
    feature_dim: int  # k, output coordinates of the encoder
    sum_sq_norms: float  # S used (its maximum n_t * inputs_per_tuple * r^2 if data-free)
    n_tuples: int
    tuple_size: int
    inputs_per_tuple: int  # N (B4) or 2N (B5)
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


def _tuple_constants(loss: str, N: int, tau: float, lam: float, r: float) -> tuple:
    """``(L, b)`` of the tuple-mean loss at the covering grid norm ``lam``: InfoNCE (B5,
    ``loss = "infonce"``) with encoder outputs of norm <= ``lam r``, else the distillation
    loss (B4) with teacher features of norm <= 1 (see the module docstring)."""
    if loss == "infonce":
        return infonce_tuple_lipschitz(N, tau, lam * r), infonce_loss_range(N, tau, lam * r)
    return distillation_tuple_lipschitz(N, tau, loss), distillation_loss_range(N, tau, lam, r)


def _tuple_bound(
    name,
    loss,
    emp_loss,
    n_tuples,
    tuple_size,
    tau,
    lam_hat,
    r,
    k,
    delta,
    form,
    sum_sq_norms,
    lambda_grid,
):
    """The bound of the module docstring for B4 and B5: the union over ``lambda_grid``, S (its
    data-free maximum or the measured ``sum_sq_norms``), the Rademacher and confidence terms;
    :func:`_tuple_constants` gives L and b at the covering grid norm, and a tuple holds
    ``tuple_size`` inputs (B4) or twice as many, two views of each sample (B5, InfoNCE)."""
    inputs_per_tuple = 2 * tuple_size if loss == "infonce" else tuple_size
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
                f" the inputs were not clipped to the ball of radius r"
            )
    else:
        if sum_sq_norms is not None:
            raise ValueError("sum_sq_norms is only used by form='sample'")
        s = s_max
    lip, b = _tuple_constants(loss, tuple_size, tau, lam, r)
    emp = _check_real("emp_loss", emp_loss, lo=0.0)
    if emp > b * (1 + _NORM_RTOL) + 1e-12:
        raise ValueError(
            f"emp_loss = {emp!r} exceeds the loss range b = {b!r}: the loss was not computed "
            f"in the form the bound covers (unnormalised W clip(x), teacher norms <= 1)"
        )
    rad = math.sqrt(2.0) * lip * lam * math.sqrt(k * s) / n_t
    if form == "data_free":
        conf = b * math.sqrt(math.log(1.0 / d_pt) / (2.0 * n_t))
    else:
        conf = 3.0 * b * math.sqrt(math.log(2.0 / d_pt) / (2.0 * n_t))
    return TupleLossBound(
        name=name,
        empirical=emp,
        complexity=2.0 * rad,
        confidence=conf,
        total=emp + 2.0 * rad + conf,
        rademacher=rad,
        lipschitz=lip,
        loss_range=b,
        Lambda=lam,
        Lambda_hat=lam_hat,
        r=r,
        feature_dim=k,
        sum_sq_norms=s,
        n_tuples=n_t,
        tuple_size=tuple_size,
        inputs_per_tuple=inputs_per_tuple,
        tau=tau,
        delta=delta,
        delta_per_point=d_pt,
        grid_size=int(grid.size),
        form=form,
        loss=loss,
    )


def distillation_bound(
    emp_loss: float,
    n_tuples: int,
    tuple_size: int,
    tau: float,
    lambda_b: float,
    r_b: float,
    feature_dim: int,
    delta: float = 0.05,
    *,
    loss: str = "cmc",
    form: str = "data_free",
    sum_sq_norms: float | None = None,
    lambda_grid: Sequence[float] = LAMBDA_GRID,
) -> TupleLossBound:
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
    lam_b = _check_real("lambda_b", lambda_b, lo=0.0)
    r = _check_real("r_b", r_b, lo=0.0, lo_open=True)
    k = _check_int("feature_dim", feature_dim, 1)
    loss = _choice("loss", loss, ("cmc", "cmd", "cmc_symmetric"))
    return _tuple_bound(
        "B4", loss, emp_loss, n_tuples, N, tau, lam_b, r, k, delta, form, sum_sq_norms, lambda_grid
    )


def ssl_bound(
    emp_loss: float,
    n_tuples: int,
    tuple_size: int,
    tau: float,
    lambda_a: float,
    r_a: float,
    feature_dim: int,
    delta: float = 0.05,
    *,
    form: str = "data_free",
    sum_sq_norms: float | None = None,
    lambda_grid: Sequence[float] = LAMBDA_GRID,
) -> TupleLossBound:
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
        "B5",
        "infonce",
        emp_loss,
        n_tuples,
        N,
        tau,
        lam_hat,
        r,
        k,
        delta,
        form,
        sum_sq_norms,
        lambda_grid,
    )
