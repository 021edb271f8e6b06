"""Stage 3 in n: the target test error against the number n of labels, with B2 and B3 by term.

One CMC pipeline (attenuate channel, t = 0.25) for each n; the probe's bounds are stacked by
their named terms: B2 in its data-free form (ramp loss + (4K Lambda r)/(rho sqrt n) +
confidence) and B3 (Monte Carlo upper end of the stochastic empirical loss + the rest of the
kl-inverted bound: KL/n and confidence), each a bound on a risk that the measured error
``err_B`` must stay under (B3 bounds the Gaussian-perturbed classifier; twice it bounds the
deterministic probe, the dashed line). Mean over seeds; the error has its 95% t-interval.

Run: ``python -m experiments.generalization_n [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "generalization_n"
T = 0.25


def grid(quick: bool) -> dict:
    n = [32, 128, 512] if quick else [16, 64, 256, 1024, 4096]
    return {"channel": ["attenuate"], "t": [T], "n": n, "method": ["cmc"]}


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    return run_sweep(
        grid(args.quick),
        pipeline=common.base_pipeline(args),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        postprocess=common.probe_bounds,
        progress=not args.no_progress,
    )


def findings(df: pd.DataFrame) -> dict:
    f = {}
    slack = common.test_slack(20000)
    for n, g in df.groupby("n"):
        f[f"n={n}"] = (
            f"err_B {common.fmt_ci(g['err_B'])}, B2 {g['b2_total'].mean():.3f}, "
            f"B3 stochastic {g['b3_total'].mean():.3f}, "
            f"B3 deterministic {g['b3_total_deterministic'].mean():.3f}"
        )
    f["b2_holds_fraction"] = float(np.mean(df["b2_total"] >= df["err_B"] - slack))
    f["b3_holds_fraction"] = float(np.mean(df["b3_total_deterministic"] >= df["err_B"] - slack))
    nz = df.groupby("n")[["b2_data_free_total", "b3_total"]].mean()
    f["smallest_n_b2_nonvacuous"] = (
        int(nz.index[nz["b2_data_free_total"] < 1].min())
        if (nz["b2_data_free_total"] < 1).any()
        else None
    )
    f["smallest_n_b3_stochastic_nonvacuous"] = (
        int(nz.index[nz["b3_total"] < 1].min()) if (nz["b3_total"] < 1).any() else None
    )
    f["eps_star_B"] = round(float(df["bayes_B"].iloc[0]), 4)
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    m = df.groupby("n").mean(numeric_only=True).sort_index()
    e = common.summarize(df, ["n"], ["err_B"]).sort_values("n")
    n = m.index.to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.0), sharey=True)
    b2 = [m["b2_data_free_empirical"], m["b2_data_free_complexity"], m["b2_data_free_confidence"]]
    axes[0].stackplot(
        n,
        *b2,
        labels=[
            "ramp loss $\\hat R_\\rho$",
            "complexity $4K\\Lambda r/(\\rho\\sqrt{n})$",
            "confidence",
        ],
        alpha=0.5,
        colors=["tab:green", "tab:orange", "tab:gray"],
    )
    axes[0].set_title("B2 margin bound (data-free form), by term")
    rest = m["b3_total"] - m["b3_empirical_upper"]
    axes[1].stackplot(
        n,
        m["b3_empirical_upper"],
        rest,
        labels=["stochastic empirical loss (MC upper)", "KL/n + confidence (kl-inverse)"],
        alpha=0.5,
        colors=["tab:green", "tab:orange"],
    )
    axes[1].plot(
        n, m["b3_total_deterministic"], "--", color="tab:red", label="2 x B3: bound on the probe"
    )
    axes[1].set_title("B3 PAC-Bayes-kl bound, by term")
    for ax in axes:
        # error bars, not a band: a shaded interval would vanish in the stacked areas
        common.interval_bars(
            ax,
            e["n"],
            e["err_B_mean"],
            e["err_B_lo"],
            e["err_B_hi"],
            color="black",
            marker="o",
            zorder=5,
            label="measured $R_B$ (CMC)",
        )
        ax.axhline(
            f["eps_star_B"],
            color="black",
            lw=1.2,
            linestyle=":",
            label=r"$\varepsilon^*_B$ (Bayes floor, exact)",
        )
        common.reference_line(ax, 1.0, common.VACUOUS, color="black", where=0.99)
        ax.set_xscale("log")
        common.count_ticks((ax,), n)
        ax.set_xlabel("labeled target samples n (count, log scale)")
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, frameon=False)
    axes[0].set_ylabel("risk (fraction)")
    top = float(
        min(
            4.0,
            max(1.1, np.nanmax(m["b3_total_deterministic"]), np.nanmax(m["b2_data_free_total"])),
        )
    )
    axes[0].set_ylim(0, top * 1.05)
    fig.suptitle(
        f"Generalisation in n (attenuate, t={T}; "
        f"{common.interval_note(args, 'on $R_B$ over seeds')})"
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
