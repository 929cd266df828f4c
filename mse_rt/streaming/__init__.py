"""Streaming detection over feature chunks (see :mod:`.base` for the interface).

- :mod:`.windowed`: windows of max_seq_len steps, each owning the centre of its span; a detection
  is final one hop after its window ran (tens of seconds at THUMOS settings), offline accuracy.
- :mod:`.lagged`: low-latency mode: a trailing window every ``hop`` steps and a detection final
  ``lag`` steps after its predicted end (about a second); :class:`StreamPool` batches many
  streams through one forward pass.
"""

from .base import StreamingDetector
from .lagged import LaggedStreamingDetector, LiveResult, LiveStream, StreamPool
from .windowed import WindowedStreamingDetector

__all__ = ["LaggedStreamingDetector", "LiveResult", "LiveStream", "StreamPool", "StreamingDetector",
           "WindowedStreamingDetector"]
