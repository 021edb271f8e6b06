"""The six built-in modality channels (docs/theory.md, G2, G7), registered on import.

Each is a :class:`~cmcd_theory.worlds.config.Channel`: it applies itself to ``(y, s)`` with an
explicit key and knob ``t`` (JAX) and states its exact ground truth (float64) from the closed
forms of :mod:`cmcd_theory.worlds.exact`:

* G2 distance channels (``TV_latent`` moves with t): :class:`Attenuate`, :class:`Noise`,
  :class:`Corrupt`, :class:`Rotate`;
* G7 pairing channels (``TV_latent = 0``, the correspondence of a pair moves):
  :class:`Resample`, :class:`Mispair`.

Each but :class:`Rotate` (which mixes two coordinates) also states its coordinate-wise pair
law (:meth:`~cmcd_theory.worlds.config.Channel.pair_law`, G8), from which the latent mutual
informations are computed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory.worlds.config import _REGISTRY, Channel, WorldConfig
from cmcd_theory.worlds.exact import (
    _rotation_matrix_np,
    _tv_equal_cov,
    _tv_equal_mean,
    gaussian_axes_bayes_error,
)


def rotation_matrix(t, k: int) -> jax.Array:
    """R_t: rotation by angle ``t pi / 2`` in the plane of ``e_1, e_2`` (k x k)."""
    a = jnp.asarray(t, jnp.float32) * (jnp.pi / 2)
    c, s = jnp.cos(a), jnp.sin(a)
    r = jnp.eye(k, dtype=jnp.float32)
    r = r.at[0, 0].set(c).at[0, 1].set(-s).at[1, 0].set(s).at[1, 1].set(c)
    return r


def _source_axes(config: WorldConfig) -> np.ndarray:
    return np.full(config.num_classes, config.separation / math.sqrt(2))


def _kept_or_replaced(config: WorldConfig, t: float, means_new: np.ndarray) -> list:
    """Pair law (G8) of a channel that keeps ``s_B = s`` with probability ``1 - t`` and else
    draws ``s_B`` afresh around ``means_new`` (K, k) with variance sigma^2, independent of s."""
    v, k = config.sigma**2, config.latent_dim
    return [(1.0 - t, 0, config.class_means(), v, np.ones(k)), (t, 0, means_new, v, np.zeros(k))]


class Attenuate(Channel):
    """G2 attenuate: on J, ``(1 - t) s_j + sqrt(1 - (1 - t)^2) sigma xi_j``; elsewhere ``s_j``."""

    name = "attenuate"

    def apply(self, world, key, y, s, t):
        cfg = world.config
        xi = jax.random.normal(key, s.shape, s.dtype)
        mask = jnp.asarray(cfg.attenuated_mask(), s.dtype)
        a = 1.0 - t
        mixed = a * s + jnp.sqrt(jnp.maximum(1.0 - a * a, 0.0)) * cfg.sigma * xi
        return y, jnp.where(mask > 0, mixed, s)

    def tv_latent_per_class(self, config, t):
        mu = config.class_means()
        return _tv_equal_cov(
            t * np.linalg.norm(mu * config.attenuated_mask(), axis=1), config.sigma
        )

    def bayes_error_B(self, config, t):
        mask = config.attenuated_mask()[: config.num_classes]  # class c lives on axis e_c
        return gaussian_axes_bayes_error(_source_axes(config) * (1.0 - t * mask), config.sigma**2)

    def law_B(self, config, t):
        mu = config.class_means()
        return [(1.0, mu - t * mu * config.attenuated_mask(), config.sigma)]

    def pair_law(self, config, t):
        mu, mask = config.class_means(), config.attenuated_mask()
        return [(1.0, 0, mu - t * mu * mask, config.sigma**2, 1.0 - t * mask)]


class Noise(Channel):
    """G2 noise: ``s + eta xi`` with ``eta = t eta_max``."""

    name = "noise"

    def apply(self, world, key, y, s, t):
        xi = jax.random.normal(key, s.shape, s.dtype)
        return y, s + (t * world.config.eta_max) * xi

    def tv_latent_per_class(self, config, t):
        s1, s2 = config.sigma, math.sqrt(config.sigma**2 + (t * config.eta_max) ** 2)
        return np.full(config.num_classes, _tv_equal_mean(config.latent_dim, s1, s2))

    def bayes_error_B(self, config, t):
        v = config.sigma**2 + (t * config.eta_max) ** 2
        return gaussian_axes_bayes_error(_source_axes(config), v)

    def law_B(self, config, t):
        return [(1.0, config.class_means(), math.sqrt(config.sigma**2 + (t * config.eta_max) ** 2))]

    def pair_law(self, config, t):
        v = config.sigma**2 + (t * config.eta_max) ** 2
        return [(1.0, 0, config.class_means(), v, np.ones(config.latent_dim))]


class Corrupt(Channel):
    """G2 corrupt: with probability t the latent is replaced by a label-free N(0, sigma^2 I)."""

    name = "corrupt"

    def apply(self, world, key, y, s, t):
        k1, k2 = jax.random.split(key)
        replace = jax.random.uniform(k1, s.shape[:-1] + (1,)) < t
        return y, jnp.where(
            replace, world.config.sigma * jax.random.normal(k2, s.shape, s.dtype), s
        )

    def tv_latent_per_class(self, config, t):
        return t * _tv_equal_cov(np.linalg.norm(config.class_means(), axis=1), config.sigma)

    def bayes_error_B(self, config, t):
        # G5b mixture rule: the shared N(0, sigma^2 I) part leaves the clean Bayes rule, which
        # errs with probability 1 - 1/K on a replaced latent (equal-norm means)
        clean = gaussian_axes_bayes_error(_source_axes(config), config.sigma**2)
        return (1.0 - t) * clean + t * (1.0 - 1.0 / config.num_classes)

    def law_B(self, config, t):
        mu = config.class_means()
        return [(1.0 - t, mu, config.sigma), (t, np.zeros_like(mu), config.sigma)]

    def pair_law(self, config, t):
        return _kept_or_replaced(config, t, np.zeros((config.num_classes, config.latent_dim)))


class Rotate(Channel):
    """G2 rotate: ``R_t s``, rotation by ``t pi / 2`` in the plane of ``e_1, e_2``."""

    name = "rotate"

    def check(self, config):
        if config.latent_dim < 2:
            raise ValueError("latent_dim must be >= 2 for the rotate channel")

    def apply(self, world, key, y, s, t):
        return y, s @ rotation_matrix(t, world.config.latent_dim).T

    def tv_latent_per_class(self, config, t):
        mu = config.class_means()
        mu_b = mu @ _rotation_matrix_np(t, config.latent_dim).T
        return _tv_equal_cov(np.linalg.norm(mu - mu_b, axis=1), config.sigma)

    def bayes_error_B(self, config, t):
        return gaussian_axes_bayes_error(_source_axes(config), config.sigma**2)  # orthonormal axes

    def law_B(self, config, t):
        return [
            (1.0, config.class_means() @ _rotation_matrix_np(t, config.latent_dim).T, config.sigma)
        ]


class Resample(Channel):
    """G7 resample: with probability t, ``s_B`` is a fresh draw of ``p(s | y)`` independent of
    ``s`` (t = 1 is G7's channel); the pair keeps its class and loses its instance."""

    name = "resample"

    def apply(self, world, key, y, s, t):
        k1, k2 = jax.random.split(key)
        fresh = world.means[y] + world.config.sigma * jax.random.normal(k2, s.shape, s.dtype)
        swap = jax.random.uniform(k1, s.shape[:-1] + (1,)) < t
        return y, jnp.where(swap, fresh, s)

    def tv_latent_per_class(self, config, t):
        return np.zeros(config.num_classes)

    def bayes_error_B(self, config, t):
        return gaussian_axes_bayes_error(_source_axes(config), config.sigma**2)

    def law_B(self, config, t):
        return [(1.0, config.class_means(), config.sigma)]

    def pair_law(self, config, t):
        return _kept_or_replaced(config, t, config.class_means())


class Mispair(Channel):
    """G7 mispair: ``y_B = y`` with probability ``1 - t``, else uniform over the other K - 1
    classes; ``s_B = s`` where the classes agree, else a fresh draw of ``p(s | y_B)``. The
    target's label is ``y_B``."""

    name = "mispair"
    changes_labels = True

    def apply(self, world, key, y, s, t):
        k1, k2, k3 = jax.random.split(key, 3)
        K = world.config.num_classes
        shift = jax.random.randint(k2, y.shape, 1, K)  # uniform over the other K - 1 classes
        flip = jax.random.uniform(k1, y.shape) < t
        y_b = jnp.where(flip, (y + shift) % K, y)
        fresh = world.means[y_b] + world.config.sigma * jax.random.normal(k3, s.shape, s.dtype)
        return y_b, jnp.where(flip[:, None], fresh, s)

    def tv_latent_per_class(self, config, t):
        return np.zeros(config.num_classes)

    def bayes_error_B(self, config, t):
        return gaussian_axes_bayes_error(_source_axes(config), config.sigma**2)

    def pair_agreement(self, config, t):
        return 1.0 - t

    def law_B(self, config, t):
        return [(1.0, config.class_means(), config.sigma)]

    def pair_law(self, config, t):
        # kept with probability 1 - t; else y_B = y + r (r = 1..K-1 equally likely) and s_B a
        # fresh draw around mu_{y_B}, independent of s
        K, mu, v = config.num_classes, config.class_means(), config.sigma**2
        return _kept_or_replaced(config, t, mu)[:1] + [
            (t / (K - 1), r, np.roll(mu, -r, axis=0), v, np.zeros(config.latent_dim))
            for r in range(1, K)
        ]


for _cls in (Attenuate, Noise, Corrupt, Rotate, Resample, Mispair):  # the built-in channels
    _REGISTRY[_cls.name] = _cls()
