"""Stage-1 convergence in M: the O1 generalisation gap against the number M of source samples,
beside the certified B5n.

Left: the stage-1 gap (population minus training O1 tuple loss of the trained encoder, the
normalised InfoNCE the pipeline trains) against M on log-log axes, mean and 95% t-interval
over seeds; a point whose interval contains 0 is drawn as an upper limit (a down triangle at
the interval's upper end), never dropped; the log-log slope is fitted on the resolved points
with its 95% interval (the helpers of ``experiments.convergence_m``). Beside it the gap that
B5n certifies (bound minus training loss). Right: the losses themselves against M: training
and population loss of the trained encoder, the population loss of the Gaussian-perturbed
encoder that B5n bounds, B5n, and log N (the loss of an encoder that ignores its input: the
bound is non-vacuous below it).

Only stage 1 is trained (``cmcd_theory.learn.pipeline.train_teacher``, the keys of a sweep's
seed); ``cmcd_theory.certify.certify_stage1`` records the statistics and computes B5n.

Run: ``python -m experiments.convergence_M_stage1 [--quick] [--seeds S]``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common
from experiments.convergence_m import draw_gap, gap_summary, slope_with_interval

NAME = "convergence_M_stage1"
SEEDS = (2, 5)


def grid(quick: bool) -> list:
    return [256, 1024] if quick else [256, 1024, 4096, 16384]


def run(args) -> pd.DataFrame:
    import jax

    from cmcd_theory import worlds
    from cmcd_theory.certify import certify_stage1
    from cmcd_theory.learn.pipeline import seed_keys, source_world_config, train_teacher

    base = common.base_pipeline(args)
    world = worlds.make_world(source_world_config(worlds.WorldConfig()))
    train = jax.jit(train_teacher, static_argnames="cfg")
    rows = []
    for M in grid(args.quick):
        cfg = base.replace(M=M)
        for seed in range(args.seeds):
            teacher = train(world, seed_keys([seed])[0][0], cfg)
            res = certify_stage1(
                world, cfg, seed, teacher, delta=common.DELTA, delta_test=common.DELTA_TEST
            )
            (b5n,) = res["rows"] or [{}]
            rows.append(
                {
                    "M": M,
                    "seed": seed,
                    "tuple_size": cfg.tuple_size,
                    "tau": cfg.ssl.tau,
                    "ssl_steps": cfg.ssl.steps,
                    **res["wide"],
                    "b5n_gap": res["wide"]["b5n_total"] - res["wide"]["ssl_train_loss"],
                    "b5n_empirical_upper": b5n.get("empirical_upper", np.nan),
                    "b5n_confidence": b5n.get("confidence", np.nan),
                    "b5n_kappa": b5n.get("kappa", np.nan),
                    "b5n_n_draws": b5n.get("n_draws", np.nan),
                    "b5n_holds": b5n.get("holds"),
                    "b5n_delta": res["spent"].get("b5n_total"),
                }
            )
            if not args.no_progress:
                r = rows[-1]
                print(
                    f"[{NAME}] M={M} seed={seed}: gap {r['ssl_gap']:+.4f}, "
                    f"pop {r['ssl_pop_loss']:.4f}, "
                    f"B5n {r['b5n_total']:.3f} (stochastic pop {r['b5n_pop_loss_stochastic']:.3f})",
                    flush=True,
                )
    return pd.DataFrame(rows)


def findings(df: pd.DataFrame) -> dict:
    f = {}
    s = gap_summary(df, "M", "ssl_gap")
    res = s[s["resolved"] & (s["ssl_gap_mean"] > 0)]
    slope, half = slope_with_interval(res["M"], res["ssl_gap_mean"])
    f["gap_loglog_slope"] = round(slope, 3)
    f["gap_loglog_slope_ci95_halfwidth"] = round(half, 3)
    f["gap_slope_fitted_on_M"] = [int(v) for v in res["M"]]
    f["gap_unresolved_M_shown_as_upper_limits"] = [int(v) for v in s.loc[~s["resolved"], "M"]]
    log_n = math.log(int(df["tuple_size"].iloc[0]))
    f["log_N"] = round(log_n, 4)
    for M, g in df.groupby("M"):
        f[f"gap[M={M}]"] = common.fmt_ci(g["ssl_gap"], 4)
        f[f"pop_loss[M={M}]"] = common.fmt_ci(g["ssl_pop_loss"], 4)
        f[f"train_loss[M={M}]"] = common.fmt_ci(g["ssl_train_loss"], 4)
        f[f"pop_loss_stochastic[M={M}]"] = common.fmt_ci(g["b5n_pop_loss_stochastic"], 4)
        f[f"b5n[M={M}]"] = common.fmt_ci(g["b5n_total"], 3)
        f[f"b5n_over_pop_stochastic[M={M}]"] = round(
            float(np.median(g["b5n_total"] / g["b5n_pop_loss_stochastic"])), 3
        )
        f[f"b5n_over_pop[M={M}]"] = round(float(np.median(g["b5n_total"] / g["ssl_pop_loss"])), 3)
        f[f"b5n_below_log_N[M={M}]"] = bool((g["b5n_total"] < log_n).all())
        # which term dominates: the Monte Carlo step (empirical -> empirical_upper) or the
        # PAC-Bayes step (empirical_upper -> total), and KL/n against the confidence term
        f[f"b5n_terms[M={M}]"] = {
            "empirical_mean_encoder": round(float(g["b5n_empirical_mean_encoder"].median()), 4),
            "empirical_stochastic": round(float(g["b5n_empirical"].median()), 4),
            "mc_step": round(float((g["b5n_empirical_upper"] - g["b5n_empirical"]).median()), 4),
            "pac_bayes_step": round(float((g["b5n_total"] - g["b5n_empirical_upper"]).median()), 4),
            "kl_over_n": round(float(g["b5n_kl_over_n"].median()), 5),
            "confidence": round(float(g["b5n_confidence"].median()), 5),
            "nu": round(float(g["b5n_nu"].median()), 4),
        }
    f["b5n_holds_fraction"] = float(np.mean(df["b5n_holds"].astype(bool)))
    f["b5n_delta_spent_max"] = float(df["b5n_delta"].max())
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    s = gap_summary(df, "M", "ssl_gap")
    s = s.merge(common.summarize(df, ["M"], ["b5n_gap"]).drop(columns="n_seeds"), on="M")
    draw_gap(
        a1,
        s,
        "M",
        "ssl_gap",
        color="tab:purple",
        marker="D",
        label="O1 (stage 1)",
        slope=f["gap_loglog_slope"],
        half=f["gap_loglog_slope_ci95_halfwidth"],
    )
    a1.plot(
        s["M"],
        s["b5n_gap_mean"],
        color="tab:purple",
        linestyle="--",
        marker="s",
        mfc="none",
        label="B5n certified gap (bound - training loss)",
    )
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("source samples M (count, log scale)")
    a1.set_ylabel("population - training O1 loss (nats)")
    a1.set_title("Stage-1 generalisation gap and B5n")
    a1.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)
    cols = ["ssl_train_loss", "ssl_pop_loss", "b5n_pop_loss_stochastic", "b5n_total"]
    sc = common.summarize(df, ["M"], cols)
    styles = {
        "ssl_train_loss": dict(
            color="tab:blue", marker="o", label="training loss (trained encoder)"
        ),
        "ssl_pop_loss": dict(
            color="tab:orange", marker="s", label="population loss (trained encoder)"
        ),
        "b5n_pop_loss_stochastic": dict(
            color="tab:green",
            marker="^",
            label="population loss (perturbed encoder, what B5n bounds)",
        ),
        "b5n_total": dict(color="tab:red", marker="v", linestyle="--", label="B5n (delta = 0.05)"),
    }
    for i, c in enumerate(cols[:3]):  # nearly equal losses: side by side, with error bars
        common.interval_bars(
            a2,
            common.dodge(sc["M"], i, 3, 0.16, log=True),
            sc[f"{c}_mean"],
            sc[f"{c}_lo"],
            sc[f"{c}_hi"],
            **styles[c],
        )
    c = cols[3]
    common.band(a2, sc["M"], sc[f"{c}_mean"], sc[f"{c}_lo"], sc[f"{c}_hi"], **styles[c])
    common.reference_line(
        a2,
        f["log_N"],
        f"log N = {f['log_N']:.2f}: vacuous above",
        color="black",
        ls=":",
        label=f"log N = {f['log_N']:.2f} (vacuous above)",
    )
    a2.set_xscale("log")
    a2.set_xlabel("source samples M (count, log scale)")
    a2.set_ylabel("O1 tuple loss (nats)")
    a2.set_title("Stage-1 losses and the certified B5n")
    a2.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)
    common.count_ticks((a1, a2), df["M"].unique())
    fig.suptitle(f"Convergence in the number of source samples ({common.interval_note(args)})")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def _n_pop_ssl() -> int:
    from cmcd_theory.certify import N_POP_SSL

    return N_POP_SSL


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv,
        __doc__,
        NAME,
        run,
        findings,
        plot,
        lambda a: {
            "M": grid(a.quick),
            "world": "default (attenuate, t = 0)",
            "pipeline": "quick" if a.quick else "default",
            "n_pop_ssl": _n_pop_ssl(),
            "delta": common.DELTA,
        },
        resumes=False,
        default_seeds=SEEDS,
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
