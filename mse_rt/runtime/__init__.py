"""Runtime: :class:`Detector` over interchangeable backends."""

from .backends import BACKENDS, Backend
from .detector import Detector

__all__ = ["BACKENDS", "Backend", "Detector"]
