"""The OpenVINO backend: fp32 / bf16 / int8 against eager and the golden videos, its graph rewrites,
marks and profile, and its errors.

Tolerances (docs/cpu_precisions.md): on the bundled demo model each reduced precision's average mAP
within 0.5 point of fp32; on the golden thumos_small videos, vs eager fp32, at least 80 % of each
video's top-10 detections matched (same label, tIoU >= 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

import mse_rt
from mse_rt import BackendError, InputError

from golden_utils import GOLDEN, check_int8_structure, demo_map

pytest.importorskip("onnxruntime")

ov = pytest.importorskip("openvino")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_precisions_on_the_demo(demo_onnx, fp32_map, precision):
    """fp32 / bf16 from the ONNX file; int8 from the demo's shipped IR (``make demo-model``: the
    recipe below, calibrated once on the 32 videos of the ``calib`` set with NNCF's full bias
    correction, the recipe the 0.5-point tolerance is documented for: over 7 calibration sets
    0.25 point below fp32 on average, all within 0.45; the fast default: 0.41, up to 0.63)."""
    from mse_rt.runtime.backends.openvino import cpu_capabilities

    caps = cpu_capabilities()
    if precision == "bf16" and "BF16" not in caps:
        with pytest.raises(BackendError, match="no BF16"):
            mse_rt.Detector.from_openvino(demo_onnx, precision="bf16")
        return
    if precision == "int8":
        from mse_rt.apps.demo import shipped_int8
        from mse_rt.runtime.backends.openvino.loader import int8_support

        if not int8_support()[0]:
            pytest.skip("this CPU cannot run OpenVINO int8")
        det = shipped_int8("openvino-int8")
        assert det.backend.verified and not det.backend.calibrated_here
        assert det.backend.calibration["videos"] == 32 and det.backend.calibration["bias_correction"] == "full"
        check_int8_structure(det)
    else:
        det = mse_rt.Detector.from_openvino(demo_onnx, precision=precision)
    m = demo_map(det)
    tol = 1e-4 if precision == "fp32" else 0.005
    assert abs(m - fp32_map) <= tol, f"OpenVINO {precision} mAP {m:.4f} vs fp32 {fp32_map:.4f}"


def test_openvino_fp32_matches_eager_on_golden(golden_onnx):
    """Dense outputs within the export tolerance (fp32 requested explicitly: no silent bf16)."""
    from golden_utils import golden_videos

    det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32", max_compiled=2)
    eager = mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                            GOLDEN / "thumos_small" / "ckpt.pth.tar")
    # both channel means of every LayerNorm evaluation became a 1x1 sum conv in OpenVINO's copy of
    # the graph (evaluations counted with hooks while torch traces the same graph); the outputs
    # below must still match eager
    import torch

    from mse_rt.model.detector_graph import DetectorGraph
    from mse_rt.model.layers import LayerNorm

    model = eager.backend.model
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if isinstance(m, LayerNorm)]
    T = model.cfg["model"]["max_seq_len"]
    torch.jit.trace(DetectorGraph(model), (torch.randn(1, model.cfg["model"]["input_dim"], T), torch.tensor([T])),
                    check_trace=False)
    for h in hooks:
        h.remove()
    assert len(calls) > 0 and det.backend.layernorm_mean_convs == 2 * len(calls)
    import torch

    from mse_rt.pipeline.padding import pad_batch

    for v in golden_videos("thumos_small")[:3]:
        x, lens = pad_batch([torch.from_numpy(v["data"]["feats"])], int(v["data"]["padded_len"]))
        a, b = eager.backend.infer(x, lens), det.backend.infer(x, lens)
        for k in a:
            err = float((a[k] - b[k]).abs().max()) / max(1.0, float(a[k].abs().max()))
            assert err <= 1e-3, f"{k}: {err:.2e}"
    assert len(det.backend._compiled) <= 2


def test_openvino_split_batch_matches_eager(golden_onnx):
    """A batch of videos of different lengths run as single-video requests (sequential under the
    latency hint, parallel streams under the throughput hint) gives each video's eager outputs."""
    import torch

    from mse_rt.pipeline.padding import pad_batch

    from golden_utils import golden_videos

    cfg, ckpt = GOLDEN / "thumos_small" / "config.yaml", GOLDEN / "thumos_small" / "ckpt.pth.tar"
    eager = mse_rt.Detector.from_checkpoint(cfg, ckpt)
    vids = golden_videos("thumos_small")[:3]
    T = max(int(v["data"]["padded_len"]) for v in vids)
    x, lens = pad_batch([torch.from_numpy(v["data"]["feats"]) for v in vids], T)
    assert len(set(lens.tolist())) > 1  # different valid lengths in one padded batch
    ref = eager.backend.infer(x, lens)
    for hint, split in (("latency", True), ("throughput", True), ("latency", False)):
        det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32", hint=hint, split_batch=split, threads=2)
        out = det.backend.infer(x, lens)
        for k in ref:
            assert out[k].shape == ref[k].shape
            err = float((out[k] - ref[k]).abs().max()) / max(1.0, float(ref[k].abs().max()))
            assert err <= 1e-3, f"{hint} split={split} {k}: {err:.2e}"
        # the single-video model is what ran when splitting
        assert ((1, x.shape[1], T, "NCT") in det.backend._compiled) == split


def test_openvino_errors(demo_onnx, tmp_path):
    with pytest.raises(BackendError, match="precision must be one of"):
        mse_rt.Detector.from_openvino(demo_onnx, precision="int4")
    with pytest.raises(BackendError, match="needs calibration data"):
        mse_rt.Detector.from_openvino(demo_onnx, precision="int8")
    with pytest.raises(BackendError, match="hint must be one of"):
        mse_rt.Detector.from_openvino(demo_onnx, hint="fast")
    with pytest.raises(BackendError, match="bias_correction must be one of"):
        mse_rt.Detector.from_openvino(demo_onnx, precision="int8", calib=[np.zeros((40, 32), np.float32)],
                                      bias_correction="slow")


@pytest.mark.slow
def test_openvino_runs_the_body_in_bf16(demo_onnx, monkeypatch):
    """With a bf16 hint, no element-wise node of the backbone / neck stays float32 (the plugin's
    graph-tail rule took in the whole residual stream before the body was marked), while the decode
    after the heads does; without the marks the rule is seen to apply (so this test can tell)."""
    from mse_rt.runtime.backends import openvino as ovb

    if "BF16" not in ovb.cpu_capabilities():
        pytest.skip("this CPU has no BF16")

    def f32_nodes(backend):
        d = backend.cfg["dataset"]
        compiled = backend.compiled_shape((1, d["input_dim"], d["max_seq_len"], "NCT")).compiled
        out = {"body": [], "tail": []}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if (str(info["layerType"].astype(str)) in ("Eltwise", "Subgraph")
                    and str(info["runtimePrecision"].astype(str)) == "f32"):
                out["body" if op.get_friendly_name().startswith(ovb.BODY_PREFIXES) else "tail"].append(
                    op.get_friendly_name())
        return out

    marked = f32_nodes(ovb.OpenVinoBackend(demo_onnx, precision="bf16"))
    # the blob cache would lose the marks (OpenVINO rebuilds a cached model without per-node rt_info):
    # a bf16-hint backend does not use it
    assert ovb.OpenVinoBackend(demo_onnx, precision="bf16").cache_dir is None
    assert marked["body"] == [] and marked["tail"], marked
    from mse_rt.runtime.backends.openvino import runner

    monkeypatch.setattr(runner, "mark_body_reduced_precision", lambda model: 0)
    unmarked = f32_nodes(ovb.OpenVinoBackend(demo_onnx, precision="bf16"))
    assert len(unmarked["body"]) > 10, unmarked


@pytest.mark.slow
def test_openvino_marked_body_under_the_throughput_hint(demo_onnx):
    """The marks compile on several streams at once: stored as strings, the plugin's concurrent
    string-to-bool reads crashed the process ("pure virtual method called", 3 of 3 runs here);
    stored as bools they do not. A child process, so a crash fails this test instead of pytest;
    its batch under the throughput hint matches the latency hint's. One round: the string marks
    crashed every run, so a single compile under each hint is the test."""
    import subprocess
    import sys

    from mse_rt.runtime.backends.openvino import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no BF16")
    code = f"""
import numpy as np, mse_rt
from mse_rt.io.dataset import read_dataset
from mse_rt.apps.demo import DEMO
feats = [v["feats"] for v in read_dataset(DEMO)[:4]]
out = {{}}
for hint in ("throughput", "latency"):
    det = mse_rt.Detector.from_openvino({str(demo_onnx)!r}, precision="bf16", hint=hint, threads=2)
    out[hint] = det.detect_batch(feats, fps=30.0)
for a, b in zip(out["throughput"], out["latency"]):
    assert np.array_equal(a.labels, b.labels) and np.allclose(a.scores, b.scores, atol=1e-5), "hints disagree"
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]


@pytest.mark.slow
def test_openvino_profile_counts_the_network_work(golden_onnx):
    """Per-node profile: the GEMM work it counts equals torch's FLOP counter on the eager model
    (an independent count), every node has a time, and the serving models are left alone."""
    import torch

    from mse_rt import build_model, load_checkpoint, load_config
    from mse_rt.apps.benchmark import network_gflop

    det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32")
    cfg = load_config(GOLDEN / "thumos_small" / "config.yaml")
    model = build_model(cfg)
    load_checkpoint(model, GOLDEN / "thumos_small" / "ckpt.pth.tar")
    T = cfg["model"]["max_seq_len"]
    x = torch.randn(1, cfg["model"]["input_dim"], T)
    nodes = det.backend.profile(x, torch.tensor([T]), repeat=1)
    gemm = sum(n["gop"] for n in nodes)
    want = network_gflop(model, T)
    assert abs(gemm - want) <= 0.03 * want, (gemm, want)
    # the exported attention layout lets the plugin fuse MatMul-Softmax-MatMul into its MHA kernel
    # (no separate Softmax; the fused node carries both products' work)
    from mse_rt.runtime.cpu import cpu_flags

    if "avx2" in (cpu_flags() or set()):
        assert not [n for n in nodes if n["type"] == "Softmax" and "/attn/" in n["name"]]
        assert [n for n in nodes if n["type"] == "Subgraph" and n["gop"] > 0 and "/attn/" in n["name"]]
    assert all(n["ms"] > 0 for n in nodes) and any(n["name"].startswith("/model/") for n in nodes)
    assert len(det.backend._compiled) == 0
    with pytest.raises(InputError, match="channels"):
        det.backend.profile(x[:, :-1], torch.tensor([T]))


def test_openvino_time_first_input_matches_channels_first(golden_onnx):
    """The Detector's time-first batches run on the NTC-input model: same outputs (fp32) as the
    plain (B, C, T) model, and detect() goes that way."""
    import torch

    from mse_rt.pipeline.padding import pad_batch

    from golden_utils import golden_videos

    det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32")
    vids = golden_videos("thumos_small")[:2]
    T = max(int(v["data"]["padded_len"]) for v in vids)
    feats = [torch.from_numpy(v["data"]["feats"]) for v in vids]
    ncw = det.backend.infer(*pad_batch(feats, T))
    ntc = det.backend.infer(*pad_batch(feats, T, time_first=True))
    assert all(torch.equal(ncw[k], ntc[k]) for k in ncw)
    C = feats[0].shape[0]
    assert {(1, C, T, "NCT"), (1, C, T, "NTC")} <= set(det.backend._compiled._entries)
    det.backend._compiled._entries.clear()
    det.detect(vids[0]["data"]["feats"].T, fps=30.0)
    assert [k[3] for k in det.backend._compiled._entries] == ["NTC"]


def test_layernorm_mean_rewrite_on_small_graphs():
    """Only (1/C row) @ x of a rank-3 x becomes a channel-sum conv times 1/C, with the same values
    (C = 3: 1/C is not exact in binary); a dynamic-rank input or a row that is not a mean is left
    alone (and does not raise)."""
    import openvino.opset13 as ops

    from mse_rt.runtime.backends.openvino import layernorm_means_as_convs

    def graph(shape, row):
        x = ops.parameter(ov.PartialShape(shape), np.float32, name="x")
        return ov.Model([ops.matmul(ops.constant(row), x, False, False).output(0)], [x])

    mean_row = np.full((1, 3), 1 / 3, np.float32)
    assert layernorm_means_as_convs(graph(ov.PartialShape.dynamic(), mean_row)) == 0
    assert layernorm_means_as_convs(graph([2, 3, 7], np.array([[0.1, 0.2, 0.3]], np.float32))) == 0
    m = graph([2, 3, 7], mean_row)
    assert layernorm_means_as_convs(m) == 1
    types = [op.get_type_name() for op in m.get_ordered_ops()]
    assert types.count("Convolution") == 1 and "MatMul" not in types
    x = np.random.default_rng(0).standard_normal((2, 3, 7)).astype(np.float32)
    got = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"x": x})[0]
    np.testing.assert_allclose(got, x.astype(np.float64).mean(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["openvino", "openvino-throughput", "onnxruntime",
                                  pytest.param("eager", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_one_detector_shared_by_four_threads(golden_onnx, kind):
    """One Detector, 4 threads, 3 calls each (single videos and batches of the 6 golden videos, 3
    padded lengths, compiled while the threads race for them): every result equals the serial one
    of the same Detector, and nothing raises (OpenVINO shared one infer request per shape and
    raised "Infer Request is busy" or returned another call's outputs)."""
    from concurrent.futures import ThreadPoolExecutor

    from golden_utils import golden_videos

    feats = [v["data"]["feats"].T.astype(np.float32) for v in golden_videos("thumos_small")]
    if kind == "eager":
        det = mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                              GOLDEN / "thumos_small" / "ckpt.pth.tar")
    elif kind == "onnxruntime":
        det = mse_rt.Detector.from_onnx(golden_onnx)
    else:
        det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32", cache_dir=False, threads=2,
                                            hint="throughput" if kind.endswith("throughput") else "latency")

    def call(k):
        if k % 2:
            return [det.detect(feats[k % len(feats)], fps=30.0, video_id=f"video_{k % len(feats)}")]
        return det.detect_batch(feats, fps=30.0)

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(call, range(12)))
    serial = {}  # the serial result of each distinct call (the batch, three single videos)
    for k, got in enumerate(threaded):
        key = k % len(feats) if k % 2 else "batch"
        if key not in serial:
            serial[key] = call(k)
        assert len(got) == len(serial[key])
        for a, b in zip(got, serial[key]):
            assert a.video_id == b.video_id
            assert np.array_equal(a.labels, b.labels) and np.array_equal(a.scores, b.scores), (kind, k, a.video_id)
            assert np.array_equal(a.segments, b.segments)
