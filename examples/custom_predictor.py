"""Score a theory of your own in the theory arena (docs/theory.md, P): one function, one line
to wrap it, one call to score it beside the built-in theories and the constant.

The theory here: "distil iff the source's Bayes error is below the target's", with margin
``eps*_B - eps*_A``. It reads the world's ground truth only, so it declares
``uses=("ground_truth",)``; the arena blanks every other kind of evidence before calling it.

By default the example runs a tiny arena (one world drawn for ``--seed``, two cells, two seeds,
short training: well under a minute) and prints the leaderboard; ``--cells`` scores a saved cell
table instead (e.g. ``results/theory_arena.csv`` of ``python -m experiments.theory_arena``),
with no training at all. It writes nothing::

    .venv/bin/python examples/custom_predictor.py [--seed 7] [--cells results/theory_arena.csv]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pandas as pd

from cmcd_theory import arena
from cmcd_theory.arena import Prediction, Predictor


def teacher_beats_target(world, budget, evidence) -> Prediction:
    """Distil iff eps*_A < eps*_B; margin eps*_B - eps*_A (error units)."""
    margin = evidence.bayes_B - evidence.bayes_A
    return Prediction(margin > 0, margin)


MINE = Predictor(
    "teacher_beats_target",
    teacher_beats_target,
    uses=("ground_truth",),
    source="examples/custom_predictor.py",
)


def tiny_cells(seed: int) -> pd.DataFrame:
    """A tiny arena run: one drawn world, one t and two n, two seeds, 30 steps per stage."""
    pc = arena.arena_pipeline(quick=True)
    steps = pc.ssl.replace(steps=30)
    pc = pc.replace(
        ssl=steps,
        distill=steps,
        supervised=pc.supervised.replace(steps=30),
        probe_steps=30,
        n_test=2000,
    )
    draw = arena.draw_worlds(seed, 1, grid_points=2)[0]
    draw = dataclasses.replace(draw, t_grid=draw.t_grid[:1])
    return arena.run_arena([draw], seeds=2, pipeline=pc, cmcd=("cmc",))


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7, help="seed of the drawn world (tiny run)")
    p.add_argument("--cells", default=None, help="a saved cell table to score instead")
    args = p.parse_args(argv)
    cells = pd.read_csv(args.cells) if args.cells else tiny_cells(args.seed)
    board = arena.score_predictors([*arena.BUILTIN, MINE], cells)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            board[
                [
                    "predictor",
                    "method",
                    "cells",
                    "correct",
                    "accuracy",
                    "balanced_accuracy",
                    "spearman",
                ]
            ].to_string(index=False)
        )
    return board


if __name__ == "__main__":
    main()
    sys.exit(0)
