"""Certify a run: every bound of docs/theory.md beside what it bounds (B6), from plain arrays.

Two entry points, one implementation:

* :func:`certify_features` takes what any framework can export as numpy arrays -- the target
  features and labels the stage-3 probe was fit on, the probe's weights (or none: the toolkit's
  probe is fitted), held-out labeled target (and source) features, teacher and student
  features on held-out pairs, and the stage-1 / stage-2 statistics where known -- and returns a
  :class:`Certificate`: one row per bound and form, with what it bounds, the measured value,
  the bound's value and terms, the confidence ``delta`` it spent, whether it applies (and why
  not), whether it is vacuous and whether it holds on the held-out data.
* :func:`certify` does the same for a run of the toolkit's own synthetic pipeline (a
  :class:`~cmcd_theory.worlds.World`, a :class:`~cmcd_theory.pipeline.PipelineConfig` and the
  run's metrics and artifacts); it computes what only a known world gives (the exact latent
  TV and Bayes errors, the certified TV of learned features on the Gaussian track) and calls
  :func:`certify_features`.

The rows (:data:`ROW_KEYS`, plus each bound's own named terms) and the bound families, one
function each:

===============  ==============================================  ===========================
family           rows                                            needs
===============  ==============================================  ===========================
transfer (B1)    ``B1a``, ``floor``: eps*_B <= eps*_A + TV_latent, exact latent TV and Bayes
                 R_B >= eps*_B; ``B1b``: R_B <= R_A(same head) +  errors (a synthetic world);
                 TV(learned features); ``TV_lower``: certified     B1b an upper bound on the
                 lower bound on TV(learned features)              feature TV; TV_lower pairs
probe (B2, B3)   ``B2_sample``, ``B2_data_free``, ``B3``,         probe features and labels
                 ``B3p`` (split prior)                            (B3p: n >= 2)
stage 2 (B4)     ``B4_data_free``, ``B4_sample``                  :class:`Stage2Stats`
stage 1 (B5)     ``B5_data_free``, ``B5_sample``                  :class:`Stage1Stats`
stage 1 (B5n)    ``B5n``: normalised O1 loss of the perturbed     S2 views, trained and prior
                 encoder (per-sample PAC-Bayes-kl)               weights, fresh candidates
===============  ==============================================  ===========================

Confidence bookkeeping: each bound holds with probability >= 1 - ``delta``; where two forms
of one bound are combined by their minimum (B2, B4, B5), each form spends ``delta / 2``, so
the minimum (``b2_total``, ``b4_total``, ``b5_total``) holds with probability >= 1 - delta.
Every row records the delta it spent. A measured value on held-out data is compared with
its own Hoeffding slack at ``delta_test`` (docs/theory.md, C): ``holds`` is
``measured - slack <= value`` for an upper bound.

An upper bound on the TV between the learned source and target feature laws is certified only
where the laws are known (the synthetic Gaussian track): no finite sample certifies one without
assumptions, so on a user's features B1b is reported not applicable, and the certified *lower*
bound of a held-out two-sample classifier
(:func:`~cmcd_theory.divergences.tv_classifier_lower_bound`) is reported instead.

Command line (``cmcd-certify`` once installed)::

    cmcd-certify RUN.npz [--out report.csv] [--delta 0.05] [--delta-test 0.05] [--seed 0]

prints the table and writes it as CSV. RUN.npz (``numpy.savez``; every array optional
unless marked required; ``n``, ``D`` etc. are sizes; floats are any real dtype, read in
float64; labels any integer dtype; scalars are 0-d arrays or plain numbers):

=======================  ==========  =========================================================
name                     shape       meaning
=======================  ==========  =========================================================
``train_features``       (n, D)      **required**: target features of the n labeled samples
                                     the probe was fit on
``train_labels``         (n,)        **required**: their labels in [0, K)
``probe_W``, ``probe_b`` (K, D),(K,) the probe's weights and bias (absent: fitted here)
``num_classes``          ()          K (default: from ``probe_W``, else max label + 1)
``test_features``        (n_t, D)    held-out target features (independent of everything else)
``test_labels``          (n_t,)      their labels: the measured target error R_B
``source_test_features`` (n_s, D)    teacher features of held-out labeled source samples
``source_test_labels``   (n_s,)      their labels: R_A of the same head (B1b)
``pair_source``          (n_p, D)    teacher features on held-out pairs
``pair_target``          (n_p, D)    student features on the same pairs (TV_lower)
``pair_labels``          (n_p,)      labels of the pairs (TV of the joint laws, B1's quantity)
``feature_norm_bound``   ()          almost-sure bound on the probe features' norm (default 1:
                                     normalised features; B2 data-free form)
``label_free``           ()          bool, default True: the features were learned without the
                                     n labels (B2 and B3 need it)
``stage2_<field>``       ()          :class:`Stage2Stats` fields (B4), e.g. ``stage2_loss``
                                     (``"cmc"``/``"cmd"``), ``stage2_train_loss``,
                                     ``stage2_tau``, ``stage2_tuple_size``, ``stage2_m``,
                                     ``stage2_student_norm``, ``stage2_input_radius``,
                                     ``stage2_feature_dim``; optional ``stage2_sum_sq_inputs``,
                                     ``stage2_pop_loss``, ``stage2_n_pop``
``stage1_<field>``       ()          :class:`Stage1Stats` fields (B5), likewise
=======================  ==========  =========================================================

A missing required array, an unknown name, or an array of the wrong shape or dtype is an
error naming it (exit status 2).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Mapping, Optional

import numpy as np

from cmcd_theory import bounds, validation as V

__all__ = ["ROW_KEYS", "WIDE_KEYS", "Stage1Stats", "Stage2Stats", "Certificate",
           "certify_features", "certify", "transfer_rows", "probe_rows", "stage2_rows",
           "stage1_rows", "probe_certificate_rows", "PROBE_SPLIT", "PROBE_FORMS", "load_npz", "main", "PART_KEYS", "SPENDING", "GAUSSIAN_CHANNELS", "b1b_applies",
           "probe_bounds_apply", "b4_applies", "b4n_applies", "stage2_normalized_rows",
           "stage1_normalized_rows", "b5n_applies", "N_POP_SSL", "certify_stage1"]

#: Fixed keys of every row of a :class:`Certificate` (a bound's own named terms follow them).
ROW_KEYS = ("bound", "form", "bounds", "statement", "kind", "measured", "value", "empirical",
            "complexity", "confidence", "delta", "slack", "applicable", "reason", "vacuous",
            "holds", "holds_strict", "n", "K")
#: Fixed keys of :attr:`Certificate.wide` (a sweep row's columns); NaN where not applicable.
WIDE_KEYS = ("tv_features", "tv_features_upper", "tv_features_lower", "b2_sample_total",
             "b2_data_free_total", "b2_total", "b3_total", "b3_total_deterministic",
             "b4_data_free_total", "b4_sample_total", "b4_total", "b5_data_free_total",
             "b5_sample_total", "b5_total", "bounds_hold",
             # named terms of the bounds that figures stack
             "b2_sample_empirical", "b2_sample_complexity", "b2_sample_confidence",
             "b2_data_free_empirical", "b2_data_free_complexity", "b2_data_free_confidence",
             "b3_empirical", "b3_empirical_upper", "b3_kl_over_n", "b3_confidence",
             "b4_data_free_gap", "b4_sample_gap", "b4_gap", "b4_pop_slack",
             # B4n: normalised student features (stochastic student, per-pair PAC-Bayes-kl)
             "b4n_total", "b4n_empirical", "b4n_empirical_exact_mgf", "b4n_kl_over_n",
             "b4n_pop_loss_stochastic", "b4n_nu",
             # the probe certificate: min(B2 forms, 2 L(Q) of B3 and B3p), delta split over the four
             "probe_total", "probe_form",
             # B3's two forms (zero-mean and split prior) and the stochastic probes' test errors
             "b3_form", "b3_zero_prior_total", "b3p_total", "b3_measured_stochastic",
             "b3p_measured_stochastic",
             # stage 1: measured O1 losses and B5n (normalised features, per-sample PAC-Bayes-kl)
             "ssl_train_loss", "ssl_pop_loss", "ssl_gap", "ssl_pop_loss_se", "b5n_total",
             "b5n_empirical", "b5n_empirical_mean_encoder", "b5n_kl_over_n",
             "b5n_pop_loss_stochastic", "b5n_nu")
#: The :attr:`Certificate.wide` columns of each part of :func:`certify` (experiments' sweeps).
PART_KEYS = {
    "B1b": ("tv_features", "tv_features_upper"),
    "B2": tuple(f"b2_{form}_{term}" for form in ("sample", "data_free")
                for term in ("total", "empirical", "complexity", "confidence")) + ("b2_total",),
    "B3": ("b3_total", "b3_total_deterministic", "b3_form", "b3_zero_prior_total", "b3p_total",
           "b3_measured_stochastic", "b3p_measured_stochastic", "b3_empirical", "b3_empirical_upper",
           "b3_kl_over_n", "b3_confidence"),
    "B4": ("b4_data_free_total", "b4_data_free_gap", "b4_sample_total", "b4_sample_gap",
           "b4_total", "b4_gap", "b4_pop_slack", "b4n_total", "b4n_empirical",
           "b4n_empirical_exact_mgf", "b4n_kl_over_n", "b4n_pop_loss_stochastic", "b4n_nu"),
    "probe": ("probe_total", "probe_form"),
    "B5": ("ssl_train_loss", "ssl_pop_loss", "ssl_gap", "ssl_pop_loss_se", "b5n_total",
           "b5n_empirical", "b5n_empirical_mean_encoder", "b5n_kl_over_n",
           "b5n_pop_loss_stochastic", "b5n_nu"),
}
#: Bound columns of ``wide`` and the rows whose ``delta`` each one's value spends (union bound:
#: a minimum over forms spends the sum of the forms' deltas).
SPENDING = {
    "tv_features_upper": ("B1b",), "tv_features_lower": ("TV_lower",),
    "b2_sample_total": ("B2_sample",), "b2_data_free_total": ("B2_data_free",),
    "b2_total": ("B2_sample", "B2_data_free"),
    "b3_total": ("B3", "B3p"), "b3_total_deterministic": ("B3", "B3p"),
    "b3_empirical_upper": ("B3", "B3p"), "b3_zero_prior_total": ("B3",), "b3p_total": ("B3p",),
    "b4_data_free_total": ("B4_data_free",), "b4_sample_total": ("B4_sample",),
    "b4_total": ("B4_data_free", "B4_sample"), "b4_data_free_gap": ("B4_data_free",),
    "b4_sample_gap": ("B4_sample",), "b4_gap": ("B4_data_free", "B4_sample"),
    "b5_data_free_total": ("B5_data_free",), "b5_sample_total": ("B5_sample",),
    "b5_total": ("B5_data_free", "B5_sample"),
    "b4n_total": ("B4n",),
    "b5n_total": ("B5n",),
    "probe_total": ("probe",),
}

NAN = float("nan")
_RISK = "R_B: target 0-1 risk of the probe"


# ---- stage statistics ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage2Stats:
    """What B4 needs about stage 2 (distillation on m unlabeled pairs, docs/theory.md B4).

    B4 covers the student ``phi_B(x) = W clip(x)`` (inputs projected on the ball of radius
    ``input_radius``), whose *unnormalised* features enter the loss, and teacher features of
    norm <= 1; give these statistics only for a student of that form.

    Attributes:
      loss: ``"cmc"`` (B->A direction of O2), ``"cmd"`` (O3) or ``"cmc_symmetric"``.
      train_loss: mean tuple loss over the ``floor(m / tuple_size)`` training tuples.
      tau: student temperature (tau of CMC, tau_B of CMD), > 0.
      tuple_size: N, pairs per tuple (softmax candidates), >= 1.
      m: number of training pairs (>= tuple_size).
      student_norm: Frobenius norm of W, >= 0.
      input_radius: clip radius r_B > 0.
      feature_dim: k, output coordinates of the student.
      sum_sq_inputs: sum of squared clipped inputs over the training tuples (sample form);
        None: the sample form is not applicable.
      pop_loss: the same tuple loss on ``n_pop`` fresh pairs (the measured population loss),
        or None.
      n_pop: number of fresh pairs behind ``pop_loss``.
    """

    loss: str
    train_loss: float
    tau: float
    tuple_size: int
    m: int
    student_norm: float
    input_radius: float
    feature_dim: int
    sum_sq_inputs: Optional[float] = None
    pop_loss: Optional[float] = None
    n_pop: Optional[int] = None

    def __post_init__(self):
        V.choice("loss", self.loss, ("cmc", "cmd", "cmc_symmetric"))
        _check_stats(self)


@dataclasses.dataclass(frozen=True)
class Stage1Stats:
    """What B5 needs about stage 1 (InfoNCE on M source samples, two views each; B5).

    Encoder ``phi_A(x) = W clip(x)`` on both views, unnormalised features in the loss.
    Fields as :class:`Stage2Stats` with ``M`` samples, ``encoder_norm`` = ``||W||_F``.
    """

    train_loss: float
    tau: float
    tuple_size: int
    M: int
    encoder_norm: float
    input_radius: float
    feature_dim: int
    sum_sq_inputs: Optional[float] = None
    pop_loss: Optional[float] = None
    n_pop: Optional[int] = None

    def __post_init__(self):
        _check_stats(self)


def _check_stats(s) -> None:
    size = "m" if isinstance(s, Stage2Stats) else "M"
    norm = "student_norm" if isinstance(s, Stage2Stats) else "encoder_norm"
    V.real("train_loss", s.train_loss, lo=0.0)
    V.real("tau", s.tau, lo=0.0, lo_open=True)
    N = V.positive_int("tuple_size", s.tuple_size)
    V.integer(size, getattr(s, size), lo=N)
    V.real(norm, getattr(s, norm), lo=0.0)
    V.real("input_radius", s.input_radius, lo=0.0, lo_open=True)
    V.positive_int("feature_dim", s.feature_dim)
    if s.sum_sq_inputs is not None:
        V.real("sum_sq_inputs", s.sum_sq_inputs, lo=0.0)
    if (s.pop_loss is None) != (s.n_pop is None):
        raise ValueError("pop_loss and n_pop must be given together (or neither)")
    if s.pop_loss is not None:
        V.real("pop_loss", s.pop_loss, lo=0.0)
        V.integer("n_pop", s.n_pop, lo=N)


# ---- rows ------------------------------------------------------------------------------------


def _row(bound: str, form: str, bounds_what: str, statement: str, *, kind: str = "upper",
         measured=NAN, value=NAN, delta=NAN, slack=NAN, n=NAN, K=NAN, terms: Optional[dict] = None,
         reason: str = "", vacuous=None, empirical=NAN, complexity=NAN, confidence=NAN,
         tol: float = 0.0) -> dict:
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
    row = {"bound": bound, "form": form, "bounds": bounds_what, "statement": statement,
           "kind": kind, "measured": measured, "value": float(value), "empirical": float(empirical),
           "complexity": float(complexity), "confidence": float(confidence), "delta": float(delta),
           "slack": float(slack), "applicable": applicable, "reason": reason,
           "vacuous": None if vacuous is None or not applicable else bool(vacuous),
           "holds": holds, "holds_strict": holds_strict, "n": n, "K": K}
    for k, v in (terms or {}).items():
        if k not in row and k not in ("name", "total", "label"):
            row[k] = v
    return row


def _bound_row(b, bound: str, form: str, bounds_what: str, statement: str, value: float,
               measured, slack, *, n, K, delta) -> dict:
    """Row of a computed bound object (``bounds.MarginBound``, ``PacBayesBound``, ...)."""
    d = b.as_dict()
    if "delta" in d and not math.isclose(d["delta"], delta, rel_tol=1e-12):
        raise ValueError(f"{bound}: the bound was computed at delta = {d['delta']!r}, "
                         f"reported as {delta!r}")
    # vacuous: no better than the trivial bound (1 for a 0-1 risk, b for a loss in [0, b])
    vacuous = value >= d.get("loss_range", 1.0)
    return _row(bound, form, bounds_what, statement, measured=measured, value=value, delta=delta,
                slack=slack, n=n, K=K, terms=d, vacuous=vacuous, empirical=d["empirical"],
                complexity=d["complexity"], confidence=d["confidence"])


def _slack(n_test, delta_test) -> float:
    return NAN if n_test is None else bounds.hoeffding_slack(n_test, delta_test)


# ---- the bound families ----------------------------------------------------------------------


def transfer_rows(*, err_B=None, n_test=None, err_A_head=None, n_test_source=None,
                  tv_features_upper=None, tv_features_estimate=None, tv_lower=None,
                  ground_truth: Optional[Mapping] = None, delta: float, delta_test: float,
                  n=NAN, K=NAN, reason_b1b: str = "") -> tuple:
    """B1 rows: ``B1a`` and ``floor`` (exact ground truth), ``B1b`` (learned features) and
    ``TV_lower`` (certified lower bound on the learned features' TV). Returns (rows, wide).

    Args:
      err_B, n_test: measured target error of the probe and its test-set size.
      err_A_head, n_test_source: the same head's source error and its test-set size.
      tv_features_upper: a certified upper bound on TV(learned features) at level ``delta``.
      tv_features_estimate: a point estimate of it (reported, never asserted).
      tv_lower: the dict of :func:`~cmcd_theory.divergences.tv_classifier_lower_bound`.
      ground_truth: ``tv_latent``, ``bayes_A``, ``bayes_B`` and optional ``bayes_slack``
        (known only for a synthetic world).
      reason_b1b: why B1b does not apply, overriding the default reason.
    """
    s, s_a = _slack(n_test, delta_test), _slack(n_test_source or n_test, delta_test)
    rows = []
    wide = {"tv_features": NAN if tv_features_estimate is None else float(tv_features_estimate),
            "tv_features_upper": NAN if tv_features_upper is None else float(tv_features_upper),
            "tv_features_lower": NAN if tv_lower is None else float(tv_lower["lower"])}
    what_b1b = _RISK + " (modality-gap transfer)"
    st_b1b = "R_B <= R_A(same head) + TV(learned features)"
    reason = reason_b1b
    if not reason and tv_features_upper is None:
        reason = ("needs a certified upper bound on TV(learned source, target features); no finite "
                  "sample certifies one without assumptions on the feature laws (see TV_lower)")
    if not reason and (err_A_head is None or err_B is None):
        reason = "needs the head's measured source error (source_test_features) and target error"
    if reason:
        rows.append(_row("B1b", "", what_b1b, st_b1b, reason=reason, n=n, K=K))
    else:
        tb = bounds.transfer_bound(err_A_head, tv_features_upper)
        # both sides are test estimates: R_B >= Rhat_B - s and R_A <= Rhat_A + s_a
        rows.append(_row("B1b", "", what_b1b, st_b1b, measured=err_B, value=tb.total, delta=delta,
                         slack=s + s_a, n=n, K=K, vacuous=tb.vacuous, empirical=tb.empirical,
                         complexity=tb.complexity, confidence=tb.confidence))
    what_tv = "TV_features: TV(learned source, target feature laws), from below"
    st_tv = "TV >= 2 acc - 1 - 2 sqrt(log(1/delta) / (2 n_test))"
    if tv_lower is None:
        rows.append(_row("TV_lower", "", what_tv, st_tv, kind="lower", n=n, K=K,
                         reason="needs teacher and student features on held-out pairs"))
    else:
        rows.append(_row("TV_lower", "", what_tv, st_tv, kind="lower",
                         measured=NAN if tv_features_estimate is None else tv_features_estimate,
                         value=tv_lower["lower"], delta=tv_lower["delta"], slack=0.0,
                         n=tv_lower["n_test"], K=K, vacuous=tv_lower["lower"] <= 0,
                         empirical=tv_lower["estimate"], confidence=tv_lower["slack"],
                         terms={"acc": tv_lower["acc"]}))
    gt = dict(ground_truth or {})
    known = all(gt.get(k) is not None and math.isfinite(gt[k])
                for k in ("tv_latent", "bayes_A", "bayes_B"))
    no_gt = "needs the exact TV_latent and Bayes errors, known only for a synthetic world"
    b_slack = float(gt.get("bayes_slack", 0.0))
    if known:
        value = gt["bayes_A"] + gt["tv_latent"]
        # a population statement: no sample, no delta; only the Bayes errors' Monte Carlo slack
        rows.append(_row("B1a", "", "eps*_B: Bayes error of the target", "eps*_B <= eps*_A + TV_latent",
                         measured=gt["bayes_B"], value=value, delta=0.0, slack=b_slack, n=n, K=K,
                         vacuous=value >= 1, empirical=gt["bayes_A"], complexity=gt["tv_latent"],
                         confidence=0.0, tol=1e-12))
    else:
        rows.append(_row("B1a", "", "eps*_B: Bayes error of the target",
                         "eps*_B <= eps*_A + TV_latent", reason=no_gt, n=n, K=K))
    if known and err_B is not None:
        rows.append(_row("floor", "", _RISK + " (from below)", "R_B >= eps*_B", kind="lower",
                         measured=err_B, value=gt["bayes_B"], delta=0.0, slack=s + b_slack, n=n,
                         K=K, vacuous=gt["bayes_B"] <= 0))
    else:
        rows.append(_row("floor", "", _RISK + " (from below)", "R_B >= eps*_B", kind="lower",
                         reason=no_gt if not known else "needs the measured target error", n=n, K=K))
    return rows, wide


#: B3 forms (``b3_form`` codes index this) and their statements.
_B3_FORMS = ("B3", "B3p")
_B3_STATEMENTS = {
    "B3": "R_B <= 2 L(Q), L(Q) <= kl^-1(Lhat(Q), (KL(Q||P) + ln(2 sqrt n G_p / delta)) / n), P = N(0, s_p^2 I)",
    "B3p": ("R_B <= 2 L(Q), L(Q) <= kl^-1(Lhat_S1(Q), (KL(Q||P) + ln(2 sqrt n1 G / delta)) / n1), "
            "P = N(probe fitted on S0, s^2 I)"),
}


def b3_forms(z, y, W, b, *, delta: float, seed: int, n_weight_samples: int,
             prior: Optional[Mapping] = None, reason: str = "") -> dict:
    """The two forms of B3 at ``delta / 2`` each: ``{"B3": (bound or None, reason),
    "B3p": (...)}``. ``B3``: :func:`~cmcd_theory.bounds.pac_bayes_kl_bound` on all ``n``
    samples; ``B3p``: :func:`~cmcd_theory.bounds.pac_bayes_split_prior_bound` on the samples
    after the first ``prior["n_prior"]``, with the prior mean ``prior["W"], prior["b"]``
    fitted on those first samples only (docs/theory.md, B3p). Both hold at once with
    probability >= 1 - delta (union bound), so their minimum does too."""
    if reason:
        return {"B3": (None, reason), "B3p": (None, reason)}
    out = {"B3": (bounds.pac_bayes_kl_bound(z, y, W, b, seed=seed, delta=delta / 2,
                                            n_weight_samples=n_weight_samples), "")}
    if prior is None:
        out["B3p"] = (None, "needs a prior probe fitted on a disjoint part of the labeled samples")
    else:
        h = int(prior["n_prior"])
        out["B3p"] = (bounds.pac_bayes_split_prior_bound(
            z[h:], y[h:], W, b, prior_weights=prior["W"],
            prior_bias=None if b is None else prior["b"], n_prior=h, seed=[seed, 3],
            delta=delta / 2, n_weight_samples=n_weight_samples), "")
    return out


def _stochastic_test_error(pb, W, b, test, seed) -> float:
    """Held-out 0-1 error of the stochastic probe Q that the B3 / B3p bound ``pb`` chose (one
    fresh weight draw per use; 10 draws per test point)."""
    zt, yt = test
    if isinstance(pb, bounds.SplitPriorPacBayesBound):
        c, sigma = pb.scale, pb.sigma
    else:
        c, sigma = 1.0, pb.sigma_q
    return bounds.stochastic_error_rate(zt, yt, c * W, None if b is None else c * b, sigma=sigma,
                                        seed=[seed, 5], n_draws=10)


def _fit_prior_probe(z, y, K, *, l2: float, steps: int) -> Optional[dict]:
    """B3p's prior mean: the toolkit's probe fitted on the first ``floor(n / 2)`` samples only
    (a split fixed before the data); None when either part would be empty."""
    n = z.shape[0]
    if n < 2:
        return None
    from cmcd_theory.probe import fit_probe
    h = n // 2
    fitted = fit_probe(z[:h].astype(np.float32), y[:h].astype(np.int32), K, l2=l2, steps=steps)
    return {"W": np.asarray(fitted["W"], np.float64), "b": np.asarray(fitted["b"], np.float64),
            "n_prior": h}


def _b2_data_free_reason(z, feature_norm_bound: Optional[float]) -> str:
    """Why B2's data-free form does not apply to the features ``z`` ("" when it does): it
    needs an almost-sure bound on the feature norm that every feature meets."""
    if feature_norm_bound is None:
        return "needs an almost-sure bound on the feature norm (feature_norm_bound)"
    largest = float(np.linalg.norm(z, axis=1).max())
    if largest > feature_norm_bound * (1 + 1e-6):
        return f"a probe feature has norm {largest:.4g} > feature_norm_bound = {feature_norm_bound:g}"
    return ""


def probe_rows(z, y, W, b, *, err_B=None, n_test=None, delta: float, delta_test: float,
               seed: int = 0, n_weight_samples: int = 1000,
               feature_norm_bound: Optional[float] = 1.0, reason_b2: str = "",
               reason_b3: str = "", prior: Optional[Mapping] = None, test=None) -> tuple:
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
    ``feature_norm_bound`` is None or a feature exceeds it.
    """
    n = int(z.shape[0]) if z is not None else NAN
    K = int(W.shape[0]) if W is not None else NAN
    s = _slack(n_test, delta_test)
    rows, wide = [], {}
    st_b2 = "R_B <= ramp loss + margin complexity + confidence (Rademacher)"
    for form in ("sample", "data_free"):
        why = reason_b2
        if not why and form == "data_free":
            why = _b2_data_free_reason(z, feature_norm_bound)
        if why:
            rows.append(_row(f"B2_{form}", form, _RISK, st_b2, reason=why, n=n, K=K))
            wide[f"b2_{form}_total"] = NAN
            continue
        # each form gets delta / 2, so their minimum (b2_total) holds with probability 1 - delta
        kw = {"feature_norm_bound": feature_norm_bound} if form == "data_free" else {}
        mb = bounds.margin_bound(z, y, W, b, delta / 2, form=form, **kw)
        for term in ("total", "empirical", "complexity", "confidence"):
            wide[f"b2_{form}_{term}"] = getattr(mb, term)
        rows.append(_bound_row(mb, f"B2_{form}", form, _RISK, st_b2, mb.total, err_B, s, n=n, K=K,
                               delta=delta / 2))
    totals = [wide[f"b2_{f}_total"] for f in ("sample", "data_free")]
    wide["b2_total"] = min((t for t in totals if math.isfinite(t)), default=NAN)
    forms = b3_forms(z, y, W, b, delta=delta, seed=seed, n_weight_samples=n_weight_samples,
                     prior=prior, reason=reason_b3)
    b3_keys = ("b3_total", "b3_total_deterministic", "b3_form", "b3_zero_prior_total",
               "b3p_total", "b3_measured_stochastic", "b3p_measured_stochastic")
    wide.update(dict.fromkeys(b3_keys, NAN))
    stoch = {}
    for name, (pb, why) in forms.items():
        st = _B3_STATEMENTS[name]
        if pb is None:
            rows.append(_row(name, "", _RISK, st, reason=why, n=n, K=K))
            continue
        stoch[name] = NAN if test is None else _stochastic_test_error(pb, W, b, test, seed)
        row = _bound_row(pb, name, "", _RISK, st, pb.total_deterministic, err_B, s, n=pb.n, K=K,
                         delta=pb.delta)
        # the stochastic statement L(Q) <= total against the stochastic probe's test error
        row["measured_stochastic"] = stoch[name]
        row["holds_stochastic"] = (None if not math.isfinite(stoch[name])
                                   else bool(stoch[name] - s <= pb.total))
        rows.append(row)
    done = {k: pb for k, (pb, _) in forms.items() if pb is not None}
    if done:
        best = min(done, key=lambda k: done[k].total)
        pb = done[best]
        wide.update(b3_total=pb.total, b3_total_deterministic=pb.total_deterministic,
                    b3_form=float(_B3_FORMS.index(best)), b3_empirical=pb.empirical,
                    b3_empirical_upper=pb.empirical_upper, b3_kl_over_n=pb.complexity,
                    b3_confidence=pb.confidence, b3_measured_stochastic=stoch[best])
        if "B3" in done:
            wide["b3_zero_prior_total"] = done["B3"].total
        if "B3p" in done:
            wide.update(b3p_total=done["B3p"].total, b3p_measured_stochastic=stoch["B3p"])
    return rows, wide


#: Shares of delta of the three bounds behind the probe certificate (``probe_total``).
PROBE_SPLIT = {"B2_sample": 0.25, "B2_data_free": 0.25, "B3": 0.5}
#: ``probe_form`` codes: which bound attains ``probe_total``.
PROBE_FORMS = ("B2_sample", "B2_data_free", "B3")


def probe_certificate_rows(z, y, W, b, *, err_B=None, n_test=None, delta: float,
                           delta_test: float, seed: int = 0, n_weight_samples: int = 1000,
                           feature_norm_bound: Optional[float] = 1.0, reason: str = "",
                           prior: Optional[Mapping] = None) -> tuple:
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
    statement = ("R_B <= min(B2 sample (delta/4), B2 data-free (delta/4), 2 L(Q) of B3 "
                 "(delta/4) and of B3p (delta/4))")
    if reason:
        return ([_row("probe", "min", _RISK, statement, reason=reason, n=n, K=K)],
                {"probe_total": NAN, "probe_form": NAN})
    values, spent = {}, 0.0
    for form in ("sample", "data_free"):
        kw = {}
        if form == "data_free":
            if _b2_data_free_reason(z, feature_norm_bound):
                continue
            kw = {"feature_norm_bound": feature_norm_bound}
        mb = bounds.margin_bound(z, y, W, b, delta * PROBE_SPLIT[f"B2_{form}"], form=form, **kw)
        values[f"B2_{form}"] = mb.total
        spent += mb.delta
    # B3's share is split over its two forms (b3_forms: B3 and B3p, half of the share each)
    b3 = {k: pb for k, (pb, _) in b3_forms(z, y, W, b, delta=delta * PROBE_SPLIT["B3"], seed=seed,
                                           n_weight_samples=n_weight_samples,
                                           prior=prior).items() if pb is not None}
    values["B3"] = min(pb.total_deterministic for pb in b3.values())
    spent += sum(pb.delta for pb in b3.values())
    form = min(values, key=values.get)
    total = values[form]
    s = _slack(n_test, delta_test)
    row = _row("probe", "min", _RISK, statement, measured=err_B, value=total, delta=spent,
               slack=s, n=n, K=K, vacuous=total >= 1.0,
               terms={f"{k}_at_share": v for k, v in values.items()} | {"attained_by": form})
    return [row], {"probe_total": total, "probe_form": float(PROBE_FORMS.index(form))}


def _tuple_rows(family: str, stats, bound_fn, what: str, *, delta: float, delta_test: float,
                K, reason: str) -> tuple:
    """Data-free and sample forms of B4 / B5 (``delta / 2`` each) and their minimum."""
    key = family.lower()
    wide = {f"{key}_data_free_total": NAN, f"{key}_sample_total": NAN, f"{key}_total": NAN}
    st = "L_pop <= Lhat + 2 Rad + confidence (Rademacher over i.i.d. tuples)"
    rows = []
    size = getattr(stats, "m", None) if family == "B4" else getattr(stats, "M", None)
    for form in ("data_free", "sample"):
        why = reason
        if not why and stats is None:
            why = f"needs the stage-{2 if family == 'B4' else 1} statistics ({family})"
        if not why and form == "sample" and stats.sum_sq_inputs is None:
            why = "needs sum_sq_inputs (the sum of squared clipped inputs)"
        if why:
            rows.append(_row(f"{family}_{form}", form, what, st, reason=why, n=size, K=K))
            continue
        n_t = bounds.tuple_split(size, stats.tuple_size)
        tb = bound_fn(n_t, form, delta / 2)
        wide[f"{key}_{form}_total"] = tb.total
        wide[f"{key}_{form}_gap"] = tb.total - stats.train_loss
        measured, slack = NAN, NAN
        if stats.pop_loss is not None:
            # the population loss is estimated on n_pop / N fresh tuples of a [0, b] loss
            measured = stats.pop_loss
            slack = tb.loss_range * bounds.hoeffding_slack(
                bounds.tuple_split(stats.n_pop, stats.tuple_size), delta_test)
            wide[f"{key}_pop_slack"] = slack
        rows.append(_bound_row(tb, f"{family}_{form}", form, what, st, tb.total, measured, slack,
                               n=size, K=K, delta=delta / 2))
    totals = [wide[f"{key}_{f}_total"] for f in ("data_free", "sample")]
    wide[f"{key}_total"] = min((t for t in totals if math.isfinite(t)), default=NAN)
    if stats is not None:
        wide[f"{key}_gap"] = wide[f"{key}_total"] - stats.train_loss
    return rows, wide


def stage2_rows(stats: Optional[Stage2Stats], *, delta: float, delta_test: float, K=NAN,
                reason: str = "") -> tuple:
    """B4 rows (data-free and sample forms, ``delta / 2`` each). Returns (rows, wide)."""
    def fn(n_t, form, d):
        return bounds.distillation_bound(
            stats.train_loss, n_t, stats.tuple_size, stats.tau, stats.student_norm,
            stats.input_radius, stats.feature_dim, d, loss=stats.loss, form=form,
            sum_sq_norms=stats.sum_sq_inputs if form == "sample" else None)
    return _tuple_rows("B4", stats, fn, "L_pop: stage-2 population tuple loss (distillation)",
                       delta=delta, delta_test=delta_test, K=K, reason=reason)


def stage1_rows(stats: Optional[Stage1Stats], *, delta: float, delta_test: float, K=NAN,
                reason: str = "") -> tuple:
    """B5 rows (data-free and sample forms, ``delta / 2`` each). Returns (rows, wide)."""
    def fn(n_t, form, d):
        return bounds.ssl_bound(
            stats.train_loss, n_t, stats.tuple_size, stats.tau, stats.encoder_norm,
            stats.input_radius, stats.feature_dim, d, form=form,
            sum_sq_norms=stats.sum_sq_inputs if form == "sample" else None)
    return _tuple_rows("B5", stats, fn, "L_pop: stage-1 population InfoNCE tuple loss",
                       delta=delta, delta_test=delta_test, K=K, reason=reason)


def _cmc_tuple_loss_np(u, z, tau, N) -> float:
    """Mean B->A CMC per-anchor loss over the disjoint tuples of N rows (float64, log-sum-exp)."""
    n_t = u.shape[0] // N
    uu = u[: n_t * N].reshape(n_t, N, -1)
    zz = z[: n_t * N].reshape(n_t, N, -1)
    logits = np.einsum("tik,tjk->tij", uu, zz) / tau
    lse = np.logaddexp.reduce(logits, axis=2)
    return float(np.mean(lse - np.einsum("tii->ti", logits)))


def stage2_normalized_rows(s: Optional[Mapping], *, delta: float, delta_test: float, K=NAN,
                           reason: str = "", seed: int = 0) -> tuple:
    """B4n row: the CMC (B->A) population loss of the normalised linear student, bounded for
    the Gaussian-perturbed student Q (docs/theory.md, B4n). Returns (rows, wide).

    ``s`` holds ``x`` (n, d) target inputs and ``z`` (n, k) teacher features of the pairs the
    prior did not see, ``W`` the student, ``W_prior`` the prior mean (a student fitted on the
    other pairs), ``bank`` teacher features of source samples independent of the teacher,
    ``tau``, ``tuple_size``, and optional ``x_pop``, ``z_pop`` fresh pairs on which the
    stochastic student's population loss is measured (one independent posterior draw per
    tuple).
    """
    what = "E_{W~Q} L_pop(W): stage-2 population CMC (B->A) tuple loss of the perturbed student"
    st = "E_Q L_pop <= b kl^-1(g_hat_up / b, (KL(Q||P) + ln(2 sqrt n G / delta)) / n), g per pair"
    keys = ("b4n_total", "b4n_empirical", "b4n_empirical_exact_mgf", "b4n_kl_over_n",
            "b4n_pop_loss_stochastic", "b4n_nu")
    wide = dict.fromkeys(keys, NAN)
    if reason or s is None:
        return [_row("B4n", "", what, st, reason=reason or "needs the stage-2 pair arrays", K=K)], wide
    nb = bounds.normalized_distillation_bound(s["x"], s["z"], s["W"], s["W_prior"], s["bank"],
                                              tau=s["tau"], tuple_size=s["tuple_size"], seed=seed,
                                              delta=delta)
    wide.update(b4n_total=nb.total, b4n_empirical=nb.empirical,
                b4n_empirical_exact_mgf=nb.empirical_exact_mgf, b4n_kl_over_n=nb.complexity,
                b4n_nu=nb.nu)
    measured = slack = NAN
    if s.get("x_pop") is not None:
        x, z = np.asarray(s["x_pop"], np.float64), np.asarray(s["z_pop"], np.float64)
        N = int(s["tuple_size"])
        rng = np.random.default_rng([seed, 7])
        n_t = x.shape[0] // N
        W = np.asarray(s["W"], np.float64)
        # one posterior draw per tuple: normalize(W' x) = normalize(W x + nu ||x|| xi) in law
        v = x @ W.T
        xi = rng.standard_normal(v.shape)
        v = v + nb.nu * np.linalg.norm(x, axis=1, keepdims=True) * xi
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        measured = _cmc_tuple_loss_np(u, z, nb.tau, N)
        slack = nb.loss_range * bounds.hoeffding_slack(n_t, delta_test)
        wide["b4n_pop_loss_stochastic"] = measured
    row = _bound_row(nb, "B4n", "", what, st, nb.total, measured, slack, n=nb.n, K=K, delta=delta)
    row["vacuous"] = nb.vacuous
    return [row], wide


def _infonce_tuple_loss_stochastic(x1, x2, W, sigma, tau, N, rng) -> tuple:
    """Symmetric O1 tuple loss of the stochastic encoder ``normalize((W + sigma E) x)``, one
    independent ``E`` (i.i.d. N(0, 1) entries) per tuple of N consecutive view pairs (float64,
    log-sum-exp). Returns (mean over tuples, number of tuples)."""
    n_t = x1.shape[0] // N
    out = np.empty(n_t)
    for t0 in range(0, n_t, 64):
        tt = min(n_t, t0 + 64) - t0
        Ws = W[None] + sigma * rng.standard_normal((tt,) + W.shape)
        a = x1[t0 * N:(t0 + tt) * N].reshape(tt, N, -1)
        bb = x2[t0 * N:(t0 + tt) * N].reshape(tt, N, -1)
        u = np.einsum("tkd,tnd->tnk", Ws, a)
        v = np.einsum("tkd,tnd->tnk", Ws, bb)
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        logits = np.einsum("tik,tjk->tij", u, v) / tau
        diag = np.einsum("tii->ti", logits)
        row = np.logaddexp.reduce(logits, axis=2) - diag
        col = np.logaddexp.reduce(logits, axis=1) - diag
        out[t0:t0 + tt] = 0.5 * (row.mean(axis=1) + col.mean(axis=1))
    return float(out.mean()), n_t


#: B5n keys of :attr:`Certificate.wide` (stage-1 statistics and the bound's terms).
STAGE1_KEYS = PART_KEYS["B5"]


def stage1_normalized_rows(s: Optional[Mapping], *, delta: float, delta_test: float, K=NAN,
                           reason: str = "", seed: int = 0) -> tuple:
    """B5n row: the stage-1 population O1 (symmetric InfoNCE) loss of the normalised linear
    encoder, bounded for the Gaussian-perturbed encoder Q (docs/theory.md, B5n). Returns
    (rows, wide).

    ``s`` holds ``x``, ``x_pos`` (n, d) the two views of the samples the prior did not see,
    ``W`` the trained encoder, ``W_prior`` the prior mean (an encoder trained on the other
    samples), ``sample_candidates`` (fresh view inputs, see
    :func:`~cmcd_theory.bounds.normalized_ssl_bound`), ``tau``, ``tuple_size``, ``n_draws``;
    optional ``x_pop``, ``x_pop_pos`` (fresh view pairs on which the stochastic encoder's
    population loss is measured, one weight draw per tuple) and the stage-1 statistics
    ``ssl_train_loss``, ``ssl_pop_loss``, ``ssl_gap``, ``ssl_pop_loss_se`` (reported as they are).
    """
    what = "E_{W~Q} L_pop(W): stage-1 population O1 (symmetric InfoNCE) tuple loss of the perturbed encoder"
    st = "E_Q L_pop <= b kl^-1(Y_up / b, (KL(Q||P) + ln(2 sqrt n G / delta)) / n), Y per sample, fresh candidates"
    wide = dict.fromkeys(STAGE1_KEYS, NAN)
    if s is not None:
        for k in ("ssl_train_loss", "ssl_pop_loss", "ssl_gap", "ssl_pop_loss_se"):
            if s.get(k) is not None:
                wide[k] = float(s[k])
    if reason or s is None:
        return [_row("B5n", "", what, st, reason=reason or "needs the stage-1 sample arrays", K=K)], wide
    nb = bounds.normalized_ssl_bound(s["x"], s["x_pos"], s["W"], s["W_prior"],
                                     s["sample_candidates"], tau=s["tau"],
                                     tuple_size=s["tuple_size"], seed=seed, delta=delta,
                                     n_draws=s.get("n_draws", 1))
    wide.update(b5n_total=nb.total, b5n_empirical=nb.empirical,
                b5n_empirical_mean_encoder=nb.empirical_mean_encoder, b5n_kl_over_n=nb.complexity,
                b5n_nu=nb.nu)
    measured = slack = NAN
    if s.get("x_pop") is not None:
        W = nb.centre_scale * np.asarray(s["W"], np.float64)
        measured, n_t = _infonce_tuple_loss_stochastic(
            np.asarray(s["x_pop"], np.float64), np.asarray(s["x_pop_pos"], np.float64), W,
            nb.sigma, nb.tau, nb.tuple_size, np.random.default_rng([seed, 11]))
        # the population estimate: n_t fresh tuples of a [0, b] loss
        slack = nb.loss_range * bounds.hoeffding_slack(n_t, delta_test)
        wide["b5n_pop_loss_stochastic"] = measured
    row = _bound_row(nb, "B5n", "", what, st, nb.total, measured, slack, n=nb.n, K=K, delta=delta)
    row["vacuous"] = nb.vacuous
    return [row], wide


# ---- the certificate -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Certificate:
    """Every bound of one run: ``rows`` (dicts with :data:`ROW_KEYS` first) and ``wide``
    (:data:`WIDE_KEYS`, the columns a sweep row carries)."""

    rows: tuple
    wide: dict
    #: bound column of ``wide`` -> the total confidence its value spent (:data:`SPENDING`)
    spent: dict = dataclasses.field(default_factory=dict)

    def applicable(self) -> list:
        """The rows of the bounds that apply."""
        return [r for r in self.rows if r["applicable"]]

    def frame(self):
        """The rows as a pandas DataFrame (fixed keys first)."""
        import pandas as pd
        df = pd.DataFrame(list(self.rows))
        return df[list(ROW_KEYS) + [c for c in df.columns if c not in ROW_KEYS]]

    def format(self) -> str:
        """A readable fixed-width table: bound, what it bounds, measured, value, terms,
        delta, vacuous, holds, or the reason it does not apply."""
        head = ("bound", "bounds", "measured", "value", "empirical + complexity + confidence",
                "delta", "vacuous", "holds")
        lines = []
        for r in self.rows:
            what = r["bounds"].split(":")[0]
            if not r["applicable"]:
                lines.append((r["bound"], what, "", "", "not applicable: " + r["reason"], "", "", ""))
                continue
            terms = (" + " if r["kind"] == "upper" else " - ").join(
                f"{r[k]:.4g}" for k in ("empirical", "complexity", "confidence") if math.isfinite(r[k]))
            lines.append((r["bound"], what, _fmt(r["measured"]), _fmt(r["value"]), terms,
                          f"{r['delta']:.4g}", _yn(r["vacuous"]), _yn(r["holds"])))
        shown = [x for x in lines if x[3]] or lines[:1]   # applicable rows set the widths
        widths = [max(len(h), *(len(x[i]) for x in (lines if i < 2 else shown)))
                  for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
               "  ".join("-" * w for w in widths)]
        for x in lines:
            if x[2] == "" and x[4].startswith("not applicable"):
                out.append(("  ".join(c.ljust(w) for c, w in zip(x[:2], widths[:2])) + "  "
                            + x[4]).rstrip())
            else:
                out.append("  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip())
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def _fmt(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _yn(x) -> str:
    return "" if x is None else ("yes" if x else "no")


def _error_rate(W, b, z, y) -> float:
    scores = z @ W.T + (0.0 if b is None else b)
    return float(np.mean(np.argmax(scores, axis=1) != y))


def certify_features(train_features, train_labels, *, probe_weights=None, probe_bias=None,
                     num_classes: Optional[int] = None, test_features=None, test_labels=None,
                     source_test_features=None, source_test_labels=None, pair_source=None,
                     pair_target=None, pair_labels=None,
                     stage2: Optional[Stage2Stats | Mapping] = None,
                     stage2_normalized: Optional[Mapping] = None,
                     stage1: Optional[Stage1Stats | Mapping] = None,
                     stage1_normalized: Optional[Mapping] = None,
                     feature_norm_bound: Optional[float] = 1.0, label_free: bool = True,
                     tv_features_upper: Optional[float] = None,
                     tv_features_estimate: Optional[float] = None,
                     ground_truth: Optional[Mapping] = None,
                     err_B: Optional[float] = None, n_test: Optional[int] = None,
                     err_A_head: Optional[float] = None, n_test_source: Optional[int] = None,
                     not_applicable: Optional[Mapping[str, str]] = None,
                     delta: float = 0.05, delta_test: float = 0.05, seed: int = 0,
                     n_weight_samples: int = 1000, probe_l2: float = 1e-3,
                     probe_steps: int = 300) -> Certificate:
    r"""Every bound of docs/theory.md (B1-B5, B6) on features exported from any model.

    Args:
      train_features: (n, D) target features of the n labeled samples the probe was fit on
        (features of norm <= 1, e.g. L2-normalised, for B2's data-free form).
      train_labels: (n,) integer labels in [0, K).
      probe_weights, probe_bias: (K, D) and (K,) of the linear head ``argmax (W z + b)``;
        None: the toolkit's probe (:func:`~cmcd_theory.probe.fit_probe`, ridge ``probe_l2``,
        ``probe_steps`` full-batch Adam steps) is fitted on the training features.
      num_classes: K (default: ``probe_weights.shape[0]``, else the largest label + 1).
      test_features, test_labels: held-out labeled target features, independent of
        everything the bounds used; give the measured target error R_B.
      source_test_features, source_test_labels: teacher features of held-out labeled source
        samples; give R_A of the same head (B1b).
      pair_source, pair_target: (n_p, D) teacher and student features on held-out pairs; give
        the certified lower bound on TV(learned features) (``TV_lower``, B1).
      pair_labels: (n_p,) labels of the pairs (the TV of the joint laws, B1's quantity).
      stage2: :class:`Stage2Stats` (or a mapping of its fields) for B4; None: not applicable.
      stage1: :class:`Stage1Stats` (or a mapping) for B5; None: not applicable.
      stage1_normalized: the arrays of B5n (:func:`stage1_normalized_rows`); None: not
        applicable.
      feature_norm_bound: almost-sure bound on the probe features' norm (B2 data-free form);
        None: unknown.
      label_free: False if the encoder was trained on the n labeled samples (B2, B3 then do
        not apply).
      tv_features_upper, tv_features_estimate: a certified upper bound on TV(learned
        features) at level ``delta`` and a point estimate, where known (the synthetic
        Gaussian track); None on a user's features.
      ground_truth: ``tv_latent``, ``bayes_A``, ``bayes_B`` (and ``bayes_slack``) of a
        synthetic world (B1a, floor).
      err_B, n_test: the measured target error and its test-set size, instead of
        ``test_features``.
      err_A_head, n_test_source: likewise for the source error of the head.
      not_applicable: ``{family: reason}`` for families known not to apply (``"B1b"``,
        ``"B2"``, ``"B3"``, ``"B4"``, ``"B4n"``, ``"B5"``, ``"B5n"``, ``"probe"``: the probe certificate,
        min of B2 and B3 at a split delta, :func:`probe_certificate_rows`).
      delta: confidence of each bound, in (0, 1) (forms combined by min spend delta / 2 each).
      delta_test: failure probability of each held-out check, in (0, 1).
      seed: seeds B3's weight draws and the two-sample classifier's split.
      n_weight_samples: B3's Monte Carlo weight draws.
      probe_l2, probe_steps: the toolkit probe's ridge and steps; used to fit the probe when
        none is given, and always to fit B3p's prior mean on the first ``floor(n / 2)``
        training samples (docs/theory.md, B3p; B3p is evaluated on the other samples).

    Returns:
      :class:`Certificate`.

    Example:
      >>> rng = np.random.default_rng(0)
      >>> y = rng.integers(0, 2, 600)
      >>> z = np.stack([2.0 * y - 1, np.zeros(600)], 1) + 0.3 * rng.standard_normal((600, 2))
      >>> z /= np.linalg.norm(z, axis=1, keepdims=True)
      >>> cert = certify_features(z[:400], y[:400], test_features=z[400:],
      ...                         test_labels=y[400:], n_weight_samples=100)
      >>> [(r["bound"], r["applicable"]) for r in cert.rows][:4]
      [('B2_sample', True), ('B2_data_free', True), ('B3', True), ('B3p', True)]
      >>> b3 = [r for r in cert.rows if r["bound"] == "B3"][0]
      >>> b3["holds"], b3["value"] < 0.5
      (True, True)
    """
    delta = V.probability("delta", delta)
    delta_test = V.probability("delta_test", delta_test)
    seed = V.integer("seed", seed, lo=0)
    V.positive_int("n_weight_samples", n_weight_samples)
    label_free = V.boolean("label_free", label_free)
    na = dict(not_applicable or {})
    for fam in na:
        V.choice("not_applicable key", fam, ("B1b", "B2", "B3", "B4", "B4n", "B5", "B5n", "probe"))
    if feature_norm_bound is not None:
        feature_norm_bound = V.real("feature_norm_bound", feature_norm_bound, lo=0.0, lo_open=True)

    z = V.array("train_features", train_features, ndim=2)
    D = z.shape[1]
    y = V.labels("train_labels", train_labels, n=z.shape[0])
    if probe_weights is not None:
        W = V.array("probe_weights", probe_weights, ndim=2, shape=(None, D))
        K = W.shape[0]
        if K < 2:
            raise ValueError(f"probe_weights must have K >= 2 rows (classes), got {K}")
        if num_classes is not None and V.integer("num_classes", num_classes, lo=2) != K:
            raise ValueError(f"num_classes must equal probe_weights.shape[0] = {K}, got {num_classes}")
        b = None if probe_bias is None else V.array("probe_bias", probe_bias, shape=(K,))
    else:
        if probe_bias is not None:
            raise ValueError("probe_bias needs probe_weights (or give neither to fit the probe)")
        K = (V.integer("num_classes", num_classes, lo=2) if num_classes is not None
             else int(y.max()) + 1)
        if K < 2:
            raise ValueError(f"train_labels must hold at least 2 classes, got K = {K}")
    V.labels("train_labels", y, num_classes=K)
    if probe_weights is None:
        from cmcd_theory.probe import fit_probe
        fitted = fit_probe(z.astype(np.float32), y.astype(np.int32), K, l2=probe_l2,
                           steps=probe_steps)
        W, b = np.asarray(fitted["W"], np.float64), np.asarray(fitted["b"], np.float64)

    test = None
    if test_features is not None or test_labels is not None:
        if err_B is not None:
            raise ValueError("give test_features/test_labels or err_B, not both")
        zt = V.array("test_features", test_features, ndim=2, shape=(None, D))
        yt = V.labels("test_labels", test_labels, n=zt.shape[0], num_classes=K)
        err_B, n_test = _error_rate(W, b, zt, yt), zt.shape[0]
        test = (zt, yt)
    elif err_B is not None:
        err_B = V.real("err_B", err_B, lo=0.0, hi=1.0)
        n_test = V.positive_int("n_test", n_test)
    if source_test_features is not None or source_test_labels is not None:
        if err_A_head is not None:
            raise ValueError("give source_test_features/labels or err_A_head, not both")
        zs = V.array("source_test_features", source_test_features, ndim=2, shape=(None, D))
        ys = V.labels("source_test_labels", source_test_labels, n=zs.shape[0], num_classes=K)
        err_A_head, n_test_source = _error_rate(W, b, zs, ys), zs.shape[0]
    elif err_A_head is not None:
        err_A_head = V.real("err_A_head", err_A_head, lo=0.0, hi=1.0)
        n_test_source = V.positive_int("n_test_source", n_test_source or n_test)

    tv_lower = None
    if pair_source is not None or pair_target is not None:
        ps = V.array("pair_source", pair_source, ndim=2, min_rows=4)
        pt = V.array("pair_target", pair_target, ndim=2, shape=ps.shape)
        py = None if pair_labels is None else V.labels("pair_labels", pair_labels, n=ps.shape[0],
                                                        num_classes=K)
        import jax
        from cmcd_theory import divergences
        tv_lower = divergences.tv_classifier_lower_bound(
            jax.random.key(seed), ps, pt, py, py, num_classes=None if py is None else K, delta=delta)
    if tv_features_upper is not None:
        tv_features_upper = V.real("tv_features_upper", tv_features_upper, lo=0.0)
    stage2 = _stats(Stage2Stats, stage2, "stage2")
    stage1 = _stats(Stage1Stats, stage1, "stage1")

    n = z.shape[0]
    rows, wide = [], {}
    prior = None
    if label_free and not ("B3" in na and "probe" in na):
        prior = _fit_prior_probe(z, y, K, l2=probe_l2, steps=probe_steps)
    not_label_free = ("" if label_free else
                      "the features were trained on the labeled samples (B2, B3 need them label-free)")
    for part in (
        probe_rows(z, y, W, b, err_B=err_B, n_test=n_test, delta=delta, delta_test=delta_test,
                   seed=seed, n_weight_samples=n_weight_samples,
                   feature_norm_bound=feature_norm_bound,
                   reason_b2=na.get("B2", not_label_free), reason_b3=na.get("B3", not_label_free),
                   prior=prior, test=test),
        stage2_rows(stage2, delta=delta, delta_test=delta_test, K=K, reason=na.get("B4", "")),
        stage2_normalized_rows(stage2_normalized, delta=delta, delta_test=delta_test, K=K,
                               reason=na.get("B4n", ""), seed=seed),
        stage1_rows(stage1, delta=delta, delta_test=delta_test, K=K, reason=na.get("B5", "")),
        stage1_normalized_rows(stage1_normalized, delta=delta, delta_test=delta_test, K=K,
                               reason=na.get("B5n", ""), seed=seed),
        transfer_rows(err_B=err_B, n_test=n_test, err_A_head=err_A_head,
                      n_test_source=n_test_source, tv_features_upper=tv_features_upper,
                      tv_features_estimate=tv_features_estimate, tv_lower=tv_lower,
                      ground_truth=ground_truth, delta=delta, delta_test=delta_test, n=n, K=K,
                      reason_b1b=na.get("B1b", "")),
        probe_certificate_rows(z, y, W, b, err_B=err_B, n_test=n_test, delta=delta,
                               delta_test=delta_test, seed=seed,
                               n_weight_samples=n_weight_samples,
                               feature_norm_bound=feature_norm_bound,
                               reason=na.get("probe", not_label_free), prior=prior),
    ):
        rows.extend(part[0])
        wide.update(part[1])
    checked = [r["holds"] for r in rows if r["applicable"] and r["holds"] is not None]
    wide["bounds_hold"] = all(checked)
    wide = {k: wide.get(k, NAN) for k in WIDE_KEYS}
    return Certificate(rows=tuple(rows), wide=wide, spent=_spent(rows, wide))


def _spent(rows, wide) -> dict:
    """Total delta spent by each finite bound column of ``wide`` (sum over the rows behind it)."""
    delta_of = {r["bound"]: r["delta"] for r in rows if r["applicable"]}
    out = {}
    for col, names in SPENDING.items():
        if math.isfinite(wide.get(col, NAN)):
            out[col] = float(sum(delta_of[nm] for nm in names if nm in delta_of))
    return out


def _stats(cls, value, name):
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a {cls.__name__} or a mapping of its fields, got "
                         f"{type(value).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - fields
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)}; allowed: {sorted(fields)}")
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    missing = required - set(value)
    if missing:
        raise ValueError(f"{name} is missing {sorted(missing)}")
    return cls(**value)


# ---- the synthetic pipeline ------------------------------------------------------------------

GAUSSIAN_CHANNELS = ("attenuate", "noise", "rotate", "resample", "mispair")


def b1b_applies(world, cfg, method: str, t: Optional[float] = None) -> bool:
    """Whether the learned features' TV is certified (the Gaussian track of B1b): a CMCD
    method, linear observation maps and encoders with p = k, and a channel whose exact law of
    ``s_B | y_B`` at ``t`` is one Gaussian (:meth:`~cmcd_theory.worlds.Channel.law_B`; the
    built-in attenuate, noise and rotate, and any registered channel that states such a law)."""
    from cmcd_theory import worlds
    wc = world.config
    if not (method in ("cmc", "cmd", "l2") and cfg.encoder == "linear"
            and wc.observation == "linear" and (cfg.feature_dim or wc.latent_dim) == wc.latent_dim):
        return False
    if wc.channel in GAUSSIAN_CHANNELS:
        return True
    law = worlds.get_channel(wc.channel).law_B(wc, wc.t if t is None else float(t))
    return law is not None and len(law) == 1


def probe_bounds_apply(method: str) -> bool:
    """B2/B3 need label-free features of norm <= 1."""
    return method not in ("supervised", "oracle")


def b4_applies(cfg, method: str) -> bool:
    """B4 covers the linear student ``W clip(x)`` with raw features in the CMC / CMD loss."""
    return method in ("cmc", "cmd") and cfg.encoder == "linear" and cfg.distill.student_features == "raw"


def b4n_applies(cfg, method: str) -> bool:
    """B4n covers the linear student with normalised features in the CMC (B->A) loss."""
    return (method == "cmc" and cfg.encoder == "linear"
            and cfg.distill.student_features == "normalized")


def _stage2_normalized_inputs(world, cfg, seed, artifacts) -> dict:
    """B4n's arrays for a synthetic run: the prior mean is a student trained, with a key of its
    own, on the first half S1 of the m pairs; the bound uses the second half; the bank is the
    teacher features of all m pairs (independent of the teacher, which saw only stage-1 data).
    Both means are projected on the span of the S1 inputs (``W Pi``): on inputs in that span
    (all of them on the linear worlds, whose inputs lie in a k-dimensional subspace) the
    student ``W Pi`` is the trained one."""
    import jax
    import jax.numpy as jnp
    from cmcd_theory.pipeline import encoders
    from cmcd_theory.training import train_distill
    st = artifacts["stage2"]
    x, z = np.asarray(st["x_B"]), np.asarray(st["z_A"])
    h = x.shape[0] // 2
    _, enc_b = encoders(world, cfg)
    key = jax.random.fold_in(jax.random.key(seed), 4_000_004)
    prior = train_distill(key, enc_b, jnp.asarray(x[:h]), jnp.asarray(z[:h]), "cmc", cfg.distill)
    # projection on the span of the S1 inputs (a function of S1 only): weight directions the
    # inputs never reach are left at their random initialisation by training; both means drop them
    x1 = np.asarray(x[:h], np.float64)
    _, sv, vt = np.linalg.svd(x1, full_matrices=False)
    basis = vt[sv > 1e-6 * sv[0]]
    proj = basis.T @ basis
    return {"x": x[h:], "z": z[h:], "W": np.asarray(artifacts["student"]["W"], np.float64) @ proj,
            "W_prior": np.asarray(prior["W"], np.float64) @ proj, "bank": z, "tau": cfg.distill.tau,
            "tuple_size": cfg.tuple_size, "x_pop": np.asarray(st["x_B_pop"]),
            "z_pop": np.asarray(st["z_A_pop"])}


#: Fresh source samples (two views each) behind the stage-1 population losses of a certified run.
N_POP_SSL = 65536
#: B5n Monte Carlo: about this many (sample, weight draw) pairs in all (n_draws = ceil(this / n)).
B5N_MC_DRAWS = 16384


_FRESH_VIEWS = []


def _fresh_views():
    """Jitted ``(world, key, count) -> two views of count fresh source latents`` (built once)."""
    if not _FRESH_VIEWS:
        import functools
        import jax
        from cmcd_theory import worlds

        @functools.partial(jax.jit, static_argnums=2)
        def f(w, k, count):
            kl, kv = jax.random.split(k)
            return worlds.views(w, kv, worlds.sample_source(w, kl, count))
        _FRESH_VIEWS.append(f)
    return _FRESH_VIEWS[0]


def b5n_applies(cfg) -> bool:
    """B5n covers the linear encoder normalize(W clip(x)) that stage 1 trains with O1."""
    return cfg.encoder == "linear"


def _stage1_normalized_inputs(world, cfg, seed, teacher, n_pop: int = N_POP_SSL,
                              mc_draws: int = B5N_MC_DRAWS) -> dict:
    """B5n's arrays and the stage-1 statistics for a synthetic run (docs/theory.md, B5n).

    The teacher's key is the one :func:`~cmcd_theory.sweep.seed_keys` gives the seed (as
    :func:`~cmcd_theory.pipeline.run_pipeline` splits it); the M training latents are redrawn
    from it. Everything new comes from ``fold_in(teacher key, STAGE1_STATS_TAG + 1)``: the prior
    encoder, trained on the first half S1 of the M latents; one pair of views of each latent
    of the other half S2 (the bound's sample); the fresh candidates; the fresh population
    pairs. Both the trained and the prior weight are projected on the span of the S1 views
    (a function of S1 only; on every input in that span, which on the linear worlds is every
    input, the projected encoder is the trained one)."""
    import jax
    from cmcd_theory import worlds
    from cmcd_theory.pipeline import (STAGE1_STATS_TAG, source_world_config, stage1_statistics,
                                      train_teacher_on)
    from cmcd_theory.sweep import seed_keys
    sw = worlds.make_world(source_world_config(world.config))
    kt = seed_keys([seed])[0][0]
    stats = {k: float(v) for k, v in stage1_statistics(sw, kt, teacher, cfg, n_pop=n_pop).items()}
    lat = np.asarray(worlds.sample_source(sw, jax.random.split(kt)[0], cfg.M))
    h = cfg.M // 2
    k_prior, k_v1, k_v2, k_cand, k_pop = jax.random.split(
        jax.random.fold_in(kt, STAGE1_STATS_TAG + 1), 5)
    prior = train_teacher_on(sw, k_prior, jax.numpy.asarray(lat[:h]), cfg)
    a1, b1 = (np.asarray(v, np.float64) for v in worlds.views(sw, k_v1, jax.numpy.asarray(lat[:h])))
    x, xp = (np.asarray(v, np.float64) for v in worlds.views(sw, k_v2, jax.numpy.asarray(lat[h:])))
    _, sv, vt = np.linalg.svd(np.concatenate([a1, b1]), full_matrices=False)
    basis = vt[sv > 1e-6 * sv[0]]
    proj = basis.T @ basis

    def fresh(k, count):
        v1, v2 = _fresh_views()(sw, k, count)
        return np.asarray(v1, np.float64), np.asarray(v2, np.float64)

    xq, xq_pos = fresh(k_pop, n_pop)
    n = cfg.M - h
    return {"x": x, "x_pos": xp, "W": np.asarray(teacher["W"], np.float64) @ proj,
            "W_prior": np.asarray(prior["W"], np.float64) @ proj,
            "sample_candidates": lambda blk, count: fresh(jax.random.fold_in(k_cand, blk), count)[0],
            "tau": cfg.ssl.tau, "tuple_size": cfg.tuple_size,
            "n_draws": max(1, -(-mc_draws // n)), "x_pop": xq, "x_pop_pos": xq_pos, **stats}


def certify_stage1(world, cfg, seed: int, teacher, *, delta: float = 0.05,
                   delta_test: float = 0.05, n_pop: int = N_POP_SSL,
                   mc_draws: int = B5N_MC_DRAWS) -> dict:
    """Stage 1 alone (B5n and the stage-1 statistics) for a stage-1 teacher of the synthetic
    pipeline trained with the key the seed gives (:func:`~cmcd_theory.sweep.seed_keys`), as
    ``{"wide", "rows", "spent"}``: what :func:`certify` reports with ``parts=("B5",)``,
    without stages 2 and 3 (the convergence-in-M experiment trains only stage 1).
    ``n_pop``: fresh samples behind the population losses; ``mc_draws``: about this many
    (sample, weight draw) pairs in B5n's Monte Carlo."""
    delta = V.probability("delta", delta)
    delta_test = V.probability("delta_test", delta_test)
    n_pop = V.integer("n_pop", n_pop, lo=cfg.tuple_size)
    mc_draws = V.positive_int("mc_draws", mc_draws)
    if not b5n_applies(cfg):
        rows, wide = stage1_normalized_rows(None, delta=delta, delta_test=delta_test,
                                            reason="B5n covers the linear encoder normalize(W clip(x))")
    else:
        rows, wide = stage1_normalized_rows(
            _stage1_normalized_inputs(world, cfg, seed, teacher, n_pop, mc_draws),
            delta=delta, delta_test=delta_test, seed=seed)
    full = {k: wide.get(k, NAN) for k in WIDE_KEYS}
    return {"wide": wide, "rows": [r for r in rows if r["applicable"]], "spent": _spent(rows, full)}


def certify(world, cfg, method: str, t: float, seed: int, metrics: dict, artifacts: dict, *,
            delta: float = 0.05, delta_test: float = 0.05, n_tv_mc: int = 50_000,
            n_weight_samples: int = 1000, parts: tuple = ("B1b", "B2", "B3", "B4")) -> dict:
    """All applicable bounds of one synthetic pipeline run (B6), as ``{"wide", "rows",
    "certificate"}``: :func:`certify_features` on the run's arrays, with what only a known
    world gives (exact latent TV and Bayes errors; the certified TV of learned features on the
    Gaussian track).

    Args:
      world: the run's world (its config's t is ignored; ``t`` is used).
      cfg: the run's :class:`~cmcd_theory.pipeline.PipelineConfig`.
      method: the run's method.
      t: channel knob of the run.
      seed: the run's seed (seeds the Monte Carlo parts of B1b and B3).
      metrics: ``err_B, err_A_head, distill_train_loss, distill_pop_loss, student_norm,
        sum_sq_inputs, tv_latent, bayes_A, bayes_B`` (floats; NaN where not applicable).
      artifacts: host arrays ``probe {"W","b"}``, ``z_train``, ``y_train``, ``student``,
        ``teacher``.
      delta: confidence budget of each bound (B2 and B4 spend delta / 2 on each of their two
        forms, so the minimum of the forms holds with probability >= 1 - delta).
      delta_test: failure probability of each test-set check.
      n_tv_mc: Monte Carlo draws per class for the Gaussian-track TV.
      n_weight_samples: weight draws for B3's Monte Carlo term.
      parts: which of the data-dependent bounds to compute (B1a and the Bayes floor, which
        cost nothing, are always reported); ``"probe"`` is the probe certificate
        (:func:`probe_certificate_rows`: min of B2 and B3 with delta split over them);
        ``"B5"`` records the stage-1 statistics and B5n (:func:`stage1_normalized_rows`; it
        trains a prior encoder on half the M samples, so it is not among the defaults).

    Returns:
      ``wide``: :data:`WIDE_KEYS` (NaN where not applicable); ``rows``: the applicable rows
      of the certificate; ``certificate``: the :class:`Certificate` with every row;
      ``spent``: the confidence spent by each bound column (:attr:`Certificate.spent`).
    """
    from cmcd_theory import divergences
    allowed = ("B1b", "B2", "B3", "B4", "probe", "B5")
    unknown = set(parts) - set(allowed)
    if unknown:
        raise ValueError(f"parts must be among {allowed}, got {sorted(unknown)}")
    wc = world.config
    K = wc.num_classes
    na = {p: "not requested (parts)" for p in allowed if p not in parts}
    na["B5"] = ("B5 covers raw features in the O1 loss; stage 1 trains normalised features "
                "(B5n covers them)")
    stage1n = None
    if "B5" in parts and b5n_applies(cfg) and artifacts.get("teacher") is not None:
        stage1n = _stage1_normalized_inputs(world, cfg, seed, artifacts["teacher"])
    else:
        na["B5n"] = ("not requested (parts)" if "B5" not in parts else
                     "B5n covers the linear encoder normalize(W clip(x)) of a run with a teacher")
    tv = None
    if "B1b" not in na:
        if b1b_applies(world, cfg, method, t):
            tv = divergences.gaussian_feature_tv(world, artifacts["teacher"]["W"],
                                                 artifacts["student"]["W"], t=t, n=n_tv_mc,
                                                 seed=seed, delta=delta)
        else:
            na["B1b"] = ("TV of learned features is certified only on the Gaussian track (linear "
                         "maps and encoders, p = k, CMCD methods, a channel whose law of s_B given "
                         "y_B is one Gaussian)")
    if not probe_bounds_apply(method):
        why = ("features trained on the labels" if method == "supervised"
               else "raw latents: not learned features of norm <= 1")
        na.setdefault("B2", why)
        na.setdefault("B3", why)
        na.setdefault("probe", why)
    stage2 = None
    if "B4" not in na:
        if b4_applies(cfg, method):
            dc = cfg.distill
            stage2 = Stage2Stats(
                loss=method, train_loss=float(metrics["distill_train_loss"]),
                tau=dc.tau if method == "cmc" else dc.tau_b, tuple_size=cfg.tuple_size, m=cfg.m,
                student_norm=float(metrics["student_norm"]), input_radius=wc.input_radius(),
                feature_dim=cfg.feature_dim or wc.latent_dim,
                sum_sq_inputs=float(metrics["sum_sq_inputs"]),
                pop_loss=float(metrics["distill_pop_loss"]), n_pop=cfg.n_pop)
        else:
            na["B4"] = "B4 covers the linear student W clip(x) with raw features in the CMC/CMD loss"
    stage2n = None
    if "B4" in parts and b4n_applies(cfg, method):
        stage2n = _stage2_normalized_inputs(world, cfg, seed, artifacts)
    else:
        na["B4n"] = ("not requested (parts)" if "B4" not in parts else
                     "B4n covers the linear student normalize(W clip(x)) in the CMC loss")
    err_a = metrics.get("err_A_head", NAN)
    has_a = method in ("cmc", "cmd", "l2") and err_a is not None and np.isfinite(err_a)
    gt = {k: float(metrics[k]) for k in ("tv_latent", "bayes_A", "bayes_B") if k in metrics}
    gt["bayes_slack"] = 0.0  # eps*_A, eps*_B are exact (G5b quadrature)
    probe = artifacts["probe"]
    if artifacts.get("z_test") is not None:
        # held-out arrays: the deterministic error (as err_B) and the stochastic probes' errors
        test = {"test_features": np.asarray(artifacts["z_test"], np.float64),
                "test_labels": np.asarray(artifacts["y_test"])}
    else:
        test = {"err_B": float(metrics["err_B"]), "n_test": cfg.n_test}
    cert = certify_features(
        np.asarray(artifacts["z_train"], np.float64), np.asarray(artifacts["y_train"]),
        probe_weights=np.asarray(probe["W"], np.float64), probe_bias=np.asarray(probe["b"], np.float64),
        stage2=stage2, stage2_normalized=stage2n, stage1_normalized=stage1n,
        tv_features_upper=None if tv is None else tv.upper,
        tv_features_estimate=None if tv is None else tv.estimate, ground_truth=gt,
        **test, err_A_head=float(err_a) if has_a else None, n_test_source=cfg.n_test,
        not_applicable=na, delta=delta, delta_test=delta_test, seed=seed,
        n_weight_samples=n_weight_samples, probe_l2=cfg.probe_l2, probe_steps=cfg.probe_steps)
    return {"wide": dict(cert.wide), "rows": cert.applicable(), "certificate": cert,
            "spent": dict(cert.spent)}


# ---- the npz route and the command line --------------------------------------------------------

#: npz names read by :func:`load_npz` (besides ``stage1_<field>`` and ``stage2_<field>``).
NPZ_ARRAYS = ("train_features", "train_labels", "probe_weights", "probe_bias", "num_classes",
              "test_features", "test_labels", "source_test_features", "source_test_labels",
              "pair_source", "pair_target", "pair_labels", "feature_norm_bound", "label_free")
_NPZ_SCALARS = ("num_classes", "feature_norm_bound", "label_free")


def load_npz(path) -> dict:
    """Read RUN.npz (schema in the module docstring) into keyword arguments of
    :func:`certify_features`. Every error names the file and the array at fault."""
    import os
    import zipfile
    path = os.fspath(path)
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"cannot read {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"cannot read {path}: not a numpy .npz archive ({type(e).__name__})") from None
    if not hasattr(f, "files"):
        raise ValueError(f"{path}: a single array (.npy), not an .npz archive of named arrays")
    raw = {}
    with f:
        for k in f.files:
            try:
                raw[k] = f[k]
            except ValueError:
                raise ValueError(f"{path}: array {k!r} holds Python objects; save plain numeric "
                                 f"or string arrays") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"{path}: array {k!r} cannot be read ({type(e).__name__})") from None
    if not raw:
        raise ValueError(f"{path}: no arrays in the file (train_features and train_labels are "
                         f"required)")
    stage = {"stage1": {}, "stage2": {}}
    kwargs: dict = {}
    allowed_stage = {"stage1": {f.name for f in dataclasses.fields(Stage1Stats)},
                     "stage2": {f.name for f in dataclasses.fields(Stage2Stats)}}
    for k, a in raw.items():
        prefix = k.split("_", 1)[0]
        if prefix in stage and "_" in k:
            field = k.split("_", 1)[1]
            if field not in allowed_stage[prefix]:
                raise ValueError(f"{path}: unknown array {k!r}; {prefix}_ fields are "
                                 f"{sorted(allowed_stage[prefix])}")
            stage[prefix][field] = _scalar(path, k, a)
        elif k in NPZ_ARRAYS:
            kwargs[k] = _scalar(path, k, a) if k in _NPZ_SCALARS else a
        else:
            raise ValueError(f"{path}: unknown array {k!r}; allowed: {', '.join(NPZ_ARRAYS)}, "
                             f"stage1_<field>, stage2_<field>")
    for req, what in (("train_features", "(n, D) float"), ("train_labels", "(n,) int")):
        if req not in kwargs:
            raise ValueError(f"{path}: missing array {req!r}, shape {what}")
    for prefix, cls in (("stage1", Stage1Stats), ("stage2", Stage2Stats)):
        if not stage[prefix]:
            continue
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in stage[prefix]]
        if missing:
            raise ValueError(f"{path}: missing array {prefix}_{missing[0]} (the {prefix}_ arrays "
                             f"go together; missing: {', '.join(prefix + '_' + m for m in missing)})")
        try:
            kwargs[prefix] = cls(**stage[prefix])
        except ValueError as e:
            raise ValueError(f"{path}: {prefix}_{e}") from None
    return kwargs


def _scalar(path, name, a):
    a = np.asarray(a)
    if a.ndim != 0 and a.size != 1:
        raise ValueError(f"{path}: array {name!r} must be a scalar, got shape {a.shape}")
    v = a.reshape(()).item()
    return v.decode() if isinstance(v, bytes) else v


_EPILOG = """\
output columns (one row per bound and form; --out writes them as CSV):
  bound, form          B2_sample, B2_data_free, B3, B4_*, B5_*, B1b, TV_lower, B1a, floor
  bounds, statement    what the bound bounds, and the inequality
  measured, value      the held-out measurement and the bound's value
  empirical, complexity, confidence
                       the bound's terms (plus each bound's own named terms, e.g. rho, kl)
  delta                the confidence it spent (delta / 2 per form where forms are min-combined)
  slack                the held-out measurement's Hoeffding slack at --delta-test
  applicable, reason   whether it applies, and why not
  vacuous, holds       value >= the trivial bound; measured within value up to the slack

RUN.npz: train_features (n, D) float and train_labels (n,) int are required; optional
probe_weights (K, D), probe_bias (K,), test_features / test_labels, source_test_features /
source_test_labels, pair_source / pair_target / pair_labels, num_classes, feature_norm_bound,
label_free, stage2_<field> (B4) and stage1_<field> (B5): see the README section "Certify your
own run". The run is not resumed or cached: each call recomputes every bound (seconds).
Invalid input: one line on stderr, exit status 2."""


def build_parser():
    """The ``cmcd-certify`` argument parser."""
    p = V.parser("cmcd-certify", "Every bound of docs/theory.md on features exported from any "
                 "model (B1-B6), from one .npz file.", _EPILOG)
    p.add_argument("run", metavar="RUN.npz", help="the run's arrays (schema below)")
    p.add_argument("--out", default=None, help="write the table as CSV here")
    p.add_argument("--delta", type=V.arg(V.probability, "--delta"), default=0.05,
                   help="confidence of each bound, in (0, 1)")
    p.add_argument("--delta-test", type=V.arg(V.probability, "--delta-test"), default=0.05,
                   help="failure probability of each held-out check, in (0, 1)")
    p.add_argument("--seed", type=V.arg(V.integer, "--seed", lo=0), default=0,
                   help="seed of B3's weight draws and of the two-sample split (>= 0)")
    p.add_argument("--weight-samples", type=V.arg(V.positive_int, "--weight-samples"),
                   default=1000, help="B3's Monte Carlo weight draws (>= 1)")
    return p


def run(argv=None) -> Certificate:
    """Parse ``argv``, certify RUN.npz, print the table (and write ``--out``)."""
    args = build_parser().parse_args(argv)
    kwargs = load_npz(args.run)
    cert = certify_features(**kwargs, delta=args.delta, delta_test=args.delta_test,
                            seed=args.seed, n_weight_samples=args.weight_samples)
    print(cert.format())
    checked = [r for r in cert.rows if r["holds"] is not None]
    print(f"\n{len(cert.applicable())} of {len(cert.rows)} bounds apply; "
          f"{sum(r['holds'] for r in checked)} of {len(checked)} checked on held-out data hold.")
    if args.out:
        import os
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        cert.frame().to_csv(args.out, index=False)
        print(f"table -> {args.out}")
    return cert


def main(argv=None) -> int:
    """``cmcd-certify`` / ``python -m cmcd_theory.certify``: exit status 0, or 2 with one line
    on stderr for invalid input."""
    V.cli(run, argv, prog="cmcd-certify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
