"""The sweep engine: grids of pipelines as tidy, resumable tables.

* ``sweep``    grids -> one tidy table; seeds and ``t`` vmapped, one jit per shape
* ``cli``      the command line ``cmcd-sweep`` (also ``python -m cmcd_theory.sweeps``)
* ``grid``     the grid: its axes, each axis's check, the cells' ids, the chunks that compute them
* ``storage``  the sweep's CSV + JSON files: rows land whole, resume, refusal
* ``cluster``  where chunks run: this process or Dask workers
* ``devices``  ``setup_jax()``: the persistent compile cache and XLA options of every entry point
"""

from cmcd_theory.sweeps.cluster import engine as engine
from cmcd_theory.sweeps.cluster import local_cluster as local_cluster
from cmcd_theory.sweeps.devices import setup_jax as setup_jax
from cmcd_theory.sweeps.storage import SweepConfigError as SweepConfigError
from cmcd_theory.sweeps.storage import SweepFileError as SweepFileError
from cmcd_theory.sweeps.storage import SweepWriteError as SweepWriteError
from cmcd_theory.sweeps.storage import read_rows as read_rows
from cmcd_theory.sweeps.sweep import run_sweep as run_sweep

__all__ = [
    "SweepConfigError",
    "SweepFileError",
    "SweepWriteError",
    "engine",
    "local_cluster",
    "read_rows",
    "run_sweep",
    "setup_jax",
]
