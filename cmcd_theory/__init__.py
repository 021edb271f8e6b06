"""cmcd_theory: bound-vs-empirical tests of cross-modality contrastive distillation.

The package is laid out as the mathematics of docs/theory.md; each layer imports only from the
ones below it (``tests/test_architecture.py`` enforces it):

* ``validation``  the input checks shared by every config, function and command line
* ``worlds``      synthetic source/target modalities with a hand-set, exactly known distance,
  and their exact ground truth: TV, Bayes errors by quadrature, latent mutual information (G)
* ``learn``       objectives (O1-O4), encoders, probe, the CMCD stages, estimated distances,
  the DisCoM-KD comparator, and one pipeline run with its baselines
* ``bounds``      every bound as a pure float64 function of numbers, one module per family (B1-B6)
* ``certify``     every bound of a run beside what it bounds, from plain arrays (B6):
  :func:`certify_features`, the synthetic-run API and ``cmcd-certify RUN.npz``
* ``sweeps``      grids of pipelines as vmapped, resumable tidy tables (``cmcd-sweep``)
* ``arena``       theories of *when* distillation pays, scored on worlds drawn afresh

Experiments and their figure helpers live above the package, in ``experiments/``.

Example:
  >>> import cmcd_theory as ct
  >>> ct.worlds.WorldConfig(channel="attenuate", t=0.5).channel
  'attenuate'
"""

import importlib
from typing import TYPE_CHECKING, Any

from cmcd_theory.validation import __version__

#: the subpackages, imported on first use (PEP 562): ``import cmcd_theory`` costs little, and a
#: command that needs one layer (``cmcd-sweep``, ``cmcd-certify``) loads only that layer and the
#: ones below it
SUBPACKAGES = ("arena", "bounds", "certify", "learn", "sweeps", "validation", "worlds")
_FROM_CERTIFY = ("Certificate", "certify_features")

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager form
    from cmcd_theory import arena, bounds, certify, learn, sweeps, validation, worlds
    from cmcd_theory.certify import Certificate, certify_features


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        return importlib.import_module(f"cmcd_theory.{name}")
    if name in _FROM_CERTIFY:
        return getattr(importlib.import_module("cmcd_theory.certify"), name)
    raise AttributeError(f"module 'cmcd_theory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBPACKAGES, *_FROM_CERTIFY})


__all__ = [
    "arena",
    "Certificate",
    "bounds",
    "certify",
    "certify_features",
    "learn",
    "sweeps",
    "validation",
    "worlds",
    "__version__",
]
