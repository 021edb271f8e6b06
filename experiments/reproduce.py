"""Every experiment in order, timed: ``python -m experiments.reproduce [--quick] [--seeds S]``.

Each experiment module exposes ``main(argv) -> DataFrame`` and writes its CSV, JSON and
figures; this runner imports each one, calls it with the shared arguments and prints a table of
wall times and their total. A persistent XLA compile cache
(:func:`cmcd_theory.devices.setup_jax`: ``.jax_cache`` in the repository, or
``$JAX_COMPILATION_CACHE_DIR``) makes a second run skip compilation. An experiment of the list
that cannot be imported is an error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from cmcd_theory import validation as V
from cmcd_theory.devices import setup_jax

EXPERIMENTS = ("world_gallery", "error_vs_distance", "convergence_m", "generalization_n", "tv_vs_gain",
               "loss_comparison", "pipeline_ablation", "rotate_channel", "bounds_check", "mfeat",
               "discomkd_synthetic", "when_distillation_pays", "pairing_vs_distance", "nuisance_ablation")


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
    p.add_argument("--seeds", type=V.arg(V.positive_int, "--seeds"), default=None,
                   help="seeds passed to every experiment (default: each experiment's own)")
    p.add_argument("--only", type=V.arg(_names, "--only"), default=None,
                   help=f"comma list of experiments to run (default: all of {', '.join(EXPERIMENTS)})")
    p.add_argument("--keep-going", action="store_true", help="run the rest after a failure")
    return p


def main(argv=None) -> dict:
    """Run the experiments; returns ``{name: wall seconds}``."""
    args = build_parser().parse_args(argv)
    names = EXPERIMENTS if args.only is None else args.only
    sub = (["--quick"] if args.quick else []) + ([] if args.seeds is None else ["--seeds", str(args.seeds)])
    times: dict = {}
    t_all = time.perf_counter()
    for name in names:
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
    print(f"| **total** | **{total:.1f}** |")
    return times


def cli(argv=None) -> int:
    """``cmcd-reproduce``: exit status 0; invalid input: one line on stderr, status 2."""
    setup_jax()  # persistent compile cache, before any JAX computation
    V.cli(main, argv, prog="cmcd-reproduce")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
