"""How every entry point of the toolkit sets JAX up: :func:`setup_jax`, called first thing.

It points JAX's persistent compilation cache at one folder on disk, so that a program compiled
once (by this process, an earlier run, or another sweep worker process) is read back instead of
compiled again. The settings go into the environment as well as into ``jax.config``, so the
processes a sweep starts (Dask workers, :mod:`cmcd_theory.cluster`) inherit them.

A sweep runs one XLA program at a time per process on the default device; parallelism over CPU
cores comes from worker processes (:func:`cmcd_theory.sweep.run_sweep` with ``cluster=``), each
of which can fail alone without taking the sweep down.
"""

from __future__ import annotations

import os
import pathlib
import sys

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


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
    # programs of a sweep compile in 0.1-3 s each: cache them all, not only those over 1 s
    return {CACHE_ENV: cache_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS":
                os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES":
                os.environ.get("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")}


def setup_jax(cache_dir: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (every program, however fast to compile),
    in this process and the processes it starts; call it before any JAX computation.

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
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
        jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                          int(env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))
    return env[CACHE_ENV]
