"""The other commands: option checks (export, train, synth, check-onnx), benchmark and compare."""

from __future__ import annotations

import json

import pytest

from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG
from mse_rt.cli import main

from golden_utils import GOLDEN

CFG = str(GOLDEN / "thumos_small" / "config.yaml")
CKPT = str(GOLDEN / "thumos_small" / "ckpt.pth.tar")


@pytest.mark.parametrize("argv", [["synth", "--out", "X", "--videos", "-3"], ["synth", "--out", "X", "--videos", "0"],
                                  ["train", "--config", "c", "--data", "d", "--out", "o", "--epochs", "0"],
                                  ["export", "--config", "c", "--ckpt", "k", "-o", "o", "--max-batch", "0"]])
def test_other_numeric_options_are_validated(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_export_onto_a_directory(tmp_path, capsys):
    assert main(["export", "--config", CFG, "--ckpt", CKPT, "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_train_with_missing_data_folder(tmp_path, capsys):
    rc = main(["train", "--config", CFG, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "c.pth")])
    assert rc == 2
    assert "no annotations.json" in capsys.readouterr().err


def test_check_onnx_on_an_empty_file(tmp_path, capsys):
    pytest.importorskip("onnx")
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    assert main(["check-onnx", str(p)]) == 2
    assert "holds no ONNX graph" in capsys.readouterr().err


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
