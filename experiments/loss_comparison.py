"""Claim (iv) measured: the TV achieved and the error reached by CMD, CMC and L2 at equal budgets.

Same world, teacher, data, optimiser, steps and batch for every stage-2 loss; only the loss
changes (O2 CMC, O3 CMD, O4 L2). Left: TV between the learned source and target features
(Gaussian-track Monte Carlo estimate, :func:`cmcd_theory.learn.divergences.gaussian_feature_tv`)
against t, with the exact TV_latent; right: the target test error against t with eps*_B.
Mean and 95% t-interval over seeds. Does using negatives shrink the distance more than plain
alignment?

Run: ``python -m experiments.loss_comparison [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common
from experiments.tv_vs_gain import grid, run_feature_sweep

NAME = "loss_comparison"


def methods(quick: bool):
    return ("cmc", "l2") if quick else ("cmd", "cmc", "l2")


def findings(d: pd.DataFrame) -> dict:
    f = {}
    per_seed = d.groupby(["method", "seed"], as_index=False)[["tv_features", "err_B"]].mean()
    for me, g in per_seed.groupby("method"):
        f[f"mean_over_grid[{me}]"] = (
            f"TV_features {common.fmt_ci(g['tv_features'])}, err_B {common.fmt_ci(g['err_B'])}"
        )
    piv = d.pivot_table(
        index=["channel", "t", "seed"], columns="method", values=["tv_features", "err_B"]
    )
    for a in [m for m in ("cmd", "cmc") if m in d["method"].unique()]:
        if "l2" in d["method"].unique():
            for col in ("tv_features", "err_B"):
                diff = (piv[(col, a)] - piv[(col, "l2")]).groupby(level="seed").mean()
                f[f"{col}[{a} - l2]"] = common.fmt_ci(diff, 4)
    return f


def plot(d: pd.DataFrame, args, f: dict) -> None:
    """Per channel (rows): the learned-feature TV of each loss beside TV_latent (left), and each
    loss's excess error R_B - eps*_B over the Bayes floor with its 95% interval, the losses side
    by side at each t (right: on the 0-1 scale they and eps*_B are one line)."""
    plt = common.pyplot()
    chans = list(dict.fromkeys(d["channel"]))
    fig, axes = plt.subplots(
        len(chans), 2, figsize=(11, 3.9 * len(chans)), squeeze=False, sharex=True, sharey="col"
    )
    d = d.assign(excess=d["err_B"] - d["bayes_B"])
    s = common.summarize(d, ["channel", "method", "t"], ["tv_features", "excess", "tv_latent"])
    width = 0.05 * float(np.ptp(s["t"]) or 1.0)
    for row, ch in zip(axes, chans):
        sc = s[s["channel"] == ch]
        methods = list(dict.fromkeys(sc["method"]))
        for i, me in enumerate(methods):
            g = sc[sc["method"] == me].sort_values("t")
            st = common.METHOD_STYLE[me]
            common.band(
                row[0],
                g["t"],
                g["tv_features_mean"],
                g["tv_features_lo"],
                g["tv_features_hi"],
                **st,
            )
            common.interval_bars(
                row[1],
                common.dodge(g["t"], i, len(methods), width),
                g["excess_mean"],
                g["excess_lo"],
                g["excess_hi"],
                **st,
            )
        g = sc.drop_duplicates("t").sort_values("t")
        row[0].plot(g["t"], g["tv_latent_mean"], "k--", label="$TV_{latent}$ (exact)")
        common.excess_floor_line(row[1])
        row[0].set_ylabel("TV of learned features\n(MC estimate)")
        row[1].set_ylabel("excess error $R_B - \\varepsilon^*_B$\n(fraction)")
        row[0].set_title(f"{ch}: distance between learned features")
        row[1].set_title(f"{ch}: target error above the Bayes floor")
        for ax in row:
            ax.set_xlabel("channel knob t (dimensionless)")
            ax.tick_params(labelbottom=True)
    fig.suptitle(f"Stage-2 losses at equal budgets ({common.interval_note(args)})")
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=4)
    common.save_fig(fig, NAME, args)


def _run(args) -> pd.DataFrame:
    d = run_feature_sweep(args)
    return d[d["method"].isin(methods(args.quick))].reset_index(drop=True)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv,
        __doc__,
        NAME,
        _run,
        findings,
        plot,
        lambda a: {
            "grid": grid(a.quick),
            "tv_estimate": "gaussian_feature_tv MC",
        },
        resumes=False,
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
