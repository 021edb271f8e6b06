"""Pairing against distance: CMC, CMD and L2 when the correspondence of the pairs breaks and
the modality distance stays exactly 0 (G7).

Channels: ``mispair`` (a fraction t of the pairs join a latent of another class; the target's
label is that class; pair agreement 1 - t) and ``resample`` (a fraction t of the pairs join
another instance of the same class). On both, TV_latent = 0 and eps*_B = eps*_A for every t,
so B1a (eps*_B <= eps*_A + TV_latent) is flat by construction. Beside the measured target
error of each stage-2 loss: B1b, ``R_A(same head) + TV(learned features)`` with the certified
Gaussian-track TV of the learned features (linear maps and encoders), and the end-to-end
certificate of the probe, ``probe_total`` = min(B2, 2 L(Q) of B3 and B3p) with delta split over the
four bounds (:func:`cmcd_theory.certify.probe_certificate_rows`). Does any bound
track the degradation?

Run: ``python -m experiments.pairing_vs_distance [--quick] [--seeds S]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "pairing_vs_distance"
METHODS = ("cmc", "cmd", "l2")


def grid(quick: bool) -> dict:
    if quick:
        return {"channel": ["mispair"], "t": [0.0, 0.75], "method": ["cmc", "l2"]}
    return {
        "channel": ["mispair", "resample"],
        "t": [0.0, 0.25, 0.5, 0.75, 1.0],
        "method": list(METHODS),
    }


def _post(*a):
    return {
        **common.feature_tv(*a),
        **common.probe_bounds(*a, n_weight_samples=200, certificate=True),
    }


def run(args) -> pd.DataFrame:
    from cmcd_theory.sweeps.sweep import run_sweep
    from cmcd_theory.worlds import WorldConfig

    wc = WorldConfig()
    df = run_sweep(
        grid(args.quick),
        world=wc,
        pipeline=common.budget_pipeline("linear"),
        seeds=args.seeds,
        out=common.raw_path(args, NAME),
        progress=not args.no_progress,
        postprocess=_post,
    )
    df["b1a"] = df["bayes_A"] + df["tv_latent"]
    df["b1b"] = df["err_A_head"] + df["tv_features_upper"]
    df["certificate"] = df["probe_total"]
    return df.assign(K=wc.num_classes, separation=wc.separation, sigma=wc.sigma)


def _rise(g: pd.DataFrame, col: str) -> tuple:
    """Largest rise of the seed-mean of ``col`` over its value at t = 0, and at which t."""
    m = g.groupby("t")[col].mean()
    d = m - m.loc[m.index.min()]
    return float(d.max()), float(d.idxmax())


def findings(df: pd.DataFrame) -> dict:
    f = {}
    for (ch, me), g in df.groupby(["channel", "method"]):
        key = f"{ch},{me}"
        per_t = g.groupby("t")
        f[f"err_B[{key}]"] = {float(t): common.fmt_ci(gg["err_B"]) for t, gg in per_t}
        f[f"tv_features_upper[{key}]"] = {
            float(t): round(float(gg["tv_features_upper"].mean()), 3) for t, gg in per_t
        }
        f[f"b1b[{key}]"] = {float(t): round(float(gg["b1b"].mean()), 3) for t, gg in per_t}
        f[f"certificate[{key}]"] = {
            float(t): round(float(gg["certificate"].mean()), 3) for t, gg in per_t
        }
        rise, at = _rise(g, "err_B")
        f[f"err_B_rise[{key}]"] = f"{rise:+.3f} at t={at:g}"
        verdict = []
        for col in ("b1a", "b1b", "certificate"):
            rho = common.spearman(per_t[col].mean(), per_t["err_B"].mean())
            brise, _ = _rise(g, col)
            verdict.append(f"{col}: rise {brise:+.3f}, Spearman with err_B over t {rho:+.2f}")
        f[f"bounds_track[{key}]"] = "; ".join(verdict)
    f["tv_latent_max"] = float(df["tv_latent"].abs().max())
    f["pair_agreement_by_t[mispair]"] = {
        float(t): float(a)
        for t, a in df[df["channel"] == "mispair"].groupby("t")["pair_agreement"].first().items()
    }
    f["eps_star"] = round(float(df["bayes_B"].iloc[0]), 6)
    return f


def _channel_row(row, sc: pd.DataFrame, width: float) -> None:
    """One pairing channel: each method's error with its interval, side by side at each t
    (left), and its B1b and probe certificate with the vacuity level 1 (right). B1a equals
    eps*_B here (TV_latent = 0), so one line shows both."""
    methods = [m for m in METHODS if m in set(sc["method"])]
    curves = [(sc[sc["method"] == me].sort_values("t"), common.METHOD_STYLE[me]) for me in methods]
    for i, (g, st) in enumerate(curves):
        common.interval_bars(
            row[0],
            common.dodge(g["t"], i, len(methods), width),
            g["err_B_mean"],
            g["err_B_lo"],
            g["err_B_hi"],
            **st,
        )
    for g, st in curves:  # in this order, the figure legend reads one column per quantity
        common.band(
            row[1],
            g["t"],
            g["b1b_mean"],
            g["b1b_lo"],
            g["b1b_hi"],
            **{**st, "label": f"B1b {st['label']}"},
        )
    for g, st in curves:
        row[1].plot(
            g["t"],
            g["certificate_mean"],
            color=st["color"],
            linestyle=":",
            marker=st["marker"],
            mfc="none",
            label=f"probe certificate {st['label']}",
        )
    g = sc.drop_duplicates("t").sort_values("t")
    floor = r"$\varepsilon^*_B$ (exact) = B1a: $\varepsilon^*_A + TV_{latent}$"
    for ax, label in zip(row, ("_floor", floor)):
        ax.plot(g["t"], g["bayes_B_mean"], "k-", lw=2, zorder=1.6, label=label)
    common.reference_line(row[1], 1.0, common.VACUOUS, where=0.01)


def plot(df: pd.DataFrame, args, f: dict) -> None:
    """Rows: the pairing channels; columns: measured error (one y range for every channel, so
    that their degradations compare) and the bounds (one y range, vacuity level 1 marked)."""
    plt = common.pyplot()
    chans = list(dict.fromkeys(df["channel"]))
    fig, axes = plt.subplots(
        len(chans), 2, figsize=(11.5, 4.1 * len(chans)), squeeze=False, sharex=True, sharey="col"
    )
    s = common.summarize(
        df, ["channel", "method", "t"], ["err_B", "b1b", "certificate", "b1a", "bayes_B"]
    )
    width = 0.06 * float(np.ptp(s["t"]) or 1.0)
    for row, ch in zip(axes, chans):
        _channel_row(row, s[s["channel"] == ch], width)
        for ax in row:
            ax.set_xlabel(
                f"{ch} knob t (fraction of pairs {'mispaired' if ch == 'mispair' else 'resampled'})"
            )
            ax.tick_params(labelbottom=True)
        row[0].set_ylabel("target test error $R_B$ (fraction)")
        row[1].set_ylabel("bound value (fraction)")
        row[0].set_title(f"{ch}: measured error (TV_latent = 0 for every t)")
        row[1].set_title(f"{ch}: what the bounds say")
    fig.suptitle(f"Pairing vs distance (linear maps and encoders; {common.interval_note(args)})")
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=4)
    common.save_fig(fig, NAME, args)


def config(args) -> dict:
    return {
        "grid": grid(args.quick),
        "encoder": "linear",
        "world": "WorldConfig() defaults",
        "b1b": "err_A_head + tv_features_upper (certify B1b)",
        "certificate": common.PROBE_CERTIFICATE_CONFIG,
    }


def main(argv=None) -> pd.DataFrame:
    return common.run_experiment(
        argv, __doc__, NAME, run, findings, plot, config, default_seeds=(2, 5)
    )


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
