"""RUN.npz, the arrays of one run for the ``cmcd-certify`` command line: :func:`load_npz`
reads it into keyword arguments of :func:`~cmcd_theory.certify.features.certify_features`.

RUN.npz (``numpy.savez``; every array optional unless marked required; ``n``, ``D`` etc. are
sizes; floats are any real dtype, read in float64; labels any integer dtype; scalars are 0-d
arrays or plain numbers):

==========================  ==========  ======================================================
name                        shape       meaning
==========================  ==========  ======================================================
``train_features``          (n, D)      **required**: target features of the n labeled
                                        samples the probe was fit on
``train_labels``            (n,)        **required**: their labels in [0, K)
``probe_weights``           (K, D)      the probe's weights (absent: the probe is fitted here)
``probe_bias``              (K,)        the probe's bias (only with ``probe_weights``)
``num_classes``             ()          K (default: from ``probe_weights``, else the largest
                                        label + 1 when every label array agrees on it)
``test_features``           (n_t, D)    held-out target features (independent of the rest)
``test_labels``             (n_t,)      their labels: the measured target error R_B
``source_test_features``    (n_s, D)    teacher features of held-out labeled source samples
``source_test_labels``      (n_s,)      their labels: R_A of the same head (B1b)
``pair_source``             (n_p, D)    teacher features on held-out pairs
``pair_target``             (n_p, D)    student features on the same pairs (TV_lower)
``pair_labels``             (n_p,)      labels of the pairs (TV of the joint laws, B1's)
``feature_norm_bound``      ()          almost-sure bound on the probe features' norm
                                        (default 1: normalised features; B2 data-free form)
``label_free``              ()          bool, default True: the features were learned without
                                        the n labels (B2 and B3 need it)
``stage2_<field>``          ()          :class:`Stage2Stats` fields (B4), e.g. ``stage2_loss``
                                        (``"cmc"``/``"cmd"``), ``stage2_train_loss``,
                                        ``stage2_tau``, ``stage2_tuple_size``, ``stage2_m``,
                                        ``stage2_student_norm``, ``stage2_input_radius``,
                                        ``stage2_feature_dim``; optional
                                        ``stage2_sum_sq_inputs``, ``stage2_pop_loss``,
                                        ``stage2_n_pop``
``stage1_<field>``          ()          :class:`Stage1Stats` fields (B5), likewise
``stage2n_x``, ``_z``       (m, d),     B4n (normalised linear student, CMC B->A): target
                            (m, k)      inputs and teacher features of the m pairs the prior
                                        did not see
``stage2n_W``, ``_W_prior`` (k, d)      the student and the prior mean (a student fitted on
                                        the other pairs only)
``stage2n_bank``            (n_b, k)    teacher features of source samples independent of
                                        the teacher (the candidates' law)
``stage2n_tau``,            ()          temperature and tuple size N of the CMC loss
``stage2n_tuple_size``
``stage2n_x_pop``, ``_z_pop``  (n_q, .)  optional fresh pairs: the stochastic student's
                                        measured population loss
``stage1n_x``, ``_x_pos``   (n, d)      B5n (normalised linear encoder, O1): the two views of
                                        the n samples the prior did not see
``stage1n_W``, ``_W_prior`` (k, d)      the encoder and the prior mean (an encoder trained on
                                        the other samples only)
``stage1n_candidates``      (n_c, d)    fresh view inputs, used in order as the candidates:
                                        n_c >= n n_draws (tuple_size - 1)
``stage1n_tau``,            ()          temperature and tuple size N of the O1 loss; optional
``stage1n_tuple_size``                  ``stage1n_n_draws`` (weight draws per sample, 1)
``stage1n_x_pop``,          (n_q, d)    optional fresh view pairs: the stochastic encoder's
``stage1n_x_pop_pos``                   measured population loss
``stage1n_ssl_<stat>``      ()          optional stage-1 statistics reported as they are:
                                        ``train_loss``, ``pop_loss``, ``gap``, ``pop_loss_se``
==========================  ==========  ======================================================

A missing required array, an unknown name, or an array of the wrong shape or dtype is an
error naming it (exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from cmcd_theory import validation as V
from cmcd_theory.certify.stats import Stage1Stats, Stage2Stats

#: npz names read by :func:`load_npz` (besides ``stage1_<field>``, ``stage2_<field>``,
#: ``stage2n_<name>`` and ``stage1n_<name>``).
NPZ_ARRAYS = (
    "train_features",
    "train_labels",
    "probe_weights",
    "probe_bias",
    "num_classes",
    "test_features",
    "test_labels",
    "source_test_features",
    "source_test_labels",
    "pair_source",
    "pair_target",
    "pair_labels",
    "feature_norm_bound",
    "label_free",
)
_NPZ_SCALARS = ("num_classes", "feature_norm_bound", "label_free")
#: B4n's npz arrays (``stage2n_<name>``): name -> (required, ndim); ndim 0 is a scalar.
STAGE2N_ARRAYS = {
    "x": (True, 2),
    "z": (True, 2),
    "W": (True, 2),
    "W_prior": (True, 2),
    "bank": (True, 2),
    "tau": (True, 0),
    "tuple_size": (True, 0),
    "x_pop": (False, 2),
    "z_pop": (False, 2),
}
#: B5n's npz arrays (``stage1n_<name>``), likewise.
STAGE1N_ARRAYS = {
    "x": (True, 2),
    "x_pos": (True, 2),
    "W": (True, 2),
    "W_prior": (True, 2),
    "candidates": (True, 2),
    "tau": (True, 0),
    "tuple_size": (True, 0),
    "n_draws": (False, 0),
    "x_pop": (False, 2),
    "x_pop_pos": (False, 2),
    "ssl_train_loss": (False, 0),
    "ssl_pop_loss": (False, 0),
    "ssl_gap": (False, 0),
    "ssl_pop_loss_se": (False, 0),
}
_NORMALIZED = {"stage2n": STAGE2N_ARRAYS, "stage1n": STAGE1N_ARRAYS}


def load_npz(path) -> dict:
    """Read RUN.npz (schema in the module docstring) into keyword arguments of
    :func:`certify_features`: the arrays under their own names, ``stage2`` / ``stage1``
    (:class:`Stage2Stats` / :class:`Stage1Stats`), ``stage2_normalized`` /
    ``stage1_normalized`` (the mappings of
    :func:`~cmcd_theory.certify.stage_rows.stage2_normalized_rows` and
    :func:`~cmcd_theory.certify.stage_rows.stage1_normalized_rows`). Every error names the
    file and the array at fault."""
    path = os.fspath(path)
    raw = _read(path)
    groups: dict = {"stage1": {}, "stage2": {}, "stage2n": {}, "stage1n": {}}
    kwargs: dict = {}
    for k, a in raw.items():
        prefix, _, field = k.partition("_")
        if prefix in groups and field:
            groups[prefix][field] = _field(path, k, prefix, field, a)
        elif k in NPZ_ARRAYS:
            kwargs[k] = _scalar(path, k, a) if k in _NPZ_SCALARS else a
        else:
            raise ValueError(
                f"{path}: unknown array {k!r}; allowed: {', '.join(NPZ_ARRAYS)}, "
                f"stage1_<field>, stage2_<field>, stage1n_<name>, stage2n_<name>"
            )
    for req, what in (("train_features", "(n, D) float"), ("train_labels", "(n,) int")):
        if req not in kwargs:
            raise ValueError(f"{path}: missing array {req!r}, shape {what}")
    for prefix, cls in (("stage1", Stage1Stats), ("stage2", Stage2Stats)):
        if groups[prefix]:
            kwargs[prefix] = _stats(path, prefix, cls, groups[prefix])
    if groups["stage2n"]:
        kwargs["stage2_normalized"] = _normalized(path, "stage2n", groups["stage2n"])
    if groups["stage1n"]:
        s = _normalized(path, "stage1n", groups["stage1n"])
        s["sample_candidates"] = _candidates(path, s.pop("candidates"), s)
        kwargs["stage1_normalized"] = s
    return kwargs


def _read(path: str) -> dict:
    """Every array of the archive ``path`` by name (a one-line error for anything else)."""
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"cannot read {path}: a directory, not an .npz file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(
            f"cannot read {path}: not a numpy .npz archive ({type(e).__name__})"
        ) from None
    if not hasattr(f, "files"):
        raise ValueError(f"{path}: a single array (.npy), not an .npz archive of named arrays")
    raw = {}
    with f:
        for k in f.files:
            try:
                raw[k] = f[k]
            except ValueError:
                raise ValueError(
                    f"{path}: array {k!r} holds Python objects; save plain numeric or string arrays"
                ) from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(
                    f"{path}: array {k!r} cannot be read ({type(e).__name__})"
                ) from None
    if not raw:
        raise ValueError(
            f"{path}: no arrays in the file (train_features and train_labels are required)"
        )
    return raw


def _field(path: str, name: str, prefix: str, field: str, a):
    """One ``<prefix>_<field>`` array: a scalar of a stage's statistics, or an array (or
    scalar) of a normalised bound's inputs; an unknown field is an error naming the allowed
    ones."""
    if prefix in _NORMALIZED:
        allowed = _NORMALIZED[prefix]
        if field not in allowed:
            raise ValueError(
                f"{path}: unknown array {name!r}; {prefix}_ arrays are "
                f"{', '.join(prefix + '_' + f for f in allowed)}"
            )
        ndim = allowed[field][1]
        if ndim == 0:
            return _scalar(path, name, a)
        try:
            return V.array(name, a, ndim=ndim, min_cols=1)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    cls = Stage1Stats if prefix == "stage1" else Stage2Stats
    fields = sorted(f.name for f in dataclasses.fields(cls))
    if field not in fields:
        raise ValueError(f"{path}: unknown array {name!r}; {prefix}_ fields are {fields}")
    return _scalar(path, name, a)


def _stats(path: str, prefix: str, cls, values: dict):
    """The :class:`Stage1Stats` / :class:`Stage2Stats` of the ``<prefix>_`` scalars."""
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.name not in values
    ]
    if missing:
        raise ValueError(
            f"{path}: missing array {prefix}_{missing[0]} (the {prefix}_ arrays "
            f"go together; missing: {', '.join(prefix + '_' + m for m in missing)})"
        )
    try:
        return cls(**values)
    except ValueError as e:
        raise ValueError(f"{path}: {prefix}_{e}") from None


def _normalized(path: str, prefix: str, values: dict) -> dict:
    """The ``<prefix>_`` arrays of B4n (``stage2n``) or B5n (``stage1n``), every required one
    present and the optional population pair given whole."""
    allowed = _NORMALIZED[prefix]
    missing = [f for f, (req, _) in allowed.items() if req and f not in values]
    if missing:
        raise ValueError(
            f"{path}: missing array {prefix}_{missing[0]} (the {prefix}_ arrays "
            f"go together; missing: {', '.join(prefix + '_' + m for m in missing)})"
        )
    pop = ("x_pop", "z_pop") if prefix == "stage2n" else ("x_pop", "x_pop_pos")
    if (pop[0] in values) != (pop[1] in values):
        raise ValueError(
            f"{path}: {prefix}_{pop[0]} and {prefix}_{pop[1]} go together (give both, or neither)"
        )
    return dict(values)


def _candidates(path: str, cand: np.ndarray, s: dict):
    """B5n's ``sample_candidates`` from the array ``stage1n_candidates``: its rows in order,
    each used once (so the candidates of different draws are independent, as fresh samples
    are), after checking that there are enough of them."""
    n, d = s["x"].shape
    N = V.integer("stage1n_tuple_size", s["tuple_size"], lo=2)
    draws = V.positive_int("stage1n_n_draws", s.get("n_draws", 1))
    need = n * draws * (N - 1)
    if cand.shape[1] != d:
        raise ValueError(
            f"{path}: stage1n_candidates must have shape (*, {d}) like stage1n_x, got {cand.shape}"
        )
    if cand.shape[0] < need:
        raise ValueError(
            f"{path}: stage1n_candidates has {cand.shape[0]} rows; B5n uses n "
            f"n_draws (tuple_size - 1) = {n} x {draws} x {N - 1} = {need} fresh "
            f"candidates"
        )
    used = [0]

    def sample_candidates(block: int, count: int) -> np.ndarray:
        start = used[0]
        used[0] = start + count
        return cand[start : start + count]

    return sample_candidates


def _scalar(path, name, a):
    """The one-element array ``a`` as a Python scalar (bytes decoded to str)."""
    a = np.asarray(a)
    if a.ndim != 0 and a.size != 1:
        raise ValueError(f"{path}: array {name!r} must be a scalar, got shape {a.shape}")
    v = a.reshape(()).item()
    return v.decode() if isinstance(v, bytes) else v
