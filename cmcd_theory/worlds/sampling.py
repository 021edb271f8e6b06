"""Drawing from a world: its observation maps, its channel and its samplers (G1-G4, G6, G7).

* :func:`make_world` draws the observation maps of a :class:`~cmcd_theory.worlds.config.WorldConfig`
  and returns a :class:`~cmcd_theory.worlds.config.World` pytree (arrays are leaves, the config
  is static), so every sampler runs under ``jit`` and ``vmap``;
* :func:`transmit` / :func:`apply_channel`: the channel ``(y_B, s_B) = T_t(y, s)`` (G2, G7);
* :func:`source_channel`: the source's own channel ``s_A = attenuate(s; J_A, t_A)`` (G8; the
  identity, drawing nothing, when ``source_t = 0``);
* :func:`observe`: the observation maps ``x = g(u) + e`` (G3; ``u = [s_B, nu]`` on a nuisance
  world, G6);
* the samplers of each stage: :func:`sample` (a labeled paired :class:`Sample`),
  :func:`sample_latents`, :func:`sample_source`, :func:`sample_pairs`,
  :func:`sample_target_labeled`, :func:`sample_target_latents`, and :func:`views` (G4).

Every sampler takes an explicit key; the channel knob ``t`` may be a traced scalar, which lets
a sweep ``vmap`` over distances.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory.worlds.config import PAIRING_CHANNELS, World, WorldConfig, get_channel

LEAKY_SLOPE = 0.2  # slope of the strictly monotone leaky activation of the nonlinear map (G3)

#: ``fold_in`` tag of the source channel's noise (G8): a sampler draws it from
#: ``fold_in(k, SOURCE_CHANNEL_TAG)`` of one of its own keys, a stream no other draw uses, and
#: only when the world has a source channel, so a world without one draws what it always drew.
SOURCE_CHANNEL_TAG = 2_000_002


def _orthonormal_columns(key, d, k):
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, k)))
    return q * jnp.sign(jnp.diagonal(r))  # unique QR: sign-fix for determinism


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
    maps = {
        "QA": _orthonormal_columns(ka, config.d_A, k),
        "QB": _orthonormal_columns(kb, config.d_B, kb_in),
    }
    if config.observation == "nonlinear":
        maps["QA1"] = _orthonormal_columns(ka1, k, k)
        maps["QB1"] = _orthonormal_columns(kb1, kb_in, kb_in)
    return World(config, jnp.asarray(config.class_means(), jnp.float32), maps)


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


def source_channel(world: World, key: jax.Array, s: jax.Array) -> jax.Array:
    """The source latent ``s_A`` of G8 from the shared latent ``s`` (n, k).

    On j in J_A: ``s_A,j = (1 - t_A) s_j + sqrt(1 - (1 - t_A)^2) sigma xi_j``, xi ~ N(0, I)
    drawn from ``key`` (independent of everything else); elsewhere ``s_A,j = s_j``. The
    attenuate channel's form (G2) with its own set and knob, so law(s_A | y) is
    ``N(mu_y - t_A P_{J_A} mu_y, sigma^2 I)``. Without a source channel
    (:attr:`~cmcd_theory.worlds.WorldConfig.has_source_channel` false) it returns ``s``
    itself and draws nothing: the branch is on the static config, not in traced code.
    """
    cfg = world.config
    if not cfg.has_source_channel:
        return s
    xi = jax.random.normal(key, s.shape, s.dtype)
    mask = jnp.asarray(cfg.source_mask(), s.dtype)
    a = 1.0 - cfg.source_t
    return jnp.where(mask > 0, a * s + math.sqrt(max(1.0 - a * a, 0.0)) * cfg.sigma * xi, s)


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
        raise ValueError(
            f"s must have {q2.shape[1]} columns for modality {modality} "
            f"(latent_dim{' + nuisance_dim' if modality == 'B' and cfg.nuisance_dim else ''}), "
            f"got shape {s.shape}"
        )
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

    Fields: ``y`` (n,) the source's label; ``s`` (n, k) the shared latent of G1; ``s_B``
    (n, k); ``x_A`` (n, d_A) ``= g_A(s_A)``; ``x_B`` (n, d_B); ``y_B`` (n,) the target's label
    (``y`` unless the channel changes labels, G7 mispair); ``u_B`` (n, k + q) the input of g_B,
    ``[s_B, nu]`` on a nuisance world (G6), else ``s_B``; ``s_A`` (n, k) the source latent,
    ``s`` itself unless the world has a source channel (G8).
    """

    y: jax.Array
    s: jax.Array
    s_B: jax.Array
    x_A: jax.Array
    x_B: jax.Array
    y_B: jax.Array
    u_B: jax.Array
    s_A: jax.Array


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
    nu = cfg.nuisance_scale * jax.random.normal(
        key, s_b.shape[:-1] + (cfg.nuisance_dim,), s_b.dtype
    )
    return jnp.concatenate([s_b, nu], axis=-1)


def sample(world: World, key: jax.Array, n: int, t=None) -> Sample:
    """A labeled paired sample (both modalities, labels, latents): the test set of every stage.

    The target's channel acts on the shared latent s (G2, G7), the source's own channel
    (G8) on s too, with independent noise: ``x_A = g_A(s_A)``, ``x_B = g_B(s_B)``.
    """
    k_lat, k_ch, k_a, k_b = jax.random.split(key, 4)
    y, s = sample_latents(world, k_lat, n)
    y_b, s_b = transmit(world, k_ch, y, s, t)
    u_b = _with_nuisance(world, jax.random.fold_in(k_b, 1), s_b)
    s_a = source_channel(world, jax.random.fold_in(k_a, SOURCE_CHANNEL_TAG), s)
    return Sample(
        y, s, s_b, observe(world, s_a, "A", k_a), observe(world, u_b, "B", k_b), y_b, u_b, s_a
    )


def sample_source(world: World, key: jax.Array, M: int) -> jax.Array:
    """Stage 1 data: M unlabeled source latents ``s_A`` (M, k) (G8; ``s`` without a source
    channel); views come from :func:`views`."""
    _, s = sample_latents(world, key, M)
    return source_channel(world, jax.random.fold_in(key, SOURCE_CHANNEL_TAG), s)


def views(world: World, key: jax.Array, latents: jax.Array, modality: str = "A"):
    """G4: two independent views ``g(s + sigma_v xi)`` of each latent row.

    The rows are the modality's own latents: for ``"A"`` the source latents ``s_A`` of
    :func:`sample_source` or :attr:`Sample.s_A` (G8), for ``"B"`` the target's inputs ``u_B``.

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
            u = jnp.concatenate(
                [
                    s + sv * jax.random.normal(kn, s.shape),
                    math.sqrt(1.0 - rho) * nu + math.sqrt(rho) * fresh,
                ],
                axis=-1,
            )
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
