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
