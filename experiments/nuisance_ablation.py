"""Claim (iv) and the pipeline ablation on the nuisance world (G6), with rho and q swept.

The target observation is ``x_B = g_B(s_B, nu)`` with a nuisance ``nu ~ N(0, sigma_nu^2 I_q)`` the
source lacks (nonlinear maps, MLP encoders). Five routes on the same data (attenuate and mispair
channels at t = 0.5, n = 64 labels, m unlabeled pairs): CMCD with each stage-2 loss (CMC, CMD, L2),
target SSL (InfoNCE on views of the target that resample a fraction rho of the nuisance) and
supervised-only. Swept: the nuisance dimension q and scale sigma_nu, and rho. Reported: each route's
target error (mean, 95% interval over seeds), the paired gains CMCD - target SSL and the paired
differences between stage-2 losses, and the resolution criterion (a difference > 0.05 whose 95%
interval excludes 0), measured as it falls.

Run: ``python -m experiments.nuisance_ablation [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "nuisance_ablation"
T = 0.5
CHANNELS = ("attenuate", "mispair")  # a distance channel and a pairing channel (G2, G7)
METHODS = ("cmc", "cmd", "l2", "target_ssl", "supervised")
PAIRS = (("cmc", "target_ssl"), ("cmd", "target_ssl"), ("cmc", "l2"), ("cmd", "l2"), ("cmc", "cmd"))


def world(q: int, sigma_nu: float, rho: float):
    from cmcd_theory.worlds import WorldConfig

    return WorldConfig(
        channel="attenuate", nuisance_dim=q, nuisance_scale=sigma_nu, nuisance_rho=rho, d_B=24
    )


def knobs(quick: bool) -> list:
    """(q, sigma_nu, rho) settings: q in {4, 16} at sigma_nu = 1, and sigma_nu = 3 at q = 16
    (the physical ranges of the resolution search); each at rho = 0 and rho = 1."""
    if quick:
        return [(8, 1.0, 0.0), (8, 1.0, 1.0)]
    return [(q, sn, r) for q, sn in ((4, 1.0), (16, 1.0), (16, 3.0)) for r in (0.0, 1.0)]


def grid(quick: bool, rho: float) -> dict:
    """Every route at rho = 0. rho sets only the target's own SSL views, so at rho = 1 only
    target SSL is run; the other routes' runs (same seeds, same data) are those at rho = 0."""
    if quick:
        methods = ("cmc", "l2", "target_ssl") if rho == 0 else ("target_ssl",)
    else:
        methods = METHODS if rho == 0 else ("target_ssl",)
    return {"channel": list(CHANNELS), "t": [T], "n": [64], "method": list(methods)}


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep

    frames = []
    for q, sn, rho in knobs(args.quick):
        wc = world(q, sn, rho)
        out = common.raw_path(args, f"{NAME}_q{q}_s{sn:g}_r{rho:g}")
        df = run_sweep(
            grid(args.quick, rho),
            world=wc,
            pipeline=common.budget_pipeline("mlp"),
            seeds=args.seeds,
            out=out,
            progress=not args.no_progress,
        )
        frames.append(
            df.assign(
                q=q,
                sigma_nu=sn,
                rho=rho,
                K=wc.num_classes,
                separation=wc.separation,
                sigma=wc.sigma,
            )
        )
    df = pd.concat(frames, ignore_index=True)
    # the routes that do not use the target's views are the same at every rho (same seeds, same
    # data): the rho = 0 rows stand for them at rho = 1, so each setting has all its routes
    # (flagged by shared_from_rho0: they are copies, not further runs)
    shared = df[(df["rho"] == 0.0) & (df["method"] != "target_ssl")]
    return pd.concat(
        [df.assign(shared_from_rho0=False), shared.assign(rho=1.0, shared_from_rho0=True)],
        ignore_index=True,
    )


def _paired(df: pd.DataFrame, a: str, b: str) -> pd.Series:
    piv = df.pivot_table(index="seed", columns="method", values="err_B")
    return piv[b] - piv[a]  # > 0: a has the lower error


def findings(df: pd.DataFrame) -> dict:
    f, best = {}, None
    have = set(df["method"])
    for (ch, q, sn, rho), g in df.groupby(["channel", "q", "sigma_nu", "rho"]):
        key = f"{ch},q={q},sigma_nu={sn:g},rho={rho:g}"
        f[f"err_B[{key}]"] = " ".join(
            f"{me}:{common.fmt_ci(gg['err_B'])}" for me, gg in g.groupby("method")
        )
        for a, b in PAIRS:
            if {a, b} <= have:
                d = _paired(g, a, b)
                m, h = common.ci95(d)
                f[f"gain[{a} over {b}][{key}]"] = common.fmt_ci(d)
                resolved = abs(m) > 0.05 and np.isfinite(h) and abs(m) - h > 0
                kind = "cmcd_vs_target_ssl" if b == "target_ssl" else "stage2_losses"
                if resolved:
                    f.setdefault(f"resolved[{kind}]", []).append(
                        f"{a} - {b} at {key}: {m:+.3f} +- {h:.3f}"
                    )
                if best is None or abs(m) > best[0]:
                    best = (abs(m), f"{a} vs {b} at {key}: {m:+.3f} +- {h:.3f}")
    for kind in ("cmcd_vs_target_ssl", "stage2_losses"):
        f.setdefault(
            f"resolved[{kind}]",
            "none: no setting gives |difference| > 0.05 with a 95% interval excluding 0",
        )
    f["largest_difference"] = best[1] if best else None
    f["eps_star_B"] = {
        ch: round(float(b), 6) for ch, b in df.groupby("channel")["bayes_B"].first().items()
    }
    return f


def plot(df: pd.DataFrame, args, f: dict) -> None:
    plt = common.pyplot()
    settings = list(df.groupby(["q", "sigma_nu", "rho"]).groups)
    chans = list(dict.fromkeys(df["channel"]))
    fig, axes = plt.subplots(
        len(chans),
        1,
        figsize=(max(6.4, 1.3 * len(settings) + 2), 4.4 * len(chans)),
        squeeze=False,
        sharey=True,
    )  # one error scale: the channels compare
    for ax, ch in zip(axes[:, 0], chans):
        _bars(
            ax,
            df[df["channel"] == ch],
            settings,
            f["eps_star_B"][ch],
            ch,
            common.interval_note(args),
        )
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=6)
    common.save_fig(fig, NAME, args)


def _bars(ax, df, settings, eps, ch, note):
    s = common.summarize(df, ["q", "sigma_nu", "rho", "method"], ["err_B"])
    methods = [m for m in METHODS if m in set(df["method"])]
    width = 0.8 / len(methods)
    for j, me in enumerate(methods):
        rows = [
            s[(s["q"] == q) & (s["sigma_nu"] == sn) & (s["rho"] == r) & (s["method"] == me)].iloc[0]
            for q, sn, r in settings
        ]
        x = np.arange(len(settings)) + (j - (len(methods) - 1) / 2) * width
        mean = np.array([r["err_B_mean"] for r in rows])
        err = np.array([r["err_B_hi"] - r["err_B_mean"] for r in rows])
        st = common.METHOD_STYLE[me]
        ax.bar(
            x,
            mean,
            width,
            yerr=np.where(np.isfinite(err), err, 0),
            color=st["color"],
            label=st["label"],
            capsize=2,
        )
    ax.axhline(
        eps, color="black", linestyle=":", lw=1.5, label=r"$\varepsilon^*_B$ (Bayes floor, exact)"
    )
    ax.set_xticks(np.arange(len(settings)))
    ax.set_xticklabels(
        [f"q={q}\n$\\sigma_\\nu$={sn:g}\n$\\rho$={r:g}" for q, sn, r in settings], fontsize=9.5
    )
    ax.tick_params(labelleft=True)
    ax.set_ylabel("target test error $R_B$ (fraction)")
    ax.set_title(f"Nuisance world, {ch} t={T}, n=64: routes and stage-2 losses ({note})")


def config(args) -> dict:
    return {
        "knobs (q, sigma_nu, rho)": knobs(args.quick),
        "grid": grid(args.quick, 0.0),
        "encoder": "mlp",
        "world": world(*knobs(args.quick)[0]).as_dict(),
    }


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, run, findings, plot, config, default_seeds=(2, 5)
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
