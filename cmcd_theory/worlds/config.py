"""The description of a world and the channel interface it is validated against (G1-G4, G6, G7).

* :class:`WorldConfig`: the immutable, validated description of a world, and its exact
  config-only quantities (class means, the attenuated set J, the source channel's set J_A and
  means (G8), the input radius);
* :class:`World`: a config with its drawn observation maps, a JAX pytree
  (:func:`cmcd_theory.worlds.sampling.make_world` draws it);
* :class:`Channel`: the interface of a modality channel (G2, G7) and its exact ground truth;
* the registry of channels by name: :func:`register_channel`, :func:`unregister_channel`,
  :func:`get_channel`, :data:`CHANNELS`, and the names of the built-in channels.

The three are one module because they refer to one another: a config is validated against the
registry, and a channel's methods take a config and a world. The built-in channels are
:mod:`cmcd_theory.worlds.channels`; importing :mod:`cmcd_theory.worlds` registers them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np

from cmcd_theory import validation as V

OBSERVATIONS = ("linear", "nonlinear")
BUILTIN_CHANNELS = ("attenuate", "noise", "corrupt", "rotate", "resample", "mispair")
DISTANCE_CHANNELS = ("attenuate", "noise", "corrupt", "rotate")  # G2: TV_latent moves with t
PAIRING_CHANNELS = ("resample", "mispair")  # G7: TV_latent = 0, the correspondence moves


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Immutable, validated description of a source/target world (G1-G4, G6, G7).

    The channel ``(y_B, s_B) = T_t(y, s)`` is named by ``channel``; ``t = 0`` is the identity
    for every one of them. The six built-in channels, and what the knob t does:

    * ``attenuate`` (G2): on the coordinates of J, ``s_j -> (1 - t) s_j + sqrt(1 - (1 - t)^2)
      sigma xi_j``; t = 1 replaces J by label-free noise of the same variance;
    * ``noise`` (G2): ``s_B = s + t eta_max xi``, additive noise of scale ``eta = t eta_max``;
    * ``corrupt`` (G2): with probability t the latent is replaced by a label-free
      ``N(0, sigma^2 I)`` draw;
    * ``rotate`` (G2): ``s_B = R_t s``, rotation by ``t pi / 2`` in the plane of ``e_1, e_2``;
    * ``resample`` (G7): with probability t, ``s_B`` is a fresh draw of ``p(s | y)``: the pair
      keeps its class and loses its instance (``TV_latent = 0``);
    * ``mispair`` (G7): with probability t, ``y_B`` is uniform over the other K - 1 classes and
      ``s_B`` a fresh draw of ``p(s | y_B)``: the pair loses its class (``TV_latent = 0``,
      ``P(y_B = y) = 1 - t``).

    The source may have a channel of its own (G8, ``source_t > 0``): ``s_A`` attenuates the
    coordinates J_A of s with knob t_A, independently of the target's channel, so the source
    can lose label information that the target keeps.

    Any channel registered with :func:`register_channel` is accepted too.

    Attributes:
      num_classes: K, number of classes (uniform prior).
      latent_dim: k, latent dimension; the default means need ``K <= k``.
      separation: Delta > 0, distance between every pair of class means.
      sigma: sigma > 0, class-conditional latent standard deviation.
      channel: the name of a registered channel: a built-in one above (default
        ``attenuate``) or a user's.
      t: the channel's knob in [0, 1]; 0 means the modalities share the latent.
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
      source_t: t_A in [0, 1], the knob of the source's own channel (G8): the source latent is
        ``s_A = attenuate(s; J_A, t_A)``, on j in J_A ``(1 - t_A) s_j + sqrt(1 - (1 - t_A)^2)
        sigma xi_j`` (independent noise), elsewhere ``s_j``; 0 (default): ``s_A = s``.
      source_axes: J_A, the latent coordinates the source attenuates, distinct integers in
        [0, k); ``None`` (default): every class axis ``e_c``, c < K (the coordinates that carry
        the class means). Coordinates outside the class axes carry no label information but do
        carry the pair's correlation (G8's mutual informations).
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
    source_t: float = 0.0
    source_axes: tuple[int, ...] | None = None

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
                "with the default means mu_c = (Delta/sqrt 2) e_c"
            )
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
            object.__setattr__(
                self, "observation", "nonlinear" if self.nuisance_dim > 0 else "linear"
            )
        V.choice("observation", self.observation, OBSERVATIONS)
        for name, need in (("d_A", self.latent_dim), ("d_B", self.latent_dim + self.nuisance_dim)):
            _int(name, 1)
            if getattr(self, name) < need:
                raise ValueError(
                    f"{name} must be >= {need} (latent_dim"
                    f"{' + nuisance_dim' if name == 'd_B' and self.nuisance_dim else ''}; "
                    f"injective maps), got {getattr(self, name)}"
                )
        get_channel(self.channel).check(self)
        _pos("view_noise", allow_zero=True)
        _pos("obs_noise", allow_zero=True)
        _int("map_seed", 0)
        self._check_source()
        # normalise numeric types so equal configs hash equally (static jit argument)
        for name in (
            "separation",
            "sigma",
            "t",
            "eta_max",
            "view_noise",
            "obs_noise",
            "nuisance_scale",
            "nuisance_rho",
            "source_t",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in (
            "num_classes",
            "latent_dim",
            "n_attenuated",
            "d_A",
            "d_B",
            "map_seed",
            "nuisance_dim",
        ):
            object.__setattr__(self, name, int(getattr(self, name)))

    def _check_source(self) -> None:
        """Validate the source channel's fields (G8); ``source_axes`` becomes a tuple of ints."""
        V.unit_interval("source_t", self.source_t)
        axes = self.source_axes
        if axes is None:
            return
        k = self.latent_dim
        msg = (
            f"source_axes must be None or distinct integers in [0, {k}) (latent_dim), got {axes!r}"
        )
        if isinstance(axes, (str, bytes)) or not isinstance(axes, (Sequence, np.ndarray)):
            raise ValueError(msg)
        if any(
            isinstance(j, (bool, np.bool_))
            or not isinstance(j, (int, np.integer))
            or not 0 <= j < k
            for j in axes
        ) or len(set(axes)) != len(axes):
            raise ValueError(msg)
        object.__setattr__(self, "source_axes", tuple(int(j) for j in axes))

    def replace(self, **changes) -> WorldConfig:
        """A copy with some fields changed (validated again).

        A default J (all coordinates) stays "all coordinates" when latent_dim changes.
        """
        if (
            "latent_dim" in changes
            and "n_attenuated" not in changes
            and self.n_attenuated == self.latent_dim
        ):
            changes["n_attenuated"] = None
        if (
            "nuisance_dim" in changes
            and "observation" not in changes
            and self.observation == ("nonlinear" if self.nuisance_dim > 0 else "linear")
        ):
            changes["observation"] = None  # the default map kind follows the nuisance
        return dataclasses.replace(self, **changes)

    @property
    def target_input_dim(self) -> int:
        """Dimension of the input of g_B: ``k + q`` (latent and nuisance, G6)."""
        return self.latent_dim + self.nuisance_dim

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (``source_axes`` as a list).

        The source channel's fields (G8) are left out at their defaults (``source_t = 0``,
        ``source_axes = None``), so a world whose source is the identity is described by the
        same dict as a world of G1-G7 and stored sweep configurations keep matching;
        ``WorldConfig(**d)`` rebuilds the config either way.
        """
        d = dataclasses.asdict(self)
        if not self.source_t and self.source_axes is None:
            del d["source_t"], d["source_axes"]
        elif self.source_axes is not None:
            d["source_axes"] = list(self.source_axes)
        return d

    # ---- exact, config-only quantities (float64 numpy) ---------------------------------
    def class_means(self) -> np.ndarray:
        """G1 means ``mu_c = (Delta / sqrt 2) e_c``, shape (K, k), float64."""
        mu = np.zeros((self.num_classes, self.latent_dim))
        mu[np.arange(self.num_classes), np.arange(self.num_classes)] = self.separation / math.sqrt(
            2
        )
        return mu

    def attenuated_mask(self) -> np.ndarray:
        """Indicator of J (the first ``n_attenuated`` coordinates), shape (k,)."""
        mask = np.zeros(self.latent_dim)
        mask[: self.n_attenuated] = 1.0
        return mask

    @property
    def has_source_channel(self) -> bool:
        """Whether the source's own channel (G8) acts: ``source_t > 0`` and J_A non-empty.

        Every sampler branches on it in Python (the config is static), so a world without a
        source channel draws exactly what it draws without the G8 fields.
        """
        return self.source_t > 0 and len(self.source_axis_indices()) > 0

    def source_axis_indices(self) -> tuple[int, ...]:
        """J_A as a tuple of coordinates: ``source_axes``, or the class axes ``0..K-1``."""
        return tuple(range(self.num_classes)) if self.source_axes is None else self.source_axes

    def source_mask(self) -> np.ndarray:
        """Indicator of J_A (G8), shape (k,), float64."""
        mask = np.zeros(self.latent_dim)
        mask[list(self.source_axis_indices())] = 1.0
        return mask

    def source_gain(self) -> np.ndarray:
        """alpha (k,): the source channel's factor, ``1 - t_A`` on J_A and 1 elsewhere (G8).

        Given y, ``s_A = alpha * s + sqrt(1 - alpha^2) sigma xi``, so law(s_A | y) is
        ``N(alpha * mu_y, sigma^2 I)``.
        """
        return 1.0 - self.source_t * self.source_mask()

    def source_class_means(self) -> np.ndarray:
        """Means of ``s_A | y`` (G8): ``mu_c - t_A P_{J_A} mu_c`` (``class_means()`` when the
        source has no channel), shape (K, k), float64."""
        mu = self.class_means()
        return mu - self.source_t * mu * self.source_mask() if self.has_source_channel else mu

    def input_radius(self, coverage: float = 1e-6) -> float:
        """A radius r, fixed from the config alone, that ``norm(x)`` exceeds with probability
        at most ``coverage`` for every observation the world produces (either modality, views
        included, any t). Used as the clip radius of the theory-track encoder (B4, B5).

        With orthonormal maps and the leaky map (a contraction), ``norm(g(u)) <= norm(u)``;
        every latent fed to g is Gaussian (or, for ``corrupt``, a mixture of such) around a mean
        of norm <= max norm(mu_c) with per-coordinate variance <= sigma^2 + eta_max^2 + sigma_v^2,
        so ``norm(u)^2 / v_max`` is
        stochastically below a noncentral chi-square; the observation noise adds its own
        chi-square term, handled by the triangle inequality with half the coverage each. The
        source channel (G8) keeps the variance sigma^2 and shrinks the means, so the same
        radius covers ``x_A = g_A(s_A)``.
        """
        # eta_max counts for every channel, so the radius (hence the encoders) does not depend
        # on the channel and one stage-1 teacher serves every channel of a world.
        from scipy import stats  # here, not at the top: the import costs a command 0.4 s

        v_max = self.sigma**2 + self.eta_max**2 + self.view_noise**2
        nc = float(np.max(np.sum(self.class_means() ** 2, axis=1))) / v_max
        # the nuisance (G6) is a third term: norm([s, nu]) <= norm(s) + norm(nu), nu / sigma_nu
        # chi-square(q) in norm squared (the views' nu' has the law of nu)
        c_lat = coverage / 2 if self.nuisance_dim == 0 else coverage / 4
        r_latent = math.sqrt(v_max * stats.ncx2.isf(c_lat, self.latent_dim, nc))
        if self.nuisance_dim:
            r_latent += self.nuisance_scale * math.sqrt(
                stats.chi2.isf(coverage / 4, self.nuisance_dim)
            )
        d = max(self.d_A, self.d_B)
        r_noise = (
            self.obs_noise * math.sqrt(stats.chi2.isf(coverage / 2, d)) if self.obs_noise else 0.0
        )
        return r_latent + r_noise


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


# ---- G2, G7 channels: an extension point ------------------------------------------------------


class Channel:
    """A modality channel ``(y, s) -> (y_B, s_B)`` with knob ``t`` and its exact ground truth.

    Subclass it, set :attr:`name`, implement :meth:`apply` and :meth:`tv_latent_per_class`
    (and, where known, :meth:`bayes_error_B`, :meth:`law_B` and :meth:`pair_law`), then
    :func:`register_channel` an instance: ``WorldConfig(channel=name)`` then runs through every
    sampler, :func:`cmcd_theory.sweeps.sweep.run_sweep` and :func:`cmcd_theory.certify.certify`
    with no change to the package. Instances are looked up by name at trace time, so a
    :class:`WorldConfig` stays a hashable static ``jit`` argument; ``t`` may be a traced
    scalar inside :meth:`apply`, and ``t = 0`` should be the identity (G2's convention).

    Attributes:
      name: the registry key (``WorldConfig.channel``).
      changes_labels: whether the target's label ``y_B`` can differ from the source's ``y``
        (``mispair``); then ``pair_agreement`` is below 1.
    """

    name: str = ""
    changes_labels: bool = False

    def check(self, config: WorldConfig) -> None:
        """Extra validation of a config using this channel (raise ``ValueError`` naming the
        field)."""

    def apply(self, world: World, key: jax.Array, y: jax.Array, s: jax.Array, t) -> tuple:
        """``(y_B, s_B)`` for labels ``y`` (n,) and latents ``s`` (n, k); jax, explicit key."""
        raise NotImplementedError

    def tv_latent_per_class(self, config: WorldConfig, t: float) -> np.ndarray:
        """Exact ``TV(law(s | y), law(s_B | y_B = y))`` per class, shape (K,), float64."""
        raise NotImplementedError

    def bayes_error_B(self, config: WorldConfig, t: float) -> float | None:
        """Exact eps*_B (Bayes error of ``y_B`` from ``s_B``), or ``None`` where unknown."""
        return None

    def pair_agreement(self, config: WorldConfig, t: float) -> float:
        """``P(y_B = y)``, the class agreement of a pair: 1 unless the channel changes labels."""
        return 1.0

    def law_B(self, config: WorldConfig, t: float) -> list | None:
        """The exact law of ``s_B`` given ``y_B`` as a mixture of isotropic Gaussians,
        ``[(weight, means (K, k), std), ...]`` (float64), or ``None`` where unknown. Used by
        the Monte Carlo checks and, for one component, the Gaussian track of B1b."""
        return None

    def pair_law(self, config: WorldConfig, t: float) -> list | None:
        """The exact joint law of ``(s, s_B, y_B)`` given the class y, coordinate-wise (G8), as
        a mixture ``[(weight, shift, means_B (K, k), var_B, gain (k,)), ...]`` (float64), or
        ``None`` where the channel mixes coordinates or states none.

        A component says: with probability ``weight`` (independent of s), ``y_B = (y + shift)
        mod K`` and ``s_B = means_B[y] + gain * (s - mu_y) + sqrt(var_B - gain^2 sigma^2) xi``,
        xi a standard normal independent of everything else. Used by the latent mutual
        informations (:func:`cmcd_theory.worlds.latent_mutual_information`)."""
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
        raise ValueError(
            f"channel.name {name!r} is already registered"
            + (" (built-in)" if name in BUILTIN_CHANNELS else "; pass replace=True")
        )
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
