"""Synthetic source/target worlds whose modality distance is set by hand (docs/theory.md, G1-G5).

A world is a generative model of paired modalities:

* G1 latent classes: ``y ~ Uniform[K]``, ``s | y ~ N(mu_y, sigma^2 I_k)``, with
  ``mu_c = (Delta / sqrt 2) e_c`` so every pair of means is ``Delta`` apart;
* G2 a modality channel ``s_B = T_t(s)`` (``attenuate``, ``noise``, ``corrupt``, ``rotate``)
  with a knob ``t in [0, 1]``; ``t = 0`` means both modalities carry the same latent;
* G3 observation maps ``x_A = g_A(s) + e_A``, ``x_B = g_B(s_B) + e_B``, linear (orthonormal
  columns) or nonlinear injective (``Q2 leaky(Q1 s)``);
* G4 views ``v = g(s + nu)`` for the self-supervised stages.

The exact distances and Bayes errors (G5) live in :mod:`cmcd_theory.divergences`.

:class:`WorldConfig` is an immutable, validated description; :func:`make_world` draws the
observation maps from an explicit key and returns a :class:`World` pytree (arrays are leaves,
the config is static), so every sampler runs under ``jit`` and ``vmap``. The channel knob ``t``
can be passed to the samplers as a traced scalar, which lets a sweep ``vmap`` over distances.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

CHANNELS = ("attenuate", "noise", "corrupt", "rotate")
OBSERVATIONS = ("linear", "nonlinear")
LEAKY_SLOPE = 0.2  # slope of the strictly monotone leaky activation of the nonlinear map (G3)


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Immutable, validated description of a source/target world (G1-G4).

    Attributes:
      num_classes: K, number of classes (uniform prior).
      latent_dim: k, latent dimension; the default means need ``K <= k``.
      separation: Delta > 0, distance between every pair of class means.
      sigma: sigma > 0, class-conditional latent standard deviation.
      channel: one of ``attenuate, noise, corrupt, rotate`` (G2).
      t: distance knob in [0, 1]; 0 means the modalities share the latent.
      n_attenuated: size of the attenuated set J (its first coordinates); ``None`` = all k.
      eta_max: noise scale of the ``noise`` channel at t = 1 (``eta = t eta_max``).
      observation: ``linear`` or ``nonlinear`` observation maps (G3).
      d_A, d_B: observation dimensions, each ``>= latent_dim``.
      view_noise: sigma_v >= 0 of the self-supervised views (G4).
      obs_noise: standard deviation >= 0 of the additive observation noise e_A, e_B.
      map_seed: seed of the observation maps (part of the world's definition, not of the samples).
    """

    num_classes: int = 4
    latent_dim: int = 8
    separation: float = 3.5
    sigma: float = 1.0
    channel: str = "attenuate"
    t: float = 0.0
    n_attenuated: int | None = None
    eta_max: float = 3.0
    observation: str = "linear"
    d_A: int = 32
    d_B: int = 24
    view_noise: float = 0.5
    obs_noise: float = 0.0
    map_seed: int = 0

    def __post_init__(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")

        def _pos(name, allow_zero=False):
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and (
                v >= 0 if allow_zero else v > 0)
            if not ok:
                rng = "[0, inf)" if allow_zero else "(0, inf)"
                raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")

        _int("num_classes", 2)
        _int("latent_dim", 1)
        if self.num_classes > self.latent_dim:
            raise ValueError(
                f"num_classes (K={self.num_classes}) must be <= latent_dim (k={self.latent_dim}) "
                "with the default means mu_c = (Delta/sqrt 2) e_c")
        _pos("separation")
        _pos("sigma")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, got {self.channel!r}")
        if isinstance(self.t, bool) or not (isinstance(self.t, (int, float, np.floating, np.integer))
                                            and 0.0 <= self.t <= 1.0):
            raise ValueError(f"t must be a number in [0, 1], got {self.t!r}")
        if self.n_attenuated is None:
            object.__setattr__(self, "n_attenuated", self.latent_dim)
        if (isinstance(self.n_attenuated, bool) or not isinstance(self.n_attenuated, (int, np.integer))
                or not 1 <= self.n_attenuated <= self.latent_dim):
            raise ValueError(
                f"n_attenuated must be an integer in [1, latent_dim={self.latent_dim}], "
                f"got {self.n_attenuated!r}")
        _pos("eta_max", allow_zero=True)
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {self.observation!r}")
        for name in ("d_A", "d_B"):
            _int(name, 1)
            if getattr(self, name) < self.latent_dim:
                raise ValueError(
                    f"{name} must be >= latent_dim={self.latent_dim} (injective maps), "
                    f"got {getattr(self, name)}")
        if self.channel == "rotate" and self.latent_dim < 2:
            raise ValueError("latent_dim must be >= 2 for the rotate channel")
        _pos("view_noise", allow_zero=True)
        _pos("obs_noise", allow_zero=True)
        _int("map_seed", 0)
        # normalise numeric types so equal configs hash equally (static jit argument)
        for name in ("separation", "sigma", "t", "eta_max", "view_noise", "obs_noise"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("num_classes", "latent_dim", "n_attenuated", "d_A", "d_B", "map_seed"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def replace(self, **changes) -> "WorldConfig":
        """A copy with some fields changed (validated again).

        A default J (all coordinates) stays "all coordinates" when latent_dim changes.
        """
        if ("latent_dim" in changes and "n_attenuated" not in changes
                and self.n_attenuated == self.latent_dim):
            changes["n_attenuated"] = None
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ---- exact, config-only quantities (float64 numpy) ---------------------------------
    def class_means(self) -> np.ndarray:
        """G1 means ``mu_c = (Delta / sqrt 2) e_c``, shape (K, k), float64."""
        mu = np.zeros((self.num_classes, self.latent_dim))
        mu[np.arange(self.num_classes), np.arange(self.num_classes)] = self.separation / math.sqrt(2)
        return mu

    def attenuated_mask(self) -> np.ndarray:
        """Indicator of J (the first ``n_attenuated`` coordinates), shape (k,)."""
        mask = np.zeros(self.latent_dim)
        mask[: self.n_attenuated] = 1.0
        return mask

    def input_radius(self, coverage: float = 1e-6) -> float:
        """A radius r, fixed from the config alone, that ``norm(x)`` exceeds with probability
        at most ``coverage`` for every observation the world produces (either modality, views
        included, any t). Used as the clip radius of the theory-track encoder (B4, B5).

        With orthonormal maps and the leaky map (a contraction), ``norm(g(u)) <= norm(u)``;
        every latent fed to g is Gaussian (or, for ``corrupt``, a mixture of such) around a mean
        of norm <= max norm(mu_c) with per-coordinate variance <= sigma^2 + eta_max^2 + sigma_v^2,
        so ``norm(u)^2 / v_max`` is
        stochastically below a noncentral chi-square; the observation noise adds its own
        chi-square term, handled by the triangle inequality with half the coverage each.
        """
        # eta_max counts for every channel, so the radius (hence the encoders) does not depend
        # on the channel and one stage-1 teacher serves every channel of a world.
        v_max = self.sigma ** 2 + self.eta_max ** 2 + self.view_noise ** 2
        nc = float(np.max(np.sum(self.class_means() ** 2, axis=1))) / v_max
        r_latent = math.sqrt(v_max * stats.ncx2.isf(coverage / 2, self.latent_dim, nc))
        d = max(self.d_A, self.d_B)
        r_noise = self.obs_noise * math.sqrt(stats.chi2.isf(coverage / 2, d)) if self.obs_noise else 0.0
        return r_latent + r_noise


def _orthonormal_columns(key, d, k):
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, k)))
    return q * jnp.sign(jnp.diagonal(r))  # unique QR: sign-fix for determinism


@jax.tree_util.register_pytree_node_class
class World:
    """A world: its config (static) and its observation maps (arrays, pytree leaves).

    Attributes:
      config: the :class:`WorldConfig`.
      means: (K, k) class means, float32.
      maps: dict with ``QA (d_A, k)``, ``QB (d_B, k)`` and, for nonlinear observations,
        ``QA1 (k, k)``, ``QB1 (k, k)`` square orthogonal first layers.
    """

    def __init__(self, config: WorldConfig, means, maps):
        self.config = config
        self.means = means
        self.maps = maps

    def tree_flatten(self):
        return (self.means, self.maps), self.config

    @classmethod
    def tree_unflatten(cls, config, children):
        return cls(config, *children)

    def __repr__(self):
        return f"World({self.config})"


def make_world(config: WorldConfig, key: jax.Array | None = None) -> World:
    """Draw the observation maps of a world (G3).

    Args:
      config: the world's :class:`WorldConfig`.
      key: PRNG key for the maps; default ``jax.random.key(config.map_seed)``.

    Returns:
      a :class:`World`.
    """
    if not isinstance(config, WorldConfig):
        raise ValueError(f"config must be a WorldConfig, got {type(config).__name__}")
    if key is None:
        key = jax.random.key(config.map_seed)
    ka, kb, ka1, kb1 = jax.random.split(key, 4)
    k = config.latent_dim
    maps = {"QA": _orthonormal_columns(ka, config.d_A, k), "QB": _orthonormal_columns(kb, config.d_B, k)}
    if config.observation == "nonlinear":
        maps["QA1"] = _orthonormal_columns(ka1, k, k)
        maps["QB1"] = _orthonormal_columns(kb1, k, k)
    return World(config, jnp.asarray(config.class_means(), jnp.float32), maps)


# ---- G2 channels ----------------------------------------------------------------------------

def rotation_matrix(t, k: int) -> jax.Array:
    """R_t: rotation by angle ``t pi / 2`` in the plane of ``e_1, e_2`` (k x k)."""
    a = jnp.asarray(t, jnp.float32) * (jnp.pi / 2)
    c, s = jnp.cos(a), jnp.sin(a)
    r = jnp.eye(k, dtype=jnp.float32)
    r = r.at[0, 0].set(c).at[0, 1].set(-s).at[1, 0].set(s).at[1, 1].set(c)
    return r


def apply_channel(world: World, key: jax.Array, s: jax.Array, t=None) -> jax.Array:
    """The modality channel ``s_B = T_t(s)`` of G2, row-wise on ``s`` (n, k).

    ``t`` defaults to ``world.config.t`` and may be a traced scalar.
    """
    cfg = world.config
    t = cfg.t if t is None else t
    xi = jax.random.normal(key, s.shape, s.dtype)
    if cfg.channel == "attenuate":
        mask = jnp.asarray(cfg.attenuated_mask(), s.dtype)
        a = 1.0 - t
        mixed = a * s + jnp.sqrt(jnp.maximum(1.0 - a * a, 0.0)) * cfg.sigma * xi
        return jnp.where(mask > 0, mixed, s)
    if cfg.channel == "noise":
        return s + (t * cfg.eta_max) * xi
    if cfg.channel == "corrupt":
        k1, k2 = jax.random.split(key)
        replace = jax.random.uniform(k1, s.shape[:-1] + (1,)) < t
        return jnp.where(replace, cfg.sigma * jax.random.normal(k2, s.shape, s.dtype), s)
    if cfg.channel == "rotate":
        return s @ rotation_matrix(t, cfg.latent_dim).T
    raise AssertionError(cfg.channel)  # unreachable: validated in WorldConfig


# ---- G3 observation maps -----------------------------------------------------------------------

def _leaky(u):
    return jnp.where(u >= 0, u, LEAKY_SLOPE * u)


def observe(world: World, s: jax.Array, modality: str, key: jax.Array | None = None) -> jax.Array:
    """Observation ``x = g(s) + e`` of modality ``"A"`` or ``"B"`` for latents ``s`` (n, k)."""
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    cfg = world.config
    q2 = world.maps["Q" + modality]
    if cfg.observation == "nonlinear":
        s = _leaky(s @ world.maps["Q" + modality + "1"].T)
    x = s @ q2.T
    if cfg.obs_noise > 0:
        if key is None:
            raise ValueError("key is required when obs_noise > 0")
        x = x + cfg.obs_noise * jax.random.normal(key, x.shape, x.dtype)
    return x


# ---- samplers ------------------------------------------------------------------------------------

class Sample(NamedTuple):
    """A labeled paired sample with its latents: y (n,), s (n,k), s_B (n,k), x_A (n,d_A), x_B (n,d_B)."""

    y: jax.Array
    s: jax.Array
    s_B: jax.Array
    x_A: jax.Array
    x_B: jax.Array


def _check_n(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def sample_latents(world: World, key: jax.Array, n: int):
    """G1: ``(y, s)`` with y (n,) int32 uniform over K and s (n, k) float32."""
    _check_n("n", n)
    cfg = world.config
    ky, ks = jax.random.split(key)
    y = jax.random.randint(ky, (n,), 0, cfg.num_classes)
    s = world.means[y] + cfg.sigma * jax.random.normal(ks, (n, cfg.latent_dim))
    return y, s


def sample(world: World, key: jax.Array, n: int, t=None) -> Sample:
    """A labeled paired sample (both modalities, labels, latents): the test set of every stage."""
    k_lat, k_ch, k_a, k_b = jax.random.split(key, 4)
    y, s = sample_latents(world, k_lat, n)
    s_b = apply_channel(world, k_ch, s, t)
    return Sample(y, s, s_b, observe(world, s, "A", k_a), observe(world, s_b, "B", k_b))


def sample_source(world: World, key: jax.Array, M: int) -> jax.Array:
    """Stage 1 data: M unlabeled source latents (M, k); views come from :func:`views`."""
    _, s = sample_latents(world, key, M)
    return s


def views(world: World, key: jax.Array, latents: jax.Array, modality: str = "A"):
    """G4: two independent views ``g(s + nu)``, ``nu ~ N(0, sigma_v^2 I)``, of each latent row."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    sv = world.config.view_noise
    v1 = observe(world, latents + sv * jax.random.normal(k1, latents.shape), modality, k3)
    v2 = observe(world, latents + sv * jax.random.normal(k2, latents.shape), modality, k4)
    return v1, v2


def sample_pairs(world: World, key: jax.Array, m: int, t=None):
    """Stage 2 data: m unlabeled pairs ``(x_A, x_B)`` of shapes (m, d_A), (m, d_B)."""
    smp = sample(world, key, m, t)
    return smp.x_A, smp.x_B


def sample_target_labeled(world: World, key: jax.Array, n: int, t=None):
    """Stage 3 data: n labeled target samples ``(x_B, y)``."""
    smp = sample(world, key, n, t)
    return smp.x_B, smp.y


def sample_target_latents(world: World, key: jax.Array, n: int, t=None) -> jax.Array:
    """Unlabeled target latents s_B (n, k), for the target-SSL baseline's views."""
    k_lat, k_ch = jax.random.split(key)
    _, s = sample_latents(world, k_lat, n)
    return apply_channel(world, k_ch, s, t)
