"""The command-line tools added for streaming and CPU deployment: stream, benchmark, compare."""

from __future__ import annotations

import json

import pytest

from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG
from mse_rt.cli import main


def test_stream_prints_final_detections_with_their_delay(capsys):
    files = sorted((DEMO / "features").glob("*.npy"))[:2]
    assert main(["stream", "--lag", "8", "--hop", "4", "--min-score", "0.3", "--show-in-progress", "0.4",
                 *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "FINAL class" in out and "after its end" in out and "in progress" in out
    assert "2 streams" in out


def test_benchmark_writes_json_and_markdown(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    j, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["benchmark", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "--variants", "eager",
                 "onnxruntime", "--T", "256", "--B", "1", "2", "--repeat", "2", "--warmup", "1", "--json", str(j),
                 "--md", str(md)]) == 0
    res = json.loads(j.read_text())
    assert {(r["variant"], r["B"]) for r in res["rows"]} == {("eager", 1), ("eager", 2), ("onnxruntime", 1),
                                                              ("onnxruntime", 2)}
    assert all(r["ms_median"] > 0 and r["gflop_per_video"] > 0 for r in res["rows"])
    assert "GFLOP/s" in md.read_text() and "fp32 GEMM peak" in capsys.readouterr().out
    assert res["gemm_peaks_gops"]["fp32"] > 0 and all(r["precision"] == "fp32" for r in res["rows"])


def test_gemm_peaks_are_measured_per_precision():
    from mse_rt.apps.benchmark import gemm_peak, variant_precision

    assert [variant_precision(v) for v in ("eager", "openvino-bf16", "onnxruntime-int8", "openvino-fp32")] == \
        ["fp32", "bf16", "int8", "fp32"]
    for prec in ("fp32", "bf16", "int8"):
        peak = gemm_peak(prec, n=256, repeat=2)
        assert peak is None or peak > 0.1, (prec, peak)
    with pytest.raises(ValueError, match="precision"):
        gemm_peak("fp8")


def test_compare_with_ground_truth(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "--variants", "onnxruntime",
                 "--gt", str(DEMO / "annotations.json"), "--split", "validation", str(DEMO / "features")]) == 0
    out = capsys.readouterr().out
    assert "top-10 matched 100.0 %" in out and out.count("mAP 84.90") == 2  # fp32 ONNX == eager


def test_int8_variants_need_calibration(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", str(DEMO / "features"), "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT),
                 "--variants", "onnxruntime-int8"]) == 2
    assert "need calibration feature files" in capsys.readouterr().err
