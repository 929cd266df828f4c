"""Quantities derived from a config: pyramid strides, window sizes, padding multiple, buffer length."""

from __future__ import annotations


def mse_win_sizes(cfg: dict) -> list[int]:
    """Per-level window sizes (level 0 = stem output): ``n_mse_win_size`` expanded to L entries."""
    m = cfg["model"]
    n_levels = m["backbone_arch"][2] + 1
    wins = m["n_mse_win_size"]
    return [wins] * n_levels if isinstance(wins, int) else list(wins)


def fpn_strides(cfg: dict) -> list[int]:
    """Stride of each pyramid level in feature-grid steps: ``scale_factor ** l``."""
    m = cfg["model"]
    return [m["scale_factor"] ** i for i in range(m["backbone_arch"][2] + 1)]


def max_div_factor(cfg: dict) -> int:
    """Padded lengths beyond ``max_seq_len`` round up to a multiple of this (docs/spec/padding.md)."""
    out = 1
    for s, w in zip(fpn_strides(cfg), mse_win_sizes(cfg)):
        out = max(out, s * w if w > 1 else s)
    return out


def max_buffer_len(cfg: dict) -> int:
    """Longest padded length the point buffer allows: ``max_seq_len * max_buffer_len_factor``."""
    m = cfg["model"]
    return int(m["max_seq_len"] * m["max_buffer_len_factor"])
