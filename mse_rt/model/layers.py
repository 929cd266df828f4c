"""Small building blocks of the MSE-TAD network (docs/spec/model.md, section 1).

Shapes: B batch, C channels, T time steps on the feature grid. Tensors are (B, C, T); masks are
(B, 1, T) booleans, True = valid step. Masks stay boolean, and "nearest" downsampling by an
integer stride is a strided slice (``mask[..., ::s]``), which is what the reference's
``F.interpolate(mode="nearest")`` selects when T % s == 0.
"""

from __future__ import annotations

import torch
from torch import nn


def tracing() -> bool:
    """True while torch.jit / torch.onnx trace the model: take the graph-friendly code paths."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


# Additive bias for invalid keys in traced attention: finite so fp16 graphs stay finite, and
# far enough below any valid score (|q.k| / sqrt(d) << 1e4) that exp() gives exactly 0.
MASK_NEG = -1.0e4


def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Nearest downsampling of a (B, 1, T) bool mask to (B, 1, T // stride): keeps steps 0, s, 2s..."""
    if stride == 1:
        return mask
    t_out = mask.shape[-1] // stride
    return mask[..., ::stride][..., :t_out].contiguous()  # strided views would reach SDPA as such


class MaskedConv1D(nn.Module):
    """Conv1d followed by the mask; stride s > 1 downsamples the mask (nearest) to T // s.

    ``forward(x (B, Cin, T), mask (B, 1, T) bool) -> (y (B, Cout, T // s), mask (B, 1, T // s))``.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_mask = downsample_mask(mask, self.stride)
        return self.conv(x) * out_mask.to(x.dtype), out_mask


class LayerNorm(nn.Module):
    """LayerNorm over channels of a (B, C, T) tensor: per-step mean / biased variance, eps 1e-5."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tracing():
            # channel means as (1, C) @ (B, C, T) GEMMs: ONNX Runtime's ReduceMean over a strided
            # axis is the slow part of this op on CPU. Statistics in float32 for fp16 graphs.
            xf = x.float()
            avg = torch.full((1, x.shape[1]), 1.0 / x.shape[1], dtype=torch.float32, device=x.device)
            res = xf - torch.matmul(avg, xf)
            y = res * torch.rsqrt(torch.matmul(avg, res * res) + self.eps) * self.weight.float() + self.bias.float()
            return y.to(x.dtype)
        mu = x.mean(dim=1, keepdim=True)
        res = x - mu
        var = (res * res).mean(dim=1, keepdim=True)
        return res * torch.rsqrt(var + self.eps) * self.weight + self.bias


class Scale(nn.Module):
    """A learnable scalar ``scale`` (init 1.0) multiplying its input."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AffineDropPath(nn.Module):
    """Per-channel ``scale`` (1, C, 1), init 1e-4; at inference a plain multiply (no drop)."""

    def __init__(self, num_dim: int, drop_prob: float = 0.0, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(init_scale * torch.ones(1, num_dim, 1))
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale * x
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x / keep * torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))
