"""The synthetic-run API: :func:`certify` certifies a run of the toolkit's own pipeline (a
:class:`~cmcd_theory.worlds.World`, a :class:`~cmcd_theory.learn.pipeline.PipelineConfig` and
the run's metrics and artifacts); :func:`certify_stage1` certifies a stage-1 teacher alone.

:func:`certify` adds what only a known world gives -- the exact latent TV and Bayes errors
(B1a, the floor), the certified TV of learned features on the Gaussian track (B1b) -- decides
which bounds cover the run (``b1b_applies``, ``probe_bounds_apply``, ``b4_applies``,
``b4n_applies``, ``b5n_applies``), builds the normalised bounds' inputs (B4n, B5n: a prior
trained on half the samples, the rest for the bound) and calls
:func:`~cmcd_theory.certify.features.certify_features`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory import validation as V
from cmcd_theory import worlds
from cmcd_theory.certify.certificate import WIDE_KEYS, _spent
from cmcd_theory.certify.features import certify_features
from cmcd_theory.certify.rows import NAN
from cmcd_theory.certify.stage_rows import stage1_normalized_rows
from cmcd_theory.certify.stats import Stage2Stats
from cmcd_theory.learn import divergences
from cmcd_theory.learn.pipeline import (
    STAGE1_STATS_TAG,
    encoders,
    seed_keys,
    source_world_config,
    stage1_statistics,
    train_teacher_on,
)
from cmcd_theory.learn.training import train_distill

GAUSSIAN_CHANNELS = ("attenuate", "noise", "rotate", "resample", "mispair")


def b1b_applies(world, cfg, method: str, t: float | None = None) -> bool:
    """Whether the learned features' TV is certified (the Gaussian track of B1b): a CMCD
    method, linear observation maps and encoders with p = k, and a channel whose exact law of
    ``s_B | y_B`` at ``t`` is one Gaussian (:meth:`~cmcd_theory.worlds.Channel.law_B`; the
    built-in attenuate, noise and rotate, and any registered channel that states such a law)."""
    wc = world.config
    if not (
        method in ("cmc", "cmd", "l2")
        and cfg.encoder == "linear"
        and wc.observation == "linear"
        and (cfg.feature_dim or wc.latent_dim) == wc.latent_dim
    ):
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
    return (
        method in ("cmc", "cmd")
        and cfg.encoder == "linear"
        and cfg.distill.student_features == "raw"
    )


def b4n_applies(cfg, method: str) -> bool:
    """B4n covers the linear student with normalised features in the CMC (B->A) loss."""
    return (
        method == "cmc" and cfg.encoder == "linear" and cfg.distill.student_features == "normalized"
    )


def b5n_applies(cfg) -> bool:
    """B5n covers the linear encoder normalize(W clip(x)) that stage 1 trains with O1."""
    return cfg.encoder == "linear"


# ---- the normalised bounds' inputs (B4n, B5n) ---------------------------------------------------


def _stage2_normalized_inputs(world, cfg, seed, artifacts) -> dict:
    """B4n's arrays for a synthetic run: the prior mean is a student trained, with a key of its
    own, on the first half S1 of the m pairs; the bound uses the second half; the bank is the
    teacher features of all m pairs (independent of the teacher, which saw only stage-1 data).
    Both means are projected on the span of the S1 inputs (``W Pi``): on inputs in that span
    (all of them on the linear worlds, whose inputs lie in a k-dimensional subspace) the
    student ``W Pi`` is the trained one."""
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
    return {
        "x": x[h:],
        "z": z[h:],
        "W": np.asarray(artifacts["student"]["W"], np.float64) @ proj,
        "W_prior": np.asarray(prior["W"], np.float64) @ proj,
        "bank": z,
        "tau": cfg.distill.tau,
        "tuple_size": cfg.tuple_size,
        "x_pop": np.asarray(st["x_B_pop"]),
        "z_pop": np.asarray(st["z_A_pop"]),
    }


#: Fresh source samples (two views each) behind the stage-1 population losses of a certified run.
N_POP_SSL = 65536
#: B5n Monte Carlo: about this many (sample, weight draw) pairs in all (n_draws = ceil(this / n)).
B5N_MC_DRAWS = 16384


_FRESH_VIEWS: list[Callable] = []


def _fresh_views():
    """Jitted ``(world, key, count) -> two views of count fresh source latents`` (built once)."""
    if not _FRESH_VIEWS:

        @functools.partial(jax.jit, static_argnums=2)
        def f(w, k, count):
            kl, kv = jax.random.split(k)
            return worlds.views(w, kv, worlds.sample_source(w, kl, count))

        _FRESH_VIEWS.append(f)
    return _FRESH_VIEWS[0]


def _stage1_normalized_inputs(
    world, cfg, seed, teacher, n_pop: int = N_POP_SSL, mc_draws: int = B5N_MC_DRAWS
) -> dict:
    """B5n's arrays and the stage-1 statistics for a synthetic run (docs/theory.md, B5n).

    The teacher's key is the one :func:`~cmcd_theory.learn.pipeline.seed_keys` gives the seed (as
    :func:`~cmcd_theory.learn.pipeline.run_pipeline` splits it); the M training latents are redrawn
    from it. Everything new comes from ``fold_in(teacher key, STAGE1_STATS_TAG + 1)``: the prior
    encoder, trained on the first half S1 of the M latents; one pair of views of each latent
    of the other half S2 (the bound's sample); the fresh candidates; the fresh population
    pairs. Both the trained and the prior weight are projected on the span of the S1 views
    (a function of S1 only; on every input in that span, which on the linear worlds is every
    input, the projected encoder is the trained one)."""
    sw = worlds.make_world(source_world_config(world.config))
    kt = seed_keys([seed])[0][0]
    stats = {k: float(v) for k, v in stage1_statistics(sw, kt, teacher, cfg, n_pop=n_pop).items()}
    lat = np.asarray(worlds.sample_source(sw, jax.random.split(kt)[0], cfg.M))
    h = cfg.M // 2
    k_prior, k_v1, k_v2, k_cand, k_pop = jax.random.split(
        jax.random.fold_in(kt, STAGE1_STATS_TAG + 1), 5
    )
    prior = train_teacher_on(sw, k_prior, jnp.asarray(lat[:h]), cfg)
    a1, b1 = (np.asarray(v, np.float64) for v in worlds.views(sw, k_v1, jnp.asarray(lat[:h])))
    x, xp = (np.asarray(v, np.float64) for v in worlds.views(sw, k_v2, jnp.asarray(lat[h:])))
    _, sv, vt = np.linalg.svd(np.concatenate([a1, b1]), full_matrices=False)
    basis = vt[sv > 1e-6 * sv[0]]
    proj = basis.T @ basis

    def fresh(k, count):
        v1, v2 = _fresh_views()(sw, k, count)
        return np.asarray(v1, np.float64), np.asarray(v2, np.float64)

    xq, xq_pos = fresh(k_pop, n_pop)
    n = cfg.M - h
    return {
        "x": x,
        "x_pos": xp,
        "W": np.asarray(teacher["W"], np.float64) @ proj,
        "W_prior": np.asarray(prior["W"], np.float64) @ proj,
        "sample_candidates": lambda blk, count: fresh(jax.random.fold_in(k_cand, blk), count)[0],
        "tau": cfg.ssl.tau,
        "tuple_size": cfg.tuple_size,
        "n_draws": max(1, -(-mc_draws // n)),
        "x_pop": xq,
        "x_pop_pos": xq_pos,
        **stats,
    }


# ---- the entry points ---------------------------------------------------------------------------


def certify_stage1(
    world,
    cfg,
    seed: int,
    teacher,
    *,
    delta: float = 0.05,
    delta_test: float = 0.05,
    n_pop: int = N_POP_SSL,
    mc_draws: int = B5N_MC_DRAWS,
) -> dict:
    """Stage 1 alone (B5n and the stage-1 statistics) for a stage-1 teacher of the synthetic
    pipeline trained with the key the seed gives (:func:`~cmcd_theory.learn.pipeline.seed_keys`), as
    ``{"wide", "rows", "spent"}``: what :func:`certify` reports with ``parts=("B5",)``,
    without stages 2 and 3 (the convergence-in-M experiment trains only stage 1).
    ``n_pop``: fresh samples behind the population losses; ``mc_draws``: about this many
    (sample, weight draw) pairs in B5n's Monte Carlo."""
    delta = V.probability("delta", delta)
    delta_test = V.probability("delta_test", delta_test)
    n_pop = V.integer("n_pop", n_pop, lo=cfg.tuple_size)
    mc_draws = V.positive_int("mc_draws", mc_draws)
    if not b5n_applies(cfg):
        rows, wide = stage1_normalized_rows(
            None,
            delta=delta,
            delta_test=delta_test,
            reason="B5n covers the linear encoder normalize(W clip(x))",
        )
    else:
        rows, wide = stage1_normalized_rows(
            _stage1_normalized_inputs(world, cfg, seed, teacher, n_pop, mc_draws),
            delta=delta,
            delta_test=delta_test,
            seed=seed,
        )
    full = {k: wide.get(k, NAN) for k in WIDE_KEYS}
    return {"wide": wide, "rows": [r for r in rows if r["applicable"]], "spent": _spent(rows, full)}


def certify(
    world,
    cfg,
    method: str,
    t: float,
    seed: int,
    metrics: dict,
    artifacts: dict,
    *,
    delta: float = 0.05,
    delta_test: float = 0.05,
    n_tv_mc: int = 50_000,
    n_weight_samples: int = 1000,
    parts: tuple = ("B1b", "B2", "B3", "B4"),
) -> dict:
    """All applicable bounds of one synthetic pipeline run (B6), as ``{"wide", "rows",
    "certificate"}``: :func:`certify_features` on the run's arrays, with what only a known
    world gives (exact latent TV and Bayes errors; the certified TV of learned features on the
    Gaussian track).

    Args:
      world: the run's world (its config's t is ignored; ``t`` is used).
      cfg: the run's :class:`~cmcd_theory.learn.pipeline.PipelineConfig`.
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
    na = _not_requested(parts)
    stage1n = _b5n_arrays(world, cfg, seed, artifacts, parts, na)
    tv = _certified_feature_tv(
        world, cfg, method, t, seed, artifacts, na, n_tv_mc=n_tv_mc, delta=delta
    )
    _probe_reasons(method, na)
    stage2 = _b4_stats(world, cfg, method, metrics, na)
    stage2n = _b4n_arrays(world, cfg, method, seed, artifacts, parts, na)
    cert = certify_features(
        **_run_measurements(cfg, method, metrics, artifacts),
        stage2=stage2,
        stage2_normalized=stage2n,
        stage1_normalized=stage1n,
        tv_features_upper=None if tv is None else tv.upper,
        tv_features_estimate=None if tv is None else tv.estimate,
        not_applicable=na,
        delta=delta,
        delta_test=delta_test,
        seed=seed,
        n_weight_samples=n_weight_samples,
        probe_l2=cfg.probe_l2,
        probe_steps=cfg.probe_steps,
    )
    return {
        "wide": dict(cert.wide),
        "rows": cert.applicable(),
        "certificate": cert,
        "spent": dict(cert.spent),
    }


# ---- what covers a run: each family's inputs, or the reason (in ``na``) it does not apply ------


def _not_requested(parts) -> dict:
    """``{family: reason}`` for the families :func:`certify` leaves out: those not in
    ``parts``, and B5 (raw features in the O1 loss; stage 1 trains normalised ones, which B5n
    covers)."""
    allowed = ("B1b", "B2", "B3", "B4", "probe", "B5")
    unknown = set(parts) - set(allowed)
    if unknown:
        raise ValueError(f"parts must be among {allowed}, got {sorted(unknown)}")
    na = {p: "not requested (parts)" for p in allowed if p not in parts}
    na["B5"] = (
        "B5 covers raw features in the O1 loss; stage 1 trains normalised features "
        "(B5n covers them)"
    )
    return na


def _b5n_arrays(world, cfg, seed, artifacts, parts, na: dict) -> dict | None:
    """B5n's arrays (:func:`_stage1_normalized_inputs`) when ``"B5"`` is requested and B5n
    covers the run's teacher; else None, with the reason in ``na["B5n"]``."""
    if "B5" in parts and b5n_applies(cfg) and artifacts.get("teacher") is not None:
        return _stage1_normalized_inputs(world, cfg, seed, artifacts["teacher"])
    na["B5n"] = (
        "not requested (parts)"
        if "B5" not in parts
        else "B5n covers the linear encoder normalize(W clip(x)) of a run with a teacher"
    )
    return None


def _certified_feature_tv(
    world, cfg, method, t, seed, artifacts, na: dict, *, n_tv_mc: int, delta: float
):
    """B1b's certified TV of the learned features at level ``delta``
    (:func:`~cmcd_theory.learn.divergences.gaussian_feature_tv`, ``n_tv_mc`` draws per class)
    on the Gaussian track; else None, with the reason in ``na["B1b"]`` (unless already
    there)."""
    if "B1b" in na:
        return None
    if b1b_applies(world, cfg, method, t):
        return divergences.gaussian_feature_tv(
            world,
            artifacts["teacher"]["W"],
            artifacts["student"]["W"],
            t=t,
            n=n_tv_mc,
            seed=seed,
            delta=delta,
        )
    na["B1b"] = (
        "TV of learned features is certified only on the Gaussian track (linear "
        "maps and encoders, p = k, CMCD methods, a channel whose law of s_B given "
        "y_B is one Gaussian)"
    )
    return None


def _probe_reasons(method: str, na: dict) -> None:
    """Records in ``na`` why B2, B3 and the probe certificate do not apply to ``method``'s
    features (trained on the labels, or raw latents), unless a reason is already there."""
    if not probe_bounds_apply(method):
        why = (
            "features trained on the labels"
            if method == "supervised"
            else "raw latents: not learned features of norm <= 1"
        )
        na.setdefault("B2", why)
        na.setdefault("B3", why)
        na.setdefault("probe", why)


def _b4_stats(world, cfg, method: str, metrics: dict, na: dict) -> Stage2Stats | None:
    """B4's :class:`Stage2Stats` of the run's linear student with raw features; else None,
    with the reason in ``na["B4"]`` (unless already there)."""
    if "B4" in na:
        return None
    if not b4_applies(cfg, method):
        na["B4"] = "B4 covers the linear student W clip(x) with raw features in the CMC/CMD loss"
        return None
    wc = world.config
    dc = cfg.distill
    return Stage2Stats(
        loss=method,
        train_loss=float(metrics["distill_train_loss"]),
        tau=dc.tau if method == "cmc" else dc.tau_b,
        tuple_size=cfg.tuple_size,
        m=cfg.m,
        student_norm=float(metrics["student_norm"]),
        input_radius=wc.input_radius(),
        feature_dim=cfg.feature_dim or wc.latent_dim,
        sum_sq_inputs=float(metrics["sum_sq_inputs"]),
        pop_loss=float(metrics["distill_pop_loss"]),
        n_pop=cfg.n_pop,
    )


def _b4n_arrays(world, cfg, method: str, seed, artifacts, parts, na: dict) -> dict | None:
    """B4n's arrays (:func:`_stage2_normalized_inputs`) when ``"B4"`` is requested and the
    run's student is linear with normalised features in the CMC loss; else None, with the
    reason in ``na["B4n"]``."""
    if "B4" in parts and b4n_applies(cfg, method):
        return _stage2_normalized_inputs(world, cfg, seed, artifacts)
    na["B4n"] = (
        "not requested (parts)"
        if "B4" not in parts
        else "B4n covers the linear student normalize(W clip(x)) in the CMC loss"
    )
    return None


def _run_measurements(cfg, method: str, metrics: dict, artifacts: dict) -> dict:
    """:func:`certify_features`' arrays of the run: the probe's training set and head, the
    target error (on the held-out arrays, else ``err_B`` on ``cfg.n_test`` samples), the
    head's source error (CMCD methods) and the exact ground truth (G5b quadrature)."""
    err_a = metrics.get("err_A_head", NAN)
    has_a = method in ("cmc", "cmd", "l2") and err_a is not None and np.isfinite(err_a)
    gt = {k: float(metrics[k]) for k in ("tv_latent", "bayes_A", "bayes_B") if k in metrics}
    gt["bayes_slack"] = 0.0  # eps*_A, eps*_B are exact (G5b quadrature)
    probe = artifacts["probe"]
    if artifacts.get("z_test") is not None:
        # held-out arrays: the deterministic error (as err_B) and the stochastic probes' errors
        test: dict[str, Any] = {
            "test_features": np.asarray(artifacts["z_test"], np.float64),
            "test_labels": np.asarray(artifacts["y_test"]),
        }
    else:
        test = {"err_B": float(metrics["err_B"]), "n_test": cfg.n_test}
    return {
        "train_features": np.asarray(artifacts["z_train"], np.float64),
        "train_labels": np.asarray(artifacts["y_train"]),
        "probe_weights": np.asarray(probe["W"], np.float64),
        "probe_bias": np.asarray(probe["b"], np.float64),
        "ground_truth": gt,
        **test,
        "err_A_head": float(err_a) if has_a else None,
        "n_test_source": cfg.n_test,
    }
