"""Backends: one file each behind :class:`mse_rt.runtime.backends.base.Backend`.

Heavy optional packages are imported inside the backend that needs them.
"""

from .base import Backend
from .eager import EagerBackend

BACKENDS = ("eager",)

__all__ = ["BACKENDS", "Backend", "EagerBackend"]
