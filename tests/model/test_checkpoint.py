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
