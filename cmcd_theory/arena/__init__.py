"""The theory arena: theories of *when* distillation pays, scored against "always distil" on
worlds drawn afresh (docs/theory.md, P).

* ``predictors``  ``Prediction``, ``Budget``, ``Evidence``, ``Predictor`` and the built-in theories
* ``mi``          Gaussian mutual-information estimates (canonical correlations, LDA plug-in)
* ``prior``       the prior over worlds and ``draw_worlds(seed, draws)``
* ``scoring``     phase labels, every predictor's calls, accuracy and balanced accuracy
* ``runner``      ``run_arena``: the routes on drawn worlds, as one tidy cell table
"""

from cmcd_theory.arena.mi import gaussian_mi as gaussian_mi
from cmcd_theory.arena.mi import label_mi as label_mi
from cmcd_theory.arena.predictors import BUILTIN as BUILTIN
from cmcd_theory.arena.predictors import EVIDENCE_GROUPS as EVIDENCE_GROUPS
from cmcd_theory.arena.predictors import Budget as Budget
from cmcd_theory.arena.predictors import Evidence as Evidence
from cmcd_theory.arena.predictors import Prediction as Prediction
from cmcd_theory.arena.predictors import Predictor as Predictor
from cmcd_theory.arena.prior import PRIOR as PRIOR
from cmcd_theory.arena.prior import WorldDraw as WorldDraw
from cmcd_theory.arena.prior import draw_worlds as draw_worlds
from cmcd_theory.arena.runner import CMCD_ROUTES as CMCD_ROUTES
from cmcd_theory.arena.runner import TARGET_ONLY as TARGET_ONLY
from cmcd_theory.arena.runner import arena_pipeline as arena_pipeline
from cmcd_theory.arena.runner import run_arena as run_arena
from cmcd_theory.arena.scoring import cell_gains as cell_gains
from cmcd_theory.arena.scoring import predict_cells as predict_cells
from cmcd_theory.arena.scoring import score_predictors as score_predictors
