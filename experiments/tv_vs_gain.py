"""Does a smaller learned modality distance predict a larger gain over supervised-only? (B1b)

For each (channel, t, seed) the CMCD pipeline's target error is compared with the supervised-only
baseline's on the same data: gain = err_B(supervised) - err_B(CMCD). The x axis is the TV between
the learned source and target features, ``tv_features``: the Monte Carlo estimate of the Gaussian
track (linear world, linear encoders, attenuate / noise channels;
:func:`cmcd_theory.learn.divergences.gaussian_feature_tv`, at the feature scale that gives the
smaller certified upper end). The Spearman rank correlation over all cells (seed-averaged) is
printed.

Run: ``python -m experiments.tv_vs_gain [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "tv_vs_gain"
SWEEP = "feature_sweep"  # shared with loss_comparison: a second run reuses the cells
CMCD = ("cmd", "cmc", "l2")


#: the quick sweep's methods: tv_vs_gain's (cmc, supervised) and loss_comparison's (cmc, l2) in
#: one grid, so that the two share its raw CSV as their full runs do (two grids at one path are
#: refused by the store)
QUICK_METHODS = ("cmc", "l2", "supervised")


def grid(quick: bool) -> dict:
    """The feature sweep's grid, shared by tv_vs_gain and loss_comparison."""
    if quick:
        return {
            "channel": ["attenuate"],
            "t": [0.0, 0.33, 0.67, 1.0],
            "method": list(QUICK_METHODS),
        }
    return {
        "channel": ["attenuate", "noise"],
        "t": [0.0, 0.25, 0.5, 0.75, 1.0],
        "method": ["cmd", "cmc", "l2", "supervised"],
    }


def run_feature_sweep(args) -> pd.DataFrame:
    """The shared feature sweep (:func:`grid`) at its raw CSV: its rows of the seeds asked."""
    from cmcd_theory.sweeps.sweep import run_sweep

    g = grid(args.quick)
    df = run_sweep(
        g,
        pipeline=common.base_pipeline(args),
        seeds=args.seeds,
        out=common.raw_path(args, SWEEP),
        postprocess=common.feature_tv,
        progress=not args.no_progress,
    )
    keep = (
        df["method"].isin(g["method"])
        & df["channel"].isin(g["channel"])
        & df["t"].round(6).isin([round(t, 6) for t in g["t"]])
        & (df["seed"] < args.seeds)
    )
    return df[keep].reset_index(drop=True)


def with_gain(df: pd.DataFrame) -> pd.DataFrame:
    sup = df[df["method"] == "supervised"][["channel", "t", "seed", "err_B"]].rename(
        columns={"err_B": "err_B_supervised"}
    )
    out = df[df["method"].isin(CMCD)].merge(sup, on=["channel", "t", "seed"], how="left")
    out["gain"] = out["err_B_supervised"] - out["err_B"]
    return out


def findings(d: pd.DataFrame) -> dict:
    avg = d.groupby(["channel", "method", "t"], as_index=False)[
        ["tv_features", "gain", "tv_latent"]
    ].mean()
    f = {
        "spearman_tv_features_vs_gain[all]": round(
            common.spearman(avg["tv_features"], avg["gain"]), 3
        ),
        "spearman_tv_latent_vs_gain[all]": round(common.spearman(avg["tv_latent"], avg["gain"]), 3),
        "n_points": int(len(avg)),
    }
    for ch, g in avg.groupby("channel"):
        f[f"spearman_tv_features_vs_gain[{ch}]"] = round(
            common.spearman(g["tv_features"], g["gain"]), 3
        )
    for (ch, t), g in d.groupby(["channel", "t"]):
        f[f"gain[{ch},t={t}]"] = " ".join(
            f"{me}:{common.fmt_ci(gg['gain'])}" for me, gg in g.groupby("method")
        )
    return f


def plot(d: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    s = common.summarize(d, ["channel", "method", "t"], ["tv_features", "gain"])
    fig, ax = plt.subplots(figsize=(9.6, 5.0))
    fills = {"attenuate": "full", "noise": "none"}
    for (ch, me), g in s.groupby(["channel", "method"]):
        st = common.METHOD_STYLE[me]
        ax.errorbar(
            g["tv_features_mean"],
            g["gain_mean"],
            yerr=np.abs(np.vstack([g["gain_mean"] - g["gain_lo"], g["gain_hi"] - g["gain_mean"]])),
            xerr=np.abs(
                np.vstack(
                    [
                        g["tv_features_mean"] - g["tv_features_lo"],
                        g["tv_features_hi"] - g["tv_features_mean"],
                    ]
                )
            ),
            fmt=st["marker"],
            color=st["color"],
            fillstyle=fills.get(ch, "full"),
            capsize=2,
            label=f"{st['label']}, {ch}",
        )
    ax.axhline(0.0, color="black", lw=1.0, zorder=1.5, label="0: no gain over supervised-only")
    ax.text(
        1.02,
        0.0,
        f"Spearman rho (TV_features, gain) = {f['spearman_tv_features_vs_gain[all]']:.2f}\n"
        f"Spearman rho (TV_latent, gain) = {f['spearman_tv_latent_vs_gain[all]']:.2f}",
        transform=ax.transAxes,
        fontsize=9,
        va="bottom",
        bbox=dict(facecolor="white", alpha=0.8),
    )
    ax.set_xlabel("TV of learned features (Gaussian-track MC estimate)")
    ax.set_ylabel("gain over supervised-only: $R_B^{sup} - R_B$ (fraction)")
    ax.set_title(f"Learned modality distance vs gain ({common.interval_note(args)})")
    common.legend_right(ax, title="method, channel (hollow: noise)", title_fontsize=9)
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv,
        __doc__,
        NAME,
        lambda a: with_gain(run_feature_sweep(a)),
        findings,
        plot,
        lambda a: {"grid": grid(a.quick), "tv_estimate": "gaussian_feature_tv MC"},
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
