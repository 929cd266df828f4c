"""NMS of one video's candidates (docs/spec/nms.md), in feature-grid steps.

Two implementations of one contract:
- the native C++ module ``mse_rt.kernels._nms_cpu`` (fast; default), and
- the plain PyTorch functions below (reference and fallback, ``impl="torch"``).
Both are tested case by case against the golden ``nms.npz``. Segments are in feature-grid steps.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import BackendError
from .segments import NMS_LEN_EPS, segment_iou


def nms_hard_ref(segs: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Hard NMS of one class: indices kept (int64), in descending score order (stable on ties).

    A segment is dropped when its IoU with an already kept one is >= ``iou_threshold``.
    """
    if segs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True).indices
    s = segs[order]
    alive = torch.ones(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        if i + 1 < len(order):
            alive[i + 1:] &= segment_iou(s[i], s[i + 1:], NMS_LEN_EPS) < iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64)]


def soft_nms_gaussian_ref(segs: torch.Tensor, scores: torch.Tensor, sigma: float,
                          min_score: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS of one class, replaying the reference's in-place array order exactly.

    Returns (segments (M, 2), decayed scores (M,), original indices (M,) int64) in emission order.
    Each step emits the highest remaining score (first in current order on ties), multiplies the
    others by exp(-iou^2 / sigma) and drops those below ``min_score``; a dropped slot is filled by
    the last remaining element (so holes in the first K slots get the survivors beyond K, last first).
    """
    n = segs.shape[0]
    order = torch.arange(n)
    cur = scores.clone()
    out_segs, out_scores, out_idx = [], [], []
    while order.numel() > 0:
        pos = int(torch.argmax(cur[order]))  # first maximum in current order
        i = int(order[pos])
        out_segs.append(segs[i])
        out_scores.append(cur[i].clone())
        out_idx.append(i)
        # swap the chosen one to the front, then look at the rest in their order
        if pos != 0:
            order = order.clone()
            order[pos] = order[0]
        rest = order[1:]
        if rest.numel() == 0:
            break
        cur[rest] = cur[rest] * torch.exp(-segment_iou(segs[i], segs[rest], NMS_LEN_EPS) ** 2 / sigma)
        kept = cur[rest] >= min_score
        n_keep = int(kept.sum())
        front = rest[:n_keep]
        holes = ~kept[:n_keep]
        fillers = rest[n_keep:][kept[n_keep:]].flip(0)
        front = front.clone()
        front[holes] = fillers
        order = front
    if not out_idx:
        return segs.new_zeros(0, 2), scores.new_zeros(0), torch.zeros(0, dtype=torch.int64)
    return torch.stack(out_segs), torch.stack(out_scores), torch.tensor(out_idx, dtype=torch.int64)


def score_voting(kept: torch.Tensor, all_segs: torch.Tensor, all_scores: torch.Tensor,
                 thresh: float) -> torch.Tensor:
    """Each kept segment (M, 2) becomes the score-weighted mean of all segments with IoU >= thresh."""
    iou = segment_iou(kept[:, None], all_segs[None])  # no length epsilon in voting
    w = (iou >= thresh).to(all_scores.dtype) * all_scores[None, :]
    w = w / w.sum(dim=1, keepdim=True)
    return w @ all_segs


def _nms_one_group(segs, scores, labels, iou_threshold, min_score, max_seg_num, use_soft, sigma):
    if use_soft:
        s, sc, idx = soft_nms_gaussian_ref(segs, scores, sigma, min_score)
        n = min(len(idx), max_seg_num) if max_seg_num > 0 else len(idx)
        return s[:n], sc[:n], labels[idx[:n]]
    if min_score > 0:
        valid = scores > min_score
        segs, scores, labels = segs[valid], scores[valid], labels[valid]
    idx = nms_hard_ref(segs, scores, iou_threshold)
    if max_seg_num > 0:
        idx = idx[:max_seg_num]
    return segs[idx], scores[idx], labels[idx]


def batched_nms_torch(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                      min_score: float, max_seg_num: int, use_soft_nms: bool = True, multiclass: bool = True,
                      sigma: float = 0.5, voting_thresh: float = 0.75):
    """Per-video NMS entry point (reference semantics), plain PyTorch.

    ``segs`` (N, 2) float32 grid steps, ``scores`` (N,), ``labels`` (N,) int64. Multiclass: NMS per
    class (ascending class id), results concatenated. Class-agnostic: one NMS, then score voting
    when ``voting_thresh > 0``. Finally sorted by score (descending) and cut to ``max_seg_num``.
    """
    if segs.shape[0] == 0:
        return segs.new_zeros(0, 2), scores.new_zeros(0), labels.new_zeros(0)
    if multiclass:
        parts = []
        for cls_id in torch.unique(labels):
            sel = (labels == cls_id).nonzero(as_tuple=True)[0]
            parts.append(_nms_one_group(segs[sel], scores[sel], labels[sel], iou_threshold, min_score,
                                        max_seg_num, use_soft_nms, sigma))
        new_segs = torch.cat([p[0] for p in parts])
        new_scores = torch.cat([p[1] for p in parts])
        new_labels = torch.cat([p[2] for p in parts])
    else:
        new_segs, new_scores, new_labels = _nms_one_group(segs, scores, labels, iou_threshold, min_score,
                                                          max_seg_num, use_soft_nms, sigma)
        if voting_thresh > 0 and new_segs.shape[0] > 0:
            new_segs = score_voting(new_segs, segs, scores, voting_thresh)
    order = torch.sort(new_scores, descending=True, stable=True).indices[:max_seg_num]
    return new_segs[order], new_scores[order], new_labels[order]


def _native():
    try:
        from ..kernels import _nms_cpu  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise BackendError(
            "the native NMS module mse_rt.kernels._nms_cpu is missing: reinstall mse-rt "
            "(pip install -e . builds it with CMake), or pass nms_impl='torch'"
        ) from exc
    return _nms_cpu


def native_available() -> bool:
    """True when the C++ NMS module was built and imports."""
    try:
        _native()
    except BackendError:
        return False
    return True


def batched_nms_native(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                       min_score: float, max_seg_num: int, use_soft_nms: bool = True, multiclass: bool = True,
                       sigma: float = 0.5, voting_thresh: float = 0.75, threads: int | None = None):
    """Same contract as :func:`batched_nms_torch`, computed by the C++ module (CPU, float32).

    ``threads``: classes processed in parallel (multiclass NMS; the output does not depend on
    it); None = torch's intra-op thread count. The Python lock is released while it runs.
    """
    if threads is None:
        threads = torch.get_num_threads()
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    mod = _native()
    s = np.ascontiguousarray(segs.detach().cpu().numpy(), dtype=np.float32).reshape(-1, 2)
    sc = np.ascontiguousarray(scores.detach().cpu().numpy(), dtype=np.float32)
    lb = np.ascontiguousarray(labels.detach().cpu().numpy(), dtype=np.int64)
    o_s, o_sc, o_lb = mod.batched_nms(s, sc, lb, float(iou_threshold), float(min_score), int(max_seg_num),
                                      bool(use_soft_nms), bool(multiclass), float(sigma), float(voting_thresh),
                                      int(threads))
    return torch.from_numpy(o_s), torch.from_numpy(o_sc), torch.from_numpy(o_lb)


def nms_video(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, test_cfg: dict,
              impl: str = "native"):
    """Apply the config's NMS (``test_cfg.nms_method``: soft | hard | none) to one video's candidates."""
    if test_cfg["nms_method"] == "none":
        return segs.cpu(), scores.cpu(), labels.cpu()
    if impl not in ("native", "torch"):
        raise BackendError(f"unknown NMS implementation {impl!r}; use 'native' or 'torch'")
    fn = batched_nms_native if impl == "native" else batched_nms_torch
    return fn(segs.cpu(), scores.cpu(), labels.cpu(), test_cfg["iou_threshold"], test_cfg["min_score"],
              test_cfg["max_seg_num"], use_soft_nms=test_cfg["nms_method"] == "soft",
              multiclass=test_cfg["multiclass_nms"], sigma=test_cfg["nms_sigma"],
              voting_thresh=test_cfg["voting_thresh"])
