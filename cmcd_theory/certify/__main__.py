"""``python -m cmcd_theory.certify RUN.npz ...``: the ``cmcd-certify`` command line."""

import sys

from cmcd_theory.certify.cli import main

sys.exit(main())
