"""The HTTP endpoint: per-request validation, a failing batch isolated to its bad request, the
checks `mse-rt serve` makes before Ray starts, and a bounded connect to a Ray cluster (issue 24).

Most tests need no Ray: they call the endpoint's request handling (``detect_requests``) directly.
One slow test checks the answers of the real endpoint, which the shared Ray scenario
(tests/serving/conftest.py, one Ray start for this folder) sent its requests to.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest
from endpoint_requests import bad_requests, video

from golden_utils import GOLDEN, match_detections

CFG = GOLDEN / "thumos_small" / "config.yaml"
CKPT = GOLDEN / "thumos_small" / "ckpt.pth.tar"


def _same(detections: list[dict], ref, what: str) -> None:
    """An answer's detections equal ``ref``'s under the batching guarantee (README: one-to-one, same
    label, score within 1e-5, ends within 1e-3 s): batched and one-video passes are not bit-identical."""
    seg = np.array([d["segment"] for d in detections], np.float64).reshape(-1, 2)
    match_detections(seg, np.array([d["score"] for d in detections]), np.array([d["label"] for d in detections]),
                     ref.segments, ref.scores, ref.labels, what)


@pytest.fixture(scope="module")
def det():
    import mse_rt

    return mse_rt.Detector.from_checkpoint(CFG, CKPT, max_batch=16)


def test_bad_requests_fail_alone(det):
    """fps=1e-40 used to answer HTTP 500 and take down the valid requests batched with it."""
    from mse_rt.serving.ray_serve import detect_requests

    good = [(video(i), 30.0, f"good{i}", None) for i in range(3)]
    bad = bad_requests()
    items = [good[0], *(b for b, _ in bad[:3]), good[1], *(b for b, _ in bad[3:]), good[2]]
    out = detect_requests(det, items)
    for (feats, fps, vid, _), res in zip(items, out):
        if vid.startswith("good"):
            ref = det.detect(feats, fps=fps, video_id=vid)
            assert res["video_id"] == vid and res["duration"] == pytest.approx(ref.duration)
            _same(res["detections"], ref, vid)
        else:
            want = dict((b[2], m) for b, m in bad)[vid]
            assert want in res["error"] and f"'{vid}'" in res["error"], res
            assert res.get("status", 400) == 400


class _FailsOnPoison:
    """A Detector whose batches fail (untyped) whenever they hold the video "poison"."""

    def __init__(self, det, poison: str):
        self.det, self.cfg, self.poison = det, det.cfg, poison

    def detect_batch(self, feats, fps=None, durations=None, video_ids=None):
        if any(v == self.poison for v in video_ids):
            raise RuntimeError("backend exploded")
        return self.det.detect_batch(feats, fps=fps, durations=durations, video_ids=video_ids)


def test_a_failing_batch_is_retried_one_request_at_a_time(det):
    from mse_rt.serving.ray_serve import detect_requests

    wrapped = _FailsOnPoison(det, poison="2")  # detect_requests ids videos by their position in the batch
    items = [(video(i), 30.0, f"v{i}", None) for i in range(4)]
    out = detect_requests(wrapped, items)
    assert [("error" in r) for r in out] == [False, False, True, False]
    assert out[2]["status"] == 500 and "video 'v2': detection failed: RuntimeError: backend exploded" in out[2]["error"]
    for (feats, fps, vid, _), r in zip(items, out):
        if vid != "v2":
            _same(r["detections"], det.detect(feats, fps=fps), vid)


def test_same_video_id_twice_in_a_batch(det):
    from mse_rt.serving.ray_serve import detect_requests

    out = detect_requests(det, [(video(1), 30.0, "same", None), (video(2), 25.0, "same", None)])
    assert [r["video_id"] for r in out] == ["same", "same"]
    _same(out[1]["detections"], det.detect(video(2), fps=25.0), "second 'same'")


# ---------------------------------------------------------------- serve: checks before Ray
@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if serve would start Ray (the checks must come first)."""
    import mse_rt.serving.ray_serve as rs

    def refuse(*a, **k):
        raise AssertionError("Ray was started before the checks")

    monkeypatch.setattr(rs, "init_ray", refuse)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_error(argv, capsys) -> str:
    from mse_rt.cli import main

    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mse-rt: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_serve_port_must_be_a_port(port, capsys):
    from mse_rt.cli import main

    with pytest.raises(SystemExit) as e:  # 70000 used to raise OverflowError deep in Ray
        main(["serve", "--config", str(CFG), "--ckpt", str(CKPT), "--port", port])
    assert e.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_serve_on_a_port_in_use(no_ray, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = _serve_error(["--config", str(CFG), "--ckpt", str(CKPT), "--port", str(port)], capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err


def test_serve_checks_the_model_before_ray(no_ray, tmp_path, capsys):
    """Each used to give a 33-line Ray traceback after ~17 s that never named the cause."""
    port = str(_free_port())
    err = _serve_error(["--config", str(CFG), "--ckpt", str(tmp_path / "missing.pth"), "--port", port], capsys)
    assert "checkpoint file not found" in err
    corrupt = tmp_path / "corrupt.pth"
    raw = bytearray(CKPT.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(64)
    corrupt.write_bytes(bytes(raw))
    err = _serve_error(["--config", str(CFG), "--ckpt", str(corrupt), "--port", port], capsys)
    assert "corrupt checkpoint" in err or "cannot read checkpoint" in err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("dataset: {\n")
    err = _serve_error(["--config", str(bad_yaml), "--ckpt", str(CKPT), "--port", port], capsys)
    assert f"config file {bad_yaml} is not valid YAML" in err
    onnx = tmp_path / "corrupt.onnx"
    onnx.write_bytes(b"\x08\x07garbage" * 100)
    err = _serve_error(["--model", str(onnx), "--port", port], capsys)
    assert f"cannot load {onnx}" in err


# ---------------------------------------------------------------- a bounded connect to a Ray cluster
def test_ray_connect_to_a_dead_address_times_out():
    """`detect --ray --address 127.0.0.1:1` used to wait forever on Ray's own retries."""
    pytest.importorskip("ray")
    from mse_rt import BackendError
    from mse_rt.serving.ray_cluster import init_ray

    t0 = time.perf_counter()
    with pytest.raises(BackendError, match=r"no Ray cluster at '127.0.0.1:1': nothing accepted a connection within "
                                           r"1 s .*MSE_RT_RAY_CONNECT_TIMEOUT"):
        init_ray("127.0.0.1:1", connect_timeout=1.0)
    assert 1.0 <= time.perf_counter() - t0 < 5
    with pytest.raises(BackendError, match="unknown host"):
        init_ray("no-such-host.invalid:6379", connect_timeout=1.0)


def test_cli_detect_ray_with_a_dead_address(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    from mse_rt.cli import main

    monkeypatch.setenv("MSE_RT_RAY_CONNECT_TIMEOUT", "1")
    f = tmp_path / "v.npy"
    np.save(f, video(0))
    t0 = time.perf_counter()
    rc = main(["detect", "--ray", "--address", "127.0.0.1:1", "--config", str(CFG), "--ckpt", str(CKPT), "--fps", "30",
               "-q", "-o", str(tmp_path / "r.json"), str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and "no Ray cluster at '127.0.0.1:1'" in err and err.count("\n") == 1, err
    assert time.perf_counter() - t0 < 10


def test_connect_timeout_setting():
    from mse_rt import BackendError
    from mse_rt.serving.ray_cluster import CONNECT_TIMEOUT_S, connect_timeout_s

    assert connect_timeout_s(None) == CONNECT_TIMEOUT_S == 30.0
    assert connect_timeout_s(2.5) == 2.5
    with pytest.raises(BackendError, match="positive number of seconds"):
        connect_timeout_s(0)
    os.environ["MSE_RT_RAY_CONNECT_TIMEOUT"] = "abc"
    try:
        with pytest.raises(BackendError, match="MSE_RT_RAY_CONNECT_TIMEOUT must be a number"):
            connect_timeout_s(None)
    finally:
        del os.environ["MSE_RT_RAY_CONNECT_TIMEOUT"]


# ---------------------------------------------------------------- the real endpoint (Ray Serve)
@pytest.mark.slow
def test_endpoint_answers_good_requests_beside_bad_ones(ray_scenario, det):
    """12 requests at once to the real endpoint (batches of up to 16, 0.5 s wait), 6 of them bad:
    each good one gets its detections, each bad one a 400 naming its problem. The endpoint runs in
    the shared Ray scenario (tests/serving/conftest.py)."""
    _, s = ray_scenario
    answers = s["endpoint"]
    for i in range(6):
        status, body = answers[f"good{i}"]
        assert status == 200
        _same(body["detections"], det.detect(video(i), fps=30.0), f"good{i}")
    for (_, _, vid, _), msg in bad_requests():
        status, body = answers[vid]
        assert status == 400 and msg in body["error"], (vid, body)
