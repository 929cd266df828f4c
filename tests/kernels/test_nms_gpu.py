"""The batched GPU NMS kernel (Triton interpreter on CPU in CI) against golden/nms.npz and the
C++ NMS on random batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_utils import device

from golden_utils import GOLDEN, match_detections

triton = pytest.importorskip("triton")

from mse_rt.errors import InputError  # noqa: E402
from mse_rt.kernels.nms_gpu import batched_nms_gpu  # noqa: E402
from mse_rt.pipeline.nms import batched_nms_native  # noqa: E402


def _cfg(iou, min_score, max_num, soft, multi, sigma, vote):
    return {"iou_threshold": iou, "min_score": min_score, "max_seg_num": int(max_num),
            "nms_method": "soft" if soft else "hard", "multiclass_nms": bool(multi), "nms_sigma": sigma,
            "voting_thresh": vote}


def _golden_cases(max_n: int):
    z = np.load(GOLDEN / "nms.npz")
    names = sorted(k[:-7] for k in z.files if k.startswith("batched_") and k.endswith("_params"))
    return [n for n in names if len(z[n + "_scores"]) <= max_n]


def _golden_params():
    """Every batched case; the large ones (over 500 candidates: seconds each in the interpreter) `slow`."""
    small = set(_golden_cases(500))
    return [pytest.param(c, marks=() if c in small else pytest.mark.slow) for c in _golden_cases(10**9)]


# every batched case of golden/nms.npz (0 to 1500 candidates, soft / hard, multiclass / agnostic)
@pytest.mark.parametrize("case", _golden_params())
def test_golden_cases(case):
    z = np.load(GOLDEN / "nms.npz")
    cfg = _cfg(*z[case + "_params"].tolist())
    d = device()
    out = batched_nms_gpu([torch.from_numpy(z[case + "_segs"]).to(d)], [torch.from_numpy(z[case + "_scores"]).to(d)],
                          [torch.from_numpy(z[case + "_labels"]).to(d)], cfg)
    s, p, lab = (t.cpu().numpy() for t in out[0])
    match_detections(s, p, lab, z[case + "_out_segs"], z[case + "_out_scores"], z[case + "_out_labels"], case)


@pytest.mark.parametrize("soft,multi,vote", [(True, True, 0.0), (True, False, 0.75), (False, True, 0.0),
                                             (False, False, 0.9)])
def test_random_batch_vs_cpp(soft, multi, vote):
    """Several videos of different sizes (one empty) in one launch vs the C++ NMS per video."""
    rng = np.random.default_rng(3)
    d = device()
    segs, scores, labels = [], [], []
    for n in (0, 1, 57, 200):
        st = rng.uniform(0, 100, n)
        s = np.stack([st, st + rng.uniform(0.5, 20, n)], 1).astype(np.float32)
        p = rng.uniform(0, 1, n).astype(np.float32)
        p[::5] = p[0] if n else p[::5]  # ties
        segs.append(torch.from_numpy(s).to(d))
        scores.append(torch.from_numpy(p).to(d))
        labels.append(torch.from_numpy(rng.integers(0, 3, n)).to(d))
    cfg = _cfg(0.3, 0.01, 60, soft, multi, 0.6, vote)
    got = batched_nms_gpu(segs, scores, labels, cfg)
    for v, (s, p, lab) in enumerate(got):
        ref = batched_nms_native(segs[v].cpu(), scores[v].cpu(), labels[v].cpu(), 0.3, 0.01, 60, soft, multi, 0.6, vote)
        match_detections(s.cpu().numpy(), p.cpu().numpy(), lab.cpu().numpy(), *(t.numpy() for t in ref),
                         f"video {v}", score_tol=1e-5, seg_tol=1e-4)


def test_input_checks():
    cfg = _cfg(0.3, 0.01, 10, True, True, 0.5, 0.0)
    d = device()
    with pytest.raises(InputError, match="float32"):
        batched_nms_gpu([torch.zeros(2, 2, dtype=torch.float64, device=d)], [torch.zeros(2, device=d)],
                        [torch.zeros(2, dtype=torch.int64, device=d)], cfg)
    with pytest.raises(InputError, match="NaN"):
        batched_nms_gpu([torch.tensor([[0.0, float("nan")]], device=d)], [torch.ones(1, device=d)],
                        [torch.zeros(1, dtype=torch.int64, device=d)], cfg)
    with pytest.raises(InputError, match="disagree"):
        batched_nms_gpu([torch.zeros(2, 2, device=d)], [torch.zeros(3, device=d)],
                        [torch.zeros(2, dtype=torch.int64, device=d)], cfg)
    assert batched_nms_gpu([], [], [], cfg) == []


@pytest.mark.parametrize("case", sorted({k[:-4] for k in np.load(GOLDEN / "nms.npz").files
                                         if k.startswith("hard_") and k.endswith("_iou")}))
def test_golden_single_class_hard_nms(case):
    """The reference's single-class hard NMS cases: same kept segments and scores."""
    z = np.load(GOLDEN / "nms.npz")
    segs, scores, keep = z[case + "_segs"], z[case + "_scores"], z[case + "_keep"]
    d = device()
    cfg = _cfg(float(z[case + "_iou"]), 0.0, max(1, len(scores)), False, True, 0.5, 0.0)
    s, p, _ = batched_nms_gpu([torch.from_numpy(segs).to(d)], [torch.from_numpy(scores).to(d)],
                              [torch.zeros(len(scores), dtype=torch.int64, device=d)], cfg)[0]
    np.testing.assert_array_equal(p.cpu().numpy(), scores[keep])
    assert sorted(map(tuple, s.cpu().numpy().tolist())) == sorted(map(tuple, segs[keep].tolist()))
