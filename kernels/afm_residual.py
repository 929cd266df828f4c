"""Fused AFM stage 2 + residual of one MSE block (docs/spec/model.md, section 2, steps 7-8).

    y = x * am + s_out * (dw3 * out1 + dw4 * ln(x) + dw5 * attn)

x, out1, attn (B, C, T); am (B, T) the block's mask (float 0/1); s_out the AffineDropPath scale
(C,) (ones when the block has none); ln(x) recomputed from x and the step statistics of stage 1
(never stored). One elementwise pass: reads x, out1, attn once, writes y once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mse_rt.errors import InputError

from ._common import block_size, check_int32_slices, check_tensor


@triton.jit
def _afm_residual_kernel(
    x_ptr, out1_ptr, attn_ptr, mean_ptr, rstd_ptr, am_ptr, lnw_ptr, lnb_ptr, s_ptr, dw_ptr, y_ptr,
    C, T,
    sxb, sxc, sxt, s1b, s1c, s1t, sab, sac, sat, syb, syc, syt,
    BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # batch offsets in int64: B * C * T may exceed 2^31
    pid_c = tl.program_id(1)
    pid_t = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cmask = c < C
    tmask = t < T
    m = cmask[:, None] & tmask[None, :]
    x = tl.load(x_ptr + pid_b * sxb + c[:, None] * sxc + t[None, :] * sxt, mask=m, other=0.0).to(tl.float32)
    o1 = tl.load(out1_ptr + pid_b * s1b + c[:, None] * s1c + t[None, :] * s1t, mask=m, other=0.0).to(tl.float32)
    at = tl.load(attn_ptr + pid_b * sab + c[:, None] * sac + t[None, :] * sat, mask=m, other=0.0).to(tl.float32)
    mu = tl.load(mean_ptr + pid_b * T + t, mask=tmask, other=0.0)
    rs = tl.load(rstd_ptr + pid_b * T + t, mask=tmask, other=0.0)
    am = tl.load(am_ptr + pid_b * T + t, mask=tmask, other=0.0)
    lnw = tl.load(lnw_ptr + c, mask=cmask, other=0.0)
    lnb = tl.load(lnb_ptr + c, mask=cmask, other=0.0)
    s = tl.load(s_ptr + c, mask=cmask, other=0.0)
    ln = (x - mu[None, :]) * rs[None, :] * lnw[:, None] + lnb[:, None]
    dw3 = tl.load(dw_ptr + 3)
    dw4 = tl.load(dw_ptr + 4)
    dw5 = tl.load(dw_ptr + 5)
    y = x * am[None, :] + s[:, None] * (dw3 * o1 + dw4 * ln + dw5 * at)
    tl.store(y_ptr + pid_b * syb + c[:, None] * syc + t[None, :] * syt, y.to(y_ptr.dtype.element_ty), mask=m)


def afm_residual(x: torch.Tensor, out1: torch.Tensor, attn: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                 mask: torch.Tensor, packed: dict, s_out: torch.Tensor, block_c: int | None = None,
                 block_t: int | None = None) -> torch.Tensor:
    """Fused stage 2. x / out1 / attn (B, C, T) same dtype; mean / rstd (B, T) float32 from stage 1;
    mask (B, 1, T) or (B, T) bool; ``packed`` from :func:`ldm_afm.pack_block_weights`; s_out (C,)
    -> y (B, C, T) in x's dtype."""
    check_tensor("x", x, 3)
    check_tensor("out1", out1, 3, device=x.device)
    check_tensor("attn", attn, 3, device=x.device)
    if out1.shape != x.shape or attn.shape != x.shape:
        raise InputError(f"x {tuple(x.shape)}, out1 {tuple(out1.shape)}, attn {tuple(attn.shape)} must match")
    B, C, T = x.shape
    am = mask.reshape(B, T).to(torch.float32).contiguous()
    if mean.shape != (B, T) or rstd.shape != (B, T):
        raise InputError(f"mean / rstd must be (B, T) = {(B, T)}")
    check_int32_slices("x", x)
    y = torch.empty_like(x)
    block_c, block_t = block_size(32, 256, block_c), block_size(64, 512, block_t)
    grid = (B, triton.cdiv(C, block_c), triton.cdiv(T, block_t))
    _afm_residual_kernel[grid](
        x, out1, attn, mean, rstd, am, packed["ln_w"], packed["ln_b"], s_out.reshape(-1).float().contiguous(),
        packed["dw"], y, C, T,
        x.stride(0), x.stride(1), x.stride(2), out1.stride(0), out1.stride(1), out1.stride(2),
        attn.stride(0), attn.stride(1), attn.stride(2), y.stride(0), y.stride(1), y.stride(2),
        BLOCK_C=block_c, BLOCK_T=block_t,
    )
    return y


def afm_residual_ref(x: torch.Tensor, out1: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor, block) -> torch.Tensor:
    """Plain PyTorch reference in float32: steps 7-8 of the eager block."""
    with torch.no_grad():
        xf = x.float()
        dw = block.dynamic_weight.float()
        y = dw[3] * out1.float() + dw[4] * block.ln(xf) + dw[5] * attn.float()
        return xf * mask.reshape(x.shape[0], 1, -1).float() + block.drop_path_out(y)
