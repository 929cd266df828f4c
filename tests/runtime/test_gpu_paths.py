"""GPU-path logic that a CPU can check: the bounded CUDA-graph cache, the NMS choice, forward timing."""

from __future__ import annotations

import types

import pytest
import torch

import mse_rt
from mse_rt import BackendError
from mse_rt.runtime import detector as detector_mod
from mse_rt.runtime.backends.base import ShapeLRU


def test_shape_lru_is_bounded_and_evicts_the_least_recently_used():
    built, evicted = [], []
    cache = ShapeLRU(3, build=lambda k: built.append(k) or f"graph{k}", on_evict=evicted.append)
    for key in [(1, 256), (2, 256), (1, 256), (1, 512), (4, 256), (1, 768)]:
        cache.get(key)
    assert len(cache) == 3
    assert built == [(1, 256), (2, 256), (1, 512), (4, 256), (1, 768)]  # (1, 256) hit once
    assert evicted == ["graph(2, 256)", "graph(1, 256)"]  # least recently used first
    assert (1, 768) in cache and (1, 256) not in cache
    assert cache.builds == 5 and cache.evictions == 2
    with pytest.raises(ValueError):
        ShapeLRU(0, build=lambda k: k)


def test_thousand_lengths_keep_at_most_capacity_entries():
    cache = ShapeLRU(8, build=lambda k: torch.empty(1))
    for t in range(1000):
        cache.get((1, 256 + 32 * t))
    assert len(cache) == 8 and cache.evictions == 992


def _fake(name, device="cpu"):
    return types.SimpleNamespace(name=name, device=torch.device(device))


@pytest.mark.parametrize("have_triton,backend,expected", [
    (True, "tensorrt", "gpu"), (False, "tensorrt", "native"), (True, "triton", "gpu"),
    (True, "eager", "native"), (True, "onnxruntime", "native")])
def test_auto_nms_choice(monkeypatch, have_triton, backend, expected):
    monkeypatch.setattr(detector_mod, "_triton_importable", lambda: have_triton)
    assert detector_mod.choose_nms_impl("auto", _fake(backend, "cpu")) == expected


def test_explicit_gpu_nms_without_triton_or_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(detector_mod, "_triton_importable", lambda: False)
    with pytest.raises(BackendError, match="needs Triton"):
        detector_mod.choose_nms_impl("gpu", _fake("tensorrt"))
    monkeypatch.setattr(detector_mod, "_triton_importable", lambda: True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="needs a backend on a CUDA device"):
        detector_mod.choose_nms_impl("gpu", _fake("eager", "cpu"))
    with pytest.raises(BackendError, match="unknown nms_impl"):
        detector_mod.choose_nms_impl("fast", _fake("eager"))


def test_forward_timing_waits_for_the_device(monkeypatch):
    """On a CUDA backend the runtime synchronises before reading the clock (checked with a fake)."""
    from golden_utils import GOLDEN

    det = mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml", GOLDEN / "thumos_small" / "ckpt.pth.tar")
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    det.detect(torch.randn(30, 64), fps=30.0)
    assert calls == []  # CPU backend: nothing to wait for
    fake = types.SimpleNamespace(name="fake", device=torch.device("cuda"), infer=det.backend.infer)  # CPU math
    mse_rt.Detector(det.cfg, fake, nms_impl="native").detect(torch.randn(30, 64), fps=30.0)
    assert len(calls) == 2  # after the forward and after decode
