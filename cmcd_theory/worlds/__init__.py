"""Synthetic source/target worlds whose modality distance is set by hand (docs/theory.md, G1-G7).

A world is a generative model of paired modalities:

* G1 latent classes: ``y ~ Uniform[K]``, ``s | y ~ N(mu_y, sigma^2 I_k)``, with
  ``mu_c = (Delta / sqrt 2) e_c`` so every pair of means is ``Delta`` apart;
* G2 / G7 a modality channel ``(y_B, s_B) = T_t(y, s)`` with a knob ``t in [0, 1]``; ``t = 0``
  means both modalities carry the same latent. Distance channels (G2: ``attenuate``,
  ``noise``, ``corrupt``, ``rotate``) move ``TV_latent``; pairing channels (G7: ``resample``,
  ``mispair``) keep ``TV_latent = 0`` and break the correspondence of a pair;
* G3 observation maps ``x_A = g_A(s) + e_A``, ``x_B = g_B(s_B) + e_B``, linear (orthonormal
  columns) or nonlinear injective (``Q2 leaky(Q1 s)``);
* G4 views ``v = g(s + nu)`` for the self-supervised stages;
* G6 a nuisance-laden target (``nuisance_dim = q > 0``): ``x_B = g_B(s_B, nu)``,
  ``nu ~ N(0, sigma_nu^2 I_q)`` independent of everything else, ``g_B`` injective on
  ``R^(k+q)``; the target's own SSL views resample a fraction ``nuisance_rho`` of ``nu``.

The exact distances and Bayes errors (G5, G5b) live in :mod:`cmcd_theory.divergences`.

Channels are an extension point. A channel is a :class:`Channel` object that knows how to
apply itself to latents (jax, explicit key, knob t) and its exact ground truth: the per-class
``TV_latent``, the target's Bayes error where known (else ``None``), the pair agreement
``P(y_B = y)`` (1 but for label-changing channels) and ``changes_labels``. The six built-in
channels are registered through the same registry a user extends::

    class Shift(worlds.Channel):            # s_B = s + t c e_1, c fixed
        name = "shift"
        def apply(self, world, key, y, s, t):
            return y, s.at[:, 0].add(2.0 * t)
        def tv_latent_per_class(self, config, t):
            return np.full(config.num_classes, 2 * stats.norm.cdf(t / config.sigma) - 1)

    worlds.register_channel(Shift())
    WorldConfig(channel="shift", t=0.5)      # validated against the registry

A registered channel runs through :func:`sample`, :func:`cmcd_theory.sweep.run_sweep` and
:func:`cmcd_theory.certify.certify` with no change to the package (the config keeps the
channel's *name*, so it stays a hashable static ``jit`` argument).

:class:`WorldConfig` is an immutable, validated description; :func:`make_world` draws the
observation maps from an explicit key and returns a :class:`World` pytree (arrays are leaves,
the config is static), so every sampler runs under ``jit`` and ``vmap``. The channel knob ``t``
can be passed to the samplers as a traced scalar, which lets a sweep ``vmap`` over distances.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from cmcd_theory import validation as V

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
      observation: ``linear`` or ``nonlinear`` observation maps (G3); ``None`` (default):
        ``nonlinear`` on a nuisance world (``nuisance_dim > 0``), else ``linear``.
      d_A, d_B: observation dimensions, ``d_A >= latent_dim``, ``d_B >= latent_dim +
        nuisance_dim``.
      view_noise: sigma_v >= 0 of the self-supervised views (G4).
      obs_noise: standard deviation >= 0 of the additive observation noise e_A, e_B.
      map_seed: seed of the observation maps (part of the world's definition, not of the samples).
      nuisance_dim: q >= 0, dimension of the target's nuisance ``nu`` (G6); 0: no nuisance.
      nuisance_scale: sigma_nu > 0, ``nu ~ N(0, sigma_nu^2 I_q)``.
      nuisance_rho: rho in [0, 1], the fraction of ``nu`` resampled between the target's own
        SSL views, ``nu' = sqrt(1 - rho) nu + sqrt(rho) nu_new`` (0: views share the nuisance).
    """

    num_classes: int = 4
    latent_dim: int = 8
    separation: float = 3.5
    sigma: float = 1.0
    channel: str = "attenuate"
    t: float = 0.0
    n_attenuated: int | None = None
    eta_max: float = 3.0
    observation: str | None = None
    d_A: int = 32
    d_B: int = 24
    view_noise: float = 0.5
    obs_noise: float = 0.0
    map_seed: int = 0
    nuisance_dim: int = 0
    nuisance_scale: float = 1.0
    nuisance_rho: float = 1.0

    def __post_init__(self):
        def _int(name, lo):
            V.integer(name, getattr(self, name), lo=lo)

        def _pos(name, allow_zero=False):
            V.real(name, getattr(self, name), lo=0.0, lo_open=not allow_zero)

        _int("num_classes", 2)
        _int("latent_dim", 1)
        if self.num_classes > self.latent_dim:
            raise ValueError(
                f"num_classes (K={self.num_classes}) must be <= latent_dim (k={self.latent_dim}) "
                "with the default means mu_c = (Delta/sqrt 2) e_c")
        _pos("separation")
        _pos("sigma")
        if not isinstance(self.channel, str):
            raise ValueError(f"channel must be one of {CHANNELS}, got {self.channel!r}")
        V.choice("channel", self.channel, tuple(CHANNELS))
        V.unit_interval("t", self.t)
        if self.n_attenuated is None:
            object.__setattr__(self, "n_attenuated", self.latent_dim)
        V.integer("n_attenuated", self.n_attenuated, lo=1, hi=self.latent_dim)
        _pos("eta_max", allow_zero=True)
        _int("nuisance_dim", 0)
        _pos("nuisance_scale")
        V.unit_interval("nuisance_rho", self.nuisance_rho)
        if self.observation is None:
            object.__setattr__(self, "observation", "nonlinear" if self.nuisance_dim > 0 else "linear")
        V.choice("observation", self.observation, OBSERVATIONS)
        for name, need in (("d_A", self.latent_dim), ("d_B", self.latent_dim + self.nuisance_dim)):
            _int(name, 1)
            if getattr(self, name) < need:
                raise ValueError(
                    f"{name} must be >= {need} (latent_dim"
                    f"{' + nuisance_dim' if name == 'd_B' and self.nuisance_dim else ''}; "
                    f"injective maps), got {getattr(self, name)}")
        get_channel(self.channel).check(self)
        _pos("view_noise", allow_zero=True)
        _pos("obs_noise", allow_zero=True)
        _int("map_seed", 0)
        # normalise numeric types so equal configs hash equally (static jit argument)
        for name in ("separation", "sigma", "t", "eta_max", "view_noise", "obs_noise",
                     "nuisance_scale", "nuisance_rho"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("num_classes", "latent_dim", "n_attenuated", "d_A", "d_B", "map_seed",
                     "nuisance_dim"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def replace(self, **changes) -> "WorldConfig":
        """A copy with some fields changed (validated again).

        A default J (all coordinates) stays "all coordinates" when latent_dim changes.
        """
        if ("latent_dim" in changes and "n_attenuated" not in changes
                and self.n_attenuated == self.latent_dim):
            changes["n_attenuated"] = None
        if ("nuisance_dim" in changes and "observation" not in changes
                and self.observation == ("nonlinear" if self.nuisance_dim > 0 else "linear")):
            changes["observation"] = None  # the default map kind follows the nuisance
        return dataclasses.replace(self, **changes)

    @property
    def target_input_dim(self) -> int:
        """Dimension of the input of g_B: ``k + q`` (latent and nuisance, G6)."""
        return self.latent_dim + self.nuisance_dim

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
        # the nuisance (G6) is a third term: norm([s, nu]) <= norm(s) + norm(nu), nu / sigma_nu
        # chi-square(q) in norm squared (the views' nu' has the law of nu)
        c_lat = coverage / 2 if self.nuisance_dim == 0 else coverage / 4
        r_latent = math.sqrt(v_max * stats.ncx2.isf(c_lat, self.latent_dim, nc))
        if self.nuisance_dim:
            r_latent += self.nuisance_scale * math.sqrt(stats.chi2.isf(coverage / 4, self.nuisance_dim))
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
      maps: dict with ``QA (d_A, k)``, ``QB (d_B, k + q)`` and, for nonlinear observations,
        ``QA1 (k, k)``, ``QB1 (k + q, k + q)`` square orthogonal first layers (q the nuisance
        dimension of G6, 0 by default).
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
    k, kb_in = config.latent_dim, config.target_input_dim
    maps = {"QA": _orthonormal_columns(ka, config.d_A, k),
            "QB": _orthonormal_columns(kb, config.d_B, kb_in)}
    if config.observation == "nonlinear":
        maps["QA1"] = _orthonormal_columns(ka1, k, k)
        maps["QB1"] = _orthonormal_columns(kb1, kb_in, kb_in)
    return World(config, jnp.asarray(config.class_means(), jnp.float32), maps)


# ---- G2, G7 channels: an extension point ------------------------------------------------------

class Channel:
    """A modality channel ``(y, s) -> (y_B, s_B)`` with knob ``t`` and its exact ground truth.

    Subclass it, set :attr:`name`, implement :meth:`apply` and :meth:`tv_latent_per_class`
    (and, where known, :meth:`bayes_error_B` and :meth:`law_B`), then
    :func:`register_channel` an instance: ``WorldConfig(channel=name)`` then runs through every
    sampler, :func:`cmcd_theory.sweep.run_sweep` and :func:`cmcd_theory.certify.certify` with no
    change to the package. Instances are looked up by name at trace time, so a
    :class:`WorldConfig` stays a hashable static ``jit`` argument; ``t`` may be a traced
    scalar inside :meth:`apply`, and ``t = 0`` should be the identity (G2's convention).

    Attributes:
      name: the registry key (``WorldConfig.channel``).
      changes_labels: whether the target's label ``y_B`` can differ from the source's ``y``
        (``mispair``); then ``pair_agreement`` is below 1.
    """

    name: str = ""
    changes_labels: bool = False

    def check(self, config: "WorldConfig") -> None:
        """Extra validation of a config using this channel (raise ``ValueError`` naming the field)."""

    def apply(self, world: "World", key: jax.Array, y: jax.Array, s: jax.Array, t) -> tuple:
        """``(y_B, s_B)`` for labels ``y`` (n,) and latents ``s`` (n, k); jax, explicit key."""
        raise NotImplementedError

    def tv_latent_per_class(self, config: "WorldConfig", t: float) -> np.ndarray:
        """Exact ``TV(law(s | y), law(s_B | y_B = y))`` per class, shape (K,), float64."""
        raise NotImplementedError

    def bayes_error_B(self, config: "WorldConfig", t: float) -> float | None:
        """Exact eps*_B (Bayes error of ``y_B`` from ``s_B``), or ``None`` where unknown."""
        return None

    def pair_agreement(self, config: "WorldConfig", t: float) -> float:
        """``P(y_B = y)``, the class agreement of a pair: 1 unless the channel changes labels."""
        return 1.0

    def law_B(self, config: "WorldConfig", t: float) -> list | None:
        """The exact law of ``s_B`` given ``y_B`` as a mixture of isotropic Gaussians,
        ``[(weight, means (K, k), std), ...]`` (float64), or ``None`` where unknown. Used by
        the Monte Carlo checks and, for one component, the Gaussian track of B1b."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict = {}


class _ChannelNames(Sequence):
    """The registered channel names: a live, read-only sequence (``in``, iteration, len)."""

    def __getitem__(self, i):
        return tuple(_REGISTRY)[i]

    def __len__(self):
        return len(_REGISTRY)

    def __repr__(self):
        return repr(tuple(_REGISTRY))


CHANNELS = _ChannelNames()


def register_channel(channel: Channel, *, replace: bool = False) -> Channel:
    """Add a :class:`Channel` instance to the registry under ``channel.name``.

    Args:
      channel: an instance of a :class:`Channel` subclass.
      replace: allow replacing a registered channel of the same name (never a built-in one).

    Returns:
      the channel (so it can be used as a decorator-like one-liner).
    """
    if not isinstance(channel, Channel):
        raise ValueError(f"channel must be a Channel instance, got {type(channel).__name__}")
    name = channel.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"channel.name must be an identifier string, got {name!r}")
    if name in _REGISTRY and (not replace or name in BUILTIN_CHANNELS):
        raise ValueError(f"channel.name {name!r} is already registered"
                         + (" (built-in)" if name in BUILTIN_CHANNELS else "; pass replace=True"))
    _REGISTRY[name] = channel
    return channel


def unregister_channel(name: str) -> None:
    """Remove a user channel from the registry (built-in channels stay)."""
    if name in BUILTIN_CHANNELS:
        raise ValueError(f"name {name!r} is a built-in channel and cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"name {name!r} is not a registered channel; registered: {CHANNELS}")
    del _REGISTRY[name]


def get_channel(name: str) -> Channel:
    """The registered :class:`Channel` of that name."""
    if name not in _REGISTRY:
        raise ValueError(f"channel must be one of {CHANNELS}, got {name!r}")
    return _REGISTRY[name]


def rotation_matrix(t, k: int) -> jax.Array:
    """R_t: rotation by angle ``t pi / 2`` in the plane of ``e_1, e_2`` (k x k)."""
    a = jnp.asarray(t, jnp.float32) * (jnp.pi / 2)
    c, s = jnp.cos(a), jnp.sin(a)
    r = jnp.eye(k, dtype=jnp.float32)
    r = r.at[0, 0].set(c).at[0, 1].set(-s).at[1, 0].set(s).at[1, 1].set(c)
    return r


def _rotation_matrix_np(t: float, k: int) -> np.ndarray:
    a = t * math.pi / 2
    r = np.eye(k)
    r[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return r


def _tv_equal_cov(dist, sigma):
    """TV between N(a, s^2 I) and N(b, s^2 I) with norm(a - b) = dist: 2 Phi(dist / 2s) - 1."""
    return 2.0 * special.ndtr(np.asarray(dist, np.float64) / (2.0 * sigma)) - 1.0


def _axes_bayes(config: "WorldConfig", a, v: float) -> float:
    from cmcd_theory.divergences import gaussian_axes_bayes_error  # G5b quadrature
    return gaussian_axes_bayes_error(a, v)


def _source_axes(config: "WorldConfig") -> np.ndarray:
    return np.full(config.num_classes, config.separation / math.sqrt(2))


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
        return _tv_equal_cov(t * np.linalg.norm(mu * config.attenuated_mask(), axis=1), config.sigma)

    def bayes_error_B(self, config, t):
        mask = config.attenuated_mask()[: config.num_classes]  # class c lives on axis e_c
        return _axes_bayes(config, _source_axes(config) * (1.0 - t * mask), config.sigma ** 2)

    def law_B(self, config, t):
        mu = config.class_means()
        return [(1.0, mu - t * mu * config.attenuated_mask(), config.sigma)]


class Noise(Channel):
    """G2 noise: ``s + eta xi`` with ``eta = t eta_max``."""

    name = "noise"

    def apply(self, world, key, y, s, t):
        xi = jax.random.normal(key, s.shape, s.dtype)
        return y, s + (t * world.config.eta_max) * xi

    def tv_latent_per_class(self, config, t):
        k = config.latent_dim
        s1, s2 = config.sigma, math.sqrt(config.sigma ** 2 + (t * config.eta_max) ** 2)
        if s2 == s1:
            return np.zeros(config.num_classes)
        r2 = 2 * k * math.log(s2 / s1) * s1 ** 2 * s2 ** 2 / (s2 ** 2 - s1 ** 2)
        tv = stats.chi2.cdf(r2 / s1 ** 2, k) - stats.chi2.cdf(r2 / s2 ** 2, k)
        return np.full(config.num_classes, tv)

    def bayes_error_B(self, config, t):
        return _axes_bayes(config, _source_axes(config), config.sigma ** 2 + (t * config.eta_max) ** 2)

    def law_B(self, config, t):
        return [(1.0, config.class_means(), math.sqrt(config.sigma ** 2 + (t * config.eta_max) ** 2))]


class Corrupt(Channel):
    """G2 corrupt: with probability t the latent is replaced by a label-free N(0, sigma^2 I)."""

    name = "corrupt"

    def apply(self, world, key, y, s, t):
        k1, k2 = jax.random.split(key)
        replace = jax.random.uniform(k1, s.shape[:-1] + (1,)) < t
        return y, jnp.where(replace, world.config.sigma * jax.random.normal(k2, s.shape, s.dtype), s)

    def tv_latent_per_class(self, config, t):
        return t * _tv_equal_cov(np.linalg.norm(config.class_means(), axis=1), config.sigma)

    def bayes_error_B(self, config, t):
        # G5b mixture rule: the shared N(0, sigma^2 I) part leaves the clean Bayes rule, which
        # errs with probability 1 - 1/K on a replaced latent (equal-norm means)
        clean = _axes_bayes(config, _source_axes(config), config.sigma ** 2)
        return (1.0 - t) * clean + t * (1.0 - 1.0 / config.num_classes)

    def law_B(self, config, t):
        mu = config.class_means()
        return [(1.0 - t, mu, config.sigma), (t, np.zeros_like(mu), config.sigma)]


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
        return _axes_bayes(config, _source_axes(config), config.sigma ** 2)  # orthonormal axes

    def law_B(self, config, t):
        return [(1.0, config.class_means() @ _rotation_matrix_np(t, config.latent_dim).T, config.sigma)]


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
        return _axes_bayes(config, _source_axes(config), config.sigma ** 2)

    def law_B(self, config, t):
        return [(1.0, config.class_means(), config.sigma)]


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
        return _axes_bayes(config, _source_axes(config), config.sigma ** 2)

    def pair_agreement(self, config, t):
        return 1.0 - t

    def law_B(self, config, t):
        return [(1.0, config.class_means(), config.sigma)]


BUILTIN_CHANNELS = ("attenuate", "noise", "corrupt", "rotate", "resample", "mispair")
DISTANCE_CHANNELS = ("attenuate", "noise", "corrupt", "rotate")  # G2: TV_latent moves with t
PAIRING_CHANNELS = ("resample", "mispair")  # G7: TV_latent = 0, the correspondence moves
for _cls in (Attenuate, Noise, Corrupt, Rotate, Resample, Mispair):
    _REGISTRY[_cls.name] = _cls()


def transmit(world: World, key: jax.Array, y: jax.Array, s: jax.Array, t=None) -> tuple:
    """The channel of the world on labels ``y`` (n,) and latents ``s`` (n, k): ``(y_B, s_B)``.

    ``t`` defaults to ``world.config.t`` and may be a traced scalar.
    """
    cfg = world.config
    t = cfg.t if t is None else t
    return get_channel(cfg.channel).apply(world, key, y, s, t)


def apply_channel(world: World, key: jax.Array, s: jax.Array, t=None, y=None) -> jax.Array:
    """The modality channel ``s_B = T_t(s)`` of G2, row-wise on ``s`` (n, k).

    ``t`` defaults to ``world.config.t`` and may be a traced scalar. Channels that use the
    class (``resample``, ``mispair``) need ``y``; see :func:`transmit` for ``y_B`` too.
    """
    if y is None:
        if world.config.channel in PAIRING_CHANNELS:
            raise ValueError(f"y is required by the {world.config.channel} channel")
        y = jnp.zeros(s.shape[:-1], jnp.int32)
    return transmit(world, key, y, s, t)[1]


# ---- G3 observation maps -----------------------------------------------------------------------

def _leaky(u):
    return jnp.where(u >= 0, u, LEAKY_SLOPE * u)


def observe(world: World, s: jax.Array, modality: str, key: jax.Array | None = None) -> jax.Array:
    """Observation ``x = g(u) + e`` of modality ``"A"`` or ``"B"``.

    ``u`` is the latent ``s`` (n, k); on a nuisance world (G6) the target's input is the latent
    with its nuisance appended, ``u = [s_B, nu]`` of shape (n, k + q).
    """
    if modality not in ("A", "B"):
        raise ValueError(f"modality must be 'A' or 'B', got {modality!r}")
    cfg = world.config
    q2 = world.maps["Q" + modality]
    if s.shape[-1] != q2.shape[1]:
        raise ValueError(f"s must have {q2.shape[1]} columns for modality {modality} "
                         f"(latent_dim{' + nuisance_dim' if modality == 'B' and cfg.nuisance_dim else ''}), "
                         f"got shape {s.shape}")
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
    """A labeled paired sample with its latents.

    Fields: ``y`` (n,) the source's label; ``s`` (n, k); ``s_B`` (n, k); ``x_A`` (n, d_A);
    ``x_B`` (n, d_B); ``y_B`` (n,) the target's label (``y`` unless the channel changes labels,
    G7 mispair); ``u_B`` (n, k + q) the input of g_B, ``[s_B, nu]`` on a nuisance world (G6),
    else ``s_B``.
    """

    y: jax.Array
    s: jax.Array
    s_B: jax.Array
    x_A: jax.Array
    x_B: jax.Array
    y_B: jax.Array
    u_B: jax.Array


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


def _with_nuisance(world: World, key: jax.Array, s_b: jax.Array) -> jax.Array:
    """``[s_B, nu]`` with ``nu ~ N(0, sigma_nu^2 I_q)`` (G6); ``s_B`` itself when q = 0."""
    cfg = world.config
    if cfg.nuisance_dim == 0:
        return s_b
    nu = cfg.nuisance_scale * jax.random.normal(key, s_b.shape[:-1] + (cfg.nuisance_dim,), s_b.dtype)
    return jnp.concatenate([s_b, nu], axis=-1)


def sample(world: World, key: jax.Array, n: int, t=None) -> Sample:
    """A labeled paired sample (both modalities, labels, latents): the test set of every stage."""
    k_lat, k_ch, k_a, k_b = jax.random.split(key, 4)
    y, s = sample_latents(world, k_lat, n)
    y_b, s_b = transmit(world, k_ch, y, s, t)
    u_b = _with_nuisance(world, jax.random.fold_in(k_b, 1), s_b)
    return Sample(y, s, s_b, observe(world, s, "A", k_a), observe(world, u_b, "B", k_b), y_b, u_b)


def sample_source(world: World, key: jax.Array, M: int) -> jax.Array:
    """Stage 1 data: M unlabeled source latents (M, k); views come from :func:`views`."""
    _, s = sample_latents(world, key, M)
    return s


def views(world: World, key: jax.Array, latents: jax.Array, modality: str = "A"):
    """G4: two independent views ``g(s + sigma_v xi)`` of each latent row.

    On a nuisance world (G6) the target's rows are ``u_B = [s_B, nu]`` (n, k + q) and each view
    also resamples a fraction rho of the nuisance: ``nu' = sqrt(1 - rho) nu + sqrt(rho) nu_new``,
    ``nu_new ~ N(0, sigma_nu^2 I_q)`` (the law of ``nu`` is kept).
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    cfg = world.config
    sv = cfg.view_noise
    k = cfg.latent_dim

    def one(kv, ko):
        if modality == "B" and cfg.nuisance_dim:
            kn, kr = jax.random.split(kv)
            s, nu = latents[:, :k], latents[:, k:]
            fresh = cfg.nuisance_scale * jax.random.normal(kr, nu.shape, nu.dtype)
            rho = cfg.nuisance_rho
            u = jnp.concatenate([s + sv * jax.random.normal(kn, s.shape),
                                 math.sqrt(1.0 - rho) * nu + math.sqrt(rho) * fresh], axis=-1)
        else:
            u = latents + sv * jax.random.normal(kv, latents.shape)
        return observe(world, u, modality, ko)

    return one(k1, k3), one(k2, k4)


def sample_pairs(world: World, key: jax.Array, m: int, t=None):
    """Stage 2 data: m unlabeled pairs ``(x_A, x_B)`` of shapes (m, d_A), (m, d_B)."""
    smp = sample(world, key, m, t)
    return smp.x_A, smp.x_B


def sample_target_labeled(world: World, key: jax.Array, n: int, t=None):
    """Stage 3 data: n labeled target samples ``(x_B, y_B)``."""
    smp = sample(world, key, n, t)
    return smp.x_B, smp.y_B


def sample_target_latents(world: World, key: jax.Array, n: int, t=None) -> jax.Array:
    """Unlabeled target inputs of g_B, ``u_B`` (n, k + q) (``s_B`` when q = 0), for the
    target-SSL baseline's :func:`views`."""
    return sample(world, key, n, t).u_B
