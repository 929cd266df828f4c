"""Datasets on disk: ``annotations.json`` (ActivityNet format, segments in seconds) beside
``features/<video_id>.npy`` (T, C), as ``mse-rt synth`` writes them and ``mse-rt train`` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from .features import load_feature_file


def read_dataset(root: str | Path, subset: str | None = None) -> list[dict]:
    """Videos of a dataset folder: [{video_id, feats (T, C), segments (N, 2) seconds, labels, fps, duration}]."""
    root = Path(root)
    ann = root / "annotations.json"
    if not ann.is_file():
        raise InputError(f"dataset folder {root}: no annotations.json (expected annotations.json + features/*.npy, "
                         "as written by `mse-rt synth`)")
    try:
        db = json.loads(ann.read_text())["database"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{ann}: not ActivityNet-format JSON with a 'database' object ({exc})") from exc
    out = []
    for vid, v in db.items():
        if subset is not None and v["subset"] != subset:
            continue
        out.append({
            "video_id": vid,
            "feats": load_feature_file(root / "features" / f"{vid}.npy"),
            "segments": np.asarray([a["segment"] for a in v["annotations"]], np.float64).reshape(-1, 2),
            "labels": np.asarray([a["label_id"] for a in v["annotations"]], np.int64),
            "fps": float(v["fps"]),
            "duration": float(v["duration"]),
        })
    return out
