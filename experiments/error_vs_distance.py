"""Claim (i): target test error grows with the modality distance TV_latent (G2, B1a, B2, B3).

For the attenuate, noise and corrupt channels, the target test error ``err_B`` of CMD, CMC and
L2 distillation and of the baselines is plotted against the exact latent distance
``TV_latent(t)``, beside the floor ``eps*_B`` and the line ``eps*_A + TV_latent`` (B1a), and the
probe bounds B2 (Rademacher margin, smaller of the two forms) and B3 (PAC-Bayes-kl, for the
deterministic probe: twice the stochastic bound) of CMC. Mean and 95% t-interval over seeds.

Run: ``python -m experiments.error_vs_distance [--quick] [--seeds S]``.
"""

from __future__ import annotations

from experiments import common  # sets the compile cache before jax loads

import numpy as np
import pandas as pd

from cmcd_theory.devices import setup_jax

NAME = "error_vs_distance"
BOUND_METHOD = "cmc"


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["attenuate"], "t": [0.0, 0.33, 0.67, 1.0],
                "method": ["cmc", "oracle"]}
    return {"channel": ["attenuate", "noise", "corrupt"], "t": [0.0, 0.25, 0.5, 0.75, 1.0],
            "method": ["cmd", "cmc", "l2", "supervised", "oracle"]}


def postprocess(world, cfg, method, t, seed, row, arts):
    if method != BOUND_METHOD:
        return dict.fromkeys(common.PROBE_BOUND_KEYS, float("nan"))
    return common.probe_bounds(world, cfg, method, t, seed, row, arts)


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweep import run_sweep
    return run_sweep(grid(args.quick), pipeline=common.base_pipeline(args), seeds=args.seeds,
                     out=common.raw_path(args, NAME), postprocess=postprocess,
                     progress=not args.no_progress)


def findings(df: pd.DataFrame) -> dict:
    f = {}
    avg = df.groupby(["channel", "method", "t"], as_index=False)[["tv_latent", "err_B"]].mean()
    for (ch, me), g in avg.groupby(["channel", "method"]):
        f[f"spearman_err_vs_tv[{ch},{me}]"] = round(common.spearman(g["tv_latent"], g["err_B"]), 3)
        lo, hi = g.sort_values("t").iloc[[0, -1]]["err_B"].to_numpy()
        f[f"err_B_t0_to_t1[{ch},{me}]"] = f"{lo:.3f} -> {hi:.3f}"
    slack = common.test_slack(20000)
    b = df[df["method"] == BOUND_METHOD]
    f["b2_holds_fraction"] = float(np.mean(b["b2_total"] >= b["err_B"] - slack))
    f["b3_holds_fraction"] = float(np.mean(b["b3_total_deterministic"] >= b["err_B"] - slack))
    f["b2_median"] = round(float(b["b2_total"].median()), 3)
    f["b3_deterministic_median"] = round(float(b["b3_total_deterministic"].median()), 3)
    f["b1a_holds"] = bool(np.all(df["bayes_B"] <= df["bayes_A"] + df["tv_latent"] + 1e-3))
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    chans = list(dict.fromkeys(df["channel"]))
    fig, axes = plt.subplots(1, len(chans), figsize=(5.2 * len(chans), 4.4), squeeze=False)
    cols = ["err_B", "tv_latent", "bayes_A", "bayes_B", "b2_total", "b3_total_deterministic"]
    cols = [c for c in cols if c in df]
    s = common.summarize(df, ["channel", "method", "t"], cols)
    for ax, ch in zip(axes[0], chans):
        sc = s[s["channel"] == ch]
        for me in dict.fromkeys(sc["method"]):
            g = sc[sc["method"] == me].sort_values("tv_latent_mean")
            common.band(ax, g["tv_latent_mean"], g["err_B_mean"], g["err_B_lo"], g["err_B_hi"],
                        **common.METHOD_STYLE[me])
        g = sc.drop_duplicates("t").sort_values("tv_latent_mean")
        x = g["tv_latent_mean"]
        ax.plot(x, g["bayes_B_mean"], "k-", lw=2, label=r"$\varepsilon^*_B$ (Bayes floor)")
        ax.plot(x, g["bayes_A_mean"] + x, "k--", lw=1.3, label=r"$\varepsilon^*_A + TV_{latent}$ (B1a)")
        gb = sc[sc["method"] == BOUND_METHOD].sort_values("tv_latent_mean")
        if "b2_total_mean" in gb and len(gb):
            ax.plot(gb["tv_latent_mean"], gb["b2_total_mean"], ":", color="tab:orange", lw=2,
                    label="B2 margin bound (CMC)")
            ax.plot(gb["tv_latent_mean"], gb["b3_total_deterministic_mean"], "-.", color="tab:orange",
                    lw=1.5, label="B3 PAC-Bayes bound (CMC)")
        ax.axhline(1.0, color="gray", lw=0.8)
        rho = f.get(f"spearman_err_vs_tv[{ch},cmc]", np.nan)
        ax.set_title(f"channel: {ch}  (Spearman rho, CMC: {rho:.2f})")
        ax.set_xlabel(r"modality distance $TV_{latent}$ (exact)")
        ax.set_ylabel("target test error $R_B$ (fraction)")
        ax.set_ylim(0, max(1.05, float(np.nanmax(sc.filter(like="_mean").drop(columns=["tv_latent_mean"]).to_numpy())) + 0.05))
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Target error against modality distance ({common.interval_note(args)})")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(argv, __doc__, NAME, run, findings, plot, lambda a: {"grid": grid(a.quick)})


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
