"""The Multi-granularity Semantic Enhancement block and its global attention (docs/spec/model.md,
sections 2 and 3).

Shapes: (B, C, T) tensors, (B, 1, T) boolean masks. Attention runs through
``scaled_dot_product_attention`` with a boolean key mask in eager mode and as an explicit softmax
with a finite additive key mask in traced (exported) graphs; both are the reference's math.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MASK_NEG, AffineDropPath, LayerNorm, MaskedConv1D, downsample_mask, tracing


class MaskedMHCA(nn.Module):
    """Masked multi-head conv attention (docs/spec/model.md, section 3): global T x T attention over valid keys.

    ``forward(x (B, C, T), mask (B, 1, T) bool) -> (out (B, C, T), mask)``; padded queries give 0.
    """

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.n_channels = n_embd // n_head
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_conv", MaskedConv1D(n_embd, n_embd, 3, groups=n_embd, bias=False))
            setattr(self, f"{name}_norm", LayerNorm(n_embd))
        self.key = nn.Conv1d(n_embd, n_embd, 1)
        self.query = nn.Conv1d(n_embd, n_embd, 1)
        self.value = nn.Conv1d(n_embd, n_embd, 1)
        self.proj = nn.Conv1d(n_embd, n_embd, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tracing():
            return self._forward_export(x, mask)
        B, C, T = x.shape
        q = self.query(self.query_norm(self.query_conv(x, mask)[0]))
        k = self.key(self.key_norm(self.key_conv(x, mask)[0]))
        v = self.value(self.value_norm(self.value_conv(x, mask)[0]))
        # (B, C, T) -> (B, heads, T, C / heads), contiguous: with a last-dim stride of T (a plain
        # transposed view) scaled_dot_product_attention can only take its MATH path, which
        # materialises (B, heads, T, T) float32 scores (24 GB per intermediate at B = 8, T = 13824);
        # contiguous q / k / v (and key mask) let it pick the flash kernel (CPU and GPU).
        q, k, v = (t.view(B, self.n_head, self.n_channels, T).transpose(2, 3).contiguous() for t in (q, k, v))
        # Key mask broadcast over heads and queries. Step 0 is always valid (T0 >= 1), so no row
        # is fully masked and softmax never sees all -inf. Masked keys get weight exactly 0, so
        # the reference's extra ``v * mask`` changes nothing and is skipped.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, None, :].contiguous())
        out = out.transpose(2, 3).reshape(B, C, T)
        return self.proj(out) * mask.to(out.dtype), mask

    def _forward_export(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The traced (ONNX) form of :meth:`forward`, same math: explicit softmax attention with a
        finite additive key mask, softmax in float32 (also in fp16 graphs).

        Laid out so that no attention product needs a transposed left operand: q and v come out
        of their 1x1 convs time first (the conv weights applied as a linear layer: (B, T, C) ->
        (B, heads, T, C / heads)), k stays channels first, which is already K^T (B, heads, C / heads,
        T). A transposed-A MatMul keeps OpenVINO's CPU plugin from fusing MatMul-Softmax-MatMul
        into its one MHA kernel (scores kept in cache); with this layout it does
        (docs/decisions.md#attention-layout).
        """
        B, C, T = x.shape
        H, D = self.n_head, self.n_channels

        def time_first(conv: nn.Conv1d, y: torch.Tensor) -> torch.Tensor:  # 1x1 conv, (B, C, T) -> (B, T, C)
            return F.linear(y.transpose(1, 2), conv.weight[:, :, 0], conv.bias)

        q = time_first(self.query, self.query_norm(self.query_conv(x, mask)[0])).view(B, T, H, D).transpose(1, 2)
        k_t = self.key(self.key_norm(self.key_conv(x, mask)[0])).view(B, H, D, T)
        v = time_first(self.value, self.value_norm(self.value_conv(x, mask)[0])).view(B, T, H, D).transpose(1, 2)
        bias = (~mask[:, :, None, :]).to(torch.float32) * MASK_NEG
        # the 1/sqrt(d) scale applied to q (T x d) rather than to the T x T scores
        scores = ((q * (1.0 / math.sqrt(D))) @ k_t).float() + bias
        out = torch.softmax(scores, dim=-1).to(v.dtype) @ v  # (B, heads, T, C / heads)
        out = self.proj(out.transpose(1, 2).reshape(B, T, C).transpose(1, 2))
        return out * mask.to(out.dtype), mask


def _depthwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``nn.Conv1d`` (groups = C), x (B, C, T) -> (B, C, T).

    In traced graphs a kernel-1 depthwise conv (psi / convw of kernel-1 blocks, every block's fc)
    is written as what it computes, a per-channel scale and shift ``x * w + b``: the element-wise
    form fuses with the AFM arithmetic around it, where OpenVINO ran each one as a
    GroupConvolution with a layout reorder on either side (docs/decisions.md#depthwise-scale-shift).
    The eager path keeps the conv module (same math). Not used for global_fc on the (B, C, 1)
    mean: OpenVINO 2026.4 (CPU, fp32) computes ``relu(mean * w + b)`` wrongly at B > 1 (the
    GroupConvolution form is right; ``test_openvino_split_batch_matches_eager`` catches it).
    """
    if (tracing() and conv.kernel_size == (1,) and conv.stride == (1,) and conv.padding == (0,)
            and conv.groups == conv.in_channels == conv.out_channels):
        y = x * conv.weight[:, 0, 0].view(1, -1, 1)
        return y if conv.bias is None else y + conv.bias.view(1, -1, 1)
    return conv(x)


class MSEBlock(nn.Module):
    """Multi-granularity Semantic Enhancement block (docs/spec/model.md, section 2): LDM + GTM + AFM + MLP.

    ``forward(x (B, C, T), mask (B, 1, T)) -> (y (B, C, T // s), mask (B, 1, T // s))``.
    The output is not masked: padded steps carry values that later blocks see (reference).
    """

    def __init__(self, n_embd: int, n_head: int, kernel_size: int, stride: int, k: float,
                 n_hidden: int, path_pdrop: float = 0.0) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"MSE kernel size must be odd, got {kernel_size}")
        up = round((kernel_size + 1) * k)
        up = up + 1 if up % 2 == 0 else up
        self.kernel_size = kernel_size
        self.large_kernel_size = up
        self.stride = stride
        self.ln = LayerNorm(n_embd)
        self.gn = nn.GroupNorm(16, n_embd)
        self.psi = nn.Conv1d(n_embd, n_embd, kernel_size, padding=kernel_size // 2, groups=n_embd)
        self.fc = nn.Conv1d(n_embd, n_embd, 1, groups=n_embd)
        self.convw = nn.Conv1d(n_embd, n_embd, kernel_size, padding=kernel_size // 2, groups=n_embd)
        self.convkw = nn.Conv1d(n_embd, n_embd, up, padding=up // 2, groups=n_embd)
        self.global_fc = nn.Conv1d(n_embd, n_embd, 1, groups=n_embd)
        self.attn = MaskedMHCA(n_embd, n_head)
        self.downsample = nn.MaxPool1d(stride + 1, stride, (stride + 1) // 2) if stride > 1 else nn.Identity()
        self.mlp = nn.Sequential(nn.Conv1d(n_embd, n_hidden, 1), nn.GELU(), nn.Conv1d(n_hidden, n_embd, 1))
        if path_pdrop > 0.0:
            self.drop_path_out = AffineDropPath(n_embd, path_pdrop)
            self.drop_path_mlp = AffineDropPath(n_embd, path_pdrop)
            self.drop_path_attn = AffineDropPath(n_embd, path_pdrop)  # key exists, never used (reference)
        else:
            self.drop_path_out = nn.Identity()
            self.drop_path_mlp = nn.Identity()
        self.dynamic_weight = nn.Parameter(torch.ones(6))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.downsample(x)
        mask = downsample_mask(mask, self.stride)
        dw = self.dynamic_weight
        out = self.ln(x)
        # LDM: multi-scale depthwise convs; GTM gate from the mean over all T (padding included)
        psi = _depthwise(self.psi, out)
        fc = _depthwise(self.fc, out)
        w_kw = _depthwise(self.convw, out) + self.convkw(out)
        phi = torch.relu(self.global_fc(out.mean(dim=-1, keepdim=True)))
        # AFM stage 1, GTM, AFM stage 2
        out1 = dw[0] * fc * phi + dw[1] * w_kw * psi + dw[2] * out
        attn, _ = self.attn(self.ln(out1), mask)
        y = dw[3] * out1 + dw[4] * out + dw[5] * attn
        y = x * mask.to(x.dtype) + self.drop_path_out(y)
        if y.dtype == torch.float32:
            normed = self.gn(y)
        else:  # reduced-precision graphs keep GroupNorm statistics in float32
            normed = F.group_norm(y.float(), self.gn.num_groups, self.gn.weight.float(), self.gn.bias.float(),
                                  self.gn.eps).to(y.dtype)
        y = y + self.drop_path_mlp(self.mlp(normed))
        return y, mask
