"""``cmcd-certify`` at scale: one command on an npz of 200,000 labeled rows of 8 features.

Builds the npz in a temporary folder -- 200,000 training rows and 50,000 held-out test rows
of 8 L2-normalised features, K = 4 classes (Gaussian clusters, seed 0) -- and times the
command as a user runs it, as a whole process (interpreter start, imports, the probe fits,
every bound, the CSV): ``python -m cmcd_theory.certify RUN.npz --out report.csv
--no-progress`` at the default 1,000 weight draws. The time is dominated by B3's Monte Carlo:
n x K x 1,000 standard normals for B3 and half as many for B3p (1.2e9 at full size), in
blocks of about 2^26 normals from their own generators (``cmcd_theory.bounds.pac_bayes_mc``),
counted on one thread per core; the numbers do not depend on the threads or the pieces.

The command keeps its probe fits' compiled programs in JAX's persistent cache, so it is timed
both ways, in ``--rounds`` interleaved pairs: with an empty cache (``cold``: a first call, the
fits compile) and with the cache that run wrote (``warm``: a later call on data of the same
shape). Writes ``results/certify_scale.json`` (``--quick``: 25,000 rows, ``results/quick/``):
sizes, the median wall and CPU seconds cold and warm, the fastest run, the peak resident
memory, every run with the load average at its start and the host's speed just before it
(``benchmarks.whole_process.host_speed``: the host drifts; compare runs of one call), the
machine's cores, and the B3, B3p and probe values. ``--reference CSV`` compares the table
with one written by another version of the command on the same npz (the largest difference
of any numeric column).

    python -m benchmarks.certify_scale [--quick] [--reference report.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import pandas as pd

from benchmarks.whole_process import run_timed

D, K, SEED = 8, 4, 0


def build_npz(path: str, n: int) -> None:
    """n training and n / 4 test rows of D normalised features in K Gaussian clusters."""
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((K, D))

    def draw(m):
        y = rng.integers(0, K, m)
        z = centres[y] + 0.8 * rng.standard_normal((m, D))
        return z / np.linalg.norm(z, axis=1, keepdims=True), y

    z, y = draw(n)
    zt, yt = draw(n // 4)
    np.savez(path, train_features=z, train_labels=y, test_features=zt, test_labels=yt)


def time_command(npz: str, report: str, cache_dir: str) -> dict:
    """Wall and CPU seconds (user + system, the command's process and its threads), peak
    resident MiB and the host's speed before it, of one ``python -m cmcd_theory.certify``
    run with its compile cache in ``cache_dir`` (:func:`benchmarks.whole_process.run_timed`)."""
    cmd = [sys.executable, "-m", "cmcd_theory.certify", npz, "--out", report, "--no-progress"]
    r = run_timed(cmd, {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache_dir})
    return {
        "wall_s": round(r["wall_s"], 2),
        "cpu_s": round(r["cpu_s"], 2),
        "peak_mib": r["peak_mib"],
        "host_ns_per_normal": r["host_ns_per_normal"],
    }


def _rounds(npz: str, report: str, tmp: str, rounds: int) -> list[dict]:
    """``rounds`` pairs of runs, interleaved: one with an empty compile cache (``cold``: the
    probe fits compile) and one reading the programs it cached (``warm``)."""
    runs = []
    for i in range(rounds):
        cache = os.path.join(tmp, f"jax_cache_{i}")
        for cache_state in ("cold", "warm"):
            load = os.getloadavg()[0]
            r = time_command(npz, report, cache)
            runs.append({**r, "cache": cache_state, "load_average_at_start": round(load, 2)})
    return runs


def _median(runs: list[dict], cache: str, key: str = "wall_s") -> float:
    return float(np.median([r[key] for r in runs if r["cache"] == cache]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.certify_scale", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="25,000 rows, results/quick/")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 200,000)")
    p.add_argument(
        "--reference",
        default=None,
        help="a report.csv of another version on the same npz, to compare with",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of two runs: an empty compile cache, then the cache it wrote",
    )
    p.add_argument("--out", default=None, help="JSON path")
    args = p.parse_args(argv)
    n = args.rows or (25_000 if args.quick else 200_000)
    out = args.out or (
        "results/quick/certify_scale.json" if args.quick else "results/certify_scale.json"
    )
    with tempfile.TemporaryDirectory() as tmp:
        npz, report = os.path.join(tmp, "run.npz"), os.path.join(tmp, "report.csv")
        build_npz(npz, n)
        runs = _rounds(npz, report, tmp, max(1, args.rounds))
        res = {
            "rows": n,
            "test_rows": n // 4,
            "features": D,
            "classes": K,
            "weight_samples": 1000,
            "normal_draws": int(1.5 * n * K * 1000),
            "wall_s_cold": _median(runs, "cold"),
            "wall_s_warm": _median(runs, "warm"),
            "cpu_s_cold": _median(runs, "cold", "cpu_s"),
            "cpu_s_warm": _median(runs, "warm", "cpu_s"),
            "peak_mib": max(r["peak_mib"] for r in runs),
            "wall_s_fastest": min(r["wall_s"] for r in runs),
            "runs": runs,
            "cpu_count": os.cpu_count(),
        }
        table = pd.read_csv(report).set_index("bound")
        res["values"] = {b: float(table.loc[b, "value"]) for b in ("B3", "B3p", "probe")}
        if args.reference:
            ref = pd.read_csv(args.reference).set_index("bound")
            cols = [c for c in table.columns if table[c].dtype.kind == "f" and c in ref]
            diff = np.nanmax(np.abs(table[cols].to_numpy(float) - ref[cols].to_numpy(float)))
            res["max_abs_difference_to_reference"] = float(diff)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(
        f"cmcd-certify on {n:,} x {D} rows ({K} classes, 1,000 weight draws), medians of "
        f"{len(runs) // 2} rounds: {res['wall_s_cold']:.2f} s wall with an empty compile cache, "
        f"{res['wall_s_warm']:.2f} s with the cache warm ({res['cpu_s_cold']:.1f} / "
        f"{res['cpu_s_warm']:.1f} CPU-s on {res['cpu_count']} cores) -> {out}"
    )
    return res


if __name__ == "__main__":
    main()
