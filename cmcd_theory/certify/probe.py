"""Rows of the bounds on the probe's target risk R_B: B2 (margin, Rademacher), B3 and B3p
(PAC-Bayes-kl with a zero-mean or a split-data prior) and the probe certificate (their
minimum at a split delta).

* :func:`probe_rows`: ``B2_sample`` and ``B2_data_free`` at ``delta / 2`` each, ``B3`` and
  ``B3p`` at ``delta / 2`` each (:func:`b3_forms`); ``b2_total`` and ``b3_total`` are the
  minima over each bound's forms (docs/theory.md, B2, B3, B3p).
* :func:`probe_certificate_rows`: one certified upper bound on R_B, the minimum of the four
  forms at the shares :data:`PROBE_SPLIT` of delta (docs/theory.md, B6).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cmcd_theory import bounds
from cmcd_theory.certify.certificate import B3_FORM_KEYS
from cmcd_theory.certify.rows import _RISK, NAN, _bound_row, _row, _slack
from cmcd_theory.learn.probe import fit_probe

#: B3 forms (``b3_form`` codes index this) and their statements.
_B3_FORMS = ("B3", "B3p")
_B3_STATEMENTS = {
    "B3": (
        "R_B <= 2 L(Q), L(Q) <= kl^-1(Lhat(Q), (KL(Q||P) + ln(2 sqrt n G_p / delta)) / n), "
        "P = N(0, s_p^2 I)"
    ),
    "B3p": (
        "R_B <= 2 L(Q), L(Q) <= kl^-1(Lhat_S1(Q), (KL(Q||P) + ln(2 sqrt n1 G / delta)) / n1), "
        "P = N(probe fitted on S0, s^2 I)"
    ),
}
#: Shares of delta of the three bounds behind the probe certificate (``probe_total``).
PROBE_SPLIT = {"B2_sample": 0.25, "B2_data_free": 0.25, "B3": 0.5}
#: ``probe_form`` codes: which bound attains ``probe_total``.
PROBE_FORMS = ("B2_sample", "B2_data_free", "B3")


def b3_forms(
    z,
    y,
    W,
    b,
    *,
    delta: float,
    seed: int,
    n_weight_samples: int,
    prior: Mapping | None = None,
    reason: str = "",
) -> dict:
    """The two forms of B3 at ``delta / 2`` each: ``{"B3": (bound or None, reason),
    "B3p": (...)}``. ``B3``: :func:`~cmcd_theory.bounds.pac_bayes_kl_bound` on all ``n``
    samples; ``B3p``: :func:`~cmcd_theory.bounds.pac_bayes_split_prior_bound` on the samples
    after the first ``prior["n_prior"]``, with the prior mean ``prior["W"], prior["b"]``
    fitted on those first samples only (docs/theory.md, B3p). Both hold at once with
    probability >= 1 - delta (union bound), so their minimum does too."""
    if reason:
        return {"B3": (None, reason), "B3p": (None, reason)}
    calls = [_b3_call(z, y, W, b, seed, n_weight_samples, delta=delta / 2)]
    if prior is not None:
        calls.append(_b3_call(z, y, W, b, seed, n_weight_samples, prior, delta=delta / 2))
    # computed together (their kl inversions at once): the numbers of one call each
    done = bounds.pac_bayes_bounds(*calls)
    out: dict[str, tuple[bounds.PacBayesBound | bounds.SplitPriorPacBayesBound | None, str]] = {
        "B3": (done[0], "")
    }
    if prior is None:
        out["B3p"] = (None, "needs a prior probe fitted on a disjoint part of the labeled samples")
    else:
        out["B3p"] = (done[1], "")
    return out


def _b3_call(
    z, y, W, b, seed, n_weight_samples, prior: Mapping | None = None, delta: float = 0.05
) -> tuple[Callable, dict]:
    """``(bound, kwargs)`` of B3 (``prior`` None: all n samples, the stream of ``seed``) or of
    B3p (the samples after ``prior["n_prior"]``, the prior mean, the stream of
    ``[seed, 3]``), for :func:`b3_forms` and :func:`start_monte_carlo` alike, so that the
    draws started early are the ones the bounds look up (they do not depend on delta)."""
    kwargs = dict(weights=W, bias=b, n_weight_samples=n_weight_samples, delta=delta)
    if prior is None:
        return bounds.pac_bayes_kl_bound, dict(kwargs, features=z, labels=y, seed=seed)
    h = int(prior["n_prior"])
    return bounds.pac_bayes_split_prior_bound, dict(
        kwargs,
        features=z[h:],
        labels=y[h:],
        prior_weights=prior["W"],
        prior_bias=None if b is None else prior["b"],
        n_prior=h,
        seed=[seed, 3],
    )


def start_monte_carlo(
    z, y, W, b, *, seed: int, n_weight_samples: int, prior: Mapping | None = None
) -> threading.Thread:
    """Start the Monte Carlo of B3 (and of B3p, given its prior) in a background thread and
    return it: the draws :func:`b3_forms` will use, counted while the caller does other work
    (:func:`cmcd_theory.bounds.prefetch_monte_carlo`: memoised, and a call for the same draws
    waits for the thread instead of drawing again). Nothing else changes: the bounds are
    computed by :func:`b3_forms` as before; an error is left for it to raise."""

    def run():
        try:
            bounds.prefetch_monte_carlo(*_b3_call(z, y, W, b, seed, n_weight_samples, prior))
        except Exception:  # noqa: BLE001, S110 - b3_forms computes it again and raises
            pass

    t = threading.Thread(target=run, name="b3-monte-carlo", daemon=True)
    t.start()
    return t


def _stochastic_test_error(pb, W, b, test, seed) -> float:
    """Held-out 0-1 error of the stochastic probe Q that the B3 / B3p bound ``pb`` chose (one
    fresh weight draw per use; 10 draws per test point)."""
    zt, yt = test
    if isinstance(pb, bounds.SplitPriorPacBayesBound):
        c, sigma = pb.scale, pb.sigma
    else:
        c, sigma = 1.0, pb.sigma_q
    return bounds.stochastic_error_rate(
        zt, yt, c * W, None if b is None else c * b, sigma=sigma, seed=[seed, 5], n_draws=10
    )


def _fit_prior_probe(z, y, K, *, l2: float, steps: int) -> dict | None:
    """B3p's prior mean: the toolkit's probe fitted on the first ``floor(n / 2)`` samples only
    (a split fixed before the data); None when either part would be empty."""
    n = z.shape[0]
    if n < 2:
        return None
    h = n // 2
    fitted = fit_probe(z[:h].astype(np.float32), y[:h].astype(np.int32), K, l2=l2, steps=steps)
    return {
        "W": np.asarray(fitted["W"], np.float64),
        "b": np.asarray(fitted["b"], np.float64),
        "n_prior": h,
    }


#: Relative slack of the feature-norm check of B2's data-free form for float64 (and float32)
#: features: L2-normalised float32 features have norms 1 +- 1e-7.
NORM_RTOL = 1e-6


def norm_rtol(dtype, dim: int) -> float:
    """The relative slack of the feature-norm check for features stored as ``dtype`` with
    ``dim`` coordinates: ``max(NORM_RTOL, 4 eps sqrt(dim))``, eps the dtype's machine epsilon
    (the rounding of a normalised vector's norm grows with eps and the number of terms); so
    float16-normalised features (norms 1 +- 1e-3) still count as in the unit ball.

    Example:
      >>> norm_rtol(np.float64, 8) == NORM_RTOL, round(norm_rtol(np.float16, 4), 6)
      (True, 0.007812)
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return NORM_RTOL
    return max(NORM_RTOL, 4.0 * float(np.finfo(dtype).eps) * float(np.sqrt(dim)))


def _b2_data_free_reason(z, feature_norm_bound: float | None, rtol: float = NORM_RTOL) -> str:
    """Why B2's data-free form does not apply to the features ``z`` ("" when it does): it
    needs an almost-sure bound on the feature norm that every feature meets (up to the
    relative rounding slack ``rtol`` of the features' dtype, :func:`norm_rtol`)."""
    if feature_norm_bound is None:
        return "needs an almost-sure bound on the feature norm (feature_norm_bound)"
    largest = float(np.linalg.norm(z, axis=1).max())
    if largest > feature_norm_bound * (1 + rtol):
        return (
            f"a probe feature has norm {largest:.4g} > feature_norm_bound = {feature_norm_bound:g}"
        )
    return ""


def _norm_bound_used(z, feature_norm_bound: float | None, rtol: float) -> float:
    """The almost-sure norm bound B2's data-free form is computed with: ``feature_norm_bound``,
    or ``feature_norm_bound * (1 + rtol)`` where rounding (a low-precision dtype, ``rtol``)
    put a feature above it -- the bound that the stored features do meet. Called only where
    :func:`_b2_data_free_reason` gave "", so the bound is not None."""
    assert feature_norm_bound is not None, "B2's data-free form needs feature_norm_bound"
    largest = float(np.linalg.norm(z, axis=1).max())
    if largest > feature_norm_bound * (1 + NORM_RTOL):
        return feature_norm_bound * (1 + rtol)
    return feature_norm_bound


def probe_rows(
    z,
    y,
    W,
    b,
    *,
    err_B=None,
    n_test=None,
    delta: float,
    delta_test: float,
    seed: int = 0,
    n_weight_samples: int = 1000,
    feature_norm_bound: float | None = 1.0,
    reason_b2: str = "",
    reason_b3: str = "",
    prior: Mapping | None = None,
    test=None,
    norm_rtol: float = NORM_RTOL,
) -> tuple:
    """B2 (sample and data-free forms, ``delta / 2`` each) and B3 rows of the probe
    ``(W, b)`` fit on ``(z, y)``. Returns (rows, wide).

    B3 has two forms, ``delta / 2`` each (:func:`b3_forms`): ``B3`` (prior centred at 0) and
    ``B3p`` (prior centred at ``prior``, a probe fitted on the first ``prior["n_prior"]``
    samples only; not applicable when ``prior`` is None); ``b3_total`` is their minimum, the
    ``b3_*`` terms those of the form attaining it (``b3_form``: 0 = B3, 1 = B3p).
    ``test = (z_test, y_test)`` (optional) gives each form's measured *stochastic* test error
    (``measured_stochastic``; ``b3_measured_stochastic`` for the attaining form).

    ``reason_b2`` / ``reason_b3`` (non-empty) mark a bound not applicable (e.g. features
    trained on the labels).
    The data-free form needs an almost-sure norm bound: it is not applicable when
    ``feature_norm_bound`` is None or a feature exceeds it by more than the relative rounding
    slack ``norm_rtol`` of the features' dtype (:func:`norm_rtol`).

    Rows: :data:`~cmcd_theory.certify.certificate.ROW_KEYS` and each bound's own terms (B2:
    ``rho``, ``lam``, ...; B3 / B3p: ``kl``, ``sigma_q`` / ``sigma``, ``empirical_upper``, ...,
    and ``measured_stochastic``, ``holds_stochastic``). Wide columns: ``b2_sample_*``,
    ``b2_data_free_*`` (``total``, ``empirical``, ``complexity``, ``confidence``), ``b2_total``
    and the ``b3_*`` / ``b3p_*`` columns of
    :data:`~cmcd_theory.certify.certificate.PART_KEYS` ``["B3"]``.
    """
    n = int(z.shape[0]) if z is not None else NAN
    K = int(W.shape[0]) if W is not None else NAN
    s = _slack(n_test, delta_test)
    rows, wide = _b2_rows(
        z,
        y,
        W,
        b,
        err_B,
        s,
        delta=delta,
        feature_norm_bound=feature_norm_bound,
        reason=reason_b2,
        n=n,
        K=K,
        rtol=norm_rtol,
    )
    b3_rows, b3_wide = _b3_rows(
        z,
        y,
        W,
        b,
        err_B,
        s,
        delta=delta,
        seed=seed,
        n_weight_samples=n_weight_samples,
        prior=prior,
        test=test,
        reason=reason_b3,
        n=n,
        K=K,
    )
    rows.extend(b3_rows)
    wide.update(b3_wide)
    return rows, wide


def _b2_rows(
    z,
    y,
    W,
    b,
    err_B,
    s,
    *,
    delta: float,
    feature_norm_bound: float | None,
    reason: str,
    n,
    K,
    rtol: float = NORM_RTOL,
) -> tuple:
    """B2's two forms (sample and data-free Rademacher complexity, ``delta / 2`` each) and
    ``b2_total``, their minimum. Returns (rows, wide)."""
    rows, wide = [], {}
    st_b2 = "R_B <= ramp loss + margin complexity + confidence (Rademacher)"
    for form in ("sample", "data_free"):
        why = reason
        if not why and form == "data_free":
            why = _b2_data_free_reason(z, feature_norm_bound, rtol)
        if why:
            rows.append(_row(f"B2_{form}", form, _RISK, st_b2, reason=why, n=n, K=K))
            wide[f"b2_{form}_total"] = NAN
            continue
        # each form gets delta / 2, so their minimum (b2_total) holds with probability 1 - delta
        kw: dict[str, Any] = (
            {"feature_norm_bound": _norm_bound_used(z, feature_norm_bound, rtol)}
            if form == "data_free"
            else {}
        )
        mb = bounds.margin_bound(z, y, W, b, delta / 2, form=form, **kw)
        for term in ("total", "empirical", "complexity", "confidence"):
            wide[f"b2_{form}_{term}"] = getattr(mb, term)
        rows.append(
            _bound_row(
                mb, f"B2_{form}", form, _RISK, st_b2, mb.total, err_B, s, n=n, K=K, delta=delta / 2
            )
        )
    totals = [wide[f"b2_{f}_total"] for f in ("sample", "data_free")]
    wide["b2_total"] = min((t for t in totals if math.isfinite(t)), default=NAN)
    return rows, wide


def _b3_rows(
    z,
    y,
    W,
    b,
    err_B,
    s,
    *,
    delta: float,
    seed: int,
    n_weight_samples: int,
    prior: Mapping | None,
    test,
    reason: str,
    n,
    K,
) -> tuple:
    """B3's two forms (:func:`b3_forms`, ``delta / 2`` each), each row checked as
    ``R_B <= 2 L(Q)`` against the deterministic probe and as ``L(Q) <= total`` against the
    stochastic probe's test error; ``b3_total`` is their minimum. Returns (rows, wide)."""
    rows, wide = [], {}
    forms = b3_forms(
        z,
        y,
        W,
        b,
        delta=delta,
        seed=seed,
        n_weight_samples=n_weight_samples,
        prior=prior,
        reason=reason,
    )
    wide.update(dict.fromkeys(B3_FORM_KEYS, NAN))
    stoch = {}
    for name, (pb, why) in forms.items():
        st = _B3_STATEMENTS[name]
        if pb is None:
            rows.append(_row(name, "", _RISK, st, reason=why, n=n, K=K))
            continue
        stoch[name] = NAN if test is None else _stochastic_test_error(pb, W, b, test, seed)
        row = _bound_row(
            pb, name, "", _RISK, st, pb.total_deterministic, err_B, s, n=pb.n, K=K, delta=pb.delta
        )
        # the stochastic statement L(Q) <= total against the stochastic probe's test error
        row["measured_stochastic"] = stoch[name]
        row["holds_stochastic"] = (
            None if not math.isfinite(stoch[name]) else bool(stoch[name] - s <= pb.total)
        )
        rows.append(row)
    done = {k: pb for k, (pb, _) in forms.items() if pb is not None}
    if done:
        best = min(done, key=lambda k: done[k].total)
        pb = done[best]
        wide.update(
            b3_total=pb.total,
            b3_total_deterministic=pb.total_deterministic,
            b3_form=float(_B3_FORMS.index(best)),
            b3_empirical=pb.empirical,
            b3_empirical_upper=pb.empirical_upper,
            b3_kl_over_n=pb.complexity,
            b3_confidence=pb.confidence,
            b3_measured_stochastic=stoch[best],
        )
        if "B3" in done:
            wide["b3_zero_prior_total"] = done["B3"].total
        if "B3p" in done:
            wide.update(b3p_total=done["B3p"].total, b3p_measured_stochastic=stoch["B3p"])
    return rows, wide


def probe_certificate_rows(
    z,
    y,
    W,
    b,
    *,
    err_B=None,
    n_test=None,
    delta: float,
    delta_test: float,
    seed: int = 0,
    n_weight_samples: int = 1000,
    feature_norm_bound: float | None = 1.0,
    reason: str = "",
    prior: Mapping | None = None,
    norm_rtol: float = NORM_RTOL,
) -> tuple:
    """One certified upper bound on R_B from the probe alone: the smallest of B2 (sample form,
    at ``delta / 4``), B2 (data-free form, ``delta / 4``) and B3's deterministic form
    ``2 L(Q)`` (``delta / 2``, split by :func:`b3_forms` over B3 and B3p, ``delta / 4`` each),
    so it holds with probability >= 1 - delta (union bound over the four; a form that does not
    apply leaves its share unspent). Returns (rows, wide)
    with one row ``probe`` and the columns ``probe_total`` and ``probe_form`` (index into
    :data:`PROBE_FORMS` of the form that attains it).

    The three bounds are recomputed at their shares: the ``b2_*`` and ``b3_*`` columns of
    :func:`probe_rows` spend ``delta`` each (B2's two forms ``delta / 2`` each), so a minimum
    of those columns would hold only with probability 1 - 2 delta. B3's Monte Carlo weight
    draws do not depend on delta: they are drawn once per probe and seed, shared with
    :func:`probe_rows` (memoised by :func:`cmcd_theory.bounds._stochastic_errors`).
    """
    n = int(z.shape[0]) if z is not None else NAN
    K = int(W.shape[0]) if W is not None else NAN
    statement = (
        "R_B <= min(B2 sample (delta/4), B2 data-free (delta/4), 2 L(Q) of B3 "
        "(delta/4) and of B3p (delta/4))"
    )
    if reason:
        return (
            [_row("probe", "min", _RISK, statement, reason=reason, n=n, K=K)],
            {"probe_total": NAN, "probe_form": NAN},
        )
    values, spent = _probe_shares(
        z, y, W, b, delta, seed, n_weight_samples, feature_norm_bound, prior, norm_rtol
    )
    form = min(values, key=values.__getitem__)
    total = values[form]
    s = _slack(n_test, delta_test)
    row = _row(
        "probe",
        "min",
        _RISK,
        statement,
        measured=err_B,
        value=total,
        delta=spent,
        slack=s,
        n=n,
        K=K,
        vacuous=total >= 1.0,
        terms={f"{k}_at_share": v for k, v in values.items()} | {"attained_by": form},
    )
    return [row], {"probe_total": total, "probe_form": float(PROBE_FORMS.index(form))}


def _probe_shares(
    z, y, W, b, delta: float, seed: int, n_weight_samples: int, feature_norm_bound, prior, rtol
) -> tuple[dict, float]:
    """The bounds behind :func:`probe_certificate_rows` at their shares of ``delta``
    (:data:`PROBE_SPLIT`): ``({form: total}, delta spent)`` over B2's sample and data-free
    forms (the latter only where it applies) and B3 (the smaller ``2 L(Q)`` of B3 and B3p,
    whichever apply)."""
    values, spent = {}, 0.0
    for form in ("sample", "data_free"):
        kw: dict[str, Any] = {}
        if form == "data_free":
            if _b2_data_free_reason(z, feature_norm_bound, rtol):
                continue
            kw = {"feature_norm_bound": _norm_bound_used(z, feature_norm_bound, rtol)}
        mb = bounds.margin_bound(z, y, W, b, delta * PROBE_SPLIT[f"B2_{form}"], form=form, **kw)
        values[f"B2_{form}"] = mb.total
        spent += mb.delta
    # B3's share is split over its two forms (b3_forms: B3 and B3p, half of the share each)
    b3 = {
        k: pb
        for k, (pb, _) in b3_forms(
            z,
            y,
            W,
            b,
            delta=delta * PROBE_SPLIT["B3"],
            seed=seed,
            n_weight_samples=n_weight_samples,
            prior=prior,
        ).items()
        if pb is not None
    }
    values["B3"] = min(pb.total_deterministic for pb in b3.values())
    spent += sum(pb.delta for pb in b3.values())
    return values, spent
