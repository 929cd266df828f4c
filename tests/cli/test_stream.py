"""`mse-rt stream`: feature files played as simultaneous live streams."""

from __future__ import annotations

import pytest

from mse_rt.apps.demo import DEMO
from mse_rt.cli import main


@pytest.mark.slow
def test_stream_prints_final_detections_with_their_delay(capsys):
    files = sorted((DEMO / "features").glob("*.npy"))[:2]
    assert main(["stream", "--lag", "8", "--hop", "4", "--min-score", "0.3", "--show-in-progress", "0.4",
                 *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "FINAL class" in out and "after its end" in out and "in progress" in out
    assert "2 streams" in out


# ---------------------------------------------------------------- bad input: one line naming the file (issue 24)
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("mse-rt: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_stream_of_a_0d_file_names_the_file(tmp_path, capsys):
    import numpy as np

    f = tmp_path / "scalar.npy"
    np.save(f, np.float32(3.0))  # used to raise TypeError: len() of unsized object
    assert main(["stream", str(f)]) == 2
    line = _one_line_error(capsys)
    assert str(f) in line and "2-D (T, C)" in line


def test_stream_errors_name_the_file_not_a_chunk(tmp_path, capsys):
    import numpy as np

    f = tmp_path / "seven.npy"
    np.save(f, np.zeros((20, 7), np.float32))
    assert main(["stream", str(f)]) == 2
    line = _one_line_error(capsys)
    assert f"feature file {f}" in line and "chunk" not in line


def test_stream_speed_is_bounded(capsys):
    files = sorted((DEMO / "features").glob("*.npy"))[:1]
    for speed in ("1e-300", "0", "1e9", "nan"):
        with pytest.raises(SystemExit) as e:  # 1e-300 used to overflow time.sleep
            main(["stream", "--realtime", "--speed", speed, *map(str, files)])
        assert e.value.code == 2
        assert "expected a speed factor in [0.001, 1000]" in capsys.readouterr().err


class _Loaded(Exception):
    """Raised by a stand-in backbone loader with the options it was called with."""


def test_backbone_calib_reaches_the_int8_backbone_of_stream_and_extract(tmp_path, monkeypatch, capsys):
    """--backbone-calib: 'synthetic' or videos reach load_backbone as calib (stream --source and
    extract-features); with another precision the flag is refused in one line."""
    import pytest

    import mse_rt.apps.pixel_demo as pd
    import mse_rt.video.registry as reg

    seen = []

    def loader(*args, **kwargs):
        seen.append(kwargs)
        raise _Loaded

    monkeypatch.setattr(pd, "load_pixel_backbone", loader)
    monkeypatch.setattr(reg, "load_backbone", loader)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read: the loader stops first")
    with pytest.raises(_Loaded):
        main(["stream", "--source", str(video), "--backbone-backend", "openvino", "--backbone-precision", "int8",
              "--backbone-calib", "synthetic"])
    with pytest.raises(_Loaded):
        main(["extract-features", "--backbone-backend", "openvino", "--backbone-precision", "int8",
              "--backbone-calib", str(tmp_path), "-o", str(tmp_path / "out"), str(video)])
    assert seen[0]["calib"] == "synthetic" and seen[0]["precision"] == "int8"
    assert seen[1]["calib"] == [str(tmp_path)] and seen[1]["precision"] == "int8"
    capsys.readouterr()
    for argv in (["stream", "--source", str(video), "--backbone-precision", "bf16", "--backbone-calib", "synthetic"],
                 ["extract-features", "--backbone-calib", "synthetic", "-o", str(tmp_path / "o2"), str(video)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "mse-rt: error: --backbone-calib calibrates an int8 backbone (--backbone-precision int8); " \
                      "drop it\n", err
    assert len(seen) == 2  # no backbone was loaded for the refused flags


@pytest.mark.parametrize("flag,value", [("--threads-tad", "100000"), ("--threads-backbone", "1025"),
                                        ("--threads-decode", "100000"), ("--threads-tad", "0")])
def test_thread_counts_are_bounded(capsys, flag, value):
    """100000 TAD threads crashed torch (segmentation fault) and 1025 backbone threads hung ONNX
    Runtime: a usage error naming the range, before anything is loaded."""
    with pytest.raises(SystemExit) as e:
        main(["stream", "--source", "never_opened.mp4", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}: expected an integer" in capsys.readouterr().err
