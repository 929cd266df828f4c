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


@pytest.mark.parametrize("section,key,value,allowed", [
    ("dataset", "feat_stride", -4, r"\(0, inf\)"),
    ("dataset", "feat_stride", 0, r"\(0, inf\)"),
    ("test_cfg", "max_seg_num", -5, r"\[1, inf\)"),
    ("model", "n_head", 0, r"\[1, inf\)"),
    ("test_cfg", "nms_sigma", 0, r"\(0, inf\)"),
    ("model", "k", -1.5, r"\(0, inf\)"),
    ("dataset", "input_dim", -64, r"\[1, 65536\]"),
    ("dataset", "max_seq_len", 100_000_000, r"\[1, 65536\]"),  # a typo, not a model that allocates for minutes
    ("model", "embd_dim", 10 ** 6, r"\[1, 16384\]"),
    ("dataset", "num_classes", 0, r"\[1, inf\)"),
    ("test_cfg", "iou_threshold", 1.5, r"\[0, 1\]"),
    ("test_cfg", "pre_nms_thresh", -0.1, r"\[0, 1\]"),
    ("test_cfg", "voting_thresh", float("nan"), r"\[0, 1\]"),
    ("model", "max_buffer_len_factor", 0.5, r"\[1, 64\]"),
])
def test_values_out_of_range_name_the_key_and_range(tmp_path, section, key, value, allowed):
    data = _base()
    data[section][key] = value
    with pytest.raises(ConfigError, match=rf"'{section}\.{key}' = .* out of range; allowed: {allowed}"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize("value", ["thirty", 0, -30, True, 1e-40, 1e5])
def test_default_fps_must_be_a_frame_rate(tmp_path, value):
    data = _base()
    data["dataset"]["default_fps"] = value
    with pytest.raises(ConfigError, match=r"dataset\.default_fps' must be a number in \[0.001, 10000\] \(frames per "
                                          r"second\) or null"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize("section,key,value,match", [
    ("model", "backbone_arch", [2, -1, 5], r"backbone_arch' must hold 3 integers >= 0"),
    ("model", "regression_range", [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10]], r"level 5"),
])
def test_structured_values(tmp_path, section, key, value, match):
    data = _base()
    data[section][key] = value
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, data))


def test_published_configs_ship_with_the_package():
    from mse_rt.config import PUBLISHED_CONFIGS, published_config

    for name in PUBLISHED_CONFIGS:
        assert load_config(published_config(name))["model"]["mse_mlp_dim"] > 0
    with pytest.raises(ConfigError, match="unknown published config"):
        published_config("kinetics")


def test_video_section_is_mse_rt_own_and_validated(tmp_path):
    """The ``video`` section loads without a warning, gets its defaults, and bad values name the key."""
    data = _base()
    data["dataset"]["default_fps"] = 30
    data["video"] = {"size": 160}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(_write(tmp_path, data))
    assert cfg["video"] == {"backbone": "i3d-rgb", "spatial": "resize", "size": 160, "short_side": None}
    for bad, match in [({"size": 16}, "video.size"), ({"spatial": "crop"}, "video.spatial"),
                       ({"short_side": 256}, "'short_side_crop' only"),
                       ({"spatial": "short_side_crop", "size": 224, "short_side": 200}, "video.short_side"),
                       ({"backbone": ""}, "video.backbone"), ([1, 2], "must be a mapping")]:
        data["video"] = bad
        with pytest.raises(ConfigError, match=match):
            load_config(_write(tmp_path, data))
    data["video"] = {"sizee": 160}
    with pytest.warns(ConfigWarning, match=r"video\.sizee"):
        load_config(_write(tmp_path, data))
    data["video"], data["dataset"]["default_fps"] = {}, None
    with pytest.raises(ConfigError, match="default_fps"):
        load_config(_write(tmp_path, data))


def test_a_config_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; give the YAML file"):
        load_config(tmp_path)
