"""How every entry point of the toolkit sets JAX up: :func:`setup_jax`, called first thing.

It points JAX's persistent compilation cache at one folder on disk, so that a program compiled
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
import pathlib
import sys

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
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


def default_cache_dir() -> str:
    """``.jax_cache`` in the repository of a source checkout, else ``~/.cache/cmcd_theory/jax``."""
    root = pathlib.Path(__file__).resolve().parent.parent
    if (root / "setup.cfg").exists():
        return str(root / ".jax_cache")
    return str(pathlib.Path.home() / ".cache" / "cmcd_theory" / "jax")


def jax_env(cache_dir: str | None = None) -> dict:
    """The environment variables of :func:`setup_jax` (for processes a sweep starts).

    Args:
      cache_dir: the cache folder; ``None`` keeps ``$JAX_COMPILATION_CACHE_DIR`` if set, else
        :func:`default_cache_dir`. An empty ``$JAX_COMPILATION_CACHE_DIR`` turns the cache off.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV, default_cache_dir())
    # a sweep's many programs each compile quickly: cache them all (minimum compile time and
    # entry size 0), not only those over JAX's default threshold of 1 s
    return {
        CACHE_ENV: cache_dir,
        "XLA_FLAGS": xla_flags(),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"
        ),
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0"
        ),
    }


def setup_jax(cache_dir: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (every program, however fast to compile)
    and the CPU compile level of :func:`xla_flags`, in this process and the processes it
    starts; call it before any JAX computation (XLA reads its flags when its first backend
    starts).

    Args:
      cache_dir: as in :func:`jax_env`.

    Returns:
      the cache folder in use ('' when off).
    """
    env = jax_env(cache_dir)
    os.environ.update(env)
    if "jax" in sys.modules:  # JAX read the environment when imported: tell it directly
        import jax

        jax.config.update("jax_compilation_cache_dir", env[CACHE_ENV] or None)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        jax.config.update(
            "jax_persistent_cache_min_entry_size_bytes",
            int(env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
        )
    return env[CACHE_ENV]


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
