"""Ray Data job and Ray Serve endpoint give the plain CLI's detections (40 synthetic videos).

Ray listens on the machine's own address even when told 127.0.0.1: as root, the scenario runs
inside a private network namespace (``unshare --net``, loopback up) so nothing can leave.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden_utils import match_detections

pytest.importorskip("ray")
SCENARIO = Path(__file__).resolve().parent / "scale_scenario.py"
# enough for several batches per actor, resume, a bad file and dead workers; the 200-video run
# (and its videos/s) belongs to benchmarks/bench_scale.py
N_VIDEOS = 40


def _isolated(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        inner = " ".join(f"'{c}'" for c in cmd)
        return ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {inner}"]
    return cmd


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Run once per test session even when pytest-xdist hands these tests to both workers: the
    first worker runs it under a lock in the folder the workers share, the other reads its summary."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work = root / "ray_scale_scenario"
    with open(root / "ray_scale_scenario.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = work / "summary.json"
        if not summary.is_file():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
            env.pop("TRITON_INTERPRET", None)
            proc = subprocess.run(_isolated([sys.executable, str(SCENARIO), str(work), str(N_VIDEOS)]),
                                  capture_output=True, text=True, env=env, timeout=600)
            assert proc.returncode == 0, proc.stderr[-4000:]
            summary.write_text(proc.stdout.strip().splitlines()[-1])
        return work, json.loads(summary.read_text())


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
def test_ray_job_equals_the_plain_cli(scenario):
    work, s = scenario
    plain = _load(work / "plain.json")
    assert len(plain) == N_VIDEOS
    _same(_load(work / "ray.json"), plain, "ray vs plain")
    assert s["ray"]["done"] == N_VIDEOS and list(s["ray_failed"]) == ["broken"] and "NaN" in s["ray_failed"]["broken"]


@pytest.mark.slow
def test_ray_job_resumes_from_its_journal(scenario):
    _, s = scenario
    assert s["ray_rerun"] == {"done": 0, "skipped": N_VIDEOS}


@pytest.mark.slow
def test_serve_endpoint_equals_the_plain_cli(scenario):
    work, s = scenario
    _same(_load(work / "serve.json"), _load(work / "plain.json"), "serve vs plain")
    assert s["bad_request"].startswith("400") and "feature channels" in s["bad_request"]


@pytest.mark.slow
def test_a_dead_worker_loses_only_its_own_video(scenario):
    """A video whose worker dies every time is reported failed; one that kills its worker once is
    retried; the videos batched with them still get their results, equal to the plain CLI's."""
    work, s = scenario
    c = s["crash"]
    assert list(c["failed"]) == ["poison"], c["failed"]
    assert "worker" in c["failed"]["poison"] and "kept dying" in c["failed"]["poison"]
    assert c["done"] == 11
    res, plain = _load(work / "crash.json"), _load(work / "plain.json")
    assert "poison" not in res
    _same({k: v for k, v in res.items() if k != "flaky"}, {k: plain[k] for k in res if k != "flaky"}, "crash run")
    _same({"x": res["flaky"]}, {"x": plain[c["flaky_of"]]}, "flaky video")


@pytest.mark.slow
def test_client_errors_name_the_problem(scenario):
    _, s = scenario
    assert "refused" in s["client_bad_request"] and "feature channels" in s["client_bad_request"]
    assert "not reachable" in s["server_down"] and "mse-rt serve" in s["server_down"]


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
