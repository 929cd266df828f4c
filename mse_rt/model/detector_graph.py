"""The network plus the dense part of decode, as one module: what every backend runs.

``DetectorGraph(feats (B, C_in, T) float32, lengths (B,) int64)`` returns, for all pyramid levels
concatenated along points (level 0 first, P = sum_l T / 2^l):

- ``cls_prob``  (B, P, K): sigmoid(cls logits) * valid mask;
- ``seg_start`` (B, P, K), ``seg_end`` (B, P, K): the decoded segment of every (point, class) in
  level-0 feature-grid steps (trident expectation; without the trident head the same for all
  classes).

The data-dependent rest of decode (threshold, per-level top-k, duration filter) and NMS stay in
the runtime (:func:`mse_rt.pipeline.decode.decode_dense`), shared by all backends. The same module is
what :mod:`mse_rt.export` traces to ONNX, so it avoids ``as_strided`` and data-dependent Python
branches when tracing: the boundary windows are n + 1 shifted slices, the attention uses an
explicit finite additive key mask (no row is ever fully masked: step 0 is always valid), and
the position embedding picks "interpolate" or "slice" with a graph-level ``where``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import fpn_strides
from .network import MSETAD

OUTPUT_NAMES = ("cls_prob", "seg_start", "seg_end")
INPUT_NAMES = ("feats", "lengths")


def level_lengths(T: int, strides: list[int]) -> list[int]:
    """Steps of each pyramid level for a padded length T: T // stride_l."""
    return [T // s for s in strides]


def boundary_windows(logits: torch.Tensor, n: int, left: bool, dim: int = -1) -> torch.Tensor:
    """(B, K, T) boundary logits -> (B, K, T, n+1) windows (``dim=-1``; ``dim=-2``: (B, K, n+1, T)):
    logits[t-n+j] (left) or logits[t+j], zero outside the sequence."""
    T = logits.shape[-1]
    padded = F.pad(logits, (n, 0) if left else (0, n))
    return torch.stack([padded[..., j:j + T] for j in range(n + 1)], dim=dim)


class DetectorGraph(nn.Module):
    """Dense detector outputs for a batch; see the module docstring for shapes and units."""

    def __init__(self, model: MSETAD) -> None:
        super().__init__()
        self.model = model
        self.cfg = model.cfg
        self.strides = fpn_strides(model.cfg)
        self.num_bins = model.num_bins
        self.use_trident_head = model.use_trident_head

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        T = feats.shape[-1]
        mask = (torch.arange(T, device=feats.device)[None, :] < lengths[:, None]).unsqueeze(1)
        dtype = next(self.model.parameters()).dtype
        out = self.model(feats.to(dtype), mask)
        if dtype != torch.float32:  # reduced-precision network; decode in float32
            out = {k: [t.float() if t.is_floating_point() else t for t in v] for k, v in out.items()}
        return self.dense_outputs(out)

    def dense_outputs(self, out: dict):
        """Per-level head outputs (dict of :class:`MSETAD`) -> (cls_prob, seg_start, seg_end) (B, P, K)."""
        feats = out["cls_logits"][0]
        probs, starts, ends = [], [], []
        n = self.num_bins
        j = torch.arange(n + 1, dtype=feats.dtype, device=feats.device)
        for l, stride in enumerate(self.strides):
            cls = out["cls_logits"][l]  # (B, K, T_l)
            m = out["masks"][l].to(cls.dtype)  # (B, 1, T_l)
            probs.append(torch.sigmoid(cls) * m)
            off = out["offsets"][l]  # (B, 2 (n+1), T_l)
            B, K, Tl = cls.shape
            if self.use_trident_head:
                # windows stacked as (B, K, n+1, T_l): time stays the innermost axis (a concat of
                # contiguous rows; stacking on the last axis was a slow element-wise concat in
                # OpenVINO and ONNX Runtime), the softmax runs over the bins axis
                off = off.reshape(B, 2, n + 1, Tl)  # (B, 2, n+1, T_l)
                left = boundary_windows(out["start_logits"][l], n, left=True, dim=-2) + off[:, None, 0]
                right = boundary_windows(out["end_logits"][l], n, left=False, dim=-2) + off[:, None, 1]
                jj = j[:, None]
                d_start = (torch.softmax(left, dim=-2) * (n - jj)).sum(-2)  # (B, K, T_l)
                d_end = (torch.softmax(right, dim=-2) * jj).sum(-2)
            else:
                d_start = off[:, 0:1].expand(B, K, Tl)
                d_end = off[:, 1:2].expand(B, K, Tl)
            centre = (torch.arange(Tl, device=feats.device, dtype=feats.dtype) * stride)[None, None, :]
            starts.append(centre - d_start * stride)
            ends.append(centre + d_end * stride)
        cat = [torch.cat(x, dim=-1).transpose(1, 2) for x in (probs, starts, ends)]
        return cat[0], cat[1], cat[2]
