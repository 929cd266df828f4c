"""int8 QDQ graphs for ONNX Runtime (`mse-rt quantize`): demo mAP within 0.5 point of fp32, the recipe
in the metadata, calibration errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mse_rt
from mse_rt import InputError
from mse_rt.apps.demo import DEMO_CONFIG

from golden_utils import demo_map

pytest.importorskip("onnxruntime")


def test_int8_onnx_keeps_demo_map_and_records_its_recipe(demo_onnx, calib, fp32_map, tmp_path):
    from mse_rt.export import read_onnx_metadata
    from mse_rt.export.quantize import quantize_onnx

    q = quantize_onnx(demo_onnx, tmp_path / "demo.int8.onnx", [calib])
    meta = read_onnx_metadata(q)
    summary = json.loads(meta["mse_rt.quantization"])
    assert meta["mse_rt.precision"] == "int8" and summary["calibration_videos"] == 32
    assert summary["quantize_nodes"] > 0 and "S8 per-channel" in summary["recipe"]
    # which GEMMs run int8: every attention block's q and v projections (exported as MatMuls
    # with a weight) take a dequantized weight; LayerNorm statistics and attention products do not
    import onnx

    proto = onnx.load(str(q))
    producer = {o: n for n in proto.graph.node for o in n.output}
    dq_weight = [n.name for n in proto.graph.node if n.op_type == "MatMul"
                 and getattr(producer.get(n.input[1]), "op_type", "") == "DequantizeLinear"]
    arch = mse_rt.load_config(DEMO_CONFIG)["model"]["backbone_arch"]
    assert len(dq_weight) == 2 * (arch[1] + arch[2]), dq_weight
    assert not [n for n in dq_weight if "norm" in n]
    det = mse_rt.Detector.from_onnx(q)
    assert det.backend.verified  # checksummed like any export
    m = demo_map(det)
    assert abs(m - fp32_map) <= 0.005, f"int8 mAP {m:.4f} vs fp32 {fp32_map:.4f}"


def test_quantize_refuses_bad_calibration(demo_onnx, tmp_path):
    from mse_rt.export.quantize import quantize_onnx

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no .npy"):
        quantize_onnx(demo_onnx, tmp_path / "q.onnx", [empty])
    np.save(tmp_path / "wrong.npy", np.zeros((50, 31), np.float32))
    with pytest.raises(InputError, match="expected 32 feature channels"):
        quantize_onnx(demo_onnx, tmp_path / "q.onnx", [tmp_path / "wrong.npy"])
    bad = np.zeros((50, 32), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        quantize_onnx(demo_onnx, tmp_path / "q.onnx", [bad])
    with pytest.raises(InputError, match="no calibration data"):
        quantize_onnx(demo_onnx, tmp_path / "q.onnx", [])
    assert not (tmp_path / "q.onnx").exists()


def test_cli_quantize(demo_onnx, calib, tmp_path, capsys):
    from mse_rt.cli import main

    out = tmp_path / "m.int8.onnx"
    assert main(["quantize", "--model", str(demo_onnx), "--calib", str(calib), "-o", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
