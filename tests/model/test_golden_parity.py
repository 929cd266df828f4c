"""The eager pipeline against the reference code's own outputs (vendored golden vectors, tests/data/golden)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt.pipeline.padding import make_mask, pad_batch, pad_policy_length

from golden_utils import GOLDEN, GOLDEN_CONFIGS, assert_close_rel, golden_videos, match_detections


@pytest.fixture(scope="module", params=GOLDEN_CONFIGS)
def golden(request):
    name = request.param
    det = mse_rt.Detector.from_checkpoint(GOLDEN / name / "config.yaml", GOLDEN / name / "ckpt.pth.tar")
    return name, det, golden_videos(name)


def test_padding_policy_matches_reference(golden):
    name, det, videos = golden
    for v in videos:
        assert pad_policy_length(v["length"], det.cfg) == v["padded_len"] == int(v["data"]["padded_len"])


def test_backbone_and_heads(golden):
    name, det, videos = golden
    model = det.backend.model
    for v in videos:
        z = v["data"]
        x, lengths = pad_batch([torch.from_numpy(z["feats"])], int(z["padded_len"]))
        with torch.inference_mode():
            out = model(x, make_mask(lengths, x.shape[-1]), return_features=True)
        for level in range(6):
            tag = f"{name}/{v['video_id']} level {level}"
            assert_close_rel(out["feats"][level][0], z[f"backbone_feat_{level}"], f"{tag} backbone")
            assert (out["masks"][level][0, 0].numpy() == z[f"backbone_mask_{level}"]).all(), f"{tag} mask"
            for key in ("cls_logits", "start_logits", "end_logits", "offsets"):
                assert_close_rel(out[key][level][0], z[f"{key}_{level}"], f"{tag} {key}")


def test_candidates_and_detections_one_by_one(golden):
    name, det, videos = golden
    for v in videos:
        z = v["data"]
        r = det.detect(z["feats"].T, fps=float(z["fps"]), duration=float(z["duration"]),
                       video_id=v["video_id"], keep_candidates=True)
        c = r.candidates
        match_detections(c.segments, c.scores, c.labels, z["pre_nms_segments"], z["pre_nms_scores"],
                         z["pre_nms_labels"], f"{name}/{v['video_id']} pre-NMS")
        assert len(r) == v["num_detections"]
        match_detections(r.segments, r.scores, r.labels, z["det_segments_sec"], z["det_scores"],
                         z["det_labels"], f"{name}/{v['video_id']} detections")
        assert np.all(np.diff(r.scores) <= 0), "detections must be sorted by score"


@pytest.mark.parametrize("nms_impl", ["native", "torch"])
def test_detect_batch_all_videos_in_one_call(golden, nms_impl):
    name, det, videos = golden
    det = mse_rt.Detector(det.cfg, det.backend, nms_impl=nms_impl)
    feats = [v["data"]["feats"].T for v in videos]
    fps = [float(v["data"]["fps"]) for v in videos]
    durs = [float(v["data"]["duration"]) for v in videos]
    results = det.detect_batch(feats, fps=fps, durations=durs, video_ids=[v["video_id"] for v in videos])
    assert [r.video_id for r in results] == [v["video_id"] for v in videos]
    for r, v in zip(results, videos):
        z = v["data"]
        match_detections(r.segments, r.scores, r.labels, z["det_segments_sec"], z["det_scores"],
                         z["det_labels"], f"{name}/{v['video_id']} batched ({nms_impl})")


def test_batching_groups_share_forward_passes(golden):
    """Videos of the same padded length run together; the counts of forward passes prove it."""
    name, det, videos = golden
    calls = []
    real = det.backend.infer

    def spy(x, lengths):
        calls.append(tuple(x.shape))
        return real(x, lengths)

    det.backend.infer = spy
    try:
        det.detect_batch([v["data"]["feats"].T for v in videos], fps=30.0)
    finally:
        del det.backend.infer
    expected = {}
    for v in videos:
        expected[v["padded_len"]] = expected.get(v["padded_len"], 0) + 1
    assert sorted((s[0], s[2]) for s in calls) == sorted((b, t) for t, b in expected.items())


def test_default_duration_and_seconds(golden):
    name, det, videos = golden
    z = videos[0]["data"]
    T = z["feats"].shape[1]
    d = det.cfg["dataset"]
    r = det.detect(z["feats"].T, fps=12.5)
    assert r.duration == pytest.approx((T * d["feat_stride"] + d["num_frames"]) / 12.5)
    assert r.segments.min() >= 0.0 and r.segments.max() <= r.duration
