"""python -m tools.models.capacity: the model's command line (tools/models/capacity/cli.py)."""

import sys

from tools.models.capacity.cli import main

sys.exit(main())
