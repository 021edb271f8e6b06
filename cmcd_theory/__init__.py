"""cmcd_theory: bound-vs-empirical tests of cross-modality contrastive distillation.

Layers, each importing only from the ones above it:

* ``worlds``       synthetic source/target modalities with a hand-set, exactly known distance (G1-G5)
* ``divergences``  exact, Monte Carlo and certified total-variation distances; Bayes errors (G5, B1)
* ``objectives``   InfoNCE, CMC, CMD and L2 alignment losses (O1-O4)
* ``models``       encoders as plain pytrees
* ``training``     the three CMCD stages as ``lax.scan`` loops, and the linear probe
* ``bounds``       every bound of docs/theory.md as a pure function of numbers (B1-B6)
* ``pipeline``     one CMCD run (and its baselines) from a world, sizes and a key
* ``sweep``        grids of pipelines as vmapped, resumable, tidy tables
* ``certify``      every bound of a run beside what it bounds, from plain arrays (B6):
  :func:`certify_features` for features exported from any model, ``cmcd-certify RUN.npz``
* ``validation``   the input checks shared by every config, function and command line

Figure helpers live with the experiments (``experiments/common.py``).
"""

__version__ = "0.1.0"

__all__ = ["Certificate", "certify_features", "__version__"]


def __getattr__(name):
    # lazy, so that ``python -m cmcd_theory.certify`` does not import the module twice
    if name in ("Certificate", "certify_features"):
        from cmcd_theory import certify
        return getattr(certify, name)
    raise AttributeError(f"module 'cmcd_theory' has no attribute {name!r}")
