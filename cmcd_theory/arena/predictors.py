"""Theories of *when* distillation pays, as predictors with one signature (docs/theory.md, P).

A predictor answers, for one cell of the arena (a world at target knob t, a budget M, m, n and
one CMCD route), the question "will the CMCD route beat the best target-only route on target
test error?", before the target test set is touched::

    predict(world, budget, evidence) -> Prediction(pays, margin)

* ``world``: the cell's :class:`~cmcd_theory.worlds.WorldConfig` (with ``t`` set to the cell's
  target knob);
* ``budget``: :class:`Budget`, the sample sizes of the three stages and the sizes of the
  models trained on them;
* ``evidence``: :class:`Evidence`, what a predictor may look at, in three groups
  (:data:`EVIDENCE_GROUPS`): ``ground_truth`` (exact or Monte Carlo quantities of the world:
  population theories), ``certificates`` and ``feature_mi`` (training-only quantities of the
  trained routes: empirical theories). No field holds a test error.

A :class:`Predictor` names its function and the groups it ``uses``; the arena hands it the
evidence with every other group blanked (:meth:`Evidence.only`), so a predictor cannot read
what it did not declare. The built-ins (:data:`BUILTIN`) are ``always_distil``,
``paper_population``, ``certificates``, ``cch_latent``, ``cch_features`` and
``cch_features_pre``; a user adds one by
writing a function and wrapping it in :class:`Predictor` (``examples/custom_predictor.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

#: the groups of :class:`Evidence` a predictor may declare, and the fields of each
EVIDENCE_GROUPS: dict[str, tuple[str, ...]] = {
    "ground_truth": ("tv_latent", "bayes_A", "bayes_B", "mi_AB", "mi_By"),
    "certificates": ("certificate_route", "certificate_target"),
    "feature_mi": ("mi_features_AB", "mi_features_By", "mi_pre_AB", "mi_pre_By"),
}


class Prediction(NamedTuple):
    """A predictor's call on one cell.

    Attributes:
      pays: whether the CMCD route is predicted to beat the best target-only route.
      margin: a signed score whose sign is the call (positive: pays), in the predictor's own
        units, or ``None`` when the predictor gives none; the arena ranks it against the
        measured gain (Spearman).
    """

    pays: bool
    margin: float | None = None


class Budget(NamedTuple):
    """The sizes of a cell: samples of each stage and parameters of each trained model.

    Attributes:
      M: unlabeled source samples (stage 1).
      m: unlabeled pairs (stage 2; also the target SSL route's unlabeled target samples).
      n: labeled target samples (stage 3, and the supervised route's training set).
      num_classes: K.
      feature_dim: p, the encoders' feature dimension.
      params_A: trained parameters of the source encoder (stage 1).
      params_B: trained parameters of the target encoder (stage 2, target SSL, supervised).
      params_probe: parameters of the linear probe, ``K (p + 1)``.
    """

    M: int
    m: int
    n: int
    num_classes: int
    feature_dim: int
    params_A: int
    params_B: int
    params_probe: int


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a predictor may look at for one (cell, CMCD route); NaN where not available.

    Ground truth (group ``ground_truth``, a property of the world at the cell's t; docs/theory.md
    G5 and the source-channel G-section):

    * ``tv_latent``: ``TV(law(s_A, y), law(s_B, y))``, exact;
    * ``bayes_A``, ``bayes_B``: eps*_A, eps*_B, exact (G5b quadrature);
    * ``mi_AB``, ``mi_By``: ``I(s_A; s_B)`` and ``I(s_B; y)`` in nats (Monte Carlo with the
      true densities, :func:`cmcd_theory.worlds.latent_mutual_information`).

    Certificates (group ``certificates``, training data only; B6): the probe certificate
    ``probe_total`` (min of B2 and B3 at a split delta, computed on the n labeled training
    samples) of this CMCD route (``certificate_route``) and of the target SSL route
    (``certificate_target``), each the mean over the cell's seeds.

    Feature mutual informations (group ``feature_mi``, training data only): Gaussian estimates
    (:mod:`cmcd_theory.arena.mi`), nats, means over seeds, of ``I(Z_A; Z_B)`` on the m stage-2
    pairs (teacher features of x_A against target features of x_B) and of ``I(Z_B; Y)`` on the n
    labeled samples (target features and labels), for two target representations: this route's
    distilled student (``mi_features_AB``, ``mi_features_By``) and the target's own label-free
    encoder before any distillation, the target SSL route's (``mi_pre_AB``, ``mi_pre_By``).
    """

    tv_latent: float = math.nan
    bayes_A: float = math.nan
    bayes_B: float = math.nan
    mi_AB: float = math.nan
    mi_By: float = math.nan
    certificate_route: float = math.nan
    certificate_target: float = math.nan
    mi_features_AB: float = math.nan
    mi_features_By: float = math.nan
    mi_pre_AB: float = math.nan
    mi_pre_By: float = math.nan

    def only(self, groups) -> Evidence:
        """A copy in which every field outside ``groups`` (names of :data:`EVIDENCE_GROUPS`)
        is NaN: what a predictor that declared ``groups`` is given."""
        unknown = set(groups) - set(EVIDENCE_GROUPS)
        if unknown:
            raise ValueError(
                f"evidence groups must be among {tuple(EVIDENCE_GROUPS)}, got {sorted(unknown)}"
            )
        keep = {f for g in groups for f in EVIDENCE_GROUPS[g]}
        return dataclasses.replace(self, **{f: math.nan for f in _fields() if f not in keep})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fields() -> tuple[str, ...]:
    return tuple(f for g in EVIDENCE_GROUPS.values() for f in g)


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A theory of when distillation pays, as a pure function.

    Attributes:
      name: a short identifier (a column ``call_<name>`` of the arena's cell table).
      fn: ``fn(world, budget, evidence) -> Prediction``; it must not depend on anything but
        its arguments (no state, no randomness).
      uses: the :data:`EVIDENCE_GROUPS` it reads; the arena blanks the others.
      source: where the theory comes from (a docs/theory.md label, a paper).

    Example:
      >>> p = Predictor("small_n", lambda world, budget, ev: Prediction(budget.n <= 64), ())
      >>> b = Budget(M=1024, m=512, n=32, num_classes=4, feature_dim=8, params_A=100,
      ...            params_B=100, params_probe=36)
      >>> p(None, b, Evidence(bayes_A=0.1)).pays
      True
    """

    name: str
    fn: Callable[..., Prediction]
    uses: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"predictor name must be an identifier, got {self.name!r}")
        object.__setattr__(self, "uses", tuple(self.uses))
        Evidence().only(self.uses)  # validates the group names

    def __call__(self, world, budget: Budget, evidence: Evidence) -> Prediction:
        """The call on one cell, on the evidence restricted to :attr:`uses`; a plain bool is
        accepted as ``Prediction(pays)`` and a non-finite margin becomes ``None``."""
        out = self.fn(world, budget, evidence.only(self.uses))
        if isinstance(out, (bool, int)) and not isinstance(out, Prediction):
            out = Prediction(bool(out))
        margin = None if out.margin is None or not math.isfinite(out.margin) else float(out.margin)
        return Prediction(bool(out.pays), margin)


# ---- the built-in predictors ------------------------------------------------------------------


def always_distil(world, budget: Budget, evidence: Evidence) -> Prediction:
    """The constant baseline: distillation always pays. No margin (it ranks nothing)."""
    return Prediction(True, None)


#: constant of the estimation terms of :func:`paper_population` (``c sqrt(D / N)``), fixed a
#: priori at 1 (the leading-order parametric rate, no logarithm, no delta)
ESTIMATION_CONSTANT = 1.0


def estimation_term(params: int, samples: int, c: float = ESTIMATION_CONSTANT) -> float:
    """Leading-order estimation error of a model with ``params`` trained parameters on
    ``samples`` i.i.d. samples: ``c sqrt(params / samples)`` (the parametric rate of the
    Rademacher and VC bounds behind B2-B5, without their logarithms and confidence terms).

    >>> round(estimation_term(64, 16), 6)
    2.0
    """
    return c * math.sqrt(params / samples)


def paper_population_errors(budget: Budget, evidence: Evidence) -> tuple[float, float]:
    """``(U_CMCD, U_target)``: the error of the CMCD route and of the supervised route that the
    paper's theory predicts in its population limit (docs/theory.md, P2):

    ``U_CMCD = eps*_A + TV_latent + E(D_A, M) + E(D_B, m) + E(D_h, n)`` (B1a's transfer of the
    source's Bayes error across the modality gap, plus one estimation term per stage) and
    ``U_target = eps*_B + E(D_B + D_h, n)`` (the target's Bayes floor plus the estimation of
    encoder and head on the n labels), with ``E`` :func:`estimation_term` and ``D_h`` the
    probe's parameters.
    """
    u_cmcd = (
        evidence.bayes_A
        + evidence.tv_latent
        + estimation_term(budget.params_A, budget.M)
        + estimation_term(budget.params_B, budget.m)
        + estimation_term(budget.params_probe, budget.n)
    )
    u_target = evidence.bayes_B + estimation_term(budget.params_B + budget.params_probe, budget.n)
    return u_cmcd, u_target


def paper_population(world, budget: Budget, evidence: Evidence) -> Prediction:
    """Lin et al. (2024) in the population limit (docs/theory.md, P2): pays iff
    ``U_CMCD < U_target`` (:func:`paper_population_errors`); margin ``U_target - U_CMCD``
    (error units)."""
    u_cmcd, u_target = paper_population_errors(budget, evidence)
    margin = u_target - u_cmcd
    return Prediction(bool(margin > 0), margin)


def certificates(world, budget: Budget, evidence: Evidence) -> Prediction:
    """The toolkit's finite-sample certificates (docs/theory.md, B6 and P3): pays iff the CMCD
    route's certified probe bound is below the target SSL route's (the one target-only route
    with a certificate: supervised features see the labels); margin: their difference
    (error units). A missing certificate counts as infinitely loose."""
    route = _or_inf(evidence.certificate_route)
    target = _or_inf(evidence.certificate_target)
    margin = target - route
    return Prediction(bool(margin > 0), margin if math.isfinite(margin) else None)


def cch_latent(world, budget: Budget, evidence: Evidence) -> Prediction:
    """The Cross-modal Complementarity Hypothesis (Xie, Xu, Sanguinetti 2025, arXiv 2510.13182)
    on the exact latents (docs/theory.md, P4): pays iff ``I(s_A; s_B) > I(s_B; y)``; margin:
    their difference (nats)."""
    margin = evidence.mi_AB - evidence.mi_By
    return Prediction(bool(margin > 0), margin)


def cch_features(world, budget: Budget, evidence: Evidence) -> Prediction:
    """CCH on learned features, with the distilled student as the target representation
    (docs/theory.md, P5): pays iff the Gaussian estimate of ``I(Z_A; Z_B)`` (teacher and
    student features on the m pairs) exceeds that of ``I(Z_B; Y)`` (student features and the n
    labels); margin: their difference (nats). Both sides are the same estimator
    (:func:`cmcd_theory.arena.mi.gaussian_mi`, corrected by its null mean), so the comparison
    is in one unit."""
    margin = evidence.mi_features_AB - evidence.mi_features_By
    return Prediction(bool(margin > 0), margin)


def cch_features_pre(world, budget: Budget, evidence: Evidence) -> Prediction:
    """CCH on learned features evaluated before distilling (docs/theory.md, P5): as
    :func:`cch_features` with Z_B the target's own label-free representation (the target SSL
    route's encoder), so that the criterion can choose whether to distil without having
    distilled, and stage 2 (which trains Z_B to match Z_A) does not inflate ``I(Z_A; Z_B)``."""
    margin = evidence.mi_pre_AB - evidence.mi_pre_By
    return Prediction(bool(margin > 0), margin)


def _or_inf(x: float) -> float:
    return x if math.isfinite(x) else math.inf


BUILTIN: tuple[Predictor, ...] = (
    Predictor("always_distil", always_distil, (), "the constant"),
    Predictor(
        "paper_population",
        paper_population,
        ("ground_truth",),
        "Lin et al. 2024 (arXiv 2405.03355), B1a + stage estimation terms; theory.md P2",
    ),
    Predictor(
        "certificates",
        certificates,
        ("certificates",),
        "probe certificates (B2, B3, B6) on training data; theory.md P3",
    ),
    Predictor(
        "cch_latent",
        cch_latent,
        ("ground_truth",),
        "CCH (Xie et al. 2025, arXiv 2510.13182) on exact latents; theory.md P4",
    ),
    Predictor(
        "cch_features",
        cch_features,
        ("feature_mi",),
        "CCH on the distilled student's features, Gaussian MI estimates; theory.md P5",
    ),
    Predictor(
        "cch_features_pre",
        cch_features_pre,
        ("feature_mi",),
        "CCH on the target's own SSL features (before distilling); theory.md P5",
    ),
)
