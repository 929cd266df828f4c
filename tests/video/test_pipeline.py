"""VideoDetector: frames -> clip features -> actions. The chain is checked against clips cut by hand
from the frames the test wrote (lossless FFV1 RGB, so decoding gives them back bit for bit), and
detection against the TAD detector run on those hand-made features with the video's own duration.

The helpers at the top (tiny videos, a numpy stub backbone, a TAD config with a ``video`` section)
are shared with tests/video/test_extract.py and tests/cli/test_detect.py (loaded by path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mse_rt.errors import ConfigError, InputError
from mse_rt.video.backbone import Backbone
from mse_rt.video.clips import ClipSpec
from mse_rt.video.registry import register_backbone

av = pytest.importorskip("av")

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "thumos_small"
CKPT = str(GOLDEN / "ckpt.pth.tar")
L, STRIDE, FPS, SIZE, DIM = 16, 4, 30.0, 32, 64  # thumos_small: 16 frames, stride 4, input_dim 64


# ---------------------------------------------------------------------------------------------------- helpers

def make_frames(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """(n, size, size, 3) uint8: blocky noise whose picture changes in a few segments (so the TAD model
    sees structure in time), plus a little per-frame noise."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(8, max(n - 8, 9)), size=3, replace=False)) if n > 20 else np.array([n])
    scenes = rng.integers(0, 256, (len(cuts) + 1, size // 8, size // 8, 3), dtype=np.uint8)
    scene_of = np.searchsorted(cuts, np.arange(n), side="right")
    base = np.repeat(np.repeat(scenes[scene_of], 8, axis=1), 8, axis=2).astype(np.int16)
    noise = rng.integers(-20, 21, base.shape, dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_video(path, frames: np.ndarray, fps: int = 30) -> Path:
    """Lossless video (FFV1, bgr0, Matroska container whatever the extension): decoding at ``fps``
    gives ``frames`` back exactly."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for j, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="bgr0")
            vf.pts = j
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


def stub_features(clips: np.ndarray) -> np.ndarray:
    """The stub backbone's map, in float64: clips (N, 16, 32, 32, 3) uint8 -> (N, 64) float32
    (means over 4 x 8 x 8 blocks, a fixed random projection)."""
    x = clips.astype(np.float64) / 255.0
    n = x.shape[0]
    pooled = x.reshape(n, 4, 4, 4, 8, 4, 8, 3).mean(axis=(2, 4, 6)).reshape(n, -1)  # (N, 192)
    w = np.random.default_rng(1234).standard_normal((pooled.shape[1], DIM)) / np.sqrt(pooled.shape[1])
    return (2.0 * (pooled - 0.5) @ w).astype(np.float32)


class StubBackbone(Backbone):
    """A numpy stand-in for I3D (the chain, not the network, is under test). ``interrupt_after``:
    raise KeyboardInterrupt on that backbone call (class-wide counter ``calls``)."""

    name = "stub-64"
    dim = DIM
    calls = 0
    interrupt_after: int | None = None

    def __init__(self, clip_shape=(L, SIZE, SIZE), max_batch: int = 4) -> None:
        if tuple(clip_shape) != (L, SIZE, SIZE):
            raise ConfigError(f"stub-64 takes ({L}, {SIZE}, {SIZE}) clips, got {clip_shape}")
        super().__init__(num_frames=L, size=SIZE, backend="eager", precision="fp32", weights_sha256="stub",
                         max_batch=max_batch)

    def _run(self, clips, outputs):
        StubBackbone.calls += 1
        if StubBackbone.interrupt_after is not None and StubBackbone.calls > StubBackbone.interrupt_after:
            raise KeyboardInterrupt
        return {"features": stub_features(clips)}


def _stub_factory(*, backend, precision, clip_shape, **_):
    if backend != "eager" or precision not in (None, "fp32"):
        raise ConfigError("stub-64 runs eager fp32 only")
    return StubBackbone(clip_shape)


register_backbone("stub-64", _stub_factory)


def tad_config(folder, *, video: dict | None = None, default_fps: float | None = FPS) -> str:
    """thumos_small's config (input_dim 64) with default_fps and a ``video`` section naming the stub."""
    cfg = yaml.safe_load((GOLDEN / "config.yaml").read_text())
    if default_fps is not None:
        cfg["dataset"]["default_fps"] = default_fps
    cfg["video"] = video if video is not None else {"backbone": "stub-64", "spatial": "resize", "size": SIZE}
    path = Path(folder) / "tad_video.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def hand_features(frames: np.ndarray) -> np.ndarray:
    """Reference chain: clip i = frames [4i, 4i + 16) (already 32 x 32; the video is at 30 fps), then
    the stub map on each clip alone."""
    T = (len(frames) - L) // STRIDE + 1
    return np.concatenate([stub_features(frames[None, i * STRIDE:i * STRIDE + L]) for i in range(T)])


# ---------------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def vd(tmp_path_factory):
    from mse_rt.video.pipeline import VideoDetector

    folder = tmp_path_factory.mktemp("vd")
    return VideoDetector.from_config(tad_config(folder), CKPT, clip_batch=3)


def test_features_equal_hand_made_clips(tmp_path, vd):
    frames = make_frames(61, seed=1)  # T = (61 - 16) // 4 + 1 = 12; batches of 3 clips: 4 calls
    feats = vd.features(write_video(tmp_path / "a.mkv", frames))
    assert feats.shape == (12, DIM) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, hand_features(frames), rtol=1e-6, atol=1e-6)


def test_detect_equals_detector_on_hand_features_with_real_duration(tmp_path, vd):
    frames = make_frames(130, seed=2)
    r = vd.detect(write_video(tmp_path / "b.mkv", frames))
    ref = vd.detector.detect(hand_features(frames), fps=FPS, duration=130 / FPS, video_id="b")
    assert r.video_id == "b" and r.duration == pytest.approx(130 / FPS)
    assert len(ref.scores) > 0
    np.testing.assert_allclose(r.segments, ref.segments, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.scores, ref.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r.labels, ref.labels)
    assert r.segments.max() <= 130 / FPS  # clipped to the real end, not (T * 4 + 16) / 30


def test_detect_many_batches_clips_across_videos(tmp_path, vd):
    frames = [make_frames(n, seed=10 + n) for n in (17, 40, 90)]  # 1, 7 and 19 clips: batches straddle videos
    paths = [write_video(tmp_path / f"v{i}.mkv", f) for i, f in enumerate(frames)]
    many = vd.detect_many(paths)
    assert [r.video_id for r in many] == ["v0", "v1", "v2"]
    for r, f in zip(many, frames):
        ref = vd.detector.detect(hand_features(f), fps=FPS, duration=len(f) / FPS, video_id=r.video_id)
        np.testing.assert_allclose(r.scores, ref.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.segments, ref.segments, rtol=1e-5, atol=1e-5)


def test_video_shorter_than_one_clip_says_T_0(tmp_path, vd):
    p = write_video(tmp_path / "short.mkv", make_frames(10, seed=3))
    with pytest.raises(InputError, match=r"short.mkv.*10 frames.*T = 0"):
        vd.detect(p)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50])
def test_unreadable_video_is_a_typed_error_naming_it(tmp_path, vd, content):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(InputError, match="bad.mp4"):
        vd.features(p)


def test_truncated_video_is_a_typed_error(tmp_path, vd):
    p = write_video(tmp_path / "t.mkv", make_frames(200, seed=4))
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 3])
    with pytest.raises(InputError, match="t.mkv"):
        vd.features(p)


def test_grayscale_and_odd_sizes_are_accepted(tmp_path, vd):
    # 45 x 37 grayscale: converted to RGB, resized to 32 x 32; features exist and are finite
    with av.open(str(tmp_path / "g.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = 45, 37, "gray"
        for j in range(20):
            f = av.VideoFrame.from_ndarray(np.full((37, 45), j * 10, np.uint8), format="gray")
            f.pts = j
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    feats = vd.features(tmp_path / "g.mkv")
    assert feats.shape == (2, DIM) and np.isfinite(feats).all()


def test_live_source_that_stalls_times_out(vd):
    import time

    from mse_rt.errors import SourceStalled

    def frames():
        for k in range(20):
            yield k / FPS, np.zeros((SIZE, SIZE, 3), np.uint8)
        time.sleep(1.0)  # the stall; closing the source waits for the iterable to return

    vd2 = type(vd)(vd.detector, vd.backbone, vd.spec, source_options={"timeout": 0.2})
    with pytest.raises(SourceStalled):
        vd2.features(frames())


def test_mismatches_are_refused_naming_both_values(tmp_path, vd):
    from mse_rt.video.pipeline import VideoDetector

    with pytest.raises(ConfigError, match=r"stride=8.*feat_stride = 4"):
        VideoDetector(vd.detector, vd.backbone, ClipSpec(num_frames=L, stride=8, fps=FPS, spatial="resize", size=SIZE))
    with pytest.raises(ConfigError, match=r"fps 25.*default_fps 30"):
        VideoDetector(vd.detector, vd.backbone, ClipSpec(num_frames=L, stride=4, fps=25, spatial="resize", size=SIZE))

    class Wide(StubBackbone):
        dim = 1024

    with pytest.raises(ConfigError, match=r"1024-wide.*input_dim is 64"):
        VideoDetector(vd.detector, Wide())


def test_identity_names_spec_and_backbone(vd):
    ident = json.loads(json.dumps(vd.identity))
    assert ident["backbone"]["name"] == "stub-64" and ident["backbone"]["weights_sha256"] == "stub"
    assert ident["clip_spec"]["stride"] == 4 and ident["clip_spec"]["size"] == SIZE


def test_audio_only_file_has_no_video_stream(tmp_path, vd):
    p = tmp_path / "sound.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for j in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, j * 1024
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    with pytest.raises(InputError, match=r"sound.mp4.*(no video|video stream)"):
        vd.features(p)


def test_huge_resolution_is_refused_before_decoding(tmp_path, vd):
    p = write_video(tmp_path / "big.mkv", make_frames(20, seed=6, size=64))
    vd2 = type(vd)(vd.detector, vd.backbone, vd.spec, source_options={"max_pixels": 32 * 32})
    with pytest.raises(InputError, match=r"big.mkv.*max_pixels"):
        vd2.features(p)


def test_variable_frame_rate_is_resampled_by_sample_and_hold(tmp_path, vd):
    """Source frames at irregular times (ms): feature clips are cut from the picture shown at each
    k / 30 s (the latest source frame at or before it), as docs/spec/video.md says."""
    from fractions import Fraction

    rng = np.random.default_rng(8)
    times, t = [0], 20  # times count from the first frame
    while len(times) < 70:
        if all(abs(t - k * 1000 / 30) > 3 for k in range(round(t * 30 / 1000) - 1, round(t * 30 / 1000) + 2)):
            times.append(t)  # never within 3 ms of a grid time: no tolerance question
        t += int(rng.integers(15, 60))
    src = make_frames(len(times), seed=9)
    p = tmp_path / "vfr.mkv"
    with av.open(str(p), "w") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = SIZE, SIZE, "bgr0"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for f, ms in zip(src, times):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="bgr0")
            vf.pts, vf.time_base = ms, Fraction(1, 1000)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    grid = np.array([np.searchsorted(times, k * 1000 / 30, side="right") - 1 for k in range(int(times[-1] * 30 / 1000))])
    ref = hand_features(src[grid])
    feats = vd.features(p)
    assert len(feats) >= len(ref) > 10
    np.testing.assert_allclose(feats[:len(ref)], ref, rtol=1e-6, atol=1e-6)
