"""Checkpoint layouts and mismatch reports."""

from __future__ import annotations

import pytest
import torch
import yaml

import mse_rt
from mse_rt import CheckpointError, build_model, load_checkpoint, load_config

from golden_utils import GOLDEN

CFG = GOLDEN / "thumos_small" / "config.yaml"
CKPT = GOLDEN / "thumos_small" / "ckpt.pth.tar"


@pytest.fixture(scope="module")
def ref():
    return torch.load(CKPT, map_location="cpu", weights_only=True)


def _params_equal(model, sd):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in sd.items())


@pytest.mark.parametrize("layout", ["ema+plain", "plain", "bare", "bare-no-prefix"])
def test_layouts(tmp_path, ref, layout):
    ema = ref["state_dict_ema"]
    if layout == "ema+plain":
        obj, expect = ref, ema
    elif layout == "plain":
        obj, expect = {"state_dict": ema, "epoch": 1}, ema
    elif layout == "bare":
        obj, expect = dict(ema), ema
    else:
        obj = {k.removeprefix("module."): v for k, v in ema.items()}
        expect = ema
    p = tmp_path / "c.pth"
    torch.save(obj, p)
    model = build_model(load_config(CFG))
    load_checkpoint(model, p)
    assert _params_equal(model, {k.removeprefix("module."): v for k, v in expect.items()})


def test_prefers_ema(tmp_path, ref):
    plain = {k: torch.zeros_like(v) for k, v in ref["state_dict_ema"].items()}
    p = tmp_path / "c.pth"
    torch.save({"state_dict": plain, "state_dict_ema": ref["state_dict_ema"]}, p)
    model = build_model(load_config(CFG))
    load_checkpoint(model, p)
    assert _params_equal(model, {k.removeprefix("module."): v for k, v in ref["state_dict_ema"].items()})


def test_mismatch_lists_keys_and_config_fields(tmp_path):
    data = yaml.safe_load(CFG.read_text())
    data["dataset"]["num_classes"] = 7
    data["model"]["backbone_arch"] = [2, 1, 5]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    model = build_model(load_config(p))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, CKPT)
    msg = str(info.value)
    assert "shape cls_head.cls_head.conv.weight" in msg and "dataset.num_classes" in msg
    assert "unexpected backbone.stem.1." in msg and "backbone_arch[1]" in msg


def test_corrupt_and_foreign_files(tmp_path):
    model = build_model(load_config(CFG))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(model, bad)
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(CKPT.read_bytes()[:10000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(model, trunc)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(model, tmp_path / "nope.pth")
    lst = tmp_path / "list.pth"
    torch.save([1, 2, 3], lst)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(model, lst)


def test_nan_parameter_rejected(tmp_path, ref):
    sd = dict(ref["state_dict_ema"])
    sd["module.cls_head.cls_head.conv.bias"] = torch.full_like(sd["module.cls_head.cls_head.conv.bias"], float("nan"))
    p = tmp_path / "nan.pth"
    torch.save({"state_dict_ema": sd}, p)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(build_model(load_config(CFG)), p)


def test_every_reference_key_is_a_model_key(ref):
    """The parameter names are the contract: the model has exactly the checkpoint's keys."""
    model = build_model(load_config(CFG))
    keys = {k.removeprefix("module.") for k in ref["state_dict_ema"]}
    assert keys == set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 1450593
    assert isinstance(mse_rt.__version__, str)


# ---------------------------------------------------------------- integrity (issue 24: S6)
def _legacy_copy(ref, path, flip_param: str | None = None):
    """The golden checkpoint re-saved in torch's legacy (non-zip) format; ``flip_param``: flip the
    top exponent bit of that parameter's first element (what a damaged byte does)."""
    obj = {"state_dict_ema": {k: v.clone() for k, v in ref["state_dict_ema"].items()}}
    if flip_param:
        t = obj["state_dict_ema"][flip_param]
        t.view(-1).view(torch.int32)[0] ^= 1 << 30
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def test_legacy_checkpoint_is_refused_without_a_checksum(tmp_path, ref):
    """A legacy file with one flipped exponent bit used to load silently (and change detections)."""
    key = "module.cls_head.cls_head.conv.weight"
    bad = _legacy_copy(ref, tmp_path / "legacy.pth", flip_param=key)
    sd = torch.load(bad, map_location="cpu", weights_only=True)["state_dict_ema"][key]
    assert not torch.equal(sd, ref["state_dict_ema"][key])  # torch itself loads the damaged weight
    with pytest.raises(CheckpointError, match=r"legacy.pth is in torch's legacy \(non-zip\) format, which carries no "
                                              r"checksum.*--allow-unverified-checkpoint"):
        load_checkpoint(build_model(load_config(CFG)), bad)
    with pytest.raises(CheckpointError, match="legacy"):
        mse_rt.Detector.from_checkpoint(CFG, bad)


def test_legacy_checkpoint_with_its_sha256_or_explicitly_unverified(tmp_path, ref):
    import hashlib

    good = _legacy_copy(ref, tmp_path / "legacy.pth")
    digest = hashlib.sha256(good.read_bytes()).hexdigest()  # independent of mse_rt's file_sha256
    want = {k.removeprefix("module."): v for k, v in ref["state_dict_ema"].items()}
    for kwargs in ({"sha256": digest}, {"sha256": digest.upper()}, {"allow_unverified": True}):
        model = build_model(load_config(CFG))
        load_checkpoint(model, good, **kwargs)
        assert _params_equal(model, want)
    det = mse_rt.Detector.from_checkpoint(CFG, good, sha256=digest)
    assert _params_equal(det.backend.model, want)


def test_sha256_mismatch_names_both_digests_where_they_differ(tmp_path, ref):
    import hashlib

    good = _legacy_copy(ref, tmp_path / "legacy.pth")
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    wrong = digest[:30] + ("0" if digest[30] != "0" else "1") + digest[31:]  # same first 30 hex digits
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model(load_config(CFG)), good, sha256=wrong)
    msg = str(info.value)
    assert f"sha256 {digest[:38]}... differs from the expected {wrong[:38]}..." in msg
    with pytest.raises(CheckpointError, match="64 hex digits"):
        load_checkpoint(build_model(load_config(CFG)), good, sha256="abc")
    # a zip checkpoint is checked against a given sha256 too
    with pytest.raises(CheckpointError, match="differs from the expected"):
        load_checkpoint(build_model(load_config(CFG)), CKPT, sha256=wrong)


def test_export_refuses_a_legacy_checkpoint_unless_allowed(tmp_path, ref):
    pytest.importorskip("onnx")
    from mse_rt.export import export_onnx

    legacy = _legacy_copy(ref, tmp_path / "legacy.pth")
    with pytest.raises(CheckpointError, match="legacy"):
        export_onnx((CFG, legacy), tmp_path / "m.onnx", validate=False)
    assert not (tmp_path / "m.onnx").exists()
    import hashlib

    from mse_rt.export.onnx import _resolve_model  # what export_onnx loads and records (no trace: fast)

    model, sha = _resolve_model((CFG, legacy), allow_unverified=True)
    assert sha == hashlib.sha256(legacy.read_bytes()).hexdigest()
    assert _params_equal(model, {k.removeprefix("module."): v for k, v in ref["state_dict_ema"].items()})


def test_cli_allow_unverified_checkpoint(tmp_path, ref, capsys):
    from mse_rt.cli import main

    legacy = _legacy_copy(ref, tmp_path / "legacy.pth")
    feats = tmp_path / "v.npy"
    import numpy as np

    np.save(feats, np.random.default_rng(0).standard_normal((30, 64)).astype(np.float32))
    argv = ["detect", "--config", str(CFG), "--ckpt", str(legacy), "--fps", "30", "-q", "-o", str(tmp_path / "r.json"),
            str(feats)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-unverified-checkpoint" in err
    assert main([*argv[:1], "--allow-unverified-checkpoint", *argv[1:]]) == 0


def test_cli_export_allow_unverified_checkpoint(tmp_path, ref, capsys, monkeypatch):
    """``mse-rt export`` refuses a legacy checkpoint and passes the flag through (export itself
    stubbed: what is under test is the option reaching the integrity rule)."""
    import mse_rt.export as export_pkg
    from mse_rt.cli import main

    legacy = _legacy_copy(ref, tmp_path / "legacy.pth")
    argv = ["export", "--config", str(CFG), "--ckpt", str(legacy), "-o", str(tmp_path / "m.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "legacy" in err and "--allow-unverified-checkpoint" in err
    seen = {}

    def fake_export(model_or_paths, path, **kw):
        from mse_rt.export.onnx import _resolve_model

        _resolve_model(model_or_paths, allow_unverified=kw["allow_unverified"])  # the real rule, no trace
        seen.update(kw)
        return path

    monkeypatch.setattr(export_pkg, "export_onnx", fake_export)
    assert main([*argv, "--allow-unverified-checkpoint"]) == 0
    assert seen["allow_unverified"] is True
