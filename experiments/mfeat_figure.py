"""The summaries and the figure of :mod:`experiments.mfeat` (UCI multiple features).

* :func:`summarize` -- per (target view, method, n): means over seeds and the 95% interval
  of err_B;
* :func:`rank_correlations` -- Spearman correlation across target views between the
  estimated modality distance and err_B at the largest n, per aligning method;
* :func:`plot` -- ``figures/mfeat.png`` + ``.pdf``: err_B against n per target view (top),
  estimated distance against err_B with the rank correlations (bottom).

The method names come from the caller (``experiments.mfeat.METHODS`` and its aligning
methods), so that this module needs nothing from the experiment.
"""

from __future__ import annotations

import pathlib

import pandas as pd

from cmcd_theory.worlds import mfeat
from experiments import common

STYLE = dict(
    common.METHOD_STYLE,
    discomkd=dict(color="tab:brown", marker="P", label="DisCoM-KD (n labeled pairs)"),
)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (target_view, method, n): mean over seeds of err_B, tv_lower and tv_estimate, and
    the half-width ``err_B_ci`` of the 95% Student-t interval of err_B (NaN for one seed)."""
    rows = []
    for (view, method, n), g in df.groupby(["target_view", "method", "n"], sort=False):
        mean, half = common.ci95(g["err_B"])
        rows.append(
            {
                "target_view": view,
                "method": method,
                "n": n,
                "seeds": len(g),
                "err_B": mean,
                "err_B_ci": half,
                "tv_lower": g["tv_lower"].mean(),
                "tv_estimate": g["tv_estimate"].mean(),
            }
        )
    return pd.DataFrame(rows)


def rank_correlations(df: pd.DataFrame, aligned: tuple) -> dict:
    """Spearman correlation across target views between the mean estimated distance
    (``tv_estimate``) and the mean err_B at the largest n, per aligning method of
    ``aligned`` (with at least 3 views)."""
    n_max = df["n"].max()
    summary = summarize(df[df["n"] == n_max])
    out = {}
    for method in aligned:
        s = summary[summary["method"] == method]
        if len(s) >= 3:
            out[method] = {
                "rho": common.spearman(s["tv_estimate"], s["err_B"]),
                "views": int(len(s)),
                "n": int(n_max),
            }
    return out


def plot(df: pd.DataFrame, stem: pathlib.Path, methods: tuple, aligned: tuple) -> None:
    """Write ``stem.png`` and ``stem.pdf``: err_B vs n per target view of every method of
    ``methods`` (95% intervals over seeds) and estimated distance vs error of the ``aligned``
    methods with the Spearman correlations."""
    plt = common.pyplot()
    summary = summarize(df)
    views = list(dict.fromkeys(df["target_view"]))
    ncol = max(len(views), 3)
    fig = plt.figure(figsize=(3.3 * ncol, 8.0))
    gs = fig.add_gridspec(
        2,
        ncol,
        height_ratios=[1, 1.15],
        hspace=0.38,
        wspace=0.32,
        left=0.06,
        right=0.985,
        top=0.91,
        bottom=0.08,
    )
    _error_panels(fig, gs, df, summary, views, methods)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    scatter_handles = _distance_panel(fig.add_subplot(gs[1, : ncol - 2]), df, summary, aligned)

    leg_ax = fig.add_subplot(gs[1, ncol - 2 :])
    leg_ax.axis("off")
    first = leg_ax.legend(
        scatter_handles,
        [h.get_label() for h in scatter_handles],
        loc="upper left",
        fontsize=9,
        title_fontsize=9,
        title=f"rank correlation across the {len(views)} target views",
    )
    leg_ax.add_artist(first)
    leg_ax.legend(
        handles, labels, loc="lower left", fontsize=9, title="methods (top row)", title_fontsize=9
    )
    fig.suptitle(
        "UCI multiple features: source = pixel view (240 features), each other view a "
        f"target; {df['seed'].nunique()} seeds, 95% intervals over seeds",
        fontsize=11,
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(ext), dpi=120, bbox_inches=None)
    plt.close(fig)


def _error_panels(fig, gs, df: pd.DataFrame, summary: pd.DataFrame, views, methods) -> None:
    """The top row: err_B against n, one panel per target view on one shared error scale (the
    views compare), the methods side by side at each n."""
    ns = sorted(df["n"].unique())
    top = None
    for i, view in enumerate(views):
        ax = top = fig.add_subplot(gs[0, i], sharey=top)
        for j, method in enumerate(methods):
            s = summary[(summary["target_view"] == view) & (summary["method"] == method)]
            st = STYLE[method]
            ax.errorbar(
                common.dodge(s["n"], j, len(methods), 0.3, log=True),
                s["err_B"],
                yerr=s["err_B_ci"].fillna(0),
                marker=st["marker"],
                ms=4,
                capsize=2,
                label=st["label"],
                color=st["color"],
                lw=1.2,
            )
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_title(f"B = {view} ({mfeat.VIEWS[view]} features)", fontsize=10.5)
        ax.set_xlabel("n labels (labeled pairs for DisCoM-KD)", fontsize=9.5)
        if i == 0:
            ax.set_ylabel("target test error err_B")
        ax.tick_params(labelsize=9)


def _distance_panel(ax, df: pd.DataFrame, summary: pd.DataFrame, aligned) -> list:
    """The bottom panel: estimated distance against err_B at the largest n, one point per
    (aligning method, target view); returns the scatter handles (labelled with the Spearman
    correlation of each method)."""
    n_max = df["n"].max()
    s = summary[summary["n"] == n_max]
    rho = rank_correlations(df, aligned)
    scatter_handles = []
    for method in aligned:
        t = s[s["method"] == method]
        st = STYLE[method]
        label = st["label"] + (f":  Spearman {rho[method]['rho']:+.2f}" if method in rho else "")
        scatter_handles.append(
            ax.scatter(
                t["tv_estimate"],
                t["err_B"],
                marker=st["marker"],
                color=st["color"],
                s=40,
                label=label,
            )
        )
        for _, r in t.iterrows():
            ax.annotate(
                r["target_view"],
                (r["tv_estimate"], r["err_B"]),
                fontsize=8,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.set_xlabel(
        "estimated TV between learned source and target features "
        "(2 acc - 1 of a held-out two-sample classifier)"
    )
    ax.set_ylabel(f"err_B at n = {n_max}")
    ax.set_title(
        "modality distance vs target error, one point per (method, target view), means over seeds",
        fontsize=10,
    )
    return scatter_handles
