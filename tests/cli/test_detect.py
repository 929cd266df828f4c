"""`mse-rt detect`: ActivityNet JSON equal to the golden detections, bad files reported without losing
the others, options and outputs checked before any work, interrupts handled."""

from __future__ import annotations

import json

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
    assert rc == 1  # the file is reported and skipped; the (empty) results of the others are written
    err = capsys.readouterr().err
    assert "channels-first" in err and "1 of 1 videos failed" in err


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


def test_ctrl_c_writes_what_was_finished(tmp_path, capsys, monkeypatch):
    import mse_rt

    files = _feature_files(tmp_path, 3)
    real = mse_rt.Detector.detect_batch
    calls = {"n": 0}

    def interrupt_second(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(mse_rt.Detector, "detect_batch", interrupt_second)
    out = tmp_path / "r.json"
    rc = main([*DETECT, "--batch", "1", "-o", str(out), *map(str, files)])
    assert rc == 130
    assert list(json.loads(out.read_text())["results"]) == [files[0].stem]
    err = capsys.readouterr().err
    assert "interrupted" in err and "2 not run" in err and "Traceback" not in err


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
