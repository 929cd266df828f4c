"""pytest-benchmark suites: decode, NMS (PyTorch vs C++ vs GPU), end to end per backend.

    .venv/bin/pytest benchmarks --benchmark-json bench.json
    .venv/bin/python benchmarks/report.py --from-json bench.json     # markdown table
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mse_rt.pipeline.decode import decode_dense
from mse_rt.pipeline.nms import batched_nms_native, batched_nms_torch


def test_decode_dense_thumos(benchmark, thumos_candidates):
    cfg, dense, sizes, _ = thumos_candidates
    benchmark.group = "decode"
    benchmark(decode_dense, *dense, sizes, cfg["test_cfg"])


@pytest.mark.parametrize("impl", ["native", "torch"])
def test_nms_thumos(benchmark, thumos_candidates, impl):
    cfg, _, _, c = thumos_candidates
    t = cfg["test_cfg"]
    fn = batched_nms_native if impl == "native" else batched_nms_torch
    benchmark.group = "nms"
    benchmark.extra_info["candidates"] = int(len(c.scores))
    benchmark(fn, c.segments, c.scores, c.labels, t["iou_threshold"], t["min_score"], t["max_seg_num"],
              True, True, t["nms_sigma"], t["voting_thresh"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU NMS needs a CUDA GPU")
def test_nms_gpu_thumos(benchmark, thumos_candidates):  # pragma: no cover - GPU machines only
    from mse_rt.kernels.nms_gpu import batched_nms_gpu

    cfg, _, _, c = thumos_candidates
    t = cfg["test_cfg"]
    benchmark.group = "nms"
    benchmark(batched_nms_gpu, [c.segments.cuda()], [c.scores.cuda()], [c.labels.cuda()], t)


@pytest.fixture(scope="module", params=["eager", "onnxruntime"])
def demo_detector(request, tmp_path_factory):
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG, available_backends
    from mse_rt.runtime import Detector

    if available_backends().get(request.param):
        pytest.skip(available_backends()[request.param])
    return Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, backend=request.param,
                                    cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("T", [256, 1024])
def test_end_to_end_demo(benchmark, demo_detector, T):
    x = np.random.default_rng(0).standard_normal((T, 32)).astype(np.float32)
    benchmark.group = f"end-to-end T={T}"
    benchmark.extra_info["backend"] = demo_detector.backend.name
    benchmark(demo_detector.detect, x, fps=30.0)
