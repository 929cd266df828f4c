"""Feature files: one ``.npy`` per video holding a (T, C) float array, time first; telling videos from them.

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


# ---------------------------------------------------------------------------------------------
# videos beside feature files: which input is which

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg",
    ".m2v", ".ts", ".m2ts", ".mts", ".vob", ".ogv", ".mxf", ".y4m", ".dv", ".nut", ".f4v", ".rm", ".rmvb",
})
"""File extensions taken as videos without looking inside (lower case; the test is case-insensitive)."""
_NPY_MAGIC = b"\x93NUMPY"


def sniff_video(path: str | Path) -> bool:
    """Whether the first bytes of ``path`` carry a video container's signature: ISO BMFF (``ftyp``
    at byte 4: mp4 / mov / 3gp), EBML (Matroska / WebM), RIFF AVI, MPEG program stream, MPEG
    transport stream (sync bytes 188 apart), FLV, ASF, Ogg, YUV4MPEG. False for unreadable files."""
    try:
        with open(path, "rb") as f:
            head = f.read(400)
    except OSError:
        return False
    if len(head) < 12:
        return False
    return (head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or head[:4] == b"\x00\x00\x01\xba" or (len(head) > 376 and head[0] == head[188] == head[376] == 0x47)
            or head[:3] == b"FLV" or head[:4] == b"\x30\x26\xb2\x75" or head[:4] == b"OggS"
            or head[:10] == b"YUV4MPEG2 ")


def is_video_file(path: str | Path) -> bool:
    """A video input rather than a feature file: a known video extension (:data:`VIDEO_EXTENSIONS`);
    ``.npy`` is never a video; any other name (no extension, or one not listed) is a video when its
    content carries a container signature (:func:`sniff_video`)."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix == ".npy":
        return False
    return sniff_video(path)


def collect_video_files(inputs: list[str | Path]) -> list[Path]:
    """Video files from files and folders. A named file is taken as given (a bad one fails when it
    is read, naming it); a folder gives, recursively and sorted, its files that :func:`is_video_file`
    accepts, skipping hidden names (``.*``), ``.npy`` and ``.json`` files. A folder without any video
    raises :class:`InputError`."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() not in (".npy", ".json") and is_video_file(f))
            if not found:
                raise InputError(f"folder {p} holds no video files (by extension: "
                                 f"{', '.join(sorted(VIDEO_EXTENSIONS))}; or by content)")
            files += found
        else:
            files.append(p)
    return files


def collect_inputs(inputs: list[str]) -> tuple[list[Path], str]:
    """``(files, kind)`` for ``mse-rt detect``: kind ``"features"`` (``.npy`` files; folders give
    their ``*.npy``) or ``"video"`` (video files; folders give their videos). One call takes one kind:
    a mix is refused with :class:`InputError` (the two need different options: ``--fps`` for
    features, the backbone for videos), as is a folder holding both."""
    kinds: list[tuple[str, str]] = []  # (kind, item)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            has_npy = next(p.rglob("*.npy"), None) is not None
            has_video = any(f.is_file() and not f.name.startswith(".") and f.suffix.lower() not in (".npy", ".json")
                            and is_video_file(f) for f in p.rglob("*"))
            if has_npy and has_video:
                raise InputError(f"folder {p} holds both feature files (.npy) and videos; detect takes one kind per "
                                 "call: name the files or run the two kinds separately")
            kinds.append(("video" if has_video else "features", item))
        else:
            kinds.append(("video" if p.exists() and is_video_file(p) or p.suffix.lower() in VIDEO_EXTENSIONS
                          else "features", item))
    found = {k for k, _ in kinds}
    if len(found) > 1:
        v = next(i for k, i in kinds if k == "video")
        f = next(i for k, i in kinds if k == "features")
        raise InputError(f"detect takes feature files or videos, not both in one call (e.g. {v} is a video, {f} "
                         "is not): run them separately (extract-features turns videos into feature files)")
    kind = found.pop() if found else "features"
    files = collect_video_files(inputs) if kind == "video" else collect_feature_files(inputs)
    return files, kind
