"""Synthetic source/target worlds whose modality distance is set by hand (docs/theory.md, G1-G8).

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
  ``R^(k+q)``; the target's own SSL views resample a fraction ``nuisance_rho`` of ``nu``;
* G8 a source that forgets (``source_t = t_A > 0``): the source latent is
  ``s_A = attenuate(s; J_A, t_A)`` (``source_axes`` J_A, default the class axes), beside the
  target's channel, so the source can lose label information the target keeps.

The exact distances and Bayes errors (G2, G5, G5b, G8) and the latent mutual informations
(G8: ``I(s_A; s_B)``, ``I(s_B; y_B)`` by Monte Carlo with the true densities,
``I(s_A; s_B | y)`` in closed form) are in :mod:`.ground_truth`, built on the closed forms and
quadrature of :mod:`.exact`.

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

A registered channel runs through :func:`sample`, :func:`cmcd_theory.sweeps.sweep.run_sweep` and
:func:`cmcd_theory.certify.certify` with no change to the package (the config keeps the
channel's *name*, so it stays a hashable static ``jit`` argument).

:class:`WorldConfig` is an immutable, validated description; :func:`make_world` draws the
observation maps from an explicit key and returns a :class:`World` pytree (arrays are leaves,
the config is static), so every sampler runs under ``jit`` and ``vmap``. The channel knob ``t``
can be passed to the samplers as a traced scalar, which lets a sweep ``vmap`` over distances.

Modules, bottom to top (each imports only modules listed before it):

* ``exact``         closed forms and G5b's quadrature (``gaussian_axes_bayes_error``), float64
* ``config``        ``WorldConfig``, ``World``, the ``Channel`` interface and its registry
* ``channels``      the six built-in channels (G2, G7), registered on import
* ``sampling``      ``make_world``, the channel, the observation maps and the samplers (G1-G4)
* ``ground_truth``  ``tv_latent``, ``bayes_error``, ``pair_agreement``, the latent mutual
                    informations, and their Monte Carlo checks
* ``mfeat``         the UCI multiple-features data (a real two-modality world), imported on demand
"""

from cmcd_theory.worlds.channels import Attenuate as Attenuate
from cmcd_theory.worlds.channels import Corrupt as Corrupt
from cmcd_theory.worlds.channels import Mispair as Mispair
from cmcd_theory.worlds.channels import Noise as Noise
from cmcd_theory.worlds.channels import Resample as Resample
from cmcd_theory.worlds.channels import Rotate as Rotate
from cmcd_theory.worlds.channels import rotation_matrix as rotation_matrix
from cmcd_theory.worlds.config import BUILTIN_CHANNELS as BUILTIN_CHANNELS
from cmcd_theory.worlds.config import CHANNELS as CHANNELS
from cmcd_theory.worlds.config import DISTANCE_CHANNELS as DISTANCE_CHANNELS
from cmcd_theory.worlds.config import OBSERVATIONS as OBSERVATIONS
from cmcd_theory.worlds.config import PAIRING_CHANNELS as PAIRING_CHANNELS
from cmcd_theory.worlds.config import Channel as Channel
from cmcd_theory.worlds.config import World as World
from cmcd_theory.worlds.config import WorldConfig as WorldConfig
from cmcd_theory.worlds.config import get_channel as get_channel
from cmcd_theory.worlds.config import register_channel as register_channel
from cmcd_theory.worlds.config import unregister_channel as unregister_channel
from cmcd_theory.worlds.exact import QUAD_TOL as QUAD_TOL
from cmcd_theory.worlds.exact import gaussian_axes_bayes_error as gaussian_axes_bayes_error
from cmcd_theory.worlds.ground_truth import Interval as Interval
from cmcd_theory.worlds.ground_truth import LatentMutualInformation as LatentMutualInformation
from cmcd_theory.worlds.ground_truth import bayes_error as bayes_error
from cmcd_theory.worlds.ground_truth import bayes_error_exact as bayes_error_exact
from cmcd_theory.worlds.ground_truth import bayes_error_monte_carlo as bayes_error_monte_carlo
from cmcd_theory.worlds.ground_truth import (
    latent_conditional_mutual_information as latent_conditional_mutual_information,
)
from cmcd_theory.worlds.ground_truth import latent_logpdf as latent_logpdf
from cmcd_theory.worlds.ground_truth import latent_mutual_information as latent_mutual_information
from cmcd_theory.worlds.ground_truth import pair_agreement as pair_agreement
from cmcd_theory.worlds.ground_truth import sample_latent_np as sample_latent_np
from cmcd_theory.worlds.ground_truth import tv_latent as tv_latent
from cmcd_theory.worlds.ground_truth import tv_latent_monte_carlo as tv_latent_monte_carlo
from cmcd_theory.worlds.ground_truth import tv_latent_per_class as tv_latent_per_class
from cmcd_theory.worlds.ground_truth import tv_monte_carlo as tv_monte_carlo
from cmcd_theory.worlds.sampling import LEAKY_SLOPE as LEAKY_SLOPE
from cmcd_theory.worlds.sampling import SOURCE_CHANNEL_TAG as SOURCE_CHANNEL_TAG
from cmcd_theory.worlds.sampling import Sample as Sample
from cmcd_theory.worlds.sampling import apply_channel as apply_channel
from cmcd_theory.worlds.sampling import make_world as make_world
from cmcd_theory.worlds.sampling import observe as observe
from cmcd_theory.worlds.sampling import sample as sample
from cmcd_theory.worlds.sampling import sample_latents as sample_latents
from cmcd_theory.worlds.sampling import sample_pairs as sample_pairs
from cmcd_theory.worlds.sampling import sample_source as sample_source
from cmcd_theory.worlds.sampling import sample_target_labeled as sample_target_labeled
from cmcd_theory.worlds.sampling import sample_target_latents as sample_target_latents
from cmcd_theory.worlds.sampling import source_channel as source_channel
from cmcd_theory.worlds.sampling import transmit as transmit
from cmcd_theory.worlds.sampling import views as views
