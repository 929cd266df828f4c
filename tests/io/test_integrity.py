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


@pytest.mark.slow
def test_damaged_cache_entry_is_rebuilt(tmp_path, onnx_files):
    cache = tmp_path / "cache"
    entry = _entry_for(cache)  # an export of the same (config, checkpoint) is a valid entry
    entry.parent.mkdir(parents=True)
    shutil.copy(onnx_files["thumos_small"], entry)
    a = mse_rt.Detector.from_checkpoint(CFG, CKPT, backend="onnxruntime", cache_dir=cache)
    assert a.backend.path == entry
    _flip_512(entry, entry, 0.5)
    with pytest.warns(RuntimeWarning, match=f"damaged or foreign export cache entry {entry}"):
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
    with pytest.raises(ModelFileError, match="meta.onnx: the mse_rt.config metadata is not a valid config"):
        mse_rt.Detector.from_onnx(bad, allow_unverified=True)
    _rewrite_metadata(onnx_files["thumos_small"], bad, **{"mse_rt.dynamic": "false", "mse_rt.static_shape": "[1"})
    with pytest.raises(mse_rt.BackendError, match="invalid mse_rt shape metadata"):
        mse_rt.Detector.from_onnx(bad, allow_unverified=True)


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


# ---------------------------------------------------------------- issue 24: S3, S4
def _change_one_weight(proto):
    from onnx import numpy_helper

    init = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    arr = numpy_helper.to_array(init).copy()
    arr.reshape(-1)[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))


def test_onnx_without_its_checksum_is_refused(onnx_files, tmp_path):
    """Checksum entry removed and a weight changed: the file used to load silently."""
    import onnx

    proto = onnx.load(str(onnx_files["thumos_small"]))
    for p in list(proto.metadata_props):
        if p.key == CHECKSUM_KEY:
            proto.metadata_props.remove(p)
    _change_one_weight(proto)
    bad = tmp_path / "unsealed.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(IntegrityError, match=r"unsealed.onnx: this mse_rt ONNX file has no integrity checksum.*"
                                             r"--allow-unverified-model"):
        mse_rt.Detector.from_onnx(bad)
    det = mse_rt.Detector.from_onnx(bad, allow_unverified=True)  # the caller's explicit choice
    assert det.backend.verified is False


def test_onnx_with_changed_weight_and_checksum_kept_is_refused(onnx_files, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_files["thumos_small"]))
    _change_one_weight(proto)
    bad = tmp_path / "changed.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(IntegrityError, match="changed.onnx: corrupt ONNX file: sha256"):
        mse_rt.Detector.from_onnx(bad)


def test_checksum_mismatch_prints_digests_that_differ(onnx_files, tmp_path):
    """The message used to print the first 16 hex digits of both: identical when they differ later."""
    import hashlib

    from mse_rt.export.onnx import read_onnx_metadata
    from mse_rt.io.integrity import CHECKSUM_PLACEHOLDER

    data = onnx_files["thumos_small"].read_bytes()
    recorded = read_onnx_metadata(onnx_files["thumos_small"])[CHECKSUM_KEY]
    # change one byte of the graph, then record a digest equal to the new one in its first 20 digits
    i = len(data) // 2
    assert abs(i - data.index(recorded.encode())) > 64
    changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    actual = hashlib.sha256(changed.replace(recorded.encode(), CHECKSUM_PLACEHOLDER.encode())).hexdigest()
    fake = actual[:20] + ("0" if actual[20] != "0" else "1") + actual[21:]
    bad = tmp_path / "near.onnx"
    bad.write_bytes(changed.replace(recorded.encode(), fake.encode()))
    from mse_rt.io.integrity import verify_onnx_checksum

    with pytest.raises(IntegrityError) as info:
        verify_onnx_checksum(bad, fake)
    msg = str(info.value)
    assert f"sha256 {actual[:28]}... differs from the {fake[:28]}... recorded" in msg


def test_differing_digests():
    from mse_rt.io.integrity import differing_digests

    a, b = "ab" * 32, "ab" * 20 + "ff" + "ab" * 11
    assert differing_digests(a, b) == (a[:48] + "...", b[:48] + "...")
    assert differing_digests("1" * 64, "2" * 64) == ("1" * 16 + "...", "2" * 16 + "...")


def _entry_for(cache, ckpt=CKPT, cfg=CFG):
    from mse_rt.model.checkpoint import file_sha256
    from mse_rt.runtime.cache import onnx_entry_key

    return cache / "onnx" / f"{onnx_entry_key(file_sha256(ckpt), mse_rt.load_config(cfg))}.onnx"


def test_an_entry_exported_from_the_same_checkpoint_is_used(onnx_files, tmp_path):
    """An export of (config, checkpoint) is exactly the entry the cache would build: loaded as is."""
    import warnings

    entry = _entry_for(tmp_path)
    entry.parent.mkdir(parents=True)
    shutil.copy(onnx_files["thumos_small"], entry)
    built = []
    from mse_rt.model.checkpoint import file_sha256
    from mse_rt.runtime.cache import cached, onnx_entry_expect

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = cached(entry, built.append, mse_rt.Detector.from_onnx,
                     expect=onnx_entry_expect(file_sha256(CKPT), mse_rt.load_config(CFG)))
    assert built == [] and det.backend.verified


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_a_foreign_mse_rt_model_in_the_cache_is_rebuilt(onnx_files, tmp_path, how):
    """Another valid, sealed mse_rt model (anet_small) put in a thumos_small entry's place used to
    be run silently; now it is named in a warning and rebuilt (the build here: the right export)."""
    from mse_rt.model.checkpoint import file_sha256
    from mse_rt.runtime.cache import cached, onnx_entry_expect

    entry = _entry_for(tmp_path)
    entry.parent.mkdir(parents=True)
    foreign = onnx_files["anet_small"]
    if how == "copy":
        shutil.copy(foreign, entry)
    else:
        entry.symlink_to(foreign)
    built = []

    def build(p):
        built.append(p)
        shutil.copy(onnx_files["thumos_small"], p)

    with pytest.warns(RuntimeWarning, match=rf"foreign export cache entry {entry} .*mse_rt.checkpoint_sha256"):
        det = cached(entry, build, mse_rt.Detector.from_onnx,
                     expect=onnx_entry_expect(file_sha256(CKPT), mse_rt.load_config(CFG)))
    assert built == [entry] and not entry.is_symlink() and foreign.is_file()
    assert det.cfg["model"]["num_classes"] == mse_rt.load_config(CFG)["model"]["num_classes"]


def test_a_non_mse_rt_onnx_in_the_cache_is_rebuilt(tmp_path, onnx_files):
    from onnx import TensorProto, helper, save

    from mse_rt.model.checkpoint import file_sha256
    from mse_rt.runtime.cache import cached, onnx_entry_expect

    entry = _entry_for(tmp_path)
    entry.parent.mkdir(parents=True)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g), str(entry))
    with pytest.warns(RuntimeWarning, match=rf"{entry} .*checkpoint_sha256 is missing"):
        cached(entry, lambda p: shutil.copy(onnx_files["thumos_small"], p), mse_rt.Detector.from_onnx,
               expect=onnx_entry_expect(file_sha256(CKPT), mse_rt.load_config(CFG)))


@pytest.mark.slow
def test_from_checkpoint_rebuilds_a_linked_foreign_entry(onnx_files, tmp_path):
    """End to end: Detector.from_checkpoint with a symlink to another model in its cache entry."""
    cache = tmp_path / "cache"
    entry = _entry_for(cache)
    entry.parent.mkdir(parents=True)
    entry.symlink_to(onnx_files["anet_small"])
    with pytest.warns(RuntimeWarning, match=f"foreign export cache entry {entry}"):
        det = mse_rt.Detector.from_checkpoint(CFG, CKPT, backend="onnxruntime", cache_dir=cache)
    eager = mse_rt.Detector.from_checkpoint(CFG, CKPT)
    x = np.random.default_rng(1).standard_normal((80, 64)).astype(np.float32)
    from golden_utils import match_detections

    a, b = det.detect(x, fps=30.0), eager.detect(x, fps=30.0)
    match_detections(a.segments, a.scores, a.labels, b.segments, b.scores, b.labels, "rebuilt entry vs eager")
    assert onnx_files["anet_small"].is_file() and not entry.is_symlink()
