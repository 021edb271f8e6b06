"""Settings of the test session (tests/ and the package's doctests), read before any test module
imports JAX.

XLA compiles at LLVM optimisation level 0 here. The suite is dominated by compiles: a sweep
program takes about 10 s of CPU to compile and well under 1 s to run at test sizes, and level 0
cuts compile time by about 45% (runs get about 2-3x slower; the suite as a whole about a third
faster). The programs compute the same functions; the level changes only how LLVM optimises the
machine code (results agree to float32 rounding). Subprocesses started by tests (Dask workers,
command lines) inherit it through the environment. To test at XLA's default level, set
``XLA_FLAGS=--xla_backend_optimization_level=2`` (an explicit level is left alone).
"""

import os

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=0".strip()
