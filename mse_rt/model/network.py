"""The full MSE-TAD network with the reference's module and parameter names (docs/spec/model.md,
section 4): embedding, stem and branch MSE blocks, identity neck, classification / boundary /
regression heads.

Shapes: B batch, C channels, T time steps on the feature grid, K classes, L pyramid levels.
The heads evaluate all pyramid levels in one call on a zero-separated concatenation, which is
exact because every head op is a zero-padded conv, a per-step LayerNorm or an activation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import fpn_strides, mse_win_sizes
from .layers import LayerNorm, MaskedConv1D, Scale, tracing
from .mse_block import MSEBlock


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
        as one conv per layer instead of one per level (docs/decisions.md#joined-heads).
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
            # bf16 instead of int8 (docs/decisions.md#joined-heads)
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
