"""Whole-process sweep times, in this process against a 2-worker Dask LocalCluster.

Two grids on the default (attenuate) world and default sizes:

* ``headline``: 8 values of t x 5 seeds x CMD / CMC / L2 (the grid of ``benchmarks.sweep_speed``);
* ``phase``: 8 t x 6 n (32 .. 1024 labels) x 5 seeds x CMC / CMD / L2 / supervised /
  target_ssl (a phase-diagram grid: 240 cells, 1200 rows, six programs).

Each measurement is a fresh Python process (``--child``), so that "cold" includes what a user
waits for: interpreter start, imports, starting the cluster, ground truth, compilation and
execution. Per grid and engine (``none``: in process; ``local2``: ``LocalCluster`` of two
single-threaded worker processes):

* ``cold``: an empty persistent compile cache; the process then runs the same sweep again
  (``compiled``: programs compiled in the process or its workers, ground truth memoised);
* ``warm_cache``: a new process whose persistent compile cache holds the programs (written by
  the cold run): what a second invocation of the command line costs.

The in-process cold run is profiled: imports, ground truth, JAX compilation (summed from JAX's
own compile-time events, per program) and the rest (execution). Peak memory (``ru_maxrss``) is
recorded for every process (workers: the largest child), and for the headline grid with 4x the
seeds, to check that it does not grow with the grid. Every record carries the load average
(1, 5, 15 min) at its start and end: times on a shared machine are only comparable at a low
load. Medians over ``--repeat`` processes (headline) and ratios are computed within one run.
Writes ``results/sweep_cluster.json`` (``--quick``: ``results/quick/sweep_cluster.json``).

    python -m benchmarks.sweep_cluster [--quick] [--repeat 3] [--grids headline,phase]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

T8 = [round(i / 7, 6) for i in range(8)]
GRIDS = {
    "headline": dict(grid={"t": T8, "method": ["cmd", "cmc", "l2"]}, seeds=5),
    "headline_x4": dict(grid={"t": T8, "method": ["cmd", "cmc", "l2"]}, seeds=20),
    "phase": dict(
        grid={
            "t": T8,
            "n": [32, 64, 128, 256, 512, 1024],
            "method": ["cmc", "cmd", "l2", "supervised", "target_ssl"],
        },
        seeds=5,
    ),
}
QUICK = {
    "headline": dict(grid={"t": [0.0, 0.5, 1.0], "method": ["cmd", "cmc", "l2"]}, seeds=2),
    "headline_x4": dict(grid={"t": [0.0, 0.5, 1.0], "method": ["cmd", "cmc", "l2"]}, seeds=8),
    "phase": dict(grid={"t": [0.0, 1.0], "n": [64, 256], "method": ["cmc", "supervised"]}, seeds=2),
}


def _child(args) -> None:
    """One measured process: prints one JSON line."""
    stamps = {"start": time.time()}
    load0 = os.getloadavg()
    import resource

    import jax

    from cmcd_theory.learn.pipeline import PipelineConfig, ground_truth
    from cmcd_theory.sweeps import cluster, sweep
    from cmcd_theory.sweeps.devices import setup_jax
    from cmcd_theory.worlds import WorldConfig

    setup_jax()
    stamps["imported"] = time.time()
    compiles: dict = {}

    def listen(event, duration, **kw):
        if event.startswith("/jax/core/compile") or event.startswith("/jax/compilation_cache"):
            compiles.setdefault(event, []).append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    spec = (QUICK if args.quick else GRIDS)[args.grid]
    pipe = sweep.quick_pipeline() if args.quick else PipelineConfig()
    out = {}

    def run(cl):
        return sweep.run_sweep(
            spec["grid"], pipeline=pipe, seeds=spec["seeds"], progress=False, cluster=cl
        )

    if args.engine == "none":
        t0 = time.time()
        for t in spec["grid"]["t"]:  # the ground truth alone (memoised: the sweep reuses it)
            ground_truth(WorldConfig(), t)
        out["ground_truth_s"] = time.time() - t0
        df = run(None)
        stamps["first"] = time.time()
        comp = {k: round(sum(v), 2) for k, v in compiles.items()}
        out["compile_events_s"] = comp
        out["backend_compiles_s"] = sorted(
            (round(x, 2) for x in compiles.get("/jax/core/compile/backend_compile_duration", [])),
            reverse=True,
        )[:12]
        if not args.once:
            run(None)
    else:
        with cluster.local_cluster(2) as client:
            stamps["cluster_up"] = time.time()
            df = run(client)
            stamps["first"] = time.time()
            if not args.once:
                run(client)
    stamps["second"] = time.time()
    out.update(
        rows=len(df),
        stamps=stamps,
        load_start=load0,
        load_end=os.getloadavg(),
        maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        maxrss_children_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(out), flush=True)


def _measure(grid, engine, cache, quick, once=False) -> dict:
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.sweep_cluster",
        "--child",
        "--grid",
        grid,
        "--engine",
        engine,
    ]
    cmd += (["--quick"] if quick else []) + (["--once"] if once else [])
    t_spawn = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {grid}/{engine} failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT ") :])
    s = r.pop("stamps")
    r["whole_process_s"] = round(s["first"] - t_spawn, 2)  # spawn -> first sweep done
    r["imports_s"] = round(s["imported"] - t_spawn, 2)
    if "cluster_up" in s:
        r["cluster_start_s"] = round(s["cluster_up"] - s["imported"], 2)
    r["first_sweep_s"] = round(s["first"] - s.get("cluster_up", s["imported"]), 2)
    if not once:
        r["compiled_s"] = round(s["second"] - s["first"], 2)
    if "compile_events_s" in r:
        compile_s = r["compile_events_s"].get("/jax/core/compile/backend_compile_duration", 0.0)
        trace_s = sum(
            v
            for k, v in r["compile_events_s"].items()
            if k.startswith("/jax/core/compile") and "backend" not in k
        )
        r["profile"] = {
            "imports_s": r["imports_s"],
            "ground_truth_s": round(r.pop("ground_truth_s"), 2),
            "xla_compile_s": round(compile_s, 2),
            "trace_lower_s": round(trace_s, 2),
        }
        r["profile"]["execution_and_rest_s"] = round(
            r["first_sweep_s"] - r["profile"]["ground_truth_s"] - compile_s - trace_s, 2
        )
    for k in ("load_start", "load_end"):
        r[k] = [round(x, 2) for x in r[k]]
    r["maxrss_mb"] = round(r["maxrss_mb"])
    r["maxrss_children_mb"] = round(r["maxrss_children_mb"])
    print(json.dumps({"grid": grid, "engine": engine, **r}), flush=True)
    return r


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep_cluster",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="quick sizes and small grids (a smoke test)"
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="processes per headline measurement (median)"
    )
    p.add_argument("--grids", default="headline,phase", help="comma list of headline, phase")
    p.add_argument(
        "--out", default=None, help="JSON path (default results/[quick/]sweep_cluster.json)"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--grid", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    out_path = args.out or os.path.join(
        "results", "quick" if args.quick else "", "sweep_cluster.json"
    )
    res = {
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "grids": {
            g: (QUICK if args.quick else GRIDS)[g] for g in ("headline", "phase", "headline_x4")
        },
        "uptime_start": _uptime(),
        "results": {},
    }
    for grid in [g for g in args.grids.split(",") if g]:
        reps = args.repeat if grid == "headline" else 1
        for engine in ("none", "local2"):
            cold, warm = [], []
            for _ in range(reps):
                with tempfile.TemporaryDirectory() as cache:
                    cold.append(_measure(grid, engine, cache, args.quick))
                    warm.append(_measure(grid, engine, cache, args.quick, once=True))
            res["results"][f"{grid}/{engine}"] = {
                "cold_whole_process_s": statistics.median(r["whole_process_s"] for r in cold),
                "compiled_s": statistics.median(r["compiled_s"] for r in cold),
                "warm_cache_whole_process_s": statistics.median(r["whole_process_s"] for r in warm),
                "runs_cold": cold,
                "runs_warm_cache": warm,
            }
        a, b = res["results"][f"{grid}/none"], res["results"][f"{grid}/local2"]
        res["results"][f"{grid}/ratios_none_over_local2"] = {
            k: round(a[k] / b[k], 2)
            for k in ("cold_whole_process_s", "compiled_s", "warm_cache_whole_process_s")
        }
    if "headline" in args.grids:  # peak memory at 4x the cells, in process
        with tempfile.TemporaryDirectory() as cache:
            big = _measure("headline_x4", "none", cache, args.quick, once=True)
        small = res["results"]["headline/none"]["runs_cold"][0]
        res["memory"] = {
            "headline_rows": small["rows"],
            "headline_maxrss_mb": small["maxrss_mb"],
            "headline_x4_rows": big["rows"],
            "headline_x4_maxrss_mb": big["maxrss_mb"],
        }
    res["uptime_end"] = _uptime()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: v for k, v in res["results"].items() if "ratios" in k}, indent=1))
    for k, v in res["results"].items():
        if "ratios" not in k:
            print(
                f"{k}: cold {v['cold_whole_process_s']} s, compiled {v['compiled_s']} s, "
                f"warm cache {v['warm_cache_whole_process_s']} s"
            )
    if "memory" in res:
        print("memory:", res["memory"])
    return res


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return str(os.getloadavg())


if __name__ == "__main__":
    main()
