"""Every experiment, timed: ``python -m experiments.reproduce [--quick] [--seeds S] [--jobs J]``.

Each experiment module exposes ``main(argv) -> DataFrame`` and writes its CSV, JSON and
figures; this runner calls each one with the shared arguments and prints a table of wall times
and their total. With ``--jobs 1`` the experiments run in order in this process; with
``--jobs J > 1`` each runs in its own process, at most J at once, longest first (by the wall
time its last JSON recorded), its output in ``<results>/logs/<name>.log``: on 2 cores two
experiments overlap one's single-threaded XLA compilation with the other's execution. The
experiments write disjoint files and their numbers do not depend on the schedule. A persistent
XLA compile cache (:func:`cmcd_theory.sweeps.devices.setup_jax`: ``.jax_cache`` in the
repository, or ``$JAX_COMPILATION_CACHE_DIR``) makes a second run skip compilation. An
experiment of the list that cannot be imported is an error.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import traceback

from cmcd_theory import validation as V
from cmcd_theory.sweeps.devices import setup_jax

EXPERIMENTS = (
    "world_gallery",
    "error_vs_distance",
    "convergence_m",
    "convergence_M_stage1",
    "generalization_n",
    "tv_vs_gain",
    "loss_comparison",
    "pipeline_ablation",
    "rotate_channel",
    "bounds_check",
    "mfeat",
    "discomkd_synthetic",
    "when_distillation_pays",
    "pairing_vs_distance",
    "nuisance_ablation",
    "theory_arena",
)


EPILOG = """\
Each experiment writes results/<name>.csv and .json and figures/<name>.png and .pdf; with
--quick, results/quick/ and figures/quick/ instead, never over the committed full-run files.
Sweeps resume from their raw CSVs (results[/quick]/<name>_{quick,full}_raw.csv): a rerun
computes only missing cells. Invalid values: one line on stderr, exit status 2."""


def _names(name: str, text: str) -> tuple:
    return V.choices(name, tuple(x.strip() for x in text.split(",") if x.strip()), EXPERIMENTS)


def build_parser():
    """The ``cmcd-reproduce`` argument parser."""
    p = V.parser("cmcd-reproduce", __doc__.splitlines()[0], EPILOG)
    p.add_argument("--quick", action="store_true", help="quick mode of every experiment")
    p.add_argument(
        "--seeds",
        type=V.arg(V.positive_int, "--seeds"),
        default=None,
        help="seeds passed to every experiment (default: each experiment's own)",
    )
    p.add_argument(
        "--only",
        type=V.arg(_names, "--only"),
        default=None,
        help=f"comma list of experiments to run (default: all of {', '.join(EXPERIMENTS)})",
    )
    p.add_argument("--keep-going", action="store_true", help="run the rest after a failure")
    p.add_argument(
        "--jobs",
        type=V.arg(V.positive_int, "--jobs"),
        default=1,
        help="experiments run at once, each in its own process (1: in order, here)",
    )
    return p


def _last_wall_time(name: str, quick: bool) -> float:
    """Wall time the experiment's last JSON recorded (0 if none): the schedule's cost hint."""
    path = os.path.join("results", "quick" if quick else "", f"{name}.json")
    try:
        with open(path) as fh:
            return float(json.load(fh).get("wall_time_s", 0.0))
    except (OSError, ValueError, TypeError):
        return 0.0


def _run_parallel(names, sub, jobs: int, keep_going: bool, quick: bool) -> dict:
    """Each experiment in its own process, at most ``jobs`` at once, longest first."""
    log_dir = os.path.join("results", "quick" if quick else "", "logs")
    os.makedirs(log_dir, exist_ok=True)
    queue = sorted(names, key=lambda nm: -_last_wall_time(nm, quick))
    running, times, failed = {}, {}, []
    while queue or running:
        while queue and len(running) < jobs and not (failed and not keep_going):
            name = queue.pop(0)
            log = open(os.path.join(log_dir, f"{name}.log"), "w")
            print(f"[reproduce] {name} {' '.join(sub)} (log: {log.name})", flush=True)
            proc = subprocess.Popen(
                [sys.executable, "-m", f"experiments.{name}", "--no-progress", *sub],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            running[name] = (proc, log, time.perf_counter())
        if failed and not keep_going and not running:
            break
        time.sleep(0.5)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            if proc.returncode == 0:
                times[name] = time.perf_counter() - t0
                print(f"[reproduce] {name} done in {times[name]:.1f} s", flush=True)
            else:
                times[name] = float("nan")
                failed.append(name)
                print(
                    f"[reproduce] {name} FAILED (exit {proc.returncode}); see {log.name}",
                    file=sys.stderr,
                    flush=True,
                )
    if failed and not keep_going:
        raise RuntimeError(f"experiments failed: {', '.join(failed)} (logs in {log_dir})")
    return times


def main(argv=None) -> dict:
    """Run the experiments; returns ``{name: wall seconds}``."""
    args = build_parser().parse_args(argv)
    names = EXPERIMENTS if args.only is None else args.only
    sub = (["--quick"] if args.quick else []) + (
        [] if args.seeds is None else ["--seeds", str(args.seeds)]
    )
    times: dict = {}
    t_all = time.perf_counter()
    if args.jobs > 1:
        times = _run_parallel(names, sub, args.jobs, args.keep_going, args.quick)
    for name in names if args.jobs == 1 else ():
        mod = importlib.import_module(f"experiments.{name}")  # a missing experiment is an error
        print(f"[reproduce] {name} {' '.join(sub)}", flush=True)
        t0 = time.perf_counter()
        try:
            mod.main(list(sub))
        except Exception:
            if not args.keep_going:
                raise
            traceback.print_exc()
            times[name] = float("nan")
            continue
        times[name] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    print("\n| experiment | wall time (s) |\n|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} |")
    print(f"| **total** (wall, --jobs {args.jobs}) | **{total:.1f}** |")
    return times


def cli(argv=None) -> int:
    """``cmcd-reproduce``: exit status 0; invalid input: one line on stderr, status 2."""
    setup_jax()  # persistent compile cache, before any JAX computation
    V.cli(main, argv, prog="cmcd-reproduce")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
