"""Decoding head outputs into candidate segments (docs/spec/decode.md), vectorised over videos and levels.

All segment values here are in feature-grid steps (level-0 grid); seconds come later
(:func:`mse_rt.pipeline.segments.to_seconds`).
"""

from __future__ import annotations

import numpy as np
import torch

from .candidates import Candidates


def select_topk(prob_levels: list[torch.Tensor], thresh: float, topk: int):
    """Per (video, level) row: the first ``topk`` of a stable descending sort, those above ``thresh``.

    ``prob_levels[l]``: (B, T_l * K) probabilities flattened in (t, class) order. Returns
    (video index, level index, flat index within the level, score) of every kept candidate,
    ordered by video, then level, then descending score (ties: lower index first). CPU float32 /
    float64 levels go through :func:`_select_topk_rows`, anything else (GPU tensors, fp16) through
    :func:`_select_topk_table`; both give this result (a NaN score is never kept; on the table
    path it can still take one of the ``topk`` places).
    """
    if all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in prob_levels):
        return _select_topk_rows(prob_levels, thresh, topk)
    return _select_topk_table(prob_levels, thresh, topk)


def _select_topk_table(prob_levels: list[torch.Tensor], thresh: float, topk: int):
    """:func:`select_topk` as a few batched tensor ops on one (B * L, longest level) table."""
    B = prob_levels[0].shape[0]
    L = len(prob_levels)
    width = max(p.shape[1] for p in prob_levels)
    table = prob_levels[0].new_full((B, L, width), -1.0)
    for l, p in enumerate(prob_levels):
        table[:, l, : p.shape[1]] = p
    k = min(topk, width)
    rows = table.view(B * L, width)
    if k < width:
        # the first k of a stable descending sort, without sorting the whole row
        top_vals, top_idx = torch.topk(rows, k, dim=1, sorted=False)
        kth = top_vals.min(dim=1, keepdim=True).values
        # top-k's set is the stable sort's when no copy of the k-th value was left out, or when
        # the k-th value is <= thresh (then the copies are dropped below anyway; this also covers
        # the -1 padding of levels shorter than k); else (ties across the k-th place) every value
        # above it, then its copies in index order. Either way the k indices in ascending order,
        # then a stable sort of those k by value: the same result as sorting the whole row, in
        # less time (docs/decisions.md#topk)
        clear = ((rows == kth).sum(dim=1, keepdim=True) == (top_vals == kth).sum(dim=1, keepdim=True)) | (kth <= thresh)
        if bool(clear.all()):
            sel = torch.sort(top_idx, dim=1).values
        else:
            above = rows > kth
            tie = rows == kth
            need = k - above.sum(dim=1, keepdim=True)
            chosen = above | (tie & (torch.cumsum(tie, dim=1) <= need))
            sel = chosen.nonzero()[:, 1].view(B * L, k)  # ascending index within each row
        vals, order = torch.sort(rows.gather(1, sel), dim=1, descending=True, stable=True)
        idx = sel.gather(1, order)
    else:
        vals, idx = torch.sort(rows, dim=1, descending=True, stable=True)
    keep = vals > thresh
    rows, cols = keep.nonzero(as_tuple=True)
    return rows // L, rows % L, idx[rows, cols], vals[rows, cols]


def _select_topk_rows(prob_levels: list[torch.Tensor], thresh: float, topk: int):
    """:func:`select_topk` for CPU tensors: the k-th largest of each row by one top-k per level
    (rows in parallel), then per row in numpy the values above ``thresh`` (only they can be kept),
    those above the k-th largest plus its copies in index order, and a stable descending sort
    (faster than the table path on the CPU, much faster with the many ties of reduced-precision
    outputs: docs/decisions.md#topk-rows)."""
    B, L = prob_levels[0].shape[0], len(prob_levels)
    parts: list[list] = [[None] * L for _ in range(B)]
    for lvl, p in enumerate(prob_levels):
        p = p.detach()
        a = p.numpy()
        kth = torch.topk(p, topk, dim=1, sorted=False).values.min(dim=1).values.numpy() if p.shape[1] > topk else None
        for b in range(B):
            idx = np.flatnonzero(a[b] > thresh)
            val = a[b][idx]
            if val.size > topk:  # then the k-th largest is above thresh: choose among these
                chosen = val > kth[b]
                need = topk - int(np.count_nonzero(chosen))
                chosen[np.flatnonzero(val == kth[b])[:need]] = True
                idx, val = idx[chosen], val[chosen]
            order = np.argsort(-val, kind="stable")
            parts[b][lvl] = (idx[order], val[order])
    rows = [part for video in parts for part in video]
    sizes = [len(i) for i, _ in rows]
    vid = np.repeat(np.repeat(np.arange(B, dtype=np.int64), L), sizes)
    lvl_of = np.repeat(np.tile(np.arange(L, dtype=np.int64), B), sizes)
    idx = np.concatenate([i for i, _ in rows]).astype(np.int64, copy=False)
    val = np.concatenate([v for _, v in rows])
    return torch.from_numpy(vid), torch.from_numpy(lvl_of), torch.from_numpy(idx), torch.from_numpy(val)


def trident_expectation(left_logits: torch.Tensor, right_logits: torch.Tensor, off: torch.Tensor,
                        num_bins: int) -> torch.Tensor:
    """Expected start / end distances (N, 2) in steps of the level's grid.

    ``left_logits`` / ``right_logits`` (N, n+1): the boundary logits at t-n+j / t+j (zero
    outside the sequence); ``off`` (N, 2, n+1): the regression head's bins.
    """
    j = torch.arange(num_bins + 1, dtype=off.dtype, device=off.device)
    dl = torch.softmax(left_logits + off[:, 0], dim=-1)
    dr = torch.softmax(right_logits + off[:, 1], dim=-1)
    return torch.stack(((dl * (num_bins - j)).sum(-1), (dr * j).sum(-1)), dim=-1)


def decode_batch(out: dict, strides: list[int], test_cfg: dict, num_bins: int,
                 use_trident_head: bool) -> list[Candidates]:
    """Decode a batch of head outputs (the dict of :class:`mse_rt.model.MSETAD`) per video.

    ``out['cls_logits'][l]`` (B, K, T_l), ``out['start_logits']``/``['end_logits']`` the same,
    ``out['offsets'][l]`` (B, 2 (n+1), T_l), ``out['masks'][l]`` (B, 1, T_l). Returns B lists of
    candidates with segments in level-0 grid steps.
    """
    cls = out["cls_logits"]
    B, K = cls[0].shape[:2]
    probs = []
    for logits, mask in zip(cls, out["masks"]):
        p = torch.sigmoid(logits) * mask.to(logits.dtype)  # (B, K, T)
        probs.append(p.transpose(1, 2).reshape(B, -1))  # (t, class) order
    vid, lvl, flat, score = select_topk(probs, test_cfg["pre_nms_thresh"], test_cfg["pre_nms_topk"])
    t = torch.div(flat, K, rounding_mode="floor")
    c = flat % K
    n = num_bins
    segs = torch.empty(vid.shape[0], 2, dtype=torch.float32, device=score.device)
    for l, stride in enumerate(strides):
        sel = (lvl == l).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        v, tt, cc = vid[sel], t[sel], c[sel]
        off = out["offsets"][l]
        if use_trident_head:
            off_sel = off[v, :, tt].view(-1, 2, n + 1)
            j = torch.arange(n + 1, device=tt.device)
            pos = tt[:, None] + j[None, :]  # index into the n-padded sequence
            start_pad = torch.nn.functional.pad(out["start_logits"][l], (n, 0))
            end_pad = torch.nn.functional.pad(out["end_logits"][l], (0, n))
            left = start_pad[v[:, None], cc[:, None], pos]
            right = end_pad[v[:, None], cc[:, None], pos]
            dist = trident_expectation(left, right, off_sel, n)
        else:
            dist = off[v, :, tt][:, :2]
        centre = (tt * stride).to(torch.float32)
        segs[sel, 0] = centre - dist[:, 0] * stride
        segs[sel, 1] = centre + dist[:, 1] * stride
    keep = (segs[:, 1] - segs[:, 0]) > test_cfg["duration_thresh"]
    result = []
    for b in range(B):
        m = keep & (vid == b)
        result.append(Candidates(segs[m], score[m], c[m]))
    return result


def decode_dense(cls_prob: torch.Tensor, seg_start: torch.Tensor, seg_end: torch.Tensor, level_lengths: list[int],
                 test_cfg: dict) -> list[Candidates]:
    """Finish decode from the dense graph outputs (:class:`mse_rt.model.detector_graph.DetectorGraph`).

    ``cls_prob`` / ``seg_start`` / ``seg_end`` (B, P, K) with levels concatenated along P
    (``level_lengths`` steps each). Per video and level: keep ``p > pre_nms_thresh``, the top
    ``pre_nms_topk`` by score, then drop segments no longer than ``duration_thresh``. Returns B
    lists of candidates, segments in level-0 grid steps.
    """
    B, P, K = cls_prob.shape
    if sum(level_lengths) != P:
        raise ValueError(f"level lengths {level_lengths} do not add up to P = {P}")
    bounds = [0]
    for n in level_lengths:
        bounds.append(bounds[-1] + n)
    probs = [cls_prob[:, a:b].reshape(B, -1) for a, b in zip(bounds[:-1], bounds[1:])]
    vid, lvl, flat, score = select_topk(probs, test_cfg["pre_nms_thresh"], test_cfg["pre_nms_topk"])
    offset = torch.tensor(bounds[:-1], device=flat.device)[lvl]
    point = offset + torch.div(flat, K, rounding_mode="floor")
    cls = flat % K
    start = seg_start[vid, point, cls]
    end = seg_end[vid, point, cls]
    keep = (end - start) > test_cfg["duration_thresh"]
    segs = torch.stack((start, end), dim=-1)
    return [Candidates(segs[keep & (vid == b)], score[keep & (vid == b)], cls[keep & (vid == b)]) for b in range(B)]
