"""Batched 1D NMS on the GPU: many videos and classes in one launch (docs/spec/nms.md semantics).

One program per group (a (video, class) pair with multiclass NMS, a video otherwise) walks its
candidates exactly like the reference CPU loop, with every inner loop vectorised over BLOCK
candidates:
- ``_soft_nms_kernel``: Gaussian soft-NMS on a working copy that is permuted in place like the
  reference array (pick the first maximum, swap it to the front, decay the rest by
  exp(-iou^2 / sigma), drop scores below min_score by moving the last survivors into the holes,
  in reverse order), so ties resolve as in the reference and golden/nms.npz matches;
- ``_hard_nms_kernel``: hard NMS over candidates pre-sorted by descending score (stable).
IoU uses segment lengths x2 - x1 + 1e-6, as the reference. Score voting (class-agnostic), the
per-group max_seg_num cut and the final per-video score sort run as batched torch ops.

Arithmetic matches the IEEE float32 of the C++ NMS and the reference: IoU and the Gaussian
exponent use round-to-nearest division (``tl.div_rn``; a plain ``/`` compiles to the approximate
``div.full.f32``) and the decay uses libdevice's ``expf`` (``tl.exp`` compiles to
``ex2.approx.f32``), so scores on a threshold and exact ties resolve as on the CPU. The
interpreter (CPU tests) uses ``tl.exp``, which it evaluates with NumPy's exp.
GPU timing: benchmarks/gpu_check.py (not yet measured: no device was lent to this issue).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from mse_rt.errors import InputError

from ._common import INT32_MAX, block_size, check_tensor, interpreting


@triton.jit
def _soft_nms_kernel(
    x1_ptr, x2_ptr, sc_ptr, idx_ptr, tmp_ptr, offs_ptr,
    ox1_ptr, ox2_ptr, osc_ptr, oidx_ptr, ocount_ptr,
    sigma, min_score,
    BLOCK: tl.constexpr, PRECISE: tl.constexpr,
):
    g = tl.program_id(0)
    start = tl.load(offs_ptr + g)
    n_cur = tl.load(offs_ptr + g + 1) - start
    lane = tl.arange(0, BLOCK)
    i = tl.full([], 0, tl.int32)
    while i < n_cur:
        # first maximum of [i, n_cur) in the current order
        best = tl.full([], float("-inf"), tl.float32)
        best_pos = i
        for c0 in range(i, n_cur, BLOCK):
            p = c0 + lane
            m = p < n_cur
            s = tl.load(sc_ptr + start + p, mask=m, other=float("-inf"))
            cmax = tl.max(s, axis=0)
            cpos = tl.min(tl.where((s == cmax) & m, p, 2147483647), axis=0)
            upd = cmax > best
            best = tl.where(upd, cmax, best)
            best_pos = tl.where(upd, cpos, best_pos)
        # swap the chosen one to the front (position i) and emit it
        bx1 = tl.load(x1_ptr + start + best_pos)
        bx2 = tl.load(x2_ptr + start + best_pos)
        bsc = tl.load(sc_ptr + start + best_pos)
        bid = tl.load(idx_ptr + start + best_pos)
        fx1 = tl.load(x1_ptr + start + i)
        fx2 = tl.load(x2_ptr + start + i)
        fsc = tl.load(sc_ptr + start + i)
        fid = tl.load(idx_ptr + start + i)
        tl.debug_barrier()
        tl.store(x1_ptr + start + best_pos, fx1)
        tl.store(x2_ptr + start + best_pos, fx2)
        tl.store(sc_ptr + start + best_pos, fsc)
        tl.store(idx_ptr + start + best_pos, fid)
        tl.debug_barrier()
        tl.store(x1_ptr + start + i, bx1)
        tl.store(x2_ptr + start + i, bx2)
        tl.store(sc_ptr + start + i, bsc)
        tl.store(idx_ptr + start + i, bid)
        tl.store(ox1_ptr + start + i, bx1)
        tl.store(ox2_ptr + start + i, bx2)
        tl.store(osc_ptr + start + i, bsc)
        tl.store(oidx_ptr + start + i, bid)
        tl.debug_barrier()
        # decay the rest and count the survivors
        blen = bx2 - bx1 + 1e-6
        kept = tl.full([], 0, tl.int32)
        for c0 in range(i + 1, n_cur, BLOCK):
            p = c0 + lane
            m = p < n_cur
            x1 = tl.load(x1_ptr + start + p, mask=m, other=0.0)
            x2 = tl.load(x2_ptr + start + p, mask=m, other=0.0)
            s = tl.load(sc_ptr + start + p, mask=m, other=0.0)
            inter = tl.maximum(tl.minimum(x2, bx2) - tl.maximum(x1, bx1), 0.0)
            ovr = tl.div_rn(inter, blen + (x2 - x1 + 1e-6) - inter)
            # inline, not a helper: the interpreter re-patches the language on every helper call,
            # a quarter of the CPU test time of this loop
            if PRECISE:
                decay = libdevice.exp(-tl.div_rn(ovr * ovr, sigma))  # IEEE-accurate expf, not ex2.approx
            else:
                decay = tl.exp(-tl.div_rn(ovr * ovr, sigma))
            s = s * decay
            tl.store(sc_ptr + start + p, s, mask=m)
            kept += tl.sum(((s >= min_score) & m).to(tl.int32), axis=0)
        tl.debug_barrier()
        boundary = i + 1 + kept
        dropped = n_cur - boundary
        if dropped > 0:
            # rank the holes in [i+1, boundary) and remember where they are
            carry = tl.full([], 0, tl.int32)
            for c0 in range(i + 1, boundary, BLOCK):
                p = c0 + lane
                m = p < boundary
                s = tl.load(sc_ptr + start + p, mask=m, other=0.0)
                hole = ((s < min_score) & m).to(tl.int32)
                rank = carry + tl.cumsum(hole, axis=0) - 1
                tl.store(tmp_ptr + start + rank, p, mask=hole > 0)
                carry += tl.sum(hole, axis=0)
            holes = carry  # as many as survivors beyond the boundary
            tl.debug_barrier()
            # survivors beyond the boundary fill the holes, the last one the first hole
            carry = tl.full([], 0, tl.int32)
            for c0 in range(boundary, n_cur, BLOCK):
                p = c0 + lane
                m = p < n_cur
                s = tl.load(sc_ptr + start + p, mask=m, other=0.0)
                keep = ((s >= min_score) & m).to(tl.int32)
                rev = holes - 1 - (carry + tl.cumsum(keep, axis=0) - 1)
                km = keep > 0
                dest = tl.load(tmp_ptr + start + rev, mask=km, other=0)
                x1 = tl.load(x1_ptr + start + p, mask=km, other=0.0)
                x2 = tl.load(x2_ptr + start + p, mask=km, other=0.0)
                ix = tl.load(idx_ptr + start + p, mask=km, other=0)
                tl.store(x1_ptr + start + dest, x1, mask=km)
                tl.store(x2_ptr + start + dest, x2, mask=km)
                tl.store(sc_ptr + start + dest, s, mask=km)
                tl.store(idx_ptr + start + dest, ix, mask=km)
                carry += tl.sum(keep, axis=0)
            tl.debug_barrier()
        n_cur = boundary
        i += 1
    tl.store(ocount_ptr + g, i)


@triton.jit
def _hard_nms_kernel(
    x1_ptr, x2_ptr, alive_ptr, offs_ptr, oidx_ptr, ocount_ptr,
    iou_threshold,
    BLOCK: tl.constexpr,
):
    g = tl.program_id(0)
    start = tl.load(offs_ptr + g)
    n = tl.load(offs_ptr + g + 1) - start
    lane = tl.arange(0, BLOCK)
    count = tl.full([], 0, tl.int32)
    for i in range(0, n):
        if tl.load(alive_ptr + start + i) != 0:
            tl.store(oidx_ptr + start + count, start + i)
            count += 1
            ax1 = tl.load(x1_ptr + start + i)
            ax2 = tl.load(x2_ptr + start + i)
            alen = ax2 - ax1 + 1e-6
            for c0 in range(i + 1, n, BLOCK):
                p = c0 + lane
                m = p < n
                x1 = tl.load(x1_ptr + start + p, mask=m, other=0.0)
                x2 = tl.load(x2_ptr + start + p, mask=m, other=0.0)
                inter = tl.maximum(tl.minimum(x2, ax2) - tl.maximum(x1, ax1), 0.0)
                ovr = tl.div_rn(inter, alen + (x2 - x1 + 1e-6) - inter)
                tl.store(alive_ptr + start + p, tl.zeros_like(p), mask=m & (ovr >= iou_threshold))
            tl.debug_barrier()
    tl.store(ocount_ptr + g, count)


def _group_layout(keys: torch.Tensor, n_groups: int):
    counts = torch.bincount(keys, minlength=n_groups)
    offs = torch.zeros(n_groups + 1, dtype=torch.int32, device=keys.device)
    offs[1:] = torch.cumsum(counts, 0)
    return offs, counts


def batched_nms_gpu(segs: list[torch.Tensor], scores: list[torch.Tensor], labels: list[torch.Tensor],
                    test_cfg: dict, block: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """NMS of many videos in one launch. Per video: segs (N, 2) float32 grid steps, scores (N,),
    labels (N,) int64, all on one device. ``test_cfg``: iou_threshold, min_score, max_seg_num,
    nms_method (soft | hard | none), multiclass_nms, nms_sigma, voting_thresh. Returns per video
    (segs (M, 2), scores (M,), labels (M,)) sorted by score, as :func:`mse_rt.pipeline.nms.nms_video`."""
    if not (len(segs) == len(scores) == len(labels)):
        raise InputError("segs, scores and labels need one entry per video")
    if not segs:
        return []
    dev = segs[0].device
    for v, (s, p, lab) in enumerate(zip(segs, scores, labels)):
        check_tensor(f"segs[{v}]", s, 2, (torch.float32,), dev)
        check_tensor(f"scores[{v}]", p, 1, (torch.float32,), dev)
        check_tensor(f"labels[{v}]", lab, 1, (torch.int64,), dev)
        if s.shape[0] != p.shape[0] or p.shape[0] != lab.shape[0] or (s.numel() and s.shape[1] != 2):
            raise InputError(f"video {v}: segs (N, 2), scores (N,), labels (N,) disagree")
        if s.numel() and not bool(torch.isfinite(s).all() & torch.isfinite(p).all()):
            raise InputError(f"video {v}: NMS input holds NaN or Inf")
    block = block_size(256, 2048, block)
    method = test_cfg["nms_method"]
    if method == "none":
        return [(s, p, lab) for s, p, lab in zip(segs, scores, labels)]
    iou_thr, min_score = float(test_cfg["iou_threshold"]), float(test_cfg["min_score"])
    max_num, multiclass = int(test_cfg["max_seg_num"]), bool(test_cfg["multiclass_nms"])
    soft = method == "soft"
    vid = torch.cat([torch.full((len(p),), v, dtype=torch.int64, device=dev) for v, p in enumerate(scores)])
    S, P, L = torch.cat(segs), torch.cat(scores), torch.cat(labels)
    if not soft and min_score > 0:  # hard NMS filters first (reference)
        keep = P > min_score
        S, P, L, vid = S[keep], P[keep], L[keep], vid[keep]
    if P.shape[0] > INT32_MAX:
        raise InputError(f"{P.shape[0]} candidates in one launch exceed the kernels' int32 indexing; split the batch")
    n_cls = int(L.max()) + 1 if L.numel() else 1
    key = vid * n_cls + L if multiclass else vid
    if not soft:  # descending score within the group, stable
        o = torch.sort(P, descending=True, stable=True).indices
        S, P, L, vid, key = S[o], P[o], L[o], vid[o], key[o]
    o = torch.sort(key, stable=True).indices
    S, P, L, vid, key = S[o], P[o], L[o], vid[o], key[o]
    n_groups = len(segs) * (n_cls if multiclass else 1)
    offs, counts = _group_layout(key, n_groups)
    N = P.shape[0]
    ocount = torch.zeros(n_groups, dtype=torch.int32, device=dev)
    if N:
        x1, x2 = S[:, 0].contiguous(), S[:, 1].contiguous()
        if soft:
            sc = P.clone()
            idx = torch.arange(N, dtype=torch.int32, device=dev)
            out = [torch.empty_like(x1), torch.empty_like(x2), torch.empty_like(sc), torch.empty_like(idx)]
            _soft_nms_kernel[(n_groups,)](x1, x2, sc, idx, torch.empty_like(idx), offs, *out, ocount,
                                          float(test_cfg["nms_sigma"]), min_score, BLOCK=block,
                                          PRECISE=not interpreting())
            o_x1, o_x2, o_sc, o_idx = out
        else:
            alive = torch.ones(N, dtype=torch.int32, device=dev)
            o_idx = torch.empty(N, dtype=torch.int32, device=dev)
            _hard_nms_kernel[(n_groups,)](x1, x2, alive, offs, o_idx, ocount, iou_thr, BLOCK=block)
    # emitted slots: the first min(count, max_seg_num) of each group, in emission order
    pos = torch.arange(N, device=dev)
    rank = pos - offs[:-1].long()[key] if N else pos
    lim = ocount.long() if max_num <= 0 else torch.clamp(ocount.long(), max=max_num)
    valid = rank < lim[key] if N else torch.zeros(0, dtype=torch.bool, device=dev)
    if N and soft:
        src = o_idx.long()[valid]
        out_s = torch.stack([o_x1[valid], o_x2[valid]], 1)
        out_p, out_l, out_v = o_sc[valid], L[src], vid[src]
    elif N:
        src = o_idx.long()[valid]
        out_s, out_p, out_l, out_v = S[src], P[src], L[src], vid[src]
    results = []
    for v in range(len(segs)):
        if not N:
            results.append((segs[v].new_zeros(0, 2), scores[v].new_zeros(0), labels[v].new_zeros(0)))
            continue
        m = out_v == v
        s_v, p_v, l_v = out_s[m], out_p[m], out_l[m]
        vt = float(test_cfg["voting_thresh"])
        if not multiclass and vt > 0 and s_v.shape[0] > 0:
            from mse_rt.pipeline.nms import score_voting

            s_v = score_voting(s_v, segs[v], scores[v], vt)
        order = torch.sort(p_v, descending=True, stable=True).indices[:max_num]
        results.append((s_v[order], p_v[order], l_v[order]))
    return results


def batched_nms_gpu_ref(segs, scores, labels, test_cfg):
    """Reference: the plain PyTorch per-video NMS (mse_rt.pipeline.nms.batched_nms_torch), video by video."""
    from mse_rt.pipeline.nms import nms_video

    return [nms_video(s.cpu(), p.cpu(), lab.cpu(), test_cfg, impl="torch") for s, p, lab in zip(segs, scores, labels)]
