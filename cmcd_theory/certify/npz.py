"""RUN.npz, the arrays of one run for the ``cmcd-certify`` command line: :func:`load_npz`
reads it into keyword arguments of :func:`~cmcd_theory.certify.features.certify_features`.

RUN.npz (``numpy.savez``; every array optional unless marked required; ``n``, ``D`` etc. are
sizes; floats are any real dtype, read in float64; labels any integer dtype; scalars are 0-d
arrays or plain numbers):

=======================  ==========  =========================================================
name                     shape       meaning
=======================  ==========  =========================================================
``train_features``       (n, D)      **required**: target features of the n labeled samples
                                     the probe was fit on
``train_labels``         (n,)        **required**: their labels in [0, K)
``probe_weights``        (K, D)      the probe's weights (absent: the probe is fitted here)
``probe_bias``           (K,)        the probe's bias (only with ``probe_weights``)
``num_classes``          ()          K (default: from ``probe_weights``, else max label + 1)
``test_features``        (n_t, D)    held-out target features (independent of everything else)
``test_labels``          (n_t,)      their labels: the measured target error R_B
``source_test_features`` (n_s, D)    teacher features of held-out labeled source samples
``source_test_labels``   (n_s,)      their labels: R_A of the same head (B1b)
``pair_source``          (n_p, D)    teacher features on held-out pairs
``pair_target``          (n_p, D)    student features on the same pairs (TV_lower)
``pair_labels``          (n_p,)      labels of the pairs (TV of the joint laws, B1's quantity)
``feature_norm_bound``   ()          almost-sure bound on the probe features' norm (default 1:
                                     normalised features; B2 data-free form)
``label_free``           ()          bool, default True: the features were learned without the
                                     n labels (B2 and B3 need it)
``stage2_<field>``       ()          :class:`Stage2Stats` fields (B4), e.g. ``stage2_loss``
                                     (``"cmc"``/``"cmd"``), ``stage2_train_loss``,
                                     ``stage2_tau``, ``stage2_tuple_size``, ``stage2_m``,
                                     ``stage2_student_norm``, ``stage2_input_radius``,
                                     ``stage2_feature_dim``; optional ``stage2_sum_sq_inputs``,
                                     ``stage2_pop_loss``, ``stage2_n_pop``
``stage1_<field>``       ()          :class:`Stage1Stats` fields (B5), likewise
=======================  ==========  =========================================================

A missing required array, an unknown name, or an array of the wrong shape or dtype is an
error naming it (exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from cmcd_theory.certify.stats import Stage1Stats, Stage2Stats

#: npz names read by :func:`load_npz` (besides ``stage1_<field>`` and ``stage2_<field>``).
NPZ_ARRAYS = ("train_features", "train_labels", "probe_weights", "probe_bias", "num_classes",
              "test_features", "test_labels", "source_test_features", "source_test_labels",
              "pair_source", "pair_target", "pair_labels", "feature_norm_bound", "label_free")
_NPZ_SCALARS = ("num_classes", "feature_norm_bound", "label_free")


def load_npz(path) -> dict:
    """Read RUN.npz (schema in the module docstring) into keyword arguments of
    :func:`certify_features`. Every error names the file and the array at fault."""
    path = os.fspath(path)
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"cannot read {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"cannot read {path}: not a numpy .npz archive ({type(e).__name__})") from None
    if not hasattr(f, "files"):
        raise ValueError(f"{path}: a single array (.npy), not an .npz archive of named arrays")
    raw = {}
    with f:
        for k in f.files:
            try:
                raw[k] = f[k]
            except ValueError:
                raise ValueError(f"{path}: array {k!r} holds Python objects; save plain numeric "
                                 f"or string arrays") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"{path}: array {k!r} cannot be read ({type(e).__name__})") from None
    if not raw:
        raise ValueError(f"{path}: no arrays in the file (train_features and train_labels are "
                         f"required)")
    stage = {"stage1": {}, "stage2": {}}
    kwargs: dict = {}
    allowed_stage = {"stage1": {f.name for f in dataclasses.fields(Stage1Stats)},
                     "stage2": {f.name for f in dataclasses.fields(Stage2Stats)}}
    for k, a in raw.items():
        prefix = k.split("_", 1)[0]
        if prefix in stage and "_" in k:
            field = k.split("_", 1)[1]
            if field not in allowed_stage[prefix]:
                raise ValueError(f"{path}: unknown array {k!r}; {prefix}_ fields are "
                                 f"{sorted(allowed_stage[prefix])}")
            stage[prefix][field] = _scalar(path, k, a)
        elif k in NPZ_ARRAYS:
            kwargs[k] = _scalar(path, k, a) if k in _NPZ_SCALARS else a
        else:
            raise ValueError(f"{path}: unknown array {k!r}; allowed: {', '.join(NPZ_ARRAYS)}, "
                             f"stage1_<field>, stage2_<field>")
    for req, what in (("train_features", "(n, D) float"), ("train_labels", "(n,) int")):
        if req not in kwargs:
            raise ValueError(f"{path}: missing array {req!r}, shape {what}")
    for prefix, cls in (("stage1", Stage1Stats), ("stage2", Stage2Stats)):
        if not stage[prefix]:
            continue
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in stage[prefix]]
        if missing:
            raise ValueError(f"{path}: missing array {prefix}_{missing[0]} (the {prefix}_ arrays "
                             f"go together; missing: {', '.join(prefix + '_' + m for m in missing)})")
        try:
            kwargs[prefix] = cls(**stage[prefix])
        except ValueError as e:
            raise ValueError(f"{path}: {prefix}_{e}") from None
    return kwargs


def _scalar(path, name, a):
    """The one-element array ``a`` as a Python scalar (bytes decoded to str)."""
    a = np.asarray(a)
    if a.ndim != 0 and a.size != 1:
        raise ValueError(f"{path}: array {name!r} must be a scalar, got shape {a.shape}")
    v = a.reshape(()).item()
    return v.decode() if isinstance(v, bytes) else v
