"""Damaged model files are refused with a clear error; a damaged export-cache entry is rebuilt."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

import mse_rt
from mse_rt import CheckpointError, ModelFileError, OutputError
from mse_rt.io.integrity import CHECKSUM_KEY, IntegrityError

from golden_utils import GOLDEN

CFG = GOLDEN / "thumos_small" / "config.yaml"
CKPT = GOLDEN / "thumos_small" / "ckpt.pth.tar"


def _flip_inside_tensor_data(src, dst):
    """Copy a zip checkpoint and change 64 bytes inside its largest stored tensor."""
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(dst.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[start:start + 64] = bytes(b ^ 0x5A for b in raw[start:start + 64])
    dst.write_bytes(bytes(raw))
    return info.filename


def test_checkpoint_with_changed_tensor_bytes_is_refused(tmp_path):
    bad = tmp_path / "ckpt.pth.tar"
    member = _flip_inside_tensor_data(CKPT, bad)
    import torch  # without the CRC check, torch would load the damaged weights silently

    torch.load(bad, map_location="cpu", weights_only=True)
    with pytest.raises(CheckpointError, match=f"CRC-32 mismatch in '{member}'"):
        mse_rt.Detector.from_checkpoint(CFG, bad)


def test_intact_checkpoint_passes_the_crc_check():
    from mse_rt.model.checkpoint import verify_zip_crc

    assert verify_zip_crc(CKPT) is True


def _flip_512(src, dst, where=0.5):
    raw = bytearray(src.read_bytes())
    i = int(len(raw) * where)
    raw[i:i + 512] = bytes(b ^ 0xFF for b in raw[i:i + 512])
    dst.write_bytes(bytes(raw))


def test_onnx_with_flipped_bytes_is_refused(onnx_files, tmp_path):
    src = onnx_files["thumos_small"]
    assert mse_rt.Detector.from_onnx(src).backend.verified
    for where in (0.3, 0.5, 0.9):
        bad = tmp_path / f"bad_{where}.onnx"
        _flip_512(src, bad, where)
        with pytest.raises(ModelFileError):
            mse_rt.Detector.from_onnx(bad)


def test_onnx_checksum_names_the_problem(onnx_files, tmp_path):
    bad = tmp_path / "bad.onnx"
    _flip_512(onnx_files["thumos_small"], bad, 0.5)
    with pytest.raises(IntegrityError, match="corrupt ONNX file"):
        mse_rt.Detector.from_onnx(bad)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    a = mse_rt.Detector.from_checkpoint(CFG, CKPT, backend="onnxruntime", cache_dir=cache)
    (entry,) = (cache / "onnx").glob("*.onnx")
    _flip_512(entry, entry, 0.5)
    with pytest.warns(RuntimeWarning, match="damaged export cache entry"):
        b = mse_rt.Detector.from_checkpoint(CFG, CKPT, backend="onnxruntime", cache_dir=cache)
    assert b.backend.verified
    x = np.random.default_rng(0).standard_normal((100, a.cfg["model"]["input_dim"])).astype(np.float32)
    ra, rb = a.detect(x, fps=30.0), b.detect(x, fps=30.0)
    np.testing.assert_array_equal(ra.scores, rb.scores)


def test_unwritable_cache(tmp_path, monkeypatch):
    from mse_rt.runtime.cache import export_cache_dir

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="choose a writable folder"):
        export_cache_dir(blocker / "cache")
    monkeypatch.delenv("MSE_RT_CACHE", raising=False)
    monkeypatch.setenv("MSE_RT_CACHE", str(blocker / "c"))
    with pytest.raises(OutputError, match="MSE_RT_CACHE"):
        export_cache_dir()
    monkeypatch.delenv("MSE_RT_CACHE")
    monkeypatch.setenv("HOME", str(blocker))  # default ~/.cache/mse_rt cannot be created
    with pytest.warns(RuntimeWarning, match="set MSE_RT_CACHE"):
        path = export_cache_dir()
    assert path.is_dir() and blocker not in path.parents


def _rewrite_metadata(src, dst, **changes):
    import onnx

    proto = onnx.load(str(src))
    for p in list(proto.metadata_props):
        if p.key == CHECKSUM_KEY:
            proto.metadata_props.remove(p)
        elif p.key in changes:
            p.value = changes[p.key]
    onnx.save(proto, str(dst))


def test_invalid_onnx_metadata_gives_a_typed_error(onnx_files, tmp_path):
    bad = tmp_path / "meta.onnx"
    _rewrite_metadata(onnx_files["thumos_small"], bad, **{"mse_rt.config": "{not json"})
    with pytest.raises(mse_rt.BackendError, match="not a valid config"):
        mse_rt.Detector.from_onnx(bad)
    _rewrite_metadata(onnx_files["thumos_small"], bad, **{"mse_rt.dynamic": "false", "mse_rt.static_shape": "[1"})
    with pytest.raises(mse_rt.BackendError, match="invalid mse_rt shape metadata"):
        mse_rt.Detector.from_onnx(bad)


def test_engine_metadata_must_be_an_object(tmp_path):
    from mse_rt.export.tensorrt import read_engine_file, write_engine_file

    for meta, why in (([1, 2], "expected a JSON object"), ({"config": 3}, "no config / profiles")):
        p = write_engine_file(tmp_path / "m.engine", b"plan", meta)
        with pytest.raises(ModelFileError, match=why):
            read_engine_file(p)


def test_exported_files_get_normal_permissions(onnx_files):
    import os

    mask = os.umask(0)
    os.umask(mask)
    assert (onnx_files["anet_small"].stat().st_mode & 0o777) == (0o666 & ~mask)


def test_export_does_not_move_or_cast_the_callers_model(tmp_path):
    """export_onnx works on a private float32 CPU copy (a CUDA model of an eager backend stays put)."""
    import torch

    from mse_rt.export import export_onnx

    cfg = mse_rt.load_config(CFG)
    model = mse_rt.build_model(cfg)
    mse_rt.load_checkpoint(model, CKPT)
    model = model.double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", validate=False)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
