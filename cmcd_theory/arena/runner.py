"""Run the arena on drawn worlds: the routes of every cell, its phase, its evidence and every
predictor's call, as one tidy cell table (docs/theory.md, P6-P7).

For each :class:`~cmcd_theory.arena.prior.WorldDraw`, :func:`run_world` runs the CMCD routes
and the target-only routes on the same data with
:func:`~cmcd_theory.sweeps.sweep.run_sweep` (the t and seed axes vmapped, every n and method in
one program) and records per row, through the sweep's postprocess :class:`EvidenceRecorder`,
the training-only evidence: the probe certificate (``probe_total``, B6) and the Gaussian feature
mutual informations (:mod:`cmcd_theory.arena.mi`). :func:`cells_of_world` turns the rows into
cells (:func:`~cmcd_theory.arena.scoring.cell_gains`) with the world's ground truth (including
the latent mutual informations of :func:`cmcd_theory.worlds.latent_mutual_information`), the
budget and the evidence; :func:`run_arena` does it for every draw and adds every predictor's
call (:func:`~cmcd_theory.arena.scoring.predict_cells`).
"""

from __future__ import annotations

import functools
import json
import math
import types
from collections.abc import Sequence
from typing import Any, cast

import jax
import numpy as np
import pandas as pd

from cmcd_theory import worlds
from cmcd_theory.arena.mi import gaussian_mi, label_mi
from cmcd_theory.arena.predictors import BUILTIN, Budget, Predictor
from cmcd_theory.arena.prior import WorldDraw
from cmcd_theory.arena.scoring import cell_gains, predict_cells
from cmcd_theory.certify import certify
from cmcd_theory.learn.models import normalize
from cmcd_theory.learn.pipeline import METHODS, PipelineConfig, encoders
from cmcd_theory.learn.training import TrainConfig
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep

#: the CMCD routes scored (CMC, CMD, and CMC with the target's own InfoNCE on the same encoder)
CMCD_ROUTES = ("cmc", "cmd", "cmc_ssl")
#: the target-only routes a CMCD route is compared with (the better one by mean, per cell)
TARGET_ONLY = ("supervised", "target_ssl")
#: confidence of the probe certificate and its Monte Carlo weight draws (B3)
CERTIFICATE: dict[str, Any] = {"delta": 0.05, "delta_test": 0.05, "n_weight_samples": 200}
#: Monte Carlo draws of the latent mutual informations (per (world, t))
LATENT_MI_DRAWS = 200_000
#: the evidence columns :class:`EvidenceRecorder` adds to every sweep row
ROW_EVIDENCE = ("probe_total", "mi_features_AB", "mi_features_By", "mi_pre_By")


def arena_pipeline(quick: bool = False) -> PipelineConfig:
    """The arena's training budget, fixed before any scored run.

    Full runs use the budget of the toolkit's phase map (``experiments.when_distillation_pays``):
    :func:`~cmcd_theory.sweeps.sweep.quick_pipeline` with MLP encoders (M = 2048 source
    samples, 200 optimiser steps per stage, batches of 256, a 20000-row test set), so that the
    arena's routes are trained as the one-phase map's were; m is set per draw by the prior.
    ``quick`` shrinks it (M = 1024, 100 steps, batches of 128, 4000 test rows) for smoke runs.
    """
    if not quick:
        return quick_pipeline(PipelineConfig(encoder="mlp"))
    steps = 100
    return PipelineConfig(
        M=1024,
        m=512,
        n=64,
        encoder="mlp",
        n_test=4000,
        n_pop=1024,
        probe_steps=steps,
        tuple_size=128,
        ssl=TrainConfig(steps=steps, batch_size=128, lr=1e-2, tau=0.1),
        distill=TrainConfig(steps=steps, batch_size=128, lr=1e-2, tau=0.1),
        supervised=TrainConfig(steps=steps, batch_size=64, lr=1e-2),
    )


def check_routes(cmcd: Sequence[str], target_only: Sequence[str]) -> tuple[tuple, tuple]:
    """The routes as tuples, each a method of the pipeline, the two sets disjoint."""
    cmcd, target_only = tuple(cmcd), tuple(target_only)
    for m in cmcd + target_only:
        if m not in METHODS:
            raise ValueError(f"route {m!r} is not a pipeline method; methods: {METHODS}")
    if not cmcd or not target_only or set(cmcd) & set(target_only):
        raise ValueError(
            f"need disjoint non-empty CMCD and target-only routes, got {cmcd}, {target_only}"
        )
    return cmcd, target_only


# ---- per row: the training-only evidence ------------------------------------------------------


def target_features(world, cfg: PipelineConfig, params, x_b) -> np.ndarray:
    """Normalised features of the target encoder ``params`` on inputs ``x_b`` (what a probe
    sees)."""
    _, enc_b = encoders(world, cfg)
    return np.asarray(normalize(enc_b.apply(params, x_b)))


class EvidenceRecorder:
    """The sweep postprocess of the arena: :data:`ROW_EVIDENCE` of every row, from training
    arrays only, and the pre-distillation ``I(Z_A; Z_B)`` of every (t, seed).

    Per row: ``probe_total``, the probe certificate (:func:`cmcd_theory.certify.certify`, part
    ``"probe"``, at :data:`CERTIFICATE`: min of B2 and B3 at a split delta, B6) on the n labeled
    training samples (NaN for the supervised route, whose features saw the labels); for a
    distillation route, ``mi_features_AB`` (:func:`~cmcd_theory.arena.mi.gaussian_mi` of the
    teacher's features of the m pairs and the student's features of their x_B) and
    ``mi_features_By`` (:func:`~cmcd_theory.arena.mi.label_mi` of the student's features of the
    n labeled samples); for target SSL, ``mi_pre_By`` (the same with its encoder).

    Across rows: the target SSL encoder and a distillation route's stage-2 arrays of one
    (t, seed) see the same pairs (one seed's data are shared by every route), so once both
    have been seen :attr:`pre_AB` ``[(t, seed)]`` holds ``I(Z_A; Z_B)`` with Z_B the target SSL
    features (order-free). The recorder keeps state, so the sweep runs in this process.
    """

    def __init__(self) -> None:
        self.pre_AB: dict = {}
        self._pairs: dict = {}
        self._ssl: dict = {}
        self._student_AB: dict = {}

    def __call__(self, world, cfg, method, t, seed, row, arts) -> dict:
        out = dict.fromkeys(ROW_EVIDENCE, math.nan)
        if method != "supervised":
            wide = certify(world, cfg, method, t, seed, row, arts, parts=("probe",), **CERTIFICATE)[
                "wide"
            ]
            out["probe_total"] = float(wide["probe_total"])
        key = (float(t), int(seed))
        stage2 = arts.get("stage2")
        distilled = arts.get("teacher") is not None and arts.get("student") is not None
        if distilled and stage2 is not None:
            self._pairs.setdefault(key, (np.asarray(stage2["x_B"]), np.asarray(stage2["z_A"])))
            if (method, key) not in self._student_AB:
                z_b = target_features(world, cfg, arts["student"], stage2["x_B"])
                self._student_AB[(method, key)] = gaussian_mi(np.asarray(stage2["z_A"]), z_b)
            out["mi_features_AB"] = self._student_AB[(method, key)]
            out["mi_features_By"] = label_mi(
                np.asarray(arts["z_train"]), np.asarray(arts["y_train"])
            )
        if method == "target_ssl":
            self._ssl.setdefault(key, arts["student"])
            out["mi_pre_By"] = label_mi(np.asarray(arts["z_train"]), np.asarray(arts["y_train"]))
        if key in self._pairs and key in self._ssl and key not in self.pre_AB:
            x_b, z_a = self._pairs[key]
            self.pre_AB[key] = gaussian_mi(z_a, target_features(world, cfg, self._ssl[key], x_b))
        return out


# ---- per world: rows, then cells -----------------------------------------------------------


def run_world(
    draw: WorldDraw,
    *,
    pipeline: PipelineConfig,
    seeds: int,
    methods: Sequence[str],
    progress: bool = False,
) -> pd.DataFrame:
    """The sweep rows of one draw: every method at every (t, n) of its grid, seeds
    ``0..seeds-1``, with the :class:`EvidenceRecorder` columns and ``mi_pre_AB`` (NaN where the
    routes give none); column ``draw`` added."""
    grid = {"t": list(draw.t_grid), "n": list(draw.n_grid), "method": list(methods)}
    recorder = EvidenceRecorder()
    df = run_sweep(
        grid,
        world=draw.config(),
        pipeline=pipeline.replace(m=draw.m),
        seeds=seeds,
        postprocess=recorder,
        progress=progress,
    )
    df["mi_pre_AB"] = [
        recorder.pre_AB.get((float(t), int(s)), math.nan) for t, s in zip(df["t"], df["seed"])
    ]
    df.insert(0, "draw", draw.index)
    return df


@functools.lru_cache(maxsize=256)
def param_counts(config: worlds.WorldConfig, cfg: PipelineConfig) -> tuple[int, int]:
    """Trained parameters of the source and target encoders of a run (shapes only; the
    encoders depend on the world's config alone, so no observation map is drawn)."""
    # encoders() reads only world.config: a stand-in carrying the config is enough
    enc_a, enc_b = encoders(cast(worlds.World, types.SimpleNamespace(config=config)), cfg)
    key = jax.random.key(0)

    def count(enc) -> int:
        shapes = jax.tree_util.tree_leaves(jax.eval_shape(enc.init, key))
        return sum(int(np.prod(x.shape)) for x in shapes)

    return count(enc_a), count(enc_b)


def latent_mi(config: worlds.WorldConfig, t: float) -> dict:
    """``mi_AB``, ``mi_AB_half``, ``mi_By``, ``mi_By_half`` (nats, 95 % half-widths) of the world
    at target knob t (:func:`cmcd_theory.worlds.latent_mutual_information`, Monte Carlo with
    the true densities); NaN where the worlds package states none."""
    fn = getattr(worlds, "latent_mutual_information", None)
    if fn is None:
        return dict.fromkeys(("mi_AB", "mi_AB_half", "mi_By", "mi_By_half"), math.nan)
    r = fn(config, t, n=LATENT_MI_DRAWS, seed=0)
    return {
        "mi_AB": float(r.mi_AB),
        "mi_AB_half": float(r.mi_AB_half),
        "mi_By": float(r.mi_By),
        "mi_By_half": float(r.mi_By_half),
    }


def _world_columns(draw: WorldDraw) -> dict:
    w = draw.config()
    return {
        "channel": w.channel,
        "num_classes_K": w.num_classes,
        "latent_dim_k": w.latent_dim,
        "separation": w.separation,
        "sigma": w.sigma,
        "target_axes": w.n_attenuated,
        "source_t": w.source_t,
        "source_axes": str(list(w.source_axis_indices())),
        "nuisance_dim": w.nuisance_dim,
        "nuisance_scale": w.nuisance_scale,
        "nuisance_rho": w.nuisance_rho,
    }


def _evidence(rows: pd.DataFrame, t: float, n: int, method: str) -> dict:
    """Means over seeds of the training-only evidence at (t, n): ``method``'s certificate and
    feature MIs, target SSL's certificate and pre-distillation MIs."""
    at = rows[(rows["t"] == t) & (rows["n"] == n)]
    mine = at[at["method"] == method]
    tssl = at[at["method"] == "target_ssl"]

    def mean(g, col):
        return float(g[col].mean()) if len(g) else math.nan

    return {
        "certificate_route": mean(mine, "probe_total"),
        "certificate_target": mean(tssl, "probe_total"),
        "mi_features_AB": mean(mine, "mi_features_AB"),
        "mi_features_By": mean(mine, "mi_features_By"),
        "mi_pre_AB": mean(tssl, "mi_pre_AB"),
        "mi_pre_By": mean(tssl, "mi_pre_By"),
    }


def cells_of_world(
    draw: WorldDraw,
    rows: pd.DataFrame,
    *,
    pipeline: PipelineConfig,
    cmcd: Sequence[str],
    target_only: Sequence[str],
) -> pd.DataFrame:
    """The cells of one draw: :func:`~cmcd_theory.arena.scoring.cell_gains` with, per cell,
    the world (``world_config`` JSON at the cell's t, and descriptive columns), the budget
    (:class:`~cmcd_theory.arena.predictors.Budget`), the ground truth (``tv_latent``,
    ``bayes_A``, ``bayes_B`` from the rows; ``mi_AB``, ``mi_By`` with half-widths from
    :func:`latent_mi`) and the evidence (:func:`_evidence`)."""
    wc, pc = draw.config(), pipeline.replace(m=draw.m)
    p = pc.feature_dim or wc.latent_dim
    params_a, params_b = param_counts(wc, pc)
    truth = {
        t: {
            **rows.loc[rows["t"] == t, ["tv_latent", "bayes_A", "bayes_B"]].iloc[0].to_dict(),
            **latent_mi(wc, t),
        }
        for t in draw.t_grid
    }
    gains = cell_gains(rows, cmcd=cmcd, target_only=target_only, keys=("draw", "t", "n"))
    out = []
    for g in gains.to_dict("records"):
        t, n = g["t"], int(g["n"])
        budget = Budget(
            M=pc.M,
            m=pc.m,
            n=n,
            num_classes=wc.num_classes,
            feature_dim=p,
            params_A=params_a,
            params_B=params_b,
            params_probe=wc.num_classes * (p + 1),
        )
        out.append(
            {
                **g,
                **_world_columns(draw),
                **truth[t],
                **budget._asdict(),
                **_evidence(rows, t, n, g["method"]),
                "world_config": json.dumps(wc.replace(t=t).as_dict(), sort_keys=True),
            }
        )
    return pd.DataFrame(out)


def run_arena(
    draws: Sequence[WorldDraw],
    *,
    seeds: int = 5,
    pipeline: PipelineConfig | None = None,
    cmcd: Sequence[str] = CMCD_ROUTES,
    target_only: Sequence[str] = TARGET_ONLY,
    predictors: Sequence[Predictor] = BUILTIN,
    progress: bool = False,
) -> pd.DataFrame:
    """Run every draw and return the tidy cell table (one row per (draw, t, n, CMCD route))
    with every predictor's ``call_<name>`` and ``margin_<name>``.

    Args:
      draws: worlds with their grids (:func:`~cmcd_theory.arena.prior.draw_worlds`).
      seeds: seeds per cell (>= 2 for a phase; the arena's runs use >= 5).
      pipeline: the training budget (default :func:`arena_pipeline`); m comes from each draw.
      cmcd, target_only: the routes compared (pipeline methods).
      predictors: scored on every cell (:mod:`cmcd_theory.arena.predictors`).
      progress: the sweep's progress bar and summary line.
    """
    cmcd, target_only = check_routes(cmcd, target_only)
    pipeline = arena_pipeline() if pipeline is None else pipeline
    methods = cmcd + target_only
    cells = []
    for draw in draws:
        rows = run_world(draw, pipeline=pipeline, seeds=seeds, methods=methods, progress=progress)
        cells.append(
            cells_of_world(draw, rows, pipeline=pipeline, cmcd=cmcd, target_only=target_only)
        )
    return predict_cells(predictors, pd.concat(cells, ignore_index=True))
