"""The nominal distance an encoder can undo: TV_latent against the TV of learned features.

On the rotate channel (G2: an invertible rotation of the latent by the angle t pi/2) the exact
TV_latent grows with t, but no information is lost (eps*_B = eps*_A). Left: TV_latent (exact)
and the TV between the learned source and target features (Gaussian track, B1b: Monte Carlo
estimate, and its certified upper end) against t. Right: the target error with eps*_B, the
B1a line eps*_A + TV_latent and the B1b bound R_A(h) + TV_features(upper) of CMC. Mean and 95%
t-interval over seeds.

Run: ``python -m experiments.rotate_channel [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "rotate_channel"


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["rotate"], "t": [0.0, 0.33, 0.67, 1.0], "method": ["cmc", "oracle"]}
    return {
        "channel": ["rotate"],
        "t": [0.0, 0.25, 0.5, 0.75, 1.0],
        "method": ["cmc", "l2", "oracle"],
    }


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    df = run_sweep(
        grid(args.quick),
        pipeline=common.base_pipeline(args),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        postprocess=common.feature_tv,
        progress=not args.no_progress,
    )
    if "tv_features_upper" in df:
        df["b1b_total"] = df["err_A_head"] + df["tv_features_upper"]
    return df


def findings(df: pd.DataFrame) -> dict:
    f = {}
    slack = common.test_slack(20000)
    for t, g in df.groupby("t"):
        c = g[g["method"] == "cmc"]
        f[f"t={t}"] = (
            f"TV_latent {g['tv_latent'].iloc[0]:.3f}, TV_features(cmc) "
            f"{common.fmt_ci(c['tv_features'])}, err_B(cmc) {common.fmt_ci(c['err_B'])}, "
            f"eps*_B {g['bayes_B'].iloc[0]:.3f}"
        )
    c = df[df["method"] == "cmc"]
    f["max_tv_latent"] = round(float(df["tv_latent"].max()), 3)
    f["max_tv_features_cmc"] = round(float(c.groupby("t")["tv_features"].mean().max()), 3)
    e = c.groupby("t")["err_B"].mean()
    f["err_B_cmc_range"] = f"{e.min():.3f} .. {e.max():.3f}"
    f["b1b_holds_fraction"] = float(np.mean(c["b1b_total"] >= c["err_B"] - 2 * slack))
    f["spearman_err_vs_tv_latent[cmc]"] = round(
        common.spearman(e.index.map(df.groupby("t")["tv_latent"].first()), e.to_numpy()), 3
    )
    return f


def _distance_panel(ax, s: pd.DataFrame, g0: pd.DataFrame) -> None:
    """TV_latent (nominal) beside the learned-feature TV of CMC and L2 and its certified end."""
    ax.plot(g0["t"], g0["tv_latent_mean"], "k--", lw=2, label="$TV_{latent}$ (exact, nominal)")
    for me in ("cmc", "l2"):
        g = s[s["method"] == me].sort_values("t")
        if not len(g):
            continue
        st = common.METHOD_STYLE[me]
        common.band(
            ax,
            g["t"],
            g["tv_features_mean"],
            g["tv_features_lo"],
            g["tv_features_hi"],
            **{**st, "label": f"{st['label']}: TV of learned features (MC estimate)"},
        )
        ax.plot(
            g["t"],
            g["tv_features_upper_mean"],
            ":",
            color=st["color"],
            label=f"{st['label']}: certified upper end of that TV",
        )
    ax.set_ylabel("total variation distance")
    ax.set_title("Nominal vs learned modality distance")


def _bound_panel(ax, s: pd.DataFrame, g0: pd.DataFrame) -> None:
    """CMC's error against eps*_B and the two transfer bounds B1a and B1b."""
    g = s[s["method"] == "cmc"].sort_values("t")
    ax.plot(
        g0["t"],
        g0["bayes_A_mean"] + g0["tv_latent_mean"],
        "k--",
        label=r"$\varepsilon^*_A + TV_{latent}$ (B1a)",
    )
    ax.plot(
        g["t"],
        g["b1b_total_mean"],
        "-.",
        color="tab:orange",
        label="$R_A(h) + TV_{features}$ (B1b, CMC)",
    )
    ax.plot(
        g0["t"], g0["bayes_B_mean"], "k-", lw=2.5, label=r"$\varepsilon^*_B$ (Bayes floor, exact)"
    )
    common.band(
        ax,
        g["t"],
        g["err_B_mean"],
        g["err_B_lo"],
        g["err_B_hi"],
        **{**common.METHOD_STYLE["cmc"], "ms": 4, "label": "CMC target error $R_B$"},
    )
    ax.set_ylim(0, None)
    ax.set_ylabel("target test error $R_B$ (fraction)")
    ax.set_title("Target error: which distance the bound needs")


def _excess_panel(ax, s: pd.DataFrame) -> None:
    """Every method's excess error over eps*_B, side by side at each t, with its interval."""
    methods = list(dict.fromkeys(s["method"]))
    for i, me in enumerate(methods):
        g = s[s["method"] == me].sort_values("t")
        common.interval_bars(
            ax,
            common.dodge(g["t"], i, len(methods), 0.06),
            g["excess_mean"],
            g["excess_lo"],
            g["excess_hi"],
            **common.METHOD_STYLE[me],
        )
    common.excess_floor_line(ax)
    ax.set_ylabel("excess error $R_B - \\varepsilon^*_B$ (fraction)")
    ax.set_title("Every method above the floor")


def plot(df: pd.DataFrame, args, f: dict) -> None:
    """The nominal and learned distances, the error against B1a and B1b, and each method's
    excess error over eps*_B (where the methods, all near the floor, can be told apart)."""
    plt = common.pyplot()
    cols = [
        c
        for c in (
            "err_B",
            "excess",
            "tv_latent",
            "bayes_A",
            "bayes_B",
            "tv_features",
            "tv_features_upper",
            "b1b_total",
        )
        if c in df or c == "excess"
    ]
    s = common.summarize(df.assign(excess=df["err_B"] - df["bayes_B"]), ["method", "t"], cols)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharex=True)
    g0 = s.drop_duplicates("t").sort_values("t")
    _distance_panel(axes[0], s, g0)
    _bound_panel(axes[1], s, g0)
    _excess_panel(axes[2], s)
    for ax in axes:
        ax.set_xlabel("rotation knob t (angle t*90 degrees)")
    fig.suptitle(f"Rotate channel ({common.interval_note(args)})")
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=4)
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv,
        __doc__,
        NAME,
        run,
        findings,
        plot,
        lambda a: {"grid": grid(a.quick), "tv_estimate": "gaussian_feature_tv MC"},
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
