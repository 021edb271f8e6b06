r"""Input checks and result mixins shared by every bound family (B1-B6).

The scalar checks delegate to :mod:`cmcd_theory.validation`, so every bound rejects bad input
with the same messages as the rest of the toolkit. :func:`_check_grid` and
:func:`_smallest_covering` implement the bookkeeping of docs/theory.md, "Union bounds over
grids": a constant chosen after seeing data is taken from a grid :math:`\mathcal G` fixed in
advance, each grid point's bound is stated at level :math:`\delta/|\mathcal G|`, and a measured
value above the largest grid point is an error, never clipped.

:class:`_Terms` gives every result dataclass its flat ``as_dict()`` row and its ``vacuous``
flag (``total >= 1`` for a 0-1 risk); :class:`_NormalizedLossTerms` moves that threshold to
``log N`` for the normalised contrastive losses of B4n and B5n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cmcd_theory import validation as V

# Relative slack allowed when a measured norm is compared with the bound it must satisfy
# (float32 features normalised to 1 have norms 1 +- 1e-7); beyond it a ValueError is raised.
_NORM_RTOL = 1e-6


def _check_real(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite real in the given range, as float (:func:`cmcd_theory.validation.real`)."""
    return V.real(name, value, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)


def _check_delta(name: str, delta) -> float:
    """A failure probability in (0, 1), as float."""
    return V.probability(name, delta)


def _check_int(name: str, value, lo: int) -> int:
    """An integer >= ``lo``, as int."""
    return V.integer(name, value, lo=lo)


def _check_grid(name: str, grid) -> np.ndarray:
    """A union-bound grid as a sorted float64 array: non-empty, finite, positive, no repeats."""
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
    """One of the ``allowed`` strings."""
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
    if TYPE_CHECKING:  # supplied by the dataclass that mixes this in
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
        total: float

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

    if TYPE_CHECKING:  # a field of the dataclass that mixes this in
        tuple_size: int

    @property
    def vacuous(self) -> bool:
        """True when ``total >= log N``: no better than an encoder that ignores its input."""
        return bool(self.total >= math.log(self.tuple_size))
