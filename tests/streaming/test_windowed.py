"""Streaming: equivalence with offline detection, mAP on long videos, bounded memory, errors."""

from __future__ import annotations

import numpy as np
import pytest

import mse_rt
from mse_rt import InputError
from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
from mse_rt.apps.synth import SyntheticSpec, class_patterns, make_video
from mse_rt.eval import THUMOS_TIOUS, evaluate
from mse_rt.streaming import StreamingDetector


@pytest.fixture(scope="module")
def det():
    return mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT)


def _video(seed, lo, hi):
    spec = SyntheticSpec(min_len=lo, max_len=hi)
    return make_video(np.random.default_rng(seed), spec, class_patterns(spec)), spec


def _stream(det, feats, chunk, hop=128):
    s = StreamingDetector(det, hop=hop, fps=30.0)
    parts = [s.push(feats[i:i + chunk]) for i in range(0, len(feats), chunk)]
    parts.append(s.flush())
    segs = np.concatenate([p.segments for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    return segs, scores, labels, s


def _as_set(segs, scores, labels):
    return sorted(zip(np.round(segs[:, 0], 5), np.round(segs[:, 1], 5), np.round(scores, 7), labels.tolist()))


@pytest.mark.parametrize("T,chunk", [(1, 1), (97, 13), (255, 64), (256, 37)])
def test_stream_within_one_window_equals_offline(det, T, chunk):
    (feats, _, _), _ = _video(T, 300, 300)
    feats = feats[:T]
    off = det.detect(feats, fps=30.0)
    segs, scores, labels, _ = _stream(det, feats, chunk)
    assert _as_set(segs, scores, labels) == _as_set(off.segments, off.scores, off.labels)


def test_long_streams_score_within_one_map_point_of_offline(det):
    videos, gt = [], {"database": {}}
    for i in range(6):
        (feats, segs, labels), spec = _video(100 + i, 800, 1000)
        vid = f"long_{i}"
        videos.append((vid, feats))
        secs = spec.seconds(segs)
        gt["database"][vid] = {"subset": "validation", "annotations": [
            {"segment": [float(s), float(e)], "label_id": int(c)} for (s, e), c in zip(secs, labels)]}
    offline, streamed = [], []
    for vid, feats in videos:
        offline.append(det.detect(feats, fps=30.0, video_id=vid))
        segs, scores, labels, _ = _stream(det, feats, chunk=50)
        r = offline[-1]
        streamed.append(mse_rt.DetectionResult(vid, segs, scores, labels, 30.0, r.duration))
    m_off = evaluate(offline, gt, THUMOS_TIOUS).average
    m_str = evaluate(streamed, gt, THUMOS_TIOUS).average
    assert m_off > 0.5, f"offline mAP {m_off:.3f}: the demo model should detect its own data"
    assert m_str >= m_off - 0.01, f"streamed mAP {m_str:.4f} vs offline {m_off:.4f}"


def test_each_action_once_and_absolute_times(det):
    (feats, segs, labels), spec = _video(7, 900, 900)
    out_segs, scores, out_labels, _ = _stream(det, feats, chunk=64)
    assert out_segs.min() >= 0 and out_segs.max() <= (900 * 4 + 16) / 30.0 + 1e-6
    strong = scores >= 0.3
    gt_secs = spec.seconds(segs)
    for (s, e), c in zip(gt_secs, labels):  # at most one confident detection per true action
        inter = np.minimum(out_segs[strong, 1], e) - np.maximum(out_segs[strong, 0], s)
        union = (out_segs[strong, 1] - out_segs[strong, 0]) + (e - s) - inter.clip(0)
        n = ((inter.clip(0) / union >= 0.7) & (out_labels[strong] == c)).sum()
        assert n <= 1


def test_bounded_memory_and_latency(det):
    s = StreamingDetector(det, hop=64, fps=30.0)
    rng = np.random.default_rng(0)
    chunk = 40
    for _ in range(200):  # 8000 steps, ~120 windows
        s.push(rng.standard_normal((chunk, 32)).astype(np.float32))
        assert sum(c.shape[1] for c in s._chunks) <= s.window + chunk
        assert s._pending is None or len(s._pending.scores) <= 2 * 2000 * 6
    stats = s.latency_stats()
    assert stats["count"] == 200 and stats["p95"] >= stats["p50"] > 0
    s.flush()
    with pytest.raises(InputError, match="flushed"):
        s.push(np.zeros((3, 32), np.float32))


def test_bad_arguments(det):
    with pytest.raises(InputError, match="hop"):
        StreamingDetector(det, hop=300)
    with pytest.raises(InputError, match="window must equal max_seq_len"):
        StreamingDetector(det, window=128)
    s = StreamingDetector(det)
    with pytest.raises(InputError, match="expected 32 feature channels"):
        s.push(np.zeros((5, 31), np.float32))


def test_zero_length_chunk_is_a_no_op(det):
    (feats, _, _), _ = _video(11, 400, 400)
    a = StreamingDetector(det, hop=64, fps=30.0)
    b = StreamingDetector(det, hop=64, fps=30.0)
    parts_a, parts_b = [], []
    for i in range(0, 400, 50):
        parts_a.append(a.push(feats[i:i + 50]))
        assert len(a.push(np.zeros((0, 32), np.float32))) == 0  # nothing new, nothing final
        parts_b.append(b.push(feats[i:i + 50]))
    assert a._received == b._received == 400
    ra, rb = a.flush(), b.flush()
    for x, y in zip(parts_a + [ra], parts_b + [rb]):
        np.testing.assert_array_equal(x.segments, y.segments)
    with pytest.raises(InputError, match="expected 32 feature channels"):
        StreamingDetector(det, fps=30.0).push(np.zeros((0, 31), np.float32))


def test_chunk_longer_than_the_buffer_is_split(det):
    (feats, _, _), _ = _video(12, 1000, 1000)
    whole = StreamingDetector(det, hop=128, fps=30.0)
    one = whole.push(feats)  # 1000 steps > window (256) and > what check_features allows at once here
    tail = whole.flush()
    segs, scores, labels, _ = _stream(det, feats, chunk=256)
    got = (np.concatenate([one.segments, tail.segments]), np.concatenate([one.scores, tail.scores]),
           np.concatenate([one.labels, tail.labels]))
    assert _as_set(*got) == _as_set(segs, scores, labels)


def test_bad_chunk_leaves_the_stream_intact(det):
    (feats, _, _), _ = _video(13, 900, 900)
    s = StreamingDetector(det, hop=128, fps=30.0)
    s.push(feats[:300])
    bad = feats[300:900].copy()
    bad[500, 0] = np.nan  # in the second piece of a long chunk: nothing of the chunk may be taken
    with pytest.raises(InputError, match="NaN"):
        s.push(bad)
    assert s._received == 300


@pytest.mark.parametrize("kw,match", [({"hop": 0}, "hop must be an integer in"), ({"hop": -4}, "hop"),
                                      ({"hop": 2.5}, "hop"), ({"fps": float("nan")}, r"fps must lie in \[0.001"),
                                      ({"fps": -30}, "fps must lie in"), ({"fps": 1e-40}, "fps must lie in"),
                                      ({"fps": "30"}, "fps must be a number")])
def test_bad_construction_arguments(det, kw, match):
    with pytest.raises(InputError, match=match):
        StreamingDetector(det, **kw)
