"""TensorRT path without TensorRT: compatibility check of our graphs, engine file format, profiles,
fp16 graph accuracy (ONNX Runtime, CPU). Tests needing TensorRT and a GPU are skipped with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt import BackendError, ExportError
from mse_rt.cli import main

from golden_utils import CONFIGS, GOLDEN, golden_videos

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mse_rt.export import (  # noqa: E402
    check_onnx_for_tensorrt,
    engine_profiles,
    export_onnx,
    read_engine_file,
    tensorrt_ep_providers,
    write_engine_file,
)

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = torch.cuda.is_available()
except ImportError:
    HAVE_TRT = False


@pytest.fixture(scope="module")
def fp16_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16")
    return {name: export_onnx((GOLDEN / name / "config.yaml", GOLDEN / name / "ckpt.pth.tar"), out / f"{name}.onnx",
                              precision="fp16") for name in ("thumos_small", "anet_small")}


@pytest.mark.slow
def test_check_onnx_golden_graphs(onnx_files, fp16_files, capsys):
    paths = [*onnx_files.values(), *fp16_files.values()]
    for p in paths:
        report = check_onnx_for_tensorrt(p)
        assert report.ok, report.summary()
        assert report.ops["Conv"] > 0 and "TopK" not in report.ops  # top-k stays in the runtime
    assert main(["check-onnx", *map(str, paths)]) == 0
    assert "compatible with TensorRT 10" in capsys.readouterr().out


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory (/dev/shm) when it has room, else tmp_path: the published models' ONNX
    files are 100-330 MB each, and writing them to disk was a third of this test's time."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="mse_rt_test_", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


WIDTHS = ("embd_dim", "fpn_dim", "head_dim", "mse_mlp_dim")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["thumos_i3d", "anet_tsp", "hacs_slowfast"])
def test_check_onnx_published_configs(name, scratch):
    """The three published configs (random weights), fp32 and fp16 graphs, with their layer widths
    cut to 1/8: what check-onnx inspects (the operators, TopK's K, int64 constants, masks, reshape
    sources, dynamic axes) does not depend on channel widths, and the full-width files (100-330 MB
    each) made this the slowest test of the suite. Full-width exports: benchmarks/bench_cpu_precisions.py."""
    cfg = mse_rt.load_config(CONFIGS / f"{name}.yaml")
    full = mse_rt.build_model(cfg)
    for key in WIDTHS:
        cfg["model"][key] = max(32, cfg["model"][key] // 8)
    model = mse_rt.build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters()) / 8
    full_ops = {type(m).__name__ for m in full.modules()}
    assert {type(m).__name__ for m in model.modules()} == full_ops  # the same layers, narrower
    for precision in ("fp32", "fp16"):
        path = export_onnx(model, scratch / f"{precision}.onnx", precision=precision, validate=False)
        report = check_onnx_for_tensorrt(path)
        assert report.ok, report.summary()
        path.unlink()


def test_check_onnx_finds_problems(tmp_path, capsys):
    from onnx import TensorProto, helper

    k = helper.make_tensor("k", TensorProto.INT64, [1], [5000])
    big = helper.make_tensor("big", TensorProto.INT64, [1], [2 ** 40])
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"]),
             helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BOOL),
             helper.make_node("Resize", ["b", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("Add", ["i", "big"], ["j"]),
             helper.make_node("Col2Im", ["x", "big", "big"], ["z"]),
             helper.make_node("NonZero", ["x"], ["nz"])]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [2], [1.0, 2.0])
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("v",)],
                          initializer=[k, big, scales])
    import onnx

    p = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(p))
    r = check_onnx_for_tensorrt(p)
    text = r.summary()
    assert not r.ok
    assert "K = 5000 >= 3840" in text and "Resize on a BOOL" in text and "outside the INT32 range" in text
    assert "Col2Im" in text and "not supported" in text and "data-dependent" in text
    assert main(["check-onnx", str(p)]) == 1
    with pytest.raises(ExportError, match="not found"):
        check_onnx_for_tensorrt(tmp_path / "none.onnx")


def test_engine_file_round_trip_and_errors(tmp_path):
    plan = bytes(range(256)) * 40
    meta = {"format": "mse_rt.engine/1", "config": {"a": 1}, "profiles": [], "tensorrt_version": "10.9.0", "gpu": "X"}
    p = write_engine_file(tmp_path / "m.engine", plan, meta)
    got_meta, got_plan = read_engine_file(p)
    assert got_meta == meta and got_plan == plan
    raw = p.read_bytes()
    (tmp_path / "trunc.engine").write_bytes(raw[:-40])
    with pytest.raises(BackendError, match="truncated"):
        read_engine_file(tmp_path / "trunc.engine")
    flipped = bytearray(raw)
    flipped[-100] ^= 0xFF
    (tmp_path / "flip.engine").write_bytes(bytes(flipped))
    with pytest.raises(BackendError, match="checksum"):
        read_engine_file(tmp_path / "flip.engine")
    (tmp_path / "other.engine").write_bytes(b"\x00" * 64)
    with pytest.raises(BackendError, match="not an mse_rt engine file"):
        read_engine_file(tmp_path / "other.engine")
    bad_version = bytearray(raw)
    bad_version[8:12] = (7).to_bytes(4, "little")
    (tmp_path / "v.engine").write_bytes(bytes(bad_version))
    with pytest.raises(BackendError, match="format 7"):
        read_engine_file(tmp_path / "v.engine")
    with pytest.raises(BackendError, match="not found"):
        read_engine_file(tmp_path / "none.engine")


@pytest.mark.parametrize("name,c,t_max", [("thumos_i3d", 2048, 13824), ("anet_tsp", 512, 768),
                                          ("hacs_slowfast", 2304, 960)])
def test_engine_profiles(name, c, t_max):
    from mse_rt.export.tensorrt import profile_for
    from mse_rt.pipeline.padding import max_video_length, pad_policy_length

    cfg = mse_rt.load_config(CONFIGS / f"{name}.yaml")
    profs = engine_profiles(cfg, max_batch=8)
    L = cfg["model"]["max_seq_len"]
    short = profs[0]
    assert short["feats"] == {"min": [1, c, 32], "opt": [1, c, L], "max": [8, c, L]}
    assert short["lengths"] == {"min": [1], "opt": [1], "max": [8]}
    if t_max > L:  # long videos get their own profile at B = 1: no B = 8 x longest-T activations
        assert len(profs) == 2
        assert profs[1]["feats"]["max"] == [1, c, t_max] and profs[1]["feats"]["min"][2] > L
    else:
        assert len(profs) == 1
    # every padded length the runtime can produce fits a profile, batched up to max_seq_len
    longest = max_video_length(cfg)
    lengths = {L} | ({pad_policy_length(L + 1, cfg), pad_policy_length(longest, cfg)} if longest > L else set())
    for T in lengths:
        assert profile_for(profs, 1, T) is not None
    assert profile_for(profs, 8, L) == 0
    assert profile_for(profs, 8, t_max) is None if t_max > L else profile_for(profs, 8, t_max) == 0
    with pytest.raises(ExportError, match="max_batch"):
        engine_profiles(cfg, max_batch=0)


@pytest.mark.slow
def test_fp16_graph_accuracy_on_golden(fp16_files, capsys):
    """fp16 ONNX graph (ONNX Runtime, CPU) vs eager fp32 on the golden videos: counts and the
    top detections agree closely; the differences are printed for the note."""
    lines = []
    for name, path in fp16_files.items():
        meta = json.loads(json.dumps(mse_rt.export.read_onnx_metadata(path)))
        assert meta["mse_rt.precision"] == "fp16"
        half = mse_rt.Detector.from_onnx(path)
        full = mse_rt.Detector.from_checkpoint(GOLDEN / name / "config.yaml", GOLDEN / name / "ckpt.pth.tar")
        for v in golden_videos(name):
            x = v["data"]["feats"].T
            a, b = full.detect(x, fps=30.0), half.detect(x, fps=30.0)
            k = min(10, len(a))
            top_score = float(np.abs(a.scores[:k] - b.scores[:k]).max())
            top_seg = float(np.abs(a.segments[:k] - b.segments[:k]).max())
            lines.append(f"{name}/{v['video_id']}: dets {len(b)} vs {len(a)}, top-{k} max |score diff| "
                         f"{top_score:.2e}, |segment diff| {top_seg:.2e} s")
            assert abs(len(a) - len(b)) <= max(3, 0.05 * len(a))
            assert top_score < 5e-3 and top_seg < 0.2
    print("\n".join(lines))


def test_ort_tensorrt_providers_and_from_file(tmp_path, onnx_files):
    prov = tensorrt_ep_providers(fp16=True, cache_dir=tmp_path)
    assert prov[0][0] == "TensorrtExecutionProvider" and prov[0][1]["trt_fp16_enable"] is True
    assert prov[-1] == "CPUExecutionProvider"
    with pytest.raises(BackendError, match="TensorrtExecutionProvider is not available"):
        mse_rt.Detector.from_onnx(onnx_files["anet_small"], providers=prov)
    with pytest.raises(BackendError, match=r"expected a \.onnx, \.xml \(OpenVINO IR\) or \.engine file"):
        mse_rt.Detector.from_file(tmp_path / "m.plan")


@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt package and a CUDA GPU")
def test_engine_end_to_end(tmp_path, onnx_files):  # pragma: no cover - GPU machines with TensorRT
    from mse_rt.export import build_engine

    eng = build_engine(onnx_files["thumos_small"], tmp_path / "m.engine", fp16=False)
    det = mse_rt.Detector.from_engine(eng)
    v = golden_videos("thumos_small")[0]
    r = det.detect(v["data"]["feats"].T, fps=float(v["data"]["fps"]))
    assert abs(len(r) - v["num_detections"]) <= 3


@pytest.mark.skipif(HAVE_TRT, reason="checks the message on machines without TensorRT")
def test_from_engine_without_tensorrt(tmp_path):
    with pytest.raises(BackendError, match="engine file not found"):
        mse_rt.Detector.from_engine(tmp_path / "none.engine")
    p = write_engine_file(tmp_path / "m.engine", b"plan", {"config": {}, "profiles": [], "tensorrt_version": "10.0.0"})
    with pytest.raises(BackendError, match="pip install tensorrt"):
        mse_rt.Detector.from_file(p)
    with pytest.raises(BackendError, match="pip install tensorrt"):  # the CLI's flag is no TypeError
        mse_rt.Detector.from_file(p, allow_unverified=True)
