"""The command line on golden videos: detect writes ActivityNet JSON equal to the golden detections."""

from __future__ import annotations

import json

import numpy as np

from mse_rt.cli import main

from golden_utils import GOLDEN, golden_videos, match_detections


def test_detect_writes_activitynet_json(tmp_path, capsys):
    videos = golden_videos("thumos_small")[:3]
    files = []
    for v in videos:
        p = tmp_path / f"{v['video_id']}.npy"
        np.save(p, v["data"]["feats"].T)  # feature files are (T, C)
        files.append(str(p))
    fps = float(videos[0]["data"]["fps"])
    assert all(float(v["data"]["fps"]) == fps for v in videos)
    out = tmp_path / "res.json"
    rc = main(["detect", "--config", str(GOLDEN / "thumos_small" / "config.yaml"),
               "--ckpt", str(GOLDEN / "thumos_small" / "ckpt.pth.tar"), "--fps", str(fps), "-q",
               "-o", str(out), *files])
    assert rc == 0
    res = json.loads(out.read_text())["results"]
    for v in videos:
        entries = res[v["video_id"]]
        z = v["data"]
        # default duration = (T * stride + frames) / fps, which is what the golden files hold
        match_detections(np.array([e["segment"] for e in entries]).reshape(-1, 2),
                         np.array([e["score"] for e in entries]), np.array([e["label"] for e in entries]),
                         z["det_segments_sec"], z["det_scores"], z["det_labels"], v["video_id"])
    assert "3 videos" in capsys.readouterr().out


def test_detect_reports_bad_input_cleanly(tmp_path, capsys):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((64, 10), np.float32))  # channels-first by mistake
    rc = main(["detect", "--config", str(GOLDEN / "thumos_small" / "config.yaml"),
               "--ckpt", str(GOLDEN / "thumos_small" / "ckpt.pth.tar"), "--fps", "30", "-q",
               "-o", str(tmp_path / "r.json"), str(p)])
    assert rc == 1  # the file is reported and skipped; the (empty) results of the others are written
    err = capsys.readouterr().err
    assert "channels-first" in err and "1 of 1 videos failed" in err
