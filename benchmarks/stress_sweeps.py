"""Consecutive full-size sweeps from the command line beside a CPU-bound process: do any abort?

Each run is a fresh process, ``python -m cmcd_theory.sweeps`` with default (non-quick) sizes,
the given grid and scheduler, writing its own CSV. A run counts as an abort if its exit status is
not 0 or its CSV does not hold every (t, seed, method) cell exactly once. With ``--burner`` (the
default) a process spinning ``while True: pass`` runs beside them the whole time. Writes
``results/stress_sweeps.json`` (per run: exit status, wall time, rows, load average).

    python -m benchmarks.stress_sweeps [--runs 20] [--seeds 8] [--scheduler local] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd


def _one_run(i: int, d: str, args: argparse.Namespace, n_rows: int) -> dict:
    """Run ``i``: one ``cmcd-sweep`` process writing ``d/run<i>.csv``, then its record (exit
    status, rows, whether every cell is there exactly once, wall time, load average)."""
    out = os.path.join(d, f"run{i}.csv")
    cmd = [
        sys.executable,
        "-m",
        "cmcd_theory.sweeps",
        "--t",
        args.t,
        "--seeds",
        str(args.seeds),
        "--methods",
        args.methods,
        "--scheduler",
        args.scheduler,
        "--out",
        out,
        "--no-progress",
    ] + (["--quick"] if args.quick else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rows, complete = 0, False
    if os.path.exists(out):
        try:
            df = pd.read_csv(out)
            rows = len(df)
            complete = rows == n_rows and not df.duplicated(["method", "t", "seed"]).any()
        except Exception:  # noqa: BLE001 - an unreadable CSV is an abort
            complete = False
    ok = proc.returncode == 0 and complete
    rec = {
        "run": i,
        "rc": proc.returncode,
        "rows": rows,
        "complete": complete,
        "ok": ok,
        "wall_s": round(wall, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    if not ok:
        rec["stderr_tail"] = proc.stderr[-2000:]
    return rec


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.stress_sweeps",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--t", default="0,0.5,1")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--methods", default="cmc,l2")
    p.add_argument("--scheduler", default="local", help="passed to cmcd-sweep --scheduler")
    p.add_argument("--no-burner", action="store_true", help="no CPU-bound process beside the runs")
    p.add_argument("--quick", action="store_true", help="quick pipeline sizes, 3 runs")
    p.add_argument("--out", default="results/stress_sweeps.json")
    args = p.parse_args(argv)
    runs = 3 if args.quick else args.runs
    n_rows = len(args.t.split(",")) * args.seeds * len(args.methods.split(","))
    burner = (
        None if args.no_burner else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    )
    records = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for i in range(runs):
                rec = _one_run(i, d, args, n_rows)
                records.append(rec)
                print(json.dumps(rec), flush=True)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    res = {
        "runs": runs,
        "aborts": sum(not r["ok"] for r in records),
        "rows_per_run": n_rows,
        "grid": {"t": args.t, "seeds": args.seeds, "methods": args.methods},
        "scheduler": args.scheduler,
        "burner": not args.no_burner,
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "records": records,
    }
    if not args.quick:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    print(f"{res['aborts']} abort(s) in {runs} runs")
    return res


if __name__ == "__main__":
    main()
