"""One command as a whole process, timed the way every benchmark here reports it."""

from __future__ import annotations

import os
import subprocess
import time


def run_timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` as a child process: its wall seconds (spawn to exit), CPU seconds (user +
    system, its waited-for children included) and peak resident MiB (``os.wait4``), and the
    1-minute load average at its end. A non-zero exit raises with the tail of its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),
        "load": round(os.getloadavg()[0], 2),
    }
