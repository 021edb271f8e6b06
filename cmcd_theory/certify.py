"""Every bound of a pipeline run beside what it bounds (docs/theory.md, B6).

:func:`certify` takes one run's metrics and artifacts (as :func:`run_pipeline` or a sweep row
gives them) and returns

* ``wide``: columns for a sweep row (``b2_total``, ``b3_total``, ``b4_total``,
  ``tv_features_upper``, ...), and
* ``rows``: one row per (bound, form), with ``bound, measured, value, slack, holds,
  holds_strict`` and the bound's named terms, the long table of ``results/bounds_check.csv``.

Which bound applies where (each is asserted only where its assumptions hold):

* B1a (``eps*_B <= eps*_A + TV_latent``): every world.
* B1b (``R_B(h) <= R_A(h) + TV(learned features)``): the Gaussian track -- linear
  observation maps, linear encoders with ``p = k``, channel attenuate / noise / rotate.
* B2, B3 (probe): whenever the probe's features were learned without the labels (not the
  ``supervised`` baseline) and have norm <= 1 (not the ``oracle``, whose features are raw
  latents).
* B4 (stage 2 in m): linear student, ``student_features="raw"`` (the unnormalised feature the
  bound covers), methods cmc and cmd.
"""

from __future__ import annotations

import numpy as np

from cmcd_theory import bounds, divergences
from cmcd_theory.pipeline import PipelineConfig
from cmcd_theory.worlds import World

GAUSSIAN_CHANNELS = ("attenuate", "noise", "rotate")


def b1b_applies(world: World, cfg: PipelineConfig, method: str) -> bool:
    """Whether the learned features' TV is certified (the Gaussian track of B1b)."""
    wc = world.config
    return (method in ("cmc", "cmd", "l2") and cfg.encoder == "linear"
            and wc.observation == "linear" and wc.channel in GAUSSIAN_CHANNELS
            and (cfg.feature_dim or wc.latent_dim) == wc.latent_dim)


def probe_bounds_apply(method: str) -> bool:
    """B2/B3 need label-free features of norm <= 1."""
    return method not in ("supervised", "oracle")


def b4_applies(cfg: PipelineConfig, method: str) -> bool:
    return method in ("cmc", "cmd") and cfg.encoder == "linear" and cfg.distill.student_features == "raw"


def certify(world: World, cfg: PipelineConfig, method: str, t: float, seed: int, metrics: dict,
            artifacts: dict, *, delta: float = 0.05, delta_test: float = 0.05,
            n_tv_mc: int = 50_000, n_weight_samples: int = 1000,
            parts: tuple = ("B1b", "B2", "B3", "B4")) -> dict:
    """All applicable bounds of one run (B6), as ``{"wide": {...}, "rows": [...]}``.

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
        cost nothing, are always reported).
    """
    unknown = set(parts) - {"B1b", "B2", "B3", "B4"}
    if unknown:
        raise ValueError(f"parts must be among ('B1b', 'B2', 'B3', 'B4'), got {sorted(unknown)}")
    wc = world.config
    K, n = wc.num_classes, cfg.n
    wide: dict = {}
    rows: list = []
    measured = {k: metrics[k] for k in ("err_B", "bayes_A", "bayes_B", "tv_latent") if k in metrics}
    bayes_slack = 0.0 if K == 2 else 2 * bounds.hoeffding_slack(200_000, 0.005)  # bayes_error's MC
    if method in ("cmc", "cmd", "l2") and np.isfinite(metrics.get("err_A_head", np.nan)):
        measured["err_A_head"] = metrics["err_A_head"]

    if "B1b" in parts and b1b_applies(world, cfg, method):
        tv = divergences.gaussian_feature_tv(world, artifacts["teacher"]["W"], artifacts["student"]["W"],
                                             t=t, n=n_tv_mc, seed=seed, delta=delta)
        wide["tv_features"] = tv.estimate
        wide["tv_features_upper"] = measured["tv_features_upper"] = tv.upper

    if probe_bounds_apply(method) and {"B2", "B3"} & set(parts):
        z, y = np.asarray(artifacts["z_train"], np.float64), np.asarray(artifacts["y_train"])
        W, b = np.asarray(artifacts["probe"]["W"], np.float64), np.asarray(artifacts["probe"]["b"], np.float64)
        if "B2" in parts:
            # each form gets delta / 2, so their minimum (b2_total) holds with probability 1 - delta
            for form in ("sample", "data_free"):
                mb = bounds.margin_bound(z, y, W, b, delta / 2, form=form)
                wide[f"b2_{form}_total"] = mb.total
                rows.append(_row(mb.as_dict(), f"B2_{form}", metrics["err_B"], mb.total, cfg.n_test,
                                 delta_test, n=n, K=K, delta=delta))
            b2 = min(wide["b2_sample_total"], wide["b2_data_free_total"])
            wide["b2_total"] = measured["b2_total"] = b2
        if "B3" in parts:
            pb = bounds.pac_bayes_kl_bound(z, y, W, b, seed=seed, delta=delta,
                                           n_weight_samples=n_weight_samples)
            wide["b3_total"] = measured["b3_total"] = pb.total
            wide["b3_total_deterministic"] = pb.total_deterministic
            rows.append(_row(pb.as_dict(), "B3", metrics["err_B"], pb.total_deterministic, cfg.n_test,
                             delta_test, n=n, K=K, delta=delta))

    if "B4" in parts and b4_applies(cfg, method):
        dc = cfg.distill
        tau = dc.tau if method == "cmc" else dc.tau_b
        n_t = bounds.tuple_split(cfg.m, cfg.tuple_size)
        n_pop_t = bounds.tuple_split(cfg.n_pop, cfg.tuple_size)
        for form in ("data_free", "sample"):
            tb = bounds.distillation_bound(
                metrics["distill_train_loss"], n_t, cfg.tuple_size, tau, metrics["student_norm"],
                wc.input_radius(), cfg.feature_dim or wc.latent_dim, delta / 2, loss=method, form=form,
                sum_sq_norms=metrics["sum_sq_inputs"] if form == "sample" else None)
            wide[f"b4_{form}_total"] = tb.total
            # the population loss is estimated on n_pop / N fresh tuples of a [0, b] loss
            slack = tb.loss_range * bounds.hoeffding_slack(n_pop_t, delta_test)
            rows.append(_row(tb.as_dict(), f"B4_{form}", metrics["distill_pop_loss"], tb.total, None,
                             delta_test, n=cfg.m, K=K, delta=delta, slack=slack))
        wide["b4_total"] = min(wide["b4_data_free_total"], wide["b4_sample_total"])  # delta/2 each

    for r in bounds.end_to_end_report(measured, cfg.n_test, delta_test, bayes_slack=bayes_slack):
        if r.name in ("B2", "B3"):
            continue  # already in the long table with their terms
        d = r.as_dict()
        rows.append({"bound": d["name"], "statement": d["statement"], "measured": d["measured"],
                     "value": d["value"], "slack": d["slack"], "holds": d["holds"],
                     "holds_strict": d["holds_strict"], "n": n, "K": K, "delta": delta})
    wide["bounds_hold"] = all(r["holds"] for r in rows)
    return {"wide": wide, "rows": rows}


def _row(terms: dict, name: str, measured: float, value: float, n_test, delta_test, *, n, K, delta,
         slack=None):
    if slack is None:
        slack = bounds.hoeffding_slack(n_test, delta_test)
    terms = {k: v for k, v in terms.items() if k not in ("bound", "n", "delta", "total")}
    return {"bound": name, "measured": float(measured), "value": float(value), "slack": float(slack),
            "holds": bool(measured - slack <= value), "holds_strict": bool(measured + slack <= value),
            "n": n, "K": K, "delta": delta, **terms}
