"""JAX's persistent compilation cache, as every entry point of the toolkit uses it.

:func:`enable_compile_cache` points the cache at one folder on disk (:func:`default_cache_dir`,
or ``$JAX_COMPILATION_CACHE_DIR``) and caches every program, however quickly it compiles: a
program compiled once, by this process, an earlier run or another process, is then read back
instead of compiled again. It changes no XLA option, so a program read back is the one a
compilation would have produced, and its numbers are the same. The settings go into the
environment as well as into ``jax.config``, so processes started from this one inherit them.

``cmcd-certify`` calls it before its probe fits; the sweeps' entry points call it through
:func:`cmcd_theory.sweeps.devices.setup_jax`, which also sets their XLA options.
"""

from __future__ import annotations

import os
import pathlib
import sys

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def default_cache_dir() -> str:
    """``.jax_cache`` in the repository of a source checkout, else ``~/.cache/cmcd_theory/jax``."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if (root / "setup.cfg").exists():
        return str(root / ".jax_cache")
    return str(pathlib.Path.home() / ".cache" / "cmcd_theory" / "jax")


def cache_env(cache_dir: str | None = None) -> dict:
    """The environment variables of the cache: its folder and JAX's thresholds for what it
    keeps (0: every program, not only those over JAX's default of 1 s of compilation).

    Args:
      cache_dir: the cache folder; ``None`` keeps ``$JAX_COMPILATION_CACHE_DIR`` if set, else
        :func:`default_cache_dir`. An empty ``$JAX_COMPILATION_CACHE_DIR`` turns the cache off.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV, default_cache_dir())
    return {
        CACHE_ENV: cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"
        ),
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0"
        ),
    }


def enable_compile_cache(cache_dir: str | None = None) -> str:
    """Turn on the persistent compilation cache (:func:`cache_env`) in this process and the
    processes it starts; call it before the programs to cache are compiled.

    Args:
      cache_dir: as in :func:`cache_env`.

    Returns:
      the cache folder in use ('' when off).
    """
    env = cache_env(cache_dir)
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
