"""Shared helpers of the experiment scripts: arguments, intervals, bounds as sweep columns, figures.

Every experiment is ``python -m experiments.<name> [--quick] [--seeds S] [--out-dir D]
[--fig-dir F]`` and writes ``D/<name>.csv`` (tidy, one row per cell and seed),
``D/<name>.json`` (configuration and measured findings) and ``F/<name>.png`` + ``.pdf``.

The sweep postprocesses defined here ask :func:`cmcd_theory.certify.certify` for the parts a
figure plots (so that a sweep does not pay for the other bounds) and compute no bound
themselves:

* :func:`probe_bounds` -- B2 (both forms) and B3 of the stage-3 probe, with their named terms;
* :func:`distill_bound` -- B4 on the stage-2 tuple loss;
* :func:`feature_tv` -- TV between the learned source and target features (B1b, Gaussian
  track): Monte Carlo estimate and certified upper end.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
from scipy import stats

from cmcd_theory.bounds import student_t_interval

DELTA = 0.05
DELTA_TEST = 0.05

METHOD_STYLE = {
    "cmd": dict(color="tab:blue", marker="o", label="CMD"),
    "cmc": dict(color="tab:orange", marker="s", label="CMC"),
    "l2": dict(color="tab:green", marker="^", label="L2 alignment"),
    "supervised": dict(color="tab:red", marker="v", label="supervised only"),
    "target_ssl": dict(color="tab:purple", marker="D", label="target SSL + probe"),
    "random": dict(color="tab:gray", marker="x", label="random encoder"),
    "oracle": dict(color="black", marker="*", label="oracle probe on s_B"),
}


OUTPUTS = """\
outputs: <out-dir>/<name>.csv (tidy: one row per cell and seed; the columns of
cmcd_theory.sweeps.sweep.run_sweep -- the grid's knobs, seed, err_B, err_A_head, distill_* losses,
tv_latent, bayes_A, bayes_B -- plus the experiment's own columns), <out-dir>/<name>.json
(configuration, measured findings, wall time) and <fig-dir>/<name>.png and .pdf.
--quick writes under results/quick and figures/quick, never over the full-run files.
Invalid values: one line on stderr, exit status 2."""
RESUMES = """
resume: the sweep keeps the rows of every finished chunk in <out-dir>/<name>_{quick,full}_raw.csv;
a rerun with the same configuration computes only the missing cells (delete that file to
recompute everything)."""
NO_RESUME = "\nresume: none; every run recomputes every cell."
EPILOG = OUTPUTS + RESUMES


def parse_args(
    argv,
    description: str,
    default_seeds: tuple = (2, 3),
    *,
    prog: str | None = None,
    extra=None,
    epilog: str = EPILOG,
    plot_only: bool = False,
) -> argparse.Namespace:
    """Common arguments; ``--seeds`` defaults to ``default_seeds[0]`` in quick mode and
    ``default_seeds[1]`` otherwise. ``--quick`` runs write under ``results/quick`` and
    ``figures/quick`` unless ``--out-dir`` / ``--fig-dir`` are given, so they never overwrite
    the committed full-run files. ``extra(parser)`` adds an experiment's own arguments;
    ``plot_only`` adds ``--plot-only`` (re-draw the figure from the saved CSV, see
    :func:`load_results`; ``args.plot_only`` is False where it is not offered).
    Invalid values exit with one line on stderr and status 2."""
    from cmcd_theory import validation as V

    prog = prog or "python -m experiments.<name>"
    p = V.parser(prog, description, epilog.replace("<name>", prog.rsplit(".", 1)[-1]))
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (about a minute); writes under results/quick, figures/quick",
    )
    p.add_argument(
        "--seeds",
        type=V.arg(V.positive_int, "--seeds"),
        default=None,
        help=f"number of seeds 0..S-1, >= 1 (default {default_seeds[0]} with --quick, "
        f"{default_seeds[1]} otherwise)",
    )
    p.add_argument(
        "--out-dir",
        default=None,
        help="folder of the CSV and JSON (default results, or results/quick)",
    )
    p.add_argument(
        "--fig-dir",
        default=None,
        help="folder of the PNG and PDF (default figures, or figures/quick)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the sweep's progress bar")
    if plot_only:
        p.add_argument(
            "--plot-only",
            action="store_true",
            help="re-draw <fig-dir>/<name>.png and .pdf from <out-dir>/<name>.csv and "
            ".json without computing anything; writes no CSV or JSON",
        )
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    args.plot_only = bool(getattr(args, "plot_only", False))
    if args.seeds is None:
        args.seeds = default_seeds[0] if args.quick else default_seeds[1]
    sub = "quick" if args.quick else ""
    args.out_dir = args.out_dir or os.path.join("results", sub)
    args.fig_dir = args.fig_dir or os.path.join("figures", sub)
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.fig_dir, exist_ok=True)
    return args


def interval_note(args, what: str = "over seeds") -> str:
    """``"mean, 95% interval over seeds"``; with one seed ``"one seed, no interval"`` (a single
    run has no spread to show)."""
    return f"mean, 95% interval {what}" if args.seeds > 1 else "one seed, no interval"


def base_pipeline(args, **changes):
    """:func:`quick_pipeline` in quick mode, the default :class:`PipelineConfig` otherwise."""
    from cmcd_theory.learn.pipeline import PipelineConfig
    from cmcd_theory.sweeps.sweep import quick_pipeline

    cfg = quick_pipeline() if args.quick else PipelineConfig()
    return cfg.replace(**changes) if changes else cfg


def budget_pipeline(encoder: str):
    """The quick pipeline's training budget (200 steps per stage, M = 2048, m = 1024) with the
    given encoder, in both modes: the grids of the nuisance and pairing experiments fit the
    reproduce time budget with it; their --quick shrinks the grid, not the training."""
    from cmcd_theory.sweeps.sweep import quick_pipeline

    return quick_pipeline().replace(encoder=encoder)


def raw_path(args, name: str) -> str:
    """Path of a sweep's raw (resumable) CSV; quick and full runs never share one."""
    return os.path.join(args.out_dir, f"{name}_{'quick' if args.quick else 'full'}_raw.csv")


def ci95(x) -> tuple:
    """Mean and half-width of the 95% Student-t interval, ``t_{0.975, S-1} s / sqrt(S)``
    (:func:`cmcd_theory.bounds.student_t_interval`)."""
    return student_t_interval(x, 0.95)


def summarize(df: pd.DataFrame, by, cols) -> pd.DataFrame:
    """Per group of ``by``: ``<col>_mean``, ``<col>_lo``, ``<col>_hi`` (95% t-interval over
    seeds)."""
    out = []
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_seeds"] = len(g)
        for c in cols:
            m, h = ci95(g[c])
            row[f"{c}_mean"], row[f"{c}_lo"], row[f"{c}_hi"] = m, m - h, m + h
        out.append(row)
    return pd.DataFrame(out)


def fmt_ci(x, digits: int = 3) -> str:
    m, h = ci95(x)
    return f"{m:.{digits}f} +- {h:.{digits}f}" if np.isfinite(h) else f"{m:.{digits}f}"


def save_results(
    df: pd.DataFrame,
    name: str,
    args,
    config: dict,
    findings: dict,
    elapsed: float | None = None,
    compilation: dict | None = None,
) -> None:
    """``<out_dir>/<name>.csv`` (tidy) and ``<out_dir>/<name>.json`` (config, findings, wall
    time and, if given, the run's XLA compilations: :func:`compilation_since`)."""
    df.to_csv(os.path.join(args.out_dir, f"{name}.csv"), index=False)
    meta = {
        "experiment": name,
        "quick": bool(args.quick),
        "seeds": int(args.seeds),
        "config": config,
        "findings": findings,
    }
    if elapsed is not None:
        meta["wall_time_s"] = round(float(elapsed), 1)
    if compilation is not None:
        meta["compilation"] = compilation
    with open(os.path.join(args.out_dir, f"{name}.json"), "w") as f:
        json.dump(_jsonable(meta), f, indent=2)
    print(f"[{name}] findings:")
    for k, v in findings.items():
        print(f"  {k}: {v}")


def load_results(name: str, args) -> tuple:
    """``(table, findings)`` of a finished run: ``<out_dir>/<name>.csv`` and the ``findings`` of
    ``<out_dir>/<name>.json``, for ``--plot-only`` (a figure re-drawn from them recomputes no
    number and rewrites neither file). Sets ``args.seeds`` to the run's seed count, so that the
    figure's interval note is the run's. A missing file: one line on stderr, exit status 2."""
    import sys

    csv, meta = (os.path.join(args.out_dir, f"{name}.{ext}") for ext in ("csv", "json"))
    for path in (csv, meta):
        if not os.path.exists(path):
            sys.stderr.write(
                f"--plot-only: {path} not found: run python -m experiments.{name}"
                f"{' --quick' if args.quick else ''} first\n"
            )
            raise SystemExit(2)
    with open(meta) as fh:
        meta = json.load(fh)
    args.seeds = int(meta.get("seeds") or args.seeds)
    return pd.read_csv(csv), meta.get("findings", {})


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def pyplot():
    """matplotlib (Agg) with the figures' style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 120,
            "savefig.bbox": "tight",
        }
    )
    return plt


def save_fig(fig, name: str, args) -> None:
    """``<fig_dir>/<name>.png`` (dpi 120) and ``.pdf``."""
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(args.fig_dir, f"{name}.{ext}"), dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)


def band(ax, x, mean, lo, hi, **style):
    """A line with markers and its shaded 95% interval."""
    st = dict(style)
    ax.plot(x, mean, **st)
    st.pop("marker", None)
    st.pop("label", None)
    st.pop("linestyle", None)
    ax.fill_between(
        x,
        np.where(np.isfinite(lo), lo, mean),
        np.where(np.isfinite(hi), hi, mean),
        alpha=0.18,
        color=st.get("color"),
        linewidth=0,
    )


def interval_bars(ax, x, mean, lo, hi, **style):
    """Markers joined by a thin line, each with its 95% interval ``[lo, hi]`` as an error bar
    (no bar where an end is NaN: one seed). Beside :func:`dodge`, curves that coincide keep
    their intervals visible, where shaded bands would lie on top of each other."""
    mean = np.asarray(mean, float)
    lo = np.where(np.isfinite(lo), lo, mean)
    hi = np.where(np.isfinite(hi), hi, mean)
    st = dict(dict(capsize=3, lw=1.2, ms=5, elinewidth=1.1), **style)
    return ax.errorbar(x, mean, yerr=np.vstack([mean - lo, hi - mean]), **st)


def dodge(x, i: int, k: int, width: float, *, log: bool = False) -> np.ndarray:
    """``x`` shifted for series ``i`` of ``k`` drawn side by side: offsets spread evenly over
    ``[-width/2, width/2]`` (a factor ``exp(offset)`` on a log axis), so that series with equal
    x and nearly equal y, and their intervals, do not hide one another."""
    off = (i - (k - 1) / 2) * width / max(k - 1, 1)
    x = np.asarray(x, float)
    return x * np.exp(off) if log else x + off


def excess_floor_line(ax):
    """The zero line of a panel of excess errors R_B - eps*_B, labelled as the Bayes floor."""
    return reference_line(
        ax,
        0.0,
        r"Bayes floor $\varepsilon^*_B$ (excess 0)",
        color="black",
        ls="-",
        where=0.01,
        below=True,
    )


def reference_line(
    ax,
    value: float,
    text: str,
    *,
    axis: str = "y",
    color: str = "dimgray",
    ls="--",
    where: float = 0.99,
    below: bool = False,
    **kw,
):
    """A reference level (the vacuity level 1 of a 0-1 bound, a Bayes floor) drawn across the
    panel and labelled on the line itself, so that it reads without the legend. ``axis="y"``:
    a horizontal line at y = value, the text above it (``below``: under it) at ``where`` (axes
    fraction: right-aligned past the middle, left-aligned before); ``axis="x"``: a vertical
    line, the text beside it near the top."""
    if axis == "y":
        line = ax.axhline(value, color=color, ls=ls, lw=1.2, zorder=1.5, **kw)
        ax.text(
            where,
            value,
            text,
            transform=ax.get_yaxis_transform(),
            ha="right" if where > 0.5 else "left",
            va="top" if below else "bottom",
            fontsize=8.5,
            color=color,
        )
    else:
        line = ax.axvline(value, color=color, ls=ls, lw=1.2, zorder=1.5, **kw)
        ax.text(
            value,
            where,
            " " + text,
            transform=ax.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=8.5,
            color=color,
        )
    return line


VACUOUS = "1: vacuous above"


def legend_below(fig, axes, ncol: int = 4, **kw):
    """One legend for the figure, centred below all panels, so that no legend covers data:
    the labelled artists of ``axes`` (any shape), each label once, in order of appearance.
    ``fig.savefig`` with ``bbox_inches="tight"`` (the style's default) keeps it in the file."""
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    opts = dict(
        loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False, fontsize=9.5
    )
    opts.update(kw)
    return fig.legend(handles, labels, **opts)


def legend_right(ax, **kw):
    """The panel's legend outside it, against its right edge (top aligned), clear of the data."""
    opts = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=9)
    opts.update(kw)
    return ax.legend(**opts)


def spearman(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y on log x over the points with y > 0."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def count_ticks(axes, values) -> None:
    """Tick every axis of ``axes`` at the grid values (counts on a log axis), no minor ticks."""
    values = sorted(values)
    for ax in axes:
        ax.set_xticks(values)
        ax.set_xticklabels([str(int(v)) if float(v).is_integer() else str(v) for v in values])
        ax.minorticks_off()


def test_slack(n_test: int) -> float:
    """Hoeffding slack of a test-set error on ``n_test`` samples at ``DELTA_TEST``."""
    from cmcd_theory import bounds

    return bounds.hoeffding_slack(n_test, DELTA_TEST)


# ---- sweep postprocesses ------------------------------------------------------------------
# Thin callers of cmcd_theory.certify.certify, which computes every bound column: each returns
# the fixed columns of its parts (NaN where the bound does not apply), so that the chunks a
# sweep appends to its CSV stay aligned.


def _certify_columns(parts, world, cfg, method, t, seed, row, arts, **kw) -> dict:
    from cmcd_theory.certify import PART_KEYS, certify

    wide = certify(
        world,
        cfg,
        method,
        t,
        seed,
        row,
        arts,
        delta=DELTA,
        delta_test=DELTA_TEST,
        parts=parts,
        **kw,
    )["wide"]
    return {k: wide[k] for part in parts for k in PART_KEYS[part]}


def probe_bounds(
    world,
    cfg,
    method,
    t,
    seed,
    row,
    arts,
    *,
    n_weight_samples: int = 500,
    certificate: bool = False,
) -> dict:
    """B2 (both forms, and their minimum) and B3 of the probe, with terms, from ``certify``;
    with ``certificate`` also the probe certificate ``probe_total`` (the minimum of B2 and
    B3 with delta split over them, :func:`cmcd_theory.certify.probe_certificate_rows`; a
    minimum of the ``b2_total`` and ``b3_*`` columns would spend 2 delta)."""
    parts = ("B2", "B3", "probe") if certificate else ("B2", "B3")
    return _certify_columns(
        parts, world, cfg, method, t, seed, row, arts, n_weight_samples=n_weight_samples
    )


def distill_bound(world, cfg, method, t, seed, row, arts) -> dict:
    """B4 (both forms, their minimum, and the gaps) on the stage-2 tuple loss, from ``certify``."""
    return _certify_columns(("B4",), world, cfg, method, t, seed, row, arts)


def feature_tv(world, cfg, method, t, seed, row, arts, *, n_mc: int = 20_000) -> dict:
    """TV of the learned source and target features (B1b, Gaussian track), from ``certify``."""
    return _certify_columns(("B1b",), world, cfg, method, t, seed, row, arts, n_tv_mc=n_mc)


def _keys(*parts):
    from cmcd_theory.certify import PART_KEYS

    return tuple(k for p in parts for k in PART_KEYS[p])


_COMPILES = {"requests": 0, "hits": 0, "compile_s": 0.0}
_LISTENING: list = []


def compilation_counts() -> dict:
    """JAX's compilations in this process so far: ``requests`` (programs that went to XLA or
    the persistent cache), ``hits`` (read back from the persistent cache) and ``compile_s``
    (seconds spent compiling a program or reading it back, JAX's backend-compile events, summed
    over threads). Counting starts at the first call."""
    if not _LISTENING:
        import jax

        def event(name, **_):
            if name == "/jax/compilation_cache/compile_requests_use_cache":
                _COMPILES["requests"] += 1
            elif name == "/jax/compilation_cache/cache_hits":
                _COMPILES["hits"] += 1

        def duration(name, secs, **_):
            if name == "/jax/core/compile/backend_compile_duration":
                _COMPILES["compile_s"] += secs

        jax.monitoring.register_event_listener(event)  # type: ignore[arg-type]
        jax.monitoring.register_event_duration_secs_listener(duration)  # type: ignore[arg-type]
        _LISTENING.append(True)
    return dict(_COMPILES)


def compilation_since(start: dict) -> dict:
    """What :func:`compilation_counts` counted since ``start``: ``compiled`` programs (cache
    misses: compiled by XLA here), ``from_cache`` (read back from the persistent cache) and
    ``compile_or_load_s`` (seconds of both, summed over threads)."""
    now = compilation_counts()
    return {
        "compiled": now["requests"] - start["requests"] - (now["hits"] - start["hits"]),
        "from_cache": now["hits"] - start["hits"],
        "compile_or_load_s": round(now["compile_s"] - start["compile_s"], 2),
    }


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0

    def now(self) -> float:
        return time.perf_counter() - self.t0


# fixed column sets of the postprocesses (certify's)
PROBE_BOUND_KEYS = _keys("B2", "B3")
PROBE_CERTIFICATE_KEYS = _keys("probe")
#: How an experiment's config describes the probe certificate column it reports.
PROBE_CERTIFICATE_CONFIG = (
    "probe_total: min(B2 sample, B2 data-free, 2 L(Q) of B3, 2 L(Q) of "
    "B3p) at delta/4 each (cmcd_theory.certify.probe_certificate_rows)"
)
DISTILL_BOUND_KEYS = _keys("B4")
FEATURE_TV_KEYS = _keys("B1b")


def run_experiment(
    argv,
    doc: str,
    name: str,
    run,
    findings,
    plot,
    config,
    *,
    resumes: bool = True,
    default_seeds: tuple = (2, 3),
) -> pd.DataFrame:
    """What every figure experiment's ``main`` does: parse the common arguments, run, compute the
    findings, plot, and save CSV + JSON (config, findings, wall time). With ``--plot-only`` it
    only re-draws the figure from the saved CSV and the JSON's findings (:func:`load_results`).

    Args:
      argv: command-line arguments (None: sys.argv).
      doc: the module docstring (its first line is the --help description).
      name: output base name (``results/<name>.csv``, ``figures/<name>.png``).
      run: ``args -> DataFrame``; findings: ``DataFrame -> dict``; plot: ``(df, args, findings)``.
      config: ``args -> dict`` saved in the JSON beside the CSV.
      resumes: whether ``run`` keeps a raw resumable CSV (:func:`raw_path`), for ``--help``.
      default_seeds: ``--seeds`` default in (quick, full) mode.
    """
    args = parse_args(
        argv,
        doc.splitlines()[0],
        default_seeds,
        prog=f"python -m experiments.{name}",
        epilog=OUTPUTS + (RESUMES if resumes else NO_RESUME),
        plot_only=True,
    )
    if args.plot_only:
        df, f = load_results(name, args)
        plot(df, args, f)
        return df
    start = compilation_counts()
    with Timer() as tm:
        df = run(args)
        f = findings(df)
        plot(df, args, f)
    save_results(df, name, args, config(args), f, tm.elapsed, compilation_since(start))
    return df
