"""DisCoM-KD: cross-modal distillation by disentanglement and adversarial alignment.

The comparator of docs/theory.md, section O (DisCoM-KD paragraph), after Ienco and Dantas
(2024). It needs *labeled pairs*: every training row carries the observations of all M
modalities and one class label; every single-modal classifier is trained at once, with no
teacher/student stages. At test time the classifier of one modality (the target B) is used
alone.

Model, for modalities ``v = 0, ..., M-1`` (``v = 0`` the source A, ``v = 1`` the target B in
the experiments):

* an encoder ``u_v = phi_v(x_v)`` of width ``2 q`` whose feature splits into a
  modality-invariant part ``a_v = u_v[:q]`` and a modality-specific part ``s_v = u_v[q:]``;
* a label classifier per modality, affine on the whole feature: ``h_v(u_v) = C_v u_v + c_v``;
* one auxiliary label classifier ``H`` (affine) shared by all modalities on the invariant
  parts, so that the invariant part carries the class in the same coordinates for every
  modality (what lets the label knowledge of one modality serve another);
* one modality discriminator ``D`` (an MLP on ``a_v``, shared by all modalities) reached
  through a gradient-reversal layer: ``D`` learns to tell the modality from ``a_v`` while the
  encoders receive the reversed gradient and learn to hide it;
* one modality classifier ``G`` (affine on ``s_v``) that keeps the modality in ``s_v``.

Objective on a batch of N labeled M-tuples (log-sum-exp in every cross-entropy),

.. math::

   L = \\sum_v \\mathrm{CE}(h_v(u_v), y)
       + w_{aux}\\,\\sum_v \\mathrm{CE}(H(a_v), y)
       + w_{adv}\\,\\frac1M\\sum_v \\mathrm{CE}(D(R_\\lambda(a_v)), v)
       + w_{mod}\\,\\frac1M\\sum_v \\mathrm{CE}(G(s_v), v)
       + w_{\\perp}\\,\\frac1M\\sum_v \\frac1N\\sum_i \\cos^2(a_v^i, s_v^i),

each CE a mean over the batch and ``R_lambda`` the gradient reversal (identity forward,
``-lambda`` times the gradient backward). The disentanglement penalty is the squared cosine
between the invariant and specific parts of the same sample: it is scale-free, lies in
``[0, 1]`` and vanishes exactly when the two parts are orthogonal.

Departure from the paper, kept deliberately small: the paper splits each feature into three
parts (modality-invariant, modality-informative and modality-irrelevant, each pair kept
orthogonal); here, as docs/theory.md states it, there are two parts, invariant and specific.
The paper's loss has task, adversarial, modality, auxiliary and orthogonality terms; the
auxiliary term here (a label classifier shared by the modalities on the invariant parts) is
this toolkit's reading of it, and ``w_aux = 0`` removes it.

References:
  Ienco and Dantas, `DisCoM-KD: Cross-Modal Knowledge Distillation via Disentanglement
  Representation and Adversarial Learning <https://arxiv.org/abs/2408.07080>`_, 2024.
  Ganin and Lempitsky, `Unsupervised Domain Adaptation by Backpropagation
  <https://arxiv.org/abs/1409.7495>`_, ICML 2015 (the gradient-reversal layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cmcd_theory import validation as V
from cmcd_theory.learn.models import Encoder, linear_encoder, mlp_encoder

__all__ = [
    "gradient_reversal",
    "label_cross_entropy",
    "modality_cross_entropy",
    "orthogonality_loss",
    "DiscomModel",
    "discomkd_model",
    "init_discomkd",
    "split_features",
    "discomkd_features",
    "discomkd_logits",
    "discomkd_predict",
    "discomkd_loss",
    "DiscomConfig",
    "train_discomkd",
]

Params = Any


# --------------------------------------------------------------------------------------
# Gradient reversal
# --------------------------------------------------------------------------------------


@jax.custom_vjp
def gradient_reversal(x: jax.Array, lam) -> jax.Array:
    r"""Gradient-reversal layer :math:`R_\lambda`: identity forward, :math:`-\lambda g` backward.

    .. math:: R_\lambda(x) = x, \qquad \frac{\partial R_\lambda(x)}{\partial x} = -\lambda I.

    Placed between a feature and an adversary, it lets one optimiser step minimise the
    adversary's loss in the adversary's parameters and maximise it (scaled by ``lambda``) in
    the feature extractor's. No gradient flows to ``lam``.

    Args:
      x: any array (or pytree leaf) of floats.
      lam: reversal strength ``lambda >= 0``, a scalar (may be traced).

    Returns:
      ``x`` unchanged.

    Example:
      >>> g = jax.grad(lambda x: jnp.sum(gradient_reversal(x, 0.5) ** 2))(jnp.ones(2))
      >>> g.tolist()
      [-1.0, -1.0]

    References:
      Ganin and Lempitsky, `Unsupervised Domain Adaptation by Backpropagation
      <https://arxiv.org/abs/1409.7495>`_, ICML 2015.
    """
    return x


def _grl_fwd(x, lam):
    return x, lam


def _grl_bwd(lam, g):
    return (-lam * g).astype(g.dtype), jnp.zeros_like(lam)


gradient_reversal.defvjp(_grl_fwd, _grl_bwd)


# --------------------------------------------------------------------------------------
# Loss terms (pure functions of arrays)
# --------------------------------------------------------------------------------------


def _check_logits(name: str, logits: jax.Array, ndim: int) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim != ndim or logits.shape[-1] < 2:
        raise ValueError(
            f"{name} must have {ndim} dimensions with >= 2 classes on the last axis, "
            f"got shape {logits.shape}"
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {logits.dtype}")
    return logits


def label_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Summed per-modality label cross-entropy :math:`\sum_v \mathrm{CE}(h_v(u_v), y)`.

    .. math:: L_{cls} = \sum_{v=1}^{M} \frac1N \sum_{i=1}^N
              \Big[\log\sum_c e^{\ell_{v i c}} - \ell_{v i y_i}\Big]

    Every single-modal classifier is trained on the same labels; each log-softmax is a
    log-sum-exp.

    Args:
      logits: ``(M, N, K)`` scores of the M single-modal classifiers.
      labels: ``(N,)`` integer labels in ``[0, K)``, shared by the M modalities of a row.

    Returns:
      scalar ``L_cls``.

    Example:
      >>> float(label_cross_entropy(jnp.zeros((2, 3, 4)), jnp.array([0, 1, 2])))  # 2 log 4
      2.772588...
    """
    logits = _check_logits("logits", logits, 3)
    labels = jnp.asarray(labels)
    if labels.shape != logits.shape[1:2]:
        raise ValueError(f"labels must have shape ({logits.shape[1]},), got {labels.shape}")
    logp = jax.nn.log_softmax(logits, axis=-1)  # log-sum-exp: no overflow for large scores
    picked = jnp.take_along_axis(logp, labels[None, :, None].astype(jnp.int32), axis=-1)
    return -jnp.sum(jnp.mean(picked[..., 0], axis=1))


def modality_cross_entropy(logits: jax.Array) -> jax.Array:
    r"""Mean cross-entropy of a modality predictor; row block ``v`` has target ``v``.

    .. math:: L = \frac1M \sum_{v=1}^{M} \frac1N \sum_{i=1}^N
              \Big[\log\sum_{w=1}^M e^{\ell_{v i w}} - \ell_{v i v}\Big]

    Used twice: for the adversarial discriminator on the invariant parts (behind
    :func:`gradient_reversal`) and for the modality classifier on the specific parts.

    Args:
      logits: ``(M, N, M)``: ``logits[v, i]`` scores the M modalities for sample i of
        modality v.

    Returns:
      scalar loss; ``log M`` for constant logits.

    Example:
      >>> float(modality_cross_entropy(jnp.zeros((2, 5, 2))))  # log 2
      0.693147...
    """
    logits = _check_logits("logits", logits, 3)
    m = logits.shape[0]
    if logits.shape[-1] != m:
        raise ValueError(f"logits must have shape (M, N, M), got {logits.shape}")
    logp = jax.nn.log_softmax(logits, axis=-1)  # log-sum-exp
    own = jnp.diagonal(logp, axis1=0, axis2=2)  # (N, M): logp[v, i, v]
    return -jnp.mean(own)


def orthogonality_loss(inv: jax.Array, spec: jax.Array, eps: float = 1e-12) -> jax.Array:
    r"""Disentanglement penalty: mean squared cosine between invariant and specific parts.

    .. math:: L_\perp = \frac1{MN}\sum_{v,i}
              \frac{(a_v^i \cdot s_v^i)^2}{\max(\|a_v^i\|^2\|s_v^i\|^2, \epsilon)}

    In ``[0, 1]``, invariant to the scale of either part, zero iff every pair is orthogonal.

    Args:
      inv: invariant parts ``(..., q)``.
      spec: specific parts of the same samples, same shape.
      eps: floor of the squared-norm product (guards the zero vector).

    Returns:
      scalar mean over all leading axes.

    Example:
      >>> float(orthogonality_loss(jnp.array([[1., 0.]]), jnp.array([[1., 1.]])))  # cos^2 45deg
      0.5...
    """
    inv, spec = jnp.asarray(inv), jnp.asarray(spec)
    if inv.shape != spec.shape or inv.ndim < 1:
        raise ValueError(
            f"inv and spec must have the same shape (..., q), got {inv.shape}, {spec.shape}"
        )
    dot = jnp.sum(inv * spec, axis=-1)
    norms = jnp.sum(inv**2, axis=-1) * jnp.sum(spec**2, axis=-1)
    return jnp.mean(dot**2 / jnp.maximum(norms, eps))


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


class DiscomModel(NamedTuple):
    """Architecture of a DisCoM-KD model (static: hashable, holds no arrays).

    Attributes:
      encoders: one :class:`~cmcd_theory.learn.models.Encoder` per modality, each of width ``2 q``.
      d_part: ``q``, the width of the invariant part and of the specific part.
      num_classes: K.
      discriminator: the modality discriminator, an Encoder ``q -> M``.
      modality_head: the modality classifier, an affine Encoder ``q -> M``.
      aux_head: the shared label classifier on invariant parts, an affine Encoder ``q -> K``.
    """

    encoders: tuple[Encoder, ...]
    d_part: int
    num_classes: int
    discriminator: Encoder
    modality_head: Encoder
    aux_head: Encoder

    @property
    def num_modalities(self) -> int:
        return len(self.encoders)


def discomkd_model(
    d_ins: Sequence[int],
    d_part: int,
    num_classes: int,
    *,
    hidden: Sequence[int] = (128,),
    encoder: str = "mlp",
    disc_hidden: Sequence[int] = (64,),
) -> DiscomModel:
    """Build a DisCoM-KD architecture.

    Args:
      d_ins: input dimension of each modality, length ``M >= 2`` (source first).
      d_part: width ``q >= 1`` of each part; encoders output ``2 q``.
      num_classes: ``K >= 2``.
      hidden: hidden widths of the MLP encoders (ignored for ``encoder="linear"``).
      encoder: ``"mlp"`` or ``"linear"``.
      disc_hidden: hidden widths of the modality discriminator (empty: affine).

    Returns:
      a :class:`DiscomModel`.

    Example:
      >>> model = discomkd_model([240, 76], d_part=16, num_classes=10)
      >>> model.num_modalities, model.encoders[1].d_out
      (2, 32)
    """
    d_ins = tuple(d_ins)
    if len(d_ins) < 2:
        raise ValueError(f"d_ins must list at least 2 modalities, got {d_ins}")
    V.positive_int("d_part", d_part)
    V.integer("num_classes", num_classes, lo=2)
    if encoder == "mlp":
        encs = tuple(mlp_encoder(d, tuple(hidden), 2 * d_part) for d in d_ins)
    elif encoder == "linear":
        encs = tuple(linear_encoder(d, 2 * d_part) for d in d_ins)
    else:
        raise ValueError(f"encoder must be one of ('mlp', 'linear'), got {encoder!r}")
    m = len(d_ins)
    return DiscomModel(
        encs,
        int(d_part),
        int(num_classes),
        mlp_encoder(d_part, tuple(disc_hidden), m),
        mlp_encoder(d_part, (), m),
        mlp_encoder(d_part, (), int(num_classes)),
    )


def _affine_init(key, d_in, d_out):
    return {
        "W": jax.random.normal(key, (d_out, d_in), jnp.float32) / jnp.sqrt(d_in),
        "b": jnp.zeros((d_out,), jnp.float32),
    }


def init_discomkd(key: jax.Array, model: DiscomModel) -> Params:
    """Initial parameters: ``{"enc": [...], "cls": [{"W": (K, 2q), "b": (K,)}, ...],
    "disc": ..., "mod": ..., "aux": ...}``, one encoder and one classifier per modality.

    Example:
      >>> model = discomkd_model([4, 3], d_part=2, num_classes=3, hidden=(8,))
      >>> params = init_discomkd(jax.random.key(0), model)
      >>> params["cls"][1]["W"].shape
      (3, 4)
    """
    m = model.num_modalities
    keys = jax.random.split(key, 2 * m + 3)
    return {
        "enc": [enc.init(k) for enc, k in zip(model.encoders, keys[:m])],
        "cls": [_affine_init(k, 2 * model.d_part, model.num_classes) for k in keys[m : 2 * m]],
        "disc": model.discriminator.init(keys[2 * m]),
        "mod": model.modality_head.init(keys[2 * m + 1]),
        "aux": model.aux_head.init(keys[2 * m + 2]),
    }


def split_features(u: jax.Array, d_part: int) -> tuple[jax.Array, jax.Array]:
    """``(invariant, specific) = (u[..., :q], u[..., q:])`` for a feature of width ``2 q``."""
    if u.shape[-1] != 2 * d_part:
        raise ValueError(f"u must have last dimension 2 * d_part = {2 * d_part}, got {u.shape}")
    return u[..., :d_part], u[..., d_part:]


def _check_modality(model: DiscomModel, modality: int) -> int:
    if (
        isinstance(modality, bool)
        or not isinstance(modality, (int, np.integer))
        or not (0 <= modality < model.num_modalities)
    ):
        raise ValueError(
            f"modality must be an integer in [0, {model.num_modalities}), got {modality!r}"
        )
    return int(modality)


def discomkd_features(
    params: Params, model: DiscomModel, x: jax.Array, modality: int
) -> tuple[jax.Array, jax.Array]:
    """Invariant and specific parts ``(N, q)`` each, of modality ``modality``'s inputs ``x``."""
    v = _check_modality(model, modality)
    u = model.encoders[v].apply(params["enc"][v], x)
    return split_features(u, model.d_part)


def discomkd_logits(params: Params, model: DiscomModel, x: jax.Array, modality: int) -> jax.Array:
    """Class scores ``(N, K)`` of the single-modal classifier of ``modality`` on inputs x."""
    v = _check_modality(model, modality)
    u = model.encoders[v].apply(params["enc"][v], x)
    return u @ params["cls"][v]["W"].T + params["cls"][v]["b"]


def discomkd_predict(params: Params, model: DiscomModel, x: jax.Array, modality: int) -> jax.Array:
    """Predicted labels ``(N,)`` of the single-modal classifier of ``modality`` (test time:
    only that modality's observations are needed).

    Example:
      >>> model = discomkd_model([4, 3], d_part=2, num_classes=3, hidden=(8,))
      >>> params = init_discomkd(jax.random.key(0), model)
      >>> discomkd_predict(params, model, jnp.ones((5, 3)), modality=1).shape
      (5,)
    """
    return jnp.argmax(discomkd_logits(params, model, x, modality), axis=-1)


def _check_inputs(model: DiscomModel, xs: Sequence[jax.Array], y: jax.Array):
    if len(xs) != model.num_modalities:
        raise ValueError(f"xs must hold {model.num_modalities} arrays, got {len(xs)}")
    n = None
    for v, (x, enc) in enumerate(zip(xs, model.encoders)):
        if x.ndim != 2 or x.shape[1] != enc.d_in:
            raise ValueError(f"xs[{v}] must have shape (N, {enc.d_in}), got {x.shape}")
        if n is not None and x.shape[0] != n:
            raise ValueError(
                f"every xs[v] must have the same number of rows, got {x.shape[0]} and {n}"
            )
        n = x.shape[0]
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")


def discomkd_loss(
    params: Params,
    model: DiscomModel,
    xs: Sequence[jax.Array],
    y: jax.Array,
    *,
    lam=1.0,
    w_adv: float = 1.0,
    w_mod: float = 1.0,
    w_orth: float = 1.0,
    w_aux: float = 1.0,
) -> tuple[jax.Array, dict]:
    r"""DisCoM-KD objective on a batch of labeled M-tuples (docs/theory.md, O, DisCoM-KD).

    .. math:: L = L_{cls} + w_{aux} L_{aux} + w_{adv} L_{adv} + w_{mod} L_{mod}
              + w_\perp L_\perp

    with :func:`label_cross_entropy` of the single-modal classifiers (``L_cls``) and of the
    shared classifier on the invariant parts (``L_aux``), :func:`modality_cross_entropy` of
    the discriminator on :func:`gradient_reversal` of the invariant parts (``L_adv``) and of
    the modality classifier on the specific parts (``L_mod``), and :func:`orthogonality_loss`.
    The value is this sum; its gradient in the encoders carries ``-lam w_adv`` times the
    gradient of ``L_adv`` (the reversal), in the discriminator ``+w_adv`` times it.

    Args:
      params: from :func:`init_discomkd`.
      model: a :class:`DiscomModel`.
      xs: M arrays ``(N, d_v)``; row i of every array is the same sample.
      y: labels ``(N,)``.
      lam: gradient-reversal strength ``>= 0``.
      w_adv, w_mod, w_orth, w_aux: weights ``>= 0`` of the other four terms.

    Returns:
      ``(total, terms)`` with ``terms = {"cls", "aux", "adv", "mod", "orth", "total"}``
      (scalars).

    Example:
      >>> model = discomkd_model([4, 3], d_part=2, num_classes=3, hidden=(8,))
      >>> params = init_discomkd(jax.random.key(0), model)
      >>> xs = (jnp.ones((5, 4)), jnp.ones((5, 3)))
      >>> total, terms = discomkd_loss(params, model, xs, jnp.zeros(5, jnp.int32))
      >>> sorted(terms)
      ['adv', 'aux', 'cls', 'mod', 'orth', 'total']
    """
    xs = tuple(jnp.asarray(x) for x in xs)
    y = jnp.asarray(y)
    _check_inputs(model, xs, y)
    for name, w in (("w_adv", w_adv), ("w_mod", w_mod), ("w_orth", w_orth), ("w_aux", w_aux)):
        if isinstance(w, (int, float)) and not w >= 0:
            raise ValueError(f"{name} must be >= 0, got {w!r}")
    if isinstance(lam, (int, float)) and not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    us = [enc.apply(p, x) for enc, p, x in zip(model.encoders, params["enc"], xs)]
    inv = jnp.stack([u[:, : model.d_part] for u in us])  # (M, N, q)
    spec = jnp.stack([u[:, model.d_part :] for u in us])
    cls_logits = jnp.stack([u @ c["W"].T + c["b"] for u, c in zip(us, params["cls"])])
    l_cls = label_cross_entropy(cls_logits, y)
    l_aux = label_cross_entropy(model.aux_head.apply(params["aux"], inv), y)
    l_adv = modality_cross_entropy(
        model.discriminator.apply(params["disc"], gradient_reversal(inv, lam))
    )
    l_mod = modality_cross_entropy(model.modality_head.apply(params["mod"], spec))
    l_orth = orthogonality_loss(inv, spec)
    total = l_cls + w_aux * l_aux + w_adv * l_adv + w_mod * l_mod + w_orth * l_orth
    return total, {
        "cls": l_cls,
        "aux": l_aux,
        "adv": l_adv,
        "mod": l_mod,
        "orth": l_orth,
        "total": total,
    }


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiscomConfig:
    """Training hyper-parameters of :func:`train_discomkd` (hashable: usable as a static arg).

    Attributes:
      steps: optimiser steps ``>= 1``.
      batch_size: rows per step ``>= 1`` (drawn uniformly with replacement).
      lr: Adam(W) learning rate ``> 0``.
      lam: gradient-reversal strength ``>= 0``.
      w_adv, w_mod, w_orth, w_aux: weights ``>= 0`` of the adversarial, modality,
        disentanglement and auxiliary (shared invariant-part classifier) terms.
      weight_decay: decoupled weight decay ``>= 0`` (AdamW).
    """

    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    lam: float = 1.0
    w_adv: float = 1.0
    w_mod: float = 1.0
    w_orth: float = 1.0
    w_aux: float = 1.0
    weight_decay: float = 0.0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            V.positive_int(name, getattr(self, name))
        V.real("lr", self.lr, lo=0.0, lo_open=True)
        for name in ("lam", "w_adv", "w_mod", "w_orth", "w_aux", "weight_decay"):
            V.real(name, getattr(self, name), lo=0.0)


def train_discomkd(
    key: jax.Array, model: DiscomModel, xs: Sequence[jax.Array], y: jax.Array, cfg: DiscomConfig
) -> tuple[Params, dict]:
    r"""Train every DisCoM-KD component jointly on labeled M-tuples (one ``lax.scan``).

    Each step draws ``batch_size`` row indices uniformly with replacement and takes one AdamW
    step on :func:`discomkd_loss`; because of the gradient reversal this single step lowers
    the discriminator's loss in its own parameters and raises it in the encoders' (the
    saddle-point scheme of Ganin and Lempitsky, 2015). Pure and jit/vmap-able: ``model`` and
    ``cfg`` are static.

    Args:
      key: PRNG key (initialisation and batches); the same key gives the same result.
      model: a :class:`DiscomModel`.
      xs: M float arrays ``(N, d_v)`` of paired observations.
      y: integer labels ``(N,)`` in ``[0, K)``.
      cfg: a :class:`DiscomConfig`.

    Returns:
      ``(params, history)``: trained parameters and a dict of ``(steps,)`` arrays of the
      loss terms (``"cls", "aux", "adv", "mod", "orth", "total"``) on each step's batch, before
      the step.

    Example:
      >>> model = discomkd_model([4, 3], d_part=2, num_classes=3, hidden=(8,))
      >>> xs = (jnp.ones((5, 4)), jnp.ones((5, 3))); y = jnp.array([0, 1, 2, 0, 1])
      >>> params, hist = train_discomkd(jax.random.key(0), model, xs, y, DiscomConfig(steps=3))
      >>> hist["total"].shape
      (3,)

    References:
      Ienco and Dantas, `DisCoM-KD <https://arxiv.org/abs/2408.07080>`_, 2024.
    """
    if not isinstance(cfg, DiscomConfig):
        raise ValueError(f"cfg must be a DiscomConfig, got {type(cfg).__name__}")
    xs = tuple(jnp.asarray(x, jnp.float32) for x in xs)
    y = jnp.asarray(y, jnp.int32)
    _check_inputs(model, xs, y)
    n = xs[0].shape[0]

    k_init, k_steps = jax.random.split(key)
    params = init_discomkd(k_init, model)
    opt = optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(p, batch_x, batch_y):
        return discomkd_loss(
            p,
            model,
            batch_x,
            batch_y,
            lam=cfg.lam,
            w_adv=cfg.w_adv,
            w_mod=cfg.w_mod,
            w_orth=cfg.w_orth,
            w_aux=cfg.w_aux,
        )

    def step(carry, k):
        p, state = carry
        idx = jax.random.randint(k, (cfg.batch_size,), 0, n)
        batch_x = tuple(x[idx] for x in xs)
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch_x, y[idx])
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), terms

    (params, _), history = jax.lax.scan(
        step, (params, opt.init(params)), jax.random.split(k_steps, cfg.steps)
    )
    return params, history
