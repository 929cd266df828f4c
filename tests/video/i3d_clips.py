"""Procedural reference clips for the I3D fidelity test, bit-identical on every machine.

Both the reference generator (``tests/data/i3d_reference/make_reference.py``, run once in a
throwaway jax env) and ``tests/video/test_i3d.py`` import this file; the test regenerates each clip
and checks its sha256 against the one stored with the reference vectors before comparing.

Every pixel comes from integer numpy arithmetic only (int64 / wrapping uint64: ``+ - * // %``,
shifts, xor, comparisons, ``np.where``). No float transcendental (sin, exp, ...) is used: those can
differ by an ulp between numpy builds or CPUs, and an ulp can flip a rounded uint8. So the bytes do
not depend on numpy version, CPU or OS.

A clip is ``(L, H, W, 3) uint8`` (frames, rows, columns, RGB). Speeds are in pixels per frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)


def _axes(length: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable int64 index grids t (L,1,1), y (1,H,1), x (1,1,W)."""
    t = np.arange(length, dtype=np.int64)[:, None, None]
    y = np.arange(height, dtype=np.int64)[None, :, None]
    x = np.arange(width, dtype=np.int64)[None, None, :]
    return t, y, x


def _hash(*coords: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash of integer coordinates (wrapping uint64 arithmetic), as int64 in [0, 2**32)."""
    h = np.uint64(2166136261)
    for c, mult in zip(coords, (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D), strict=False):
        # mix each coordinate with its own odd multiplier, then an xorshift-multiply round
        h = (h ^ (np.asarray(c, dtype=np.int64).astype(np.uint64) * np.uint64(mult))) & _M32
        h = ((h ^ (h >> np.uint64(15))) * np.uint64(0x2C1B3C6D)) & _M32
        h = ((h ^ (h >> np.uint64(12))) * np.uint64(0x297A2D39)) & _M32
        h = h ^ (h >> np.uint64(15))
    return h.astype(np.int64)


def _rgb(r: np.ndarray, g: np.ndarray, b: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((*shape, 3), dtype=np.uint8)
    for i, ch in enumerate((r, g, b)):
        out[..., i] = np.clip(np.broadcast_to(ch, shape), 0, 255).astype(np.uint8)
    return out


def disks(length: int, height: int, width: int) -> np.ndarray:
    """Three coloured disks gliding (with wrap-around) across a vertical sky-like gradient."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    r = np.broadcast_to(40 + (y * 120) // height, shape).copy()
    g = np.broadcast_to(90 + (y * 100) // height, shape).copy()
    b = np.broadcast_to(200 - (y * 60) // height, shape).copy()
    for (x0, y0, vx, vy, rad, col) in (
        (30, 60, 7, 2, 28, (230, 40, 30)),
        (150, 140, -5, -3, 22, (250, 220, 40)),
        (90, 30, 3, 6, 16, (20, 20, 20)),
    ):
        cx = (x0 * width // 224 + vx * t) % width
        cy = (y0 * height // 224 + vy * t) % height
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= (rad * min(height, width) // 224) ** 2
        r, g, b = (np.where(inside, c, ch) for c, ch in zip(col, (r, g, b), strict=True))
    return _rgb(r, g, b, shape)


def bars(length: int, height: int, width: int) -> np.ndarray:
    """Vertical red/white bars sliding right (a pan) above a dark floor band with a moving bright block."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    stripe = ((x + 6 * t) // 16) % 2
    floor = y >= (3 * height) // 4
    block = floor & (((x - 9 * t) % width) < width // 6) & (y < (7 * height) // 8)
    r = np.where(floor, np.where(block, 240, 50), np.where(stripe == 1, 235, 200))
    g = np.where(floor, np.where(block, 240, 45), np.where(stripe == 1, 235, 30))
    b = np.where(floor, np.where(block, 200, 40), np.where(stripe == 1, 230, 40))
    return _rgb(r, g, b, shape)


def pan_texture(length: int, height: int, width: int) -> np.ndarray:
    """Blocky value-noise texture (8 px cells, earthy tints) under a diagonal camera pan."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    u = (x + 4 * t) // 8
    v = (y + 2 * t) // 8
    n = _hash(u, v) % 256
    fine = _hash(x + 4 * t, y + 2 * t) % 32
    r = 60 + (n * 150) // 255 + fine
    g = 50 + (n * 110) // 255 + fine
    b = 30 + (n * 60) // 255 + fine // 2
    return _rgb(r, g, b, shape)


def bounce(length: int, height: int, width: int) -> np.ndarray:
    """An orange ball bouncing along a parabola over a grass-like field with white lines."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    grass = _hash(x // 2, y // 2) % 40
    line = ((y % (height // 4)) < 3) | (((x * 3 + y) % width) < 4)
    r = np.where(line, 235, 40 + grass)
    g = np.where(line, 240, 120 + grass)
    b = np.where(line, 235, 30 + grass // 2)
    period = 8
    phase = t % period - period // 2  # -4 .. 3: parabola apex mid-period
    ground = (4 * height) // 5
    cy = ground - ((period // 2) ** 2 - phase**2) * height // 28
    cx = (width // 8 + 10 * t) % width
    rad = max(4, min(height, width) // 14)
    ball = (x - cx) ** 2 + (y - cy) ** 2 <= rad**2
    r = np.where(ball, 250, r)
    g = np.where(ball, 130, g)
    b = np.where(ball, 20, b)
    return _rgb(r, g, b, shape)


def rings(length: int, height: int, width: int) -> np.ndarray:
    """Concentric colour rings expanding from an off-centre point (a zoom-in)."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    cy, cx = (2 * height) // 5, (3 * width) // 5
    r2 = (y - cy) ** 2 + (x - cx) ** 2
    band = (r2 * 224 * 224) // ((t + 6) * 60 * height * width)
    k = band % 3
    r = np.where(k == 0, 250, np.where(k == 1, 30, 120))
    g = np.where(k == 0, 200, np.where(k == 1, 80, 20))
    b = np.where(k == 0, 40, np.where(k == 1, 200, 140))
    return _rgb(r, g, b, shape)


def flicker(length: int, height: int, width: int) -> np.ndarray:
    """Fresh colour noise each frame (TV static), 2 px grains."""
    t, y, x = _axes(length, height, width)
    shape = (length, height, width)
    h = _hash(t, y // 2, x // 2)
    return _rgb(h % 256, (h >> 8) % 256, (h >> 16) % 256, shape)


RECIPES: dict[str, Callable[[int, int, int], np.ndarray]] = {
    f.__name__: f for f in (disks, bars, pan_texture, bounce, rings, flicker)
}

# (clip id, recipe, (L, H, W)): six clips at the Kinetics size 16 x 224 x 224, then clips at other
# sizes whose TF-SAME paddings differ (odd sizes give symmetric pads, even sizes asymmetric ones):
# 13 x 200 x 210 still admits the Kinetics logits head (Mixed_5c is 2 x 7 x 7), the others only
# give features.
CLIPS: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("disks_16x224x224", "disks", (16, 224, 224)),
    ("bars_16x224x224", "bars", (16, 224, 224)),
    ("pan_texture_16x224x224", "pan_texture", (16, 224, 224)),
    ("bounce_16x224x224", "bounce", (16, 224, 224)),
    ("rings_16x224x224", "rings", (16, 224, 224)),
    ("flicker_16x224x224", "flicker", (16, 224, 224)),
    ("bounce_13x200x210", "bounce", (13, 200, 210)),
    ("disks_16x112x112", "disks", (16, 112, 112)),
    ("rings_7x97x131", "rings", (7, 97, 131)),
    ("bars_1x64x64", "bars", (1, 64, 64)),
)


def make_clip(recipe: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The clip ``recipe`` at ``shape = (L, H, W)``: (L, H, W, 3) uint8, C-contiguous."""
    clip = RECIPES[recipe](*shape)
    assert clip.shape == (*shape, 3) and clip.dtype == np.uint8
    return np.ascontiguousarray(clip)


def clip_sha256(clip: np.ndarray) -> str:
    """sha256 hex digest of the clip's raw bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(clip).tobytes()).hexdigest()
