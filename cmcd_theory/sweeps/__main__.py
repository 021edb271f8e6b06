"""``python -m cmcd_theory.sweeps``: the ``cmcd-sweep`` command line."""

import sys

from cmcd_theory.sweeps.cli import main

sys.exit(main())
