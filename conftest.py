"""Settings of the test session (tests/ and the package's doctests), read before any test module
imports JAX.

The suite is dominated by XLA compiles: a sweep program takes seconds of CPU to compile and well
under a second to run at test sizes. Two XLA options cut compile time here, neither changes what
a program computes (only how XLA turns it into machine code; results agree to float32
rounding):

* LLVM optimisation level 0 (``--xla_backend_optimization_level=0``): about 45% less compile
  time per program; runs get about 2-3x slower; the suite as a whole about a third faster.
* the CPU backend's classic loop-fusion emitters instead of its newer MLIR fusion emitters
  (``--xla_cpu_use_fusion_emitters=false``): measured on the 2-core host, compile CPU of three
  single-method pipeline programs 8.1 s -> 3.2-3.8 s, the whole suite (``-n 2``, empty compile
  cache) 363 -> 226 CPU-s; claim (i)'s error curves, claim (ii)'s slope and the t = 0 gap agree
  to 4 decimals with and without it. XLA aborts on a flag it does not know, so this one is
  added only after a short subprocess (about 1 s, once per session) has started JAX with it:
  a jaxlib without the option runs the suite at its default emitters instead of not at all.

Subprocesses started by tests (Dask workers, command lines, pytest-xdist workers) inherit both
through the environment. An option already named in ``XLA_FLAGS`` is left alone: to test at
XLA's defaults, set ``XLA_FLAGS="--xla_backend_optimization_level=2
--xla_cpu_use_fusion_emitters=true"``.
"""

import os
import subprocess
import sys


def _with(flags: str, flag: str, value: str) -> str:
    return f"{flags} {flag}={value}".strip()


def _xla_accepts(flags: str) -> bool:
    """Whether JAX's CPU backend starts with ``XLA_FLAGS=flags`` (XLA aborts on unknown flags)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import jax; jax.devices('cpu')"],
            env={**os.environ, "XLA_FLAGS": flags},
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


_LEVEL, _EMITTERS = "--xla_backend_optimization_level", "--xla_cpu_use_fusion_emitters"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = _with(os.environ.get("XLA_FLAGS", ""), _LEVEL, "0")
if _EMITTERS not in os.environ["XLA_FLAGS"]:
    _candidate = _with(os.environ["XLA_FLAGS"], _EMITTERS, "false")
    # the xdist workers inherit the controller's XLA_FLAGS, so one probe serves the session
    if _xla_accepts(_candidate):
        os.environ["XLA_FLAGS"] = _candidate
