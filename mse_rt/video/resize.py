"""Spatial preprocessing of frames: bilinear resizing (antialiased when shrinking), short-side sizes, centre crops.

:class:`mse_rt.video.clips.ClipSpec` chooses between ``"resize"`` (the whole frame to
``size x size``, aspect not kept) and ``"short_side_crop"``: resize so the short side is
``short_side`` (the long side ``int(long * short_side / short)``, truncated, as torchvision's
``Resize(int)``: :func:`short_side_size`), then the centre ``size x size`` crop (offset
``int(round((extent - size) / 2))``, as torchvision's ``CenterCrop``: :func:`center_crop`).

Interpolation (:func:`resize_frames`) is bilinear with half-pixel centres; with ``antialias=True``
(default) a downscale widens the bilinear (tent) kernel by the scale factor, as PIL,
torchvision's antialiased tensor resize and FFmpeg's swscale (the decoder-side path) do, so
decoder-side and numpy-side frames agree closely; ``antialias=False`` is plain 2-tap bilinear
(OpenCV's ``INTER_LINEAR``), which aliases on strong downscales. Upscaling is the same either way.
Values stay uint8.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["center_crop", "check_rgb_frames", "resize_frames", "short_side_size"]


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side ``short_side`` and the long one scaled, truncated (torchvision's rule)."""
    if height <= width:
        return short_side, max(1, int(short_side * width / height))
    return max(1, int(short_side * height / width)), short_side


def check_rgb_frames(frames: object, what: str) -> np.ndarray:
    """``frames`` itself when (H, W, 3) or (N, H, W, 3) uint8 with H, W >= 1; else :class:`InputError` naming ``what``."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim not in (3, 4) \
            or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise InputError(f"{what}: frames must be (H, W, 3) or (N, H, W, 3) uint8 RGB, got shape {shape} {dtype}")
    if frames.shape[-2] < 1 or frames.shape[-3] < 1:
        raise InputError(f"{what}: empty frame of shape {frames.shape}")
    return frames


def resize_frames(frames: np.ndarray, height: int, width: int, *, antialias: bool = True) -> np.ndarray:
    """Bilinear resize of (H, W, 3) or (N, H, W, 3) uint8 frames to (..., height, width, 3) uint8.

    Half-pixel-centre bilinear (``align_corners=False``), rounded to nearest; ``antialias``
    widens the kernel when shrinking (module docstring). Returns the input itself when its size is
    already ``height x width``. Runs torch's CPU kernels on a channels-last view (no layout copy).
    """
    import torch

    frames = check_rgb_frames(frames, "resize_frames")
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise InputError(f"resize_frames: target size must be positive, got {height}x{width}")
    if frames.shape[-3:-1] == (height, width):
        return frames
    single = frames.ndim == 3
    x = frames[None] if single else frames
    if not x.flags.writeable:  # torch.from_numpy warns on read-only arrays
        x = x.copy()
    t = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, 3, H, W) view with channels-last strides
    if not t.is_contiguous(memory_format=torch.channels_last):
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False,
                                            antialias=antialias)
    out = np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())
    return out[0] if single else out


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` of (H, W, 3) or (N, H, W, 3) frames, a view (no copy).

    Offsets ``int(round((H - size) / 2))`` and likewise for W (torchvision's ``CenterCrop``).
    """
    frames = check_rgb_frames(frames, "center_crop")
    h, w = frames.shape[-3], frames.shape[-2]
    if size > h or size > w:
        raise InputError(f"center_crop: crop {size} larger than the frame {h}x{w}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return frames[..., top:top + size, left:left + size, :]
