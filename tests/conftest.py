"""Pytest setup: makes tests/ importable (helpers in golden_utils.py) and checks the golden folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden_utils import GOLDEN  # noqa: E402


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden vectors not found at {GOLDEN} (set MSE_RT_SHARED)")
    return GOLDEN
