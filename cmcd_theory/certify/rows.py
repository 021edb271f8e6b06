"""Rows of a certificate and the transfer bound's rows (B1).

:func:`_row` builds one row with the fixed keys of
:data:`~cmcd_theory.certify.certificate.ROW_KEYS`; :func:`_bound_row` builds it from a computed
bound object of :mod:`cmcd_theory.bounds`; :func:`_slack` is the Hoeffding slack of a held-out
measurement (docs/theory.md, C): an upper bound ``holds`` when ``measured - slack <= value``.

:func:`transfer_rows` gives B1's rows: ``B1a`` (eps*_B <= eps*_A + TV_latent) and ``floor``
(R_B >= eps*_B) from a synthetic world's exact ground truth, ``B1b`` (R_B <= R_A(same head) +
TV(learned features)) and ``TV_lower`` (a certified lower bound on the learned features' TV).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cmcd_theory import bounds

NAN = float("nan")
_RISK = "R_B: target 0-1 risk of the probe"


def _row(
    bound: str,
    form: str,
    bounds_what: str,
    statement: str,
    *,
    kind: str = "upper",
    measured=NAN,
    value=NAN,
    delta=NAN,
    slack=NAN,
    n=NAN,
    K=NAN,
    terms: dict | None = None,
    reason: str = "",
    vacuous=None,
    empirical=NAN,
    complexity=NAN,
    confidence=NAN,
    tol: float = 0.0,
) -> dict:
    """One row with the fixed keys; ``reason`` non-empty means not applicable."""
    applicable = not reason
    measured = NAN if measured is None else float(measured)
    holds = holds_strict = None
    if applicable and math.isfinite(measured) and math.isfinite(float(value)):
        if kind == "upper":
            holds, holds_strict = measured - slack <= value + tol, measured + slack <= value + tol
        else:
            holds, holds_strict = measured + slack >= value, measured - slack >= value
        holds, holds_strict = bool(holds), bool(holds_strict)
    row = {
        "bound": bound,
        "form": form,
        "bounds": bounds_what,
        "statement": statement,
        "kind": kind,
        "measured": measured,
        "value": float(value),
        "empirical": float(empirical),
        "complexity": float(complexity),
        "confidence": float(confidence),
        "delta": float(delta),
        "slack": float(slack),
        "applicable": applicable,
        "reason": reason,
        "vacuous": None if vacuous is None or not applicable else bool(vacuous),
        "holds": holds,
        "holds_strict": holds_strict,
        "n": n,
        "K": K,
    }
    for k, v in (terms or {}).items():
        if k not in row and k not in ("name", "total", "label"):
            row[k] = v
    return row


def _bound_row(
    b,
    bound: str,
    form: str,
    bounds_what: str,
    statement: str,
    value: float,
    measured,
    slack,
    *,
    n,
    K,
    delta,
) -> dict:
    """Row of a computed bound object (``bounds.MarginBound``, ``PacBayesBound``, ...)."""
    d = b.as_dict()
    if "delta" in d and not math.isclose(d["delta"], delta, rel_tol=1e-12):
        raise ValueError(
            f"{bound}: the bound was computed at delta = {d['delta']!r}, reported as {delta!r}"
        )
    # vacuous: no better than the trivial bound (1 for a 0-1 risk, b for a loss in [0, b])
    vacuous = value >= d.get("loss_range", 1.0)
    return _row(
        bound,
        form,
        bounds_what,
        statement,
        measured=measured,
        value=value,
        delta=delta,
        slack=slack,
        n=n,
        K=K,
        terms=d,
        vacuous=vacuous,
        empirical=d["empirical"],
        complexity=d["complexity"],
        confidence=d["confidence"],
    )


def _slack(n_test, delta_test) -> float:
    """Hoeffding slack of an error measured on ``n_test`` held-out samples (NaN: none)."""
    return NAN if n_test is None else bounds.hoeffding_slack(n_test, delta_test)


# ---- B1: transfer ------------------------------------------------------------------------------


def transfer_rows(
    *,
    err_B=None,
    n_test=None,
    err_A_head=None,
    n_test_source=None,
    tv_features_upper=None,
    tv_features_estimate=None,
    tv_lower=None,
    ground_truth: Mapping | None = None,
    delta: float,
    delta_test: float,
    n=NAN,
    K=NAN,
    reason_b1b: str = "",
) -> tuple:
    """B1 rows: ``B1a`` and ``floor`` (exact ground truth), ``B1b`` (learned features) and
    ``TV_lower`` (certified lower bound on the learned features' TV). Returns (rows, wide):
    the rows ``B1b``, ``TV_lower``, ``B1a``, ``floor`` and the columns ``tv_features`` (the
    estimate), ``tv_features_upper``, ``tv_features_lower`` (max(0, the lower bound)).

    Args:
      err_B, n_test: measured target error of the probe and its test-set size.
      err_A_head, n_test_source: the same head's source error and its test-set size.
      tv_features_upper: a certified upper bound on TV(learned features) at level ``delta``.
      tv_features_estimate: a point estimate of it (reported, never asserted).
      tv_lower: the dict of :func:`~cmcd_theory.learn.divergences.tv_classifier_lower_bound`.
      ground_truth: ``tv_latent``, ``bayes_A``, ``bayes_B`` and optional ``bayes_slack``
        (known only for a synthetic world).
      reason_b1b: why B1b does not apply, overriding the default reason.
    """
    s, s_a = _slack(n_test, delta_test), _slack(n_test_source or n_test, delta_test)
    wide = {
        "tv_features": NAN if tv_features_estimate is None else float(tv_features_estimate),
        "tv_features_upper": NAN if tv_features_upper is None else float(tv_features_upper),
        "tv_features_lower": NAN if tv_lower is None else max(0.0, float(tv_lower["lower"])),
    }
    rows = [
        _b1b_row(
            err_B,
            err_A_head,
            tv_features_upper,
            slack=s + s_a,
            delta=delta,
            n=n,
            K=K,
            reason=reason_b1b,
        ),
        _tv_lower_row(tv_lower, tv_features_estimate, n=n, K=K),
    ]
    rows += _ground_truth_rows(ground_truth, err_B, s, n=n, K=K)
    return rows, wide


def _b1b_row(err_B, err_A_head, tv_features_upper, *, slack, delta, n, K, reason: str) -> dict:
    """``B1b``: R_B <= R_A(same head) + TV(learned features), against the measured R_B.
    Both sides are test estimates, so ``slack`` is the sum of the two test slacks."""
    what_b1b = _RISK + " (modality-gap transfer)"
    st_b1b = "R_B <= R_A(same head) + TV(learned features)"
    if not reason and tv_features_upper is None:
        reason = (
            "needs a certified upper bound on TV(learned source, target features); no finite "
            "sample certifies one without assumptions on the feature laws (see TV_lower)"
        )
    if not reason and (err_A_head is None or err_B is None):
        reason = "needs the head's measured source error (source_test_features) and target error"
    if reason:
        return _row("B1b", "", what_b1b, st_b1b, reason=reason, n=n, K=K)
    tb = bounds.transfer_bound(err_A_head, tv_features_upper)
    # both sides are test estimates: R_B >= Rhat_B - s and R_A <= Rhat_A + s_a
    return _row(
        "B1b",
        "",
        what_b1b,
        st_b1b,
        measured=err_B,
        value=tb.total,
        delta=delta,
        slack=slack,
        n=n,
        K=K,
        vacuous=tb.vacuous,
        empirical=tb.empirical,
        complexity=tb.complexity,
        confidence=tb.confidence,
    )


def _tv_lower_row(tv_lower, tv_features_estimate, *, n, K) -> dict:
    """``TV_lower``: TV(learned features) >= 2 acc - 1 - 2 sqrt(log(1/delta) / (2 n_test)), the
    held-out two-sample classifier's certified lower bound (a lower bound: ``kind="lower"``).
    A TV is >= 0, so a lower bound below 0 says nothing more than 0: ``value`` is
    ``max(0, lower)``, and ``value_raw`` the lower bound as computed."""
    what_tv = "TV_features: TV(learned source, target feature laws), from below"
    st_tv = "TV >= 2 acc - 1 - 2 sqrt(log(1/delta) / (2 n_test))"
    if tv_lower is None:
        return _row(
            "TV_lower",
            "",
            what_tv,
            st_tv,
            kind="lower",
            n=n,
            K=K,
            reason="needs teacher and student features on held-out pairs",
        )
    return _row(
        "TV_lower",
        "",
        what_tv,
        st_tv,
        kind="lower",
        measured=NAN if tv_features_estimate is None else tv_features_estimate,
        value=max(0.0, float(tv_lower["lower"])),
        delta=tv_lower["delta"],
        slack=0.0,
        n=tv_lower["n_test"],
        K=K,
        vacuous=tv_lower["lower"] <= 0,
        empirical=tv_lower["estimate"],
        confidence=tv_lower["slack"],
        terms={"value_raw": float(tv_lower["lower"]), "acc": tv_lower["acc"]},
    )


def _ground_truth_rows(ground_truth: Mapping | None, err_B, s, *, n, K) -> list:
    """``B1a`` (eps*_B <= eps*_A + TV_latent, a population statement: no sample, no delta,
    only the Bayes errors' Monte Carlo slack) and ``floor`` (R_B >= eps*_B, against the
    measured R_B with test slack ``s``), from a synthetic world's exact ground truth."""
    gt = dict(ground_truth or {})
    known = all(
        gt.get(k) is not None and math.isfinite(gt[k]) for k in ("tv_latent", "bayes_A", "bayes_B")
    )
    no_gt = "needs the exact TV_latent and Bayes errors, known only for a synthetic world"
    b_slack = float(gt.get("bayes_slack", 0.0))
    rows = []
    if known:
        value = gt["bayes_A"] + gt["tv_latent"]
        # a population statement: no sample, no delta; only the Bayes errors' Monte Carlo slack
        rows.append(
            _row(
                "B1a",
                "",
                "eps*_B: Bayes error of the target",
                "eps*_B <= eps*_A + TV_latent",
                measured=gt["bayes_B"],
                value=value,
                delta=0.0,
                slack=b_slack,
                n=n,
                K=K,
                vacuous=value >= 1,
                empirical=gt["bayes_A"],
                complexity=gt["tv_latent"],
                confidence=0.0,
                tol=1e-12,
            )
        )
    else:
        rows.append(
            _row(
                "B1a",
                "",
                "eps*_B: Bayes error of the target",
                "eps*_B <= eps*_A + TV_latent",
                reason=no_gt,
                n=n,
                K=K,
            )
        )
    if known and err_B is not None:
        rows.append(
            _row(
                "floor",
                "",
                _RISK + " (from below)",
                "R_B >= eps*_B",
                kind="lower",
                measured=err_B,
                value=gt["bayes_B"],
                delta=0.0,
                slack=s + b_slack,
                n=n,
                K=K,
                vacuous=gt["bayes_B"] <= 0,
            )
        )
    else:
        rows.append(
            _row(
                "floor",
                "",
                _RISK + " (from below)",
                "R_B >= eps*_B",
                kind="lower",
                reason=no_gt if not known else "needs the measured target error",
                n=n,
                K=K,
            )
        )
    return rows
