"""Real paired data: does the learned modality distance track the target error? (UCI mfeat)

Source A is the pixel view of the UCI multiple-features digits; each of the five other views
(Fourier, profile correlations, Karhunen-Loeve, Zernike, morphological) is a target B in
turn. For every target view, number n of target labels and seed, six methods are run:

* ``cmd``, ``cmc``, ``l2``: the CMCD pipeline (docs/theory.md, O1-O4) with MLP encoders:
  stage 1 InfoNCE on M unlabeled source rows, stage 2 distillation on m unlabeled pairs,
  stage 3 a logistic-regression probe on n labeled target rows;
* ``discomkd``: DisCoM-KD (:mod:`cmcd_theory.learn.discomkd`) trained on the n labeled *pairs*
  (the labeled-pairs regime: the same n rows, with their source view), its target classifier;
* ``supervised``: encoder and head trained on the n labeled target rows only;
* ``target_ssl``: InfoNCE on the target halves of the m pairs, then the same probe.

Each row of ``results/mfeat.csv`` holds ``err_B`` (target test error on 500 held-out rows)
and, for the methods that align target features to source features, the modality distance
between the learned source and target features on held-out paired rows:

* ``tv_lower``: certified lower bound on TV (B1) from a held-out two-sample classifier,
  ``TV >= 2 acc - 1 - 2 sqrt(log(1/delta) / (2 n_test))`` with balanced held-out pairs;
* ``tv_estimate``: ``2 acc - 1`` of the same classifier, a point estimate with no guarantee.

The classifier is :func:`cmcd_theory.learn.divergences.two_sample_accuracy`, the one of
:func:`cmcd_theory.learn.divergences.tv_classifier_lower_bound`
(logistic regression on ``[1, z, z^2]``, half of the pairs to fit, half to test), run
batched under ``jit``/``vmap`` by :func:`classifier_tv`. It sees the features only, not the
labels: the TV of the feature marginals is at most the TV of the joint laws (z, y) that B1
uses, so the lower bound holds for B1's distance as well. Features compared: the teacher's
and the student's normalised features (CMCD); the normalised invariant parts of the source
and target encoders (DisCoM-KD: its full features are modality-separable by design, the
specific part being trained to predict the modality). ``supervised`` and ``target_ssl``
learn no source-aligned features: their distance columns are NaN.

Implementation notes: every stage runs as one ``jit(vmap(...))`` over views and seeds (and
n); target views are zero-padded to the source width (:func:`cmcd_theory.worlds.mfeat.pad_columns`)
and labeled sets tiled to a common length (:func:`cmcd_theory.worlds.mfeat.tile_rows`), two exact
transformations that let one compiled program serve every view and every n.

Run: ``python -m experiments.mfeat [--quick] [--seeds S] [--out results/mfeat.csv]
[--out-dir results] [--fig-dir figures]``; writes the CSV, a JSON of the configuration and
findings beside it, and ``figures/mfeat.png`` + ``.pdf``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cmcd_theory.learn import divergences
from cmcd_theory.learn.discomkd import (
    DiscomConfig,
    discomkd_features,
    discomkd_model,
    discomkd_predict,
    train_discomkd,
)
from cmcd_theory.learn.models import Encoder, mlp_encoder, normalize
from cmcd_theory.learn.probe import fit_probe, probe_error
from cmcd_theory.learn.training import TrainConfig, train_distill, train_ssl, train_supervised
from cmcd_theory.sweeps.devices import setup_jax
from cmcd_theory.worlds import mfeat
from experiments import common
from experiments.mfeat_figure import plot, rank_correlations

METHODS = ("cmd", "cmc", "l2", "discomkd", "supervised", "target_ssl")
DISTILL = ("cmd", "cmc", "l2")
COLUMNS = (
    "target_view",
    "d_view",
    "method",
    "n",
    "seed",
    "err_B",
    "tv_lower",
    "tv_estimate",
    "tv_acc",
    "tv_slack",
    "tv_n_test",
    "tv_features",
    "M",
    "m",
)
_TV_FEATURES = {
    "cmd": "normalised features",
    "cmc": "normalised features",
    "l2": "normalised features",
    "discomkd": "normalised invariant parts",
    "supervised": "",
    "target_ssl": "",
}


@dataclasses.dataclass(frozen=True)
class MfeatConfig:
    """Everything that defines one run of the experiment (saved as JSON beside the CSV).

    The augmentation strength and the stage-2 length were set once, on seed 0, from errors
    measured on validation rows (the source probe error for stage 1; the target probe error
    on the target halves of the stage-1 rows, which no method uses, for stage 2 with the
    ``fac`` target), never on test rows.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    ns: tuple[int, ...] = (20, 50, 100, 300)
    target_views: tuple[str, ...] = mfeat.TARGET_VIEWS
    ssl_per_class: int = 70  # M = 700 unlabeled source rows
    pairs_per_class: int = 50  # m = 500 unlabeled pairs
    labeled_per_class: int = 30  # n <= 300
    test_per_class: int = 50  # 500 test rows
    hidden: tuple[int, ...] = (256,)
    feature_dim: int = 32
    # stage-1 augmentation (mfeat.make_augment): Gaussian jitter of one training standard
    # deviation, then each feature masked to its mean with probability 1/2
    jitter: float = 1.0
    mask_prob: float = 0.5
    ssl: TrainConfig = TrainConfig(steps=300, batch_size=256, lr=1e-3, tau=0.1)
    # m = 500 pairs: stage 2 is kept short (about 75 epochs) because it overfits them
    distill: TrainConfig = TrainConfig(
        steps=150, batch_size=256, lr=1e-3, tau=0.1, tau_a=0.05, tau_b=0.1
    )
    supervised: TrainConfig = TrainConfig(steps=300, batch_size=128, lr=1e-3)
    discom: DiscomConfig = DiscomConfig(steps=300, batch_size=128, lr=1e-3)
    probe_l2: float = 1e-4
    probe_steps: int = 200
    tv_delta: float = 0.05
    tv_train_frac: float = 0.5
    tv_l2: float = 1e-4
    # XLA CPU compilation at optimisation level 0 for every program but stage 1: it compiles
    # several times faster and runs slower, the right trade for short runs, where
    # compilation dominates. Stage 1 keeps full optimisation: its augmentations draw many
    # random numbers, and unfused random-number generation is slow.
    fast_compile: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def quick_config(seeds: int = 2) -> MfeatConfig:
    """A smoke-test configuration: few steps, two n, ``seeds`` seeds (under a minute)."""
    return MfeatConfig(
        seeds=tuple(range(seeds)),
        ns=(20, 100),
        hidden=(64,),
        feature_dim=16,
        ssl=TrainConfig(steps=60, batch_size=128, lr=3e-3, tau=0.1),
        distill=TrainConfig(steps=60, batch_size=128, lr=3e-3, tau=0.1, tau_a=0.05, tau_b=0.1),
        supervised=TrainConfig(steps=60, batch_size=64, lr=3e-3),
        discom=DiscomConfig(steps=60, batch_size=64, lr=3e-3),
        probe_steps=50,
        fast_compile=True,
    )


# --------------------------------------------------------------------------------------
# Modality distance: the held-out two-sample classifier, batched
# --------------------------------------------------------------------------------------


def _jit(fun, fast_compile: bool = False):
    """``jax.jit``; with ``fast_compile`` on the CPU backend, XLA optimisation level 0."""
    if fast_compile and jax.default_backend() == "cpu":
        return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0})
    return jax.jit(fun)


def classifier_tv(
    keys,
    xp,
    xq,
    *,
    delta: float = 0.05,
    train_frac: float = 0.5,
    l2: float = 1e-4,
    fast_compile: bool = False,
) -> dict:
    r"""Certified TV lower bounds (B1) for a batch of sample pairs, one compiled program.

    For each batch element b, the classifier of
    :func:`cmcd_theory.learn.divergences.tv_classifier_lower_bound` is fitted on a
    ``train_frac`` share of the pairs ``(xp[b, i], xq[b, i])`` and its balanced accuracy
    measured on the ``n_test`` others; with probability ``>= 1 - delta`` (per element),

    .. math:: \mathrm{TV}(P, Q) \ge 2\,\widehat{acc} - 1 - 2\sqrt{\log(1/\delta)/(2 n_{test})}.

    Accuracies come from float32 JAX, the bound arithmetic is float64.

    Args:
      keys: PRNG keys ``(B,)``.
      xp, xq: samples ``(B, n, d)`` of P and Q (row i of both may be a coupled pair).
      delta: confidence level in (0, 1).
      train_frac: share of pairs used to fit the classifier.
      l2: ridge strength of the classifier.
      fast_compile: compile at XLA optimisation level 0 (CPU).

    Returns:
      dict of float64 arrays ``(B,)``: ``lower``, ``estimate`` (``2 acc - 1``), ``acc``,
      ``slack``, and the int ``n_test``.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if xp.shape != xq.shape or xp.ndim != 3:
        raise ValueError(
            f"xp and xq must have the same shape (B, n, d), got {xp.shape}, {xq.shape}"
        )
    n = xp.shape[1]
    n_test = n - int(round(train_frac * n))
    fn = _jit(
        jax.vmap(
            lambda k, p, q: divergences.two_sample_accuracy(k, p, q, train_frac=train_frac, l2=l2)
        ),
        fast_compile,
    )
    acc = np.asarray(
        fn(keys, jnp.asarray(xp, jnp.float32), jnp.asarray(xq, jnp.float32)), np.float64
    )
    slack = 2.0 * math.sqrt(math.log(1.0 / delta) / (2.0 * n_test))
    return {
        "lower": 2 * acc - 1 - slack,
        "estimate": 2 * acc - 1,
        "acc": acc,
        "slack": np.full_like(acc, slack),
        "n_test": n_test,
    }


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def _prepare(cfg: MfeatConfig) -> dict:
    """Per-seed splits, standardised, padded to the source width, stacked on (view, seed)."""
    width = mfeat.VIEWS[mfeat.SOURCE_VIEW]
    sizes = dict(
        ssl_per_class=cfg.ssl_per_class,
        pairs_per_class=cfg.pairs_per_class,
        labeled_per_class=cfg.labeled_per_class,
        test_per_class=cfg.test_per_class,
    )
    views = (mfeat.SOURCE_VIEW,) + tuple(cfg.target_views)
    out = {
        k: []
        for k in (
            "src_ssl",
            "src_pairs",
            "src_lab",
            "src_test",
            "tgt_pairs",
            "tgt_lab",
            "tgt_test",
            "y_lab",
            "y_test",
        )
    }
    for seed in cfg.seeds:
        data = mfeat.load_mfeat(seed, views, **sizes)
        s, xs = data.split, data.x
        src = xs[mfeat.SOURCE_VIEW]
        out["src_ssl"].append(src[s.ssl])
        out["src_pairs"].append(src[s.pairs])
        out["src_lab"].append(src[s.labeled])
        out["src_test"].append(src[s.test])
        out["tgt_pairs"].append(
            [mfeat.pad_columns(xs[v][s.pairs], width) for v in cfg.target_views]
        )
        out["tgt_lab"].append(
            [mfeat.pad_columns(xs[v][s.labeled], width) for v in cfg.target_views]
        )
        out["tgt_test"].append([mfeat.pad_columns(xs[v][s.test], width) for v in cfg.target_views])
        out["y_lab"].append(data.y[s.labeled])
        out["y_test"].append(data.y[s.test])
    arrays = {k: np.asarray(v) for k, v in out.items()}
    for k in ("tgt_pairs", "tgt_lab", "tgt_test"):  # (S, V, ...) -> (V, S, ...)
        arrays[k] = np.swapaxes(arrays[k], 0, 1)
    return arrays


def _check_finite(name: str, x) -> None:
    """Fail loudly on non-finite features: a diverged run must not become a table row."""
    x = np.asarray(x)
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            f"{name}: {np.mean(~np.isfinite(x)):.1%} of the entries are "
            "not finite (training diverged)"
        )


def _keys(seed: int, *path: int) -> jax.Array:
    key = jax.random.key(seed)
    for p in path:
        key = jax.random.fold_in(key, p)
    return key


def _key_grid(seeds, shape_prefix, stage: int) -> jax.Array:
    """Keys of shape ``shape_prefix + (S,)`` folded from (seed, stage, grid index)."""
    grid = np.indices(shape_prefix).reshape(len(shape_prefix), -1).T if shape_prefix else [()]
    keys = [_keys(seed, stage, *idx) for idx in grid for seed in seeds]
    return jnp.stack(keys).reshape(tuple(shape_prefix) + (len(seeds),))


# --------------------------------------------------------------------------------------
# The run: data, then one compiled program per stage
# --------------------------------------------------------------------------------------


def _flat(x, lead: int = 2):
    """Merge the ``lead`` leading axes (view, seed) into one."""
    return x.reshape((-1,) + x.shape[lead:])


def _per_view(z, V: int):
    """Teacher features ``(S, ...)`` broadcast over the V target views: ``(V S, ...)``."""
    return jnp.broadcast_to(z[None], (V,) + z.shape).reshape((-1,) + z.shape[1:])


@dataclasses.dataclass(frozen=True, eq=False)
class _Run:
    """What every stage of one run shares: the configuration, the data of :func:`_prepare`,
    the MLP encoder, its batched normalised features, and the labeled target rows tiled to
    ``n_max`` for every n (``tiles``: ``(Nn, n_max)`` row indices)."""

    cfg: MfeatConfig
    d: dict
    enc: Encoder
    features: Callable
    tiles: np.ndarray
    xb_lab: jax.Array  # (V S, n_max, w) target inputs of the labeled rows
    xb_test: jax.Array  # (V S, 500, w) target inputs of the test rows
    xb_tiled: jax.Array  # (V S, Nn, n_max, w) the labeled rows tiled per n
    y_tiled: jax.Array  # (V S, Nn, n_max)
    y_test: jax.Array  # (V S, 500)

    @property
    def V(self) -> int:
        return len(self.cfg.target_views)

    @property
    def S(self) -> int:
        return len(self.cfg.seeds)

    @property
    def Nn(self) -> int:
        return len(self.cfg.ns)

    def jit(self, fun):
        return _jit(fun, self.cfg.fast_compile)


def _setup(cfg: MfeatConfig, d: dict) -> _Run:
    """The shared encoder and the labeled rows tiled to ``n_max`` (``10 labeled_per_class``)."""
    V = len(cfg.target_views)
    n_max = 10 * cfg.labeled_per_class
    enc = mlp_encoder(mfeat.VIEWS[mfeat.SOURCE_VIEW], cfg.hidden, cfg.feature_dim)
    features = _jit(jax.vmap(lambda prm, x: normalize(enc.apply(prm, x))), cfg.fast_compile)
    tiles = np.stack([mfeat.tile_rows(n, n_max) for n in cfg.ns])  # (Nn, n_max)
    xb_lab = jnp.asarray(_flat(d["tgt_lab"]))
    y_lab = np.tile(d["y_lab"], (V, 1))  # (V S, n_max), seed-major within a view block
    return _Run(
        cfg=cfg,
        d=d,
        enc=enc,
        features=features,
        tiles=tiles,
        xb_lab=xb_lab,
        xb_test=jnp.asarray(_flat(d["tgt_test"])),
        xb_tiled=jnp.asarray(np.asarray(xb_lab)[:, tiles]),
        y_tiled=jnp.asarray(y_lab[:, tiles]),
        y_test=jnp.asarray(np.tile(d["y_test"], (V, 1))),
    )


def _stage1(r: _Run):
    """Stage 1 for the source (S teachers) and target SSL (V S encoders) in one program.

    Both row sets are tiled to a common length (uniform batches over the tiled array are
    uniform batches over the original rows). Compiled at full optimisation (see
    :class:`MfeatConfig`). Returns ``(teacher, target_ssl)`` params.
    """
    cfg, d, S = r.cfg, r.d, r.S
    m_rows, M_rows = d["src_pairs"].shape[1], d["src_ssl"].shape[1]
    L = math.lcm(M_rows, m_rows)
    x_ssl = np.concatenate(
        [
            d["src_ssl"][:, mfeat.tile_rows(M_rows, L)],
            _flat(d["tgt_pairs"])[:, mfeat.tile_rows(m_rows, L)],
        ]
    )
    k_ssl = jnp.concatenate(
        [_key_grid(cfg.seeds, (), 1).reshape(-1), _key_grid(cfg.seeds, (r.V,), 2).reshape(-1)]
    )
    augment = mfeat.make_augment(cfg.jitter, cfg.mask_prob)
    ssl_fn = jax.jit(jax.vmap(lambda k, x: train_ssl(k, r.enc, x, augment, cfg.ssl)))
    ssl_params = ssl_fn(k_ssl, jnp.asarray(x_ssl))
    del x_ssl
    jax.block_until_ready(ssl_params)
    return jax.tree.map(lambda a: a[:S], ssl_params), jax.tree.map(lambda a: a[S:], ssl_params)


def _stage2(r: _Run, teacher, tgt_ssl) -> tuple:
    """Stage 2: one program per distillation loss, vmapped over (view, seed).

    Returns ``(za_test, zb_lab, zb_test)``: the teacher's test features ``(V S, 500, p)`` and,
    per method (the three distilled students and target SSL), the normalised target features
    of the labeled and of the test rows.
    """
    d, V = r.d, r.V
    za_pairs = _per_view(r.features(teacher, jnp.asarray(d["src_pairs"])), V)
    za_test = _per_view(r.features(teacher, jnp.asarray(d["src_test"])), V)
    xb_pairs = jnp.asarray(_flat(d["tgt_pairs"]))
    zb_lab, zb_test = {}, {}
    for i, method in enumerate(DISTILL):
        fn = r.jit(
            jax.vmap(
                lambda k, xb, za, method=method: train_distill(
                    k, r.enc, xb, za, method, r.cfg.distill
                )
            )
        )
        student = fn(_key_grid(r.cfg.seeds, (V,), 3 + i).reshape(-1), xb_pairs, za_pairs)
        zb_lab[method], zb_test[method] = (
            r.features(student, r.xb_lab),
            r.features(student, r.xb_test),
        )
    zb_lab["target_ssl"] = r.features(tgt_ssl, r.xb_lab)
    zb_test["target_ssl"] = r.features(tgt_ssl, r.xb_test)
    _check_finite("teacher features", za_test)
    for name in zb_test:
        _check_finite(f"{name} target features", zb_test[name])
    return za_test, zb_lab, zb_test


def _stage3(r: _Run, zb_lab: dict, zb_test: dict) -> dict:
    """Stage 3: every probe (method, view, seed, n) in one program; ``{method: err_B}``,
    each ``(V S, Nn)``."""
    cfg = r.cfg
    probe_methods = DISTILL + ("target_ssl",)
    z_tiled = jnp.stack([zb_lab[m_][:, r.tiles] for m_ in probe_methods])  # (4, VS, Nn, n_max, p)
    probe_fn = r.jit(
        jax.vmap(
            jax.vmap(
                jax.vmap(
                    lambda z, y: fit_probe(z, y, mfeat.NUM_CLASSES, cfg.probe_l2, cfg.probe_steps)
                ),
                (0, 0),
            ),
            (0, None),
        )
    )
    probes = probe_fn(z_tiled, r.y_tiled)
    zt = jnp.stack([zb_test[m_] for m_ in probe_methods])  # (4, VS, 500, p)
    err_fn = r.jit(
        jax.vmap(jax.vmap(jax.vmap(probe_error, (0, None, None)), (0, 0, 0)), (0, 0, None))
    )
    return {m_: e for m_, e in zip(probe_methods, np.asarray(err_fn(probes, zt, r.y_test)))}


def _supervised(r: _Run) -> np.ndarray:
    """Supervised-only, encoder and head on the n labeled target rows: (view, seed, n) in one
    program; err_B ``(V S, Nn)``."""
    V, S, Nn = r.V, r.S, r.Nn
    k_sup = jnp.moveaxis(_key_grid(r.cfg.seeds, (V, Nn), 10), 2, 1).reshape(V * S, Nn)
    sup_fn = r.jit(
        jax.vmap(
            jax.vmap(
                lambda k, x, y: train_supervised(
                    k, r.enc, x, y, mfeat.NUM_CLASSES, r.cfg.supervised
                )
            )
        )
    )
    sup_enc, sup_head = sup_fn(k_sup, r.xb_tiled, r.y_tiled)
    sup_z = jax.vmap(r.features, (1, None), 1)(sup_enc, r.xb_test)  # (VS, Nn, 500, p)
    _check_finite("supervised target features", sup_z)
    return np.asarray(jax.vmap(jax.vmap(probe_error, (0, 0, None)))(sup_head, sup_z, r.y_test))


def _discomkd(r: _Run) -> tuple:
    """DisCoM-KD on the n labeled pairs: (view, seed, n) in one program. The invariant part
    has the width of the CMCD features (the specific part as much again).

    Returns ``(err_B, inv_a, inv_b)``: the target classifier's error ``(V S, Nn)`` and the
    normalised invariant parts of the source and target test rows ``(V S, Nn, 500, p)``.
    """
    cfg, d, V, S, Nn = r.cfg, r.d, r.V, r.S, r.Nn
    width = mfeat.VIEWS[mfeat.SOURCE_VIEW]
    model = discomkd_model([width, width], cfg.feature_dim, mfeat.NUM_CLASSES, hidden=cfg.hidden)
    xa_lab = np.tile(d["src_lab"], (V, 1, 1))[:, r.tiles]  # (VS, Nn, n_max, w)
    k_dis = jnp.moveaxis(_key_grid(cfg.seeds, (V, Nn), 11), 2, 1).reshape(V * S, Nn)
    dis_fn = r.jit(
        jax.vmap(
            jax.vmap(lambda k, xa, xb, y: train_discomkd(k, model, (xa, xb), y, cfg.discom)[0])
        )
    )
    dis_params = dis_fn(k_dis, jnp.asarray(xa_lab), r.xb_tiled, r.y_tiled)

    def dis_eval(prm, xa, xb, y):
        err = jnp.mean(discomkd_predict(prm, model, xb, 1) != y)
        inv_a = normalize(discomkd_features(prm, model, xa, 0)[0])
        inv_b = normalize(discomkd_features(prm, model, xb, 1)[0])
        return err, inv_a, inv_b

    xa_test = jnp.asarray(np.tile(d["src_test"], (V, 1, 1)))
    err_dis, inv_a, inv_b = r.jit(jax.vmap(jax.vmap(dis_eval, (0, None, None, None))))(
        dis_params, xa_test, r.xb_test, r.y_test
    )
    _check_finite("DisCoM-KD invariant parts", jnp.stack([inv_a, inv_b]))
    return np.asarray(err_dis), inv_a, inv_b


def _distances(r: _Run, za_test, zb_test: dict, inv_a, inv_b) -> dict:
    """Modality distance on held-out paired test rows, every aligned (method, view, seed, n),
    by :func:`classifier_tv`: the three students against the teacher (flat index
    ``method V S + vs``), then DisCoM-KD's invariant parts (``3 V S + vs Nn + j``)."""
    cfg, V, Nn = r.cfg, r.V, r.Nn
    tv_p = [za_test] * len(DISTILL) + [inv_a.reshape((-1,) + inv_a.shape[2:])]
    tv_q = [zb_test[m_] for m_ in DISTILL] + [inv_b.reshape((-1,) + inv_b.shape[2:])]
    tv_keys = jnp.concatenate(
        [_key_grid(cfg.seeds, (V,), 20 + i).reshape(-1) for i in range(len(DISTILL))]
        + [jnp.moveaxis(_key_grid(cfg.seeds, (V, Nn), 30), 2, 1).reshape(-1)]
    )
    return classifier_tv(
        tv_keys,
        jnp.concatenate(tv_p),
        jnp.concatenate(tv_q),
        delta=cfg.tv_delta,
        train_frac=cfg.tv_train_frac,
        l2=cfg.tv_l2,
        fast_compile=cfg.fast_compile,
    )


def _table(r: _Run, errs: dict, tv: dict, progress: bool) -> list[dict]:
    """One row per (target view, method, n, seed) cell, the columns of ``COLUMNS``."""
    from tqdm.auto import tqdm

    cfg, V, S, Nn = r.cfg, r.V, r.S, r.Nn
    m_rows, M_rows = r.d["src_pairs"].shape[1], r.d["src_ssl"].shape[1]

    def tv_at(flat_index):
        return {k: tv[k][flat_index] for k in ("lower", "estimate", "acc", "slack")}

    rows = []
    cells = [
        (v, method, j, si)
        for v in range(V)
        for method in METHODS
        for j in range(Nn)
        for si in range(S)
    ]
    for v, method, j, si in tqdm(cells, desc="mfeat cells", disable=not progress, leave=False):
        vs = v * S + si
        err = errs[method][vs, j]
        if method in DISTILL:
            t = tv_at(DISTILL.index(method) * V * S + vs)
        elif method == "discomkd":
            t = tv_at(len(DISTILL) * V * S + vs * Nn + j)
        else:
            t = {k: float("nan") for k in ("lower", "estimate", "acc", "slack")}
        view = cfg.target_views[v]
        rows.append(
            {
                "target_view": view,
                "d_view": mfeat.VIEWS[view],
                "method": method,
                "n": cfg.ns[j],
                "seed": cfg.seeds[si],
                "err_B": float(err),
                "tv_lower": float(t["lower"]),
                "tv_estimate": float(t["estimate"]),
                "tv_acc": float(t["acc"]),
                "tv_slack": float(t["slack"]),
                "tv_n_test": tv["n_test"] if method in DISTILL + ("discomkd",) else float("nan"),
                "tv_features": _TV_FEATURES[method],
                "M": M_rows,
                "m": m_rows,
            }
        )
    return rows


class _Stages:
    """The stage progress bar and the seconds each stage took (``df.attrs``)."""

    def __init__(self, total: int, progress: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="mfeat stages", disable=not progress, leave=False)
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 2)
        self.clock = now
        self.bar.set_postfix_str(name)
        self.bar.update()


def run(cfg: MfeatConfig, progress: bool = True) -> pd.DataFrame:
    """Run every (target view, method, n, seed) cell; return the tidy table (COLUMNS).

    The data of every (view, seed); stage 1 (source teachers and target SSL); stage 2 (CMD,
    CMC, L2 students); stage 3 (the probes of every label-free route at every n); the
    supervised and DisCoM-KD routes at every n; the modality distance of every aligned
    route; the table. ``df.attrs["stage_seconds"]`` holds each stage's seconds.
    """
    n_max = 10 * cfg.labeled_per_class
    for n in cfg.ns:
        mfeat.tile_rows(n, n_max)  # checks that n divides n_max
    stages = _Stages(8, progress)
    r = _setup(cfg, _prepare(cfg))
    stages.done("data")
    teacher, tgt_ssl = _stage1(r)
    stages.done("stage 1 (source + target SSL)")
    za_test, zb_lab, zb_test = _stage2(r, teacher, tgt_ssl)
    stages.done("stage 2 (CMD, CMC, L2)")
    errs = _stage3(r, zb_lab, zb_test)
    stages.done("stage 3 probes")
    errs["supervised"] = _supervised(r)
    stages.done("supervised")
    errs["discomkd"], inv_a, inv_b = _discomkd(r)
    stages.done("DisCoM-KD")
    tv = _distances(r, za_test, zb_test, inv_a, inv_b)
    stages.done("modality distance")
    rows = _table(r, errs, tv, progress)
    stages.done("table")
    stages.bar.close()
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs["stage_seconds"] = stages.timings
    return df


def main(argv=None) -> pd.DataFrame:
    """Run the experiment, write the CSV, its JSON config and the figure; return the table.

    Args:
      argv: command-line arguments (``None``: ``sys.argv[1:]``): ``--quick``, ``--seeds S``
        (default 2 quick, 5 full), ``--out CSV`` (default ``<out-dir>/mfeat.csv``),
        ``--out-dir`` (default ``results``), ``--fig-dir`` (default ``figures``: writes
        ``mfeat.png`` and ``mfeat.pdf`` there), ``--no-progress``.

    Returns:
      the tidy table, one row per (target_view, method, n, seed), columns ``COLUMNS``.
    """

    def extra(parser):
        parser.add_argument(
            "--out",
            type=pathlib.Path,
            default=None,
            help="CSV path (default <out-dir>/mfeat.csv); the JSON goes beside it",
        )

    args = common.parse_args(
        argv,
        __doc__.splitlines()[0],
        default_seeds=(2, len(MfeatConfig().seeds)),
        prog="python -m experiments.mfeat",
        extra=extra,
        epilog=__doc__.split("\n", 1)[1] + "\n" + common.OUTPUTS + common.NO_RESUME,
    )
    cfg = quick_config(args.seeds) if args.quick else MfeatConfig(seeds=tuple(range(args.seeds)))
    out = args.out or pathlib.Path(args.out_dir) / "mfeat.csv"
    stem = pathlib.Path(args.fig_dir) / "mfeat"

    t0 = time.perf_counter()
    start = common.compilation_counts()
    df = run(cfg, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    rho = rank_correlations(df, DISTILL + ("discomkd",))
    n_max = int(df["n"].max())
    err_at_n_max = {
        view: {method: common.fmt_ci(g["err_B"]) for method, g in gv.groupby("method", sort=False)}
        for view, gv in df[df["n"] == n_max].groupby("target_view", sort=False)
    }
    meta = {
        "experiment": "mfeat",
        "quick": args.quick,
        "seeds": len(cfg.seeds),
        "config": cfg.to_json(),
        "findings": {
            "rank_correlation_tv_estimate_vs_err_B": rho,
            f"err_B_at_n={n_max} (mean +- 95% half-width)": err_at_n_max,
        },
        "wall_time_s": round(wall, 1),
        "compilation": common.compilation_since(start),
        "stage_seconds": df.attrs.get("stage_seconds", {}),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    out.with_suffix(".json").write_text(json.dumps(common._jsonable(meta), indent=2, default=str))
    plot(df, stem, METHODS, DISTILL + ("discomkd",))
    print(
        f"wrote {out} ({len(df)} rows), {out.with_suffix('.json')}, "
        f"{stem.with_suffix('.png')}, {stem.with_suffix('.pdf')} in {wall:.1f} s"
    )
    for method, r in rho.items():
        print(f"  Spearman(tv_estimate, err_B) across views, {method}: {r['rho']:+.2f}")
    return df


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
