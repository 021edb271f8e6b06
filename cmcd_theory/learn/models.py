"""Encoders as plain pytrees of arrays.

An encoder is a pair of pure functions bundled in :class:`Encoder`:

* ``init(key) -> params``: a pytree (dict / list of dicts) of float32 arrays;
* ``apply(params, x) -> u``: the *unnormalised* feature, shape ``(..., d_out)``.

Normalisation is kept separate (:func:`normalize`) because the theory needs both:
the objectives and the probe use ``normalize(u)``, while bound B4 covers the
unnormalised student feature ``u = W clip(x)`` (docs/theory.md, B4).

The theory-track encoder is :func:`linear_encoder`, ``u = W clip(x)`` with
``clip`` the projection onto the ball of radius ``clip_radius``. Because
``clip(x)`` is ``x`` times a positive scalar, ``normalize(W clip(x)) =
normalize(W x)``: the clip never changes the normalised features (B1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cmcd_theory import validation as V

Params = Any


class Encoder(NamedTuple):
    """An encoder: ``init(key) -> params`` and ``apply(params, x) -> features``.

    Attributes:
      init: builds the parameter pytree from a PRNG key.
      apply: maps inputs ``(..., d_in)`` to unnormalised features ``(..., d_out)``.
      d_in: input dimension.
      d_out: feature dimension.
      name: ``"linear"`` or ``"mlp"``.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    d_in: int
    d_out: int
    name: str


def _check_dim(name: str, value: int) -> int:
    return V.positive_int(name, value)


def clip_to_ball(x: jax.Array, radius: float) -> jax.Array:
    r"""Project each row of ``x`` onto the Euclidean ball of radius ``radius``.

    .. math:: \mathrm{clip}(x) = x \min(1, r / \|x\|)

    Gaussian observations are unbounded while bounds B4/B5 need bounded inputs, so the
    theory-track encoder applies this projection, with ``r`` fixed before seeing data.

    Args:
      x: array ``(..., d)``.
      radius: ``r > 0``.

    Returns:
      array ``(..., d)`` with every row of norm at most ``r``.
    """
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    # where(norm > r) avoids 0/0 for the zero vector.
    scale = jnp.where(norm > radius, radius / jnp.maximum(norm, 1e-30), 1.0)
    return x * scale


def normalize(u: jax.Array, eps: float = 1e-12) -> jax.Array:
    r"""L2-normalise features along the last axis: :math:`z = u / \max(\|u\|, \epsilon)`.

    Computed as ``u * rsqrt(max(sum u^2, eps^2))`` so the gradient stays finite at ``u = 0``
    (the gradient of ``norm`` is 0/0 there).
    """
    sq = jnp.sum(u * u, axis=-1, keepdims=True)
    return u * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _glorot(key: jax.Array, d_in: int, d_out: int) -> jax.Array:
    return jax.random.normal(key, (d_out, d_in), jnp.float32) * jnp.sqrt(1.0 / d_in)


def linear_encoder(d_in: int, d_out: int, clip_radius: float | None = None) -> Encoder:
    r"""Theory-track linear encoder :math:`\phi(x) = W\,\mathrm{clip}(x)` (B1, B4, B5).

    Args:
      d_in: input dimension.
      d_out: feature dimension.
      clip_radius: radius ``r`` of the input ball; ``None`` for no projection.

    Returns:
      an :class:`Encoder` whose params are ``{"W": (d_out, d_in)}``.

    Example:
      >>> enc = linear_encoder(16, 8, clip_radius=10.0)
      >>> params = enc.init(jax.random.key(0))
      >>> enc.apply(params, jnp.ones((4, 16))).shape
      (4, 8)
    """
    d_in, d_out = _check_dim("d_in", d_in), _check_dim("d_out", d_out)
    if clip_radius is not None:
        V.real("clip_radius", clip_radius, lo=0.0, lo_open=True)

    def init(key):
        return {"W": _glorot(key, d_in, d_out)}

    def apply(params, x):
        if clip_radius is not None:
            x = clip_to_ball(x, clip_radius)
        return x @ params["W"].T

    return Encoder(init, apply, d_in, d_out, "linear")


def mlp_encoder(d_in: int, hidden: Sequence[int], d_out: int) -> Encoder:
    """MLP encoder with GELU activations and a linear last layer.

    Args:
      d_in: input dimension.
      hidden: widths of the hidden layers (may be empty: then it is affine).
      d_out: feature dimension.

    Returns:
      an :class:`Encoder` whose params are a list of ``{"W", "b"}`` layers.
    """
    d_in, d_out = _check_dim("d_in", d_in), _check_dim("d_out", d_out)
    sizes = [d_in] + [_check_dim("hidden", h) for h in hidden] + [d_out]

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {"W": _glorot(k, a, b), "b": jnp.zeros((b,), jnp.float32)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])
        ]

    def apply(params, x):
        for layer in params[:-1]:
            x = jax.nn.gelu(x @ layer["W"].T + layer["b"])
        last = params[-1]
        return x @ last["W"].T + last["b"]

    return Encoder(init, apply, d_in, d_out, "mlp")


def make_encoder(
    kind: str,
    d_in: int,
    d_out: int,
    *,
    clip_radius: float | None = None,
    hidden: Sequence[int] = (64,),
) -> Encoder:
    """Build an encoder by name: ``"linear"`` (W clip(x)) or ``"mlp"``."""
    if kind == "linear":
        return linear_encoder(d_in, d_out, clip_radius)
    if kind == "mlp":
        return mlp_encoder(d_in, hidden, d_out)
    raise ValueError(f"encoder must be one of ('linear', 'mlp'), got {kind!r}")
