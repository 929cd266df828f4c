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


def check_int8_structure(det):
    """The recipe's float islands: the LayerNorm channel-sum convs read no FakeQuantize; the heads'
    trunk convs (run once on the joined levels) read one quantized tensor each (per-level
    FakeQuantize scales in front of the join sent them to bf16)."""
    sums = [op for op in det.backend.model.get_ordered_ops() if op.get_friendly_name().endswith("/sum")]
    assert len(sums) == det.backend.layernorm_mean_convs > 0
    assert all(op.input_value(0).get_node().get_type_name() != "FakeQuantize"
               and op.input_value(1).get_node().get_type_name() == "Constant" for op in sums)
    trunk = [op for op in det.backend.model.get_ordered_ops()
             if op.get_type_name() == "Convolution" and "_head/head." in op.get_friendly_name()]
    assert trunk and all(op.input_value(0).get_node().get_type_name() == "FakeQuantize" for op in trunk)
