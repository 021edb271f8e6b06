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

from experiments import common  # sets the compile cache before jax loads
from experiments.tv_vs_gain import grid, run_feature_sweep

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax

NAME = "loss_comparison"


def methods(quick: bool):
    return ("cmc", "l2") if quick else ("cmd", "cmc", "l2")


def findings(d: pd.DataFrame) -> dict:
    f = {}
    per_seed = d.groupby(["method", "seed"], as_index=False)[["tv_features", "err_B"]].mean()
    for me, g in per_seed.groupby("method"):
        f[f"mean_over_grid[{me}]"] = (f"TV_features {common.fmt_ci(g['tv_features'])}, "
                                      f"err_B {common.fmt_ci(g['err_B'])}")
    piv = d.pivot_table(index=["channel", "t", "seed"], columns="method", values=["tv_features", "err_B"])
    for a in [m for m in ("cmd", "cmc") if m in d["method"].unique()]:
        if "l2" in d["method"].unique():
            for col in ("tv_features", "err_B"):
                diff = (piv[(col, a)] - piv[(col, "l2")]).groupby(level="seed").mean()
                f[f"{col}[{a} - l2]"] = common.fmt_ci(diff, 4)
    return f


def plot(d: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    chans = list(dict.fromkeys(d["channel"]))
    fig, axes = plt.subplots(len(chans), 2, figsize=(11, 4.2 * len(chans)), squeeze=False)
    s = common.summarize(d, ["channel", "method", "t"], ["tv_features", "err_B", "tv_latent", "bayes_B"])
    for row, ch in zip(axes, chans):
        sc = s[s["channel"] == ch]
        for me in dict.fromkeys(sc["method"]):
            g = sc[sc["method"] == me].sort_values("t")
            st = common.METHOD_STYLE[me]
            common.band(row[0], g["t"], g["tv_features_mean"], g["tv_features_lo"], g["tv_features_hi"], **st)
            common.band(row[1], g["t"], g["err_B_mean"], g["err_B_lo"], g["err_B_hi"], **st)
        g = sc.drop_duplicates("t").sort_values("t")
        row[0].plot(g["t"], g["tv_latent_mean"], "k--", label="$TV_{latent}$ (exact)")
        row[1].plot(g["t"], g["bayes_B_mean"], "k-", lw=2, label=r"$\varepsilon^*_B$")
        row[0].set_ylabel("TV of learned features (MC estimate)")
        row[1].set_ylabel("target test error $R_B$ (fraction)")
        row[0].set_title(f"{ch}: distance between learned features")
        row[1].set_title(f"{ch}: target error")
        for ax in row:
            ax.set_xlabel("channel knob t (dimensionless)")
            ax.legend(fontsize=8)
    fig.suptitle(f"Stage-2 losses at equal budgets ({common.interval_note(args)})")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def _run(args) -> pd.DataFrame:
    d = run_feature_sweep(args, methods(args.quick))
    return d[d["method"].isin(methods(args.quick))].reset_index(drop=True)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, _run, findings, plot,
        lambda a: {"grid": grid(a.quick, methods(a.quick)), "tv_estimate": "gaussian_feature_tv MC"},
        resumes=False)


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
