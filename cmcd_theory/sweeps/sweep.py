"""Grids of CMCD pipelines as one tidy table: vmapped, jitted, resumable.

:func:`run_sweep` runs every cell of a grid over

* shape-changing ("static") axes: ``channel, M, m, tau, encoder`` -- one compiled program
  per combination;
* the ``method`` and ``n`` axes: every method at every label count n of a combination runs
  in that same program, on the same data (:func:`~cmcd_theory.learn.pipeline.run_downstream_ns`):
  the samples, the teacher's features and the encoder of every label-free route
  (distillation, target SSL) are computed once per (t, seed), not once per method and n;
  only the stage-3 probes and the supervised route run once per n;
* vmapped axes: ``t`` and ``seed`` -- the (t, seed) cells of a combination run as one
  ``jax.vmap`` under one ``jax.jit``, in equal chunks (one shape, one compile).

The work is split in three parts, each usable alone:
:func:`~cmcd_theory.sweeps.grid.plan_chunks` (which cells run together), :func:`run_chunk` (the
rows of one chunk, a pure function of its arguments) and :mod:`cmcd_theory.sweeps.storage` (the
CSV and JSON on disk); :mod:`cmcd_theory.sweeps.cluster`
decides where chunks run -- in this process on one thread per core, or as tasks of a Dask cluster
whose worker processes can each fail alone (the chunk is run again, the sweep goes on).

It returns a pandas DataFrame with one row per (cell, method, seed). The stage-1 teacher
depends on the seed and the source side only, so it is trained once per seed (vmapped) in
each process and shared by every t, method, m and n of that seed; the result of a cell is the
one :func:`~cmcd_theory.learn.pipeline.run_pipeline` gives for the same key (up to float32
rounding of batched arithmetic). Each row carries the exact ground truth of its world
(:func:`~cmcd_theory.learn.pipeline.ground_truth`) and every metric of
:func:`~cmcd_theory.learn.pipeline.run_downstream_multi`.

The columns of the table (:func:`run_sweep`'s DataFrame, the CSV at ``out``):

* grid axes: ``channel, M, m, n, tau, encoder``, then ``method, t, seed``;
* exact ground truth at ``t`` (:func:`~cmcd_theory.learn.pipeline.ground_truth`):
  ``tv_latent`` (``sum_y pi_y TV(law(s|y), law(s_B|y))``, G2), ``bayes_A`` / ``bayes_B``
  (eps*_A, eps*_B; ``bayes_B`` NaN for a channel with no exact form), ``pair_agreement``
  (``P(y_B = y)``, G7);
* the metrics of the row's method (route; :func:`~cmcd_theory.learn.pipeline.run_downstream`),
  NaN where they do not apply: ``err_B`` (target test error of its stage-3 probe, or of
  the supervised head, on ``n_test`` held-out rows); for the distillation routes
  ``err_A_head`` (that probe on the teacher's source features), ``err_A_probe`` (a probe
  fitted on the source features of the n labeled rows), ``distill_train_loss`` /
  ``distill_pop_loss`` / ``distill_gap`` (stage-2 tuple loss on the m pairs, on ``n_pop``
  fresh pairs, and pop minus train), ``student_norm`` (Frobenius norm of the student
  params), ``sum_sq_inputs`` (B4's S: squared clipped target inputs of the tuples);
* the columns ``postprocess`` returns, if any.

With ``out=...csv`` every chunk's rows land whole as it finishes, the grid and configuration
are saved beside them as JSON, and a rerun skips the cells already in the CSV: a sweep killed
midway keeps every finished chunk and resumes where it stopped.

Command line: ``cmcd-sweep --help`` or ``python -m cmcd_theory.sweeps --help``.
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cmcd_theory import validation as V
from cmcd_theory.learn.pipeline import (
    TEACHER_METRICS,
    PipelineConfig,
    ground_truth,
    run_downstream_ns,
    seed_keys,
    source_world_config,
    teacher_config,
    train_teacher,
)

# the grid (cmcd_theory.sweeps.grid): its public names are re-exported here
from cmcd_theory.sweeps.grid import AXIS_CHECKS as AXIS_CHECKS
from cmcd_theory.sweeps.grid import GRID_AXES as GRID_AXES
from cmcd_theory.sweeps.grid import PROGRAM_AXES as PROGRAM_AXES
from cmcd_theory.sweeps.grid import STATIC_AXES as STATIC_AXES
from cmcd_theory.sweeps.grid import VMAP_AXES as VMAP_AXES
from cmcd_theory.sweeps.grid import Chunk as Chunk
from cmcd_theory.sweeps.grid import _cell_id, _in_grid, _normalise_grid
from cmcd_theory.sweeps.grid import cell_config as cell_config
from cmcd_theory.sweeps.grid import chunk_plan as chunk_plan
from cmcd_theory.sweeps.grid import grid_values as grid_values
from cmcd_theory.sweeps.grid import plan_chunks as plan_chunks
from cmcd_theory.worlds import WorldConfig, make_world

METRICS = ("err_B", *TEACHER_METRICS)  # the metric columns of every row, in table order


def quick_pipeline(cfg: PipelineConfig | None = None) -> PipelineConfig:
    """Small, fast sizes for ``--quick`` runs (same test-set size: slack stays below 0.01)."""
    cfg = cfg or PipelineConfig()
    ssl = cfg.ssl.replace(steps=200)
    dis = cfg.distill.replace(steps=200)
    sup = cfg.supervised.replace(steps=200)
    return cfg.replace(
        M=2048, m=1024, n=256, ssl=ssl, distill=dis, supervised=sup, n_pop=4096, probe_steps=200
    )


# ---- execution of one chunk (in this process or on a worker) -----------------------------


def _teachers_batched(world, keys, cfg):
    return jax.vmap(lambda k: train_teacher(world, k, cfg))(keys)


def _downstream_batched(world, keys, teachers, ts, methods, ns, cfg, artifacts=True):
    """:func:`run_downstream_ns` vmapped over (key, teacher, t); with ``artifacts=False`` the
    arrays only a ``postprocess`` reads are left out of the program's outputs (XLA then keeps
    none of them: a chunk's outputs shrink from ~9 MB a cell to a few floats)."""

    def one(k, tp, t):
        res = run_downstream_ns(world, k, tp, methods, cfg, ns, t)
        if not artifacts:
            for by_method in res.values():
                for r in by_method.values():
                    r["artifacts"] = {}
        return res

    return jax.vmap(one)(keys, teachers, ts)


_TEACHER_JIT = jax.jit(_teachers_batched, static_argnames=("cfg",))
_DOWNSTREAM_JIT = jax.jit(
    _downstream_batched, static_argnames=("methods", "ns", "cfg", "artifacts")
)

# stage-1 teachers of this process, (source world, teacher config, seed) -> params; a worker
# keeps them across chunks (bounded: a teacher is retrained rather than memory growing)
_TEACHERS: collections.OrderedDict = collections.OrderedDict()
_TEACHERS_MAX = 256
_TEACHER_LOCK = threading.Lock()

# compiled downstream programs of this process, one per shape: (world config, pipeline config,
# chunk size, methods, label counts, with teachers) -> executable. Compiled ahead of time
# (``lower(...).compile()``) from the teachers' shapes, so a chunk's program compiles while
# another thread trains the teachers or runs a chunk; one lock per program, so two threads
# never compile the same one. Bounded like the teachers.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_PROGRAMS_MAX = 64
_PROGRAM_LOCKS: collections.defaultdict = collections.defaultdict(threading.Lock)
_PROGRAMS_LOCK = threading.Lock()


def _teacher_spec(wc: WorldConfig, pc: PipelineConfig, size: int):
    """Shapes and dtypes of ``size`` stacked stage-1 teachers (no computation)."""
    swc, tpc = source_world_config(wc), teacher_config(pc)
    one = jax.eval_shape(lambda k: train_teacher(make_world(swc), k, tpc), jax.random.key(0))
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((size, *a.shape), a.dtype), one)


def _program_key(wc: WorldConfig, pc: PipelineConfig, chunk: Chunk, artifacts: bool) -> tuple:
    """What a downstream program depends on: the chunks with one key share one program."""
    return (wc, pc, chunk.size, chunk.methods, chunk.ns, chunk.n_teachers > 0, artifacts)


def _downstream_program(
    wc: WorldConfig,
    pc: PipelineConfig,
    chunk: Chunk,
    args: tuple,
    wait: bool = True,
    artifacts: bool = True,
):
    """The compiled :func:`_downstream_batched` of ``chunk``'s shape (compiled on first use,
    from ``args`` = (world, keys, ts) and the teachers' shapes), returning the arrays a
    postprocess needs if ``artifacts``. With ``wait=False``, None while another thread
    compiles it (this one can do something else meanwhile)."""
    key = _program_key(wc, pc, chunk, artifacts)
    with _PROGRAMS_LOCK:
        lock = _PROGRAM_LOCKS[key]
    if not lock.acquire(blocking=wait):
        return None
    try:
        with _PROGRAMS_LOCK:
            if key in _PROGRAMS:
                _PROGRAMS.move_to_end(key)
                return _PROGRAMS[key]
        with _PROGRAMS_LOCK:
            lowered = _LOWERED.pop(key, None)
        program = (lowered or _lower(wc, pc, chunk, args, artifacts)).compile()
        with _PROGRAMS_LOCK:
            _PROGRAMS[key] = program
            while len(_PROGRAMS) > _PROGRAMS_MAX:
                _PROGRAMS.popitem(last=False)
        return program
    finally:
        lock.release()


# downstream programs traced and lowered by :func:`prepare`, not compiled yet (same keys)
_LOWERED: dict = {}


def _lower(wc: WorldConfig, pc: PipelineConfig, chunk: Chunk, args: tuple, artifacts: bool):
    w, keys, ts = args
    spec = _teacher_spec(wc, pc, chunk.size) if chunk.n_teachers else None
    return _DOWNSTREAM_JIT.lower(w, keys, spec, ts, chunk.methods, chunk.ns, pc, artifacts)


def _chunk_args(world: WorldConfig, pipeline: PipelineConfig, chunk: Chunk):
    """``(wc, pc, seeds, (world, keys, ts))`` of a chunk: its cell's configs (at its first n),
    the seeds of its cells padded to its size, and the downstream program's arguments."""
    wc, pc = cell_config(world, pipeline, {**dict(chunk.cell), "n": chunk.ns[0]})
    padded = _pad(list(chunk.cells), chunk.size)
    seeds = [s for _, s in padded]
    _, k_down = seed_keys(seeds)
    ts = jnp.asarray([t for t, _ in padded], jnp.float32)
    return wc, pc, seeds, (make_world(wc), k_down, ts)


def prepare(
    world: WorldConfig, pipeline: PipelineConfig, chunks: Sequence[Chunk], artifacts: bool = True
) -> int:
    """On a worker, while the driver compiles the programs (:func:`precompile`): what its
    chunks need besides the compiled program -- each downstream program of ``chunks`` traced
    and lowered (kept for :func:`_downstream_program`, which then only reads the executable
    back from the persistent cache) and the stage-1 teachers of their seeds. Returns the
    number of programs lowered."""
    done, configs = 0, []
    for chunk in chunks:
        wc, pc, _, args = _chunk_args(world, pipeline, chunk)
        configs.append((wc, pc))
        key = _program_key(wc, pc, chunk, artifacts)
        with _PROGRAMS_LOCK:
            if key in _PROGRAMS or key in _LOWERED:
                continue
        lowered = _lower(wc, pc, chunk, args, artifacts)
        with _PROGRAMS_LOCK:
            _LOWERED[key] = lowered
        done += 1
    for chunk, (wc, pc) in zip(chunks, configs):
        if chunk.n_teachers:
            _teachers_for(wc, pc, [s for _, s in chunk.cells], chunk.n_teachers)
    return done


def _pad(items: list, size: int) -> list:
    return items + [items[-1]] * (size - len(items))


def _teachers_for(wc: WorldConfig, pc: PipelineConfig, seeds: list, batch: int):
    """Stacked stage-1 teacher params for ``seeds`` (trained ``batch`` seeds per call, cached;
    one thread at a time: a teacher another chunk's thread is training is waited for, not
    trained twice)."""
    swc, tpc = source_world_config(wc), teacher_config(pc)
    with _TEACHER_LOCK:
        need = sorted({s for s in seeds if (swc, tpc, s) not in _TEACHERS})
        for i in range(0, len(need), batch):
            part = need[i : i + batch]
            kt, _ = seed_keys(_pad(part, batch))
            params = jax.device_get(_TEACHER_JIT(make_world(swc), kt, tpc))
            for j, s in enumerate(part):  # host arrays: slicing and stacking compile nothing
                _TEACHERS[(swc, tpc, s)] = jax.tree_util.tree_map(lambda a, j=j: a[j], params)
        got = [_TEACHERS[(swc, tpc, s)] for s in seeds]
        for s in seeds:
            _TEACHERS.move_to_end((swc, tpc, s))
        while len(_TEACHERS) > _TEACHERS_MAX:
            _TEACHERS.popitem(last=False)
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *got)


def precompile(
    world: WorldConfig, pipeline: PipelineConfig, chunks: Sequence[Chunk], artifacts: bool = True
) -> int:
    """Compile the programs ``chunks`` need (each downstream shape, returning the arrays of a
    postprocess if ``artifacts``, and its stage-1 teacher program), running nothing, so that
    they land in JAX's persistent compilation cache
    (:func:`cmcd_theory.sweeps.devices.setup_jax`): worker processes that share the cache then
    read them back instead of each compiling them. Returns the number of programs."""
    seen: set = set()
    jobs: list = []
    for chunk in chunks:
        wc, pc, seeds, args = _chunk_args(world, pipeline, chunk)
        key = (wc, pc, chunk.size, chunk.methods, chunk.ns, chunk.n_teachers)
        if key in seen:
            continue
        seen.add(key)
        jobs.append(functools.partial(_downstream_program, wc, pc, chunk, args, True, artifacts))
        if chunk.n_teachers:
            swc, tpc = source_world_config(wc), teacher_config(pc)
            kt, _ = seed_keys(seeds[: chunk.n_teachers])
            jobs.append(_TEACHER_JIT.lower(make_world(swc), kt, tpc).compile)
    # independent compilations on one thread per core (XLA releases the GIL while compiling)
    with ThreadPoolExecutor(max(1, min(len(jobs), V.n_cores()))) as pool:
        list(pool.map(lambda job: job(), jobs))
    return len(seen)


def run_chunk(
    world: WorldConfig, pipeline: PipelineConfig, chunk: Chunk, postprocess: Callable | None = None
) -> list[dict]:
    """The rows of one chunk: a pure function of its arguments (so a lost chunk is recomputed
    with the same numbers wherever it runs). Every scalar that
    :func:`~cmcd_theory.learn.pipeline.ground_truth` and
    :func:`~cmcd_theory.learn.pipeline.run_downstream_ns` return becomes a column: the
    columns of :func:`run_sweep` (grid axes, ground truth, metrics), one dict per (n, method,
    cell) of the chunk. ``postprocess`` gets the pipeline config of the row's own n."""
    cell = dict(chunk.cell)
    wc, pc, seeds, (w, k_down, ts) = _chunk_args(world, pipeline, chunk)
    # the program (compiled here unless another thread is compiling it) and the teachers, in
    # whichever order keeps this thread busy: a thread that finds the program being compiled
    # trains the teachers meanwhile
    arts = postprocess is not None  # the artifacts are returned only for a postprocess
    program = _downstream_program(wc, pc, chunk, (w, k_down, ts), False, arts)
    tp = _teachers_for(wc, pc, seeds, chunk.n_teachers) if chunk.n_teachers else None
    if program is None:
        program = _downstream_program(wc, pc, chunk, (w, k_down, ts), True, arts)
    res = program(w, k_down, tp, ts)
    truths = [ground_truth(wc, t) for t, _ in chunk.cells]  # while the program runs
    res = jax.device_get(res)
    rows = []
    for n, method in chunk.wanted:
        r, pc_n = res[n][method], pc.replace(n=n)
        # what every n shares is returned once, at the program's first n
        artifacts = {**res[chunk.ns[0]][method]["artifacts"], **r["artifacts"]}
        names = [k for k in METRICS if k in r] + [
            k for k in r if k not in METRICS and k != "artifacts" and np.ndim(r[k]) == 1
        ]
        static = {a: (n if a == "n" else cell[a]) for a in STATIC_AXES if a != "method"}
        for i, (t, s) in enumerate(chunk.cells):
            row = {**static, "method": method, "t": t, "seed": s, **truths[i]}
            row.update({k: float(r[k][i]) for k in names})
            if postprocess is not None:
                arts = jax.tree_util.tree_map(lambda a, i=i: np.asarray(a[i]), artifacts)
                row.update(postprocess(w, pc_n, method, t, s, row, arts))
            rows.append(row)
    return rows


# ---- the sweep -----------------------------------------------------------------------------


def run_sweep(
    grid: dict,
    *,
    world: WorldConfig = WorldConfig(),
    pipeline: PipelineConfig = PipelineConfig(),
    seeds: int | Sequence[int] = 3,
    out: str | None = None,
    postprocess: Callable | None = None,
    chunk_size: int = 16,
    progress: bool = True,
    overwrite: bool = False,
    extend: bool = False,
    cluster=None,
    retries: int = 3,
    threads: int | None = None,
) -> pd.DataFrame:
    """Run a grid of pipelines; one row per (cell, method, seed).

    Args:
      grid: axis name -> list of values, axes among
        :data:`~cmcd_theory.sweeps.grid.GRID_AXES` (``seed`` is given by ``seeds``). Missing
        axes take the base configs' values; ``method`` defaults to cmc. Each axis is a set: an
        empty axis or a repeated value is refused, as on the command line
        (:func:`~cmcd_theory.sweeps.grid.grid_values`).
      world: base :class:`~cmcd_theory.worlds.WorldConfig`.
      pipeline: base :class:`~cmcd_theory.learn.pipeline.PipelineConfig`.
      seeds: number of seeds (0..S-1) or an explicit list of distinct seeds >= 0.
      out: CSV path, checked before any work (its folder writable, not a directory, not a
        read-only file: :func:`cmcd_theory.validation.output_file`); each chunk's rows land
        whole as it finishes, the grid and configs go to ``<out>.json``, and cells already in
        the CSV are skipped (a partial last row left by a crash is dropped and recomputed).
        See :mod:`cmcd_theory.sweeps.storage` for what an existing ``out`` may hold.
      postprocess: optional ``f(world, cfg, method, t, seed, metrics, artifacts) -> dict`` of
        extra columns, called on host arrays for every new row (e.g. bounds); it runs where the
        chunk runs, so on a cluster it must be picklable.
      chunk_size: at most this many (t, seed) cells per vmapped call (rounded so that the
        chunks of one program have one shape; see :func:`~cmcd_theory.sweeps.grid.chunk_plan`).
      progress: a progress bar (on a terminal, not under ``CI=true``) and a summary line.
      overwrite: discard an existing ``out`` and its JSON.
      extend: let the grid at ``out`` grow (every axis keeps its values; configs identical).
      cluster: where chunks run. ``None`` or ``"none"``: in this process, on ``threads`` threads.
        Otherwise a Dask ``distributed.Client``, a Dask cluster object, a scheduler address
        (``"tcp://host:8786"``), ``"local"`` (an embedded ``LocalCluster``, one single-threaded
        worker process per core) or an int (a ``LocalCluster`` of that many workers); see
        :mod:`cmcd_theory.sweeps.cluster`. A chunk whose worker dies or raises is run again.
        A scheduler address must accept a connection within
        :data:`cmcd_theory.validation.CONNECT_TIMEOUT_S` seconds, before any work.
      retries: how many times a failed chunk is run again before the sweep gives up (cluster).
      threads: in this process (``cluster=None``), chunks run on this many threads at once
        (``None``: one per core; 1: one after the other). The numbers do not depend on it.

    Returns:
      DataFrame of the rows of the cells of ``grid`` (resumed ones first), one per (cell,
      method, seed), with the columns of the module docstring (grid axes, exact ground truth,
      the metrics of the row's method, the columns ``postprocess`` returns).
      ``df.attrs["sweep"]`` holds the run's bookkeeping: ``computed`` and ``resumed`` rows,
      ``retried_chunks``, ``chunks`` and ``wall_s``.
    """
    t_start = time.perf_counter()
    g = _normalise_grid(grid, world, pipeline, seeds)
    _check_run(chunk_size, retries, out, cluster, threads)
    config = {"grid": g, "world": world.as_dict(), "pipeline": _jsonable(pipeline.as_dict())}
    store, old, done = _open_store(out, config, g, extend, overwrite)
    new_rows, retried, n_chunks = _compute(
        g,
        done,
        world,
        pipeline,
        store,
        postprocess=postprocess,
        chunk_size=chunk_size,
        progress=progress,
        cluster=cluster,
        retries=retries,
        threads=threads,
    )
    if store is not None:  # every cell asked for is in; the recorded grid may be larger
        store.write_config(complete=store.asked_whole_grid or store.was_complete)
    return _table(new_rows, old, retried, n_chunks, t_start, progress)


def _table(
    new_rows: list, old, retried: int, n_chunks: int, t_start: float, progress: bool
) -> pd.DataFrame:
    """:func:`run_sweep`'s DataFrame: the resumed rows ``old`` (None: no file) then the new
    ones, with the run's bookkeeping in ``df.attrs["sweep"]`` (wall time from ``t_start``,
    a ``time.perf_counter()`` reading) and, with ``progress``, its summary line on stderr."""
    df = pd.DataFrame(new_rows)
    if old is not None and len(old):
        df = pd.concat([old, df], ignore_index=True) if len(df) else old
    wall = time.perf_counter() - t_start
    df.attrs["sweep"] = {
        "computed": len(new_rows),
        "resumed": 0 if old is None else len(old),
        "retried_chunks": retried,
        "chunks": n_chunks,
        "wall_s": wall,
    }
    if progress:
        print(summary_line(df.attrs["sweep"]), file=sys.stderr)
    return df


def _check_run(chunk_size, retries, out, cluster, threads=None) -> None:
    """What :func:`run_sweep` checks before any work, besides the grid: its integer options,
    that ``out`` and its JSON can be written (:func:`cmcd_theory.validation.output_file`) and
    that ``cluster`` is valid and, for a scheduler address, answers
    (:func:`cmcd_theory.sweeps.cluster.check_cluster`)."""
    from cmcd_theory.sweeps import cluster as cluster_mod
    from cmcd_theory.sweeps import storage

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if out is not None:
        V.output_file("out", out, example="sweep.csv")
        V.output_file("out", storage.config_path(os.fspath(out)), example="sweep.json")
    cluster_mod.check_cluster(cluster)


def _open_store(out: str | None, config: dict, g: dict, extend: bool, overwrite: bool):
    """``(store, old, done)``: the :mod:`~cmcd_theory.sweeps.storage` store at ``out`` (None
    without ``out``), its rows that are cells of ``g`` (None: no file) and their cell ids."""
    from cmcd_theory.sweeps import storage

    store = storage.open_store(out, config, extend=extend, overwrite=overwrite) if out else None
    old = store.rows if store is not None else None
    if old is not None:
        old = old[_in_grid(old, g)].reset_index(drop=True)
    done = {_cell_id(r) for r in old.to_dict("records")} if old is not None else set()
    return store, old, done


def _compute(
    g: dict,
    done: set,
    world: WorldConfig,
    pipeline: PipelineConfig,
    store,
    *,
    postprocess,
    chunk_size: int,
    progress: bool,
    cluster,
    retries: int,
    threads: int | None = None,
):
    """Run the chunks of the cells of ``g`` not in ``done`` where ``cluster`` says; each
    chunk's rows are appended to ``store`` (if any) as it finishes. Returns ``(rows, retried
    chunks, chunks)``."""
    from cmcd_theory.sweeps import cluster as cluster_mod

    if not plan_chunks(g, done, chunk_size):
        cluster = None  # everything is in the file: start no cluster
    # an embedded LocalCluster shares this machine's persistent compile cache: its programs
    # are compiled here, once, while its worker processes start, instead of in every worker
    n_local = cluster_mod.local_workers(cluster)
    warm = None
    from cmcd_theory.sweeps.devices import shares_cache_with_workers

    if n_local is not None and n_local > 1 and shares_cache_with_workers():
        plan = plan_chunks(g, done, chunk_size, min_chunks=2 * n_local)
        warm = threading.Thread(
            target=precompile, args=(world, pipeline, plan, postprocess is not None), daemon=True
        )
        warm.start()
    with cluster_mod.engine(cluster, threads) as eng:
        chunks = plan_chunks(
            g, done, chunk_size, min_chunks=2 * eng.n_workers if eng.n_workers > 1 else 1
        )
        prepared: list = []
        if warm is not None:
            # meanwhile each worker lowers the programs and trains the teachers of one chunk
            # of each program (its i-th; chunks of one program share one compiled program)
            by_program: dict = {}
            for c in chunks:
                by_program.setdefault((c.cell, c.wanted, c.size), []).append(c)

            def reps(i: int) -> list:
                return [cs[i % len(cs)] for cs in by_program.values()]

            prepared = eng.on_each_worker(
                lambda i: (prepare, world, pipeline, reps(i), postprocess is not None)
            )
            warm.join()
        total = sum(c.n_rows for c in chunks)
        bar = tqdm(
            total=total,
            desc="sweep",
            unit="row",
            file=sys.stderr,
            disable=not progress or total == 0 or not _interactive(),
        )
        by_chunk: dict = {}
        position = {id(c): i for i, c in enumerate(chunks)}
        for chunk, rows in eng.run(run_chunk, world, pipeline, chunks, postprocess, retries):
            if store is not None:
                store.append(rows)  # the driver alone writes, one chunk at a time, whole
            by_chunk[position[id(chunk)]] = rows
            bar.update(chunk.n_rows)
        bar.close()
        retried = eng.retried
        del prepared
    # the table in plan order, whatever order the chunks finished in
    new_rows = [row for i in sorted(by_chunk) for row in by_chunk[i]]
    return new_rows, retried, len(chunks)


def summary_line(stats: dict) -> str:
    """``sweep: 120 rows computed, 0 resumed, 0 chunks retried in 12.3 s (9.8 rows/s)``."""
    rate = stats["computed"] / stats["wall_s"] if stats["wall_s"] > 0 else float("nan")
    return (
        f"sweep: {stats['computed']} rows computed, {stats['resumed']} resumed, "
        f"{stats['retried_chunks']} chunk(s) retried in {stats['wall_s']:.1f} s ({rate:.2f} rows/s)"
    )


def _interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d
