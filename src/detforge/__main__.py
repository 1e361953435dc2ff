"""`python -m detforge` runs the CLI (this is what `torchrun -m detforge` launches)."""

import sys

from detforge.cli import main

sys.exit(main())
