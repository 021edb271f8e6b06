"""``python -m cmcd_theory.sweeps``: the ``cmcd-sweep`` command line."""

import sys

from cmcd_theory.sweeps.sweep import main

sys.exit(main())
