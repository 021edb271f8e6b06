"""What the tuple bounds need about the encoders' training: :class:`Stage2Stats` (B4,
distillation) and :class:`Stage1Stats` (B5, InfoNCE), checked on construction.

Both describe a linear encoder ``W clip(x)`` (inputs projected on the ball of radius
``input_radius``) whose *unnormalised* features enter a tuple loss of ``tuple_size``
candidates at temperature ``tau`` (docs/theory.md, B4 and B5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from cmcd_theory import validation as V


@dataclasses.dataclass(frozen=True)
class Stage2Stats:
    """What B4 needs about stage 2 (distillation on m unlabeled pairs, docs/theory.md B4).

    B4 covers the student ``phi_B(x) = W clip(x)`` (inputs projected on the ball of radius
    ``input_radius``), whose *unnormalised* features enter the loss, and teacher features of
    norm <= 1; give these statistics only for a student of that form.

    Attributes:
      loss: ``"cmc"`` (B->A direction of O2), ``"cmd"`` (O3) or ``"cmc_symmetric"``.
      train_loss: mean tuple loss over the ``floor(m / tuple_size)`` training tuples.
      tau: student temperature (tau of CMC, tau_B of CMD), > 0.
      tuple_size: N, pairs per tuple (softmax candidates), >= 1.
      m: number of training pairs (>= tuple_size).
      student_norm: Frobenius norm of W, >= 0.
      input_radius: clip radius r_B > 0.
      feature_dim: k, output coordinates of the student.
      sum_sq_inputs: sum of squared clipped inputs over the training tuples (sample form);
        None: the sample form is not applicable.
      pop_loss: the same tuple loss on ``n_pop`` fresh pairs (the measured population loss),
        or None.
      n_pop: number of fresh pairs behind ``pop_loss``.
    """

    loss: str
    train_loss: float
    tau: float
    tuple_size: int
    m: int
    student_norm: float
    input_radius: float
    feature_dim: int
    sum_sq_inputs: float | None = None
    pop_loss: float | None = None
    n_pop: int | None = None

    def __post_init__(self):
        V.choice("loss", self.loss, ("cmc", "cmd", "cmc_symmetric"))
        _check_stats(self)


@dataclasses.dataclass(frozen=True)
class Stage1Stats:
    """What B5 needs about stage 1 (InfoNCE on M source samples, two views each; B5).

    Encoder ``phi_A(x) = W clip(x)`` on both views, unnormalised features in the loss.
    Fields as :class:`Stage2Stats` with ``M`` samples, ``encoder_norm`` = ``||W||_F``.
    """

    train_loss: float
    tau: float
    tuple_size: int
    M: int
    encoder_norm: float
    input_radius: float
    feature_dim: int
    sum_sq_inputs: float | None = None
    pop_loss: float | None = None
    n_pop: int | None = None

    def __post_init__(self):
        _check_stats(self)


def _check_stats(s) -> None:
    size = "m" if isinstance(s, Stage2Stats) else "M"
    norm = "student_norm" if isinstance(s, Stage2Stats) else "encoder_norm"
    V.real("train_loss", s.train_loss, lo=0.0)
    V.real("tau", s.tau, lo=0.0, lo_open=True)
    N = V.positive_int("tuple_size", s.tuple_size)
    V.integer(size, getattr(s, size), lo=N)
    V.real(norm, getattr(s, norm), lo=0.0)
    V.real("input_radius", s.input_radius, lo=0.0, lo_open=True)
    V.positive_int("feature_dim", s.feature_dim)
    if s.sum_sq_inputs is not None:
        V.real("sum_sq_inputs", s.sum_sq_inputs, lo=0.0)
    if (s.pop_loss is None) != (s.n_pop is None):
        raise ValueError("pop_loss and n_pop must be given together (or neither)")
    if s.pop_loss is not None:
        V.real("pop_loss", s.pop_loss, lo=0.0)
        V.integer("n_pop", s.n_pop, lo=N)


def _stats(cls, value, name):
    """``value`` as a ``cls`` (:class:`Stage1Stats` or :class:`Stage2Stats`): None and a
    ``cls`` pass through; a mapping must hold every required field and no unknown one."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} must be a {cls.__name__} or a mapping of its fields, got "
            f"{type(value).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - fields
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)}; allowed: {sorted(fields)}")
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    missing = required - set(value)
    if missing:
        raise ValueError(f"{name} is missing {sorted(missing)}")
    return cls(**value)
