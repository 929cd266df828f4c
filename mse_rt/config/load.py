"""Reading reference YAML configs (docs/spec/config.md).

A YAML file is merged over :data:`~mse_rt.config.schema.DEFAULTS` (YAML wins; nested dicts
merge key by key), then the derived fields are filled in: ``model.input_dim / num_classes /
max_seq_len`` are copied from ``dataset`` and ``model.train_cfg / test_cfg`` from the top level,
exactly as the reference does. The result is a plain nested ``dict`` so that configs round-trip
unchanged into checkpoints, ONNX / OpenVINO metadata and engine headers.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import yaml

from ..errors import ConfigError, ConfigWarning
from .schema import DEFAULTS, _check_types, _unknown_keys


def _merge(base: dict, update: dict) -> dict:
    """Merge ``update`` into a copy of ``base``: nested dicts key by key, everything else replaced."""
    out = copy.deepcopy(base)
    for key, val in update.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def finalize_config(user: dict) -> dict:
    """Merge a user dict over the reference defaults, derive fields, validate; returns a new dict."""
    if not isinstance(user, dict):
        raise ConfigError(f"a config must be a mapping at the top level, got {type(user).__name__}")
    unknown = _unknown_keys(user)
    if unknown:
        warnings.warn(
            f"config keys unknown to the reference (typo?): {', '.join(sorted(unknown))}",
            ConfigWarning,
            stacklevel=3,
        )
    cfg = _merge(DEFAULTS, user)
    # derived fields, as the reference's load_config does
    for key in ("input_dim", "num_classes", "max_seq_len"):
        cfg["model"][key] = cfg["dataset"][key]
    _check_types(cfg)
    cfg["model"]["train_cfg"] = cfg["train_cfg"]
    cfg["model"]["test_cfg"] = cfg["test_cfg"]
    return cfg


def load_config(path: str | Path) -> dict:
    """Read a reference-format YAML config and return the merged, derived, validated dict.

    Raises :class:`ConfigError` for a missing or unreadable file, one that is not UTF-8 text,
    malformed YAML, a missing required key or a wrongly typed value; warns
    (:class:`ConfigWarning`) about keys the reference does not know.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a directory; give the YAML file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
                          "give a YAML config") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        user = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if user is None:
        user = {}
    return finalize_config(user)


def config_to_json(cfg: dict) -> str:
    """Serialise a config for metadata (drops the derived train_cfg/test_cfg copies in model)."""
    slim = copy.deepcopy(cfg)
    slim["model"].pop("train_cfg", None)
    slim["model"].pop("test_cfg", None)
    return json.dumps(slim, sort_keys=True)


def config_from_json(text: str) -> dict:
    """Inverse of :func:`config_to_json`."""
    return finalize_config(json.loads(text))


PUBLISHED_CONFIGS = ("thumos_i3d", "anet_tsp", "hacs_slowfast")


def published_config(name: str) -> Path:
    """Path of a published MSE-TAD config shipped with the package (``mse_rt/assets/configs``).

    ``name``: one of :data:`PUBLISHED_CONFIGS` (with or without ``.yaml``).
    """
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in PUBLISHED_CONFIGS:
        raise ConfigError(f"unknown published config {name!r}; available: {', '.join(PUBLISHED_CONFIGS)}")
    return Path(__file__).resolve().parents[1] / "assets" / "configs" / f"{stem}.yaml"
