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


@pytest.mark.slow
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


@pytest.mark.slow
def test_cli_quantize(demo_onnx, calib, tmp_path, capsys):
    from mse_rt.cli import main

    out = tmp_path / "m.int8.onnx"
    assert main(["quantize", "--model", str(demo_onnx), "--calib", str(calib), "-o", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out


def test_cli_quantize_prints_no_third_party_info(demo_onnx, calib, tmp_path, capfd):
    """Quiet by default: ONNX Runtime's quantizer and the ONNX tools log nothing at INFO on the console;
    mse_rt's own progress line stays."""
    from mse_rt.cli import main

    assert main(["quantize", "--model", str(demo_onnx), "--calib", str(calib), "--max-videos", "4",
                 "-o", str(tmp_path / "q.onnx")]) == 0
    out, err = capfd.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert not [ln for ln in lines if "INFO" in ln or ln.startswith(("onnxruntime", "root:"))], lines
    assert any(ln.startswith("mse_rt.export: quantized") for ln in lines), lines


def test_shipped_demo_int8_onnx(fp32_map):
    """The demo's ONNX Runtime int8 model (make demo-model, 32 videos of seed 3) loads verified,
    belongs to the bundled checkpoint and keeps the demo mAP within 0.5 point of fp32."""
    from mse_rt.apps.demo import shipped_int8
    from mse_rt.runtime.cpu import int8_dot_support

    if int8_dot_support()[0] is False:
        pytest.skip("this CPU has no int8 dot-product instructions")
    det = shipped_int8("onnxruntime-int8")
    assert det.backend.verified
    m = demo_map(det)
    assert abs(m - fp32_map) <= 0.005, f"shipped int8 mAP {m:.4f} vs fp32 {fp32_map:.4f}"


def _flip(src, dst, where=0.5):
    raw = bytearray(src.read_bytes())
    i = int(len(raw) * where)
    raw[i:i + 64] = bytes(b ^ 0xFF for b in raw[i:i + 64])
    dst.write_bytes(bytes(raw))
    return dst


ENGINES = [("onnxruntime", "q.onnx"), ("openvino", "q.xml")]


@pytest.mark.parametrize("engine,out", ENGINES)
def test_quantize_refuses_a_model_detect_refuses(demo_onnx, calib, tmp_path, engine, out):
    """S5: an fp32 ONNX that detect rejects as corrupt is refused before calibrating (both engines); a
    truncated one gives a typed one-line error, not a protobuf DecodeError; nothing is written."""
    from mse_rt.cli import main
    from mse_rt.io.integrity import IntegrityError

    bad = _flip(demo_onnx, tmp_path / "bad.onnx")
    with pytest.raises(IntegrityError):
        mse_rt.Detector.from_onnx(bad)
    fn = _quantizer(engine)
    with pytest.raises(IntegrityError, match=r"bad\.onnx: corrupt ONNX file"):
        fn(bad, tmp_path / out, [calib])
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(demo_onnx.read_bytes()[:100_000])
    with pytest.raises(mse_rt.ModelFileError, match=r"trunc\.onnx as ONNX: truncated, damaged or not an ONNX file"):
        fn(trunc, tmp_path / out, [calib])
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        rc = main(["quantize", "--engine", engine, "--model", str(trunc), "--calib", str(calib), "-o", str(tmp_path / out)])
    assert rc == 2 and len(err.getvalue().strip().splitlines()) == 1 and "Traceback" not in err.getvalue()
    assert not (tmp_path / out).exists()


def _quantizer(engine):
    if engine == "onnxruntime":
        from mse_rt.export.quantize import quantize_onnx

        return quantize_onnx
    pytest.importorskip("openvino")
    from mse_rt.export.openvino import quantize_openvino

    return quantize_openvino


def test_quantize_refuses_a_model_without_checksum(demo_onnx, tmp_path):
    """The rule every mse_rt model file follows: no checksum, refused unless allow_unverified."""
    import onnx

    from mse_rt.io.integrity import CHECKSUM_KEY, IntegrityError

    proto = onnx.load(str(demo_onnx))
    for p in list(proto.metadata_props):
        if p.key == CHECKSUM_KEY:
            proto.metadata_props.remove(p)
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    from mse_rt.export.quantize import quantize_onnx

    with pytest.raises(IntegrityError, match="no integrity checksum"):
        quantize_onnx(bare, tmp_path / "q.onnx", [np.zeros((50, 32), np.float32)])
    pytest.importorskip("openvino")
    from mse_rt.export.openvino import quantize_openvino

    with pytest.raises(IntegrityError, match="no integrity checksum"):
        quantize_openvino(bare, tmp_path / "f.xml", precision="fp32")
    out = quantize_openvino(bare, tmp_path / "f.xml", precision="fp32", allow_unverified=True)
    assert mse_rt.Detector.from_file(out, cache_dir=False).backend.verified  # the IR itself is sealed


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_quantize_never_overwrites_an_input(demo_onnx, calib, tmp_path, engine, capsys):
    """D5: -o the model itself, a link to it, or a calibration file (for OpenVINO: the IR's .xml or
    the .bin beside it): refused before any work, the files byte-identical after."""
    import os

    from mse_rt.cli import main

    model = tmp_path / "m.onnx"
    model.write_bytes(demo_onnx.read_bytes())
    feat = sorted(calib.glob("*.npy"))[0]
    if engine == "onnxruntime":
        link = tmp_path / "link.onnx"
        os.symlink(model, link)
        targets = [model, link, feat]
    else:  # an IR's two files: NAME.xml and NAME.bin, either may be an input
        os.symlink(model, tmp_path / "x.xml")
        os.symlink(model, tmp_path / "w.bin")
        os.symlink(feat, tmp_path / "f.bin")
        targets = [tmp_path / "x.xml", tmp_path / "w.xml", tmp_path / "f.xml"]
    before = {p: _sha(p) for p in (model, feat)}
    for out in targets:
        rc = main(["quantize", "--engine", engine, "--model", str(model), "--calib", str(calib), "-o", str(out)])
        assert rc == 2 and "is one of the inputs" in capsys.readouterr().err, out
    assert {p: _sha(p) for p in (model, feat)} == before


def test_export_never_overwrites_its_checkpoint_or_config(tmp_path, capsys):
    """D4: export -o the checkpoint or the config: refused before any work, files unchanged."""
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.cli import main

    ckpt, cfg = tmp_path / "k.pth.tar", tmp_path / "c.yaml"
    ckpt.write_bytes(DEMO_CKPT.read_bytes())
    cfg.write_bytes(DEMO_CONFIG.read_bytes())
    before = (_sha(ckpt), _sha(cfg))
    for out in (ckpt, cfg):
        for fmt in ("onnx", "triton-repo"):
            rc = main(["export", "--config", str(cfg), "--ckpt", str(ckpt), "--format", fmt, "-o", str(out)])
            assert rc == 2 and "one of the inputs" in capsys.readouterr().err
    assert (_sha(ckpt), _sha(cfg)) == before
