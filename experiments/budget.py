"""The end-to-end budget on the default world: every certified part beside its measurement.

For the default world (attenuate, t = 0, CMC with normalised student features, m = 16384) at
each number n of labels that ``experiments.bounds_check`` certifies (n = 1000 and 16000 in the
full run), one row per certified part: stage 1 (B5n), stage 2 (B4n), transfer (B1a, B1b) and
the probe (B2, B3 on the stochastic probe, B3's deterministic form, the probe certificate),
with what it bounds, its unit, the certified value, its measured counterpart and their ratio,
beside the measured target error R_B and its floor eps*_B. Medians over seeds.

The parts bound different quantities: B5n and B4n bound population *losses* (nats) of
Gaussian-perturbed encoders; B1a bounds the target's Bayes error; B1b, B2, 2 L(Q) and the probe
certificate bound the probe's 0-1 error R_B; B3 bounds the stochastic probe's error L(Q).
docs/theory.md proves no bound that composes them into one bound on R_B (B6 sets them side by
side), so no total is formed here: the losses are not errors, and the 0-1 bounds are each a
complete bound on R_B on their own, not summands.

It trains nothing: the rows come from ``results[/quick]/bounds_check.csv`` (the normalised
block of ``experiments.bounds_check``, which calls :func:`write` at its end). Standalone, it
re-renders the table and figure from that CSV; with ``--plot-only`` it re-draws the figure
from ``results[/quick]/budget.csv`` alone.

    python -m experiments.budget [--quick] [--plot-only]
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

from experiments import common

NAME = "budget"

#: (part, bound row(s), what it bounds, unit, measured counterpart) in display order.
PARTS = (
    (
        "stage 1",
        "B5n",
        "stage-1 population O1 loss of the perturbed encoder",
        "nats",
        "its population loss (fresh tuples, one draw each)",
    ),
    (
        "stage 2",
        "B4n",
        "stage-2 population CMC loss of the perturbed student",
        "nats",
        "its population loss (fresh tuples, one draw each)",
    ),
    (
        "transfer",
        "B1a",
        "eps*_B: the target's Bayes error (<= eps*_A + TV_latent)",
        "0-1",
        "eps*_B (exact)",
    ),
    ("transfer", "B1b", "R_B <= R_A(same head) + TV(learned features)", "0-1", "R_B (test)"),
    ("probe", "B2", "R_B (Rademacher margin bound, min of two forms)", "0-1", "R_B (test)"),
    (
        "probe",
        "B3 L(Q)",
        "L(Q): error of the stochastic probe (min of B3, B3p)",
        "0-1",
        "L(Q) (test, 10 draws per point)",
    ),
    ("probe", "B3 2L(Q)", "R_B <= 2 L(Q) (derandomised B3)", "0-1", "R_B (test)"),
    (
        "probe",
        "certificate",
        "R_B: probe certificate (min of B2, 2 L(Q), delta split)",
        "0-1",
        "R_B (test)",
    ),
)


def default_world_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The certified rows of the default world with normalised student features."""
    sel = (
        (df["channel"] == "attenuate")
        & (df["t"] == 0.0)
        & (df["method"] == "cmc")
        & (df["student_features"] == "normalized")
    )
    return df[sel]


def _per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """One record per (seed, part) of one n: value, measured, measured_deterministic."""
    out = []
    for seed, s in g.groupby("seed"):
        by = {b: r for b, r in s.set_index("bound").iterrows()}
        err_b = float(s["err_B"].iloc[0])

        def add(part, bound, value, measured, det=np.nan, detail="", *, seed=seed, err_b=err_b):
            out.append(
                {
                    "seed": seed,
                    "part": part,
                    "bound": bound,
                    "value": float(value),
                    "measured": float(measured),
                    "measured_deterministic": float(det),
                    "attained_by": detail,
                    "err_B": err_b,
                }
            )

        if "B5n" in by:
            add("stage 1", "B5n", by["B5n"]["value"], by["B5n"]["measured"])
        if "B4n" in by:
            add(
                "stage 2",
                "B4n",
                by["B4n"]["value"],
                by["B4n"]["measured"],
                by["B4n"]["distill_pop_loss"],
            )
        if "B1a" in by:
            add("transfer", "B1a", by["B1a"]["value"], by["B1a"]["measured"])
        if "B1b" in by:
            add("transfer", "B1b", by["B1b"]["value"], by["B1b"]["measured"])
        b2 = [b for b in ("B2_sample", "B2_data_free") if b in by]
        if b2:
            best = min(b2, key=lambda b: by[b]["value"])
            add("probe", "B2", by[best]["value"], err_b, detail=best)
        b3 = [b for b in ("B3", "B3p") if b in by]
        if b3:
            best = min(b3, key=lambda b: by[b]["value"])
            r = by[best]
            add("probe", "B3 L(Q)", r["value"] / 2, r["measured_stochastic"], err_b, detail=best)
            add("probe", "B3 2L(Q)", r["value"], err_b, detail=best)
        if "probe" in by:
            add(
                "probe",
                "certificate",
                by["probe"]["value"],
                err_b,
                detail=str(by["probe"].get("attained_by", "")),
            )
    return pd.DataFrame(out)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The budget table: per n and part, medians over seeds of value, measured and ratio."""
    d = default_world_rows(df)
    rows = []
    meta = {p[1]: p for p in PARTS}
    for n, g in d.groupby("n_labels"):
        recs = _per_seed(g)
        if recs.empty:
            continue
        floor = g.loc[g["bound"] == "floor", "value"]
        for bound in [p[1] for p in PARTS]:
            r = recs[recs["bound"] == bound]
            if r.empty:
                continue
            part, _, what, unit, counterpart = meta[bound]
            rows.append(
                {
                    "n": int(n),
                    "part": part,
                    "bound": bound,
                    "bounds": what,
                    "unit": unit,
                    "value": float(r["value"].median()),
                    "measured": float(r["measured"].median()),
                    "counterpart": counterpart,
                    "ratio": float((r["value"] / r["measured"]).median()),
                    "measured_deterministic": float(r["measured_deterministic"].median()),
                    "attained_by": ",".join(sorted(set(r["attained_by"]) - {""})),
                    "vacuous": bool((r["value"] >= (1.0 if unit == "0-1" else np.inf)).all()),
                    "target_error": float(r["err_B"].median()),
                    "bayes_floor": float(floor.median()) if len(floor) else np.nan,
                    "seeds": int(len(r)),
                }
            )
    return pd.DataFrame(rows)


def _bars(ax, u: pd.DataFrame) -> None:
    """One panel: a bar per certified part (its value), a dot at its measured counterpart and
    the value with its ratio to the measurement (marked where the bound is vacuous)."""
    y = np.arange(len(u))
    ax.barh(y, u["value"], color="tab:blue", alpha=0.55, label="certified value (bar)")
    ax.plot(u["measured"], y, "o", color="k", label="measured counterpart")
    for yy, (_, r) in zip(y, u.iterrows()):
        note = ", vacuous" if r["vacuous"] else ""
        ax.text(
            r["value"], yy, f" {r['value']:.3g} ({r['ratio']:.2g}x{note})", va="center", fontsize=9
        )
    ax.set_yticks(y, [f"{r['part']}: {r['bound']}" for _, r in u.iterrows()])


def plot(tab: pd.DataFrame, args) -> None:
    """Per n (columns): the stage losses in nats (top) and the 0-1 parts (bottom), each row on
    one x range so that the n columns compare at a glance; the 0-1 panels mark the vacuity
    level 1, the measured R_B and eps*_B."""
    plt = common.pyplot()
    ns = sorted(tab["n"].unique())
    fig, axes = plt.subplots(
        2,
        len(ns),
        figsize=(6.0 * len(ns), 8.0),
        squeeze=False,
        sharex="row",
        sharey="row",
        gridspec_kw={"height_ratios": [1, 2]},
    )
    for j, n in enumerate(ns):
        t = tab[tab["n"] == n]
        for i, unit in enumerate(("nats", "0-1")):
            ax = axes[i, j]
            _bars(ax, t[t["unit"] == unit].iloc[::-1])
            if unit == "nats":
                ax.set_title(f"n = {n}: stage-1 and stage-2 losses (nats)")
                ax.set_xlabel("population loss of the perturbed encoder / student (nats)")
                continue
            err, floor = t["target_error"].iloc[0], t["bayes_floor"].iloc[0]
            ax.axvline(err, color="tab:red", ls="--", label="measured target error R_B")
            if np.isfinite(floor):
                ax.axvline(floor, color="tab:green", ls=":", lw=2, label="eps*_B (Bayes floor)")
            common.reference_line(
                ax, 1.0, "1: vacuous\n(trivial bound)", axis="x", color="black", where=0.995
            )
            ax.set_title(
                f"n = {n}: 0-1 errors, measured R_B = {err:.3f}\n(each bar bounds its own quantity)"
            )
            ax.set_xlabel("error (fraction)")
    for i, unit in enumerate(("nats", "0-1")):
        u = tab[tab["unit"] == unit]
        top = float(np.nanmax(np.r_[u["value"], u["measured"]]))
        axes[i, 0].set_xlim(0, top * 1.45 if unit == "nats" else max(1.0, top) * 1.45)
    fig.suptitle(
        "End-to-end budget, default world (CMC, normalised features, m = 16384):\n"
        "certified parts beside their measurements (medians over seeds); the parts bound "
        "different quantities and are not summed",
        fontsize=11,
    )
    fig.tight_layout()
    common.legend_below(fig, axes, ncol=4)
    common.save_fig(fig, NAME, args)


def write(df: pd.DataFrame, args) -> pd.DataFrame:
    """Table (``<out_dir>/budget.csv``, ``.json``) and figure from bounds_check's rows."""
    tab = table(df)
    if tab.empty:
        print(f"[{NAME}] no certified default-world rows with normalised features: nothing written")
        return tab
    findings = {}
    for (n, b), r in tab.set_index(["n", "bound"]).iterrows():
        findings[f"{b}@n={n}"] = {
            "value": r["value"],
            "measured": r["measured"],
            "ratio": r["ratio"],
            "unit": r["unit"],
        }
    for n, t in tab.groupby("n"):
        findings[f"target@n={n}"] = {
            "R_B": t["target_error"].iloc[0],
            "eps*_B": t["bayes_floor"].iloc[0],
        }
    findings["composition"] = (
        "no composed bound: the parts bound different quantities "
        "(losses in nats, Bayes error, R_B, L(Q)); see docs/theory.md B6"
    )
    common.save_results(
        tab, NAME, args, {"source": "bounds_check.csv (normalised block)"}, findings
    )
    plot(tab, args)
    print(tab[["n", "part", "bound", "unit", "value", "measured", "ratio"]].to_string(index=False))
    return tab


def main(argv=None) -> pd.DataFrame:
    args = common.parse_args(
        argv,
        __doc__.split("\n")[0],
        default_seeds=(2, 2),
        prog="python -m experiments.budget",
        plot_only=True,
    )
    if args.plot_only:  # the figure from <out_dir>/budget.csv as it is: no table recomputed
        tab, _ = common.load_results(NAME, args)
        plot(tab, args)
        return tab
    src = os.path.join(args.out_dir, "bounds_check.csv")
    if not os.path.exists(src):
        raise SystemExit(
            f"{src} not found: run python -m experiments.bounds_check"
            f"{' --quick' if args.quick else ''} first (it writes the budget too)"
        )
    return write(pd.read_csv(src), args)


if __name__ == "__main__":
    main(sys.argv[1:])
