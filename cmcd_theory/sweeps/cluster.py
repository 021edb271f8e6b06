"""Where a sweep's chunks run: this process, or the worker processes of a Dask cluster.

:func:`engine` turns the ``cluster=`` argument of :func:`cmcd_theory.sweeps.sweep.run_sweep` into an
object with ``n_workers``, ``retried`` and ``run(fn, world, pipeline, chunks, postprocess,
retries)``, a generator of ``(chunk, rows)`` in the order chunks finish:

* ``None`` / ``"none"``: :class:`InProcess` -- chunks one after the other in this process.
* ``"local"`` or an int: an embedded ``distributed.LocalCluster`` of that many worker
  processes (``"local"``: one per core), one thread each, closed when the sweep ends.
* ``"tcp://host:8786"`` (any scheduler address), a Dask cluster object or a
  ``distributed.Client``: that cluster (left running).

On a cluster each chunk is one task. Workers are separate processes: an XLA abort, an
out-of-memory kill or a killed worker loses only the chunks that worker held; the driver sees
the task fail and submits it again (up to ``retries`` times per chunk; the embedded cluster
reports a dead worker's tasks to the driver at once instead of rescheduling them itself). A
worker keeps its compiled programs and stage-1 teachers across chunks (module-level caches in
the worker process), and every process shares JAX's persistent compilation cache on disk
(:func:`cmcd_theory.sweeps.devices.setup_jax`). Rows come back to the driver, which alone
writes them.

Workers import the toolkit afresh: a channel registered at run time
(:func:`cmcd_theory.worlds.register_channel`) exists in the driver only, so register it in the
workers too (a Dask ``WorkerPlugin`` whose ``setup`` registers it, so that a restarted worker
has it as well, or a module the workers preload) before the sweep.

On an HPC cluster, start workers with dask-jobqueue and pass the cluster object (or its
scheduler address), e.g. ``SLURMCluster(cores=1, processes=1, memory="4GB")`` then
``cluster.scale(jobs=32)``; see the README.
"""

from __future__ import annotations

import contextlib
import logging
import os

_WORKER_READY = False


def n_cores() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover


def _task(fn, world, pipeline, chunk, postprocess):
    """One chunk on a worker (JAX set up once per worker process)."""
    global _WORKER_READY
    if not _WORKER_READY:
        from cmcd_theory.sweeps.devices import setup_jax
        setup_jax()
        _WORKER_READY = True
    return fn(world, pipeline, chunk, postprocess)


class InProcess:
    """Chunks one after the other in this process."""

    n_workers = 1
    retried = 0

    def run(self, fn, world, pipeline, chunks, postprocess, retries):
        for chunk in chunks:
            yield chunk, fn(world, pipeline, chunk, postprocess)


class OnDask:
    """Chunks as tasks of a Dask ``distributed.Client``; a failed chunk is submitted again."""

    def __init__(self, client):
        self.client = client
        self.retried = 0

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def run(self, fn, world, pipeline, chunks, postprocess, retries):
        from distributed import as_completed
        if not chunks:
            return
        futures = {}
        for i, chunk in enumerate(chunks):
            f = self.client.submit(_task, fn, world, pipeline, chunk, postprocess, pure=False)
            futures[f] = (i, 0)
        pending = as_completed(list(futures))
        for f in pending:
            i, attempt = futures.pop(f)
            if f.status == "finished":
                rows = f.result()
                f.release()
                yield chunks[i], rows
                continue
            try:
                exc = f.exception()
            except BaseException as e:  # noqa: BLE001 - a cancelled future raises here
                exc = e
            f.release()
            if attempt >= retries:
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"sweep: a chunk failed {attempt + 1} time(s) "
                                   f"({type(exc).__name__}: {exc}); finished rows are kept") from exc
            self.retried += 1
            g = self.client.submit(_task, fn, world, pipeline, chunks[i], postprocess, pure=False)
            futures[g] = (i, attempt + 1)
            pending.add(g)


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, **kwargs):
    """An embedded ``LocalCluster`` (one single-threaded worker process each) and its Client.

    A worker that dies fails its tasks at once (``allowed-failures`` 0) so that the sweep,
    not the scheduler, decides to run them again and counts it. Closed on exit.
    """
    import dask
    from distributed import Client, LocalCluster

    from cmcd_theory.sweeps.devices import jax_env
    n_workers = n_cores() if n_workers is None else n_workers
    opts = dict(n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.CRITICAL,
                env=jax_env())  # the workers share the persistent compile cache
    opts.update(kwargs)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(**opts) as cl, Client(cl) as client:
            yield client


@contextlib.contextmanager
def engine(cluster):
    """The engine for ``cluster`` (see the module docstring); embedded clusters are closed."""
    if cluster is None or (isinstance(cluster, str) and cluster.lower() == "none"):
        yield InProcess()
        return
    if isinstance(cluster, bool):
        raise ValueError(f"cluster must be None, 'none', 'local', an int >= 1, a scheduler "
                         f"address, a Dask cluster or Client, got {cluster!r}")
    if cluster == "local" or isinstance(cluster, int):
        if isinstance(cluster, int) and cluster < 1:
            raise ValueError(f"cluster: a LocalCluster needs >= 1 worker, got {cluster}")
        with local_cluster(None if cluster == "local" else cluster) as client:
            yield OnDask(client)
        return
    from distributed import Client
    if isinstance(cluster, Client):
        yield OnDask(cluster)
        return
    if isinstance(cluster, str):
        if "://" not in cluster:
            raise ValueError(f"cluster must be 'none', 'local' or a scheduler address such as "
                             f"tcp://host:8786, got {cluster!r}")
        with Client(cluster) as client:
            yield OnDask(client)
        return
    if hasattr(cluster, "scheduler_address"):
        with Client(cluster) as client:
            yield OnDask(client)
        return
    raise ValueError(f"cluster must be None, 'none', 'local', an int >= 1, a scheduler address, "
                     f"a Dask cluster or Client, got {cluster!r}")
