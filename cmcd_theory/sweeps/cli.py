"""``cmcd-sweep`` (also ``python -m cmcd_theory.sweeps``): a grid from the command line into
:func:`~cmcd_theory.sweeps.sweep.run_sweep`, with every flag checked before any work (one line
naming the flag, status 2) and Ctrl-C / SIGTERM ending it with one line saying how many rows
are kept."""

from __future__ import annotations

import argparse

from cmcd_theory import validation as V
from cmcd_theory.learn.pipeline import METHODS, PipelineConfig
from cmcd_theory.sweeps.grid import grid_values
from cmcd_theory.sweeps.sweep import quick_pipeline, run_sweep
from cmcd_theory.worlds import CHANNELS

PROG = "cmcd-sweep"


def _items(text: str) -> tuple:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _parsed(text: str, cast) -> list:
    """The comma items of ``text`` cast by ``cast`` where they parse (else left as strings,
    for the check to reject by name)."""
    out = []
    for x in _items(text):
        try:
            out.append(cast(x))
        except ValueError:
            out.append(x)
    return out


def _axis(axis: str, cast=None):
    """An argparse check of a comma list of one grid axis:
    :func:`~cmcd_theory.sweeps.grid.grid_values`, the check :func:`run_sweep` applies to the
    same axis."""
    return lambda name, text: grid_values(axis, _parsed(text, cast) if cast else _items(text), name)


def _scheduler(name, text):
    if text in ("local", "none") or "://" in text:
        return text
    raise ValueError(
        f"{name} must be 'local', 'none' or a scheduler address such as "
        f"tcp://HOST:8786, got {text!r}"
    )


COLUMNS_HELP = """\
Output: one CSV row per (cell, method, seed) with the grid columns (channel, M, m, n, method,
tau, encoder, t, seed), the world's ground truth (tv_latent, bayes_A, bayes_B, ...) and the
metrics (err_B, err_A_head, err_A_probe, distill_train_loss, distill_pop_loss, distill_gap,
student_norm, sum_sq_inputs, ...); the grid and configuration go to the .json beside it.
Each comma list is a set: a value given twice is refused.
Resume: rerunning with the same --out skips the cells already there (a row cut by a crash is
dropped and recomputed). Another grid or configuration at the same --out is refused, unless
--extend (the grid grows, every axis keeping its values, same configuration) or --overwrite
(start afresh).
Before any work: --out must be a writable file path (not a directory, not a read-only file)
and a --scheduler address must answer within 3 s. Invalid values: one line on stderr, exit
status 2.
Interrupts: Ctrl-C (SIGINT) or SIGTERM ends the sweep within a second with one line saying
how many rows are kept in --out (every finished chunk, whole); exit status 130 (SIGINT) or
143 (SIGTERM). Rerun the same command to resume."""


def build_parser() -> argparse.ArgumentParser:
    """The ``cmcd-sweep`` argument parser."""
    p = V.parser(
        PROG, "Run a grid of CMCD pipelines (vmapped over t and seeds) to a tidy CSV.", COLUMNS_HELP
    )
    _grid_arguments(p)
    _run_arguments(p)
    return p


def _grid_arguments(p: argparse.ArgumentParser) -> None:
    """``cmcd-sweep``'s grid: one comma list per axis (each checked by
    :func:`~cmcd_theory.sweeps.grid.grid_values`, as :func:`run_sweep` checks it) and the
    number of seeds."""
    p.add_argument(
        "--channel",
        type=V.arg(_axis("channel"), "--channel"),
        default=("attenuate",),
        help=f"comma list of channels among {', '.join(CHANNELS)}",
    )
    p.add_argument(
        "--t",
        type=V.arg(_axis("t", float), "--t"),
        default=(0.0, 0.25, 0.5, 0.75, 1.0),
        help="comma list of distance knobs in [0, 1]",
    )
    p.add_argument(
        "--methods",
        type=V.arg(_axis("method"), "--methods"),
        default=("cmc", "cmd", "l2"),
        help=f"comma list of methods among {', '.join(METHODS)}",
    )
    p.add_argument(
        "--seeds", type=V.arg(V.positive_int, "--seeds"), default=3, help="number of seeds (0..S-1)"
    )
    for name, what in (("M", "stage-1 sizes"), ("m", "pair counts"), ("n", "label counts")):
        p.add_argument(
            f"--{name}",
            type=V.arg(_axis(name, int), f"--{name}"),
            default=None,
            help=f"comma list of {what}, integers >= 1 (default: the pipeline's)",
        )
    p.add_argument(
        "--tau",
        type=V.arg(_axis("tau", float), "--tau"),
        default=None,
        help="comma list of temperatures > 0 (default: the pipeline's)",
    )
    p.add_argument(
        "--encoder",
        type=V.arg(_axis("encoder"), "--encoder"),
        default=None,
        help="comma list of linear,mlp (default: the pipeline's)",
    )


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """``cmcd-sweep``'s run: sizes, the output file and what to do with one already there,
    where chunks run and how many cells each holds, the progress bar."""
    p.add_argument("--quick", action="store_true", help="small fast sizes")
    p.add_argument(
        "--out",
        default="results/sweep.csv",
        help="CSV path (grid and config saved as .json beside it)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--extend",
        action="store_true",
        help="let the grid at --out grow (every axis keeps its values, same configuration)",
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="discard what --out holds and start afresh"
    )
    p.add_argument(
        "--scheduler",
        type=V.arg(_scheduler, "--scheduler"),
        default="none",
        help="where chunks run: 'none' (this process, its chunks on one thread per core; the "
        "faster here: benchmarks.sweep_engines), 'local' (an embedded Dask LocalCluster, one "
        "single-threaded worker process per core: a crashed worker loses only its chunks) or "
        "a Dask scheduler address such as tcp://HOST:8786",
    )
    p.add_argument(
        "--workers",
        type=V.arg(V.positive_int, "--workers"),
        default=None,
        help="worker processes of the embedded LocalCluster (default: one per core)",
    )
    p.add_argument(
        "--chunk-size",
        type=V.arg(V.positive_int, "--chunk-size"),
        default=16,
        help="at most this many (t, seed) cells per vmapped call",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no summary line")


def _preflight(p: argparse.ArgumentParser, args) -> None:
    """What ``cmcd-sweep`` checks before any work, naming the flag at fault: the flags that go
    together, --out and its JSON writable, a --scheduler address answering."""
    from cmcd_theory.sweeps import storage

    if args.workers is not None and args.scheduler != "local":
        p.error(
            f"argument --workers: only with --scheduler local, got --scheduler {args.scheduler}"
        )
    try:
        V.output_file("--out", args.out, example="sweep.csv")
        V.output_file("--out", storage.config_path(args.out), example="sweep.json")
        if "://" in args.scheduler:
            V.scheduler_address("--scheduler", args.scheduler)
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    """``cmcd-sweep``: parse, check, run the sweep, print where the rows are; returns 0.
    Invalid input (here or found by the sweep, e.g. another grid at ``--out``): one line on
    stderr, status 2. SIGINT / SIGTERM: one line saying how many rows are kept, status 130 /
    143 (:func:`cmcd_theory.validation.interruptible`)."""
    p = build_parser()
    args = p.parse_args(argv)
    _preflight(p, args)
    from cmcd_theory.sweeps import storage
    from cmcd_theory.sweeps.devices import setup_jax

    setup_jax()
    pipe = quick_pipeline() if args.quick else PipelineConfig()
    grid = {"channel": list(args.channel), "t": list(args.t), "method": list(args.methods)}
    for name in ("M", "m", "n", "tau", "encoder"):
        if getattr(args, name) is not None:
            grid[name] = list(getattr(args, name))
    cluster = (args.workers or "local") if args.scheduler == "local" else args.scheduler

    def work():
        try:
            return run_sweep(
                grid,
                pipeline=pipe,
                seeds=args.seeds,
                out=args.out,
                overwrite=args.overwrite,
                extend=args.extend,
                progress=not args.no_progress,
                cluster=cluster,
                chunk_size=args.chunk_size,
            )
        except (storage.SweepConfigError, storage.SweepFileError, storage.SweepWriteError) as e:
            raise ValueError(f"--out: {e}") from None

    def kept() -> str:
        n = storage.count_rows(args.out)
        return (
            f"{n} row{'' if n == 1 else 's'} kept in {args.out}; rerun the same command to resume"
        )

    from cmcd_theory.sweeps.cluster import abandon

    df = V.cli(lambda _argv: V.interruptible(work, PROG, kept, abandon), None, prog=PROG)
    print(f"{len(df)} rows in {args.out}")
    return 0
