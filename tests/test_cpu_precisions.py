"""Reduced CPU precisions: int8 ONNX (ONNX Runtime), OpenVINO fp32 / bf16 / int8, the comparison tool.

Tolerances (documented in the README, CPU precisions): on the bundled demo model, each reduced
precision's average mAP within 0.5 point of fp32; on the golden thumos_small videos, vs eager
fp32: at least 80 % of each video's top-10 detections matched (same label, tIoU >= 0.5).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mse_rt
from mse_rt import BackendError, InputError
from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG
from mse_rt.apps.synth import write_dataset
from mse_rt.eval import THUMOS_TIOUS, evaluate
from mse_rt.io.dataset import read_dataset

from golden_utils import GOLDEN

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """32 synthetic videos (the default ``calib_videos``) of another seed than the demo's training
    (1) and test (2) sets. With 16 the OpenVINO int8 demo mAP moved by calibration set alone
    between 83.95 and 84.68 (seeds 3-5; fp32 84.90), across the 0.5-point bar; with 32, 84.51-84.85."""
    return write_dataset(tmp_path_factory.mktemp("calib"), 32, seed=3) / "features"


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory):
    from mse_rt.export import export_onnx

    return export_onnx((DEMO_CONFIG, DEMO_CKPT), tmp_path_factory.mktemp("demo") / "demo.onnx")


def _demo_map(det):
    vids = read_dataset(DEMO)
    rs = [det.detect(v["feats"], fps=v["fps"], video_id=v["video_id"]) for v in vids]
    return evaluate(rs, DEMO / "annotations.json", THUMOS_TIOUS, split="validation").average


@pytest.fixture(scope="module")
def fp32_map(demo_onnx):
    return _demo_map(mse_rt.Detector.from_onnx(demo_onnx))


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
    m = _demo_map(det)
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


ov = pytest.importorskip("openvino")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_precisions_on_the_demo(demo_onnx, calib, fp32_map, precision):
    """int8 with NNCF's full bias correction, the recipe the 0.5-point tolerance is documented for
    (over 7 calibration sets: 0.25 point below fp32 on average, all within 0.45; the fast default:
    0.41 on average, up to 0.63)."""
    from mse_rt.runtime.backends.openvino import cpu_capabilities

    caps = cpu_capabilities()
    if precision == "bf16" and "BF16" not in caps:
        with pytest.raises(BackendError, match="no BF16"):
            mse_rt.Detector.from_openvino(demo_onnx, precision="bf16")
        return
    det = mse_rt.Detector.from_openvino(demo_onnx, precision=precision, calib=[calib] if precision == "int8" else None,
                                        bias_correction="full")
    if precision == "int8":  # the LayerNorm channel-sum convs stay float: no FakeQuantize on either input
        assert det.backend.calibration["bias_correction"] == "full"
        sums = [op for op in det.backend.model.get_ordered_ops() if op.get_friendly_name().endswith("/sum")]
        assert len(sums) == det.backend.layernorm_mean_convs > 0
        assert all(op.input_value(0).get_node().get_type_name() != "FakeQuantize"
                   and op.input_value(1).get_node().get_type_name() == "Constant" for op in sums)
        # the heads' trunk convs (run once on the joined levels) read one quantized tensor each:
        # per-level FakeQuantize scales in front of the join sent them to bf16
        trunk = [op for op in det.backend.model.get_ordered_ops()
                 if op.get_type_name() == "Convolution" and "_head/head." in op.get_friendly_name()]
        assert trunk and all(op.input_value(0).get_node().get_type_name() == "FakeQuantize" for op in trunk)
    m = _demo_map(det)
    tol = 1e-4 if precision == "fp32" else 0.005
    assert abs(m - fp32_map) <= tol, f"OpenVINO {precision} mAP {m:.4f} vs fp32 {fp32_map:.4f}"


@pytest.fixture(scope="module")
def golden_onnx(tmp_path_factory):
    from mse_rt.export import export_onnx

    return export_onnx((GOLDEN / "thumos_small" / "config.yaml", GOLDEN / "thumos_small" / "ckpt.pth.tar"),
                       tmp_path_factory.mktemp("golden") / "t.onnx")


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


def test_openvino_runs_the_body_in_bf16(demo_onnx, monkeypatch):
    """With a bf16 hint, no element-wise node of the backbone / neck stays float32 (the plugin's
    graph-tail rule took in the whole residual stream before the body was marked), while the decode
    after the heads does; without the marks the rule is seen to apply (so this test can tell)."""
    from mse_rt.runtime.backends import openvino as ovb

    if "BF16" not in ovb.cpu_capabilities():
        pytest.skip("this CPU has no BF16")

    def f32_nodes(backend):
        d = backend.cfg["dataset"]
        compiled = backend._compiled.get((1, d["input_dim"], d["max_seq_len"], "NCT"))[0]
        out = {"body": [], "tail": []}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if (str(info["layerType"].astype(str)) in ("Eltwise", "Subgraph")
                    and str(info["runtimePrecision"].astype(str)) == "f32"):
                out["body" if op.get_friendly_name().startswith(ovb.BODY_PREFIXES) else "tail"].append(
                    op.get_friendly_name())
        return out

    marked = f32_nodes(ovb.OpenVinoBackend(demo_onnx, precision="bf16"))
    assert marked["body"] == [] and marked["tail"], marked
    from mse_rt.runtime.backends.openvino import runner

    monkeypatch.setattr(runner, "mark_body_reduced_precision", lambda model: 0)
    unmarked = f32_nodes(ovb.OpenVinoBackend(demo_onnx, precision="bf16"))
    assert len(unmarked["body"]) > 10, unmarked


def test_openvino_marked_body_under_the_throughput_hint(demo_onnx):
    """The marks compile on several streams at once: stored as strings, the plugin's concurrent
    string-to-bool reads crashed the process ("pure virtual method called", 3 of 3 runs here);
    stored as bools they do not. A child process, so a crash fails this test instead of pytest;
    its batch under the throughput hint matches the latency hint's."""
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
for _ in range(3):
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


def test_compare_reports_agreement_on_golden_videos(tmp_path, capsys):
    """int8 vs eager fp32 on the golden thumos_small videos: the documented detection tolerance."""
    from mse_rt.apps.variants import build_variants, compare_results

    from golden_utils import golden_videos

    feats = [v["data"]["feats"].T for v in golden_videos("thumos_small")]
    dets = build_variants(["eager", "onnxruntime-int8", "openvino-int8"], GOLDEN / "thumos_small" / "config.yaml",
                          GOLDEN / "thumos_small" / "ckpt.pth.tar", tmp_path, calib=feats)
    ref = dets["eager"].detect_batch(feats, fps=30.0)
    for name in ("onnxruntime-int8", "openvino-int8"):
        agree = compare_results(ref, dets[name].detect_batch(feats, fps=30.0))
        print(name, agree.line())
        assert agree.matched >= 0.8, f"{name}: {agree.line()}"
    same = compare_results(ref, ref)
    assert same.matched == 1.0 and same.score_diff_max == 0.0


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


def test_cpu_flags_and_int8_dot_support(tmp_path):
    from mse_rt.runtime.cpu import cpu_flags, int8_dot_support

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n\nprocessor\t: 1\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\n")
    assert {"avx512_vnni", "avx512_bf16"} <= cpu_flags(x86)
    assert cpu_flags(arm) == {"fp", "asimd", "evtstrm", "aes", "crc32"}
    assert cpu_flags(tmp_path / "missing") is None
    assert int8_dot_support(cpu_flags(x86))[0] is True
    ok, why = int8_dot_support(cpu_flags(arm))
    assert ok is False and "no int8 dot-product" in why
    assert int8_dot_support({"avx2", "avx_vnni"})[0] is True


@pytest.fixture
def no_vnni(monkeypatch):
    """Simulate an AVX2 CPU without int8 dot-product instructions."""
    import mse_rt.runtime.cpu as cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda *a, **k: {"sse2", "avx", "avx2", "fma"})


def test_int8_paths_refuse_a_cpu_without_vnni(golden_onnx, tmp_path, no_vnni):
    """No silent slow int8: OpenVINO int8 falls back to its float path only when asked (and says
    so; same outputs as that float path), an int8 ONNX graph runs on ONNX Runtime only when asked."""
    import torch

    from mse_rt.apps.variants import available_variants
    from mse_rt.export.quantize import quantize_onnx
    from mse_rt.pipeline.padding import pad_batch
    from mse_rt.runtime.backends.openvino import cpu_capabilities

    from golden_utils import golden_videos

    with pytest.raises(BackendError, match="no int8 dot-product"):
        mse_rt.Detector.from_openvino(golden_onnx, precision="int8", calib=[np.zeros((64, 64), np.float32)])
    det = mse_rt.Detector.from_openvino(golden_onnx, precision="int8", allow_fallback=True)
    flt = "bf16" if "BF16" in cpu_capabilities() else "fp32"
    assert det.backend.precision_used.startswith(f"{flt} (int8 asked: this CPU has no int8 dot-product")
    ref = mse_rt.Detector.from_openvino(golden_onnx, precision=flt)
    v = golden_videos("thumos_small")[0]
    x, lens = pad_batch([torch.from_numpy(v["data"]["feats"])], int(v["data"]["padded_len"]))
    a, b = det.backend.infer(x, lens), ref.backend.infer(x, lens)
    assert all(torch.equal(a[k], b[k]) for k in a)

    calib = [golden_videos("thumos_small")[i]["data"]["feats"].T for i in range(2)]
    q = quantize_onnx(golden_onnx, tmp_path / "g.int8.onnx", calib)  # quantizing is fine anywhere
    with pytest.raises(BackendError, match="int8 graph and this CPU has no int8 dot-product"):
        mse_rt.Detector.from_onnx(q)
    assert mse_rt.Detector.from_onnx(q, allow_slow_int8=True).backend.precision == "int8"
    from mse_rt.cli import main

    feat = tmp_path / "v.npy"
    np.save(feat, v["data"]["feats"].T)
    args = ["detect", "--model", str(q), "--fps", "30", "-q", "-o", str(tmp_path / "r.json"), str(feat)]
    assert main(args) == 2 and not (tmp_path / "r.json").exists()
    assert main(args[:3] + ["--allow-slow-int8"] + args[3:]) == 0 and (tmp_path / "r.json").is_file()
    assert mse_rt.Detector.from_onnx(golden_onnx).backend.precision == "fp32"  # fp32 graphs unaffected
    avail = available_variants()
    assert "no int8 dot-product" in avail["onnxruntime-int8"] and "no int8 dot-product" in avail["openvino-int8"]
    assert avail["onnxruntime"] == "" and avail["openvino-fp32"] == ""


def test_pad_batch_time_first_holds_the_same_values():
    import torch

    from mse_rt.pipeline.padding import pad_batch

    g = torch.Generator().manual_seed(0)
    vids = [torch.randn(7, 5, generator=g).T, torch.randn(3, 5, generator=g).T]  # (C, T_i) views of (T_i, C)
    a, la = pad_batch(vids, 11)
    b, lb = pad_batch(vids, 11, time_first=True)
    assert torch.equal(a, b) and torch.equal(la, lb) and b.shape == (2, 5, 11)
    assert a.is_contiguous() and not b.is_contiguous() and b.transpose(1, 2).is_contiguous()
    assert torch.equal(b[1, :, 3:], torch.zeros(5, 8))
    # one video that fills the padded length: a view of its own time-first memory, same values
    full = torch.randn(11, 5, generator=g)
    c, lc = pad_batch([full.T], 11, time_first=True)
    d, _ = pad_batch([full.T], 11)
    assert torch.equal(c, d) and lc.tolist() == [11] and c.transpose(1, 2).is_contiguous()
    assert c.data_ptr() == full.data_ptr()
    e, _ = pad_batch([full.T.contiguous()], 11, time_first=True)  # channels-first memory: copied
    assert torch.equal(e, d) and e.data_ptr() != full.data_ptr()


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
