"""Synthetic action videos (mse_rt.video.render): determinism, ground truth vs pixels, motions, files.

The ground-truth checks are independent of the renderer's bookkeeping: they read the segments in
seconds, turn them into frames with round(s * fps), and look at the pixels of a render with the
background and distractors switched off (flat black): the action shape must be visible in exactly
those frames. The motion checks measure each class's motion from the pixels (mask centroid, area,
brightness) and test the property that defines the class.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from mse_rt.errors import BackendError, ConfigError, InputError
from mse_rt.video import render, scene
from mse_rt.video.render import MOTIONS, VideoSynthSpec, render_dataset, render_frames, render_video

# 3-4 s videos at 96 x 72: every test renders in a fraction of a second
TINY = VideoSynthSpec(width=96, height=72, min_duration_s=3.0, max_duration_s=4.0, short_len_s=(0.5, 1.0),
                      long_len_s=(1.2, 1.6), gap_s=(0.2, 0.6), idle_s=(0.8, 1.0), distractors=2)
CLEAN = replace(TINY, background=False, distractors=0, classes=MOTIONS)


def _gt_frames(annotations: list[dict], fps: float) -> list[tuple[int, int, str]]:
    """[(f0, f1, label)] from segments in seconds; fails unless both ends lie on frame boundaries."""
    out = []
    for a in annotations:
        s, e = a["segment"]
        f0, f1 = round(s * fps), round(e * fps)
        assert abs(s * fps - f0) < 1e-6 and abs(e * fps - f1) < 1e-6, a
        out.append((f0, f1, a["label"]))
    return out


def _all_frames(video) -> np.ndarray:
    return np.stack([f for _, f in video])


def test_same_seed_same_frames_other_seed_differs():
    a, b, c = render_frames(5, TINY), render_frames(5, TINY), render_frames(6, TINY)
    fa, fb = _all_frames(a), _all_frames(b)
    assert fa.dtype == np.uint8 and fa.shape == (a.num_frames, 72, 96, 3)
    assert np.array_equal(fa, fb) and a.annotations == b.annotations
    fc = _all_frames(c)
    n = min(len(fa), len(fc))
    assert a.annotations != c.annotations or len(fa) != len(fc)
    assert np.mean(fa[:n] != fc[:n]) > 0.5  # another background, other shapes: most pixels differ
    # frames are a pure function of the plan: any order gives the same pixels
    order = np.random.default_rng(0).permutation(a.num_frames)[:10]
    for i in order:
        assert np.array_equal(a.frame(int(i)), fa[i])
    times = [t for t, _ in a]
    assert times == [i / 30.0 for i in range(a.num_frames)]


def test_annotations_valid_and_thumos_like():
    for seed in range(40):
        v = render_frames(seed, TINY)
        assert v.num_frames == round(v.duration * v.fps) and 3.0 - 1 / 30 <= v.duration <= 4.0 + 1 / 30
        gt = _gt_frames(v.annotations, v.fps)
        assert gt, f"seed {seed}: no instance"
        assert gt[0][0] > 0 and gt[-1][1] < v.num_frames  # background-only lead-in and tail
        for (f0, f1, label), a in zip(gt, v.annotations):
            assert 0 < f0 < f1 <= v.num_frames
            assert TINY.classes[a["label_id"]] == label
            n = (f1 - f0) / v.fps
            assert 0.5 - 0.5 / 30 <= n <= 1.0 + 0.5 / 30 or 1.2 - 0.5 / 30 <= n <= 1.6 + 0.5 / 30, n
        for (_, e, _), (s, _, _) in zip(gt, gt[1:]):
            assert s > e  # sorted, disjoint, at least one background frame between instances
    # the default spec: 30-60 s videos, short 1-4 s and long 5-12 s instances, gaps 0.5-6 s or 6-15 s
    lengths, gaps = [], []
    for seed in range(12):
        v = scene.plan_timeline(np.random.default_rng(seed), VideoSynthSpec())
        n, ranges = v
        assert 30 * 30 <= n <= 60 * 30 and ranges
        lengths += [(f1 - f0) / 30 for f0, f1 in ranges]
        gaps += [(b[0] - a[1]) / 30 for a, b in zip(ranges, ranges[1:])]
    lengths, gaps = np.asarray(lengths), np.asarray(gaps)
    assert np.all(((lengths >= 1) & (lengths <= 4)) | ((lengths >= 5) & (lengths <= 12)))
    assert np.any(lengths >= 5) and np.any(lengths <= 4)
    assert np.all((gaps >= 0.5) & (gaps <= 15))


def test_action_pixels_exactly_in_ground_truth_frames():
    for seed in range(6):
        v = render_frames(seed, CLEAN)
        frames = _all_frames(v)
        shown = frames.reshape(len(frames), -1).any(axis=1)  # anything but the flat black background
        expected = np.zeros(v.num_frames, bool)
        for f0, f1, _ in _gt_frames(v.annotations, v.fps):
            expected[f0:f1] = True
        assert np.array_equal(shown, expected), f"seed {seed}: frames {np.flatnonzero(shown != expected)}"
        # the whole shape lies inside the frame: nothing touches the border
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert not border.any()


def test_full_render_shows_the_same_action_shape():
    """Background and distractors do not change the plan: the clean render's shape is drawn on top."""
    for seed in range(3):
        full, clean = render_frames(seed, TINY), render_frames(seed, replace(TINY, background=False, distractors=0))
        assert full.annotations == clean.annotations
        for f0, f1, _ in _gt_frames(full.annotations, full.fps):
            for i in (f0, (f0 + f1) // 2, f1 - 1):
                a, b = full.frame(i), clean.frame(i)
                on = b.any(axis=2)
                # pixels inside the shape (8-neighbours inside too) carry its colour exactly, whatever
                # lies below, except where the anti-aliased rim reaches deeper (long thin ends)
                inner = on.copy()
                for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    inner &= np.roll(on, (dy, dx), (0, 1)) & np.roll(on, (-dy, -dx), (0, 1))
                assert inner.sum() >= 5 and np.mean(np.all(a[inner] == b[inner], axis=1)) > 0.6
                assert not np.array_equal(a[~on], b[~on])  # and the background is there
        # frame 0 precedes every instance: black in the clean render, background in the full one
        assert not clean.frame(0).any() and full.frame(0).any()


def _tracks(motion: str, seeds=range(3)):
    """Per instance of ``motion``: centroid (n, 2) x/y, mask area (n,), mean brightness (n,), frames (n, H, W, 3)."""
    spec = replace(TINY, width=128, height=96, classes=(motion,), background=False, distractors=0,
                   short_len_s=(1.5, 2.0), long_len_s=(2.0, 2.0), min_duration_s=3.0, max_duration_s=3.5)
    for seed in seeds:
        v = render_frames(seed, spec)
        for f0, f1, label in _gt_frames(v.annotations, v.fps):
            assert label == motion
            frames = np.stack([v.frame(i) for i in range(f0, f1)])
            mask = frames.any(axis=3)
            w = mask.astype(np.float64)
            area = w.sum(axis=(1, 2))
            ys, xs = np.mgrid[0:mask.shape[1], 0:mask.shape[2]]
            cen = np.stack([(w * xs).sum(axis=(1, 2)) / area, (w * ys).sum(axis=(1, 2)) / area], axis=1)
            bright = np.asarray([f[m].mean() for f, m in zip(frames, mask)])
            yield cen, area, bright, frames, spec


def _spread(cen: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(cen - cen.mean(axis=0), axis=1)))


@pytest.mark.parametrize("motion", MOTIONS)
def test_each_class_is_its_motion(motion):
    n = 0
    for cen, area, bright, frames, spec in _tracks(motion):
        n += 1
        H = spec.height
        still_area = np.std(area) / np.mean(area) < 0.05
        if motion == "translate":  # moves along a straight line, same size
            assert _spread(cen) > 0.1 * H and still_area
            sv = np.linalg.svd(cen - cen.mean(axis=0), compute_uv=False)
            assert sv[1] < 0.03 * sv[0]
        elif motion == "rotate":  # centre fixed, the pattern turns
            assert _spread(cen) < 1.0
            changed = np.mean(np.any(frames[2:] != frames[:-2], axis=3)[frames[2:].any(axis=3)])
            assert changed > 0.05
        elif motion == "bounce":  # x fixed; y is a chain of upward-opening parabolas (image y points down)
            assert np.ptp(cen[:, 0]) < 1.0 and np.ptp(cen[:, 1]) > 0.2 * H and still_area
            acc = np.diff(cen[:, 1], 2)
            assert np.mean(acc > 0) > 0.7
        elif motion == "scale":  # centre fixed, size swings
            assert _spread(cen) < 1.0 and area.max() / area.min() > 1.8
        elif motion == "flash":  # nothing moves, the colour pulses
            assert _spread(cen) < 0.5 and still_area and np.ptp(bright) > 30
        elif motion == "orbit":  # the centroid runs on a circle (least-squares circle fit)
            x, y = cen[:, 0], cen[:, 1]
            A = np.stack([x, y, np.ones_like(x)], axis=1)
            cx, cy, k = np.linalg.lstsq(A, x * x + y * y, rcond=None)[0]
            cx, cy = cx / 2, cy / 2
            r = np.hypot(x - cx, y - cy)
            rho = math.sqrt(k + cx * cx + cy * cy)
            assert rho > 0.1 * H and np.std(r) < 1.0 and still_area
        elif motion == "shake":  # small fast back-and-forth
            assert _spread(cen) < 0.07 * H and still_area
            d = cen - cen.mean(axis=0)
            axis = np.linalg.svd(d, full_matrices=False)[2][0]
            vel = np.diff(d @ axis)
            turns = np.sum(np.sign(vel[1:]) != np.sign(vel[:-1]))
            assert turns >= 2 * 4.5 * len(cen) / 30 * 0.8
    assert n >= 3


def test_render_video_file(tmp_path):
    av = pytest.importorskip("av")
    info = render_video(tmp_path / "a.mp4", 3, TINY)
    render_video(tmp_path / "b.mp4", 3, TINY)
    ref = render_frames(3, TINY)
    assert info == ref.info() and info["num_frames"] == ref.num_frames
    decoded = []
    for name in ("a.mp4", "b.mp4"):
        with av.open(str(tmp_path / name)) as c:
            st = c.streams.video[0]
            assert st.average_rate == 30 and st.codec_context.name == "h264"
            frames = list(c.decode(st))
            assert [round(f.time * 30) for f in frames] == list(range(ref.num_frames))
            assert all((f.width, f.height) == (96, 72) for f in frames)
            decoded.append(np.stack([f.to_ndarray(format="rgb24") for f in frames]))
    assert np.array_equal(decoded[0], decoded[1])  # H.264 encode + decode is deterministic
    err = np.abs(decoded[0].astype(np.float64) - _all_frames(ref))
    assert err.mean() < 6.0  # lossy, but the same video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temporary left


def test_render_dataset_format_and_eval_loader(tmp_path):
    pytest.importorskip("av")
    from mse_rt.apps.synth import SyntheticSpec, write_dataset
    from mse_rt.eval import load_ground_truth

    out = render_dataset(tmp_path / "ds", 2, seed=7, subset="validation", spec=TINY)
    db = json.loads((out / "annotations.json").read_text())["database"]
    assert sorted(db) == ["video_7_0000", "video_7_0001"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["video_7_0000.mp4", "video_7_0001.mp4"]
    # the same layout, keys and value types as the feature synth's annotations.json
    ref = json.loads((write_dataset(tmp_path / "feat", 1, seed=0, spec=SyntheticSpec(min_len=40, max_len=60))
                      / "annotations.json").read_text())
    ref_entry = next(iter(ref["database"].values()))
    for entry in db.values():
        assert set(entry) == set(ref_entry)
        assert {k: type(v) for k, v in entry.items()} == {k: type(v) for k, v in ref_entry.items()}
        for a in entry["annotations"]:
            assert set(a) == set(ref_entry["annotations"][0])
            assert [type(x) for x in a["segment"]] == [float, float]
            assert type(a["label_id"]) is int and type(a["label"]) is str
    gt = load_ground_truth(out / "annotations.json", split="validation")
    for i, vid in enumerate(sorted(db)):
        v = render_frames((7, i), TINY)
        sel = gt.video == vid
        np.testing.assert_array_equal(gt.start[sel], [a["segment"][0] for a in v.annotations])
        np.testing.assert_array_equal(gt.end[sel], [a["segment"][1] for a in v.annotations])
        assert db[vid]["duration"] == v.duration and db[vid]["fps"] == 30.0
    assert set(gt.names) <= set(TINY.classes) and all(TINY.classes[k] == n for n, k in gt.names.items())


def test_render_dataset_refuses_non_empty_folder(tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "ds"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "old_0000.mp4").write_bytes(b"old")
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty") as exc:
        render_dataset(out, 1, seed=0, spec=TINY)
    assert str(out) in str(exc.value)
    assert (out / "videos" / "old_0000.mp4").read_bytes() == b"old"  # nothing touched
    render_dataset(out, 1, seed=0, spec=TINY, overwrite=True)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["video_0_0000.mp4"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert list(json.loads((out / "annotations.json").read_text())["database"]) == ["video_0_0000"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        render_dataset(tmp_path / "file", 1, seed=0, spec=TINY)


@pytest.mark.slow  # spawns worker processes (each imports mse_rt)
def test_render_dataset_workers_same_result(tmp_path):
    pytest.importorskip("av")
    one = render_dataset(tmp_path / "one", 2, seed=4, spec=TINY)
    two = render_dataset(tmp_path / "two", 2, seed=4, spec=TINY, workers=2)
    assert (one / "annotations.json").read_text() == (two / "annotations.json").read_text()
    for name in ("video_4_0000.mp4", "video_4_0001.mp4"):
        assert (one / "videos" / name).read_bytes() == (two / "videos" / name).read_bytes()


def test_bad_input_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown motion"):
        VideoSynthSpec(classes=("translate", "wave"))
    with pytest.raises(ConfigError, match="even"):
        VideoSynthSpec(width=97)
    with pytest.raises(ConfigError, match="no instance"):
        VideoSynthSpec(min_duration_s=2.0, max_duration_s=3.0)
    with pytest.raises(ConfigError, match="preset"):
        VideoSynthSpec(preset="quick")
    with pytest.raises(ConfigError, match="shake at speed 2"):
        VideoSynthSpec(classes=("shake",), speed=(1.0, 2.5))
    with pytest.raises(ConfigError, match="object_size"):
        VideoSynthSpec(object_size=(0.2, 0.6))
    with pytest.raises(InputError, match="seed"):
        render_frames(-1, TINY)
    with pytest.raises(InputError, match="spec"):
        render_frames(0, {"width": 96})
    v = render_frames(0, TINY)
    with pytest.raises(InputError, match="frame index"):
        v.frame(v.num_frames)
    with pytest.raises(InputError, match="num_videos"):
        render_dataset(tmp_path / "x", 0, seed=0, spec=TINY)
    monkeypatch.setattr(render, "_H264_ENCODERS", ("no_such_h264_encoder",))
    pytest.importorskip("av")
    with pytest.raises(BackendError, match="H.264"):
        render_video(tmp_path / "v.mp4", 0, TINY)
    assert not list(tmp_path.iterdir())
