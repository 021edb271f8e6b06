"""Speed of the vmapped sweep against a plain loop of single pipeline calls, same grid.

The headline grid: attenuate channel, 8 values of t, 5 seeds, CMD / CMC / L2, default sizes.
Both runs start cold (compilation included), in one process, one after the other:

* ``sweep``: :func:`cmcd_theory.sweep.run_sweep` -- per method one jitted program vmapped over
  all (t, seed) cells, the stage-1 teacher trained once per seed and shared;
* ``loop``: a Python loop calling the jitted :func:`cmcd_theory.pipeline.run_pipeline` once per
  cell (compiled once per method, t and key traced; each call trains its own teacher).

Both are then run a second time (programs compiled: execution only). Prints the wall times
and their ratios, and writes ``results/sweep_speed.json``.

    python -m benchmarks.sweep_speed [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from cmcd_theory.pipeline import PipelineConfig, run_pipeline_jit
from cmcd_theory.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import WorldConfig, make_world


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_speed", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="quick sizes, 4 t values, 2 seeds")
    p.add_argument("--out", default="results/sweep_speed.json")
    args = p.parse_args(argv)
    cfg = quick_pipeline() if args.quick else PipelineConfig()
    ts = list(np.linspace(0, 1, 4 if args.quick else 8))
    seeds = list(range(2 if args.quick else 5))
    methods = ["cmd", "cmc", "l2"]
    grid = {"channel": ["attenuate"], "t": ts, "method": methods}

    t0 = time.perf_counter()
    df = run_sweep(grid, pipeline=cfg, seeds=seeds, progress=True)
    t_sweep = time.perf_counter() - t0

    world = make_world(WorldConfig(channel="attenuate"))

    def loop():
        errs = []
        for method in methods:
            for t in ts:
                for s in seeds:
                    out = run_pipeline_jit(world, jax.random.key(s), method, cfg, float(t))
                    errs.append(float(out["err_B"]))
        return errs

    t0 = time.perf_counter()
    loop_err = loop()
    t_loop = time.perf_counter() - t0
    # second passes: programs compiled, execution only (the sweep keeps no teacher cache across calls)
    t0 = time.perf_counter()
    run_sweep(grid, pipeline=cfg, seeds=seeds, progress=False)
    t_sweep_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop()
    t_loop_warm = time.perf_counter() - t0

    # both paths compute the same cells (up to batched float32 rounding)
    sweep_err = df.sort_values(["method", "t", "seed"], key=lambda c: c.map(methods.index) if c.name == "method" else c).err_B.values
    res = {"cells": len(df), "sweep_s": round(t_sweep, 2), "loop_s": round(t_loop, 2),
           "ratio": round(t_loop / t_sweep, 2), "sweep_warm_s": round(t_sweep_warm, 2),
           "loop_warm_s": round(t_loop_warm, 2), "ratio_warm": round(t_loop_warm / t_sweep_warm, 2), "max_abs_err_B_difference": float(np.max(np.abs(sweep_err - np.array(loop_err)))),
           "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
           "quick": args.quick, "cpu_count": os.cpu_count()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"{res['cells']} cells: vmapped sweep {t_sweep:.1f} s, sequential loop {t_loop:.1f} s, "
          f"ratio {res['ratio']:.1f}x on {res['backend']} (compiled, execution only: "
          f"{t_sweep_warm:.1f} s vs {t_loop_warm:.1f} s, {res['ratio_warm']:.1f}x); max |err_B difference| {res['max_abs_err_B_difference']:.4f}")
    return res


if __name__ == "__main__":
    main()
