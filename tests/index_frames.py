"""Frames that carry their own index (tests of sampling and decoding): frame i shows the 16 bits of
i as white blocks of a 2 x 8 grid, which survive resizing and lossy coding."""

from __future__ import annotations

import numpy as np


def pattern(index: int, h: int = 96, w: int = 128) -> np.ndarray:
    """(h, w, 3) uint8: bit b of ``index`` as block (b // 8, b % 8) of a 2 x 8 grid, white = 1."""
    img = np.zeros((h, w, 3), np.uint8)
    for b in range(16):
        if (index >> b) & 1:
            r, c = divmod(b, 8)
            img[r * h // 2:(r + 1) * h // 2, c * w // 8:(c + 1) * w // 8] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """Inverse of :func:`pattern` on a decoded (any size) frame: the middle half of each block decides."""
    h, w = img.shape[:2]
    bh, bw = h / 2, w / 8
    v = 0
    for b in range(16):
        r, c = divmod(b, 8)
        block = img[int(r * bh + bh / 4):int((r + 1) * bh - bh / 4), int(c * bw + bw / 4):int((c + 1) * bw - bw / 4)]
        if block.mean() > 127:
            v |= 1 << b
    return v
