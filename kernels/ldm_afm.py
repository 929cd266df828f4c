"""Fused LDM + AFM stage 1 of one MSE block (docs/spec/model.md, section 2, steps 3-5).

From x (B, C, T) (after the block's optional max-pool):

    ln   = LayerNorm_C(x)                               (block.ln)
    psi  = dwconv_ks(ln), w = dwconv_ks(ln), kw = dwconv_up(ln), fc = dwconv_1(ln)   (zero padded)
    phi  = relu(global_fc(mean_T(ln)))                  (mean over all T, padding included)
    out1 = dw0 * fc * phi + dw1 * (w + kw) * psi + dw2 * ln

Two passes, so the bytes moved stay near 2 reads of x + 1 write of out1 instead of the ~15
full-tensor reads and writes of the eager chain:
1. ``_ln_stats_kernel``, one program per (b, T block): per-step mean / rstd over C (float32) and
   per-channel partial sums of ln over the block (B, nT, C) for the global mean;
2. ``_ldm_afm_kernel``, one program per (b, C block, T block): reduces the partials to phi,
   recomputes ln at the KMAX taps around each step from x and the step statistics (never
   written), runs the three depthwise convs with weights zero-padded to KMAX taps, and writes out1.
The statistics are returned so that stage 2 (:mod:`afm_residual`) recomputes ln the same way.
GPU timing: see benchmarks/gpu_check.py (not yet measured on a GPU; no device was lent).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mse_rt.errors import InputError

from ._common import block_size, check_int32_slices, check_tensor
from .channel_layernorm import channel_mean_rstd

# Warps of the main stage-1 kernel: see the register table in the module docstring.
LDM_AFM_NUM_WARPS = 8


@triton.jit
def _ln_stats_kernel(
    x_ptr, lnw_ptr, lnb_ptr, mean_ptr, rstd_ptr, part_ptr,
    C, T, n_tb,
    sxb, sxc, sxt,
    eps,
    BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_t = tl.program_id(1)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = t < T
    mean, rstd = channel_mean_rstd(x_ptr, pid_b * sxb, C, t, tmask, sxc, sxt, eps, BLOCK_C, BLOCK_T)
    tl.store(mean_ptr + pid_b * T + t, mean, mask=tmask)
    tl.store(rstd_ptr + pid_b * T + t, rstd, mask=tmask)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        m = cmask[:, None] & tmask[None, :]
        x = tl.load(x_ptr + pid_b * sxb + c[:, None] * sxc + t[None, :] * sxt, mask=m, other=0.0).to(tl.float32)
        w = tl.load(lnw_ptr + c, mask=cmask, other=0.0)
        b = tl.load(lnb_ptr + c, mask=cmask, other=0.0)
        ln = (x - mean[None, :]) * rstd[None, :] * w[:, None] + b[:, None]
        part = tl.sum(tl.where(m, ln, 0.0), axis=1)
        tl.store(part_ptr + (pid_b * n_tb + pid_t) * C + c, part, mask=cmask)


@triton.jit
def _phi_kernel(
    part_ptr, g_w_ptr, g_b_ptr, phi_ptr,
    C, T, n_tb,
    BLOCK_C: tl.constexpr, BLOCK_NT: tl.constexpr,
):
    # global gate once per (b, C block): phi = relu(g_w * mean_T(ln) + g_b) from the partial sums
    pid_b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    tsum = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for j0 in range(0, n_tb, BLOCK_NT):
        j = j0 + tl.arange(0, BLOCK_NT)
        pm = (j[:, None] < n_tb) & cmask[None, :]
        tsum += tl.sum(tl.load(part_ptr + (pid_b * n_tb + j[:, None]) * C + c[None, :], mask=pm, other=0.0), axis=0)
    phi = tl.maximum(tl.load(g_w_ptr + c, mask=cmask, other=0.0) * (tsum / T)
                     + tl.load(g_b_ptr + c, mask=cmask, other=0.0), 0.0)
    tl.store(phi_ptr + pid_b * C + c, phi, mask=cmask)


@triton.jit
def _ldm_afm_kernel(
    x_ptr, mean_ptr, rstd_ptr, phi_ptr,
    lnw_ptr, lnb_ptr, psi_w_ptr, psi_b_ptr, fc_w_ptr, fc_b_ptr, wkw_w_ptr, wkw_b_ptr, dw_ptr, out_ptr,
    C, T,
    sxb, sxc, sxt, sob, soc, sot,
    KMAX: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # batch offsets in int64: B * C * T may exceed 2^31
    pid_c = tl.program_id(1)
    pid_t = tl.program_id(2)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = t < T
    x_base = x_ptr + pid_b * sxb
    phi = tl.load(phi_ptr + pid_b * C + c, mask=cmask, other=0.0)
    lnw = tl.load(lnw_ptr + c, mask=cmask, other=0.0)
    lnb = tl.load(lnb_ptr + c, mask=cmask, other=0.0)
    # two accumulators: psi and w + kw (the two depthwise convs of one input summed tap by tap:
    # one conv with the summed taps; a third accumulator cost ~60 registers per thread)
    acc_psi = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    acc_wkw = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    PAD: tl.constexpr = KMAX // 2
    # A dynamic loop over the taps, not tl.static_range: fully unrolled, the compiler hoists all
    # KMAX tile loads ahead of the math (255 registers and spills at KMAX 21, sm_90).
    for k in range(KMAX):
        pos = t + (k - PAD)
        pmask = (pos >= 0) & (pos < T)
        m = cmask[:, None] & pmask[None, :]
        x = tl.load(x_base + c[:, None] * sxc + pos[None, :] * sxt, mask=m, other=0.0).to(tl.float32)
        mu = tl.load(mean_ptr + pid_b * T + pos, mask=pmask, other=0.0)
        rs = tl.load(rstd_ptr + pid_b * T + pos, mask=pmask, other=0.0)
        ln = tl.where(m, (x - mu[None, :]) * rs[None, :] * lnw[:, None] + lnb[:, None], 0.0)  # zero padding
        acc_psi += tl.load(psi_w_ptr + c * KMAX + k, mask=cmask, other=0.0)[:, None] * ln
        acc_wkw += tl.load(wkw_w_ptr + c * KMAX + k, mask=cmask, other=0.0)[:, None] * ln
    # the centre tap again (an L1 / L2 hit) for the fc and identity terms
    mc = cmask[:, None] & tmask[None, :]
    xc = tl.load(x_base + c[:, None] * sxc + t[None, :] * sxt, mask=mc, other=0.0).to(tl.float32)
    mu_c = tl.load(mean_ptr + pid_b * T + t, mask=tmask, other=0.0)
    rs_c = tl.load(rstd_ptr + pid_b * T + t, mask=tmask, other=0.0)
    ln_c = tl.where(mc, (xc - mu_c[None, :]) * rs_c[None, :] * lnw[:, None] + lnb[:, None], 0.0)
    psi = acc_psi + tl.load(psi_b_ptr + c, mask=cmask, other=0.0)[:, None]
    w_kw = acc_wkw + tl.load(wkw_b_ptr + c, mask=cmask, other=0.0)[:, None]
    fc = tl.load(fc_w_ptr + c, mask=cmask, other=0.0)[:, None] * ln_c + tl.load(fc_b_ptr + c, mask=cmask, other=0.0)[:, None]
    dw0 = tl.load(dw_ptr + 0)
    dw1 = tl.load(dw_ptr + 1)
    dw2 = tl.load(dw_ptr + 2)
    out1 = dw0 * fc * phi[:, None] + dw1 * w_kw * psi + dw2 * ln_c
    om = cmask[:, None] & tmask[None, :]
    tl.store(out_ptr + pid_b * sob + c[:, None] * soc + t[None, :] * sot, out1.to(out_ptr.dtype.element_ty), mask=om)


def _taps(w: torch.Tensor, kmax: int) -> torch.Tensor:
    """Depthwise conv weight (C, 1, k) -> (C, KMAX) float32, centred, zero elsewhere."""
    C, _, k = w.shape
    out = torch.zeros(C, kmax, dtype=torch.float32, device=w.device)
    off = kmax // 2 - k // 2
    out[:, off:off + k] = w[:, 0, :].float()
    return out


def pack_block_weights(block) -> dict:
    """The float32 weights a launch needs, from an :class:`mse_rt.model.MSEBlock` (cache per block)."""
    kmax = max(block.kernel_size, block.large_kernel_size)
    f = lambda t: t.detach().reshape(-1).float().contiguous()  # noqa: E731
    return {
        "kmax": kmax,
        "ln_w": f(block.ln.weight), "ln_b": f(block.ln.bias), "eps": block.ln.eps,
        "psi_w": _taps(block.psi.weight.detach(), kmax), "psi_b": f(block.psi.bias),
        "fc_w": f(block.fc.weight), "fc_b": f(block.fc.bias),
        # convw and convkw read the same input: one conv with the summed (zero-padded) taps
        "wkw_w": (_taps(block.convw.weight.detach(), kmax) + _taps(block.convkw.weight.detach(), kmax)).contiguous(),
        "wkw_b": (f(block.convw.bias) + f(block.convkw.bias)).contiguous(),
        "g_w": f(block.global_fc.weight), "g_b": f(block.global_fc.bias),
        "dw": f(block.dynamic_weight),
    }


def ldm_afm_stage1(x: torch.Tensor, packed: dict, block_c: int | None = None, block_t: int | None = None):
    """Fused stage 1. x (B, C, T) fp32/fp16/bf16 (any strides), ``packed`` from
    :func:`pack_block_weights` on x's device -> (out1 (B, C, T) in x's dtype, mean (B, T), rstd (B, T)
    float32 step statistics of block.ln)."""
    check_tensor("x", x, 3)
    B, C, T = x.shape
    if packed["ln_w"].numel() != C:
        raise InputError(f"x has {C} channels, the block's weights {packed['ln_w'].numel()}")
    if packed["ln_w"].device != x.device:
        raise InputError(f"block weights on {packed['ln_w'].device}, x on {x.device}")
    if T == 0:
        raise InputError("x has T = 0 steps")
    check_int32_slices("x", x)
    block_c, block_t = block_size(32, 256, block_c), block_size(64, 512, block_t)
    n_tb = triton.cdiv(T, block_t)
    mean = torch.empty(B, T, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    part = torch.empty(B, n_tb, C, dtype=torch.float32, device=x.device)
    _ln_stats_kernel[(B, n_tb)](
        x, packed["ln_w"], packed["ln_b"], mean, rstd, part, C, T, n_tb,
        x.stride(0), x.stride(1), x.stride(2), float(packed["eps"]), BLOCK_C=block_size(64, 256), BLOCK_T=block_t,
    )
    # the gate's mean over T, reduced once per (b, C) instead of by every (C, T) program
    phi = torch.empty(B, C, dtype=torch.float32, device=x.device)
    phi_block_c = block_size(64, 256)
    _phi_kernel[(B, triton.cdiv(C, phi_block_c))](
        part, packed["g_w"], packed["g_b"], phi, C, T, n_tb, BLOCK_C=phi_block_c, BLOCK_NT=16,
    )
    out = torch.empty_like(x)
    _ldm_afm_kernel[(B, triton.cdiv(C, block_c), n_tb)](
        x, mean, rstd, phi, packed["ln_w"], packed["ln_b"], packed["psi_w"], packed["psi_b"],
        packed["fc_w"], packed["fc_b"], packed["wkw_w"], packed["wkw_b"], packed["dw"], out, C, T,
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        KMAX=packed["kmax"], BLOCK_C=block_c, BLOCK_T=block_t, num_warps=LDM_AFM_NUM_WARPS,
    )
    return out, mean, rstd


def ldm_afm_stage1_ref(x: torch.Tensor, block) -> torch.Tensor:
    """Plain PyTorch reference (the eager block's ops, in float32): out1 of steps 3-5."""
    xf = x.float()
    with torch.no_grad():
        out = block.ln.float()(xf) if xf.dtype != block.ln.weight.dtype else block.ln(xf)
        dw = block.dynamic_weight.float()
        psi = block.psi(out)
        fc = block.fc(out)
        w_kw = block.convw(out) + block.convkw(out)
        phi = torch.relu(block.global_fc(out.mean(dim=-1, keepdim=True)))
        return dw[0] * fc * phi + dw[1] * w_kw * psi + dw[2] * out
