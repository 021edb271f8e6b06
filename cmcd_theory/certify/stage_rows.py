"""Rows of the bounds on the encoders' population tuple losses: B4 and B5 (Rademacher, raw
features; data-free and sample forms at ``delta / 2`` each) and B4n and B5n (PAC-Bayes-kl on
normalised features, for the Gaussian-perturbed student or encoder).

* :func:`stage2_rows` (B4) and :func:`stage1_rows` (B5): ``L_pop <= Lhat + 2 Rad +
  confidence`` over i.i.d. tuples, from :class:`~cmcd_theory.certify.stats.Stage2Stats` /
  :class:`~cmcd_theory.certify.stats.Stage1Stats`; ``b4_total`` / ``b5_total`` are the minima
  over the two forms.
* :func:`stage2_normalized_rows` (B4n) and :func:`stage1_normalized_rows` (B5n): the
  population CMC (B->A) and O1 losses of the perturbed linear student / encoder, from the
  training arrays, each checked against the measured loss of the stochastic model on fresh
  pairs (docs/theory.md, B4n and B5n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cmcd_theory import bounds
from cmcd_theory.certify.certificate import B4N_KEYS, PART_KEYS
from cmcd_theory.certify.rows import NAN, _bound_row, _row
from cmcd_theory.certify.stats import Stage1Stats, Stage2Stats


def _tuple_rows(
    family: str, stats, bound_fn, what: str, *, delta: float, delta_test: float, K, reason: str
) -> tuple:
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
        assert size is not None  # stats is set here (a reason above otherwise)
        n_t = bounds.tuple_split(size, stats.tuple_size)
        tb = bound_fn(n_t, form, delta / 2)
        wide[f"{key}_{form}_total"] = tb.total
        wide[f"{key}_{form}_gap"] = tb.total - stats.train_loss
        measured, slack = NAN, NAN
        if stats.pop_loss is not None:
            # the population loss is estimated on n_pop / N fresh tuples of a [0, b] loss
            measured = stats.pop_loss
            slack = tb.loss_range * bounds.hoeffding_slack(
                bounds.tuple_split(stats.n_pop, stats.tuple_size), delta_test
            )
            wide[f"{key}_pop_slack"] = slack
        rows.append(
            _bound_row(
                tb,
                f"{family}_{form}",
                form,
                what,
                st,
                tb.total,
                measured,
                slack,
                n=size,
                K=K,
                delta=delta / 2,
            )
        )
    totals = [wide[f"{key}_{f}_total"] for f in ("data_free", "sample")]
    wide[f"{key}_total"] = min((t for t in totals if math.isfinite(t)), default=NAN)
    if stats is not None:
        wide[f"{key}_gap"] = wide[f"{key}_total"] - stats.train_loss
    return rows, wide


def stage2_rows(
    stats: Stage2Stats | None, *, delta: float, delta_test: float, K=NAN, reason: str = ""
) -> tuple:
    """B4 rows (data-free and sample forms, ``delta / 2`` each). Returns (rows, wide): rows
    ``B4_data_free`` and ``B4_sample`` (:data:`~cmcd_theory.certify.certificate.ROW_KEYS`
    and the bound's terms), wide columns ``b4_data_free_total``, ``b4_sample_total``,
    ``b4_total`` (their minimum), ``b4_*_gap`` (total minus the training loss) and
    ``b4_pop_slack`` (the measured population loss's slack)."""

    def fn(n_t, form, d):
        return bounds.distillation_bound(
            stats.train_loss,
            n_t,
            stats.tuple_size,
            stats.tau,
            stats.student_norm,
            stats.input_radius,
            stats.feature_dim,
            d,
            loss=stats.loss,
            form=form,
            sum_sq_norms=stats.sum_sq_inputs if form == "sample" else None,
        )

    return _tuple_rows(
        "B4",
        stats,
        fn,
        "L_pop: stage-2 population tuple loss (distillation)",
        delta=delta,
        delta_test=delta_test,
        K=K,
        reason=reason,
    )


def stage1_rows(
    stats: Stage1Stats | None, *, delta: float, delta_test: float, K=NAN, reason: str = ""
) -> tuple:
    """B5 rows (data-free and sample forms, ``delta / 2`` each). Returns (rows, wide): rows
    ``B5_data_free``, ``B5_sample`` and the ``b5_*`` columns named as :func:`stage2_rows`'s
    ``b4_*``."""

    def fn(n_t, form, d):
        return bounds.ssl_bound(
            stats.train_loss,
            n_t,
            stats.tuple_size,
            stats.tau,
            stats.encoder_norm,
            stats.input_radius,
            stats.feature_dim,
            d,
            form=form,
            sum_sq_norms=stats.sum_sq_inputs if form == "sample" else None,
        )

    return _tuple_rows(
        "B5",
        stats,
        fn,
        "L_pop: stage-1 population InfoNCE tuple loss",
        delta=delta,
        delta_test=delta_test,
        K=K,
        reason=reason,
    )


def _cmc_tuple_loss_np(u, z, tau, N) -> float:
    """Mean B->A CMC per-anchor loss over the disjoint tuples of N rows (float64, log-sum-exp)."""
    n_t = u.shape[0] // N
    uu = u[: n_t * N].reshape(n_t, N, -1)
    zz = z[: n_t * N].reshape(n_t, N, -1)
    logits = np.einsum("tik,tjk->tij", uu, zz) / tau
    lse = np.logaddexp.reduce(logits, axis=2)
    return float(np.mean(lse - np.einsum("tii->ti", logits)))


def stage2_normalized_rows(
    s: Mapping | None, *, delta: float, delta_test: float, K=NAN, reason: str = "", seed: int = 0
) -> tuple:
    """B4n row: the CMC (B->A) population loss of the normalised linear student, bounded for
    the Gaussian-perturbed student Q (docs/theory.md, B4n). Returns (rows, wide): the row
    ``B4n`` and the columns ``b4n_total``, ``b4n_empirical``, ``b4n_empirical_exact_mgf``,
    ``b4n_kl_over_n``, ``b4n_pop_loss_stochastic`` (measured on ``x_pop``), ``b4n_nu``.

    ``s`` holds ``x`` (n, d) target inputs and ``z`` (n, k) teacher features of the pairs the
    prior did not see, ``W`` the student, ``W_prior`` the prior mean (a student fitted on the
    other pairs), ``bank`` teacher features of source samples independent of the teacher,
    ``tau``, ``tuple_size``, and optional ``x_pop``, ``z_pop`` fresh pairs on which the
    stochastic student's population loss is measured (one independent posterior draw per
    tuple).
    """
    what = "E_{W~Q} L_pop(W): stage-2 population CMC (B->A) tuple loss of the perturbed student"
    st = "E_Q L_pop <= b kl^-1(g_hat_up / b, (KL(Q||P) + ln(2 sqrt n G / delta)) / n), g per pair"
    wide = dict.fromkeys(B4N_KEYS, NAN)
    if reason or s is None:
        return [
            _row("B4n", "", what, st, reason=reason or "needs the stage-2 pair arrays", K=K)
        ], wide
    nb = bounds.normalized_distillation_bound(
        s["x"],
        s["z"],
        s["W"],
        s["W_prior"],
        s["bank"],
        tau=s["tau"],
        tuple_size=s["tuple_size"],
        seed=seed,
        delta=delta,
    )
    wide.update(
        b4n_total=nb.total,
        b4n_empirical=nb.empirical,
        b4n_empirical_exact_mgf=nb.empirical_exact_mgf,
        b4n_kl_over_n=nb.complexity,
        b4n_nu=nb.nu,
    )
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
        a = x1[t0 * N : (t0 + tt) * N].reshape(tt, N, -1)
        bb = x2[t0 * N : (t0 + tt) * N].reshape(tt, N, -1)
        u = np.einsum("tkd,tnd->tnk", Ws, a)
        v = np.einsum("tkd,tnd->tnk", Ws, bb)
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        logits = np.einsum("tik,tjk->tij", u, v) / tau
        diag = np.einsum("tii->ti", logits)
        row = np.logaddexp.reduce(logits, axis=2) - diag
        col = np.logaddexp.reduce(logits, axis=1) - diag
        out[t0 : t0 + tt] = 0.5 * (row.mean(axis=1) + col.mean(axis=1))
    return float(out.mean()), n_t


#: B5n keys of :attr:`Certificate.wide` (stage-1 statistics and the bound's terms).
STAGE1_KEYS = PART_KEYS["B5"]


def stage1_normalized_rows(
    s: Mapping | None, *, delta: float, delta_test: float, K=NAN, reason: str = "", seed: int = 0
) -> tuple:
    """B5n row: the stage-1 population O1 (symmetric InfoNCE) loss of the normalised linear
    encoder, bounded for the Gaussian-perturbed encoder Q (docs/theory.md, B5n). Returns
    (rows, wide): the row ``B5n`` and the columns :data:`STAGE1_KEYS` (the stage-1
    statistics ``ssl_*`` as given, ``b5n_total``, ``b5n_empirical``,
    ``b5n_empirical_mean_encoder``, ``b5n_kl_over_n``, ``b5n_pop_loss_stochastic``,
    ``b5n_nu``).

    ``s`` holds ``x``, ``x_pos`` (n, d) the two views of the samples the prior did not see,
    ``W`` the trained encoder, ``W_prior`` the prior mean (an encoder trained on the other
    samples), ``sample_candidates`` (fresh view inputs, see
    :func:`~cmcd_theory.bounds.normalized_ssl_bound`), ``tau``, ``tuple_size``, ``n_draws``;
    optional ``x_pop``, ``x_pop_pos`` (fresh view pairs on which the stochastic encoder's
    population loss is measured, one weight draw per tuple) and the stage-1 statistics
    ``ssl_train_loss``, ``ssl_pop_loss``, ``ssl_gap``, ``ssl_pop_loss_se`` (reported as they are).
    """
    what = (
        "E_{W~Q} L_pop(W): stage-1 population O1 (symmetric InfoNCE) tuple loss of the "
        "perturbed encoder"
    )
    st = (
        "E_Q L_pop <= b kl^-1(Y_up / b, (KL(Q||P) + ln(2 sqrt n G / delta)) / n), Y per sample, "
        "fresh candidates"
    )
    wide = dict.fromkeys(STAGE1_KEYS, NAN)
    if s is not None:
        for k in ("ssl_train_loss", "ssl_pop_loss", "ssl_gap", "ssl_pop_loss_se"):
            if s.get(k) is not None:
                wide[k] = float(s[k])
    if reason or s is None:
        return [
            _row("B5n", "", what, st, reason=reason or "needs the stage-1 sample arrays", K=K)
        ], wide
    nb = bounds.normalized_ssl_bound(
        s["x"],
        s["x_pos"],
        s["W"],
        s["W_prior"],
        s["sample_candidates"],
        tau=s["tau"],
        tuple_size=s["tuple_size"],
        seed=seed,
        delta=delta,
        n_draws=s.get("n_draws", 1),
    )
    wide.update(
        b5n_total=nb.total,
        b5n_empirical=nb.empirical,
        b5n_empirical_mean_encoder=nb.empirical_mean_encoder,
        b5n_kl_over_n=nb.complexity,
        b5n_nu=nb.nu,
    )
    measured = slack = NAN
    if s.get("x_pop") is not None:
        W = nb.centre_scale * np.asarray(s["W"], np.float64)
        measured, n_t = _infonce_tuple_loss_stochastic(
            np.asarray(s["x_pop"], np.float64),
            np.asarray(s["x_pop_pos"], np.float64),
            W,
            nb.sigma,
            nb.tau,
            nb.tuple_size,
            np.random.default_rng([seed, 11]),
        )
        # the population estimate: n_t fresh tuples of a [0, b] loss
        slack = nb.loss_range * bounds.hoeffding_slack(n_t, delta_test)
        wide["b5n_pop_loss_stochastic"] = measured
    row = _bound_row(nb, "B5n", "", what, st, nb.total, measured, slack, n=nb.n, K=K, delta=delta)
    row["vacuous"] = nb.vacuous
    return [row], wide
