"""Every bound of docs/theory.md (B1-B6) as a pure function of numbers, in float64.

A bound takes the same inputs as the measurement it bounds (a probe's training features,
labels and weights; an empirical distillation loss and the sizes it was computed from) and
returns a frozen dataclass of named terms: at least ``empirical``, ``complexity``,
``confidence`` and ``total``, plus every parameter that was chosen (margin, norm grid value,
prior scale, the confidence share of each grid point). ``.as_dict()`` gives a flat row for a
table. Nothing is clipped: a vacuous bound (``total >= 1`` for a 0-1 risk) is returned as is,
with ``.vacuous`` saying so. Where a constant (margin ``rho``, norm ``Lambda``, prior scale
``sigma_p``) is picked after seeing the data, it is picked from a grid fixed in advance (the
module constants ``*_GRID``) and ``delta`` is divided by the grid size (union bound).

Modules, by label of docs/theory.md:

* ``_checks``             input checks, union-bound grid bookkeeping, the result mixins
* ``kl``                  kl tools (T5) and test-set estimates (T4, C)
* ``transfer``            B1 modality-gap transfer
* ``margin``              B2 Rademacher margin bound; the probe helpers shared with B3
* ``pac_bayes``           B3 PAC-Bayes-kl bound for the probe, B3p with a split prior
* ``pac_bayes_mc``        B3 / B3p's Monte Carlo kernel: the perturbed probe's error counts
* ``tuples``              B4 / B5 Rademacher bounds on contrastive losses over i.i.d. tuples
* ``normalized_distill``  B4n per-pair PAC-Bayes-kl bound, normalised student features
* ``normalized_ssl``      B5n per-sample PAC-Bayes-kl bound, normalised stage-1 features
* ``report``              B6 the end-to-end report
"""

from cmcd_theory.bounds.kl import HoldoutCheck as HoldoutCheck
from cmcd_theory.bounds.kl import clopper_pearson as clopper_pearson
from cmcd_theory.bounds.kl import hoeffding_slack as hoeffding_slack
from cmcd_theory.bounds.kl import holds_on_test_set as holds_on_test_set
from cmcd_theory.bounds.kl import kl_bernoulli as kl_bernoulli
from cmcd_theory.bounds.kl import kl_inverse_lower as kl_inverse_lower
from cmcd_theory.bounds.kl import kl_inverse_upper as kl_inverse_upper
from cmcd_theory.bounds.kl import risk_upper as risk_upper
from cmcd_theory.bounds.kl import student_t_interval as student_t_interval
from cmcd_theory.bounds.margin import MARGIN_LAMBDA_GRID as MARGIN_LAMBDA_GRID
from cmcd_theory.bounds.margin import RHO_GRID as RHO_GRID
from cmcd_theory.bounds.margin import MarginBound as MarginBound
from cmcd_theory.bounds.margin import _margins as _margins
from cmcd_theory.bounds.margin import margin_bound as margin_bound
from cmcd_theory.bounds.normalized_distill import COVER_EPS as COVER_EPS
from cmcd_theory.bounds.normalized_distill import KAPPA_GRID as KAPPA_GRID
from cmcd_theory.bounds.normalized_distill import NormalizedDistillBound as NormalizedDistillBound
from cmcd_theory.bounds.normalized_distill import candidate_mgf_upper as candidate_mgf_upper
from cmcd_theory.bounds.normalized_distill import (
    normalized_distillation_bound as normalized_distillation_bound,
)
from cmcd_theory.bounds.normalized_ssl import NormalizedSSLBound as NormalizedSSLBound
from cmcd_theory.bounds.normalized_ssl import normalized_ssl_bound as normalized_ssl_bound
from cmcd_theory.bounds.pac_bayes import SIGMA_P_GRID as SIGMA_P_GRID
from cmcd_theory.bounds.pac_bayes import SIGMA_Q_RELATIVE_GRID as SIGMA_Q_RELATIVE_GRID
from cmcd_theory.bounds.pac_bayes import PacBayesBound as PacBayesBound
from cmcd_theory.bounds.pac_bayes import SplitPriorPacBayesBound as SplitPriorPacBayesBound
from cmcd_theory.bounds.pac_bayes import _memo_key as _memo_key
from cmcd_theory.bounds.pac_bayes import _stochastic_errors as _stochastic_errors
from cmcd_theory.bounds.pac_bayes import gaussian_kl as gaussian_kl
from cmcd_theory.bounds.pac_bayes import maurer_bound as maurer_bound
from cmcd_theory.bounds.pac_bayes import pac_bayes_bounds as pac_bayes_bounds
from cmcd_theory.bounds.pac_bayes import pac_bayes_kl_bound as pac_bayes_kl_bound
from cmcd_theory.bounds.pac_bayes import (
    pac_bayes_split_prior_bound as pac_bayes_split_prior_bound,
)
from cmcd_theory.bounds.pac_bayes import prefetch_monte_carlo as prefetch_monte_carlo
from cmcd_theory.bounds.pac_bayes import sample_convergence_upper as sample_convergence_upper
from cmcd_theory.bounds.pac_bayes import stochastic_error_rate as stochastic_error_rate
from cmcd_theory.bounds.report import ReportRow as ReportRow
from cmcd_theory.bounds.report import end_to_end_report as end_to_end_report
from cmcd_theory.bounds.transfer import TransferBound as TransferBound
from cmcd_theory.bounds.transfer import transfer_bound as transfer_bound
from cmcd_theory.bounds.tuples import LAMBDA_GRID as LAMBDA_GRID
from cmcd_theory.bounds.tuples import TupleLossBound as TupleLossBound
from cmcd_theory.bounds.tuples import distillation_bound as distillation_bound
from cmcd_theory.bounds.tuples import distillation_loss_range as distillation_loss_range
from cmcd_theory.bounds.tuples import distillation_tuple_lipschitz as distillation_tuple_lipschitz
from cmcd_theory.bounds.tuples import infonce_loss_range as infonce_loss_range
from cmcd_theory.bounds.tuples import infonce_tuple_lipschitz as infonce_tuple_lipschitz
from cmcd_theory.bounds.tuples import ssl_bound as ssl_bound
from cmcd_theory.bounds.tuples import tuple_split as tuple_split

__all__ = [
    "RHO_GRID",
    "MARGIN_LAMBDA_GRID",
    "SIGMA_P_GRID",
    "SIGMA_Q_RELATIVE_GRID",
    "LAMBDA_GRID",
    "kl_bernoulli",
    "kl_inverse_upper",
    "kl_inverse_lower",
    "hoeffding_slack",
    "risk_upper",
    "student_t_interval",
    "clopper_pearson",
    "holds_on_test_set",
    "HoldoutCheck",
    "TransferBound",
    "transfer_bound",
    "MarginBound",
    "margin_bound",
    "gaussian_kl",
    "sample_convergence_upper",
    "maurer_bound",
    "PacBayesBound",
    "pac_bayes_kl_bound",
    "stochastic_error_rate",
    "SplitPriorPacBayesBound",
    "pac_bayes_split_prior_bound",
    "pac_bayes_bounds",
    "prefetch_monte_carlo",
    "tuple_split",
    "distillation_tuple_lipschitz",
    "distillation_loss_range",
    "infonce_tuple_lipschitz",
    "infonce_loss_range",
    "TupleLossBound",
    "distillation_bound",
    "ssl_bound",
    "KAPPA_GRID",
    "COVER_EPS",
    "candidate_mgf_upper",
    "NormalizedDistillBound",
    "normalized_distillation_bound",
    "NormalizedSSLBound",
    "normalized_ssl_bound",
    "ReportRow",
    "end_to_end_report",
]
