"""Export the headline grid's world for :mod:`benchmarks.torch_headline` (a process that must not
import JAX or cmcd_theory, since it is timed whole against the toolkit).

The headline world is ``make_world(WorldConfig(channel="attenuate"))`` at its defaults. What the
PyTorch loop needs of it goes into one ``.npz`` (float32 arrays, float64 scalars):

* ``means`` (K, k): the class means mu_c = (Delta / sqrt 2) e_c (G1);
* ``QA`` (d_A, k), ``QB`` (d_B, k): the linear observation maps x = Q u (G3);
* ``attenuated_mask`` (k,): the indicator of J, the coordinates the attenuate channel acts on;
* ``sigma``: the class-conditional latent standard deviation (also the channel's noise scale);
* ``view_noise``: sigma_v of the self-supervised views (G4);
* ``input_radius``: the clip radius of the linear encoders (``WorldConfig.input_radius()``);
* ``channel``: the channel's name, ``"attenuate"`` (the only one the PyTorch loop implements).

    python -m benchmarks.headline_world world.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from cmcd_theory.worlds import WorldConfig, make_world

#: the headline grid's methods
METHODS = ("cmd", "cmc", "l2")


def headline(quick: bool) -> tuple[list[float], int]:
    """The headline grid's t values and seed count (``quick``: 4 t values, 2 seeds)."""
    n_t, seeds = (4, 2) if quick else (8, 5)
    return [i / (n_t - 1) for i in range(n_t)], seeds


def export_world(path: str, config: WorldConfig = WorldConfig(channel="attenuate")) -> dict:
    """Write the world of ``config`` (default: the headline world) to the ``.npz`` at ``path``.

    Only the case :mod:`benchmarks.torch_headline` implements is accepted: the attenuate
    channel, linear observations without observation noise, no nuisance and no source channel.

    Returns:
      the arrays written, by name.
    """
    if config.channel != "attenuate":
        raise ValueError(f"only the attenuate channel is implemented, got {config.channel!r}")
    if config.observation != "linear" or config.obs_noise > 0:
        raise ValueError("only linear observations without observation noise are implemented")
    if config.nuisance_dim or config.has_source_channel:
        raise ValueError("worlds with a nuisance (G6) or a source channel (G8) are not implemented")
    world = make_world(config)
    arrays = {
        "means": np.asarray(world.means, np.float32),
        "QA": np.asarray(world.maps["QA"], np.float32),
        "QB": np.asarray(world.maps["QB"], np.float32),
        "attenuated_mask": config.attenuated_mask().astype(np.float32),
        "sigma": np.float64(config.sigma),
        "view_noise": np.float64(config.view_noise),
        "input_radius": np.float64(config.input_radius()),
        "channel": np.array(config.channel),
    }
    np.savez(path, **arrays)
    return arrays


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.headline_world", description=__doc__.split("\n")[0]
    )
    p.add_argument("path", help="the .npz to write")
    export_world(p.parse_args(argv).path)


if __name__ == "__main__":
    main()
