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

from experiments import common  # sets the compile cache before jax loads

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax

NAME = "rotate_channel"


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["rotate"], "t": [0.0, 0.33, 0.67, 1.0], "method": ["cmc", "oracle"]}
    return {"channel": ["rotate"], "t": [0.0, 0.25, 0.5, 0.75, 1.0], "method": ["cmc", "l2", "oracle"]}


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep
    df = run_sweep(grid(args.quick), pipeline=common.base_pipeline(args), seeds=args.seeds,
                   out=common.raw_path(args, NAME), postprocess=common.feature_tv,
                   progress=not args.no_progress)
    if "tv_features_upper" in df:
        df["b1b_total"] = df["err_A_head"] + df["tv_features_upper"]
    return df


def findings(df: pd.DataFrame) -> dict:
    f = {}
    slack = common.test_slack(20000)
    for t, g in df.groupby("t"):
        c = g[g["method"] == "cmc"]
        f[f"t={t}"] = (f"TV_latent {g['tv_latent'].iloc[0]:.3f}, TV_features(cmc) "
                       f"{common.fmt_ci(c['tv_features'])}, err_B(cmc) {common.fmt_ci(c['err_B'])}, "
                       f"eps*_B {g['bayes_B'].iloc[0]:.3f}")
    c = df[df["method"] == "cmc"]
    f["max_tv_latent"] = round(float(df["tv_latent"].max()), 3)
    f["max_tv_features_cmc"] = round(float(c.groupby("t")["tv_features"].mean().max()), 3)
    e = c.groupby("t")["err_B"].mean()
    f["err_B_cmc_range"] = f"{e.min():.3f} .. {e.max():.3f}"
    f["b1b_holds_fraction"] = float(np.mean(c["b1b_total"] >= c["err_B"] - 2 * slack))
    f["spearman_err_vs_tv_latent[cmc]"] = round(common.spearman(e.index.map(
        df.groupby("t")["tv_latent"].first()), e.to_numpy()), 3)
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    cols = [c for c in ("err_B", "tv_latent", "bayes_A", "bayes_B", "tv_features", "tv_features_upper",
                        "b1b_total") if c in df]
    s = common.summarize(df, ["method", "t"], cols)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    g0 = s.drop_duplicates("t").sort_values("t")
    a1.plot(g0["t"], g0["tv_latent_mean"], "k--", lw=2, label="$TV_{latent}$ (exact, nominal)")
    for me in ("cmc", "l2"):
        g = s[s["method"] == me].sort_values("t")
        if not len(g):
            continue
        st = common.METHOD_STYLE[me]
        common.band(a1, g["t"], g["tv_features_mean"], g["tv_features_lo"], g["tv_features_hi"],
                    **{**st, "label": f"{st['label']}: TV of learned features (MC estimate)"})
        a1.plot(g["t"], g["tv_features_upper_mean"], ":", color=st["color"],
                label=f"{st['label']}: certified upper end")
    a1.set_xlabel("rotation knob t (angle t*90 degrees)")
    a1.set_ylabel("total variation distance")
    a1.set_title("Nominal vs learned modality distance")
    a1.legend(fontsize=8)
    for me in dict.fromkeys(s["method"]):
        g = s[s["method"] == me].sort_values("t")
        common.band(a2, g["t"], g["err_B_mean"], g["err_B_lo"], g["err_B_hi"], **common.METHOD_STYLE[me])
    a2.plot(g0["t"], g0["bayes_B_mean"], "k-", lw=2, label=r"$\varepsilon^*_B$")
    a2.plot(g0["t"], g0["bayes_A_mean"] + g0["tv_latent_mean"], "k--",
            label=r"$\varepsilon^*_A + TV_{latent}$ (B1a)")
    g = s[s["method"] == "cmc"].sort_values("t")
    a2.plot(g["t"], g["b1b_total_mean"], "-.", color="tab:orange", label="$R_A(h) + TV_{features}$ (B1b, CMC)")
    a2.set_xlabel("rotation knob t (angle t*90 degrees)")
    a2.set_ylabel("target test error $R_B$ (fraction)")
    a2.set_title("Target error: which distance the bound needs")
    a2.legend(fontsize=8)
    fig.suptitle(f"Rotate channel ({common.interval_note(args)})")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(argv, __doc__, NAME, run, findings, plot, lambda a: {
        "grid": grid(a.quick), "tv_estimate": "gaussian_feature_tv MC"})


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
