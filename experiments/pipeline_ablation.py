"""When does going through the source modality pay? CMCD against target-only pipelines in n.

Three pipelines on the same target data (attenuate channel, t = 0.25), as the number n of
target labels grows: source SSL -> distillation (CMC) -> probe; target SSL (InfoNCE on the
target halves of the m unlabeled pairs) -> probe; supervised-only (encoder and head trained on
the n labels). Mean and 95% t-interval over seeds.

Run: ``python -m experiments.pipeline_ablation [--quick] [--seeds S]``.
"""

from __future__ import annotations

import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "pipeline_ablation"
T = 0.25


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["attenuate"], "t": [T], "n": [32, 512], "method": ["cmc", "supervised"]}
    return {
        "channel": ["attenuate"],
        "t": [T],
        "n": [16, 64, 256, 1024],
        "method": ["cmc", "target_ssl", "supervised"],
    }


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    return run_sweep(
        grid(args.quick),
        pipeline=common.base_pipeline(args),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        progress=not args.no_progress,
    )


def findings(df: pd.DataFrame) -> dict:
    f = {}
    piv = df.pivot_table(index=["n", "seed"], columns="method", values="err_B")
    for n, g in df.groupby("n"):
        f[f"err_B[n={n}]"] = " ".join(
            f"{me}:{common.fmt_ci(gg['err_B'])}" for me, gg in g.groupby("method")
        )
    for other in ("supervised", "target_ssl"):
        if other in piv:
            gains = {
                int(n): common.fmt_ci(piv.loc[n][other] - piv.loc[n]["cmc"])
                for n in piv.index.get_level_values("n").unique()
            }
            f[f"gain_of_cmc_over_{other}"] = gains
            # significant: the 95% interval of the paired gain lies above zero
            pays = [
                n
                for n in gains
                if (lambda m, h: m - h > 0)(*common.ci95(piv.loc[n][other] - piv.loc[n]["cmc"]))
            ]
            f[f"n_where_cmc_significantly_beats_{other}"] = sorted(pays)
    f["eps_star_B"] = round(float(df["bayes_B"].iloc[0]), 4)
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    s = common.summarize(df, ["method", "n"], ["err_B"])
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    labels = {
        "cmc": "source SSL -> distill (CMC) -> probe",
        "target_ssl": "target SSL -> probe",
        "supervised": "supervised only",
        "oracle": "oracle probe on s_B",
    }
    methods = list(dict.fromkeys(s["method"]))
    for i, me in enumerate(methods):  # side by side at each n: overlapping bands hid each other
        g = s[s["method"] == me].sort_values("n")
        common.interval_bars(
            ax,
            common.dodge(g["n"], i, len(methods), 0.2, log=True),
            g["err_B_mean"],
            g["err_B_lo"],
            g["err_B_hi"],
            **{**common.METHOD_STYLE[me], "label": labels[me]},
        )
    common.reference_line(
        ax,
        f["eps_star_B"],
        r"$\varepsilon^*_B$ (Bayes floor, exact)",
        color="black",
        ls=":",
        where=0.01,
        below=True,
    )
    ax.set_ylim(bottom=f["eps_star_B"] - 0.03)  # room for the floor's label under its line
    ax.set_xscale("log")
    common.count_ticks((ax,), df["n"].unique())
    ax.set_xlabel("labeled target samples n (count, log scale)")
    ax.set_ylabel("target test error $R_B$ (fraction)")
    ax.set_title(f"Pipeline ablation (attenuate, t={T}; {common.interval_note(args)})")
    ax.legend(fontsize=9, loc="upper right")
    fig.tight_layout()
    common.save_fig(fig, NAME, args)


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, run, findings, plot, lambda a: {"grid": grid(a.quick)}
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
