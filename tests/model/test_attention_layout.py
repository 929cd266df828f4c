"""Attention layout: q / k / v reach scaled_dot_product_attention contiguous, so a fused (flash)
kernel can run instead of the MATH path that materialises (B, heads, T, T) float32 scores."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from mse_rt.model.layers import downsample_mask
from mse_rt.model.mse_block import MaskedMHCA


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_attention_runs_on_the_flash_kernel_and_matches_math(stride):
    torch.manual_seed(0)
    attn = MaskedMHCA(64, 4).eval()
    B, T = 2, 96
    full = torch.zeros(B, 1, T * stride, dtype=torch.bool)
    full[0, :, :70 * stride] = True
    full[1, :, :T * stride] = True
    mask = downsample_mask(full, stride)  # strided view in the model: must not reach SDPA as one
    x = torch.randn(B, 64, T)
    with torch.no_grad():
        with sdpa_kernel([SDPBackend.MATH]):
            ref, _ = attn(x, mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns before raising "No available kernel"
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                got, _ = attn(x, mask)  # raises RuntimeError when the layout rules flash out
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_downsampled_mask_is_contiguous():
    m = torch.ones(3, 1, 64, dtype=torch.bool)
    assert downsample_mask(m, 2).is_contiguous() and downsample_mask(m, 2).shape == (3, 1, 32)
