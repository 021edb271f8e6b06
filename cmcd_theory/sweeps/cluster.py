"""Where a sweep's chunks run: this process, or the worker processes of a Dask cluster.

:func:`engine` turns the ``cluster=`` argument of :func:`cmcd_theory.sweeps.sweep.run_sweep` into an
object with ``n_workers``, ``retried`` and ``run(fn, world, pipeline, chunks, postprocess,
retries)``, a generator of ``(chunk, rows)`` in the order chunks finish:

* ``None`` / ``"none"``: :class:`InProcess` -- chunks in this process, on one thread per core
  (each chunk an independent program; no collectives).
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
import signal

from cmcd_theory import validation as V

_WORKER_READY = False
_CLUSTER_TYPES = (
    "cluster must be None, 'none', 'local', an int >= 1, a scheduler address, "
    "a Dask cluster or Client"
)


def check_cluster(cluster) -> None:
    """Refuse an invalid ``cluster=`` (see :func:`engine`) before any work: a wrong type or
    string, a ``LocalCluster`` of fewer than 1 worker, or a scheduler address that accepts no
    connection within :data:`cmcd_theory.validation.CONNECT_TIMEOUT_S` seconds
    (:func:`cmcd_theory.validation.scheduler_address`)."""
    if cluster is None or hasattr(cluster, "scheduler_address") or hasattr(cluster, "submit"):
        return
    if isinstance(cluster, bool):
        raise ValueError(f"{_CLUSTER_TYPES}, got {cluster!r}")
    if isinstance(cluster, int):
        if cluster < 1:
            raise ValueError(f"cluster: a LocalCluster needs >= 1 worker, got {cluster}")
        return
    if isinstance(cluster, str):
        if cluster.lower() == "none" or cluster == "local":
            return
        if "://" not in cluster:
            raise ValueError(
                f"cluster must be 'none', 'local' or a scheduler address such as "
                f"tcp://host:8786, got {cluster!r}"
            )
        V.scheduler_address("cluster", cluster)
        return
    raise ValueError(f"{_CLUSTER_TYPES}, got {cluster!r}")


def abandon() -> None:
    """Called by ``cmcd-sweep`` just before it ends at once on an interrupt: release the
    named semaphores of the embedded cluster's worker queues (multiprocessing's exit
    finalizers), so that multiprocessing's resource tracker has nothing to clean up and warn
    about after the process is gone. The worker processes exit by themselves when the driver
    does."""
    import multiprocessing.util

    # a private function of multiprocessing.util (the one its atexit hook calls), absent from
    # typeshed's stubs
    multiprocessing.util._run_finalizers(0)  # type: ignore[attr-defined]


def dask_setup(worker) -> None:
    """Dask preload hook, run in each worker process of :func:`local_cluster` as it starts:
    the worker ignores SIGINT, so a Ctrl-C at the terminal (sent to every process of the
    foreground group) reaches only the driver, which ends the sweep with one line and takes
    its workers with it (they exit when their parent does), instead of every worker printing
    a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _task(fn, *args):
    """One chunk (or other work) on a worker (JAX set up once per worker process)."""
    global _WORKER_READY
    if not _WORKER_READY:
        from cmcd_theory.sweeps.devices import setup_jax

        setup_jax()
        _WORKER_READY = True
    return fn(*args)


def _low_priority(fn, *args):
    """``fn(*args)`` on a thread of its own at the lowest CPU priority (nice 19, that thread
    only; where the system allows it): it takes only the CPU time nothing else wants."""
    import threading

    def niced():
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return fn(*args)

    return V.in_thread(niced, name="cmcd-prepare")()


class InProcess:
    """Chunks in this process on ``threads`` threads (one: one after the other).

    Each chunk is an independent single-device XLA program on the default device: no
    collectives, no cross-device communication, so nothing can wait on another chunk. XLA
    releases the GIL while it compiles and runs, so the threads keep every core busy: one
    thread compiles a chunk's program or trains the stage-1 teachers while another runs a
    chunk. Results do not depend on the thread count: every chunk runs the same executable on
    the same inputs (:func:`cmcd_theory.sweeps.sweep.run_chunk`). Chunks are yielded as they
    finish; the sweep puts the rows back in plan order.
    """

    retried = 0
    #: the chunk plan is that of one worker (:func:`~cmcd_theory.sweeps.grid.plan_chunks`
    #: with ``min_chunks=1``) whatever the thread count, so a sweep's rows are the same on one
    #: thread or many: a chunk's size is its vmap width, which moves float32 rounding
    n_workers = 1

    def __init__(self, threads: int = 1) -> None:
        V.positive_int("threads", threads)
        self.threads = threads

    def on_each_worker(self, task_of) -> list:
        """Nothing: this process has no workers to prepare."""
        return []

    def run(self, fn, world, pipeline, chunks, postprocess, retries):
        if self.threads == 1 or len(chunks) < 2:
            for chunk in chunks:
                yield chunk, fn(world, pipeline, chunk, postprocess)
            return
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cmcd-sweep")
        try:
            futures = {pool.submit(fn, world, pipeline, c, postprocess): c for c in chunks}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    yield futures[f], f.result()
        finally:  # an error or an interrupt: chunks not started are dropped
            pool.shutdown(wait=False, cancel_futures=True)


class OnDask:
    """Chunks as tasks of a Dask ``distributed.Client``; a failed chunk is submitted again."""

    def __init__(self, client):
        self.client = client
        self.retried = 0

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def on_each_worker(self, task_of) -> list:
        """Start ``fn(*args)``, ``(fn, *args) = task_of(i)``, as one task pinned to the i-th
        worker (ahead of the chunks submitted after it); returns the futures, to keep until
        those chunks are done. Their results and failures are not looked at."""
        workers = list(self.client.scheduler_info(n_workers=-1)["workers"])
        return [
            self.client.submit(
                _task,
                _low_priority,
                *task_of(i),
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )
            for i, w in enumerate(workers)
        ]

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
                raise RuntimeError(
                    f"sweep: a chunk failed {attempt + 1} time(s) "
                    f"({type(exc).__name__}: {exc}); finished rows are kept"
                ) from exc
            self.retried += 1
            g = self.client.submit(_task, fn, world, pipeline, chunks[i], postprocess, pure=False)
            futures[g] = (i, attempt + 1)
            pending.add(g)


#: Dask settings of the embedded ``LocalCluster``. A dead worker fails its tasks at once (the
#: sweep decides to rerun them). The worker processes keep glibc's default ``malloc`` tuning:
#: Dask starts them with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap
#: threshold at 128 KiB, so that every XLA buffer over that size is a fresh ``mmap``, zeroed
#: page by page and unmapped when freed (on the when_distillation_pays grid: 10.5 million page
#: faults against 0.7 million in process, and 22 s of system time in all, against 3 s). A
#: ``MALLOC_TRIM_THRESHOLD_`` in the driver's own environment is still inherited. And the
#: workers do not sample their own stacks every 10 ms for the dashboard's profile (a few per
#: cent of a core each, taken from the chunk they run).
LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, **kwargs):
    """An embedded ``LocalCluster`` (one single-threaded worker process each) and its Client.

    A worker that dies fails its tasks at once (``allowed-failures`` 0) so that the sweep,
    not the scheduler, decides to run them again and counts it; the workers run with glibc's
    default ``malloc`` settings and no stack sampling (:data:`LOCAL_CLUSTER_CONFIG`). Closed
    on exit.
    """
    import dask
    from distributed import Client, LocalCluster

    from cmcd_theory.sweeps.devices import jax_env

    n_workers = V.n_cores() if n_workers is None else n_workers
    opts = dict(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
        env=jax_env(),  # the workers share the persistent compile cache
        preload=[__name__],
    )  # dask_setup: workers leave Ctrl-C to the driver
    opts.update(kwargs)
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        with LocalCluster(**opts) as cl, Client(cl) as client:
            yield client


def local_workers(cluster) -> int | None:
    """The worker processes of the embedded ``LocalCluster`` that ``cluster`` starts (``"local"``:
    one per core; an int: that many), else None."""
    if isinstance(cluster, bool):
        return None
    if cluster == "local":
        return V.n_cores()
    return cluster if isinstance(cluster, int) else None


@contextlib.contextmanager
def engine(cluster, threads: int | None = None):
    """The engine for ``cluster`` (see the module docstring); embedded clusters are closed.
    ``threads``: the in-process engine's threads (``None``: one per core)."""
    if cluster is None or (isinstance(cluster, str) and cluster.lower() == "none"):
        yield InProcess(V.n_cores() if threads is None else threads)
        return
    check_cluster(cluster)
    n_local = local_workers(cluster)
    if n_local is not None:
        with local_cluster(n_local) as client:
            yield OnDask(client)
        return
    from distributed import Client

    if isinstance(cluster, Client):
        yield OnDask(cluster)
        return
    if isinstance(cluster, str):
        with _connect(cluster) as client:
            yield OnDask(client)
        return
    if hasattr(cluster, "scheduler_address"):
        with Client(cluster) as client:
            yield OnDask(client)
        return
    raise ValueError(f"{_CLUSTER_TYPES}, got {cluster!r}")


def _connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address``; a failure to connect (a
    port that answers but is not a Dask scheduler) is a one-line ``ValueError``."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{10 * V.CONNECT_TIMEOUT_S:g}s")
    except (OSError, TimeoutError) as e:
        raise ValueError(
            f"cluster: cannot connect to a Dask scheduler at {address} "
            f"({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
