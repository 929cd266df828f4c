"""Frame sources (mse_rt.video.sources): timestamps, resampling, decoder-side resizing, bad input, threads.

Test videos are written here with PyAV: every frame shows its own index as 16 big black / white
blocks (2 rows of 8), which survive H.264 compression and resizing, so a decoded frame says which
source frame it is. Expected pictures come from the frame times the test wrote (exact fractions),
never from the code under test.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from index_frames import pattern, read_index  # noqa: E402

from mse_rt.errors import BackendError, InputError  # noqa: E402
from mse_rt.video.clips import resize_frames  # noqa: E402
from mse_rt.video.sources import SourceError, SourceStalled, open_source  # noqa: E402

H, W = 96, 128


def h264_encoder() -> str:
    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except (ValueError, av.FFmpegError):
                continue
    pytest.skip("no H.264 encoder in this PyAV build")


def write_video(path, pts, time_base: Fraction, *, h: int = H, w: int = W, codec: str | None = None,
                pix_fmt: str = "yuv420p", rate: int = 30, container_options: dict | None = None,
                rotation: int | None = None, frames=None) -> str:
    """Frame j shows ``pattern(j)`` (or ``frames[j]``) at time ``pts[j] * time_base``."""
    codec = codec or h264_encoder()
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.time_base = time_base
        s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for j, p in enumerate(pts):
            img = pattern(j, h, w) if frames is None else frames[j]
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pix_fmt != "yuv420p":
                f = f.reformat(format=pix_fmt)
            f.pts, f.time_base = int(p), time_base
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return str(path)


def expected_grid(times, end, fps: Fraction) -> list[int]:
    """Reference sample-and-hold: for each k with k / fps < end, the last j with times[j] <= k / fps."""
    out, j, k = [], 0, 0
    while Fraction(k) / fps < end:
        g = Fraction(k) / fps
        while j + 1 < len(times) and times[j + 1] <= g:
            j += 1
        out.append(j)
        k += 1
    return out


def last_frame_end(path) -> Fraction:
    """End of the last frame (pts + duration) as the file stores it, read with PyAV directly."""
    with av.open(str(path)) as c:
        last = list(c.decode(video=0))[-1]
        return Fraction(last.pts + last.duration) * last.time_base


def decoded(src, **kw) -> list[tuple[float, np.ndarray]]:
    with open_source(src, **kw) as s:
        return list(s)


# ---------------------------------------------------------------------------------------------
# timestamps and resampling


def test_cfr_30_to_30_gives_every_frame_at_k_over_fps(tmp_path):
    path = write_video(tmp_path / "cfr.mp4", range(60), Fraction(1, 30))
    with open_source(path, fps=30) as s:
        info = s.info
        out = list(s)
    assert (info.kind, info.live, info.width, info.height, info.nominal_fps, info.declared_frames) == \
        ("file", False, W, H, 30.0, 60)
    assert info.declared_duration_s == pytest.approx(2.0)
    assert [read_index(f) for _, f in out] == list(range(60))
    assert [t for t, _ in out] == [k / 30 for k in range(60)]
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 and f.flags.c_contiguous for _, f in out)


def test_60fps_resampled_to_30_takes_every_second_frame(tmp_path):
    path = write_video(tmp_path / "f60.mp4", range(120), Fraction(1, 60), rate=60)
    with open_source(path, fps=30) as s:
        out = list(s)
        stats = dict(s.stats)
    assert [read_index(f) for _, f in out] == [2 * k for k in range(60)]
    assert stats["decoded"] == 120 and stats["converted"] == 60   # unused frames are never converted


def test_without_fps_yields_source_frames_with_their_times(tmp_path):
    pts = [0, 1500, 6000, 7500, 13500]                       # 90 kHz: 0, 1/60, 1/15, 1/12, 0.15 s
    path = write_video(tmp_path / "raw.mp4", pts, Fraction(1, 90000))
    out = decoded(path)
    assert [read_index(f) for _, f in out] == list(range(5))
    np.testing.assert_allclose([t for t, _ in out], [p / 90000 for p in pts], atol=1e-9)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_resampled_by_timestamp(tmp_path, ext):
    # intervals of 1..4 sixtieths of a second; Matroska stores them rounded to 1 ms (67 ms for
    # 66.67 ms), which the resampling tolerance must absorb
    rng = np.random.default_rng(7)
    steps = rng.integers(1, 5, size=70)
    ticks = np.concatenate([[0], np.cumsum(steps[:-1])]) * 1500  # 90 kHz
    path = write_video(tmp_path / f"vfr.{ext}", ticks, Fraction(1, 90000))
    times = [Fraction(int(p), 90000) for p in ticks]
    end = last_frame_end(path)
    ref = expected_grid(times, end, Fraction(30))
    assert len(ref) > 70                                      # longer than the frame count: repeats happen
    out = decoded(path, fps=30)
    assert [read_index(f) for _, f in out] == ref
    assert [t for t, _ in out] == [k / 30 for k in range(len(ref))]


def test_iterable_vfr_exact_rule_and_end(tmp_path):
    # sample and hold on exact times; the last frame lasts the last interval
    times = [0.0, 0.01, 0.05, 0.05, 0.2, 0.21, 0.3]
    frames = [np.full((4, 6, 3), j, np.uint8) for j in range(len(times))]
    out = decoded(list(zip(times, frames)), fps=20)
    ref = expected_grid([Fraction(t).limit_denominator(1000) for t in times], Fraction(39, 100), Fraction(20))
    assert [int(f[0, 0, 0]) for _, f in out] == ref
    assert ref == [0, 3, 3, 3, 4, 5, 6, 6]                    # 0.05 twice: the later frame wins


def test_times_are_relative_to_the_first_frame(tmp_path):
    path = write_video(tmp_path / "late.mp4", [900 + i for i in range(20)], Fraction(1, 30))   # starts at 30 s
    with open_source(path, fps=30) as s:
        out = list(s)
        assert s.start_time_s == pytest.approx(30.0, abs=1e-6)
    assert out[0][0] == 0.0 and [read_index(f) for _, f in out] == list(range(20))


# ---------------------------------------------------------------------------------------------
# decoder-side resizing, pixel formats, sizes, rotation


def test_decoder_resize_matches_numpy_antialiased_resize(tmp_path):
    # smooth content in 4:4:4; both paths start from the same decoded picture, so what differs is
    # swscale (colour conversion after its resize) vs torch (resize after conversion), plus rounding
    rng = np.random.default_rng(0)
    big = resize_frames(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 240, 320, antialias=False)
    path = write_video(tmp_path / "smooth.mp4", [0], Fraction(1, 30), h=240, w=320, pix_fmt="yuv444p",
                       frames=[big])
    full = decoded(path)[0][1]
    for size in [(224, 224), (112, 112), (256, 341)]:
        small = decoded(path, resize=size)[0][1]
        assert small.shape == (*size, 3)
        diff = np.abs(small.astype(int) - resize_frames(full, *size, antialias=True))
        assert diff.max() <= 4 and diff.mean() < 0.5, (size, diff.max(), diff.mean())


def test_resize_callable_gets_source_height_width(tmp_path):
    path = write_video(tmp_path / "a.mp4", range(3), Fraction(1, 30))
    seen = []

    def size(h, w):
        seen.append((h, w))
        return h // 2, w // 4

    out = decoded(path, resize=size)
    assert seen == [(H, W)] and out[0][1].shape == (H // 2, W // 4, 3)
    assert [read_index(f) for _, f in out] == [0, 1, 2]


def test_odd_size_video(tmp_path):
    # x264 refuses odd sizes in 4:2:0; 4:4:4 stores 321 x 241 as is
    path = write_video(tmp_path / "odd.mp4", range(8), Fraction(1, 30), h=241, w=321, pix_fmt="yuv444p")
    out = decoded(path, fps=30)
    assert out[0][1].shape == (241, 321, 3)
    assert [read_index(f) for _, f in out] == list(range(8))


def test_grayscale_video_becomes_rgb(tmp_path):
    if "ffv1" not in av.codecs_available:
        pytest.skip("no ffv1 encoder")
    frames = [pattern(j)[:, :, 0] for j in range(4)]
    path = tmp_path / "gray.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = W, H, "gray"
        for j, g in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(g), format="gray")
            f.pts = j
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"
    out = decoded(path, fps=30)
    for j, (_, f) in enumerate(out):
        assert f.shape == (H, W, 3)
        assert np.array_equal(f[..., 0], f[..., 1]) and np.array_equal(f[..., 0], f[..., 2])
        np.testing.assert_array_equal(f[..., 0], pattern(j)[..., 0])   # lossless: exact 0 / 255


def test_display_rotation_is_applied(tmp_path):
    img = pattern(5)
    img[:12, :16] = (255, 0, 0)                      # a red corner, top left as stored
    path = write_video(tmp_path / "rot.mp4", [0, 1], Fraction(1, 30), pix_fmt="yuv444p", rotation=90,
                       frames=[img, img])
    f = decoded(path)[0][1]
    assert f.shape == (W, H, 3)                       # display size: a quarter turn
    # 90 degrees counter-clockwise (FFmpeg's display matrix): top left goes to bottom left
    red = (f[..., 0].astype(int) - f[..., 1]) > 100
    assert red[-14:-2, 1:10].all() and not red[:W // 2].any()
    raw = decoded(path, autorotate=False)[0][1]
    assert raw.shape == (H, W, 3)
    resized = decoded(path, resize=(64, 48))[0][1]   # the size is the displayed one
    assert resized.shape == (64, 48, 3)


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_empty_text_and_folder(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty.*empty\.mp4|empty\.mp4.*empty"):
        open_source(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(SourceError, match="text.mp4"):
        open_source(tmp_path / "text.mp4")
    with pytest.raises(SourceError, match="folder"):
        open_source(tmp_path)
    assert issubclass(SourceError, InputError)


def _audio_only(path, with_video_stream: bool):
    with av.open(str(path), "w") as c:
        if with_video_stream:
            v = c.add_stream(h264_encoder(), rate=30)
            v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        for i in range(5):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            c.mux(a.encode(fr))
        c.mux(a.encode(None))
    return path


def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(SourceError, match=r"audio\.mp4 has no video stream \(streams: audio\)"):
        open_source(_audio_only(tmp_path / "audio.mp4", False))


def test_video_stream_without_frames(tmp_path):
    path = _audio_only(tmp_path / "noframes.mkv", True)
    with pytest.raises(SourceError, match=r"noframes\.mkv: no video frames"):
        decoded(path, fps=30)


@pytest.mark.parametrize("kind", ["mp4", "mp4_faststart", "mkv"])
def test_file_cut_in_half(tmp_path, kind):
    opts = {"movflags": "faststart"} if kind == "mp4_faststart" else None
    ext = "mkv" if kind == "mkv" else "mp4"
    full = write_video(tmp_path / f"full.{ext}", range(90), Fraction(1, 30), container_options=opts)
    data = open(full, "rb").read()
    cut = tmp_path / f"half.{ext}"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(SourceError, match=r"half\.(mp4|mkv)"):
        decoded(cut, fps=30)
    if kind == "mkv":  # check_length=False accepts what is left: right pictures up to the cut
        idx = [read_index(f) for _, f in decoded(cut, fps=30, check_length=False)]
        assert 10 < len(idx) < 60 and idx[:10] == list(range(10))
        # near the cut a frame whose data is gone is skipped: the grid holds the one before
        assert all(k - 1 <= j <= k for k, j in enumerate(idx))


def test_resolution_bound(tmp_path):
    path = write_video(tmp_path / "a.mp4", range(3), Fraction(1, 30))
    with pytest.raises(SourceError, match=r"128x96 exceeds max_pixels=10000"):
        open_source(path, max_pixels=10_000)
    frames = [(0.0, np.zeros((200, 100, 3), np.uint8))]
    with pytest.raises(SourceError, match="exceeds max_pixels"):
        decoded(frames, max_pixels=10_000)


def test_bad_iterable_items():
    good = np.zeros((4, 4, 3), np.uint8)
    cases = [([(0.0, good.astype(np.float32))], "uint8"),
             ([(0.0, np.zeros((4, 4, 4), np.uint8))], "shape"),
             ([(0.0, "frame")], "numpy array"),
             ([(float("nan"), good)], "finite"),
             ([good], "pair"),
             ([(0.0, good), (0.5, good), (0.2, good)], "backwards")]
    for items, msg in cases:
        with pytest.raises(SourceError, match=msg):
            decoded(items, fps=10, name="cam7")
    gray = decoded([(0.0, np.full((4, 5), 9, np.uint8))])[0][1]
    assert gray.shape == (4, 5, 3) and (gray == 9).all()
    kept = decoded([(0.0, good), (0.5, good + 1), (0.2, good + 2), (0.6, good + 3)], on_backwards="drop")
    assert [int(f[0, 0, 0]) for _, f in kept] == [0, 1, 3]


def test_bad_arguments(tmp_path):
    for kw in ({"fps": 0}, {"fps": float("inf")}, {"queue_size": 0}, {"timeout": -1}, {"resize": (0, 5)},
               {"overflow": "x"}, {"max_pixels": 0}):
        with pytest.raises(InputError):
            open_source([], **kw)
    with pytest.raises(InputError):
        open_source(b"bytes")
    path = write_video(tmp_path / "a.mp4", range(2), Fraction(1, 30))
    with pytest.raises(InputError, match="interpolation"):
        open_source(path, interpolation="nearest-ish")
    with pytest.raises(InputError, match="decoder_threads"):
        open_source(path, decoder_threads=-1)


def test_missing_pyav_is_a_backend_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(BackendError, match=r"pip install 'mse-rt\[video\]'"):
        open_source(tmp_path / "x.mp4")


def test_unknown_device_and_url_credentials_hidden():
    if "dshow" not in av.formats_available:          # DirectShow exists on Windows builds only
        with pytest.raises(BackendError, match="no 'dshow' capture device"):
            open_source("dshow:video=Camera")
    with pytest.raises(SourceError) as err:
        open_source("rtsp://user:secret@127.0.0.1:1/stream", timeout=2)   # nothing listens on port 1
    assert "secret" not in str(err.value) and "127.0.0.1" in str(err.value)


# ---------------------------------------------------------------------------------------------
# threads: stall timeout, close, bounded read-ahead


def _source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mse_rt-source:")]


def test_stall_timeout_names_the_source_and_close_ends_the_reader():
    release = threading.Event()

    def blocking():
        yield 0.0, np.zeros((4, 4, 3), np.uint8)
        yield 0.1, np.ones((4, 4, 3), np.uint8)
        release.wait(10)                              # a live source that stops delivering
        yield 0.2, np.ones((4, 4, 3), np.uint8)

    src = open_source(blocking(), fps=10, timeout=0.3, name="cam1")
    assert next(src)[0] == 0.0                       # frame 0 is due once frame 1 has arrived
    t0 = time.monotonic()
    with pytest.raises(SourceStalled, match=r"cam1: no frame within 0.3 s") as err:
        next(src)
    assert 0.25 < time.monotonic() - t0 < 3 and err.value.source == "cam1"
    assert isinstance(err.value, SourceError)
    release.set()                                     # the iterable returns: the thread can see the stop
    src.close()
    assert not src.reader_alive


def test_close_mid_file_stops_the_reader(tmp_path):
    path = write_video(tmp_path / "a.mp4", range(90), Fraction(1, 30))
    before = len(_source_threads())
    src = open_source(path, fps=30, queue_size=2)
    next(src)
    time.sleep(0.1)                                   # the reader fills the queue and waits
    assert src.reader_alive and src.stats["converted"] <= 5
    src.close()
    assert not src.reader_alive and len(_source_threads()) == before
    with pytest.raises(StopIteration):
        next(src)


def test_abandoned_source_stops_its_reader():
    def endless():
        k = 0
        while True:
            yield k / 30, np.zeros((8, 8, 3), np.uint8)
            k += 1

    src = open_source(endless(), fps=30, queue_size=2)
    next(src)
    thread = src._thread
    del src
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


def test_live_device_source_and_close():
    if "lavfi" not in av.formats_available:
        pytest.skip("no lavfi in this PyAV build")
    with open_source("lavfi:testsrc2=size=64x48:rate=30", fps=15, resize=(24, 32)) as src:
        assert src.info.live and src.info.kind == "device"
        out = [next(src) for _ in range(5)]
        assert [t for t, _ in out] == [k / 15 for k in range(5)] and out[0][1].shape == (24, 32, 3)
    assert not src.reader_alive


def test_drop_oldest_keeps_the_grid_complete():
    n = 200
    frames = [(k / 30, np.full((2, 2, 3), k, np.uint8)) for k in range(n)]
    with open_source(frames, fps=30, queue_size=2, overflow="drop_oldest") as src:
        out = []
        for t, f in src:
            deadline = time.monotonic() + 5
            while not out and src.stats["decoded"] < n and time.monotonic() < deadline:
                time.sleep(0.01)                      # a stalled consumer: the reader reads all and drops
            out.append((t, int(f[0, 0, 0])))
        dropped = src.stats["dropped"]
    assert dropped > 0
    assert [t for t, _ in out] == [k / 30 for k in range(n)]          # every grid time is there
    vals = [v for _, v in out]
    assert vals[-1] == n - 1 and all(a <= b for a, b in zip(vals, vals[1:]))  # held, never out of order


def test_bounded_read_ahead():
    produced = []

    def counting():
        for k in range(1000):
            produced.append(k)
            yield k / 30, np.zeros((2, 2, 3), np.uint8)

    with open_source(counting(), fps=30, queue_size=3) as src:
        next(src)
        time.sleep(0.2)
        # taken: frame 0; queued: 1-3; waiting to be queued: 4 (due once 5 arrived)
        assert len(produced) <= 6
