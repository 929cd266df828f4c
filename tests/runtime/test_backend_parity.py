"""Backend parity harness: every available backend on the golden videos (against the reference
detections) and on random long inputs (against eager), with a per-backend tolerance table.

Later backends plug in by adding a factory to BACKEND_FACTORIES and a row to TOLERANCES.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt

from golden_utils import GOLDEN, GOLDEN_CONFIGS, golden_videos, match_detections

# backend -> (dense outputs max rel err vs eager, detection score tol, detection segment tol)
TOLERANCES = {
    "eager": (0.0, 1e-5, 1e-3),
    "onnxruntime": (1e-4, 1e-5, 1e-3),
    "triton": (1e-4, 1e-5, 1e-3),  # fp32; CPU CI runs its kernels in Triton's interpreter
}


def _eager(name, onnx_files):
    return mse_rt.Detector.from_checkpoint(GOLDEN / name / "config.yaml", GOLDEN / name / "ckpt.pth.tar")


def _onnxruntime(name, onnx_files):
    return mse_rt.Detector.from_onnx(onnx_files[name], intra_op_threads=2)


def _triton(name, onnx_files):
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: TRITON_INTERPRET=1 (conftest)
    return mse_rt.Detector.from_checkpoint(GOLDEN / name / "config.yaml", GOLDEN / name / "ckpt.pth.tar",
                                           backend="triton", device=device)


BACKEND_FACTORIES = {"eager": _eager, "onnxruntime": _onnxruntime, "triton": _triton}
# the interpreter is slow: on CPU the triton backend's random-input check stops at max_seq_len
INTERPRETED = {"triton"} if not torch.cuda.is_available() else set()


# the interpreted Triton cases take tens of seconds each: `slow` (make test runs them, test-fast not)
@pytest.fixture(scope="module", params=[pytest.param((b, c), marks=pytest.mark.slow if b in INTERPRETED else ())
                                        for b in BACKEND_FACTORIES for c in GOLDEN_CONFIGS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def backend_case(request, onnx_files):
    backend, name = request.param
    return backend, name, BACKEND_FACTORIES[backend](name, onnx_files)


# In the interpreter the soft-NMS kernel costs ~4 ms per candidate (a Python loop per emitted
# segment): there, videos with more candidates than this have their network and decode checked
# (pre-NMS candidates) but not the kernel's NMS of them; the kernel runs every golden NMS case up to
# 1500 candidates in tests/kernels/test_nms_gpu.py, and everything here on a GPU
INTERPRETED_NMS_MAX = 1000


def test_golden_one_by_one(backend_case):
    backend, name, det = backend_case
    _, score_tol, seg_tol = TOLERANCES[backend]
    for v in golden_videos(name):
        z = v["data"]
        full = backend not in INTERPRETED or len(z["pre_nms_scores"]) <= INTERPRETED_NMS_MAX
        if full:
            r = det.detect(z["feats"].T, fps=float(z["fps"]), duration=float(z["duration"]), keep_candidates=True)
            c = r.candidates
        else:
            (c,) = det.detect_candidates([z["feats"].T])
        match_detections(c.segments, c.scores, c.labels, z["pre_nms_segments"], z["pre_nms_scores"],
                         z["pre_nms_labels"], f"{backend} {name}/{v['video_id']} pre-NMS", score_tol, seg_tol)
        if not full:
            continue
        match_detections(r.segments, r.scores, r.labels, z["det_segments_sec"], z["det_scores"], z["det_labels"],
                         f"{backend} {name}/{v['video_id']}", score_tol, seg_tol)


def test_golden_batched(backend_case):
    backend, name, det = backend_case
    if backend in INTERPRETED:
        pytest.skip("interpreted Triton: the batched path is covered by the one-by-one golden run here and by "
                    "the multi-video NMS launch test; it runs in full on a GPU")
    _, score_tol, seg_tol = TOLERANCES[backend]
    videos = golden_videos(name)
    rs = det.detect_batch([v["data"]["feats"].T for v in videos], fps=[float(v["data"]["fps"]) for v in videos])
    for r, v in zip(rs, videos):
        z = v["data"]
        match_detections(r.segments, r.scores, r.labels, z["det_segments_sec"], z["det_scores"], z["det_labels"],
                         f"{backend} batched {name}/{v['video_id']}", score_tol, seg_tol)


def test_random_long_inputs_vs_eager(backend_case, onnx_files):
    """Random features at lengths up to the point buffer, batch of 3 per padded length."""
    backend, name, det = backend_case
    if backend == "eager":
        pytest.skip("eager is the reference of this comparison")
    dense_tol = TOLERANCES[backend][0]
    eager = _eager(name, onnx_files)
    from mse_rt.pipeline.padding import max_video_length, pad_batch, pad_policy_length

    rng = np.random.default_rng(7)
    longest = max_video_length(det.cfg)
    lengths = sorted({7, det.cfg["model"]["max_seq_len"], longest})
    if backend in INTERPRETED:
        lengths = [t for t in lengths if t <= det.cfg["model"]["max_seq_len"]]
    for T0 in lengths:
        Tp = pad_policy_length(T0, det.cfg)
        vids = [torch.from_numpy(rng.standard_normal((det.cfg["model"]["input_dim"], t)).astype(np.float32))
                for t in (T0, max(1, T0 - 3), max(1, T0 // 2))]
        x, lengths = pad_batch(vids, Tp)
        got = det.backend.infer(x, lengths)
        ref = eager.backend.infer(x, lengths)
        for key in ("cls_prob", "seg_start", "seg_end"):
            g, r = got[key].cpu().numpy(), ref[key].cpu().numpy()
            err = np.abs(g - r).max() / max(1.0, np.abs(r).max())
            assert err <= dense_tol, f"{backend} {name} T={Tp} {key}: rel err {err:.2e} > {dense_tol:.0e}"
