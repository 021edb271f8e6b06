"""One command as a whole process, timed the way every benchmark here reports it."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time

import numpy as np

from cmcd_theory.validation import n_cores


def host_speed(n: int = 1 << 22, repeats: int = 3) -> float:
    """Nanoseconds per float64 standard normal with every core busy: one thread per core fills
    ``n`` normals (NumPy, SFC64; NumPy releases the GIL), the fastest of ``repeats`` rounds, wall
    time per normal of one thread. The host's speed at this moment: it drifts by tens of
    percent over minutes, and a run recorded with it can be told from a slower phase."""
    cores = n_cores()
    outs = [np.empty(n) for _ in range(cores)]
    rngs = [np.random.Generator(np.random.SFC64(i)) for i in range(cores)]
    best = float("inf")
    for _ in range(repeats):
        threads = [
            threading.Thread(target=rng.standard_normal, kwargs={"out": out})
            for rng, out in zip(rngs, outs)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def run_timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` as a child process: its wall seconds (spawn to exit), CPU seconds (user +
    system, its waited-for children included) and peak resident MiB (``os.wait4``), the
    1-minute load average at its end, and :func:`host_speed` just before it. Its output is
    discarded; a non-zero exit raises with the tail of its stderr."""
    speed = host_speed()
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{tail}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
        "load": round(os.getloadavg()[0], 2),
        "host_ns_per_normal": round(speed, 2),
    }
