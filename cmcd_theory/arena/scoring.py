"""Phase labels of the arena's cells and the scores of the predictors (docs/theory.md, P7).

* :func:`cell_gains`: per cell and CMCD route, the paired gain over the best target-only route
  (``gain = err_B(best target-only, by mean over seeds) - err_B(CMCD route)``, seed by seed),
  its 95 % Student-t interval and the phase ``+`` (interval above 0), ``-`` (below 0) or ``0``;
* :func:`predict_cells`: every predictor's call and margin on every cell (columns
  ``call_<name>``, ``margin_<name>``), from the cell's world, budget and evidence;
* :func:`score_predictors`: the leaderboard: per predictor and route (and pooled over routes),
  accuracy with its Wilson interval and balanced accuracy with a MOVER-Wilson interval on the
  significant cells, and the Spearman correlation of margin and gain on all cells.

A cell table (what :func:`cmcd_theory.arena.runner.run_arena` returns) holds per row the
world (``world_config``, JSON of the :class:`~cmcd_theory.worlds.WorldConfig` at the cell's
t), the budget (:class:`~cmcd_theory.arena.predictors.Budget` fields), the evidence
(:class:`~cmcd_theory.arena.predictors.Evidence` fields), ``method``, ``gain``, ``gain_lo``,
``gain_hi`` and ``phase``; any such table, saved or computed, can score new predictors.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cmcd_theory.arena.predictors import Budget, Evidence, Prediction, Predictor
from cmcd_theory.arena.prior import world_config
from cmcd_theory.bounds import student_t_interval

#: z of the two-sided 95 % normal interval (Wilson)
Z95 = float(stats.norm.ppf(0.975))


# ---- phases --------------------------------------------------------------------------------


def paired_interval(diffs, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student-t interval ``mean +- t_{(1+level)/2, S-1} s / sqrt(S)``
    of S paired differences (finite values only); ``lo = hi = NaN`` with fewer than 2.

    >>> [round(x, 4) for x in paired_interval([0.1, 0.2, 0.3])]
    [0.2, -0.0484, 0.4484]
    """
    mean, half = student_t_interval(diffs, level)
    return mean, mean - half, mean + half


def phase_of(lo: float, hi: float) -> str:
    """``"+"`` if the interval lies above 0, ``"-"`` if below, else ``"0"`` (NaN: ``"0"``)."""
    if lo > 0:
        return "+"
    if hi < 0:
        return "-"
    return "0"


def cell_gains(
    rows: pd.DataFrame,
    *,
    cmcd: Sequence[str],
    target_only: Sequence[str],
    keys: Sequence[str] = ("draw", "t", "n"),
) -> pd.DataFrame:
    """Per cell (group of ``keys``) and CMCD route of ``cmcd``: the paired gain over the best
    target-only route.

    ``rows`` has one row per (cell, method, seed) with ``err_B``. The best target-only route of
    a cell is the one of ``target_only`` with the lowest mean ``err_B`` over the cell's seeds;
    per seed, ``gain = err_B(best) - err_B(route)`` (seeds where either is missing are
    dropped), and :func:`paired_interval` and :func:`phase_of` give ``gain_lo``, ``gain_hi``
    and ``phase``. Returns one row per (cell, route) with the keys, ``method``,
    ``best_target_only``, ``seed_count``, ``gain``, ``gain_lo``, ``gain_hi``, ``phase``,
    ``err_route`` and ``err_target_only`` (means over seeds).
    """
    keys = list(keys)
    out = []
    for key, g in rows.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        piv = g.pivot_table(index="seed", columns="method", values="err_B")
        others = [m for m in target_only if m in piv]
        if not others:
            raise ValueError(
                f"cell {dict(zip(keys, key))} has none of the target-only routes "
                f"{tuple(target_only)}"
            )
        best = min(others, key=lambda m: piv[m].mean())
        for me in [m for m in cmcd if m in piv]:
            diffs = (piv[best] - piv[me]).dropna()
            mean, lo, hi = paired_interval(diffs)
            out.append(
                {
                    **dict(zip(keys, key)),
                    "method": me,
                    "best_target_only": best,
                    "seed_count": int(diffs.size),
                    "gain": mean,
                    "gain_lo": lo,
                    "gain_hi": hi,
                    "phase": phase_of(lo, hi),
                    "err_route": float(piv[me].mean()),
                    "err_target_only": float(piv[best].mean()),
                }
            )
    return pd.DataFrame(out)


# ---- predictions ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _world(text: str):
    return world_config(json.loads(text))


def cell_inputs(row) -> tuple:
    """``(world, budget, evidence)`` of one row of a cell table (a mapping)."""
    budget = Budget(**{f: int(row[f]) for f in Budget._fields})
    evidence = Evidence(**{f: float(row[f]) for f in Evidence().as_dict() if f in row})
    return _world(row["world_config"]), budget, evidence


def predict_cells(predictors: Sequence[Predictor], cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with ``call_<name>`` (bool) and ``margin_<name>`` (float, NaN when the
    predictor gives none) for every predictor; earlier columns of the same name are replaced.
    """
    _check_names(predictors)
    records = cells.to_dict("records")
    inputs = [cell_inputs(r) for r in records]
    out = cells.copy()
    for p in predictors:
        calls: list[Prediction] = [p(*x) for x in inputs]
        out[f"call_{p.name}"] = [c.pays for c in calls]
        out[f"margin_{p.name}"] = [math.nan if c.margin is None else c.margin for c in calls]
    return out


def _check_names(predictors) -> None:
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise ValueError(f"predictor names must be distinct, got {names}")
    for p in predictors:
        if not isinstance(p, Predictor):
            raise ValueError(f"predictors must be Predictor objects, got {type(p).__name__}")


# ---- scores --------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (E. B. Wilson, JASA 22, 1927);
    ``(NaN, NaN)`` for ``n = 0``.

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # p inside, in floats


def balanced_accuracy(calls, truth) -> tuple[float, float, float]:
    """``(value, lo, hi)``: the mean of the recalls on the positive and on the negative cells,
    ``(TPR + TNR) / 2``, with the MOVER-Wilson interval for a sum of independent proportions
    (G. Y. Zou, A. Donner, Stat. Med. 27, 2008; R. G. Newcombe, Stat. Med. 17, 1998):
    ``value -+ sqrt((r_i - l_i)^2 + ...) / 2`` from each recall's Wilson interval ``(l_i, u_i)``.
    NaN when either class is empty. A constant call has recalls 1 and 0, hence exactly 0.5.

    >>> balanced_accuracy([True, True, True], [True, False, False])[0]
    0.5
    """
    calls, truth = np.asarray(calls, bool), np.asarray(truth, bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan, math.nan
    k_pos, k_neg = int((calls & truth).sum()), int((~calls & ~truth).sum())
    r = (k_pos / n_pos, k_neg / n_neg)
    ci = (wilson_interval(k_pos, n_pos), wilson_interval(k_neg, n_neg))
    value = (r[0] + r[1]) / 2
    lo = value - math.hypot(r[0] - ci[0][0], r[1] - ci[1][0]) / 2
    hi = value + math.hypot(ci[0][1] - r[0], ci[1][1] - r[1]) / 2
    return value, max(0.0, lo), min(1.0, hi)


def spearman(x, y) -> float:
    """Spearman rank correlation over the pairs where both are finite (NaN with fewer than 3
    or a constant side)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def score_one(cells: pd.DataFrame, name: str) -> dict:
    """The scores of predictor ``name`` (columns ``call_<name>``, ``margin_<name>``) on the rows
    of ``cells``: on the significant ones (phase ``+`` or ``-``) ``cells``, ``correct``,
    ``accuracy`` (Wilson ``accuracy_lo``, ``accuracy_hi``), ``balanced_accuracy`` (MOVER-Wilson
    ``balanced_lo``, ``balanced_hi``), ``pays_cells`` and ``loses_cells``; on all of them
    ``spearman`` of margin and gain."""
    sig = cells[cells["phase"].isin(["+", "-"])]
    truth = (sig["phase"] == "+").to_numpy()
    calls = sig[f"call_{name}"].astype(bool).to_numpy()
    n, k = len(sig), int((calls == truth).sum())
    acc_lo, acc_hi = wilson_interval(k, n)
    ba, ba_lo, ba_hi = balanced_accuracy(calls, truth)
    return {
        "cells": n,
        "correct": k,
        "accuracy": k / n if n else math.nan,
        "accuracy_lo": acc_lo,
        "accuracy_hi": acc_hi,
        "balanced_accuracy": ba,
        "balanced_lo": ba_lo,
        "balanced_hi": ba_hi,
        "pays_cells": int(truth.sum()),
        "loses_cells": int((~truth).sum()),
        "spearman": spearman(cells[f"margin_{name}"], cells["gain"]),
    }


def score_predictors(
    predictors: Sequence[Predictor], cells: pd.DataFrame, *, pooled: bool = True
) -> pd.DataFrame:
    """The leaderboard: one row per (predictor, route) with :func:`score_one`'s columns, and
    with ``pooled`` one more per predictor over every route (``method = "all"``).

    The predictors are called afresh on every cell (:func:`predict_cells`), so a cell table
    saved by one run scores predictors written after it. Intervals treat the cells as
    independent trials (cells of one world share its draw, and routes of one cell share their
    data, so the intervals are optimistic where cells are correlated).
    """
    pred = predict_cells(predictors, cells)
    groups = [(m, pred[pred["method"] == m]) for m in pd.unique(pred["method"])]
    if pooled:
        groups.append(("all", pred))
    rows = [
        {"predictor": p.name, "method": m, **score_one(g, p.name)}
        for p in predictors
        for m, g in groups
    ]
    return pd.DataFrame(rows)
