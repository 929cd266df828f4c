"""NMS: the C++ module and the PyTorch reference against golden/nms.npz, a slow obviously-correct
reference, and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mse_rt.kernels import _nms_cpu
from mse_rt.pipeline.nms import batched_nms_native, batched_nms_torch, nms_hard_ref

from golden_utils import GOLDEN, match_detections

IMPLS = {"native": batched_nms_native, "torch": batched_nms_torch}


def _golden():
    return np.load(GOLDEN / "nms.npz")


def _cases(prefix: str, suffix: str) -> list[str]:
    return sorted(k[: -len(suffix)] for k in _golden().files if k.startswith(prefix) and k.endswith(suffix))


@pytest.mark.parametrize("case", _cases("hard_", "_iou"))
@pytest.mark.parametrize("impl", ["native", "torch"])
def test_hard_nms_golden(case, impl):
    z = _golden()
    segs, scores, iou = z[case + "_segs"], z[case + "_scores"], float(z[case + "_iou"])
    if impl == "native":
        keep = _nms_cpu.hard_nms(np.ascontiguousarray(segs, np.float32), np.ascontiguousarray(scores, np.float32), iou)
    else:
        keep = nms_hard_ref(torch.from_numpy(segs), torch.from_numpy(scores), iou).numpy()
    ref = z[case + "_keep"]
    assert keep.dtype == np.int64
    # indices may differ only among equal scores: compare kept scores in order and kept sets
    np.testing.assert_array_equal(scores[keep], scores[ref])
    assert set(keep.tolist()) == set(ref.tolist())


@pytest.mark.parametrize("case", _cases("batched_", "_params"))
@pytest.mark.parametrize("impl", ["native", "torch"])
def test_batched_nms_golden(case, impl):
    z = _golden()
    iou, min_score, max_num, soft, multi, sigma, vote = z[case + "_params"].tolist()
    segs, scores, labels = IMPLS[impl](
        torch.from_numpy(z[case + "_segs"]), torch.from_numpy(z[case + "_scores"]),
        torch.from_numpy(z[case + "_labels"]), iou, min_score, int(max_num),
        use_soft_nms=bool(soft), multiclass=bool(multi), sigma=sigma, voting_thresh=vote)
    match_detections(segs.numpy(), scores.numpy(), labels.numpy(), z[case + "_out_segs"],
                     z[case + "_out_scores"], z[case + "_out_labels"], f"{case} {impl}")
    assert labels.dtype == torch.int64


def _slow_hard_nms(segs, scores, thr):
    """Obviously correct: walk segments by descending score, keep if no kept one overlaps >= thr."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        ok = True
        for k in kept:
            inter = max(0.0, min(segs[i][1], segs[k][1]) - max(segs[i][0], segs[k][0]))
            la, lb = segs[i][1] - segs[i][0] + 1e-6, segs[k][1] - segs[k][0] + 1e-6
            if inter / (la + lb - inter) >= thr:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def _random_segments(rng, n, n_cls=4):
    start = rng.uniform(0, 200, n)
    length = rng.uniform(0.5, 40, n)
    segs = np.stack([start, start + length], 1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    labels = rng.integers(0, n_cls, n).astype(np.int64)
    return segs, scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_hard_nms_vs_slow_reference(seed):
    rng = np.random.default_rng(seed)
    segs, scores, _ = _random_segments(rng, 120)
    ref = _slow_hard_nms(segs.tolist(), scores.tolist(), 0.3)
    assert _nms_cpu.hard_nms(segs, scores, 0.3).tolist() == ref
    assert nms_hard_ref(torch.from_numpy(segs), torch.from_numpy(scores), 0.3).tolist() == ref


@pytest.mark.parametrize("delta", [-1e-5, 1e-5])
def test_pairs_at_the_threshold(delta):
    """Two segments whose IoU is the threshold +- 1e-5: suppressed exactly when IoU >= threshold."""
    thr = 0.5
    target = thr + delta
    # a = [0, 10]; b = [s, s + 10] overlapping by inter: iou = inter / (20 + 2e-6 - inter)
    inter = target * (20 + 2e-6) / (1 + target)
    segs = np.array([[0.0, 10.0], [10.0 - inter, 20.0 - inter]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    a, b = segs.astype(np.float64)
    i = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    iou32 = i / ((a[1] - a[0] + 1e-6) + (b[1] - b[0] + 1e-6) - i)
    expect = [0] if iou32 >= thr else [0, 1]
    assert _nms_cpu.hard_nms(segs, scores, thr).tolist() == expect
    assert nms_hard_ref(torch.from_numpy(segs), torch.from_numpy(scores), thr).tolist() == expect


def test_empty_input():
    e = np.zeros((0, 2), np.float32)
    keep = _nms_cpu.hard_nms(e, np.zeros(0, np.float32), 0.5)
    assert keep.dtype == np.int64 and keep.shape == (0,)
    for fn in IMPLS.values():
        s, sc, lb = fn(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.1, 0.001, 100)
        assert s.shape == (0, 2) and sc.shape == (0,) and lb.dtype == torch.int64


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("soft,multi,vote", [(True, True, 0.0), (True, False, 0.75), (False, True, 0.0),
                                             (False, False, 0.9)])
def test_native_equals_torch_on_random_batches(seed, soft, multi, vote):
    rng = np.random.default_rng(100 + seed)
    segs, scores, labels = _random_segments(rng, 400)
    scores[::7] = scores[0]  # ties
    args = (torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels), 0.3, 0.01, 150)
    kw = dict(use_soft_nms=soft, multiclass=multi, sigma=0.6, voting_thresh=vote)
    a = batched_nms_native(*args, **kw)
    b = batched_nms_torch(*args, **kw)
    match_detections(a[0].numpy(), a[1].numpy(), a[2].numpy(), b[0].numpy(), b[1].numpy(), b[2].numpy(),
                     "native vs torch", score_tol=1e-6, seg_tol=1e-4)


@pytest.mark.parametrize("min_score", [0.001, 0.3])
def test_native_threads_give_the_same_output(min_score):
    """Classes on a thread pool (largest first) and the soft-NMS argmax tracked inside the decay
    pass: equal bit for bit across thread counts, within float32 rounding of the torch reference
    on skewed classes (one holds most candidates; a high min_score drops many mid-pass), and
    the same from two Python threads at once (the lock is released)."""
    import threading

    rng = np.random.default_rng(7)
    segs, scores, _ = _random_segments(rng, 1500)
    labels = np.minimum(rng.geometric(0.35, 1500) - 1, 9).astype(np.int64)  # skewed class sizes
    args = (torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels), 0.3, min_score, 400)
    kw = dict(use_soft_nms=True, multiclass=True, sigma=0.5, voting_thresh=0.0)
    one = batched_nms_native(*args, threads=1, **kw)
    for th in (2, 3, 16):
        out = batched_nms_native(*args, threads=th, **kw)
        assert all(torch.equal(a, b) for a, b in zip(out, one)), th
    ref = batched_nms_torch(*args, **kw)
    match_detections(one[0].numpy(), one[1].numpy(), one[2].numpy(), ref[0].numpy(), ref[1].numpy(),
                     ref[2].numpy(), "native vs torch", score_tol=1e-6, seg_tol=1e-4)
    results = [None, None]

    def call(i):
        results[i] = batched_nms_native(*args, threads=2, **kw)

    workers = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(all(torch.equal(a, b) for a, b in zip(r, one)) for r in results)
    with pytest.raises(ValueError, match="threads"):
        batched_nms_native(*args, threads=0, **kw)


def test_soft_nms_float64_semantics():
    """Soft-NMS decay of a two-segment set, computed by hand in float64."""
    segs = np.array([[0.0, 10.0], [5.0, 15.0]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    s, sc, lb = batched_nms_native(torch.from_numpy(segs), torch.from_numpy(scores),
                                   torch.zeros(2, dtype=torch.int64), 0.1, 0.001, 10, True, True, 0.5, 0.0)
    iou = 5.0 / (10 + 1e-6 + 10 + 1e-6 - 5.0)
    assert sc[1].item() == pytest.approx(0.8 * math.exp(-iou * iou / 0.5), rel=1e-6)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        _nms_cpu.hard_nms(np.array([[0, np.nan]], np.float32), np.array([0.5], np.float32), 0.5)
    with pytest.raises(ValueError, match="disagree"):
        _nms_cpu.hard_nms(np.zeros((2, 2), np.float32), np.zeros(3, np.float32), 0.5)
    with pytest.raises(TypeError):
        _nms_cpu.hard_nms(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), 0.5)
