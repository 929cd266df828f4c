"""`mse-rt stream`: feature files played as simultaneous live streams."""

from __future__ import annotations

from mse_rt.apps.demo import DEMO
from mse_rt.cli import main


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
    import pytest

    files = sorted((DEMO / "features").glob("*.npy"))[:1]
    for speed in ("1e-300", "0", "1e9", "nan"):
        with pytest.raises(SystemExit) as e:  # 1e-300 used to overflow time.sleep
            main(["stream", "--realtime", "--speed", speed, *map(str, files)])
        assert e.value.code == 2
        assert "expected a speed factor in [0.001, 1000]" in capsys.readouterr().err
