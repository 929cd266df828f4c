"""Fixtures of the pytest-benchmark suites (run: .venv/bin/pytest benchmarks --benchmark-json out.json)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "mse_rt" / "assets" / "configs"


@pytest.fixture(scope="session")
def thumos_candidates():
    """Decode inputs and pre-NMS candidates of a THUMOS-size model (random weights), T = 2304."""
    from mse_rt import load_config
    from mse_rt.config import fpn_strides
    from mse_rt.model import build_random_model
    from mse_rt.model.detector_graph import DetectorGraph, level_lengths
    from mse_rt.pipeline.decode import decode_dense

    cfg = load_config(CONFIGS / "thumos_i3d.yaml")
    model = build_random_model(cfg)
    with torch.inference_mode():
        dense = DetectorGraph(model).eval()(torch.randn(1, 2048, 2304), torch.tensor([2304]))
    sizes = level_lengths(2304, fpn_strides(cfg))
    return cfg, dense, sizes, decode_dense(*dense, sizes, cfg["test_cfg"])[0]
