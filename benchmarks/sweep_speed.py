"""Speed of the vmapped sweep against a plain loop of single pipeline calls, same grid.

The headline grid: attenuate channel, 8 values of t, 5 seeds, CMD / CMC / L2, default sizes
(120 cells). In one process, one after the other:

* ``sweep``: :func:`cmcd_theory.sweeps.sweep.run_sweep` in this process -- one jitted program for
  the three methods, vmapped over the (t, seed) cells in equal chunks run one after the other on
  the default device (worker processes: ``benchmarks.sweep_cluster``); the stage-1 teacher is
  trained once per seed, the samples, the teacher's features and the source probe once per
  (t, seed), and the ground truth once per t;
* ``loop``: a Python loop of single pipeline calls, :func:`cmcd_theory.learn.pipeline.run_cell`
  (the jitted :func:`~cmcd_theory.learn.pipeline.run_pipeline`, compiled once per method with t and
  the key traced, plus the world's ground truth, memoised per (world, t) for both paths):
  each call trains its own teacher and returns the same row the sweep writes.

Both run cold (compilation and ground truth included: the XLA programs are new to the process
and the ground-truth memo is emptied first), then again with their programs compiled and the
ground truth memoised. Prints the wall times and ratios and writes
``results/sweep_speed.json`` (``--quick``: ``results/quick/sweep_speed.json``, git-ignored, so
that a quick run never overwrites the committed full-size numbers).

    python -m benchmarks.sweep_speed [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
import pandas as pd

from cmcd_theory.learn.pipeline import PipelineConfig, ground_truth, run_cell
from cmcd_theory.sweeps.devices import setup_jax
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig, make_world


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep_speed", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="quick sizes, 4 t values, 2 seeds")
    p.add_argument("--chunk-size", type=int, default=16, help="cells per vmapped call")
    p.add_argument(
        "--out",
        default=None,
        help="JSON path (default: results/sweep_speed.json; --quick: results/quick/)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "results/quick/sweep_speed.json" if args.quick else "results/sweep_speed.json"
    cfg = quick_pipeline() if args.quick else PipelineConfig()
    ts = [float(t) for t in np.linspace(0, 1, 4 if args.quick else 8)]
    seeds = list(range(2 if args.quick else 5))
    methods = ["cmd", "cmc", "l2"]
    grid = {"channel": ["attenuate"], "t": ts, "method": methods}
    world = make_world(WorldConfig(channel="attenuate"))

    def sweep(progress=False):
        return run_sweep(
            grid, pipeline=cfg, seeds=seeds, progress=progress, chunk_size=args.chunk_size
        )

    def loop():
        return pd.DataFrame(
            [
                {"method": m, "t": t, "seed": s, **run_cell(world, jax.random.key(s), m, cfg, t)}
                for m in methods
                for t in ts
                for s in seeds
            ]
        )

    def timed(f, *a):
        t0 = time.perf_counter()
        out = f(*a)
        return out, time.perf_counter() - t0

    ground_truth.cache_clear()
    df, t_sweep = timed(sweep, True)
    ground_truth.cache_clear()
    rows, t_loop = timed(loop)
    _, t_sweep_warm = timed(sweep)
    _, t_loop_warm = timed(loop)

    keys = ["method", "t", "seed"]
    a = df.sort_values(keys).reset_index(drop=True)
    b = rows.sort_values(keys).reset_index(drop=True)
    assert (a[keys].values == b[keys].values).all()
    res = {
        "cells": len(df),
        "n_devices": len(jax.local_devices()),
        "chunk_size": args.chunk_size,
        "sweep_s": round(t_sweep, 2),
        "loop_s": round(t_loop, 2),
        "ratio": round(t_loop / t_sweep, 2),
        "sweep_warm_s": round(t_sweep_warm, 2),
        "loop_warm_s": round(t_loop_warm, 2),
        "ratio_warm": round(t_loop_warm / t_sweep_warm, 2),
        "max_abs_err_B_difference": float(np.max(np.abs(a.err_B.values - b.err_B.values))),
        "ground_truth_equal": bool(
            np.array_equal(
                a[["tv_latent", "bayes_A", "bayes_B"]].values,
                b[["tv_latent", "bayes_A", "bayes_B"]].values,
            )
        ),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(
        f"{res['cells']} cells on {res['backend']} ({res['n_devices']} device(s)):\n"
        f"  cold (compilation included): sweep {t_sweep:.1f} s, loop {t_loop:.1f} s, "
        f"ratio {res['ratio']:.1f}x\n"
        f"  compiled: sweep {t_sweep_warm:.1f} s, loop {t_loop_warm:.1f} s, "
        f"ratio {res['ratio_warm']:.1f}x\n"
        f"  max |err_B difference| {res['max_abs_err_B_difference']:.4f}, "
        f"ground truth equal: {res['ground_truth_equal']}"
    )
    return res


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
