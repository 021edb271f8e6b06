"""Certify a run: every bound of docs/theory.md beside what it bounds (B6), from plain arrays.

* ``features``     ``certify_features``: every bound on features exported from any model
* ``synthetic``    ``certify``, ``certify_stage1``: the same for a run of the synthetic pipeline
* ``certificate``  ``Certificate``: the rows, the wide columns and the confidence each spent
* ``rows``         the row builders and B1's rows (``transfer_rows``)
* ``probe``        B2, B3, B3p rows (``probe_rows``) and the probe certificate (their minimum)
* ``stage_rows``   B4, B5 rows (raw features) and B4n, B5n rows (normalised features)
* ``stats``        ``Stage2Stats``, ``Stage1Stats``: what B4 and B5 need about stages 2 and 1
* ``npz``          ``load_npz``: RUN.npz, the command line's input, and its schema
* ``cli``          the ``cmcd-certify`` command line (``python -m cmcd_theory.certify``)
"""

from cmcd_theory.certify.certificate import PART_KEYS as PART_KEYS
from cmcd_theory.certify.certificate import ROW_KEYS as ROW_KEYS
from cmcd_theory.certify.certificate import SPENDING as SPENDING
from cmcd_theory.certify.certificate import WIDE_KEYS as WIDE_KEYS
from cmcd_theory.certify.certificate import Certificate as Certificate
from cmcd_theory.certify.certificate import value_text as value_text
from cmcd_theory.certify.cli import build_parser as build_parser
from cmcd_theory.certify.cli import main as main
from cmcd_theory.certify.cli import run as run
from cmcd_theory.certify.features import MAX_WEIGHT_SAMPLES as MAX_WEIGHT_SAMPLES
from cmcd_theory.certify.features import certify_features as certify_features
from cmcd_theory.certify.npz import NPZ_ARRAYS as NPZ_ARRAYS
from cmcd_theory.certify.npz import STAGE1N_ARRAYS as STAGE1N_ARRAYS
from cmcd_theory.certify.npz import STAGE2N_ARRAYS as STAGE2N_ARRAYS
from cmcd_theory.certify.npz import load_npz as load_npz
from cmcd_theory.certify.probe import PROBE_FORMS as PROBE_FORMS
from cmcd_theory.certify.probe import PROBE_SPLIT as PROBE_SPLIT
from cmcd_theory.certify.probe import b3_forms as b3_forms
from cmcd_theory.certify.probe import norm_rtol as norm_rtol
from cmcd_theory.certify.probe import probe_certificate_rows as probe_certificate_rows
from cmcd_theory.certify.probe import probe_rows as probe_rows
from cmcd_theory.certify.rows import NAN as NAN
from cmcd_theory.certify.rows import transfer_rows as transfer_rows
from cmcd_theory.certify.stage_rows import STAGE1_KEYS as STAGE1_KEYS
from cmcd_theory.certify.stage_rows import stage1_normalized_rows as stage1_normalized_rows
from cmcd_theory.certify.stage_rows import stage1_rows as stage1_rows
from cmcd_theory.certify.stage_rows import stage2_normalized_rows as stage2_normalized_rows
from cmcd_theory.certify.stage_rows import stage2_rows as stage2_rows
from cmcd_theory.certify.stats import Stage1Stats as Stage1Stats
from cmcd_theory.certify.stats import Stage2Stats as Stage2Stats
from cmcd_theory.certify.synthetic import B5N_MC_DRAWS as B5N_MC_DRAWS
from cmcd_theory.certify.synthetic import GAUSSIAN_CHANNELS as GAUSSIAN_CHANNELS
from cmcd_theory.certify.synthetic import N_POP_SSL as N_POP_SSL
from cmcd_theory.certify.synthetic import b1b_applies as b1b_applies
from cmcd_theory.certify.synthetic import b4_applies as b4_applies
from cmcd_theory.certify.synthetic import b4n_applies as b4n_applies
from cmcd_theory.certify.synthetic import b5n_applies as b5n_applies
from cmcd_theory.certify.synthetic import certify as certify
from cmcd_theory.certify.synthetic import certify_stage1 as certify_stage1
from cmcd_theory.certify.synthetic import probe_bounds_apply as probe_bounds_apply

__all__ = [
    "ROW_KEYS",
    "WIDE_KEYS",
    "Stage1Stats",
    "Stage2Stats",
    "Certificate",
    "certify_features",
    "certify",
    "transfer_rows",
    "probe_rows",
    "stage2_rows",
    "stage1_rows",
    "probe_certificate_rows",
    "PROBE_SPLIT",
    "PROBE_FORMS",
    "load_npz",
    "main",
    "PART_KEYS",
    "SPENDING",
    "GAUSSIAN_CHANNELS",
    "b1b_applies",
    "probe_bounds_apply",
    "b4_applies",
    "b4n_applies",
    "stage2_normalized_rows",
    "stage1_normalized_rows",
    "b5n_applies",
    "N_POP_SSL",
    "certify_stage1",
    "MAX_WEIGHT_SAMPLES",
    "STAGE1N_ARRAYS",
    "STAGE2N_ARRAYS",
    "norm_rtol",
    "value_text",
]
