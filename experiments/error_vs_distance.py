"""Claim (i): target test error grows with the modality distance TV_latent (G2, B1a, B2, B3).

For the attenuate, noise and corrupt channels, the target test error ``err_B`` of CMD, CMC and
L2 distillation and of the baselines is plotted against the exact latent distance
``TV_latent(t)``, beside the floor ``eps*_B`` and the line ``eps*_A + TV_latent`` (B1a), and the
probe bounds B2 (Rademacher margin, smaller of the two forms) and B3 (PAC-Bayes-kl, for the
deterministic probe: twice the stochastic bound) of CMC. Mean and 95% t-interval over seeds.

Run: ``python -m experiments.error_vs_distance [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "error_vs_distance"
BOUND_METHOD = "cmc"


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["attenuate"], "t": [0.0, 0.33, 0.67, 1.0], "method": ["cmc", "oracle"]}
    return {
        "channel": ["attenuate", "noise", "corrupt"],
        "t": [0.0, 0.25, 0.5, 0.75, 1.0],
        "method": ["cmd", "cmc", "l2", "supervised", "oracle"],
    }


def postprocess(world, cfg, method, t, seed, row, arts):
    if method != BOUND_METHOD:
        return dict.fromkeys(common.PROBE_BOUND_KEYS, float("nan"))
    return common.probe_bounds(world, cfg, method, t, seed, row, arts)


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    return run_sweep(
        grid(args.quick),
        pipeline=common.base_pipeline(args),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        postprocess=postprocess,
        progress=not args.no_progress,
    )


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


EXCESS_ORDER = ("cmc", "cmd", "l2", "supervised", "oracle")


def _bounds_panel(ax, sc: pd.DataFrame) -> None:
    """Upper panel of one channel: CMC's error beside eps*_B, the B1a line and CMC's probe
    bounds B2 and B3, with the vacuity level 1 marked."""
    g = sc.drop_duplicates("t").sort_values("tv_latent_mean")
    x = g["tv_latent_mean"]
    gb = sc[sc["method"] == BOUND_METHOD].sort_values("tv_latent_mean")
    if "b2_total_mean" in gb and len(gb):
        ax.plot(
            gb["tv_latent_mean"],
            gb["b2_total_mean"],
            ":",
            color="tab:orange",
            lw=2,
            label="B2 margin bound (CMC probe)",
        )
        ax.plot(
            gb["tv_latent_mean"],
            gb["b3_total_deterministic_mean"],
            "-.",
            color="tab:orange",
            lw=1.5,
            label="B3 PAC-Bayes bound, 2 L(Q) (CMC probe)",
        )
    ax.plot(x, g["bayes_A_mean"] + x, "k--", lw=1.3, label=r"$\varepsilon^*_A + TV_{latent}$ (B1a)")
    ax.plot(x, g["bayes_B_mean"], "k-", lw=2.5, label=r"$\varepsilon^*_B$ (Bayes floor, exact)")
    st = dict(common.METHOD_STYLE[BOUND_METHOD], ms=4)
    st["label"] = "CMC target error $R_B$ (top row; every method: bottom row)"
    common.band(ax, gb["tv_latent_mean"], gb["err_B_mean"], gb["err_B_lo"], gb["err_B_hi"], **st)
    common.reference_line(ax, 1.0, common.VACUOUS, where=0.01)


def _excess_panel(ax, sc: pd.DataFrame, width: float) -> None:
    """Lower panel of one channel: each method's excess error R_B - eps*_B over the Bayes
    floor (95% interval over seeds), dodged in x so that coinciding methods stay visible."""
    methods = [m for m in EXCESS_ORDER if m in set(sc["method"])]
    for i, me in enumerate(methods):
        g = sc[sc["method"] == me].sort_values("tv_latent_mean")
        common.interval_bars(
            ax,
            common.dodge(g["tv_latent_mean"], i, len(methods), width),
            g["excess_mean"],
            g["excess_lo"],
            g["excess_hi"],
            **common.METHOD_STYLE[me],
        )
    common.excess_floor_line(ax)


def plot(df: pd.DataFrame, args, f: dict) -> None:
    """Per channel, top: CMC's error, eps*_B, B1a and the probe bounds on the full 0-1 scale
    (vacuity level 1 marked); bottom: every method's excess error over eps*_B with its 95%
    interval, where the methods (within about 0.01 of the floor) can be told apart."""
    plt = common.pyplot()
    chans = list(dict.fromkeys(df["channel"]))
    fig, axes = plt.subplots(
        2,
        len(chans),
        figsize=(5.2 * len(chans), 7.6),
        squeeze=False,
        sharex="col",
        sharey="row",
        gridspec_kw={"height_ratios": [1.25, 1]},
    )
    cols = [
        "err_B",
        "excess",
        "tv_latent",
        "bayes_A",
        "bayes_B",
        "b2_total",
        "b3_total_deterministic",
    ]
    s = common.summarize(
        df.assign(excess=df["err_B"] - df["bayes_B"]),
        ["channel", "method", "t"],
        [c for c in cols if c in df or c == "excess"],
    )
    for j, ch in enumerate(chans):
        sc = s[s["channel"] == ch]
        x = np.sort(sc["tv_latent_mean"].unique())
        width = min(0.05 * float(np.ptp(x) or 1.0), 0.6 * float(np.min(np.diff(x), initial=1.0)))
        _bounds_panel(axes[0][j], sc)
        _excess_panel(axes[1][j], sc, width)
        rho = f.get(f"spearman_err_vs_tv[{ch},cmc]")
        rho = f"{rho:.2f}" if isinstance(rho, (int, float)) else "n/a"
        axes[0][j].set_title(f"channel: {ch}  (Spearman rho, CMC: {rho})")
        axes[1][j].set_xlabel(r"modality distance $TV_{latent}$ (exact)")
        axes[1][j].tick_params(labelbottom=True)
    top = s.filter(like="_mean").drop(columns=["tv_latent_mean", "excess_mean"]).to_numpy()
    axes[0][0].set_ylim(0, max(1.1, float(np.nanmax(top)) + 0.05))
    axes[0][0].set_ylabel("target test error $R_B$\nand its bounds (fraction)")
    axes[1][0].set_ylabel("excess error $R_B - \\varepsilon^*_B$\n(fraction)")
    common.legend_below(fig, axes, ncol=4)
    fig.suptitle(
        f"Target error against modality distance ({common.interval_note(args)}; "
        "lower row: methods side by side at each distance)"
    )
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, run, findings, plot, lambda a: {"grid": grid(a.quick)}
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
