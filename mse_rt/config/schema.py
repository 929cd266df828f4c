"""The config schema: the reference defaults and what mse_rt validates (docs/spec/config.md).

:data:`DEFAULTS` are the reference's defaults; the tables below give the type and range of every
key read at inference or export, and the checks raise :class:`ConfigError` naming the key and
the allowed range.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError


class _Required:
    """Marker for a key with no default; survives deepcopy so merged configs still carry it."""

    def __deepcopy__(self, memo: dict) -> _Required:
        return self

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED = _Required()

# Frame rates accepted anywhere (config, API, CLI, endpoint), frames per second (docs/spec/units.md):
# beyond them a unit mistake turns segments infinite or collapses them to 0.
FPS_RANGE = (1e-3, 1e4)


# Reference defaults. Values that matter at inference follow docs/spec/config.md; the rest are
# the reference's training / bookkeeping keys, kept so that real configs load without warnings.
DEFAULTS: dict[str, Any] = {
    "init_rand_seed": 1234567891,
    "dataset_name": "epic",
    "devices": ["cuda:0"],
    "train_split": ["training"],
    "val_split": ["validation"],
    "model_name": "MSE_TAD",
    "output_folder": "./ckpt/",
    "dataset": {
        "feat_stride": 16,
        "num_frames": 32,
        "default_fps": None,
        "input_dim": 2304,
        "num_classes": 97,
        "downsample_rate": 1,
        "max_seq_len": 2304,
        "trunc_thresh": 0.5,
        "crop_ratio": None,
        "force_upsampling": False,
    },
    "loader": {"batch_size": 8, "num_workers": 4},
    "model": {
        "backbone_type": "MSEBackbone",
        "fpn_type": "identity",
        "backbone_arch": [2, 2, 5],
        "scale_factor": 2,
        "regression_range": [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
        "n_head": 4,
        "n_mse_win_size": -1,
        "embd_kernel_size": 3,
        "embd_dim": 512,
        "embd_with_ln": True,
        "fpn_dim": 512,
        "fpn_with_ln": True,
        "fpn_start_level": 0,
        "head_dim": 512,
        "head_kernel_size": 3,
        "boudary_kernel_size": 3,  # (sic) the reference spelling is the key users have
        "head_num_layers": 3,
        "head_with_ln": True,
        "max_buffer_len_factor": 6.0,
        "use_abs_pe": False,
        "use_trident_head": True,
        "downsample_type": "max",
        "k": 1.5,
        "init_conv_vars": 0,
        "num_bins": 16,
        "iou_weight_power": 0.2,
        "input_noise": 0.0,
        "mse_mlp_dim": _REQUIRED,
    },
    "train_cfg": {
        "center_sample": "radius",
        "center_sample_radius": 1.5,
        "loss_weight": 1.0,
        "cls_prior_prob": 0.01,
        "init_loss_norm": 2000,
        "clip_grad_l2norm": -1,
        "head_empty_cls": [],
        "dropout": 0.0,
        "droppath": 0.1,
        "label_smoothing": 0.0,
    },
    "test_cfg": {
        "pre_nms_thresh": 0.001,
        "pre_nms_topk": 5000,
        "iou_threshold": 0.1,
        "min_score": 0.01,
        "max_seg_num": 1000,
        "nms_method": "soft",
        "nms_sigma": 0.5,
        "duration_thresh": 0.05,
        "multiclass_nms": True,
        "ext_score_file": None,
        "voting_thresh": 0.75,
    },
    "opt": {
        "type": "AdamW",
        "momentum": 0.9,
        "weight_decay": 0.05,
        "learning_rate": 1e-4,
        "epochs": 30,
        "warmup": True,
        "warmup_epochs": 5,
        "schedule_type": "cosine",
        "schedule_steps": [],
        "schedule_gamma": 0.1,
    },
}


# Keys the reference accepts in ``dataset`` beyond the defaults (dataset-specific loaders).
_EXTRA_DATASET_KEYS = {"json_file", "feat_folder", "file_prefix", "file_ext", "backbone_type"}


_NUM = (int, float)


# Expected types of the keys read at inference / export. bool is excluded from numbers below.
_TYPES: dict[tuple[str, str], tuple[type, ...]] = {
    ("dataset", "feat_stride"): _NUM,
    ("dataset", "num_frames"): _NUM,
    ("dataset", "input_dim"): (int,),
    ("dataset", "num_classes"): (int,),
    ("dataset", "max_seq_len"): (int,),
    ("model", "backbone_arch"): (list, tuple),
    ("model", "scale_factor"): (int,),
    ("model", "regression_range"): (list, tuple),
    ("model", "n_head"): (int,),
    ("model", "n_mse_win_size"): (int, list, tuple),
    ("model", "embd_kernel_size"): (int,),
    ("model", "embd_dim"): (int,),
    ("model", "embd_with_ln"): (bool,),
    ("model", "fpn_dim"): (int,),
    ("model", "fpn_with_ln"): (bool,),
    ("model", "head_dim"): (int,),
    ("model", "head_kernel_size"): (int,),
    ("model", "boudary_kernel_size"): (int,),
    ("model", "head_num_layers"): (int,),
    ("model", "head_with_ln"): (bool,),
    ("model", "max_buffer_len_factor"): _NUM,
    ("model", "use_abs_pe"): (bool,),
    ("model", "use_trident_head"): (bool,),
    ("model", "downsample_type"): (str,),
    ("model", "k"): _NUM,
    ("model", "num_bins"): (int,),
    ("model", "mse_mlp_dim"): (int,),
    ("train_cfg", "droppath"): _NUM,
    ("train_cfg", "cls_prior_prob"): _NUM,
    ("train_cfg", "head_empty_cls"): (list, tuple),
    ("test_cfg", "pre_nms_thresh"): _NUM,
    ("test_cfg", "pre_nms_topk"): (int,),
    ("test_cfg", "iou_threshold"): _NUM,
    ("test_cfg", "min_score"): _NUM,
    ("test_cfg", "max_seg_num"): (int,),
    ("test_cfg", "nms_method"): (str,),
    ("test_cfg", "nms_sigma"): _NUM,
    ("test_cfg", "duration_thresh"): _NUM,
    ("test_cfg", "multiclass_nms"): (bool,),
    ("test_cfg", "voting_thresh"): _NUM,
}


# Allowed ranges of the values read at inference / export: (low, high, "[" or "(" , "]" or ")").
# None = unbounded on that side. Checked after the types, so every value here is a number.
_INF = None
# Upper bounds: far above every published config (max_seq_len 2304, widths <= 2048), low enough
# that a typo (max_seq_len: 100000000) is a ConfigError instead of a model that allocates for minutes.
MAX_SEQ_LEN = 65536


_RANGES: dict[tuple[str, str], tuple] = {
    ("dataset", "feat_stride"): (0, _INF, "(", ")"),
    ("dataset", "num_frames"): (0, _INF, "[", ")"),
    ("dataset", "input_dim"): (1, 65536, "[", "]"),
    ("dataset", "num_classes"): (1, _INF, "[", ")"),
    ("dataset", "max_seq_len"): (1, MAX_SEQ_LEN, "[", "]"),
    ("model", "scale_factor"): (2, _INF, "[", ")"),
    ("model", "n_head"): (1, _INF, "[", ")"),
    ("model", "embd_kernel_size"): (1, _INF, "[", ")"),
    ("model", "embd_dim"): (1, 16384, "[", "]"),
    ("model", "fpn_dim"): (1, 16384, "[", "]"),
    ("model", "head_dim"): (1, 16384, "[", "]"),
    ("model", "head_kernel_size"): (1, _INF, "[", ")"),
    ("model", "boudary_kernel_size"): (1, _INF, "[", ")"),
    ("model", "head_num_layers"): (1, _INF, "[", ")"),
    ("model", "max_buffer_len_factor"): (1, 64, "[", "]"),
    ("model", "k"): (0, _INF, "(", ")"),
    ("model", "num_bins"): (1, _INF, "[", ")"),
    ("model", "mse_mlp_dim"): (1, _INF, "[", ")"),
    ("train_cfg", "droppath"): (0, 1, "[", ")"),
    ("train_cfg", "cls_prior_prob"): (0, 1, "(", ")"),
    ("test_cfg", "pre_nms_thresh"): (0, 1, "[", "]"),
    ("test_cfg", "pre_nms_topk"): (1, _INF, "[", ")"),
    ("test_cfg", "iou_threshold"): (0, 1, "[", "]"),
    ("test_cfg", "min_score"): (0, 1, "[", "]"),
    ("test_cfg", "max_seg_num"): (1, _INF, "[", ")"),
    ("test_cfg", "nms_sigma"): (0, _INF, "(", ")"),
    ("test_cfg", "duration_thresh"): (0, _INF, "[", ")"),
    ("test_cfg", "voting_thresh"): (0, 1, "[", "]"),
}


def _check_ranges(cfg: dict) -> None:
    for (section, key), (lo, hi, lb, hb) in _RANGES.items():
        val = cfg[section][key]
        ok = math.isfinite(val)
        if ok and lo is not None:
            ok = val >= lo if lb == "[" else val > lo
        if ok and hi is not None:
            ok = val <= hi if hb == "]" else val < hi
        if not ok:
            allowed = f"{lb}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{hb}"
            raise ConfigError(f"config key '{section}.{key}' = {val!r} is out of range; allowed: {allowed}")
    d = cfg["dataset"]
    if d["default_fps"] is not None:
        fps = d["default_fps"]
        if not isinstance(fps, _NUM) or isinstance(fps, bool) or not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise ConfigError(f"config key 'dataset.default_fps' must be a number in [{FPS_RANGE[0]:g}, "
                              f"{FPS_RANGE[1]:g}] (frames per second) or null, got {fps!r}")
    m = cfg["model"]
    arch = m["backbone_arch"]
    if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in arch):
        raise ConfigError(f"config key 'model.backbone_arch' must hold 3 integers >= 0, got {arch}")
    for i, rr in enumerate(m["regression_range"]):
        if (not isinstance(rr, (list, tuple)) or len(rr) != 2 or not all(isinstance(v, _NUM) for v in rr)
                or not 0 <= rr[0] < rr[1]):
            raise ConfigError(f"config key 'model.regression_range' level {i} must be [low, high] with "
                              f"0 <= low < high, got {rr!r}")


_CHOICES = {
    ("model", "fpn_type"): ("identity",),
    ("model", "backbone_type"): ("MSEBackbone",),
    ("model", "downsample_type"): ("max",),
    ("test_cfg", "nms_method"): ("soft", "hard", "none"),
}


# mse_rt's own top-level section (the reference does not know it): how the features are made from
# frames (docs/spec/video.md). Clip length, stride and fps are dataset.num_frames / feat_stride /
# default_fps, so they are not repeated here.
VIDEO_DEFAULTS: dict[str, Any] = {
    "backbone": "i3d-rgb",  # the feature extractor (mse_rt.video.backbone)
    "spatial": "resize",  # "resize": the whole frame to size x size; "short_side_crop": short side, centre crop
    "size": 224,  # clip frames are size x size pixels
    "short_side": None,  # short_side_crop only: the short side before the crop (None: round(size * 8 / 7))
}


def check_video_section(cfg: dict) -> None:
    """Fill and validate the optional ``video`` section in place (ConfigError naming the key)."""
    if "video" not in cfg:
        return
    v = cfg["video"]
    if not isinstance(v, dict):
        raise ConfigError(f"config section 'video' must be a mapping, got {type(v).__name__}")
    cfg["video"] = v = {**VIDEO_DEFAULTS, **v}
    if not isinstance(v["backbone"], str) or not v["backbone"]:
        raise ConfigError(f"config key 'video.backbone' must be a backbone name, got {v['backbone']!r}")
    if v["spatial"] not in ("resize", "short_side_crop"):
        raise ConfigError(f"config key 'video.spatial' must be 'resize' or 'short_side_crop', got {v['spatial']!r}")
    if isinstance(v["size"], bool) or not isinstance(v["size"], int) or v["size"] < 32:
        raise ConfigError(f"config key 'video.size' must be an integer >= 32 (pixels), got {v['size']!r}")
    side = v["short_side"]
    if side is not None:
        if v["spatial"] != "short_side_crop":
            raise ConfigError("config key 'video.short_side' applies to spatial 'short_side_crop' only")
        if isinstance(side, bool) or not isinstance(side, int) or side < v["size"]:
            raise ConfigError(f"config key 'video.short_side' must be an integer >= video.size ({v['size']}), "
                              f"got {side!r}")
    if cfg["dataset"]["default_fps"] is None:
        raise ConfigError("a config with a 'video' section needs dataset.default_fps (the fps clips are cut at)")


def _unknown_keys(user: dict) -> list[str]:
    unknown = []
    for key, val in user.items():
        if key == "video" and isinstance(val, dict):
            unknown += [f"video.{sub}" for sub in val if sub not in VIDEO_DEFAULTS]
            continue
        if key not in DEFAULTS:
            unknown.append(key)
            continue
        if isinstance(DEFAULTS[key], dict):
            if not isinstance(val, dict):
                raise ConfigError(f"config section '{key}' must be a mapping, got {type(val).__name__}")
            allowed = set(DEFAULTS[key])
            if key == "dataset":
                allowed |= _EXTRA_DATASET_KEYS
            if key == "model":  # derived fields (overwritten from dataset / top level)
                allowed |= {"input_dim", "num_classes", "max_seq_len", "train_cfg", "test_cfg"}
            unknown += [f"{key}.{sub}" for sub in val if sub not in allowed]
    return unknown


def _check_types(cfg: dict) -> None:
    check_video_section(cfg)
    for (section, key), types in _TYPES.items():
        val = cfg[section][key]
        if val is _REQUIRED:
            raise ConfigError(f"config key '{section}.{key}' is required and has no default")
        ok = isinstance(val, types) and not (isinstance(val, bool) and bool not in types)
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"config key '{section}.{key}' must be {want}, got {type(val).__name__} ({val!r})"
            )
    for (section, key), choices in _CHOICES.items():
        if cfg[section][key] not in choices:
            raise ConfigError(f"config key '{section}.{key}' must be one of {choices}, got {cfg[section][key]!r}")
    m = cfg["model"]
    if len(m["backbone_arch"]) != 3:
        raise ConfigError(f"config key 'model.backbone_arch' must have 3 entries, got {m['backbone_arch']}")
    _check_ranges(cfg)
    n_levels = m["backbone_arch"][2] + 1
    if len(m["regression_range"]) != n_levels:
        raise ConfigError(
            f"config key 'model.regression_range' has {len(m['regression_range'])} levels but "
            f"backbone_arch[2] + 1 = {n_levels}"
        )
    wins = m["n_mse_win_size"]
    wins = [wins] * n_levels if isinstance(wins, int) else list(wins)
    if len(wins) != n_levels:
        raise ConfigError(f"config key 'model.n_mse_win_size' needs {n_levels} entries, got {len(wins)}")
    for w in wins[1:]:
        if not isinstance(w, int) or isinstance(w, bool) or w < 1 or w % 2 == 0:
            raise ConfigError(f"config key 'model.n_mse_win_size' must be odd and >= 1 per branch level, got {w}")
    if m["embd_dim"] % m["n_head"] != 0:
        raise ConfigError(f"model.embd_dim ({m['embd_dim']}) must be divisible by model.n_head ({m['n_head']})")
    if m["embd_dim"] % 16 != 0:
        raise ConfigError(f"model.embd_dim ({m['embd_dim']}) must be divisible by 16 (GroupNorm groups)")
    if m["fpn_dim"] != m["embd_dim"]:
        raise ConfigError(
            f"model.fpn_dim ({m['fpn_dim']}) must equal model.embd_dim ({m['embd_dim']}) for the identity neck"
        )
    top_stride = m["scale_factor"] ** (n_levels - 1)
    if m["max_seq_len"] % top_stride != 0:
        raise ConfigError(
            f"dataset.max_seq_len ({m['max_seq_len']}) must be divisible by the top pyramid stride {top_stride}"
        )
    for key in ("embd_kernel_size", "head_kernel_size", "boudary_kernel_size"):
        if m[key] % 2 != 1:
            raise ConfigError(f"config key 'model.{key}' must be odd, got {m[key]}")
