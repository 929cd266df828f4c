"""Channel LayerNorm of a (B, C, T) tensor: per time step, mean and biased variance over C.

    y[b, c, t] = (x[b, c, t] - mean_c) * rsqrt(var_c + eps) * weight[c] + bias[c]

Layout: x with explicit strides (any), weight / bias (C,). One program per (b, block of T steps)
loops over C in BLOCK_C chunks: pass 1 sums (float32) for the mean, pass 2 the centred squares,
pass 3 writes; the tile is re-read from L1/L2, so HBM traffic is one read and one write of x.
Used by the triton backend for the attention input ``ln(out1)`` and the head LayerNorms.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mse_rt.errors import InputError

from ._common import block_size, check_int32_slices, check_tensor


@triton.jit
def channel_mean_rstd(x_ptr, base, C, t, tmask, sxc, sxt, eps, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """Per-step mean and 1/sqrt(var + eps) over C of the (C, BLOCK_T) slab at x_ptr + base, in
    float32, two passes over C (the second centred, for accuracy). Shared by the LN kernels."""
    acc = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        m = (c[:, None] < C) & tmask[None, :]
        acc += tl.sum(tl.load(x_ptr + base + c[:, None] * sxc + t[None, :] * sxt, mask=m, other=0.0).to(tl.float32),
                      axis=0)
    mean = acc / C
    acc2 = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        m = (c[:, None] < C) & tmask[None, :]
        x = tl.load(x_ptr + base + c[:, None] * sxc + t[None, :] * sxt, mask=m, other=0.0).to(tl.float32)
        d = tl.where(m, x - mean[None, :], 0.0)
        acc2 += tl.sum(d * d, axis=0)
    return mean, 1.0 / tl.sqrt(acc2 / C + eps)


@triton.jit
def _channel_layernorm_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C, T,
    sxb, sxc, sxt, syb, syc, syt,
    eps,
    BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # batch offsets in int64: B * C * T may exceed 2^31
    pid_t = tl.program_id(1)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = t < T
    mean, rstd = channel_mean_rstd(x_ptr, pid_b * sxb, C, t, tmask, sxc, sxt, eps, BLOCK_C, BLOCK_T)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        m = cmask[:, None] & tmask[None, :]
        x = tl.load(x_ptr + pid_b * sxb + c[:, None] * sxc + t[None, :] * sxt, mask=m, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        y = (x - mean[None, :]) * rstd[None, :] * w[:, None] + b[:, None]
        tl.store(y_ptr + pid_b * syb + c[:, None] * syc + t[None, :] * syt, y.to(y_ptr.dtype.element_ty), mask=m)


def channel_layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
                      block_t: int | None = None, block_c: int | None = None) -> torch.Tensor:
    """LayerNorm over channels. x (B, C, T) fp32/fp16/bf16, weight / bias (C,) or (1, C, 1) -> (B, C, T),
    same dtype as x; statistics in float32."""
    check_tensor("x", x, 3)
    weight, bias = weight.reshape(-1), bias.reshape(-1)
    B, C, T = x.shape
    if weight.numel() != C or bias.numel() != C:
        raise InputError(f"weight / bias have {weight.numel()} / {bias.numel()} entries for C = {C}")
    if weight.device != x.device or bias.device != x.device:
        raise InputError("weight / bias must be on the same device as x")
    check_int32_slices("x", x)
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    block_t, block_c = block_size(64, 512, block_t), block_size(64, 256, block_c)
    grid = (B, triton.cdiv(T, block_t))
    _channel_layernorm_kernel[grid](
        x, weight.contiguous(), bias.contiguous(), y, C, T,
        x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2), float(eps),
        BLOCK_C=block_c, BLOCK_T=block_t,
    )
    return y


def channel_layernorm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Plain PyTorch reference, computed in float32 and cast back."""
    xf = x.float()
    mu = xf.mean(dim=1, keepdim=True)
    var = ((xf - mu) ** 2).mean(dim=1, keepdim=True)
    y = (xf - mu) / torch.sqrt(var + eps) * weight.reshape(1, -1, 1).float() + bias.reshape(1, -1, 1).float()
    return y.to(x.dtype)
