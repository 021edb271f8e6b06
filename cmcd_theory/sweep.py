"""Grids of CMCD pipelines as one tidy table: vmapped, jitted, resumable.

:func:`run_sweep` runs every cell of a grid over

* shape-changing ("static") axes: ``channel, M, m, n, tau, encoder`` -- one compiled program
  per combination;
* the ``method`` axis: every method of a combination runs in that same program, on the same
  data (:func:`~cmcd_theory.pipeline.run_downstream_multi`): the samples, the teacher's
  features and the source probe are computed once per (t, seed), not once per method;
* vmapped axes: ``t`` and ``seed`` -- the (t, seed) cells of a combination run as one
  ``jax.vmap`` under one ``jax.jit``, in equal chunks (one shape, one compile), each chunk
  split across the local devices (``jax.shard_map``; on a CPU, one device per core after
  :func:`cmcd_theory.devices.use_host_cores`).

It returns a pandas DataFrame with one row per (cell, method, seed). The stage-1 teacher
depends on the seed and the source side only, so it is trained once per seed (vmapped) and
shared by every t, method, m and n of that seed; the result of a cell is the one
:func:`run_pipeline` gives for the same key (up to float32 rounding of batched arithmetic).
Each row carries the exact ground truth of its world (``tv_latent``, ``bayes_A``,
``bayes_B``; :mod:`cmcd_theory.divergences`).

With ``out=...csv`` the rows are appended chunk by chunk as they finish, the full configuration
is saved beside them as JSON, and a rerun skips the cells already in the CSV: a sweep killed
midway keeps every finished chunk and resumes where it stopped.

Command line: ``python -m cmcd_theory.sweep --help``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, PartitionSpec as P
from tqdm.auto import tqdm

from cmcd_theory.devices import use_host_cores
from cmcd_theory.pipeline import (METHODS, TEACHER_METHODS, PipelineConfig, ground_truth,
                                  run_downstream_multi,
                                  source_world_config, teacher_config, train_teacher)
from cmcd_theory.worlds import CHANNELS, WorldConfig, make_world

STATIC_AXES = ("channel", "M", "m", "n", "method", "tau", "encoder")
VMAP_AXES = ("t", "seed")
GRID_AXES = STATIC_AXES + VMAP_AXES
METRICS = ("err_B", "err_A_head", "err_A_probe", "distill_train_loss", "distill_pop_loss",
           "distill_gap", "student_norm", "sum_sq_inputs")


def quick_pipeline(cfg: PipelineConfig | None = None) -> PipelineConfig:
    """Small, fast sizes for ``--quick`` runs (same test-set size: slack stays below 0.01)."""
    cfg = cfg or PipelineConfig()
    ssl = cfg.ssl.replace(steps=200)
    dis = cfg.distill.replace(steps=200)
    sup = cfg.supervised.replace(steps=200)
    return cfg.replace(M=2048, m=1024, n=256, ssl=ssl, distill=dis, supervised=sup,
                       n_pop=4096, probe_steps=200)


def cell_config(world: WorldConfig, pipe: PipelineConfig, cell: dict):
    """The world and pipeline configs of one static combination of the grid."""
    wc = world.replace(channel=cell.get("channel", world.channel), t=0.0)
    changes = {k: cell[k] for k in ("M", "m", "n", "encoder") if k in cell}
    if "tau" in cell:
        changes["ssl"] = pipe.ssl.replace(tau=cell["tau"])
        changes["distill"] = pipe.distill.replace(tau=cell["tau"], tau_b=cell["tau"])
    return wc, pipe.replace(**changes)


def _defaults(world: WorldConfig, pipe: PipelineConfig) -> dict:
    return {"channel": world.channel, "M": pipe.M, "m": pipe.m, "n": pipe.n,
            "tau": pipe.distill.tau, "encoder": pipe.encoder, "t": world.t}


def _normalise_grid(grid: dict, world: WorldConfig, pipe: PipelineConfig, seeds) -> dict:
    unknown = set(grid) - set(GRID_AXES) - {"seed"}
    if unknown:
        raise ValueError(f"grid axes must be among {GRID_AXES}, got unknown {sorted(unknown)}")
    g = {k: [v] for k, v in _defaults(world, pipe).items()}
    g["method"] = ["cmc"]
    for k, v in grid.items():
        vals = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
        if not vals:
            raise ValueError(f"grid axis {k!r} is empty")
        g[k] = vals
    for m in g["method"]:
        if m not in METHODS:
            raise ValueError(f"method must be among {METHODS}, got {m!r}")
    for c in g["channel"]:
        if c not in CHANNELS:
            raise ValueError(f"channel must be among {CHANNELS}, got {c!r}")
    for t in g["t"]:
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {t!r}")
    g["t"] = [float(t) for t in g["t"]]
    g["tau"] = [float(x) for x in g["tau"]]
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = list(range(seeds))
    g["seed"] = [int(s) for s in seeds]
    return g


def _cell_id(row) -> tuple:
    return tuple(round(float(row[k]), 9) if k in ("t", "tau") else
                 (int(row[k]) if k in ("M", "m", "n", "seed") else str(row[k])) for k in GRID_AXES)


def _cells_mesh(n_devices: int) -> Mesh:
    return Mesh(np.asarray(jax.local_devices()[:n_devices]), ("cells",))


def _over_devices(fn, n_devices: int, in_specs):
    """``fn`` (vmapped over cells, axis 0) split across ``n_devices`` local devices, each
    running its share of the cells independently (no communication); ``fn`` itself if 1."""
    if n_devices == 1:
        return fn
    return jax.shard_map(fn, mesh=_cells_mesh(n_devices), in_specs=in_specs,
                         out_specs=P("cells"), check_vma=False)


def _teachers_batched(world, keys, cfg, n_devices=1):
    fn = jax.vmap(lambda k: train_teacher(world, k, cfg))
    return _over_devices(fn, n_devices, P("cells"))(keys)


def _downstream_batched(world, keys, teachers, ts, methods, cfg, n_devices=1):
    def fn(w, keys, teachers, ts):
        return jax.vmap(lambda k, tp, t: run_downstream_multi(w, k, tp, methods, cfg, t))(keys, teachers, ts)
    return _over_devices(fn, n_devices, (P(), P("cells"), P("cells"), P("cells")))(world, keys, teachers, ts)


_TEACHER_JIT = jax.jit(_teachers_batched, static_argnames=("cfg", "n_devices"))
_DOWNSTREAM_JIT = jax.jit(_downstream_batched, static_argnames=("methods", "cfg", "n_devices"))


def seed_keys(seeds: Sequence[int]):
    """Per-seed ``(teacher_key, downstream_key)``, exactly as :func:`run_pipeline` splits them."""
    ks = jnp.stack([jax.random.key_data(jax.random.split(jax.random.key(s))) for s in seeds])
    return jax.random.wrap_key_data(ks[:, 0]), jax.random.wrap_key_data(ks[:, 1])


def chunk_plan(n_cells: int, chunk_size: int, n_devices: int) -> tuple[int, int]:
    """``(n_chunks, size)``: the cells of one program split into equal chunks of ``size``
    cells, a multiple of ``n_devices`` and at most ``max(chunk_size, n_devices)`` -- one
    shape, so one compile; the last chunk is padded by repeating a cell (computed, then
    dropped)."""
    n_chunks = math.ceil(n_cells / chunk_size)
    size = math.ceil(n_cells / n_chunks)
    size = math.ceil(size / n_devices) * n_devices
    return math.ceil(n_cells / size), size


def _pad(items: list, size: int) -> list:
    return items + [items[-1]] * (size - len(items))


def run_sweep(grid: dict, *, world: WorldConfig = WorldConfig(),
              pipeline: PipelineConfig = PipelineConfig(), seeds: int | Sequence[int] = 3,
              out: str | None = None, postprocess: Callable | None = None,
              chunk_size: int = 16, n_devices: int | None = None, progress: bool = True,
              overwrite: bool = False) -> pd.DataFrame:
    """Run a grid of pipelines; one row per (cell, method, seed).

    Args:
      grid: axis name -> list of values, axes among :data:`GRID_AXES` (``seed`` is given by
        ``seeds``). Missing axes take the base configs' values; ``method`` defaults to cmc.
      world: base :class:`~cmcd_theory.worlds.WorldConfig`.
      pipeline: base :class:`~cmcd_theory.pipeline.PipelineConfig`.
      seeds: number of seeds (0..S-1) or an explicit list.
      out: CSV path; rows are appended as chunks finish, the config goes to ``<out>.json``,
        and cells already in the CSV are skipped.
      postprocess: optional ``f(world, cfg, method, t, seed, metrics, artifacts) -> dict`` of
        extra columns, called on host arrays for every new row (e.g. bounds).
      chunk_size: about this many (t, seed) cells per vmapped call (rounded so that the
        chunks of one program have one shape; see :func:`chunk_plan`). On the 2-core CPU
        of the benchmark, 8-10 cells per device ran about 8% faster per cell than 20.
      n_devices: local devices the cells of a chunk are split across (``None``: all of
        them). A CPU exposes one device unless :func:`cmcd_theory.devices.use_host_cores`
        ran before JAX started; a chunk then runs on every core at once.
      progress: show a tqdm bar.
      overwrite: start afresh even if ``out`` exists with another configuration.

    Returns:
      DataFrame with the grid columns, the world's ground truth (``tv_latent``, ``bayes_A``,
      ``bayes_B``) and the metrics of :func:`~cmcd_theory.pipeline.run_downstream`.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    n_local = len(jax.local_devices())
    if n_devices is None:
        n_devices = n_local
    if isinstance(n_devices, bool) or not isinstance(n_devices, int) or not 1 <= n_devices <= n_local:
        raise ValueError(f"n_devices must be an integer in [1, {n_local}] (the local devices), "
                         f"got {n_devices!r}")
    g = _normalise_grid(grid, world, pipeline, seeds)
    config = {"grid": g, "world": world.as_dict(), "pipeline": _jsonable(pipeline.as_dict())}
    done: set = set()
    old = None
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        cfg_path = os.path.splitext(out)[0] + ".json"
        if os.path.exists(out) and not overwrite:
            prev = _read_json(cfg_path)
            if prev is not None and (prev.get("world") != config["world"]
                                     or prev.get("pipeline") != config["pipeline"]):
                raise ValueError(f"{out} holds a sweep with another base configuration; "
                                 "pass overwrite=True (--overwrite) or another out path")
            old = pd.read_csv(out)
            done = {_cell_id(r) for _, r in old.iterrows()}
            if prev is not None:  # the union of the grids run so far
                config["grid"] = {k: sorted(set(prev["grid"].get(k, [])) | set(v), key=str)
                                  for k, v in g.items()}
        elif os.path.exists(out):
            os.remove(out)
        with open(cfg_path, "w") as f:
            json.dump(config, f, indent=2)

    # one program per combination of the static axes other than the method: all methods of a
    # (t, seed) cell share its data, teacher features and source probe (run_downstream_multi)
    outer = [a for a in STATIC_AXES if a != "method"]
    todo = []
    for combo in itertools.product(*(g[a] for a in outer)):
        cell = dict(zip(outer, combo))
        groups: dict = {}
        for t in g["t"]:
            for s in g["seed"]:
                missing = tuple(m for m in g["method"]
                                if _cell_id({**cell, "method": m, "t": t, "seed": s}) not in done)
                if missing:
                    groups.setdefault(missing, []).append((t, s))
        todo.extend((cell, methods, cells) for methods, cells in groups.items())
    total = sum(len(c) * len(ms) for _, ms, c in todo)
    teachers: dict = {}
    new_rows = []
    bar = tqdm(total=total, desc="sweep", unit="cell", disable=not progress or total == 0,
               file=sys.stderr)
    for cell, methods, cells in todo:
        wc, pc = cell_config(world, pipeline, cell)
        w = make_world(wc)
        n_chunks, size = chunk_plan(len(cells), chunk_size, n_devices)
        for c in range(n_chunks):
            chunk = cells[c * size:(c + 1) * size]
            padded = _pad(chunk, size)
            seeds_c = [s for _, s in padded]
            _, k_down = seed_keys(seeds_c)
            tp = None
            if any(m in TEACHER_METHODS for m in methods):
                swc, tpc = source_world_config(wc), teacher_config(pc)
                need = sorted({s for s in seeds_c if (swc, tpc, s) not in teachers})
                if need:
                    kt, _ = seed_keys(_pad(need, math.ceil(len(need) / n_devices) * n_devices))
                    params = _TEACHER_JIT(make_world(swc), kt, tpc, n_devices)
                    for i, s in enumerate(need):
                        teachers[(swc, tpc, s)] = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
                tp = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[teachers[(swc, tpc, s)] for s in seeds_c])
            ts = jnp.asarray([t for t, _ in padded], jnp.float32)
            res = _DOWNSTREAM_JIT(w, k_down, tp, ts, methods, pc, n_devices)
            # the host computes the ground truth while the devices run the chunk
            truths = [ground_truth(wc, t) for t, _ in chunk]
            res = jax.device_get(res)
            rows = []
            for method in methods:
                r = res[method]
                for i, (t, s) in enumerate(chunk):
                    row = {**cell, "method": method, "t": t, "seed": s, **truths[i]}
                    row.update({k: float(r[k][i]) for k in METRICS})
                    if postprocess is not None:
                        arts = jax.tree_util.tree_map(lambda a, i=i: np.asarray(a[i]), r["artifacts"])
                        row.update(postprocess(w, pc, method, t, s, row, arts))
                    rows.append(row)
            if out:
                _append_rows(out, pd.DataFrame(rows))
            new_rows.extend(rows)
            bar.update(len(chunk) * len(methods))
    bar.close()
    df = pd.DataFrame(new_rows)
    if old is not None and len(old):
        df = pd.concat([old, df], ignore_index=True) if len(df) else old
    return df


def _append_rows(path: str, new: pd.DataFrame) -> None:
    """Append rows to a CSV; if their columns differ from the file's, rewrite it aligned."""
    if not os.path.exists(path):
        new.to_csv(path, index=False)
        return
    header = list(pd.read_csv(path, nrows=0).columns)
    if list(new.columns) == header:
        new.to_csv(path, mode="a", header=False, index=False)
    else:
        pd.concat([pd.read_csv(path), new], ignore_index=True).to_csv(path, index=False)


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# ---- command line ---------------------------------------------------------------------------

def _floats(s):
    return [float(x) for x in s.split(",") if x]


def _ints(s):
    return [int(x) for x in s.split(",") if x]


def _strs(s):
    return [x for x in s.split(",") if x]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cmcd_theory.sweep",
        description="Run a grid of CMCD pipelines (vmapped over t and seeds) to a tidy CSV.")
    p.add_argument("--channel", type=_strs, default=["attenuate"], help=f"comma list of {CHANNELS}")
    p.add_argument("--t", type=_floats, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="comma list of distance knobs in [0, 1]")
    p.add_argument("--methods", type=_strs, default=["cmc", "cmd", "l2"], help=f"comma list of {METHODS}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..S-1)")
    p.add_argument("--M", type=_ints, default=None, help="comma list of stage-1 sizes")
    p.add_argument("--m", type=_ints, default=None, help="comma list of pair counts")
    p.add_argument("--n", type=_ints, default=None, help="comma list of label counts")
    p.add_argument("--tau", type=_floats, default=None, help="comma list of temperatures")
    p.add_argument("--encoder", type=_strs, default=None, help="comma list of linear,mlp")
    p.add_argument("--quick", action="store_true", help="small fast sizes")
    p.add_argument("--out", default="results/sweep.csv", help="CSV path (config saved as .json beside it)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing CSV with another config")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> pd.DataFrame:
    args = build_parser().parse_args(argv)
    pipe = quick_pipeline() if args.quick else PipelineConfig()
    grid = {"channel": args.channel, "t": args.t, "method": args.methods}
    for name in ("M", "m", "n", "tau", "encoder"):
        if getattr(args, name) is not None:
            grid[name] = getattr(args, name)
    t0 = time.perf_counter()
    df = run_sweep(grid, pipeline=pipe, seeds=args.seeds, out=args.out,
                   overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{len(df)} rows -> {args.out} in {time.perf_counter() - t0:.1f} s")
    return df


if __name__ == "__main__":
    use_host_cores()  # one XLA CPU device per core, set before JAX starts
    main()
