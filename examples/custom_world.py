"""A modality channel of one's own, run through the sweep and certified, without touching the
package (README: "Certify your own run"; docs/theory.md, G2).

The channel here shifts every class by the same vector, ``s_B = s + 2 t sigma e_1``. Its
ground truth is exact: given y, ``s_B ~ N(mu_y + 2 t sigma e_1, sigma^2 I)``, so

* ``TV_latent(t) = 2 Phi(t) - 1`` for every class (two isotropic Gaussians whose means are
  ``2 t sigma`` apart: ``2 Phi(dist / (2 sigma)) - 1``);
* ``eps*_B = eps*_A``: a common shift moves every class alike and changes no error (G5b gives
  ``eps*_A`` by quadrature);
* its law is one Gaussian per class, so the learned features' TV is certified on the Gaussian
  track (B1b) too.

Registering it (:func:`cmcd_theory.worlds.register_channel`) is all it takes: ``run_sweep``
samples it, ``ground_truth`` reads its TV and Bayes error, ``certify`` puts every bound beside
what it bounds::

    .venv/bin/python examples/custom_world.py [--steps 200] [--seeds 2]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import pandas as pd
from scipy import special

from cmcd_theory import worlds
from cmcd_theory.certify import certify
from cmcd_theory.learn import divergences
from cmcd_theory.learn.pipeline import PipelineConfig
from cmcd_theory.learn.training import TrainConfig
from cmcd_theory.sweeps.sweep import run_sweep


class Shift(worlds.Channel):
    """``s_B = s + 2 t sigma e_1``: the same shift for every class (G2 convention: t = 0 is
    the identity)."""

    name = "shift"

    def apply(self, world, key, y, s, t):
        return y, s.at[:, 0].add(2.0 * t * world.config.sigma)

    def tv_latent_per_class(self, config, t):
        return np.full(config.num_classes, 2.0 * special.ndtr(t) - 1.0)

    def bayes_error_B(self, config, t):
        axes = np.full(config.num_classes, config.separation / math.sqrt(2))  # mu_c on e_c
        return divergences.gaussian_axes_bayes_error(axes, config.sigma**2)

    def law_B(self, config, t):
        mu = config.class_means().copy()
        mu[:, 0] += 2.0 * t * config.sigma
        return [(1.0, mu, config.sigma)]


def small_pipeline(steps: int) -> PipelineConfig:
    """A theory-track pipeline (linear encoders, raw student features: B4's form) of small size."""
    train = TrainConfig(steps=steps, batch_size=128, lr=1e-2, tau=0.1)
    return PipelineConfig(
        M=1024,
        m=512,
        n=500,
        n_test=4000,
        n_pop=1024,
        tuple_size=64,
        probe_steps=100,
        ssl=train,
        distill=train.replace(student_features="raw"),
    )


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--steps", type=int, default=200, help="training steps of stages 1 and 2")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..S-1")
    p.add_argument("--weight-samples", type=int, default=200, help="B3's Monte Carlo draws")
    args = p.parse_args(argv)
    if "shift" not in worlds.CHANNELS:
        worlds.register_channel(Shift())

    rows = []

    def post(world, cfg, method, t, seed, metrics, artifacts):
        res = certify(
            world,
            cfg,
            method,
            t,
            seed,
            metrics,
            artifacts,
            n_tv_mc=5000,
            n_weight_samples=args.weight_samples,
        )
        rows.extend({"t": t, "seed": seed, **r} for r in res["rows"])
        return res["wide"]

    df = run_sweep(
        {"channel": ["shift"], "t": [0.0, 0.5, 1.0], "method": ["cmc"]},
        pipeline=small_pipeline(args.steps),
        seeds=args.seeds,
        postprocess=post,
        progress=False,
    )
    cols = [
        "t",
        "seed",
        "tv_latent",
        "bayes_A",
        "bayes_B",
        "err_B",
        "tv_features_upper",
        "b2_total",
        "b3_total_deterministic",
        "b4_total",
        "bounds_hold",
    ]
    print("the shift channel through run_sweep (one row per t and seed):")
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    long = pd.DataFrame(rows)
    print("\nevery bound beside what it bounds (certify; mean over seeds):")
    print(
        long.groupby(["bound", "t"])[["measured", "value"]]
        .mean()
        .unstack("t")
        .to_string(float_format=lambda x: f"{x:.4g}")
    )
    print(f"\nall {len(long)} certified rows hold: {bool(long['holds'].all())}")
    df.attrs["bounds"] = long
    return df


if __name__ == "__main__":
    main()
    sys.exit(0)
