"""The ``cmcd-certify`` command line (also ``python -m cmcd_theory.certify``)::

    cmcd-certify RUN.npz [--out report.csv] [--delta 0.05] [--delta-test 0.05] [--seed 0]
                         [--weight-samples 1000] [--num-classes K] [--no-progress]

prints the table of :func:`~cmcd_theory.certify.features.certify_features` on the arrays of
RUN.npz (schema: :mod:`cmcd_theory.certify.npz`) and writes it as CSV. Before any work it
checks what it will write (``--out``: :func:`cmcd_theory.validation.output_file`). Invalid
input: one line on stderr naming the file, array or flag at fault, exit status 2. SIGINT /
SIGTERM: one line, exit status 130 / 143, nothing written
(:func:`cmcd_theory.validation.interruptible`).
"""

from __future__ import annotations

import sys

from cmcd_theory import validation as V
from cmcd_theory.certify.certificate import Certificate
from cmcd_theory.certify.features import MAX_WEIGHT_SAMPLES, certify_features
from cmcd_theory.certify.npz import load_npz
from cmcd_theory.learn.compile_cache import enable_compile_cache

PROG = "cmcd-certify"

_EPILOG = f"""\
rows (one per bound and form, in this order; a bound that does not apply says why):
  B2_sample, B2_data_free  R_B <= ramp loss + margin complexity + confidence (Rademacher;
                           sample and data-free forms, delta/2 each)
  B3                       R_B <= 2 L(Q): PAC-Bayes-kl, zero-mean Gaussian prior (delta/2)
  B3p                      the same with a prior fitted on the first half of the n samples
  B4_data_free, B4_sample  stage-2 population tuple loss (raw student features; stage2_*)
  B4n                      stage-2 CMC loss of the perturbed normalised student (stage2n_*)
  B5_data_free, B5_sample  stage-1 population InfoNCE tuple loss (raw features; stage1_*)
  B5n                      stage-1 O1 loss of the perturbed normalised encoder (stage1n_*)
  B1b                      R_B <= R_A(same head) + TV(learned features) (needs a certified
                           upper bound on that TV: the synthetic track only)
  TV_lower                 TV(learned features) >= 2 acc - 1 - slack, a held-out two-sample
                           classifier on pair_source / pair_target (below 0: reported as 0)
  B1a, floor               eps*_B <= eps*_A + TV_latent; R_B >= eps*_B (a synthetic world's
                           exact ground truth only)
  probe                    the probe certificate: min(B2 forms, 2 L(Q) of B3 and B3p), delta
                           split over the four so that the minimum holds at 1 - delta

output columns (--out writes them as CSV):
  bound, form          the row's name and form
  bounds, statement    what the bound bounds, and the inequality
  measured, value      the held-out measurement and the bound's value
  empirical, complexity, confidence
                       the bound's terms; the table's "value = ..." shows how they give the
                       value (a sum, or a kl inversion for B3, B3p, B4n, B5n); each bound's
                       own named terms follow (e.g. rho, kl, sigma_q, value_raw)
  delta                the confidence it spent (delta / 2 per form where forms are min-combined)
  slack                the held-out measurement's Hoeffding slack at --delta-test
  applicable, reason   whether it applies, and why not
  vacuous, holds       value >= the trivial bound; measured within value up to the slack

RUN.npz: train_features (n, D) float and train_labels (n,) int are required; optional
probe_weights (K, D), probe_bias (K,), test_features / test_labels, source_test_features /
source_test_labels, pair_source / pair_target / pair_labels, num_classes, feature_norm_bound,
label_free, stage2_<field> (B4), stage1_<field> (B5), stage2n_<name> (B4n: x, z, W, W_prior,
bank, tau, tuple_size; optional x_pop, z_pop) and stage1n_<name> (B5n: x, x_pos, W, W_prior,
candidates, tau, tuple_size; optional n_draws, x_pop, x_pop_pos, ssl_train_loss, ...): see
the README section "Certify your own run". K is the probe's row count, else num_classes /
--num-classes, else the largest label + 1 when every label array agrees on it (otherwise
an error asks for --num-classes).

Each call recomputes every bound; B3's Monte Carlo dominates (n x K x --weight-samples
draws; a progress bar on a terminal). The probe fits' compiled programs are kept in JAX's
persistent cache ($JAX_COMPILATION_CACHE_DIR, default .jax_cache in a source checkout, else
~/.cache/cmcd_theory/jax; empty: off) and read back by later calls on data of the same shape.
--weight-samples is at most {MAX_WEIGHT_SAMPLES:,}.
Before any work: --out must be a writable file path (not a directory, not a read-only file).
Invalid input: one line on stderr, exit status 2. Ctrl-C (SIGINT) or SIGTERM: one line,
nothing written, exit status 130 (SIGINT) or 143 (SIGTERM)."""


def build_parser():
    """The ``cmcd-certify`` argument parser."""
    p = V.parser(
        PROG,
        "Every bound of docs/theory.md on features exported from any "
        "model (B1-B6), from one .npz file.",
        _EPILOG,
    )
    p.add_argument("run", metavar="RUN.npz", help="the run's arrays (schema below)")
    p.add_argument("--out", default=None, help="write the table as CSV here")
    p.add_argument(
        "--delta",
        type=V.arg(V.probability, "--delta"),
        default=0.05,
        help="confidence of each bound, in (0, 1)",
    )
    p.add_argument(
        "--delta-test",
        type=V.arg(V.probability, "--delta-test"),
        default=0.05,
        help="failure probability of each held-out check, in (0, 1)",
    )
    p.add_argument(
        "--seed",
        type=V.arg(V.integer, "--seed", lo=0),
        default=0,
        help="seed of B3's weight draws and of the two-sample split (>= 0)",
    )
    p.add_argument(
        "--weight-samples",
        type=V.arg(V.integer, "--weight-samples", lo=1, hi=MAX_WEIGHT_SAMPLES),
        default=1000,
        help=f"B3's Monte Carlo weight draws (1 to {MAX_WEIGHT_SAMPLES:,})",
    )
    p.add_argument(
        "--num-classes",
        type=V.arg(V.integer, "--num-classes", lo=2),
        default=None,
        help="K, the number of classes (default: the probe's rows, the npz's "
        "num_classes, or the largest label + 1 when the label arrays agree)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _arrays(args) -> dict:
    """RUN.npz's keyword arguments, with ``--num-classes`` (which must agree with an npz
    ``num_classes``)."""
    kwargs = load_npz(args.run)
    if args.num_classes is not None:
        given = kwargs.get("num_classes")
        if given is not None and given != args.num_classes:
            raise ValueError(
                f"--num-classes {args.num_classes} disagrees with num_classes = "
                f"{given} in {args.run}"
            )
        kwargs["num_classes"] = args.num_classes
    return kwargs


def _write(cert: Certificate, out: str) -> None:
    """The table as CSV at ``out``, whole (a temporary file renamed; the user's umask)."""
    try:
        V.write_atomic(out, cert.frame().to_csv(index=False))
    except OSError as e:
        raise ValueError(f"--out: cannot write {out}: {e.strerror or e}") from None


def run(argv=None) -> Certificate:
    """Parse ``argv``, check ``--out``, certify RUN.npz, print the table (and write
    ``--out``); SIGINT / SIGTERM end it with one line (status 130 / 143)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.out is not None:
        try:
            V.output_file("--out", args.out, example="report.csv")
        except ValueError as e:
            p.error(str(e))
    enable_compile_cache()  # the probe fits of a later call on the same shapes read it back

    written: list = []

    def work() -> Certificate:
        cert = certify_features(
            **_arrays(args),
            delta=args.delta,
            delta_test=args.delta_test,
            seed=args.seed,
            n_weight_samples=args.weight_samples,
            progress=not args.no_progress,
        )
        if args.out:
            _write(cert, args.out)
            written.append(args.out)
        return cert

    def kept() -> str:
        if written:
            return f"the table was written to {written[0]}"
        return "nothing written (the table is written whole, at the end); rerun the same command"

    cert = V.interruptible(work, PROG, kept)
    print(cert.format())
    checked = [r for r in cert.rows if r["holds"] is not None]
    print(
        f"\n{len(cert.applicable())} of {len(cert.rows)} bounds apply; "
        f"{sum(r['holds'] for r in checked)} of {len(checked)} checked on held-out data hold."
    )
    if args.out:
        print(f"table -> {args.out}")
    sys.stdout.flush()
    return cert


def main(argv=None) -> int:
    """``cmcd-certify`` / ``python -m cmcd_theory.certify``: exit status 0, or 2 with one line
    on stderr for invalid input (130 / 143 on SIGINT / SIGTERM)."""
    V.cli(run, argv, prog=PROG)
    return 0
