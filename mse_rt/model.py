"""The MSE-TAD network in plain PyTorch, with the reference's module and parameter names.

Shapes: B batch, C channels, T time steps on the feature grid, K classes, L pyramid levels.
Inside the network tensors are (B, C, T); masks are (B, 1, T) booleans, True = valid step.

Differences from the reference code that do not change its numbers (golden tests hold):
- attention runs through ``scaled_dot_product_attention`` with a boolean key mask;
- masks stay boolean and "nearest" downsampling by an integer stride is a strided slice
  (``mask[..., ::s]``), which is what ``F.interpolate(mode="nearest")`` selects for T % s == 0;
- the heads evaluate all pyramid levels in one call on a zero-separated concatenation, which is
  exact because every head op is a zero-padded conv, a per-step LayerNorm or an activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import fpn_strides, mse_win_sizes


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


class MaskedMHCA(nn.Module):
    """Masked multi-head conv attention (SPEC section 5): global T x T attention over valid keys.

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
        into its one MHA kernel (scores kept in cache); with this layout it does: an int8 attention
        layer at T = 2304 takes 31 instead of 40 ms (bf16 48 vs 52), ONNX Runtime fp32 unchanged.
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
    GroupConvolution with a layout reorder on either side (int8 pass at T = 2304: 0.97-0.98x in
    two one-process A/B runs). The eager path keeps the conv module (same math). Not used for
    global_fc on the (B, C, 1) mean: OpenVINO 2026.4 (CPU, fp32) computes ``relu(mean * w + b)``
    wrongly at B > 1 (cls_prob off by 0.23 on golden videos; the GroupConvolution form is right).
    """
    if (tracing() and conv.kernel_size == (1,) and conv.stride == (1,) and conv.padding == (0,)
            and conv.groups == conv.in_channels == conv.out_channels):
        y = x * conv.weight[:, 0, 0].view(1, -1, 1)
        return y if conv.bias is None else y + conv.bias.view(1, -1, 1)
    return conv(x)


class MSEBlock(nn.Module):
    """Multi-granularity Semantic Enhancement block (SPEC section 4): LDM + GTM + AFM + MLP.

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


def sinusoid_position_table(n_position: int, d_hid: int) -> torch.Tensor:
    """Sinusoid table (1, C, T): sin on even, cos on odd channels, angle pos / 10000^(2(c//2)/C).

    Computed in float64 then cast, as the reference builds it with numpy.
    """
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    ch = torch.arange(d_hid, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(ch, 2, rounding_mode="floor") / d_hid)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.to(torch.float32).T.unsqueeze(0).contiguous()


class MSEBackbone(nn.Module):
    """Embedding convs, optional absolute PE, stem MSE blocks and the strided branch.

    ``forward(x (B, Cin, T), mask (B, 1, T)) -> (feats, masks)``: L tensors (B, C, T / 2^l).
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        m = cfg["model"]
        arch = m["backbone_arch"]
        c = m["embd_dim"]
        self.max_len = m["max_seq_len"]
        self.use_abs_pe = m["use_abs_pe"]
        if self.use_abs_pe:
            table = sinusoid_position_table(self.max_len, c) / (c ** 0.5)
            self.register_buffer("pos_embd", table, persistent=False)
            # the table zero-padded to the longest input, so a traced graph can always slice T
            # columns and choose slice vs interpolation with a graph-level where()
            longest = max(int(m["max_seq_len"] * m["max_buffer_len_factor"]), self.max_len)
            self.register_buffer("pos_embd_padded", F.pad(table, (0, longest - self.max_len)), persistent=False)
        self.embd = nn.ModuleList()
        self.embd_norm = nn.ModuleList()
        for i in range(arch[0]):
            cin = m["input_dim"] if i == 0 else c
            self.embd.append(MaskedConv1D(cin, c, m["embd_kernel_size"], bias=not m["embd_with_ln"]))
            self.embd_norm.append(LayerNorm(c) if m["embd_with_ln"] else nn.Identity())
        wins = mse_win_sizes(cfg)
        self.stem = nn.ModuleList(
            MSEBlock(c, m["n_head"], 1, 1, m["k"], m["mse_mlp_dim"]) for _ in range(arch[1])
        )
        self.branch = nn.ModuleList(
            MSEBlock(c, m["n_head"], wins[1 + i], m["scale_factor"], m["k"], m["mse_mlp_dim"],
                     path_pdrop=cfg["train_cfg"]["droppath"])
            for i in range(arch[2])
        )

    def position_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """PE for the length T of x (B, C, T): (1, C, T), interpolated when T >= max_seq_len
        (reference rule), else the first T columns."""
        T = x.shape[-1]
        if tracing():
            # both branches in the graph, chosen by the traced length (not a constant of the trace)
            interp = F.interpolate(self.pos_embd, size=T, mode="linear", align_corners=False)
            sliced = self.pos_embd_padded[:, :, :T]
            return torch.where(torch._shape_as_tensor(x)[-1] >= self.max_len, interp, sliced)
        if T >= self.max_len:
            return F.interpolate(self.pos_embd, size=T, mode="linear", align_corners=False)
        return self.pos_embd[:, :, :T]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = torch.relu(norm(x))
        if self.use_abs_pe:
            x = x + self.position_embedding(x) * mask.to(x.dtype)
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class IdentityNeck(nn.Module):
    """The "identity" neck: a LayerNorm per level (``fpn_norms.l``) when fpn_with_ln."""

    def __init__(self, n_levels: int, channels: int, with_ln: bool) -> None:
        super().__init__()
        self.fpn_norms = nn.ModuleList(LayerNorm(channels) if with_ln else nn.Identity() for _ in range(n_levels))

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> tuple[list, list]:
        return [norm(f) for norm, f in zip(self.fpn_norms, feats)], masks


class ConvHead(nn.Module):
    """Shared head trunk (MaskedConv1D + LayerNorm + ReLU) x (num_layers - 1), then an output conv.

    ``head.i``/``norm.i`` are the trunk, ``out_name`` (``cls_head`` or ``offset_head``) the last
    conv. Operates on one (B, C, T) tensor with its (B, 1, T) mask.
    """

    def __init__(self, cin: int, feat_dim: int, n_out: int, kernel_size: int, num_layers: int,
                 with_ln: bool, out_name: str) -> None:
        super().__init__()
        self.head = nn.ModuleList()
        self.norm = nn.ModuleList()
        for i in range(num_layers - 1):
            self.head.append(MaskedConv1D(cin if i == 0 else feat_dim, feat_dim, kernel_size, bias=not with_ln))
            self.norm.append(LayerNorm(feat_dim) if with_ln else nn.Identity())
        self.out_name = out_name
        setattr(self, out_name, MaskedConv1D(feat_dim, n_out, kernel_size))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep`` (1, 1, T) zeroes separator steps between concatenated levels after each layer
        (LayerNorm turns a zero step into ``relu(bias)``, which a neighbour conv would read)."""
        for conv, norm in zip(self.head, self.norm):
            x = torch.relu(norm(conv(x, mask)[0]))
            if keep is not None:
                x = x * keep
        return getattr(self, self.out_name)(x, mask)[0]


class RegHead(ConvHead):
    """Regression head: trunk + ``offset_head`` to 2 * (num_bins + 1) channels, then per level
    ``relu(scale[l] * x)``."""

    def __init__(self, cin: int, feat_dim: int, n_levels: int, kernel_size: int, num_layers: int,
                 with_ln: bool, num_bins: int) -> None:
        super().__init__(cin, feat_dim, 2 * (num_bins + 1), kernel_size, num_layers, with_ln, "offset_head")
        self.scale = nn.ModuleList(Scale() for _ in range(n_levels))


class MSETAD(nn.Module):
    """The full detector network: backbone, identity neck, cls / start / end / regression heads.

    ``forward(x (B, Cin, T), mask (B, 1, T) bool)`` returns a dict of per-level lists:
    ``cls_logits``, ``start_logits``, ``end_logits`` (B, K, T_l) (the last two only with the
    trident head), ``offsets`` (B, 2 * (num_bins + 1), T_l) after relu(scale * x), ``masks``
    (B, 1, T_l) and, with ``return_features``, ``feats`` (the backbone outputs, before the neck).
    All values are in feature-grid units of their level.
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        m = cfg["model"]
        self.cfg = cfg
        self.strides = fpn_strides(cfg)
        self.num_classes = m["num_classes"]
        self.num_bins = m["num_bins"]
        self.use_trident_head = m["use_trident_head"]
        n_levels = len(self.strides)
        self.backbone = MSEBackbone(cfg)
        self.neck = IdentityNeck(n_levels, m["fpn_dim"], m["fpn_with_ln"])
        head_args = dict(num_layers=m["head_num_layers"], with_ln=m["head_with_ln"])
        self.cls_head = ConvHead(m["fpn_dim"], m["head_dim"], self.num_classes, m["head_kernel_size"],
                                 out_name="cls_head", **head_args)
        prior = cfg["train_cfg"]["cls_prior_prob"]
        bias = -math.log((1 - prior) / prior)
        heads = [self.cls_head]
        if self.use_trident_head:
            self.start_head = ConvHead(m["fpn_dim"], m["head_dim"], self.num_classes, m["boudary_kernel_size"],
                                       out_name="cls_head", **head_args)
            self.end_head = ConvHead(m["fpn_dim"], m["head_dim"], self.num_classes, m["boudary_kernel_size"],
                                     out_name="cls_head", **head_args)
            heads += [self.start_head, self.end_head]
        for h in heads:
            nn.init.constant_(h.cls_head.conv.bias, bias)
        self.reg_head = RegHead(m["fpn_dim"], m["head_dim"], n_levels, m["head_kernel_size"],
                                num_bins=self.num_bins if self.use_trident_head else 0, **head_args)
        self._sep = max(m["head_kernel_size"], m["boudary_kernel_size"]) // 2

    def _concat_levels(self, feats: list[torch.Tensor], masks: list[torch.Tensor]):
        """Join levels along T with ``sep`` zero steps after every level but the last.

        Returns (feats (B, C, sum T_l + gaps), masks (B, 1, same), keep (1, 1, same) float with 0 on
        the gaps, or None without gaps), start index of each level). Exact: with the gaps held at
        zero every head conv sees the same zero padding at a level's ends as it would alone.
        Built from pads of the level tensors, so a traced graph keeps T dynamic: the heads run
        as one conv per layer instead of one per level (int8 OpenVINO at T = 2304: 384 -> 48 small
        nodes around the head convs).
        """
        sep, last = self._sep, len(feats) - 1
        if sep == 0 or last == 0:
            keep = None
            parts, mparts = feats, masks
        else:
            parts = [f if i == last else F.pad(f, (0, sep)) for i, f in enumerate(feats)]
            mparts = [mk if i == last else F.pad(mk, (0, sep)) for i, mk in enumerate(masks)]
            ones = [torch.ones_like(f[:1, :1]) for f in feats]
            keep = torch.cat([o if i == last else F.pad(o, (0, sep)) for i, o in enumerate(ones)], -1)
        starts, pos = [], 0
        for f in feats:
            starts.append(pos)
            pos = pos + f.shape[-1] + sep
        return torch.cat(parts, -1), torch.cat(mparts, -1), keep, starts

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_features: bool = False) -> dict:
        feats, masks = self.backbone(x, mask)
        out = self.forward_heads(*self.neck(feats, masks))
        if return_features:
            out["feats"] = feats
        return out

    def forward_heads(self, fpn_feats: list[torch.Tensor], fpn_masks: list[torch.Tensor]) -> dict:
        """All heads on all levels (see :meth:`forward` for the output dict)."""
        cat, cat_mask, keep, starts = self._concat_levels(fpn_feats, fpn_masks)
        if keep is not None and tracing():
            # a no-op on values (the gaps are zero already) that gives post-training quantizers
            # one tensor to quantize: without it NNCF put one FakeQuantize per level before the
            # pads, the levels' scales differed, and OpenVINO ran the four first head convs in
            # bf16 instead of int8 (16 instead of 4 ms each at T = 2304)
            cat = cat * keep
        lens = [f.shape[-1] for f in fpn_feats]

        def split(y: torch.Tensor) -> list[torch.Tensor]:
            return [y[..., s:s + n] for s, n in zip(starts, lens)]

        out = {"masks": fpn_masks, "cls_logits": split(self.cls_head(cat, cat_mask, keep))}
        if self.use_trident_head:
            # the reference detaches the features into the boundary heads (training only matters)
            detached = cat.detach()
            out["start_logits"] = split(self.start_head(detached, cat_mask, keep))
            out["end_logits"] = split(self.end_head(detached, cat_mask, keep))
        offsets = split(self.reg_head(cat, cat_mask, keep))
        out["offsets"] = [torch.relu(sc(o)) for sc, o in zip(self.reg_head.scale, offsets)]
        return out


def build_model(cfg: dict) -> MSETAD:
    """Build MSE-TAD from a config dict (see :func:`mse_rt.load_config`), in eval mode, float32."""
    return MSETAD(cfg).eval()


def build_random_model(cfg: dict, seed: int = 0, std: float = 0.02) -> MSETAD:
    """A model of this config with random N(0, std) conv / linear weights (benchmarks, exports of
    the published configs): realistic numbers of candidates without a checkpoint."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, std)
    return model
