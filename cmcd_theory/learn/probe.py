"""Linear probes: L2-regularised multinomial logistic regression, fitted by full-batch Adam.

Used for stage 3 of CMCD (the downstream head ``h(z) = argmax_c (W z + b)_c`` on frozen,
normalised target features; docs/theory.md, O and B2/B3) and for the two-sample classifiers
that certify TV lower bounds (B1). The problem is strictly convex, so a full-batch solver
started at zero is deterministic and needs no PRNG key. Full-batch Adam in a ``lax.scan`` of
fixed length is used rather than L-BFGS: it reaches the same objective to ~1e-4 here, and a
fixed-length scan is a small program to compile (a sweep compiles one per shape and setting).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from cmcd_theory import validation as V


def probe_logits(probe: dict, z: jax.Array) -> jax.Array:
    """Scores ``W z + b``: probe ``{"W": (K, p), "b": (K,)}``, z (n, p) -> (n, K)."""
    return z @ probe["W"].T + probe["b"]


def probe_predict(probe: dict, z: jax.Array) -> jax.Array:
    """``argmax_c (W z + b)_c`` for every row of z, shape (n,)."""
    return jnp.argmax(probe_logits(probe, z), axis=-1)


def probe_error(probe: dict, z: jax.Array, y: jax.Array) -> jax.Array:
    """0-1 error of the probe on ``(z, y)`` (a scalar array)."""
    return jnp.mean(probe_predict(probe, z) != y)


def probe_objective(probe: dict, z: jax.Array, y: jax.Array, l2: float) -> jax.Array:
    r"""Mean cross-entropy plus ridge penalty on W (log-sum-exp inside log_softmax).

    .. math:: \frac1n\sum_i -\log\mathrm{softmax}(W z_i + b)_{y_i} + \lambda \|W\|_F^2
    """
    logp = jax.nn.log_softmax(probe_logits(probe, z), axis=-1)
    nll = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))
    return nll + l2 * jnp.sum(probe["W"] ** 2)


def fit_probe(
    z: ArrayLike,
    y: ArrayLike,
    num_classes: int,
    l2: float = 1e-3,
    steps: int = 300,
    lr: float = 0.05,
) -> dict:
    """Fit an L2-regularised multinomial logistic regression by full-batch Adam (jit/vmap-safe).

    Args:
      z: features (n, p).
      y: integer labels (n,) in ``[0, num_classes)``.
      num_classes: K >= 2.
      l2: ridge strength lambda >= 0 on W (the bias is not penalised).
      steps: full-batch Adam steps.
      lr: Adam learning rate.

    Returns:
      ``{"W": (K, p), "b": (K,)}``.

    Example:
      >>> z = jnp.array([[1., 0.], [0., 1.]]); y = jnp.array([0, 1])
      >>> probe = fit_probe(z, y, 2)
      >>> int(probe_error(probe, z, y))
      0
    """
    V.integer("num_classes", num_classes, lo=2)
    V.real("l2", l2, lo=0.0)
    V.positive_int("steps", steps)
    if not isinstance(z, jax.core.Tracer) and not isinstance(y, jax.core.Tracer):
        # called eagerly (certify, the two-sample classifier): one compiled program per
        # shape and setting, reused across calls; inside a caller's jit/vmap the body is traced
        # into the caller's program
        return _fit_probe_compiled(
            jnp.asarray(z, jnp.float32),
            jnp.asarray(y, jnp.int32),
            num_classes=int(num_classes),
            l2=float(l2),
            steps=int(steps),
            lr=float(lr),
        )
    return _fit_probe_traced(z, y, num_classes, l2, steps, lr)


def _fit_probe_traced(z, y, num_classes, l2, steps, lr) -> dict:
    z = jnp.asarray(z, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    p = z.shape[-1]
    init = {
        "W": jnp.zeros((num_classes, p), jnp.float32),
        "b": jnp.zeros((num_classes,), jnp.float32),
    }

    opt = optax.adam(lr)
    grad = jax.grad(lambda params: probe_objective(params, z, y, l2))

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(grad(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
    return params


_fit_probe_compiled = jax.jit(
    _fit_probe_traced, static_argnames=("num_classes", "l2", "steps", "lr")
)
