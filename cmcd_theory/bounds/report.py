r"""B6: the end-to-end report, every bound of a trained pipeline beside what it bounds
(docs/theory.md, B6, with the test-set check convention C).

A bound U on a true risk R is checked against a test estimate :math:`\hat R` on
:math:`n_{test}` fresh samples through :math:`\hat R - s \le U` (strictly:
:math:`\hat R + s \le U`), :math:`s` = :func:`~cmcd_theory.bounds.kl.hoeffding_slack`; a
check fails with probability at most :math:`\delta_{test}` when :math:`R \le U` holds. The
rows: B2 and B3 (through :math:`R \le 2L(Q)`) against the target test error, B1b
(:math:`R_B \le R_A + \mathrm{TV}` between two estimates), B1a (exact Bayes errors) and the
Bayes floor :math:`R_B \ge \epsilon^*_B`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from cmcd_theory.bounds._checks import _check_real
from cmcd_theory.bounds.kl import hoeffding_slack


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """One line of the B6 table: a bound, its value, the measured quantity, and the check."""

    name: str  # "B2", "B3", "B1b", "B1a", "floor"
    statement: str  # the inequality checked
    kind: str  # "upper": measured <= value; "lower": measured >= value
    value: float  # the bound's value
    measured: float  # the measured quantity it bounds
    slack: float  # estimation slack allowed in ``holds``
    holds: bool  # measured within value up to the slack
    holds_strict: bool  # measured within value with the slack charged against it

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


def end_to_end_report(
    measured,
    n_test: int,
    delta_test: float = 0.05,
    *,
    n_test_source: int | None = None,
    bayes_slack: float = 0.0,
) -> list:
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
    return _probe_rows(measured, err_b, s, s_a) + _bayes_rows(measured, err_b, s, bayes_slack)


def _probe_rows(measured, err_b: float, s: float, s_a: float) -> list:
    """The B6 rows of the learned pipeline (B2, B3, B3 stochastic, B1b), each an upper bound
    checked against test estimates with slacks ``s`` (target) and ``s_a`` (source)."""
    rows = []

    def upper(name, statement, value, est, slack_low, slack_high):
        rows.append(
            ReportRow(
                name,
                statement,
                "upper",
                value,
                est,
                slack_low,
                bool(est - slack_low <= value),
                bool(est + slack_high <= value),
            )
        )

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
        upper(
            "B1b",
            "R_B <= R_A(same head) + TV(learned features)",
            err_a + tv_f,
            err_b,
            s + s_a,
            s + s_a,
        )
    return rows


def _bayes_rows(measured, err_b: float, s: float, bayes_slack: float) -> list:
    """The B6 rows of the exact ground truth: B1a between Bayes errors (slack ``bayes_slack``,
    1e-12 of rounding) and the Bayes floor ``R_B >= eps*_B`` against the target test error."""
    rows = []
    bayes_a, bayes_b = _get(measured, "bayes_A"), _get(measured, "bayes_B")
    tv_lat = _get(measured, "tv_latent")
    if bayes_a is not None and bayes_b is not None and tv_lat is not None:
        value = bayes_a + tv_lat
        rows.append(
            ReportRow(
                "B1a",
                "eps*_B <= eps*_A + TV_latent",
                "upper",
                value,
                bayes_b,
                bayes_slack,
                bool(bayes_b - bayes_slack <= value + 1e-12),
                bool(bayes_b + bayes_slack <= value + 1e-12),
            )
        )
    if bayes_b is not None:
        rows.append(
            ReportRow(
                "floor",
                "R_B >= eps*_B",
                "lower",
                bayes_b,
                err_b,
                s + bayes_slack,
                bool(err_b + s + bayes_slack >= bayes_b),
                bool(err_b - s - bayes_slack >= bayes_b),
            )
        )
    return rows
