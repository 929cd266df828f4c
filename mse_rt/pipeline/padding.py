"""The reference padding policy (docs/spec/padding.md) and batch assembly.

A video of T steps is padded to a length the reference would give it; videos share a forward
pass only when they share that length. The network takes (B, C, T).
"""

from __future__ import annotations

import torch

from ..config import max_buffer_len, max_div_factor


def pad_policy_length(length: int, cfg: dict) -> int:
    """Padded length the reference gives a video of ``length`` steps.

    ``length <= max_seq_len`` pads to ``max_seq_len``; longer videos pad to the next multiple of
    :func:`mse_rt.config.max_div_factor`. Outputs depend on it (GroupNorm and the MSE global mean
    run over the padded length), so batching must respect it.
    """
    m = cfg["model"]
    if length <= m["max_seq_len"]:
        return m["max_seq_len"]
    div = max_div_factor(cfg)
    return (length + div - 1) // div * div


def max_video_length(cfg: dict) -> int:
    """Longest T0 (steps) a video may have: its padded length must fit the point buffer."""
    buf = max_buffer_len(cfg)
    if buf <= cfg["model"]["max_seq_len"]:
        return cfg["model"]["max_seq_len"]
    return buf // max_div_factor(cfg) * max_div_factor(cfg)


def make_mask(lengths: torch.Tensor, padded_len: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, 1, padded_len) bool mask, True = valid step."""
    return (torch.arange(padded_len, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


def pad_batch(videos: list[torch.Tensor], padded_len: int, time_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (C, T_i) videos into zero-padded (B, C, padded_len) plus lengths (B,) int64.

    ``time_first=True``: the same (B, C, padded_len) values, held as a transposed view of a
    contiguous (B, padded_len, C) buffer (``out.transpose(1, 2).is_contiguous()``). Features arrive
    time first, (T, C), so this layout is a plain copy where the channels-first one is a
    transposing copy (docs/decisions.md#time-first-input); for backends that take time-first input.
    One video that already fills ``padded_len`` in time-first memory is returned as a view of it,
    without a copy (read-only use: backends never write into their input).
    """
    c = videos[0].shape[0]
    lengths = torch.tensor([v.shape[1] for v in videos], dtype=torch.int64)
    if time_first and len(videos) == 1 and videos[0].shape[1] == padded_len and videos[0].T.is_contiguous():
        return videos[0].T.unsqueeze(0).transpose(1, 2), lengths
    if time_first:
        buf = videos[0].new_zeros(len(videos), padded_len, c)
        for i, v in enumerate(videos):
            buf[i, : v.shape[1]] = v.T
        return buf.transpose(1, 2), lengths
    out = videos[0].new_zeros(len(videos), c, padded_len)
    for i, v in enumerate(videos):
        out[i, :, : v.shape[1]] = v
    return out, lengths
