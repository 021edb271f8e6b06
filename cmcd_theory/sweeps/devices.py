"""How every entry point of the toolkit sets JAX up: :func:`setup_jax`, called first thing.

It points JAX's persistent compilation cache at one folder on disk
(:mod:`cmcd_theory.learn.compile_cache`), so that a program compiled
once (by this process, an earlier run, or another sweep worker process) is read back instead of
compiled again. The settings go into the environment as well as into ``jax.config``, so the
processes a sweep starts (Dask workers, :mod:`cmcd_theory.sweeps.cluster`) inherit them.

On a CPU-only installation it also has XLA compile the toolkit's programs at LLVM optimisation
level 1 (:data:`CPU_OPT_LEVEL`) unless ``XLA_FLAGS`` already names a level: the programs are
compiled once and run briefly, so compilation dominates their cost, and level 1 compiles with
less work than XLA's default while computing the same functions (the values agree to float32
rounding: error columns identical, a few losses one ulp apart). Where a GPU plugin is
installed the default is left alone.

A sweep runs one XLA program at a time per process on the default device; parallelism over CPU
cores comes from worker processes (:func:`cmcd_theory.sweeps.sweep.run_sweep` with
``cluster=``), each of which can fail alone without taking the sweep down.
"""

from __future__ import annotations

import os
import sys

from cmcd_theory.learn.compile_cache import CACHE_ENV as CACHE_ENV
from cmcd_theory.learn.compile_cache import cache_env, enable_compile_cache

#: XLA_FLAGS option of the LLVM optimisation level, and the level used on CPU-only installs
LEVEL_FLAG = "--xla_backend_optimization_level"
CPU_OPT_LEVEL = 1
#: JAX accelerator plugins: where one is installed, XLA's default level is kept
GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin")


def _cpu_only() -> bool:
    import importlib.util

    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    return not any(importlib.util.find_spec(m) is not None for m in GPU_PLUGINS)


def xla_flags() -> str:
    """``$XLA_FLAGS`` with ``--xla_backend_optimization_level=1`` added on a CPU-only install
    when it names no level (an explicit level, e.g. the test suite's 0, is left alone)."""
    flags = os.environ.get("XLA_FLAGS", "").strip()
    if LEVEL_FLAG in flags or not _cpu_only():
        return flags
    return f"{flags} {LEVEL_FLAG}={CPU_OPT_LEVEL}".strip()


def jax_env(cache_dir: str | None = None) -> dict:
    """The environment variables of :func:`setup_jax` (for processes a sweep starts): those
    of the persistent cache (:func:`cmcd_theory.learn.compile_cache.cache_env`) and
    ``XLA_FLAGS`` (:func:`xla_flags`).

    Args:
      cache_dir: as in :func:`~cmcd_theory.learn.compile_cache.cache_env`.
    """
    return {**cache_env(cache_dir), "XLA_FLAGS": xla_flags()}


def setup_jax(cache_dir: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (every program, however fast to compile:
    :func:`~cmcd_theory.learn.compile_cache.enable_compile_cache`) and the CPU compile level
    of :func:`xla_flags`, in this process and the processes it starts; call it before any JAX
    computation (XLA reads its flags when its first backend starts).

    Args:
      cache_dir: as in :func:`jax_env`.

    Returns:
      the cache folder in use ('' when off).
    """
    os.environ["XLA_FLAGS"] = xla_flags()
    return enable_compile_cache(cache_dir)


def shares_cache_with_workers() -> bool:
    """Whether this process compiles into the persistent cache that the worker processes it
    starts read (:func:`jax_env`) with their XLA options: :func:`setup_jax` was called with
    the default folder and the options have not changed since. Only then does compiling a
    program here save the workers from compiling it."""
    if "jax" not in sys.modules:
        return False
    import jax

    env = jax_env()
    return bool(env[CACHE_ENV]) and (
        getattr(jax.config, "jax_compilation_cache_dir", None) == env[CACHE_ENV]
        and os.environ.get("XLA_FLAGS", "").strip() == env["XLA_FLAGS"]
    )
