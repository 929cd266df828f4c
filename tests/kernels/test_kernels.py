"""Triton kernels against their PyTorch references (Triton interpreter on CPU in CI).

Odd shapes on purpose: T = 1, prime T, channel counts that are not powers of two, every kernel
size the configs use (1, 3, 11, 15, 21 and the pairs they make), masks with padding, pooled
(stride 2) blocks.
"""

from __future__ import annotations

import pytest
import torch
from kernel_utils import TOL, assert_close_report, device

triton = pytest.importorskip("triton")

from mse_rt.errors import InputError  # noqa: E402
from mse_rt.kernels.afm_residual import afm_residual, afm_residual_ref  # noqa: E402
from mse_rt.kernels.channel_layernorm import channel_layernorm, channel_layernorm_ref  # noqa: E402
from mse_rt.kernels.ldm_afm import ldm_afm_stage1, ldm_afm_stage1_ref, pack_block_weights  # noqa: E402
from mse_rt.model.layers import downsample_mask  # noqa: E402
from mse_rt.model.mse_block import MSEBlock  # noqa: E402

DTYPES = list(TOL)


def _block(C, ks, k, stride=1, droppath=0.1, seed=0):
    torch.manual_seed(seed)
    b = MSEBlock(C, 4, ks, stride, k, 2 * C, path_pdrop=droppath).eval()
    with torch.no_grad():
        for p in b.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 3 and p.shape[0] == 1 else 0.0))
    return b.to(device())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,C,T", [(1, 20, 1), (2, 130, 37), (1, 64, 64)])
def test_channel_layernorm(B, C, T, dtype):
    g = torch.Generator().manual_seed(T)
    x = (torch.randn(B, C, T, generator=g) * 3 + 1).to(dtype).to(device())  # stays CPU under the interpreter
    w, b = torch.randn(C, generator=g).to(device()), torch.randn(C, generator=g).to(device())
    y = channel_layernorm(x, w, b)
    assert y.dtype == dtype
    assert_close_report(y, channel_layernorm_ref(x.float(), w, b), dtype, "channel_layernorm")


def test_channel_layernorm_strided_input():
    x = torch.randn(2, 37, 48, device=device()).transpose(1, 2)  # (2, 48, 37), non-contiguous
    w, b = torch.randn(48, device=device()), torch.randn(48, device=device())
    assert_close_report(channel_layernorm(x, w, b), channel_layernorm_ref(x, w, b), torch.float32, "strided")


@pytest.mark.parametrize("ks,k", [(1, 1.5), (1, 5.0), (3, 1.2), (11, 1.0), (15, 1.3)])  # up: 3, 11, 5, 13, 21
@pytest.mark.parametrize("B,C,T", [(1, 48, 1), (2, 80, 37), (1, 48, 131)])
def test_ldm_afm_stage1_fp32(B, C, T, ks, k):
    block = _block(C, ks, k)
    x = torch.randn(B, C, T, generator=torch.Generator().manual_seed(T)).to(device())
    out1, mean, rstd = ldm_afm_stage1(x, pack_block_weights(block))
    assert_close_report(out1, ldm_afm_stage1_ref(x, block), torch.float32, f"stage1 ks={ks} up={block.large_kernel_size}")
    mu = x.mean(1)
    assert_close_report(mean, mu, torch.float32, "mean")
    assert_close_report(rstd, torch.rsqrt(((x - mu[:, None]) ** 2).mean(1) + 1e-5), torch.float32, "rstd")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ldm_afm_stage1_low_precision(dtype):
    block = _block(48, 3, 1.2)
    x = torch.randn(2, 48, 37).to(dtype).to(device())
    out1, _, _ = ldm_afm_stage1(x, pack_block_weights(block))
    assert out1.dtype == dtype
    assert_close_report(out1, ldm_afm_stage1_ref(x.float(), block), dtype, "stage1 low precision")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("T,valid", [(1, 1), (37, 20), (64, 64)])
def test_afm_residual_with_padding_and_pooling(stride, T, valid):
    C = 48
    block = _block(C, 1 if stride == 1 else 3, 5.0 if stride == 1 else 1.2, stride=stride,
                   droppath=0.0 if stride == 1 else 0.1)
    g = torch.Generator().manual_seed(T)
    x0 = torch.randn(2, C, T * stride, generator=g).to(device())
    mask0 = (torch.arange(T * stride)[None, :] < torch.tensor([valid * stride, max(1, valid // 2)])[:, None])
    mask0 = mask0.unsqueeze(1).to(device())
    x = block.downsample(x0)  # the block's max-pool over the whole padded sequence
    mask = downsample_mask(mask0, stride)
    packed = pack_block_weights(block)
    out1, mean, rstd = ldm_afm_stage1(x, packed)
    with torch.no_grad():
        attn, _ = block.attn(block.ln(out1), mask)
    s_out = block.drop_path_out.scale if stride == 2 else torch.ones(C, device=device())
    y = afm_residual(x, out1, attn, mean, rstd, mask, packed, s_out)
    assert_close_report(y, afm_residual_ref(x, out1, attn, mask, block), torch.float32, "afm residual")
    # the fused pair equals the eager block up to the MLP (step 9 is plain torch in the backend)
    with torch.no_grad():
        full, _ = block(x0, mask0)
        eager_y = full - block.drop_path_mlp(block.mlp(block.gn(y)))
    assert_close_report(y, eager_y, torch.float32, "fused stages vs eager block")


def test_launcher_input_checks():
    block = _block(48, 1, 5.0)
    packed = pack_block_weights(block)
    d = device()
    with pytest.raises(InputError, match="expected 3 dims"):
        ldm_afm_stage1(torch.zeros(48, 10, device=d), packed)
    with pytest.raises(InputError, match="dtype torch.int64"):
        ldm_afm_stage1(torch.zeros(1, 48, 10, dtype=torch.int64, device=d), packed)
    with pytest.raises(InputError, match="x has 32 channels"):
        ldm_afm_stage1(torch.zeros(1, 32, 10, device=d), packed)
    with pytest.raises(InputError, match="weight / bias have"):
        channel_layernorm(torch.zeros(1, 8, 4, device=d), torch.ones(7, device=d), torch.zeros(7, device=d))
    x = torch.zeros(1, 48, 5, device=d)
    with pytest.raises(InputError, match="must match"):
        afm_residual(x, x, torch.zeros(1, 48, 6, device=d), torch.zeros(1, 5, device=d), torch.zeros(1, 5, device=d),
                     torch.ones(1, 5, device=d), packed, torch.ones(48, device=d))


def test_block_sizes_must_be_powers_of_two():
    from mse_rt import InputError
    from mse_rt.kernels.channel_layernorm import channel_layernorm

    x = torch.randn(1, 8, 5)
    w, b = torch.ones(8), torch.zeros(8)
    for bad in (24, 0, -4, 3):
        with pytest.raises(InputError, match="powers of two"):
            channel_layernorm(x, w, b, block_t=bad)
    torch.testing.assert_close(channel_layernorm(x, w, b, block_t=8, block_c=4),
                               torch.nn.functional.layer_norm(x.transpose(1, 2), (8,)).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)


def test_int32_index_guard():
    """One batch element beyond 2^31 elements is refused, not wrapped (meta tensors: no memory)."""
    from mse_rt import InputError
    from mse_rt.kernels._common import check_int32_slices
    from mse_rt.kernels.channel_layernorm import channel_layernorm

    check_int32_slices("x", torch.empty(4, 2**15, 2**15, device="meta"))  # 2^30 per element: fine
    big = torch.empty(1, 2**16, 2**15 + 1, device="meta")
    with pytest.raises(InputError, match="int32 indexing"):
        check_int32_slices("x", big)
    with pytest.raises(InputError, match="int32 indexing"):
        channel_layernorm(big, torch.ones(2**16, device="meta"), torch.zeros(2**16, device="meta"))
