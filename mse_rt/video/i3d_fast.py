"""The inference form of the I3D RGB backbone: same function as :class:`~mse_rt.video.i3d.InceptionI3d`, faster.

:class:`FastInceptionI3d` is built from a reference module: BatchNorm folded into the convolution
weights (float64 arithmetic, rounded once to float32), the three 1x1x1 convolutions of an
Inception block that read the same input fused into one, channels-last (N, T, H, W, C) memory,
1x1x1 convolutions as matrix products, the other convolutions through oneDNN with the ReLU fused
(eager only), and SAME padding expressed through the convolution / pooling padding arguments
wherever it is symmetric (no padded copies). Under graph capture (ONNX export, tracing) the
portable ops are recorded instead of the oneDNN calls and memory-layout changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .i3d import (
    BN_EPS,
    BRANCH_POOL,
    HEAD_POOL,
    LAYERS,
    ConvUnit,
    I3dBase,
    InceptionI3d,
    MixedBlock,
    max_pool_same_padded,
    pad_arg,
    same_padding,
    same_pads,
    static_sizes,
)

__all__ = ["FastInceptionI3d"]


def _folded(unit: ConvUnit) -> tuple[Tensor, Tensor]:
    """(weight, bias) of ``unit``'s conv with its BatchNorm folded in, computed in float64, rounded to float32.

    conv(x, w) * s + (beta - mean * s) with s = 1 / sqrt(var + eps) equals BatchNorm(conv(x, w)).
    """
    w = unit.conv.weight.detach().double()
    bn = unit.bn
    s = torch.rsqrt(bn.running_var.detach().double() + BN_EPS)
    bias = bn.bias.detach().double() - bn.running_mean.detach().double() * s
    return (w * s[:, None, None, None, None]).float(), bias.float()


def _pool_ceil_padding(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, int, int] | None:
    """Symmetric padding p with which ``max_pool3d(x, kernel, stride, p, ceil_mode=True)`` IS the SAME pool, else None.

    SAME window j starts at ``j * stride - before`` and ceil(n / stride) windows are taken; with padding
    ``before`` and ceil_mode PyTorch starts its windows at the same places, takes ceil((n + 2p - k) / s) + 1
    of them (minus one starting in the right padding, which SAME never has) and lets the last one hang over
    the end, where it sees -inf just as SAME's ``after`` padding.
    """
    pads = []
    for n, k, s in zip(shape[-3:], kernel, stride, strict=True):
        before, after = same_padding(n, k, s)
        if before > k // 2 or after < before:
            return None
        out = -(-(n + 2 * before - k) // s) + 1
        if (out - 1) * s >= n + before:
            out -= 1
        if out != -(-n // s):
            return None
        pads.append(before)
    return tuple(pads)  # type: ignore[return-value]


def _max_pool_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """SAME max pool without a padded copy where PyTorch's own padding / ceil_mode express it."""
    pad = _pool_ceil_padding(static_sizes(x, -3), kernel, stride)
    if pad is None:
        return max_pool_same_padded(x, kernel, stride)
    return F.max_pool3d(x, kernel, stride, pad, ceil_mode=True)


def _exporting() -> bool:
    """True while a graph is being captured (jit trace/script, dynamo, torch.export, ONNX export)."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())


# oneDNN convolution with the ReLU fused as a post-op (the op Inductor's CPU backend emits); absent in
# some builds, then the unfused oneDNN convolution + ReLU is used
try:
    _CONV_RELU = torch.ops.mkldnn._convolution_pointwise
except (AttributeError, RuntimeError):
    _CONV_RELU = None


def _conv3d_relu(x: Tensor, weight: Tensor, bias: Tensor, stride: tuple[int, int, int],
                 padding: tuple[int, int, int], mkldnn: bool) -> Tensor:
    """relu(conv3d(x)) with symmetric ``padding``; through oneDNN directly when ``mkldnn`` (eager float32 CPU).

    PyTorch's backend choice sends batch-1 3-D convolutions with few channels to its im2col kernel
    ("slow_conv3d", a heuristic tuned for 2-D) and runs ReLU as a separate pass; oneDNN computes the
    same convolution on the channels-last layout without reorders, ReLU fused. Under graph capture the
    portable F.conv3d + ReLU is recorded.
    """
    if (mkldnn and x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not _exporting()):
        if _CONV_RELU is not None:
            return _CONV_RELU(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1, "relu", [], "")
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1).relu_()
    return F.conv3d(x, weight, bias, stride, padding).relu_()


class _FastConv(nn.Module):
    """SAME conv with folded BatchNorm bias, then ReLU (in place). 1x1x1 kernels may run as a matrix product."""

    def __init__(self, weight: Tensor, bias: Tensor, stride: tuple[int, int, int], channels_last: bool,
                 gemm_1x1: bool, mkldnn: bool) -> None:
        super().__init__()
        self.kernel = tuple(weight.shape[2:])
        self.stride = stride
        self.mkldnn = mkldnn
        self.out_channels = int(weight.shape[0])
        self.gemm = gemm_1x1 and self.kernel == (1, 1, 1) and stride == (1, 1, 1)
        if self.gemm:
            weight = weight.flatten(1).t().contiguous()  # (I, O): rows of an (N*T*H*W, I) channels-last input
        elif channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last_3d)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.gemm:
            # channels-last x: its (N, T, H, W, C) permutation is contiguous, so this is a view, not a copy
            c, t, h, w = static_sizes(x, 1)
            rows = x.permute(0, 2, 3, 4, 1).reshape(-1, c)  # the batch stays a dynamic -1 under export
            y = torch.addmm(self.bias, rows, self.weight).relu_()
            return y.view(-1, t, h, w, self.out_channels).permute(0, 4, 1, 2, 3)
        pads = same_pads(x, self.kernel, self.stride)
        if not all(lo == hi for lo, hi in pads):  # asymmetric (stride 2 on an even size): pad explicitly
            x, pads = F.pad(x, pad_arg(pads)), [(0, 0)] * 3
        return _conv3d_relu(x, self.weight, self.bias, self.stride, tuple(lo for lo, _ in pads), self.mkldnn)


class _FastMixed(nn.Module):
    """Inception block with folded BatchNorm; the three 1x1x1 units reading the block input fused into one."""

    def __init__(self, ref: MixedBlock, channels_last: bool, fuse_branches: bool, gemm_1x1: bool, mkldnn: bool) -> None:
        super().__init__()
        units = {
            "b0": ref.Branch_0["Conv3d_0a_1x1"], "b1a": ref.Branch_1["Conv3d_0a_1x1"],
            "b1b": ref.Branch_1["Conv3d_0b_3x3"], "b2a": ref.Branch_2["Conv3d_0a_1x1"],
            "b2b": ref.Branch_2["Conv3d_0b_3x3"], "b3": ref.Branch_3["Conv3d_0b_1x1"],
        }
        folded = {k: _folded(u) for k, u in units.items()}
        self.fuse = fuse_branches
        self.channels_last = channels_last
        if fuse_branches:
            w = torch.cat([folded[k][0] for k in ("b0", "b1a", "b2a")])
            b = torch.cat([folded[k][1] for k in ("b0", "b1a", "b2a")])
            self.split = [folded[k][0].shape[0] for k in ("b0", "b1a", "b2a")]
            self.first = _FastConv(w, b, (1, 1, 1), channels_last, gemm_1x1, mkldnn)
        else:
            for k in ("b0", "b1a", "b2a"):
                self.add_module(k, _FastConv(*folded[k], (1, 1, 1), channels_last, gemm_1x1, mkldnn))
        for k in ("b1b", "b2b", "b3"):
            self.add_module(k, _FastConv(*folded[k], (1, 1, 1), channels_last, gemm_1x1, mkldnn))

    def forward(self, x: Tensor) -> Tensor:
        if self.fuse:
            b0, b1, b2 = torch.split(self.first(x), self.split, dim=1)
            if self.channels_last and not _exporting():  # dense channels-last slices for the 3x3x3 convs
                b1 = b1.contiguous(memory_format=torch.channels_last_3d)
                b2 = b2.contiguous(memory_format=torch.channels_last_3d)
        else:
            b0, b1, b2 = self.b0(x), self.b1a(x), self.b2a(x)
        b1 = self.b1b(b1)
        b2 = self.b2b(b2)
        b3 = self.b3(_max_pool_same(x, BRANCH_POOL, (1, 1, 1)))
        out = torch.cat([b0, b1, b2, b3], dim=1)
        if self.channels_last and not _exporting():  # memory layout only: nothing to record in a graph
            out = out.contiguous(memory_format=torch.channels_last_3d)
        return out


class _SpaceToDepthStem(nn.Module):
    """Conv3d_1a (7x7x7, stride 2, 3 channels) as a 4x4x4 stride-1 convolution over 2x2x2 space-to-depth blocks.

    Output position o of the SAME conv reads padded inputs 2o .. 2o + 6 along each axis; grouping the
    padded input into blocks of 2 (block b = p // 2, phase r = p % 2) makes that blocks o .. o + 3,
    so the same numbers come from a stride-1 VALID convolution whose input channels are
    (channel, phase t, phase h, phase w) = 24 and whose 4x4x4 kernel holds the 7x7x7 one with the
    eighth tap of each axis zero. The input is SAME-padded first (zeros, with after-padding extended
    to a whole number of blocks: the extra zeros only meet those zero taps). 24 input channels fill
    the matrix units of bf16 / int8 kernels (AMX, VNNI) far better than 3.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        out, cin = int(weight.shape[0]), int(weight.shape[1])
        if tuple(weight.shape[2:]) != (7, 7, 7):
            raise ValueError(f"the space-to-depth stem is the 7x7x7 stride-2 convolution, got {tuple(weight.shape)}")
        w8 = weight.new_zeros(out, cin, 8, 8, 8)
        w8[:, :, :7, :7, :7] = weight
        # (o, c, 2 bt + rt, 2 bh + rh, 2 bw + rw) -> (o, (c, rt, rh, rw), bt, bh, bw)
        w = w8.reshape(out, cin, 4, 2, 4, 2, 4, 2).permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(out, 8 * cin, 4, 4, 4)
        self.cin = cin
        self.register_buffer("weight", w.contiguous())
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        sizes = static_sizes(x, -3)
        pads = []
        for n in sizes:
            before, _ = same_padding(n, 7, 2)
            pads.append((before, 2 * (-(-n // 2) + 3) - n - before))  # to 2 * (outputs + 3) = whole blocks
        x = F.pad(x, pad_arg(pads))
        t, h, w = (n + lo + hi for n, (lo, hi) in zip(sizes, pads, strict=True))
        x = x.reshape(-1, self.cin, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(-1, 8 * self.cin, t // 2, h // 2, w // 2)
        return F.conv3d(x, self.weight, self.bias).relu_()


class FastInceptionI3d(I3dBase):
    """Inference form of :class:`InceptionI3d`: same function, same call API, faster on CPU.

    Built from a reference module (its weights are copied; later changes to it do not propagate).
    Holds buffers only (no parameters): nothing records autograd history. Options, all on by default:

    * ``channels_last``: activations in channels-last-3d memory (N, T, H, W, C), oneDNN's native layout;
    * ``fuse_branches``: one 1x1x1 convolution for Branch_0/1/2's first units (same input);
    * ``gemm_1x1``: 1x1x1 convolutions as ``addmm`` on the (N*T*H*W, C) view (needs ``channels_last``);
    * ``mkldnn``: convolutions through oneDNN even where PyTorch's heuristic would pick its im2col kernel
      (eager float32 CPU only; graph capture records plain ``F.conv3d``);
    * ``space_to_depth_stem`` (off by default): the first convolution on 2x2x2 space-to-depth blocks
      (:class:`_SpaceToDepthStem`); the exported graph uses it (OpenVINO's bf16 / int8 kernels).

    BatchNorm is always folded. Results equal the reference up to float32 rounding. Its ``state_dict``
    (folded, fused tensors) is internal, not a weight format: weights are saved / loaded in the
    reference form's format.
    """

    def __init__(self, reference: InceptionI3d, *, channels_last: bool = True, fuse_branches: bool = True,
                 gemm_1x1: bool = True, mkldnn: bool = True, space_to_depth_stem: bool = False) -> None:
        super().__init__(reference.output)
        gemm_1x1 = gemm_1x1 and channels_last
        self.channels_last = channels_last
        self.options = {"channels_last": channels_last, "fuse_branches": fuse_branches, "gemm_1x1": gemm_1x1,
                        "mkldnn": mkldnn, "space_to_depth_stem": space_to_depth_stem}
        for layer in LAYERS:
            if layer[0] == "conv" and layer[1] == LAYERS[0][1] and space_to_depth_stem:
                self.add_module(layer[1], _SpaceToDepthStem(*_folded(getattr(reference, layer[1]))))
            elif layer[0] == "conv":
                unit = getattr(reference, layer[1])
                self.add_module(layer[1], _FastConv(*_folded(unit), layer[4], channels_last, gemm_1x1, mkldnn))
            elif layer[0] == "mixed":
                self.add_module(layer[1], _FastMixed(getattr(reference, layer[1]), channels_last, fuse_branches,
                                                     gemm_1x1, mkldnn))
        conv = reference.Logits.Conv3d_0c_1x1["conv"]
        self.register_buffer("logits_weight", conv.weight.detach().flatten(1).clone())  # (400, 1024)
        self.register_buffer("logits_bias", conv.bias.detach().clone())

    def _trunk(self, x: Tensor) -> Tensor:
        if not self.channels_last:
            x = x.contiguous()
        for layer in LAYERS:
            if layer[0] == "pool":
                x = _max_pool_same(x, layer[2], layer[3])
            else:
                x = getattr(self, layer[1])(x)
        return x

    def _head(self, mixed_5c: Tensor) -> Tensor:
        x = F.avg_pool3d(mixed_5c, HEAD_POOL, stride=1).flatten(2)  # (N, 1024, T - 1)
        x = torch.matmul(self.logits_weight, x) + self.logits_bias[:, None]  # (N, 400, T - 1)
        return x.mean(dim=2)
