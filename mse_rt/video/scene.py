"""The scene of a synthetic action video: motions, the random plan (timeline, shapes, background, distractors), drawing.

All randomness is drawn here when a video is planned; drawing a frame is then a pure function of
the plan. :mod:`mse_rt.video.render` holds the parameters (``VideoSynthSpec``, passed here as
``spec``), the frame-by-frame video object and the encoders; the motions and time conventions are
described in its docstring. Geometry is in pixels with pixel (row y, column x) centred at
(x + 0.5, y + 0.5); sizes in the spec are in frame heights.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MOTIONS", "RATE", "cycles_per_s"]

MOTIONS = ("translate", "rotate", "bounce", "scale", "flash", "orbit", "shake")

# Base rate of each motion at speed multiplier 1 (the spec's ``speed`` range multiplies it):
# translate: frame heights / s; rotate, orbit: turns / s; bounce, scale: period in s (divided by
# the multiplier); flash, shake: Hz. Chosen so that even the slowest draw is clearly faster than
# a distractor's drift, and the fastest (shake at the default 1.35) stays below the 15 Hz Nyquist
# limit at 30 fps (VideoSynthSpec checks this for its fps).
RATE = {"translate": 0.6, "rotate": 0.9, "bounce": 0.8, "scale": 1.1, "flash": 2.2, "orbit": 0.7, "shake": 6.0}


def cycles_per_s(motion: str, speed: float) -> float:
    """Repetitions per second of a periodic motion at speed multiplier ``speed`` (0 for translate)."""
    if motion in ("bounce", "scale"):
        return speed / RATE[motion]
    return 0.0 if motion == "translate" else RATE[motion] * speed


_SHAPES = ("rect", "ellipse", "diamond")
BLANK = 0  # the flat background value when ``background=False``
_MARK_FROM = 0.4  # the darker "head" mark covers u > 0.4 * half_long, so every turn is visible


# ---------------------------------------------------------------------------------------------
# planning (all randomness)


@dataclass(frozen=True)
class Look:
    """Appearance of one shape: half sides in pixels, body / mark colours (3,) float32 RGB."""

    shape: str
    half_long: float
    half_short: float
    body: np.ndarray
    mark: np.ndarray

    @property
    def radius(self) -> float:
        """Bounding radius (pixels) at scale 1, whatever the angle."""
        return math.hypot(self.half_long, self.half_short) + 1.0


@dataclass(frozen=True)
class Instance:
    f0: int
    f1: int
    label: int
    motion: str
    look: Look
    p: dict  # motion parameters (pixels, radians, seconds)


@dataclass(frozen=True)
class Distractor:
    f0: int
    f1: int
    look: Look
    x0: float
    y0: float
    vx: float
    vy: float
    theta0: float
    omega: float  # rad / s


def random_look(rng: np.random.Generator, spec) -> Look:
    H = spec.height
    long_side = rng.uniform(*spec.object_size) * H
    short_side = long_side * rng.uniform(*spec.object_aspect)
    hue, sat, val = rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
    body = np.asarray(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255.0
    mark = body * np.float32(rng.uniform(0.2, 0.4))
    return Look(_SHAPES[int(rng.integers(len(_SHAPES)))], long_side / 2, short_side / 2, body, mark)


def _place(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A coordinate in [lo, hi] (the middle when the interval is empty)."""
    return float(rng.uniform(lo, hi)) if hi > lo else 0.5 * (lo + hi)


def motion_params(rng: np.random.Generator, motion: str, look: Look, spec) -> dict:
    """Parameters of one instance's motion; every position it reaches keeps the shape inside the frame."""
    W, H = float(spec.width), float(spec.height)
    R = look.radius
    m = float(rng.uniform(*spec.speed))
    theta = float(rng.uniform(0, 2 * math.pi))
    phase = float(rng.uniform())
    if motion == "translate":
        ang = math.radians(rng.uniform(-35, 35)) + (math.pi if rng.uniform() < 0.5 else 0.0)
        dx, dy = math.cos(ang), math.sin(ang)
        fit = min((W - 2 * R) / max(abs(dx), 1e-9), (H - 2 * R) / max(abs(dy), 1e-9))
        length = max(1.0, min(rng.uniform(0.4, 0.8) * W, fit))
        ex, ey = length * dx, length * dy
        x0 = _place(rng, R - min(0.0, ex), W - R - max(0.0, ex))
        y0 = _place(rng, R - min(0.0, ey), H - R - max(0.0, ey))
        return {"x0": x0, "y0": y0, "dx": dx, "dy": dy, "length": length, "speed": RATE["translate"] * m * H,
                "s0": phase * 2 * length, "theta": theta}
    if motion == "bounce":
        height = min(rng.uniform(0.3, 0.5) * H, H - 2 * R)
        return {"x": _place(rng, R, W - R), "floor": _place(rng, R + height, H - R), "height": height,
                "period": RATE["bounce"] / m, "phase": phase, "theta": theta}
    if motion == "scale":
        amp = float(rng.uniform(0.3, 0.45))
        r = R * (1 + amp)
        return {"x": _place(rng, r, W - r), "y": _place(rng, r, H - r), "amp": amp, "period": RATE["scale"] / m,
                "phase": phase, "theta": theta}
    if motion == "orbit":
        rho = max(0.0, min(rng.uniform(0.12, 0.25) * H, 0.5 * H - R))
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        return {"x": _place(rng, R + rho, W - R - rho), "y": _place(rng, R + rho, H - R - rho), "rho": rho,
                "omega": sign * 2 * math.pi * RATE["orbit"] * m, "phase": 2 * math.pi * phase, "theta": theta}
    if motion == "shake":
        amp = float(rng.uniform(0.03, 0.05)) * H
        ang = float(rng.uniform(0, math.pi))
        r = R + amp
        return {"x": _place(rng, r, W - r), "y": _place(rng, r, H - r), "amp": amp, "dx": math.cos(ang),
                "dy": math.sin(ang), "freq": RATE["shake"] * m, "phase": phase, "theta": theta}
    # rotate, flash: fixed centre
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    return {"x": _place(rng, R, W - R), "y": _place(rng, R, H - R), "theta": theta, "phase": phase,
            "omega": sign * 2 * math.pi * RATE["rotate"] * m, "freq": RATE["flash"] * m}


def tri(s: float, length: float) -> float:
    """Triangle wave: 0 -> length -> 0 over a period of 2 * length (s >= any real)."""
    if length <= 0:
        return 0.0
    r = s % (2 * length)
    return length - abs(r - length)


def pose(inst: Instance, t: float) -> tuple[float, float, float, float, float]:
    """(cx, cy, angle rad, size factor, flash weight in [0, 1]) at ``t`` seconds into the instance."""
    p = inst.p
    kind = inst.motion
    if kind == "translate":
        s = tri(p["s0"] + p["speed"] * t, p["length"])
        return p["x0"] + s * p["dx"], p["y0"] + s * p["dy"], p["theta"], 1.0, 0.0
    if kind == "rotate":
        return p["x"], p["y"], p["theta"] + p["omega"] * t, 1.0, 0.0
    if kind == "bounce":
        u = (t / p["period"] + p["phase"]) % 1.0
        return p["x"], p["floor"] - 4.0 * p["height"] * u * (1.0 - u), p["theta"], 1.0, 0.0
    if kind == "scale":
        return p["x"], p["y"], p["theta"], 1.0 + p["amp"] * math.sin(2 * math.pi * (t / p["period"] + p["phase"])), 0.0
    if kind == "flash":
        w = 0.5 + 0.5 * math.tanh(2.5 * math.sin(2 * math.pi * (p["freq"] * t + p["phase"])))
        return p["x"], p["y"], p["theta"], 1.0, w
    if kind == "orbit":
        a = p["phase"] + p["omega"] * t
        return p["x"] + p["rho"] * math.cos(a), p["y"] + p["rho"] * math.sin(a), p["theta"], 1.0, 0.0
    # shake
    o = p["amp"] * math.sin(2 * math.pi * (p["freq"] * t + p["phase"]))
    return p["x"] + o * p["dx"], p["y"] + o * p["dy"], p["theta"], 1.0, 0.0


def seconds_to_frames(seconds: float, fps: float) -> int:
    return int(round(seconds * fps))


def plan_timeline(rng: np.random.Generator, spec) -> tuple[int, list[tuple[int, int]]]:
    """(number of frames N, [(f0, f1)] instance frame ranges): sorted, disjoint, inside [0, N)."""
    fps = float(spec.fps)
    n = max(2, seconds_to_frames(rng.uniform(spec.min_duration_s, spec.max_duration_s), fps))
    tail = max(1, seconds_to_frames(spec.gap_s[0], fps))  # background-only frames always left at the end

    def gap() -> int:
        lo_hi = spec.idle_s if rng.uniform() < spec.idle_prob else spec.gap_s
        return seconds_to_frames(rng.uniform(*lo_hi), fps)

    def length(long: bool) -> int:
        return max(1, seconds_to_frames(rng.uniform(*(spec.long_len_s if long else spec.short_len_s)), fps))

    ranges: list[tuple[int, int]] = []
    f = max(1, seconds_to_frames(rng.uniform(*spec.gap_s), fps))  # lead-in: the first frame is never an action
    while True:
        k = length(rng.uniform() < spec.long_prob)
        if f + k > n - tail:
            k = length(False)  # one more try with a short instance before ending the video
            if f + k > n - tail:
                break
        ranges.append((f, f + k))
        f += k + max(1, gap())  # a gap of at least one frame keeps instances visibly apart
    return n, ranges


def plan_distractors(rng: np.random.Generator, spec, n: int) -> list[Distractor]:
    fps, W, H = float(spec.fps), float(spec.width), float(spec.height)
    out: list[Distractor] = []
    for _ in range(spec.distractors):
        t = -rng.uniform(0.0, 10.0)  # some are already on screen at the first frame
        while True:
            f0 = seconds_to_frames(t, fps)
            f1 = seconds_to_frames(t + rng.uniform(4.0, 20.0), fps)
            if f0 >= n:
                break
            look = random_look(rng, spec)
            R = look.radius
            speed = rng.uniform(*spec.distractor_drift) * H
            ang = rng.uniform(0, 2 * math.pi)
            if f1 > 0:
                out.append(Distractor(max(f0, 0), min(f1, n), look, _place(rng, R, W - R), _place(rng, R, H - R),
                                       speed * math.cos(ang), speed * math.sin(ang), float(rng.uniform(0, 2 * math.pi)),
                                       float(rng.uniform(-0.1, 0.1))))  # rad / s: ~40x slower than the slowest rotate
            t = f1 / fps + rng.uniform(0.5, 6.0)
    return out


def _periodic_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise on a torus (wraps at the edges), unit standard deviation, float64."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))  # Fourier transform of a Gaussian
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    return out / max(float(out.std()), 1e-12)


@dataclass(frozen=True)
class Background:
    big: np.ndarray  # (2 th, 2 tw, 3) uint8: the periodic tile repeated 2 x 2, so any crop is one slice
    th: int
    tw: int
    vx: float  # px / s
    vy: float
    wobble: float  # px
    wobble_period: float  # s
    wobble_phase: float


def plan_background(rng: np.random.Generator, spec) -> Background:
    H, W = spec.height, spec.width
    th, tw = 2 * H, 2 * W  # the tile is larger than a frame, so the pan never shows its period at once
    low = _periodic_noise(rng, (th, tw), 0.12 * H)
    mid = _periodic_noise(rng, (th, tw), 0.02 * H)
    fine = _periodic_noise(rng, (th, tw), 0.006 * H)
    c1, c2 = (np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.35), rng.uniform(0.3, 0.75)))
              * 255.0 for _ in range(2))
    w = 1.0 / (1.0 + np.exp(-1.5 * low))
    img = c1 * (1.0 - w[..., None]) + c2 * w[..., None] + (mid * 14.0 + fine * 6.0)[..., None]
    tile = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    speed = rng.uniform(*spec.background_drift) * H
    ang = rng.uniform(0, 2 * math.pi)
    return Background(np.tile(tile, (2, 2, 1)), th, tw, speed * math.cos(ang), speed * math.sin(ang),
                       float(rng.uniform(0.0, 0.04) * H), float(rng.uniform(3.0, 8.0)), float(rng.uniform(0, 2 * math.pi)))


# ---------------------------------------------------------------------------------------------
# drawing


def draw(frame: np.ndarray, look: Look, cx: float, cy: float, theta: float, scale: float = 1.0,
          flash: float = 0.0) -> None:
    """Draw one anti-aliased shape into ``frame`` (H, W, 3) uint8 in place, touching only its bounding box.

    Pixel (row y, column x) has its centre at (x + 0.5, y + 0.5). Pixels the shape does not cover
    keep their exact value (blend weight 0, and x + 0.5 truncates back to x).
    """
    a, b = look.half_long * scale, look.half_short * scale
    c, s = math.cos(theta), math.sin(theta)
    # extents of the rotated rectangle (ellipse and diamond lie inside it) + the anti-aliasing rim
    ex, ey = abs(a * c) + abs(b * s) + 1.0, abs(a * s) + abs(b * c) + 1.0
    H, W = frame.shape[:2]
    x0, x1 = max(0, int(math.floor(cx - ex))), min(W, int(math.ceil(cx + ex)))
    y0, y1 = max(0, int(math.floor(cy - ey))), min(H, int(math.ceil(cy + ey)))
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    u = dx * np.float32(c) + dy * np.float32(s)  # along the long side
    v = dy * np.float32(c) - dx * np.float32(s)  # along the short side
    # d: (approximate) signed distance to the outline in pixels, negative inside
    if look.shape == "rect":
        d = np.maximum(np.abs(u) - np.float32(a), np.abs(v) - np.float32(b))
    elif look.shape == "ellipse":
        d = (np.sqrt(np.square(u * np.float32(1 / a)) + np.square(v * np.float32(1 / b))) - np.float32(1)) * np.float32(b)
    else:  # diamond
        edge = np.float32(a * b / math.hypot(a, b))  # distance from the centre to each edge
        d = (np.abs(u) * np.float32(1 / a) + np.abs(v) * np.float32(1 / b) - np.float32(1)) * edge
    cover = np.clip(np.float32(0.5) - d, 0, 1)  # (h, w) coverage of the shape
    w_mark = np.clip(u - np.float32(_MARK_FROM * a - 0.5), 0, 1)
    w_mark *= cover  # weight of the mark colour
    w_body = cover - w_mark  # weight of the body colour
    keep = np.float32(1) - cover  # weight of what was there
    body = look.body if flash <= 0 else look.body + (255.0 - look.body) * np.float32(0.8 * flash)
    acc = np.empty_like(cover)
    tmp = np.empty_like(cover)
    region = frame[y0:y1, x0:x1]
    # one channel at a time: broadcasting (h, w, 1) against (3,) runs numpy's slow short inner loop
    for ch in range(3):
        plane = region[:, :, ch]
        np.multiply(plane, keep, out=acc)
        np.multiply(w_body, np.float32(body[ch]), out=tmp)
        acc += tmp
        np.multiply(w_mark, np.float32(look.mark[ch]), out=tmp)
        acc += tmp
        acc += np.float32(0.5)
        np.copyto(plane, acc, casting="unsafe")  # truncation after + 0.5: rounding to nearest
