"""Bad input to the Detector raises typed errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt import BackendError, InputError

from golden_utils import GOLDEN


@pytest.fixture(scope="module")
def det():
    return mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                           GOLDEN / "thumos_small" / "ckpt.pth.tar")


def test_channels_first_hint(det):
    with pytest.raises(InputError, match=r"channels-first.*feats\.T"):
        det.detect(np.zeros((64, 50), np.float32), fps=30)


@pytest.mark.parametrize("x,match", [
    (np.zeros((50, 63), np.float32), "expected 64 feature channels"),
    (np.zeros((0, 64), np.float32), r"empty sequence"),
    (np.zeros((50,), np.float32), "2-D"),
    (np.zeros((50, 64), np.int64), "not floating point"),
    (torch.zeros(50, 64, dtype=torch.int32), "not floating point"),
    ([[0.0] * 64], "numpy array or torch tensor"),
    (np.zeros((256 * 6 + 1, 64), np.float32), "exceeds the longest supported"),
])
def test_bad_features(det, x, match):
    with pytest.raises(InputError, match=match):
        det.detect(x, fps=30)


def test_nan_and_inf(det):
    x = np.zeros((20, 64), np.float32)
    x[7, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or Inf \(first at step 7, channel 3\)"):
        det.detect(x, fps=30)
    x[7, 3] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        det.detect(x, fps=30)


def test_fps_required_and_positive(det):
    with pytest.raises(InputError, match="fps is required"):
        det.detect(np.zeros((20, 64), np.float32))
    with pytest.raises(InputError, match="positive"):
        det.detect(np.zeros((20, 64), np.float32), fps=0)
    with pytest.raises(InputError, match="2 entries for 3 videos"):
        det.detect_batch([np.zeros((20, 64), np.float32)] * 3, fps=[30, 30])


def test_longest_video_is_accepted(det):
    r = det.detect(np.random.default_rng(0).standard_normal((256 * 6, 64)).astype(np.float32), fps=30)
    assert r.segments.shape[1] == 2


def test_float64_and_torch_inputs_equal_float32(det):
    x = np.random.default_rng(1).standard_normal((40, 64)).astype(np.float32)
    a = det.detect(x, fps=30)
    b = det.detect(x.astype(np.float64), fps=30)
    c = det.detect(torch.from_numpy(x), fps=30)
    for r in (b, c):
        np.testing.assert_array_equal(a.scores, r.scores)
        np.testing.assert_array_equal(a.segments, r.segments)


def test_unknown_backend_and_nms():
    with pytest.raises(BackendError, match="unknown backend 'tpu'"):
        mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                        GOLDEN / "thumos_small" / "ckpt.pth.tar", backend="tpu")


def test_backend_checks_raw_infer(det):
    with pytest.raises(InputError, match="float32"):
        det.backend.infer(torch.zeros(1, 64, 256, dtype=torch.float64), torch.tensor([10]))
    with pytest.raises(InputError, match="lengths must lie"):
        det.backend.infer(torch.zeros(1, 64, 256), torch.tensor([0]))


def test_duplicate_video_ids_are_refused(det):
    x = np.zeros((20, 64), np.float32)
    with pytest.raises(InputError, match="duplicate video ids: 'a'"):
        det.detect_batch([x, x], fps=30, video_ids=["a", "a"])
    with pytest.raises(InputError, match="duplicate video ids: '1'"):
        det.detect_batch([x, x], fps=30, video_ids=[1, "1"])  # both become "1" in the results JSON
    with pytest.raises(InputError, match="duplicate"):
        mse_rt.write_results_json([det.detect(x, fps=30, video_id="v")] * 2, "unused.json")


@pytest.mark.parametrize("fps", [np.float32(30), np.int64(30), np.array(30.0), torch.tensor(30.0), 30])
def test_numeric_scalars_of_any_type_are_accepted(det, fps):
    x = np.random.default_rng(2).standard_normal((40, 64)).astype(np.float32)
    ref = det.detect(x, fps=30.0, duration=6.0)
    got = det.detect(x, fps=fps, duration=np.float64(6.0))
    np.testing.assert_array_equal(ref.segments, got.segments)
    assert got.fps == 30.0 and type(got.fps) is float


@pytest.mark.parametrize("fps,match", [("30", "must be a number"), (True, "must be a number"),
                                       (float("nan"), "positive finite"), (-1, "positive finite")])
def test_bad_fps_values(det, fps, match):
    with pytest.raises(InputError, match=match):
        det.detect(np.zeros((20, 64), np.float32), fps=fps)


@pytest.mark.parametrize("duration,match", [(-5, "positive finite"), (float("nan"), "positive finite"),
                                            (0, "positive finite"), ("5", "must be a number"),
                                            (1.0, "far shorter than its features")])
def test_bad_durations(det, duration, match):
    # 100 steps every 4 frames at 30 fps: the last window starts at 13.2 s
    with pytest.raises(InputError, match=match):
        det.detect(np.zeros((100, 64), np.float32), fps=30, duration=duration)


def test_duration_near_the_feature_span_is_accepted(det):
    x = np.random.default_rng(3).standard_normal((100, 64)).astype(np.float32)
    r = det.detect(x, fps=30, duration=12.5)  # a little shorter than 13.2 s: rounding, padded features
    assert (r.segments <= 12.5).all() and (r.segments >= 0).all()


def test_batched_results_match_one_at_a_time_under_the_documented_guarantee(det):
    """The guarantee (README, Padding policy and batching): not bit-identical (oneDNN picks other
    convolution kernels for other batch sizes), but head outputs within 1e-4 relative and the
    detections one-to-one: same label, score within 1e-5, both ends within 1e-3 s."""
    from mse_rt.pipeline.padding import pad_batch, pad_policy_length

    from golden_utils import assert_close_rel, match_detections

    rng = np.random.default_rng(7)
    lengths = [int(t) for t in rng.integers(10, 256, 9)] + [int(t) for t in rng.integers(257, 700, 6)]
    videos = [rng.standard_normal((t, 64)).astype(np.float32) for t in lengths]
    batched = det.detect_batch(videos, fps=30.0)
    single = [det.detect(v, fps=30.0) for v in videos]
    for i, (b, s) in enumerate(zip(batched, single)):
        match_detections(b.segments, b.scores, b.labels, s.segments, s.scores, s.labels, f"video {i} (T={lengths[i]})")
    short = [torch.from_numpy(v).T for v, t in zip(videos, lengths) if pad_policy_length(t, det.cfg) == 256]
    x, lens = pad_batch(short, 256)
    heads = det.backend.infer(x, lens)
    for j in range(len(short)):
        one = det.backend.infer(*pad_batch([short[j]], 256))
        for k in heads:
            assert_close_rel(heads[k][j].numpy(), one[k][0].numpy(), f"{k} of video {j}")
