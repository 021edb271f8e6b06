"""Claim (ii): the stage-2 generalisation gap falls with the number m of pairs, under B4.

Left: the distillation gap (population minus training tuple loss, O2/O3 with the raw student
features that B4 covers) against m on log-log axes for CMC and CMD, with the gap that B4
certifies (bound minus training loss). A point whose 95% interval over seeds excludes 0 is
drawn with its interval; any other is drawn as an upper limit (a down triangle at the
interval's upper end), never dropped; the log-log slope is fitted on the resolved points and
printed with its 95% interval. Right: the target
test error against m for several distances t, levelling off at a distance-dependent floor
(eps*_B of each t, dashed). Mean and 95% t-interval over seeds.

Run: ``python -m experiments.convergence_m [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "convergence_m"
N_POP_FULL = 65536
SEEDS = (2, 5)


def grid(quick: bool) -> dict:
    if quick:
        return {
            "channel": ["attenuate"],
            "m": [256, 1024, 4096],
            "t": [0.0, 0.5, 0.8],
            "method": ["cmc"],
        }
    # 512 and 2048 between the points the gap resolves at, so the slope gets an interval
    return {
        "channel": ["attenuate"],
        "m": [256, 512, 1024, 2048, 4096, 16384],
        "t": [0.0, 0.5, 0.8],
        "method": ["cmc", "cmd"],
    }


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    pipe = common.base_pipeline(args)
    # more fresh pairs for the population loss than the default (the gap at large m is small)
    pipe = pipe.replace(
        distill=pipe.distill.replace(student_features="raw"),
        n_pop=pipe.n_pop if args.quick else N_POP_FULL,
    )
    return run_sweep(
        grid(args.quick),
        pipeline=pipe,
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        postprocess=common.distill_bound,
        progress=not args.no_progress,
    )


def gap_summary(g: pd.DataFrame, by: str = "m", col: str = "distill_gap") -> pd.DataFrame:
    """Per value of ``by``: the mean of ``col``, its 95% t-interval over seeds, and whether
    the interval excludes 0 (``resolved``)."""
    s = common.summarize(g, [by], [col]).sort_values(by)
    s["resolved"] = (s[f"{col}_lo"] > 0) | (s[f"{col}_hi"] < 0)
    return s


def _resolved(g: pd.DataFrame) -> pd.DataFrame:
    """Per m: the mean gap, its 95% t-interval over seeds, and whether the interval excludes 0."""
    return gap_summary(g, "m", "distill_gap")


def draw_gap(
    ax, g: pd.DataFrame, x: str, col: str, *, color, marker, label: str, slope, half
) -> None:
    """A measured gap on log axes from :func:`gap_summary` rows ``g``: resolved positive
    points with their 95% interval (and the fitted slope in the legend); every other point
    as an upper limit (a down triangle at the interval's upper end), never dropped."""
    g = g.sort_values(x)
    mean, lo, hi = g[f"{col}_mean"], g[f"{col}_lo"], g[f"{col}_hi"]
    pos = ((lo > 0) | (hi < 0)) & (mean > 0)
    if pos.any():
        ax.errorbar(
            g[x][pos],
            mean[pos],
            yerr=[mean[pos] - lo[pos], hi[pos] - mean[pos]],
            color=color,
            marker=marker,
            capsize=3,
            label=f"{label} measured gap (slope {slope:.2f} "
            + (
                f"+- {half:.2f})"
                if np.isfinite(half)
                else f"from {int(pos.sum())} points: no interval)"
            ),
        )
        ax.plot(g[x][pos], mean[pos], color=color)
    up = ~pos
    if up.any():
        ax.plot(
            g[x][up],
            np.maximum(hi[up], 1e-6),
            color=color,
            marker="v",
            markersize=9,
            linestyle="none",
            label=f"{label}: upper limit (95% interval contains 0)",
        )


def slope_with_interval(m, gap) -> tuple:
    """Least-squares log-log slope over the given points and its 95% t-interval half-width
    (``nan`` with fewer than 3 points)."""
    from scipy import stats

    m, gap = np.asarray(m, float), np.asarray(gap, float)
    ok = (m > 0) & (gap > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    r = stats.linregress(np.log(m[ok]), np.log(gap[ok]))
    half = float(stats.t.ppf(0.975, ok.sum() - 2) * r.stderr) if ok.sum() >= 3 else float("nan")
    return float(r.slope), half


def findings(df: pd.DataFrame) -> dict:
    f = {}
    for me, g in df.groupby("method"):
        s = _resolved(g)
        res = s[s["resolved"] & (s["distill_gap_mean"] > 0)]
        slope, half = slope_with_interval(res["m"], res["distill_gap_mean"])
        f[f"gap_loglog_slope[{me}]"] = round(slope, 3)
        f[f"gap_loglog_slope_ci95_halfwidth[{me}]"] = round(half, 3)
        f[f"gap_slope_fitted_on_m[{me}]"] = [int(v) for v in res["m"]]
        f[f"gap_unresolved_m_shown_as_upper_limits[{me}]"] = [
            int(v) for v in s.loc[~s["resolved"], "m"]
        ]
        bm = g.groupby("m")["b4_gap"].mean()
        f[f"b4_gap_loglog_slope[{me}]"] = round(common.loglog_slope(bm.index, bm.to_numpy()), 3)
        for m_, gg in g.groupby("m"):
            f[f"gap[{me},m={m_}]"] = common.fmt_ci(gg["distill_gap"], 4)
        f[f"b4_holds_fraction[{me}]"] = float(
            np.mean(g["distill_pop_loss"] - g["b4_pop_slack"] <= g["b4_total"])
        )
        f[f"b4_gap_range[{me}]"] = f"{g['b4_gap'].min():.2f} .. {g['b4_gap'].max():.2f}"
    for t, g in df[df["method"] == "cmc"].groupby("t"):
        e = g.groupby("m")["err_B"].mean()
        f[f"err_B_cmc[t={t}]"] = (
            " ".join(f"m={k}:{v:.3f}" for k, v in e.items())
            + f" (eps*_B={g['bayes_B'].iloc[0]:.3f})"
        )
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    s = common.summarize(df, ["method", "m"], ["distill_gap", "b4_gap"])
    b4_styles = {"cmc": dict(linestyle="--", marker="s"), "cmd": dict(linestyle=":", marker="o")}
    methods = list(dict.fromkeys(s["method"]))
    for i, me in enumerate(methods):
        g = s[s["method"] == me].sort_values("m")
        # methods side by side at each m (a factor within 1.1): equal gaps keep both intervals
        g = g.assign(m=common.dodge(g["m"], i, len(methods), 0.1, log=True))
        st = common.METHOD_STYLE[me]
        slope = f.get(f"gap_loglog_slope[{me}]", np.nan)
        half = f.get(f"gap_loglog_slope_ci95_halfwidth[{me}]", np.nan)
        draw_gap(
            a1,
            g,
            "m",
            "distill_gap",
            color=st["color"],
            marker=st["marker"],
            label=st["label"],
            slope=slope,
            half=half,
        )
        a1.plot(
            g["m"],
            g["b4_gap_mean"],
            color=st["color"],
            **b4_styles.get(me, {}),
            mfc="none",
            label=f"{st['label']}: B4 certified gap",
        )
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("unlabeled pairs m (count, log scale)")
    a1.set_ylabel("population - training tuple loss (nats)")
    a1.set_title("Stage-2 generalisation gap and B4")
    a1.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)
    sc = common.summarize(df[df["method"] == "cmc"], ["t", "m"], ["err_B", "bayes_B", "tv_latent"])
    colors = ["tab:blue", "tab:orange", "tab:red", "tab:green"]
    for c, t in zip(colors, dict.fromkeys(sc["t"])):
        g = sc[sc["t"] == t].sort_values("m")
        common.band(
            a2,
            g["m"],
            g["err_B_mean"],
            g["err_B_lo"],
            g["err_B_hi"],
            color=c,
            marker="o",
            label=f"CMC, t={t} (TV_latent={g['tv_latent_mean'].iloc[0]:.2f})",
        )
        a2.axhline(g["bayes_B_mean"].iloc[0], color=c, linestyle="--", lw=1)
    a2.plot([], [], "k--", lw=1, label=r"$\varepsilon^*_B$ of each t")
    a2.set_xscale("log")
    a2.set_xlabel("unlabeled pairs m (count, log scale)")
    a2.set_ylabel("target test error $R_B$ (fraction)")
    a2.set_title("Target error against m: distance-dependent floor")
    a2.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)
    common.count_ticks((a1, a2), df["m"].unique())
    fig.suptitle(f"Convergence in the number of pairs ({common.interval_note(args)})")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv,
        __doc__,
        NAME,
        run,
        findings,
        plot,
        lambda a: {
            "grid": grid(a.quick),
            "student_features": "raw",
            "n_pop": None if a.quick else N_POP_FULL,
        },
        default_seeds=SEEDS,
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
