"""The toolkit against a plain PyTorch loop on the headline grid, as whole processes.

The headline grid: attenuate channel, 8 values of t, 5 seeds, CMD / CMC / L2, the default
:class:`~cmcd_theory.learn.pipeline.PipelineConfig` (120 rows). Two programs compute it:

* ``toolkit``: ``run_sweep(grid, seeds=5)`` as a user calls it (in this process, one thread
  per core), writing the rows to a CSV;
* ``torch``: :mod:`benchmarks.torch_headline`, the same world, sizes, steps, optimiser, losses
  and probe written as an eager PyTorch loop (``torch.set_num_threads`` = the core count;
  installed by ``pip install -e .[bench]``). It does not import JAX or the toolkit: the
  world's parameters reach it in an ``.npz`` written beforehand
  (:mod:`benchmarks.headline_world`).

Each measurement is a fresh process, timed from spawn to exit (interpreter start and imports
included), with its CPU time (user + system) and peak resident memory from ``wait4``. The
rounds interleave the programs: per round one torch process, one toolkit process with an
empty persistent compile cache (``cold``) and one with the cache that run wrote (``warm``).
PyTorch has no compile cache, so its median is the denominator of both ratios. Medians over
``--rounds`` (>= 3) and the ratios are computed within this one run.

The errors must agree: per method, the mean of err_B over the 40 (t, seed) cells of the
toolkit and of the torch loop (first rounds) differ by at most 1.5 standard errors of that
difference (each side's standard error over the 5 per-seed means, combined in quadrature).

A profile of the toolkit says where its time goes (one more cold process and its warm
repeat, one thread so that stage times add up): imports; per XLA program, trace + lowering
and compilation (JAX's own compile events); execution per stage, each stage run alone on the
shapes of one chunk of the sweep: stage 1 (the teachers of the 5 seeds), stage 2 (the
distillation of each method), the stage-3 probes, the rest of the downstream program
(samples, features, metrics) and the exact ground truth.

Writes ``results/bench_vs_torch.json`` (``--quick``: ``results/quick/``, quick sizes, so a quick
run never overwrites the committed numbers) and prints the README table.

    pip install -e .[bench]
    python -m benchmarks.bench_vs_torch [--rounds 3] [--quick]
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

from benchmarks.headline_world import METHODS, headline
from benchmarks.whole_process import run_timed

# ---- the measured processes -----------------------------------------------------------------


def _toolkit_child(out_csv: str, quick: bool) -> None:
    """The toolkit side: the headline grid with ``run_sweep``, rows to ``out_csv``."""
    from cmcd_theory.learn.pipeline import PipelineConfig
    from cmcd_theory.sweeps import run_sweep, setup_jax
    from cmcd_theory.sweeps.sweep import quick_pipeline

    setup_jax()
    ts, seeds = headline(quick)
    df = run_sweep(
        {"channel": ["attenuate"], "t": ts, "method": list(METHODS)},
        pipeline=quick_pipeline() if quick else PipelineConfig(),
        seeds=seeds,
        progress=False,
    )
    df.to_csv(out_csv, index=False)


def _env(cache: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    return env


def _toolkit_cmd(out_csv: str, quick: bool) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.bench_vs_torch", "--child", "toolkit"]
    return cmd + ["--rows", out_csv] + (["--quick"] if quick else [])


def _torch_cmd(world: str, out_csv: str, quick: bool) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.torch_headline", "--world", world, "--out", out_csv]
    return cmd + (["--quick"] if quick else [])


# ---- the error check ------------------------------------------------------------------------


def agreement(toolkit_csv: str, torch_csv: str) -> dict:
    """Per method: each side's mean err_B over the cells with its standard error over seeds
    (the per-seed means over t), the difference in units of its standard error, and whether
    it is within 1.5."""
    import numpy as np
    import pandas as pd

    out = {}
    a, b = pd.read_csv(toolkit_csv), pd.read_csv(torch_csv)
    for m in METHODS:
        per_seed = [d[d.method == m].groupby("seed").err_B.mean().to_numpy() for d in (a, b)]
        means = [float(x.mean()) for x in per_seed]
        ses = [float(x.std(ddof=1) / np.sqrt(len(x))) for x in per_seed]
        se = float(np.hypot(ses[0], ses[1]))
        z = (means[0] - means[1]) / se if se > 0 else float("inf")
        out[m] = {
            "toolkit_err_B": round(means[0], 5),
            "toolkit_se": round(ses[0], 5),
            "torch_err_B": round(means[1], 5),
            "torch_se": round(ses[1], 5),
            "difference_in_se": round(z, 2),
            "agree": bool(abs(z) <= 1.5),
        }
    return out


# ---- the profile ----------------------------------------------------------------------------


def _profile_child(quick: bool) -> None:
    """One cold process, one thread: imports, per-program compile, per-stage execution."""
    t_spawn = float(os.environ["BENCH_SPAWN"])
    from cmcd_theory.sweeps import setup_jax

    setup_jax()
    t_import = time.time() - t_spawn
    from benchmarks.profile_stages import profile

    prof = profile(quick)
    print("RESULT " + json.dumps({"imports_s": round(t_import, 2), **prof}))


def _profile(quick: bool, cache: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_vs_torch", "--child", "profile"]
    cmd += ["--quick"] if quick else []
    env = {**_env(cache), "BENCH_SPAWN": repr(time.time())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"profile failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


# ---- the driver -----------------------------------------------------------------------------


def measure(rounds: int, quick: bool, tmp: str) -> dict:
    """``rounds`` interleaved rounds of torch, toolkit cold, toolkit warm (see the docstring)."""
    from benchmarks.headline_world import export_world

    world = os.path.join(tmp, "world.npz")
    export_world(world)
    runs: dict = {"torch": [], "toolkit_cold": [], "toolkit_warm": []}
    for r in range(rounds):
        cache = os.path.join(tmp, f"cache{r}")
        rows = {k: os.path.join(tmp, f"{k}{r}.csv") for k in ("torch", "cold", "warm")}
        steps = [
            ("torch", _torch_cmd(world, rows["torch"], quick), _env()),
            ("toolkit_cold", _toolkit_cmd(rows["cold"], quick), _env(cache)),
            ("toolkit_warm", _toolkit_cmd(rows["warm"], quick), _env(cache)),
        ]
        if r % 2:  # alternate who goes first
            steps = steps[1:] + steps[:1]
        for name, cmd, env in steps:
            runs[name].append(run_timed(cmd, env))
            print(f"round {r + 1}/{rounds} {name}: {runs[name][-1]}", file=sys.stderr)
    med = {k: {f: statistics.median(x[f] for x in v) for f in v[0]} for k, v in runs.items()}
    t = med["torch"]
    return {
        "runs": runs,
        "median": med,
        "speedup_cold": round(t["wall_s"] / med["toolkit_cold"]["wall_s"], 2),
        "speedup_warm": round(t["wall_s"] / med["toolkit_warm"]["wall_s"], 2),
        "peak_memory_ratio_cold": round(med["toolkit_cold"]["peak_mib"] / t["peak_mib"], 2),
        "peak_memory_ratio_warm": round(med["toolkit_warm"]["peak_mib"] / t["peak_mib"], 2),
        "errors": agreement(os.path.join(tmp, "cold0.csv"), os.path.join(tmp, "torch0.csv")),
        "warm_rows_equal_cold": _same_rows(tmp),
    }


def _same_rows(tmp: str) -> bool:
    """The warm processes' rows equal the cold ones' (a cached program computes the same)."""
    with open(os.path.join(tmp, "cold0.csv")) as a, open(os.path.join(tmp, "warm0.csv")) as b:
        return a.read() == b.read()


def table(res: dict) -> str:
    """The README's table (Markdown)."""
    m = res["median"]
    lines = [
        "| headline grid, whole process | wall (s) | CPU (s) | peak memory (MiB) | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label, sp in (
        ("torch", "PyTorch loop (eager, 2 threads)", "1"),
        ("toolkit_cold", "toolkit, empty compile cache", f"{res['speedup_cold']:.1f}x"),
        ("toolkit_warm", "toolkit, warm compile cache", f"{res['speedup_warm']:.1f}x"),
    ):
        r = m[key]
        lines.append(
            f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mib']:.0f} | {sp} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_vs_torch", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3 for the README)")
    p.add_argument("--quick", action="store_true", help="quick sizes, 4 t values, 2 seeds")
    p.add_argument("--no-profile", action="store_true", help="skip the toolkit's profile")
    p.add_argument(
        "--out", default=None, help="JSON path (default results/[quick/]bench_vs_torch.json)"
    )
    p.add_argument("--child", choices=("toolkit", "profile"), help=argparse.SUPPRESS)
    p.add_argument("--rows", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "toolkit":
        _toolkit_child(args.rows, args.quick)
        return None
    if args.child == "profile":
        _profile_child(args.quick)
        return None
    if args.rounds < 1:
        p.error(f"argument --rounds: must be >= 1, got {args.rounds}")
    out = args.out or os.path.join("results", "quick" if args.quick else "", "bench_vs_torch.json")
    with tempfile.TemporaryDirectory(prefix="bench_vs_torch_") as tmp:
        res = {"quick": args.quick, "rounds": args.rounds, "cpu_count": os.cpu_count()}
        res.update(measure(args.rounds, args.quick, tmp))
        if not args.no_profile:
            cache = os.path.join(tmp, "profile_cache")
            res["profile_cold"] = _profile(args.quick, cache)
            res["profile_warm"] = _profile(args.quick, cache)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(table(res))
    print(json.dumps(res["errors"], indent=1))
    return res


if __name__ == "__main__":
    main()
