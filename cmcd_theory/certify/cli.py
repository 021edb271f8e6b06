"""The ``cmcd-certify`` command line (also ``python -m cmcd_theory.certify``)::

    cmcd-certify RUN.npz [--out report.csv] [--delta 0.05] [--delta-test 0.05] [--seed 0]

prints the table of :func:`~cmcd_theory.certify.features.certify_features` on the arrays of
RUN.npz (schema: :mod:`cmcd_theory.certify.npz`) and writes it as CSV. Invalid input: one line
on stderr naming the file and array at fault, exit status 2.
"""

from __future__ import annotations

import os

from cmcd_theory import validation as V
from cmcd_theory.certify.certificate import Certificate
from cmcd_theory.certify.features import certify_features
from cmcd_theory.certify.npz import load_npz

_EPILOG = """\
output columns (one row per bound and form; --out writes them as CSV):
  bound, form          B2_sample, B2_data_free, B3, B4_*, B5_*, B1b, TV_lower, B1a, floor
  bounds, statement    what the bound bounds, and the inequality
  measured, value      the held-out measurement and the bound's value
  empirical, complexity, confidence
                       the bound's terms (plus each bound's own named terms, e.g. rho, kl)
  delta                the confidence it spent (delta / 2 per form where forms are min-combined)
  slack                the held-out measurement's Hoeffding slack at --delta-test
  applicable, reason   whether it applies, and why not
  vacuous, holds       value >= the trivial bound; measured within value up to the slack

RUN.npz: train_features (n, D) float and train_labels (n,) int are required; optional
probe_weights (K, D), probe_bias (K,), test_features / test_labels, source_test_features /
source_test_labels, pair_source / pair_target / pair_labels, num_classes, feature_norm_bound,
label_free, stage2_<field> (B4) and stage1_<field> (B5): see the README section "Certify your
own run". The run is not resumed or cached: each call recomputes every bound (seconds).
Invalid input: one line on stderr, exit status 2."""


def build_parser():
    """The ``cmcd-certify`` argument parser."""
    p = V.parser("cmcd-certify", "Every bound of docs/theory.md on features exported from any "
                 "model (B1-B6), from one .npz file.", _EPILOG)
    p.add_argument("run", metavar="RUN.npz", help="the run's arrays (schema below)")
    p.add_argument("--out", default=None, help="write the table as CSV here")
    p.add_argument("--delta", type=V.arg(V.probability, "--delta"), default=0.05,
                   help="confidence of each bound, in (0, 1)")
    p.add_argument("--delta-test", type=V.arg(V.probability, "--delta-test"), default=0.05,
                   help="failure probability of each held-out check, in (0, 1)")
    p.add_argument("--seed", type=V.arg(V.integer, "--seed", lo=0), default=0,
                   help="seed of B3's weight draws and of the two-sample split (>= 0)")
    p.add_argument("--weight-samples", type=V.arg(V.positive_int, "--weight-samples"),
                   default=1000, help="B3's Monte Carlo weight draws (>= 1)")
    return p


def run(argv=None) -> Certificate:
    """Parse ``argv``, certify RUN.npz, print the table (and write ``--out``)."""
    args = build_parser().parse_args(argv)
    kwargs = load_npz(args.run)
    cert = certify_features(**kwargs, delta=args.delta, delta_test=args.delta_test,
                            seed=args.seed, n_weight_samples=args.weight_samples)
    print(cert.format())
    checked = [r for r in cert.rows if r["holds"] is not None]
    print(f"\n{len(cert.applicable())} of {len(cert.rows)} bounds apply; "
          f"{sum(r['holds'] for r in checked)} of {len(checked)} checked on held-out data hold.")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        cert.frame().to_csv(args.out, index=False)
        print(f"table -> {args.out}")
    return cert


def main(argv=None) -> int:
    """``cmcd-certify`` / ``python -m cmcd_theory.certify``: exit status 0, or 2 with one line
    on stderr for invalid input."""
    V.cli(run, argv, prog="cmcd-certify")
    return 0
