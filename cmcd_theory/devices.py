"""Use every CPU core for sweeps: one XLA host device per core.

XLA runs one jitted program on one device. On a CPU, JAX exposes a single device by default,
and a program made of many small operations (a sweep cell's training loop) keeps one core
busy. With ``n`` host devices, :func:`cmcd_theory.sweep.run_sweep` splits each chunk of cells
across them and ``n`` cores work at once. The number of host devices is fixed when JAX
starts its backends, so :func:`use_host_cores` must run before the first JAX computation;
the command-line entry points of the toolkit call it first thing.

On a GPU machine the flag only concerns the host platform: ``jax.local_devices()`` still
lists the GPU(s), and sweeps run there.
"""

from __future__ import annotations

import os
import re

_FLAG = "--xla_force_host_platform_device_count"


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - older/newer JAX internals
        return False


def use_host_cores(n: int | None = None) -> int:
    """Ask XLA for ``n`` CPU devices (default: the cores this process may use).

    Args:
      n: number of host devices, an integer >= 1; ``None`` for ``len(os.sched_getaffinity(0))``.

    Returns:
      the number of host devices requested (an existing ``XLA_FLAGS`` setting is kept).

    Raises:
      ValueError: ``n`` is not an integer >= 1.
      RuntimeError: JAX has already started its backends with another device count.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    found = re.search(_FLAG + r"=(\d+)", flags)
    if found:  # the user's choice wins
        return int(found.group(1))
    if _backends_started():
        import jax
        have = len(jax.devices("cpu"))
        if have != n:
            raise RuntimeError(f"JAX already started with {have} CPU device(s); call "
                               "use_host_cores before any JAX computation (or set XLA_FLAGS="
                               f"{_FLAG}={n} in the environment)")
        return n
    os.environ["XLA_FLAGS"] = (flags + f" {_FLAG}={n}").strip()
    return n
