"""Do the bounds hold? Every bound of docs/theory.md (B1a, B1b, B2, B3, B4, B4n, B5n) beside the
quantity it bounds, for a grid of trained pipelines.

One row per (configuration, bound) in ``results/bounds_check.csv``: ``bound, measured, value,
slack, holds, holds_strict, n, K, delta`` plus each bound's named terms (for B2 rows ``rho,
Lambda, r, empirical_margin_loss``). ``holds`` is ``measured - slack <= value`` with the test
set's own Hoeffding slack (it can fail, for a valid bound, only with probability delta_test);
``holds_strict`` charges the slack against the bound instead. Stage 2 uses the unnormalised
student feature in its loss (``student_features="raw"``), the form B4 covers. The default world
with normalised student features (the pipelines' practice) is certified at n = 1000 and 16000
with every part (B5n, B4n, B1, B2, B3 / B3p and the probe certificate); those rows also give
the end-to-end budget (:mod:`experiments.budget`: results/budget.csv, figures/budget.png).

    python -m experiments.bounds_check [--quick] [--seeds S]
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd

from cmcd_theory.certify import certify
from cmcd_theory.learn.pipeline import PipelineConfig
from cmcd_theory.sweeps.devices import setup_jax
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig
from experiments import common

EPILOG = """\
outputs: <out-dir>/bounds_check.csv, one row per (configuration, bound): the columns of
cmcd_theory.certify.ROW_KEYS (bound, form, bounds, statement, kind, measured, value, empirical,
complexity, confidence, delta, slack, applicable, reason, vacuous, holds, holds_strict, n, K)
plus each bound's own named terms, after the configuration (channel, t, method, seed, M, m,
n_labels, err_B); <out-dir>/bounds_check.json (configuration and findings).
--quick writes under results/quick. No resume: every cell is recomputed.
Invalid values: one line on stderr, exit status 2."""


def theory_pipeline(quick: bool) -> PipelineConfig:
    base = quick_pipeline() if quick else PipelineConfig()
    return base.replace(distill=base.distill.replace(student_features="raw"))


def grid(quick: bool) -> list[dict]:
    """(grid, n values) blocks: the Gaussian-track channels and a mixture channel with raw
    student features (B4), and the default world with normalised ones (B4n); a block's
    ``student_features`` (default raw) sets the stage-2 loss's student features; ``stage1``
    adds the stage-1 statistics and B5n (the teacher's normalised O1 loss)."""
    if quick:
        return [
            {"channel": ["attenuate"], "t": [0.0, 0.5], "method": ["cmc", "cmd"], "n": [1000]},
            {"channel": ["corrupt"], "t": [0.5], "method": ["cmc"], "n": [1000]},
            {
                "channel": ["attenuate"],
                "t": [0.0],
                "method": ["cmc"],
                "n": [1000],
                "student_features": "normalized",
                "stage1": True,
            },
        ]
    return [
        {
            "channel": ["attenuate", "noise", "corrupt"],
            "t": [0.0, 0.5, 1.0],
            "method": ["cmc", "cmd"],
            "n": [1000],
        },
        {"channel": ["attenuate"], "t": [0.0], "method": ["cmc"], "n": [16000]},
        # the students the pipelines train (normalised features): B4n, at m = 16384, every
        # part certified (stage 1 and the probe certificate): the end-to-end budget
        {
            "channel": ["attenuate"],
            "t": [0.0],
            "method": ["cmc"],
            "n": [1000, 16000],
            "m": [16384],
            "student_features": "normalized",
            "stage1": True,
        },
    ]


def certified_rows(
    quick: bool, pipe: PipelineConfig, world: WorldConfig, seeds: int
) -> pd.DataFrame:
    """Train every block of :func:`grid` and certify each trained pipeline: one row per
    (configuration, bound), the configuration's columns first."""
    rows = []
    parts = {"now": ("B1b", "B2", "B3", "B4")}

    def post(w, cfg, method, t, seed, row, arts):
        res = certify(w, cfg, method, t, seed, row, arts, parts=parts["now"])
        config = {
            "channel": w.config.channel,
            "t": t,
            "method": method,
            "seed": seed,
            "M": cfg.M,
            "m": cfg.m,
            "n_labels": cfg.n,
            "student_features": cfg.distill.student_features,
            "err_B": row["err_B"],
            "distill_pop_loss": row["distill_pop_loss"],
        }
        rows.append([{**config, **r} for r in res["rows"]])  # one group per sweep row
        return res["wide"]

    for block in grid(quick):
        block = dict(block)
        feats = block.pop("student_features", "raw")
        stage1 = ("B5", "probe") if block.pop("stage1", False) else ()
        parts["now"] = ("B1b", "B2", "B3", "B4") + stage1
        bp = pipe.replace(distill=pipe.distill.replace(student_features=feats))
        # no resume here: the long table is rebuilt from the postprocess of every cell
        start = len(rows)
        df = run_sweep(block, world=world, pipeline=bp, seeds=seeds, out=None, postprocess=post)
        # the sweep's chunks run on several threads, so the postprocess sees its rows in the
        # order they finish: put each row's group back in the sweep's (plan) order
        where = {_row_key(r): i for i, r in enumerate(df.to_dict("records"))}
        rows[start:] = sorted(rows[start:], key=lambda group: where[_row_key(group[0])])
    return pd.DataFrame([r for group in rows for r in group])


def _row_key(r: dict) -> tuple:
    """A sweep row's cell, from the sweep's table or from a certified row (``n_labels``)."""
    n = r["n"] if "n" in r else r["n_labels"]
    return (
        r["channel"],
        float(r["t"]),
        r["method"],
        int(r["seed"]),
        int(r["M"]),
        int(r["m"]),
        int(n),
    )


def _tightness(df: pd.DataFrame) -> dict:
    """Median bound minus measurement per (bound, n) on the default world (attenuate, t = 0)."""
    tight = df[
        (df.channel == "attenuate")
        & (df.t == 0.0)
        & df.bound.isin(["B2_sample", "B2_data_free", "B3", "B1b"])
    ]
    if not len(tight):
        return {}
    g = tight.assign(gap=tight.value - tight.measured).groupby(["bound", "n_labels"])["gap"]
    return {
        "bound_minus_measured_default_world": {
            f"{b}@n={n}": float(v) for (b, n), v in g.median().items()
        }
    }


def _b4n(df: pd.DataFrame) -> dict:
    """B4n (stage 2, normalised students) per m: its value against the stochastic and the
    deterministic population loss, and its terms (medians over seeds)."""
    b4n = df[df.bound == "B4n"]
    if not len(b4n):
        return {}
    return {
        "B4n_default_world": {
            f"m={m_}": {
                "value": float(g["value"].median()),
                "measured_stochastic": float(g["measured"].median()),
                "measured_deterministic": float(g["distill_pop_loss"].median()),
                "value_over_measured_stochastic": float((g["value"] / g["measured"]).median()),
                "value_over_measured_deterministic": float(
                    (g["value"] / g["distill_pop_loss"]).median()
                ),
                "empirical_with_bank_mean": float(g["empirical_exact_mgf"].median()),
                "empirical_with_M_upper": float(g["empirical"].median()),
                "kl_over_n": float(g["complexity"].median()),
                "below_log_N": bool((g["value"] < np.log(g["tuple_size"])).all()),
            }
            for m_, g in b4n.groupby("m")
        }
    }


def _b5n(df: pd.DataFrame) -> dict:
    """B5n (stage 1, the teacher's normalised O1 loss) per M: value, measurement and terms."""
    b5n = df[df.bound == "B5n"]
    if not len(b5n):
        return {}
    return {
        "B5n_default_world": {
            f"M={M_}": {
                "value": float(g["value"].median()),
                "measured_stochastic": float(g["measured"].median()),
                "value_over_measured_stochastic": float((g["value"] / g["measured"]).median()),
                "empirical_mean_encoder": float(g["empirical_mean_encoder"].median()),
                "empirical_stochastic": float(g["empirical"].median()),
                "empirical_upper": float(g["empirical_upper"].median()),
                "kl_over_n": float(g["complexity"].median()),
                "confidence": float(g["confidence"].median()),
                "below_log_N": bool((g["value"] < np.log(g["tuple_size"])).all()),
            }
            for M_, g in b5n.groupby("M")
        }
    }


def _b3_forms(df: pd.DataFrame) -> dict:
    """B3 and B3p on the default world (CMC): each form's bound on L(Q) (value / 2) against
    its own stochastic probe's test error, per (form, n, student features)."""
    b3 = df[
        df.bound.isin(["B3", "B3p"])
        & (df.channel == "attenuate")
        & (df.t == 0.0)
        & (df.method == "cmc")
    ]
    if not len(b3):
        return {}
    return {
        "B3_forms_default_world": {
            f"{b}@n={n}@{feats}": {
                "bound_on_L(Q)": float((g["value"] / 2).median()),
                "measured_stochastic": float(g["measured_stochastic"].median()),
                "measured_deterministic": float(g["measured"].median()),
                "ratio_to_stochastic": float((g["value"] / 2 / g["measured_stochastic"]).median()),
                "kl_over_n": float(g["complexity"].median()),
                "confidence": float(g["confidence"].median()),
                "empirical_upper": float(g["empirical_upper"].median()),
            }
            for (b, n, feats), g in b3.groupby(["bound", "n_labels", "student_features"])
        }
    }


def bound_findings(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-bound means (the printed summary) and the findings of the JSON: whether every
    bound held, then the default world's tightness, B4n, B5n and the two B3 forms."""
    summary = df.groupby("bound")[["measured", "value", "holds"]].agg(
        {"measured": "mean", "value": "mean", "holds": "mean"}
    )
    findings = {
        "all_hold": bool(df["holds"].all()),
        "rows": int(len(df)),
        "fraction_holding_by_bound": summary["holds"].to_dict(),
        "mean_value_by_bound": summary["value"].to_dict(),
        "mean_measured_by_bound": summary["measured"].to_dict(),
    }
    for part in (_tightness, _b4n, _b5n, _b3_forms):
        findings.update(part(df))
    return summary, findings


def main(argv=None) -> pd.DataFrame:
    """Certify the grid, write the CSV, its JSON and the budget; return the long table."""
    args = common.parse_args(
        argv,
        __doc__.split("\n")[0],
        default_seeds=(2, 2),
        prog="python -m experiments.bounds_check",
        epilog=EPILOG,
    )
    seeds = args.seeds
    pipe = theory_pipeline(args.quick)
    world = WorldConfig()
    t0 = time.perf_counter()
    start = common.compilation_counts()
    os.makedirs(args.out_dir, exist_ok=True)
    df = certified_rows(args.quick, pipe, world, seeds)
    out = os.path.join(args.out_dir, "bounds_check.csv")
    df.to_csv(out, index=False)
    summary, findings = bound_findings(df)
    wall = time.perf_counter() - t0
    findings["cpu_time_s"] = round(time.process_time(), 1)
    with open(os.path.join(args.out_dir, "bounds_check.json"), "w") as f:
        json.dump(
            {
                "world": world.as_dict(),
                "pipeline": _plain(pipe.as_dict()),
                "seeds": seeds,
                "grid": grid(args.quick),
                "findings": findings,
                "wall_time_s": round(wall, 1),
                "compilation": common.compilation_since(start),
            },
            f,
            indent=2,
            default=str,
        )
    from experiments import budget

    budget.write(df, args)
    print(summary.to_string())
    print(json.dumps(findings, indent=2, default=str))
    print(
        f"{len(df)} rows -> {out} in {time.perf_counter() - t0:.1f} s; "
        f"all hold: {findings['all_hold']}"
    )
    return df


def _plain(d):
    return json.loads(json.dumps(d, default=str))


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main(sys.argv[1:])
