"""``python -m mse_rt``: the same as the ``mse-rt`` command."""

import sys

from .cli import main

sys.exit(main())
