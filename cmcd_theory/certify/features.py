"""The features API: :func:`certify_features`, every bound of docs/theory.md beside what it
bounds (B6), from plain arrays.

It takes what any framework can export as numpy arrays -- the target features and labels the
stage-3 probe was fit on, the probe's weights (or none: the toolkit's probe is fitted),
held-out labeled target (and source) features, teacher and student features on held-out
pairs, and the stage-1 / stage-2 statistics where known -- and returns a
:class:`~cmcd_theory.certify.certificate.Certificate`: one row per bound and form, with what it
bounds, the measured value, the bound's value and terms, the confidence ``delta`` it spent,
whether it applies (and why not), whether it is vacuous and whether it holds on the held-out
data.

The rows (:data:`~cmcd_theory.certify.certificate.ROW_KEYS`, plus each bound's own named
terms) and the bound families, one function each:

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
(:func:`~cmcd_theory.learn.divergences.tv_classifier_lower_bound`) is reported instead.

Example (two well-separated classes on the unit circle; B3 holds and is not vacuous):

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

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np

from cmcd_theory import validation as V
from cmcd_theory.certify.certificate import WIDE_KEYS, Certificate, _spent
from cmcd_theory.certify.probe import (
    NORM_RTOL,
    _fit_prior_probe,
    norm_rtol,
    probe_certificate_rows,
    probe_rows,
    start_monte_carlo,
)
from cmcd_theory.certify.rows import NAN, transfer_rows
from cmcd_theory.certify.stage_rows import (
    stage1_normalized_rows,
    stage1_rows,
    stage2_normalized_rows,
    stage2_rows,
)
from cmcd_theory.certify.stats import Stage1Stats, Stage2Stats, _stats
from cmcd_theory.learn import divergences
from cmcd_theory.learn.probe import fit_probe

#: Bound families that ``not_applicable`` may name.
_FAMILIES = ("B1b", "B2", "B3", "B4", "B4n", "B5", "B5n", "probe")
#: Most Monte Carlo weight draws B3 and B3p may take. Their Monte Carlo correction
#: ln(2 G / delta_mc) / (n N_w) is below 1e-4 at this many draws even for n = 1 (G = 11,
#: delta_mc = 0.0125), while the time grows as n K N_w: more draws only cost time.
MAX_WEIGHT_SAMPLES = 100_000


# fmt: off
# 33 parameters and calls that pass them on, packed: one per line (the formatter's layout)
# would take 36 lines for the signature alone and put the function past the house rule of
# 80 lines; the work is already split into the helpers below
def certify_features(train_features, train_labels, *, probe_weights=None, probe_bias=None,
                     num_classes: int | None = None, test_features=None, test_labels=None,
                     source_test_features=None, source_test_labels=None, pair_source=None,
                     pair_target=None, pair_labels=None,
                     stage2: Stage2Stats | Mapping | None = None,
                     stage2_normalized: Mapping | None = None,
                     stage1: Stage1Stats | Mapping | None = None,
                     stage1_normalized: Mapping | None = None,
                     feature_norm_bound: float | None = 1.0, label_free: bool = True,
                     tv_features_upper: float | None = None,
                     tv_features_estimate: float | None = None,
                     ground_truth: Mapping | None = None,
                     err_B: float | None = None, n_test: int | None = None,
                     err_A_head: float | None = None, n_test_source: int | None = None,
                     not_applicable: Mapping[str, str] | None = None,
                     delta: float = 0.05, delta_test: float = 0.05, seed: int = 0,
                     n_weight_samples: int = 1000, probe_l2: float = 1e-3,
                     probe_steps: int = 300, progress: bool = False) -> Certificate:
    r"""Every bound of docs/theory.md (B1-B5, B6) on features exported from any model.

    Args:
      train_features: (n, D) target features of the n labeled samples the probe was fit on
        (features of norm <= 1, e.g. L2-normalised, for B2's data-free form).
      train_labels: (n,) integer labels in [0, K).
      probe_weights, probe_bias: (K, D) and (K,) of the linear head ``argmax (W z + b)``;
        None: the toolkit's probe (:func:`~cmcd_theory.learn.probe.fit_probe`, ridge ``probe_l2``,
        ``probe_steps`` full-batch Adam steps) is fitted on the training features.
      num_classes: K (default: ``probe_weights.shape[0]``, else the largest label + 1 where
        the training labels hold every class below it and the other label arrays agree).
      test_features, test_labels: held-out labeled target features, independent of
        everything the bounds used; give the measured target error R_B.
      source_test_features, source_test_labels: teacher features of held-out labeled source
        samples; give R_A of the same head (B1b).
      pair_source, pair_target: (n_p, D) teacher and student features on held-out pairs; give
        the certified lower bound on TV(learned features) (``TV_lower``, B1); pair_labels:
        (n_p,) labels of the pairs (the TV of the joint laws, B1's quantity).
      stage2, stage1: :class:`Stage2Stats` / :class:`Stage1Stats` (or a mapping of the fields)
        for B4 / B5; stage2_normalized, stage1_normalized: the arrays of B4n / B5n
        (:func:`stage2_normalized_rows`, :func:`stage1_normalized_rows`). None: not applicable.
      feature_norm_bound: almost-sure bound on the probe features' norm (B2 data-free form;
        None: unknown), met up to the rounding of the features' dtype
        (:func:`~cmcd_theory.certify.probe.norm_rtol`: float16-normalised features qualify).
      label_free: False if the encoder was trained on the n labeled samples (no B2, B3).
      tv_features_upper, tv_features_estimate: a certified upper bound on TV(learned
        features) at level ``delta`` and a point estimate, where known (synthetic track).
      ground_truth: ``tv_latent``, ``bayes_A``, ``bayes_B`` (and ``bayes_slack``) of a
        synthetic world (B1a, floor).
      err_B, n_test: the measured target error and its test-set size (not with test arrays);
        err_A_head, n_test_source: likewise for the source error of the head.
      not_applicable: ``{family: reason}`` for families known not to apply (``"B1b"``,
        ``"B2"``, ``"B3"``, ``"B4"``, ``"B4n"``, ``"B5"``, ``"B5n"``, ``"probe"``: the probe
        certificate, min of B2 and B3 at a split delta, :func:`probe_certificate_rows`).
      delta, delta_test: confidence of each bound (forms combined by min spend delta / 2
        each) and failure probability of each held-out check, both in (0, 1).
      seed: seeds B3's weight draws and the two-sample classifier's split.
      n_weight_samples: B3's Monte Carlo weight draws, 1 to :data:`MAX_WEIGHT_SAMPLES`.
      probe_l2, probe_steps: the toolkit probe's ridge and steps; used to fit the probe when
        none is given, and always to fit B3p's prior mean on the first ``floor(n / 2)``
        training samples (docs/theory.md, B3p; B3p is evaluated on the other samples).
      progress: a progress bar of B3's Monte Carlo on stderr (a terminal, not ``CI=true``).

    Returns:
      :class:`Certificate` (example: the module docstring).
    """
    opt = _options(delta, delta_test, seed, label_free, n_weight_samples, not_applicable,
                   feature_norm_bound, probe_l2, probe_steps)
    _pairs_given(test_features, test_labels, source_test_features, source_test_labels,
                 pair_source, pair_target, pair_labels)
    z, y, W, b, K, rtol = _probe(train_features, train_labels, probe_weights, probe_bias,
                                 num_classes, (test_labels, source_test_labels, pair_labels),
                                 l2=probe_l2, steps=probe_steps)
    held = _held_out_errors(W, b, K, test_features, test_labels, err_B, n_test,
                            source_test_features, source_test_labels, err_A_head, n_test_source)
    tv = _feature_tv(K, pair_source, pair_target, pair_labels, tv_features_upper,
                     tv_features_estimate, seed=opt.seed, delta=opt.delta)
    stages = _stages(stage2, stage2_normalized, stage1, stage1_normalized)
    with _monte_carlo_bar(progress, z.shape[0], n_weight_samples, held["test"]):
        rows, wide = _family_rows(z, y, W, b, K, held, tv, stages, ground_truth,
                                  opt._replace(norm_rtol=rtol))
    return Certificate(rows=tuple(rows), wide=wide, spent=_spent(rows, wide))
# fmt: on


def _stages(stage2, stage2_normalized, stage1, stage1_normalized) -> dict:
    """The stage inputs of :func:`certify_features`, the statistics checked
    (:class:`Stage2Stats`, :class:`Stage1Stats`)."""
    return {
        "stage2": _stats(Stage2Stats, stage2, "stage2"),
        "stage2_normalized": stage2_normalized,
        "stage1": _stats(Stage1Stats, stage1, "stage1"),
        "stage1_normalized": stage1_normalized,
    }


class _Options(NamedTuple):
    """The checked options of :func:`certify_features` (``na``: its ``not_applicable``)."""

    delta: float
    delta_test: float
    seed: int
    label_free: bool
    n_weight_samples: int
    na: dict
    feature_norm_bound: float | None
    probe_l2: float
    probe_steps: int
    norm_rtol: float = NORM_RTOL


def _options(
    delta,
    delta_test,
    seed,
    label_free,
    n_weight_samples,
    not_applicable,
    feature_norm_bound,
    probe_l2,
    probe_steps,
) -> _Options:
    """:func:`certify_features`' options, checked in the order of its errors."""
    delta = V.probability("delta", delta)
    delta_test = V.probability("delta_test", delta_test)
    seed = V.integer("seed", seed, lo=0)
    V.integer("n_weight_samples", n_weight_samples, lo=1, hi=MAX_WEIGHT_SAMPLES)
    label_free = V.boolean("label_free", label_free)
    na = dict(not_applicable or {})
    for fam in na:
        V.choice("not_applicable key", fam, _FAMILIES)
    if feature_norm_bound is not None:
        feature_norm_bound = V.real("feature_norm_bound", feature_norm_bound, lo=0.0, lo_open=True)
    return _Options(
        delta,
        delta_test,
        seed,
        label_free,
        n_weight_samples,
        na,
        feature_norm_bound,
        probe_l2,
        probe_steps,
    )


@contextlib.contextmanager
def _monte_carlo_bar(progress: bool, n: int, n_weight_samples: int, test):
    """A progress bar of B3's Monte Carlo (point x draw pairs: ``n`` points for B3, the
    ``n - n // 2`` not seen by B3p's prior, 10 draws per test point for each stochastic probe)
    while the block runs, fed by :func:`cmcd_theory.bounds.pac_bayes_mc.monte_carlo_progress`;
    nothing unless ``progress`` and stderr is a terminal outside CI."""
    if not (progress and _interactive()):
        yield
        return
    from tqdm.auto import tqdm

    from cmcd_theory.bounds.pac_bayes_mc import monte_carlo_progress

    total = (n + n - n // 2) * n_weight_samples + (0 if test is None else 20 * len(test[1]))
    with (
        tqdm(
            total=total,
            desc="B3 Monte Carlo",
            unit="draw",
            unit_scale=True,
            file=sys.stderr,
            leave=False,
        ) as bar,
        monte_carlo_progress(bar.update),
    ):
        yield


def _interactive() -> bool:
    """stderr is a terminal and not a CI run (``CI`` unset, or not true / 1 / yes)."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def _pairs_given(
    test_features,
    test_labels,
    source_test_features,
    source_test_labels,
    pair_source,
    pair_target,
    pair_labels,
) -> None:
    """Arrays that only make sense together are given together: ``test_features`` with
    ``test_labels``, the source test pair likewise, ``pair_source`` with ``pair_target``, and
    ``pair_labels`` only with the pairs (named in the error, not a dtype of None)."""
    arrays = {
        "test_features": test_features,
        "test_labels": test_labels,
        "source_test_features": source_test_features,
        "source_test_labels": source_test_labels,
        "pair_source": pair_source,
        "pair_target": pair_target,
        "pair_labels": pair_labels,
    }
    for a, b in (
        ("test_features", "test_labels"),
        ("source_test_features", "source_test_labels"),
        ("pair_source", "pair_target"),
        ("pair_target", "pair_source"),
    ):
        if arrays[b] is not None and arrays[a] is None:
            raise ValueError(f"{b} needs {a} (give both, or neither)")
    if arrays["pair_labels"] is not None and arrays["pair_source"] is None:
        raise ValueError(
            "pair_labels needs pair_source and pair_target (give all three, or "
            "leave pair_labels out)"
        )


def _inferred_classes(y: np.ndarray, others: dict) -> int:
    """K inferred from the data (no probe weights, no ``num_classes``): the largest training
    label + 1, accepted only when nothing contradicts it -- every class 0..K-1 has a training
    sample, and every other label array given has the same largest label. Otherwise the
    count is ambiguous (one stray label 7 among labels 0..3 would make K = 8 everywhere), so
    ``num_classes`` must state it."""
    K = int(y.max()) + 1
    fix = "; pass num_classes (--num-classes) to state K"
    missing = np.setdiff1d(np.arange(K), y)
    if missing.size:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if missing.size > 5 else "")
        raise ValueError(
            f"train_labels have no sample of class(es) {shown} below their largest "
            f"label {K - 1}, so K = {K} (largest label + 1) is a guess{fix}"
        )
    for name, lab in others.items():
        a = None if lab is None else np.asarray(lab)
        if a is None or a.dtype.kind not in "iu" or a.ndim != 1 or a.size == 0:
            continue  # absent, or refused later with its own message
        k = int(a.max()) + 1
        if k != K:
            raise ValueError(
                f"train_labels give K = {K} classes (largest label {K - 1}) but "
                f"{name} give {k} (largest label {k - 1}){fix}"
            )
    return K


def _probe(
    train_features,
    train_labels,
    probe_weights,
    probe_bias,
    num_classes,
    other_labels: tuple,
    *,
    l2: float,
    steps: int,
) -> tuple:
    """The probe's training set and head, checked: ``(z, y, W, b, K, rtol)``. The head
    ``(W, b)`` is the one given, or the toolkit's probe fitted on ``(z, y)`` (ridge ``l2``,
    ``steps`` Adam steps); K is ``W``'s row count, else ``num_classes``, else inferred from
    the labels (:func:`_inferred_classes`, checked against ``other_labels``: the test, source
    test and pair labels); ``rtol`` the feature-norm slack of the features' dtype
    (:func:`~cmcd_theory.certify.probe.norm_rtol`)."""
    others = dict(zip(("test_labels", "source_test_labels", "pair_labels"), other_labels))
    z = V.array("train_features", train_features, ndim=2, min_cols=1)
    D = z.shape[1]
    y = V.labels("train_labels", train_labels, n=z.shape[0])
    if probe_weights is not None:
        W = V.array("probe_weights", probe_weights, ndim=2, shape=(None, D))
        K = W.shape[0]
        if K < 2:
            raise ValueError(f"probe_weights must have K >= 2 rows (classes), got {K}")
        if num_classes is not None and V.integer("num_classes", num_classes, lo=2) != K:
            raise ValueError(
                f"num_classes must equal probe_weights.shape[0] = {K}, got {num_classes}"
            )
        b = None if probe_bias is None else V.array("probe_bias", probe_bias, shape=(K,))
    else:
        if probe_bias is not None:
            raise ValueError("probe_bias needs probe_weights (or give neither to fit the probe)")
        K = (
            V.integer("num_classes", num_classes, lo=2)
            if num_classes is not None
            else _inferred_classes(y, others)
        )
        if K < 2:
            raise ValueError(f"train_labels must hold at least 2 classes, got K = {K}")
    V.labels("train_labels", y, num_classes=K)
    if probe_weights is None:
        fitted = fit_probe(z.astype(np.float32), y.astype(np.int32), K, l2=l2, steps=steps)
        W, b = np.asarray(fitted["W"], np.float64), np.asarray(fitted["b"], np.float64)
    return z, y, W, b, K, norm_rtol(np.asarray(train_features).dtype, z.shape[1])


def _error_rate(W, b, z, y) -> float:
    """0-1 error of the head ``argmax (W z + b)`` on ``(z, y)``."""
    scores = z @ W.T + (0.0 if b is None else b)
    return float(np.mean(np.argmax(scores, axis=1) != y))


def _held_out_errors(
    W,
    b,
    K,
    test_features,
    test_labels,
    err_B,
    n_test,
    source_test_features,
    source_test_labels,
    err_A_head,
    n_test_source,
) -> dict:
    """The head's measured errors: the target error R_B and the source error R_A of the same
    head, each measured on held-out features or given with its test-set size. Returns
    ``{"err_B", "n_test", "test", "err_A_head", "n_test_source"}`` (``test``: the target
    test arrays ``(z_t, y_t)``, or None)."""
    D = W.shape[1]
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
    return {
        "err_B": err_B,
        "n_test": n_test,
        "test": test,
        "err_A_head": err_A_head,
        "n_test_source": n_test_source,
    }


def _feature_tv(
    K,
    pair_source,
    pair_target,
    pair_labels,
    tv_features_upper,
    tv_features_estimate,
    *,
    seed: int,
    delta: float,
) -> dict:
    """What is known of TV(learned source, target features): the certified lower bound of a
    two-sample classifier on the held-out pairs (None without pairs; with ``pair_labels``, of
    the joint laws of features and labels) and the given upper bound and estimate, checked.
    Returns ``{"tv_lower", "tv_features_upper", "tv_features_estimate"}``."""
    tv_lower = None
    if pair_source is not None or pair_target is not None:
        ps = V.array("pair_source", pair_source, ndim=2, min_rows=4)
        pt = V.array("pair_target", pair_target, ndim=2, shape=ps.shape)
        py = (
            None
            if pair_labels is None
            else V.labels("pair_labels", pair_labels, n=ps.shape[0], num_classes=K)
        )
        tv_lower = divergences.tv_classifier_lower_bound(
            jax.random.key(seed), ps, pt, py, py, num_classes=None if py is None else K, delta=delta
        )
    if tv_features_upper is not None:
        tv_features_upper = V.real("tv_features_upper", tv_features_upper, lo=0.0)
    return {
        "tv_lower": tv_lower,
        "tv_features_upper": tv_features_upper,
        "tv_features_estimate": tv_features_estimate,
    }


def _family_rows(
    z, y, W, b, K, held: dict, tv: dict, stages: dict, ground_truth, opt: _Options
) -> tuple:
    """The rows of every family in the certificate's order (probe B2/B3, B4, B4n, B5, B5n,
    B1, probe certificate) and their ``wide`` columns (:data:`WIDE_KEYS`, NaN where not
    applicable; ``bounds_hold``: every applicable checked row holds). B3p's prior probe is
    fitted once, on the first half of the training samples, for B3p and the probe
    certificate. Returns (rows, wide)."""
    delta, delta_test, seed, na = opt.delta, opt.delta_test, opt.seed, opt.na
    feature_norm_bound, n_weight_samples = opt.feature_norm_bound, opt.n_weight_samples
    err_B, n_test = held["err_B"], held["n_test"]
    n = z.shape[0]
    rows, wide = [], {}
    prior, started = _start_b3(z, y, W, b, K, opt)
    not_label_free = (
        ""
        if opt.label_free
        else "the features were trained on the labeled samples (B2, B3 need them label-free)"
    )
    probe_kw = {
        "err_B": err_B,
        "n_test": n_test,
        "delta": delta,
        "delta_test": delta_test,
        "seed": seed,
        "n_weight_samples": n_weight_samples,
        "feature_norm_bound": feature_norm_bound,
        "prior": prior,
        "norm_rtol": opt.norm_rtol,
    }
    # the probe certificate's own B2 forms are computed while B3's draws are counted, not
    # after them (its B3 share then waits for the same draws as probe_rows)
    certificate = V.in_thread(
        probe_certificate_rows,
        z,
        y,
        W,
        b,
        name="cmcd-certify-probe-certificate",
        reason=na.get("probe", not_label_free),
        **probe_kw,
    )
    for part in (
        probe_rows(
            z,
            y,
            W,
            b,
            reason_b2=na.get("B2", not_label_free),
            reason_b3=na.get("B3", not_label_free),
            test=held["test"],
            **probe_kw,
        ),
        *_stage_parts(stages, K, opt),
        transfer_rows(
            err_B=err_B,
            n_test=n_test,
            err_A_head=held["err_A_head"],
            n_test_source=held["n_test_source"],
            **tv,
            ground_truth=ground_truth,
            delta=delta,
            delta_test=delta_test,
            n=n,
            K=K,
            reason_b1b=na.get("B1b", ""),
        ),
        certificate(),
    ):
        rows.extend(part[0])
        wide.update(part[1])
    for t in started:
        t.join()
    checked = [r["holds"] for r in rows if r["applicable"] and r["holds"] is not None]
    wide["bounds_hold"] = all(checked)
    wide = {k: wide.get(k, NAN) for k in WIDE_KEYS}
    return rows, wide


def _start_b3(z, y, W, b, K, opt: _Options) -> tuple:
    """``(prior, started)``: B3p's prior probe (:func:`_fit_prior_probe`, None where it is not
    fitted) and the threads of B3's and B3p's Monte Carlo weight draws, started now so that
    they run while the other families are computed (:func:`b3_forms` then finds them, or
    waits for them). Nothing is started where B3 and the probe certificate both do not apply
    (features not label-free, or both named in ``not_applicable``)."""
    prior, started = None, []
    if opt.label_free and not ("B3" in opt.na and "probe" in opt.na):
        # B3's draws start now and B3p's once its prior is fitted
        started.append(
            start_monte_carlo(z, y, W, b, seed=opt.seed, n_weight_samples=opt.n_weight_samples)
        )
        prior = _fit_prior_probe(z, y, K, l2=opt.probe_l2, steps=opt.probe_steps)
        if prior is not None:
            started.append(
                start_monte_carlo(
                    z, y, W, b, seed=opt.seed, prior=prior, n_weight_samples=opt.n_weight_samples
                )
            )
    return prior, started


def _stage_parts(stages: dict, K, opt: _Options) -> list:
    """The ``(rows, wide)`` of the stage families, in the certificate's order: B4 and B4n
    (stage 2), B5 and B5n (stage 1); a family named in ``not_applicable`` gets its reason."""
    delta, delta_test, seed, na = opt.delta, opt.delta_test, opt.seed, opt.na
    return [
        stage2_rows(
            stages["stage2"], delta=delta, delta_test=delta_test, K=K, reason=na.get("B4", "")
        ),
        stage2_normalized_rows(
            stages["stage2_normalized"],
            delta=delta,
            delta_test=delta_test,
            K=K,
            reason=na.get("B4n", ""),
            seed=seed,
        ),
        stage1_rows(
            stages["stage1"], delta=delta, delta_test=delta_test, K=K, reason=na.get("B5", "")
        ),
        stage1_normalized_rows(
            stages["stage1_normalized"],
            delta=delta,
            delta_test=delta_test,
            K=K,
            reason=na.get("B5n", ""),
            seed=seed,
        ),
    ]
