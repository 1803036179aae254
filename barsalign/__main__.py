"""`python -m barsalign` runs the console script."""

import sys

from barsalign.cli import main

sys.exit(main())
