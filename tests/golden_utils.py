"""Helpers shared by the tests: golden-vector paths, tolerances, the detection matcher, the demo mAP."""

from __future__ import annotations

import os
from pathlib import Path

from mse_rt import parity
from mse_rt.parity import assert_close_rel, match_detections  # noqa: F401 (re-exported for the tests)

REPO = Path(__file__).resolve().parents[1]
# Vendored copies (tests/data/golden/PROVENANCE.md says where they come from); MSE_RT_GOLDEN
# points the tests at another copy, e.g. a freshly regenerated one.
GOLDEN = Path(os.environ.get("MSE_RT_GOLDEN", Path(__file__).resolve().parent / "data" / "golden"))
# The three published configs ship inside the package (mse_rt/assets/configs).
CONFIGS = REPO / "mse_rt" / "assets" / "configs"
GOLDEN_CONFIGS = ("thumos_small", "anet_small")


def golden_videos(name: str) -> list[dict]:
    """[{video_id, length, padded_len, num_detections, data (npz)}] of one golden config."""
    return parity.golden_videos(GOLDEN, name)


def demo_map(det) -> float:
    """Average mAP (tIoU 0.3:0.7) of a Detector on the demo's held-out videos."""
    from mse_rt.apps.demo import DEMO
    from mse_rt.eval import THUMOS_TIOUS, evaluate
    from mse_rt.io.dataset import read_dataset

    rs = [det.detect(v["feats"], fps=v["fps"], video_id=v["video_id"]) for v in read_dataset(DEMO)]
    return evaluate(rs, DEMO / "annotations.json", THUMOS_TIOUS, split="validation").average
