"""The sweep engine: grids of pipelines as tidy, resumable tables.

* ``sweep``    grids -> one tidy table; seeds and ``t`` vmapped, one jit per shape; ``cmcd-sweep``
* ``storage``  the sweep's CSV + JSON files: rows land whole, resume, refusal
* ``cluster``  where chunks run: this process or Dask workers
* ``devices``  ``setup_jax()``: the persistent compile cache and XLA options of every entry point
"""
