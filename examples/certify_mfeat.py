"""Certify a student trained on real paired data, through the npz route (README: "Certify your
own run").

With the toolkit, on the UCI multiple-features digits: a teacher on the pixel view (stage 1,
InfoNCE on augmented views of unlabeled rows), a linear student ``W clip(x)`` on a second view
distilled from the frozen teacher on unlabeled pairs with the CMC loss (stage 2; the raw student
features enter the loss, the form B4 covers), and a probe on n labeled target rows (stage 3).
Then it does what a user of another framework would: export the arrays to one ``.npz`` in the
documented schema, and certify it with the command line::

    .venv/bin/python examples/certify_mfeat.py [--target fou] [--steps 300] [--out-dir examples_out]

which runs ``python -m cmcd_theory.certify RUN.npz --out report.csv`` (the same program as
``.venv/bin/cmcd-certify``) and prints its table. ``examples_out/`` (the default ``--out-dir``)
is git-ignored: running the example leaves the repository clean.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from cmcd_theory.learn.models import clip_to_ball, linear_encoder, mlp_encoder, normalize
from cmcd_theory.learn.probe import fit_probe
from cmcd_theory.learn.training import TrainConfig, train_distill, train_ssl, tuple_loss
from cmcd_theory.worlds import mfeat


def train_and_export(
    path: str,
    *,
    target: str = "fou",
    steps: int = 300,
    feature_dim: int = 16,
    tuple_size: int = 100,
    seed: int = 0,
) -> dict:
    """Train the three stages on mfeat (source ``pix``, target ``target``) and write the npz.

    Returns the arrays written (names of the npz schema).
    """
    data = mfeat.load_mfeat(seed, views=(mfeat.SOURCE_VIEW, target))
    xa, xb, y, s = data.x[mfeat.SOURCE_VIEW], data.x[target], data.y, data.split
    k1, k2 = jax.random.split(jax.random.key(seed))

    # stage 1: the teacher, InfoNCE on two augmented views of the unlabeled source rows
    teacher_enc = mlp_encoder(xa.shape[1], (64,), feature_dim)
    teacher = train_ssl(
        k1,
        teacher_enc,
        jnp.asarray(xa[s.ssl]),
        mfeat.make_augment(),
        TrainConfig(steps=steps, batch_size=128, lr=1e-2, tau=0.1),
    )

    def za(rows):
        return np.asarray(normalize(teacher_enc.apply(teacher, jnp.asarray(xa[rows]))))

    # stage 2: a linear student W clip(x); the radius is fixed before seeing the data (the
    # standardised features have mean squared norm d), so that it rarely acts
    r_b = 2.0 * math.sqrt(xb.shape[1])
    student_enc = linear_encoder(xb.shape[1], feature_dim, clip_radius=r_b)
    dc = TrainConfig(steps=steps, batch_size=tuple_size, lr=1e-2, tau=0.1, student_features="raw")
    pairs = s.pairs
    student = train_distill(
        k2, student_enc, jnp.asarray(xb[pairs]), jnp.asarray(za(pairs)), "cmc", dc
    )

    def zb_raw(rows):
        return student_enc.apply(student, jnp.asarray(xb[rows]))

    def zb(rows):
        return np.asarray(normalize(zb_raw(rows)))

    n_used = (len(pairs) // tuple_size) * tuple_size
    clipped = clip_to_ball(jnp.asarray(xb[pairs[:n_used]]), r_b)

    # stage 3: the toolkit's probe on the normalised student features of the labeled rows
    lab, test = s.labeled, s.test
    probe = fit_probe(jnp.asarray(zb(lab)), jnp.asarray(y[lab]), mfeat.NUM_CLASSES)

    arrays = {
        "train_features": zb(lab),
        "train_labels": y[lab],
        "probe_weights": np.asarray(probe["W"]),
        "probe_bias": np.asarray(probe["b"]),
        "test_features": zb(test),
        "test_labels": y[test],
        # the same head on the teacher's features of the held-out rows: R_A (B1b)
        "source_test_features": za(test),
        "source_test_labels": y[test],
        # teacher and student features of held-out pairs: the certified TV lower bound
        "pair_source": za(test),
        "pair_target": zb(test),
        "pair_labels": y[test],
        "feature_norm_bound": 1.0,
        # stage 2, for B4: the tuple loss on the training pairs and on fresh (test) pairs
        "stage2_loss": "cmc",
        "stage2_tau": dc.tau,
        "stage2_tuple_size": tuple_size,
        "stage2_m": len(pairs),
        "stage2_input_radius": r_b,
        "stage2_feature_dim": feature_dim,
        "stage2_train_loss": float(
            tuple_loss("cmc", zb_raw(pairs), jnp.asarray(za(pairs)), dc, tuple_size)
        ),
        "stage2_student_norm": float(jnp.linalg.norm(student["W"])),
        "stage2_sum_sq_inputs": float(jnp.sum(clipped**2)),
        "stage2_pop_loss": float(
            tuple_loss("cmc", zb_raw(test), jnp.asarray(za(test)), dc, tuple_size)
        ),
        "stage2_n_pop": len(test),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--target", default="fou", choices=mfeat.TARGET_VIEWS, help="target view B")
    p.add_argument("--steps", type=int, default=300, help="training steps of stages 1 and 2")
    p.add_argument(
        "--out-dir",
        default="examples_out",
        help="where run.npz and report.csv go (examples_out/ is git-ignored)",
    )
    args = p.parse_args(argv)
    npz = os.path.join(args.out_dir, "run.npz")
    report = os.path.join(args.out_dir, "report.csv")
    train_and_export(npz, target=args.target, steps=args.steps)
    print(f"exported {npz}; certifying it as any user would:\n", flush=True)
    # the command line, as installed: .venv/bin/cmcd-certify run.npz --out report.csv
    done = subprocess.run([sys.executable, "-m", "cmcd_theory.certify", npz, "--out", report])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
