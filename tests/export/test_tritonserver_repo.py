"""Triton Inference Server model repository: configs parse as Triton's protobuf, and the Python
backend (driven here through a stand-in for triton_python_backend_utils) reproduces the golden
detections from the ONNX network's outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from mse_rt.export.tritonserver_repo import ENSEMBLE, NET, POST, export_triton_repo

from golden_utils import GOLDEN, golden_videos, match_detections

pytest.importorskip("onnxruntime")
NAME = "thumos_small"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"),
                              tmp_path_factory.mktemp("t") / "repo", max_batch=4)


def _parse(path):
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_layout_and_configs_parse(repo):
    assert (repo / NET / "1" / "model.onnx").is_file() and (repo / POST / "1" / "model.py").is_file()
    net, post, ens = (_parse(repo / m / "config.pbtxt") for m in (NET, POST, ENSEMBLE))
    assert net.platform == "onnxruntime_onnx" and net.max_batch_size == 4 and net.HasField("dynamic_batching")
    assert [i.name for i in net.input] == ["feats", "lengths"] and list(net.input[0].dims) == [64, -1]
    assert list(net.input[1].reshape.shape) == []  # (B,) lengths as the ONNX graph wants
    assert post.backend == "python" and json.loads(post.parameters["mse_rt_config"].string_value)["model"]
    assert ens.platform == "ensemble" and [s.model_name for s in ens.ensemble_scheduling.step] == [NET, POST]
    assert {o.name for o in ens.output} == {"segments", "scores", "labels"}


def test_refuses_a_foreign_folder(tmp_path):
    from mse_rt import ExportError

    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(ExportError, match="not an mse_rt model repository"):
        export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"), tmp_path)


def _fake_pb_utils():
    class Tensor:
        def __init__(self, name, arr):
            self.name, self.arr = name, arr

        def as_numpy(self):
            return self.arr

        @classmethod
        def from_dlpack(cls, name, obj):
            return cls(name, np.from_dlpack(obj))

        def __dlpack__(self, **kwargs):
            return self.arr.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.arr.__dlpack_device__()

    class InferenceResponse:
        def __init__(self, output_tensors):
            self.outputs = {t.name: t.arr for t in output_tensors}

    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = Tensor
    mod.InferenceResponse = InferenceResponse
    mod.get_input_tensor_by_name = lambda request, name: request[name]
    return mod


def _load_model_py(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TritonPythonModel()


def _post_model(repo, name):
    post = _load_model_py(repo / POST / "1" / "model.py", name)
    cfg_json = _parse(repo / POST / "config.pbtxt").parameters["mse_rt_config"].string_value
    post.initialize({"model_config": json.dumps({"parameters": {"mse_rt_config": {"string_value": cfg_json}}})})
    return post


def _check_post(post, pb, dense: dict, lens, z, what: str):
    """Run the post model on one video's dense outputs; its detections must match the golden ones."""
    req = {**{k: pb.Tensor(k, a) for k, a in dense.items()},
           "lengths": pb.Tensor("lengths", lens.numpy()[:, None]),
           "fps": pb.Tensor("fps", np.array([[float(z["fps"])]], np.float32))}
    (resp,) = post.execute([req])
    scores = resp.outputs["scores"][0]
    keep = scores >= 0
    match_detections(resp.outputs["segments"][0][keep], scores[keep], resp.outputs["labels"][0][keep],
                     z["det_segments_sec"], z["det_scores"], z["det_labels"], what)


def test_python_backend_reproduces_golden_detections(repo, monkeypatch):
    import onnxruntime as ort
    import torch

    from mse_rt.pipeline.padding import pad_batch

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    post = _post_model(repo, "mse_rt_post_model")
    sess = ort.InferenceSession(str(repo / NET / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    pb = sys.modules["triton_python_backend_utils"]
    for v in golden_videos(NAME):
        z = v["data"]
        x, lens = pad_batch([torch.from_numpy(z["feats"])], int(z["padded_len"]))  # the client pads
        outs = sess.run(None, {"feats": x.numpy(), "lengths": lens.numpy()})
        _check_post(post, pb, dict(zip(("cls_prob", "seg_start", "seg_end"), outs)), lens, z,
                    f"triton post {v['video_id']}")


@pytest.mark.slow
def test_python_backend_network_then_post_reproduce_golden(tmp_path, monkeypatch):
    """--triton-net python: the network's Python-backend model (ONNX Runtime inside) feeding the
    post-processing model gives the golden detections; its config names the python backend."""
    import torch

    from mse_rt.pipeline.padding import pad_batch

    repo = export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"), tmp_path / "r",
                              max_batch=2, net_backend="python")
    net_cfg = _parse(repo / NET / "config.pbtxt")
    assert net_cfg.backend == "python" and not net_cfg.platform and (repo / NET / "1" / "model.onnx").is_file()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    pb = sys.modules["triton_python_backend_utils"]
    net = _load_model_py(repo / NET / "1" / "model.py", "mse_rt_net_model")
    net.initialize({"model_config": json.dumps({"parameters": {}}), "model_repository": str(repo / NET),
                    "model_version": "1"})
    post = _post_model(repo, "mse_rt_post_model2")
    for v in golden_videos(NAME)[:3]:
        z = v["data"]
        x, lens = pad_batch([torch.from_numpy(z["feats"])], int(z["padded_len"]))
        (dense,) = net.execute([{"feats": pb.Tensor("feats", x.numpy()),
                                 "lengths": pb.Tensor("lengths", lens.numpy())}])
        _check_post(post, pb, dense.outputs, lens, z, f"python net {v['video_id']}")


def test_python_net_refuses_an_engine(tmp_path):
    from mse_rt import ExportError

    with pytest.raises(ExportError, match="net_backend"):
        export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"), tmp_path / "r",
                           net_backend="tensorrt")
    with pytest.raises(ExportError, match="needs net_backend='onnxruntime'"):
        export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"), tmp_path / "r",
                           engine=True, net_backend="python")


def test_repository_from_model_files(golden_onnx, tmp_path, monkeypatch):
    """From a saved model file: an mse_rt OpenVINO IR goes in as model.xml + model.bin, run by the
    Python backend through mse_rt's OpenVINO backend (no calibration on the server), and the
    network + post models reproduce the golden detections; an mse_rt .onnx is copied in as is."""
    pytest.importorskip("openvino")
    import torch

    from mse_rt.export.openvino import quantize_openvino
    from mse_rt.pipeline.padding import pad_batch

    xml = quantize_openvino(golden_onnx, tmp_path / "m.xml", precision="fp32")
    repo = export_triton_repo(xml, tmp_path / "r", max_batch=2)
    net_cfg = _parse(repo / NET / "config.pbtxt")
    assert net_cfg.backend == "python" and not net_cfg.platform
    assert (repo / NET / "1" / "model.xml").read_bytes() == xml.read_bytes()
    assert (repo / NET / "1" / "model.bin").read_bytes() == xml.with_suffix(".bin").read_bytes()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    pb = sys.modules["triton_python_backend_utils"]
    net = _load_model_py(repo / NET / "1" / "model.py", "mse_rt_net_ov_model")
    net.initialize({"model_config": json.dumps({"parameters": {}}), "model_repository": str(repo / NET),
                    "model_version": "1"})
    assert net.backend.source == "ir" and net.backend.verified and not net.backend.calibrated_here
    post = _post_model(repo, "mse_rt_post_model3")
    for v in golden_videos(NAME)[:3]:
        z = v["data"]
        x, lens = pad_batch([torch.from_numpy(z["feats"])], int(z["padded_len"]))
        (dense,) = net.execute([{"feats": pb.Tensor("feats", x.numpy()), "lengths": pb.Tensor("lengths", lens.numpy())}])
        _check_post(post, pb, dense.outputs, lens, z, f"openvino net {v['video_id']}")
    onnx_repo = export_triton_repo(golden_onnx, tmp_path / "o", max_batch=2)
    assert _parse(onnx_repo / NET / "config.pbtxt").platform == "onnxruntime_onnx"
    assert (onnx_repo / NET / "1" / "model.onnx").read_bytes() == golden_onnx.read_bytes()


def test_repository_from_a_bad_model_file(golden_onnx, tmp_path):
    pytest.importorskip("openvino")
    from mse_rt import ExportError, ModelFileError
    from mse_rt.export.openvino import quantize_openvino

    xml = quantize_openvino(golden_onnx, tmp_path / "m.xml", precision="fp32")
    with pytest.raises(ExportError, match="an IR runs only there"):
        export_triton_repo(xml, tmp_path / "r", net_backend="onnxruntime")
    with pytest.raises(ExportError, match="an IR runs only there"):
        export_triton_repo(golden_onnx, tmp_path / "r", net_backend="openvino")
    with pytest.raises(ExportError, match="from the checkpoint"):
        export_triton_repo(golden_onnx, tmp_path / "r", engine=True)
    xml.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:-8])
    with pytest.raises(ModelFileError, match=r"m\.bin: not the weights of m\.xml"):
        export_triton_repo(xml, tmp_path / "r")
    trunc = tmp_path / "t.onnx"
    trunc.write_bytes(golden_onnx.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"t\.onnx as ONNX: truncated"):
        export_triton_repo(trunc, tmp_path / "r")
    assert not (tmp_path / "r").exists()
