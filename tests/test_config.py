"""Config loading: reference defaults, derived fields, warnings and typed errors."""

from __future__ import annotations

import warnings

import pytest
import yaml

from mse_rt import ConfigError, ConfigWarning, load_config
from mse_rt.config import DEFAULTS, max_buffer_len, max_div_factor

from golden_utils import CONFIGS, GOLDEN


@pytest.mark.parametrize("name,input_dim,num_classes,max_len,div,mlp", [
    ("thumos_i3d", 2048, 20, 2304, 32, 768),
    ("anet_tsp", 512, 1, 768, 32 * 15, 2048),
    ("hacs_slowfast", 2304, 200, 960, 32 * 3, 1024),
])
def test_published_configs(name, input_dim, num_classes, max_len, div, mlp):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # published configs carry no unknown keys
        cfg = load_config(CONFIGS / f"{name}.yaml")
    m = cfg["model"]
    assert (m["input_dim"], m["num_classes"], m["max_seq_len"], m["mse_mlp_dim"]) == (
        input_dim, num_classes, max_len, mlp)
    assert max_div_factor(cfg) == div
    assert m["test_cfg"] is cfg["test_cfg"] and m["train_cfg"] is cfg["train_cfg"]
    # defaults fill what the YAML leaves out
    assert cfg["test_cfg"]["pre_nms_thresh"] == 0.001 and m["n_head"] == 4 and m["head_num_layers"] == 3


def test_merge_is_key_by_key():
    cfg = load_config(CONFIGS / "hacs_slowfast.yaml")
    assert cfg["model"]["boudary_kernel_size"] == 1 and cfg["model"]["head_kernel_size"] == 5
    assert cfg["model"]["embd_kernel_size"] == DEFAULTS["model"]["embd_kernel_size"]
    assert cfg["test_cfg"]["iou_threshold"] == 0.1 and cfg["test_cfg"]["nms_sigma"] == 0.75
    assert max_buffer_len(cfg) == 960


def _write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base():
    return yaml.safe_load((GOLDEN / "thumos_small" / "config.yaml").read_text())


def test_unknown_keys_warn_with_names(tmp_path):
    data = _base()
    data["model"]["embd_dimm"] = 3
    data["tset_cfg"] = {}
    with pytest.warns(ConfigWarning, match=r"model\.embd_dimm.*tset_cfg|tset_cfg.*model\.embd_dimm"):
        load_config(_write(tmp_path, data))


def test_missing_required_key(tmp_path):
    data = _base()
    del data["model"]["mse_mlp_dim"]
    with pytest.raises(ConfigError, match=r"model\.mse_mlp_dim' is required"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize("section,key,value,match", [
    ("dataset", "input_dim", "64", r"dataset\.input_dim' must be int"),
    ("model", "use_abs_pe", 1, r"model\.use_abs_pe' must be bool"),
    ("test_cfg", "nms_method", "fast", r"test_cfg\.nms_method' must be one of"),
    ("model", "embd_dim", 100, r"embd_dim"),
    ("model", "n_mse_win_size", 4, r"n_mse_win_size"),
    ("dataset", "max_seq_len", 250, r"max_seq_len.*divisible"),
])
def test_wrong_values(tmp_path, section, key, value, match):
    data = _base()
    data[section][key] = value
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, data))


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
