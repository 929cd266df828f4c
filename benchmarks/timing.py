"""Left only for benchmarks/stream_latency.py (owned elsewhere at the moment): the timing helpers live in
harness.py. Delete this file in the change that switches that script to ``from harness import median_seconds``."""

from __future__ import annotations

from harness import median_seconds

__all__ = ["median_seconds"]
