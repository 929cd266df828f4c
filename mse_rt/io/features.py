"""Feature files: one ``.npy`` per video holding a (T, C) float array, time first.

T steps of C channels, one step every ``dataset.feat_stride`` frames of the source video, each
feature computed over ``dataset.num_frames`` frames (e.g. THUMOS14 I3D: stride 4, 16 frames,
C = 2048). The video id is the file name without its extension.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError


def load_feature_file(path: str | Path) -> np.ndarray:
    """Read one (T, C) feature file (.npy); raises :class:`InputError` for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feature file not found: {path}")
    if path.suffix != ".npy":
        raise InputError(f"feature file {path}: expected a .npy file holding a (T, C) array")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read feature file {path}: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise InputError(f"feature file {path}: expected one array, got {type(arr).__name__}")
    if not arr.dtype.isnative:  # big-endian files: same values, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def collect_feature_files(inputs: list[str]) -> list[Path]:
    """Feature files from files and folders (a folder gives its ``*.npy`` files, recursively, sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.rglob("*.npy"))
            if not found:
                raise InputError(f"folder {p} holds no .npy feature files")
            files += found
        else:
            files.append(p)
    return files


def video_ids_for(files: list[Path], scheme: str) -> list[str]:
    """Video ids of feature files: ``stem`` (file name without .npy, the reference's convention) or
    ``relpath`` (path relative to the files' common folder, without .npy: unique for distinct files)."""
    if scheme == "stem":
        return [f.stem for f in files]
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([str(r.parent) for r in resolved]))
    return [r.relative_to(root).with_suffix("").as_posix() for r in resolved]
