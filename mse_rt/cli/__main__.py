"""``python -m mse_rt.cli``: the same as the ``mse-rt`` command."""

import sys

from . import main

sys.exit(main())
