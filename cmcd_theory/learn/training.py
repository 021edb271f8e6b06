"""The three CMCD stages as ``lax.scan`` training loops (docs/theory.md, O1-O4).

* stage 1, :func:`train_ssl`: InfoNCE (O1) on two views of M unlabeled source samples;
* stage 2, :func:`train_distill`: CMC (O2), CMD (O3) or L2 alignment (O4) of a target
  student to the frozen teacher's normalised features on m unlabeled pairs, optionally plus
  an auxiliary loss (the combined route's target InfoNCE, O5, :func:`ssl_batch_loss`);
* stage 3, :func:`fit_probe`: multinomial logistic regression on frozen normalised target
  features of the n labeled samples (re-exported from :mod:`cmcd_theory.learn.probe`);
* the supervised-only baseline, :func:`train_supervised`.

Every function is pure, takes an explicit PRNG key and runs under ``jit`` and ``vmap``
(the encoder and the config are static). Minibatches are drawn with replacement, so any data
size is allowed. The labeled target data never reach stages 1 and 2: those functions do not
take labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from cmcd_theory import validation as V
from cmcd_theory.learn import objectives
from cmcd_theory.learn.models import Encoder, normalize
from cmcd_theory.learn.probe import fit_probe, probe_error, probe_logits, probe_predict  # noqa: F401

DISTILL_METHODS = ("cmc", "cmd", "l2")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage (hashable: a static jit argument).

    Attributes:
      steps: optimiser steps.
      batch_size: pairs (or samples) per step; also the number N of softmax candidates.
      lr: Adam learning rate.
      tau: temperature of InfoNCE (O1) and CMC (O2).
      tau_a, tau_b: teacher and student temperatures of CMD (O3).
      weight_decay: decoupled weight decay (AdamW); 0 for plain Adam.
      queue_size: CMD queue of past teacher features (0: in-batch candidates only).
      student_features: ``"normalized"`` (the paper's practice) or ``"raw"`` (the
        unnormalised student feature, the form bound B4 covers) in the stage-2 loss.
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-2
    tau: float = 0.1
    tau_a: float = 0.05
    tau_b: float = 0.1
    weight_decay: float = 0.0
    queue_size: int = 0
    student_features: str = "normalized"

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            V.positive_int(name, getattr(self, name))
        for name in ("lr", "tau", "tau_a", "tau_b"):
            V.real(name, getattr(self, name), lo=0.0, lo_open=True)
        V.real("weight_decay", self.weight_decay, lo=0.0)
        V.integer("queue_size", self.queue_size, lo=0)
        V.choice("student_features", self.student_features, ("normalized", "raw"))

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _optimizer(cfg: TrainConfig):
    if cfg.weight_decay > 0:
        return optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)
    return optax.adam(cfg.lr)


def _scan_fit(key, params, loss_fn: Callable, n_data: int, cfg: TrainConfig, extra=None):
    """Minimise ``loss_fn(params, key, batch_index, extra) -> (loss, extra)`` by Adam.

    ``extra`` is carried state that is not optimised (the CMD queue). Returns the final
    params, the final extra state and the per-step losses (steps,).
    """
    opt = _optimizer(cfg)

    def step(carry, k):
        params, state, extra = carry
        k_idx, k_loss = jax.random.split(k)
        idx = jax.random.randint(k_idx, (cfg.batch_size,), 0, n_data)
        (loss, new_extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, k_loss, idx, extra
        )
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state, new_extra), loss

    keys = jax.random.split(key, cfg.steps)
    (params, _, extra), losses = jax.lax.scan(step, (params, opt.init(params), extra), keys)
    return params, extra, losses


def train_ssl(
    key: jax.Array,
    encoder: Encoder,
    x: jax.Array,
    augment: Callable[[jax.Array, jax.Array], tuple],
    cfg: TrainConfig,
):
    """Stage 1 (O1): InfoNCE on two augmented views of unlabeled samples.

    Args:
      key: PRNG key (initialisation, batches, views).
      encoder: the :class:`~cmcd_theory.learn.models.Encoder` to train.
      x: the M unlabeled samples, shape (M, ...), what ``augment`` takes.
      augment: ``(key, x_batch) -> (view1, view2)``, each (B, d_in).
      cfg: :class:`TrainConfig`.

    Returns:
      the trained encoder params.
    """
    k_init, k_fit = jax.random.split(key)

    def loss_fn(params, k, idx, extra):
        return ssl_batch_loss(encoder, params, k, x[idx], augment, cfg.tau), extra

    params, _, _ = _scan_fit(k_fit, encoder.init(k_init), loss_fn, x.shape[0], cfg)
    return params


def ssl_batch_loss(
    encoder: Encoder,
    params,
    key: jax.Array,
    batch: jax.Array,
    augment: Callable[[jax.Array, jax.Array], tuple],
    tau: float,
) -> jax.Array:
    """O1 on one batch: InfoNCE between the normalised features of two views of each row.

    The loss :func:`train_ssl` minimises, and the target term of the combined route
    ``cmc_ssl`` (O5, :func:`train_distill` with ``aux_loss``).
    """
    v1, v2 = augment(key, batch)
    u = normalize(encoder.apply(params, v1))
    v = normalize(encoder.apply(params, v2))
    return objectives.infonce(u, v, tau)


def student_features(student: Encoder, params, x_b: jax.Array, cfg: TrainConfig) -> jax.Array:
    """Student features as they enter the stage-2 loss (normalised or raw, per ``cfg``)."""
    u = student.apply(params, x_b)
    return normalize(u) if cfg.student_features == "normalized" else u


def distill_loss(method: str, z_b: jax.Array, z_a: jax.Array, cfg: TrainConfig, queue=None):
    """The stage-2 objective ``method`` in {cmc, cmd, l2} on a batch (O2, O3, O4)."""
    if method == "cmc":
        return objectives.cmc(z_b, z_a, cfg.tau)
    if method == "cmd":
        return objectives.cmd(z_b, z_a, cfg.tau_a, cfg.tau_b, queue=queue)
    if method == "l2":
        return objectives.l2_align(z_b, z_a)
    raise ValueError(f"method must be one of {DISTILL_METHODS}, got {method!r}")


def distill_per_anchor(method: str, z_b: jax.Array, z_a: jax.Array, cfg: TrainConfig) -> jax.Array:
    """Per-anchor stage-2 losses of one tuple, the quantity bound B4 is about, shape (N,).

    CMC: the B->A direction ``-log softmax_j(z_b^i . z_a^j / tau)_i``; CMD: the per-anchor
    cross-entropy (in-batch candidates); L2: ``norm(z_b^i - z_a^i)^2``.
    """
    if method == "cmc":
        return objectives.cmc_per_anchor(z_b, z_a, cfg.tau)
    if method == "cmd":
        return objectives.cmd_per_anchor(z_b, z_a, cfg.tau_a, cfg.tau_b)
    if method == "l2":
        return jnp.sum((z_b - z_a) ** 2, axis=-1)
    raise ValueError(f"method must be one of {DISTILL_METHODS}, got {method!r}")


def tuple_loss(method: str, z_b: jax.Array, z_a: jax.Array, cfg: TrainConfig, tuple_size: int):
    """Mean per-anchor loss over the disjoint tuples of ``tuple_size`` consecutive pairs.

    The first ``floor(m / N) N`` pairs are used (B4's ``n_t`` i.i.d. tuples).
    """
    m = z_b.shape[0]
    n_t = m // tuple_size
    if n_t < 1:
        raise ValueError(f"need at least tuple_size={tuple_size} pairs, got {m}")
    zb = z_b[: n_t * tuple_size].reshape(n_t, tuple_size, -1)
    za = z_a[: n_t * tuple_size].reshape(n_t, tuple_size, -1)
    return jnp.mean(jax.vmap(lambda b, a: distill_per_anchor(method, b, a, cfg))(zb, za))


def train_distill(
    key: jax.Array,
    student: Encoder,
    x_b: jax.Array,
    z_a: jax.Array,
    method: str,
    cfg: TrainConfig,
    aux_loss: Callable | None = None,
):
    """Stage 2: distil a target student from frozen teacher features on m unlabeled pairs.

    Args:
      key: PRNG key (initialisation, batches).
      student: the target :class:`~cmcd_theory.learn.models.Encoder`.
      x_b: target inputs of the pairs, (m, d_B).
      z_a: the frozen teacher's normalised features of the paired source inputs, (m, p).
      method: ``"cmc"`` (O2), ``"cmd"`` (O3) or ``"l2"`` (O4).
      cfg: :class:`TrainConfig` (``queue_size > 0`` adds a FIFO queue of teacher features
        to the CMD candidates).
      aux_loss: optional ``(params, key, batch_index) -> scalar`` added to the stage-2 loss of
        each step (the step's own key, unused by the stage-2 loss); the combined route
        ``cmc_ssl`` (O5) adds the target's weighted InfoNCE on views of the batch's pairs.
        ``None``: plain distillation.

    Returns:
      the trained student params.
    """
    if method not in DISTILL_METHODS:
        raise ValueError(f"method must be one of {DISTILL_METHODS}, got {method!r}")
    if x_b.shape[0] != z_a.shape[0]:
        raise ValueError(
            f"x_b and z_a must have the same number of pairs, got {x_b.shape[0]} and {z_a.shape[0]}"
        )
    z_a = jax.lax.stop_gradient(z_a)
    k_init, k_queue, k_fit = jax.random.split(key, 3)
    use_queue = method == "cmd" and cfg.queue_size > 0
    queue = (
        z_a[jax.random.randint(k_queue, (cfg.queue_size,), 0, z_a.shape[0])] if use_queue else None
    )

    def loss_fn(params, k, idx, queue):
        zb = student_features(student, params, x_b[idx], cfg)
        za = z_a[idx]
        loss = distill_loss(method, zb, za, cfg, queue)
        if aux_loss is not None:
            loss = loss + aux_loss(params, k, idx)
        if use_queue:
            queue = objectives.update_queue(queue, za)
        return loss, queue

    params, _, _ = _scan_fit(k_fit, student.init(k_init), loss_fn, x_b.shape[0], cfg, queue)
    return params


def train_supervised(
    key: jax.Array, encoder: Encoder, x: jax.Array, y: jax.Array, num_classes: int, cfg: TrainConfig
):
    """Supervised-only baseline: encoder and linear head trained jointly by cross-entropy
    on normalised features of the n labeled samples.

    Returns:
      ``(encoder_params, head)`` with head ``{"W": (K, p), "b": (K,)}`` (a probe).
    """
    k_enc, k_head, k_fit = jax.random.split(key, 3)
    head = {
        "W": 0.01 * jax.random.normal(k_head, (num_classes, encoder.d_out)),
        "b": jnp.zeros((num_classes,)),
    }

    def loss_fn(params, k, idx, extra):
        z = normalize(encoder.apply(params["enc"], x[idx]))
        logp = jax.nn.log_softmax(probe_logits(params["head"], z), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[idx][:, None], axis=-1)), extra

    params, _, _ = _scan_fit(
        k_fit, {"enc": encoder.init(k_enc), "head": head}, loss_fn, x.shape[0], cfg
    )
    return params["enc"], params["head"]
