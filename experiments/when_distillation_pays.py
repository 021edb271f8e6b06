"""When does distillation pay? Phase diagram of the gain of CMC and CMD over the best
target-only route on the nuisance world (G6), over modality distance and label count.

World: attenuate channel with knob t (TV_latent exact), a target nuisance of dimension q = 8
and scale sigma_nu = 1 that no augmentation of the target removes (rho = 0), nonlinear maps,
MLP encoders. Routes on the same data: CMCD (source SSL -> CMC or CMD on m unlabeled pairs ->
probe) and the target-only routes supervised (encoder and head on the n labels) and target SSL
(InfoNCE on target views -> probe). Gain of a CMCD route in a cell = error of the best
target-only route there (the one with the lower mean error) - error of the CMCD route, paired
per seed; cells whose 95% t-interval excludes 0 are marked. Overlaid: the break-even curve the
toolkit's own bounds predict, where the certificate of the CMCD route's probe (``probe_total``,
min of B2 and B3 with delta split over them, :func:`cmcd_theory.certify.probe_certificate_rows`)
meets that of the target-only route
that has one (target SSL; supervised features see the labels, so B2/B3 do not apply to it).

Run: ``python -m experiments.when_distillation_pays [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "when_distillation_pays"
CMCD = ("cmc", "cmd")
TARGET_ONLY = ("supervised", "target_ssl")


def world():
    from cmcd_theory.worlds import WorldConfig

    return WorldConfig(
        channel="attenuate", nuisance_dim=8, nuisance_scale=1.0, nuisance_rho=0.0, d_B=24
    )


def grid(quick: bool) -> dict:
    if quick:
        return {"t": [0.0, 0.6], "n": [64], "method": ["cmc", "supervised", "target_ssl"]}
    return {
        "t": [0.0, 0.15, 0.3, 0.45, 0.6, 0.75],
        "n": [16, 32, 64, 128, 256, 512],
        "method": list(CMCD + TARGET_ONLY),
    }


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    wc = world()
    df = run_sweep(
        grid(args.quick),
        world=wc,
        pipeline=common.budget_pipeline("mlp"),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        progress=not args.no_progress,
        postprocess=lambda *a: common.probe_bounds(*a, n_weight_samples=200, certificate=True),
    )
    df["route_bound"] = df["probe_total"]
    return df.assign(
        K=wc.num_classes,
        separation=wc.separation,
        sigma=wc.sigma,
        q=wc.nuisance_dim,
        sigma_nu=wc.nuisance_scale,
        rho=wc.nuisance_rho,
    )


def cell_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (t, n) and CMCD method: measured gain over the best target-only route (mean, 95%
    interval over seeds) and the bound-predicted gain (target SSL's bound - the route's)."""
    rows = []
    for (t, n), g in df.groupby(["t", "n"]):
        piv = g.pivot_table(index="seed", columns="method", values="err_B")
        bnd = g.groupby("method")["route_bound"].mean()
        others = [m for m in TARGET_ONLY if m in piv]
        best = min(others, key=lambda m: piv[m].mean())
        for me in [m for m in CMCD if m in piv]:
            mean, half = common.ci95(piv[best] - piv[me])
            pred = bnd.get("target_ssl", np.nan) - bnd.get(me, np.nan)
            rows.append(
                {
                    "t": t,
                    "n": n,
                    "tv_latent": g["tv_latent"].iloc[0],
                    "method": me,
                    "best_target_only": best,
                    "gain": mean,
                    "gain_half": half,
                    "significant": bool(np.isfinite(half) and abs(mean) > half),
                    "bound_route": bnd.get(me, np.nan),
                    "bound_target_ssl": bnd.get("target_ssl", np.nan),
                    "predicted_gain": pred,
                }
            )
    return pd.DataFrame(rows)


def _break_even(tab: pd.DataFrame, col: str) -> dict:
    """Per t: the n (log2, linear interpolation) where ``col`` changes sign, NaN if it never does;
    a sign that holds on the whole n range is reported as +inf / -inf (always / never pays)."""
    out = {}
    for t, g in tab.groupby("t"):
        g = g.sort_values("n")
        x, y = np.log2(g["n"].to_numpy(float)), g[col].to_numpy(float)
        ok = np.isfinite(y)
        x, y = x[ok], y[ok]
        cross = np.nan
        for i in range(len(y) - 1):
            if np.sign(y[i]) != np.sign(y[i + 1]):
                cross = x[i] + (x[i + 1] - x[i]) * y[i] / (y[i] - y[i + 1])
                break
        if np.isnan(cross) and len(y):
            cross = np.inf if np.all(y > 0) else -np.inf if np.all(y < 0) else np.nan
        out[float(t)] = float(cross)
    return out


def findings(df: pd.DataFrame) -> dict:
    tab = cell_table(df)
    f = {
        "eps_star_B_by_t": {
            float(t): round(float(b), 6) for t, b in df.groupby("t")["bayes_B"].first().items()
        }
    }
    for me, g in tab.groupby("method"):
        sig = g[g["significant"]]
        f[f"cells[{me}]"] = len(g)
        f[f"cells_pays[{me}]"] = int((sig["gain"] > 0).sum())
        f[f"cells_loses[{me}]"] = int((sig["gain"] < 0).sum())
        f[f"max_gain[{me}]"] = (
            f"{g['gain'].max():+.3f} at t={g.loc[g['gain'].idxmax(), 't']}, "
            f"n={g.loc[g['gain'].idxmax(), 'n']}"
        )
        f[f"min_gain[{me}]"] = (
            f"{g['gain'].min():+.3f} at t={g.loc[g['gain'].idxmin(), 't']}, "
            f"n={g.loc[g['gain'].idxmin(), 'n']}"
        )
        meas, pred = _break_even(g, "gain"), _break_even(g, "predicted_gain")
        f[f"break_even_log2n_measured[{me}]"] = meas
        f[f"break_even_log2n_predicted[{me}]"] = pred
        both = [(meas[t], pred[t]) for t in meas if np.isfinite(meas[t]) and np.isfinite(pred[t])]
        f[f"break_even_distance_log2n[{me}]"] = (
            round(float(np.mean([abs(a - b) for a, b in both])), 3) if both else None
        )
        agree = np.sign(g["gain"]) == np.sign(g["predicted_gain"])
        f[f"sign_agreement_bound_vs_measured[{me}]"] = f"{int(agree.sum())}/{len(g)} cells"
        f[f"bound_route_range[{me}]"] = (
            f"{g['bound_route'].min():.3f}..{g['bound_route'].max():.3f}"
        )
    f["bound_target_ssl_range"] = (
        f"{tab['bound_target_ssl'].min():.3f}..{tab['bound_target_ssl'].max():.3f}"
    )
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    tab = cell_table(df)
    methods = [m for m in CMCD if m in set(tab["method"])]
    ts, ns = sorted(tab["t"].unique()), sorted(tab["n"].unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(6.2 * len(methods), 5.0), squeeze=False)
    lim = max(0.05, float(np.nanmax(np.abs(tab["gain"]))))
    for ax, me in zip(axes[0], methods):
        g = tab[tab["method"] == me]
        G = g.pivot(index="t", columns="n", values="gain").loc[ts, ns].to_numpy()
        S = g.pivot(index="t", columns="n", values="significant").loc[ts, ns].to_numpy()
        P = g.pivot(index="t", columns="n", values="predicted_gain").loc[ts, ns].to_numpy()
        im = ax.imshow(G, origin="lower", cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(ts)):
            for j in range(len(ns)):
                ax.text(
                    j,
                    i,
                    f"{G[i, j]:+.2f}" + ("*" if S[i, j] else ""),
                    ha="center",
                    va="center",
                    fontsize=8.5,
                    color="black",
                )
        xs, ys = np.arange(len(ns)), np.arange(len(ts))
        if len(ts) > 1 and len(ns) > 1:
            if np.nanmin(G) < 0 < np.nanmax(G):
                ax.contour(xs, ys, G, levels=[0.0], colors="black", linewidths=2)
            if np.isfinite(P).all() and np.nanmin(P) < 0 < np.nanmax(P):
                ax.contour(xs, ys, P, levels=[0.0], colors="gold", linewidths=2, linestyles="--")
        ax.plot([], [], color="black", lw=2, label="measured break-even (gain = 0)")
        ax.plot([], [], color="gold", lw=2, ls="--", label="bound-predicted break-even")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_yticks(ys)
        tvs = g.drop_duplicates("t").set_index("t")["tv_latent"]
        ax.set_yticklabels([f"{t:g} (TV {tvs[t]:.2f})" for t in ts], fontsize=9)
        ax.set_xlabel("labeled target samples n (count)")
        ax.set_ylabel("attenuate knob t (TV_latent, exact)")
        ax.set_title(
            f"gain of {me.upper()} over best target-only route\n"
            + ("(* : 95% interval excludes 0)" if args.seeds > 1 else "(one seed, no interval)")
        )
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="gain: error(best target-only) - error(CMCD)")
    fig.suptitle("When distillation pays: nuisance world (q=8, sigma_nu=1, rho=0), MLP encoders")
    fig.tight_layout()
    # below the panels: a legend inside a heatmap would hide cells (the t = 0.75 row)
    common.legend_below(fig, axes, ncol=2)
    common.save_fig(fig, NAME, args)


def config(args) -> dict:
    return {
        "world": world().as_dict(),
        "grid": grid(args.quick),
        "encoder": "mlp",
        "route_bound": common.PROBE_CERTIFICATE_CONFIG,
    }


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, run, findings, plot, config, default_seeds=(2, 5)
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
