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
    with pytest.raises(InputError, match=r"fps must lie in \[0.001, 10000\]"):
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
                                       (float("nan"), "must lie in"), (-1, "must lie in")])
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


# ---------------------------------------------------------------- physical ranges (issue 24: S1, S2)
@pytest.mark.parametrize("fps", [1e-320, 1e-40, 5e-4, 1e4 * 1.001, 1e300, float("inf")])
def test_fps_outside_the_physical_range_is_refused(det, fps):
    """1e-320 used to give [Infinity, Infinity] segments (not JSON), 1e300 collapsed them to 0."""
    with pytest.raises(InputError, match=r"video 'v': fps must lie in \[0.001, 10000\] frames per second"):
        det.detect(np.zeros((20, 64), np.float32), fps=fps, video_id="v")


@pytest.mark.parametrize("fps", [1e-3, 1e4])
def test_fps_at_the_range_ends_gives_finite_seconds(det, fps):
    x = np.random.default_rng(4).standard_normal((60, 64)).astype(np.float32)
    r = det.detect(x, fps=fps)
    cand = det.detect(x, fps=30.0)  # same grid positions: seconds scale by 30 / fps
    assert len(r) == len(cand) > 0 and np.isfinite(r.segments).all()
    # NMS works in grid steps: the same detections, their seconds (and the duration) scaled by 30 / fps
    np.testing.assert_array_equal(r.labels, cand.labels)
    np.testing.assert_allclose(r.segments, cand.segments.astype(np.float64) * 30.0 / fps, rtol=1e-5)
    assert r.duration == pytest.approx(cand.duration * 30.0 / fps, rel=1e-12)


@pytest.mark.parametrize("scale", [3e38, 1e20, 2e8])
def test_finite_features_out_of_range_are_refused(det, scale):
    """3e38 passed the NaN screen and the network gave NaN and 0 detections without a word; at
    1e20 (finite outputs) the detections silently differ from those of the same features at 1."""
    x = np.random.default_rng(5).standard_normal((40, 64)).astype(np.float32)
    x[11, 7] = scale
    with pytest.raises(InputError, match=r"video 'v': feature values out of range: .*step 11, channel 7"):
        det.detect(x, fps=30, video_id="v")


def test_features_up_to_the_bound_are_accepted(det):
    x = np.random.default_rng(5).standard_normal((40, 64)).astype(np.float32)
    x /= np.abs(x).max()
    r = det.detect(x * np.float32(1e8), fps=30)  # the bound itself: accepted, finite
    assert len(r) > 0 and np.isfinite(r.scores).all()


def test_float64_beyond_float32_is_out_of_range_not_nan(det):
    x = np.zeros((20, 64))
    x[3, 4] = 1e300  # becomes inf in float32: reported as what it is
    with pytest.raises(InputError, match=r"out of range: \|x\| = 1e\+300 \(first at step 3, channel 4\)"):
        det.detect(x, fps=30)


def test_non_finite_network_outputs_name_the_video():
    """A backend whose outputs hold NaN (here for the second video of a batch only) raises an
    InputError naming that video instead of returning 0 detections."""
    base = mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                           GOLDEN / "thumos_small" / "ckpt.pth.tar")

    class NanForSecond(type(base.backend)):
        def _infer_impl(self, feats, lengths):
            out = {k: v.clone() for k, v in super()._infer_impl(feats, lengths).items()}
            if feats.shape[0] > 1:
                out["seg_end"][1, 5, 0] = float("nan")
            return out

    base.backend.__class__ = NanForSecond
    x = np.random.default_rng(6).standard_normal((30, 64)).astype(np.float32)
    with pytest.raises(InputError, match=r"^video 'b': the network's outputs are NaN or Inf: the features are out of "
                                         r"range"):
        base.detect_batch([x, x, x], fps=30, video_ids=["a", "b", "c"])
    assert len(base.detect(x, fps=30)) > 0  # one video: no NaN, normal answer


# ---------------------------------------------------------------- iterables and devices
def test_detect_batch_takes_any_iterable(det):
    rng = np.random.default_rng(8)
    videos = [rng.standard_normal((t, 64)).astype(np.float32) for t in (30, 50)]
    ref = det.detect_batch(videos, fps=30, video_ids=["a", "b"])
    got = det.detect_batch((v for v in videos), fps=(f for f in (30, 30)), video_ids=iter(["a", "b"]))
    assert [r.video_id for r in got] == ["a", "b"]
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r.scores, g.scores)
    assert len(det.detect_candidates(v for v in videos)) == 2
    for bad in (5, "abc"):
        with pytest.raises(InputError, match="videos must be a list"):
            det.detect_batch(bad, fps=30)


def test_meta_tensor_is_refused(det):
    with pytest.raises(InputError, match="'meta' device holds no values"):
        det.detect(torch.zeros(20, 64, device="meta"), fps=30)


def test_results_json_refuses_non_finite_values(tmp_path):
    from mse_rt.io.results import DetectionResult

    bad = DetectionResult("v", np.array([[0.0, np.inf]], np.float32), np.array([0.5], np.float32),
                          np.array([1]), 30.0, 10.0)
    out = tmp_path / "r.json"
    with pytest.raises(InputError, match=r"video 'v': non-finite segment or score"):
        mse_rt.write_results_json([bad], out)
    assert not out.exists()
