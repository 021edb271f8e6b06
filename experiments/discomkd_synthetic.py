"""DisCoM-KD against CMCD (CMC) on the synthetic worlds, in the labeled-pairs regime.

DisCoM-KD needs labels on the pairs, so both methods get n labeled pairs (x_A, x_B, y) of the
attenuate world at several distances t; CMCD additionally has its usual M source samples and m
unlabeled pairs (stages 1-2), DisCoM-KD is trained on the n labeled pairs alone. Reported per
(method, t, n, seed): the target test error ``err_B`` and the distance between learned source and
target features on 4000 held-out test pairs, measured the same way for both methods: a two-sample
classifier's certified lower bound ``tv_lower`` and its point estimate ``tv_estimate``
(:func:`cmcd_theory.learn.divergences.tv_classifier_lower_bound`, labels included). DisCoM-KD's
features are its normalised modality-invariant parts; CMCD's are the normalised teacher and
student features.

    python -m experiments.discomkd_synthetic [--quick] [--seeds S] [--plot-only]
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
import pandas as pd

from cmcd_theory import worlds
from cmcd_theory.learn import divergences
from cmcd_theory.learn.discomkd import (
    DiscomConfig,
    discomkd_features,
    discomkd_model,
    discomkd_predict,
    train_discomkd,
)
from cmcd_theory.learn.models import normalize
from cmcd_theory.learn.pipeline import encoders
from cmcd_theory.sweeps.devices import setup_jax
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig, make_world
from experiments import common

NAME = "discomkd_synthetic"
N_TV = 4000


def grid(quick: bool) -> dict:
    if quick:
        return {"t": [0.0, 0.5], "n": [256], "seeds": 2}
    return {"t": [0.0, 0.25, 0.5, 0.75], "n": [64, 512], "seeds": 3}


def _tv(key, za, zb, y, K):
    r = divergences.tv_classifier_lower_bound(key, za, zb, y, y, num_classes=K)
    return r["lower"], r["estimate"]


def _cmcd_rows(g: dict, wc: WorldConfig, pipe, seeds: int) -> list:
    """CMCD (CMC) rows: the sweep keeps teacher and student; the distance between their
    normalised features is measured afterwards, on N_TV fresh test pairs."""
    K = wc.num_classes
    rows = []

    def post(w, cfg, method, t, seed, row, arts):
        enc_a, enc_b = encoders(w, cfg)
        test = worlds.sample(w, jax.random.key(10_000 + seed), N_TV, t)
        za = normalize(enc_a.apply(arts["teacher"], test.x_A))
        zb = normalize(enc_b.apply(arts["student"], test.x_B))
        lo, est = _tv(jax.random.key(seed), za, zb, test.y, K)
        return {"tv_lower": lo, "tv_estimate": est}

    df_c = run_sweep(
        {"t": g["t"], "n": g["n"], "method": ["cmc"]},
        world=wc,
        pipeline=pipe,
        seeds=seeds,
        postprocess=post,
        progress=False,
    )
    for _, r in df_c.iterrows():
        rows.append(
            {
                "method": "cmc",
                "t": r.t,
                "n": int(r.n),
                "seed": int(r.seed),
                "err_B": r.err_B,
                "tv_lower": r.tv_lower,
                "tv_estimate": r.tv_estimate,
                "tv_latent": r.tv_latent,
                "bayes_B": r.bayes_B,
            }
        )
    return rows


def _discomkd_rows(g: dict, wc: WorldConfig, world, pipe, seeds: int, cfg: DiscomConfig) -> list:
    """DisCoM-KD rows, trained on the n labeled pairs alone; the distance is measured on the
    normalised invariant parts of its source and target features."""
    K = wc.num_classes
    rows = []
    model = discomkd_model([wc.d_A, wc.d_B], wc.latent_dim, K, hidden=(64,))
    fit = jax.jit(lambda k, xa, xb, y: train_discomkd(k, model, (xa, xb), y, cfg)[0])
    for n in g["n"]:
        for t in g["t"]:
            truth = (
                divergences.tv_latent(wc, t),
                divergences.bayes_error(wc.replace(t=t), "B").estimate,
            )
            for seed in range(seeds):
                k_data, k_fit, k_test, k_tv = jax.random.split(jax.random.key(seed), 4)
                lab = worlds.sample(world, k_data, n, t)
                params = fit(k_fit, lab.x_A, lab.x_B, lab.y)
                test = worlds.sample(world, k_test, pipe.n_test, t)
                err = float(
                    np.mean(
                        np.asarray(discomkd_predict(params, model, test.x_B, 1))
                        != np.asarray(test.y)
                    )
                )
                za = normalize(discomkd_features(params, model, test.x_A[:N_TV], 0)[0])
                zb = normalize(discomkd_features(params, model, test.x_B[:N_TV], 1)[0])
                lo, est = _tv(k_tv, za, zb, test.y[:N_TV], K)
                rows.append(
                    {
                        "method": "discomkd",
                        "t": t,
                        "n": n,
                        "seed": seed,
                        "err_B": err,
                        "tv_lower": lo,
                        "tv_estimate": est,
                        "tv_latent": truth[0],
                        "bayes_B": truth[1],
                    }
                )
    return rows


def main(argv=None) -> pd.DataFrame:
    args = common.parse_args(
        argv,
        __doc__.split("\n")[0],
        default_seeds=(grid(True)["seeds"], grid(False)["seeds"]),
        prog=f"python -m experiments.{NAME}",
        epilog=common.OUTPUTS + common.NO_RESUME,
        plot_only=True,
    )
    if args.plot_only:  # the figure from the saved CSV, nothing trained
        df, _ = common.load_results(NAME, args)
        _plot(df, args)
        return df
    t0 = time.perf_counter()
    start = common.compilation_counts()
    g = grid(args.quick)
    seeds = args.seeds
    wc = WorldConfig(channel="attenuate")
    world = make_world(wc)
    pipe = quick_pipeline()
    rows = _cmcd_rows(g, wc, pipe, seeds)
    cfg = DiscomConfig(steps=500, batch_size=64, lr=3e-3)
    rows += _discomkd_rows(g, wc, world, pipe, seeds, cfg)
    df = pd.DataFrame(rows)
    os.makedirs(args.out_dir, exist_ok=True)
    df.to_csv(os.path.join(args.out_dir, f"{NAME}.csv"), index=False)
    s = df.groupby(["method", "n", "t"])[["err_B", "tv_estimate", "tv_lower"]].agg(["mean", "std"])
    findings = {
        f"{m},n={n},t={t}": (
            f"err_B {r[('err_B', 'mean')]:.3f} +- {r[('err_B', 'std')]:.3f} (sd), "
            f"tv_estimate {r[('tv_estimate', 'mean')]:.2f}, tv_lower {r[('tv_lower', 'mean')]:.2f}"
        )
        for (m, n, t), r in s.iterrows()
    }
    _plot(df, args)
    with open(os.path.join(args.out_dir, f"{NAME}.json"), "w") as f:
        json.dump(
            {
                "world": wc.as_dict(),
                "grid": g,
                "seeds": seeds,
                "discom": cfg.__dict__,
                "findings": findings,
                "wall_time_s": round(time.perf_counter() - t0, 1),
                "compilation": common.compilation_since(start),
            },
            f,
            indent=2,
            default=str,
        )
    for k, v in findings.items():
        print(k, v)
    print(f"{len(df)} rows in {time.perf_counter() - t0:.1f} s")
    return df


STYLE = {
    "cmc": common.METHOD_STYLE["cmc"],
    "discomkd": dict(color="tab:purple", marker="P", label="DisCoM-KD"),
}


def _plot(df, args):
    """Target error (left, beside eps*_B) and the estimated TV between learned source and target
    features (right, beside its maximum 1) against TV_latent: per method and n, mean and 95%
    interval over seeds, the curves side by side at each distance."""
    plt = common.pyplot()
    ns = sorted(df.n.unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True)
    s = common.summarize(df, ["method", "n", "tv_latent"], ["err_B", "tv_estimate"])
    curves = [
        (m, n, ls) for n, ls in zip(ns, ["-", "--", ":"]) for m in STYLE if m in set(s.method)
    ]
    width = 0.06 * float(np.ptp(s["tv_latent"]) or 1.0)
    for i, (m, n, ls) in enumerate(curves):
        g = s[(s.method == m) & (s.n == n)].sort_values("tv_latent")
        st = dict(STYLE[m], linestyle=ls, label=f"{STYLE[m]['label']}, n = {n}")
        x = common.dodge(g.tv_latent, i, len(curves), width)
        common.interval_bars(axes[0], x, g.err_B_mean, g.err_B_lo, g.err_B_hi, **st)
        common.interval_bars(
            axes[1], x, g.tv_estimate_mean, g.tv_estimate_lo, g.tv_estimate_hi, **st
        )
    b = df.groupby("tv_latent").bayes_B.mean()
    axes[0].plot(b.index, b.values, "k-", lw=2, label=r"$\varepsilon^*_B$ (Bayes floor, exact)")
    axes[1].axhline(1.0, color="dimgray", ls="--", lw=1.2, label="TV = 1: fully separable")
    axes[1].set_ylim(0, 1.08)
    axes[0].set_ylabel("target test error $R_B$ (fraction)")
    axes[1].set_ylabel("estimated TV of learned features\n(2 acc - 1, two-sample classifier)")
    for ax in axes:
        ax.set_xlabel(r"modality distance $TV_{latent}$ (exact)")
    fig.suptitle(
        f"DisCoM-KD vs CMCD (CMC), n labeled pairs, attenuate world ({common.interval_note(args)})"
    )
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=3)
    os.makedirs(args.fig_dir, exist_ok=True)
    common.save_fig(fig, NAME, args)


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
