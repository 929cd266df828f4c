"""CPU capability checks: int8 dot-product instructions and BF16 read from /proc/cpuinfo, and the int8
paths refusing a CPU without them."""

from __future__ import annotations

import numpy as np
import pytest

import mse_rt
from mse_rt import BackendError


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


@pytest.mark.slow
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


def test_thread_count_from_the_environment(golden_onnx, monkeypatch, capsys):
    """MSE_RT_THREADS: the intra-op threads of ONNX Runtime sessions and OpenVINO models built without
    an explicit count; an explicit count wins; unset, the library's own default; a bad value is refused
    naming the variable."""
    from mse_rt.runtime.backends.onnxruntime import session_options
    from mse_rt.runtime.options import default_threads

    monkeypatch.delenv("MSE_RT_THREADS", raising=False)
    assert session_options().intra_op_num_threads == 0  # ORT's "one per core"
    monkeypatch.setenv("MSE_RT_THREADS", "3")
    assert session_options().intra_op_num_threads == 3 and session_options(2).intra_op_num_threads == 2
    assert default_threads(None) == 3 and default_threads(5) == 5
    det = mse_rt.Detector.from_onnx(golden_onnx)
    assert det.backend.session.get_session_options().intra_op_num_threads == 3
    pytest.importorskip("openvino")
    ov_det = mse_rt.Detector.from_openvino(golden_onnx, precision="fp32", cache_dir=False)
    assert ov_det.backend.config["INFERENCE_NUM_THREADS"] == 3
    # "²" passes str.isdigit and int() rejects it; 100000 made ONNX Runtime start threads until killed
    for bad in ("0", "two", "-1", "1.5", "\u00b2", "1025", "100000", "99999999999999999999"):
        monkeypatch.setenv("MSE_RT_THREADS", bad)
        with pytest.raises(BackendError, match="MSE_RT_THREADS"):
            mse_rt.Detector.from_onnx(golden_onnx)
    # the CLI refuses it up front, also for a command that would not use it
    from mse_rt.cli import main

    monkeypatch.setenv("MSE_RT_THREADS", "abc")
    assert main(["quantize", "--engine", "openvino", "--model", str(golden_onnx), "--calib", str(golden_onnx),
                 "-o", "/nonexistent/never.xml"]) == 2
    assert "mse-rt: error: MSE_RT_THREADS='abc'" in capsys.readouterr().err
