"""Clips (mse_rt.video.clips): which frames a clip holds, its time, the tail, spatial preprocessing.

References are independent: brute-force frame lists, the runtime's own seconds convention
(``mse_rt.pipeline.segments.to_seconds``), a float64 numpy bilinear resize written here, torchvision's
size / crop formulas written out by hand, and videos whose frames show their own index (see
tests/video/test_sources.py for the pattern).
"""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from index_frames import pattern, read_index

from mse_rt.errors import ConfigError, InputError
from mse_rt.pipeline.segments import to_seconds
from mse_rt.video.clips import (
    Clip,
    ClipSampler,
    ClipSpec,
    batch_clips,
    center_crop,
    iter_clips,
    preprocess_frames,
    resize_frames,
    short_side_size,
)

# ---------------------------------------------------------------------------------------------
# helpers: index-carrying frames and videos


def write_video(path, ticks, time_base: Fraction, rate: int = 30) -> str:
    av = pytest.importorskip("av")
    codec = next((c for c in ("libx264", "libopenh264", "h264") if c in av.codecs_available), None)
    if codec is None:
        pytest.skip("no H.264 encoder in this PyAV build")
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.time_base = s.codec_context.time_base = time_base
        for j, p in enumerate(ticks):
            f = av.VideoFrame.from_ndarray(pattern(j), format="rgb24")
            f.pts, f.time_base = int(p), time_base
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return str(path)


def stamped(n: int, fps: float, h: int = 6, w: int = 8):
    """n frames on the grid: frame k filled with k (k < 256), time k / fps."""
    return [(k / fps, np.full((h, w, 3), k, np.uint8)) for k in range(n)]


def reference_clips(n: int, L: int, s: int, tail: str) -> list[list[int]]:
    """Brute force: frame lists of the clips of an n-frame stream."""
    out, i = [], 0
    while s * i + L <= n:
        out.append(list(range(s * i, s * i + L)))
        i += 1
    if tail == "pad":
        covered = {f for clip in out for f in clip}
        start = s * i
        # one padded clip when some frame it would hold is in no complete clip yet
        if any(f not in covered for f in range(start, min(start + L, n))):
            out.append([min(f, n - 1) for f in range(start, start + L)])
    return out


# ---------------------------------------------------------------------------------------------
# ClipSpec


def test_spec_defaults_and_round_trip():
    spec = ClipSpec()
    assert (spec.num_frames, spec.stride, spec.fps, spec.spatial, spec.size, spec.short_side) == \
        (16, 4, 30.0, "short_side_crop", 224, 256)
    assert ClipSpec(size=112).short_side == 128
    for s in (spec, ClipSpec(8, 2, 25, "resize", 112, None, False, "pad")):
        d = s.to_dict()
        assert ClipSpec.from_dict(d) == s and isinstance(d["fps"], float)
    assert spec.clip_shape == (16, 224, 224, 3)


@pytest.mark.parametrize("kw, msg", [
    ({"num_frames": 0}, "num_frames"), ({"stride": 1.5}, "stride"), ({"stride": True}, "stride"),
    ({"fps": 0}, "fps"), ({"fps": float("nan")}, "fps"), ({"fps": "30"}, "fps"),
    ({"spatial": "crop"}, "spatial"), ({"size": 0}, "size"), ({"size": 10_000}, "size"),
    ({"short_side": 200}, "short_side"), ({"spatial": "resize", "short_side": 256}, "short_side"),
    ({"antialias": 1}, "antialias"), ({"tail": "keep"}, "tail"),
])
def test_spec_validation(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ClipSpec(**kw)


def test_spec_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="strid"):
        ClipSpec.from_dict({**ClipSpec().to_dict(), "strid": 4})


def test_spec_from_tad_config():
    from mse_rt.config import load_config, published_config

    cfg = load_config(published_config("thumos_i3d"))       # feat_stride 4, num_frames 16, no default_fps
    with pytest.raises(ConfigError, match="default_fps"):
        ClipSpec.from_tad_config(cfg)
    spec = ClipSpec.from_tad_config(cfg, fps=30, spatial="resize", size=112)
    assert (spec.num_frames, spec.stride, spec.fps, spec.size) == (16, 4, 30.0, 112)
    yaml_like = {"dataset": {"feat_stride": 4.0, "num_frames": 16.0, "default_fps": 15}}
    assert ClipSpec.from_tad_config(yaml_like).stride == 4 and ClipSpec.from_tad_config(yaml_like).fps == 15.0
    with pytest.raises(ConfigError, match="stride"):
        ClipSpec.from_tad_config({"dataset": {"feat_stride": 4.5, "num_frames": 16, "default_fps": 30}})
    with pytest.raises(ConfigError, match="num_frames"):
        ClipSpec.from_tad_config({"dataset": {"feat_stride": 4}})


def test_clip_time_is_the_runtime_seconds_convention():
    for L, s, fps in [(16, 4, 30.0), (32, 16, 15.0), (8, 8, 25.0), (5, 3, 29.97)]:
        spec = ClipSpec(num_frames=L, stride=s, fps=fps, spatial="resize", size=8)
        ref = to_seconds(np.arange(50, dtype=np.float64), fps, s, L)
        np.testing.assert_allclose(spec.clip_time(np.arange(50)), ref, rtol=0, atol=1e-12)
        assert spec.clip_time(7) == pytest.approx(ref[7], abs=1e-12)
        assert spec.clip_time(7) == pytest.approx((spec.frame_range(7)[0] + spec.frame_range(7)[1]) / 2 / fps)


def test_num_clips_and_tad_duration():
    for L, s in [(16, 4), (4, 4), (3, 5), (1, 1), (16, 1)]:
        for tail in ("drop", "pad"):
            spec = ClipSpec(num_frames=L, stride=s, spatial="resize", size=8, tail=tail)
            for n in range(0, 60):
                T = spec.num_clips(n)
                assert T == len(reference_clips(n, L, s, tail)), (L, s, tail, n)
                if tail == "pad" and n >= L >= s:
                    assert T == math.ceil((n - L) / s) + 1
                if tail == "drop" and n >= L:
                    # the runtime's default duration is the video's length plus (0, stride] frames
                    frames = round(spec.tad_duration(T) * spec.fps, 6)
                    assert n < frames <= n + s, (L, s, n, frames)


# ---------------------------------------------------------------------------------------------
# ClipSampler on exact frames


@pytest.mark.parametrize("L, s", [(16, 4), (4, 4), (3, 5), (5, 2), (1, 1)])
@pytest.mark.parametrize("tail", ["drop", "pad"])
def test_sampler_clip_i_holds_frames_si_to_si_plus_L(L, s, tail):
    spec = ClipSpec(num_frames=L, stride=s, fps=30, spatial="resize", size=4, tail=tail)
    for n in (0, 1, L - 1, L, L + 1, 3 * s + L, 41):
        clips = list(ClipSampler(spec).clips(stamped(n, 30.0, 4, 4)))
        ref = reference_clips(n, L, s, tail)
        assert [c.index for c in clips] == list(range(len(ref)))
        for c, frames in zip(clips, ref):
            assert c.frames.shape == (L, 4, 4, 3) and c.frames.dtype == np.uint8
            assert c.frames[:, 0, 0, 0].tolist() == frames
            assert c.time_s == pytest.approx((s * c.index + L / 2) / 30.0, abs=1e-12)


def test_sampler_preprocesses_any_frame_size():
    spec = ClipSpec(num_frames=2, stride=2, fps=10, spatial="short_side_crop", size=8, short_side=10)
    frames = [(k / 10, np.full((241, 321, 3), 10 * k, np.uint8)) for k in range(4)]
    clips = list(ClipSampler(spec).clips(frames))
    assert [c.frames.shape for c in clips] == [(2, 8, 8, 3)] * 2
    assert clips[1].frames[:, 0, 0, 0].tolist() == [20, 30]


def test_sampler_checks_times_and_frames():
    spec = ClipSpec(num_frames=2, stride=1, fps=30, spatial="resize", size=4)
    sampler = ClipSampler(spec)
    sampler.push(0.0, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"frame 1 has time 0.04 s, expected 0.033333"):
        sampler.push(0.04, np.zeros((4, 4, 3), np.uint8))      # 25 fps frames fed to a 30 fps spec
    with pytest.raises(InputError, match="uint8"):
        sampler.push(1 / 30, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        sampler.push(1 / 30, np.zeros((4, 4), np.uint8))
    assert ClipSampler(spec, check_times=False).push(None, np.zeros((4, 4, 3), np.uint8)) is None
    sampler.finish()
    with pytest.raises(InputError, match="reset"):
        sampler.push(1 / 30, np.zeros((4, 4, 3), np.uint8))
    sampler.reset()
    assert sampler.push(0.0, np.zeros((4, 4, 3), np.uint8)) is None and sampler.frames_seen == 1


def test_batches():
    spec = ClipSpec(num_frames=4, stride=2, fps=30, spatial="resize", size=4)
    clips = list(ClipSampler(spec).clips(stamped(30, 30.0, 4, 4)))            # 14 clips
    batches = list(batch_clips(iter(clips), 5))
    assert [b.frames.shape for b in batches] == [(5, 4, 4, 4, 3), (5, 4, 4, 4, 3), (4, 4, 4, 4, 3)]
    assert np.concatenate([b.indices for b in batches]).tolist() == list(range(14))
    np.testing.assert_array_equal(np.concatenate([b.frames for b in batches]), np.stack([c.frames for c in clips]))
    np.testing.assert_allclose(np.concatenate([b.times_s for b in batches]), [c.time_s for c in clips])
    assert batches[0].indices.dtype == np.int64 and batches[0].times_s.dtype == np.float64
    with pytest.raises(InputError):
        next(batch_clips(iter(clips), 0))


def test_memory_is_bounded_by_the_clip_not_the_video():
    # 3000 frames of 64 x 64 (36 MB if kept); the pipeline holds a ring of L frames and a queue
    spec = ClipSpec(num_frames=16, stride=4, fps=30, spatial="resize", size=64)

    def frames():
        for k in range(3000):
            yield k / 30, np.full((64, 64, 3), k % 251, np.uint8)

    tracemalloc.start()
    n = 0
    for clip in iter_clips(frames(), spec, queue_size=4):
        n += 1
        assert clip.frames[0, 0, 0, 0] == (4 * clip.index) % 251
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == (3000 - 16) // 4 + 1
    assert peak < 4_000_000, peak                       # a few clips' worth (one clip: 196 kB)


# ---------------------------------------------------------------------------------------------
# spatial preprocessing


def reference_resize(img: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    """float64 separable bilinear: a tent kernel around each output pixel's centre (half-pixel
    convention), widened by the scale factor when shrinking with antialias, cut at the image edge
    and renormalised; rounded to nearest."""
    def weights(n_in: int, n_out: int) -> np.ndarray:
        scale = n_in / n_out
        support = scale if (antialias and scale > 1) else 1.0
        centres = (np.arange(n_out) + 0.5) * scale                     # in input pixel units
        pos = np.arange(n_in) + 0.5
        w = np.maximum(0.0, 1.0 - np.abs(pos[None, :] - centres[:, None]) / support)
        return w / w.sum(axis=1, keepdims=True)

    wy, wx = weights(img.shape[0], out_h), weights(img.shape[1], out_w)
    rows = np.tensordot(wy, img.astype(np.float64), axes=(1, 0))           # (out_h, W, 3)
    out = np.tensordot(rows, wx, axes=(1, 1)).transpose(0, 2, 1)          # (out_h, out_w, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("src, dst", [((96, 128), (64, 64)), ((241, 321), (112, 112)), ((48, 64), (112, 112)),
                                       ((240, 320), (256, 341)), ((37, 29), (16, 40))])
def test_resize_matches_float64_reference(src, dst, antialias):
    rng = np.random.default_rng(sum(src) + sum(dst))
    img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    got = resize_frames(img, *dst, antialias=antialias)
    ref = reference_resize(img, *dst, antialias)
    assert got.shape == (*dst, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 1, diff.max()
    batch = resize_frames(np.stack([img, img[::-1].copy()]), *dst, antialias=antialias)
    np.testing.assert_array_equal(batch[0], got)


def test_resize_same_size_is_identity_and_errors():
    img = np.zeros((5, 7, 3), np.uint8)
    assert resize_frames(img, 5, 7) is img
    with pytest.raises(InputError):
        resize_frames(img.astype(np.float32), 3, 3)
    with pytest.raises(InputError):
        resize_frames(img, 0, 3)


def test_short_side_size_and_centre_crop_follow_torchvision_rules():
    # torchvision Resize(int): short side to the size, long side int(size * long / short)
    assert short_side_size(240, 320, 256) == (256, 341)
    assert short_side_size(320, 240, 256) == (341, 256)
    assert short_side_size(241, 321, 256) == (256, 340)          # int(340.98...) truncates
    assert short_side_size(100, 100, 256) == (256, 256)
    # CenterCrop: offset int(round((extent - size) / 2))
    img = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3)
    np.testing.assert_array_equal(center_crop(img, 4), img[2:6, 2:6])    # (7-4)/2 = 1.5 -> 2; (9-4)/2 = 2.5 -> 2
    with pytest.raises(InputError):
        center_crop(img, 8)


def test_preprocess_modes_and_decoder_sized_frames():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (241, 321, 3), dtype=np.uint8)
    crop = ClipSpec(spatial="short_side_crop", size=112, short_side=128)
    out = preprocess_frames(frame, crop)
    nh, nw = short_side_size(241, 321, 128)
    ref = reference_resize(frame, nh, nw, True)
    top, left = int(round((nh - 112) / 2)), int(round((nw - 112) / 2))
    assert out.shape == (112, 112, 3)
    assert np.abs(out.astype(int) - ref[top:top + 112, left:left + 112]).max() <= 1
    # a frame the decoder already scaled to decode_size is only cropped
    pre = resize_frames(frame, *crop.decode_size(241, 321))
    np.testing.assert_array_equal(preprocess_frames(pre, crop), out)
    rs = ClipSpec(spatial="resize", size=112)
    assert rs.decode_size(241, 321) == (112, 112)
    assert np.abs(preprocess_frames(frame, rs).astype(int) - reference_resize(frame, 112, 112, True)).max() <= 1


# ---------------------------------------------------------------------------------------------
# clips of real (H.264) videos: which source frames each clip shows


def _clip_indices(path, spec) -> list[list[int]]:
    return [[read_index(f) for f in c.frames] for c in iter_clips(path, spec)]


def _check_clips(clips: list[Clip], spec: ClipSpec, grid: list[int]) -> None:
    """Clip i shows, at position m, the source frame the resampled grid shows at frame s*i + m."""
    L, s = spec.num_frames, spec.stride
    assert len(clips) == (len(grid) - L) // s + 1
    for c in clips:
        assert c.time_s == pytest.approx((c.index * s + L / 2) / spec.fps, abs=1e-12)
        assert [read_index(f) for f in c.frames] == grid[s * c.index:s * c.index + L]


SPEC = ClipSpec(num_frames=8, stride=4, fps=30, spatial="resize", size=64)


def test_clips_of_a_constant_rate_video(tmp_path):
    path = write_video(tmp_path / "cfr.mp4", range(60), Fraction(1, 30))
    _check_clips(list(iter_clips(path, SPEC)), SPEC, list(range(60)))


def test_clips_of_a_60fps_video_resampled_to_30(tmp_path):
    path = write_video(tmp_path / "f60.mp4", range(120), Fraction(1, 60), rate=60)
    _check_clips(list(iter_clips(path, SPEC)), SPEC, [2 * k for k in range(60)])


def test_clips_of_a_variable_rate_video(tmp_path):
    av = pytest.importorskip("av")
    rng = np.random.default_rng(11)
    ticks = np.concatenate([[0], np.cumsum(rng.integers(1, 5, size=59))]) * 1500   # 90 kHz, 1-4 sixtieths
    path = write_video(tmp_path / "vfr.mp4", ticks, Fraction(1, 90000))
    with av.open(path) as c:                 # the end of the last frame as the file stores it
        last = list(c.decode(video=0))[-1]
        end = Fraction(last.pts + last.duration, 90000)
    times = [Fraction(int(p), 90000) for p in ticks]
    grid, j, k = [], 0, 0
    while Fraction(k, 30) < end:             # sample and hold: the last frame with time <= k / 30
        while j + 1 < len(times) and times[j + 1] <= Fraction(k, 30):
            j += 1
        grid.append(j)
        k += 1
    assert len(set(grid)) < len(grid)        # repeats: a real VFR case
    _check_clips(list(iter_clips(path, SPEC)), SPEC, grid)


def test_iter_clips_refuses_fps_and_resize():
    with pytest.raises(InputError, match="fps"):
        next(iter_clips([], SPEC, fps=25))
