"""Where a sweep should run on this machine: in process (one thread per core) or on an
embedded Dask ``LocalCluster``, timed as whole processes on the when_distillation_pays grid.

The grid is the experiment's (``experiments.when_distillation_pays``: 6 t x 6 n x 5 seeds x
CMC / CMD / supervised / target SSL = 720 rows, its world, pipeline and its per-row
``postprocess``, the probe bounds and certificate). Each measurement is a fresh process with an
empty persistent compile cache (``cold``), timed from spawn to exit, with its CPU time and
peak memory (the process and, for the cluster, its largest worker) from ``wait4``. Engines:

* ``none``: ``run_sweep(..., cluster=None)``, chunks on one thread per core;
* ``local2``: ``run_sweep(..., cluster=2)``, a ``LocalCluster`` of two single-threaded worker
  processes (the driver compiles the programs while the workers start).

The rounds interleave the engines; medians and the ratio local2 / none are computed within
this run. The rows of the two engines are compared (the cluster plans at least two chunks per
worker, so its vmapped batches differ and float32 rounding may move a few numbers).
Writes ``results/sweep_engines.json`` (``--quick``: under ``results/quick/``).

    python -m benchmarks.sweep_engines [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

from benchmarks.whole_process import run_timed

ENGINES = {"none": None, "local2": 2}


def _child(engine: str, quick: bool, out_csv: str) -> None:
    """One measured process: the experiment's sweep on ``engine``, rows to ``out_csv``."""
    from cmcd_theory.sweeps import run_sweep, setup_jax
    from experiments import common
    from experiments import when_distillation_pays as wdp

    setup_jax()
    df = run_sweep(
        wdp.grid(quick),
        world=wdp.world(),
        pipeline=common.budget_pipeline("mlp"),
        seeds=2 if quick else 5,
        progress=False,
        postprocess=lambda *a: common.probe_bounds(*a, n_weight_samples=200, certificate=True),
        cluster=ENGINES[engine],
    )
    df.to_csv(out_csv, index=False)


def _spawn(engine: str, quick: bool, out_csv: str, cache: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.sweep_engines", "--child", engine, "--rows", out_csv]
    cmd += ["--quick"] if quick else []
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
    r = run_timed(cmd, env)
    return {**r, "wall_s": round(r["wall_s"], 2), "cpu_s": round(r["cpu_s"], 2)}


def _compare(a_csv: str, b_csv: str) -> dict:
    import numpy as np
    import pandas as pd

    keys = ["t", "n", "method", "seed"]
    a = pd.read_csv(a_csv).sort_values(keys).reset_index(drop=True)
    b = pd.read_csv(b_csv).sort_values(keys).reset_index(drop=True)
    same_cells = bool(len(a) == len(b) and (a[keys].to_numpy() == b[keys].to_numpy()).all())
    num = [c for c in a.columns if c in b.columns and a[c].dtype.kind == "f"]
    diff = {c: float(np.nanmax(np.abs(a[c].to_numpy() - b[c].to_numpy()))) for c in num}
    return {
        "rows": len(a),
        "same_cells": same_cells,
        "max_abs_err_B_difference": diff.get("err_B"),
        "columns_differing": sorted(c for c, d in diff.items() if d > 0),
    }


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep_engines", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="the experiment's quick grid")
    p.add_argument("--out", default=None, help="JSON (default results/[quick/]sweep_engines.json)")
    p.add_argument("--child", choices=tuple(ENGINES), help=argparse.SUPPRESS)
    p.add_argument("--rows", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.quick, args.rows)
        return None
    out = args.out or os.path.join("results", "quick" if args.quick else "", "sweep_engines.json")
    runs: dict = {e: [] for e in ENGINES}
    with tempfile.TemporaryDirectory(prefix="sweep_engines_") as tmp:
        for r in range(args.rounds):
            order = list(ENGINES) if r % 2 == 0 else list(ENGINES)[::-1]
            for e in order:
                csv = os.path.join(tmp, f"{e}{r}.csv")
                runs[e].append(_spawn(e, args.quick, csv, os.path.join(tmp, f"cache_{e}{r}")))
                print(f"round {r + 1}/{args.rounds} {e}: {runs[e][-1]}", file=sys.stderr)
        rows = _compare(os.path.join(tmp, "none0.csv"), os.path.join(tmp, "local20.csv"))
    med = {e: statistics.median(x["wall_s"] for x in v) for e, v in runs.items()}
    res = {
        "quick": args.quick,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "median_wall_s": med,
        "ratio_local2_over_none": round(med["local2"] / med["none"], 3),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: res[k] for k in ("median_wall_s", "ratio_local2_over_none", "rows")}))
    return res


if __name__ == "__main__":
    main()
