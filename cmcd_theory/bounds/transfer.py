r"""B1: modality-gap transfer (docs/theory.md, B1).

For any measurable head h and any loss with values in [0, 1],

.. math:: R_B(h) \le R_A(h) + \mathrm{TV}(P^A, P^B),

a population identity with no sampling term of its own; the TV is computed in
``cmcd_theory/learn/divergences.py``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cmcd_theory.bounds._checks import _check_real, _Terms


@dataclasses.dataclass(frozen=True)
class TransferBound(_Terms):
    """B1: ``total = empirical + complexity`` with ``empirical = R_A``, ``complexity = TV``."""

    label: ClassVar[str] = "B1"
    empirical: float  # risk of the head on the source features, R_A(h o phi_A)
    complexity: float  # upper bound on TV(P^A, P^B)
    confidence: float  # 0: B1 is a population identity, no sampling term of its own
    total: float  # R_A + TV (unclipped)


def transfer_bound(risk_source: float, tv_upper: float) -> TransferBound:
    r"""B1: :math:`R_B(h) \le R_A(h) + \mathrm{TV}(P^A, P^B)` for any [0,1]-valued loss.

    For any measurable head ``h`` and loss with values in [0, 1],
    :math:`|E_{P^B} l(h(z), y) - E_{P^A} l(h(z), y)| \le \mathrm{TV}(P^A, P^B)`.
    With ``risk_source`` a population value and ``tv_upper`` a valid upper bound on the TV,
    the total is a valid bound on :math:`R_B`. If ``risk_source`` is a test estimate, pass its
    upper confidence bound (:func:`risk_upper`) instead, or check with both slacks as
    :func:`end_to_end_report` does. The TV itself is computed in
    ``cmcd_theory/learn/divergences.py``.

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
