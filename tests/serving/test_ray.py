"""Ray Data job and Ray Serve endpoint give the plain CLI's detections (40 synthetic videos), and
run the demo's saved int8 IR without calibrating. All of it ran once in the shared Ray scenario
(tests/serving/conftest.py, tests/serving/scale_scenario.py); these tests read its results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from golden_utils import match_detections

pytest.importorskip("ray")


def _load(path):
    return json.loads(Path(path).read_text())["results"]


def _same(a: dict, b: dict, what: str):
    assert sorted(a) == sorted(b), f"{what}: different videos"
    for vid in a:
        ea, eb = a[vid], b[vid]
        match_detections(np.array([e["segment"] for e in ea]).reshape(-1, 2), np.array([e["score"] for e in ea]),
                         np.array([e["label"] for e in ea]), np.array([e["segment"] for e in eb]).reshape(-1, 2),
                         np.array([e["score"] for e in eb]), np.array([e["label"] for e in eb]), f"{what} {vid}")


@pytest.mark.slow
def test_ray_job_equals_the_plain_cli(ray_scenario):
    work, s = ray_scenario
    plain = _load(work / "plain.json")
    assert len(plain) == s["n_videos"] > 0
    _same(_load(work / "ray.json"), plain, "ray vs plain")
    assert s["ray"]["done"] == s["n_videos"] and list(s["ray_failed"]) == ["broken"] and "NaN" in s["ray_failed"]["broken"]


@pytest.mark.slow
def test_ray_job_resumes_from_its_journal(ray_scenario):
    _, s = ray_scenario
    assert s["ray_rerun"] == {"done": 0, "skipped": s["n_videos"]}


@pytest.mark.slow
def test_serve_endpoint_equals_the_plain_cli(ray_scenario):
    work, s = ray_scenario
    _same(_load(work / "serve.json"), _load(work / "plain.json"), "serve vs plain")
    assert s["bad_request"].startswith("400") and "feature channels" in s["bad_request"]


@pytest.mark.slow
def test_a_dead_worker_loses_only_its_own_video(ray_scenario):
    """A video whose worker dies every time is reported failed; one that kills its worker once is
    retried; the videos batched with them still get their results, equal to the plain CLI's."""
    work, s = ray_scenario
    c = s["crash"]
    assert list(c["failed"]) == ["poison"], c["failed"]
    assert "worker" in c["failed"]["poison"] and "kept dying" in c["failed"]["poison"]
    assert c["done"] == 7  # 6 good videos and "flaky"
    res, plain = _load(work / "crash.json"), _load(work / "plain.json")
    assert "poison" not in res
    _same({k: v for k, v in res.items() if k != "flaky"}, {k: plain[k] for k in res if k != "flaky"}, "crash run")
    _same({"x": res["flaky"]}, {"x": plain[c["flaky_of"]]}, "flaky video")


@pytest.mark.slow
def test_client_errors_name_the_problem(ray_scenario):
    _, s = ray_scenario
    assert "refused" in s["client_bad_request"] and "feature channels" in s["client_bad_request"]
    assert "not reachable" in s["server_down"] and "mse-rt serve" in s["server_down"]


@pytest.mark.slow
def test_ray_workers_and_serve_run_the_saved_ir_without_calibrating(ray_scenario):
    """A Ray job with 2 actors and a Serve endpoint on the demo's saved int8 IR: no calibration data
    exists anywhere (a worker asked to calibrate would raise), a worker that loads the file never
    imports NNCF, and the detections equal a single-process run of the same file."""
    import mse_rt
    from mse_rt.apps.demo import DEMO_INT8

    work, s = ray_scenario
    ir = s["saved_ir"]
    if ir is None:
        pytest.skip("this CPU cannot run OpenVINO int8")
    files = [Path(f) for f in ir["files"]]
    assert ir["ray"] == {"done": len(files), "failed": {}}
    assert ir["worker"] == {"nncf_imported": False, "calibrated_here": False, "source": "ir"}
    single = mse_rt.Detector.from_file(DEMO_INT8["openvino-int8"])
    ray_res = _load(work / "ray_ir.json")
    for f in files:
        r = single.detect(np.load(f), video_id=f.stem)
        for got in (ray_res[f.stem], ir["serve"][f.stem]):
            assert [d["label"] for d in got] == r.labels.tolist() and len(got) > 0
            np.testing.assert_allclose([d["score"] for d in got], r.scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose([d["segment"] for d in got], r.segments, rtol=0, atol=1e-4)


class _RayStarted(Exception):
    pass


def test_the_driver_refuses_a_bad_model_before_ray_starts(tmp_path, monkeypatch):
    """A legacy checkpoint without a checksum fails in the driver (no Ray start, no worker errors);
    ``allow_unverified`` reaches the check and the workers' spec."""
    import torch

    import mse_rt.serving.ray_job as job
    from mse_rt import CheckpointError

    from golden_utils import GOLDEN

    cfg = GOLDEN / "thumos_small" / "config.yaml"
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(GOLDEN / "thumos_small" / "ckpt.pth.tar", map_location="cpu", weights_only=True), legacy,
               _use_new_zipfile_serialization=False)
    feats = tmp_path / "v.npy"
    np.save(feats, np.zeros((64, 64), np.float32))

    def no_ray(*a, **k):
        raise _RayStarted

    monkeypatch.setattr(job, "init_ray", no_ray)
    with pytest.raises(CheckpointError, match="legacy"):
        job.detect_corpus_ray([feats], tmp_path / "r.json", config=cfg, ckpt=legacy, fps=30.0)
    with pytest.raises(_RayStarted):  # allowed: the driver's check passes and Ray would start
        job.detect_corpus_ray([feats], tmp_path / "r.json", config=cfg, ckpt=legacy, fps=30.0, allow_unverified=True)
