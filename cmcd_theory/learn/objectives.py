"""CMCD objectives: InfoNCE, CMC, CMD and L2 feature alignment (docs/theory.md, O1-O4).

Every loss is a pure function of feature arrays and temperatures, safe under ``jax.jit``,
``jax.vmap`` and ``jax.grad``, and computed in float32 without overflow down to
``tau = 0.01``: each softmax goes through ``jax.nn.log_softmax`` (log-sum-exp), never
through ``log(softmax(.))`` or an explicit ``exp``.

Conventions: a batch of features is an array of shape ``(N, p)``, row ``i`` being the
``i``-th sample; in the distillation losses ``z_b`` is the student (target modality B)
and ``z_a`` the frozen teacher (source modality A), row ``i`` of both coming from the same
pair. The per-anchor functions return the ``(N,)`` B->A losses whose range and Lipschitz
constant bound B4 uses.

Shapes are checked when the function is traced, so the checks cost nothing under ``jit``.
A temperature is checked (finite, ``> 0``) only when it is a Python or NumPy number: under
``vmap`` it may be a traced scalar, whose value is unknown at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "infonce",
    "cmc",
    "cmc_per_anchor",
    "cmc_b_to_a",
    "cmd",
    "cmd_per_anchor",
    "l2_align",
    "update_queue",
]

# Pairwise similarities are computed at full float32 precision: on accelerators the default
# matmul precision may round inputs to fewer mantissa bits, which would be amplified by 1/tau.
_PRECISION = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------
# Input checks (static: shapes, dtypes, and temperatures given as Python / NumPy numbers)
# --------------------------------------------------------------------------------------


def _check_features(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, p), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have N >= 1 rows and p >= 1 columns, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def _check_same_shape(name_1: str, x_1: jax.Array, name_2: str, x_2: jax.Array) -> None:
    if x_1.shape != x_2.shape:
        raise ValueError(
            f"{name_1} and {name_2} must have the same shape (N, p), "
            f"got {x_1.shape} and {x_2.shape}"
        )


def _check_temperature(name: str, tau) -> None:
    if isinstance(tau, (bool, np.bool_)):
        raise ValueError(f"{name} must be a finite number > 0, got {tau!r}")
    if np.ndim(tau) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(tau)}")
    # Only concrete numbers can be checked; a traced tau (under vmap / jit) passes through.
    if isinstance(tau, (int, float, np.number, np.ndarray)):
        value = float(tau)
        if not (np.isfinite(value) and value > 0.0):
            raise ValueError(f"{name} must be a finite number > 0, got {tau!r}")


def _similarities(x: jax.Array, y: jax.Array) -> jax.Array:
    """Return the ``(len(x), len(y))`` matrix of dot products ``x_i . y_j``."""
    return jnp.matmul(x, y.T, precision=_PRECISION)


def _symmetric_clip(u: jax.Array, v: jax.Array, tau) -> jax.Array:
    logits = _similarities(u, v) / tau
    # Row i: softmax over the candidates v_j for anchor u_i; column i: over u_j for anchor v_i.
    # log_softmax subtracts the max before exponentiating (log-sum-exp), so no overflow.
    row = -jnp.diagonal(jax.nn.log_softmax(logits, axis=1))
    col = -jnp.diagonal(jax.nn.log_softmax(logits, axis=0))
    return 0.5 * (jnp.mean(row) + jnp.mean(col))


# --------------------------------------------------------------------------------------
# O1: InfoNCE (stage 1, two views of the source modality)
# --------------------------------------------------------------------------------------


def infonce(u: jax.typing.ArrayLike, v: jax.typing.ArrayLike, tau) -> jax.Array:
    r"""Symmetric (CLIP-form) InfoNCE loss between two views of a batch (O1).

    With logits :math:`\ell_{ij} = u_i \cdot v_j / \tau`,

    .. math::

      L = \frac{1}{2N} \sum_{i=1}^N \Big[
          -\log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ij}}}
          -\log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ji}}} \Big],

    the mean of the row-wise and column-wise cross-entropies with target ``i``. Each
    log-softmax is computed by log-sum-exp.

    Args:
      u: features of the first view, shape ``(N, p)``.
      v: features of the second view, shape ``(N, p)``; row ``i`` is the positive of
        ``u[i]``, every other row a negative.
      tau: temperature, a scalar ``> 0``.

    Returns:
      The scalar loss, shape ``()``. It is ``log N`` when all features are equal.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import infonce
      >>> z = jnp.ones((4, 3)) / jnp.sqrt(3.0)
      >>> print(f"{float(infonce(z, z, 0.1)):.4f}")   # log 4
      1.3863

    References:
      van den Oord, Li and Vinyals, `Representation Learning with Contrastive Predictive
      Coding <https://arxiv.org/abs/1807.03748>`_, 2018.
      Radford et al., `Learning Transferable Visual Models From Natural Language
      Supervision <https://arxiv.org/abs/2103.00020>`_, ICML 2021 (the symmetric form).
    """
    u = _check_features("u", u)
    v = _check_features("v", v)
    _check_same_shape("u", u, "v", v)
    _check_temperature("tau", tau)
    return _symmetric_clip(u, v, tau)


# --------------------------------------------------------------------------------------
# O2: CMC (stage 2, contrastive distillation across modalities)
# --------------------------------------------------------------------------------------


def cmc(z_b: jax.typing.ArrayLike, z_a: jax.typing.ArrayLike, tau) -> jax.Array:
    r"""Cross-modal contrastive (CMC) distillation loss, symmetric CLIP form (O2).

    .. math::

      L = \frac{1}{2N} \sum_{i=1}^N \Big[
          -\log \operatorname{softmax}_j(z_B^i \cdot z_A^j / \tau)_i
          -\log \operatorname{softmax}_j(z_A^i \cdot z_B^j / \tau)_i \Big].

    The positive pair ``(z_b[i], z_a[i])`` attracts, all other cross-modal pairs repel.
    No gradient is stopped here: the teacher stays frozen because the training code does
    not update its parameters. The B->A half alone is :func:`cmc_b_to_a`, the direction
    bound B4 covers; the A->B half has Lipschitz constant :math:`\sqrt 2/\tau` in the
    stacked student features (B4).

    Args:
      z_b: student (target modality B) features, shape ``(N, p)``.
      z_a: teacher (source modality A) features, shape ``(N, p)``, row ``i`` paired with
        ``z_b[i]``.
      tau: temperature, a scalar ``> 0``.

    Returns:
      The scalar loss, shape ``()``.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import cmc
      >>> z = jnp.eye(3)                               # orthogonal, perfectly paired
      >>> print(f"{float(cmc(z, z, 0.5)):.4f}")        # log(1 + 2 exp(-2))
      0.2395

    References:
      Radford et al., `Learning Transferable Visual Models From Natural Language
      Supervision <https://arxiv.org/abs/2103.00020>`_, ICML 2021.
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024.
    """
    z_b = _check_features("z_b", z_b)
    z_a = _check_features("z_a", z_a)
    _check_same_shape("z_b", z_b, "z_a", z_a)
    _check_temperature("tau", tau)
    return _symmetric_clip(z_b, z_a, tau)


def cmc_per_anchor(z_b: jax.typing.ArrayLike, z_a: jax.typing.ArrayLike, tau) -> jax.Array:
    r"""Per-anchor B->A CMC losses (O2, the direction bound B4 covers).

    .. math::

      l_i = -\log \operatorname{softmax}_j(z_B^i \cdot z_A^j / \tau)_i
          = \log \Big(1 + \sum_{j \ne i} e^{(z_B^i \cdot z_A^j - z_B^i \cdot z_A^i)/\tau}\Big).

    Range and Lipschitz facts used by B4, with :math:`N_c = N` candidates: if
    :math:`\|z_B^i\| \le R` and :math:`\|z_A^j\| \le 1` for all ``j``, then

    .. math::

      0 \le l_i \le b = \log\big(1 + (N_c - 1) e^{2R/\tau}\big),

    since every exponent above is at most :math:`2R/\tau`; and for teacher features of norm
    :math:`\le 1`, :math:`l_i` is :math:`(2/\tau)`-Lipschitz in the anchor's student feature
    :math:`u = z_B^i` (for every ``u``, whatever its norm), since
    :math:`\nabla_u l_i = (\sum_j p_j z_A^j - z_A^i)/\tau` has norm at most :math:`2/\tau`.
    The upper end ``b`` is attained at :math:`z_A^j = -z_A^i` (``j != i``),
    :math:`z_B^i = -R z_A^i`.

    Args:
      z_b: student features, shape ``(N, p)``; row ``i`` is the anchor of loss ``i``.
      z_a: teacher features, shape ``(N, p)``; the ``N`` candidates, ``z_a[i]`` the
        positive of anchor ``i``.
      tau: temperature, a scalar ``> 0``.

    Returns:
      The per-anchor losses, shape ``(N,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from cmcd_theory.learn.objectives import cmc_per_anchor
      >>> z_a = jnp.eye(2)
      >>> z_b = jnp.array([[1.0, 0.0], [1.0, 0.0]])   # anchor 1 points at the wrong candidate
      >>> print(np.asarray(cmc_per_anchor(z_b, z_a, 1.0)).round(4))
      [0.3133 1.3133]

    References:
      Radford et al., `Learning Transferable Visual Models From Natural Language
      Supervision <https://arxiv.org/abs/2103.00020>`_, ICML 2021.
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024.
    """
    z_b = _check_features("z_b", z_b)
    z_a = _check_features("z_a", z_a)
    _check_same_shape("z_b", z_b, "z_a", z_a)
    _check_temperature("tau", tau)
    logits = _similarities(z_b, z_a) / tau
    return -jnp.diagonal(jax.nn.log_softmax(logits, axis=1))


def cmc_b_to_a(z_b: jax.typing.ArrayLike, z_a: jax.typing.ArrayLike, tau) -> jax.Array:
    r"""Mean B->A CMC loss, the one-directional form bound B4 covers (O2).

    .. math::

      L_{B \to A} = \frac{1}{N} \sum_{i=1}^N
          -\log \operatorname{softmax}_j(z_B^i \cdot z_A^j / \tau)_i .

    As the mean of :func:`cmc_per_anchor`, it lies in ``[0, log(1 + (N - 1) exp(2R/tau))]``
    for student features of norm ``<= R`` and teacher features of norm ``<= 1``, and is
    :math:`2/(\tau\sqrt N)`-Lipschitz in the stacked student features (B4).

    Args:
      z_b: student features, shape ``(N, p)``.
      z_a: teacher features, shape ``(N, p)``.
      tau: temperature, a scalar ``> 0``.

    Returns:
      The scalar loss, shape ``()``.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import cmc_b_to_a
      >>> z = jnp.ones((5, 2)) / jnp.sqrt(2.0)
      >>> print(f"{float(cmc_b_to_a(z, z, 0.2)):.4f}")   # log 5
      1.6094

    References:
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024.
    """
    return jnp.mean(cmc_per_anchor(z_b, z_a, tau))


# --------------------------------------------------------------------------------------
# O3: CMD (stage 2, SEED-style relational distillation)
# --------------------------------------------------------------------------------------


def _cmd_candidates(z_a: jax.Array, queue) -> jax.Array:
    if queue is None:
        return z_a
    queue = _check_features_or_empty("queue", queue)
    if queue.shape[1] != z_a.shape[1]:
        raise ValueError(
            f"queue must have shape (Q, p) with p = {z_a.shape[1]} (the feature dimension "
            f"of z_a), got shape {queue.shape}"
        )
    return jnp.concatenate([z_a, queue.astype(z_a.dtype)], axis=0)


def _check_features_or_empty(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (Q, p), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def cmd_per_anchor(
    z_b: jax.typing.ArrayLike,
    z_a: jax.typing.ArrayLike,
    tau_a,
    tau_b,
    queue: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Per-anchor CMD cross-entropies, SEED-style relational distillation (O3).

    The candidates are :math:`c = (z_A^1, \dots, z_A^N, q^1, \dots, q^Q)`: the in-batch
    teacher features (self term ``j = i`` included) followed by the optional ``queue`` of
    past teacher features, :math:`N_c = N + Q` in all. With

    .. math::

      p_A(j \mid i) = \operatorname{softmax}_j(z_A^i \cdot c_j / \tau_A), \qquad
      p_B(j \mid i) = \operatorname{softmax}_j(z_B^i \cdot c_j / \tau_B),

    .. math::

      l_i = -\sum_{j=1}^{N_c} p_A(j \mid i) \log p_B(j \mid i).

    The teacher side (:math:`p_A` and the candidates) is wrapped in ``stop_gradient``: the
    gradient flows to ``z_b`` (and ``tau_b``) only.

    Range and Lipschitz facts used by B4: if :math:`\|z_B^i\| \le R` and every candidate has
    norm :math:`\le 1`, then

    .. math::

      0 \le l_i \le b = \log\big(1 + (N_c - 1) e^{2R/\tau_B}\big),

    because each :math:`-\log p_B(j \mid i)` lies in ``[0, b]`` and :math:`l_i` is a convex
    combination of them; and for candidates of norm :math:`\le 1`, :math:`l_i` is
    :math:`(2/\tau_B)`-Lipschitz in the anchor's student feature :math:`u = z_B^i` (for every
    ``u``), since :math:`\nabla_u l_i = \sum_j (p_B(j \mid i) - p_A(j \mid i))\, c_j / \tau_B`
    has norm at most :math:`2/\tau_B`. (``l_i`` does not depend on the other student rows.)

    Args:
      z_b: student features, shape ``(N, p)``; row ``i`` is the anchor of loss ``i``.
      z_a: teacher features, shape ``(N, p)``, row ``i`` paired with ``z_b[i]``.
      tau_a: teacher temperature, a scalar ``> 0``.
      tau_b: student temperature, a scalar ``> 0``.
      queue: optional past teacher features, shape ``(Q, p)`` (see :func:`update_queue`).

    Returns:
      The per-anchor cross-entropies, shape ``(N,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from cmcd_theory.learn.objectives import cmd_per_anchor
      >>> z = jnp.ones((3, 2)) / jnp.sqrt(2.0)        # all equal: uniform p_A and p_B
      >>> print(np.asarray(cmd_per_anchor(z, z, 0.1, 0.2)).round(4))   # log 3 each
      [1.0986 1.0986 1.0986]

    References:
      Fang et al., `SEED: Self-supervised Distillation For Visual Representation
      <https://arxiv.org/abs/2101.04731>`_, ICLR 2021.
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024.
    """
    z_b = _check_features("z_b", z_b)
    z_a = _check_features("z_a", z_a)
    _check_same_shape("z_b", z_b, "z_a", z_a)
    _check_temperature("tau_a", tau_a)
    _check_temperature("tau_b", tau_b)
    candidates = jax.lax.stop_gradient(_cmd_candidates(z_a, queue))
    # Teacher distribution, a fixed target: no gradient to z_a, queue or tau_a.
    p_a = jax.lax.stop_gradient(
        jax.nn.softmax(_similarities(candidates[: z_a.shape[0]], candidates) / tau_a, axis=1)
    )
    # log_softmax by log-sum-exp: finite even where p_B underflows to 0, so that
    # p_A * log p_B never forms 0 * (-inf).
    log_p_b = jax.nn.log_softmax(_similarities(z_b, candidates) / tau_b, axis=1)
    return -jnp.sum(p_a * log_p_b, axis=1)


def cmd(
    z_b: jax.typing.ArrayLike,
    z_a: jax.typing.ArrayLike,
    tau_a,
    tau_b,
    queue: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""CMD loss: SEED-style relational distillation from teacher A to student B (O3).

    .. math::

      L = -\frac{1}{N} \sum_{i=1}^N \sum_{j=1}^{N_c} p_A(j \mid i) \log p_B(j \mid i),

    with :math:`p_A(j \mid i) = \operatorname{softmax}_j(z_A^i \cdot c_j / \tau_A)`,
    :math:`p_B(j \mid i) = \operatorname{softmax}_j(z_B^i \cdot c_j / \tau_B)` over the
    candidates :math:`c` = in-batch teacher features (self term included), then ``queue``.
    The teacher side is under ``stop_gradient``. The mean of :func:`cmd_per_anchor`, where
    the range and Lipschitz facts of bound B4 are stated.

    Args:
      z_b: student features, shape ``(N, p)``.
      z_a: teacher features, shape ``(N, p)``, row ``i`` paired with ``z_b[i]``.
      tau_a: teacher temperature, a scalar ``> 0``.
      tau_b: student temperature, a scalar ``> 0``.
      queue: optional past teacher features, shape ``(Q, p)`` (see :func:`update_queue`).

    Returns:
      The scalar loss, shape ``()``.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import cmd
      >>> z = jnp.ones((2, 2)) / jnp.sqrt(2.0)
      >>> queue = jnp.ones((2, 2)) / jnp.sqrt(2.0)
      >>> print(f"{float(cmd(z, z, 0.1, 0.1, queue=queue)):.4f}")   # log 4
      1.3863

    References:
      Fang et al., `SEED: Self-supervised Distillation For Visual Representation
      <https://arxiv.org/abs/2101.04731>`_, ICLR 2021.
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024.
    """
    return jnp.mean(cmd_per_anchor(z_b, z_a, tau_a, tau_b, queue=queue))


def update_queue(queue: jax.typing.ArrayLike, z_a: jax.typing.ArrayLike) -> jax.Array:
    r"""Push a batch of teacher features into a fixed-size FIFO queue (for O3).

    .. math::

      \mathrm{queue}' = (z_A^1, \dots, z_A^N, q^1, \dots, q^{Q})_{1:Q}

    Row 0 is the newest; the oldest ``N`` rows fall off the end (if ``N >= Q`` the queue
    becomes the first ``Q`` rows of ``z_a``). The shape and dtype of the queue never change,
    so the update can be carried through ``jax.lax.scan``. The pushed features are under
    ``stop_gradient``. The queue holds only real teacher features once it has been filled,
    so initialise it with teacher features (e.g. of a first batch), not with zeros: a zero
    row would be a spurious candidate with logit 0 in :func:`cmd`.

    Args:
      queue: current queue, shape ``(Q, p)``.
      z_a: new teacher features, shape ``(N, p)``.

    Returns:
      The updated queue, shape ``(Q, p)``, dtype of ``queue``.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import update_queue
      >>> queue = jnp.array([[1.0], [2.0], [3.0]])
      >>> print(update_queue(queue, jnp.array([[9.0]])).ravel())
      [9. 1. 2.]

    References:
      He et al., `Momentum Contrast for Unsupervised Visual Representation Learning
      <https://arxiv.org/abs/1911.05722>`_, CVPR 2020 (the feature queue).
      Fang et al., `SEED: Self-supervised Distillation For Visual Representation
      <https://arxiv.org/abs/2101.04731>`_, ICLR 2021.
    """
    queue = _check_features_or_empty("queue", queue)
    z_a = _check_features("z_a", z_a)
    if queue.shape[1] != z_a.shape[1]:
        raise ValueError(
            f"queue must have shape (Q, p) with p = {z_a.shape[1]} (the feature dimension "
            f"of z_a), got shape {queue.shape}"
        )
    pushed = jax.lax.stop_gradient(z_a).astype(queue.dtype)
    return jnp.concatenate([pushed, queue], axis=0)[: queue.shape[0]]


# --------------------------------------------------------------------------------------
# O4: L2 feature alignment (baseline)
# --------------------------------------------------------------------------------------


def l2_align(z_b: jax.typing.ArrayLike, z_a: jax.typing.ArrayLike) -> jax.Array:
    r"""L2 feature-alignment loss, the label-free distillation baseline (O4).

    .. math::

      L = \frac{1}{N} \sum_{i=1}^N \| z_B^i - z_A^i \|^2 .

    Args:
      z_b: student features, shape ``(N, p)``.
      z_a: teacher features, shape ``(N, p)``, row ``i`` paired with ``z_b[i]``.

    Returns:
      The scalar loss, shape ``()``; zero exactly when ``z_b == z_a``.

    Example:
      >>> import jax.numpy as jnp
      >>> from cmcd_theory.learn.objectives import l2_align
      >>> print(float(l2_align(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))))
      2.0

    References:
      Lin et al., `A Generalization Theory of Cross-Modality Distillation with Contrastive
      Learning <https://arxiv.org/abs/2405.03355>`_, 2024 (the feature-alignment baseline).
    """
    z_b = _check_features("z_b", z_b)
    z_a = _check_features("z_a", z_a)
    _check_same_shape("z_b", z_b, "z_a", z_a)
    return jnp.mean(jnp.sum(jnp.square(z_b - z_a), axis=1))
