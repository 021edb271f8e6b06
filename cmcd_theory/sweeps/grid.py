"""The grid of a sweep: its axes, the check of each axis's values, the cells' ids and the
chunks that compute them (docs: :mod:`cmcd_theory.sweeps.sweep`).

A grid maps axis names to lists of values: the static axes :data:`STATIC_AXES` (one compiled
program per combination, but the method and n, :data:`PROGRAM_AXES`, which run inside one
program) and the vmapped axes :data:`VMAP_AXES` (t and seed). :func:`grid_values` checks the
values of one axis as the command line and :func:`~cmcd_theory.sweeps.sweep.run_sweep` both
check them (a non-empty set of valid values), :func:`_normalise_grid` fills in the axes a grid
leaves out, :func:`_cell_id` names a row's cell as a resumed sweep compares it, and
:func:`plan_chunks` groups the cells still to compute into :class:`Chunk` s of one shape per
program (:func:`chunk_plan`).

Example:
  >>> from cmcd_theory.learn.pipeline import PipelineConfig
  >>> from cmcd_theory.worlds import WorldConfig
  >>> g = _normalise_grid({"t": [0.0, 1.0]}, WorldConfig(), PipelineConfig(), seeds=2)
  >>> g["method"], g["t"], g["seed"]
  (['cmc'], [0.0, 1.0], [0, 1])
  >>> [len(c.cells) for c in plan_chunks(g, set(), chunk_size=3)]
  [2, 2]
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd

from cmcd_theory import validation as V
from cmcd_theory.learn.pipeline import METHODS, TEACHER_METHODS, PipelineConfig
from cmcd_theory.worlds import CHANNELS, WorldConfig

STATIC_AXES = ("channel", "M", "m", "n", "method", "tau", "encoder")
#: static axes computed inside one program (not one program per value): methods and label counts
PROGRAM_AXES = ("method", "n")
VMAP_AXES = ("t", "seed")
GRID_AXES = STATIC_AXES + VMAP_AXES


def cell_config(world: WorldConfig, pipe: PipelineConfig, cell: dict):
    """The world and pipeline configs of one static combination of the grid."""
    wc = world.replace(channel=cell.get("channel", world.channel), t=0.0)
    changes = {k: cell[k] for k in ("M", "m", "n", "encoder") if k in cell}
    if "tau" in cell:
        changes["ssl"] = pipe.ssl.replace(tau=cell["tau"])
        changes["distill"] = pipe.distill.replace(tau=cell["tau"], tau_b=cell["tau"])
    return wc, pipe.replace(**changes)


def _defaults(world: WorldConfig, pipe: PipelineConfig) -> dict:
    return {
        "channel": world.channel,
        "M": pipe.M,
        "m": pipe.m,
        "n": pipe.n,
        "tau": pipe.distill.tau,
        "encoder": pipe.encoder,
        "t": world.t,
    }


def _unit(name: str, value) -> float:
    try:
        return V.unit_interval(name, value)
    except ValueError:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}") from None


def _positive_real(name, value):
    return V.real(name, value, lo=0.0, lo_open=True)


def _seed(name, value):
    return V.integer(name, value, lo=0)


def _round9(x) -> float:
    return round(float(x), 9)  # how :func:`_cell_id` tells two t (or tau) values apart


#: each grid axis's check of one value, and the key under which two values are the same cell
AXIS_CHECKS = {
    "channel": (lambda n, v: V.choice(n, v, CHANNELS), None),
    "M": (V.positive_int, None),
    "m": (V.positive_int, None),
    "n": (V.positive_int, None),
    "method": (lambda n, v: V.choice(n, v, METHODS), None),
    "tau": (_positive_real, _round9),
    "encoder": (lambda n, v: V.choice(n, v, ("linear", "mlp")), None),
    "t": (_unit, _round9),
    "seed": (_seed, None),
}


def grid_values(axis: str, values, name: str | None = None) -> tuple:
    """The values of one grid axis (or of ``seed``), checked as the command line and
    :func:`~cmcd_theory.sweeps.sweep.run_sweep` both check them: a non-empty set (no value
    twice, ``t`` and ``tau`` compared to 9 decimals as rows are) of valid values. ``name`` is
    the parameter named in an error (default ``axis``; the command line passes ``--t``, ...).

    Example:
      >>> grid_values("t", [0.0, 0.0])
      Traceback (most recent call last):
      ...
      ValueError: t must not repeat a value, got (0.0, 0.0)
    """
    check, key = AXIS_CHECKS[axis]
    name = name or axis
    return V.distinct(name, V.nonempty(name, values, check), key)


def _seed_list(seeds) -> list:
    """``seeds``: a count S >= 1 (seeds 0..S-1) or a non-empty list of distinct seeds >= 0."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(V.positive_int("seeds", seeds)))
    if isinstance(seeds, (str, bytes, bool)) or np.ndim(seeds) != 1:
        raise ValueError(f"seeds must be an integer >= 1 or a list of seeds, got {seeds!r}")
    return [int(s) for s in grid_values("seed", list(seeds), "seeds")]


def _normalise_grid(grid: dict, world: WorldConfig, pipe: PipelineConfig, seeds) -> dict:
    """The grid with every axis (missing ones at the base configs' values, ``method`` cmc) as
    a checked list (:func:`grid_values`), ``t`` and ``tau`` as floats, and ``seed``."""
    unknown = set(grid) - set(GRID_AXES) - {"seed"}
    if unknown:
        raise ValueError(f"grid axes must be among {GRID_AXES}, got unknown {sorted(unknown)}")
    if "seed" in grid:
        raise ValueError("grid axis 'seed' is given by seeds=, not in the grid")
    g = {k: [v] for k, v in _defaults(world, pipe).items()}
    g["method"] = ["cmc"]
    for k, v in grid.items():
        g[k] = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
    for k in STATIC_AXES + ("t",):
        g[k] = list(grid_values(k, g[k]))
    g["t"] = [float(t) for t in g["t"]]
    g["tau"] = [float(x) for x in g["tau"]]
    g["seed"] = _seed_list(seeds)
    return g


def _cell_id(row) -> tuple:
    return tuple(
        round(float(row[k]), 9)
        if k in ("t", "tau")
        else (int(row[k]) if k in ("M", "m", "n", "seed") else str(row[k]))
        for k in GRID_AXES
    )


def _in_grid(df: pd.DataFrame, g: dict) -> np.ndarray:
    """Which rows of ``df`` are cells of the grid ``g``."""
    keep = np.ones(len(df), bool)
    for k in GRID_AXES:
        if k in ("t", "tau"):
            keep &= np.round(df[k].astype(float), 9).isin([round(float(v), 9) for v in g[k]]).values
        elif k in ("M", "m", "n", "seed"):
            keep &= df[k].astype(int).isin([int(v) for v in g[k]]).values
        else:
            keep &= df[k].astype(str).isin([str(v) for v in g[k]]).values
    return keep


# ---- planning: which cells run together --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One unit of work: ``cells`` ((t, seed) pairs) of one static combination ``cell``, the
    rows ``wanted`` ((n, method) pairs) of each, run as one vmapped call of ``size`` cells (the
    last cell repeated as padding; all chunks of a program share ``size``, hence one compile)
    computing every method of ``methods`` at every label count of ``ns`` (a resumed sweep may
    compute a few more (n, method) pairs than it wants; they are dropped), with the stage-1
    teachers trained ``n_teachers`` seeds per vmapped call (0: no method needs one)."""

    cell: tuple  # ((axis, value), ...) for the static axes other than method and n
    wanted: tuple  # ((n, method), ...) rows of every cell
    cells: tuple  # ((t, seed), ...)
    size: int
    n_teachers: int

    @property
    def methods(self) -> tuple:
        return tuple(dict.fromkeys(m for _, m in self.wanted))

    @property
    def ns(self) -> tuple:
        return tuple(dict.fromkeys(n for n, _ in self.wanted))

    @property
    def n_rows(self) -> int:
        return len(self.cells) * len(self.wanted)


def chunk_plan(n_cells: int, chunk_size: int, min_chunks: int = 1) -> tuple[int, int]:
    """``(n_chunks, size)``: ``n_cells`` cells of one program in equal chunks of ``size`` <=
    ``chunk_size`` cells -- one shape, so one compile -- and at least ``min(min_chunks,
    n_cells)`` chunks (enough for every worker of a cluster); the last chunk is padded by
    repeating a cell (computed, then dropped), by fewer cells than there are chunks."""
    n_chunks = min(max(math.ceil(n_cells / chunk_size), min_chunks), n_cells)
    size = math.ceil(n_cells / n_chunks)
    return math.ceil(n_cells / size), size


def plan_chunks(g: dict, done: set, chunk_size: int, min_chunks: int = 1) -> list[Chunk]:
    """The chunks that compute every (cell, method, seed) of the normalised grid ``g`` whose
    :func:`_cell_id` is not in ``done``.

    One program per combination of the static axes other than the method and n
    (:data:`PROGRAM_AXES`): all methods at all label counts of a (t, seed) cell share its data,
    teacher features and label-free encoders
    (:func:`~cmcd_theory.learn.pipeline.run_downstream_ns`); (t, seed) cells missing different
    sets of (n, method) rows (a resumed sweep) go to different programs.
    """
    outer = [a for a in STATIC_AXES if a not in PROGRAM_AXES]
    chunks: list[Chunk] = []
    for combo in itertools.product(*(g[a] for a in outer)):
        cell = dict(zip(outer, combo))
        groups: dict = {}
        for t in g["t"]:
            for s in g["seed"]:
                missing = tuple(
                    (n, m)
                    for n in g["n"]
                    for m in g["method"]
                    if _cell_id({**cell, "n": n, "method": m, "t": t, "seed": s}) not in done
                )
                if missing:
                    groups.setdefault(missing, []).append((t, s))
        for wanted, cells in groups.items():
            n_chunks, size = chunk_plan(len(cells), chunk_size, min_chunks)
            n_teachers = (
                min(size, len({s for _, s in cells}))
                if any(m in TEACHER_METHODS for _, m in wanted)
                else 0
            )
            chunks.extend(
                Chunk(
                    tuple(cell.items()),
                    wanted,
                    tuple(cells[c * size : (c + 1) * size]),
                    size,
                    n_teachers,
                )
                for c in range(n_chunks)
            )
    return chunks
