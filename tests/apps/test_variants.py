"""Deployment variants and their agreement report (`mse-rt compare`)."""

from __future__ import annotations

import pytest

from golden_utils import GOLDEN


@pytest.mark.slow
def test_compare_reports_agreement_on_golden_videos(tmp_path, capsys):
    """ONNX Runtime int8 vs eager fp32 on the golden thumos_small videos: the documented detection
    tolerance. (OpenVINO int8 on the same videos, calibrated the same way: its agreement is checked
    on the one calibration of tests/runtime/test_openvino_ir.py.)"""
    from mse_rt.apps.variants import build_variants, compare_results

    from golden_utils import golden_videos

    feats = [v["data"]["feats"].T for v in golden_videos("thumos_small")]
    dets = build_variants(["eager", "onnxruntime-int8"], GOLDEN / "thumos_small" / "config.yaml",
                          GOLDEN / "thumos_small" / "ckpt.pth.tar", tmp_path, calib=feats)
    ref = dets["eager"].detect_batch(feats, fps=30.0)
    for name in ("onnxruntime-int8",):
        agree = compare_results(ref, dets[name].detect_batch(feats, fps=30.0))
        print(name, agree.line())
        assert agree.matched >= 0.8, f"{name}: {agree.line()}"
    same = compare_results(ref, ref)
    assert same.matched == 1.0 and same.score_diff_max == 0.0
