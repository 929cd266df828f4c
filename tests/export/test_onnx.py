"""ONNX export and the ONNX Runtime backend: metadata, dynamic axes, validation, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import mse_rt
from mse_rt import BackendError, CheckpointError, ExportError, InputError
from mse_rt.cli import main
from mse_rt.config import finalize_config
from mse_rt.model.detector_graph import DetectorGraph

from golden_utils import GOLDEN, golden_videos, match_detections

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mse_rt.export import export_onnx, format_from_path, read_onnx_metadata  # noqa: E402


def test_metadata_makes_the_file_self_contained(onnx_files):
    meta = read_onnx_metadata(onnx_files["thumos_small"])
    assert meta["mse_rt.format"] == "mse_rt.onnx/1" and meta["mse_rt.version"] == mse_rt.__version__
    cfg = json.loads(meta["mse_rt.config"])
    assert cfg["dataset"]["num_classes"] == 5 and cfg["model"]["num_bins"] == 16
    assert set(json.loads(meta["mse_rt.inputs"])) == {"feats", "lengths"}
    assert set(json.loads(meta["mse_rt.outputs"])) == {"cls_prob", "seg_start", "seg_end"}
    assert len(meta["mse_rt.checkpoint_sha256"]) == 64


def test_dynamic_batch_and_length(onnx_files):
    """One graph at several batch sizes and padded lengths, up to 6x max_seq_len (beyond it)."""
    det = mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                          GOLDEN / "thumos_small" / "ckpt.pth.tar")
    graph = DetectorGraph(det.backend.model).eval()
    sess = ort.InferenceSession(str(onnx_files["thumos_small"]))
    for B, T in [(1, 256), (3, 288), (2, 608), (1, 1536)]:
        x = torch.randn(B, 64, T)
        lengths = torch.randint(1, T + 1, (B,))
        got = sess.run(None, {"feats": x.numpy(), "lengths": lengths.numpy()})
        with torch.inference_mode():
            ref = graph(x, lengths)
        P = sum(T // 2 ** l for l in range(6))
        for g, r in zip(got, ref):
            assert g.shape == (B, P, 5)
            np.testing.assert_allclose(g, r.numpy(), atol=1e-4 * max(1.0, float(r.abs().max())), rtol=0)


@pytest.mark.slow
def test_static_export_and_shape_check(tmp_path):
    p = export_onnx((GOLDEN / "anet_small" / "config.yaml", GOLDEN / "anet_small" / "ckpt.pth.tar"),
                    tmp_path / "static.onnx", dynamic=False, batch=2)
    sess_in = ort.InferenceSession(str(p)).get_inputs()[0]
    assert sess_in.shape == [2, 48, 192]
    det = mse_rt.Detector.from_onnx(p)
    with pytest.raises(InputError, match="static shape"):
        det.detect(np.zeros((10, 48), np.float32))


@pytest.mark.slow
def test_cli_export_then_detect_with_the_file_alone(tmp_path):
    model = tmp_path / "m.onnx"
    assert main(["export", "--config", str(GOLDEN / "thumos_small" / "config.yaml"), "--ckpt",
                 str(GOLDEN / "thumos_small" / "ckpt.pth.tar"), "--format", "onnx", "-o", str(model)]) == 0
    v = golden_videos("thumos_small")[3]
    feat = tmp_path / f"{v['video_id']}.npy"
    np.save(feat, v["data"]["feats"].T)
    out = tmp_path / "r.json"
    assert main(["detect", "--model", str(model), "--fps", str(float(v["data"]["fps"])), "-q", "-o", str(out),
                 str(feat)]) == 0
    entries = json.loads(out.read_text())["results"][v["video_id"]]
    z = v["data"]
    match_detections(np.array([e["segment"] for e in entries]), np.array([e["score"] for e in entries]),
                     np.array([e["label"] for e in entries]), z["det_segments_sec"], z["det_scores"],
                     z["det_labels"], "cli onnx")


@pytest.mark.slow
def test_from_checkpoint_onnxruntime_uses_a_cache(tmp_path):
    kw = dict(backend="onnxruntime", cache_dir=tmp_path)
    a = mse_rt.Detector.from_checkpoint(GOLDEN / "anet_small" / "config.yaml", GOLDEN / "anet_small" / "ckpt.pth.tar", **kw)
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    b = mse_rt.Detector.from_checkpoint(GOLDEN / "anet_small" / "config.yaml", GOLDEN / "anet_small" / "ckpt.pth.tar", **kw)
    assert files[0].stat().st_mtime_ns == mtime  # not exported again
    assert a.backend.name == b.backend.name == "onnxruntime"


def test_exporter_errors(tmp_path):
    paths = (GOLDEN / "thumos_small" / "config.yaml", GOLDEN / "thumos_small" / "ckpt.pth.tar")
    with pytest.raises(ExportError, match="unsupported opset 11"):
        export_onnx(paths, tmp_path / "a.onnx", opset=11)
    with pytest.raises(ExportError, match="not a padded length"):
        export_onnx(paths, tmp_path / "a.onnx", max_len=300)
    with pytest.raises(ExportError, match="MSETAD model or a"):
        export_onnx("model.pth", tmp_path / "a.onnx")
    data = yaml.safe_load(paths[0].read_text())
    data["dataset"]["input_dim"] = 32
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="dataset.input_dim"):
        export_onnx((bad_cfg, paths[1]), tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()
    with pytest.raises(ExportError, match="cannot tell the model format"):
        format_from_path("model.pt")


@pytest.mark.slow
def test_validation_catches_a_wrong_graph(tmp_path, monkeypatch):
    """Break the traced graph (attention mask ignored) and the exporter must refuse the file."""
    cfg = finalize_config(yaml.safe_load((GOLDEN / "thumos_small" / "config.yaml").read_text()))
    model = mse_rt.build_model(cfg)
    mse_rt.load_checkpoint(model, GOLDEN / "thumos_small" / "ckpt.pth.tar")
    import mse_rt.model.mse_block as mm

    monkeypatch.setattr(mm, "MASK_NEG", 0.0)
    with pytest.raises(ExportError, match="disagrees with eager"):
        export_onnx(model, tmp_path / "broken.onnx")
    assert not (tmp_path / "broken.onnx").exists()


def test_backend_errors(tmp_path, onnx_files):
    with pytest.raises(BackendError, match="not found"):
        mse_rt.Detector.from_onnx(tmp_path / "none.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(BackendError, match="cannot load"):
        mse_rt.Detector.from_onnx(corrupt)
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(foreign))
    with pytest.raises(BackendError, match="not an mse_rt ONNX graph"):
        mse_rt.Detector.from_onnx(foreign)
    with pytest.raises(BackendError, match="CUDAExecutionProvider is not available"):
        mse_rt.Detector.from_onnx(onnx_files["thumos_small"], providers=["CUDAExecutionProvider"])
    det = mse_rt.Detector.from_onnx(onnx_files["thumos_small"])
    with pytest.raises(InputError, match="expected 64 feature channels"):
        det.detect(np.zeros((10, 65), np.float32), fps=30)
    with pytest.raises(BackendError, match="graph_optimization"):
        mse_rt.Detector.from_onnx(onnx_files["thumos_small"], graph_optimization="max")
