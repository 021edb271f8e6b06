"""What does each modality channel do to the latents? (docs/theory.md G1, G2, G5, B1a)

For the default world (:class:`cmcd_theory.worlds.WorldConfig`: K = 4 classes, k = 8,
Delta = 3.5, sigma = 1, J = all coordinates, eta_max = 3) and every channel (attenuate, noise,
corrupt, rotate) at t = 0, 0.5, 1, one panel shows source latents s (hollow circles) and
target latents s_B (dots) drawn by :func:`cmcd_theory.worlds.sample`, projected on the plane
of the first two coordinates, where the means of classes 0 and 1 lie (the means of classes 2
and 3 project to the origin and are left out of the picture, not of the numbers). A black
path (an arc for rotate) takes each class's source mean to the mean of its target latents as
the knob grows from 0 to t. Each panel is titled with the world's ground truth (G5):

* ``TV_latent`` -- the exact modality distance of G2
  (:func:`cmcd_theory.learn.divergences.tv_latent`);
* ``eps*_A``, ``eps*_B`` -- Bayes errors of predicting y from s and from s_B
  (:func:`cmcd_theory.learn.divergences.bayes_error`: exact by one-dimensional quadrature, G5b,
  for every channel shown; Monte Carlo of the posterior argmax with a Hoeffding interval at
  ``DELTA`` only where no exact form exists).

``results/world_gallery.csv`` has one row per (channel, t): the three numbers with their
intervals, a Monte Carlo check of TV_latent
(:func:`~cmcd_theory.learn.divergences.tv_latent_monte_carlo`), and B1a on the interval ends:
``b1a_holds = bayes_B_lower <= bayes_A_upper + tv_latent``. ``results/world_gallery.json``
holds the world's config, the Monte Carlo sizes and the findings.

Run: ``python -m experiments.world_gallery [--quick] [--out-dir results] [--fig-dir figures]``.
``--quick`` uses fewer Monte Carlo draws for the Bayes errors and the TV check (wider
intervals); the picture is the same. ``--seeds`` is accepted, as by every experiment, and not
used: the gallery draws one sample.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
import pandas as pd

from cmcd_theory import worlds
from cmcd_theory.learn import divergences
from cmcd_theory.sweeps.devices import setup_jax
from experiments import common

NAME = "world_gallery"
T_VALUES = (0.0, 0.5, 1.0)
DELTA = 0.01  # level of the Monte Carlo intervals (Bayes errors, TV check)
N_POINTS = 500  # points drawn per panel (source and target of the same latents)
SEED = 0

# the four G2 distance channels (worlds.DISTANCE_CHANNELS), not the live registry: the pairing
# channels (G7) keep TV_latent = 0 and a user's registered channels have no panel text here
CHANNEL_TEXT = {
    "attenuate": "attenuate\n" + r"$s_J \to (1-t)\,s_J + \sqrt{1-(1-t)^2}\,\sigma\xi$",
    "noise": "noise\n" + r"$s \to s + t\,\eta_{max}\,\xi$",
    "corrupt": "corrupt\n" + r"$s \to$ N(0, $\sigma^2 I$) w.p. $t$",
    "rotate": "rotate\n" + r"$s \to R_t\,s$, angle $t\pi/2$",
}
CLASS_COLORS = ("tab:blue", "tab:orange")


def sizes(quick: bool) -> dict:
    """Monte Carlo sizes: draws for each Bayes error, and per class for the TV check."""
    return {"n_bayes": 40_000, "n_tv": 20_000} if quick else {"n_bayes": 400_000, "n_tv": 200_000}


def ground_truth(
    config: worlds.WorldConfig,
    t_values=T_VALUES,
    *,
    n_bayes: int,
    n_tv: int,
    seed: int = SEED,
    delta: float = DELTA,
) -> pd.DataFrame:
    """One row per (channel, t): TV_latent (exact and Monte Carlo), eps*_A, eps*_B, B1a."""
    rows = []
    for channel in worlds.DISTANCE_CHANNELS:
        cfg = config.replace(channel=channel)
        # eps*_A depends on neither the channel nor t; one seed for A and B (common random
        # numbers): at t = 0, eps*_B is then eps*_A to the last digit, and the t-dependence
        # of eps*_B is free of seed-to-seed noise
        a = divergences.bayes_error(cfg, "A", n=n_bayes, seed=seed, delta=delta)
        for t in t_values:
            b = divergences.bayes_error(cfg, "B", t, n=n_bayes, seed=seed, delta=delta)
            tv = divergences.tv_latent(cfg, t)
            mc = divergences.tv_latent_monte_carlo(cfg, t, n=n_tv, seed=seed + 2, delta=delta)
            rows.append(
                {
                    "channel": channel,
                    "t": float(t),
                    "tv_latent": tv,
                    "tv_mc": mc.estimate,
                    "tv_mc_lower": mc.lower,
                    "tv_mc_upper": mc.upper,
                    "bayes_A": a.estimate,
                    "bayes_A_lower": a.lower,
                    "bayes_A_upper": a.upper,
                    "bayes_B": b.estimate,
                    "bayes_B_lower": b.lower,
                    "bayes_B_upper": b.upper,
                    "b1a_rhs": a.upper + tv,
                    "b1a_holds": bool(b.lower <= a.upper + tv),
                    "K": cfg.num_classes,
                    "latent_dim": cfg.latent_dim,
                    "separation": cfg.separation,
                    "sigma": cfg.sigma,
                    "n_attenuated": cfg.n_attenuated,
                    "eta_max": cfg.eta_max,
                    "n_bayes": b.n if cfg.num_classes > 2 else 0,
                    "delta": delta,
                }
            )
    return pd.DataFrame(rows)


def draw_latents(
    config: worlds.WorldConfig, t_values=T_VALUES, n: int = N_POINTS, seed: int = SEED
) -> dict:
    """``{(channel, t): (y, s, s_B)}`` as numpy arrays, drawn by the world's own sampler.

    The same key for every panel: the source latents are the same points throughout, so a
    row of panels shows one sample moving as t grows.
    """
    key = jax.random.key(seed)
    out = {}
    for channel in worlds.DISTANCE_CHANNELS:
        world = worlds.make_world(config.replace(channel=channel))
        for t in t_values:
            smp = worlds.sample(world, key, n, float(t))
            out[channel, float(t)] = tuple(np.asarray(a) for a in (smp.y, smp.s, smp.s_B))
    return out


def target_means(config: worlds.WorldConfig, t: float) -> np.ndarray:
    """``E[s_B | y]`` for each class (G2), shape (K, k): where the arrows of the figure point.

    attenuate ``mu - t P_J mu``; noise ``mu``; corrupt ``(1 - t) mu`` (a mixture with the
    label-free N(0, sigma^2 I)); rotate ``R_t mu``.
    """
    mu = config.class_means()
    if config.channel == "attenuate":
        return mu - t * mu * config.attenuated_mask()
    if config.channel == "noise":
        return mu
    if config.channel == "corrupt":
        return (1 - t) * mu
    a = t * math.pi / 2
    rot = np.eye(config.latent_dim)
    rot[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return mu @ rot.T


def _suptitle(config: worlds.WorldConfig, n_bayes: int | None) -> str:
    J = (
        "all coordinates"
        if config.n_attenuated == config.latent_dim
        else f"the first {config.n_attenuated} coordinates"
    )
    if config.num_classes == 2:
        how = "closed form"
    elif not n_bayes:
        how = "exact (one-dimensional quadrature, G5b)"
    else:
        how = "Monte Carlo of the posterior argmax" + (f", n = {n_bayes:,}" if n_bayes else "")
    return (
        f"Modality channels on the default world (K = {config.num_classes}, "
        f"k = {config.latent_dim}, " + rf"$\Delta$ = {config.separation:g}, "
        rf"$\sigma$ = {config.sigma:g}, $\eta_{{max}}$ = {config.eta_max:g}, J = {J}), "
        r"in the $(s_1, s_2)$ plane of classes 0 and 1" + "\n"
        r"$\mathrm{TV}_{latent}$: exact (G2); $\varepsilon^*_A, \varepsilon^*_B$: Bayes errors "
        f"of the full latent (all {config.num_classes} classes, {config.latent_dim} "
        f"coordinates), {how}"
    )


def _title(row) -> str:
    return (
        f"t = {row.t:g}:  "
        + r"$\mathrm{TV}_{latent}$"
        + f" = {row.tv_latent:.3f}\n"
        + r"$\varepsilon^*_A$"
        + f" = {row.bayes_A:.3f},  "
        + r"$\varepsilon^*_B$"
        + f" = {row.bayes_B:.3f}"
    )


def plot_gallery(
    config: worlds.WorldConfig,
    truth: pd.DataFrame,
    latents: dict,
    t_values=T_VALUES,
    n_bayes: int | None = None,
):
    """The 4 x len(t_values) grid of panels; returns the figure."""
    plt = common.pyplot()
    nrow, ncol = len(worlds.DISTANCE_CHANNELS), len(t_values)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.0 * ncol, 3.55 * nrow), squeeze=False, layout="constrained"
    )
    mu = config.class_means()
    for i, channel in enumerate(worlds.DISTANCE_CHANNELS):
        # one scale per row (the noise channel spreads far), equal aspect
        pts = np.concatenate(
            [
                np.concatenate([s[y < 2, :2], sb[y < 2, :2]])
                for (ch, _), (y, s, sb) in latents.items()
                if ch == channel
            ]
        )
        lo, hi = np.quantile(pts, [0.003, 0.997], axis=0)
        half = 0.5 * max(hi - lo) * 1.08
        centre = 0.5 * (lo + hi)
        for j, t in enumerate(t_values):
            ax = axes[i, j]
            y, s, s_b = latents[channel, float(t)]
            row = truth[(truth.channel == channel) & np.isclose(truth.t, t)].iloc[0]
            cfg = config.replace(channel=channel)
            mu_b = target_means(cfg, float(t))
            _draw_latents(ax, y, s, s_b)
            _draw_mean_shifts(ax, cfg, mu, mu_b, t)
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_aspect("equal")
            ax.set_title(_title(row), fontsize=10.5)
            ax.tick_params(labelsize=8)
            if i == nrow - 1:
                ax.set_xlabel(r"$s_1$")
            if j == 0:
                ax.set_ylabel(CHANNEL_TEXT[channel] + "\n" + r"$s_2$", fontsize=10.5)
    handles = _legend_handles()
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=9.5, frameon=False)
    fig.suptitle(_suptitle(config, n_bayes), fontsize=12)
    return fig


def _draw_latents(ax, y, s, s_b) -> None:
    """The source latents (open circles) and target latents (dots) of classes 0 and 1."""
    for c in (0, 1):
        m = y == c
        ax.scatter(
            s[m, 0],
            s[m, 1],
            s=14,
            facecolors="none",
            edgecolors=CLASS_COLORS[c],
            linewidths=0.6,
            alpha=0.45,
            rasterized=True,
        )
        ax.scatter(
            s_b[m, 0],
            s_b[m, 1],
            s=7,
            color=CLASS_COLORS[c],
            alpha=0.75,
            linewidths=0,
            rasterized=True,
        )


def _draw_mean_shifts(ax, cfg, mu, mu_b, t) -> None:
    """Each class's source mean (circle), target mean (star) and, where they differ, the path
    of the class mean as the knob goes from 0 to t (an arrow; an arc for rotate)."""
    for c in (0, 1):
        src, dst = mu[c, :2], mu_b[c, :2]
        if np.linalg.norm(dst - src) > 1e-9:
            # the path of the class mean as the knob goes from 0 to t (an arc for rotate)
            path = np.stack([target_means(cfg, u)[c, :2] for u in np.linspace(0, t, 25)])
            ax.plot(path[:-1, 0], path[:-1, 1], color="black", lw=1.4, zorder=4)
            ax.annotate(
                "",
                xy=path[-1],
                xytext=path[-3],
                arrowprops=dict(
                    arrowstyle="-|>",
                    color="black",
                    lw=1.4,
                    shrinkA=0,
                    shrinkB=4,
                    mutation_scale=14,
                ),
                zorder=4,
            )
        ax.plot(*src, marker="o", ms=8, mfc="white", mec="black", mew=1.4, zorder=5)
        ax.plot(*dst, marker="*", ms=13, mfc=CLASS_COLORS[c], mec="black", mew=0.9, zorder=6)


def _legend_handles() -> list:
    """The legend entries of the gallery: latents, classes and means."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="o", mfc="none", mec="gray", ms=6, label="source latent $s$"),
        Line2D([], [], ls="", marker="o", color="gray", ms=4, label="target latent $s_B$"),
        Line2D([], [], ls="", marker="o", color=CLASS_COLORS[0], ms=6, label="class 0"),
        Line2D([], [], ls="", marker="o", color=CLASS_COLORS[1], ms=6, label="class 1"),
        Line2D(
            [], [], ls="", marker="o", mfc="white", mec="black", ms=7, label=r"source mean $\mu_y$"
        ),
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            mfc="lightgray",
            mec="black",
            ms=11,
            label="target mean (arrow: its shift)",
        ),
    ]
    return handles


def findings(truth: pd.DataFrame) -> dict:
    """B1a everywhere, closed-form TV inside its Monte Carlo interval, and each row's numbers."""
    f = {
        "b1a_holds_everywhere": bool(truth.b1a_holds.all()),
        "tv_closed_form_within_mc_interval": bool(
            ((truth.tv_mc_lower <= truth.tv_latent) & (truth.tv_latent <= truth.tv_mc_upper)).all()
        ),
        "bayes_A": round(float(truth.bayes_A.iloc[0]), 4),
    }
    for r in truth.itertuples():
        f[f"{r.channel}[t={r.t:g}]"] = (
            f"TV={r.tv_latent:.3f} eps_A={r.bayes_A:.3f} eps_B={r.bayes_B:.3f} "
            f"[{r.bayes_B_lower:.3f}, {r.bayes_B_upper:.3f}]"
        )
    return f


def main(argv=None) -> pd.DataFrame:
    """Compute the ground truth, draw the figure, write the CSV, JSON, PNG and PDF."""
    args = common.parse_args(
        argv,
        __doc__.splitlines()[0],
        default_seeds=(1, 1),
        prog="python -m experiments.world_gallery",
        epilog=common.OUTPUTS + common.NO_RESUME,
    )
    start = common.compilation_counts()
    t0 = time.perf_counter()
    config = worlds.WorldConfig()
    sz = sizes(args.quick)
    truth = ground_truth(config, T_VALUES, **sz)
    n_mc = int(truth.n_bayes.max())  # 0 where every Bayes error is exact
    fig = plot_gallery(config, truth, draw_latents(config, T_VALUES), T_VALUES, n_mc)
    common.save_fig(fig, NAME, args)
    world = {k: v for k, v in config.as_dict().items() if k not in ("channel", "t")}
    meta = {
        "world": world,
        "channels": list(worlds.DISTANCE_CHANNELS),
        "t_values": list(T_VALUES),
        "delta": DELTA,
        "n_points_per_panel": N_POINTS,
        "seed": SEED,
        **sz,
        "projection": "first two latent coordinates (s_1, s_2); classes 0 and 1 shown",
        "bayes": (
            "closed form"
            if config.num_classes == 2
            else "exact (one-dimensional quadrature, G5b)"
            if n_mc == 0
            else "Monte Carlo of the posterior argmax, Hoeffding interval at delta"
        ),
    }
    common.save_results(
        truth,
        NAME,
        args,
        meta,
        findings(truth),
        time.perf_counter() - t0,
        common.compilation_since(start),
    )
    return truth


if __name__ == "__main__":
    setup_jax()  # persistent compile cache, before any JAX computation
    main()
