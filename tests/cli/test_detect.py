"""`mse-rt detect`: ActivityNet JSON equal to the golden detections, bad files reported without losing
the others, options and outputs checked before any work, interrupts handled.

Data loss: a failed, interrupted (SIGINT, SIGTERM) or misdirected run never destroys a file; files
that must not change are compared by sha256."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mse_rt.cli import main

from golden_utils import GOLDEN, golden_videos, match_detections

CFG = str(GOLDEN / "thumos_small" / "config.yaml")
CKPT = str(GOLDEN / "thumos_small" / "ckpt.pth.tar")
DETECT = ["detect", "--config", CFG, "--ckpt", CKPT, "--fps", "30", "-q"]


def _feature_files(folder, n=3, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, v in enumerate(golden_videos("thumos_small")[:n]):
        p = folder / f"{names[i] if names else v['video_id']}.npy"
        np.save(p, v["data"]["feats"].T)
        out.append(p)
    return out


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
    assert rc == 1  # the file is reported and skipped; no video succeeded, so nothing is written
    err = capsys.readouterr().err
    assert "channels-first" in err and "all 1 videos failed" in err and "nothing written" in err
    assert not (tmp_path / "r.json").exists()


def test_duplicate_ids_from_two_folders_are_refused(tmp_path, capsys):
    a = _feature_files(tmp_path / "a", 1, ["clip"])[0]
    b = _feature_files(tmp_path / "b", 1, ["clip"])[0]
    out = tmp_path / "r.json"
    assert main([*DETECT, "-o", str(out), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "duplicate video ids: 'clip'" in err and "--ids relpath" in err
    assert not out.exists()
    assert main([*DETECT, "--ids", "relpath", "-o", str(out), str(a), str(b)]) == 0
    assert sorted(json.loads(out.read_text())["results"]) == ["a/clip", "b/clip"]


@pytest.mark.parametrize("opt", [["--batch", "-1"], ["--batch", "0"], ["--batch", "two"], ["--fps", "nan"],
                                 ["--fps", "-30"], ["--fps", "0"]])
def test_bad_numeric_options_exit_2_before_running(tmp_path, capsys, opt):
    f = _feature_files(tmp_path, 1)[0]
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main([*DETECT, *opt, "-o", str(out), str(f)])
    assert e.value.code == 2
    assert "expected" in capsys.readouterr().err
    assert not out.exists()


def test_output_is_checked_before_inference(tmp_path, capsys, monkeypatch):
    f = _feature_files(tmp_path / "f", 1)[0]
    import mse_rt

    def never(*a, **k):
        raise AssertionError("the model was loaded although the output cannot be written")

    monkeypatch.setattr(mse_rt.Detector, "from_checkpoint", never)
    assert main([*DETECT, "-o", str(tmp_path), str(f)]) == 2  # a directory
    assert "is a directory" in capsys.readouterr().err
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    assert main([*DETECT, "-o", str(blocker / "r.json"), str(f)]) == 2  # folder cannot be created
    assert "cannot write results file" in capsys.readouterr().err


def test_one_bad_file_does_not_lose_the_others(tmp_path, capsys):
    files = _feature_files(tmp_path, 3)
    bad = tmp_path / "broken.npy"
    x = np.load(files[1])
    x[5, 3] = np.nan
    np.save(bad, x)
    out = tmp_path / "r.json"
    rc = main([*DETECT, "--batch", "2", "-o", str(out), str(files[0]), str(bad), str(files[1]), str(files[2])])
    assert rc == 1
    res = json.loads(out.read_text())["results"]
    assert sorted(res) == sorted(f.stem for f in files)
    err = capsys.readouterr().err
    assert "failed broken" in err and "NaN" in err and "1 of 4 videos failed" in err
    assert "Traceback" not in err


def test_folders_expand_to_their_feature_files(tmp_path):
    files = _feature_files(tmp_path / "feats", 2)
    out = tmp_path / "r.json"
    assert main([*DETECT, "-o", str(out), str(tmp_path / "feats")]) == 0
    assert sorted(json.loads(out.read_text())["results"]) == sorted(f.stem for f in files)


def test_cuda_device_without_a_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    f = _feature_files(tmp_path, 1)[0]
    assert main([*DETECT, "--device", "cuda", "-o", str(tmp_path / "r.json"), str(f)]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_big_endian_feature_file_gives_the_same_detections(tmp_path):
    (f,) = _feature_files(tmp_path / "le", 1)
    be = tmp_path / "be" / f.name
    be.parent.mkdir()
    np.save(be, np.load(f).astype(">f4"))
    outs = []
    for path in (f, be):
        out = tmp_path / f"{path.parent.name}.json"
        assert main([*DETECT, "-o", str(out), str(path)]) == 0
        outs.append(json.loads(out.read_text())["results"])
    assert outs[0] == outs[1]


# ---------------------------------------------------------------- data loss (issue 24)
def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _short_files(folder, n=3):
    """Feature files of the short golden videos (T = 100, 1, 37): the data-loss tests run the model often."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for v in golden_videos("thumos_small")[1:1 + n]:
        np.save(folder / f"{v['video_id']}.npy", v["data"]["feats"].T)
        out.append(folder / f"{v['video_id']}.npy")
    return out


def _earlier_results(path):
    """A complete results file from an earlier run; returns its sha256."""
    path.write_text(json.dumps({"version": "mse_rt", "results": {"earlier": []}, "external_data": {}}))
    return _sha(path)


def _count_batches(monkeypatch, interrupt_at=None):
    """Count Detector.detect_batch calls (video ids per call); raise KeyboardInterrupt at call ``interrupt_at``."""
    import mse_rt

    real = mse_rt.Detector.detect_batch
    calls: list[list[str]] = []

    def counted(self, feats, *a, **k):
        calls.append(list(k.get("video_ids") or []))
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(self, feats, *a, **k)

    monkeypatch.setattr(mse_rt.Detector, "detect_batch", counted)
    return calls


def _nan_file(path, like):
    x = np.load(like)
    x[2, 1] = np.nan
    np.save(path, x)
    return path


@pytest.mark.parametrize("case", ["missing", "nan", "no_fps"])
def test_when_every_video_fails_an_earlier_results_file_stays(tmp_path, capsys, case):
    """D1: nothing is written when no video succeeded."""
    good = _short_files(tmp_path / "f", 1)[0]
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    if case == "missing":
        args = [*DETECT, str(tmp_path / "missing.npy")]
    elif case == "nan":
        args = [*DETECT, str(_nan_file(tmp_path / "f" / "nan.npy", good))]
    else:  # the config has no dataset.default_fps
        args = [a for a in DETECT if a not in ("--fps", "30")] + [str(good)]
    assert main([*args, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "all 1 videos failed" in err and "nothing written" in err and f"{out} was not changed" in err
    assert _sha(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "r.json"]  # no journal, no temp file


def test_non_finite_results_fail_their_video(tmp_path, capsys, monkeypatch):
    """The last guard of the shared detect loop: NaN / Infinity never reach the journal or the results file."""
    import mse_rt

    files = _short_files(tmp_path / "f", 2)
    real = mse_rt.Detector.detect_batch

    def one_nan(self, *a, **k):
        rs = real(self, *a, **k)
        for r in rs:
            if r.video_id == files[1].stem:
                r.segments[0, 1] = np.inf
        return rs

    monkeypatch.setattr(mse_rt.Detector, "detect_batch", one_nan)
    out = tmp_path / "r.json"
    assert main([*DETECT, "-o", str(out), *map(str, files)]) == 1
    assert f"failed {files[1].stem}: {files[1]}: non-finite segment" in capsys.readouterr().err
    assert list(json.loads(out.read_text())["results"]) == [files[0].stem]


def test_ctrl_c_keeps_an_earlier_results_file_and_the_next_run_resumes(tmp_path, capsys, monkeypatch):
    """D2: the results file is written only when the run completes; the finished videos wait in the
    journal, and the same command resumes from them."""
    files = _short_files(tmp_path / "f", 3)
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    _count_batches(monkeypatch, interrupt_at=2)
    cmd = [*DETECT, "--batch", "1", "-o", str(out), *map(str, files)]
    assert main(cmd) == 130
    err = capsys.readouterr().err
    journal = tmp_path / "r.json.journal.jsonl"
    assert f"{out} was not changed" in err and f"the 1 finished videos are kept in {journal}" in err
    assert "2 not run" in err and "rerun the same command to resume" in err and "Traceback" not in err
    assert _sha(out) == before
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert lines[0]["key"]["fps"] == 30.0 and [x["video_id"] for x in lines[1:]] == [files[0].stem]

    monkeypatch.undo()
    calls = _count_batches(monkeypatch)  # no interrupt this time
    assert main(cmd) == 0
    assert calls == [[files[1].stem], [files[2].stem]]  # the journaled video is not run again
    assert "3 videos (1 from the journal)" in capsys.readouterr().out
    assert not journal.exists()
    resumed = json.loads(out.read_text())["results"]
    monkeypatch.undo()
    fresh = tmp_path / "fresh.json"
    assert main([*DETECT, "--batch", "1", "-o", str(fresh), *map(str, files)]) == 0
    assert resumed == json.loads(fresh.read_text())["results"]  # the journal round-trips exactly
    assert list(resumed) == [f.stem for f in files]


_SIGTERM_IN_PROCESS = r"""
import json, signal, sys, time
import mse_rt
from mse_rt.cli import main
real = mse_rt.Detector.detect_batch
n = {"calls": 0}
def term_second(self, *a, **k):
    n["calls"] += 1
    if n["calls"] == 2:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(1)  # the handler raises by here
    return real(self, *a, **k)
mse_rt.Detector.detect_batch = term_second
before = signal.getsignal(signal.SIGTERM)
rc = main(json.loads(sys.argv[1]))
print(json.dumps({"rc": rc, "restored": signal.getsignal(signal.SIGTERM) is before}))
"""


def test_sigterm_in_process_is_an_interrupt_and_the_handler_is_restored(tmp_path):
    """SIGTERM inside `main` (as a scheduler stops a job) is an interrupt: exit 143, the earlier
    results file unchanged, the finished video named, SIGTERM's handler put back. Run in a fresh
    interpreter: a test worker's signal state is not the CLI's (an xdist worker died on it)."""
    import subprocess
    import sys

    files = _short_files(tmp_path / "f", 2)
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    argv = [*DETECT, "--batch", "1", "-o", str(out), *map(str, files)]
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_IN_PROCESS, json.dumps(argv)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rc": 143, "restored": True}
    assert "the 1 finished videos are kept" in proc.stderr and _sha(out) == before


def test_a_journal_of_another_run_is_refused(tmp_path, capsys, monkeypatch):
    files = _short_files(tmp_path / "f", 2)
    out = tmp_path / "r.json"
    _count_batches(monkeypatch, interrupt_at=2)
    assert main([*DETECT, "--batch", "1", "-o", str(out), *map(str, files)]) == 130
    journal = tmp_path / "r.json.journal.jsonl"
    before = _sha(journal)
    capsys.readouterr()
    other = [a if a != "30" else "25" for a in DETECT]
    assert main([*other, "--batch", "1", "-o", str(out), *map(str, files)]) == 2
    err = capsys.readouterr().err
    assert "another run (fps 30.0 vs 25.0)" in err and "remove the journal" in err and "another -o" in err
    assert _sha(journal) == before and not out.exists()


def test_failed_and_changed_videos_are_run_again(tmp_path, capsys, monkeypatch):
    """A failed video is not journaled: the journal stays and a rerun runs only it (and any file
    changed since it was run); the results file of the first run holds the others."""
    files = _short_files(tmp_path / "f", 3)
    bad = _nan_file(tmp_path / "f" / "zz_bad.npy", files[0])
    out = tmp_path / "r.json"
    cmd = [*DETECT, "-o", str(out), *map(str, files), str(bad)]
    assert main(cmd) == 1
    assert "rerunning the same command runs only the failed ones" in capsys.readouterr().err
    assert sorted(json.loads(out.read_text())["results"]) == sorted(f.stem for f in files)
    np.save(bad, np.load(files[0]))  # fixed
    v = golden_videos("thumos_small")[3]
    np.save(files[1], v["data"]["feats"].T)  # another video under the same name (T = 37 instead of 1)
    calls = _count_batches(monkeypatch)
    assert main(cmd) == 0
    assert sorted(sum(calls, [])) == sorted([files[1].stem, bad.stem])
    res = json.loads(out.read_text())["results"]
    for vid, video in ((bad.stem, golden_videos("thumos_small")[1]), (files[1].stem, v)):
        z, entries = video["data"], res[vid]
        match_detections(np.array([e["segment"] for e in entries]).reshape(-1, 2),
                         np.array([e["score"] for e in entries]), np.array([e["label"] for e in entries]),
                         z["det_segments_sec"], z["det_scores"], z["det_labels"], vid)
    assert not (tmp_path / "r.json.journal.jsonl").exists()


def test_an_output_that_is_an_input_is_refused_before_work(tmp_path, capsys, monkeypatch):
    """D3: -o naming a feature file (also through a link), the config or the checkpoint."""
    import shutil

    import mse_rt

    def never(*a, **k):
        raise AssertionError("the model was loaded although the output is an input")

    monkeypatch.setattr(mse_rt.Detector, "from_checkpoint", never)
    f = _short_files(tmp_path / "f", 1)[0]
    cfg, ckpt = tmp_path / "c.yaml", tmp_path / "k.pth.tar"
    shutil.copy(CFG, cfg)
    shutil.copy(CKPT, ckpt)
    (tmp_path / "link.json").symlink_to(f)
    cmd = ["detect", "--config", str(cfg), "--ckpt", str(ckpt), "--fps", "30", "-q"]
    for out in (f, tmp_path / "link.json", cfg, ckpt):
        before = {p: _sha(p) for p in (f, cfg, ckpt)}
        assert main([*cmd, "-o", str(out), str(f)]) == 2
        assert "is one of the inputs" in capsys.readouterr().err
        assert {p: _sha(p) for p in (f, cfg, ckpt)} == before


def test_journal_names_are_checked_before_work(tmp_path, capsys, monkeypatch):
    import mse_rt

    def never(*a, **k):
        raise AssertionError("the model was loaded although the journal cannot be written")

    monkeypatch.setattr(mse_rt.Detector, "from_checkpoint", never)
    f = _short_files(tmp_path / "f", 1)[0]
    assert main([*DETECT, "-o", str(tmp_path / "a.json.journal.jsonl"), str(f)]) == 2
    assert "named like a run journal" in capsys.readouterr().err
    (tmp_path / "b.json.journal.jsonl").mkdir()
    assert main([*DETECT, "-o", str(tmp_path / "b.json"), str(f)]) == 2
    assert "run journal" in (err := capsys.readouterr().err) and "is a directory" in err


def _fake_ray(monkeypatch, interrupt_after=None):
    """detect --ray without a cluster: the job's driver code with each pass run by its actor class
    in this process (the Ray scenario of tests/serving runs the real thing)."""
    import torch

    import mse_rt.serving as serving
    from mse_rt.serving import ray_job

    def run_pass(ray, rows, spec, batch_size, *rest):
        threads = torch.get_num_threads()
        try:
            actor = ray_job._DetectActor(spec)
        finally:
            torch.set_num_threads(threads)
        n = 0
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            res = actor({k: np.array([r[k] for r in chunk], dtype=object) for k in ("video_id", "path")})
            for j in range(len(chunk)):
                if n == interrupt_after:
                    raise KeyboardInterrupt
                n += 1
                yield {k: v[j] for k, v in res.items()}

    monkeypatch.setattr(ray_job, "init_ray", lambda address=None: None)
    monkeypatch.setattr(ray_job, "_run_pass", run_pass)
    monkeypatch.setattr(serving, "shutdown", lambda: None)


def test_ray_job_when_every_video_fails_writes_nothing(tmp_path, capsys, monkeypatch):
    """D1 with --ray."""
    _fake_ray(monkeypatch)
    good = _short_files(tmp_path / "f", 1)[0]
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    nan = _nan_file(tmp_path / "nan.npy", good)
    assert main([*DETECT, "--ray", "-o", str(out), str(tmp_path / "missing.npy"), str(nan)]) == 1
    err = capsys.readouterr().err
    assert "failed missing" in err and "failed nan" in err and "nothing written" in err
    assert _sha(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["f", "nan.npy", "r.json"]


def test_ray_job_interrupted_resumes_in_process_from_the_same_journal(tmp_path, capsys, monkeypatch):
    """The in-process run and the Ray job share one journal format and key."""
    _fake_ray(monkeypatch, interrupt_after=2)
    files = _short_files(tmp_path / "f", 3)
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    assert main([*DETECT, "--ray", "--batch", "1", "-o", str(out), *map(str, files)]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err and _sha(out) == before
    monkeypatch.undo()
    calls = _count_batches(monkeypatch)
    assert main([*DETECT, "--batch", "1", "-o", str(out), *map(str, files)]) == 0
    assert calls == [[files[2].stem]]
    assert "3 videos (2 from the journal)" in capsys.readouterr().out
    assert sorted(json.loads(out.read_text())["results"]) == sorted(f.stem for f in files)


def test_sigterm_keeps_the_finished_videos_and_the_earlier_results(tmp_path):
    """D7: a real process stopped by SIGTERM (as a container is) after its first journaled video exits
    143 (128 + SIGTERM) with the earlier results file unchanged and the journal whole; the next run
    accepts that journal."""
    x = golden_videos("thumos_small")[3]["data"]["feats"].T  # a short video: T = 37
    feats = tmp_path / "f"
    feats.mkdir()
    n = 150
    for i in range(n):
        np.save(feats / f"v{i:03d}.npy", x)
    out = tmp_path / "r.json"
    before = _earlier_results(out)
    journal = tmp_path / "r.json.journal.jsonl"
    cmd = [*DETECT, "--batch", "1", "-o", str(out), str(feats)]
    proc = subprocess.Popen([sys.executable, "-m", "mse_rt", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= 2:  # header + one video
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted" in err and str(journal) in err and "Traceback" not in err
    assert _sha(out) == before
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert 1 <= len(lines) - 1 < n and all(row["video_id"].startswith("v") for row in lines[1:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "r.json", "r.json.journal.jsonl"]
    # the next run (in this process) accepts the journal (same run key): stop it at its first batch
    with pytest.MonkeyPatch.context() as mp:
        _count_batches(mp, interrupt_at=1)
        assert main(cmd) == 130
    assert _sha(out) == before
    assert [json.loads(line) for line in journal.read_text().splitlines()] == lines


# ------------------------------------------------------------------ video inputs (frames -> features -> actions)

def _video_helpers():
    """tests/video/test_pipeline.py's tiny-video helpers (registers the numpy "stub-64" backbone)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "video" / "test_pipeline.py"
    spec = importlib.util.spec_from_file_location("video_pipeline_helpers_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_detect_video_equals_detect_on_extracted_features(tmp_path):
    """The chain is exact: `detect a.mkv b` gives the detections of `extract-features` + `detect x.npy
    --fps 30`, the segments clipped to each video's real length (n frames / 30) instead of the grid's."""
    pytest.importorskip("av")
    h = _video_helpers()
    cfg = h.tad_config(tmp_path)
    lengths = {"a": 130, "b": 75}
    videos = [h.write_video(tmp_path / "a.mkv", h.make_frames(130, 21)),
              h.write_video(tmp_path / "b", h.make_frames(75, 22))]  # no extension: found by content
    assert main(["extract-features", "--config", cfg, "-q", "-o", str(tmp_path / "feats"), *map(str, videos)]) == 0
    npys = [tmp_path / "feats" / "a.npy", tmp_path / "feats" / "b.npy"]
    assert main([*DETECT, "-o", str(tmp_path / "from_npy.json"), *map(str, npys)]) == 0
    assert main(["detect", "--config", cfg, "--ckpt", CKPT, "-q", "-o", str(tmp_path / "from_video.json"),
                 *map(str, videos)]) == 0
    ref = json.loads((tmp_path / "from_npy.json").read_text())["results"]
    got = json.loads((tmp_path / "from_video.json").read_text())["results"]
    assert set(got) == {"a", "b"}
    for vid, n in lengths.items():
        assert len(got[vid]) == len(ref[vid]) > 0
        seg_ref = np.clip(np.array([e["segment"] for e in ref[vid]]), 0.0, n / 30.0)
        np.testing.assert_allclose(np.array([e["segment"] for e in got[vid]]), seg_ref, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose([e["score"] for e in got[vid]], [e["score"] for e in ref[vid]], rtol=1e-5)
        assert [e["label"] for e in got[vid]] == [e["label"] for e in ref[vid]]


def test_detect_video_bad_file_reported_others_kept_and_key_names_backbone(tmp_path, capsys):
    pytest.importorskip("av")
    h = _video_helpers()
    cfg = h.tad_config(tmp_path)
    good = h.write_video(tmp_path / "ok.mkv", h.make_frames(60, 23))
    short = h.write_video(tmp_path / "short.mkv", h.make_frames(8, 24))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    out = tmp_path / "r.json"
    rc = main(["detect", "--config", cfg, "--ckpt", CKPT, "-q", "-o", str(out), str(good), str(short), str(bad)])
    assert rc == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("mse-rt: failed")]
    assert len(failed) == 2 and any("bad.mp4" in f for f in failed) and any("T = 0" in f for f in failed)
    assert list(json.loads(out.read_text())["results"]) == ["ok"]
    header = json.loads((tmp_path / "r.json.journal.jsonl").read_text().splitlines()[0])
    assert header["key"]["video"]["backbone"]["name"] == "stub-64"
    assert header["key"]["video"]["clip_spec"]["stride"] == 4


def test_detect_refuses_mixing_videos_and_feature_files(tmp_path, capsys):
    pytest.importorskip("av")
    h = _video_helpers()
    video = h.write_video(tmp_path / "v.mkv", h.make_frames(40, 25))
    npy = _feature_files(tmp_path / "f", 1)[0]
    out = tmp_path / "r.json"
    assert main([*DETECT, "-o", str(out), str(video), str(npy)]) == 2
    assert "not both in one call" in capsys.readouterr().err
    assert not out.exists()
